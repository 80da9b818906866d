//! Pinpoint message templates and application settings, converted.
//!
//! Templates: the JSON `GetEmailTemplate`, `GetSmsTemplate` and `GetPushTemplate` return
//! (with or without their `...Response` wrapper). Templates of the same `TemplateName`
//! become one Herald template with a part per channel, in one locale. Variables:
//! `{{User.UserAttributes.X}}` and `{{Attributes.X}}` become `recipient.attributes.X`
//! (the import puts both in the profile), `{{User.UserId}}` `recipient.id`,
//! `{{Demographic.Timezone}}`/`{{Demographic.Locale}}` `recipient.timezone`/`locale`;
//! anything else becomes a data variable the request must carry (`{{Location.City}}`:
//! `location_city`). `DefaultSubstitutions` become `default(...)` filters or `[defaults]`;
//! a variable without one defaults to the empty string, as Pinpoint renders it.
//! Handlebars helpers and blocks (`{{#if}}`, `{{#each}}`, `{{formatDate ...}}`) do not
//! convert: such a template is refused, naming the helper.
//!
//! Settings: `GetApplicationSettings` (or a campaign's) `QuietTime` and `Limits`, printed as
//! what to set in Herald.

use anyhow::{Context as _, bail};
use herald::domain::Channel;
use herald::domain::TemplateName;
use herald::domain::caps::CapPolicy;
use herald::domain::template::{EmailPart, LocaleParts, PushPart, SmsPart, TemplateDoc};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A converted template, with what did not carry over.
#[derive(Debug, Clone)]
pub struct Converted {
    pub doc: TemplateDoc,
    /// Profile attributes its parts use: `profile.toml` must declare them.
    pub attributes: BTreeSet<String>,
    /// What did not map, one sentence each.
    pub notes: Vec<String>,
}

/// Everything the files held.
#[derive(Debug, Default)]
pub struct Conversion {
    pub templates: Vec<Converted>,
    /// Settings lines to print (`QuietTime`, `Limits`).
    pub settings: Vec<String>,
    /// Files not converted, and why.
    pub refused: Vec<String>,
}

/// What one `{{...}}` of Pinpoint's became.
enum Var {
    /// `recipient.attributes.X` and the like, a whole expression.
    Recipient(String),
    /// A data variable.
    Data(String),
}

fn var_for(path: &str) -> Result<Var, String> {
    if let Some(name) = path.strip_prefix("User.UserAttributes.").or_else(|| path.strip_prefix("Attributes.")) {
        let ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(format!("{{{{{path}}}}}: attribute names of letters, digits and _ only convert"));
        }
        return Ok(Var::Recipient(format!("recipient.attributes.{name}")));
    }
    Ok(match path {
        "User.UserId" => Var::Recipient("recipient.id".to_owned()),
        "Demographic.Timezone" => Var::Recipient("recipient.timezone".to_owned()),
        "Demographic.Locale" => Var::Recipient("recipient.locale".to_owned()),
        _ => {
            let mut name: String =
                path.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
            if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
                name.insert(0, 'v');
            }
            Var::Data(name)
        }
    })
}

/// State shared by one template's parts.
#[derive(Default)]
struct Vars {
    substitutions: Map<String, Value>,
    data: BTreeMap<String, String>,
    attributes: BTreeSet<String>,
    unmapped: BTreeSet<String>,
}

