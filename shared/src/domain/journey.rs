//! Journeys: steps over time for one person. A journey (`journeys/<name>.toml`, pushed to
//! the templates table like segments, versioned) sends templates, waits, and branches on
//! what the last message did or on the person's profile. The format and its rules are in
//! `docs/journeys.md`.
//!
//! This module is pure: the file's format and its checks (a step naming an unknown
//! template or step, a cycle without a wait, a branch on an undeclared status or on a
//! step that is not an earlier send, an unreachable step), and the state machine of one
//! person's run (when a job may act, what a step does, where the person goes next). The
//! journeys function and ingest do the I/O around it.

use crate::contract::{Kind, NotifyRequest};
use crate::domain::ledger::Status;
use crate::domain::profile::ProfileSchema;
use crate::domain::recipient::{ConsentVerdict, Recipient};
use crate::domain::segment::Filter;
use crate::domain::{CampaignId, Channel, EventName, IdempotencyKey, MessageId, RecipientId, TemplateName, Topic};
use chrono::{DateTime, NaiveTime, TimeDelta, TimeZone as _, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The most steps one journey may have.
pub const MAX_STEPS: usize = 50;
/// The longest wait (or branch `within`, or re-entry period): a year.
pub const MAX_SPAN_DAYS: i64 = 366;
/// The entry data a run keeps (JSON text), so one person's state stays one write unit.
pub const MAX_ENTRY_DATA_BYTES: usize = 512;
/// The most moves one run makes: a safety net for loops through waits.
pub const MAX_MOVES: u32 = 1_000;
/// The id `next`, `yes` and `no` use for the end of the journey.
pub const END: &str = "end";

// ---------------------------------------------------------------- names

/// Why a raw string is not a journey or step name.
fn check_name(raw: &str, what: &str, max: usize) -> Result<(), String> {
    let len = raw.chars().count();
    if len == 0 {
        return Err(format!("{what} must not be empty"));
    }
    if len > max {
        return Err(format!("{what} is {len} characters long, at most {max} are allowed"));
    }
    if let Some(bad) = raw.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '?'))) {
        return Err(format!("{what} contains the character {bad:?}, which is not allowed"));
    }
    Ok(())
}

/// A journey's name, such as `onboarding` (`journeys/<name>.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct JourneyName(String);

impl JourneyName {
    pub const MAX_LEN: usize = 64;

