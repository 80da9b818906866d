//! Shared test support: one moto server for the whole test binary, and a fresh,
//! uniquely named Herald stack per test on it (so tests run in parallel).

use aws_config::SdkConfig;
use herald::aws::dynamodb::DynamoLedger;
use herald::domain::{IdempotencyKey, MessageId};
use herald::lambda::{Context, LambdaEvent, SqsEvent};
use herald::ports::{Ledger, LedgerEntry};
use herald_cli::local::{provision, repo_root, sdk_for};
use herald_cli::runner::Runner;
use herald_cli::stack::{ACCOUNT_ID, Stack};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

struct Server {
    endpoint: String,
    // Holding the child keeps its stdin open; the server exits when this process does.
    _child: Child,
}

static SERVER: OnceLock<Server> = OnceLock::new();
static NEXT: AtomicU32 = AtomicU32::new(0);

/// The moto endpoint, started on first use (a free loopback port).
pub fn endpoint() -> &'static str {
    &SERVER
        .get_or_init(|| {
            let root = repo_root();
            let mut child = Command::new(herald_cli::moto::python(&root))
                .arg(root.join("scripts/moto_server.py"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start moto (run through `make test`, which installs it)");
            let mut line = String::new();
            BufReader::new(child.stdout.take().expect("moto stdout")).read_line(&mut line).expect("moto endpoint");
            assert!(line.starts_with("http://127.0.0.1:"), "moto did not start: {line:?}");
            Server { endpoint: line.trim().to_owned(), _child: child }
        })
        .endpoint
}

/// A Herald stack of its own on the shared endpoint, optionally with its functions running.
pub struct TestStack {
    pub sdk: SdkConfig,
    pub stack: Stack,
    pub runner: Option<Runner>,
    /// Unique per test: used in addresses, tokens and keys so moto's shared sinks can be filtered.
    pub tag: String,
}

impl TestStack {
    pub async fn new() -> Self {
        Self::build(true, &[]).await
    }

    /// Resources only; the test calls handlers itself.
    pub async fn without_functions() -> Self {
        Self::build(false, &[]).await
    }

    /// With its functions running on an environment changed as a stack deployed with other
    /// parameters would have it: `(function, variable, value)`.
    pub async fn with_env(changes: &[(&str, &str, &str)]) -> Self {
        Self::build(true, changes).await
    }

    async fn build(run: bool, changes: &[(&str, &str, &str)]) -> Self {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let tag = format!("t{}x{n}", std::process::id());
        let sdk = sdk_for(endpoint()).await;
        let mut stack = provision(&sdk, &repo_root(), &format!("{tag}-")).await.expect("provision the stack");
        for (function, name, value) in changes {
            let spec = stack.functions.iter_mut().find(|f| f.name == *function);
            let spec = spec.unwrap_or_else(|| panic!("no function {function}"));
            spec.env.insert((*name).to_owned(), (*value).to_owned());
        }
        let runner = run.then(|| Runner::start(&stack, &sdk).expect("start the functions"));
        Self { sdk, stack, runner, tag }
    }

    pub fn table(&self, logical: &str) -> String {
        self.stack.tables.get(logical).cloned().unwrap_or_else(|| panic!("no table {logical}"))
    }

    pub fn queue_url(&self, logical: &str) -> String {
        self.stack.queue(logical).unwrap().url.clone()
    }

    /// Every body waiting on a queue now (long polls of a second until it is empty), each
    /// deleted once read.
    pub async fn drain(&self, logical: &str) -> Vec<String> {
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let url = self.queue_url(logical);
        let mut bodies = Vec::new();
        loop {
            let out = sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                return bodies;
            }
            for m in messages {
                sqs.delete_message().queue_url(&url).receipt_handle(m.receipt_handle.unwrap()).send().await.unwrap();
                bodies.extend(m.body);
            }
        }
    }

    /// A function's environment as the template resolves it, with `changes`.
    pub fn env(&self, function: &str, changes: &[(&str, &str)]) -> BTreeMap<String, String> {
        let spec = self.stack.functions.iter().find(|f| f.name == function);
        let mut env = spec.unwrap_or_else(|| panic!("no function {function}")).env.clone();
        env.extend(changes.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        env
    }

    /// A function's environment as the template resolves it, as a configuration lookup.
    pub fn lookup(&self, function: &str) -> impl Fn(&str) -> Option<String> + use<> {
        let env = self.env(function, &[]);
        move |name: &str| env.get(name).cloned()
    }

    /// The ARN of a secret that does not exist: reading it fails as an unreadable secret does.
    pub fn missing_secret(&self) -> String {
        format!("arn:aws:secretsmanager:us-east-1:{ACCOUNT_ID}:secret:{}-missing-AbCdEf", self.tag)
    }

    pub fn ledger(&self) -> DynamoLedger {
        DynamoLedger::new(aws_sdk_dynamodb::Client::new(&self.sdk), self.table("LedgerTable"))
    }

    /// Publishes bodies to the ingest queue as a producer would; returns the SQS message ids.
    pub async fn publish(&self, bodies: &[String]) -> Vec<String> {
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let mut ids = Vec::new();
        for body in bodies {
            let out =
                sqs.send_message().queue_url(self.queue_url("IngestQueue")).message_body(body).send().await.unwrap();
            ids.push(out.message_id.unwrap());
        }
        ids
    }

    pub async fn wait_idle(&self) {
        self.stack.wait_idle(&self.sdk, Duration::from_secs(90)).await.expect("pipeline went idle");
    }

    pub async fn entry(&self, key: &str) -> Option<LedgerEntry> {
        let id = MessageId::for_key(&IdempotencyKey::new(key).unwrap());
        self.ledger().get(&id).await.unwrap()
    }

    pub async fn stop(self) {
        if let Some(r) = self.runner {
            r.stop().await;
        }
    }
}

/// What moto's fake providers received.
pub async fn provider_data() -> Value {
    herald_cli::moto::data(endpoint()).await.unwrap()
}

/// The event Lambda hands a function for these SQS messages: one record per body
/// (ids `m0`, `m1`...).
pub fn sqs_event(bodies: &[impl AsRef<str>]) -> LambdaEvent<SqsEvent> {
    let records: Vec<Value> =
        bodies.iter().enumerate().map(|(i, b)| json!({"messageId": format!("m{i}"), "body": b.as_ref()})).collect();
    LambdaEvent::new(serde_json::from_value(json!({ "Records": records })).unwrap(), Context::default())
}

/// The event Lambda hands a function for one [`receive`]d message (with its receipt
/// handle and receive count).
pub fn received_event(record: &Value) -> LambdaEvent<SqsEvent> {
    LambdaEvent::new(serde_json::from_value(json!({ "Records": [record] })).unwrap(), Context::default())
}

/// Receives one message as Lambda's poller would hand it over (with its receive count).
pub async fn receive(t: &TestStack, logical: &str) -> Option<Value> {
    let sqs = aws_sdk_sqs::Client::new(&t.sdk);
    let out = sqs
        .receive_message()
        .queue_url(t.queue_url(logical))
        .wait_time_seconds(10)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap();
    let m = out.messages.unwrap_or_default().into_iter().next()?;
    let attributes: serde_json::Map<String, Value> =
        m.attributes.unwrap_or_default().into_iter().map(|(k, v)| (k.as_str().to_owned(), Value::String(v))).collect();
    Some(
        json!({"messageId": m.message_id, "receiptHandle": m.receipt_handle, "body": m.body, "attributes": attributes}),
    )
}

/// Emails moto's SES received for `address`.
pub fn emails_to<'a>(data: &'a Value, address: &str) -> Vec<&'a Value> {
    data["ses"]["Message"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["destinations"]["ToAddresses"].as_array().is_some_and(|a| a.iter().any(|x| x == address)))
        .collect()
}

/// SMS moto's SNS received for `number`.
pub fn sms_to<'a>(data: &'a Value, number: &str) -> Vec<&'a Value> {
    data["sns"]["SMS"].as_array().into_iter().flatten().filter(|m| m["phone_number"] == number).collect()
}

/// Push messages moto's SNS delivered to the endpoint registered for `token`.
pub fn pushes_to(data: &Value, token: &str) -> Vec<Value> {
    data["sns"]["PlatformEndpoint"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|ep| ep["token"] == token)
        .flat_map(|ep| ep["messages"].as_object().cloned().unwrap_or_default().into_values())
        .collect()
}

/// The ARN of the platform endpoint moto made for `token`.
pub fn endpoint_for(data: &Value, token: &str) -> Option<String> {
    data["sns"]["PlatformEndpoint"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|ep| ep["token"] == token)
        .and_then(|ep| ep["arn"].as_str().map(str::to_owned))
}

/// A phone number unique to a test run (the 555-01xx range is reserved for fiction).
pub fn phone(tag: &str, n: u32) -> String {
    // FNV-1a of the tag, so parallel tests get different numbers.
    let seed = tag.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    format!("+1555{:07}", (seed.wrapping_add(n)) % 10_000_000)
}
