//! Messages between Herald's own stages (not part of the producer contract).

use crate::contract::{Locale, NotifyRequest, TimeZone};
use crate::domain::caps::CapSlot;
use crate::domain::recipient::Device;
use crate::domain::template::RecipientView;
use crate::domain::{Channel, EmailAddress, MessageId, PhoneNumber};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The largest body Herald puts on a queue: SQS's long-standing limit for a message and
/// for a whole `SendMessageBatch` request. (Queues created since August 2025 may take
/// 1 MiB; 256 KiB holds on every queue, and a job that needs more is a problem anyway.)
pub const MAX_SQS_BODY_BYTES: usize = 256 * 1024;

/// Why SQS would not carry a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnsendableBody {
    #[error("the message would be {bytes} bytes, over the {MAX_SQS_BODY_BYTES} a queue takes")]
    Oversized { bytes: usize },
    /// Outside `#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF`: SQS
    /// refuses the message (or, on newer endpoints, replaces the character), and JSON
    /// carries such characters as escapes (`\uFFFE`) that a parser turns back into them.
    #[error("the message holds U+{code:04X}, a character SQS does not carry")]
    InvalidCharacter { code: u32, at: usize },
}

impl UnsendableBody {
    /// The rejection code for it.
    pub fn code(&self) -> &'static str {
        match self {
            UnsendableBody::Oversized { .. } => "oversized",
            UnsendableBody::InvalidCharacter { .. } => "invalid_characters",
        }
    }
}

/// Whether SQS will carry `body` as a message: at most [`MAX_SQS_BODY_BYTES`], and only the
/// characters SQS allows. Check a job's serialized body before it is queued (eligibility's
/// dispatch job embeds the recipient's devices, and can outgrow a message).
pub fn check_sqs_body(body: &str) -> Result<(), UnsendableBody> {
    if body.len() > MAX_SQS_BODY_BYTES {
        return Err(UnsendableBody::Oversized { bytes: body.len() });
    }
    let allowed =
        |c: char| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..);
    match body.char_indices().find(|&(_, c)| !allowed(c)) {
        Some((at, c)) => Err(UnsendableBody::InvalidCharacter { code: u32::from(c), at }),
        None => Ok(()),
    }
}

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
    /// The person's in-app inbox (no address: the recipient id is enough).
    Inbox,
}

impl Contact {
    pub fn channel(&self) -> Channel {
        match self {
            Contact::Email(_) => Channel::Email,
            Contact::Sms(_) => Channel::Sms,
            Contact::Push(_) => Channel::Push,
            Contact::Inbox => Channel::Inbox,
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
    /// The recipient's profile attributes that the template names (only those: a job
    /// stays small), for `recipient.attributes` in the template.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub attributes: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<TimeZone>,
}

impl DispatchJob {
    pub fn channel(&self) -> Channel {
        self.contact.channel()
    }

    /// The person, as the template sees them (`recipient`).
    pub fn recipient_view(&self) -> RecipientView {
        RecipientView {
            id: self.request.recipient.to_string(),
            attributes: self.attributes.clone(),
            locale: self.locale.as_ref().map(|l| l.as_str().to_owned()),
            timezone: self.timezone.map(String::from),
        }
    }

    /// The job that sends eligibility looking for the next channel, made at `at`.
    pub fn fallback(&self, at: DateTime<Utc>) -> EligibilityJob {
        let mut tried = self.tried.clone();
        tried.push(self.channel());
        EligibilityJob { tried, ..EligibilityJob::new(self.message_id.clone(), self.request.clone(), at) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::IngestMessage;

    #[test]
    fn bodies_sqs_carries() {
        let at_limit = "a".repeat(MAX_SQS_BODY_BYTES);
        let over = "a".repeat(MAX_SQS_BODY_BYTES + 1);
        let cases: &[(&str, Result<(), UnsendableBody>)] = &[
            ("{\"a\":\"tab\t, lf\n, cr\r\"}", Ok(())),
            ("\u{20}\u{D7FF}\u{E000}\u{FFFD}\u{10000}\u{10FFFF}\u{FDD0}", Ok(())),
            (&at_limit, Ok(())),
            (&over, Err(UnsendableBody::Oversized { bytes: MAX_SQS_BODY_BYTES + 1 })),
            ("ab\u{FFFE}", Err(UnsendableBody::InvalidCharacter { code: 0xFFFE, at: 2 })),
            ("\u{FFFF}", Err(UnsendableBody::InvalidCharacter { code: 0xFFFF, at: 0 })),
            ("a\u{0}", Err(UnsendableBody::InvalidCharacter { code: 0, at: 1 })),
            ("\u{1F}", Err(UnsendableBody::InvalidCharacter { code: 0x1F, at: 0 })),
            ("\u{B}", Err(UnsendableBody::InvalidCharacter { code: 0xB, at: 0 })),
        ];
        for (body, expected) in cases {
            assert_eq!(check_sqs_body(body), *expected, "{:?}", body.get(..20));
        }
        assert_eq!(UnsendableBody::Oversized { bytes: 1 }.code(), "oversized");
        assert_eq!(UnsendableBody::InvalidCharacter { code: 0, at: 0 }.code(), "invalid_characters");
    }

    #[test]
    fn escapes_decode_into_what_the_job_then_carries() {
        let request = |note: &str| {
            format!(
                r#"{{"idempotency_key": "k", "recipient": "r", "template": "t", "kind": "transactional",
                    "data": {{"note": "{note}"}}}}"#
            )
        };
        let job_body = |note: &str| match IngestMessage::parse(&request(note)) {
            Ok(IngestMessage::Notify(r)) => {
                let id = crate::domain::MessageId::for_key(&r.idempotency_key);
                Ok(serde_json::to_string(&EligibilityJob::new(id, *r, chrono::DateTime::UNIX_EPOCH)).unwrap())
            }
            Ok(_) => unreachable!(),
            Err(rejection) => Err(rejection.code),
        };
        // Control characters are escaped again when the job is written: SQS carries them.
        assert_eq!(job_body(r"a\u0001b\u000bc").map(|b| check_sqs_body(&b)), Ok(Ok(())));
        // U+FFFE and U+FFFF are written as they are: SQS would not carry the job.
        for note in [r"a\uFFFEb", r"\uffff"] {
            let body = job_body(note).unwrap();
            assert!(matches!(check_sqs_body(&body), Err(UnsendableBody::InvalidCharacter { .. })), "{note}");
        }
        // Unpaired surrogates never become a string: serde_json refuses them.
        for note in [r"a\uD800b", r"\uDC00", r"\uD800\u0041"] {
            assert_eq!(job_body(note), Err("malformed_json"), "{note}");
        }
        assert_eq!(job_body(r"\uD83D\uDE00").map(|b| check_sqs_body(&b)), Ok(Ok(())), "a pair is one character");
    }
}
