//! The AWS wiring of the digest function's ports.

use crate::{Config, Deps, Ports};
use herald::aws::SdkConfig;
use herald::aws::dynamodb::{DynamoLedger, DynamoSchedule, DynamoTemplates};
use herald::aws::sqs::{QueueUrls, SqsOutbox};

/// The digest function over DynamoDB and SQS.
pub struct Aws;

impl Ports for Aws {
    type Outbox = SqsOutbox;
    type Schedule = DynamoSchedule;
    type Digests = DynamoLedger;
    type Templates = DynamoTemplates;
}

pub type AwsDeps = Deps<Aws>;

/// How long a warm function keeps a template's `[digest] items`.
pub const TEMPLATE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

pub fn deps(sdk: &SdkConfig, config: &Config) -> AwsDeps {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    Deps {
        schedule: DynamoSchedule::new(dynamodb.clone(), &config.schedule_table),
        digests: DynamoLedger::new(dynamodb.clone(), &config.ledger_table),
        templates: DynamoTemplates::new(dynamodb, &config.templates_table, TEMPLATE_TTL),
        outbox: SqsOutbox::new(
            aws_sdk_sqs::Client::new(sdk),
            QueueUrls {
                ingest: Some(config.ingest_queue_url.clone()),
                digest: Some(config.digest_queue_url.clone()),
                ..QueueUrls::default()
            },
        ),
    }
}
