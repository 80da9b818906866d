//! The event stream: reads the ledger's and the recipients table's DynamoDB streams
//! and publishes each ledger transition and each consent change on the stack's
//! EventBridge bus (`schema/events-v1.json`, `docs/events.md`).
//!
//! The ledger never waits for this: DynamoDB hands each change to the stream after the
//! write, and this function runs on its own. Delivery is at least once:
//! - `PutEvents` takes ten entries a call. An entry the bus refuses for now
//!   (`InternalFailure`, throttling) is sent again, alone, a few times within the
//!   invocation; so is a whole call that failed.
//! - What is still refused for now answers the stream with the first record not done:
//!   Lambda retries from that record (and every one after it, so some events of the
//!   batch may go out twice: each carries a stable `event_id` to deduplicate on).
//! - An entry refused for what it is (`MalformedDetail`, ...) would be refused forever
//!   and would hold the stream: it goes to the events dead-letter queue, with the code.

#[cfg(feature = "aws")]
pub mod aws;

use herald::config::{ConfigError, Lookup, required};
use herald::domain::events::{
    Event, EventFilter, ItemFailure, StreamEvent, StreamRecord, StreamResponse, consent_event, ledger_events,
};
use herald::lambda::{Error, LambdaEvent};
use herald::ports::{BusEntry, DeadLetters, EntryOutcome, EventBus};
use std::time::Duration;

/// `PutEvents` takes at most ten entries.
pub const MAX_ENTRIES: usize = 10;
/// Calls for one group of entries before the stream is asked to retry.
pub const ATTEMPTS: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The bus's name (`HERALD_EVENT_BUS`).
    pub bus: String,
    /// Every event's `source`, `herald.<stack name>` (`HERALD_EVENT_SOURCE`).
    pub source: String,
    /// Which events go out (`HERALD_EVENT_STATUSES`: `all`, `none` or names).
    pub statuses: EventFilter,
    pub ledger_table: String,
    pub recipients_table: String,
    /// Where entries the bus refuses for good are kept (`HERALD_EVENTS_DLQ_URL`).
    pub dead_letter_queue_url: String,
    /// The pause before the second call, doubled before each next one.
    pub backoff: Duration,
}

impl Config {
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, ConfigError> {
        let statuses = herald::config::optional(get, "HERALD_EVENT_STATUSES").unwrap_or_else(|| "all".to_owned());
        Ok(Self {
            bus: required(get, "HERALD_EVENT_BUS")?,
            source: required(get, "HERALD_EVENT_SOURCE")?,
            statuses: EventFilter::parse(&statuses).map_err(|e| ConfigError(format!("HERALD_EVENT_STATUSES: {e}")))?,
            ledger_table: required(get, "HERALD_LEDGER_TABLE")?,
            recipients_table: required(get, "HERALD_RECIPIENTS_TABLE")?,
            dead_letter_queue_url: required(get, "HERALD_EVENTS_DLQ_URL")?,
            backoff: Duration::from_millis(herald::config::parsed(get, "HERALD_EVENTS_BACKOFF_MS", 200)?),
        })
    }
}

pub struct Deps<B, D> {
    pub bus: B,
    pub dead_letters: D,
    pub config: Config,
}

pub async fn handler<B: EventBus, D: DeadLetters>(
    deps: &Deps<B, D>,
    event: LambdaEvent<StreamEvent>,
) -> Result<StreamResponse, Error> {
    let deadline =
        (event.context.deadline > 0).then(|| std::time::UNIX_EPOCH + Duration::from_millis(event.context.deadline));
    Ok(publish(deps, &event.payload.records, deadline).await)
}

/// Time kept back at the end of an invocation: a group is not started with less left
/// (its calls and their pauses), so the invocation answers rather than times out (which
/// would have the stream send the whole batch again).
pub const MARGIN: Duration = Duration::from_secs(2);

/// The events `record` carries that the filter lets through.
pub fn events_of(config: &Config, record: &StreamRecord) -> Vec<Event> {
    let (old, new) = (record.dynamodb.old_image.as_ref(), record.dynamodb.new_image.as_ref());
    let events = match record.table() {
        Some(t) if t == config.ledger_table => ledger_events(old, new),
        Some(t) if t == config.recipients_table => consent_event(old, new).into_iter().collect(),
        _ => {
            tracing::warn!(source = %record.event_source_arn, "a stream record from a table this function does not read");
            Vec::new()
        }
    };
    events.into_iter().filter(|e| config.statuses.allows(e.topic)).collect()
}

