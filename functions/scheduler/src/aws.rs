//! The AWS wiring of the scheduler.

use crate::{Config, Deps};
use herald::aws::SdkConfig;
use herald::aws::dynamodb::DynamoSchedule;
use herald::aws::sqs::{QueueUrls, SqsOutbox};

pub type AwsDeps = Deps<DynamoSchedule, SqsOutbox>;

pub fn deps(sdk: &SdkConfig, config: &Config) -> AwsDeps {
    Deps {
        schedule: DynamoSchedule::new(aws_sdk_dynamodb::Client::new(sdk), &config.schedule_table),
        outbox: SqsOutbox::new(
            aws_sdk_sqs::Client::new(sdk),
            QueueUrls {
                eligibility: Some(config.eligibility_queue_url.clone()),
                digest: Some(config.digest_queue_url.clone()),
                journey: Some(config.journey_queue_url.clone()),
                ..QueueUrls::default()
            },
        ),
    }
}
