//! The AWS wiring every dispatch function shares: its ledger, templates, caps and the
//! queues it hands back to. A channel's crate adds only its provider.

use crate::aws::SdkConfig;
use crate::aws::dynamodb::{DynamoCaps, DynamoLedger, DynamoTemplates};
use crate::aws::sqs::{QueueUrls, SqsOutbox};
use crate::dispatch::{DispatchConfig, DispatchDeps};
use std::time::Duration;

/// How long a dispatch function keeps a template it read.
const TEMPLATE_TTL: Duration = Duration::from_secs(60);

pub type AwsDispatchDeps = DispatchDeps<DynamoLedger, DynamoTemplates, SqsOutbox, DynamoCaps>;

/// The shared half of a dispatch function's dependencies, from its configuration.
pub fn deps(sdk: &SdkConfig, config: &DispatchConfig) -> AwsDispatchDeps {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let urls = QueueUrls { eligibility: Some(config.eligibility_queue_url.clone()), ..QueueUrls::default() }
        .with_channel(config.channel, config.queue_url.clone());
    DispatchDeps {
        ledger: DynamoLedger::new(dynamodb.clone(), &config.ledger.table),
        caps: DynamoCaps::new(dynamodb.clone(), &config.caps_table),
        retry: config.retry,
        templates: DynamoTemplates::new(dynamodb, &config.templates_table, TEMPLATE_TTL),
        outbox: SqsOutbox::new(aws_sdk_sqs::Client::new(sdk), urls),
    }
}
