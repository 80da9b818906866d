//! The webhook replay guard.

use super::*;

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
        let token = crate::attempt::token();
        let item: Item = HashMap::from([
            ("pk".to_owned(), s(Self::pk(replay_key))),
            ("ttl".to_owned(), n(until.timestamp())),
            ("owner".to_owned(), s(&token)),
        ]);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            // TTL deletion lags: an item past its time counts as gone.
            .condition_expression("attribute_not_exists(pk) OR #ttl < :now")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":now", n(Utc::now().timestamp()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c)) => {
                    Ok(c.item().and_then(|old| get_s(old, "owner")) == Some(token.as_str()))
                }
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
