//! The local pipeline of `make demo`, instrumented: moto on loopback, the stack
//! from `template.yaml` (`herald_cli::local::provision`), every handler built as
//! the runner builds it (`herald_cli::runner::build`), each with an SDK
//! configuration of its own whose HTTP client counts its requests.
//!
//! The SQS event source is the runner's poller (receive up to the batch size with
//! a 1 s wait, invoke, delete what did not fail), repeated here rather than reused
//! because the runner gives its pollers the handlers' SDK configuration, and the
//! bench must tell Herald's requests from the event source's: both are billed.
//! It also records each invocation (for Lambda's request and duration charges)
//! and can be paused, so a phase's input is queued before the clock starts.

use crate::counting::{CountingClient, Recorder, Who};
use anyhow::Context as _;
use aws_config::SdkConfig;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use futures::future::BoxFuture;
use herald_cli::moto::Moto;
use herald_cli::runner::{self, Handler};
use herald_cli::stack::{FunctionSpec, Stack, Trigger};
use lambda_runtime::{Context, LambdaEvent};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

type Invoke = Arc<
    dyn Fn(LambdaEvent<SqsEvent>) -> BoxFuture<'static, Result<SqsBatchResponse, lambda_runtime::Error>> + Send + Sync,
>;
type InvokeJson = Arc<
    dyn Fn(LambdaEvent<serde_json::Value>) -> BoxFuture<'static, Result<serde_json::Value, lambda_runtime::Error>>
        + Send
        + Sync,
>;

/// Moto, the request recorder and an uncounted SDK configuration for the bench's
/// own bookkeeping (provisioning, waiting, reading results back).
pub struct Env {
    pub root: PathBuf,
    pub moto: Moto,
    pub recorder: Arc<Recorder>,
    pub plain: SdkConfig,
}

impl Env {
    pub async fn start(root: &Path) -> anyhow::Result<Self> {
        let moto = Moto::start(root, 0).await?;
        let plain = herald_cli::local::sdk_for(&moto.endpoint).await;
        Ok(Self { root: root.to_path_buf(), moto, recorder: Recorder::new(), plain })
    }

    /// An SDK configuration like `herald_cli::local::sdk_for`'s, whose requests are counted as `who`'s.
    pub async fn sdk(&self, who: Who) -> SdkConfig {
        herald::aws::loader()
            .http_client(CountingClient::new(who, self.recorder.clone()))
            .endpoint_url(&self.moto.endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "herald-bench"))
            .load()
            .await
    }
}

/// One handler invocation by the event source.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub function: String,
    pub records: usize,
    pub duration: Duration,
}

pub struct Pipeline {
    pub stack: Stack,
    stop: Arc<AtomicBool>,
    gates: BTreeMap<String, Arc<AtomicBool>>,
    tasks: Vec<JoinHandle<()>>,
    pub invocations: Arc<Mutex<Vec<Invocation>>>,
}

