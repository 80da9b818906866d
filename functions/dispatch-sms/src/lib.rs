//! SMS dispatch: renders the SMS part of the template and sends it with SNS. An
//! opted-out number is suppressed for every sender and the message falls back.

use chrono::Utc;
use herald::config::{ConfigError, Lookup, parsed, required};
use herald::dispatch::{Deliver, Delivery, DispatchConfig, DispatchDeps};
use herald::domain::Channel;
use herald::domain::jobs::{Contact, DispatchJob};
use herald::domain::ledger::{Reason, SuppressionCause};
use herald::domain::sms;
use herald::domain::template::CompiledTemplate;
use herald::lambda::{LambdaEvent, SqsBatchResponse, SqsEvent};
use herald::ports::{CapCounter, Ledger, Outbox, SmsSender, SmsType, SuppressionList, TemplateStore};

#[cfg(feature = "aws")]
pub mod aws;

#[derive(Debug, Clone)]
pub struct Config {
    /// What every dispatch function reads (herald::dispatch::DispatchConfig).
    pub dispatch: DispatchConfig,
    pub suppression_table: String,
    pub sms_type: SmsType,
    pub max_segments: usize,
}

impl Config {
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, ConfigError> {
        let sms_type = match parsed(get, "HERALD_SMS_TYPE", "Transactional".to_owned())?.as_str() {
            "Transactional" => SmsType::Transactional,
            "Promotional" => SmsType::Promotional,
            other => return Err(ConfigError(format!("HERALD_SMS_TYPE={other:?} is not Transactional or Promotional"))),
        };
        Ok(Self {
            dispatch: DispatchConfig::from_lookup(get, Channel::Sms)?,
            suppression_table: required(get, "HERALD_SUPPRESSION_TABLE")?,
            sms_type,
            max_segments: parsed(get, "HERALD_SMS_MAX_SEGMENTS", 3)?,
        })
    }
}

pub struct Sms<S, L> {
    pub sender: S,
    pub suppression: L,
    /// The SMS type of transactional messages (marketing always goes Promotional).
    pub sms_type: SmsType,
    /// Segments a message may cost; a longer one fails (and falls back) rather than costing more.
    pub max_segments: usize,
}

impl<S: SmsSender, L: SuppressionList> Deliver for Sms<S, L> {
    async fn deliver(&self, job: &DispatchJob, template: &CompiledTemplate) -> Delivery {
        let Contact::Sms(to) = &job.contact else {
            return Delivery::Failed { reason: Reason::NoContact, detail: "the job has no phone number".into() };
        };
        // The same code builds `herald templates preview`'s SMS.
        let sms = match sms::build(template, job) {
            Ok(m) => m,
            Err(e) => return Delivery::from_render(e),
        };
        let segments = sms.segments;
        if segments.count > self.max_segments {
            return Delivery::Failed {
                reason: Reason::TooLong,
                detail: format!(
                    "{} segments ({:?}), over the budget of {}",
                    segments.count, segments.encoding, self.max_segments
                ),
            };
        }
        let sms_type = if sms.promotional { SmsType::Promotional } else { self.sms_type };
        match self.sender.send(to, &sms.text, sms_type).await {
            Ok(provider_id) => Delivery::Sent { provider_id, sms_segments: u32::try_from(segments.count).ok() },
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

pub async fn handler<L, T, O, C, S, X>(
    deps: &DispatchDeps<L, T, O, C>,
    sms: &Sms<S, X>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, herald::lambda::Error>
where
    L: Ledger,
    T: TemplateStore,
    O: Outbox,
    C: CapCounter,
    S: SmsSender,
    X: SuppressionList,
{
    Ok(herald::dispatch::handle(deps, sms, event).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald::domain::PhoneNumber;
    use herald::ports::PortResult;
    use std::sync::Mutex;

    /// Records what it was asked to send.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(String, SmsType)>>);

    impl SmsSender for Recorder {
        async fn send(&self, _to: &PhoneNumber, text: &str, sms_type: SmsType) -> PortResult<String> {
            self.0.lock().unwrap().push((text.to_owned(), sms_type));
            Ok("sns-1".into())
        }
    }

    struct NoSuppression;

    impl SuppressionList for NoSuppression {
        async fn find(&self, _: &[(Channel, String)]) -> PortResult<Vec<(Channel, SuppressionCause)>> {
            Ok(Vec::new())
        }
        async fn suppress(&self, _: Channel, _: &str, _: SuppressionCause, _: chrono::DateTime<Utc>) -> PortResult<()> {
            Ok(())
        }
    }

    fn template(text: &str) -> CompiledTemplate {
        let doc = serde_json::json!({"name": "t", "channels": ["sms"], "default_locale": "en", "variables": ["n"],
                                     "locales": {"en": {"sms": {"text": text}}}});
        CompiledTemplate::compile(serde_json::from_value(doc).unwrap()).unwrap()
    }

    fn job(kind: &str) -> DispatchJob {
        serde_json::from_value(serde_json::json!({
            "message_id": "0123456789abcdef0123456789abcdef",
            "request": {"idempotency_key": "k", "recipient": "r", "template": "t", "kind": kind, "data": {"n": "1"}},
            "contact": {"sms": "+15555550100"},
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn type_follows_the_kind_and_length_is_bounded() {
        let sms = Sms {
            sender: Recorder::default(),
            suppression: NoSuppression,
            sms_type: SmsType::Transactional,
            max_segments: 1,
        };
        let short = template("Code {{ n }}");
        assert_eq!(
            sms.deliver(&job("transactional"), &short).await,
            Delivery::Sent { provider_id: "sns-1".into(), sms_segments: Some(1) }
        );
        assert!(matches!(sms.deliver(&job("marketing"), &short).await, Delivery::Sent { .. }));
        let types: Vec<SmsType> = sms.sender.0.lock().unwrap().iter().map(|(_, t)| *t).collect();
        assert_eq!(types, [SmsType::Transactional, SmsType::Promotional]);
        let long = template(&"x".repeat(161));
        assert!(matches!(
            sms.deliver(&job("transactional"), &long).await,
            Delivery::Failed { reason: Reason::TooLong, .. }
        ));
        assert_eq!(sms.sender.0.lock().unwrap().len(), 2, "nothing sent over the budget");
    }
}
