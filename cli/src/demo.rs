//! `make demo`: a whole run on a local endpoint, with a report of what happened
//! to each sample request.

use crate::local::Local;
use anyhow::Context as _;
use chrono::{TimeDelta, Timelike, Utc};
use herald::aws::dynamodb::{DynamoLedger, DynamoRecipients};
use herald::domain::{IdempotencyKey, MessageId, RecipientId};
use herald::ports::{Ledger, RecipientStore};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::time::Duration;

mod events;
mod pages;

/// One sample request and what the demo expects of it: `expect` in words, `want` as the
/// report's columns must read (checked: `make demo` fails when a row differs).
struct Sample {
    label: &'static str,
    expect: &'static str,
    want: Want,
    body: String,
}

/// A report row's expected columns, written `"<status>[|<status>...] <channel> <reason> [<words>]"`
/// (`-` for none; the reason is the column's first word): `"sent|delivered email -"`,
/// `"suppressed - opted_out"`, `"delivered email - push failed first"` (the reason and
/// provider columns must contain the words).
#[derive(Debug, Clone, Copy)]
struct Want(&'static str);

impl Want {
    /// Whether a row (status, channel, reason, note) is as wanted.
    fn matches(&self, row: &(String, String, String, String)) -> bool {
        let mut parts = self.0.splitn(4, ' ');
        let (Some(statuses), Some(channel), Some(reason)) = (parts.next(), parts.next(), parts.next()) else {
            return false;
        };
        let note = parts.next();
        statuses.split('|').any(|s| s == row.0)
            && channel == row.1
            && row.2.split(' ').next() == Some(reason)
            && note.is_none_or(|n| format!("{} {}", row.2, row.3).contains(n))
    }
}

fn notify(label: &'static str, expect: &'static str, want: &'static str, body: Value) -> Sample {
    Sample { label, expect, want: Want(want), body: body.to_string() }
}

fn setup_commands() -> Vec<String> {
    let now = Utc::now();
    let hhmm = |t: chrono::DateTime<Utc>| format!("{:02}:{:02}", t.hour(), t.minute());
    [
        json!({"type": "upsert_recipient", "recipient": "user-ana", "email": "ana@example.org", "phone": "+15555550100",
               "timezone": "Europe/Paris", "locale": "fr-FR"}),
        json!({"type": "register_push_token", "recipient": "user-ana", "platform": "fcm", "token": "fcm-token-ana-1"}),
        json!({"type": "upsert_recipient", "recipient": "user-bob", "email": "bob@example.org", "locale": "en-US"}),
        json!({"type": "upsert_recipient", "recipient": "user-carol", "phone": "+15555550101"}),
        json!({"type": "upsert_recipient", "recipient": "user-dan", "email": "dan@example.org"}),
        json!({"type": "set_consent", "recipient": "user-dan", "channel": "email", "topic": "news", "granted": false,
               "source": "preference-center"}),
        json!({"type": "upsert_recipient", "recipient": "user-erin", "email": "erin@example.org"}),
        json!({"type": "set_consent", "recipient": "user-erin", "channel": "email", "granted": true, "source": "signup-form"}),
        // Quiet hours around "now", in UTC, so the demo always lands inside them.
        json!({"type": "upsert_recipient", "recipient": "user-finn", "email": "finn@example.org", "timezone": "UTC",
               "quiet_hours": {"start": hhmm(now - TimeDelta::hours(1)), "end": hhmm(now + TimeDelta::hours(1))}}),
        json!({"type": "set_consent", "recipient": "user-finn", "channel": "email", "granted": true, "source": "signup-form"}),
        json!({"type": "upsert_recipient", "recipient": "user-gus", "email": "bounce@simulator.amazonses.com"}),
        json!({"type": "upsert_recipient", "recipient": "user-hal", "email": "hal@example.org"}),
        json!({"type": "upsert_recipient", "recipient": "user-kim", "email": "kim@example.org"}),
        json!({"type": "set_consent", "recipient": "user-kim", "channel": "email", "granted": true, "source": "signup-form"}),
        json!({"type": "upsert_recipient", "recipient": "user-lea", "email": "lea@example.org"}),
        json!({"type": "set_consent", "recipient": "user-lea", "channel": "email", "granted": true, "source": "signup-form"}),
        json!({"type": "register_push_token", "recipient": "user-hal", "platform": "apns", "token": "apns-token-hal-stale"}),
        json!({"type": "upsert_recipient", "recipient": "user-ivy", "email": "ivy@example.org"}),
        json!({"type": "register_push_token", "recipient": "user-ivy", "platform": "fcm", "token": "fcm-token-ivy-gone"}),
    ]
    .iter()
    .map(Value::to_string)
    .collect()
}

fn shipped(key: &str, who: &str, order: &str) -> Value {
    json!({"idempotency_key": key, "recipient": who, "template": "order_shipped", "kind": "transactional",
           "data": {"order_id": order, "eta": "mardi"}, "topic": "order_updates"})
}

fn digest(key: &str, who: &str, campaign: &str) -> Value {
    json!({"idempotency_key": key, "recipient": who, "template": "weekly_digest", "kind": "marketing",
           "topic": "news", "campaign": campaign, "data": {"headline": "Five new arrivals"}})
}

fn notifications() -> Vec<Sample> {
    vec![
        notify(
            "ana: order shipped (push, in French)",
            "sent on push",
            "sent push -",
            shipped("order-1001-shipped", "user-ana", "1001"),
        ),
        notify(
            "ana: the same request again",
            "duplicate, not sent twice",
            "duplicate - seen 1 more time(s)",
            shipped("order-1001-shipped", "user-ana", "1001"),
        ),
        notify(
            "bob: order shipped (no device)",
            "sent on email",
            "sent|delivered email -",
            shipped("order-1002-shipped", "user-bob", "1002"),
        ),
        notify(
            "carol: security code",
            "sent on sms",
            "sent sms -",
            json!({"idempotency_key": "code-carol-1", "recipient": "user-carol", "template": "security_code",
                   "kind": "transactional", "data": {"code": "482913"}}),
        ),
        notify(
            "dan: digest (opted out of news)",
            "suppressed: opted_out",
            "suppressed - opted_out",
            digest("digest-dan-48", "user-dan", "digest-48"),
        ),
        notify(
            "erin: digest (opted in)",
            "sent on email",
            "sent|delivered email -",
            digest("digest-erin-48", "user-erin", "digest-48"),
        ),
        notify(
            "finn: digest during quiet hours",
            "deferred: quiet_hours_deferred",
            "deferred - quiet_hours_deferred",
            digest("digest-finn-48", "user-finn", "digest-48"),
        ),
        notify(
            "gus: order shipped (address bounces)",
            "bounced after SES reports it",
            "bounced email suppressed_bounce",
            shipped("order-1003-shipped", "user-gus", "1003"),
        ),
        notify(
            "hal: order shipped (stale push token)",
            "push fails, falls back to email",
            "sent|delivered email - push failed first",
            shipped("order-1004-shipped", "user-hal", "1004"),
        ),
        notify(
            "ivy: order shipped (app uninstalled)",
            "push fails late, falls to email",
            "sent|delivered email - push failed first",
            shipped("order-1006-shipped", "user-ivy", "1006"),
        ),
        notify(
            "kim: spring sale (20% holdout)",
            "suppressed: holdout",
            "suppressed - holdout",
            digest("spring-kim", "user-kim", "spring-sale"),
        ),
        notify(
            "lea: spring sale",
            "sent on email, variant b",
            "sent|delivered email - variant b",
            digest("spring-lea", "user-lea", "spring-sale"),
        ),
        notify(
            "an unknown template",
            "rejected: unknown_template",
            "rejected - unknown_template",
            json!({"idempotency_key": "welcome-zoe", "recipient": "user-bob", "template": "welcome_v9", "kind": "transactional"}),
        ),
        notify(
            "an unknown recipient",
            "rejected: unknown_recipient",
            "rejected - unknown_recipient",
            json!({"idempotency_key": "order-9-zoe", "recipient": "user-zoe", "template": "order_shipped", "kind": "transactional",
                   "data": {"order_id": "9"}}),
        ),
        Sample {
            label: "malformed JSON",
            expect: "rejected: malformed_json",
            want: Want("rejected - malformed_json"),
            body: r#"{"idempotency_key": "broken", "#.into(),
        },
        notify(
            "a request without a template",
            "rejected: invalid_field",
            "rejected - invalid_field",
            json!({"idempotency_key": "no-template", "recipient": "user-bob", "kind": "transactional"}),
        ),
    ]
}

async fn publish(local: &Local, body: &str) -> anyhow::Result<String> {
    let sqs = aws_sdk_sqs::Client::new(&local.sdk);
    let url = &local.stack.queue("IngestQueue")?.url;
    let out = sqs.send_message().queue_url(url).message_body(body).send().await?;
    out.message_id.context("no SQS message id")
}

/// Plays SES: publishes the events SES would send for each email sent, in the
/// documented format (the fixtures under tests/fixtures/ses/), to the SES events topic.
/// (moto keeps no message tags, so the email is found by its recipient's address: the
/// latest one sent there.)
pub async fn simulate_ses_events(local: &Local, ledger: &DynamoLedger, keys: &[&str]) -> anyhow::Result<usize> {
    let sns = aws_sdk_sns::Client::new(&local.sdk);
    let topic = local.stack.topics.get("SesEventsTopic").context("no SesEventsTopic")?;
    let table = local.stack.tables.get("RecipientsTable").context("no RecipientsTable")?;
    let recipients = DynamoRecipients::new(aws_sdk_dynamodb::Client::new(&local.sdk), table);
    let sent_mail = local.moto.data().await?;
    let messages = sent_mail["ses"]["Message"].as_array().cloned().unwrap_or_default();
    let mut published = 0;
    for key in keys {
        let id = MessageId::for_key(&IdempotencyKey::new(*key)?);
        let Some(entry) = ledger.get(&id).await?.filter(|e| e.channel.as_deref() == Some("email")) else { continue };
        let Some(address) = recipients.get(&RecipientId::new(entry.recipient)?).await?.and_then(|r| r.email) else {
            continue;
        };
        let to = address.as_str();
        let Some(mail) = messages.iter().rev().find(|m| m["destinations"]["ToAddresses"][0] == to) else { continue };
        let provider_id = mail["id"].as_str().context("an SES message without an id")?;
        let fixture = if to.starts_with("bounce@simulator") {
            include_str!("../../tests/fixtures/ses/bounce-permanent.json")
        } else {
            include_str!("../../tests/fixtures/ses/delivery.json")
        };
        let envelope: Value = serde_json::from_str(
            &fixture
                .replace("__MESSAGE_ID__", id.as_str())
                .replace("__SES_MESSAGE_ID__", provider_id)
                .replace("__EMAIL__", to),
        )?;
        let message = envelope["Message"].as_str().context("fixture Message")?;
        sns.publish().topic_arn(topic).message(message).subject("Amazon SES Email Event Notification").send().await?;
        published += 1;
    }
    Ok(published)
}

/// What `make demo` prints, and how many of its rows differ from what they should be.
pub struct Outcome {
    pub report: String,
    pub differences: usize,
}

pub async fn run(local: &Local) -> anyhow::Result<Outcome> {
    let idle = Duration::from_secs(90);
    let ledger = DynamoLedger::new(
        aws_sdk_dynamodb::Client::new(&local.sdk),
        local.stack.tables.get("LedgerTable").context("LedgerTable")?,
    );

    let events = events::sink(local).await?;
    let journey_version = shorten_onboarding(local).await?;
    eprintln!("herald demo: recipients, consents and devices");
    for body in setup_commands() {
        publish(local, &body).await?;
    }
    local.stack.wait_idle(&local.sdk, idle).await?;
    // The platform invalidates hal's token (an app uninstall): SNS disables the endpoint.
    disable_endpoints_of(local, "apns-token-hal-stale").await?;

    eprintln!("herald demo: notifications");
    let samples = notifications();
    let mut sent_ids = Vec::with_capacity(samples.len());
    for s in &samples {
        sent_ids.push(publish(local, &s.body).await?);
    }
    local.stack.wait_idle(&local.sdk, idle).await?;

    eprintln!("herald demo: FCM refuses ivy's token after SNS took the push");
    refuse_push_late(local, &ledger, "order-1006-shipped", "fcm-token-ivy-gone").await?;
    local.stack.wait_idle(&local.sdk, idle).await?;

    eprintln!("herald demo: SES reports deliveries and a bounce");
    let keys: Vec<&str> =
        ["order-1002-shipped", "digest-erin-48", "order-1003-shipped", "order-1004-shipped", "order-1006-shipped"]
            .into();
    simulate_ses_events(local, &ledger, &keys).await?;
    local.stack.wait_idle(&local.sdk, idle).await?;

    eprintln!("herald demo: follow-ups");
    let after = [
        notify(
            "gus: another order, after the bounce",
            "suppressed: suppressed_bounce",
            "suppressed - suppressed_bounce",
            json!({"idempotency_key": "order-1005-shipped", "recipient": "user-gus", "template": "order_shipped",
                   "kind": "transactional", "channels": ["email"], "data": {"order_id": "1005"}}),
        ),
        notify(
            "lea: the spring sale again",
            "suppressed: cooldown",
            "suppressed - cooldown",
            digest("spring-lea-2", "user-lea", "spring-sale"),
        ),
        // After her first digest went out: the same hour, another campaign.
        notify(
            "erin: a second digest this hour",
            "suppressed: cap_reached",
            "suppressed - cap_reached",
            digest("digest-erin-48b", "user-erin", "digest-48b"),
        ),
    ];
    for s in &after {
        sent_ids.push(publish(local, &s.body).await?);
    }
    local.stack.wait_idle(&local.sdk, idle).await?;

    let mut all = samples;
    all.extend(after);
    let (mut report, mut differences) = report(local, &ledger, &all, &sent_ids).await?;
    report.push_str(&broadcast(local, &ledger).await?);
    for section in [
        digest_section(local, &ledger).await?,
        journey_section(local, &ledger, journey_version).await?,
        pages::preference_section(local, &ledger).await?,
        pages::inbox_section(local, &ledger).await?,
        events::section(local, &events).await?,
    ] {
        report.push_str(&section.0);
        differences += section.1;
    }
    Ok(Outcome { report, differences })
}

/// Shoppers for the broadcast: who they are decides whether the `spring_shoppers` segment
/// (segments/spring_shoppers.toml) takes them.
fn shoppers() -> Vec<Value> {
    let recent = (Utc::now() - TimeDelta::days(3)).to_rfc3339();
    let shopper = |n: u32, locale: &str, attributes: Value| {
        json!({"type": "upsert_recipient", "recipient": format!("shopper-{n:02}"), "email": format!("shopper{n:02}@example.org"),
               "locale": locale, "attributes": attributes})
    };
    let fan = |name: &str, interest: &str| json!({"first_name": name, "lifetime_value": 80, "interests": [interest], "plan": "member"});
    let mut people = vec![
        shopper(1, "en-GB", fan("Amy", "shoes")),
        shopper(2, "fr-FR", fan("Bruno", "bags")),
        shopper(3, "en-US", fan("Cleo", "shoes")),
        shopper(4, "en", fan("Dev", "bags")),
        shopper(5, "fr", fan("Elsa", "shoes")),
        shopper(6, "en", fan("Femi", "shoes")),
        shopper(7, "en", fan("Gil", "bags")),
        shopper(8, "en", fan("Hana", "shoes")),
        // Left out by the filter: staff, never spent, into hats.
        shopper(9, "en", json!({"lifetime_value": 500, "interests": ["shoes"], "plan": "staff"})),
        shopper(13, "en", json!({"lifetime_value": 0, "interests": ["shoes"]})),
        shopper(14, "en", json!({"lifetime_value": 60, "interests": ["hats"]})),
        // Excluded: a recent buyer.
        shopper(10, "en", json!({"lifetime_value": 60, "interests": ["bags"], "last_purchase_at": recent})),
        // In the filter, but never opted in.
        shopper(11, "en", fan("Kai", "shoes")),
        // In the filter, opted in, but no email and no device.
        json!({"type": "upsert_recipient", "recipient": "shopper-12", "phone": "+15555550112", "locale": "en",
               "attributes": {"lifetime_value": 30, "interests": ["bags"]}}),
    ];
    for n in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14] {
        people.push(json!({"type": "set_consent", "recipient": format!("shopper-{n:02}"), "channel": "email",
                           "topic": "news", "granted": true, "source": "signup-form"}));
    }
    people
}

