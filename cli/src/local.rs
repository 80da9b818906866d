//! A whole Herald stack on a local endpoint: what `make demo`, `make local` and
//! the end-to-end tests share.

use crate::moto::Moto;
use crate::runner::Runner;
use crate::stack::{self, LocalParams, Stack};
use crate::templates;
use crate::web::WebFront;
use anyhow::Context as _;
use aws_config::SdkConfig;
use chrono::Utc;
use herald::aws::dynamodb::DynamoTemplates;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The repository root (where `template.yaml` is), found from this crate's location.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

/// An SDK configuration for a local endpoint, with throwaway credentials.
pub async fn sdk_for(endpoint: &str) -> SdkConfig {
    herald::aws::loader()
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "herald-local"))
        .load()
        .await
}

/// The `RecipientWaitSeconds` of local stacks.
pub const LOCAL_RECIPIENT_WAIT_SECS: u32 = 2;

/// Creates what a team creates by hand before deploying (the SES identity, the SNS
/// platform applications), then the stack from `template.yaml`, then does what the team
/// does after the deploy: puts a custom provider in the providers' secret and uploads the
/// templates (with the campaigns, segments and profile schema beside them).
pub async fn provision(sdk: &SdkConfig, root: &Path, prefix: &str) -> anyhow::Result<Stack> {
    provision_with_web_port(sdk, root, prefix, 0).await
}

/// As [`provision`], with the first function URL on `web_port` (0: a free port).
pub async fn provision_with_web_port(
    sdk: &SdkConfig,
    root: &Path,
    prefix: &str,
    web_port: u16,
) -> anyhow::Result<Stack> {
    let template = stack::read_template(&root.join("template.yaml"))?;
    let identity = template
        .get("Parameters")
        .and_then(|p| p.get("SenderIdentity"))
        .and_then(|p| p.get("Default"))
        .and_then(|d| d.as_str())
        .unwrap_or("example.com")
        .to_owned();
    let ses = aws_sdk_sesv2::Client::new(sdk);
    // Already there when several stacks share one endpoint.
    let _ = ses.create_email_identity().email_identity(&identity).send().await;

    let sns = aws_sdk_sns::Client::new(sdk);
    let mut overrides = HashMap::new();
    for (param, platform) in [
        ("ApnsPlatformApplicationArn", "APNS"),
        ("ApnsSandboxPlatformApplicationArn", "APNS_SANDBOX"),
        ("FcmPlatformApplicationArn", "GCM"),
    ] {
        let arn = sns
            .create_platform_application()
            .name(format!("{prefix}{platform}"))
            .platform(platform)
            .attributes("PlatformCredential", "local")
            .attributes("PlatformPrincipal", "local")
            .send()
            .await?
            .platform_application_arn
            .context("no platform application ARN")?;
        overrides.insert(param.to_owned(), arn);
    }
    // A notification for a recipient not there yet waits 2 s here instead of a deployed
    // stack's minute, so the demo's unknown recipient is rejected without a pause.
    overrides.insert("RecipientWaitSeconds".to_owned(), LOCAL_RECIPIENT_WAIT_SECS.to_string());
    let stack = stack::create(sdk, &template, prefix, LocalParams { overrides, web_port }).await?;
    // `aws secretsmanager put-secret-value`, with a fresh provider secret for each local stack
    // (tests read it back with `stack.secret_value`; `herald local` prints it).
    let providers = serde_json::json!({
        LOCAL_PROVIDER: {"secret": local_secret(prefix), "channels": ["push", "email", "sms"]}
    });
    aws_sdk_secretsmanager::Client::new(sdk)
        .put_secret_value()
        .secret_id(stack.secret(PROVIDER_SECRETS)?)
        .secret_string(providers.to_string())
        .send()
        .await?;

    let table = stack.tables.get("TemplatesTable").context("the template declares no TemplatesTable")?;
    let store = DynamoTemplates::new(aws_sdk_dynamodb::Client::new(sdk), table, Duration::from_secs(60));
    templates::push_all(&store, &root.join("templates"), Utc::now()).await?;
    Ok(stack)
}

/// The custom provider a local stack accepts reports from, on every channel (its
/// secret is in the [`PROVIDER_SECRETS`] secret).
pub const LOCAL_PROVIDER: &str = "local";

/// The template's secrets, by logical id: the custom providers' and the unsubscribe key.
pub const PROVIDER_SECRETS: &str = "WebhookProviderSecrets";
pub const UNSUBSCRIBE_KEY: &str = "UnsubscribeKey";
/// The key the team's backend signs inbox user tokens with.
pub const INBOX_TOKEN_KEY: &str = "InboxTokenKey";

/// A secret for a local stack: 64 hex digits, different for every stack and run.
fn local_secret(prefix: &str) -> String {
    use sha2::{Digest, Sha256};
    let seed = format!(
        "{prefix}|{}|{}|{:?}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or_default(),
        std::time::Instant::now()
    );
    hex::encode(Sha256::digest(seed.as_bytes()))
}

/// Moto, the stack, the running functions and the served function URLs.
pub struct Local {
    pub moto: Moto,
    pub sdk: SdkConfig,
    pub stack: Stack,
    pub runner: Runner,
    pub web: WebFront,
}

impl Local {
    pub async fn up(root: &Path, port: u16, prefix: &str) -> anyhow::Result<Self> {
        Self::up_with_web_port(root, port, 0, prefix).await
    }

    /// As [`Local::up`], serving the function URLs from `web_port` on (0: free ports).
    pub async fn up_with_web_port(root: &Path, port: u16, web_port: u16, prefix: &str) -> anyhow::Result<Self> {
        let moto = Moto::start(root, port).await?;
        let sdk = sdk_for(&moto.endpoint).await;
        let stack = provision_with_web_port(&sdk, root, prefix, web_port).await?;
        let runner = Runner::start(&stack, &sdk)?;
        let web = WebFront::start(&stack, &sdk).await?;
        Ok(Self { moto, sdk, stack, runner, web })
    }
}

impl Stack {
    /// Waits until no function queue holds a visible, in-flight or delayed message
    /// (a look again for a missing recipient is delayed; so is a send deferred by up
    /// to 15 minutes, which keeps the pipeline busy that long; the schedule table's
    /// longer waits are not waited for).
    pub async fn wait_idle(&self, sdk: &SdkConfig, timeout: Duration) -> anyhow::Result<()> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let queues: Vec<_> = self.functions.iter().filter_map(|f| self.queues.get(f.queue()?)).collect();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut quiet_rounds = 0;
        while quiet_rounds < 3 {
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("the pipeline did not go idle within {timeout:?}");
            }
            let mut busy = 0u64;
            // Delayed messages are counted only once nothing is visible or in flight: each
            // count is a pass over the queue for moto, and this polls beside the bench.
            let visible = [A::ApproximateNumberOfMessages, A::ApproximateNumberOfMessagesNotVisible];
            for names in [&visible[..], &[A::ApproximateNumberOfMessagesDelayed]] {
                if busy > 0 {
                    break;
                }
                for q in &queues {
                    let attrs = sqs
                        .get_queue_attributes()
                        .queue_url(&q.url)
                        .set_attribute_names(Some(names.to_vec()))
                        .send()
                        .await?
                        .attributes
                        .unwrap_or_default();
                    busy += attrs.values().filter_map(|v| v.parse::<u64>().ok()).sum::<u64>();
                }
            }
            quiet_rounds = if busy == 0 { quiet_rounds + 1 } else { 0 };
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        Ok(())
    }
}
