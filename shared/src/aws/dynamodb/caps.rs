//! Frequency-cap counters: calendar windows and rolling windows.

use super::*;

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

/// How a holder is written in a counter: the first 16 hex digits of its message id
/// (64 bits: no two messages of one person in one window share it), so a counter
/// stays under one write unit for caps up to about 60 per window.
fn holder_key(holder: &MessageId) -> String {
    holder.as_str().chars().take(16).collect()
}

impl DynamoCaps {
    /// A calendar window: one conditional write that adds the holder to the window's set
    /// of holders while the set is below its max, or finds it there already.
    async fn take_counter(&self, slot: &CapSlot, holder: &str) -> PortResult<Take> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&slot.key)))
            .update_expression("ADD holders :h SET #ttl = :ttl")
            .condition_expression("attribute_not_exists(holders) OR size(holders) < :max OR contains(holders, :hv)")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":h", AttributeValue::Ss(vec![holder.to_owned()]))
            .expression_attribute_values(":hv", s(holder))
            .expression_attribute_values(":max", n(slot.max))
            .expression_attribute_values(":ttl", n(slot.expires_at.timestamp()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => {
                let had = out
                    .attributes
                    .as_ref()
                    .and_then(|old| old.get("holders"))
                    .and_then(|v| v.as_ss().ok())
                    .is_some_and(|set| set.iter().any(|h| h == holder));
                Ok(if had { Take::Held } else { Take::Taken })
            }
            Err(e) => match e.as_service_error() {
                Some(se) if is_conditional_failure(se) => Ok(Take::Full),
                _ => Err(classify("UpdateItem", e)),
            },
        }
    }

    /// A rolling window: the item maps each holder to the instant of its send while that
    /// is inside the window, with a version; a take reads it, drops what has rolled out
    /// and writes it back only if nobody wrote in between (one read, one write; retried
    /// on a race). A holder found there already holds its slot.
    async fn take_rolling(&self, slot: &CapSlot, holder: &str, window_secs: i64, give_back: bool) -> PortResult<Take> {
        let at = slot.at.timestamp_millis();
        let since = at - window_secs * 1000;
        let mut wrote = false;
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
            let mut live: HashMap<String, i64> = item
                .as_ref()
                .and_then(|i| i.get("sends"))
                .and_then(|v| v.as_m().ok())
                .map(|m| {
                    m.iter()
                        .filter_map(|(h, t)| Some((h.clone(), t.as_n().ok()?.parse::<i64>().ok()?)))
                        .filter(|(_, t)| *t > since)
                        .collect()
                })
                .unwrap_or_default();
            if give_back {
                if live.remove(holder).is_none() {
                    return Ok(Take::Taken);
                }
            } else if live.contains_key(holder) {
                // Ours already: a copy of the job, or this call's own write, applied
                // before its answer was lost.
                return Ok(if wrote { Take::Taken } else { Take::Held });
            } else if live.len() >= slot.max as usize {
                return Ok(Take::Full);
            } else {
                live.insert(holder.to_owned(), at);
            }
            let sends = live.into_iter().map(|(h, t)| (h, n(t))).collect();
            let new_item: Item = HashMap::from([
                ("pk".to_owned(), s(&slot.key)),
                ("sends".to_owned(), AttributeValue::M(sends)),
                ("version".to_owned(), n(version + 1)),
                ("ttl".to_owned(), n(slot.expires_at.timestamp())),
            ]);
            wrote = true;
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
                Ok(_) => return Ok(Take::Taken),
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
    async fn try_take(&self, slot: &CapSlot, holder: &MessageId) -> PortResult<Take> {
        let holder = holder_key(holder);
        match slot.rolling_secs {
            Some(secs) => self.take_rolling(slot, &holder, secs, false).await,
            None => self.take_counter(slot, &holder).await,
        }
    }

    async fn give_back(&self, slot: &CapSlot, holder: &MessageId) -> PortResult<()> {
        let holder = holder_key(holder);
        if let Some(secs) = slot.rolling_secs {
            return self.take_rolling(slot, &holder, secs, true).await.map(|_| ());
        }
        // Removing a holder that is not there changes nothing: a second give-back is harmless.
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&slot.key)))
            .update_expression("DELETE holders :h")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":h", AttributeValue::Ss(vec![holder]))
            .send()
            .await;
        conditional("UpdateItem", result).map(drop)
    }
}
