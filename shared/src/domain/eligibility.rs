//! Whether, when and where a person may be reached: a pure function of the
//! request, the recipient, the suppression list and the time.
//!
//! Frequency caps are not here: taking a slot is an atomic effect done by the
//! store (`CapCounter::try_take`) on the channels this decision allows.

use crate::contract::{Kind, NotifyRequest};
use crate::domain::Channel;
use crate::domain::ledger::{Reason, SuppressionCause};
use crate::domain::recipient::{ConsentVerdict, QuietHours, Recipient};
use chrono::{DateTime, Days, LocalResult, NaiveDateTime, TimeDelta, TimeZone, Utc};

/// What eligibility knows about one request.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub request: &'a NotifyRequest,
    pub recipient: &'a Recipient,
    /// The template's default channel order, used when the request names none.
    pub template_channels: &'a [Channel],
    /// Suppressions found for this recipient's contact points.
    pub suppressions: &'a [(Channel, SuppressionCause)],
    /// Channels already tried (a fallback).
    pub tried: &'a [Channel],
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Channels that may be used, in order of preference (caps still to take).
    Send { candidates: Vec<Channel> },
    /// Not yet: evaluate again at `until`.
    Defer { until: DateTime<Utc>, reason: Reason },
    /// Never: `reason` is the most preferred channel's refusal; `detail` lists each channel's.
    Refuse { reason: Reason, detail: String },
}

/// The refusal for one channel, if any.
pub fn channel_refusal(facts: &Facts<'_>, channel: Channel) -> Option<Reason> {
    let request = facts.request;
    if let Some((_, cause)) = facts.suppressions.iter().find(|(c, _)| *c == channel) {
        return Some(cause.reason());
    }
    if !facts.recipient.has_contact(channel) {
        return Some(Reason::NoContact);
    }
    match facts.recipient.consent_verdict(channel, request.topic.as_ref(), consent_kind(request)) {
        ConsentVerdict::Allowed => None,
        ConsentVerdict::NotGranted => Some(Reason::NoConsent),
        ConsentVerdict::OptedOut => Some(Reason::OptedOut),
    }
}

/// The consent rule a request is held to. A test send (`herald send-test`) goes to a
/// synthetic recipient that the operator addressed by hand: it needs no opt-in, only the
/// channel not opted out (the transactional rule), whatever its kind.
pub fn consent_kind(request: &NotifyRequest) -> Kind {
    if request.test { Kind::Transactional } else { request.kind }
}

/// Whether the request takes frequency-cap slots and may be held out (a campaign's
/// holdout, the global control group). A test send does neither: it is never refused by
/// a cap, never counts toward one, and an operator's test is never silently held out.
pub fn capped_and_held_out(request: &NotifyRequest) -> bool {
    !request.test
}

pub fn evaluate(facts: &Facts<'_>) -> Decision {
    let request = facts.request;
    if request.expires_at.is_some_and(|e| e <= facts.now) {
        return Decision::Refuse { reason: Reason::Expired, detail: "expires_at has passed".into() };
    }
    if let Some(send_at) = request.send_at.filter(|s| *s > facts.now) {
        return Decision::Defer { until: send_at, reason: Reason::Scheduled };
    }

    let order = request.channels.as_deref().unwrap_or(facts.template_channels);
    let mut candidates = Vec::with_capacity(order.len());
    let mut refusals = Vec::new();
    for &channel in order.iter().filter(|c| !facts.tried.contains(c)) {
        match channel_refusal(facts, channel) {
            None => candidates.push(channel),
            Some(reason) => refusals.push((channel, reason)),
        }
    }
    if candidates.is_empty() {
        // The reason is that of the first channel the person could have been reached
        // on: a channel without a contact point explains nothing.
        let Some(&(_, reason)) = refusals.iter().find(|(_, r)| *r != Reason::NoContact).or(refusals.first()) else {
            return Decision::Refuse {
                reason: Reason::NoEligibleChannel,
                detail: "every channel in the order was already tried".into(),
            };
        };
        let detail = refusals.iter().map(|(c, r)| format!("{c}: {r}")).collect::<Vec<_>>().join(", ");
        return Decision::Refuse { reason, detail };
    }
    // A test send is not deferred: the operator is waiting for it.
    if request.kind == Kind::Marketing
        && !request.test
        && let Some(until) = quiet_until(facts.recipient, facts.now)
    {
        if request.expires_at.is_some_and(|e| e <= until) {
            return Decision::Refuse {
                reason: Reason::Expired,
                detail: "expires before the recipient's quiet hours end".into(),
            };
        }
        return Decision::Defer { until, reason: Reason::QuietHoursDeferred };
    }
    Decision::Send { candidates }
}

