//! The preference center: signed links to a person's page, the CSRF token of its form,
//! the languages it speaks, what a submitted form asks for, and which consents change.
//!
//! A link token is signed with the unsubscribe key ([`UnsubscribeKey`]) in the same form
//! as an unsubscribe token, `base64url(payload) "." base64url(HMAC-SHA256(key, payload))`,
//! with its own payload: `p1|<recipient>|<expiry, unix seconds>`. An unsubscribe payload
//! starts `1|` and has five fields, so neither kind of token reads as the other. The
//! form's CSRF token is `base64url(HMAC-SHA256(key, "pcsrf1|" + link token))`: bound to
//! the link, valid as long as it is, and never a token itself.
//!
//! The page records marketing consent per topic and channel. Only what differs from the
//! person's current consent is recorded, with source [`SOURCE`], through the same store
//! path as ingest's `set_consent`. "Stop all marketing" revokes each topic and channel the
//! page offers, one by one: never a channel-wide record, which would also stop
//! transactional messages on that channel.

use crate::contract::{ConsentSource, SetConsent};
use crate::domain::recipient::Recipient;
use crate::domain::topics::Topics;
use crate::domain::unsubscribe::{TokenError, UnsubscribeKey, open, seal};
use crate::domain::{Channel, RecipientId, Topic};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use hmac::Mac;
use std::collections::BTreeSet;

const VERSION: &str = "p1";
const CSRF_CONTEXT: &str = "pcsrf1|";

/// The consent source the page records.
pub const SOURCE: &str = "preference-center";

/// How long the link in a marketing email keeps working.
pub const EMAIL_LINK_DAYS: i64 = 30;

/// The path the webhook function serves the page on.
pub const PATH: &str = "/preferences";

/// What a link allows: seeing and changing one person's preferences, until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreferenceLink {
    pub recipient: RecipientId,
    pub expires_at: DateTime<Utc>,
}

impl PreferenceLink {
    /// A link for `recipient` that works for `ttl` from `now`.
    pub fn new(recipient: RecipientId, now: DateTime<Utc>, ttl: TimeDelta) -> Self {
        Self { recipient, expires_at: now + ttl }
    }
}

fn payload(link: &PreferenceLink) -> String {
    format!("{VERSION}|{}|{}", link.recipient, link.expires_at.timestamp())
}

/// The token for `link`, safe in a URL query as it is.
pub fn sign(link: &PreferenceLink, key: &UnsubscribeKey) -> String {
    seal(&payload(link), key)
}

/// Checks the signature first (in constant time), then reads the fields, then the expiry.
/// The errors are the unsubscribe token's: malformed, not signed by Herald, expired.
pub fn verify(token: &str, key: &UnsubscribeKey, now: DateTime<Utc>) -> Result<PreferenceLink, TokenError> {
    let text = open(token, key)?;
    let mut fields = text.split('|');
    let (Some(VERSION), Some(recipient), Some(expiry), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(TokenError::Malformed);
    };
    let link = PreferenceLink {
        recipient: RecipientId::new(recipient).map_err(|_| TokenError::Malformed)?,
        expires_at: expiry
            .parse::<i64>()
            .ok()
            .and_then(|s| DateTime::from_timestamp(s, 0))
            .ok_or(TokenError::Malformed)?,
    };
    if link.expires_at <= now {
        return Err(TokenError::Expired);
    }
    Ok(link)
}

/// The page's URL: `<base>/preferences?t=<token>` (`base` is the webhook function's URL).
pub fn url(base_url: &str, token: &str) -> String {
    format!("{}{PATH}?t={token}", base_url.trim_end_matches('/'))
}

/// The CSRF token of the form served for the link `token`.
pub fn csrf(token: &str, key: &UnsubscribeKey) -> String {
    URL_SAFE_NO_PAD.encode(key.mac(format!("{CSRF_CONTEXT}{token}").as_bytes()).finalize().into_bytes())
}

/// Whether `csrf` is the CSRF token of the link `token` (compared in constant time).
pub fn csrf_matches(token: &str, csrf: &str, key: &UnsubscribeKey) -> bool {
    let Ok(tag) = URL_SAFE_NO_PAD.decode(csrf) else { return false };
    key.mac(format!("{CSRF_CONTEXT}{token}").as_bytes()).verify_slice(&tag).is_ok()
}

