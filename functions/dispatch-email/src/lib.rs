//! Email dispatch: renders the email part of the template and sends it with SES v2,
//! tagged with Herald's message id so SES events find their way back.

use herald::config::{ConfigError, LedgerConfig, Lookup, optional, required};
use herald::dispatch::{Deliver, Delivery, DispatchDeps};
use herald::domain::jobs::{Contact, DispatchJob};
use herald::domain::ledger::Reason;
use herald::domain::template::CompiledTemplate;
use herald::lambda::{LambdaEvent, SqsBatchResponse, SqsEvent};
use herald::ports::{EmailMessage, EmailSender, Ledger, Outbox, TemplateStore};

#[cfg(feature = "aws")]
pub mod aws;

#[derive(Debug, Clone)]
pub struct Config {
    pub ledger: LedgerConfig,
    pub templates_table: String,
    pub eligibility_queue_url: String,
    pub from_address: String,
    pub configuration_set: Option<String>,
}

impl Config {
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            ledger: LedgerConfig::from_lookup(get)?,
            templates_table: required(get, "HERALD_TEMPLATES_TABLE")?,
            eligibility_queue_url: required(get, "HERALD_ELIGIBILITY_QUEUE_URL")?,
            from_address: required(get, "HERALD_FROM_ADDRESS")?,
            configuration_set: optional(get, "HERALD_SES_CONFIGURATION_SET"),
        })
    }
}

/// The SES message tag that carries Herald's message id.
pub const MESSAGE_ID_TAG: &str = "herald_message_id";

pub struct Email<E> {
    pub sender: E,
    pub from: String,
}

impl<E: EmailSender> Deliver for Email<E> {
    async fn deliver(&self, job: &DispatchJob, template: &CompiledTemplate) -> Delivery {
        let Contact::Email(to) = &job.contact else {
            return Delivery::Failed { reason: Reason::NoContact, detail: "the job has no email address".into() };
        };
        let content = match template.render_email(job.locale.as_ref().map(|l| l.as_str()), &job.request.data) {
            Ok(c) => c,
            Err(e) => return Delivery::from_render(e),
        };
        let mut tags = vec![
            (MESSAGE_ID_TAG.to_owned(), job.message_id.to_string()),
            ("herald_template".to_owned(), job.request.template.to_string()),
        ];
        if let Some(c) = &job.request.campaign {
            tags.push(("herald_campaign".to_owned(), c.to_string()));
        }
        let message = EmailMessage { to: to.clone(), from: self.from.clone(), content, headers: Vec::new(), tags };
        match self.sender.send(&message).await {
            Ok(provider_id) => Delivery::Sent { provider_id },
            Err(e) => Delivery::from_error(e),
        }
    }
}

pub async fn handler<L, T, O, E>(
    deps: &DispatchDeps<L, T, O>,
    email: &Email<E>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, herald::lambda::Error>
where
    L: Ledger,
    T: TemplateStore,
    O: Outbox,
    E: EmailSender,
{
    Ok(herald::dispatch::handle(deps, email, event).await)
}
