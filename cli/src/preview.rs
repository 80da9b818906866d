//! `herald templates preview`: what a channel's dispatch function would hand its provider
//! for one template, built by the very functions dispatch calls (`herald::domain::email`,
//! `push`, `sms`; the inbox part's renderer), not by a second rendering.
//!
//! What a preview cannot know is stated, never guessed: the recipient's address (SES's
//! destination, SNS's phone number or endpoint) is not part of it, and the links signed
//! per recipient at send time (one-click unsubscribe, the preference center) are
//! [`herald::domain::email::PLACEHOLDER_TOKEN`] on [`herald::domain::email::PLACEHOLDER_BASE`].
//! Everything else matches the send byte for byte for the same template, data, locale,
//! kind, recipient id and idempotency key (tests/previews.rs holds it to that).

use anyhow::{Context as _, bail};
use herald::contract::{Kind, NotifyRequest};
use herald::domain::email::{self, Links, PLACEHOLDER_BASE, PLACEHOLDER_TOKEN};
use herald::domain::jobs::{Contact, DispatchJob};
use herald::domain::sms::{self, Encoding};
use herald::domain::template::{CompiledTemplate, MAX_INBOX_CONTENT_BYTES};
use herald::domain::{Channel, IdempotencyKey, MessageId, Platform, push};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// The idempotency key a preview's message id is made from when none is given.
pub const DEFAULT_KEY: &str = "herald-preview";
/// The recipient id a preview renders for when none is given.
pub const DEFAULT_RECIPIENT: &str = "preview-recipient";
/// The sender shown when neither the template nor `--from` names one (the stack's
/// `SenderAddress` parameter, `HERALD_FROM_ADDRESS` of email dispatch, is used then).
pub const STACK_SENDER: &str = "<the stack's SenderAddress>";

/// What to preview.
#[derive(Debug, Clone)]
pub struct Request {
    pub channel: Channel,
    /// The recipient's locale (the template falls back as dispatch does).
    pub locale: Option<String>,
    /// The notification's data; `None`: the template's `[example]`.
    pub data: Option<Map<String, Value>>,
    pub kind: Kind,
    pub topic: Option<String>,
    pub campaign: Option<String>,
    /// Push: the platforms to show (none: APNs and FCM).
    pub platforms: Vec<Platform>,
    pub recipient: String,
    /// The message id is this key's, as ingest makes it.
    pub idempotency_key: String,
    /// The deployment's sender (`HERALD_FROM_ADDRESS`), used when the template names none.
    pub from: Option<String>,
}

impl Request {
    pub fn new(channel: Channel) -> Self {
        Self {
            channel,
            locale: None,
            data: None,
            kind: Kind::Transactional,
            topic: None,
            campaign: None,
            platforms: Vec::new(),
            recipient: DEFAULT_RECIPIENT.to_owned(),
            idempotency_key: DEFAULT_KEY.to_owned(),
            from: None,
        }
    }
}

/// One push payload, per platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushPreview {
    pub platform: Platform,
    /// The SNS `Message` of the `Publish` (`MessageStructure=json`), exactly.
    pub sns_message: String,
    /// The payload APNs or FCM receives (inside `sns_message`), and its size.
    pub platform_payload: String,
    pub bytes: usize,
}

