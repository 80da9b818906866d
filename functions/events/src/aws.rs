//! The AWS wiring of the event stream.

use crate::{Config, Deps};
use herald::aws::SdkConfig;
use herald::aws::eventbridge::EventBridgeBus;
use herald::aws::sqs::SqsDeadLetters;

pub type AwsDeps = Deps<EventBridgeBus, SqsDeadLetters>;

pub fn deps(sdk: &SdkConfig, config: &Config) -> AwsDeps {
    Deps {
        bus: EventBridgeBus::new(aws_sdk_eventbridge::Client::new(sdk), &config.bus, &config.source),
        dead_letters: SqsDeadLetters::new(aws_sdk_sqs::Client::new(sdk), &config.dead_letter_queue_url),
        config: config.clone(),
    }
}
