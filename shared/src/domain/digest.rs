//! Digests: the items one recipient gets for one template and digest key within a window
//! become one message ("10 new comments"). Pure rules: which head an item goes to, when a
//! window closes, what a close job does, and the message a closed window becomes.
//!
//! The head (one DynamoDB item per recipient, template and key, in the ledger table) holds
//! the open window: its number `win`, the exact `total`, when it opened and last grew, the
//! ids of its first [`MAX_FIRST`] items (never their data: that stays on each item's own
//! ledger entry), short hashes of its item ids and of the previous window's (so a
//! redelivered item is not counted twice, across a seal too), what the opening item asked
//! for ([`Opening`]), and, between a seal and its hand-off, the sealed window ([`SealedWindow`]).

use crate::contract::{DigestSpec, Kind, MAX_REQUEST_BYTES, Mode, NotifyRequest, TimeZone, instant};
use crate::domain::broadcast::local_send_at;
use crate::domain::{CampaignId, Channel, IdempotencyKey, MessageId, RecipientId, TemplateName, Topic};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use std::fmt;

/// A digest item's data, as JSON text, is at most this long.
pub const MAX_ITEM_DATA_BYTES: usize = 4096;
/// The item ids a head keeps: the template sees at most this many items.
pub const MAX_FIRST: usize = 50;
/// The items a digest template sees when its `[digest] items` is not given.
pub const DEFAULT_TEMPLATE_ITEMS: usize = 10;
/// How long a head is kept after it last changed: past any window (7 days at most) and
/// the hand-off of its last one.
pub const HEAD_RETENTION: TimeDelta = TimeDelta::days(9);
/// SQS's longest delay; a close due later waits in the schedule table.
pub const MAX_DELAY_SECS: i64 = 900;

/// The head of one (recipient, template, key): `digest#<32 hex>` in the ledger table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DigestId(String);

impl DigestId {
    const PREFIX: &'static str = "digest#";

    /// Each part is length-prefixed, so no two (recipient, template, key) share an id
    /// however their texts are cut.
    pub fn of(recipient: &RecipientId, template: &TemplateName, key: &str) -> Self {
        let mut h = Sha256::new();
        for part in [recipient.as_str(), template.as_str(), key] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        let digest = h.finalize();
        Self(format!("{}{}", Self::PREFIX, hex::encode(digest.get(..16).unwrap_or_default())))
    }

    pub fn parse(raw: &str) -> Option<Self> {
        let hex = raw.strip_prefix(Self::PREFIX)?;
        (hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
            .then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 32 hex digits.
    pub fn hex(&self) -> &str {
        self.0.get(Self::PREFIX.len()..).unwrap_or_default()
    }

    /// The idempotency key of window `win`'s message: a close delivered twice, or retried
    /// after a crash, is one message (ingest drops the second).
    pub fn message_key(&self, win: u64) -> String {
        format!("digest:{}:{win}", self.hex())
    }

    /// The idempotency key of the message that sends window `win`'s first item at once (`flush_first`).
    pub fn first_key(&self, win: u64) -> String {
        format!("digest:{}:{win}:first", self.hex())
    }
}

impl TryFrom<String> for DigestId {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        Self::parse(&raw).ok_or_else(|| "not a digest id".to_owned())
    }
}

impl From<DigestId> for String {
    fn from(id: DigestId) -> String {
        id.0
    }
}

impl fmt::Display for DigestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The short form of an item id the head remembers it by (8 bytes: a collision within two
/// windows of at most 1000 items each is about one in 10^13).
pub fn item_hash(id: &MessageId) -> &str {
    id.as_str().get(..16).unwrap_or(id.as_str())
}

/// A digest item's data as the ledger keeps it (JSON text), if within [`MAX_ITEM_DATA_BYTES`].
pub fn item_data(data: &Map<String, Value>) -> Result<String, String> {
    let text = serde_json::to_string(data).map_err(|e| e.to_string())?;
    if text.len() > MAX_ITEM_DATA_BYTES {
        return Err(format!(
            "a digest item's data is {} bytes as JSON, at most {MAX_ITEM_DATA_BYTES} are kept",
            text.len()
        ));
    }
    Ok(text)
}

/// What the item that opens a window fixes for its message: how it is sent, and the
/// window's rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opening {
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<Topic>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<Channel>>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<CampaignId>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "instant")]
    pub expires_at: Option<DateTime<Utc>>,
    pub spec: DigestSpec,
}

