//! SMS dispatch: renders the SMS part of the template and sends it with SNS. An
//! opted-out number is suppressed for every sender and the message falls back.

use chrono::Utc;
use herald::config::{ConfigError, LedgerConfig, Lookup, parsed, required};
use herald::dispatch::{Deliver, Delivery, DispatchDeps};
use herald::domain::Channel;
use herald::domain::jobs::{Contact, DispatchJob};
use herald::domain::ledger::{Reason, SuppressionCause};
use herald::domain::template::CompiledTemplate;
use herald::lambda::{LambdaEvent, SqsBatchResponse, SqsEvent};
use herald::ports::{Ledger, Outbox, SmsSender, SmsType, SuppressionList, TemplateStore};

#[cfg(feature = "aws")]
pub mod aws;

#[derive(Debug, Clone)]
pub struct Config {
    pub ledger: LedgerConfig,
    pub templates_table: String,
    pub suppression_table: String,
    pub eligibility_queue_url: String,
    pub sms_type: SmsType,
}

impl Config {
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, ConfigError> {
        let sms_type = match parsed(get, "HERALD_SMS_TYPE", "Transactional".to_owned())?.as_str() {
            "Transactional" => SmsType::Transactional,
            "Promotional" => SmsType::Promotional,
            other => return Err(ConfigError(format!("HERALD_SMS_TYPE={other:?} is not Transactional or Promotional"))),
        };
        Ok(Self {
            ledger: LedgerConfig::from_lookup(get)?,
            templates_table: required(get, "HERALD_TEMPLATES_TABLE")?,
            suppression_table: required(get, "HERALD_SUPPRESSION_TABLE")?,
            eligibility_queue_url: required(get, "HERALD_ELIGIBILITY_QUEUE_URL")?,
            sms_type,
        })
    }
}

pub struct Sms<S, L> {
    pub sender: S,
    pub suppression: L,
    pub sms_type: SmsType,
}

impl<S: SmsSender, L: SuppressionList> Deliver for Sms<S, L> {
    async fn deliver(&self, job: &DispatchJob, template: &CompiledTemplate) -> Delivery {
        let Contact::Sms(to) = &job.contact else {
            return Delivery::Failed { reason: Reason::NoContact, detail: "the job has no phone number".into() };
        };
        let content = match template.render_sms(job.locale.as_ref().map(|l| l.as_str()), &job.request.data) {
            Ok(c) => c,
            Err(e) => return Delivery::from_render(e),
        };
        match self.sender.send(to, &content.text, self.sms_type).await {
            Ok(provider_id) => Delivery::Sent { provider_id },
            Err(e) if e.permanent_code().is_some_and(|c| c.contains("OptedOut") || c.contains("OptOut")) => {
                if let Err(err) = self
                    .suppression
                    .suppress(Channel::Sms, &to.suppression_hash(), SuppressionCause::OptOut, Utc::now())
                    .await
                {
                    return Delivery::Retry(err.to_string());
                }
                Delivery::Failed { reason: Reason::SuppressedOptOut, detail: "the number opted out of SMS".into() }
            }
            Err(e) => Delivery::from_error(e),
        }
    }
}

pub async fn handler<L, T, O, S, X>(
    deps: &DispatchDeps<L, T, O>,
    sms: &Sms<S, X>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, herald::lambda::Error>
where
    L: Ledger,
    T: TemplateStore,
    O: Outbox,
    S: SmsSender,
    X: SuppressionList,
{
    Ok(herald::dispatch::handle(deps, sms, event).await)
}
