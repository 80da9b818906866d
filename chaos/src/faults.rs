//! What the proxy does to a request, decided from a seed, and how each fault is
//! answered, spelled the way each service's protocol spells it.
//!
//! A decision is a pure function of the seed, the request's service and operation,
//! what it names (the Herald message ids, keys and recipients in its body, which the
//! seed fixes; else the whole body) and how many times such a request has been seen
//! (the SDK's retry of a request is the next one and gets a fresh draw). So neither
//! concurrency nor the clock changes what the n-th request about a message meets;
//! only the outage windows are clock time (from [`Faults::arm_outages`]).
//!
//! The protocols (as the SDK parses them):
//! - DynamoDB, AWS JSON 1.0: `{"__type": "<namespace>#<Code>", "message": ...}`.
//! - SQS, AWS JSON 1.0 in query-compatible mode: the same body, and the header
//!   `x-amzn-query-error: <Code>;Sender|Receiver`, whose code the SDK prefers.
//! - SNS, the query protocol: an XML `<ErrorResponse><Error><Type/><Code/><Message/>`.
//! - SES v2, REST JSON: the code in the `x-amzn-ErrorType` header, `{"message": ...}`.
//!
//! The codes: the SDK's standard retry strategy retries `Throttling`,
//! `ThrottlingException`, `ProvisionedThroughputExceededException`,
//! `RequestThrottled`, `TooManyRequestsException` (aws-runtime's THROTTLING_ERRORS)
//! and any 500, 502, 503 or 504; SNS's `Throttled` (429) is not in that list, so it
//! reaches Herald's own retry path at once.

use crate::rng::{Rng, fnv, mix};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The services faults are injected into, by the name in the SigV4 credential scope.
pub const SERVICES: [&str; 4] = ["dynamodb", "sqs", "sns", "ses"];

/// Writes the proxy forwards, lets moto apply, and then answers 500 (the answer lost).
pub fn is_applied_write(service: &str, op: &str) -> bool {
    matches!(
        (service, op),
        ("dynamodb", "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem" | "TransactWriteItems")
            | ("sqs", "SendMessage" | "SendMessageBatch")
    )
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outage {
    pub service: &'static str,
    /// From the moment outages are armed.
    pub start: Duration,
    pub length: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FaultConfig {
    pub seed: u64,
    /// Share of requests (to the four services) answered with a throttling error.
    pub throttle: f64,
    /// Share answered 500 or 503 without reaching the service.
    pub server_error: f64,
    /// Share of the writes of [`is_applied_write`] applied and then answered 500.
    pub applied_then_500: f64,
    pub outages: Vec<Outage>,
}

impl FaultConfig {
    /// One outage per service, `length` long, one after the other with a gap, each
    /// starting at a seeded offset within its slot.
    pub fn staggered_outages(seed: u64, first: Duration, length: Duration, gap: Duration) -> Vec<Outage> {
        let mut rng = Rng::new(mix(seed ^ 0x6f75_7461_6765));
        let slot = length + gap;
        SERVICES
            .iter()
            .enumerate()
            .map(|(i, service)| {
                let jitter = Duration::from_millis(rng.below(gap.as_millis() as u64 / 2 + 1));
                Outage { service, start: first + slot * i as u32 + jitter, length }
            })
            .collect()
    }
}

/// What happens to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Pass,
    /// Refused as throttled; `variant` picks among the service's throttling codes.
    Throttle {
        variant: u8,
    },
    /// Refused with a 500 (`unavailable` false) or a 503.
    ServerError {
        unavailable: bool,
    },
    /// Refused: the service is in an outage window (503).
    Outage,
    /// Forwarded, applied, then answered 500.
    AppliedThen500,
}

impl Decision {
    pub fn kind(&self) -> &'static str {
        match self {
            Decision::Pass => "pass",
            Decision::Throttle { .. } => "throttle",
            Decision::ServerError { .. } => "5xx",
            Decision::Outage => "outage",
            Decision::AppliedThen500 => "applied-then-500",
        }
    }
}

/// One fault as injected, for the report: what it hit and the ids its request named.
#[derive(Debug, Clone)]
pub struct FaultEvent {
    pub at: Duration,
    pub service: String,
    pub operation: String,
    pub kind: &'static str,
    /// DynamoDB: the table(s) the request names, without the stack prefix.
    pub tables: Vec<String>,
    /// Herald message ids (32 hex digits) and `chaos-` keys and recipients in the body.
    pub ids: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub throttle: u64,
    pub server_error: u64,
    pub applied_then_500: BTreeMap<String, u64>,
    /// Requests refused during each service's outage.
    pub outage_refused: BTreeMap<String, u64>,
    /// Requests the proxy refused as SQS would (characters, sizes), not faults.
    pub sqs_refused: u64,
    pub forwarded: u64,
}

