//! The ingest contract is stated twice: by `IngestMessage::parse` (Rust, what the
//! ingest function enforces) and by `schema/ingest-v1.json` (JSON Schema, what
//! producers validate against). These tests hold both to the same verdict on
//! every sample body in `fixtures/ingest/{valid,invalid}/` and on a table of
//! inline bodies.
//!
//! The few rules the schema cannot state (listed in its `description`) are
//! kept out of the agreement samples and checked on their own: the schema
//! accepts those bodies and Herald refuses them.

use herald::contract::{IngestMessage, MAX_REQUEST_BYTES};
use jsonschema::Validator;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const RUST: &str = "Rust (IngestMessage::parse)";
const SCHEMA: &str = "JSON Schema (schema/ingest-v1.json)";

fn schema_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema/ingest-v1.json")
}

fn schema() -> Value {
    let path = schema_file();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The schema compiled as draft 2020-12, with `format` asserted (`date-time`, `email`).
fn validator() -> &'static Validator {
    static VALIDATOR: OnceLock<Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema())
            .unwrap_or_else(|e| panic!("{} does not compile as draft 2020-12: {e}", schema_file().display()))
    })
}

/// One side's verdict on a body: accepted, or why it was refused.
type Verdict = Result<(), String>;

fn rust_verdict(body: &str) -> Verdict {
    IngestMessage::parse(body).map(drop).map_err(|e| e.to_string())
}

fn schema_verdict(body: &str) -> Verdict {
    // A body that is not JSON cannot match any schema.
    let value: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    let errors: Vec<String> =
        validator().iter_errors(&value).map(|e| format!("{e} (at {:?})", e.instance_path().as_str())).collect();
    if errors.is_empty() { Ok(()) } else { Err(errors.join("; ")) }
}

/// Both verdicts on `body`, with one line for each side that does not give the expected one.
fn disagreements(label: &str, body: &str, should_accept: bool) -> Vec<String> {
    [(RUST, rust_verdict(body)), (SCHEMA, schema_verdict(body))]
        .into_iter()
        .filter_map(|(side, verdict)| match (should_accept, verdict) {
            (true, Err(why)) => Some(format!("{label}: should be accepted, but {side} refused it: {why}")),
            (false, Ok(())) => Some(format!("{label}: should be refused, but {side} accepted it")),
            _ => None,
        })
        .collect()
}

fn assert_no_disagreements(problems: &[String]) {
    assert!(problems.is_empty(), "{} disagreement(s):\n{}", problems.len(), problems.join("\n"));
}

/// `(label, body)` for every `.json` file in `fixtures/ingest/<which>/`, sorted by name.
fn samples(which: &str) -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/ingest").join(which);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let label = format!("fixtures/ingest/{which}/{}", p.file_name().unwrap().to_string_lossy());
            let body = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {label}: {e}"));
            (label, body)
        })
        .collect()
}

#[test]
fn schema_is_valid_draft_2020_12() {
    let schema = schema();
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert_eq!(schema["$id"], "https://herald.dev/schema/ingest-v1.json");
    assert!(
        schema["title"].is_string() && schema["description"].is_string(),
        "the schema needs a title and a description"
    );
    if let Err(e) = jsonschema::draft202012::meta::validate(&schema) {
        panic!(
            "{} is not a valid draft 2020-12 schema: {e} (at {:?})",
            schema_file().display(),
            e.instance_path().as_str()
        );
    }
    validator();
}

#[test]
fn every_valid_sample_is_accepted_by_both() {
    let samples = samples("valid");
    assert!(samples.len() >= 15, "only {} valid samples", samples.len());
    let problems: Vec<String> = samples.iter().flat_map(|(label, body)| disagreements(label, body, true)).collect();
    assert_no_disagreements(&problems);
}

