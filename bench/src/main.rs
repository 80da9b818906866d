//! `make bench`: what a notification costs, how fast the pipeline goes, how small
//! and quick the functions are. One table, each figure beside its budget
//! (SPEC.md, "Budgets"), printed and written to `bench/results/latest.{json,md}`.
//!
//! `herald-bench [--notifications N] [--quick] [--skip-artifacts] [--skip-growth]
//! [--skip-broadcast] [--broadcast-people N] [--skip-engagement] [--engagement-people N]`
//! (`make bench` runs the criterion hot paths first; this folds their means in).

mod artifacts;
mod broadcast;
mod broadcast_report;
mod costs;
mod counting;
mod dynamo;
mod engagement;
mod event_stream;
mod floor;
mod pipeline;
mod report;
mod scenarios;

use anyhow::Context as _;
use costs::{Cost, Prices};
use counting::{Call, Who};
use pipeline::{Env, Pipeline, send_all, sqs_event_json};
use report::{Table, num};
use scenarios::{Phase, Sizes};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;

/// The run's stack prefix and the floor's: the same length, so that a recorded
/// body with one swapped for the other keeps its length.
const RUN_PREFIX: &str = "hbrun1-";
const FLOOR_PREFIX: &str = "hbflr1-";

struct Args {
    notifications: usize,
    quick: bool,
    skip_artifacts: bool,
    skip_growth: bool,
    skip_broadcast: bool,
    broadcast_people: Option<usize>,
    skip_engagement: bool,
    skip_events: bool,
    events_only: bool,
    engagement_people: Option<usize>,
    start_runs: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        notifications: 1000,
        quick: false,
        skip_artifacts: false,
        skip_growth: false,
        skip_broadcast: false,
        broadcast_people: None,
        skip_engagement: false,
        skip_events: false,
        events_only: false,
        engagement_people: None,
        start_runs: 15,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--notifications" => a.notifications = it.next().context("--notifications N")?.parse()?,
            "--quick" => a.quick = true,
            "--skip-artifacts" => a.skip_artifacts = true,
            "--skip-growth" => a.skip_growth = true,
            "--skip-broadcast" => a.skip_broadcast = true,
            "--broadcast-people" => a.broadcast_people = Some(it.next().context("--broadcast-people N")?.parse()?),
            "--skip-engagement" => a.skip_engagement = true,
            "--skip-events" => a.skip_events = true,
            // Section 12 alone, printed, nothing written.
            "--events-only" => a.events_only = true,
            "--engagement-people" => a.engagement_people = Some(it.next().context("--engagement-people N")?.parse()?),
            "--start-runs" => a.start_runs = it.next().context("--start-runs N")?.parse()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Handlers log as in Lambda (JSON, info), into a sink: the cost of formatting is
    // kept, the console stays for the report. EMF metrics go to stdout, so they are off.
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::sink)
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .init();
    herald::metrics::disable();
    let args = args()?;
    let root = herald_cli::local::repo_root();
    let prices = Prices::load(&root.join("bench/prices.json")).context("bench/prices.json")?;
    let started = std::time::Instant::now();
    let env = Env::start(&root).await?;
    let memory_mb = template_memory_mb(&root).unwrap_or(128.0);

    let event_notifications = if args.quick { 50 } else { 200 };
    if args.events_only {
        let run = event_stream::run(&env, event_notifications, memory_mb).await?;
        let mut t = Table::default();
        event_stream::rows(&mut t, &run, &prices);
        println!("{}", t.text());
        return Ok(());
    }

    let sizes = if args.quick {
        Sizes { transactional: 50, marketing_recipients: 20, fallback: 10, push: 10, sms: 10 }
    } else {
        Sizes { transactional: args.notifications, marketing_recipients: 250, fallback: 200, push: 100, sms: 100 }
    };

    // 1. The main run: every scenario through one stack, phase by phase.
    eprintln!("herald-bench: main run on {} ({} transactional notifications)", env.moto.endpoint, sizes.transactional);
    let pipe = Pipeline::start(&env, RUN_PREFIX, &[], true).await?;
    let specs = pipe.stack.functions.clone();
    let main_run = scenarios::main_run(&env, &pipe, "bench", sizes).await?;
    let tables: Vec<String> = pipe.stack.tables.values().cloned().collect();
    let ddb = aws_sdk_dynamodb::Client::new(&env.plain);
    let snapshot = dynamo::Snapshot::read(&ddb, &tables).await?;
    pipe.stop().await;

    // 2. The floor: the same requests again, with no Herald in between.
    eprintln!("herald-bench: floor (the same requests, replayed)");
    let floor = run_floor(&env, &main_run).await?;

    // 3. How cost grows with campaign size and with the cap policy.
    let mut growth = Vec::new();
    if !args.skip_growth {
        let (recipients, caps_n) =
            if args.quick { (vec![1, 5], vec![1, 3]) } else { (vec![1, 10, 100], vec![1, 3, 10]) };
        for r in recipients {
            let prefix = format!("hbg{r:03}-");
            let (phase, tables) = scenarios::campaign_point(&env, &prefix, r, None).await?;
            let snap = dynamo::Snapshot::read(&ddb, &tables).await?;
            growth.push((format!("{r} recipient(s) per campaign"), phase, snap));
        }
        let n = if args.quick { 10 } else { 50 };
        for k in caps_n {
            let prefix = format!("hbc{k:03}-");
            let (phase, tables) = scenarios::campaign_point(&env, &prefix, n, Some(scenarios::cap_policy(k))).await?;
            let snap = dynamo::Snapshot::read(&ddb, &tables).await?;
            growth.push((format!("{k} cap window(s), {n} recipients"), phase, snap));
        }
    }

    // 3b. A broadcast to a segment: to SES and back, a single notification beside it, the
    // fan-out alone on tables of growing size and against its floor.
    let broadcast_run = if args.skip_broadcast {
        None
    } else {
        let people = args.broadcast_people.unwrap_or(if args.quick { 600 } else { 3_000 });
        let sizes = broadcast::Sizes { people, single: if args.quick { 60 } else { 200 }, growth: [1, 2, 4] };
        eprintln!("herald-bench: broadcast to a segment, {people} people in the recipients table");
        Some(broadcast::run(&env, sizes, memory_mb, &prices).await?)
    };

    // 3c. Digests and journeys, each person through the whole pipeline.
    let engagement_run = if args.skip_engagement {
        None
    } else {
        let people = args.engagement_people.unwrap_or(if args.quick { 10 } else { 50 });
        eprintln!("herald-bench: digests and journeys, {people} people");
        Some(engagement::run(&env, people).await?)
    };

    // 3d. The event stream, on a stack of its own.
    let event_run = if args.skip_events {
        None
    } else {
        eprintln!("herald-bench: the event stream, {event_notifications} notifications");
        Some(event_stream::run(&env, event_notifications, memory_mb).await?)
    };

    // 4. The functions' artifacts.
    let functions = if args.skip_artifacts {
        Vec::new()
    } else {
        eprintln!("herald-bench: function binaries");
        measure_functions(&env, &root, &specs, args.start_runs).await?
    };

    // 5. The hot paths, from criterion's estimates.
    let hot = hot_paths(&root);

    // The table.
    let mut t = Table::default();
    let txn = main_run.phase("transactional email").context("phase")?;
    let txn_rc = main_run.phase("transactional email: delivery receipts").context("phase")?;
    let single = cost_of(&[txn, txn_rc], txn.items, &snapshot, memory_mb, &prices);
    t.section(&format!(
        "1. Single-channel transactional email, ingest to delivery receipt ({} notifications; {})",
        txn.items,
        outcomes(txn_rc)
    ));
    t.budget(
        "DynamoDB write units per notification",
        num(single.write_units),
        "<= 3",
        Some(single.write_units <= 3.0),
        format!(
            "{} write requests; items sized after the run (largest {} B, {} writes over 1 KB)",
            num(single.units.write_units / single.notifications as f64),
            single.units.largest_item,
            single.units.writes_over_1kb
        ),
    );
    t.budget(
        "SQS requests per notification (handlers + event source)",
        num(single.sqs_billed),
        "<= 0.5",
        Some(single.sqs_billed <= 0.5),
        format!(
            "handlers {} (SendMessageBatch), event source {} (receive + delete); {} empty receives not counted",
            num(single.sqs_requests_herald),
            num(single.sqs_billed - single.sqs_requests_herald),
            single.empty_receives
        ),
    );
    t.budget(
        "SQS requests per notification (handlers only)",
        num(single.sqs_requests_herald),
        "<= 0.5",
        Some(single.sqs_requests_herald <= 0.5),
        "what Herald's code sends; the event source's receives and deletes are above",
    );
    t.info("DynamoDB read units per notification", num(single.read_units), "");
    t.info(
        "AWS requests per notification",
        num(single.requests),
        format!("handlers {}, event source {}", num(single.herald_requests), num(single.event_source_requests)),
    );
    t.info("Lambda invocations per notification", num(single.invocations), "");
    t.info(
        "AWS $ per million notifications",
        format!("{:.2}", single.usd_per_million_aws),
        format!(
            "Lambda {:.2} (GB-s from local durations, indicative), SQS {:.2}, DynamoDB {:.2}",
            single.usd_per_million_lambda, single.usd_per_million_sqs, single.usd_per_million_dynamodb
        ),
    );
    t.info(
        "provider floor $ per million (SES)",
        format!("{:.2}", single.usd_per_million_providers),
        "SES à la carte; prices in bench/prices.json",
    );

    t.section("2. Other scenarios, per notification (ingest to provider, receipts where SES sends them)");
    let scenario_rows: [(&str, &[&str]); 6] = [
        (
            "marketing with caps (2 campaigns per recipient, 1 sent)",
            &["marketing with caps", "marketing: delivery receipts"],
        ),
        ("fallback: disabled push endpoint -> email", &["fallback push -> email", "fallback: delivery receipts"]),
        ("transactional push", &["transactional push"]),
        ("transactional push, email as fallback (kept for a late failure)", &["transactional push, email as fallback"]),
        ("transactional sms", &["transactional sms"]),
        ("transactional inbox (stored: delivered, no receipt)", &["transactional inbox"]),
    ];
    let mut scenario_costs = BTreeMap::new();
    for (label, names) in scenario_rows {
        let phases: Vec<&Phase> = names.iter().filter_map(|n| main_run.phase(n)).collect();
        let Some(first) = phases.first() else { continue };
        let c = cost_of(&phases, first.items, &snapshot, memory_mb, &prices);
        t.info(
            label,
            format!("{} req", num(c.requests)),
            format!(
                "WCU {}, RCU {}, SQS {}, Lambda inv {}, AWS ${:.2}/M + providers ${:.2}/M{}; {}",
                num(c.write_units),
                num(c.read_units),
                num(c.sqs_billed),
                num(c.invocations),
                c.usd_per_million_aws,
                c.usd_per_million_providers,
                if c.unpriced.is_empty() { String::new() } else { format!(" (unpriced: {})", c.unpriced.join(", ")) },
                outcomes(phases.last().copied().unwrap_or(first))
            ),
        );
        scenario_costs.insert(label.to_owned(), c);
    }
    let setup = main_run.phase("setup: upsert_recipient").context("phase")?;
    let setup_cost = cost_of(&[setup], setup.items, &snapshot, memory_mb, &prices);
    t.info(
        "recipient command (upsert_recipient)",
        format!("{} req", num(setup_cost.requests)),
        format!("WCU {}, SQS {}", num(setup_cost.write_units), num(setup_cost.sqs_billed)),
    );
    let runs = &main_run.scheduler_runs;
    let steady: Vec<usize> = runs.iter().skip(1).copied().collect();
    t.info(
        "scheduler (EventBridge, every minute): first run",
        format!("{} req", runs.first().copied().unwrap_or(0)),
        "a new stack's first run reads back a whole day of minute buckets (FIRST_LOOKBACK), once",
    );
    t.info(
        "scheduler: each later run",
        if steady.is_empty() {
            "n/a".to_owned()
        } else {
            format!("{} req", num(steady.iter().sum::<usize>() as f64 / steady.len() as f64))
        },
        format!(
            "mean of {} runs over the {:.1} min main run; a fixed cost per minute, not per notification",
            steady.len(),
            main_run.minutes
        ),
    );

    t.section("3. Throughput through the whole local pipeline (moto on loopback)");
    let herald_s = txn.seconds + txn_rc.seconds;
    let herald_rate = txn.items as f64 / herald_s;
    let floor_rate = txn.items as f64 / floor.seconds;
    let overhead = herald_s / floor.seconds - 1.0;
    t.info(
        "Herald: notifications/s, ingest to delivery receipt",
        num(herald_rate),
        format!("{:.1} s to provider + {:.1} s for receipts", txn.seconds, txn_rc.seconds),
    );
    t.info(
        "floor: the same requests, no Herald logic",
        num(floor_rate),
        format!(
            "{} requests replayed raw, at most {} in flight as the pipeline had; {} answered differently",
            floor.requests, floor.concurrency, floor.diverged
        ),
    );
    t.budget(
        "Herald's overhead over the floor",
        format!("{:.0}%", overhead * 100.0),
        "< 25%",
        Some(overhead < 0.25),
        format!("Herald {herald_s:.1} s vs floor {:.1} s", floor.seconds),
    );

    t.section("4. Hot paths in-process (criterion, mean)");
    for (id, label, target_us) in [
        (
            "parse_ingest_1kb",
            "parse + validate a 1 KB ingest request (with \"type\", as the SPEC's example)",
            Some(5.0),
        ),
        ("parse_ingest_1kb_without_type", "parse + validate the same request without \"type\"", Some(5.0)),
        ("serde_json_value_1kb", "for scale: serde_json::Value of the same body, no validation", None),
        ("eligibility_decision", "one eligibility decision", Some(2.0)),
        ("render_push", "render order_shipped: push", Some(20.0)),
        ("render_email", "render order_shipped: email", Some(20.0)),
        ("render_sms", "render order_shipped: sms", Some(20.0)),
        ("ses_event_to_transition", "SES event -> ledger transition", None),
        ("ses_sqs_body_to_transition", "SES SQS body parsed -> ledger transition", None),
    ] {
        let value = hot.get(id).copied();
        let shown = value.map_or("not run".to_owned(), |ns| format!("{:.2} µs", ns / 1000.0));
        match target_us {
            Some(target) => t.budget(label, shown, format!("< {target} µs"), value.map(|ns| ns / 1000.0 < target), ""),
            None => t.info(label, shown, ""),
        }
    }

    t.section("5. Function artifacts (x86_64 release build here; arm64 Lambda artifact size where built)");
    for f in &functions {
        t.budget(
            format!("{}: stripped size", f.name),
            format!("{:.2} MB", f.x86.as_ref().map_or(f64::NAN, |b| b.bytes as f64 / 1e6)),
            "< 10 MB",
            f.x86.as_ref().map(|b| (b.bytes as f64) < 10e6 && b.stripped),
            match &f.arm {
                Some(b) => format!(
                    "arm64 bootstrap {:.2} MB{}",
                    b.bytes as f64 / 1e6,
                    if b.stripped { "" } else { " (not stripped)" }
                ),
                None => "no arm64 artifact (make build)".into(),
            },
        );
        t.budget(
            format!("{}: exec to first runtime API call", f.name),
            format!("{:.1} ms", f.start_median_ms),
            "< 20 ms",
            (!f.start_median_ms.is_nan()).then_some(f.start_median_ms < 20.0),
            format!("median of {} runs, max {:.1} ms", f.start_runs, f.start_max_ms),
        );
        t.budget(
            format!("{}: peak memory ({})", f.name, f.memory_for),
            f.peak_kib.map_or("n/a".into(), |k| format!("{:.1} MB", k as f64 / 1024.0)),
            "< 128 MB",
            f.peak_kib.map(|k| (k as f64) / 1024.0 < 128.0),
            "VmHWM",
        );
    }

    t.section("6. How cost grows (marketing, ingest to provider; fresh stack per point = cold caches)");
    let mut growth_json = Vec::new();
    for (label, phase, snap) in &growth {
        let c = cost_of(&[phase], phase.items, snap, memory_mb, &prices);
        t.info(
            label.as_str(),
            format!("{} req", num(c.requests)),
            format!(
                "DynamoDB {} req / {} WCU / {} RCU, SQS {}, Lambda inv {}; {}",
                num(c.dynamodb_requests),
                num(c.write_units),
                num(c.read_units),
                num(c.sqs_billed),
                num(c.invocations),
                outcomes(phase)
            ),
        );
        growth_json.push(json!({"point": label, "cost": c, "breakdown": breakdown_json(phase.pipeline_calls())}));
    }

    let mut broadcast_json = Value::Null;
    let mut broadcast_detail = String::new();
    if let Some(b) = &broadcast_run {
        let quotas = broadcast_report::Quotas::load(&root.join("bench/quotas.json")).context("bench/quotas.json")?;
        let defaults = broadcast_report::Defaults::read(&root);
        broadcast_json = broadcast_report::rows(&mut t, b, memory_mb, &prices, &quotas, &defaults);
        let phases: Vec<&Phase> = b.broadcast.iter().filter_map(|i| b.phase(*i)).collect();
        broadcast_detail = format!(
            "\n<details><summary>Requests per recipient reached by stage and operation (the broadcast, scan to delivery receipt)</summary>\n\n{}\n</details>\n",
            detail_markdown(&phases, b.reached).replace("per notification", "per recipient reached")
        );
    }

    let engagement_json = match &engagement_run {
        Some(run) => engagement::rows(&mut t, run, memory_mb, &prices),
        None => Value::Null,
    };

    let event_stream_json = match &event_run {
        Some(run) => event_stream::rows(&mut t, run, &prices),
        None => Value::Null,
    };

    // Output.
    let machine = machine();
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    let elapsed = started.elapsed().as_secs_f64() / 60.0;
    let detail = detail_markdown(&[txn, txn_rc], txn.items);
    let header = format!(
        "Measured {date} on {machine}; moto {} on loopback; prices read {} ({}). Run took {elapsed:.1} min{}.",
        moto_version(&root),
        prices.read_on,
        prices.region,
        if args.quick { " (a quick run, --quick: smaller samples)" } else { "" }
    );
    let text = t.text();
    println!("{header}\n{text}");
    let md = format!(
        "{header}\n{}\n\n<details><summary>Requests per notification by stage and operation (single-channel transactional email, ingest to delivery receipt)</summary>\n\n{detail}\n</details>\n{broadcast_detail}",
        t.markdown()
    );
    let out = root.join("bench/results");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("latest.md"), &md)?;
    let json_out = json!({
        "date": date,
        "machine": machine,
        "moto": moto_version(&root),
        "minutes": elapsed,
        "prices": prices,
        "rows": t.rows,
        "single_channel": {"cost": single, "breakdown": breakdown_json(txn.pipeline_calls().chain(txn_rc.pipeline_calls()))},
        "scenarios": scenario_costs,
        "phases": main_run.phases.iter().map(|p| json!({
            "name": p.name, "items": p.items, "seconds": p.seconds, "outcomes": p.outcomes,
            "requests": p.pipeline_calls().count(), "idle_polls": p.pipeline_calls().filter(|c| c.is_empty_receive()).count(),
            "breakdown": breakdown_json(p.pipeline_calls()),
        })).collect::<Vec<_>>(),
        "throughput": {"herald_seconds": herald_s, "floor_seconds": floor.seconds, "floor_requests": floor.requests,
                        "floor_concurrency": floor.concurrency, "floor_diverged": floor.diverged},
        "hot_paths_ns": hot,
        "functions": functions.iter().map(|f| json!({
            "name": f.name, "x86_64": f.x86, "arm64": f.arm, "start_median_ms": f.start_median_ms,
            "start_max_ms": f.start_max_ms, "start_runs": f.start_runs, "peak_kib": f.peak_kib, "memory_for": f.memory_for,
        })).collect::<Vec<_>>(),
        "growth": growth_json,
        "quick": args.quick,
        "broadcast": broadcast_json,
        "engagement": engagement_json,
        "event_stream": event_stream_json,
    });
    std::fs::write(out.join("latest.json"), serde_json::to_string_pretty(&json_out)?)?;
    if report::update_table(&root.join("docs/benchmarks.md"), &md)? {
        eprintln!("herald-bench: docs/benchmarks.md's table updated");
    }
    if broadcast_run.is_some() {
        let mut broadcast_rows = report::Table::default();
        broadcast_rows.rows =
            t.rows.iter().filter(|r| ["7.", "8.", "9."].iter().any(|p| r.section.starts_with(p))).cloned().collect();
        let block = format!("{header}\n{}{broadcast_detail}", broadcast_rows.markdown());
        let doc = root.join("docs/broadcast-costs.md");
        if report::update_block(&doc, report::BROADCAST_START, report::BROADCAST_END, &block)? {
            eprintln!("herald-bench: docs/broadcast-costs.md's figures updated");
        }
    }
    eprintln!("herald-bench: wrote bench/results/latest.json and latest.md");
    Ok(())
}

