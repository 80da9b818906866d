//! Publishing an import: ten commands per `SendMessageBatch`, failed entries retried, at a
//! bounded rate, with a checkpoint beside the file so that a run stopped half way (killed,
//! throttled beyond the retries, a network outage) continues where it stopped.
//!
//! The checkpoint counts the people whose every command was accepted by SQS, in file order;
//! a rerun with `--resume` starts at the next one (the commands of a person cut in two are
//! sent again: ingest applies the same command twice as once). It names the file by its
//! SHA-256, so it is never applied to another file. It is removed when the import ends.

use super::{Format, ImportOptions, Parsed, Refusal, parse_file};
use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// SQS takes at most ten entries and 256 KiB per batch.
pub const MAX_BATCH: usize = 10;
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Attempts per entry (the first included) before the import stops.
pub const ATTEMPTS: u32 = 6;

/// An entry SQS did not take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedEntry {
    pub id: String,
    /// SQS says the entry itself is wrong: sending it again will not help.
    pub sender_fault: bool,
    pub code: String,
}

/// Where the commands go: the ingest queue (or a fake in tests).
pub trait Queue: Sync {
    /// Sends `(id, body)` entries in one batch; returns those not taken.
    fn send_batch(
        &self,
        entries: &[(String, String)],
    ) -> impl std::future::Future<Output = anyhow::Result<Vec<FailedEntry>>> + Send;
}

/// The ingest queue over SQS.
pub struct SqsQueue {
    pub client: aws_sdk_sqs::Client,
    pub url: String,
}

impl Queue for SqsQueue {
    async fn send_batch(&self, entries: &[(String, String)]) -> anyhow::Result<Vec<FailedEntry>> {
        let mut request = self.client.send_message_batch().queue_url(&self.url);
        for (id, body) in entries {
            request = request.entries(
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder().id(id).message_body(body).build()?,
            );
        }
        let out = request.send().await.context("SendMessageBatch")?;
        Ok(out
            .failed
            .into_iter()
            .map(|f| FailedEntry { id: f.id, sender_fault: f.sender_fault, code: f.code })
            .collect())
    }
}

/// What to do with a checkpoint found beside the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Stop and ask (a checkpoint exists but neither `--resume` nor `--restart` was given).
    Ask,
    Resume,
    Restart,
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub dry_run: bool,
    /// Commands per second; 0: as fast as SQS takes them.
    pub rate: f64,
    pub resume: Resume,
    /// The checkpoint file.
    pub state: PathBuf,
    /// The report of refused rows (NDJSON), written when there are any.
    pub report: PathBuf,
    /// Print a progress line on stderr.
    pub progress: bool,
    /// Pause before retrying failed entries (doubled each time).
    pub backoff: Duration,
}

