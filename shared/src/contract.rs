//! The ingest contract, version 1: what producers put on the ingest queue.
//!
//! `schema/ingest-v1.json` publishes the same contract as JSON Schema; the test
//! `contract_schema` in `tests/` checks both accept and refuse the same samples.
//! Unknown fields are refused, so a misspelt field is a clear rejection rather
//! than a silently ignored option.

use crate::domain::recipient::QuietHours;
use crate::domain::{
    CampaignId, Channel, DeviceId, EmailAddress, IdempotencyKey, PhoneNumber, Platform, PushToken, RecipientId,
    TemplateName, Topic,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const CONTRACT_VERSION: u32 = 1;

/// Bodies above this size are refused before parsing (SQS allows more; templates' data never needs it).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Receipts, security codes: skip marketing caps and quiet hours, never a hard suppression.
    Transactional,
    Marketing,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Transactional => "transactional",
            Kind::Marketing => "marketing",
        }
    }
}

/// How many of the eligible channels one notification uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The first eligible channel in order; the next one on a permanent failure.
    #[default]
    First,
    /// Every eligible channel at once (urgent transactional alerts only).
    All,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyRequest {
    /// `"type": "notify"` may be spelt out; it is read here so the body takes one pass.
    #[serde(rename = "type", default, skip_serializing, deserialize_with = "present_tag")]
    pub type_tag: Option<NotifyTag>,
    pub idempotency_key: IdempotencyKey,
    pub recipient: RecipientId,
    pub template: TemplateName,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub data: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<Topic>,
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<Channel>>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "instant")]
    pub send_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "instant")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<CampaignId>,
}

/// The only `type` a notify body may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotifyTag {
    #[serde(rename = "notify")]
    Notify,
}

