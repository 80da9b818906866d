//! `herald broadcast`: start a broadcast, pause, resume or cancel it (commands on the
//! ingest queue, as a producer would send them), and its status (the broadcast's record
//! and its messages in the ledger).

use chrono::{DateTime, Utc};
use herald::domain::broadcast::Broadcast;
use herald::domain::ledger::Status;
use herald::ports::LedgerEntry;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Where a broadcast's messages stand in the ledger.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcomes {
    /// Admitted, not yet judged (or waiting to be sent).
    pub pending: u64,
    pub sent: BTreeMap<String, u64>,
    pub suppressed: BTreeMap<String, u64>,
    pub deferred: BTreeMap<String, u64>,
    pub failed: BTreeMap<String, u64>,
    pub expired: u64,
    pub admitted: u64,
}

impl Outcomes {
    pub fn add(&mut self, e: &LedgerEntry) {
        let reason = || e.reason.clone().unwrap_or_else(|| "-".into());
        self.admitted += 1;
        match e.status {
            Status::Accepted => self.pending += 1,
            Status::Suppressed => *self.suppressed.entry(reason()).or_default() += 1,
            Status::Deferred => *self.deferred.entry(reason()).or_default() += 1,
            Status::Failed => *self.failed.entry(reason()).or_default() += 1,
            Status::Expired => self.expired += 1,
            // Sent and whatever followed it (delivered, opened, bounced, ...).
            _ => *self.sent.entry(e.channel.clone().unwrap_or_else(|| "-".into())).or_default() += 1,
        }
    }
}

fn breakdown(counts: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
    if parts.is_empty() { String::new() } else { format!("({})", parts.join(", ")) }
}

/// The status report `herald broadcast status` prints.
pub fn report(b: &Broadcast, outcomes: &Outcomes, now: DateTime<Utc>) -> String {
    let r = &b.request;
    let mut out = String::new();
    let state = if b.expired(now) && !matches!(b.state.as_str(), "done" | "cancelled") {
        "expired".to_owned()
    } else {
        b.state.as_str().to_owned()
    };
    let _ = writeln!(
        out,
        "broadcast {}: {state} (segment {} v{}, template {}, {}/s, started {})",
        r.campaign,
        r.segment,
        b.audience.segment.version,
        b.template,
        r.rate_per_second,
        b.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
    );
    if let Some(at) = r.send_at.filter(|at| *at > now) {
        let _ = writeln!(out, "  starts at   {}", at.format("%Y-%m-%d %H:%M:%S UTC"));
    }
    let read = b.segments.iter().filter(|s| s.done).count();
    let sum = |m: &BTreeMap<String, u64>| m.values().sum::<u64>();
    let c = &b.counts;
    let rows: Vec<(&str, u64, String)> = vec![
        ("scan", read as u64, format!("of {} scan segment(s) read to the end", b.segments.len())),
        ("scanned", c.scanned, "profiles read".into()),
        (
            "matched",
            c.matched,
            match breakdown(&c.missed) {
                none if none.is_empty() => "in the audience".to_owned(),
                missed => format!("in the audience; not: {missed}"),
            },
        ),
        ("queued", c.queued, "handed to the pipeline".into()),
        ("sent", sum(&outcomes.sent), breakdown(&outcomes.sent)),
        ("suppressed", sum(&outcomes.suppressed), breakdown(&outcomes.suppressed)),
        ("deferred", sum(&outcomes.deferred), breakdown(&outcomes.deferred)),
        ("failed", sum(&outcomes.failed), breakdown(&outcomes.failed)),
        ("expired", outcomes.expired, String::new()),
        ("remaining", c.queued.saturating_sub(outcomes.admitted) + outcomes.pending, remaining(b, outcomes)),
    ];
    for (label, n, note) in rows {
        let _ = writeln!(out, "  {label:<11} {n:>7}  {note}");
    }
    out.trim_end().to_owned()
}

/// Reads a broadcast's record and its messages (a Scan of the ledger, as `herald funnel`)
/// and writes its status report; `None` when the campaign has no broadcast.
pub async fn status(ledger: &herald::aws::dynamodb::DynamoLedger, campaign: &str) -> anyhow::Result<Option<String>> {
    use herald::ports::Broadcasts;
    let name = herald::domain::CampaignId::new(campaign)?;
    let Some(b) = ledger.broadcast(&name).await? else { return Ok(None) };
    let mut outcomes = Outcomes::default();
    for entry in ledger.campaign_entries(campaign).await? {
        outcomes.add(&entry);
    }
    Ok(Some(report(&b, &outcomes, Utc::now())))
}

fn remaining(b: &Broadcast, o: &Outcomes) -> String {
    let unread = b.segments.iter().filter(|s| !s.done).count();
    let mut parts = vec![format!(
        "{} queued not yet admitted, {} admitted not yet judged",
        b.counts.queued.saturating_sub(o.admitted),
        o.pending
    )];
    if unread > 0 {
        parts.push(format!("{unread} scan segment(s) still being read"));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald::ports::LedgerEntry;

    fn entry(status: Status, reason: Option<&str>, channel: Option<&str>) -> LedgerEntry {
        LedgerEntry {
            id: herald::domain::MessageId::for_key(&herald::domain::IdempotencyKey::new("k").unwrap()),
            idempotency_key: "k".into(),
            recipient: "r".into(),
            template: "t".into(),
            kind: None,
            campaign: Some("c".into()),
            status,
            reason: reason.map(str::to_owned),
            channel: channel.map(str::to_owned),
            provider_id: None,
            variant: None,
            sms_segments: None,
            duplicates: 0,
            history: vec![],
            conversion: None,
            test: false,
        }
    }

    #[test]
    fn outcomes_sort_each_message_once() {
        let mut o = Outcomes::default();
        for e in [
            entry(Status::Sent, None, Some("email")),
            entry(Status::Delivered, None, Some("email")),
            entry(Status::Clicked, None, Some("push")),
            entry(Status::Suppressed, Some("no_consent"), None),
            entry(Status::Suppressed, Some("suppressed_bounce"), None),
            entry(Status::Deferred, Some("quiet_hours_deferred"), None),
            entry(Status::Accepted, None, None),
        ] {
            o.add(&e);
        }
        assert_eq!(o.admitted, 7);
        assert_eq!(o.pending, 1);
        assert_eq!(o.sent, BTreeMap::from([("email".into(), 2), ("push".into(), 1)]));
        assert_eq!(o.suppressed.values().sum::<u64>(), 2);
        assert_eq!(o.deferred, BTreeMap::from([("quiet_hours_deferred".into(), 1)]));
    }
}
