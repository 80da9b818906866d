//! The AWS wiring of the webhook function.

use crate::sns::SnsVerifier;
use crate::{Config, Deps, Providers, Secrets, parse_providers};
use herald::aws::SdkConfig;
use herald::aws::dynamodb::{DynamoRecipients, DynamoReplayGuard, DynamoTopics};
use herald::aws::https::HttpsFetcher;
use herald::aws::secretsmanager::{SECRET_TTL, SecretsManagerSecret};
use herald::aws::sqs::SqsReceiptInbox;
use herald::domain::unsubscribe::UnsubscribeKey;
use std::time::Duration;

pub type AwsSecrets = Secrets<SecretsManagerSecret<UnsubscribeKey>, SecretsManagerSecret<Providers>>;
pub type AwsDeps = Deps<HttpsFetcher, DynamoRecipients, SqsReceiptInbox, DynamoReplayGuard, AwsSecrets, DynamoTopics>;

/// How long the topics stay cached: a push reaches the page within a minute.
pub const TOPICS_TTL: Duration = Duration::from_secs(60);

pub fn deps(sdk: &SdkConfig, config: &Config) -> AwsDeps {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    Deps {
        // Well inside the function's timeout, so a slow certificate host yields a 503 SNS retries.
        sns: SnsVerifier::new(HttpsFetcher::new(Duration::from_secs(3))),
        recipients: DynamoRecipients::new(dynamodb.clone(), &config.recipients_table),
        receipts: SqsReceiptInbox::new(aws_sdk_sqs::Client::new(sdk), &config.receipts_queue_url),
        replay: DynamoReplayGuard::new(dynamodb.clone(), &config.ledger.table),
        topics: DynamoTopics::new(dynamodb, &config.templates_table, TOPICS_TTL),
        secrets: secrets(sdk, config, SECRET_TTL),
        settings: config.settings.clone(),
    }
}

/// The two secrets, each read when a request first needs it and kept for `ttl`.
pub fn secrets(sdk: &SdkConfig, config: &Config, ttl: Duration) -> AwsSecrets {
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    Secrets {
        unsubscribe_key: SecretsManagerSecret::new(client.clone(), &config.unsubscribe_key_secret, ttl, |raw| {
            UnsubscribeKey::new(raw)
        }),
        providers: SecretsManagerSecret::new(client, &config.provider_secrets_secret, ttl, parse_providers),
    }
}
