//! DynamoDB's item-size rules and what each request costs in read and write units.
//!
//! Sizes follow the developer guide ("Item sizes and formats"): attribute names
//! count their UTF-8 bytes; strings their UTF-8 bytes; numbers one byte per two
//! significant digits plus one; binary its raw bytes; booleans and nulls one
//! byte; a list or map 3 bytes plus, per element, 1 byte (and a map element's
//! name). A standard write costs one write unit per KB (rounded up) of the larger
//! of the item before and after; a strongly consistent read one read unit per
//! 4 KB, an eventually consistent read half that; a query sums the items it read
//! before rounding; transactions cost double.

use crate::counting::Call;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// Digits that count in a DynamoDB number: leading and trailing zeros trimmed.
fn number_size(raw: &str) -> usize {
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    let (int, frac) = match raw.trim_start_matches('-').split_once('.') {
        Some((i, f)) => (i.to_owned(), f.to_owned()),
        None => (digits.clone(), String::new()),
    };
    let all = format!("{int}{frac}");
    let significant = all.trim_start_matches('0').trim_end_matches('0').len().max(1);
    significant.div_ceil(2) + 1
}

fn base64_len(s: &str) -> usize {
    let pad = s.bytes().rev().take_while(|&b| b == b'=').count();
    (s.len() / 4 * 3).saturating_sub(pad)
}

/// The size of one value in DynamoDB JSON (`{"S": ".."}`, `{"M": {..}}`, ...).
pub fn json_value_size(v: &Value) -> usize {
    let Some((kind, inner)) = v.as_object().and_then(|o| o.iter().next()) else { return 0 };
    match (kind.as_str(), inner) {
        ("S", Value::String(s)) => s.len(),
        ("N", Value::String(n)) => number_size(n),
        ("B", Value::String(b)) => base64_len(b),
        ("BOOL" | "NULL", _) => 1,
        ("SS", Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::len).sum(),
        ("NS", Value::Array(a)) => a.iter().filter_map(Value::as_str).map(number_size).sum(),
        ("BS", Value::Array(a)) => a.iter().filter_map(Value::as_str).map(base64_len).sum(),
        ("L", Value::Array(a)) => 3 + a.iter().map(|e| 1 + json_value_size(e)).sum::<usize>(),
        ("M", Value::Object(m)) => 3 + m.iter().map(|(k, e)| 1 + k.len() + json_value_size(e)).sum::<usize>(),
        _ => 0,
    }
}

/// The size of an item in DynamoDB JSON (`{"pk": {"S": ".."}, ..}`).
pub fn json_item_size(item: &Value) -> usize {
    item.as_object().map_or(0, |o| o.iter().map(|(k, v)| k.len() + json_value_size(v)).sum())
}

pub fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_size(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(a) => a.iter().map(String::len).sum(),
        AttributeValue::Ns(a) => a.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(a) => a.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(a) => 3 + a.iter().map(|e| 1 + value_size(e)).sum::<usize>(),
        AttributeValue::M(m) => 3 + m.iter().map(|(k, e)| 1 + k.len() + value_size(e)).sum::<usize>(),
        _ => 0,
    }
}

pub fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn key_text_json(v: &Value) -> String {
    v.as_object().and_then(|o| o.values().next()).and_then(Value::as_str).unwrap_or_default().to_owned()
}

fn key_text_sdk(v: &AttributeValue) -> String {
    match v {
        AttributeValue::S(s) | AttributeValue::N(s) => s.clone(),
        AttributeValue::B(b) => format!("{:?}", b.as_ref()),
        _ => String::new(),
    }
}

/// Every item of every table after a run, sized, by table and key.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// table -> key attribute names (partition, then sort)
    pub keys: BTreeMap<String, Vec<String>>,
    /// (table, key text) -> item size in bytes
    pub sizes: HashMap<(String, String), usize>,
    /// What each filtered Scan read (by its request body): see [`size_scans`].
    pub scans: HashMap<Vec<u8>, ScanRead>,
}

