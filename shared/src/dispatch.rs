//! The flow every dispatch function shares: claim the send in the ledger, render
//! and deliver on the channel, record the provider's id, or fall back to the next
//! channel. Each channel supplies only [`Deliver`].

use crate::contract::Mode;
use crate::domain::Channel;
use crate::domain::jobs::DispatchJob;
use crate::domain::ledger::{Reason, Status};
use crate::domain::template::{CompiledTemplate, TemplateError};
use crate::lambda::{
    Context, LambdaEvent, Outcome, Record, SqsBatchResponse, SqsEvent, attempt_deadline, batch_response,
    for_each_record,
};
use crate::metrics;
use crate::ports::*;
use chrono::{DateTime, TimeDelta, Utc};
use std::future::Future;

/// What every dispatch function reads from its environment: the ledger, the templates and
/// caps tables, its own queue (`HERALD_<CHANNEL>_QUEUE_URL`, for retry back-off) and the
/// eligibility queue (for a fallback). A channel's crate adds only its own settings.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    pub channel: Channel,
    pub ledger: crate::config::LedgerConfig,
    pub templates_table: String,
    pub caps_table: String,
    /// The function's own queue.
    pub queue_url: String,
    pub retry: RetryPolicy,
    pub eligibility_queue_url: String,
}

impl DispatchConfig {
    pub fn from_lookup(get: crate::config::Lookup<'_>, channel: Channel) -> Result<Self, crate::config::ConfigError> {
        use crate::config::{parsed, required};
        let queue_var = format!("HERALD_{}_QUEUE_URL", channel.as_str().to_ascii_uppercase());
        Ok(Self {
            channel,
            ledger: crate::config::LedgerConfig::from_lookup(get)?,
            templates_table: required(get, "HERALD_TEMPLATES_TABLE")?,
            caps_table: required(get, "HERALD_CAPS_TABLE")?,
            queue_url: required(get, &queue_var)?,
            retry: RetryPolicy {
                base_secs: parsed(get, "HERALD_RETRY_BASE_SECS", RetryPolicy::default().base_secs)?,
                max_receives: parsed(get, "HERALD_MAX_RECEIVES", RetryPolicy::default().max_receives)?,
            },
            eligibility_queue_url: required(get, "HERALD_ELIGIBILITY_QUEUE_URL")?,
        })
    }
}

/// The result of one channel's delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Sent {
        provider_id: String,
        /// SMS segments billed, recorded in the ledger.
        sms_segments: Option<u32>,
    },
    /// Failed for good on this channel (dead token, refused address, opted-out number).
    Failed { reason: Reason, detail: String },
    /// Throttled or transient: try again later.
    Retry(String),
    /// Nothing to do, and nothing done: delivered already (a copy of the job), or the message
    /// went another way. Only a channel that [`Deliver::records_delivery`] says it.
    Already(String),
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
    /// Whether the provider's receipts name the Herald message and record the provider's
    /// id in the ledger (SES events carry the message id tag). Dispatch then does not
    /// write the send down a second time (one write unit less per message), and its claim
    /// holds for [`RECEIPT_WAIT`], so that a late copy of the job waits for the receipt
    /// rather than sending again.
    fn receipts_record_send(&self) -> bool {
        false
    }

    /// Whether [`Deliver::deliver`] records the delivery in the ledger itself: a channel whose
    /// delivery is a write to a store of Herald's own, idempotent per message, with no
    /// provider that could send twice (the in-app inbox). Dispatch then takes no claim and
    /// records no send: the channel records the message `delivered` with
    /// [`Ledger::record_delivery`] and writes its store, two writes in all. `deliver` must
    /// return `Failed` only before it recorded anything, so that a fallback finds the
    /// message free, and `Already` when the ledger shows there is nothing to do.
    fn records_delivery(&self) -> bool {
        false
    }

    fn deliver(&self, job: &DispatchJob, template: &CompiledTemplate) -> impl Future<Output = Delivery> + Send;
}

pub struct DispatchDeps<L, T, O, C> {
    pub ledger: L,
    pub templates: T,
    pub outbox: O,
    /// To give back the cap slots of a message that ends up not sent.
    pub caps: C,
    pub retry: RetryPolicy,
}