pub struct Faults {
    pub config: FaultConfig,
    enabled: AtomicBool,
    started: Instant,
    armed: Mutex<Option<Instant>>,
    seen: Mutex<HashMap<u64, u32>>,
    counts: Mutex<Counts>,
    journal: Mutex<Vec<FaultEvent>>,
}

impl Faults {
    pub fn new(config: FaultConfig) -> Self {
        Self {
            config,
            enabled: AtomicBool::new(true),
            started: Instant::now(),
            armed: Mutex::new(None),
            seen: Mutex::new(HashMap::new()),
            counts: Mutex::new(Counts::default()),
            journal: Mutex::new(Vec::new()),
        }
    }

    /// Faults on or off (a request passes untouched while off).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::SeqCst);
    }

    /// Starts the outage clock now.
    pub fn arm_outages(&self) {
        if let Ok(mut armed) = self.armed.lock() {
            *armed = Some(Instant::now());
        }
    }

    pub fn counts(&self) -> Counts {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn journal(&self) -> Vec<FaultEvent> {
        self.journal.lock().map(|j| j.clone()).unwrap_or_default()
    }

    /// The service in an outage at `now`, if `service` is.
    fn in_outage(&self, service: &str, now: Instant) -> bool {
        let Some(armed) = self.armed.lock().ok().and_then(|a| *a) else { return false };
        let t = now.saturating_duration_since(armed);
        self.config.outages.iter().any(|o| o.service == service && t >= o.start && t < o.start + o.length)
    }

    /// Decides what happens to a request (and counts it).
    pub fn decide(&self, service: &str, operation: &str, body: &[u8]) -> Decision {
        self.decide_at(service, operation, body, Instant::now())
    }

    pub fn decide_at(&self, service: &str, operation: &str, body: &[u8], now: Instant) -> Decision {
        if !self.enabled.load(Ordering::SeqCst) || !SERVICES.contains(&service) {
            return Decision::Pass;
        }
        if self.in_outage(service, now) {
            return Decision::Outage;
        }
        let content = content_key(service, operation, body);
        let nth = match self.seen.lock() {
            Ok(mut seen) => {
                let n = seen.entry(content).or_insert(0);
                *n += 1;
                *n
            }
            Err(_) => 1,
        };
        let mut rng = Rng::new(mix(self.config.seed ^ content ^ mix(u64::from(nth))));
        let (u, pick) = (rng.unit(), rng.next_u64());
        let c = &self.config;
        let applied = if is_applied_write(service, operation) { c.applied_then_500 } else { 0.0 };
        if u < applied {
            Decision::AppliedThen500
        } else if u < applied + c.throttle {
            Decision::Throttle { variant: (pick % 2) as u8 }
        } else if u < applied + c.throttle + c.server_error {
            Decision::ServerError { unavailable: pick % 3 == 0 }
        } else {
            Decision::Pass
        }
    }

    /// Counts a decision as carried out and keeps it in the journal.
    pub fn record(&self, service: &str, operation: &str, decision: Decision, body: &[u8], prefix: &str) {
        if let Ok(mut c) = self.counts.lock() {
            match decision {
                Decision::Pass => c.forwarded += 1,
                Decision::Throttle { .. } => c.throttle += 1,
                Decision::ServerError { .. } => c.server_error += 1,
                Decision::Outage => *c.outage_refused.entry(service.to_owned()).or_default() += 1,
                Decision::AppliedThen500 => *c.applied_then_500.entry(service.to_owned()).or_default() += 1,
            }
        }
        if decision == Decision::Pass {
            return;
        }
        let event = FaultEvent {
            at: self.started.elapsed(),
            service: service.to_owned(),
            operation: operation.to_owned(),
            kind: decision.kind(),
            tables: tables(body, prefix),
            ids: ids(body),
        };
        if let Ok(mut j) = self.journal.lock() {
            j.push(event);
        }
    }

    /// Counts a request refused as SQS itself would refuse it.
    pub fn record_sqs_refusal(&self, operation: &str, body: &[u8], prefix: &str) {
        if let Ok(mut c) = self.counts.lock() {
            c.sqs_refused += 1;
        }
        let event = FaultEvent {
            at: self.started.elapsed(),
            service: "sqs".into(),
            operation: operation.to_owned(),
            kind: "refused-as-sqs",
            tables: tables(body, prefix),
            ids: ids(body),
        };
        if let Ok(mut j) = self.journal.lock() {
            j.push(event);
        }
    }
}

