//! The preference center: `GET /preferences?t=<link token>` shows a person's marketing
//! consent for each topic of `topics.toml`, by channel, as a plain HTML form (no
//! JavaScript); `POST /preferences` saves it. See [`herald::domain::preferences`] for the
//! link and CSRF tokens and what a save records.
//!
//! The markup is a contract (browser tests and people's assistive tools rely on it):
//! - one `<h1>`, `<html lang>` in the page's language, a `<main>` holding the form
//!   `<form method="post" action="preferences">` with hidden fields `t` and `csrf`;
//! - per topic a `<fieldset>` whose `<legend>` is the topic's name; per channel a checkbox
//!   `id="consent-<topic>-<channel>" name="consent.<topic>.<channel>" value="on"`, checked
//!   when the person gets that topic's marketing on that channel now, with its
//!   `<label for>`;
//! - the switch `id="stop_all" name="stop_all" value="on"` with its `<label for>`;
//! - one `<button type="submit">` (text from the locale);
//! - after a save, the page again with `<p role="status" id="status">` saying what happened;
//!   an error is a page of its own (400, 403, 404, 410, 503) with `<h1>` and
//!   `<p id="error">`.

use crate::{Deps, Refusal, WebRequest, WebResponse};
use chrono::{DateTime, TimeDelta, Utc};
use herald::contract::ConsentSource;
use herald::domain::Channel;
use herald::domain::preferences::{self, Lang, PreferenceLink, Submitted, escape};
use herald::domain::recipient::{ConsentScope, ConsentState, Recipient};
use herald::domain::topics::Topics;
use herald::domain::unsubscribe::{TokenError, UnsubscribeKey};
use herald::metrics;
use herald::ports::{ConsentApplied, RecipientStore, Secret, TopicStore};
use std::sync::Arc;

pub use herald::domain::preferences::{PATH, SOURCE};

/// What the page says, in one language.
pub struct Texts {
    pub title: &'static str,
    pub intro: &'static str,
    pub no_topics: &'static str,
    pub email: &'static str,
    pub sms: &'static str,
    pub push: &'static str,
    pub inbox: &'static str,
    pub stop_legend: &'static str,
    pub stop_label: &'static str,
    pub stop_help: &'static str,
    pub save: &'static str,
    pub saved: &'static str,
    pub unchanged: &'static str,
    pub err_invalid_title: &'static str,
    pub err_invalid: &'static str,
    pub err_forged: &'static str,
    pub err_form: &'static str,
    pub err_expired_title: &'static str,
    pub err_expired: &'static str,
    pub err_unknown_title: &'static str,
    pub err_unknown: &'static str,
    pub err_unavailable_title: &'static str,
    pub err_unavailable: &'static str,
    pub details: &'static str,
}

const EN: Texts = Texts {
    title: "Your notification preferences",
    intro: "Choose which messages we may send you about each topic, and how. Messages about your account and your orders do not depend on these choices.",
    no_topics: "There are no topics to choose from yet.",
    email: "Email",
    sms: "SMS",
    push: "Push notifications",
    inbox: "In-app inbox",
    stop_legend: "Stop all marketing",
    stop_label: "Stop all marketing messages",
    stop_help: "This turns off every topic above. You will still receive messages about your account and your orders.",
    save: "Save preferences",
    saved: "Your preferences have been saved.",
    unchanged: "Nothing changed: these were already your preferences.",
    err_invalid_title: "This link cannot be used",
    err_invalid: "The link is incomplete or damaged. Open it again from the email, without changing it.",
    err_forged: "This link was not issued by us, or it was changed. Use the link in one of our recent emails.",
    err_form: "The form could not be saved as it was sent. Open the link again and save from that page.",
    err_expired_title: "This link has expired",
    err_expired: "For your security, links to this page work for a limited time. Use the link at the bottom of a recent email from us, or ask our support team to send you a new one.",
    err_unknown_title: "No preferences to show",
    err_unknown: "We have no preferences for this link: the account may have been deleted.",
    err_unavailable_title: "Temporarily unavailable",
    err_unavailable: "We could not load or save your preferences just now. Nothing was lost: please try again in a few minutes.",
    details: "Details",
};

