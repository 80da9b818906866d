//! Email dispatch: renders the email part of the template and sends it with SES v2,
//! tagged with Herald's message id so SES events find their way back.

use chrono::{DateTime, TimeDelta, Utc};
use herald::config::{ConfigError, LedgerConfig, Lookup, optional, parsed, required};
use herald::contract::Kind;
use herald::dispatch::{Deliver, Delivery, DispatchDeps, RetryPolicy};
use herald::domain::Channel;
use herald::domain::jobs::{Contact, DispatchJob};
use herald::domain::ledger::Reason;
use herald::domain::template::CompiledTemplate;
use herald::domain::unsubscribe::{Unsubscribe, UnsubscribeKey, link, sign};
use herald::lambda::{LambdaEvent, SqsBatchResponse, SqsEvent};
use herald::ports::{CapCounter, EmailMessage, EmailSender, Ledger, Outbox, PortResult, Secret, TemplateStore};

#[cfg(feature = "aws")]
pub mod aws;

#[derive(Debug, Clone)]
pub struct Config {
    pub ledger: LedgerConfig,
    pub templates_table: String,
    pub caps_table: String,
    /// The function's own queue (for retry back-off).
    pub queue_url: String,
    pub retry: RetryPolicy,
    pub eligibility_queue_url: String,
    pub from_address: String,
    pub configuration_set: Option<String>,
    /// Signs the one-click unsubscribe links of marketing email, with the key in the secret
    /// this names (its ARN).
    pub unsubscribe: Option<UnsubscribeLinks<String>>,
}

impl Config {
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            ledger: LedgerConfig::from_lookup(get)?,
            templates_table: required(get, "HERALD_TEMPLATES_TABLE")?,
            caps_table: required(get, "HERALD_CAPS_TABLE")?,
            queue_url: required(get, "HERALD_EMAIL_QUEUE_URL")?,
            retry: RetryPolicy {
                base_secs: parsed(get, "HERALD_RETRY_BASE_SECS", RetryPolicy::default().base_secs)?,
                max_receives: parsed(get, "HERALD_MAX_RECEIVES", RetryPolicy::default().max_receives)?,
            },
            eligibility_queue_url: required(get, "HERALD_ELIGIBILITY_QUEUE_URL")?,
            from_address: required(get, "HERALD_FROM_ADDRESS")?,
            configuration_set: optional(get, "HERALD_SES_CONFIGURATION_SET"),
            unsubscribe: match (optional(get, "HERALD_UNSUBSCRIBE_KEY_SECRET"), optional(get, "HERALD_UNSUBSCRIBE_URL"))
            {
                (Some(key), Some(base_url)) => Some(UnsubscribeLinks { key, base_url }),
                (None, None) => None,
                _ => {
                    return Err(ConfigError(
                        "HERALD_UNSUBSCRIBE_KEY_SECRET and HERALD_UNSUBSCRIBE_URL go together".into(),
                    ));
                }
            },
        })
    }
}

/// The SES message tag that carries Herald's message id.
pub const MESSAGE_ID_TAG: &str = "herald_message_id";

/// How marketing email links to one-click unsubscribe (RFC 8058).
#[derive(Debug, Clone)]
pub struct UnsubscribeLinks<K> {
    /// The signing key: in [`Config`], the ARN of the secret that holds it; in [`Email`],
    /// where it is read from when first needed (a [`Secret`]).
    pub key: K,
    /// The webhook function's URL, which serves `/unsubscribe`.
    pub base_url: String,
}

/// How long an unsubscribe link in a sent email keeps working.
pub const UNSUBSCRIBE_LINK_DAYS: i64 = 90;

pub struct Email<E, K> {
    pub sender: E,
    pub from: String,
    pub unsubscribe: Option<UnsubscribeLinks<K>>,
    /// SES reports this email's events to Herald's receipts (a configuration set whose
    /// event destination is Herald's SES events topic), which record the SES message id.
    pub receipts: bool,
}

impl<E, K: Secret<UnsubscribeKey>> Email<E, K> {
    /// `List-Unsubscribe` and `List-Unsubscribe-Post` for marketing email: a signed
    /// link that revokes this topic on email for this recipient, in one POST. Only
    /// marketing email reads the key.
    async fn unsubscribe_headers(&self, job: &DispatchJob, now: DateTime<Utc>) -> PortResult<Vec<(String, String)>> {
        let Some(links) = self.unsubscribe.as_ref().filter(|_| job.request.kind == Kind::Marketing) else {
            return Ok(Vec::new());
        };
        let key = links.key.current().await?;
        let grant = Unsubscribe {
            recipient: job.request.recipient.clone(),
            channel: Channel::Email,
            topic: job.request.topic.clone(),
            expires_at: now + TimeDelta::days(UNSUBSCRIBE_LINK_DAYS),
        };
        let url = link(&links.base_url, &sign(&grant, &key));
        Ok(vec![
            ("List-Unsubscribe".to_owned(), format!("<{url}>")),
            ("List-Unsubscribe-Post".to_owned(), "List-Unsubscribe=One-Click".to_owned()),
        ])
    }
}

