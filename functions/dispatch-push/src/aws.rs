//! The AWS wiring of push dispatch.

use crate::{Config, Push};
use herald::aws::SdkConfig;
use herald::aws::dynamodb::DynamoRecipients;
use herald::aws::sns::SnsPush;

pub use herald::aws::dispatch::AwsDispatchDeps as AwsDeps;

pub fn deps(sdk: &SdkConfig, config: &Config) -> (AwsDeps, Push<SnsPush, DynamoRecipients>) {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let deps = herald::aws::dispatch::deps(sdk, &config.dispatch);
    let push = Push {
        sender: SnsPush::new(aws_sdk_sns::Client::new(sdk)),
        recipients: DynamoRecipients::new(dynamodb, &config.recipients_table),
    };
    (deps, push)
}
