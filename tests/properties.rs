//! Property tests of the parsers that read what others send: the ingest contract
//! (`IngestMessage::parse`, every SQS body ingest receives), the receipts queue's bodies
//! (`Receipt::parse`: SES events and SNS mobile push events in SNS envelopes, custom
//! providers' reports as the webhook relays them) and a provider's report as the webhook
//! reads it (`ProviderReport::parse`). For any input: no panic (a panic on a record path
//! aborts the whole batch in a release build), a refusal carries a code and a reason a person
//! can act on, and what is accepted can be acted on without a panic either.
//!
//! Inputs: arbitrary strings (and bytes), arbitrary JSON built from the contract's and the
//! events' own field names and values, and the real shapes of `fixtures/` (ingest samples,
//! SES and SNS push events in their SNS envelopes) with values replaced, removed, added,
//! wrapped or turned into text, inside the SNS `Message` string as well as outside it.
//!
//! Pure parsing, no moto. 128 cases per property by default (the whole file takes about two
//! seconds in a debug build); for a longer search, `PROPTEST_CASES=20000 cargo test -p herald-tests --test
//! herald -- properties::`. A failure is shrunk to a minimal input, printed, and saved in
//! `tests/proptest-regressions/properties.txt` (commit it: the case is then replayed first
//! on every run).

use herald::contract::{IngestMessage, MAX_REQUEST_BYTES};
use herald::domain::receipts::{ProviderReport, Receipt};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{FileFailurePersistence, TestCaseError};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::LazyLock;

/// Cases per property: 128, unless PROPTEST_CASES says otherwise. Failures are kept in
/// tests/proptest-regressions/properties.txt.
fn config() -> ProptestConfig {
    let from_env = ProptestConfig::default();
    let cases = if std::env::var_os("PROPTEST_CASES").is_some() { from_env.cases } else { 128 };
    let regressions = concat!(env!("CARGO_MANIFEST_DIR"), "/proptest-regressions/properties.txt");
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(regressions))),
        ..from_env
    }
}

/// Any text, and text made of JSON's punctuation, control characters and a few letters
/// (which uniformly drawn characters seldom are).
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        any::<String>(),
        "[\\x00-\\x1f{}\\[\\]\":,\\\\/ a-zA-Z0-9_.+\\-\u{7f}\u{fffe}\u{ffff}]{0,80}",
        "\\{\"[a-zA-Z_]{1,20}\":[^}]{0,60}\\}?",
    ]
    .boxed()
}

// ------------------------------------------------------------------ checks

/// A refusal's code is a stable snake_case word and its reason is not empty.
fn refused(code: &str, detail: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
        "refusal code {code:?} is not a snake_case word"
    );
    prop_assert!(!detail.trim().is_empty(), "refusal {code} has no reason");
    Ok(())
}

fn check_ingest(body: &str) -> Result<(), TestCaseError> {
    match IngestMessage::parse(body) {
        Ok(message) => {
            prop_assert!(!message.type_name().is_empty());
            Ok(())
        }
        Err(rejection) => refused(rejection.code, &rejection.detail),
    }
}

/// Parses a receipts-queue body and, when it is accepted, decides what it means, as the
/// receipts function does.
fn check_receipt(body: &str) -> Result<(), TestCaseError> {
    match Receipt::parse(body) {
        Ok(Receipt::Ses(event)) => {
            let _ = (event.action(), event.kind(), event.message_id());
            Ok(())
        }
        Ok(Receipt::Push(event)) => {
            let _ = (event.action(), event.failed_send(), event.platform());
            Ok(())
        }
        Ok(Receipt::Provider(receipt)) => {
            for e in &receipt.events {
                let _ = e.action();
            }
            Ok(())
        }
        Err(unreadable) => refused(unreadable.code, &unreadable.detail),
    }
}

fn check_report(body: &[u8]) -> Result<(), TestCaseError> {
    match ProviderReport::parse(body) {
        Ok(report) => {
            prop_assert!(!report.events.is_empty() && report.events.len() <= ProviderReport::MAX_EVENTS);
            for e in &report.events {
                let _ = e.action();
            }
            Ok(())
        }
        Err(unreadable) => refused(unreadable.code, &unreadable.detail),
    }
}

// ------------------------------------------------------------- arbitrary JSON

