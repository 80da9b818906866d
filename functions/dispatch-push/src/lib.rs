//! Push dispatch: renders the push part of the template and publishes it to each
//! of the recipient's devices through SNS. A disabled endpoint's token is removed
//! from the recipient; when every device is gone the message falls back. A refusal
//! of the platform application itself (disabled after its credential expired) leaves
//! every device alone and holds the message: retried with back-off, then
//! dead-lettered, and counted in `PushApplicationErrors` for the alarm.

use herald::config::{ConfigError, Lookup, required};
use herald::dispatch::{Deliver, Delivery, DispatchConfig, DispatchDeps};
use herald::domain::Channel;
use herald::domain::jobs::{Contact, DispatchJob};
use herald::domain::ledger::Reason;
use herald::domain::push::{self, MAX_PAYLOAD_BYTES};
use herald::domain::template::CompiledTemplate;
use herald::lambda::{LambdaEvent, SqsBatchResponse, SqsEvent};
use herald::ports::{CapCounter, Ledger, Outbox, PortError, PushSender, RecipientStore, TemplateStore};

#[cfg(feature = "aws")]
pub mod aws;

#[derive(Debug, Clone)]
pub struct Config {
    /// What every dispatch function reads (herald::dispatch::DispatchConfig).
    pub dispatch: DispatchConfig,
    pub recipients_table: String,
}

impl Config {
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            dispatch: DispatchConfig::from_lookup(get, Channel::Push)?,
            recipients_table: required(get, "HERALD_RECIPIENTS_TABLE")?,
        })
    }
}

pub struct Push<P, R> {
    pub sender: P,
    pub recipients: R,
}

/// SNS refusals that mean the token will never work again. The adapter reports a refusal
/// that is the platform application's (disabled, expired credential) as an application
/// error instead, never as one of these.
fn is_dead_token(err: &PortError) -> bool {
    matches!(err.permanent_code(), Some("EndpointDisabled" | "NotFound" | "InvalidParameter"))
}

/// The metric an alarm watches: SNS refuses push for a reason of the platform application.
pub const APPLICATION_ERRORS_METRIC: &str = "PushApplicationErrors";

impl<P: PushSender, R: RecipientStore> Deliver for Push<P, R> {
    async fn deliver(&self, job: &DispatchJob, template: &CompiledTemplate) -> Delivery {
        let Contact::Push(devices) = &job.contact else {
            return Delivery::Failed { reason: Reason::NoContact, detail: "the job has no device".into() };
        };
        // The same code builds `herald templates preview`'s push messages.
        let content = match push::render(template, job) {
            Ok(c) => c,
            Err(e) => return Delivery::from_render(e),
        };
        // APNs and FCM refuse payloads over 4 KB: no device would take this one.
        for device in devices {
            if let Err(size) = push::check_size(device.platform, &content, &job.message_id) {
                return Delivery::Failed {
                    reason: Reason::PayloadTooLarge,
                    detail: format!("{size} bytes on {}, over {MAX_PAYLOAD_BYTES}", device.platform.as_str()),
                };
            }
        }
        let mut sent = Vec::new();
        let mut retry = None;
        let mut dead = 0;
        for device in devices {
            let payload = push::sns_message(device.platform, &content, &job.message_id);
            match self.sender.publish(&device.endpoint_arn, &payload).await {
                Ok(id) => sent.push(id),
                // Every device of that application would be refused alike: none is at fault.
                // The message is held (retried, then dead-lettered) and an operator is alerted.
                Err(e) if e.application_code().is_some() => {
                    tracing::error!(message_id = %job.message_id, platform = device.platform.as_str(), error = %e,
                        "the push platform application refused: message held, devices kept");
                    herald::metrics::count(APPLICATION_ERRORS_METRIC, &[]);
                    retry = Some(e.to_string());
                }
                Err(e) if is_dead_token(&e) => {
                    dead += 1;
                    tracing::info!(message_id = %job.message_id, token = %device.token.handle(), "dead push token removed");
                    if let Err(err) = self.recipients.remove_device(&job.request.recipient, &device.token).await {
                        tracing::warn!(error = %err, "could not remove a dead token");
                    }
                }
                Err(e) => retry = Some(e.to_string()),
            }
        }
        // Any device reached counts as sent: retrying would push twice to the others.
        match (sent.first(), retry) {
            (Some(first), _) => Delivery::Sent { provider_id: first.clone(), sms_segments: None },
            (None, Some(why)) => Delivery::Retry(why),
            (None, None) => Delivery::Failed {
                reason: Reason::EndpointDisabled,
                detail: format!("all {dead} device(s) have disabled endpoints"),
            },
        }
    }
}

pub async fn handler<L, T, O, C, P, R>(
    deps: &DispatchDeps<L, T, O, C>,
    push: &Push<P, R>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, herald::lambda::Error>
where
    L: Ledger,
    T: TemplateStore,
    O: Outbox,
    C: CapCounter,
    P: PushSender,
    R: RecipientStore,
{
    Ok(herald::dispatch::handle(deps, push, event).await)
}
