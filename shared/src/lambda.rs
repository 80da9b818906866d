//! Lambda glue shared by the functions: tracing, and SQS batches with partial
//! batch responses.
//!
//! The SQS envelope comes from Lambda and is always well formed; each record's
//! body is parsed on its own by the handler, so one bad body fails one record.

pub use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
pub use lambda_runtime::{Context, Error, LambdaEvent, run, service_fn};

use crate::ports::{Destination, Handoff, Outbox, hand_off};
use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use std::future::Future;

/// JSON logs to stdout (CloudWatch), level from `RUST_LOG` (default `info`).
/// No timestamps or ANSI: Lambda adds the former and the console has no use for the latter.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .init();
}

/// One SQS record as a handler sees it.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: String,
    pub body: String,
    /// To change the record's visibility (a retry back-off).
    pub receipt_handle: String,
    /// How many times SQS has delivered it, this time included.
    pub receive_count: u32,
}

impl Record {
    pub fn new(id: impl Into<String>, body: impl Into<String>) -> Self {
        Self { id: id.into(), body: body.into(), receipt_handle: String::new(), receive_count: 1 }
    }
}

/// What a handler decided for one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done (sent, recorded, refused with a recorded reason, or a duplicate): delete it.
    Done,
    /// A transient failure: leave it on the queue to come back after the visibility timeout.
    Retry(String),
}

/// Runs `f` over the records with at most `concurrency` in flight, keeping order.
pub async fn for_each_record<T, F, Fut>(event: SqsEvent, concurrency: usize, f: F) -> Vec<(String, T)>
where
    F: Fn(Record) -> Fut,
    Fut: Future<Output = T>,
{
    let records = event.records.into_iter().map(|m| Record {
        receive_count: m.attributes.get("ApproximateReceiveCount").and_then(|c| c.parse().ok()).unwrap_or(1),
        id: m.message_id.unwrap_or_default(),
        body: m.body.unwrap_or_default(),
        receipt_handle: m.receipt_handle.unwrap_or_default(),
    });
    futures::stream::iter(records)
        .map(|r| {
            let id = r.id.clone();
            let fut = f(r);
            async move { (id, fut.await) }
        })
        .buffered(concurrency.max(1))
        .collect()
        .await
}

/// The partial batch response: every record to retry, by id.
pub fn batch_response<'a>(outcomes: impl IntoIterator<Item = (&'a str, &'a Outcome)>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for (id, outcome) in outcomes {
        if let Outcome::Retry(reason) = outcome {
            tracing::warn!(record = id, reason = %reason, "record returned to the queue");
            response.add_failure(id.to_owned());
        }
    }
    response
}

/// What a handler decided for one record that may hand messages on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Done,
    Retry(String),
    /// Done once these messages (queue, body, delay in seconds) are on their queues.
    Forward(Vec<(Destination, String, u32)>),
}

/// The partial batch response for records that came to `steps`: what they hand on is sent
/// in batches per queue ([`hand_off`]), and a record a message of which was not accepted
/// comes back (logged with `why`), to hand it on again.
pub async fn settle<O: Outbox>(outbox: &O, steps: Vec<(String, Step)>, why: &str) -> SqsBatchResponse {
    let mut handoffs = Vec::new();
    let mut outcomes: Vec<(String, Outcome)> = Vec::with_capacity(steps.len());
    for (position, (id, step)) in steps.into_iter().enumerate() {
        let outcome = match step {
            Step::Done => Outcome::Done,
            Step::Retry(reason) => Outcome::Retry(reason),
            Step::Forward(messages) => {
                for (to, body, delay_secs) in messages {
                    handoffs.push(Handoff { record: position, to, body, delay_secs });
                }
                Outcome::Done
            }
        };
        outcomes.push((id, outcome));
    }
    for position in hand_off(outbox, handoffs).await {
        if let Some((_, outcome)) = outcomes.get_mut(position) {
            *outcome = Outcome::Retry(why.to_owned());
        }
    }
    batch_response(outcomes.iter().map(|(id, o)| (id.as_str(), o)))
}

/// How long an attempt may still be running: the Lambda deadline, with a margin.
/// A claim made now is considered abandoned after this instant.
pub fn attempt_deadline(ctx: &Context, now: DateTime<Utc>) -> DateTime<Utc> {
    let deadline = DateTime::<Utc>::from_timestamp_millis(ctx.deadline as i64).filter(|d| *d > now);
    deadline.unwrap_or(now + TimeDelta::seconds(60)) + TimeDelta::seconds(5)
}
