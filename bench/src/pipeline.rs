//! The local pipeline of `make demo`, instrumented: moto on loopback, the stack
//! from `template.yaml` (`herald_cli::local::provision`), every handler built as
//! the runner builds it (`herald_cli::runner::build`), each with an SDK
//! configuration of its own whose HTTP client counts its requests.
//!
//! The SQS event source is the runner's poller (`herald_cli::runner::Runner`),
//! given its own counted SDK configuration, so the bench tells Herald's requests
//! from the event source's: both are billed. The runner also logs each invocation
//! (for Lambda's request and duration charges) and can be paused, so a phase's
//! input is queued before the clock starts.

use crate::counting::{CountingClient, Recorder, Who};
use aws_config::SdkConfig;
use herald_cli::moto::Moto;
use herald_cli::runner::{FunctionSdks, Options, Runner};
use herald_cli::stack::Stack;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use herald_cli::runner::{Invocation, sqs_event_json};

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

pub struct Pipeline {
    pub stack: Stack,
    runner: Runner,
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
        let stack = herald_cli::local::provision(&env.plain, &env.root, prefix).await?;
        Self::start_on(env, stack, overrides, scheduler, None).await
    }

    /// As [`Pipeline::start`], on a stack already provisioned; with `only`, just those
    /// functions run (and the pipeline waits on their queues alone).
    pub async fn start_on(
        env: &Env,
        mut stack: Stack,
        overrides: &[(&str, &str, String)],
        scheduler: bool,
        only: Option<&[&str]>,
    ) -> anyhow::Result<Self> {
        if let Some(only) = only {
            stack.functions.retain(|f| only.contains(&f.name.as_str()));
        }
        for spec in &mut stack.functions {
            for (function, var, value) in overrides {
                if spec.name == *function {
                    spec.env.insert((*var).to_owned(), value.clone());
                }
            }
        }
        let mut sdks = BTreeMap::new();
        for spec in &stack.functions {
            let name = spec.name.clone();
            let handler = env.sdk(Who::Herald(name.clone())).await;
            let event_source = env.sdk(Who::EventSource(name.clone())).await;
            sdks.insert(name, FunctionSdks { handler, event_source });
        }
        let options = Options {
            sdks,
            schedules: scheduler.then_some(Some(Duration::ZERO)),
            log_invocations: true,
            // The event stream is measured on its own (section 12): the other figures are
            // the notification path's, with no stream reads in them.
            skip: if only.is_some() { Vec::new() } else { vec!["events".to_owned()] },
        };
        let runner = Runner::start_with(&stack, &env.plain, options)?;
        Ok(Self { stack, runner })
    }

    pub fn pause_all(&self, paused: bool) {
        self.runner.pause_all(paused);
    }

    pub fn invocations_since(&self, mark: usize) -> Vec<Invocation> {
        self.runner.invocations_since(mark)
    }

    pub fn invocation_mark(&self) -> usize {
        self.runner.invocation_mark()
    }

    pub async fn stop(self) {
        self.runner.stop().await;
    }
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
