//! Reading configuration once, at init: from the process environment in Lambda,
//! from the template-resolved variables in the local runner.

use std::str::FromStr;

/// Looks a configuration variable up by name.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

/// The process environment, for `main`.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A set, non-empty value.
pub fn optional(get: Lookup<'_>, name: &str) -> Option<String> {
    get(name).filter(|v| !v.trim().is_empty())
}

pub fn required(get: Lookup<'_>, name: &str) -> Result<String, ConfigError> {
    optional(get, name).ok_or_else(|| ConfigError(format!("{name} must be set")))
}

pub fn parsed<T: FromStr>(get: Lookup<'_>, name: &str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match optional(get, name) {
        None => Ok(default),
        Some(raw) => raw.parse().map_err(|e| ConfigError(format!("{name}={raw:?} is not valid: {e}"))),
    }
}

/// The ledger settings every function shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerConfig {
    pub table: String,
    pub retention_days: u32,
    pub dedupe_window_secs: u32,
}

impl LedgerConfig {
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            table: required(get, "HERALD_LEDGER_TABLE")?,
            retention_days: parsed(get, "HERALD_LEDGER_RETENTION_DAYS", 30)?,
            dedupe_window_secs: parsed(get, "HERALD_DEDUPE_WINDOW_SECS", 86_400)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_defaults_and_refuses_bad_values() {
        let env = |name: &str| match name {
            "HERALD_LEDGER_TABLE" => Some("ledger".to_owned()),
            "HERALD_LEDGER_RETENTION_DAYS" => Some(" ".to_owned()),
            _ => None,
        };
        let c = LedgerConfig::from_lookup(&env).unwrap();
        assert_eq!((c.retention_days, c.dedupe_window_secs), (30, 86_400));
        let bad = |name: &str| (name != "HERALD_DEDUPE_WINDOW_SECS").then(|| "x".to_owned());
        assert!(LedgerConfig::from_lookup(&bad).unwrap_err().0.contains("HERALD_LEDGER_RETENTION_DAYS"));
        assert!(LedgerConfig::from_lookup(&|_| None).unwrap_err().0.contains("HERALD_LEDGER_TABLE must be set"));
    }
}
