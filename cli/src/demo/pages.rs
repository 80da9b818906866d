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

/// rae's order goes to her in-app inbox (`"channels": ["inbox"]`); the app lists her inbox
/// with a user token her backend signed (here `herald inbox token`), and she reads it: the
/// ledger moves to `opened`, as an email open does.
pub(super) async fn inbox_section(local: &Local, ledger: &DynamoLedger) -> anyhow::Result<(String, usize)> {
    let idle = Duration::from_secs(90);
    eprintln!("herald demo: the in-app inbox");
    let order = |key: &str, order: &str| {
        json!({"idempotency_key": key, "recipient": "user-rae", "template": "order_shipped", "kind": "transactional",
               "channels": ["inbox"], "data": {"order_id": order, "eta": "on Friday"}})
        .to_string()
    };
    publish(local, &order("order-2001-inbox", "2001")).await?;
    publish(local, &order("order-2002-inbox", "2002")).await?;
    local.stack.wait_idle(&local.sdk, idle).await?;

    let url = local.web.url("InboxFunction").context("the inbox API's URL")?;
    let secret = local.stack.secret(crate::local::INBOX_TOKEN_KEY)?;
    let token = crate::inbox::token(&local.sdk, secret, "user-rae", chrono::TimeDelta::minutes(10), Utc::now()).await?;
    let before = crate::inbox::list(url, &token, "all", 10).await?;
    let (status, page) = crate::inbox::get(url, "v1/messages?limit=10", &token).await?;
    anyhow::ensure!(status == 200, "the inbox API answered {status}");
    // The oldest of the two (the list is newest first): order 2001.
    let first = page["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["data"]["order_id"] == "2001"))
        .and_then(|m| m["id"].as_str())
        .context("order 2001 is not in rae's inbox")?
        .to_owned();
    let bearer = format!("Bearer {token}");
    let read = request(url, "POST", &format!("/v1/messages/{first}/read"), &[("Authorization", &bearer)], "").await?;
    local.stack.wait_idle(&local.sdk, idle).await?;
    let after = crate::inbox::list(url, &token, "all", 10).await?;

    let rows = [
        Derived {
            label: "rae: order 2001 (inbox), then read",
            expect: "delivered to the inbox, opened",
            want: Want("opened inbox -"),
            key: "order-2001-inbox".into(),
        },
        Derived {
            label: "rae: order 2002 (inbox)",
            expect: "delivered to the inbox",
            want: Want("delivered inbox -"),
            key: "order-2002-inbox".into(),
        },
    ];
    let (table, mut differ) = derived_rows(ledger, &rows).await?;
    let counts_ok = before.starts_with("unseen 2 unread 2") && after.starts_with("unseen 1 unread 1");
    if read.status != 200 || !counts_ok {
        differ += 1;
    }
    let indent = |s: &str| s.lines().map(|l| format!("  {l}\n")).collect::<String>();
    Ok((
        format!(
            "\n\nThe in-app inbox: two orders for rae with \"channels\": [\"inbox\"]; her app lists them \
             (herald inbox list user-rae, through the inbox API with a user token):\n{}\
             she reads order 2001 (POST /v1/messages/<id>/read: {}), and the app lists again: {}\n{}{table}",
            indent(&before),
            read.status,
            if counts_ok { "ok" } else { "DIFFERS (expected 2 unread, then 1)" },
            indent(&after),
        ),
        differ,
    ))
}
