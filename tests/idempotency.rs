//! Writes that AWS applied and then answered with an error, which the SDK retries, and
//! copies of a job that SQS delivers twice: each is recognized for what it is, on moto.
//!
//! [`Ambiguous`] is an HTTP client under the SDK that passes a request to moto, lets
//! moto apply it, and answers 500 in its place, as a lost answer or a DynamoDB
//! internal error after the write does. The SDK then retries the same request, as it
//! does in Lambda.

use crate::adapters::claim_of;
use crate::support::*;
use aws_config::SdkConfig;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use chrono::{TimeDelta, Utc};
use herald::aws::dynamodb::{DynamoCaps, DynamoLedger, DynamoRecipients, DynamoReplayGuard};
use herald::domain::caps::{CapScope, CapSlot};
use herald::domain::ledger::{Reason, Status};
use herald::domain::recipient::Device;
use herald::domain::{Channel, IdempotencyKey, MessageId, Platform, PushToken, RecipientId};
use herald::ports::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Which requests get an applied-then-500 answer: the DynamoDB operation named, the
/// first `times` times it is sent.
#[derive(Debug)]
struct Rule {
    operation: &'static str,
    times: AtomicUsize,
    hits: AtomicUsize,
}

#[derive(Debug, Clone)]
struct Ambiguous {
    inner: SharedHttpClient,
    rule: Arc<Rule>,
}

impl HttpClient for Ambiguous {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(AmbiguousConnector {
            inner: self.inner.http_connector(settings, components),
            rule: self.rule.clone(),
        })
    }
}

#[derive(Debug)]
struct AmbiguousConnector {
    inner: SharedHttpConnector,
    rule: Arc<Rule>,
}

impl HttpConnector for AmbiguousConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let target = request.headers().get("x-amz-target").unwrap_or_default();
        let hit = target.rsplit('.').next() == Some(self.rule.operation)
            && self.rule.times.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        let future = self.inner.call(request);
        let rule = self.rule.clone();
        HttpConnectorFuture::new(async move {
            let applied = future.await?;
            if !hit {
                return Ok(applied);
            }
            rule.hits.fetch_add(1, Ordering::SeqCst);
            let body = r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"injected after the write"}"#;
            let mut response = HttpResponse::new(500.try_into().unwrap(), SdkBody::from(body));
            response.headers_mut().insert("content-type", "application/x-amz-json-1.0");
            Ok(response)
        })
    }
}

/// `t`'s SDK configuration, with `operation` applied and answered 500 the first `times` times.
fn ambiguous(t: &TestStack, operation: &'static str, times: usize) -> (SdkConfig, Arc<Rule>) {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let inner = aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
    let rule = Arc::new(Rule { operation, times: AtomicUsize::new(times), hits: AtomicUsize::new(0) });
    let client = SharedHttpClient::new(Ambiguous { inner, rule: rule.clone() });
    (t.sdk.to_builder().http_client(client).build(), rule)
}

/// A message admitted to the ledger of `t` (through `ledger`).
async fn admitted(t: &TestStack, ledger: &DynamoLedger, suffix: &str) -> MessageId {
    crate::adapters::admitted(t, ledger, suffix).await.1
}

#[tokio::test]
async fn a_claim_applied_then_answered_500_is_the_attempts_own() {
    let t = TestStack::without_functions().await;
    let (sdk, rule) = ambiguous(&t, "UpdateItem", 1);
    let ledger = DynamoLedger::new(aws_sdk_dynamodb::Client::new(&sdk), t.table("LedgerTable"));
    for per_channel in [false, true] {
        let id = admitted(&t, &t.ledger(), &format!("claim-{per_channel}")).await;
        rule.times.store(1, Ordering::SeqCst);
        let now = Utc::now();
        let claim = claim_of(&id, Channel::Email, per_channel, now, "attempt-1");
        assert_eq!(ledger.claim_send(claim).await.unwrap(), Claimed::Claimed, "per_channel {per_channel}");
        // Another attempt still finds it held, and its release changes nothing.
        let other = claim_of(&id, Channel::Email, per_channel, now, "attempt-2");
        assert!(matches!(ledger.claim_send(other).await.unwrap(), Claimed::Held { .. }));
        ledger.release_send(&other, None).await.unwrap();
        assert!(matches!(ledger.claim_send(other).await.unwrap(), Claimed::Held { .. }));
        // The holder's release, applied then answered 500, notes the failure once.
        rule.times.store(1, Ordering::SeqCst);
        let note = Transition::new(Status::Failed, now).reason(Reason::ProviderRejected).channel(Channel::Email);
        ledger.release_send(&claim, Some(note)).await.unwrap();
        let entry = t.ledger().get(&id).await.unwrap().unwrap();
        assert_eq!(entry.history.iter().filter(|h| h.status == "failed").count(), 1, "per_channel {per_channel}");
        assert_eq!(ledger.claim_send(other).await.unwrap(), Claimed::Claimed, "released");
    }
    assert_eq!(rule.hits.load(Ordering::SeqCst), 4, "every injected 500 was answered");
}

