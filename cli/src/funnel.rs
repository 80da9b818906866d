//! A campaign's funnel from the ledger (`herald funnel <campaign>`): how many of its
//! messages were accepted, suppressed (by reason), sent (by channel), delivered,
//! opened, clicked, bounced, complained about, failed or are still waiting; per group
//! (each variant, the campaign's holdout, the global control group), with the
//! conversions `track` recorded and the lift of each sending group over the groups
//! held out.
//!
//! A message counts at every stage it reached: its history is read as well as its
//! final status, so a clicked message counts as delivered and opened too, and a
//! message that failed on push and was then sent by email counts as sent once.
//!
//! Groups are intent to treat: each message's group is computed again from the
//! campaign's definition ([`herald::domain::campaign::group`], what eligibility
//! sends by), not read from what happened to it. A person of variant a who had not
//! opted in is in variant a's group, refused `no_consent`, as the same person
//! would have been in the holdout: the groups stay comparable.

use herald::contract::Kind;
use herald::domain::campaign::{CampaignDoc, GlobalControl, Group, group, message_key};
use herald::domain::ledger::Status;
use herald::domain::{CampaignId, RecipientId};
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
        writeln!(f, "campaign {}: {} message(s) in the ledger", self.campaign, self.accepted)?;
        f.write_str(&self.rows())
    }
}

impl Funnel {
    /// The stages, one line each, indented.
    fn rows(&self) -> String {
        let sent = self.sent_total();
        let mut out = String::new();
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
            let _ = writeln!(out, "{}", format!("  {label:<11} {n:>7}  {note}").trim_end());
        }
        out.trim_end().to_owned()
    }
}

// ---------------------------------------------------------------- groups, conversions, lift

/// Below this many messages a group's rate means little: the report says so.
pub const MIN_GROUP: usize = 100;

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// `k` conversions among `n` messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rate {
    pub k: usize,
    pub n: usize,
}

impl Rate {
    pub fn value(self) -> Option<f64> {
        (self.n > 0).then(|| self.k as f64 / self.n as f64)
    }

    /// The Wilson score interval at 95% (sound at small counts and at 0% or 100%, where
    /// the plain normal interval collapses to a point).
    pub fn interval(self) -> Option<(f64, f64)> {
        let p = self.value()?;
        let n = self.n as f64;
        let z2 = Z95 * Z95;
        let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
        let half = Z95 / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
        Some(((centre - half).max(0.0), (centre + half).min(1.0)))
    }
}

/// How much more often a group converted than a group held out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lift {
    /// The difference of the rates (0.04: four points more).
    pub difference: f64,
    /// Its 95% interval (Newcombe's hybrid score interval, from the two Wilson intervals).
    pub low: f64,
    pub high: f64,
    /// The difference over the held-out rate (0.5: half as many again); none when that rate is 0.
    pub relative: Option<f64>,
}

impl Lift {
    /// `treated` against `control`; none when either has no messages.
    pub fn of(treated: Rate, control: Rate) -> Option<Self> {
        let (p1, p0) = (treated.value()?, control.value()?);
        let ((l1, u1), (l0, u0)) = (treated.interval()?, control.interval()?);
        let difference = p1 - p0;
        Some(Self {
            difference,
            low: difference - ((p1 - l1).powi(2) + (u0 - p0).powi(2)).sqrt(),
            high: difference + ((u1 - p1).powi(2) + (p0 - l0).powi(2)).sqrt(),
            relative: (p0 > 0.0).then(|| difference / p0),
        })
    }

    /// Whether the interval leaves out 0: a difference the data can tell from none.
    pub fn measurable(&self) -> bool {
        self.low > 0.0 || self.high < 0.0
    }
}

/// What one group converted.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Conversions {
    /// Messages that can convert (keyed `<campaign>#<recipient>`) and those that did.
    pub rate: Rate,
    /// The sum of the conversions' values.
    pub value: f64,
}

