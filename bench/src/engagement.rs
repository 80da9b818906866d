//! Digests and journeys: what one digested item costs, a digest of ten items beside the
//! same ten items sent one by one (SPEC: "a digest of N items costs well under N
//! notifications"), and what one journey step costs. Each through the whole local
//! pipeline to SES and back with SES's delivery events, on a stack of its own.
//!
//! The journey is the bench's own (`bench_journey`, pushed beside the repository's):
//! an email, a branch on whether it was opened within 3 s (nobody opens it here), a
//! second email. Transactional, so that the second email is not a frequency cap's to
//! refuse: what is measured is the journey's machinery around two ordinary sends.

use crate::costs::{self, Cost, Prices};
use crate::dynamo::{self, Snapshot};
use crate::pipeline::{Env, Pipeline};
use crate::report::{Table, num};
use crate::scenarios::{self, Phase};
use anyhow::Context as _;
use herald::aws::dynamodb::DynamoTemplates;
use herald::domain::digest::DigestId;
use herald::domain::journey::JourneyDoc;
use herald::domain::{RecipientId, TemplateName};
use serde::Serialize;
use serde_json::{Value, json};

const RUN_PREFIX: &str = "hbe-";
/// Items in each person's digest.
pub const ITEMS: usize = 10;
const TEMPLATE: &str = "new_comments";
const JOURNEY: &str = "bench_journey";
/// Steps each person takes: send, branch, send.
pub const JOURNEY_STEPS: usize = 3;

fn who(i: usize) -> String {
    format!("hbe-{i}")
}

fn email(i: usize) -> String {
    format!("hbe-{i}@example.com")
}

/// The phases of the engagement run and the tables' items after it.
pub struct EngagementRun {
    pub people: usize,
    pub phases: Vec<Phase>,
    pub snapshot: Snapshot,
}

impl EngagementRun {
    fn phases(&self, names: &[&str]) -> Vec<&Phase> {
        self.phases.iter().filter(|p| names.contains(&p.name.as_str())).collect()
    }
}

