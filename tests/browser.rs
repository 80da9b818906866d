//! The pages people see, in a real browser: Debian's headless Chromium driven through
//! chromedriver (`driver`), against the webhook function served on its local Function URL,
//! with the stack on moto: the one-click unsubscribe page and the preference center, used
//! with the keyboard only (Tab, Space, Enter), their error pages for forged and expired
//! links, and what a save changes (the consent records, the next notifications).
//!
//! Each test also takes a PNG of the pages it visits: into `HERALD_SCREENSHOTS` when set
//! (`make screenshots` sets docs/img), else under the target directory.

mod driver;

use crate::preferences::{audit, consents, from_page, link, outcome, person, serve};
use crate::support::*;
use crate::webhooks::{audit_sources, link_for, news_consent};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::TimeDelta;
use driver::{Browser, png_size};
use herald::domain::preferences;
use serde_json::json;
use std::path::PathBuf;

/// Where the screenshot `name` goes.
fn screenshot_path(name: &str) -> PathBuf {
    let dir = std::env::var_os("HERALD_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots"));
    dir.join(format!("{name}.png"))
}

/// Takes a screenshot of the page and checks it is a PNG of the page's size.
async fn screenshot(browser: &Browser, name: &str) {
    let png = browser.screenshot(Some(&screenshot_path(name))).await.unwrap();
    let (width, height) = png_size(&png).expect("a PNG");
    assert!(width >= 320 && height >= 100, "{name}: {width}x{height}");
}

/// `token` changed to name `other` instead of `who`, its signature kept.
fn forge(token: &str, who: &str, other: &str) -> String {
    let (payload, tag) = token.split_once('.').unwrap();
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert!(text.contains(who), "the payload names the recipient");
    format!("{}.{tag}", URL_SAFE_NO_PAD.encode(text.replace(who, other)))
}

