//! Caps, cooldowns, holdouts and the schedule, driving the real handlers on moto
//! with a moved clock where time matters (no test waits for wall-clock time).

use crate::support::*;
use chrono::{TimeDelta, Timelike, Utc};
use herald::domain::jobs::EligibilityJob;
use herald::domain::{IdempotencyKey, MessageId};
use herald::ports::{Destination, ScheduleStore};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_deferred_past_an_sqs_delay_waits_in_the_schedule_and_goes_out_after_its_window() {
    let t = TestStack::without_functions().await;
    let tag = &t.tag;
    let who = format!("finn-{tag}");
    let address = format!("finn.{tag}@example.org");
    let now = Utc::now();
    let hhmm = |t: chrono::DateTime<Utc>| format!("{:02}:{:02}", t.hour(), t.minute());
    // Quiet hours (UTC) from an hour ago to 40 minutes from now: longer than an SQS delay.
    let quiet_end = now + TimeDelta::minutes(40);
    let ingest_deps = ingest::aws::deps(&t.sdk, &ingest::Config::from_lookup(&t.lookup("ingest")).unwrap());
    let commands = [
        json!({"type": "upsert_recipient", "recipient": who, "email": address, "timezone": "UTC",
               "quiet_hours": {"start": hhmm(now - TimeDelta::hours(1)), "end": hhmm(quiet_end)}}),
        json!({"type": "set_consent", "recipient": who, "channel": "email", "granted": true, "source": "test"}),
        json!({"idempotency_key": format!("{tag}-digest"), "recipient": who, "template": "weekly_digest",
               "kind": "marketing", "data": {"headline": "Spring"}}),
    ];
    let bodies: Vec<String> = commands.iter().map(Value::to_string).collect();
    ingest::handler(&ingest_deps, sqs_event(&bodies)).await.unwrap();

    let eligibility_deps =
        eligibility::aws::deps(&t.sdk, &eligibility::Config::from_lookup(&t.lookup("eligibility")).unwrap());
    let jobs = t.drain("EligibilityQueue").await;
    assert_eq!(jobs.len(), 1);
    let response = eligibility::handle_at(&eligibility_deps, sqs_event(&jobs), now).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    let key = format!("{tag}-digest");
    let entry = t.entry(&key).await.unwrap();
    assert_eq!((entry.status.as_str(), entry.reason.as_deref()), ("deferred", Some("quiet_hours_deferred")));
    assert!(t.drain("EligibilityQueue").await.is_empty(), "a 40-minute wait is not an SQS delay");

    let scheduler_deps = scheduler::aws::deps(&t.sdk, &scheduler::Config::from_lookup(&t.lookup("scheduler")).unwrap());
    let waiting = scheduler_deps.schedule.due(now, now + TimeDelta::hours(1), 10).await.unwrap();
    assert_eq!(waiting.len(), 1, "the send waits in the schedule table");
    let id = MessageId::for_key(&IdempotencyKey::new(key.clone()).unwrap());
    assert_eq!((waiting[0].id.as_str(), waiting[0].to), (id.as_str(), Destination::Eligibility));

    // A run before the window ends releases nothing; the run a minute after does.
    let early = scheduler::release_due(&scheduler_deps, quiet_end - TimeDelta::minutes(5)).await.unwrap();
    assert_eq!(early.released, 0);
    let run = scheduler::release_due(&scheduler_deps, quiet_end + TimeDelta::seconds(59)).await.unwrap();
    assert_eq!(run.released, 1);
    let again = scheduler::release_due(&scheduler_deps, quiet_end + TimeDelta::seconds(119)).await.unwrap();
    assert_eq!(again.released, 0, "released once");

    let released = t.drain("EligibilityQueue").await;
    let job: EligibilityJob = serde_json::from_str(&released[0]).unwrap();
    assert!(job.deferred);
    eligibility::handle_at(&eligibility_deps, sqs_event(&released), quiet_end + TimeDelta::seconds(59)).await.unwrap();
    let email_jobs = t.drain("EmailQueue").await;
    assert_eq!(email_jobs.len(), 1, "after the window the send is routed to email");
    let (email_deps, email) =
        dispatch_email::aws::deps(&t.sdk, &dispatch_email::Config::from_lookup(&t.lookup("dispatch-email")).unwrap());
    dispatch_email::handler(&email_deps, &email, sqs_event(&email_jobs)).await.unwrap();
    assert_eq!(emails_to(&provider_data().await, &address).len(), 1);
    let history: Vec<_> = t.entry(&key).await.unwrap().history.into_iter().map(|h| h.status).collect();
    assert_eq!(history, ["accepted", "deferred", "sent"]);
}

