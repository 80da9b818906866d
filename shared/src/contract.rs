//! The ingest contract, version 1: what producers put on the ingest queue.
//!
//! `schema/ingest-v1.json` publishes the same contract as JSON Schema; the test
//! `contract_schema` in `tests/` checks both accept and refuse the same samples.
//! Unknown fields are refused, so a misspelt field is a clear rejection rather
//! than a silently ignored option.

use crate::domain::recipient::QuietHours;
use crate::domain::{
    CampaignId, Channel, DeviceId, EmailAddress, EventName, IdempotencyKey, PhoneNumber, Platform, PushToken,
    RecipientId, TemplateName, Topic, redact_contacts,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod broadcast;
mod digest;
pub use broadcast::{BroadcastControl, BroadcastRequest, ControlAction, MAX_RATE_PER_SECOND};
pub use digest::{DigestKey, DigestSpec};
mod journey;
pub use journey::EnterJourney;

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
    /// Collect it with others of the same key into one message ([`DigestSpec`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<DigestSpec>,
    /// A test send (`herald send-test`): only to a recipient of the [`TEST_RECIPIENT_PREFIX`]
    /// namespace, without a campaign or a digest. Marked `test` in the ledger; exempt from
    /// caps, quiet hours, holdouts and the need for an opt-in, never from suppression
    /// (docs/testing-sends.md).
    #[serde(default, skip_serializing_if = "std::ops::Not::not", deserialize_with = "null_is_false")]
    pub test: bool,
}

/// The recipient namespace of test sends: `herald-test:<hash of the address>`, upserted by
/// `herald send-test`. Only a recipient of it may receive a notify marked `test`.
pub const TEST_RECIPIENT_PREFIX: &str = "herald-test:";

/// `null` counts as absent, as for every optional field.
fn null_is_false<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Option::<bool>::deserialize(d).map(Option::unwrap_or_default)
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
    /// Merged into the stored attributes, one by one: a `null` removes that attribute.
    /// Checked against the contract here ([`crate::domain::profile::check_contract`]) and
    /// against the team's declared types at ingest ([`crate::domain::profile::ProfileSchema::check`]).
    #[serde(default, deserialize_with = "checked_attributes")]
    pub attributes: Option<Map<String, Value>>,
}

fn checked_attributes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Map<String, Value>>, D::Error> {
    let attrs = Option::<Map<String, Value>>::deserialize(d)?;
    if let Some(a) = &attrs {
        crate::domain::profile::check_contract(a).map_err(serde::de::Error::custom)?;
    }
    Ok(attrs)
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

/// Something a person did (a purchase, a sign-up), recorded as the conversion of the
/// campaigns whose `conversion_event` it is, on the person's message of each campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Track {
    /// The producer's key for this event (logged; a retried or duplicate track changes nothing).
    pub idempotency_key: IdempotencyKey,
    pub recipient: RecipientId,
    pub event: EventName,
    /// When the person did it.
    #[serde(with = "instant::required")]
    pub at: DateTime<Utc>,
    /// What it was worth (an order's amount), summed per group by `herald funnel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<ConversionValue>,
}

/// A conversion's value: a number from 0 to [`ConversionValue::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct ConversionValue(f64);

impl ConversionValue {
    /// Past 2^53 a JSON number is no longer an exact integer.
    pub const MAX: f64 = 1e15;

