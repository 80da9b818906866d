//! The outbound event stream: what each ledger transition and each consent change
//! publishes on the stack's EventBridge bus (`schema/events-v1.json`).
//!
//! The `events` function reads the ledger's and the recipients table's DynamoDB
//! streams. A ledger item's history only grows, so the entries a change appended are
//! its transitions, and each becomes one event; a consent audit item (written once per
//! consent command) becomes one consent event. Nothing here reads an address, number
//! or token: an event names people and messages by id only.

use crate::domain::ledger::Status;
use crate::domain::recipient::ConsentScope;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;

/// The version of the detail's shape (`schema/events-v1.json`).
pub const DETAIL_VERSION: &str = "1";

/// The consent source of a one-click unsubscribe (the webhook function records it).
pub const UNSUBSCRIBE_SOURCE: &str = "one-click-unsubscribe";

// ---------------------------------------------------------------- the stream, as Lambda hands it

/// An attribute value in DynamoDB's JSON, as stream records carry it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub enum StreamValue {
    S(String),
    N(String),
    #[serde(rename = "BOOL")]
    Bool(bool),
    #[serde(rename = "NULL")]
    Null(bool),
    M(Image),
    L(Vec<StreamValue>),
    #[serde(rename = "SS")]
    StringSet(Vec<String>),
    #[serde(rename = "NS")]
    NumberSet(Vec<String>),
    B(String),
    #[serde(rename = "BS")]
    BinarySet(Vec<String>),
}

/// An item as a stream record carries it.
pub type Image = HashMap<String, StreamValue>;

/// A DynamoDB stream event, as Lambda's event source mapping delivers it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamEvent {
    #[serde(rename = "Records", default)]
    pub records: Vec<StreamRecord>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StreamRecord {
    /// `INSERT`, `MODIFY` or `REMOVE`.
    #[serde(rename = "eventName", default)]
    pub event_name: String,
    #[serde(rename = "eventSourceARN", default)]
    pub event_source_arn: String,
    pub dynamodb: StreamChange,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamChange {
    #[serde(rename = "SequenceNumber", default)]
    pub sequence_number: String,
    #[serde(rename = "NewImage", default)]
    pub new_image: Option<Image>,
    #[serde(rename = "OldImage", default)]
    pub old_image: Option<Image>,
}

impl StreamRecord {
    /// The table's name, from `arn:aws:dynamodb:<region>:<account>:table/<name>/stream/<label>`.
    pub fn table(&self) -> Option<&str> {
        self.event_source_arn.split_once(":table/")?.1.split('/').next()
    }
}

/// The answer that tells the event source where to start again: the first record
/// not done, by sequence number (Lambda retries it and every record after it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamResponse {
    #[serde(rename = "batchItemFailures")]
    pub batch_item_failures: Vec<ItemFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemFailure {
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

fn text<'a>(item: &'a Image, name: &str) -> Option<&'a str> {
    match item.get(name)? {
        StreamValue::S(s) => Some(s),
        _ => None,
    }
}

fn boolean(item: &Image, name: &str) -> Option<bool> {
    match item.get(name)? {
        StreamValue::Bool(b) => Some(*b),
        _ => None,
    }
}

fn list<'a>(item: &'a Image, name: &str) -> &'a [StreamValue] {
    match item.get(name) {
        Some(StreamValue::L(l)) => l,
        _ => &[],
    }
}

// ---------------------------------------------------------------- events

/// What an event reports, and the name its filter knows it by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// A ledger status: `accepted`, `delivered`, `suppressed`, ...
    Status(Status),
    /// A consent granted or revoked, other than by a one-click unsubscribe.
    Consent,
    /// A one-click unsubscribe.
    Unsubscribed,
}

impl Topic {
    pub fn name(self) -> &'static str {
        match self {
            Topic::Status(s) => s.as_str(),
            Topic::Consent => "consent",
            Topic::Unsubscribed => "unsubscribed",
        }
    }

    /// Every topic, as the `EventStatuses` parameter names them.
    pub fn all() -> Vec<Topic> {
        use Status::*;
        let statuses = [
            Accepted, Deferred, Sent, Delivered, Opened, Clicked, Rejected, Suppressed, Expired, Failed, Bounced,
            Complained, Digested,
        ];
        statuses.into_iter().map(Topic::Status).chain([Topic::Consent, Topic::Unsubscribed]).collect()
    }
}

