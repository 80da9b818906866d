//! What the webhook function checks before it believes a request: the parts of
//! SNS message signatures that need no cryptography beyond hashing (the message,
//! the string to sign, where the signing certificate may come from, how old it may
//! be, what is handed on), and the HMAC-SHA256 signatures of custom providers with
//! their freshness window.
//! Pure: the clock is an argument. The RSA check itself is in the webhooks function.

use crate::domain::Channel;
use crate::domain::receipts::ProviderReport;
use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::BTreeSet;
use std::fmt;

// ---------------------------------------------------------------- SNS

/// An SNS message as delivered to an HTTP/HTTPS subscriber ("HTTP/HTTPS notification
/// JSON format", and the subscription and unsubscribe confirmation formats).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SnsMessage {
    #[serde(rename = "Type")]
    pub kind: String,
    pub message_id: String,
    pub topic_arn: String,
    #[serde(default)]
    pub subject: Option<String>,
    pub message: String,
    pub timestamp: String,
    #[serde(default)]
    pub signature_version: Option<String>,
    #[serde(default)]
    pub signature: Option<String>,
    #[serde(rename = "SigningCertURL", default)]
    pub signing_cert_url: Option<String>,
    #[serde(rename = "SubscribeURL", default)]
    pub subscribe_url: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
}

/// How long after its `Timestamp` (when SNS accepted the publish) an SNS message is
/// taken. SNS retries an HTTPS delivery that failed for at most 3,600 seconds in all
/// (a hard limit of HTTP/S delivery policies; the default policy is 3 retries, 20 s
/// apart), so a genuine retry is never older than an hour plus its own delivery time;
/// the extra half hour covers that and a throttled subscription's backlog. Older is a
/// captured message played again, and is refused whether or not its id is remembered.
pub const SNS_MAX_AGE: TimeDelta = TimeDelta::minutes(90);

/// How far ahead of Herald's clock an SNS `Timestamp` may be (clock skew).
pub const SNS_MAX_AHEAD: TimeDelta = TimeDelta::minutes(5);

/// An SNS message id longer than this is not one (SNS's are UUIDs).
const MAX_SNS_ID: usize = 128;

/// A notification as an SQS subscription (raw delivery off) receives it: the fields SNS
/// signs and the signature's own, nothing else. What the webhook hands to the receipts
/// queue, so a field SNS did not sign never travels further than the webhook.
#[derive(Debug, Serialize)]
struct SqsEnvelope<'a> {
    #[serde(rename = "Type")]
    kind: &'a str,
    #[serde(rename = "MessageId")]
    message_id: &'a str,
    #[serde(rename = "TopicArn")]
    topic_arn: &'a str,
    #[serde(rename = "Subject", skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    #[serde(rename = "Message")]
    message: &'a str,
    #[serde(rename = "Timestamp")]
    timestamp: &'a str,
    #[serde(rename = "SignatureVersion")]
    signature_version: &'a str,
    #[serde(rename = "Signature")]
    signature: &'a str,
    #[serde(rename = "SigningCertURL")]
    signing_cert_url: &'a str,
}

