//! What the producer sends: one recipient per notification, with contact points of
//! its own (an address, a number, a token that name the notification, so each
//! message a provider received is attributable), the notifications in five shapes,
//! and poison of seven kinds. Everything is derived from the seed.

use crate::rng::Rng;
use serde_json::{Value, json};

/// How a notification is meant to travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Transactional `order_shipped` on email only.
    Email,
    /// Transactional `security_code` on SMS only.
    Sms,
    /// Transactional `order_shipped` on push only (FCM or APNs).
    Push,
    /// Marketing `weekly_digest` on email, with consent, under the default frequency caps.
    Marketing,
    /// Transactional `order_shipped` in `mode: all` on push, email and SMS.
    All,
}

impl Shape {
    pub const ALL: [Shape; 5] = [Shape::Email, Shape::Sms, Shape::Push, Shape::Marketing, Shape::All];

    pub fn name(&self) -> &'static str {
        match self {
            Shape::Email => "email",
            Shape::Sms => "sms",
            Shape::Push => "push",
            Shape::Marketing => "marketing-email",
            Shape::All => "all-mode",
        }
    }

    /// The final ledger status and channel: emails get SES's delivery event played back
    /// (`delivered`); SMS and push stay `sent` (no receipts for them here). `mode: all`
    /// keeps the furthest any channel got.
    pub fn expected(&self) -> (&'static str, Option<&'static str>) {
        match self {
            Shape::Email | Shape::Marketing => ("delivered", Some("email")),
            Shape::Sms => ("sent", Some("sms")),
            Shape::Push => ("sent", Some("push")),
            Shape::All => ("delivered", None),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Person {
    pub id: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// (platform, token)
    pub token: Option<(&'static str, String)>,
    pub marketing_consent: bool,
}

#[derive(Debug, Clone)]
pub struct Note {
    pub key: String,
    pub shape: Shape,
    /// Index into [`Workload::people`].
    pub person: usize,
    pub body: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoisonKind {
    Malformed,
    WrongType,
    UnknownTemplate,
    UnknownRecipient,
    Oversized,
    UnknownType,
    /// Characters SQS will not carry (U+FFFF, escaped in the JSON the producer sends,
    /// so the producer's own message is fine; the job ingest forwards is not).
    SqsCharacters,
}

impl PoisonKind {
    pub const ALL: [PoisonKind; 7] = [
        PoisonKind::Malformed,
        PoisonKind::WrongType,
        PoisonKind::UnknownTemplate,
        PoisonKind::UnknownRecipient,
        PoisonKind::Oversized,
        PoisonKind::UnknownType,
        PoisonKind::SqsCharacters,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            PoisonKind::Malformed => "malformed",
            PoisonKind::WrongType => "wrong-type",
            PoisonKind::UnknownTemplate => "unknown-template",
            PoisonKind::UnknownRecipient => "unknown-recipient",
            PoisonKind::Oversized => "oversized",
            PoisonKind::UnknownType => "unknown-type",
            PoisonKind::SqsCharacters => "sqs-characters",
        }
    }

    /// The rejection reasons that are right for it (`None`: any recorded reason).
    pub fn reasons(&self) -> Option<&'static [&'static str]> {
        match self {
            PoisonKind::Malformed => Some(&["malformed_json"]),
            PoisonKind::WrongType => Some(&["invalid_field"]),
            PoisonKind::UnknownTemplate => Some(&["unknown_template"]),
            PoisonKind::UnknownRecipient => Some(&["unknown_recipient"]),
            PoisonKind::Oversized => Some(&["oversized"]),
            PoisonKind::UnknownType => Some(&["unknown_type"]),
            PoisonKind::SqsCharacters => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Poison {
    pub kind: PoisonKind,
    /// The idempotency key it carries, if any can be read from it.
    pub key: Option<String>,
    pub body: String,
}

pub struct Workload {
    pub seed: u64,
    pub people: Vec<Person>,
    pub notes: Vec<Note>,
    pub poison: Vec<Poison>,
    /// Values that must never reach a log line or the ledger: every contact point
    /// above, and the ones planted in poison (a number sent as an integer, an
    /// address in a field of the wrong type).
    pub personal: Vec<String>,
}

impl Workload {
    pub fn new(seed: u64, notifications: usize, poison: usize) -> Self {
        let s = seed % 1000;
        let mut people = Vec::with_capacity(notifications);
        let mut notes = Vec::with_capacity(notifications);
        let mut rng = Rng::new(seed);
        for i in 0..notifications {
            let shape = Shape::ALL[i % Shape::ALL.len()];
            let id = format!("chaos-{seed}-r{i:04}");
            let email = format!("r{i:04}.s{s}@chaos.example.org");
            // 12 digits after `+`, never ending in 99 (moto takes those as opted out).
            let phone = format!("+1555{s:03}{i:04}1");
            let token = if rng.below(2) == 0 {
                ("fcm", format!("fcm-chaos-s{s}-r{i:04}-{:016x}", rng.next_u64()))
            } else {
                ("apns", format!("{:016x}{:016x}{:016x}{:016x}", rng.next_u64(), rng.next_u64(), i, seed))
            };
            let person = match shape {
                Shape::Email => Person::new(id, Some(email), None, None, false),
                Shape::Sms => Person::new(id, None, Some(phone), None, false),
                Shape::Push => Person::new(id, None, None, Some(token), false),
                Shape::Marketing => Person::new(id, Some(email), None, None, true),
                Shape::All => Person::new(id, Some(email), Some(phone), Some(token), false),
            };
            let key = format!("chaos-{seed}-n{i:04}");
            let body = notify_body(&key, &person.id, shape, seed);
            people.push(person);
            notes.push(Note { key, shape, person: i, body });
        }
        let mut personal: Vec<String> = people
            .iter()
            .flat_map(|p| {
                let phone = p.phone.iter().flat_map(|n| [n.clone(), n.trim_start_matches('+').to_owned()]);
                p.email.iter().cloned().chain(phone).chain(p.token.iter().map(|(_, t)| t.clone()))
            })
            .collect();
        // Poison names a real recipient where it needs one: the first email-only person.
        let someone = people.first().map(|p| p.id.clone()).unwrap_or_else(|| format!("chaos-{seed}-r0000"));
        let mut bad = Vec::with_capacity(poison);
        for j in 0..poison {
            let kind = PoisonKind::ALL[j % PoisonKind::ALL.len()];
            let key = format!("chaos-{seed}-p{j:03}");
            let (body, planted) = poison_body(kind, &key, &someone, seed, j);
            personal.extend(planted);
            let key = match kind {
                PoisonKind::Malformed | PoisonKind::UnknownType => None,
                _ => Some(key),
            };
            bad.push(Poison { kind, key, body });
        }
        Self { seed, people, notes, poison: bad, personal }
    }

    /// Recipient commands: first every `upsert_recipient`, then consents and tokens.
    pub fn setup(&self) -> (Vec<String>, Vec<String>) {
        let upserts = self
            .people
            .iter()
            .map(|p| {
                let mut v =
                    json!({"type": "upsert_recipient", "recipient": p.id, "timezone": "UTC", "locale": "en-US"});
                if let Some(e) = &p.email {
                    v["email"] = json!(e);
                }
                if let Some(n) = &p.phone {
                    v["phone"] = json!(n);
                }
                v.to_string()
            })
            .collect();
        let mut rest = Vec::new();
        for p in &self.people {
            if p.marketing_consent {
                rest.push(
                    json!({"type": "set_consent", "recipient": p.id, "channel": "email", "granted": true,
                           "source": "signup-form"})
                    .to_string(),
                );
            }
            if let Some((platform, token)) = &p.token {
                rest.push(
                    json!({"type": "register_push_token", "recipient": p.id, "platform": platform, "token": token,
                           "device_id": format!("{}-phone", p.id)})
                    .to_string(),
                );
            }
        }
        (upserts, rest)
    }

    /// Every notification twice and every poison twice, shuffled: (body, what it is).
    pub fn messages(&self) -> Vec<(String, Sent)> {
        let mut out = Vec::with_capacity(2 * (self.notes.len() + self.poison.len()));
        for copy in 0..2 {
            out.extend(self.notes.iter().enumerate().map(|(i, n)| (n.body.clone(), Sent::Note { index: i, copy })));
            out.extend(self.poison.iter().enumerate().map(|(i, p)| (p.body.clone(), Sent::Poison { index: i, copy })));
        }
        Rng::new(self.seed ^ 0x0073_6875_6666_6c65).shuffle(&mut out);
        out
    }
}

/// What a producer message was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Note { index: usize, copy: u8 },
    Poison { index: usize, copy: u8 },
}

impl Person {
    fn new(
        id: String,
        email: Option<String>,
        phone: Option<String>,
        token: Option<(&'static str, String)>,
        marketing_consent: bool,
    ) -> Self {
        Self { id, email, phone, token, marketing_consent }
    }
}

fn notify_body(key: &str, recipient: &str, shape: Shape, seed: u64) -> String {
    let order = key.rsplit('-').next().unwrap_or(key);
    let v: Value = match shape {
        Shape::Email | Shape::Push => json!({
            "idempotency_key": key, "recipient": recipient, "template": "order_shipped", "kind": "transactional",
            "channels": [if shape == Shape::Email { "email" } else { "push" }],
            "data": {"order_id": order, "eta": "Tuesday"}, "topic": "order_updates"}),
        Shape::Sms => json!({
            "idempotency_key": key, "recipient": recipient, "template": "security_code", "kind": "transactional",
            "channels": ["sms"], "data": {"code": format!("{:06}", crate::rng::fnv(&[key.as_bytes()]) % 1_000_000)}}),
        Shape::Marketing => json!({
            "idempotency_key": key, "recipient": recipient, "template": "weekly_digest", "kind": "marketing",
            "topic": "news", "campaign": format!("chaos-{seed}-digest"), "channels": ["email"],
            "data": {"headline": "Five new arrivals"}}),
        Shape::All => json!({
            "idempotency_key": key, "recipient": recipient, "template": "order_shipped", "kind": "transactional",
            "mode": "all", "channels": ["push", "email", "sms"], "data": {"order_id": order}}),
    };
    v.to_string()
}

/// A poison body and the personal data planted in it.
fn poison_body(kind: PoisonKind, key: &str, someone: &str, seed: u64, j: usize) -> (String, Vec<String>) {
    let s = seed % 1000;
    match kind {
        PoisonKind::Malformed => (format!(r#"{{"idempotency_key": "{key}", "recipient": "{someone}", "template": "#), vec![]),
        PoisonKind::WrongType if j.is_multiple_of(2) => {
            // A number where a recipient id goes: serde quotes it in its error.
            let number = format!("1555{s:03}9{j:03}1");
            let body = format!(
                r#"{{"idempotency_key": "{key}", "recipient": {number}, "template": "order_shipped", "kind": "transactional"}}"#
            );
            (body, vec![number])
        }
        PoisonKind::WrongType => {
            // An address where a list goes.
            let address = format!("p{j:03}.s{s}@chaos.example.org");
            let body = json!({"idempotency_key": key, "recipient": someone, "template": "order_shipped",
                              "kind": "transactional", "channels": address})
            .to_string();
            (body, vec![address])
        }
        PoisonKind::UnknownTemplate => (
            json!({"idempotency_key": key, "recipient": someone, "template": "chaos_no_such_template",
                   "kind": "transactional", "channels": ["email"]})
            .to_string(),
            vec![],
        ),
        PoisonKind::UnknownRecipient => (
            json!({"idempotency_key": key, "recipient": format!("chaos-{seed}-ghost-{j:03}"), "template": "order_shipped",
                   "kind": "transactional", "channels": ["email"], "data": {"order_id": "ghost"}})
            .to_string(),
            vec![],
        ),
        PoisonKind::Oversized => (
            json!({"idempotency_key": key, "recipient": someone, "template": "order_shipped", "kind": "transactional",
                   "channels": ["email"], "data": {"order_id": "big", "eta": "x".repeat(70 * 1024)}})
            .to_string(),
            vec![],
        ),
        PoisonKind::UnknownType => {
            (json!({"type": "chaos_unknown_command", "recipient": someone}).to_string(), vec![])
        }
        PoisonKind::SqsCharacters => (
            // `\uffff` stays escaped in the text the producer sends.
            format!(
                r#"{{"idempotency_key": "{key}", "recipient": "{someone}", "template": "order_shipped", "kind": "transactional", "channels": ["email"], "data": {{"order_id": "\uffff"}}}}"#
            ),
            vec![],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald::contract::IngestMessage;

    #[test]
    fn every_notification_parses_and_every_poison_is_what_it_claims() {
        let w = Workload::new(7, 30, 14);
        for n in &w.notes {
            assert!(IngestMessage::parse(&n.body).is_ok(), "{}: {}", n.shape.name(), n.body);
        }
        for p in &w.poison {
            let parsed = IngestMessage::parse(&p.body);
            match p.kind {
                PoisonKind::UnknownTemplate | PoisonKind::UnknownRecipient | PoisonKind::SqsCharacters => {
                    assert!(parsed.is_ok(), "{} parses; it fails later", p.kind.name())
                }
                _ => {
                    let code = parsed.err().map(|r| r.code);
                    assert_eq!(code, p.kind.reasons().and_then(|r| r.first().copied()), "{}", p.kind.name());
                }
            }
        }
        let (upserts, rest) = w.setup();
        assert_eq!(upserts.len(), 30);
        assert!(upserts.iter().chain(&rest).all(|b| IngestMessage::parse(b).is_ok()));
    }

    #[test]
    fn messages_are_everything_twice_and_shuffled_by_the_seed() {
        let w = Workload::new(3, 20, 7);
        let m = w.messages();
        assert_eq!(m.len(), 2 * 27);
        assert_eq!(m.iter().filter(|(_, s)| matches!(s, Sent::Poison { .. })).count(), 14);
        let again: Vec<_> = Workload::new(3, 20, 7).messages().into_iter().map(|(_, s)| s).collect();
        assert_eq!(m.iter().map(|(_, s)| *s).collect::<Vec<_>>(), again);
        // Contact points are unique, so every provider message names one notification.
        let mut personal = w.personal.clone();
        personal.sort();
        let before = personal.len();
        personal.dedup();
        assert_eq!(before, personal.len());
    }
}
