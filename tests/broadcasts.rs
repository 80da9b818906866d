//! Broadcasts end to end on the local stack: a campaign to a segment of 1,008 people with
//! every kind of refusal among them, reaching exactly the right people once each while its
//! fan-out pages are delivered twice and a worker dies mid-page; pause, resume, cancel and
//! a broadcast sent twice; bad commands refused before anything is sent.

use crate::support::*;
use chrono::{TimeDelta, Utc};
use futures::StreamExt;
use herald::aws::dynamodb::{DynamoRecipients, DynamoSuppression, DynamoTemplates};
use herald::aws::sqs::{QueueUrls, SqsOutbox};
use herald::contract::{SetConsent, UpsertRecipient};
use herald::domain::broadcast::BroadcastState;
use herald::domain::ledger::SuppressionCause;
use herald::domain::profile::ProfileSchema;
use herald::domain::segment::SegmentDoc;
use herald::domain::{CampaignId, Channel, EmailAddress};
use herald::ports::*;
use herald_cli::runner::{Options, Runner};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The groups of the big audience, by `i % 12`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    /// Pro, email, opted in: gets the broadcast.
    Sent,
    /// In the audience, but eligibility refuses or holds it.
    Bounced,
    QuietHours,
    Capped,
    /// Not in the audience: the scan leaves them out.
    NoConsent,
    Free,
    Churned,
    NoEmail,
}

fn group(i: usize) -> Group {
    match i % 12 {
        0..=4 => Group::Sent,
        5 => Group::Bounced,
        6 => Group::QuietHours,
        7 => Group::Capped,
        8 => Group::NoConsent,
        9 => Group::Free,
        10 => Group::Churned,
        _ => Group::NoEmail,
    }
}

fn who(tag: &str, i: usize) -> String {
    format!("{tag}-p{i}")
}

fn address(tag: &str, i: usize) -> String {
    format!("p{i}.{tag}@example.org")
}

/// The profile schema and segments the tests broadcast to, pushed to the stack's table.
async fn push_segments(t: &TestStack, tag: &str) -> DynamoTemplates {
    let templates =
        DynamoTemplates::new(aws_sdk_dynamodb::Client::new(&t.sdk), t.table("TemplatesTable"), Duration::ZERO);
    let schema: ProfileSchema =
        serde_json::from_value(json!({"attributes": {"plan": "string", "churned": "boolean"}})).unwrap();
    templates.put_profile_schema(&schema, Utc::now()).await.unwrap();
    let churned: SegmentDoc = serde_json::from_value(json!({
        "name": format!("{tag}-churned"), "channels": ["email"],
        "filter": {"field": "attributes.churned", "equals": true}
    }))
    .unwrap();
    let pro: SegmentDoc = serde_json::from_value(json!({
        "name": format!("{tag}-pro"), "version": 1, "topic": "promotions", "channels": ["email"],
        "exclude": format!("{tag}-churned"),
        "filter": {"all": [{"field": "attributes.plan", "equals": "pro"}]}
    }))
    .unwrap();
    for doc in [&churned, &pro] {
        templates.put_segment(doc, Utc::now()).await.unwrap();
    }
    templates
}

