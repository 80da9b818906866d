//! People files: CSV (one row per person, columns below) and newline-delimited JSON (one
//! object per person). A row becomes one `upsert_recipient`, a `set_consent` per consent
//! and a `register_push_token` per token; a row any of whose commands ingest would refuse
//! is not imported at all, and each reason is reported.
//!
//! CSV columns (header names; all but `recipient` optional, an empty cell sets nothing):
//! `recipient`, `email`, `phone`, `timezone`, `locale`, `quiet_start`, `quiet_end`,
//! `attr.<name>` (a string; `attr.<name>:number`, `:boolean`, `:list` with `|` between
//! items, `:string`), `consent.<channel>` or `consent.<channel>.<topic>` (yes/no),
//! `consent_source`, `consent_at`, `push.<platform>` (tokens, `|` between several).

use super::{ImportOptions, Parsed, Person, Refusal, command};
use anyhow::bail;
use herald::contract::json_error_detail;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// A person as read, before the commands are built.
#[derive(Debug, Default)]
pub(super) struct Draft {
    pub recipient: String,
    /// The `upsert_recipient` fields (without `type` and `recipient`).
    pub profile: Map<String, Value>,
    /// Each `set_consent`'s fields (without `type` and `recipient`).
    pub consents: Vec<Map<String, Value>>,
    /// Each `register_push_token`'s fields (without `type` and `recipient`).
    pub tokens: Vec<Map<String, Value>>,
}

impl Draft {
    /// The person's commands, or every reason ingest (or Herald's import rules) would refuse one.
    pub(super) fn finish(mut self, line: u64, opts: &ImportOptions) -> Result<Person, Vec<Refusal>> {
        let user = Some(self.recipient.as_str());
        let mut refused = Vec::new();
        let mut commands = Vec::new();
        if let Some((start, end)) = &opts.quiet_hours {
            self.profile.entry("quiet_hours").or_insert_with(|| json!({"start": start, "end": end}));
        }
        let mut profile = self.profile;
        profile.insert("recipient".to_owned(), Value::String(self.recipient.clone()));
        match command("upsert_recipient", profile) {
            Ok(c) => commands.push(c),
            Err(r) => refused.push(Refusal::from_rejection(line, user, "the profile", &r)),
        }
        for mut consent in self.consents {
            let channel = consent.get("channel").and_then(Value::as_str).unwrap_or("?").to_owned();
            if !consent.contains_key("at") {
                refused.push(Refusal::new(
                    line,
                    user,
                    "missing_consent_time",
                    format!(
                        "the {channel} consent has no time: Herald keeps when the person gave it, and a second \
                         import must find the same record (consent_at, or `at`)"
                    ),
                ));
                continue;
            }
            consent.entry("source").or_insert_with(|| Value::String(opts.consent_source.clone()));
            consent.insert("recipient".to_owned(), Value::String(self.recipient.clone()));
            match command("set_consent", consent) {
                Ok(c) => commands.push(c),
                Err(r) => refused.push(Refusal::from_rejection(line, user, &format!("the {channel} consent"), &r)),
            }
        }
        for (i, mut token) in self.tokens.into_iter().enumerate() {
            token.insert("recipient".to_owned(), Value::String(self.recipient.clone()));
            match command("register_push_token", token) {
                Ok(c) => commands.push(c),
                Err(r) => refused.push(Refusal::from_rejection(line, user, &format!("push token {}", i + 1), &r)),
            }
        }
        if refused.is_empty() { Ok(Person { line, recipient: self.recipient, commands }) } else { Err(refused) }
    }
}

