//! Digest items (a notify with `digest`): admitted in the ledger once per idempotency key,
//! recorded `digested` with their data, counted in their head's open window, and never
//! sent on their own. The window's close job goes to the digest queue when an item opens
//! the window (delayed to its end, at most SQS's 15 minutes: the digest function waits
//! longer in the schedule table) and when an item fills it; with `flush_first`, the
//! opening item also goes back to ingest at once as a digest of one.

use crate::{Deps, Ports, Step, reject};
use chrono::{DateTime, Utc};
use herald::contract::{NotifyRequest, Rejection};
use herald::domain::MessageId;
use herald::domain::digest::{self, DigestId, Opening};
use herald::lambda::Record;
use herald::ports::*;

pub(crate) async fn admit<P: Ports>(
    deps: &Deps<P>,
    record: &Record,
    request: NotifyRequest,
    now: DateTime<Utc>,
) -> Step {
    let (Some(spec), Some(opening)) = (request.digest.clone(), Opening::of(&request)) else {
        return Step::Retry("not a digest item".into());
    };
    let data = match digest::item_data(&request.data) {
        Ok(data) => data,
        Err(why) => return reject(deps, record, Rejection::new("digest_item_too_large", why), now).await,
    };
    let id = MessageId::for_key(&request.idempotency_key);
    let head = DigestId::of(&request.recipient, &request.template, spec.key.as_str());
    match deps.digests.admit_item(deps.admission(&id, record, &request, now), &head, &data).await {
        Ok(Admission::New) => {}
        // The very SQS message that admitted it, again: its append may not have happened
        // (the append itself counts an item once).
        Ok(Admission::Duplicate { same_source: true, .. }) => {
            tracing::info!(message_id = %id, record = %record.id, digest = %head, "digest item redelivered: appending again");
        }
        Ok(Admission::Duplicate { status, .. }) => {
            tracing::info!(message_id = %id, record = %record.id, status = %status, outcome = "duplicate", "duplicate idempotency key: dropped");
            return match deps.ledger.note_duplicate(&id, &record.id, now).await {
                Err(e) if e.is_retryable() => Step::Retry(e.to_string()),
                _ => Step::Done,
            };
        }
        Err(e) => return Step::Retry(e.to_string()),
    }
    // The recipient's zone is read only for a window that ends at a local time.
    let zone = match spec.until {
        Some(_) => match deps.recipients.get(&request.recipient).await {
            Ok(r) => r.and_then(|r| r.timezone),
            Err(e) => return Step::Retry(e.to_string()),
        },
        None => None,
    };
    let due = digest::first_close(&spec, now, zone);
    let append = DigestAppend { head: &head, item: &id, request: &request, opening: &opening, now, due };
    let appended = match deps.digests.append(append).await {
        Ok(appended) => appended,
        Err(e) => return Step::Retry(e.to_string()),
    };
    let follow = digest::follow_up(&head, &spec, &appended, now);
    tracing::info!(
        message_id = %id, record = %record.id, digest = %head, window = appended.win, total = appended.total,
        already = appended.already, outcome = "digested", "digest item counted"
    );
    let mut forward = Vec::new();
    for job in &follow.close {
        match serde_json::to_string(job) {
            Ok(body) => {
                let delay = digest::delay_secs(job.due, now).unwrap_or(digest::MAX_DELAY_SECS as u32);
                forward.push((Destination::Digest, body, delay));
            }
            Err(e) => return Step::Retry(format!("could not encode the close job: {e}")),
        }
    }
    if follow.flush {
        let first = digest::first_message(&head, appended.win, &request, &opening);
        match first.as_ref().map(serde_json::to_string) {
            Some(Ok(body)) => forward.push((Destination::Ingest, body, 0)),
            _ => return Step::Retry("could not encode the first item's message".into()),
        }
    }
    if forward.is_empty() { Step::Done } else { Step::Forward(forward) }
}
