//! DynamoDB adapters: the ledger, recipients, suppression, cap counters, templates.
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
use crate::domain::recipient::{ConsentScope, ConsentState, Device, QuietHours, Recipient, device_slot};
use crate::domain::template::{CompiledTemplate, TemplateDoc};
use crate::domain::{
    CampaignId, Channel, DeviceId, EmailAddress, MessageId, PhoneNumber, Platform, PushToken, RecipientId, TemplateName,
};
use crate::ports::*;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, KeysAndAttributes, ReturnValuesOnConditionCheckFailure, WriteRequest,
};
use chrono::{DateTime, DurationRound, NaiveTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

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

fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Option<T> {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

fn key(pk: &str) -> Item {
    HashMap::from([("pk".to_owned(), s(pk))])
}

/// An `all`-mode message another channel has taken past `sent` (a receipt, or that
/// channel's failure) and that is not closed, with `channel` not claimed yet.
fn open_past_sent(item: &Item, channel: Channel) -> bool {
    let claimed =
        item.get("claimed").and_then(|v| v.as_ss().ok()).is_some_and(|c| c.iter().any(|x| x == channel.as_str()));
    get_n::<u8>(item, "rank").is_some_and(|r| r > Status::Sent.rank() && r < Status::Rejected.rank()) && !claimed
}

/// Why a `first`-mode claim failed, from the item as it was: an earlier claim that has
/// neither expired nor been followed by a provider id or a receipt is `Held`.
fn held(item: &Item, claim: &Claim<'_>) -> Option<Claimed> {
    if claim.per_channel || item.contains_key("provider_id") || get_n::<u8>(item, "rank")? != Status::Sent.rank() {
        return None;
    }
    let until = DateTime::from_timestamp(get_n(item, "claim_until")?, 0)?;
    // As the condition compares them: whole seconds.
    (until.timestamp() >= claim.at.timestamp()).then_some(Claimed::Held { until })
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

fn is_conditional_failure<E: aws_smithy_types::error::metadata::ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

// ============================================================== ledger

/// The message ledger: one item per notification (`pk` = message id) and one per
/// rejected body (`pk` = `rejected#<sqs message id>`), both expiring by TTL.
#[derive(Debug, Clone)]
pub struct DynamoLedger {
    client: Client,
    table: String,
}

impl DynamoLedger {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// One conditional claim, moving the status to `sent` or (`all` mode, past `sent`)
    /// leaving it. `Err(item)`: refused, with the item as it was (`None`: no such message).
    async fn try_claim(&self, claim: &Claim<'_>, move_status: bool) -> PortResult<Result<(), Option<Item>>> {
        let sent = Transition::new(Status::Sent, claim.at).channel(claim.channel);
        let mut update = String::from(
            "SET claim_until = :until, template_version = :v, \
             history = list_append(if_not_exists(history, :empty), :h) ADD claimed :channels",
        );
        // One channel per message (`first` mode): a new send, or the retry of an attempt
        // that ended without recording a provider id. `all` mode: each channel once, and
        // not once the message is closed (suppressed, rejected, expired).
        let condition = match (claim.per_channel, move_status) {
            (false, _) => {
                "attribute_exists(pk) AND (#rank < :rank OR (#rank = :rank AND claim_until < :now \
                 AND attribute_not_exists(provider_id)))"
            }
            (true, true) => "attribute_exists(pk) AND NOT contains(claimed, :channel) AND #rank <= :rank",
            (true, false) => {
                "attribute_exists(pk) AND NOT contains(claimed, :channel) AND #rank > :rank AND #rank < :closed"
            }
        };
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(claim.id.as_str())))
            .condition_expression(condition)
            .expression_attribute_names("#rank", "rank")
            .expression_attribute_values(":rank", n(Status::Sent.rank()))
            .expression_attribute_values(":channels", AttributeValue::Ss(vec![claim.channel.as_str().to_owned()]))
            .expression_attribute_values(":until", n(claim.until.timestamp()))
            .expression_attribute_values(":v", n(claim.template_version))
            .expression_attribute_values(":empty", AttributeValue::L(vec![]))
            .expression_attribute_values(":h", history_entry(&sent))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if move_status {
            update = update.replacen("SET ", "SET #status = :sent, #rank = :rank, channel = :channel, ", 1);
            req = req
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":sent", s(Status::Sent.as_str()));
        } else {
            req = req.expression_attribute_values(":closed", n(Status::Rejected.rank()));
        }
        if move_status || claim.per_channel {
            req = req.expression_attribute_values(":channel", s(claim.channel.as_str()));
        }
        if !claim.per_channel {
            req = req.expression_attribute_values(":now", n(claim.at.timestamp()));
        }
        if let Some(v) = claim.variant {
            update = update.replacen("SET ", "SET variant = :variant, ", 1);
            req = req.expression_attribute_values(":variant", s(v));
        }
        match req.update_expression(update).send().await {
            Ok(_) => Ok(Ok(())),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c)) => {
                    Ok(Err(c.item().filter(|i| i.contains_key("pk")).cloned()))
                }
                _ => Err(classify("UpdateItem", e)),
            },
        }
    }

    fn parse_entry(item: &Item) -> Option<LedgerEntry> {
        let history = item
            .get("history")
            .and_then(|v| v.as_l().ok())
            .map(|l| {
                l.iter()
                    .filter_map(|e| e.as_m().ok())
                    .map(|m| HistoryEntry {
                        status: get_s(m, "s").unwrap_or_default().to_owned(),
                        at: get_s(m, "at").unwrap_or_default().to_owned(),
                        reason: get_s(m, "r").map(str::to_owned),
                        channel: get_s(m, "c").map(str::to_owned),
                        detail: get_s(m, "d").map(str::to_owned),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(LedgerEntry {
            id: MessageId::parse(get_s(item, "pk")?)?,
            idempotency_key: get_s(item, "key").unwrap_or_default().to_owned(),
            recipient: get_s(item, "recipient").unwrap_or_default().to_owned(),
            template: get_s(item, "template").unwrap_or_default().to_owned(),
            kind: get_s(item, "kind").and_then(|k| serde_json::from_value(serde_json::Value::String(k.into())).ok()),
            campaign: get_s(item, "campaign").map(str::to_owned),
            status: get_s(item, "status").and_then(Status::parse)?,
            reason: get_s(item, "reason").map(str::to_owned),
            channel: get_s(item, "channel").map(str::to_owned),
            provider_id: get_s(item, "provider_id").map(str::to_owned),
            variant: get_s(item, "variant").map(str::to_owned),
            sms_segments: get_n(item, "sms_segments"),
            duplicates: get_n(item, "duplicates").unwrap_or(0),
            history,
        })
    }
}

impl Ledger for DynamoLedger {
    async fn admit(&self, admit: Admit<'_>) -> PortResult<Admission> {
        let r = admit.request;
        let accepted = Transition::new(Status::Accepted, admit.now);
        let mut item: Item = HashMap::from([
            ("pk".to_owned(), s(admit.id.as_str())),
            ("key".into(), s(r.idempotency_key.as_str())),
            ("recipient".into(), s(r.recipient.as_str())),
            ("template".into(), s(r.template.as_str())),
            ("kind".into(), s(r.kind.as_str())),
            ("status".into(), s(Status::Accepted.as_str())),
            ("rank".into(), n(Status::Accepted.rank())),
            ("source_id".into(), s(admit.source_id)),
            ("history".into(), history_entry(&accepted)),
            ("dedupe_until".into(), n(admit.dedupe_until.timestamp())),
            ("ttl".into(), n(admit.expires_at.timestamp())),
        ]);
        if let Some(c) = &r.campaign {
            item.insert("campaign".into(), s(c.as_str()));
        }
        if let Some(t) = &r.topic {
            item.insert("topic".into(), s(t.as_str()));
        }
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR dedupe_until < :now")
            .expression_attribute_values(":now", n(admit.now.timestamp()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let err = match put {
            Ok(_) => return Ok(Admission::New),
            Err(err) => err,
        };
        let old = match err.as_service_error() {
            Some(e) if is_conditional_failure(e) => match e {
                aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => {
                    c.item().cloned()
                }
                _ => None,
            },
            _ => return Err(classify("PutItem", err)),
        };
        // ALL_OLD saves a read; an endpoint that does not return it costs one GetItem.
        let old = match old {
            Some(item) => Some(item),
            None => self.get_item(admit.id.as_str()).await?,
        };
        let status = old.as_ref().and_then(|i| get_s(i, "status")).and_then(Status::parse).unwrap_or(Status::Accepted);
        let same_source = old.as_ref().and_then(|i| get_s(i, "source_id")) == Some(admit.source_id);
        Ok(Admission::Duplicate { status, same_source })
    }

    async fn note_duplicate(&self, id: &MessageId, at: DateTime<Utc>) -> PortResult<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(id.as_str())))
            .update_expression("ADD duplicates :one SET last_duplicate_at = :at")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":at", ts(at))
            .send()
            .await
            .map(|_| ())
            .or_else(|e| match e.as_service_error() {
                Some(se) if is_conditional_failure(se) => Ok(()),
                _ => Err(classify("UpdateItem", e)),
            })
    }

    async fn reject(&self, r: RejectionRecord) -> PortResult<()> {
        let mut item: Item = HashMap::from([
            ("pk".to_owned(), s(format!("rejected#{}", r.source_id))),
            ("status".into(), s(Status::Rejected.as_str())),
            ("reason".into(), s(&r.code)),
            ("detail".into(), s(r.detail.chars().take(400).collect::<String>())),
            ("body_bytes".into(), n(r.body_bytes)),
            ("at".into(), ts(r.at)),
            ("ttl".into(), n(r.expires_at.timestamp())),
        ]);
        if let Some(k) = r.idempotency_key {
            item.insert("key".into(), s(k));
        }
        put(&self.client, &self.table, item).await
    }

    async fn claim_send(&self, claim: Claim<'_>) -> PortResult<Claimed> {
        Ok(match self.try_claim(&claim, true).await? {
            Ok(()) => Claimed::Claimed,
            // `all` mode, and another channel has taken the message past `sent` (its
            // receipt, or its failure): this channel still goes, and the message keeps
            // the status it has.
            Err(Some(item)) if claim.per_channel && open_past_sent(&item, claim.channel) => {
                match self.try_claim(&claim, false).await? {
                    Ok(()) => Claimed::Claimed,
                    Err(Some(_)) => Claimed::Done,
                    Err(None) => Claimed::Unknown,
                }
            }
            Err(Some(item)) => held(&item, &claim).unwrap_or(Claimed::Done),
            Err(None) => Claimed::Unknown,
        })
    }

    async fn release_send(&self, id: &MessageId, channel: Channel, note: Option<Transition>) -> PortResult<()> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(id.as_str())))
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":channels", AttributeValue::Ss(vec![channel.as_str().to_owned()]));
        req = match note {
            Some(t) => req
                .update_expression(
                    "SET claim_until = :zero, history = list_append(if_not_exists(history, :empty), :h) \
                     DELETE claimed :channels",
                )
                .expression_attribute_values(":empty", AttributeValue::L(vec![]))
                .expression_attribute_values(":h", history_entry(&t)),
            None => req.update_expression("SET claim_until = :zero DELETE claimed :channels"),
        };
        req.send().await.map(|_| ()).or_else(|e| match e.as_service_error() {
            Some(se) if is_conditional_failure(se) => Ok(()),
            _ => Err(classify("UpdateItem", e)),
        })
    }

    async fn record_sent(&self, id: &MessageId, provider_id: &str, sms_segments: Option<u32>) -> PortResult<()> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(id.as_str())))
            .expression_attribute_values(":pid", s(provider_id));
        // `all` mode sends on several channels: the first provider id is kept.
        let mut update = String::from("SET provider_id = if_not_exists(provider_id, :pid)");
        if let Some(segments) = sms_segments {
            update.push_str(", sms_segments = :seg");
            req = req.expression_attribute_values(":seg", n(segments));
        }
        req.update_expression(update).send().await.map(|_| ()).map_err(|e| classify("UpdateItem", e))
    }

    async fn remember_fallback(&self, provider_id: &str, job: &EligibilityJob, until: DateTime<Utc>) -> PortResult<()> {
        let body = serde_json::to_string(job).map_err(|e| PortError::Unknown(e.into()))?;
        let item = HashMap::from([
            ("pk".to_owned(), s(format!("fallback#{provider_id}"))),
            ("message_id".into(), s(job.message_id.as_str())),
            ("job".into(), s(body)),
            ("ttl".into(), n(until.timestamp())),
        ]);
        put(&self.client, &self.table, item).await
    }

    async fn take_fallback(&self, provider_id: &str, note: Transition) -> PortResult<Option<EligibilityJob>> {
        let now = note.at.timestamp();
        // TTL deletes lazily: a kept job past its time is not taken.
        let Some(kept) = self
            .get_item(&format!("fallback#{provider_id}"))
            .await?
            .filter(|kept| get_n::<i64>(kept, "ttl").is_some_and(|until| until >= now))
        else {
            return Ok(None);
        };
        let Some(job) = get_s(&kept, "job").and_then(|j| serde_json::from_str::<EligibilityJob>(j).ok()) else {
            tracing::error!(provider_id, "kept fallback job does not parse: no fallback");
            return Ok(None);
        };
        // As a failed send before a fallback (release_send): the claim is let go and the
        // provider id removed, so the next channel's claim passes; the status stays `sent`.
        let released = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(job.message_id.as_str())))
            .condition_expression("provider_id = :pid AND #rank = :rank")
            .update_expression(
                "SET claim_until = :zero, fell_back_from = :pid, \
                 history = list_append(if_not_exists(history, :empty), :h) REMOVE provider_id",
            )
            .expression_attribute_names("#rank", "rank")
            .expression_attribute_values(":pid", s(provider_id))
            .expression_attribute_values(":rank", n(Status::Sent.rank()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":empty", AttributeValue::L(vec![]))
            .expression_attribute_values(":h", history_entry(&note))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let old = match released {
            Ok(_) => return Ok(Some(job)),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c)) => {
                    c.item().cloned()
                }
                _ => return Err(classify("UpdateItem", e)),
            },
        };
        let old = match old {
            Some(item) => item,
            None => match self.get_item(job.message_id.as_str()).await? {
                Some(item) => item,
                None => return Ok(None),
            },
        };
        let on_push = get_s(&old, "status") == Some(Status::Sent.as_str())
            && get_s(&old, "channel") == Some(Channel::Push.as_str());
        // Released by this failure before, and no other channel has claimed it since:
        // the hand-off may have failed, so the job goes again.
        if get_s(&old, "fell_back_from") == Some(provider_id) && on_push {
            return Ok(Some(job));
        }
        // The failure came before dispatch recorded the send (its claim still holds): look
        // again later. A claim run out without a provider id is a send that was never recorded.
        if !old.contains_key("provider_id")
            && on_push
            && !old.contains_key("fell_back_from")
            && get_n::<i64>(&old, "claim_until").is_some_and(|until| until >= now)
        {
            return Err(PortError::Transient(format!("{}: the push is not recorded as sent yet", job.message_id)));
        }
        Ok(None)
    }

    async fn transition(&self, id: &MessageId, t: Transition) -> PortResult<Applied> {
        self.advance(id, t).await.map(|(applied, _)| applied)
    }

    async fn advance(&self, id: &MessageId, t: Transition) -> PortResult<(Applied, Option<MessageFacts>)> {
        let mut update = String::from(
            "SET #status = :status, #rank = :rank, history = list_append(if_not_exists(history, :empty), :h)",
        );
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(id.as_str())))
            .condition_expression("attribute_exists(pk) AND #rank < :rank")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#rank", "rank")
            .expression_attribute_values(":status", s(t.status.as_str()))
            .expression_attribute_values(":rank", n(t.status.rank()))
            .expression_attribute_values(":empty", AttributeValue::L(vec![]))
            .expression_attribute_values(":h", history_entry(&t))
            // The item comes back with the write at no extra cost: its template and
            // campaign label the transition's metric without a read.
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if let Some(r) = t.reason {
            update.push_str(", reason = :reason");
            req = req.expression_attribute_values(":reason", s(r.as_str()));
        }
        if let Some(c) = t.channel {
            update.push_str(", channel = :channel");
            req = req.expression_attribute_values(":channel", s(c.as_str()));
        }
        if let Some(p) = &t.provider_id {
            update.push_str(", provider_id = if_not_exists(provider_id, :pid)");
            req = req.expression_attribute_values(":pid", s(p));
        }
        match req.update_expression(update).send().await {
            Ok(out) => {
                let facts = out.attributes.as_ref().map(|item| MessageFacts {
                    template: get_s(item, "template").unwrap_or_default().to_owned(),
                    campaign: get_s(item, "campaign").map(str::to_owned),
                });
                Ok((Applied::Applied, facts))
            }
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c)) => {
                    let exists = c.item().is_some_and(|i| i.contains_key("pk"));
                    Ok((if exists { Applied::Stale } else { Applied::Unknown }, None))
                }
                _ => Err(classify("UpdateItem", e)),
            },
        }
    }

    async fn note(&self, id: &MessageId, t: Transition) -> PortResult<()> {
        let mut update = String::from("SET history = list_append(if_not_exists(history, :empty), :h)");
        let mut req = self.client.update_item();
        if let Some(p) = &t.provider_id {
            update.push_str(", provider_id = if_not_exists(provider_id, :pid)");
            req = req.expression_attribute_values(":pid", s(p));
        }
        req.table_name(&self.table)
            .set_key(Some(key(id.as_str())))
            .update_expression(update)
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":empty", AttributeValue::L(vec![]))
            .expression_attribute_values(":h", history_entry(&t))
            .send()
            .await
            .map(|_| ())
            .or_else(|e| match e.as_service_error() {
                Some(se) if is_conditional_failure(se) => Ok(()),
                _ => Err(classify("UpdateItem", e)),
            })
    }

    async fn get(&self, id: &MessageId) -> PortResult<Option<LedgerEntry>> {
        Ok(self.get_item(id.as_str()).await?.as_ref().and_then(Self::parse_entry))
    }
}