/// One group of a campaign's messages.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupResult {
    pub label: String,
    /// Sends (a variant) or holds out (the holdout, the global control group).
    pub held_out: Option<HeldOut>,
    pub funnel: Funnel,
    pub conversions: Conversions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldOut {
    Holdout,
    GlobalControl,
}

/// A campaign's results: its funnel per group, conversions and lift.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub campaign: String,
    /// The campaign's definition, when the templates table has it (no groups without it).
    pub doc: Option<CampaignDoc>,
    pub global_control: GlobalControl,
    /// Variants in the definition's order, then the holdout, then the global control group.
    pub groups: Vec<GroupResult>,
    pub messages: usize,
    /// Messages a producer sent with keys of its own (not `<campaign>#<recipient>`):
    /// counted in the stages, never attributed a conversion.
    pub unattributed: usize,
    /// Messages recorded as held out as `global_control`: when the percentage given is 0,
    /// the report says to pass the stack's.
    pub recorded_global_control: usize,
}

impl Report {
    /// Groups `entries` (a campaign's ledger items) by the group each message's recipient
    /// is assigned: without the campaign's definition, all in one.
    pub fn build(campaign: &str, doc: Option<CampaignDoc>, global: GlobalControl, entries: &[LedgerEntry]) -> Self {
        let campaign_id = CampaignId::new(campaign).ok();
        // (order, label, held out) of each group seen.
        let mut groups: BTreeMap<usize, GroupResult> = BTreeMap::new();
        let variants = doc.as_ref().map_or(0, |d| d.variants.len());
        let (mut unattributed, mut recorded_global_control) = (0, 0);
        for e in entries {
            recorded_global_control += usize::from(e.reason.as_deref() == Some("global_control"));
            let recipient = RecipientId::new(e.recipient.as_str()).ok();
            let assigned = match (&doc, &recipient) {
                (Some(d), Some(r)) => Some(group(e.kind.unwrap_or(Kind::Marketing), r, Some(d), global)),
                _ => None,
            };
            let (order, label, held_out) = match &assigned {
                Some(Group::Send(Some(v))) => {
                    let at = doc.as_ref().and_then(|d| d.variants.iter().position(|x| x.name == v.name));
                    (at.unwrap_or(0), format!("variant {}", v.name), None)
                }
                Some(Group::Send(None)) => (variants, "sent".to_owned(), None),
                Some(Group::Holdout) => (variants + 1, "holdout".to_owned(), Some(HeldOut::Holdout)),
                Some(Group::GlobalControl) => (variants + 2, "global control".to_owned(), Some(HeldOut::GlobalControl)),
                None if doc.is_some() => (variants + 3, "unassigned (recipient id unreadable)".to_owned(), None),
                None => (variants, "all messages".to_owned(), None),
            };
            let result = groups.entry(order).or_insert_with(|| GroupResult {
                label,
                held_out,
                funnel: Funnel::new(campaign),
                conversions: Conversions::default(),
            });
            result.funnel.add(e);
            let keyed = match (&campaign_id, &recipient) {
                (Some(c), Some(r)) => message_key(c, r).is_some_and(|k| k.as_str() == e.idempotency_key),
                _ => false,
            };
            if !keyed {
                unattributed += 1;
                continue;
            }
            let c = &mut result.conversions;
            c.rate.n += 1;
            if let Some(conversion) = &e.conversion {
                c.rate.k += 1;
                c.value += conversion.value.unwrap_or(0.0);
            }
        }
        Self {
            campaign: campaign.to_owned(),
            doc,
            global_control: global,
            groups: groups.into_values().collect(),
            messages: entries.len(),
            unattributed,
            recorded_global_control,
        }
    }

    /// The group held out in this way, if it has messages.
    pub fn held_out(&self, which: HeldOut) -> Option<&GroupResult> {
        self.groups.iter().find(|g| g.held_out == Some(which))
    }
}