/// What identifies a request across runs: the ids it names (message ids are derived
/// from the seeded idempotency keys, so they are the same in every run with the seed)
/// and its tables; a request that names none, by its whole body.
fn content_key(service: &str, operation: &str, body: &[u8]) -> u64 {
    let named = ids(body);
    if named.is_empty() {
        return fnv(&[service.as_bytes(), operation.as_bytes(), body]);
    }
    let tables = tables(body, "");
    let mut parts: Vec<&[u8]> = vec![service.as_bytes(), operation.as_bytes()];
    parts.extend(tables.iter().map(|t| t.as_bytes()));
    parts.extend(named.iter().map(|i| i.as_bytes()));
    fnv(&parts)
}

/// The DynamoDB tables a request body names (`TableName`, or the keys of `RequestItems`,
/// or each `TransactItems` entry's), or the SQS queue, without the stack prefix.
fn tables(body: &[u8], prefix: &str) -> Vec<String> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else { return Vec::new() };
    let mut out: Vec<String> = Vec::new();
    if let Some(t) = v.get("TableName").and_then(|t| t.as_str()) {
        out.push(t.to_owned());
    }
    // SQS: the queue, by name.
    if let Some(q) = v.get("QueueUrl").and_then(|q| q.as_str()).and_then(|q| q.rsplit('/').next()) {
        out.push(q.to_owned());
    }
    if let Some(items) = v.get("RequestItems").and_then(|r| r.as_object()) {
        out.extend(items.keys().cloned());
    }
    for item in v.get("TransactItems").and_then(|t| t.as_array()).into_iter().flatten() {
        for op in item.as_object().into_iter().flat_map(|o| o.values()) {
            if let Some(t) = op.get("TableName").and_then(|t| t.as_str()) {
                out.push(t.to_owned());
            }
        }
    }
    let mut out: Vec<String> = out.into_iter().map(|t| t.strip_prefix(prefix).unwrap_or(&t).to_owned()).collect();
    out.sort();
    out.dedup();
    out
}

/// Herald message ids (32 lowercase hex digits) and the harness's `chaos-` keys and
/// recipient ids found anywhere in a body (escaped JSON inside JSON included).
pub fn ids(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    let mut out: Vec<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .filter(|t| {
            (t.len() == 32 && t.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)))
                || t.starts_with("chaos-")
        })
        .map(str::to_owned)
        .collect();
    out.sort();
    out.dedup();
    out.truncate(40);
    out
}