// ---------------------------------------------------------------- languages

/// The languages the page (and the email footer) speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lang {
    En,
    Fr,
    De,
    Es,
}

impl Lang {
    pub const ALL: [Lang; 4] = [Lang::En, Lang::Fr, Lang::De, Lang::Es];

    pub fn as_str(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fr => "fr",
            Lang::De => "de",
            Lang::Es => "es",
        }
    }

    /// Exactly `en`, `fr`, `de` or `es`.
    pub fn parse(raw: &str) -> Option<Lang> {
        Lang::ALL.into_iter().find(|l| l.as_str() == raw)
    }

    /// The language of a tag such as `fr-FR` or `de_AT`, if the page speaks it.
    pub fn from_tag(tag: &str) -> Option<Lang> {
        let language = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        Lang::parse(&language)
    }

    /// The first language of an `Accept-Language` header (by its weights) the page speaks.
    pub fn from_accept_language(header: &str) -> Option<Lang> {
        let mut wanted: Vec<(u32, usize, Lang)> = header
            .split(',')
            .enumerate()
            .filter_map(|(n, part)| {
                let mut params = part.split(';');
                let lang = Lang::from_tag(params.next()?)?;
                let q =
                    params.find_map(|p| p.trim().strip_prefix("q=").map(str::to_owned)).map_or(Some(1000), |q| {
                        q.trim().parse::<f32>().ok().map(|q| (q.clamp(0.0, 1.0) * 1000.0) as u32)
                    })?;
                (q > 0).then_some((q, n, lang))
            })
            .collect();
        wanted.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        wanted.first().map(|(_, _, lang)| *lang)
    }

    /// The person's own locale if the page speaks its language, else what the browser
    /// asks for, else English.
    pub fn choose(locale: Option<&str>, accept_language: Option<&str>) -> Lang {
        locale
            .and_then(Lang::from_tag)
            .or_else(|| accept_language.and_then(Lang::from_accept_language))
            .unwrap_or(Lang::En)
    }
}

// ---------------------------------------------------------------- the form

/// Why a submitted form was refused. The texts quote a field only when it is a plain
/// name (letters, digits, `.`, `_`, `-`; at most 100 characters): never what else was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("the form has no {0} field")]
    Missing(&'static str),
    #[error("the form has more than one {0} field")]
    Repeated(&'static str),
    #[error("the field {0} is not part of this form")]
    UnknownField(String),
    #[error("the field {0} must be \"on\" when checked")]
    BadValue(String),
    #[error("there is no topic {0}")]
    UnknownTopic(String),
    #[error("there is no channel {0}")]
    UnknownChannel(String),
    #[error("topic {topic} is not sent on {channel}")]
    NotOffered { topic: String, channel: Channel },
}

/// A field name as an error may quote it.
fn quoted(raw: &str) -> String {
    let plain = !raw.is_empty()
        && raw.chars().count() <= 100
        && raw.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if plain { raw.to_owned() } else { "(a name that is not plain text)".to_owned() }
}

/// The name of the checkbox for `topic` on `channel`: `consent.<topic>.<channel>`.
pub fn field_name(topic: &Topic, channel: Channel) -> String {
    format!("consent.{topic}.{channel}")
}

/// A submitted form as sent, before its fields are checked against the topics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Submitted {
    /// The link token (the hidden field `t`).
    pub token: String,
    pub csrf: String,
    pub stop_all: bool,
    /// The `consent.<topic>.<channel>` names checked, as sent.
    pub checked: BTreeSet<String>,
}