/// Adds a finished row to `parsed`, refusing a second row for the same person.
fn add(parsed: &mut Parsed, seen: &mut HashMap<String, u64>, line: u64, draft: Draft, opts: &ImportOptions) {
    if let Some(first) = seen.get(&draft.recipient) {
        parsed.refused.push(Refusal::new(
            line,
            Some(&draft.recipient),
            "duplicate_recipient",
            format!("the same recipient is on line {first}: one row per person (merge the rows)"),
        ));
        return;
    }
    seen.insert(draft.recipient.clone(), line);
    match draft.finish(line, opts) {
        Ok(person) => parsed.people.push(person),
        Err(refused) => parsed.refused.extend(refused),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AttrType {
    String,
    Number,
    Boolean,
    List,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Column {
    Recipient,
    /// email, phone, timezone, locale
    Field(String),
    QuietStart,
    QuietEnd,
    Attr(String, AttrType),
    Consent(String, Option<String>),
    ConsentSource,
    ConsentAt,
    Push(String),
}

fn column(header: &str) -> Result<Column, String> {
    let h = header.trim();
    Ok(match h {
        "recipient" => Column::Recipient,
        "email" | "phone" | "timezone" | "locale" => Column::Field(h.to_owned()),
        "quiet_start" => Column::QuietStart,
        "quiet_end" => Column::QuietEnd,
        "consent_source" => Column::ConsentSource,
        "consent_at" => Column::ConsentAt,
        _ => {
            if let Some(rest) = h.strip_prefix("attr.") {
                let (name, kind) = match rest.split_once(':') {
                    None => (rest, AttrType::String),
                    Some((name, "string")) => (name, AttrType::String),
                    Some((name, "number")) => (name, AttrType::Number),
                    Some((name, "boolean")) => (name, AttrType::Boolean),
                    Some((name, "list")) => (name, AttrType::List),
                    Some(_) => {
                        return Err(format!("column {h}: the type after `:` is string, number, boolean or list"));
                    }
                };
                Column::Attr(name.to_owned(), kind)
            } else if let Some(rest) = h.strip_prefix("consent.") {
                let (channel, topic) = match rest.split_once('.') {
                    Some((c, t)) => (c, Some(t.to_owned())),
                    None => (rest, None),
                };
                Column::Consent(channel.to_owned(), topic)
            } else if let Some(platform) = h.strip_prefix("push.") {
                Column::Push(platform.to_owned())
            } else {
                return Err(format!(
                    "column {h} is not one of recipient, email, phone, timezone, locale, quiet_start, quiet_end, \
                     attr.<name>[:type], consent.<channel>[.<topic>], consent_source, consent_at, push.<platform>"
                ));
            }
        }
    })
}

fn yes_no(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "yes" | "y" | "true" | "1" | "granted" | "opt_in" | "opted_in" => Some(true),
        "no" | "n" | "false" | "0" | "denied" | "opt_out" | "opted_out" => Some(false),
        _ => None,
    }
}

fn typed(raw: &str, kind: AttrType) -> Option<Value> {
    Some(match kind {
        AttrType::String => Value::String(raw.to_owned()),
        AttrType::Number => {
            let n = raw.trim();
            match n.parse::<i64>() {
                Ok(i) => json!(i),
                Err(_) => serde_json::Number::from_f64(n.parse::<f64>().ok()?).map(Value::Number)?,
            }
        }
        AttrType::Boolean => Value::Bool(yes_no(raw)?),
        AttrType::List => Value::Array(
            raw.split('|').map(str::trim).filter(|s| !s.is_empty()).map(|s| Value::String(s.to_owned())).collect(),
        ),
    })
}

/// A CSV file of people, one row each, with a header row naming the columns.
pub fn parse_csv<R: std::io::Read>(reader: R, opts: &ImportOptions) -> anyhow::Result<Parsed> {
    let mut rdr = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(reader);
    let headers = rdr.headers()?.clone();
    let columns: Vec<Column> = match headers.iter().map(column).collect::<Result<_, _>>() {
        Ok(c) => c,
        Err(why) => bail!("the header row: {why}"),
    };
    if !columns.contains(&Column::Recipient) {
        bail!("the header row has no recipient column");
    }
    let mut parsed = Parsed::default();
    let mut seen = HashMap::new();
    for record in rdr.records() {
        parsed.rows += 1;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or_default();
                let why = match e.kind() {
                    csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
                        format!("the row has {len} fields, the header {expected_len}")
                    }
                    csv::ErrorKind::Utf8 { .. } => "the row is not UTF-8".to_owned(),
                    _ => "the row is not valid CSV".to_owned(),
                };
                parsed.refused.push(Refusal::new(line, None, "malformed_row", why));
                continue;
            }
        };
        let line = record.position().map(|p| p.line()).unwrap_or_default();
        let mut draft = Draft::default();
        let mut problems = Vec::new();
        let (mut quiet_start, mut quiet_end, mut consent_source, mut consent_at) = (None, None, None, None);
        let mut consents = Vec::new();
        for (col, cell) in columns.iter().zip(record.iter()) {
            if cell.is_empty() {
                continue;
            }
            match col {
                Column::Recipient => draft.recipient = cell.to_owned(),
                Column::Field(name) => {
                    draft.profile.insert(name.clone(), Value::String(cell.to_owned()));
                }
                Column::QuietStart => quiet_start = Some(cell),
                Column::QuietEnd => quiet_end = Some(cell),
                Column::ConsentSource => consent_source = Some(cell),
                Column::ConsentAt => consent_at = Some(cell),
                Column::Attr(name, kind) => match typed(cell, *kind) {
                    Some(v) => {
                        let attrs = draft.profile.entry("attributes").or_insert_with(|| json!({}));
                        if let Some(a) = attrs.as_object_mut() {
                            a.insert(name.clone(), v);
                        }
                    }
                    None => problems.push(format!("attr.{name} is not a {kind:?}").to_lowercase()),
                },
                Column::Consent(channel, topic) => match yes_no(cell) {
                    Some(granted) => consents.push((channel, topic, granted)),
                    None => problems.push(format!("consent.{channel}: the cell is not yes or no")),
                },
                Column::Push(platform) => {
                    for token in cell.split('|').map(str::trim).filter(|t| !t.is_empty()) {
                        draft.tokens.push(Map::from_iter([
                            ("platform".to_owned(), Value::String(platform.clone())),
                            ("token".to_owned(), Value::String(token.to_owned())),
                        ]));
                    }
                }
            }
        }
        match (quiet_start, quiet_end) {
            (Some(start), Some(end)) => {
                draft.profile.insert("quiet_hours".to_owned(), json!({"start": start, "end": end}));
            }
            (None, None) => {}
            _ => problems.push("quiet_start and quiet_end go together".to_owned()),
        }
        for (channel, topic, granted) in consents {
            let mut c = Map::from_iter([
                ("channel".to_owned(), Value::String(channel.clone())),
                ("granted".to_owned(), Value::Bool(granted)),
            ]);
            if let Some(t) = topic {
                c.insert("topic".to_owned(), Value::String(t.clone()));
            }
            if let Some(s) = consent_source {
                c.insert("source".to_owned(), Value::String(s.to_owned()));
            }
            if let Some(at) = consent_at {
                c.insert("at".to_owned(), Value::String(at.to_owned()));
            }
            draft.consents.push(c);
        }
        let user = (!draft.recipient.is_empty()).then_some(draft.recipient.as_str());
        if draft.recipient.is_empty() {
            problems.push("the recipient cell is empty".to_owned());
        }
        if !problems.is_empty() {
            for p in problems {
                parsed.refused.push(Refusal::new(line, user, "invalid_field", p));
            }
            continue;
        }
        add(&mut parsed, &mut seen, line, draft, opts);
    }
    Ok(parsed)
}

