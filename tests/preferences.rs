//! The preference center over HTTP, through the local Function URL of the webhook function
//! (as a browser reaches it), against moto: the page shows a person's consents, a save
//! records each change (and only the changes) through the consent path with source
//! `preference-center`, the next notifications follow it, "stop all marketing" leaves
//! transactional messages flowing, every refusal (forged, expired, bad CSRF, unknown
//! topic or channel) changes nothing, and the pages carry their security headers and
//! speak the person's language.

use crate::support::*;
use chrono::{TimeDelta, Utc};
use herald::aws::dynamodb::DynamoRecipients;
use herald::contract::{ConsentSource, SetConsent, UpsertRecipient};
use herald::domain::preferences::{self, PreferenceLink};
use herald::domain::unsubscribe::UnsubscribeKey;
use herald::domain::{Channel, RecipientId, Topic};
use herald::ports::RecipientStore;
use herald_cli::local::UNSUBSCRIBE_KEY;
use herald_cli::web::WebFront;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};

const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// One answer as a browser receives it.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Lower-case names.
    headers: HashMap<String, String>,
    body: String,
}

/// One HTTP/1.1 request to the local Function URL.
async fn http(url: &str, method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let a = herald_cli::web::request(url, method, target, headers, body).await.unwrap();
    Answer { status: a.status, headers: a.headers.into_iter().collect(), body: a.body }
}

async fn get(url: &str, target: &str, lang: Option<&str>) -> Answer {
    let headers: Vec<(&str, &str)> = lang.map(|l| ("Accept-Language", l)).into_iter().collect();
    http(url, "GET", target, &headers, "").await
}

/// A form POST as a browser sends it.
async fn post(url: &str, fields: &[(&str, &str)]) -> Answer {
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
    http(url, "POST", "/preferences", &[("Content-Type", "application/x-www-form-urlencoded")], &body).await
}

fn assert_secure(a: &Answer) {
    for (name, value) in [
        ("content-security-policy", CSP),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
        ("content-type", "text/html; charset=utf-8"),
    ] {
        assert_eq!(a.headers.get(name).map(String::as_str), Some(value), "{name} on a {} answer", a.status);
    }
}

/// The webhook function served on loopback, and the stack's signing key.
pub(crate) async fn serve(t: &TestStack) -> (WebFront, String, UnsubscribeKey) {
    let web = WebFront::start(&t.stack, &t.sdk).await.unwrap();
    let url = web.url("WebhooksFunction").expect("the webhook function is served").to_owned();
    let key = UnsubscribeKey::new(t.stack.secret_value(&t.sdk, UNSUBSCRIBE_KEY).await.unwrap()).unwrap();
    (web, url, key)
}

pub(crate) fn link(key: &UnsubscribeKey, who: &str, ttl: TimeDelta) -> String {
    let link = PreferenceLink::new(RecipientId::new(who).unwrap(), Utc::now(), ttl);
    format!("/preferences?t={}", preferences::sign(&link, key))
}

/// The value of the hidden field `name` of a page's form.
fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).unwrap_or_else(|| panic!("no field {name} in {page}")) + marker.len();
    page[start..].split('"').next().unwrap().to_owned()
}

/// The names of the checkboxes a page shows checked.
fn checked(page: &str) -> BTreeSet<String> {
    page.split("<input type=\"checkbox\"")
        .skip(1)
        .filter(|input| input.split('>').next().is_some_and(|attrs| attrs.contains(" checked")))
        .map(|input| input.split("name=\"").nth(1).unwrap().split('"').next().unwrap().to_owned())
        .collect()
}

fn recipients(t: &TestStack) -> DynamoRecipients {
    DynamoRecipients::new(aws_sdk_dynamodb::Client::new(&t.sdk), t.table("RecipientsTable"))
}

/// Each consent of a person: `channel:topic` -> (granted, source).
pub(crate) async fn consents(t: &TestStack, who: &str) -> BTreeMap<String, (bool, String)> {
    let r = recipients(t).get(&RecipientId::new(who).unwrap()).await.unwrap().unwrap_or_default();
    r.consents.iter().map(|(scope, c)| (scope.key(), (c.granted, c.source.as_str().to_owned()))).collect()
}

