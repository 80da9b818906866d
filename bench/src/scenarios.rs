//! What goes through the pipeline: recipients, then notifications of each kind,
//! then the SES events that close the loop, each a phase measured on its own.

use crate::counting::{Call, Who};
use crate::pipeline::{Env, Invocation, Pipeline, send_all};
use anyhow::Context as _;
use herald::aws::dynamodb::DynamoLedger;
use herald::domain::{IdempotencyKey, MessageId};
use herald::ports::Ledger;
use herald_cli::stack::Stack;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// One measured phase: what was queued, every request made until the pipeline
/// was idle again, and how long the work took.
#[derive(Debug, Clone)]
pub struct Phase {
    pub name: String,
    /// Notifications (or commands, or receipts) the phase carried.
    pub items: usize,
    pub calls: Vec<Call>,
    pub invocations: Vec<Invocation>,
    /// From releasing the queued input to the last request of work (idle polls excluded).
    pub seconds: f64,
    /// Ledger status of each notification after the phase (`sent:email`, `suppressed:cap_reached`, ...).
    pub outcomes: BTreeMap<String, usize>,
}

impl Phase {
    /// Requests of the pipeline (handlers and event source), without the scheduler's
    /// clock-driven ones or the bench's own.
    pub fn pipeline_calls(&self) -> impl Iterator<Item = &Call> {
        self.calls.iter().filter(|c| c.who != Who::Driver && c.who.function() != "scheduler")
    }

    /// What the floor sends again: every request of Herald's functions and their
    /// event sources in the phase (the scheduler's included) less idle polling.
    pub fn replay_calls(&self) -> impl Iterator<Item = &Call> {
        self.calls.iter().filter(|c| c.who != Who::Driver && !c.is_empty_receive())
    }

    /// Work requests: pipeline requests less idle polling (receives that found nothing).
    pub fn work_calls(&self) -> impl Iterator<Item = &Call> {
        self.pipeline_calls().filter(|c| !c.is_empty_receive())
    }
}

pub fn notify(key: &str, recipient: &str, template: &str, kind: &str, extra: Value) -> String {
    let mut v = json!({"idempotency_key": key, "recipient": recipient, "template": template, "kind": kind});
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    v.to_string()
}

/// Queues `bodies` on the ingest queue with the pipeline paused, releases it and
/// waits until every function queue is empty.
pub async fn run_phase(
    env: &Env,
    pipe: &Pipeline,
    name: &str,
    items: usize,
    bodies: &[String],
) -> anyhow::Result<Phase> {
    let driver = aws_sdk_sqs::Client::new(&env.sdk(Who::Driver).await);
    let url = pipe.stack.queue("IngestQueue")?.url.clone();
    let sends = bodies.to_vec();
    measure(env, pipe, name, items, || async move { send_all(&driver, &url, &sends).await }).await
}

/// [`run_phase`], then SES's delivery events for the emails it sent: two phases, each
/// with the fates of `keys` after it.
pub async fn run_with_receipts(
    env: &Env,
    pipe: &Pipeline,
    (name, receipts_name): (&str, &str),
    items: usize,
    bodies: &[String],
    keys: &[(String, String)],
) -> anyhow::Result<[Phase; 2]> {
    let mut sent = run_phase(env, pipe, name, items, bodies).await?;
    let f = fates(env, &pipe.stack, keys).await?;
    sent.outcomes = f.outcomes;
    let mut receipts = deliver_receipts(env, pipe, receipts_name, &f.emails).await?;
    receipts.outcomes = fates(env, &pipe.stack, keys).await?.outcomes;
    Ok([sent, receipts])
}

/// Queues setup commands with the pipeline running (a shallow queue is faster on
/// moto) and waits until it is idle: not timed, only counted.
pub async fn setup_phase(
    env: &Env,
    pipe: &Pipeline,
    name: &str,
    items: usize,
    bodies: &[String],
) -> anyhow::Result<Phase> {
    let driver = aws_sdk_sqs::Client::new(&env.sdk(Who::Driver).await);
    let url = pipe.stack.queue("IngestQueue")?.url.clone();
    pipe.pause_all(false);
    let mark = env.recorder.mark();
    let imark = pipe.invocation_mark();
    send_all(&driver, &url, bodies).await?;
    pipe.stack.wait_idle(&env.plain, idle_timeout(items)).await?;
    let phase = Phase {
        name: name.to_owned(),
        items,
        calls: env.recorder.since(mark),
        invocations: pipe.invocations_since(imark),
        seconds: 0.0,
        outcomes: BTreeMap::new(),
    };
    eprintln!("herald-bench: {name}: {items}, {} requests", phase.pipeline_calls().count());
    Ok(phase)
}

