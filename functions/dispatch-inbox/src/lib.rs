//! Inbox dispatch: renders the inbox part of the template and stores it in the
//! person's in-app inbox.
//!
//! SKELETON: the store is not built yet; every inbox send fails on the channel (and
//! falls back when it may).

use herald::config::{ConfigError, LedgerConfig, Lookup, parsed, required};
use herald::dispatch::{Deliver, Delivery, DispatchDeps, RetryPolicy};
use herald::domain::jobs::DispatchJob;
use herald::domain::ledger::Reason;
use herald::domain::template::CompiledTemplate;
use herald::lambda::{LambdaEvent, SqsBatchResponse, SqsEvent};
use herald::ports::{CapCounter, Ledger, Outbox, TemplateStore};

#[cfg(feature = "aws")]
pub mod aws;

#[derive(Debug, Clone)]
pub struct Config {
    pub ledger: LedgerConfig,
    pub templates_table: String,
    pub caps_table: String,
    /// The function's own queue (for retry back-off).
    pub queue_url: String,
    pub retry: RetryPolicy,
    pub eligibility_queue_url: String,
    pub inbox_table: String,
    /// How long a message stays in the inbox.
    pub retention_days: u32,
}

impl Config {
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            ledger: LedgerConfig::from_lookup(get)?,
            templates_table: required(get, "HERALD_TEMPLATES_TABLE")?,
            caps_table: required(get, "HERALD_CAPS_TABLE")?,
            queue_url: required(get, "HERALD_INBOX_QUEUE_URL")?,
            retry: RetryPolicy {
                base_secs: parsed(get, "HERALD_RETRY_BASE_SECS", RetryPolicy::default().base_secs)?,
                max_receives: parsed(get, "HERALD_MAX_RECEIVES", RetryPolicy::default().max_receives)?,
            },
            eligibility_queue_url: required(get, "HERALD_ELIGIBILITY_QUEUE_URL")?,
            inbox_table: required(get, "HERALD_INBOX_TABLE")?,
            retention_days: parsed(get, "HERALD_INBOX_RETENTION_DAYS", 90)?,
        })
    }
}

/// The inbox channel's delivery (skeleton: not built).
pub struct Inbox;

impl Deliver for Inbox {
    async fn deliver(&self, _job: &DispatchJob, _template: &CompiledTemplate) -> Delivery {
        Delivery::Failed { reason: Reason::ProviderRejected, detail: "the inbox channel is not built yet".into() }
    }
}

pub async fn handler<L, T, O, C>(
    deps: &DispatchDeps<L, T, O, C>,
    inbox: &Inbox,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, herald::lambda::Error>
where
    L: Ledger,
    T: TemplateStore,
    O: Outbox,
    C: CapCounter,
{
    Ok(herald::dispatch::handle(deps, inbox, event).await)
}
