//! AWS adapters for the ports, one module per SDK, each behind its feature.
//!
//! Every client is derived from one [`SdkConfig`] built by [`sdk_config`], which
//! reads the standard environment (`AWS_REGION`, credentials, and
//! `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>`), so the same binaries run
//! against AWS, moto or LocalStack with no switch of Herald's own.

#[cfg(any(feature = "dynamodb", feature = "secretsmanager"))]
mod cache;
#[cfg(all(feature = "dynamodb", feature = "sqs", feature = "lambda"))]
pub mod dispatch;
#[cfg(feature = "dynamodb")]
pub mod dynamodb;
#[cfg(feature = "eventbridge")]
pub mod eventbridge;
#[cfg(feature = "https")]
pub mod https;
#[cfg(feature = "secretsmanager")]
pub mod secretsmanager;
#[cfg(feature = "sesv2")]
pub mod ses;
#[cfg(feature = "sns")]
pub mod sns;
#[cfg(feature = "sqs")]
pub mod sqs;

use crate::ports::PortError;
pub use aws_config::SdkConfig;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// Loads the shared SDK configuration once, in `main`. TLS is rustls on ring, the
/// smallest stack the SDK offers; there is no second HTTP client in the binaries.
pub async fn sdk_config() -> SdkConfig {
    loader().load().await
}

/// The standard configuration loader with Herald's HTTP client, for callers that
/// set more (the local runner points it at the endpoint it started).
pub fn loader() -> aws_config::ConfigLoader {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let http = aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http)
}

pub(crate) const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "SlowDown",
    "KMSThrottlingException",
];

pub(crate) const TRANSIENT_CODES: &[&str] =
    &["InternalError", "InternalFailure", "InternalServerError", "ServiceUnavailable", "KMSDisabledException"];

/// Sorts an SDK error into throttled, transient or permanent (with its code). The
/// provider's text is redacted here, at the source: it may name an address (SES's
/// sandbox `MessageRejected` lists the identities that failed), a phone number (SNS's
/// `InvalidParameter: PhoneNumber`) or a token, and a `PortError` ends up in logs and
/// in the ledger's history.
pub(crate) fn classify<E>(operation: &str, err: SdkError<E, HttpResponse>) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let redact = crate::domain::redact_contacts;
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            PortError::Transient(redact(&format!("{operation}: {}", DisplayErrorContext(&err))))
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("Unknown").to_owned();
            let message = service.err().message().unwrap_or_default();
            let status = service.raw().status().as_u16();
            if THROTTLING_CODES.contains(&code.as_str()) || status == 429 {
                PortError::Throttled(format!("{operation}: {code}"))
            } else if TRANSIENT_CODES.contains(&code.as_str()) || status >= 500 {
                PortError::Transient(format!("{operation}: {code} ({status})"))
            } else {
                PortError::Permanent { code: redact(&code), message: redact(&format!("{operation}: {message}")) }
            }
        }
        _ => PortError::Unknown(anyhow::anyhow!(redact(&format!("{operation}: {}", DisplayErrorContext(&err))))),
    }
}
