//! The in-app inbox against moto: notifications on the inbox channel land in the person's
//! inbox; the inbox API, served on its local Function URL, lists, counts and marks with
//! user tokens signed with the stack's key, never across people; read and clicked move the
//! ledger through the receipts function; erasure empties the inbox; a push with no device
//! falls back to the inbox; a redelivered job stores once, and a notification costs three
//! DynamoDB writes from ingest to `delivered`.

use crate::support::*;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use chrono::{TimeDelta, Utc};
use herald::aws::dynamodb::DynamoTemplates;
use herald::domain::inbox::{PublicId, UserClaims};
use herald::domain::ledger::Status;
use herald::domain::template::TemplateDoc;
use herald::domain::{MessageId, RecipientId};
use inbox::token::{InboxKey, mint};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TEMPLATE: &str = "inbox_note";

/// A template with a push and an inbox part (the repository's templates have none yet).
async fn push_template(t: &TestStack) {
    let doc: TemplateDoc = serde_json::from_value(json!({
        "name": TEMPLATE, "channels": ["push", "inbox"], "default_locale": "en", "variables": ["n"],
        "locales": {"en": {
            "push": {"title": "Note {{ n }}", "body": "Open the app"},
            "inbox": {"title": "Note {{ n }}", "body": "Your note number {{ n }} is ready.",
                      "action_url": "https://app.example.com/notes/{{ n }}", "data": {"kind": "note-{{ n }}"}}
        }}
    }))
    .unwrap();
    let store = DynamoTemplates::new(aws_sdk_dynamodb::Client::new(&t.sdk), t.table("TemplatesTable"), Duration::ZERO);
    store.put(&doc, Utc::now()).await.unwrap();
}

fn notify(key: &str, recipient: &str, n: u32, channels: &[&str]) -> String {
    json!({"idempotency_key": key, "recipient": recipient, "template": TEMPLATE, "kind": "transactional",
           "channels": channels, "data": {"n": n.to_string()}})
    .to_string()
}

async fn key(t: &TestStack) -> InboxKey {
    InboxKey::new(&t.stack.secret_value(&t.sdk, "InboxTokenKey").await.unwrap()).unwrap()
}

fn token(key: &InboxKey, who: &str, ttl: TimeDelta) -> String {
    mint(key, &UserClaims::for_recipient(&RecipientId::new(who).unwrap(), Utc::now(), ttl)).unwrap()
}

