//! Broadcasts: what a campaign to a segment costs per recipient reached, from the scan
//! of the recipients table to SES and the delivery receipts; how the scan's share
//! grows with the table; and how fast the fan-out goes locally beside the floor of its
//! own requests.
//!
//! The recipients table is filled straight through the recipients adapter (one person
//! of each kind) and copies of those items (everyone else, by `BatchWriteItem`): the
//! commands that create people are measured elsewhere, and thousands of them through the
//! pipeline would take longer than the broadcast itself. A third of the people are not
//! in the segment's audience: the filter misses them, they gave no consent, or they
//! cannot be reached on the segment's channel.

use crate::costs::{self, Cost, Prices};
use crate::counting::{Call, Who};
use crate::dynamo::{self, ScanRead, Snapshot};
use crate::floor;
use crate::pipeline::{Env, Invocation, Pipeline, send_all, sqs_event_json};
use crate::scenarios::{self, Phase};
use anyhow::Context as _;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use chrono::Utc;
use herald::aws::dynamodb::{DynamoLedger, DynamoRecipients, DynamoTemplates};
use herald::contract::{SetConsent, UpsertRecipient};
use herald::domain::broadcast::Counts;
use herald::domain::recipient::Device;
use herald::domain::segment::SegmentDoc;
use herald::domain::{CampaignId, Platform, PushToken, RecipientId};
use herald::ports::{Broadcasts, RecipientStore};
use herald_cli::stack::Stack;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// The broadcast's stack and the floor's: prefixes of the same length (see `floor`).
pub const RUN_PREFIX: &str = "hbbrd1-";
pub const FLOOR_PREFIX: &str = "hbbfl1-";
/// The segment the bench pushes: pro customers opted in to news, by email.
pub const SEGMENT: &str = "bench_pro";
const TEMPLATE: &str = "weekly_digest";
const HEADLINE: &str = "Five new arrivals picked for you this week";
/// As fast as a broadcast may ask: the pace never holds the fan-out back here.
pub const RATE: u32 = herald::contract::MAX_RATE_PER_SECOND;

/// Who a person is, for the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Pro, an email address, opted in to news by email: in the audience.
    Matched,
    /// The same, with the app installed (a push device and its endpoint index item).
    MatchedWithApp,
    /// On the free plan: the segment's filter misses them.
    FilterMiss,
    /// Pro with an address, but no consent to news.
    NoConsent,
    /// Pro, opted in to news on push, but with no email address: unreachable by email.
    Unreachable,
}

impl Kind {
    pub fn matched(self) -> bool {
        matches!(self, Kind::Matched | Kind::MatchedWithApp)
    }
}

/// The people of the first table, by index: two thirds in the audience, a third split
/// evenly between the three ways out of it; a third of everyone has the app.
pub fn kind(i: usize) -> Kind {
    match i % 9 {
        0 | 3 => Kind::MatchedWithApp,
        1 | 2 | 4 | 5 => Kind::Matched,
        6 => Kind::FilterMiss,
        7 => Kind::NoConsent,
        _ => Kind::Unreachable,
    }
}

/// The people added to grow the table: none of them in the audience.
pub fn added_kind(i: usize) -> Kind {
    [Kind::FilterMiss, Kind::NoConsent, Kind::Unreachable][i % 3]
}

/// Fixed width, so that a copy of a person's items is the same size as the original.
pub fn who(i: usize) -> String {
    format!("bcp{i:07}")
}

fn email(i: usize) -> String {
    format!("{}@example.com", who(i))
}

fn endpoint_arn(i: usize) -> String {
    format!("arn:aws:sns:us-east-1:123456789012:endpoint/GCM/hbbench/{}", who(i))
}

/// The segment, as a team would push it (`herald templates push`).
pub async fn push_segment(env: &Env, stack: &Stack) -> anyhow::Result<()> {
    let table = stack.tables.get("TemplatesTable").context("no TemplatesTable")?;
    let store = DynamoTemplates::new(aws_sdk_dynamodb::Client::new(&env.plain), table, Duration::ZERO);
    let doc: SegmentDoc = serde_json::from_value(json!({
        "name": SEGMENT, "version": 1, "description": "Pro customers opted in to news, by email",
        "topic": "news", "channels": ["email"],
        "filter": {"field": "attributes.plan", "equals": "pro"}
    }))?;
    store.put_segment(&doc, Utc::now()).await?;
    Ok(())
}

