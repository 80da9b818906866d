//! SNS adapter: mobile push to platform endpoints, SMS to phone numbers, and
//! platform endpoints for registered tokens. `Publish` is sent once per call (the
//! SDK's retries are off: a retry could be a second push or SMS); the endpoint
//! operations keep the SDK's retries.

use crate::aws::classify;
use crate::domain::{PhoneNumber, Platform, PushToken};
use crate::ports::{PortError, PortResult, PushEndpoints, PushSender, SmsSender, SmsType};
use aws_sdk_sns::Client;
use aws_sdk_sns::config::retry::RetryConfig;
use aws_sdk_sns::types::MessageAttributeValue;

#[derive(Debug, Clone)]
pub struct SnsPush {
    client: Client,
}

impl SnsPush {
    /// `client` as built from the shared configuration; the adapter keeps a copy of it that
    /// sends each request once (see [`once`]).
    pub fn new(client: Client) -> Self {
        Self { client: once(&client) }
    }
}

/// A copy of `client` with the SDK's retries off, made once when the adapter is built: a
/// retried `Publish` after a lost answer, a timeout or a 500 for a publish that happened
/// would be a second push or SMS. Herald's own retry path (the record back to its queue
/// with back-off, claimed again in the ledger) decides instead.
fn once(client: &Client) -> Client {
    Client::from_conf(client.config().to_builder().retry_config(RetryConfig::disabled()).build())
}

impl PushSender for SnsPush {
    async fn publish(&self, endpoint_arn: &str, payload: &str) -> PortResult<String> {
        let out = self
            .client
            .publish()
            .target_arn(endpoint_arn)
            .message_structure("json")
            .message(payload)
            .send()
            .await
            .map_err(|e| endpoint_refusal(classify("Publish", e)))?;
        Ok(out.message_id.unwrap_or_default())
    }
}

/// Sorts what SNS refuses for good on a publish to a platform endpoint. Only a refusal
/// of the endpoint itself condemns its token: `EndpointDisabled` (the platform said the
/// token is dead), `NotFound` for the endpoint, and `InvalidParameter` about `TargetArn`
/// ("No endpoint found for the target arn specified", SNS's answer for a deleted
/// endpoint). Anything else would refuse every device of the platform application alike
/// (`PlatformApplicationDisabled` after its certificate or key expired, a missing
/// permission, an `InvalidParameter` about the message): an [`ApplicationError`], so the
/// message is held and no device is touched.
///
/// [`ApplicationError`]: crate::ports::ApplicationError
fn endpoint_refusal(err: PortError) -> PortError {
    let PortError::Permanent { code, message } = err else { return err };
    let names_application = ["application", "Application", "credential", "Credential", "certificate", "Certificate"]
        .iter()
        .any(|w| message.contains(w));
    let token_level = !names_application
        && match code.as_str() {
            "EndpointDisabled" | "NotFound" => true,
            "InvalidParameter" => message.contains("parameter: TargetArn") || message.contains("No endpoint found"),
            _ => false,
        };
    if token_level { PortError::Permanent { code, message } } else { PortError::application(code, message) }
}

#[derive(Debug, Clone)]
pub struct SnsSms {
    client: Client,
}

impl SnsSms {
    /// As [`SnsPush::new`]: the SDK's retries are off for the copy kept.
    pub fn new(client: Client) -> Self {
        Self { client: once(&client) }
    }
}

fn string_attribute(value: &str) -> Result<MessageAttributeValue, PortError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| PortError::Unknown(e.into()))
}

impl SmsSender for SnsSms {
    async fn send(&self, to: &PhoneNumber, text: &str, sms_type: SmsType) -> PortResult<String> {
        let kind = match sms_type {
            SmsType::Transactional => "Transactional",
            SmsType::Promotional => "Promotional",
        };
        let out = self
            .client
            .publish()
            .phone_number(to.as_str())
            .message(text)
            .message_attributes("AWS.SNS.SMS.SMSType", string_attribute(kind)?)
            .send()
            .await
            .map_err(|e| classify("Publish", e))?;
        Ok(out.message_id.unwrap_or_default())
    }
}

/// Platform application ARNs by platform: inputs of the deployment, since SNS
/// platform applications are not CloudFormation resources.
#[derive(Debug, Clone, Default)]
pub struct PlatformApps {
    pub apns: Option<String>,
    pub apns_sandbox: Option<String>,
    pub fcm: Option<String>,
}