fn percent(p: f64) -> String {
    format!("{:.1}%", 100.0 * p)
}

fn points(p: f64) -> String {
    format!("{:+.1}", 100.0 * p)
}

/// `n < 100: too few to mean anything`, or nothing.
fn too_few(n: usize) -> String {
    if n < MIN_GROUP { format!("  n < {MIN_GROUP}: too few to mean anything") } else { String::new() }
}

/// One line on the lift of `treated` over the group held out `against`.
fn lift_line(treated: &GroupResult, against: &GroupResult) -> String {
    let (t, c) = (treated.conversions.rate, against.conversions.rate);
    let Some(lift) = Lift::of(t, c) else {
        return format!("vs {}: no messages to compare", against.label);
    };
    let relative = lift.relative.map(|r| format!(", {:+.0}% relative", 100.0 * r)).unwrap_or_default();
    let verdict = if t.n < MIN_GROUP || c.n < MIN_GROUP {
        format!("; too few messages (n < {MIN_GROUP}) to tell")
    } else if lift.measurable() {
        String::new()
    } else {
        "; the interval includes 0: no difference measurable".to_owned()
    };
    format!(
        "vs {}: {} points (95%: {} to {}){relative}{verdict}",
        against.label,
        points(lift.difference),
        points(lift.low),
        points(lift.high)
    )
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "campaign {}: {} message(s) in the ledger", self.campaign, self.messages)?;
        match &self.doc {
            None => writeln!(
                f,
                "no definition of this campaign in the templates table (or no --templates-table): no groups"
            )?,
            Some(doc) => {
                let variants: Vec<String> = doc.variants.iter().map(|v| format!("{} ({})", v.name, v.weight)).collect();
                writeln!(
                    f,
                    "groups recomputed from the campaign's assignment for every message, sent or not (intent to treat): \
                     holdout {}%{}; global control {}% (marketing only)",
                    doc.holdout_percent,
                    if variants.is_empty() { String::new() } else { format!(", variants {}", variants.join(", ")) },
                    self.global_control.percent()
                )?;
            }
        }
        if self.recorded_global_control > 0 && self.global_control.percent() == 0.0 {
            writeln!(
                f,
                "note: {} message(s) were held out as global_control, but the percentage given is 0: \
                 pass the stack's GlobalControlPercent (--global-control-percent) to group them",
                self.recorded_global_control
            )?;
        }
        writeln!(f, "\n{}", stage_table(&self.groups))?;
        let event = self.doc.as_ref().and_then(|d| d.conversion_event.as_ref().map(|e| (e, d.conversion_window_hours)));
        let any = self.groups.iter().any(|g| g.conversions.rate.k > 0);
        match event {
            None if !any => {
                return f.write_str("\nno conversion_event declared for this campaign: no conversions or lift");
            }
            None => writeln!(f, "\nconversions (the campaign no longer names an event):")?,
            Some((event, hours)) => writeln!(
                f,
                "\nconversions: {event} within {hours} h after the message was accepted, \
                 on messages keyed <campaign>#<recipient>"
            )?,
        }
        if self.unattributed > 0 {
            writeln!(
                f,
                "  ({} message(s) sent with other keys are counted above but never attributed a conversion)",
                self.unattributed
            )?;
        }
        let holdout = self.held_out(HeldOut::Holdout);
        let control = self.held_out(HeldOut::GlobalControl);
        let width = self.groups.iter().map(|g| g.label.len()).max().unwrap_or(0);
        for g in &self.groups {
            let r = g.conversions.rate;
            let rate = match (r.value(), r.interval()) {
                (Some(p), Some((low, high))) => {
                    format!("{:>6} (95%: {} to {})", percent(p), percent(low), percent(high))
                }
                _ => "     -".to_owned(),
            };
            writeln!(
                f,
                "  {:<width$}  {:>6} of {:<6}  {rate}  value {:.2}{}",
                g.label,
                r.k,
                r.n,
                g.conversions.value,
                too_few(r.n)
            )?;
            if g.held_out.is_none() {
                for against in [holdout, control].into_iter().flatten() {
                    writeln!(f, "  {:<width$}    {}", "", lift_line(g, against))?;
                }
            }
        }
        Ok(())
    }
}

