//! The in-app inbox: a person's messages as the team's app lists them, their ids and
//! page cursors, what an app may mark, and the checks on a user token's claims. Pure:
//! no I/O, time is an argument.
//!
//! A message is stored under the person's id (partition) and a sort key that orders
//! by delivery time, then message id: a query read backwards is newest first. Its
//! public id is that sort key, encoded: opaque to apps, and enough for the API to
//! address the message without a lookup (the person comes from the token, never
//! from the id).

use crate::domain::ledger::Status;
use crate::domain::{MessageId, RecipientId};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// A message's id in the inbox API: when it was delivered (milliseconds) and its
/// Herald message id, as 32 base64url characters. Apps treat it as opaque.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicId {
    at_ms: i64,
    message: MessageId,
}

impl PublicId {
    const BYTES: usize = 24;

    /// The id of `message` delivered at `at` (before 1970 counts as 1970).
    pub fn new(at: DateTime<Utc>, message: MessageId) -> Self {
        Self { at_ms: at.timestamp_millis().max(0), message }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        if raw.len() != 32 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
        Self::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::BYTES {
            return None;
        }
        let (at, id) = bytes.split_at(8);
        let at_ms = i64::from_be_bytes(at.try_into().ok()?);
        // Within what `new` makes, so the sort key keeps its fixed width.
        if !(0..=MAX_MS).contains(&at_ms) {
            return None;
        }
        Some(Self { at_ms, message: MessageId::parse(&hex::encode(id))? })
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = self.at_ms.to_be_bytes().to_vec();
        // A MessageId is 32 lower-case hex digits by construction.
        bytes.extend(hex::decode(self.message.as_str()).unwrap_or_default());
        bytes
    }

    /// The store's sort key: fixed-width milliseconds, then the message id, so that the
    /// text order is the time order.
    pub fn sort_key(&self) -> String {
        format!("{:015}#{}", self.at_ms, self.message)
    }

    pub fn from_sort_key(sk: &str) -> Option<Self> {
        let (at, id) = sk.split_once('#')?;
        if at.len() != 15 || !at.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self { at_ms: at.parse().ok()?, message: MessageId::parse(id)? })
    }

    pub fn message_id(&self) -> &MessageId {
        &self.message
    }

    /// When the message was delivered to the inbox.
    pub fn at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.at_ms).unwrap_or(DateTime::UNIX_EPOCH)
    }
}

/// The largest millisecond time a sort key holds (15 digits: the year 33658).
const MAX_MS: i64 = 999_999_999_999_999;

impl fmt::Display for PublicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.to_bytes()))
    }
}

/// Where the next page of a listing starts: after this message. Opaque to apps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(pub PublicId);

impl Cursor {
    const VERSION: u8 = 1;

    pub fn parse(raw: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
        let (version, rest) = bytes.split_first()?;
        if *version != Self::VERSION {
            return None;
        }
        PublicId::from_bytes(rest).map(Cursor)
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = vec![Self::VERSION];
        bytes.extend(self.0.to_bytes());
        f.write_str(&URL_SAFE_NO_PAD.encode(bytes))
    }
}

/// Which messages a listing shows. Archived messages show only when asked for; expired
/// ones never.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Filter {
    /// Every message not archived.
    #[default]
    All,
    /// Not archived, not read.
    Unread,
    /// Not archived, not seen.
    Unseen,
    /// Archived only.
    Archived,
}

impl Filter {
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "all" => Filter::All,
            "unread" => Filter::Unread,
            "unseen" => Filter::Unseen,
            "archived" => Filter::Archived,
            _ => return None,
        })
    }

    /// Whether `m` is listed under this filter at `now`.
    pub fn shows(self, m: &InboxMessage, now: DateTime<Utc>) -> bool {
        m.expires_at > now
            && match self {
                Filter::All => m.archived_at.is_none(),
                Filter::Unread => m.archived_at.is_none() && m.read_at.is_none(),
                Filter::Unseen => m.archived_at.is_none() && m.seen_at.is_none(),
                Filter::Archived => m.archived_at.is_some(),
            }
    }
}

