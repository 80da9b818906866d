//! The DynamoDB adapters and a handler's partial batch response, against moto.

use crate::support::*;
use chrono::{DateTime, TimeDelta, Utc};
use herald::aws::dynamodb::{DynamoCaps, DynamoLedger, DynamoRecipients};
use herald::contract::{IngestMessage, NotifyRequest};
use herald::domain::caps::{CapScope, CapSlot};
use herald::domain::jobs::EligibilityJob;
use herald::domain::ledger::{Reason, Status};
use herald::domain::{Channel, IdempotencyKey, MessageId};
use herald::lambda::{Context, LambdaEvent, SqsEvent};
use herald::ports::*;
use serde_json::json;
use std::sync::Arc;

pub(crate) fn request(key: &str) -> NotifyRequest {
    let body = json!({"idempotency_key": key, "recipient": "user-1", "template": "order_shipped", "kind": "marketing"});
    match IngestMessage::parse(&body.to_string()).unwrap() {
        IngestMessage::Notify(r) => *r,
        other => panic!("{other:?}"),
    }
}

/// A message id of its own per test and number, to hold cap slots in the name of.
fn holder(t: &TestStack, n: u32) -> MessageId {
    MessageId::for_key(&IdempotencyKey::new(format!("{}-holder-{n}", t.tag)).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_takers_never_share_the_last_cap_slot() {
    let t = TestStack::without_functions().await;
    let caps = Arc::new(DynamoCaps::new(aws_sdk_dynamodb::Client::new(&t.sdk), t.table("CapsTable")));
    let now = Utc::now();
    let slot = CapSlot {
        key: format!("{}#email#day", t.tag),
        max: 3,
        rolling_secs: None,
        expires_at: now + TimeDelta::days(1),
        at: now,
        label: "email/day".into(),
        scope: CapScope::EachChannel,
    };
    let takers: Vec<_> = (0..24)
        .map(|i| {
            let (caps, slot, holder) = (caps.clone(), slot.clone(), holder(&t, i));
            tokio::spawn(async move { (holder.clone(), caps.try_take(&slot, &holder).await.unwrap()) })
        })
        .collect();
    let mut granted = Vec::new();
    for t in takers {
        let (holder, take) = t.await.unwrap();
        if take == Take::Taken {
            granted.push(holder);
        }
    }
    assert_eq!(granted.len(), 3, "exactly the limit is granted, however many ask at once");
    // A holder asking again holds its slot and counts once.
    assert_eq!(caps.try_take(&slot, &granted[0]).await.unwrap(), Take::Held);
    assert_eq!(caps.try_take(&slot, &holder(&t, 99)).await.unwrap(), Take::Full);
    // A slot given back (twice: the second changes nothing) can be taken again, once.
    caps.give_back(&slot, &granted[0]).await.unwrap();
    caps.give_back(&slot, &granted[0]).await.unwrap();
    assert_eq!(caps.try_take(&slot, &holder(&t, 100)).await.unwrap(), Take::Taken);
    assert_eq!(caps.try_take(&slot, &holder(&t, 101)).await.unwrap(), Take::Full);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_window_is_atomic_and_rolls() {
    let t = TestStack::without_functions().await;
    let caps = Arc::new(DynamoCaps::new(aws_sdk_dynamodb::Client::new(&t.sdk), t.table("CapsTable")));
    let now = Utc::now();
    let slot = |at: chrono::DateTime<Utc>| CapSlot {
        key: format!("{}#campaign:sale#24h", t.tag),
        max: 2,
        rolling_secs: Some(86_400),
        expires_at: at + TimeDelta::hours(25),
        at,
        label: "campaign/24h".into(),
        scope: CapScope::Campaign,
    };
    let takers: Vec<_> = (0..12)
        .map(|i| {
            let (caps, slot, holder) = (caps.clone(), slot(now + TimeDelta::milliseconds(i)), holder(&t, i as u32));
            tokio::spawn(async move { caps.try_take(&slot, &holder).await })
        })
        .collect();
    let mut granted = 0;
    for t in takers {
        // Under heavy contention a taker may give up (reported as throttling, so it retries later);
        // what matters is that no more than the limit is ever granted.
        granted += usize::from(t.await.unwrap().is_ok_and(|take| take == Take::Taken));
    }
    assert!((1..=2).contains(&granted), "never more than the limit: {granted}");
    // Fill it up, then 24 hours after the first take, a slot has rolled out.
    let mut n = 20;
    while caps.try_take(&slot(now + TimeDelta::seconds(1)), &holder(&t, n)).await.unwrap() == Take::Taken {
        n += 1;
    }
    assert_eq!(caps.try_take(&slot(now + TimeDelta::hours(23)), &holder(&t, 50)).await.unwrap(), Take::Full);
    let next_day = slot(now + TimeDelta::hours(24) + TimeDelta::seconds(1));
    assert_eq!(caps.try_take(&next_day, &holder(&t, 51)).await.unwrap(), Take::Taken);
    assert_eq!(caps.try_take(&next_day, &holder(&t, 51)).await.unwrap(), Take::Held, "once per holder");
}

#[tokio::test]
async fn the_ledger_admits_once_and_only_moves_forward() {
    let t = TestStack::without_functions().await;
    let ledger = DynamoLedger::new(aws_sdk_dynamodb::Client::new(&t.sdk), t.table("LedgerTable"));
    let key = format!("{}-k", t.tag);
    let req = request(&key);
    let id = MessageId::for_key(&IdempotencyKey::new(key).unwrap());
    let now = Utc::now();
    let admit = |source: &'static str| Admit {
        id: &id,
        source_id: source,
        request: &req,
        now,
        dedupe_until: now + TimeDelta::hours(24),
        expires_at: now + TimeDelta::days(30),
    };
    assert_eq!(ledger.admit(admit("sqs-1")).await.unwrap(), Admission::New);
    assert_eq!(
        ledger.admit(admit("sqs-1")).await.unwrap(),
        Admission::Duplicate { status: Status::Accepted, same_source: true, accepted_at: Some(millis(now)) }
    );
    assert_eq!(
        ledger.admit(admit("sqs-2")).await.unwrap(),
        Admission::Duplicate { status: Status::Accepted, same_source: false, accepted_at: Some(millis(now)) }
    );

    // The send is claimed once; a second copy of the job finds it held until the claim
    // runs out, even for another channel.
    let until = now + TimeDelta::seconds(30);
    let claim = |channel, at, until, token| Claim {
        id: &id,
        channel,
        per_channel: false,
        variant: None,
        template_version: 4,
        at,
        until,
        token,
    };
    let held = Claimed::Held { until: DateTime::from_timestamp(until.timestamp(), 0).unwrap() };
    assert_eq!(ledger.claim_send(claim(Channel::Email, now, until, "a")).await.unwrap(), Claimed::Claimed);
    assert_eq!(ledger.claim_send(claim(Channel::Email, now, until, "b")).await.unwrap(), held);
    assert_eq!(ledger.claim_send(claim(Channel::Sms, now, until, "b")).await.unwrap(), held);
    // Only the holder releases it.
    ledger.release_send(&claim(Channel::Email, now, until, "b"), None).await.unwrap();
    assert_eq!(ledger.claim_send(claim(Channel::Sms, now, until, "b")).await.unwrap(), held);
    // Released after a failed call, it can be claimed again.
    ledger.release_send(&claim(Channel::Email, now, until, "a"), None).await.unwrap();
    assert_eq!(ledger.claim_send(claim(Channel::Sms, now, until, "b")).await.unwrap(), Claimed::Claimed);
    // A claim that ran out with nothing recorded (the attempt died) is taken again.
    let later = now + TimeDelta::minutes(5);
    assert_eq!(ledger.claim_send(claim(Channel::Sms, later, later, "c")).await.unwrap(), Claimed::Claimed);
    ledger.record_sent(&id, Channel::Sms, "provider-1", None).await.unwrap();
    // Once the provider id is recorded, even an expired claim is never retaken.
    let much_later = now + TimeDelta::minutes(10);
    assert_eq!(ledger.claim_send(claim(Channel::Sms, much_later, much_later, "d")).await.unwrap(), Claimed::Done);

    // Receipts: forward moves apply once; late or repeated ones change nothing.
    let delivered = Transition::new(Status::Delivered, now);
    assert_eq!(ledger.transition(&id, delivered.clone()).await.unwrap(), Applied::Applied);
    assert_eq!(ledger.transition(&id, delivered).await.unwrap(), Applied::Stale);
    assert_eq!(ledger.transition(&id, Transition::new(Status::Sent, now)).await.unwrap(), Applied::Stale);
    assert_eq!(
        ledger.transition(&id, Transition::new(Status::Bounced, now).reason(Reason::SuppressedBounce)).await.unwrap(),
        Applied::Applied
    );
    let unknown = MessageId::for_key(&IdempotencyKey::new("never-admitted").unwrap());
    assert_eq!(ledger.transition(&unknown, Transition::new(Status::Delivered, now)).await.unwrap(), Applied::Unknown);

    let entry = ledger.get(&id).await.unwrap().unwrap();
    assert_eq!(entry.status, Status::Bounced);
    assert_eq!(entry.provider_id.as_deref(), Some("provider-1"));
    let statuses: Vec<_> = entry.history.iter().map(|h| h.status.as_str()).collect();
    assert_eq!(statuses, ["accepted", "sent", "sent", "sent", "delivered", "bounced"], "three claims");
}

#[tokio::test]
async fn an_older_consent_does_not_replace_a_newer_one() {
    let t = TestStack::without_functions().await;
    let store = DynamoRecipients::new(aws_sdk_dynamodb::Client::new(&t.sdk), t.table("RecipientsTable"));
    let who = format!("r-{}", t.tag);
    let consent = |granted: bool, at: &str| match IngestMessage::parse(
        &json!({"type": "set_consent", "recipient": who, "channel": "email", "topic": "news", "granted": granted,
                "source": "test", "at": at})
        .to_string(),
    )
    .unwrap()
    {
        IngestMessage::SetConsent(c) => c,
        other => panic!("{other:?}"),
    };
    let now = Utc::now();
    assert_eq!(store.set_consent(&consent(false, "2026-11-25T10:00:00Z"), now).await.unwrap(), ConsentApplied::Applied);
    assert_eq!(store.set_consent(&consent(true, "2026-11-24T10:00:00Z"), now).await.unwrap(), ConsentApplied::Older);
    let r = store.get(&herald::domain::RecipientId::new(who.clone()).unwrap()).await.unwrap().unwrap();
    let topic = herald::domain::Topic::new("news").unwrap();
    assert_eq!(r.consent(Channel::Email, Some(&topic)).map(|c| c.granted), Some(false));
}

#[tokio::test]
async fn a_failed_forward_returns_only_its_records_to_the_queue() {
    let t = TestStack::without_functions().await;
    let spec = t.stack.functions.iter().find(|f| f.name == "ingest").unwrap();
    let mut env = spec.env.clone();
    // Eligibility's queue is gone: forwarding fails, so the valid notifications must be retried.
    env.insert("HERALD_ELIGIBILITY_QUEUE_URL".into(), format!("{}/123456789012/missing-{}", endpoint(), t.tag));
    let config = ingest::Config::from_lookup(&|k| env.get(k).cloned()).unwrap();
    let deps = ingest::aws::deps(&t.sdk, &config);
    let records = json!({"Records": [
        {"messageId": "m-good", "body": json!({"idempotency_key": format!("{}-a", t.tag), "recipient": "u", "template": "order_shipped", "kind": "transactional"}).to_string()},
        {"messageId": "m-bad", "body": "[1, 2"},
        {"messageId": "m-command", "body": json!({"type": "upsert_recipient", "recipient": format!("u-{}", t.tag)}).to_string()},
    ]});
    let event: SqsEvent = serde_json::from_value(records).unwrap();
    let response = ingest::handler(&deps, LambdaEvent::new(event, Context::default())).await.unwrap();
    let failed: Vec<_> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(
        failed,
        ["m-good"],
        "the bad body is rejected and recorded, the command applied, the notification retried"
    );
    let ledger = DynamoLedger::new(aws_sdk_dynamodb::Client::new(&t.sdk), t.table("LedgerTable"));
    assert_eq!(ledger.rejection("m-bad").await.unwrap().map(|r| r.0).as_deref(), Some("malformed_json"));
}

/// A message admitted to the ledger (its request, id and admission time), for claims.
pub(crate) async fn admitted(
    t: &TestStack,
    ledger: &DynamoLedger,
    suffix: &str,
) -> (NotifyRequest, MessageId, DateTime<Utc>) {
    let key = format!("{}-{suffix}", t.tag);
    let req = request(&key);
    let id = MessageId::for_key(&IdempotencyKey::new(key).unwrap());
    let now = Utc::now();
    ledger.admit(admission(&id, &req, now)).await.unwrap();
    (req, id, now)
}

fn admission<'a>(id: &'a MessageId, request: &'a NotifyRequest, now: DateTime<Utc>) -> Admit<'a> {
    Admit {
        id,
        source_id: "s",
        request,
        now,
        dedupe_until: now + TimeDelta::hours(1),
        expires_at: now + TimeDelta::days(1),
    }
}

/// An instant as the ledger keeps it: to the millisecond.
fn millis(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap()
}

pub(crate) fn claim_of<'a>(
    id: &'a MessageId,
    channel: Channel,
    per_channel: bool,
    now: DateTime<Utc>,
    token: &'a str,
) -> Claim<'a> {
    Claim {
        id,
        channel,
        per_channel,
        variant: per_channel.then_some("b"),
        template_version: 1,
        at: now,
        until: now + TimeDelta::seconds(30),
        token,
    }
}

