//! A campaign's funnel from the ledger (`herald funnel <campaign>`): how many of its
//! messages were accepted, suppressed (by reason), sent (by channel), delivered,
//! opened, clicked, bounced, complained about, failed or are still waiting.
//!
//! A message counts at every stage it reached: its history is read as well as its
//! final status, so a clicked message counts as delivered and opened too, and a
//! message that failed on push and was then sent by email counts as sent once.

use herald::domain::ledger::Status;
use herald::ports::LedgerEntry;
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Funnel {
    pub campaign: String,
    pub accepted: usize,
    pub suppressed: BTreeMap<String, usize>,
    pub sent: BTreeMap<String, usize>,
    pub delivered: usize,
    pub opened: usize,
    pub clicked: usize,
    pub bounced: usize,
    pub complained: usize,
    pub failed: BTreeMap<String, usize>,
    pub deferred: usize,
    pub expired: usize,
}

impl Funnel {
    pub fn new(campaign: &str) -> Self {
        Self { campaign: campaign.to_owned(), ..Self::default() }
    }

    pub fn add(&mut self, e: &LedgerEntry) {
        let path: Vec<&str> = e.history.iter().map(|h| h.status.as_str()).collect();
        self.add_message(e.status, e.reason.as_deref(), e.channel.as_deref(), &path);
    }

    /// One message: its status, reason and channel now, and the statuses of its history.
    pub fn add_message(&mut self, status: Status, reason: Option<&str>, channel: Option<&str>, path: &[&str]) {
        let reached = |s: Status| status == s || path.contains(&s.as_str());
        let reason = || reason.unwrap_or("-").to_owned();
        self.accepted += 1;
        match status {
            Status::Suppressed => *self.suppressed.entry(reason()).or_default() += 1,
            Status::Failed => *self.failed.entry(reason()).or_default() += 1,
            Status::Deferred => self.deferred += 1,
            Status::Expired => self.expired += 1,
            Status::Bounced => self.bounced += 1,
            Status::Complained => self.complained += 1,
            _ => {}
        }
        let clicked = reached(Status::Clicked);
        let opened = clicked || reached(Status::Opened);
        let delivered = opened || reached(Status::Delivered) || status == Status::Complained;
        let sent = delivered || status == Status::Bounced || reached(Status::Sent);
        if sent {
            *self.sent.entry(channel.unwrap_or("-").to_owned()).or_default() += 1;
        }
        self.delivered += usize::from(delivered);
        self.opened += usize::from(opened);
        self.clicked += usize::from(clicked);
    }

    fn sent_total(&self) -> usize {
        self.sent.values().sum()
    }
}

fn breakdown(counts: &BTreeMap<String, usize>) -> String {
    if counts.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
    format!("({})", parts.join(", "))
}

fn share(part: usize, whole: usize, of: &str) -> String {
    if whole == 0 { String::new() } else { format!("{:.1}% of {of}", 100.0 * part as f64 / whole as f64) }
}

impl fmt::Display for Funnel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sent = self.sent_total();
        let mut out = String::new();
        writeln!(out, "campaign {}: {} message(s) in the ledger", self.campaign, self.accepted)?;
        let rows: [(&str, usize, String); 11] = [
            ("accepted", self.accepted, String::new()),
            ("suppressed", self.suppressed.values().sum(), breakdown(&self.suppressed)),
            ("sent", sent, breakdown(&self.sent)),
            ("delivered", self.delivered, share(self.delivered, sent, "sent")),
            ("opened", self.opened, share(self.opened, self.delivered, "delivered")),
            ("clicked", self.clicked, share(self.clicked, self.delivered, "delivered")),
            ("bounced", self.bounced, share(self.bounced, sent, "sent")),
            ("complained", self.complained, share(self.complained, self.delivered, "delivered")),
            ("failed", self.failed.values().sum(), breakdown(&self.failed)),
            ("deferred", self.deferred, "(waiting for quiet hours or a schedule)".into()),
            ("expired", self.expired, String::new()),
        ];
        for (label, n, note) in rows {
            writeln!(out, "  {label:<11} {n:>7}  {note}")?;
        }
        f.write_str(out.trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_message_counts_at_every_stage_it_reached() {
        let mut f = Funnel::new("c");
        type Message<'a> = (Status, Option<&'a str>, Option<&'a str>, &'a [&'a str]);
        let messages: [Message; 10] = [
            (Status::Suppressed, Some("no_consent"), None, &["accepted", "suppressed"]),
            (Status::Suppressed, Some("holdout"), None, &["accepted", "suppressed"]),
            (Status::Sent, None, Some("push"), &["accepted", "sent"]),
            // Fell back from push to email, then delivered: sent once, on email.
            (Status::Delivered, None, Some("email"), &["accepted", "sent", "failed", "sent", "delivered"]),
            // Clicked without an open event: opened and delivered too.
            (Status::Clicked, None, Some("email"), &["accepted", "sent", "clicked"]),
            // A transient bounce noted, then delivered.
            (Status::Delivered, None, Some("email"), &["accepted", "sent", "bounced", "delivered"]),
            (Status::Bounced, Some("suppressed_bounce"), Some("email"), &["accepted", "sent", "bounced"]),
            (
                Status::Complained,
                Some("suppressed_complaint"),
                Some("email"),
                &["accepted", "sent", "delivered", "complained"],
            ),
            (Status::Failed, Some("provider_rejected"), Some("sms"), &["accepted", "sent", "failed"]),
            (Status::Deferred, Some("quiet_hours_deferred"), None, &["accepted", "deferred"]),
        ];
        for (status, reason, channel, path) in messages {
            f.add_message(status, reason, channel, path);
        }
        assert_eq!(f.accepted, 10);
        assert_eq!(f.suppressed, BTreeMap::from([("holdout".into(), 1), ("no_consent".into(), 1)]));
        assert_eq!(f.sent, BTreeMap::from([("email".into(), 5), ("push".into(), 1), ("sms".into(), 1)]));
        assert_eq!((f.delivered, f.opened, f.clicked), (4, 1, 1));
        assert_eq!((f.bounced, f.complained, f.deferred), (1, 1, 1));
        assert_eq!(f.failed, BTreeMap::from([("provider_rejected".into(), 1)]));
        let text = f.to_string();
        assert!(text.contains("sent              7  (email 5, push 1, sms 1)"), "{text}");
        assert!(text.contains("delivered         4  57.1% of sent"), "{text}");
    }
}
