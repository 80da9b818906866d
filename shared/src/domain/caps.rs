//! Frequency caps: which counters a send takes, from a policy that is configuration.
//!
//! A limit counts over a calendar window in UTC (`hour`, `day`, `week`) or a
//! rolling one (`"24h"`, `"90m"`, `"7d"`), per channel, across channels, or per
//! campaign (a campaign cooldown is `{"scope": "campaign", "window": "24h", "max": 1}`).
//! The store takes each slot atomically, so two concurrent takers can never both
//! get the last one.

use crate::contract::Kind;
use crate::domain::{CampaignId, Channel, RecipientId};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapScope {
    /// One counter per channel.
    EachChannel,
    /// One counter across every channel.
    AllChannels,
    /// One counter per campaign, across channels (a cooldown); skipped without a campaign.
    Campaign,
}

/// A calendar window (UTC) or a rolling one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapWindow {
    Hour,
    Day,
    Week,
    Rolling(TimeDelta),
}

impl CapWindow {
    fn length(self) -> TimeDelta {
        match self {
            CapWindow::Hour => TimeDelta::hours(1),
            CapWindow::Day => TimeDelta::days(1),
            CapWindow::Week => TimeDelta::weeks(1),
            CapWindow::Rolling(d) => d,
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "hour" => return Ok(CapWindow::Hour),
            "day" => return Ok(CapWindow::Day),
            "week" => return Ok(CapWindow::Week),
            _ => {}
        }
        let bad = || format!("window {raw:?} is not hour, day, week or a duration such as \"90m\", \"24h\", \"7d\"");
        let split = raw.len().checked_sub(1).ok_or_else(bad)?;
        let (number, unit) = raw.split_at(split);
        let n: i64 = number.parse().map_err(|_| bad())?;
        let d = match unit {
            "m" => TimeDelta::minutes(n),
            "h" => TimeDelta::hours(n),
            "d" => TimeDelta::days(n),
            _ => return Err(bad()),
        };
        if n <= 0 || d > TimeDelta::days(366) {
            return Err(bad());
        }
        Ok(CapWindow::Rolling(d))
    }
}

impl fmt::Display for CapWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapWindow::Hour => f.write_str("hour"),
            CapWindow::Day => f.write_str("day"),
            CapWindow::Week => f.write_str("week"),
            CapWindow::Rolling(d) if d.num_minutes() % 60 != 0 => write!(f, "{}m", d.num_minutes()),
            CapWindow::Rolling(d) if d.num_hours() >= 48 && d.num_hours() % 24 == 0 => write!(f, "{}d", d.num_days()),
            CapWindow::Rolling(d) => write!(f, "{}h", d.num_hours()),
        }
    }
}

impl Serialize for CapWindow {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CapWindow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        CapWindow::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transactional: Vec<CapLimit>,
}

impl Default for CapPolicy {
    /// Marketing: 1 an hour and 3 a day on each channel, 5 a day across channels,
    /// and a 24-hour cooldown per campaign. Transactional: uncapped.
    fn default() -> Self {
        use CapScope::*;
        use CapWindow::*;
        Self {
            // The cooldown comes first: when it and a cap both apply, it is the reason given.
            marketing: vec![
                CapLimit { scope: Campaign, window: Rolling(TimeDelta::hours(24)), max: 1 },
                CapLimit { scope: EachChannel, window: Hour, max: 1 },
                CapLimit { scope: EachChannel, window: Day, max: 3 },
                CapLimit { scope: AllChannels, window: Day, max: 5 },
            ],
            transactional: Vec::new(),
        }
    }
}

