//! Campaigns: holdout groups and weighted A/B variants, assigned by a stable hash
//! of campaign and recipient, so a person lands in the same group on every run,
//! in every function, for the campaign's whole life; the stack-wide global control
//! group, by a stable hash of the recipient alone; and the conversion a campaign
//! counts (an event within a window after its message was accepted).

use crate::contract::Kind;
use crate::domain::{CampaignId, EventName, IdempotencyKey, MessageId, RecipientId, TemplateName};
use chrono::TimeDelta;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How long after its message a conversion counts, when the campaign does not say.
pub const DEFAULT_CONVERSION_WINDOW_HOURS: u32 = 168;

/// The longest conversion window a campaign may declare (a year).
pub const MAX_CONVERSION_WINDOW_HOURS: u32 = 8_760;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignDoc {
    pub name: CampaignId,
    /// Share of recipients held out (not sent to) so lift can be measured: 0 to 100.
    #[serde(default)]
    pub holdout_percent: f64,
    #[serde(default)]
    pub variants: Vec<Variant>,
    /// The `track` event that counts as this campaign's conversion (`purchase`).
    /// Written only when set, so a document without it reads in older functions too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion_event: Option<EventName>,
    /// A conversion counts if it happens within this many hours after the person's
    /// message of the campaign was accepted (sent or held out alike).
    #[serde(default = "default_window", skip_serializing_if = "is_default_window")]
    pub conversion_window_hours: u32,
}

fn default_window() -> u32 {
    DEFAULT_CONVERSION_WINDOW_HOURS
}

fn is_default_window(hours: &u32) -> bool {
    *hours == DEFAULT_CONVERSION_WINDOW_HOURS
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub name: String,
    pub weight: u32,
    /// The template this variant sends instead of the request's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateName>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment<'a> {
    Holdout,
    /// In the sending group, with its variant if the campaign has any.
    Send(Option<&'a Variant>),
}

/// A number in `0..modulo` fixed by the salt, campaign and recipient.
fn bucket(salt: &str, campaign: &CampaignId, recipient: &RecipientId, modulo: u64) -> u64 {
    let digest = Sha256::digest(format!("{salt}\u{1f}{campaign}\u{1f}{recipient}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % modulo.max(1)
}

impl CampaignDoc {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=100.0).contains(&self.holdout_percent) {
            return Err(format!("campaign {}: holdout_percent must be between 0 and 100", self.name));
        }
        if self.variants.iter().any(|v| v.weight == 0) {
            return Err(format!("campaign {}: every variant needs a weight above 0", self.name));
        }
        if !(1..=MAX_CONVERSION_WINDOW_HOURS).contains(&self.conversion_window_hours) {
            return Err(format!(
                "campaign {}: conversion_window_hours must be from 1 to {MAX_CONVERSION_WINDOW_HOURS}",
                self.name
            ));
        }
        Ok(())
    }

    /// Whether a `track` of `event` is this campaign's conversion.
    pub fn converts_on(&self, event: &EventName) -> bool {
        self.conversion_event.as_ref() == Some(event)
    }

    /// How long after a message's acceptance its conversion counts.
    pub fn conversion_window(&self) -> TimeDelta {
        TimeDelta::hours(i64::from(self.conversion_window_hours))
    }

    pub fn assign(&self, recipient: &RecipientId) -> Assignment<'_> {
        // Basis points, so 2.5% holds out exactly 250 buckets in 10,000.
        let held = (self.holdout_percent * 100.0).round() as u64;
        if bucket("holdout", &self.name, recipient, 10_000) < held {
            return Assignment::Holdout;
        }
        let total: u64 = self.variants.iter().map(|v| u64::from(v.weight)).sum();
        if total == 0 {
            return Assignment::Send(None);
        }
        let mut point = bucket("variant", &self.name, recipient, total);
        for v in &self.variants {
            if point < u64::from(v.weight) {
                return Assignment::Send(Some(v));
            }
            point -= u64::from(v.weight);
        }
        Assignment::Send(self.variants.last())
    }
}