/// How long a phase of `items` may take to drain: ten minutes, and half a second more
/// per item (a local pipeline goes at about ten notifications a second).
fn idle_timeout(items: usize) -> Duration {
    Duration::from_secs(600) + Duration::from_millis(500).saturating_mul(u32::try_from(items).unwrap_or(u32::MAX))
}

/// Pauses every poller (letting in-flight long polls finish), runs `queue_input`,
/// then releases the pipeline and measures until it is idle.
pub async fn measure<F, Fut>(
    env: &Env,
    pipe: &Pipeline,
    name: &str,
    items: usize,
    queue_input: F,
) -> anyhow::Result<Phase>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    pipe.pause_all(true);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let mark = env.recorder.mark();
    let imark = pipe.invocation_mark();
    queue_input().await.with_context(|| format!("queueing the input of {name}"))?;
    let t0 = env.recorder.now();
    pipe.pause_all(false);
    pipe.stack.wait_idle(&env.plain, idle_timeout(items)).await?;
    let calls = env.recorder.since(mark);
    let invocations = pipe.invocations_since(imark);
    let mut phase = Phase { name: name.to_owned(), items, calls, invocations, seconds: 0.0, outcomes: BTreeMap::new() };
    let end = phase.work_calls().map(|c| c.end).max().unwrap_or(t0);
    phase.seconds = end.saturating_sub(t0).as_secs_f64();
    eprintln!(
        "herald-bench: {name}: {items} in {:.1} s, {} requests ({} idle polls)",
        phase.seconds,
        phase.pipeline_calls().count(),
        phase.pipeline_calls().filter(|c| c.is_empty_receive()).count()
    );
    Ok(phase)
}

/// An email sent: (Herald message id, SES message id, address).
pub type SentEmail = (String, String, String);

/// What the ledger says of each key, and the email sends SES would report on.
pub struct Fates {
    pub outcomes: BTreeMap<String, usize>,
    pub emails: Vec<SentEmail>,
}