    pub fn new(value: f64) -> Result<Self, String> {
        if (0.0..=Self::MAX).contains(&value) {
            Ok(Self(value))
        } else {
            Err("value must be a number from 0 to 1000000000000000".to_owned())
        }
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for ConversionValue {
    type Error = String;
    fn try_from(value: f64) -> Result<Self, String> {
        Self::new(value)
    }
}

impl From<ConversionValue> for f64 {
    fn from(v: ConversionValue) -> f64 {
        v.0
    }
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
    Broadcast(Box<BroadcastRequest>),
    /// Pause, resume or cancel a broadcast.
    BroadcastControl(ControlAction, BroadcastControl),
    Track(Track),
    EnterJourney(EnterJourney),
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
    /// Parses and validates one SQS body against contract v1. A refusal names the field
    /// and what it expects, never the value it got (see [`json_error_detail`]).
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
        let peek: Peek = serde_json::from_str(body).map_err(|e| refusal::<Peek>(&e, body))?;
        let kind = peek.kind.as_deref().unwrap_or("notify");
        // `type` is part of every message; strip it so each body type can deny unknown fields.
        fn typed<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, Rejection> {
            let without_type = || {
                serde_json::from_str::<Map<String, Value>>(body).map(|mut value| {
                    value.remove("type");
                    Value::Object(value)
                })
            };
            let value = without_type().map_err(|e| Rejection::new("malformed_json", json_error_detail(&e, None)))?;
            serde_json::from_value(value).map_err(|e| match without_type() {
                Ok(value) => invalid_field::<T, _>(&e, value),
                Err(_) => Rejection::new("invalid_field", json_error_detail(&e, None)),
            })
        }
        Ok(match kind {
            // One pass straight into the request, `type` or not.
            "notify" => Self::Notify(Box::new(NotifyRequest::parse_checked(
                serde_json::from_str(body).map_err(|e| refusal::<NotifyRequest>(&e, body)),
            )?)),
            "upsert_recipient" => Self::UpsertRecipient(typed(body)?),
            "set_consent" => Self::SetConsent(typed(body)?),
            "register_push_token" => Self::RegisterPushToken(typed(body)?),
            "remove_push_token" => Self::RemovePushToken(typed(body)?),
            "erase_recipient" => Self::EraseRecipient(typed(body)?),
            "broadcast" => {
                let request: BroadcastRequest = typed(body)?;
                request.check_rules()?;
                Self::Broadcast(Box::new(request))
            }
            "pause_broadcast" => Self::BroadcastControl(ControlAction::Pause, typed(body)?),
            "resume_broadcast" => Self::BroadcastControl(ControlAction::Resume, typed(body)?),
            "cancel_broadcast" => Self::BroadcastControl(ControlAction::Cancel, typed(body)?),
            "track" => Self::Track(typed(body)?),
            "enter_journey" => Self::EnterJourney(typed(body)?),
            _ => {
                return Err(Rejection::new(
                    "unknown_type",
                    "type is not one of notify, upsert_recipient, set_consent, register_push_token, \
                     remove_push_token, erase_recipient, track, broadcast, pause_broadcast, \
                     resume_broadcast, cancel_broadcast, enter_journey",
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
            Self::Broadcast(_) => "broadcast",
            Self::BroadcastControl(ControlAction::Pause, _) => "pause_broadcast",
            Self::BroadcastControl(ControlAction::Resume, _) => "resume_broadcast",
            Self::BroadcastControl(ControlAction::Cancel, _) => "cancel_broadcast",
            Self::Track(_) => "track",
            Self::EnterJourney(_) => "enter_journey",
        }
    }
}

/// What a JSON error says, as a rejection detail: the field it is about (`path`, when
/// known), what was expected, and where, but never the offending value. serde quotes the
/// value (`invalid type: integer `15555550100`, expected a string`, `unknown variant
/// `ana@example.org``), and a value may be an address, a phone number or a token; the
/// detail is logged and kept in the ledger. Whatever else looks like a contact point is
/// redacted too ([`redact_contacts`]).
pub fn json_error_detail(err: &serde_json::Error, path: Option<&serde_path_to_error::Path>) -> String {
    let text = err.to_string();
    let position = (err.line() > 0).then(|| format!(" at line {} column {}", err.line(), err.column()));
    let message = position.as_deref().and_then(|p| text.strip_suffix(p)).unwrap_or(&text);
    let message = without_values(message);
    let mut detail = String::with_capacity(message.len() + 32);
    if let Some((path, field)) = path.and_then(|p| field_path(p, message.starts_with("unknown field"))) {
        // A message that starts with the field's name ("timezone is not ...") needs no prefix.
        if !message.starts_with(&format!("{field} ")) {
            detail.push_str(&path);
            detail.push_str(": ");
        }
    }
    detail.push_str(&message);
    detail.push_str(position.as_deref().unwrap_or_default());
    redact_contacts(&detail)
}

/// `quiet_hours.start`, `channels[1]`, and the last field's name; `None` for the body
/// itself. An unknown field's path ends with that field (the producer's own key): its
/// object is named instead.
fn field_path(path: &serde_path_to_error::Path, unknown_field: bool) -> Option<(String, String)> {
    use serde_path_to_error::Segment;
    let mut segments: Vec<&Segment> = path.iter().collect();
    if unknown_field {
        segments.pop();
    }
    let (mut text, mut last) = (String::new(), String::new());
    for segment in segments {
        match segment {
            Segment::Seq { index } => text.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(key);
                last.clone_from(key);
            }
            Segment::Unknown => text.push_str(if text.is_empty() { "?" } else { ".?" }),
        }
    }
    (!text.is_empty()).then_some((text, last))
}

/// The rejection for `err`, met parsing `body` as a `T`: a body that is not JSON (an
/// unpaired surrogate escape such as `\uD800` is not, for serde_json) is `malformed_json`;
/// JSON that does not fit the contract is `invalid_field`.
fn refusal<'de, T: Deserialize<'de>>(err: &serde_json::Error, body: &'de str) -> Rejection {
    match err.classify() {
        serde_json::error::Category::Data => invalid_field::<T, _>(err, &mut serde_json::Deserializer::from_str(body)),
        _ => Rejection::new("malformed_json", json_error_detail(err, None)),
    }
}

/// An `invalid_field` rejection for `err`, naming the field: `T` is read again from `de`
/// tracking the path, which costs only on this, the rejection path.
fn invalid_field<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(err: &serde_json::Error, de: D) -> Rejection {
    let path = serde_path_to_error::deserialize::<_, T>(de).err();
    Rejection::new("invalid_field", json_error_detail(err, path.as_ref().map(|p| p.path())))
}

/// serde's messages with the value taken out; the names and expectations, which are the
/// contract's own, stay.
fn without_values(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            // `<kind> <quoted value>, expected <what>`; the kind alone stays (`integer`, `string`).
            let (unexpected, expected) = rest.rsplit_once(", expected ").unwrap_or((rest, ""));
            let kind = unexpected.split(['`', '"', '\'']).next().unwrap_or_default().trim_end();
            return match expected {
                "" => format!("{prefix}{kind}"),
                expected => format!("{prefix}{kind}, expected {expected}"),
            };
        }
    }
    for (prefix, keep_plain_name) in [("unknown variant `", false), ("unknown field `", true)] {
        if let Some(rest) = message.strip_prefix(prefix) {
            // `<value>`, expected ...   or   `<value>`, there are no ...
            let cut = rest.rfind("`, expected ").or_else(|| rest.rfind("`, there are no "));
            let (value, tail) = match cut {
                Some(at) => (rest.get(..at).unwrap_or_default(), rest.get(at + 1..).unwrap_or_default()),
                None => (rest.trim_end_matches('`'), ""),
            };
            let what = prefix.trim_end_matches([' ', '`']);
            // A misspelt field's name is what the producer needs to see, when it is a name.
            let plain =
                (1..=64).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            return match keep_plain_name && plain {
                true => format!("{what} `{value}`{tail}"),
                false => format!("{what}{tail}"),
            };
        }
    }
    message.to_owned()
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
        if let Some(digest) = &self.digest {
            digest.check_rules(self.send_at.is_some())?;
        }
        if self.test {
            if !self.recipient.as_str().starts_with(TEST_RECIPIENT_PREFIX) {
                return Err(Rejection::new(
                    "invalid_field",
                    format!("test is only allowed for a recipient whose id starts with {TEST_RECIPIENT_PREFIX}"),
                ));
            }
            if self.campaign.is_some() || self.digest.is_some() {
                return Err(Rejection::new("invalid_field", "a test send has no campaign and no digest"));
            }
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
            .map_err(|_| "timezone is not an IANA time zone name such as \"Europe/Paris\"".to_owned())
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
            Err("locale is not a language tag such as \"fr\" or \"fr-FR\"".to_owned())
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
        // The value is not quoted: rejection details and logs never carry one.
        let bad = || "not an RFC 3339 date-time such as \"2026-11-25T18:00:00Z\"".to_owned();
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

    /// The same for an instant that must be given.
    pub mod required {
        use chrono::{DateTime, Utc};
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
            super::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_name_the_field_and_never_the_value() {
        let notify = r#""idempotency_key": "k-1", "template": "order_shipped", "kind": "transactional""#;
        let cases: Vec<(String, &str, &str)> = vec![
            (
                r#"{"type": "upsert_recipient", "recipient": "user-1", "phone": 15555550100}"#.into(),
                "invalid_field",
                "phone: invalid type: integer, expected a string",
            ),
            (
                format!(r#"{{{notify}, "recipient": 15555550100}}"#),
                "invalid_field",
                "recipient: invalid type: integer, expected a string at line 1 column 105",
            ),
            (
                r#"{"type": "set_consent", "recipient": "u", "channel": "ana@example.org", "granted": true, "source": "s"}"#
                    .into(),
                "invalid_field",
                "channel: unknown variant, expected one of `push`, `email`, `sms`, `inbox`",
            ),
            (
                format!(r#"{{{notify}, "recipient": "u", "ana@example.org": 1}}"#),
                "invalid_field",
                "unknown field, expected one of `type`, `idempotency_key`, `recipient`, `template`, `data`, `topic`, \
                 `kind`, `channels`, `mode`, `send_at`, `expires_at`, `campaign`, `digest`, `test` at line 1 column 116",
            ),
            (
                format!(r#"{{{notify}, "recipient": "u", "mail": 1}}"#),
                "invalid_field",
                "unknown field `mail`, expected one of `type`, `idempotency_key`, `recipient`, `template`, `data`, \
                 `topic`, `kind`, `channels`, `mode`, `send_at`, `expires_at`, `campaign`, `digest`, `test` at line 1 column 105",
            ),
            (
                format!(r#"{{{notify}, "recipient": "u", "send_at": "+15555550100"}}"#),
                "invalid_field",
                "send_at: not an RFC 3339 date-time such as \"2026-11-25T18:00:00Z\" at line 1 column 125",
            ),
            (
                r#"{"type": "upsert_recipient", "recipient": "u", "timezone": "ana@example.org"}"#.into(),
                "invalid_field",
                "timezone is not an IANA time zone name such as \"Europe/Paris\"",
            ),
            (
                r#"{"type": "upsert_recipient", "recipient": "u", "locale": "+15555550100"}"#.into(),
                "invalid_field",
                "locale is not a language tag such as \"fr\" or \"fr-FR\"",
            ),
            (
                r#"{"type": "upsert_recipient", "recipient": "u", "quiet_hours": {"start": "+15555550100", "end": "08:00"}}"#
                    .into(),
                "invalid_field",
                "quiet_hours.start: not a time of day as HH:MM",
            ),
            (
                r#"{"type": "upsert_recipient", "recipient": "u", "email": "ana@example"}"#.into(),
                "invalid_field",
                "email is not a valid address",
            ),
            (
                r#"{"type": "register_push_token", "recipient": "u", "platform": "fcm", "token": ["a1b2c3"]}"#.into(),
                "invalid_field",
                "token: invalid type: sequence, expected a string",
            ),
            (
                r#"{"type": "upsert_recipient", "recipient": "u", "attributes": {"plan": {"a": "a1b2c3"}}}"#.into(),
                "invalid_field",
                "attributes entry `plan` must be a string (at most 1024 characters), a number, a boolean, a list of \
                 at most 100 such strings, or null to remove it",
            ),
            (
                r#"{"type": "upsert_recipient", "recipient": "u", "attributes": {"ana@example.org": 1}}"#.into(),
                "invalid_field",
                "attributes have names of 1 to 64 letters, digits, _, - or .",
            ),
            (r#"{"type": "ana@example.org"}"#.into(), "unknown_type", "type is not one of notify, upsert_recipient, \
              set_consent, register_push_token, remove_push_token, erase_recipient, track, broadcast, pause_broadcast, \
              resume_broadcast, cancel_broadcast, enter_journey"),
            (
                r#"{"type": "broadcast", "campaign": "c", "segment": "s", "rate_per_second": 0}"#.into(),
                "invalid_field",
                "rate_per_second must be between 1 and 10000",
            ),
            (
                r#"{"type": "broadcast", "campaign": "c", "segment": "ana@example.org", "rate_per_second": 5}"#.into(),
                "invalid_field",
                "segment contains the character '@', which is not allowed",
            ),
            (
                r#"{"type": "track", "idempotency_key": "k", "recipient": "u", "event": "purchase", "at": "2026-11-25T18:00:00Z", "value": -15555550100}"#
                    .into(),
                "invalid_field",
                "value must be a number from 0 to 1000000000000000",
            ),
            (
                r#"{"type": "track", "idempotency_key": "k", "recipient": "u", "event": "ana@example.org", "at": "2026-11-25T18:00:00Z"}"#
                    .into(),
                "invalid_field",
                "event contains the character '@', which is not allowed",
            ),
            (
                r#"{"type": "track", "idempotency_key": "k", "recipient": "u", "event": "purchase", "at": "+15555550100"}"#
                    .into(),
                "invalid_field",
                "at: not an RFC 3339 date-time such as \"2026-11-25T18:00:00Z\"",
            ),
            (
                r#"{"type": "track", "idempotency_key": "k", "recipient": "u", "event": "purchase"}"#.into(),
                "invalid_field",
                "missing field `at`",
            ),
            (
                r#"{"type": "enter_journey", "idempotency_key": "k", "recipient": "u", "journey": "ana@example.org"}"#
                    .into(),
                "invalid_field",
                "journey contains the character '@', which is not allowed",
            ),
            (
                format!(
                    r#"{{"type": "enter_journey", "idempotency_key": "k", "recipient": "u", "journey": "j", "data": {{"a": "{}"}}}}"#,
                    "x".repeat(600)
                ),
                "invalid_field",
                "data is 608 bytes as JSON, a journey keeps at most 512",
            ),
            (r#"{"type": 15555550100}"#.into(), "invalid_field", "type: invalid type: integer, expected a string at line 1 column 20"),
            (format!(r#"{{{notify}, "recipient": "u""#), "malformed_json", "EOF while parsing an object at line 1 column 97"),
            (format!(r#"{{{notify}}}"#), "invalid_field", "missing field `recipient` at line 1 column 80"),
        ];
        for (body, code, detail) in &cases {
            let rejection = IngestMessage::parse(body).expect_err(body);
            assert_eq!((rejection.code, rejection.detail.as_str()), (*code, *detail), "{body}");
            for value in ["15555550100", "ana@example", "a1b2c3"] {
                assert!(!rejection.detail.contains(value), "{body}: {}", rejection.detail);
            }
        }
    }
}
