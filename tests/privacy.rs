//! Personal data stays out of what Herald records: a refused body's rejection names the
//! field and what it expects, never the value; a provider's refusal that names an
//! address reaches the ledger's history without it.

use crate::support::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_name_the_field_but_never_the_value() {
    let t = TestStack::without_functions().await;
    let tag = &t.tag;
    let number = phone(tag, 3);
    let address = format!("ana.{tag}@example.org");
    let digits = number.trim_start_matches('+').to_owned();
    let bodies: Vec<(Value, &str)> = vec![
        (
            json!({"type": "upsert_recipient", "recipient": "ana", "phone": digits.parse::<u64>().unwrap()}),
            "phone: invalid type: integer, expected a string",
        ),
        (json!({"type": "upsert_recipient", "recipient": "ana", "timezone": address}), "timezone is not an IANA"),
        (
            json!({"type": "set_consent", "recipient": "ana", "channel": address, "granted": true, "source": "form"}),
            "channel: unknown variant, expected one of `push`, `email`, `sms`",
        ),
        (
            json!({"idempotency_key": format!("{tag}-k"), "recipient": "ana", "template": "order_shipped",
                   "kind": "transactional", "send_at": number}),
            "send_at: not an RFC 3339 date-time",
        ),
        (json!({"type": number}), "unknown_type"),
    ];
    let ingest = ingest::aws::deps(&t.sdk, &ingest::Config::from_lookup(&t.lookup("ingest")).unwrap());
    let raw: Vec<String> = bodies.iter().map(|(b, _)| b.to_string()).collect();
    let response = ingest::handler(&ingest, sqs_event(&raw)).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "refused bodies are recorded and acknowledged");
    let ledger = t.ledger();
    for (n, (body, expected)) in bodies.iter().enumerate() {
        let (reason, detail) = ledger.rejection(&format!("m{n}")).await.unwrap().expect("a rejection is recorded");
        assert!(format!("{reason}: {detail}").contains(expected), "{body}: {reason}: {detail}");
        for value in [&address, &number, &digits] {
            assert!(!detail.contains(value.as_str()), "{body}: the detail quotes the value: {detail}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_refusal_naming_an_address_is_recorded_without_it() {
    let t = TestStack::without_functions().await;
    let tag = &t.tag;
    let (who, address) = (format!("ivo-{tag}"), format!("ivo.{tag}@example.org"));
    let key = format!("{tag}-unverified");
    let ingest = ingest::aws::deps(&t.sdk, &ingest::Config::from_lookup(&t.lookup("ingest")).unwrap());
    let commands = [
        json!({"type": "upsert_recipient", "recipient": who, "email": address}).to_string(),
        json!({"type": "set_consent", "recipient": who, "channel": "email", "granted": true, "source": "test"})
            .to_string(),
    ];
    ingest::handler(&ingest, sqs_event(&commands)).await.unwrap();
    // The digest's template names no sender of its own: the function's (below) is used.
    let notify = json!({"idempotency_key": key, "recipient": who, "template": "weekly_digest", "kind": "marketing",
                        "topic": "news", "channels": ["email"], "data": {"headline": "x"}});
    ingest::handler(&ingest, sqs_event(&[notify.to_string()])).await.unwrap();
    let eligibility =
        eligibility::aws::deps(&t.sdk, &eligibility::Config::from_lookup(&t.lookup("eligibility")).unwrap());
    let job = receive(&t, "EligibilityQueue").await.unwrap();
    eligibility::handler(&eligibility, received_event(&job)).await.unwrap();

    // A sender SES has not verified: SES refuses with MessageRejected, naming the address.
    let sender = format!("noreply@unverified-{tag}.example.net");
    let env = t.env("dispatch-email", &[("HERALD_FROM_ADDRESS", &sender)]);
    let config = dispatch_email::Config::from_lookup(&|k| env.get(k).cloned()).unwrap();
    let (deps, email) = dispatch_email::aws::deps(&t.sdk, &config);
    let job = receive(&t, "EmailQueue").await.expect("the job is on the email queue");
    let response = dispatch_email::handler(&deps, &email, received_event(&job)).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "a refusal for good is recorded, not retried");

    let e = t.entry(&key).await.unwrap();
    assert_eq!((e.status.as_str(), e.reason.as_deref()), ("failed", Some("provider_rejected")));
    let detail = e.history.last().and_then(|h| h.detail.clone()).unwrap_or_default();
    assert!(detail.starts_with("MessageRejected: SendEmail: "), "the refusal is still told: {detail}");
    assert!(detail.contains("<email>"), "{detail}");
    assert!(!detail.contains(&sender) && !detail.contains(&address), "no address in the ledger: {detail}");
}
