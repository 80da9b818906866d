//! The flow every dispatch function shares: claim the send in the ledger, render
//! and deliver on the channel, record the provider's id, or fall back to the next
//! channel. Each channel supplies only [`Deliver`].

use crate::domain::jobs::DispatchJob;
use crate::domain::ledger::{Reason, Status};
use crate::domain::template::{CompiledTemplate, TemplateError};
use crate::lambda::{
    Context, LambdaEvent, Outcome, Record, SqsBatchResponse, SqsEvent, attempt_deadline, batch_response,
    for_each_record,
};
use crate::ports::*;
use chrono::{DateTime, Utc};
use std::future::Future;

/// The result of one channel's delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Sent {
        provider_id: String,
    },
    /// Failed for good on this channel (dead token, refused address, opted-out number).
    Failed {
        reason: Reason,
        detail: String,
    },
    /// Throttled or transient: try again later.
    Retry(String),
}

impl Delivery {
    /// Classifies a provider error: permanent ones fail the channel, others retry.
    pub fn from_error(err: PortError) -> Self {
        match err {
            PortError::Permanent { code, message } => {
                Delivery::Failed { reason: Reason::ProviderRejected, detail: format!("{code}: {message}") }
            }
            other => Delivery::Retry(other.to_string()),
        }
    }

    pub fn from_render(err: TemplateError) -> Self {
        Delivery::Failed { reason: Reason::RenderFailed, detail: err.to_string() }
    }
}

/// One channel's delivery: render the template for the job and call the provider.
pub trait Deliver: Send + Sync {
    fn deliver(&self, job: &DispatchJob, template: &CompiledTemplate) -> impl Future<Output = Delivery> + Send;
}

pub struct DispatchDeps<L, T, O> {
    pub ledger: L,
    pub templates: T,
    pub outbox: O,
}

/// Records in flight per batch; the event source's maximum concurrency bounds the
/// function as a whole, which is what keeps a team under its provider's send rate.
const CONCURRENCY: usize = 5;

pub async fn handle<L, T, O, D>(
    deps: &DispatchDeps<L, T, O>,
    deliver: &D,
    event: LambdaEvent<SqsEvent>,
) -> SqsBatchResponse
where
    L: Ledger,
    T: TemplateStore,
    O: Outbox,
    D: Deliver,
{
    let ctx = event.context;
    let outcomes = for_each_record(event.payload, CONCURRENCY, |record| process(deps, deliver, &ctx, record)).await;
    batch_response(outcomes.iter().map(|(id, o)| (id.as_str(), o)))
}

async fn process<L, T, O, D>(deps: &DispatchDeps<L, T, O>, deliver: &D, ctx: &Context, record: Record) -> Outcome
where
    L: Ledger,
    T: TemplateStore,
    O: Outbox,
    D: Deliver,
{
    let now = Utc::now();
    let job: DispatchJob = match serde_json::from_str(&record.body) {
        Ok(job) => job,
        Err(e) => {
            tracing::error!(record = %record.id, error = %e, "dispatch job does not parse");
            let rejection = RejectionRecord {
                source_id: record.id.clone(),
                code: "invalid_job".into(),
                detail: e.to_string(),
                idempotency_key: None,
                body_bytes: record.body.len(),
                at: now,
                expires_at: now + chrono::TimeDelta::days(30),
            };
            return match deps.ledger.reject(rejection).await {
                Err(e) if e.is_retryable() => Outcome::Retry(e.to_string()),
                _ => Outcome::Done,
            };
        }
    };
    match dispatch(deps, deliver, ctx, &job, now).await {
        Ok(outcome) => outcome,
        Err(e) => Outcome::Retry(e.to_string()),
    }
}

async fn finish<L: Ledger>(
    ledger: &L,
    job: &DispatchJob,
    status: Status,
    reason: Reason,
    detail: &str,
    now: DateTime<Utc>,
) -> PortResult<Outcome> {
    tracing::info!(message_id = %job.message_id, channel = %job.channel(), status = %status, reason = %reason, "not sent");
    let t = Transition::new(status, now).reason(reason).channel(job.channel()).detail(detail);
    ledger.transition(&job.message_id, t).await?;
    Ok(Outcome::Done)
}

async fn dispatch<L, T, O, D>(
    deps: &DispatchDeps<L, T, O>,
    deliver: &D,
    ctx: &Context,
    job: &DispatchJob,
    now: DateTime<Utc>,
) -> PortResult<Outcome>
where
    L: Ledger,
    T: TemplateStore,
    O: Outbox,
    D: Deliver,
{
    let id = &job.message_id;
    let channel = job.channel();
    if job.request.expires_at.is_some_and(|e| e <= now) {
        return finish(&deps.ledger, job, Status::Expired, Reason::Expired, "expired before it could be sent", now)
            .await;
    }
    let Some(template) = deps.templates.get(&job.request.template).await? else {
        let detail = format!("no template named {}", job.request.template);
        return finish(&deps.ledger, job, Status::Failed, Reason::UnknownTemplate, &detail, now).await;
    };
    match deps.ledger.claim_send(id, channel, now, attempt_deadline(ctx, now)).await? {
        Applied::Applied => {}
        Applied::Stale => {
            tracing::info!(message_id = %id, channel = %channel, outcome = "duplicate", "already sent or being sent: dropped");
            return Ok(Outcome::Done);
        }
        Applied::Unknown => {
            tracing::warn!(message_id = %id, "not in the ledger (expired?): dropped");
            return Ok(Outcome::Done);
        }
    }
    match deliver.deliver(job, &template).await {
        Delivery::Sent { provider_id } => {
            tracing::info!(message_id = %id, channel = %channel, template_version = template.doc.version, "sent");
            // The send happened: a failure to record its id must not make a retry send again.
            if let Err(e) = deps.ledger.record_sent(id, &provider_id, template.doc.version).await {
                tracing::error!(message_id = %id, error = %e, "sent, but the provider id was not recorded");
            }
            Ok(Outcome::Done)
        }
        Delivery::Retry(why) => {
            deps.ledger.release_send(id, None).await?;
            Ok(Outcome::Retry(why))
        }
        Delivery::Failed { reason, detail } if job.may_fall_back => {
            tracing::info!(message_id = %id, channel = %channel, reason = %reason, "channel failed: falling back");
            // Release first, so the next channel's claim finds the message free.
            let note = Transition::new(Status::Failed, now).reason(reason).channel(channel).detail(detail);
            deps.ledger.release_send(id, Some(note)).await?;
            let body = serde_json::to_string(&job.fallback()).map_err(|e| PortError::Unknown(e.into()))?;
            let failed = deps
                .outbox
                .send(Destination::Eligibility, vec![Outgoing { id: "0".into(), body, delay_secs: 0 }])
                .await?;
            if failed.is_empty() { Ok(Outcome::Done) } else { Ok(Outcome::Retry("fallback enqueue failed".into())) }
        }
        Delivery::Failed { reason, detail } => finish(&deps.ledger, job, Status::Failed, reason, &detail, now).await,
    }
}
