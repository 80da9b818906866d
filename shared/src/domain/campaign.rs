//! Campaigns: holdout groups and weighted A/B variants, assigned by a stable hash
//! of campaign and recipient, so a person lands in the same group on every run,
//! in every function, for the campaign's whole life.

use crate::domain::{CampaignId, RecipientId, TemplateName};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignDoc {
    pub name: CampaignId,
    /// Share of recipients held out (not sent to) so lift can be measured: 0 to 100.
    #[serde(default)]
    pub holdout_percent: f64,
    #[serde(default)]
    pub variants: Vec<Variant>,
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
        Ok(())
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
        }
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
