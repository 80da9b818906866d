//! The preference center from the command line: `topics.toml` (check, push) and the
//! signed link support staff send a person (`herald preferences link`).

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use herald::aws::dynamodb::DynamoTemplates;
use herald::domain::RecipientId;
use herald::domain::duration::parse_duration;
use herald::domain::preferences::{self, PreferenceLink};
use herald::domain::topics::Topics;
use herald::domain::unsubscribe::UnsubscribeKey;
use std::path::Path;

/// The link's life when `--ttl` is not given.
pub const DEFAULT_TTL: &str = "7d";
/// The longest life a minted link may have: a link is a bearer credential.
pub const MAX_TTL_DAYS: i64 = 90;

/// Reads `topics.toml`; a missing file is no topics when `missing_ok`.
pub fn load_topics(path: &Path, missing_ok: bool) -> anyhow::Result<Topics> {
    if missing_ok && !path.exists() {
        return Ok(Topics::default());
    }
    crate::templates::read_toml(path, "a valid topics file")
}

/// The file's topics, or every problem it has (one line each, naming the file).
pub fn check_topics(path: &Path, missing_ok: bool) -> anyhow::Result<Result<Topics, Vec<String>>> {
    let topics = load_topics(path, missing_ok)?;
    let problems = topics.check();
    if problems.is_empty() {
        Ok(Ok(topics))
    } else {
        Ok(Err(problems.into_iter().map(|p| format!("{}: {p}", path.display())).collect()))
    }
}

/// Checks `topics.toml` and stores it in the templates table, where the webhook function
/// reads it (within a minute, its cache).
pub async fn push_topics(store: &DynamoTemplates, path: &Path, now: DateTime<Utc>) -> anyhow::Result<String> {
    let topics = match check_topics(path, false)? {
        Ok(topics) => topics,
        Err(problems) => bail!("nothing pushed, {} problem(s):\n{}", problems.len(), problems.join("\n")),
    };
    store.put_topics(&topics, now).await?;
    Ok(format!("pushed topics ({} topic(s))", topics.topics.len()))
}

/// A signed link to `recipient`'s preference center on the webhook function at
/// `base_url`, working for `ttl` (`"7d"`, `"12h"`; at most [`MAX_TTL_DAYS`] days).
pub fn mint_link(
    key: &UnsubscribeKey,
    base_url: &str,
    recipient: &str,
    ttl: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<(String, DateTime<Utc>)> {
    let recipient = RecipientId::new(recipient)?;
    let ttl = parse_duration(ttl).map_err(|e| anyhow::anyhow!("--ttl: {e}"))?;
    if ttl > chrono::TimeDelta::days(MAX_TTL_DAYS) {
        bail!("--ttl: at most {MAX_TTL_DAYS}d: a link lets whoever holds it change the person's preferences");
    }
    if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
        bail!("--url must be the webhook function's URL (https://...)");
    }
    let link = PreferenceLink::new(recipient, now, ttl);
    Ok((preferences::url(base_url, &preferences::sign(&link, key)), link.expires_at))
}

/// The signing key: the value itself (`HERALD_UNSUBSCRIBE_KEY`, as `herald local` prints it),
/// else read from the stack's secret (`HERALD_UNSUBSCRIBE_KEY_SECRET`, its ARN or name).
pub async fn signing_key(value: Option<String>, secret: Option<String>) -> anyhow::Result<UnsubscribeKey> {
    let raw = match (value, secret) {
        (Some(value), _) => value,
        (None, Some(secret)) => {
            let sdk = herald::aws::sdk_config().await;
            let out = aws_sdk_secretsmanager::Client::new(&sdk)
                .get_secret_value()
                .secret_id(&secret)
                .send()
                .await
                .with_context(|| format!("reading the secret {secret}"))?;
            out.secret_string.with_context(|| format!("the secret {secret} has no SecretString"))?
        }
        (None, None) => bail!(
            "no signing key: give --key-secret (the stack's UnsubscribeKey secret, or HERALD_UNSUBSCRIBE_KEY_SECRET) \
             or HERALD_UNSUBSCRIBE_KEY"
        ),
    };
    UnsubscribeKey::new(raw.trim()).map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::repo_root;

    #[test]
    fn the_shipped_topics_file_passes_its_checks() {
        let topics = check_topics(&repo_root().join("topics.toml"), false).unwrap().unwrap();
        assert!(topics.get("news").is_some(), "{topics:?}");
        assert!(check_topics(Path::new("/nonexistent/topics.toml"), true).unwrap().unwrap().topics.is_empty());
        assert!(check_topics(Path::new("/nonexistent/topics.toml"), false).is_err());
    }

    #[test]
    fn a_minted_link_verifies_for_its_recipient_until_its_ttl() {
        let key = UnsubscribeKey::new("0123456789abcdef0123456789abcdef").unwrap();
        let now = Utc::now();
        let (url, until) = mint_link(&key, "https://h.example/", "user-42", "7d", now).unwrap();
        let token = url.strip_prefix("https://h.example/preferences?t=").unwrap();
        let link = preferences::verify(token, &key, now).unwrap();
        assert_eq!(
            (link.recipient.as_str(), until.timestamp()),
            ("user-42", (now + chrono::TimeDelta::days(7)).timestamp())
        );
        assert!(mint_link(&key, "https://h.example", "user-42", "91d", now).is_err(), "too long");
        assert!(mint_link(&key, "https://h.example", "user-42", "soon", now).is_err());
        assert!(mint_link(&key, "https://h.example", "a b", "1d", now).is_err());
        assert!(mint_link(&key, "h.example", "user-42", "1d", now).is_err());
    }
}
