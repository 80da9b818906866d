//! Runs the functions locally the way Lambda's SQS event source does: receive up
//! to a batch from the function's queue, invoke the handler, delete what it did
//! not report as failed. Failed records come back after the visibility timeout,
//! and after `maxReceiveCount` moto moves them to the dead-letter queue.

use crate::stack::{FunctionSpec, Stack, Trigger};
use anyhow::{Context as _, bail};
use aws_config::SdkConfig;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use futures::future::BoxFuture;
use lambda_runtime::{Context, LambdaEvent};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

mod streams;
pub use streams::pattern_matches;

type Invoke = Arc<
    dyn Fn(LambdaEvent<SqsEvent>) -> BoxFuture<'static, Result<SqsBatchResponse, lambda_runtime::Error>> + Send + Sync,
>;
type InvokeJson = Arc<
    dyn Fn(LambdaEvent<serde_json::Value>) -> BoxFuture<'static, Result<serde_json::Value, lambda_runtime::Error>>
        + Send
        + Sync,
>;

/// A function's handler, by the kind of event it takes.
pub enum Handler {
    Sqs(Invoke),
    Json(InvokeJson),
}

/// Builds a function's handler from its template-resolved environment, as its `main` does from the process's.
pub fn build(spec: &FunctionSpec, sdk: &SdkConfig) -> anyhow::Result<Handler> {
    let env = spec.env.clone();
    let get = move |name: &str| env.get(name).cloned();
    let invoke: Invoke = match spec.name.as_str() {
        "scheduler" => {
            let deps = Arc::new(scheduler::aws::deps(sdk, &scheduler::Config::from_lookup(&get)?));
            return Ok(Handler::Json(Arc::new(move |e| {
                let d = deps.clone();
                Box::pin(async move { scheduler::handler(&d, e).await })
            })));
        }
        // A Function URL handler: the event and response travel as JSON (see crate::web).
        "webhooks" => {
            let deps = Arc::new(webhooks::aws::deps(sdk, &webhooks::Config::from_lookup(&get)?));
            return Ok(Handler::Json(Arc::new(move |e: LambdaEvent<serde_json::Value>| {
                let d = deps.clone();
                Box::pin(async move {
                    let request = serde_json::from_value(e.payload)?;
                    let response = webhooks::handler(&d, LambdaEvent::new(request, e.context)).await?;
                    Ok(serde_json::to_value(response)?)
                })
            })));
        }
        "inbox" => {
            let deps = Arc::new(inbox::aws::deps(sdk, &inbox::Config::from_lookup(&get)?));
            return Ok(Handler::Json(Arc::new(move |e: LambdaEvent<serde_json::Value>| {
                let d = deps.clone();
                Box::pin(async move {
                    let request = serde_json::from_value(e.payload)?;
                    let response = inbox::handler(&d, LambdaEvent::new(request, e.context)).await?;
                    Ok(serde_json::to_value(response)?)
                })
            })));
        }
        // A DynamoDB stream event source's function.
        "events" => {
            let deps = Arc::new(events::aws::deps(sdk, &events::Config::from_lookup(&get)?));
            return Ok(Handler::Json(Arc::new(move |e: LambdaEvent<serde_json::Value>| {
                let d = deps.clone();
                Box::pin(async move {
                    let event = serde_json::from_value(e.payload)?;
                    let response = events::handler(&d, LambdaEvent::new(event, e.context)).await?;
                    Ok(serde_json::to_value(response)?)
                })
            })));
        }
        "ingest" => {
            let deps = Arc::new(ingest::aws::deps(sdk, &ingest::Config::from_lookup(&get)?));
            Arc::new(move |e| {
                let d = deps.clone();
                Box::pin(async move { ingest::handler(&d, e).await })
            })
        }
        "eligibility" => {
            let deps = Arc::new(eligibility::aws::deps(sdk, &eligibility::Config::from_lookup(&get)?));
            Arc::new(move |e| {
                let d = deps.clone();
                Box::pin(async move { eligibility::handler(&d, e).await })
            })
        }
        "dispatch-email" => {
            let both = Arc::new(dispatch_email::aws::deps(sdk, &dispatch_email::Config::from_lookup(&get)?));
            Arc::new(move |e| {
                let d = both.clone();
                Box::pin(async move { dispatch_email::handler(&d.0, &d.1, e).await })
            })
        }
        "dispatch-sms" => {
            let both = Arc::new(dispatch_sms::aws::deps(sdk, &dispatch_sms::Config::from_lookup(&get)?));
            Arc::new(move |e| {
                let d = both.clone();
                Box::pin(async move { dispatch_sms::handler(&d.0, &d.1, e).await })
            })
        }
        "dispatch-push" => {
            let both = Arc::new(dispatch_push::aws::deps(sdk, &dispatch_push::Config::from_lookup(&get)?));
            Arc::new(move |e| {
                let d = both.clone();
                Box::pin(async move { dispatch_push::handler(&d.0, &d.1, e).await })
            })
        }
        "dispatch-inbox" => {
            let both = Arc::new(dispatch_inbox::aws::deps(sdk, &dispatch_inbox::Config::from_lookup(&get)?));
            Arc::new(move |e| {
                let d = both.clone();
                Box::pin(async move { dispatch_inbox::handler(&d.0, &d.1, e).await })
            })
        }
        "broadcast" => {
            let deps = Arc::new(broadcast::aws::deps(sdk, &broadcast::Config::from_lookup(&get)?));
            Arc::new(move |e| {
                let d = deps.clone();
                Box::pin(async move { broadcast::handler(&d, e).await })
            })
        }
        "digests" => {
            let deps = Arc::new(digests::aws::deps(sdk, &digests::Config::from_lookup(&get)?));
            Arc::new(move |e| {
                let d = deps.clone();
                Box::pin(async move { digests::handler(&d, e).await })
            })
        }
        "journeys" => {
            let deps = Arc::new(journeys::aws::deps(sdk, &journeys::Config::from_lookup(&get)?));
            Arc::new(move |e| {
                let d = deps.clone();
                Box::pin(async move { journeys::handler(&d, e).await })
            })
        }
        "receipts" => {
            let deps = Arc::new(receipts::aws::deps(sdk, &receipts::Config::from_lookup(&get)?));
            Arc::new(move |e| {
                let d = deps.clone();
                Box::pin(async move { receipts::handler(&d, e).await })
            })
        }
        other => bail!("the template declares a function {other} that this runner does not know"),
    };
    Ok(Handler::Sqs(invoke))
}

