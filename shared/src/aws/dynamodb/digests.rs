//! Digest heads in the ledger table (`pk` = `digest#<32 hex>`), and the data of digest
//! items, kept on each item's own ledger entry.
//!
//! A head's attributes: `recipient`, `template`, `dkey`; the open window `d_win`,
//! `d_total`, `d_opened`, `d_last`, `d_due`, `d_first` (its first item ids), `d_ids` (the short
//! hashes of its item ids), `d_req` (the opening item's [`Opening`], JSON); `d_prev`, the
//! hashes of the window sealed before it; the sealed window awaiting its hand-off,
//! `s_win`, `s_total`, `s_first`, `s_req`; `ttl`. Never an item's data: a head's size is
//! bounded by its windows' item counts (16 bytes a hash, two windows of at most 1000) and
//! [`MAX_FIRST`] ids.

use super::*;
use crate::domain::digest::{
    Appended, DigestHead, DigestId, HEAD_RETENTION, MAX_FIRST, Opening, SealedWindow, item_hash,
};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::ReturnValue;

fn parse_instant(item: &Item, name: &str) -> Option<DateTime<Utc>> {
    get_s(item, name).and_then(|t| t.parse().ok())
}

fn ids(item: &Item, name: &str) -> Vec<MessageId> {
    item.get(name)
        .and_then(|v| v.as_l().ok())
        .map(|l| l.iter().filter_map(|v| v.as_s().ok()).filter_map(|s| MessageId::parse(s)).collect())
        .unwrap_or_default()
}

fn holds(item: &Item, name: &str, hash: &str) -> bool {
    item.get(name).and_then(|v| v.as_ss().ok()).is_some_and(|set| set.iter().any(|h| h == hash))
}

fn opening(item: &Item, name: &str) -> Option<Opening> {
    get_s(item, name).and_then(|j| serde_json::from_str(j).ok())
}

fn parse_head(item: &Item) -> Option<DigestHead> {
    let sealed = match (get_n::<u64>(item, "s_win"), opening(item, "s_req")) {
        (Some(win), Some(opening)) => {
            Some(SealedWindow { win, total: get_n(item, "s_total").unwrap_or(0), first: ids(item, "s_first"), opening })
        }
        _ => None,
    };
    Some(DigestHead {
        id: DigestId::parse(get_s(item, "pk")?)?,
        recipient: RecipientId::new(get_s(item, "recipient")?).ok()?,
        template: TemplateName::new(get_s(item, "template")?).ok()?,
        win: get_n(item, "d_win").unwrap_or(1),
        total: get_n(item, "d_total").unwrap_or(0),
        opened_at: parse_instant(item, "d_opened"),
        last_at: parse_instant(item, "d_last"),
        due: parse_instant(item, "d_due"),
        first: ids(item, "d_first"),
        opening: opening(item, "d_req"),
        sealed,
    })
}

/// What an append that found the item counted already tells.
fn already(old: &Item, item: &MessageId, hash: &str, now: DateTime<Utc>) -> Option<Appended> {
    let in_open = holds(old, "d_ids", hash);
    let in_previous = !in_open && holds(old, "d_prev", hash);
    (in_open || in_previous).then(|| Appended {
        win: get_n(old, "d_win").unwrap_or(1),
        total: get_n(old, "d_total").unwrap_or(0),
        opened_at: parse_instant(old, "d_opened").unwrap_or(now),
        due: parse_instant(old, "d_due").unwrap_or(now),
        opened: in_open && ids(old, "d_first").first() == Some(item),
        already: true,
        in_previous,
    })
}

impl Digests for DynamoLedger {
    async fn admit_item(&self, admit: Admit<'_>, head: &DigestId, data: &str) -> PortResult<Admission> {
        let extra = HashMap::from([("data".to_owned(), s(data)), ("digest".to_owned(), s(head.as_str()))]);
        self.put_admission(admit, Status::Digested, extra).await
    }

