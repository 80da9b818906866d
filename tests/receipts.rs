//! Receipts against moto: every SES fixture (event publishing and the older
//! identity notifications) and every SNS push fixture, through the real receipts
//! handler and its DynamoDB adapters; repeated and out-of-order events; push
//! tokens found by their endpoint and removed.

use crate::support::*;
use chrono::{TimeDelta, Utc};
use herald::aws::dynamodb::{DynamoLedger, DynamoRecipients, DynamoSuppression};
use herald::contract::{IngestMessage, NotifyRequest};
use herald::domain::ledger::{Status, SuppressionCause};
use herald::domain::{Channel, EmailAddress, MessageId, RecipientId};
use herald::lambda::{Context, LambdaEvent, SqsBatchResponse, SqsEvent};
use herald::ports::*;
use serde_json::json;

/// The receipts function's dependencies, configured from its template-resolved environment.
pub fn receipts_deps(t: &TestStack) -> receipts::aws::AwsDeps {
    let spec = t.stack.functions.iter().find(|f| f.name == "receipts").expect("the template declares receipts");
    let env = spec.env.clone();
    let config = receipts::Config::from_lookup(&move |name: &str| env.get(name).cloned()).unwrap();
    receipts::aws::deps(&t.sdk, &config)
}

/// Runs the receipts handler over SQS records with these bodies, as Lambda would.
pub async fn run_receipts(deps: &receipts::aws::AwsDeps, bodies: &[String]) -> SqsBatchResponse {
    let records: Vec<_> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| json!({"messageId": format!("m-{i}-{}", Utc::now().timestamp_nanos_opt().unwrap()), "body": b}))
        .collect();
    let event: SqsEvent = serde_json::from_value(json!({ "Records": records })).unwrap();
    receipts::handler(deps, LambdaEvent::new(event, Context::default())).await.unwrap()
}

/// A fixture's text with its placeholders filled in.
pub fn fixture(path: &str, replacements: &[(&str, &str)]) -> String {
    let full = format!("{}/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"));
    for (from, to) in replacements {
        text = text.replace(from, to);
    }
    assert!(!text.contains("__"), "{path}: a placeholder was left unfilled");
    text
}

fn request(key: &str, campaign: &str) -> NotifyRequest {
    let body = json!({"idempotency_key": key, "recipient": "user-1", "template": "order_shipped",
                      "kind": "transactional", "campaign": campaign});
    match IngestMessage::parse(&body.to_string()).unwrap() {
        IngestMessage::Notify(r) => *r,
        other => panic!("{other:?}"),
    }
}

/// A message in the ledger as dispatch leaves it after sending an email.
pub async fn sent_email(ledger: &DynamoLedger, key: &str) -> MessageId {
    sent_on(ledger, key, Channel::Email).await
}

/// A message in the ledger as dispatch leaves it after sending on `channel`.
pub async fn sent_on(ledger: &DynamoLedger, key: &str, channel: Channel) -> MessageId {
    let req = request(key, "spring");
    let id = MessageId::for_key(&req.idempotency_key);
    let now = Utc::now();
    let admit = Admit {
        id: &id,
        source_id: "sqs-1",
        request: &req,
        now,
        dedupe_until: now + TimeDelta::hours(24),
        expires_at: now + TimeDelta::days(30),
    };
    assert_eq!(ledger.admit(admit).await.unwrap(), Admission::New);
    let sent = Transition::new(Status::Sent, now).channel(channel);
    assert_eq!(ledger.transition(&id, sent).await.unwrap(), Applied::Applied);
    id
}

pub fn statuses(entry: &LedgerEntry) -> Vec<String> {
    entry.history.iter().map(|h| h.status.clone()).collect()
}

