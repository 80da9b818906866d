//! Provider receipts: what an SES event, an SNS mobile push event or a custom
//! provider's report means for the ledger, the suppression list and device
//! tokens. Pure: parsing and deciding, no I/O.
//!
//! A receipts-queue body is one of:
//! - an SNS `Notification` envelope (SNS to SQS with raw delivery off, or relayed
//!   by the webhook function after its signature was checked, re-serialized from
//!   the signed fields) whose `Message` is an SES event (event publishing,
//!   `eventType`; or identity feedback, `notificationType`) or an SNS mobile push
//!   application event (`EventType`);
//! - a custom provider's report, relayed by the webhook function after its HMAC
//!   was checked: `{"provider_report": {"provider": .., "events": [..]}}`, that one
//!   key and no other.
//!
//! A body with any of SNS's `Type`, `TopicArn` or `Message` is read as SNS and only
//! as SNS: whatever else it carries (fields SNS does not sign) is never a provider report.

use crate::domain::ledger::{Reason, Status, SuppressionCause};
use crate::domain::{Channel, EmailAddress, MessageId, PhoneNumber};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::HashMap;

/// The SES message tag that carries Herald's message id (set at dispatch).
pub const MESSAGE_ID_TAG: &str = "herald_message_id";

/// Details kept in the ledger's history are short and never hold an address.
const DETAIL_MAX: usize = 120;

/// A body the receipts function cannot use, with a stable code and a reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct Unreadable {
    pub code: &'static str,
    pub detail: String,
}

fn unreadable(detail: impl Into<String>) -> Unreadable {
    Unreadable { code: "invalid_event", detail: detail.into() }
}

/// One receipts-queue body, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Receipt {
    Ses(Box<SesEvent>),
    Push(PushEvent),
    Provider(ProviderReceipt),
}

/// An SNS notification as delivered to an SQS subscriber (raw delivery off).
#[derive(Debug, Clone, Deserialize)]
pub struct SnsEnvelope {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Message")]
    pub message: String,
    #[serde(rename = "TopicArn", default)]
    pub topic_arn: Option<String>,
}

#[derive(Deserialize)]
struct Peek {
    #[serde(rename = "Type", default)]
    sns: Option<String>,
    #[serde(rename = "TopicArn", default)]
    topic_arn: Option<serde::de::IgnoredAny>,
    #[serde(rename = "Message", default)]
    message: Option<serde::de::IgnoredAny>,
    #[serde(rename = "provider_report", default)]
    provider_report: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct PeekMessage {
    #[serde(rename = "EventType", default)]
    push: Option<serde::de::IgnoredAny>,
    #[serde(rename = "eventType", default)]
    ses_event: Option<serde::de::IgnoredAny>,
    #[serde(rename = "notificationType", default)]
    ses_notification: Option<serde::de::IgnoredAny>,
}

impl Receipt {
    pub fn parse(body: &str) -> Result<Self, Unreadable> {
        let peek: Peek = serde_json::from_str(body).map_err(|e| unreadable(format!("not a JSON object: {e}")))?;
        let sns_shaped = peek.sns.is_some() || peek.topic_arn.is_some() || peek.message.is_some();
        match (sns_shaped, peek.sns.as_deref()) {
            (true, Some("Notification")) => {
                let envelope: SnsEnvelope =
                    serde_json::from_str(body).map_err(|e| unreadable(format!("not an SNS notification: {e}")))?;
                Self::parse_message(&envelope.message)
            }
            (true, Some(other)) => Err(unreadable(format!("SNS message of type {other} is not a notification"))),
            (true, None) => Err(unreadable("an SNS message without its Type")),
            (false, _) if peek.provider_report.is_some() => serde_json::from_str::<QueuedReport<ProviderReceipt>>(body)
                .map(|q| Receipt::Provider(q.provider_report))
                .map_err(|e| unreadable(format!("not a provider report: {e}"))),
            (false, _) => Err(unreadable("neither an SNS notification nor a provider report")),
        }
    }

    fn parse_message(message: &str) -> Result<Self, Unreadable> {
        let peek: PeekMessage =
            serde_json::from_str(message).map_err(|e| unreadable(format!("the SNS message is not JSON: {e}")))?;
        if peek.push.is_some() {
            serde_json::from_str(message)
                .map(Receipt::Push)
                .map_err(|e| unreadable(format!("not an SNS push event: {e}")))
        } else if peek.ses_event.is_some() || peek.ses_notification.is_some() {
            serde_json::from_str(message)
                .map(|e| Receipt::Ses(Box::new(e)))
                .map_err(|e| unreadable(format!("not an SES event: {e}")))
        } else {
            Err(unreadable("the SNS message is neither an SES event nor a push event"))
        }
    }
}

// ---------------------------------------------------------------- what to do

/// What the ledger should record for an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerChange {
    /// Nothing to write (a `Send` event: dispatch already recorded the send).
    None,
    /// Move the status forward (never backwards: the ledger refuses a lower rank).
    Advance { status: Status, reason: Option<Reason>, detail: String },
    /// Keep the status, add to the history (a transient bounce, a delay).
    Note { status: Status, detail: String },
}

