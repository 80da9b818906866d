//! Segments: who a broadcast is for. A segment (`segments/<name>.toml`, pushed to the
//! templates table like campaigns) is a filter over the person's profile attributes and
//! Herald's own facts about them, the channels wanted, an optional consent topic, and an
//! optional other segment whose members are excluded. The grammar, with examples, is in
//! `docs/segments.md`.
//!
//! Pure: the time is an argument (relative times such as `"-30d"` count back from it).

use crate::contract::{Kind, instant};
use crate::domain::profile::{AttributeType, ProfileSchema};
use crate::domain::recipient::{ConsentVerdict, Recipient};
use crate::domain::{Channel, SegmentName, Topic};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

/// One segment, as its file declares it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentDoc {
    pub name: SegmentName,
    /// Raised with every change: a push of a changed segment under the version already
    /// stored is refused, so a running broadcast's snapshot and the file never disagree
    /// about what version N meant.
    #[serde(default = "first_version")]
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// When set, a member must have opted in to this topic on a channel (marketing
    /// consent); without it, only not have opted out of the channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<Topic>,
    /// The channels wanted, in order of preference.
    pub channels: Vec<Channel>,
    /// The members of this segment are left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<SegmentName>,
    /// Absent: everyone.
    #[serde(default)]
    pub filter: Filter,
}

fn first_version() -> u32 {
    1
}

/// A condition over one person: `all`, `any`, `not`, or a test of one field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawFilter", into = "RawFilter")]
pub enum Filter {
    /// Every condition holds (none: always true).
    All(Vec<Filter>),
    /// At least one holds.
    Any(Vec<Filter>),
    Not(Box<Filter>),
    Leaf(Condition),
}

impl Default for Filter {
    fn default() -> Self {
        Filter::All(Vec::new())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: Field,
    pub op: Op,
}

/// What a condition reads of the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// `attributes.<name>`: a profile attribute declared in `profile.toml`.
    Attribute(String),
    Locale,
    Timezone,
    /// The channels the person can be reached on (an email, a phone, a device).
    Channels,
    CreatedAt,
    LastEngaged(Channel),
}

impl Field {
    fn parse(raw: &str) -> Result<Self, String> {
        if let Some(name) = raw.strip_prefix("attributes.") {
            if name.is_empty() {
                return Err("field attributes. needs an attribute's name".into());
            }
            return Ok(Field::Attribute(name.to_owned()));
        }
        if let Some(channel) = raw.strip_prefix("last_engaged.") {
            return channel
                .parse()
                .map(Field::LastEngaged)
                .map_err(|_| format!("field {raw}: last_engaged is per channel: push, email or sms"));
        }
        Ok(match raw {
            "locale" => Field::Locale,
            "timezone" => Field::Timezone,
            "channels" => Field::Channels,
            "created_at" => Field::CreatedAt,
            _ => {
                return Err(format!(
                    "unknown field {raw}: a field is attributes.<name>, locale, timezone, channels, created_at \
                     or last_engaged.<channel>"
                ));
            }
        })
    }

    /// What kind of value the field holds, for the operators it takes.
    fn kind(&self, schema: &ProfileSchema) -> Result<ValueKind, String> {
        Ok(match self {
            Field::Attribute(name) => match schema.get(name) {
                Some(AttributeType::String) => ValueKind::Text,
                Some(AttributeType::Number) => ValueKind::Number,
                Some(AttributeType::Boolean) => ValueKind::Boolean,
                Some(AttributeType::List) => ValueKind::List,
                Some(AttributeType::Timestamp) => ValueKind::Time,
                None => return Err(format!("attributes.{name} is not declared in profile.toml")),
            },
            Field::Locale | Field::Timezone => ValueKind::Text,
            Field::Channels => ValueKind::Channels,
            Field::CreatedAt | Field::LastEngaged(_) => ValueKind::Time,
        })
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Attribute(name) => write!(f, "attributes.{name}"),
            Field::Locale => f.write_str("locale"),
            Field::Timezone => f.write_str("timezone"),
            Field::Channels => f.write_str("channels"),
            Field::CreatedAt => f.write_str("created_at"),
            Field::LastEngaged(c) => write!(f, "last_engaged.{c}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueKind {
    Text,
    Number,
    Boolean,
    List,
    Time,
    Channels,
}

impl ValueKind {
    fn name(self) -> &'static str {
        match self {
            ValueKind::Text => "a string",
            ValueKind::Number => "a number",
            ValueKind::Boolean => "a boolean",
            ValueKind::List => "a list of strings",
            ValueKind::Time => "a timestamp",
            ValueKind::Channels => "a list of channels",
        }
    }
}

/// A test of one field. A field the person does not have fails every test but
/// `exists = false`.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// The value (on a list: an element) is this one.
    Equals(Value),
    /// The value (on a list: an element) is one of these.
    In(Vec<Value>),
    /// The text (on a list: an element) starts with this.
    Prefix(String),
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
    Before(When),
    After(When),
    Exists(bool),
}

