//! The demo's sections on what people see of Herald: the preference center (a signed
//! link, a save, the next notifications following it) and the in-app inbox.

use super::{Derived, Want, derived_rows, publish};
use crate::local::{Local, UNSUBSCRIBE_KEY};
use crate::web::request;
use anyhow::Context as _;
use chrono::Utc;
use herald::aws::dynamodb::DynamoLedger;
use herald::domain::unsubscribe::UnsubscribeKey;
use serde_json::json;
use std::time::Duration;

/// The value of a hidden field of a page's form.
fn hidden(page: &str, name: &str) -> anyhow::Result<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).with_context(|| format!("the page has no field {name}"))? + marker.len();
    Ok(page[start..].split('"').next().unwrap_or_default().to_owned())
}

/// rae subscribed to news by email at sign-up. Support mints her a preference link; she
/// opens it, unticks news by email and ticks offers by email, and saves (the same form
/// post her browser makes; `make test`'s browser tests do it in Chromium). The next two
/// marketing emails follow what she chose.
pub(super) async fn preference_section(local: &Local, ledger: &DynamoLedger) -> anyhow::Result<(String, usize)> {
    let idle = Duration::from_secs(90);
    eprintln!("herald demo: the preference center");
    for body in [
        json!({"type": "upsert_recipient", "recipient": "user-rae", "email": "rae@example.org", "locale": "en-GB"}),
        json!({"type": "set_consent", "recipient": "user-rae", "channel": "email", "topic": "news", "granted": true,
               "source": "signup-form"}),
    ] {
        publish(local, &body.to_string()).await?;
    }
    local.stack.wait_idle(&local.sdk, idle).await?;

    let key = UnsubscribeKey::new(local.stack.secret_value(&local.sdk, UNSUBSCRIBE_KEY).await?.trim())
        .map_err(anyhow::Error::msg)?;
    let web = local.web.url("WebhooksFunction").context("the webhook function's URL")?;
    let (link, expires) = crate::preferences::mint_link(&key, web, "user-rae", "7d", Utc::now())?;
    let target = link.strip_prefix(web).unwrap_or(&link).to_owned();
    let page = request(web, "GET", &target, &[], "").await?;
    anyhow::ensure!(page.status == 200, "the preference page answered {}", page.status);
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("t", &hidden(&page.body, "t")?)
        .append_pair("csrf", &hidden(&page.body, "csrf")?)
        .append_pair("consent.promotions.email", "on")
        .finish();
    let saved =
        request(web, "POST", "/preferences", &[("Content-Type", "application/x-www-form-urlencoded")], &form).await?;
    let saved_ok = saved.status == 200 && saved.body.contains("role=\"status\"");
    local.stack.wait_idle(&local.sdk, idle).await?;

    let marketing = |key: &str, topic: &str, headline: &str| {
        json!({"idempotency_key": key, "recipient": "user-rae", "template": "weekly_digest", "kind": "marketing",
               "topic": topic, "channels": ["email"], "data": {"headline": headline}})
        .to_string()
    };
    publish(local, &marketing("news-rae-1", "news", "Five new arrivals")).await?;
    publish(local, &marketing("offer-rae-1", "promotions", "20% off this weekend")).await?;
    local.stack.wait_idle(&local.sdk, idle).await?;

    let rows = [
        Derived {
            label: "rae: news by email (she unticked it)",
            expect: "suppressed: opted_out",
            want: Want("suppressed - opted_out"),
            key: "news-rae-1".into(),
        },
        Derived {
            label: "rae: an offer by email (she ticked it)",
            expect: "sent on email",
            want: Want("sent|delivered email -"),
            key: "offer-rae-1".into(),
        },
    ];
    let (table, mut differ) = derived_rows(ledger, &rows).await?;
    if !saved_ok {
        differ += 1;
    }
    Ok((
        format!(
            "\n\nThe preference center: rae's link, as `herald preferences link user-rae` mints it for support \
             (valid until {}):\n  {link}\n\
             rae unticks news by email, ticks offers by email and saves: {} (each change recorded with source \
             preference-center)\n{table}",
            expires.format("%Y-%m-%d %H:%M UTC"),
            if saved_ok { "saved, ok" } else { "DIFFERS (the save was not confirmed)" },
        ),
        differ,
    ))
}