/// The digest SNS signed the message with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnsSignatureVersion {
    /// SHA1withRSA.
    V1,
    /// SHA256withRSA.
    V2,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnsMessageError {
    #[error("the message is not signed (no Signature, SignatureVersion or SigningCertURL)")]
    Unsigned,
    #[error("SignatureVersion {0:?} is not 1 or 2")]
    UnknownVersion(String),
    #[error("SigningCertURL is not an SNS certificate URL")]
    UntrustedCertUrl,
    #[error("a {0} message must carry {1}")]
    MissingField(String, &'static str),
    #[error("message type {0:?} is not one SNS sends")]
    UnknownType(String),
    #[error("the Timestamp is not an ISO 8601 time")]
    BadTimestamp,
    #[error("the message was published more than 90 minutes ago, or is dated ahead of now")]
    Stale,
    #[error("the MessageId is not an SNS message id")]
    BadMessageId,
}

impl SnsMessage {
    /// The signature version, the certificate URL (checked against the SNS host
    /// pattern before anything fetches it) and the decoded-later signature text.
    pub fn signature_parts(&self) -> Result<(SnsSignatureVersion, &str, &str), SnsMessageError> {
        let (Some(version), Some(signature), Some(url)) =
            (self.signature_version.as_deref(), self.signature.as_deref(), self.signing_cert_url.as_deref())
        else {
            return Err(SnsMessageError::Unsigned);
        };
        let version = match version {
            "1" => SnsSignatureVersion::V1,
            "2" => SnsSignatureVersion::V2,
            other => return Err(SnsMessageError::UnknownVersion(other.to_owned())),
        };
        if !is_sns_url(url) {
            return Err(SnsMessageError::UntrustedCertUrl);
        }
        Ok((version, url, signature))
    }

    /// The string SNS signs: `Name\nvalue\n` for each signed field, in the order AWS
    /// documents ("Verifying the signatures of Amazon SNS messages"). `Subject` is
    /// signed only when present.
    pub fn string_to_sign(&self) -> Result<String, SnsMessageError> {
        let mut out = String::with_capacity(self.message.len() + 256);
        let mut field = |name: &str, value: &str| {
            out.push_str(name);
            out.push('\n');
            out.push_str(value);
            out.push('\n');
        };
        let required = |value: &Option<String>, name: &'static str| {
            value.clone().ok_or_else(|| SnsMessageError::MissingField(self.kind.clone(), name))
        };
        match self.kind.as_str() {
            "Notification" => {
                field("Message", &self.message);
                field("MessageId", &self.message_id);
                if let Some(subject) = &self.subject {
                    field("Subject", subject);
                }
                field("Timestamp", &self.timestamp);
                field("TopicArn", &self.topic_arn);
                field("Type", &self.kind);
            }
            "SubscriptionConfirmation" | "UnsubscribeConfirmation" => {
                let subscribe_url = required(&self.subscribe_url, "SubscribeURL")?;
                let token = required(&self.token, "Token")?;
                field("Message", &self.message);
                field("MessageId", &self.message_id);
                field("SubscribeURL", &subscribe_url);
                field("Timestamp", &self.timestamp);
                field("Token", &token);
                field("TopicArn", &self.topic_arn);
                field("Type", &self.kind);
            }
            other => return Err(SnsMessageError::UnknownType(other.to_owned())),
        }
        Ok(out)
    }
}

impl SnsMessage {
    /// When SNS published the message, if it is recent enough to be a delivery or one of
    /// its retries ([`SNS_MAX_AGE`], [`SNS_MAX_AHEAD`]). The `Timestamp` is signed: check
    /// the signature too.
    pub fn check_fresh(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>, SnsMessageError> {
        let published = DateTime::parse_from_rfc3339(&self.timestamp)
            .map_err(|_| SnsMessageError::BadTimestamp)?
            .with_timezone(&Utc);
        if published < now - SNS_MAX_AGE || published > now + SNS_MAX_AHEAD {
            return Err(SnsMessageError::Stale);
        }
        Ok(published)
    }

    /// The key under which the message is remembered once taken (SNS keeps a message's id
    /// across its retries), and until when: as long as [`SnsMessage::check_fresh`] takes it.
    pub fn replay_key(&self, published: DateTime<Utc>) -> Result<(String, DateTime<Utc>), SnsMessageError> {
        let id = &self.message_id;
        if id.is_empty() || id.len() > MAX_SNS_ID || id.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(SnsMessageError::BadMessageId);
        }
        Ok((format!("sns#{id}"), published + SNS_MAX_AGE + TimeDelta::minutes(1)))
    }

    /// The notification re-serialized from its signed fields (and its signature), as an SQS
    /// subscription would receive it: the only body the webhook hands to the receipts queue.
    pub fn relayed(&self) -> Result<String, SnsMessageError> {
        let (_, url, signature) = self.signature_parts()?;
        if self.kind != "Notification" {
            return Err(SnsMessageError::UnknownType(self.kind.clone()));
        }
        let envelope = SqsEnvelope {
            kind: &self.kind,
            message_id: &self.message_id,
            topic_arn: &self.topic_arn,
            subject: self.subject.as_deref(),
            message: &self.message,
            timestamp: &self.timestamp,
            signature_version: self.signature_version.as_deref().unwrap_or_default(),
            signature,
            signing_cert_url: url,
        };
        // Strings only: serializing cannot fail.
        serde_json::to_string(&envelope).map_err(|_| SnsMessageError::UnknownType(self.kind.clone()))
    }
}