impl Op {
    fn name(&self) -> &'static str {
        match self {
            Op::Equals(_) => "equals",
            Op::In(_) => "in",
            Op::Prefix(_) => "prefix",
            Op::Gt(_) => "gt",
            Op::Gte(_) => "gte",
            Op::Lt(_) => "lt",
            Op::Lte(_) => "lte",
            Op::Before(_) => "before",
            Op::After(_) => "after",
            Op::Exists(_) => "exists",
        }
    }
}

/// An instant in a condition: fixed, or relative to the time of judging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    At(DateTime<Utc>),
    /// `"-30d"`: thirty days before the judging time (`s`, `m`, `h`, `d` or `w`).
    Relative {
        amount: i64,
        unit: char,
    },
}

impl When {
    /// The most a relative time reaches: 100 years.
    const MAX_SECONDS: i64 = 100 * 366 * 86_400;

    fn parse(raw: &str) -> Result<Self, String> {
        if let Ok(at) = instant::parse(raw) {
            return Ok(When::At(at));
        }
        let bad = || {
            format!(
                "{raw:?} is neither an RFC 3339 instant (\"2026-03-01T00:00:00Z\") nor a time relative to now \
                 (\"-30d\", \"-12h\", \"+1w\"; units s, m, h, d, w)"
            )
        };
        let (sign, rest) = match raw.as_bytes().first() {
            Some(b'-') => (-1, raw.get(1..).unwrap_or_default()),
            Some(b'+') => (1, raw.get(1..).unwrap_or_default()),
            _ => return Err(bad()),
        };
        let unit = rest.chars().last().filter(|u| matches!(u, 's' | 'm' | 'h' | 'd' | 'w')).ok_or_else(bad)?;
        let digits = rest.get(..rest.len() - 1).unwrap_or_default();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let amount: i64 = digits.parse().map_err(|_| bad())?;
        let when = When::Relative { amount: sign * amount, unit };
        match when.offset() {
            Some(o) if o.num_seconds().abs() <= Self::MAX_SECONDS => Ok(when),
            _ => Err(format!("{raw:?} reaches further than 100 years")),
        }
    }

    fn offset(self) -> Option<TimeDelta> {
        let When::Relative { amount, unit } = self else { return Some(TimeDelta::zero()) };
        let seconds: i64 = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            _ => 604_800,
        };
        TimeDelta::try_seconds(amount.checked_mul(seconds)?)
    }

    /// The instant this stands for when judging at `now`.
    pub fn resolve(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            When::At(at) => at,
            When::Relative { .. } => self.offset().and_then(|o| now.checked_add_signed(o)).unwrap_or(now),
        }
    }
}

impl fmt::Display for When {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            When::At(at) => f.write_str(&at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
            When::Relative { amount, unit } => {
                write!(f, "{}{}{unit}", if *amount < 0 { '-' } else { '+' }, amount.unsigned_abs())
            }
        }
    }
}

/// The TOML (and stored JSON) shape of a filter: one of `all`, `any`, `not`, or a
/// `field` with one operator.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    all: Option<Vec<Filter>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    any: Option<Vec<Filter>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not: Option<Box<Filter>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    equals: Option<Value>,
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    in_: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gt: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gte: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lt: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lte: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exists: Option<bool>,
}

fn scalar(v: Value, what: &str) -> Result<Value, String> {
    match v {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(v),
        _ => Err(format!("{what} takes a string, a number or a boolean")),
    }
}

impl TryFrom<RawFilter> for Filter {
    type Error = String;

    fn try_from(raw: RawFilter) -> Result<Self, String> {
        let RawFilter { all, any, not, field, equals, in_, prefix, gt, gte, lt, lte, before, after, exists } = raw;
        let mut ops: Vec<Op> = Vec::new();
        if let Some(v) = equals {
            ops.push(Op::Equals(scalar(v, "equals")?));
        }
        if let Some(vs) = in_ {
            if vs.is_empty() {
                return Err("in needs at least one value".into());
            }
            ops.push(Op::In(vs.into_iter().map(|v| scalar(v, "in")).collect::<Result<_, _>>()?));
        }
        ops.extend(prefix.map(Op::Prefix));
        for (bound, make) in [(gt, Op::Gt as fn(f64) -> Op), (gte, Op::Gte), (lt, Op::Lt), (lte, Op::Lte)] {
            if let Some(b) = bound {
                if !b.is_finite() {
                    return Err("a numeric bound must be a finite number".into());
                }
                ops.push(make(b));
            }
        }
        if let Some(w) = before {
            ops.push(Op::Before(When::parse(&w)?));
        }
        if let Some(w) = after {
            ops.push(Op::After(When::parse(&w)?));
        }
        ops.extend(exists.map(Op::Exists));
        let groups = usize::from(all.is_some()) + usize::from(any.is_some()) + usize::from(not.is_some());
        match (field, groups) {
            (Some(field), 0) => {
                let field = Field::parse(&field)?;
                if ops.len() != 1 {
                    return Err(format!(
                        "condition on {field} needs exactly one operator (equals, in, prefix, gt, gte, lt, lte, \
                         before, after, exists), it has {}",
                        ops.len()
                    ));
                }
                let op = ops.pop().ok_or("no operator")?;
                Ok(Filter::Leaf(Condition { field, op }))
            }
            (None, 1) if ops.is_empty() => Ok(match (all, any, not) {
                (Some(all), _, _) => Filter::All(all),
                (_, Some(any), _) => Filter::Any(any),
                (_, _, Some(not)) => Filter::Not(not),
                _ => return Err("a filter is all, any, not, or a field with an operator".into()),
            }),
            (None, 0) if ops.is_empty() => Err("empty filter: use all, any, not, or a field with an operator".into()),
            (None, 0) => Err("an operator needs a field".into()),
            _ => Err("a filter is exactly one of all, any, not, or a field with one operator".into()),
        }
    }
}

