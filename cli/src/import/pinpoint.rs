//! Amazon Pinpoint's endpoint export (`CreateExportJob`): one endpoint per line, JSON,
//! gzipped, several endpoints per user. Endpoints are grouped by `User.UserId` into one
//! Herald person each:
//!
//! - `EMAIL` and `SMS`: the newest active endpoint (by `EffectiveDate`) gives the email
//!   address or phone number (Herald keeps one of each); its `OptOut: ALL` becomes a
//!   withdrawn consent for that channel, at its `EffectiveDate`, source `pinpoint`.
//! - `GCM`, `APNS`, `APNS_SANDBOX`: each active endpoint's token is registered (platform
//!   `fcm`, `apns`, `apns_sandbox`; the endpoint `Id` as the device id) unless that device
//!   opted out (`OptOut: ALL`); when every push endpoint of the person opted out, push
//!   consent is withdrawn.
//! - `EndpointStatus: INACTIVE`: not imported (Pinpoint marks an endpoint inactive when its
//!   address bounced or its token was rejected).
//! - `Demographic.Timezone` / `Demographic.Locale` (`en_US` becomes `en-US`): from the newest
//!   endpoint that has a valid one.
//! - `Attributes` (each endpoint's, oldest first) then `User.UserAttributes`: profile
//!   attributes; a one-value list becomes a string, a longer one a list.
//! - `OptOut: NONE` is no opt-in in Herald (marketing needs an explicit one), unless
//!   `--opt-out-none-grants` says to record one.
//!
//! Every endpoint not imported is reported with its line and the reason.

use super::people::Draft;
use super::{ImportOptions, Parsed, Refusal};
use chrono::{DateTime, Utc};
use herald::contract::json_error_detail;
use herald::domain::{EmailAddress, PhoneNumber};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The consent source recorded for what the export says.
pub const SOURCE: &str = "pinpoint";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Email,
    Sms,
    Push(&'static str),
}

/// One endpoint line, as far as Herald uses it.
#[derive(Debug)]
struct Endpoint {
    line: u64,
    id: Option<String>,
    kind: Kind,
    address: Option<String>,
    active: bool,
    opted_out: bool,
    effective: Option<DateTime<Utc>>,
    timezone: Option<String>,
    locale: Option<String>,
    attributes: Map<String, Value>,
    user_attributes: Map<String, Value>,
}

fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, key| v.get(key))?.as_str()
}

fn date(raw: Option<&str>) -> Option<DateTime<Utc>> {
    raw.and_then(|r| DateTime::parse_from_rfc3339(r).ok()).map(|d| d.with_timezone(&Utc))
}

/// Pinpoint's `{"name": ["value", ...]}`.
fn attributes(v: Option<&Value>) -> Map<String, Value> {
    v.and_then(Value::as_object).cloned().unwrap_or_default()
}

