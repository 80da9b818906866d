//! Scheduler: runs every minute (an EventBridge schedule) and hands the sends
//! that are due — `send_at` days ahead, quiet-hour deferrals past an SQS delay —
//! back to eligibility, which decides again with what is true then.
//!
//! Each run reads the minutes since the last run's cursor, so a missed run is
//! caught up by the next; a job leaves the table only once it is on the queue.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use herald::config::{ConfigError, Lookup, required};
use herald::lambda::LambdaEvent;
use herald::metrics;
use herald::ports::{Destination, Outbox, Outgoing, PortResult, ScheduleStore};
use serde_json::Value;

#[cfg(feature = "aws")]
pub mod aws;

#[derive(Debug, Clone)]
pub struct Config {
    pub schedule_table: String,
    pub eligibility_queue_url: String,
}

impl Config {
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            schedule_table: required(get, "HERALD_SCHEDULE_TABLE")?,
            eligibility_queue_url: required(get, "HERALD_ELIGIBILITY_QUEUE_URL")?,
        })
    }
}

pub struct Deps<S, O> {
    pub schedule: S,
    pub outbox: O,
}

/// Jobs handed over per run; the rest wait for the next minute.
pub const BATCH: usize = 1_000;

/// How far back a first run (no cursor yet) looks.
pub const FIRST_LOOKBACK: TimeDelta = TimeDelta::days(1);

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Run {
    pub released: usize,
    pub failed: usize,
}

pub async fn handler<S: ScheduleStore, O: Outbox>(
    deps: &Deps<S, O>,
    _event: LambdaEvent<Value>,
) -> Result<Value, herald::lambda::Error> {
    let run = release_due(deps, Utc::now()).await?;
    Ok(serde_json::json!({ "released": run.released, "failed": run.failed }))
}

/// Hands every job due by `now` to eligibility.
pub async fn release_due<S: ScheduleStore, O: Outbox>(deps: &Deps<S, O>, now: DateTime<Utc>) -> PortResult<Run> {
    let from = deps.schedule.cursor().await?.unwrap_or(now - FIRST_LOOKBACK);
    let due = deps.schedule.due(from, now, BATCH).await?;
    let outgoing: Vec<Outgoing> = due
        .iter()
        .enumerate()
        .map(|(i, j)| Outgoing { id: i.to_string(), body: j.body.clone(), delay_secs: 0 })
        .collect();
    let failed =
        if outgoing.is_empty() { Vec::new() } else { deps.outbox.send(Destination::Eligibility, outgoing).await? };
    let handed: Vec<_> =
        due.iter().enumerate().filter(|(i, _)| !failed.contains(&i.to_string())).map(|(_, j)| j.clone()).collect();
    deps.schedule.remove(&handed).await?;
    for job in &handed {
        tracing::info!(message_id = %job.id, due = %job.due, late_secs = (now - job.due).num_seconds(), "released");
    }
    if !handed.is_empty() {
        metrics::count("Released", &[("Stage", "scheduler")]);
    }
    // The current minute is read again next time (jobs later in it are not due yet);
    // a full batch or a failed send keeps the cursor where it is, to read those again.
    if due.len() < BATCH && failed.is_empty() {
        let this_minute = now.duration_trunc(TimeDelta::minutes(1)).unwrap_or(now);
        deps.schedule.set_cursor(this_minute).await?;
    }
    Ok(Run { released: handed.len(), failed: failed.len() })
}