/// An address or number to suppress for every sender, by its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppress {
    pub channel: Channel,
    pub hash: String,
    pub cause: SuppressionCause,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptAction {
    /// The provider's name for the event (`Bounce`, `delivered`): for logs.
    pub event: String,
    pub message_id: Option<MessageId>,
    pub channel: Channel,
    pub provider_id: Option<String>,
    pub change: LedgerChange,
    pub suppress: Vec<Suppress>,
    /// The change applies only to a message sent on one of these channels (a custom
    /// provider's event: on its own channel), checked by the ledger in the same write.
    /// Provider events make no [`LedgerChange::Note`], the one change it does not bind.
    pub on_channels: Option<Vec<Channel>>,
}

impl ReceiptAction {
    /// The channel on which this event shows the person engaging (an open or a click),
    /// given the channel the ledger says the message was sent on: only an open or click
    /// of a message sent on the event's own channel, and on a channel the event's provider
    /// carries, counts. Whether the ledger's status moved does not matter: a second open
    /// is engagement too.
    pub fn engagement(&self, sent_on: Option<&str>) -> Option<Channel> {
        let LedgerChange::Advance { status: Status::Opened | Status::Clicked, .. } = self.change else {
            return None;
        };
        let carried = self.on_channels.as_ref().is_none_or(|on| on.contains(&self.channel));
        (carried && sent_on == Some(self.channel.as_str())).then_some(self.channel)
    }
}

fn bounded(detail: &str) -> String {
    detail.chars().take(DETAIL_MAX).collect()
}

