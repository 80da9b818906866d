//! Broadcasts: one item per campaign's broadcast in the ledger table
//! (`pk` = `broadcast#<campaign>`), holding the request and audience as they were when
//! it started, its state, the pace counter, each scan segment's cursor and the counts.
//!
//! Every step is one request: `take_positions` one `ADD`, `commit_page` one conditional
//! update (the page's counts and its chain's next cursor, applied once), `control` one
//! conditional update (plus a read when it is refused, to say why).

use super::*;
use crate::contract::{BroadcastRequest, ControlAction};
use crate::domain::broadcast::{Broadcast, BroadcastState, Counts, PageJob, SegmentProgress};
use crate::domain::segment::Audience;

/// How long ingest trusts a broadcast's state it has read: a pause reaches every ingest
/// container within this.
pub const STATE_CACHE: Duration = Duration::from_secs(3);

fn pk(campaign: &CampaignId) -> String {
    format!("broadcast#{campaign}")
}

fn json<T: serde::Serialize>(v: &T) -> PortResult<AttributeValue> {
    serde_json::to_string(v).map(s).map_err(|e| PortError::Unknown(e.into()))
}

fn instant(item: &Item, name: &str) -> Option<DateTime<Utc>> {
    get_s(item, name).and_then(|v| DateTime::parse_from_rfc3339(v).ok()).map(|t| t.with_timezone(&Utc))
}

fn parse(item: &Item) -> PortResult<Broadcast> {
    let bad = |what: &str| PortError::Permanent {
        code: "InvalidBroadcast".into(),
        message: format!("the broadcast item's {what} is missing or unreadable"),
    };
    let request: BroadcastRequest =
        get_s(item, "request").and_then(|v| serde_json::from_str(v).ok()).ok_or_else(|| bad("request"))?;
    let audience: Audience =
        get_s(item, "audience").and_then(|v| serde_json::from_str(v).ok()).ok_or_else(|| bad("audience"))?;
    let segments: u32 = get_n(item, "segments").ok_or_else(|| bad("segments"))?;
    let progress = (0..segments)
        .map(|i| SegmentProgress {
            page: get_n(item, &format!("page_{i}")).unwrap_or(0),
            start: get_s(item, &format!("start_{i}")).map(str::to_owned),
            done: item.get(&format!("done_{i}")).and_then(|v| v.as_bool().ok()).copied().unwrap_or(false),
        })
        .collect();
    let missed = item
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("miss_")?.to_owned(), v.as_n().ok()?.parse().ok()?)))
        .collect();
    Ok(Broadcast {
        template: get_s(item, "template").and_then(|v| TemplateName::new(v).ok()).ok_or_else(|| bad("template"))?,
        request,
        audience,
        state: get_s(item, "state").and_then(BroadcastState::parse).ok_or_else(|| bad("state"))?,
        state_at: instant(item, "state_at").ok_or_else(|| bad("state_at"))?,
        created_at: instant(item, "created_at").ok_or_else(|| bad("created_at"))?,
        epoch: get_n(item, "epoch").unwrap_or(0),
        pace_origin: instant(item, "pace_origin").ok_or_else(|| bad("pace_origin"))?,
        released: get_n(item, "released").unwrap_or(0),
        segments: progress,
        counts: Counts {
            scanned: get_n(item, "scanned").unwrap_or(0),
            matched: get_n(item, "matched").unwrap_or(0),
            queued: get_n(item, "queued").unwrap_or(0),
            missed,
        },
    })
}

impl DynamoLedger {
    async fn read_broadcast(&self, campaign: &CampaignId) -> PortResult<Option<Broadcast>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(&pk(campaign))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        out.item.as_ref().map(parse).transpose()
    }
}

impl Broadcasts for DynamoLedger {
    async fn create(&self, b: &Broadcast, keep_until: DateTime<Utc>) -> PortResult<Created> {
        let mut item: Item = HashMap::from([
            ("pk".to_owned(), s(pk(&b.request.campaign))),
            ("request".to_owned(), json(&b.request)?),
            ("template".to_owned(), s(b.template.as_str())),
            ("audience".to_owned(), json(&b.audience)?),
            ("state".to_owned(), s(b.state.as_str())),
            ("state_at".to_owned(), ts(b.state_at)),
            ("created_at".to_owned(), ts(b.created_at)),
            ("epoch".to_owned(), n(b.epoch)),
            ("pace_origin".to_owned(), ts(b.pace_origin)),
            ("released".to_owned(), n(b.released)),
            ("segments".to_owned(), n(b.segments.len())),
            ("ttl".to_owned(), n(keep_until.timestamp())),
        ]);
        for i in 0..b.segments.len() {
            item.insert(format!("page_{i}"), n(0));
        }
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        if conditional("PutItem", result)?.is_some() {
            return Ok(Created::New);
        }
        match self.read_broadcast(&b.request.campaign).await? {
            Some(existing) => Ok(Created::Exists(Box::new(existing))),
            // Gone again (its TTL passed between the two requests): the caller retries.
            None => Err(PortError::Transient("the broadcast item vanished while being read".into())),
        }
    }

    async fn broadcast(&self, campaign: &CampaignId) -> PortResult<Option<Broadcast>> {
        self.read_broadcast(campaign).await
    }

