//! Inbox dispatch: renders the inbox part of the template and stores it in the
//! person's in-app inbox (the inbox table), where the team's app reads it through the
//! inbox API.
//!
//! Storing is delivering: there is no provider, so no claim and no receipt. The ledger
//! records the message `delivered` in one conditional write that also keeps the
//! message's inbox id ([`Ledger::record_delivery`]), then the message is stored under
//! that id, once (a conditional put). A retried or redelivered job finds the id in the
//! ledger and stores under it again, which writes nothing the second time: a person
//! never gets the same message twice. From ingest to `delivered` a single-channel
//! inbox notification costs three writes: the admission, this ledger write, the store.

use chrono::{TimeDelta, Utc};
use herald::config::{ConfigError, Lookup, parsed, required};
use herald::contract::Mode;
use herald::dispatch::{Deliver, Delivery, DispatchConfig, DispatchDeps};
use herald::domain::Channel;
use herald::domain::inbox::{InboxMessage, PublicId, expiry};
use herald::domain::jobs::{Contact, DispatchJob};
use herald::domain::ledger::{Reason, Status};
use herald::domain::template::CompiledTemplate;
use herald::lambda::{LambdaEvent, SqsBatchResponse, SqsEvent};
use herald::metrics;
use herald::ports::{CapCounter, InboxStore, Ledger, Outbox, Recorded, Stored, StoredDelivery, TemplateStore};

#[cfg(feature = "aws")]
pub mod aws;

#[derive(Debug, Clone)]
pub struct Config {
    /// What every dispatch function reads (herald::dispatch::DispatchConfig).
    pub dispatch: DispatchConfig,
    pub inbox_table: String,
    /// How long a message stays in the inbox.
    pub retention_days: u32,
}

impl Config {
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, ConfigError> {
        let retention_days = parsed(get, "HERALD_INBOX_RETENTION_DAYS", 90)?;
        if retention_days == 0 {
            return Err(ConfigError("HERALD_INBOX_RETENTION_DAYS must be 1 or more".into()));
        }
        Ok(Self {
            dispatch: DispatchConfig::from_lookup(get, Channel::Inbox)?,
            inbox_table: required(get, "HERALD_INBOX_TABLE")?,
            retention_days,
        })
    }
}

/// The largest rendered message stored (title, body, action URL and data): a message is
/// one item, written for one write unit per KiB; a larger one fails on the channel (and
/// falls back when it may).
pub use herald::domain::template::MAX_INBOX_CONTENT_BYTES as MAX_CONTENT_BYTES;

/// The inbox channel's delivery.
pub struct Inbox<S, L> {
    pub store: S,
    /// Where the delivery is recorded, before the store is written.
    pub ledger: L,
    /// How long a message stays (its notification's `expires_at` ends it sooner).
    pub retention: TimeDelta,
}

impl<S: InboxStore, L: Ledger> Deliver for Inbox<S, L> {
    fn records_delivery(&self) -> bool {
        true
    }

    async fn deliver(&self, job: &DispatchJob, template: &CompiledTemplate) -> Delivery {
        if job.contact != Contact::Inbox {
            return Delivery::Failed { reason: Reason::NoContact, detail: "the job is not for the inbox".into() };
        }
        let content = match template.render_inbox(
            job.locale.as_ref().map(|l| l.as_str()),
            &job.request.data,
            &job.recipient_view(),
        ) {
            Ok(c) => c,
            Err(e) => return Delivery::from_render(e),
        };
        let size = content.stored_bytes();
        if size > MAX_CONTENT_BYTES {
            return Delivery::Failed {
                reason: Reason::PayloadTooLarge,
                detail: format!("the inbox message is {size} bytes, over {MAX_CONTENT_BYTES}"),
            };
        }
        // Nothing is recorded before this point: a failure above falls back.
        let now = Utc::now();
        let proposed = PublicId::new(now, job.message_id.clone()).to_string();
        let delivery = StoredDelivery {
            id: &job.message_id,
            channel: Channel::Inbox,
            reference: &proposed,
            per_channel: job.request.mode == Mode::All,
            variant: job.variant.as_deref(),
            template_version: template.doc.version,
            at: now,
        };
        let (reference, first) = match self.ledger.record_delivery(delivery).await {
            Ok(Recorded::Delivered { reference, first }) => (reference, first),
            Ok(Recorded::Elsewhere) => return Delivery::Already("sent on another channel, or closed".into()),
            Ok(Recorded::Unknown) => return Delivery::Already("not in the ledger (expired?)".into()),
            // Whatever the ledger says, the channel has not failed: try again later.
            Err(e) => return Delivery::Retry(e.to_string()),
        };
        let Some(id) = PublicId::parse(&reference).filter(|p| p.message_id() == &job.message_id) else {
            tracing::error!(message_id = %job.message_id, "the ledger holds an inbox id that is not this message's");
            return Delivery::Already("the recorded inbox id is not this message's".into());
        };
        if first {
            metrics::transition(
                Status::Delivered.as_str(),
                Channel::Inbox.as_str(),
                job.request.template.as_str(),
                job.request.campaign.as_ref().map(|c| c.as_str()),
            );
        }
        // The time of the first attempt: a retry keeps the message's place in the list.
        let created_at = id.at();
        let message = InboxMessage {
            recipient: job.request.recipient.clone(),
            title: content.title,
            body: content.body,
            action_url: content.action_url,
            data: content.data,
            template: job.request.template.to_string(),
            topic: job.request.topic.as_ref().map(|t| t.to_string()),
            campaign: job.request.campaign.as_ref().map(|c| c.to_string()),
            kind: job.request.kind.as_str().to_owned(),
            created_at,
            expires_at: expiry(created_at, self.retention, job.request.expires_at),
            seen_at: None,
            read_at: None,
            archived_at: None,
            clicked_at: None,
            id,
        };
        match self.store.put(&message).await {
            Ok(Stored::New) => Delivery::Sent { provider_id: reference, sms_segments: None },
            Ok(Stored::Existing) if first => Delivery::Sent { provider_id: reference, sms_segments: None },
            Ok(Stored::Existing) => Delivery::Already("stored already".into()),
            // Recorded as delivered already: never a failure of the channel now, only a retry
            // (which stores under the same id).
            Err(e) => Delivery::Retry(e.to_string()),
        }
    }
}

pub async fn handler<L, T, O, C, S, R>(
    deps: &DispatchDeps<L, T, O, C>,
    inbox: &Inbox<S, R>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, herald::lambda::Error>
where
    L: Ledger,
    T: TemplateStore,
    O: Outbox,
    C: CapCounter,
    S: InboxStore,
    R: Ledger,
{
    Ok(herald::dispatch::handle(deps, inbox, event).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_reads_the_retention() {
        let env = |days: &'static str| {
            move |name: &str| {
                [
                    ("HERALD_LEDGER_TABLE", "ledger"),
                    ("HERALD_TEMPLATES_TABLE", "templates"),
                    ("HERALD_CAPS_TABLE", "caps"),
                    ("HERALD_INBOX_QUEUE_URL", "http://q/inbox"),
                    ("HERALD_ELIGIBILITY_QUEUE_URL", "http://q/eligibility"),
                    ("HERALD_INBOX_TABLE", "inbox"),
                    ("HERALD_INBOX_RETENTION_DAYS", days),
                ]
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(Config::from_lookup(&env("30")).unwrap().retention_days, 30);
        assert_eq!(Config::from_lookup(&env("")).unwrap().retention_days, 90);
        assert!(Config::from_lookup(&env("0")).is_err());
        assert!(Config::from_lookup(&env("ninety")).is_err());
    }
}
