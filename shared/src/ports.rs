//! The capabilities handlers need, as traits. Adapters in [`crate::aws`] implement
//! them over the SDKs; no SDK type crosses this module.

use crate::contract::{ControlAction, Kind, NotifyRequest, SetConsent, UpsertRecipient};
use crate::domain::broadcast::{Broadcast, BroadcastState, Counts, PageJob};
use crate::domain::campaign::CampaignDoc;
use crate::domain::caps::CapSlot;
use crate::domain::digest::{Appended, DigestHead, DigestId, Opening};
use crate::domain::jobs::EligibilityJob;
use crate::domain::ledger::{Reason, Status, SuppressionCause};
use crate::domain::profile::ProfileSchema;
use crate::domain::recipient::{Device, Recipient};
use crate::domain::segment::{Audience, SegmentDoc};
use crate::domain::template::{CompiledTemplate, EmailContent};
use crate::domain::{
    CampaignId, Channel, DeviceId, EmailAddress, EventName, MessageId, PhoneNumber, Platform, PushToken, RecipientId,
    SegmentName, TemplateName, redact_contacts,
};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;

mod inbox;
mod journeys;
pub use inbox::{InboxCounts, InboxPage, InboxStore, Marked, Stored};
pub use journeys::{Advanced, JourneyStore, Journeys};

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

/// The provider refused because of Herald's own standing with it, not because of the
/// request or its recipient: a disabled SNS platform application, an expired or revoked
/// platform credential, a missing permission. Retrying cannot help until someone fixes
/// the setup, but nothing about the message or the person is wrong either: the message
/// is held (retried, then dead-lettered) and an operator is told. Carried as
/// [`PortError::Unknown`], so it is retryable and existing matches on `PortError` hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("application-level failure ({code}): {message}")]
pub struct ApplicationError {
    pub code: String,
    pub message: String,
}

impl PortError {
    /// An [`ApplicationError`].
    pub fn application(code: impl Into<String>, message: impl Into<String>) -> Self {
        PortError::Unknown(anyhow::Error::new(ApplicationError { code: code.into(), message: message.into() }))
    }

    /// The provider's code when this is an [`ApplicationError`].
    pub fn application_code(&self) -> Option<&str> {
        match self {
            PortError::Unknown(e) => e.downcast_ref::<ApplicationError>().map(|a| a.code.as_str()),
            _ => None,
        }
    }

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
        /// When the first copy was admitted.
        accepted_at: Option<DateTime<Utc>>,
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

/// A dispatch's claim on a send, made before the provider call.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub id: &'a MessageId,
    pub channel: Channel,
    /// `all` mode: each channel is claimed on its own; otherwise one channel per message.
    pub per_channel: bool,
    /// The A/B variant the message was assigned, recorded for lift measurement.
    pub variant: Option<&'a str>,
    /// The version of the template it is rendered from.
    pub template_version: u32,
    pub at: DateTime<Utc>,
    /// Until when the claim holds without a provider id recorded: past this, the attempt
    /// is taken as abandoned and another may claim the send.
    pub until: DateTime<Utc>,
    /// Names this attempt (the SQS message and its receive count): a claim whose write
    /// was applied but answered with an error, and retried by the SDK, finds its own
    /// token and knows the send is its own, instead of waiting for the claim to run out.
    pub token: &'a str,
}

/// What came of a [`Claim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// This attempt holds the send.
    Claimed,
    /// Sent already (a provider id or a later status is recorded), or claimed for
    /// good on this channel (`all` mode): nothing to do.
    Done,
    /// Another attempt claimed the send until `until` and has recorded nothing since:
    /// it may still be sending, or have died. Look again then.
    Held { until: DateTime<Utc> },
    /// No such message in the ledger (expired by TTL, or never admitted).
    Unknown,
}

/// A delivery that is a write to a store of Herald's own (the in-app inbox), recorded in
/// the ledger before the store is written: see [`Ledger::record_delivery`].
#[derive(Debug, Clone, Copy)]
pub struct StoredDelivery<'a> {
    pub id: &'a MessageId,
    pub channel: Channel,
    /// The message's id in that store, should this be its first delivery there.
    pub reference: &'a str,
    /// `all` mode: the channel is delivered beside the others.
    pub per_channel: bool,
    pub variant: Option<&'a str>,
    pub template_version: u32,
    pub at: DateTime<Utc>,
}

