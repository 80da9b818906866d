//! The preference center's topics (`topics.toml`), one document in the templates table
//! (`pk` = `topics`), read by the webhook function and kept for a while like templates.

use super::*;
use crate::domain::topics::Topics;

/// The item of the topics document.
const TOPICS_KEY: &str = "topics";

/// The topics, read from the templates table and kept for `ttl`.
#[derive(Debug)]
pub struct DynamoTopics {
    client: Client,
    table: String,
    cache: TtlCache<(), Arc<Topics>>,
}

impl DynamoTopics {
    pub fn new(client: Client, table: impl Into<String>, ttl: Duration) -> Self {
        Self { client, table: table.into(), cache: TtlCache::new(ttl) }
    }

    /// One GetItem. A document that does not read is an error to retry (and alarm on):
    /// `herald topics push` checks the file before it pushes.
    async fn load(&self) -> PortResult<Arc<Topics>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(TOPICS_KEY)))
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        let Some(raw) = out.item.as_ref().and_then(|i| get_s(i, "doc")) else { return Ok(Arc::default()) };
        let topics: Topics = serde_json::from_str(raw).map_err(|e| {
            PortError::Unknown(anyhow::anyhow!("the topics document in the templates table is not valid: {e}"))
        })?;
        Ok(Arc::new(topics))
    }
}

impl TopicStore for DynamoTopics {
    async fn topics(&self) -> PortResult<Arc<Topics>> {
        self.cache.get_or_load(&(), || self.load()).await
    }
}

impl DynamoTemplates {
    /// Stores the topics document (used by `herald topics push` and `herald templates push`).
    pub async fn put_topics(&self, topics: &Topics, now: DateTime<Utc>) -> PortResult<()> {
        let body = serde_json::to_string(topics).map_err(|e| PortError::Unknown(e.into()))?;
        let item: Item = HashMap::from([
            ("pk".to_owned(), s(TOPICS_KEY)),
            ("doc".to_owned(), s(body)),
            ("updated_at".to_owned(), ts(now)),
        ]);
        put(&self.client, &self.table, item).await
    }
}