/// Reads every line; endpoints that cannot be part of a person are refused here.
pub fn parse_export<R: std::io::BufRead>(reader: R, opts: &ImportOptions) -> anyhow::Result<Parsed> {
    let mut parsed = Parsed::default();
    // By user id, in order of first appearance.
    let mut users: BTreeMap<String, Vec<Endpoint>> = BTreeMap::new();
    for (i, line) in reader.lines().enumerate() {
        let line_no = i as u64 + 1;
        let Some(raw) = parsed.line(line_no, line)? else { continue };
        let v: Value = match serde_json::from_str(&raw) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                parsed.refused.push(Refusal::new(line_no, None, "malformed_json", "the line is not a JSON object"));
                continue;
            }
            Err(e) => {
                parsed.refused.push(Refusal::new(line_no, None, "malformed_json", json_error_detail(&e, None)));
                continue;
            }
        };
        let Some(user) = text(&v, &["User", "UserId"]).filter(|u| !u.is_empty()) else {
            parsed.refused.push(Refusal::new(
                line_no,
                None,
                "no_user_id",
                "the endpoint has no User.UserId: Herald keys people by id (give it one in Pinpoint, or import it \
                 from a people file)",
            ));
            continue;
        };
        let kind = match text(&v, &["ChannelType"]) {
            Some("EMAIL") => Kind::Email,
            Some("SMS") => Kind::Sms,
            Some("GCM") => Kind::Push("fcm"),
            Some("APNS") => Kind::Push("apns"),
            Some("APNS_SANDBOX") => Kind::Push("apns_sandbox"),
            other => {
                let what = other.map_or("none".to_owned(), |c| {
                    if c.len() <= 20 && c.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
                        c.to_owned()
                    } else {
                        "an unknown one".to_owned()
                    }
                });
                parsed.refused.push(Refusal::new(
                    line_no,
                    Some(user),
                    "unsupported_channel",
                    format!("ChannelType is {what}: Herald imports EMAIL, SMS, GCM, APNS and APNS_SANDBOX"),
                ));
                continue;
            }
        };
        let endpoint = Endpoint {
            line: line_no,
            id: text(&v, &["Id"]).map(str::to_owned),
            kind,
            address: text(&v, &["Address"]).map(str::to_owned),
            active: text(&v, &["EndpointStatus"]) != Some("INACTIVE"),
            opted_out: text(&v, &["OptOut"]) == Some("ALL"),
            effective: date(text(&v, &["EffectiveDate"])).or_else(|| date(text(&v, &["CreationDate"]))),
            timezone: text(&v, &["Demographic", "Timezone"]).map(str::to_owned),
            locale: text(&v, &["Demographic", "Locale"]).map(str::to_owned),
            attributes: attributes(v.get("Attributes")),
            user_attributes: attributes(v.get("User").and_then(|u| u.get("UserAttributes"))),
        };
        users.entry(user.to_owned()).or_default().push(endpoint);
    }
    for (user, endpoints) in users {
        let line = endpoints.iter().map(|e| e.line).min().unwrap_or_default();
        let (draft, mut refused) = person(&user, endpoints, opts);
        match draft.finish(line, opts) {
            Ok(p) => parsed.people.push(p),
            Err(r) => {
                refused.extend(r);
            }
        }
        parsed.refused.extend(refused);
    }
    parsed.people.sort_by_key(|p| p.line);
    parsed.refused.sort_by_key(|r| r.line);
    Ok(parsed)
}

