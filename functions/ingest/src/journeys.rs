//! Journeys at ingest: entries (`enter_journey`, a `track` of a journey's entry event),
//! exits (a `track` of one of its exit events), and erasure of a person's places.
//!
//! An entry reads the person's state in the journey, judges it ([`judge_entry`]) and
//! writes the new run only if the state is still the one judged (one conditional put),
//! then queues the run's first job. An exit is one conditional update per journey whose
//! exit events name the track's event, on any version that does (people stay on theirs).

use crate::{Deps, Ports, Step, reject};
use chrono::{DateTime, Utc};
use herald::contract::{EnterJourney, Rejection, Track};
use herald::domain::RecipientId;
use herald::domain::journey::{EntryVerdict, Journey, JourneyJob, JourneyName, judge_entry, new_run, queue_delay};
use herald::lambda::Record;
use herald::ports::*;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// `enter_journey`: the person starts the journey's latest version (or nothing, with the
/// reason logged: on it now, re-entry refused, this key entered already).
pub(crate) async fn enter<P: Ports>(deps: &Deps<P>, record: &Record, cmd: EnterJourney, now: DateTime<Utc>) -> Step {
    let journey = match deps.templates.journey(&cmd.journey, None).await {
        Ok(Some(j)) => j,
        Ok(None) => {
            let why = format!("journey {} has not been pushed", cmd.journey);
            return reject(deps, record, Rejection::new("unknown_journey", why), now).await;
        }
        Err(e) if e.is_retryable() => return Step::Retry(e.to_string()),
        Err(e) => return reject(deps, record, Rejection::new("invalid_journey", e.to_string()), now).await,
    };
    let key = cmd.idempotency_key.as_str();
    match start(deps, record, &journey, &cmd.recipient, key, cmd.data, now).await {
        Ok(jobs) => forward(jobs),
        Err(e) => Step::Retry(e.to_string()),
    }
}

/// A `track`: ends the runs it is an exit event of, then enters the journeys it is the
/// entry event of (their latest versions).
pub(crate) async fn on_track<P: Ports>(deps: &Deps<P>, record: &Record, track: &Track, now: DateTime<Utc>) -> Step {
    match track_moves(deps, record, track, now).await {
        Ok(jobs) => forward(jobs),
        Err(e) => Step::Retry(e.to_string()),
    }
}

async fn track_moves<P: Ports>(
    deps: &Deps<P>,
    record: &Record,
    track: &Track,
    now: DateTime<Utc>,
) -> PortResult<Vec<(JourneyJob, u32)>> {
    let catalog = deps.templates.journeys().await?;
    // Per journey: the versions the event ends, and the latest version.
    let mut exits: BTreeMap<&JourneyName, Vec<&Arc<Journey>>> = BTreeMap::new();
    let mut latest: BTreeMap<&JourneyName, &Arc<Journey>> = BTreeMap::new();
    for j in catalog.iter() {
        if j.exits_on(&track.event) {
            exits.entry(j.name()).or_default().push(j);
        }
        let newest = latest.entry(j.name()).or_insert(j);
        if j.version() > newest.version() {
            *newest = j;
        }
    }
    let reason = format!("event:{}", track.event);
    for (name, versions) in &exits {
        let numbers: Vec<u32> = versions.iter().map(|j| j.version()).collect();
        // Kept as long as the longest-kept version keeps it (for good if any is never re-entered).
        let keep = versions.iter().map(|j| j.keep_until(now, deps.retention)).collect::<Option<Vec<_>>>();
        let keep_until = keep.and_then(|k| k.into_iter().max());
        let ended = deps.journeys.exit(name, &track.recipient, &numbers, &reason, now, keep_until).await?;
        tracing::info!(record = %record.id, journey = %name, recipient = %track.recipient, event = %track.event, ended, "journey exit");
    }
    let mut jobs = Vec::new();
    for journey in latest.values().filter(|j| j.enters_on(&track.event)) {
        let key = track.idempotency_key.as_str();
        jobs.extend(start(deps, record, journey, &track.recipient, key, Map::new(), now).await?);
    }
    Ok(jobs)
}

/// Starts a run if the person may enter; the first job to queue, if any.
async fn start<P: Ports>(
    deps: &Deps<P>,
    record: &Record,
    journey: &Journey,
    recipient: &RecipientId,
    key: &str,
    data: Map<String, Value>,
    now: DateTime<Utc>,
) -> PortResult<Option<(JourneyJob, u32)>> {
    let state = deps.journeys.get(journey.name(), recipient).await?;
    let run = match judge_entry(journey, state.as_ref(), key, now) {
        EntryVerdict::Enter { run } => run,
        EntryVerdict::Again => {
            tracing::info!(record = %record.id, journey = %journey.name(), recipient = %recipient, "entry seen before its first step: queued again");
            return Ok(state.as_ref().and_then(|s| Some((JourneyJob::for_state(s)?, queue_delay(s.due, now)))));
        }
        EntryVerdict::Refuse(why) => {
            tracing::info!(record = %record.id, journey = %journey.name(), recipient = %recipient, outcome = why, "not entered");
            herald::metrics::count("JourneyEntries", &[("Journey", journey.name().as_str()), ("Outcome", why)]);
            return Ok(None);
        }
    };
    // The zone matters only for a first step that waits for a local time.
    let tz = if journey.starts_with_local_time() {
        deps.recipients.get(recipient).await?.and_then(|r| r.timezone).map(|t| t.0)
    } else {
        None
    };
    let new = new_run(journey, recipient, run, key, data, now, tz);
    if !deps.journeys.enter(&new, state.as_ref().map(|s| s.run)).await? {
        // Another entry wrote first: judge again against what it wrote.
        return Err(PortError::Transient(format!("journey {} state changed while entering", journey.name())));
    }
    tracing::info!(record = %record.id, journey = %journey.name(), version = journey.version(), recipient = %recipient, run, "entered");
    herald::metrics::count("JourneyEntries", &[("Journey", journey.name().as_str()), ("Outcome", "entered")]);
    Ok(JourneyJob::for_state(&new).map(|job| (job, queue_delay(new.due, now))))
}

/// The first jobs, each delayed to its step's time (at most SQS's 15 minutes: the function
/// delays an early job again).
fn forward(jobs: impl IntoIterator<Item = (JourneyJob, u32)>) -> Step {
    let mut out = Vec::new();
    for (job, delay) in jobs {
        match serde_json::to_string(&job) {
            Ok(body) => out.push((Destination::Journey, body, delay)),
            Err(e) => return Step::Retry(format!("could not encode the journey job: {e}")),
        }
    }
    if out.is_empty() { Step::Done } else { Step::Forward(out) }
}

/// Forgets the person's place in every pushed journey: one delete per journey.
pub(crate) async fn erase<P: Ports>(deps: &Deps<P>, recipient: &RecipientId) -> PortResult<()> {
    let catalog = deps.templates.journeys().await?;
    let mut names: Vec<&JourneyName> = catalog.iter().map(|j| j.name()).collect();
    names.dedup();
    for name in names {
        deps.journeys.erase(name, recipient).await?;
    }
    Ok(())
}
