//! Email dispatch: renders the email part of the template and sends it with SES v2,
//! tagged with Herald's message id so SES events find their way back.
//!
//! When the stack serves one-click unsubscribe and the preference center (the webhook
//! function's URL and the unsubscribe key are configured), marketing email carries
//! `List-Unsubscribe` (one HTTPS URI, RFC 8058) and a link to the person's preference
//! center: templates place it with `{{ preferences_url }}`, and a part that does not use
//! it gets a localized footer with it. A transactional email gets the link only when its
//! template uses it, and never a footer.

use chrono::{DateTime, Utc};
use herald::config::{ConfigError, Lookup, optional, required};
use herald::dispatch::{Deliver, Delivery, DispatchConfig, DispatchDeps};
use herald::domain::Channel;
use herald::domain::email;
use herald::domain::jobs::{Contact, DispatchJob};
use herald::domain::ledger::Reason;
use herald::domain::template::CompiledTemplate;
use herald::domain::unsubscribe::UnsubscribeKey;
use herald::lambda::{LambdaEvent, SqsBatchResponse, SqsEvent};
use herald::ports::{CapCounter, EmailMessage, EmailSender, Ledger, Outbox, PortResult, Secret, TemplateStore};

#[cfg(feature = "aws")]
pub mod aws;

#[derive(Debug, Clone)]
pub struct Config {
    /// What every dispatch function reads (herald::dispatch::DispatchConfig).
    pub dispatch: DispatchConfig,
    pub from_address: String,
    pub configuration_set: Option<String>,
    /// Signs the one-click unsubscribe links of marketing email, with the key in the secret
    /// this names (its ARN).
    pub unsubscribe: Option<UnsubscribeLinks<String>>,
}

