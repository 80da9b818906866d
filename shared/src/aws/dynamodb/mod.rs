//! DynamoDB adapters: the ledger, recipients, suppression, cap counters, templates, the inbox.
//!
//! Write costs are the product's largest bill line, so each port operation is one
//! request and items stay under 1 KB: the ledger holds ids and statuses, never
//! addresses or the request's data.

use crate::aws::cache::TtlCache;
use crate::aws::classify;
use crate::contract::{ConsentSource, Kind, Locale, SetConsent, TimeZone, UpsertRecipient};
use crate::domain::campaign::CampaignDoc;
use crate::domain::caps::CapSlot;
use crate::domain::jobs::EligibilityJob;
use crate::domain::ledger::{Status, SuppressionCause};
use crate::domain::profile::ProfileSchema;
use crate::domain::recipient::{ConsentScope, ConsentState, Device, QuietHours, Recipient, device_slot};
use crate::domain::segment::SegmentDoc;
use crate::domain::template::{CompiledTemplate, TemplateDoc};
use crate::domain::{
    CampaignId, Channel, DeviceId, EmailAddress, MessageId, PhoneNumber, Platform, PushToken, RecipientId, SegmentName,
    TemplateName,
};
use crate::ports::*;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, KeysAndAttributes, ReturnValuesOnConditionCheckFailure, WriteRequest,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use chrono::{DateTime, DurationRound, NaiveTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

mod broadcasts;
mod caps;
mod devices;
mod digests;
mod inbox;
mod journeys;
mod ledger;
mod recipients;
mod replay;
mod schedule;
mod suppression;
mod templates;
mod topics;

pub use broadcasts::STATE_CACHE;
pub use caps::DynamoCaps;
pub use inbox::DynamoInbox;
pub use journeys::DynamoJourneys;
pub use ledger::DynamoLedger;
pub use recipients::DynamoRecipients;
pub use replay::DynamoReplayGuard;
pub use schedule::DynamoSchedule;
pub use suppression::DynamoSuppression;
pub use templates::{DynamoTemplates, Pushed, parse_kind, parse_platform};
pub use topics::DynamoTopics;

type Item = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn ts(at: DateTime<Utc>) -> AttributeValue {
    s(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// A number as DynamoDB takes it: to six decimal places, without trailing zeros
/// (`49.9`, `1000`), so no value needs more digits than a DynamoDB number holds.
fn decimal(v: f64) -> String {
    let fixed = format!("{v:.6}");
    let trimmed = fixed.trim_end_matches('0').trim_end_matches('.');
    match trimmed {
        "" | "-" | "-0" => "0".to_owned(),
        t => t.to_owned(),
    }
}

fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Option<T> {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

fn key(pk: &str) -> Item {
    HashMap::from([("pk".to_owned(), s(pk))])
}

fn history_entry(t: &Transition) -> AttributeValue {
    let mut m = HashMap::from([("s".to_owned(), s(t.status.as_str())), ("at".to_owned(), ts(t.at))]);
    if let Some(r) = t.reason {
        m.insert("r".into(), s(r.as_str()));
    }
    if let Some(c) = t.channel {
        m.insert("c".into(), s(c.as_str()));
    }
    if let Some(d) = &t.detail {
        // Bounded: history must keep the item under one write unit.
        m.insert("d".into(), s(d.chars().take(160).collect::<String>()));
    }
    AttributeValue::L(vec![AttributeValue::M(m)])
}

/// Deletes these keys with `BatchWriteItem`, 25 at a time, sending again what
/// DynamoDB leaves unprocessed under load.
async fn batch_delete(client: &Client, table: &str, keys: Vec<Item>) -> PortResult<()> {
    for chunk in keys.chunks(25) {
        let mut requests: Vec<WriteRequest> = chunk
            .iter()
            .filter_map(|k| DeleteRequest::builder().set_key(Some(k.clone())).build().ok())
            .map(|d| WriteRequest::builder().delete_request(d).build())
            .collect();
        for _ in 0..5 {
            if requests.is_empty() {
                break;
            }
            let out = client
                .batch_write_item()
                .request_items(table, requests)
                .send()
                .await
                .map_err(|e| classify("BatchWriteItem", e))?;
            requests = out.unprocessed_items.and_then(|mut u| u.remove(table)).unwrap_or_default();
        }
        if !requests.is_empty() {
            return Err(PortError::Throttled("BatchWriteItem left items unprocessed".into()));
        }
    }
    Ok(())
}

/// An unconditional `PutItem`.
async fn put(client: &Client, table: &str, item: Item) -> PortResult<()> {
    client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| classify("PutItem", e))
}

/// Every item a whole-table `Scan` keeps with `filter` (`values` its placeholders), page by
/// page: for operator commands and rare, cached reads, never a hot path (a Scan is billed
/// for every item it reads, kept or not).
async fn scan_all(
    client: &Client,
    table: &str,
    filter: &str,
    values: Item,
    projection: Option<&str>,
) -> PortResult<Vec<Item>> {
    let mut items = Vec::new();
    let mut start: Option<Item> = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .filter_expression(filter)
            .set_expression_attribute_values(Some(values.clone()))
            .set_projection_expression(projection.map(str::to_owned))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| classify("Scan", e))?;
        items.extend(page.items.unwrap_or_default());
        match page.last_evaluated_key.filter(|k| !k.is_empty()) {
            Some(k) => start = Some(k),
            None => return Ok(items),
        }
    }
}

fn is_conditional_failure<E: aws_smithy_types::error::metadata::ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

/// A conditional write's outcome: `Some(output)` when it was applied, `None` when its
/// condition failed, the classified error otherwise.
fn conditional<T, E>(
    operation: &str,
    result: Result<T, aws_smithy_runtime_api::client::result::SdkError<E, HttpResponse>>,
) -> PortResult<Option<T>>
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(out) => Ok(Some(out)),
        Err(e) if e.as_service_error().is_some_and(is_conditional_failure) => Ok(None),
        Err(e) => Err(classify(operation, e)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_are_written_to_six_decimal_places() {
        for (v, text) in [
            (49.9, "49.9"),
            (1000.0, "1000"),
            (0.0, "0"),
            (1e15, "1000000000000000"),
            (1e-9, "0"),
            (0.1234567, "0.123457"),
        ] {
            assert_eq!(super::decimal(v), text, "{v}");
        }
    }
}
