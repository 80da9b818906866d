//! `herald send-test <template> --to <email|phone|push token>`: one real send of a
//! template through a stack (deployed or local), to an address the operator names.
//!
//! The address becomes a synthetic recipient of the reserved namespace
//! `herald-test:<hash>` ([`test_recipient`]): the command publishes its
//! `upsert_recipient` (or `register_push_token`) and then a notify marked `"test": true`
//! on the stack's ingest queue, exactly as a producer would (the ingest function stays
//! the one writer; eligibility waits for a recipient that arrives after its notify).
//! Ingest accepts `test` only for that namespace. What a test send skips and what it
//! never skips is in docs/testing-sends.md.

use anyhow::{Context as _, bail};
use aws_sdk_sqs::Client;
use herald::contract::{Kind, TEST_RECIPIENT_PREFIX};
use herald::domain::{Channel, EmailAddress, PhoneNumber, Platform};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// What to send.
#[derive(Debug, Clone)]
pub struct SendTest {
    pub template: String,
    /// An email address, a phone number (E.164) or a push token.
    pub to: String,
    /// `None`: read from `to` (an `@`: email; a leading `+`: SMS; else push).
    pub channel: Option<Channel>,
    pub locale: Option<String>,
    pub data: Map<String, Value>,
    pub kind: Kind,
    pub topic: Option<String>,
    /// Push: the token's platform.
    pub platform: Option<Platform>,
}

/// What was published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub queue_url: String,
    pub recipient: String,
    pub channel: Channel,
    /// `herald message <key>` follows it.
    pub idempotency_key: String,
}

/// The synthetic recipient of an address: the same address is always the same recipient,
/// and the id does not reveal it (a hash, as the suppression list keeps addresses).
pub fn test_recipient(channel: Channel, to: &str) -> String {
    let digest = Sha256::digest(format!("{}:{to}", channel.as_str()).as_bytes());
    format!("{TEST_RECIPIENT_PREFIX}{}", hex::encode(&digest[..10]))
}

fn channel_of(to: &str) -> Channel {
    if to.contains('@') {
        Channel::Email
    } else if to.starts_with('+') {
        Channel::Sms
    } else {
        Channel::Push
    }
}

/// The bodies to publish, in order: the recipient's contact point, then the notify.
pub fn bodies(t: &SendTest, idempotency_key: &str) -> anyhow::Result<(Channel, String, Vec<String>)> {
    let channel = t.channel.unwrap_or_else(|| channel_of(&t.to));
    // The address as suppression compares it (so `Ana@Example.org` and `ana@example.org` are
    // one recipient), and the contact as it is sent to.
    let (address, contact) = match channel {
        Channel::Email => {
            let address = EmailAddress::new(&t.to).map_err(|e| anyhow::anyhow!("--to is not an email address: {e}"))?;
            (address.as_str().to_lowercase(), Some(("email", address.as_str().to_owned())))
        }
        Channel::Sms => {
            let number = PhoneNumber::new(&t.to).map_err(|e| anyhow::anyhow!("--to is not a phone number: {e}"))?;
            (number.as_str().to_owned(), Some(("phone", number.as_str().to_owned())))
        }
        Channel::Push => (t.to.clone(), None),
        Channel::Inbox => bail!("send-test sends to an address: email, sms or push"),
    };
    let recipient = test_recipient(channel, &address);
    let mut upsert = json!({"type": "upsert_recipient", "recipient": recipient});
    if let Some(l) = &t.locale {
        upsert["locale"] = l.clone().into();
    }
    if let Some((field, value)) = contact {
        upsert[field] = value.into();
    }
    let mut bodies = vec![upsert.to_string()];
    if channel == Channel::Push {
        let Some(platform) = t.platform else { bail!("a push token needs --platform apns|apns_sandbox|fcm") };
        bodies.push(
            json!({"type": "register_push_token", "recipient": recipient, "platform": platform, "token": t.to})
                .to_string(),
        );
    }
    let mut notify = json!({
        "idempotency_key": idempotency_key, "recipient": recipient, "template": t.template, "kind": t.kind,
        "channels": [channel], "data": t.data, "test": true,
    });
    if let Some(topic) = &t.topic {
        notify["topic"] = topic.clone().into();
    }
    bodies.push(notify.to_string());
    // Refused here rather than by ingest, with the same rules.
    for body in &bodies {
        herald::contract::IngestMessage::parse(body).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok((channel, recipient, bodies))
}

/// The stack's ingest queue: `<stack>-IngestQueue…` but not its dead-letter queue (names
/// as `herald dlq` finds them: CloudFormation's `<stack>-IngestQueue-<suffix>`, the local
/// stack's `<stack>-IngestQueue`).
pub async fn ingest_queue(sqs: &Client, stack: &str) -> anyhow::Result<String> {
    let prefix = format!("{stack}-IngestQueue");
    let urls =
        sqs.list_queues().queue_name_prefix(&prefix).max_results(1000).send().await?.queue_urls.unwrap_or_default();
    let found: Vec<String> = urls
        .into_iter()
        .filter(|u| !u.rsplit('/').next().is_some_and(|n| n.starts_with(&format!("{prefix}DeadLetterQueue"))))
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no queue named {prefix}… in this account and region (is the stack named {stack:?}?)"),
        _ => bail!("{} queues are named {prefix}…: {}", found.len(), found.join(", ")),
    }
}

/// Publishes the test send on `stack`'s ingest queue; `idempotency_key` names it.
pub async fn send(sqs: &Client, stack: &str, t: &SendTest, idempotency_key: &str) -> anyhow::Result<Sent> {
    let (channel, recipient, bodies) = bodies(t, idempotency_key)?;
    let queue_url = ingest_queue(sqs, stack).await?;
    for body in bodies {
        sqs.send_message().queue_url(&queue_url).message_body(body).send().await.context("SendMessage")?;
    }
    Ok(Sent { queue_url, recipient, channel, idempotency_key: idempotency_key.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(to: &str) -> SendTest {
        SendTest {
            template: "order_shipped".into(),
            to: to.into(),
            channel: None,
            locale: Some("fr-FR".into()),
            data: Map::new(),
            kind: Kind::Marketing,
            topic: None,
            platform: None,
        }
    }

    #[test]
    fn the_address_picks_the_channel_and_a_stable_recipient_that_does_not_reveal_it() {
        let (channel, recipient, published) = bodies(&t("ana@example.org"), "k1").unwrap();
        assert_eq!(channel, Channel::Email);
        assert!(recipient.starts_with("herald-test:") && !recipient.contains("ana"), "{recipient}");
        assert_eq!(recipient, test_recipient(Channel::Email, "ana@example.org"));
        assert_eq!(bodies(&t("Ana@Example.org"), "k2").unwrap().1, recipient, "one person, however spelt");
        assert_eq!(published.len(), 2);
        let notify: Value = serde_json::from_str(&published[1]).unwrap();
        assert_eq!((notify["test"].as_bool(), notify["channels"][0].as_str()), (Some(true), Some("email")));
        assert_eq!(bodies(&t("+15555550100"), "k").unwrap().0, Channel::Sms);
        let err = bodies(&t("token-abc"), "k").unwrap_err().to_string();
        assert!(err.contains("--platform"), "{err}");
        let push = SendTest { platform: Some(Platform::Fcm), ..t("token-abc") };
        let (channel, _, b) = bodies(&push, "k").unwrap();
        assert_eq!((channel, b.len()), (Channel::Push, 3));
        assert!(bodies(&t("not an address@"), "k").is_err());
    }
}
