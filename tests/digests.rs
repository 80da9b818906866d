//! Digests on moto, through the real SDK paths: items counted once under producer
//! duplicates and redeliveries, one message per key and window, an item racing a seal in
//! exactly one window, a close delivered twice or dying between its steps sending once,
//! max_items, sliding windows, flush_first, a local `until`, eligibility on the digest
//! message, and bad specs refused with their reasons. Where time matters the handlers are
//! driven with a moved clock (no test waits for a window).

use crate::support::*;
use chrono::{DateTime, TimeDelta, Timelike, Utc};
use herald::aws::dynamodb::{DynamoLedger, DynamoSchedule, DynamoTemplates};
use herald::aws::sqs::SqsOutbox;
use herald::contract::{IngestMessage, NotifyRequest};
use herald::domain::digest::{Appended, CloseJob, DigestHead, DigestId, Opening, first_close};
use herald::domain::{IdempotencyKey, MessageId, RecipientId, TemplateName};
use herald::ports::*;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};

fn comment(key: &str, who: &str, post: &str, n: usize, kind: &str, digest: Value) -> String {
    json!({"idempotency_key": key, "recipient": who, "template": "new_comments", "kind": kind,
           "channels": ["email"], "topic": "comments",
           "data": {"post": post, "author": format!("a{n}"), "excerpt": format!("comment {n}")}, "digest": digest})
    .to_string()
}

fn request(body: &str) -> NotifyRequest {
    match IngestMessage::parse(body) {
        Ok(IngestMessage::Notify(r)) => *r,
        other => panic!("not a notify: {other:?}"),
    }
}

fn head_id(who: &str, key: &str) -> DigestId {
    DigestId::of(&RecipientId::new(who).unwrap(), &TemplateName::new("new_comments").unwrap(), key)
}

fn ingest_deps(t: &TestStack) -> ingest::aws::AwsDeps {
    ingest::aws::deps(&t.sdk, &ingest::Config::from_lookup(&t.lookup("ingest")).unwrap())
}

fn digest_deps(t: &TestStack) -> digests::aws::AwsDeps {
    digests::aws::deps(&t.sdk, &digests::Config::from_lookup(&t.lookup("digests")).unwrap())
}

async fn head(t: &TestStack, id: &DigestId) -> DigestHead {
    t.ledger().head(id).await.unwrap().expect("the digest head")
}

/// The number at the start of a digest email's subject ("12 new comments on ...").
fn subject_total(email: &Value) -> u64 {
    let subject = email["subject"].as_str().unwrap();
    subject.split(' ').next().unwrap().parse().unwrap_or_else(|_| panic!("{subject}"))
}