/// What came of [`Ledger::record_delivery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// The message is `delivered` on the channel under `reference`: this call's (`first`)
    /// or an earlier attempt's, whose store may not have happened. Store it under that reference.
    Delivered { reference: String, first: bool },
    /// The message went another way (sent on another channel, or closed: suppressed,
    /// expired, failed): nothing to store.
    Elsewhere,
    /// No such message in the ledger (expired by TTL, or never admitted).
    Unknown,
}

impl RejectionRecord {
    /// How long a rejection stays in the ledger.
    pub const RETENTION_DAYS: i64 = 30;

    /// A record Herald itself wrote but cannot read (a bug, or a body from
    /// an older version): recorded so it can be found, then dropped. A parser's
    /// `detail` quotes the body: whatever looks like a contact point is redacted.
    pub fn unreadable(
        source_id: &str,
        code: &str,
        detail: impl Into<String>,
        body_bytes: usize,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            source_id: source_id.to_owned(),
            code: code.to_owned(),
            detail: redact_contacts(&detail.into()),
            idempotency_key: None,
            body_bytes,
            at,
            expires_at: at + chrono::TimeDelta::days(Self::RETENTION_DAYS),
        }
    }
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
    /// Applies only to a message sent on one of these channels (its recorded `channel`),
    /// checked in the same write: a custom provider reports on its channels only.
    /// `Some(empty)` applies to none. Honoured by [`Ledger::advance`] (and `transition`).
    pub on_channels: Option<Vec<Channel>>,
}

impl Transition {
    pub fn new(status: Status, at: DateTime<Utc>) -> Self {
        Self {
            status,
            reason: None,
            detail: None,
            channel: None,
            provider_id: None,
            template_version: None,
            at,
            on_channels: None,
        }
    }
    pub fn reason(mut self, reason: Reason) -> Self {
        self.reason = Some(reason);
        self
    }
    /// The history's text for this step. A provider's or a parser's words may quote an
    /// address, a number or a token: whatever looks like one is redacted here, the one
    /// door every history detail goes through.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(redact_contacts(&detail.into()));
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
    /// The campaign variant it was sent as.
    pub variant: Option<String>,
    /// SMS segments billed, for an SMS.
    pub sms_segments: Option<u32>,
    pub duplicates: u32,
    pub history: Vec<HistoryEntry>,
    /// The conversion `track` recorded on it, if any ([`Ledger::record_conversion`]).
    pub conversion: Option<RecordedConversion>,
    /// A test send (`herald send-test`): the admission's `test` attribute.
    pub test: bool,
}

/// A conversion as the ledger keeps it on a message.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedConversion {
    pub event: String,
    /// RFC 3339, as the history's instants.
    pub at: String,
    pub value: Option<f64>,
}

/// A `track` to record as the conversion of one campaign's message to the person.
#[derive(Debug, Clone, Copy)]
pub struct Conversion<'a> {
    /// The person's message of the campaign (`campaign::message_id`).
    pub id: &'a MessageId,
    /// The message must be of this campaign.
    pub campaign: &'a CampaignId,
    pub event: &'a EventName,
    /// When the person did it.
    pub at: DateTime<Utc>,
    pub value: Option<f64>,
    /// It counts only if the message was accepted at most this long before `at` (and not after).
    pub window: TimeDelta,
}