const FR: Texts = Texts {
    title: "Vos préférences de notification",
    intro: "Choisissez les messages que nous pouvons vous envoyer pour chaque sujet, et par quel moyen. Les messages concernant votre compte et vos commandes ne dépendent pas de ces choix.",
    no_topics: "Il n'y a encore aucun sujet à choisir.",
    email: "E-mail",
    sms: "SMS",
    push: "Notifications push",
    inbox: "Messagerie de l'application",
    stop_legend: "Arrêter tout le marketing",
    stop_label: "Ne plus recevoir aucun message marketing",
    stop_help: "Cela désactive tous les sujets ci-dessus. Vous recevrez toujours les messages concernant votre compte et vos commandes.",
    save: "Enregistrer les préférences",
    saved: "Vos préférences ont été enregistrées.",
    unchanged: "Rien n'a changé : c'étaient déjà vos préférences.",
    err_invalid_title: "Ce lien ne peut pas être utilisé",
    err_invalid: "Le lien est incomplet ou abîmé. Ouvrez-le à nouveau depuis l'e-mail, sans le modifier.",
    err_forged: "Ce lien n'a pas été émis par nous, ou il a été modifié. Utilisez le lien d'un de nos e-mails récents.",
    err_form: "Le formulaire n'a pas pu être enregistré tel qu'il a été envoyé. Ouvrez à nouveau le lien et enregistrez depuis cette page.",
    err_expired_title: "Ce lien a expiré",
    err_expired: "Pour votre sécurité, les liens vers cette page ne fonctionnent qu'un temps. Utilisez le lien en bas d'un de nos e-mails récents, ou demandez-en un nouveau à notre service client.",
    err_unknown_title: "Aucune préférence à afficher",
    err_unknown: "Nous n'avons pas de préférences pour ce lien : le compte a peut-être été supprimé.",
    err_unavailable_title: "Momentanément indisponible",
    err_unavailable: "Nous n'avons pas pu charger ou enregistrer vos préférences. Rien n'est perdu : réessayez dans quelques minutes.",
    details: "Détails",
};

const DE: Texts = Texts {
    title: "Ihre Benachrichtigungseinstellungen",
    intro: "Wählen Sie, welche Nachrichten wir Ihnen zu jedem Thema senden dürfen und auf welchem Weg. Nachrichten zu Ihrem Konto und Ihren Bestellungen hängen nicht von dieser Auswahl ab.",
    no_topics: "Es gibt noch keine Themen zur Auswahl.",
    email: "E-Mail",
    sms: "SMS",
    push: "Push-Benachrichtigungen",
    inbox: "Posteingang in der App",
    stop_legend: "Alle Werbung beenden",
    stop_label: "Keine Werbenachrichten mehr erhalten",
    stop_help: "Damit werden alle Themen oben abgeschaltet. Nachrichten zu Ihrem Konto und Ihren Bestellungen erhalten Sie weiterhin.",
    save: "Einstellungen speichern",
    saved: "Ihre Einstellungen wurden gespeichert.",
    unchanged: "Nichts geändert: Das waren bereits Ihre Einstellungen.",
    err_invalid_title: "Dieser Link kann nicht verwendet werden",
    err_invalid: "Der Link ist unvollständig oder beschädigt. Öffnen Sie ihn erneut aus der E-Mail, ohne ihn zu ändern.",
    err_forged: "Dieser Link stammt nicht von uns oder wurde verändert. Verwenden Sie den Link aus einer unserer aktuellen E-Mails.",
    err_form: "Das Formular konnte so, wie es gesendet wurde, nicht gespeichert werden. Öffnen Sie den Link erneut und speichern Sie auf dieser Seite.",
    err_expired_title: "Dieser Link ist abgelaufen",
    err_expired: "Zu Ihrer Sicherheit gelten Links zu dieser Seite nur begrenzt. Verwenden Sie den Link am Ende einer aktuellen E-Mail von uns oder bitten Sie unseren Kundendienst um einen neuen.",
    err_unknown_title: "Keine Einstellungen vorhanden",
    err_unknown: "Zu diesem Link haben wir keine Einstellungen: Das Konto wurde möglicherweise gelöscht.",
    err_unavailable_title: "Vorübergehend nicht verfügbar",
    err_unavailable: "Wir konnten Ihre Einstellungen gerade nicht laden oder speichern. Es ist nichts verloren: Bitte versuchen Sie es in einigen Minuten erneut.",
    details: "Details",
};