/// One person, through the recipients adapter, as ingest would store their commands.
async fn write_person(recipients: &DynamoRecipients, i: usize, kind: Kind) -> anyhow::Result<()> {
    let now = Utc::now();
    let plan = if kind == Kind::FilterMiss { "free" } else { "pro" };
    let mut upsert = json!({"recipient": who(i), "locale": "en-US", "timezone": "Europe/Paris",
        "attributes": {"plan": plan, "first_name": "Ana"}});
    if kind != Kind::Unreachable {
        upsert["email"] = json!(email(i));
    }
    recipients.upsert(&serde_json::from_value::<UpsertRecipient>(upsert)?, now).await?;
    let consent_channel = match kind {
        Kind::NoConsent => None,
        Kind::Unreachable => Some("push"),
        _ => Some("email"),
    };
    if let Some(channel) = consent_channel {
        let consent =
            json!({"recipient": who(i), "channel": channel, "topic": "news", "granted": true, "source": "signup-form"});
        recipients.set_consent(&serde_json::from_value::<SetConsent>(consent)?, now).await?;
    }
    if matches!(kind, Kind::MatchedWithApp | Kind::Unreachable) {
        let device = Device {
            platform: Platform::Fcm,
            token: PushToken::new(format!("tok-{}", who(i)))?,
            endpoint_arn: endpoint_arn(i),
        };
        recipients.add_device(&RecipientId::new(who(i))?, &device, now).await?;
    }
    Ok(())
}

type Item = HashMap<String, AttributeValue>;

/// A person's items: the profile, the consent audit items, the endpoint index items.
async fn items_of(client: &aws_sdk_dynamodb::Client, table: &str, i: usize) -> anyhow::Result<Vec<Item>> {
    let mut items = client
        .query()
        .table_name(table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(who(i)))
        .send()
        .await?
        .items
        .unwrap_or_default();
    let index = client
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(format!("endpoint#{}", endpoint_arn(i))))
        .key("sk", AttributeValue::S("device".into()))
        .send()
        .await?;
    items.extend(index.item);
    Ok(items)
}

/// `v` with every string naming person `from` naming person `to` instead.
fn renamed(v: &AttributeValue, from: &str, to: &str) -> AttributeValue {
    match v {
        AttributeValue::S(s) => AttributeValue::S(s.replace(from, to)),
        AttributeValue::M(m) => AttributeValue::M(m.iter().map(|(k, e)| (k.clone(), renamed(e, from, to))).collect()),
        AttributeValue::L(l) => AttributeValue::L(l.iter().map(|e| renamed(e, from, to)).collect()),
        other => other.clone(),
    }
}

