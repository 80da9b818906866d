//! End to end: producer messages on the real ingest queue, every function running
//! on the real queues, assertions on the ledger and on what moto's providers received.

use crate::support::*;
use serde_json::json;

fn shipped(key: &str, recipient: &str, order: &str) -> String {
    json!({"idempotency_key": key, "recipient": recipient, "template": "order_shipped", "kind": "transactional",
           "data": {"order_id": order, "eta": "Tuesday"}, "topic": "order_updates"})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_channel_sends_a_duplicate_once_and_bad_input_does_not_stop_the_batch() {
    let t = TestStack::new().await;
    let tag = &t.tag;
    let (bob, carol_phone, ana_token) = (format!("bob.{tag}@example.org"), phone(tag, 1), format!("fcm-{tag}-ana"));
    t.publish(&[
        json!({"type": "upsert_recipient", "recipient": format!("ana-{tag}"), "locale": "en-GB"}).to_string(),
        json!({"type": "register_push_token", "recipient": format!("ana-{tag}"), "platform": "fcm", "token": ana_token}).to_string(),
        json!({"type": "upsert_recipient", "recipient": format!("bob-{tag}"), "email": bob}).to_string(),
        json!({"type": "upsert_recipient", "recipient": format!("carol-{tag}"), "phone": carol_phone}).to_string(),
    ])
    .await;
    t.wait_idle().await;

    let (k_push, k_email, k_sms) = (format!("{tag}-o1"), format!("{tag}-o2"), format!("{tag}-o3"));
    let ids = t
        .publish(&[
            shipped(&k_push, &format!("ana-{tag}"), "1001"),
            "{not json".to_owned(),
            shipped(&k_push, &format!("ana-{tag}"), "1001"),
            shipped(&k_email, &format!("bob-{tag}"), "1002"),
            json!({"idempotency_key": format!("{tag}-bad"), "recipient": "x", "kind": "transactional"}).to_string(),
            shipped(&k_sms, &format!("carol-{tag}"), "1003"),
            shipped(&k_push, &format!("ana-{tag}"), "1001"),
        ])
        .await;
    t.wait_idle().await;

    let data = provider_data().await;
    let pushes = pushes_to(&data, &ana_token);
    assert_eq!(pushes.len(), 1, "the request sent three times reached the device once: {pushes:?}");
    assert!(pushes[0].as_str().unwrap().contains("Order 1001 has shipped"), "{pushes:?}");
    let emails = emails_to(&data, &bob);
    assert_eq!(emails.len(), 1);
    assert_eq!(emails[0]["subject"], "Order 1002 has shipped");
    assert_eq!(emails[0]["source"], "Example Shop <orders@example.com>", "the template's own sender");
    let sms = sms_to(&data, &carol_phone);
    assert_eq!(sms.len(), 1);
    assert_eq!(sms[0]["message"], "Order 1003 has shipped and arrives Tuesday.");

    let push = t.entry(&k_push).await.unwrap();
    assert_eq!((push.status.as_str(), push.channel.as_deref()), ("sent", Some("push")));
    assert_eq!(push.duplicates, 2, "both repeats are counted on the original");
    let email = t.entry(&k_email).await.unwrap();
    assert_eq!(email.provider_id, None, "SES's events, not dispatch, record its message id");
    let sms_entry = t.entry(&k_sms).await.unwrap();
    assert_eq!(sms_entry.provider_id.as_deref(), sms[0]["message_id"].as_str());

    let ledger = t.ledger();
    let (code, detail) = ledger.rejection(&ids[1]).await.unwrap().expect("the malformed body is recorded");
    assert_eq!(code, "malformed_json", "{detail}");
    let (code, detail) = ledger.rejection(&ids[4]).await.unwrap().expect("the body without a template is recorded");
    assert_eq!(code, "invalid_field");
    assert!(detail.contains("template"), "{detail}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_recorded_with_their_reason() {
    let t = TestStack::new().await;
    let tag = &t.tag;
    let dan = format!("dan-{tag}");
    let erin = format!("erin-{tag}");
    t.publish(&[
        json!({"type": "upsert_recipient", "recipient": dan, "email": format!("dan.{tag}@example.org")}).to_string(),
        json!({"type": "set_consent", "recipient": dan, "channel": "email", "granted": false, "source": "test"})
            .to_string(),
        json!({"type": "upsert_recipient", "recipient": erin, "email": format!("erin.{tag}@example.org")}).to_string(),
    ])
    .await;
    t.wait_idle().await;
    let digest = |key: &str, who: &str| {
        json!({"idempotency_key": key, "recipient": who, "template": "weekly_digest", "kind": "marketing",
               "data": {"headline": "x"}})
        .to_string()
    };
    let k = |s: &str| format!("{tag}-{s}");
    t.publish(&[
        shipped(&k("opted-out"), &dan, "1"),
        digest(&k("no-opt-in"), &erin),
        shipped(&k("no-recipient"), &format!("nobody-{tag}"), "2"),
        json!({"idempotency_key": k("no-template"), "recipient": erin, "template": "nope", "kind": "transactional"}).to_string(),
        json!({"idempotency_key": k("expired"), "recipient": erin, "template": "order_shipped", "kind": "transactional",
               "data": {"order_id": "3"}, "expires_at": "2020-01-01T00:00:00Z"})
        .to_string(),
    ])
    .await;
    t.wait_idle().await;
    for (key, status, reason) in [
        ("opted-out", "suppressed", "opted_out"),
        ("no-opt-in", "suppressed", "no_consent"),
        ("no-recipient", "rejected", "unknown_recipient"),
        ("no-template", "rejected", "unknown_template"),
        ("expired", "expired", "expired"),
    ] {
        let e = t.entry(&k(key)).await.unwrap_or_else(|| panic!("{key} is in the ledger"));
        assert_eq!((e.status.as_str(), e.reason.as_deref()), (status, Some(reason)), "{key}");
    }
    let data = provider_data().await;
    assert!(emails_to(&data, &format!("dan.{tag}@example.org")).is_empty());
    assert!(emails_to(&data, &format!("erin.{tag}@example.org")).is_empty());
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_push_endpoint_falls_back_to_email_and_loses_its_token() {
    let t = TestStack::new().await;
    let tag = &t.tag;
    let hal = format!("hal-{tag}");
    let (token, address) = (format!("apns-{tag}-stale"), format!("hal.{tag}@example.org"));
    t.publish(&[
        json!({"type": "upsert_recipient", "recipient": hal, "email": address}).to_string(),
        json!({"type": "register_push_token", "recipient": hal, "platform": "apns", "token": token}).to_string(),
    ])
    .await;
    t.wait_idle().await;
    let arn = endpoint_for(&provider_data().await, &token).expect("an endpoint was created for the token");
    aws_sdk_sns::Client::new(&t.sdk)
        .set_endpoint_attributes()
        .endpoint_arn(arn)
        .attributes("Enabled", "false")
        .send()
        .await
        .unwrap();

    let key = format!("{tag}-fallback");
    t.publish(&[shipped(&key, &hal, "77")]).await;
    t.wait_idle().await;

    let e = t.entry(&key).await.unwrap();
    assert_eq!((e.status.as_str(), e.channel.as_deref()), ("sent", Some("email")));
    let path: Vec<_> =
        e.history.iter().map(|h| format!("{}:{}", h.status, h.channel.clone().unwrap_or_default())).collect();
    assert_eq!(path, ["accepted:", "sent:push", "failed:push", "sent:email"], "the ledger shows the path taken");
    let data = provider_data().await;
    assert!(pushes_to(&data, &token).is_empty());
    assert_eq!(emails_to(&data, &address).len(), 1);
    let recipients =
        herald::aws::dynamodb::DynamoRecipients::new(aws_sdk_dynamodb::Client::new(&t.sdk), t.table("RecipientsTable"));
    let r = herald::ports::RecipientStore::get(&recipients, &herald::domain::RecipientId::new(hal.clone()).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(r.devices.is_empty(), "the dead token was removed from the recipient");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_bounce_reported_by_ses_suppresses_the_address() {
    let t = TestStack::new().await;
    let tag = &t.tag;
    let gus = format!("gus-{tag}");
    let address = format!("gus.{tag}@example.org");
    t.publish(&[json!({"type": "upsert_recipient", "recipient": gus, "email": address}).to_string()]).await;
    t.wait_idle().await;
    let first = format!("{tag}-first");
    t.publish(&[shipped(&first, &gus, "1")]).await;
    t.wait_idle().await;
    let sent = t.entry(&first).await.unwrap();
    assert_eq!(sent.status.as_str(), "sent");
    let data = provider_data().await;
    let ses_id = emails_to(&data, &address)[0]["id"].as_str().unwrap().to_owned();

    // SES reports a permanent bounce, in the documented event format, through the events topic.
    let fixture =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/ses/bounce-permanent.json")).unwrap();
    let envelope: serde_json::Value = serde_json::from_str(
        &fixture
            .replace("__MESSAGE_ID__", sent.id.as_str())
            .replace("__SES_MESSAGE_ID__", &ses_id)
            .replace("__EMAIL__", &address),
    )
    .unwrap();
    let topic = t.stack.topics.get("SesEventsTopic").unwrap();
    aws_sdk_sns::Client::new(&t.sdk)
        .publish()
        .topic_arn(topic)
        .message(envelope["Message"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    t.wait_idle().await;
    let bounced = t.entry(&first).await.unwrap();
    assert_eq!((bounced.status.as_str(), bounced.reason.as_deref()), ("bounced", Some("suppressed_bounce")));
    assert_eq!(bounced.provider_id.as_deref(), Some(ses_id.as_str()), "the event recorded SES's message id");

    let second = format!("{tag}-second");
    t.publish(&[shipped(&second, &gus, "2")]).await;
    t.wait_idle().await;
    let refused = t.entry(&second).await.unwrap();
    assert_eq!((refused.status.as_str(), refused.reason.as_deref()), ("suppressed", Some("suppressed_bounce")));
    assert_eq!(emails_to(&provider_data().await, &address).len(), 1, "nothing more was sent to the bounced address");
    t.stop().await;
}
