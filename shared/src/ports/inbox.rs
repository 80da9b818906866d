//! The in-app inbox store: each person's messages (the inbox table).

use super::PortResult;
use crate::domain::RecipientId;
use crate::domain::inbox::{Cursor, InboxMessage, ListQuery, Mark, PublicId};
use chrono::{DateTime, Utc};
use std::future::Future;

/// What came of [`InboxStore::put`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New,
    /// A message with this id was there already (a redelivered job): nothing written.
    Existing,
}

/// One page of a listing, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InboxPage {
    pub messages: Vec<InboxMessage>,
    /// Where the next page starts; `None` when this is the last.
    pub next: Option<Cursor>,
}

/// Messages not archived nor expired that are not seen, not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InboxCounts {
    pub unseen: u64,
    pub unread: u64,
}

/// What came of [`InboxStore::mark`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marked {
    /// Marked now.
    Moved,
    /// It had that mark already (its first time is kept).
    Unchanged,
    /// The person has no such message (or it expired).
    NotFound,
}

/// Each person's in-app messages. Every read and write names the person: the API takes
/// the person from the user token, so no call can reach another's messages.
pub trait InboxStore: Send + Sync {
    /// Stores a message under its id, once: a second put of the same id writes nothing.
    fn put(&self, message: &InboxMessage) -> impl Future<Output = PortResult<Stored>> + Send;
    /// A page of the person's messages under `query`'s filter, newest first, without those
    /// expired at `now`.
    fn list(
        &self,
        recipient: &RecipientId,
        query: &ListQuery,
        now: DateTime<Utc>,
    ) -> impl Future<Output = PortResult<InboxPage>> + Send;
    /// How many of the person's messages (not archived, not expired) are unseen and unread.
    fn counts(
        &self,
        recipient: &RecipientId,
        now: DateTime<Utc>,
    ) -> impl Future<Output = PortResult<InboxCounts>> + Send;
    /// One message (a consistent read); `None` when the person has none by that id or it
    /// expired at `now`.
    fn get(
        &self,
        recipient: &RecipientId,
        id: &PublicId,
        now: DateTime<Utc>,
    ) -> impl Future<Output = PortResult<Option<InboxMessage>>> + Send;
    /// Marks one message at `now` (read and clicked also mark it seen; clicked also read),
    /// in one conditional write: a mark it has already is kept with its first time.
    fn mark(
        &self,
        recipient: &RecipientId,
        id: &PublicId,
        mark: Mark,
        now: DateTime<Utc>,
    ) -> impl Future<Output = PortResult<Marked>> + Send;
    /// Up to `limit` of the person's messages (not archived, not expired) without `mark`,
    /// newest first: what "mark all" marks.
    fn unmarked(
        &self,
        recipient: &RecipientId,
        mark: Mark,
        now: DateTime<Utc>,
        limit: usize,
    ) -> impl Future<Output = PortResult<Vec<InboxMessage>>> + Send;
    /// Deletes every message of the person (erasure); returns how many there were.
    fn erase(&self, recipient: &RecipientId) -> impl Future<Output = PortResult<usize>> + Send;
}