/// One page of a listing, as asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub limit: usize,
    pub cursor: Option<Cursor>,
    pub filter: Filter,
}

impl ListQuery {
    pub const DEFAULT_LIMIT: usize = 20;
    pub const MAX_LIMIT: usize = 100;

    /// From the query string; an error says what to fix. Unknown parameters are ignored
    /// (a cache-buster does no harm); a limit out of range is refused, never clamped.
    pub fn parse(params: &HashMap<String, String>) -> Result<Self, String> {
        let limit = match params.get("limit") {
            None => Self::DEFAULT_LIMIT,
            Some(raw) => match raw.trim().parse::<usize>() {
                Ok(n) if (1..=Self::MAX_LIMIT).contains(&n) => n,
                _ => return Err(format!("limit must be a whole number from 1 to {}", Self::MAX_LIMIT)),
            },
        };
        let cursor = match params.get("cursor").filter(|c| !c.is_empty()) {
            None => None,
            Some(raw) => Some(Cursor::parse(raw).ok_or("cursor is not one this API gave")?),
        };
        let filter = match params.get("status") {
            None => Filter::All,
            Some(raw) => Filter::parse(raw).ok_or("status must be all, unread, unseen or archived")?,
        };
        Ok(Self { limit, cursor, filter })
    }
}

/// What an app marks a message as. Each is recorded once (its first time is kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mark {
    Seen,
    /// Also seen.
    Read,
    Archived,
    /// The action was followed: also read and seen.
    Clicked,
}

impl Mark {
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "seen" => Mark::Seen,
            "read" => Mark::Read,
            "archived" => Mark::Archived,
            "clicked" => Mark::Clicked,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mark::Seen => "seen",
            Mark::Read => "read",
            Mark::Archived => "archived",
            Mark::Clicked => "clicked",
        }
    }

    /// The ledger status this engagement moves the message to, as an email's open and
    /// click do. Seen moves nothing (storing the message already made it `delivered`),
    /// nor does archiving.
    pub fn ledger_status(self) -> Option<Status> {
        match self {
            Mark::Read => Some(Status::Opened),
            Mark::Clicked => Some(Status::Clicked),
            Mark::Seen | Mark::Archived => None,
        }
    }

    /// Whether `m` has this mark already.
    pub fn is_on(self, m: &InboxMessage) -> bool {
        match self {
            Mark::Seen => m.seen_at.is_some(),
            Mark::Read => m.read_at.is_some(),
            Mark::Archived => m.archived_at.is_some(),
            Mark::Clicked => m.clicked_at.is_some(),
        }
    }
}

/// One message in a person's inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxMessage {
    pub id: PublicId,
    pub recipient: RecipientId,
    pub title: String,
    pub body: String,
    pub action_url: Option<String>,
    pub data: BTreeMap<String, String>,
    pub template: String,
    pub topic: Option<String>,
    pub campaign: Option<String>,
    /// `transactional` or `marketing`.
    pub kind: String,
    pub created_at: DateTime<Utc>,
    /// Hidden from then on, and deleted by the store's TTL soon after.
    pub expires_at: DateTime<Utc>,
    pub seen_at: Option<DateTime<Utc>>,
    pub read_at: Option<DateTime<Utc>>,
    pub archived_at: Option<DateTime<Utc>>,
    pub clicked_at: Option<DateTime<Utc>>,
}

impl InboxMessage {
    /// The message as the API returns it.
    pub fn view(&self) -> MessageView<'_> {
        MessageView {
            id: self.id.to_string(),
            title: &self.title,
            body: &self.body,
            action_url: self.action_url.as_deref(),
            data: &self.data,
            template: &self.template,
            topic: self.topic.as_deref(),
            campaign: self.campaign.as_deref(),
            created_at: self.created_at,
            expires_at: self.expires_at,
            seen_at: self.seen_at,
            read_at: self.read_at,
            archived_at: self.archived_at,
            clicked_at: self.clicked_at,
        }
    }
}

