//! Journeys: moves each person through a journey's steps, one job (a wake-up on the
//! journey queue) per step.
//!
//! The person's state (the journeys table) is the truth, jobs are only wake-ups: a job
//! acts only on the move it was made for ([`judge`]); an early one is delayed again. A
//! step is performed by the pure [`Journey::perform`], its move made with one conditional
//! write naming this SQS message (`advanced_by`), and only then are its effects handed
//! on: the send, an ordinary notify on the INGEST queue (keyed by run and step, so ingest
//! dedupes it, and eligibility judges it like any other), and the next job (on the
//! journey queue, or in the schedule table past SQS's 15 minutes). A redelivery of the
//! message that made the move hands the effects on again (never the move); any other
//! copy drops. So no step is repeated or skipped across redelivery and restarts, and a
//! run that ended (an exit event, an unsubscribe) sends nothing more.

use chrono::{DateTime, TimeDelta, Utc};
use herald::config::{ConfigError, Lookup, parsed, required};
use herald::domain::journey::{
    Facts, JobVerdict, Journey, JourneyJob, MAX_QUEUE_DELAY_SECS, Move, RunState, judge, queue_delay, step_message,
};
use herald::lambda::{LambdaEvent, Record, SqsBatchResponse, SqsEvent, Step, for_each_record, settle};
use herald::ports::*;

#[cfg(feature = "aws")]
pub mod aws;

#[derive(Debug, Clone)]
pub struct Config {
    pub ledger_table: String,
    pub journeys_table: String,
    pub recipients_table: String,
    pub templates_table: String,
    pub schedule_table: String,
    pub ingest_queue_url: String,
    pub journey_queue_url: String,
    /// How long an ended run is kept (for `herald journey status`) when the journey may be
    /// entered again: the ledger's retention.
    pub retention_days: u32,
}

impl Config {
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            ledger_table: required(get, "HERALD_LEDGER_TABLE")?,
            journeys_table: required(get, "HERALD_JOURNEYS_TABLE")?,
            recipients_table: required(get, "HERALD_RECIPIENTS_TABLE")?,
            templates_table: required(get, "HERALD_TEMPLATES_TABLE")?,
            schedule_table: required(get, "HERALD_SCHEDULE_TABLE")?,
            ingest_queue_url: required(get, "HERALD_INGEST_QUEUE_URL")?,
            journey_queue_url: required(get, "HERALD_JOURNEY_QUEUE_URL")?,
            retention_days: parsed(get, "HERALD_LEDGER_RETENTION_DAYS", 30)?,
        })
    }
}

/// The ports the journeys function uses.
pub trait Ports {
    type Outbox: Outbox;
    type Schedule: ScheduleStore;
    /// Each person's place in each journey.
    type Journeys: Journeys;
    /// The journeys' definitions, by version (the templates table).
    type Definitions: JourneyStore;
    /// Consent, time zone and attributes, before each step.
    type Recipients: RecipientStore;
    /// A branch reads the status of its step's message; unreadable jobs are recorded.
    type Ledger: Ledger;
}

pub struct Deps<P: Ports> {
    pub outbox: P::Outbox,
    pub schedule: P::Schedule,
    pub journeys: P::Journeys,
    pub definitions: P::Definitions,
    pub recipients: P::Recipients,
    pub ledger: P::Ledger,
    pub retention: TimeDelta,
}

/// Records in flight at once: each reads two or three items and makes one write.
const CONCURRENCY: usize = 10;

/// How long a first step waits for a profile that does not exist yet (an entry that
/// overtook its `upsert_recipient`) before the run ends `no_recipient`.
const PROFILE_GRACE: TimeDelta = TimeDelta::minutes(10);
const PROFILE_RETRY_SECS: u32 = 30;