/// The consent audit of a person: (`channel:topic`, granted, source), oldest first.
pub(crate) async fn audit(t: &TestStack, who: &str) -> Vec<(String, bool, String)> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let out = aws_sdk_dynamodb::Client::new(&t.sdk)
        .query()
        .table_name(t.table("RecipientsTable"))
        .key_condition_expression("pk = :pk AND begins_with(sk, :c)")
        .expression_attribute_values(":pk", AttributeValue::S(who.into()))
        .expression_attribute_values(":c", AttributeValue::S("consent#".into()))
        .send()
        .await
        .unwrap();
    out.items
        .unwrap_or_default()
        .iter()
        .map(|i| {
            let sk = i["sk"].as_s().unwrap();
            let scope = sk.rsplit('#').next().unwrap().to_owned();
            (scope, *i["granted"].as_bool().unwrap(), i["source"].as_s().unwrap().clone())
        })
        .collect()
}

pub(crate) fn from_page(audit: &[(String, bool, String)]) -> Vec<(String, bool)> {
    audit.iter().filter(|(_, _, s)| s == preferences::SOURCE).map(|(k, g, _)| (k.clone(), *g)).collect()
}

/// A person as a producer would create them, through the recipients store.
pub(crate) async fn person(t: &TestStack, who: &str, profile: serde_json::Value, grants: &[(&str, Option<&str>)]) {
    let mut upsert = profile;
    upsert["recipient"] = who.into();
    let upsert: UpsertRecipient = serde_json::from_value(upsert).unwrap();
    let store = recipients(t);
    store.upsert(&upsert, Utc::now()).await.unwrap();
    for (channel, topic) in grants {
        let cmd = SetConsent {
            recipient: RecipientId::new(who).unwrap(),
            channel: channel.parse().unwrap(),
            topic: topic.map(|t| Topic::new(t).unwrap()),
            granted: true,
            source: ConsentSource::new("signup-form").unwrap(),
            at: Some(Utc::now() - TimeDelta::seconds(5)),
        };
        store.set_consent(&cmd, Utc::now()).await.unwrap();
    }
}

