//! `make chaos`: Herald's local stack under injected faults.
//!
//! Moto on loopback, the stack from `template.yaml` (`herald_cli::local::provision`),
//! every function run as Lambda's SQS event source runs it (`herald_cli::runner`),
//! with one difference: each handler's `SdkConfig` points at a fault-injecting proxy
//! (its `endpoint_url`, as `AWS_ENDPOINT_URL` does in a deployment), which forwards
//! to moto what it lets through. The event sources (the runner's pollers) and the
//! producer talk to moto directly: Lambda's polling is not Herald's code.
//!
//! The producer upserts one recipient per notification (its own address, number and
//! token), lets that settle, then sends every notification twice and every poison
//! message twice, shuffled. Once the pipeline is idle, SES's delivery events are
//! played back for every email moto took, and the check runs: see [`check`].
//!
//! Prints one line, `chaos: seed … · faults: … · … · lost 0 · sent twice 0 · …`, and
//! exits 1 when an outcome is not perfect (details on stderr, by id, never by address).

mod check;
mod faults;
mod observed;
mod proxy;
mod rng;
mod workload;

use anyhow::Context as _;
use chrono::Utc;
use clap::Parser;
use faults::{FaultConfig, Faults};
use herald_cli::runner::{FunctionSdks, Options, Runner};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use workload::Workload;

/// The stack's name prefix (no `chaos-` in it: the fault journal reads `chaos-` tokens as ids).
const PREFIX: &str = "herald-fault-";

#[derive(Parser, Debug)]
#[command(about = "Herald's local stack under injected faults: nothing lost, nothing doubled, nothing left behind")]
struct Args {
    /// Seeds the workload, its order and every fault decision.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// The short variant `make test` runs: 30 notifications, 3 s outages, fewer faults.
    #[arg(long)]
    short: bool,
    #[arg(long)]
    notifications: Option<usize>,
    /// Poison messages (each sent twice); default a quarter of the notifications, at least 7 (one of each kind).
    #[arg(long)]
    poison: Option<usize>,
    /// Share of requests answered with a throttling error.
    #[arg(long)]
    throttle: Option<f64>,
    /// Share of requests answered 500 or 503.
    #[arg(long)]
    server_errors: Option<f64>,
    /// Share of DynamoDB writes and SQS sends applied and then answered 500.
    #[arg(long)]
    applied_then_500: Option<f64>,
    /// Length of each service's outage (0: none).
    #[arg(long)]
    outage_secs: Option<u64>,
    /// How long the pipeline may take to go idle once everything is published.
    #[arg(long)]
    deadline_secs: Option<u64>,
    /// Wait out the claims copies are parked behind (15 minutes for email) instead of
    /// letting the parked copies back once everything else is done.
    #[arg(long)]
    real_claim_waits: bool,
    /// Inject nothing (the proxy only forwards): a baseline run of the same workload.
    #[arg(long)]
    no_faults: bool,
    /// Where the functions' log lines go (scanned for personal data at the end).
    #[arg(long)]
    log: Option<PathBuf>,
}

struct Settings {
    seed: u64,
    no_faults: bool,
    real_claim_waits: bool,
    notifications: usize,
    poison: usize,
    faults: FaultConfig,
    deadline: Duration,
    log: PathBuf,
}

