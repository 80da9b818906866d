//! Frequency caps: which counters a send takes, from a policy that is configuration.
//!
//! Windows are calendar windows in UTC (the hour, the day). Each limit names a
//! counter; the store takes them one by one with a conditional increment, so two
//! concurrent takers can never both get the last slot.

use crate::contract::Kind;
use crate::domain::{Channel, RecipientId};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapScope {
    /// One counter per channel.
    EachChannel,
    /// One counter across every channel.
    AllChannels,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapWindow {
    Hour,
    Day,
}

impl CapWindow {
    fn length(self) -> TimeDelta {
        match self {
            CapWindow::Hour => TimeDelta::hours(1),
            CapWindow::Day => TimeDelta::days(1),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CapWindow::Hour => "hour",
            CapWindow::Day => "day",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapLimit {
    pub scope: CapScope,
    pub window: CapWindow,
    pub max: u32,
}

/// Limits per message kind. The shipped default caps marketing only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapPolicy {
    #[serde(default)]
    pub marketing: Vec<CapLimit>,
    #[serde(default)]
    pub transactional: Vec<CapLimit>,
}

impl Default for CapPolicy {
    /// Marketing: 1 an hour and 3 a day on each channel, 5 a day across channels.
    fn default() -> Self {
        use CapScope::*;
        use CapWindow::*;
        Self {
            marketing: vec![
                CapLimit { scope: EachChannel, window: Hour, max: 1 },
                CapLimit { scope: EachChannel, window: Day, max: 3 },
                CapLimit { scope: AllChannels, window: Day, max: 5 },
            ],
            transactional: Vec::new(),
        }
    }
}

/// One counter a send must take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapSlot {
    /// The counter's key: recipient, scope, window and the window's start.
    pub key: String,
    pub max: u32,
    /// When the counter can be forgotten (the store's TTL).
    pub expires_at: DateTime<Utc>,
    /// For the refusal reason: `email/day`, `all/hour`.
    pub label: String,
}

impl CapPolicy {
    pub fn from_json(raw: &str) -> Result<Self, String> {
        serde_json::from_str(raw).map_err(|e| format!("cap policy is not valid: {e}"))
    }

    pub fn limits(&self, kind: Kind) -> &[CapLimit] {
        match kind {
            Kind::Marketing => &self.marketing,
            Kind::Transactional => &self.transactional,
        }
    }

    /// The counters a send on `channel` takes at `now`, in policy order.
    pub fn slots(&self, kind: Kind, recipient: &RecipientId, channel: Channel, now: DateTime<Utc>) -> Vec<CapSlot> {
        self.limits(kind)
            .iter()
            .map(|limit| {
                let scope = match limit.scope {
                    CapScope::EachChannel => channel.as_str(),
                    CapScope::AllChannels => "all",
                };
                let length = limit.window.length();
                let start = now.duration_trunc(length).unwrap_or(now);
                CapSlot {
                    key: format!(
                        "{recipient}#{}#{scope}#{}#{}",
                        kind.as_str(),
                        limit.window.as_str(),
                        start.timestamp()
                    ),
                    max: limit.max,
                    expires_at: start + length + TimeDelta::hours(1),
                    label: format!("{scope}/{}", limit.window.as_str()),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn default_policy_parses_from_its_documented_json() {
        let json = r#"{"marketing":[
            {"scope":"each_channel","window":"hour","max":1},
            {"scope":"each_channel","window":"day","max":3},
            {"scope":"all_channels","window":"day","max":5}]}"#;
        assert_eq!(CapPolicy::from_json(json).unwrap(), CapPolicy::default());
        assert!(CapPolicy::from_json(r#"{"marketing":[{"scope":"each","window":"hour","max":1}]}"#).is_err());
    }

    #[test]
    fn slots_share_a_key_within_a_window_and_not_across() {
        let p = CapPolicy::default();
        let r = RecipientId::new("user-42").unwrap();
        let a = p.slots(Kind::Marketing, &r, Channel::Email, at("2026-11-25T10:00:00Z"));
        let b = p.slots(Kind::Marketing, &r, Channel::Email, at("2026-11-25T10:59:59Z"));
        let c = p.slots(Kind::Marketing, &r, Channel::Email, at("2026-11-25T11:00:00Z"));
        let push = p.slots(Kind::Marketing, &r, Channel::Push, at("2026-11-25T10:00:00Z"));
        assert_eq!(a.len(), 3);
        assert_eq!(a, b, "same hour, same counters");
        assert_ne!(a[0].key, c[0].key, "the hour window rolls at the boundary");
        assert_eq!(a[1].key, c[1].key, "the day window does not");
        assert_ne!(a[0].key, push[0].key, "each channel has its own counter");
        assert_eq!(a[2].key, push[2].key, "the cross-channel counter is shared");
        assert_eq!(a[0].expires_at, at("2026-11-25T12:00:00Z"));
        assert!(p.slots(Kind::Transactional, &r, Channel::Email, at("2026-11-25T10:00:00Z")).is_empty());
    }
}
