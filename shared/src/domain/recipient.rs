//! A recipient as eligibility and dispatch see it: contact points, preferences,
//! consents and devices.

use crate::contract::{ConsentSource, Kind, Locale, TimeZone};
use crate::domain::contact::contact_hash;
use crate::domain::{Channel, DeviceId, EmailAddress, PhoneNumber, Platform, PushToken, RecipientId, Topic};
use chrono::{DateTime, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A daily window, in the recipient's own time zone, during which marketing waits.
/// `start` after `end` crosses midnight (22:00 to 08:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    #[serde(with = "hhmm")]
    pub start: NaiveTime,
    #[serde(with = "hhmm")]
    pub end: NaiveTime,
}

pub mod hhmm {
    use chrono::NaiveTime;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &NaiveTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.format("%H:%M").to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveTime, D::Error> {
        let raw = String::deserialize(d)?;
        let b = raw.as_bytes();
        let shape = b.len() == 5 && b[2] == b':' && [0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit());
        if !shape {
            return Err(serde::de::Error::custom("not a time of day as HH:MM"));
        }
        NaiveTime::parse_from_str(&raw, "%H:%M").map_err(|_| serde::de::Error::custom("not a time of day as HH:MM"))
    }
}

/// The state of one consent, as last set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentState {
    pub granted: bool,
    pub source: ConsentSource,
    pub at: DateTime<Utc>,
}

/// Which consent a record is about: a channel and, optionally, one topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConsentScope {
    pub channel: Channel,
    pub topic: Option<Topic>,
}

impl ConsentScope {
    /// Stable text form, used as a DynamoDB attribute suffix: `email:order_updates` or `email:*`.
    pub fn key(&self) -> String {
        match &self.topic {
            Some(t) => format!("{}:{}", self.channel, t),
            None => format!("{}:*", self.channel),
        }
    }

    pub fn parse_key(raw: &str) -> Option<Self> {
        let (channel, topic) = raw.split_once(':')?;
        let channel = channel.parse().ok()?;
        let topic = match topic {
            "*" => None,
            t => Some(Topic::new(t).ok()?),
        };
        Some(Self { channel, topic })
    }
}

/// A registered device: the token and the SNS platform endpoint made for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub platform: Platform,
    pub token: PushToken,
    pub endpoint_arn: String,
}

