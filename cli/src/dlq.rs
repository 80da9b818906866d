//! `herald dlq list|redrive <queue>`: what waits in one of the stack's dead-letter
//! queues, as Herald sees it (what kind of job, which message, what the ledger says
//! of it), and moving it back to the queue it came from.
//!
//! Queues are found by name: CloudFormation names a stack's queue
//! `<stack>-<LogicalId>-<suffix>` and the local stack `<stack>-<LogicalId>`, so a
//! `ListQueues` by prefix finds both, with no second SDK. Nothing printed carries an
//! address, a number or a token: a job's contact point and data are never read out,
//! only its ids.
//!
//! Listing receives each message once (hidden for [`PEEK_SECS`]) and then makes
//! every one it received visible again, so a listing leaves the queue as it found it.
//! A redrive sends each message to the source queue first and deletes it from the
//! dead-letter queue only once the send succeeded: a failure between the two leaves a
//! copy in both, which Herald's idempotency (per message id, per key) absorbs.

use anyhow::{Context as _, bail};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName,
    SendMessageBatchRequestEntry,
};
use herald::aws::dynamodb::DynamoLedger;
use herald::domain::{IdempotencyKey, MessageId};
use herald::ports::Ledger;
use serde_json::Value;

/// The queues that have a dead-letter queue: the name the command takes, and the
/// template's logical id of the source queue.
pub const QUEUES: &[(&str, &str)] = &[
    ("ingest", "IngestQueue"),
    ("eligibility", "EligibilityQueue"),
    ("push", "PushQueue"),
    ("email", "EmailQueue"),
    ("sms", "SmsQueue"),
    ("inbox", "InboxQueue"),
    ("receipts", "ReceiptsQueue"),
    ("broadcast", "BroadcastQueue"),
    ("digest", "DigestQueue"),
    ("journey", "JourneyQueue"),
];

/// How long a listed message stays hidden before the listing gives it back.
const PEEK_SECS: i32 = 30;
/// How long a message being moved stays hidden: the send and the delete fit in it.
const MOVE_SECS: i32 = 120;

/// A dead-letter queue and the queue its messages came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub name: String,
    pub dead_letter_url: String,
    pub source_url: String,
}

/// Finds `<stack>-<Logical>DeadLetterQueue*` and `<stack>-<Logical>*` (not the former).
pub async fn resolve(sqs: &Client, stack: &str, queue: &str) -> anyhow::Result<Pair> {
    let Some((name, logical)) = QUEUES.iter().find(|(n, _)| *n == queue) else {
        let names: Vec<&str> = QUEUES.iter().map(|(n, _)| *n).collect();
        bail!("no queue {queue:?}: the dead-letter queues are those of {}", names.join(", "));
    };
    let prefix = format!("{stack}-{logical}");
    let urls =
        sqs.list_queues().queue_name_prefix(&prefix).max_results(1000).send().await?.queue_urls.unwrap_or_default();
    let (dead, source): (Vec<String>, Vec<String>) = urls
        .into_iter()
        .partition(|u| u.rsplit('/').next().is_some_and(|n| n.starts_with(&format!("{prefix}DeadLetterQueue"))));
    let one = |mut found: Vec<String>, what: &str| -> anyhow::Result<String> {
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => bail!("no {what} queue named {prefix}… in this account and region (is the stack named {stack:?}?)"),
            n => bail!("{n} {what} queues are named {prefix}…: {}", found.join(", ")),
        }
    };
    Ok(Pair {
        name: (*name).to_owned(),
        dead_letter_url: one(dead, "dead-letter")?,
        source_url: one(source, "source")?,
    })
}

/// What Herald can tell of one message, without reading out anything personal.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Described {
    /// `notify`, `upsert_recipient`, … for a producer's message; `eligibility job`,
    /// `dispatch job (email)`, `receipt`, … for Herald's own.
    pub kind: String,
    pub message_id: Option<MessageId>,
    pub recipient: Option<String>,
    pub template: Option<String>,
}