/// One request to the local Function URL: the status, the headers (lower-case) and the body as JSON.
async fn call(url: &str, method: &str, target: &str, token: Option<&str>) -> (u16, String, Value) {
    let authority = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let request = format!("{method} {target} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let status = raw.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or_default();
    (status, head.to_ascii_lowercase(), serde_json::from_str(body).unwrap_or(Value::Null))
}

fn titles(page: &Value) -> Vec<String> {
    page["messages"].as_array().unwrap().iter().map(|m| m["title"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_api_lists_counts_and_marks_each_persons_own_messages() {
    let t = TestStack::new().await;
    push_template(&t).await;
    let web = herald_cli::web::WebFront::start(&t.stack, &t.sdk).await.unwrap();
    let url = web.url("InboxFunction").expect("the inbox function is served").to_owned();
    let (ana, bo) = (format!("ana-{}", t.tag), format!("bo-{}", t.tag));
    t.publish(&[
        json!({"type": "upsert_recipient", "recipient": ana}).to_string(),
        json!({"type": "upsert_recipient", "recipient": bo}).to_string(),
    ])
    .await;
    t.wait_idle().await;
    let tag = &t.tag;
    t.publish(&[notify(&format!("{tag}-a1"), &ana, 1, &["inbox"])]).await;
    t.wait_idle().await;
    t.publish(&[notify(&format!("{tag}-a2"), &ana, 2, &["inbox"]), notify(&format!("{tag}-b1"), &bo, 7, &["inbox"])])
        .await;
    t.wait_idle().await;

    let entry = t.entry(&format!("{tag}-a1")).await.unwrap();
    assert_eq!((entry.status, entry.channel.as_deref()), (Status::Delivered, Some("inbox")));
    let key = key(&t).await;
    let (ana_token, bo_token) = (token(&key, &ana, TimeDelta::hours(1)), token(&key, &bo, TimeDelta::hours(1)));

    // Newest first, rendered from the inbox part.
    let (status, _, page) = call(&url, "GET", "/v1/messages", Some(&ana_token)).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(titles(&page), ["Note 2", "Note 1"]);
    let first = &page["messages"][1];
    assert_eq!(first["body"], "Your note number 1 is ready.");
    assert_eq!(first["action_url"], "https://app.example.com/notes/1");
    assert_eq!(first["data"], json!({"kind": "note-1"}));
    assert_eq!(first["id"].as_str(), entry.provider_id.as_deref(), "the ledger keeps the inbox id");
    assert!(page["next_cursor"].is_null());
    let ana_first = first["id"].as_str().unwrap().to_owned();
    // Pages of one, by cursor.
    let (_, _, one) = call(&url, "GET", "/v1/messages?limit=1", Some(&ana_token)).await;
    assert_eq!(titles(&one), ["Note 2"]);
    let cursor = one["next_cursor"].as_str().expect("a next page").to_owned();
    let (_, _, two) = call(&url, "GET", &format!("/v1/messages?limit=1&cursor={cursor}"), Some(&ana_token)).await;
    assert_eq!(titles(&two), ["Note 1"]);

    let (_, _, bo_page) = call(&url, "GET", "/v1/messages", Some(&bo_token)).await;
    assert_eq!(titles(&bo_page), ["Note 7"]);
    let bo_id = bo_page["messages"][0]["id"].as_str().unwrap().to_owned();
    let (_, _, count) = call(&url, "GET", "/v1/messages/count", Some(&ana_token)).await;
    assert_eq!(count, json!({"unseen": 2, "unread": 2}));

    // A token for ana never reads or marks bo's message, even by its real id.
    for (method, target) in [("GET", format!("/v1/messages/{bo_id}")), ("POST", format!("/v1/messages/{bo_id}/read"))] {
        let (status, _, body) = call(&url, method, &target, Some(&ana_token)).await;
        assert_eq!((status, body["error"].as_str()), (404, Some("not_found")), "{method} {target}");
    }
    let (_, _, bo_count) = call(&url, "GET", "/v1/messages/count", Some(&bo_token)).await;
    assert_eq!(bo_count, json!({"unseen": 1, "unread": 1}));

    // Read moves the ledger to opened (through receipts), clicked to clicked; both idempotent.
    let (status, _, read) = call(&url, "POST", &format!("/v1/messages/{ana_first}/read"), Some(&ana_token)).await;
    assert_eq!((status, read["changed"].as_bool()), (200, Some(true)), "{read}");
    let (_, _, again) = call(&url, "POST", &format!("/v1/messages/{ana_first}/read"), Some(&ana_token)).await;
    assert_eq!(again["changed"], false);
    t.wait_idle().await;
    assert_eq!(t.entry(&format!("{tag}-a1")).await.unwrap().status, Status::Opened);
    assert_eq!(t.entry(&format!("{tag}-a2")).await.unwrap().status, Status::Delivered);
    let (_, _, count) = call(&url, "GET", "/v1/messages/count", Some(&ana_token)).await;
    assert_eq!(count, json!({"unseen": 1, "unread": 1}), "a read message is seen too");
    call(&url, "POST", &format!("/v1/messages/{ana_first}/clicked"), Some(&ana_token)).await;
    t.wait_idle().await;
    assert_eq!(t.entry(&format!("{tag}-a1")).await.unwrap().status, Status::Clicked);

    // Mark all seen; archive one: hidden unless asked for.
    let (_, _, all) = call(&url, "POST", "/v1/messages/seen", Some(&ana_token)).await;
    assert_eq!(all, json!({"mark": "seen", "changed": 1, "more": false}));
    let (_, _, count) = call(&url, "GET", "/v1/messages/count", Some(&ana_token)).await;
    assert_eq!(count, json!({"unseen": 0, "unread": 1}));
    assert_eq!(t.entry(&format!("{tag}-a2")).await.unwrap().status, Status::Delivered, "seen moves no status");
    call(&url, "POST", &format!("/v1/messages/{ana_first}/archived"), Some(&ana_token)).await;
    let (_, _, page) = call(&url, "GET", "/v1/messages", Some(&ana_token)).await;
    assert_eq!(titles(&page), ["Note 2"]);
    let (_, _, archived) = call(&url, "GET", "/v1/messages?status=archived", Some(&ana_token)).await;
    assert_eq!(titles(&archived), ["Note 1"]);

    // Bad input and bad tokens: refused with a reason, nothing changed.
    let forged = token(&InboxKey::new("somebody else's key, long enough to sign").unwrap(), &bo, TimeDelta::hours(1));
    let expired = token(&key, &bo, TimeDelta::seconds(-120));
    let unknown = PublicId::new(Utc::now(), MessageId::parse(&"ab".repeat(16)).unwrap()).to_string();
    let cases = [
        ("GET", "/v1/messages".to_owned(), Some(forged.as_str()), 401, "invalid_token"),
        ("POST", "/v1/messages/read".to_owned(), Some(forged.as_str()), 401, "invalid_token"),
        ("GET", "/v1/messages".to_owned(), Some(expired.as_str()), 401, "invalid_token"),
        ("GET", "/v1/messages/count".to_owned(), None, 401, "missing_token"),
        ("GET", "/v1/messages?limit=100000".to_owned(), Some(ana_token.as_str()), 400, "bad_request"),
        ("GET", "/v1/messages?status=deleted".to_owned(), Some(ana_token.as_str()), 400, "bad_request"),
        ("POST", format!("/v1/messages/{unknown}/read"), Some(ana_token.as_str()), 404, "not_found"),
        ("DELETE", format!("/v1/messages/{ana_first}"), Some(ana_token.as_str()), 405, "method_not_allowed"),
    ];
    for (method, target, token, status, error) in cases {
        let (got, head, body) = call(&url, method, &target, token).await;
        assert_eq!((got, body["error"].as_str()), (status, Some(error)), "{method} {target}: {body}");
        assert!(body["reason"].is_string(), "{body}");
        if status == 401 {
            assert!(head.contains("www-authenticate: bearer"), "{head}");
        }
    }
    let (_, _, bo_count) = call(&url, "GET", "/v1/messages/count", Some(&bo_token)).await;
    assert_eq!(bo_count, json!({"unseen": 1, "unread": 1}), "nothing changed for bo");
    assert_eq!(t.entry(&format!("{tag}-b1")).await.unwrap().status, Status::Delivered);

    // What `herald inbox list` prints, through the same URL.
    let listing = herald_cli::inbox::list(&url, &bo_token, "all", 20).await.unwrap();
    assert!(listing.starts_with("unseen 1 unread 1\n") && listing.contains("Note 7 | Your note number 7"), "{listing}");
    let minted = herald_cli::inbox::token(
        &t.sdk,
        t.stack.secret("InboxTokenKey").unwrap(),
        &bo,
        TimeDelta::hours(1),
        Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(call(&url, "GET", "/v1/messages/count", Some(&minted)).await.0, 200);

    // Erasure removes the person's messages, and only theirs.
    t.publish(&[json!({"type": "erase_recipient", "recipient": ana}).to_string()]).await;
    t.wait_idle().await;
    let (_, _, gone) = call(&url, "GET", "/v1/messages?status=archived", Some(&ana_token)).await;
    let (_, _, gone_too) = call(&url, "GET", "/v1/messages", Some(&ana_token)).await;
    assert_eq!((titles(&gone).len(), titles(&gone_too).len()), (0, 0));
    let (_, _, bo_page) = call(&url, "GET", "/v1/messages", Some(&bo_token)).await;
    assert_eq!(titles(&bo_page), ["Note 7"]);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_to_a_person_without_a_device_falls_back_to_the_inbox() {
    let t = TestStack::new().await;
    push_template(&t).await;
    let web = herald_cli::web::WebFront::start(&t.stack, &t.sdk).await.unwrap();
    let url = web.url("InboxFunction").unwrap().to_owned();
    let cy = format!("cy-{}", t.tag);
    t.publish(&[json!({"type": "upsert_recipient", "recipient": cy}).to_string()]).await;
    t.wait_idle().await;
    let key_name = format!("{}-fallback", t.tag);
    t.publish(&[notify(&key_name, &cy, 3, &["push", "inbox"])]).await;
    t.wait_idle().await;
    let entry = t.entry(&key_name).await.unwrap();
    assert_eq!((entry.status, entry.channel.as_deref()), (Status::Delivered, Some("inbox")), "{entry:?}");
    let (_, _, page) = call(&url, "GET", "/v1/messages", Some(&token(&key(&t).await, &cy, TimeDelta::hours(1)))).await;
    assert_eq!(titles(&page), ["Note 3"]);
    t.stop().await;
}

// ---------------------------------------------------------------- counting DynamoDB writes

/// The DynamoDB writes the handlers sent, by operation and table (a wrapper of the SDK's
/// HTTP client: what goes on the wire, as AWS bills it).
#[derive(Debug, Clone, Default)]
struct Writes(Arc<Mutex<Vec<(String, String)>>>);

impl Writes {
    fn take(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[derive(Debug)]
struct Counting {
    inner: SharedHttpClient,
    writes: Writes,
}

impl HttpClient for Counting {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(CountingConnector {
            inner: self.inner.http_connector(settings, components),
            writes: self.writes.clone(),
        })
    }
}

#[derive(Debug)]
struct CountingConnector {
    inner: SharedHttpConnector,
    writes: Writes,
}

impl HttpConnector for CountingConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let op = request.headers().get("x-amz-target").unwrap_or_default().rsplit('.').next().unwrap_or_default();
        if ["PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"].contains(&op) {
            let body: Value = request.body().bytes().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or_default();
            let table = body["TableName"].as_str().unwrap_or("batch").to_owned();
            self.writes.0.lock().unwrap().push((op.to_owned(), table));
        }
        self.inner.call(request)
    }
}

fn counting_sdk(t: &TestStack) -> (aws_config::SdkConfig, Writes) {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let writes = Writes::default();
    let inner = aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
    let client = SharedHttpClient::new(Counting { inner, writes: writes.clone() });
    (t.sdk.to_builder().http_client(client).build(), writes)
}

/// An item's size as DynamoDB bills it, near enough: names and values in bytes.
fn item_size(item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>) -> usize {
    fn value(v: &aws_sdk_dynamodb::types::AttributeValue) -> usize {
        use aws_sdk_dynamodb::types::AttributeValue as A;
        match v {
            A::S(s) => s.len(),
            A::N(n) => n.len() / 2 + 2,
            A::M(m) => 3 + m.iter().map(|(k, v)| k.len() + value(v) + 1).sum::<usize>(),
            A::L(l) => 3 + l.iter().map(|v| value(v) + 1).sum::<usize>(),
            _ => 1,
        }
    }
    item.iter().map(|(k, v)| k.len() + value(v)).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_costs_three_writes_and_a_redelivered_job_stores_once() {
    let t = TestStack::without_functions().await;
    push_template(&t).await;
    let dee = format!("dee-{}", t.tag);
    let upsert = json!({"type": "upsert_recipient", "recipient": dee}).to_string();
    let ingest_plain = ingest::aws::deps(&t.sdk, &ingest::Config::from_lookup(&t.lookup("ingest")).unwrap());
    ingest::handler(&ingest_plain, sqs_event(&[upsert])).await.unwrap();

    let (sdk, writes) = counting_sdk(&t);
    let ingest = ingest::aws::deps(&sdk, &ingest::Config::from_lookup(&t.lookup("ingest")).unwrap());
    let eligibility =
        eligibility::aws::deps(&sdk, &eligibility::Config::from_lookup(&t.lookup("eligibility")).unwrap());
    let dispatch =
        dispatch_inbox::aws::deps(&sdk, &dispatch_inbox::Config::from_lookup(&t.lookup("dispatch-inbox")).unwrap());
    let key_name = format!("{}-costs", t.tag);
    ingest::handler(&ingest, sqs_event(&[notify(&key_name, &dee, 5, &["inbox"])])).await.unwrap();
    let job = receive(&t, "EligibilityQueue").await.unwrap();
    eligibility::handler(&eligibility, received_event(&job)).await.unwrap();
    let job = receive(&t, "InboxQueue").await.expect("a job on the inbox queue");
    let response = dispatch_inbox::handler(&dispatch.0, &dispatch.1, received_event(&job)).await.unwrap();
    assert!(response.batch_item_failures.is_empty());

    let ledger = t.table("LedgerTable");
    let inbox = t.table("InboxTable");
    let delivered = writes.take();
    let by_table = |table: &str| delivered.iter().filter(|(_, t)| t == table).count();
    assert_eq!(
        (delivered.len(), by_table(&ledger), by_table(&inbox)),
        (3, 2, 1),
        "ingest to delivered: the admission, the delivery in the ledger, the message in the inbox: {delivered:?}"
    );
    let entry = t.entry(&key_name).await.unwrap();
    assert_eq!((entry.status, entry.channel.as_deref()), (Status::Delivered, Some("inbox")));
    // Each item under 1 KB: one write unit each, three in all.
    let dynamodb = aws_sdk_dynamodb::Client::new(&t.sdk);
    let id = MessageId::for_key(&herald::domain::IdempotencyKey::new(key_name.as_str()).unwrap());
    let ledger_item = dynamodb
        .get_item()
        .table_name(&ledger)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(id.to_string()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let stored = dynamodb
        .query()
        .table_name(&inbox)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", aws_sdk_dynamodb::types::AttributeValue::S(dee.clone()))
        .send()
        .await
        .unwrap()
        .items
        .unwrap();
    assert_eq!(stored.len(), 1);
    let sizes = (item_size(&ledger_item), item_size(&stored[0]));
    assert!(sizes.0 < 1024 && sizes.1 < 1024, "items of {sizes:?} bytes");
    println!("inbox delivery: {} DynamoDB writes, items of {sizes:?} bytes: 3 WCU", delivered.len());
    // Retention: 90 days by default.
    let expires: i64 = stored[0]["expires_at"].as_n().unwrap().parse().unwrap();
    let days = (expires - Utc::now().timestamp()) as f64 / 86_400.0;
    assert!((89.9..=90.0).contains(&days), "{days}");

    // The same job again (SQS delivers at least once): nothing more is stored.
    let again = dispatch_inbox::handler(&dispatch.0, &dispatch.1, received_event(&job)).await.unwrap();
    assert!(again.batch_item_failures.is_empty());
    let count = dynamodb
        .query()
        .table_name(&inbox)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", aws_sdk_dynamodb::types::AttributeValue::S(dee.clone()))
        .send()
        .await
        .unwrap()
        .count;
    assert_eq!(count, 1, "stored once");
    let entry = t.entry(&key_name).await.unwrap();
    assert_eq!(entry.history.iter().filter(|h| h.status == "delivered").count(), 1, "{:?}", entry.history);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbox_message_never_outlives_its_notification() {
    let t = TestStack::without_functions().await;
    push_template(&t).await;
    let eve = format!("eve-{}", t.tag);
    let ingest = ingest::aws::deps(&t.sdk, &ingest::Config::from_lookup(&t.lookup("ingest")).unwrap());
    ingest::handler(&ingest, sqs_event(&[json!({"type": "upsert_recipient", "recipient": eve}).to_string()]))
        .await
        .unwrap();
    let expires_at = (Utc::now() + TimeDelta::hours(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut body: Value = serde_json::from_str(&notify(&format!("{}-exp", t.tag), &eve, 8, &["inbox"])).unwrap();
    body["expires_at"] = json!(expires_at);
    ingest::handler(&ingest, sqs_event(&[body.to_string()])).await.unwrap();
    let eligibility =
        eligibility::aws::deps(&t.sdk, &eligibility::Config::from_lookup(&t.lookup("eligibility")).unwrap());
    eligibility::handler(&eligibility, received_event(&receive(&t, "EligibilityQueue").await.unwrap())).await.unwrap();
    let env = t.env("dispatch-inbox", &[("HERALD_INBOX_RETENTION_DAYS", "1")]);
    let get = move |name: &str| env.get(name).cloned();
    let dispatch = dispatch_inbox::aws::deps(&t.sdk, &dispatch_inbox::Config::from_lookup(&get).unwrap());
    dispatch_inbox::handler(&dispatch.0, &dispatch.1, received_event(&receive(&t, "InboxQueue").await.unwrap()))
        .await
        .unwrap();
    let store = herald::aws::dynamodb::DynamoInbox::new(aws_sdk_dynamodb::Client::new(&t.sdk), t.table("InboxTable"));
    use herald::ports::InboxStore;
    let who = RecipientId::new(eve.as_str()).unwrap();
    let query = herald::domain::inbox::ListQuery { limit: 10, cursor: None, filter: Default::default() };
    let page = store.list(&who, &query, Utc::now()).await.unwrap();
    assert_eq!(page.messages.len(), 1);
    let m = &page.messages[0];
    assert_eq!(
        m.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        expires_at,
        "the notification's own expiry"
    );
    // Past it, the message is hidden (TTL deletes it later).
    let later = Utc::now() + TimeDelta::hours(3);
    assert!(store.list(&who, &query, later).await.unwrap().messages.is_empty());
    assert_eq!(store.get(&who, &m.id, later).await.unwrap(), None);
}