    pub fn new(raw: impl Into<String>) -> Result<Self, String> {
        let raw = raw.into();
        check_name(&raw, "journey", Self::MAX_LEN)?;
        if raw.contains('?') {
            return Err("journey contains the character '?', which is not allowed".into());
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for JourneyName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for JourneyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A step's id within its journey (`welcome`, `opened?`): letters, digits, `.`, `_`, `-`,
/// `?`, at most 32, never `end`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct StepId(String);

impl StepId {
    pub const MAX_LEN: usize = 32;

    pub fn new(raw: impl Into<String>) -> Result<Self, String> {
        let raw = raw.into();
        check_name(&raw, "step id", Self::MAX_LEN)?;
        if raw == END {
            return Err(format!("step id {END} is reserved for the end of the journey"));
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for StepId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------- durations

/// `"30s"`, `"15m"`, `"2h"`, `"1d"`, `"1w"`: a whole number and a unit, from one second to
/// [`MAX_SPAN_DAYS`] days. (The lead unifies this with the digests' parser.)
/// A journey's duration: [`super::duration::parse_duration`]'s forms (`"30s"`, `"15m"`,
/// `"2h"`, `"1d"`) and weeks (`"1w"`), from 1 s to [`MAX_SPAN_DAYS`] days.
fn parse_span(raw: &str) -> Result<TimeDelta, String> {
    let span = match raw.strip_suffix('w') {
        Some(weeks) => super::duration::parse_duration(&format!("{weeks}d")).map(|days| days * 7),
        None => super::duration::parse_duration(raw),
    }
    .map_err(|e| format!("{raw:?} is {e} (or weeks, \"1w\")"))?;
    if span < TimeDelta::seconds(1) || span > TimeDelta::days(MAX_SPAN_DAYS) {
        return Err(format!("{raw:?} must be from 1s to {MAX_SPAN_DAYS}d"));
    }
    Ok(span)
}

fn parse_local_time(raw: &str) -> Result<NaiveTime, String> {
    let ok = raw.len() == 5 && raw.as_bytes().get(2) == Some(&b':');
    ok.then(|| NaiveTime::parse_from_str(raw, "%H:%M").ok())
        .flatten()
        .ok_or_else(|| format!("{raw:?} is not a local time of day as HH:MM"))
}

/// The first instant after `now` when the clock in `tz` shows `at` (a time a
/// daylight-saving change skips is taken an hour later).
pub fn next_local_time(now: DateTime<Utc>, tz: chrono_tz::Tz, at: NaiveTime) -> DateTime<Utc> {
    let local_today = now.with_timezone(&tz).date_naive();
    for day in 0..=2 {
        let Some(date) = local_today.checked_add_days(chrono::Days::new(day)) else { break };
        let naive = date.and_time(at);
        let resolved = tz
            .from_local_datetime(&naive)
            .earliest()
            .or_else(|| tz.from_local_datetime(&(naive + TimeDelta::hours(1))).earliest());
        if let Some(t) = resolved.map(|t| t.with_timezone(&Utc))
            && t > now
        {
            return t;
        }
    }
    now + TimeDelta::days(1)
}

// ---------------------------------------------------------------- the file

/// One journey, as its file declares it (and as it is stored, in JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JourneyDoc {
    pub name: JourneyName,
    /// Raised with every change: a push of a changed journey under a stored version is
    /// refused, and a person stays on the version they entered.
    #[serde(default = "first_version")]
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The kind of every send.
    pub kind: Kind,
    /// The consent topic of every send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<Topic>,
    /// The campaign every send counts in (caps, cooldowns, holdouts), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<CampaignId>,
    #[serde(default)]
    pub entry: EntryDoc,
    #[serde(default)]
    pub exit: ExitDoc,
    #[serde(default)]
    pub steps: Vec<StepDoc>,
}

fn first_version() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryDoc {
    /// A `track` of this event enters the person (besides `enter_journey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<EventName>,
    /// `"never"`, or a duration: the person may enter again that long after their last run ended.
    #[serde(default = "never")]
    pub reentry: String,
}

fn never() -> String {
    "never".into()
}

impl Default for EntryDoc {
    fn default() -> Self {
        Self { event: None, reentry: never() }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExitDoc {
    /// A `track` of one of these ends the person's run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventName>,
}

/// One step as written: exactly one of `send`, `wait`, `wait_until`, `branch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDoc {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<SendDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<BranchDoc>,
    /// Where to go after a send or a wait: a step's id or `end`; absent: the step below
    /// (after the last one: the end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendDoc {
    pub template: TemplateName,
    /// Candidates in order; absent: the template's own order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<Channel>>,
}

/// A branch: on a send step's message (`on`, `status`, `within`) or on the person's
/// profile (`when`, a segment filter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BranchDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Filter>,
    pub yes: String,
    pub no: String,
}

// ---------------------------------------------------------------- checked form

/// Where a step leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Step(usize),
    End,
}

/// What a branch on a message waits for: delivered counts opened and clicked too,
/// opened counts clicked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engagement {
    Delivered,
    Opened,
    Clicked,
}

impl Engagement {
    fn parse(raw: &str) -> Option<Self> {
        match raw {
            "delivered" => Some(Self::Delivered),
            "opened" => Some(Self::Opened),
            "clicked" => Some(Self::Clicked),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Opened => "opened",
            Self::Clicked => "clicked",
        }
    }

    fn counts(self, status: Status) -> bool {
        match self {
            Self::Delivered => matches!(status, Status::Delivered | Status::Opened | Status::Clicked),
            Self::Opened => matches!(status, Status::Opened | Status::Clicked),
            Self::Clicked => status == Status::Clicked,
        }
    }

    /// Whether a message whose status is `status`, with these statuses in its history,
    /// reached this: a complaint after an open still counts the open.
    pub fn reached<'a>(self, status: Status, history: impl IntoIterator<Item = &'a str>) -> bool {
        self.counts(status) || history.into_iter().filter_map(Status::parse).any(|s| self.counts(s))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Send {
        template: TemplateName,
        channels: Option<Vec<Channel>>,
        next: Next,
    },
    Wait {
        span: TimeDelta,
        next: Next,
    },
    /// Until the next such local time in the person's zone (UTC when they have none).
    WaitUntil {
        at: NaiveTime,
        next: Next,
    },
    /// Decided `within` after the person reached the branch, from the ledger's status of
    /// the message step `on` (an earlier send) sent.
    OnStatus {
        on: usize,
        status: Engagement,
        within: TimeDelta,
        yes: Next,
        no: Next,
    },
    /// Decided at once, on the person's profile.
    When {
        filter: Filter,
        yes: Next,
        no: Next,
    },
}

impl Action {
    fn targets(&self) -> Vec<Next> {
        match self {
            Action::Send { next, .. } | Action::Wait { next, .. } | Action::WaitUntil { next, .. } => vec![*next],
            Action::OnStatus { yes, no, .. } | Action::When { yes, no, .. } => vec![*yes, *no],
        }
    }

    /// A step that holds the person for a while: a cycle needs one.
    fn waits(&self) -> bool {
        matches!(self, Action::Wait { .. } | Action::WaitUntil { .. } | Action::OnStatus { .. })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub id: StepId,
    pub action: Action,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reentry {
    Never,
    /// This long after the last run ended.
    After(TimeDelta),
}

/// A journey whose structure has been checked: every step known, the graph sound.
#[derive(Debug, Clone, PartialEq)]
pub struct Journey {
    pub doc: JourneyDoc,
    pub steps: Vec<Step>,
    pub reentry: Reentry,
}

impl Journey {
    /// Checks the structure of `doc` (everything but the templates and the profile
    /// attributes it names, which [`check_journeys`] checks against what exists).
    /// Every problem, one line each.
    pub fn build(doc: JourneyDoc) -> Result<Self, Vec<String>> {
        let name = doc.name.clone();
        let mut problems = Vec::new();
        let mut say = |p: String| problems.push(format!("journey {name}: {p}"));
        if doc.version == 0 {
            say("version starts at 1".into());
        }
        let reentry = match doc.entry.reentry.as_str() {
            "never" => Reentry::Never,
            raw => match parse_span(raw) {
                Ok(span) => Reentry::After(span),
                Err(e) => {
                    say(format!("entry.reentry: {e} (or \"never\")"));
                    Reentry::Never
                }
            },
        };
        if doc.steps.is_empty() {
            say("steps: a journey needs at least one step".into());
        }
        if doc.steps.len() > MAX_STEPS {
            say(format!("steps: {} steps, at most {MAX_STEPS} are allowed", doc.steps.len()));
        }
        if let Some(e) = doc.entry.event.as_ref().filter(|e| doc.exit.events.contains(e)) {
            say(format!("event {e} both enters and exits the journey"));
        }
        // Ids first, so targets can be resolved.
        let mut index: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, s) in doc.steps.iter().enumerate() {
            if let Err(e) = StepId::new(s.id.as_str()) {
                say(format!("step {i}: {e}"));
            } else if index.insert(s.id.as_str(), i).is_some() {
                say(format!("step {}: defined twice", s.id));
            }
        }
        let resolve = |from: &str, field: &str, target: &str, say: &mut dyn FnMut(String)| -> Next {
            if target == END {
                return Next::End;
            }
            match index.get(target) {
                Some(&i) => Next::Step(i),
                None => {
                    say(format!("step {from}: {field} names step {target}, which does not exist"));
                    Next::End
                }
            }
        };
        let mut steps = Vec::with_capacity(doc.steps.len());
        for (i, s) in doc.steps.iter().enumerate() {
            let id = &s.id;
            let following = if i + 1 < doc.steps.len() { Next::Step(i + 1) } else { Next::End };
            let kinds = [s.send.is_some(), s.wait.is_some(), s.wait_until.is_some(), s.branch.is_some()];
            if kinds.iter().filter(|k| **k).count() != 1 {
                say(format!("step {id}: a step is exactly one of send, wait, wait_until, branch"));
                continue;
            }
            let next = match &s.next {
                Some(_) if s.branch.is_some() => {
                    say(format!("step {id}: a branch goes on by yes and no, not next"));
                    Next::End
                }
                Some(t) => resolve(id, "next", t, &mut say),
                None => following,
            };
            let action = if let Some(send) = &s.send {
                if let Some(channels) = &send.channels {
                    let unique: BTreeSet<_> = channels.iter().collect();
                    if channels.is_empty() || unique.len() != channels.len() {
                        say(format!("step {id}: channels must list at least one channel, each once"));
                    }
                }
                Action::Send { template: send.template.clone(), channels: send.channels.clone(), next }
            } else if let Some(raw) = &s.wait {
                match parse_span(raw) {
                    Ok(span) => Action::Wait { span, next },
                    Err(e) => {
                        say(format!("step {id}: wait: {e}"));
                        continue;
                    }
                }
            } else if let Some(raw) = &s.wait_until {
                match parse_local_time(raw) {
                    Ok(at) => Action::WaitUntil { at, next },
                    Err(e) => {
                        say(format!("step {id}: wait_until: {e}"));
                        continue;
                    }
                }
            } else if let Some(b) = &s.branch {
                let yes = resolve(id, "yes", &b.yes, &mut say);
                let no = resolve(id, "no", &b.no, &mut say);
                match (&b.when, &b.on, &b.status, &b.within) {
                    (Some(filter), None, None, None) => Action::When { filter: filter.clone(), yes, no },
                    (None, Some(on), Some(status), Some(within)) => {
                        let Some(status) = Engagement::parse(status) else {
                            say(format!(
                                "step {id}: branch on status {status:?}, which is not one a message reports: \
                                 delivered, opened or clicked"
                            ));
                            continue;
                        };
                        let within = match parse_span(within) {
                            Ok(w) => w,
                            Err(e) => {
                                say(format!("step {id}: branch within: {e}"));
                                continue;
                            }
                        };
                        let Some(&on) = index.get(on.as_str()) else {
                            say(format!("step {id}: branch on step {on}, which does not exist"));
                            continue;
                        };
                        Action::OnStatus { on, status, within, yes, no }
                    }
                    _ => {
                        say(format!(
                            "step {id}: a branch is either on a message (on, status, within) or on the profile \
                             (when)"
                        ));
                        continue;
                    }
                }
            } else {
                continue;
            };
            steps.push(Step { id: StepId(id.clone()), action });
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let journey = Journey { doc, steps, reentry };
        let graph = journey.graph_problems();
        if graph.is_empty() {
            Ok(journey)
        } else {
            Err(graph.into_iter().map(|p| format!("journey {name}: {p}")).collect())
        }
    }

    /// The checks over the steps' graph: every step reachable, every cycle waits and
    /// sends nothing (a step is sent at most once per run), every branch on a message
    /// comes after the send it reads on every path.
    fn graph_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let edges: Vec<Vec<usize>> = self
            .steps
            .iter()
            .map(|s| {
                s.action
                    .targets()
                    .into_iter()
                    .filter_map(|n| if let Next::Step(i) = n { Some(i) } else { None })
                    .collect()
            })
            .collect();
        let reached = reachable(&edges, 0, None);
        for (i, s) in self.steps.iter().enumerate() {
            if !reached.contains(&i) {
                problems.push(format!("step {}: unreachable from the first step", s.id));
            }
        }
        // A cycle without a wait: a cycle among the steps that do not wait.
        let quick: Vec<Vec<usize>> = edges
            .iter()
            .enumerate()
            .map(|(i, to)| if self.steps.get(i).is_some_and(|s| s.action.waits()) { Vec::new() } else { to.clone() })
            .collect();
        if let Some(cycle) = find_cycle(&quick) {
            problems.push(format!("cycle without a wait: {}", self.path(&cycle)));
        }
        for (i, s) in self.steps.iter().enumerate() {
            if let Action::Send { .. } = s.action
                && reachable(&edges, i, None).iter().any(|&j| edges.get(j).is_some_and(|to| to.contains(&i)))
            {
                problems.push(format!(
                    "step {}: a send step in a cycle would send the same message again (each step sends once per run)",
                    s.id
                ));
            }
            if let Action::OnStatus { on, .. } = s.action {
                let on_id = self.steps.get(on).map(|s| s.id.as_str()).unwrap_or_default();
                if !matches!(self.steps.get(on).map(|s| &s.action), Some(Action::Send { .. })) {
                    problems.push(format!("step {}: branch on step {on_id}, which is not a send step", s.id));
                } else if on == i || reachable(&edges, 0, Some(on)).contains(&i) {
                    problems.push(format!(
                        "step {}: branch on step {on_id}, which is not an earlier send on every way to it",
                        s.id
                    ));
                }
            }
        }
        problems
    }

    fn path(&self, cycle: &[usize]) -> String {
        let mut names: Vec<&str> = cycle.iter().filter_map(|&i| self.steps.get(i).map(|s| s.id.as_str())).collect();
        if let Some(first) = names.first().copied() {
            names.push(first);
        }
        names.join(" -> ")
    }

    pub fn name(&self) -> &JourneyName {
        &self.doc.name
    }

    pub fn version(&self) -> u32 {
        self.doc.version
    }

    pub fn step(&self, id: &StepId) -> Option<(usize, &Step)> {
        self.steps.iter().enumerate().find(|(_, s)| s.id == *id)
    }

    /// The templates the journey sends.
    pub fn templates(&self) -> impl Iterator<Item = &TemplateName> {
        self.steps.iter().filter_map(|s| match &s.action {
            Action::Send { template, .. } => Some(template),
            _ => None,
        })
    }

    /// Whether a `track` of `event` enters a person.
    pub fn enters_on(&self, event: &EventName) -> bool {
        self.doc.entry.event.as_ref() == Some(event)
    }

    /// Whether a `track` of `event` ends a run.
    pub fn exits_on(&self, event: &EventName) -> bool {
        self.doc.exit.events.contains(event)
    }

    /// The channels the journey may send on (every channel when a send leaves them to
    /// its template).
    pub fn channels(&self) -> BTreeSet<Channel> {
        let mut all = BTreeSet::new();
        for s in &self.steps {
            if let Action::Send { channels, .. } = &s.action {
                match channels {
                    Some(c) => all.extend(c.iter().copied()),
                    None => all.extend(Channel::ALL),
                }
            }
        }
        all
    }
}

/// The steps reachable from `from` (itself included) without passing `avoid`.
fn reachable(edges: &[Vec<usize>], from: usize, avoid: Option<usize>) -> BTreeSet<usize> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from];
    while let Some(i) = stack.pop() {
        if Some(i) == avoid || !seen.insert(i) {
            continue;
        }
        stack.extend(edges.get(i).into_iter().flatten().copied());
    }
    seen
}

/// A cycle in the graph, as the steps along it, if there is one.
fn find_cycle(edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    // 0: not visited, 1: on the current path, 2: done.
    fn visit(i: usize, edges: &[Vec<usize>], state: &mut [u8], path: &mut Vec<usize>) -> Option<Vec<usize>> {
        match state.get(i).copied() {
            Some(1) => {
                let start = path.iter().position(|&p| p == i).unwrap_or_default();
                return Some(path.get(start..).unwrap_or_default().to_vec());
            }
            Some(0) => {}
            _ => return None,
        }
        if let Some(s) = state.get_mut(i) {
            *s = 1;
        }
        path.push(i);
        for &j in edges.get(i).into_iter().flatten() {
            if let Some(c) = visit(j, edges, state, path) {
                return Some(c);
            }
        }
        path.pop();
        if let Some(s) = state.get_mut(i) {
            *s = 2;
        }
        None
    }
    let mut state = vec![0u8; edges.len()];
    (0..edges.len()).find_map(|i| visit(i, edges, &mut state, &mut Vec::new()))
}

/// Checks a set of journeys as `herald journeys check` and `push` do: each one's
/// structure, names unique, every template it sends known (`templates`), every profile
/// attribute its branches read declared (`schema`). One line per problem.
pub fn check_journeys(
    docs: &[JourneyDoc],
    templates: impl Fn(&TemplateName) -> bool,
    schema: &ProfileSchema,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    for d in docs {
        if !names.insert(&d.name) {
            problems.push(format!("journey {}: defined twice", d.name));
        }
    }
    for d in docs {
        let journey = match Journey::build(d.clone()) {
            Ok(j) => j,
            Err(p) => {
                problems.extend(p);
                continue;
            }
        };
        for s in &journey.steps {
            match &s.action {
                Action::Send { template, .. } if !templates(template) => problems.push(format!(
                    "journey {}: step {}: sends template {template}, which does not exist",
                    d.name, s.id
                )),
                Action::When { filter, .. } => {
                    if let Err(e) = filter.validate(schema) {
                        problems.push(format!("journey {}: step {}: branch when: {e}", d.name, s.id));
                    }
                }
                _ => {}
            }
        }
    }
    problems
}

// ---------------------------------------------------------------- one person's run

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Active,
    Completed,
    Exited,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Active => "active",
            RunStatus::Completed => "completed",
            RunStatus::Exited => "exited",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "active" => Some(Self::Active),
            "completed" => Some(Self::Completed),
            "exited" => Some(Self::Exited),
            _ => None,
        }
    }
}