/// The stages side by side, a column per group: counts, with the share of the stage
/// before where it tells something (delivered of sent, opened of delivered...), and
/// suppressions, sends and failures broken down beneath.
fn stage_table(groups: &[GroupResult]) -> String {
    fn cell(n: usize, of: usize) -> String {
        match of {
            0 => n.to_string(),
            _ => format!("{n} {:>5.1}%", 100.0 * n as f64 / of as f64),
        }
    }
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let column = |f: &dyn Fn(&Funnel) -> String| groups.iter().map(|g| f(&g.funnel)).collect::<Vec<_>>();
    let breakdown = |rows: &mut Vec<(String, Vec<String>)>, pick: &dyn Fn(&Funnel) -> &BTreeMap<String, usize>| {
        let keys: std::collections::BTreeSet<&String> = groups.iter().flat_map(|g| pick(&g.funnel).keys()).collect();
        for key in keys {
            rows.push((format!("  {key}"), column(&|f| pick(f).get(key).copied().unwrap_or(0).to_string())));
        }
    };
    rows.push(("accepted".into(), column(&|f| f.accepted.to_string())));
    rows.push(("suppressed".into(), column(&|f| f.suppressed.values().sum::<usize>().to_string())));
    breakdown(&mut rows, &|f| &f.suppressed);
    rows.push(("sent".into(), column(&|f| f.sent_total().to_string())));
    breakdown(&mut rows, &|f| &f.sent);
    rows.push(("delivered".into(), column(&|f| cell(f.delivered, f.sent_total()))));
    rows.push(("opened".into(), column(&|f| cell(f.opened, f.delivered))));
    rows.push(("clicked".into(), column(&|f| cell(f.clicked, f.delivered))));
    rows.push(("bounced".into(), column(&|f| cell(f.bounced, f.sent_total()))));
    rows.push(("complained".into(), column(&|f| cell(f.complained, f.delivered))));
    rows.push(("failed".into(), column(&|f| f.failed.values().sum::<usize>().to_string())));
    breakdown(&mut rows, &|f| &f.failed);
    rows.push(("deferred".into(), column(&|f| f.deferred.to_string())));
    rows.push(("expired".into(), column(&|f| f.expired.to_string())));
    let first = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    let widths: Vec<usize> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| rows.iter().filter_map(|(_, cells)| cells.get(i).map(String::len)).chain([g.label.len()]).max())
        .map(|w| w.unwrap_or(0))
        .collect();
    let mut out = format!("  {:first$}", "");
    for (g, w) in groups.iter().zip(&widths) {
        let _ = write!(out, "  {:>w$}", g.label);
    }
    for (label, cells) in rows {
        let _ = write!(out, "\n  {label:first$}");
        for (c, w) in cells.iter().zip(&widths) {
            let _ = write!(out, "  {c:>w$}");
        }
    }
    out
}

