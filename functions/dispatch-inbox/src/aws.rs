//! The AWS wiring of inbox dispatch.

use crate::{Config, Inbox};
use chrono::TimeDelta;
use herald::aws::SdkConfig;
use herald::aws::dynamodb::{DynamoCaps, DynamoInbox, DynamoLedger, DynamoTemplates};
use herald::aws::sqs::{QueueUrls, SqsOutbox};
use herald::dispatch::DispatchDeps;
use std::time::Duration;

pub type AwsDeps = DispatchDeps<DynamoLedger, DynamoTemplates, SqsOutbox, DynamoCaps>;
pub type AwsInbox = Inbox<DynamoInbox, DynamoLedger>;

pub fn deps(sdk: &SdkConfig, config: &Config) -> (AwsDeps, AwsInbox) {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let ledger = DynamoLedger::new(dynamodb.clone(), &config.ledger.table);
    let inbox = Inbox {
        store: DynamoInbox::new(dynamodb.clone(), &config.inbox_table),
        ledger: ledger.clone(),
        retention: TimeDelta::days(config.retention_days.into()),
    };
    let deps = DispatchDeps {
        ledger,
        caps: DynamoCaps::new(dynamodb.clone(), &config.caps_table),
        retry: config.retry,
        templates: DynamoTemplates::new(dynamodb, &config.templates_table, Duration::from_secs(60)),
        outbox: SqsOutbox::new(
            aws_sdk_sqs::Client::new(sdk),
            QueueUrls {
                eligibility: Some(config.eligibility_queue_url.clone()),
                inbox: Some(config.queue_url.clone()),
                ..QueueUrls::default()
            },
        ),
    };
    (deps, inbox)
}