/// Back-off for throttled and transient failures, through the record's visibility timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first wait; each later receive doubles it, up to 15 minutes.
    pub base_secs: u32,
    /// The queue's `maxReceiveCount`: the receive after which SQS moves the record to the dead-letter queue.
    pub max_receives: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { base_secs: 30, max_receives: 5 }
    }
}

impl RetryPolicy {
    pub fn backoff_secs(&self, receive_count: u32) -> u32 {
        let doublings = receive_count.saturating_sub(1).min(10);
        self.base_secs.saturating_mul(1 << doublings).min(900)
    }
}

/// How long a claim holds when receipts, not dispatch, record the send: longer than
/// the queue's visibility timeout (a copy redelivered after a lost delete comes back
/// within it) and than SES takes to report a delivery, a bounce or a delay.
pub const RECEIPT_WAIT: TimeDelta = TimeDelta::minutes(15);

/// How long a push that may fall back keeps its fallback for SNS's asynchronous
/// `DeliveryFailure` (the platform answers SNS within seconds; the event follows).
pub const PUSH_FAILURE_WAIT: TimeDelta = TimeDelta::hours(1);

/// Records in flight per batch; the event source's maximum concurrency bounds the
/// function as a whole, which is what keeps a team under its provider's send rate.
const CONCURRENCY: usize = 5;

/// SQS's longest visibility timeout, 12 hours.
const MAX_VISIBILITY_SECS: i64 = 43_200;

pub async fn handle<L, T, O, C, D>(
    deps: &DispatchDeps<L, T, O, C>,
    deliver: &D,
    event: LambdaEvent<SqsEvent>,
) -> SqsBatchResponse
where
    L: Ledger,
    T: TemplateStore,
    O: Outbox,
    C: CapCounter,
    D: Deliver,
{
    let ctx = event.context;
    let steps = for_each_record(event.payload, CONCURRENCY, |record| process(deps, deliver, &ctx, record)).await;
    // The batch's fallbacks go back to eligibility together, in batches of ten.
    let mut handoffs = Vec::new();
    let mut outcomes: Vec<(String, Outcome)> = Vec::with_capacity(steps.len());
    for (position, (id, step)) in steps.into_iter().enumerate() {
        let outcome = match step {
            Step::Done => Outcome::Done,
            Step::Retry(why) => Outcome::Retry(why),
            Step::FallBack(body) => {
                handoffs.push(Handoff { record: position, to: Destination::Eligibility, body, delay_secs: 0 });
                Outcome::Done
            }
        };
        outcomes.push((id, outcome));
    }
    for position in hand_off(&deps.outbox, handoffs).await {
        if let Some((_, outcome)) = outcomes.get_mut(position) {
            // Back after the queue's visibility timeout: the channel that failed is
            // claimed and tried again, and falls back again if it still fails.
            *outcome = Outcome::Retry("fallback enqueue failed".into());
        }
    }
    batch_response(outcomes.iter().map(|(id, o)| (id.as_str(), o)))
}

/// How one record's dispatch ended.
enum Step {
    Done,
    Retry(String),
    /// Failed on its channel: this eligibility job tries the next one.
    FallBack(String),
}

async fn process<L, T, O, C, D>(deps: &DispatchDeps<L, T, O, C>, deliver: &D, ctx: &Context, record: Record) -> Step
where
    L: Ledger,
    T: TemplateStore,
    O: Outbox,
    C: CapCounter,
    D: Deliver,
{
    let now = Utc::now();
    let job: DispatchJob = match serde_json::from_str(&record.body) {
        Ok(job) => job,
        Err(e) => {
            // serde's own text quotes values (an address, a number): never logged or stored.
            let detail = crate::contract::json_error_detail(&e, None);
            tracing::error!(record = %record.id, error = %detail, "dispatch job does not parse");
            let rejection = RejectionRecord::unreadable(&record.id, "invalid_job", detail, record.body.len(), now);
            return match deps.ledger.reject(rejection).await {
                Err(e) if e.is_retryable() => Step::Retry(e.to_string()),
                _ => Step::Done,
            };
        }
    };
    match dispatch(deps, deliver, ctx, &job, &record, now).await {
        Ok(outcome) => outcome,
        Err(e) => back_off(deps, &job, &record, e.to_string(), now).await,
    }
}