// ---------------------------------------------------------------- SES

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SesEvent {
    /// Event publishing (configuration sets).
    #[serde(default)]
    pub event_type: Option<String>,
    /// The older identity feedback notifications.
    #[serde(default)]
    pub notification_type: Option<String>,
    pub mail: Mail,
    #[serde(default)]
    pub bounce: Option<Bounce>,
    #[serde(default)]
    pub complaint: Option<Complaint>,
    #[serde(default)]
    pub reject: Option<Reject>,
    #[serde(default)]
    pub delivery_delay: Option<DeliveryDelay>,
    #[serde(default)]
    pub failure: Option<RenderingFailure>,
    #[serde(default)]
    pub click: Option<Click>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mail {
    pub message_id: String,
    #[serde(default)]
    pub tags: HashMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bounce {
    pub bounce_type: String,
    #[serde(default)]
    pub bounce_sub_type: Option<String>,
    #[serde(default)]
    pub bounced_recipients: Vec<Address>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Complaint {
    #[serde(default)]
    pub complained_recipients: Vec<Address>,
    #[serde(default)]
    pub complaint_feedback_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reject {
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryDelay {
    #[serde(default)]
    pub delay_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RenderingFailure {
    #[serde(default)]
    pub error_message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Click {
    /// Link tags set in the template (`ses:tags="herald_link:cta"`); the URL itself
    /// is not kept: it can carry a person's tokens.
    #[serde(default)]
    pub link_tags: HashMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    pub email_address: String,
    /// The SMTP status, such as `5.1.1`.
    #[serde(default)]
    pub status: Option<String>,
}

fn hashes(addresses: &[Address], cause: SuppressionCause) -> impl Iterator<Item = Suppress> + '_ {
    addresses.iter().filter_map(|a| EmailAddress::new(a.email_address.as_str()).ok()).map(move |a| Suppress {
        channel: Channel::Email,
        hash: a.suppression_hash(),
        cause,
    })
}

impl SesEvent {
    pub fn kind(&self) -> &str {
        self.event_type.as_deref().or(self.notification_type.as_deref()).unwrap_or("Unknown")
    }

    /// Event publishing carries the `herald_message_id` tag set at dispatch; identity
    /// feedback notifications carry no tags, so they only suppress.
    pub fn message_id(&self) -> Option<MessageId> {
        self.mail.tags.get(MESSAGE_ID_TAG).and_then(|v| v.first()).and_then(|v| MessageId::parse(v))
    }

    pub fn action(&self) -> ReceiptAction {
        let event = self.kind().to_owned();
        let advance = |status, reason, detail: String| LedgerChange::Advance { status, reason, detail };
        let mut suppress = Vec::new();
        let change = match event.as_str() {
            "Send" => LedgerChange::None,
            "Delivery" => advance(Status::Delivered, None, String::new()),
            "Open" => advance(Status::Opened, None, String::new()),
            "Click" => {
                let tag = self.click.as_ref().and_then(|c| c.link_tags.get("herald_link")).and_then(|v| v.first());
                advance(Status::Clicked, None, tag.map(|t| format!("link {t}")).unwrap_or_default())
            }
            "Bounce" => {
                let bounce = self.bounce.as_ref();
                let kind = bounce.map_or("Undetermined", |b| b.bounce_type.as_str());
                let sub = bounce.and_then(|b| b.bounce_sub_type.as_deref()).unwrap_or("");
                let status = bounce.and_then(|b| b.bounced_recipients.iter().find_map(|r| r.status.as_deref()));
                let detail = match status {
                    Some(s) => format!("{kind}/{sub} {s}"),
                    None => format!("{kind}/{sub}"),
                };
                if kind == "Permanent" {
                    // Every permanent sub-type (General, NoEmail, Suppressed, OnAccountSuppressionList)
                    // means the address will not take mail: stop sending to it.
                    suppress.extend(
                        bounce.into_iter().flat_map(|b| hashes(&b.bounced_recipients, SuppressionCause::Bounce)),
                    );
                    advance(Status::Bounced, Some(Reason::SuppressedBounce), detail)
                } else {
                    // Transient and undetermined bounces do not suppress: SES retries those,
                    // and the mailbox may take mail tomorrow.
                    LedgerChange::Note { status: Status::Bounced, detail }
                }
            }
            "Complaint" => {
                let complaint = self.complaint.as_ref();
                suppress.extend(
                    complaint.into_iter().flat_map(|c| hashes(&c.complained_recipients, SuppressionCause::Complaint)),
                );
                let detail = complaint.and_then(|c| c.complaint_feedback_type.clone()).unwrap_or_default();
                advance(Status::Complained, Some(Reason::SuppressedComplaint), detail)
            }
            "Reject" => {
                let detail = self.reject.as_ref().and_then(|r| r.reason.clone()).unwrap_or_default();
                advance(Status::Failed, Some(Reason::ProviderRejected), detail)
            }
            "Rendering Failure" => {
                let detail = self.failure.as_ref().and_then(|f| f.error_message.clone()).unwrap_or_default();
                advance(Status::Failed, Some(Reason::RenderFailed), detail)
            }
            "DeliveryDelay" => {
                let kind = self.delivery_delay.as_ref().and_then(|d| d.delay_type.as_deref()).unwrap_or("Undetermined");
                LedgerChange::Note { status: Status::Sent, detail: format!("delivery delayed: {kind}") }
            }
            // `Subscription` (SES subscription management) and event types added later.
            _ => LedgerChange::None,
        };
        let change = match change {
            LedgerChange::Advance { status, reason, detail } => {
                LedgerChange::Advance { status, reason, detail: bounded(&detail) }
            }
            LedgerChange::Note { status, detail } => LedgerChange::Note { status, detail: bounded(&detail) },
            LedgerChange::None => LedgerChange::None,
        };
        ReceiptAction {
            event,
            message_id: self.message_id(),
            channel: Channel::Email,
            provider_id: Some(self.mail.message_id.clone()),
            change,
            suppress,
            on_channels: None,
        }
    }
}

// ---------------------------------------------------------------- SNS mobile push

/// An SNS mobile push application event (`EventEndpointUpdated`,
/// `EventEndpointDeleted`, `EventDeliveryFailure` on the platform application).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PushEvent {
    pub event_type: String,
    #[serde(default)]
    pub endpoint_arn: Option<String>,
    /// An endpoint attribute: SNS attributes are strings (`"false"`); a JSON boolean is taken too.
    #[serde(default)]
    pub enabled: Option<serde_json::Value>,
    #[serde(default)]
    pub failure_type: Option<String>,
    /// The platform application (`arn:…:app/GCM/<name>`).
    #[serde(default)]
    pub resource: Option<String>,
    /// A delivery failure's SNS message id: what `Publish` answered dispatch.
    #[serde(default)]
    pub message_id: Option<String>,
}

/// Why a device token is removed from its recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCause {
    /// The platform disabled the endpoint (the app was uninstalled, the token expired).
    EndpointDisabled,
    /// The endpoint was deleted (by Herald, or by hand).
    EndpointDeleted,
    /// A delivery failed because the platform refused the token.
    InvalidToken,
}

impl TokenCause {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenCause::EndpointDisabled => "endpoint_disabled",
            TokenCause::EndpointDeleted => "endpoint_deleted",
            TokenCause::InvalidToken => "invalid_token",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushAction {
    /// Remove the token behind this endpoint from whoever registered it.
    RemoveDevice { endpoint_arn: String, cause: TokenCause },
    /// Nothing to do; the reason is for the log.
    Ignore(&'static str),
}

impl PushEvent {
    /// The platform (`GCM`, `APNS`, `APNS_SANDBOX`) of the application, for metrics.
    pub fn platform(&self) -> &str {
        self.resource
            .as_deref()
            .and_then(|r| r.split(":app/").nth(1))
            .and_then(|r| r.split('/').next())
            .unwrap_or("unknown")
    }

    /// The SNS message id of a push that failed because the platform refused its token:
    /// that message may still fall back to its next channel.
    pub fn failed_send(&self) -> Option<&str> {
        let condemned = matches!(self.action(), PushAction::RemoveDevice { .. });
        (self.event_type == "DeliveryFailure" && condemned)
            .then_some(self.message_id.as_deref())
            .flatten()
            .filter(|id| !id.is_empty())
    }

    pub fn action(&self) -> PushAction {
        let Some(arn) = self.endpoint_arn.clone().filter(|a| !a.is_empty()) else {
            return PushAction::Ignore("no EndpointArn");
        };
        let disabled = match &self.enabled {
            Some(serde_json::Value::String(s)) => s.eq_ignore_ascii_case("false"),
            Some(serde_json::Value::Bool(b)) => !b,
            _ => false,
        };
        let cause = match (self.event_type.as_str(), self.failure_type.as_deref()) {
            ("EndpointUpdated", _) if disabled => TokenCause::EndpointDisabled,
            ("EndpointUpdated", _) => return PushAction::Ignore("endpoint updated, still enabled"),
            ("EndpointDeleted", _) => TokenCause::EndpointDeleted,
            ("DeliveryFailure", Some("EndpointDisabled")) => TokenCause::EndpointDisabled,
            ("DeliveryFailure", Some("InvalidPlatformToken")) => TokenCause::InvalidToken,
            ("DeliveryFailure", _) => return PushAction::Ignore("delivery failure that does not condemn the token"),
            _ => return PushAction::Ignore("event type not acted on"),
        };
        PushAction::RemoveDevice { endpoint_arn: arn, cause }
    }
}

// ---------------------------------------------------------------- custom providers

/// What a custom provider reports about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderStatus {
    Delivered,
    Opened,
    Clicked,
    /// A permanent bounce: the address or number will not take messages.
    Bounced,
    Complained,
    /// The provider refused or gave up for good.
    Failed,
    /// The person opted out on the provider's side (an SMS `STOP`).
    OptedOut,
}

impl ProviderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderStatus::Delivered => "delivered",
            ProviderStatus::Opened => "opened",
            ProviderStatus::Clicked => "clicked",
            ProviderStatus::Bounced => "bounced",
            ProviderStatus::Complained => "complained",
            ProviderStatus::Failed => "failed",
            ProviderStatus::OptedOut => "opted_out",
        }
    }
}

fn message_id<'de, D: Deserializer<'de>>(d: D) -> Result<MessageId, D::Error> {
    let raw = String::deserialize(d)?;
    MessageId::parse(&raw)
        .ok_or_else(|| serde::de::Error::custom("message_id must be a Herald message id (32 hex digits)"))
}

/// One event in a provider's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderEvent {
    /// Herald's id for the message (what dispatch handed the provider).
    #[serde(deserialize_with = "message_id")]
    pub message_id: MessageId,
    pub channel: Channel,
    pub status: ProviderStatus,
    /// The provider's own id for the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    /// The address or number concerned, needed to suppress it on `bounced`,
    /// `complained` and `opted_out`. Hashed on receipt, never stored or logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What a custom provider POSTs to the webhook: `{"events": [..]}`, 1 to 100 events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderReport {
    pub events: Vec<ProviderEvent>,
}

impl ProviderReport {
    pub const MAX_EVENTS: usize = 100;

    /// Parses and checks a report; an error says what to fix.
    pub fn parse(body: &[u8]) -> Result<Self, Unreadable> {
        let report: Self =
            serde_json::from_slice(body).map_err(|e| unreadable(format!("not a provider report: {e}")))?;
        if report.events.is_empty() || report.events.len() > Self::MAX_EVENTS {
            return Err(unreadable(format!("a report holds 1 to {} events", Self::MAX_EVENTS)));
        }
        for (i, e) in report.events.iter().enumerate() {
            if let Some(address) = &e.address {
                let valid = match e.channel {
                    Channel::Email => EmailAddress::new(address.as_str()).is_ok(),
                    Channel::Sms => PhoneNumber::new(address.as_str()).is_ok(),
                    Channel::Push | Channel::Inbox => false,
                };
                if !valid {
                    return Err(unreadable(format!("events[{i}].address is not a valid {} address", e.channel)));
                }
            }
            if e.provider_id.as_ref().is_some_and(|p| p.len() > 256)
                || e.detail.as_ref().is_some_and(|d| d.len() > 1024)
            {
                return Err(unreadable(format!("events[{i}]: provider_id or detail is too long")));
            }
        }
        Ok(report)
    }
}

/// A checked report as the webhook relays it to the receipts queue, inside
/// `{"provider_report": ..}` ([`ProviderReceipt::to_body`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderReceipt {
    /// The provider's name, as configured for its secret.
    pub provider: String,
    pub events: Vec<ProviderEvent>,
}