/// How long to wait before looking for a missing recipient again, after `waits`
/// looks that found nothing, within `total_secs` in all: 5 s, then 15, 45, ... (the
/// last cut to what is left; none longer than an SQS delay's 15 minutes), and `None`
/// once the time is used up. Producers often publish a recipient's `upsert_recipient`
/// and its first notification together, and SQS does not keep their order.
pub fn recipient_wait(total_secs: u32, waits: u8) -> Option<u32> {
    let step = |n: u8| 5u32.saturating_mul(3u32.saturating_pow(n.into())).min(900);
    let elapsed = (0..waits).map(step).fold(0, u32::saturating_add);
    let left = total_secs.saturating_sub(elapsed);
    (left > 0).then(|| step(waits).min(left))
}

/// The end of the recipient's quiet hours if `now` falls inside them.
pub fn quiet_until(recipient: &Recipient, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let (QuietHours { start, end }, tz) = (recipient.quiet_hours?, recipient.timezone?.0);
    if start == end {
        return None;
    }
    let local = now.with_timezone(&tz);
    let (date, time) = (local.date_naive(), local.time());
    let end_date = if start < end {
        (start <= time && time < end).then_some(date)?
    } else if time >= start {
        date.checked_add_days(Days::new(1))?
    } else if time < end {
        date
    } else {
        return None;
    };
    Some(resolve_local(&tz, end_date.and_time(end)))
}

