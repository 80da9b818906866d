//! The AWS wiring of email dispatch.

use crate::{Config, Email, UnsubscribeLinks};
use herald::aws::SdkConfig;
use herald::aws::dynamodb::{DynamoCaps, DynamoLedger, DynamoTemplates};
use herald::aws::secretsmanager::{SECRET_TTL, SecretsManagerSecret};
use herald::aws::ses::SesEmail;
use herald::aws::sqs::{QueueUrls, SqsOutbox};
use herald::dispatch::DispatchDeps;
use herald::domain::unsubscribe::UnsubscribeKey;
use std::time::Duration;

pub type AwsDeps = DispatchDeps<DynamoLedger, DynamoTemplates, SqsOutbox, DynamoCaps>;
pub type AwsEmail = Email<SesEmail, SecretsManagerSecret<UnsubscribeKey>>;

pub fn deps(sdk: &SdkConfig, config: &Config) -> (AwsDeps, AwsEmail) {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let deps = DispatchDeps {
        ledger: DynamoLedger::new(dynamodb.clone(), &config.ledger.table),
        caps: DynamoCaps::new(dynamodb.clone(), &config.caps_table),
        retry: config.retry,
        templates: DynamoTemplates::new(dynamodb, &config.templates_table, Duration::from_secs(60)),
        outbox: SqsOutbox::new(
            aws_sdk_sqs::Client::new(sdk),
            QueueUrls {
                eligibility: Some(config.eligibility_queue_url.clone()),
                email: Some(config.queue_url.clone()),
                ..QueueUrls::default()
            },
        ),
    };
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
