//! EventBridge adapter: the stack's event bus (`PutEvents`, ten entries a call).

use crate::aws::{THROTTLING_CODES, TRANSIENT_CODES, classify};
use crate::ports::{BusEntry, EntryOutcome, EventBus, PortResult};
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::primitives::DateTime;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

/// The stack's bus, with the `source` every event carries (`herald.<stack name>`).
#[derive(Debug, Clone)]
pub struct EventBridgeBus {
    client: Client,
    bus: String,
    source: String,
}

impl EventBridgeBus {
    pub fn new(client: Client, bus: impl Into<String>, source: impl Into<String>) -> Self {
        Self { client, bus: bus.into(), source: source.into() }
    }
}

/// Whether an entry's error code means "try again": EventBridge's own trouble or
/// throttling. Every other code (`MalformedDetail`, `InvalidArgument`,
/// `NotAuthorizedForSourceException`, ...) refuses the entry for what it is.
fn retryable(code: &str) -> bool {
    THROTTLING_CODES.contains(&code) || TRANSIENT_CODES.contains(&code)
}

impl EventBus for EventBridgeBus {
    async fn put(&self, entries: &[BusEntry]) -> PortResult<Vec<EntryOutcome>> {
        let request: Vec<PutEventsRequestEntry> = entries
            .iter()
            .map(|e| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus)
                    .source(&self.source)
                    .detail_type(&e.detail_type)
                    .detail(&e.detail)
                    .set_time(e.time.map(|t| DateTime::from_millis(t.timestamp_millis())))
                    .build()
            })
            .collect();
        let out =
            self.client.put_events().set_entries(Some(request)).send().await.map_err(|e| classify("PutEvents", e))?;
        let results = out.entries.unwrap_or_default();
        // One result per entry, in order; a missing one is not known to be published.
        Ok((0..entries.len())
            .map(|i| match results.get(i) {
                Some(r) if r.event_id.is_some() && r.error_code.is_none() => EntryOutcome::Published,
                Some(r) => match r.error_code.as_deref() {
                    Some(code) if !retryable(code) => EntryOutcome::Refused(code.to_owned()),
                    code => EntryOutcome::Retry(code.unwrap_or("NoResult").to_owned()),
                },
                None => EntryOutcome::Retry("NoResult".to_owned()),
            })
            .collect())
    }
}