pub async fn fates(env: &Env, stack: &Stack, keys: &[(String, String)]) -> anyhow::Result<Fates> {
    use futures::StreamExt;
    let table = stack.tables.get("LedgerTable").context("no LedgerTable")?;
    let ledger = DynamoLedger::new(aws_sdk_dynamodb::Client::new(&env.plain), table);
    let ledger = &ledger;
    // SES's message ids, by address (moto keeps no message tags): dispatch leaves them
    // to the receipts, which are what these runs produce.
    let data = env.moto.data().await?;
    let ses_ids: HashMap<&str, &str> = data["ses"]["Message"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| Some((m["destinations"]["ToAddresses"][0].as_str()?, m["id"].as_str()?)))
        .collect();
    let ses_ids = &ses_ids;
    let found: Vec<anyhow::Result<(String, Option<SentEmail>)>> = futures::stream::iter(keys)
        .map(|(key, email)| async move {
            let id = MessageId::for_key(&IdempotencyKey::new(key.as_str())?);
            let Some(entry) = ledger.get(&id).await? else { return Ok(("missing".to_owned(), None)) };
            let what = match (&entry.reason, &entry.channel) {
                (Some(r), _) => format!("{}:{r}", entry.status),
                (None, Some(c)) => format!("{}:{c}", entry.status),
                (None, None) => entry.status.to_string(),
            };
            let email_sent = entry.channel.as_deref() == Some("email") && entry.status.as_str() == "sent";
            let ses = ses_ids
                .get(email.as_str())
                .filter(|_| email_sent)
                .map(|p| (id.as_str().to_owned(), (*p).to_owned(), email.clone()));
            Ok((what, ses))
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut fates = Fates { outcomes: BTreeMap::new(), emails: Vec::new() };
    for f in found {
        let (what, ses) = f?;
        *fates.outcomes.entry(what).or_default() += 1;
        fates.emails.extend(ses);
    }
    Ok(fates)
}

/// SES's part: one delivery event per email sent, in the documented format
/// (tests/fixtures/ses/delivery.json), published to the SES events topic.
/// The SNS messages SES would publish for each email sent: a delivery event in the
/// documented format (tests/fixtures/ses/delivery.json).
pub fn ses_messages(root: &std::path::Path, emails: &[SentEmail]) -> anyhow::Result<Vec<String>> {
    let fixture = std::fs::read_to_string(root.join("tests/fixtures/ses/delivery.json"))?;
    emails
        .iter()
        .map(|(id, ses_id, to)| {
            let envelope: Value = serde_json::from_str(
                &fixture.replace("__MESSAGE_ID__", id).replace("__SES_MESSAGE_ID__", ses_id).replace("__EMAIL__", to),
            )?;
            Ok(envelope["Message"].as_str().context("fixture Message")?.to_owned())
        })
        .collect()
}

/// SES's part: one delivery event per email sent, published to the SES events topic.
pub async fn deliver_receipts(env: &Env, pipe: &Pipeline, name: &str, emails: &[SentEmail]) -> anyhow::Result<Phase> {
    use futures::StreamExt;
    let sns = aws_sdk_sns::Client::new(&env.sdk(Who::Driver).await);
    let topic = pipe.stack.topics.get("SesEventsTopic").context("no SesEventsTopic")?.clone();
    let messages = ses_messages(&env.root, emails)?;
    let (sns, topic) = (&sns, &topic);
    measure(env, pipe, name, emails.len(), || async move {
        let results: Vec<anyhow::Result<()>> = futures::stream::iter(messages)
            .map(|m| async move {
                sns.publish().topic_arn(topic).message(m).subject("Amazon SES Email Event Notification").send().await?;
                Ok(())
            })
            .buffer_unordered(4)
            .collect()
            .await;
        results.into_iter().collect()
    })
    .await
}

/// The platform invalidates these tokens (an app uninstalled): SNS disables their endpoints.
pub async fn disable_endpoints(env: &Env, prefix: &str) -> anyhow::Result<usize> {
    let data = env.moto.data().await?;
    let sns = aws_sdk_sns::Client::new(&env.plain);
    let mut n = 0;
    for ep in data["sns"]["PlatformEndpoint"].as_array().into_iter().flatten() {
        if ep["token"].as_str().is_some_and(|t| t.starts_with(prefix)) {
            let arn = ep["arn"].as_str().unwrap_or_default();
            sns.set_endpoint_attributes().endpoint_arn(arn).attributes("Enabled", "false").send().await?;
            n += 1;
        }
    }
    Ok(n)
}

/// Waits until the scheduler's first run (a new stack reads back a day of minute
/// buckets) is over, so that it does not land in a measured phase.
async fn wait_for_scheduler(env: &Env) {
    let scheduler = Who::Herald("scheduler".into());
    for _ in 0..600 {
        let calls = env.recorder.since(0);
        let last = calls.iter().filter(|c| c.who == scheduler).map(|c| c.end).max();
        if last.is_some_and(|l| env.recorder.now().saturating_sub(l) > Duration::from_secs(2)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Sizes of the main run.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub transactional: usize,
    pub marketing_recipients: usize,
    pub fallback: usize,
    pub push: usize,
    pub sms: usize,
}

/// Every phase of the main run, in order.
pub struct MainRun {
    pub phases: Vec<Phase>,
    /// Requests of each scheduler run, in order.
    pub scheduler_runs: Vec<usize>,
    pub minutes: f64,
}

impl MainRun {
    pub fn phase(&self, name: &str) -> Option<&Phase> {
        self.phases.iter().find(|p| p.name == name)
    }
}

pub async fn main_run(env: &Env, pipe: &Pipeline, run: &str, sizes: Sizes) -> anyhow::Result<MainRun> {
    let started = env.recorder.now();
    let mark = env.recorder.mark();
    let mut phases = Vec::new();

    // 1. Single-channel transactional email, then its delivery receipts.
    let n = sizes.transactional;
    let who = |i: usize| format!("{run}-txn-{i}");
    let setup: Vec<String> = (0..n)
        .map(|i| {
            json!({"type": "upsert_recipient", "recipient": who(i), "email": format!("{}@example.com", who(i))})
                .to_string()
        })
        .collect();
    phases.push(setup_phase(env, pipe, "setup: upsert_recipient", n, &setup).await?);
    wait_for_scheduler(env).await;
    let keys: Vec<(String, String)> =
        (0..n).map(|i| (format!("{run}-order-{i}"), format!("{}@example.com", who(i)))).collect();
    let bodies: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, (k, _))| {
            notify(k, &who(i), "order_shipped", "transactional", json!({"channels": ["email"], "topic": "order_updates",
                "data": {"order_id": format!("{i:08}"), "eta": "Tuesday 25 November", "tracking_url": format!("https://shop.example.com/orders/{i:08}?ref=email")}}))
        })
        .collect();
    phases.extend(
        run_with_receipts(
            env,
            pipe,
            ("transactional email", "transactional email: delivery receipts"),
            n,
            &bodies,
            &keys,
        )
        .await?,
    );

    // 2. Marketing under the default cap policy: two campaigns to each opted-in
    // recipient in the same hour; the per-channel hourly cap lets one through.
    let m = sizes.marketing_recipients;
    let who = |i: usize| format!("{run}-mkt-{i}");
    let setup: Vec<String> = (0..m)
        .flat_map(|i| {
            [
                json!({"type": "upsert_recipient", "recipient": who(i), "email": format!("{}@example.com", who(i))}).to_string(),
                json!({"type": "set_consent", "recipient": who(i), "channel": "email", "granted": true, "source": "signup-form"})
                    .to_string(),
            ]
        })
        .collect();
    phases.push(setup_phase(env, pipe, "setup: upsert_recipient + set_consent", 2 * m, &setup).await?);
    let keys: Vec<(String, String)> = (0..m)
        .flat_map(|i| {
            let to = format!("{}@example.com", who(i));
            [(format!("{run}-digest-a-{i}"), to.clone()), (format!("{run}-digest-b-{i}"), to)]
        })
        .collect();
    let bodies: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(j, (k, _))| {
            let campaign = if j % 2 == 0 { "bench-digest-a" } else { "bench-digest-b" };
            notify(
                k,
                &who(j / 2),
                "weekly_digest",
                "marketing",
                json!({"topic": "news", "campaign": campaign,
                "data": {"first_name": "Ana", "headline": "Five new arrivals picked for you this week"}}),
            )
        })
        .collect();
    phases.extend(
        run_with_receipts(env, pipe, ("marketing with caps", "marketing: delivery receipts"), 2 * m, &bodies, &keys)
            .await?,
    );

    // 3. Fallback: the push endpoint was disabled (an uninstalled app), so push fails
    // for good, the token is removed and the message goes by email.
    let k = sizes.fallback;
    let who = |i: usize| format!("{run}-fb-{i}");
    let token_prefix = format!("{run}-fbtok-");
    let setup: Vec<String> = (0..k)
        .flat_map(|i| {
            [
                json!({"type": "upsert_recipient", "recipient": who(i), "email": format!("{}@example.com", who(i))}).to_string(),
                json!({"type": "register_push_token", "recipient": who(i), "platform": "fcm", "token": format!("{token_prefix}{i}")})
                    .to_string(),
            ]
        })
        .collect();
    phases.push(setup_phase(env, pipe, "setup: upsert_recipient + register_push_token", 2 * k, &setup).await?);
    let disabled = disable_endpoints(env, &token_prefix).await?;
    anyhow::ensure!(disabled == k, "disabled {disabled} push endpoints, expected {k}");
    let keys: Vec<(String, String)> =
        (0..k).map(|i| (format!("{run}-fallback-{i}"), format!("{}@example.com", who(i)))).collect();
    let bodies: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, (key, _))| {
            notify(
                key,
                &who(i),
                "order_shipped",
                "transactional",
                json!({"channels": ["push", "email"], "topic": "order_updates",
                "data": {"order_id": format!("{i:08}")}}),
            )
        })
        .collect();
    phases.extend(
        run_with_receipts(env, pipe, ("fallback push -> email", "fallback: delivery receipts"), k, &bodies, &keys)
            .await?,
    );

    // 4. Push and SMS (no delivery receipt is handled for these yet).
    let who = |i: usize| format!("{run}-push-{i}");
    let setup: Vec<String> = (0..sizes.push)
        .flat_map(|i| {
            [
                json!({"type": "upsert_recipient", "recipient": who(i), "email": format!("{}@example.org", who(i))})
                    .to_string(),
                json!({"type": "register_push_token", "recipient": who(i), "platform": "fcm", "token": format!("{run}-ptok-{i}")})
                    .to_string(),
            ]
        })
        .collect();
    phases.push(setup_phase(env, pipe, "setup: push recipients", 2 * sizes.push, &setup).await?);
    for (name, prefix, channels) in [
        ("transactional push", "pushed", json!(["push"])),
        // The same people, with email as the fallback: dispatch keeps the fallback job for
        // a late DeliveryFailure (one more write per push).
        ("transactional push, email as fallback", "pushed-or-mailed", json!(["push", "email"])),
        // The same people, to their in-app inbox: stored, and delivered with it.
        ("transactional inbox", "inboxed", json!(["inbox"])),
    ] {
        let keys: Vec<(String, String)> =
            (0..sizes.push).map(|i| (format!("{run}-{prefix}-{i}"), String::new())).collect();
        let bodies: Vec<String> = keys
            .iter()
            .enumerate()
            .map(|(i, (key, _))| {
                let extra = json!({"channels": channels, "data": {"order_id": format!("{i:08}")}});
                notify(key, &who(i), "order_shipped", "transactional", extra)
            })
            .collect();
        let mut p = run_phase(env, pipe, name, sizes.push, &bodies).await?;
        p.outcomes = fates(env, &pipe.stack, &keys).await?.outcomes;
        phases.push(p);
    }

    let who = |i: usize| format!("{run}-sms-{i}");
    let setup: Vec<String> = (0..sizes.sms)
        .map(|i| {
            json!({"type": "upsert_recipient", "recipient": who(i), "phone": format!("+1555{:07}", 1_000_000 + i)})
                .to_string()
        })
        .collect();
    phases.push(setup_phase(env, pipe, "setup: sms recipients", sizes.sms, &setup).await?);
    let keys: Vec<(String, String)> = (0..sizes.sms).map(|i| (format!("{run}-code-{i}"), String::new())).collect();
    let bodies: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, (key, _))| {
            notify(
                key,
                &who(i),
                "security_code",
                "transactional",
                json!({"channels": ["sms"], "data": {"code": format!("{:06}", 100_000 + i)}}),
            )
        })
        .collect();
    let mut p = run_phase(env, pipe, "transactional sms", sizes.sms, &bodies).await?;
    p.outcomes = fates(env, &pipe.stack, &keys).await?.outcomes;
    phases.push(p);

    // The scheduler's runs: its requests come in bursts a minute apart.
    let mut scheduler_runs: Vec<usize> = Vec::new();
    let mut last: Option<Duration> = None;
    for c in env.recorder.since(mark).iter().filter(|c| c.who == Who::Herald("scheduler".into())) {
        match (last, scheduler_runs.last_mut()) {
            (Some(l), Some(n)) if c.start.saturating_sub(l) < Duration::from_secs(20) => *n += 1,
            _ => scheduler_runs.push(1),
        }
        last = Some(c.end);
    }
    Ok(MainRun { phases, scheduler_runs, minutes: (env.recorder.now() - started).as_secs_f64() / 60.0 })
}

