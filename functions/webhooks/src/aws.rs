//! The AWS wiring of the webhook function.

use crate::sns::SnsVerifier;
use crate::{Config, Deps};
use herald::aws::SdkConfig;
use herald::aws::dynamodb::{DynamoRecipients, DynamoReplayGuard};
use herald::aws::https::HttpsFetcher;
use herald::aws::sqs::SqsReceiptInbox;
use std::time::Duration;

pub type AwsDeps = Deps<HttpsFetcher, DynamoRecipients, SqsReceiptInbox, DynamoReplayGuard>;

pub fn deps(sdk: &SdkConfig, config: &Config) -> AwsDeps {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    Deps {
        // Well inside the function's timeout, so a slow certificate host yields a 503 SNS retries.
        sns: SnsVerifier::new(HttpsFetcher::new(Duration::from_secs(3))),
        recipients: DynamoRecipients::new(dynamodb.clone(), &config.recipients_table),
        receipts: SqsReceiptInbox::new(aws_sdk_sqs::Client::new(sdk), &config.receipts_queue_url),
        replay: DynamoReplayGuard::new(dynamodb, &config.ledger.table),
        settings: config.settings.clone(),
    }
}
