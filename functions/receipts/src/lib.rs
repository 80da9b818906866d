//! Receipts: what providers report back changes what Herald does next.
//!
//! - SES events (through SNS into SQS) move the message's ledger status forward
//!   and suppress addresses that bounced hard or complained.
//! - SNS mobile push events (endpoint disabled or deleted, delivery failures that
//!   condemn the token) remove the token from whoever registered it; a push that
//!   failed that way falls back to its next channel when dispatch kept a fallback.
//! - Custom providers' reports, relayed by the webhook function once their HMAC and
//!   channels are checked, do both for the channels those providers carry: each
//!   event moves a message only if it was sent on that event's channel (a condition
//!   of the ledger write).
//!
//! Every change is safe to apply twice and in any order: the ledger only moves a
//! status forward, suppression is a put, removing a removed token does nothing.

use chrono::{DateTime, Utc};
use herald::config::{ConfigError, LedgerConfig, Lookup, required};
use herald::domain::contact::redact_contacts;
use herald::domain::ledger::{Reason, Status};
use herald::domain::receipts::{LedgerChange, PushAction, PushEvent, Receipt, ReceiptAction};
use herald::domain::{Channel, RecipientId};
use herald::lambda::{LambdaEvent, Outcome, Record, SqsBatchResponse, SqsEvent, batch_response, for_each_record};
use herald::metrics;
use herald::ports::*;

#[cfg(feature = "aws")]
pub mod aws;

#[derive(Debug, Clone)]
pub struct Config {
    pub ledger: LedgerConfig,
    pub suppression_table: String,
    pub recipients_table: String,
    /// Where a push that failed late falls back to.
    pub eligibility_queue_url: String,
}

impl Config {
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            ledger: LedgerConfig::from_lookup(get)?,
            suppression_table: required(get, "HERALD_SUPPRESSION_TABLE")?,
            recipients_table: required(get, "HERALD_RECIPIENTS_TABLE")?,
            eligibility_queue_url: required(get, "HERALD_ELIGIBILITY_QUEUE_URL")?,
        })
    }
}

pub struct Deps<L, S, D, O> {
    pub ledger: L,
    pub suppression: S,
    /// The recipients table: devices by endpoint, and each person's last engagement.
    pub devices: D,
    pub outbox: O,
}

const CONCURRENCY: usize = 10;