/// What one Scan request read: every item it evaluated, before its filter, which is
/// what DynamoDB bills (the response shows only the items the filter kept).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ScanRead {
    pub items: u64,
    pub bytes: u64,
    /// By kind of item (see [`recipients_item_kind`]): (items, bytes).
    pub by_kind: BTreeMap<String, (u64, u64)>,
}

impl ScanRead {
    pub fn add(&mut self, other: &ScanRead) {
        self.items += other.items;
        self.bytes += other.bytes;
        for (kind, (n, b)) in &other.by_kind {
            let e = self.by_kind.entry(kind.clone()).or_default();
            e.0 += n;
            e.1 += b;
        }
    }
}

/// What an item of the recipients table is, from its sort key: a profile, a consent
/// audit item (`consent#<at>#<scope>`), a push endpoint's index item (`device`).
pub fn recipients_item_kind(item: &HashMap<String, AttributeValue>) -> &'static str {
    match item.get("sk").and_then(|v| v.as_s().ok()).map(String::as_str) {
        Some("profile") => "profile",
        Some(sk) if sk.starts_with("consent#") => "consent audit",
        Some("device") => "endpoint index",
        _ => "other",
    }
}

/// A DynamoDB-JSON key (`{"pk": {"S": ".."}}`) as the SDK's.
fn sdk_key(json: &Value) -> Option<HashMap<String, AttributeValue>> {
    json.as_object().map(|o| {
        o.iter()
            .filter_map(|(k, v)| {
                let (kind, inner) = v.as_object()?.iter().next()?;
                let text = inner.as_str()?.to_owned();
                let value = match kind.as_str() {
                    "S" => AttributeValue::S(text),
                    "N" => AttributeValue::N(text),
                    _ => return None,
                };
                Some((k.clone(), value))
            })
            .collect()
    })
}

/// Reads again, without its filter, what each recorded Scan read: the same table,
/// segment, start and `Limit` give the same items while the table is unchanged (call
/// this before anything writes to it). Moto, as DynamoDB, counts `Limit` in items
/// evaluated before the filter.
pub async fn size_scans(
    client: &aws_sdk_dynamodb::Client,
    calls: &[&Call],
) -> anyhow::Result<HashMap<Vec<u8>, ScanRead>> {
    let mut out = HashMap::new();
    for call in calls.iter().filter(|c| c.service == "dynamodb" && c.operation == "Scan" && c.status < 300) {
        if out.contains_key(&call.request.body) {
            continue;
        }
        let Some(req) = call.request_json() else { continue };
        let int = |name: &str| req.get(name).and_then(Value::as_i64).and_then(|v| i32::try_from(v).ok());
        let table = req.get("TableName").and_then(Value::as_str).unwrap_or_default();
        let page = client
            .scan()
            .table_name(table)
            .set_segment(int("Segment"))
            .set_total_segments(int("TotalSegments"))
            .set_limit(int("Limit"))
            .set_exclusive_start_key(req.get("ExclusiveStartKey").and_then(sdk_key))
            .send()
            .await?;
        let mut read = ScanRead::default();
        for item in page.items.unwrap_or_default() {
            let size = item_size(&item) as u64;
            read.items += 1;
            read.bytes += size;
            let e = read.by_kind.entry(recipients_item_kind(&item).to_owned()).or_default();
            e.0 += 1;
            e.1 += size;
        }
        out.insert(call.request.body.clone(), read);
    }
    Ok(out)
}