/// `^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/`: the only place a signing
/// certificate (or a subscription confirmation) may be fetched from. Anything
/// else (another host, a port, user info, plain HTTP) is refused unfetched.
pub fn is_sns_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://sns.") else { return false };
    let Some((host_tail, _path)) = rest.split_once('/') else { return false };
    let region = host_tail.strip_suffix(".amazonaws.com").or_else(|| host_tail.strip_suffix(".amazonaws.com.cn"));
    region
        .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
}

// ---------------------------------------------------------------- custom providers

/// How far a provider's timestamp may be from Herald's clock, either way.
pub const MAX_SKEW: TimeDelta = TimeDelta::minutes(5);

/// The header carrying the provider's timestamp (Unix seconds).
pub const TIMESTAMP_HEADER: &str = "x-herald-timestamp";
/// The header carrying `v1=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>`.
pub const SIGNATURE_HEADER: &str = "x-herald-signature";

/// One provider's shared secret, kept as a keyed HMAC. Its `Debug` never shows it.
#[derive(Clone)]
pub struct ProviderKey(Hmac<Sha256>);

impl fmt::Debug for ProviderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProviderKey(<redacted>)")
    }
}

/// Why a provider's request was not believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderAuthError {
    #[error("the request carries no {0} header")]
    Missing(&'static str),
    #[error("the {0} header is malformed")]
    Malformed(&'static str),
    #[error("the timestamp is more than 5 minutes away from now")]
    Stale,
    #[error("the signature does not match the body")]
    Mismatch,
}

impl ProviderKey {
    /// At least 16 bytes of secret.
    pub const MIN_LEN: usize = 16;

    pub fn new(secret: &str) -> Result<Self, String> {
        if secret.len() < Self::MIN_LEN {
            return Err(format!("a provider secret must be at least {} bytes long", Self::MIN_LEN));
        }
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).map(Self).map_err(|e| e.to_string())
    }

    fn mac(&self, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.0.clone();
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `x-herald-signature` value a provider sends for `body` at `timestamp`.
    pub fn sign(&self, timestamp: i64, body: &[u8]) -> String {
        format!("v1={}", hex::encode(self.mac(&timestamp.to_string(), body).finalize().into_bytes()))
    }

    /// Checks the headers against the raw body: the signature first (constant time),
    /// then the freshness. Returns what was signed when, with the signature itself.
    pub fn verify(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Signed, ProviderAuthError> {
        let raw_ts = timestamp.ok_or(ProviderAuthError::Missing(TIMESTAMP_HEADER))?;
        let raw_sig = signature.ok_or(ProviderAuthError::Missing(SIGNATURE_HEADER))?;
        let at = raw_ts
            .parse::<i64>()
            .ok()
            .and_then(|s| DateTime::from_timestamp(s, 0))
            .ok_or(ProviderAuthError::Malformed(TIMESTAMP_HEADER))?;
        let tag = raw_sig
            .trim()
            .strip_prefix("v1=")
            .and_then(|h| hex::decode(h).ok())
            .ok_or(ProviderAuthError::Malformed(SIGNATURE_HEADER))?;
        self.mac(raw_ts, body).verify_slice(&tag).map_err(|_| ProviderAuthError::Mismatch)?;
        if (now - at).abs() > MAX_SKEW {
            return Err(ProviderAuthError::Stale);
        }
        Ok(Signed { at, tag })
    }
}

/// A custom provider as configured: its key, and the channels it carries, the only
/// ones it may report on and suppress on.
#[derive(Debug, Clone)]
pub struct Provider {
    pub key: ProviderKey,
    /// Empty for an entry written before providers had channels: such a provider is
    /// authenticated but may report nothing until its channels are given.
    pub channels: BTreeSet<Channel>,
}

/// Why an authenticated provider may not make this report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAuthorized {
    #[error("this provider is configured for no channel: its entry in the providers' secret needs \"channels\"")]
    NoChannels,
    #[error("events[{index}]: this provider is not configured for channel {channel}")]
    Channel { index: usize, channel: Channel },
}

impl Provider {
    /// Every event must be on one of the provider's channels (which also bounds what it
    /// suppresses); the ledger then applies each only to a message sent on that channel.
    pub fn authorize(&self, report: &ProviderReport) -> Result<(), NotAuthorized> {
        if self.channels.is_empty() {
            return Err(NotAuthorized::NoChannels);
        }
        match report.events.iter().enumerate().find(|(_, e)| !self.channels.contains(&e.channel)) {
            Some((index, e)) => Err(NotAuthorized::Channel { index, channel: e.channel }),
            None => Ok(()),
        }
    }
}

/// A provider's request whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The signed timestamp.
    pub at: DateTime<Utc>,
    /// The HMAC, decoded: however the header spelled it (hex case, spaces), one value.
    tag: Vec<u8>,
}

