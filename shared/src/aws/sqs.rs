//! SQS adapter: batched sends (`SendMessageBatch`, 10 a request).

use crate::aws::classify;
use crate::domain::Channel;
use crate::ports::{Destination, Outbox, Outgoing, PortError, PortResult};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

/// Queue URLs by destination; a function holds only the ones it may send to.
#[derive(Debug, Clone, Default)]
pub struct QueueUrls {
    pub eligibility: Option<String>,
    pub push: Option<String>,
    pub email: Option<String>,
    pub sms: Option<String>,
}

impl QueueUrls {
    fn url(&self, to: Destination) -> Option<&str> {
        match to {
            Destination::Eligibility => self.eligibility.as_deref(),
            Destination::Channel(Channel::Push) => self.push.as_deref(),
            Destination::Channel(Channel::Email) => self.email.as_deref(),
            Destination::Channel(Channel::Sms) => self.sms.as_deref(),
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

    async fn send(&self, to: Destination, messages: Vec<Outgoing>) -> PortResult<Vec<String>> {
        let url =
            self.urls.url(to).ok_or_else(|| PortError::Unknown(anyhow::anyhow!("no queue configured for {to:?}")))?;
        let mut failed = Vec::new();
        for chunk in messages.chunks(10) {
            let entries = chunk
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
            match self.client.send_message_batch().queue_url(url).set_entries(Some(entries)).send().await {
                Ok(out) => failed.extend(out.failed.into_iter().map(|f| f.id)),
                // A whole-request failure fails every entry of the chunk; the caller retries their inputs.
                Err(e) => {
                    let err = classify("SendMessageBatch", e);
                    if !err.is_retryable() {
                        return Err(err);
                    }
                    tracing::warn!(error = %err, "batch send failed; its inputs will be retried");
                    failed.extend(chunk.iter().map(|m| m.id.clone()));
                }
            }
        }
        Ok(failed)
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