#[test]
fn every_invalid_sample_is_refused_by_both() {
    let samples = samples("invalid");
    assert!(samples.len() >= 25, "only {} invalid samples", samples.len());
    let problems: Vec<String> = samples.iter().flat_map(|(label, body)| disagreements(label, body, false)).collect();
    assert_no_disagreements(&problems);
}

/// Every message type, a notify without `type`, and every field the schema
/// declares for each message appear in at least one valid sample.
#[test]
fn valid_samples_cover_every_message_type_and_field() {
    let schema = schema();
    let mut missing = Vec::new();
    let mut notify_without_type = false;
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    for (label, body) in samples("valid") {
        let Ok(message) = IngestMessage::parse(&body) else { continue };
        let value: Value = serde_json::from_str(&body).unwrap();
        let object = value.as_object().unwrap_or_else(|| panic!("{label}: not an object"));
        notify_without_type |= !object.contains_key("type");
        for key in object.keys() {
            seen.insert((message.type_name().to_owned(), key.clone()));
        }
        if let Some(quiet_hours) = object.get("quiet_hours").and_then(Value::as_object) {
            for key in quiet_hours.keys() {
                seen.insert((message.type_name().to_owned(), format!("quiet_hours.{key}")));
            }
        }
    }
    if !notify_without_type {
        missing.push("a notify without `type`".to_owned());
    }
    let branches = schema["allOf"].as_array().unwrap();
    let types = schema["$defs"]["messageType"]["enum"].as_array().unwrap();
    assert_eq!(branches.len(), types.len(), "one `if`/`then` branch for each message type");
    for branch in branches {
        let name = branch["then"]["$ref"].as_str().unwrap().trim_start_matches("#/$defs/");
        let def = &schema["$defs"][name];
        let type_name = def["title"].as_str().unwrap();
        let mut fields: Vec<String> = def["properties"].as_object().unwrap().keys().cloned().collect();
        if def["properties"].get("quiet_hours").is_some() {
            fields.extend(["quiet_hours.start".to_owned(), "quiet_hours.end".to_owned()]);
        }
        for field in fields {
            if !seen.contains(&(type_name.to_owned(), field.clone())) {
                missing.push(format!("{type_name}.{field}"));
            }
        }
    }
    assert!(missing.is_empty(), "no valid sample has: {}", missing.join(", "));
}