/// Reads a body's kind and ids. Never fails: an unreadable body is described as such.
pub fn describe(body: &str) -> Described {
    let Ok(Value::Object(o)) = serde_json::from_str::<Value>(body) else {
        return Described { kind: "not a JSON object".into(), ..Described::default() };
    };
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let request = o.get("request").and_then(Value::as_object);
    let field = |name: &str| text(o.get(name)).or_else(|| text(request.and_then(|r| r.get(name))));
    let key_id = || field("idempotency_key").and_then(|k| IdempotencyKey::new(k).ok()).map(|k| MessageId::for_key(&k));
    let message_id = text(o.get("message_id")).and_then(|m| MessageId::parse(&m)).or_else(key_id);
    let kind = if let Some(contact) = o.get("contact") {
        let channel = match contact {
            Value::Object(c) => c.keys().next().cloned().unwrap_or_default(),
            Value::String(c) => c.clone(),
            _ => String::new(),
        };
        format!("dispatch job ({channel})")
    } else if request.is_some() && o.contains_key("message_id") {
        "eligibility job".to_owned()
    } else if o.get("Type").and_then(Value::as_str) == Some("Notification") {
        "receipt (SNS notification)".to_owned()
    } else if o.contains_key("eventType") || o.contains_key("notificationType") {
        "receipt (SES event)".to_owned()
    } else if let Some(t) = text(o.get("type")) {
        t
    } else if o.contains_key("idempotency_key") {
        "notify".to_owned()
    } else {
        "unknown".to_owned()
    };
    Described { kind, message_id, recipient: field("recipient"), template: field("template") }
}

/// One listed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub sqs_id: String,
    /// When it was first sent to the source queue (RFC 3339), if SQS said.
    pub sent_at: Option<String>,
    pub bytes: usize,
    pub described: Described,
    /// The ledger's status and reason for its message, if it has one.
    pub ledger: Option<(String, Option<String>)>,
}

/// Up to `max` messages of the dead-letter queue, left as they were found.
pub async fn list(sqs: &Client, ledger: &DynamoLedger, pair: &Pair, max: usize) -> anyhow::Result<Vec<Listed>> {
    let messages = receive(sqs, &pair.dead_letter_url, max, PEEK_SECS).await?;
    let handles: Vec<&str> = messages.iter().filter_map(|m| m.receipt_handle()).collect();
    let listed = describe_all(ledger, &messages).await;
    release(sqs, &pair.dead_letter_url, &handles).await?;
    listed
}

async fn describe_all(ledger: &DynamoLedger, messages: &[Message]) -> anyhow::Result<Vec<Listed>> {
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        let body = m.body().unwrap_or_default();
        let described = describe(body);
        let entry = match &described.message_id {
            Some(id) => ledger.get(id).await.context("reading the ledger")?,
            None => None,
        };
        let sent_at = m
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
            .and_then(|ms| ms.parse::<i64>().ok())
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        out.push(Listed {
            sqs_id: m.message_id().unwrap_or_default().to_owned(),
            sent_at,
            bytes: body.len(),
            described,
            ledger: entry.map(|e| (e.status.to_string(), e.reason)),
        });
    }
    Ok(out)
}

/// What a redrive did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redriven {
    pub moved: Vec<Listed>,
    /// Sent to the source queue but not deleted from the dead-letter queue (it will be
    /// seen again there; Herald's idempotency makes the second copy harmless).
    pub not_deleted: usize,
    /// Not sent (left in the dead-letter queue, visible again after [`MOVE_SECS`]).
    pub not_sent: usize,
}