impl DynamoLedger {
    async fn get_item(&self, pk: &str) -> PortResult<Option<Item>> {
        self.client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk)))
            .consistent_read(true)
            .send()
            .await
            .map(|o| o.item)
            .map_err(|e| classify("GetItem", e))
    }

    /// A rejection record, by the SQS message id of the refused body.
    pub async fn rejection(&self, source_id: &str) -> PortResult<Option<(String, String)>> {
        let item = self.get_item(&format!("rejected#{source_id}")).await?;
        Ok(item.map(|i| {
            (get_s(&i, "reason").unwrap_or_default().to_owned(), get_s(&i, "detail").unwrap_or_default().to_owned())
        }))
    }

    /// Every message of a campaign, for the operator's funnel (`herald funnel`). A Scan
    /// with a filter reads the whole table: acceptable for an occasional operator
    /// command on a ledger that TTL keeps to its retention window. A GSI on campaign
    /// would be cheaper to read but would cost a write on every status change of
    /// every campaign message, which the per-notification write budget forbids.
    pub async fn campaign_entries(&self, campaign: &str) -> PortResult<Vec<LedgerEntry>> {
        let mut entries = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("campaign = :c")
                .expression_attribute_values(":c", s(campaign))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| classify("Scan", e))?;
            entries.extend(page.items.unwrap_or_default().iter().filter_map(Self::parse_entry));
            match page.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(k) => start = Some(k),
                None => break,
            }
        }
        Ok(entries)
    }
}

