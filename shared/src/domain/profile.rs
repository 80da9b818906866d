//! Profile attributes: what producers may store about a person (`upsert_recipient`'s
//! `attributes`) and the types a team declares for them in `profile.toml`.
//!
//! Two levels of checking:
//! - the contract (every producer, whatever the team declared): an attribute's name is
//!   1 to 64 letters, digits, `_`, `-` or `.`; its value a string, a number, a boolean,
//!   a list of strings, or `null` (which removes the attribute); see [`check_contract`];
//! - the profile schema (what the team pushed with `herald templates push`): a declared
//!   attribute must have its declared type, or the whole command is refused
//!   (`invalid_attribute`). Undeclared attributes are stored as they come, but segments
//!   and templates cannot use them: only declared ones have a type to reason with.

use crate::contract::instant;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// At most this many attributes in one `upsert_recipient`.
pub const MAX_ATTRIBUTES: usize = 50;
/// A string value (or one element of a list) is at most this many characters.
pub const MAX_STRING_CHARS: usize = 1024;
/// A list value has at most this many elements.
pub const MAX_LIST_ITEMS: usize = 100;
/// An attribute's name is at most this many characters.
pub const MAX_NAME_CHARS: usize = 64;

/// The type of a declared attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttributeType {
    String,
    Number,
    Boolean,
    /// A list of strings (`["shoes", "bags"]`).
    List,
    /// An RFC 3339 instant, as a string (`"2026-03-01T09:00:00Z"`).
    Timestamp,
}

impl AttributeType {
    pub fn as_str(self) -> &'static str {
        match self {
            AttributeType::String => "string",
            AttributeType::Number => "number",
            AttributeType::Boolean => "boolean",
            AttributeType::List => "list",
            AttributeType::Timestamp => "timestamp",
        }
    }

    /// What a value of this type is, for a refusal: "a number", "a list of strings".
    pub fn expected(self) -> &'static str {
        match self {
            AttributeType::String => "a string",
            AttributeType::Number => "a number",
            AttributeType::Boolean => "a boolean",
            AttributeType::List => "a list of strings",
            AttributeType::Timestamp => "an RFC 3339 timestamp such as \"2026-03-01T09:00:00Z\"",
        }
    }

    /// Whether `value` is of this type (`null` is no type: it removes an attribute).
    pub fn accepts(self, value: &Value) -> bool {
        match (self, value) {
            (AttributeType::String, Value::String(_)) => true,
            (AttributeType::Number, Value::Number(_)) => true,
            (AttributeType::Boolean, Value::Bool(_)) => true,
            (AttributeType::List, Value::Array(items)) => items.iter().all(Value::is_string),
            (AttributeType::Timestamp, Value::String(raw)) => instant::parse(raw).is_ok(),
            _ => false,
        }
    }
}

/// `profile.toml`: the attributes a team declares, with their types.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSchema {
    #[serde(default)]
    pub attributes: BTreeMap<String, AttributeType>,
}

