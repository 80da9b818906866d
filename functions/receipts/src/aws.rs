//! The AWS wiring of receipts.

use crate::{Config, Deps};
use herald::aws::SdkConfig;
use herald::aws::dynamodb::{DynamoLedger, DynamoRecipients, DynamoSuppression};

pub type AwsDeps = Deps<DynamoLedger, DynamoSuppression, DynamoRecipients>;

pub fn deps(sdk: &SdkConfig, config: &Config) -> AwsDeps {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    Deps {
        ledger: DynamoLedger::new(dynamodb.clone(), &config.ledger.table),
        suppression: DynamoSuppression::new(dynamodb.clone(), &config.suppression_table),
        devices: DynamoRecipients::new(dynamodb, &config.recipients_table),
    }
}
