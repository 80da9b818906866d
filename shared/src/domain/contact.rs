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
    /// The in-app inbox: stored by Herald, read by the team's app over the inbox API.
    Inbox,
}

impl Channel {
    pub const ALL: [Channel; 4] = [Channel::Push, Channel::Email, Channel::Sms, Channel::Inbox];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Push => "push",
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Inbox => "inbox",
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

/// A text for logs and the ledger with anything that looks like an email address, a
/// phone number or a push token replaced by `<email>`, `<phone>` or `<token>`: provider
/// errors and parser errors quote their input, which may hold any of them, inside any
/// punctuation (`<ana@example.org>`, `"+15555550100"`, `mailto:ana@example.org,`).
///
/// - an address: a local part and a dotted domain around an `@`;
/// - a number: `+` and 7 to 15 digits (spaces, dots, dashes and parentheses allowed
///   between them), or 10 to 15 bare digits standing alone (not an AWS account id between
///   the colons of an ARN);
/// - a token: a run of 40 or more base64, hex or FCM characters with letters and digits,
///   unless it is an ARN or an id whose dash-separated parts are all short (a UUID, an SES
///   message id). Herald's own 32-character message ids stay.
pub fn redact_contacts(text: &str) -> String {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut spans: Vec<(usize, usize, &str)> = Vec::new();
    email_spans(&chars, &mut spans);
    phone_spans(&chars, &mut spans);
    token_spans(&chars, &mut spans);
    if spans.is_empty() {
        return text.to_owned();
    }
    spans.sort_unstable_by_key(|&(start, end, _)| (start, std::cmp::Reverse(end)));
    let byte = |i: usize| chars.get(i).map_or(text.len(), |&(b, _)| b);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end, label) in spans {
        if start < at {
            continue; // inside a span already replaced
        }
        out.push_str(text.get(byte(at)..byte(start)).unwrap_or_default());
        out.push_str(label);
        at = end;
    }
    out.push_str(text.get(byte(at)..).unwrap_or_default());
    out
}

/// Spans are `(first char, one past the last char, label)`, in char positions.
type Spans<'a> = Vec<(usize, usize, &'a str)>;

fn email_spans(chars: &[(usize, char)], spans: &mut Spans<'_>) {
    let local = |c: char| c.is_alphanumeric() || ".!#$%&*+=?^_{|}~-".contains(c);
    let domain = |c: char| c.is_alphanumeric() || c == '.' || c == '-';
    for (i, &(_, c)) in chars.iter().enumerate() {
        if c != '@' {
            continue;
        }
        let mut start = i;
        while start > 0 && chars.get(start - 1).is_some_and(|&(_, c)| local(c)) {
            start -= 1;
        }
        let mut end = i + 1;
        while chars.get(end).is_some_and(|&(_, c)| domain(c)) {
            end += 1;
        }
        while end > i + 1 && chars.get(end - 1).is_some_and(|&(_, c)| c == '.' || c == '-') {
            end -= 1;
        }
        let host: String = chars.get(i + 1..end).unwrap_or_default().iter().map(|&(_, c)| c).collect();
        let dotted = host.split('.').filter(|label| !label.is_empty()).count() >= 2 && !host.starts_with('.');
        if start < i && dotted {
            spans.push((start, end, "<email>"));
        }
    }
}

fn phone_spans(chars: &[(usize, char)], spans: &mut Spans<'_>) {
    let at = |i: usize| chars.get(i).map(|&(_, c)| c);
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let mut i = 0;
    while i < chars.len() {
        let c = at(i).unwrap_or(' ');
        let before = if i == 0 { None } else { at(i - 1) };
        if c == '+' && at(i + 1).is_some_and(|d| d.is_ascii_digit()) && !word(before) {
            // `+`, then digits with single separators between them.
            let (mut end, mut digits, mut j) = (i + 1, 0, i + 1);
            while let Some(d) = at(j) {
                if d.is_ascii_digit() {
                    digits += 1;
                    j += 1;
                    end = j;
                } else if " -.()".contains(d) && at(j + 1).is_some_and(|n| n.is_ascii_digit() || n == '(') {
                    j += 1;
                } else {
                    break;
                }
            }
            if (7..=15).contains(&digits) && !word(at(end)) {
                spans.push((i, end, "<phone>"));
            }
            i = end.max(i + 1);
        } else if c.is_ascii_digit() && !word(before) {
            let mut end = i;
            while at(end).is_some_and(|d| d.is_ascii_digit()) {
                end += 1;
            }
            // An AWS account id sits between the colons of an ARN.
            let account = before == Some(':') && at(end) == Some(':');
            if (10..=15).contains(&(end - i)) && !word(at(end)) && !account {
                spans.push((i, end, "<phone>"));
            }
            i = end;
        } else {
            i += 1;
        }
    }
}