/// Moves up to `max` messages back to the source queue, ten at a time.
pub async fn redrive(sqs: &Client, ledger: &DynamoLedger, pair: &Pair, max: usize) -> anyhow::Result<Redriven> {
    let mut done = Redriven::default();
    while done.moved.len() + done.not_sent < max {
        let want = (max - done.moved.len() - done.not_sent).min(10);
        let batch = receive(sqs, &pair.dead_letter_url, want, MOVE_SECS).await?;
        if batch.is_empty() {
            break;
        }
        let listed = describe_all(ledger, &batch).await?;
        let entries = batch
            .iter()
            .enumerate()
            .map(|(i, m)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(m.body().unwrap_or_default())
                    .build()
                    .map_err(anyhow::Error::from)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let sent = sqs.send_message_batch().queue_url(&pair.source_url).set_entries(Some(entries)).send().await?;
        let ok: Vec<usize> = sent.successful().iter().filter_map(|s| s.id().parse().ok()).collect();
        done.not_sent += batch.len() - ok.len();
        let deletes = ok
            .iter()
            .filter_map(|&i| batch.get(i).and_then(|m| m.receipt_handle()).map(|h| (i, h)))
            .map(|(i, h)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(h)
                    .build()
                    .map_err(anyhow::Error::from)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if !deletes.is_empty() {
            let deleted =
                sqs.delete_message_batch().queue_url(&pair.dead_letter_url).set_entries(Some(deletes)).send().await?;
            done.not_deleted += deleted.failed().len();
        }
        done.moved.extend(ok.iter().filter_map(|&i| listed.get(i).cloned()));
        if ok.len() < batch.len() {
            // The source queue refused some: stop rather than spin on them.
            break;
        }
    }
    Ok(done)
}

async fn receive(sqs: &Client, url: &str, max: usize, hide_secs: i32) -> anyhow::Result<Vec<Message>> {
    let mut out = Vec::new();
    while out.len() < max {
        let want = i32::try_from((max - out.len()).min(10)).unwrap_or(10);
        let got = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(want)
            .visibility_timeout(hide_secs)
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .context("receiving from the dead-letter queue")?
            .messages
            .unwrap_or_default();
        if got.is_empty() {
            break;
        }
        out.extend(got);
    }
    Ok(out)
}

/// Makes received messages visible again at once.
async fn release(sqs: &Client, url: &str, handles: &[&str]) -> anyhow::Result<()> {
    for chunk in handles.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, h)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(*h)
                    .visibility_timeout(0)
                    .build()
                    .map_err(anyhow::Error::from)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        sqs.change_message_visibility_batch().queue_url(url).set_entries(Some(entries)).send().await?;
    }
    Ok(())
}

/// One line per message: its SQS id, when it was sent, its kind and ids, the ledger's word.
pub fn render(listed: &[Listed]) -> String {
    let mut out = format!(
        "{:<38} {:<21} {:<24} {:<33} {:<16} {:<18} {}\n",
        "sqs message", "sent", "kind", "herald message", "recipient", "template", "ledger"
    );
    for l in listed {
        let d = &l.described;
        let ledger = match &l.ledger {
            Some((status, Some(reason))) => format!("{status} ({reason})"),
            Some((status, None)) => status.clone(),
            None if d.message_id.is_some() => "not in the ledger".into(),
            None => "-".into(),
        };
        out.push_str(&format!(
            "{:<38} {:<21} {:<24} {:<33} {:<16} {:<18} {}\n",
            l.sqs_id,
            l.sent_at.as_deref().unwrap_or("-"),
            d.kind,
            d.message_id.as_ref().map_or("-", MessageId::as_str),
            d.recipient.as_deref().unwrap_or("-"),
            d.template.as_deref().unwrap_or("-"),
            ledger
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_described_by_their_ids_only() {
        let notify = describe(
            r#"{"idempotency_key": "k-1", "recipient": "user-1", "template": "t", "kind": "marketing",
                "data": {"email": "ana@example.org"}}"#,
        );
        assert_eq!(notify.kind, "notify");
        assert_eq!(notify.message_id, Some(MessageId::for_key(&IdempotencyKey::new("k-1").unwrap())));
        assert_eq!((notify.recipient.as_deref(), notify.template.as_deref()), (Some("user-1"), Some("t")));

        let id = "0123456789abcdef0123456789abcdef";
        let job = describe(&format!(
            r#"{{"message_id": "{id}", "request": {{"recipient": "user-2", "template": "t2"}},
                "contact": {{"email": "bo@example.org"}}}}"#
        ));
        assert_eq!(job.kind, "dispatch job (email)");
        assert_eq!(job.message_id.as_ref().map(MessageId::as_str), Some(id));
        assert_eq!(job.recipient.as_deref(), Some("user-2"));
        assert!(!format!("{job:?}").contains("example.org"), "no address is read out");

        let eligibility = describe(&format!(r#"{{"message_id": "{id}", "request": {{"recipient": "u"}}}}"#));
        assert_eq!(eligibility.kind, "eligibility job");
        assert_eq!(describe(r#"{"type": "upsert_recipient", "recipient": "u"}"#).kind, "upsert_recipient");
        assert_eq!(describe(r#"{"Type": "Notification", "Message": "{}"}"#).kind, "receipt (SNS notification)");
        assert_eq!(describe("not json").kind, "not a JSON object");
        assert_eq!(describe("[1]").kind, "not a JSON object");
        assert_eq!(describe(r#"{"message_id": "NOT-HEX"}"#).message_id, None);
    }
}