// ============================================================== recipients

/// Recipients: one `profile` item per person (contact points, preferences, one
/// attribute per consent scope and per device, so concurrent commands never
/// overwrite each other), plus `consent#<at>#<scope>` audit items.
#[derive(Debug, Clone)]
pub struct DynamoRecipients {
    client: Client,
    table: String,
}

const PROFILE: &str = "profile";
const CONSENT_PREFIX: &str = "consent:";
const DEVICE_PREFIX: &str = "device:";

impl DynamoRecipients {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    fn profile_key(id: &RecipientId) -> Item {
        HashMap::from([("pk".to_owned(), s(id.as_str())), ("sk".to_owned(), s(PROFILE))])
    }

    fn parse(item: &Item) -> Recipient {
        let mut r = Recipient {
            id: get_s(item, "pk").and_then(|v| RecipientId::new(v).ok()),
            email: get_s(item, "email").and_then(|v| EmailAddress::new(v).ok()),
            phone: get_s(item, "phone").and_then(|v| PhoneNumber::new(v).ok()),
            timezone: get_s(item, "timezone").and_then(|v| TimeZone::try_from(v.to_owned()).ok()),
            locale: get_s(item, "locale").and_then(|v| Locale::try_from(v.to_owned()).ok()),
            ..Recipient::default()
        };
        let time = |name| get_s(item, name).and_then(|v| NaiveTime::parse_from_str(v, "%H:%M").ok());
        if let (Some(start), Some(end)) = (time("quiet_start"), time("quiet_end")) {
            r.quiet_hours = Some(QuietHours { start, end });
        }
        for (name, value) in item {
            let Ok(m) = value.as_m() else { continue };
            if let Some(scope) = name.strip_prefix(CONSENT_PREFIX).and_then(ConsentScope::parse_key) {
                let state = (|| {
                    Some(ConsentState {
                        granted: *m.get("granted")?.as_bool().ok()?,
                        source: ConsentSource::new(get_s(m, "source")?).ok()?,
                        at: get_s(m, "at")?.parse().ok()?,
                    })
                })();
                if let Some(state) = state {
                    r.consents.insert(scope, state);
                }
            } else if name.starts_with(DEVICE_PREFIX) {
                r.devices.extend(Self::parse_device(m));
            }
        }
        r.devices.sort_by(|a, b| a.endpoint_arn.cmp(&b.endpoint_arn));
        r
    }
}