/// Publishes the records' events in order, ten a call. Returns the first record whose
/// events could not all be published, or not in time before `deadline` (nothing after it
/// is tried: the stream retries from there), or no failure.
pub async fn publish<B: EventBus, D: DeadLetters>(
    deps: &Deps<B, D>,
    records: &[StreamRecord],
    deadline: Option<std::time::SystemTime>,
) -> StreamResponse {
    let mut entries: Vec<(usize, BusEntry)> = Vec::new();
    for (index, record) in records.iter().enumerate() {
        for event in events_of(&deps.config, record) {
            match serde_json::to_string(&event.detail) {
                Ok(detail) => {
                    entries.push((index, BusEntry { detail_type: event.detail_type(), detail, time: event.time }))
                }
                Err(e) => {
                    tracing::error!(event_id = %event.detail.event_id, error = %e, "an event that cannot be written")
                }
            }
        }
    }
    let mut tally = Tally::default();
    let mut response = StreamResponse::default();
    for group in entries.chunks(MAX_ENTRIES) {
        let late =
            deadline.is_some_and(|d| d.duration_since(std::time::SystemTime::now()).unwrap_or_default() < MARGIN);
        let outcome = if late {
            Err(group.first().map_or(0, |(record, _)| *record))
        } else {
            publish_group(deps, group.to_vec(), &mut tally).await
        };
        if let Err(first) = outcome {
            let sequence = records.get(first).map(|r| r.dynamodb.sequence_number.clone()).unwrap_or_default();
            tracing::warn!(sequence = %sequence, "events not published: the stream retries from this record");
            response.batch_item_failures.push(ItemFailure { item_identifier: sequence });
            break;
        }
    }
    tally.emit();
    response
}

#[derive(Debug, Default)]
struct Tally {
    published: u64,
    retried: u64,
    parked: u64,
}

impl Tally {
    fn emit(&self) {
        let sets: &[&[&str]] = &[&["Outcome"]];
        herald::metrics::add("Events", self.published, &[("Outcome", "published")], sets);
        herald::metrics::add("Events", self.retried, &[("Outcome", "retried")], sets);
        herald::metrics::add("Events", self.parked, &[("Outcome", "dead_lettered")], sets);
    }
}

/// One group of at most ten entries: `Err` holds the first record (by index) with an
/// entry still not published after [`ATTEMPTS`] calls.
async fn publish_group<B: EventBus, D: DeadLetters>(
    deps: &Deps<B, D>,
    mut todo: Vec<(usize, BusEntry)>,
    tally: &mut Tally,
) -> Result<(), usize> {
    let mut wait = deps.config.backoff;
    for attempt in 1..=ATTEMPTS {
        if attempt > 1 {
            tokio::time::sleep(wait).await;
            wait *= 2;
            tally.retried += todo.len() as u64;
        }
        let sent: Vec<BusEntry> = todo.iter().map(|(_, e)| e.clone()).collect();
        let outcomes = match deps.bus.put(&sent).await {
            Ok(outcomes) => outcomes,
            Err(e) => {
                tracing::warn!(attempt, entries = sent.len(), error = %e, "PutEvents failed");
                continue;
            }
        };
        let mut again = Vec::new();
        let mut refused = Vec::new();
        for ((record, entry), outcome) in todo.into_iter().zip(outcomes) {
            match outcome {
                EntryOutcome::Published => tally.published += 1,
                EntryOutcome::Retry(code) => {
                    tracing::warn!(attempt, code = %code, detail_type = %entry.detail_type, "an event refused for now");
                    again.push((record, entry));
                }
                EntryOutcome::Refused(code) => refused.push((record, entry, code)),
            }
        }
        if !refused.is_empty() {
            let bodies = refused.iter().map(|(_, e, code)| dead_letter(e, code)).collect();
            match deps.dead_letters.park(bodies).await {
                Ok(()) => {
                    for (_, entry, code) in &refused {
                        tracing::error!(code = %code, detail_type = %entry.detail_type, "an event the bus refuses: dead-lettered");
                    }
                    tally.parked += refused.len() as u64;
                }
                // Not kept anywhere yet: it must come back with its record.
                Err(e) => {
                    tracing::warn!(error = %e, "dead letters not taken");
                    again.extend(refused.into_iter().map(|(record, entry, _)| (record, entry)));
                }
            }
        }
        if again.is_empty() {
            return Ok(());
        }
        todo = again;
    }
    Err(todo.iter().map(|(record, _)| *record).min().unwrap_or_default())
}

