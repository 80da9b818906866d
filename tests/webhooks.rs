//! The webhook function against moto, with real signatures: an RSA key and a
//! self-signed certificate made here sign SNS messages (SignatureVersion 1 and 2)
//! the way SNS does; providers' reports carry real HMACs; unsubscribe links are
//! signed with the stack's key. Forged, altered, stale and replayed requests are
//! refused with their status and change nothing. The function reads the unsubscribe
//! key and the providers' secrets from the stack's Secrets Manager secrets, as deployed.

use crate::receipts::{fixture, receipts_deps, run_receipts, sent_email, sent_on, statuses, suppressed};
use crate::support::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{TimeDelta, Utc};
use herald::aws::dynamodb::{DynamoRecipients, DynamoReplayGuard, DynamoSuppression, DynamoTopics};
use herald::aws::https::HttpsFetcher;
use herald::aws::secretsmanager::SecretsManagerSecret;
use herald::aws::sqs::SqsReceiptInbox;
use herald::domain::ledger::{Status, SuppressionCause};
use herald::domain::recipient::ConsentScope;
use herald::domain::unsubscribe::{self, Unsubscribe, UnsubscribeKey};
use herald::domain::webhook::ProviderKey;
use herald::domain::{Channel, RecipientId, Topic};
use herald::lambda::{Context, LambdaEvent};
use herald::ports::{CertFetcher, Ledger, PortError, PortResult, RecipientStore, Secret, SuppressionList};
use herald_cli::local::{LOCAL_PROVIDER, PROVIDER_SECRETS, UNSUBSCRIBE_KEY};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use webhooks::aws::AwsSecrets;
use webhooks::sns::SnsVerifier;

// ---------------------------------------------------------------- signing like SNS

/// A signing key and its self-signed certificate, as SNS has.
struct SigningCert {
    key: rsa::PrivateKey,
    pem: String,
}

fn make_signing_cert() -> SigningCert {
    use rsa::pkcs8::EncodePrivateKey;
    let key = <rsa::PrivateKey as rsa::Generate>::generate();
    let der = key.to_pkcs8_der().unwrap();
    let pair = rcgen::KeyPair::try_from(der.as_bytes()).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["sns.amazonaws.com".to_owned()]).unwrap().self_signed(&pair).unwrap();
    SigningCert { key, pem: cert.pem() }
}

/// SNS's key, and another one (a forger's), made once for the whole run.
fn keys() -> &'static (SigningCert, SigningCert) {
    static KEYS: OnceLock<(SigningCert, SigningCert)> = OnceLock::new();
    KEYS.get_or_init(|| (make_signing_cert(), make_signing_cert()))
}

const CERT_URL: &str = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem";

/// An SNS message before signing (the fields of the HTTP/HTTPS JSON formats).
#[derive(Clone)]
struct Sns {
    kind: &'static str,
    topic: String,
    message: String,
    subject: Option<String>,
    subscribe_url: Option<String>,
    cert_url: String,
}

impl Sns {
    fn notification(topic: &str, message: &str) -> Self {
        Self {
            kind: "Notification",
            topic: topic.to_owned(),
            message: message.to_owned(),
            subject: Some("Amazon SES Email Event Notification".into()),
            subscribe_url: None,
            cert_url: CERT_URL.into(),
        }
    }

    /// The string to sign, written out here from AWS's documentation (not with the code under test).
    fn string_to_sign(&self, id: &str, timestamp: &str) -> String {
        match self.kind {
            "Notification" => format!(
                "Message\n{}\nMessageId\n{id}\n{}Timestamp\n{timestamp}\nTopicArn\n{}\nType\nNotification\n",
                self.message,
                self.subject.as_ref().map(|s| format!("Subject\n{s}\n")).unwrap_or_default(),
                self.topic
            ),
            kind => format!(
                "Message\n{}\nMessageId\n{id}\nSubscribeURL\n{}\nTimestamp\n{timestamp}\nToken\ntok-123\nTopicArn\n{}\nType\n{kind}\n",
                self.message,
                self.subscribe_url.as_deref().unwrap_or_default(),
                self.topic
            ),
        }
    }

    /// The JSON body SNS would POST, signed with `key` at signature `version`.
    fn signed(&self, version: u8, key: &rsa::PrivateKey) -> Value {
        let id = format!("sns-{}", Utc::now().timestamp_nanos_opt().unwrap());
        self.signed_as(version, key, &id, Utc::now())
    }

    /// [`Sns::signed`], with the message id and the publication time SNS would have given it.
    fn signed_as(&self, version: u8, key: &rsa::PrivateKey, id: &str, published: chrono::DateTime<Utc>) -> Value {
        let timestamp = published.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let text = self.string_to_sign(id, &timestamp);
        let signature = match version {
            1 => key.pkcs1v15_sign::<sha1::Sha1>(text.as_bytes()).unwrap(),
            _ => key.pkcs1v15_sign::<sha2::Sha256>(text.as_bytes()).unwrap(),
        };
        let mut body = json!({
            "Type": self.kind, "MessageId": id, "TopicArn": self.topic, "Message": self.message,
            "Timestamp": timestamp, "SignatureVersion": version.to_string(),
            "Signature": STANDARD.encode(signature), "SigningCertURL": self.cert_url,
        });
        if let Some(s) = &self.subject {
            body["Subject"] = s.clone().into();
        }
        if let Some(u) = &self.subscribe_url {
            body["SubscribeURL"] = u.clone().into();
            body["Token"] = "tok-123".into();
        }
        body
    }
}

// ---------------------------------------------------------------- the function under test

#[derive(Default)]
struct FakeState {
    certs: HashMap<String, Vec<u8>>,
    gets: Vec<String>,
}

