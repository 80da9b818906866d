//! The schedule of sends due later than an SQS delay allows.

use super::*;

/// The schedule: one item per waiting job, `pk` = `due#<minute, UTC>`, `sk` = message id,
/// so a run reads each minute it has not read yet with one Query.
#[derive(Debug, Clone)]
pub struct DynamoSchedule {
    client: Client,
    table: String,
}

const CURSOR: &str = "cursor";

impl DynamoSchedule {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    fn bucket(at: DateTime<Utc>) -> String {
        format!("due#{}", at.format("%Y-%m-%dT%H:%M"))
    }

    fn item_key(pk: &str, sk: &str) -> Item {
        HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
    }
}

/// How the schedule names a destination; an item without one (written before jobs went
/// anywhere else) goes to eligibility.
fn destination_name(to: Destination) -> Option<&'static str> {
    match to {
        Destination::Eligibility => Some("eligibility"),
        Destination::Digest => Some("digest"),
        Destination::Journey => Some("journey"),
        Destination::Ingest | Destination::Broadcast | Destination::Channel(_) => None,
    }
}

fn destination(name: Option<&str>) -> Option<Destination> {
    match name {
        None | Some("eligibility") => Some(Destination::Eligibility),
        Some("digest") => Some(Destination::Digest),
        Some("journey") => Some(Destination::Journey),
        Some(_) => None,
    }
}

impl ScheduleStore for DynamoSchedule {
    async fn schedule(&self, id: &str, body: &str, due: DateTime<Utc>, to: Destination) -> PortResult<()> {
        let Some(name) = destination_name(to) else {
            return Err(PortError::Unknown(anyhow::anyhow!("the schedule does not release to {to:?}")));
        };
        let mut item = Self::item_key(&Self::bucket(due), id);
        item.insert("body".into(), s(body));
        item.insert("due".into(), ts(due));
        item.insert("to".into(), s(name));
        // Kept a week past its time should every run fail, then forgotten.
        item.insert("ttl".into(), n((due + chrono::TimeDelta::days(7)).timestamp()));
        put(&self.client, &self.table, item).await
    }

    async fn due(&self, from: DateTime<Utc>, to: DateTime<Utc>, limit: usize) -> PortResult<Vec<Scheduled>> {
        let mut out = Vec::new();
        let mut minute = from.duration_trunc(chrono::TimeDelta::minutes(1)).unwrap_or(from);
        while minute <= to && out.len() < limit {
            let mut start: Option<Item> = None;
            loop {
                let page = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("pk = :pk")
                    .expression_attribute_values(":pk", s(Self::bucket(minute)))
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(|e| classify("Query", e))?;
                for item in page.items.unwrap_or_default() {
                    let due = get_s(&item, "due").and_then(|d| d.parse::<DateTime<Utc>>().ok());
                    let id = get_s(&item, "sk");
                    let dest = destination(get_s(&item, "to"));
                    if let (Some(due), Some(id), Some(body), Some(dest)) = (due, id, get_s(&item, "body"), dest)
                        && due <= to
                        && out.len() < limit
                    {
                        out.push(Scheduled { id: id.to_owned(), body: body.to_owned(), due, to: dest });
                    }
                }
                match page.last_evaluated_key {
                    Some(k) if out.len() < limit => start = Some(k),
                    _ => break,
                }
            }
            minute += chrono::TimeDelta::minutes(1);
        }
        Ok(out)
    }

    async fn remove(&self, jobs: &[Scheduled]) -> PortResult<()> {
        let keys = jobs.iter().map(|j| Self::item_key(&Self::bucket(j.due), &j.id)).collect();
        batch_delete(&self.client, &self.table, keys).await
    }

    async fn cursor(&self) -> PortResult<Option<DateTime<Utc>>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::item_key(CURSOR, CURSOR)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        Ok(out.item.as_ref().and_then(|i| get_s(i, "at")).and_then(|a| a.parse().ok()))
    }

    async fn set_cursor(&self, at: DateTime<Utc>) -> PortResult<()> {
        let mut item = Self::item_key(CURSOR, CURSOR);
        item.insert("at".into(), ts(at));
        put(&self.client, &self.table, item).await
    }
}
