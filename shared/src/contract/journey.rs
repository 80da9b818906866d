//! `enter_journey`: start a person on a journey (`journeys/<name>.toml`).

use crate::domain::journey::{JourneyName, MAX_ENTRY_DATA_BYTES};
use crate::domain::{IdempotencyKey, RecipientId};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// `{"type": "enter_journey", ...}`: the person starts the journey's latest version,
/// unless they are on it now or its re-entry rule says no. The same key enters once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnterJourney {
    pub idempotency_key: IdempotencyKey,
    pub recipient: RecipientId,
    pub journey: JourneyName,
    /// Given to every message of the run (at most [`MAX_ENTRY_DATA_BYTES`] as JSON, so a
    /// person's place in a journey stays one write unit).
    #[serde(default, skip_serializing_if = "Map::is_empty", deserialize_with = "bounded_data")]
    pub data: Map<String, Value>,
}

fn bounded_data<'de, D: Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
    let data = Map::<String, Value>::deserialize(d)?;
    let bytes = serde_json::to_string(&data).map(|t| t.len()).unwrap_or(usize::MAX);
    if bytes > MAX_ENTRY_DATA_BYTES {
        return Err(serde::de::Error::custom(format!(
            "data is {bytes} bytes as JSON, a journey keeps at most {MAX_ENTRY_DATA_BYTES}"
        )));
    }
    Ok(data)
}
