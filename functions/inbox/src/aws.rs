//! The AWS wiring of the inbox API.

use crate::token::InboxKey;
use crate::{Config, Deps};
use herald::aws::SdkConfig;
use herald::aws::dynamodb::DynamoInbox;
use herald::aws::secretsmanager::{SECRET_TTL, SecretsManagerSecret};
use herald::aws::sqs::SqsReceiptInbox;

pub type AwsDeps = Deps<DynamoInbox, SqsReceiptInbox, SecretsManagerSecret<InboxKey>>;

pub fn deps(sdk: &SdkConfig, config: &Config) -> AwsDeps {
    Deps {
        store: DynamoInbox::new(aws_sdk_dynamodb::Client::new(sdk), &config.inbox_table),
        receipts: SqsReceiptInbox::new(aws_sdk_sqs::Client::new(sdk), &config.receipts_queue_url),
        // Read when a request first needs it, kept a few minutes: a rotated key reaches
        // running functions without a redeploy.
        key: SecretsManagerSecret::new(
            aws_sdk_secretsmanager::Client::new(sdk),
            &config.token_secret,
            SECRET_TTL,
            InboxKey::new,
        ),
    }
}
