//! Provider receipts: what an SES event (published through SNS) means for the
//! ledger and the suppression list. Pure: parsing and deciding, no I/O.

use crate::domain::ledger::{Reason, Status, SuppressionCause};
use crate::domain::{EmailAddress, MessageId};
use serde::Deserialize;
use std::collections::HashMap;

/// The SES message tag that carries Herald's message id (set at dispatch).
pub const MESSAGE_ID_TAG: &str = "herald_message_id";

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

#[derive(Debug, Clone, Deserialize)]
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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mail {
    pub message_id: String,
    #[serde(default)]
    pub tags: HashMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bounce {
    pub bounce_type: String,
    #[serde(default)]
    pub bounce_sub_type: Option<String>,
    #[serde(default)]
    pub bounced_recipients: Vec<Address>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Complaint {
    #[serde(default)]
    pub complained_recipients: Vec<Address>,
    #[serde(default)]
    pub complaint_feedback_type: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reject {
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    pub email_address: String,
}

/// What the ledger should record for an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerChange {
    /// Nothing to write (a `Send` event: dispatch already recorded the send).
    None,
    /// Move the status forward.
    Advance { status: Status, reason: Option<Reason>, detail: String },
    /// Keep the status, add to the history (a transient bounce, a delay).
    Note { status: Status, detail: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptAction {
    pub event: String,
    pub message_id: Option<MessageId>,
    pub provider_id: String,
    pub change: LedgerChange,
    /// Suppression-list entries: (hash of the address, cause).
    pub suppress: Vec<(String, SuppressionCause)>,
}

fn hashes(addresses: &[Address]) -> impl Iterator<Item = String> + '_ {
    addresses.iter().filter_map(|a| EmailAddress::new(a.email_address.as_str()).ok()).map(|a| a.suppression_hash())
}

impl SesEvent {
    pub fn kind(&self) -> &str {
        self.event_type.as_deref().or(self.notification_type.as_deref()).unwrap_or("Unknown")
    }

    pub fn action(&self) -> ReceiptAction {
        let event = self.kind().to_owned();
        let message_id = self.mail.tags.get(MESSAGE_ID_TAG).and_then(|v| v.first()).and_then(|v| MessageId::parse(v));
        let mut suppress = Vec::new();
        let change = match event.as_str() {
            "Send" => LedgerChange::None,
            "Delivery" => LedgerChange::Advance { status: Status::Delivered, reason: None, detail: String::new() },
            "Open" => LedgerChange::Advance { status: Status::Opened, reason: None, detail: String::new() },
            "Click" => LedgerChange::Advance { status: Status::Clicked, reason: None, detail: String::new() },
            "Bounce" => {
                let bounce = self.bounce.as_ref();
                let kind = bounce.map_or("Undetermined", |b| b.bounce_type.as_str());
                let sub = bounce.and_then(|b| b.bounce_sub_type.as_deref()).unwrap_or("");
                let detail = format!("{kind}/{sub}");
                if kind == "Permanent" {
                    suppress.extend(
                        bounce
                            .into_iter()
                            .flat_map(|b| hashes(&b.bounced_recipients))
                            .map(|h| (h, SuppressionCause::Bounce)),
                    );
                    LedgerChange::Advance { status: Status::Bounced, reason: Some(Reason::SuppressedBounce), detail }
                } else {
                    // Transient and undetermined bounces do not suppress: SES retries those.
                    LedgerChange::Note { status: Status::Bounced, detail }
                }
            }
            "Complaint" => {
                let complaint = self.complaint.as_ref();
                suppress.extend(
                    complaint
                        .into_iter()
                        .flat_map(|c| hashes(&c.complained_recipients))
                        .map(|h| (h, SuppressionCause::Complaint)),
                );
                let detail = complaint.and_then(|c| c.complaint_feedback_type.clone()).unwrap_or_default();
                LedgerChange::Advance { status: Status::Complained, reason: Some(Reason::SuppressedComplaint), detail }
            }
            "Reject" => {
                let detail = self.reject.as_ref().and_then(|r| r.reason.clone()).unwrap_or_default();
                LedgerChange::Advance { status: Status::Failed, reason: Some(Reason::ProviderRejected), detail }
            }
            "Rendering Failure" => LedgerChange::Advance {
                status: Status::Failed,
                reason: Some(Reason::RenderFailed),
                detail: String::new(),
            },
            "DeliveryDelay" => LedgerChange::Note { status: Status::Sent, detail: "delivery delayed".into() },
            _ => LedgerChange::None,
        };
        ReceiptAction { event, message_id, provider_id: self.mail.message_id.clone(), change, suppress }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: serde_json::Value) -> SesEvent {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn events_map_to_changes() {
        let id = "0123456789abcdef0123456789abcdef";
        let mail = serde_json::json!({"messageId": "ses-1", "tags": {"herald_message_id": [id]}});
        let a = event(serde_json::json!({"eventType": "Delivery", "mail": mail})).action();
        assert_eq!(a.message_id.as_ref().map(MessageId::as_str), Some(id));
        assert!(matches!(a.change, LedgerChange::Advance { status: Status::Delivered, .. }));
        assert!(a.suppress.is_empty());

        let hard = event(serde_json::json!({"eventType": "Bounce", "mail": mail, "bounce": {
            "bounceType": "Permanent", "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": "Ana@Example.org"}]}}))
        .action();
        assert_eq!(
            hard.suppress,
            vec![(EmailAddress::new("ana@example.org").unwrap().suppression_hash(), SuppressionCause::Bounce)]
        );
        assert!(matches!(hard.change, LedgerChange::Advance { status: Status::Bounced, .. }));

        let soft = event(serde_json::json!({"eventType": "Bounce", "mail": mail, "bounce": {
            "bounceType": "Transient", "bounceSubType": "MailboxFull",
            "bouncedRecipients": [{"emailAddress": "ana@example.org"}]}}))
        .action();
        assert!(soft.suppress.is_empty());
        assert!(matches!(soft.change, LedgerChange::Note { .. }));

        let complaint = event(serde_json::json!({"notificationType": "Complaint", "mail": {"messageId": "x"},
            "complaint": {"complainedRecipients": [{"emailAddress": "ana@example.org"}]}}))
        .action();
        assert_eq!(complaint.message_id, None, "feedback notifications carry no tags");
        assert_eq!(complaint.suppress.len(), 1);

        assert_eq!(event(serde_json::json!({"eventType": "Send", "mail": mail})).action().change, LedgerChange::None);
    }
}
