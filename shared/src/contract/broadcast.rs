//! Broadcast commands on the ingest queue: send a campaign to a segment, and pause,
//! resume or cancel it.

use super::{Kind, Rejection, TimeZone, instant};
use crate::domain::{CampaignId, Channel, SegmentName, TemplateName};
use chrono::{DateTime, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The highest rate a broadcast may ask for, in messages per second: above SES's and
/// SNS's usual account quotas, so a typo (`rate_per_second: 1000000`) is refused.
pub const MAX_RATE_PER_SECOND: u32 = 10_000;

/// `{"type": "broadcast", ...}`: one campaign to everyone in a segment. The campaign
/// names the broadcast: a campaign is broadcast once, and each person in it gets the
/// idempotency key `<campaign>#<recipient>`, so nobody is reached twice however often
/// the command or a page of its fan-out is delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastRequest {
    pub campaign: CampaignId,
    pub segment: SegmentName,
    /// Absent: every variant of the campaign names its own template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateName>,
    /// Candidate channels in order; absent: the segment's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<Channel>>,
    /// Data every message's template gets (the recipient's profile comes on its own).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub data: Map<String, Value>,
    #[serde(default = "marketing")]
    pub kind: Kind,
    /// When the fan-out starts; absent: at once.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "instant")]
    pub send_at: Option<DateTime<Utc>>,
    /// Deliver at this time of day in each recipient's own zone (the first such moment
    /// at or after `send_at`), `"09:00"`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_hhmm")]
    pub local_time: Option<NaiveTime>,
    /// The zone `local_time` uses for people without one; absent: UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_timezone: Option<TimeZone>,
    /// Messages handed to the pipeline per second, across every fan-out worker.
    pub rate_per_second: u32,
    /// Nothing of the broadcast is delivered after this instant.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "instant")]
    pub expires_at: Option<DateTime<Utc>>,
}

fn marketing() -> Kind {
    Kind::Marketing
}

pub(super) mod opt_hhmm {
    use chrono::NaiveTime;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<NaiveTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => crate::domain::recipient::hhmm::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    /// `null` is absent, as for every optional field.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveTime>, D::Error> {
        #[derive(serde::Deserialize)]
        struct Hhmm(#[serde(with = "crate::domain::recipient::hhmm")] NaiveTime);
        Option::<Hhmm>::deserialize(d).map(|t| t.map(|t| t.0))
    }
}

impl BroadcastRequest {
    /// Rules that span fields (the schema states the same).
    pub(super) fn check_rules(&self) -> Result<(), Rejection> {
        if !(1..=MAX_RATE_PER_SECOND).contains(&self.rate_per_second) {
            return Err(Rejection::new(
                "invalid_field",
                format!("rate_per_second must be between 1 and {MAX_RATE_PER_SECOND}"),
            ));
        }
        if let Some(channels) = &self.channels {
            if channels.is_empty() {
                return Err(Rejection::new("invalid_field", "channels must list at least one channel"));
            }
            if channels.iter().enumerate().any(|(i, c)| channels[..i].contains(c)) {
                return Err(Rejection::new("invalid_field", "channels lists a channel twice"));
            }
        }
        if let (Some(send_at), Some(expires_at)) = (self.send_at, self.expires_at)
            && expires_at <= send_at
        {
            return Err(Rejection::new("invalid_field", "expires_at must be after send_at"));
        }
        if self.default_timezone.is_some() && self.local_time.is_none() {
            return Err(Rejection::new("invalid_field", "default_timezone is only used with local_time"));
        }
        Ok(())
    }
}

/// `{"type": "pause_broadcast" | "resume_broadcast" | "cancel_broadcast", "campaign": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastControl {
    pub campaign: CampaignId,
    /// When the operator asked; a command older than the broadcast's last change is
    /// ignored, so a pause and a resume that SQS delivers out of order end as asked.
    /// Absent: when Herald received it.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "instant")]
    pub at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlAction {
    Pause,
    Resume,
    Cancel,
}

impl ControlAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ControlAction::Pause => "pause",
            ControlAction::Resume => "resume",
            ControlAction::Cancel => "cancel",
        }
    }
}
