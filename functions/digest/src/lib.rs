//! Digest: closes digest windows. SKELETON: the digest helper fills it in.

use herald::config::{ConfigError, Lookup, required};
use herald::lambda::{LambdaEvent, Outcome, SqsBatchResponse, SqsEvent, batch_response, for_each_record};
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
    type Outbox: Outbox;
    type Schedule: ScheduleStore;
}

pub struct Deps<P: Ports> {
    pub outbox: P::Outbox,
    pub schedule: P::Schedule,
}

pub async fn handler<P: Ports>(
    _deps: &Deps<P>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, herald::lambda::Error> {
    let outcomes =
        for_each_record(event.payload, 1, |_record| async { Outcome::Retry("not built yet".to_owned()) }).await;
    Ok(batch_response(outcomes.iter().map(|(id, o)| (id.as_str(), o))))
}