/// The preference center's topic names (topics.toml) and its words for "email" and the switch.
const NEWS: &str = "News and the weekly digest";
const OFFERS: &str = "Offers and sales";
const STOP_ALL: &str = "Stop all marketing messages";
const SAVE: &str = "Save preferences";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unsubscribe_page_revokes_consent_with_the_keyboard_alone() {
    let t = TestStack::without_functions().await;
    let (_web, url, _key) = serve(&t).await;
    let (ana, bob) = (format!("ana-{}", t.tag), format!("bob-{}", t.tag));
    person(&t, &ana, json!({"email": format!("ana.{}@example.org", t.tag)}), &[("email", Some("news"))]).await;
    let token = link_for(&t, &ana, TimeDelta::days(30)).await;
    let browser = Browser::start().await.unwrap();

    // Nothing but loopback: any other address fails in the browser.
    let outside = browser.open("http://192.0.2.1/").await.expect_err("an outside address is unreachable");
    assert!(outside.to_string().contains("ERR_"), "{outside:#}");

    // A forged link (naming bob with ana's signature) and an expired one get the error page.
    let expired = link_for(&t, &ana, TimeDelta::seconds(-1)).await;
    for (name, link, why) in
        [("forged", forge(&token, &ana, &bob), "not one Herald signed"), ("expired", expired, "has expired")]
    {
        browser.open(&format!("{url}/unsubscribe?t={link}")).await.unwrap();
        assert_eq!(browser.title().await.unwrap(), "This link cannot be used", "{name}");
        let text = browser.text().await.unwrap();
        assert!(text.contains(why), "{name}: {text}");
        assert!(browser.tab_to(None, "Unsubscribe").await.is_err(), "{name}: no form to submit");
        if name == "forged" {
            screenshot(&browser, "unsubscribe-forged").await;
        }
    }

    // Opening the link changes nothing (mail scanners follow links)...
    let signup = Some((true, "signup-form".to_owned()));
    browser.open(&format!("{url}/unsubscribe?t={token}")).await.unwrap();
    assert_eq!(browser.title().await.unwrap(), "Unsubscribe");
    let text = browser.text().await.unwrap();
    assert!(text.contains("Stop receiving email messages about news?"), "{text}");
    screenshot(&browser, "unsubscribe").await;
    assert_eq!(news_consent(&t, &ana).await, signup);

    // ...the person confirms with Tab and Enter: the form's POST revokes exactly that consent.
    browser.activate("Unsubscribe").await.unwrap();
    assert_eq!(browser.title().await.unwrap(), "Unsubscribed");
    let text = browser.text().await.unwrap();
    assert!(text.contains("You will no longer receive email messages about news."), "{text}");
    screenshot(&browser, "unsubscribe-done").await;
    assert_eq!(news_consent(&t, &ana).await, Some((false, webhooks::UNSUBSCRIBE_SOURCE.to_owned())));
    assert_eq!(audit_sources(&t, &ana).await, ["signup-form", webhooks::UNSUBSCRIBE_SOURCE]);
    assert_eq!(news_consent(&t, &bob).await, None);

    // Its link to the preference center (followed with Tab and Enter) shows the news by email off.
    browser.activate("Choose what else you receive").await.unwrap();
    assert_eq!(browser.title().await.unwrap(), "Your notification preferences");
    assert!(!browser.checked(Some(NEWS), "Email").await.unwrap());

    browser.quit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preference_center_with_the_keyboard_alone_and_the_next_notifications_follow_it() {
    let t = TestStack::new().await;
    let (_web, url, key) = serve(&t).await;
    let tag = &t.tag;
    let (ana, address) = (format!("ana-{tag}"), format!("ana.{tag}@example.org"));
    person(&t, &ana, json!({"email": address}), &[("email", Some("news"))]).await;
    let bea = format!("bea-{tag}");
    person(&t, &bea, json!({"email": format!("bea.{tag}@example.org"), "locale": "fr-FR"}), &[]).await;
    let browser = Browser::start().await.unwrap();

    // A forged link (ana's, changed to name bea) and an expired one: their error page, no form.
    let page = format!("{url}{}", link(&key, &ana, TimeDelta::days(1)));
    let token = page.split_once("t=").unwrap().1;
    let forged = format!("{url}/preferences?t={}", forge(token, &ana, &bea));
    let expired = format!("{url}{}", link(&key, &ana, TimeDelta::seconds(-1)));
    for (name, target, title, says) in [
        ("forged", forged, "This link cannot be used", "This link was not issued by us"),
        ("expired", expired, "This link has expired", "ask our support team to send you a new one"),
    ] {
        browser.open(&target).await.unwrap();
        assert_eq!(browser.title().await.unwrap(), title, "{name}");
        let error = browser.text_of("#error").await.unwrap().unwrap_or_default();
        assert!(error.contains(says), "{name}: {error}");
        assert!(browser.tab_to(None, SAVE).await.is_err(), "{name}: no form");
        screenshot(&browser, &format!("preferences-{name}")).await;
    }
    let before = audit(&t, &bea).await.len();
    assert_eq!(before, 0, "the forged link wrote nothing for bea");
    let before = audit(&t, &ana).await;

    // The page shows what ana gets now.
    browser.open(&page).await.unwrap();
    assert_eq!(browser.title().await.unwrap(), "Your notification preferences");
    assert_eq!(browser.lang().await.unwrap(), "en");
    assert!(browser.checked(Some(NEWS), "Email").await.unwrap());
    assert!(!browser.checked(Some(OFFERS), "Email").await.unwrap());
    assert!(!browser.checked(None, STOP_ALL).await.unwrap());
    screenshot(&browser, "preferences").await;

    // Two toggles with Tab and Space (news by email off, offers by email on), the focus drawn
    // where it is; saved with Enter.
    browser.set_checkbox(Some(NEWS), "Email", false).await.unwrap();
    let (width, style) = browser.focus_outline().await.unwrap();
    assert!(width >= 2.0 && style != "none", "the focused checkbox has no visible outline: {width}px {style}");
    browser.set_checkbox(Some(OFFERS), "Email", true).await.unwrap();
    assert_eq!(audit(&t, &ana).await, before, "nothing is recorded before saving");
    browser.activate(SAVE).await.unwrap();
    let status = browser.text_of("[role=status]").await.unwrap();
    assert_eq!(status.as_deref(), Some("Your preferences have been saved."));
    assert!(!browser.checked(Some(NEWS), "Email").await.unwrap());
    assert!(browser.checked(Some(OFFERS), "Email").await.unwrap());
    screenshot(&browser, "preferences-saved").await;

    // The two changes, and nothing else, each recorded with the page's source.
    let now = consents(&t, &ana).await;
    assert_eq!(now["email:news"], (false, preferences::SOURCE.to_owned()));
    assert_eq!(now["email:promotions"], (true, preferences::SOURCE.to_owned()));
    let mut recorded = from_page(&audit(&t, &ana).await);
    recorded.sort();
    assert_eq!(recorded, [("email:news".to_owned(), false), ("email:promotions".to_owned(), true)]);

    // The next notifications follow: the offer is emailed, the news is not.
    let notify = |key: String, topic: &str, headline: &str| {
        json!({"idempotency_key": key, "recipient": ana, "template": "weekly_digest", "kind": "marketing",
               "topic": topic, "channels": ["email"], "data": {"headline": headline}})
        .to_string()
    };
    let (offer, news) = (format!("{tag}-offer"), format!("{tag}-news"));
    t.publish(&[notify(offer.clone(), "promotions", "Spring sale"), notify(news.clone(), "news", "New arrivals")])
        .await;
    t.wait_idle().await;
    let (status, reason) = outcome(&t, &offer).await;
    assert!(matches!(status.as_str(), "sent" | "delivered"), "{status} {reason:?}");
    assert_eq!(outcome(&t, &news).await, ("suppressed".into(), Some("opted_out".into())));
    let data = provider_data().await;
    let emails = emails_to(&data, &address);
    assert_eq!(emails.len(), 1);
    assert!(emails[0].to_string().contains("Spring sale"), "{}", emails[0]);

    // The same page in bea's language (her profile's locale).
    browser.open(&format!("{url}{}", link(&key, &bea, TimeDelta::days(1)))).await.unwrap();
    assert_eq!(browser.lang().await.unwrap(), "fr");
    assert_eq!(browser.title().await.unwrap(), "Vos préférences de notification");
    screenshot(&browser, "preferences-fr").await;

    browser.quit().await.unwrap();
    t.stop().await;
}

/// The driver itself, on a page served here: labels found per fieldset (and ambiguous ones
/// refused), checkboxes set with Tab and Space, a control Tab cannot reach reported as such,
/// and the form posted with Enter carrying what was checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_uses_forms_with_the_keyboard_alone() {
    const FORM: &str = r#"<!doctype html><html lang="en"><head><title>Form</title></head><body>
        <form method="post" action="/save">
        <fieldset><legend>Product news</legend>
          <input type="checkbox" id="n-e" name="consent.news.email" checked><label for="n-e">Email</label>
          <input type="checkbox" id="n-s" name="consent.news.sms"><label for="n-s">SMS</label></fieldset>
        <fieldset><legend>Offers</legend>
          <input type="checkbox" id="o-e" name="consent.offers.email"><label for="o-e">Email</label></fieldset>
        <input type="checkbox" id="skip" name="skip" tabindex="-1"><label for="skip">Mouse only</label>
        <label><input type="checkbox" name="stop_all"> Stop all marketing</label>
        <button type="submit">Save</button></form></body></html>"#;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            // The head, then the body by its length.
            let body = loop {
                let n = stream.read(&mut buf).await.unwrap_or(0);
                raw.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&raw).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() >= length || n == 0 {
                        break (head.starts_with("POST /save "), body.to_owned());
                    }
                } else if n == 0 {
                    break (false, String::new());
                }
            };
            let page = match body {
                (true, form) => format!("<!doctype html><title>Saved</title><pre>{form}</pre>"),
                (false, _) => FORM.to_owned(),
            };
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        }
    });
    let browser = Browser::start().await.unwrap();
    browser.open(&format!("{url}/")).await.unwrap();
    assert_eq!((browser.title().await.unwrap(), browser.lang().await.unwrap()), ("Form".to_owned(), "en".to_owned()));

    let ambiguous = browser.checked(None, "Email").await.expect_err("two controls are labelled Email");
    assert!(ambiguous.to_string().contains("2 controls labelled \"Email\""), "{ambiguous}");
    assert!(browser.checked(Some("Offers"), "SMS").await.is_err(), "no SMS among the offers");
    let unreachable = browser.tab_to(None, "Mouse only").await.expect_err("tabindex=-1 is out of the Tab order");
    assert!(unreachable.to_string().contains("did not get the focus"), "{unreachable}");

    browser.set_checkbox(Some("Product news"), "Email", false).await.unwrap();
    browser.set_checkbox(Some("Offers"), "Email", true).await.unwrap();
    // Reached by keyboard, the focus is drawn (Chromium's own ring on an unstyled page).
    assert_ne!(browser.focus_outline().await.unwrap().1, "none");
    browser.set_checkbox(Some("Offers"), "Email", true).await.unwrap();
    assert_eq!(
        (browser.checked(Some("Product news"), "Email").await.unwrap(), browser.checked(None, "SMS").await.unwrap()),
        (false, false)
    );
    assert!(!browser.checked(None, "Stop all marketing").await.unwrap());
    browser.activate("Save").await.unwrap();
    assert_eq!(browser.title().await.unwrap(), "Saved");
    assert_eq!(browser.text_of("pre").await.unwrap().as_deref(), Some("consent.offers.email=on"));
    assert_eq!(browser.text_of("form").await.unwrap(), None);

    browser.quit().await.unwrap();
    server.abort();
}
