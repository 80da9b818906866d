//! The check at the end: what the providers received (moto's `/moto-api/data.json`),
//! what the ledger says, what is left in the dead-letter queues, and whether any
//! personal data reached the ledger or a log line.
//!
//! Findings are reported by Herald message id, idempotency key, SQS message id or
//! ledger key, never by an address, number or token.

use crate::faults::{FaultEvent, ids};
use crate::observed::{ProviderSend, Target};
use crate::workload::{Sent, Shape, Workload};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use herald::aws::dynamodb::DynamoLedger;
use herald::domain::{IdempotencyKey, MessageId};
use herald::ports::{Ledger, LedgerEntry};
use herald_cli::stack::Stack;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

/// One producer message as sent.
#[derive(Debug, Clone)]
pub struct Published {
    pub what: Sent,
    pub sqs_id: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub lost: usize,
    pub sent_twice: usize,
    pub poison_rejected: usize,
    pub poison_total: usize,
    pub dead_lettered: usize,
    pub wrong_status: usize,
    /// Ledger items and log lines holding an address, number or token.
    pub personal_ledger: usize,
    pub personal_logs: usize,
    /// Messages still visible, in flight or delayed on a function queue at the end.
    pub in_flight: usize,
    /// The slowest notification (from its first publish until the provider took it on
    /// every channel it goes on), and how many took over [`LATE_SECS`].
    pub slowest_secs: i64,
    pub late: usize,
    /// What went wrong, one line each, for stderr.
    pub details: Vec<String>,
}

impl Outcome {
    pub fn perfect(&self) -> bool {
        self.lost == 0
            && self.sent_twice == 0
            && self.poison_rejected == self.poison_total
            && self.dead_lettered == 0
            && self.wrong_status == 0
            && self.personal_ledger == 0
            && self.personal_logs == 0
            && self.in_flight == 0
            && self.late == 0
    }
}

/// What each provider received, by contact point.
#[derive(Debug, Default)]
pub struct Received {
    pub emails: HashMap<String, Vec<String>>,
    pub sms: HashMap<String, usize>,
    pub pushes: HashMap<String, usize>,
}

impl Received {
    pub fn from_moto(data: &Value) -> Self {
        let mut r = Received::default();
        for m in data["ses"]["Message"].as_array().into_iter().flatten() {
            let id = m["id"].as_str().unwrap_or_default().to_owned();
            for to in m["destinations"]["ToAddresses"].as_array().into_iter().flatten() {
                if let Some(to) = to.as_str() {
                    r.emails.entry(to.to_owned()).or_default().push(id.clone());
                }
            }
        }
        for m in data["sns"]["SMS"].as_array().into_iter().flatten() {
            if let Some(n) = m["phone_number"].as_str() {
                *r.sms.entry(n.to_owned()).or_default() += 1;
            }
        }
        for ep in data["sns"]["PlatformEndpoint"].as_array().into_iter().flatten() {
            if let Some(t) = ep["token"].as_str() {
                *r.pushes.entry(t.to_owned()).or_default() += ep["messages"].as_object().map_or(0, |m| m.len());
            }
        }
        r
    }
}

/// A notification the provider took later than this after it was published is late.
pub const LATE_SECS: i64 = 120;

pub struct Inputs<'a> {
    pub workload: &'a Workload,
    pub published: &'a [Published],
    pub sends: &'a [ProviderSend],
    pub stack: &'a Stack,
    pub sdk: &'a aws_config::SdkConfig,
    pub moto_data: &'a Value,
    pub journal: &'a [FaultEvent],
    pub log: &'a Path,
}

pub fn message_id(key: &str) -> Option<MessageId> {
    IdempotencyKey::new(key).ok().map(|k| MessageId::for_key(&k))
}

