//! What the proxy saw pass (moto answered 2xx):
//! - each SES `SendEmail` and SNS `Publish`, with when, to whom and the provider's
//!   message id. It times each notification (publish to provider), and it feeds the
//!   SES player, which reports a delivery for each email the way SES does: a second
//!   later, with the message tags of the `SendEmail` request (`herald_message_id`).
//! - each `ChangeMessageVisibility` of a minute or more: a copy of a job parked
//!   behind another attempt's claim (an email claim holds 15 minutes), so the harness
//!   can tell a queue that only holds parked copies from a busy one, and let those
//!   copies back once everything else is done.
//!
//! The contact points stay in memory here: nothing prints them.

use chrono::{DateTime, Utc};
use serde_json::Value;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Email(String),
    Phone(String),
    /// A platform endpoint ARN.
    Endpoint(String),
}

#[derive(Debug, Clone)]
pub struct ProviderSend {
    pub at: DateTime<Utc>,
    pub target: Target,
    pub provider_id: String,
    /// SES: the `herald_message_id` message tag.
    pub herald_id: Option<String>,
}

/// A message made invisible for a minute or more by a handler.
#[derive(Debug, Clone)]
pub struct Park {
    pub queue_url: String,
    pub receipt_handle: String,
    pub until: Instant,
}

/// Visibility changes shorter than this are back-offs, not parks.
pub const PARK_SECS: i64 = 60;

pub struct Observed {
    sends: Mutex<Vec<ProviderSend>>,
    parks: Mutex<Vec<Park>>,
    emails: UnboundedSender<ProviderSend>,
}

impl Observed {
    /// The recorder, and the stream of emails SES took (for the SES player).
    pub fn new() -> (Self, UnboundedReceiver<ProviderSend>) {
        let (tx, rx) = unbounded_channel();
        (Self { sends: Mutex::new(Vec::new()), parks: Mutex::new(Vec::new()), emails: tx }, rx)
    }

