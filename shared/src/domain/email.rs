//! The email a dispatch job becomes: everything SES is handed but the recipient's address
//! (sender, reply-to, subject, HTML and text parts, headers, message tags). Email
//! dispatch and `herald templates preview` both build it here, so a preview is the email
//! that would be sent.
//!
//! The one thing a preview cannot make is a signed link: the one-click unsubscribe
//! (`List-Unsubscribe`) and the preference center's link are signed per recipient with
//! the stack's key at send time. [`Links::placeholders`] stands in for them with URLs
//! that say so ([`PLACEHOLDER_BASE`]); everything around them is built by the same code.

use crate::contract::Kind;
use crate::domain::Channel;
use crate::domain::jobs::DispatchJob;
use crate::domain::preferences::{self, Lang, PreferenceLink};
use crate::domain::template::{CompiledTemplate, EmailContent, PREFERENCES_URL_VAR, TemplateError};
use crate::domain::unsubscribe::{Unsubscribe, UnsubscribeKey, link, sign};
use chrono::{DateTime, TimeDelta, Utc};

/// The SES message tag that carries Herald's message id.
pub use crate::domain::receipts::MESSAGE_ID_TAG;

/// How long an unsubscribe link in a sent email keeps working.
pub const UNSUBSCRIBE_LINK_DAYS: i64 = 90;

/// Where a preview's stand-in links point: not a real host (`.invalid` never resolves),
/// and its path says what the real link carries.
pub const PLACEHOLDER_BASE: &str = "https://herald-webhook-url.invalid";
/// The stand-in for a signed per-recipient token in a preview's links.
pub const PLACEHOLDER_TOKEN: &str = "SIGNED-PER-RECIPIENT-TOKEN";

/// What one email links to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links {
    /// `List-Unsubscribe` and `List-Unsubscribe-Post` (marketing only).
    pub headers: Vec<(String, String)>,
    /// The person's preference center.
    pub preferences_url: Option<String>,
}

/// Whether `job`'s email carries links at all: marketing always does, transactional only
/// when its template places the preference center's link (`wants_preferences`).
pub fn needs_links(job: &DispatchJob, wants_preferences: bool) -> bool {
    job.request.kind == Kind::Marketing || wants_preferences
}

impl Links {
    /// The links of `job`'s email, signed with `key` for the webhook function at
    /// `base_url`. Marketing: a link that revokes this topic on email for this recipient
    /// in one POST (`List-Unsubscribe`, RFC 8058) and the preference center's link.
    /// Transactional: the preference center's link only when the template uses it.
    pub fn signed(
        job: &DispatchJob,
        wants_preferences: bool,
        key: &UnsubscribeKey,
        base_url: &str,
        now: DateTime<Utc>,
    ) -> Self {
        Self::made(job, wants_preferences, |what| match what {
            Made::Preferences => {
                let page = PreferenceLink::new(
                    job.request.recipient.clone(),
                    now,
                    TimeDelta::days(preferences::EMAIL_LINK_DAYS),
                );
                preferences::url(base_url, &preferences::sign(&page, key))
            }
            Made::Unsubscribe => {
                let grant = Unsubscribe {
                    recipient: job.request.recipient.clone(),
                    channel: Channel::Email,
                    topic: job.request.topic.clone(),
                    expires_at: now + TimeDelta::days(UNSUBSCRIBE_LINK_DAYS),
                };
                link(base_url, &sign(&grant, key))
            }
        })
    }

    /// The same links with [`PLACEHOLDER_TOKEN`] for the signed token and
    /// [`PLACEHOLDER_BASE`] for the webhook function's URL (what a preview shows).
    pub fn placeholders(job: &DispatchJob, wants_preferences: bool) -> Self {
        Self::made(job, wants_preferences, |what| match what {
            Made::Preferences => preferences::url(PLACEHOLDER_BASE, PLACEHOLDER_TOKEN),
            Made::Unsubscribe => link(PLACEHOLDER_BASE, PLACEHOLDER_TOKEN),
        })
    }

    fn made(job: &DispatchJob, wants_preferences: bool, url: impl Fn(Made) -> String) -> Self {
        if !needs_links(job, wants_preferences) {
            return Self::default();
        }
        let preferences_url = Some(url(Made::Preferences));
        if job.request.kind != Kind::Marketing {
            return Self { headers: Vec::new(), preferences_url };
        }
        let headers = vec![
            ("List-Unsubscribe".to_owned(), format!("<{}>", url(Made::Unsubscribe))),
            ("List-Unsubscribe-Post".to_owned(), "List-Unsubscribe=One-Click".to_owned()),
        ];
        Self { headers, preferences_url }
    }
}