/// Field names of the ingest contract, the SNS envelope, SES and SNS push events and
/// provider reports: arbitrary JSON that uses them reaches past the first `match`.
const KEYS: &[&str] = &[
    "type",
    "Type",
    "Message",
    "TopicArn",
    "MessageId",
    "idempotency_key",
    "recipient",
    "template",
    "kind",
    "channels",
    "mode",
    "data",
    "topic",
    "send_at",
    "expires_at",
    "campaign",
    "email",
    "phone",
    "timezone",
    "locale",
    "channel",
    "granted",
    "source",
    "at",
    "token",
    "platform",
    "device_id",
    "event",
    "value",
    "eventType",
    "notificationType",
    "mail",
    "messageId",
    "tags",
    "herald_message_id",
    "destination",
    "bounce",
    "bounceType",
    "bounceSubType",
    "bouncedRecipients",
    "emailAddress",
    "diagnosticCode",
    "complaint",
    "complainedRecipients",
    "complaintFeedbackType",
    "delivery",
    "reject",
    "reason",
    "open",
    "click",
    "link",
    "failure",
    "errorMessage",
    "deliveryDelay",
    "delayType",
    "EventType",
    "EndpointArn",
    "Enabled",
    "FailureType",
    "Resource",
    "provider",
    "events",
    "message_id",
    "status",
    "address",
    "detail",
    "provider_id",
];

/// Values those fields take, and some that are known to be awkward.
const STRINGS: &[&str] = &[
    "notify",
    "upsert_recipient",
    "set_consent",
    "register_push_token",
    "remove_push_token",
    "erase_recipient",
    "track",
    "purchase",
    "provider_report",
    "Notification",
    "SubscriptionConfirmation",
    "Bounce",
    "Complaint",
    "Delivery",
    "Send",
    "Reject",
    "Open",
    "Click",
    "Rendering Failure",
    "DeliveryDelay",
    "Permanent",
    "Transient",
    "Undetermined",
    "EndpointUpdated",
    "EndpointDeleted",
    "DeliveryFailure",
    "EndpointDisabled",
    "InvalidPlatformToken",
    "false",
    "true",
    "email",
    "sms",
    "push",
    "transactional",
    "marketing",
    "all",
    "first",
    "delivered",
    "bounced",
    "opted_out",
    "failed",
    "APNS",
    "APNS_SANDBOX",
    "GCM",
    "0123456789abcdef0123456789abcdef",
    "user-42",
    "order_shipped",
    "user@example.com",
    "+15555550100",
    "Europe/Paris",
    "fr-FR",
    "arn:aws:sns:us-east-1:123456789012:app/GCM/herald-android",
    "arn:aws:sns:us-east-1:123456789012:endpoint/GCM/herald-android/1",
    "2026-02-20T09:30:04.512Z",
    "",
    " ",
    "\u{0}",
    "\u{FFFE}",
    "\u{FFFF}",
    "é",
    "🎉",
    "\\",
    "\"",
    "{}",
    "[]",
    "null",
];

fn scalar() -> BoxedStrategy<Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<f64>().prop_filter_map("a JSON number", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        3 => prop::sample::select(STRINGS).prop_map(|s| Value::String(s.to_owned())),
        2 => text().prop_map(Value::String),
    ]
    .boxed()
}

fn key() -> BoxedStrategy<String> {
    prop_oneof![3 => prop::sample::select(KEYS).prop_map(str::to_owned), 1 => text()].boxed()
}

fn arbitrary_json() -> BoxedStrategy<Value> {
    scalar()
        .prop_recursive(4, 48, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..8)
                    .prop_map(|fields| Value::Object(fields.into_iter().collect())),
            ]
        })
        .boxed()
}

/// An object of known fields (what the parsers look for first), with arbitrary values.
fn arbitrary_object() -> BoxedStrategy<Value> {
    prop::collection::vec((key(), arbitrary_json()), 0..10).prop_map(|f| Value::Object(f.into_iter().collect())).boxed()
}

// ------------------------------------------------------- fixtures, changed

/// One change to a JSON document, at the node `at` picks among all of them (the root included).
#[derive(Debug, Clone)]
enum Edit {
    Replace(Index, Value),
    Remove(Index),
    Insert(Index, String, Value),
    /// The value inside a one-element array.
    Wrap(Index),
    /// The value as its JSON text, in a string.
    Stringify(Index),
}

fn edit() -> BoxedStrategy<Edit> {
    prop_oneof![
        3 => (any::<Index>(), arbitrary_json()).prop_map(|(at, v)| Edit::Replace(at, v)),
        2 => any::<Index>().prop_map(Edit::Remove),
        2 => (any::<Index>(), key(), arbitrary_json()).prop_map(|(at, k, v)| Edit::Insert(at, k, v)),
        1 => any::<Index>().prop_map(Edit::Wrap),
        1 => any::<Index>().prop_map(Edit::Stringify),
    ]
    .boxed()
}

