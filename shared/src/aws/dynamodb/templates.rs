//! Templates, campaigns, segments and the profile schema, cached in memory.

use super::*;
use crate::domain::journey::{Journey, JourneyName};

/// Templates, read from the table and kept compiled in memory for `ttl`, so a
/// warm function reads each template about once a minute at most.
#[derive(Debug)]
pub struct DynamoTemplates {
    pub(super) client: Client,
    pub(super) table: String,
    /// Documents as last read (their absence included).
    cache: TtlCache<TemplateName, Option<Arc<CompiledTemplate>>>,
    campaigns: TtlCache<CampaignId, Option<Arc<CampaignDoc>>>,
    segments: TtlCache<SegmentName, Option<Arc<SegmentDoc>>>,
    profile: TtlCache<(), Arc<ProfileSchema>>,
    /// Every campaign, as last listed.
    catalog: TtlCache<(), Arc<Vec<Arc<CampaignDoc>>>>,
    /// Journeys by (name, version; `None`: the latest), and every version of every journey.
    pub(super) journeys: TtlCache<(JourneyName, Option<u32>), Option<Arc<Journey>>>,
    pub(super) journey_catalog: TtlCache<(), Arc<Vec<Arc<Journey>>>>,
}

/// The item of the profile schema (`profile.toml`).
const PROFILE_SCHEMA_KEY: &str = "profile#schema";

/// What a versioned push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Written,
    /// The same document was there already under that version.
    Unchanged,
}

impl DynamoTemplates {
    pub fn new(client: Client, table: impl Into<String>, ttl: Duration) -> Self {
        Self {
            client,
            table: table.into(),
            cache: TtlCache::new(ttl),
            campaigns: TtlCache::new(ttl),
            segments: TtlCache::new(ttl),
            profile: TtlCache::new(ttl),
            catalog: TtlCache::new(ttl),
            journeys: TtlCache::new(ttl),
            journey_catalog: TtlCache::new(ttl),
        }
    }

    /// Stores a segment (`pk` = `segment#<name>`), versioned: written when no version of
    /// it is stored or the stored one is older; `Unchanged` when the very same document is
    /// stored; refused (`VersionConflict`) when the stored document differs under the same
    /// version or a newer one. A changed segment needs a new version: a broadcast records the
    /// version it ran with, which must keep meaning one filter.
    pub async fn put_segment(&self, doc: &SegmentDoc, now: DateTime<Utc>) -> PortResult<Pushed> {
        let body = serde_json::to_string(doc).map_err(|e| PortError::Unknown(e.into()))?;
        let item: Item = HashMap::from([
            ("pk".to_owned(), s(format!("segment#{}", doc.name))),
            ("version".to_owned(), n(doc.version)),
            ("doc".to_owned(), s(&body)),
            ("updated_at".to_owned(), ts(now)),
        ]);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR #v < :v")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":v", n(doc.version))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Pushed::Written),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c)) => {
                    let stored = c.item();
                    if stored.and_then(|i| get_s(i, "doc")) == Some(body.as_str()) {
                        return Ok(Pushed::Unchanged);
                    }
                    let version: u32 = stored.and_then(|i| get_n(i, "version")).unwrap_or_default();
                    let message = if version == doc.version {
                        format!(
                            "segment {} v{version} is stored with other content: raise its version to push a change",
                            doc.name
                        )
                    } else {
                        format!("segment {} v{version} is stored, newer than v{}", doc.name, doc.version)
                    };
                    Err(PortError::Permanent { code: "VersionConflict".into(), message })
                }
                _ => Err(classify("PutItem", e)),
            },
        }
    }

    /// Stores the profile schema (`pk` = `profile#schema`).
    pub async fn put_profile_schema(&self, schema: &ProfileSchema, now: DateTime<Utc>) -> PortResult<()> {
        let body = serde_json::to_string(schema).map_err(|e| PortError::Unknown(e.into()))?;
        let item: Item = HashMap::from([
            ("pk".to_owned(), s(PROFILE_SCHEMA_KEY)),
            ("doc".to_owned(), s(body)),
            ("updated_at".to_owned(), ts(now)),
        ]);
        put(&self.client, &self.table, item).await
    }

    /// Every campaign document: a Scan of the templates table for `campaign#` items. It
    /// reads the whole table (templates too: a filter does not lower what a Scan is billed),
    /// a few dozen small items, once per cache lifetime. A document that does not read is
    /// logged and left out: one bad campaign does not stop the others' conversions.
    async fn list_campaigns(&self) -> PortResult<Arc<Vec<Arc<CampaignDoc>>>> {
        let values = HashMap::from([(":p".to_owned(), s("campaign#"))]);
        let items = scan_all(&self.client, &self.table, "begins_with(pk, :p)", values, Some("pk, doc")).await?;
        let mut docs = Vec::new();
        for item in &items {
            let pk = get_s(item, "pk").unwrap_or_default();
            let doc = get_s(item, "doc").map(serde_json::from_str::<CampaignDoc>);
            match doc {
                Some(Ok(doc)) if doc.validate().is_ok() => docs.push(Arc::new(doc)),
                _ => tracing::warn!(item = pk, "campaign document does not read: left out"),
            }
        }
        Ok(Arc::new(docs))
    }

    pub(super) async fn load_doc(&self, pk: &str) -> PortResult<Option<String>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk)))
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        Ok(out.item.as_ref().and_then(|i| get_s(i, "doc")).map(str::to_owned))
    }

    async fn load_segment(&self, name: &SegmentName) -> PortResult<Option<Arc<SegmentDoc>>> {
        let Some(raw) = self.load_doc(&format!("segment#{name}")).await? else { return Ok(None) };
        let doc: SegmentDoc = serde_json::from_str(&raw).map_err(|e| PortError::Permanent {
            code: "InvalidSegment".into(),
            message: format!("segment {name} is not a valid document: {e}"),
        })?;
        Ok(Some(Arc::new(doc)))
    }

    /// An unreadable schema is an error to retry (and alarm on), never a reason to refuse
    /// producers' attributes: `herald templates push` checks it before it pushes.
    async fn load_profile_schema(&self) -> PortResult<Arc<ProfileSchema>> {
        let Some(raw) = self.load_doc(PROFILE_SCHEMA_KEY).await? else { return Ok(Arc::default()) };
        let schema: ProfileSchema = serde_json::from_str(&raw).map_err(|e| {
            PortError::Unknown(anyhow::anyhow!("the profile schema in the templates table is not valid: {e}"))
        })?;
        Ok(Arc::new(schema))
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

impl SegmentStore for DynamoTemplates {
    async fn segment(&self, name: &SegmentName) -> PortResult<Option<Arc<SegmentDoc>>> {
        self.segments.get_or_load(name, || self.load_segment(name)).await
    }

    async fn profile_schema(&self) -> PortResult<Arc<ProfileSchema>> {
        self.profile.get_or_load(&(), || self.load_profile_schema()).await
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

impl CampaignCatalog for DynamoTemplates {
    async fn campaigns(&self) -> PortResult<Arc<Vec<Arc<CampaignDoc>>>> {
        self.catalog.get_or_load(&(), || self.list_campaigns()).await
    }
}
