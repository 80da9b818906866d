//! Receipts: SES events (through SNS into SQS) move the ledger forward and
//! suppress addresses that bounced hard or complained.
//!
//! Not built yet (issue 5): SNS mobile push events, HTTPS webhooks with
//! signature checks, one-click unsubscribe. Such messages are acknowledged and
//! logged as not handled.

use chrono::{DateTime, Utc};
use herald::config::{ConfigError, LedgerConfig, Lookup, required};
use herald::domain::Channel;
use herald::domain::receipts::{LedgerChange, SesEvent, SnsEnvelope};
use herald::lambda::{LambdaEvent, Outcome, Record, SqsBatchResponse, SqsEvent, batch_response, for_each_record};
use herald::ports::*;

#[cfg(feature = "aws")]
pub mod aws;

#[derive(Debug, Clone)]
pub struct Config {
    pub ledger: LedgerConfig,
    pub suppression_table: String,
}

impl Config {
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            ledger: LedgerConfig::from_lookup(get)?,
            suppression_table: required(get, "HERALD_SUPPRESSION_TABLE")?,
        })
    }
}

pub struct Deps<L, S> {
    pub ledger: L,
    pub suppression: S,
}

const CONCURRENCY: usize = 10;

pub async fn handler<L, S>(
    deps: &Deps<L, S>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, herald::lambda::Error>
where
    L: Ledger,
    S: SuppressionList,
{
    let now = Utc::now();
    let outcomes = for_each_record(event.payload, CONCURRENCY, |record| process(deps, record, now)).await;
    Ok(batch_response(outcomes.iter().map(|(id, o)| (id.as_str(), o))))
}

async fn process<L: Ledger, S: SuppressionList>(deps: &Deps<L, S>, record: Record, now: DateTime<Utc>) -> Outcome {
    let parsed = serde_json::from_str::<SnsEnvelope>(&record.body)
        .map_err(|e| format!("not an SNS notification: {e}"))
        .and_then(|env| {
            if env.kind != "Notification" {
                return Err(format!("SNS message of type {} is not a notification", env.kind));
            }
            Ok(env)
        });
    let envelope = match parsed {
        Ok(env) => env,
        Err(detail) => return reject(deps, &record, "invalid_event", detail, now).await,
    };
    let ses: SesEvent = match serde_json::from_str(&envelope.message) {
        Ok(e) => e,
        Err(e) => {
            let is_push_event = serde_json::from_str::<serde_json::Value>(&envelope.message)
                .is_ok_and(|v| v.get("EventType").is_some());
            if is_push_event {
                tracing::info!(record = %record.id, "SNS mobile push event: not handled yet (issue 5)");
                return Outcome::Done;
            }
            return reject(deps, &record, "invalid_event", format!("not an SES event: {e}"), now).await;
        }
    };
    match apply(deps, &ses, now).await {
        Ok(()) => Outcome::Done,
        Err(e) if e.is_retryable() => Outcome::Retry(e.to_string()),
        Err(e) => reject(deps, &record, "store_rejected", e.to_string(), now).await,
    }
}

async fn apply<L: Ledger, S: SuppressionList>(
    deps: &Deps<L, S>,
    event: &SesEvent,
    now: DateTime<Utc>,
) -> PortResult<()> {
    let action = event.action();
    // Suppress first: it matters even when the message is unknown to the ledger.
    for (hash, cause) in &action.suppress {
        deps.suppression.suppress(Channel::Email, hash, *cause, now).await?;
        tracing::info!(event = %action.event, cause = cause.as_str(), "address suppressed");
    }
    let Some(id) = &action.message_id else {
        tracing::info!(event = %action.event, "event without a Herald message id: suppression only");
        return Ok(());
    };
    match action.change {
        LedgerChange::None => Ok(()),
        LedgerChange::Advance { status, reason, detail } => {
            let mut t = Transition::new(status, now).channel(Channel::Email);
            t.reason = reason;
            t.provider_id = Some(action.provider_id.clone());
            if !detail.is_empty() {
                t = t.detail(detail);
            }
            let applied = deps.ledger.transition(id, t).await?;
            tracing::info!(message_id = %id, event = %action.event, status = %status, applied = ?applied, "receipt");
            Ok(())
        }
        LedgerChange::Note { status, detail } => {
            deps.ledger.note(id, Transition::new(status, now).channel(Channel::Email).detail(detail)).await
        }
    }
}

async fn reject<L: Ledger, S>(
    deps: &Deps<L, S>,
    record: &Record,
    code: &str,
    detail: String,
    now: DateTime<Utc>,
) -> Outcome {
    tracing::warn!(record = %record.id, code, detail = %detail, "receipt rejected");
    let rejection = RejectionRecord {
        source_id: record.id.clone(),
        code: code.to_owned(),
        detail,
        idempotency_key: None,
        body_bytes: record.body.len(),
        at: now,
        expires_at: now + chrono::TimeDelta::days(30),
    };
    match deps.ledger.reject(rejection).await {
        Err(e) if e.is_retryable() => Outcome::Retry(e.to_string()),
        _ => Outcome::Done,
    }
}
