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
