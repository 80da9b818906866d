//! The in-app inbox table: `pk` = the person's recipient id, `sk` = the message's sort key
//! ([`PublicId::sort_key`]: delivery time, then message id), `expires_at` the TTL (epoch
//! seconds). A message is one item of a few hundred bytes: one write unit to store, one
//! per mark. Listing reads the person's partition backwards (newest first).

use super::*;
use crate::domain::inbox::{Filter, InboxMessage, ListQuery, Mark, PublicId};
use crate::ports::{InboxCounts, InboxPage, InboxStore, Marked, Stored};

/// Requests one listing or count may make before it answers with what it has (a cursor to
/// go on from): bounds what one API call reads.
const MAX_PAGES: usize = 10;

/// Messages evaluated per request at least (a filtered listing reads past what it keeps).
const MIN_READ: usize = 25;

/// The expression names of the attributes a filter or a mark uses (DynamoDB refuses a
/// name an expression does not use).
const MARK_NAMES: [(&str, &str); 5] = [
    ("#expires", "expires_at"),
    ("#seen", "seen_at"),
    ("#read", "read_at"),
    ("#archived", "archived_at"),
    ("#clicked", "clicked_at"),
];

#[derive(Debug, Clone)]
pub struct DynamoInbox {
    client: Client,
    table: String,
}

impl DynamoInbox {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    fn key(recipient: &RecipientId, id: &PublicId) -> Item {
        HashMap::from([("pk".to_owned(), s(recipient.as_str())), ("sk".to_owned(), s(id.sort_key()))])
    }

    fn item(m: &InboxMessage) -> Item {
        let mut item = Self::key(&m.recipient, &m.id);
        item.extend([
            ("message_id".to_owned(), s(m.id.message_id().as_str())),
            ("title".into(), s(&m.title)),
            ("body".into(), s(&m.body)),
            ("template".into(), s(&m.template)),
            ("kind".into(), s(&m.kind)),
            ("created_at".into(), ts(m.created_at)),
            ("expires_at".into(), n(m.expires_at.timestamp())),
        ]);
        let optional = [("action_url", &m.action_url), ("topic", &m.topic), ("campaign", &m.campaign)];
        for (name, value) in optional {
            if let Some(v) = value {
                item.insert(name.to_owned(), s(v));
            }
        }
        if !m.data.is_empty() {
            let data = m.data.iter().map(|(k, v)| (k.clone(), s(v))).collect();
            item.insert("data".into(), AttributeValue::M(data));
        }
        let marks = [
            ("seen_at", m.seen_at),
            ("read_at", m.read_at),
            ("archived_at", m.archived_at),
            ("clicked_at", m.clicked_at),
        ];
        for (name, at) in marks {
            if let Some(at) = at {
                item.insert(name.to_owned(), ts(at));
            }
        }
        item
    }