const ES: Texts = Texts {
    title: "Sus preferencias de notificación",
    intro: "Elija qué mensajes podemos enviarle sobre cada tema y por qué medio. Los mensajes sobre su cuenta y sus pedidos no dependen de esta elección.",
    no_topics: "Todavía no hay temas para elegir.",
    email: "Correo electrónico",
    sms: "SMS",
    push: "Notificaciones push",
    inbox: "Bandeja de entrada de la app",
    stop_legend: "Detener todo el marketing",
    stop_label: "No recibir más mensajes de marketing",
    stop_help: "Esto desactiva todos los temas de arriba. Seguirá recibiendo los mensajes sobre su cuenta y sus pedidos.",
    save: "Guardar preferencias",
    saved: "Sus preferencias se han guardado.",
    unchanged: "No ha cambiado nada: ya eran sus preferencias.",
    err_invalid_title: "Este enlace no se puede usar",
    err_invalid: "El enlace está incompleto o dañado. Ábralo de nuevo desde el correo, sin modificarlo.",
    err_forged: "Este enlace no lo emitimos nosotros, o fue modificado. Use el enlace de uno de nuestros correos recientes.",
    err_form: "El formulario no se pudo guardar tal como se envió. Abra de nuevo el enlace y guarde desde esa página.",
    err_expired_title: "Este enlace ha caducado",
    err_expired: "Por su seguridad, los enlaces a esta página funcionan durante un tiempo limitado. Use el enlace al final de un correo reciente nuestro o pida uno nuevo a nuestro equipo de atención.",
    err_unknown_title: "No hay preferencias que mostrar",
    err_unknown: "No tenemos preferencias para este enlace: es posible que la cuenta se haya eliminado.",
    err_unavailable_title: "No disponible temporalmente",
    err_unavailable: "No pudimos cargar ni guardar sus preferencias en este momento. No se ha perdido nada: inténtelo de nuevo en unos minutos.",
    details: "Detalles",
};

pub fn texts(lang: Lang) -> &'static Texts {
    match lang {
        Lang::En => &EN,
        Lang::Fr => &FR,
        Lang::De => &DE,
        Lang::Es => &ES,
    }
}

fn channel_label(t: &Texts, channel: Channel) -> &'static str {
    match channel {
        Channel::Email => t.email,
        Channel::Sms => t.sms,
        Channel::Push => t.push,
        Channel::Inbox => t.inbox,
    }
}

/// The language of a page shown before the person is known: the browser's, else English.
pub fn request_lang(request: &WebRequest) -> Lang {
    Lang::choose(None, request.header("accept-language"))
}

fn link_refusal(e: TokenError) -> Refusal {
    match e {
        TokenError::Malformed => Refusal::Malformed("the preference link is malformed".into()),
        TokenError::BadSignature => Refusal::Forbidden("the preference link is not one Herald signed".into()),
        TokenError::Expired => Refusal::Gone("the preference link has expired".into()),
    }
}

async fn key<S: Secret<UnsubscribeKey>>(secrets: &S) -> Result<Arc<UnsubscribeKey>, Refusal> {
    secrets.current().await.map_err(Refusal::unavailable)
}

async fn person<R: RecipientStore>(store: &R, link: &PreferenceLink) -> Result<Recipient, Refusal> {
    // An erased person's link shows nothing and never writes a profile back.
    store.get(&link.recipient).await.map_err(Refusal::unavailable)?.ok_or(Refusal::NotFound)
}

/// `GET /preferences?t=<token>`: the form, as the person's consent is now. Changes nothing.
pub async fn page<F, R, Q, G, S, T>(
    deps: &Deps<F, R, Q, G, S, T>,
    request: &WebRequest,
    now: DateTime<Utc>,
) -> Result<WebResponse, Refusal>
where
    R: RecipientStore,
    S: Secret<UnsubscribeKey>,
    T: TopicStore,
{
    let token = request.query.get("t").ok_or_else(|| Refusal::Malformed("the link carries no token".into()))?;
    let key = key(&deps.secrets).await?;
    let link = preferences::verify(token, &key, now).map_err(link_refusal)?;
    let recipient = person(&deps.recipients, &link).await?;
    let topics = deps.topics.topics().await.map_err(Refusal::unavailable)?;
    let lang = Lang::choose(recipient.locale.as_ref().map(|l| l.as_str()), request.header("accept-language"));
    let csrf = preferences::csrf(token, &key);
    Ok(WebResponse::html(200, render(lang, &topics, &recipient, token, &csrf, None)))
}