/// Which events go out: the `EventStatuses` parameter, `all`, `none`, or a
/// comma-separated list of topic names (`delivered,bounced,complained,unsubscribed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFilter(Vec<Topic>);

impl EventFilter {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        match raw {
            "" | "all" => return Ok(Self(Topic::all())),
            "none" => return Ok(Self(Vec::new())),
            _ => {}
        }
        let all = Topic::all();
        let mut chosen = Vec::new();
        for name in raw.split(',').map(str::trim) {
            let topic = all.iter().find(|t| t.name() == name).ok_or_else(|| {
                let names: Vec<&str> = all.iter().map(|t| t.name()).collect();
                format!("unknown event status {name:?}: expected all, none, or some of {}", names.join(", "))
            })?;
            if !chosen.contains(topic) {
                chosen.push(*topic);
            }
        }
        Ok(Self(chosen))
    }

    pub fn allows(&self, topic: Topic) -> bool {
        self.0.contains(&topic)
    }
}

/// One event's detail (`schema/events-v1.json`). Ids and names only: never an address,
/// a phone number, a token, the request's data or a provider's diagnostic text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detail {
    pub version: String,
    /// Stable across redeliveries of the same change: consumers deduplicate on it.
    pub event_id: String,
    /// When the transition or the consent happened (RFC 3339, UTC).
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A test send (`herald send-test`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<bool>,
    /// A rejected body: its SQS message id and the producer's idempotency key, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Consent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl Detail {
    fn new(event_id: String, at: &str) -> Self {
        Self {
            version: DETAIL_VERSION.to_owned(),
            event_id,
            at: at.to_owned(),
            status: None,
            message_id: None,
            recipient_id: None,
            campaign: None,
            template: None,
            channel: None,
            variant: None,
            topic: None,
            kind: None,
            reason: None,
            test: None,
            rejection_id: None,
            idempotency_key: None,
            granted: None,
            source: None,
        }
    }
}

/// One event for the bus.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub topic: Topic,
    pub time: Option<DateTime<Utc>>,
    pub detail: Detail,
}

impl Event {
    /// EventBridge's style: "Message Delivered", "Consent Revoked", "Recipient Unsubscribed".
    pub fn detail_type(&self) -> String {
        match self.topic {
            Topic::Status(s) => format!("Message {}", Title(s.as_str())),
            Topic::Consent if self.detail.granted == Some(true) => "Consent Granted".to_owned(),
            Topic::Consent => "Consent Revoked".to_owned(),
            Topic::Unsubscribed => "Recipient Unsubscribed".to_owned(),
        }
    }
}

/// `delivered` as `Delivered`.
struct Title<'a>(&'a str);

impl fmt::Display for Title<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.chars();
        if let Some(first) = chars.next() {
            write!(f, "{}{}", first.to_ascii_uppercase(), chars.as_str())?;
        }
        Ok(())
    }
}

fn instant(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw).ok().map(|t| t.with_timezone(&Utc))
}

/// The events a ledger item's change carries: one per history entry it appended (a
/// new item's whole history), or the rejection a `rejected#` item records.
pub fn ledger_events(old: Option<&Image>, new: Option<&Image>) -> Vec<Event> {
    let Some(new) = new else { return Vec::new() };
    let Some(pk) = text(new, "pk") else { return Vec::new() };
    if let Some(source_id) = pk.strip_prefix("rejected#") {
        // Written once per rejected body; a rewrite (a redelivered body) is no new event.
        if old.is_some() {
            return Vec::new();
        }
        let at = text(new, "at").unwrap_or_default();
        let mut detail = Detail::new(format!("{pk}#0"), at);
        detail.status = Some(Status::Rejected.as_str().to_owned());
        detail.rejection_id = Some(source_id.to_owned());
        detail.idempotency_key = text(new, "key").map(str::to_owned);
        detail.reason = text(new, "reason").map(str::to_owned);
        return vec![Event { topic: Topic::Status(Status::Rejected), time: instant(at), detail }];
    }
    let before = old.map_or(0, |o| list(o, "history").len());
    let history = list(new, "history");
    history
        .iter()
        .enumerate()
        .skip(before)
        .filter_map(|(index, entry)| {
            let StreamValue::M(entry) = entry else { return None };
            let status = Status::parse(text(entry, "s")?)?;
            let at = text(entry, "at").unwrap_or_default();
            let mut detail = Detail::new(format!("{pk}#{index}"), at);
            detail.status = Some(status.as_str().to_owned());
            detail.message_id = Some(pk.to_owned());
            detail.recipient_id = text(new, "recipient").map(str::to_owned);
            detail.campaign = text(new, "campaign").map(str::to_owned);
            detail.template = text(new, "template").map(str::to_owned);
            // The entry's own channel (a channel's failure in `all` mode), else the item's.
            detail.channel = text(entry, "c").or_else(|| text(new, "channel")).map(str::to_owned);
            detail.variant = text(new, "variant").map(str::to_owned);
            detail.topic = text(new, "topic").map(str::to_owned);
            detail.kind = text(new, "kind").map(str::to_owned);
            detail.reason = text(entry, "r").map(str::to_owned);
            detail.test = boolean(new, "test").filter(|t| *t);
            Some(Event { topic: Topic::Status(status), time: instant(at), detail })
        })
        .collect()
}

