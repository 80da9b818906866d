//! The webhook replay guard.

use super::*;

/// Signatures seen by the webhook function, in the ledger table (`pk` =
/// `replay#<key>`, expiring by TTL after the freshness window): one conditional
/// put per signed request, which a second copy of the request cannot pass, and one
/// update once the request is handed on.
#[derive(Debug, Clone)]
pub struct DynamoReplayGuard {
    client: Client,
    table: String,
    /// How long an unconfirmed first use blocks a second: longer than the webhook
    /// function may run (its timeout is 10 s), so a live attempt is never doubled.
    hold: chrono::TimeDelta,
}

impl DynamoReplayGuard {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into(), hold: chrono::TimeDelta::minutes(2) }
    }

    /// The same guard with another hold (tests: 0, to play an attempt that died).
    pub fn holding_for(self, hold: chrono::TimeDelta) -> Self {
        Self { hold, ..self }
    }

    fn pk(key: &str) -> String {
        format!("replay#{key}")
    }
}

impl ReplayGuard for DynamoReplayGuard {
    async fn first_use(&self, replay_key: &str, until: DateTime<Utc>) -> PortResult<bool> {
        let token = crate::attempt::token();
        let now = Utc::now();
        let item: Item = HashMap::from([
            ("pk".to_owned(), s(Self::pk(replay_key))),
            ("ttl".to_owned(), n(until.timestamp())),
            ("owner".to_owned(), s(&token)),
            ("pending_until".to_owned(), n((now + self.hold).timestamp_millis())),
        ]);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            // TTL deletion lags: an item past its time counts as gone.
            // An unconfirmed use whose hold ran out was an attempt that died before it
            // handed the request on: the retry takes its place.
            .condition_expression("attribute_not_exists(pk) OR #ttl < :now OR pending_until < :now_ms")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":now", n(now.timestamp()))
            .expression_attribute_values(":now_ms", n(now.timestamp_millis()))
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

    async fn confirm(&self, replay_key: &str) -> PortResult<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&Self::pk(replay_key))))
            .update_expression("REMOVE pending_until")
            .condition_expression("attribute_exists(pk)")
            .send()
            .await;
        conditional("UpdateItem", result).map(drop)
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
