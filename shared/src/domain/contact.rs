//! Channels, platforms and contact points. Contact points never print in clear:
//! their `Debug` is redacted so a stray `{:?}` cannot leak an address into logs.

use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Push,
    Email,
    Sms,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Push, Channel::Email, Channel::Sms];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Push => "push",
            Channel::Email => "email",
            Channel::Sms => "sms",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Channel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s).ok_or_else(|| format!("unknown channel {s:?}"))
    }
}

/// Mobile push platforms, each an SNS platform application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    Apns,
    ApnsSandbox,
    Fcm,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Apns => "apns",
            Platform::ApnsSandbox => "apns_sandbox",
            Platform::Fcm => "fcm",
        }
    }

    /// The key SNS expects in a `MessageStructure=json` payload.
    pub fn sns_key(self) -> &'static str {
        match self {
            Platform::Apns => "APNS",
            Platform::ApnsSandbox => "APNS_SANDBOX",
            Platform::Fcm => "GCM",
        }
    }
}

/// Why a raw contact point was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidContact {
    #[error("email is not a valid address")]
    Email,
    #[error("phone must be in E.164 form: '+', a country code and up to 15 digits in all")]
    Phone,
    #[error("token must be 1 to 4096 visible characters")]
    Token,
}

/// A text for logs with anything that looks like an email address or a phone
/// number replaced: parser errors quote the input, which may hold either.
pub fn redact_contacts(text: &str) -> String {
    let looks_like_contact = |word: &str| {
        let digits = word.chars().filter(char::is_ascii_digit).count();
        word.contains('@') || (digits >= 7 && word.chars().all(|c| c.is_ascii_digit() || "+-() \"'`.,:;".contains(c)))
    };
    text.split(' ').map(|w| if looks_like_contact(w) { "<redacted>" } else { w }).collect::<Vec<_>>().join(" ")
}

/// SHA-256 of a normalized contact point: what suppression keeps after erasure.
pub fn contact_hash(normalized: &str) -> String {
    hex::encode(Sha256::digest(normalized.as_bytes()))
}

macro_rules! redacted_debug {
    ($name:ident) => {
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "(<redacted>)"))
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Self::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
            }
        }
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);
redacted_debug!(EmailAddress);

impl EmailAddress {
    pub fn new(raw: impl Into<String>) -> Result<Self, InvalidContact> {
        let raw = raw.into();
        // email_address checks RFC 5321/5322 syntax. Herald is stricter, as the
        // published schema is: ASCII only, a dotted host name domain, no display text.
        let parsed = email_address::EmailAddress::parse_with_options(
            &raw,
            email_address::Options::default().without_display_text().without_domain_literal(),
        )
        .map_err(|_| InvalidContact::Email)?;
        let domain = parsed.domain();
        let host_name =
            domain.contains('.') && domain.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !host_name || !raw.is_ascii() || raw.len() > 254 {
            return Err(InvalidContact::Email);
        }
        Ok(Self(raw))
    }

    /// Suppression applies to an address however it was capitalised.
    pub fn suppression_hash(&self) -> String {
        contact_hash(&self.0.to_lowercase())
    }
}

#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct PhoneNumber(String);
redacted_debug!(PhoneNumber);

impl PhoneNumber {
    /// E.164: `+`, a country code that does not start with 0, 8 to 15 digits in all.
    pub fn new(raw: impl Into<String>) -> Result<Self, InvalidContact> {
        let raw = raw.into();
        let digits = raw.strip_prefix('+').ok_or(InvalidContact::Phone)?;
        let valid =
            (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
        if valid { Ok(Self(raw)) } else { Err(InvalidContact::Phone) }
    }

    pub fn suppression_hash(&self) -> String {
        contact_hash(&self.0)
    }
}

#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct PushToken(String);
redacted_debug!(PushToken);

impl PushToken {
    pub fn new(raw: impl Into<String>) -> Result<Self, InvalidContact> {
        let raw = raw.into();
        let valid = (1..=4096).contains(&raw.len()) && raw.chars().all(|c| c.is_ascii_graphic());
        if valid { Ok(Self(raw)) } else { Err(InvalidContact::Token) }
    }

    /// A short, stable, non-reversible handle for a token: safe in keys and logs.
    pub fn handle(&self) -> String {
        contact_hash(&self.0)[..16].to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_addresses() {
        for (raw, ok) in [
            ("ana@example.org", true),
            ("Ana.Smith+tag@Example.ORG", true),
            (" ana@example.org", false),
            ("josé@example.org", false),
            ("ana@ex_ample.org", false),
            ("ana@localhost", false),
            ("ana.example.org", false),
            ("Ana <ana@example.org>", false),
            ("", false),
        ] {
            assert_eq!(EmailAddress::new(raw).is_ok(), ok, "{raw:?}");
        }
        let a = EmailAddress::new("Ana@Example.org").unwrap();
        let b = EmailAddress::new("ana@example.org").unwrap();
        assert_eq!(a.suppression_hash(), b.suppression_hash());
        assert_eq!(format!("{a:?}"), "EmailAddress(<redacted>)");
    }

    #[test]
    fn phone_numbers() {
        for (raw, ok) in [
            ("+15555550100", true),
            ("+33612345678", true),
            ("15555550100", false),
            ("+0555550100", false),
            ("+1555", false),
            ("+1234567890123456", false),
            ("+1 555 555 0100", false),
        ] {
            assert_eq!(PhoneNumber::new(raw).is_ok(), ok, "{raw:?}");
        }
        assert!(!format!("{:?}", PhoneNumber::new("+15555550100").unwrap()).contains("555"));
    }

    #[test]
    fn contacts_are_redacted_from_log_text() {
        assert_eq!(
            redact_contacts("unknown variant `ana@example.org`, expected one of push"),
            "unknown variant <redacted> expected one of push"
        );
        assert_eq!(
            redact_contacts("invalid type: string \"+15555550100\", expected"),
            "invalid type: string <redacted> expected"
        );
        assert_eq!(
            redact_contacts("missing field `mail` at line 1 column 2"),
            "missing field `mail` at line 1 column 2"
        );
        assert_eq!(redact_contacts("SES id 0100019c7a3e4f21"), "SES id 0100019c7a3e4f21");
    }

    #[test]
    fn tokens() {
        assert!(PushToken::new("abc123:def").is_ok());
        assert!(PushToken::new("").is_err());
        assert!(PushToken::new("has space").is_err());
        let t = PushToken::new("abc").unwrap();
        assert_eq!(t.handle().len(), 16);
        assert!(!format!("{t:?}").contains("abc"));
    }
}
