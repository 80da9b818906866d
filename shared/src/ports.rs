//! The capabilities handlers need, as traits. Adapters in [`crate::aws`] implement
//! them over the SDKs; no SDK type crosses this module.

use crate::contract::{Kind, NotifyRequest, SetConsent, UpsertRecipient};
use crate::domain::caps::CapSlot;
use crate::domain::ledger::{Reason, Status, SuppressionCause};
use crate::domain::recipient::{Device, Recipient};
use crate::domain::template::{CompiledTemplate, EmailContent};
use crate::domain::{Channel, EmailAddress, MessageId, PhoneNumber, Platform, PushToken, RecipientId, TemplateName};
use chrono::{DateTime, Utc};
use std::future::Future;
use std::sync::Arc;

/// A provider or store failure, classified so the caller knows what to do.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// Slow down and retry later (SES send rate, DynamoDB throughput, SNS SMS rate).
    #[error("throttled: {0}")]
    Throttled(String),
    /// Network trouble, timeouts, 5xx: retry later.
    #[error("transient failure: {0}")]
    Transient(String),
    /// The provider refused this request and will refuse it again.
    #[error("permanent failure ({code}): {message}")]
    Permanent { code: String, message: String },
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl PortError {
    /// Whether the message should go back to its queue rather than be recorded as failed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, PortError::Permanent { .. })
    }

    pub fn permanent_code(&self) -> Option<&str> {
        match self {
            PortError::Permanent { code, .. } => Some(code),
            _ => None,
        }
    }
}

pub type PortResult<T> = Result<T, PortError>;

// ---------------------------------------------------------------- ledger

/// A request admitted at ingest.
#[derive(Debug, Clone)]
pub struct Admit<'a> {
    pub id: &'a MessageId,
    /// The SQS message that carried it: a redelivery of the same SQS message is
    /// told apart from a producer's duplicate.
    pub source_id: &'a str,
    pub request: &'a NotifyRequest,
    pub now: DateTime<Utc>,
    /// Until when the idempotency key blocks another send.
    pub dedupe_until: DateTime<Utc>,
    /// When the ledger may forget the item.
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    New,
    /// The key was seen within its window. `status` is where that message stands;
    /// `same_source` when this is a redelivery of the very SQS message that admitted it.
    Duplicate {
        status: Status,
        same_source: bool,
    },
}

/// A body that could not be accepted, recorded so a person can see why.
#[derive(Debug, Clone)]
pub struct RejectionRecord {
    /// The SQS message id of the refused body.
    pub source_id: String,
    pub code: String,
    pub detail: String,
    pub idempotency_key: Option<String>,
    pub body_bytes: usize,
    pub at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A step in a message's history.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub status: Status,
    pub reason: Option<Reason>,
    pub detail: Option<String>,
    pub channel: Option<Channel>,
    pub provider_id: Option<String>,
    pub template_version: Option<u32>,
    pub at: DateTime<Utc>,
}

impl Transition {
    pub fn new(status: Status, at: DateTime<Utc>) -> Self {
        Self { status, reason: None, detail: None, channel: None, provider_id: None, template_version: None, at }
    }
    pub fn reason(mut self, reason: Reason) -> Self {
        self.reason = Some(reason);
        self
    }
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
    pub fn channel(mut self, channel: Channel) -> Self {
        self.channel = Some(channel);
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// The message was already at or past that status (a repeat or out-of-order event).
    Stale,
    /// No such message in the ledger (expired by TTL, or never admitted).
    Unknown,
}

/// One message as the ledger holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerEntry {
    pub id: MessageId,
    pub idempotency_key: String,
    pub recipient: String,
    pub template: String,
    pub kind: Option<Kind>,
    pub campaign: Option<String>,
    pub status: Status,
    pub reason: Option<String>,
    pub channel: Option<String>,
    pub provider_id: Option<String>,
    pub duplicates: u32,
    pub history: Vec<HistoryEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub status: String,
    pub at: String,
    pub reason: Option<String>,
    pub channel: Option<String>,
    pub detail: Option<String>,
}