/// Serves certificates by URL, records every GET (and answers confirmations).
#[derive(Clone, Default)]
pub(crate) struct FakeSns(Arc<Mutex<FakeState>>);

impl FakeSns {
    fn with_cert(url: &str, pem: &str) -> Self {
        let fake = Self::default();
        fake.0.lock().unwrap().certs.insert(url.to_owned(), pem.as_bytes().to_vec());
        fake
    }

    fn gets(&self) -> Vec<String> {
        self.0.lock().unwrap().gets.clone()
    }
}

impl CertFetcher for FakeSns {
    async fn get(&self, url: &str, _max_bytes: usize) -> PortResult<Vec<u8>> {
        let mut state = self.0.lock().unwrap();
        state.gets.push(url.to_owned());
        if url.contains("Action=ConfirmSubscription") {
            return Ok(b"<ConfirmSubscriptionResponse/>".to_vec());
        }
        state.certs.get(url).cloned().ok_or(PortError::Permanent { code: "HTTP404".into(), message: url.into() })
    }
}

pub(crate) type Deps =
    webhooks::Deps<FakeSns, DynamoRecipients, SqsReceiptInbox, DynamoReplayGuard, AwsSecrets, DynamoTopics>;

/// The webhook function's configuration as the template gives it, with `changes` to its environment.
fn webhook_config(t: &TestStack, changes: &[(&str, &str)]) -> webhooks::Config {
    let env = t.env("webhooks", changes);
    webhooks::Config::from_lookup(&move |name: &str| env.get(name).cloned()).unwrap()
}

/// The webhook function as the template configures it, with certificates served by `sns`.
fn deps_with(t: &TestStack, sns: FakeSns, config: &webhooks::Config) -> Deps {
    let real = webhooks::aws::deps(&t.sdk, config);
    webhooks::Deps {
        sns: SnsVerifier::new(sns),
        recipients: real.recipients,
        receipts: real.receipts,
        replay: real.replay,
        secrets: real.secrets,
        topics: real.topics,
        settings: real.settings,
    }
}

pub(crate) fn webhook_deps(t: &TestStack, sns: FakeSns) -> Deps {
    deps_with(t, sns, &webhook_config(t, &[]))
}

/// One HTTP request through the Function URL event, as Lambda's front end builds it.
pub(crate) async fn call(
    deps: &Deps,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: abc.lambda-url.us-east-1.on.aws");
    for (k, v) in headers {
        head.push_str(&format!("\r\n{k}: {v}"));
    }
    let mut request = herald_cli::web::parse_head(&head).unwrap();
    request.body = body.to_vec();
    let event = serde_json::from_value(herald_cli::web::function_url_event(&request, 443)).unwrap();
    let response = webhooks::handler(deps, LambdaEvent::new(event, Context::default())).await.unwrap();
    (u16::try_from(response.status_code).unwrap(), response.body.unwrap_or_default())
}

async fn post_sns(deps: &Deps, body: &Value) -> u16 {
    let headers = [("content-type", "text/plain; charset=UTF-8"), ("x-amz-sns-message-type", "Notification")];
    call(deps, "POST", "/sns", &headers, body.to_string().as_bytes()).await.0
}

/// Takes what is waiting on the receipts queue.
async fn drain_receipts_queue(t: &TestStack) -> Vec<String> {
    let sqs = aws_sdk_sqs::Client::new(&t.sdk);
    let out = sqs
        .receive_message()
        .queue_url(t.queue_url("ReceiptsQueue"))
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    out.messages.unwrap_or_default().into_iter().filter_map(|m| m.body).collect()
}

fn ses_message(name: &str, id: &herald::domain::MessageId, address: &str) -> String {
    let envelope: Value = serde_json::from_str(&fixture(
        &format!("ses/{name}.json"),
        &[("__MESSAGE_ID__", id.as_str()), ("__SES_MESSAGE_ID__", "ses-webhook"), ("__EMAIL__", address)],
    ))
    .unwrap();
    envelope["Message"].as_str().unwrap().to_owned()
}

