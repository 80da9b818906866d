//! The AWS wiring of receipts.

use crate::{Config, Deps};
use herald::aws::SdkConfig;
use herald::aws::dynamodb::{DynamoLedger, DynamoRecipients, DynamoSuppression};
use herald::aws::sqs::{QueueUrls, SqsOutbox};

pub type AwsDeps = Deps<DynamoLedger, DynamoSuppression, DynamoRecipients, SqsOutbox>;

pub fn deps(sdk: &SdkConfig, config: &Config) -> AwsDeps {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    Deps {
        ledger: DynamoLedger::new(dynamodb.clone(), &config.ledger.table),
        suppression: DynamoSuppression::new(dynamodb.clone(), &config.suppression_table),
        devices: DynamoRecipients::new(dynamodb, &config.recipients_table),
        outbox: SqsOutbox::new(
            aws_sdk_sqs::Client::new(sdk),
            QueueUrls { eligibility: Some(config.eligibility_queue_url.clone()), ..QueueUrls::default() },
        ),
    }
}
