//! Metrics as CloudWatch embedded metric format (EMF) log lines: one JSON line on
//! stdout per event, which CloudWatch Logs turns into metrics with no API call.
//!
//! Dimensions are low-cardinality names (stage, outcome, channel, template,
//! campaign); never a recipient, address or message id.

use serde_json::{Map, Value, json};
use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Stops emitting (the CLI's demo prints a report on stdout instead).
pub fn disable() {
    ENABLED.store(false, Ordering::Relaxed);
}

/// The namespace when `HERALD_METRICS_NAMESPACE` is not set.
pub const DEFAULT_NAMESPACE: &str = "Herald";

static NAMESPACE: OnceLock<String> = OnceLock::new();

/// Where the metrics go: `HERALD_METRICS_NAMESPACE`, which the templates set to
/// `Herald/<stack name>` so that two stacks in one account and region (staging and
/// production) keep their metrics, dashboards and alarms apart.
pub fn namespace() -> &'static str {
    NAMESPACE.get_or_init(|| {
        std::env::var("HERALD_METRICS_NAMESPACE").ok().filter(|n| !n.is_empty()).unwrap_or(DEFAULT_NAMESPACE.into())
    })
}

/// One count of `metric` with the given dimensions, e.g.
/// `count("Notifications", &[("Stage", "eligibility"), ("Outcome", "suppressed"), ("Reason", "no_consent")])`.
pub fn count(metric: &str, dimensions: &[(&str, &str)]) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let line = emf_line(metric, dimensions, chrono::Utc::now().timestamp_millis());
    // A failed write to stdout must never fail a record: metrics are best effort.
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// The EMF document for one count (separate from [`count`] so it can be tested).
pub fn emf_line(metric: &str, dimensions: &[(&str, &str)], timestamp_ms: i64) -> String {
    let names: Vec<&str> = dimensions.iter().map(|(k, _)| *k).collect();
    emf_line_sets(metric, dimensions, &[&names], timestamp_ms)
}

/// The metric every ledger transition counts (see [`transition`]).
pub const TRANSITIONS: &str = "Transitions";

/// A message moved to `status` (a ledger transition). Counted three ways, each its
/// own series so cardinality adds up instead of multiplying: by channel
/// (`[Channel, Status]`, what the alarms read), by template (`[Template, Status]`)
/// and by campaign (`[Campaign, Status]`, `none` outside campaigns).
pub fn transition(status: &str, channel: &str, template: &str, campaign: Option<&str>) {
    let values =
        [("Status", status), ("Channel", channel), ("Template", template), ("Campaign", campaign.unwrap_or("none"))];
    count_by(TRANSITIONS, &values, &[&["Channel", "Status"], &["Template", "Status"], &["Campaign", "Status"]]);
}

/// One count of `metric` with `values`, published under each of the dimension `sets`.
pub fn count_by(metric: &str, values: &[(&str, &str)], sets: &[&[&str]]) {
    add(metric, 1, values, sets);
}

/// `n` counts of `metric` in one line (a batch's tally), under each of the dimension `sets`.
pub fn add(metric: &str, n: u64, values: &[(&str, &str)], sets: &[&[&str]]) {
    if !ENABLED.load(Ordering::Relaxed) || n == 0 {
        return;
    }
    let line = emf_document(metric, n, values, sets, chrono::Utc::now().timestamp_millis());
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// The EMF document for [`count_by`].
pub fn emf_line_sets(metric: &str, values: &[(&str, &str)], sets: &[&[&str]], timestamp_ms: i64) -> String {
    emf_document(metric, 1, values, sets, timestamp_ms)
}

fn emf_document(metric: &str, n: u64, values: &[(&str, &str)], sets: &[&[&str]], timestamp_ms: i64) -> String {
    let mut doc = Map::new();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace(),
                "Dimensions": sets,
                "Metrics": [{"Name": metric, "Unit": "Count"}],
            }],
        }),
    );
    for (k, v) in values {
        doc.insert((*k).to_owned(), Value::String((*v).to_owned()));
    }
    doc.insert(metric.to_owned(), json!(n));
    Value::Object(doc).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_transition_is_published_under_three_dimension_sets() {
        let values = [("Status", "bounced"), ("Channel", "email"), ("Template", "order_shipped"), ("Campaign", "none")];
        let line = emf_line_sets(TRANSITIONS, &values, &[&["Channel", "Status"], &["Template", "Status"]], 1);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Channel", "Status"], ["Template", "Status"]])
        );
        assert_eq!(
            (v["Channel"].as_str(), v["Status"].as_str(), v["Transitions"].as_i64()),
            (Some("email"), Some("bounced"), Some(1))
        );
    }

    use super::*;

    #[test]
    fn emf_document_names_its_dimensions_and_value() {
        let line = emf_line("Notifications", &[("Stage", "eligibility"), ("Outcome", "suppressed")], 1_700_000_000_000);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Herald");
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0], json!(["Stage", "Outcome"]));
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"], "Notifications");
        assert_eq!(
            (v["Stage"].as_str(), v["Outcome"].as_str(), v["Notifications"].as_i64()),
            (Some("eligibility"), Some("suppressed"), Some(1))
        );
    }
}
