//! PLACEHOLDER until the segments branch merges (same interface).

use crate::contract::Kind;
use crate::domain::recipient::{ConsentVerdict, Recipient};
use crate::domain::{Channel, SegmentName, Topic};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentDoc {
    pub name: SegmentName,
    pub version: u32,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub topic: Option<Topic>,
    pub channels: Vec<Channel>,
    #[serde(default)]
    pub exclude: Option<SegmentName>,
    #[serde(default)]
    pub filter: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Audience {
    pub segment: SegmentDoc,
    pub excluded: Vec<SegmentDoc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissReason {
    Filter,
    Excluded,
    NoConsent,
    Unreachable,
}

impl MissReason {
    pub fn as_str(self) -> &'static str {
        match self {
            MissReason::Filter => "filter",
            MissReason::Excluded => "excluded",
            MissReason::NoConsent => "no_consent",
            MissReason::Unreachable => "unreachable",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudienceVerdict {
    Match { channels: Vec<Channel> },
    Miss(MissReason),
}

impl Audience {
    pub fn resolve(
        name: &SegmentName,
        lookup: impl Fn(&SegmentName) -> Option<SegmentDoc>,
    ) -> Result<Audience, String> {
        let segment = lookup(name).ok_or_else(|| format!("unknown segment {name}"))?;
        Ok(Audience { segment, excluded: Vec::new() })
    }

    pub fn judge(&self, r: &Recipient, _now: DateTime<Utc>) -> AudienceVerdict {
        let reachable: Vec<Channel> = self
            .segment
            .channels
            .iter()
            .copied()
            .filter(|c| match c {
                Channel::Email => r.email.is_some(),
                Channel::Sms => r.phone.is_some(),
                Channel::Push => !r.devices.is_empty(),
            })
            .collect();
        if reachable.is_empty() {
            return AudienceVerdict::Miss(MissReason::Unreachable);
        }
        let consented: Vec<Channel> = reachable
            .into_iter()
            .filter(|c| r.consent_verdict(*c, self.segment.topic.as_ref(), Kind::Marketing) == ConsentVerdict::Allowed)
            .collect();
        if consented.is_empty() {
            return AudienceVerdict::Miss(MissReason::NoConsent);
        }
        AudienceVerdict::Match { channels: consented }
    }
}

impl SegmentDoc {
    pub fn validate(
        &self,
        _schema: &crate::domain::profile::ProfileSchema,
        known: impl Fn(&SegmentName) -> bool,
    ) -> Result<(), String> {
        match &self.exclude {
            Some(e) if !known(e) => Err(format!("segment {}: excludes unknown segment {e}", self.name)),
            _ => Ok(()),
        }
    }
}