impl Pipeline {
    /// Provisions a stack named `prefix` and starts every function on it, with
    /// `overrides` (function, variable, value) applied to the template's environment.
    /// With `scheduler`, the scheduler runs as EventBridge would run it, except that
    /// its first run is at once rather than a minute in: a new stack's first run
    /// reads back a whole day of minute buckets, and that should not land in a
    /// measured phase. Without it the scheduler does not run.
    pub async fn start(
        env: &Env,
        prefix: &str,
        overrides: &[(&str, &str, String)],
        scheduler: bool,
    ) -> anyhow::Result<Self> {
        let mut stack = herald_cli::local::provision(&env.plain, &env.root, prefix).await?;
        for spec in &mut stack.functions {
            for (function, var, value) in overrides {
                if spec.name == *function {
                    spec.env.insert((*var).to_owned(), value.clone());
                }
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let invocations = Arc::new(Mutex::new(Vec::new()));
        let mut gates = BTreeMap::new();
        let mut tasks = Vec::new();
        for spec in &stack.functions {
            let sdk = env.sdk(Who::Herald(spec.name.clone())).await;
            let handler = runner::build(spec, &sdk).with_context(|| format!("configuring {}", spec.name))?;
            match (&spec.trigger, handler) {
                (Trigger::Queue { queue, .. }, Handler::Sqs(invoke)) => {
                    let queue = stack.queue(queue)?.clone();
                    let gate = Arc::new(AtomicBool::new(false));
                    gates.insert(spec.name.clone(), gate.clone());
                    let poller = Poller {
                        sqs: aws_sdk_sqs::Client::new(&env.sdk(Who::EventSource(spec.name.clone())).await),
                        url: queue.url,
                        arn: queue.arn,
                        spec: spec.clone(),
                        invoke,
                        stop: stop.clone(),
                        paused: gate,
                        invocations: invocations.clone(),
                    };
                    tasks.push(tokio::spawn(poller.run()));
                }
                (Trigger::Schedule { every_secs }, Handler::Json(invoke)) if scheduler => {
                    tasks.push(tokio::spawn(tick(spec.name.clone(), *every_secs, invoke, stop.clone())));
                }
                // Function URLs (webhooks) take no part in these scenarios.
                _ => {}
            }
        }
        Ok(Self { stack, stop, gates, tasks, invocations })
    }

    pub fn pause_all(&self, paused: bool) {
        for g in self.gates.values() {
            g.store(paused, Ordering::SeqCst);
        }
    }

    pub fn invocations_since(&self, mark: usize) -> Vec<Invocation> {
        self.invocations
            .lock()
            .map(|i| i.get(mark..).map(<[Invocation]>::to_vec).unwrap_or_default())
            .unwrap_or_default()
    }

    pub fn invocation_mark(&self) -> usize {
        self.invocations.lock().map(|i| i.len()).unwrap_or_default()
    }

    pub async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// An EventBridge schedule, locally (as the runner's, with its first run at once).
async fn tick(name: String, every_secs: u64, invoke: InvokeJson, stop: Arc<AtomicBool>) {
    let mut next = tokio::time::Instant::now();
    while !stop.load(Ordering::SeqCst) {
        if tokio::time::Instant::now() >= next {
            next += Duration::from_secs(every_secs);
            let event = serde_json::json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
            if let Err(e) = (invoke)(LambdaEvent::new(event, Context::default())).await {
                tracing::warn!(function = %name, error = %e, "scheduled invocation failed");
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

struct Poller {
    sqs: aws_sdk_sqs::Client,
    url: String,
    arn: String,
    spec: FunctionSpec,
    invoke: Invoke,
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    invocations: Arc<Mutex<Vec<Invocation>>>,
}

impl Poller {
    async fn run(self) {
        while !self.stop.load(Ordering::SeqCst) {
            if self.paused.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            if let Err(e) = self.poll_once().await {
                tracing::warn!(function = %self.spec.name, error = %format!("{e:#}"), "poll failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }

    async fn poll_once(&self) -> anyhow::Result<()> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(match self.spec.trigger {
                Trigger::Queue { batch_size, .. } => batch_size.clamp(1, 10),
                _ => 10,
            })
            .wait_time_seconds(1)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(());
        }
        let event = sqs_event(&messages, &self.arn)?;
        let mut ctx = Context::default();
        ctx.request_id = format!("bench-{}", self.spec.name);
        ctx.deadline =
            (chrono::Utc::now() + chrono::TimeDelta::seconds(self.spec.timeout_secs as i64)).timestamp_millis() as u64;
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(
            Duration::from_secs(self.spec.timeout_secs),
            (self.invoke)(LambdaEvent::new(event, ctx)),
        )
        .await;
        if let Ok(mut inv) = self.invocations.lock() {
            inv.push(Invocation {
                function: self.spec.name.clone(),
                records: messages.len(),
                duration: started.elapsed(),
            });
        }
        let failed: HashSet<String> = match result {
            Ok(Ok(response)) => response.batch_item_failures.into_iter().map(|f| f.item_identifier).collect(),
            Ok(Err(e)) => {
                tracing::warn!(function = %self.spec.name, error = %e, "invocation failed");
                return Ok(());
            }
            Err(_) => {
                tracing::warn!(function = %self.spec.name, "invocation timed out");
                return Ok(());
            }
        };
        let entries: Vec<_> = messages
            .iter()
            .filter(|m| !m.message_id.as_ref().is_some_and(|id| failed.contains(id)))
            .enumerate()
            .filter_map(|(i, m)| {
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .set_receipt_handle(m.receipt_handle.clone())
                    .build()
                    .ok()
            })
            .collect();
        if !entries.is_empty() {
            self.sqs.delete_message_batch().queue_url(&self.url).set_entries(Some(entries)).send().await?;
        }
        Ok(())
    }
}

/// The event Lambda's SQS event source builds from received messages.
pub fn sqs_event(messages: &[aws_sdk_sqs::types::Message], arn: &str) -> anyhow::Result<SqsEvent> {
    Ok(serde_json::from_value(sqs_event_json(messages, arn))?)
}

pub fn sqs_event_json(messages: &[aws_sdk_sqs::types::Message], arn: &str) -> serde_json::Value {
    let records: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| {
            let attributes: BTreeMap<String, String> =
                m.attributes.iter().flatten().map(|(k, v)| (k.as_str().to_owned(), v.clone())).collect();
            serde_json::json!({
                "messageId": m.message_id,
                "receiptHandle": m.receipt_handle,
                "body": m.body,
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body,
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    serde_json::json!({ "Records": records })
}

/// Sends bodies to a queue in batches of ten, four batches at a time.
pub async fn send_all(sqs: &aws_sdk_sqs::Client, url: &str, bodies: &[String]) -> anyhow::Result<()> {
    use futures::StreamExt;
    let batches: Vec<_> = bodies.chunks(10).collect();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(batches)
        .map(|chunk| async move {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(b)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = sqs.send_message_batch().queue_url(url).set_entries(Some(entries)).send().await?;
            anyhow::ensure!(out.failed.is_empty(), "{} message(s) not queued", out.failed.len());
            Ok(())
        })
        .buffer_unordered(4)
        .collect()
        .await;
    results.into_iter().collect()
}