impl From<Filter> for RawFilter {
    fn from(f: Filter) -> Self {
        match f {
            Filter::All(all) => RawFilter { all: Some(all), ..Default::default() },
            Filter::Any(any) => RawFilter { any: Some(any), ..Default::default() },
            Filter::Not(not) => RawFilter { not: Some(not), ..Default::default() },
            Filter::Leaf(Condition { field, op }) => {
                let mut raw = RawFilter { field: Some(field.to_string()), ..Default::default() };
                match op {
                    Op::Equals(v) => raw.equals = Some(v),
                    Op::In(vs) => raw.in_ = Some(vs),
                    Op::Prefix(p) => raw.prefix = Some(p),
                    Op::Gt(b) => raw.gt = Some(b),
                    Op::Gte(b) => raw.gte = Some(b),
                    Op::Lt(b) => raw.lt = Some(b),
                    Op::Lte(b) => raw.lte = Some(b),
                    Op::Before(w) => raw.before = Some(w.to_string()),
                    Op::After(w) => raw.after = Some(w.to_string()),
                    Op::Exists(e) => raw.exists = Some(e),
                }
                raw
            }
        }
    }
}

// ---------------------------------------------------------------- validation

impl Filter {
    /// Every field declared (attributes) and every operator one its field's type takes.
    pub fn validate(&self, schema: &ProfileSchema) -> Result<(), String> {
        match self {
            Filter::All(fs) => fs.iter().try_for_each(|f| f.validate(schema)),
            Filter::Any(fs) if fs.is_empty() => {
                Err("any needs at least one condition (an empty any matches nobody)".into())
            }
            Filter::Any(fs) => fs.iter().try_for_each(|f| f.validate(schema)),
            Filter::Not(f) => f.validate(schema),
            Filter::Leaf(c) => c.validate(schema),
        }
    }
}

impl Condition {
    fn validate(&self, schema: &ProfileSchema) -> Result<(), String> {
        let kind = self.field.kind(schema)?;
        let field = &self.field;
        let takes = |v: &Value| match kind {
            ValueKind::Text | ValueKind::List => v.is_string(),
            ValueKind::Number => v.is_number(),
            ValueKind::Boolean => v.is_boolean(),
            ValueKind::Channels => v.as_str().is_some_and(|c| c.parse::<Channel>().is_ok()),
            ValueKind::Time => false,
        };
        // What equals and in compare with (nothing, for a timestamp: before and after do).
        let (one, many) = match kind {
            ValueKind::Text | ValueKind::List => ("a string", "strings"),
            ValueKind::Number => ("a number", "numbers"),
            ValueKind::Boolean => ("a boolean", "booleans"),
            ValueKind::Channels => ("a channel (push, email or sms)", "channels (push, email or sms)"),
            ValueKind::Time => ("", ""),
        };
        let ok = match &self.op {
            Op::Exists(_) => true,
            Op::Equals(_) | Op::In(_) if kind == ValueKind::Time => false,
            Op::Equals(v) => {
                if !takes(v) {
                    return Err(format!("{field} is {}: equals takes {one}", kind.name()));
                }
                true
            }
            Op::In(vs) => {
                if !vs.iter().all(takes) {
                    return Err(format!("{field} is {}: in takes a list of {many}", kind.name()));
                }
                true
            }
            Op::Prefix(_) => matches!(kind, ValueKind::Text | ValueKind::List),
            Op::Gt(_) | Op::Gte(_) | Op::Lt(_) | Op::Lte(_) => kind == ValueKind::Number,
            Op::Before(_) | Op::After(_) => kind == ValueKind::Time,
        };
        if ok { Ok(()) } else { Err(format!("{field} is {}: {} does not apply to it", kind.name(), self.op.name())) }
    }
}

impl SegmentDoc {
    /// What can be checked of one segment: its version and channels, its filter against
    /// the profile schema, its exclusion (known, not itself). Cycles through other
    /// segments are found by [`Audience::resolve`] (and [`check_segments`]).
    pub fn validate(&self, schema: &ProfileSchema, known: impl Fn(&SegmentName) -> bool) -> Result<(), String> {
        let name = &self.name;
        if self.version == 0 {
            return Err(format!("segment {name}: version starts at 1"));
        }
        if self.channels.is_empty() {
            return Err(format!("segment {name}: channels must list at least one channel"));
        }
        let mut seen = BTreeSet::new();
        if let Some(c) = self.channels.iter().find(|c| !seen.insert(**c)) {
            return Err(format!("segment {name}: channel {c} is listed twice"));
        }
        if let Some(excluded) = &self.exclude {
            if excluded == name {
                return Err(format!("segment {name}: exclusion cycle {name} -> {name}"));
            }
            if !known(excluded) {
                return Err(format!("segment {name}: excludes segment {excluded}, which does not exist"));
            }
        }
        self.filter.validate(schema).map_err(|e| format!("segment {name}: filter: {e}"))
    }
}

