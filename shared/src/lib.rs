//! Herald's common crate.
//!
//! - [`domain`]: pure rules and values (no I/O, no clock: time is an argument).
//! - [`contract`]: the ingest contract v1 that producers publish (mirrors `schema/ingest-v1.json`).
//! - [`ports`]: the capabilities handlers need, as traits.
//! - [`aws`]: DynamoDB, SQS, SES v2, SNS and Secrets Manager adapters behind those ports (feature-gated per SDK).
//! - [`lambda`]: SQS batch glue, tracing and metrics for the Lambda binaries.
//! - [`attempt`]: tokens that let a retried conditional write recognize its own success.

pub mod attempt;
pub mod config;
pub mod contract;
pub mod domain;
pub mod metrics;
pub mod ports;

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "lambda")]
pub mod dispatch;
#[cfg(feature = "lambda")]
pub mod lambda;