impl RunOptions {
    /// The defaults for `input`: checkpoint and report beside it.
    pub fn beside(input: &Path) -> Self {
        let with = |suffix: &str| {
            let mut name = input.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        };
        Self {
            dry_run: false,
            rate: 100.0,
            resume: Resume::Ask,
            state: with(".import-state.json"),
            report: with(".refused.ndjson"),
            progress: false,
            backoff: Duration::from_millis(200),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Checkpoint {
    /// The input's SHA-256 (hex).
    input: String,
    format: Format,
    /// People (in file order) whose every command SQS took.
    people_done: usize,
    /// Commands SQS refused while publishing.
    refused: Vec<Refusal>,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub rows: u64,
    pub people: usize,
    /// People already published by the run this one resumed.
    pub resumed_after: usize,
    /// Commands sent (or, in a dry run, that would be), by type.
    pub commands: BTreeMap<String, u64>,
    pub refused: usize,
    /// Where the refused rows are listed, when there are any.
    pub report: Option<PathBuf>,
    pub dry_run: bool,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.dry_run { "would publish" } else { "published" };
        let total: u64 = self.commands.values().sum();
        let by_type: Vec<String> = self.commands.iter().map(|(k, v)| format!("{k} {v}")).collect();
        write!(f, "{} row(s) read, {} person(s); {verb} {total} command(s)", self.rows, self.people)?;
        if !by_type.is_empty() {
            write!(f, " ({})", by_type.join(", "))?;
        }
        if self.resumed_after > 0 {
            write!(f, "; resumed after {} person(s) already published", self.resumed_after)?;
        }
        match &self.report {
            Some(path) => write!(f, "; {} refused, listed with reasons in {}", self.refused, path.display()),
            None => write!(f, "; none refused"),
        }
    }
}

fn sha256_of(path: &Path) -> anyhow::Result<String> {
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = std::io::Read::read(&mut file, &mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    Ok(hex::encode(hasher.finalize()))
}

fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", PathBuf::from(&tmp).display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

fn write_report(path: &Path, refused: &[&Refusal]) -> anyhow::Result<Option<PathBuf>> {
    if refused.is_empty() {
        if path.exists() {
            std::fs::remove_file(path)?;
        }
        return Ok(None);
    }
    let mut text = String::new();
    for r in refused {
        text.push_str(&serde_json::to_string(r)?);
        text.push('\n');
    }
    write_atomic(path, &text)?;
    Ok(Some(path.to_owned()))
}

fn type_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_default()
}

/// Reads `input`, checks every row, and (unless a dry run) publishes the commands.
pub async fn run<Q: Queue>(
    input: &Path,
    format: Format,
    import: &ImportOptions,
    opts: &RunOptions,
    queue: &Q,
) -> anyhow::Result<Summary> {
    let digest = sha256_of(input)?;
    let parsed = parse_file(input, format, import)?;
    publish(parsed, &digest, format, opts, queue).await
}

/// Publishes what was parsed from the input whose SHA-256 is `digest`.
pub async fn publish<Q: Queue>(
    parsed: Parsed,
    digest: &str,
    format: Format,
    opts: &RunOptions,
    queue: &Q,
) -> anyhow::Result<Summary> {
    let mut summary =
        Summary { rows: parsed.rows, people: parsed.people.len(), dry_run: opts.dry_run, ..Summary::default() };
    if opts.dry_run {
        for body in parsed.people.iter().flat_map(|p| &p.commands) {
            *summary.commands.entry(type_of(body)).or_default() += 1;
        }
        summary.refused = parsed.refused.len();
        summary.report = write_report(&opts.report, &parsed.refused.iter().collect::<Vec<_>>())?;
        return Ok(summary);
    }
    let mut checkpoint = match std::fs::read_to_string(&opts.state) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", opts.state.display())),
        Ok(text) => Some(
            serde_json::from_str::<Checkpoint>(&text)
                .with_context(|| format!("{} is not an import checkpoint", opts.state.display()))?,
        ),
    };
    match (&checkpoint, opts.resume) {
        (_, Resume::Restart) => checkpoint = None,
        (None, _) => {}
        (Some(c), Resume::Ask) => bail!(
            "{} says an import of this file stopped after {} of {} person(s): --resume to continue, --restart to \
             start over",
            opts.state.display(),
            c.people_done,
            parsed.people.len()
        ),
        (Some(c), Resume::Resume) if c.input != digest || c.format != format => bail!(
            "{} is the checkpoint of another file (or format): --restart to import this one from the start",
            opts.state.display()
        ),
        (Some(_), Resume::Resume) => {}
    }
    let mut state =
        checkpoint.unwrap_or(Checkpoint { input: digest.to_owned(), format, people_done: 0, refused: Vec::new() });
    summary.resumed_after = state.people_done.min(parsed.people.len());

    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut progress = Progress::new(opts.progress, parsed.people.len());
    // (person index, whether it is that person's last command, body)
    let queue_of: Vec<(usize, bool, &String)> = parsed
        .people
        .iter()
        .enumerate()
        .skip(summary.resumed_after)
        .flat_map(|(i, p)| p.commands.iter().enumerate().map(move |(j, c)| (i, j + 1 == p.commands.len(), c)))
        .collect();
    let mut start = 0;
    while start < queue_of.len() {
        let mut end = start;
        let mut bytes = 0;
        while let Some((_, _, body)) = queue_of.get(end) {
            if end - start == MAX_BATCH || (end > start && bytes + body.len() > MAX_BATCH_BYTES) {
                break;
            }
            bytes += body.len();
            end += 1;
        }
        let batch = queue_of.get(start..end).unwrap_or_default();
        if opts.rate > 0.0 {
            let due = Duration::from_secs_f64((sent + batch.len() as u64) as f64 / opts.rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        let entries: Vec<(String, String)> =
            batch.iter().enumerate().map(|(k, (_, _, body))| (k.to_string(), (*body).clone())).collect();
        let refused = match send_with_retries(queue, entries, opts.backoff).await {
            Ok(r) => r,
            Err(e) => {
                progress.done();
                return Err(e.context(format!(
                    "the import stopped after {} of {} person(s) (checkpoint {}): run it again with --resume",
                    state.people_done,
                    parsed.people.len(),
                    opts.state.display()
                )));
            }
        };
        for (k, code) in refused {
            if let Some((i, _, _)) = batch.get(k)
                && let Some(p) = parsed.people.get(*i)
            {
                state.refused.push(Refusal::new(
                    p.line,
                    Some(&p.recipient),
                    "queue_refused",
                    format!("SQS refused a {} command ({code})", type_of(queue_of.get(start + k).map_or("", |q| q.2))),
                ));
            }
        }
        for (_, _, body) in batch {
            *summary.commands.entry(type_of(body)).or_default() += 1;
        }
        sent += batch.len() as u64;
        if let Some((i, last, _)) = batch.last() {
            state.people_done = if *last { i + 1 } else { *i };
        }
        write_atomic(&opts.state, &serde_json::to_string(&state)?)?;
        progress.show(state.people_done, sent, parsed.refused.len() + state.refused.len());
        start = end;
    }
    progress.done();
    let all: Vec<&Refusal> = parsed.refused.iter().chain(&state.refused).collect();
    summary.refused = all.len();
    summary.report = write_report(&opts.report, &all)?;
    if opts.state.exists() {
        std::fs::remove_file(&opts.state)?;
    }
    Ok(summary)
}

/// Sends the entries, again and again for those SQS could not take for now; returns
/// those it refused as wrong (their index, SQS's code). Stops with an error after
/// [`ATTEMPTS`].
async fn send_with_retries<Q: Queue>(
    queue: &Q,
    mut entries: Vec<(String, String)>,
    backoff: Duration,
) -> anyhow::Result<Vec<(usize, String)>> {
    let mut refused = Vec::new();
    let mut pause = backoff;
    for attempt in 1..=ATTEMPTS {
        let failed = match queue.send_batch(&entries).await {
            Ok(failed) => failed,
            Err(e) if attempt < ATTEMPTS => {
                tracing::warn!(attempt, error = %e, "SendMessageBatch failed: retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut again = Vec::new();
        for f in failed {
            let Some(entry) = entries.iter().find(|(id, _)| *id == f.id) else { continue };
            if f.sender_fault {
                refused.push((f.id.parse().unwrap_or(usize::MAX), f.code));
            } else {
                again.push(entry.clone());
            }
        }
        if again.is_empty() {
            return Ok(refused);
        }
        tracing::info!(attempt, entries = again.len(), "entries SQS did not take: retrying");
        if attempt == ATTEMPTS {
            bail!("SQS did not take {} command(s) after {ATTEMPTS} attempts", again.len());
        }
        entries = again;
        tokio::time::sleep(pause).await;
        pause *= 2;
    }
    Ok(refused)
}

/// A progress line on stderr, redrawn at most four times a second.
struct Progress {
    on: bool,
    total: usize,
    last: Option<Instant>,
}

impl Progress {
    fn new(on: bool, total: usize) -> Self {
        Self { on, total, last: None }
    }

    fn show(&mut self, people: usize, sent: u64, refused: usize) {
        if !self.on || self.last.is_some_and(|l| l.elapsed() < Duration::from_millis(250)) && people < self.total {
            return;
        }
        self.last = Some(Instant::now());
        let pct = (people * 100).checked_div(self.total).unwrap_or(100);
        eprint!("\rimport: {people}/{} people ({pct}%), {sent} commands sent, {refused} refused   ", self.total);
    }

    fn done(&mut self) {
        if self.on && self.last.is_some() {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::Person;
    use std::sync::Mutex;

    /// A queue that fails as told, and remembers what it took.
    #[derive(Default)]
    struct Fake {
        taken: Mutex<Vec<String>>,
        calls: Mutex<u32>,
        /// Per call (1-based): entry ids to fail as throttled.
        throttle: BTreeMap<u32, Vec<&'static str>>,
        /// Bodies SQS refuses as wrong, always.
        wrong: Vec<String>,
        /// Calls from this one on fail whole.
        down_from: Option<u32>,
    }

    impl Queue for Fake {
        async fn send_batch(&self, entries: &[(String, String)]) -> anyhow::Result<Vec<FailedEntry>> {
            let call = {
                let mut c = self.calls.lock().unwrap();
                *c += 1;
                *c
            };
            if self.down_from.is_some_and(|d| call >= d) {
                bail!("connection refused");
            }
            assert!(entries.len() <= MAX_BATCH);
            let mut failed = Vec::new();
            for (id, body) in entries {
                if self.throttle.get(&call).is_some_and(|ids| ids.contains(&id.as_str())) {
                    failed.push(FailedEntry {
                        id: id.clone(),
                        sender_fault: false,
                        code: "ThrottlingException".into(),
                    });
                } else if self.wrong.contains(body) {
                    failed.push(FailedEntry {
                        id: id.clone(),
                        sender_fault: true,
                        code: "InvalidMessageContents".into(),
                    });
                } else {
                    self.taken.lock().unwrap().push(body.clone());
                }
            }
            Ok(failed)
        }
    }

    fn parsed(people: usize, per_person: usize) -> Parsed {
        Parsed {
            rows: people as u64,
            people: (0..people)
                .map(|i| Person {
                    line: i as u64 + 1,
                    recipient: format!("u{i}"),
                    commands: (0..per_person).map(|j| format!("{{\"type\":\"c{j}\",\"n\":\"{i}.{j}\"}}")).collect(),
                })
                .collect(),
            refused: vec![],
        }
    }

    fn opts(dir: &Path) -> RunOptions {
        RunOptions { rate: 0.0, backoff: Duration::from_millis(1), ..RunOptions::beside(&dir.join("people.csv")) }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("herald-import-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn throttled_entries_are_sent_again_and_wrong_ones_reported() {
        let dir = scratch("retry");
        let input = parsed(7, 3);
        let all: Vec<String> = input.people.iter().flat_map(|p| p.commands.clone()).collect();
        let wrong = all.get(12).unwrap().clone();
        let fake = Fake {
            throttle: BTreeMap::from([(1, vec!["0", "9"]), (2, vec!["1"])]),
            wrong: vec![wrong.clone()],
            ..Fake::default()
        };
        let summary = publish(input, "d", Format::Csv, &opts(&dir), &fake).await.unwrap();
        let mut taken = fake.taken.lock().unwrap().clone();
        taken.sort();
        let mut expected: Vec<String> = all.iter().filter(|b| **b != wrong).cloned().collect();
        expected.sort();
        assert_eq!(taken, expected, "every command exactly once, the wrong one not at all");
        assert_eq!(summary.refused, 1);
        let report = std::fs::read_to_string(summary.report.unwrap()).unwrap();
        assert!(report.contains("\"line\":5") && report.contains("queue_refused"), "{report}");
        assert!(!opts(&dir).state.exists(), "the checkpoint goes when the import ends");
    }

    #[tokio::test]
    async fn an_interrupted_import_resumes_where_it_stopped() {
        let dir = scratch("resume");
        let o = opts(&dir);
        // Calls 1 and 2 go through (20 commands: people 0 to 5 and 2 of person 6's 3),
        // then SQS is down past every retry.
        let down = Fake { down_from: Some(3), ..Fake::default() };
        let err = publish(parsed(10, 3), "d", Format::Csv, &o, &down).await.unwrap_err();
        assert!(format!("{err:#}").contains("after 6 of 10 person(s)"), "{err:#}");
        assert_eq!(down.taken.lock().unwrap().len(), 20);
        let again = publish(parsed(10, 3), "d", Format::Csv, &o, &Fake::default()).await.unwrap_err().to_string();
        assert!(again.contains("--resume"), "{again}");
        let other = publish(
            parsed(10, 3),
            "e",
            Format::Csv,
            &RunOptions { resume: Resume::Resume, ..o.clone() },
            &Fake::default(),
        )
        .await;
        assert!(other.unwrap_err().to_string().contains("another file"));

        let up = Fake::default();
        let summary =
            publish(parsed(10, 3), "d", Format::Csv, &RunOptions { resume: Resume::Resume, ..o.clone() }, &up)
                .await
                .unwrap();
        assert_eq!(summary.resumed_after, 6);
        let taken = up.taken.lock().unwrap().clone();
        assert_eq!(taken.len(), 12, "persons 6 to 9, person 6 whole again: {taken:?}");
        assert!(taken.first().unwrap().contains("\"6.0\""));
        assert!(!o.state.exists());
    }

    #[tokio::test]
    async fn a_dry_run_sends_nothing_and_the_rate_is_kept() {
        let dir = scratch("dry");
        let fake = Fake::default();
        let dry = RunOptions { dry_run: true, ..opts(&dir) };
        let summary = publish(parsed(5, 2), "d", Format::Csv, &dry, &fake).await.unwrap();
        assert_eq!((summary.commands.values().sum::<u64>(), *fake.calls.lock().unwrap()), (10, 0));
        let started = Instant::now();
        let paced = RunOptions { rate: 50.0, ..opts(&dir) };
        publish(parsed(5, 6), "d", Format::Csv, &paced, &fake).await.unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(550),
            "30 commands at 50/s take 0.6 s: {:?}",
            started.elapsed()
        );
    }
}