impl Snapshot {
    pub async fn read(client: &aws_sdk_dynamodb::Client, tables: &[String]) -> anyhow::Result<Self> {
        let mut snap = Snapshot::default();
        for table in tables {
            let described = client.describe_table().table_name(table).send().await?;
            let names: Vec<String> = described
                .table
                .and_then(|t| t.key_schema)
                .unwrap_or_default()
                .into_iter()
                .map(|k| k.attribute_name)
                .collect();
            let mut start = None;
            loop {
                let page = client.scan().table_name(table).set_exclusive_start_key(start.take()).send().await?;
                for item in page.items.unwrap_or_default() {
                    let key: Vec<String> =
                        names.iter().map(|n| item.get(n).map(key_text_sdk).unwrap_or_default()).collect();
                    snap.sizes.insert((table.clone(), key.join("\u{1f}")), item_size(&item));
                }
                match page.last_evaluated_key {
                    Some(k) if !k.is_empty() => start = Some(k),
                    _ => break,
                }
            }
            snap.keys.insert(table.clone(), names);
        }
        Ok(snap)
    }

    fn key_of(&self, table: &str, key: &Value) -> String {
        let names = self.keys.get(table).cloned().unwrap_or_default();
        names.iter().map(|n| key.get(n).map(key_text_json).unwrap_or_default()).collect::<Vec<_>>().join("\u{1f}")
    }

    fn size_of(&self, table: &str, key: &Value) -> Option<usize> {
        self.sizes.get(&(table.to_owned(), self.key_of(table, key))).copied()
    }
}

/// Read and write units of a run's DynamoDB requests.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Units {
    pub write_units: f64,
    pub read_units: f64,
    /// Writes whose item is over 1 KB (each costs more than one unit).
    pub writes_over_1kb: u64,
    /// UpdateItem requests costed from the item's size after the run (its largest,
    /// since the run's items only grow).
    pub updates_sized_after_run: u64,
    /// Deletes of items whose size was not seen (costed as one unit).
    pub deletes_unsized: u64,
    /// Queries that filtered items out (they cost what they read, which the response does not show).
    pub filtered_queries: u64,
    /// The largest item written, in bytes.
    pub largest_item: usize,
}

fn write_units(size: usize) -> f64 {
    size.max(1).div_ceil(1024) as f64
}

fn read_units(size: usize, consistent: bool) -> f64 {
    let units = size.max(1).div_ceil(4096) as f64;
    if consistent { units } else { units / 2.0 }
}