/// The running pollers; dropping it does not stop them, [`Runner::stop`] does.
pub struct Runner {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    gates: Vec<Arc<AtomicBool>>,
    invocations: Option<Arc<Mutex<Vec<Invocation>>>>,
}

/// How [`Runner::start_with`] wires the functions.
#[derive(Default)]
pub struct Options {
    /// Per function name, the SDK configurations of its handler and of its event
    /// source (the bench counts the two apart: both are billed). A function not
    /// named here uses the runner's configuration for both.
    pub sdks: BTreeMap<String, FunctionSdks>,
    /// Scheduled functions run: `Some(first)` is the delay before the first run (a
    /// period, as EventBridge, or none at all). `None`: they do not run.
    pub schedules: Option<Option<Duration>>,
    /// Keep a log of every SQS and stream invocation (records, duration).
    pub log_invocations: bool,
    /// Functions not to run (a test drives them itself).
    pub skip: Vec<String>,
}

pub struct FunctionSdks {
    pub handler: SdkConfig,
    pub event_source: SdkConfig,
}

/// One handler invocation by an event source.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub function: String,
    pub records: usize,
    pub duration: Duration,
}

impl Runner {
    /// Starts one poller per function in the stack, and its schedules.
    pub fn start(stack: &Stack, sdk: &SdkConfig) -> anyhow::Result<Self> {
        Self::start_with(stack, sdk, Options { schedules: Some(None), ..Options::default() })
    }