fn cost_of(phases: &[&Phase], notifications: usize, snap: &dynamo::Snapshot, memory_mb: f64, prices: &Prices) -> Cost {
    let calls: Vec<&Call> = phases.iter().flat_map(|p| p.pipeline_calls()).collect();
    let invocations: Vec<pipeline::Invocation> = phases.iter().flat_map(|p| p.invocations.iter().cloned()).collect();
    costs::cost(calls.iter().copied(), &invocations, notifications, snap, memory_mb, prices)
}

fn outcomes(p: &Phase) -> String {
    p.outcomes.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", ")
}

fn breakdown_json<'a>(calls: impl Iterator<Item = &'a Call>) -> Value {
    let b = costs::breakdown(calls);
    Value::Object(b.into_iter().map(|((function, role), ops)| (format!("{function} ({role})"), json!(ops))).collect())
}

/// Requests per notification by stage (function, handler or event source) and operation.
fn detail_markdown(phases: &[&Phase], n: usize) -> String {
    let b = costs::breakdown(phases.iter().flat_map(|p| p.pipeline_calls()));
    let mut out = String::from("| stage | operation | requests | per notification |\n|---|---|---:|---:|\n");
    for ((function, role), ops) in b {
        for (op, count) in ops {
            out.push_str(&format!(
                "| {function} ({role}) | {op} | {count} | {:.3} |\n",
                count as f64 / n.max(1) as f64
            ));
        }
    }
    out
}