/// Checks a set of segments as `herald segments check` and `push` do: each on its own,
/// names unique, and every exclusion chain resolved (no unknown segment, no cycle).
/// One line per problem.
pub fn check_segments(docs: &[SegmentDoc], schema: &ProfileSchema) -> Vec<String> {
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    for d in docs {
        if !names.insert(&d.name) {
            problems.push(format!("segment {}: defined twice", d.name));
        }
    }
    let lookup = |n: &SegmentName| docs.iter().find(|d| d.name == *n).map(|d| Arc::new(d.clone()));
    for d in docs {
        if let Err(e) = d.validate(schema, |n| names.contains(n)) {
            problems.push(e);
        } else if let Err(e) = Audience::resolve(&d.name, lookup) {
            problems.push(e);
        }
    }
    problems
}

// ---------------------------------------------------------------- judging

/// What a condition sees of one field of the person.
enum Observed<'a> {
    Missing,
    Text(&'a str),
    Number(f64),
    Bool(bool),
    List(Vec<&'a str>),
    Time(DateTime<Utc>),
}

fn observe<'a>(field: &Field, r: &'a Recipient) -> Observed<'a> {
    let time = |t: Option<&DateTime<Utc>>| t.map_or(Observed::Missing, |t| Observed::Time(*t));
    match field {
        Field::Attribute(name) => match r.attributes.get(name) {
            None | Some(Value::Null) | Some(Value::Object(_)) => Observed::Missing,
            Some(Value::String(s)) => Observed::Text(s),
            Some(Value::Number(n)) => n.as_f64().map_or(Observed::Missing, Observed::Number),
            Some(Value::Bool(b)) => Observed::Bool(*b),
            Some(Value::Array(items)) => Observed::List(items.iter().filter_map(Value::as_str).collect()),
        },
        Field::Locale => r.locale.as_ref().map_or(Observed::Missing, |l| Observed::Text(l.as_str())),
        Field::Timezone => r.timezone.map_or(Observed::Missing, |tz| Observed::Text(tz.0.name())),
        Field::Channels => match r.reachable() {
            channels if channels.is_empty() => Observed::Missing,
            channels => Observed::List(channels.into_iter().map(Channel::as_str).collect()),
        },
        Field::CreatedAt => time(r.created_at.as_ref()),
        Field::LastEngaged(c) => time(r.last_engaged.get(c)),
    }
}

fn equal(observed: &Observed<'_>, v: &Value) -> bool {
    match (observed, v) {
        (Observed::Text(s), Value::String(w)) => s == w,
        (Observed::Number(n), Value::Number(w)) => w.as_f64().is_some_and(|w| *n == w),
        (Observed::Bool(b), Value::Bool(w)) => b == w,
        (Observed::List(items), Value::String(w)) => items.contains(&w.as_str()),
        _ => false,
    }
}

impl Filter {
    pub fn matches(&self, r: &Recipient, now: DateTime<Utc>) -> bool {
        match self {
            Filter::All(fs) => fs.iter().all(|f| f.matches(r, now)),
            Filter::Any(fs) => fs.iter().any(|f| f.matches(r, now)),
            Filter::Not(f) => !f.matches(r, now),
            Filter::Leaf(c) => c.matches(r, now),
        }
    }
}

impl Condition {
    fn matches(&self, r: &Recipient, now: DateTime<Utc>) -> bool {
        let observed = observe(&self.field, r);
        let number = |test: &dyn Fn(f64) -> bool| matches!(observed, Observed::Number(n) if test(n));
        let time = |test: &dyn Fn(DateTime<Utc>) -> bool| match &observed {
            Observed::Time(t) => test(*t),
            // A timestamp attribute is stored as its RFC 3339 text.
            Observed::Text(s) => instant::parse(s).is_ok_and(test),
            _ => false,
        };
        match &self.op {
            Op::Exists(wanted) => !matches!(observed, Observed::Missing) == *wanted,
            Op::Equals(v) => equal(&observed, v),
            Op::In(vs) => vs.iter().any(|v| equal(&observed, v)),
            Op::Prefix(p) => match &observed {
                Observed::Text(s) => s.starts_with(p.as_str()),
                Observed::List(items) => items.iter().any(|s| s.starts_with(p.as_str())),
                _ => false,
            },
            Op::Gt(b) => number(&|n| n > *b),
            Op::Gte(b) => number(&|n| n >= *b),
            Op::Lt(b) => number(&|n| n < *b),
            Op::Lte(b) => number(&|n| n <= *b),
            Op::Before(w) => time(&|t| t < w.resolve(now)),
            Op::After(w) => time(&|t| t > w.resolve(now)),
        }
    }
}

/// A segment with its exclusion chain resolved: what a broadcast judges people by. A
/// broadcast keeps a snapshot of it from its start, so a later push does not change it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audience {
    pub segment: SegmentDoc,
    /// The segment it excludes, then the one that one excludes, and so on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclusions: Vec<SegmentDoc>,
}

