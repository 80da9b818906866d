//! The AWS wiring of the journeys function's ports.

use crate::{Config, Deps, Ports};
use chrono::TimeDelta;
use herald::aws::SdkConfig;
use herald::aws::dynamodb::{DynamoJourneys, DynamoLedger, DynamoRecipients, DynamoSchedule, DynamoTemplates};
use herald::aws::sqs::{QueueUrls, SqsOutbox};

/// The journeys function over DynamoDB and SQS.
pub struct Aws;

impl Ports for Aws {
    type Outbox = SqsOutbox;
    type Schedule = DynamoSchedule;
    type Journeys = DynamoJourneys;
    type Definitions = DynamoTemplates;
    type Recipients = DynamoRecipients;
    type Ledger = DynamoLedger;
}

pub type AwsDeps = Deps<Aws>;

/// How long a warm function keeps a journey's definition (a version never changes; the
/// latest pointer is not read here).
pub const DEFINITION_TTL: std::time::Duration = std::time::Duration::from_secs(600);

pub fn deps(sdk: &SdkConfig, config: &Config) -> AwsDeps {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    Deps {
        schedule: DynamoSchedule::new(dynamodb.clone(), &config.schedule_table),
        journeys: DynamoJourneys::new(dynamodb.clone(), &config.journeys_table),
        definitions: DynamoTemplates::new(dynamodb.clone(), &config.templates_table, DEFINITION_TTL),
        recipients: DynamoRecipients::new(dynamodb.clone(), &config.recipients_table),
        ledger: DynamoLedger::new(dynamodb, &config.ledger_table),
        outbox: SqsOutbox::new(
            aws_sdk_sqs::Client::new(sdk),
            QueueUrls {
                ingest: Some(config.ingest_queue_url.clone()),
                journey: Some(config.journey_queue_url.clone()),
                ..QueueUrls::default()
            },
        ),
        retention: TimeDelta::days(config.retention_days.into()),
    }
}