/// One counter a send must take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapSlot {
    /// The counter's key: recipient, kind, scope, window (and the window's start, for calendar windows).
    pub key: String,
    pub max: u32,
    /// For rolling windows: how far back a taken slot still counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_secs: Option<i64>,
    /// When the counter can be forgotten (the store's TTL).
    pub expires_at: DateTime<Utc>,
    /// When the slot is taken (a rolling window counts back from it).
    pub at: DateTime<Utc>,
    /// For the refusal detail: `email/day`, `all/hour`, `campaign/24h`.
    pub label: String,
    pub scope: CapScope,
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
    pub fn slots(
        &self,
        kind: Kind,
        recipient: &RecipientId,
        channel: Channel,
        campaign: Option<&CampaignId>,
        now: DateTime<Utc>,
    ) -> Vec<CapSlot> {
        self.limits(kind)
            .iter()
            .filter_map(|limit| {
                let scope = match limit.scope {
                    CapScope::EachChannel => channel.as_str().to_owned(),
                    CapScope::AllChannels => "all".to_owned(),
                    CapScope::Campaign => format!("campaign:{}", campaign?),
                };
                let length = limit.window.length();
                let label =
                    format!("{}/{}", if limit.scope == CapScope::Campaign { "campaign" } else { &scope }, limit.window);
                let base = format!("{recipient}#{}#{scope}#{}", kind.as_str(), limit.window);
                Some(match limit.window {
                    CapWindow::Rolling(_) => CapSlot {
                        key: base,
                        max: limit.max,
                        rolling_secs: Some(length.num_seconds()),
                        expires_at: now + length + TimeDelta::hours(1),
                        at: now,
                        label,
                        scope: limit.scope,
                    },
                    _ => {
                        // Weeks start on Monday: the epoch was a Thursday.
                        let offset =
                            if limit.window == CapWindow::Week { TimeDelta::days(3) } else { TimeDelta::zero() };
                        let start = (now + offset).duration_trunc(length).map(|s| s - offset).unwrap_or(now);
                        CapSlot {
                            key: format!("{base}#{}", start.timestamp()),
                            max: limit.max,
                            rolling_secs: None,
                            expires_at: start + length + TimeDelta::hours(1),
                            at: now,
                            label,
                            scope: limit.scope,
                        }
                    }
                })
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
            {"scope":"campaign","window":"24h","max":1},
            {"scope":"each_channel","window":"hour","max":1},
            {"scope":"each_channel","window":"day","max":3},
            {"scope":"all_channels","window":"day","max":5}]}"#;
        assert_eq!(CapPolicy::from_json(json).unwrap(), CapPolicy::default());
        assert_eq!(
            serde_json::to_value(CapPolicy::default()).unwrap(),
            serde_json::from_str::<serde_json::Value>(json).unwrap()
        );
        for bad in [
            r#"{"marketing":[{"scope":"each","window":"hour","max":1}]}"#,
            r#"{"marketing":[{"scope":"each_channel","window":"fortnight","max":1}]}"#,
            r#"{"marketing":[{"scope":"each_channel","window":"0h","max":1}]}"#,
            r#"{"marketing":[{"scope":"each_channel","window":"h","max":1}]}"#,
        ] {
            assert!(CapPolicy::from_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn windows_parse_and_print() {
        for (raw, window) in [
            ("hour", CapWindow::Hour),
            ("week", CapWindow::Week),
            ("90m", CapWindow::Rolling(TimeDelta::minutes(90))),
            ("6h", CapWindow::Rolling(TimeDelta::hours(6))),
            ("7d", CapWindow::Rolling(TimeDelta::days(7))),
        ] {
            assert_eq!(CapWindow::parse(raw), Ok(window));
            assert_eq!(window.to_string(), raw);
        }
    }

    #[test]
    fn calendar_slots_share_a_key_within_a_window_and_not_across() {
        let p = CapPolicy::default();
        let r = RecipientId::new("user-42").unwrap();
        let slots = |c, t| p.slots(Kind::Marketing, &r, c, None, at(t));
        let a = slots(Channel::Email, "2026-11-25T10:00:00Z");
        let b = slots(Channel::Email, "2026-11-25T10:59:59Z");
        let c = slots(Channel::Email, "2026-11-25T11:00:00Z");
        let push = slots(Channel::Push, "2026-11-25T10:00:00Z");
        assert_eq!(a.len(), 3, "no campaign, no cooldown slot");
        let keys = |v: &[CapSlot]| v.iter().map(|s| s.key.clone()).collect::<Vec<_>>();
        assert_eq!(keys(&a), keys(&b), "same hour, same counters");
        assert_ne!(a[0].key, c[0].key, "the hour window rolls at the boundary");
        assert_eq!(a[1].key, c[1].key, "the day window does not");
        assert_ne!(a[0].key, push[0].key, "each channel has its own counter");
        assert_eq!(a[2].key, push[2].key, "the cross-channel counter is shared");
        assert_eq!(a[0].expires_at, at("2026-11-25T12:00:00Z"));
        assert!(p.slots(Kind::Transactional, &r, Channel::Email, None, at("2026-11-25T10:00:00Z")).is_empty());
    }

    #[test]
    fn campaign_cooldowns_roll_and_span_channels() {
        let p = CapPolicy::default();
        let r = RecipientId::new("user-42").unwrap();
        let camp = CampaignId::new("black-friday").unwrap();
        let email = p.slots(Kind::Marketing, &r, Channel::Email, Some(&camp), at("2026-11-25T10:00:00Z"));
        let sms = p.slots(Kind::Marketing, &r, Channel::Sms, Some(&camp), at("2026-11-26T09:00:00Z"));
        let cooldown = email.first().unwrap();
        assert_eq!(
            (cooldown.scope, cooldown.rolling_secs, cooldown.label.as_str()),
            (CapScope::Campaign, Some(86_400), "campaign/24h")
        );
        assert_eq!(cooldown.key, sms.first().unwrap().key, "one cooldown per campaign whatever the channel or day");
        let other = CampaignId::new("cyber-monday").unwrap();
        assert_ne!(
            cooldown.key,
            p.slots(Kind::Marketing, &r, Channel::Email, Some(&other), at("2026-11-25T10:00:00Z")).first().unwrap().key
        );
    }

    #[test]
    fn weeks_start_on_monday() {
        let p = CapPolicy {
            marketing: vec![CapLimit { scope: CapScope::AllChannels, window: CapWindow::Week, max: 9 }],
            transactional: vec![],
        };
        let r = RecipientId::new("u").unwrap();
        let key = |t| p.slots(Kind::Marketing, &r, Channel::Email, None, at(t))[0].key.clone();
        // 2026-11-23 is a Monday.
        assert_eq!(key("2026-11-23T00:00:00Z"), key("2026-11-29T23:59:59Z"));
        assert_ne!(key("2026-11-29T23:59:59Z"), key("2026-11-30T00:00:00Z"));
        assert!(key("2026-11-23T00:00:00Z").ends_with(&at("2026-11-23T00:00:00Z").timestamp().to_string()));
    }
}