/// `n` people, written straight to the recipients and suppression tables (the pipeline's
/// own recipient commands are tested elsewhere; this is the audience's setup).
async fn seed(t: &TestStack, tag: &str, n: usize) {
    let dynamodb = aws_sdk_dynamodb::Client::new(&t.sdk);
    let recipients = DynamoRecipients::new(dynamodb.clone(), t.table("RecipientsTable"));
    let suppression = DynamoSuppression::new(dynamodb, t.table("SuppressionTable"));
    let now = Utc::now();
    // Quiet hours around now, in UTC, for the QuietHours group.
    let (start, end) = ((now - TimeDelta::hours(2)).format("%H:%M"), (now + TimeDelta::hours(2)).format("%H:%M"));
    futures::stream::iter(0..n)
        .for_each_concurrent(16, |i| {
            let (recipients, suppression) = (&recipients, &suppression);
            let (start, end) = (start.to_string(), end.to_string());
            async move {
                let g = group(i);
                let mut cmd = json!({"recipient": who(tag, i), "timezone": "UTC",
                    "attributes": {"plan": if g == Group::Free { "free" } else { "pro" }, "churned": g == Group::Churned}});
                if g == Group::NoEmail {
                    cmd["phone"] = json!(phone(tag, i as u32));
                } else {
                    cmd["email"] = json!(address(tag, i));
                }
                if g == Group::QuietHours {
                    cmd["quiet_hours"] = json!({"start": start, "end": end});
                }
                let cmd: UpsertRecipient = serde_json::from_value(cmd).unwrap();
                recipients.upsert(&cmd, now).await.unwrap();
                if g != Group::NoConsent {
                    let consent: SetConsent = serde_json::from_value(json!({"recipient": who(tag, i), "channel": "email",
                        "topic": "promotions", "granted": true, "source": "test"}))
                    .unwrap();
                    recipients.set_consent(&consent, now).await.unwrap();
                }
                if g == Group::Bounced {
                    let hash = EmailAddress::new(address(tag, i)).unwrap().suppression_hash();
                    suppression.suppress(Channel::Email, &hash, SuppressionCause::Bounce, now).await.unwrap();
                }
            }
        })
        .await;
}

fn broadcast_body(campaign: &str, segment: &str, rate: u32) -> String {
    json!({"type": "broadcast", "campaign": campaign, "segment": segment, "template": "weekly_digest",
           "rate_per_second": rate, "data": {"headline": "Spring is here"}})
    .to_string()
}

/// Forwards the first half of the messages a page hands to ingest, then fails, as a worker
/// that dies mid-page would; every other call goes through.
struct DiesMidPage {
    inner: SqsOutbox,
    /// Ingest sends to fail this way, counting down.
    failures_left: AtomicUsize,
}

impl Outbox for DiesMidPage {
    async fn send(&self, to: Destination, mut messages: Vec<Outgoing>) -> PortResult<Vec<String>> {
        if to == Destination::Ingest
            && messages.len() > 1
            && self.failures_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
        {
            messages.truncate(messages.len() / 2);
            self.inner.send(to, messages).await?;
            return Err(PortError::Transient("the worker died mid-page".into()));
        }
        self.inner.send(to, messages).await
    }