struct Floor {
    seconds: f64,
    requests: usize,
    concurrency: usize,
    diverged: u64,
}

async fn run_floor(env: &Env, main_run: &scenarios::MainRun) -> anyhow::Result<Floor> {
    let setup = main_run.phase("setup: upsert_recipient").context("setup phase")?;
    let timed = [
        main_run.phase("transactional email").context("phase")?,
        main_run.phase("transactional email: delivery receipts").context("phase")?,
    ];
    // The setup's calls bring the floor's stack to the same state (recipients), untimed.
    herald_cli::local::provision(&env.plain, &env.root, FLOOR_PREFIX).await?;
    let replayer = floor::Replayer::new(RUN_PREFIX, FLOOR_PREFIX);
    let untimed: Vec<&Call> = setup.calls.iter().filter(|c| c.who == Who::Driver).chain(setup.work_calls()).collect();
    replayer.replay(&untimed, floor::peak_concurrency(&setup.work_calls().collect::<Vec<_>>())).await?;
    let mut f = Floor { seconds: 0.0, requests: 0, concurrency: 1, diverged: 0 };
    for phase in timed {
        let driver: Vec<&Call> = phase.calls.iter().filter(|c| c.who == Who::Driver).collect();
        replayer.replay(&driver, 4).await?;
        let work: Vec<&Call> = phase.replay_calls().collect();
        let concurrency = floor::peak_concurrency(&work);
        let took = replayer.replay(&work, concurrency).await?;
        f.seconds += took.as_secs_f64();
        f.requests += work.len();
        f.concurrency = f.concurrency.max(concurrency);
    }
    f.diverged = replayer.diverged.lock().map(|d| *d).unwrap_or_default();
    Ok(f)
}