/// The idempotency key a broadcast gives a campaign's message to one person,
/// `<campaign>#<recipient>`: so the message is found again from the two alone
/// (a conversion is recorded on it without an index). Always a valid key: a campaign
/// is at most 64 characters and a recipient 128, and neither contains a control character.
pub fn message_key(campaign: &CampaignId, recipient: &RecipientId) -> Option<IdempotencyKey> {
    IdempotencyKey::new(format!("{campaign}#{recipient}")).ok()
}

/// The ledger id of the message [`message_key`] names.
pub fn message_id(campaign: &CampaignId, recipient: &RecipientId) -> Option<MessageId> {
    message_key(campaign, recipient).map(|key| MessageId::for_key(&key))
}

/// The stack-wide global control group: a fixed share of people held out of all
/// marketing, whatever the campaign, so the effect of marketing as a whole can be
/// measured. Membership is a hash of the recipient id with a fixed salt: the same
/// people in every campaign, function and run; raising the percentage keeps everyone
/// who was in and adds others, lowering it releases some.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GlobalControl {
    /// Out of 10,000, so 2.5% holds out exactly 250 buckets.
    basis_points: u64,
}

/// Never change: a new salt would move everyone in or out of the group.
const GLOBAL_CONTROL_SALT: &str = "herald-global-control";

impl GlobalControl {
    /// `percent` of people, 0 to 100 (decimals allowed: 2.5).
    pub fn new(percent: f64) -> Result<Self, String> {
        if !(0.0..=100.0).contains(&percent) {
            return Err("the global control percentage must be from 0 to 100".into());
        }
        Ok(Self { basis_points: (percent * 100.0).round() as u64 })
    }

    pub fn percent(&self) -> f64 {
        self.basis_points as f64 / 100.0
    }

    /// Whether `recipient` is in the group (marketing or not: see [`group`] for who is held out).
    pub fn contains(&self, recipient: &RecipientId) -> bool {
        if self.basis_points == 0 {
            return false;
        }
        let digest = Sha256::digest(format!("{GLOBAL_CONTROL_SALT}\u{1f}{recipient}").as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first) % 10_000 < self.basis_points
    }
}

/// Where one message falls, for sending and for measuring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Group<'a> {
    /// In the global control group: a marketing message is not sent (`global_control`).
    GlobalControl,
    /// In the campaign's holdout: not sent (`holdout`).
    Holdout,
    /// Sent, with its variant if the campaign has any.
    Send(Option<&'a Variant>),
}

impl Group<'_> {
    /// How reports name the group.
    pub fn label(&self) -> String {
        match self {
            Group::GlobalControl => "global control".into(),
            Group::Holdout => "holdout".into(),
            Group::Send(Some(v)) => format!("variant {}", v.name),
            Group::Send(None) => "sent".into(),
        }
    }
}