#[tokio::test]
async fn all_mode_claims_each_channel_once() {
    let t = TestStack::without_functions().await;
    let ledger = DynamoLedger::new(aws_sdk_dynamodb::Client::new(&t.sdk), t.table("LedgerTable"));
    let (_, id, now) = admitted(&t, &ledger, "all").await;
    let claim = |channel| claim_of(&id, channel, true, now, "first");
    let copy = |channel| claim_of(&id, channel, true, now, "copy");
    assert_eq!(ledger.claim_send(claim(Channel::Email)).await.unwrap(), Claimed::Claimed);
    assert_eq!(ledger.claim_send(claim(Channel::Sms)).await.unwrap(), Claimed::Claimed);
    ledger.record_sent(&id, Channel::Sms, "sms-1", None).await.unwrap();
    assert_eq!(ledger.claim_send(copy(Channel::Sms)).await.unwrap(), Claimed::Done, "each channel once");
    // The email's delivery is reported before push is claimed (push was throttled, say):
    // push still goes, and the message stays delivered.
    let delivered = Transition::new(Status::Delivered, now).channel(Channel::Email);
    assert_eq!(ledger.transition(&id, delivered).await.unwrap(), Applied::Applied);
    assert_eq!(ledger.claim_send(claim(Channel::Push)).await.unwrap(), Claimed::Claimed);
    ledger.record_sent(&id, Channel::Push, "push-1", None).await.unwrap();
    assert_eq!(ledger.claim_send(copy(Channel::Push)).await.unwrap(), Claimed::Done, "each channel once");
    let entry = ledger.get(&id).await.unwrap().unwrap();
    assert_eq!((entry.status, entry.channel.as_deref()), (Status::Delivered, Some("email")));
    assert_eq!(entry.variant.as_deref(), Some("b"));
    let sent_on: Vec<_> =
        entry.history.iter().filter(|h| h.status == "sent").filter_map(|h| h.channel.clone()).collect();
    assert_eq!(sent_on, ["email", "sms", "push"]);

    // A message closed before dispatch (suppressed, expired) is not claimed on any channel.
    let closed_key = format!("{}-all-closed", t.tag);
    let closed = MessageId::for_key(&IdempotencyKey::new(closed_key.as_str()).unwrap());
    let req = request(&closed_key);
    ledger.admit(admission(&closed, &req, now)).await.unwrap();
    let expired = Transition::new(Status::Expired, now).reason(Reason::Expired);
    assert_eq!(ledger.transition(&closed, expired).await.unwrap(), Applied::Applied);
    let claim = Claim { id: &closed, ..claim(Channel::Sms) };
    assert_eq!(ledger.claim_send(claim).await.unwrap(), Claimed::Done);
}

