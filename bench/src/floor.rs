//! The floor: the same requests the pipeline made, sent again by a client with no
//! Herald logic (no SDK either: the recorded HTTP requests themselves) to a fresh
//! copy of the stack on the same moto, in the order the pipeline issued them and
//! with at most as many in flight as the pipeline ever had.
//!
//! Resource names differ only by the stack prefix (of the same length), so each
//! body is the recorded one with the prefix swapped. Two things cannot be replayed
//! verbatim: a delete names receipt handles that only the original receive got, so
//! the replay deletes with the handles its own receives got from the same queue;
//! and a receive waits 0 s instead of the event source's 1 s long poll, since the
//! floor should not wait on an empty queue.

use crate::counting::Call;
use aws_smithy_http_client::Connector;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::HttpConnector;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Replayer {
    connector: Connector,
    from: String,
    to: String,
    handles: Mutex<HashMap<String, VecDeque<String>>>,
    /// Replayed requests whose status class (2xx, 4xx, 5xx) differed from the original's.
    pub diverged: Mutex<u64>,
}

/// The most requests the recorded calls ever had in flight at once.
pub fn peak_concurrency(calls: &[&Call]) -> usize {
    let mut edges: Vec<(Duration, i32)> = calls.iter().flat_map(|c| [(c.start, 1), (c.end, -1)]).collect();
    edges.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut peak) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        peak = peak.max(now);
    }
    peak.max(1) as usize
}

impl Replayer {
    pub fn new(from: &str, to: &str) -> Arc<Self> {
        assert_eq!(from.len(), to.len(), "the floor's stack prefix must be as long as the run's");
        Arc::new(Self {
            connector: Connector::builder().tls_provider(Provider::Rustls(CryptoMode::Ring)).build(),
            from: from.to_owned(),
            to: to.to_owned(),
            handles: Mutex::new(HashMap::new()),
            diverged: Mutex::new(0),
        })
    }

    fn body_for(&self, call: &Call) -> Vec<u8> {
        let text = String::from_utf8_lossy(&call.request.body).replace(&self.from, &self.to);
        match call.operation.as_str() {
            "ReceiveMessage" => {
                let mut v: Value = serde_json::from_str(&text).unwrap_or_default();
                v["WaitTimeSeconds"] = Value::from(0);
                v.to_string().into_bytes()
            }
            "DeleteMessageBatch" => {
                let mut v: Value = serde_json::from_str(&text).unwrap_or_default();
                let queue = v["QueueUrl"].as_str().unwrap_or_default().to_owned();
                if let (Ok(mut handles), Some(entries)) = (self.handles.lock(), v["Entries"].as_array_mut()) {
                    let pool = handles.entry(queue).or_default();
                    for e in entries {
                        if let Some(h) = pool.pop_front() {
                            e["ReceiptHandle"] = Value::from(h);
                        }
                    }
                }
                v.to_string().into_bytes()
            }
            _ => text.into_bytes(),
        }
    }

    /// Sends one recorded request again.
    pub async fn send(&self, call: &Call) -> anyhow::Result<()> {
        let body = self.body_for(call);
        let mut request = HttpRequest::new(SdkBody::from(body.clone()));
        request.set_method(&call.request.method)?;
        request.set_uri(call.request.uri.replace(&self.from, &self.to))?;
        for (k, v) in &call.request.headers {
            if !k.eq_ignore_ascii_case("content-length") {
                request.headers_mut().insert(k.clone(), v.clone());
            }
        }
        request.headers_mut().insert("content-length", body.len().to_string());
        let response = self.connector.call(request).await?;
        let status = response.status().as_u16();
        if status / 100 != call.status / 100
            && let Ok(mut d) = self.diverged.lock()
        {
            *d += 1;
        }
        let bytes = ByteStream::new(response.into_body()).collect().await?.into_bytes();
        if call.operation == "ReceiveMessage" {
            let req: Value = serde_json::from_slice(&body).unwrap_or_default();
            let queue = req["QueueUrl"].as_str().unwrap_or_default().to_owned();
            let resp: Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let got: Vec<String> = resp["Messages"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["ReceiptHandle"].as_str().map(str::to_owned))
                .collect();
            if let Ok(mut handles) = self.handles.lock() {
                handles.entry(queue).or_default().extend(got);
            }
        }
        Ok(())
    }

    /// Replays `calls` in the order they were issued with at most `concurrency` in
    /// flight, and returns the wall time it took.
    pub async fn replay(self: &Arc<Self>, calls: &[&Call], concurrency: usize) -> anyhow::Result<Duration> {
        let mut ordered: Vec<Call> = calls.iter().map(|c| (*c).clone()).collect();
        ordered.sort_by_key(|c| c.start);
        let limit = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        let started = std::time::Instant::now();
        let mut tasks = Vec::with_capacity(ordered.len());
        for call in ordered {
            let permit = limit.clone().acquire_owned().await?;
            let me = self.clone();
            tasks.push(tokio::spawn(async move {
                let result = me.send(&call).await;
                drop(permit);
                result
            }));
        }
        for t in tasks {
            t.await??;
        }
        Ok(started.elapsed())
    }
}