/// `POST /preferences`: checks the link, the CSRF token and every field before it changes
/// anything, then records each consent that differs, with source [`SOURCE`].
pub async fn save<F, R, Q, G, S, T>(
    deps: &Deps<F, R, Q, G, S, T>,
    request: &WebRequest,
    now: DateTime<Utc>,
) -> Result<WebResponse, Refusal>
where
    R: RecipientStore,
    S: Secret<UnsubscribeKey>,
    T: TopicStore,
{
    let form = Submitted::parse(&request.body, request.query.get("t").map(String::as_str))
        .map_err(|e| Refusal::Malformed(e.to_string()))?;
    let key = key(&deps.secrets).await?;
    let link = preferences::verify(&form.token, &key, now).map_err(link_refusal)?;
    if !preferences::csrf_matches(&form.token, &form.csrf, &key) {
        return Err(Refusal::Forbidden("the form's CSRF token does not belong to this link".into()));
    }
    let topics = deps.topics.topics().await.map_err(Refusal::unavailable)?;
    let chosen = form.choices(&topics).map_err(|e| Refusal::Malformed(e.to_string()))?;
    let mut recipient = person(&deps.recipients, &link).await?;
    let source = ConsentSource::new(SOURCE).map_err(Refusal::Malformed)?;
    let changes = preferences::changes(&recipient, &topics, &chosen, form.stop_all);
    for change in &changes {
        let cmd = change.command(&link.recipient, &source);
        let applied = deps.recipients.set_consent(&cmd, now).await.map_err(Refusal::unavailable)?;
        // `Unchanged`: the store holds this very consent (a retried write that was applied
        // first answers so); only `Older` leaves another one in place.
        if applied != ConsentApplied::Older {
            let scope = ConsentScope { channel: change.channel, topic: Some(change.topic.clone()) };
            recipient.consents.insert(scope, ConsentState { granted: change.granted, source: source.clone(), at: now });
        }
        metrics::count(
            "PreferenceChanges",
            &[("Channel", change.channel.as_str()), ("Granted", if change.granted { "true" } else { "false" })],
        );
    }
    tracing::info!(recipient = %link.recipient, changes = changes.len(), stop_all = form.stop_all, "preferences saved");
    let lang = Lang::choose(recipient.locale.as_ref().map(|l| l.as_str()), request.header("accept-language"));
    let t = texts(lang);
    let status = if changes.is_empty() { t.unchanged } else { t.saved };
    let csrf = preferences::csrf(&form.token, &key);
    Ok(WebResponse::html(200, render(lang, &topics, &recipient, &form.token, &csrf, Some(status))))
}