#[tokio::test]
async fn a_kept_push_fallback_is_taken_once_the_send_is_recorded_and_until_another_channel_claims() {
    let t = TestStack::without_functions().await;
    let ledger = DynamoLedger::new(aws_sdk_dynamodb::Client::new(&t.sdk), t.table("LedgerTable"));
    let (req, id, now) = admitted(&t, &ledger, "late-push").await;
    let claim = |channel| claim_of(&id, channel, false, now, "t");
    let note = || Transition::new(Status::Failed, now).reason(Reason::EndpointDisabled).channel(Channel::Push);
    let sns_id = format!("sns-{}", t.tag);
    assert_eq!(ledger.take_fallback(&sns_id, note()).await.unwrap(), None, "nothing kept");

    assert_eq!(ledger.claim_send(claim(Channel::Push)).await.unwrap(), Claimed::Claimed);
    let job = EligibilityJob { tried: vec![Channel::Push], ..EligibilityJob::new(id.clone(), req, now) };
    ledger.remember_fallback(&sns_id, &job, now + TimeDelta::hours(1)).await.unwrap();
    // The failure overtook dispatch's record of the send: later.
    let early = ledger.take_fallback(&sns_id, note()).await;
    assert!(matches!(early, Err(PortError::Transient(_))), "{early:?}");

    ledger.record_sent(&id, Channel::Push, &sns_id, None).await.unwrap();
    assert_eq!(ledger.take_fallback(&sns_id, note()).await.unwrap().as_ref(), Some(&job));
    assert_eq!(ledger.take_fallback(&sns_id, note()).await.unwrap().as_ref(), Some(&job), "not claimed since");
    let entry = ledger.get(&id).await.unwrap().unwrap();
    assert_eq!((entry.status, entry.provider_id.as_deref()), (Status::Sent, None));
    assert_eq!(entry.history.iter().filter(|h| h.status == "failed").count(), 1, "noted once");

    assert_eq!(ledger.claim_send(claim(Channel::Email)).await.unwrap(), Claimed::Claimed, "the next channel");
    assert_eq!(ledger.take_fallback(&sns_id, note()).await.unwrap(), None, "email has it now");
    let stale = format!("{sns_id}-stale");
    ledger.remember_fallback(&stale, &job, now - TimeDelta::seconds(1)).await.unwrap();
    assert_eq!(ledger.take_fallback(&stale, note()).await.unwrap(), None, "past its time");
}