impl ProfileSchema {
    /// A declared name is one templates and segments can write: a letter or `_`, then
    /// letters, digits and `_`, at most 64 characters (`recipient.attributes.first_name`).
    pub fn validate(&self) -> Result<(), String> {
        for name in self.attributes.keys() {
            let mut chars = name.chars();
            let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
            if !first_ok
                || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
                || name.chars().count() > MAX_NAME_CHARS
            {
                return Err(format!(
                    "profile attribute {name:?}: a declared name is a letter or _ then letters, digits or _, \
                     at most {MAX_NAME_CHARS} characters"
                ));
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<AttributeType> {
        self.attributes.get(name).copied()
    }

    /// Refuses attributes whose declared type they do not have, naming each attribute and
    /// the type it must have, never the value (it may be personal). `null` removes an
    /// attribute and is always accepted; undeclared attributes are not checked here.
    pub fn check(&self, attrs: &Map<String, Value>) -> Result<(), String> {
        let wrong: Vec<String> = attrs
            .iter()
            .filter(|(_, v)| !v.is_null())
            .filter_map(|(name, value)| {
                let ty = self.get(name)?;
                (!ty.accepts(value)).then(|| format!("attributes.{name} must be {}", ty.expected()))
            })
            .collect();
        if wrong.is_empty() { Ok(()) } else { Err(wrong.join("; ")) }
    }
}

/// The contract's rules for `upsert_recipient.attributes`, whatever the team declared.
/// Each refusal starts with `attributes` (a rejection's detail names the field so) and
/// names the attribute when its name is a valid one, never its value.
pub fn check_contract(attrs: &Map<String, Value>) -> Result<(), String> {
    if attrs.len() > MAX_ATTRIBUTES {
        return Err(format!("attributes hold at most {MAX_ATTRIBUTES} entries in one command"));
    }
    for (name, value) in attrs {
        let name_ok = (1..=MAX_NAME_CHARS).contains(&name.chars().count())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !name_ok {
            return Err(format!("attributes have names of 1 to {MAX_NAME_CHARS} letters, digits, _, - or ."));
        }
        let short = |s: &str| s.chars().count() <= MAX_STRING_CHARS;
        let ok = match value {
            Value::Null | Value::Bool(_) | Value::Number(_) => true,
            Value::String(s) => short(s),
            Value::Array(items) => items.len() <= MAX_LIST_ITEMS && items.iter().all(|i| i.as_str().is_some_and(short)),
            Value::Object(_) => false,
        };
        if !ok {
            return Err(format!(
                "attributes entry `{name}` must be a string (at most {MAX_STRING_CHARS} characters), a number, \
                 a boolean, a list of at most {MAX_LIST_ITEMS} such strings, or null to remove it"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> ProfileSchema {
        ProfileSchema {
            attributes: BTreeMap::from([
                ("first_name".to_owned(), AttributeType::String),
                ("lifetime_value".to_owned(), AttributeType::Number),
                ("beta".to_owned(), AttributeType::Boolean),
                ("interests".to_owned(), AttributeType::List),
                ("signed_up_at".to_owned(), AttributeType::Timestamp),
            ]),
        }
    }

    fn attrs(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn declared_types_are_checked_and_the_refusal_never_quotes_the_value() {
        let s = schema();
        let ok = json!({"first_name": "Ana", "lifetime_value": 12.5, "beta": true, "interests": ["shoes"],
                        "signed_up_at": "2026-03-01T09:00:00Z", "undeclared": {"any": "thing"}, "beta_old": null});
        assert_eq!(s.check(&attrs(ok)), Ok(()));
        assert_eq!(s.check(&attrs(json!({"first_name": null, "interests": []}))), Ok(()), "null removes, [] is a list");
        let cases = [
            (json!({"first_name": 42}), "attributes.first_name must be a string"),
            (json!({"lifetime_value": "ana@example.org"}), "attributes.lifetime_value must be a number"),
            (json!({"beta": "true"}), "attributes.beta must be a boolean"),
            (json!({"interests": ["a", 1]}), "attributes.interests must be a list of strings"),
            (json!({"interests": "shoes"}), "attributes.interests must be a list of strings"),
            (
                json!({"signed_up_at": "2026-03-01 09:00"}),
                "attributes.signed_up_at must be an RFC 3339 timestamp such as \"2026-03-01T09:00:00Z\"",
            ),
            (
                json!({"beta": 1, "first_name": false}),
                "attributes.beta must be a boolean; attributes.first_name must be a string",
            ),
        ];
        for (value, expected) in cases {
            let got = s.check(&attrs(value.clone()));
            assert_eq!(got.as_ref().map_err(String::as_str), Err(expected), "{value}");
            assert!(!got.unwrap_err().contains("ana@example.org"));
        }
        assert_eq!(ProfileSchema::default().check(&attrs(json!({"first_name": 42}))), Ok(()), "nothing declared");
    }

    #[test]
    fn the_contract_takes_scalars_and_lists_of_strings() {
        let long = "x".repeat(MAX_STRING_CHARS + 1);
        let many: Map<String, Value> = (0..=MAX_ATTRIBUTES).map(|i| (format!("a{i}"), json!(1))).collect();
        let cases = [
            (json!({"plan": "pro", "ltv": 3, "beta": false, "tags": ["a", "b"], "gone": null, "a.b-c_d": 1}), true),
            (json!({"nested": {"a": 1}}), false),
            (json!({"mixed": ["a", 1]}), false),
            (json!({"long": long}), false),
            (json!({"has space": 1}), false),
            (json!({"": 1}), false),
            (json!({"list": vec!["a"; MAX_LIST_ITEMS + 1]}), false),
        ];
        for (value, ok) in cases {
            assert_eq!(check_contract(&attrs(value.clone())).is_ok(), ok, "{value}");
        }
        assert!(check_contract(&many).is_err());
    }

    #[test]
    fn profile_toml_parses_strictly() {
        let s: ProfileSchema =
            serde_json::from_value(json!({"attributes": {"plan": "string", "ltv": "number"}})).unwrap();
        assert_eq!(s.get("ltv"), Some(AttributeType::Number));
        assert!(serde_json::from_value::<ProfileSchema>(json!({"attributes": {"plan": "text"}})).is_err());
        assert!(serde_json::from_value::<ProfileSchema>(json!({"attrs": {}})).is_err());
        assert!(schema().validate().is_ok());
        for bad in ["1st", "first-name", "a.b", ""] {
            let s = ProfileSchema { attributes: BTreeMap::from([(bad.to_owned(), AttributeType::String)]) };
            assert!(s.validate().is_err(), "{bad:?}");
        }
    }
}
