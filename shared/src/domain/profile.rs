//! PLACEHOLDER until the segments branch merges (same interface).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfileSchema {
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}