fn token_spans(chars: &[(usize, char)], spans: &mut Spans<'_>) {
    let token = |c: char| c.is_ascii_alphanumeric() || "_-:+/".contains(c);
    let mut i = 0;
    while i < chars.len() {
        if !chars.get(i).is_some_and(|&(_, c)| token(c)) {
            i += 1;
            continue;
        }
        let start = i;
        while chars.get(i).is_some_and(|&(_, c)| token(c)) {
            i += 1;
        }
        let mut end = i;
        while end > start && chars.get(end - 1).is_some_and(|&(_, c)| c == ':') {
            end -= 1;
        }
        // Base64 padding ends a token; an `=` inside a run is a `name=value` separator.
        while end == i
            && chars.get(i).is_some_and(|&(_, c)| c == '=')
            && !chars.get(i + 1).is_some_and(|&(_, c)| token(c))
        {
            i += 1;
            end = i;
        }
        let run: String = chars.get(start..end).unwrap_or_default().iter().map(|&(_, c)| c).collect();
        let arn = run.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("arn:")) || run.contains("://");
        let id_like = run.split('-').all(|part| part.len() <= 16);
        let mixed = run.bytes().any(|b| b.is_ascii_digit()) && run.bytes().any(|b| b.is_ascii_alphabetic());
        if run.len() >= 40 && mixed && !arn && !id_like {
            spans.push((start, end, "<token>"));
        }
    }
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
    fn contacts_are_redacted_from_any_text() {
        let apns = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
        let fcm = "dQw4w9WgXcQ:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx3k_Zq0Ovd8EfbT7rmE2iLqLq0c9x1fJ";
        let cases: &[(&str, &str)] = &[
            // addresses, inside any punctuation
            (
                "unknown variant `ana@example.org`, expected one of push",
                "unknown variant `<email>`, expected one of push",
            ),
            (
                "The following identities failed the check in region US-EAST-1: ana@example.org, bob.s+x@mail.example.co.uk",
                "The following identities failed the check in region US-EAST-1: <email>, <email>",
            ),
            ("To: <ana@example.org>; cc:(bo@ex-ample.org)", "To: <<email>>; cc:(<email>)"),
            ("link mailto:ana@example.org?subject=hi.", "link mailto:<email>?subject=hi."),
            ("\"ana@example.org\",'josé@exemple.fr'", "\"<email>\",'<email>'"),
            (
                "550 5.1.1 <ana@example.org>: Recipient address rejected",
                "550 5.1.1 <<email>>: Recipient address rejected",
            ),
            // numbers, E.164 or bare
            ("invalid type: string \"+15555550100\", expected", "invalid type: string \"<phone>\", expected"),
            (
                "Invalid parameter: PhoneNumber Reason: +15555550100 is not valid",
                "Invalid parameter: PhoneNumber Reason: <phone> is not valid",
            ),
            ("call (+33 6 12 34 56 78), or +1-555-555-0100:", "call (<phone>), or <phone>:"),
            ("integer `15555550100`, expected a string", "integer `<phone>`, expected a string"),
            // tokens
            (&format!("token {apns} refused"), "token <token> refused"),
            (&format!("Token={fcm};"), "Token=<token>;"),
            // what stays
            ("missing field `mail` at line 1 column 2", "missing field `mail` at line 1 column 2"),
            ("SES id 0100019c7a3e4f21", "SES id 0100019c7a3e4f21"),
            (
                "ses 010001912a1b2c3d-1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d-000000 ok",
                "ses 010001912a1b2c3d-1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d-000000 ok",
            ),
            ("message 5e6880e5d6824c0f8a5f70e072e81fa8 sent", "message 5e6880e5d6824c0f8a5f70e072e81fa8 sent"),
            (
                "Endpoint arn:aws:sns:us-east-1:123456789012:endpoint/GCM/app/5e3b already exists",
                "Endpoint arn:aws:sns:us-east-1:123456789012:endpoint/GCM/app/5e3b already exists",
            ),
            (
                "recipient user:42@tenant+x=1 at 2026-11-25T18:00:00Z",
                "recipient user:42@tenant+x=1 at 2026-11-25T18:00:00Z",
            ),
            ("body is 70000 bytes; 3 of +12 ok; e@x", "body is 70000 bytes; 3 of +12 ok; e@x"),
            (
                "ProvisionedThroughputExceededExceptionFromTheService",
                "ProvisionedThroughputExceededExceptionFromTheService",
            ),
            ("", ""),
        ];
        for (text, redacted) in cases {
            assert_eq!(redact_contacts(text), *redacted, "{text}");
        }
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