/// `people` people, each sent [`ITEMS`] comments on one post: digested (a 3-second
/// window), then the same comments one by one.
pub async fn run(env: &Env, people: usize) -> anyhow::Result<EngagementRun> {
    let pipe = Pipeline::start(env, RUN_PREFIX, &[], false).await?;
    let mut phases = Vec::new();
    let setup: Vec<String> = (0..people)
        .map(|i| json!({"type": "upsert_recipient", "recipient": who(i), "email": email(i)}).to_string())
        .collect();
    phases.push(scenarios::setup_phase(env, &pipe, "engagement setup", people, &setup).await?);

    // 1. Digested: every item of a person under one key, one window.
    let comment = |p: usize, n: usize| {
        json!({"post": format!("Post {p}"), "author": format!("Author {n}"),
               "excerpt": "A comment of a realistic length, a sentence or two about the post."})
    };
    let bodies: Vec<String> = (0..people)
        .flat_map(|p| (0..ITEMS).map(move |n| (p, n)))
        .map(|(p, n)| {
            scenarios::notify(
                &format!("hbe-digested-{p}-{n}"),
                &who(p),
                TEMPLATE,
                "transactional",
                json!({"channels": ["email"], "data": comment(p, n),
                       "digest": {"key": format!("post-{p}"), "window": "3s"}}),
            )
        })
        .collect();
    let template = TemplateName::new(TEMPLATE).map_err(anyhow::Error::msg)?;
    let keys: Vec<(String, String)> = (0..people)
        .map(|p| {
            let recipient = RecipientId::new(who(p)).map_err(anyhow::Error::msg)?;
            Ok((DigestId::of(&recipient, &template, &format!("post-{p}")).message_key(1), email(p)))
        })
        .collect::<anyhow::Result<_>>()?;
    phases.extend(
        scenarios::run_with_receipts(
            env,
            &pipe,
            ("digest: items to SES", "digest: delivery receipts"),
            people * ITEMS,
            &bodies,
            &keys,
        )
        .await?,
    );

    // 2. The same items, each a notification of its own.
    let bodies: Vec<String> = (0..people)
        .flat_map(|p| (0..ITEMS).map(move |n| (p, n)))
        .map(|(p, n)| {
            scenarios::notify(
                &format!("hbe-single-{p}-{n}"),
                &who(p),
                TEMPLATE,
                "transactional",
                json!({"channels": ["email"], "data": {"items": [comment(p, n)], "total": 1}}),
            )
        })
        .collect();
    let keys: Vec<(String, String)> =
        (0..people).flat_map(|p| (0..ITEMS).map(move |n| (format!("hbe-single-{p}-{n}"), email(p)))).collect();
    phases.extend(
        scenarios::run_with_receipts(
            env,
            &pipe,
            ("one by one: items to SES", "one by one: delivery receipts"),
            people * ITEMS,
            &bodies,
            &keys,
        )
        .await?,
    );

    // 3. A journey: each person enters it, gets two emails around a branch.
    let doc: JourneyDoc = serde_json::from_value(json!({
        "name": JOURNEY, "version": 1, "kind": "transactional",
        "steps": [
            {"id": "welcome", "send": {"template": "welcome", "channels": ["email"]}},
            {"id": "opened", "branch": {"on": "welcome", "status": "opened", "within": "3s", "yes": "end", "no": "nudge"}},
            {"id": "nudge", "send": {"template": "welcome_nudge", "channels": ["email"]}},
        ],
    }))?;
    let table = pipe.stack.tables.get("TemplatesTable").context("no TemplatesTable")?;
    DynamoTemplates::new(aws_sdk_dynamodb::Client::new(&env.plain), table, std::time::Duration::ZERO)
        .put_journey(&doc, chrono::Utc::now())
        .await?;
    let bodies: Vec<String> = (0..people)
        .map(|p| {
            json!({"type": "enter_journey", "idempotency_key": format!("hbe-enter-{p}"), "recipient": who(p),
                   "journey": JOURNEY, "data": {"first_name": format!("Person {p}")}})
            .to_string()
        })
        .collect();
    let keys: Vec<(String, String)> = (0..people)
        .flat_map(|p| ["welcome", "nudge"].map(|step| (format!("journey:{JOURNEY}:{}:1:{step}", who(p)), email(p))))
        .collect();
    phases.extend(
        scenarios::run_with_receipts(
            env,
            &pipe,
            ("journey: entries to SES", "journey: delivery receipts"),
            people,
            &bodies,
            &keys,
        )
        .await?,
    );

    let tables: Vec<String> = pipe.stack.tables.values().cloned().collect();
    let snapshot = dynamo::Snapshot::read(&aws_sdk_dynamodb::Client::new(&env.plain), &tables).await?;
    pipe.stop().await;
    Ok(EngagementRun { people, phases, snapshot })
}

#[derive(Debug, Serialize)]
pub struct EngagementJson {
    people: usize,
    items_per_digest: usize,
    digested_per_item: Cost,
    single_per_item: Cost,
    digest_of_ten_over_ten_singles: f64,
    digest_of_ten_over_ten_singles_aws: f64,
    journey_per_person: Cost,
    journey_machinery_per_step: Cost,
}

