//! Recipients: profiles, consent with its audit trail, devices and the endpoint index.

use super::*;

/// Recipients: one `profile` item per person (contact points, preferences, one
/// attribute per consent scope and per device, so concurrent commands never
/// overwrite each other), plus `consent#<at>#<scope>` audit items.
#[derive(Debug, Clone)]
pub struct DynamoRecipients {
    pub(super) client: Client,
    pub(super) table: String,
}

pub(super) const PROFILE: &str = "profile";
const CONSENT_PREFIX: &str = "consent:";
pub(super) const DEVICE_PREFIX: &str = "device:";
/// One attribute per profile attribute (`attr:plan`), so an upsert merges what it names
/// and concurrent upserts of different attributes never overwrite each other.
const ATTRIBUTE_PREFIX: &str = "attr:";
/// Before attributes were typed they were stored whole, as one JSON string: read beneath
/// the `attr:` ones until the next upsert carrying attributes (which replaced the whole
/// set then, and so carries the whole set) removes it.
const LEGACY_ATTRIBUTES: &str = "attributes";
/// When the person last engaged on a channel: `engaged_email`.
const ENGAGED_PREFIX: &str = "engaged_";
/// Set once, by the first write that creates the profile.
pub(super) const CREATED_AT: &str = "created_at";

/// A profile attribute as DynamoDB stores it: S, N, BOOL, or L of S.
fn attribute_value(value: &serde_json::Value) -> Option<AttributeValue> {
    use serde_json::Value;
    Some(match value {
        Value::String(v) => s(v),
        Value::Number(v) => n(v),
        Value::Bool(v) => AttributeValue::Bool(*v),
        Value::Array(items) => AttributeValue::L(items.iter().filter_map(|i| i.as_str().map(s)).collect()),
        Value::Null | Value::Object(_) => return None,
    })
}

/// A stored profile attribute as JSON; `None` for what Herald never writes.
fn attribute_json(value: &AttributeValue) -> Option<serde_json::Value> {
    use serde_json::Value;
    Some(match value {
        AttributeValue::S(v) => Value::String(v.clone()),
        AttributeValue::N(v) => {
            let number = v
                .parse::<i64>()
                .map(serde_json::Number::from)
                .or_else(|_| v.parse::<u64>().map(serde_json::Number::from))
                .ok()
                .or_else(|| v.parse::<f64>().ok().and_then(serde_json::Number::from_f64))?;
            Value::Number(number)
        }
        AttributeValue::Bool(v) => Value::Bool(*v),
        AttributeValue::L(items) => {
            Value::Array(items.iter().filter_map(|i| i.as_s().ok()).map(|v| Value::String(v.clone())).collect())
        }
        _ => return None,
    })
}

impl DynamoRecipients {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    pub(super) fn profile_key(id: &RecipientId) -> Item {
        HashMap::from([("pk".to_owned(), s(id.as_str())), ("sk".to_owned(), s(PROFILE))])
    }

    pub(super) fn parse(item: &Item) -> Recipient {
        let mut r = Recipient {
            id: get_s(item, "pk").and_then(|v| RecipientId::new(v).ok()),
            email: get_s(item, "email").and_then(|v| EmailAddress::new(v).ok()),
            phone: get_s(item, "phone").and_then(|v| PhoneNumber::new(v).ok()),
            timezone: get_s(item, "timezone").and_then(|v| TimeZone::try_from(v.to_owned()).ok()),
            locale: get_s(item, "locale").and_then(|v| Locale::try_from(v.to_owned()).ok()),
            ..Recipient::default()
        };
        let time = |name| get_s(item, name).and_then(|v| NaiveTime::parse_from_str(v, "%H:%M").ok());
        if let (Some(start), Some(end)) = (time("quiet_start"), time("quiet_end")) {
            r.quiet_hours = Some(QuietHours { start, end });
        }
        r.created_at = get_s(item, CREATED_AT).and_then(|v| v.parse().ok());
        if let Some(serde_json::Value::Object(legacy)) =
            get_s(item, LEGACY_ATTRIBUTES).and_then(|v| serde_json::from_str(v).ok())
        {
            r.attributes = legacy;
        }
        for (name, value) in item {
            if let Some(attribute) = name.strip_prefix(ATTRIBUTE_PREFIX) {
                if let Some(v) = attribute_json(value) {
                    r.attributes.insert(attribute.to_owned(), v);
                }
                continue;
            }
            if let Some(channel) = name.strip_prefix(ENGAGED_PREFIX).and_then(|c| c.parse::<Channel>().ok()) {
                if let Some(at) = value.as_s().ok().and_then(|v| v.parse().ok()) {
                    r.last_engaged.insert(channel, at);
                }
                continue;
            }
            let Ok(m) = value.as_m() else { continue };
            if let Some(scope) = name.strip_prefix(CONSENT_PREFIX).and_then(ConsentScope::parse_key) {
                let state = (|| {
                    Some(ConsentState {
                        granted: *m.get("granted")?.as_bool().ok()?,
                        source: ConsentSource::new(get_s(m, "source")?).ok()?,
                        at: get_s(m, "at")?.parse().ok()?,
                    })
                })();
                if let Some(state) = state {
                    r.consents.insert(scope, state);
                }
            } else if name.starts_with(DEVICE_PREFIX) {
                r.devices.extend(Self::parse_device(m));
            }
        }
        r.devices.sort_by(|a, b| a.endpoint_arn.cmp(&b.endpoint_arn));
        r
    }
}

