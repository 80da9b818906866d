//! The AWS wiring of email dispatch.

use crate::{Config, Email, UnsubscribeLinks};
use herald::aws::SdkConfig;
use herald::aws::secretsmanager::{SECRET_TTL, SecretsManagerSecret};
use herald::aws::ses::SesEmail;
use herald::domain::unsubscribe::UnsubscribeKey;

pub use herald::aws::dispatch::AwsDispatchDeps as AwsDeps;
pub type AwsEmail = Email<SesEmail, SecretsManagerSecret<UnsubscribeKey>>;

pub fn deps(sdk: &SdkConfig, config: &Config) -> (AwsDeps, AwsEmail) {
    let _dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let deps = herald::aws::dispatch::deps(sdk, &config.dispatch);
    let email = Email {
        sender: SesEmail::new(aws_sdk_sesv2::Client::new(sdk), config.configuration_set.clone()),
        from: config.from_address.clone(),
        // Read when a marketing email first needs it, not here: start-up makes no call.
        unsubscribe: config.unsubscribe.as_ref().map(|links| UnsubscribeLinks {
            key: SecretsManagerSecret::new(aws_sdk_secretsmanager::Client::new(sdk), &links.key, SECRET_TTL, |raw| {
                UnsubscribeKey::new(raw)
            }),
            base_url: links.base_url.clone(),
        }),
        receipts: config.configuration_set.is_some(),
    };
    (deps, email)
}