impl RecipientStore for DynamoRecipients {
    async fn get(&self, id: &RecipientId) -> PortResult<Option<Recipient>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::profile_key(id)))
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        Ok(out.item.as_ref().map(Self::parse))
    }

    async fn upsert(&self, cmd: &UpsertRecipient, now: DateTime<Utc>) -> PortResult<()> {
        let mut sets = vec!["updated_at = :now".to_owned()];
        let mut values: Item = HashMap::from([(":now".to_owned(), ts(now))]);
        // Names go through placeholders: several (`timezone`) are DynamoDB reserved words.
        let mut names: HashMap<String, String> = HashMap::new();
        let mut put = |name: &str, value: AttributeValue| {
            sets.push(format!("#{name} = :{name}"));
            names.insert(format!("#{name}"), name.to_owned());
            values.insert(format!(":{name}"), value);
        };
        if let Some(v) = &cmd.email {
            put("email", s(v.as_str()));
        }
        if let Some(v) = &cmd.phone {
            put("phone", s(v.as_str()));
        }
        if let Some(v) = cmd.timezone {
            put("timezone", s(String::from(v)));
        }
        if let Some(v) = &cmd.locale {
            put("locale", s(v.as_str()));
        }
        if let Some(q) = cmd.quiet_hours {
            put("quiet_start", s(q.start.format("%H:%M").to_string()));
            put("quiet_end", s(q.end.format("%H:%M").to_string()));
        }
        if let Some(a) = &cmd.attributes {
            put("attributes", s(serde_json::Value::Object(a.clone()).to_string()));
        }
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::profile_key(&cmd.recipient)))
            .update_expression(format!("SET {}", sets.join(", ")))
            .set_expression_attribute_names((!names.is_empty()).then_some(names))
            .set_expression_attribute_values(Some(values))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("UpdateItem", e))
    }

    async fn set_consent(&self, cmd: &SetConsent, now: DateTime<Utc>) -> PortResult<ConsentApplied> {
        let scope = ConsentScope { channel: cmd.channel, topic: cmd.topic.clone() };
        let at = cmd.at.unwrap_or(now);
        let state = AttributeValue::M(HashMap::from([
            ("granted".to_owned(), AttributeValue::Bool(cmd.granted)),
            ("source".to_owned(), s(cmd.source.as_str())),
            ("at".to_owned(), ts(at)),
        ]));
        // The audit trail keeps every command, including one older than the current state.
        let audit: Item = HashMap::from([
            ("pk".to_owned(), s(cmd.recipient.as_str())),
            ("sk".to_owned(), s(format!("consent#{}#{}", at.to_rfc3339(), scope.key()))),
            ("granted".to_owned(), AttributeValue::Bool(cmd.granted)),
            ("source".to_owned(), s(cmd.source.as_str())),
            ("at".to_owned(), ts(at)),
            ("received_at".to_owned(), ts(now)),
        ]);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(audit))
            .send()
            .await
            .map_err(|e| classify("PutItem", e))?;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::profile_key(&cmd.recipient)))
            .update_expression("SET #c = :state, updated_at = :now")
            // Consents can arrive out of order: only a newer one replaces the current state.
            .condition_expression("attribute_not_exists(#c) OR #c.#at <= :at")
            .expression_attribute_names("#c", format!("{CONSENT_PREFIX}{}", scope.key()))
            .expression_attribute_names("#at", "at")
            .expression_attribute_values(":state", state)
            .expression_attribute_values(":now", ts(now))
            .expression_attribute_values(":at", ts(at))
            .send()
            .await;
        match result {
            Ok(_) => Ok(ConsentApplied::Applied),
            Err(e) => match e.as_service_error() {
                Some(se) if is_conditional_failure(se) => Ok(ConsentApplied::Older),
                _ => Err(classify("UpdateItem", e)),
            },
        }
    }

    async fn add_device(&self, id: &RecipientId, device: &Device, now: DateTime<Utc>) -> PortResult<()> {
        self.register_device(id, device, None, now).await.map(drop)
    }

    /// One read (which attributes hold the token) and one write, plus the index item's delete.
    async fn remove_device(&self, id: &RecipientId, token: &PushToken) -> PortResult<Option<Device>> {
        let Some(item) = self.profile(id).await? else { return Ok(None) };
        let found: Vec<(String, Device)> =
            Self::device_attributes(&item).into_iter().filter(|(_, d)| d.token == *token).collect();
        if found.is_empty() {
            return Ok(None);
        }
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::profile_key(id)))
            .expression_attribute_names("#tok", "token")
            .expression_attribute_values(":tok", s(token.as_str()));
        let mut removes = Vec::new();
        let mut conditions = Vec::new();
        for (i, (name, _)) in found.iter().enumerate() {
            req = req.expression_attribute_names(format!("#d{i}"), name);
            removes.push(format!("#d{i}"));
            // Unless a registration gave that device a new token in the meantime.
            conditions.push(format!("#d{i}.#tok = :tok"));
        }
        let result = req
            .update_expression(format!("REMOVE {}", removes.join(", ")))
            .condition_expression(conditions.join(" AND "))
            .send()
            .await;
        match result {
            Ok(_) => {}
            Err(e) => match e.as_service_error() {
                Some(se) if is_conditional_failure(se) => return Ok(None),
                _ => return Err(classify("UpdateItem", e)),
            },
        }
        for (_, device) in &found {
            self.drop_index(&device.endpoint_arn, id).await?;
        }
        Ok(found.into_iter().next().map(|(_, d)| d))
    }

    async fn erase(&self, id: &RecipientId) -> PortResult<Vec<Device>> {
        let devices = self.get(id).await?.map(|r| r.devices).unwrap_or_default();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(id.as_str()))
                .projection_expression("pk, sk")
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| classify("Query", e))?;
            batch_delete(&self.client, &self.table, page.items.unwrap_or_default()).await?;
            match page.last_evaluated_key {
                Some(k) => start = Some(k),
                None => break,
            }
        }
        // The endpoint index items name the recipient: they go too.
        for device in &devices {
            self.drop_index(&device.endpoint_arn, id).await?;
        }
        Ok(devices)
    }
}