/// Back to the queue after the retry back-off (the provider asked to slow down, or
/// was unavailable).
async fn back_off<L: Ledger, T, O: Outbox, C>(
    deps: &DispatchDeps<L, T, O, C>,
    job: &DispatchJob,
    record: &Record,
    why: String,
    now: DateTime<Utc>,
) -> Step {
    let secs = deps.retry.backoff_secs(record.receive_count);
    retry_later(deps, job, record, secs, &why, now).await;
    Step::Retry(why)
}

/// Makes the record visible again in `secs` and, on the last receive before the
/// dead-letter queue, says why in the ledger.
async fn retry_later<L: Ledger, T, O: Outbox, C>(
    deps: &DispatchDeps<L, T, O, C>,
    job: &DispatchJob,
    record: &Record,
    secs: u32,
    why: &str,
    now: DateTime<Utc>,
) {
    if !record.receipt_handle.is_empty()
        && let Err(e) = deps.outbox.retry_later(Destination::Channel(job.channel()), &record.receipt_handle, secs).await
    {
        tracing::warn!(message_id = %job.message_id, error = %e, "could not set the retry back-off");
    }
    if record.receive_count >= deps.retry.max_receives {
        let detail =
            format!("gave up after {} attempts ({why}); the job is in the dead-letter queue", record.receive_count);
        tracing::error!(message_id = %job.message_id, channel = %job.channel(), "{detail}");
        let note =
            Transition::new(Status::Failed, now).reason(Reason::RetriesExhausted).channel(job.channel()).detail(detail);
        if let Err(e) = deps.ledger.note(&job.message_id, note).await {
            tracing::warn!(message_id = %job.message_id, error = %e, "could not note the exhausted retries");
        }
    }
}

/// A ledger write of this attempt's (its claim, or letting it go), tried again while the
/// invocation has time. Either one left undone holds the message until the claim runs
/// out (15 minutes for an email): a claim applied whose answer never came back (the
/// SDK's retries met an outage) is found again by the same token, and a release that
/// failed is made. A short outage of the ledger is waited out here rather than turned
/// into that delay.
async fn persist<T, F, Fut>(ctx: &Context, what: &str, id: &crate::domain::MessageId, mut call: F) -> PortResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = PortResult<T>>,
{
    // What one more call may take through an outage (the SDK's own three attempts), kept
    // free before the deadline so the batch still answers in time.
    const CALL: std::time::Duration = std::time::Duration::from_millis(2500);
    let mut wait = std::time::Duration::from_millis(500);
    loop {
        match call().await {
            Err(e) if e.is_retryable() && time_left(ctx) > CALL => {
                tracing::warn!(message_id = %id, error = %e, "{what} failed: trying again");
                tokio::time::sleep(wait.min(time_left(ctx).saturating_sub(CALL))).await;
                wait *= 2;
            }
            result => return result,
        }
    }
}

/// What is left of the invocation's time (none when the context has no deadline).
fn time_left(ctx: &Context) -> std::time::Duration {
    let deadline = i64::try_from(ctx.deadline).unwrap_or(0);
    std::time::Duration::from_millis(u64::try_from(deadline - Utc::now().timestamp_millis()).unwrap_or(0))
}

/// The message will not be sent on this channel: its cap slots go back.
async fn give_back<C: CapCounter>(caps: &C, job: &DispatchJob) {
    for slot in &job.slots {
        if let Err(e) = caps.give_back(slot, &job.message_id).await {
            tracing::warn!(message_id = %job.message_id, error = %e, "could not give a cap slot back");
        }
    }
}

async fn finish<L: Ledger, C: CapCounter>(
    deps: &DispatchDeps<L, impl Sized, impl Sized, C>,
    job: &DispatchJob,
    status: Status,
    reason: Reason,
    detail: &str,
    now: DateTime<Utc>,
) -> PortResult<Step> {
    tracing::info!(message_id = %job.message_id, channel = %job.channel(), status = %status, reason = %reason, "not sent");
    metrics::count(
        "Notifications",
        &[("Stage", "dispatch"), ("Outcome", status.as_str()), ("Reason", reason.as_str())],
    );
    let t = Transition::new(status, now).reason(reason).channel(job.channel()).detail(detail);
    deps.ledger.transition(&job.message_id, t).await?;
    give_back(&deps.caps, job).await;
    Ok(Step::Done)
}