#[tokio::test]
async fn an_all_mode_claim_runs_out_like_a_first_mode_claim() {
    let t = TestStack::without_functions().await;
    let ledger = t.ledger();
    let id = admitted(&t, &ledger, "all-expiry").await;
    let now = Utc::now();
    let first = claim_of(&id, Channel::Sms, true, now, "died");
    assert_eq!(ledger.claim_send(first).await.unwrap(), Claimed::Claimed);
    // That attempt died between its claim and its send: once the claim has run out, the
    // channel is claimed again and goes (before, it was dropped as sent for good).
    let later = now + TimeDelta::minutes(5);
    assert_eq!(ledger.claim_send(claim_of(&id, Channel::Sms, true, later, "retry")).await.unwrap(), Claimed::Claimed);
    ledger.record_sent(&id, Channel::Sms, "sns-1", None).await.unwrap();
    // Sent: never again, however late.
    let much_later = now + TimeDelta::hours(2);
    assert_eq!(ledger.claim_send(claim_of(&id, Channel::Sms, true, much_later, "copy")).await.unwrap(), Claimed::Done);
    // Past `sent` (another channel's receipt), a channel's expired claim is taken again too.
    let email = claim_of(&id, Channel::Email, true, now, "email-died");
    assert_eq!(ledger.claim_send(email).await.unwrap(), Claimed::Claimed);
    let delivered = Transition::new(Status::Delivered, now).channel(Channel::Sms);
    assert_eq!(ledger.transition(&id, delivered).await.unwrap(), Applied::Applied);
    assert!(matches!(
        ledger.claim_send(claim_of(&id, Channel::Email, true, now, "email-copy")).await.unwrap(),
        Claimed::Held { .. }
    ));
    assert_eq!(
        ledger.claim_send(claim_of(&id, Channel::Email, true, later, "email-retry")).await.unwrap(),
        Claimed::Claimed
    );
    assert_eq!(t.ledger().get(&id).await.unwrap().unwrap().status, Status::Delivered, "the status stays");
}

#[tokio::test]
async fn a_replay_guard_put_applied_then_answered_500_is_a_first_use() {
    let t = TestStack::without_functions().await;
    let (sdk, rule) = ambiguous(&t, "PutItem", 1);
    let guard = DynamoReplayGuard::new(aws_sdk_dynamodb::Client::new(&sdk), t.table("LedgerTable"));
    let until = Utc::now() + TimeDelta::minutes(5);
    let key = format!("{}-sig", t.tag);
    assert!(guard.first_use(&key, until).await.unwrap(), "a genuine report is not taken for its own replay");
    assert_eq!(rule.hits.load(Ordering::SeqCst), 1);
    assert!(!guard.first_use(&key, until).await.unwrap(), "a real replay is still refused");
}

