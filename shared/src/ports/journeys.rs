//! Journeys: the definitions (versioned, beside the templates) and each person's place
//! in them (the journeys table).

use super::PortResult;
use crate::domain::RecipientId;
use crate::domain::journey::{Journey, JourneyName, Move, RunState};
use chrono::{DateTime, Utc};
use std::future::Future;
use std::sync::Arc;

/// Journey definitions, pushed by `herald templates push` and cached like templates.
pub trait JourneyStore: Send + Sync {
    /// Version `version` of the journey (immutable once pushed, so cached for long), or
    /// with `None` the latest pushed.
    fn journey(
        &self,
        name: &JourneyName,
        version: Option<u32>,
    ) -> impl Future<Output = PortResult<Option<Arc<Journey>>>> + Send;
    /// Every pushed version of every journey, as last listed: what a `track` may enter or
    /// end (people stay on the version they entered, so every version's exits count).
    fn journeys(&self) -> impl Future<Output = PortResult<Arc<Vec<Arc<Journey>>>>> + Send;
}

/// What came of [`Journeys::advance`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advanced {
    /// The move is made (by this call, or by this same message's earlier attempt).
    Applied,
    /// The state was no longer at that move: another copy moved it, or the run ended.
    Lost,
}

/// Each person's run through each journey: one item per (journey, person), the truth
/// that queue jobs (wake-ups only) are judged against. Every change is one conditional
/// write, so two copies of a job never both move a person.
pub trait Journeys: Send + Sync {
    /// The person's state in the journey (a consistent read).
    fn get(
        &self,
        journey: &JourneyName,
        recipient: &RecipientId,
    ) -> impl Future<Output = PortResult<Option<RunState>>> + Send;
    /// Starts a run with `state`, only if the stored state is still the one judged:
    /// `previous_run` `None` for no state, else its run number. `false` when it changed.
    fn enter(&self, state: &RunState, previous_run: Option<u32>) -> impl Future<Output = PortResult<bool>> + Send;
    /// Makes the move after move `seq` of run `run` (`by`: the SQS message making it),
    /// only while the run is active and still at that move. A run that ends is kept
    /// until `keep_until` (`None`: until erased, for a journey that is never re-entered).
    fn advance(
        &self,
        state: &RunState,
        to: &Move,
        by: &str,
        now: DateTime<Utc>,
        keep_until: Option<DateTime<Utc>>,
    ) -> impl Future<Output = PortResult<Advanced>> + Send;
    /// Ends the person's active run, if it is on one of `versions`, with `reason`
    /// (`event:purchase`): `false` when there was none.
    fn exit(
        &self,
        journey: &JourneyName,
        recipient: &RecipientId,
        versions: &[u32],
        reason: &str,
        now: DateTime<Utc>,
        keep_until: Option<DateTime<Utc>>,
    ) -> impl Future<Output = PortResult<bool>> + Send;
    /// Everyone's state in the journey (`herald journey status`).
    fn list(&self, journey: &JourneyName) -> impl Future<Output = PortResult<Vec<RunState>>> + Send;
    /// Forgets the person's place in the journey (erasure).
    fn erase(&self, journey: &JourneyName, recipient: &RecipientId) -> impl Future<Output = PortResult<()>> + Send;
}
