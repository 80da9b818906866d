//! The AWS wiring of the journeys function's ports.

use crate::{Config, Deps, Ports};
use herald::aws::SdkConfig;
use herald::aws::dynamodb::DynamoSchedule;
use herald::aws::sqs::{QueueUrls, SqsOutbox};

/// The journeys function over DynamoDB and SQS.
pub struct Aws;

impl Ports for Aws {
    type Outbox = SqsOutbox;
    type Schedule = DynamoSchedule;
}

pub type AwsDeps = Deps<Aws>;

pub fn deps(sdk: &SdkConfig, config: &Config) -> AwsDeps {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    Deps {
        schedule: DynamoSchedule::new(dynamodb, &config.schedule_table),
        outbox: SqsOutbox::new(
            aws_sdk_sqs::Client::new(sdk),
            QueueUrls {
                ingest: Some(config.ingest_queue_url.clone()),
                journey: Some(config.journey_queue_url.clone()),
                ..QueueUrls::default()
            },
        ),
    }
}