impl Opening {
    /// `None` for a request without `digest`.
    pub fn of(r: &NotifyRequest) -> Option<Self> {
        Some(Self {
            kind: r.kind,
            topic: r.topic.clone(),
            channels: r.channels.clone(),
            mode: r.mode,
            campaign: r.campaign.clone(),
            expires_at: r.expires_at,
            spec: r.digest.clone()?,
        })
    }

    /// A notify with these fields.
    fn request(
        &self,
        key: String,
        recipient: &RecipientId,
        template: &TemplateName,
        data: Map<String, Value>,
    ) -> Option<NotifyRequest> {
        Some(NotifyRequest {
            type_tag: None,
            idempotency_key: IdempotencyKey::new(key).ok()?,
            recipient: recipient.clone(),
            template: template.clone(),
            data,
            topic: self.topic.clone(),
            kind: self.kind,
            channels: self.channels.clone(),
            mode: self.mode,
            send_at: None,
            expires_at: self.expires_at,
            campaign: self.campaign.clone(),
            digest: None,
            test: false,
        })
    }
}

/// A window sealed and not yet handed off as a message.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedWindow {
    pub win: u64,
    pub total: u64,
    pub first: Vec<MessageId>,
    pub opening: Opening,
}

/// A head as read.
#[derive(Debug, Clone, PartialEq)]
pub struct DigestHead {
    pub id: DigestId,
    pub recipient: RecipientId,
    pub template: TemplateName,
    /// The open window's number (from 1).
    pub win: u64,
    /// Its items, exactly; 0 when no item came since the last seal.
    pub total: u64,
    pub opened_at: Option<DateTime<Utc>>,
    pub last_at: Option<DateTime<Utc>>,
    /// When it closes ([`first_close`], fixed by the item that opened it; a sliding
    /// window's end moves on from there, see [`close_at`]).
    pub due: Option<DateTime<Utc>>,
    /// Its first item ids, in arrival order, at most [`MAX_FIRST`].
    pub first: Vec<MessageId>,
    pub opening: Option<Opening>,
    pub sealed: Option<SealedWindow>,
}

/// What an append did, as the head says after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The window the item is in.
    pub win: u64,
    /// That window's items so far.
    pub total: u64,
    pub opened_at: DateTime<Utc>,
    /// When that window closes, as its opening item fixed it.
    pub due: DateTime<Utc>,
    /// The item opened that window.
    pub opened: bool,
    /// The item was there already (a redelivery): nothing was counted. `win` is the open
    /// window, and the item may be in the previous, sealed one (`in_previous`).
    pub already: bool,
    pub in_previous: bool,
}

/// The digest queue's job: close window `win` of a head at `due`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseJob {
    pub digest: DigestId,
    pub win: u64,
    #[serde(with = "instant::required")]
    pub due: DateTime<Utc>,
}

/// When a window opened at `opened_at` first closes: a fixed or sliding window `window`
/// later (a sliding one may be moved on by later items), or at the next `until` time of
/// day in `zone` strictly after it opened (a time a DST gap skips, just after the gap; a
/// time a fall-back repeats, at its first occurrence).
/// `zone`: the recipient's (UTC without one).
pub fn first_close(spec: &DigestSpec, opened_at: DateTime<Utc>, zone: Option<TimeZone>) -> DateTime<Utc> {
    match (&spec.window, spec.until) {
        (Some(w), _) => opened_at + w.delta(),
        (None, Some(time)) => {
            local_send_at(time, zone.map_or(chrono_tz::UTC, |z| z.0), opened_at + TimeDelta::seconds(1))
        }
        (None, None) => opened_at,
    }
}

/// When the open window closes now: a sliding window `window` after its last item, at
/// most `max_wait` after it opened; any other at `due` (its close job's, computed from
/// [`first_close`]). A full window closes at once.
pub fn close_at(
    spec: &DigestSpec,
    total: u64,
    opened_at: DateTime<Utc>,
    last_at: DateTime<Utc>,
    due: DateTime<Utc>,
) -> DateTime<Utc> {
    if total >= u64::from(spec.max_items()) {
        return opened_at.min(due);
    }
    match (&spec.window, &spec.max_wait) {
        (Some(w), Some(max_wait)) if spec.sliding => (last_at + w.delta()).min(opened_at + max_wait.delta()),
        _ => due,
    }
}

