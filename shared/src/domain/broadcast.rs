//! Broadcasts: a campaign's fan-out to a segment, as the stack records it, and the pure
//! decisions its workers make about one page of the scan.
//!
//! The recipients table is read as `segments` parallel scan segments; each is a chain of
//! page jobs on the broadcast queue, one page per job, each job handing on the next. The
//! broadcast's record holds each chain's cursor (the page it is at and where the scan
//! resumes), and a page's counts and cursor are committed together, once, by the first
//! copy of its job that finishes: a page delivered twice counts once, and each person's
//! notification carries the key `<campaign>#<recipient>`, so it is admitted once.
//!
//! The rate holds across workers because positions are handed out by one atomic counter
//! (`released`): position `p` is due at `pace_origin + p / rate`, and a worker hands its
//! page's notifications to the pipeline with SQS delays that land each at its due time.
//! A worker takes positions only while the queue of due messages reaches less than
//! [`HORIZON_SECS`] ahead, so a pause stops the fan-out within that horizon, and ingest
//! holds what is already in flight.

use crate::contract::{BroadcastRequest, Mode, NotifyRequest, TimeZone};
use crate::domain::campaign::message_key;
use crate::domain::segment::Audience;
use crate::domain::{CampaignId, Channel, RecipientId, TemplateName};
use chrono::{DateTime, Days, NaiveTime, TimeDelta, TimeZone as _, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How far ahead of now a worker may schedule messages. Also bounds what a pause finds
/// already handed to the pipeline.
pub const HORIZON_SECS: i64 = 20;
/// SQS's longest delay, for a message and for a job waiting its turn.
pub const MAX_DELAY_SECS: i64 = 900;
/// Items a page reads at most (DynamoDB's `Limit`: items evaluated, before the filter).
pub const MAX_PAGE_ITEMS: u32 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BroadcastState {
    /// Fanning out (or waiting for `send_at`).
    Running,
    /// Page jobs stop where they are; resuming starts them again from their cursors.
    Paused,
    Cancelled,
    /// Every scan segment has been read to its end.
    Done,
}

impl BroadcastState {
    pub fn as_str(self) -> &'static str {
        match self {
            BroadcastState::Running => "running",
            BroadcastState::Paused => "paused",
            BroadcastState::Cancelled => "cancelled",
            BroadcastState::Done => "done",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Running, Self::Paused, Self::Cancelled, Self::Done].into_iter().find(|s| s.as_str() == raw)
    }
}

/// Where one scan segment's chain of pages stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentProgress {
    /// The next page to read (pages already committed: `0..page`).
    pub page: u32,
    /// Where that page starts (the scan's opaque `ExclusiveStartKey`); `None`: the beginning.
    pub start: Option<String>,
    pub done: bool,
}

/// What the fan-out has done so far. A page's counts are added once, when it commits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Profiles read.
    pub scanned: u64,
    /// Profiles in the audience.
    pub matched: u64,
    /// Notifications handed to the pipeline.
    pub queued: u64,
    /// Profiles not in the audience, by reason (`filter`, `excluded`, `no_consent`, `unreachable`).
    pub missed: BTreeMap<String, u64>,
}

/// A broadcast as recorded: the request and the audience as they were when it started
/// (a segment pushed since does not change it), its state and its progress.
#[derive(Debug, Clone, PartialEq)]
pub struct Broadcast {
    pub request: BroadcastRequest,
    /// The template every message names (a campaign's variants may swap it per person).
    pub template: TemplateName,
    pub audience: Audience,
    pub state: BroadcastState,
    /// When the state was last set (by whom's clock: the command's `at`).
    pub state_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// Bumped by each resume: jobs of an older epoch stop, so a resumed chain never runs twice.
    pub epoch: u32,
    /// When position 0 was due; position `p` is due `p / rate` seconds later.
    pub pace_origin: DateTime<Utc>,
    /// Positions handed out so far.
    pub released: u64,
    pub segments: Vec<SegmentProgress>,
    pub counts: Counts,
}

