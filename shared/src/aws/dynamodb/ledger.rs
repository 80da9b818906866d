//! The message ledger: idempotent admission, send claims, status transitions.

use super::*;

/// The attributes that hold one channel's claim in `all` mode, where each channel is
/// claimed on its own: until when, by which attempt, and the provider id once sent.
struct ChannelClaim {
    until: String,
    token: String,
    sent: String,
}

impl ChannelClaim {
    fn of(channel: Channel) -> Self {
        let c = channel.as_str();
        Self { until: format!("claim_until_{c}"), token: format!("claim_token_{c}"), sent: format!("sent_{c}") }
    }
}

/// Whether the claim recorded on the item is this attempt's own: its write was applied,
/// answered with an error, and retried by the SDK, whose retry then failed its condition.
fn own_claim(item: &Item, claim: &Claim<'_>) -> bool {
    if claim.per_channel {
        get_s(item, &ChannelClaim::of(claim.channel).token) == Some(claim.token)
    } else {
        get_s(item, "claim_token") == Some(claim.token) && get_s(item, "channel") == Some(claim.channel.as_str())
    }
}

/// Until when `all` mode's claim on `claim.channel` holds; `None` when the channel is free
/// (never claimed, or claimed by an attempt that ran out without recording a send).
fn channel_held_until(item: &Item, claim: &Claim<'_>) -> Option<Option<DateTime<Utc>>> {
    let names = ChannelClaim::of(claim.channel);
    if item.contains_key(&names.sent) {
        return Some(None);
    }
    let until = DateTime::from_timestamp(get_n(item, &names.until)?, 0)?;
    // As the condition compares them: whole seconds.
    (until.timestamp() >= claim.at.timestamp()).then_some(Some(until))
}

/// An `all`-mode message another channel has taken past `sent` (a receipt, or that
/// channel's failure) and that is not closed, with `channel` free.
fn open_past_sent(item: &Item, claim: &Claim<'_>) -> bool {
    get_n::<u8>(item, "rank").is_some_and(|r| r > Status::Sent.rank() && r < Status::Rejected.rank())
        && channel_held_until(item, claim).is_none()
}

/// Why a claim failed, from the item as it was: an earlier claim that has neither
/// expired nor been followed by a provider id (or a receipt, in `first` mode) is `Held`.
fn held(item: &Item, claim: &Claim<'_>) -> Option<Claimed> {
    if claim.per_channel {
        return channel_held_until(item, claim)?.map(|until| Claimed::Held { until });
    }
    if item.contains_key("provider_id") || get_n::<u8>(item, "rank")? != Status::Sent.rank() {
        return None;
    }
    let until = DateTime::from_timestamp(get_n(item, "claim_until")?, 0)?;
    (until.timestamp() >= claim.at.timestamp()).then_some(Claimed::Held { until })
}

/// The message ledger: one item per notification (`pk` = message id) and one per
/// rejected body (`pk` = `rejected#<sqs message id>`), both expiring by TTL.
#[derive(Debug, Clone)]
pub struct DynamoLedger {
    pub(super) client: Client,
    pub(super) table: String,
    /// Broadcast states as last read (see [`super::STATE_CACHE`]).
    pub(super) broadcast_states: Arc<TtlCache<CampaignId, Option<crate::domain::broadcast::BroadcastState>>>,
}

