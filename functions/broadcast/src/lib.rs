//! Broadcast fan-out: each record is one page of one scan segment of the recipients
//! table. The page's people in the broadcast's audience become ordinary notifications
//! (key `<campaign>#<recipient>`) on the ingest queue, delayed to their place in the
//! broadcast's pace; the next page's job goes back on the broadcast queue; the page's
//! counts and cursor are committed once. See `herald::domain::broadcast`.

use chrono::{DateTime, Utc};
use herald::config::{ConfigError, Lookup, required};
use herald::domain::broadcast::{Broadcast, Counts, PageJob, PageStep};
use herald::domain::segment::AudienceVerdict;
use herald::lambda::{LambdaEvent, Outcome, Record, SqsBatchResponse, SqsEvent, batch_response, for_each_record};
use herald::ports::*;

#[cfg(feature = "aws")]
pub mod aws;

#[derive(Debug, Clone)]
pub struct Config {
    pub ledger_table: String,
    pub recipients_table: String,
    pub ingest_queue_url: String,
    pub broadcast_queue_url: String,
}

impl Config {
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            ledger_table: required(get, "HERALD_LEDGER_TABLE")?,
            recipients_table: required(get, "HERALD_RECIPIENTS_TABLE")?,
            ingest_queue_url: required(get, "HERALD_INGEST_QUEUE_URL")?,
            broadcast_queue_url: required(get, "HERALD_BROADCAST_QUEUE_URL")?,
        })
    }
}

/// What the fan-out needs: the broadcasts' records, a scan of the recipients, the queues.
pub struct Deps<B, S, O> {
    pub broadcasts: B,
    pub recipients: S,
    pub outbox: O,
}

/// Pages read at once when a batch brings several (the event source sends one by default).
const CONCURRENCY: usize = 2;

