//! SNS adapter: mobile push to platform endpoints, SMS to phone numbers, and
//! platform endpoints for registered tokens.

use crate::aws::classify;
use crate::domain::{PhoneNumber, Platform, PushToken};
use crate::ports::{PortError, PortResult, PushEndpoints, PushSender, SmsSender, SmsType};
use aws_sdk_sns::Client;
use aws_sdk_sns::types::MessageAttributeValue;

#[derive(Debug, Clone)]
pub struct SnsPush {
    client: Client,
}

impl SnsPush {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
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
            .map_err(|e| classify("Publish", e))?;
        Ok(out.message_id.unwrap_or_default())
    }
}

#[derive(Debug, Clone)]
pub struct SnsSms {
    client: Client,
}

impl SnsSms {
    pub fn new(client: Client) -> Self {
        Self { client }
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
        // CreatePlatformEndpoint is idempotent for the same token and attributes.
        let out = self
            .client
            .create_platform_endpoint()
            .platform_application_arn(app)
            .token(token.as_str())
            .send()
            .await
            .map_err(|e| classify("CreatePlatformEndpoint", e))?;
        out.endpoint_arn.ok_or_else(|| PortError::Unknown(anyhow::anyhow!("CreatePlatformEndpoint returned no ARN")))
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