impl Settings {
    fn from(args: &Args) -> Self {
        let short = args.short;
        let notifications = args.notifications.unwrap_or(if short { 30 } else { 120 });
        let poison = args.poison.unwrap_or_else(|| notifications.div_ceil(4).max(7));
        let outage = Duration::from_secs(args.outage_secs.unwrap_or(if short { 3 } else { 6 }));
        // Outages while the notifications are flowing: the first 2 s in, then one
        // service after another with a gap (the SDK's three attempts take about 3 s, so
        // each outage outlasts them).
        let outages = if outage.is_zero() {
            Vec::new()
        } else {
            let gap = Duration::from_secs(if short { 3 } else { 5 });
            FaultConfig::staggered_outages(args.seed, Duration::from_secs(2), outage, gap)
        };
        let faults = FaultConfig {
            seed: args.seed,
            throttle: args.throttle.unwrap_or(if short { 0.03 } else { 0.05 }),
            server_error: args.server_errors.unwrap_or(if short { 0.03 } else { 0.04 }),
            applied_then_500: args.applied_then_500.unwrap_or(if short { 0.03 } else { 0.05 }),
            outages,
        };
        // With real claim waits: past the 15 minutes an email claim holds
        // (herald::dispatch::RECEIPT_WAIT), so a parked copy comes back by itself.
        let deadline = Duration::from_secs(args.deadline_secs.unwrap_or(match (args.real_claim_waits, short) {
            (true, _) => 1200,
            (false, true) => 150,
            (false, false) => 300,
        }));
        let root = herald_cli::local::repo_root();
        let log = args.log.clone().unwrap_or_else(|| {
            root.join("target/chaos").join(format!("chaos-{}{}.log", args.seed, if short { "-short" } else { "" }))
        });
        Self {
            seed: args.seed,
            no_faults: args.no_faults,
            real_claim_waits: args.real_claim_waits,
            notifications,
            poison,
            faults,
            deadline,
            log,
        }
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let settings = Settings::from(&args);
    // The functions' EMF metric lines go to stdout, which carries the one outcome line here.
    herald::metrics::disable();
    if let Err(e) = init_logs(&settings.log) {
        eprintln!("chaos: {e:#}");
        return ExitCode::from(2);
    }
    match run(&settings).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("chaos: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The functions log JSON lines to a file, as to CloudWatch; the check reads it back.
fn init_logs(path: &std::path::Path) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let filter = EnvFilter::new("info,aws_config=warn,aws_smithy_runtime=warn,aws_runtime=warn,hyper=warn");
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .init();
    Ok(())
}

fn say(started: Instant, what: &str) {
    eprintln!("chaos [{:>5.1}s] {what}", started.elapsed().as_secs_f64());
}

async fn run(s: &Settings) -> anyhow::Result<bool> {
    let started = Instant::now();
    let root = herald_cli::local::repo_root();
    // Checkouts sharing one CARGO_TARGET_DIR share the compiled workspace crates (cargo
    // names them the same): then this binary runs another checkout's Herald.
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(std::path::Path::to_path_buf);
    anyhow::ensure!(
        here.as_deref() == Some(root.as_path()),
        "herald-cli was compiled from {} but this is {}: another checkout shares the target directory; \
         touch the sources (cli, shared, functions) and build again",
        root.display(),
        here.map(|h| h.display().to_string()).unwrap_or_default()
    );
    let work = Workload::new(s.seed, s.notifications, s.poison);

    say(started, "starting moto and creating the stack from template.yaml");
    let moto = herald_cli::moto::Moto::start(&root, 0).await?;
    let direct = herald_cli::local::sdk_for(&moto.endpoint).await;
    let mut stack = herald_cli::local::provision(&direct, &root, PREFIX).await?;
    local_time_scale(&mut stack, &direct).await?;

    let faults = Arc::new(Faults::new(s.faults.clone()));
    faults.set_enabled(!s.no_faults);
    let (observed, emails) = observed::Observed::new();
    let observed = Arc::new(observed);
    let proxy = proxy::Proxy::start(&moto.endpoint, faults.clone(), observed.clone(), PREFIX).await?;
    // SES's part: a delivery event a second after each email it took.
    let ses_topic = stack.topics.get("SesEventsTopic").context("no SesEventsTopic")?.clone();
    let ses = tokio::spawn(observed::play_ses(emails, aws_sdk_sns::Client::new(&direct), ses_topic));
    let proxied = herald_cli::local::sdk_for(&proxy.endpoint).await;
    let sdks: BTreeMap<String, FunctionSdks> = stack
        .functions
        .iter()
        .map(|f| (f.name.clone(), FunctionSdks { handler: proxied.clone(), event_source: direct.clone() }))
        .collect();
    // No scheduler: nothing here waits longer than an SQS delay.
    let runner = Runner::start_with(
        &stack,
        &direct,
        Options { sdks, schedules: None, log_invocations: false, skip: Vec::new() },
    )?;
    let sqs = aws_sdk_sqs::Client::new(&direct);
    let ingest = stack.queue("IngestQueue")?.url.clone();
    let settle = Duration::from_secs(180);

    say(started, &format!("setup: {} recipients (faults on, no outage)", work.people.len()));
    let (upserts, rest) = work.setup();
    publish(&sqs, &ingest, &upserts).await?;
    wait_idle(&stack, &direct, settle, started).await;
    publish(&sqs, &ingest, &rest).await?;
    wait_idle(&stack, &direct, settle, started).await;
    let setup_problems = verify_setup(&stack, &direct, &work).await?;

    let messages = work.messages();
    say(
        started,
        &format!(
            "publishing {} notifications and {} poison messages, each twice, shuffled; outages armed",
            work.notes.len(),
            work.poison.len()
        ),
    );
    faults.arm_outages();
    let main_phase = Instant::now();
    let mut published = Vec::with_capacity(messages.len());
    for chunk in messages.chunks(10) {
        let bodies: Vec<String> = chunk.iter().map(|(b, _)| b.clone()).collect();
        let ids = publish(&sqs, &ingest, &bodies).await?;
        let at = Utc::now();
        published.extend(chunk.iter().zip(ids).map(|((_, what), sqs_id)| check::Published { what: *what, sqs_id, at }));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let quiet = wait_quiet(&stack, &direct, &observed, s.deadline).await?;
    say(
        started,
        &format!(
            "pipeline {} {:.0} s after the first publish",
            if quiet { "quiet" } else { "NOT quiet" },
            main_phase.elapsed().as_secs_f64()
        ),
    );
    if !s.real_claim_waits {
        let parked = let_parked_back(&direct, &observed).await;
        if parked > 0 {
            say(started, &format!("{parked} copies parked behind a claim let back (their wait taken as passed)"));
            wait_quiet(&stack, &direct, &observed, Duration::from_secs(90)).await?;
        }
    }
    // The last SES events (a second after their email) and what receipts make of them.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = wait_idle(&stack, &direct, Duration::from_secs(30), started).await;
    say(started, &format!("{}; checking", if idle { "idle" } else { "not idle" }));

    let data = herald_cli::moto::data(&moto.endpoint).await?;
    let journal = faults.journal();
    let provider_sends = observed.sends();
    let mut outcome = check::check(&check::Inputs {
        workload: &work,
        published: &published,
        sends: &provider_sends,
        stack: &stack,
        sdk: &direct,
        moto_data: &data,
        journal: &journal,
        log: &s.log,
    })
    .await?;
    ses.abort();
    if let Err(e) = write_journal(&s.log, &journal) {
        eprintln!("chaos: could not write the fault journal: {e:#}");
    }
    outcome.details.splice(0..0, setup_problems.iter().cloned());
    runner.stop().await;

    let counts = faults.counts();
    let line = format!(
        "chaos: seed {} · faults: {} · {} notifications (x2) + {} poison (x2) · lost {} · sent twice {} · \
         poison rejected {}/{} · dead-lettered {} · wrong status {} · personal data {} · late {} (slowest {} s){}{} · {} s",
        s.seed,
        check::faults_summary(&counts, if s.no_faults { &[] } else { &s.faults.outages }),
        work.notes.len(),
        work.poison.len(),
        outcome.lost,
        outcome.sent_twice,
        outcome.poison_rejected,
        outcome.poison_total,
        outcome.dead_lettered,
        outcome.wrong_status,
        outcome.personal_ledger + outcome.personal_logs,
        outcome.late,
        outcome.slowest_secs,
        if outcome.in_flight > 0 { format!(" · not idle: {} in flight", outcome.in_flight) } else { String::new() },
        if setup_problems.is_empty() { String::new() } else { format!(" · setup wrong {}", setup_problems.len()) },
        started.elapsed().as_secs()
    );
    for d in &outcome.details {
        eprintln!("chaos: {d}");
    }
    println!("{line}");
    Ok(outcome.perfect() && setup_problems.is_empty())
}

/// Local values standing in for a deployment's, so a run takes minutes:
/// - `RetryBaseSeconds` 30 -> 1: dispatch's back-off after a throttled or failed
///   provider call (1, 2, 4, 8 s instead of 30, 60, 120, 240 s).
/// - every function queue's `VisibilityTimeout` 60 -> 15 s: a record a handler
///   reports failed (or an invocation that failed) comes back after 15 s. The
///   template's 60 is 6 x the 10 s function timeout; 15 still outlasts the timeout,
///   so a running invocation's records are not delivered twice. (The broadcast queue's
///   function has 60 s, but the run sends no broadcast: its queue stays empty.)
/// - `RecipientWaitSeconds` 60 -> 2, as every local stack (`herald_cli::local`).
/// - `MaxReceiveCount` stays 5, the deployed default: the retry budget is what is tested.
async fn local_time_scale(stack: &mut herald_cli::stack::Stack, sdk: &aws_config::SdkConfig) -> anyhow::Result<()> {
    for spec in &mut stack.functions {
        if spec.env.contains_key("HERALD_RETRY_BASE_SECS") {
            spec.env.insert("HERALD_RETRY_BASE_SECS".into(), "1".into());
        }
    }
    let sqs = aws_sdk_sqs::Client::new(sdk);
    for spec in &stack.functions {
        if let Some(queue) = spec.queue() {
            let url = &stack.queue(queue)?.url;
            sqs.set_queue_attributes()
                .queue_url(url)
                .attributes(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, "15")
                .send()
                .await
                .with_context(|| format!("setting the visibility timeout of {queue}"))?;
        }
    }
    Ok(())
}

/// Sends bodies to the ingest queue in batches of ten; returns their SQS message ids in order.
async fn publish(sqs: &aws_sdk_sqs::Client, url: &str, bodies: &[String]) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(bodies.len());
    for chunk in bodies.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, b)| {
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder().id(i.to_string()).message_body(b).build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = sqs.send_message_batch().queue_url(url).set_entries(Some(entries)).send().await?;
        anyhow::ensure!(out.failed.is_empty(), "{} message(s) not queued by the producer", out.failed.len());
        let by_entry: BTreeMap<usize, String> =
            out.successful.into_iter().filter_map(|s| Some((s.id.parse().ok()?, s.message_id))).collect();
        for i in 0..chunk.len() {
            ids.push(by_entry.get(&i).cloned().context("an entry without a message id")?);
        }
    }
    Ok(ids)
}

async fn wait_idle(
    stack: &herald_cli::stack::Stack,
    sdk: &aws_config::SdkConfig,
    timeout: Duration,
    started: Instant,
) -> bool {
    match stack.wait_idle(sdk, timeout).await {
        Ok(()) => true,
        Err(e) => {
            say(started, &format!("{e:#}"));
            false
        }
    }
}

/// Waits until no function queue holds a visible or delayed message, and the
/// messages in flight are only copies parked behind a claim (three quiet looks in a
/// row). `Stack::wait_idle`, except for the parked copies.
async fn wait_quiet(
    stack: &herald_cli::stack::Stack,
    sdk: &aws_config::SdkConfig,
    observed: &observed::Observed,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let queues: Vec<String> =
        stack.functions.iter().filter_map(|f| Some(stack.queues.get(f.queue()?)?.url.clone())).collect();
    let deadline = Instant::now() + timeout;
    let mut quiet_rounds = 0;
    while quiet_rounds < 3 {
        if Instant::now() > deadline {
            return Ok(false);
        }
        let mut busy = 0usize;
        for url in &queues {
            let counts = check::queue_counts(&sqs, url).await?;
            let get = |name: &str| counts.iter().find(|(k, _)| *k == name).map_or(0, |(_, n)| *n);
            busy += get("visible") + get("delayed") + get("in flight").saturating_sub(observed.active_parks(url));
        }
        quiet_rounds = if busy == 0 { quiet_rounds + 1 } else { 0 };
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(true)
}

/// Makes every parked copy visible again, as if the claim it waits for had run out on
/// the queue's clock (the ledger's is not moved): a copy whose send was recorded
/// meanwhile finds it done; one that finds the claim still held parks again.
async fn let_parked_back(sdk: &aws_config::SdkConfig, observed: &observed::Observed) -> usize {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut n = 0;
    for park in observed.take_parks() {
        let changed = sqs
            .change_message_visibility()
            .queue_url(&park.queue_url)
            .receipt_handle(&park.receipt_handle)
            .visibility_timeout(0)
            .send()
            .await;
        n += usize::from(changed.is_ok());
    }
    n
}

/// Every fault injected, one a line (tab-separated: seconds, kind, service, operation,
/// tables, ids), beside the log: `<log>.faults.tsv`.
fn write_journal(log: &std::path::Path, journal: &[faults::FaultEvent]) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let mut text = String::from("at_s\tkind\tservice\toperation\ttables\tids\n");
    for e in journal {
        let _ = writeln!(
            text,
            "{:.3}\t{}\t{}\t{}\t{}\t{}",
            e.at.as_secs_f64(),
            e.kind,
            e.service,
            e.operation,
            e.tables.join(","),
            e.ids.join(",")
        );
    }
    std::fs::write(log.with_extension("faults.tsv"), text)?;
    Ok(())
}

/// Every recipient as upserted, with its consent and one device.
async fn verify_setup(
    stack: &herald_cli::stack::Stack,
    sdk: &aws_config::SdkConfig,
    w: &Workload,
) -> anyhow::Result<Vec<String>> {
    use herald::ports::RecipientStore;
    let table = stack.tables.get("RecipientsTable").context("no RecipientsTable")?;
    let store = herald::aws::dynamodb::DynamoRecipients::new(aws_sdk_dynamodb::Client::new(sdk), table);
    let mut problems = Vec::new();
    for p in &w.people {
        let id = herald::domain::RecipientId::new(p.id.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let Some(r) = store.get(&id).await? else {
            problems.push(format!("setup: recipient {} missing after the setup settled", p.id));
            continue;
        };
        let mut wrong = Vec::new();
        if r.email.is_some() != p.email.is_some() {
            wrong.push("email".to_owned());
        }
        if r.phone.is_some() != p.phone.is_some() {
            wrong.push("phone".to_owned());
        }
        let want = usize::from(p.token.is_some());
        if r.devices.len() != want {
            wrong.push(format!("{} device(s), expected {want}", r.devices.len()));
        }
        if p.marketing_consent && r.consents.is_empty() {
            wrong.push("no consent".to_owned());
        }
        if !wrong.is_empty() {
            problems.push(format!("setup: recipient {}: {}", p.id, wrong.join(", ")));
        }
    }
    Ok(problems)
}