impl Submitted {
    /// Reads an `application/x-www-form-urlencoded` body: `t`, `csrf`, `stop_all=on` and
    /// `consent.<topic>.<channel>=on`; any other field is refused. `t` may come from the
    /// query instead (`query_token`).
    pub fn parse(body: &[u8], query_token: Option<&str>) -> Result<Self, FormError> {
        let mut token: Option<String> = None;
        let mut csrf: Option<String> = None;
        let mut form = Submitted::default();
        for (name, value) in form_pairs(body) {
            match name.as_str() {
                "t" => once(&mut token, value, "t")?,
                "csrf" => once(&mut csrf, value, "csrf")?,
                n if n == "stop_all" || n.starts_with("consent.") => {
                    if value != "on" {
                        return Err(FormError::BadValue(quoted(&name)));
                    }
                    if name == "stop_all" {
                        form.stop_all = true;
                    } else {
                        form.checked.insert(name);
                    }
                }
                _ => return Err(FormError::UnknownField(quoted(&name))),
            }
        }
        form.token = match (token, query_token) {
            (Some(t), Some(q)) if t != q => return Err(FormError::Repeated("t")),
            (Some(t), _) => t,
            (None, Some(q)) => q.to_owned(),
            (None, None) => return Err(FormError::Missing("t")),
        };
        form.csrf = csrf.ok_or(FormError::Missing("csrf"))?;
        Ok(form)
    }

    /// The (topic, channel) pairs checked, each one the page offers.
    pub fn choices(&self, topics: &Topics) -> Result<BTreeSet<(Topic, Channel)>, FormError> {
        let mut chosen = BTreeSet::new();
        for name in &self.checked {
            let rest = name.strip_prefix("consent.").unwrap_or(name);
            let (topic, channel) = rest.rsplit_once('.').ok_or_else(|| FormError::UnknownField(quoted(name)))?;
            let def = topics.get(topic).ok_or_else(|| FormError::UnknownTopic(quoted(topic)))?;
            let channel: Channel = channel.parse().map_err(|_| FormError::UnknownChannel(quoted(channel)))?;
            if !def.offers(channel) {
                return Err(FormError::NotOffered { topic: def.id.to_string(), channel });
            }
            chosen.insert((def.id.clone(), channel));
        }
        Ok(chosen)
    }
}

/// The pairs of a form body.
fn form_pairs(body: &[u8]) -> impl Iterator<Item = (String, String)> + '_ {
    form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned()))
}

