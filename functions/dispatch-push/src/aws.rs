//! The AWS wiring of push dispatch.

use crate::{Config, Push};
use herald::aws::SdkConfig;
use herald::aws::dynamodb::{DynamoCaps, DynamoLedger, DynamoRecipients, DynamoTemplates};
use herald::aws::sns::SnsPush;
use herald::aws::sqs::{QueueUrls, SqsOutbox};
use herald::dispatch::DispatchDeps;
use std::time::Duration;

pub type AwsDeps = DispatchDeps<DynamoLedger, DynamoTemplates, SqsOutbox, DynamoCaps>;

pub fn deps(sdk: &SdkConfig, config: &Config) -> (AwsDeps, Push<SnsPush, DynamoRecipients>) {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let deps = DispatchDeps {
        ledger: DynamoLedger::new(dynamodb.clone(), &config.ledger.table),
        caps: DynamoCaps::new(dynamodb.clone(), &config.caps_table),
        retry: config.retry,
        templates: DynamoTemplates::new(dynamodb.clone(), &config.templates_table, Duration::from_secs(60)),
        outbox: SqsOutbox::new(
            aws_sdk_sqs::Client::new(sdk),
            QueueUrls {
                eligibility: Some(config.eligibility_queue_url.clone()),
                push: Some(config.queue_url.clone()),
                ..QueueUrls::default()
            },
        ),
    };
    let push = Push {
        sender: SnsPush::new(aws_sdk_sns::Client::new(sdk)),
        recipients: DynamoRecipients::new(dynamodb, &config.recipients_table),
    };
    (deps, push)
}