/// One point of a growth curve: a fresh stack (cold caches, as a new Lambda
/// environment), `recipients` opted-in recipients, one marketing campaign to all.
pub async fn campaign_point(
    env: &Env,
    prefix: &str,
    recipients: usize,
    cap_policy: Option<String>,
) -> anyhow::Result<(Phase, Vec<String>)> {
    let overrides: Vec<(&str, &str, String)> =
        cap_policy.into_iter().map(|p| ("eligibility", "HERALD_CAP_POLICY", p)).collect();
    let pipe = Pipeline::start(env, prefix, &overrides, false).await?;
    let who = |i: usize| format!("{prefix}r{i}");
    let setup: Vec<String> = (0..recipients)
        .flat_map(|i| {
            [
                json!({"type": "upsert_recipient", "recipient": who(i), "email": format!("{}@example.com", who(i))}).to_string(),
                json!({"type": "set_consent", "recipient": who(i), "channel": "email", "granted": true, "source": "signup-form"})
                    .to_string(),
            ]
        })
        .collect();
    setup_phase(env, &pipe, "setup", 2 * recipients, &setup).await?;
    let keys: Vec<(String, String)> = (0..recipients).map(|i| (format!("{prefix}c-{i}"), String::new())).collect();
    let bodies: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, (k, _))| {
            notify(
                k,
                &who(i),
                "weekly_digest",
                "marketing",
                json!({"topic": "news", "campaign": "bench-growth",
                "data": {"first_name": "Ana", "headline": "Five new arrivals picked for you this week"}}),
            )
        })
        .collect();
    let mut p = run_phase(env, &pipe, &format!("{recipients} recipient(s)"), recipients, &bodies).await?;
    p.outcomes = fates(env, &pipe.stack, &keys).await?.outcomes;
    let tables = pipe.stack.tables.values().cloned().collect();
    pipe.stop().await;
    Ok((p, tables))
}

/// A marketing policy with `n` limits, none of which a single send reaches:
/// calendar and rolling windows, per channel, across channels, per campaign.
pub fn cap_policy(n: usize) -> String {
    let limits = [
        ("each_channel", "hour"),
        ("all_channels", "day"),
        ("campaign", "24h"),
        ("each_channel", "day"),
        ("all_channels", "week"),
        ("each_channel", "90m"),
        ("all_channels", "7d"),
        ("each_channel", "week"),
        ("all_channels", "hour"),
        ("each_channel", "12h"),
    ];
    let list: Vec<Value> =
        limits.iter().take(n).map(|(scope, window)| json!({"scope": scope, "window": window, "max": 100})).collect();
    json!({ "marketing": list }).to_string()
}