/// Reads a campaign's messages (a Scan of the ledger, see `DynamoLedger::campaign_entries`)
/// and its definition (from the templates table, when given) and builds its report.
pub async fn report(
    sdk: &aws_config::SdkConfig,
    ledger_table: &str,
    templates_table: Option<&str>,
    campaign: &str,
    global: GlobalControl,
) -> anyhow::Result<Report> {
    use herald::ports::CampaignStore;
    let client = aws_sdk_dynamodb::Client::new(sdk);
    let doc = match (templates_table, CampaignId::new(campaign)) {
        (Some(table), Ok(id)) => {
            let store = herald::aws::dynamodb::DynamoTemplates::new(client.clone(), table, std::time::Duration::ZERO);
            store.campaign(&id).await?.map(|d| (*d).clone())
        }
        _ => None,
    };
    let ledger = herald::aws::dynamodb::DynamoLedger::new(client, ledger_table);
    let entries = ledger.campaign_entries(campaign).await?;
    Ok(Report::build(campaign, doc, global, &entries))
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

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 5e-5
    }

    #[test]
    fn rates_have_wilson_intervals() {
        // (k, n, rate, low, high): the Wilson score interval's published values
        // (Newcombe 1998, Statistics in Medicine 17:857, table I) and edges.
        type Case = (usize, usize, Option<f64>, Option<(f64, f64)>);
        let cases: [Case; 6] = [
            (81, 263, Some(0.3080), Some((0.2553, 0.3662))),
            (15, 148, Some(0.1014), Some((0.0624, 0.1605))),
            (0, 20, Some(0.0), Some((0.0, 0.1611))),
            (1, 29, Some(0.0345), Some((0.0061, 0.1718))),
            (10, 10, Some(1.0), Some((0.7225, 1.0))),
            (0, 0, None, None),
        ];
        for (k, n, rate, interval) in cases {
            let r = Rate { k, n };
            assert_eq!(r.value().is_some(), rate.is_some(), "{k}/{n}");
            if let (Some(got), Some(want)) = (r.value(), rate) {
                assert!((got - want).abs() < 5e-5, "{k}/{n}: {got}");
            }
            match (r.interval(), interval) {
                (Some((low, high)), Some((l, h))) => {
                    assert!(close(low, l) && close(high, h), "{k}/{n}: {low} to {high}, not {l} to {h}")
                }
                (got, want) => assert_eq!(got, want, "{k}/{n}"),
            }
        }
    }

    #[test]
    fn lift_is_the_difference_of_rates_with_newcombes_interval() {
        // (treated, control, difference, low, high, relative, measurable)
        type Case = (Rate, Rate, Option<(f64, f64, f64, Option<f64>, bool)>);
        let cases: [Case; 5] = [
            // Newcombe 1998 (Statistics in Medicine 17:873, table II, method 10): 56/70 - 48/80.
            (Rate { k: 56, n: 70 }, Rate { k: 48, n: 80 }, Some((0.2, 0.0524, 0.3339, Some(1.0 / 3.0), true))),
            // 12% against 8% on a thousand each: measurable.
            (Rate { k: 120, n: 1000 }, Rate { k: 80, n: 1000 }, Some((0.04, 0.0137, 0.0664, Some(0.5), true))),
            // 11% against 10% on a hundred each: the interval includes 0.
            (Rate { k: 11, n: 100 }, Rate { k: 10, n: 100 }, Some((0.01, -0.0782, 0.0985, Some(0.1), false))),
            // Nobody held out converted: no relative lift.
            (Rate { k: 5, n: 100 }, Rate { k: 0, n: 100 }, Some((0.05, 0.0033, 0.1118, None, true))),
            (Rate { k: 5, n: 100 }, Rate { k: 0, n: 0 }, None),
        ];
        for (treated, control, want) in cases {
            let got = Lift::of(treated, control);
            let label = format!("{treated:?} vs {control:?}");
            match (got, want) {
                (Some(l), Some((d, low, high, relative, measurable))) => {
                    assert!(close(l.difference, d) && close(l.low, low) && close(l.high, high), "{label}: {l:?}");
                    assert_eq!(l.relative.is_some(), relative.is_some(), "{label}");
                    if let (Some(a), Some(b)) = (l.relative, relative) {
                        assert!(close(a, b), "{label}: {a}");
                    }
                    assert_eq!(l.measurable(), measurable, "{label}");
                }
                (None, None) => {}
                (got, _) => panic!("{label}: {got:?}"),
            }
        }
    }

    fn entry(key: &str, recipient: &str, status: Status, reason: Option<&str>, conversion: Option<f64>) -> LedgerEntry {
        LedgerEntry {
            id: herald::domain::MessageId::for_key(&herald::domain::IdempotencyKey::new(key).unwrap()),
            idempotency_key: key.to_owned(),
            recipient: recipient.to_owned(),
            template: "weekly_digest".into(),
            kind: Some(Kind::Marketing),
            campaign: Some("sale".into()),
            status,
            reason: reason.map(str::to_owned),
            channel: (status == Status::Sent).then(|| "email".to_owned()),
            provider_id: None,
            variant: None,
            sms_segments: None,
            duplicates: 0,
            history: Vec::new(),
            conversion: conversion.map(|v| herald::ports::RecordedConversion {
                event: "purchase".into(),
                at: "2026-11-26T10:00:00.000Z".into(),
                value: (v > 0.0).then_some(v),
            }),
            test: false,
        }
    }

    #[test]
    fn messages_are_grouped_by_assignment_and_conversions_counted_on_keyed_messages() {
        let doc: CampaignDoc = serde_json::from_value(serde_json::json!({
            "name": "sale", "holdout_percent": 30, "conversion_event": "purchase",
            "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]
        }))
        .unwrap();
        let global = GlobalControl::new(20.0).unwrap();
        // Each person's group as eligibility assigns it; whatever the ledger recorded for them.
        let mut expected: BTreeMap<String, (usize, usize, f64)> = BTreeMap::new();
        let mut entries = Vec::new();
        for i in 0..400 {
            let who = format!("u{i}");
            let label = group(Kind::Marketing, &RecipientId::new(who.as_str()).unwrap(), Some(&doc), global).label();
            // Every third person converts (value 2 when even), every seventh was refused
            // consent: the refusal does not move them out of their group.
            let converts = i % 3 == 0;
            let value = if i % 2 == 0 { 2.0 } else { 0.0 };
            let (status, reason) =
                if i % 7 == 0 { (Status::Suppressed, Some("no_consent")) } else { (Status::Sent, None) };
            entries.push(entry(&format!("sale#{who}"), &who, status, reason, converts.then_some(value)));
            let e = expected.entry(label).or_default();
            e.0 += 1;
            e.1 += usize::from(converts);
            e.2 += if converts { value } else { 0.0 };
        }
        // A message a producer keyed itself: counted in its group's stages, never in conversions.
        entries.push(entry("my-own-key", "u1", Status::Sent, None, None));
        let report = Report::build("sale", Some(doc), global, &entries);
        let labels: Vec<&str> = report.groups.iter().map(|g| g.label.as_str()).collect();
        assert_eq!(labels, ["variant a", "variant b", "holdout", "global control"]);
        for g in &report.groups {
            let (n, k, value) = expected[&g.label];
            assert_eq!((g.conversions.rate.n, g.conversions.rate.k), (n, k), "{}", g.label);
            assert!(close(g.conversions.value, value), "{}: {}", g.label, g.conversions.value);
        }
        assert_eq!(report.unattributed, 1);
        assert_eq!(report.groups.iter().map(|g| g.funnel.accepted).sum::<usize>(), 401);
        assert_eq!(report.held_out(HeldOut::GlobalControl).map(|g| g.label.as_str()), Some("global control"));

        let text = report.to_string();
        assert!(text.contains("conversions: purchase within 168 h after the message was accepted"), "{text}");
        assert!(text.contains("(1 message(s) sent with other keys are counted above"), "{text}");
        assert!(text.contains("vs holdout: ") && text.contains("vs global control: "), "{text}");
        assert!(text.contains("n < 100: too few to mean anything"), "groups of this size are flagged: {text}");
        assert!(!text.contains("vs holdout: no messages"), "{text}");

        // Without the campaign's definition: one group, no lift.
        let plain = Report::build("sale", None, global, &entries);
        assert_eq!(plain.groups.len(), 1);
        assert!(plain.to_string().contains("no definition of this campaign"), "{plain}");
    }
}