pub async fn handler<P: Ports>(
    deps: &Deps<P>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, herald::lambda::Error> {
    let now = Utc::now();
    let steps = for_each_record(event.payload, CONCURRENCY, |record| process(deps, record, now)).await;
    // A record whose hand-off failed comes back, finds its own move made, and hands on again.
    Ok(settle(&deps.outbox, steps, "hand-off failed").await)
}

async fn process<P: Ports>(deps: &Deps<P>, record: Record, now: DateTime<Utc>) -> Step {
    let job: JourneyJob = match serde_json::from_str(&record.body) {
        Ok(job) => job,
        Err(e) => {
            tracing::error!(record = %record.id, error = %herald::contract::json_error_detail(&e, None), "unreadable journey job: recorded and dropped");
            let rejection = RejectionRecord::unreadable(
                &record.id,
                "unreadable_journey_job",
                herald::contract::json_error_detail(&e, None),
                record.body.len(),
                now,
            );
            return match deps.ledger.reject(rejection).await {
                Err(e) if e.is_retryable() => Step::Retry(e.to_string()),
                _ => Step::Done,
            };
        }
    };
    match step(deps, &record, &job, now).await {
        Ok(step) => step,
        Err(e) if e.is_retryable() => Step::Retry(e.to_string()),
        Err(e) => {
            // A definition that no longer reads, a state item that does not: nothing a retry
            // changes. Logged with the ids, and dropped.
            tracing::error!(record = %record.id, journey = %job.journey, recipient = %job.recipient, error = %e, "journey step failed for good");
            count(&job, "failed");
            Step::Done
        }
    }
}

fn count(job: &JourneyJob, outcome: &str) {
    herald::metrics::count("JourneySteps", &[("Journey", job.journey.as_str()), ("Outcome", outcome)]);
}

async fn step<P: Ports>(deps: &Deps<P>, record: &Record, job: &JourneyJob, now: DateTime<Utc>) -> PortResult<Step> {
    let state = deps.journeys.get(&job.journey, &job.recipient).await?;
    let verdict = judge(job, state.as_ref(), &record.id, now);
    let Some(state) = state else {
        tracing::info!(record = %record.id, journey = %job.journey, recipient = %job.recipient, "no journey state: dropped");
        count(job, "no_state");
        return Ok(Step::Done);
    };
    let log = |what: &str| {
        tracing::info!(record = %record.id, journey = %job.journey, recipient = %job.recipient, run = job.run, seq = job.seq, step = %job.step, outcome = what, "journey job");
    };
    match verdict {
        JobVerdict::Drop(why) => {
            log(why);
            count(job, why);
            Ok(Step::Done)
        }
        JobVerdict::Early { due } => {
            log("early");
            wake(deps, job, Some(due), now).await
        }
        JobVerdict::Redo => {
            log("redo");
            count(job, "redo");
            let journey = definition(deps, &state).await?;
            // The move this message made: its send (when it was a send step that did not
            // end the run early), and the next job.
            let send = match (&journey, state.exit_reason.as_deref()) {
                (Some(j), None) => j.send_of(&RunState { step: Some(job.step.clone()), seq: job.seq, ..state.clone() }),
                _ => None,
            };
            effects(deps, &state, send, now).await
        }
        JobVerdict::Perform => perform(deps, record, job, state, now).await,
    }
}

async fn definition<P: Ports>(deps: &Deps<P>, state: &RunState) -> PortResult<Option<std::sync::Arc<Journey>>> {
    deps.definitions.journey(&state.journey, Some(state.version)).await
}

async fn perform<P: Ports>(
    deps: &Deps<P>,
    record: &Record,
    job: &JourneyJob,
    state: RunState,
    now: DateTime<Utc>,
) -> PortResult<Step> {
    let Some(journey) = definition(deps, &state).await? else {
        // The version the person is on is gone from the table: end the run, say why.
        return advance(deps, record, job, &state, None, Move::exit("journey_missing"), None, now).await;
    };
    let recipient = deps.recipients.get(&state.recipient).await?;
    if recipient.is_none() && state.seq == 0 && now - state.entered_at < PROFILE_GRACE {
        tracing::info!(record = %record.id, journey = %job.journey, recipient = %job.recipient, "no profile yet: first step waits");
        return wake(deps, job, Some(now + TimeDelta::seconds(PROFILE_RETRY_SECS.into())), now).await;
    }
    let message = match state.step.as_ref().and_then(|s| journey.reads_message_of(s)) {
        Some(on) => match step_message(&state.journey, &state.recipient, state.run, on) {
            Some(id) => {
                deps.ledger.get(&id).await?.map(|e| (e.status, e.history.into_iter().map(|h| h.status).collect()))
            }
            None => None,
        },
        None => None,
    };
    let performed = journey.perform(&state, &Facts { recipient: recipient.as_ref(), message }, now);
    let keep_until = journey.keep_until(now, deps.retention);
    advance(deps, record, job, &state, Some(performed.send), performed.next, keep_until, now).await
}

/// Makes the move (one conditional write), then hands on its effects.
#[allow(clippy::too_many_arguments)]
async fn advance<P: Ports>(
    deps: &Deps<P>,
    record: &Record,
    job: &JourneyJob,
    state: &RunState,
    send: Option<Option<herald::contract::NotifyRequest>>,
    to: Move,
    keep_until: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> PortResult<Step> {
    match deps.journeys.advance(state, &to, &record.id, now, keep_until).await? {
        Advanced::Lost => {
            tracing::info!(record = %record.id, journey = %job.journey, recipient = %job.recipient, "another copy moved first: dropped");
            count(job, "lost");
            Ok(Step::Done)
        }
        Advanced::Applied => {
            let outcome = match (&to.to, &to.exit_reason) {
                (Some(_), _) => "moved",
                (None, None) => "completed",
                (None, Some(_)) => "exited",
            };
            tracing::info!(
                record = %record.id, journey = %job.journey, recipient = %job.recipient, run = job.run,
                from = %job.step, to = to.to.as_ref().map(|s| s.as_str()).unwrap_or("end"),
                exit_reason = to.exit_reason.as_deref().unwrap_or(""), sends = matches!(send, Some(Some(_))), outcome,
                "journey step"
            );
            count(job, outcome);
            let moved = RunState {
                seq: state.seq.saturating_add(1),
                status: to.status(),
                step: to.to.clone(),
                due: to.due,
                exit_reason: to.exit_reason.clone(),
                ..state.clone()
            };
            effects(deps, &moved, send.flatten(), now).await
        }
    }
}

/// What follows a move: its send on the ingest queue, and the next job while the run goes on.
async fn effects<P: Ports>(
    deps: &Deps<P>,
    moved: &RunState,
    send: Option<herald::contract::NotifyRequest>,
    now: DateTime<Utc>,
) -> PortResult<Step> {
    let mut out = Vec::new();
    if let Some(request) = send {
        let body = serde_json::to_string(&request).map_err(|e| PortError::Unknown(e.into()))?;
        out.push((Destination::Ingest, body, 0));
    }
    if let Some(next) = JourneyJob::for_state(moved) {
        match wake(deps, &next, moved.due, now).await? {
            Step::Forward(more) => out.extend(more),
            Step::Retry(e) => return Ok(Step::Retry(e)),
            Step::Done => {}
        }
    }
    Ok(if out.is_empty() { Step::Done } else { Step::Forward(out) })
}

/// Queues `job` for `due`: on the journey queue with a delay when within SQS's 15
/// minutes, else in the schedule table (which the scheduler releases to the journey queue).
async fn wake<P: Ports>(
    deps: &Deps<P>,
    job: &JourneyJob,
    due: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> PortResult<Step> {
    let body = serde_json::to_string(job).map_err(|e| PortError::Unknown(e.into()))?;
    match due {
        Some(due) if due - now > TimeDelta::seconds(MAX_QUEUE_DELAY_SECS.into()) => {
            deps.schedule.schedule(&job.schedule_id(), &body, due, Destination::Journey).await?;
            Ok(Step::Done)
        }
        _ => Ok(Step::Forward(vec![(Destination::Journey, body, queue_delay(due, now))])),
    }
}
