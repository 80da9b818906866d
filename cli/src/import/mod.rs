//! `herald import`: bring a team's people, consents and push tokens (CSV, newline-delimited
//! JSON, or an Amazon Pinpoint endpoint export) and its Pinpoint templates and settings into
//! Herald.
//!
//! People are imported the way a producer would send them: as `upsert_recipient`,
//! `set_consent` and `register_push_token` commands on the ingest queue, so ingest stays
//! the one writer of the recipients table. Every command is checked against the ingest
//! contract before it is sent; a row that would be refused is reported with the reason,
//! never skipped silently. Reports and logs name rows by line number and recipient id,
//! never by an address, a number or a token. See docs/import.md.

use herald::contract::{IngestMessage, Rejection};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub mod people;
pub mod pinpoint;
pub mod publish;
pub mod templates;

/// One person's commands, each a body ingest accepts, in the order they are sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    /// The first line of the file that names the person.
    pub line: u64,
    pub recipient: String,
    pub commands: Vec<String>,
}

/// A row, or a part of one, that is not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub line: u64,
    /// The recipient id when the row has one (contact-like ids are redacted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// A stable code (`invalid_field`, `inactive_endpoint`, ...).
    pub code: String,
    /// A sentence a person can act on; never a value from the row.
    pub reason: String,
}

impl Refusal {
    pub fn new(line: u64, user: Option<&str>, code: &str, reason: impl Into<String>) -> Self {
        Self {
            line,
            user: user.map(herald::domain::redact_contacts),
            code: code.to_owned(),
            reason: herald::domain::redact_contacts(&reason.into()),
        }
    }

    fn from_rejection(line: u64, user: Option<&str>, what: &str, r: &Rejection) -> Self {
        Self::new(line, user, r.code, format!("{what}: {}", r.detail))
    }
}

/// What a file holds, ready to publish.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Rows (lines, or CSV records) read.
    pub rows: u64,
    pub people: Vec<Person>,
    pub refused: Vec<Refusal>,
}

impl Parsed {
    /// One line of a newline-delimited file, counted as a row unless blank: its text, or
    /// `None` for a blank line or one refused here (not UTF-8).
    fn line(&mut self, line_no: u64, line: std::io::Result<String>) -> anyhow::Result<Option<String>> {
        let text = match line {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                self.rows += 1;
                self.refused.push(Refusal::new(line_no, None, "malformed_json", "the line is not UTF-8"));
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        if text.trim().is_empty() {
            return Ok(None);
        }
        self.rows += 1;
        Ok(Some(text))
    }
}

/// The input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Ndjson,
    /// Amazon Pinpoint's endpoint export: newline-delimited JSON, gzipped or not.
    Pinpoint,
}

impl Format {
    /// From the file's name: `.csv`, `.ndjson`/`.jsonl`/`.json`, or `.gz` (a Pinpoint export).
    pub fn guess(path: &std::path::Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        if name.ends_with(".gz") {
            Some(Self::Pinpoint)
        } else if name.ends_with(".csv") {
            Some(Self::Csv)
        } else if [".ndjson", ".jsonl", ".json"].iter().any(|x| name.ends_with(x)) {
            Some(Self::Ndjson)
        } else {
            None
        }
    }
}

/// Choices that shape the commands.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The consent `source` when a row names none.
    pub consent_source: String,
    /// Quiet hours (`22:00`, `07:00`) for every person a row gives none (Pinpoint's QuietTime).
    pub quiet_hours: Option<(String, String)>,
    /// Pinpoint: record `OptOut: NONE` as an opt-in (Pinpoint sent to everyone not opted out;
    /// Herald's marketing needs an explicit opt-in).
    pub opt_out_none_grants: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self { consent_source: "import".to_owned(), quiet_hours: None, opt_out_none_grants: false }
    }
}

/// `body` with `type` set, as ingest would parse it: the JSON to send, or why ingest would refuse it.
fn command(kind: &str, mut body: Map<String, Value>) -> Result<String, Rejection> {
    body.insert("type".to_owned(), Value::String(kind.to_owned()));
    let text = Value::Object(body).to_string();
    IngestMessage::parse(&text)?;
    Ok(text)
}

/// The file's lines, gunzipped when it starts with gzip's magic number.
pub fn open_lines(path: &std::path::Path) -> anyhow::Result<Box<dyn std::io::BufRead>> {
    use anyhow::Context as _;
    use std::io::{BufReader, Read as _};
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic)?;
    let file = std::fs::File::open(path)?;
    Ok(if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    })
}

/// Reads and checks a file of people.
pub fn parse_file(path: &std::path::Path, format: Format, opts: &ImportOptions) -> anyhow::Result<Parsed> {
    match format {
        Format::Csv => people::parse_csv(std::fs::File::open(path)?, opts),
        Format::Ndjson => people::parse_ndjson(open_lines(path)?, opts),
        Format::Pinpoint => pinpoint::parse_export(open_lines(path)?, opts),
    }
}
