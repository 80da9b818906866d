//! Pure domain: values, rules and decisions. Nothing here performs I/O or reads a clock.

pub mod broadcast;
pub mod campaign;
pub mod caps;
pub mod contact;
pub mod digest;
pub mod duration;
pub mod eligibility;
pub mod email;
pub mod events;
pub mod ids;
pub mod inbox;
pub mod jobs;
pub mod journey;
pub mod ledger;
pub mod preferences;
pub mod profile;
pub mod push;
pub mod receipts;
pub mod recipient;
pub mod segment;
pub mod sms;
pub mod template;
pub mod topics;
pub mod unsubscribe;
pub mod webhook;

pub use contact::{Channel, EmailAddress, PhoneNumber, Platform, PushToken, redact_contacts};
pub use ids::{
    CampaignId, DeviceId, EventName, IdempotencyKey, MessageId, RecipientId, SegmentName, TemplateName, Topic,
};
