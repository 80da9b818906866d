//! Templates and campaigns, cached compiled in memory.

use super::*;

/// Templates, read from the table and kept compiled in memory for `ttl`, so a
/// warm function reads each template about once a minute at most.
#[derive(Debug)]
pub struct DynamoTemplates {
    client: Client,
    table: String,
    /// Documents as last read (their absence included).
    cache: TtlCache<TemplateName, Option<Arc<CompiledTemplate>>>,
    campaigns: TtlCache<CampaignId, Option<Arc<CampaignDoc>>>,
    /// Every campaign, as last listed.
    catalog: TtlCache<(), Arc<Vec<Arc<CampaignDoc>>>>,
}

impl DynamoTemplates {
    pub fn new(client: Client, table: impl Into<String>, ttl: Duration) -> Self {
        Self {
            client,
            table: table.into(),
            cache: TtlCache::new(ttl),
            campaigns: TtlCache::new(ttl),
            catalog: TtlCache::new(ttl),
        }
    }

    /// Every campaign document: a Scan of the templates table for `campaign#` items. It
    /// reads the whole table (templates too: a filter does not lower what a Scan is billed),
    /// a few dozen small items, once per cache lifetime. A document that does not read is
    /// logged and left out: one bad campaign does not stop the others' conversions.
    async fn list_campaigns(&self) -> PortResult<Arc<Vec<Arc<CampaignDoc>>>> {
        let mut docs = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(pk, :p)")
                .projection_expression("pk, doc")
                .expression_attribute_values(":p", s("campaign#"))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| classify("Scan", e))?;
            for item in page.items.unwrap_or_default() {
                let pk = get_s(&item, "pk").unwrap_or_default();
                let doc = get_s(&item, "doc").map(serde_json::from_str::<CampaignDoc>);
                match doc {
                    Some(Ok(doc)) if doc.validate().is_ok() => docs.push(Arc::new(doc)),
                    _ => tracing::warn!(item = pk, "campaign document does not read: left out"),
                }
            }
            match page.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(k) => start = Some(k),
                None => break,
            }
        }
        Ok(Arc::new(docs))
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

impl CampaignCatalog for DynamoTemplates {
    async fn campaigns(&self) -> PortResult<Arc<Vec<Arc<CampaignDoc>>>> {
        self.catalog.get_or_load(&(), || self.list_campaigns()).await
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