/// The envelope of a provider's report on the receipts queue: one key, which an SNS
/// message (always with `Type`, `TopicArn` and `Message`) cannot be read as.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueuedReport<R> {
    provider_report: R,
}

impl ProviderReceipt {
    pub fn new(provider: &str, report: ProviderReport) -> Self {
        Self { provider: provider.to_owned(), events: report.events }
    }

    /// The receipts-queue body.
    pub fn to_body(&self) -> serde_json::Result<String> {
        serde_json::to_string(&QueuedReport { provider_report: self })
    }
}

impl ProviderEvent {
    pub fn action(&self) -> ReceiptAction {
        let advance = |status, reason| LedgerChange::Advance {
            status,
            reason,
            detail: self.detail.as_deref().map(bounded).unwrap_or_default(),
        };
        let suppress_as = |cause| {
            let hash = match self.channel {
                Channel::Email => {
                    self.address.as_deref().and_then(|a| EmailAddress::new(a).ok()).map(|a| a.suppression_hash())
                }
                Channel::Sms => {
                    self.address.as_deref().and_then(|a| PhoneNumber::new(a).ok()).map(|p| p.suppression_hash())
                }
                Channel::Push | Channel::Inbox => None,
            };
            hash.map(|hash| Suppress { channel: self.channel, hash, cause }).into_iter().collect()
        };
        let (change, suppress) = match self.status {
            ProviderStatus::Delivered => (advance(Status::Delivered, None), Vec::new()),
            ProviderStatus::Opened => (advance(Status::Opened, None), Vec::new()),
            ProviderStatus::Clicked => (advance(Status::Clicked, None), Vec::new()),
            ProviderStatus::Bounced => {
                (advance(Status::Bounced, Some(Reason::SuppressedBounce)), suppress_as(SuppressionCause::Bounce))
            }
            ProviderStatus::Complained => (
                advance(Status::Complained, Some(Reason::SuppressedComplaint)),
                suppress_as(SuppressionCause::Complaint),
            ),
            ProviderStatus::Failed => (advance(Status::Failed, Some(Reason::ProviderRejected)), Vec::new()),
            // The message itself arrived: the opt-out is about the next one.
            ProviderStatus::OptedOut => (LedgerChange::None, suppress_as(SuppressionCause::OptOut)),
        };
        ReceiptAction {
            event: self.status.as_str().to_owned(),
            message_id: Some(self.message_id.clone()),
            channel: self.channel,
            provider_id: self.provider_id.clone(),
            change,
            suppress,
            // A provider speaks for the channel it names, which the webhook checked is one
            // of its own: never for a message sent on another.
            on_channels: Some(vec![self.channel]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    fn event(json: serde_json::Value) -> SesEvent {
        serde_json::from_value(json).unwrap()
    }

    fn mail() -> serde_json::Value {
        serde_json::json!({"messageId": "ses-1", "tags": {"herald_message_id": [ID]}})
    }

    fn ses(event_type: &str, extra: serde_json::Value) -> ReceiptAction {
        let mut v = serde_json::json!({"eventType": event_type, "mail": mail()});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        event(v).action()
    }

    #[test]
    fn every_ses_event_type_maps_to_one_change() {
        use LedgerChange::*;
        let advance = |status, reason: Option<Reason>, detail: &str| Advance { status, reason, detail: detail.into() };
        let cases: Vec<(&str, serde_json::Value, LedgerChange)> = vec![
            ("Send", serde_json::json!({"send": {}}), None),
            ("Delivery", serde_json::json!({}), advance(Status::Delivered, Option::None, "")),
            ("Open", serde_json::json!({}), advance(Status::Opened, Option::None, "")),
            (
                "Click",
                serde_json::json!({"click": {"link": "https://x.example/?t=secret", "linkTags": {"herald_link": ["cta"]}}}),
                advance(Status::Clicked, Option::None, "link cta"),
            ),
            (
                "Bounce",
                serde_json::json!({"bounce": {"bounceType": "Permanent", "bounceSubType": "NoEmail",
                    "bouncedRecipients": [{"emailAddress": "a@example.org", "status": "5.1.1"}]}}),
                advance(Status::Bounced, Some(Reason::SuppressedBounce), "Permanent/NoEmail 5.1.1"),
            ),
            (
                "Bounce",
                serde_json::json!({"bounce": {"bounceType": "Transient", "bounceSubType": "MailboxFull",
                    "bouncedRecipients": [{"emailAddress": "a@example.org"}]}}),
                Note { status: Status::Bounced, detail: "Transient/MailboxFull".into() },
            ),
            (
                "Bounce",
                serde_json::json!({"bounce": {"bounceType": "Undetermined", "bouncedRecipients": []}}),
                Note { status: Status::Bounced, detail: "Undetermined/".into() },
            ),
            (
                "Complaint",
                serde_json::json!({"complaint": {"complainedRecipients": [{"emailAddress": "a@example.org"}],
                    "complaintFeedbackType": "abuse"}}),
                advance(Status::Complained, Some(Reason::SuppressedComplaint), "abuse"),
            ),
            (
                "Reject",
                serde_json::json!({"reject": {"reason": "Bad content"}}),
                advance(Status::Failed, Some(Reason::ProviderRejected), "Bad content"),
            ),
            (
                "Rendering Failure",
                serde_json::json!({"failure": {"errorMessage": "Attribute 'x' is not present", "templateName": "t"}}),
                advance(Status::Failed, Some(Reason::RenderFailed), "Attribute 'x' is not present"),
            ),
            (
                "DeliveryDelay",
                serde_json::json!({"deliveryDelay": {"delayType": "MailboxFull"}}),
                Note { status: Status::Sent, detail: "delivery delayed: MailboxFull".into() },
            ),
            ("Subscription", serde_json::json!({}), None),
        ];
        for (kind, extra, expected) in cases {
            let a = ses(kind, extra);
            assert_eq!(a.change, expected, "{kind}");
            assert_eq!(a.on_channels, Option::None, "SES speaks for its own messages");
            assert_eq!(a.message_id.as_ref().map(MessageId::as_str), Some(ID), "{kind}");
            assert_eq!(a.provider_id.as_deref(), Some("ses-1"));
        }
    }

    #[test]
    fn hard_bounces_and_complaints_suppress_soft_bounces_do_not() {
        let hash = EmailAddress::new("ana@example.org").unwrap().suppression_hash();
        let hard = ses(
            "Bounce",
            serde_json::json!({"bounce": {"bounceType": "Permanent", "bounceSubType": "General",
                "bouncedRecipients": [{"emailAddress": "Ana@Example.org"}, {"emailAddress": "not an address"}]}}),
        );
        assert_eq!(
            hard.suppress,
            vec![Suppress { channel: Channel::Email, hash: hash.clone(), cause: SuppressionCause::Bounce }]
        );
        let soft = ses(
            "Bounce",
            serde_json::json!({"bounce": {"bounceType": "Transient", "bouncedRecipients": [{"emailAddress": "ana@example.org"}]}}),
        );
        assert!(soft.suppress.is_empty());
        let complaint = event(serde_json::json!({"notificationType": "Complaint", "mail": {"messageId": "x"},
            "complaint": {"complainedRecipients": [{"emailAddress": "ana@example.org"}]}}))
        .action();
        assert_eq!(complaint.message_id, Option::None, "feedback notifications carry no tags");
        assert_eq!(complaint.suppress[0].cause, SuppressionCause::Complaint);
    }

    #[test]
    fn details_are_bounded() {
        let long = "x".repeat(1000);
        let a = ses("Reject", serde_json::json!({"reject": {"reason": long}}));
        let LedgerChange::Advance { detail, .. } = a.change else { panic!() };
        assert_eq!(detail.len(), DETAIL_MAX);
    }

    #[test]
    fn push_events_remove_dead_tokens_only() {
        let arn = "arn:aws:sns:us-east-1:123456789012:endpoint/GCM/app/1";
        let push = |v: serde_json::Value| serde_json::from_value::<PushEvent>(v).unwrap().action();
        let remove = |cause| PushAction::RemoveDevice { endpoint_arn: arn.into(), cause };
        let cases = [
            (
                serde_json::json!({"EventType": "EndpointUpdated", "EndpointArn": arn, "Enabled": "false"}),
                remove(TokenCause::EndpointDisabled),
            ),
            (
                serde_json::json!({"EventType": "EndpointUpdated", "EndpointArn": arn, "Enabled": false}),
                remove(TokenCause::EndpointDisabled),
            ),
            (
                serde_json::json!({"EventType": "EndpointUpdated", "EndpointArn": arn, "Enabled": "true"}),
                PushAction::Ignore("endpoint updated, still enabled"),
            ),
            (
                serde_json::json!({"EventType": "EndpointUpdated", "EndpointArn": arn}),
                PushAction::Ignore("endpoint updated, still enabled"),
            ),
            (
                serde_json::json!({"EventType": "EndpointDeleted", "EndpointArn": arn}),
                remove(TokenCause::EndpointDeleted),
            ),
            (
                serde_json::json!({"EventType": "DeliveryFailure", "EndpointArn": arn, "FailureType": "EndpointDisabled"}),
                remove(TokenCause::EndpointDisabled),
            ),
            (
                serde_json::json!({"EventType": "DeliveryFailure", "EndpointArn": arn, "FailureType": "InvalidPlatformToken"}),
                remove(TokenCause::InvalidToken),
            ),
            (
                serde_json::json!({"EventType": "DeliveryFailure", "EndpointArn": arn, "FailureType": "Throttled"}),
                PushAction::Ignore("delivery failure that does not condemn the token"),
            ),
            (
                serde_json::json!({"EventType": "EndpointCreated", "EndpointArn": arn}),
                PushAction::Ignore("event type not acted on"),
            ),
            (serde_json::json!({"EventType": "EndpointDeleted"}), PushAction::Ignore("no EndpointArn")),
        ];
        for (v, expected) in cases {
            assert_eq!(push(v.clone()), expected, "{v}");
        }
        let e: PushEvent = serde_json::from_value(serde_json::json!({"EventType": "EndpointDeleted",
            "Resource": "arn:aws:sns:us-east-1:123456789012:app/APNS_SANDBOX/herald-ios"}))
        .unwrap();
        assert_eq!(e.platform(), "APNS_SANDBOX");

        let failed =
            |v: serde_json::Value| serde_json::from_value::<PushEvent>(v).unwrap().failed_send().map(str::to_owned);
        let event = |kind: &str, failure: &str| serde_json::json!({"EventType": kind, "EndpointArn": arn, "FailureType": failure, "MessageId": "sns-1"});
        assert_eq!(failed(event("DeliveryFailure", "InvalidPlatformToken")).as_deref(), Some("sns-1"));
        assert_eq!(failed(event("DeliveryFailure", "EndpointDisabled")).as_deref(), Some("sns-1"));
        assert_eq!(failed(event("DeliveryFailure", "Throttled")), None, "the token is fine: no fallback");
        assert_eq!(failed(event("EndpointDeleted", "")), None, "no message failed");
    }

    #[test]
    fn bodies_are_told_apart() {
        let sns = |message: serde_json::Value| {
            serde_json::json!({"Type": "Notification", "Message": message.to_string()}).to_string()
        };
        assert!(matches!(
            Receipt::parse(&sns(serde_json::json!({"eventType": "Send", "mail": mail()}))),
            Ok(Receipt::Ses(_))
        ));
        assert!(matches!(
            Receipt::parse(&sns(serde_json::json!({"notificationType": "Bounce", "mail": {"messageId": "x"}}))),
            Ok(Receipt::Ses(_))
        ));
        assert!(matches!(
            Receipt::parse(&sns(serde_json::json!({"EventType": "EndpointDeleted"}))),
            Ok(Receipt::Push(_))
        ));
        let report = ProviderReceipt::new(
            "acme",
            ProviderReport::parse(
                format!(r#"{{"events":[{{"message_id":"{ID}","channel":"sms","status":"delivered"}}]}}"#).as_bytes(),
            )
            .unwrap(),
        );
        let body = report.to_body().unwrap();
        assert_eq!(Receipt::parse(&body), Ok(Receipt::Provider(report.clone())));
        let fields: serde_json::Value = serde_json::from_str(&body).unwrap();
        for bad in [
            "not json".to_owned(),
            "[]".to_owned(),
            r#"{"Type": "SubscriptionConfirmation", "Message": "{}"}"#.to_owned(),
            sns(serde_json::json!({"something": "else"})),
            serde_json::json!({"Type": "Notification", "Message": "not json"}).to_string(),
            sns(serde_json::json!({"eventType": "Delivery"})),
            r#"{"type": "provider_report", "provider": "acme"}"#.to_owned(),
            // The envelope with anything beside it, or its report with a field too many.
            serde_json::json!({"provider_report": fields["provider_report"], "type": "provider_report"}).to_string(),
            serde_json::json!({"provider_report": {"provider": "acme", "events": [], "kind": "x"}}).to_string(),
            // The report shape before the envelope: no longer read (and never beside SNS fields).
            serde_json::json!({"type": "provider_report", "provider": "acme", "events": fields["provider_report"]["events"]})
                .to_string(),
        ] {
            assert_eq!(Receipt::parse(&bad).map_err(|e| e.code), Err("invalid_event"), "{bad}");
        }
    }

    #[test]
    fn an_sns_shaped_body_is_never_read_as_a_provider_report() {
        let report = serde_json::json!({"provider": "acme",
            "events": [{"message_id": ID, "channel": "email", "status": "bounced", "address": "a@example.org"}]});
        let push = serde_json::json!({"EventType": "EndpointDeleted"}).to_string();
        for (extra, sns) in [
            // Unsigned fields added to a genuine notification: it stays that notification.
            (serde_json::json!({"Type": "Notification", "Message": push}), true),
            (serde_json::json!({"Type": "Notification", "TopicArn": "t", "Message": push}), true),
            // SNS-shaped but not a notification, or without its Type: refused, not a report.
            (serde_json::json!({"Type": "SubscriptionConfirmation", "Message": push}), false),
            (serde_json::json!({"TopicArn": "t"}), false),
            (serde_json::json!({"Message": push}), false),
        ] {
            for forged in [
                serde_json::json!({"provider_report": report}),
                serde_json::json!({"type": "provider_report", "provider": "acme", "events": report["events"]}),
            ] {
                let mut body = extra.clone();
                if let (Some(b), Some(f)) = (body.as_object_mut(), forged.as_object()) {
                    b.extend(f.clone());
                }
                let parsed = Receipt::parse(&body.to_string());
                if sns {
                    assert!(matches!(parsed, Ok(Receipt::Push(_))), "{body}: {parsed:?}");
                } else {
                    assert!(parsed.is_err(), "{body}: {parsed:?}");
                }
            }
        }
    }

    #[test]
    fn provider_reports_are_checked_and_map_to_changes() {
        let parse = |v: serde_json::Value| ProviderReport::parse(v.to_string().as_bytes());
        let ev = |status: &str, channel: &str, address: Option<&str>| {
            let mut e = serde_json::json!({"message_id": ID, "channel": channel, "status": status});
            if let Some(a) = address {
                e["address"] = a.into();
            }
            e
        };
        for bad in [
            serde_json::json!({"events": []}),
            serde_json::json!({"events": [ev("delivered", "sms", None)], "extra": 1}),
            serde_json::json!({"events": [{"message_id": "nope", "channel": "sms", "status": "delivered"}]}),
            serde_json::json!({"events": [ev("exploded", "sms", None)]}),
            serde_json::json!({"events": [ev("bounced", "email", Some("not-an-address"))]}),
            serde_json::json!({"events": [ev("bounced", "sms", Some("ana@example.org"))]}),
            serde_json::json!({"events": [ev("bounced", "push", Some("x"))]}),
            serde_json::json!({"events": vec![ev("delivered", "sms", None); 101]}),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
        let report = parse(serde_json::json!({"events": [
            ev("delivered", "sms", None),
            ev("bounced", "email", Some("Ana@Example.org")),
            ev("opted_out", "sms", Some("+15555550100")),
            ev("complained", "email", None),
        ]}))
        .unwrap();
        let actions: Vec<ReceiptAction> = report.events.iter().map(ProviderEvent::action).collect();
        assert!(matches!(actions[0].change, LedgerChange::Advance { status: Status::Delivered, .. }));
        assert_eq!(actions[0].channel, Channel::Sms);
        let on: Vec<_> = actions.iter().map(|a| a.on_channels.clone()).collect();
        assert_eq!(
            on,
            [
                Some(vec![Channel::Sms]),
                Some(vec![Channel::Email]),
                Some(vec![Channel::Sms]),
                Some(vec![Channel::Email])
            ],
            "each event applies to a message sent on its own channel only"
        );
        assert_eq!(
            actions[1].suppress,
            vec![Suppress {
                channel: Channel::Email,
                hash: EmailAddress::new("ana@example.org").unwrap().suppression_hash(),
                cause: SuppressionCause::Bounce
            }]
        );
        assert_eq!(actions[2].change, LedgerChange::None);
        assert_eq!(actions[2].suppress[0].hash, PhoneNumber::new("+15555550100").unwrap().suppression_hash());
        assert_eq!(actions[2].suppress[0].cause, SuppressionCause::OptOut);
        assert!(actions[3].suppress.is_empty(), "no address given: nothing to suppress");
        assert!(matches!(actions[3].change, LedgerChange::Advance { status: Status::Complained, .. }));
    }

    #[test]
    fn opens_and_clicks_on_the_channel_sent_are_engagement() {
        let action = |status: Status, channel: Channel, on: Option<Vec<Channel>>| ReceiptAction {
            event: "e".into(),
            message_id: None,
            channel,
            provider_id: None,
            change: LedgerChange::Advance { status, reason: None, detail: String::new() },
            suppress: Vec::new(),
            on_channels: on,
        };
        let cases = [
            (action(Status::Opened, Channel::Email, None), Some("email"), Some(Channel::Email)),
            (action(Status::Clicked, Channel::Sms, Some(vec![Channel::Sms])), Some("sms"), Some(Channel::Sms)),
            (action(Status::Delivered, Channel::Email, None), Some("email"), None),
            (action(Status::Opened, Channel::Email, None), Some("push"), None),
            (action(Status::Opened, Channel::Email, None), None, None),
            (action(Status::Clicked, Channel::Push, Some(vec![Channel::Sms])), Some("push"), None),
        ];
        for (a, sent_on, expected) in cases {
            assert_eq!(a.engagement(sent_on), expected, "{a:?} sent on {sent_on:?}");
        }
        let noted = ReceiptAction { change: LedgerChange::None, ..action(Status::Opened, Channel::Email, None) };
        assert_eq!(noted.engagement(Some("email")), None);
    }
}