/// Why a person is not in an audience.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissReason {
    /// The segment's filter does not hold.
    Filter,
    /// A member of the excluded segment.
    Excluded,
    /// Reachable on a wanted channel, but without the consent it needs on any.
    NoConsent,
    /// No contact point on any wanted channel.
    Unreachable,
}

impl MissReason {
    pub const ALL: [MissReason; 4] =
        [MissReason::Filter, MissReason::Excluded, MissReason::NoConsent, MissReason::Unreachable];

    pub fn as_str(self) -> &'static str {
        match self {
            MissReason::Filter => "filter",
            MissReason::Excluded => "excluded",
            MissReason::NoConsent => "no_consent",
            MissReason::Unreachable => "unreachable",
        }
    }
}

impl fmt::Display for MissReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudienceVerdict {
    /// In the audience, on these of the wanted channels (in the segment's order).
    Match {
        channels: Vec<Channel>,
    },
    Miss(MissReason),
}

impl Audience {
    /// The longest exclusion chain followed.
    pub const MAX_CHAIN: usize = 16;

    /// `name` and the segments it excludes, in turn, as `lookup` finds them: refused when
    /// one does not exist or the chain comes back to a segment already in it.
    pub fn resolve(
        name: &SegmentName,
        mut lookup: impl FnMut(&SegmentName) -> Option<Arc<SegmentDoc>>,
    ) -> Result<Audience, String> {
        let segment = lookup(name).ok_or_else(|| format!("no segment named {name}"))?;
        let mut chain: Vec<SegmentName> = vec![name.clone()];
        let mut exclusions: Vec<SegmentDoc> = Vec::new();
        let mut next = segment.exclude.clone();
        while let Some(excluded) = next {
            if chain.contains(&excluded) {
                let path: Vec<String> = chain.iter().chain([&excluded]).map(ToString::to_string).collect();
                return Err(format!("segment {name}: exclusion cycle {}", path.join(" -> ")));
            }
            if chain.len() > Self::MAX_CHAIN {
                return Err(format!("segment {name}: more than {} segments in its exclusion chain", Self::MAX_CHAIN));
            }
            let doc = lookup(&excluded).ok_or_else(|| {
                let by = chain.last().map(ToString::to_string).unwrap_or_default();
                format!("segment {by}: excludes segment {excluded}, which does not exist")
            })?;
            next = doc.exclude.clone();
            chain.push(excluded);
            exclusions.push((*doc).clone());
        }
        Ok(Audience { segment: (*segment).clone(), exclusions })
    }

    pub fn name(&self) -> &SegmentName {
        &self.segment.name
    }

    /// Whether the person is in the audience and, if so, on which channels. In order: the
    /// filter, the exclusion, a contact point on a wanted channel, then consent on those:
    /// with a topic, an explicit opt-in to it (marketing consent); without, no opt-out.
    pub fn judge(&self, r: &Recipient, now: DateTime<Utc>) -> AudienceVerdict {
        if !self.segment.filter.matches(r, now) {
            return AudienceVerdict::Miss(MissReason::Filter);
        }
        if self.excluded(r, now) {
            return AudienceVerdict::Miss(MissReason::Excluded);
        }
        let reachable: Vec<Channel> = self.segment.channels.iter().copied().filter(|c| r.has_contact(*c)).collect();
        if reachable.is_empty() {
            return AudienceVerdict::Miss(MissReason::Unreachable);
        }
        let topic = self.segment.topic.as_ref();
        let kind = if topic.is_some() { Kind::Marketing } else { Kind::Transactional };
        let channels: Vec<Channel> =
            reachable.into_iter().filter(|c| r.consent_verdict(*c, topic, kind) == ConsentVerdict::Allowed).collect();
        if channels.is_empty() {
            return AudienceVerdict::Miss(MissReason::NoConsent);
        }
        AudienceVerdict::Match { channels }
    }

