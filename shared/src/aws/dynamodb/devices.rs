//! Devices by platform endpoint: the endpoint index and the device registry.

use super::recipients::{CREATED_AT, DEVICE_PREFIX};
use super::*;

/// The endpoint index: one item per platform endpoint, `pk` = `endpoint#<ARN>`,
/// naming the recipient and device slot that hold it. Push events name only an
/// endpoint; this is how they find the person. Devices stay attributes of the
/// profile (eligibility reads one item per recipient), so the index costs one more
/// write per token registration and one per removal. Registrations happen when an
/// app installs or its token rotates, not per notification: the notification
/// budget (3 write units from ingest to receipt) is untouched. A GSI could not do
/// it: devices are map attributes, and a GSI indexes top-level attributes only.
const ENDPOINT_PREFIX: &str = "endpoint#";
const ENDPOINT_SK: &str = "device";

impl DynamoRecipients {
    fn endpoint_key(arn: &str) -> Item {
        HashMap::from([("pk".to_owned(), s(format!("{ENDPOINT_PREFIX}{arn}"))), ("sk".to_owned(), s(ENDPOINT_SK))])
    }

    pub(super) fn parse_device(m: &Item) -> Option<Device> {
        Some(Device {
            platform: parse_platform(get_s(m, "platform")?)?,
            token: PushToken::new(get_s(m, "token")?).ok()?,
            endpoint_arn: get_s(m, "arn")?.to_owned(),
        })
    }

    /// The device attributes of a profile item, with their attribute names.
    pub(super) fn device_attributes(item: &Item) -> Vec<(String, Device)> {
        item.iter()
            .filter(|(name, _)| name.starts_with(DEVICE_PREFIX))
            .filter_map(|(name, v)| Some((name.clone(), Self::parse_device(v.as_m().ok()?)?)))
            .collect()
    }

    pub(super) async fn profile(&self, id: &RecipientId) -> PortResult<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::profile_key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        Ok(out.item)
    }

    /// Removes a device slot from a profile while it still holds `arn`; returns the device removed.
    pub(super) async fn remove_slot_if(&self, id: &RecipientId, slot: &str, arn: &str) -> PortResult<Option<Device>> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::profile_key(id)))
            .update_expression("REMOVE #d")
            .condition_expression("#d.#arn = :arn")
            .expression_attribute_names("#d", format!("{DEVICE_PREFIX}{slot}"))
            .expression_attribute_names("#arn", "arn")
            .expression_attribute_values(":arn", s(arn))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedOld)
            .send()
            .await;
        match out {
            Ok(o) => Ok(o.attributes.and_then(|a| Self::device_attributes(&a).into_iter().next()).map(|(_, d)| d)),
            Err(e) => match e.as_service_error() {
                Some(se) if is_conditional_failure(se) => Ok(None),
                _ => Err(classify("UpdateItem", e)),
            },
        }
    }

    /// Deletes an endpoint's index item if `owner` holds it (or nobody does); `false`
    /// when it has moved to someone else since.
    pub(super) async fn drop_index(&self, arn: &str, owner: &RecipientId) -> PortResult<bool> {
        self.drop_index_of(arn, owner, None).await
    }

    /// [`Self::drop_index`], and only while the index names that `slot` of the owner's.
    pub(super) async fn drop_index_of(&self, arn: &str, owner: &RecipientId, slot: Option<&str>) -> PortResult<bool> {
        let mut req = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::endpoint_key(arn)))
            .expression_attribute_values(":r", s(owner.as_str()));
        req = match slot {
            Some(slot) => req
                .condition_expression("attribute_not_exists(pk) OR (recipient = :r AND slot = :s)")
                .expression_attribute_values(":s", s(slot)),
            None => req.condition_expression("attribute_not_exists(pk) OR recipient = :r"),
        };
        let result = req.send().await;
        Ok(conditional("DeleteItem", result)?.is_some())
    }
}

impl DeviceRegistry for DynamoRecipients {
    /// Two writes in the common case (the index item, the profile attribute); one more
    /// when the endpoint moves from another recipient, one per token replaced.
    async fn register_device(
        &self,
        id: &RecipientId,
        device: &Device,
        device_id: Option<&DeviceId>,
        now: DateTime<Utc>,
    ) -> PortResult<Vec<Device>> {
        let slot = device_slot(&device.token, device_id);
        let index: Item = HashMap::from([
            ("pk".to_owned(), s(format!("{ENDPOINT_PREFIX}{}", device.endpoint_arn))),
            ("sk".to_owned(), s(ENDPOINT_SK)),
            ("recipient".to_owned(), s(id.as_str())),
            ("slot".to_owned(), s(&slot)),
            ("at".to_owned(), ts(now)),
        ]);
        // Written only when it changes who holds the endpoint: the same registration again
        // (a second import, a producer's retry) leaves the index item as it was.
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(index))
            .condition_expression("attribute_not_exists(pk) OR recipient <> :r OR slot <> :s")
            .expression_attribute_values(":r", s(id.as_str()))
            .expression_attribute_values(":s", s(&slot))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await;
        let before = match conditional("PutItem", put)? {
            Some(out) => out
                .attributes
                .and_then(|old| Some((get_s(&old, "recipient")?.to_owned(), get_s(&old, "slot")?.to_owned()))),
            // The index names this person and slot already.
            None => Some((id.as_str().to_owned(), slot.clone())),
        };