async fn dispatch<L, T, O, C, D>(
    deps: &DispatchDeps<L, T, O, C>,
    deliver: &D,
    ctx: &Context,
    job: &DispatchJob,
    record: &Record,
    now: DateTime<Utc>,
) -> PortResult<Step>
where
    L: Ledger,
    T: TemplateStore,
    O: Outbox,
    C: CapCounter,
    D: Deliver,
{
    let id = &job.message_id;
    let channel = job.channel();
    if job.request.expires_at.is_some_and(|e| e <= now) {
        return finish(deps, job, Status::Expired, Reason::Expired, "expired before it could be sent", now).await;
    }
    let Some(template) = deps.templates.get(&job.request.template).await? else {
        let detail = format!("no template named {}", job.request.template);
        return finish(deps, job, Status::Failed, Reason::UnknownTemplate, &detail, now).await;
    };
    if deliver.records_delivery() {
        return deliver_recorded(deps, deliver, job, record, &template, now).await;
    }
    // Names this attempt: a retried write of its own claim recognizes it; another copy of
    // the job, or a redelivery after this attempt died, does not.
    let token = crate::attempt::token();
    let per_channel = job.request.mode == Mode::All;
    // Receipts record an email's send (SES's events name the message), except in `all`
    // mode, where each channel's claim ends only with that channel's own provider id.
    let record_send = !deliver.receipts_record_send() || per_channel;
    let claim = Claim {
        id,
        token: &token,
        channel,
        per_channel,
        variant: job.variant.as_deref(),
        template_version: template.doc.version,
        at: now,
        // Until receipts record the send, the claim must outlast SES's report; a send this
        // attempt records itself needs the claim only while the attempt may run.
        until: if record_send {
            attempt_deadline(ctx, now)
        } else {
            attempt_deadline(ctx, now).max(now + RECEIPT_WAIT)
        },
    };
    match persist(ctx, "claim", id, || deps.ledger.claim_send(claim)).await? {
        Claimed::Claimed => {}
        Claimed::Done => {
            tracing::info!(message_id = %id, channel = %channel, outcome = "duplicate", "already sent: dropped");
            return Ok(Step::Done);
        }
        Claimed::Held { until } => {
            // Another attempt is sending, has sent (its receipt not in yet), or died:
            // look again once its claim has run out.
            tracing::info!(message_id = %id, channel = %channel, until = %until, "claimed by another attempt: later");
            let secs = (until - now).num_seconds().clamp(0, MAX_VISIBILITY_SECS) as u32 + 1;
            let why = format!("claimed by another attempt until {until}");
            retry_later(deps, job, record, secs, &why, now).await;
            return Ok(Step::Retry(why));
        }
        Claimed::Unknown => {
            tracing::warn!(message_id = %id, "not in the ledger (expired?): dropped");
            return Ok(Step::Done);
        }
    }
    let labels = [("Stage", "dispatch"), ("Channel", channel.as_str()), ("Template", job.request.template.as_str())];
    match deliver.deliver(job, &template).await {
        Delivery::Sent { provider_id, sms_segments } => {
            tracing::info!(message_id = %id, channel = %channel, template_version = template.doc.version, "sent");
            metrics::count("Sent", &labels);
            // The send happened: record it while the invocation has time (unrecorded, the claim
            // runs out and a copy of the job sends again), and never fail the record for it.
            if record_send
                && let Err(e) = persist(ctx, "recording the send", id, || {
                    deps.ledger.record_sent(id, channel, &provider_id, sms_segments)
                })
                .await
            {
                tracing::error!(message_id = %id, error = %e, "sent, but the provider id was not recorded");
            }
            // SNS took the push; the platform may still refuse the token, which SNS reports
            // later (DeliveryFailure): keep the fallback for receipts until then.
            if channel == Channel::Push
                && job.may_fall_back
                && let Err(e) =
                    deps.ledger.remember_fallback(&provider_id, &job.fallback(now), now + PUSH_FAILURE_WAIT).await
            {
                tracing::warn!(message_id = %id, error = %e, "the fallback was not kept: a late push failure will not fall back");
            }
            Ok(Step::Done)
        }
        Delivery::Retry(why) => {
            metrics::count("Retried", &labels);
            persist(ctx, "letting the claim go", id, || deps.ledger.release_send(&claim, None)).await?;
            Ok(back_off(deps, job, record, why, now).await)
        }
        Delivery::Failed { reason, detail } if job.may_fall_back => {
            tracing::info!(message_id = %id, channel = %channel, reason = %reason, "channel failed: falling back");
            metrics::count("FellBack", &labels);
            // Release first, so the next channel's claim finds the message free; the
            // next channel takes its own cap slots.
            let note = Transition::new(Status::Failed, now).reason(reason).channel(channel).detail(detail);
            persist(ctx, "letting the claim go", id, || deps.ledger.release_send(&claim, Some(note.clone()))).await?;
            give_back(&deps.caps, job).await;
            let body = serde_json::to_string(&job.fallback(now)).map_err(|e| PortError::Unknown(e.into()))?;
            Ok(Step::FallBack(body))
        }
        Delivery::Failed { reason, detail } => finish(deps, job, Status::Failed, reason, &detail, now).await,
        Delivery::Already(why) => {
            // Only a channel that records its own delivery says this; nothing was claimed for it.
            tracing::warn!(message_id = %id, channel = %channel, why, "nothing to deliver");
            persist(ctx, "letting the claim go", id, || deps.ledger.release_send(&claim, None)).await?;
            Ok(Step::Done)
        }
    }
}

