//! The AWS wiring of the broadcast fan-out's ports.

use crate::{Config, Deps};
use herald::aws::SdkConfig;
use herald::aws::dynamodb::{DynamoLedger, DynamoRecipients};
use herald::aws::sqs::{QueueUrls, SqsOutbox};

pub type AwsDeps = Deps<DynamoLedger, DynamoRecipients, SqsOutbox>;

pub fn deps(sdk: &SdkConfig, config: &Config) -> AwsDeps {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    Deps {
        broadcasts: DynamoLedger::new(dynamodb.clone(), &config.ledger_table),
        recipients: DynamoRecipients::new(dynamodb, &config.recipients_table),
        outbox: SqsOutbox::new(
            aws_sdk_sqs::Client::new(sdk),
            QueueUrls {
                ingest: Some(config.ingest_queue_url.clone()),
                broadcast: Some(config.broadcast_queue_url.clone()),
                ..QueueUrls::default()
            },
        ),
    }
}