/// What came of [`Ledger::record_conversion`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Converted {
    /// Recorded: the message's first conversion, or one earlier than the one it had.
    Recorded,
    /// The message has a conversion at or before this one's time: this track again (a
    /// retry, a duplicate) or a later one. Nothing changed.
    AlreadyConverted,
    /// `at` is before the message was accepted, or past the campaign's window.
    OutsideWindow,
    /// The person has no message of this campaign in the ledger (none was sent, or TTL
    /// removed it).
    NoMessage,
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
    /// Counts a duplicate arrival on the original message, once per `source_id` (the SQS
    /// message that carried it): a write retried after it was applied counts once.
    fn note_duplicate(
        &self,
        id: &MessageId,
        source_id: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = PortResult<()>> + Send;
    fn reject(&self, rejection: RejectionRecord) -> impl Future<Output = PortResult<()>> + Send;
    /// Claims the send on `channel` before the provider call (status `sent`), so a
    /// second copy of the job cannot send again.
    fn claim_send(&self, claim: Claim<'_>) -> impl Future<Output = PortResult<Claimed>> + Send;
    /// Lets a retry (or a fallback channel) claim again after a failed provider call,
    /// appending `note` to the history in the same write when given. Only the attempt
    /// that holds the claim (`token`) releases it, once: a second release is a no-op.
    fn release_send(&self, claim: &Claim<'_>, note: Option<Transition>) -> impl Future<Output = PortResult<()>> + Send;
    /// For a channel whose delivery is a write to a store of Herald's own, idempotent per
    /// reference (the in-app inbox): records the message `delivered` on `d.channel` under
    /// `d.reference`, in one conditional write, while no send holds the message (in `all`
    /// mode: while the channel has none); the store is written after. There is no claim
    /// and no separate record of the send: a retry finds the reference recorded here
    /// ([`Recorded::Delivered`] with `first: false`) and stores under it again, so that
    /// a message reaches the store once however often its job runs.
    fn record_delivery(&self, d: StoredDelivery<'_>) -> impl Future<Output = PortResult<Recorded>> + Send;
    /// Records the provider's id (and what an SMS cost) after a send on `channel`: from
    /// then on the claim never expires.
    fn record_sent(
        &self,
        id: &MessageId,
        channel: Channel,
        provider_id: &str,
        sms_segments: Option<u32>,
    ) -> impl Future<Output = PortResult<()>> + Send;
    /// Keeps the fallback job of a push that may fall back, under SNS's message id, for
    /// the asynchronous `DeliveryFailure` SNS reports when the platform refuses the
    /// token after SNS took the message.
    fn remember_fallback(
        &self,
        provider_id: &str,
        job: &EligibilityJob,
        until: DateTime<Utc>,
    ) -> impl Future<Output = PortResult<()>> + Send;
    /// After such a failure: lets the message's next channel claim it (`note` in its
    /// history) and returns the fallback job; `None` when no fallback was kept or the
    /// message has moved on. Taken again before another channel claimed the message,
    /// it returns the job again (the first hand-off may have failed).
    fn take_fallback(
        &self,
        provider_id: &str,
        note: Transition,
    ) -> impl Future<Output = PortResult<Option<EligibilityJob>>> + Send;
    /// Moves a message forward; never backwards, and applying it twice changes nothing.
    fn transition(&self, id: &MessageId, t: Transition) -> impl Future<Output = PortResult<Applied>> + Send;
    /// Eligibility's refusal (suppressed, rejected, expired): like [`Ledger::transition`],
    /// and only while no send holds the message, i.e. while a dispatch could still claim
    /// it. A copy of a job that was already routed and sent is `Stale` here: it never
    /// writes a refusal over a send, nor makes the send's claim fail.
    fn settle(&self, id: &MessageId, t: Transition) -> impl Future<Output = PortResult<Applied>> + Send;
    /// Appends to the history without changing the status (a channel that failed before a
    /// fallback, a delivery delay); records the provider id when it has one.
    fn note(&self, id: &MessageId, t: Transition) -> impl Future<Output = PortResult<()>> + Send;
    fn get(&self, id: &MessageId) -> impl Future<Output = PortResult<Option<LedgerEntry>>> + Send;
    /// Records a conversion on the message `c.id`, in one conditional write: only if the
    /// message exists, is of `c.campaign`, was accepted within `c.window` before `c.at`, and
    /// has no conversion at or before `c.at` (the earliest counts, whatever order tracks
    /// arrive in; its event, time and value are kept). The status is left as it is:
    /// held-out and suppressed messages convert too, which is what lift is measured against.
    fn record_conversion(&self, c: Conversion<'_>) -> impl Future<Output = PortResult<Converted>> + Send;
    /// [`Ledger::transition`], also returning what the ledger knows of the message
    /// (template, campaign, recipient, channel), read back from the same write: as it is
    /// now when the write applied, as it was when it was `Stale`.
    fn advance(
        &self,
        id: &MessageId,
        t: Transition,
    ) -> impl Future<Output = PortResult<(Applied, Option<MessageFacts>)>> + Send {
        async move { self.transition(id, t).await.map(|applied| (applied, None)) }
    }
}

/// What a receipt needs to know of a message: its template and campaign (to count it),
/// its recipient and the channel it was sent on (to record the person's engagement).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageFacts {
    pub template: String,
    pub campaign: Option<String>,
    pub recipient: Option<String>,
    pub channel: Option<String>,
}

// ---------------------------------------------------------------- recipients

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentApplied {
    Applied,
    /// A newer consent for the same scope was already recorded.
    Older,
    /// The same consent (scope, time, answer, source) was recorded already: nothing changed.
    Unchanged,
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
    /// Records that the person opened or clicked a message on `channel` at `at`: only on a
    /// profile that exists, and only if later than the engagement recorded (a repeat or a
    /// late receipt changes nothing). One conditional write; receipts call it for opens and
    /// clicks only, never on the path of a send.
    fn note_engagement(
        &self,
        id: &RecipientId,
        channel: Channel,
        at: DateTime<Utc>,
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

/// Devices by platform endpoint: so a push event (which names only an endpoint)
/// finds its recipient, and a token that moves to another person or is replaced
/// on the same device leaves no stale copy behind.
pub trait DeviceRegistry: Send + Sync {
    /// Records the device for `id` under its slot ([`crate::domain::recipient::device_slot`]):
    /// the endpoint is taken from whoever held it before, and a device id's previous
    /// token is replaced. Returns the devices replaced, whose endpoints nobody uses any more.
    fn register_device(
        &self,
        id: &RecipientId,
        device: &Device,
        device_id: Option<&DeviceId>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = PortResult<Vec<Device>>> + Send;
    /// Removes the device behind an endpoint from its recipient; returns who had it.
    fn remove_endpoint(
        &self,
        endpoint_arn: &str,
    ) -> impl Future<Output = PortResult<Option<(RecipientId, Device)>>> + Send;
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

/// What came of [`CapCounter::try_take`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// This call took a slot for the holder.
    Taken,
    /// The holder had the slot already: a copy of the same job, or a write retried
    /// after it was applied. Nothing more is counted.
    Held,
    /// The window is full.
    Full,
}

impl Take {
    /// Whether the holder has the slot now.
    pub fn holds(self) -> bool {
        self != Take::Full
    }
}

pub trait CapCounter: Send + Sync {
    /// Takes one slot for `holder` (a message id) if the counter is below its max: one
    /// atomic conditional write. A holder counts once however often it asks.
    fn try_take(&self, slot: &CapSlot, holder: &MessageId) -> impl Future<Output = PortResult<Take>> + Send;
    /// Returns the holder's slot, for a message that was not sent after all; a second
    /// give-back changes nothing.
    fn give_back(&self, slot: &CapSlot, holder: &MessageId) -> impl Future<Output = PortResult<()>> + Send;
}

// ---------------------------------------------------------------- templates

pub trait TemplateStore: Send + Sync {
    fn get(&self, name: &TemplateName) -> impl Future<Output = PortResult<Option<Arc<CompiledTemplate>>>> + Send;
}

/// Campaign definitions (holdouts, variants), kept beside the templates.
pub trait CampaignStore: Send + Sync {
    fn campaign(&self, name: &CampaignId) -> impl Future<Output = PortResult<Option<Arc<CampaignDoc>>>> + Send;
}

/// Segments and the profile schema, kept beside the templates (pushed by `herald
/// templates push`) and cached like them.
pub trait SegmentStore: Send + Sync {
    fn segment(&self, name: &SegmentName) -> impl Future<Output = PortResult<Option<Arc<SegmentDoc>>>> + Send;
    /// The attributes declared in `profile.toml`; none pushed is an empty schema.
    fn profile_schema(&self) -> impl Future<Output = PortResult<Arc<ProfileSchema>>> + Send;
}

/// The preference center's topics (`topics.toml`), kept beside the templates (pushed by
/// `herald topics push`) and cached like them.
pub trait TopicStore: Send + Sync {
    /// The topics as last pushed; none pushed is an empty list.
    fn topics(&self) -> impl Future<Output = PortResult<Arc<crate::domain::topics::Topics>>> + Send;
}

/// The segment `name` with its exclusion chain, read from `store`: `Ok(Err(why))` when it
/// cannot be resolved (no such segment, an excluded one missing, a cycle), `Err` when the
/// store could not be read.
pub async fn resolve_audience<S: SegmentStore>(store: &S, name: &SegmentName) -> PortResult<Result<Audience, String>> {
    let mut docs: BTreeMap<SegmentName, Arc<SegmentDoc>> = BTreeMap::new();
    let mut next = Some(name.clone());
    while let Some(n) = next.take() {
        if docs.contains_key(&n) || docs.len() > Audience::MAX_CHAIN {
            break;
        }
        if let Some(doc) = store.segment(&n).await? {
            next = doc.exclude.clone();
            docs.insert(n, doc);
        }
    }
    Ok(Audience::resolve(name, |n| docs.get(n).cloned()))
}

// ---------------------------------------------------------------- audience scan

/// Where one worker of a parallel scan of the recipients stands: scan segment `segment`
/// of `total_segments` (DynamoDB's parallel `Scan`), from `start` (an opaque key that a
/// previous [`ScanPage::next`] gave; `None`: from the beginning).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanCursor {
    pub segment: u32,
    pub total_segments: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
}

impl ScanCursor {
    /// The first page of every scan segment.
    pub fn all(total_segments: u32) -> Vec<ScanCursor> {
        (0..total_segments).map(|segment| ScanCursor { segment, total_segments, start: None }).collect()
    }
}

/// One page of a scan: the profiles on it, how many items the table read for it (consent
/// audit and device index items included: what the page cost), and where the next page
/// starts (`None`: this scan segment is finished).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScanPage {
    pub recipients: Vec<Recipient>,
    pub items_read: usize,
    pub next: Option<String>,
}

/// The recipients table read in parallel segments, one page at a time, for a broadcast's
/// fan-out and `herald segments count`.
pub trait AudienceScan: Send + Sync {
    /// At most `limit` items read (before keeping only profiles), eventually consistent.
    fn page(&self, cursor: &ScanCursor, limit: u32) -> impl Future<Output = PortResult<ScanPage>> + Send;
}

/// Every campaign definition at once, for what spans campaigns (a `track` finds the
/// campaigns whose conversion it is).
pub trait CampaignCatalog: Send + Sync {
    /// Every valid campaign document, as last listed: a cached read, not one per call.
    fn campaigns(&self) -> impl Future<Output = PortResult<Arc<Vec<Arc<CampaignDoc>>>>> + Send;
}

// ---------------------------------------------------------------- digests

/// A digest item to count in its head's open window.
#[derive(Debug, Clone, Copy)]
pub struct DigestAppend<'a> {
    pub head: &'a DigestId,
    pub item: &'a MessageId,
    /// The item's request: its recipient, template and digest key name the head.
    pub request: &'a NotifyRequest,
    /// What the item fixes for the window when it opens it.
    pub opening: &'a Opening,
    pub now: DateTime<Utc>,
    /// When the window closes if this item opens it ([`crate::domain::digest::first_close`]).
    pub due: DateTime<Utc>,
}

/// Digest heads (one per recipient, template and key) and their items' data, in the ledger
/// table. See [`crate::domain::digest`].
pub trait Digests: Send + Sync {
    /// [`Ledger::admit`] for a digest item: recorded `digested`, with its `data` (JSON
    /// text) and its head, in the same one conditional write.
    fn admit_item(
        &self,
        admit: Admit<'_>,
        head: &DigestId,
        data: &str,
    ) -> impl Future<Output = PortResult<Admission>> + Send;
    /// Counts the item in its head's open window, once: one conditional write (a second only
    /// when the window's first ids are full). An item counted already, in the open window or
    /// the one sealed before it, is counted no more ([`Appended::already`]).
    fn append(&self, append: DigestAppend<'_>) -> impl Future<Output = PortResult<Appended>> + Send;
    /// The head, read consistently; `None` when no item ever came (or TTL removed it).
    fn head(&self, id: &DigestId) -> impl Future<Output = PortResult<Option<DigestHead>>> + Send;
    /// Seals window `win` (it becomes the head's sealed window, and window `win + 1` opens
    /// empty) in one conditional write: only while `win` is open and no sealed window waits
    /// for its hand-off. `false` when it was not (another copy sealed it, or a hand-off is due).
    fn seal(&self, id: &DigestId, win: u64, now: DateTime<Utc>) -> impl Future<Output = PortResult<bool>> + Send;
    /// Forgets sealed window `win` after its message was handed on; a second call changes nothing.
    fn handed_off(&self, id: &DigestId, win: u64) -> impl Future<Output = PortResult<()>> + Send;
    /// The data of these items, in this order (an item without one is left out).
    fn item_data(&self, ids: &[MessageId]) -> impl Future<Output = PortResult<Vec<serde_json::Value>>> + Send;
}

// ---------------------------------------------------------------- schedule

/// A job waiting in the schedule for its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduled {
    /// Names the job within its minute (a message id, a digest window, a journey step).
    pub id: String,
    pub body: String,
    pub due: DateTime<Utc>,
    /// The queue it goes to when due.
    pub to: Destination,
}

/// Durable waiting for jobs due more than an SQS delay (15 minutes) ahead: deferred
/// sends, digest windows, journey waits.
pub trait ScheduleStore: Send + Sync {
    /// Keeps `body` until `due`, then the scheduler puts it on `to`'s queue. The same `id`
    /// and `due` scheduled twice is one job.
    fn schedule(
        &self,
        id: &str,
        body: &str,
        due: DateTime<Utc>,
        to: Destination,
    ) -> impl Future<Output = PortResult<()>> + Send;
    /// Jobs due in `[from, to]`, oldest first, at most `limit`.
    fn due(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> impl Future<Output = PortResult<Vec<Scheduled>>> + Send;
    fn remove(&self, jobs: &[Scheduled]) -> impl Future<Output = PortResult<()>> + Send;
    /// Where the last run stopped reading.
    fn cursor(&self) -> impl Future<Output = PortResult<Option<DateTime<Utc>>>> + Send;
    fn set_cursor(&self, at: DateTime<Utc>) -> impl Future<Output = PortResult<()>> + Send;
}

// ---------------------------------------------------------------- broadcasts

/// What [`Broadcasts::create`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    New,
    /// The campaign was broadcast before: this is that broadcast.
    Exists(Box<Broadcast>),
}

/// What a pause, resume or cancel did.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlOutcome {
    Applied(Box<Broadcast>),
    /// The broadcast's state did not allow it, or the command is older than its last change.
    NotApplied(Box<Broadcast>),
    Unknown,
}

/// The record of each broadcast and the atomic steps of its fan-out.
pub trait Broadcasts: Send + Sync {
    /// Records a new broadcast, unless its campaign has one.
    fn create(
        &self,
        broadcast: &Broadcast,
        keep_until: DateTime<Utc>,
    ) -> impl Future<Output = PortResult<Created>> + Send;
    /// The broadcast as it stands (a consistent read).
    fn broadcast(&self, campaign: &CampaignId) -> impl Future<Output = PortResult<Option<Broadcast>>> + Send;
    /// Its state as read at most a few seconds ago (ingest asks once per campaign, not per message).
    fn state(&self, campaign: &CampaignId) -> impl Future<Output = PortResult<Option<BroadcastState>>> + Send;
    /// Takes `count` positions of the pace; returns the counter after them.
    fn take_positions(&self, campaign: &CampaignId, count: u64) -> impl Future<Output = PortResult<u64>> + Send;
    /// Commits a page read by `job`: its counts and its chain's cursor (`next`: where the
    /// next page starts, `None`: the scan segment is finished), once. `None` when another
    /// copy of the job committed it first, or the broadcast was resumed since.
    fn commit_page(
        &self,
        job: &PageJob,
        next: Option<&str>,
        counts: &Counts,
    ) -> impl Future<Output = PortResult<Option<Broadcast>>> + Send;
    /// Marks a running broadcast whose every scan segment is finished as done.
    fn finish(&self, campaign: &CampaignId) -> impl Future<Output = PortResult<()>> + Send;
    /// Pauses, resumes (a new epoch, the pace starting again at `pace_origin`) or cancels,
    /// unless the broadcast changed after `at`.
    fn control(
        &self,
        campaign: &CampaignId,
        action: ControlAction,
        at: DateTime<Utc>,
        pace_origin: DateTime<Utc>,
    ) -> impl Future<Output = PortResult<ControlOutcome>> + Send;
}

// ---------------------------------------------------------------- queues

/// Where a stage sends its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Destination {
    Ingest,
    Eligibility,
    /// The broadcast fan-out's page jobs.
    Broadcast,
    /// Digest windows' close jobs.
    Digest,
    /// Journey steps' wake-ups.
    Journey,
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
    /// Makes a received message come back only after `secs` (a retry back-off).
    fn retry_later(
        &self,
        from: Destination,
        receipt_handle: &str,
        secs: u32,
    ) -> impl Future<Output = PortResult<()>> + Send;
}

/// A message that one record of a batch hands on to a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handoff {
    /// The record's position in its batch.
    pub record: usize,
    pub to: Destination,
    pub body: String,
    pub delay_secs: u32,
}

