//! Herald's integration tests: one binary, run against a moto server on loopback
//! started once for the whole run (see `support`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod adapters;
mod bodies;
mod broadcasts;
mod browser;
mod campaign_results;
mod contract_schema;
mod digests;
mod dispatching;
mod dlq;
mod events;
mod idempotency;
mod import;
mod inbox;
mod journeys;
mod pipeline;
mod preferences;
mod previews;
mod privacy;
mod profiles;
mod properties;
mod receipts;
mod recipients;
mod scheduling;
mod segments;
mod sends;
mod support;
mod webhooks;