impl Signed {
    /// The key under which this signature is remembered (one use), and until when: a
    /// minute past the freshness window, after which the timestamp check refuses it anyway.
    pub fn replay_key(&self, provider: &str) -> (String, DateTime<Utc>) {
        (format!("provider#{provider}#{}", hex::encode(&self.tag)), self.at + MAX_SKEW + TimeDelta::minutes(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: &str) -> SnsMessage {
        SnsMessage {
            kind: kind.into(),
            message_id: "m-1".into(),
            topic_arn: "arn:aws:sns:us-east-1:123456789012:t".into(),
            subject: None,
            message: "hello\nworld".into(),
            timestamp: "2026-02-20T09:30:04.689Z".into(),
            signature_version: Some("2".into()),
            signature: Some("c2ln".into()),
            signing_cert_url: Some("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem".into()),
            subscribe_url: None,
            token: None,
        }
    }

    #[test]
    fn strings_to_sign_follow_the_documented_field_order() {
        let mut n = message("Notification");
        assert_eq!(
            n.string_to_sign().unwrap(),
            "Message\nhello\nworld\nMessageId\nm-1\nTimestamp\n2026-02-20T09:30:04.689Z\n\
             TopicArn\narn:aws:sns:us-east-1:123456789012:t\nType\nNotification\n"
        );
        n.subject = Some("S".into());
        assert!(n.string_to_sign().unwrap().contains("MessageId\nm-1\nSubject\nS\nTimestamp\n"));

        let mut c = message("SubscriptionConfirmation");
        assert_eq!(
            c.string_to_sign(),
            Err(SnsMessageError::MissingField("SubscriptionConfirmation".into(), "SubscribeURL"))
        );
        c.subscribe_url = Some("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription".into());
        c.token = Some("tok".into());
        assert_eq!(
            c.string_to_sign().unwrap(),
            "Message\nhello\nworld\nMessageId\nm-1\nSubscribeURL\nhttps://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription\n\
             Timestamp\n2026-02-20T09:30:04.689Z\nToken\ntok\nTopicArn\narn:aws:sns:us-east-1:123456789012:t\n\
             Type\nSubscriptionConfirmation\n"
        );
        assert!(matches!(message("Gossip").string_to_sign(), Err(SnsMessageError::UnknownType(_))));
    }

    #[test]
    fn sns_messages_are_taken_for_as_long_as_sns_retries_them() {
        let m = message("Notification");
        let published = DateTime::parse_from_rfc3339(&m.timestamp).unwrap().with_timezone(&Utc);
        for (after, fresh) in [
            (TimeDelta::zero(), true),
            (TimeDelta::hours(1) + TimeDelta::seconds(30), true),
            (SNS_MAX_AGE, true),
            (SNS_MAX_AGE + TimeDelta::milliseconds(1), false),
            (TimeDelta::days(3), false),
            (-SNS_MAX_AHEAD, true),
            (-SNS_MAX_AHEAD - TimeDelta::seconds(1), false),
        ] {
            let expected = if fresh { Ok(published) } else { Err(SnsMessageError::Stale) };
            assert_eq!(m.check_fresh(published + after), expected, "{after}");
        }
        let garbled = SnsMessage { timestamp: "yesterday".into(), ..m.clone() };
        assert_eq!(garbled.check_fresh(published), Err(SnsMessageError::BadTimestamp));

        let (key, until) = m.replay_key(published).unwrap();
        assert_eq!(key, "sns#m-1");
        assert!(until > published + SNS_MAX_AGE, "remembered as long as it would be taken");
        for id in ["", "a b", "x\n", &"x".repeat(129)] {
            let bad = SnsMessage { message_id: id.into(), ..m.clone() };
            assert_eq!(bad.replay_key(published), Err(SnsMessageError::BadMessageId), "{id:?}");
        }
    }

    #[test]
    fn a_notification_is_relayed_with_its_signed_fields_only() {
        let mut m = message("Notification");
        let relayed: serde_json::Value = serde_json::from_str(&m.relayed().unwrap()).unwrap();
        assert_eq!(
            relayed,
            serde_json::json!({"Type": "Notification", "MessageId": "m-1", "TopicArn": m.topic_arn,
                "Message": "hello\nworld", "Timestamp": "2026-02-20T09:30:04.689Z", "SignatureVersion": "2",
                "Signature": "c2ln", "SigningCertURL": m.signing_cert_url})
        );
        m.subject = Some("S".into());
        let relayed: serde_json::Value = serde_json::from_str(&m.relayed().unwrap()).unwrap();
        assert_eq!(relayed["Subject"], "S");
        // What serde ignored on the way in (unsigned fields) has nowhere to go out.
        let with_extra: SnsMessage = serde_json::from_value(serde_json::json!({
            "Type": "Notification", "MessageId": "m-1", "TopicArn": "t", "Message": "{}", "Timestamp": "x",
            "SignatureVersion": "1", "Signature": "c2ln", "SigningCertURL": m.signing_cert_url,
            "type": "provider_report", "provider_report": {}, "UnsubscribeURL": "https://evil.example/"
        }))
        .unwrap();
        let out = with_extra.relayed().unwrap();
        assert!(!out.contains("provider") && !out.contains("evil"), "{out}");
        assert!(message("SubscriptionConfirmation").relayed().is_err(), "confirmations are not relayed");
    }

    #[test]
    fn a_provider_reports_on_its_channels_only() {
        let report = |channels: &[&str]| {
            let events: Vec<_> = channels
                .iter()
                .map(|c| serde_json::json!({"message_id": "0123456789abcdef0123456789abcdef", "channel": c, "status": "delivered"}))
                .collect();
            ProviderReport::parse(serde_json::json!({ "events": events }).to_string().as_bytes()).unwrap()
        };
        let provider = |channels: &[Channel]| Provider {
            key: ProviderKey::new("a provider secret of some length").unwrap(),
            channels: channels.iter().copied().collect(),
        };
        let sms = provider(&[Channel::Sms]);
        assert_eq!(sms.authorize(&report(&["sms", "sms"])), Ok(()));
        assert_eq!(
            sms.authorize(&report(&["sms", "email"])),
            Err(NotAuthorized::Channel { index: 1, channel: Channel::Email })
        );
        assert_eq!(sms.authorize(&report(&["push"])), Err(NotAuthorized::Channel { index: 0, channel: Channel::Push }));
        assert_eq!(provider(&[Channel::Sms, Channel::Email]).authorize(&report(&["email", "sms"])), Ok(()));
        assert_eq!(provider(&[]).authorize(&report(&["sms"])), Err(NotAuthorized::NoChannels));
    }

    #[test]
    fn only_sns_hosts_may_serve_certificates() {
        for (url, ok) in [
            ("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem", true),
            ("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem", true),
            ("https://sns.us-gov-west-1.amazonaws.com/x.pem", true),
            ("http://sns.us-east-1.amazonaws.com/x.pem", false),
            ("https://sns.us-east-1.amazonaws.com.evil.example/x.pem", false),
            ("https://sns.us-east-1.amazonaws.com@evil.example/x.pem", false),
            ("https://sns.us-east-1.amazonaws.com:8443/x.pem", false),
            ("https://sns.amazonaws.com/x.pem", false),
            ("https://sns..amazonaws.com/x.pem", false),
            ("https://sns.US-EAST-1.amazonaws.com/x.pem", false),
            ("https://evil.example/sns.us-east-1.amazonaws.com/x.pem", false),
            ("https://sns.us-east-1.amazonaws.com", false),
            ("https://s3.amazonaws.com/sns.us-east-1.amazonaws.com/x.pem", false),
        ] {
            assert_eq!(is_sns_url(url), ok, "{url}");
        }
        let mut m = message("Notification");
        m.signing_cert_url = Some("https://evil.example/cert.pem".into());
        assert_eq!(m.signature_parts(), Err(SnsMessageError::UntrustedCertUrl));
        m.signature_version = Some("3".into());
        assert_eq!(m.signature_parts(), Err(SnsMessageError::UnknownVersion("3".into())));
        m.signature = None;
        assert_eq!(m.signature_parts(), Err(SnsMessageError::Unsigned));
    }

    #[test]
    fn provider_signatures_bind_timestamp_and_body_and_expire() {
        let key = ProviderKey::new("a provider secret of some length").unwrap();
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let body = br#"{"events":[]}"#;
        let ts = now.timestamp().to_string();
        let sig = key.sign(now.timestamp(), body);
        let signed = key.verify(Some(&ts), Some(&sig), body, now).unwrap();
        assert_eq!(signed.at, now);
        // Within the window either way.
        assert!(key.verify(Some(&ts), Some(&sig), body, now + TimeDelta::seconds(299)).is_ok());
        assert!(key.verify(Some(&ts), Some(&sig), body, now - TimeDelta::seconds(299)).is_ok());

        use ProviderAuthError::*;
        type Case<'a> = (Option<&'a str>, Option<&'a str>, &'a [u8], DateTime<Utc>, ProviderAuthError);
        let cases: Vec<Case> = vec![
            (None, Some(&sig), body, now, Missing(TIMESTAMP_HEADER)),
            (Some(&ts), None, body, now, Missing(SIGNATURE_HEADER)),
            (Some("yesterday"), Some(&sig), body, now, Malformed(TIMESTAMP_HEADER)),
            (Some(&ts), Some("sha1=00"), body, now, Malformed(SIGNATURE_HEADER)),
            (Some(&ts), Some("v1=zz"), body, now, Malformed(SIGNATURE_HEADER)),
            (Some(&ts), Some(&sig), br#"{"events":[1]}"#, now, Mismatch),
            (Some("1800000001"), Some(&sig), body, now, Mismatch),
            (Some(&ts), Some(&sig), body, now + TimeDelta::seconds(301), Stale),
            (Some(&ts), Some(&sig), body, now - TimeDelta::seconds(301), Stale),
        ];
        for (ts, sig, body, at, expected) in cases {
            assert_eq!(key.verify(ts, sig, body, at), Err(expected.clone()), "{expected}");
        }
        // However the hex is spelled, one signature is one replay key.
        let upper = format!("v1={}", sig["v1=".len()..].to_ascii_uppercase());
        let (replay_key, until) = signed.replay_key("acme");
        assert_eq!(key.verify(Some(&ts), Some(&upper), body, now).unwrap().replay_key("acme").0, replay_key);
        assert_eq!(
            key.verify(Some(&ts), Some(&format!(" {sig}\t")), body, now).unwrap().replay_key("acme").0,
            replay_key
        );
        assert_eq!(replay_key, format!("provider#acme#{}", &sig["v1=".len()..]));
        assert_eq!(until, now + MAX_SKEW + TimeDelta::minutes(1));

        let other = ProviderKey::new("another secret, also long enough").unwrap();
        assert_eq!(other.verify(Some(&ts), Some(&sig), body, now), Err(Mismatch));
        assert!(ProviderKey::new("short").is_err());
    }
}