/// Sends what the records of a batch hand on, one group per queue (so in batches of
/// ten, not one call per record), and returns the positions of the records a message
/// of which was not accepted: those records must come back.
pub async fn hand_off<O: Outbox>(outbox: &O, handoffs: Vec<Handoff>) -> BTreeSet<usize> {
    let mut groups: Vec<(Destination, Vec<Outgoing>)> = Vec::new();
    for (n, h) in handoffs.into_iter().enumerate() {
        // The id names the record; `n` keeps it unique when a record sends several.
        let message = Outgoing { id: format!("{}-{n}", h.record), body: h.body, delay_secs: h.delay_secs };
        match groups.iter_mut().find(|(to, _)| *to == h.to) {
            Some((_, batch)) => batch.push(message),
            None => groups.push((h.to, vec![message])),
        }
    }
    let mut failed = BTreeSet::new();
    for (to, batch) in groups {
        let refused = match outbox.send(to, batch.clone()).await {
            Ok(refused) => refused,
            Err(e) => {
                tracing::warn!(error = %e, destination = ?to, "enqueue failed");
                batch.into_iter().map(|m| m.id).collect()
            }
        };
        failed.extend(refused.iter().filter_map(|id| id.split('-').next()?.parse::<usize>().ok()));
    }
    failed
}

