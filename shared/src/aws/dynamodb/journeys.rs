//! Journeys: each person's place in each journey (the journeys table, `pk` = journey,
//! `sk` = recipient), and the journey definitions kept beside the templates
//! (`journey#<name>#v<version>`, immutable, and `journey#<name>`, the latest).
//!
//! A person's item stays under one write unit (ids, a step, instants, and at most
//! 512 bytes of entry data), and each change is one conditional write.

use super::*;
use crate::domain::journey::{Journey, JourneyDoc, JourneyName, Move, RunState, RunStatus, StepId};
use serde_json::{Map, Value};

/// The journeys table.
#[derive(Debug, Clone)]
pub struct DynamoJourneys {
    client: Client,
    table: String,
}

fn run_key(journey: &JourneyName, recipient: &RecipientId) -> Item {
    HashMap::from([("pk".to_owned(), s(journey.as_str())), ("sk".to_owned(), s(recipient.as_str()))])
}

fn instant(item: &Item, name: &str) -> Option<DateTime<Utc>> {
    get_s(item, name).and_then(|v| DateTime::parse_from_rfc3339(v).ok()).map(|t| t.with_timezone(&Utc))
}

fn parse_run(item: &Item) -> PortResult<RunState> {
    let bad = |what: &str| PortError::Permanent {
        code: "InvalidJourneyState".into(),
        message: format!("a journey state's {what} is missing or unreadable"),
    };
    Ok(RunState {
        journey: get_s(item, "pk").and_then(|v| JourneyName::new(v).ok()).ok_or_else(|| bad("journey"))?,
        recipient: get_s(item, "sk").and_then(|v| RecipientId::new(v).ok()).ok_or_else(|| bad("recipient"))?,
        version: get_n(item, "version").ok_or_else(|| bad("version"))?,
        run: get_n(item, "run").ok_or_else(|| bad("run"))?,
        seq: get_n(item, "seq").ok_or_else(|| bad("seq"))?,
        step: get_s(item, "step").and_then(|v| StepId::new(v).ok()),
        status: get_s(item, "status").and_then(RunStatus::parse).ok_or_else(|| bad("status"))?,
        exit_reason: get_s(item, "exit_reason").map(str::to_owned),
        due: instant(item, "due"),
        entered_at: instant(item, "entered_at").ok_or_else(|| bad("entered_at"))?,
        ended_at: instant(item, "ended_at"),
        advanced_by: get_s(item, "advanced_by").map(str::to_owned),
        entry_key: get_s(item, "entry_key").unwrap_or_default().to_owned(),
        data: get_s(item, "data").and_then(|v| serde_json::from_str::<Map<String, Value>>(v).ok()).unwrap_or_default(),
    })
}

impl DynamoJourneys {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

impl Journeys for DynamoJourneys {
    async fn get(&self, journey: &JourneyName, recipient: &RecipientId) -> PortResult<Option<RunState>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(run_key(journey, recipient)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        out.item.as_ref().map(parse_run).transpose()
    }

    async fn enter(&self, state: &RunState, previous_run: Option<u32>) -> PortResult<bool> {
        let mut item = run_key(&state.journey, &state.recipient);
        item.insert("version".into(), n(state.version));
        item.insert("run".into(), n(state.run));
        item.insert("seq".into(), n(state.seq));
        item.insert("status".into(), s(state.status.as_str()));
        item.insert("entered_at".into(), ts(state.entered_at));
        item.insert("entry_key".into(), s(&state.entry_key));
        if let Some(step) = &state.step {
            item.insert("step".into(), s(step.as_str()));
        }
        if let Some(due) = state.due {
            item.insert("due".into(), ts(due));
        }
        if !state.data.is_empty() {
            let data = serde_json::to_string(&state.data).map_err(|e| PortError::Unknown(e.into()))?;
            item.insert("data".into(), s(data));
        }
        let request = self.client.put_item().table_name(&self.table).set_item(Some(item));
        let request = match previous_run {
            None => request.condition_expression("attribute_not_exists(pk)"),
            Some(run) => request
                .condition_expression("#run = :prev")
                .expression_attribute_names("#run", "run")
                .expression_attribute_values(":prev", n(run)),
        };
        Ok(conditional("PutItem", request.send().await)?.is_some())
    }