/// What the dead-letter queue keeps of a refused entry: enough to send it again.
fn dead_letter(entry: &BusEntry, code: &str) -> String {
    let detail: serde_json::Value = serde_json::from_str(&entry.detail).unwrap_or(serde_json::Value::Null);
    serde_json::json!({
        "kind": "event",
        "error_code": code,
        "detail_type": entry.detail_type,
        "time": entry.time.map(|t| t.to_rfc3339()),
        "detail": detail,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald::ports::{PortError, PortResult};
    use serde_json::json;
    use std::sync::Mutex;

    /// A bus that answers each call from a script (then publishes everything), and
    /// keeps what it published.
    #[derive(Default)]
    struct ScriptedBus {
        script: Mutex<Vec<PortResult<Vec<EntryOutcome>>>>,
        calls: Mutex<Vec<Vec<String>>>,
        published: Mutex<Vec<String>>,
    }

    impl EventBus for ScriptedBus {
        async fn put(&self, entries: &[BusEntry]) -> PortResult<Vec<EntryOutcome>> {
            let ids: Vec<String> = entries.iter().map(event_id).collect();
            self.calls.lock().unwrap().push(ids.clone());
            let answer = {
                let mut script = self.script.lock().unwrap();
                if script.is_empty() { Ok(vec![EntryOutcome::Published; entries.len()]) } else { script.remove(0) }
            }?;
            for (id, outcome) in ids.into_iter().zip(&answer) {
                if *outcome == EntryOutcome::Published {
                    self.published.lock().unwrap().push(id);
                }
            }
            Ok(answer)
        }
    }

    #[derive(Default)]
    struct Parked(Mutex<Vec<String>>);

    impl DeadLetters for Parked {
        async fn park(&self, bodies: Vec<String>) -> PortResult<()> {
            self.0.lock().unwrap().extend(bodies);
            Ok(())
        }
    }

    fn event_id(e: &BusEntry) -> String {
        serde_json::from_str::<serde_json::Value>(&e.detail).unwrap()["event_id"].as_str().unwrap().to_owned()
    }

    fn deps(script: Vec<PortResult<Vec<EntryOutcome>>>, statuses: &str) -> Deps<ScriptedBus, Parked> {
        let config = Config {
            bus: "bus".into(),
            source: "herald.test".into(),
            statuses: EventFilter::parse(statuses).unwrap(),
            ledger_table: "Ledger".into(),
            recipients_table: "Recipients".into(),
            dead_letter_queue_url: "dlq".into(),
            backoff: Duration::ZERO,
        };
        Deps {
            bus: ScriptedBus { script: Mutex::new(script), ..ScriptedBus::default() },
            dead_letters: Parked::default(),
            config,
        }
    }

    /// A new ledger item (message `id`) with `n` history entries, at sequence number `seq`.
    fn record(id: &str, n: usize, seq: u32) -> StreamRecord {
        let statuses = ["accepted", "sent", "delivered", "opened", "clicked"];
        let history: Vec<_> = statuses
            .iter()
            .take(n)
            .map(|s| json!({"M": {"s": {"S": s}, "at": {"S": "2026-11-30T10:00:00.000Z"}}}))
            .collect();
        serde_json::from_value(json!({
            "eventName": "INSERT",
            "eventSourceARN": "arn:aws:dynamodb:us-east-1:1:table/Ledger/stream/x",
            "dynamodb": {"SequenceNumber": seq.to_string(), "NewImage": {
                "pk": {"S": id}, "recipient": {"S": "u"}, "template": {"S": "t"}, "history": {"L": history}
            }}
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn events_go_out_ten_a_call_in_order() {
        let d = deps(vec![], "all");
        let records: Vec<_> = (0..5).map(|i| record(&format!("m{i}"), 3, i)).collect();
        let response = publish(&d, &records, None).await;
        assert_eq!(response, StreamResponse::default());
        let calls = d.bus.calls.lock().unwrap().clone();
        assert_eq!(calls.iter().map(Vec::len).collect::<Vec<_>>(), [10, 5]);
        assert_eq!(calls[0][..4], ["m0#0", "m0#1", "m0#2", "m1#0"]);
    }

    #[tokio::test]
    async fn an_entry_refused_for_now_is_sent_again_alone() {
        use EntryOutcome::*;
        let first = vec![Published, Retry("InternalFailure".into()), Published];
        let d = deps(vec![Ok(first)], "all");
        let response = publish(&d, &[record("m", 3, 7)], None).await;
        assert_eq!(response, StreamResponse::default());
        let calls = d.bus.calls.lock().unwrap().clone();
        assert_eq!(calls, [vec!["m#0", "m#1", "m#2"], vec!["m#1"]]);
        assert_eq!(d.bus.published.lock().unwrap().len(), 3, "each published once");
    }

    #[tokio::test]
    async fn what_stays_refused_sends_the_stream_back_to_its_record_and_stops() {
        let refused = || Ok(vec![EntryOutcome::Retry("ThrottlingException".into()); 2]);
        let failed = || Err(PortError::Transient("PutEvents: 503".into()));
        let d = deps(vec![Ok(vec![EntryOutcome::Published; 10]), refused(), failed(), refused()], "all");
        // Six records of two events: the first call takes records 0 to 4, the second
        // group (record 5) is refused, fails, and is refused again.
        let records: Vec<_> = (0..6).map(|i| record(&format!("m{i}"), 2, 100 + i)).collect();
        let response = publish(&d, &records, None).await;
        assert_eq!(response.batch_item_failures, [ItemFailure { item_identifier: "105".into() }]);
        assert_eq!(d.bus.calls.lock().unwrap().len(), 1 + ATTEMPTS as usize);
    }

    #[tokio::test]
    async fn an_entry_refused_for_what_it_is_is_dead_lettered_not_retried() {
        let answer = vec![EntryOutcome::Refused("MalformedDetail".into()), EntryOutcome::Published];
        let d = deps(vec![Ok(answer)], "all");
        let response = publish(&d, &[record("m", 2, 1)], None).await;
        assert_eq!(response, StreamResponse::default());
        assert_eq!(d.bus.calls.lock().unwrap().len(), 1);
        let parked = d.dead_letters.0.lock().unwrap().clone();
        assert_eq!(parked.len(), 1);
        let parked: serde_json::Value = serde_json::from_str(&parked[0]).unwrap();
        assert_eq!(
            (parked["error_code"].as_str(), parked["detail"]["event_id"].as_str()),
            (Some("MalformedDetail"), Some("m#0"))
        );
    }

    #[tokio::test]
    async fn the_filter_keeps_what_the_parameter_names() {
        let d = deps(vec![], "delivered");
        publish(&d, &[record("m", 3, 1)], None).await;
        assert_eq!(d.bus.calls.lock().unwrap().clone(), [vec!["m#2"]]);
        let none = deps(vec![], "none");
        publish(&none, &[record("m", 3, 1)], None).await;
        assert!(none.bus.calls.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn near_its_deadline_it_answers_with_the_first_record_not_tried() {
        let d = deps(vec![], "all");
        let records: Vec<_> = (0..6).map(|i| record(&format!("m{i}"), 2, 100 + i)).collect();
        let soon = std::time::SystemTime::now() + MARGIN / 2;
        let response = publish(&d, &records, Some(soon)).await;
        assert_eq!(response.batch_item_failures, [ItemFailure { item_identifier: "100".into() }]);
        assert!(d.bus.calls.lock().unwrap().is_empty());
    }

    #[test]
    fn config_refuses_an_unknown_status() {
        let env = |name: &str| match name {
            "HERALD_EVENT_STATUSES" => Some("delivered,opend".to_owned()),
            _ => Some("x".to_owned()),
        };
        let err = Config::from_lookup(&env).unwrap_err();
        assert!(err.0.contains("opend"), "{err}");
    }
}