struct FunctionFigures {
    name: String,
    x86: Option<artifacts::Binary>,
    arm: Option<artifacts::Binary>,
    start_median_ms: f64,
    start_max_ms: f64,
    start_runs: usize,
    peak_kib: Option<u64>,
    memory_for: String,
}

fn binary_env(spec: &herald_cli::stack::FunctionSpec, endpoint: &str) -> BTreeMap<String, String> {
    let mut env = spec.env.clone();
    for (k, v) in [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_SESSION_TOKEN", "test"),
    ] {
        env.insert(k.to_owned(), v.to_owned());
    }
    env
}

async fn measure_functions(
    env: &Env,
    root: &Path,
    specs: &[herald_cli::stack::FunctionSpec],
    runs: usize,
) -> anyhow::Result<Vec<FunctionFigures>> {
    let peaks = memory_chain(env, root).await?;
    let mut out = Vec::new();
    for spec in specs {
        let exe = artifacts::x86_binary(root, &spec.name);
        let x86 = artifacts::binary(&exe);
        let arm = artifacts::binary(&artifacts::arm_artifact(root, &spec.name));
        let mut starts = Vec::new();
        if x86.is_some() {
            let benv = binary_env(spec, &env.moto.endpoint);
            for _ in 0..runs {
                starts.push(artifacts::run_once(&exe, &spec.name, &benv, None).await?.start_ms);
            }
        }
        let (start_median_ms, start_max_ms) = artifacts::median_max(starts);
        let (peak_kib, memory_for) = peaks.get(&spec.name).cloned().unwrap_or((None, "not measured".into()));
        out.push(FunctionFigures {
            name: spec.name.clone(),
            x86,
            arm,
            start_median_ms,
            start_max_ms,
            start_runs: runs,
            peak_kib,
            memory_for,
        });
    }
    Ok(out)
}