    pub fn start_with(stack: &Stack, sdk: &SdkConfig, options: Options) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let invocations = options.log_invocations.then(|| Arc::new(Mutex::new(Vec::new())));
        let mut runner = Self { stop: stop.clone(), tasks: Vec::new(), gates: Vec::new(), invocations };
        for spec in stack.functions.iter().filter(|f| !options.skip.contains(&f.name)) {
            let sdks = options.sdks.get(&spec.name);
            let handler_sdk = sdks.map_or(sdk, |s| &s.handler);
            let handler = build(spec, handler_sdk).with_context(|| format!("configuring {}", spec.name))?;
            match (&spec.trigger, handler) {
                (Trigger::Queue { queue, .. }, Handler::Sqs(invoke)) => {
                    let queue = stack.queue(queue)?.clone();
                    let paused = Arc::new(AtomicBool::new(false));
                    runner.gates.push(paused.clone());
                    let poller = Poller {
                        sqs: aws_sdk_sqs::Client::new(sdks.map_or(sdk, |s| &s.event_source)),
                        url: queue.url,
                        arn: queue.arn,
                        spec: spec.clone(),
                        invoke,
                        stop: stop.clone(),
                        paused,
                        invocations: runner.invocations.clone(),
                    };
                    runner.tasks.push(tokio::spawn(poller.run()));
                }
                (Trigger::Schedule { every_secs }, Handler::Json(invoke)) => {
                    if let Some(first) = options.schedules {
                        let every = Duration::from_secs(*every_secs);
                        let first = first.unwrap_or(every);
                        runner.tasks.push(tokio::spawn(tick(spec.name.clone(), every, first, invoke, stop.clone())));
                    }
                }
                (Trigger::Streams(sources), Handler::Json(invoke)) => {
                    let client = aws_sdk_dynamodbstreams::Client::new(sdks.map_or(sdk, |s| &s.event_source));
                    for source in sources {
                        let arn = stack
                            .streams
                            .get(&source.table)
                            .with_context(|| format!("{}: no stream on {}", spec.name, source.table))?
                            .clone();
                        let paused = Arc::new(AtomicBool::new(false));
                        runner.gates.push(paused.clone());
                        let poller = streams::StreamPoller {
                            client: client.clone(),
                            arn,
                            source: source.clone(),
                            function: spec.name.clone(),
                            timeout: Duration::from_secs(spec.timeout_secs),
                            invoke: invoke.clone(),
                            stop: stop.clone(),
                            paused,
                            invocations: runner.invocations.clone(),
                        };
                        runner.tasks.push(tokio::spawn(poller.run()));
                    }
                }
                // Function URLs are served over HTTP by the local web front, not polled.
                (Trigger::Url, _) => {}
                (trigger, _) => bail!("{}: its handler does not take {trigger:?} events", spec.name),
            }
        }
        Ok(runner)
    }

    /// Holds every poller (nothing is received) or lets them go.
    pub fn pause_all(&self, paused: bool) {
        for g in &self.gates {
            g.store(paused, Ordering::SeqCst);
        }
    }

    /// How many invocations are logged so far (with [`Options::log_invocations`]).
    pub fn invocation_mark(&self) -> usize {
        self.invocations.as_ref().and_then(|i| i.lock().ok().map(|i| i.len())).unwrap_or_default()
    }

    /// The invocations logged since `mark`.
    pub fn invocations_since(&self, mark: usize) -> Vec<Invocation> {
        self.invocations
            .as_ref()
            .and_then(|i| i.lock().ok().map(|i| i.get(mark..).map(<[Invocation]>::to_vec).unwrap_or_default()))
            .unwrap_or_default()
    }

    pub async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// An EventBridge schedule, locally: invoke after `first`, then every `every`, until stopped.
async fn tick(name: String, every: Duration, first: Duration, invoke: InvokeJson, stop: Arc<AtomicBool>) {
    let mut next = tokio::time::Instant::now() + first;
    while !stop.load(Ordering::SeqCst) {
        if tokio::time::Instant::now() >= next {
            next += every;
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
    invocations: Option<Arc<Mutex<Vec<Invocation>>>>,
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
        ctx.request_id = format!("local-{}", self.spec.name);
        ctx.deadline =
            (chrono::Utc::now() + chrono::TimeDelta::seconds(self.spec.timeout_secs as i64)).timestamp_millis() as u64;
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(
            Duration::from_secs(self.spec.timeout_secs),
            (self.invoke)(LambdaEvent::new(event, ctx)),
        )
        .await;
        if let Some(Ok(mut log)) = self.invocations.as_ref().map(|i| i.lock()) {
            log.push(Invocation {
                function: self.spec.name.clone(),
                records: messages.len(),
                duration: started.elapsed(),
            });
        }
        // As Lambda: an error or a timeout leaves the whole batch for another try.
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