/// A broadcast of the `spring-launch` campaign to the `spring_shoppers` segment, a few
/// purchases, and its status and funnel as `herald broadcast status` and `herald funnel`
/// print them.
async fn broadcast(local: &Local, ledger: &DynamoLedger) -> anyhow::Result<String> {
    let idle = Duration::from_secs(90);
    eprintln!("herald demo: a broadcast to the spring_shoppers segment");
    for body in shoppers() {
        publish(local, &body.to_string()).await?;
    }
    local.stack.wait_idle(&local.sdk, idle).await?;
    let command = json!({"type": "broadcast", "campaign": "spring-launch", "segment": "spring_shoppers",
                         "template": "weekly_digest", "rate_per_second": 20,
                         "data": {"headline": "The spring collection is in"}});
    publish(local, &command.to_string()).await?;
    local.stack.wait_idle(&local.sdk, idle).await?;
    // Purchases within the week: two of the shoppers the broadcast reached, one it held out,
    // and one it never sent anything (no message: nothing is attributed).
    let entries = ledger.campaign_entries("spring-launch").await?;
    let reached = entries.iter().filter(|e| e.reason.is_none()).map(|e| e.recipient.clone()).take(2);
    let held = entries.iter().filter(|e| e.reason.as_deref() == Some("holdout")).map(|e| e.recipient.clone()).take(1);
    for (n, who) in reached.chain(held).chain(["shopper-09".to_owned()]).enumerate() {
        let track = json!({"type": "track", "idempotency_key": format!("order-s{n}"), "recipient": who,
                           "event": "purchase", "at": Utc::now().to_rfc3339(), "value": 49.5});
        publish(local, &track.to_string()).await?;
    }
    local.stack.wait_idle(&local.sdk, idle).await?;

    let status = crate::broadcast::status(ledger, "spring-launch").await?.context("the broadcast was not recorded")?;
    let templates = local.stack.tables.get("TemplatesTable").context("TemplatesTable")?;
    let ledger_table = local.stack.tables.get("LedgerTable").context("LedgerTable")?;
    let global = herald::domain::campaign::GlobalControl::new(0.0).map_err(anyhow::Error::msg)?;
    let funnel = crate::funnel::report(&local.sdk, ledger_table, Some(templates), "spring-launch", global).await?;
    Ok(format!(
        "\n\nA broadcast: campaign spring-launch to segment spring_shoppers (14 shoppers, 8 in the audience)\n\
         $ herald broadcast status spring-launch\n{status}\n\n$ herald funnel spring-launch\n{funnel}\n"
    ))
}