    async fn state(&self, campaign: &CampaignId) -> PortResult<Option<BroadcastState>> {
        self.broadcast_states
            .get_or_load(campaign, || async {
                let out = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .set_key(Some(key(&pk(campaign))))
                    .projection_expression("#s")
                    .expression_attribute_names("#s", "state")
                    .send()
                    .await
                    .map_err(|e| classify("GetItem", e))?;
                Ok(out.item.as_ref().and_then(|i| get_s(i, "state")).and_then(BroadcastState::parse))
            })
            .await
    }

    async fn take_positions(&self, campaign: &CampaignId, count: u64) -> PortResult<u64> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&pk(campaign))))
            .update_expression("ADD released :k")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":k", n(count))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| classify("UpdateItem", e))?;
        out.attributes
            .as_ref()
            .and_then(|a| get_n(a, "released"))
            .ok_or_else(|| PortError::Unknown(anyhow::anyhow!("UpdateItem returned no pace counter")))
    }

    async fn commit_page(&self, job: &PageJob, next: Option<&str>, counts: &Counts) -> PortResult<Option<Broadcast>> {
        let i = job.segment;
        let mut sets = vec![format!("page_{i} = :next_page")];
        let mut adds = vec!["scanned :scanned".to_owned(), "matched :matched".to_owned(), "queued :queued".to_owned()];
        let mut removes = Vec::new();
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&pk(&job.campaign))))
            .condition_expression(format!("epoch = :epoch AND page_{i} = :page AND attribute_not_exists(done_{i})"))
            .expression_attribute_values(":epoch", n(job.epoch))
            .expression_attribute_values(":page", n(job.page))
            .expression_attribute_values(":next_page", n(job.page + 1))
            .expression_attribute_values(":scanned", n(counts.scanned))
            .expression_attribute_values(":matched", n(counts.matched))
            .expression_attribute_values(":queued", n(counts.queued));
        match next {
            Some(start) => {
                sets.push(format!("start_{i} = :start"));
                req = req.expression_attribute_values(":start", s(start));
            }
            None => {
                sets.push(format!("done_{i} = :done"));
                removes.push(format!("start_{i}"));
                req = req.expression_attribute_values(":done", AttributeValue::Bool(true));
            }
        }
        for (n_, (reason, count)) in counts.missed.iter().enumerate() {
            adds.push(format!("#miss{n_} :miss{n_}"));
            req = req
                .expression_attribute_names(format!("#miss{n_}"), format!("miss_{reason}"))
                .expression_attribute_values(format!(":miss{n_}"), n(count));
        }
        let mut expression = format!("SET {} ADD {}", sets.join(", "), adds.join(", "));
        if !removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        let result =
            req.update_expression(expression).return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew).send().await;
        match conditional("UpdateItem", result)? {
            Some(out) => out.attributes.as_ref().map(parse).transpose(),
            None => Ok(None),
        }
    }

    async fn finish(&self, campaign: &CampaignId) -> PortResult<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&pk(campaign))))
            .update_expression("SET #s = :done")
            .condition_expression("#s = :running")
            .expression_attribute_names("#s", "state")
            .expression_attribute_values(":done", s(BroadcastState::Done.as_str()))
            .expression_attribute_values(":running", s(BroadcastState::Running.as_str()))
            .send()
            .await;
        conditional("UpdateItem", result).map(drop)
    }

    async fn control(
        &self,
        campaign: &CampaignId,
        action: ControlAction,
        at: DateTime<Utc>,
        pace_origin: DateTime<Utc>,
    ) -> PortResult<ControlOutcome> {
        let (to, from): (BroadcastState, &[BroadcastState]) = match action {
            ControlAction::Pause => (BroadcastState::Paused, &[BroadcastState::Running]),
            ControlAction::Resume => (BroadcastState::Running, &[BroadcastState::Paused]),
            ControlAction::Cancel => (BroadcastState::Cancelled, &[BroadcastState::Running, BroadcastState::Paused]),
        };
        let allowed: Vec<String> = (0..from.len()).map(|i| format!(":from{i}")).collect();
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&pk(campaign))))
            .condition_expression(format!("#s IN ({}) AND state_at <= :at", allowed.join(", ")))
            .expression_attribute_names("#s", "state")
            .expression_attribute_values(":to", s(to.as_str()))
            .expression_attribute_values(":at", ts(at));
        for (name, state) in allowed.iter().zip(from) {
            req = req.expression_attribute_values(name, s(state.as_str()));
        }
        let expression = match action {
            ControlAction::Resume => {
                req = req
                    .expression_attribute_values(":origin", ts(pace_origin))
                    .expression_attribute_values(":one", n(1));
                "SET #s = :to, state_at = :at, pace_origin = :origin ADD epoch :one"
            }
            _ => "SET #s = :to, state_at = :at",
        };
        let result =
            req.update_expression(expression).return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew).send().await;
        if let Some(out) = conditional("UpdateItem", result)?
            && let Some(b) = out.attributes.as_ref().map(parse).transpose()?
        {
            return Ok(ControlOutcome::Applied(Box::new(b)));
        }
        Ok(match self.read_broadcast(campaign).await? {
            Some(b) => ControlOutcome::NotApplied(Box::new(b)),
            None => ControlOutcome::Unknown,
        })
    }
}