impl Config {
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            dispatch: DispatchConfig::from_lookup(get, Channel::Email)?,
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

pub use herald::domain::email::{Links, MESSAGE_ID_TAG, UNSUBSCRIBE_LINK_DAYS};

/// How email links to one-click unsubscribe (RFC 8058) and to the preference center.
#[derive(Debug, Clone)]
pub struct UnsubscribeLinks<K> {
    /// The signing key: in [`Config`], the ARN of the secret that holds it; in [`Email`],
    /// where it is read from when first needed (a [`Secret`]).
    pub key: K,
    /// The webhook function's URL, which serves `/unsubscribe` and `/preferences`.
    pub base_url: String,
}

pub struct Email<E, K> {
    pub sender: E,
    pub from: String,
    pub unsubscribe: Option<UnsubscribeLinks<K>>,
    /// SES reports this email's events to Herald's receipts (a configuration set whose
    /// event destination is Herald's SES events topic), which record the SES message id.
    pub receipts: bool,
}

impl<E, K: Secret<UnsubscribeKey>> Email<E, K> {
    /// The links of `job`'s email ([`Links::signed`]), when the stack serves them. The key
    /// is read only when a link is made.
    pub async fn links(&self, job: &DispatchJob, wants_preferences: bool, now: DateTime<Utc>) -> PortResult<Links> {
        let Some(links) = self.unsubscribe.as_ref().filter(|_| email::needs_links(job, wants_preferences)) else {
            return Ok(Links::default());
        };
        let key = links.key.current().await?;
        Ok(Links::signed(job, wants_preferences, &key, &links.base_url, now))
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
        let (html_links, text_links) = email::places_preferences(template, job);
        // A key that cannot be read now sends nothing: the job comes back later.
        let links = match self.links(job, html_links || text_links, Utc::now()).await {
            Ok(links) => links,
            Err(e) => return Delivery::Retry(e.to_string()),
        };
        // The same code builds `herald templates preview`'s email.
        let message = match email::build(template, job, links, &self.from) {
            Ok(built) => EmailMessage::new(to.clone(), built),
            Err(e) => return Delivery::from_render(e),
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
    use chrono::TimeDelta;
    use herald::domain::preferences;
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
    async fn marketing_email_carries_a_signed_one_click_unsubscribe_and_a_preference_link() {
        let key = UnsubscribeKey::new("0123456789abcdef0123456789abcdef").unwrap();
        let email = email(Key(Some(Arc::new(key.clone()))));
        let now = Utc::now();
        let links = email.links(&job("marketing"), false, now).await.unwrap();
        let headers = &links.headers;
        assert_eq!(headers.len(), 2, "one List-Unsubscribe URI and its one-click POST: {headers:?}");
        assert_eq!(headers[1], ("List-Unsubscribe-Post".to_owned(), "List-Unsubscribe=One-Click".to_owned()));
        let url = headers[0].1.trim_start_matches('<').trim_end_matches('>');
        let token = url.strip_prefix("https://hooks.example.com/unsubscribe?t=").expect("a link to the webhook");
        let grant = verify(token, &key, now).unwrap();
        assert_eq!(
            (grant.recipient.as_str(), grant.channel, grant.topic.as_ref().map(|t| t.as_str())),
            ("user-42", Channel::Email, Some("news"))
        );
        let page = links.preferences_url.as_deref().unwrap();
        let token = page.strip_prefix("https://hooks.example.com/preferences?t=").expect("the preference center");
        let page = preferences::verify(token, &key, now).unwrap();
        assert_eq!(page.recipient.as_str(), "user-42");
        assert_eq!(page.expires_at.timestamp(), (now + TimeDelta::days(30)).timestamp());

        let transactional = email.links(&job("transactional"), false, now).await.unwrap();
        assert_eq!(transactional, Links::default(), "transactional mail has no unsubscribe");
        let asked = email.links(&job("transactional"), true, now).await.unwrap();
        assert!(asked.headers.is_empty() && asked.preferences_url.is_some(), "the link when its template uses it");
    }

    #[tokio::test]
    async fn a_key_that_cannot_be_read_holds_marketing_email_only() {
        let email = email(Key(None));
        let err = email.links(&job("marketing"), false, Utc::now()).await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert_eq!(email.links(&job("transactional"), false, Utc::now()).await.unwrap(), Links::default());
    }

    /// Keeps what it is asked to send.
    #[derive(Default)]
    struct Outbox(std::sync::Mutex<Vec<EmailMessage>>);

    impl EmailSender for Outbox {
        async fn send(&self, message: &EmailMessage) -> PortResult<String> {
            self.0.lock().unwrap().push(message.clone());
            Ok("ses-1".into())
        }
    }

    fn template(html: &str, text: &str) -> CompiledTemplate {
        CompiledTemplate::compile(
            serde_json::from_value(serde_json::json!({
                "name": "t", "channels": ["email"], "default_locale": "en",
                "locales": {
                    "en": {"email": {"subject": "Hi", "html": html, "text": text}},
                    "fr": {"email": {"subject": "Salut", "html": "<p>Salut</p>", "text": "Salut"}},
                }
            }))
            .unwrap(),
        )
        .unwrap()
    }

    async fn sent(job: &DispatchJob, template: &CompiledTemplate) -> EmailMessage {
        let key = UnsubscribeKey::new("0123456789abcdef0123456789abcdef").unwrap();
        let email = Email {
            sender: Outbox::default(),
            from: "x@example.com".into(),
            unsubscribe: Some(UnsubscribeLinks { key: Key(Some(Arc::new(key))), base_url: "https://h.example".into() }),
            receipts: true,
        };
        let delivery = email.deliver(job, template).await;
        assert!(matches!(delivery, Delivery::Sent { .. }), "{delivery:?}");
        email.sender.0.lock().unwrap().pop().unwrap()
    }

    #[tokio::test]
    async fn marketing_email_links_the_preference_center_where_the_template_does_not() {
        let plain = template("<html><body><p>Sale</p></body></html>", "Sale");
        let m = sent(&job("marketing"), &plain).await;
        let (html, text) = (&m.content.html, &m.content.text);
        assert!(html.contains("Manage your preferences</a></p></body></html>"), "{html}");
        assert!(html.contains("href=\"https://h.example/preferences?t="), "{html}");
        assert!(
            text.starts_with("Sale\n\n--\n")
                && text.contains("Manage your preferences: https://h.example/preferences?t=")
        );

        // The template places the link itself in its HTML: no footer there, one in the text.
        let placed = template("<a href=\"{{ preferences_url }}\">Your choices</a>", "Sale");
        let m = sent(&job("marketing"), &placed).await;
        assert!(
            m.content.html.starts_with("<a href=\"https:") && !m.content.html.contains("Manage"),
            "{}",
            m.content.html
        );
        assert!(m.content.text.contains("Manage your preferences: https://h.example/preferences?t="));

        // In the language the email is written in.
        let mut french = job("marketing");
        french.locale = Some(serde_json::from_value(serde_json::json!("fr-FR")).unwrap());
        assert!(sent(&french, &plain).await.content.html.contains("Gérer vos préférences"));

        // Transactional: no footer, no List-Unsubscribe; the link only where the template asks for it.
        let m = sent(&job("transactional"), &plain).await;
        assert_eq!(
            (m.content.html.as_str(), m.content.text.as_str()),
            ("<html><body><p>Sale</p></body></html>", "Sale")
        );
        assert!(m.headers.is_empty());
        let m = sent(&job("transactional"), &placed).await;
        // (minijinja escapes `/` in HTML as `&#x2f;`, which a mail client reads back as `/`)
        let html = m.content.html.replace("&#x2f;", "/");
        assert!(html.contains("href=\"https://h.example/preferences?t=") && m.content.text == "Sale", "{html}");
    }
}