/// Writes `items` with `BatchWriteItem`, 25 a request, a few requests at a time.
async fn batch_write(client: &aws_sdk_dynamodb::Client, table: &str, items: Vec<Item>) -> anyhow::Result<()> {
    use futures::StreamExt;
    let chunks: Vec<Vec<Item>> = items.chunks(25).map(<[Item]>::to_vec).collect();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(chunks)
        .map(|chunk| async move {
            let mut requests = chunk
                .into_iter()
                .map(|item| {
                    Ok(WriteRequest::builder().put_request(PutRequest::builder().set_item(Some(item)).build()?).build())
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            for _ in 0..10 {
                if requests.is_empty() {
                    return Ok(());
                }
                let out = client.batch_write_item().request_items(table, requests).send().await?;
                requests = out.unprocessed_items.and_then(|mut u| u.remove(table)).unwrap_or_default();
            }
            anyhow::ensure!(requests.is_empty(), "{} item(s) left unprocessed", requests.len());
            Ok(())
        })
        .buffer_unordered(6)
        .collect()
        .await;
    results.into_iter().collect()
}

/// People `range` into the stack's recipients table: the first of each kind through the
/// adapter, the others as copies of its items.
pub async fn seed(
    env: &Env,
    stack: &Stack,
    range: std::ops::Range<usize>,
    kind_of: impl Fn(usize) -> Kind,
) -> anyhow::Result<()> {
    let table = stack.tables.get("RecipientsTable").context("no RecipientsTable")?.clone();
    let client = aws_sdk_dynamodb::Client::new(&env.plain);
    let recipients = DynamoRecipients::new(client.clone(), &table);
    let mut prototypes: BTreeMap<Kind, (usize, Vec<Item>)> = BTreeMap::new();
    let mut copies = Vec::new();
    for i in range {
        let k = kind_of(i);
        match prototypes.get(&k) {
            Some((p, items)) => {
                let (from, to) = (who(*p), who(i));
                copies.extend(
                    items.iter().map(|item| item.iter().map(|(n, v)| (n.clone(), renamed(v, &from, &to))).collect()),
                );
            }
            None => {
                write_person(&recipients, i, k).await?;
                prototypes.insert(k, (i, items_of(&client, &table, i).await?));
            }
        }
    }
    batch_write(&client, &table, copies).await
}

/// Copies one table into another (the floor's stack gets the run's recipients).
async fn copy_table(client: &aws_sdk_dynamodb::Client, from: &str, to: &str) -> anyhow::Result<()> {
    let mut start = None;
    let mut items = Vec::new();
    loop {
        let page = client.scan().table_name(from).set_exclusive_start_key(start.take()).send().await?;
        items.extend(page.items.unwrap_or_default());
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => break,
        }
    }
    batch_write(client, to, items).await
}

pub fn command(campaign: &str) -> String {
    json!({"type": "broadcast", "campaign": campaign, "segment": SEGMENT, "template": TEMPLATE,
           "rate_per_second": RATE, "data": {"headline": HEADLINE}})
    .to_string()
}

async fn record(env: &Env, stack: &Stack, campaign: &str) -> anyhow::Result<Counts> {
    let table = stack.tables.get("LedgerTable").context("no LedgerTable")?;
    let ledger = DynamoLedger::new(aws_sdk_dynamodb::Client::new(&env.plain), table);
    let b = ledger.broadcast(&CampaignId::new(campaign)?).await?.context("the broadcast was not recorded")?;
    anyhow::ensure!(b.all_read(), "the broadcast {campaign} did not read its whole table: {:?}", b.state);
    Ok(b.counts)
}

/// Where a request of a broadcast run belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The fan-out's Scan of the recipients table.
    Scan,
    /// The fan-out's reads and writes of the broadcast's record (ledger table).
    Record,
    /// The fan-out's notifications to the ingest queue.
    ToIngest,
    /// The fan-out's hand-off of the next page's job.
    NextPage,
    /// Receives and deletes of page jobs by the broadcast function's event source.
    FanOutEventSource,
    /// Ingest handling the broadcast command (checks, the record, the first pages).
    Start,
    /// Ingest reading the broadcast's state for its messages (cached for a few seconds).
    StateReads,
    /// Everything else: each notification's way from ingest to its delivery receipt.
    Notification,
}

fn names_broadcast_item(req: &Value) -> bool {
    ["/Key/pk/S", "/Item/pk/S"]
        .iter()
        .any(|p| req.pointer(p).and_then(Value::as_str).is_some_and(|pk| pk.starts_with("broadcast#")))
}

/// Sorts the calls of a broadcast's phases into stages.
pub fn stage_of(call: &Call, ingest_url: &str, fan_out_started: Duration) -> Stage {
    let req = call.request_json().unwrap_or_default();
    match &call.who {
        Who::EventSource(f) if f == "broadcast" => Stage::FanOutEventSource,
        Who::Herald(f) if f == "broadcast" => match (call.service.as_str(), call.operation.as_str()) {
            ("dynamodb", "Scan") => Stage::Scan,
            ("dynamodb", _) => Stage::Record,
            _ if req.get("QueueUrl").and_then(Value::as_str) == Some(ingest_url) => Stage::ToIngest,
            _ => Stage::NextPage,
        },
        Who::Herald(f) | Who::EventSource(f) if f == "ingest" && call.start < fan_out_started => Stage::Start,
        Who::Herald(f) if f == "ingest" && names_broadcast_item(&req) => Stage::StateReads,
        _ => Stage::Notification,
    }
}