/// Which of a recipient's devices a registration is for: the app's device id when it
/// sends one (a new token for that device then replaces the old), else the token
/// itself. A stable, non-reversible key, safe in attribute names and logs.
pub fn device_slot(token: &PushToken, device_id: Option<&DeviceId>) -> String {
    match device_id {
        Some(id) => format!("id.{}", &contact_hash(&format!("device-id:{id}"))[..16]),
        None => token.handle(),
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Recipient {
    pub id: Option<RecipientId>,
    pub email: Option<EmailAddress>,
    pub phone: Option<PhoneNumber>,
    pub timezone: Option<TimeZone>,
    pub locale: Option<Locale>,
    pub quiet_hours: Option<QuietHours>,
    pub consents: BTreeMap<ConsentScope, ConsentState>,
    pub devices: Vec<Device>,
    /// Profile attributes as stored (declared or not; see [`crate::domain::profile`]).
    pub attributes: Map<String, Value>,
    /// When Herald first heard of the person (their first command); absent on profiles
    /// written before Herald recorded it.
    pub created_at: Option<DateTime<Utc>>,
    /// When the person last opened or clicked a message, per channel (from receipts).
    pub last_engaged: BTreeMap<Channel, DateTime<Utc>>,
}

/// What consent allows for one channel and topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentVerdict {
    Allowed,
    /// Marketing without an explicit opt-in.
    NotGranted,
    /// The person opted out of this channel (or this topic on it).
    OptedOut,
}

impl Recipient {
    /// The most specific consent wins: the topic's own record, else the channel-wide one.
    pub fn consent(&self, channel: Channel, topic: Option<&Topic>) -> Option<&ConsentState> {
        let specific = topic.and_then(|t| self.consents.get(&ConsentScope { channel, topic: Some(t.clone()) }));
        specific.or_else(|| self.consents.get(&ConsentScope { channel, topic: None }))
    }

    /// Marketing needs an explicit opt-in; transactional needs the channel not opted out.
    pub fn consent_verdict(&self, channel: Channel, topic: Option<&Topic>, kind: Kind) -> ConsentVerdict {
        match (self.consent(channel, topic).map(|c| c.granted), kind) {
            (Some(false), _) => ConsentVerdict::OptedOut,
            (Some(true), _) | (None, Kind::Transactional) => ConsentVerdict::Allowed,
            (None, Kind::Marketing) => ConsentVerdict::NotGranted,
        }
    }

    pub fn has_contact(&self, channel: Channel) -> bool {
        match channel {
            Channel::Email => self.email.is_some(),
            Channel::Sms => self.phone.is_some(),
            Channel::Push => !self.devices.is_empty(),
            // Everyone Herald knows has an inbox: it needs no address.
            Channel::Inbox => true,
        }
    }

    /// The channels the person has a contact point or a device for, in Herald's order. The
    /// inbox needs neither (everyone has one), so it is not listed: a segment on `channels`
    /// asks what the person gave.
    pub fn reachable(&self) -> Vec<Channel> {
        Channel::ALL.into_iter().filter(|c| *c != Channel::Inbox && self.has_contact(*c)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consent(granted: bool) -> ConsentState {
        ConsentState { granted, source: ConsentSource::new("test").unwrap(), at: DateTime::UNIX_EPOCH }
    }

    #[test]
    fn consent_rules() {
        let topic = Topic::new("order_updates").unwrap();
        let other = Topic::new("news").unwrap();
        let mut r = Recipient::default();
        use ConsentVerdict::*;
        use Kind::*;
        // Nothing recorded: transactional goes, marketing waits for an opt-in.
        assert_eq!(r.consent_verdict(Channel::Email, Some(&topic), Transactional), Allowed);
        assert_eq!(r.consent_verdict(Channel::Email, Some(&topic), Marketing), NotGranted);
        // Channel-wide opt-in covers every topic.
        r.consents.insert(ConsentScope { channel: Channel::Email, topic: None }, consent(true));
        assert_eq!(r.consent_verdict(Channel::Email, Some(&other), Marketing), Allowed);
        // A topic opt-out beats the channel opt-in, for transactional too.
        r.consents.insert(ConsentScope { channel: Channel::Email, topic: Some(topic.clone()) }, consent(false));
        assert_eq!(r.consent_verdict(Channel::Email, Some(&topic), Marketing), OptedOut);
        assert_eq!(r.consent_verdict(Channel::Email, Some(&topic), Transactional), OptedOut);
        assert_eq!(r.consent_verdict(Channel::Email, Some(&other), Marketing), Allowed);
        // Other channels are untouched.
        assert_eq!(r.consent_verdict(Channel::Sms, Some(&topic), Marketing), NotGranted);
    }

    #[test]
    fn consent_scope_keys_round_trip() {
        for scope in [
            ConsentScope { channel: Channel::Sms, topic: None },
            ConsentScope { channel: Channel::Push, topic: Some(Topic::new("news").unwrap()) },
        ] {
            assert_eq!(ConsentScope::parse_key(&scope.key()), Some(scope));
        }
        assert_eq!(ConsentScope::parse_key("fax:*"), None);
    }

    #[test]
    fn device_slots_follow_the_device_id_when_there_is_one() {
        let (a, b) = (PushToken::new("token-a").unwrap(), PushToken::new("token-b").unwrap());
        let phone = DeviceId::new("install-1").unwrap();
        assert_eq!(device_slot(&a, Some(&phone)), device_slot(&b, Some(&phone)), "a new token, the same device");
        assert_ne!(device_slot(&a, None), device_slot(&b, None));
        assert_eq!(device_slot(&a, None), a.handle());
        assert_ne!(device_slot(&a, Some(&phone)), device_slot(&a, Some(&DeviceId::new("install-2").unwrap())));
        assert!(!device_slot(&a, Some(&phone)).contains("install"));
    }

    #[test]
    fn quiet_hours_parse_strictly() {
        let q: QuietHours = serde_json::from_str(r#"{"start":"22:00","end":"08:00"}"#).unwrap();
        assert_eq!(q.start, NaiveTime::from_hms_opt(22, 0, 0).unwrap());
        assert!(serde_json::from_str::<QuietHours>(r#"{"start":"22","end":"08:00"}"#).is_err());
        assert!(serde_json::from_str::<QuietHours>(r#"{"start":"24:00","end":"08:00"}"#).is_err());
    }
}
