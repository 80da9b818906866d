//! The AWS wiring of inbox dispatch.

use crate::{Config, Inbox};
use chrono::TimeDelta;
use herald::aws::SdkConfig;
use herald::aws::dynamodb::{DynamoInbox, DynamoLedger};

pub use herald::aws::dispatch::AwsDispatchDeps as AwsDeps;
pub type AwsInbox = Inbox<DynamoInbox, DynamoLedger>;

pub fn deps(sdk: &SdkConfig, config: &Config) -> (AwsDeps, AwsInbox) {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let ledger = DynamoLedger::new(dynamodb.clone(), &config.dispatch.ledger.table);
    let inbox = Inbox {
        store: DynamoInbox::new(dynamodb.clone(), &config.inbox_table),
        ledger: ledger.clone(),
        retention: TimeDelta::days(config.retention_days.into()),
    };
    let deps = herald::aws::dispatch::deps(sdk, &config.dispatch);
    (deps, inbox)
}