#[tokio::test]
async fn a_request_whose_attempt_died_before_handing_it_on_is_taken_again() {
    let t = TestStack::without_functions().await;
    let client = aws_sdk_dynamodb::Client::new(&t.sdk);
    // A hold of 0: the attempt that took the key is long dead.
    let guard = DynamoReplayGuard::new(client, t.table("LedgerTable")).holding_for(TimeDelta::zero());
    let until = Utc::now() + TimeDelta::minutes(5);
    let key = format!("{}-died", t.tag);
    assert!(guard.first_use(&key, until).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert!(guard.first_use(&key, until).await.unwrap(), "never confirmed: the sender's retry gets through");
    guard.confirm(&key).await.unwrap();
    assert!(!guard.first_use(&key, until).await.unwrap(), "handed on: a replay");
}

fn slot(t: &TestStack, name: &str, max: u32, rolling_secs: Option<i64>) -> CapSlot {
    let now = Utc::now();
    CapSlot {
        key: format!("{}#{name}", t.tag),
        max,
        rolling_secs,
        expires_at: now + TimeDelta::days(2),
        at: now,
        label: name.into(),
        scope: CapScope::EachChannel,
    }
}

fn holder(t: &TestStack, n: u32) -> MessageId {
    MessageId::for_key(&IdempotencyKey::new(format!("{}-h{n}", t.tag)).unwrap())
}

#[tokio::test]
async fn a_cap_slot_taken_by_a_write_applied_then_answered_500_counts_once() {
    let t = TestStack::without_functions().await;
    // Calendar window, max 1: the retry finds the slot taken by its own first try.
    let (sdk, rule) = ambiguous(&t, "UpdateItem", 1);
    let caps = DynamoCaps::new(aws_sdk_dynamodb::Client::new(&sdk), t.table("CapsTable"));
    let day = slot(&t, "email#day", 1, None);
    assert!(caps.try_take(&day, &holder(&t, 1)).await.unwrap().holds(), "not refused by its own slot");
    assert_eq!(rule.hits.load(Ordering::SeqCst), 1);
    assert_eq!(caps.try_take(&day, &holder(&t, 2)).await.unwrap(), Take::Full);
    // A give-back applied then answered 500 frees the one slot, once.
    rule.times.store(1, Ordering::SeqCst);
    caps.give_back(&day, &holder(&t, 1)).await.unwrap();
    assert_eq!(caps.try_take(&day, &holder(&t, 2)).await.unwrap(), Take::Taken);
    assert_eq!(caps.try_take(&day, &holder(&t, 3)).await.unwrap(), Take::Full);

    // Rolling window, max 2: the retried put does not count its own send twice.
    let (sdk, rule) = ambiguous(&t, "PutItem", 1);
    let caps = DynamoCaps::new(aws_sdk_dynamodb::Client::new(&sdk), t.table("CapsTable"));
    let rolling = slot(&t, "campaign#24h", 2, Some(86_400));
    assert!(caps.try_take(&rolling, &holder(&t, 1)).await.unwrap().holds());
    assert_eq!(rule.hits.load(Ordering::SeqCst), 1);
    assert_eq!(caps.try_take(&rolling, &holder(&t, 2)).await.unwrap(), Take::Taken, "one send counted, not two");
    assert_eq!(caps.try_take(&rolling, &holder(&t, 3)).await.unwrap(), Take::Full);
}

#[tokio::test]
async fn a_duplicate_counted_by_a_write_applied_then_answered_500_counts_once() {
    let t = TestStack::without_functions().await;
    let (sdk, rule) = ambiguous(&t, "UpdateItem", 1);
    let ledger = DynamoLedger::new(aws_sdk_dynamodb::Client::new(&sdk), t.table("LedgerTable"));
    let id = admitted(&t, &t.ledger(), "dup").await;
    ledger.note_duplicate(&id, "sqs-2", Utc::now()).await.unwrap();
    assert_eq!(rule.hits.load(Ordering::SeqCst), 1);
    // The same duplicate redelivered by SQS is not counted again; another one is.
    ledger.note_duplicate(&id, "sqs-2", Utc::now()).await.unwrap();
    assert_eq!(t.ledger().get(&id).await.unwrap().unwrap().duplicates, 1);
    ledger.note_duplicate(&id, "sqs-3", Utc::now()).await.unwrap();
    assert_eq!(t.ledger().get(&id).await.unwrap().unwrap().duplicates, 2);
}

#[tokio::test]
async fn a_device_removed_by_a_write_applied_then_answered_500_leaves_no_index_behind() {
    let t = TestStack::without_functions().await;
    let plain = DynamoRecipients::new(aws_sdk_dynamodb::Client::new(&t.sdk), t.table("RecipientsTable"));
    let who = RecipientId::new(format!("dev-{}", t.tag)).unwrap();
    let token = PushToken::new(format!("fcm-{}-dev", t.tag)).unwrap();
    let arn = format!("arn:aws:sns:us-east-1:123456789012:endpoint/GCM/app/{}", t.tag);
    let device = Device { platform: Platform::Fcm, token: token.clone(), endpoint_arn: arn.clone() };
    plain.register_device(&who, &device, None, Utc::now()).await.unwrap();

    let (sdk, rule) = ambiguous(&t, "UpdateItem", 1);
    let recipients = DynamoRecipients::new(aws_sdk_dynamodb::Client::new(&sdk), t.table("RecipientsTable"));
    let removed = recipients.remove_device(&who, &token).await.unwrap();
    assert_eq!(rule.hits.load(Ordering::SeqCst), 1);
    assert_eq!(removed.map(|d| d.endpoint_arn), Some(arn.clone()), "the caller deletes the SNS endpoint");
    assert!(plain.get(&who).await.unwrap().unwrap().devices.is_empty());
    assert_eq!(plain.remove_endpoint(&arn).await.unwrap(), None, "the endpoint index item is gone");
    let index = aws_sdk_dynamodb::Client::new(&t.sdk)
        .get_item()
        .table_name(t.table("RecipientsTable"))
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("endpoint#{arn}")))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("device".into()))
        .send()
        .await
        .unwrap();
    assert!(index.item.is_none());
}

/// Runs ingest on these bodies and returns the eligibility jobs it queued (deleted from the queue).
async fn ingested(t: &TestStack, bodies: &[Value]) -> Vec<String> {
    let ingest = ingest::aws::deps(&t.sdk, &ingest::Config::from_lookup(&t.lookup("ingest")).unwrap());
    let bodies: Vec<String> = bodies.iter().map(Value::to_string).collect();
    ingest::handler(&ingest, sqs_event(&bodies)).await.unwrap();
    t.drain("EligibilityQueue").await
}

