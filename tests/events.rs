//! The event stream on moto: ledger transitions and consent changes reach the stack's
//! EventBridge bus through the tables' DynamoDB streams and the events function, with
//! the shape `schema/events-v1.json` documents; an entry the bus refuses for now is sent
//! again and arrives once.

use crate::support::*;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use herald_cli::runner::{FunctionSdks, Options, Runner};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn validator() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema/events-v1.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::draft202012::meta::validate(&schema).expect("a valid draft 2020-12 schema");
    jsonschema::draft202012::options().should_validate_formats(true).build(&schema).unwrap()
}

/// A queue that a rule on the stack's bus fills with every Herald event.
async fn sink(t: &TestStack) -> String {
    let sqs = aws_sdk_sqs::Client::new(&t.sdk);
    let url = sqs.create_queue().queue_name(format!("{}-sink", t.tag)).send().await.unwrap().queue_url.unwrap();
    let arn = format!("arn:aws:sqs:us-east-1:{}:{}-sink", herald_cli::stack::ACCOUNT_ID, t.tag);
    let events = aws_sdk_eventbridge::Client::new(&t.sdk);
    let (bus, _) = t.stack.buses.get("EventBus").expect("the template's bus").clone();
    let pattern = json!({"source": [format!("herald.{}", t.tag)]}).to_string();
    events.put_rule().name("all").event_bus_name(&bus).event_pattern(pattern).send().await.unwrap();
    let target = aws_sdk_eventbridge::types::Target::builder().id("sink").arn(arn).build().unwrap();
    events.put_targets().rule("all").event_bus_name(&bus).targets(target).send().await.unwrap();
    url
}

/// Events from the sink until `done` holds of all received, or `within` passes.
async fn collect(t: &TestStack, url: &str, within: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let sqs = aws_sdk_sqs::Client::new(&t.sdk);
    let mut events = Vec::new();
    let started = Instant::now();
    while !done(&events) && started.elapsed() < within {
        let out =
            sqs.receive_message().queue_url(url).max_number_of_messages(10).wait_time_seconds(1).send().await.unwrap();
        for m in out.messages.unwrap_or_default() {
            events.push(serde_json::from_str(m.body.as_deref().unwrap_or("null")).unwrap());
            sqs.delete_message().queue_url(url).receipt_handle(m.receipt_handle.unwrap()).send().await.unwrap();
        }
    }
    events
}

fn has(events: &[Value], detail_type: &str, field: &str, value: &str) -> bool {
    events.iter().any(|e| e["detail-type"] == detail_type && e["detail"][field] == value)
}

fn shipped(key: &str, recipient: &str) -> String {
    json!({"idempotency_key": key, "recipient": recipient, "template": "order_shipped", "kind": "transactional",
           "data": {"order_id": "1", "eta": "Tuesday"}})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transitions_and_consents_reach_the_bus_in_the_documented_shape() {
    let t = TestStack::new().await;
    let url = sink(&t).await;
    let tag = &t.tag;
    let (ana, address) = (format!("ana-{tag}"), format!("ana.{tag}@example.org"));
    let key = format!("{tag}-shipped");
    t.publish(&[
        json!({"type": "upsert_recipient", "recipient": ana, "email": address}).to_string(),
        json!({"type": "set_consent", "recipient": ana, "channel": "email", "topic": "news", "granted": true,
               "source": "signup-form", "at": "2026-11-30T10:00:00Z"})
        .to_string(),
    ])
    .await;
    t.wait_idle().await;
    t.publish(&[shipped(&key, &ana), "{oops".to_owned()]).await;
    t.wait_idle().await;
    let message_id = herald::domain::MessageId::for_key(&herald::domain::IdempotencyKey::new(&key).unwrap());
    let id = message_id.as_str();
    let events = collect(&t, &url, Duration::from_secs(60), |e| {
        has(e, "Message Accepted", "message_id", id)
            && has(e, "Message Sent", "message_id", id)
            && has(e, "Consent Granted", "recipient_id", &ana)
            && e.iter().any(|e| e["detail-type"] == "Message Rejected")
    })
    .await;
    let types: Vec<&str> = events.iter().filter_map(|e| e["detail-type"].as_str()).collect();
    assert!(has(&events, "Message Sent", "message_id", id), "events: {types:?}");
    assert!(has(&events, "Consent Granted", "recipient_id", &ana), "events: {types:?}");

    let schema = validator();
    for event in &events {
        let errors: Vec<String> =
            schema.iter_errors(event).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{event}: {errors:?}");
        assert_eq!(event["source"], format!("herald.{tag}"));
        let text = event.to_string();
        assert!(!text.contains(&address) && !text.contains('@'), "no address on the bus: {text}");
    }
    let sent = events.iter().find(|e| e["detail-type"] == "Message Sent").unwrap();
    let d = &sent["detail"];
    assert_eq!(
        (d["recipient_id"].as_str(), d["template"].as_str(), d["channel"].as_str(), d["kind"].as_str()),
        (Some(ana.as_str()), Some("order_shipped"), Some("email"), Some("transactional"))
    );
    assert_eq!(d["event_id"], format!("{id}#1"), "the second entry of the message's history");
    let consent = events.iter().find(|e| e["detail-type"] == "Consent Granted").unwrap();
    assert_eq!(
        (consent["detail"]["topic"].as_str(), consent["detail"]["source"].as_str()),
        (Some("news"), Some("signup-form"))
    );
    let rejected = events.iter().find(|e| e["detail-type"] == "Message Rejected").unwrap();
    assert_eq!(rejected["detail"]["reason"], "malformed_json", "{rejected}");
    t.stop().await;
}

/// Under the SDK: the first `times` `PutEvents` calls lose their first entry, which the
/// answer reports as `InternalFailure` (EventBridge's "try again"), as it does under load.
#[derive(Debug, Clone)]
struct RefuseFirstEntry {
    inner: SharedHttpClient,
    state: Arc<Mutex<Refusals>>,
}

#[derive(Debug, Default)]
struct Refusals {
    times: usize,
    refused: Vec<String>,
}

impl HttpClient for RefuseFirstEntry {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(RefuseConnector {
            inner: self.inner.http_connector(settings, components),
            state: self.state.clone(),
        })
    }
}