/// An HTTP response as bytes, always `Connection: close`.
pub fn response(status: u16, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "",
    };
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n").into_bytes();
    for (k, v) in headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("content-length: {}\r\nconnection: close\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

/// The error a service answers, in its protocol.
pub struct ServiceError {
    pub status: u16,
    pub code: &'static str,
    pub message: &'static str,
    /// The query protocol's `Sender` (the caller's fault) or `Receiver`.
    pub sender: bool,
}

impl ServiceError {
    /// The error for a fault on `service`.
    pub fn for_fault(service: &str, decision: Decision) -> Self {
        let e = |status, code, message, sender| ServiceError { status, code, message, sender };
        match (service, decision) {
            ("dynamodb", Decision::Throttle { variant: 0 }) => e(
                400,
                "ProvisionedThroughputExceededException",
                "The level of configured provisioned throughput for the table was exceeded.",
                true,
            ),
            ("dynamodb", Decision::Throttle { .. }) => {
                e(400, "ThrottlingException", "Rate of requests exceeds the allowed throughput.", true)
            }
            ("sqs", Decision::Throttle { .. }) => e(400, "RequestThrottled", "Request is throttled.", true),
            ("sns", Decision::Throttle { variant: 0 }) => e(400, "Throttling", "Rate exceeded", true),
            // SNS's ThrottledException: 429, a code the SDK does not retry by itself.
            ("sns", Decision::Throttle { .. }) => e(429, "Throttled", "Rate exceeded", true),
            (_, Decision::Throttle { .. }) => e(429, "TooManyRequestsException", "Too Many Requests", true),
            (_, Decision::Outage | Decision::ServerError { unavailable: true }) => {
                e(503, "ServiceUnavailable", "Service is unavailable. Please try again later.", false)
            }
            ("dynamodb", _) => e(500, "InternalServerError", "Internal server error", false),
            ("sns", _) => e(500, "InternalError", "Internal error", false),
            _ => e(500, "InternalFailure", "The request processing has failed because of an unknown error.", false),
        }
    }

    /// The bytes of the response, in `service`'s protocol.
    pub fn render(&self, service: &str, request_id: &str) -> Vec<u8> {
        let rid = ("x-amzn-RequestId", request_id.to_owned());
        let json = |namespace: &str| {
            serde_json::json!({"__type": format!("{namespace}#{}", self.code), "message": self.message})
                .to_string()
                .into_bytes()
        };
        match service {
            "dynamodb" => {
                let namespace = if self.code == "ThrottlingException" {
                    "com.amazon.coral.availability"
                } else {
                    "com.amazonaws.dynamodb.v20120810"
                };
                response(self.status, &[rid, ("content-type", "application/x-amz-json-1.0".into())], &json(namespace))
            }
            "sqs" => {
                let query_error = format!("{};{}", self.code, if self.sender { "Sender" } else { "Receiver" });
                response(
                    self.status,
                    &[rid, ("x-amzn-query-error", query_error), ("content-type", "application/x-amz-json-1.0".into())],
                    &json("com.amazonaws.sqs"),
                )
            }
            "sns" => {
                let body = format!(
                    "<ErrorResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\"><Error><Type>{}</Type>\
                     <Code>{}</Code><Message>{}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
                    if self.sender { "Sender" } else { "Receiver" },
                    self.code,
                    self.message
                );
                response(self.status, &[rid, ("content-type", "text/xml".into())], body.as_bytes())
            }
            _ => {
                let body = serde_json::json!({"message": self.message}).to_string();
                response(
                    self.status,
                    &[rid, ("x-amzn-ErrorType", self.code.to_owned()), ("content-type", "application/json".into())],
                    body.as_bytes(),
                )
            }
        }
    }
}

/// SQS's own limits, which moto does not enforce: a body may hold only the characters
/// `#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF` (else the whole
/// request fails, `InvalidMessageContents`), a message at most 256 KiB, and a batch at
/// most 256 KiB in all (`BatchRequestTooLong`).
pub fn sqs_refusal(operation: &str, body: &[u8]) -> Option<ServiceError> {
    const MAX: usize = 262_144;
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let bodies: Vec<&str> = match operation {
        "SendMessage" => v.get("MessageBody").and_then(|b| b.as_str()).into_iter().collect(),
        "SendMessageBatch" => v
            .get("Entries")
            .and_then(|e| e.as_array())
            .into_iter()
            .flatten()
            .filter_map(|e| e.get("MessageBody").and_then(|b| b.as_str()))
            .collect(),
        _ => return None,
    };
    let allowed = |c: char| matches!(c as u32, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF);
    let e = |code, message| Some(ServiceError { status: 400, code, message, sender: true });
    if bodies.iter().any(|b| !b.chars().all(allowed)) {
        return e(
            "InvalidMessageContents",
            "Invalid binary character was found in the message body, the set of allowed characters is #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF",
        );
    }
    if operation == "SendMessageBatch" && bodies.iter().map(|b| b.len()).sum::<usize>() > MAX {
        return e("BatchRequestTooLong", "Batch requests cannot be longer than 262144 bytes.");
    }
    if bodies.iter().any(|b| b.len() > MAX) {
        return e(
            "InvalidParameterValue",
            "One or more parameters are invalid. Reason: Message must be shorter than 262144 bytes.",
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(throttle: f64, server_error: f64, applied: f64) -> FaultConfig {
        FaultConfig { seed: 7, throttle, server_error, applied_then_500: applied, outages: Vec::new() }
    }

    #[test]
    fn the_same_request_meets_the_same_fate_in_every_run() {
        let decide = |f: &Faults| -> Vec<Decision> {
            (0..200)
                .flat_map(|i| {
                    let body = format!("{{\"n\":{i}}}");
                    // Each body twice: the second is the SDK's retry of the first.
                    [f.decide("dynamodb", "PutItem", body.as_bytes()), f.decide("dynamodb", "PutItem", body.as_bytes())]
                })
                .collect()
        };
        let (a, b) = (Faults::new(config(0.1, 0.1, 0.1)), Faults::new(config(0.1, 0.1, 0.1)));
        let (da, db) = (decide(&a), decide(&b));
        assert_eq!(da, db);
        // A retry gets its own draw: not always the first attempt's fate.
        assert!(da.chunks(2).any(|p| p[0] != p[1]));
        let kinds = |k: &str| da.iter().filter(|d| d.kind() == k).count();
        assert!(kinds("applied-then-500") > 10 && kinds("throttle") > 10 && kinds("5xx") > 10, "{da:?}");
    }

    #[test]
    fn only_writes_are_applied_then_answered_500_and_other_services_pass() {
        let f = Faults::new(config(0.0, 0.0, 1.0));
        assert_eq!(f.decide("dynamodb", "UpdateItem", b"{}"), Decision::AppliedThen500);
        assert_eq!(f.decide("sqs", "SendMessageBatch", b"{}"), Decision::AppliedThen500);
        assert_eq!(f.decide("dynamodb", "GetItem", b"{}"), Decision::Pass);
        assert_eq!(f.decide("sqs", "ChangeMessageVisibility", b"{}"), Decision::Pass);
        let all = Faults::new(config(1.0, 0.0, 0.0));
        assert_eq!(all.decide("secretsmanager", "GetSecretValue", b"{}"), Decision::Pass);
        all.set_enabled(false);
        assert_eq!(all.decide("sns", "Publish", b"x"), Decision::Pass);
    }

    #[test]
    fn outages_refuse_only_their_service_inside_their_window() {
        let mut c = config(0.0, 0.0, 0.0);
        c.outages = vec![Outage { service: "sqs", start: Duration::from_secs(2), length: Duration::from_secs(3) }];
        let f = Faults::new(c);
        let t0 = Instant::now();
        assert_eq!(f.decide_at("sqs", "SendMessage", b"", t0 + Duration::from_secs(3)), Decision::Pass, "not armed");
        f.arm_outages();
        let at = |s: u64| Instant::now() + Duration::from_secs(s);
        assert_eq!(f.decide_at("sqs", "SendMessage", b"", at(1)), Decision::Pass);
        assert_eq!(f.decide_at("sqs", "SendMessage", b"", at(3)), Decision::Outage);
        assert_eq!(f.decide_at("dynamodb", "GetItem", b"", at(3)), Decision::Pass);
        assert_eq!(f.decide_at("sqs", "SendMessage", b"", at(6)), Decision::Pass);
    }

    #[test]
    fn staggered_outages_do_not_overlap() {
        let o =
            FaultConfig::staggered_outages(3, Duration::from_secs(2), Duration::from_secs(6), Duration::from_secs(4));
        assert_eq!(o.iter().map(|o| o.service).collect::<Vec<_>>(), SERVICES);
        assert!(o.windows(2).all(|w| w[0].start + w[0].length <= w[1].start));
    }

    #[test]
    fn ids_and_tables_are_read_from_bodies() {
        let body = br#"{"TableName":"herald-fault-LedgerTable","Key":{"pk":{"S":"0123456789abcdef0123456789abcdef"}},
            "x":"{\"recipient\":\"chaos-7-n3\"}"}"#;
        assert_eq!(ids(body), vec!["0123456789abcdef0123456789abcdef".to_owned(), "chaos-7-n3".to_owned()]);
        assert_eq!(tables(body, "herald-fault-"), vec!["LedgerTable".to_owned()]);
        let send = br#"{"QueueUrl":"http://127.0.0.1:1/123456789012/herald-fault-EligibilityQueue","Entries":[]}"#;
        assert_eq!(tables(send, "herald-fault-"), vec!["EligibilityQueue".to_owned()]);
    }

    #[test]
    fn sqs_refuses_what_it_cannot_carry() {
        let batch = |bodies: &[&str]| {
            let entries: Vec<_> = bodies
                .iter()
                .enumerate()
                .map(|(i, b)| serde_json::json!({"Id": i.to_string(), "MessageBody": b}))
                .collect();
            serde_json::json!({"QueueUrl": "q", "Entries": entries}).to_string()
        };
        assert!(sqs_refusal("SendMessageBatch", batch(&["ok", "fine \u{1F600}"]).as_bytes()).is_none());
        let bad = sqs_refusal("SendMessageBatch", batch(&["ok", "bad \u{FFFF}"]).as_bytes()).map(|e| e.code);
        assert_eq!(bad, Some("InvalidMessageContents"));
        let control = serde_json::json!({"QueueUrl": "q", "MessageBody": "a\u{0001}b"}).to_string();
        assert_eq!(sqs_refusal("SendMessage", control.as_bytes()).map(|e| e.code), Some("InvalidMessageContents"));
        let big = "x".repeat(140_000);
        let too_long = sqs_refusal("SendMessageBatch", batch(&[&big, &big]).as_bytes()).map(|e| e.code);
        assert_eq!(too_long, Some("BatchRequestTooLong"));
    }
}