/// A wall-clock time in `tz` as an instant: the earlier of an ambiguous time
/// (clocks going back), the first valid minute after a skipped one (going forward).
fn resolve_local<Tz: TimeZone>(tz: &Tz, naive: NaiveDateTime) -> DateTime<Utc> {
    let mut probe = naive;
    for _ in 0..=180 {
        match tz.from_local_datetime(&probe) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => return t.with_timezone(&Utc),
            LocalResult::None => probe += TimeDelta::minutes(1),
        }
    }
    naive.and_utc()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_recipient_is_looked_for_again_within_the_wait() {
        let waits = |total| (0..).map_while(|n| recipient_wait(total, n)).collect::<Vec<_>>();
        assert_eq!(waits(60), [5, 15, 40]);
        assert_eq!(waits(900), [5, 15, 45, 135, 405, 295]);
        assert_eq!(waits(3600), [5, 15, 45, 135, 405, 900, 900, 900, 295]);
        assert_eq!(waits(2), [2]);
        assert!(waits(0).is_empty(), "0 turns the wait off");
        assert_eq!(recipient_wait(60, u8::MAX), None);
    }
    use crate::contract::{ConsentSource, TimeZone as Zone};
    use crate::domain::recipient::{ConsentScope, ConsentState};
    use crate::domain::{EmailAddress, PhoneNumber};
    use chrono::NaiveTime;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn request(kind: &str, extra: &str) -> NotifyRequest {
        let body = format!(
            r#"{{"idempotency_key":"k","recipient":"user-42","template":"order_shipped","kind":"{kind}"{extra}}}"#
        );
        serde_json::from_str(&body).unwrap()
    }

    fn recipient() -> Recipient {
        Recipient {
            email: Some(EmailAddress::new("ana@example.org").unwrap()),
            phone: Some(PhoneNumber::new("+15555550100").unwrap()),
            ..Recipient::default()
        }
    }

    fn grant(r: &mut Recipient, channel: Channel, granted: bool) {
        let state = ConsentState { granted, source: ConsentSource::new("test").unwrap(), at: DateTime::UNIX_EPOCH };
        r.consents.insert(ConsentScope { channel, topic: None }, state);
    }

    fn decide(req: &NotifyRequest, r: &Recipient, supp: &[(Channel, SuppressionCause)], now: &str) -> Decision {
        let order = [Channel::Push, Channel::Email, Channel::Sms];
        evaluate(&Facts {
            request: req,
            recipient: r,
            template_channels: &order,
            suppressions: supp,
            tried: &[],
            now: at(now),
        })
    }

    #[test]
    fn table_of_decisions() {
        use Channel::*;
        let now = "2026-11-25T12:00:00Z";
        let mut opted_in = recipient();
        grant(&mut opted_in, Email, true);
        let mut opted_out = recipient();
        grant(&mut opted_out, Email, false);
        grant(&mut opted_out, Sms, false);
        let send = |c: Vec<Channel>| Decision::Send { candidates: c };
        let refuse = |reason| move |d: &Decision| matches!(d, Decision::Refuse { reason: r, .. } if *r == reason);

        // Transactional, no consent recorded: every channel with a contact point, push has no device.
        assert_eq!(decide(&request("transactional", ""), &recipient(), &[], now), send(vec![Email, Sms]));
        // Marketing needs an opt-in: only email has one.
        assert_eq!(decide(&request("marketing", ""), &opted_in, &[], now), send(vec![Email]));
        // Marketing without any opt-in: refused for the first channel's reason.
        let d = decide(&request("marketing", r#","channels":["email","sms"]"#), &recipient(), &[], now);
        assert!(refuse(Reason::NoConsent)(&d), "{d:?}");
        // A channel without a contact point is not the reason: push (no device) comes first here.
        let d = decide(&request("marketing", ""), &opted_out, &[], now);
        assert!(refuse(Reason::OptedOut)(&d), "{d:?}");
        let nobody = Recipient::default();
        let d = decide(&request("transactional", ""), &nobody, &[], now);
        assert!(refuse(Reason::NoContact)(&d), "{d:?}");
        // Opted out of both channels: even transactional is refused.
        let d = decide(&request("transactional", r#","channels":["email","sms"]"#), &opted_out, &[], now);
        assert!(refuse(Reason::OptedOut)(&d), "{d:?}");
        // A hard bounce suppresses transactional email too; SMS still goes.
        let d = decide(
            &request("transactional", r#","channels":["email","sms"]"#),
            &recipient(),
            &[(Email, SuppressionCause::Bounce)],
            now,
        );
        assert_eq!(d, send(vec![Sms]));
        let d = decide(
            &request("transactional", r#","channels":["email"]"#),
            &recipient(),
            &[(Email, SuppressionCause::Complaint)],
            now,
        );
        assert!(refuse(Reason::SuppressedComplaint)(&d), "{d:?}");
        // Expired at any time is dropped; a future send_at defers.
        let d = decide(&request("transactional", r#","expires_at":"2026-11-25T12:00:00Z""#), &recipient(), &[], now);
        assert!(refuse(Reason::Expired)(&d), "{d:?}");
        let d = decide(&request("transactional", r#","send_at":"2026-11-26T09:00:00Z""#), &recipient(), &[], now);
        assert_eq!(d, Decision::Defer { until: at("2026-11-26T09:00:00Z"), reason: Reason::Scheduled });
        // The request's own order wins over the template's.
        assert_eq!(
            decide(&request("transactional", r#","channels":["sms","email"]"#), &recipient(), &[], now),
            send(vec![Sms, Email])
        );
    }

    #[test]
    fn a_test_send_needs_no_opt_in_nor_waits_out_quiet_hours_but_is_suppressed() {
        use Channel::*;
        let now = "2026-11-25T23:00:00Z";
        let test = |channels: &str| {
            let mut r = request("marketing", &format!(r#","channels":[{channels}]"#));
            r.recipient = crate::domain::RecipientId::new("herald-test:ab12").unwrap();
            r.test = true;
            r
        };
        // No opt-in recorded: marketing is refused, the same as a test goes.
        let marketing = request("marketing", r#","channels":["email","sms"]"#);
        assert!(matches!(decide(&marketing, &recipient(), &[], now), Decision::Refuse { .. }));
        assert_eq!(
            decide(&test(r#""email","sms""#), &recipient(), &[], now),
            Decision::Send { candidates: vec![Email, Sms] }
        );
        // An explicit opt-out still counts.
        let mut opted_out = recipient();
        grant(&mut opted_out, Email, false);
        assert_eq!(decide(&test(r#""email","sms""#), &opted_out, &[], now), Decision::Send { candidates: vec![Sms] });
        // Suppression is never skipped.
        let d = decide(&test(r#""email""#), &recipient(), &[(Email, SuppressionCause::Bounce)], now);
        assert!(matches!(d, Decision::Refuse { reason: Reason::SuppressedBounce, .. }), "{d:?}");
        // Quiet hours (23:00 in Paris) defer marketing, not a test.
        let paris = quiet("Europe/Paris", "22:00", "08:00");
        assert!(matches!(decide(&marketing, &paris, &[], now), Decision::Defer { .. }));
        assert!(matches!(decide(&test(r#""email""#), &paris, &[], now), Decision::Send { .. }));
        assert!(capped_and_held_out(&marketing) && !capped_and_held_out(&test(r#""sms""#)));
    }

    #[test]
    fn a_fallback_skips_tried_channels() {
        let req = request("transactional", "");
        let r = recipient();
        let order = [Channel::Email, Channel::Sms];
        let facts = Facts {
            request: &req,
            recipient: &r,
            template_channels: &order,
            suppressions: &[],
            tried: &[Channel::Email],
            now: at("2026-11-25T12:00:00Z"),
        };
        assert_eq!(evaluate(&facts), Decision::Send { candidates: vec![Channel::Sms] });
        let all_tried = [Channel::Email, Channel::Sms];
        let facts = Facts { tried: &all_tried, ..facts };
        assert!(matches!(evaluate(&facts), Decision::Refuse { reason: Reason::NoEligibleChannel, .. }));
    }

    fn quiet(tz: &str, start: &str, end: &str) -> Recipient {
        let mut r = recipient();
        grant(&mut r, Channel::Email, true);
        r.timezone = Some(Zone(tz.parse().unwrap()));
        r.quiet_hours = Some(QuietHours {
            start: NaiveTime::parse_from_str(start, "%H:%M").unwrap(),
            end: NaiveTime::parse_from_str(end, "%H:%M").unwrap(),
        });
        r
    }

    #[test]
    fn quiet_hours_in_the_recipients_zone() {
        let paris = quiet("Europe/Paris", "22:00", "08:00");
        let cases = [
            // 23:30 in Paris (UTC+1 in November): deferred to 08:00 Paris the next day.
            ("2026-11-25T22:30:00Z", Some("2026-11-26T07:00:00Z")),
            // 06:00 Paris: same day 08:00.
            ("2026-11-26T05:00:00Z", Some("2026-11-26T07:00:00Z")),
            // Exactly 08:00 Paris: the window is over.
            ("2026-11-26T07:00:00Z", None),
            // 21:59 Paris: not yet.
            ("2026-11-25T20:59:00Z", None),
            // Exactly 22:00 Paris: inside.
            ("2026-11-25T21:00:00Z", Some("2026-11-26T07:00:00Z")),
        ];
        for (now, until) in cases {
            assert_eq!(quiet_until(&paris, at(now)), until.map(at), "{now}");
        }
        // Marketing is deferred, transactional passes.
        let d = decide(&request("marketing", r#","channels":["email"]"#), &paris, &[], "2026-11-25T22:30:00Z");
        assert_eq!(d, Decision::Defer { until: at("2026-11-26T07:00:00Z"), reason: Reason::QuietHoursDeferred });
        let d = decide(&request("transactional", r#","channels":["email"]"#), &paris, &[], "2026-11-25T22:30:00Z");
        assert_eq!(d, Decision::Send { candidates: vec![Channel::Email] });
        // Expiring before the window ends: dropped as expired, not deferred.
        let d = decide(
            &request("marketing", r#","channels":["email"],"expires_at":"2026-11-26T06:00:00Z""#),
            &paris,
            &[],
            "2026-11-25T22:30:00Z",
        );
        assert!(matches!(d, Decision::Refuse { reason: Reason::Expired, .. }), "{d:?}");
    }

    #[test]
    fn quiet_hours_across_dst_changes() {
        // New York springs forward on 2026-03-08 at 02:00 (to 03:00): a window ending at 02:30 ends at 03:00 EDT.
        let ny = quiet("America/New_York", "01:00", "02:30");
        assert_eq!(quiet_until(&ny, at("2026-03-08T06:30:00Z")), Some(at("2026-03-08T07:00:00Z")));
        // Paris falls back on 2026-10-25: 02:30 happens twice; the window ends at the first one.
        let paris = quiet("Europe/Paris", "01:00", "02:30");
        assert_eq!(quiet_until(&paris, at("2026-10-24T23:30:00Z")), Some(at("2026-10-25T00:30:00Z")));
        // The day after the change, 22:00 to 08:00 uses winter time (UTC+1).
        let paris = quiet("Europe/Paris", "22:00", "08:00");
        assert_eq!(quiet_until(&paris, at("2026-10-25T21:30:00Z")), Some(at("2026-10-26T07:00:00Z")));
        // The night of the change: 23:00 CEST on the 24th to 08:00 CET on the 25th.
        assert_eq!(quiet_until(&paris, at("2026-10-24T21:30:00Z")), Some(at("2026-10-25T07:00:00Z")));
    }
}
