//! From recorded requests to what AWS bills: requests by stage and operation,
//! DynamoDB units, SQS requests in 64 KB chunks, Lambda invocations, and dollars
//! from the price table kept in `bench/prices.json`.

use crate::counting::{Call, Who};
use crate::dynamo::{self, Snapshot, Units};
use crate::pipeline::Invocation;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Price {
    /// Dollars per `per` units; absent when no published figure was found.
    pub usd: Option<f64>,
    pub per: f64,
    pub unit: String,
    #[serde(default)]
    pub sources: Vec<String>,
    #[serde(default)]
    pub note: String,
}

impl Price {
    pub fn each(&self) -> Option<f64> {
        self.usd.map(|u| u / self.per)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Prices {
    pub region: String,
    pub read_on: String,
    pub how: String,
    pub items: BTreeMap<String, Price>,
}

impl Prices {
    pub fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
    }

    pub fn each(&self, name: &str) -> Option<f64> {
        self.items.get(name).and_then(Price::each)
    }
}

/// Requests per stage (function and role) and operation.
pub type Breakdown = BTreeMap<(String, String), BTreeMap<String, u64>>;

pub fn role(who: &Who) -> &'static str {
    match who {
        Who::Herald(_) => "handler",
        Who::EventSource(_) => "event source",
        Who::Driver => "bench",
    }
}

pub fn breakdown<'a>(calls: impl Iterator<Item = &'a Call>) -> Breakdown {
    let mut out = Breakdown::new();
    for c in calls {
        let op = if c.is_empty_receive() { format!("{} (empty)", c.label()) } else { c.label() };
        *out.entry((c.who.function().to_owned(), role(&c.who).to_owned())).or_default().entry(op).or_default() += 1;
    }
    out
}

/// What one scenario costs, per notification.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Cost {
    pub notifications: usize,
    pub requests: f64,
    pub herald_requests: f64,
    pub event_source_requests: f64,
    pub dynamodb_requests: f64,
    pub sqs_requests: f64,
    pub sqs_requests_herald: f64,
    /// SQS requests in billed 64 KB chunks (Herald and the event source).
    pub sqs_billed: f64,
    /// Receives that found nothing, for the whole phase (idle polling: a cost per
    /// poller and hour, not per notification; Lambda's long polls differ).
    pub empty_receives: u64,
    pub units: Units,
    pub write_units: f64,
    pub read_units: f64,
    pub invocations: f64,
    /// Mean records per invocation, by function (how full the event source's batches were).
    pub batch_fill: BTreeMap<String, f64>,
    /// Billed duration, GB-seconds at the template's MemorySize (local durations against moto).
    pub gb_seconds: f64,
    pub emails: f64,
    pub sms: f64,
    pub pushes: f64,
    pub topic_publishes: f64,
    /// Dollars per million notifications: AWS (Lambda, SQS, DynamoDB) and the
    /// providers apart (SES, SNS push; SMS where priced).
    pub usd_per_million_aws: f64,
    pub usd_per_million_lambda: f64,
    pub usd_per_million_sqs: f64,
    pub usd_per_million_dynamodb: f64,
    pub usd_per_million_providers: f64,
    pub unpriced: Vec<String>,
}

pub fn cost<'a>(
    calls: impl Iterator<Item = &'a Call> + Clone,
    invocations: &[Invocation],
    notifications: usize,
    snapshot: &Snapshot,
    memory_mb: f64,
    prices: &Prices,
) -> Cost {
    let n = notifications.max(1) as f64;
    let work: Vec<&Call> = calls.clone().filter(|c| !c.is_empty_receive()).collect();
    let owned: Vec<Call> = work.iter().map(|c| (*c).clone()).collect();
    let units = dynamo::units(&owned, snapshot);
    let count = |f: &dyn Fn(&Call) -> bool| work.iter().filter(|c| f(c)).count() as f64;
    let sqs_billed: f64 = work
        .iter()
        .filter(|c| c.service == "sqs")
        .map(|c| c.request.body.len().max(1).div_ceil(64 * 1024) as f64)
        .sum();
    let gb_seconds: f64 =
        invocations.iter().map(|i| (i.duration.as_micros() as f64 / 1000.0).ceil() / 1000.0 * memory_mb / 1024.0).sum();
    let mut c = Cost {
        notifications,
        requests: work.len() as f64 / n,
        herald_requests: count(&|c| matches!(c.who, Who::Herald(_))) / n,
        event_source_requests: count(&|c| matches!(c.who, Who::EventSource(_))) / n,
        dynamodb_requests: count(&|c| c.service == "dynamodb") / n,
        sqs_requests: count(&|c| c.service == "sqs") / n,
        sqs_requests_herald: count(&|c| c.service == "sqs" && matches!(c.who, Who::Herald(_))) / n,
        sqs_billed: sqs_billed / n,
        empty_receives: calls.filter(|c| c.is_empty_receive()).count() as u64,
        write_units: units.write_units / n,
        read_units: units.read_units / n,
        units,
        invocations: invocations.len() as f64 / n,
        gb_seconds: gb_seconds / n,
        emails: count(&|c| c.operation == "SendEmail" && c.status < 300) / n,
        sms: count(&|c| c.operation == "Publish(sms)" && c.status < 300) / n,
        pushes: count(&|c| c.operation == "Publish(push)" && c.status < 300) / n,
        topic_publishes: count(&|c| c.operation == "Publish(topic)") / n,
        ..Cost::default()
    };
    let mut per_fn: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for i in invocations {
        let e = per_fn.entry(i.function.clone()).or_default();
        e.0 += 1;
        e.1 += i.records;
    }
    c.batch_fill = per_fn.into_iter().map(|(f, (n, r))| (f, r as f64 / n.max(1) as f64)).collect();
    let mut unpriced = Vec::new();
    let mut price = |name: &str, qty: f64| -> f64 {
        if qty == 0.0 {
            return 0.0;
        }
        match prices.each(name) {
            Some(p) => p * qty * 1e6,
            None => {
                unpriced.push(name.to_owned());
                0.0
            }
        }
    };
    c.usd_per_million_lambda = price("lambda_request", c.invocations) + price("lambda_arm64_gb_second", c.gb_seconds);
    c.usd_per_million_sqs = price("sqs_request", c.sqs_billed);
    c.usd_per_million_dynamodb =
        price("dynamodb_write_request_unit", c.write_units) + price("dynamodb_read_request_unit", c.read_units);
    c.usd_per_million_aws = c.usd_per_million_lambda + c.usd_per_million_sqs + c.usd_per_million_dynamodb;
    c.usd_per_million_providers = price("ses_outbound_email", c.emails)
        + price("sns_publish", c.pushes + c.sms + c.topic_publishes)
        + price("sns_mobile_push_delivery", c.pushes)
        + price("sns_sms_us", c.sms);
    unpriced.dedup();
    c.unpriced = unpriced;
    c
}