    async fn advance(
        &self,
        state: &RunState,
        to: &Move,
        by: &str,
        now: DateTime<Utc>,
        keep_until: Option<DateTime<Utc>>,
    ) -> PortResult<Advanced> {
        let next_seq = state.seq.saturating_add(1);
        let mut values: Item = HashMap::from([
            (":run".to_owned(), n(state.run)),
            (":seq".to_owned(), n(state.seq)),
            (":next".to_owned(), n(next_seq)),
            (":active".to_owned(), s(RunStatus::Active.as_str())),
            (":status".to_owned(), s(to.status().as_str())),
            (":by".to_owned(), s(by)),
            (":now".to_owned(), ts(now)),
        ]);
        let mut names: HashMap<String, String> =
            HashMap::from([("#run".to_owned(), "run".to_owned()), ("#status".to_owned(), "status".to_owned())]);
        let mut set = vec!["seq = :next", "#status = :status", "advanced_by = :by", "moved_at = :now"];
        let mut remove: Vec<&str> = Vec::new();
        match (&to.to, to.due) {
            (Some(step), due) => {
                set.push("step = :step");
                values.insert(":step".into(), s(step.as_str()));
                match due {
                    Some(due) => {
                        set.push("due = :due");
                        values.insert(":due".into(), ts(due));
                    }
                    None => remove.push("due"),
                }
            }
            (None, _) => {
                remove.extend(["step", "due"]);
                set.push("ended_at = :now");
                if let Some(reason) = &to.exit_reason {
                    set.push("exit_reason = :reason");
                    values.insert(":reason".into(), s(reason));
                }
                if let Some(until) = keep_until {
                    set.push("#ttl = :ttl");
                    names.insert("#ttl".into(), "ttl".into());
                    values.insert(":ttl".into(), n(until.timestamp()));
                }
            }
        }
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(run_key(&state.journey, &state.recipient)))
            .update_expression(expression)
            .condition_expression("#run = :run AND seq = :seq AND #status = :active")
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Advanced::Applied),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c)) => {
                    // This same move, applied by an attempt whose answer was lost (the SDK retried).
                    let old = c.item();
                    let own = old.is_some_and(|o| {
                        get_n::<u32>(o, "run") == Some(state.run)
                            && get_n::<u32>(o, "seq") == Some(next_seq)
                            && get_s(o, "advanced_by") == Some(by)
                    });
                    Ok(if own { Advanced::Applied } else { Advanced::Lost })
                }
                _ => Err(classify("UpdateItem", e)),
            },
        }
    }

    async fn exit(
        &self,
        journey: &JourneyName,
        recipient: &RecipientId,
        versions: &[u32],
        reason: &str,
        now: DateTime<Utc>,
        keep_until: Option<DateTime<Utc>>,
    ) -> PortResult<bool> {
        if versions.is_empty() {
            return Ok(false);
        }
        let mut values: Item = HashMap::from([
            (":active".to_owned(), s(RunStatus::Active.as_str())),
            (":exited".to_owned(), s(RunStatus::Exited.as_str())),
            (":reason".to_owned(), s(reason)),
            (":now".to_owned(), ts(now)),
            (":one".to_owned(), n(1)),
        ]);
        // At most 100 values in an IN list; more versions than that of one journey is not a thing.
        let listed: Vec<String> = versions.iter().take(100).enumerate().map(|(i, _)| format!(":v{i}")).collect();
        for (i, v) in versions.iter().take(100).enumerate() {
            values.insert(format!(":v{i}"), n(*v));
        }
        let mut names = HashMap::from([("#status".to_owned(), "status".to_owned())]);
        // `advanced_by` names the exit, so no job's redelivery takes this move for its own.
        values.insert(":by".to_owned(), s(format!("exit:{reason}")));
        let mut set =
            "#status = :exited, exit_reason = :reason, ended_at = :now, seq = seq + :one, advanced_by = :by".to_owned();
        if let Some(until) = keep_until {
            set.push_str(", #ttl = :ttl");
            names.insert("#ttl".into(), "ttl".into());
            values.insert(":ttl".into(), n(until.timestamp()));
        }
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(run_key(journey, recipient)))
            .update_expression(format!("SET {set} REMOVE step, due"))
            .condition_expression(format!("#status = :active AND version IN ({})", listed.join(", ")))
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values));
        Ok(conditional("UpdateItem", request.send().await)?.is_some())
    }

    async fn list(&self, journey: &JourneyName) -> PortResult<Vec<RunState>> {
        let mut states = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(journey.as_str()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| classify("Query", e))?;
            for item in page.items() {
                match parse_run(item) {
                    Ok(state) => states.push(state),
                    Err(e) => tracing::warn!(journey = %journey, error = %e, "journey state does not read: left out"),
                }
            }
            match page.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(k) => start = Some(k),
                None => return Ok(states),
            }
        }
    }

    async fn erase(&self, journey: &JourneyName, recipient: &RecipientId) -> PortResult<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(run_key(journey, recipient)))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("DeleteItem", e))
    }
}

// ---------------------------------------------------------------- definitions