    async fn append(&self, a: DigestAppend<'_>) -> PortResult<Appended> {
        let hash = item_hash(a.item);
        let req = serde_json::to_string(a.opening).map_err(|e| PortError::Unknown(e.into()))?;
        let key_text = a.request.digest.as_ref().map(|d| d.key.as_str()).unwrap_or_default();
        // The first attempt also adds the id to the window's first ids, while there is room;
        // a full list costs a second attempt without it.
        for with_first in [true, false, false] {
            let mut sets = vec![
                "recipient = :r",
                "template = :t",
                "dkey = :k",
                "#ttl = :ttl",
                "d_win = if_not_exists(d_win, :one)",
                "d_total = if_not_exists(d_total, :zero) + :one",
                "d_opened = if_not_exists(d_opened, :now)",
                "d_due = if_not_exists(d_due, :due)",
                "d_last = :now",
                "d_req = if_not_exists(d_req, :req)",
            ];
            let mut condition = String::from(
                "(attribute_not_exists(d_ids) OR NOT contains(d_ids, :h)) \
                 AND (attribute_not_exists(d_prev) OR NOT contains(d_prev, :h))",
            );
            let mut req_builder = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(a.head.as_str())))
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":r", s(a.request.recipient.as_str()))
                .expression_attribute_values(":t", s(a.request.template.as_str()))
                .expression_attribute_values(":k", s(key_text))
                .expression_attribute_values(":ttl", n((a.now + HEAD_RETENTION).timestamp()))
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":now", ts(a.now))
                .expression_attribute_values(":due", ts(a.due))
                .expression_attribute_values(":req", s(&req))
                .expression_attribute_values(":h", s(hash))
                .expression_attribute_values(":hs", AttributeValue::Ss(vec![hash.to_owned()]))
                .return_values(ReturnValue::AllNew)
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
            if with_first {
                sets.push("d_first = list_append(if_not_exists(d_first, :empty), :id)");
                condition.push_str(" AND (attribute_not_exists(d_first) OR size(d_first) < :max)");
                req_builder = req_builder
                    .expression_attribute_values(":empty", AttributeValue::L(vec![]))
                    .expression_attribute_values(":id", AttributeValue::L(vec![s(a.item.as_str())]))
                    .expression_attribute_values(":max", n(MAX_FIRST));
            }
            let result = req_builder
                .update_expression(format!("SET {} ADD d_ids :hs", sets.join(", ")))
                .condition_expression(condition)
                .send()
                .await;
            let old = match result {
                Ok(out) => {
                    let new = out.attributes.unwrap_or_default();
                    let total = get_n(&new, "d_total").unwrap_or(1);
                    return Ok(Appended {
                        win: get_n(&new, "d_win").unwrap_or(1),
                        total,
                        opened_at: parse_instant(&new, "d_opened").unwrap_or(a.now),
                        due: parse_instant(&new, "d_due").unwrap_or(a.due),
                        opened: total == 1,
                        already: false,
                        in_previous: false,
                    });
                }
                Err(e) => match e.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(c)) => c.item().cloned(),
                    _ => return Err(classify("UpdateItem", e)),
                },
            };
            // ALL_OLD saves a read; an endpoint that does not return it costs one GetItem.
            let old = match old {
                Some(old) => old,
                None => self.get_item(a.head.as_str()).await?.unwrap_or_default(),
            };
            if let Some(found) = already(&old, a.item, hash, a.now) {
                return Ok(found);
            }
            // Otherwise the first ids were full: again without them.
        }
        Err(PortError::Transient(format!("{}: the digest head kept changing under the append", a.head)))
    }

    async fn head(&self, id: &DigestId) -> PortResult<Option<DigestHead>> {
        Ok(self.get_item(id.as_str()).await?.as_ref().and_then(parse_head))
    }

    async fn seal(&self, id: &DigestId, win: u64, now: DateTime<Utc>) -> PortResult<bool> {
        // Every attribute on the right of SET is read as it was before this write.
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(id.as_str())))
            .update_expression(
                "SET s_win = d_win, s_total = d_total, s_first = d_first, s_req = d_req, d_prev = d_ids, \
                 d_win = d_win + :one, d_total = :zero, #ttl = :ttl \
                 REMOVE d_ids, d_first, d_req, d_opened, d_last, d_due",
            )
            .condition_expression(
                "d_win = :w AND d_total > :zero AND attribute_exists(d_ids) AND attribute_exists(d_first) \
                 AND attribute_exists(d_req) AND attribute_not_exists(s_win)",
            )
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":w", n(win))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":ttl", n((now + HEAD_RETENTION).timestamp()))
            .send()
            .await;
        conditional("UpdateItem", result).map(|applied| applied.is_some())
    }

    async fn handed_off(&self, id: &DigestId, win: u64) -> PortResult<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(id.as_str())))
            .update_expression("REMOVE s_win, s_total, s_first, s_req")
            .condition_expression("s_win = :w")
            .expression_attribute_values(":w", n(win))
            .send()
            .await;
        conditional("UpdateItem", result).map(drop)
    }

    async fn item_data(&self, wanted: &[MessageId]) -> PortResult<Vec<serde_json::Value>> {
        let mut found: HashMap<String, serde_json::Value> = HashMap::new();
        for chunk in wanted.chunks(100) {
            let keys: Vec<Item> = chunk.iter().map(|id| key(id.as_str())).collect();
            let mut pending = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .projection_expression("pk, #d")
                .expression_attribute_names("#d", "data")
                .build()
                .ok();
            for _ in 0..5 {
                let Some(request) = pending.take().filter(|r| !r.keys.is_empty()) else { break };
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| classify("BatchGetItem", e))?;
                for item in out.responses.and_then(|mut r| r.remove(&self.table)).unwrap_or_default() {
                    let data = get_s(&item, "data").and_then(|d| serde_json::from_str(d).ok());
                    if let (Some(pk), Some(data)) = (get_s(&item, "pk"), data) {
                        found.insert(pk.to_owned(), data);
                    }
                }
                pending = out.unprocessed_keys.and_then(|mut u| u.remove(&self.table));
            }
            if pending.is_some_and(|p| !p.keys.is_empty()) {
                return Err(PortError::Throttled("BatchGetItem left keys unprocessed".into()));
            }
        }
        Ok(wanted.iter().filter_map(|id| found.remove(id.as_str())).collect())
    }
}
