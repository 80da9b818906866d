//! The in-app inbox API (a Lambda Function URL): the team's app lists a person's
//! messages and marks them seen, read, archived or clicked, with a user token its
//! backend signed.
//!
//! SKELETON: not built yet; every request is answered 501.

use aws_lambda_events::event::lambda_function_urls::{LambdaFunctionUrlRequest, LambdaFunctionUrlResponse};
use herald::config::{ConfigError, Lookup, required};

#[cfg(feature = "aws")]
pub mod aws;

#[derive(Debug, Clone)]
pub struct Config {
    pub inbox_table: String,
    pub receipts_queue_url: String,
    /// The secret (ARN) holding the key user tokens are signed with.
    pub token_secret: String,
}

impl Config {
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            inbox_table: required(get, "HERALD_INBOX_TABLE")?,
            receipts_queue_url: required(get, "HERALD_RECEIPTS_QUEUE_URL")?,
            token_secret: required(get, "HERALD_INBOX_TOKEN_SECRET")?,
        })
    }
}

pub struct Deps;

pub async fn handler(
    _deps: &Deps,
    _event: lambda_runtime::LambdaEvent<LambdaFunctionUrlRequest>,
) -> Result<LambdaFunctionUrlResponse, lambda_runtime::Error> {
    let mut response = LambdaFunctionUrlResponse::default();
    response.status_code = 501;
    response.headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response.body = Some(r#"{"error":"the inbox API is not built yet"}"#.to_owned());
    Ok(response)
}
