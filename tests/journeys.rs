//! Journeys end to end on the local stack: a two-step journey (a push, then an email to
//! those who did not open it within a few seconds) reaches exactly the right people once
//! each, not one who bought in between nor one who unsubscribed; duplicated and
//! redelivered step jobs neither repeat nor skip a step (driving the function directly);
//! a definition changed mid-flight keeps people on the version they entered; bad
//! definitions are refused by `herald journeys check` and at push, with the reason.

use crate::support::*;
use chrono::{TimeDelta, Utc};
use herald::aws::dynamodb::{DynamoJourneys, DynamoSchedule, DynamoTemplates};
use herald::domain::journey::{JourneyDoc, JourneyName, RunStatus};
use herald::domain::ledger::Status;
use herald::domain::{IdempotencyKey, MessageId, RecipientId};
use herald::ports::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

fn templates(t: &TestStack) -> DynamoTemplates {
    DynamoTemplates::new(aws_sdk_dynamodb::Client::new(&t.sdk), t.table("TemplatesTable"), Duration::ZERO)
}

fn journeys(t: &TestStack) -> DynamoJourneys {
    DynamoJourneys::new(aws_sdk_dynamodb::Client::new(&t.sdk), t.table("JourneysTable"))
}

/// The repo's `welcome` and `welcome_nudge` templates, pushed to the stack's table.
async fn push_templates(t: &TestStack) {
    let store = templates(t);
    for tpl in herald_cli::templates::load_dir(&herald_cli::local::repo_root().join("templates")).unwrap() {
        if ["welcome", "welcome_nudge"].contains(&tpl.name().as_str()) {
            store.put(&tpl.doc, Utc::now()).await.unwrap();
        }
    }
}

/// The tests' journey: not the repo's `onboarding`, which the stack is provisioned with.
const NAME: &str = "welcome_series";

/// The onboarding journey (push `welcome`; if not opened within `within`, email
/// `welcome_nudge`; a purchase exits), as its file would say it.
fn onboarding(version: u32, within: &str) -> JourneyDoc {
    toml_doc(&format!(
        r#"
name = "{NAME}"
version = {version}
kind = "marketing"
topic = "onboarding"
[entry]
event = "registered"
[exit]
events = ["purchase"]
[[steps]]
id = "welcome"
send = {{ template = "welcome", channels = ["push"] }}
[[steps]]
id = "opened?"
branch = {{ on = "welcome", status = "opened", within = "{within}", yes = "end", no = "nudge" }}
[[steps]]
id = "nudge"
send = {{ template = "welcome_nudge", channels = ["email"] }}
"#
    ))
}

fn toml_doc(text: &str) -> JourneyDoc {
    toml::from_str(text).unwrap()
}

/// A person with an email, a push token and an opt-in to `onboarding` on both.
fn person_commands(who: &str, tag: &str) -> Vec<String> {
    let mut bodies = vec![
        json!({"type": "upsert_recipient", "recipient": who, "email": format!("{who}@example.org"), "timezone": "UTC"})
            .to_string(),
        json!({"type": "register_push_token", "recipient": who, "platform": "fcm", "token": format!("fcm-{tag}-{who}")})
            .to_string(),
    ];
    for channel in ["push", "email"] {
        bodies.push(
            json!({"type": "set_consent", "recipient": who, "channel": channel, "topic": "onboarding",
                   "granted": true, "source": "signup-form"})
            .to_string(),
        );
    }
    bodies
}

fn enter(who: &str, key: &str) -> String {
    json!({"type": "enter_journey", "idempotency_key": key, "recipient": who, "journey": NAME,
           "data": {"first_name": "Test"}})
    .to_string()
}

fn step_key(who: &str, run: u32, step: &str) -> String {
    format!("journey:{NAME}:{who}:{run}:{step}")
}

