//! `herald inbox`: a user token for support and the demo, and a person's inbox as the
//! team's app sees it (through the inbox API, with such a token).

use anyhow::{Context as _, bail};
use aws_config::SdkConfig;
use aws_smithy_runtime_api::client::http::HttpConnector as _;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::byte_stream::ByteStream;
use chrono::{DateTime, TimeDelta, Utc};
use herald::domain::RecipientId;
use herald::domain::inbox::UserClaims;
use inbox::token::{InboxKey, mint};

/// The longest token `herald inbox token` mints: a support token is short-lived.
pub const MAX_TTL: TimeDelta = TimeDelta::days(30);

/// A user token for `recipient`, valid from `now` for `ttl`, signed with the stack's inbox
/// token key read from Secrets Manager (`secret`: its ARN or name).
pub async fn token(
    sdk: &SdkConfig,
    secret: &str,
    recipient: &str,
    ttl: TimeDelta,
    now: DateTime<Utc>,
) -> anyhow::Result<String> {
    if ttl <= TimeDelta::zero() || ttl > MAX_TTL {
        bail!("--ttl must be more than nothing and at most 30 days");
    }
    let recipient = RecipientId::new(recipient)?;
    let raw = aws_sdk_secretsmanager::Client::new(sdk)
        .get_secret_value()
        .secret_id(secret)
        .send()
        .await
        .with_context(|| format!("reading the inbox token key {secret}"))?
        .secret_string
        .context("the inbox token key has no SecretString")?;
    let key = InboxKey::new(&raw).map_err(anyhow::Error::msg)?;
    mint(&key, &UserClaims::for_recipient(&recipient, now, ttl)).map_err(anyhow::Error::msg)
}

/// A GET of the inbox API at `base` (its Function URL) with `token`: the status and the
/// JSON body. On the SDK's own HTTP client (rustls on ring): no second HTTP stack.
pub async fn get(base: &str, path_and_query: &str, token: &str) -> anyhow::Result<(u16, serde_json::Value)> {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let url = format!("{}/{}", base.trim_end_matches('/'), path_and_query.trim_start_matches('/'));
    let mut request = HttpRequest::get(url.as_str()).with_context(|| format!("GET {url}"))?;
    request.headers_mut().insert("authorization", format!("Bearer {token}"));
    let connector =
        aws_smithy_http_client::Connector::builder().tls_provider(Provider::Rustls(CryptoMode::Ring)).build();
    let response = tokio::time::timeout(std::time::Duration::from_secs(30), connector.call(request))
        .await
        .with_context(|| format!("GET {url}: no answer"))?
        .with_context(|| format!("GET {url}"))?;
    let status = response.status().as_u16();
    let body = ByteStream::new(response.into_body()).collect().await.context("reading the answer")?.into_bytes();
    let json = serde_json::from_slice(&body).with_context(|| format!("GET {url}: HTTP {status}, not JSON"))?;
    Ok((status, json))
}

/// The person's messages, newest first, one line each (what `herald inbox list` prints).
pub async fn list(base: &str, token: &str, status: &str, limit: usize) -> anyhow::Result<String> {
    let (code, count) = get(base, "v1/messages/count", token).await?;
    if code != 200 {
        bail!("the inbox API answered {code}: {count}");
    }
    let (code, page) = get(base, &format!("v1/messages?status={status}&limit={limit}"), token).await?;
    if code != 200 {
        bail!("the inbox API answered {code}: {page}");
    }
    Ok(render(&count, &page))
}

/// The lines of a listing: the counts, then each message.
pub fn render(count: &serde_json::Value, page: &serde_json::Value) -> String {
    let mut out = format!("unseen {} unread {}\n", count["unseen"], count["unread"]);
    for m in page["messages"].as_array().into_iter().flatten() {
        let state = if m["read_at"].is_string() {
            "read"
        } else if m["seen_at"].is_string() {
            "seen"
        } else {
            "new"
        };
        out.push_str(&format!(
            "{} {:<4} {} | {}{}\n",
            m["created_at"].as_str().unwrap_or_default(),
            state,
            m["title"].as_str().unwrap_or_default(),
            m["body"].as_str().unwrap_or_default().replace('\n', " "),
            m["action_url"].as_str().map(|u| format!(" -> {u}")).unwrap_or_default(),
        ));
    }
    if let Some(next) = page["next_cursor"].as_str() {
        out.push_str(&format!("more: cursor={next}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_listing_reads_as_lines() {
        let count = json!({"unseen": 1, "unread": 2});
        let page = json!({"messages": [
            {"created_at": "2026-11-30T10:00:00Z", "title": "Shipped", "body": "Order 1\nsoon", "action_url": "https://x/1", "seen_at": "2026-11-30T10:01:00Z", "read_at": null},
            {"created_at": "2026-11-30T09:00:00Z", "title": "Hi", "body": "Welcome", "action_url": null, "seen_at": null, "read_at": null},
        ], "next_cursor": "abc"});
        assert_eq!(
            render(&count, &page),
            "unseen 1 unread 2\n\
             2026-11-30T10:00:00Z seen Shipped | Order 1 soon -> https://x/1\n\
             2026-11-30T09:00:00Z new  Hi | Welcome\n\
             more: cursor=abc\n"
        );
    }
}
