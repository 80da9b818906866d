//! SQS adapter: batched sends (`SendMessageBatch`, 10 messages and 256 KiB a request).

use crate::aws::classify;
use crate::domain::Channel;
use crate::domain::jobs::{MAX_SQS_BODY_BYTES, check_sqs_body};
use crate::ports::{Destination, Outbox, Outgoing, PortError, PortResult};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

/// Queue URLs by destination; a function holds only the ones it may send to.
#[derive(Debug, Clone, Default)]
pub struct QueueUrls {
    pub ingest: Option<String>,
    pub eligibility: Option<String>,
    pub broadcast: Option<String>,
    pub digest: Option<String>,
    pub journey: Option<String>,
    pub push: Option<String>,
    pub email: Option<String>,
    pub sms: Option<String>,
    pub inbox: Option<String>,
}

impl QueueUrls {
    /// These URLs with `url` as `channel`'s queue.
    pub fn with_channel(mut self, channel: Channel, url: impl Into<String>) -> Self {
        let slot = match channel {
            Channel::Push => &mut self.push,
            Channel::Email => &mut self.email,
            Channel::Sms => &mut self.sms,
            Channel::Inbox => &mut self.inbox,
        };
        *slot = Some(url.into());
        self
    }

    fn url(&self, to: Destination) -> Option<&str> {
        match to {
            Destination::Ingest => self.ingest.as_deref(),
            Destination::Eligibility => self.eligibility.as_deref(),
            Destination::Broadcast => self.broadcast.as_deref(),
            Destination::Digest => self.digest.as_deref(),
            Destination::Journey => self.journey.as_deref(),
            Destination::Channel(Channel::Push) => self.push.as_deref(),
            Destination::Channel(Channel::Email) => self.email.as_deref(),
            Destination::Channel(Channel::Sms) => self.sms.as_deref(),
            Destination::Channel(Channel::Inbox) => self.inbox.as_deref(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SqsOutbox {
    client: Client,
    urls: QueueUrls,
}

impl SqsOutbox {
    pub fn new(client: Client, urls: QueueUrls) -> Self {
        Self { client, urls }
    }
}

/// SQS caps a delay at 15 minutes.
pub const MAX_DELAY_SECS: u32 = 900;
/// SQS caps a visibility timeout at 12 hours.
pub const MAX_VISIBILITY_SECS: u32 = 43_200;

impl Outbox for SqsOutbox {
    async fn retry_later(&self, from: Destination, receipt_handle: &str, secs: u32) -> PortResult<()> {
        let url = self
            .urls
            .url(from)
            .ok_or_else(|| PortError::Unknown(anyhow::anyhow!("no queue configured for {from:?}")))?;
        self.client
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(secs.min(MAX_VISIBILITY_SECS) as i32)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("ChangeMessageVisibility", e))
    }

    /// Sends in batches of at most ten messages and [`MAX_SQS_BODY_BYTES`] in all. One
    /// message SQS will not carry never fails its neighbours: a body that fails
    /// [`check_sqs_body`] is not sent (its id is returned), and a batch SQS refuses as a
    /// whole for good (an entry too large for the queue, say) is sent again one message
    /// at a time, so only the refused ones fail.
    async fn send(&self, to: Destination, messages: Vec<Outgoing>) -> PortResult<Vec<String>> {
        let url =
            self.urls.url(to).ok_or_else(|| PortError::Unknown(anyhow::anyhow!("no queue configured for {to:?}")))?;
        Ok(self.send_to(url, &format!("{to:?}"), messages).await)
    }
}

impl SqsOutbox {
    /// [`Outbox::send`] to the queue at `url` (`to` names it in logs).
    async fn send_to(&self, url: &str, to: &str, messages: Vec<Outgoing>) -> Vec<String> {
        let mut failed = Vec::new();
        let mut sendable = Vec::with_capacity(messages.len());
        for m in messages {
            match check_sqs_body(&m.body) {
                Ok(()) => sendable.push(m),
                Err(why) => {
                    tracing::error!(id = %m.id, destination = %to, reason = %why, "a message SQS would not carry: not sent");
                    failed.push(m.id);
                }
            }
        }
        for batch in batches(&sendable) {
            match self.send_batch(url, batch).await {
                Ok(refused) => failed.extend(refused),
                Err(err) if err.is_retryable() || batch.len() == 1 => {
                    // A whole-request failure fails every entry of the batch; the caller retries their inputs.
                    tracing::warn!(error = %err, destination = %to, "batch send failed; its inputs will be retried");
                    failed.extend(batch.iter().map(|m| m.id.clone()));
                }
                Err(err) => {
                    tracing::warn!(error = %err, destination = %to, "batch refused: sending its messages one by one");
                    for m in batch {
                        match self.send_batch(url, std::slice::from_ref(m)).await {
                            Ok(refused) => failed.extend(refused),
                            Err(err) => {
                                tracing::warn!(id = %m.id, error = %err, destination = %to, "message refused");
                                failed.push(m.id.clone());
                            }
                        }
                    }
                }
            }
        }
        failed
    }

    /// One `SendMessageBatch`; returns the ids of the entries SQS did not take.
    async fn send_batch(&self, url: &str, batch: &[Outgoing]) -> PortResult<Vec<String>> {
        let entries = batch
            .iter()
            .filter_map(|m| {
                SendMessageBatchRequestEntry::builder()
                    .id(&m.id)
                    .message_body(&m.body)
                    .set_delay_seconds((m.delay_secs > 0).then(|| m.delay_secs.min(MAX_DELAY_SECS) as i32))
                    .build()
                    .ok()
            })
            .collect::<Vec<_>>();
        let out = self
            .client
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| classify("SendMessageBatch", e))?;
        Ok(out.failed.into_iter().map(|f| f.id).collect())
    }
}

/// Consecutive runs of at most ten messages and [`MAX_SQS_BODY_BYTES`] of bodies: what one
/// `SendMessageBatch` may carry (each body alone fits, [`check_sqs_body`] saw to it).
fn batches(messages: &[Outgoing]) -> Vec<&[Outgoing]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, m) in messages.iter().enumerate() {
        if i > start && (i - start == 10 || bytes + m.body.len() > MAX_SQS_BODY_BYTES) {
            out.extend(messages.get(start..i));
            (start, bytes) = (i, 0);
        }
        bytes += m.body.len();
    }
    if start < messages.len() {
        out.extend(messages.get(start..));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_hold_ten_messages_and_the_request_size_at_most() {
        let of = |sizes: &[usize]| -> Vec<Outgoing> {
            sizes
                .iter()
                .enumerate()
                .map(|(n, &len)| Outgoing { id: n.to_string(), body: "x".repeat(len), delay_secs: 0 })
                .collect()
        };
        let lengths = |messages: &[Outgoing]| batches(messages).iter().map(|b| b.len()).collect::<Vec<_>>();
        let kib = 1024;
        assert_eq!(lengths(&of(&[])), Vec::<usize>::new());
        assert_eq!(lengths(&of(&[1; 25])), [10, 10, 5]);
        assert_eq!(lengths(&of(&[120 * kib; 10])), [2, 2, 2, 2, 2]);
        assert_eq!(lengths(&of(&[256 * kib, 1, 255 * kib, kib, 1])), [1, 2, 2]);
        assert_eq!(lengths(&of(&[128 * kib, 128 * kib, 1])), [2, 1]);
    }
}

/// One queue for single messages: the receipts queue, for receipts that arrive
/// over HTTPS (one request each, so nothing to batch).
#[derive(Debug, Clone)]
pub struct SqsReceiptInbox {
    client: Client,
    url: String,
}

impl SqsReceiptInbox {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self { client, url: url.into() }
    }
}

impl crate::ports::ReceiptInbox for SqsReceiptInbox {
    async fn put(&self, body: &str) -> PortResult<()> {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("SendMessage", e))
    }
}

/// A dead-letter queue Herald writes to itself: the event stream's entries the bus
/// refused for good, kept for an operator (`herald dlq list events`).
#[derive(Debug, Clone)]
pub struct SqsDeadLetters {
    outbox: SqsOutbox,
    url: String,
}

impl SqsDeadLetters {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self { outbox: SqsOutbox::new(client, QueueUrls::default()), url: url.into() }
    }
}

impl crate::ports::DeadLetters for SqsDeadLetters {
    async fn park(&self, bodies: Vec<String>) -> PortResult<()> {
        let messages = bodies
            .into_iter()
            .enumerate()
            .map(|(n, body)| Outgoing { id: n.to_string(), body, delay_secs: 0 })
            .collect();
        let failed = self.outbox.send_to(&self.url, "dead letters", messages).await;
        if failed.is_empty() {
            Ok(())
        } else {
            Err(PortError::Transient(format!("{} dead letters not taken", failed.len())))
        }
    }
}