fn notify_of(body: &str) -> NotifyRequest {
    request(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_items_across_three_keys_make_one_message_per_key_and_window() {
    let t = TestStack::new().await;
    let tag = &t.tag;
    let who = format!("ana-{tag}");
    let address = format!("ana.{tag}@example.org");
    t.publish(&[json!({"type": "upsert_recipient", "recipient": who, "email": address}).to_string()]).await;
    t.wait_idle().await;

    let posts = [format!("post-a-{tag}"), format!("post-b-{tag}"), format!("post-c-{tag}")];
    let bodies: Vec<String> = (0..100)
        .map(|i| {
            let post = &posts[i % 3];
            comment(&format!("{tag}-c{i}"), &who, post, i, "transactional", json!({"key": post, "window": "30s"}))
        })
        .collect();
    // Every item twice (a producer retrying), the copies in another order, all at once.
    let mut twice = bodies.clone();
    twice.extend(bodies.iter().rev().cloned());
    let sqs = aws_sdk_sqs::Client::new(&t.sdk);
    let url = t.queue_url("IngestQueue");
    let sends = twice.chunks(10).enumerate().map(|(c, chunk)| {
        let entries = chunk.iter().enumerate().map(|(i, b)| {
            aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                .id(format!("e{c}x{i}"))
                .message_body(b)
                .build()
                .unwrap()
        });
        sqs.send_message_batch().queue_url(&url).set_entries(Some(entries.collect())).send()
    });
    for sent in futures::future::join_all(sends).await {
        assert!(sent.unwrap().failed.is_empty());
    }
    t.wait_idle().await;

    let data = provider_data().await;
    let emails = emails_to(&data, &address);
    let mut messages = 0;
    for (p, post) in posts.iter().enumerate() {
        let id = head_id(&who, post);
        let h = head(&t, &id).await;
        assert_eq!((h.total, h.sealed.as_ref()), (0, None), "{post}: every window closed and handed off");
        let windows = h.win - 1;
        assert!(windows >= 1, "{post}");
        let mut total = 0;
        for win in 1..=windows {
            let entry = t.entry(&id.message_key(win)).await.unwrap();
            assert_eq!((entry.status.as_str(), entry.duplicates), ("sent", 0), "{post} window {win}: one message");
            let mine: Vec<_> = emails
                .iter()
                .filter(|e| e["subject"].as_str().is_some_and(|s| s.ends_with(&format!(" on {post}"))))
                .collect();
            total = mine.iter().map(|e| subject_total(e)).sum::<u64>();
            assert_eq!(mine.len() as u64, windows, "{post}: one email per window");
        }
        let expected = (0..100).filter(|i| i % 3 == p).count() as u64;
        assert_eq!(total, expected, "{post}: every item counted once, none from another key");
        messages += windows;
    }
    assert_eq!(emails.len() as u64, messages, "nothing else was sent");
    for i in 0..100 {
        let entry = t.entry(&format!("{tag}-c{i}")).await.unwrap();
        assert_eq!((entry.status.as_str(), entry.duplicates), ("digested", 1), "item {i}");
    }
    t.stop().await;
}

/// Digests whose hand-off record fails once, as a function dying after it sent the
/// window's message and before it recorded the hand-off.
struct FailOnce {
    inner: DynamoLedger,
    failed: AtomicBool,
}

impl Digests for FailOnce {
    async fn admit_item(&self, admit: Admit<'_>, head: &DigestId, data: &str) -> PortResult<Admission> {
        self.inner.admit_item(admit, head, data).await
    }
    async fn append(&self, append: DigestAppend<'_>) -> PortResult<Appended> {
        self.inner.append(append).await
    }
    async fn head(&self, id: &DigestId) -> PortResult<Option<DigestHead>> {
        self.inner.head(id).await
    }
    async fn seal(&self, id: &DigestId, win: u64, now: DateTime<Utc>) -> PortResult<bool> {
        self.inner.seal(id, win, now).await
    }
    async fn handed_off(&self, id: &DigestId, win: u64) -> PortResult<()> {
        if !self.failed.swap(true, Ordering::SeqCst) {
            return Err(PortError::Transient("the function died here".into()));
        }
        self.inner.handed_off(id, win).await
    }
    async fn item_data(&self, ids: &[MessageId]) -> PortResult<Vec<Value>> {
        self.inner.item_data(ids).await
    }
}

struct Flaky;

impl digests::Ports for Flaky {
    type Outbox = SqsOutbox;
    type Schedule = DynamoSchedule;
    type Digests = FailOnce;
    type Templates = DynamoTemplates;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_is_sent_once_when_its_close_comes_twice_or_dies_between_steps() {
    let t = TestStack::without_functions().await;
    let tag = &t.tag;
    let who = format!("bo-{tag}");
    let post = format!("post-{tag}");
    let ingest = ingest_deps(&t);
    let items: Vec<String> = (0..3)
        .map(|i| comment(&format!("{tag}-i{i}"), &who, &post, i, "transactional", json!({"key": post, "window": "1m"})))
        .collect();
    let now = Utc::now();
    let response = ingest::handler(&ingest, sqs_event(&items)).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert!(t.drain("EligibilityQueue").await.is_empty(), "items never go to eligibility one by one");
    let id = head_id(&who, &post);
    let h = head(&t, &id).await;
    assert_eq!((h.win, h.total, h.first.len()), (1, 3, 3));
    let due = h.due.unwrap();
    // The head keeps instants to the millisecond.
    let window = (now - TimeDelta::milliseconds(1) + TimeDelta::minutes(1))..=(Utc::now() + TimeDelta::minutes(1));
    assert!(window.contains(&due), "{due}");

    let plain = digest_deps(&t);
    let deps = digests::Deps::<Flaky> {
        outbox: plain.outbox,
        schedule: plain.schedule,
        digests: FailOnce { inner: plain.digests, failed: AtomicBool::new(false) },
        templates: plain.templates,
    };
    let job = serde_json::to_string(&CloseJob { digest: id.clone(), win: 1, due }).unwrap();
    let later = due + TimeDelta::seconds(1);
    // Early: nothing happens (the job waits again).
    let early = digests::handle_at(&deps, sqs_event(&[&job]), due - TimeDelta::seconds(30)).await.unwrap();
    assert!(early.batch_item_failures.is_empty());
    assert_eq!(head(&t, &id).await.total, 3, "not sealed before its time");
    // Sealed and sent, then dies before recording the hand-off: retried.
    let first = digests::handle_at(&deps, sqs_event(&[&job]), later).await.unwrap();
    assert_eq!(first.batch_item_failures.len(), 1);
    assert!(head(&t, &id).await.sealed.is_some(), "the sealed window waits for its hand-off");
    // The redelivery and a duplicate of the job together, then another copy.
    let again = digests::handle_at(&deps, sqs_event(&[&job, &job]), later).await.unwrap();
    assert!(again.batch_item_failures.is_empty());
    let last = digests::handle_at(&deps, sqs_event(&[&job]), later + TimeDelta::minutes(5)).await.unwrap();
    assert!(last.batch_item_failures.is_empty());
    let h = head(&t, &id).await;
    assert_eq!((h.win, h.total, h.sealed), (2, 0, None));

    // Every copy that reached ingest is the same message; ingest admits it once.
    let copies = t.drain("IngestQueue").await;
    assert!((2..=3).contains(&copies.len()), "{copies:?}");
    let message = notify_of(&copies[0]);
    assert!(copies.iter().all(|c| notify_of(c) == message));
    assert_eq!(message.idempotency_key.as_str(), id.message_key(1));
    assert_eq!(message.data["total"], 3);
    let mut authors: Vec<&str> =
        message.data["items"].as_array().unwrap().iter().map(|i| i["author"].as_str().unwrap()).collect();
    authors.sort();
    assert_eq!(authors, ["a0", "a1", "a2"], "each item once (in arrival order: one batch's items arrive together)");
    ingest::handler(&ingest, sqs_event(&copies)).await.unwrap();
    assert_eq!(t.drain("EligibilityQueue").await.len(), 1, "one message goes on to eligibility");
    let entry = t.entry(message.idempotency_key.as_str()).await.unwrap();
    assert_eq!(entry.duplicates as usize, copies.len() - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_racing_a_seal_lands_in_exactly_one_window_and_a_redelivery_counts_nothing() {
    let t = TestStack::without_functions().await;
    let tag = &t.tag;
    let who = format!("cy-{tag}");
    let post = format!("post-{tag}");
    let ledger = t.ledger();
    let id = head_id(&who, &post);
    let now = Utc::now();
    let requests: Vec<NotifyRequest> = (0..50)
        .map(|i| {
            request(&comment(&format!("{tag}-r{i}"), &who, &post, i, "marketing", json!({"key": post, "window": "1h"})))
        })
        .collect();
    let ids: Vec<MessageId> = requests.iter().map(|r| MessageId::for_key(&r.idempotency_key)).collect();
    let opening = Opening::of(&requests[0]).unwrap();
    let append = |i: usize| {
        let a = DigestAppend {
            head: &id,
            item: &ids[i],
            request: &requests[i],
            opening: &opening,
            now,
            due: now + TimeDelta::hours(1),
        };
        ledger.append(a)
    };
    for i in 0..5 {
        assert!(!append(i).await.unwrap().already);
    }
    // Forty appends in flight, and the window sealed once fifteen of them are done.
    let done = std::sync::atomic::AtomicUsize::new(0);
    let counted = |i: usize| {
        let done = &done;
        let a = append(i);
        async move {
            let r = a.await;
            done.fetch_add(1, Ordering::SeqCst);
            r
        }
    };
    let (appends, sealed) = tokio::join!(futures::future::join_all((5..45).map(counted)), async {
        while done.load(Ordering::SeqCst) < 15 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        ledger.seal(&id, 1, now).await
    });
    assert!(sealed.unwrap());
    assert!(appends.iter().all(|a| a.as_ref().is_ok_and(|a| !a.already)));
    // And five after the seal, certainly in the next window.
    for i in 45..50 {
        assert_eq!(append(i).await.unwrap().win, 2);
    }
    let h = head(&t, &id).await;
    let s = h.sealed.clone().unwrap();
    assert_eq!(s.win, 1);
    assert_eq!(s.total + h.total, 50, "every item in one of the two windows");
    assert!(s.total >= 20 && h.total >= 5, "{} + {}", s.total, h.total);
    assert_eq!((s.first.len() as u64, h.first.len() as u64), (s.total, h.total));
    let mut all: Vec<&MessageId> = s.first.iter().chain(&h.first).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 50, "no item in both");
    assert!(ids[..5].iter().all(|i| s.first.contains(i)));

    // Each item delivered again: counted nowhere, in the open window or the sealed one.
    for (i, item) in ids.iter().enumerate() {
        let again = append(i).await.unwrap();
        assert!(again.already, "item {i}");
        assert_eq!(again.in_previous, s.first.contains(item), "item {i}");
    }
    let after = head(&t, &id).await;
    assert_eq!((after.total, after.sealed.unwrap().total), (h.total, s.total));
    // A second seal of the same window does nothing; the next one waits for the hand-off.
    assert!(!ledger.seal(&id, 1, now).await.unwrap());
    assert!(!ledger.seal(&id, 2, now).await.unwrap());
    ledger.handed_off(&id, 1).await.unwrap();
    ledger.handed_off(&id, 1).await.unwrap();
    assert!(ledger.seal(&id, 2, now).await.unwrap());
    // Two keys never share a head.
    let other = head_id(&who, &format!("{post}-other"));
    assert!(ledger.head(&other).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_items_closes_the_window_at_once_and_the_message_goes_through_eligibility() {
    let t = TestStack::without_functions().await;
    let tag = &t.tag;
    let who = format!("di-{tag}");
    let post = format!("post-{tag}");
    let ingest = ingest_deps(&t);
    let setup =
        [json!({"type": "upsert_recipient", "recipient": who, "email": format!("di.{tag}@example.org")}).to_string()];
    ingest::handler(&ingest, sqs_event(&setup)).await.unwrap();
    let spec = json!({"key": post, "window": "10m", "max_items": 3});
    let items: Vec<String> =
        (0..4).map(|i| comment(&format!("{tag}-m{i}"), &who, &post, i, "marketing", spec.clone())).collect();
    ingest::handler(&ingest, sqs_event(&items[..3])).await.unwrap();
    // The window's own job waits ten minutes; the full window's is there at once.
    let jobs = t.drain("DigestQueue").await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let job: CloseJob = serde_json::from_str(&jobs[0]).unwrap();
    assert_eq!(job.win, 1);
    let digest = digest_deps(&t);
    let response = digests::handle_at(&digest, sqs_event(&jobs), Utc::now()).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    let messages = t.drain("IngestQueue").await;
    assert_eq!(messages.len(), 1);
    let message = notify_of(&messages[0]);
    assert_eq!((message.data["total"].as_u64(), message.kind.as_str()), (Some(3), "marketing"));
    // The fourth item opens the next window.
    ingest::handler(&ingest, sqs_event(&items[3..])).await.unwrap();
    let id = head_id(&who, &post);
    let h = head(&t, &id).await;
    assert_eq!((h.win, h.total), (2, 1));

    // The digest message is an ordinary notification: without an opt-in, marketing is not sent.
    ingest::handler(&ingest, sqs_event(&messages)).await.unwrap();
    let jobs = t.drain("EligibilityQueue").await;
    assert_eq!(jobs.len(), 1);
    let eligibility =
        eligibility::aws::deps(&t.sdk, &eligibility::Config::from_lookup(&t.lookup("eligibility")).unwrap());
    eligibility::handle_at(&eligibility, sqs_event(&jobs), Utc::now()).await.unwrap();
    let entry = t.entry(message.idempotency_key.as_str()).await.unwrap();
    assert_eq!((entry.status.as_str(), entry.reason.as_deref()), ("suppressed", Some("no_consent")));
    assert!(t.drain("EmailQueue").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sliding_window_moves_with_each_item_up_to_max_wait() {
    let t = TestStack::without_functions().await;
    let tag = &t.tag;
    let who = format!("ed-{tag}");
    let post = format!("post-{tag}");
    let ledger = t.ledger();
    let digest = digest_deps(&t);
    let start = Utc::now().with_nanosecond(0).unwrap();
    let add = |n: usize, post: &str, spec: Value, at: DateTime<Utc>| {
        let r = request(&comment(&format!("{tag}-{post}-{n}"), &who, post, n, "transactional", spec));
        let ledger = ledger.clone();
        async move {
            let id = MessageId::for_key(&r.idempotency_key);
            let head = head_id(r.recipient.as_str(), &r.digest.as_ref().unwrap().key.to_string());
            let admit = Admit {
                id: &id,
                source_id: "src",
                request: &r,
                now: at,
                dedupe_until: at + TimeDelta::days(1),
                expires_at: at + TimeDelta::days(30),
            };
            let data = serde_json::to_string(&r.data).unwrap();
            assert_eq!(ledger.admit_item(admit, &head, &data).await.unwrap(), Admission::New);
            let opening = Opening::of(&r).unwrap();
            let due = first_close(r.digest.as_ref().unwrap(), at, None);
            let append = DigestAppend { head: &head, item: &id, request: &r, opening: &opening, now: at, due };
            ledger.append(append).await.unwrap()
        }
    };
    let spec = json!({"key": post, "window": "10m", "sliding": true, "max_wait": "30m"});
    let min = |m: i64| start + TimeDelta::minutes(m);
    let opened = add(0, &post, spec.clone(), min(0)).await;
    assert!(opened.opened);
    assert_eq!(opened.due, min(10));
    add(1, &post, spec.clone(), min(8)).await;
    let id = head_id(&who, &post);
    let job = serde_json::to_string(&CloseJob { digest: id.clone(), win: 1, due: min(10) }).unwrap();
    let close = |at: DateTime<Utc>| digests::handle_at(&digest, sqs_event(&[&job]), at);
    // At its first end the window has moved on to eight minutes later.
    close(min(10)).await.unwrap();
    assert_eq!(head(&t, &id).await.total, 2);
    add(2, &post, spec.clone(), min(16)).await;
    add(3, &post, spec.clone(), min(24)).await;
    close(min(26)).await.unwrap();
    assert_eq!(head(&t, &id).await.total, 4, "not before its end");
    // 24 + 10 is past max_wait: the window ends 30 minutes after it opened.
    close(min(30)).await.unwrap();
    let h = head(&t, &id).await;
    assert_eq!((h.win, h.total, h.sealed), (2, 0, None));
    let messages = t.drain("IngestQueue").await;
    assert_eq!(messages.len(), 1);
    assert_eq!(notify_of(&messages[0]).data["total"], 4);

    // A wait past fifteen minutes is kept in the schedule table, to go back to the digest queue.
    let long = format!("{post}-long");
    let spec = json!({"key": long, "window": "1h", "sliding": true, "max_wait": "2h"});
    add(0, &long, spec.clone(), min(0)).await;
    add(1, &long, spec, min(50)).await;
    let long_id = head_id(&who, &long);
    let job = serde_json::to_string(&CloseJob { digest: long_id.clone(), win: 1, due: min(60) }).unwrap();
    digests::handle_at(&digest, sqs_event(&[&job]), min(60)).await.unwrap();
    let waiting = digest.schedule.due(min(109), min(111), 10).await.unwrap();
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert_eq!((waiting[0].to, waiting[0].due), (Destination::Digest, min(110)));
    let rescheduled: CloseJob = serde_json::from_str(&waiting[0].body).unwrap();
    assert_eq!((rescheduled.digest, rescheduled.win), (long_id, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_first_sends_the_opening_item_at_once_and_the_rest_at_the_end() {
    let t = TestStack::without_functions().await;
    let tag = &t.tag;
    let who = format!("flo-{tag}");
    let post = format!("post-{tag}");
    let ingest = ingest_deps(&t);
    let spec = json!({"key": post, "window": "10m", "flush_first": true});
    let items: Vec<String> =
        (0..3).map(|i| comment(&format!("{tag}-f{i}"), &who, &post, i, "transactional", spec.clone())).collect();
    ingest::handler(&ingest, sqs_event(&items[..1])).await.unwrap();
    ingest::handler(&ingest, sqs_event(&items[1..])).await.unwrap();
    let id = head_id(&who, &post);
    let first = t.drain("IngestQueue").await;
    assert_eq!(first.len(), 1, "the first item goes at once");
    let first = notify_of(&first[0]);
    assert_eq!(first.idempotency_key.as_str(), id.first_key(1));
    assert_eq!((first.data["total"].as_u64(), first.data["items"][0]["author"].as_str()), (Some(1), Some("a0")));
    assert_eq!(first.digest, None, "an ordinary notify");

    let h = head(&t, &id).await;
    let job = serde_json::to_string(&CloseJob { digest: id.clone(), win: 1, due: h.due.unwrap() }).unwrap();
    let digest = digest_deps(&t);
    digests::handle_at(&digest, sqs_event(&[&job]), h.due.unwrap()).await.unwrap();
    let rest = t.drain("IngestQueue").await;
    assert_eq!(rest.len(), 1);
    let rest = notify_of(&rest[0]);
    let mut authors: Vec<&str> =
        rest.data["items"].as_array().unwrap().iter().map(|i| i["author"].as_str().unwrap()).collect();
    authors.sort();
    assert_eq!((rest.data["total"].as_u64(), authors), (Some(2), vec!["a1", "a2"]), "the first item not again");

    // A window whose only item went at once sends nothing at its end.
    let lone = comment(&format!("{tag}-f9"), &who, &post, 9, "transactional", spec.clone());
    ingest::handler(&ingest, sqs_event(&[lone])).await.unwrap();
    assert_eq!(t.drain("IngestQueue").await.len(), 1, "the first item of window 2");
    let h = head(&t, &id).await;
    assert_eq!(h.win, 2);
    let job = serde_json::to_string(&CloseJob { digest: id.clone(), win: 2, due: h.due.unwrap() }).unwrap();
    digests::handle_at(&digest, sqs_event(&[&job]), h.due.unwrap()).await.unwrap();
    assert!(t.drain("IngestQueue").await.is_empty());
    assert_eq!(head(&t, &id).await.win, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn until_ends_the_window_at_the_next_local_time_of_the_recipient() {
    let t = TestStack::without_functions().await;
    let tag = &t.tag;
    let who = format!("gil-{tag}");
    let post = format!("post-{tag}");
    let ingest = ingest_deps(&t);
    let setup = [json!({"type": "upsert_recipient", "recipient": who, "timezone": "Asia/Tokyo"}).to_string()];
    ingest::handler(&ingest, sqs_event(&setup)).await.unwrap();
    let before = Utc::now();
    let item = comment(&format!("{tag}-u0"), &who, &post, 0, "transactional", json!({"key": post, "until": "18:00"}));
    ingest::handler(&ingest, sqs_event(&[item])).await.unwrap();
    // 18:00 in Tokyo (UTC+9, no DST) is 09:00 UTC: the next one after the item came.
    let mut expected =
        before.with_hour(9).unwrap().with_minute(0).unwrap().with_second(0).unwrap().with_nanosecond(0).unwrap();
    if expected <= before {
        expected += TimeDelta::days(1);
    }
    let id = head_id(&who, &post);
    let due = head(&t, &id).await.due.unwrap();
    assert_eq!(due, expected);
    let digest = digest_deps(&t);
    let job = serde_json::to_string(&CloseJob { digest: id.clone(), win: 1, due }).unwrap();
    digests::handle_at(&digest, sqs_event(&[&job]), due - TimeDelta::seconds(1)).await.unwrap();
    assert_eq!(head(&t, &id).await.win, 1);
    digests::handle_at(&digest, sqs_event(&[&job]), due).await.unwrap();
    assert_eq!(head(&t, &id).await.win, 2);
    assert_eq!(t.drain("IngestQueue").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_digest_items_are_refused_with_their_reasons() {
    let t = TestStack::without_functions().await;
    let tag = &t.tag;
    let ingest = ingest_deps(&t);
    let who = format!("hal-{tag}");
    let item = |n: usize, digest: Value, extra: Value| {
        let mut body: Value =
            serde_json::from_str(&comment(&format!("{tag}-b{n}"), &who, "p", n, "marketing", digest)).unwrap();
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body.to_string()
    };
    let cases = [
        (item(0, json!({"key": "p"}), json!({})), "invalid_field", "digest needs exactly one of window and until"),
        (
            item(1, json!({"key": "p", "window": "8d"}), json!({})),
            "invalid_field",
            "digest.window must be from 1s to 7d",
        ),
        (
            item(2, json!({"key": "p", "window": "1m", "sliding": true}), json!({})),
            "invalid_field",
            "digest.sliding needs max_wait",
        ),
        (
            item(3, json!({"key": "p", "window": "1m"}), json!({"send_at": "2030-01-01T00:00:00Z"})),
            "invalid_field",
            "digest cannot be combined with send_at",
        ),
        (
            item(4, json!({"key": "p", "window": "1m"}), json!({"data": {"text": "x".repeat(5000)}})),
            "digest_item_too_large",
            "a digest item's data is 5011 bytes as JSON, at most 4096 are kept",
        ),
    ];
    let bodies: Vec<&String> = cases.iter().map(|(b, _, _)| b).collect();
    let response = ingest::handler(&ingest, sqs_event(&bodies)).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    for (n, (_, code, detail)) in cases.iter().enumerate() {
        let (got_code, got_detail) = t.ledger().rejection(&format!("m{n}")).await.unwrap().unwrap();
        assert_eq!((got_code.as_str(), got_detail.as_str()), (*code, *detail), "case {n}");
        let id = MessageId::for_key(&IdempotencyKey::new(format!("{tag}-b{n}")).unwrap());
        assert!(t.ledger().get(&id).await.unwrap().is_none(), "case {n} admitted nothing");
    }
    assert!(t.drain("DigestQueue").await.is_empty());
}