/// A person opted in to email and a marketing email for them, through ingest: returns
/// the person, their address, the idempotency key and the eligibility job(s) queued.
async fn marketing_email(t: &TestStack, name: &str) -> (String, String, String, Vec<String>) {
    let tag = &t.tag;
    let who = format!("{name}-{tag}");
    let address = format!("{name}.{tag}@example.org");
    let key = format!("{tag}-{name}");
    let jobs = ingested(
        t,
        &[
            json!({"type": "upsert_recipient", "recipient": who, "email": address}),
            json!({"type": "set_consent", "recipient": who, "channel": "email", "granted": true, "source": "test"}),
            // Marketing: the default policy allows one an hour on email.
            json!({"idempotency_key": key, "recipient": who, "template": "weekly_digest", "kind": "marketing",
                   "channels": ["email"], "data": {"headline": "Spring"}}),
        ],
    )
    .await;
    (who, address, key, jobs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_copies_of_an_eligibility_job_take_one_cap_slot_and_send_once() {
    let t = TestStack::without_functions().await;
    let (who, address, key, jobs) = marketing_email(&t, "cap").await;
    assert_eq!(jobs.len(), 1);
    let eligibility =
        eligibility::aws::deps(&t.sdk, &eligibility::Config::from_lookup(&t.lookup("eligibility")).unwrap());
    // SQS delivers the job twice (or ingest forwarded it twice): one copy after the other,
    // and both at once.
    let copies = [jobs[0].clone(), jobs[0].clone()];
    for copy in &copies {
        let response = eligibility::handler(&eligibility, sqs_event(std::slice::from_ref(copy))).await.unwrap();
        assert!(response.batch_item_failures.is_empty());
    }
    let response = eligibility::handler(&eligibility, sqs_event(&copies)).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    let entry = t.entry(&key).await.unwrap();
    assert_eq!(entry.status, Status::Accepted, "no copy refused it for the cap its twin took: {entry:?}");
    let dispatch_jobs = t.drain("EmailQueue").await;
    assert_eq!(dispatch_jobs.len(), 4, "each copy routes it, to the same channel");

    // The hour's email cap holds this one message, once: another message is capped.
    let caps = aws_sdk_dynamodb::Client::new(&t.sdk)
        .scan()
        .table_name(t.table("CapsTable"))
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    let holders: Vec<usize> = caps
        .iter()
        .filter(|i| i["pk"].as_s().is_ok_and(|k| k.contains(&who)))
        .map(|i| i.get("holders").and_then(|h| h.as_ss().ok()).map_or(0, Vec::len))
        .collect();
    assert!(!holders.is_empty() && holders.iter().all(|n| *n == 1), "one holder per counter: {holders:?}");

    // Dispatch sends it once, whichever copies come.
    let config = dispatch_email::Config::from_lookup(&t.lookup("dispatch-email")).unwrap();
    let (deps, email) = dispatch_email::aws::deps(&t.sdk, &config);
    let response = dispatch_email::handler(&deps, &email, sqs_event(&dispatch_jobs)).await.unwrap();
    assert_eq!(response.batch_item_failures.len(), 3, "the copies wait for the claim, none sends");
    assert_eq!(emails_to(&provider_data().await, &address).len(), 1);
    assert_eq!(t.entry(&key).await.unwrap().status, Status::Sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_copy_of_an_eligibility_job_never_writes_a_refusal_over_a_send() {
    let t = TestStack::without_functions().await;
    let (who, address, key, jobs) = marketing_email(&t, "late").await;
    let eligibility =
        eligibility::aws::deps(&t.sdk, &eligibility::Config::from_lookup(&t.lookup("eligibility")).unwrap());
    eligibility::handler(&eligibility, sqs_event(&jobs)).await.unwrap();
    let config = dispatch_email::Config::from_lookup(&t.lookup("dispatch-email")).unwrap();
    let (deps, email) = dispatch_email::aws::deps(&t.sdk, &config);
    let dispatch_jobs = t.drain("EmailQueue").await;
    dispatch_email::handler(&deps, &email, sqs_event(&dispatch_jobs)).await.unwrap();
    assert_eq!(t.entry(&key).await.unwrap().status, Status::Sent);

    // The person opts out; then a late copy of the job arrives and is refused consent.
    let _ = ingested(
        &t,
        &[json!({"type": "set_consent", "recipient": who, "channel": "email", "granted": false, "source": "test"})],
    )
    .await;
    let response = eligibility::handler(&eligibility, sqs_event(&jobs)).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    let entry = t.entry(&key).await.unwrap();
    assert_eq!((entry.status, entry.reason), (Status::Sent, None), "the send stands");
    assert_eq!(emails_to(&provider_data().await, &address).len(), 1);
}