impl DynamoLedger {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into(), broadcast_states: Arc::new(TtlCache::new(super::STATE_CACHE)) }
    }

    /// One conditional claim, moving the status to `sent` or (`all` mode, past `sent`)
    /// leaving it. `Err(item)`: refused, with the item as it was (`None`: no such message).
    async fn try_claim(&self, claim: &Claim<'_>, move_status: bool) -> PortResult<Result<(), Option<Item>>> {
        let sent = Transition::new(Status::Sent, claim.at).channel(claim.channel);
        let mut sets = vec!["template_version = :v", "history = list_append(if_not_exists(history, :empty), :h)"];
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(claim.id.as_str())))
            .expression_attribute_names("#rank", "rank")
            .expression_attribute_values(":rank", n(Status::Sent.rank()))
            .expression_attribute_values(":until", n(claim.until.timestamp()))
            .expression_attribute_values(":tok", s(claim.token))
            .expression_attribute_values(":now", n(claim.at.timestamp()))
            .expression_attribute_values(":v", n(claim.template_version))
            .expression_attribute_values(":empty", AttributeValue::L(vec![]))
            .expression_attribute_values(":h", history_entry(&sent))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        // One channel per message (`first` mode): a new send, or the retry of an attempt
        // that ended without recording a provider id. `all` mode: each channel on its own,
        // with the same expiry, and not once the message is closed (suppressed, rejected,
        // expired).
        let condition = if claim.per_channel {
            let names = ChannelClaim::of(claim.channel);
            req = req
                .expression_attribute_names("#cu", names.until)
                .expression_attribute_names("#ct", names.token)
                .expression_attribute_names("#cs", names.sent);
            sets.push("#cu = :until, #ct = :tok");
            let free = "(attribute_not_exists(#cu) OR (#cu < :now AND attribute_not_exists(#cs)))";
            if move_status {
                format!("attribute_exists(pk) AND #rank <= :rank AND {free}")
            } else {
                req = req.expression_attribute_values(":closed", n(Status::Rejected.rank()));
                format!("attribute_exists(pk) AND #rank > :rank AND #rank < :closed AND {free}")
            }
        } else {
            sets.push("claim_until = :until, claim_token = :tok");
            "attribute_exists(pk) AND (#rank < :rank OR (#rank = :rank AND claim_until < :now \
             AND attribute_not_exists(provider_id)))"
                .to_owned()
        };
        if move_status {
            sets.push("#status = :sent, #rank = :rank, channel = :channel");
            req = req
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":sent", s(Status::Sent.as_str()))
                .expression_attribute_values(":channel", s(claim.channel.as_str()));
        }
        if let Some(v) = claim.variant {
            sets.push("variant = :variant");
            req = req.expression_attribute_values(":variant", s(v));
        }
        match req.update_expression(format!("SET {}", sets.join(", "))).condition_expression(condition).send().await {
            Ok(_) => Ok(Ok(())),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c)) => {
                    Ok(Err(c.item().filter(|i| i.contains_key("pk")).cloned()))
                }
                _ => Err(classify("UpdateItem", e)),
            },
        }
    }

    /// One conditional write of [`Ledger::record_delivery`]: the channel's reference, the
    /// history and (`move_status`) the status `delivered`. `Err(item)`: refused, with the
    /// item as it was (`None`: no such message).
    async fn try_record_delivery(
        &self,
        d: &StoredDelivery<'_>,
        condition: &str,
        move_status: bool,
    ) -> PortResult<Result<(), Option<Item>>> {
        let mut t = Transition::new(Status::Delivered, d.at).channel(d.channel);
        t.provider_id = Some(d.reference.to_owned());
        let mut sets =
            vec!["#cs = :ref", "template_version = :v", "history = list_append(if_not_exists(history, :empty), :h)"];
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(d.id.as_str())))
            .expression_attribute_names("#rank", "rank")
            .expression_attribute_names("#cs", ChannelClaim::of(d.channel).sent)
            .expression_attribute_values(":ref", s(d.reference))
            .expression_attribute_values(":v", n(d.template_version))
            .expression_attribute_values(":empty", AttributeValue::L(vec![]))
            .expression_attribute_values(":h", history_entry(&t))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if move_status {
            sets.push(
                "#status = :status, #rank = :rank, channel = :channel, provider_id = if_not_exists(provider_id, :ref)",
            );
            req = req
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":status", s(Status::Delivered.as_str()))
                .expression_attribute_values(":rank", n(Status::Delivered.rank()))
                .expression_attribute_values(":channel", s(d.channel.as_str()));
        }
        if condition.contains(":sent") {
            req = req
                .expression_attribute_values(":sent", n(Status::Sent.rank()))
                .expression_attribute_values(":now", n(d.at.timestamp()));
        }
        if condition.contains(":delivered") {
            req = req.expression_attribute_values(":delivered", n(Status::Delivered.rank()));
        }
        if condition.contains(":closed") {
            req = req.expression_attribute_values(":closed", n(Status::Rejected.rank()));
        }
        if let Some(v) = d.variant {
            sets.push("variant = :variant");
            req = req.expression_attribute_values(":variant", s(v));
        }
        match req.update_expression(format!("SET {}", sets.join(", "))).condition_expression(condition).send().await {
            Ok(_) => Ok(Ok(())),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c)) => {
                    Ok(Err(c.item().filter(|i| i.contains_key("pk")).cloned()))
                }
                _ => Err(classify("UpdateItem", e)),
            },
        }
    }

    /// [`Ledger::transition`] with `extra` added to its condition.
    async fn advance_if(
        &self,
        id: &MessageId,
        t: Transition,
        extra: Option<&str>,
    ) -> PortResult<(Applied, Option<MessageFacts>)> {
        let mut update = String::from(
            "SET #status = :status, #rank = :rank, history = list_append(if_not_exists(history, :empty), :h)",
        );
        let mut condition = String::from("attribute_exists(pk) AND #rank < :rank");
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(id.as_str())))
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#rank", "rank")
            .expression_attribute_values(":status", s(t.status.as_str()))
            .expression_attribute_values(":rank", n(t.status.rank()))
            .expression_attribute_values(":empty", AttributeValue::L(vec![]))
            .expression_attribute_values(":h", history_entry(&t))
            // The item comes back with the write at no extra cost: its template and
            // campaign label the transition's metric without a read. As it was before
            // this write: its `channel` is the one the message was sent on, not the event's.
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if let Some(extra) = extra {
            condition.push_str(" AND ");
            condition.push_str(extra);
            req = req
                .expression_attribute_values(":sentrank", n(Status::Sent.rank()))
                .expression_attribute_values(":now", n(t.at.timestamp()));
        }
        if let Some(r) = t.reason {
            update.push_str(", reason = :reason");
            req = req.expression_attribute_values(":reason", s(r.as_str()));
        }
        if let Some(c) = t.channel {
            update.push_str(", channel = :channel");
            req = req.expression_attribute_values(":channel", s(c.as_str()));
        }
        if let Some(p) = &t.provider_id {
            update.push_str(", provider_id = if_not_exists(provider_id, :pid)");
            req = req.expression_attribute_values(":pid", s(p));
        }
        // Only on a message sent on one of these channels, checked in this write (a custom provider's report).
        if let Some(channels) = &t.on_channels {
            if channels.is_empty() {
                return Ok((Applied::Stale, None));
            }
            let names: Vec<String> = (0..channels.len()).map(|i| format!(":on{i}")).collect();
            condition.push_str(&format!(" AND channel IN ({})", names.join(", ")));
            for (name, c) in names.into_iter().zip(channels) {
                req = req.expression_attribute_values(name, s(c.as_str()));
            }
        }
        match req.update_expression(update).condition_expression(condition).send().await {
            Ok(out) => Ok((Applied::Applied, out.attributes.as_ref().map(Self::facts))),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c)) => {
                    match c.item().filter(|i| i.contains_key("pk")) {
                        Some(item) => Ok((Applied::Stale, Some(Self::facts(item)))),
                        None => Ok((Applied::Unknown, None)),
                    }
                }
                _ => Err(classify("UpdateItem", e)),
            },
        }
    }

    fn facts(item: &Item) -> MessageFacts {
        MessageFacts {
            template: get_s(item, "template").unwrap_or_default().to_owned(),
            campaign: get_s(item, "campaign").map(str::to_owned),
            recipient: get_s(item, "recipient").map(str::to_owned),
            channel: get_s(item, "channel").map(str::to_owned),
        }
    }

    fn parse_entry(item: &Item) -> Option<LedgerEntry> {
        let history = item
            .get("history")
            .and_then(|v| v.as_l().ok())
            .map(|l| {
                l.iter()
                    .filter_map(|e| e.as_m().ok())
                    .map(|m| HistoryEntry {
                        status: get_s(m, "s").unwrap_or_default().to_owned(),
                        at: get_s(m, "at").unwrap_or_default().to_owned(),
                        reason: get_s(m, "r").map(str::to_owned),
                        channel: get_s(m, "c").map(str::to_owned),
                        detail: get_s(m, "d").map(str::to_owned),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(LedgerEntry {
            id: MessageId::parse(get_s(item, "pk")?)?,
            idempotency_key: get_s(item, "key").unwrap_or_default().to_owned(),
            recipient: get_s(item, "recipient").unwrap_or_default().to_owned(),
            template: get_s(item, "template").unwrap_or_default().to_owned(),
            kind: get_s(item, "kind").and_then(|k| serde_json::from_value(serde_json::Value::String(k.into())).ok()),
            campaign: get_s(item, "campaign").map(str::to_owned),
            status: get_s(item, "status").and_then(Status::parse)?,
            reason: get_s(item, "reason").map(str::to_owned),
            channel: get_s(item, "channel").map(str::to_owned),
            provider_id: get_s(item, "provider_id").map(str::to_owned),
            variant: get_s(item, "variant").map(str::to_owned),
            sms_segments: get_n(item, "sms_segments"),
            duplicates: get_n(item, "duplicates").unwrap_or(0),
            history,
            conversion: get_s(item, "conversion_at").map(|at| RecordedConversion {
                event: get_s(item, "conversion_event").unwrap_or_default().to_owned(),
                at: at.to_owned(),
                value: get_n(item, "conversion_value"),
            }),
            test: item.get("test").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false),
        })
    }
}

impl Ledger for DynamoLedger {
    async fn admit(&self, admit: Admit<'_>) -> PortResult<Admission> {
        self.put_admission(admit, Status::Accepted, Item::new()).await
    }

    async fn note_duplicate(&self, id: &MessageId, source_id: &str, at: DateTime<Utc>) -> PortResult<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(id.as_str())))
            .update_expression("ADD duplicates :one SET last_duplicate_at = :at, duplicate_source = :src")
            // Counted once per carrying SQS message: a retry of this write after it was
            // applied, or a redelivery of the same duplicate, fails here and counts nothing.
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(duplicate_source) OR duplicate_source <> :src)",
            )
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":src", s(source_id))
            .expression_attribute_values(":at", ts(at))
            .send()
            .await;
        conditional("UpdateItem", result).map(drop)
    }

    async fn reject(&self, r: RejectionRecord) -> PortResult<()> {
        let mut item: Item = HashMap::from([
            ("pk".to_owned(), s(format!("rejected#{}", r.source_id))),
            ("status".into(), s(Status::Rejected.as_str())),
            ("reason".into(), s(&r.code)),
            ("detail".into(), s(r.detail.chars().take(400).collect::<String>())),
            ("body_bytes".into(), n(r.body_bytes)),
            ("at".into(), ts(r.at)),
            ("ttl".into(), n(r.expires_at.timestamp())),
        ]);
        if let Some(k) = r.idempotency_key {
            item.insert("key".into(), s(k));
        }
        put(&self.client, &self.table, item).await
    }

    async fn claim_send(&self, claim: Claim<'_>) -> PortResult<Claimed> {
        let item = match self.try_claim(&claim, true).await? {
            Ok(()) => return Ok(Claimed::Claimed),
            Err(None) => return Ok(Claimed::Unknown),
            Err(Some(item)) => item,
        };
        if own_claim(&item, &claim) {
            return Ok(Claimed::Claimed);
        }
        // `all` mode, and another channel has taken the message past `sent` (its
        // receipt, or its failure): this channel still goes, and the message keeps
        // the status it has.
        if claim.per_channel && open_past_sent(&item, &claim) {
            return Ok(match self.try_claim(&claim, false).await? {
                Ok(()) => Claimed::Claimed,
                Err(Some(item)) if own_claim(&item, &claim) => Claimed::Claimed,
                Err(Some(item)) => held(&item, &claim).unwrap_or(Claimed::Done),
                Err(None) => Claimed::Unknown,
            });
        }
        Ok(held(&item, &claim).unwrap_or(Claimed::Done))
    }

    async fn release_send(&self, claim: &Claim<'_>, note: Option<Transition>) -> PortResult<()> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(claim.id.as_str())))
            .expression_attribute_values(":tok", s(claim.token));
        // Only the holder releases, and once: the token goes with the claim, so a retried
        // release (or a late one, after another attempt claimed) fails its condition.
        let (mut sets, removes, condition) = if claim.per_channel {
            let names = ChannelClaim::of(claim.channel);
            req = req.expression_attribute_names("#cu", names.until).expression_attribute_names("#ct", names.token);
            (Vec::new(), "REMOVE #cu, #ct", "#ct = :tok")
        } else {
            req = req.expression_attribute_values(":zero", n(0));
            (vec!["claim_until = :zero"], "REMOVE claim_token", "claim_token = :tok")
        };
        if let Some(t) = note {
            sets.push("history = list_append(if_not_exists(history, :empty), :h)");
            req = req
                .expression_attribute_values(":empty", AttributeValue::L(vec![]))
                .expression_attribute_values(":h", history_entry(&t));
        }
        let update = match sets.is_empty() {
            true => removes.to_owned(),
            false => format!("SET {} {removes}", sets.join(", ")),
        };
        let result = req.update_expression(update).condition_expression(condition).send().await;
        conditional("UpdateItem", result).map(drop)
    }

    async fn record_sent(
        &self,
        id: &MessageId,
        channel: Channel,
        provider_id: &str,
        sms_segments: Option<u32>,
    ) -> PortResult<()> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(id.as_str())))
            .expression_attribute_names("#cs", ChannelClaim::of(channel).sent)
            .expression_attribute_values(":pid", s(provider_id));
        // `all` mode sends on several channels: the first provider id is kept for the
        // message, and each channel's own ends that channel's claim.
        let mut update = String::from("SET provider_id = if_not_exists(provider_id, :pid), #cs = :pid");
        if let Some(segments) = sms_segments {
            update.push_str(", sms_segments = :seg");
            req = req.expression_attribute_values(":seg", n(segments));
        }
        req.update_expression(update).send().await.map(|_| ()).map_err(|e| classify("UpdateItem", e))
    }

    async fn record_delivery(&self, d: StoredDelivery<'_>) -> PortResult<Recorded> {
        // `first` mode: exactly when a claim would pass (nothing sent, or a send let go or run
        // out without a provider id). `all` mode: while this channel has no delivery, and, for
        // the status to move, while the message is below `delivered` (else see below).
        let unsent = "attribute_exists(pk) AND (#rank < :sent OR (#rank = :sent AND claim_until < :now \
                      AND attribute_not_exists(provider_id)))";
        let condition = if d.per_channel {
            "attribute_exists(pk) AND attribute_not_exists(#cs) AND #rank < :delivered"
        } else {
            unsent
        };
        let old = match self.try_record_delivery(&d, condition, true).await? {
            Ok(()) => return Ok(Recorded::Delivered { reference: d.reference.to_owned(), first: true }),
            Err(old) => old,
        };
        let sent = ChannelClaim::of(d.channel).sent;
        // ALL_OLD saves a read; an endpoint that does not return it costs one GetItem.
        let old = match old {
            Some(item) => Some(item),
            None => self.get_item(d.id.as_str()).await?,
        };
        let Some(old) = old else { return Ok(Recorded::Unknown) };
        if let Some(earlier) = get_s(&old, &sent) {
            return Ok(Recorded::Delivered { reference: earlier.to_owned(), first: false });
        }
        // `all` mode, another channel already past `delivered` (opened, or failed): this
        // channel's delivery is recorded beside it, the status left as it is.
        let open = get_n::<u8>(&old, "rank").is_some_and(|r| r < Status::Rejected.rank());
        if !(d.per_channel && open) {
            return Ok(Recorded::Elsewhere);
        }
        let beside = "attribute_exists(pk) AND attribute_not_exists(#cs) AND #rank < :closed";
        match self.try_record_delivery(&d, beside, false).await? {
            Ok(()) => Ok(Recorded::Delivered { reference: d.reference.to_owned(), first: true }),
            Err(Some(old)) => Ok(match get_s(&old, &sent) {
                Some(earlier) => Recorded::Delivered { reference: earlier.to_owned(), first: false },
                None => Recorded::Elsewhere,
            }),
            Err(None) => Ok(Recorded::Unknown),
        }
    }

    async fn remember_fallback(&self, provider_id: &str, job: &EligibilityJob, until: DateTime<Utc>) -> PortResult<()> {
        let body = serde_json::to_string(job).map_err(|e| PortError::Unknown(e.into()))?;
        let item = HashMap::from([
            ("pk".to_owned(), s(format!("fallback#{provider_id}"))),
            ("message_id".into(), s(job.message_id.as_str())),
            ("job".into(), s(body)),
            ("ttl".into(), n(until.timestamp())),
        ]);
        put(&self.client, &self.table, item).await
    }

    async fn take_fallback(&self, provider_id: &str, note: Transition) -> PortResult<Option<EligibilityJob>> {
        let now = note.at.timestamp();
        // TTL deletes lazily: a kept job past its time is not taken.
        let Some(kept) = self
            .get_item(&format!("fallback#{provider_id}"))
            .await?
            .filter(|kept| get_n::<i64>(kept, "ttl").is_some_and(|until| until >= now))
        else {
            return Ok(None);
        };
        let Some(job) = get_s(&kept, "job").and_then(|j| serde_json::from_str::<EligibilityJob>(j).ok()) else {
            tracing::error!(provider_id, "kept fallback job does not parse: no fallback");
            return Ok(None);
        };
        // As a failed send before a fallback (release_send): the claim is let go and the
        // provider id removed, so the next channel's claim passes; the status stays `sent`.
        let released = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(job.message_id.as_str())))
            .condition_expression("provider_id = :pid AND #rank = :rank")
            .update_expression(
                "SET claim_until = :zero, fell_back_from = :pid, \
                 history = list_append(if_not_exists(history, :empty), :h) REMOVE provider_id, claim_token",
            )
            .expression_attribute_names("#rank", "rank")
            .expression_attribute_values(":pid", s(provider_id))
            .expression_attribute_values(":rank", n(Status::Sent.rank()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":empty", AttributeValue::L(vec![]))
            .expression_attribute_values(":h", history_entry(&note))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let old = match released {
            Ok(_) => return Ok(Some(job)),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c)) => {
                    c.item().cloned()
                }
                _ => return Err(classify("UpdateItem", e)),
            },
        };
        let old = match old {
            Some(item) => item,
            None => match self.get_item(job.message_id.as_str()).await? {
                Some(item) => item,
                None => return Ok(None),
            },
        };
        let on_push = get_s(&old, "status") == Some(Status::Sent.as_str())
            && get_s(&old, "channel") == Some(Channel::Push.as_str());
        // Released by this failure before, and no other channel has claimed it since:
        // the hand-off may have failed, so the job goes again.
        if get_s(&old, "fell_back_from") == Some(provider_id) && on_push {
            return Ok(Some(job));
        }
        // The failure came before dispatch recorded the send (its claim still holds): look
        // again later. A claim run out without a provider id is a send that was never recorded.
        if !old.contains_key("provider_id")
            && on_push
            && !old.contains_key("fell_back_from")
            && get_n::<i64>(&old, "claim_until").is_some_and(|until| until >= now)
        {
            return Err(PortError::Transient(format!("{}: the push is not recorded as sent yet", job.message_id)));
        }
        Ok(None)
    }

    async fn record_conversion(&self, c: Conversion<'_>) -> PortResult<Converted> {
        // Instants as the history writes them (fixed width, UTC): they compare as text.
        let at = ts(c.at);
        let from = c.at.checked_sub_signed(c.window).unwrap_or(DateTime::<Utc>::MIN_UTC);
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(c.id.as_str())))
            // The history's first entry is the admission.
            .condition_expression(
                "attribute_exists(pk) AND campaign = :c AND history[0].#at <= :at AND history[0].#at >= :from \
                 AND (attribute_not_exists(conversion_at) OR conversion_at > :at)",
            )
            .expression_attribute_names("#at", "at")
            .expression_attribute_values(":c", s(c.campaign.as_str()))
            .expression_attribute_values(":at", at.clone())
            .expression_attribute_values(":from", ts(from))
            .expression_attribute_values(":e", s(c.event.as_str()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let update = match c.value {
            Some(v) => {
                req = req.expression_attribute_values(":v", AttributeValue::N(decimal(v)));
                "SET conversion_event = :e, conversion_at = :at, conversion_value = :v"
            }
            // An earlier conversion without a value replaces a later one with a value whole.
            None => "SET conversion_event = :e, conversion_at = :at REMOVE conversion_value",
        };
        let old = match req.update_expression(update).send().await {
            Ok(_) => return Ok(Converted::Recorded),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(f)) => {
                    f.item().cloned()
                }
                _ => return Err(classify("UpdateItem", e)),
            },
        };
        let Some(old) = old.filter(|i| i.contains_key("pk") && get_s(i, "campaign") == Some(c.campaign.as_str()))
        else {
            return Ok(Converted::NoMessage);
        };
        let at = at.as_s().map(String::as_str).unwrap_or_default();
        Ok(match get_s(&old, "conversion_at") {
            Some(recorded) if recorded <= at => Converted::AlreadyConverted,
            _ => Converted::OutsideWindow,
        })
    }

    async fn transition(&self, id: &MessageId, t: Transition) -> PortResult<Applied> {
        self.advance(id, t).await.map(|(applied, _)| applied)
    }

    async fn advance(&self, id: &MessageId, t: Transition) -> PortResult<(Applied, Option<MessageFacts>)> {
        self.advance_if(id, t, None).await
    }

    async fn settle(&self, id: &MessageId, t: Transition) -> PortResult<Applied> {
        // Exactly when a `first`-mode dispatch could claim the message: nothing sent, or a
        // send let go (a failure before a fallback) or run out without a provider id.
        let unsent = "(#rank < :sentrank OR (#rank = :sentrank AND claim_until < :now \
                      AND attribute_not_exists(provider_id)))";
        self.advance_if(id, t, Some(unsent)).await.map(|(applied, _)| applied)
    }

    async fn note(&self, id: &MessageId, t: Transition) -> PortResult<()> {
        let mut update = String::from("SET history = list_append(if_not_exists(history, :empty), :h)");
        let mut req = self.client.update_item();
        if let Some(p) = &t.provider_id {
            update.push_str(", provider_id = if_not_exists(provider_id, :pid)");
            req = req.expression_attribute_values(":pid", s(p));
        }
        let result = req
            .table_name(&self.table)
            .set_key(Some(key(id.as_str())))
            .update_expression(update)
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":empty", AttributeValue::L(vec![]))
            .expression_attribute_values(":h", history_entry(&t))
            .send()
            .await;
        conditional("UpdateItem", result).map(drop)
    }

    async fn get(&self, id: &MessageId) -> PortResult<Option<LedgerEntry>> {
        Ok(self.get_item(id.as_str()).await?.as_ref().and_then(Self::parse_entry))
    }
}

