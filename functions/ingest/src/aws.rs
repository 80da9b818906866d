//! The AWS wiring of ingest's ports.

use crate::{Config, Deps, Ports};
use chrono::TimeDelta;
use herald::aws::SdkConfig;
use herald::aws::dynamodb::{DynamoInbox, DynamoJourneys, DynamoLedger, DynamoRecipients, DynamoTemplates};
use herald::aws::sns::{PlatformApps, SnsEndpoints};
use herald::aws::sqs::{QueueUrls, SqsOutbox};

/// Ingest over DynamoDB, SQS and SNS.
pub struct Aws;

impl Ports for Aws {
    type Ledger = DynamoLedger;
    type Recipients = DynamoRecipients;
    type Outbox = SqsOutbox;
    type Endpoints = SnsEndpoints;
    type Templates = DynamoTemplates;
    type Digests = DynamoLedger;
    type Journeys = DynamoJourneys;
    type Inbox = DynamoInbox;
}

pub type AwsDeps = Deps<Aws>;

/// How long a warm function keeps templates, segments and the list of campaigns a `track`
/// is matched against.
pub const CAMPAIGN_LIST_TTL: std::time::Duration = std::time::Duration::from_secs(60);

pub fn deps(sdk: &SdkConfig, config: &Config) -> AwsDeps {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    Deps {
        ledger: DynamoLedger::new(dynamodb.clone(), &config.ledger.table),
        recipients: DynamoRecipients::new(dynamodb.clone(), &config.recipients_table),
        digests: DynamoLedger::new(dynamodb.clone(), &config.ledger.table),
        journeys: DynamoJourneys::new(dynamodb.clone(), &config.journeys_table),
        inbox: DynamoInbox::new(dynamodb.clone(), &config.inbox_table),
        templates: DynamoTemplates::new(dynamodb, &config.templates_table, CAMPAIGN_LIST_TTL),
        scan_segments: config.broadcast_scan_segments,
        outbox: SqsOutbox::new(
            aws_sdk_sqs::Client::new(sdk),
            QueueUrls {
                ingest: Some(config.ingest_queue_url.clone()),
                eligibility: Some(config.eligibility_queue_url.clone()),
                broadcast: Some(config.broadcast_queue_url.clone()),
                digest: Some(config.digest_queue_url.clone()),
                journey: Some(config.journey_queue_url.clone()),
                ..QueueUrls::default()
            },
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
