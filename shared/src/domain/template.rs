//! Templates: one document per notification type, with a part per channel and
//! per locale, rendered by minijinja (sandboxed, strict about unknown variables,
//! HTML-escaping in email HTML).
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
    pub locales: BTreeMap<String, LocaleParts>,
}

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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template {template} has no {channel} part for locale {locale}")]
    MissingPart { template: String, channel: Channel, locale: String },
    #[error("template {template} does not compile: {detail}")]
    Syntax { template: String, detail: String },
    #[error("template {template} failed to render: {detail}")]
    Render { template: String, detail: String },
}

/// A template compiled once and rendered many times (kept in the function's cache).
#[derive(Debug)]
pub struct CompiledTemplate {
    pub doc: TemplateDoc,
    env: Environment<'static>,
}

fn part_name(locale: &str, channel: Channel, part: &str) -> String {
    // The `.html` suffix turns on minijinja's HTML auto-escaping for that part only.
    let ext = if part == "html" { "html" } else { "txt" };
    format!("{locale}/{channel}/{part}.{ext}")
}

impl LocaleParts {
    fn sources(&self) -> Vec<(Channel, &'static str, &str)> {
        let mut out = Vec::new();
        if let Some(p) = &self.push {
            out.push((Channel::Push, "title", p.title.as_str()));
            out.push((Channel::Push, "body", p.body.as_str()));
            if let Some(link) = &p.deep_link {
                out.push((Channel::Push, "deep_link", link.as_str()));
            }
        }
        if let Some(e) = &self.email {
            out.push((Channel::Email, "subject", e.subject.as_str()));
            out.push((Channel::Email, "html", e.html.as_str()));
            out.push((Channel::Email, "text", e.text.as_str()));
        }
        if let Some(s) = &self.sms {
            out.push((Channel::Sms, "text", s.text.as_str()));
        }
        out
    }

    fn has(&self, channel: Channel) -> bool {
        match channel {
            Channel::Push => self.push.is_some(),
            Channel::Email => self.email.is_some(),
            Channel::Sms => self.sms.is_some(),
        }
    }
}

impl CompiledTemplate {
    pub fn compile(doc: TemplateDoc) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        for (locale, parts) in &doc.locales {
            for (channel, part, source) in parts.sources() {
                env.add_template_owned(part_name(locale, channel, part), source.to_owned())
                    .map_err(|e| TemplateError::Syntax { template: doc.name.to_string(), detail: e.to_string() })?;
            }
        }
        Ok(Self { doc, env })
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

    fn context(&self, data: &Map<String, Value>) -> minijinja::Value {
        let mut merged = self.doc.defaults.clone();
        merged.extend(data.iter().map(|(k, v)| (k.clone(), v.clone())));
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

    pub fn render_push(&self, locale: Option<&str>, data: &Map<String, Value>) -> Result<PushContent, TemplateError> {
        let (locale, parts) = self.parts_for(Channel::Push, locale)?;
        let ctx = self.context(data);
        let has_link = parts.push.as_ref().is_some_and(|p| p.deep_link.is_some());
        Ok(PushContent {
            title: self.render_part(locale, Channel::Push, "title", &ctx)?,
            body: self.render_part(locale, Channel::Push, "body", &ctx)?,
            deep_link: has_link.then(|| self.render_part(locale, Channel::Push, "deep_link", &ctx)).transpose()?,
        })
    }

    pub fn render_email(&self, locale: Option<&str>, data: &Map<String, Value>) -> Result<EmailContent, TemplateError> {
        let (locale, _) = self.parts_for(Channel::Email, locale)?;
        let ctx = self.context(data);
        Ok(EmailContent {
            subject: self.render_part(locale, Channel::Email, "subject", &ctx)?,
            html: self.render_part(locale, Channel::Email, "html", &ctx)?,
            text: self.render_part(locale, Channel::Email, "text", &ctx)?,
        })
    }

    pub fn render_sms(&self, locale: Option<&str>, data: &Map<String, Value>) -> Result<SmsContent, TemplateError> {
        let (locale, _) = self.parts_for(Channel::Sms, locale)?;
        let ctx = self.context(data);
        Ok(SmsContent { text: self.render_part(locale, Channel::Sms, "text", &ctx)? })
    }

    /// Problems of size with realistic data (`example`, then `defaults`, then a
    /// ten-character stand-in): push payloads over the platform limit on APNs or
    /// FCM, SMS over the segment budget.
    pub fn check_limits(&self, limits: &Limits) -> Vec<String> {
        let mut data = self.doc.example.clone();
        for v in &self.doc.variables {
            if !data.contains_key(v) && !self.doc.defaults.contains_key(v) {
                data.insert(v.clone(), Value::String("X".repeat(10)));
            }
        }
        let mut problems = Vec::new();
        let id = crate::domain::MessageId::parse("0123456789abcdef0123456789abcdef");
        for locale in self.doc.locales.keys() {
            if self.doc.locales.get(locale).is_some_and(|p| p.push.is_some()) {
                match self.render_push(Some(locale), &data) {
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
                match self.render_sms(Some(locale), &data) {
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
    /// locale, a default locale with no parts.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let declared: BTreeSet<&str> = self.doc.variables.iter().map(String::as_str).collect();
        let Some(default_parts) = self.doc.locales.get(&self.doc.default_locale) else {
            return vec![format!("default locale {} has no parts", self.doc.default_locale)];
        };
        for channel in &self.doc.channels {
            if !default_parts.has(*channel) {
                problems
                    .push(format!("channel {channel} is in the order but has no part in {}", self.doc.default_locale));
            }
        }
        for (locale, parts) in &self.doc.locales {
            for (channel, part, _) in parts.sources() {
                let name = part_name(locale, channel, part);
                let Ok(tmpl) = self.env.get_template(&name) else { continue };
                let mut unknown: Vec<String> =
                    tmpl.undeclared_variables(false).into_iter().filter(|v| !declared.contains(v.as_str())).collect();
                unknown.sort();
                if !unknown.is_empty() {
                    problems.push(format!("{name} uses undeclared variables: {}", unknown.join(", ")));
                }
            }
        }
        problems
    }
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

    #[test]
    fn renders_with_defaults_and_escapes_html_only() {
        let t = CompiledTemplate::compile(doc()).unwrap();
        let d = data(serde_json::json!({"order_id": "<1234>"}));
        let push = t.render_push(None, &d).unwrap();
        assert_eq!(push.body, "Order <1234> arrives soon.");
        let email = t.render_email(Some("en-GB"), &d).unwrap();
        assert_eq!(email.html, "<p>Order &lt;1234&gt;</p>");
        assert_eq!(email.text, "Order <1234>");
        let d = data(serde_json::json!({"order_id": "1", "eta": "mardi"}));
        assert_eq!(t.render_sms(Some("fr-FR"), &d).unwrap().text, "Commande 1 : livraison mardi.");
    }

    #[test]
    fn missing_data_and_parts_are_errors() {
        let t = CompiledTemplate::compile(doc()).unwrap();
        let err = t.render_sms(None, &Map::new()).unwrap_err();
        assert!(matches!(err, TemplateError::Render { .. }), "{err}");
        // French has no push part: the default locale's is used.
        assert_eq!(t.render_push(Some("fr"), &data(serde_json::json!({"order_id": "1"}))).unwrap().title, "Shipped");
        let mut no_sms = doc();
        no_sms.locales.values_mut().for_each(|p| p.sms = None);
        let t = CompiledTemplate::compile(no_sms).unwrap();
        assert!(matches!(t.render_sms(None, &Map::new()), Err(TemplateError::MissingPart { .. })));
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
}