/// A message the demo did not publish itself (a digest's, a journey step's), by its key.
struct Derived {
    label: &'static str,
    expect: &'static str,
    want: Want,
    key: String,
}

/// The ledger's row for a key: (status, channel, reason, provider id), `missing` when none.
async fn ledger_row(ledger: &DynamoLedger, key: &str) -> anyhow::Result<(String, String, String, String)> {
    let id = MessageId::for_key(&IdempotencyKey::new(key)?);
    let dash = || "-".to_owned();
    Ok(match ledger.get(&id).await? {
        Some(e) => (
            e.status.to_string(),
            e.channel.unwrap_or_else(dash),
            e.reason.unwrap_or_else(dash),
            e.provider_id.map(|p| shorten(&p, 24)).unwrap_or_else(dash),
        ),
        None => ("missing".to_owned(), dash(), dash(), dash()),
    })
}

/// Rows of derived messages, checked like the samples'; and how many differ.
async fn derived_rows(ledger: &DynamoLedger, rows: &[Derived]) -> anyhow::Result<(String, usize)> {
    let mut out = String::new();
    let mut differ = 0;
    writeln!(
        out,
        "{:<40} {:<34} {:<7} {:<11} {:<8} {:<22} provider id",
        "message", "expected", "as", "status", "channel", "reason"
    )?;
    writeln!(out, "{}", "-".repeat(158))?;
    for r in rows {
        let row = ledger_row(ledger, &r.key).await?;
        let verdict = if r.want.matches(&row) {
            "ok"
        } else {
            differ += 1;
            "DIFFERS"
        };
        writeln!(
            out,
            "{:<40} {:<34} {:<7} {:<11} {:<8} {:<22} {}",
            r.label, r.expect, verdict, row.0, row.1, row.2, row.3
        )?;
    }
    Ok((out, differ))
}