/// The endpoint index: one item per platform endpoint, `pk` = `endpoint#<ARN>`,
/// naming the recipient and device slot that hold it. Push events name only an
/// endpoint; this is how they find the person. Devices stay attributes of the
/// profile (eligibility reads one item per recipient), so the index costs one more
/// write per token registration and one per removal. Registrations happen when an
/// app installs or its token rotates, not per notification: the notification
/// budget (3 write units from ingest to receipt) is untouched. A GSI could not do
/// it: devices are map attributes, and a GSI indexes top-level attributes only.
const ENDPOINT_PREFIX: &str = "endpoint#";
const ENDPOINT_SK: &str = "device";

impl DynamoRecipients {
    fn endpoint_key(arn: &str) -> Item {
        HashMap::from([("pk".to_owned(), s(format!("{ENDPOINT_PREFIX}{arn}"))), ("sk".to_owned(), s(ENDPOINT_SK))])
    }

    fn parse_device(m: &Item) -> Option<Device> {
        Some(Device {
            platform: parse_platform(get_s(m, "platform")?)?,
            token: PushToken::new(get_s(m, "token")?).ok()?,
            endpoint_arn: get_s(m, "arn")?.to_owned(),
        })
    }

    /// The device attributes of a profile item, with their attribute names.
    fn device_attributes(item: &Item) -> Vec<(String, Device)> {
        item.iter()
            .filter(|(name, _)| name.starts_with(DEVICE_PREFIX))
            .filter_map(|(name, v)| Some((name.clone(), Self::parse_device(v.as_m().ok()?)?)))
            .collect()
    }

    async fn profile(&self, id: &RecipientId) -> PortResult<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::profile_key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        Ok(out.item)
    }

    /// Removes a device slot from a profile while it still holds `arn`; returns the device removed.
    async fn remove_slot_if(&self, id: &RecipientId, slot: &str, arn: &str) -> PortResult<Option<Device>> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::profile_key(id)))
            .update_expression("REMOVE #d")
            .condition_expression("#d.#arn = :arn")
            .expression_attribute_names("#d", format!("{DEVICE_PREFIX}{slot}"))
            .expression_attribute_names("#arn", "arn")
            .expression_attribute_values(":arn", s(arn))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedOld)
            .send()
            .await;
        match out {
            Ok(o) => Ok(o.attributes.and_then(|a| Self::device_attributes(&a).into_iter().next()).map(|(_, d)| d)),
            Err(e) => match e.as_service_error() {
                Some(se) if is_conditional_failure(se) => Ok(None),
                _ => Err(classify("UpdateItem", e)),
            },
        }
    }

    /// Deletes an endpoint's index item if `owner` holds it (or nobody does); `false`
    /// when it has moved to someone else since.
    async fn drop_index(&self, arn: &str, owner: &RecipientId) -> PortResult<bool> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::endpoint_key(arn)))
            .condition_expression("attribute_not_exists(pk) OR recipient = :r")
            .expression_attribute_values(":r", s(owner.as_str()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => match e.as_service_error() {
                Some(se) if is_conditional_failure(se) => Ok(false),
                _ => Err(classify("DeleteItem", e)),
            },
        }
    }
}