/// One isolated run of the fan-out (only the broadcast function runs; ingest handles the
/// command once, invoked directly): a point of the growth curve.
#[derive(Debug, Clone, Serialize)]
pub struct FanOutPoint {
    pub label: String,
    pub people: usize,
    pub counts: CountsJson,
    pub pages: usize,
    pub read: ScanRead,
    pub seconds: f64,
    /// The fan-out's requests (handler and event source), per recipient matched.
    pub cost: Cost,
    /// Of which the Scan: requests and read units per recipient matched.
    pub scan_requests: f64,
    pub scan_read_units: f64,
    pub mean_invocation_ms: f64,
    /// The handler's requests in a page, one after another, by operation: (count per page, mean ms here).
    pub per_page: BTreeMap<String, (f64, f64)>,
    /// The fan-out's requests (handler and event source), and of them its sends to ingest.
    pub requests: usize,
    pub to_ingest: usize,
    #[serde(skip)]
    pub phase: Phase,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CountsJson {
    pub scanned: u64,
    pub matched: u64,
    pub queued: u64,
    pub missed: BTreeMap<String, u64>,
}

impl From<Counts> for CountsJson {
    fn from(c: Counts) -> Self {
        Self { scanned: c.scanned, matched: c.matched, queued: c.queued, missed: c.missed }
    }
}

/// The broadcast's whole run, the single notifications beside it, the growth curve and
/// the fan-out's floor.
pub struct BroadcastRun {
    pub people: usize,
    pub counts: CountsJson,
    pub phases: Vec<Phase>,
    /// The broadcast to SES, then its receipts; the single notifications, then theirs.
    pub broadcast: [usize; 2],
    pub single: [usize; 2],
    pub reached: usize,
    pub single_sent: usize,
    pub snapshot: Snapshot,
    pub ingest_url: String,
    pub fan_out_started: Duration,
    /// What the broadcast's scans read, all pages together.
    pub read: ScanRead,
    pub pages: usize,
    pub growth: Vec<FanOutPoint>,
    pub floor_seconds: f64,
    pub floor_requests: usize,
    pub floor_diverged: u64,
}

impl BroadcastRun {
    pub fn phase(&self, i: usize) -> Option<&Phase> {
        self.phases.get(i)
    }

    /// The calls of the broadcast's two phases in one stage.
    pub fn calls(&self, stage: Stage) -> Vec<&Call> {
        self.broadcast
            .iter()
            .filter_map(|i| self.phases.get(*i))
            .flat_map(|p| p.pipeline_calls())
            .filter(|c| stage_of(c, &self.ingest_url, self.fan_out_started) == stage)
            .collect()
    }

    pub fn invocations(&self, fan_out: bool) -> Vec<Invocation> {
        self.broadcast
            .iter()
            .filter_map(|i| self.phases.get(*i))
            .flat_map(|p| p.invocations.iter())
            .filter(|i| (i.function == "broadcast") == fan_out)
            .cloned()
            .collect()
    }

    /// What `stages` cost, per recipient reached (Lambda only with `lambda`).
    pub fn cost(&self, stages: &[Stage], lambda: Option<bool>, memory_mb: f64, prices: &Prices) -> Cost {
        let calls: Vec<&Call> = stages.iter().flat_map(|s| self.calls(*s)).collect();
        let invocations = lambda.map(|fan_out| self.invocations(fan_out)).unwrap_or_default();
        costs::cost(calls.iter().copied(), &invocations, self.reached, &self.snapshot, memory_mb, prices)
    }

    /// The single notifications' cost, per notification.
    pub fn single_cost(&self, memory_mb: f64, prices: &Prices) -> Cost {
        let phases: Vec<&Phase> = self.single.iter().filter_map(|i| self.phases.get(*i)).collect();
        let calls: Vec<&Call> = phases.iter().flat_map(|p| p.pipeline_calls()).collect();
        let invocations: Vec<Invocation> = phases.iter().flat_map(|p| p.invocations.iter().cloned()).collect();
        costs::cost(calls.iter().copied(), &invocations, self.single_sent, &self.snapshot, memory_mb, prices)
    }