/// Four comments on mia's post within a 5-second window (and one of them published twice)
/// become one email, `new_comments` (templates/new_comments.toml), through eligibility
/// like any notification.
async fn digest_section(local: &Local, ledger: &DynamoLedger) -> anyhow::Result<(String, usize)> {
    let idle = Duration::from_secs(90);
    eprintln!("herald demo: a digest of comments");
    publish(
        local,
        &json!({"type": "upsert_recipient", "recipient": "user-mia", "email": "mia@example.org"}).to_string(),
    )
    .await?;
    local.stack.wait_idle(&local.sdk, idle).await?;
    let authors = ["Bo", "Cy", "Di", "Ed"];
    let comment = |n: usize| {
        json!({"idempotency_key": format!("comment-{n}-on-post-7"), "recipient": "user-mia", "template": "new_comments",
               "kind": "transactional", "channels": ["email"],
               "data": {"post": "Our spring garden", "author": authors[n], "excerpt": "Lovely tulips!"},
               "digest": {"key": "post-7", "window": "5s"}})
    };
    for n in 0..authors.len() {
        publish(local, &comment(n).to_string()).await?;
    }
    publish(local, &comment(1).to_string()).await?; // a producer's retry
    local.stack.wait_idle(&local.sdk, idle).await?;

    let recipient = RecipientId::new("user-mia")?;
    let template = herald::domain::TemplateName::new("new_comments").map_err(anyhow::Error::msg)?;
    let digest_key = herald::domain::digest::DigestId::of(&recipient, &template, "post-7").message_key(1);
    let mut rows: Vec<Derived> = (0..authors.len())
        .map(|n| Derived {
            label: [
                "mia: comment 1 (digest post-7)",
                "mia: comment 2 (sent twice)",
                "mia: comment 3",
                "mia: comment 4",
            ][n],
            expect: "digested, not sent alone",
            want: Want("digested - -"),
            key: format!("comment-{n}-on-post-7"),
        })
        .collect();
    rows.push(Derived {
        label: "mia: the digest of post-7",
        expect: "one email: 4 new comments",
        want: Want("sent|delivered email -"),
        key: digest_key,
    });
    let (table, mut differ) = derived_rows(ledger, &rows).await?;
    let data = local.moto.data().await?;
    let subject = data["ses"]["Message"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["destinations"]["ToAddresses"][0] == "mia@example.org")
        .map(|m| m["subject"].as_str().unwrap_or_default().to_owned())
        .collect::<Vec<_>>();
    let subject_ok = subject.len() == 1 && subject[0].starts_with("4 new comments");
    if !subject_ok {
        differ += 1;
    }
    Ok((
        format!(
            "\n\nA digest: four comments on mia's post within 5 seconds, one published twice \
             (\"digest\": {{\"key\": \"post-7\", \"window\": \"5s\"}})\n{table}\
             mia's inbox: {} email(s), subject {:?} {}\n",
            subject.len(),
            subject.first().map(String::as_str).unwrap_or("-"),
            if subject_ok { "ok" } else { "DIFFERS (expected one email, \"4 new comments…\")" }
        ),
        differ,
    ))
}

