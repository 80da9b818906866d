//! DynamoDB stream event sources, locally: what Lambda's event source mapping does for a
//! stream. Each shard is read in order from its start (`TRIM_HORIZON`, as the template
//! says), and a local stream has one; records that match no filter pattern are passed over, the rest go to the
//! function in batches; when the function names a record in `batchItemFailures` (or
//! fails), reading starts again at that record after a pause.

use super::{Invocation, InvokeJson};
use crate::stack::StreamSource;
use aws_sdk_dynamodbstreams::Client;
use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use base64::Engine as _;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(super) struct StreamPoller {
    pub client: Client,
    pub arn: String,
    pub source: StreamSource,
    pub function: String,
    pub timeout: Duration,
    pub invoke: InvokeJson,
    pub stop: Arc<AtomicBool>,
    pub paused: Arc<AtomicBool>,
    pub invocations: Option<Arc<Mutex<Vec<Invocation>>>>,
}

/// Where each shard is read next: an iterator, or a sequence number to start again at.
enum Position {
    Iterator(String),
    At(String),
}

impl StreamPoller {
    pub async fn run(self) {
        let mut shards: BTreeMap<String, Position> = BTreeMap::new();
        while !self.stop.load(Ordering::SeqCst) {
            if self.paused.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            let busy = match self.round(&mut shards).await {
                Ok(busy) => busy,
                Err(e) => {
                    tracing::warn!(function = %self.function, error = %format!("{e:#}"), "stream poll failed");
                    false
                }
            };
            // As Lambda's poller: about one read a second of a quiet stream.
            if !busy {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }

    /// One read of every shard; whether any record went to the function.
    async fn round(&self, shards: &mut BTreeMap<String, Position>) -> anyhow::Result<bool> {
        // A local table's stream keeps its one shard: it is listed once.
        if shards.is_empty() {
            let description = self.client.describe_stream().stream_arn(&self.arn).send().await?;
            for shard in description.stream_description.and_then(|d| d.shards).unwrap_or_default() {
                if let Some(id) = shard.shard_id {
                    let it = self.iterator(&id, ShardIteratorType::TrimHorizon, None).await?;
                    shards.insert(id, Position::Iterator(it));
                }
            }
        }
        let mut busy = false;
        for (id, position) in shards.iter_mut() {
            let iterator = match position {
                Position::Iterator(it) => it.clone(),
                Position::At(seq) => self.iterator(id, ShardIteratorType::AtSequenceNumber, Some(seq.clone())).await?,
            };
            let out = self.client.get_records().shard_iterator(iterator).limit(self.source.batch_size).send().await?;
            let next = out.next_shard_iterator.unwrap_or_default();
            let records: Vec<Value> =
                out.records.unwrap_or_default().iter().map(|r| record_json(r, &self.arn)).collect();
            let chosen: Vec<Value> = records.into_iter().filter(|r| self.source.matches(r)).collect();
            if chosen.is_empty() {
                *position = Position::Iterator(next);
                continue;
            }
            busy = true;
            *position = match self.deliver(&chosen).await {
                None => Position::Iterator(next),
                Some(seq) => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    Position::At(seq)
                }
            };
        }
        Ok(busy)
    }

    async fn iterator(&self, shard: &str, kind: ShardIteratorType, seq: Option<String>) -> anyhow::Result<String> {
        let out = self
            .client
            .get_shard_iterator()
            .stream_arn(&self.arn)
            .shard_id(shard)
            .shard_iterator_type(kind)
            .set_sequence_number(seq)
            .send()
            .await?;
        out.shard_iterator.ok_or_else(|| anyhow::anyhow!("no shard iterator"))
    }

    /// Invokes the function; the sequence number to start again at, if it is not done.
    async fn deliver(&self, records: &[Value]) -> Option<String> {
        let first = records.first().and_then(|r| r["dynamodb"]["SequenceNumber"].as_str()).map(str::to_owned);
        let event = json!({ "Records": records });
        let started = std::time::Instant::now();
        let mut ctx = Context::default();
        ctx.request_id = format!("local-{}", self.function);
        ctx.deadline = (chrono::Utc::now() + self.timeout).timestamp_millis() as u64;
        let result = tokio::time::timeout(self.timeout, (self.invoke)(LambdaEvent::new(event, ctx))).await;
        if let Some(Ok(mut log)) = self.invocations.as_ref().map(|i| i.lock()) {
            log.push(Invocation {
                function: self.function.clone(),
                records: records.len(),
                duration: started.elapsed(),
            });
        }
        match result {
            Ok(Ok(response)) => {
                let failures = response.get("batchItemFailures").and_then(Value::as_array).cloned().unwrap_or_default();
                let seq = failures.first().and_then(|f| f["itemIdentifier"].as_str()).map(str::to_owned);
                // An empty identifier fails the whole batch, as Lambda reads it.
                seq.map(|s| if s.is_empty() { first.clone().unwrap_or_default() } else { s })
            }
            Ok(Err(e)) => {
                tracing::warn!(function = %self.function, error = %e, "stream invocation failed");
                first
            }
            Err(_) => {
                tracing::warn!(function = %self.function, "stream invocation timed out");
                first
            }
        }
    }
}

impl StreamSource {
    /// Whether a record goes to the function: no filters, or one pattern matches.
    pub fn matches(&self, record: &Value) -> bool {
        self.patterns.is_empty()
            || self.patterns.iter().any(|p| serde_json::from_str(p).is_ok_and(|p: Value| pattern_matches(&p, record)))
    }
}

/// An event pattern, in the subset the template uses: objects of keys whose values are
/// lists of literals or `{"prefix": ...}`, or nested objects.
pub fn pattern_matches(pattern: &Value, value: &Value) -> bool {
    let Value::Object(pattern) = pattern else { return false };
    pattern.iter().all(|(key, want)| {
        let got = value.get(key).unwrap_or(&Value::Null);
        match want {
            Value::Object(_) => pattern_matches(want, got),
            Value::Array(options) => options.iter().any(|o| match o {
                Value::Object(op) => match (op.get("prefix"), got) {
                    (Some(Value::String(p)), Value::String(g)) => g.starts_with(p.as_str()),
                    _ => false,
                },
                literal => literal == got,
            }),
            _ => false,
        }
    })
}

/// A stream record as Lambda hands it to a function.
fn record_json(r: &Record, arn: &str) -> Value {
    let mut change = Map::new();
    if let Some(d) = &r.dynamodb {
        change.insert("SequenceNumber".into(), json!(d.sequence_number));
        for (name, image) in [("Keys", &d.keys), ("NewImage", &d.new_image), ("OldImage", &d.old_image)] {
            if let Some(image) = image {
                change.insert(name.into(), item_json(image));
            }
        }
    }
    json!({
        "eventID": r.event_id,
        "eventName": r.event_name.as_ref().map(|n| n.as_str()),
        "eventSource": "aws:dynamodb",
        "eventSourceARN": arn,
        "awsRegion": r.aws_region,
        "dynamodb": change,
    })
}

fn item_json(item: &std::collections::HashMap<String, AttributeValue>) -> Value {
    Value::Object(item.iter().map(|(k, v)| (k.clone(), value_json(v))).collect())
}

fn value_json(v: &AttributeValue) -> Value {
    let b64 =
        |b: &aws_sdk_dynamodbstreams::primitives::Blob| base64::engine::general_purpose::STANDARD.encode(b.as_ref());
    match v {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(b) => json!({ "NULL": b }),
        AttributeValue::M(m) => json!({ "M": item_json(m) }),
        AttributeValue::L(l) => json!({ "L": l.iter().map(value_json).collect::<Vec<_>>() }),
        AttributeValue::Ss(s) => json!({ "SS": s }),
        AttributeValue::Ns(n) => json!({ "NS": n }),
        AttributeValue::B(b) => json!({ "B": b64(b) }),
        AttributeValue::Bs(bs) => json!({ "BS": bs.iter().map(b64).collect::<Vec<_>>() }),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_literals_prefixes_and_nested_keys() {
        let consent = r#"{"eventName": ["INSERT"], "dynamodb": {"Keys": {"sk": {"S": [{"prefix": "consent#"}]}}}}"#;
        let source = StreamSource { table: "T".into(), batch_size: 10, patterns: vec![consent.into()] };
        let record = |name: &str, sk: &str| json!({"eventName": name, "dynamodb": {"Keys": {"sk": {"S": sk}}}});
        assert!(source.matches(&record("INSERT", "consent#2026#email:*")));
        assert!(!source.matches(&record("MODIFY", "consent#2026#email:*")));
        assert!(!source.matches(&record("INSERT", "profile")));
        let open = StreamSource { patterns: vec![], ..source };
        assert!(open.matches(&record("REMOVE", "profile")));
    }
}
