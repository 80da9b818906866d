//! Herald's hot paths in-process: parsing and validating an ingest request, one
//! eligibility decision, rendering each channel's part of `order_shipped`, and
//! turning an SES event into a ledger transition. `make bench` runs this with
//! modest sample counts and folds the means into its table.

use chrono::{TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use herald::contract::{ConsentSource, IngestMessage, NotifyRequest};
use herald::domain::Channel;
use herald::domain::eligibility::{Facts, evaluate};
use herald::domain::receipts::Receipt;
use herald::domain::recipient::{ConsentScope, ConsentState, Recipient};
use herald::domain::template::{CompiledTemplate, TemplateDoc};
use serde_json::{Map, Value, json};
use std::hint::black_box;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new("."))
}

/// A notify request of about 1 KB: the contract's fields and a realistic `data`.
fn ingest_body() -> String {
    let body = json!({
        "type": "notify",
        "idempotency_key": "order-1234-5678-shipped-2026-11-25T18:00:00Z",
        "recipient": "user-42",
        "template": "order_shipped",
        "kind": "transactional",
        "topic": "order_updates",
        "channels": ["push", "email", "sms"],
        "expires_at": "2026-11-26T00:00:00Z",
        "data": {
            "order_id": "1234-5678",
            "eta": "Tuesday 25 November",
            "tracking_url": "https://shop.example.com/orders/1234-5678?ref=email&utm_source=herald&utm_medium=email",
            "carrier": "Example Parcel Service",
            "items": [
                {"sku": "SKU-000123", "name": "Merino wool sweater, navy, size M", "qty": 1, "price": "89.00"},
                {"sku": "SKU-000456", "name": "Organic cotton T-shirt, white, size M", "qty": 2, "price": "25.00"},
                {"sku": "SKU-000789", "name": "Leather belt, brown, 90 cm", "qty": 1, "price": "45.00"}
            ],
            "shipping_address": {"name": "Ana Example", "line1": "12 rue de l'Exemple", "city": "Paris", "postcode": "75011", "country": "FR"},
            "total": "184.00",
            "currency": "EUR",
            "note": "Leave the parcel with the concierge if nobody answers; the building code is on the account page."
        }
    });
    body.to_string()
}

fn template() -> CompiledTemplate {
    let text = std::fs::read_to_string(root().join("templates/order_shipped.toml")).unwrap_or_default();
    let doc: TemplateDoc = toml::from_str(&text).unwrap_or_else(|e| panic!("templates/order_shipped.toml: {e}"));
    CompiledTemplate::compile(doc).unwrap_or_else(|e| panic!("order_shipped does not compile: {e}"))
}

fn data() -> Map<String, Value> {
    let v = json!({"order_id": "1234-5678", "eta": "Tuesday 25 November",
                   "tracking_url": "https://shop.example.com/orders/1234-5678?ref=email"});
    v.as_object().cloned().unwrap_or_default()
}

fn request(kind: &str) -> NotifyRequest {
    let raw = json!({"idempotency_key": "digest-48-user-42", "recipient": "user-42", "template": "weekly_digest",
                     "kind": kind, "topic": "news", "campaign": "digest-48", "channels": ["push", "email", "sms"]});
    match IngestMessage::parse(&raw.to_string()) {
        Ok(IngestMessage::Notify(r)) => *r,
        other => panic!("not a notify request: {other:?}"),
    }
}

fn recipient() -> Recipient {
    let contact = json!({"type": "upsert_recipient", "recipient": "user-42", "email": "ana@example.org",
                         "phone": "+15555550100", "timezone": "Europe/Paris", "locale": "fr-FR",
                         "quiet_hours": {"start": "22:00", "end": "08:00"}});
    let Ok(IngestMessage::UpsertRecipient(cmd)) = IngestMessage::parse(&contact.to_string()) else {
        panic!("upsert_recipient does not parse")
    };
    let mut r = Recipient {
        email: cmd.email.clone(),
        phone: cmd.phone.clone(),
        timezone: cmd.timezone,
        locale: cmd.locale.clone(),
        quiet_hours: cmd.quiet_hours,
        ..Recipient::default()
    };
    let at = Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).single().unwrap_or_default();
    let source = ConsentSource::new("signup-form").unwrap_or_else(|e| panic!("{e}"));
    for (channel, granted) in [(Channel::Email, true), (Channel::Sms, false), (Channel::Push, true)] {
        r.consents.insert(ConsentScope { channel, topic: None }, ConsentState { granted, source: source.clone(), at });
    }
    r
}

fn ses_body() -> String {
    std::fs::read_to_string(root().join("tests/fixtures/ses/delivery.json"))
        .unwrap_or_default()
        .replace("__MESSAGE_ID__", "m-0123456789abcdef0123456789abcdef")
        .replace("__SES_MESSAGE_ID__", "010001829b1d2c3e-abcdef12-3456-7890-abcd-ef1234567890-000000")
        .replace("__EMAIL__", "ana@example.org")
}

fn hot_paths(c: &mut Criterion) {
    let mut g = c.benchmark_group("hot");

    // As in the SPEC's example, with `"type": "notify"`; then without it (the default
    // type, which takes one pass); then serde_json's own parse of the same body into a
    // `Value`, with no validation, for scale.
    let body = ingest_body();
    assert!((900..1200).contains(&body.len()), "the ingest body is {} bytes", body.len());
    g.bench_function("parse_ingest_1kb", |b| b.iter(|| IngestMessage::parse(black_box(&body))));
    let untyped = body.replacen(r#","type":"notify""#, "", 1);
    assert!(untyped.len() < body.len(), "no type to strip");
    g.bench_function("parse_ingest_1kb_without_type", |b| b.iter(|| IngestMessage::parse(black_box(&untyped))));
    g.bench_function("serde_json_value_1kb", |b| b.iter(|| serde_json::from_str::<Value>(black_box(&body))));

    let (marketing, recipient) = (request("marketing"), recipient());
    let channels = [Channel::Push, Channel::Email, Channel::Sms];
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 15, 0, 0).single().unwrap_or_default();
    g.bench_function("eligibility_decision", |b| {
        b.iter(|| {
            let facts = Facts {
                request: black_box(&marketing),
                recipient: black_box(&recipient),
                template_channels: &channels,
                suppressions: &[],
                tried: &[],
                now,
            };
            evaluate(&facts)
        })
    });

    let (t, data) = (template(), data());
    let person = herald::domain::template::RecipientView { id: "user-42".into(), ..Default::default() };
    g.bench_function("render_push", |b| b.iter(|| t.render_push(black_box(Some("fr-FR")), black_box(&data), &person)));
    g.bench_function("render_email", |b| {
        b.iter(|| t.render_email(black_box(Some("fr-FR")), black_box(&data), &person))
    });
    g.bench_function("render_sms", |b| b.iter(|| t.render_sms(black_box(Some("fr-FR")), black_box(&data), &person)));

    let ses = ses_body();
    let Ok(Receipt::Ses(event)) = Receipt::parse(&ses) else { panic!("the SES delivery fixture does not parse") };
    g.bench_function("ses_event_to_transition", |b| b.iter(|| black_box(&event).action()));
    g.bench_function("ses_sqs_body_to_transition", |b| {
        b.iter(|| match Receipt::parse(black_box(&ses)) {
            Ok(Receipt::Ses(e)) => Some(e.action()),
            _ => None,
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    // Modest: two cores shared with other builds.
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = hot_paths
}
criterion_main!(benches);
