//! The AWS wiring of inbox dispatch.

use crate::{Config, Inbox};
use herald::aws::SdkConfig;
use herald::aws::dynamodb::{DynamoCaps, DynamoLedger, DynamoTemplates};
use herald::aws::sqs::{QueueUrls, SqsOutbox};
use herald::dispatch::DispatchDeps;
use std::time::Duration;

pub type AwsDeps = DispatchDeps<DynamoLedger, DynamoTemplates, SqsOutbox, DynamoCaps>;

pub fn deps(sdk: &SdkConfig, config: &Config) -> (AwsDeps, Inbox) {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let deps = DispatchDeps {
        ledger: DynamoLedger::new(dynamodb.clone(), &config.ledger.table),
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
    (deps, Inbox)
}
