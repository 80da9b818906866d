//! The AWS wiring of SMS dispatch.

use crate::{Config, Sms};
use herald::aws::SdkConfig;
use herald::aws::dynamodb::DynamoSuppression;
use herald::aws::sns::SnsSms;

pub use herald::aws::dispatch::AwsDispatchDeps as AwsDeps;

pub fn deps(sdk: &SdkConfig, config: &Config) -> (AwsDeps, Sms<SnsSms, DynamoSuppression>) {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let deps = herald::aws::dispatch::deps(sdk, &config.dispatch);
    let sms = Sms {
        sender: SnsSms::new(aws_sdk_sns::Client::new(sdk)),
        suppression: DynamoSuppression::new(dynamodb, &config.suppression_table),
        sms_type: config.sms_type,
        max_segments: config.max_segments,
    };
    (deps, sms)
}