// ---------------------------------------------------------------- providers

#[derive(Debug, Clone)]
pub struct EmailMessage {
    pub to: EmailAddress,
    pub from: String,
    pub reply_to: Option<String>,
    pub content: EmailContent,
    pub headers: Vec<(String, String)>,
    /// SES message tags, so events can be correlated back (`herald_message_id`).
    pub tags: Vec<(String, String)>,
}

impl EmailMessage {
    /// `email` ([`crate::domain::email::build`]) addressed to `to`.
    pub fn new(to: EmailAddress, email: crate::domain::email::OutgoingEmail) -> Self {
        let crate::domain::email::OutgoingEmail { from, reply_to, content, headers, tags } = email;
        Self { to, from, reply_to, content, headers, tags }
    }
}

pub trait EmailSender: Send + Sync {
    /// Returns the provider's message id.
    fn send(&self, message: &EmailMessage) -> impl Future<Output = PortResult<String>> + Send;
}

pub trait PushSender: Send + Sync {
    /// Publishes a `MessageStructure=json` payload to one platform endpoint.
    /// `Permanent` only when the endpoint itself is dead (its token will never work
    /// again): `EndpointDisabled`, `NotFound`, or `InvalidParameter` naming the endpoint.
    /// A refusal that is the platform application's (disabled, bad credential) is an
    /// [`ApplicationError`]: every device of that application would get it.
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

// ---------------------------------------------------------------- webhooks

/// Remembers webhook signatures for their freshness window, so a captured request
/// cannot be played again.
///
/// A first use is pending until [`ReplayGuard::confirm`]ed (the request was handed on):
/// an attempt that died in between leaves a pending key that runs out after a short
/// hold, so the sender's retry gets through instead of being taken for a replay.
pub trait ReplayGuard: Send + Sync {
    /// `true` the first time `key` is seen before `until` (or its earlier use was never
    /// confirmed and its hold ran out); `false` for a replay.
    fn first_use(&self, key: &str, until: DateTime<Utc>) -> impl Future<Output = PortResult<bool>> + Send;
    /// The request of `key` was handed on: from now on a second use is a replay.
    fn confirm(&self, key: &str) -> impl Future<Output = PortResult<()>> + Send;
    /// Forgets `key`, so a request that could not be handed on may be retried.
    fn forget(&self, key: &str) -> impl Future<Output = PortResult<()>> + Send;
}

/// The receipts queue, for receipts that arrive over HTTPS.
pub trait ReceiptInbox: Send + Sync {
    fn put(&self, body: &str) -> impl Future<Output = PortResult<()>> + Send;
}

/// A secret kept out of the function's configuration (in Secrets Manager), as the value the
/// handler uses: a signing key, a map of keys. Read when first needed, not at start-up, then
/// kept for a while, so a new value reaches running functions without a redeploy.
pub trait Secret<T>: Send + Sync {
    /// The current value. An error when it cannot be read now or does not parse: a reason to
    /// retry later, never to give up on a message. The error names the secret, never its value.
    fn current(&self) -> impl Future<Output = PortResult<Arc<T>>> + Send;
}

/// HTTPS GETs to SNS: signing certificates and subscription confirmations. The caller
/// checks every URL against the SNS host pattern first.
pub trait CertFetcher: Send + Sync {
    /// The body of a successful GET, at most `max_bytes` long.
    fn get(&self, url: &str, max_bytes: usize) -> impl Future<Output = PortResult<Vec<u8>>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Takes every message except those whose body is "refuse"; a whole queue may be down.
    #[derive(Default)]
    struct Queues {
        calls: Mutex<Vec<(Destination, Vec<String>)>>,
        down: Option<Destination>,
    }

