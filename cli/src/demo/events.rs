//! The demo's event stream section: a rule on the stack's bus sends every Herald event to
//! a queue of the demo's own, as a team's consumer would take them; at the end the demo
//! counts them by type and checks them against the tables they come from.

use crate::local::Local;
use anyhow::Context as _;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// The queue the demo's rule fills, created before anything is published.
pub(super) struct Sink {
    url: String,
    source: String,
}

pub(super) async fn sink(local: &Local) -> anyhow::Result<Sink> {
    let (bus, _) = local.stack.buses.get("EventBus").context("the template declares no EventBus")?.clone();
    let name = format!("{}demo-events", local.stack.prefix);
    let sqs = aws_sdk_sqs::Client::new(&local.sdk);
    let url = sqs.create_queue().queue_name(&name).send().await?.queue_url.context("no queue URL")?;
    let arn = format!("arn:aws:sqs:{}:{}:{name}", local.stack.region, crate::stack::ACCOUNT_ID);
    let source = format!("herald.{}", local.stack.prefix.trim_end_matches('-'));
    let events = aws_sdk_eventbridge::Client::new(&local.sdk);
    let pattern = json!({ "source": [source] }).to_string();
    events.put_rule().name("demo-all").event_bus_name(&bus).event_pattern(pattern).send().await?;
    let target = aws_sdk_eventbridge::types::Target::builder().id("demo").arn(arn).build()?;
    events.put_targets().rule("demo-all").event_bus_name(&bus).targets(target).send().await?;
    Ok(Sink { url, source })
}

/// What the tables say should be on the bus: every ledger history entry and rejected
/// body, and every consent audit item.
async fn expected(local: &Local) -> anyhow::Result<(usize, usize)> {
    let ddb = aws_sdk_dynamodb::Client::new(&local.sdk);
    let mut transitions = 0;
    let ledger = local.stack.tables.get("LedgerTable").context("LedgerTable")?;
    let mut pages = ddb.scan().table_name(ledger).into_paginator().items().send();
    while let Some(item) = pages.next().await {
        let item = item?;
        let rejected = item.get("pk").and_then(|v| v.as_s().ok()).is_some_and(|pk| pk.starts_with("rejected#"));
        transitions += if rejected { 1 } else { item.get("history").and_then(|h| h.as_l().ok()).map_or(0, Vec::len) };
    }
    let mut consents = 0;
    let recipients = local.stack.tables.get("RecipientsTable").context("RecipientsTable")?;
    let mut pages = ddb.scan().table_name(recipients).into_paginator().items().send();
    while let Some(item) = pages.next().await {
        consents +=
            usize::from(item?.get("sk").and_then(|v| v.as_s().ok()).is_some_and(|sk| sk.starts_with("consent#")));
    }
    Ok((transitions, consents))
}

/// Reads the sink until what arrived matches the tables (or 60 s pass), then reports.
pub(super) async fn section(local: &Local, sink: &Sink) -> anyhow::Result<(String, usize)> {
    eprintln!("herald demo: the event stream");
    let sqs = aws_sdk_sqs::Client::new(&local.sdk);
    let mut events: Vec<Value> = Vec::new();
    let started = Instant::now();
    let (transitions, consents) = loop {
        let out =
            sqs.receive_message().queue_url(&sink.url).max_number_of_messages(10).wait_time_seconds(1).send().await?;
        for m in out.messages.unwrap_or_default() {
            events.push(serde_json::from_str(m.body.as_deref().unwrap_or("null")).unwrap_or(Value::Null));
            if let Some(handle) = m.receipt_handle {
                sqs.delete_message().queue_url(&sink.url).receipt_handle(handle).send().await?;
            }
        }
        let want = expected(local).await?;
        let got = count(&events);
        if (got.0 >= want.0 && got.1 >= want.1) || started.elapsed() > Duration::from_secs(60) {
            break want;
        }
    };
    let (messages, consent) = count(&events);
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        *by_type.entry(e["detail-type"].as_str().unwrap_or("?").to_owned()).or_default() += 1;
    }
    let ids: std::collections::BTreeSet<&str> =
        events.iter().filter_map(|e| e["detail"]["event_id"].as_str()).collect();
    let clean = events.iter().all(|e| e["source"] == sink.source.as_str() && !e["detail"].to_string().contains('@'));
    let mut differ = 0;
    let mut check = |ok: bool| {
        if ok {
            "ok"
        } else {
            differ += 1;
            "DIFFERS"
        }
    };
    let mut out = format!(
        "\n\nThe event stream: a rule on the bus `{}` sends every event (source {}) to a queue, as a team's \
         consumer would take them:\n",
        local.stack.buses.get("EventBus").map(|b| b.0.as_str()).unwrap_or("?"),
        sink.source
    );
    for (t, n) in &by_type {
        let _ = writeln!(out, "  {n:>4}  {t}");
    }
    let _ = writeln!(
        out,
        "  every ledger transition is one event: {messages} events, {transitions} history entries and rejections: {}",
        check(messages == transitions)
    );
    let _ = writeln!(
        out,
        "  every consent command is one event: {consent} events, {consents} audit items: {}",
        check(consent == consents)
    );
    let _ = writeln!(
        out,
        "  each event once (by event_id), ids only (no address): {}",
        check(ids.len() == events.len() && clean)
    );
    Ok((out, differ))
}

/// (message events, consent events) among those received.
fn count(events: &[Value]) -> (usize, usize) {
    let of = |prefix: &[&str]| {
        events
            .iter()
            .filter(|e| e["detail-type"].as_str().is_some_and(|t| prefix.iter().any(|p| t.starts_with(p))))
            .count()
    };
    (of(&["Message "]), of(&["Consent ", "Recipient Unsubscribed"]))
}