/// Takes `n` messages off a queue (they stay in flight), as the event source would hand them over.
async fn take(
    sqs: &aws_sdk_sqs::Client,
    stack: &herald_cli::stack::Stack,
    queue: &str,
    n: usize,
) -> anyhow::Result<String> {
    let q = stack.queue(queue)?;
    let mut got = Vec::new();
    for _ in 0..20 {
        if got.len() >= n {
            break;
        }
        let out = sqs
            .receive_message()
            .queue_url(&q.url)
            .max_number_of_messages((n - got.len()).min(10) as i32)
            .wait_time_seconds(1)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await?;
        got.extend(out.messages.unwrap_or_default());
    }
    anyhow::ensure!(got.len() == n, "{queue}: {} message(s) instead of {n}", got.len());
    Ok(sqs_event_json(&got, &q.arn).to_string())
}

/// Peak memory of each binary handling a real batch of 10: the binaries run the
/// pipeline themselves, each fed the messages the previous one queued.
async fn memory_chain(env: &Env, root: &Path) -> anyhow::Result<BTreeMap<String, (Option<u64>, String)>> {
    let pipe = Pipeline::start(env, "hbmem1-", &[], false).await?;
    let who = |kind: &str, i: usize| format!("mem-{kind}-{i}");
    let mut setup = Vec::new();
    for i in 0..10 {
        setup.push(
            json!({"type": "upsert_recipient", "recipient": who("e", i), "email": format!("mem-e-{i}@example.com")})
                .to_string(),
        );
        setup.push(json!({"type": "upsert_recipient", "recipient": who("p", i)}).to_string());
        setup.push(json!({"type": "register_push_token", "recipient": who("p", i), "platform": "fcm", "token": format!("mem-tok-{i}")}).to_string());
        setup.push(json!({"type": "upsert_recipient", "recipient": who("s", i), "phone": format!("+1555{:07}", 2_000_000 + i)}).to_string());
        setup.push(json!({"type": "upsert_recipient", "recipient": who("i", i)}).to_string());
    }
    scenarios::setup_phase(env, &pipe, "memory: setup", setup.len(), &setup).await?;
    let stack = pipe.stack.clone();
    pipe.stop().await;
    let spec = |name: &str| stack.functions.iter().find(|f| f.name == name).cloned();
    let sqs = aws_sdk_sqs::Client::new(&env.plain);
    let ingest_url = stack.queue("IngestQueue")?.url.clone();
    let mut peaks: BTreeMap<String, (Option<u64>, String)> = BTreeMap::new();
    let run = |name: &str, event: String, what: &str| {
        let spec = spec(name);
        let exe = artifacts::x86_binary(root, name);
        let what = what.to_owned();
        let name = name.to_owned();
        let endpoint = env.moto.endpoint.clone();
        async move {
            let Some(spec) = spec else { return Ok::<_, anyhow::Error>((name, None, what)) };
            if !exe.exists() {
                return Ok((name, None, what));
            }
            let r = artifacts::run_once(&exe, &name, &binary_env(&spec, &endpoint), Some(event)).await?;
            // An SQS handler answers with its partial batch response: every record must have gone through.
            let failures = r
                .response
                .as_deref()
                .and_then(|b| serde_json::from_str::<Value>(b).ok())
                .and_then(|v| v.get("batchItemFailures").and_then(Value::as_array).map(Vec::len));
            let what = match failures {
                Some(0) | None => what,
                Some(n) => format!("{what}; {n} record(s) failed"),
            };
            Ok((name, r.peak_kib, what))
        }
    };
    let mut record = |(name, peak, what): (String, Option<u64>, String)| {
        let entry = peaks.entry(name).or_insert((None, what.clone()));
        if peak > entry.0 {
            *entry = (peak, what);
        }
    };
    for (kind, channel_queue, dispatch, template, extra) in [
        ("e", "EmailQueue", "dispatch-email", "order_shipped", json!({"channels": ["email"]})),
        ("p", "PushQueue", "dispatch-push", "order_shipped", json!({"channels": ["push"]})),
        ("s", "SmsQueue", "dispatch-sms", "security_code", json!({"channels": ["sms"], "data": {"code": "482913"}})),
        ("i", "InboxQueue", "dispatch-inbox", "order_shipped", json!({"channels": ["inbox"]})),
    ] {
        let keys: Vec<(String, String)> =
            (0..10).map(|i| (format!("mem-{kind}-key-{i}"), format!("mem-{kind}-{i}@example.com"))).collect();
        let bodies: Vec<String> = keys
            .iter()
            .enumerate()
            .map(|(i, (k, _))| {
                let mut extra = extra.clone();
                if extra.get("data").is_none() {
                    extra["data"] = json!({"order_id": format!("{i:08}")});
                }
                scenarios::notify(k, &who(kind, i), template, "transactional", extra)
            })
            .collect();
        send_all(&sqs, &ingest_url, &bodies).await?;
        record(run("ingest", take(&sqs, &stack, "IngestQueue", 10).await?, "a batch of 10 notifications").await?);
        record(run("eligibility", take(&sqs, &stack, "EligibilityQueue", 10).await?, "a batch of 10 jobs").await?);
        record(run(dispatch, take(&sqs, &stack, channel_queue, 10).await?, "a batch of 10 sends").await?);
        if kind == "e" {
            let fates = scenarios::fates(env, &stack, &keys).await?;
            let sns = aws_sdk_sns::Client::new(&env.plain);
            let topic = stack.topics.get("SesEventsTopic").context("SesEventsTopic")?;
            for m in scenarios::ses_messages(&env.root, &fates.emails)? {
                sns.publish().topic_arn(topic).message(m).subject("Amazon SES Email Event Notification").send().await?;
            }
            record(run("receipts", take(&sqs, &stack, "ReceiptsQueue", 10).await?, "a batch of 10 SES events").await?);
        }
    }
    // A page of a broadcast: the segment pushed, 2,000 people in the table, the command
    // through ingest; the broadcast function reads the first page of one scan segment.
    broadcast::push_segment(env, &stack).await?;
    broadcast::seed(env, &stack, 0..2_000, broadcast::kind).await?;
    send_all(&sqs, &ingest_url, &[broadcast::command("bench-memory")]).await?;
    record(run("ingest", take(&sqs, &stack, "IngestQueue", 1).await?, "a broadcast command").await?);
    let page = format!("a broadcast page of {} items", herald::domain::broadcast::MAX_PAGE_ITEMS);
    record(run("broadcast", take(&sqs, &stack, "BroadcastQueue", 1).await?, &page).await?);
    let tick =
        json!({"version": "0", "source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}).to_string();
    record(run("scheduler", tick, "one scheduled run, nothing due").await?);
    let request = herald_cli::web::RawRequest {
        method: "GET".into(),
        path: "/unsubscribe".into(),
        query: "t=not-a-token".into(),
        headers: vec![("user-agent".into(), "herald-bench".into())],
        body: Vec::new(),
    };
    let url_event = herald_cli::web::function_url_event(&request, 443).to_string();
    record(run("webhooks", url_event, "one request (a bad unsubscribe link)").await?);
    let request = herald_cli::web::RawRequest {
        method: "GET".into(),
        path: "/v1/messages".into(),
        query: "limit=20".into(),
        headers: vec![("authorization".into(), "Bearer not-a-token".into())],
        body: Vec::new(),
    };
    let url_event = herald_cli::web::function_url_event(&request, 443).to_string();
    record(run("inbox", url_event, "one request (a forged user token)").await?);
    Ok(peaks)
}

/// Criterion's mean estimate for each hot path, in ns (`cargo bench` writes them under <target>/criterion).
fn hot_paths(root: &Path) -> BTreeMap<String, f64> {
    let dir = artifacts::target_dir(root).join("criterion/hot");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let path = entry.path().join("new/estimates.json");
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
        if let Some(mean) = v.pointer("/mean/point_estimate").and_then(Value::as_f64) {
            out.insert(entry.file_name().to_string_lossy().to_string(), mean);
        }
    }
    out
}

fn template_memory_mb(root: &Path) -> Option<f64> {
    let t = herald_cli::stack::read_template(&root.join("template.yaml")).ok()?;
    t.get("Globals")?.get("Function")?.get("MemorySize")?.as_f64()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned()))
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem_gb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find_map(|l| l.strip_prefix("MemTotal:").map(str::to_owned)))
        .and_then(|v| v.split_whitespace().next().and_then(|k| k.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|o| o.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_owned())))
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, {mem_gb:.0} GB, {os}, x86_64")
}

fn moto_version(root: &Path) -> String {
    std::fs::read_to_string(root.join("requirements-dev.txt"))
        .ok()
        .and_then(|r| r.lines().find_map(|l| l.strip_prefix("moto[server]==").map(str::to_owned)))
        .unwrap_or_else(|| "?".into())
}