/// What a close job does, given the head as read (consistently) at `now`.
#[derive(Debug, Clone, PartialEq)]
pub enum CloseStep {
    /// A sealed window waits for its hand-off: send it first (any job finishes it).
    HandOff,
    /// Nothing to do: the window is closed already, or never opened.
    Drop(&'static str),
    /// Early: come back at this instant.
    Wait(DateTime<Utc>),
    Seal,
}

pub fn decide(job: &CloseJob, head: Option<&DigestHead>, now: DateTime<Utc>) -> CloseStep {
    let Some(head) = head else { return CloseStep::Drop("no such digest") };
    if head.sealed.is_some() {
        return CloseStep::HandOff;
    }
    if job.win != head.win {
        return CloseStep::Drop("window closed already");
    }
    let (Some(opening), Some(opened_at)) = (&head.opening, head.opened_at) else {
        return CloseStep::Drop("window has no items");
    };
    if head.total == 0 {
        return CloseStep::Drop("window has no items");
    }
    let due = head.due.unwrap_or(job.due);
    let close = close_at(&opening.spec, head.total, opened_at, head.last_at.unwrap_or(opened_at), due);
    if close > now { CloseStep::Wait(close) } else { CloseStep::Seal }
}

/// How a job due at `due` waits from `now`: an SQS delay when within 15 minutes, else
/// the schedule table (`None`).
pub fn delay_secs(due: DateTime<Utc>, now: DateTime<Utc>) -> Option<u32> {
    let secs = ((due - now).num_milliseconds().max(0) + 999) / 1000;
    (secs <= MAX_DELAY_SECS).then(|| u32::try_from(secs).unwrap_or(0))
}

/// What ingest does after appending an item: queue close jobs (the window's first, when
/// the item opened it; one due at once, when it filled it) and, for `flush_first`, send the
/// opening item at once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FollowUp {
    pub close: Vec<CloseJob>,
    pub flush: bool,
}

/// The follow-up of an append. A redelivered item that is in the open window again does
/// what its first delivery did (that delivery's hand-offs may have failed); one in the
/// sealed window, nothing (the close job handles it).
pub fn follow_up(id: &DigestId, spec: &DigestSpec, appended: &Appended, now: DateTime<Utc>) -> FollowUp {
    let mut out = FollowUp::default();
    if appended.in_previous {
        return out;
    }
    if appended.opened {
        out.close.push(CloseJob { digest: id.clone(), win: appended.win, due: appended.due });
        out.flush = spec.flush_first;
    }
    if appended.total >= u64::from(spec.max_items()) {
        out.close.push(CloseJob { digest: id.clone(), win: appended.win, due: now });
    }
    out
}

/// The ids whose data the message of `sealed` shows: the first `n` (the opening item
/// left out when it was sent at once).
pub fn shown_ids(sealed: &SealedWindow, n: usize) -> Vec<MessageId> {
    let skip = usize::from(sealed.opening.spec.flush_first);
    sealed.first.iter().skip(skip).take(n.min(MAX_FIRST)).cloned().collect()
}

/// The message window `sealed` becomes: `data = {"items": [...], "total": n}`, items in
/// arrival order (`items`, as read for [`shown_ids`]), as many as fit in a request (64 KiB),
/// `total` exact. `None` when there is nothing to send: the window's only item went at
/// once (`flush_first`).
pub fn message(
    id: &DigestId,
    recipient: &RecipientId,
    template: &TemplateName,
    sealed: &SealedWindow,
    mut items: Vec<Value>,
) -> Option<NotifyRequest> {
    let total = sealed.total.saturating_sub(u64::from(sealed.opening.spec.flush_first));
    if total == 0 {
        return None;
    }
    loop {
        let data =
            Map::from_iter([("items".to_owned(), Value::Array(items.clone())), ("total".to_owned(), total.into())]);
        let request = sealed.opening.request(id.message_key(sealed.win), recipient, template, data)?;
        let fits = serde_json::to_string(&request).is_ok_and(|body| body.len() <= MAX_REQUEST_BYTES);
        if fits || items.pop().is_none() {
            return Some(request);
        }
    }
}

