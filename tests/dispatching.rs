//! Dispatch against moto: a throttled provider is retried later and sends once;
//! sizes and segments are enforced and recorded; marketing email is signed with the
//! unsubscribe key read from the stack's secret, and waits when it cannot be read.

use crate::support::*;
use herald::aws::ses::SesEmail;
use herald::ports::{EmailMessage, EmailSender, PortError, PortResult};
use serde_json::{Value, json};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// SES that answers "slow down" to the first call, as SES does past its send rate.
struct ThrottledOnce {
    inner: SesEmail,
    calls: AtomicU32,
}

impl EmailSender for ThrottledOnce {
    async fn send(&self, message: &EmailMessage) -> PortResult<String> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(PortError::Throttled("SendEmail: TooManyRequestsException".into()));
        }
        self.inner.send(message).await
    }
}

/// SES, keeping a copy of what it was asked to send (moto does not keep the headers).
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

/// Runs ingest and eligibility for real on `bodies` (one notification among them), to
/// put a genuine job on its channel's queue.
async fn through_eligibility(t: &TestStack, bodies: &[Value]) {
    let ingest = ingest::aws::deps(&t.sdk, &ingest::Config::from_lookup(&t.lookup("ingest")).unwrap());
    let bodies: Vec<String> = bodies.iter().map(Value::to_string).collect();
    ingest::handler(&ingest, sqs_event(&bodies)).await.unwrap();
    let eligibility =
        eligibility::aws::deps(&t.sdk, &eligibility::Config::from_lookup(&t.lookup("eligibility")).unwrap());
    let job = receive(t, "EligibilityQueue").await.unwrap();
    eligibility::handler(&eligibility, received_event(&job)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_send_is_retried_later_and_sent_exactly_once() {
    let t = TestStack::without_functions().await;
    let tag = &t.tag;
    let address = format!("tara.{tag}@example.org");
    let who = format!("tara-{tag}");
    let key = format!("{tag}-throttled");
    through_eligibility(
        &t,
        &[
            json!({"type": "upsert_recipient", "recipient": who, "email": address}),
            json!({"idempotency_key": key, "recipient": who, "template": "order_shipped", "kind": "transactional",
                   "channels": ["email"], "data": {"order_id": "9"}}),
        ],
    )
    .await;

    let env = t.env("dispatch-email", &[("HERALD_RETRY_BASE_SECS", "1")]);
    let config = dispatch_email::Config::from_lookup(&|k| env.get(k).cloned()).unwrap();
    let (deps, real) = dispatch_email::aws::deps(&t.sdk, &config);
    let email = dispatch_email::Email {
        sender: ThrottledOnce {
            inner: SesEmail::new(aws_sdk_sesv2::Client::new(&t.sdk), config.configuration_set.clone()),
            calls: AtomicU32::new(0),
        },
        from: real.from,
        unsubscribe: real.unsubscribe,
        receipts: real.receipts,
    };
    assert!(email.receipts, "the template gives dispatch-email a configuration set whose events reach receipts");

    let first = receive(&t, "EmailQueue").await.expect("the job is on the email queue");
    assert_eq!(first["attributes"]["ApproximateReceiveCount"], "1");
    let response = dispatch_email::handler(&deps, &email, received_event(&first)).await.unwrap();
    let failed: Vec<_> = response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
    assert_eq!(failed, [first["messageId"].as_str().unwrap()], "throttled: back to the queue, not dropped");
    assert!(emails_to(&provider_data().await, &address).is_empty());
    let e = t.entry(&key).await.unwrap();
    assert_eq!(e.provider_id, None);

    // It comes back once its back-off has passed, and this time it goes out.
    let second = receive(&t, "EmailQueue").await.expect("the throttled job comes back");
    assert_eq!(second["messageId"], first["messageId"]);
    assert_eq!(second["attributes"]["ApproximateReceiveCount"], "2");
    let response = dispatch_email::handler(&deps, &email, received_event(&second)).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    let data = provider_data().await;
    let sent = emails_to(&data, &address);
    assert_eq!(sent.len(), 1, "sent exactly once");
    let ses_id = sent[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(email.sender.calls.load(Ordering::SeqCst), 2);
    // Dispatch writes nothing after the send: SES's events record it.
    let e = t.entry(&key).await.unwrap();
    assert_eq!((e.status.as_str(), e.provider_id.as_deref()), ("sent", None));

    // A copy of the job comes back before SES has reported (its delete was lost): it
    // waits for the claim to run out rather than send again.
    let copy = || received_event(&second);
    let response = dispatch_email::handler(&deps, &email, copy()).await.unwrap();
    assert_eq!(response.batch_item_failures.len(), 1, "held: back to the queue, not sent, not dropped");
    assert!(receive(&t, "EmailQueue").await.is_none(), "and out of sight until the claim runs out");
    assert_eq!(emails_to(&provider_data().await, &address).len(), 1);

    // SES's delivery event records the send; the copy, back again, is then dropped.
    let delivery = crate::receipts::fixture(
        "ses/delivery.json",
        &[("__MESSAGE_ID__", e.id.as_str()), ("__SES_MESSAGE_ID__", &ses_id), ("__EMAIL__", &address)],
    );
    let receipts = crate::receipts::receipts_deps(&t);
    assert!(crate::receipts::run_receipts(&receipts, &[delivery]).await.batch_item_failures.is_empty());
    let e = t.entry(&key).await.unwrap();
    assert_eq!((e.status.as_str(), e.provider_id.as_deref()), ("delivered", Some(ses_id.as_str())));
    let response = dispatch_email::handler(&deps, &email, copy()).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "already sent: dropped");
    assert_eq!(emails_to(&provider_data().await, &address).len(), 1, "sent exactly once");
    assert_eq!(email.sender.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sms_records_the_segments_it_cost() {
    let t = TestStack::new().await;
    let tag = &t.tag;
    let who = format!("sam-{tag}");
    let number = phone(tag, 7);
    t.publish(&[
        json!({"type": "upsert_recipient", "recipient": who, "phone": number}).to_string(),
        json!({"idempotency_key": format!("{tag}-code"), "recipient": who, "template": "security_code",
               "kind": "transactional", "data": {"code": "123456"}})
        .to_string(),
    ])
    .await;
    t.wait_idle().await;
    let data = provider_data().await;
    let sms = sms_to(&data, &number);
    assert_eq!(sms.len(), 1);
    assert_eq!(sms[0]["message"], "Your code is 123456. It expires in 10 minutes. Never share it.");
    let e = t.entry(&format!("{tag}-code")).await.unwrap();
    assert_eq!((e.status.as_str(), e.channel.as_deref(), e.sms_segments), ("sent", Some("sms"), Some(1)));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marketing_email_is_signed_with_the_stack_key_and_waits_when_it_cannot_be_read() {
    let t = TestStack::without_functions().await;
    let tag = &t.tag;
    let (who, address) = (format!("uma-{tag}"), format!("uma.{tag}@example.org"));
    let key = format!("{tag}-digest");
    through_eligibility(
        &t,
        &[
            json!({"type": "upsert_recipient", "recipient": who, "email": address}),
            json!({"type": "set_consent", "recipient": who, "channel": "email", "granted": true, "source": "test"}),
            json!({"idempotency_key": key, "recipient": who, "template": "weekly_digest", "kind": "marketing",
                   "topic": "news", "channels": ["email"], "data": {"headline": "x"}}),
        ],
    )
    .await;
    let job = receive(&t, "EmailQueue").await.expect("the digest is on the email queue");
    let event = || received_event(&job);
    let dispatch_with = |changes: &[(&str, &str)]| {
        let env = t.env("dispatch-email", changes);
        let config = dispatch_email::Config::from_lookup(&|k| env.get(k).cloned()).unwrap();
        let (deps, real) = dispatch_email::aws::deps(&t.sdk, &config);
        let sender = Recording {
            inner: SesEmail::new(aws_sdk_sesv2::Client::new(&t.sdk), config.configuration_set.clone()),
            sent: Mutex::new(Vec::new()),
        };
        (
            deps,
            dispatch_email::Email { sender, from: real.from, unsubscribe: real.unsubscribe, receipts: real.receipts },
        )
    };

    // The key's secret cannot be read: nothing is sent, the job comes back, and its claim is
    // released (the send below could not happen otherwise).
    let (deps, email) = dispatch_with(&[("HERALD_UNSUBSCRIBE_KEY_SECRET", &t.missing_secret())]);
    let response = dispatch_email::handler(&deps, &email, event()).await.unwrap();
    assert_eq!(response.batch_item_failures.len(), 1, "back to the queue, not failed");
    assert!(email.sender.sent.lock().unwrap().is_empty());
    assert!(emails_to(&provider_data().await, &address).is_empty());

    // With the stack's secret: sent, with a link the webhook function (reading the same
    // secret) accepts.
    let (deps, email) = dispatch_with(&[]);
    let response = dispatch_email::handler(&deps, &email, event()).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(emails_to(&provider_data().await, &address).len(), 1);
    let sent = email.sender.sent.lock().unwrap().clone();
    let header = |name: &str| sent[0].headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(header("List-Unsubscribe-Post").as_deref(), Some("List-Unsubscribe=One-Click"));
    let url = header("List-Unsubscribe").expect("a one-click unsubscribe link");
    let target = url.trim_matches(['<', '>']).split_once("/unsubscribe").map(|(_, rest)| format!("/unsubscribe{rest}"));
    let hooks = crate::webhooks::webhook_deps(&t, Default::default());
    let one_click = [("content-type", "application/x-www-form-urlencoded")];
    let (status, page) =
        crate::webhooks::call(&hooks, "POST", &target.unwrap(), &one_click, b"List-Unsubscribe=One-Click").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(crate::webhooks::news_consent(&t, &who).await, Some((false, webhooks::UNSUBSCRIBE_SOURCE.to_owned())));
}

/// The recipient as the recipients table holds it.
async fn recipient(t: &TestStack, who: &str) -> herald::domain::recipient::Recipient {
    let recipients =
        herald::aws::dynamodb::DynamoRecipients::new(aws_sdk_dynamodb::Client::new(&t.sdk), t.table("RecipientsTable"));
    let id = herald::domain::RecipientId::new(who).unwrap();
    herald::ports::RecipientStore::get(&recipients, &id).await.unwrap().expect("the recipient exists")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_platform_application_holds_the_push_and_leaves_every_device() {
    let t = TestStack::without_functions().await;
    let tag = &t.tag;
    let who = format!("pia-{tag}");
    let address = format!("pia.{tag}@example.org");
    let tokens = [format!("apns-{tag}-phone"), format!("apns-{tag}-tablet")];
    let ingest = ingest::aws::deps(&t.sdk, &ingest::Config::from_lookup(&t.lookup("ingest")).unwrap());
    let commands = [
        json!({"type": "upsert_recipient", "recipient": who, "email": address}).to_string(),
        json!({"type": "register_push_token", "recipient": who, "platform": "apns", "token": tokens[0]}).to_string(),
    ];
    ingest::handler(&ingest, sqs_event(&commands)).await.unwrap();
    let second_device =
        json!({"type": "register_push_token", "recipient": who, "platform": "apns", "token": tokens[1]}).to_string();
    ingest::handler(&ingest, sqs_event(&[second_device])).await.unwrap();
    let key = format!("{tag}-held");
    through_eligibility(
        &t,
        &[json!({"idempotency_key": key, "recipient": who, "template": "order_shipped", "kind": "transactional",
                 "channels": ["push", "email"], "data": {"order_id": "5"}})],
    )
    .await;

    // The APNs application is disabled (its certificate expired): SNS refuses every publish to it.
    let sns = aws_sdk_sns::Client::new(&t.sdk);
    let apns = t.lookup("ingest")("HERALD_APNS_APP_ARN").expect("the stack has an APNs application");
    let enable = |on: &'static str| {
        sns.set_platform_application_attributes().platform_application_arn(&apns).attributes("Enabled", on).send()
    };
    enable("false").await.unwrap();

    let env = t.env("dispatch-push", &[("HERALD_RETRY_BASE_SECS", "1")]);
    let config = dispatch_push::Config::from_lookup(&|k| env.get(k).cloned()).unwrap();
    let (deps, push) = dispatch_push::aws::deps(&t.sdk, &config);
    let first = receive(&t, "PushQueue").await.expect("the job is on the push queue");
    let response = dispatch_push::handler(&deps, &push, received_event(&first)).await.unwrap();
    let failed: Vec<_> = response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
    assert_eq!(failed, [first["messageId"].as_str().unwrap()], "held: back to the queue, not failed, not dropped");

    // Nothing is the recipient's fault: both devices and their endpoints stay, no channel failed.
    assert_eq!(recipient(&t, &who).await.devices.len(), 2, "no device was removed");
    let data = provider_data().await;
    for token in &tokens {
        let arn = endpoint_for(&data, token).expect("the endpoint is still there");
        let attributes = sns.get_endpoint_attributes().endpoint_arn(arn).send().await.unwrap().attributes.unwrap();
        assert_eq!(attributes.get("Enabled").map(String::as_str), Some("true"), "the endpoint is left enabled");
        assert!(pushes_to(&data, token).is_empty());
    }
    assert!(emails_to(&data, &address).is_empty(), "no fallback to email");
    let e = t.entry(&key).await.unwrap();
    assert!(e.history.iter().all(|h| h.status != "failed"), "no failure recorded: {:?}", e.history);

    // The application is fixed; the held job comes back after its back-off and goes to both devices.
    enable("true").await.unwrap();
    let second = receive(&t, "PushQueue").await.expect("the held job comes back");
    assert_eq!(
        (&second["messageId"], &second["attributes"]["ApproximateReceiveCount"]),
        (&first["messageId"], &json!("2"))
    );
    let response = dispatch_push::handler(&deps, &push, received_event(&second)).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    let data = provider_data().await;
    for token in &tokens {
        assert_eq!(pushes_to(&data, token).len(), 1, "sent once to each device");
    }
    let e = t.entry(&key).await.unwrap();
    assert_eq!((e.status.as_str(), e.channel.as_deref()), ("sent", Some("push")));
    assert!(emails_to(&data, &address).is_empty());
}