/// Waits until the message keyed `key` is in the ledger at `status` or past it.
async fn wait_for(t: &TestStack, key: &str, status: Status) {
    for _ in 0..200 {
        if t.entry(key).await.is_some_and(|e| e.status.rank() >= status.rank()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{key} never reached {status}: {:?}", t.entry(key).await);
}

async fn state(t: &TestStack, who: &str) -> Option<herald::domain::journey::RunState> {
    journeys(t).get(&JourneyName::new(NAME).unwrap(), &RecipientId::new(who).unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_follow_up_reaches_only_those_who_did_not_open_once_each_and_nobody_who_left() {
    let t = TestStack::new().await;
    let tag = t.tag.clone();
    push_templates(&t).await;
    templates(&t).put_journey(&onboarding(1, "8s"), Utc::now()).await.unwrap();
    let [opens, ignores, buys, leaves, tracked] =
        ["opens", "ignores", "buys", "leaves", "tracked"].map(|n| format!("{n}-{tag}"));
    let mut setup = Vec::new();
    for who in [&opens, &ignores, &buys, &leaves, &tracked] {
        setup.extend(person_commands(who, &tag));
    }
    t.publish(&setup).await;
    t.wait_idle().await;

    // Each enters twice under the same key (a producer's retry); one enters by its sign-up
    // event, then again by `enter_journey` while on it (refused: on it already).
    let signed_up = json!({"type": "track", "idempotency_key": format!("{tag}-signup"), "recipient": tracked,
                           "event": "registered", "at": Utc::now().to_rfc3339()})
    .to_string();
    let mut entries = vec![signed_up.clone(), signed_up];
    for who in [&opens, &ignores, &buys, &leaves] {
        entries.push(enter(who, &format!("{tag}-{who}")));
        entries.push(enter(who, &format!("{tag}-{who}")));
    }
    entries.push(enter(&tracked, &format!("{tag}-again")));
    t.publish(&entries).await;

    // The welcome push is sent to each; then, before the branch decides: one opens it, one
    // buys, one withdraws consent on both channels.
    for who in [&opens, &ignores, &buys, &leaves, &tracked] {
        wait_for(&t, &step_key(who, 1, "welcome"), Status::Sent).await;
    }
    let opened = MessageId::for_key(&IdempotencyKey::new(step_key(&opens, 1, "welcome")).unwrap());
    // What receipts records when the app reports the open.
    t.ledger().transition(&opened, Transition::new(Status::Opened, Utc::now())).await.unwrap();
    let mut mid = vec![
        json!({"type": "track", "idempotency_key": format!("{tag}-order"), "recipient": buys,
                              "event": "purchase", "at": Utc::now().to_rfc3339(), "value": 25})
        .to_string(),
    ];
    for channel in ["push", "email"] {
        mid.push(
            json!({"type": "set_consent", "recipient": leaves, "channel": channel, "topic": "onboarding",
                   "granted": false, "source": "preference-center"})
            .to_string(),
        );
    }
    t.publish(&mid).await;
    t.wait_idle().await;

    let data = provider_data().await;
    for who in [&opens, &ignores, &buys, &leaves, &tracked] {
        let pushes = pushes_to(&data, &format!("fcm-{tag}-{who}"));
        assert_eq!(pushes.len(), 1, "{who}: one welcome push, however often they entered: {pushes:?}");
        assert!(pushes[0].as_str().unwrap().contains("Welcome aboard"), "{pushes:?}");
    }
    for (who, nudged) in [(&opens, false), (&ignores, true), (&buys, false), (&leaves, false), (&tracked, true)] {
        let emails = emails_to(&data, &format!("{who}@example.org"));
        assert_eq!(emails.len(), usize::from(nudged), "{who}: {emails:?}");
        if nudged {
            assert_eq!(emails[0]["subject"], "Your account is waiting");
        }
        assert_eq!(t.entry(&step_key(who, 1, "nudge")).await.is_some(), nudged, "{who}: a nudge in the ledger");
    }
    for (who, status, reason) in [
        (&opens, RunStatus::Completed, None),
        (&ignores, RunStatus::Completed, None),
        (&tracked, RunStatus::Completed, None),
        (&buys, RunStatus::Exited, Some("event:purchase")),
        (&leaves, RunStatus::Exited, Some("unsubscribed")),
    ] {
        let s = state(&t, who).await.unwrap();
        assert_eq!(
            (s.version, s.run, s.status, s.exit_reason.as_deref(), s.step),
            (1, 1, status, reason, None),
            "{who}"
        );
    }

    // `herald journey status`.
    let report =
        herald_cli::journeys::status(&journeys(&t), &templates(&t), &t.ledger(), &JourneyName::new(NAME).unwrap())
            .await
            .unwrap();
    assert_eq!((report.completed, report.latest), (3, Some(1)));
    assert_eq!(report.exited.get("event:purchase"), Some(&1));
    assert_eq!(report.exited.get("unsubscribed"), Some(&1));
    assert!(report.at_step.iter().all(|(_, n)| *n == 0), "{report}");
    let welcome = report.funnel.iter().find(|f| f.step == "welcome").unwrap();
    assert_eq!((welcome.messages, welcome.opened), (5, 1), "{report}");
    let nudge = report.funnel.iter().find(|f| f.step == "nudge").unwrap();
    assert_eq!(nudge.messages, 2, "{report}");
    let text = report.to_string();
    assert!(text.contains("exited: 2 (event:purchase: 1, unsubscribed: 1)"), "{text}");

    // Erasure forgets the person's place.
    t.publish(&[json!({"type": "erase_recipient", "recipient": ignores}).to_string()]).await;
    t.wait_idle().await;
    assert!(state(&t, &ignores).await.is_none(), "erased");
    assert!(state(&t, &opens).await.is_some());
    t.stop().await;
}

/// Drives the journeys function by hand, so each copy of a job is delivered exactly when
/// the test says: two copies at once, a redelivery of the copy that moved, a crash between
/// the move and its hand-off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_and_redelivered_jobs_neither_repeat_nor_skip_a_step() {
    let t = TestStack::without_functions().await;
    let tag = t.tag.clone();
    push_templates(&t).await;
    // A day to open: the branch's job waits in the schedule table.
    templates(&t).put_journey(&onboarding(1, "1d"), Utc::now()).await.unwrap();
    let who = format!("dup-{tag}");
    let ingest = ingest::aws::deps(&t.sdk, &ingest::Config::from_lookup(&t.lookup("ingest")).unwrap());
    let mut setup = person_commands(&who, &tag);
    setup.retain(|b| !b.contains("register_push_token"));
    setup.push(enter(&who, &format!("{tag}-enter")));
    let response = ingest::handler(&ingest, sqs_event(&setup)).await.unwrap();
    assert!(response.batch_item_failures.is_empty());

    let first = receive(&t, "JourneyQueue").await.expect("the first step's job");
    let body = first["body"].as_str().unwrap().to_owned();
    let job: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (job["step"].as_str(), job["seq"].as_u64(), job["version"].as_u64()),
        (Some("welcome"), Some(0), Some(1))
    );

    // A crash after the move, before its hand-off: the ingest queue is unreachable.
    let broken_config = journeys::Config::from_lookup(&t.lookup("journeys"))
        .map(|c| journeys::Config { ingest_queue_url: format!("{}-gone", c.ingest_queue_url), ..c })
        .unwrap();
    let broken = journeys::aws::deps(&t.sdk, &broken_config);
    let response = journeys::handler(&broken, sqs_event(&[&body])).await.unwrap();
    assert_eq!(response.batch_item_failures.len(), 1, "the record comes back");
    let moved = state(&t, &who).await.unwrap();
    assert_eq!((moved.seq, moved.step.as_ref().map(|s| s.as_str())), (1, Some("opened?")), "the move is made");
    assert_eq!(moved.advanced_by.as_deref(), Some("m0"));

    // Its redelivery (same SQS message id) and another copy, in one batch: the redelivery
    // hands the move's effects on again, the other copy drops; nothing moves twice.
    let deps = journeys::aws::deps(&t.sdk, &journeys::Config::from_lookup(&t.lookup("journeys")).unwrap());
    let response = journeys::handler(&deps, sqs_event(&[&body, &body])).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    let again = state(&t, &who).await.unwrap();
    assert_eq!((again.seq, again.advanced_by.as_deref()), (1, Some("m0")), "still one move");
    let response = journeys::handler(&deps, sqs_event(&[&body])).await.unwrap();
    assert!(response.batch_item_failures.is_empty());

    // The welcome notify went to ingest (twice: both from m0's redeliveries); ingest admits it once.
    let notifies = t.drain("IngestQueue").await;
    assert_eq!(notifies.len(), 2, "{notifies:?}");
    let keys: BTreeSet<String> = notifies
        .iter()
        .map(|b| serde_json::from_str::<Value>(b).unwrap()["idempotency_key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys, BTreeSet::from([step_key(&who, 1, "welcome")]));
    let response = ingest::handler(&ingest, sqs_event(&notifies)).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    let welcome = t.entry(&step_key(&who, 1, "welcome")).await.unwrap();
    assert_eq!((welcome.status, welcome.duplicates), (Status::Accepted, 1), "one message, its copy a duplicate");

    // The branch waits a day: its job is in the schedule table, once however often it was handed on.
    let schedule = DynamoSchedule::new(aws_sdk_dynamodb::Client::new(&t.sdk), t.table("ScheduleTable"));
    let now = Utc::now();
    let waiting = schedule.due(now, now + TimeDelta::days(2), 10).await.unwrap();
    let waiting: Vec<_> = waiting.iter().filter(|s| s.to == Destination::Journey).collect();
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    let branch_job: Value = serde_json::from_str(&waiting[0].body).unwrap();
    assert_eq!((branch_job["step"].as_str(), branch_job["seq"].as_u64()), (Some("opened?"), Some(1)));
    assert!(waiting[0].due > now + TimeDelta::hours(23));

    // Released early (by hand), the branch job is early: put back, nothing moves.
    let response = journeys::handler(&deps, sqs_event(&[&waiting[0].body])).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(state(&t, &who).await.unwrap().seq, 1);
    // A stale copy of the first job (its move made by another message) drops.
    let stale = journeys::handler(&deps, sqs_event(&["x", &body])).await.unwrap();
    assert!(stale.batch_item_failures.is_empty(), "an unreadable job is recorded and dropped");
    assert_eq!(state(&t, &who).await.unwrap().seq, 1);
    assert!(t.drain("IngestQueue").await.is_empty(), "no step sent again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_definition_changed_mid_flight_keeps_people_on_the_version_they_entered() {
    let t = TestStack::new().await;
    let tag = t.tag.clone();
    push_templates(&t).await;
    let store = templates(&t);
    // v1: welcome, a short wait, then the nudge. v2: welcome only.
    let v1 = toml_doc(
        r#"
name = "welcome_series"
version = 1
kind = "marketing"
topic = "onboarding"
[[steps]]
id = "welcome"
send = { template = "welcome", channels = ["push"] }
[[steps]]
id = "pause"
wait = "6s"
[[steps]]
id = "nudge"
send = { template = "welcome_nudge", channels = ["email"] }
"#,
    );
    let mut v2 = v1.clone();
    v2.version = 2;
    v2.steps.truncate(1);
    assert_eq!(store.put_journey(&v1, Utc::now()).await.unwrap(), herald::aws::dynamodb::Pushed::Written);
    let (early, late) = (format!("early-{tag}"), format!("late-{tag}"));
    let mut setup = person_commands(&early, &tag);
    setup.extend(person_commands(&late, &tag));
    t.publish(&setup).await;
    t.wait_idle().await;
    t.publish(&[enter(&early, &format!("{tag}-e"))]).await;
    wait_for(&t, &step_key(&early, 1, "welcome"), Status::Sent).await;

    // v2 pushed while `early` waits on v1; v1 cannot be changed under its number.
    assert_eq!(store.put_journey(&v2, Utc::now()).await.unwrap(), herald::aws::dynamodb::Pushed::Written);
    assert_eq!(store.put_journey(&v1, Utc::now()).await.unwrap(), herald::aws::dynamodb::Pushed::Unchanged);
    let mut changed = v1.clone();
    changed.steps.truncate(2);
    let refused = store.put_journey(&changed, Utc::now()).await.unwrap_err();
    assert_eq!(refused.permanent_code(), Some("VersionConflict"), "{refused}");
    assert!(refused.to_string().contains("raise its version"), "{refused}");
    t.publish(&[enter(&late, &format!("{tag}-l"))]).await;
    t.wait_idle().await;

    let data = provider_data().await;
    assert_eq!(emails_to(&data, &format!("{early}@example.org")).len(), 1, "v1's nudge, for who entered v1");
    assert_eq!(emails_to(&data, &format!("{late}@example.org")).len(), 0, "v2 has no nudge");
    for (who, version) in [(&early, 1), (&late, 2)] {
        assert_eq!(pushes_to(&data, &format!("fcm-{tag}-{who}")).len(), 1, "{who}");
        let s = state(&t, who).await.unwrap();
        assert_eq!((s.version, s.status), (version, RunStatus::Completed), "{who}");
    }
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_definitions_are_refused_by_check_and_at_push_with_the_reason() {
    let t = TestStack::without_functions().await;
    let root = std::env::temp_dir().join(format!("herald-journeys-{}", t.tag));
    let repo = herald_cli::local::repo_root();
    std::fs::create_dir_all(root.join("templates")).unwrap();
    std::fs::create_dir_all(root.join("journeys")).unwrap();
    for name in ["welcome", "welcome_nudge"] {
        std::fs::copy(repo.join(format!("templates/{name}.toml")), root.join(format!("templates/{name}.toml")))
            .unwrap();
    }
    // A template the stack was not provisioned with, to see whether anything was pushed.
    let probe = std::fs::read_to_string(repo.join("templates/welcome.toml")).unwrap();
    std::fs::write(root.join("templates/probe.toml"), probe.replace("name = \"welcome\"", "name = \"probe\"")).unwrap();
    let bad = [
        ("unknown_template", "send = { template = \"farewell\" }", "sends template farewell, which does not exist"),
        (
            "bad_status",
            "send = { template = \"welcome\" }\n[[steps]]\nid = \"b\"\nbranch = { on = \"a\", status = \"read\", within = \"1h\", yes = \"end\", no = \"end\" }",
            "branch on status \"read\", which is not one a message reports: delivered, opened or clicked",
        ),
        (
            "no_wait_cycle",
            "branch = { when = { field = \"locale\", equals = \"fr\" }, yes = \"b\", no = \"end\" }\n[[steps]]\nid = \"b\"\nbranch = { when = { field = \"locale\", equals = \"de\" }, yes = \"a\", no = \"end\" }",
            "cycle without a wait: a -> b -> a",
        ),
    ];
    for (name, step, _) in &bad {
        let text = format!("name = \"{name}\"\nkind = \"marketing\"\ntopic = \"t\"\n[[steps]]\nid = \"a\"\n{step}\n");
        std::fs::write(root.join(format!("journeys/{name}.toml")), text).unwrap();
    }
    let names =
        herald_cli::templates::load_dir(&root.join("templates")).unwrap().iter().map(|t| t.name().clone()).collect();
    let (docs, problems) = herald_cli::journeys::check(&root.join("journeys"), &names, &Default::default()).unwrap();
    assert_eq!(docs.len(), 3);
    for (name, _, reason) in &bad {
        assert!(
            problems.iter().any(|p| p.starts_with(&format!("journey {name}: ")) && p.contains(reason)),
            "{name}: {problems:#?}"
        );
    }

    let store = templates(&t);
    let refused = herald_cli::templates::push_all(&store, &root.join("templates"), Utc::now()).await.unwrap_err();
    let message = refused.to_string();
    assert!(message.starts_with("nothing pushed, 3 problem(s)"), "{message}");
    for (_, _, reason) in &bad {
        assert!(message.contains(reason), "{message}");
    }
    assert!(store.journey(&JourneyName::new("unknown_template").unwrap(), None).await.unwrap().is_none());
    let probe_name = herald::domain::TemplateName::new("probe").unwrap();
    assert!(TemplateStore::get(&store, &probe_name).await.unwrap().is_none(), "nothing pushed at all");

    // Fixed, the folder pushes, the journey after its templates.
    for (name, _, _) in &bad {
        std::fs::remove_file(root.join(format!("journeys/{name}.toml"))).unwrap();
    }
    let copy = std::fs::read_to_string(repo.join("journeys/onboarding.toml")).unwrap();
    std::fs::write(root.join("journeys/copied.toml"), copy.replace("name = \"onboarding\"", "name = \"copied\""))
        .unwrap();
    let pushed = herald_cli::templates::push_all(&store, &root.join("templates"), Utc::now()).await.unwrap();
    assert_eq!(pushed.last().map(String::as_str), Some("pushed journey copied v1"), "{pushed:?}");
    assert!(pushed.iter().any(|l| l == "pushed probe v1"), "{pushed:?}");
    assert!(TemplateStore::get(&store, &probe_name).await.unwrap().is_some(), "{pushed:?}");
    let again = herald_cli::templates::push_all(&store, &root.join("templates"), Utc::now()).await.unwrap();
    assert_eq!(again.last().map(String::as_str), Some("journey copied v1 unchanged"));
    let latest = store.journey(&JourneyName::new("copied").unwrap(), None).await.unwrap().unwrap();
    assert_eq!(latest.version(), 1);
    std::fs::remove_dir_all(&root).unwrap();
}