pub async fn check(i: &Inputs<'_>) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let ddb = aws_sdk_dynamodb::Client::new(i.sdk);
    let ledger_table = i.stack.tables.get("LedgerTable").cloned().unwrap_or_default();
    let ledger = DynamoLedger::new(ddb.clone(), &ledger_table);
    let received = Received::from_moto(i.moto_data);
    let first_sends = first_sends(i.sends, i.moto_data);
    let by_id = journal_by_id(i.journal);

    // Notifications: each contact point got exactly one message; the ledger is right.
    let mut first_publish: HashMap<usize, DateTime<Utc>> = HashMap::new();
    for p in i.published {
        if let Sent::Note { index, .. } = p.what {
            let t = first_publish.entry(index).or_insert(p.at);
            *t = (*t).min(p.at);
        }
    }
    for (index, note) in i.workload.notes.iter().enumerate() {
        let Some(person) = i.workload.people.get(note.person) else { continue };
        let Some(id) = message_id(&note.key) else { continue };
        let mut got: Vec<(&str, usize)> = Vec::new();
        if matches!(note.shape, Shape::Email | Shape::Marketing | Shape::All) {
            let n = person.email.as_ref().and_then(|e| received.emails.get(e)).map_or(0, Vec::len);
            got.push(("email", n));
        }
        if matches!(note.shape, Shape::Sms | Shape::All) {
            got.push(("sms", person.phone.as_ref().and_then(|p| received.sms.get(p)).copied().unwrap_or(0)));
        }
        if matches!(note.shape, Shape::Push | Shape::All) {
            let n = person.token.as_ref().and_then(|(_, t)| received.pushes.get(t)).copied().unwrap_or(0);
            got.push(("push", n));
        }
        let entry = ledger.get(&id).await?;
        let lost: Vec<&str> = got.iter().filter(|(_, n)| *n == 0).map(|(c, _)| *c).collect();
        let twice: Vec<String> = got.iter().filter(|(_, n)| *n > 1).map(|(c, n)| format!("{c} x{n}")).collect();
        let (status, channel) = note.shape.expected();
        let mut wrong = Vec::new();
        match &entry {
            None => wrong.push("no ledger item".to_owned()),
            Some(e) => {
                if e.status.as_str() != status {
                    wrong.push(format!("status {} (expected {status})", e.status.as_str()));
                }
                if let Some(c) = channel
                    && e.channel.as_deref() != Some(c)
                {
                    wrong.push(format!("channel {} (expected {c})", e.channel.as_deref().unwrap_or("-")));
                }
                if e.duplicates != 1 {
                    wrong.push(format!("duplicates {} (expected 1: the producer sent it twice)", e.duplicates));
                }
            }
        }
        let mut late = None;
        if let (Some(published), Some(taken)) =
            (first_publish.get(&index), taken_on_every_channel(&got, &first_sends, person))
        {
            let secs = (taken - *published).num_seconds();
            out.slowest_secs = out.slowest_secs.max(secs);
            if secs > LATE_SECS {
                late = Some(secs);
            }
        }
        if lost.is_empty() && twice.is_empty() && wrong.is_empty() && late.is_none() {
            continue;
        }
        if let Some(secs) = late {
            out.late += 1;
            wrong.push(format!("the provider took it {secs} s after it was published"));
        }
        if !lost.is_empty() {
            out.lost += 1;
        }
        if !twice.is_empty() {
            out.sent_twice += 1;
        }
        // Late only: counted as late, not as a wrong status.
        if wrong.iter().any(|w| !w.starts_with("the provider took it")) {
            out.wrong_status += 1;
        }
        let mut line = format!("{} {} (message {id}, {})", verdict(&lost, &twice, &wrong), note.key, note.shape.name());
        if !lost.is_empty() {
            let _ = write!(line, "; provider got nothing on {}", lost.join(", "));
        }
        if !twice.is_empty() {
            let _ = write!(line, "; provider got {}", twice.join(", "));
        }
        if !wrong.is_empty() {
            let _ = write!(line, "; ledger: {}", wrong.join(", "));
        }
        let _ = write!(line, "; {}", describe(&ddb, &ledger_table, entry.as_ref(), id.as_str()).await);
        let _ = write!(line, "; {}", faults_for(&by_id, &[id.as_str(), &note.key, &person.id]));
        out.details.push(line);
    }

    // Poison: each copy recorded as rejected with its reason.
    out.poison_total = i.workload.poison.len();
    for (index, poison) in i.workload.poison.iter().enumerate() {
        let copies: Vec<&Published> =
            i.published.iter().filter(|p| matches!(p.what, Sent::Poison { index: x, .. } if x == index)).collect();
        let mut problems = Vec::new();
        let keyed = match &poison.key {
            Some(k) => match message_id(k) {
                Some(id) => ledger.get(&id).await?.map(|e| (id, e)),
                None => None,
            },
            None => None,
        };
        for copy in &copies {
            let found = match ledger.rejection(&copy.sqs_id).await? {
                Some((code, _)) => Some(code),
                None => keyed
                    .as_ref()
                    .filter(|(_, e)| e.status.as_str() == "rejected")
                    .map(|(_, e)| e.reason.clone().unwrap_or_default()),
            };
            match (found, poison.kind.reasons()) {
                (None, _) => problems.push(format!(
                    "copy {} not recorded as rejected (ledger: {})",
                    copy.sqs_id,
                    keyed.as_ref().map_or("no item".to_owned(), |(_, e)| status_of(e))
                )),
                (Some(code), Some(reasons)) if !reasons.contains(&code.as_str()) => {
                    problems.push(format!("copy {} rejected as {code:?} (expected {})", copy.sqs_id, reasons.join("|")))
                }
                (Some(code), _) if code.is_empty() => {
                    problems.push(format!("copy {} rejected without a reason", copy.sqs_id))
                }
                _ => {}
            }
        }
        if copies.len() != 2 {
            problems.push(format!("{} copies published", copies.len()));
        }
        if problems.is_empty() {
            out.poison_rejected += 1;
        } else {
            let key = poison.key.clone().unwrap_or_else(|| "(no key)".into());
            let mut ids_of: Vec<&str> = copies.iter().map(|c| c.sqs_id.as_str()).collect();
            ids_of.push(&key);
            let id = keyed.as_ref().map(|(id, _)| id.as_str().to_owned());
            let named = id.as_ref().map(|i| format!(" (message {i})")).unwrap_or_default();
            if let Some(id) = &id {
                ids_of.push(id);
            }
            let faults = faults_for(&by_id, &ids_of);
            out.details.push(format!("poison {} {key}{named}: {}; {faults}", poison.kind.name(), problems.join("; ")));
        }
    }

    // Dead-letter queues: empty. Function queues: nothing left.
    let sqs = aws_sdk_sqs::Client::new(i.sdk);
    for (logical, queue) in &i.stack.queues {
        let counts = queue_counts(&sqs, &queue.url).await?;
        let total: usize = counts.iter().map(|(_, n)| n).sum();
        if total == 0 {
            continue;
        }
        if logical.ends_with("DeadLetterQueue") {
            out.dead_lettered += total;
            let found = dead_letters(&sqs, &queue.url, i.workload).await?;
            out.details.push(format!("dead-lettered: {total} on {logical}: {}", found.join(", ")));
        } else {
            out.in_flight += total;
            let what: Vec<String> = counts.iter().filter(|(_, n)| *n > 0).map(|(k, n)| format!("{k} {n}")).collect();
            out.details.push(format!("not idle: {logical} holds {}", what.join(", ")));
        }
    }
    if out.in_flight > 0 {
        for parked in parked_from_log(i.log) {
            out.details.push(format!("not idle: {parked}"));
        }
    }

    // Personal data: none in the ledger, none in a log line.
    let personal = &i.workload.personal;
    for (pk, attributes) in scan_for(&ddb, &ledger_table, personal).await? {
        out.personal_ledger += 1;
        out.details.push(format!("personal data in the ledger: item {pk}, attribute(s) {}", attributes.join(", ")));
    }
    if let Ok(text) = std::fs::read_to_string(i.log) {
        for (n, line) in text.lines().enumerate() {
            if personal.iter().any(|p| line.contains(p.as_str())) {
                out.personal_logs += 1;
                if out.personal_logs <= 20 {
                    out.details.push(format!(
                        "personal data in a log line: {}:{} ({})",
                        i.log.display(),
                        n + 1,
                        log_fields(line, personal).join(", ")
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// Copies parked behind a claim that still holds, from dispatch's log lines: the
/// messages whose last dispatch line is "claimed by another attempt" (with its
/// channel and until), and that until still ahead.
fn parked_from_log(log: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(log) else { return Vec::new() };
    let now = Utc::now();
    let mut last: HashMap<(String, String), Option<DateTime<Utc>>> = HashMap::new();
    for line in text.lines().filter(|l| l.contains("herald::dispatch")) {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        let f = &v["fields"];
        let Some(id) = f["message_id"].as_str() else { continue };
        let channel = f["channel"].as_str().unwrap_or("-").to_owned();
        let held = f["message"].as_str().is_some_and(|m| m.starts_with("claimed by another attempt"));
        let until = f["until"]
            .as_str()
            .and_then(|u| chrono::NaiveDateTime::parse_from_str(u.trim_end_matches(" UTC"), "%Y-%m-%d %H:%M:%S").ok())
            .map(|u| u.and_utc());
        last.insert((id.to_owned(), channel), if held { until } else { None });
    }
    let mut out: Vec<String> = last
        .into_iter()
        .filter_map(|(key, until)| Some((key, until.filter(|u| *u > now)?)))
        .map(|((id, channel), until)| {
            format!("message {id} ({channel}) parked behind a claim held for {} s more", (until - now).num_seconds())
        })
        .collect();
    out.sort();
    out
}

fn verdict(lost: &[&str], twice: &[String], wrong: &[String]) -> &'static str {
    if !lost.is_empty() {
        "LOST"
    } else if !twice.is_empty() {
        "SENT TWICE"
    } else if wrong.iter().all(|w| w.starts_with("the provider took it")) {
        "LATE"
    } else {
        "WRONG STATUS"
    }
}

fn status_of(e: &LedgerEntry) -> String {
    format!("{}{}", e.status.as_str(), e.reason.as_ref().map(|r| format!(" / {r}")).unwrap_or_default())
}

/// When a provider first took a message for each contact point (push by token).
fn first_sends(sends: &[ProviderSend], data: &Value) -> HashMap<String, DateTime<Utc>> {
    let tokens: HashMap<&str, &str> = data["sns"]["PlatformEndpoint"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ep| Some((ep["arn"].as_str()?, ep["token"].as_str()?)))
        .collect();
    let mut first: HashMap<String, DateTime<Utc>> = HashMap::new();
    for s in sends {
        let contact = match &s.target {
            Target::Email(a) => a.clone(),
            Target::Phone(n) => n.clone(),
            Target::Endpoint(arn) => match tokens.get(arn.as_str()) {
                Some(t) => (*t).to_owned(),
                None => continue,
            },
        };
        let t = first.entry(contact).or_insert(s.at);
        *t = (*t).min(s.at);
    }
    first
}

/// When the provider had taken the notification on every channel it goes on.
fn taken_on_every_channel(
    got: &[(&str, usize)],
    first: &HashMap<String, DateTime<Utc>>,
    person: &crate::workload::Person,
) -> Option<DateTime<Utc>> {
    let mut latest: Option<DateTime<Utc>> = None;
    for (channel, _) in got {
        let contact = match *channel {
            "email" => person.email.clone(),
            "sms" => person.phone.clone(),
            _ => person.token.as_ref().map(|(_, t)| t.clone()),
        }?;
        let at = *first.get(&contact)?;
        latest = Some(latest.map_or(at, |l| l.max(at)));
    }
    latest
}

/// The ledger item in a line: status, reason, channel, claim, the history's steps.
async fn describe(ddb: &aws_sdk_dynamodb::Client, table: &str, entry: Option<&LedgerEntry>, id: &str) -> String {
    let Some(e) = entry else { return "ledger: no item".into() };
    let mut s = format!("ledger {}", status_of(e));
    if let Some(c) = &e.channel {
        let _ = write!(s, " on {c}");
    }
    let _ = write!(s, ", duplicates {}", e.duplicates);
    let raw = ddb
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(id.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .ok()
        .and_then(|o| o.item);
    if let Some(item) = raw {
        if let Some(Ok(claimed)) = item.get("claimed").map(|v| v.as_ss()) {
            let _ = write!(s, ", claimed [{}]", claimed.join(","));
        }
        if let Some(until) = item.get("claim_until").and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok())
            && until > 0
        {
            let _ = write!(s, ", claim until now{:+}s", until - Utc::now().timestamp());
        }
    }
    let steps: Vec<String> = e
        .history
        .iter()
        .map(|h| {
            let mut step = h.status.clone();
            if let Some(c) = &h.channel {
                step.push(':');
                step.push_str(c);
            }
            if let Some(r) = &h.reason {
                step.push('/');
                step.push_str(r);
            }
            step
        })
        .collect();
    let _ = write!(s, ", history {}", steps.join(" > "));
    s
}

fn journal_by_id(journal: &[FaultEvent]) -> HashMap<&str, Vec<&FaultEvent>> {
    let mut m: HashMap<&str, Vec<&FaultEvent>> = HashMap::new();
    for e in journal {
        for id in &e.ids {
            m.entry(id.as_str()).or_default().push(e);
        }
    }
    m
}

/// The faults injected on requests that named any of `ids`, in order.
fn faults_for(by_id: &HashMap<&str, Vec<&FaultEvent>>, ids: &[&str]) -> String {
    let mut events: Vec<&FaultEvent> = ids.iter().filter_map(|id| by_id.get(id)).flatten().copied().collect();
    events.sort_by_key(|e| e.at);
    events.dedup_by(|a, b| std::ptr::eq(*a, *b));
    if events.is_empty() {
        return "no fault on its requests".into();
    }
    let list: Vec<String> = events
        .iter()
        .map(|e| {
            let table = if e.tables.is_empty() { String::new() } else { format!(" {}", e.tables.join("+")) };
            format!("{} {} {}{table} @{:.1}s", e.kind, e.service, e.operation, e.at.as_secs_f64())
        })
        .collect();
    format!("faults on its requests: {}", list.join(", "))
}

/// How many messages a queue holds: visible, in flight and delayed.
pub(crate) async fn queue_counts(sqs: &aws_sdk_sqs::Client, url: &str) -> anyhow::Result<Vec<(&'static str, usize)>> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(A::ApproximateNumberOfMessagesDelayed)
        .send()
        .await?
        .attributes
        .unwrap_or_default();
    let get = |a: A| attrs.get(&a).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
    Ok(vec![
        ("visible", get(A::ApproximateNumberOfMessages)),
        ("in flight", get(A::ApproximateNumberOfMessagesNotVisible)),
        ("delayed", get(A::ApproximateNumberOfMessagesDelayed)),
    ])
}

/// What a dead-letter queue holds, by message id or key (received and left there).
async fn dead_letters(sqs: &aws_sdk_sqs::Client, url: &str, w: &Workload) -> anyhow::Result<Vec<String>> {
    let mut found = Vec::new();
    for _ in 0..20 {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(600)
            .wait_time_seconds(0)
            .send()
            .await?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for m in messages {
            let body = m.body.unwrap_or_default();
            let mut named: Vec<String> = ids(body.as_bytes());
            // A body with no id of its own (say, malformed): which producer message it was.
            if named.is_empty()
                && let Some(i) = w.poison.iter().position(|p| p.body == body)
            {
                named.push(format!("poison #{i} ({})", w.poison[i].kind.name()));
            }
            let kind = w
                .poison
                .iter()
                .find(|p| p.key.as_ref().is_some_and(|k| named.contains(k)))
                .map(|p| format!(" [poison {}]", p.kind.name()))
                .unwrap_or_default();
            found.push(format!("{}{kind}", if named.is_empty() { "(unnamed)".into() } else { named.join("+") }));
        }
    }
    Ok(found)
}

/// Ledger items that hold any of `personal`: (pk, attribute names).
async fn scan_for(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    personal: &[String],
) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let mut hits = Vec::new();
    let mut start = None;
    loop {
        let page = ddb.scan().table_name(table).set_exclusive_start_key(start.take()).send().await?;
        for item in page.items.unwrap_or_default() {
            let mut attributes: Vec<String> = item
                .iter()
                .filter(|(_, v)| {
                    let text = format!("{v:?}");
                    personal.iter().any(|p| text.contains(p.as_str()))
                })
                .map(|(k, _)| k.clone())
                .collect();
            if !attributes.is_empty() {
                attributes.sort();
                let pk = item.get("pk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                hits.push((pk, attributes));
            }
        }
        match page.last_evaluated_key.filter(|k| !k.is_empty()) {
            Some(k) => start = Some(k),
            None => break,
        }
    }
    Ok(hits)
}

/// The names of a JSON log line's fields that hold personal data.
fn log_fields(line: &str, personal: &[String]) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<Value>(line) else { return vec!["(not JSON)".into()] };
    let mut names = Vec::new();
    fn walk(v: &Value, path: &str, personal: &[String], names: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    walk(v, &if path.is_empty() { k.clone() } else { format!("{path}.{k}") }, personal, names)
                }
            }
            Value::String(s) if personal.iter().any(|p| s.contains(p.as_str())) => names.push(path.to_owned()),
            _ => {}
        }
    }
    walk(&v, "", personal, &mut names);
    let target = v["target"].as_str().or(v["fields"]["message"].as_str()).unwrap_or_default();
    if !target.is_empty() {
        names.push(format!("message {:?}", target.chars().take(60).collect::<String>()));
    }
    names
}

/// The faults line: `throttle 212, 5xx 180, outage dynamodb 6s ... (refused 340), applied-then-500 95 (...)`.
pub fn faults_summary(counts: &crate::faults::Counts, outages: &[crate::faults::Outage]) -> String {
    let mut s = format!("throttle {}, 5xx {}", counts.throttle, counts.server_error);
    if !outages.is_empty() {
        let each: Vec<String> = outages.iter().map(|o| format!("{} {}s", o.service, o.length.as_secs())).collect();
        let refused: u64 = counts.outage_refused.values().sum();
        let _ = write!(s, ", outage {} (refused {refused})", each.join(" "));
    }
    let applied: u64 = counts.applied_then_500.values().sum();
    let by: Vec<String> = counts.applied_then_500.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = write!(s, ", applied-then-500 {applied}");
    if !by.is_empty() {
        let _ = write!(s, " ({})", by.join(", "));
    }
    if counts.sqs_refused > 0 {
        let _ = write!(s, ", refused as SQS would {}", counts.sqs_refused);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_are_read_from_motos_data() {
        let data = serde_json::json!({
            "ses": {"Message": [{"id": "a", "destinations": {"ToAddresses": ["x@example.org"]}},
                                {"id": "b", "destinations": {"ToAddresses": ["x@example.org"]}}]},
            "sns": {"SMS": [{"message_id": "1", "phone_number": "+15550000001", "message": "hi"}],
                    "PlatformEndpoint": [{"token": "t1", "messages": {"m1": "{}"}}, {"token": "t1", "messages": {}}]}
        });
        let r = Received::from_moto(&data);
        assert_eq!(r.emails.get("x@example.org").map(Vec::len), Some(2));
        assert_eq!(r.sms.get("+15550000001"), Some(&1));
        assert_eq!(r.pushes.get("t1"), Some(&1));
    }

    #[test]
    fn parked_copies_are_those_whose_last_dispatch_line_is_a_held_claim() {
        let later = (Utc::now() + chrono::TimeDelta::minutes(10)).format("%Y-%m-%d %H:%M:%S UTC");
        let line = |id: &str, message: &str| {
            format!(
                r#"{{"fields":{{"message":"{message}","message_id":"{id}","channel":"email","until":"{later}"}},"target":"herald::dispatch"}}"#
            )
        };
        let log = [
            line("aa", "claimed by another attempt: later"),
            line("bb", "claimed by another attempt: later"),
            line("bb", "already sent: dropped"),
        ]
        .join("\n");
        let path = std::env::temp_dir().join(format!("chaos-parked-{}.log", std::process::id()));
        std::fs::write(&path, log).unwrap();
        let parked = parked_from_log(&path);
        let _ = std::fs::remove_file(&path);
        assert_eq!(parked.len(), 1, "{parked:?}");
        assert!(parked[0].starts_with("message aa (email) parked"), "{parked:?}");
    }

    #[test]
    fn log_lines_name_fields_not_values() {
        let personal = vec!["15550079001".to_owned()];
        let line = r#"{"level":"WARN","fields":{"message":"rejected","detail":"invalid type: integer `15550079001`"},"target":"ingest"}"#;
        let names = log_fields(line, &personal);
        assert!(names.contains(&"fields.detail".to_owned()), "{names:?}");
        assert!(names.iter().all(|n| !n.contains("15550079001")));
    }
}