        // Other slots of this person that hold the same endpoint: the same token seen
        // under another slot (registered before with or without a device id).
        let mut stale: Vec<String> = Vec::new();
        if let Some((owner, old_slot)) = &before
            && owner == id.as_str()
            && *old_slot != slot
        {
            stale.push(old_slot.clone());
        }
        let token_slot = device.token.handle();
        if token_slot != slot && !stale.contains(&token_slot) {
            stale.push(token_slot);
        }
        let value = AttributeValue::M(HashMap::from([
            ("platform".to_owned(), s(device.platform.as_str())),
            ("token".to_owned(), s(device.token.as_str())),
            ("arn".to_owned(), s(&device.endpoint_arn)),
            ("at".to_owned(), ts(now)),
        ]));
        let mut update = format!("SET #d = :d, updated_at = :now, {CREATED_AT} = if_not_exists({CREATED_AT}, :now)");
        // A change: the slot holds another device (or none), or a stale slot is still there.
        let mut changes =
            vec!["attribute_not_exists(#d)".to_owned(), "#d.#p <> :p OR #d.#tok <> :tok OR #d.#arn <> :arn".to_owned()];
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::profile_key(id)))
            .expression_attribute_names("#d", format!("{DEVICE_PREFIX}{slot}"))
            .expression_attribute_names("#p", "platform")
            .expression_attribute_names("#tok", "token")
            .expression_attribute_names("#arn", "arn")
            .expression_attribute_values(":d", value)
            .expression_attribute_values(":now", ts(now))
            .expression_attribute_values(":p", s(device.platform.as_str()))
            .expression_attribute_values(":tok", s(device.token.as_str()))
            .expression_attribute_values(":arn", s(&device.endpoint_arn))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedOld);
        if !stale.is_empty() {
            let names: Vec<String> = (0..stale.len()).map(|i| format!("#s{i}")).collect();
            update.push_str(&format!(" REMOVE {}", names.join(", ")));
            for (name, old) in names.iter().zip(&stale) {
                req = req.expression_attribute_names(name, format!("{DEVICE_PREFIX}{old}"));
                changes.push(format!("attribute_exists({name})"));
            }
        }
        let condition = changes.iter().map(|c| format!("({c})")).collect::<Vec<_>>().join(" OR ");
        let updated = req.update_expression(update).condition_expression(condition).send().await;
        // A failed condition: the profile holds this device already, and nothing was replaced.
        let previous = conditional("UpdateItem", updated)?
            .and_then(|out| out.attributes)
            .map(|old| Self::device_attributes(&old))
            .unwrap_or_default();

        // The endpoint (the same token) moved from another recipient: it is theirs no more.
        if let Some((owner, old_slot)) = before.filter(|(owner, _)| owner != id.as_str())
            && let Ok(owner) = RecipientId::new(owner)
        {
            self.remove_slot_if(&owner, &old_slot, &device.endpoint_arn).await?;
        }
        // This device's previous token: its endpoint is nobody's now.
        let mut replaced = Vec::new();
        for (_, old) in previous.into_iter().filter(|(_, d)| d.endpoint_arn != device.endpoint_arn) {
            if self.drop_index(&old.endpoint_arn, id).await? {
                replaced.push(old);
            }
        }
        Ok(replaced)
    }

    /// One read of the index item, one write to the profile, one delete of the index item.
    async fn remove_endpoint(&self, endpoint_arn: &str) -> PortResult<Option<(RecipientId, Device)>> {
        let index = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::endpoint_key(endpoint_arn)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?
            .item;
        let Some(index) = index else { return Ok(None) };
        let (Some(owner), Some(slot)) =
            (get_s(&index, "recipient").and_then(|r| RecipientId::new(r).ok()), get_s(&index, "slot"))
        else {
            return Ok(None);
        };
        let removed = self.remove_slot_if(&owner, slot, endpoint_arn).await?;
        self.drop_index(endpoint_arn, &owner).await?;
        Ok(removed.map(|d| (owner, d)))
    }
}
