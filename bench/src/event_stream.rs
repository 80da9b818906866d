//! The event stream's cost (section 12). The main run leaves the events function out,
//! so its figures stay the notification path's. Here transactional emails go through a
//! stack of their own with it running. Then the bench reads off what it did: events
//! per notification, entries per `PutEvents` call, its invocations and their duration,
//! and from those the cost per million events and per million notifications.

use crate::costs::Prices;
use crate::counting::{Call, Who};
use crate::pipeline::{Env, Pipeline};
use crate::report::{Table, num};
use crate::scenarios;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

pub struct Run {
    pub notifications: usize,
    /// Entries the bus took, and the calls that carried them.
    pub events: usize,
    pub put_calls: usize,
    /// Each notification's history entries, from the ledger: what should have gone out.
    pub expected: usize,
    pub invocations: usize,
    pub gb_seconds: f64,
}

/// Entries a `PutEvents` call carried and the bus took.
fn published(call: &Call) -> usize {
    let sent = call.request_json().and_then(|b| b["Entries"].as_array().map(Vec::len)).unwrap_or(0);
    let failed = call.response_json().and_then(|r| r["FailedEntryCount"].as_u64()).unwrap_or(0) as usize;
    sent.saturating_sub(failed)
}

pub async fn run(env: &Env, notifications: usize, memory_mb: f64) -> anyhow::Result<Run> {
    let stack = herald_cli::local::provision(&env.plain, &env.root, "hbevt1-").await?;
    let names: Vec<String> = stack.functions.iter().map(|f| f.name.clone()).filter(|n| n != "scheduler").collect();
    let only: Vec<&str> = names.iter().map(String::as_str).collect();
    let pipe = Pipeline::start_on(env, stack, &[], false, Some(&only)).await?;
    let who = |i: usize| format!("evt-{i}");
    let setup: Vec<String> = (0..notifications)
        .map(|i| {
            json!({"type": "upsert_recipient", "recipient": who(i), "email": format!("evt{i}@example.org")}).to_string()
        })
        .collect();
    scenarios::setup_phase(env, &pipe, "event stream: setup", notifications, &setup).await?;
    let keys: Vec<String> = (0..notifications).map(|i| format!("evt-{i}")).collect();
    let bodies: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let extra = json!({"channels": ["email"], "data": {"order_id": format!("{i:08}"), "eta": "Tuesday"}});
            scenarios::notify(key, &who(i), "order_shipped", "transactional", extra)
        })
        .collect();
    let mark = env.recorder.mark();
    let imark = pipe.invocation_mark();
    scenarios::run_phase(env, &pipe, "event stream: transactional email", notifications, &bodies).await?;
    let expected = history_entries(env, &pipe, &keys).await?;
    // The stream runs behind the pipeline: wait until every transition is on the bus.
    let started = Instant::now();
    let events = loop {
        let calls = env.recorder.since(mark);
        let events: usize = own_puts(&calls).map(published).sum();
        if events >= expected || started.elapsed() > Duration::from_secs(120) {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let calls = env.recorder.since(mark);
    let put_calls = own_puts(&calls).count();
    let invocations: Vec<_> = pipe.invocations_since(imark).into_iter().filter(|i| i.function == "events").collect();
    let gb_seconds =
        invocations.iter().map(|i| (i.duration.as_micros() as f64 / 1000.0).ceil() / 1000.0 * memory_mb / 1024.0).sum();
    pipe.stop().await;
    Ok(Run { notifications, events, put_calls, expected, invocations: invocations.len(), gb_seconds })
}

fn own_puts(calls: &[Call]) -> impl Iterator<Item = &Call> {
    calls.iter().filter(|c| c.who == Who::Herald("events".into()) && c.operation == "PutEvents" && c.status < 300)
}

/// The history entries of the notifications' ledger items.
async fn history_entries(env: &Env, pipe: &Pipeline, keys: &[String]) -> anyhow::Result<usize> {
    use herald::domain::{IdempotencyKey, MessageId};
    use herald::ports::Ledger;
    let table = pipe.stack.tables.get("LedgerTable").cloned().unwrap_or_default();
    let ledger = herald::aws::dynamodb::DynamoLedger::new(aws_sdk_dynamodb::Client::new(&env.plain), table);
    let mut n = 0;
    for key in keys {
        let id = MessageId::for_key(&IdempotencyKey::new(key).map_err(anyhow::Error::msg)?);
        n += ledger.get(&id).await?.map_or(0, |e| e.history.len());
    }
    Ok(n)
}

/// Section 12's rows; returns the figures as JSON for `latest.json`.
pub fn rows(t: &mut Table, run: &Run, prices: &Prices) -> Value {
    let price = |name: &str| prices.each(name).unwrap_or(0.0);
    let events = run.events.max(1) as f64;
    let usd = run.events as f64 * price("eventbridge_custom_event")
        + run.invocations as f64 * price("lambda_request")
        + run.gb_seconds * price("lambda_arm64_gb_second");
    let per_million_events = usd / events * 1e6;
    let per_notification = run.events as f64 / run.notifications.max(1) as f64;
    t.section(&format!(
        "12. Event stream ({} transactional emails with EventStatuses=all; ledger stream -> events function -> PutEvents)",
        run.notifications
    ));
    t.info(
        "events per notification (to provider: accepted, sent)",
        num(per_notification),
        format!("{} events published of {} ledger transitions", run.events, run.expected),
    );
    t.info(
        "entries per PutEvents call",
        num(run.events as f64 / run.put_calls.max(1) as f64),
        format!("{} calls; at most 10", run.put_calls),
    );
    t.info(
        "AWS $ per million events",
        num(per_million_events),
        format!(
            "EventBridge {} + Lambda {} ({} invocations, GB-s from local durations, indicative); stream reads by a Lambda trigger are free",
            num(run.events as f64 * price("eventbridge_custom_event") / events * 1e6),
            num((usd - run.events as f64 * price("eventbridge_custom_event")) / events * 1e6),
            run.invocations
        ),
    );
    t.info(
        "AWS $ per million notifications, added by the stream",
        num(per_million_events * per_notification),
        "with every status published; narrow EventStatuses to publish less",
    );
    json!({"notifications": run.notifications, "events": run.events, "expected": run.expected, "put_calls": run.put_calls,
           "invocations": run.invocations, "gb_seconds": run.gb_seconds, "usd_per_million_events": per_million_events})
}
