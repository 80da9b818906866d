//! `herald templates preview` and `herald send-test` against moto through the local stack:
//! a preview is what the provider received, byte for byte (email: every field moto's SES
//! keeps; SMS: the text; push: the SNS message per platform); a test send arrives, is marked
//! in the ledger, is suppressed like any send, and neither is refused by nor counts toward
//! a cap.

use crate::support::*;
use herald::aws::ses::SesEmail;
use herald::contract::Kind;
use herald::domain::ledger::SuppressionCause;
use herald::domain::{Channel, EmailAddress, Platform};
use herald::ports::{EmailMessage, EmailSender, PortResult, SuppressionList};
use herald_cli::preview::{self, Rendered, Request};
use herald_cli::sendtest::{self, SendTest};
use serde_json::{Map, Value, json};
use std::sync::Mutex;

fn shipped() -> herald::domain::template::CompiledTemplate {
    herald_cli::templates::load(&herald_cli::local::repo_root().join("templates/order_shipped.toml")).unwrap()
}

fn data(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

/// The preview of `order_shipped` that matches a send to `who` under `key`.
fn preview_of(channel: Channel, who: &str, key: &str, locale: &str, kind: Kind, d: &Map<String, Value>) -> Rendered {
    let mut req = Request::new(channel);
    req.locale = Some(locale.into());
    req.data = Some(d.clone());
    req.kind = kind;
    req.topic = Some("order_updates".into());
    req.recipient = who.into();
    req.idempotency_key = key.into();
    preview::preview(&shipped(), &req).unwrap().rendered
}

fn notify(key: &str, who: &str, channel: &str, kind: &str, d: &Map<String, Value>) -> String {
    json!({"idempotency_key": key, "recipient": who, "template": "order_shipped", "kind": kind,
           "topic": "order_updates", "channels": [channel], "data": d})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_is_what_each_provider_received_byte_for_byte() {
    let t = TestStack::new().await;
    let tag = &t.tag;
    let (ana, ana_at) = (format!("ana-{tag}"), format!("ana.{tag}@example.org"));
    let (max, max_at) = (format!("max-{tag}"), format!("max.{tag}@example.org"));
    let (sam, sam_phone) = (format!("sam-{tag}"), phone(tag, 1));
    let pia = format!("pia-{tag}");
    let tokens = [(Platform::Fcm, format!("fcm-{tag}-pia")), (Platform::Apns, format!("apns-{tag}-pia"))];
    // Characters that escaping, JSON and SMS encodings each treat their own way.
    let d = data(json!({"order_id": "<7&7> \"x\" é", "eta": "mardi 🎉"}));
    t.publish(&[
        json!({"type": "upsert_recipient", "recipient": ana, "email": ana_at, "locale": "fr-FR"}).to_string(),
        json!({"type": "upsert_recipient", "recipient": max, "email": max_at}).to_string(),
        json!({"type": "set_consent", "recipient": max, "channel": "email", "topic": "order_updates", "granted": true,
               "source": "test"})
        .to_string(),
        json!({"type": "upsert_recipient", "recipient": sam, "phone": sam_phone}).to_string(),
        json!({"type": "upsert_recipient", "recipient": pia, "locale": "fr"}).to_string(),
    ])
    .await;
    t.wait_idle().await;
    let registrations: Vec<String> = tokens
        .iter()
        .map(|(p, token)| {
            json!({"type": "register_push_token", "recipient": pia, "platform": p, "token": token}).to_string()
        })
        .collect();
    t.publish(&registrations).await;
    t.wait_idle().await;
    let keys = ["email", "marketing", "sms", "push"].map(|k| format!("{tag}-{k}"));
    t.publish(&[
        notify(&keys[0], &ana, "email", "transactional", &d),
        notify(&keys[1], &max, "email", "marketing", &d),
        notify(&keys[2], &sam, "sms", "transactional", &d),
        notify(&keys[3], &pia, "push", "transactional", &d),
    ])
    .await;
    t.wait_idle().await;
    for key in &keys {
        let e = t.entry(key).await.unwrap();
        assert!(matches!(e.status.as_str(), "sent" | "delivered"), "{key}: {e:?}");
    }
    let sent = provider_data().await;

    // Email, transactional, in French: every field moto's SES keeps.
    let Rendered::Email { from, subject, html, .. } =
        preview_of(Channel::Email, &ana, &keys[0], "fr-FR", Kind::Transactional, &d)
    else {
        panic!("not an email")
    };
    let got = emails_to(&sent, &ana_at);
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0]["source"].as_str(), got[0]["subject"].as_str(), got[0]["body"].as_str()),
        (Some(from.as_str()), Some(subject.as_str()), Some(html.as_str()))
    );
    assert!(html.contains("&lt;7&amp;7&gt;"), "escaped as sent: {html}");

    // Marketing: the same but for the signed link, which the preview marks as a stand-in.
    let Rendered::Email { from, subject, html, .. } =
        preview_of(Channel::Email, &max, &keys[1], "en", Kind::Marketing, &d)
    else {
        panic!("not an email")
    };
    let got = emails_to(&sent, &max_at);
    assert_eq!(got.len(), 1);
    let body = got[0]["body"].as_str().unwrap();
    let real = body.split("href=\"").find(|s| s.contains("/preferences?t=")).and_then(|s| s.split('"').next());
    let real = real.expect("the sent email links the preference center");
    let stand_in = format!(
        "{}/preferences?t={}",
        herald::domain::email::PLACEHOLDER_BASE,
        herald::domain::email::PLACEHOLDER_TOKEN
    );
    assert!(html.contains(&stand_in), "{html}");
    assert_eq!(html.replace(&stand_in, real), body, "only the signed link differs");
    assert_eq!((got[0]["source"].as_str(), got[0]["subject"].as_str()), (Some(from.as_str()), Some(subject.as_str())));

    // SMS: the text, and the segments the ledger billed (an emoji makes it UCS-2).
    let Rendered::Sms { text, encoding, segments, .. } =
        preview_of(Channel::Sms, &sam, &keys[2], "en", Kind::Transactional, &d)
    else {
        panic!("not an SMS")
    };
    let got = sms_to(&sent, &sam_phone);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["message"].as_str(), Some(text.as_str()));
    assert_eq!(encoding, "UCS-2");
    let billed = t.entry(&keys[2]).await.unwrap().sms_segments;
    assert_eq!(billed, u32::try_from(segments).ok());

    // Push: the SNS message each platform's endpoint got.
    let Rendered::Push { messages } = preview_of(Channel::Push, &pia, &keys[3], "fr", Kind::Transactional, &d) else {
        panic!("not push")
    };
    for (platform, token) in &tokens {
        let shown = messages.iter().find(|m| m.platform == *platform).unwrap();
        let got = pushes_to(&sent, token);
        assert_eq!(got, [Value::String(shown.sns_message.clone())], "{platform:?}");
    }
    assert!(messages[0].sns_message.contains("expédiée"), "in French");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_send_is_marked_skips_caps_without_counting_and_is_suppressed_like_any_send() {
    // The shipped default caps marketing email at one an hour per person.
    let t = TestStack::new().await;
    let tag = &t.tag;
    let sqs = aws_sdk_sqs::Client::new(&t.sdk);
    let address = format!("tess.{tag}@example.org");
    let test = |to: &str| SendTest {
        template: "order_shipped".into(),
        to: to.into(),
        channel: None,
        locale: None,
        data: data(json!({"order_id": "42"})),
        kind: Kind::Marketing,
        topic: Some("order_updates".into()),
        platform: None,
    };
    let who = sendtest::test_recipient(Channel::Email, &address);

    // The synthetic recipient fills its cap with ordinary marketing sends (with an opt-in).
    t.publish(&[
        json!({"type": "upsert_recipient", "recipient": who, "email": address}).to_string(),
        json!({"type": "set_consent", "recipient": who, "channel": "email", "topic": "order_updates", "granted": true,
               "source": "test"})
        .to_string(),
    ])
    .await;
    t.wait_idle().await;
    let d = data(json!({"order_id": "42"}));
    for n in 0..2 {
        t.publish(&[notify(&format!("{tag}-plain-{n}"), &who, "email", "marketing", &d)]).await;
        t.wait_idle().await;
    }
    let second = t.entry(&format!("{tag}-plain-1")).await.unwrap();
    assert_eq!((second.status.as_str(), second.reason.as_deref()), ("suppressed", Some("cap_reached")));
    let counters = || async {
        let out = aws_sdk_dynamodb::Client::new(&t.sdk).scan().table_name(t.table("CapsTable")).send().await.unwrap();
        let mut mine: Vec<String> = out
            .items
            .unwrap_or_default()
            .into_iter()
            .filter(|i| i.get("pk").and_then(|v| v.as_s().ok()).is_some_and(|pk| pk.starts_with(&who)))
            .map(|i| format!("{:?}", i.into_iter().collect::<std::collections::BTreeMap<_, _>>()))
            .collect();
        mine.sort();
        mine
    };
    let before = counters().await;
    assert!(!before.is_empty(), "the ordinary send took a slot");

    // The test send goes past the full cap, is marked, and leaves the counters as they were.
    let key = format!("{tag}-test");
    let sent = sendtest::send(&sqs, tag, &test(&address), &key).await.unwrap();
    assert_eq!((sent.recipient.as_str(), sent.channel), (who.as_str(), Channel::Email));
    assert_eq!(sent.queue_url, t.queue_url("IngestQueue"));
    t.wait_idle().await;
    let e = t.entry(&key).await.unwrap();
    assert!(e.test, "the ledger marks it");
    assert!(matches!(e.status.as_str(), "sent" | "delivered"), "{e:?}");
    assert!(!t.entry(&format!("{tag}-plain-0")).await.unwrap().test, "an ordinary send is not marked");
    assert_eq!(counters().await, before, "a test send takes no slot");
    assert_eq!(emails_to(&provider_data().await, &address).len(), 2, "the first ordinary send and the test");

    // A suppressed address stays suppressed for a test send.
    let bounced = format!("bounced.{tag}@example.org");
    let list = herald::aws::dynamodb::DynamoSuppression::new(
        aws_sdk_dynamodb::Client::new(&t.sdk),
        t.table("SuppressionTable"),
    );
    let hash = EmailAddress::new(&bounced).unwrap().suppression_hash();
    list.suppress(Channel::Email, &hash, SuppressionCause::Bounce, chrono::Utc::now()).await.unwrap();
    let key = format!("{tag}-test-bounced");
    sendtest::send(&sqs, tag, &test(&bounced), &key).await.unwrap();
    t.wait_idle().await;
    let e = t.entry(&key).await.unwrap();
    assert_eq!((e.status.as_str(), e.reason.as_deref(), e.test), ("suppressed", Some("suppressed_bounce"), true));
    assert!(emails_to(&provider_data().await, &bounced).is_empty());

    // Ingest takes `test` only in the test namespace: elsewhere it is a rejection.
    let outside = json!({"idempotency_key": format!("{tag}-outside"), "recipient": format!("ana-{tag}"),
                         "template": "order_shipped", "kind": "transactional", "test": true});
    assert!(herald::contract::IngestMessage::parse(&outside.to_string()).is_err());
    let missing = sendtest::ingest_queue(&sqs, "no-such-stack").await.unwrap_err().to_string();
    assert!(missing.contains("no queue named no-such-stack-IngestQueue"), "{missing}");
    t.stop().await;
}