    /// A member of the excluded segment: its filter holds and the person is not in the
    /// segment it excludes in turn (and so on down the chain).
    fn excluded(&self, r: &Recipient, now: DateTime<Utc>) -> bool {
        self.exclusions.iter().rev().fold(false, |member_of_next, doc| doc.filter.matches(r, now) && !member_of_next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{ConsentSource, Locale, TimeZone};
    use crate::domain::recipient::{ConsentScope, ConsentState};
    use crate::domain::{EmailAddress, PhoneNumber};
    use serde_json::json;
    use std::collections::BTreeMap;

    fn now() -> DateTime<Utc> {
        "2026-11-25T12:00:00Z".parse().unwrap()
    }

    fn schema() -> ProfileSchema {
        ProfileSchema {
            attributes: BTreeMap::from([
                ("first_name".to_owned(), AttributeType::String),
                ("lifetime_value".to_owned(), AttributeType::Number),
                ("beta".to_owned(), AttributeType::Boolean),
                ("interests".to_owned(), AttributeType::List),
                ("signed_up_at".to_owned(), AttributeType::Timestamp),
            ]),
        }
    }

    fn filter(v: Value) -> Filter {
        serde_json::from_value(v).unwrap()
    }

    fn ana() -> Recipient {
        let mut r = Recipient {
            email: Some(EmailAddress::new("ana@example.org").unwrap()),
            locale: Some(Locale::try_from("fr-FR".to_owned()).unwrap()),
            timezone: Some(TimeZone::try_from("Europe/Paris".to_owned()).unwrap()),
            created_at: Some("2026-01-10T00:00:00Z".parse().unwrap()),
            ..Recipient::default()
        };
        r.attributes = json!({"first_name": "Ana", "lifetime_value": 250, "beta": true,
                              "interests": ["shoes", "bags"], "signed_up_at": "2025-06-01T00:00:00+02:00",
                              "undeclared": "x"})
        .as_object()
        .unwrap()
        .clone();
        r.last_engaged.insert(Channel::Email, "2026-11-20T12:00:00Z".parse().unwrap());
        r
    }

    #[test]
    fn conditions_on_attributes_and_facts() {
        let r = ana();
        let bare = Recipient::default();
        // (filter, on ana, on a person with nothing)
        let cases: Vec<(Value, bool, bool)> = vec![
            (json!({"field": "attributes.first_name", "equals": "Ana"}), true, false),
            (json!({"field": "attributes.first_name", "equals": "ana"}), false, false),
            (json!({"field": "attributes.first_name", "in": ["Bo", "Ana"]}), true, false),
            (json!({"field": "attributes.first_name", "prefix": "An"}), true, false),
            (json!({"field": "attributes.lifetime_value", "gt": 249.5}), true, false),
            (json!({"field": "attributes.lifetime_value", "gte": 250}), true, false),
            (json!({"field": "attributes.lifetime_value", "lt": 250}), false, false),
            (json!({"field": "attributes.lifetime_value", "lte": 250}), true, false),
            (json!({"field": "attributes.lifetime_value", "equals": 250.0}), true, false),
            (json!({"field": "attributes.lifetime_value", "in": [1, 250]}), true, false),
            (json!({"field": "attributes.beta", "equals": true}), true, false),
            (json!({"field": "attributes.beta", "equals": false}), false, false),
            // A list matches when any element does.
            (json!({"field": "attributes.interests", "equals": "bags"}), true, false),
            (json!({"field": "attributes.interests", "in": ["hats", "shoes"]}), true, false),
            (json!({"field": "attributes.interests", "in": ["hats"]}), false, false),
            (json!({"field": "attributes.interests", "prefix": "sh"}), true, false),
            (json!({"field": "attributes.signed_up_at", "before": "2025-06-01T00:00:00Z"}), true, false),
            (json!({"field": "attributes.signed_up_at", "after": "-365d"}), false, false),
            (json!({"field": "attributes.first_name", "exists": true}), true, false),
            (json!({"field": "attributes.first_name", "exists": false}), false, true),
            (json!({"field": "locale", "prefix": "fr"}), true, false),
            (json!({"field": "locale", "equals": "fr-FR"}), true, false),
            (json!({"field": "timezone", "prefix": "Europe/"}), true, false),
            (json!({"field": "timezone", "in": ["Europe/Paris", "Europe/Berlin"]}), true, false),
            (json!({"field": "channels", "equals": "email"}), true, false),
            (json!({"field": "channels", "in": ["sms", "push"]}), false, false),
            (json!({"field": "channels", "exists": true}), true, false),
            (json!({"field": "channels", "exists": false}), false, true),
            (json!({"field": "created_at", "before": "2026-02-01T00:00:00Z"}), true, false),
            (json!({"field": "created_at", "after": "-30d"}), false, false),
            (json!({"field": "created_at", "after": "-330d"}), true, false),
            (json!({"field": "last_engaged.email", "after": "-7d"}), true, false),
            (json!({"field": "last_engaged.email", "after": "-4d"}), false, false),
            (json!({"field": "last_engaged.email", "before": "-4d"}), true, false),
            (json!({"field": "last_engaged.push", "exists": false}), true, true),
            // Missing fields fail every test but exists = false: "not engaged for 30 days"
            // must say what it means for the never engaged.
            (json!({"field": "last_engaged.push", "before": "-30d"}), false, false),
            (
                json!({"any": [{"field": "last_engaged.email", "exists": false},
                               {"field": "last_engaged.email", "before": "-30d"}]}),
                false,
                true,
            ),
            (json!({"not": {"field": "attributes.beta", "equals": true}}), false, true),
            (
                json!({"all": [{"field": "locale", "prefix": "fr"}, {"field": "attributes.lifetime_value", "gt": 100}]}),
                true,
                false,
            ),
            (json!({"all": []}), true, true),
        ];
        for (f, on_ana, on_bare) in cases {
            let parsed = filter(f.clone());
            assert_eq!(parsed.validate(&schema()), Ok(()), "{f}");
            assert_eq!(parsed.matches(&r, now()), on_ana, "{f} on ana");
            assert_eq!(parsed.matches(&bare, now()), on_bare, "{f} on nobody");
        }
    }

    #[test]
    fn a_stored_value_of_another_type_matches_nothing() {
        let mut r = ana();
        r.attributes.insert("lifetime_value".into(), json!("250"));
        r.attributes.insert("signed_up_at".into(), json!("yesterday"));
        for f in [
            json!({"field": "attributes.lifetime_value", "gt": 1}),
            json!({"field": "attributes.lifetime_value", "equals": 250}),
            json!({"field": "attributes.signed_up_at", "before": "+1d"}),
        ] {
            assert!(!filter(f.clone()).matches(&r, now()), "{f}");
        }
    }

    #[test]
    fn refusals_at_parse_and_at_validation() {
        let parse_errors: Vec<(Value, &str)> = vec![
            (json!({"field": "attributes.beta"}), "needs exactly one operator"),
            (json!({"field": "attributes.beta", "equals": true, "exists": true}), "needs exactly one operator"),
            (json!({"field": "plan", "equals": "x"}), "unknown field plan"),
            (json!({"field": "last_engaged.fax", "exists": true}), "last_engaged is per channel"),
            (json!({"field": "created_at", "before": "-30 days"}), "neither an RFC 3339 instant"),
            (json!({"field": "created_at", "before": "30d"}), "neither an RFC 3339 instant"),
            (json!({"field": "created_at", "before": "-99999999999w"}), "further than 100 years"),
            (json!({"field": "locale", "in": []}), "in needs at least one value"),
            (json!({"field": "locale", "equals": ["fr"]}), "equals takes a string"),
            (json!({"equals": "x"}), "an operator needs a field"),
            (json!({}), "empty filter"),
            (json!({"all": [], "any": []}), "exactly one of"),
            (json!({"all": [], "field": "locale", "exists": true}), "exactly one of"),
            (json!({"field": "locale", "exist": true}), "unknown field"),
        ];
        for (f, expected) in parse_errors {
            let err = serde_json::from_value::<Filter>(f.clone()).unwrap_err().to_string();
            assert!(err.contains(expected), "{f}: {err}");
        }
        let invalid: Vec<(Value, &str)> = vec![
            (json!({"field": "attributes.plan", "equals": "pro"}), "attributes.plan is not declared in profile.toml"),
            (
                json!({"field": "attributes.first_name", "gt": 1}),
                "attributes.first_name is a string: gt does not apply",
            ),
            (json!({"field": "attributes.first_name", "equals": 1}), "equals takes a string"),
            (json!({"field": "attributes.lifetime_value", "prefix": "1"}), "prefix does not apply"),
            (json!({"field": "attributes.lifetime_value", "in": ["1"]}), "in takes a list of numbers"),
            (json!({"field": "attributes.beta", "before": "-1d"}), "before does not apply"),
            (
                json!({"field": "attributes.signed_up_at", "equals": "2026-01-01T00:00:00Z"}),
                "attributes.signed_up_at is a timestamp: equals does not apply to it",
            ),
            (json!({"field": "created_at", "gt": 3}), "created_at is a timestamp: gt does not apply"),
            (json!({"field": "channels", "equals": "fax"}), "equals takes a channel"),
            (json!({"field": "channels", "prefix": "e"}), "prefix does not apply"),
            (json!({"not": {"any": []}}), "any needs at least one condition"),
        ];
        for (f, expected) in invalid {
            let err = filter(f.clone()).validate(&schema()).unwrap_err();
            assert!(err.contains(expected), "{f}: {err}");
        }
    }

    #[test]
    fn relative_times_and_round_trips() {
        let cases = [("-30d", -30 * 86_400), ("+1w", 604_800), ("-12h", -43_200), ("-90m", -5_400), ("+5s", 5)];
        for (raw, seconds) in cases {
            let w = When::parse(raw).unwrap();
            assert_eq!(w.resolve(now()), now() + TimeDelta::seconds(seconds), "{raw}");
            assert_eq!(w.to_string(), raw);
        }
        let f = filter(json!({"all": [{"field": "created_at", "after": "-30d"},
                                      {"field": "attributes.lifetime_value", "gte": 10},
                                      {"not": {"field": "locale", "in": ["fr", "de"]}},
                                      {"field": "created_at", "before": "2026-01-01T00:00:00Z"}]}));
        let back: Filter = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(back, f);
    }

    fn doc(name: &str, exclude: Option<&str>, f: Value) -> SegmentDoc {
        SegmentDoc {
            name: SegmentName::new(name).unwrap(),
            version: 1,
            description: None,
            topic: None,
            channels: vec![Channel::Email],
            exclude: exclude.map(|e| SegmentName::new(e).unwrap()),
            filter: filter(f),
        }
    }

    fn lookup(docs: &[SegmentDoc]) -> impl FnMut(&SegmentName) -> Option<Arc<SegmentDoc>> + '_ {
        |n| docs.iter().find(|d| d.name == *n).cloned().map(Arc::new)
    }

    #[test]
    fn documents_are_checked_whole() {
        let everyone = json!({"all": []});
        let ok = doc("a", Some("b"), everyone.clone());
        let docs = [ok.clone(), doc("b", None, everyone.clone())];
        assert!(check_segments(&docs, &schema()).is_empty());
        let known = |n: &SegmentName| docs.iter().any(|d| d.name == *n);
        let cases: Vec<(SegmentDoc, &str)> = vec![
            (SegmentDoc { version: 0, ..ok.clone() }, "version starts at 1"),
            (SegmentDoc { channels: vec![], ..ok.clone() }, "channels must list at least one channel"),
            (SegmentDoc { channels: vec![Channel::Sms, Channel::Sms], ..ok.clone() }, "channel sms is listed twice"),
            (doc("a", Some("zz"), everyone.clone()), "excludes segment zz, which does not exist"),
            (doc("a", Some("a"), everyone.clone()), "exclusion cycle a -> a"),
            (
                doc("a", None, json!({"field": "attributes.nope", "exists": true})),
                "filter: attributes.nope is not declared",
            ),
        ];
        for (d, expected) in cases {
            let err = d.validate(&schema(), known).unwrap_err();
            assert!(err.contains(expected), "{err}");
        }
        let cycle = [
            doc("a", Some("b"), everyone.clone()),
            doc("b", Some("c"), everyone.clone()),
            doc("c", Some("a"), everyone.clone()),
        ];
        let problems = check_segments(&cycle, &schema());
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("exclusion cycle a -> b -> c -> a"), "{problems:?}");
        let twice = [doc("a", None, everyone.clone()), doc("a", None, everyone)];
        assert!(check_segments(&twice, &schema()).iter().any(|p| p.contains("defined twice")));
        assert_eq!(
            Audience::resolve(&SegmentName::new("zz").unwrap(), lookup(&cycle)).unwrap_err(),
            "no segment named zz"
        );
    }

