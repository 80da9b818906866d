//! The AWS wiring of email dispatch.

use crate::{Config, Email};
use herald::aws::SdkConfig;
use herald::aws::dynamodb::{DynamoCaps, DynamoLedger, DynamoTemplates};
use herald::aws::ses::SesEmail;
use herald::aws::sqs::{QueueUrls, SqsOutbox};
use herald::dispatch::DispatchDeps;
use std::time::Duration;

pub type AwsDeps = DispatchDeps<DynamoLedger, DynamoTemplates, SqsOutbox, DynamoCaps>;

pub fn deps(sdk: &SdkConfig, config: &Config) -> (AwsDeps, Email<SesEmail>) {
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
                email: Some(config.queue_url.clone()),
                ..QueueUrls::default()
            },
        ),
    };
    let email = Email {
        sender: SesEmail::new(aws_sdk_sesv2::Client::new(sdk), config.configuration_set.clone()),
        from: config.from_address.clone(),
        unsubscribe: config.unsubscribe.clone(),
        receipts: config.configuration_set.is_some(),
    };
    (deps, email)
}