/// The group of a message of `kind` to `recipient` in `campaign` (if it has one):
/// the global control group first, for marketing only (a transactional message is never
/// held out of it), then the campaign's own holdout and variants. Eligibility sends by it;
/// `herald funnel` recomputes it for every message, sent or not (intent to treat).
pub fn group<'a>(
    kind: Kind,
    recipient: &RecipientId,
    campaign: Option<&'a CampaignDoc>,
    global: GlobalControl,
) -> Group<'a> {
    if kind == Kind::Marketing && global.contains(recipient) {
        return Group::GlobalControl;
    }
    match campaign.map(|c| c.assign(recipient)) {
        Some(Assignment::Holdout) => Group::Holdout,
        Some(Assignment::Send(variant)) => Group::Send(variant),
        None => Group::Send(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campaign(holdout: f64, weights: &[u32]) -> CampaignDoc {
        CampaignDoc {
            name: CampaignId::new("black-friday-2026").unwrap(),
            holdout_percent: holdout,
            variants: weights
                .iter()
                .enumerate()
                .map(|(i, w)| Variant { name: format!("v{i}"), weight: *w, template: None })
                .collect(),
            conversion_event: None,
            conversion_window_hours: DEFAULT_CONVERSION_WINDOW_HOURS,
        }
    }

    fn person(i: u32) -> RecipientId {
        RecipientId::new(format!("user-{i}")).unwrap()
    }

    /// The first person (by number) in, or out of, the global control group at `percent`.
    fn first(percent: f64, inside: bool) -> RecipientId {
        let global = GlobalControl::new(percent).unwrap();
        (0..).map(person).find(|r| global.contains(r) == inside).unwrap()
    }

    #[test]
    fn the_global_control_group_holds_out_marketing_only_and_comes_before_the_campaign() {
        let held = campaign(100.0, &[]);
        let sent = campaign(0.0, &[1]);
        let (inside, outside) = (first(10.0, true), first(10.0, false));
        let ten = GlobalControl::new(10.0).unwrap();
        type Case<'a> = (&'a str, Kind, &'a RecipientId, Option<&'a CampaignDoc>, GlobalControl, Group<'a>);
        let cases: Vec<Case<'_>> = vec![
            ("in the group, marketing", Kind::Marketing, &inside, None, ten, Group::GlobalControl),
            ("in the group, with a campaign", Kind::Marketing, &inside, Some(&sent), ten, Group::GlobalControl),
            ("in the group and the holdout", Kind::Marketing, &inside, Some(&held), ten, Group::GlobalControl),
            ("in the group, transactional", Kind::Transactional, &inside, None, ten, Group::Send(None)),
            ("transactional, held out by its campaign", Kind::Transactional, &inside, Some(&held), ten, Group::Holdout),
            ("out of the group", Kind::Marketing, &outside, None, ten, Group::Send(None)),
            ("out of the group, holdout", Kind::Marketing, &outside, Some(&held), ten, Group::Holdout),
            (
                "out of the group, variant",
                Kind::Marketing,
                &outside,
                Some(&sent),
                ten,
                Group::Send(sent.variants.first()),
            ),
            ("no group (0%)", Kind::Marketing, &inside, None, GlobalControl::default(), Group::Send(None)),
            (
                "everyone (100%)",
                Kind::Marketing,
                &outside,
                None,
                GlobalControl::new(100.0).unwrap(),
                Group::GlobalControl,
            ),
        ];
        for (label, kind, recipient, campaign, global, expected) in cases {
            assert_eq!(group(kind, recipient, campaign, global), expected, "{label}");
        }
    }

    #[test]
    fn the_global_control_group_is_stable_proportional_and_independent_of_campaigns() {
        assert!(GlobalControl::new(-1.0).is_err() && GlobalControl::new(100.5).is_err());
        assert!(GlobalControl::new(f64::NAN).is_err());
        assert_eq!(GlobalControl::new(2.5).unwrap().percent(), 2.5);
        let (five, ten) = (GlobalControl::new(5.0).unwrap(), GlobalControl::new(10.0).unwrap());
        let half = campaign(50.0, &[]);
        let (mut in_five, mut in_ten, mut held_among_control) = (0, 0, 0);
        for i in 0..20_000 {
            let r = person(i);
            assert_eq!(five.contains(&r), five.contains(&r));
            if five.contains(&r) {
                in_five += 1;
                assert!(ten.contains(&r), "raising the percentage keeps everyone who was in");
                held_among_control += usize::from(half.assign(&r) == Assignment::Holdout);
            }
            in_ten += usize::from(ten.contains(&r));
        }
        assert!((850..1_150).contains(&in_five), "about 5%: {in_five}");
        assert!((1_800..2_200).contains(&in_ten), "about 10%: {in_ten}");
        // A campaign's holdout is drawn independently: half of the control group is in it.
        let share = held_among_control as f64 / f64::from(in_five);
        assert!((0.44..0.56).contains(&share), "independent of the campaign: {share}");
    }

    #[test]
    fn conversions_name_an_event_and_a_window() {
        let purchase = EventName::new("purchase").unwrap();
        let mut c = campaign(0.0, &[]);
        assert!(!c.converts_on(&purchase));
        assert_eq!(c.conversion_window(), TimeDelta::days(7), "a week by default");
        c.conversion_event = Some(purchase.clone());
        assert!(c.converts_on(&purchase) && !c.converts_on(&EventName::new("signup").unwrap()));
        for (hours, ok) in
            [(0, false), (1, true), (MAX_CONVERSION_WINDOW_HOURS, true), (MAX_CONVERSION_WINDOW_HOURS + 1, false)]
        {
            c.conversion_window_hours = hours;
            assert_eq!(c.validate().is_ok(), ok, "{hours} h");
        }
        // Written only when set: a document without them is what older functions read.
        let plain = serde_json::to_value(campaign(5.0, &[])).unwrap();
        assert!(plain.get("conversion_event").is_none() && plain.get("conversion_window_hours").is_none(), "{plain}");
        let doc: CampaignDoc =
            serde_json::from_str(r#"{"name": "c", "conversion_event": "purchase", "conversion_window_hours": 48}"#)
                .unwrap();
        assert_eq!((doc.conversion_event, doc.conversion_window_hours), (Some(purchase), 48));
    }

    #[test]
    fn a_campaign_message_is_found_from_campaign_and_recipient() {
        let c = CampaignId::new("spring-sale").unwrap();
        let key = message_key(&c, &person(7)).unwrap();
        assert_eq!(key.as_str(), "spring-sale#user-7");
        assert_eq!(message_id(&c, &person(7)), Some(MessageId::for_key(&key)));
        let longest = (CampaignId::new("c".repeat(64)).unwrap(), RecipientId::new("r".repeat(128)).unwrap());
        assert!(message_key(&longest.0, &longest.1).is_some(), "the longest names still make a key");
    }

    #[test]
    fn assignment_is_stable_and_proportional() {
        let c = campaign(10.0, &[1, 3]);
        let mut held = 0;
        let mut v1 = 0;
        for i in 0..20_000 {
            let r = RecipientId::new(format!("user-{i}")).unwrap();
            let a = c.assign(&r);
            assert_eq!(a, c.assign(&r), "the same person always lands in the same group");
            match a {
                Assignment::Holdout => held += 1,
                Assignment::Send(Some(v)) if v.name == "v1" => v1 += 1,
                Assignment::Send(_) => {}
            }
        }
        assert!((1_700..2_300).contains(&held), "about 10% held out: {held}");
        let sending = 20_000 - held;
        let share = f64::from(v1) / f64::from(sending);
        assert!((0.72..0.78).contains(&share), "about 3/4 get v1: {share}");
    }

    #[test]
    fn edges() {
        let r = RecipientId::new("user-1").unwrap();
        assert_eq!(campaign(0.0, &[]).assign(&r), Assignment::Send(None));
        assert_eq!(campaign(100.0, &[1]).assign(&r), Assignment::Holdout);
        assert!(campaign(101.0, &[]).validate().is_err());
        assert!(campaign(5.0, &[1, 0]).validate().is_err());
        // Another campaign reshuffles: holdouts are not the same people everywhere.
        let other = CampaignDoc { name: CampaignId::new("cyber-monday").unwrap(), ..campaign(50.0, &[]) };
        let same = (0..200)
            .map(|i| RecipientId::new(format!("u{i}")).unwrap())
            .filter(|r| {
                (campaign(50.0, &[]).assign(r) == Assignment::Holdout) == (other.assign(r) == Assignment::Holdout)
            })
            .count();
        assert!((60..140).contains(&same), "independent assignments agree about half the time: {same}");
    }
}