/// One person's position in one journey (the item of the journeys table): the truth that
/// jobs, which are only wake-ups, are judged against.
#[derive(Debug, Clone, PartialEq)]
pub struct RunState {
    pub journey: JourneyName,
    pub recipient: RecipientId,
    /// The version the person entered, and stays on.
    pub version: u32,
    /// Counts the person's runs through this journey, from 1.
    pub run: u32,
    /// Counts the moves of this run, from 0: a job acts only on the move it was made for.
    pub seq: u32,
    /// The step the person is at (`None` once the run ended).
    pub step: Option<StepId>,
    pub status: RunStatus,
    /// Why the run ended early: `event:<name>`, `unsubscribed`, ...
    pub exit_reason: Option<String>,
    /// When the current step acts.
    pub due: Option<DateTime<Utc>>,
    pub entered_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// The SQS message id that made the last move.
    pub advanced_by: Option<String>,
    /// The key of the request that started this run.
    pub entry_key: String,
    /// The entry's data, given to every send.
    pub data: Map<String, Value>,
}

/// A wake-up for one step of one run (the body of a journey queue message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JourneyJob {
    pub journey: JourneyName,
    pub version: u32,
    pub recipient: RecipientId,
    pub run: u32,
    pub seq: u32,
    pub step: StepId,
}

