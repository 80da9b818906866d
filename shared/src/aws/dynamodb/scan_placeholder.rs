//! PLACEHOLDER until the segments branch merges.

use super::*;

impl AudienceScan for DynamoRecipients {
    async fn page(&self, cursor: &ScanCursor, limit: u32) -> PortResult<ScanPage> {
        let start: Option<Item> = match &cursor.start {
            Some(raw) => {
                let keys: HashMap<String, String> =
                    serde_json::from_str(raw).map_err(|e| PortError::Unknown(e.into()))?;
                Some(keys.into_iter().map(|(k, v)| (k, s(v))).collect())
            }
            None => None,
        };
        let out = self
            .client
            .scan()
            .table_name(&self.table)
            .segment(cursor.segment as i32)
            .total_segments(cursor.total_segments as i32)
            .limit(limit as i32)
            .filter_expression("sk = :profile")
            .expression_attribute_values(":profile", s(recipients::PROFILE))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| classify("Scan", e))?;
        let items = out.items.unwrap_or_default();
        let next = match out.last_evaluated_key.filter(|k| !k.is_empty()) {
            Some(k) => {
                let keys: HashMap<&String, &str> =
                    k.iter().filter_map(|(name, v)| Some((name, v.as_s().ok()?.as_str()))).collect();
                Some(serde_json::to_string(&keys).map_err(|e| PortError::Unknown(e.into()))?)
            }
            None => None,
        };
        Ok(ScanPage { items_read: items.len(), recipients: items.iter().map(DynamoRecipients::parse).collect(), next })
    }
}