impl RecipientStore for DynamoRecipients {
    async fn get(&self, id: &RecipientId) -> PortResult<Option<Recipient>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::profile_key(id)))
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        Ok(out.item.as_ref().map(Self::parse))
    }

    /// One conditional write, made only when it changes something: a command that repeats
    /// what the profile holds (a second import, a producer's retry) fails its condition and
    /// leaves the item as it was, `updated_at` included.
    async fn upsert(&self, cmd: &UpsertRecipient, now: DateTime<Utc>) -> PortResult<()> {
        let mut sets =
            vec!["updated_at = :now".to_owned(), format!("{CREATED_AT} = if_not_exists({CREATED_AT}, :now)")];
        let mut removes: Vec<String> = Vec::new();
        // What would make the write a change: no profile yet, or one named value differs.
        let mut changes: Vec<String> = vec!["attribute_not_exists(pk)".to_owned()];
        let mut values: Item = HashMap::from([(":now".to_owned(), ts(now))]);
        // Names go through placeholders: several (`timezone`) are DynamoDB reserved words.
        let mut names: HashMap<String, String> = HashMap::new();
        let mut put = |name: &str, value: AttributeValue| {
            sets.push(format!("#{name} = :{name}"));
            changes.push(format!("attribute_not_exists(#{name}) OR #{name} <> :{name}"));
            names.insert(format!("#{name}"), name.to_owned());
            values.insert(format!(":{name}"), value);
        };
        if let Some(v) = &cmd.email {
            put("email", s(v.as_str()));
        }
        if let Some(v) = &cmd.phone {
            put("phone", s(v.as_str()));
        }
        if let Some(v) = cmd.timezone {
            put("timezone", s(String::from(v)));
        }
        if let Some(v) = &cmd.locale {
            put("locale", s(v.as_str()));
        }
        if let Some(q) = cmd.quiet_hours {
            put("quiet_start", s(q.start.format("%H:%M").to_string()));
            put("quiet_end", s(q.end.format("%H:%M").to_string()));
        }
        if let Some(attributes) = &cmd.attributes {
            // Each named attribute is set, or removed by a null; the others keep their value.
            for (i, (name, value)) in attributes.iter().enumerate() {
                names.insert(format!("#a{i}"), format!("{ATTRIBUTE_PREFIX}{name}"));
                match attribute_value(value) {
                    Some(v) => {
                        sets.push(format!("#a{i} = :a{i}"));
                        changes.push(format!("attribute_not_exists(#a{i}) OR #a{i} <> :a{i}"));
                        values.insert(format!(":a{i}"), v);
                    }
                    None => {
                        removes.push(format!("#a{i}"));
                        changes.push(format!("attribute_exists(#a{i})"));
                    }
                }
            }
            names.insert("#legacy".to_owned(), LEGACY_ATTRIBUTES.to_owned());
            removes.push("#legacy".to_owned());
            changes.push("attribute_exists(#legacy)".to_owned());
        }
        let mut update = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            update.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        let condition = changes.iter().map(|c| format!("({c})")).collect::<Vec<_>>().join(" OR ");
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::profile_key(&cmd.recipient)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names((!names.is_empty()).then_some(names))
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        // A failed condition: the profile holds all of it already.
        conditional("UpdateItem", result).map(drop)
    }

    async fn set_consent(&self, cmd: &SetConsent, now: DateTime<Utc>) -> PortResult<ConsentApplied> {
        let scope = ConsentScope { channel: cmd.channel, topic: cmd.topic.clone() };
        let at = cmd.at.unwrap_or(now);
        let state = AttributeValue::M(HashMap::from([
            ("granted".to_owned(), AttributeValue::Bool(cmd.granted)),
            ("source".to_owned(), s(cmd.source.as_str())),
            ("at".to_owned(), ts(at)),
        ]));
        // The audit trail keeps every command, including one older than the current state;
        // the same command again (same scope, time, answer and source) is the same record,
        // left as it was (`received_at` included).
        let audit: Item = HashMap::from([
            ("pk".to_owned(), s(cmd.recipient.as_str())),
            ("sk".to_owned(), s(format!("consent#{}#{}", at.to_rfc3339(), scope.key()))),
            ("granted".to_owned(), AttributeValue::Bool(cmd.granted)),
            ("source".to_owned(), s(cmd.source.as_str())),
            ("at".to_owned(), ts(at)),
            ("received_at".to_owned(), ts(now)),
        ]);
        let recorded = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(audit))
            .condition_expression("attribute_not_exists(pk) OR granted <> :g OR #src <> :src")
            .expression_attribute_names("#src", "source")
            .expression_attribute_values(":g", AttributeValue::Bool(cmd.granted))
            .expression_attribute_values(":src", s(cmd.source.as_str()))
            .send()
            .await;
        conditional("PutItem", recorded)?;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::profile_key(&cmd.recipient)))
            .update_expression(format!(
                "SET #c = :state, updated_at = :now, {CREATED_AT} = if_not_exists({CREATED_AT}, :now)"
            ))
            // Consents can arrive out of order: only a newer one replaces the current state,
            // and one of the same time only when it says something else.
            .condition_expression(
                "attribute_not_exists(#c) OR #c.#at < :at OR (#c.#at = :at AND (#c.#g <> :g OR #c.#src <> :src))",
            )
            .expression_attribute_names("#c", format!("{CONSENT_PREFIX}{}", scope.key()))
            .expression_attribute_names("#at", "at")
            .expression_attribute_names("#g", "granted")
            .expression_attribute_names("#src", "source")
            .expression_attribute_values(":state", state)
            .expression_attribute_values(":now", ts(now))
            .expression_attribute_values(":at", ts(at))
            .expression_attribute_values(":g", AttributeValue::Bool(cmd.granted))
            .expression_attribute_values(":src", s(cmd.source.as_str()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        Ok(match result {
            Ok(_) => ConsentApplied::Applied,
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c)) => {
                    let held = c.item().and_then(|item| Self::parse(item).consents.remove(&scope));
                    if held.is_some_and(|h| h.at == at) { ConsentApplied::Unchanged } else { ConsentApplied::Older }
                }
                _ => return Err(classify("UpdateItem", e)),
            },
        })
    }

    /// One conditional write: on an existing profile only, and only moving the time forward
    /// (receipts arrive out of order and more than once).
    async fn note_engagement(&self, id: &RecipientId, channel: Channel, at: DateTime<Utc>) -> PortResult<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::profile_key(id)))
            .update_expression("SET #e = :at")
            .condition_expression("attribute_exists(pk) AND (attribute_not_exists(#e) OR #e < :at)")
            .expression_attribute_names("#e", format!("{ENGAGED_PREFIX}{channel}"))
            .expression_attribute_values(":at", ts(at))
            .send()
            .await;
        conditional("UpdateItem", result).map(drop)
    }

    async fn add_device(&self, id: &RecipientId, device: &Device, now: DateTime<Utc>) -> PortResult<()> {
        self.register_device(id, device, None, now).await.map(drop)
    }

    /// One read (which attributes hold the token) and one write, plus the index item's delete.
    async fn remove_device(&self, id: &RecipientId, token: &PushToken) -> PortResult<Option<Device>> {
        let Some(item) = self.profile(id).await? else { return Ok(None) };
        let found: Vec<(String, Device)> =
            Self::device_attributes(&item).into_iter().filter(|(_, d)| d.token == *token).collect();
        if found.is_empty() {
            return Ok(None);
        }
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::profile_key(id)))
            .expression_attribute_names("#tok", "token")
            .expression_attribute_values(":tok", s(token.as_str()));
        let mut removes = Vec::new();
        let mut conditions = Vec::new();
        for (i, (name, _)) in found.iter().enumerate() {
            req = req.expression_attribute_names(format!("#d{i}"), name);
            removes.push(format!("#d{i}"));
            // Unless a registration gave that device a new token in the meantime.
            conditions.push(format!("#d{i}.#tok = :tok"));
        }
        let result = req
            .update_expression(format!("REMOVE {}", removes.join(", ")))
            .condition_expression(conditions.join(" AND "))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let removed = match result {
            Ok(_) => found,
            Err(e) => match e.as_service_error() {
                // The token is gone from the profile already: this write's own first attempt
                // (applied, then answered with an error and retried by the SDK), or another
                // removal. Either way its index items must go too, or they are orphaned.
                // A registration that put the token back since keeps it, and its index.
                Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c)) => {
                    let now_held = c.item().map(Self::device_attributes).unwrap_or_default();
                    if now_held.iter().any(|(_, d)| d.token == *token) {
                        return Ok(None);
                    }
                    found
                }
                _ => return Err(classify("UpdateItem", e)),
            },
        };
        for (name, device) in &removed {
            let slot = name.strip_prefix(DEVICE_PREFIX).unwrap_or(name);
            self.drop_index_of(&device.endpoint_arn, id, Some(slot)).await?;
        }
        Ok(removed.into_iter().next().map(|(_, d)| d))
    }

    async fn erase(&self, id: &RecipientId) -> PortResult<Vec<Device>> {
        let devices = self.get(id).await?.map(|r| r.devices).unwrap_or_default();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(id.as_str()))
                .projection_expression("pk, sk")
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| classify("Query", e))?;
            batch_delete(&self.client, &self.table, page.items.unwrap_or_default()).await?;
            match page.last_evaluated_key {
                Some(k) => start = Some(k),
                None => break,
            }
        }
        // The endpoint index items name the recipient: they go too.
        for device in &devices {
            self.drop_index(&device.endpoint_arn, id).await?;
        }
        Ok(devices)
    }
}

