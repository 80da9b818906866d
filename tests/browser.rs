//! The pages people see, in a real browser: Debian's headless Chromium driven through
//! chromedriver (`driver`), against the webhook function served on its local Function URL,
//! with the stack on moto. Used with the keyboard only (Tab, Space, Enter).
//!
//! Each test also takes a PNG of the pages it visits: into `HERALD_SCREENSHOTS` when set
//! (`make screenshots` sets docs/img), else under the target directory.

mod driver;

use crate::support::*;
use crate::webhooks::{audit_sources, link_for, news_consent};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::TimeDelta;
use driver::{Browser, png_size};
use herald_cli::web::WebFront;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unsubscribe_page_revokes_consent_with_the_keyboard_alone() {
    let t = TestStack::without_functions().await;
    let web = WebFront::start(&t.stack, &t.sdk).await.unwrap();
    let url = web.url("WebhooksFunction").expect("the webhook function is served").to_owned();
    let (ana, bob) = (format!("ana-{}", t.tag), format!("bob-{}", t.tag));
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
    browser.open(&format!("{url}/unsubscribe?t={token}")).await.unwrap();
    assert_eq!(browser.title().await.unwrap(), "Unsubscribe");
    let text = browser.text().await.unwrap();
    assert!(text.contains("Stop receiving email messages about news?"), "{text}");
    screenshot(&browser, "unsubscribe").await;
    assert_eq!(news_consent(&t, &ana).await, None);

    // ...the person confirms with Tab and Enter: the form's POST revokes exactly that consent.
    browser.activate("Unsubscribe").await.unwrap();
    assert_eq!(browser.title().await.unwrap(), "Unsubscribed");
    let text = browser.text().await.unwrap();
    assert!(text.contains("You will no longer receive email messages about news."), "{text}");
    screenshot(&browser, "unsubscribe-done").await;
    assert_eq!(news_consent(&t, &ana).await, Some((false, webhooks::UNSUBSCRIBE_SOURCE.to_owned())));
    assert_eq!(audit_sources(&t, &ana).await, [webhooks::UNSUBSCRIBE_SOURCE]);
    assert_eq!(news_consent(&t, &bob).await, None);

    browser.quit().await.unwrap();
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