/// The event a recipients-table change carries: a consent audit item's insertion
/// (`sk` = `consent#<at>#<channel>:<topic>`). Profiles, devices and indexes carry none.
pub fn consent_event(old: Option<&Image>, new: Option<&Image>) -> Option<Event> {
    let new = new.filter(|_| old.is_none())?;
    let recipient = text(new, "pk")?;
    let sk = text(new, "sk")?;
    let (_, scope) = sk.strip_prefix("consent#")?.rsplit_once('#')?;
    let scope = ConsentScope::parse_key(scope)?;
    let granted = boolean(new, "granted")?;
    let source = text(new, "source").unwrap_or_default();
    let at = text(new, "at").unwrap_or_default();
    let mut detail = Detail::new(format!("{recipient}#{sk}"), at);
    detail.recipient_id = Some(recipient.to_owned());
    detail.channel = Some(scope.channel.as_str().to_owned());
    detail.topic = scope.topic.map(|t| t.as_str().to_owned());
    detail.granted = Some(granted);
    detail.source = Some(source.to_owned());
    let topic = if !granted && source == UNSUBSCRIBE_SOURCE { Topic::Unsubscribed } else { Topic::Consent };
    Some(Event { topic, time: instant(at), detail })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn image(v: serde_json::Value) -> Image {
        serde_json::from_value(v).unwrap()
    }

    fn admitted() -> serde_json::Value {
        json!({
            "pk": {"S": "m-1"}, "recipient": {"S": "user-42"}, "template": {"S": "order_shipped"},
            "kind": {"S": "marketing"}, "campaign": {"S": "bf"}, "status": {"S": "accepted"}, "rank": {"N": "10"},
            "history": {"L": [{"M": {"s": {"S": "accepted"}, "at": {"S": "2026-11-30T10:00:00.000Z"}}}]}
        })
    }

    #[test]
    fn a_new_item_publishes_its_admission() {
        let events = ledger_events(None, Some(&image(admitted())));
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.detail_type(), "Message Accepted");
        assert_eq!(e.detail.event_id, "m-1#0");
        assert_eq!(e.detail.recipient_id.as_deref(), Some("user-42"));
        assert_eq!(e.detail.campaign.as_deref(), Some("bf"));
        assert_eq!(e.time.map(|t| t.timestamp()), Some(1_796_032_800));
    }

    #[test]
    fn a_change_publishes_only_the_entries_it_appended() {
        let old = image(admitted());
        let mut new = admitted();
        new["channel"] = json!({"S": "email"});
        new["variant"] = json!({"S": "b"});
        new["test"] = json!({"BOOL": true});
        new["email"] = json!({"S": "ana@example.org"});
        new["history"]["L"].as_array_mut().unwrap().extend([
            json!({"M": {"s": {"S": "sent"}, "at": {"S": "2026-11-30T10:00:01.000Z"}, "c": {"S": "email"}}}),
            json!({"M": {"s": {"S": "bounced"}, "at": {"S": "2026-11-30T10:00:02.000Z"}, "r": {"S": "suppressed_bounce"},
                   "d": {"S": "550 ana@example.org unknown"}}}),
        ]);
        let events = ledger_events(Some(&old), Some(&image(new)));
        let types: Vec<String> = events.iter().map(Event::detail_type).collect();
        assert_eq!(types, ["Message Sent", "Message Bounced"]);
        assert_eq!(events[1].detail.event_id, "m-1#2");
        assert_eq!(events[1].detail.reason.as_deref(), Some("suppressed_bounce"));
        assert_eq!(events[1].detail.variant.as_deref(), Some("b"));
        assert_eq!(events[1].detail.test, Some(true), "a test send says so");
        assert_eq!(ledger_events(None, Some(&old))[0].detail.test, None, "and only a test send");
        let text = serde_json::to_string(&events.iter().map(|e| &e.detail).collect::<Vec<_>>()).unwrap();
        assert!(!text.contains("ana@"), "no address and no provider text: {text}");
    }

    #[test]
    fn a_change_without_a_new_entry_publishes_nothing() {
        let old = image(admitted());
        let mut new = admitted();
        new["duplicates"] = json!({"N": "1"});
        assert!(ledger_events(Some(&old), Some(&image(new))).is_empty());
        assert!(ledger_events(Some(&old), None).is_empty(), "a TTL removal");
    }

    #[test]
    fn a_rejected_body_publishes_its_reason_once() {
        let item = image(json!({
            "pk": {"S": "rejected#sqs-9"}, "status": {"S": "rejected"}, "reason": {"S": "invalid_field"},
            "detail": {"S": "field `recipient`"}, "at": {"S": "2026-11-30T10:00:00.000Z"}, "key": {"S": "k-1"}
        }));
        let events = ledger_events(None, Some(&item));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].detail_type(), "Message Rejected");
        assert_eq!(events[0].detail.rejection_id.as_deref(), Some("sqs-9"));
        assert_eq!(events[0].detail.idempotency_key.as_deref(), Some("k-1"));
        assert!(ledger_events(Some(&item), Some(&item)).is_empty());
    }

    #[test]
    fn consent_audit_items_are_consent_or_unsubscribe_events() {
        let audit = |granted: bool, source: &str| {
            image(json!({
                "pk": {"S": "user-42"}, "sk": {"S": "consent#2026-11-30T10:00:00+00:00#email:news"},
                "granted": {"BOOL": granted}, "source": {"S": source}, "at": {"S": "2026-11-30T10:00:00.000Z"}
            }))
        };
        let granted = consent_event(None, Some(&audit(true, "signup"))).unwrap();
        assert_eq!(granted.detail_type(), "Consent Granted");
        assert_eq!(granted.detail.topic.as_deref(), Some("news"));
        assert_eq!(granted.detail.channel.as_deref(), Some("email"));
        let revoked = consent_event(None, Some(&audit(false, "preference-center"))).unwrap();
        assert_eq!((revoked.detail_type().as_str(), revoked.topic), ("Consent Revoked", Topic::Consent));
        let unsubscribed = consent_event(None, Some(&audit(false, UNSUBSCRIBE_SOURCE))).unwrap();
        assert_eq!(unsubscribed.detail_type(), "Recipient Unsubscribed");
        let profile = image(json!({"pk": {"S": "user-42"}, "sk": {"S": "profile"}, "email": {"S": "a@b.c"}}));
        assert_eq!(consent_event(None, Some(&profile)), None);
        assert_eq!(consent_event(Some(&audit(true, "x")), Some(&audit(true, "x"))), None, "a rewrite");
    }

    #[test]
    fn the_filter_takes_all_none_or_names() {
        let f = EventFilter::parse("delivered, bounced,unsubscribed").unwrap();
        assert!(f.allows(Topic::Status(Status::Delivered)));
        assert!(f.allows(Topic::Unsubscribed));
        assert!(!f.allows(Topic::Status(Status::Accepted)));
        assert!(!f.allows(Topic::Consent));
        assert!(EventFilter::parse("all").unwrap().allows(Topic::Consent));
        assert!(!EventFilter::parse("none").unwrap().allows(Topic::Status(Status::Sent)));
        let err = EventFilter::parse("delivred").unwrap_err();
        assert!(err.contains("delivred") && err.contains("delivered"), "{err}");
    }

    #[test]
    fn the_table_comes_from_the_source_arn() {
        let r: StreamRecord = serde_json::from_value(json!({
            "eventName": "INSERT",
            "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/herald-LedgerTable-X/stream/2026-11-30T00:00:00.000",
            "dynamodb": {"SequenceNumber": "1"}
        }))
        .unwrap();
        assert_eq!(r.table(), Some("herald-LedgerTable-X"));
    }
}
