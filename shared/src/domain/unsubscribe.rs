//! One-click unsubscribe tokens (RFC 8058): a signed statement "this recipient
//! may revoke consent for this channel and topic until this instant", carried in
//! the `List-Unsubscribe` link of marketing email.
//!
//! Format: `base64url(payload) "." base64url(HMAC-SHA256(key, payload))`, where
//! payload is `1|<recipient>|<channel>|<topic or *>|<expiry, unix seconds>`. No
//! field can hold `|` (recipient ids, topics and channels are restricted names),
//! so the payload reads back unambiguously. The token names no address: the
//! recipient id is the producer's own opaque id.

use crate::domain::{Channel, RecipientId, Topic};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::fmt;

const VERSION: &str = "1";

/// The signing key (`HERALD_UNSUBSCRIBE_KEY`), kept as a keyed HMAC. Its `Debug` never shows it.
#[derive(Clone)]
pub struct UnsubscribeKey(Hmac<Sha256>);

impl fmt::Debug for UnsubscribeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UnsubscribeKey(<redacted>)")
    }
}

impl UnsubscribeKey {
    /// At least 32 bytes: the key is the only thing between a guessed link and a
    /// revoked consent.
    pub const MIN_LEN: usize = 32;

    pub fn new(raw: impl AsRef<[u8]>) -> Result<Self, String> {
        let raw = raw.as_ref();
        if raw.len() < Self::MIN_LEN {
            return Err(format!("the unsubscribe key must be at least {} bytes long", Self::MIN_LEN));
        }
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(raw).map_err(|e| e.to_string())?;
        Ok(Self(mac))
    }

    pub(crate) fn mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.0.clone();
        mac.update(payload);
        mac
    }
}

/// What a token allows: revoking one consent scope of one recipient, until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub recipient: RecipientId,
    pub channel: Channel,
    /// Absent: every topic on the channel.
    pub topic: Option<Topic>,
    pub expires_at: DateTime<Utc>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the unsubscribe link is malformed")]
    Malformed,
    #[error("the unsubscribe link is not one Herald signed")]
    BadSignature,
    #[error("the unsubscribe link has expired")]
    Expired,
}

fn payload(u: &Unsubscribe) -> String {
    let topic = u.topic.as_ref().map_or("*", Topic::as_str);
    format!("{VERSION}|{}|{}|{topic}|{}", u.recipient, u.channel, u.expires_at.timestamp())
}

/// The token for `u`, safe in a URL query as it is (base64url, no padding, one `.`).
pub fn sign(u: &Unsubscribe, key: &UnsubscribeKey) -> String {
    seal(&payload(u), key)
}

/// `base64url(payload) "." base64url(HMAC-SHA256(key, payload))`: the form of every link
/// token signed with this key (each kind of token starts its payload with its own version
/// tag, so one kind never reads as another).
pub(crate) fn seal(payload: &str, key: &UnsubscribeKey) -> String {
    let tag = key.mac(payload.as_bytes()).finalize().into_bytes();
    format!("{}.{}", URL_SAFE_NO_PAD.encode(payload), URL_SAFE_NO_PAD.encode(tag))
}

/// The payload of a [`seal`]ed token, its signature checked (in constant time).
pub(crate) fn open(token: &str, key: &UnsubscribeKey) -> Result<String, TokenError> {
    let (payload, tag) = token.split_once('.').ok_or(TokenError::Malformed)?;
    let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| TokenError::Malformed)?;
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| TokenError::Malformed)?;
    key.mac(&payload).verify_slice(&tag).map_err(|_| TokenError::BadSignature)?;
    String::from_utf8(payload).map_err(|_| TokenError::Malformed)
}