impl JourneyJob {
    /// The job for where `state` stands, if the run is active.
    pub fn for_state(state: &RunState) -> Option<Self> {
        let step = state.step.clone().filter(|_| state.status == RunStatus::Active)?;
        Some(Self {
            journey: state.journey.clone(),
            version: state.version,
            recipient: state.recipient.clone(),
            run: state.run,
            seq: state.seq,
            step,
        })
    }

    /// The schedule's id of this job: one per move, so a repeat overwrites itself.
    pub fn schedule_id(&self) -> String {
        format!("journey:{}:{}:{}:{}", self.journey, self.recipient, self.run, self.seq)
    }
}

/// What a job may do, judged against the state.
#[derive(Debug, Clone, PartialEq)]
pub enum JobVerdict {
    /// The state is at this job's move and its time has come: perform the step.
    Perform,
    /// The state is at this job's move, due later: wake up again then.
    Early { due: DateTime<Utc> },
    /// This very SQS message made the move already (it failed or crashed after): do
    /// again what follows a move (its send, the next job), never the move.
    Redo,
    /// Another copy acted, the run moved on, ended, or is another run: nothing to do.
    Drop(&'static str),
}

/// Judges a job (carried by SQS message `message_id`) against the person's state.
pub fn judge(job: &JourneyJob, state: Option<&RunState>, message_id: &str, now: DateTime<Utc>) -> JobVerdict {
    let Some(state) = state else { return JobVerdict::Drop("no_state") };
    if state.run != job.run || state.version != job.version {
        return JobVerdict::Drop("other_run");
    }
    if state.seq == job.seq.saturating_add(1) && state.advanced_by.as_deref() == Some(message_id) {
        return JobVerdict::Redo;
    }
    if state.status != RunStatus::Active {
        return JobVerdict::Drop("ended");
    }
    if state.seq != job.seq || state.step.as_ref() != Some(&job.step) {
        return JobVerdict::Drop("moved_on");
    }
    match state.due {
        Some(due) if due > now => JobVerdict::Early { due },
        _ => JobVerdict::Perform,
    }
}

/// A move of the state: to a step (acting at `due`) or to the end.
#[derive(Debug, Clone, PartialEq)]
pub struct Move {
    pub to: Option<StepId>,
    pub due: Option<DateTime<Utc>>,
    /// Set when the move ends the run early.
    pub exit_reason: Option<String>,
}

impl Move {
    pub fn status(&self) -> RunStatus {
        match (&self.to, &self.exit_reason) {
            (Some(_), _) => RunStatus::Active,
            (None, None) => RunStatus::Completed,
            (None, Some(_)) => RunStatus::Exited,
        }
    }

    pub fn exit(reason: impl Into<String>) -> Self {
        Self { to: None, due: None, exit_reason: Some(reason.into()) }
    }
}

/// What a performed step does: maybe a send, then a move.
#[derive(Debug, Clone, PartialEq)]
pub struct Performed {
    pub send: Option<NotifyRequest>,
    pub next: Move,
}

/// What the journeys function knows when it performs a step.
pub struct Facts<'a> {
    /// The person, when their profile exists.
    pub recipient: Option<&'a Recipient>,
    /// The message a branch on status reads: its status and its history's statuses.
    pub message: Option<(Status, Vec<String>)>,
}

impl Journey {
    /// Where a person arriving at `next` at `now` goes (`tz`: their zone, for local times).
    pub fn arrive(&self, next: Next, now: DateTime<Utc>, tz: Option<chrono_tz::Tz>) -> Move {
        let Next::Step(i) = next else { return Move { to: None, due: None, exit_reason: None } };
        let Some(step) = self.steps.get(i) else { return Move { to: None, due: None, exit_reason: None } };
        let due = match &step.action {
            Action::Send { .. } | Action::When { .. } => now,
            Action::Wait { span, .. } => now + *span,
            Action::WaitUntil { at, .. } => next_local_time(now, tz.unwrap_or(chrono_tz::UTC), *at),
            Action::OnStatus { within, .. } => now + *within,
        };
        Move { to: Some(step.id.clone()), due: Some(due), exit_reason: None }
    }

    /// The first move of a run.
    pub fn start(&self, now: DateTime<Utc>, tz: Option<chrono_tz::Tz>) -> Move {
        self.arrive(Next::Step(0), now, tz)
    }

    /// The step `id` a branch on status reads the message of, if it is one.
    pub fn reads_message_of(&self, id: &StepId) -> Option<&StepId> {
        match self.step(id).map(|(_, s)| &s.action) {
            Some(Action::OnStatus { on, .. }) => self.steps.get(*on).map(|s| &s.id),
            _ => None,
        }
    }

