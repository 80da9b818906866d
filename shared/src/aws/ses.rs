//! SES v2 adapter: `SendEmail` with a configuration set and message tags, sent once per
//! call (the SDK's retries are off: a retry could be a second email).

use crate::aws::classify;
use crate::ports::{EmailMessage, EmailSender, PortError, PortResult};
use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::config::retry::RetryConfig;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message, MessageHeader, MessageTag};

#[derive(Debug, Clone)]
pub struct SesEmail {
    client: Client,
    configuration_set: Option<String>,
}

impl SesEmail {
    /// `client` as built from the shared configuration. The adapter keeps a copy of it with
    /// the SDK's retries off, made once here: a retry after a lost answer, a timeout or a
    /// 500 for a send that happened would be a second email. Herald's own retry path (the
    /// record back to its queue with back-off, claimed again in the ledger) decides instead.
    pub fn new(client: Client, configuration_set: Option<String>) -> Self {
        let once = client.config().to_builder().retry_config(RetryConfig::disabled()).build();
        Self { client: Client::from_conf(once), configuration_set }
    }
}

fn utf8(data: &str) -> Result<Content, PortError> {
    Content::builder().data(data).charset("UTF-8").build().map_err(|e| PortError::Unknown(e.into()))
}

impl EmailSender for SesEmail {
    async fn send(&self, m: &EmailMessage) -> PortResult<String> {
        let headers = m
            .headers
            .iter()
            .map(|(name, value)| MessageHeader::builder().name(name).value(value).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PortError::Unknown(e.into()))?;
        let message = Message::builder()
            .subject(utf8(&m.content.subject)?)
            .body(Body::builder().html(utf8(&m.content.html)?).text(utf8(&m.content.text)?).build())
            .set_headers((!headers.is_empty()).then_some(headers))
            .build();
        let tags = m
            .tags
            .iter()
            .map(|(name, value)| MessageTag::builder().name(name).value(value).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PortError::Unknown(e.into()))?;
        let out = self
            .client
            .send_email()
            .from_email_address(&m.from)
            .set_reply_to_addresses(m.reply_to.clone().map(|r| vec![r]))
            .destination(Destination::builder().to_addresses(m.to.as_str()).build())
            .content(EmailContent::builder().simple(message).build())
            .set_email_tags(Some(tags))
            .set_configuration_set_name(self.configuration_set.clone())
            .send()
            .await
            .map_err(|e| classify("SendEmail", e))?;
        Ok(out.message_id.unwrap_or_default())
    }
}