/// Section 10's rows; the figures as JSON for `latest.json`.
pub fn rows(t: &mut Table, run: &EngagementRun, memory_mb: f64, prices: &Prices) -> Value {
    let items = run.people * ITEMS;
    let cost = |names: &[&str]| {
        let phases = run.phases(names);
        let calls: Vec<_> = phases.iter().flat_map(|p| p.pipeline_calls()).collect();
        let invocations: Vec<_> = phases.iter().flat_map(|p| p.invocations.iter().cloned()).collect();
        costs::cost(calls.iter().copied(), &invocations, items, &run.snapshot, memory_mb, prices)
    };
    let digested = cost(&["digest: items to SES", "digest: delivery receipts"]);
    let single = cost(&["one by one: items to SES", "one by one: delivery receipts"]);
    let outcome = |name: &str| {
        run.phases(&[name])
            .first()
            .map(|p| p.outcomes.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
    t.section(&format!(
        "10. Digests ({} people, {ITEMS} comments each; transactional email, ingest to delivery receipt)",
        run.people
    ));
    let line = |c: &Cost| {
        format!(
            "WCU {}, RCU {}, SQS {}, Lambda inv {}, AWS ${:.2}/M + SES ${:.2}/M",
            num(c.write_units),
            num(c.read_units),
            num(c.sqs_billed),
            num(c.invocations),
            c.usd_per_million_aws,
            c.usd_per_million_providers
        )
    };
    t.info(
        "a digested item (10 to a digest)",
        format!("{} req", num(digested.requests)),
        format!("{}; digests: {}", line(&digested), outcome("digest: delivery receipts")),
    );
    t.info(
        "the same item sent on its own",
        format!("{} req", num(single.requests)),
        format!("{}; {}", line(&single), outcome("one by one: delivery receipts")),
    );
    let total = |c: &Cost| c.usd_per_million_aws + c.usd_per_million_providers;
    let ratio = total(&digested) / total(&single).max(f64::MIN_POSITIVE);
    let aws_ratio = digested.usd_per_million_aws / single.usd_per_million_aws.max(f64::MIN_POSITIVE);
    t.info(
        "the same, AWS alone (Lambda, SQS, DynamoDB)",
        format!("{:.0}%", aws_ratio * 100.0),
        format!(
            "${:.2} against ${:.2} per million items: each item is still admitted (its key, its data) and \
             counted in its window, about 2 writes, where a notification takes 3 to its receipt",
            digested.usd_per_million_aws, single.usd_per_million_aws
        ),
    );
    t.budget(
        "a digest of 10 items against 10 notifications (AWS + SES $)",
        format!("{:.0}%", ratio * 100.0),
        "well under 100%",
        Some(ratio < 0.5),
        format!(
            "${:.2} against ${:.2} per million items; requests {:.0}%, write units {:.0}%",
            total(&digested),
            total(&single),
            100.0 * digested.requests / single.requests.max(f64::MIN_POSITIVE),
            100.0 * digested.write_units / single.write_units.max(f64::MIN_POSITIVE)
        ),
    );
    // The journey: per person (two sends), and its own machinery per step (the journeys
    // function and its event source, ingest's handling of the entry left in the sends).
    let phases = run.phases(&["journey: entries to SES", "journey: delivery receipts"]);
    let calls: Vec<_> = phases.iter().flat_map(|p| p.pipeline_calls()).collect();
    let invocations: Vec<_> = phases.iter().flat_map(|p| p.invocations.iter().cloned()).collect();
    let journey = costs::cost(calls.iter().copied(), &invocations, run.people, &run.snapshot, memory_mb, prices);
    let own: Vec<_> = calls.iter().copied().filter(|c| c.who.function() == "journeys").collect();
    let own_invocations: Vec<_> = invocations.iter().filter(|i| i.function == "journeys").cloned().collect();
    let steps = run.people * JOURNEY_STEPS;
    let machinery = costs::cost(own.iter().copied(), &own_invocations, steps, &run.snapshot, memory_mb, prices);
    t.section(&format!(
        "11. Journeys ({} people: email, branch on opened within 3 s, email; transactional, to delivery receipt)",
        run.people
    ));
    t.info(
        "a person through the journey (3 steps, 2 emails)",
        format!("{} req", num(journey.requests)),
        format!("{}; {}", line(&journey), outcome("journey: delivery receipts")),
    );
    t.info(
        "a journey step, the journey's own work",
        format!("{} req", num(machinery.requests)),
        format!(
            "the journeys function and its queue: WCU {}, RCU {}, SQS {}, AWS ${:.2}/M steps; a send step's \
             notification costs as any other (section 2)",
            num(machinery.write_units),
            num(machinery.read_units),
            num(machinery.sqs_billed),
            machinery.usd_per_million_aws
        ),
    );
    serde_json::to_value(EngagementJson {
        journey_per_person: journey,
        journey_machinery_per_step: machinery,
        people: run.people,
        items_per_digest: ITEMS,
        digest_of_ten_over_ten_singles: ratio,
        digest_of_ten_over_ten_singles_aws: aws_ratio,
        digested_per_item: digested,
        single_per_item: single,
    })
    .unwrap_or(Value::Null)
}