    /// The producer's requests for the single notifications (the bench sending them to
    /// the ingest queue), per notification: a broadcast's fan-out makes these itself.
    pub fn producer_sends(&self) -> f64 {
        let sends = self
            .single
            .first()
            .and_then(|i| self.phases.get(*i))
            .map_or(0, |p| p.calls.iter().filter(|c| c.who == Who::Driver && c.service == "sqs").count());
        sends as f64 / self.single_sent.max(1) as f64
    }
}

fn sent_emails(p: &Phase) -> usize {
    p.calls.iter().filter(|c| c.operation == "SendEmail" && c.status < 300).count()
}

/// The sizes of the run's main scenario and of its growth curve.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub people: usize,
    pub single: usize,
    /// Growth points: the table at these multiples of `people`, the same people matched.
    pub growth: [usize; 3],
}

pub async fn run(env: &Env, sizes: Sizes, memory_mb: f64, prices: &Prices) -> anyhow::Result<BroadcastRun> {
    let n = sizes.people;
    let stack = herald_cli::local::provision(&env.plain, &env.root, RUN_PREFIX).await?;
    push_segment(env, &stack).await?;
    eprintln!("herald-bench: broadcast: {n} people into the recipients table");
    seed(env, &stack, 0..n, kind).await?;
    let ingest_url = stack.queue("IngestQueue")?.url.clone();
    let ddb = aws_sdk_dynamodb::Client::new(&env.plain);

    // 1. The broadcast through the whole pipeline, then SES's delivery events.
    let pipe = Pipeline::start_on(env, stack.clone(), &[], false, None).await?;
    let campaign = "bench-launch";
    let keys: Vec<(String, String)> =
        (0..n).filter(|i| kind(*i).matched()).map(|i| (format!("{campaign}#{}", who(i)), email(i))).collect();
    let mut phases: Vec<Phase> = scenarios::run_with_receipts(
        env,
        &pipe,
        ("broadcast: fan-out to SES", "broadcast: delivery receipts"),
        n,
        &[command(campaign)],
        &keys,
    )
    .await?
    .into();
    let counts: CountsJson = record(env, &stack, campaign).await?.into();
    let reached = phases.first().map_or(0, sent_emails);

    // 2. The same message, sent by a producer to people of the same table the segment
    // leaves out (the filter's misses: opted in, an address, on the free plan).
    let single: Vec<usize> = (0..n).filter(|i| kind(*i) == Kind::FilterMiss).take(sizes.single).collect();
    let keys: Vec<(String, String)> = single.iter().map(|i| (format!("bench-single-{i}"), email(*i))).collect();
    let bodies: Vec<String> = single
        .iter()
        .zip(&keys)
        .map(|(i, (key, _))| {
            scenarios::notify(
                key,
                &who(*i),
                TEMPLATE,
                "marketing",
                json!({"topic": "news", "campaign": "bench-single",
                "channels": ["email"], "data": {"headline": HEADLINE}}),
            )
        })
        .collect();
    phases.extend(
        scenarios::run_with_receipts(
            env,
            &pipe,
            ("broadcast: the same message as single notifications", "broadcast: single notifications' receipts"),
            single.len(),
            &bodies,
            &keys,
        )
        .await?,
    );
    let single_sent = phases.get(2).map_or(0, sent_emails);
    pipe.stop().await;

    // What the scans read (nothing has written to the recipients table since), and every item.
    let calls: Vec<&Call> = phases.iter().flat_map(|p| p.calls.iter()).collect();
    let tables: Vec<String> = stack.tables.values().cloned().collect();
    let mut snapshot = Snapshot::read(&ddb, &tables).await?;
    snapshot.scans = dynamo::size_scans(&ddb, &calls).await?;
    let scans: Vec<&&Call> =
        calls.iter().filter(|c| c.who == Who::Herald("broadcast".into()) && c.operation == "Scan").collect();
    let mut read = ScanRead::default();
    for c in &scans {
        if let Some(r) = snapshot.scans.get(&c.request.body) {
            read.add(r);
        }
    }
    let pages = scans.len();
    // The handler's first request (its event source polls from the moment the pipeline is released).
    let fan_out_started = phases
        .first()
        .and_then(|p| p.calls.iter().filter(|c| c.who == Who::Herald("broadcast".into())).map(|c| c.start).min())
        .unwrap_or_default();

    // 3. The fan-out alone, on the same table, then on the table grown twice and four
    // times with people outside the audience; the first beside its floor.
    let fan = Pipeline::start_on(env, stack.clone(), &[], false, Some(&["broadcast"])).await?;
    let mut growth = Vec::new();
    let mut people = n;
    let (mut floor_seconds, mut floor_requests, mut floor_diverged) = (0.0, 0, 0);
    for (step, times) in sizes.growth.iter().enumerate() {
        let target = n * times;
        if target > people {
            eprintln!("herald-bench: broadcast: growing the table to {target} people");
            seed(env, &stack, people..target, added_kind).await?;
            people = target;
        }
        let campaign = format!("bench-fanout-{times}x");
        let point = fan_out_point(env, &fan, &stack, &campaign, people, memory_mb, prices).await?;
        if step == 0 {
            let f = fan_out_floor(env, &stack, &point.phase).await?;
            (floor_seconds, floor_requests, floor_diverged) = f;
        }
        growth.push(FanOutPoint { label: format!("{times}x: {people} people"), ..point });
    }
    fan.stop().await;

    Ok(BroadcastRun {
        people: n,
        counts,
        phases,
        broadcast: [0, 1],
        single: [2, 3],
        reached,
        single_sent,
        snapshot,
        ingest_url,
        fan_out_started,
        pages,
        read,
        growth,
        floor_seconds,
        floor_requests,
        floor_diverged,
    })
}