/// One user's endpoints as one person, and what of them is not imported.
fn person(user: &str, mut endpoints: Vec<Endpoint>, opts: &ImportOptions) -> (Draft, Vec<Refusal>) {
    // Oldest first: later values win, the newest endpoint last.
    endpoints.sort_by_key(|e| (e.effective, e.line));
    let mut refused = Vec::new();
    let mut refuse = |e: &Endpoint, code: &str, why: String| refused.push(Refusal::new(e.line, Some(user), code, why));
    let mut draft = Draft { recipient: user.to_owned(), ..Draft::default() };
    let consent_at = |e: &Endpoint| e.effective.map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));

    // Email and SMS: the newest valid active endpoint's address.
    for (kind, field, channel) in [(Kind::Email, "email", "email"), (Kind::Sms, "phone", "sms")] {
        let valid = |a: &str| match kind {
            Kind::Email => EmailAddress::new(a.to_owned()).is_ok(),
            _ => PhoneNumber::new(a.to_owned()).is_ok(),
        };
        let mut kept: Option<&Endpoint> = None;
        let mut candidates = Vec::new();
        for e in endpoints.iter().filter(|e| e.kind == kind) {
            if !e.active {
                refuse(e, "inactive_endpoint", format!("EndpointStatus INACTIVE: the {field} is not imported"));
            } else if !e.address.as_deref().is_some_and(valid) {
                let what = if field == "phone" { "an E.164 phone number" } else { "an email address" };
                refuse(e, "invalid_address", format!("Address is not {what}: the endpoint is not imported"));
            } else {
                candidates.push(e);
            }
        }
        if let Some((newest, older)) = candidates.split_last() {
            for e in older {
                refuse(
                    e,
                    "superseded",
                    format!(
                        "an {} endpoint of the same user is newer (line {}): Herald keeps one {field} per person",
                        channel.to_uppercase(),
                        newest.line
                    ),
                );
            }
            kept = Some(newest);
        }
        let Some(e) = kept else { continue };
        draft.profile.insert(field.to_owned(), json!(e.address));
        if e.opted_out || opts.opt_out_none_grants {
            match consent_at(e) {
                Some(at) => draft.consents.push(consent(channel, !e.opted_out, at)),
                None => refuse(e, "missing_consent_time", "no EffectiveDate: its OptOut is not imported".to_owned()),
            }
        }
    }

    // Push: every active device that did not opt out.
    let mut pushes = Vec::new();
    for e in endpoints.iter() {
        let Kind::Push(platform) = e.kind else { continue };
        if !e.active {
            refuse(e, "inactive_endpoint", "EndpointStatus INACTIVE: the token is not registered".to_owned());
            continue;
        }
        let Some(token) = e.address.as_deref().filter(|t| herald::domain::PushToken::new(*t).is_ok()) else {
            refuse(e, "invalid_token", "Address is not a push token: the endpoint is not imported".to_owned());
            continue;
        };
        pushes.push(e);
        if e.opted_out {
            refuse(e, "opted_out", "OptOut ALL: the device opted out, its token is not registered".to_owned());
            continue;
        }
        let mut t = Map::from_iter([("platform".to_owned(), json!(platform)), ("token".to_owned(), json!(token))]);
        if let Some(id) = e.id.as_deref().filter(|id| herald::domain::DeviceId::new(*id).is_ok()) {
            t.insert("device_id".to_owned(), json!(id));
        }
        draft.tokens.push(t);
    }
    if let Some(newest) = pushes.last() {
        let all_out = pushes.iter().all(|e| e.opted_out);
        if all_out || opts.opt_out_none_grants {
            match consent_at(newest) {
                Some(at) => draft.consents.push(consent("push", !all_out, at)),
                None => {
                    refuse(newest, "missing_consent_time", "no EffectiveDate: its OptOut is not imported".to_owned())
                }
            }
        }
    }

    // Time zone and locale: the newest valid ones.
    for e in endpoints.iter().rev() {
        if let Some(tz) = &e.timezone
            && !draft.profile.contains_key("timezone")
        {
            if herald::contract::TimeZone::try_from(tz.clone()).is_ok() {
                draft.profile.insert("timezone".to_owned(), json!(tz));
            } else {
                refuse(e, "invalid_field", "Demographic.Timezone is not an IANA time zone: not imported".to_owned());
            }
        }
        if let Some(locale) = &e.locale
            && !draft.profile.contains_key("locale")
        {
            let locale = locale.replace('_', "-");
            if herald::contract::Locale::try_from(locale.clone()).is_ok() {
                draft.profile.insert("locale".to_owned(), json!(locale));
            } else {
                refuse(e, "invalid_field", "Demographic.Locale is not a locale such as en_US: not imported".to_owned());
            }
        }
    }

    // Attributes: endpoints' oldest first, then the user's.
    let mut attrs = Map::new();
    for source in [false, true] {
        for e in &endpoints {
            let from = if source { &e.user_attributes } else { &e.attributes };
            for (name, value) in from {
                match attribute(value) {
                    Some(Value::Null) => {}
                    Some(v) => {
                        attrs.insert(name.clone(), v);
                    }
                    None => {
                        let field = if source { "User.UserAttributes" } else { "Attributes" };
                        refuse(e, "invalid_field", format!("{field}.{name} is not a list of strings: not imported"));
                    }
                }
            }
        }
    }
    if !attrs.is_empty() {
        draft.profile.insert("attributes".to_owned(), Value::Object(attrs));
    }
    (draft, refused)
}

fn consent(channel: &str, granted: bool, at: String) -> Map<String, Value> {
    Map::from_iter([
        ("channel".to_owned(), json!(channel)),
        ("granted".to_owned(), json!(granted)),
        ("source".to_owned(), json!(SOURCE)),
        ("at".to_owned(), json!(at)),
    ])
}

