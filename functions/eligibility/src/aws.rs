//! The AWS wiring of eligibility's ports.

use crate::{Config, Deps, Ports};
use herald::aws::SdkConfig;
use herald::aws::dynamodb::{
    DynamoCaps, DynamoLedger, DynamoRecipients, DynamoSchedule, DynamoSuppression, DynamoTemplates,
};
use herald::aws::sqs::{QueueUrls, SqsOutbox};
use std::time::Duration;

pub struct Aws;

impl Ports for Aws {
    type Ledger = DynamoLedger;
    type Recipients = DynamoRecipients;
    type Suppression = DynamoSuppression;
    type Caps = DynamoCaps;
    type Templates = DynamoTemplates;
    type Outbox = SqsOutbox;
    type Schedule = DynamoSchedule;
}

pub type AwsDeps = Deps<Aws>;

/// How long a template or campaign stays cached in a warm function.
pub const TEMPLATE_TTL: Duration = Duration::from_secs(60);

pub fn deps(sdk: &SdkConfig, config: &Config) -> AwsDeps {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    Deps {
        ledger: DynamoLedger::new(dynamodb.clone(), &config.ledger.table),
        recipients: DynamoRecipients::new(dynamodb.clone(), &config.recipients_table),
        suppression: DynamoSuppression::new(dynamodb.clone(), &config.suppression_table),
        caps: DynamoCaps::new(dynamodb.clone(), &config.caps_table),
        schedule: DynamoSchedule::new(dynamodb.clone(), &config.schedule_table),
        templates: DynamoTemplates::new(dynamodb, &config.templates_table, TEMPLATE_TTL),
        outbox: SqsOutbox::new(
            aws_sdk_sqs::Client::new(sdk),
            QueueUrls {
                eligibility: Some(config.eligibility_queue_url.clone()),
                push: Some(config.push_queue_url.clone()),
                email: Some(config.email_queue_url.clone()),
                sms: Some(config.sms_queue_url.clone()),
                inbox: Some(config.inbox_queue_url.clone()),
                ..QueueUrls::default()
            },
        ),
        policy: config.cap_policy.clone(),
        recipient_wait_secs: config.recipient_wait_secs,
        global_control: config.global_control,
    }
}