pub async fn handler<L, S, D, O>(
    deps: &Deps<L, S, D, O>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, herald::lambda::Error>
where
    L: Ledger,
    S: SuppressionList,
    D: DeviceRegistry + RecipientStore,
    O: Outbox,
{
    let now = Utc::now();
    let outcomes = for_each_record(event.payload, CONCURRENCY, |record| process(deps, record, now)).await;
    Ok(batch_response(outcomes.iter().map(|(id, o)| (id.as_str(), o))))
}

async fn process<L, S, D, O>(deps: &Deps<L, S, D, O>, record: Record, now: DateTime<Utc>) -> Outcome
where
    L: Ledger,
    S: SuppressionList,
    D: DeviceRegistry + RecipientStore,
    O: Outbox,
{
    let receipt = match Receipt::parse(&record.body) {
        Ok(r) => r,
        Err(e) => return reject(deps, &record, e.code, e.detail, now).await,
    };
    let result = match receipt {
        Receipt::Ses(event) => apply(deps, event.action(), now).await,
        Receipt::Push(event) => push_event(deps, &event, now).await,
        Receipt::Provider(report) => {
            let mut result = Ok(());
            // In order: a retry re-applies the earlier events, which changes nothing.
            for event in &report.events {
                result = apply(deps, event.action(), now).await;
                if result.is_err() {
                    break;
                }
            }
            result
        }
    };
    match result {
        Ok(()) => Outcome::Done,
        Err(e) if e.is_retryable() => Outcome::Retry(e.to_string()),
        Err(e) => reject(deps, &record, "store_rejected", e.to_string(), now).await,
    }
}

async fn apply<L, S, D, O>(deps: &Deps<L, S, D, O>, action: ReceiptAction, now: DateTime<Utc>) -> PortResult<()>
where
    L: Ledger,
    S: SuppressionList,
    D: RecipientStore,
{
    // Suppress first: it matters even when the message is unknown to the ledger.
    for s in &action.suppress {
        deps.suppression.suppress(s.channel, &s.hash, s.cause, now).await?;
        tracing::info!(event = %action.event, channel = %s.channel, cause = s.cause.as_str(), "contact suppressed");
        metrics::count("Suppressions", &[("Channel", s.channel.as_str()), ("Cause", s.cause.as_str())]);
    }
    let Some(id) = &action.message_id else {
        tracing::info!(event = %action.event, "event without a Herald message id: suppression only");
        return Ok(());
    };
    match action.change.clone() {
        LedgerChange::None => Ok(()),
        LedgerChange::Advance { status, reason, detail } => {
            let mut t = Transition::new(status, now).channel(action.channel);
            t.reason = reason;
            t.provider_id = action.provider_id.clone();
            t.on_channels = action.on_channels.clone();
            if !detail.is_empty() {
                t = t.detail(detail);
            }
            let (applied, facts) = deps.ledger.advance(id, t).await?;
            if let (Applied::Applied, Some(facts)) = (applied, &facts) {
                metrics::transition(
                    status.as_str(),
                    action.channel.as_str(),
                    &facts.template,
                    facts.campaign.as_deref(),
                );
            }
            tracing::info!(message_id = %id, event = %action.event, status = %status, applied = ?applied, "receipt");
            // An open or a click: the person's last engagement on that channel (segments
            // read it). After the ledger write, whose answer names the person: a retry of
            // this record finds the message `Stale` and still records it.
            let recipient = facts.as_ref().and_then(|f| f.recipient.as_deref()).and_then(|r| RecipientId::new(r).ok());
            if let (Some(channel), Some(recipient)) =
                (action.engagement(facts.as_ref().and_then(|f| f.channel.as_deref())), recipient)
            {
                deps.devices.note_engagement(&recipient, channel, now).await?;
            }
            Ok(())
        }
        LedgerChange::Note { status, detail } => {
            tracing::info!(message_id = %id, event = %action.event, "receipt noted");
            let mut t = Transition::new(status, now).channel(action.channel).detail(detail);
            // A delay or a soft bounce still says the provider took the message.
            t.provider_id = action.provider_id;
            deps.ledger.note(id, t).await
        }
    }
}

async fn push_event<L, S, D, O>(deps: &Deps<L, S, D, O>, event: &PushEvent, now: DateTime<Utc>) -> PortResult<()>
where
    L: Ledger,
    D: DeviceRegistry,
    O: Outbox,
{
    remove_dead_token(deps, event).await?;
    fall_back(deps, event, now).await
}

/// A push SNS took and the platform then refused (its token dead): when dispatch
/// kept the message's fallback, the message is reopened for its next channel and
/// goes back to eligibility, as a push refused at once does.
async fn fall_back<L, S, D, O>(deps: &Deps<L, S, D, O>, event: &PushEvent, now: DateTime<Utc>) -> PortResult<()>
where
    L: Ledger,
    O: Outbox,
{
    let Some(sns_id) = event.failed_send() else { return Ok(()) };
    let detail = format!("SNS DeliveryFailure: {}", event.failure_type.as_deref().unwrap_or("unknown"));
    let note =
        Transition::new(Status::Failed, now).reason(Reason::EndpointDisabled).channel(Channel::Push).detail(detail);
    let Some(job) = deps.ledger.take_fallback(sns_id, note).await? else {
        tracing::info!(provider_id = sns_id, "push failed late: no fallback kept (or the message moved on)");
        return Ok(());
    };
    let body = serde_json::to_string(&job).map_err(|e| PortError::Unknown(e.into()))?;
    let refused = deps
        .outbox
        .send(Destination::Eligibility, vec![Outgoing { id: sns_id.to_owned(), body, delay_secs: 0 }])
        .await?;
    if !refused.is_empty() {
        return Err(PortError::Transient("the fallback was not accepted by the eligibility queue".into()));
    }
    tracing::info!(message_id = %job.message_id, provider_id = sns_id, "push failed late: falling back");
    metrics::count("FellBack", &[("Stage", "receipts"), ("Channel", Channel::Push.as_str())]);
    Ok(())
}

async fn remove_dead_token<L, S, D, O>(deps: &Deps<L, S, D, O>, event: &PushEvent) -> PortResult<()>
where
    D: DeviceRegistry,
{
    let (endpoint_arn, cause) = match event.action() {
        PushAction::RemoveDevice { endpoint_arn, cause } => (endpoint_arn, cause),
        PushAction::Ignore(why) => {
            tracing::info!(event = %event.event_type, why, "push event: nothing to do");
            return Ok(());
        }
    };
    match deps.devices.remove_endpoint(&endpoint_arn).await? {
        Some((recipient, device)) => {
            tracing::info!(recipient = %recipient, token = %device.token.handle(), cause = cause.as_str(), "push token removed");
            metrics::count("PushTokensRemoved", &[("Platform", device.platform.as_str()), ("Cause", cause.as_str())]);
        }
        None => tracing::info!(event = %event.event_type, cause = cause.as_str(), "no recipient holds this endpoint"),
    }
    Ok(())
}

async fn reject<L: Ledger, S, D, O>(
    deps: &Deps<L, S, D, O>,
    record: &Record,
    code: &str,
    detail: String,
    now: DateTime<Utc>,
) -> Outcome {
    // Parser errors quote the body: no address or number goes to the log or the ledger.
    let detail = redact_contacts(&detail);
    tracing::warn!(record = %record.id, code, detail = %detail, "receipt rejected");
    let rejection = RejectionRecord::unreadable(&record.id, code, detail, record.body.len(), now);
    match deps.ledger.reject(rejection).await {
        Err(e) if e.is_retryable() => Outcome::Retry(e.to_string()),
        _ => Outcome::Done,
    }
}
