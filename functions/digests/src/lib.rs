//! Digest: closes digest windows. Each job names a window of a head (`{digest, win,
//! due}`); the head, read consistently, is the truth and jobs are wake-ups: an early job
//! waits again (SQS's delay, or the schedule table past 15 minutes), a due one seals its
//! window in one conditional write, and a sealed window is handed to ingest as ONE
//! ordinary notify (idempotency key `digest:<head>:<win>`) with `data = {"items": [...],
//! "total": n}`, then forgotten. A close delivered twice, or a crash between any two
//! steps, sends the window once: the seal is conditional on the window, a sealed window
//! stays on the head until its hand-off is done (whichever job comes next finishes it),
//! and ingest drops the second copy of the message's key.

use chrono::{DateTime, Utc};
use herald::config::{ConfigError, Lookup, required};
use herald::domain::digest::{self, CloseJob, CloseStep, DigestHead, SealedWindow};
use herald::lambda::{LambdaEvent, Outcome, Record, SqsBatchResponse, SqsEvent, batch_response, for_each_record};
use herald::ports::*;

#[cfg(feature = "aws")]
pub mod aws;

#[derive(Debug, Clone)]
pub struct Config {
    pub ledger_table: String,
    pub templates_table: String,
    pub schedule_table: String,
    pub ingest_queue_url: String,
    pub digest_queue_url: String,
}

impl Config {
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            ledger_table: required(get, "HERALD_LEDGER_TABLE")?,
            templates_table: required(get, "HERALD_TEMPLATES_TABLE")?,
            schedule_table: required(get, "HERALD_SCHEDULE_TABLE")?,
            ingest_queue_url: required(get, "HERALD_INGEST_QUEUE_URL")?,
            digest_queue_url: required(get, "HERALD_DIGEST_QUEUE_URL")?,
        })
    }
}

/// The ports the digest function uses.
pub trait Ports {
    /// The ingest queue (each window's message) and the digest queue (a job that waits again).
    type Outbox: Outbox;
    type Schedule: ScheduleStore;
    /// Digest heads and their items' data, in the ledger table.
    type Digests: Digests;
    /// How many items' data a template's message carries (`[digest] items`).
    type Templates: TemplateStore;
}

pub struct Deps<P: Ports> {
    pub outbox: P::Outbox,
    pub schedule: P::Schedule,
    pub digests: P::Digests,
    pub templates: P::Templates,
}

/// Jobs in flight at once: each costs a read and one or two writes.
const CONCURRENCY: usize = 10;
/// Steps one job may take (a pending hand-off, the seal, its hand-off) before it is retried.
const MAX_STEPS: usize = 5;

pub async fn handler<P: Ports>(
    deps: &Deps<P>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, herald::lambda::Error> {
    handle_at(deps, event, Utc::now()).await
}

/// [`handler`] at the instant `now` (tests move the clock).
pub async fn handle_at<P: Ports>(
    deps: &Deps<P>,
    event: LambdaEvent<SqsEvent>,
    now: DateTime<Utc>,
) -> Result<SqsBatchResponse, herald::lambda::Error> {
    let outcomes = for_each_record(event.payload, CONCURRENCY, |record| close(deps, record, now)).await;
    Ok(batch_response(outcomes.iter().map(|(id, o)| (id.as_str(), o))))
}

async fn close<P: Ports>(deps: &Deps<P>, record: Record, now: DateTime<Utc>) -> Outcome {
    let job: CloseJob = match serde_json::from_str(&record.body) {
        Ok(job) => job,
        Err(e) => {
            // Herald wrote it: a bug or an older version, not something a retry mends.
            tracing::error!(record = %record.id, error = %herald::contract::json_error_detail(&e, None), "unreadable close job: dropped");
            return Outcome::Done;
        }
    };
    for _ in 0..MAX_STEPS {
        let head = match deps.digests.head(&job.digest).await {
            Ok(head) => head,
            Err(e) => return Outcome::Retry(e.to_string()),
        };
        let step = digest::decide(&job, head.as_ref(), now);
        let result = match (step, head) {
            (CloseStep::Drop(why), _) => {
                tracing::info!(record = %record.id, digest = %job.digest, window = job.win, outcome = "dropped", why, "close job");
                return Outcome::Done;
            }
            (CloseStep::Wait(until), _) => return wait(deps, &record, &job, until, now).await,
            (CloseStep::Seal, _) => deps.digests.seal(&job.digest, job.win, now).await.map(|sealed| {
                tracing::info!(record = %record.id, digest = %job.digest, window = job.win, sealed, "seal");
            }),
            (CloseStep::HandOff, Some(head)) => match &head.sealed {
                Some(sealed) => hand_off(deps, &head, sealed).await,
                None => Ok(()),
            },
            (CloseStep::HandOff, None) => Ok(()),
        };
        if let Err(e) = result {
            return Outcome::Retry(e.to_string());
        }
    }
    Outcome::Retry("the digest head kept changing".into())
}

/// Sends sealed window `sealed` as one notify to ingest, then forgets it.
async fn hand_off<P: Ports>(deps: &Deps<P>, head: &DigestHead, sealed: &SealedWindow) -> PortResult<()> {
    let n = deps.templates.get(&head.template).await?.map_or(digest::DEFAULT_TEMPLATE_ITEMS, |t| t.digest_items());
    let items = deps.digests.item_data(&digest::shown_ids(sealed, n)).await?;
    match digest::message(&head.id, &head.recipient, &head.template, sealed, items) {
        Some(message) => {
            let body = serde_json::to_string(&message).map_err(|e| PortError::Unknown(e.into()))?;
            let refused =
                deps.outbox.send(Destination::Ingest, vec![Outgoing { id: "0".into(), body, delay_secs: 0 }]).await?;
            if !refused.is_empty() {
                return Err(PortError::Transient("the ingest queue refused the digest message".into()));
            }
            tracing::info!(digest = %head.id, window = sealed.win, total = sealed.total, message_key = %message.idempotency_key, "digest handed to ingest");
            herald::metrics::count("DigestsSent", &[("Template", head.template.as_str())]);
        }
        None => tracing::info!(digest = %head.id, window = sealed.win, "nothing after the first item: no message"),
    }
    deps.digests.handed_off(&head.id, sealed.win).await
}

/// Puts the job back until `until`: an SQS delay within 15 minutes, else the schedule table.
async fn wait<P: Ports>(
    deps: &Deps<P>,
    record: &Record,
    job: &CloseJob,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Outcome {
    let next = CloseJob { due: until, ..job.clone() };
    let body = match serde_json::to_string(&next) {
        Ok(body) => body,
        Err(e) => return Outcome::Retry(e.to_string()),
    };
    let result = match digest::delay_secs(until, now) {
        Some(delay_secs) => {
            deps.outbox.send(Destination::Digest, vec![Outgoing { id: "0".into(), body, delay_secs }]).await.and_then(
                |refused| match refused.is_empty() {
                    true => Ok(()),
                    false => Err(PortError::Transient("the digest queue refused the job".into())),
                },
            )
        }
        None => {
            let id = format!("{}#{}", job.digest.hex(), job.win);
            deps.schedule.schedule(&id, &body, until, Destination::Digest).await
        }
    };
    match result {
        Ok(()) => {
            tracing::info!(record = %record.id, digest = %job.digest, window = job.win, until = %until, "close job waits");
            Outcome::Done
        }
        Err(e) => Outcome::Retry(e.to_string()),
    }
}
