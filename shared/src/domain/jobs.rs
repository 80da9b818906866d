//! Messages between Herald's own stages (not part of the producer contract).

use crate::contract::{Locale, NotifyRequest};
use crate::domain::caps::CapSlot;
use crate::domain::recipient::Device;
use crate::domain::{Channel, EmailAddress, MessageId, PhoneNumber};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Ingest → eligibility, and dispatch → eligibility for a fallback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EligibilityJob {
    pub message_id: MessageId,
    pub request: NotifyRequest,
    /// Channels already attempted, which a fallback must not try again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tried: Vec<Channel>,
    /// Set once the ledger says `deferred`, so waiting hops do not write again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deferred: bool,
    /// How many times it went back to the queue because its recipient did not exist yet.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub recipient_waits: u8,
    /// The instant its frequency caps count at (the window a calendar cap takes a slot
    /// in, the end of a rolling one): set when the job is made, so that every copy of it
    /// (SQS delivers at least once) counts in the same windows. Absent: when judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted_at: Option<DateTime<Utc>>,
}

impl EligibilityJob {
    /// The first judgement of a notification ingest admitted at `at`.
    pub fn new(message_id: MessageId, request: NotifyRequest, at: DateTime<Utc>) -> Self {
        Self { message_id, request, tried: Vec::new(), deferred: false, recipient_waits: 0, counted_at: Some(at) }
    }
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

/// Where a dispatch sends: the contact point resolved by eligibility.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Contact {
    Email(EmailAddress),
    Sms(PhoneNumber),
    Push(Vec<Device>),
}

impl Contact {
    pub fn channel(&self) -> Channel {
        match self {
            Contact::Email(_) => Channel::Email,
            Contact::Sms(_) => Channel::Sms,
            Contact::Push(_) => Channel::Push,
        }
    }
}

/// Eligibility → one channel queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DispatchJob {
    pub message_id: MessageId,
    pub request: NotifyRequest,
    pub contact: Contact,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<Locale>,
    /// Channels tried before this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tried: Vec<Channel>,
    /// Whether another channel may be tried if this one fails for good (`first` mode).
    #[serde(default)]
    pub may_fall_back: bool,
    /// The cap slots eligibility took for this send: given back if it does not happen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slots: Vec<CapSlot>,
    /// The campaign variant assigned to the recipient, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl DispatchJob {
    pub fn channel(&self) -> Channel {
        self.contact.channel()
    }

    /// The job that sends eligibility looking for the next channel, made at `at`.
    pub fn fallback(&self, at: DateTime<Utc>) -> EligibilityJob {
        let mut tried = self.tried.clone();
        tried.push(self.channel());
        EligibilityJob { tried, ..EligibilityJob::new(self.message_id.clone(), self.request.clone(), at) }
    }
}