/// JSON pointers of every node of `value`, the root first.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                pointers(v, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                pointers(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn apply(doc: &mut Value, edit: &Edit) {
    let mut all = Vec::new();
    pointers(doc, String::new(), &mut all);
    let at = |index: &Index| all[index.index(all.len())].clone();
    match edit {
        Edit::Replace(i, v) => {
            if let Some(node) = doc.pointer_mut(&at(i)) {
                *node = v.clone();
            }
        }
        Edit::Remove(i) => {
            let pointer = at(i);
            let Some((parent, last)) = pointer.rsplit_once('/') else { return };
            let last = last.replace("~1", "/").replace("~0", "~");
            match doc.pointer_mut(parent) {
                Some(Value::Object(map)) => drop(map.remove(&last)),
                Some(Value::Array(items)) => {
                    if let Some(n) = last.parse::<usize>().ok().filter(|n| *n < items.len()) {
                        items.remove(n);
                    }
                }
                _ => {}
            }
        }
        Edit::Insert(i, k, v) => match doc.pointer_mut(&at(i)) {
            Some(Value::Object(map)) => drop(map.insert(k.clone(), v.clone())),
            Some(Value::Array(items)) => items.push(v.clone()),
            Some(node) => *node = json!({ k.clone(): v.clone() }),
            None => {}
        },
        Edit::Wrap(i) => {
            if let Some(node) = doc.pointer_mut(&at(i)) {
                *node = json!([node.take()]);
            }
        }
        Edit::Stringify(i) => {
            if let Some(node) = doc.pointer_mut(&at(i)) {
                *node = Value::String(node.to_string());
            }
        }
    }
}

/// A fixture with `edits` applied. An SNS envelope's `Message` (JSON in a string) is opened
/// first, so edits reach inside it too, and closed again unless `keep_open` (a `Message`
/// that is an object, not a string, is a case of its own).
fn changed(seed: &Value, edits: &[Edit], keep_open: bool) -> String {
    let mut doc = seed.clone();
    let opened = match doc.get("Message").and_then(Value::as_str).map(serde_json::from_str::<Value>) {
        Some(Ok(inner)) => {
            doc["Message"] = inner;
            true
        }
        _ => false,
    };
    for edit in edits {
        apply(&mut doc, edit);
    }
    if let Some(message) = doc.get_mut("Message").filter(|m| opened && !keep_open && !m.is_string()) {
        *message = Value::String(message.to_string());
    }
    doc.to_string()
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn files(dir: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(dir);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
}

/// Every ingest sample, valid and invalid, that is JSON.
static INGEST_SEEDS: LazyLock<Vec<Value>> = LazyLock::new(|| {
    let seeds: Vec<Value> =
        ["ingest/valid", "ingest/invalid"].iter().flat_map(|d| files(d)).filter_map(|p| read_json(&p)).collect();
    assert!(seeds.len() > 20, "the ingest fixtures are missing");
    seeds
});

/// Every SES and SNS push fixture, placeholders filled, and a provider report.
static RECEIPT_SEEDS: LazyLock<Vec<Value>> = LazyLock::new(|| {
    let fill = [
        ("__EMAIL__", "someone@example.com"),
        ("__SES_MESSAGE_ID__", "0100019c7a3e4f21-ses-message-id"),
        ("__MESSAGE_ID__", "0123456789abcdef0123456789abcdef"),
        ("__ENDPOINT_ARN__", "arn:aws:sns:us-east-1:123456789012:endpoint/GCM/herald-android/5e3e9847"),
    ];
    let mut seeds: Vec<Value> = ["ses", "ses-notifications", "sns-push"]
        .iter()
        .flat_map(|d| files(d))
        .map(|p| {
            let mut text = std::fs::read_to_string(&p).unwrap();
            for (from, to) in fill {
                text = text.replace(from, to);
            }
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        })
        .collect();
    seeds.push(provider_report_seed());
    seeds
});

/// A provider's report as the webhook relays it on the receipts queue (one key, which
/// no SNS message can be read as).
fn provider_report_seed() -> Value {
    json!({"provider_report": {"provider": "acme", "events": [
        {"message_id": "0123456789abcdef0123456789abcdef", "channel": "sms", "status": "opted_out",
         "provider_id": "acme-1", "address": "+15555550100", "detail": "STOP"},
        {"message_id": "fedcba9876543210fedcba9876543210", "channel": "email", "status": "bounced",
         "address": "someone@example.com"}
    ]}})
}

fn seed_of(seeds: &'static [Value]) -> BoxedStrategy<&'static Value> {
    prop::sample::select(seeds.iter().collect::<Vec<_>>()).boxed()
}

// ------------------------------------------------------------------- properties

proptest! {
    #![proptest_config(config())]

    #[test]
    fn ingest_refuses_any_string_with_a_reason(body in text()) {
        check_ingest(&body)?;
    }

    #[test]
    fn ingest_refuses_any_json_with_a_reason(doc in prop_oneof![arbitrary_object(), arbitrary_json()]) {
        check_ingest(&doc.to_string())?;
    }

    #[test]
    fn ingest_handles_changed_fixtures(
        seed in seed_of(&INGEST_SEEDS),
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        check_ingest(&changed(seed, &edits, false))?;
    }

    #[test]
    fn receipts_refuse_any_string_with_a_reason(body in text()) {
        check_receipt(&body)?;
    }

    #[test]
    fn receipts_refuse_any_json_with_a_reason(doc in prop_oneof![arbitrary_object(), arbitrary_json()]) {
        check_receipt(&doc.to_string())?;
    }

    /// An SNS envelope around arbitrary JSON: the push and SES event parsers get it.
    #[test]
    fn receipts_handle_any_sns_message(message in arbitrary_object(), as_text in any::<bool>()) {
        let message = if as_text { Value::String(message.to_string()) } else { message };
        check_receipt(&json!({"Type": "Notification", "MessageId": "m-1", "Message": message}).to_string())?;
    }

    #[test]
    fn receipts_handle_changed_fixtures(
        seed in seed_of(&RECEIPT_SEEDS),
        edits in prop::collection::vec(edit(), 1..4),
        keep_open in prop::bool::weighted(0.1),
    ) {
        check_receipt(&changed(seed, &edits, keep_open))?;
    }

    #[test]
    fn provider_reports_are_refused_with_a_reason(
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..256),
            arbitrary_json().prop_map(|v| v.to_string().into_bytes()),
            prop::collection::vec(edit(), 1..4).prop_map(|edits| {
                // What a provider POSTs: the events alone.
                let report = json!({"events": provider_report_seed()["provider_report"]["events"].clone()});
                changed(&report, &edits, false).into_bytes()
            }),
        ],
    ) {
        check_report(&body)?;
    }
}