pub trait Ledger: Send + Sync {
    /// Records a new request under its id, once: a conditional write.
    fn admit(&self, admit: Admit<'_>) -> impl Future<Output = PortResult<Admission>> + Send;
    /// Counts a duplicate arrival on the original message.
    fn note_duplicate(&self, id: &MessageId, at: DateTime<Utc>) -> impl Future<Output = PortResult<()>> + Send;
    fn reject(&self, rejection: RejectionRecord) -> impl Future<Output = PortResult<()>> + Send;
    /// Claims the send on `channel` before the provider call (status `sent`), so a
    /// second copy of the job cannot send again. `Stale`: already sent, or claimed
    /// by an attempt that is still running (`claim_until` not passed).
    fn claim_send(
        &self,
        id: &MessageId,
        channel: Channel,
        at: DateTime<Utc>,
        claim_until: DateTime<Utc>,
    ) -> impl Future<Output = PortResult<Applied>> + Send;
    /// Lets a retry (or a fallback channel) claim again after a failed provider call,
    /// appending `note` to the history in the same write when given.
    fn release_send(&self, id: &MessageId, note: Option<Transition>) -> impl Future<Output = PortResult<()>> + Send;
    /// Records the provider's id and the template version after a send.
    fn record_sent(
        &self,
        id: &MessageId,
        provider_id: &str,
        template_version: u32,
    ) -> impl Future<Output = PortResult<()>> + Send;
    /// Moves a message forward; never backwards, and applying it twice changes nothing.
    fn transition(&self, id: &MessageId, t: Transition) -> impl Future<Output = PortResult<Applied>> + Send;
    /// Appends to the history without changing the status (a channel that failed before a fallback).
    fn note(&self, id: &MessageId, t: Transition) -> impl Future<Output = PortResult<()>> + Send;
    fn get(&self, id: &MessageId) -> impl Future<Output = PortResult<Option<LedgerEntry>>> + Send;
}

// ---------------------------------------------------------------- recipients

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentApplied {
    Applied,
    /// A newer consent for the same scope was already recorded.
    Older,
}

pub trait RecipientStore: Send + Sync {
    fn get(&self, id: &RecipientId) -> impl Future<Output = PortResult<Option<Recipient>>> + Send;
    fn upsert(&self, cmd: &UpsertRecipient, now: DateTime<Utc>) -> impl Future<Output = PortResult<()>> + Send;
    fn set_consent(
        &self,
        cmd: &SetConsent,
        now: DateTime<Utc>,
    ) -> impl Future<Output = PortResult<ConsentApplied>> + Send;
    fn add_device(
        &self,
        id: &RecipientId,
        device: &Device,
        now: DateTime<Utc>,
    ) -> impl Future<Output = PortResult<()>> + Send;
    /// Removes a device by token; returns it if it was there.
    fn remove_device(
        &self,
        id: &RecipientId,
        token: &PushToken,
    ) -> impl Future<Output = PortResult<Option<Device>>> + Send;
    /// Deletes the recipient's profile and consent records; returns the devices it had.
    fn erase(&self, id: &RecipientId) -> impl Future<Output = PortResult<Vec<Device>>> + Send;
}

// ---------------------------------------------------------------- suppression

pub trait SuppressionList: Send + Sync {
    /// Which of these (channel, contact hash) pairs are suppressed, and why.
    fn find(
        &self,
        keys: &[(Channel, String)],
    ) -> impl Future<Output = PortResult<Vec<(Channel, SuppressionCause)>>> + Send;
    fn suppress(
        &self,
        channel: Channel,
        contact_hash: &str,
        cause: SuppressionCause,
        at: DateTime<Utc>,
    ) -> impl Future<Output = PortResult<()>> + Send;
}

// ---------------------------------------------------------------- caps

pub trait CapCounter: Send + Sync {
    /// Takes one slot if the counter is below its max: one atomic conditional increment.
    fn try_take(&self, slot: &CapSlot) -> impl Future<Output = PortResult<bool>> + Send;
    /// Returns a slot taken for a message that was not sent after all.
    fn give_back(&self, slot: &CapSlot) -> impl Future<Output = PortResult<()>> + Send;
}

// ---------------------------------------------------------------- templates

pub trait TemplateStore: Send + Sync {
    fn get(&self, name: &TemplateName) -> impl Future<Output = PortResult<Option<Arc<CompiledTemplate>>>> + Send;
}

// ---------------------------------------------------------------- queues

/// Where a stage sends its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Destination {
    Eligibility,
    Channel(Channel),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Correlates a failure with its input record.
    pub id: String,
    pub body: String,
    pub delay_secs: u32,
}

pub trait Outbox: Send + Sync {
    /// Sends in batches; returns the ids that were not accepted (to retry their input).
    fn send(&self, to: Destination, messages: Vec<Outgoing>) -> impl Future<Output = PortResult<Vec<String>>> + Send;
}

// ---------------------------------------------------------------- providers

#[derive(Debug, Clone)]
pub struct EmailMessage {
    pub to: EmailAddress,
    pub from: String,
    pub content: EmailContent,
    pub headers: Vec<(String, String)>,
    /// SES message tags, so events can be correlated back (`herald_message_id`).
    pub tags: Vec<(String, String)>,
}

pub trait EmailSender: Send + Sync {
    /// Returns the provider's message id.
    fn send(&self, message: &EmailMessage) -> impl Future<Output = PortResult<String>> + Send;
}

pub trait PushSender: Send + Sync {
    /// Publishes a `MessageStructure=json` payload to one platform endpoint.
    /// A disabled endpoint is `Permanent { code: "EndpointDisabled" }`.
    fn publish(&self, endpoint_arn: &str, payload: &str) -> impl Future<Output = PortResult<String>> + Send;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmsType {
    Transactional,
    Promotional,
}

pub trait SmsSender: Send + Sync {
    fn send(&self, to: &PhoneNumber, text: &str, sms_type: SmsType) -> impl Future<Output = PortResult<String>> + Send;
}

pub trait PushEndpoints: Send + Sync {
    /// Creates (or finds) the platform endpoint for a token; returns its ARN.
    fn register(&self, platform: Platform, token: &PushToken) -> impl Future<Output = PortResult<String>> + Send;
    fn delete(&self, endpoint_arn: &str) -> impl Future<Output = PortResult<()>> + Send;
}