#[derive(Debug)]
struct RefuseConnector {
    inner: SharedHttpConnector,
    state: Arc<Mutex<Refusals>>,
}

fn json_response(body: &Value) -> HttpResponse {
    let mut response = HttpResponse::new(200.try_into().unwrap(), SdkBody::from(body.to_string()));
    response.headers_mut().insert("content-type", "application/x-amz-json-1.1");
    response
}

impl HttpConnector for RefuseConnector {
    fn call(&self, mut request: HttpRequest) -> HttpConnectorFuture {
        let put_events = request.headers().get("x-amz-target").is_some_and(|t| t.ends_with(".PutEvents"));
        let mut body: Value = request.body().bytes().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or_default();
        let refuse = put_events && {
            let mut state = self.state.lock().unwrap();
            let go = state.times > 0 && body["Entries"].as_array().is_some_and(|e| !e.is_empty());
            if go {
                state.times -= 1;
                let entry = body["Entries"].as_array_mut().unwrap().remove(0);
                let detail: Value = serde_json::from_str(entry["Detail"].as_str().unwrap_or("{}")).unwrap_or_default();
                state.refused.push(detail["event_id"].as_str().unwrap_or_default().to_owned());
            }
            go
        };
        if !refuse {
            return self.inner.call(request);
        }
        let failure = json!({"ErrorCode": "InternalFailure", "ErrorMessage": "injected"});
        if body["Entries"].as_array().is_some_and(Vec::is_empty) {
            return HttpConnectorFuture::ready(Ok(json_response(
                &json!({"FailedEntryCount": 1, "Entries": [failure]}),
            )));
        }
        let text = body.to_string();
        request.headers_mut().insert("content-length", text.len().to_string());
        *request.body_mut() = SdkBody::from(text);
        let future = self.inner.call(request);
        HttpConnectorFuture::new(async move {
            let response = future.await?;
            let bytes =
                ByteStream::new(response.into_body()).collect().await.map(|b| b.into_bytes()).unwrap_or_default();
            let mut answer: Value = serde_json::from_slice(&bytes).unwrap_or_default();
            if let Some(entries) = answer["Entries"].as_array_mut() {
                entries.insert(0, failure);
            }
            answer["FailedEntryCount"] = json!(answer["FailedEntryCount"].as_u64().unwrap_or(0) + 1);
            Ok(json_response(&answer))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_the_bus_refuses_for_now_is_sent_again_and_arrives_once() {
    let mut t = TestStack::without_functions().await;
    let url = sink(&t).await;
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let inner = aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
    let state = Arc::new(Mutex::new(Refusals { times: 2, refused: Vec::new() }));
    let client = SharedHttpClient::new(RefuseFirstEntry { inner, state: state.clone() });
    let handler = t.sdk.to_builder().http_client(client).build();
    let sdks = BTreeMap::from([("events".to_owned(), FunctionSdks { handler, event_source: t.sdk.clone() })]);
    t.runner = Some(
        Runner::start_with(&t.stack, &t.sdk, Options { sdks, schedules: Some(None), ..Options::default() }).unwrap(),
    );

    let tag = &t.tag;
    let bob = format!("bob-{tag}");
    let key = format!("{tag}-shipped");
    t.publish(&[
        json!({"type": "upsert_recipient", "recipient": bob, "email": format!("bob.{tag}@example.org")}).to_string()
    ])
    .await;
    t.wait_idle().await;
    t.publish(&[shipped(&key, &bob)]).await;
    t.wait_idle().await;
    let id = herald::domain::MessageId::for_key(&herald::domain::IdempotencyKey::new(&key).unwrap()).to_string();
    let mut events = collect(&t, &url, Duration::from_secs(60), |e| has(e, "Message Sent", "message_id", &id)).await;
    // A late copy, if there were one, would show itself within a few seconds.
    events.extend(collect(&t, &url, Duration::from_secs(3), |_| false).await);

    let refused = state.lock().unwrap().refused.clone();
    assert_eq!(refused.len(), 2, "two calls lost an entry: {refused:?}");
    let mut copies: HashMap<String, usize> = HashMap::new();
    for e in &events {
        *copies.entry(e["detail"]["event_id"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
    }
    for id in &refused {
        assert_eq!(copies.get(id), Some(&1), "{id} was refused, sent again, and arrived once: {copies:?}");
    }
    assert!(copies.values().all(|n| *n == 1), "no event twice: {copies:?}");
    assert!(copies.contains_key(&format!("{id}#0")) && copies.contains_key(&format!("{id}#1")), "{copies:?}");
    t.stop().await;
}
