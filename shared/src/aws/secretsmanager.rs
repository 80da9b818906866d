//! Secrets Manager adapter: a secret read with `GetSecretValue` when first needed, not at
//! start-up (a cold start is not spent on a network call, and an invocation that needs no
//! secret reads none), then kept in memory for a TTL, so a value changed with
//! `put-secret-value` reaches running functions without a redeploy. One read per function
//! instance and TTL.

use crate::aws::cache::TtlCache;
use crate::aws::classify;
use crate::ports::{PortError, PortResult, Secret};
use aws_sdk_secretsmanager::Client;
use std::sync::Arc;
use std::time::Duration;

/// How long a value is used before it is read again.
pub const SECRET_TTL: Duration = Duration::from_secs(300);

/// One secret, by ARN (or name), parsed once per read into what the handler uses. Neither
/// its `Debug` (it has none), its logs nor its errors show the value.
pub struct SecretsManagerSecret<T> {
    client: Client,
    id: String,
    parse: fn(&str) -> Result<T, String>,
    /// The value for its TTL; the records of a batch that need it together share one read.
    cache: TtlCache<(), Arc<T>>,
}

impl<T> SecretsManagerSecret<T> {
    /// `parse` turns the secret's string into its value; its error must not quote the string.
    pub fn new(client: Client, id: impl Into<String>, ttl: Duration, parse: fn(&str) -> Result<T, String>) -> Self {
        Self { client, id: id.into(), parse, cache: TtlCache::new(ttl) }
    }

    async fn read(&self) -> PortResult<Arc<T>> {
        let out = self.client.get_secret_value().secret_id(&self.id).send().await.map_err(|e| {
            // Whatever stops the read (throttling, a missing permission, a deleted secret, a
            // disabled KMS key), the caller retries later: a message never fails for it.
            let err = classify("GetSecretValue", e);
            tracing::warn!(secret = %self.id, error = %err, "the secret could not be read");
            let detail = format!("secret {} could not be read: {err}", self.id);
            match err {
                PortError::Throttled(_) => PortError::Throttled(detail),
                _ => PortError::Transient(detail),
            }
        })?;
        let parsed = match out.secret_string() {
            Some(raw) => (self.parse)(raw),
            None => Err("it has no SecretString".to_owned()),
        };
        parsed.map(Arc::new).map_err(|reason| {
            tracing::error!(secret = %self.id, %reason, "the secret is malformed");
            PortError::Unknown(anyhow::anyhow!("secret {} is malformed: {reason}", self.id))
        })
    }
}

impl<T: Send + Sync> Secret<T> for SecretsManagerSecret<T> {
    async fn current(&self) -> PortResult<Arc<T>> {
        self.cache.get_or_load(&(), || self.read()).await
    }
}