/// The `onboarding` journey (journeys/onboarding.toml), its 1-day window shortened to 20
/// seconds: three people sign up; nia opens the welcome push, pia buys before the branch,
/// omar does neither and gets the follow-up email.
async fn journey_section(local: &Local, ledger: &DynamoLedger, version: u32) -> anyhow::Result<(String, usize)> {
    use herald::aws::dynamodb::{DynamoJourneys, DynamoTemplates};
    use herald::domain::journey::JourneyName;
    use herald::ports::Transition;
    let idle = Duration::from_secs(120);
    eprintln!("herald demo: a journey (onboarding, its window shortened to 20 s)");
    let dynamodb = aws_sdk_dynamodb::Client::new(&local.sdk);
    let templates_table = local.stack.tables.get("TemplatesTable").context("TemplatesTable")?;
    let templates = DynamoTemplates::new(dynamodb.clone(), templates_table, Duration::ZERO);

    let people = ["nia", "omar", "pia"];
    for who in people {
        let id = format!("user-{who}");
        for body in [
            json!({"type": "upsert_recipient", "recipient": id, "email": format!("{who}@example.org")}),
            json!({"type": "register_push_token", "recipient": id, "platform": "fcm", "token": format!("fcm-token-{who}")}),
            json!({"type": "set_consent", "recipient": id, "channel": "push", "topic": "onboarding", "granted": true, "source": "signup-form"}),
            json!({"type": "set_consent", "recipient": id, "channel": "email", "topic": "onboarding", "granted": true, "source": "signup-form"}),
        ] {
            publish(local, &body.to_string()).await?;
        }
    }
    local.stack.wait_idle(&local.sdk, Duration::from_secs(90)).await?;
    for who in people {
        let track = json!({"type": "track", "idempotency_key": format!("signup-{who}"), "recipient": format!("user-{who}"),
                           "event": "signed_up", "at": Utc::now().to_rfc3339()});
        publish(local, &track.to_string()).await?;
    }
    // Each gets the welcome push; then, within the 20 seconds, nia opens hers (the app
    // reports it; recorded as receipts record an open) and pia buys something.
    let welcome = |who: &str| format!("journey:onboarding:user-{who}:1:welcome");
    let nudge = |who: &str| format!("journey:onboarding:user-{who}:1:nudge");
    let started = std::time::Instant::now();
    loop {
        let mut sent = 0;
        for who in people {
            if ledger_row(ledger, &welcome(who)).await?.0 == "sent" {
                sent += 1;
            }
        }
        if sent == people.len() || started.elapsed() > Duration::from_secs(15) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let opened = MessageId::for_key(&IdempotencyKey::new(welcome("nia"))?);
    ledger.transition(&opened, Transition::new(herald::domain::ledger::Status::Opened, Utc::now())).await?;
    let purchase = json!({"type": "track", "idempotency_key": "order-pia-1", "recipient": "user-pia",
                          "event": "purchase", "at": Utc::now().to_rfc3339(), "value": 25});
    publish(local, &purchase.to_string()).await?;
    local.stack.wait_idle(&local.sdk, idle).await?;

    let rows = vec![
        Derived { label: "nia: welcome", expect: "sent on push", want: Want("opened push -"), key: welcome("nia") },
        Derived {
            label: "nia: nudge (she opened the push)",
            expect: "never sent",
            want: Want("missing - -"),
            key: nudge("nia"),
        },
        Derived { label: "omar: welcome", expect: "sent on push", want: Want("sent push -"), key: welcome("omar") },
        Derived {
            label: "omar: nudge (not opened in 20 s)",
            expect: "sent on email",
            want: Want("sent email -"),
            key: nudge("omar"),
        },
        Derived { label: "pia: welcome", expect: "sent on push", want: Want("sent push -"), key: welcome("pia") },
        Derived {
            label: "pia: nudge (she bought first)",
            expect: "never sent: exited on purchase",
            want: Want("missing - -"),
            key: nudge("pia"),
        },
    ];
    let (table, differ) = derived_rows(ledger, &rows).await?;
    let journeys_table = local.stack.tables.get("JourneysTable").context("JourneysTable")?;
    let status = crate::journeys::status(
        &DynamoJourneys::new(dynamodb, journeys_table),
        &templates,
        ledger,
        &JourneyName::new("onboarding").map_err(anyhow::Error::msg)?,
    )
    .await?;
    Ok((
        format!(
            "\n\nA journey: onboarding (journeys/onboarding.toml; the demo pushes it as version {} with its \
             1-day window shortened to 20 s); nia, omar and pia sign up (track signed_up)\n{table}\n\
             $ herald journey status onboarding\n{status}\n",
            version
        ),
        differ,
    ))
}

/// Pushes `onboarding` (journeys/onboarding.toml) again as its next version, with its
/// 1-day window shortened to 20 seconds so the demo sees both branches; before any
/// `track`, as ingest keeps the list of journeys a track may enter for a minute.
async fn shorten_onboarding(local: &Local) -> anyhow::Result<u32> {
    use herald::aws::dynamodb::DynamoTemplates;
    use herald::domain::journey::JourneyDoc;
    let dynamodb = aws_sdk_dynamodb::Client::new(&local.sdk);
    let templates_table = local.stack.tables.get("TemplatesTable").context("TemplatesTable")?;
    let templates = DynamoTemplates::new(dynamodb, templates_table, Duration::ZERO);
    let text = std::fs::read_to_string(crate::local::repo_root().join("journeys/onboarding.toml"))?;
    let mut doc: JourneyDoc = toml::from_str(&text)?;
    doc.version += 1;
    for step in &mut doc.steps {
        if let Some(branch) = step.branch.as_mut() {
            branch.within = Some("20s".to_owned());
        }
    }
    templates.put_journey(&doc, Utc::now()).await?;
    Ok(doc.version)
}

/// Plays SNS after the platform refused a token it had already taken a push for: a
/// `DeliveryFailure` (tests/fixtures/sns-push/delivery-failure.json) naming the endpoint
/// and SNS's message id, on the push events topic the platform application reports to.
async fn refuse_push_late(local: &Local, ledger: &DynamoLedger, key: &str, token: &str) -> anyhow::Result<()> {
    let id = MessageId::for_key(&IdempotencyKey::new(key)?);
    let Some(sns_id) = ledger.get(&id).await?.and_then(|e| e.provider_id) else { return Ok(()) };
    let data = local.moto.data().await?;
    let endpoints = data["sns"]["PlatformEndpoint"].as_array().cloned().unwrap_or_default();
    let Some(arn) = endpoints.iter().find(|ep| ep["token"] == token).and_then(|ep| ep["arn"].as_str()) else {
        return Ok(());
    };
    let envelope: Value = serde_json::from_str(
        &include_str!("../../tests/fixtures/sns-push/delivery-failure.json")
            .replace("__ENDPOINT_ARN__", arn)
            .replace("e3a5c7e9-1b3d-5f7a-9c1e-3b5d7f9a1c84", &sns_id),
    )?;
    let message = envelope["Message"].as_str().context("fixture Message")?;
    let topic = local.stack.topics.get("PushEventsTopic").context("no PushEventsTopic")?;
    aws_sdk_sns::Client::new(&local.sdk).publish().topic_arn(topic).message(message).send().await?;
    Ok(())
}

async fn disable_endpoints_of(local: &Local, token: &str) -> anyhow::Result<()> {
    let data = local.moto.data().await?;
    let sns = aws_sdk_sns::Client::new(&local.sdk);
    for ep in data["sns"]["PlatformEndpoint"].as_array().into_iter().flatten() {
        if ep["token"] == token {
            let arn = ep["arn"].as_str().unwrap_or_default();
            sns.set_endpoint_attributes().endpoint_arn(arn).attributes("Enabled", "false").send().await?;
        }
    }
    Ok(())
}

/// The report of each sample, and how many rows differ from what was expected.
async fn report(
    local: &Local,
    ledger: &DynamoLedger,
    samples: &[Sample],
    sqs_ids: &[String],
) -> anyhow::Result<(String, usize)> {
    let mut out = String::new();
    let mut differ = 0;
    writeln!(
        out,
        "\n{:<40} {:<34} {:<7} {:<11} {:<8} {:<22} provider id",
        "request", "expected", "as", "status", "channel", "reason"
    )?;
    writeln!(out, "{}", "-".repeat(158))?;
    let mut seen = std::collections::HashSet::new();
    for (sample, sqs_id) in samples.iter().zip(sqs_ids) {
        let key = serde_json::from_str::<Value>(&sample.body)
            .ok()
            .and_then(|v| v["idempotency_key"].as_str().map(str::to_owned));
        let entry = match key.as_deref().map(IdempotencyKey::new) {
            Some(Ok(k)) => ledger.get(&MessageId::for_key(&k)).await?,
            _ => None,
        };
        let row = match (entry, ledger.rejection(sqs_id).await?) {
            (_, Some((code, detail))) => ("rejected".to_owned(), "-".to_owned(), code, shorten(&detail, 40)),
            (Some(e), None) if !seen.insert(e.id.clone()) => (
                "duplicate".to_owned(),
                "-".to_owned(),
                format!("seen {} more time(s)", e.duplicates),
                "not sent again".to_owned(),
            ),
            (Some(e), None) => {
                let path: Vec<String> = e
                    .history
                    .iter()
                    .filter(|h| h.status == "failed" && e.status.as_str() != "failed")
                    .map(|h| format!("{} failed first", h.channel.clone().unwrap_or_default()))
                    .collect();
                let reason = e.reason.clone().unwrap_or_else(|| "-".into());
                let path: Vec<String> =
                    path.into_iter().chain(e.variant.clone().map(|v| format!("variant {v}"))).collect();
                let provider = e.provider_id.clone().map(|p| shorten(&p, 24)).unwrap_or_else(|| "-".into());
                let note = if path.is_empty() { provider } else { format!("{provider} ({})", path.join(", ")) };
                (e.status.to_string(), e.channel.clone().unwrap_or_else(|| "-".into()), reason, note)
            }
            (None, None) => ("missing".to_owned(), "-".to_owned(), "-".to_owned(), "-".to_owned()),
        };
        let verdict = if sample.want.matches(&row) {
            "ok"
        } else {
            differ += 1;
            "DIFFERS"
        };
        writeln!(
            out,
            "{:<40} {:<34} {:<7} {:<11} {:<8} {:<22} {}",
            sample.label, sample.expect, verdict, row.0, row.1, row.2, row.3
        )?;
    }
    let data = local.moto.data().await?;
    let emails = data["ses"]["Message"].as_array().map_or(0, Vec::len);
    let sms = data["sns"]["SMS"].as_array().map_or(0, Vec::len);
    let pushes: usize = data["sns"]["PlatformEndpoint"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|ep| ep["messages"].as_object().map_or(0, |m| m.len()))
        .sum();
    writeln!(
        out,
        "\nWhat the providers received (moto /moto-api/data.json): {emails} email(s), {sms} SMS, {pushes} push(es)."
    )?;
    Ok((out, differ))
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max { s.to_owned() } else { format!("{}…", s.chars().take(max - 1).collect::<String>()) }
}

#[cfg(test)]
mod tests {
    use super::Want;

    fn row(cols: [&str; 4]) -> (String, String, String, String) {
        cols.map(str::to_owned).into()
    }

    #[test]
    fn a_row_matches_only_what_is_wanted() {
        let fell_back = row(["delivered", "email", "-", "0100-abc (push failed first)"]);
        assert!(Want("sent|delivered email - push failed first").matches(&fell_back));
        assert!(!Want("sent email -").matches(&fell_back), "another status");
        assert!(!Want("delivered push -").matches(&fell_back), "another channel");
        assert!(!Want("delivered email - variant b").matches(&fell_back), "words not there");
        let duplicate = row(["duplicate", "-", "seen 1 more time(s)", "not sent again"]);
        assert!(Want("duplicate - seen 1 more time(s)").matches(&duplicate));
        assert!(!Want("duplicate - seen 2 more time(s)").matches(&duplicate));
        assert!(Want("suppressed - opted_out").matches(&row(["suppressed", "-", "opted_out", "-"])));
        assert!(!Want("suppressed - opted_out").matches(&row(["suppressed", "-", "no_consent", "-"])));
        assert!(!Want("suppressed").matches(&row(["suppressed", "-", "-", "-"])), "a malformed want never matches");
    }
}
