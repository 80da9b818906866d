//! The suppression list, by hashed contact point.

use super::*;

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