impl PlatformApps {
    pub fn arn(&self, platform: Platform) -> Option<&str> {
        match platform {
            Platform::Apns => self.apns.as_deref(),
            Platform::ApnsSandbox => self.apns_sandbox.as_deref(),
            Platform::Fcm => self.fcm.as_deref(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SnsEndpoints {
    client: Client,
    apps: PlatformApps,
}

impl SnsEndpoints {
    pub fn new(client: Client, apps: PlatformApps) -> Self {
        Self { client, apps }
    }
}

impl PushEndpoints for SnsEndpoints {
    async fn register(&self, platform: Platform, token: &PushToken) -> PortResult<String> {
        let app = self.apps.arn(platform).ok_or_else(|| PortError::Permanent {
            code: "PlatformNotConfigured".into(),
            message: format!("no SNS platform application is configured for {}", platform.as_str()),
        })?;
        // CreatePlatformEndpoint is idempotent for the same token and attributes. When
        // the token's endpoint exists with other attributes (the platform disabled it),
        // SNS refuses and names it: take that one, as AWS's token-management guide does.
        let created =
            self.client.create_platform_endpoint().platform_application_arn(app).token(token.as_str()).send().await;
        let arn = match created {
            Ok(out) => out
                .endpoint_arn
                .ok_or_else(|| PortError::Unknown(anyhow::anyhow!("CreatePlatformEndpoint returned no ARN")))?,
            Err(e) => {
                let err = classify("CreatePlatformEndpoint", e);
                match existing_endpoint(&err) {
                    Some(arn) => arn,
                    None => return Err(err),
                }
            }
        };
        // A disabled endpoint stays disabled until told otherwise: a token registered
        // again must be deliverable again (and carry the token just given).
        let attributes = self
            .client
            .get_endpoint_attributes()
            .endpoint_arn(&arn)
            .send()
            .await
            .map_err(|e| classify("GetEndpointAttributes", e))?
            .attributes
            .unwrap_or_default();
        let enabled = attributes.get("Enabled").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let same_token = attributes.get("Token").map(String::as_str) == Some(token.as_str());
        if !enabled || !same_token {
            self.client
                .set_endpoint_attributes()
                .endpoint_arn(&arn)
                .attributes("Token", token.as_str())
                .attributes("Enabled", "true")
                .send()
                .await
                .map_err(|e| classify("SetEndpointAttributes", e))?;
        }
        Ok(arn)
    }

    async fn delete(&self, endpoint_arn: &str) -> PortResult<()> {
        self.client
            .delete_endpoint()
            .endpoint_arn(endpoint_arn)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("DeleteEndpoint", e))
    }
}

/// The ARN in SNS's "Endpoint <arn> already exists with the same Token, but different
/// attributes" refusal.
fn existing_endpoint(err: &PortError) -> Option<String> {
    let PortError::Permanent { code, message } = err else { return None };
    if code != "InvalidParameter" || !message.contains("already exists with the same") {
        return None;
    }
    let arn = message.split_whitespace().find(|w| w.starts_with("arn:") && w.contains(":endpoint/"))?;
    Some(arn.trim_end_matches([',', '.']).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refusal_of_the_endpoint_itself_condemns_its_token() {
        let refusal = |code: &str, message: &str| PortError::Permanent { code: code.into(), message: message.into() };
        let token_level = [
            ("EndpointDisabled", "Publish: Endpoint is disabled"),
            ("NotFound", "Publish: Endpoint does not exist"),
            (
                "InvalidParameter",
                "Publish: Invalid parameter: TargetArn Reason: No endpoint found for the target arn specified",
            ),
        ];
        for (code, message) in token_level {
            let err = endpoint_refusal(refusal(code, message));
            assert_eq!((err.permanent_code(), err.application_code()), (Some(code), None), "{message}");
        }
        let application_level = [
            ("PlatformApplicationDisabled", "Publish: Platform application is disabled."),
            ("InvalidParameter", "Publish: Invalid parameter: Message Reason: Invalid notification for protocol APNS"),
            ("InvalidParameter", "Publish: Invalid parameter: Message too long"),
            (
                "InvalidParameter",
                "Publish: Invalid parameter: TargetArn Reason: platform application credentials are invalid",
            ),
            ("NotFound", "Publish: PlatformApplication does not exist"),
            ("AuthorizationError", "Publish: User is not authorized to perform: SNS:Publish"),
            ("KMSDisabled", "Publish: the key is disabled"),
        ];
        for (code, message) in application_level {
            let err = endpoint_refusal(refusal(code, message));
            assert_eq!((err.permanent_code(), err.application_code()), (None, Some(code)), "{message}");
            assert!(err.is_retryable(), "{message}: held, not failed");
        }
        let throttled = endpoint_refusal(PortError::Throttled("Publish: Throttling".into()));
        assert!(matches!(throttled, PortError::Throttled(_)), "not a refusal: unchanged");
    }

    #[test]
    fn the_existing_endpoint_is_read_from_the_refusal() {
        let refusal = |code: &str, message: &str| PortError::Permanent { code: code.into(), message: message.into() };
        let arn = "arn:aws:sns:us-east-1:123456789012:endpoint/GCM/app/5e3b";
        let message = format!(
            "CreatePlatformEndpoint: Invalid parameter: Token Reason: Endpoint {arn} already exists with the same Token, but different attributes."
        );
        assert_eq!(existing_endpoint(&refusal("InvalidParameter", &message)), Some(arn.to_owned()));
        assert_eq!(existing_endpoint(&refusal("InvalidParameter", "CreatePlatformEndpoint: Invalid token")), None);
        assert_eq!(existing_endpoint(&refusal("NotFound", &message)), None);
        assert_eq!(existing_endpoint(&PortError::Transient("x".into())), None);
    }
}