// ------------------------------------------------------ the generators' reach

/// The changed fixtures are worth their cases only if the unchanged ones are accepted: a
/// fixture the parser refuses outright would test nothing but its first `match`.
#[test]
fn the_seeds_are_accepted_unchanged() {
    for seed in RECEIPT_SEEDS.iter() {
        let body = seed.to_string();
        assert!(Receipt::parse(&body).is_ok(), "{body}: {:?}", Receipt::parse(&body).err());
    }
    let valid = files("ingest/valid");
    for path in &valid {
        let body = std::fs::read_to_string(path).unwrap();
        assert!(IngestMessage::parse(&body).is_ok(), "{}: {:?}", path.display(), IngestMessage::parse(&body).err());
    }
    // An edit that changes nothing keeps a seed accepted: the SNS Message goes back in its string.
    for seed in RECEIPT_SEEDS.iter() {
        let same = changed(seed, &[], false);
        assert!(Receipt::parse(&same).is_ok(), "{same}");
    }
}

/// Bodies at the edges the generators seldom reach: the size limit, deep nesting, and
/// characters SQS refuses.
#[test]
fn edge_bodies_are_refused_with_a_reason() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_object = format!("{{\"type\":\"notify\",\"data\":{}1{}}}", "{\"a\":".repeat(200), "}".repeat(200));
    let long_key = format!("{{\"idempotency_key\":\"{}\"}}", "k".repeat(MAX_REQUEST_BYTES));
    let bodies =
        [deep.as_str(), &deep_object, &long_key, "{\"type\":\"notify\"\u{0}}", "\u{FEFF}{}", "{\"type\":\"\u{FFFE}\"}"];
    for body in bodies {
        let start: String = body.chars().take(40).collect();
        if let Err(e) = IngestMessage::parse(body) {
            assert!(!e.detail.trim().is_empty(), "{start}: no reason");
        }
        if let Err(e) = Receipt::parse(body) {
            assert!(!e.detail.trim().is_empty(), "{start}: no reason");
        }
    }
}