impl<E: EmailSender, K: Secret<UnsubscribeKey>> Deliver for Email<E, K> {
    fn receipts_record_send(&self) -> bool {
        self.receipts
    }

    async fn deliver(&self, job: &DispatchJob, template: &CompiledTemplate) -> Delivery {
        let Contact::Email(to) = &job.contact else {
            return Delivery::Failed { reason: Reason::NoContact, detail: "the job has no email address".into() };
        };
        let content = match template.render_email(
            job.locale.as_ref().map(|l| l.as_str()),
            &job.request.data,
            &job.recipient_view(),
        ) {
            Ok(c) => c,
            Err(e) => return Delivery::from_render(e),
        };
        let mut tags = vec![
            (MESSAGE_ID_TAG.to_owned(), job.message_id.to_string()),
            ("herald_template".to_owned(), job.request.template.to_string()),
        ];
        if let Some(c) = &job.request.campaign {
            tags.push(("herald_campaign".to_owned(), c.to_string()));
        }
        // A key that cannot be read now sends nothing: the job comes back later.
        let headers = match self.unsubscribe_headers(job, Utc::now()).await {
            Ok(headers) => headers,
            Err(e) => return Delivery::Retry(e.to_string()),
        };
        let settings = template.doc.email.as_ref();
        let message = EmailMessage {
            to: to.clone(),
            from: settings.and_then(|e| e.from.clone()).unwrap_or_else(|| self.from.clone()),
            reply_to: settings.and_then(|e| e.reply_to.clone()),
            content,
            headers,
            tags,
        };
        match self.sender.send(&message).await {
            Ok(provider_id) => Delivery::Sent { provider_id, sms_segments: None },
            Err(e) => Delivery::from_error(e),
        }
    }
}

/// `email` is an [`Email`].
pub async fn handler<L, T, O, C, D>(
    deps: &DispatchDeps<L, T, O, C>,
    email: &D,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, herald::lambda::Error>
where
    L: Ledger,
    T: TemplateStore,
    O: Outbox,
    C: CapCounter,
    D: Deliver,
{
    Ok(herald::dispatch::handle(deps, email, event).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald::domain::unsubscribe::verify;
    use herald::ports::PortError;
    use std::sync::Arc;

    /// The key as Secrets Manager would give it, or a read that fails.
    struct Key(Option<Arc<UnsubscribeKey>>);

    impl Secret<UnsubscribeKey> for Key {
        async fn current(&self) -> PortResult<Arc<UnsubscribeKey>> {
            self.0.clone().ok_or_else(|| PortError::Transient("secret arn:key could not be read".into()))
        }
    }

    fn email(key: Key) -> Email<(), Key> {
        Email {
            sender: (),
            from: "x@example.com".into(),
            unsubscribe: Some(UnsubscribeLinks { key, base_url: "https://hooks.example.com/".into() }),
            receipts: true,
        }
    }

    fn job(kind: &str) -> DispatchJob {
        serde_json::from_value(serde_json::json!({
            "message_id": "0123456789abcdef0123456789abcdef",
            "request": {"idempotency_key": "k", "recipient": "user-42", "template": "t", "kind": kind, "topic": "news"},
            "contact": {"email": "ana@example.org"},
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn marketing_email_carries_a_signed_one_click_unsubscribe() {
        let key = UnsubscribeKey::new("0123456789abcdef0123456789abcdef").unwrap();
        let email = email(Key(Some(Arc::new(key.clone()))));
        let now = Utc::now();
        let headers = email.unsubscribe_headers(&job("marketing"), now).await.unwrap();
        assert_eq!(headers[1], ("List-Unsubscribe-Post".to_owned(), "List-Unsubscribe=One-Click".to_owned()));
        let url = headers[0].1.trim_start_matches('<').trim_end_matches('>');
        let token = url.strip_prefix("https://hooks.example.com/unsubscribe?t=").expect("a link to the webhook");
        let grant = verify(token, &key, now).unwrap();
        assert_eq!(
            (grant.recipient.as_str(), grant.channel, grant.topic.as_ref().map(|t| t.as_str())),
            ("user-42", Channel::Email, Some("news"))
        );
        assert!(
            email.unsubscribe_headers(&job("transactional"), now).await.unwrap().is_empty(),
            "transactional mail has no unsubscribe"
        );
    }

    #[tokio::test]
    async fn a_key_that_cannot_be_read_holds_marketing_email_only() {
        let email = email(Key(None));
        let err = email.unsubscribe_headers(&job("marketing"), Utc::now()).await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(email.unsubscribe_headers(&job("transactional"), Utc::now()).await.unwrap().is_empty());
    }
}