    pub fn sends(&self) -> Vec<ProviderSend> {
        self.sends.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Parks still running on `queue_url`.
    pub fn active_parks(&self, queue_url: &str) -> usize {
        let now = Instant::now();
        self.parks.lock().map(|p| p.iter().filter(|p| p.queue_url == queue_url && p.until > now).count()).unwrap_or(0)
    }

    /// Takes the parks still running (to let them back).
    pub fn take_parks(&self) -> Vec<Park> {
        let now = Instant::now();
        self.parks
            .lock()
            .map(|mut p| std::mem::take(&mut *p).into_iter().filter(|p| p.until > now).collect())
            .unwrap_or_default()
    }

    /// Looks at a request moto answered 2xx.
    pub fn observe(&self, service: &str, operation: &str, request: &[u8], response_body: &[u8]) {
        if (service, operation) == ("sqs", "ChangeMessageVisibility") {
            if let Some(park) = park(request)
                && let Ok(mut p) = self.parks.lock()
            {
                p.push(park);
            }
            return;
        }
        let Some(send) = parse(service, operation, request, response_body) else { return };
        if matches!(send.target, Target::Email(_)) {
            let _ = self.emails.send(send.clone());
        }
        if let Ok(mut l) = self.sends.lock() {
            l.push(send);
        }
    }
}

fn park(request: &[u8]) -> Option<Park> {
    let v: Value = serde_json::from_slice(request).ok()?;
    let secs = v["VisibilityTimeout"].as_i64()?;
    if secs < PARK_SECS {
        return None;
    }
    Some(Park {
        queue_url: v["QueueUrl"].as_str()?.to_owned(),
        receipt_handle: v["ReceiptHandle"].as_str()?.to_owned(),
        until: Instant::now() + Duration::from_secs(secs as u64),
    })
}

fn parse(service: &str, operation: &str, request: &[u8], response: &[u8]) -> Option<ProviderSend> {
    let at = Utc::now();
    match (service, operation) {
        ("ses", "SendEmail") => {
            let req: Value = serde_json::from_slice(request).ok()?;
            let res: Value = serde_json::from_slice(response).ok()?;
            let to = req["Destination"]["ToAddresses"].get(0)?.as_str()?.to_owned();
            let herald_id = req["EmailTags"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["Name"] == "herald_message_id")
                .and_then(|t| t["Value"].as_str())
                .map(str::to_owned);
            let provider_id = res["MessageId"].as_str()?.to_owned();
            Some(ProviderSend { at, target: Target::Email(to), provider_id, herald_id })
        }
        ("sns", "Publish") => {
            let form: Vec<(String, String)> = form_urlencoded::parse(request).into_owned().collect();
            let get = |k: &str| form.iter().find(|(name, _)| name == k).map(|(_, v)| v.clone());
            let target = match (get("PhoneNumber"), get("TargetArn")) {
                (Some(n), _) => Target::Phone(n),
                (None, Some(arn)) => Target::Endpoint(arn),
                _ => return None,
            };
            let text = String::from_utf8_lossy(response);
            let provider_id = text.split("<MessageId>").nth(1)?.split("</MessageId>").next()?.trim().to_owned();
            Some(ProviderSend { at, target, provider_id, herald_id: None })
        }
        _ => None,
    }
}

/// Plays SES: for each email SES took, a `Delivery` event (the documented format,
/// tests/fixtures/ses/delivery.json) one second later, with the email's Herald message
/// id tag, published to the stack's SES events topic (moto delivers it to the receipts
/// queue, as the topic's subscription does in a deployment).
pub async fn play_ses(mut emails: UnboundedReceiver<ProviderSend>, sns: aws_sdk_sns::Client, topic: String) {
    while let Some(send) = emails.recv().await {
        let (sns, topic) = (sns.clone(), topic.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let (Target::Email(to), Some(id)) = (&send.target, &send.herald_id) else { return };
            let Some(message) = delivery_event(id, &send.provider_id, to) else { return };
            for _ in 0..5 {
                let published = sns
                    .publish()
                    .topic_arn(&topic)
                    .message(&message)
                    .subject("Amazon SES Email Event Notification")
                    .send()
                    .await;
                if published.is_ok() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            tracing::warn!(message_id = %id, "chaos: the SES delivery event could not be published");
        });
    }
}

fn delivery_event(herald_id: &str, ses_id: &str, to: &str) -> Option<String> {
    let envelope: Value = serde_json::from_str(
        &include_str!("../../tests/fixtures/ses/delivery.json")
            .replace("__MESSAGE_ID__", herald_id)
            .replace("__SES_MESSAGE_ID__", ses_id)
            .replace("__EMAIL__", to),
    )
    .ok()?;
    envelope["Message"].as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_are_read_from_what_passed() {
        let (s, mut rx) = Observed::new();
        let req = br#"{"FromEmailAddress":"a@example.com","Destination":{"ToAddresses":["x@example.org"]},
            "EmailTags":[{"Name":"herald_message_id","Value":"0123456789abcdef0123456789abcdef"}]}"#;
        s.observe("ses", "SendEmail", req, br#"{"MessageId":"ses-1"}"#);
        s.observe(
            "sns",
            "Publish",
            b"Action=Publish&PhoneNumber=%2B15550000001&Message=hi",
            b"<PublishResponse><PublishResult><MessageId>sns-1</MessageId></PublishResult></PublishResponse>",
        );
        s.observe(
            "sns",
            "Publish",
            b"Action=Publish&TargetArn=arn%3Aaws%3Asns%3Ax&Message=hi",
            b"<MessageId> sns-2 </MessageId>",
        );
        s.observe("sns", "Publish", b"Action=Publish&TopicArn=t&Message=hi", b"<MessageId>sns-3</MessageId>");
        let all = s.sends();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].target, Target::Email("x@example.org".into()));
        assert_eq!(all[0].herald_id.as_deref(), Some("0123456789abcdef0123456789abcdef"));
        assert_eq!(all[1].target, Target::Phone("+15550000001".into()));
        assert_eq!(
            (all[2].target.clone(), all[2].provider_id.as_str()),
            (Target::Endpoint("arn:aws:sns:x".into()), "sns-2")
        );
        assert_eq!(rx.try_recv().map(|e| e.provider_id).ok().as_deref(), Some("ses-1"));
        assert!(rx.try_recv().is_err(), "only emails go to the SES player");
        s.observe(
            "sqs",
            "ChangeMessageVisibility",
            br#"{"QueueUrl":"q1","ReceiptHandle":"h","VisibilityTimeout":901}"#,
            b"",
        );
        s.observe(
            "sqs",
            "ChangeMessageVisibility",
            br#"{"QueueUrl":"q1","ReceiptHandle":"h2","VisibilityTimeout":4}"#,
            b"",
        );
        assert_eq!((s.active_parks("q1"), s.active_parks("q2")), (1, 0), "a back-off is not a park");
        assert_eq!(s.take_parks().len(), 1);
        assert_eq!(s.active_parks("q1"), 0);
        let event = delivery_event("0123456789abcdef0123456789abcdef", "ses-1", "x@example.org").unwrap();
        assert!(event.contains("\"eventType\":\"Delivery\"") && event.contains("ses-1"));
    }
}