/// A scan's `LastEvaluatedKey` as an opaque string (the table's keys are strings) and back.
fn encode_key(key: &Item) -> PortResult<String> {
    let mut out = serde_json::Map::new();
    for (name, value) in key {
        let text = value
            .as_s()
            .map_err(|_| PortError::Unknown(anyhow::anyhow!("the recipients table has a key that is not a string")))?;
        out.insert(name.clone(), serde_json::Value::String(text.clone()));
    }
    Ok(serde_json::Value::Object(out).to_string())
}

fn decode_key(raw: &str) -> PortResult<Item> {
    let invalid = || PortError::Permanent {
        code: "InvalidCursor".into(),
        message: "the scan cursor's start is not one a page gave".into(),
    };
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(raw).map_err(|_| invalid())?;
    map.into_iter().map(|(k, v)| v.as_str().map(|v| (k, s(v))).ok_or_else(invalid)).collect()
}

impl AudienceScan for DynamoRecipients {
    /// One parallel-scan request: `Limit` items read, of which the profiles are kept by a
    /// filter (consent audit and endpoint index items are read, and paid for, but not
    /// returned). Eventually consistent: half the read units of a strong read.
    async fn page(&self, cursor: &ScanCursor, limit: u32) -> PortResult<ScanPage> {
        let valid = (1..=1_000_000).contains(&cursor.total_segments) && cursor.segment < cursor.total_segments;
        if !valid || limit == 0 {
            return Err(PortError::Permanent {
                code: "InvalidCursor".into(),
                message: format!(
                    "scan segment {} of {} with a limit of {limit}: segments are 0 to total - 1, of at most \
                     1,000,000, and the limit at least 1",
                    cursor.segment, cursor.total_segments
                ),
            });
        }
        let start = cursor.start.as_deref().map(decode_key).transpose()?;
        let out = self
            .client
            .scan()
            .table_name(&self.table)
            .segment(i32::try_from(cursor.segment).unwrap_or(i32::MAX))
            .total_segments(i32::try_from(cursor.total_segments).unwrap_or(i32::MAX))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .filter_expression("#sk = :profile")
            .expression_attribute_names("#sk", "sk")
            .expression_attribute_values(":profile", s(PROFILE))
            .consistent_read(false)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| classify("Scan", e))?;
        let recipients: Vec<Recipient> = out.items.as_deref().unwrap_or_default().iter().map(Self::parse).collect();
        let items_read = usize::try_from(out.scanned_count).unwrap_or_default();
        let next = out.last_evaluated_key.as_ref().filter(|k| !k.is_empty()).map(encode_key).transpose()?;
        Ok(ScanPage { recipients, items_read, next })
    }
}
