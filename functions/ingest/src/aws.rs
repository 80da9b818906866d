//! The AWS wiring of ingest's ports.

use crate::{Config, Deps};
use chrono::TimeDelta;
use herald::aws::SdkConfig;
use herald::aws::dynamodb::{DynamoLedger, DynamoRecipients, DynamoTemplates};
use herald::aws::sns::{PlatformApps, SnsEndpoints};
use herald::aws::sqs::{QueueUrls, SqsOutbox};
use std::time::Duration;

pub type AwsDeps = Deps<DynamoLedger, DynamoRecipients, SqsOutbox, SnsEndpoints, DynamoTemplates>;

/// How long the profile schema (and segments) are kept in memory.
pub const SCHEMA_TTL: Duration = Duration::from_secs(60);

pub fn deps(sdk: &SdkConfig, config: &Config) -> AwsDeps {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    Deps {
        ledger: DynamoLedger::new(dynamodb.clone(), &config.ledger.table),
        recipients: DynamoRecipients::new(dynamodb.clone(), &config.recipients_table),
        segments: DynamoTemplates::new(dynamodb, &config.templates_table, SCHEMA_TTL),
        outbox: SqsOutbox::new(
            aws_sdk_sqs::Client::new(sdk),
            QueueUrls { eligibility: Some(config.eligibility_queue_url.clone()), ..QueueUrls::default() },
        ),
        endpoints: SnsEndpoints::new(
            aws_sdk_sns::Client::new(sdk),
            PlatformApps {
                apns: config.apns_app_arn.clone(),
                apns_sandbox: config.apns_sandbox_app_arn.clone(),
                fcm: config.fcm_app_arn.clone(),
            },
        ),
        dedupe_window: TimeDelta::seconds(config.ledger.dedupe_window_secs.into()),
        retention: TimeDelta::days(config.ledger.retention_days.into()),
    }
}