    fn parse(item: &Item) -> Option<InboxMessage> {
        let time = |name: &str| {
            get_s(item, name).and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc))
        };
        let data = item
            .get("data")
            .and_then(|d| d.as_m().ok())
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_s().ok()?.clone()))).collect())
            .unwrap_or_default();
        Some(InboxMessage {
            id: PublicId::from_sort_key(get_s(item, "sk")?)?,
            recipient: RecipientId::new(get_s(item, "pk")?).ok()?,
            title: get_s(item, "title").unwrap_or_default().to_owned(),
            body: get_s(item, "body").unwrap_or_default().to_owned(),
            action_url: get_s(item, "action_url").map(str::to_owned),
            data,
            template: get_s(item, "template").unwrap_or_default().to_owned(),
            topic: get_s(item, "topic").map(str::to_owned),
            campaign: get_s(item, "campaign").map(str::to_owned),
            kind: get_s(item, "kind").unwrap_or_default().to_owned(),
            created_at: time("created_at")?,
            expires_at: DateTime::from_timestamp(get_n(item, "expires_at")?, 0)?,
            seen_at: time("seen_at"),
            read_at: time("read_at"),
            archived_at: time("archived_at"),
            clicked_at: time("clicked_at"),
        })
    }

    /// The filter expression (names `#x`, values `:now`) of what a listing under `filter`
    /// shows, and, with `without`, only messages lacking that mark.
    fn filter_expression(filter: Filter, without: Option<Mark>) -> String {
        let mut parts = vec!["#expires > :now"];
        parts.push(match filter {
            Filter::All => "attribute_not_exists(#archived)",
            Filter::Unread => "attribute_not_exists(#archived) AND attribute_not_exists(#read)",
            Filter::Unseen => "attribute_not_exists(#archived) AND attribute_not_exists(#seen)",
            Filter::Archived => "attribute_exists(#archived)",
        });
        let mark = match without {
            Some(Mark::Seen) => Some("attribute_not_exists(#seen)"),
            Some(Mark::Read) => Some("attribute_not_exists(#read)"),
            Some(Mark::Clicked) => Some("attribute_not_exists(#clicked)"),
            Some(Mark::Archived) => Some("attribute_not_exists(#archived)"),
            None => None,
        };
        parts.extend(mark);
        parts.join(" AND ")
    }

    /// Reads the person's messages newest first from after `start`, keeping those
    /// `condition` keeps, until `want` are kept. Returns them and, when more may follow,
    /// where the next read starts (after the last kept, or where the reads stopped).
    async fn read(
        &self,
        recipient: &RecipientId,
        start: Option<&PublicId>,
        condition: &str,
        now: DateTime<Utc>,
        want: usize,
    ) -> PortResult<(Vec<InboxMessage>, Option<PublicId>)> {
        let mut kept = Vec::new();
        let mut from = start.map(|id| Self::key(recipient, id));
        for _ in 0..MAX_PAGES {
            let remaining = want.saturating_sub(kept.len());
            let mut req = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .filter_expression(condition)
                .expression_attribute_values(":pk", s(recipient.as_str()))
                .expression_attribute_values(":now", n(now.timestamp()))
                .scan_index_forward(false)
                .limit(i32::try_from((remaining + 1).max(MIN_READ)).unwrap_or(i32::MAX))
                .set_exclusive_start_key(from.take());
            for (name, attribute) in MARK_NAMES {
                if condition.contains(name) {
                    req = req.expression_attribute_names(name, attribute);
                }
            }
            let page = req.send().await.map_err(|e| classify("Query", e))?;
            let items = page.items.unwrap_or_default();
            let last = page.last_evaluated_key.filter(|k| !k.is_empty());
            let mut rest = items.iter();
            while kept.len() < want {
                let Some(item) = rest.next() else { break };
                match Self::parse(item) {
                    Some(m) => kept.push(m),
                    None => tracing::warn!(table = %self.table, "an inbox item does not parse: skipped"),
                }
            }
            if kept.len() == want {
                // More may follow: the next read starts after the last one kept.
                let more = rest.len() > 0 || last.is_some();
                let next = if more { kept.last().map(|m| m.id.clone()) } else { None };
                return Ok((kept, next));
            }
            match last {
                None => return Ok((kept, None)),
                Some(k) => from = Some(k),
            }
        }
        // Read as much as one call may: the next read goes on from where this one stopped.
        let next = from.as_ref().and_then(|k| get_s(k, "sk")).and_then(PublicId::from_sort_key);
        Ok((kept, next))
    }
}