// ---------------------------------------------------------------- SNS

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_messages_signed_with_either_version_are_verified_and_handed_to_receipts() {
    let t = TestStack::without_functions().await;
    let (sns_key, _) = keys();
    let fake = FakeSns::with_cert(CERT_URL, &sns_key.pem);
    let deps = webhook_deps(&t, fake.clone());
    let ledger = t.ledger();
    let id = sent_email(&ledger, &format!("{}-sns", t.tag)).await;
    let address = format!("sns.{}@example.org", t.tag);
    let topic = t.stack.topics.get("SesEventsTopic").unwrap().clone();

    let v1 = Sns::notification(&topic, &ses_message("delivery", &id, &address)).signed(1, &sns_key.key);
    let mut opened = Sns::notification(&topic, &ses_message("open", &id, &address));
    opened.subject = None;
    let v2 = opened.signed(2, &sns_key.key);
    assert_eq!(post_sns(&deps, &v1).await, 200);
    assert_eq!(post_sns(&deps, &v2).await, 200);
    assert_eq!(fake.gets(), [CERT_URL], "the certificate is fetched once and kept");

    // What reached the receipts queue is the message as SNS would have put it there.
    let queued = drain_receipts_queue(&t).await;
    let mut relayed: Vec<Value> = queued.iter().map(|b| serde_json::from_str(b).unwrap()).collect();
    relayed.sort_by_key(|v| v["MessageId"].as_str().unwrap().to_owned());
    let mut posted = vec![v1, v2];
    posted.sort_by_key(|v| v["MessageId"].as_str().unwrap().to_owned());
    assert_eq!(relayed, posted);
    let response = run_receipts(&receipts_deps(&t), &queued).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(ledger.get(&id).await.unwrap().unwrap().status, Status::Opened);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_altered_or_foreign_sns_messages_are_refused_and_change_nothing() {
    let t = TestStack::without_functions().await;
    let (sns_key, forger) = keys();
    let evil_url = "https://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService-x.pem";
    let junk_url = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-junk.pem";
    let fake = FakeSns::with_cert(CERT_URL, &sns_key.pem);
    {
        let mut state = fake.0.lock().unwrap();
        // Even served, a certificate from a host outside the pattern must never be fetched.
        state.certs.insert(evil_url.into(), sns_key.pem.as_bytes().to_vec());
        state.certs.insert(
            junk_url.into(),
            b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n".to_vec(),
        );
    }
    let deps = webhook_deps(&t, fake.clone());
    let topic = t.stack.topics.get("SesEventsTopic").unwrap().clone();
    let id = sent_email(&t.ledger(), &format!("{}-forged", t.tag)).await;
    let genuine = Sns::notification(&topic, &ses_message("bounce-permanent", &id, &format!("f.{}@example.org", t.tag)));

    let mut altered = genuine.signed(2, &sns_key.key);
    altered["Message"] = altered["Message"].as_str().unwrap().replace("Permanent", "Transient").into();
    let mut altered_v1 = genuine.signed(1, &sns_key.key);
    altered_v1["TopicArn"] = t.stack.topics.get("PushEventsTopic").unwrap().clone().into();
    let wrong_key = genuine.signed(2, &forger.key);
    let mut version_swapped = genuine.signed(1, &sns_key.key);
    version_swapped["SignatureVersion"] = "2".into();
    let bad_host = Sns { cert_url: evil_url.into(), ..genuine.clone() }.signed(2, &sns_key.key);
    let plain_http = Sns { cert_url: CERT_URL.replace("https", "http"), ..genuine.clone() }.signed(2, &sns_key.key);
    let junk_cert = Sns { cert_url: junk_url.into(), ..genuine.clone() }.signed(2, &sns_key.key);
    let foreign_topic = Sns { topic: "arn:aws:sns:us-east-1:999999999999:someone-else".into(), ..genuine.clone() }
        .signed(2, &sns_key.key);
    let mut unsigned = genuine.signed(2, &sns_key.key);
    unsigned.as_object_mut().unwrap().remove("Signature");
    let mut unknown_version = genuine.signed(2, &sns_key.key);
    unknown_version["SignatureVersion"] = "3".into();
    let mut not_base64 = genuine.signed(2, &sns_key.key);
    not_base64["Signature"] = "%%%".into();

    let cases = [
        ("altered message", altered, 403),
        ("altered topic, version 1", altered_v1, 403),
        ("signed with another key", wrong_key, 403),
        ("version 1 signature claimed as version 2", version_swapped, 403),
        ("certificate URL on another host", bad_host, 403),
        ("certificate URL over plain HTTP", plain_http, 403),
        ("certificate URL serving junk", junk_cert, 403),
        ("a topic Herald does not accept", foreign_topic, 403),
        ("unsigned", unsigned, 401),
        ("unknown signature version", unknown_version, 400),
        ("signature not base64", not_base64, 403),
    ];
    for (label, body, status) in cases {
        assert_eq!(post_sns(&deps, &body).await, status, "{label}");
    }
    let (status, _) = call(&deps, "POST", "/sns", &[], b"{not json").await;
    assert_eq!(status, 400);
    assert!(!fake.gets().iter().any(|u| u == evil_url || u.starts_with("http:")), "{:?}", fake.gets());
    assert!(drain_receipts_queue(&t).await.is_empty(), "nothing reached the receipts queue");
    assert_eq!(t.ledger().get(&id).await.unwrap().unwrap().status, Status::Sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_subscription_confirmation_is_confirmed_at_its_sns_url_only() {
    let t = TestStack::without_functions().await;
    let (sns_key, _) = keys();
    let fake = FakeSns::with_cert(CERT_URL, &sns_key.pem);
    let deps = webhook_deps(&t, fake.clone());
    let topic = t.stack.topics.get("PushEventsTopic").unwrap().clone();
    let confirm_url =
        format!("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={topic}&Token=tok-123");
    let confirmation = Sns {
        kind: "SubscriptionConfirmation",
        topic: topic.clone(),
        message: format!("You have chosen to subscribe to the topic {topic}."),
        subject: None,
        subscribe_url: Some(confirm_url.clone()),
        cert_url: CERT_URL.into(),
    };
    for version in [1, 2] {
        assert_eq!(post_sns(&deps, &confirmation.signed(version, &sns_key.key)).await, 200);
    }
    assert_eq!(fake.gets().iter().filter(|u| **u == confirm_url).count(), 2, "confirmed by visiting SubscribeURL");

    let evil =
        Sns { subscribe_url: Some("https://evil.example/?Action=ConfirmSubscription".into()), ..confirmation.clone() };
    assert_eq!(post_sns(&deps, &evil.signed(2, &sns_key.key)).await, 403);
    assert!(!fake.gets().iter().any(|u| u.contains("evil")), "a SubscribeURL off SNS is never visited");
    let unsubscribed = Sns { kind: "UnsubscribeConfirmation", ..confirmation };
    assert_eq!(post_sns(&deps, &unsubscribed.signed(2, &sns_key.key)).await, 200);
    assert!(drain_receipts_queue(&t).await.is_empty(), "confirmations are not receipts");
}

/// The fields SNS signs in a notification, plus the signature's own: all an SQS subscription
/// would see of it, and all the webhook hands on.
const RELAYED_FIELDS: [&str; 9] = [
    "Message",
    "MessageId",
    "Signature",
    "SignatureVersion",
    "SigningCertURL",
    "Subject",
    "Timestamp",
    "TopicArn",
    "Type",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_sns_does_not_sign_cannot_forge_a_provider_report() {
    let t = TestStack::without_functions().await;
    let (sns_key, _) = keys();
    let deps = webhook_deps(&t, FakeSns::with_cert(CERT_URL, &sns_key.pem));
    let ledger = t.ledger();
    let genuine = sent_email(&ledger, &format!("{}-genuine", t.tag)).await;
    let target = sent_email(&ledger, &format!("{}-target", t.tag)).await;
    let victim = format!("victim.{}@example.org", t.tag);
    let topic = t.stack.topics.get("SesEventsTopic").unwrap().clone();

    // A genuine signed delivery for one message, captured, and top-level fields SNS does not
    // sign added: a provider report (in every shape receipts ever read) that bounces another
    // message and suppresses an address.
    let delivery = ses_message("delivery", &genuine, &format!("g.{}@example.org", t.tag));
    let mut forged = Sns::notification(&topic, &delivery).signed(2, &sns_key.key);
    let events = json!([{"message_id": target.as_str(), "channel": "email", "status": "bounced", "address": victim}]);
    forged["type"] = "provider_report".into();
    forged["provider"] = LOCAL_PROVIDER.into();
    forged["events"] = events.clone();
    forged["provider_report"] = json!({"provider": LOCAL_PROVIDER, "events": events});
    forged["UnsubscribeURL"] = "https://evil.example/unsubscribe".into();
    assert_eq!(post_sns(&deps, &forged).await, 200, "what SNS signed is genuine");

    let queued = drain_receipts_queue(&t).await;
    assert_eq!(queued.len(), 1);
    let receipts = receipts_deps(&t);
    assert!(run_receipts(&receipts, &queued).await.batch_item_failures.is_empty());
    // And receipts never reads an SNS-shaped body as a provider report, even one that reached
    // the queue whole (an older webhook function, a raw-delivery subscription).
    assert!(run_receipts(&receipts, &[forged.to_string()]).await.batch_item_failures.is_empty());

    let untouched = ledger.get(&target).await.unwrap().unwrap();
    assert_eq!((untouched.status, statuses(&untouched).len()), (Status::Sent, 2), "the forged report changed nothing");
    assert_eq!(suppressed(&t, &victim).await, None);
    assert_eq!(ledger.get(&genuine).await.unwrap().unwrap().status, Status::Delivered, "the signed event applies");
    // Only the verified envelope was handed on.
    let relayed: Value = serde_json::from_str(&queued[0]).unwrap();
    let mut fields: Vec<&str> = relayed.as_object().unwrap().keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, RELAYED_FIELDS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_sns_messages_are_refused_and_late_retries_are_not() {
    let t = TestStack::without_functions().await;
    let (sns_key, _) = keys();
    let deps = webhook_deps(&t, FakeSns::with_cert(CERT_URL, &sns_key.pem));
    let id = sent_email(&t.ledger(), &format!("{}-stale", t.tag)).await;
    let topic = t.stack.topics.get("SesEventsTopic").unwrap().clone();
    let message = Sns::notification(&topic, &ses_message("delivery", &id, &format!("s.{}@example.org", t.tag)));
    let now = Utc::now();
    let sns_id = |n: &str| format!("sns-{}-{n}", t.tag);

    for (label, published) in [
        ("published two hours ago", now - TimeDelta::hours(2)),
        ("published a day ago", now - TimeDelta::days(1)),
        ("published ten minutes from now", now + TimeDelta::minutes(10)),
    ] {
        let body = message.signed_as(2, &sns_key.key, &sns_id(label), published);
        assert_eq!(post_sns(&deps, &body).await, 403, "{label}");
    }
    assert!(drain_receipts_queue(&t).await.is_empty(), "stale messages are not handed on");
    assert_eq!(t.ledger().get(&id).await.unwrap().unwrap().status, Status::Sent);

    // SNS retries an HTTPS delivery for up to an hour after publication: a late retry is taken.
    let retry = message.signed_as(2, &sns_key.key, &sns_id("retry"), now - TimeDelta::minutes(58));
    assert_eq!(post_sns(&deps, &retry).await, 200);
    assert_eq!(drain_receipts_queue(&t).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sns_message_delivered_twice_is_applied_once() {
    let t = TestStack::without_functions().await;
    let (sns_key, _) = keys();
    let deps = webhook_deps(&t, FakeSns::with_cert(CERT_URL, &sns_key.pem));
    let ledger = t.ledger();
    let id = sent_email(&ledger, &format!("{}-twice", t.tag)).await;
    let topic = t.stack.topics.get("SesEventsTopic").unwrap().clone();
    // A delivery delay is noted in the history each time it is applied.
    let delayed = Sns::notification(&topic, &ses_message("delivery-delay", &id, &format!("d.{}@example.org", t.tag)));
    let sns_id = format!("sns-{}-twice", t.tag);
    let published = Utc::now();
    let body = delayed.signed_as(2, &sns_key.key, &sns_id, published);

    // SNS did not see the first answer and retries: the retry is answered 200 (or SNS would
    // keep retrying), and so is a copy signed the other way.
    assert_eq!(post_sns(&deps, &body).await, 200);
    assert_eq!(post_sns(&deps, &body).await, 200, "a retry of a message already taken");
    assert_eq!(post_sns(&deps, &delayed.signed_as(1, &sns_key.key, &sns_id, published)).await, 200);
    let queued = drain_receipts_queue(&t).await;
    assert_eq!(queued.len(), 1, "handed on once");
    assert!(run_receipts(&receipts_deps(&t), &queued).await.batch_item_failures.is_empty());
    let e = ledger.get(&id).await.unwrap().unwrap();
    let notes = e.history.iter().filter(|h| h.detail.as_deref().is_some_and(|d| d.starts_with("delivery delayed")));
    assert_eq!(notes.count(), 1, "{:?}", e.history);
}

// ---------------------------------------------------------------- custom providers

/// The providers' secret as the stack holds it: `{"<name>": {"secret": .., "channels": [..]}}`.
async fn provider_secrets(t: &TestStack) -> serde_json::Map<String, Value> {
    serde_json::from_str(&t.stack.secret_value(&t.sdk, PROVIDER_SECRETS).await.unwrap()).unwrap()
}

/// The local stack's provider (configured for every channel).
async fn provider_key(t: &TestStack) -> ProviderKey {
    let providers = provider_secrets(t).await;
    let local = &providers[LOCAL_PROVIDER];
    ProviderKey::new(local["secret"].as_str().or(local.as_str()).unwrap()).unwrap()
}

/// Adds providers to the stack's secret, beside those already there.
async fn add_providers(t: &TestStack, added: Value) {
    let mut providers = provider_secrets(t).await;
    providers.extend(added.as_object().unwrap().clone());
    put_secret(t, PROVIDER_SECRETS, &Value::Object(providers).to_string()).await;
}

/// A report of `events` from `provider`, signed now with `key`.
async fn post_signed(deps: &Deps, provider: &str, key: &ProviderKey, events: Value) -> u16 {
    let body = json!({ "events": events }).to_string();
    let now = Utc::now().timestamp();
    post_report(deps, provider, Some(now), Some(&key.sign(now, body.as_bytes())), body.as_bytes()).await
}

async fn post_report(deps: &Deps, provider: &str, ts: Option<i64>, signature: Option<&str>, body: &[u8]) -> u16 {
    let ts = ts.map(|t| t.to_string());
    let mut headers = vec![("content-type", "application/json")];
    if let Some(ts) = &ts {
        headers.push(("x-herald-timestamp", ts));
    }
    if let Some(sig) = signature {
        headers.push(("x-herald-signature", sig));
    }
    call(deps, "POST", &format!("/providers/{provider}"), &headers, body).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_reports_need_a_fresh_signature_used_once() {
    let t = TestStack::without_functions().await;
    let deps = webhook_deps(&t, FakeSns::default());
    let key = provider_key(&t).await;
    let ledger = t.ledger();
    let (delivered, bounced) =
        (sent_email(&ledger, &format!("{}-p1", t.tag)).await, sent_email(&ledger, &format!("{}-p2", t.tag)).await);
    let address = format!("p.{}@example.org", t.tag);
    let body = json!({"events": [
        {"message_id": delivered.as_str(), "channel": "email", "status": "delivered", "provider_id": "acme-1"},
        {"message_id": bounced.as_str(), "channel": "email", "status": "bounced", "address": address, "detail": "550 no such user"},
    ]})
    .to_string();
    let body = body.as_bytes();
    let now = Utc::now().timestamp();
    let sig = key.sign(now, body);

    // Refusals first: none of them may use up the signature.
    let other = ProviderKey::new("some other secret, long enough").unwrap();
    let stale = now - 400;
    type Case<'a> = (&'a str, &'a str, Option<i64>, Option<String>, &'a [u8], u16);
    let cases: [Case; 9] = [
        ("no signature", "local", Some(now), None, body, 401),
        ("no timestamp", "local", None, Some(sig.clone()), body, 401),
        ("an unknown provider", "acme", Some(now), Some(sig.clone()), body, 401),
        ("a malformed signature", "local", Some(now), Some("sha256=abc".into()), body, 400),
        ("another secret", "local", Some(now), Some(other.sign(now, body)), body, 403),
        ("an altered body", "local", Some(now), Some(sig.clone()), b"{\"events\": []}", 403),
        ("a stale timestamp", "local", Some(stale), Some(key.sign(stale, body)), body, 403),
        ("a timestamp from the future", "local", Some(now + 400), Some(key.sign(now + 400, body)), body, 403),
        ("a signed body that is not a report", "local", Some(now), Some(key.sign(now, b"[]")), b"[]", 400),
    ];
    for (label, provider, ts, signature, body, status) in cases {
        assert_eq!(post_report(&deps, provider, ts, signature.as_deref(), body).await, status, "{label}");
    }
    assert!(drain_receipts_queue(&t).await.is_empty(), "refused reports are not handed on");

    assert_eq!(post_report(&deps, "local", Some(now), Some(&sig), body).await, 200);
    assert_eq!(post_report(&deps, "local", Some(now), Some(&sig), body).await, 403, "a replay is refused");
    let (status, _) = call(&deps, "GET", "/providers/local", &[], b"").await;
    assert_eq!(status, 405);

    let queued = drain_receipts_queue(&t).await;
    assert_eq!(queued.len(), 1);
    assert!(run_receipts(&receipts_deps(&t), &queued).await.batch_item_failures.is_empty());
    let d = ledger.get(&delivered).await.unwrap().unwrap();
    assert_eq!((d.status, d.provider_id.as_deref()), (Status::Delivered, Some("acme-1")));
    let b = ledger.get(&bounced).await.unwrap().unwrap();
    assert_eq!((b.status, b.history.last().unwrap().detail.as_deref()), (Status::Bounced, Some("550 no such user")));
    assert_eq!(suppressed(&t, &address).await, Some(SuppressionCause::Bounce));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_signature_is_used_once_whatever_its_hex_case() {
    let t = TestStack::without_functions().await;
    let deps = webhook_deps(&t, FakeSns::default());
    let key = provider_key(&t).await;
    let id = sent_email(&t.ledger(), &format!("{}-hex", t.tag)).await;
    let body = delivered_report(&id, "local-1");
    let now = Utc::now().timestamp();
    let sig = key.sign(now, body.as_bytes());
    let upper = format!("v1={}", sig.trim_start_matches("v1=").to_ascii_uppercase());
    assert_ne!(upper, sig);

    assert_eq!(post_report(&deps, LOCAL_PROVIDER, Some(now), Some(&sig), body.as_bytes()).await, 200);
    for (label, again) in [("upper-case hex", upper), ("padded with spaces", format!(" {sig} "))] {
        let status = post_report(&deps, LOCAL_PROVIDER, Some(now), Some(&again), body.as_bytes()).await;
        assert_eq!(status, 403, "{label}: the same signature, used again");
    }
    assert_eq!(drain_receipts_queue(&t).await.len(), 1, "handed on once");
}

async fn put_secret(t: &TestStack, secret: &str, value: &str) {
    let client = aws_sdk_secretsmanager::Client::new(&t.sdk);
    client.put_secret_value().secret_id(t.stack.secret(secret).unwrap()).secret_string(value).send().await.unwrap();
}

fn delivered_report(id: &herald::domain::MessageId, provider_id: &str) -> String {
    json!({"events": [{"message_id": id.as_str(), "channel": "email", "status": "delivered", "provider_id": provider_id}]})
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_put_in_the_secret_is_accepted_once_the_value_read_expires() {
    let t = TestStack::without_functions().await;
    let config = webhook_config(&t, &[]);
    let ttl = std::time::Duration::from_secs(2);
    let mut deps = deps_with(&t, FakeSns::default(), &config);
    deps.secrets = webhooks::aws::secrets(&t.sdk, &config, ttl);
    let id = sent_email(&t.ledger(), &format!("{}-acme", t.tag)).await;
    let body = delivered_report(&id, "acme-1");
    let secret = "acme's secret, agreed today";
    let acme = ProviderKey::new(secret).unwrap();
    let signed = |deps| {
        let (now, body) = (Utc::now().timestamp(), body.as_bytes());
        let sig = acme.sign(now, body);
        async move { post_report(deps, "acme", Some(now), Some(&sig), body).await }
    };
    assert_eq!(signed(&deps).await, 401, "acme is not in the secret yet");

    // The team adds acme beside the providers already there, with no redeploy.
    add_providers(&t, json!({"acme": {"secret": secret, "channels": ["email"]}})).await;
    assert_eq!(signed(&deps).await, 401, "the value read a moment ago is kept for its TTL");
    tokio::time::sleep(ttl + std::time::Duration::from_millis(200)).await;
    assert_eq!(signed(&deps).await, 200, "read again once expired: acme is accepted");
    assert_eq!(drain_receipts_queue(&t).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_reports_and_suppresses_only_on_its_channels() {
    let t = TestStack::without_functions().await;
    let ledger = t.ledger();
    let email = sent_on(&ledger, &format!("{}-by-email", t.tag), Channel::Email).await;
    let sms = sent_on(&ledger, &format!("{}-by-sms", t.tag), Channel::Sms).await;
    let (address, number) = (format!("z.{}@example.org", t.tag), phone(&t.tag, 9));
    let (acme_secret, legacy_secret) = ("acme carries SMS and nothing else", "an entry written before channels");
    add_providers(&t, json!({"acme": {"secret": acme_secret, "channels": ["sms"]}, "legacy": legacy_secret})).await;
    let deps = webhook_deps(&t, FakeSns::default());
    let (acme, legacy) = (ProviderKey::new(acme_secret).unwrap(), ProviderKey::new(legacy_secret).unwrap());
    let event = |id: &herald::domain::MessageId, channel: &str, status: &str, address: Option<&str>| {
        let mut e = json!({"message_id": id.as_str(), "channel": channel, "status": status});
        if let Some(a) = address {
            e["address"] = a.into();
        }
        e
    };

    // Refused at the door, whole: any event on a channel acme is not configured for.
    for (label, events) in [
        ("an email delivery", json!([event(&email, "email", "delivered", None)])),
        ("an email bounce that would suppress an address", json!([event(&email, "email", "bounced", Some(&address))])),
        (
            "an email complaint behind an SMS delivery",
            json!([event(&sms, "sms", "delivered", None), event(&email, "email", "complained", Some(&address))]),
        ),
    ] {
        assert_eq!(post_signed(&deps, "acme", &acme, events).await, 403, "{label}");
    }
    // An entry without channels (the form before them) is authenticated, and refused.
    assert_eq!(post_signed(&deps, "legacy", &legacy, json!([event(&sms, "sms", "delivered", None)])).await, 403);
    assert!(drain_receipts_queue(&t).await.is_empty(), "refused reports are not handed on");

    // acme calling the email message an SMS gets past the door; the ledger write refuses it.
    let lie = json!([event(&email, "sms", "failed", None), event(&email, "sms", "clicked", None)]);
    assert_eq!(post_signed(&deps, "acme", &acme, lie).await, 200);
    // Its own SMS message: delivered, and an opt-out suppresses the number.
    let own = json!([event(&sms, "sms", "delivered", None), event(&sms, "sms", "opted_out", Some(&number))]);
    assert_eq!(post_signed(&deps, "acme", &acme, own).await, 200);
    let queued = drain_receipts_queue(&t).await;
    assert_eq!(queued.len(), 2);
    assert!(run_receipts(&receipts_deps(&t), &queued).await.batch_item_failures.is_empty());

    let e = ledger.get(&email).await.unwrap().unwrap();
    assert_eq!((e.status, e.channel.as_deref(), statuses(&e).len()), (Status::Sent, Some("email"), 2), "untouched");
    assert_eq!(suppressed(&t, &address).await, None);
    let s = ledger.get(&sms).await.unwrap().unwrap();
    assert_eq!((s.status, s.channel.as_deref()), (Status::Delivered, Some("sms")));
    let list = DynamoSuppression::new(aws_sdk_dynamodb::Client::new(&t.sdk), t.table("SuppressionTable"));
    let hash = herald::domain::PhoneNumber::new(number.as_str()).unwrap().suppression_hash();
    assert_eq!(list.find(&[(Channel::Sms, hash)]).await.unwrap(), [(Channel::Sms, SuppressionCause::OptOut)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_that_cannot_be_read_or_parsed_is_a_503_that_never_shows_its_value() {
    let t = TestStack::without_functions().await;
    let who = format!("dee-{}", t.tag);
    let token = link_for(&t, &who, TimeDelta::days(1)).await;
    let id = sent_email(&t.ledger(), &format!("{}-unread", t.tag)).await;
    let body = delivered_report(&id, "local-1");
    let now = Utc::now().timestamp();
    let sig = provider_key(&t).await.sign(now, body.as_bytes());
    let one_click = [("content-type", "application/x-www-form-urlencoded")];

    // Both secrets unreadable (here: no such secret; in AWS also a missing permission, a
    // deleted secret, a disabled KMS key, throttling): the caller is asked to retry.
    let missing = t.missing_secret();
    let unreadable =
        webhook_config(&t, &[("HERALD_UNSUBSCRIBE_KEY_SECRET", &missing), ("HERALD_WEBHOOK_SECRETS_SECRET", &missing)]);
    let deps = deps_with(&t, FakeSns::default(), &unreadable);
    let target = format!("/unsubscribe?t={token}");
    assert_eq!(call(&deps, "GET", &target, &[], b"").await.0, 503);
    assert_eq!(call(&deps, "POST", &target, &one_click, b"List-Unsubscribe=One-Click").await.0, 503);
    assert_eq!(post_report(&deps, LOCAL_PROVIDER, Some(now), Some(&sig), body.as_bytes()).await, 503);
    assert_eq!(news_consent(&t, &who).await, None);
    assert!(drain_receipts_queue(&t).await.is_empty());
    let client = aws_sdk_secretsmanager::Client::new(&t.sdk);
    let ttl = std::time::Duration::from_secs(60);
    let err = SecretsManagerSecret::new(client.clone(), &missing, ttl, webhooks::parse_providers).current().await;
    let err = err.expect_err("no such secret");
    assert!(err.is_retryable() && err.to_string().contains(&missing), "{err}");

    // Readable again: the same signed request goes through (the refusal did not use it up).
    let deps = webhook_deps(&t, FakeSns::default());
    assert_eq!(post_report(&deps, LOCAL_PROVIDER, Some(now), Some(&sig), body.as_bytes()).await, 200);

    // Malformed values: a 503 too, and an error that names the secret, never the value.
    let arn = t.stack.secret(PROVIDER_SECRETS).unwrap().to_owned();
    for value in [r#"{"local": "tiny-secret-1"}"#, "local=tiny-secret-1", r#"["tiny-secret-1"]"#] {
        put_secret(&t, PROVIDER_SECRETS, value).await;
        let deps = webhook_deps(&t, FakeSns::default());
        assert_eq!(post_report(&deps, LOCAL_PROVIDER, Some(now), Some(&sig), body.as_bytes()).await, 503, "{value}");
        let read = SecretsManagerSecret::new(client.clone(), &arn, ttl, webhooks::parse_providers).current().await;
        let err = read.expect_err("malformed").to_string();
        assert!(err.contains(&arn) && err.contains("malformed"), "{err}");
        assert!(!err.contains("tiny-secret-1"), "the error shows the value: {err}");
    }
}

// ---------------------------------------------------------------- one-click unsubscribe

/// The key as the stack holds it (generated by the local runner as CloudFormation would).
async fn unsubscribe_key(t: &TestStack) -> UnsubscribeKey {
    let key = t.stack.secret_value(&t.sdk, UNSUBSCRIBE_KEY).await.unwrap();
    assert_eq!(key.len(), 64, "the template asks for 64 characters");
    UnsubscribeKey::new(key).unwrap()
}

pub(crate) async fn link_for(t: &TestStack, who: &str, expires_in: TimeDelta) -> String {
    let u = Unsubscribe {
        recipient: RecipientId::new(who).unwrap(),
        channel: Channel::Email,
        topic: Some(Topic::new("news").unwrap()),
        expires_at: Utc::now() + expires_in,
    };
    unsubscribe::sign(&u, &unsubscribe_key(t).await)
}

pub(crate) async fn news_consent(t: &TestStack, who: &str) -> Option<(bool, String)> {
    let store = DynamoRecipients::new(aws_sdk_dynamodb::Client::new(&t.sdk), t.table("RecipientsTable"));
    let r = RecipientStore::get(&store, &RecipientId::new(who).unwrap()).await.unwrap()?;
    let scope = ConsentScope { channel: Channel::Email, topic: Some(Topic::new("news").unwrap()) };
    r.consents.get(&scope).map(|c| (c.granted, c.source.as_str().to_owned()))
}

/// The sources of the consent audit items of a recipient.
pub(crate) async fn audit_sources(t: &TestStack, who: &str) -> Vec<String> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let out = aws_sdk_dynamodb::Client::new(&t.sdk)
        .query()
        .table_name(t.table("RecipientsTable"))
        .key_condition_expression("pk = :pk AND begins_with(sk, :c)")
        .expression_attribute_values(":pk", AttributeValue::S(who.into()))
        .expression_attribute_values(":c", AttributeValue::S("consent#".into()))
        .send()
        .await
        .unwrap();
    out.items.unwrap_or_default().iter().filter_map(|i| i.get("source")?.as_s().ok().cloned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_click_unsubscribe_revokes_the_signed_consent_and_nothing_else() {
    let t = TestStack::without_functions().await;
    let deps = webhook_deps(&t, FakeSns::default());
    let (ana, bob) = (format!("ana-{}", t.tag), format!("bob-{}", t.tag));
    let token = link_for(&t, &ana, TimeDelta::days(30)).await;
    let one_click = [("content-type", "application/x-www-form-urlencoded")];

    // A mail scanner following the link changes nothing.
    let (status, page) = call(&deps, "GET", &format!("/unsubscribe?t={token}"), &[], b"").await;
    assert_eq!(status, 200);
    assert!(page.contains("email messages about news") && page.contains("method=\"post\""), "{page}");
    assert_eq!(news_consent(&t, &ana).await, None);

    // Refused: an altered token (naming bob), an expired one, no token, no one-click body.
    let (payload, tag) = token.split_once('.').unwrap();
    let text = String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let forged_payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text.replace(&ana, &bob));
    let forged = format!("{forged_payload}.{tag}");
    let expired = link_for(&t, &ana, TimeDelta::seconds(-1)).await;
    let body = b"List-Unsubscribe=One-Click";
    for (label, target, body, status) in [
        ("altered token", format!("/unsubscribe?t={forged}"), &body[..], 403),
        ("expired token", format!("/unsubscribe?t={expired}"), &body[..], 403),
        ("no token", "/unsubscribe".to_owned(), &body[..], 400),
        ("not a token", "/unsubscribe?t=hello".to_owned(), &body[..], 400),
        ("no one-click body", format!("/unsubscribe?t={token}"), &b""[..], 400),
    ] {
        assert_eq!(call(&deps, "POST", &target, &one_click, body).await.0, status, "{label}");
    }
    assert_eq!(call(&deps, "GET", &format!("/unsubscribe?t={forged}"), &[], b"").await.0, 403);
    assert_eq!((news_consent(&t, &ana).await, news_consent(&t, &bob).await), (None, None), "nothing changed");

    // RFC 8058: the one-click POST revokes that channel and topic, through the audited consent path.
    let (status, page) = call(&deps, "POST", &format!("/unsubscribe?t={token}"), &one_click, body).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(news_consent(&t, &ana).await, Some((false, webhooks::UNSUBSCRIBE_SOURCE.to_owned())));
    assert_eq!(audit_sources(&t, &ana).await, [webhooks::UNSUBSCRIBE_SOURCE]);
    assert_eq!(news_consent(&t, &bob).await, None);
}

// ---------------------------------------------------------------- local mode and the HTTPS fetcher

async fn http(url: &str, method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let answer = herald_cli::web::request(url, method, target, headers, body).await.unwrap();
    (answer.status, answer.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_function_url_serves_the_webhook_function_over_http() {
    let t = TestStack::without_functions().await;
    let web = herald_cli::web::WebFront::start(&t.stack, &t.sdk).await.unwrap();
    let url = web.url("WebhooksFunction").expect("the webhook function is served").to_owned();
    let who = format!("cy-{}", t.tag);
    let token = link_for(&t, &who, TimeDelta::days(1)).await;

    let (status, page) = http(&url, "GET", &format!("/unsubscribe?t={token}"), &[], "").await;
    assert_eq!(status, 200, "{page}");
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let one_click = http(&url, "POST", &format!("/unsubscribe?t={token}"), &form, "List-Unsubscribe=One-Click").await;
    assert_eq!(one_click.0, 200);
    assert_eq!(news_consent(&t, &who).await, Some((false, webhooks::UNSUBSCRIBE_SOURCE.to_owned())));
    assert_eq!(http(&url, "GET", "/elsewhere", &[], "").await.0, 404);
    assert_eq!(http(&url, "POST", "/sns", &[], "{}").await.0, 400);
}

#[tokio::test]
async fn the_https_fetcher_reads_bounded_bodies_with_the_sdk_client() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let (status, body) = if head.starts_with("GET /cert.pem ") {
                    ("200 OK", "-----BEGIN CERTIFICATE-----\n".to_owned())
                } else if head.starts_with("GET /big ") {
                    ("200 OK", "x".repeat(5000))
                } else if head.starts_with("GET /busy ") {
                    ("503 Service Unavailable", String::new())
                } else {
                    ("404 Not Found", String::new())
                };
                let response =
                    format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    let fetcher = HttpsFetcher::new(std::time::Duration::from_secs(5));
    let base = format!("http://{addr}");
    assert_eq!(fetcher.get(&format!("{base}/cert.pem"), 1024).await.unwrap(), b"-----BEGIN CERTIFICATE-----\n");
    assert!(
        matches!(fetcher.get(&format!("{base}/big"), 1024).await, Err(PortError::Permanent { code, .. }) if code == "TooLarge")
    );
    assert!(
        matches!(fetcher.get(&format!("{base}/missing"), 1024).await, Err(PortError::Permanent { code, .. }) if code == "HTTP404")
    );
    assert!(fetcher.get(&format!("{base}/busy"), 1024).await.unwrap_err().is_retryable());
}