/// Sends the broadcast command and has ingest handle it (invoked directly, counted as
/// ingest's), as its event source would.
async fn start_directly(env: &Env, stack: &Stack, campaign: &str) -> anyhow::Result<()> {
    let driver = aws_sdk_sqs::Client::new(&env.sdk(Who::Driver).await);
    let q = stack.queue("IngestQueue")?;
    send_all(&driver, &q.url, &[command(campaign)]).await?;
    let mut got = Vec::new();
    for _ in 0..10 {
        let out = driver
            .receive_message()
            .queue_url(&q.url)
            .max_number_of_messages(1)
            .wait_time_seconds(1)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await?;
        got.extend(out.messages.unwrap_or_default());
        if !got.is_empty() {
            break;
        }
    }
    anyhow::ensure!(got.len() == 1, "the broadcast command did not come back from the ingest queue");
    let spec = stack.functions.iter().find(|f| f.name == "ingest").context("no ingest function")?;
    let herald_cli::runner::Handler::Sqs(invoke) =
        herald_cli::runner::build(spec, &env.sdk(Who::Herald("ingest".into())).await)?
    else {
        anyhow::bail!("ingest takes SQS events");
    };
    let event: aws_lambda_events::sqs::SqsEvent = serde_json::from_value(sqs_event_json(&got, &q.arn))?;
    let response = invoke(lambda_runtime::LambdaEvent::new(event, lambda_runtime::Context::default()))
        .await
        .map_err(|e| anyhow::anyhow!("ingest: {e}"))?;
    anyhow::ensure!(response.batch_item_failures.is_empty(), "ingest failed the broadcast command");
    let entries = got
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .set_receipt_handle(m.receipt_handle.clone())
                .build()
                .ok()
        })
        .collect();
    driver.delete_message_batch().queue_url(&q.url).set_entries(Some(entries)).send().await?;
    Ok(())
}