/// The JSON of a message in the API (no Herald message id, no recipient: the token names the person).
#[derive(Debug, Serialize)]
pub struct MessageView<'a> {
    pub id: String,
    pub title: &'a str,
    pub body: &'a str,
    pub action_url: Option<&'a str>,
    pub data: &'a BTreeMap<String, String>,
    pub template: &'a str,
    pub topic: Option<&'a str>,
    pub campaign: Option<&'a str>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub seen_at: Option<DateTime<Utc>>,
    pub read_at: Option<DateTime<Utc>>,
    pub archived_at: Option<DateTime<Utc>>,
    pub clicked_at: Option<DateTime<Utc>>,
}

/// When a message delivered at `at` leaves the inbox: after the retention, and never
/// later than the notification's own `expires_at` (a stale code must not linger).
pub fn expiry(at: DateTime<Utc>, retention: TimeDelta, expires_at: Option<DateTime<Utc>>) -> DateTime<Utc> {
    let kept = at.checked_add_signed(retention).unwrap_or(DateTime::<Utc>::MAX_UTC);
    expires_at.map_or(kept, |e| e.min(kept))
}

// ---------------------------------------------------------------- user tokens

/// Clock skew allowed between the team's backend and Herald on `exp`, `nbf` and `iat`.
pub const TOKEN_LEEWAY_SECS: i64 = 30;

/// A user token's claims (a JWT signed HS256 by the team's backend): `sub` is the person,
/// `exp` required; `iat` and `nbf` optional. Other claims are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserClaims {
    /// Required (absent only in a token that is refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Seconds since the epoch (a JWT NumericDate may have a fraction). Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<f64>,
}

/// Why a token's claims are refused (its signature held).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    #[error("the token lacks a required claim (sub, exp)")]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's sub is not a recipient id")]
    BadSubject,
}

impl UserClaims {
    /// The person the token speaks for, if it is valid at `now`.
    pub fn check(&self, now: DateTime<Utc>) -> Result<RecipientId, ClaimsError> {
        let (Some(sub), Some(exp)) = (&self.sub, self.exp) else { return Err(ClaimsError::Missing) };
        let now = now.timestamp() as f64;
        let leeway = TOKEN_LEEWAY_SECS as f64;
        if !exp.is_finite() || exp + leeway <= now {
            return Err(ClaimsError::Expired);
        }
        let future = |t: Option<f64>| t.is_some_and(|t| !t.is_finite() || t - leeway > now);
        if future(self.nbf) || future(self.iat) {
            return Err(ClaimsError::NotYetValid);
        }
        RecipientId::new(sub.as_str()).map_err(|_| ClaimsError::BadSubject)
    }