    async fn retry_later(&self, from: Destination, receipt_handle: &str, secs: u32) -> PortResult<()> {
        self.inner.retry_later(from, receipt_handle, secs).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_reaches_its_audience_once_though_pages_come_twice_and_a_worker_dies_mid_page() {
    let mut t = TestStack::without_functions().await;
    // One marketing email a day per person (rolling, so the capped group's broadcast waits a
    // day in the schedule rather than minutes on a queue).
    let caps = r#"{"marketing":[{"scope":"each_channel","window":"24h","max":1}]}"#;
    let eligibility = t.stack.functions.iter_mut().find(|f| f.name == "eligibility").unwrap();
    eligibility.env.insert("HERALD_CAP_POLICY".into(), caps.into());
    // Every function runs but the fan-out, which this test drives by hand.
    let options = Options { schedules: Some(None), skip: vec!["broadcast".into()], ..Options::default() };
    t.runner = Some(Runner::start_with(&t.stack, &t.sdk, options).unwrap());
    let tag = t.tag.clone();
    let n = 1_008;
    push_segments(&t, &tag).await;
    seed(&t, &tag, n).await;
    // The capped group got a marketing email this hour already (the hourly email cap is 1).
    let warmups: Vec<String> = (0..n)
        .filter(|i| group(*i) == Group::Capped)
        .map(|i| {
            json!({"idempotency_key": format!("{tag}-warmup-{i}"), "recipient": who(&tag, i), "template": "weekly_digest",
                   "kind": "marketing", "topic": "promotions", "channels": ["email"], "data": {"headline": "Warm-up"}})
            .to_string()
        })
        .collect();
    t.publish(&warmups).await;
    t.wait_idle().await;

    let campaign = format!("{tag}-launch");
    t.publish(&[broadcast_body(&campaign, &format!("{tag}-pro"), 500)]).await;

    let env = t.env("broadcast", &[]);
    let config = broadcast::Config::from_lookup(&|k: &str| env.get(k).cloned()).unwrap();
    let real = broadcast::aws::deps(&t.sdk, &config);
    let urls = QueueUrls {
        ingest: Some(config.ingest_queue_url.clone()),
        broadcast: Some(config.broadcast_queue_url.clone()),
        ..QueueUrls::default()
    };
    let dying = broadcast::Deps {
        broadcasts: t.ledger(),
        recipients: DynamoRecipients::new(aws_sdk_dynamodb::Client::new(&t.sdk), t.table("RecipientsTable")),
        outbox: DiesMidPage {
            inner: SqsOutbox::new(aws_sdk_sqs::Client::new(&t.sdk), urls),
            failures_left: AtomicUsize::new(2),
        },
    };
    let sqs = aws_sdk_sqs::Client::new(&t.sdk);
    let queue = t.queue_url("BroadcastQueue");
    let name = CampaignId::new(campaign.clone()).unwrap();
    let (mut pages, mut died) = (0, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        assert!(std::time::Instant::now() < deadline, "the fan-out did not finish");
        let state = t.ledger().broadcast(&name).await.unwrap().map(|b| b.state);
        let got = sqs.receive_message().queue_url(&queue).max_number_of_messages(10).wait_time_seconds(1).send().await;
        let messages = got.unwrap().messages.unwrap_or_default();
        if messages.is_empty() {
            if state == Some(BroadcastState::Done) {
                break;
            }
            continue;
        }
        for m in messages {
            let body = m.body.clone().unwrap();
            // The worker that dies mid-page: its page comes back (SQS redelivers it) ...
            let first = broadcast::handler(&dying, sqs_event(&[&body])).await.unwrap();
            if !first.batch_item_failures.is_empty() {
                died += 1;
                let again = broadcast::handler(&real, sqs_event(&[&body])).await.unwrap();
                assert!(again.batch_item_failures.is_empty(), "{again:?}");
            }
            // ... and every page is delivered once more after it was read.
            let twice = broadcast::handler(&real, sqs_event(&[&body])).await.unwrap();
            assert!(twice.batch_item_failures.is_empty(), "{twice:?}");
            pages += 1;
            sqs.delete_message().queue_url(&queue).receipt_handle(m.receipt_handle.unwrap()).send().await.unwrap();
        }
    }
    assert_eq!(died, 2, "two pages died mid-page and were read again");
    assert!(pages >= 4, "each scan segment is at least one page: {pages}");
    // About 1,700 notifications (every page twice) through a pipeline that moto serves one
    // request at a time: longer than the usual wait.
    t.stack.wait_idle(&t.sdk, Duration::from_secs(400)).await.unwrap();

    let data = provider_data().await;
    let mut wrong = Vec::new();
    for i in 0..n {
        let g = group(i);
        let emails = if g == Group::NoEmail { 0 } else { emails_to(&data, &address(&tag, i)).len() };
        let expected = match g {
            Group::Sent | Group::Capped => 1,
            _ => 0,
        };
        if emails != expected {
            wrong.push(format!("{i} ({g:?}): {emails} email(s)"));
        }
        let entry = t.entry(&format!("{campaign}#{}", who(&tag, i))).await;
        let status = entry.as_ref().map(|e| (e.status.as_str().to_owned(), e.reason.clone().unwrap_or_default()));
        let status = status.as_ref().map(|(s, r)| (s.as_str(), r.as_str()));
        let ok = match g {
            Group::Sent => status.is_some_and(|(s, _)| s == "sent" || s == "delivered"),
            Group::Bounced => status == Some(("suppressed", "suppressed_bounce")),
            Group::QuietHours => status == Some(("deferred", "quiet_hours_deferred")),
            Group::Capped => status.is_some_and(|(s, r)| r == "cap_reached" && s != "sent"),
            // Left out at the scan: never admitted, nothing written for them.
            Group::NoConsent | Group::Free | Group::Churned | Group::NoEmail => status.is_none(),
        };
        if !ok {
            wrong.push(format!("{i} ({g:?}): ledger {status:?}"));
        }
    }
    assert!(wrong.is_empty(), "{} wrong: {:?}", wrong.len(), &wrong[..wrong.len().min(20)]);

    let b = t.ledger().broadcast(&name).await.unwrap().unwrap();
    let per_group = |g: Group| (0..n).filter(|i| group(*i) == g).count() as u64;
    assert_eq!(b.state, BroadcastState::Done);
    assert_eq!(b.counts.scanned, n as u64, "every profile read once, however often its page was");
    let matched =
        per_group(Group::Sent) + per_group(Group::Bounced) + per_group(Group::QuietHours) + per_group(Group::Capped);
    assert_eq!((b.counts.matched, b.counts.queued), (matched, matched));
    let missed = |r: &str| b.counts.missed.get(r).copied().unwrap_or(0);
    assert_eq!(missed("no_consent"), per_group(Group::NoConsent));
    assert_eq!(missed("filter"), per_group(Group::Free));
    assert_eq!(missed("excluded"), per_group(Group::Churned));
    assert_eq!(missed("unreachable"), per_group(Group::NoEmail));
    t.stop().await;
}

async fn state(t: &TestStack, campaign: &str) -> Option<BroadcastState> {
    t.ledger().broadcast(&CampaignId::new(campaign).unwrap()).await.unwrap().map(|b| b.state)
}

async fn wait_for_state(t: &TestStack, campaign: &str, wanted: BroadcastState) {
    for _ in 0..100 {
        if state(t, campaign).await == Some(wanted) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("broadcast {campaign} never became {wanted:?}: {:?}", state(t, campaign).await);
}

fn emails(data: &Value, tag: &str, n: usize) -> Vec<usize> {
    (0..n).map(|i| emails_to(data, &address(tag, i)).len()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_a_broadcast_resume_finishes_it_once_cancel_stops_it_and_sending_it_again_sends_nothing() {
    // Only the per-campaign cap: the second broadcast below goes to the same people.
    let caps = r#"{"marketing":[{"scope":"campaign","window":"24h","max":1}]}"#;
    let t = TestStack::with_env(&[("eligibility", "HERALD_CAP_POLICY", caps)]).await;
    let tag = t.tag.clone();
    let n = 60;
    push_segments(&t, &tag).await;
    seed(&t, &tag, n).await;
    // Pro, email, opted in: the Sent group, and the Capped one (no warm-up here).
    let reached: Vec<usize> = (0..n).filter(|i| matches!(group(*i), Group::Sent | Group::Capped)).collect();
    let segment = format!("{tag}-pro");

    // Paused before it starts: nothing goes out until it is resumed.
    let paused = format!("{tag}-paused");
    let later = (Utc::now() + TimeDelta::seconds(3)).to_rfc3339();
    let body: Value = serde_json::from_str(&broadcast_body(&paused, &segment, 200)).unwrap();
    let mut body = body;
    body["send_at"] = json!(later);
    t.publish(&[body.to_string()]).await;
    wait_for_state(&t, &paused, BroadcastState::Running).await;
    t.publish(&[json!({"type": "pause_broadcast", "campaign": paused}).to_string()]).await;
    wait_for_state(&t, &paused, BroadcastState::Paused).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    t.wait_idle().await;
    let none: Vec<usize> = emails(&provider_data().await, &tag, n);
    assert!(none.iter().all(|e| *e == 0), "a paused broadcast sent: {none:?}");
    t.publish(&[json!({"type": "resume_broadcast", "campaign": paused}).to_string()]).await;
    wait_for_state(&t, &paused, BroadcastState::Done).await;
    t.wait_idle().await;
    let after = emails(&provider_data().await, &tag, n);
    for i in 0..n {
        assert_eq!(after[i], usize::from(reached.contains(&i)), "person {i} after resume: {after:?}");
    }

    // The same broadcast again, and again with other settings: nothing new.
    t.publish(&[body.to_string(), broadcast_body(&paused, &segment, 50)]).await;
    t.wait_idle().await;
    assert_eq!(emails(&provider_data().await, &tag, n), after, "a broadcast sent twice sent again");

    // Cancelled while it runs slowly: it stops, and what it had not sent never goes.
    let cancelled = format!("{tag}-cancelled");
    t.publish(&[broadcast_body(&cancelled, &segment, 1)]).await;
    wait_for_state(&t, &cancelled, BroadcastState::Running).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    t.publish(&[json!({"type": "cancel_broadcast", "campaign": cancelled}).to_string()]).await;
    wait_for_state(&t, &cancelled, BroadcastState::Cancelled).await;
    t.wait_idle().await;
    let (mut sent, mut stopped) = (0, 0);
    for i in &reached {
        let entry = t.entry(&format!("{cancelled}#{}", who(&tag, *i))).await;
        match entry.map(|e| (e.status.as_str().to_owned(), e.reason)) {
            Some((s, _)) if s == "sent" || s == "delivered" => sent += 1,
            Some((s, r)) if s == "suppressed" && r.as_deref() == Some("broadcast_cancelled") => stopped += 1,
            None => stopped += 1,
            other => panic!("person {i} after cancel: {other:?}"),
        }
    }
    assert!(sent < reached.len(), "cancel stopped nothing: {sent} of {} sent", reached.len());
    assert!(stopped > 0);
    // Pages already read handed their people to ingest, each delayed to its turn (those due
    // after the cancel stopped there); chains still waiting for their turn stopped unread.
    let b = t.ledger().broadcast(&CampaignId::new(cancelled.clone()).unwrap()).await.unwrap().unwrap();
    assert_eq!(b.state, BroadcastState::Cancelled);
    assert!(b.counts.queued <= reached.len() as u64, "{:?}", b.counts);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_broadcasts_are_refused_with_a_reason_before_anything_is_sent() {
    let t = TestStack::new().await;
    let tag = t.tag.clone();
    let templates = push_segments(&t, &tag).await;
    // A segment filtering on an attribute profile.toml does not declare (pushed by hand,
    // past `herald segments check`, as an older push might have left it).
    let undeclared: SegmentDoc = serde_json::from_value(json!({
        "name": format!("{tag}-undeclared"), "channels": ["email"],
        "filter": {"field": "attributes.shoe_size", "gt": 40}
    }))
    .unwrap();
    templates.put_segment(&undeclared, Utc::now()).await.unwrap();
    seed(&t, &tag, 12).await;
    let cases = [
        (broadcast_body(&format!("{tag}-a"), "no-such-segment", 10), "unknown_segment"),
        (broadcast_body(&format!("{tag}-b"), &format!("{tag}-undeclared"), 10), "invalid_segment"),
        (broadcast_body(&format!("{tag}-c"), &format!("{tag}-pro"), 0), "invalid_field"),
        (
            json!({"type": "broadcast", "campaign": format!("{tag}-d"), "segment": format!("{tag}-pro"),
                   "template": "no_such_template", "rate_per_second": 10})
            .to_string(),
            "unknown_template",
        ),
        (json!({"type": "pause_broadcast", "campaign": format!("{tag}-e")}).to_string(), "unknown_broadcast"),
    ];
    let bodies: Vec<String> = cases.iter().map(|(b, _)| b.clone()).collect();
    let ids = t.publish(&bodies).await;
    t.wait_idle().await;
    for ((_, code), id) in cases.iter().zip(&ids) {
        let rejection = t.ledger().rejection(id).await.unwrap();
        assert_eq!(rejection.as_ref().map(|(c, _)| c.as_str()), Some(*code), "{rejection:?}");
    }
    for c in ["a", "b", "c", "d"] {
        assert_eq!(state(&t, &format!("{tag}-{c}")).await, None, "refused, yet recorded");
    }
    let data = provider_data().await;
    assert!(emails(&data, &tag, 12).iter().all(|e| *e == 0), "a refused broadcast sent something");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_holds_a_paused_broadcasts_messages_and_suppresses_a_cancelled_ones() {
    use herald::domain::broadcast::Broadcast;
    use herald::domain::segment::Audience;
    let t = TestStack::without_functions().await;
    let tag = t.tag.clone();
    let templates = push_segments(&t, &tag).await;
    let campaign = CampaignId::new(format!("{tag}-held")).unwrap();
    let request: herald::contract::BroadcastRequest = serde_json::from_value(json!({
        "campaign": campaign, "segment": format!("{tag}-pro"), "template": "weekly_digest", "rate_per_second": 10
    }))
    .unwrap();
    let segment = herald::domain::SegmentName::new(format!("{tag}-pro")).unwrap();
    let audience: Audience = resolve_audience(&templates, &segment).await.unwrap().unwrap();
    let template = herald::domain::TemplateName::new("weekly_digest").unwrap();
    let b = Broadcast::new(request, template, audience, 1, Utc::now());
    let ledger = t.ledger();
    assert_eq!(ledger.create(&b, Utc::now() + TimeDelta::days(1)).await.unwrap(), Created::New);
    let now = Utc::now();
    let paused = ledger.control(&campaign, herald::contract::ControlAction::Pause, now, now).await.unwrap();
    assert!(matches!(paused, ControlOutcome::Applied(ref b) if b.state == BroadcastState::Paused), "{paused:?}");

    // One of its messages, as the fan-out hands it to ingest.
    let who = herald::domain::RecipientId::new(format!("{tag}-p0")).unwrap();
    let notify = b.notification(&who, None, vec![Channel::Email], now).unwrap();
    let body = serde_json::to_string(&notify).unwrap();
    let ingest = ingest::aws::deps(&t.sdk, &ingest::Config::from_lookup(&t.lookup("ingest")).unwrap());
    let response = ingest::handler(&ingest, sqs_event(&[&body])).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    let key = format!("{campaign}#{who}");
    assert!(t.entry(&key).await.is_none(), "a paused broadcast's message was admitted");
    let sqs = aws_sdk_sqs::Client::new(&t.sdk);
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(t.queue_url("IngestQueue"))
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .unwrap();
    let delayed = attrs.attributes.unwrap_or_default().into_values().next().unwrap_or_default();
    assert_eq!(delayed, "1", "held: back on the ingest queue, delayed");

    // Cancelled: once the state ingest caches has expired, the message is suppressed for good.
    let later = Utc::now();
    let cancelled = ledger.control(&campaign, herald::contract::ControlAction::Cancel, later, later).await.unwrap();
    assert!(matches!(cancelled, ControlOutcome::Applied(_)), "{cancelled:?}");
    tokio::time::sleep(herald::aws::dynamodb::STATE_CACHE + Duration::from_millis(200)).await;
    let response = ingest::handler(&ingest, sqs_event(&[&body])).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    let entry = t.entry(&key).await.expect("recorded");
    assert_eq!((entry.status.as_str(), entry.reason.as_deref()), ("suppressed", Some("broadcast_cancelled")));
    // Resuming a cancelled broadcast is refused, with the reason.
    t.publish(&[json!({"type": "resume_broadcast", "campaign": campaign}).to_string()]).await;
    let got = sqs.receive_message().queue_url(t.queue_url("IngestQueue")).max_number_of_messages(10).send().await;
    let messages: Vec<String> = got.unwrap().messages.unwrap_or_default().into_iter().filter_map(|m| m.body).collect();
    let resume: Vec<&String> = messages.iter().filter(|m| m.contains("resume_broadcast")).collect();
    assert_eq!(resume.len(), 1, "{messages:?}");
    ingest::handler(&ingest, sqs_event(&[resume[0]])).await.unwrap();
    let rejection = t.ledger().rejection("m0").await.unwrap();
    assert_eq!(rejection.map(|(code, _)| code).as_deref(), Some("broadcast_state"));
}