pub async fn handler<B, S, O>(
    deps: &Deps<B, S, O>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, herald::lambda::Error>
where
    B: Broadcasts,
    S: AudienceScan,
    O: Outbox,
{
    let outcomes = for_each_record(event.payload, CONCURRENCY, |record| page(deps, record, Utc::now())).await;
    Ok(batch_response(outcomes.iter().map(|(id, o)| (id.as_str(), o))))
}

async fn page<B, S, O>(deps: &Deps<B, S, O>, record: Record, now: DateTime<Utc>) -> Outcome
where
    B: Broadcasts,
    S: AudienceScan,
    O: Outbox,
{
    let job: PageJob = match serde_json::from_str(&record.body) {
        Ok(job) => job,
        Err(e) => {
            // Herald writes these jobs itself: one it cannot read is a bug, not a producer's error.
            tracing::error!(record = %record.id, error = %herald::contract::json_error_detail(&e, None), "unreadable page job dropped");
            return Outcome::Done;
        }
    };
    match run_page(deps, &record, &job, now).await {
        Ok(()) => Outcome::Done,
        Err(e) => Outcome::Retry(e.to_string()),
    }
}

async fn run_page<B, S, O>(deps: &Deps<B, S, O>, record: &Record, job: &PageJob, now: DateTime<Utc>) -> PortResult<()>
where
    B: Broadcasts,
    S: AudienceScan,
    O: Outbox,
{
    let Some(broadcast) = deps.broadcasts.broadcast(&job.campaign).await? else {
        tracing::warn!(record = %record.id, campaign = %job.campaign, "page job of an unknown broadcast dropped");
        return Ok(());
    };
    match broadcast.step(job, now) {
        PageStep::Drop(why) => {
            tracing::info!(campaign = %job.campaign, segment = job.segment, page = job.page, why, "page job dropped");
            Ok(())
        }
        PageStep::Wait { secs } => send(deps, Destination::Broadcast, vec![(record.body.clone(), secs)]).await,
        PageStep::Scan => scan(deps, &broadcast, job, now).await,
    }
}

async fn scan<B, S, O>(deps: &Deps<B, S, O>, broadcast: &Broadcast, job: &PageJob, now: DateTime<Utc>) -> PortResult<()>
where
    B: Broadcasts,
    S: AudienceScan,
    O: Outbox,
{
    let total_segments = u32::try_from(broadcast.segments.len()).unwrap_or(1);
    let cursor = ScanCursor { segment: job.segment, total_segments, start: job.start.clone() };
    let page = deps.recipients.page(&cursor, broadcast.page_items()).await?;

    let mut counts = Counts { scanned: page.recipients.len() as u64, ..Counts::default() };
    let mut notifications = Vec::new();
    for recipient in &page.recipients {
        let verdict = broadcast.audience.judge(recipient, now);
        let (Some(id), AudienceVerdict::Match { channels }) = (&recipient.id, verdict.clone()) else {
            let reason = match verdict {
                AudienceVerdict::Miss(why) => why.as_str(),
                AudienceVerdict::Match { .. } => "unreadable",
            };
            *counts.missed.entry(reason.to_owned()).or_default() += 1;
            continue;
        };
        match broadcast.notification(id, recipient.timezone, channels, now).map(|n| serde_json::to_string(&n)) {
            Some(Ok(body)) => notifications.push(body),
            _ => *counts.missed.entry("unreadable".to_owned()).or_default() += 1,
        }
    }
    counts.matched = notifications.len() as u64;

    if !notifications.is_empty() {
        let count = notifications.len() as u64;
        let released = deps.broadcasts.take_positions(&job.campaign, count).await?;
        let delays = broadcast.delays(released, count, now);
        send(deps, Destination::Ingest, notifications.into_iter().zip(delays).collect()).await?;
        counts.queued = count;
    }
    if let Some(next) = &page.next {
        let next_job = PageJob { page: job.page + 1, start: Some(next.clone()), ..job.clone() };
        let body = serde_json::to_string(&next_job).map_err(|e| PortError::Unknown(e.into()))?;
        send(deps, Destination::Broadcast, vec![(body, 0)]).await?;
    }
    // Last: a copy of this job that comes back after a failure above reads the page again
    // (its people are admitted once), and only the first commit counts it.
    match deps.broadcasts.commit_page(job, page.next.as_deref(), &counts).await? {
        Some(after) => {
            tracing::info!(
                campaign = %job.campaign, segment = job.segment, page = job.page,
                scanned = counts.scanned, matched = counts.matched, "page committed"
            );
            if after.all_read() {
                deps.broadcasts.finish(&job.campaign).await?;
                tracing::info!(campaign = %job.campaign, scanned = after.counts.scanned, queued = after.counts.queued, "broadcast fully read");
            }
        }
        // Another copy committed it, or this commit's own first attempt did (applied, then
        // answered with an error and retried by the SDK): either way, if that was the last
        // page, the broadcast is finished here, or nobody would mark it done.
        None => {
            tracing::info!(campaign = %job.campaign, segment = job.segment, page = job.page, "page already committed");
            if deps.broadcasts.broadcast(&job.campaign).await?.is_some_and(|b| b.all_read()) {
                deps.broadcasts.finish(&job.campaign).await?;
            }
        }
    }
    Ok(())
}

/// Sends `(body, delay)` messages to `to`; any message refused fails the page, which comes back.
async fn send<B, S, O: Outbox>(deps: &Deps<B, S, O>, to: Destination, messages: Vec<(String, u32)>) -> PortResult<()> {
    let outgoing = messages
        .into_iter()
        .enumerate()
        .map(|(i, (body, delay_secs))| Outgoing { id: i.to_string(), body, delay_secs })
        .collect();
    let refused = deps.outbox.send(to, outgoing).await?;
    if refused.is_empty() {
        Ok(())
    } else {
        Err(PortError::Transient(format!("{} message(s) to {to:?} were not accepted", refused.len())))
    }
}