impl DeviceRegistry for DynamoRecipients {
    /// Two writes in the common case (the index item, the profile attribute); one more
    /// when the endpoint moves from another recipient, one per token replaced.
    async fn register_device(
        &self,
        id: &RecipientId,
        device: &Device,
        device_id: Option<&DeviceId>,
        now: DateTime<Utc>,
    ) -> PortResult<Vec<Device>> {
        let slot = device_slot(&device.token, device_id);
        let index: Item = HashMap::from([
            ("pk".to_owned(), s(format!("{ENDPOINT_PREFIX}{}", device.endpoint_arn))),
            ("sk".to_owned(), s(ENDPOINT_SK)),
            ("recipient".to_owned(), s(id.as_str())),
            ("slot".to_owned(), s(&slot)),
            ("at".to_owned(), ts(now)),
        ]);
        let before = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(index))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| classify("PutItem", e))?
            .attributes
            .and_then(|old| Some((get_s(&old, "recipient")?.to_owned(), get_s(&old, "slot")?.to_owned())));

        // Other slots of this person that hold the same endpoint: the same token seen
        // under another slot (registered before with or without a device id).
        let mut stale: Vec<String> = Vec::new();
        if let Some((owner, old_slot)) = &before
            && owner == id.as_str()
            && *old_slot != slot
        {
            stale.push(old_slot.clone());
        }
        let token_slot = device.token.handle();
        if token_slot != slot && !stale.contains(&token_slot) {
            stale.push(token_slot);
        }
        let value = AttributeValue::M(HashMap::from([
            ("platform".to_owned(), s(device.platform.as_str())),
            ("token".to_owned(), s(device.token.as_str())),
            ("arn".to_owned(), s(&device.endpoint_arn)),
            ("at".to_owned(), ts(now)),
        ]));
        let mut update = String::from("SET #d = :d, updated_at = :now");
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::profile_key(id)))
            .expression_attribute_names("#d", format!("{DEVICE_PREFIX}{slot}"))
            .expression_attribute_values(":d", value)
            .expression_attribute_values(":now", ts(now))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedOld);
        if !stale.is_empty() {
            let names: Vec<String> = (0..stale.len()).map(|i| format!("#s{i}")).collect();
            update.push_str(&format!(" REMOVE {}", names.join(", ")));
            for (name, old) in names.iter().zip(&stale) {
                req = req.expression_attribute_names(name, format!("{DEVICE_PREFIX}{old}"));
            }
        }
        let previous = req
            .update_expression(update)
            .send()
            .await
            .map_err(|e| classify("UpdateItem", e))?
            .attributes
            .map(|old| Self::device_attributes(&old))
            .unwrap_or_default();

        // The endpoint (the same token) moved from another recipient: it is theirs no more.
        if let Some((owner, old_slot)) = before.filter(|(owner, _)| owner != id.as_str())
            && let Ok(owner) = RecipientId::new(owner)
        {
            self.remove_slot_if(&owner, &old_slot, &device.endpoint_arn).await?;
        }
        // This device's previous token: its endpoint is nobody's now.
        let mut replaced = Vec::new();
        for (_, old) in previous.into_iter().filter(|(_, d)| d.endpoint_arn != device.endpoint_arn) {
            if self.drop_index(&old.endpoint_arn, id).await? {
                replaced.push(old);
            }
        }
        Ok(replaced)
    }

    /// One read of the index item, one write to the profile, one delete of the index item.
    async fn remove_endpoint(&self, endpoint_arn: &str) -> PortResult<Option<(RecipientId, Device)>> {
        let index = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::endpoint_key(endpoint_arn)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?
            .item;
        let Some(index) = index else { return Ok(None) };
        let (Some(owner), Some(slot)) =
            (get_s(&index, "recipient").and_then(|r| RecipientId::new(r).ok()), get_s(&index, "slot"))
        else {
            return Ok(None);
        };
        let removed = self.remove_slot_if(&owner, slot, endpoint_arn).await?;
        self.drop_index(endpoint_arn, &owner).await?;
        Ok(removed.map(|d| (owner, d)))
    }
}

// ============================================================== suppression

/// The suppression list: `pk` = `<channel>#<sha256 of the normalized contact point>`.
/// It holds no address in clear, so it survives erasure.
#[derive(Debug, Clone)]
pub struct DynamoSuppression {
    client: Client,
    table: String,
}

impl DynamoSuppression {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    fn pk(channel: Channel, hash: &str) -> String {
        format!("{channel}#{hash}")
    }
}

impl SuppressionList for DynamoSuppression {
    async fn find(&self, keys: &[(Channel, String)]) -> PortResult<Vec<(Channel, SuppressionCause)>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: Vec<Item> = keys.iter().map(|(c, h)| key(&Self::pk(*c, h))).collect();
        let request =
            KeysAndAttributes::builder().set_keys(Some(wanted)).build().map_err(|e| PortError::Unknown(e.into()))?;
        let out = self
            .client
            .batch_get_item()
            .request_items(&self.table, request)
            .send()
            .await
            .map_err(|e| classify("BatchGetItem", e))?;
        if out.unprocessed_keys.as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(PortError::Throttled("BatchGetItem left keys unprocessed".into()));
        }
        let items = out.responses.and_then(|mut r| r.remove(&self.table)).unwrap_or_default();
        Ok(items
            .iter()
            .filter_map(|i| {
                let (channel, _) = get_s(i, "pk")?.split_once('#')?;
                Some((channel.parse().ok()?, SuppressionCause::parse(get_s(i, "cause")?)?))
            })
            .collect())
    }

    async fn suppress(
        &self,
        channel: Channel,
        hash: &str,
        cause: SuppressionCause,
        at: DateTime<Utc>,
    ) -> PortResult<()> {
        let item: Item = HashMap::from([
            ("pk".to_owned(), s(Self::pk(channel, hash))),
            ("cause".to_owned(), s(cause.as_str())),
            ("at".to_owned(), ts(at)),
        ]);
        put(&self.client, &self.table, item).await
    }
}

