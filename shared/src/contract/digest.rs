//! `digest` on a notify: items with the same recipient, template and key within a window
//! become one message (see `docs/digests.md`).

use super::Rejection;
use crate::domain::duration::Span;
use chrono::{NaiveTime, TimeDelta};
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// The longest window, `max_wait` included.
pub const MAX_WINDOW: TimeDelta = TimeDelta::days(7);
/// The most items one window takes, and the default of `max_items`.
pub const MAX_ITEMS: u32 = 1000;

/// `"digest": {"key": "post-42", "window": "15m" | "until": "18:00", "sliding": false,
/// "max_wait": "2h", "max_items": 100, "flush_first": false}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestSpec {
    /// Items with the same recipient, template and key are digested together.
    pub key: DigestKey,
    /// The window's length, from the item that opens it (or, sliding, from the last item).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Span>,
    /// Or: the window ends at the next such time of day in the recipient's zone (UTC without one).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "super::broadcast::opt_hhmm")]
    pub until: Option<NaiveTime>,
    /// Each item extends the window by `window`, up to `max_wait` after it opened.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sliding: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wait: Option<Span>,
    /// The window closes as soon as it holds this many items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_items: Option<u32>,
    /// The item that opens a window is sent at once, as a digest of one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub flush_first: bool,
}

impl DigestSpec {
    /// The window's item limit.
    pub fn max_items(&self) -> u32 {
        self.max_items.unwrap_or(MAX_ITEMS)
    }

    /// Rules that span fields. `send_at`: the notify has one (a digest item is not scheduled).
    pub(super) fn check_rules(&self, send_at: bool) -> Result<(), Rejection> {
        let refuse = |why: &str| Err(Rejection::new("invalid_field", format!("digest.{why}")));
        if send_at {
            return Err(Rejection::new("invalid_field", "digest cannot be combined with send_at"));
        }
        let in_range = |s: &Span| s.delta() >= TimeDelta::seconds(1) && s.delta() <= MAX_WINDOW;
        match (&self.window, &self.until) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(Rejection::new("invalid_field", "digest needs exactly one of window and until"));
            }
            (Some(w), None) if !in_range(w) => return refuse("window must be from 1s to 7d"),
            _ => {}
        }
        match (self.sliding, &self.max_wait) {
            (true, _) if self.until.is_some() => return refuse("sliding needs a window, not until"),
            (true, None) => return refuse("sliding needs max_wait"),
            (false, Some(_)) => return refuse("max_wait is only used with sliding"),
            (true, Some(m)) => {
                let window = self.window.as_ref().map(Span::delta).unwrap_or_default();
                if !in_range(m) || m.delta() < window {
                    return refuse("max_wait must be at least the window and at most 7d");
                }
            }
            (false, None) => {}
        }
        if !(1..=MAX_ITEMS).contains(&self.max_items()) {
            return refuse("max_items must be between 1 and 1000");
        }
        Ok(())
    }
}

/// What groups items into one digest, with the recipient and the template: 1 to 128
/// characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct DigestKey(String);

impl DigestKey {
    pub const MAX_LEN: usize = 128;

    pub fn new(raw: impl Into<String>) -> Result<Self, String> {
        let raw = raw.into();
        let len = raw.chars().count();
        if !(1..=Self::MAX_LEN).contains(&len) || raw.chars().any(char::is_control) {
            return Err("the digest key must be 1 to 128 characters, without control characters".to_owned());
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DigestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DigestKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use crate::contract::IngestMessage;
    use serde_json::{Value, json};

    fn with(digest: Value, extra: Value) -> String {
        let mut body = json!({"idempotency_key": "k", "recipient": "u", "template": "new_comments",
                              "kind": "marketing", "digest": digest});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body.to_string()
    }

    #[test]
    fn digest_specs_are_checked_with_reasons() {
        for ok in [
            json!({"key": "post-42", "window": "15m"}),
            json!({"key": "post-42", "until": "18:00", "max_items": 1000, "flush_first": true}),
            json!({"key": "p", "window": "10m", "sliding": true, "max_wait": "2h", "max_items": 1}),
            json!({"key": "p", "window": "7d", "sliding": false, "max_wait": null, "until": null}),
        ] {
            let body = with(ok.clone(), json!({}));
            assert!(IngestMessage::parse(&body).is_ok(), "{ok}: {:?}", IngestMessage::parse(&body));
        }
        let cases = [
            (json!({"key": "p"}), json!({}), "digest needs exactly one of window and until"),
            (
                json!({"key": "p", "window": "1m", "until": "18:00"}),
                json!({}),
                "digest needs exactly one of window and until",
            ),
            (json!({"key": "p", "window": "8d"}), json!({}), "digest.window must be from 1s to 7d"),
            (
                json!({"key": "p", "window": "15"}),
                json!({}),
                "digest.window: not a duration such as \"30s\", \"15m\", \"2h\" or \"1d\"",
            ),
            (
                json!({"key": "p", "until": "18:00", "sliding": true, "max_wait": "1h"}),
                json!({}),
                "digest.sliding needs a window, not until",
            ),
            (json!({"key": "p", "window": "1m", "sliding": true}), json!({}), "digest.sliding needs max_wait"),
            (
                json!({"key": "p", "window": "1m", "max_wait": "1h"}),
                json!({}),
                "digest.max_wait is only used with sliding",
            ),
            (
                json!({"key": "p", "window": "2h", "sliding": true, "max_wait": "1h"}),
                json!({}),
                "digest.max_wait must be at least the window and at most 7d",
            ),
            (
                json!({"key": "p", "window": "2h", "sliding": true, "max_wait": "8d"}),
                json!({}),
                "digest.max_wait must be at least the window and at most 7d",
            ),
            (
                json!({"key": "p", "window": "1m", "max_items": 0}),
                json!({}),
                "digest.max_items must be between 1 and 1000",
            ),
            (
                json!({"key": "p", "window": "1m", "max_items": 1001}),
                json!({}),
                "digest.max_items must be between 1 and 1000",
            ),
            (
                json!({"key": "", "window": "1m"}),
                json!({}),
                "digest.key: the digest key must be 1 to 128 characters, without control characters",
            ),
            (
                json!({"key": "p", "window": "1m"}),
                json!({"send_at": "2026-11-25T18:00:00Z"}),
                "digest cannot be combined with send_at",
            ),
        ];
        for (digest, extra, why) in cases {
            let body = with(digest.clone(), extra);
            let rejection = IngestMessage::parse(&body).expect_err(&body);
            assert_eq!(rejection.code, "invalid_field", "{digest}");
            assert!(rejection.detail.starts_with(why), "{digest}: {}", rejection.detail);
        }
    }
}