/// The units of each call (in order), given the items as they stood after the run.
/// `seen` carries item sizes known from earlier puts, for deletes.
pub fn units(calls: &[Call], snap: &Snapshot) -> Units {
    let mut u = Units::default();
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for call in calls.iter().filter(|c| c.service == "dynamodb") {
        let Some(req) = call.request_json() else { continue };
        let table = req.get("TableName").and_then(Value::as_str).unwrap_or_default().to_owned();
        let consistent = req.get("ConsistentRead").and_then(Value::as_bool).unwrap_or(false);
        let write = |u: &mut Units, size: usize| {
            u.write_units += write_units(size);
            u.writes_over_1kb += u64::from(size > 1024);
            u.largest_item = u.largest_item.max(size);
        };
        match call.operation.as_str() {
            "PutItem" => {
                let item = req.get("Item").cloned().unwrap_or_default();
                let size = json_item_size(&item);
                seen.insert((table.clone(), snap.key_of(&table, &item)), size);
                write(&mut u, size);
            }
            "UpdateItem" => {
                let key = req.get("Key").cloned().unwrap_or_default();
                let size = snap.size_of(&table, &key).unwrap_or_else(|| json_item_size(&key));
                u.updates_sized_after_run += 1;
                write(&mut u, size);
            }
            "DeleteItem" => {
                let key = req.get("Key").cloned().unwrap_or_default();
                match seen.get(&(table.clone(), snap.key_of(&table, &key))) {
                    Some(&size) => write(&mut u, size),
                    None => {
                        u.deletes_unsized += 1;
                        write(&mut u, 1);
                    }
                }
            }
            "BatchWriteItem" => {
                for (t, requests) in req.get("RequestItems").and_then(Value::as_object).into_iter().flatten() {
                    for r in requests.as_array().into_iter().flatten() {
                        if let Some(item) = r.pointer("/PutRequest/Item") {
                            let size = json_item_size(item);
                            seen.insert((t.clone(), snap.key_of(t, item)), size);
                            write(&mut u, size);
                        } else if let Some(key) = r.pointer("/DeleteRequest/Key") {
                            let size = seen.get(&(t.clone(), snap.key_of(t, key))).copied();
                            u.deletes_unsized += u64::from(size.is_none());
                            write(&mut u, size.unwrap_or(1));
                        }
                    }
                }
            }
            "TransactWriteItems" => {
                for item in req.get("TransactItems").and_then(Value::as_array).into_iter().flatten() {
                    let size = if let Some(p) = item.get("Put") {
                        p.get("Item").map(json_item_size).unwrap_or(1)
                    } else if let Some(x) = item.get("Update").or(item.get("Delete")).or(item.get("ConditionCheck")) {
                        let t = x.get("TableName").and_then(Value::as_str).unwrap_or_default();
                        snap.size_of(t, x.get("Key").unwrap_or(&Value::Null)).unwrap_or(1)
                    } else {
                        1
                    };
                    u.write_units += 2.0 * write_units(size);
                }
            }
            "GetItem" => {
                let size = call.response_json().and_then(|r| r.get("Item").map(json_item_size)).unwrap_or(0);
                u.read_units += read_units(size, consistent);
            }
            "Scan" if snap.scans.contains_key(&call.request.body) => {
                let bytes = snap.scans.get(&call.request.body).map_or(0, |r| r.bytes);
                u.read_units += read_units(usize::try_from(bytes).unwrap_or(usize::MAX), consistent);
            }
            "Query" | "Scan" => {
                let resp = call.response_json().unwrap_or_default();
                let items = resp.get("Items").and_then(Value::as_array).cloned().unwrap_or_default();
                let total: usize = items.iter().map(json_item_size).sum();
                let scanned = resp.get("ScannedCount").and_then(Value::as_u64).unwrap_or(0);
                u.filtered_queries += u64::from(scanned > items.len() as u64);
                u.read_units += read_units(total, consistent);
            }
            "BatchGetItem" => {
                let resp = call.response_json().unwrap_or_default();
                for (t, items) in resp.get("Responses").and_then(Value::as_object).into_iter().flatten() {
                    let consistent = req
                        .pointer(&format!("/RequestItems/{t}/ConsistentRead"))
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    for item in items.as_array().into_iter().flatten() {
                        u.read_units += read_units(json_item_size(item), consistent);
                    }
                }
            }
            "TransactGetItems" => {
                let resp = call.response_json().unwrap_or_default();
                for r in resp.get("Responses").and_then(Value::as_array).into_iter().flatten() {
                    u.read_units += 2.0 * read_units(r.get("Item").map(json_item_size).unwrap_or(0), true);
                }
            }
            _ => {}
        }
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_follow_the_developer_guide() {
        // "pk" (2) + "user-1" (6)
        assert_eq!(json_item_size(&json!({"pk": {"S": "user-1"}})), 8);
        // A number: one byte per two significant digits, plus one.
        assert_eq!(number_size("12345"), 4);
        assert_eq!(number_size("-1200"), 2);
        assert_eq!(number_size("0.0001"), 2);
        // A map: 3 bytes, plus 1 per element and its name.
        assert_eq!(json_value_size(&json!({"M": {"a": {"S": "xy"}}})), 3 + 1 + 1 + 2);
        assert_eq!(json_value_size(&json!({"L": [{"BOOL": true}, {"NULL": true}]})), 3 + 2 + 2);
        assert_eq!(write_units(1024), 1.0);
        assert_eq!(write_units(1025), 2.0);
        assert_eq!(read_units(100, false), 0.5);
        assert_eq!(read_units(4097, true), 2.0);
    }
}
