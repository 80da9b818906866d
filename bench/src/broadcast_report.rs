//! The broadcast's rows of the table: cost per recipient reached stage by stage beside a
//! single notification and the SPEC's budget, the fan-out on tables of growing size and
//! its pace beside its floor, and, on paper, a broadcast to 10 million recipients on AWS
//! from those figures, the template's defaults and AWS's quotas (`bench/quotas.json`).

use crate::broadcast::{BroadcastRun, FanOutPoint, RATE, Stage};
use crate::costs::{Cost, Prices};
use crate::counting::{Call, Who};
use crate::dynamo::ScanRead;
use crate::report::{Table, num};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Quota {
    pub value: Option<f64>,
    pub unit: String,
    #[serde(default)]
    pub sources: Vec<String>,
    #[serde(default)]
    pub note: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Quotas {
    pub read_on: String,
    pub how: String,
    pub items: BTreeMap<String, Quota>,
}

impl Quotas {
    pub fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
    }

    fn get(&self, name: &str) -> f64 {
        self.items.get(name).and_then(|q| q.value).unwrap_or(f64::NAN)
    }
}

/// The template's defaults the estimate uses (`Parameters.<name>.Default`).
#[derive(Debug, Clone, Serialize)]
pub struct Defaults {
    pub scan_segments: f64,
    pub broadcast_concurrency: f64,
    pub email_concurrency: f64,
    pub dispatch_batch_size: f64,
}

impl Defaults {
    pub fn read(root: &std::path::Path) -> Self {
        let t = herald_cli::stack::read_template(&root.join("template.yaml")).ok();
        let get = |name: &str| {
            t.as_ref().and_then(|t| t.get("Parameters")?.get(name)?.get("Default")?.as_f64()).unwrap_or(f64::NAN)
        };
        Self {
            scan_segments: get("BroadcastScanSegments"),
            broadcast_concurrency: get("BroadcastConcurrency"),
            email_concurrency: get("EmailConcurrency"),
            dispatch_batch_size: get("DispatchBatchSize"),
        }
    }
}

fn kb(bytes: u64) -> String {
    format!("{:.0} KB", bytes as f64 / 1024.0)
}

fn share(read: &ScanRead, kind: &str) -> (u64, u64) {
    read.by_kind.get(kind).copied().unwrap_or_default()
}