/// Pinpoint's Handlebars text as minijinja: each `{{path}}` and `{{{path}}}` converted,
/// literal `{%` and `{#` kept literal.
fn convert_text(src: &str, html: bool, vars: &mut Vars) -> Result<String, String> {
    let mut out = String::with_capacity(src.len() + 32);
    let mut rest = src;
    let literal = |text: &str, out: &mut String| {
        out.push_str(&text.replace("{%", "{{ \"{%\" }}").replace("{#", "{{ \"{#\" }}"));
    };
    while let Some(open) = rest.find("{{") {
        literal(rest.get(..open).unwrap_or_default(), &mut out);
        let after = rest.get(open..).unwrap_or_default();
        let (raw, inner_start, close_tag) = if after.starts_with("{{{") { (true, 3, "}}}") } else { (false, 2, "}}") };
        let body = after.get(inner_start..).unwrap_or_default();
        let Some(close) = body.find(close_tag) else {
            return Err("a {{ without its }}".to_owned());
        };
        let inner = body.get(..close).unwrap_or_default().trim();
        if inner.starts_with(['#', '/', '^', '>', '!', '*']) || inner.contains(char::is_whitespace) || inner == "else" {
            let helper = inner.split_whitespace().next().unwrap_or(inner);
            return Err(format!(
                "uses the Handlebars helper or block {{{{{helper}...}}}}, which has no automatic conversion: write that part in Herald's template syntax by hand"
            ));
        }
        let default = vars.substitutions.get(inner).and_then(Value::as_str).map(str::to_owned);
        let expr = match var_for(inner)? {
            Var::Recipient(path) => {
                if let Some(name) = path.strip_prefix("recipient.attributes.") {
                    vars.attributes.insert(name.to_owned());
                }
                if path == "recipient.id" {
                    path
                } else {
                    let d = serde_json::to_string(default.as_deref().unwrap_or_default()).unwrap_or_default();
                    format!("{path} | default({d})")
                }
            }
            Var::Data(name) => {
                if !inner.starts_with("User.") && !inner.starts_with("Attributes.") {
                    vars.unmapped.insert(format!("{inner} (now the data variable {name})"));
                }
                vars.data.insert(name.clone(), default.unwrap_or_default());
                name
            }
        };
        out.push_str("{{ ");
        out.push_str(&expr);
        if raw && html {
            out.push_str(" | safe");
        }
        out.push_str(" }}");
        rest = body.get(close + close_tag.len()..).unwrap_or_default();
    }
    literal(rest, &mut out);
    Ok(out)
}