/// SES, keeping a copy of what it is handed (moto keeps neither the text part nor the headers).
struct Recording {
    inner: SesEmail,
    sent: Mutex<Vec<EmailMessage>>,
}

impl EmailSender for Recording {
    async fn send(&self, message: &EmailMessage) -> PortResult<String> {
        self.sent.lock().unwrap().push(message.clone());
        self.inner.send(message).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_preview_is_every_field_handed_to_ses_but_the_signed_links() {
    let t = TestStack::without_functions().await;
    let tag = &t.tag;
    let (who, address) = (format!("eve-{tag}"), format!("eve.{tag}@example.org"));
    let key = format!("{tag}-marketing");
    let d = data(json!({"order_id": "9 & <9>"}));
    let bodies = [
        json!({"type": "upsert_recipient", "recipient": who, "email": address, "locale": "fr-CA"}).to_string(),
        json!({"type": "set_consent", "recipient": who, "channel": "email", "topic": "order_updates", "granted": true,
               "source": "test"})
        .to_string(),
        notify(&key, &who, "email", "marketing", &d),
    ];
    let ingest = ingest::aws::deps(&t.sdk, &ingest::Config::from_lookup(&t.lookup("ingest")).unwrap());
    ingest::handler(&ingest, sqs_event(&bodies)).await.unwrap();
    let eligibility =
        eligibility::aws::deps(&t.sdk, &eligibility::Config::from_lookup(&t.lookup("eligibility")).unwrap());
    let job = receive(&t, "EligibilityQueue").await.unwrap();
    eligibility::handler(&eligibility, received_event(&job)).await.unwrap();
    let env = t.env("dispatch-email", &[]);
    let config = dispatch_email::Config::from_lookup(&|k| env.get(k).cloned()).unwrap();
    let (deps, real) = dispatch_email::aws::deps(&t.sdk, &config);
    let email = dispatch_email::Email {
        sender: Recording {
            inner: SesEmail::new(aws_sdk_sesv2::Client::new(&t.sdk), config.configuration_set.clone()),
            sent: Mutex::new(Vec::new()),
        },
        from: real.from,
        unsubscribe: real.unsubscribe,
        receipts: real.receipts,
    };
    let job = receive(&t, "EmailQueue").await.expect("the job is on the email queue");
    assert!(dispatch_email::handler(&deps, &email, received_event(&job)).await.unwrap().batch_item_failures.is_empty());
    let sent = email.sender.sent.lock().unwrap().pop().expect("handed to SES");

    let Rendered::Email { from, reply_to, subject, html, text, headers, tags } =
        preview_of(Channel::Email, &who, &key, "fr-CA", Kind::Marketing, &d)
    else {
        panic!("not an email")
    };
    // The signed links the send made, in place of the preview's stand-ins.
    let unsubscribe = sent.headers.iter().find(|(n, _)| n == "List-Unsubscribe").map(|(_, v)| v.clone()).unwrap();
    let unsubscribe = unsubscribe.trim_start_matches('<').trim_end_matches('>').to_owned();
    let preferences =
        sent.content.text.lines().find_map(|l| l.split(": ").nth(1).filter(|u| u.contains("/preferences?t=")));
    let preferences = preferences.expect("the text part links the preference center").to_owned();
    use herald::domain::email::{PLACEHOLDER_BASE, PLACEHOLDER_TOKEN};
    let fill = |s: &str| {
        s.replace(&format!("{PLACEHOLDER_BASE}/unsubscribe?t={PLACEHOLDER_TOKEN}"), &unsubscribe)
            .replace(&format!("{PLACEHOLDER_BASE}/preferences?t={PLACEHOLDER_TOKEN}"), &preferences)
    };
    let filled_headers: Vec<(String, String)> = headers.iter().map(|(n, v)| (n.clone(), fill(v))).collect();
    assert_eq!(sent.to.as_str(), address);
    assert_eq!(
        (sent.from, sent.reply_to, sent.content.subject, sent.content.html, sent.content.text, sent.headers, sent.tags),
        (from, reply_to, subject, fill(&html), fill(&text), filled_headers, tags)
    );
}