/// One page of one scan segment, on the broadcast queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageJob {
    pub campaign: CampaignId,
    pub epoch: u32,
    pub segment: u32,
    pub page: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
}

/// What a worker does with a page job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageStep {
    /// Nothing: the job is stale, or the broadcast stopped. The reason is for the log.
    Drop(&'static str),
    /// Not yet: hand the same job back with this delay.
    Wait {
        secs: u32,
    },
    Scan,
}

impl Broadcast {
    /// A new broadcast, received `now`, read in `segments` parallel scan segments.
    pub fn new(
        request: BroadcastRequest,
        template: TemplateName,
        audience: Audience,
        segments: u32,
        now: DateTime<Utc>,
    ) -> Self {
        let start = request.send_at.map_or(now, |at| at.max(now));
        Self {
            request,
            template,
            audience,
            state: BroadcastState::Running,
            state_at: now,
            created_at: now,
            epoch: 0,
            pace_origin: start,
            released: 0,
            segments: vec![SegmentProgress::default(); segments.max(1) as usize],
            counts: Counts::default(),
        }
    }

    /// A job for every chain not yet finished, from its cursor, in the current epoch: the
    /// first pages of a new broadcast, and where a resumed one picks up.
    pub fn open_pages(&self) -> Vec<PageJob> {
        (0u32..)
            .zip(&self.segments)
            .filter(|(_, s)| !s.done)
            .map(|(i, s)| PageJob {
                campaign: self.request.campaign.clone(),
                epoch: self.epoch,
                segment: i,
                page: s.page,
                start: s.start.clone(),
            })
            .collect()
    }

    pub fn all_read(&self) -> bool {
        self.segments.iter().all(|s| s.done)
    }

    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.request.expires_at.is_some_and(|at| at <= now)
    }

    /// Items one page reads: about a minute of sends at the broadcast's rate, so the
    /// delays a page's messages need stay well inside SQS's 15 minutes.
    pub fn page_items(&self) -> u32 {
        self.request.rate_per_second.saturating_mul(60).clamp(10, MAX_PAGE_ITEMS)
    }

    /// Where the pace starts again when the broadcast resumes `now`: the next position
    /// is due at once, rather than every position the pause held back falling due together.
    pub fn resume_origin(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - (self.due(self.released) - self.pace_origin)
    }

    /// When position `p` is due.
    pub fn due(&self, position: u64) -> DateTime<Utc> {
        let rate = i64::from(self.request.rate_per_second.max(1));
        let p = i64::try_from(position).unwrap_or(i64::MAX / 2);
        let millis = p.saturating_mul(1000) / rate;
        self.pace_origin + TimeDelta::milliseconds(millis)
    }

    /// What a worker does with `job` now.
    pub fn step(&self, job: &PageJob, now: DateTime<Utc>) -> PageStep {
        match self.state {
            BroadcastState::Running => {}
            BroadcastState::Paused => return PageStep::Drop("paused: resuming starts the chain again"),
            BroadcastState::Cancelled => return PageStep::Drop("cancelled"),
            BroadcastState::Done => return PageStep::Drop("done"),
        }
        if job.epoch != self.epoch {
            return PageStep::Drop("a job of an earlier run (the broadcast was resumed since)");
        }
        if self.expired(now) {
            return PageStep::Drop("expired");
        }
        let Some(progress) = self.segments.get(job.segment as usize) else {
            return PageStep::Drop("no such scan segment");
        };
        if progress.done || progress.page > job.page {
            return PageStep::Drop("page already read");
        }
        if progress.page < job.page {
            // The page before has handed this one on but not committed yet: its copy that
            // comes back will. Wait for it rather than read ahead of the cursor.
            return PageStep::Wait { secs: 5 };
        }
        if let Some(at) = self.request.send_at
            && at > now
        {
            return PageStep::Wait { secs: delay_secs(at - now).max(1) };
        }
        let next_due = self.due(self.released);
        let ahead = next_due - now;
        if ahead > TimeDelta::seconds(HORIZON_SECS) {
            // Enough is scheduled: come back when half the horizon is left.
            let wait = ahead - TimeDelta::seconds(HORIZON_SECS / 2);
            return PageStep::Wait { secs: delay_secs(wait).max(1) };
        }
        PageStep::Scan
    }

    /// The SQS delay for each of `count` positions ending at `released_after` (the counter
    /// after this page took its positions), as seen `now`.
    pub fn delays(&self, released_after: u64, count: u64, now: DateTime<Utc>) -> Vec<u32> {
        let first = released_after.saturating_sub(count);
        (first..released_after).map(|p| delay_secs(self.due(p) - now)).collect()
    }

    /// The notification one person in the audience gets, on `channels`. With a local time
    /// of day, it is due at the first such moment in the person's zone at or after `now`
    /// (and after `send_at`).
    pub fn notification(
        &self,
        recipient: &RecipientId,
        timezone: Option<TimeZone>,
        channels: Vec<Channel>,
        now: DateTime<Utc>,
    ) -> Option<NotifyRequest> {
        let r = &self.request;
        let send_at = r.local_time.map(|time| {
            let not_before = r.send_at.map_or(now, |at| at.max(now));
            let zone = timezone.or(r.default_timezone).map_or(chrono_tz::UTC, |z| z.0);
            local_send_at(time, zone, not_before)
        });
        Some(NotifyRequest {
            type_tag: None,
            idempotency_key: message_key(&r.campaign, recipient)?,
            recipient: recipient.clone(),
            template: self.template.clone(),
            data: r.data.clone(),
            topic: self.audience.segment.topic.clone(),
            kind: r.kind,
            channels: Some(channels),
            mode: Mode::First,
            send_at,
            expires_at: r.expires_at,
            campaign: Some(r.campaign.clone()),
            digest: None,
            test: false,
        })
    }
}

