//! Profiles against moto: attributes merged one by one (a null removes one), the old
//! whole-JSON attributes read until replaced, `created_at` set once by the write that
//! creates the profile, the last engagement per channel recorded by receipts on opens
//! and clicks only.

use crate::receipts::{fixture, receipts_deps, run_receipts};
use crate::support::*;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{TimeDelta, Utc};
use herald::aws::dynamodb::DynamoRecipients;
use herald::contract::{IngestMessage, NotifyRequest, SetConsent, UpsertRecipient};
use herald::domain::ledger::Status;
use herald::domain::{Channel, MessageId, RecipientId};
use herald::ports::*;
use serde_json::{Value, json};

pub fn recipients(t: &TestStack) -> DynamoRecipients {
    DynamoRecipients::new(aws_sdk_dynamodb::Client::new(&t.sdk), t.table("RecipientsTable"))
}

fn upsert(body: Value) -> UpsertRecipient {
    let mut body = body;
    body["type"] = json!("upsert_recipient");
    match IngestMessage::parse(&body.to_string()).unwrap() {
        IngestMessage::UpsertRecipient(cmd) => cmd,
        other => panic!("{other:?}"),
    }
}

fn consent(body: Value) -> SetConsent {
    let mut body = body;
    body["type"] = json!("set_consent");
    match IngestMessage::parse(&body.to_string()).unwrap() {
        IngestMessage::SetConsent(cmd) => cmd,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributes_merge_one_by_one_and_a_null_removes_one() {
    let t = TestStack::without_functions().await;
    let store = recipients(&t);
    let who = format!("ana-{}", t.tag);
    let id = RecipientId::new(who.clone()).unwrap();
    let t0 = Utc::now() - TimeDelta::hours(1);
    store
        .upsert(
            &upsert(json!({"recipient": who, "attributes": {"first_name": "Ana", "ltv": 12.5, "orders": 3,
                            "beta": true, "interests": ["shoes", "bags"], "tags": [], "signed_up_at": "2026-03-01T09:00:00Z"}})),
            t0,
        )
        .await
        .unwrap();
    let r = store.get(&id).await.unwrap().unwrap();
    assert_eq!(
        Value::Object(r.attributes.clone()),
        json!({"first_name": "Ana", "ltv": 12.5, "orders": 3, "beta": true, "interests": ["shoes", "bags"],
               "tags": [], "signed_up_at": "2026-03-01T09:00:00Z"}),
        "every kind of value comes back as it went in"
    );
    assert_eq!(r.created_at.map(|c| c.timestamp_millis()), Some(t0.timestamp_millis()));

    // A later upsert names two attributes: one changes, one goes; the rest stay.
    store
        .upsert(&upsert(json!({"recipient": who, "attributes": {"ltv": 20, "beta": null}})), Utc::now())
        .await
        .unwrap();
    // A command without attributes leaves them alone.
    store.upsert(&upsert(json!({"recipient": who, "locale": "fr-FR"})), Utc::now()).await.unwrap();
    let r = store.get(&id).await.unwrap().unwrap();
    assert_eq!(
        Value::Object(r.attributes),
        json!({"first_name": "Ana", "ltv": 20, "orders": 3, "interests": ["shoes", "bags"], "tags": [],
               "signed_up_at": "2026-03-01T09:00:00Z"}),
    );
    assert_eq!(r.created_at.map(|c| c.timestamp_millis()), Some(t0.timestamp_millis()), "created once");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributes_stored_whole_before_they_were_typed_are_read_until_an_upsert_replaces_them() {
    let t = TestStack::without_functions().await;
    let store = recipients(&t);
    let who = format!("old-{}", t.tag);
    let id = RecipientId::new(who.clone()).unwrap();
    // A profile as the previous version wrote it: the attributes as one JSON string.
    aws_sdk_dynamodb::Client::new(&t.sdk)
        .put_item()
        .table_name(t.table("RecipientsTable"))
        .item("pk", AttributeValue::S(who.clone()))
        .item("sk", AttributeValue::S("profile".into()))
        .item("attributes", AttributeValue::S(json!({"plan": "pro", "seats": 4}).to_string()))
        .send()
        .await
        .unwrap();
    let r = store.get(&id).await.unwrap().unwrap();
    assert_eq!(Value::Object(r.attributes), json!({"plan": "pro", "seats": 4}));
    assert_eq!(r.created_at, None, "written before Herald recorded it");

    store.upsert(&upsert(json!({"recipient": who, "timezone": "Europe/Paris"})), Utc::now()).await.unwrap();
    let r = store.get(&id).await.unwrap().unwrap();
    assert_eq!(Value::Object(r.attributes), json!({"plan": "pro", "seats": 4}), "untouched without attributes");
    assert!(r.created_at.is_some(), "the first write since sets it");

    // Producers of the old version sent the whole set each time: this one replaces it.
    store.upsert(&upsert(json!({"recipient": who, "attributes": {"plan": "team"}})), Utc::now()).await.unwrap();
    let r = store.get(&id).await.unwrap().unwrap();
    assert_eq!(Value::Object(r.attributes), json!({"plan": "team"}));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_command_about_a_person_sets_created_at_and_later_ones_keep_it() {
    let t = TestStack::without_functions().await;
    let store = recipients(&t);
    let who = format!("cid-{}", t.tag);
    let id = RecipientId::new(who.clone()).unwrap();
    let first = Utc::now() - TimeDelta::days(3);
    store
        .set_consent(&consent(json!({"recipient": who, "channel": "email", "granted": true, "source": "form"})), first)
        .await
        .unwrap();
    store.upsert(&upsert(json!({"recipient": who, "locale": "en"})), Utc::now()).await.unwrap();
    let r = store.get(&id).await.unwrap().unwrap();
    assert_eq!(r.created_at.map(|c| c.timestamp_millis()), Some(first.timestamp_millis()));
    t.stop().await;
}

fn notify(key: &str, recipient: &str) -> NotifyRequest {
    let body = json!({"idempotency_key": key, "recipient": recipient, "template": "order_shipped",
                      "kind": "transactional"});
    match IngestMessage::parse(&body.to_string()).unwrap() {
        IngestMessage::Notify(r) => *r,
        other => panic!("{other:?}"),
    }
}

/// A message to `recipient` in the ledger as dispatch leaves it after sending on `channel`.
async fn sent_to(t: &TestStack, key: &str, recipient: &str, channel: Channel) -> MessageId {
    let ledger = t.ledger();
    let req = notify(key, recipient);
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
    assert_eq!(
        ledger.transition(&id, Transition::new(Status::Sent, now).channel(channel)).await.unwrap(),
        Applied::Applied
    );
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_and_clicks_record_the_last_engagement_on_their_channel() {
    let t = TestStack::without_functions().await;
    let deps = receipts_deps(&t);
    let store = recipients(&t);
    let tag = &t.tag;
    let who = format!("eng-{tag}");
    let id = RecipientId::new(who.clone()).unwrap();
    store
        .upsert(&upsert(json!({"recipient": who, "email": format!("eng.{tag}@example.org")})), Utc::now())
        .await
        .unwrap();
    let ses = |name: &str, message: &MessageId| {
        fixture(
            &format!("ses/{name}.json"),
            &[
                ("__MESSAGE_ID__", message.as_str()),
                ("__SES_MESSAGE_ID__", &format!("ses-{name}-{tag}")),
                ("__EMAIL__", &format!("eng.{tag}@example.org")),
            ],
        )
    };

    // A delivery is not engagement.
    let first = sent_to(&t, &format!("{tag}-1"), &who, Channel::Email).await;
    assert!(run_receipts(&deps, &[ses("delivery", &first)]).await.batch_item_failures.is_empty());
    assert!(store.get(&id).await.unwrap().unwrap().last_engaged.is_empty(), "delivered only");

    let before = Utc::now();
    assert!(run_receipts(&deps, &[ses("open", &first)]).await.batch_item_failures.is_empty());
    let opened = store.get(&id).await.unwrap().unwrap().last_engaged;
    let at = *opened.get(&Channel::Email).expect("the open is recorded");
    assert!(at >= before - TimeDelta::milliseconds(1) && at <= Utc::now(), "{at}");
    assert_eq!(opened.len(), 1);

    // The same open again (a redelivery, or a second open): the ledger does not move, the
    // engagement does, forward only.
    assert!(run_receipts(&deps, &[ses("open", &first)]).await.batch_item_failures.is_empty());
    let again = store.get(&id).await.unwrap().unwrap().last_engaged[&Channel::Email];
    assert!(again >= at);
    // An earlier time never replaces a later one.
    store.note_engagement(&id, Channel::Email, at - TimeDelta::days(1)).await.unwrap();
    assert_eq!(store.get(&id).await.unwrap().unwrap().last_engaged[&Channel::Email], again);

    // A click on a message the ledger says went by SMS does not count for email.
    let by_sms = sent_to(&t, &format!("{tag}-2"), &who, Channel::Sms).await;
    store.note_engagement(&id, Channel::Email, at).await.unwrap();
    let stamp = store.get(&id).await.unwrap().unwrap().last_engaged.clone();
    assert!(run_receipts(&deps, &[ses("click", &by_sms)]).await.batch_item_failures.is_empty());
    assert_eq!(store.get(&id).await.unwrap().unwrap().last_engaged, stamp, "not an email engagement");

    // Engagement of a person erased since (or never known) creates no profile.
    let ghost = format!("ghost-{tag}");
    let lost = sent_to(&t, &format!("{tag}-3"), &ghost, Channel::Email).await;
    assert!(run_receipts(&deps, &[ses("click", &lost)]).await.batch_item_failures.is_empty());
    assert_eq!(store.get(&RecipientId::new(ghost).unwrap()).await.unwrap(), None);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_refuses_a_declared_attribute_of_another_type_and_stores_the_rest() {
    use herald::domain::profile::{AttributeType, ProfileSchema};
    let t = TestStack::without_functions().await;
    let tag = &t.tag;
    let ingest = ingest::aws::deps(&t.sdk, &ingest::Config::from_lookup(&t.lookup("ingest")).unwrap());
    let (ana, bo) = (format!("ana-{tag}"), format!("bo-{tag}"));
    let bodies = |who: &str, ltv: Value| {
        vec![
            json!({"type": "upsert_recipient", "recipient": who,
                    "attributes": {"lifetime_value": ltv, "nickname": 7}})
            .to_string(),
        ]
    };
    // Nothing declared (the stack's own profile.toml is replaced by an empty one): every
    // contract-valid value is stored.
    let schema = crate::segments::templates(&t, std::time::Duration::ZERO);
    schema.put_profile_schema(&ProfileSchema::default(), Utc::now()).await.unwrap();
    let response = ingest::handler(&ingest, sqs_event(&bodies(&ana, json!("lots")))).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    let store = recipients(&t);
    let stored = store.get(&RecipientId::new(ana.clone()).unwrap()).await.unwrap().unwrap();
    assert_eq!(stored.attributes.get("lifetime_value"), Some(&json!("lots")));

    let declared =
        ProfileSchema { attributes: [("lifetime_value".to_owned(), AttributeType::Number)].into_iter().collect() };
    schema.put_profile_schema(&declared, Utc::now()).await.unwrap();
    // A fresh function (its cache is a minute long): the declared type now holds.
    let ingest = ingest::aws::deps(&t.sdk, &ingest::Config::from_lookup(&t.lookup("ingest")).unwrap());
    let mut batch = bodies(&bo, json!("ana@example.org"));
    batch.extend(bodies(&ana, json!(120.5)));
    let response = ingest::handler(&ingest, sqs_event(&batch)).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "a refusal is recorded, not retried");
    let (reason, detail) = t.ledger().rejection("m0").await.unwrap().expect("the wrong type is refused");
    assert_eq!((reason.as_str(), detail.as_str()), ("invalid_attribute", "attributes.lifetime_value must be a number"));
    assert_eq!(store.get(&RecipientId::new(bo).unwrap()).await.unwrap(), None, "nothing of the command applied");
    let stored = store.get(&RecipientId::new(ana).unwrap()).await.unwrap().unwrap();
    assert_eq!(stored.attributes.get("lifetime_value"), Some(&json!(120.5)));
    assert_eq!(stored.attributes.get("nickname"), Some(&json!(7)), "undeclared attributes are stored as they come");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_greets_the_person_by_their_profile_or_by_its_default() {
    let t = TestStack::new().await;
    let tag = &t.tag;
    let (ana, bo, cy) = (format!("ana-{tag}"), format!("bo-{tag}"), format!("cy-{tag}"));
    let address = |who: &str| format!("{who}@example.org");
    let mut commands = Vec::new();
    for (who, attributes) in [
        (&ana, json!({"first_name": "Ana", "lifetime_value": 10})),
        (&bo, json!({"lifetime_value": 3})),
        (&cy, json!({"first_name": "Cyrille"})),
    ] {
        commands.push(
            json!({"type": "upsert_recipient", "recipient": who, "email": address(who), "attributes": attributes})
                .to_string(),
        );
        commands.push(
            json!({"type": "set_consent", "recipient": who, "channel": "email", "granted": true, "source": "test"})
                .to_string(),
        );
    }
    t.publish(&commands).await;
    t.wait_idle().await;
    let digest = |who: &str, data: Value| {
        json!({"idempotency_key": format!("{tag}-{who}"), "recipient": who, "template": "weekly_digest",
               "kind": "marketing", "channels": ["email"], "data": data})
        .to_string()
    };
    t.publish(&[
        digest(&ana, json!({"headline": "New in"})),
        digest(&bo, json!({"headline": "New in"})),
        // The request's own data comes first.
        digest(&cy, json!({"headline": "New in", "first_name": "Cy"})),
    ])
    .await;
    t.wait_idle().await;
    let data = provider_data().await;
    for (who, greeting) in [(&ana, "Hi Ana,"), (&bo, "Hi there,"), (&cy, "Hi Cy,")] {
        let sent = emails_to(&data, &address(who));
        assert_eq!(sent.len(), 1, "{who}: {:?}", t.entry(&format!("{tag}-{who}")).await);
        let text = sent[0].to_string();
        assert!(text.contains(greeting), "{who}: {text}");
    }
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatch_job_carries_only_the_attributes_its_template_names() {
    let t = TestStack::without_functions().await;
    let tag = &t.tag;
    let who = format!("jo-{tag}");
    let ingest = ingest::aws::deps(&t.sdk, &ingest::Config::from_lookup(&t.lookup("ingest")).unwrap());
    let bodies = [
        json!({"type": "upsert_recipient", "recipient": who, "email": format!("{who}@example.org"),
               "timezone": "Europe/Paris", "locale": "fr-FR",
               "attributes": {"first_name": "Jo", "lifetime_value": 99, "notes": "x".repeat(1000)}}),
        json!({"type": "set_consent", "recipient": who, "channel": "email", "granted": true, "source": "test"}),
        json!({"idempotency_key": format!("{tag}-d"), "recipient": who, "template": "weekly_digest",
               "kind": "marketing", "channels": ["email"], "data": {"headline": "h"}}),
    ];
    let bodies: Vec<String> = bodies.iter().map(Value::to_string).collect();
    ingest::handler(&ingest, sqs_event(&bodies)).await.unwrap();
    let eligibility =
        eligibility::aws::deps(&t.sdk, &eligibility::Config::from_lookup(&t.lookup("eligibility")).unwrap());
    let job = receive(&t, "EligibilityQueue").await.unwrap();
    eligibility::handler(&eligibility, received_event(&job)).await.unwrap();
    let dispatch = receive(&t, "EmailQueue").await.expect("routed to email");
    let job: herald::domain::jobs::DispatchJob = serde_json::from_str(dispatch["body"].as_str().unwrap()).unwrap();
    assert_eq!(Value::Object(job.attributes.clone()), json!({"first_name": "Jo"}), "only what the template names");
    let view = job.recipient_view();
    assert_eq!(
        (view.id.as_str(), view.locale.as_deref(), view.timezone.as_deref()),
        (who.as_str(), Some("fr-FR"), Some("Europe/Paris"))
    );
    t.stop().await;
}