/// A rough plain-text part from HTML, for a template that has none.
fn text_of(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n")
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The parts of one Pinpoint template file, by channel.
struct Source {
    name: String,
    substitutions: Map<String, Value>,
    email: Option<(String, String, Option<String>)>,
    sms: Option<String>,
    /// title, body, url
    push: Option<(Option<String>, String, Option<String>)>,
    notes: Vec<String>,
}

fn source(v: &Value) -> Result<Option<Source>, String> {
    let (kind, body) = if let Some(b) = v.get("EmailTemplateResponse") {
        ("EMAIL", b)
    } else if let Some(b) = v.get("SMSTemplateResponse") {
        ("SMS", b)
    } else if let Some(b) = v.get("PushNotificationTemplateResponse") {
        ("PUSH", b)
    } else {
        (s(v, "TemplateType").unwrap_or_default(), v)
    };
    if !matches!(kind, "EMAIL" | "SMS" | "PUSH") {
        return Ok(None);
    }
    let name = s(body, "TemplateName").ok_or("no TemplateName")?.to_owned();
    let substitutions = match s(body, "DefaultSubstitutions") {
        Some(raw) => match serde_json::from_str::<Value>(raw) {
            Ok(Value::Object(m)) => m,
            _ => return Err("DefaultSubstitutions is not a JSON object".to_owned()),
        },
        None => Map::new(),
    };
    let mut src = Source { name, substitutions, email: None, sms: None, push: None, notes: Vec::new() };
    match kind {
        "EMAIL" => {
            let subject = s(body, "Subject").ok_or("the email template has no Subject")?.to_owned();
            let (html, text) = match (s(body, "HtmlPart"), s(body, "TextPart")) {
                (Some(h), t) => (h.to_owned(), t.map(str::to_owned)),
                (None, Some(t)) => (
                    format!("<p>{}</p>", t.replace('&', "&amp;").replace('<', "&lt;").replace('\n', "<br>\n")),
                    Some(t.to_owned()),
                ),
                (None, None) => return Err("the email template has neither HtmlPart nor TextPart".to_owned()),
            };
            if text.is_none() {
                src.notes.push("email: no TextPart; the text part was made from the HTML: read it over".to_owned());
            }
            if s(body, "RecommenderId").is_some() {
                src.notes.push("email: RecommenderId (Amazon Personalize attributes) does not map".to_owned());
            }
            src.email = Some((subject, html, text));
        }
        "SMS" => {
            src.sms = Some(s(body, "Body").ok_or("the SMS template has no Body")?.to_owned());
            if s(body, "RecommenderId").is_some() {
                src.notes.push("sms: RecommenderId does not map".to_owned());
            }
        }
        _ => {
            let default =
                ["Default", "GCM", "APNS"].iter().find_map(|k| body.get(*k).filter(|m| s(m, "Body").is_some()));
            let Some(m) = default else { return Err("the push template has no Default, GCM or APNS Body".to_owned()) };
            let url = match s(m, "Action") {
                Some("URL" | "DEEP_LINK") | None => s(m, "Url").map(str::to_owned),
                Some(_) => None,
            };
            src.push = Some((s(m, "Title").map(str::to_owned), s(m, "Body").unwrap_or_default().to_owned(), url));
            for platform in ["APNS", "GCM", "ADM", "Baidu"] {
                if body.get(platform).is_some_and(|p| p.as_object().is_some_and(|o| !o.is_empty())) {
                    src.notes.push(format!(
                        "push: the {platform}-specific content does not map (one push part serves APNs and FCM; \
                         the Default content was used where there was one)"
                    ));
                }
            }
            for key in ["Sound", "MediaUrl", "ImageUrl", "ImageIconUrl", "SmallImageIconUrl", "RawContent"] {
                if ["Default", "GCM", "APNS"].iter().any(|p| body.get(*p).is_some_and(|m| s(m, key).is_some())) {
                    src.notes.push(format!("push: {key} does not map"));
                }
            }
            if s(m, "Action").is_some_and(|a| a == "OPEN_APP") {
                src.notes.push("push: Action OPEN_APP is what a push without deep_link does".to_owned());
            }
        }
    }
    Ok(Some(src))
}

/// Settings lines for `QuietTime` and `Limits`.
fn settings(v: &Value) -> Option<Vec<String>> {
    let body = v.get("ApplicationSettingsResource").unwrap_or(v);
    let (quiet, limits) = (body.get("QuietTime"), body.get("Limits"));
    if quiet.is_none() && limits.is_none() {
        return None;
    }
    let mut out = Vec::new();
    if let Some(q) = quiet {
        match (s(q, "Start"), s(q, "End")) {
            (Some(start), Some(end)) => out.push(format!(
                "QuietTime {start}-{end}: Herald keeps quiet hours per person, in the person's time zone (as \
                 Pinpoint applied QuietTime in each endpoint's Demographic.Timezone); there is no stack-wide \
                 value. Set them on everyone imported:\n  herald import recipients FILE --queue URL --quiet-hours \
                 {start}-{end}\n  (producers: \"quiet_hours\": {{\"start\": \"{start}\", \"end\": \"{end}\"}} in \
                 upsert_recipient)"
            )),
            _ => out.push("QuietTime: no Start and End, nothing to set".to_owned()),
        }
    }
    if let Some(l) = limits {
        let n = |key: &str| l.get(key).and_then(Value::as_u64).filter(|n| *n > 0);
        let mut marketing = Vec::new();
        if let Some(daily) = n("Daily") {
            marketing.push(json!({"scope": "each_channel", "window": "24h", "max": daily}));
            out.push(format!("Limits.Daily {daily}: each_channel, 24h, max {daily} (per person and channel)"));
        }
        if let Some(total) = n("Total") {
            marketing.push(json!({"scope": "campaign", "window": "366d", "max": total}));
            out.push(format!(
                "Limits.Total {total}: campaign, 366d, max {total} (Herald counts a campaign per person across \
                 channels, and over at most 366 days)"
            ));
        }
        let policy = json!({"marketing": marketing}).to_string();
        if CapPolicy::from_json(&policy).is_ok() {
            out.push(format!(
                "CapPolicy (SAM parameter CapPolicy, CDK prop capPolicy), replacing Herald's default (which also \
                 caps 1 an hour and 3 a day per channel, 5 a day across channels, and 1 per campaign a day):\n  \
                 CapPolicy='{policy}'"
            ));
        }
        if let Some(mps) = n("MessagesPerSecond") {
            out.push(format!(
                "Limits.MessagesPerSecond {mps}: not a cap in Herald; a broadcast's rate is `herald broadcast send \
                 --rate {mps}`"
            ));
        }
        if n("MaximumDuration").is_some() {
            out.push("Limits.MaximumDuration: does not map (give each request an expires_at instead)".to_owned());
        }
        if n("Session").is_some() {
            out.push("Limits.Session: does not map (Herald has no in-app sessions)".to_owned());
        }
    }
    Some(out)
}

/// Converts the files: templates, and settings. `locale` is the one the parts go under.
pub fn convert(files: &[PathBuf], locale: &str) -> anyhow::Result<Conversion> {
    let mut conversion = Conversion::default();
    let mut by_name: BTreeMap<String, Vec<Source>> = BTreeMap::new();
    for path in files {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let v: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
        match source(&v) {
            Ok(Some(src)) => by_name.entry(src.name.clone()).or_default().push(src),
            Ok(None) => match settings(&v) {
                Some(lines) => conversion.settings.extend(lines),
                None => conversion.refused.push(format!(
                    "{}: not a Pinpoint email, SMS or push template, nor application settings",
                    path.display()
                )),
            },
            Err(why) => conversion.refused.push(format!("{}: {why}", path.display())),
        }
    }
    for (name, sources) in by_name {
        match template(&name, sources, locale) {
            Ok(t) => conversion.templates.push(t),
            Err(why) => conversion.refused.push(format!("template {name}: {why}")),
        }
    }
    Ok(conversion)
}

fn template(name: &str, sources: Vec<Source>, locale: &str) -> Result<Converted, String> {
    let herald_name: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') { c } else { '_' }).collect();
    let herald_name = TemplateName::new(herald_name.chars().take(64).collect::<String>()).map_err(|e| e.to_string())?;
    let mut vars = Vars::default();
    let mut notes = Vec::new();
    let mut parts = LocaleParts::default();
    for src in sources {
        // One template's parts share the substitutions (each Pinpoint type carries its own).
        vars.substitutions.extend(src.substitutions);
        notes.extend(src.notes);
        if let Some((subject, html, text)) = src.email {
            let text = match text {
                Some(t) => convert_text(&t, false, &mut vars)?,
                None => text_of(&convert_text(&html, false, &mut vars)?),
            };
            parts.email = Some(EmailPart {
                subject: convert_text(&subject, false, &mut vars)?,
                html: convert_text(&html, true, &mut vars)?,
                text,
            });
        }
        if let Some(body) = src.sms {
            parts.sms = Some(SmsPart { text: convert_text(&body, false, &mut vars)? });
        }
        if let Some((title, body, url)) = src.push {
            if title.is_none() {
                notes.push("push: no Title; the template's name is the title: change it".to_owned());
            }
            parts.push = Some(PushPart {
                title: convert_text(title.as_deref().unwrap_or(name), false, &mut vars)?,
                body: convert_text(&body, false, &mut vars)?,
                deep_link: url.map(|u| convert_text(&u, false, &mut vars)).transpose()?,
            });
        }
    }
    for v in &vars.unmapped {
        notes.push(format!("variable {v}: the request's data must carry it"));
    }
    let channels: Vec<Channel> = [
        (Channel::Push, parts.push.is_some()),
        (Channel::Email, parts.email.is_some()),
        (Channel::Sms, parts.sms.is_some()),
    ]
    .into_iter()
    .filter_map(|(c, has)| has.then_some(c))
    .collect();
    let defaults: Map<String, Value> = vars.data.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    let example: Map<String, Value> = vars
        .data
        .iter()
        .map(|(k, v)| (k.clone(), json!(if v.is_empty() { format!("example {k}") } else { v.clone() })))
        .collect();
    let doc = TemplateDoc {
        name: herald_name,
        version: 1,
        channels,
        default_locale: locale.to_owned(),
        variables: vars.data.keys().cloned().collect(),
        defaults,
        example,
        email: None,
        digest: None,
        locales: BTreeMap::from([(locale.to_owned(), parts)]),
    };
    Ok(Converted { doc, attributes: vars.attributes, notes })
}

/// Writes each template to `out/<name>.toml`, its notes as comments on top.
pub fn write(conversion: &Conversion, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut written = Vec::new();
    for t in &conversion.templates {
        let path = out.join(format!("{}.toml", t.doc.name));
        if path.exists() {
            bail!("{} exists already: choose another --out, or move it", path.display());
        }
        let mut text =
            format!("# Converted from the Pinpoint template {} by `herald import pinpoint-templates`.\n", t.doc.name);
        for n in &t.notes {
            text.push_str(&format!("# Not converted: {n}\n"));
        }
        if !t.attributes.is_empty() {
            text.push_str("# Uses the profile attributes ");
            text.push_str(&t.attributes.iter().cloned().collect::<Vec<_>>().join(", "));
            text.push_str(": declare them in profile.toml.\n");
        }
        text.push_str(&toml::to_string(&t.doc).context("writing the template as TOML")?);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(subs: Value) -> Vars {
        Vars { substitutions: subs.as_object().cloned().unwrap_or_default(), ..Vars::default() }
    }

    #[test]
    fn variables_convert_with_their_defaults() {
        let mut v = vars(json!({"User.UserAttributes.FirstName": "there", "Location.City": "your city"}));
        let out = convert_text(
            "Hi {{User.UserAttributes.FirstName}} ({{User.UserId}}) in {{ Location.City }}: {{{Attributes.Link}}} {% raw",
            true,
            &mut v,
        )
        .unwrap();
        let expected = "Hi {{ recipient.attributes.FirstName | default(\"there\") }} ({{ recipient.id }}) in \
                        {{ location_city }}: {{ recipient.attributes.Link | default(\"\") | safe }} {{ \"{%\" }} raw";
        assert_eq!(out, expected);
        assert_eq!(v.data.get("location_city").map(String::as_str), Some("your city"));
        assert_eq!(v.attributes.iter().collect::<Vec<_>>(), vec!["FirstName", "Link"]);
    }

    #[test]
    fn helpers_are_refused_by_name() {
        let err = convert_text("{{#if User.UserAttributes.Vip}}VIP{{/if}}", false, &mut Vars::default()).unwrap_err();
        assert!(err.contains("{{#if"), "{err}");
        let err = convert_text("{{formatDate Attributes.When}}", false, &mut Vars::default()).unwrap_err();
        assert!(err.contains("formatDate"), "{err}");
    }

    #[test]
    fn settings_print_quiet_hours_and_a_cap_policy_herald_accepts() {
        let lines = settings(&json!({"ApplicationSettingsResource": {
            "QuietTime": {"Start": "22:00", "End": "07:00"},
            "Limits": {"Daily": 3, "Total": 10, "MessagesPerSecond": 50, "MaximumDuration": 3600}}}))
        .unwrap();
        let all = lines.join("\n");
        assert!(all.contains("--quiet-hours 22:00-07:00"), "{all}");
        let policy = all.split("CapPolicy='").nth(1).and_then(|r| r.split('\'').next()).unwrap();
        let parsed = CapPolicy::from_json(policy).unwrap();
        assert_eq!(parsed.marketing.len(), 2);
        assert_eq!(parsed.marketing[0].max, 3);
        assert!(all.contains("--rate 50") && all.contains("MaximumDuration: does not map"), "{all}");
    }
}