/// Newline-delimited JSON: one object per person, the `upsert_recipient` fields plus
/// `consents` (a list of `set_consent` fields) and `push_tokens` (a list of
/// `register_push_token` fields). Blank lines are skipped.
pub fn parse_ndjson<R: std::io::BufRead>(reader: R, opts: &ImportOptions) -> anyhow::Result<Parsed> {
    let mut parsed = Parsed::default();
    let mut seen = HashMap::new();
    for (i, line) in reader.lines().enumerate() {
        let line_no = i as u64 + 1;
        let Some(text) = parsed.line(line_no, line)? else { continue };
        let mut object = match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(o)) => o,
            Ok(_) => {
                parsed.refused.push(Refusal::new(line_no, None, "malformed_json", "the line is not a JSON object"));
                continue;
            }
            Err(e) => {
                parsed.refused.push(Refusal::new(line_no, None, "malformed_json", json_error_detail(&e, None)));
                continue;
            }
        };
        let Some(recipient) = object.remove("recipient").and_then(|r| r.as_str().map(str::to_owned)) else {
            parsed.refused.push(Refusal::new(line_no, None, "invalid_field", "recipient is missing or not a string"));
            continue;
        };
        let mut draft = Draft { recipient, ..Draft::default() };
        let mut problems = Vec::new();
        for (field, into) in [("consents", &mut draft.consents), ("push_tokens", &mut draft.tokens)] {
            match object.remove(field) {
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) => {
                    for item in items {
                        match item {
                            Value::Object(o) => into.push(o),
                            _ => problems.push(format!("{field}: each entry is an object")),
                        }
                    }
                }
                Some(_) => problems.push(format!("{field} is a list")),
            }
        }
        if !problems.is_empty() {
            for p in problems {
                parsed.refused.push(Refusal::new(line_no, Some(&draft.recipient), "invalid_field", p));
            }
            continue;
        }
        draft.profile = object;
        add(&mut parsed, &mut seen, line_no, draft, opts);
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> ImportOptions {
        ImportOptions::default()
    }

    fn bodies(p: &Person) -> Vec<Value> {
        p.commands.iter().map(|c| serde_json::from_str(c).unwrap()).collect()
    }

    #[test]
    fn a_csv_row_becomes_a_profile_its_consents_and_its_tokens() {
        let csv = "recipient,email,timezone,attr.plan,attr.ltv:number,attr.tags:list,consent.email,consent.sms.promos,consent_source,consent_at,push.fcm\n\
                   u1,ana@example.org,Europe/Paris,pro,12.5,a|b,yes,no,signup-form,2026-01-02T03:04:05Z,tok1|tok2\n";
        let parsed = parse_csv(csv.as_bytes(), &opts()).unwrap();
        assert_eq!(parsed.refused, vec![]);
        let p = &parsed.people[0];
        assert_eq!((p.line, p.recipient.as_str()), (2, "u1"));
        let b = bodies(p);
        assert_eq!(b.len(), 5);
        assert_eq!(b[0]["attributes"], json!({"plan": "pro", "ltv": 12.5, "tags": ["a", "b"]}));
        assert_eq!(b[1]["source"], "signup-form");
        assert_eq!(
            (b[2]["channel"].as_str(), b[2]["topic"].as_str(), &b[2]["granted"]),
            (Some("sms"), Some("promos"), &json!(false))
        );
        assert_eq!(b[4]["token"], "tok2");
    }

    #[test]
    fn bad_rows_are_refused_with_reasons_and_no_value() {
        let csv = "recipient,email,consent.email,consent_at\n\
                   u1,not-an-address,yes,2026-01-02T03:04:05Z\n\
                   u2,bob@example.org,maybe,2026-01-02T03:04:05Z\n\
                   u3,cy@example.org,yes,\n\
                   u3,cy@example.org,,\n\
                   ,dee@example.org,,\n\
                   u5,a,b\n";
        let parsed = parse_csv(csv.as_bytes(), &opts()).unwrap();
        let codes: Vec<(u64, &str)> = parsed.refused.iter().map(|r| (r.line, r.code.as_str())).collect();
        assert_eq!(
            codes,
            vec![
                (2, "invalid_field"),
                (3, "invalid_field"),
                (4, "missing_consent_time"),
                (5, "duplicate_recipient"),
                (6, "invalid_field"),
                (7, "malformed_row")
            ]
        );
        let report = serde_json::to_string(&parsed.refused).unwrap();
        assert!(!report.contains("not-an-address") && !report.contains("example.org"), "{report}");
        assert!(parsed.people.is_empty());
    }

    #[test]
    fn an_unknown_column_refuses_the_file() {
        let err = parse_csv("recipient,emial\nu1,x\n".as_bytes(), &opts()).unwrap_err().to_string();
        assert!(err.contains("column emial"), "{err}");
    }

    #[test]
    fn ndjson_people_with_consents_and_tokens() {
        let text = r#"{"recipient":"u1","email":"ana@example.org","consents":[{"channel":"email","granted":true,"source":"shop","at":"2026-01-02T03:04:05Z"}],"push_tokens":[{"platform":"apns","token":"abc"}]}

{"recipient":"u2","emial":"x"}
not json
{"recipient":"u3","consents":[{"channel":"email","granted":true}]}
"#;
        let parsed = parse_ndjson(text.as_bytes(), &opts()).unwrap();
        assert_eq!(parsed.rows, 4);
        assert_eq!(parsed.people.len(), 1);
        assert_eq!(bodies(&parsed.people[0])[1]["source"], "shop");
        let codes: Vec<(u64, &str)> = parsed.refused.iter().map(|r| (r.line, r.code.as_str())).collect();
        assert_eq!(codes, vec![(3, "invalid_field"), (4, "malformed_json"), (5, "missing_consent_time")]);
    }

    #[test]
    fn default_quiet_hours_apply_where_a_row_has_none() {
        let o = ImportOptions { quiet_hours: Some(("22:00".into(), "07:00".into())), ..opts() };
        let text =
            "{\"recipient\":\"u1\"}\n{\"recipient\":\"u2\",\"quiet_hours\":{\"start\":\"21:00\",\"end\":\"06:00\"}}\n";
        let parsed = parse_ndjson(text.as_bytes(), &o).unwrap();
        assert_eq!(bodies(&parsed.people[0])[0]["quiet_hours"]["start"], "22:00");
        assert_eq!(bodies(&parsed.people[1])[0]["quiet_hours"]["start"], "21:00");
    }
}