    fn granted(r: &mut Recipient, channel: Channel, topic: Option<&str>, granted: bool) {
        r.consents.insert(
            ConsentScope { channel, topic: topic.map(|t| Topic::new(t).unwrap()) },
            ConsentState { granted, source: ConsentSource::new("test").unwrap(), at: now() },
        );
    }

    #[test]
    fn judging_a_person_against_an_audience() {
        // fans: ltv over 100, excluding recent buyers (engaged in the last 7 days), except
        // those recent buyers who are in beta (the exclusion's own exclusion).
        let mut fans = doc("fans", Some("recent"), json!({"field": "attributes.lifetime_value", "gt": 100}));
        fans.topic = Some(Topic::new("news").unwrap());
        fans.channels = vec![Channel::Sms, Channel::Email];
        let docs = [
            fans,
            doc("recent", Some("beta"), json!({"field": "last_engaged.email", "after": "-7d"})),
            doc("beta", None, json!({"field": "attributes.beta", "equals": true})),
        ];
        let audience = Audience::resolve(&SegmentName::new("fans").unwrap(), lookup(&docs)).unwrap();
        assert_eq!(audience.exclusions.len(), 2);
        let judge = |r: &Recipient| audience.judge(r, now());

        let mut r = ana(); // ltv 250, engaged 5 days ago, in beta: recent but saved by beta
        granted(&mut r, Channel::Email, Some("news"), true);
        assert_eq!(judge(&r), AudienceVerdict::Match { channels: vec![Channel::Email] });

        let mut not_beta = r.clone();
        not_beta.attributes.insert("beta".into(), json!(false));
        assert_eq!(judge(&not_beta), AudienceVerdict::Miss(MissReason::Excluded));

        let mut poor = r.clone();
        poor.attributes.insert("lifetime_value".into(), json!(5));
        assert_eq!(judge(&poor), AudienceVerdict::Miss(MissReason::Filter), "the filter comes first");

        let mut no_contact = r.clone();
        no_contact.email = None;
        assert_eq!(judge(&no_contact), AudienceVerdict::Miss(MissReason::Unreachable));

        // Reachable by SMS too, with a channel-wide opt-in: both, in the segment's order.
        let mut both = r.clone();
        both.phone = Some(PhoneNumber::new("+15555550100").unwrap());
        granted(&mut both, Channel::Sms, None, true);
        assert_eq!(judge(&both), AudienceVerdict::Match { channels: vec![Channel::Sms, Channel::Email] });

        // Marketing consent: no record is no consent; an opt-out of the topic beats the channel's opt-in.
        let mut silent = r.clone();
        silent.consents.clear();
        assert_eq!(judge(&silent), AudienceVerdict::Miss(MissReason::NoConsent));
        let mut out = both.clone();
        granted(&mut out, Channel::Sms, Some("news"), false);
        assert_eq!(judge(&out), AudienceVerdict::Match { channels: vec![Channel::Email] });
        granted(&mut out, Channel::Email, Some("news"), false);
        assert_eq!(judge(&out), AudienceVerdict::Miss(MissReason::NoConsent));

        // Without a topic only an opt-out keeps a channel out.
        let plain = [doc("plain", None, json!({"all": []}))];
        let plain = Audience::resolve(&SegmentName::new("plain").unwrap(), lookup(&plain)).unwrap();
        assert_eq!(plain.judge(&silent, now()), AudienceVerdict::Match { channels: vec![Channel::Email] });
        granted(&mut silent, Channel::Email, None, false);
        assert_eq!(plain.judge(&silent, now()), AudienceVerdict::Miss(MissReason::NoConsent));

        // The snapshot a broadcast stores judges alike.
        let stored: Audience = serde_json::from_str(&serde_json::to_string(&audience).unwrap()).unwrap();
        assert_eq!(stored, audience);
        assert_eq!(MissReason::ALL.map(MissReason::as_str), ["filter", "excluded", "no_consent", "unreachable"]);
    }
}