impl DynamoLedger {
    /// [`Ledger::admit`] with the status `status` and the attributes `extra` in the same
    /// conditional write (a digest item's data and head).
    pub(super) async fn put_admission(&self, admit: Admit<'_>, status: Status, extra: Item) -> PortResult<Admission> {
        let r = admit.request;
        let accepted = Transition::new(status, admit.now);
        let mut item: Item = HashMap::from([
            ("pk".to_owned(), s(admit.id.as_str())),
            ("key".into(), s(r.idempotency_key.as_str())),
            ("recipient".into(), s(r.recipient.as_str())),
            ("template".into(), s(r.template.as_str())),
            ("kind".into(), s(r.kind.as_str())),
            ("status".into(), s(status.as_str())),
            ("rank".into(), n(status.rank())),
            ("source_id".into(), s(admit.source_id)),
            ("history".into(), history_entry(&accepted)),
            ("dedupe_until".into(), n(admit.dedupe_until.timestamp())),
            ("ttl".into(), n(admit.expires_at.timestamp())),
        ]);
        if let Some(c) = &r.campaign {
            item.insert("campaign".into(), s(c.as_str()));
        }
        if let Some(t) = &r.topic {
            item.insert("topic".into(), s(t.as_str()));
        }
        // A test send says so on the one item it writes anyway (no extra write).
        if r.test {
            item.insert("test".into(), AttributeValue::Bool(true));
        }
        item.extend(extra);
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR dedupe_until < :now")
            .expression_attribute_values(":now", n(admit.now.timestamp()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let err = match put {
            Ok(_) => return Ok(Admission::New),
            Err(err) => err,
        };
        let old = match err.as_service_error() {
            Some(e) if is_conditional_failure(e) => match e {
                aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => {
                    c.item().cloned()
                }
                _ => None,
            },
            _ => return Err(classify("PutItem", err)),
        };
        // ALL_OLD saves a read; an endpoint that does not return it costs one GetItem.
        let old = match old {
            Some(item) => Some(item),
            None => self.get_item(admit.id.as_str()).await?,
        };
        let status = old.as_ref().and_then(|i| get_s(i, "status")).and_then(Status::parse).unwrap_or(Status::Accepted);
        let same_source = old.as_ref().and_then(|i| get_s(i, "source_id")) == Some(admit.source_id);
        // The history's first entry is the admission.
        let accepted_at = old
            .as_ref()
            .and_then(|i| i.get("history")?.as_l().ok()?.first()?.as_m().ok().and_then(|m| get_s(m, "at")))
            .and_then(|at| at.parse().ok());
        Ok(Admission::Duplicate { status, same_source, accepted_at })
    }
}

impl DynamoLedger {
    pub(super) async fn get_item(&self, pk: &str) -> PortResult<Option<Item>> {
        self.client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk)))
            .consistent_read(true)
            .send()
            .await
            .map(|o| o.item)
            .map_err(|e| classify("GetItem", e))
    }

    /// A rejection record, by the SQS message id of the refused body.
    pub async fn rejection(&self, source_id: &str) -> PortResult<Option<(String, String)>> {
        let item = self.get_item(&format!("rejected#{source_id}")).await?;
        Ok(item.map(|i| {
            (get_s(&i, "reason").unwrap_or_default().to_owned(), get_s(&i, "detail").unwrap_or_default().to_owned())
        }))
    }

    /// Every message of a campaign, for the operator's funnel (`herald funnel`). A Scan
    /// with a filter reads the whole table: acceptable for an occasional operator
    /// command on a ledger that TTL keeps to its retention window. A GSI on campaign
    /// would be cheaper to read but would cost a write on every status change of
    /// every campaign message, which the per-notification write budget forbids.
    pub async fn campaign_entries(&self, campaign: &str) -> PortResult<Vec<LedgerEntry>> {
        let values = HashMap::from([(":c".to_owned(), s(campaign))]);
        let items = scan_all(&self.client, &self.table, "campaign = :c", values, None).await?;
        Ok(items.iter().filter_map(Self::parse_entry).collect())
    }
}