/// Whether a notification is a broadcast's message (its key is `<campaign>#<recipient>`).
pub fn is_broadcast_message(request: &NotifyRequest) -> Option<&CampaignId> {
    let campaign = request.campaign.as_ref()?;
    let key = request.idempotency_key.as_str();
    let rest = key.strip_prefix(campaign.as_str())?.strip_prefix('#')?;
    (rest == request.recipient.as_str()).then_some(campaign)
}

/// Whole seconds of `d`, rounded up, within SQS's delays.
fn delay_secs(d: TimeDelta) -> u32 {
    let millis = d.num_milliseconds().clamp(0, MAX_DELAY_SECS * 1000);
    u32::try_from((millis + 999) / 1000).unwrap_or(0)
}

/// The first instant at or after `not_before` at which clocks in `zone` show `time`.
/// A time that a spring-forward gap skips that day is taken just after the gap; a time
/// that a fall-back repeats, at its first occurrence.
pub fn local_send_at(time: NaiveTime, zone: chrono_tz::Tz, not_before: DateTime<Utc>) -> DateTime<Utc> {
    let local_day = not_before.with_timezone(&zone).date_naive();
    for offset in 0..3u64 {
        let Some(day) = local_day.checked_add_days(Days::new(offset)) else { break };
        let wall = day.and_time(time);
        let instant = match zone.from_local_datetime(&wall) {
            chrono::LocalResult::Single(t) => Some(t),
            chrono::LocalResult::Ambiguous(first, _) => Some(first),
            // In a gap: the hour after it exists.
            chrono::LocalResult::None => zone.from_local_datetime(&(wall + TimeDelta::hours(1))).earliest(),
        };
        if let Some(t) = instant.map(|t| t.with_timezone(&Utc))
            && t >= not_before
        {
            return t;
        }
    }
    not_before
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::segment::SegmentDoc;
    use crate::domain::{SegmentName, Topic};

    fn at(raw: &str) -> DateTime<Utc> {
        raw.parse().unwrap()
    }

    fn broadcast(rate: u32, now: DateTime<Utc>) -> Broadcast {
        let request: BroadcastRequest = serde_json::from_value(serde_json::json!({
            "campaign": "spring-sale", "segment": "everyone", "template": "weekly_digest",
            "rate_per_second": rate
        }))
        .unwrap();
        let segment = SegmentDoc {
            name: SegmentName::new("everyone").unwrap(),
            version: 1,
            description: None,
            topic: Some(Topic::new("promotions").unwrap()),
            channels: vec![Channel::Email],
            exclude: None,
            filter: crate::domain::segment::Filter::default(),
        };
        let audience = Audience { segment, exclusions: vec![] };
        Broadcast::new(request, TemplateName::new("weekly_digest").unwrap(), audience, 4, now)
    }

    fn job(b: &Broadcast, segment: u32, page: u32) -> PageJob {
        PageJob { campaign: b.request.campaign.clone(), epoch: b.epoch, segment, page, start: None }
    }

    #[test]
    fn a_page_job_is_read_once_in_its_turn_and_never_while_stopped() {
        let now = at("2026-11-30T10:00:00Z");
        let mut b = broadcast(10, now);
        assert_eq!(b.open_pages().len(), 4);
        assert_eq!(b.step(&job(&b, 0, 0), now), PageStep::Scan);
        b.segments[1] = SegmentProgress { page: 3, start: Some("k".into()), done: false };
        b.segments[2].done = true;
        let cases = [
            (job(&b, 1, 2), PageStep::Drop("page already read")),
            (job(&b, 1, 3), PageStep::Scan),
            (job(&b, 1, 4), PageStep::Wait { secs: 5 }),
            (job(&b, 2, 0), PageStep::Drop("page already read")),
            (job(&b, 9, 0), PageStep::Drop("no such scan segment")),
            (
                PageJob { epoch: 1, ..job(&b, 0, 0) },
                PageStep::Drop("a job of an earlier run (the broadcast was resumed since)"),
            ),
        ];
        for (j, expected) in cases {
            assert_eq!(b.step(&j, now), expected, "{j:?}");
        }
        let open = b.open_pages();
        assert_eq!(open.iter().map(|j| (j.segment, j.page)).collect::<Vec<_>>(), [(0, 0), (1, 3), (3, 0)]);
        assert_eq!(open[1].start.as_deref(), Some("k"));
        for (state, why) in [
            (BroadcastState::Paused, "paused: resuming starts the chain again"),
            (BroadcastState::Cancelled, "cancelled"),
            (BroadcastState::Done, "done"),
        ] {
            let stopped = Broadcast { state, ..b.clone() };
            assert_eq!(stopped.step(&job(&b, 0, 0), now), PageStep::Drop(why));
        }
        let expired = Broadcast { request: BroadcastRequest { expires_at: Some(now), ..b.request.clone() }, ..b };
        assert_eq!(expired.step(&job(&expired, 0, 0), now), PageStep::Drop("expired"));
    }

    #[test]
    fn the_pace_holds_across_workers_and_waits_for_send_at() {
        let now = at("2026-11-30T10:00:00Z");
        let mut b = broadcast(10, now);
        // Positions 0..5 of a rate of 10 per second: 0, 100, ..., 400 ms after the origin.
        assert_eq!(b.delays(5, 5, now), [0, 1, 1, 1, 1]);
        // Another worker's positions 5..10 follow them, whoever asked first.
        assert_eq!(b.delays(10, 5, now + TimeDelta::milliseconds(100)), [1, 1, 1, 1, 1]);
        // 300 positions out at 10 per second is 30 s ahead: past the horizon, wait 20 s.
        b.released = 300;
        assert_eq!(b.step(&job(&b, 0, 0), now), PageStep::Wait { secs: 20 });
        assert_eq!(b.step(&job(&b, 0, 0), now + TimeDelta::seconds(15)), PageStep::Scan);
        // Nothing waits longer than SQS can delay.
        b.released = 1_000_000;
        assert_eq!(b.step(&job(&b, 0, 0), now), PageStep::Wait { secs: 900 });
        assert!(b.delays(1_000_000, 3, now).iter().all(|d| *d == 900));
        let later = Broadcast {
            request: BroadcastRequest { send_at: Some(now + TimeDelta::hours(2)), ..b.request.clone() },
            released: 0,
            ..b.clone()
        };
        assert_eq!(later.step(&job(&later, 0, 0), now), PageStep::Wait { secs: 900 });
        assert_eq!(later.step(&job(&later, 0, 0), now + TimeDelta::seconds(7190)), PageStep::Wait { secs: 10 });
        // A page reads about a minute of sends, between 10 and 500 items.
        assert_eq!((broadcast(1, now).page_items(), broadcast(5, now).page_items()), (60, 300));
        assert_eq!(broadcast(100, now).page_items(), MAX_PAGE_ITEMS);
    }

    #[test]
    fn a_resumed_pace_starts_again_now() {
        let now = at("2026-11-30T10:00:00Z");
        let mut b = broadcast(10, now);
        b.released = 600;
        let later = now + TimeDelta::hours(1);
        b.pace_origin = b.resume_origin(later);
        assert_eq!(b.due(600), later);
        assert_eq!(b.step(&job(&b, 0, 0), later), PageStep::Scan);
    }

    #[test]
    fn local_time_is_the_next_such_moment_in_the_zone() {
        let nine = NaiveTime::from_hms_opt(9, 0, 0).unwrap();
        let cases = [
            // 10:00 UTC is 11:00 in Paris: tomorrow's 09:00 there; 05:00 in New York: today's.
            ("2026-11-30T10:00:00Z", chrono_tz::Europe::Paris, "2026-12-01T08:00:00Z"),
            ("2026-11-30T10:00:00Z", chrono_tz::America::New_York, "2026-11-30T14:00:00Z"),
            ("2026-11-30T09:00:00Z", chrono_tz::UTC, "2026-11-30T09:00:00Z"),
            // 02:30 does not exist in Paris on 2026-03-29: just after the gap.
            ("2026-03-29T00:00:00Z", chrono_tz::Europe::Paris, "2026-03-29T01:30:00Z"),
        ];
        for (now, zone, expected) in cases {
            let time = if now.starts_with("2026-03-29") { NaiveTime::from_hms_opt(2, 30, 0).unwrap() } else { nine };
            assert_eq!(local_send_at(time, zone, at(now)), at(expected), "{now} {zone}");
        }
    }

    #[test]
    fn each_person_gets_one_keyed_notification() {
        let now = at("2026-11-30T10:00:00Z");
        let b = broadcast(10, now);
        let r = RecipientId::new("user-7").unwrap();
        let n = b.notification(&r, None, vec![Channel::Email], now).unwrap();
        assert_eq!(n.idempotency_key.as_str(), "spring-sale#user-7");
        assert_eq!(n.topic.as_ref().map(|t| t.as_str()), Some("promotions"));
        assert_eq!((n.send_at, n.kind), (None, crate::contract::Kind::Marketing));
        assert_eq!(is_broadcast_message(&n), Some(&b.request.campaign));
        let other = NotifyRequest { recipient: RecipientId::new("user-8").unwrap(), ..n.clone() };
        assert_eq!(is_broadcast_message(&other), None, "a key naming someone else is not the broadcast's");
        let local = Broadcast {
            request: BroadcastRequest { local_time: NaiveTime::from_hms_opt(9, 0, 0), ..b.request.clone() },
            ..b
        };
        let paris = TimeZone(chrono_tz::Europe::Paris);
        let n = local.notification(&r, Some(paris), vec![Channel::Email], now).unwrap();
        assert_eq!(n.send_at, Some(at("2026-12-01T08:00:00Z")));
    }
}