/// A link to the preference center for the person an unsubscribe link names, relative to
/// `/unsubscribe`, working no longer than that link nor a marketing email's.
pub fn link_from_unsubscribe(
    recipient: &herald::domain::RecipientId,
    expires_at: DateTime<Utc>,
    key: &UnsubscribeKey,
    now: DateTime<Utc>,
) -> String {
    let until = expires_at.min(now + TimeDelta::days(preferences::EMAIL_LINK_DAYS));
    let token = preferences::sign(&PreferenceLink { recipient: recipient.clone(), expires_at: until }, key);
    format!("preferences?t={token}")
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#111827;background:#fff;\
max-width:40em;margin:2em auto;padding:0 1em;line-height:1.5}\
h1{font-size:1.6em;line-height:1.25}\
fieldset{border:1px solid #6b7280;border-radius:6px;margin:0 0 1em;padding:.75em 1em}\
legend{font-weight:600;padding:0 .25em}\
.desc,.note{margin:.25em 0 .5em;color:#374151}\
.opt{display:flex;align-items:center;gap:.5em;margin:.4em 0}\
input[type=checkbox]{width:1.25em;height:1.25em;margin:0;accent-color:#1d4ed8}\
label{cursor:pointer}\
button{font:inherit;font-weight:600;background:#1d4ed8;color:#fff;border:0;border-radius:6px;padding:.6em 1.2em;cursor:pointer}\
button:hover{background:#1e40af}\
:focus-visible{outline:3px solid #b45309;outline-offset:2px}\
.status{border-left:4px solid #047857;background:#ecfdf5;color:#064e3b;padding:.5em .75em}\
.error{border-left:4px solid #b91c1c;padding:.25em .75em}";

/// A whole page: `lang`, one `<h1>`, the body in `<main>`.
pub fn document(lang: Lang, title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{title}</title><style>{STYLE}</style></head>\
         <body><main><h1>{title}</h1>{body}</main></body></html>",
        lang.as_str()
    )
}

/// The form for `recipient`, with `status` said at the top after a save.
pub fn render(
    lang: Lang,
    topics: &Topics,
    recipient: &Recipient,
    token: &str,
    csrf: &str,
    status: Option<&str>,
) -> String {
    let t = texts(lang);
    let mut body = String::new();
    if let Some(status) = status {
        body.push_str(&format!("<p role=\"status\" id=\"status\" class=\"status\">{}</p>", escape(status)));
    }
    body.push_str(&format!("<p>{}</p>", escape(t.intro)));
    body.push_str(&format!(
        "<form method=\"post\" action=\"preferences\">\
         <input type=\"hidden\" name=\"t\" value=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(token),
        escape(csrf)
    ));
    if topics.topics.is_empty() {
        body.push_str(&format!("<p class=\"note\">{}</p>", escape(t.no_topics)));
    }
    for topic in &topics.topics {
        let id = topic.id.as_str();
        body.push_str(&format!("<fieldset><legend>{}</legend>", escape(topic.name(lang))));
        let described = match topic.description(lang) {
            Some(d) => {
                body.push_str(&format!("<p class=\"desc\" id=\"desc-{id}\">{}</p>", escape(d)));
                format!(" aria-describedby=\"desc-{id}\"")
            }
            None => String::new(),
        };
        for channel in &topic.channels {
            let checked = if preferences::granted(recipient, &topic.id, *channel) { " checked" } else { "" };
            body.push_str(&format!(
                "<div class=\"opt\"><input type=\"checkbox\" id=\"consent-{id}-{channel}\" name=\"{}\" value=\"on\"{checked}{described}>\
                 <label for=\"consent-{id}-{channel}\">{}</label></div>",
                preferences::field_name(&topic.id, *channel),
                escape(channel_label(t, *channel)),
            ));
        }
        body.push_str("</fieldset>");
    }
    body.push_str(&format!(
        "<fieldset><legend>{}</legend><div class=\"opt\">\
         <input type=\"checkbox\" id=\"stop_all\" name=\"stop_all\" value=\"on\" aria-describedby=\"stop_all-help\">\
         <label for=\"stop_all\">{}</label></div><p class=\"note\" id=\"stop_all-help\">{}</p></fieldset>\
         <button type=\"submit\">{}</button></form>",
        escape(t.stop_legend),
        escape(t.stop_label),
        escape(t.stop_help),
        escape(t.save)
    ));
    document(lang, &escape(t.title), &body)
}

/// The page for a refused request, in `lang`: what happened and what to do, with the
/// refusal's reason (safe to show: it quotes no token and no value sent) as details.
pub fn error_page(refusal: &Refusal, lang: Lang) -> WebResponse {
    let t = texts(lang);
    let (title, text) = match refusal {
        Refusal::Gone(_) => (t.err_expired_title, t.err_expired),
        Refusal::Forbidden(reason) if reason.contains("CSRF") => (t.err_invalid_title, t.err_form),
        Refusal::Forbidden(_) | Refusal::Unsigned(_) => (t.err_invalid_title, t.err_forged),
        Refusal::Malformed(reason) if reason.contains("link") => (t.err_invalid_title, t.err_invalid),
        Refusal::Malformed(_) | Refusal::MethodNotAllowed => (t.err_invalid_title, t.err_form),
        Refusal::NotFound => (t.err_unknown_title, t.err_unknown),
        Refusal::Unavailable(_) => (t.err_unavailable_title, t.err_unavailable),
    };
    let body = format!(
        "<p id=\"error\" class=\"error\">{}</p><p class=\"note\">{}: {}</p>",
        escape(text),
        escape(t.details),
        escape(&refusal.to_string())
    );
    WebResponse::html(refusal.status(), document(lang, &escape(title), &body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald::domain::Topic;

    fn topics() -> Topics {
        serde_json::from_value(serde_json::json!({"topic": [
            {"id": "news", "channels": ["email", "push"], "name": {"en": "News", "fr": "Actualités"},
             "description": {"en": "Once a <b>week</b>."}},
            {"id": "promotions", "channels": ["sms", "inbox"], "name": {"en": "Offers & deals"}},
        ]}))
        .unwrap()
    }

    #[test]
    fn the_page_keeps_its_markup_contract() {
        let mut r = Recipient::default();
        let scope = ConsentScope { channel: Channel::Email, topic: Some(Topic::new("news").unwrap()) };
        let state = ConsentState { granted: true, source: ConsentSource::new("s").unwrap(), at: DateTime::UNIX_EPOCH };
        r.consents.insert(scope, state);
        let html = render(Lang::En, &topics(), &r, "tok.en", "cs\"rf", Some("Saved"));
        for part in [
            "<html lang=\"en\">",
            "<p role=\"status\" id=\"status\" class=\"status\">Saved</p>",
            "<form method=\"post\" action=\"preferences\">",
            "<input type=\"hidden\" name=\"t\" value=\"tok.en\">",
            "<input type=\"hidden\" name=\"csrf\" value=\"cs&quot;rf\">",
            "<legend>News</legend>",
            "<p class=\"desc\" id=\"desc-news\">Once a &lt;b&gt;week&lt;/b&gt;.</p>",
            "<input type=\"checkbox\" id=\"consent-news-email\" name=\"consent.news.email\" value=\"on\" checked aria-describedby=\"desc-news\"><label for=\"consent-news-email\">Email</label>",
            "<input type=\"checkbox\" id=\"consent-news-push\" name=\"consent.news.push\" value=\"on\" aria-describedby=\"desc-news\"><label for=\"consent-news-push\">Push notifications</label>",
            "<legend>Offers &amp; deals</legend>",
            "<input type=\"checkbox\" id=\"consent-promotions-sms\" name=\"consent.promotions.sms\" value=\"on\"><label for=\"consent-promotions-sms\">SMS</label>",
            "<input type=\"checkbox\" id=\"consent-promotions-inbox\" name=\"consent.promotions.inbox\" value=\"on\"><label for=\"consent-promotions-inbox\">In-app inbox</label>",
            "<input type=\"checkbox\" id=\"stop_all\" name=\"stop_all\" value=\"on\" aria-describedby=\"stop_all-help\"><label for=\"stop_all\">Stop all marketing messages</label>",
            "<button type=\"submit\">Save preferences</button>",
        ] {
            assert!(html.contains(part), "missing {part}\nin {html}");
        }
        assert_eq!(html.matches("<h1>").count(), 1);
        assert!(!html.contains("<script"), "no JavaScript");
        // Every control has its label.
        assert_eq!(html.matches("type=\"checkbox\"").count(), html.matches("<label for=").count());

        let fr = render(Lang::Fr, &topics(), &Recipient::default(), "t", "c", None);
        assert!(fr.contains("<html lang=\"fr\">") && fr.contains("<legend>Actualités</legend>"), "{fr}");
        assert!(fr.contains("Enregistrer les préférences") && !fr.contains("role=\"status\""), "{fr}");
        assert!(fr.contains("<legend>Offers &amp; deals</legend>"), "English where a topic has no French");
        assert!(render(Lang::De, &Topics::default(), &r, "t", "c", None).contains(DE.no_topics));
    }

    #[test]
    fn every_refusal_has_a_page_that_says_what_to_do() {
        for (refusal, status, says) in [
            (Refusal::Gone("expired".into()), 410, EN.err_expired),
            (Refusal::Forbidden("the preference link is not one Herald signed".into()), 403, EN.err_forged),
            (Refusal::Forbidden("the form's CSRF token does not belong to this link".into()), 403, EN.err_form),
            (Refusal::Malformed("the preference link is malformed".into()), 400, EN.err_invalid),
            (Refusal::Malformed("there is no topic x".into()), 400, EN.err_form),
            (Refusal::NotFound, 404, EN.err_unknown),
            (Refusal::Unavailable("retry".into()), 503, EN.err_unavailable),
        ] {
            let page = error_page(&refusal, Lang::En);
            assert_eq!(page.status, status);
            assert!(page.body.contains(&escape(says)) && page.body.contains("id=\"error\""), "{}", page.body);
        }
        let es = error_page(&Refusal::Gone("expired".into()), Lang::Es);
        assert!(es.body.contains("lang=\"es\"") && es.body.contains(ES.err_expired_title), "{}", es.body);
    }

    #[test]
    fn every_language_says_everything() {
        for lang in Lang::ALL {
            let t = texts(lang);
            for text in [t.title, t.intro, t.save, t.saved, t.stop_label, t.err_expired, t.err_forged] {
                assert!(!text.is_empty(), "{lang:?}");
            }
        }
    }
}