/// What the provider would be handed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "channel", rename_all = "lowercase")]
pub enum Rendered {
    /// SES v2 `SendEmail` (simple content, UTF-8), but the destination.
    Email {
        from: String,
        reply_to: Option<String>,
        subject: String,
        html: String,
        text: String,
        headers: Vec<(String, String)>,
        tags: Vec<(String, String)>,
    },
    /// SNS `Publish` to a phone number, but the number.
    Sms {
        text: String,
        encoding: String,
        units: usize,
        segments: usize,
        sms_type: String,
    },
    Push {
        messages: Vec<PushPreview>,
    },
    /// The item the inbox stores (the inbox API serves it).
    Inbox {
        title: String,
        body: String,
        action_url: Option<String>,
        data: std::collections::BTreeMap<String, String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preview {
    pub template: String,
    pub version: u32,
    pub message_id: String,
    pub idempotency_key: String,
    pub recipient: String,
    pub kind: Kind,
    #[serde(flatten)]
    pub rendered: Rendered,
    /// What is not the send's own, one line each.
    pub stubbed: Vec<String>,
}

/// The dispatch job dispatch would get for `req` (with no address: no builder reads it).
pub fn job(template: &CompiledTemplate, req: &Request) -> anyhow::Result<DispatchJob> {
    let key = IdempotencyKey::new(&req.idempotency_key).map_err(anyhow::Error::msg)?;
    let data = req.data.clone().unwrap_or_else(|| template.doc.example.clone());
    let mut request = json!({
        "idempotency_key": key.as_str(), "recipient": req.recipient, "template": template.name().as_str(),
        "kind": req.kind, "data": data,
    });
    if let Some(t) = &req.topic {
        request["topic"] = t.clone().into();
    }
    if let Some(c) = &req.campaign {
        request["campaign"] = c.clone().into();
    }
    let request: NotifyRequest = serde_json::from_value(request).context("the preview's request")?;
    let locale = req
        .locale
        .as_ref()
        .map(|l| serde_json::from_value(Value::String(l.clone())))
        .transpose()
        .context("--locale is not a locale tag")?;
    Ok(DispatchJob {
        message_id: MessageId::for_key(&key),
        request,
        contact: Contact::Inbox,
        locale,
        tried: Vec::new(),
        may_fall_back: false,
        slots: Vec::new(),
        variant: None,
        attributes: Map::new(),
        timezone: None,
    })
}

/// Builds the preview of `template` for `req`.
pub fn preview(template: &CompiledTemplate, req: &Request) -> anyhow::Result<Preview> {
    let job = job(template, req)?;
    let mut stubbed = Vec::new();
    let rendered = match req.channel {
        Channel::Email => {
            let (html, text) = email::places_preferences(template, &job);
            let links = Links::placeholders(&job, html || text);
            if links != Links::default() {
                stubbed.push(format!(
                    "the links signed per recipient at send time: {PLACEHOLDER_TOKEN} on {PLACEHOLDER_BASE} \
                     (the stack's webhook function URL)"
                ));
            }
            let from = req.from.clone().unwrap_or_else(|| STACK_SENDER.to_owned());
            let built = email::build(template, &job, links, &from)?;
            if built.from == STACK_SENDER {
                stubbed.push("the sender: the stack's SenderAddress (pass --from)".into());
            }
            stubbed.push("the destination (To): the recipient's address".into());
            stubbed.push("the SES configuration set: the stack's, when its receipts are on".into());
            Rendered::Email {
                from: built.from,
                reply_to: built.reply_to,
                subject: built.content.subject,
                html: built.content.html,
                text: built.content.text,
                headers: built.headers,
                tags: built.tags,
            }
        }
        Channel::Sms => {
            let built = sms::build(template, &job)?;
            stubbed.push("the phone number".into());
            let sms_type = match built.promotional {
                true => "Promotional".to_owned(),
                false => "the stack's SmsType (Transactional by default)".to_owned(),
            };
            Rendered::Sms {
                encoding: match built.segments.encoding {
                    Encoding::Gsm7 => "GSM-7".into(),
                    Encoding::Ucs2 => "UCS-2".into(),
                },
                units: built.segments.units,
                segments: built.segments.count,
                text: built.text,
                sms_type,
            }
        }
        Channel::Push => {
            let content = push::render(template, &job)?;
            let platforms = match req.platforms.is_empty() {
                true => vec![Platform::Apns, Platform::Fcm],
                false => req.platforms.clone(),
            };
            let mut messages = Vec::new();
            for platform in platforms {
                let bytes = match push::check_size(platform, &content, &job.message_id) {
                    Ok(bytes) => bytes,
                    Err(bytes) => bail!(
                        "{bytes} bytes on {}, over {}: dispatch would refuse it (payload_too_large)",
                        platform.as_str(),
                        push::MAX_PAYLOAD_BYTES
                    ),
                };
                messages.push(PushPreview {
                    platform,
                    sns_message: push::sns_message(platform, &content, &job.message_id),
                    platform_payload: push::platform_json(platform, &content, &job.message_id),
                    bytes,
                });
            }
            stubbed.push("the device: SNS publishes this to each of the person's endpoints of that platform".into());
            Rendered::Push { messages }
        }
        Channel::Inbox => {
            let c = template.render_inbox(
                job.locale.as_ref().map(|l| l.as_str()),
                &job.request.data,
                &job.recipient_view(),
            )?;
            let size = c.stored_bytes();
            if size > MAX_INBOX_CONTENT_BYTES {
                bail!(
                    "the inbox message is {size} bytes, over {MAX_INBOX_CONTENT_BYTES}: dispatch would refuse it \
                     (payload_too_large)"
                );
            }
            stubbed.push("the inbox id and time: given when it is stored".into());
            Rendered::Inbox { title: c.title, body: c.body, action_url: c.action_url, data: c.data }
        }
    };
    Ok(Preview {
        template: template.name().to_string(),
        version: template.doc.version,
        message_id: job.message_id.to_string(),
        idempotency_key: req.idempotency_key.clone(),
        recipient: req.recipient.clone(),
        kind: req.kind,
        rendered,
        stubbed,
    })
}

/// The preview for a person to read: each field on its own, the bodies between markers.
pub fn render_text(p: &Preview) -> String {
    let mut out = format!(
        "{} v{} · {} · recipient {} · message id {} (idempotency key {:?})\n",
        p.template,
        p.version,
        p.kind.as_str(),
        p.recipient,
        p.message_id,
        p.idempotency_key
    );
    let block = |out: &mut String, name: &str, body: &str| {
        out.push_str(&format!("----- {name} -----\n{body}"));
        if !body.ends_with('\n') {
            out.push_str(&format!("\n----- end of {name} (no final newline) -----\n"));
        } else {
            out.push_str(&format!("----- end of {name} -----\n"));
        }
    };
    match &p.rendered {
        Rendered::Email { from, reply_to, subject, html, text, headers, tags } => {
            out.push_str("channel: email (SES v2 SendEmail, simple content, UTF-8)\n");
            out.push_str(&format!("From: {from}\n"));
            if let Some(r) = reply_to {
                out.push_str(&format!("Reply-To: {r}\n"));
            }
            out.push_str(&format!("Subject: {subject}\n"));
            for (name, value) in headers {
                out.push_str(&format!("{name}: {value}\n"));
            }
            let tags: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("SES tags: {}\n", tags.join(", ")));
            block(&mut out, "html", html);
            block(&mut out, "text", text);
        }
        Rendered::Sms { text, encoding, units, segments, sms_type } => {
            out.push_str("channel: sms (SNS Publish to a phone number)\n");
            out.push_str(&format!(
                "encoding: {encoding}, {units} {}, {segments} segment(s)\n",
                if encoding == "GSM-7" { "septets" } else { "UTF-16 units" }
            ));
            out.push_str(&format!("SMS type: {sms_type}\n"));
            block(&mut out, "text", text);
        }
        Rendered::Push { messages } => {
            out.push_str("channel: push (SNS Publish to a platform endpoint, MessageStructure=json)\n");
            for m in messages {
                out.push_str(&format!("{}: {} bytes of payload\n", m.platform.as_str(), m.bytes));
                block(&mut out, &format!("{} SNS message", m.platform.as_str()), &m.sns_message);
                let pretty = serde_json::from_str::<Value>(&m.platform_payload)
                    .and_then(|v| serde_json::to_string_pretty(&v))
                    .unwrap_or_else(|_| m.platform_payload.clone());
                block(&mut out, &format!("{} payload (pretty)", m.platform.as_str()), &pretty);
            }
        }
        Rendered::Inbox { title, body, action_url, data } => {
            out.push_str("channel: inbox (stored in the inbox table, served by the inbox API)\n");
            out.push_str(&format!("title: {title}\n"));
            if let Some(u) = action_url {
                out.push_str(&format!("action_url: {u}\n"));
            }
            for (k, v) in data {
                out.push_str(&format!("data.{k}: {v}\n"));
            }
            block(&mut out, "body", body);
        }
    }
    for s in &p.stubbed {
        out.push_str(&format!("not the send's own: {s}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::repo_root;

    fn shipped() -> CompiledTemplate {
        crate::templates::load(&repo_root().join("templates/order_shipped.toml")).unwrap()
    }

    #[test]
    fn sms_shows_its_encoding_and_segments() {
        let mut req = Request::new(Channel::Sms);
        req.locale = Some("fr-FR".into());
        let p = preview(&shipped(), &req).unwrap();
        let Rendered::Sms { text, encoding, segments, .. } = &p.rendered else { panic!("{p:?}") };
        assert!(text.starts_with("Commande 1234-5678 expédiée"), "{text}");
        // é is in GSM-7; the preview counts what dispatch counts.
        assert_eq!((encoding.as_str(), *segments), ("GSM-7", 1));
        assert_eq!(sms::segments(text).count, *segments);
    }

    #[test]
    fn marketing_email_shows_marked_placeholders_for_signed_links() {
        let mut req = Request::new(Channel::Email);
        req.kind = Kind::Marketing;
        req.topic = Some("order_updates".into());
        let p = preview(&shipped(), &req).unwrap();
        let Rendered::Email { headers, html, text, from, .. } = &p.rendered else { panic!("{p:?}") };
        assert_eq!(from, "Example Shop <orders@example.com>", "the template's own sender");
        assert_eq!(headers[0].0, "List-Unsubscribe");
        assert!(headers[0].1.contains(PLACEHOLDER_TOKEN), "{headers:?}");
        assert!(text.contains(PLACEHOLDER_TOKEN) && html.contains(PLACEHOLDER_TOKEN), "a footer with the link");
        assert!(p.stubbed.iter().any(|s| s.contains(PLACEHOLDER_TOKEN)));
        let shown = render_text(&p);
        assert!(shown.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"), "{shown}");
        // Transactional: no link, nothing stubbed but the address and configuration set.
        let p = preview(&shipped(), &Request::new(Channel::Email)).unwrap();
        assert!(!render_text(&p).contains(PLACEHOLDER_TOKEN));
    }

    #[test]
    fn push_shows_both_platforms_and_a_template_without_the_part_is_an_error() {
        let p = preview(&shipped(), &Request::new(Channel::Push)).unwrap();
        let Rendered::Push { messages } = &p.rendered else { panic!("{p:?}") };
        assert_eq!(messages.iter().map(|m| m.platform).collect::<Vec<_>>(), [Platform::Apns, Platform::Fcm]);
        let outer: Value = serde_json::from_str(&messages[1].sns_message).unwrap();
        assert_eq!(outer["GCM"].as_str(), Some(messages[1].platform_payload.as_str()));
        assert!(messages[1].platform_payload.contains(&p.message_id));
        let code = crate::templates::load(&repo_root().join("templates/welcome_nudge.toml")).unwrap();
        assert!(preview(&code, &Request::new(Channel::Sms)).unwrap_err().to_string().contains("no sms part"));
    }
}