/// A Pinpoint attribute value (a list of strings) as Herald's: one value a string, more a
/// list, none `Null` (nothing to set); `None` when it is not a list of strings.
fn attribute(value: &Value) -> Option<Value> {
    let items = value.as_array()?;
    let strings: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
    Some(match strings?.as_slice() {
        [] => Value::Null,
        [one] => json!(one),
        many => json!(many),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(id: &str, user: &str, channel: &str, address: &str, extra: Value) -> String {
        let mut v = json!({"Id": id, "ChannelType": channel, "Address": address, "EndpointStatus": "ACTIVE",
                           "OptOut": "NONE", "EffectiveDate": "2026-01-01T00:00:00.000Z",
                           "User": {"UserId": user}});
        if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
            o.extend(e);
        }
        v.to_string()
    }

    fn bodies(parsed: &Parsed, i: usize) -> Vec<Value> {
        parsed.people[i].commands.iter().map(|c| serde_json::from_str(c).unwrap()).collect()
    }

    #[test]
    fn endpoints_group_into_people_with_consents_and_tokens() {
        let lines = [
            endpoint("e1", "u1", "EMAIL", "old@example.org", json!({"EffectiveDate": "2025-01-01T00:00:00Z"})),
            endpoint(
                "e2",
                "u1",
                "EMAIL",
                "new@example.org",
                json!({"OptOut": "ALL", "Demographic": {"Timezone": "Europe/Paris", "Locale": "fr_FR"}}),
            ),
            endpoint("e3", "u1", "GCM", "fcm-token-1", json!({})),
            endpoint("e4", "u1", "APNS", "apns-token-1", json!({"OptOut": "ALL"})),
            endpoint("e5", "u1", "APNS_SANDBOX", "sandbox-token", json!({"EndpointStatus": "INACTIVE"})),
            endpoint(
                "e6",
                "u2",
                "SMS",
                "+15555550100",
                json!({"User": {"UserId": "u2", "UserAttributes": {"FirstName": ["Bo"], "Tags": ["a", "b"]}}}),
            ),
            endpoint("e7", "u2", "VOICE", "+15555550100", json!({})),
            endpoint("e8", "", "EMAIL", "x@example.org", json!({})),
            "{oops".to_owned(),
            endpoint("e9", "u3", "SMS", "555-0100", json!({})),
        ];
        let parsed = parse_export(lines.join("\n").as_bytes(), &ImportOptions::default()).unwrap();
        assert_eq!(parsed.rows, 10);
        let people: Vec<(&str, u64)> = parsed.people.iter().map(|p| (p.recipient.as_str(), p.line)).collect();
        assert_eq!(people, vec![("u1", 1), ("u2", 6), ("u3", 10)]);
        let u1 = bodies(&parsed, 0);
        assert_eq!(u1[0]["email"], "new@example.org");
        assert_eq!((u1[0]["timezone"].as_str(), u1[0]["locale"].as_str()), (Some("Europe/Paris"), Some("fr-FR")));
        assert_eq!(
            u1[1],
            json!({"type": "set_consent", "recipient": "u1", "channel": "email", "granted": false,
                                   "source": "pinpoint", "at": "2026-01-01T00:00:00.000Z"})
        );
        assert_eq!(u1[2]["token"], "fcm-token-1");
        assert_eq!((u1[2]["platform"].as_str(), u1[2]["device_id"].as_str()), (Some("fcm"), Some("e3")));
        assert_eq!(u1.len(), 3, "the opted-out and inactive devices are not registered, push stays allowed: {u1:?}");
        let u2 = bodies(&parsed, 1);
        assert_eq!(u2[0]["attributes"], json!({"FirstName": "Bo", "Tags": ["a", "b"]}));
        let codes: Vec<(u64, &str)> = parsed.refused.iter().map(|r| (r.line, r.code.as_str())).collect();
        assert_eq!(
            codes,
            vec![
                (1, "superseded"),
                (4, "opted_out"),
                (5, "inactive_endpoint"),
                (7, "unsupported_channel"),
                (8, "no_user_id"),
                (9, "malformed_json"),
                (10, "invalid_address"),
            ]
        );
        let report = serde_json::to_string(&parsed.refused).unwrap();
        assert!(!report.contains("example.org") && !report.contains("-token"), "{report}");
        assert!(!report.contains("5555550100"), "{report}");
    }

    #[test]
    fn push_consent_is_withdrawn_when_every_device_opted_out_and_none_grants_on_request() {
        let lines = [
            endpoint("e1", "u1", "GCM", "t1", json!({"OptOut": "ALL"})),
            endpoint("e2", "u1", "APNS", "t2", json!({"OptOut": "ALL", "EffectiveDate": "2026-02-01T00:00:00Z"})),
            endpoint("e3", "u2", "EMAIL", "a@example.org", json!({})),
        ];
        let parsed = parse_export(lines.join("\n").as_bytes(), &ImportOptions::default()).unwrap();
        let u1 = bodies(&parsed, 0);
        assert_eq!((u1[1]["channel"].as_str(), &u1[1]["granted"]), (Some("push"), &json!(false)));
        assert_eq!(u1[1]["at"], "2026-02-01T00:00:00.000Z", "the newest device's time");
        assert_eq!(bodies(&parsed, 1).len(), 1, "OptOut NONE is no opt-in by default");
        let grants = ImportOptions { opt_out_none_grants: true, ..ImportOptions::default() };
        let parsed = parse_export(lines.join("\n").as_bytes(), &grants).unwrap();
        assert_eq!(bodies(&parsed, 1)[1]["granted"], true);
    }
}
