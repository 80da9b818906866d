//! Validating identifier newtypes: a value of these types is always well formed.

use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// Why a raw string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {problem}")]
pub struct InvalidId {
    pub what: &'static str,
    pub problem: String,
}

fn check(raw: &str, what: &'static str, max: usize, allowed: fn(char) -> bool) -> Result<(), InvalidId> {
    let len = raw.chars().count();
    let problem = if len == 0 {
        "must not be empty".to_owned()
    } else if len > max {
        format!("is {len} characters long, at most {max} are allowed")
    } else if let Some(bad) = raw.chars().find(|c| !allowed(*c)) {
        format!("contains the character {bad:?}, which is not allowed")
    } else {
        return Ok(());
    };
    Err(InvalidId { what, problem })
}

/// Letters, digits, `.`, `_` and `-`: names that also appear in keys and metrics.
fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

fn recipient_char(c: char) -> bool {
    name_char(c) || matches!(c, ':' | '@' | '+' | '=')
}

fn key_char(c: char) -> bool {
    !c.is_control()
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $what:literal, max = $max:literal, chars = $allowed:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const MAX_LEN: usize = $max;

            pub fn new(raw: impl Into<String>) -> Result<Self, InvalidId> {
                let raw = raw.into();
                check(&raw, $what, $max, $allowed)?;
                Ok(Self(raw))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::new(raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

identifier!(
    /// The producer's key for one notification: the same key is sent at most once.
    IdempotencyKey, "idempotency_key", max = 256, chars = key_char
);
identifier!(
    /// The producer's id for a person (never an address: ids appear in logs).
    RecipientId, "recipient", max = 128, chars = recipient_char
);
identifier!(
    /// A template's name, such as `order_shipped`.
    TemplateName, "template", max = 64, chars = name_char
);
identifier!(
    /// A consent topic, such as `order_updates`.
    Topic, "topic", max = 64, chars = name_char
);
identifier!(
    /// A campaign, grouping messages for caps, cooldowns, variants and holdouts.
    CampaignId, "campaign", max = 64, chars = name_char
);
identifier!(
    /// A segment's name, such as `lapsed_pro` (`segments/<name>.toml`).
    SegmentName, "segment", max = 64, chars = name_char
);
identifier!(
    /// Something a person did that a campaign counts as a conversion (`purchase`, `signup`).
    EventName, "event", max = 64, chars = name_char
);
identifier!(
    /// The app's own id for a device (an installation id), so a device's new push
    /// token replaces its old one. Stored only as a hash.
    DeviceId, "device_id", max = 128, chars = recipient_char
);

/// Herald's id for a notification: derived from its idempotency key, so every
/// redelivery of the same request maps to the same ledger item, and safe to carry
/// in SES message tags (`[0-9a-f]{32}`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(String);

impl MessageId {
    pub fn for_key(key: &IdempotencyKey) -> Self {
        let digest = Sha256::digest(key.as_str().as_bytes());
        Self(hex::encode(&digest[..16]))
    }

    /// Accepts an id read back from a provider tag or the ledger.
    pub fn parse(raw: &str) -> Option<Self> {
        (raw.len() == 32 && raw.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
            .then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_accept_and_refuse() {
        let cases: &[(&str, bool)] =
            &[("order_shipped", true), ("order-shipped.v2", true), ("", false), ("has space", false), ("é", false)];
        for (raw, ok) in cases {
            assert_eq!(TemplateName::new(*raw).is_ok(), *ok, "{raw:?}");
        }
        assert!(TemplateName::new("a".repeat(64)).is_ok());
        assert!(TemplateName::new("a".repeat(65)).is_err());
        assert!(RecipientId::new("user:42@tenant+x=1").is_ok());
        assert!(RecipientId::new("user#42").is_err());
        assert!(IdempotencyKey::new("order 1234 / shipped é").is_ok());
        assert!(IdempotencyKey::new("line\nbreak").is_err());
    }

    #[test]
    fn message_id_is_stable_and_tag_safe() {
        let key = IdempotencyKey::new("order-1234-shipped").unwrap();
        let a = MessageId::for_key(&key);
        assert_eq!(a, MessageId::for_key(&key));
        assert_eq!(a.as_str().len(), 32);
        assert_eq!(MessageId::parse(a.as_str()), Some(a));
        assert_ne!(MessageId::for_key(&IdempotencyKey::new("other").unwrap()).as_str(), key.as_str());
        assert_eq!(MessageId::parse("XYZ"), None);
    }
}