impl InboxStore for DynamoInbox {
    async fn put(&self, message: &InboxMessage) -> PortResult<Stored> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::item(message)))
            .condition_expression("attribute_not_exists(sk)")
            .send()
            .await;
        Ok(match conditional("PutItem", result)? {
            Some(_) => Stored::New,
            None => Stored::Existing,
        })
    }

    async fn list(&self, recipient: &RecipientId, query: &ListQuery, now: DateTime<Utc>) -> PortResult<InboxPage> {
        let condition = Self::filter_expression(query.filter, None);
        let (messages, next) =
            self.read(recipient, query.cursor.as_ref().map(|c| &c.0), &condition, now, query.limit).await?;
        Ok(InboxPage { messages, next: next.map(crate::domain::inbox::Cursor) })
    }

    async fn counts(&self, recipient: &RecipientId, now: DateTime<Utc>) -> PortResult<InboxCounts> {
        let mut counts = InboxCounts::default();
        let mut from: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .filter_expression("#expires > :now AND attribute_not_exists(#archived)")
                .projection_expression("#seen, #read")
                .expression_attribute_names("#expires", "expires_at")
                .expression_attribute_names("#archived", "archived_at")
                .expression_attribute_names("#read", "read_at")
                .expression_attribute_names("#seen", "seen_at")
                .expression_attribute_values(":pk", s(recipient.as_str()))
                .expression_attribute_values(":now", n(now.timestamp()))
                .set_exclusive_start_key(from.take())
                .send()
                .await
                .map_err(|e| classify("Query", e))?;
            for item in page.items.unwrap_or_default() {
                counts.unseen += u64::from(!item.contains_key("seen_at"));
                counts.unread += u64::from(!item.contains_key("read_at"));
            }
            match page.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(k) => from = Some(k),
                None => return Ok(counts),
            }
        }
    }

    async fn get(
        &self,
        recipient: &RecipientId,
        id: &PublicId,
        now: DateTime<Utc>,
    ) -> PortResult<Option<InboxMessage>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(recipient, id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", e))?;
        // TTL deletes lazily: an expired message is gone to the API.
        Ok(out.item.as_ref().and_then(Self::parse).filter(|m| m.expires_at > now))
    }

    async fn mark(&self, recipient: &RecipientId, id: &PublicId, mark: Mark, now: DateTime<Utc>) -> PortResult<Marked> {
        let (update, guard) = match mark {
            Mark::Seen => ("SET #seen = :at", "#seen"),
            Mark::Read => ("SET #read = :at, #seen = if_not_exists(#seen, :at)", "#read"),
            Mark::Archived => ("SET #archived = :at", "#archived"),
            Mark::Clicked => {
                ("SET #clicked = :at, #read = if_not_exists(#read, :at), #seen = if_not_exists(#seen, :at)", "#clicked")
            }
        };
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(recipient, id)))
            .update_expression(update)
            .condition_expression(format!("attribute_exists(sk) AND #expires > :now AND attribute_not_exists({guard})"))
            .expression_attribute_values(":now", n(now.timestamp()))
            .expression_attribute_values(":at", ts(now))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for (name, attribute) in MARK_NAMES {
            if update.contains(name) || name == "#expires" {
                req = req.expression_attribute_names(name, attribute);
            }
        }
        match req.send().await {
            Ok(_) => Ok(Marked::Moved),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c)) => {
                    let live = c.item().and_then(Self::parse).is_some_and(|m| m.expires_at > now);
                    Ok(if live { Marked::Unchanged } else { Marked::NotFound })
                }
                _ => Err(classify("UpdateItem", e)),
            },
        }
    }

    async fn unmarked(
        &self,
        recipient: &RecipientId,
        mark: Mark,
        now: DateTime<Utc>,
        limit: usize,
    ) -> PortResult<Vec<InboxMessage>> {
        let condition = Self::filter_expression(Filter::All, Some(mark));
        Ok(self.read(recipient, None, &condition, now, limit).await?.0)
    }

    async fn erase(&self, recipient: &RecipientId) -> PortResult<usize> {
        let mut keys = Vec::new();
        let mut from: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .projection_expression("pk, sk")
                .expression_attribute_values(":pk", s(recipient.as_str()))
                .set_exclusive_start_key(from.take())
                .send()
                .await
                .map_err(|e| classify("Query", e))?;
            keys.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(k) => from = Some(k),
                None => break,
            }
        }
        let count = keys.len();
        batch_delete(&self.client, &self.table, keys).await?;
        Ok(count)
    }
}