pub async fn suppressed(t: &TestStack, address: &str) -> Option<SuppressionCause> {
    let list = DynamoSuppression::new(aws_sdk_dynamodb::Client::new(&t.sdk), t.table("SuppressionTable"));
    let hash = EmailAddress::new(address).unwrap().suppression_hash();
    list.find(&[(Channel::Email, hash)]).await.unwrap().first().map(|(_, cause)| *cause)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ses_event_fixture_updates_the_ledger_and_the_suppression_list() {
    let t = TestStack::without_functions().await;
    let deps = receipts_deps(&t);
    let ledger = t.ledger();
    // (fixture, status after, reason after, last history entry, detail of it, suppression)
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, &'a str, Option<&'a str>, Option<SuppressionCause>);
    let cases: [Case; 10] = [
        ("send", "sent", None, "sent", None, None),
        ("delivery", "delivered", None, "delivered", None, None),
        ("open", "opened", None, "opened", None, None),
        ("click", "clicked", None, "clicked", Some("link track-order"), None),
        (
            "bounce-permanent",
            "bounced",
            Some("suppressed_bounce"),
            "bounced",
            Some("Permanent/General 5.1.1"),
            Some(SuppressionCause::Bounce),
        ),
        ("bounce-transient", "sent", None, "bounced", Some("Transient/MailboxFull 5.2.2"), None),
        (
            "complaint",
            "complained",
            Some("suppressed_complaint"),
            "complained",
            Some("abuse"),
            Some(SuppressionCause::Complaint),
        ),
        ("reject", "failed", Some("provider_rejected"), "failed", Some("Bad content"), None),
        (
            "rendering-failure",
            "failed",
            Some("render_failed"),
            "failed",
            Some("Attribute 'order_number' is not present in the rendering data."),
            None,
        ),
        ("delivery-delay", "sent", None, "sent", Some("delivery delayed: TransientCommunicationFailure"), None),
    ];
    for (name, status, reason, last, detail, suppression) in cases {
        let key = format!("{}-{name}", t.tag);
        let id = sent_email(&ledger, &key).await;
        let address = format!("{name}.{}@example.org", t.tag);
        let ses_id = format!("ses-{name}-{}", t.tag);
        let body = fixture(
            &format!("ses/{name}.json"),
            &[("__MESSAGE_ID__", id.as_str()), ("__SES_MESSAGE_ID__", &ses_id), ("__EMAIL__", &address)],
        );
        let response = run_receipts(&deps, &[body]).await;
        assert!(response.batch_item_failures.is_empty(), "{name}: {:?}", response.batch_item_failures);

        let e = ledger.get(&id).await.unwrap().unwrap();
        assert_eq!((e.status.as_str(), e.reason.as_deref()), (status, reason), "{name}");
        let h = e.history.last().unwrap();
        assert_eq!((h.status.as_str(), h.detail.as_deref()), (last, detail), "{name}: {:?}", statuses(&e));
        if name == "send" {
            assert_eq!(statuses(&e), ["accepted", "sent"], "a Send event writes nothing");
        } else {
            assert_eq!(e.provider_id.as_deref(), Some(ses_id.as_str()), "{name}: the SES message id is kept");
        }
        assert_eq!(suppressed(&t, &address).await, suppression, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_feedback_notifications_suppress_without_a_message_id() {
    let t = TestStack::without_functions().await;
    let deps = receipts_deps(&t);
    let (bounced, complained) = (format!("nb.{}@example.org", t.tag), format!("nc.{}@example.org", t.tag));
    let bodies = [
        fixture("ses-notifications/bounce-permanent.json", &[("__EMAIL__", &bounced), ("__SES_MESSAGE_ID__", "x-1")]),
        fixture("ses-notifications/complaint.json", &[("__EMAIL__", &complained), ("__SES_MESSAGE_ID__", "x-2")]),
    ];
    let response = run_receipts(&deps, &bodies).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(suppressed(&t, &bounced).await, Some(SuppressionCause::Bounce));
    assert_eq!(suppressed(&t, &complained).await, Some(SuppressionCause::Complaint));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_and_out_of_order_events_never_move_a_message_backwards() {
    let t = TestStack::without_functions().await;
    let deps = receipts_deps(&t);
    let ledger = t.ledger();
    let id = sent_email(&ledger, &format!("{}-order", t.tag)).await;
    let address = format!("order.{}@example.org", t.tag);
    let event = |name: &str| {
        fixture(
            &format!("ses/{name}.json"),
            &[("__MESSAGE_ID__", id.as_str()), ("__SES_MESSAGE_ID__", "ses-order"), ("__EMAIL__", &address)],
        )
    };
    // The click arrives first, then the open, then the delivery twice, then the send.
    let late = [event("click"), event("open"), event("delivery"), event("delivery"), event("send")];
    for body in &late {
        assert!(run_receipts(&deps, std::slice::from_ref(body)).await.batch_item_failures.is_empty());
    }
    let after_first = ledger.get(&id).await.unwrap().unwrap();
    assert_eq!(after_first.status, Status::Clicked);
    assert_eq!(statuses(&after_first), ["accepted", "sent", "clicked"], "late events leave no trace");

    // The whole sequence again, as SNS may redeliver it: nothing changes.
    assert!(run_receipts(&deps, &late).await.batch_item_failures.is_empty());
    assert_eq!(ledger.get(&id).await.unwrap().unwrap(), after_first);

    // A complaint outranks everything the person did before it; a bounce reported after it cannot undo it.
    for body in [event("complaint"), event("bounce-permanent")] {
        assert!(run_receipts(&deps, &[body]).await.batch_item_failures.is_empty());
    }
    let e = ledger.get(&id).await.unwrap().unwrap();
    assert_eq!((e.status, e.reason.as_deref()), (Status::Complained, Some("suppressed_complaint")));
    assert_eq!(statuses(&e), ["accepted", "sent", "clicked", "complained"]);
    // Suppression is a fact about the address, not the message: the bounce still suppresses
    // (it arrives after the complaint and overwrites its cause).
    assert!(suppressed(&t, &address).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_receipts_are_recorded_and_do_not_stop_the_batch() {
    let t = TestStack::without_functions().await;
    let deps = receipts_deps(&t);
    let ledger = t.ledger();
    let id = sent_email(&ledger, &format!("{}-batch", t.tag)).await;
    let delivery = fixture(
        "ses/delivery.json",
        &[("__MESSAGE_ID__", id.as_str()), ("__SES_MESSAGE_ID__", "ses-b"), ("__EMAIL__", "b@example.org")],
    );
    let bodies = ["{not json".to_owned(), delivery, json!({"Type": "Notification", "Message": "{}"}).to_string()];
    let records: Vec<_> =
        bodies.iter().enumerate().map(|(i, b)| json!({"messageId": format!("{}-bad-{i}", t.tag), "body": b})).collect();
    let event: SqsEvent = serde_json::from_value(json!({ "Records": records })).unwrap();
    let response = receipts::handler(&deps, LambdaEvent::new(event, Context::default())).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "refusals are recorded, not retried");
    assert_eq!(ledger.get(&id).await.unwrap().unwrap().status, Status::Delivered);
    for i in [0, 2] {
        let (code, _) = ledger.rejection(&format!("{}-bad-{i}", t.tag)).await.unwrap().expect("recorded");
        assert_eq!(code, "invalid_event");
    }
}

/// Registers a token through the real ingest function.
async fn register(t: &TestStack, who: &str, token: &str, device_id: Option<&str>) {
    let mut cmd = json!({"type": "register_push_token", "recipient": who, "platform": "fcm", "token": token});
    if let Some(d) = device_id {
        cmd["device_id"] = d.into();
    }
    t.publish(&[cmd.to_string()]).await;
    t.wait_idle().await;
}

/// Whether SNS still has a platform endpoint (moto's data.json keeps deleted ones).
async fn endpoint_exists(t: &TestStack, arn: &str) -> bool {
    let sns = aws_sdk_sns::Client::new(&t.sdk);
    match sns.get_endpoint_attributes().endpoint_arn(arn).send().await {
        Ok(_) => true,
        Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found_exception()) => false,
        Err(e) => panic!("GetEndpointAttributes: {e:?}"),
    }
}

/// Whether the recipients table holds the index item of an endpoint (what push events look up).
async fn endpoint_indexed(t: &TestStack, arn: &str) -> bool {
    use aws_sdk_dynamodb::types::AttributeValue;
    let out = aws_sdk_dynamodb::Client::new(&t.sdk)
        .get_item()
        .table_name(t.table("RecipientsTable"))
        .key("pk", AttributeValue::S(format!("endpoint#{arn}")))
        .key("sk", AttributeValue::S("device".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    out.item.is_some()
}

async fn tokens_of(t: &TestStack, who: &str) -> Vec<String> {
    let store = DynamoRecipients::new(aws_sdk_dynamodb::Client::new(&t.sdk), t.table("RecipientsTable"));
    let r = RecipientStore::get(&store, &RecipientId::new(who).unwrap()).await.unwrap();
    r.map(|r| r.devices.into_iter().map(|d| d.token.as_str().to_owned()).collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_events_remove_the_token_from_whoever_registered_it() {
    let t = TestStack::new().await;
    let tag = &t.tag;
    let who = |n: &str| format!("{n}-{tag}");
    let token = |n: &str| format!("fcm-{tag}-{n}");
    for n in ["ana", "bob", "carol", "dan", "erin"] {
        register(&t, &who(n), &token(n), None).await;
    }
    let data = provider_data().await;
    let arn = |n: &str| endpoint_for(&data, &token(n)).expect("an endpoint was made for the token");
    let endpoint_event = |path: &str, n: &str| fixture(path, &[("__ENDPOINT_ARN__", &arn(n))]);
    let still_enabled =
        endpoint_event("sns-push/endpoint-disabled.json", "dan").replace("\\\"false\\\"", "\\\"true\\\"");
    let throttled = endpoint_event("sns-push/delivery-failure.json", "erin").replace("EndpointDisabled", "Throttled");
    let messages = [
        endpoint_event("sns-push/endpoint-disabled.json", "ana"),
        endpoint_event("sns-push/delivery-failure.json", "bob"),
        endpoint_event("sns-push/endpoint-deleted.json", "carol"),
        still_enabled,
        throttled,
    ];
    // As in a deployment: the platform applications publish to the push events topic,
    // which delivers to the receipts queue.
    let sns = aws_sdk_sns::Client::new(&t.sdk);
    let topic = t.stack.topics.get("PushEventsTopic").unwrap();
    for envelope in messages {
        let v: serde_json::Value = serde_json::from_str(&envelope).unwrap();
        sns.publish().topic_arn(topic).message(v["Message"].as_str().unwrap()).send().await.unwrap();
    }
    t.wait_idle().await;
    for (n, kept) in [("ana", false), ("bob", false), ("carol", false), ("dan", true), ("erin", true)] {
        let expected = if kept { vec![token(n)] } else { Vec::new() };
        assert_eq!(tokens_of(&t, &who(n)).await, expected, "{n}");
        assert_eq!(endpoint_indexed(&t, &arn(n)).await, kept, "{n}");
    }
    // A second copy of an event finds nobody holding the endpoint and changes nothing.
    let deps = receipts_deps(&t);
    let again = run_receipts(&deps, &[endpoint_event("sns-push/endpoint-deleted.json", "ana")]).await;
    assert!(again.batch_item_failures.is_empty());
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_keeps_one_token_and_a_token_has_one_owner() {
    let t = TestStack::new().await;
    let tag = &t.tag;
    let (ana, bob) = (format!("ana-{tag}"), format!("bob-{tag}"));
    let (old, new) = (format!("fcm-{tag}-old"), format!("fcm-{tag}-new"));

    // The app registers, then its token rotates: the device id ties the two together.
    register(&t, &ana, &old, Some("install-1")).await;
    let old_arn = endpoint_for(&provider_data().await, &old).unwrap();
    assert!(endpoint_exists(&t, &old_arn).await);
    register(&t, &ana, &new, Some("install-1")).await;
    assert_eq!(tokens_of(&t, &ana).await, std::slice::from_ref(&new), "the new token replaced the old one");
    assert!(!endpoint_exists(&t, &old_arn).await, "the old token's endpoint was deleted");
    // The same token again, with or without the device id: still one device.
    register(&t, &ana, &new, Some("install-1")).await;
    register(&t, &ana, &new, None).await;
    assert_eq!(tokens_of(&t, &ana).await, std::slice::from_ref(&new));

    // Someone else signs in on the same phone: the token is theirs now, and only theirs.
    register(&t, &bob, &new, Some("install-1")).await;
    assert_eq!(tokens_of(&t, &ana).await, Vec::<String>::new());
    assert_eq!(tokens_of(&t, &bob).await, std::slice::from_ref(&new));
    let new_arn = endpoint_for(&provider_data().await, &new).unwrap();
    assert!(endpoint_exists(&t, &new_arn).await, "the endpoint in use is kept");

    // Removing it also forgets the endpoint: a later push event for it finds nobody.
    assert!(endpoint_indexed(&t, &new_arn).await);
    t.publish(&[json!({"type": "remove_push_token", "recipient": bob, "platform": "fcm", "token": new}).to_string()])
        .await;
    t.wait_idle().await;
    assert_eq!(tokens_of(&t, &bob).await, Vec::<String>::new());
    assert!(!endpoint_indexed(&t, &new_arn).await, "the endpoint's index item went with the token");

    // Erasure takes the endpoint index with the profile.
    let carol = format!("carol-{tag}");
    let token = format!("fcm-{tag}-carol");
    register(&t, &carol, &token, None).await;
    let carol_arn = endpoint_for(&provider_data().await, &token).unwrap();
    assert!(endpoint_indexed(&t, &carol_arn).await);
    t.publish(&[json!({"type": "erase_recipient", "recipient": carol}).to_string()]).await;
    t.wait_idle().await;
    assert!(!endpoint_indexed(&t, &carol_arn).await, "no index item names the erased recipient");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_registered_again_after_its_endpoint_was_disabled_is_enabled_again() {
    let t = TestStack::new().await;
    let (who, token) = (format!("hal-{}", t.tag), format!("fcm-{}-hal", t.tag));
    register(&t, &who, &token, None).await;
    let arn = endpoint_for(&provider_data().await, &token).unwrap();
    let sns = aws_sdk_sns::Client::new(&t.sdk);
    sns.set_endpoint_attributes().endpoint_arn(&arn).attributes("Enabled", "false").send().await.unwrap();
    // The platform disabled it; the push event removes the token.
    let deps = receipts_deps(&t);
    run_receipts(&deps, &[fixture("sns-push/endpoint-disabled.json", &[("__ENDPOINT_ARN__", &arn)])]).await;
    assert_eq!(tokens_of(&t, &who).await, Vec::<String>::new());

    // The app starts again and registers the same token: SNS refuses to create a second
    // endpoint for it (it exists, disabled); ingest takes that endpoint and enables it.
    register(&t, &who, &token, None).await;
    assert_eq!(tokens_of(&t, &who).await, std::slice::from_ref(&token));
    let attributes = sns.get_endpoint_attributes().endpoint_arn(&arn).send().await.unwrap().attributes.unwrap();
    assert_eq!(attributes.get("Enabled").map(|v| v.to_ascii_lowercase()).as_deref(), Some("true"));
    assert_eq!(attributes.get("Token"), Some(&token));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_the_platform_refuses_after_sns_took_it_falls_back_to_the_next_channel() {
    let t = TestStack::new().await;
    let tag = &t.tag;
    let (ivy, jon) = (format!("ivy-{tag}"), format!("jon-{tag}"));
    for who in [&ivy, &jon] {
        let upsert = json!({"type": "upsert_recipient", "recipient": who, "email": format!("{who}@example.org")});
        t.publish(&[upsert.to_string()]).await;
        t.wait_idle().await;
        register(&t, who, &format!("fcm-{who}"), None).await;
    }
    // Ivy's push may fall back to email; Jon's asks for push only.
    let shipped = |key: &str, who: &str, channels: serde_json::Value| {
        json!({"idempotency_key": key, "recipient": who, "template": "order_shipped", "kind": "transactional",
               "channels": channels, "data": {"order_id": "7"}})
        .to_string()
    };
    let (ivy_key, jon_key) = (format!("{tag}-ivy"), format!("{tag}-jon"));
    t.publish(&[shipped(&ivy_key, &ivy, json!(["push", "email"])), shipped(&jon_key, &jon, json!(["push"]))]).await;
    t.wait_idle().await;
    let data = provider_data().await;
    let mut failures = Vec::new();
    for (key, who) in [(&ivy_key, &ivy), (&jon_key, &jon)] {
        let sent = t.entry(key).await.unwrap();
        assert_eq!((sent.status.as_str(), sent.channel.as_deref()), ("sent", Some("push")), "{who}");
        let sns_id = sent.provider_id.expect("SNS's message id is recorded");
        let arn = endpoint_for(&data, &format!("fcm-{who}")).unwrap();
        // SNS took it; then FCM answered that the token is unregistered.
        failures.push(
            fixture("sns-push/delivery-failure.json", &[("__ENDPOINT_ARN__", &arn)])
                .replace("e3a5c7e9-1b3d-5f7a-9c1e-3b5d7f9a1c84", &sns_id),
        );
    }
    let deps = receipts_deps(&t);
    assert!(run_receipts(&deps, &failures).await.batch_item_failures.is_empty());
    t.wait_idle().await;

    let ivy_entry = t.entry(&ivy_key).await.unwrap();
    assert_eq!((ivy_entry.status.as_str(), ivy_entry.channel.as_deref()), ("sent", Some("email")));
    let steps: Vec<_> = ivy_entry.history.iter().map(|h| (h.status.as_str(), h.channel.as_deref())).collect();
    assert_eq!(steps, [("accepted", None), ("sent", Some("push")), ("failed", Some("push")), ("sent", Some("email"))]);
    assert_eq!(emails_to(&provider_data().await, &format!("{ivy}@example.org")).len(), 1);
    assert!(tokens_of(&t, &ivy).await.is_empty(), "the dead token is removed as well");

    let jon_entry = t.entry(&jon_key).await.unwrap();
    assert_eq!((jon_entry.status.as_str(), jon_entry.channel.as_deref()), ("sent", Some("push")), "no fallback kept");
    assert!(emails_to(&provider_data().await, &format!("{jon}@example.org")).is_empty());
    assert!(tokens_of(&t, &jon).await.is_empty());

    // The same failure again (SNS delivers at least once): the email has claimed the
    // message since, so nothing goes out again.
    assert!(run_receipts(&deps, &failures[..1]).await.batch_item_failures.is_empty());
    t.wait_idle().await;
    assert_eq!(emails_to(&provider_data().await, &format!("{ivy}@example.org")).len(), 1);
    t.stop().await;
}