/// Checks the signature first (in constant time), then reads the fields, then the expiry.
pub fn verify(token: &str, key: &UnsubscribeKey, now: DateTime<Utc>) -> Result<Unsubscribe, TokenError> {
    let text = open(token, key)?;
    let fields: Vec<&str> = text.split('|').collect();
    let [version, recipient, channel, topic, expiry] = fields[..] else {
        return Err(TokenError::Malformed);
    };
    if version != VERSION {
        return Err(TokenError::Malformed);
    }
    let u = Unsubscribe {
        recipient: RecipientId::new(recipient).map_err(|_| TokenError::Malformed)?,
        channel: channel.parse().map_err(|_| TokenError::Malformed)?,
        topic: match topic {
            "*" => None,
            t => Some(Topic::new(t).map_err(|_| TokenError::Malformed)?),
        },
        expires_at: expiry
            .parse::<i64>()
            .ok()
            .and_then(|s| DateTime::from_timestamp(s, 0))
            .ok_or(TokenError::Malformed)?,
    };
    if u.expires_at <= now {
        return Err(TokenError::Expired);
    }
    Ok(u)
}

/// The one-click link: `<base>/unsubscribe?t=<token>` (`base` is the webhook function's URL).
pub fn link(base_url: &str, token: &str) -> String {
    format!("{}/unsubscribe?t={token}", base_url.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn key() -> UnsubscribeKey {
        UnsubscribeKey::new("0123456789abcdef0123456789abcdef").unwrap()
    }

    fn sample(topic: Option<&str>) -> Unsubscribe {
        Unsubscribe {
            recipient: RecipientId::new("user:42@tenant").unwrap(),
            channel: Channel::Email,
            topic: topic.map(|t| Topic::new(t).unwrap()),
            expires_at: DateTime::from_timestamp(1_900_000_000, 0).unwrap(),
        }
    }

    #[test]
    fn a_signed_token_verifies_to_what_was_signed() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        for u in [sample(Some("news")), sample(None)] {
            let token = sign(&u, &key());
            assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)), "{token}");
            assert_eq!(verify(&token, &key(), now), Ok(u));
        }
        let l = link("https://abc.lambda-url.us-east-1.on.aws/", "T");
        assert_eq!(l, "https://abc.lambda-url.us-east-1.on.aws/unsubscribe?t=T");
    }

    #[test]
    fn forged_altered_and_expired_tokens_are_refused() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let u = sample(Some("news"));
        let token = sign(&u, &key());
        let (payload, tag) = token.split_once('.').unwrap();

        let other_key = UnsubscribeKey::new("another key, just as long as the first").unwrap();
        assert_eq!(verify(&token, &other_key, now), Err(TokenError::BadSignature));

        // Another recipient's payload under the original tag.
        let mut widened = u.clone();
        widened.recipient = RecipientId::new("user:43@tenant").unwrap();
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(super::payload(&widened)));
        assert_eq!(verify(&forged, &key(), now), Err(TokenError::BadSignature));

        // One flipped character anywhere.
        let mut bytes = token.clone().into_bytes();
        bytes[3] = if bytes[3] == b'A' { b'B' } else { b'A' };
        assert_ne!(verify(std::str::from_utf8(&bytes).unwrap(), &key(), now), Ok(u.clone()));

        for unsigned in [format!("{payload}."), format!(".{tag}")] {
            assert_eq!(verify(&unsigned, &key(), now), Err(TokenError::BadSignature), "{unsigned}");
        }
        for bad in ["", "no-dot", "a.b.c", "%%%.%%%"] {
            assert_eq!(verify(bad, &key(), now), Err(TokenError::Malformed), "{bad:?}");
        }
        let later = u.expires_at + TimeDelta::seconds(1);
        assert_eq!(verify(&token, &key(), later), Err(TokenError::Expired));
        assert_eq!(verify(&token, &key(), u.expires_at), Err(TokenError::Expired));
    }

    #[test]
    fn a_well_signed_payload_with_bad_fields_is_malformed() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        for payload in
            ["1|user|fax|*|1900000000", "2|user|email|*|1900000000", "1|user|email|*|soon", "1|a#b|email|*|1"]
        {
            let tag = key().mac(payload.as_bytes()).finalize().into_bytes();
            let token = format!("{}.{}", URL_SAFE_NO_PAD.encode(payload), URL_SAFE_NO_PAD.encode(tag));
            assert_eq!(verify(&token, &key(), now), Err(TokenError::Malformed), "{payload}");
        }
        assert!(UnsubscribeKey::new("short").is_err());
        assert!(!format!("{:?}", key()).contains("0123"));
    }
}