fn notify(extra: Value) -> Value {
    let mut body = json!({
        "idempotency_key": "order-1234-shipped",
        "recipient": "user-42",
        "template": "order_shipped",
        "kind": "transactional",
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

fn upsert(extra: Value) -> Value {
    let mut body = json!({"type": "upsert_recipient", "recipient": "user-42"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

#[test]
fn inline_bodies_agree() {
    let emoji = |n: usize| "\u{1F514}".repeat(n);
    let cases: Vec<(&str, String, bool)> = vec![
        // Lengths count characters (code points), not bytes or UTF-16 units.
        ("key of 256 emoji", notify(json!({"idempotency_key": emoji(256)})).to_string(), true),
        ("key of 257 emoji", notify(json!({"idempotency_key": emoji(257)})).to_string(), false),
        (
            "source of 128 emoji",
            json!({"type": "set_consent", "recipient": "u", "channel": "sms", "granted": true, "source": emoji(128)})
                .to_string(),
            true,
        ),
        (
            "source of 129 emoji",
            json!({"type": "set_consent", "recipient": "u", "channel": "sms", "granted": true, "source": emoji(129)})
                .to_string(),
            false,
        ),
        // Control characters are Unicode category Cc: C0, DEL and C1, not other invisible characters.
        ("key with a tab", notify(json!({"idempotency_key": "a\tb"})).to_string(), false),
        ("key with DEL", notify(json!({"idempotency_key": "a\u{7f}b"})).to_string(), false),
        ("key with U+009F", notify(json!({"idempotency_key": "a\u{9f}b"})).to_string(), false),
        ("key with a no-break space", notify(json!({"idempotency_key": "a\u{a0}b"})).to_string(), true),
        ("key with a zero-width space", notify(json!({"idempotency_key": "a\u{200b}b"})).to_string(), true),
        // Push tokens: visible ASCII, up to 4096.
        (
            "token of 4096",
            json!({"type": "register_push_token", "recipient": "u", "platform": "apns", "token": "a".repeat(4096)})
                .to_string(),
            true,
        ),
        (
            "token with ! and ~",
            json!({"type": "remove_push_token", "recipient": "u", "platform": "fcm", "token": "!abc~"}).to_string(),
            true,
        ),
        (
            "token with DEL",
            json!({"type": "register_push_token", "recipient": "u", "platform": "fcm", "token": "abc\u{7f}"})
                .to_string(),
            false,
        ),
        // Contact points and preferences.
        ("phone of 8 digits", upsert(json!({"phone": "+12345678"})).to_string(), true),
        ("phone with a letter", upsert(json!({"phone": "+1234567a9"})).to_string(), false),
        ("email with a quoted local part holding @", upsert(json!({"email": "\"a@b\"@example.org"})).to_string(), true),
        ("email at an IPv4 literal", upsert(json!({"email": "ana@[192.168.0.1]"})).to_string(), false),
        ("email at an IPv6 literal (no dot)", upsert(json!({"email": "ana@[IPv6:2001:db8::1]"})).to_string(), false),
        ("email with a trailing dot", upsert(json!({"email": "ana@example.org."})).to_string(), false),
        ("timezone UTC", upsert(json!({"timezone": "UTC"})).to_string(), true),
        ("timezone Etc/GMT-14", upsert(json!({"timezone": "Etc/GMT-14"})).to_string(), true),
        ("timezone America/Port-au-Prince", upsert(json!({"timezone": "America/Port-au-Prince"})).to_string(), true),
        ("timezone with a trailing slash", upsert(json!({"timezone": "Europe/"})).to_string(), false),
        ("locale es-419", upsert(json!({"locale": "es-419"})).to_string(), true),
        ("locale sr-Latn-RS", upsert(json!({"locale": "sr-Latn-RS"})).to_string(), true),
        ("locale with a 9-character subtag", upsert(json!({"locale": "de-CH1996abc"})).to_string(), false),
        ("locale of 4 letters", upsert(json!({"locale": "fran"})).to_string(), false),
        (
            "quiet hours with a trailing space",
            upsert(json!({"quiet_hours": {"start": "2:00 ", "end": "08:00"}})).to_string(),
            false,
        ),
        ("quiet hours as a string", upsert(json!({"quiet_hours": "22:00-08:00"})).to_string(), false),
        // Profile attributes: scalars and lists of strings, lengths in characters.
        ("attribute of 1024 emoji", upsert(json!({"attributes": {"a": emoji(1024)}})).to_string(), true),
        ("attribute of 1025 emoji", upsert(json!({"attributes": {"a": emoji(1025)}})).to_string(), false),
        ("list element of 1025 emoji", upsert(json!({"attributes": {"a": [emoji(1025)]}})).to_string(), false),
        ("list of 100", upsert(json!({"attributes": {"a": vec!["x"; 100]}})).to_string(), true),
        ("list of 101", upsert(json!({"attributes": {"a": vec!["x"; 101]}})).to_string(), false),
        ("list of lists", upsert(json!({"attributes": {"a": [["x"]]}})).to_string(), false),
        ("attribute name of 64", upsert(json!({"attributes": {"a".repeat(64): 1}})).to_string(), true),
        ("attribute name of 65", upsert(json!({"attributes": {"a".repeat(65): 1}})).to_string(), false),
        ("attribute name with @", upsert(json!({"attributes": {"a@b": 1}})).to_string(), false),
        ("attribute name with é", upsert(json!({"attributes": {"caf\u{e9}": 1}})).to_string(), false),
        ("empty attribute name", upsert(json!({"attributes": {"": 1}})).to_string(), false),
        ("negative and exponent numbers", upsert(json!({"attributes": {"a": -1.5e3, "b": 0}})).to_string(), true),
        (
            "50 attributes",
            upsert(
                json!({"attributes": (0..50).map(|i| (format!("a{i}"), json!(i))).collect::<serde_json::Map<_, _>>()}),
            )
            .to_string(),
            true,
        ),
        (
            "51 attributes",
            upsert(
                json!({"attributes": (0..51).map(|i| (format!("a{i}"), json!(i))).collect::<serde_json::Map<_, _>>()}),
            )
            .to_string(),
            false,
        ),
        // Instants: RFC 3339.
        ("leap second", notify(json!({"send_at": "2016-12-31T23:59:60Z"})).to_string(), true),
        ("29 February in a leap year", notify(json!({"send_at": "2028-02-29T12:00:00Z"})).to_string(), true),
        ("29 February in a common year", notify(json!({"send_at": "2026-02-29T12:00:00Z"})).to_string(), false),
        ("offset -23:59", notify(json!({"send_at": "2026-11-25T18:00:00-23:59"})).to_string(), true),
        ("offset +24:00", notify(json!({"send_at": "2026-11-25T18:00:00+24:00"})).to_string(), false),
        ("offset without minutes", notify(json!({"send_at": "2026-11-25T18:00:00+01"})).to_string(), false),
        // Cross-field rules and defaults.
        ("mode all, transactional, no channels", notify(json!({"mode": "all"})).to_string(), true),
        ("mode all with marketing", notify(json!({"mode": "all", "kind": "marketing"})).to_string(), false),
        (
            "mode all without kind",
            json!({"idempotency_key": "k", "recipient": "u", "template": "t", "mode": "all"}).to_string(),
            false,
        ),
        ("all three channels reversed", notify(json!({"channels": ["sms", "email", "push"]})).to_string(), true),
        ("empty data", notify(json!({"data": {}})).to_string(), true),
        (
            "explicit type notify with a recipient field",
            notify(json!({"type": "notify", "phone": "+15555550100"})).to_string(),
            false,
        ),
        (
            "erase with notify fields",
            json!({"type": "erase_recipient", "recipient": "u", "kind": "marketing"}).to_string(),
            false,
        ),
        // Not objects, not JSON.
        ("whitespace around the object", format!("  \n{}\n  ", notify(json!({}))), true),
        ("empty body", String::new(), false),
        ("truncated object", "{\"recipient\": \"u\"".to_owned(), false),
        ("boolean body", "true".to_owned(), false),
        ("array holding a notify", format!("[{}]", notify(json!({}))), false),
    ];
    let problems: Vec<String> = cases
        .iter()
        .flat_map(|(label, body, accept)| disagreements(&format!("inline case {label:?}"), body, *accept))
        .collect();
    assert_no_disagreements(&problems);
}

/// The rules the schema's description lists as beyond JSON Schema: Herald
/// refuses these bodies, the schema accepts them. If the schema ever states
/// one of them, move the case to the agreement samples.
#[test]
fn rules_only_rust_checks() {
    let oversized = notify(json!({"data": {"blob": "x".repeat(MAX_REQUEST_BYTES)}})).to_string();
    let cases: Vec<(&str, String)> = vec![
        (
            "expires_at equal to send_at",
            notify(json!({"send_at": "2026-11-25T18:00:00Z", "expires_at": "2026-11-25T18:00:00Z"})).to_string(),
        ),
        (
            "expires_at before send_at",
            notify(json!({"send_at": "2026-11-25T18:00:00Z", "expires_at": "2026-11-25T19:00:00+02:00"})).to_string(),
        ),
        ("timezone that does not exist", upsert(json!({"timezone": "Mars/Olympus_Mons"})).to_string()),
        ("timezone in the wrong case", upsert(json!({"timezone": "europe/paris"})).to_string()),
        ("body over 64 KiB", oversized),
        ("digest window over 7 days", notify(json!({"digest": {"key": "k", "window": "8d"}})).to_string()),
        (
            "digest max_wait shorter than its window",
            notify(json!({"digest": {"key": "k", "window": "2h", "sliding": true, "max_wait": "1h"}})).to_string(),
        ),
        (
            "digest max_wait over 7 days",
            notify(json!({"digest": {"key": "k", "window": "2h", "sliding": true, "max_wait": "169h"}})).to_string(),
        ),
        // The schema sees the parsed object. (Herald keeps the last value of a repeated member
        // in typed messages other than a notify without `type`.)
        (
            "repeated member in a notify without type",
            r#"{"idempotency_key": "k", "recipient": "a", "recipient": "b", "template": "t", "kind": "marketing"}"#
                .to_owned(),
        ),
        ("repeated type", r#"{"type": "erase_recipient", "type": "erase_recipient", "recipient": "a"}"#.to_owned()),
        (
            "enter_journey data over 512 bytes",
            json!({"type": "enter_journey", "idempotency_key": "k", "recipient": "u", "journey": "j",
                   "data": {"a": "x".repeat(600)}})
            .to_string(),
        ),
    ];
    let mut problems = Vec::new();
    for (label, body) in &cases {
        if rust_verdict(body).is_ok() {
            problems.push(format!("inline case {label:?}: should be refused, but {RUST} accepted it"));
        }
        if let Err(why) = schema_verdict(body) {
            problems.push(format!(
                "inline case {label:?}: {SCHEMA} now refuses it ({why}); move it to the agreement samples and update the schema's description"
            ));
        }
    }
    assert_no_disagreements(&problems);
}

/// Bodies where the Rust side once was looser than the published contract
/// (chrono's relaxed RFC 3339 and HH:MM parsing, email trimming and
/// `email_address`'s lax domains): both must refuse them.
#[test]
fn rust_is_as_strict_as_the_schema() {
    let cases: Vec<(&str, String)> = vec![
        ("send_at with a space instead of T", notify(json!({"send_at": "2026-11-25 18:00:00Z"})).to_string()),
        ("send_at ending in UTC", notify(json!({"send_at": "2026-11-25T18:00:00 UTC"})).to_string()),
        ("send_at with offset +0100", notify(json!({"send_at": "2026-11-25T18:00:00+0100"})).to_string()),
        ("send_at with a trailing space", notify(json!({"send_at": "2026-11-25T18:00:00Z "})).to_string()),
        ("send_at with a one-digit month", notify(json!({"send_at": "2026-1-25T18:00:00Z"})).to_string()),
        ("send_at with a signed year", notify(json!({"send_at": "+2026-11-25T18:00:00Z"})).to_string()),
        (
            "send_at with second 60 outside a leap second",
            notify(json!({"send_at": "2026-11-25T18:00:60Z"})).to_string(),
        ),
        (
            "quiet hours with a leading space",
            upsert(json!({"quiet_hours": {"start": " 9:00", "end": "08:00"}})).to_string(),
        ),
        (
            "quiet hours with a space before the minute",
            upsert(json!({"quiet_hours": {"start": "09: 0", "end": "08:00"}})).to_string(),
        ),
        ("email with surrounding spaces", upsert(json!({"email": " ana@example.org "})).to_string()),
        ("email with a non-ASCII local part", upsert(json!({"email": "jos\u{e9}@example.org"})).to_string()),
        ("email with a non-ASCII domain", upsert(json!({"email": "ana@ex\u{e4}mple.org"})).to_string()),
        ("email with an underscore in the domain", upsert(json!({"email": "ana@ex_ample.org"})).to_string()),
    ];
    let mut problems = Vec::new();
    for (label, body) in &cases {
        problems.extend(disagreements(&format!("inline case {label:?}"), body, false));
    }
    assert_no_disagreements(&problems);
}