    impl Outbox for Queues {
        async fn send(&self, to: Destination, messages: Vec<Outgoing>) -> PortResult<Vec<String>> {
            self.calls.lock().unwrap().push((to, messages.iter().map(|m| m.body.clone()).collect()));
            if self.down == Some(to) {
                return Err(PortError::Transient("queue down".into()));
            }
            Ok(messages.into_iter().filter(|m| m.body == "refuse").map(|m| m.id).collect())
        }
        async fn retry_later(&self, _: Destination, _: &str, _: u32) -> PortResult<()> {
            Ok(())
        }
    }

    fn handoff(record: usize, to: Destination, body: &str) -> Handoff {
        Handoff { record, to, body: body.into(), delay_secs: 0 }
    }

    #[tokio::test]
    async fn a_batch_hands_off_in_one_call_per_queue_and_names_the_records_to_retry() {
        let email = Destination::Channel(Channel::Email);
        let queues = Queues::default();
        let failed = hand_off(
            &queues,
            vec![
                handoff(0, email, "a"),
                handoff(1, Destination::Eligibility, "b"),
                handoff(2, email, "refuse"),
                handoff(2, email, "c"),
                handoff(4, email, "d"),
            ],
        )
        .await;
        assert_eq!(failed, BTreeSet::from([2]));
        let calls = queues.calls.into_inner().unwrap();
        assert_eq!(
            calls,
            [
                (email, vec!["a".to_owned(), "refuse".into(), "c".into(), "d".into()]),
                (Destination::Eligibility, vec!["b".to_owned()]),
            ]
        );

        let down = Queues { down: Some(email), ..Queues::default() };
        let failed = hand_off(&down, vec![handoff(0, email, "a"), handoff(1, Destination::Eligibility, "b")]).await;
        assert_eq!(failed, BTreeSet::from([0]), "a queue that is down fails its records only");
        assert!(hand_off(&down, Vec::new()).await.is_empty());
        assert_eq!(down.calls.into_inner().unwrap().len(), 2, "nothing to send, no call");
    }
}

// ---------------------------------------------------------------- the event stream

/// One entry of a `PutEvents` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusEntry {
    pub detail_type: String,
    /// The detail as JSON text.
    pub detail: String,
    pub time: Option<DateTime<Utc>>,
}

/// What the bus did with one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryOutcome {
    Published,
    /// Refused for now (`InternalFailure`, `ThrottlingException`): send it again.
    Retry(String),
    /// Refused for what it is (`MalformedDetail`, `InvalidArgument`, ...): sending it
    /// again would be refused again.
    Refused(String),
}

pub trait EventBus: Send + Sync {
    /// One `PutEvents` call of at most ten entries; one outcome per entry, in order.
    fn put(&self, entries: &[BusEntry]) -> impl Future<Output = PortResult<Vec<EntryOutcome>>> + Send;
}

/// Where what cannot be delivered is kept for an operator (a dead-letter queue).
pub trait DeadLetters: Send + Sync {
    fn park(&self, bodies: Vec<String>) -> impl Future<Output = PortResult<()>> + Send;
}