/// `type` absent is notify; `"type": null` is refused, as the schema refuses it.
fn present_tag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<NotifyTag>, D::Error> {
    NotifyTag::deserialize(d).map(Some)
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpsertRecipient {
    pub recipient: RecipientId,
    #[serde(default)]
    pub email: Option<EmailAddress>,
    #[serde(default)]
    pub phone: Option<PhoneNumber>,
    #[serde(default)]
    pub timezone: Option<TimeZone>,
    #[serde(default)]
    pub locale: Option<Locale>,
    #[serde(default)]
    pub quiet_hours: Option<QuietHours>,
    #[serde(default)]
    pub attributes: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetConsent {
    pub recipient: RecipientId,
    pub channel: Channel,
    /// Absent: the consent applies to every topic on that channel.
    #[serde(default)]
    pub topic: Option<Topic>,
    pub granted: bool,
    pub source: ConsentSource,
    /// When the person gave or withdrew it; absent means when Herald received it.
    #[serde(default, with = "instant")]
    pub at: Option<DateTime<Utc>>,
}

/// Registers a device's token. With `device_id` (the app's own id for the device,
/// such as an installation id) a new token for the same device replaces the old one;
/// without it each token counts as its own device until it fails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterPushToken {
    pub recipient: RecipientId,
    pub platform: Platform,
    pub token: PushToken,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<DeviceId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushTokenCommand {
    pub recipient: RecipientId,
    pub platform: Platform,
    pub token: PushToken,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EraseRecipient {
    pub recipient: RecipientId,
}

/// One message on the ingest queue.
#[derive(Debug, Clone, PartialEq)]
pub enum IngestMessage {
    Notify(Box<NotifyRequest>),
    UpsertRecipient(UpsertRecipient),
    SetConsent(SetConsent),
    RegisterPushToken(RegisterPushToken),
    RemovePushToken(PushTokenCommand),
    EraseRecipient(EraseRecipient),
}

/// Why a body was refused: stable machine-readable `code` plus a sentence a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct Rejection {
    pub code: &'static str,
    pub detail: String,
}

impl Rejection {
    pub fn new(code: &'static str, detail: impl Into<String>) -> Self {
        Self { code, detail: detail.into() }
    }
}

/// Reads just the `type` field (and the key, when there is one) without building the body.
#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

impl IngestMessage {
    /// Parses and validates one SQS body against contract v1.
    pub fn parse(body: &str) -> Result<Self, Rejection> {
        if body.len() > MAX_REQUEST_BYTES {
            return Err(Rejection::new(
                "oversized",
                format!("body is {} bytes, at most {MAX_REQUEST_BYTES} are accepted", body.len()),
            ));
        }
        if !body.trim_start().starts_with('{') {
            return Err(Rejection::new("malformed_json", "the body must be a JSON object"));
        }
        let peek: Peek = serde_json::from_str(body).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => Rejection::new("invalid_field", e.to_string()),
            _ => Rejection::new("malformed_json", e.to_string()),
        })?;
        let kind = peek.kind.as_deref().unwrap_or("notify");
        // `type` is part of every message; strip it so each body type can deny unknown fields.
        fn typed<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, Rejection> {
            let mut value: Map<String, Value> =
                serde_json::from_str(body).map_err(|e| Rejection::new("malformed_json", e.to_string()))?;
            value.remove("type");
            serde_json::from_value(Value::Object(value)).map_err(|e| Rejection::new("invalid_field", e.to_string()))
        }
        Ok(match kind {
            // One pass straight into the request, `type` or not.
            "notify" => Self::Notify(Box::new(NotifyRequest::parse_checked(
                serde_json::from_str(body).map_err(|e| Rejection::new("invalid_field", e.to_string())),
            )?)),
            "upsert_recipient" => Self::UpsertRecipient(typed(body)?),
            "set_consent" => Self::SetConsent(typed(body)?),
            "register_push_token" => Self::RegisterPushToken(typed(body)?),
            "remove_push_token" => Self::RemovePushToken(typed(body)?),
            "erase_recipient" => Self::EraseRecipient(typed(body)?),
            other => {
                return Err(Rejection::new(
                    "unknown_type",
                    format!(
                        "type {other:?} is not one of notify, upsert_recipient, set_consent, \
                         register_push_token, remove_push_token, erase_recipient"
                    ),
                ));
            }
        })
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Notify(_) => "notify",
            Self::UpsertRecipient(_) => "upsert_recipient",
            Self::SetConsent(_) => "set_consent",
            Self::RegisterPushToken(_) => "register_push_token",
            Self::RemovePushToken(_) => "remove_push_token",
            Self::EraseRecipient(_) => "erase_recipient",
        }
    }
}

impl NotifyRequest {
    fn parse_checked(request: Result<Self, Rejection>) -> Result<Self, Rejection> {
        let request = request?;
        request.check_rules()?;
        Ok(request)
    }

    /// Rules that span fields (the schema states the same with `if`/`then` and `uniqueItems`).
    fn check_rules(&self) -> Result<(), Rejection> {
        if self.mode == Mode::All && self.kind != Kind::Transactional {
            return Err(Rejection::new("invalid_field", "mode \"all\" is only allowed for transactional messages"));
        }
        if let Some(channels) = &self.channels {
            if channels.is_empty() {
                return Err(Rejection::new("invalid_field", "channels must list at least one channel"));
            }
            let mut seen = Vec::with_capacity(channels.len());
            for c in channels {
                if seen.contains(c) {
                    return Err(Rejection::new("invalid_field", format!("channel {c} is listed twice")));
                }
                seen.push(*c);
            }
        }
        if let (Some(send_at), Some(expires_at)) = (self.send_at, self.expires_at)
            && expires_at <= send_at
        {
            return Err(Rejection::new("invalid_field", "expires_at must be after send_at"));
        }
        Ok(())
    }
}

/// Where a consent came from (a form, an import, an unsubscribe link): kept for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ConsentSource(String);

impl From<ConsentSource> for String {
    fn from(s: ConsentSource) -> String {
        s.0
    }
}

impl TryFrom<String> for ConsentSource {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        Self::new(raw)
    }
}