/// [`dispatch`] for a channel that [`Deliver::records_delivery`]: no claim (its store is
/// idempotent per message, and its `record_delivery` is the guard against a second
/// delivery), no record of the send.
async fn deliver_recorded<L, T, O, C, D>(
    deps: &DispatchDeps<L, T, O, C>,
    deliver: &D,
    job: &DispatchJob,
    record: &Record,
    template: &CompiledTemplate,
    now: DateTime<Utc>,
) -> PortResult<Step>
where
    L: Ledger,
    O: Outbox,
    C: CapCounter,
    D: Deliver,
{
    let (id, channel) = (&job.message_id, job.channel());
    let labels = [("Stage", "dispatch"), ("Channel", channel.as_str()), ("Template", job.request.template.as_str())];
    match deliver.deliver(job, template).await {
        Delivery::Sent { .. } => {
            tracing::info!(message_id = %id, channel = %channel, template_version = template.doc.version, "delivered");
            metrics::count("Sent", &labels);
            Ok(Step::Done)
        }
        Delivery::Already(why) => {
            tracing::info!(message_id = %id, channel = %channel, outcome = "duplicate", why, "nothing to deliver: dropped");
            Ok(Step::Done)
        }
        Delivery::Retry(why) => {
            metrics::count("Retried", &labels);
            Ok(back_off(deps, job, record, why, now).await)
        }
        Delivery::Failed { reason, detail } if job.may_fall_back => {
            tracing::info!(message_id = %id, channel = %channel, reason = %reason, "channel failed: falling back");
            metrics::count("FellBack", &labels);
            // Nothing was recorded: the failure goes in the history, the next channel claims as usual.
            let note = Transition::new(Status::Failed, now).reason(reason).channel(channel).detail(detail);
            deps.ledger.note(id, note).await?;
            give_back(&deps.caps, job).await;
            let body = serde_json::to_string(&job.fallback(now)).map_err(|e| PortError::Unknown(e.into()))?;
            Ok(Step::FallBack(body))
        }
        Delivery::Failed { reason, detail } => finish(deps, job, Status::Failed, reason, &detail, now).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_fifteen_minutes() {
        let p = RetryPolicy { base_secs: 30, max_receives: 5 };
        let waits: Vec<u32> = (1..=7).map(|n| p.backoff_secs(n)).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 900, 900]);
        assert_eq!(RetryPolicy { base_secs: 0, max_receives: 5 }.backoff_secs(3), 0);
    }
}