/// The message that sends a window's opening item at once (`flush_first`): a digest of one.
pub fn first_message(id: &DigestId, win: u64, request: &NotifyRequest, opening: &Opening) -> Option<NotifyRequest> {
    let data = Map::from_iter([
        ("items".to_owned(), Value::Array(vec![Value::Object(request.data.clone())])),
        ("total".to_owned(), 1.into()),
    ]);
    opening.request(id.first_key(win), &request.recipient, &request.template, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::IngestMessage;
    use chrono::TimeZone as _;
    use serde_json::json;

    fn spec(v: Value) -> DigestSpec {
        serde_json::from_value(v).unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn notify(digest: Value) -> NotifyRequest {
        let body = json!({"idempotency_key": "c-1", "recipient": "user-1", "template": "new_comments",
                          "kind": "marketing", "topic": "comments", "data": {"author": "Bo"}, "digest": digest});
        match IngestMessage::parse(&body.to_string()) {
            Ok(IngestMessage::Notify(r)) => *r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn heads_are_per_recipient_template_and_key() {
        let r = |s: &str| RecipientId::new(s).unwrap();
        let t = |s: &str| TemplateName::new(s).unwrap();
        let a = DigestId::of(&r("u1"), &t("comments"), "post-1");
        assert_eq!(a, DigestId::of(&r("u1"), &t("comments"), "post-1"));
        assert_eq!(DigestId::parse(a.as_str()), Some(a.clone()));
        assert_eq!(a.hex().len(), 32);
        for other in [
            DigestId::of(&r("u2"), &t("comments"), "post-1"),
            DigestId::of(&r("u1"), &t("comment"), "spost-1"),
            DigestId::of(&r("u1"), &t("comments"), "post-2"),
        ] {
            assert_ne!(a, other);
        }
        assert_eq!(a.message_key(3), format!("digest:{}:3", a.hex()));
        assert_eq!(DigestId::parse("digest#xyz"), None);
    }

    #[test]
    fn fixed_sliding_and_until_windows_close_when_they_should() {
        let opened = at("2026-03-01T10:00:00Z");
        let fixed = spec(json!({"key": "k", "window": "15m"}));
        assert_eq!(first_close(&fixed, opened, None), at("2026-03-01T10:15:00Z"));
        assert_eq!(
            close_at(&fixed, 3, opened, opened + TimeDelta::minutes(14), at("2026-03-01T10:15:00Z")),
            at("2026-03-01T10:15:00Z")
        );

        let sliding = spec(json!({"key": "k", "window": "10m", "sliding": true, "max_wait": "30m"}));
        let due = first_close(&sliding, opened, None);
        assert_eq!(due, at("2026-03-01T10:10:00Z"));
        // Each item moves the end on, up to max_wait after the window opened.
        assert_eq!(close_at(&sliding, 2, opened, at("2026-03-01T10:08:00Z"), due), at("2026-03-01T10:18:00Z"));
        assert_eq!(close_at(&sliding, 9, opened, at("2026-03-01T10:25:00Z"), due), at("2026-03-01T10:30:00Z"));

        let full = spec(json!({"key": "k", "window": "1h", "max_items": 3}));
        assert_eq!(close_at(&full, 3, opened, opened, at("2026-03-01T11:00:00Z")), opened);
        assert_eq!(close_at(&full, 2, opened, opened, at("2026-03-01T11:00:00Z")), at("2026-03-01T11:00:00Z"));
    }

    #[test]
    fn until_is_the_next_such_local_time_across_dst() {
        let daily = spec(json!({"key": "k", "until": "18:00"}));
        let paris = chrono_tz::Europe::Paris;
        let zone = Some(TimeZone(paris));
        let cases = [
            // Winter (UTC+1): 18:00 in Paris is 17:00 UTC; the same day, then the next.
            ("2026-01-10T09:00:00Z", "2026-01-10T17:00:00Z"),
            ("2026-01-10T17:00:00Z", "2026-01-11T17:00:00Z"),
            ("2026-01-10T16:59:59Z", "2026-01-10T17:00:00Z"),
            // The night of the spring change (29 March 2026): 18:00 is 16:00 UTC after it.
            ("2026-03-28T18:00:00Z", "2026-03-29T16:00:00Z"),
            // The night of the autumn change (25 October 2026): 18:00 is 17:00 UTC again.
            ("2026-10-24T17:00:00Z", "2026-10-25T17:00:00Z"),
        ];
        for (opened, closes) in cases {
            assert_eq!(first_close(&daily, at(opened), zone), at(closes), "opened {opened}");
        }
        // Without a zone: UTC.
        assert_eq!(first_close(&daily, at("2026-01-10T09:00:00Z"), None), at("2026-01-10T18:00:00Z"));
        // A time the spring gap skips (02:30 on 29 March in Paris) is taken just after it.
        let gap = spec(json!({"key": "k", "until": "02:30"}));
        let closes = first_close(&gap, at("2026-03-28T12:00:00Z"), zone);
        assert_eq!(closes, paris.with_ymd_and_hms(2026, 3, 29, 3, 30, 0).unwrap().with_timezone(&Utc));
        // A time the autumn change repeats (02:30 on 25 October) is its first occurrence.
        let repeated = first_close(&gap, at("2026-10-24T12:00:00Z"), zone);
        assert_eq!(repeated, at("2026-10-25T00:30:00Z"));
    }

    fn head(win: u64, total: u64, spec_v: Value) -> DigestHead {
        let r = notify(spec_v);
        DigestHead {
            id: DigestId::of(&r.recipient, &r.template, "k"),
            recipient: r.recipient.clone(),
            template: r.template.clone(),
            win,
            total,
            opened_at: Some(at("2026-03-01T10:00:00Z")),
            last_at: Some(at("2026-03-01T10:05:00Z")),
            due: None,
            first: Vec::new(),
            opening: Opening::of(&r),
            sealed: None,
        }
    }

    #[test]
    fn a_close_job_seals_its_window_once_and_only_when_due() {
        let h = head(4, 2, json!({"key": "k", "window": "15m"}));
        let job = CloseJob { digest: h.id.clone(), win: 4, due: at("2026-03-01T10:15:00Z") };
        assert_eq!(decide(&job, Some(&h), at("2026-03-01T10:14:00Z")), CloseStep::Wait(job.due));
        assert_eq!(decide(&job, Some(&h), at("2026-03-01T10:15:00Z")), CloseStep::Seal);
        // A second copy after the seal finds the next window open: dropped.
        let after = DigestHead { win: 5, total: 1, ..h.clone() };
        assert_eq!(decide(&job, Some(&after), at("2026-03-01T10:16:00Z")), CloseStep::Drop("window closed already"));
        let empty = DigestHead { win: 5, total: 0, opened_at: None, ..h.clone() };
        let next = CloseJob { win: 5, ..job.clone() };
        assert_eq!(decide(&next, Some(&empty), at("2026-03-01T10:16:00Z")), CloseStep::Drop("window has no items"));
        assert_eq!(decide(&job, None, at("2026-03-01T10:16:00Z")), CloseStep::Drop("no such digest"));
        // A sealed window not yet handed off is finished first, by whichever job comes.
        let pending = DigestHead {
            sealed: Some(SealedWindow { win: 4, total: 2, first: Vec::new(), opening: h.opening.clone().unwrap() }),
            ..after
        };
        assert_eq!(decide(&job, Some(&pending), at("2026-03-01T10:16:00Z")), CloseStep::HandOff);
        // The head's end is the truth, not the job's.
        let fixed_end = DigestHead { due: Some(at("2026-03-01T10:20:00Z")), ..h.clone() };
        assert_eq!(
            decide(&job, Some(&fixed_end), at("2026-03-01T10:16:00Z")),
            CloseStep::Wait(at("2026-03-01T10:20:00Z"))
        );
        // A sliding window's job comes back when the last item moved the end on.
        let sliding = head(1, 2, json!({"key": "k", "window": "10m", "sliding": true, "max_wait": "1h"}));
        let early = CloseJob { digest: sliding.id.clone(), win: 1, due: at("2026-03-01T10:10:00Z") };
        assert_eq!(
            decide(&early, Some(&sliding), at("2026-03-01T10:10:00Z")),
            CloseStep::Wait(at("2026-03-01T10:15:00Z"))
        );
    }

    #[test]
    fn follow_ups_queue_the_close_and_flush_the_first_item() {
        let s = spec(json!({"key": "k", "window": "15m", "max_items": 3, "flush_first": true}));
        let id = DigestId::parse(&format!("digest#{}", "a".repeat(32))).unwrap();
        let now = at("2026-03-01T10:00:00Z");
        let opened = Appended {
            win: 2,
            total: 1,
            opened_at: now,
            due: at("2026-03-01T10:15:00Z"),
            opened: true,
            already: false,
            in_previous: false,
        };
        let f = follow_up(&id, &s, &opened, now);
        assert_eq!(f.close, vec![CloseJob { digest: id.clone(), win: 2, due: at("2026-03-01T10:15:00Z") }]);
        assert!(f.flush);
        let middle = Appended { total: 2, opened: false, ..opened.clone() };
        assert_eq!(follow_up(&id, &s, &middle, now), FollowUp::default());
        let full = Appended { total: 3, opened: false, ..opened.clone() };
        assert_eq!(follow_up(&id, &s, &full, now).close, vec![CloseJob { digest: id.clone(), win: 2, due: now }]);
        let sealed = Appended { already: true, in_previous: true, ..opened };
        assert_eq!(follow_up(&id, &s, &sealed, now), FollowUp::default());
    }

    #[test]
    fn delays_past_fifteen_minutes_go_to_the_schedule() {
        let now = at("2026-03-01T10:00:00Z");
        assert_eq!(delay_secs(now, now), Some(0));
        assert_eq!(delay_secs(now - TimeDelta::minutes(1), now), Some(0));
        assert_eq!(delay_secs(now + TimeDelta::milliseconds(1500), now), Some(2));
        assert_eq!(delay_secs(now + TimeDelta::minutes(15), now), Some(900));
        assert_eq!(delay_secs(now + TimeDelta::seconds(901), now), None);
    }

    fn ids(n: usize) -> Vec<MessageId> {
        (0..n).map(|i| MessageId::parse(&format!("{i:032x}")).unwrap()).collect()
    }

    #[test]
    fn a_sealed_window_becomes_one_message_with_items_and_an_exact_total() {
        let r = notify(json!({"key": "k", "window": "15m"}));
        let opening = Opening::of(&r).unwrap();
        let id = DigestId::of(&r.recipient, &r.template, "k");
        let sealed = SealedWindow { win: 7, total: 120, first: ids(50), opening: opening.clone() };
        assert_eq!(shown_ids(&sealed, 10), ids(10));
        assert_eq!(shown_ids(&sealed, 500).len(), MAX_FIRST);
        let items: Vec<Value> = (0..10).map(|i| json!({"n": i})).collect();
        let m = message(&id, &r.recipient, &r.template, &sealed, items.clone()).unwrap();
        assert_eq!(m.idempotency_key.as_str(), id.message_key(7));
        assert_eq!(m.data["total"], 120);
        assert_eq!(m.data["items"], Value::Array(items));
        assert_eq!(
            (m.kind, m.topic.as_ref().map(Topic::as_str), m.digest.as_ref()),
            (Kind::Marketing, Some("comments"), None)
        );
        // What it sends is an ordinary, valid notify.
        let body = serde_json::to_string(&m).unwrap();
        assert!(matches!(IngestMessage::parse(&body), Ok(IngestMessage::Notify(_))));

        // Items that would not fit in a request are left out; the total stays exact.
        let big: Vec<Value> = (0..50).map(|_| json!({"text": "x".repeat(4000)})).collect();
        let m = message(&id, &r.recipient, &r.template, &sealed, big).unwrap();
        let shown = m.data["items"].as_array().unwrap().len();
        assert!((10..50).contains(&shown), "{shown}");
        assert!(serde_json::to_string(&m).unwrap().len() <= MAX_REQUEST_BYTES);
        assert_eq!(m.data["total"], 120);
    }

    #[test]
    fn flush_first_sends_the_opening_item_at_once_and_the_rest_at_the_end() {
        let r = notify(json!({"key": "k", "window": "15m", "flush_first": true}));
        let opening = Opening::of(&r).unwrap();
        let id = DigestId::of(&r.recipient, &r.template, "k");
        let first = first_message(&id, 3, &r, &opening).unwrap();
        assert_eq!(first.idempotency_key.as_str(), id.first_key(3));
        assert_eq!(first.data["items"], json!([{"author": "Bo"}]));
        assert_eq!(first.data["total"], 1);

        let sealed = SealedWindow { win: 3, total: 4, first: ids(4), opening: opening.clone() };
        assert_eq!(shown_ids(&sealed, 10), ids(4)[1..].to_vec());
        let m = message(&id, &r.recipient, &r.template, &sealed, vec![json!(1), json!(2), json!(3)]).unwrap();
        assert_eq!(m.data["total"], 3);
        let alone = SealedWindow { total: 1, first: ids(1), ..sealed };
        assert_eq!(message(&id, &r.recipient, &r.template, &alone, Vec::new()), None, "nothing came after the first");
    }

    #[test]
    fn item_data_is_bounded() {
        let small = json!({"author": "Bo"}).as_object().unwrap().clone();
        assert_eq!(item_data(&small).unwrap(), r#"{"author":"Bo"}"#);
        let big = json!({"text": "x".repeat(MAX_ITEM_DATA_BYTES)}).as_object().unwrap().clone();
        assert!(item_data(&big).unwrap_err().contains("at most 4096"));
    }
}