async fn fan_out_point(
    env: &Env,
    fan: &Pipeline,
    stack: &Stack,
    campaign: &str,
    people: usize,
    memory_mb: f64,
    prices: &Prices,
) -> anyhow::Result<FanOutPoint> {
    let ddb = aws_sdk_dynamodb::Client::new(&env.plain);
    let name = format!("broadcast fan-out only: {people} people");
    let phase = scenarios::measure(env, fan, &name, people, || start_directly(env, stack, campaign)).await?;
    let counts = record(env, stack, campaign).await?;
    // Its notifications wait on the ingest queue: nothing reads them here.
    let sqs = aws_sdk_sqs::Client::new(&env.plain);
    if let Err(e) = sqs.purge_queue().queue_url(&stack.queue("IngestQueue")?.url).send().await {
        eprintln!("herald-bench: broadcast: the ingest queue was not purged ({e}); its messages stay");
    }
    let fan_calls: Vec<&Call> = phase.pipeline_calls().filter(|c| c.who.function() == "broadcast").collect();
    let ledger = stack.tables.get("LedgerTable").context("no LedgerTable")?.clone();
    let mut snapshot = Snapshot::read(&ddb, &[ledger]).await?;
    snapshot.scans = dynamo::size_scans(&ddb, &fan_calls).await?;
    let scans: Vec<&&Call> = fan_calls.iter().filter(|c| c.operation == "Scan").collect();
    let mut read = ScanRead::default();
    for c in &scans {
        if let Some(r) = snapshot.scans.get(&c.request.body) {
            read.add(r);
        }
    }
    let matched = usize::try_from(counts.matched).unwrap_or(usize::MAX);
    let invocations: Vec<Invocation> =
        phase.invocations.iter().filter(|i| i.function == "broadcast").cloned().collect();
    let cost = costs::cost(fan_calls.iter().copied(), &invocations, matched, &snapshot, memory_mb, prices);
    let scan_cost = costs::cost(scans.iter().map(|c| **c), &[], matched, &snapshot, memory_mb, prices);
    let mean_invocation_ms =
        invocations.iter().map(|i| i.duration.as_secs_f64() * 1000.0).sum::<f64>() / invocations.len().max(1) as f64;
    let mut per_page: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for c in fan_calls.iter().filter(|c| c.who == Who::Herald("broadcast".into())) {
        let e = per_page.entry(c.label()).or_default();
        e.0 += 1.0;
        e.1 += c.end.saturating_sub(c.start).as_secs_f64() * 1000.0;
    }
    for (n, ms) in per_page.values_mut() {
        *ms /= n.max(1.0);
        *n /= scans.len().max(1) as f64;
    }
    let ingest_url = stack.queue("IngestQueue")?.url.clone();
    let to_ingest = fan_calls
        .iter()
        .filter(|c| {
            c.service == "sqs"
                && c.request_json().and_then(|r| r.get("QueueUrl").cloned()) == Some(Value::from(ingest_url.as_str()))
        })
        .count();
    Ok(FanOutPoint {
        label: String::new(),
        per_page,
        requests: fan_calls.iter().filter(|c| !c.is_empty_receive()).count(),
        to_ingest,
        people,
        counts: counts.into(),
        pages: scans.len(),
        read,
        seconds: phase.seconds,
        cost,
        scan_requests: scan_cost.requests,
        scan_read_units: scan_cost.read_units,
        mean_invocation_ms,
        phase,
    })
}