impl ConsentSource {
    pub fn new(raw: impl Into<String>) -> Result<Self, String> {
        let raw = raw.into();
        if (1..=128).contains(&raw.chars().count()) && !raw.chars().any(char::is_control) {
            Ok(Self(raw))
        } else {
            Err("source must be 1 to 128 characters".into())
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An IANA time zone name, checked against the bundled tz database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeZone(pub chrono_tz::Tz);

impl TryFrom<String> for TimeZone {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        raw.parse::<chrono_tz::Tz>()
            .map(TimeZone)
            .map_err(|_| format!("timezone {raw:?} is not an IANA time zone name such as \"Europe/Paris\""))
    }
}

impl From<TimeZone> for String {
    fn from(tz: TimeZone) -> String {
        tz.0.name().to_owned()
    }
}

/// A BCP 47 language tag in the common `ll` or `ll-RR` form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Locale(String);

impl Locale {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Locale {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        let mut parts = raw.split('-');
        let lang_ok =
            parts.next().is_some_and(|l| (2..=3).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_lowercase()));
        let rest_ok = parts.all(|p| (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()));
        if lang_ok && rest_ok {
            Ok(Self(raw))
        } else {
            Err(format!("locale {raw:?} is not a language tag such as \"fr\" or \"fr-FR\""))
        }
    }
}

impl From<Locale> for String {
    fn from(l: Locale) -> String {
        l.0
    }
}

/// Instants exactly as RFC 3339 writes them (`2026-11-25T18:00:00Z`,
/// `2026-11-25T19:00:00.5+01:00`): chrono alone also takes looser forms that the
/// published schema (`format: date-time`) refuses.
pub mod instant {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn parse(raw: &str) -> Result<DateTime<Utc>, String> {
        let bad = || format!("{raw:?} is not an RFC 3339 date-time such as \"2026-11-25T18:00:00Z\"");
        let b = raw.as_bytes();
        let digits = |from: usize, to: usize| b.get(from..to).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
        let is = |i: usize, allowed: &[u8]| b.get(i).is_some_and(|c| allowed.contains(c));
        let head = digits(0, 4)
            && is(4, b"-")
            && digits(5, 7)
            && is(7, b"-")
            && digits(8, 10)
            && is(10, b"Tt")
            && digits(11, 13)
            && is(13, b":")
            && digits(14, 16)
            && is(16, b":")
            && digits(17, 19)
            // Second 60 exists only as a leap second, at the end of a minute 59.
            && (b.get(17..19) != Some(b"60") || b.get(14..16) == Some(b"59"));
        if !head {
            return Err(bad());
        }
        let mut i = 19;
        if is(i, b".") {
            i += 1;
            let start = i;
            while is(i, b"0123456789") {
                i += 1;
            }
            if i == start {
                return Err(bad());
            }
        }
        let zone = b.get(i..).unwrap_or_default();
        let zone_ok = zone.eq_ignore_ascii_case(b"z")
            || (zone.len() == 6 && is(i, b"+-") && digits(i + 1, i + 3) && is(i + 3, b":") && digits(i + 4, i + 6));
        if !zone_ok {
            return Err(bad());
        }
        DateTime::parse_from_rfc3339(raw).map(|t| t.with_timezone(&Utc)).map_err(|_| bad())
    }

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<String>::deserialize(d)?.map(|raw| parse(&raw).map_err(serde::de::Error::custom)).transpose()
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn strict_rfc3339() {
            for ok in ["2026-11-25T18:00:00Z", "2026-11-25t18:00:00.123z", "2026-11-25T19:00:00+01:00"] {
                assert!(super::parse(ok).is_ok(), "{ok}");
            }
            for bad in [
                "2026-11-25 18:00:00Z",
                "2026-11-25T18:00:00+0100",
                "2026-11-25T18:00:00Z ",
                "2026-1-25T18:00:00Z",
                "2026-11-25T18:00:60Z",
                "2026-11-25T18:00:00.Z",
                "2026-02-30T18:00:00Z",
            ] {
                assert!(super::parse(bad).is_err(), "{bad}");
            }
        }
    }
}