// ============================================================== caps

#[derive(Debug, Clone)]
pub struct DynamoCaps {
    client: Client,
    table: String,
}

impl DynamoCaps {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

/// Optimistic attempts at a rolling window before reporting contention as throttling.
const ROLLING_ATTEMPTS: usize = 8;

impl DynamoCaps {
    /// A calendar window: one conditional increment.
    async fn take_counter(&self, slot: &CapSlot) -> PortResult<bool> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&slot.key)))
            .update_expression("ADD taken :one SET #ttl = :ttl")
            .condition_expression("attribute_not_exists(taken) OR taken < :max")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(slot.max))
            .expression_attribute_values(":ttl", n(slot.expires_at.timestamp()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => match e.as_service_error() {
                Some(se) if is_conditional_failure(se) => Ok(false),
                _ => Err(classify("UpdateItem", e)),
            },
        }
    }

    /// A rolling window: the item keeps the instants of the sends still inside it
    /// and a version; a take reads it, drops what has rolled out and writes it back
    /// only if nobody wrote in between (one read, one write; retried on a race).
    async fn take_rolling(&self, slot: &CapSlot, window_secs: i64, give_back: bool) -> PortResult<bool> {
        let at = slot.at.timestamp_millis();
        let since = at - window_secs * 1000;
        for _ in 0..ROLLING_ATTEMPTS {
            let item = self
                .client
                .get_item()
                .table_name(&self.table)
                .set_key(Some(key(&slot.key)))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| classify("GetItem", e))?
                .item;
            let version: u64 = item.as_ref().and_then(|i| get_n(i, "version")).unwrap_or(0);
            let mut live: Vec<i64> = item
                .as_ref()
                .and_then(|i| i.get("sends"))
                .and_then(|v| v.as_l().ok())
                .map(|l| l.iter().filter_map(|x| x.as_n().ok()?.parse().ok()).filter(|t| *t > since).collect())
                .unwrap_or_default();
            if give_back {
                match live.iter().position(|t| *t == at) {
                    Some(i) => {
                        live.remove(i);
                    }
                    None => return Ok(true),
                }
            } else if live.len() >= slot.max as usize {
                return Ok(false);
            } else {
                live.push(at);
            }
            let new_item: Item = HashMap::from([
                ("pk".to_owned(), s(&slot.key)),
                ("sends".to_owned(), AttributeValue::L(live.iter().map(|t| n(*t)).collect())),
                ("version".to_owned(), n(version + 1)),
                ("ttl".to_owned(), n(slot.expires_at.timestamp())),
            ]);
            let put = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(new_item))
                .condition_expression("attribute_not_exists(pk) OR version = :v")
                .expression_attribute_values(":v", n(version))
                .send()
                .await;
            match put {
                Ok(_) => return Ok(true),
                Err(e) => match e.as_service_error() {
                    Some(se) if is_conditional_failure(se) => continue,
                    _ => return Err(classify("PutItem", e)),
                },
            }
        }
        Err(PortError::Throttled(format!("cap counter {} is contended", slot.label)))
    }
}

impl CapCounter for DynamoCaps {
    async fn try_take(&self, slot: &CapSlot) -> PortResult<bool> {
        match slot.rolling_secs {
            Some(secs) => self.take_rolling(slot, secs, false).await,
            None => self.take_counter(slot).await,
        }
    }

    async fn give_back(&self, slot: &CapSlot) -> PortResult<()> {
        if let Some(secs) = slot.rolling_secs {
            return self.take_rolling(slot, secs, true).await.map(|_| ());
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&slot.key)))
            .update_expression("ADD taken :minus")
            .condition_expression("taken > :zero")
            .expression_attribute_values(":minus", n(-1))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(se) if is_conditional_failure(se) => Ok(()),
                _ => Err(classify("UpdateItem", e)),
            },
        }
    }
}

// ============================================================== templates

/// Templates, read from the table and kept compiled in memory for `ttl`, so a
/// warm function reads each template about once a minute at most.
#[derive(Debug)]
pub struct DynamoTemplates {
    client: Client,
    table: String,
    /// Documents as last read (their absence included).
    cache: TtlCache<TemplateName, Option<Arc<CompiledTemplate>>>,
    campaigns: TtlCache<CampaignId, Option<Arc<CampaignDoc>>>,
}

impl DynamoTemplates {
    pub fn new(client: Client, table: impl Into<String>, ttl: Duration) -> Self {
        Self { client, table: table.into(), cache: TtlCache::new(ttl), campaigns: TtlCache::new(ttl) }
    }

    /// Stores a template document (used by `herald templates push`).
    pub async fn put(&self, doc: &TemplateDoc, now: DateTime<Utc>) -> PortResult<()> {
        let body = serde_json::to_string(doc).map_err(|e| PortError::Unknown(e.into()))?;
        let item: Item = HashMap::from([
            ("pk".to_owned(), s(doc.name.as_str())),
            ("version".to_owned(), n(doc.version)),
            ("doc".to_owned(), s(body)),
            ("updated_at".to_owned(), ts(now)),
        ]);
        put(&self.client, &self.table, item).await
    }

    /// Stores a campaign definition beside the templates (`pk` = `campaign#<name>`).
    pub async fn put_campaign(&self, doc: &CampaignDoc, now: DateTime<Utc>) -> PortResult<()> {
        let body = serde_json::to_string(doc).map_err(|e| PortError::Unknown(e.into()))?;
        let item: Item = HashMap::from([
            ("pk".to_owned(), s(format!("campaign#{}", doc.name))),
            ("doc".to_owned(), s(body)),
            ("updated_at".to_owned(), ts(now)),
        ]);
        put(&self.client, &self.table, item).await
    }