    /// Whether the person withdrew consent for the journey's topic on every channel it
    /// sends on: their run ends (`unsubscribed`).
    pub fn unsubscribed(&self, recipient: &Recipient) -> bool {
        let channels = self.channels();
        !channels.is_empty()
            && channels.iter().all(|c| {
                recipient.consent_verdict(*c, self.doc.topic.as_ref(), self.doc.kind) == ConsentVerdict::OptedOut
            })
    }

    /// The notify the step `state` is at sends, if it is a send step: an ordinary
    /// request keyed `journey:<name>:<recipient>:<run>:<step>`, of the journey's kind,
    /// topic and campaign, with the run's entry data.
    pub fn send_of(&self, state: &RunState) -> Option<NotifyRequest> {
        let (_, step) = self.step(state.step.as_ref()?)?;
        let Action::Send { template, channels, .. } = &step.action else { return None };
        Some(NotifyRequest {
            type_tag: None,
            idempotency_key: step_key(&self.doc.name, &state.recipient, state.run, &step.id)?,
            recipient: state.recipient.clone(),
            template: template.clone(),
            data: state.data.clone(),
            topic: self.doc.topic.clone(),
            kind: self.doc.kind,
            channels: channels.clone(),
            mode: Default::default(),
            send_at: None,
            expires_at: None,
            campaign: self.doc.campaign.clone(),
            digest: None,
            test: false,
        })
    }

    /// Performs step `id` of `state`'s run at `now`: the send it makes (an ordinary notify,
    /// keyed by run and step, through ingest and eligibility) and where the person goes.
    /// A person whose profile is gone exits (`no_recipient`); one who withdrew consent on
    /// every channel of the journey exits (`unsubscribed`).
    pub fn perform(&self, state: &RunState, facts: &Facts<'_>, now: DateTime<Utc>) -> Performed {
        let exit = |reason: &str| Performed { send: None, next: Move::exit(reason) };
        let Some((_, step)) = state.step.as_ref().and_then(|id| self.step(id)) else {
            return exit("unknown_step");
        };
        let Some(recipient) = facts.recipient else { return exit("no_recipient") };
        if self.unsubscribed(recipient) {
            return exit("unsubscribed");
        }
        if state.seq >= MAX_MOVES {
            return exit("too_many_moves");
        }
        let tz = recipient.timezone.map(|t| t.0);
        let (send, next) = match &step.action {
            Action::Send { next, .. } => match self.send_of(state) {
                Some(send) => (Some(send), *next),
                None => return exit("key_too_long"),
            },
            Action::Wait { next, .. } | Action::WaitUntil { next, .. } => (None, *next),
            Action::OnStatus { status, yes, no, .. } => {
                let reached = facts
                    .message
                    .as_ref()
                    .is_some_and(|(s, history)| status.reached(*s, history.iter().map(String::as_str)));
                (None, if reached { *yes } else { *no })
            }
            Action::When { filter, yes, no } => (None, if filter.matches(recipient, now) { *yes } else { *no }),
        };
        Performed { send, next: self.arrive(next, now, tz) }
    }
}

/// SQS's longest delay: a job due later waits in the schedule table (or is delayed again).
pub const MAX_QUEUE_DELAY_SECS: u32 = 900;

/// The SQS delay of a job due at `due` (at most [`MAX_QUEUE_DELAY_SECS`]; a job woken
/// early is delayed again).
pub fn queue_delay(due: Option<DateTime<Utc>>, now: DateTime<Utc>) -> u32 {
    let secs = due.map_or(0, |d| (d - now).num_seconds().max(0));
    u32::try_from(secs).unwrap_or(u32::MAX).min(MAX_QUEUE_DELAY_SECS)
}

impl Journey {
    /// Until when an ended run is kept: for good (`None`) when the journey is never
    /// entered again (the state is what refuses a second entry), else past the re-entry
    /// period and `retention`, whichever is longer.
    pub fn keep_until(&self, ended: DateTime<Utc>, retention: TimeDelta) -> Option<DateTime<Utc>> {
        match self.reentry {
            Reentry::Never => None,
            Reentry::After(period) => Some(ended + period.max(retention)),
        }
    }

    /// Whether the first step waits for a local time (and so needs the person's zone).
    pub fn starts_with_local_time(&self) -> bool {
        matches!(self.steps.first().map(|s| &s.action), Some(Action::WaitUntil { .. }))
    }
}

/// The idempotency key of the message step `step` sends in run `run`:
/// `journey:<name>:<recipient>:<run>:<step>` (ingest dedupes it; a branch finds the
/// message again by it).
pub fn step_key(journey: &JourneyName, recipient: &RecipientId, run: u32, step: &StepId) -> Option<IdempotencyKey> {
    IdempotencyKey::new(format!("journey:{journey}:{recipient}:{run}:{step}")).ok()
}

/// The ledger id of that message.
pub fn step_message(journey: &JourneyName, recipient: &RecipientId, run: u32, step: &StepId) -> Option<MessageId> {
    step_key(journey, recipient, run, step).map(|k| MessageId::for_key(&k))
}