/// The fan-out's own requests sent again, raw, to a copy of the stack holding the same
/// table, in order and with as many in flight as the fan-out had; ingest's handling of
/// the command is replayed first, untimed. Returns (seconds, requests, diverged).
async fn fan_out_floor(env: &Env, stack: &Stack, phase: &Phase) -> anyhow::Result<(f64, usize, u64)> {
    eprintln!("herald-bench: broadcast: floor (the fan-out's requests, replayed)");
    let floor_stack = herald_cli::local::provision(&env.plain, &env.root, FLOOR_PREFIX).await?;
    push_segment(env, &floor_stack).await?;
    let ddb = aws_sdk_dynamodb::Client::new(&env.plain);
    let from = stack.tables.get("RecipientsTable").context("no RecipientsTable")?;
    let to = floor_stack.tables.get("RecipientsTable").context("no RecipientsTable")?;
    copy_table(&ddb, from, to).await?;
    let replayer = floor::Replayer::new(RUN_PREFIX, FLOOR_PREFIX);
    let start: Vec<&Call> = phase
        .calls
        .iter()
        .filter(|c| (c.who == Who::Driver || c.who.function() == "ingest") && !c.is_empty_receive())
        .collect();
    replayer.replay(&start, 1).await?;
    let work: Vec<&Call> = phase.replay_calls().filter(|c| c.who.function() == "broadcast").collect();
    let took = replayer.replay(&work, floor::peak_concurrency(&work)).await?;
    let diverged = replayer.diverged.lock().map(|d| *d).unwrap_or_default();
    Ok((took.as_secs_f64(), work.len(), diverged))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counting::Captured;

    #[test]
    fn a_third_of_the_table_is_out_of_the_audience_in_equal_parts() {
        let mut by_kind: BTreeMap<Kind, usize> = BTreeMap::new();
        for i in 0..900 {
            *by_kind.entry(kind(i)).or_default() += 1;
        }
        assert_eq!(by_kind.iter().filter(|(k, _)| k.matched()).map(|(_, n)| n).sum::<usize>(), 600);
        for k in [Kind::FilterMiss, Kind::NoConsent, Kind::Unreachable] {
            assert_eq!(by_kind.get(&k), Some(&100), "{k:?}");
        }
        assert!((0..300).all(|i| !added_kind(i).matched()));
    }

    #[test]
    fn a_copy_names_its_own_person_and_keeps_the_size() {
        let item: Item = HashMap::from([
            ("pk".to_owned(), AttributeValue::S(who(7))),
            ("email".to_owned(), AttributeValue::S(email(7))),
            (
                "device:abc".to_owned(),
                AttributeValue::M(HashMap::from([("arn".to_owned(), AttributeValue::S(endpoint_arn(7)))])),
            ),
            ("n".to_owned(), AttributeValue::N("12".into())),
        ]);
        let copy: Item = item.iter().map(|(k, v)| (k.clone(), renamed(v, &who(7), &who(12_345)))).collect();
        assert_eq!(copy.get("pk"), Some(&AttributeValue::S(who(12_345))));
        assert_eq!(copy.get("email"), Some(&AttributeValue::S(email(12_345))));
        let arn = copy.get("device:abc").and_then(|m| m.as_m().ok()).and_then(|m| m.get("arn")).cloned();
        assert_eq!(arn, Some(AttributeValue::S(endpoint_arn(12_345))));
        assert_eq!(dynamo::item_size(&copy), dynamo::item_size(&item));
    }

    fn call(who: Who, service: &str, operation: &str, body: Value, start_ms: u64) -> Call {
        Call {
            who,
            service: service.into(),
            operation: operation.into(),
            status: 200,
            start: Duration::from_millis(start_ms),
            end: Duration::from_millis(start_ms + 1),
            request: Captured {
                method: "POST".into(),
                uri: "http://127.0.0.1/".into(),
                headers: Vec::new(),
                body: body.to_string().into_bytes(),
            },
            response: None,
        }
    }

    #[test]
    fn each_request_of_a_broadcast_has_its_stage() {
        let b = || Who::Herald("broadcast".into());
        let ingest = || Who::Herald("ingest".into());
        let started = Duration::from_millis(100);
        let cases = [
            (call(b(), "dynamodb", "Scan", json!({}), 200), Stage::Scan),
            (call(b(), "dynamodb", "UpdateItem", json!({}), 200), Stage::Record),
            (call(b(), "sqs", "SendMessageBatch", json!({"QueueUrl": "ingest-url"}), 200), Stage::ToIngest),
            (call(b(), "sqs", "SendMessageBatch", json!({"QueueUrl": "broadcast-url"}), 200), Stage::NextPage),
            (
                call(Who::EventSource("broadcast".into()), "sqs", "ReceiveMessage", json!({}), 50),
                Stage::FanOutEventSource,
            ),
            (call(ingest(), "dynamodb", "GetItem", json!({"Key": {"pk": {"S": "segment#x"}}}), 50), Stage::Start),
            (
                call(ingest(), "dynamodb", "GetItem", json!({"Key": {"pk": {"S": "broadcast#launch"}}}), 300),
                Stage::StateReads,
            ),
            (
                call(ingest(), "dynamodb", "PutItem", json!({"Item": {"pk": {"S": "message#1"}}}), 300),
                Stage::Notification,
            ),
            (call(Who::Herald("eligibility".into()), "dynamodb", "GetItem", json!({}), 300), Stage::Notification),
        ];
        for (c, expected) in cases {
            assert_eq!(stage_of(&c, "ingest-url", started), expected, "{} {:?}", c.label(), c.who);
        }
    }
}
