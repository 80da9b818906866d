//! Durations as people write them in requests and definition files: a whole number and
//! one unit, `30s`, `15m`, `2h`, `1d`.

use chrono::TimeDelta;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Parses `<n><unit>`: `n` a whole number from 1 without leading zeros, `unit` one of
/// `s`, `m`, `h`, `d` (a day is 24 hours). The error names the expected form, never the value.
pub fn parse_duration(raw: &str) -> Result<TimeDelta, String> {
    let bad = || "not a duration such as \"30s\", \"15m\", \"2h\" or \"1d\"".to_owned();
    let cut = raw.char_indices().last().map_or(0, |(at, _)| at);
    let (digits, unit) = (raw.get(..cut).unwrap_or_default(), raw.get(cut..).unwrap_or_default());
    let well_formed =
        (1..=7).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
    if !well_formed {
        return Err(bad());
    }
    let n: i64 = digits.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(bad()),
    };
    Ok(TimeDelta::seconds(seconds))
}

/// A duration as written (`"15m"`), kept with its text so it serializes back as given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Span {
    text: String,
    delta: TimeDelta,
}

impl Span {
    pub fn parse(raw: &str) -> Result<Self, String> {
        Ok(Self { text: raw.to_owned(), delta: parse_duration(raw)? })
    }

    pub fn delta(&self) -> TimeDelta {
        self.delta
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl TryFrom<String> for Span {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        Self::parse(&raw)
    }
}

impl From<Span> for String {
    fn from(s: Span) -> String {
        s.text
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_a_number_and_a_unit() {
        for (raw, secs) in [("30s", 30), ("1s", 1), ("15m", 900), ("2h", 7200), ("1d", 86_400), ("7d", 604_800)] {
            assert_eq!(parse_duration(raw), Ok(TimeDelta::seconds(secs)), "{raw}");
        }
        for bad in ["", "s", "0s", "05m", "15", "15 m", "1.5h", "-1h", "1w", "1D", "12345678s", "é", "1é", "+1h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_span_keeps_its_text() {
        let span: Span = serde_json::from_str("\"15m\"").unwrap();
        assert_eq!(span.delta(), TimeDelta::minutes(15));
        assert_eq!(serde_json::to_string(&span).unwrap(), "\"15m\"");
        let err = serde_json::from_str::<Span>("\"15 minutes\"").unwrap_err().to_string();
        assert!(err.starts_with("not a duration"), "{err}");
    }
}