/// What an entry request finds.
#[derive(Debug, Clone, PartialEq)]
pub enum EntryVerdict {
    /// Start run `run`.
    Enter { run: u32 },
    /// This very entry started the run that is active and has not moved yet: queue its
    /// first job again (the first hand-off may have failed).
    Again,
    /// Not entered, and why (`active`, `reentry_never`, `reentry_too_soon`, `duplicate`).
    Refuse(&'static str),
}

/// Whether the entry keyed `key` starts a run, given the person's state in that journey.
pub fn judge_entry(journey: &Journey, state: Option<&RunState>, key: &str, now: DateTime<Utc>) -> EntryVerdict {
    let Some(state) = state else { return EntryVerdict::Enter { run: 1 } };
    if state.entry_key == key {
        return if state.status == RunStatus::Active && state.seq == 0 {
            EntryVerdict::Again
        } else {
            EntryVerdict::Refuse("duplicate")
        };
    }
    if state.status == RunStatus::Active {
        return EntryVerdict::Refuse("active");
    }
    match journey.reentry {
        Reentry::Never => EntryVerdict::Refuse("reentry_never"),
        Reentry::After(span) => match state.ended_at {
            Some(ended) if ended + span > now => EntryVerdict::Refuse("reentry_too_soon"),
            _ => EntryVerdict::Enter { run: state.run.saturating_add(1) },
        },
    }
}

/// The state of a new run.
pub fn new_run(
    journey: &Journey,
    recipient: &RecipientId,
    run: u32,
    key: &str,
    data: Map<String, Value>,
    now: DateTime<Utc>,
    tz: Option<chrono_tz::Tz>,
) -> RunState {
    let first = journey.start(now, tz);
    RunState {
        journey: journey.name().clone(),
        recipient: recipient.clone(),
        version: journey.version(),
        run,
        seq: 0,
        status: first.status(),
        step: first.to,
        exit_reason: None,
        due: first.due,
        entered_at: now,
        ended_at: None,
        advanced_by: None,
        entry_key: key.to_owned(),
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_the_digest_durations_and_weeks_within_bounds() {
        assert_eq!(parse_span("90s"), Ok(TimeDelta::seconds(90)));
        assert_eq!(parse_span("2w"), Ok(TimeDelta::days(14)));
        assert_eq!(parse_span("52w"), Ok(TimeDelta::days(364)));
        for bad in ["", "w", "0s", "1y", "10", "-1d", "1.5h", "53w", "367d"] {
            assert!(parse_span(bad).is_err(), "{bad:?} is refused");
        }
    }
    use crate::contract::{ConsentSource, TimeZone};
    use crate::domain::recipient::{ConsentScope, ConsentState};

    const ONBOARDING: &str = r#"
name = "onboarding"
version = 1
kind = "marketing"
topic = "onboarding"
[entry]
event = "signed_up"
[exit]
events = ["purchase"]
[[steps]]
id = "welcome"
send = { template = "welcome", channels = ["push"] }
[[steps]]
id = "opened?"
branch = { on = "welcome", status = "opened", within = "1d", yes = "end", no = "nudge" }
[[steps]]
id = "nudge"
send = { template = "welcome_nudge", channels = ["email"] }
"#;

    fn doc(text: &str) -> JourneyDoc {
        toml::from_str(text).unwrap()
    }

    fn onboarding() -> Journey {
        Journey::build(doc(ONBOARDING)).unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        crate::contract::instant::parse(s).unwrap()
    }

    /// The onboarding journey with its steps replaced.
    fn with_steps(steps: &str) -> String {
        let head = ONBOARDING.split("[[steps]]").next().unwrap();
        format!("{head}{steps}")
    }

    #[test]
    fn the_example_builds_and_sends_what_it_says() {
        let j = onboarding();
        assert_eq!(j.steps.len(), 3);
        assert_eq!(j.reentry, Reentry::Never);
        assert_eq!(j.templates().map(TemplateName::as_str).collect::<Vec<_>>(), ["welcome", "welcome_nudge"]);
        assert_eq!(j.channels(), BTreeSet::from([Channel::Push, Channel::Email]));
        assert!(j.enters_on(&EventName::new("signed_up").unwrap()));
        assert!(j.exits_on(&EventName::new("purchase").unwrap()));
        assert_eq!(
            j.steps.get(1).map(|s| &s.action),
            Some(&Action::OnStatus {
                on: 0,
                status: Engagement::Opened,
                within: TimeDelta::days(1),
                yes: Next::End,
                no: Next::Step(2)
            })
        );
        // Stored as JSON and read back, it is the same journey.
        let json = serde_json::to_string(&j.doc).unwrap();
        assert_eq!(Journey::build(serde_json::from_str(&json).unwrap()).unwrap(), j);
    }

    #[test]
    fn bad_definitions_are_refused_with_the_reason() {
        let cases: &[(&str, &str)] = &[
            (
                r#"[[steps]]
id = "a"
send = { template = "welcome" }
next = "b"
"#,
                "step a: next names step b, which does not exist",
            ),
            (
                r#"[[steps]]
id = "a"
send = { template = "welcome" }
[[steps]]
id = "b"
branch = { on = "a", status = "bounced", within = "1h", yes = "end", no = "end" }
"#,
                "branch on status \"bounced\", which is not one a message reports",
            ),
            (
                r#"[[steps]]
id = "a"
wait = "1h"
[[steps]]
id = "b"
branch = { on = "a", status = "opened", within = "1h", yes = "end", no = "end" }
"#,
                "step b: branch on step a, which is not a send step",
            ),
            (
                r#"[[steps]]
id = "b"
branch = { on = "a", status = "opened", within = "1h", yes = "end", no = "a" }
[[steps]]
id = "a"
send = { template = "welcome" }
"#,
                "step b: branch on step a, which is not an earlier send on every way to it",
            ),
            (
                r#"[[steps]]
id = "start"
branch = { when = { field = "locale", equals = "fr" }, yes = "a", no = "c" }
[[steps]]
id = "a"
send = { template = "welcome" }
next = "c"
[[steps]]
id = "c"
branch = { on = "a", status = "opened", within = "1h", yes = "end", no = "end" }
"#,
                "step c: branch on step a, which is not an earlier send on every way to it",
            ),
            (
                r#"[[steps]]
id = "a"
branch = { when = { field = "locale", equals = "fr" }, yes = "b", no = "end" }
[[steps]]
id = "b"
branch = { when = { field = "locale", equals = "de" }, yes = "a", no = "end" }
"#,
                "cycle without a wait: a -> b -> a",
            ),
            (
                r#"[[steps]]
id = "a"
wait = "1d"
[[steps]]
id = "b"
send = { template = "welcome" }
next = "a"
"#,
                "step b: a send step in a cycle would send the same message again",
            ),
            (
                r#"[[steps]]
id = "a"
send = { template = "welcome" }
next = "end"
[[steps]]
id = "b"
send = { template = "welcome_nudge" }
"#,
                "step b: unreachable from the first step",
            ),
            (
                r#"[[steps]]
id = "a"
send = { template = "welcome" }
[[steps]]
id = "a"
wait = "1h"
"#,
                "step a: defined twice",
            ),
            (
                r#"[[steps]]
id = "a"
send = { template = "welcome" }
wait = "1h"
"#,
                "step a: a step is exactly one of send, wait, wait_until, branch",
            ),
            (
                r#"[[steps]]
id = "end"
wait = "1h"
"#,
                "step id end is reserved",
            ),
            (
                r#"[[steps]]
id = "a"
wait = "90x"
"#,
                "step a: wait: \"90x\" is not a duration",
            ),
            (
                r#"[[steps]]
id = "a"
wait_until = "25:00"
"#,
                "step a: wait_until: \"25:00\" is not a local time",
            ),
            (
                r#"[[steps]]
id = "a"
branch = { on = "x", when = { field = "locale", equals = "fr" }, yes = "end", no = "end" }
"#,
                "a branch is either on a message (on, status, within) or on the profile (when)",
            ),
            (
                r#"[[steps]]
id = "a"
send = { template = "welcome", channels = [] }
"#,
                "step a: channels must list at least one channel",
            ),
            ("", "a journey needs at least one step"),
        ];
        for (steps, want) in cases {
            let text = with_steps(steps);
            let problems = match toml::from_str::<JourneyDoc>(&text) {
                Ok(d) => Journey::build(d).err().unwrap_or_default(),
                Err(e) => vec![e.to_string()],
            };
            assert!(problems.iter().any(|p| p.contains(want)), "{want}\n{problems:#?}");
            assert!(problems.iter().all(|p| p.starts_with("journey onboarding: ")), "{problems:#?}");
        }
        let both = ONBOARDING.replace("events = [\"purchase\"]", "events = [\"signed_up\"]");
        assert!(Journey::build(doc(&both)).unwrap_err().iter().any(|p| p.contains("both enters and exits")));
        let bad_reentry = ONBOARDING.replace("event = \"signed_up\"", "event = \"signed_up\"\nreentry = \"sometimes\"");
        assert!(Journey::build(doc(&bad_reentry)).unwrap_err().iter().any(|p| p.contains("entry.reentry")));
        // A cycle through a wait, sending nothing, is fine.
        let waits = with_steps(
            r#"[[steps]]
id = "pro?"
branch = { when = { field = "locale", equals = "fr" }, yes = "end", no = "later" }
[[steps]]
id = "later"
wait = "1d"
next = "pro?"
"#,
        );
        assert!(Journey::build(doc(&waits)).is_ok());
    }

    #[test]
    fn check_names_unknown_templates_and_undeclared_attributes() {
        let known = |t: &TemplateName| t.as_str() == "welcome";
        let problems = check_journeys(&[doc(ONBOARDING)], known, &ProfileSchema::default());
        assert_eq!(problems, ["journey onboarding: step nudge: sends template welcome_nudge, which does not exist"]);
        let profile = with_steps(
            r#"[[steps]]
id = "pro?"
branch = { when = { field = "attributes.plan", equals = "pro" }, yes = "end", no = "w" }
[[steps]]
id = "w"
send = { template = "welcome" }
"#,
        );
        let problems = check_journeys(&[doc(&profile), doc(&profile)], known, &ProfileSchema::default());
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert_eq!(problems.first().map(String::as_str), Some("journey onboarding: defined twice"));
        assert!(problems.iter().any(|p| p.contains("attributes.plan is not declared")), "{problems:#?}");
    }

    #[test]
    fn spans_and_local_times() {
        for (raw, secs) in [("30s", 30), ("15m", 900), ("2h", 7200), ("1d", 86_400), ("1w", 604_800)] {
            assert_eq!(parse_span(raw), Ok(TimeDelta::seconds(secs)), "{raw}");
        }
        for bad in ["", "s", "0s", "1", "-1d", "1.5h", "367d", "1 d", "9999999999d"] {
            assert!(parse_span(bad).is_err(), "{bad}");
        }
        let paris: chrono_tz::Tz = "Europe/Paris".parse().unwrap();
        let nine = NaiveTime::from_hms_opt(9, 0, 0).unwrap();
        assert_eq!(next_local_time(at("2026-03-02T07:00:00Z"), paris, nine), at("2026-03-02T08:00:00Z"));
        assert_eq!(next_local_time(at("2026-03-02T08:00:00Z"), paris, nine), at("2026-03-03T08:00:00Z"));
        // 02:30 does not exist in Paris on 2026-03-29: an hour later.
        let gap = NaiveTime::from_hms_opt(2, 30, 0).unwrap();
        assert_eq!(next_local_time(at("2026-03-28T23:00:00Z"), paris, gap), at("2026-03-29T01:30:00Z"));
    }

    fn person(opted_out: &[Channel]) -> Recipient {
        let mut r = Recipient { id: Some(RecipientId::new("u-1").unwrap()), ..Recipient::default() };
        for c in opted_out {
            r.consents.insert(
                ConsentScope { channel: *c, topic: Some(Topic::new("onboarding").unwrap()) },
                ConsentState { granted: false, source: ConsentSource::new("t").unwrap(), at: DateTime::UNIX_EPOCH },
            );
        }
        r
    }

    fn entered(j: &Journey, now: DateTime<Utc>) -> RunState {
        new_run(j, &RecipientId::new("u-1").unwrap(), 1, "k-1", Map::new(), now, None)
    }

    #[test]
    fn a_run_sends_then_branches_on_what_the_message_did() {
        let j = onboarding();
        let t0 = at("2026-03-02T10:00:00Z");
        let mut state = entered(&j, t0);
        assert_eq!((state.step.as_ref().map(StepId::as_str), state.due, state.seq), (Some("welcome"), Some(t0), 0));
        let r = person(&[]);
        let facts = Facts { recipient: Some(&r), message: None };
        let done = j.perform(&state, &facts, t0);
        let send = done.send.unwrap();
        assert_eq!(send.idempotency_key.as_str(), "journey:onboarding:u-1:1:welcome");
        assert_eq!(
            (send.template.as_str(), send.kind, send.channels),
            ("welcome", Kind::Marketing, Some(vec![Channel::Push]))
        );
        assert_eq!(send.topic.map(|t| t.to_string()).as_deref(), Some("onboarding"));
        assert_eq!(done.next.to.as_ref().map(StepId::as_str), Some("opened?"));
        assert_eq!(done.next.due, Some(t0 + TimeDelta::days(1)), "the branch waits `within`");
        state.step = done.next.to;
        state.due = done.next.due;
        state.seq = 1;
        assert_eq!(j.reads_message_of(&StepId::new("opened?").unwrap()).map(StepId::as_str), Some("welcome"));
        let later = t0 + TimeDelta::days(1);
        let branch = |status: Status, history: &[&str]| {
            let facts =
                Facts { recipient: Some(&r), message: Some((status, history.iter().map(|h| h.to_string()).collect())) };
            j.perform(&state, &facts, later).next.to.map(|s| s.to_string())
        };
        assert_eq!(branch(Status::Opened, &[]), None, "opened: the end");
        assert_eq!(branch(Status::Clicked, &[]), None, "clicked counts as opened");
        assert_eq!(branch(Status::Complained, &["sent", "opened", "complained"]), None, "an open before a complaint");
        assert_eq!(branch(Status::Delivered, &["sent", "delivered"]).as_deref(), Some("nudge"));
        assert_eq!(branch(Status::Suppressed, &[]).as_deref(), Some("nudge"));
        let none = Facts { recipient: Some(&r), message: None };
        assert_eq!(j.perform(&state, &none, later).next.to.map(|s| s.to_string()).as_deref(), Some("nudge"));
        let ended = j.perform(&State::at(&state, "nudge", 2), &none, later);
        assert!(ended.send.is_some());
        assert_eq!((ended.next.status(), ended.next.to), (RunStatus::Completed, None));
    }

    struct State;
    impl State {
        fn at(s: &RunState, step: &str, seq: u32) -> RunState {
            RunState { step: Some(StepId::new(step).unwrap()), seq, ..s.clone() }
        }
    }

    #[test]
    fn exits_when_unsubscribed_everywhere_or_erased() {
        let j = onboarding();
        let t0 = at("2026-03-02T10:00:00Z");
        let state = entered(&j, t0);
        let partly = person(&[Channel::Push]);
        assert!(j.perform(&state, &Facts { recipient: Some(&partly), message: None }, t0).send.is_some());
        let gone = person(&[Channel::Push, Channel::Email]);
        let out = j.perform(&state, &Facts { recipient: Some(&gone), message: None }, t0);
        assert_eq!((out.send, out.next.clone()), (None, Move::exit("unsubscribed")));
        assert_eq!(out.next.status(), RunStatus::Exited);
        let out = j.perform(&state, &Facts { recipient: None, message: None }, t0);
        assert_eq!(out.next.exit_reason.as_deref(), Some("no_recipient"));
    }

    #[test]
    fn waits_and_profile_branches_move_at_their_time() {
        let text = with_steps(
            r#"[[steps]]
id = "fr?"
branch = { when = { field = "locale", equals = "fr" }, yes = "morning", no = "pause" }
[[steps]]
id = "pause"
wait = "2h"
next = "end"
[[steps]]
id = "morning"
wait_until = "09:00"
"#,
        );
        let j = Journey::build(doc(&text)).unwrap();
        let t0 = at("2026-03-02T10:00:00Z");
        let state = entered(&j, t0);
        let mut fr = person(&[]);
        fr.locale = Some("fr".to_owned().try_into().unwrap());
        fr.timezone = Some(TimeZone("Europe/Paris".parse().unwrap()));
        let out = j.perform(&state, &Facts { recipient: Some(&fr), message: None }, t0);
        assert_eq!(out.next.to.as_ref().map(StepId::as_str), Some("morning"));
        assert_eq!(out.next.due, Some(at("2026-03-03T08:00:00Z")), "09:00 in Paris, the next day");
        let other = person(&[]);
        let out = j.perform(&state, &Facts { recipient: Some(&other), message: None }, t0);
        assert_eq!(
            (out.next.to.as_ref().map(StepId::as_str), out.next.due),
            (Some("pause"), Some(t0 + TimeDelta::hours(2)))
        );
        let paused = State::at(&state, "pause", 1);
        let out = j.perform(&paused, &Facts { recipient: Some(&other), message: None }, t0 + TimeDelta::hours(2));
        assert_eq!((out.send, out.next.status()), (None, RunStatus::Completed));
    }

    #[test]
    fn a_job_acts_once_on_its_own_move() {
        let j = onboarding();
        let t0 = at("2026-03-02T10:00:00Z");
        let state = entered(&j, t0);
        let job = JourneyJob::for_state(&state).unwrap();
        assert_eq!(judge(&job, Some(&state), "m-1", t0), JobVerdict::Perform);
        assert_eq!(judge(&job, None, "m-1", t0), JobVerdict::Drop("no_state"));
        let early = RunState { due: Some(t0 + TimeDelta::hours(1)), ..state.clone() };
        assert_eq!(judge(&job, Some(&early), "m-1", t0), JobVerdict::Early { due: t0 + TimeDelta::hours(1) });
        // m-1 made the move: its redelivery redoes what follows; any other copy drops.
        let moved =
            RunState { seq: 1, step: StepId::new("opened?").ok(), advanced_by: Some("m-1".into()), ..state.clone() };
        assert_eq!(judge(&job, Some(&moved), "m-1", t0), JobVerdict::Redo);
        assert_eq!(judge(&job, Some(&moved), "m-2", t0), JobVerdict::Drop("moved_on"));
        let ended = RunState { status: RunStatus::Exited, step: None, seq: 1, advanced_by: None, ..state.clone() };
        assert_eq!(judge(&job, Some(&ended), "m-1", t0), JobVerdict::Drop("ended"));
        let next_run = RunState { run: 2, ..state.clone() };
        assert_eq!(judge(&job, Some(&next_run), "m-1", t0), JobVerdict::Drop("other_run"));
        let v2 = RunState { version: 2, ..state.clone() };
        assert_eq!(judge(&job, Some(&v2), "m-1", t0), JobVerdict::Drop("other_run"));
        let past_limit = RunState { seq: MAX_MOVES, ..state.clone() };
        let r = person(&[]);
        let out = j.perform(&past_limit, &Facts { recipient: Some(&r), message: None }, t0);
        assert_eq!(out.next.exit_reason.as_deref(), Some("too_many_moves"));
    }

    #[test]
    fn entry_follows_the_reentry_rule_and_its_key() {
        let never = onboarding();
        let t0 = at("2026-03-02T10:00:00Z");
        assert_eq!(judge_entry(&never, None, "k-1", t0), EntryVerdict::Enter { run: 1 });
        let active = entered(&never, t0);
        assert_eq!(judge_entry(&never, Some(&active), "k-1", t0), EntryVerdict::Again);
        assert_eq!(judge_entry(&never, Some(&active), "k-2", t0), EntryVerdict::Refuse("active"));
        let moved = RunState { seq: 1, ..active.clone() };
        assert_eq!(judge_entry(&never, Some(&moved), "k-1", t0), EntryVerdict::Refuse("duplicate"));
        let done = RunState { status: RunStatus::Completed, step: None, ended_at: Some(t0), ..active.clone() };
        assert_eq!(judge_entry(&never, Some(&done), "k-2", t0), EntryVerdict::Refuse("reentry_never"));
        let weekly = Journey::build(doc(
            &ONBOARDING.replace("event = \"signed_up\"", "event = \"signed_up\"\nreentry = \"7d\"")
        ))
        .unwrap();
        assert_eq!(weekly.reentry, Reentry::After(TimeDelta::days(7)));
        let soon = t0 + TimeDelta::days(6);
        assert_eq!(judge_entry(&weekly, Some(&done), "k-2", soon), EntryVerdict::Refuse("reentry_too_soon"));
        assert_eq!(judge_entry(&weekly, Some(&done), "k-2", t0 + TimeDelta::days(7)), EntryVerdict::Enter { run: 2 });
        assert_eq!(
            judge_entry(&weekly, Some(&done), "k-1", t0 + TimeDelta::days(8)),
            EntryVerdict::Refuse("duplicate")
        );
    }

    #[test]
    fn names_and_keys() {
        assert!(JourneyName::new("onboarding").is_ok());
        for bad in ["", "has space", "a#b", "a?b", &"a".repeat(65)] {
            assert!(JourneyName::new(bad).is_err(), "{bad}");
        }
        assert!(StepId::new("opened?").is_ok());
        assert!(StepId::new("a".repeat(33)).is_err());
        let longest = step_key(
            &JourneyName::new("j".repeat(64)).unwrap(),
            &RecipientId::new("r".repeat(128)).unwrap(),
            u32::MAX,
            &StepId::new("s".repeat(32)).unwrap(),
        );
        assert!(longest.is_some(), "the longest names still make a key");
        let id = step_message(
            &JourneyName::new("onboarding").unwrap(),
            &RecipientId::new("u-1").unwrap(),
            1,
            &StepId::new("welcome").unwrap(),
        );
        assert_eq!(id, Some(MessageId::for_key(&IdempotencyKey::new("journey:onboarding:u-1:1:welcome").unwrap())));
    }
}