    async fn load_campaign(&self, name: &CampaignId) -> PortResult<Option<Arc<CampaignDoc>>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(&format!("campaign#{name}"))))
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        let Some(raw) = out.item.as_ref().and_then(|i| get_s(i, "doc")) else {
            return Ok(None);
        };
        let doc: CampaignDoc = serde_json::from_str(raw).map_err(|e| PortError::Permanent {
            code: "InvalidCampaign".into(),
            message: format!("campaign {name} is not a valid document: {e}"),
        })?;
        doc.validate().map_err(|message| PortError::Permanent { code: "InvalidCampaign".into(), message })?;
        Ok(Some(Arc::new(doc)))
    }

    async fn load(&self, name: &TemplateName) -> PortResult<Option<Arc<CompiledTemplate>>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(name.as_str())))
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        let Some(raw) = out.item.as_ref().and_then(|i| get_s(i, "doc")) else {
            return Ok(None);
        };
        let doc: TemplateDoc = serde_json::from_str(raw).map_err(|e| PortError::Permanent {
            code: "InvalidTemplate".into(),
            message: format!("template {name} is not a valid document: {e}"),
        })?;
        let compiled = CompiledTemplate::compile(doc)
            .map_err(|e| PortError::Permanent { code: "InvalidTemplate".into(), message: e.to_string() })?;
        Ok(Some(Arc::new(compiled)))
    }
}

impl TemplateStore for DynamoTemplates {
    async fn get(&self, name: &TemplateName) -> PortResult<Option<Arc<CompiledTemplate>>> {
        self.cache.get_or_load(name, || self.load(name)).await
    }
}

impl CampaignStore for DynamoTemplates {
    async fn campaign(&self, name: &CampaignId) -> PortResult<Option<Arc<CampaignDoc>>> {
        self.campaigns.get_or_load(name, || self.load_campaign(name)).await
    }
}

/// Parses a ledger `kind` attribute (shared with the CLI's report).
pub fn parse_kind(raw: &str) -> Option<Kind> {
    serde_json::from_value(serde_json::Value::String(raw.to_owned())).ok()
}

/// Parses a platform name as stored.
pub fn parse_platform(raw: &str) -> Option<Platform> {
    serde_json::from_value(serde_json::Value::String(raw.to_owned())).ok()
}

// ============================================================== schedule

/// The schedule: one item per waiting job, `pk` = `due#<minute, UTC>`, `sk` = message id,
/// so a run reads each minute it has not read yet with one Query.
#[derive(Debug, Clone)]
pub struct DynamoSchedule {
    client: Client,
    table: String,
}

const CURSOR: &str = "cursor";

impl DynamoSchedule {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    fn bucket(at: DateTime<Utc>) -> String {
        format!("due#{}", at.format("%Y-%m-%dT%H:%M"))
    }

    fn item_key(pk: &str, sk: &str) -> Item {
        HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
    }
}

impl ScheduleStore for DynamoSchedule {
    async fn schedule(&self, id: &MessageId, body: &str, due: DateTime<Utc>) -> PortResult<()> {
        let mut item = Self::item_key(&Self::bucket(due), id.as_str());
        item.insert("body".into(), s(body));
        item.insert("due".into(), ts(due));
        // Kept a week past its time should every run fail, then forgotten.
        item.insert("ttl".into(), n((due + chrono::TimeDelta::days(7)).timestamp()));
        put(&self.client, &self.table, item).await
    }

    async fn due(&self, from: DateTime<Utc>, to: DateTime<Utc>, limit: usize) -> PortResult<Vec<Scheduled>> {
        let mut out = Vec::new();
        let mut minute = from.duration_trunc(chrono::TimeDelta::minutes(1)).unwrap_or(from);
        while minute <= to && out.len() < limit {
            let mut start: Option<Item> = None;
            loop {
                let page = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("pk = :pk")
                    .expression_attribute_values(":pk", s(Self::bucket(minute)))
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(|e| classify("Query", e))?;
                for item in page.items.unwrap_or_default() {
                    let due = get_s(&item, "due").and_then(|d| d.parse::<DateTime<Utc>>().ok());
                    let id = get_s(&item, "sk").and_then(MessageId::parse);
                    if let (Some(due), Some(id), Some(body)) = (due, id, get_s(&item, "body"))
                        && due <= to
                        && out.len() < limit
                    {
                        out.push(Scheduled { id, body: body.to_owned(), due });
                    }
                }
                match page.last_evaluated_key {
                    Some(k) if out.len() < limit => start = Some(k),
                    _ => break,
                }
            }
            minute += chrono::TimeDelta::minutes(1);
        }
        Ok(out)
    }

    async fn remove(&self, jobs: &[Scheduled]) -> PortResult<()> {
        let keys = jobs.iter().map(|j| Self::item_key(&Self::bucket(j.due), j.id.as_str())).collect();
        batch_delete(&self.client, &self.table, keys).await
    }

    async fn cursor(&self) -> PortResult<Option<DateTime<Utc>>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::item_key(CURSOR, CURSOR)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        Ok(out.item.as_ref().and_then(|i| get_s(i, "at")).and_then(|a| a.parse().ok()))
    }

    async fn set_cursor(&self, at: DateTime<Utc>) -> PortResult<()> {
        let mut item = Self::item_key(CURSOR, CURSOR);
        item.insert("at".into(), ts(at));
        put(&self.client, &self.table, item).await
    }
}

// ============================================================== webhook replay guard

/// Signatures seen by the webhook function, in the ledger table (`pk` =
/// `replay#<key>`, expiring by TTL after the freshness window): one conditional
/// put per signed request, which a second copy of the request cannot pass.
#[derive(Debug, Clone)]
pub struct DynamoReplayGuard {
    client: Client,
    table: String,
}

impl DynamoReplayGuard {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    fn pk(key: &str) -> String {
        format!("replay#{key}")
    }
}

impl ReplayGuard for DynamoReplayGuard {
    async fn first_use(&self, replay_key: &str, until: DateTime<Utc>) -> PortResult<bool> {
        let item: Item =
            HashMap::from([("pk".to_owned(), s(Self::pk(replay_key))), ("ttl".to_owned(), n(until.timestamp()))]);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            // TTL deletion lags: an item past its time counts as gone.
            .condition_expression("attribute_not_exists(pk) OR #ttl < :now")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":now", n(Utc::now().timestamp()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => match e.as_service_error() {
                Some(se) if is_conditional_failure(se) => Ok(false),
                _ => Err(classify("PutItem", e)),
            },
        }
    }

    async fn forget(&self, replay_key: &str) -> PortResult<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(&Self::pk(replay_key))))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("DeleteItem", e))
    }
}