fn versioned_pk(name: &JourneyName, version: u32) -> String {
    format!("journey#{name}#v{version}")
}

fn latest_pk(name: &JourneyName) -> String {
    format!("journey#{name}")
}

/// A stored definition, built again (its structure was checked at push; a document that
/// no longer builds is refused as invalid rather than half-followed).
fn read_journey(raw: &str, what: &str) -> PortResult<Journey> {
    let invalid = |message: String| PortError::Permanent { code: "InvalidJourney".into(), message };
    let doc: JourneyDoc =
        serde_json::from_str(raw).map_err(|e| invalid(format!("{what} is not a valid document: {e}")))?;
    Journey::build(doc).map_err(|problems| invalid(problems.join("; ")))
}

impl DynamoTemplates {
    /// Stores a journey, versioned: `journey#<name>#v<version>` is written once and never
    /// changed (a changed document under a stored version is refused, `VersionConflict`:
    /// people on that version keep meaning one journey); `journey#<name>` points at the
    /// latest version (a push of an older one leaves it).
    pub async fn put_journey(&self, doc: &JourneyDoc, now: DateTime<Utc>) -> PortResult<Pushed> {
        let body = serde_json::to_string(doc).map_err(|e| PortError::Unknown(e.into()))?;
        let item = |pk: String| -> Item {
            HashMap::from([
                ("pk".to_owned(), s(pk)),
                ("version".to_owned(), n(doc.version)),
                ("doc".to_owned(), s(&body)),
                ("updated_at".to_owned(), ts(now)),
            ])
        };
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item(versioned_pk(&doc.name, doc.version))))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let pushed = match result {
            Ok(_) => Pushed::Written,
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c)) => {
                    if c.item().and_then(|i| get_s(i, "doc")) != Some(body.as_str()) {
                        return Err(PortError::Permanent {
                            code: "VersionConflict".into(),
                            message: format!(
                                "journey {} v{} is stored with other content: raise its version to push a change",
                                doc.name, doc.version
                            ),
                        });
                    }
                    Pushed::Unchanged
                }
                _ => return Err(classify("PutItem", e)),
            },
        };
        // The pointer, unless a newer version is the latest already.
        let pointer = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item(latest_pk(&doc.name))))
            .condition_expression("attribute_not_exists(pk) OR #v <= :v")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":v", n(doc.version))
            .send()
            .await;
        conditional("PutItem", pointer)?;
        Ok(pushed)
    }

    pub(super) async fn load_journey(
        &self,
        name: &JourneyName,
        version: Option<u32>,
    ) -> PortResult<Option<Arc<Journey>>> {
        let pk = match version {
            Some(v) => versioned_pk(name, v),
            None => latest_pk(name),
        };
        let Some(raw) = self.load_doc(&pk).await? else { return Ok(None) };
        Ok(Some(Arc::new(read_journey(&raw, &format!("journey {name}"))?)))
    }

    /// Every versioned journey item: a Scan of the templates table (a few dozen small
    /// items), once per cache lifetime. One that does not read is logged and left out.
    pub(super) async fn list_journeys(&self) -> PortResult<Arc<Vec<Arc<Journey>>>> {
        let values = HashMap::from([(":p".to_owned(), s("journey#"))]);
        let items = scan_all(&self.client, &self.table, "begins_with(pk, :p)", values, Some("pk, doc")).await?;
        let mut journeys = Vec::new();
        for item in &items {
            let pk = get_s(item, "pk").unwrap_or_default();
            // Only the versioned items: the pointer repeats the latest.
            if pk.matches('#').count() != 2 {
                continue;
            }
            match get_s(item, "doc").map(|raw| read_journey(raw, pk)) {
                Some(Ok(j)) => journeys.push(Arc::new(j)),
                _ => tracing::warn!(item = pk, "journey document does not read: left out"),
            }
        }
        journeys.sort_by(|a, b| (a.name(), a.version()).cmp(&(b.name(), b.version())));
        Ok(Arc::new(journeys))
    }
}

impl JourneyStore for DynamoTemplates {
    /// A version is cached (it never changes); the latest is read each time (one
    /// eventually consistent read per entry), so a pushed version is entered at once.
    async fn journey(&self, name: &JourneyName, version: Option<u32>) -> PortResult<Option<Arc<Journey>>> {
        match version {
            None => self.load_journey(name, None).await,
            Some(_) => {
                let key = (name.clone(), version);
                self.journeys.get_or_load(&key, || self.load_journey(name, version)).await
            }
        }
    }

    async fn journeys(&self) -> PortResult<Arc<Vec<Arc<Journey>>>> {
        self.journey_catalog.get_or_load(&(), || self.list_journeys()).await
    }
}
