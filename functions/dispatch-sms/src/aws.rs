//! The AWS wiring of SMS dispatch.

use crate::{Config, Sms};
use herald::aws::SdkConfig;
use herald::aws::dynamodb::{DynamoCaps, DynamoLedger, DynamoSuppression, DynamoTemplates};
use herald::aws::sns::SnsSms;
use herald::aws::sqs::{QueueUrls, SqsOutbox};
use herald::dispatch::DispatchDeps;
use std::time::Duration;

pub type AwsDeps = DispatchDeps<DynamoLedger, DynamoTemplates, SqsOutbox, DynamoCaps>;

pub fn deps(sdk: &SdkConfig, config: &Config) -> (AwsDeps, Sms<SnsSms, DynamoSuppression>) {
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
                sms: Some(config.queue_url.clone()),
                ..QueueUrls::default()
            },
        ),
    };
    let sms = Sms {
        sender: SnsSms::new(aws_sdk_sns::Client::new(sdk)),
        suppression: DynamoSuppression::new(dynamodb, &config.suppression_table),
        sms_type: config.sms_type,
        max_segments: config.max_segments,
    };
    (deps, sms)
}
