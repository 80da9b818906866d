//! Bodies SQS will not carry: a request with characters SQS refuses is rejected at
//! ingest with its reason, and one job SQS refuses never fails its neighbours in a
//! `SendMessageBatch`.

use crate::support::*;
use herald::aws::sqs::{QueueUrls, SqsOutbox};
use herald::ports::{Destination, Outbox, Outgoing};
use serde_json::json;

fn outgoing(id: &str, body: impl Into<String>) -> Outgoing {
    Outgoing { id: id.into(), body: body.into(), delay_secs: 0 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_body_sqs_refuses_never_fails_its_neighbours() {
    let t = TestStack::without_functions().await;
    let url = t.queue_url("EligibilityQueue");
    let sqs = aws_sdk_sqs::Client::new(&t.sdk);
    // A queue that takes at most 1 KiB: SQS refuses the whole SendMessageBatch for one entry over it.
    sqs.set_queue_attributes()
        .queue_url(&url)
        .attributes(aws_sdk_sqs::types::QueueAttributeName::MaximumMessageSize, "1024")
        .send()
        .await
        .unwrap();
    let outbox = SqsOutbox::new(sqs, QueueUrls { eligibility: Some(url), ..QueueUrls::default() });
    let mut failed = outbox
        .send(
            Destination::Eligibility,
            vec![
                outgoing("0-0", r#"{"n":0}"#),
                outgoing("1-1", format!(r#"{{"n":1,"pad":"{}"}}"#, "x".repeat(2000))),
                outgoing("2-2", r#"{"n":2}"#),
                // U+FFFE: not a character SQS carries (whatever the endpoint does with it).
                outgoing("3-3", "{\"n\":3,\"note\":\"a\u{FFFE}b\"}"),
                outgoing("4-4", r#"{"n":4}"#),
            ],
        )
        .await
        .expect("the send itself goes through");
    failed.sort();
    assert_eq!(failed, ["1-1", "3-3"], "only the bodies SQS refuses fail");
    let mut bodies = t.drain("EligibilityQueue").await;
    bodies.sort();
    assert_eq!(bodies, [r#"{"n":0}"#, r#"{"n":2}"#, r#"{"n":4}"#]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_jobs_are_batched_under_the_request_size() {
    let t = TestStack::without_functions().await;
    let url = t.queue_url("EligibilityQueue");
    let outbox =
        SqsOutbox::new(aws_sdk_sqs::Client::new(&t.sdk), QueueUrls { eligibility: Some(url), ..QueueUrls::default() });
    // Ten jobs of 120 KiB: each one fits in a message, the ten do not fit in one request.
    let pad = "x".repeat(120 * 1024);
    let messages: Vec<Outgoing> =
        (0..10).map(|n| outgoing(&format!("{n}-{n}"), format!(r#"{{"n":{n},"pad":"{pad}"}}"#))).collect();
    let failed = outbox.send(Destination::Eligibility, messages).await.expect("sent");
    assert!(failed.is_empty(), "every job was taken: {failed:?}");
    assert_eq!(t.drain("EligibilityQueue").await.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sqs_could_not_forward_is_rejected_at_ingest_with_its_reason() {
    let t = TestStack::without_functions().await;
    let tag = &t.tag;
    let (good, bad, surrogate) = (format!("{tag}-good"), format!("{tag}-fffe"), format!("{tag}-d800"));
    let notify = |key: &str, note: &str| {
        // The note is spliced in as raw JSON text: `\uFFFE` arrives as an escape, as SQS would carry it.
        format!(
            r#"{{"idempotency_key": "{key}", "recipient": "rae-{tag}", "template": "order_shipped",
                "kind": "transactional", "data": {{"order_id": "7", "note": "{note}"}}}}"#
        )
    };
    let bodies = [
        notify(&good, "fine"),
        notify(&bad, r"a\uFFFEb"),
        notify(&surrogate, r"a\uD800b"),
        json!({"type": "upsert_recipient", "recipient": format!("rae-{tag}")}).to_string(),
    ];
    let ingest = ingest::aws::deps(&t.sdk, &ingest::Config::from_lookup(&t.lookup("ingest")).unwrap());
    let response = ingest::handler(&ingest, sqs_event(&bodies)).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "the bad bodies are rejected, the rest goes on");

    let ledger = t.ledger();
    let (reason, detail) = ledger.rejection("m1").await.unwrap().expect("U+FFFE is rejected");
    assert_eq!(reason, "invalid_characters", "{detail}");
    assert!(detail.contains("U+FFFE"), "{detail}");
    assert!(t.entry(&bad).await.is_none(), "not admitted");
    let (reason, detail) = ledger.rejection("m2").await.unwrap().expect("an unpaired surrogate is rejected");
    assert_eq!(reason, "malformed_json", "{detail}");
    assert!(t.entry(&surrogate).await.is_none(), "not admitted");

    assert_eq!(t.entry(&good).await.unwrap().status.as_str(), "accepted");
    let forwarded = t.drain("EligibilityQueue").await;
    assert_eq!(forwarded.len(), 1, "the good request went on to eligibility");
    assert!(forwarded[0].contains(&good));
}