pub(crate) async fn outcome(t: &TestStack, key: &str) -> (String, Option<String>) {
    let e = t.entry(key).await.unwrap_or_else(|| panic!("{key} is in the ledger"));
    (e.status.as_str().to_owned(), e.reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_records_each_change_with_its_source_and_the_next_notifications_follow_it() {
    let t = TestStack::new().await;
    let (_web, url, key) = serve(&t).await;
    let tag = &t.tag;
    let (ana, address) = (format!("ana-{tag}"), format!("ana.{tag}@example.org"));
    person(&t, &ana, json!({"email": address}), &[("email", Some("news"))]).await;

    // The page shows the consent as it is, and changes nothing.
    let page = get(&url, &link(&key, &ana, TimeDelta::days(1)), None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_secure(&page);
    assert_eq!(checked(&page.body), BTreeSet::from(["consent.news.email".to_owned()]));
    assert!(page.body.contains("<html lang=\"en\">") && page.body.contains("<legend>Offers and sales</legend>"));
    let before = audit(&t, &ana).await;

    // Offers by email on, news by email kept: one grant recorded, nothing else.
    let (token, csrf) = (hidden(&page.body, "t"), hidden(&page.body, "csrf"));
    let saved =
        post(&url, &[("t", &token), ("csrf", &csrf), ("consent.news.email", "on"), ("consent.promotions.email", "on")])
            .await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    assert_secure(&saved);
    assert!(saved.body.contains("<p role=\"status\" id=\"status\" class=\"status\">Your preferences have been saved."));
    assert_eq!(
        checked(&saved.body),
        BTreeSet::from(["consent.news.email".to_owned(), "consent.promotions.email".to_owned()])
    );
    let now = consents(&t, &ana).await;
    assert_eq!(now["email:promotions"], (true, preferences::SOURCE.to_owned()));
    assert_eq!(now["email:news"], (true, "signup-form".to_owned()), "unchanged, not rewritten");
    let after = audit(&t, &ana).await;
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(from_page(&after), [("email:promotions".to_owned(), true)]);

    // The same form again: nothing to record.
    let again =
        post(&url, &[("t", &token), ("csrf", &csrf), ("consent.news.email", "on"), ("consent.promotions.email", "on")])
            .await;
    assert!(again.body.contains("Nothing changed"), "{}", again.body);
    assert_eq!(audit(&t, &ana).await.len(), after.len());

    // The next notifications follow: offers by email go, getting-started tips (never chosen) do not.
    let notify = |key: String, topic: &str| {
        json!({"idempotency_key": key, "recipient": ana, "template": "weekly_digest", "kind": "marketing",
               "topic": topic, "channels": ["email"], "data": {"headline": "Spring"}})
        .to_string()
    };
    t.publish(&[notify(format!("{tag}-offer"), "promotions"), notify(format!("{tag}-tips"), "onboarding")]).await;
    t.wait_idle().await;
    assert!(matches!(outcome(&t, &format!("{tag}-offer")).await.0.as_str(), "sent" | "delivered"));
    assert_eq!(outcome(&t, &format!("{tag}-tips")).await, ("suppressed".into(), Some("no_consent".into())));

    // The marketing email links to the page, with a link that works.
    let data = provider_data().await;
    let emails = emails_to(&data, &address);
    assert_eq!(emails.len(), 1);
    let body = emails[0]["body"].as_str().unwrap();
    let start = body.find("/preferences?t=").expect("the email links to the preference center");
    let target: String = body[start..].chars().take_while(|c| !matches!(c, '"' | '<' | '&' | ' ')).collect();
    let from_email = get(&url, &target, None).await;
    assert_eq!(from_email.status, 200, "{}", from_email.body);
    assert!(checked(&from_email.body).contains("consent.promotions.email"));

    // Offers off again: revoked by topic, and the next offer is refused as opted out.
    let off = post(&url, &[("t", &token), ("csrf", &csrf), ("consent.news.email", "on")]).await;
    assert_eq!(off.status, 200);
    assert_eq!(consents(&t, &ana).await["email:promotions"], (false, preferences::SOURCE.to_owned()));
    t.publish(&[notify(format!("{tag}-offer-2"), "promotions")]).await;
    t.wait_idle().await;
    assert_eq!(outcome(&t, &format!("{tag}-offer-2")).await, ("suppressed".into(), Some("opted_out".into())));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_all_marketing_revokes_each_topic_and_leaves_transactional_flowing() {
    let t = TestStack::new().await;
    let (_web, url, key) = serve(&t).await;
    let tag = &t.tag;
    let (bea, address) = (format!("bea-{tag}"), format!("bea.{tag}@example.org"));
    // Every email channel-wide, and offers by SMS.
    let phone = phone(tag, 1);
    person(&t, &bea, json!({"email": address, "phone": phone}), &[("email", None), ("sms", Some("promotions"))]).await;

    let page = get(&url, &link(&key, &bea, TimeDelta::days(1)), None).await;
    let shown = checked(&page.body);
    assert!(
        ["consent.news.email", "consent.promotions.email", "consent.onboarding.email", "consent.promotions.sms"]
            .iter()
            .all(|c| shown.contains(*c)),
        "{shown:?}"
    );
    // Stop all wins over the boxes still checked.
    let (token, csrf) = (hidden(&page.body, "t"), hidden(&page.body, "csrf"));
    let stop = post(&url, &[("t", &token), ("csrf", &csrf), ("consent.news.email", "on"), ("stop_all", "on")]).await;
    assert_eq!(stop.status, 200, "{}", stop.body);
    assert!(checked(&stop.body).is_empty(), "{}", stop.body);
    let now = consents(&t, &bea).await;
    for scope in ["email:news", "email:promotions", "email:onboarding", "sms:promotions"] {
        assert_eq!(now[scope], (false, preferences::SOURCE.to_owned()), "{scope}");
    }
    assert_eq!(now["email:*"], (true, "signup-form".to_owned()), "no channel-wide record is touched");
    let recorded = from_page(&audit(&t, &bea).await);
    assert_eq!(recorded.len(), 4, "{recorded:?}");
    assert!(recorded.iter().all(|(scope, granted)| !granted && !scope.ends_with(":*")), "{recorded:?}");

    // Transactional still flows on email and SMS; marketing does not.
    t.publish(&[
        json!({"idempotency_key": format!("{tag}-order"), "recipient": bea, "template": "order_shipped",
               "kind": "transactional", "topic": "order_updates", "channels": ["email"], "data": {"order_id": "1"}})
        .to_string(),
        json!({"idempotency_key": format!("{tag}-order-sms"), "recipient": bea, "template": "order_shipped",
               "kind": "transactional", "channels": ["sms"], "data": {"order_id": "2"}})
        .to_string(),
        json!({"idempotency_key": format!("{tag}-news"), "recipient": bea, "template": "weekly_digest",
               "kind": "marketing", "topic": "news", "channels": ["email"], "data": {"headline": "x"}})
        .to_string(),
    ])
    .await;
    t.wait_idle().await;
    for key in ["order", "order-sms"] {
        let (status, reason) = outcome(&t, &format!("{tag}-{key}")).await;
        assert!(matches!(status.as_str(), "sent" | "delivered"), "{key}: {status} {reason:?}");
    }
    assert_eq!(outcome(&t, &format!("{tag}-news")).await, ("suppressed".into(), Some("opted_out".into())));
    let data = provider_data().await;
    assert_eq!((emails_to(&data, &address).len(), sms_to(&data, &phone).len()), (1, 1));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_and_bad_requests_get_a_page_and_change_nothing() {
    let t = TestStack::without_functions().await;
    let (_web, url, key) = serve(&t).await;
    let tag = &t.tag;
    let (cy, dee) = (format!("cy-{tag}"), format!("dee-{tag}"));
    person(&t, &cy, json!({"email": format!("cy.{tag}@example.org")}), &[("email", Some("news"))]).await;
    person(&t, &dee, json!({"email": format!("dee.{tag}@example.org")}), &[]).await;
    let page = get(&url, &link(&key, &cy, TimeDelta::days(1)), None).await;
    let (token, csrf) = (hidden(&page.body, "t"), hidden(&page.body, "csrf"));
    let before = (consents(&t, &cy).await, audit(&t, &cy).await, consents(&t, &dee).await);

    // Links: forged (cy's token naming dee), signed by another key, expired, damaged, absent.
    let (payload, sig) = token.split_once('.').unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let text = String::from_utf8(b64.decode(payload).unwrap()).unwrap();
    let forged = format!("{}.{sig}", b64.encode(text.replace(&cy, &dee)));
    let other_key = UnsubscribeKey::new("a key that is not the stack's, 32 bytes or more").unwrap();
    let foreign = link(&other_key, &cy, TimeDelta::days(1));
    let expired = link(&key, &cy, TimeDelta::seconds(-1));
    for (label, target, status, says) in [
        ("forged", format!("/preferences?t={forged}"), 403, "This link was not issued by us"),
        ("another key", foreign, 403, "This link was not issued by us"),
        ("expired", expired.clone(), 410, "ask our support team to send you a new one"),
        ("damaged", "/preferences?t=hello".to_owned(), 400, "incomplete or damaged"),
        ("no token", "/preferences".to_owned(), 400, "incomplete or damaged"),
    ] {
        let a = get(&url, &target, None).await;
        assert_eq!(a.status, status, "{label}: {}", a.body);
        assert_secure(&a);
        assert!(a.body.contains(says) && a.body.contains("id=\"error\""), "{label}: {}", a.body);
        assert!(!a.body.contains("<form"), "{label}: no form on an error page");
    }
    // The expired page in the browser's language.
    let fr = get(&url, &expired, Some("fr-FR,fr;q=0.9,en;q=0.5")).await;
    assert!(fr.body.contains("<html lang=\"fr\">") && fr.body.contains("Ce lien a expiré"), "{}", fr.body);

    // Saves: each refused with its status, nothing recorded.
    let dee_link = link(&key, &dee, TimeDelta::days(1));
    let dee_token = dee_link.trim_start_matches("/preferences?t=");
    let expired_token = expired.trim_start_matches("/preferences?t=");
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16);
    let cases: Vec<Case> = vec![
        ("forged link", vec![("t", &forged), ("csrf", &csrf), ("stop_all", "on")], 403),
        ("expired link", vec![("t", expired_token), ("csrf", &csrf), ("stop_all", "on")], 410),
        ("no csrf", vec![("t", &token), ("stop_all", "on")], 400),
        ("bad csrf", vec![("t", &token), ("csrf", "AAAA"), ("stop_all", "on")], 403),
        ("another link's csrf", vec![("t", dee_token), ("csrf", &csrf), ("stop_all", "on")], 403),
        ("unknown topic", vec![("t", &token), ("csrf", &csrf), ("consent.weather.email", "on")], 400),
        ("unknown channel", vec![("t", &token), ("csrf", &csrf), ("consent.news.fax", "on")], 400),
        ("topic not on that channel", vec![("t", &token), ("csrf", &csrf), ("consent.news.sms", "on")], 400),
        (
            "valid and unknown",
            vec![("t", &token), ("csrf", &csrf), ("consent.promotions.email", "on"), ("consent.x.email", "on")],
            400,
        ),
        ("unknown field", vec![("t", &token), ("csrf", &csrf), ("granted", "on")], 400),
        ("bad value", vec![("t", &token), ("csrf", &csrf), ("stop_all", "yes")], 400),
    ];
    for (label, fields, status) in cases {
        let a = post(&url, &fields).await;
        assert_eq!(a.status, status, "{label}: {}", a.body);
        assert_secure(&a);
        assert!(a.body.contains("id=\"error\""), "{label}: {}", a.body);
    }
    assert_eq!(get(&url, "/preferences", None).await.headers.get("x-frame-options").map(String::as_str), Some("DENY"));
    assert_eq!(http(&url, "PUT", "/preferences", &[], "").await.status, 405);
    assert_eq!((consents(&t, &cy).await, audit(&t, &cy).await, consents(&t, &dee).await), before, "nothing changed");

    // A link for someone Herald does not know (erased): a page, and no profile written back.
    let ghost = format!("ghost-{tag}");
    let a = get(&url, &link(&key, &ghost, TimeDelta::days(1)), None).await;
    assert_eq!(a.status, 404, "{}", a.body);
    let ghost_link = link(&key, &ghost, TimeDelta::days(1));
    let ghost_token = ghost_link.trim_start_matches("/preferences?t=");
    let ghost_csrf = preferences::csrf(ghost_token, &key);
    let a = post(&url, &[("t", ghost_token), ("csrf", &ghost_csrf), ("consent.news.email", "on")]).await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert!(recipients(&t).get(&RecipientId::new(&ghost).unwrap()).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_speaks_the_persons_language_and_the_unsubscribe_page_links_to_it() {
    let t = TestStack::without_functions().await;
    let (_web, url, key) = serve(&t).await;
    let tag = &t.tag;
    let (eva, otto) = (format!("eva-{tag}"), format!("otto-{tag}"));
    person(&t, &eva, json!({"email": format!("eva.{tag}@example.org"), "locale": "fr-FR"}), &[]).await;
    person(&t, &otto, json!({"email": format!("otto.{tag}@example.org")}), &[]).await;

    // Her locale, whatever the browser asks for.
    let fr = get(&url, &link(&key, &eva, TimeDelta::days(1)), Some("de")).await;
    assert_eq!(fr.status, 200);
    for text in [
        "<html lang=\"fr\">",
        "<h1>Vos préférences de notification</h1>",
        "<legend>Actualités et sélection de la semaine</legend>",
        "<label for=\"consent-news-email\">E-mail</label>",
        "<label for=\"stop_all\">Ne plus recevoir aucun message marketing</label>",
        "<button type=\"submit\">Enregistrer les préférences</button>",
    ] {
        assert!(fr.body.contains(text), "missing {text} in {}", fr.body);
    }
    let (token, csrf) = (hidden(&fr.body, "t"), hidden(&fr.body, "csrf"));
    let saved = post(&url, &[("t", &token), ("csrf", &csrf), ("consent.news.push", "on")]).await;
    assert!(saved.body.contains("Vos préférences ont été enregistrées."), "{}", saved.body);
    assert_eq!(consents(&t, &eva).await["push:news"], (true, preferences::SOURCE.to_owned()));

    // No locale: the browser's language, else English.
    let de = get(&url, &link(&key, &otto, TimeDelta::days(1)), Some("de-AT,de;q=0.9")).await;
    assert!(de.body.contains("<html lang=\"de\">") && de.body.contains("Einstellungen speichern"), "{}", de.body);
    let en = get(&url, &link(&key, &otto, TimeDelta::days(1)), Some("pt-BR")).await;
    assert!(en.body.contains("<html lang=\"en\">") && en.body.contains("Save preferences"), "{}", en.body);

    // The one-click unsubscribe page links to the preference center, with a link that works.
    let unsubscribe = herald::domain::unsubscribe::Unsubscribe {
        recipient: RecipientId::new(&otto).unwrap(),
        channel: Channel::Email,
        topic: Some(Topic::new("news").unwrap()),
        expires_at: Utc::now() + TimeDelta::days(90),
    };
    let target = format!("/unsubscribe?t={}", herald::domain::unsubscribe::sign(&unsubscribe, &key));
    let page = get(&url, &target, None).await;
    assert_eq!(page.status, 200);
    assert_secure(&page);
    let href = page.body.split("href=\"preferences?t=").nth(1).expect("a link to the preference center");
    let token = href.split('"').next().unwrap();
    let linked = preferences::verify(token, &key, Utc::now()).unwrap();
    assert_eq!(linked.recipient.as_str(), otto);
    assert!(
        linked.expires_at <= Utc::now() + TimeDelta::days(preferences::EMAIL_LINK_DAYS),
        "no longer than an email's"
    );
    assert_eq!(get(&url, &format!("/preferences?t={token}"), None).await.status, 200);
}