fn kinds(read: &ScanRead) -> String {
    ["profile", "consent audit", "endpoint index", "other"]
        .iter()
        .filter_map(|k| {
            let (n, b) = share(read, k);
            (n > 0).then(|| format!("{k} {n} ({}, {:.0}%)", kb(b), 100.0 * b as f64 / read.bytes.max(1) as f64))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Records per invocation, by function.
fn fill(c: &Cost) -> String {
    c.batch_fill.iter().map(|(f, n)| format!("{f} {n:.1}")).collect::<Vec<_>>().join(", ")
}

fn money(c: &Cost) -> String {
    format!(
        "AWS ${:.2}/M (Lambda {:.2}, SQS {:.2}, DynamoDB {:.2})",
        c.usd_per_million_aws, c.usd_per_million_lambda, c.usd_per_million_sqs, c.usd_per_million_dynamodb
    )
}

fn units(c: &Cost) -> String {
    format!(
        "WCU {}, RCU {}, SQS {}, Lambda inv {}",
        num(c.write_units),
        num(c.read_units),
        num(c.sqs_billed),
        num(c.invocations)
    )
}

/// One figure of a cost, as the budget compares it.
type Measure<'a> = &'a dyn Fn(&Cost) -> f64;

/// Dollars per million without Lambda's GB-seconds (from local durations against moto,
/// only indicative): Lambda's requests, SQS and DynamoDB, all counted exactly.
fn exact_usd(c: &Cost, prices: &Prices) -> f64 {
    let per_invocation = prices.items.get("lambda_request").and_then(|p| p.usd.map(|u| u / p.per)).unwrap_or(0.0);
    c.usd_per_million_aws - c.usd_per_million_lambda + c.invocations * per_invocation * 1e6
}

/// `a + b`, field by field, for the figures the budget compares.
fn plus(a: &Cost, b: &Cost) -> Cost {
    Cost {
        requests: a.requests + b.requests,
        write_units: a.write_units + b.write_units,
        read_units: a.read_units + b.read_units,
        sqs_billed: a.sqs_billed + b.sqs_billed,
        invocations: a.invocations + b.invocations,
        usd_per_million_aws: a.usd_per_million_aws + b.usd_per_million_aws,
        usd_per_million_lambda: a.usd_per_million_lambda + b.usd_per_million_lambda,
        usd_per_million_sqs: a.usd_per_million_sqs + b.usd_per_million_sqs,
        usd_per_million_dynamodb: a.usd_per_million_dynamodb + b.usd_per_million_dynamodb,
        usd_per_million_providers: a.usd_per_million_providers + b.usd_per_million_providers,
        ..Cost::default()
    }
}

/// Writes the broadcast's rows (sections 7 to 9) into `t`; returns their figures as JSON.
pub fn rows(
    t: &mut Table,
    b: &BroadcastRun,
    memory_mb: f64,
    prices: &Prices,
    quotas: &Quotas,
    defaults: &Defaults,
) -> Value {
    let c = |stages: &[Stage], lambda: Option<bool>| b.cost(stages, lambda, memory_mb, prices);
    let fan_stages = [Stage::Scan, Stage::Record, Stage::ToIngest, Stage::NextPage, Stage::FanOutEventSource];
    let scan = c(&[Stage::Scan], None);
    let rec = c(&[Stage::Record], None);
    let to_ingest = c(&[Stage::ToIngest], None);
    let hand_off = c(&[Stage::NextPage, Stage::FanOutEventSource], None);
    let fan_out = c(&fan_stages, Some(true));
    let start = c(&[Stage::Start], None);
    let state_reads = c(&[Stage::StateReads], None);
    let notification = c(&[Stage::Notification], Some(false));
    let all = c(&[&fan_stages[..], &[Stage::Start, Stage::StateReads, Stage::Notification][..]].concat(), None);
    // Lambda for the whole: both sets of invocations.
    let all = Cost {
        invocations: fan_out.invocations + notification.invocations,
        usd_per_million_lambda: fan_out.usd_per_million_lambda + notification.usd_per_million_lambda,
        usd_per_million_aws: all.usd_per_million_aws
            + fan_out.usd_per_million_lambda
            + notification.usd_per_million_lambda,
        ..all
    };
    let single = b.single_cost(memory_mb, prices);
    let producer = b.producer_sends();
    let producer_cost = Cost {
        requests: producer,
        sqs_billed: producer,
        usd_per_million_sqs: producer
            * prices.items.get("sqs_request").and_then(|p| p.usd.map(|u| u / p.per)).unwrap_or(0.0)
            * 1e6,
        ..Cost::default()
    };
    let producer_cost = Cost { usd_per_million_aws: producer_cost.usd_per_million_sqs, ..producer_cost };
    // Its share of the scan: what the broadcast does beyond its messages, that is the
    // command (once) and every page (the Scan, the record, the hand-off): the fan-out
    // less its sends to ingest, which stand for the producer's sends of a single
    // notification, plus ingest's handling of the command.
    let scan_share = Cost {
        requests: fan_out.requests - to_ingest.requests + start.requests,
        write_units: fan_out.write_units - to_ingest.write_units + start.write_units,
        read_units: fan_out.read_units - to_ingest.read_units + start.read_units,
        sqs_billed: fan_out.sqs_billed - to_ingest.sqs_billed + start.sqs_billed,
        invocations: fan_out.invocations,
        usd_per_million_aws: fan_out.usd_per_million_aws - to_ingest.usd_per_million_aws + start.usd_per_million_aws,
        usd_per_million_lambda: fan_out.usd_per_million_lambda,
        ..Cost::default()
    };
    let budget = plus(&plus(&single, &producer_cost), &scan_share);

    let counts = &b.counts;
    let missed: Vec<String> = counts.missed.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let outcomes = b
        .phase(b.broadcast[1])
        .map(|p| p.outcomes.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    t.section(&format!(
        "7. Broadcast to a segment: {} people, {} reached, per recipient reached (scan to delivery receipt; at {} per second)",
        b.people, b.reached, RATE
    ));
    t.info(
        "audience",
        format!("{} of {}", counts.matched, counts.scanned),
        format!("{outcomes}; left out by the scan: {}", missed.join(", ")),
    );
    t.info(
        "fan-out: Scan of the recipients table",
        format!("{} req", num(scan.requests)),
        format!(
            "{} pages in {} parallel segments; RCU {} per recipient reached (eventually consistent, billed on every item read: {} items, {}: {})",
            b.pages,
            defaults.scan_segments,
            num(scan.read_units),
            b.read.items,
            kb(b.read.bytes),
            kinds(&b.read)
        ),
    );
    let record_size = b
        .snapshot
        .sizes
        .iter()
        .filter(|((_, key), _)| key.starts_with("broadcast#bench-launch"))
        .map(|(_, size)| *size)
        .max()
        .unwrap_or(0);
    t.info(
        "fan-out: the broadcast's record (read, take_positions, commit_page)",
        format!("{} req", num(rec.requests)),
        format!(
            "WCU {}, RCU {}; the record is {record_size} B after the run: each update costs {} WCU, each consistent read {} RCU",
            num(rec.write_units),
            num(rec.read_units),
            record_size.max(1).div_ceil(1024),
            record_size.max(1).div_ceil(4096)
        ),
    );
    t.info(
        "fan-out: notifications to the ingest queue",
        format!("{} req", num(to_ingest.requests)),
        format!("SendMessageBatch, {} messages a batch", num(1.0 / to_ingest.requests.max(f64::MIN_POSITIVE))),
    );
    t.info(
        "fan-out: page hand-off (next page's job; event source receive + delete)",
        format!("{} req", num(hand_off.requests)),
        "",
    );
    t.info(
        "fan-out in all",
        format!("{} req", num(fan_out.requests)),
        format!("{}; {}", units(&fan_out), money(&fan_out)),
    );
    t.info(
        "ingest: the broadcast command",
        format!("{} req", start.requests * b.reached as f64),
        "in all, once per broadcast: the segment, schema, campaign and template reads, the record, the first page jobs",
    );
    t.info(
        "ingest: the broadcast's state, read for its messages",
        format!("{} req", num(state_reads.requests)),
        "a GetItem per ingest instance every few seconds (STATE_CACHE), so that a pause stops the messages already queued",
    );
    t.info(
        "notification path: ingest to delivery receipt",
        format!("{} req", num(notification.requests)),
        format!(
            "{}; {} + providers ${:.2}/M",
            units(&notification),
            money(&notification),
            notification.usd_per_million_providers
        ),
    );
    let single_outcomes = b
        .phase(b.single[1])
        .map(|p| p.outcomes.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    t.info(
        "single notification: the same message, from a producer",
        format!("{} req", num(single.requests)),
        format!(
            "{}; {} + providers ${:.2}/M; the producer's SendMessageBatch {} more ({} notifications: {single_outcomes})",
            units(&single),
            money(&single),
            single.usd_per_million_providers,
            num(producer),
            b.single_sent
        ),
    );
    t.info(
        "broadcast in all",
        format!("{} req", num(all.requests)),
        format!("{}; {} + providers ${:.2}/M", units(&all), money(&all), notification.usd_per_million_providers),
    );
    let basis = |f: &dyn Fn(&Cost) -> f64| {
        format!(
            "single {} + producer's send {} + share of the scan {} (the command, and each page's Scan, record and hand-off)",
            num(f(&single)),
            num(f(&producer_cost)),
            num(f(&scan_share))
        )
    };
    let usd = |c: &Cost| exact_usd(c, prices);
    let verdicts: [(&str, Measure<'_>, String); 4] = [
        ("AWS requests per recipient reached", &|c: &Cost| c.requests, String::new()),
        ("DynamoDB write units per recipient reached", &|c: &Cost| c.write_units, String::new()),
        ("DynamoDB read units per recipient reached", &|c: &Cost| c.read_units, String::new()),
        (
            "AWS $ per million recipients reached (Lambda requests, SQS, DynamoDB)",
            &usd,
            format!(
                "; with Lambda's GB-seconds from local durations (indicative): broadcast ${:.2}/M, single + share ${:.2}/M",
                all.usd_per_million_aws, budget.usd_per_million_aws
            ),
        ),
    ];
    let mut budget_json = BTreeMap::new();
    for (label, f, more) in verdicts {
        let (got, limit) = (f(&all), f(&budget));
        let ok = got <= limit;
        t.budget(
            format!("broadcast vs a single notification: {label}"),
            num(got),
            format!("<= {}", num(limit)),
            Some(ok),
            format!("{}{more}", basis(f)),
        );
        budget_json.insert(label.to_owned(), json!({"broadcast": got, "budget": limit, "met": ok}));
    }
    // Where a difference comes from: what the broadcast's messages do that a single
    // notification does not, and their way beside the single's.
    let path = |c: &Cost| c.requests;
    t.info(
        "broadcast less (single + share of the scan), requests",
        format!("{:+.3} req", path(&all) - path(&budget)),
        format!(
            "ingest's state reads {:+.3} (RCU {:+.3}), its messages from ingest to receipt and its sends to ingest against the single's and the producer's {:+.3} (the event sources' batches: {} records an invocation for the broadcast's messages, {} for the single's)",
            state_reads.requests,
            state_reads.read_units,
            notification.requests + to_ingest.requests - single.requests - producer,
            fill(&notification),
            fill(&single)
        ),
    );

    // 8. The fan-out alone: growth and pace.
    t.section("8. Broadcast fan-out alone (the broadcast function only): tables grown with people outside the audience, and its pace");
    let base = b.growth.first();
    for p in &b.growth {
        let times = base.map_or(f64::NAN, |b0| p.scan_read_units / b0.scan_read_units);
        let bytes = base.map_or(f64::NAN, |b0| p.read.bytes as f64 / b0.read.bytes.max(1) as f64);
        t.info(
            format!("{} ({} items), {} matched", p.label, p.read.items, p.counts.matched),
            format!("{} RCU", num(p.scan_read_units)),
            format!(
                "scan RCU per recipient reached: x{:.2} the first table's, which read x{:.2} its bytes; Scan {} req, fan-out {} req and {} per recipient reached ({} pages); {}",
                times,
                bytes,
                num(p.scan_requests),
                num(p.cost.requests),
                money(&p.cost),
                p.pages,
                kinds(&p.read)
            ),
        );
    }
    if let Some(p) = base {
        let (_, profile_bytes) = share(&p.read, "profile");
        let other = p.read.bytes.saturating_sub(profile_bytes);
        let fraction = other as f64 / p.read.bytes.max(1) as f64;
        t.info(
            "consent audit and endpoint index items in the scan",
            format!("{:.0}%", 100.0 * fraction),
            format!(
                "of the bytes the first table's scan read ({} of {}): about {} of its {} RCU per recipient reached; profiles alone would read {}",
                kb(other),
                kb(p.read.bytes),
                num(p.scan_read_units * fraction),
                num(p.scan_read_units),
                kb(profile_bytes)
            ),
        );
        let rate = p.counts.scanned as f64 / p.seconds.max(f64::MIN_POSITIVE);
        let floor_rate = p.counts.scanned as f64 / b.floor_seconds.max(f64::MIN_POSITIVE);
        t.info(
            "fan-out: profiles judged per second (one local worker)",
            num(rate),
            format!(
                "{} recipients queued per second; {} pages in {:.1} s, {:.0} ms per page invocation",
                num(p.counts.queued as f64 / p.seconds.max(f64::MIN_POSITIVE)),
                p.pages,
                p.seconds,
                p.mean_invocation_ms
            ),
        );
        t.info(
            "floor: the fan-out's requests, no Herald logic",
            num(floor_rate),
            format!(
                "{} requests replayed raw in {:.1} s as the fan-out issued them; {} answered differently",
                b.floor_requests, b.floor_seconds, b.floor_diverged
            ),
        );
        t.info(
            "fan-out's overhead over the floor",
            format!("{:.0}%", (p.seconds / b.floor_seconds.max(f64::MIN_POSITIVE) - 1.0) * 100.0),
            format!("fan-out {:.1} s vs floor {:.1} s", p.seconds, b.floor_seconds),
        );
    }

    // 9. On paper.
    let paper = paper(t, b, &all, &notification, quotas, defaults, prices);

    let stage_json: BTreeMap<&str, &Cost> = [
        ("fan_out_scan", &scan),
        ("fan_out_record", &rec),
        ("fan_out_to_ingest", &to_ingest),
        ("fan_out_hand_off", &hand_off),
        ("fan_out", &fan_out),
        ("ingest_start", &start),
        ("ingest_state_reads", &state_reads),
        ("notification_path", &notification),
        ("all", &all),
    ]
    .into_iter()
    .collect();
    let growth_json: Vec<Value> = b.growth.iter().map(point_json).collect();
    let json = json!({
        "people": b.people, "reached": b.reached, "counts": b.counts, "pages": b.pages, "read": b.read,
        "per_recipient_reached": stage_json,
        "single": {"notifications": b.single_sent, "cost": single, "producer_sends": producer},
        "scan_share": scan_share,
        "budget": budget_json,
        "growth": growth_json,
        "floor": {"seconds": b.floor_seconds, "requests": b.floor_requests, "diverged": b.floor_diverged},
        "paper": paper,
        "quotas": quotas,
        "defaults": defaults,
        "phases": b.phases.iter().map(|p| json!({"name": p.name, "items": p.items, "seconds": p.seconds, "outcomes": p.outcomes,
            "requests": p.pipeline_calls().count()})).collect::<Vec<_>>(),
    });
    json
}

fn point_json(p: &FanOutPoint) -> Value {
    serde_json::to_value(p).unwrap_or_default()
}

fn duration(secs: f64) -> String {
    if !secs.is_finite() {
        "n/a".into()
    } else if secs < 120.0 {
        format!("{secs:.0} s")
    } else if secs < 2.0 * 3600.0 {
        format!("{:.0} min", secs / 60.0)
    } else if secs < 2.0 * 86400.0 {
        format!("{:.1} h", secs / 3600.0)
    } else {
        format!("{:.1} days", secs / 86400.0)
    }
}

/// A broadcast to 10 million recipients on AWS, on paper: its cost from the measured
/// figures per recipient reached, its time from the slowest of its limits.
fn paper(
    t: &mut Table,
    b: &BroadcastRun,
    all: &Cost,
    notification: &Cost,
    q: &Quotas,
    d: &Defaults,
    prices: &Prices,
) -> Value {
    const N: f64 = 10_000_000.0;
    let mut p = Table::default();
    p.section("9. On paper: a broadcast to 10 million recipients on AWS (from the figures above, the template's defaults and bench/quotas.json)");
    let Some(base) = b.growth.first() else { return Value::Null };
    let matched_share = b.counts.matched as f64 / b.counts.scanned.max(1) as f64;
    let people = N / matched_share;
    let items_per_person = base.read.items as f64 / base.people.max(1) as f64;
    let bytes_per_person = base.read.bytes as f64 / base.people.max(1) as f64;
    let rru_price =
        prices.items.get("dynamodb_read_request_unit").and_then(|p| p.usd.map(|u| u / p.per)).unwrap_or(f64::NAN);
    let scan_units = N * base.scan_read_units;
    p.info(
        "the table, at this bench's mix",
        format!("{:.1} M people", people / 1e6),
        format!(
            "{:.0}% in the audience; {:.2} items and {:.0} B read per person (profile, consent audit, endpoint index)",
            matched_share * 100.0,
            items_per_person,
            bytes_per_person
        ),
    );
    p.info(
        "the scan",
        format!("{:.0} RCU", scan_units),
        format!(
            "${:.2} (eventually consistent; {:.0} pages of at most {} items); {:.1} GB read",
            scan_units * rru_price,
            N * base.scan_requests,
            herald::domain::broadcast::MAX_PAGE_ITEMS,
            people * bytes_per_person / 1e9
        ),
    );
    p.info(
        "the whole broadcast, AWS",
        format!("${:.0}", N * all.usd_per_million_aws / 1e6),
        format!("{}; SES adds ${:.0} (à la carte)", money(all), N * notification.usd_per_million_providers / 1e6),
    );
    // The limits, each as recipients reached per second. A page on AWS: its requests one
    // after another (as measured) at an assumed latency, for a full page of items.
    let reached_per_item = base.counts.matched as f64 / base.read.items.max(1) as f64;
    let page_reached = f64::from(herald::domain::broadcast::MAX_PAGE_ITEMS) * reached_per_item;
    let fixed_per_page = base.requests.saturating_sub(base.to_ingest) as f64 / base.pages.max(1) as f64;
    let sends_per_reached = base.to_ingest as f64 / base.counts.matched.max(1) as f64;
    let page_requests = fixed_per_page + page_reached * sends_per_reached;
    let latency_ms = q.get("aws_request_latency_ms");
    let page_s = page_requests * latency_ms / 1000.0;
    let chains = d.scan_segments.min(d.broadcast_concurrency);
    let fan_out_rate = chains * page_reached / page_s;
    let rcu_per_s = fan_out_rate * base.scan_read_units;
    let composition = base
        .per_page
        .iter()
        .map(|(op, (n, ms))| format!("{op} {n:.1} ({ms:.0} ms here)"))
        .collect::<Vec<_>>()
        .join(", ");
    p.info(
        format!("fan-out: {} scan segments, BroadcastConcurrency {}", d.scan_segments, d.broadcast_concurrency),
        format!("{}/s", num(fan_out_rate)),
        format!(
            "{} chains of pages at once (a segment's pages follow each other); a full page reads {} items, reaches {:.0} people and makes {:.0} requests one after another, at {} ms each (an assumption: bench/quotas.json) {:.2} s: {} for 10 M, the scan reading {:.0} RCU/s. Measured here, per page: {}; {:.0} ms a page invocation against moto",
            chains,
            herald::domain::broadcast::MAX_PAGE_ITEMS,
            page_reached,
            page_requests,
            latency_ms,
            page_s,
            duration(N / fan_out_rate),
            rcu_per_s,
            composition,
            base.mean_invocation_ms
        ),
    );
    let per_segment_cap =
        q.get("dynamodb_partition_read_units_per_second") / base.scan_read_units.max(f64::MIN_POSITIVE);
    let table_cap = q.get("dynamodb_table_read_units_per_second") / base.scan_read_units.max(f64::MIN_POSITIVE);
    p.info(
        "DynamoDB: the scan's own ceiling",
        format!("{}/s", num(table_cap)),
        format!(
            "the table's {} RRU/s quota ({} at once for a new table) at {} RCU per recipient reached; a segment reads one partition at a time, {} RRU/s: {}/s per segment. Never the limit: the pages' own work is",
            q.get("dynamodb_table_read_units_per_second"),
            q.get("dynamodb_new_table_read_units_per_second"),
            num(base.scan_read_units),
            q.get("dynamodb_partition_read_units_per_second"),
            num(per_segment_cap)
        ),
    );
    let lambda = q.get("lambda_concurrent_executions");
    let wide = 64.0 * page_reached / page_s;
    p.info(
        "fan-out: 64 scan segments, BroadcastConcurrency 64",
        format!("{}/s", num(wide)),
        format!(
            "{}/s a chain; BroadcastScanSegments goes to 64, BroadcastConcurrency to 100 (template), an event source to {} and the account's Lambda concurrency is {} for all functions: {} for 10 M, the scan reading {:.0} RCU/s",
            num(page_reached / page_s),
            q.get("lambda_sqs_maximum_concurrency"),
            lambda,
            duration(N / wide),
            wide * base.scan_read_units
        ),
    );
    // Herald's email sends: EmailConcurrency invocations of a batch, each sending a few
    // records at a time (as many SendEmail requests as were seen in flight together here:
    // one local poller, so only a batch's own records overlap), each record its requests
    // one after another.
    let dispatch: Vec<&Call> = b
        .broadcast
        .first()
        .and_then(|i| b.phases.get(*i))
        .map(|ph| ph.calls.iter().filter(|c| c.who == Who::Herald("dispatch-email".into())).collect())
        .unwrap_or_default();
    let sends: Vec<&Call> = dispatch.iter().copied().filter(|c| c.operation == "SendEmail").collect();
    let in_flight = crate::floor::peak_concurrency(&sends) as f64;
    let per_message = dispatch.len() as f64 / b.reached.max(1) as f64;
    let batch = d.dispatch_batch_size;
    let rounds = (batch / in_flight).ceil();
    let invocation_s = rounds * per_message * latency_ms / 1000.0;
    let email_rate = d.email_concurrency * batch / invocation_s;
    let local = b.phases.get(b.broadcast[0]).map(|ph| {
        let inv: Vec<_> = ph.invocations.iter().filter(|i| i.function == "dispatch-email").collect();
        let records: usize = inv.iter().map(|i| i.records).sum();
        let secs: f64 = inv.iter().map(|i| i.duration.as_secs_f64()).sum();
        (records as f64 / inv.len().max(1) as f64, secs / inv.len().max(1) as f64)
    });
    p.info(
        format!("Herald's email sends: EmailConcurrency {}", d.email_concurrency),
        format!("{}/s", num(email_rate)),
        format!(
            "batches of {batch}, {} records at a time (as seen here), {:.2} requests each (SendEmail, the ledger) at {latency_ms} ms: {:.0} ms an invocation, {} for 10 M; measured here {:.1} records an invocation in {:.0} ms against moto. EmailConcurrency is there to keep sends under the SES rate: raise it with the account's",
            in_flight,
            per_message,
            invocation_s * 1000.0,
            duration(N / email_rate),
            local.map_or(f64::NAN, |l| l.0),
            local.map_or(f64::NAN, |l| l.1 * 1000.0)
        ),
    );
    let limits = [
        ("the fan-out", fan_out_rate),
        ("Herald's email sends (EmailConcurrency)", email_rate),
        ("rate_per_second", f64::from(RATE)),
    ];
    let (slowest, slowest_rate) =
        limits.iter().fold(("", f64::INFINITY), |acc, (n, r)| if *r < acc.1 { (n, *r) } else { acc });
    p.info(
        "the broadcast's own ceiling: rate_per_second",
        format!("{RATE}/s"),
        format!("the highest rate a broadcast may ask for: {} for 10 M", duration(N / f64::from(RATE))),
    );
    let mut ses = Vec::new();
    for rate in [q.get("ses_sandbox_send_rate"), 100.0, 1_000.0, 10_000.0] {
        ses.push(format!("{}/s: {}", num(rate), duration(N / rate)));
    }
    p.info(
        "SES: the account's sending rate, the usual limit",
        "per account",
        format!(
            "the sandbox sends 1/s; out of it the rate 'varies based on your specific use case' (AWS publishes no default). 10 M at {}",
            ses.join("; ")
        ),
    );
    p.info(
        "10 M recipients at the template's defaults",
        duration(N / slowest_rate),
        format!(
            "{}/s, set by {slowest}, unless the account's SES rate is lower (then 10 M / that rate); with 64 segments and BroadcastConcurrency 64 the fan-out goes {}/s and the limit is the slowest of SES, EmailConcurrency and rate_per_second",
            num(slowest_rate),
            num(wide)
        ),
    );
    p.info(
        "SQS: not a limit",
        format!("{} in flight", q.get("sqs_standard_in_flight")),
        format!(
            "a standard queue takes a nearly unlimited number of calls per second; messages in flight (received, not yet deleted) are at most the consumers' concurrency x 10, and a broadcast's messages wait as delayed messages at most {} s ahead (HORIZON_SECS)",
            herald::domain::broadcast::HORIZON_SECS
        ),
    );
    t.rows.extend(p.rows);
    json!({
        "recipients": N, "people": people, "items_per_person": items_per_person, "bytes_per_person": bytes_per_person,
        "scan_read_units": scan_units, "scan_usd": scan_units * rru_price, "aws_usd": N * all.usd_per_million_aws / 1e6,
        "ses_usd": N * notification.usd_per_million_providers / 1e6,
        "page_reached": page_reached, "page_requests": page_requests, "page_seconds": page_s,
        "page_seconds_local": base.mean_invocation_ms / 1000.0, "assumed_latency_ms": latency_ms,
        "fan_out_per_second_defaults": fan_out_rate, "fan_out_per_second_64": wide,
        "email_sends_per_second_defaults": email_rate, "defaults_seconds": N / slowest_rate, "defaults_limit": slowest,
        "scan_rcu_per_second_at_that_rate": rcu_per_s,
    })
}