    /// Claims for `recipient`, valid from `now` for `ttl`.
    pub fn for_recipient(recipient: &RecipientId, now: DateTime<Utc>, ttl: TimeDelta) -> Self {
        Self {
            sub: Some(recipient.to_string()),
            exp: Some((now + ttl).timestamp() as f64),
            iat: Some(now.timestamp() as f64),
            nbf: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> MessageId {
        MessageId::parse(&format!("{:032x}", u128::from(n) * 0x0101_0101)).unwrap()
    }

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    #[test]
    fn public_ids_round_trip_and_sort_keys_order_by_time() {
        let a = PublicId::new(at(1_764_500_000_123), id(1));
        let text = a.to_string();
        assert_eq!(text.len(), 32);
        assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{text}");
        assert_eq!(PublicId::parse(&text), Some(a.clone()));
        assert_eq!(PublicId::from_sort_key(&a.sort_key()), Some(a.clone()));
        assert_eq!(a.at(), at(1_764_500_000_123));
        assert_eq!(a.message_id(), &id(1));
        // Lexical order of sort keys is time order, whatever the digits.
        let keys: Vec<String> =
            [9, 10, 999, 1_000, 1_764_500_000_123].iter().map(|ms| PublicId::new(at(*ms), id(2)).sort_key()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(PublicId::new(at(-5), id(1)).at(), DateTime::UNIX_EPOCH);
    }

    #[test]
    fn malformed_public_ids_and_sort_keys_are_refused() {
        let good = PublicId::new(at(1_000), id(3)).to_string();
        let negative = URL_SAFE_NO_PAD.encode([[0xff; 8].as_slice(), &[0u8; 16]].concat());
        for raw in ["", "x", &good[..31], &format!("{good}A"), &good.replace(&good[..2], "!!"), &negative] {
            assert_eq!(PublicId::parse(raw), None, "{raw:?}");
        }
        for sk in ["", "1#", "000000000001000", "00000000000100#abc", "000000000001000#ABCDEF"] {
            assert_eq!(PublicId::from_sort_key(sk), None, "{sk:?}");
        }
    }

    #[test]
    fn cursors_round_trip_and_are_not_ids() {
        let c = Cursor(PublicId::new(at(42), id(4)));
        assert_eq!(Cursor::parse(&c.to_string()), Some(c.clone()));
        assert_eq!(Cursor::parse(&c.0.to_string()), None, "an id is not a cursor");
        assert_eq!(Cursor::parse("not a cursor"), None);
        assert_eq!(Cursor::parse(""), None);
    }

    #[test]
    fn list_queries_refuse_what_they_cannot_serve() {
        let q = |pairs: &[(&str, &str)]| {
            ListQuery::parse(&pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
        };
        assert_eq!(q(&[]), Ok(ListQuery { limit: 20, cursor: None, filter: Filter::All }));
        let cursor = Cursor(PublicId::new(at(7), id(5)));
        assert_eq!(
            q(&[("limit", "100"), ("status", "unread"), ("cursor", &cursor.to_string()), ("_", "1")]),
            Ok(ListQuery { limit: 100, cursor: Some(cursor), filter: Filter::Unread })
        );
        assert_eq!(q(&[("cursor", "")]).map(|q| q.cursor), Ok(None));
        for (pairs, says) in [
            (&[("limit", "100000")][..], "limit"),
            (&[("limit", "0")], "limit"),
            (&[("limit", "-1")], "limit"),
            (&[("limit", "ten")], "limit"),
            (&[("status", "deleted")], "status"),
            (&[("cursor", "zz")], "cursor"),
        ] {
            let err = q(pairs).unwrap_err();
            assert!(err.contains(says), "{pairs:?}: {err}");
        }
    }

    fn message(seen: bool, read: bool, archived: bool, expires_ms: i64) -> InboxMessage {
        let t = at(1_000);
        InboxMessage {
            id: PublicId::new(t, id(6)),
            recipient: RecipientId::new("ana").unwrap(),
            title: "t".into(),
            body: "b".into(),
            action_url: None,
            data: BTreeMap::new(),
            template: "x".into(),
            topic: None,
            campaign: None,
            kind: "transactional".into(),
            created_at: t,
            expires_at: at(expires_ms),
            seen_at: seen.then_some(t),
            read_at: read.then_some(t),
            archived_at: archived.then_some(t),
            clicked_at: None,
        }
    }

    #[test]
    fn filters_hide_archived_and_expired_messages() {
        let now = at(5_000);
        let cases = [
            // (seen, read, archived, expires) -> (all, unread, unseen, archived)
            ((false, false, false, 9_000), (true, true, true, false)),
            ((true, false, false, 9_000), (true, true, false, false)),
            ((true, true, false, 9_000), (true, false, false, false)),
            ((false, false, true, 9_000), (false, false, false, true)),
            ((false, false, false, 5_000), (false, false, false, false)),
            ((false, false, true, 4_000), (false, false, false, false)),
        ];
        for ((seen, read, archived, expires), expected) in cases {
            let m = message(seen, read, archived, expires);
            let got = (
                Filter::All.shows(&m, now),
                Filter::Unread.shows(&m, now),
                Filter::Unseen.shows(&m, now),
                Filter::Archived.shows(&m, now),
            );
            assert_eq!(got, expected, "{seen} {read} {archived} {expires}");
        }
        for raw in ["all", "unread", "unseen", "archived"] {
            assert!(Filter::parse(raw).is_some());
        }
    }

    #[test]
    fn marks_and_what_they_move_in_the_ledger() {
        assert_eq!(Mark::Read.ledger_status(), Some(Status::Opened));
        assert_eq!(Mark::Clicked.ledger_status(), Some(Status::Clicked));
        assert_eq!((Mark::Seen.ledger_status(), Mark::Archived.ledger_status()), (None, None));
        for m in [Mark::Seen, Mark::Read, Mark::Archived, Mark::Clicked] {
            assert_eq!(Mark::parse(m.as_str()), Some(m));
        }
        assert_eq!(Mark::parse("deleted"), None);
        let m = message(true, false, false, 9_000);
        assert!(Mark::Seen.is_on(&m) && !Mark::Read.is_on(&m) && !Mark::Clicked.is_on(&m));
    }

    #[test]
    fn messages_leave_at_the_retention_or_their_own_expiry_whichever_is_first() {
        let now = at(0);
        let days = TimeDelta::days(90);
        assert_eq!(expiry(now, days, None), now + days);
        assert_eq!(expiry(now, days, Some(now + TimeDelta::hours(1))), now + TimeDelta::hours(1));
        assert_eq!(expiry(now, days, Some(now + TimeDelta::days(900))), now + days);
    }

    #[test]
    fn claims_name_a_person_for_a_while() {
        let now = DateTime::from_timestamp(1_764_500_000, 0).unwrap();
        let t = now.timestamp() as f64;
        let claims = |sub: &str, exp: f64, iat: Option<f64>, nbf: Option<f64>| UserClaims {
            sub: Some(sub.to_owned()),
            exp: Some(exp),
            iat,
            nbf,
        };
        assert_eq!(claims("ana", t + 60.0, Some(t), None).check(now), Ok(RecipientId::new("ana").unwrap()));
        assert!(claims("ana", t - 10.0, None, None).check(now).is_ok(), "within the leeway");
        let cases = [
            (claims("ana", t - 31.0, None, None), ClaimsError::Expired),
            (claims("ana", f64::NAN, None, None), ClaimsError::Expired),
            (claims("ana", t + 60.0, Some(t + 31.0), None), ClaimsError::NotYetValid),
            (claims("ana", t + 60.0, None, Some(t + 3600.0)), ClaimsError::NotYetValid),
            (claims("ana#b", t + 60.0, None, None), ClaimsError::BadSubject),
            (claims("", t + 60.0, None, None), ClaimsError::BadSubject),
            (UserClaims { exp: None, ..claims("ana", t, None, None) }, ClaimsError::Missing),
            (UserClaims { sub: None, ..claims("ana", t + 60.0, None, None) }, ClaimsError::Missing),
        ];
        for (c, expected) in cases {
            assert_eq!(c.check(now), Err(expected), "{c:?}");
        }
        let minted = UserClaims::for_recipient(&RecipientId::new("bo").unwrap(), now, TimeDelta::hours(1));
        assert_eq!((minted.exp, minted.iat), (Some(t + 3600.0), Some(t)));
        assert!(minted.check(now + TimeDelta::minutes(59)).is_ok());
        assert_eq!(minted.check(now + TimeDelta::minutes(61)), Err(ClaimsError::Expired));
    }
}