/// Digest windows and journey waits longer than an SQS delay wait in the same table, and
/// each goes to its own queue; the same job scheduled twice is released once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_job_is_released_to_the_queue_it_names() {
    let t = TestStack::without_functions().await;
    let deps = scheduler::aws::deps(&t.sdk, &scheduler::Config::from_lookup(&t.lookup("scheduler")).unwrap());
    let due = Utc::now() + TimeDelta::hours(3);
    let jobs = [
        ("window-7", "{\"close\":7}", Destination::Digest),
        ("step-2", "{\"step\":2}", Destination::Journey),
        ("send-1", "{\"send\":1}", Destination::Eligibility),
    ];
    for (id, body, to) in jobs {
        deps.schedule.schedule(id, body, due, to).await.unwrap();
    }
    deps.schedule.schedule("step-2", "{\"step\":2}", due, Destination::Journey).await.unwrap();
    assert!(deps.schedule.schedule("x", "{}", due, Destination::Ingest).await.is_err(), "only the timers' queues");

    let run = scheduler::release_due(&deps, due + TimeDelta::seconds(1)).await.unwrap();
    assert_eq!((run.released, run.failed), (3, 0));
    assert_eq!(t.drain("DigestQueue").await, ["{\"close\":7}"]);
    assert_eq!(t.drain("JourneyQueue").await, ["{\"step\":2}"]);
    assert_eq!(t.drain("EligibilityQueue").await, ["{\"send\":1}"]);
    let again = scheduler::release_due(&deps, due + TimeDelta::seconds(61)).await.unwrap();
    assert_eq!(again.released, 0, "released once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holdouts_variants_and_cooldowns_are_recorded() {
    let t = TestStack::new().await;
    let tag = &t.tag;
    // Assignment is a stable hash of campaign and recipient: with the shipped
    // spring-sale campaign (20% holdout), user-kim is held out and user-lea gets variant b.
    let (kim, lea) = ("user-kim".to_owned(), "user-lea".to_owned());
    let mut commands = Vec::new();
    for who in [&kim, &lea] {
        commands.push(
            json!({"type": "upsert_recipient", "recipient": who, "email": format!("{who}.{tag}@example.org")})
                .to_string(),
        );
        commands.push(
            json!({"type": "set_consent", "recipient": who, "channel": "email", "granted": true, "source": "test"})
                .to_string(),
        );
    }
    t.publish(&commands).await;
    t.wait_idle().await;
    let sale = |key: &str, who: &str| {
        json!({"idempotency_key": format!("{tag}-{key}"), "recipient": who, "template": "weekly_digest",
               "kind": "marketing", "campaign": "spring-sale", "data": {"headline": "Spring"}})
        .to_string()
    };
    t.publish(&[sale("kim", &kim), sale("lea", &lea)]).await;
    t.wait_idle().await;
    t.publish(&[sale("lea-again", &lea)]).await;
    t.wait_idle().await;

    let kim_entry = t.entry(&format!("{tag}-kim")).await.unwrap();
    assert_eq!((kim_entry.status.as_str(), kim_entry.reason.as_deref()), ("suppressed", Some("holdout")));
    let lea_entry = t.entry(&format!("{tag}-lea")).await.unwrap();
    assert_eq!((lea_entry.status.as_str(), lea_entry.variant.as_deref()), ("sent", Some("b")));
    let again = t.entry(&format!("{tag}-lea-again")).await.unwrap();
    assert_eq!((again.status.as_str(), again.reason.as_deref()), ("suppressed", Some("cooldown")));
    let data = provider_data().await;
    assert!(emails_to(&data, &format!("{kim}.{tag}@example.org")).is_empty());
    assert_eq!(emails_to(&data, &format!("{lea}.{tag}@example.org")).len(), 1);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_waits_for_a_recipient_published_with_it_and_is_rejected_when_none_comes() {
    let t = TestStack::without_functions().await;
    let tag = &t.tag;
    let (late, nobody) = (format!("late-{tag}"), format!("nobody-{tag}"));
    let notify = |key: &str, who: &str| {
        json!({"idempotency_key": key, "recipient": who, "template": "order_shipped", "kind": "transactional",
               "data": {"order_id": "A-1"}})
        .to_string()
    };
    let (late_key, nobody_key) = (format!("{tag}-late"), format!("{tag}-nobody"));
    let ingest_deps = ingest::aws::deps(&t.sdk, &ingest::Config::from_lookup(&t.lookup("ingest")).unwrap());
    ingest::handler(&ingest_deps, sqs_event(&[notify(&late_key, &late), notify(&nobody_key, &nobody)])).await.unwrap();

    let eligibility_deps =
        eligibility::aws::deps(&t.sdk, &eligibility::Config::from_lookup(&t.lookup("eligibility")).unwrap());
    let jobs = t.drain("EligibilityQueue").await;
    assert_eq!(jobs.len(), 2);
    let response = eligibility::handler(&eligibility_deps, sqs_event(&jobs)).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    for key in [&late_key, &nobody_key] {
        assert_eq!(t.entry(key).await.unwrap().status.as_str(), "accepted", "{key}: waiting, nothing written");
    }
    assert!(t.drain("EligibilityQueue").await.is_empty(), "the second look is delayed");

    // The recipient's upsert lands while the notification waits: the second look routes it.
    let upsert = json!({"type": "upsert_recipient", "recipient": late, "email": format!("{late}@example.org")});
    ingest::handler(&ingest_deps, sqs_event(&[upsert.to_string()])).await.unwrap();
    let mut again = Vec::new();
    while again.len() < 2 {
        let job = receive(&t, "EligibilityQueue").await.expect("both come back within the local wait (2 s)");
        let parsed: EligibilityJob = serde_json::from_str(job["body"].as_str().unwrap()).unwrap();
        assert_eq!(parsed.recipient_waits, 1);
        again.push(job);
    }
    for job in &again {
        eligibility::handler(&eligibility_deps, received_event(job)).await.unwrap();
    }
    let routed = t.drain("EmailQueue").await;
    assert_eq!(routed.len(), 1, "{routed:?}");
    assert!(routed[0].contains(&late_key));
    let gone = t.entry(&nobody_key).await.unwrap();
    assert_eq!((gone.status.as_str(), gone.reason.as_deref()), ("rejected", Some("unknown_recipient")));
    let detail = gone.history.last().and_then(|h| h.detail.clone()).unwrap_or_default();
    assert!(detail.contains("waited 2 s"), "{detail}");
    assert!(t.drain("EligibilityQueue").await.is_empty(), "the wait is used up: no third look");
}