fn once(slot: &mut Option<String>, value: String, name: &'static str) -> Result<(), FormError> {
    match slot {
        Some(existing) if *existing != value => Err(FormError::Repeated(name)),
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

// ---------------------------------------------------------------- changes

/// Whether the person gets marketing on `topic` by `channel` now (what the page shows
/// checked): their consent for that topic, else for the whole channel, is a grant.
pub fn granted(recipient: &Recipient, topic: &Topic, channel: Channel) -> bool {
    recipient.consent(channel, Some(topic)).is_some_and(|c| c.granted)
}

/// One consent to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub topic: Topic,
    pub channel: Channel,
    pub granted: bool,
}

impl Change {
    /// The `set_consent` command that records it (at the time the store receives it),
    /// with `source` ([`SOURCE`] as a [`ConsentSource`]).
    pub fn command(&self, recipient: &RecipientId, source: &ConsentSource) -> SetConsent {
        SetConsent {
            recipient: recipient.clone(),
            channel: self.channel,
            topic: Some(self.topic.clone()),
            granted: self.granted,
            source: source.clone(),
            at: None,
        }
    }
}

/// What to record so that the person's consents are what the form asks for: for each
/// topic and channel the page offers, a grant if it is checked (and "stop all" is not),
/// else a revocation; only where that differs from [`granted`] now. Topics and channels
/// the page does not offer, and channel-wide consents, are never touched.
pub fn changes(
    recipient: &Recipient,
    topics: &Topics,
    chosen: &BTreeSet<(Topic, Channel)>,
    stop_all: bool,
) -> Vec<Change> {
    topics
        .choices()
        .filter_map(|(topic, channel)| {
            let wanted = !stop_all && chosen.contains(&(topic.clone(), channel));
            (wanted != granted(recipient, topic, channel)).then(|| Change {
                topic: topic.clone(),
                channel,
                granted: wanted,
            })
        })
        .collect()
}

// ---------------------------------------------------------------- the email footer

/// The words of the footer appended to marketing email that does not link to the page itself.
pub fn footer_words(lang: Lang) -> (&'static str, &'static str) {
    match lang {
        Lang::En => ("You receive this email because you chose to.", "Manage your preferences"),
        Lang::Fr => ("Vous recevez cet e-mail parce que vous l'avez choisi.", "Gérer vos préférences"),
        Lang::De => ("Sie erhalten diese E-Mail, weil Sie sie abonniert haben.", "Einstellungen verwalten"),
        Lang::Es => ("Recibe este correo porque así lo eligió.", "Gestionar sus preferencias"),
    }
}

/// `html` with the footer linking to `url`, before `</body>` when it has one, else at its end.
pub fn with_html_footer(html: &str, url: &str, lang: Lang) -> String {
    let (lead, link) = footer_words(lang);
    let footer = format!(
        "<p style=\"margin-top:2em;font-size:12px;color:#4b5563\">{lead} <a href=\"{}\" style=\"color:#1d4ed8\">{link}</a></p>",
        escape(url)
    );
    match html.to_ascii_lowercase().rfind("</body>") {
        Some(at) if html.is_char_boundary(at) => {
            let (head, tail) = html.split_at(at);
            format!("{head}{footer}{tail}")
        }
        _ => format!("{html}\n{footer}"),
    }
}

/// `text` with the footer's words and `url` at its end.
pub fn with_text_footer(text: &str, url: &str, lang: Lang) -> String {
    let (lead, link) = footer_words(lang);
    format!("{}\n\n--\n{lead}\n{link}: {url}\n", text.trim_end())
}

/// HTML escaping for text and attribute values.
pub fn escape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::recipient::{ConsentScope, ConsentState};
    use crate::domain::unsubscribe::{self, Unsubscribe};

    fn key() -> UnsubscribeKey {
        UnsubscribeKey::new("0123456789abcdef0123456789abcdef").unwrap()
    }

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    fn link() -> PreferenceLink {
        PreferenceLink { recipient: RecipientId::new("user:42@tenant").unwrap(), expires_at: at(1_900_000_000) }
    }

    #[test]
    fn a_signed_link_verifies_until_it_expires_and_a_forged_one_never() {
        let now = at(1_800_000_000);
        let token = sign(&link(), &key());
        assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)), "{token}");
        assert_eq!(verify(&token, &key(), now), Ok(link()));
        assert_eq!(verify(&token, &key(), link().expires_at), Err(TokenError::Expired));
        let other = UnsubscribeKey::new("another key, just as long as the first").unwrap();
        assert_eq!(verify(&token, &other, now), Err(TokenError::BadSignature));
        // Another person's payload under this tag.
        let (_, tag) = token.split_once('.').unwrap();
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode("p1|user:43@tenant|1900000000"));
        assert_eq!(verify(&forged, &key(), now), Err(TokenError::BadSignature));
        for bad in ["", "x", "a.b.c", "%%.%%"] {
            assert_eq!(verify(bad, &key(), now), Err(TokenError::Malformed), "{bad:?}");
        }
        for payload in ["p2|u|1900000000", "p1|u", "p1|u|soon", "p1|a b|1900000000", "p1|u|1900000000|x"] {
            assert_eq!(verify(&seal(payload, &key()), &key(), now), Err(TokenError::Malformed), "{payload}");
        }
        assert_eq!(url("https://h.example/", "T"), "https://h.example/preferences?t=T");
        let made = PreferenceLink::new(link().recipient, now, TimeDelta::days(EMAIL_LINK_DAYS));
        assert_eq!(made.expires_at, now + TimeDelta::days(30));
    }

    #[test]
    fn links_unsubscribe_tokens_and_csrf_tokens_never_stand_for_each_other() {
        let now = at(1_800_000_000);
        let unsub = Unsubscribe {
            recipient: link().recipient,
            channel: Channel::Email,
            topic: None,
            expires_at: link().expires_at,
        };
        let unsub_token = unsubscribe::sign(&unsub, &key());
        let pref_token = sign(&link(), &key());
        assert_eq!(verify(&unsub_token, &key(), now), Err(TokenError::Malformed));
        assert_eq!(unsubscribe::verify(&pref_token, &key(), now), Err(TokenError::Malformed));

        let token_csrf = csrf(&pref_token, &key());
        assert!(csrf_matches(&pref_token, &token_csrf, &key()));
        let other_link = sign(&PreferenceLink { expires_at: at(1_900_000_001), ..link() }, &key());
        assert!(!csrf_matches(&other_link, &token_csrf, &key()), "bound to its link");
        assert!(!csrf_matches(&pref_token, "", &key()) && !csrf_matches(&pref_token, "%%%", &key()));
        let other_key = UnsubscribeKey::new("another key, just as long as the first").unwrap();
        assert!(!csrf_matches(&pref_token, &token_csrf, &other_key));
        // The CSRF tag is no token's signature.
        let (payload, _) = pref_token.split_once('.').unwrap();
        assert_eq!(verify(&format!("{payload}.{token_csrf}"), &key(), now), Err(TokenError::BadSignature));
    }

    #[test]
    fn the_language_is_the_persons_then_the_browsers_then_english() {
        assert_eq!(Lang::choose(Some("fr-FR"), Some("de")), Lang::Fr);
        assert_eq!(Lang::choose(Some("it-IT"), Some("it, de;q=0.5, es;q=0.9")), Lang::Es);
        assert_eq!(Lang::choose(None, Some("de-AT,de;q=0.9,en;q=0.8")), Lang::De);
        assert_eq!(Lang::choose(None, Some("es;q=0, fr;q=0.1")), Lang::Fr);
        assert_eq!(Lang::choose(None, Some("*")), Lang::En);
        assert_eq!(Lang::choose(Some("pt_BR"), None), Lang::En);
        assert_eq!(Lang::choose(Some("ES"), Some("garbage;q=x")), Lang::Es);
        assert_eq!(Lang::from_accept_language("fr;q=abc"), None);
    }

    fn topics() -> Topics {
        toml::from_str(
            r#"
[[topic]]
id = "news"
channels = ["email", "push"]
name = { en = "News" }
[[topic]]
id = "promotions.eu"
channels = ["sms", "email"]
name = { en = "Offers" }
"#,
        )
        .unwrap()
    }

    #[test]
    fn a_form_reads_its_fields_and_refuses_anything_else() {
        let form = Submitted::parse(
            b"t=tok&csrf=c%2Bx&consent.news.email=on&consent.promotions.eu.sms=on&consent.news.email=on",
            None,
        )
        .unwrap();
        assert_eq!((form.token.as_str(), form.csrf.as_str(), form.stop_all), ("tok", "c+x", false));
        let chosen = form.choices(&topics()).unwrap();
        let names: Vec<_> = chosen.iter().map(|(t, c)| field_name(t, *c)).collect();
        assert_eq!(names, ["consent.news.email", "consent.promotions.eu.sms"]);
        assert!(Submitted::parse(b"csrf=c&stop_all=on", Some("tok")).unwrap().stop_all);

        for (body, err) in [
            (&b"csrf=c"[..], FormError::Missing("t")),
            (b"t=a", FormError::Missing("csrf")),
            (b"t=a&t=b&csrf=c", FormError::Repeated("t")),
            (b"t=a&csrf=c&csrf=d", FormError::Repeated("csrf")),
            (b"t=a&csrf=c&admin=1", FormError::UnknownField("admin".into())),
            (b"t=a&csrf=c&%3Cscript%3E=1", FormError::UnknownField("(a name that is not plain text)".into())),
            (b"t=a&csrf=c&consent.news.email=off", FormError::BadValue("consent.news.email".into())),
            (b"t=a&csrf=c&stop_all=yes", FormError::BadValue("stop_all".into())),
        ] {
            assert_eq!(Submitted::parse(body, None), Err(err), "{}", String::from_utf8_lossy(body));
        }
        assert_eq!(Submitted::parse(b"t=a&csrf=c", Some("b")), Err(FormError::Repeated("t")));

        for (field, err) in [
            ("consent.weather.email", FormError::UnknownTopic("weather".into())),
            ("consent.news.fax", FormError::UnknownChannel("fax".into())),
            ("consent.news.sms", FormError::NotOffered { topic: "news".into(), channel: Channel::Sms }),
            ("consent.news", FormError::UnknownField("consent.news".into())),
            ("consent.a%20b.email", FormError::UnknownTopic("(a name that is not plain text)".into())),
        ] {
            let form = Submitted::parse(format!("t=a&csrf=c&{field}=on").as_bytes(), None).unwrap();
            assert_eq!(form.choices(&topics()), Err(err), "{field}");
        }
        // Unknown topics are refused, not ignored, with a valid one beside them.
        let form = Submitted::parse(b"t=a&csrf=c&consent.news.email=on&consent.nope.email=on", None).unwrap();
        assert!(form.choices(&topics()).is_err());
    }

    fn person(consents: &[(Channel, Option<&str>, bool)]) -> Recipient {
        let mut r = Recipient::default();
        for (channel, topic, granted) in consents {
            let scope = ConsentScope { channel: *channel, topic: topic.map(|t| Topic::new(t).unwrap()) };
            let state = ConsentState { granted: *granted, source: ConsentSource::new("signup").unwrap(), at: at(0) };
            r.consents.insert(scope, state);
        }
        r
    }

    fn pairs(list: &[(&str, Channel)]) -> BTreeSet<(Topic, Channel)> {
        list.iter().map(|(t, c)| (Topic::new(*t).unwrap(), *c)).collect()
    }

    fn shown(changes: &[Change]) -> Vec<String> {
        changes.iter().map(|c| format!("{}.{}={}", c.topic, c.channel, c.granted)).collect::<Vec<_>>()
    }

    #[test]
    fn only_what_differs_is_recorded_and_stop_all_never_writes_a_channel_wide_record() {
        use Channel::*;
        // Email granted channel-wide (news and promotions by email show checked), SMS offers opted out.
        let r = person(&[(Email, None, true), (Sms, Some("promotions.eu"), false)]);
        assert!(granted(&r, &Topic::new("news").unwrap(), Email));
        assert!(!granted(&r, &Topic::new("news").unwrap(), Push));

        // The form as served: nothing to record.
        let same = pairs(&[("news", Email), ("promotions.eu", Email)]);
        assert!(changes(&r, &topics(), &same, false).is_empty());

        // News by push on, promotions by email off.
        let form = pairs(&[("news", Email), ("news", Push)]);
        assert_eq!(shown(&changes(&r, &topics(), &form, false)), ["news.push=true", "promotions.eu.email=false"]);

        // Stop all: each offered topic and channel that is granted, revoked by topic.
        let stop = changes(&r, &topics(), &form, true);
        assert_eq!(shown(&stop), ["news.email=false", "promotions.eu.email=false"]);
        let cmd = stop[0].command(&RecipientId::new("u").unwrap(), &ConsentSource::new(SOURCE).unwrap());
        assert_eq!((cmd.topic.as_ref().map(Topic::as_str), cmd.granted), (Some("news"), false));
        assert_eq!((cmd.source.as_str(), cmd.at), (SOURCE, None));
        assert!(stop.iter().all(|c| !c.granted), "stop all grants nothing");

        // Nothing recorded yet: checking one box records one grant.
        let empty = person(&[]);
        assert_eq!(shown(&changes(&empty, &topics(), &pairs(&[("news", Push)]), false)), ["news.push=true"]);
        assert!(changes(&empty, &topics(), &BTreeSet::new(), true).is_empty(), "nothing granted, nothing to stop");
    }

    #[test]
    fn the_footer_goes_before_the_end_of_the_body_or_at_the_end() {
        let url = "https://h.example/preferences?t=a.b";
        let html = with_html_footer("<html><body><p>Hi</p></BODY></html>", url, Lang::Fr);
        assert!(html.contains("Gérer vos préférences</a></p></BODY></html>"), "{html}");
        assert!(html.contains(&format!("href=\"{url}\"")), "{html}");
        let bare = with_html_footer("<p>Hi</p>", "https://h.example/p?a=1&b=\"2\"", Lang::En);
        assert!(bare.starts_with("<p>Hi</p>\n<p") && bare.contains("a=1&amp;b=&quot;2&quot;"), "{bare}");
        let text = with_text_footer("Hi\n\n", url, Lang::De);
        assert_eq!(text, format!("Hi\n\n--\n{}\nEinstellungen verwalten: {url}\n", footer_words(Lang::De).0));
        assert_eq!(ConsentSource::new(SOURCE).unwrap().as_str(), SOURCE);
    }
}