enum Made {
    Preferences,
    Unsubscribe,
}

/// Everything SES receives for one email but the recipient's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEmail {
    pub from: String,
    pub reply_to: Option<String>,
    pub content: EmailContent,
    pub headers: Vec<(String, String)>,
    /// SES message tags, so events can be correlated back (`herald_message_id`).
    pub tags: Vec<(String, String)>,
}

/// Whether the template's email part for `job` places the preference center's link itself
/// (in its HTML, in its text).
pub fn places_preferences(template: &CompiledTemplate, job: &DispatchJob) -> (bool, bool) {
    template.email_uses(job.locale.as_ref().map(|l| l.as_str()), PREFERENCES_URL_VAR)
}

/// The email of `job`: its part rendered with `links` (the preference center's URL as
/// `preferences_url`; a marketing part that does not place it gets a footer with it, in the
/// language the email is written in), the template's sender settings over
/// `default_from`, and Herald's tags.
pub fn build(
    template: &CompiledTemplate,
    job: &DispatchJob,
    links: Links,
    default_from: &str,
) -> Result<OutgoingEmail, TemplateError> {
    let locale = job.locale.as_ref().map(|l| l.as_str());
    let (html_links, text_links) = places_preferences(template, job);
    let with_url;
    let data = match &links.preferences_url {
        Some(url) => {
            let mut data = job.request.data.clone();
            data.insert(PREFERENCES_URL_VAR.to_owned(), url.clone().into());
            with_url = data;
            &with_url
        }
        None => &job.request.data,
    };
    let mut content = template.render_email(locale, data, &job.recipient_view())?;
    if let Some(url) = links.preferences_url.as_deref().filter(|_| job.request.kind == Kind::Marketing) {
        let lang = template.email_locale(locale).and_then(Lang::from_tag).unwrap_or(Lang::En);
        if !html_links {
            content.html = preferences::with_html_footer(&content.html, url, lang);
        }
        if !text_links {
            content.text = preferences::with_text_footer(&content.text, url, lang);
        }
    }
    let mut tags = vec![
        (MESSAGE_ID_TAG.to_owned(), job.message_id.to_string()),
        ("herald_template".to_owned(), job.request.template.to_string()),
    ];
    if let Some(c) = &job.request.campaign {
        tags.push(("herald_campaign".to_owned(), c.to_string()));
    }
    let settings = template.doc.email.as_ref();
    Ok(OutgoingEmail {
        from: settings.and_then(|e| e.from.clone()).unwrap_or_else(|| default_from.to_owned()),
        reply_to: settings.and_then(|e| e.reply_to.clone()),
        content,
        headers: links.headers,
        tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(kind: &str) -> DispatchJob {
        serde_json::from_value(serde_json::json!({
            "message_id": "0123456789abcdef0123456789abcdef",
            "request": {"idempotency_key": "k", "recipient": "user-42", "template": "t", "kind": kind, "topic": "news"},
            "contact": {"email": "ana@example.org"},
        }))
        .unwrap()
    }

    #[test]
    fn placeholders_have_the_shape_of_the_signed_links() {
        let key = UnsubscribeKey::new("0123456789abcdef0123456789abcdef").unwrap();
        let now = Utc::now();
        for (kind, wants) in [("marketing", false), ("transactional", true), ("transactional", false)] {
            let signed = Links::signed(&job(kind), wants, &key, "https://h.example", now);
            let stand_in = Links::placeholders(&job(kind), wants);
            let names = |l: &Links| l.headers.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
            assert_eq!(names(&signed), names(&stand_in), "{kind}");
            assert_eq!(signed.preferences_url.is_some(), stand_in.preferences_url.is_some(), "{kind}");
            let marked = stand_in.headers.iter().map(|(_, v)| v.as_str()).chain(stand_in.preferences_url.as_deref());
            for value in marked.filter(|v| v.contains("://")) {
                assert!(value.contains(PLACEHOLDER_TOKEN) && value.contains(".invalid/"), "{value}");
            }
        }
        assert_eq!(Links::placeholders(&job("transactional"), false), Links::default());
    }
}
