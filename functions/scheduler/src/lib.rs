//! Scheduler: runs every minute (an EventBridge schedule) and hands the jobs
//! that are due to their queues: sends (`send_at` days ahead, quiet-hour deferrals
//! past an SQS delay) back to eligibility, which decides again with what is true
//! then; digest windows' close jobs and journeys' waits to their functions.
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
    pub digest_queue_url: String,
    pub journey_queue_url: String,
}

impl Config {
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            schedule_table: required(get, "HERALD_SCHEDULE_TABLE")?,
            eligibility_queue_url: required(get, "HERALD_ELIGIBILITY_QUEUE_URL")?,
            digest_queue_url: required(get, "HERALD_DIGEST_QUEUE_URL")?,
            journey_queue_url: required(get, "HERALD_JOURNEY_QUEUE_URL")?,
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

/// Hands every job due by `now` to its queue.
pub async fn release_due<S: ScheduleStore, O: Outbox>(deps: &Deps<S, O>, now: DateTime<Utc>) -> PortResult<Run> {
    let from = deps.schedule.cursor().await?.unwrap_or(now - FIRST_LOOKBACK);
    let due = deps.schedule.due(from, now, BATCH).await?;
    // One send per queue; the ids are positions in `due`.
    let mut failed: Vec<String> = Vec::new();
    for to in [Destination::Eligibility, Destination::Digest, Destination::Journey] {
        let outgoing: Vec<Outgoing> = due
            .iter()
            .enumerate()
            .filter(|(_, j)| j.to == to)
            .map(|(i, j)| Outgoing { id: i.to_string(), body: j.body.clone(), delay_secs: 0 })
            .collect();
        if !outgoing.is_empty() {
            failed.extend(deps.outbox.send(to, outgoing).await?);
        }
    }
    let handed: Vec<_> =
        due.iter().enumerate().filter(|(i, _)| !failed.contains(&i.to_string())).map(|(_, j)| j.clone()).collect();
    deps.schedule.remove(&handed).await?;
    for job in &handed {
        tracing::info!(job = %job.id, to = ?job.to, due = %job.due, late_secs = (now - job.due).num_seconds(), "released");
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
