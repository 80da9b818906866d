//! `herald import recipients` against moto through the local stack: a Pinpoint endpoint
//! export of more than 1,000 endpoints (made by scripts/pinpoint-export.py, which also says
//! what Herald should hold after it), and the CSV and NDJSON fixtures. The commands go on
//! the stack's ingest queue as a producer's would; what ingest wrote is read back from the
//! recipients table. A second import of the same file changes nothing, to the byte.

use crate::support::*;
use aws_sdk_dynamodb::types::AttributeValue;
use herald::aws::dynamodb::DynamoRecipients;
use herald::domain::recipient::{ConsentScope, Recipient};
use herald::domain::{Channel, RecipientId, Topic};
use herald::ports::RecipientStore;
use herald_cli::import::publish::{self, Resume, RunOptions, SqsQueue, Summary};
use herald_cli::import::{Format, ImportOptions};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

fn scratch(t: &TestStack) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("herald-import-{}", t.tag));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn import(t: &TestStack, file: &Path, format: Format, report: &Path) -> Summary {
    let opts = RunOptions {
        rate: 0.0,
        resume: Resume::Restart,
        report: report.to_owned(),
        state: report.with_extension("state.json"),
        ..RunOptions::beside(file)
    };
    let queue = SqsQueue { client: aws_sdk_sqs::Client::new(&t.sdk), url: t.queue_url("IngestQueue") };
    let summary = publish::run(file, format, &ImportOptions::default(), &opts, &queue).await.unwrap();
    // A thousand commands through ingest on one moto server take longer than the usual wait.
    let started = std::time::Instant::now();
    t.stack.wait_idle(&t.sdk, std::time::Duration::from_secs(600)).await.expect("ingest went idle");
    eprintln!("{} command(s) applied in {:?}", summary.commands.values().sum::<u64>(), started.elapsed());
    summary
}

/// Every item of the recipients table, attributes and all, in key order.
async fn scan(t: &TestStack) -> BTreeMap<(String, String), HashMap<String, AttributeValue>> {
    let dynamodb = aws_sdk_dynamodb::Client::new(&t.sdk);
    let mut items = BTreeMap::new();
    let mut start = None;
    loop {
        let page = dynamodb
            .scan()
            .table_name(t.table("RecipientsTable"))
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .unwrap();
        for item in page.items.unwrap_or_default() {
            let key = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            items.insert((key("pk"), key("sk")), item);
        }
        match page.last_evaluated_key.filter(|k| !k.is_empty()) {
            Some(k) => start = Some(k),
            None => return items,
        }
    }
}

/// The report's refused rows: line -> code.
fn refused(report: &Path) -> BTreeMap<u64, String> {
    let text = std::fs::read_to_string(report).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| (v["line"].as_u64().unwrap(), v["code"].as_str().unwrap().to_owned()))
        .collect()
}

fn recipients(t: &TestStack) -> DynamoRecipients {
    DynamoRecipients::new(aws_sdk_dynamodb::Client::new(&t.sdk), t.table("RecipientsTable"))
}

async fn person(store: &DynamoRecipients, id: &str) -> Recipient {
    store.get(&RecipientId::new(id).unwrap()).await.unwrap().unwrap_or_else(|| panic!("{id} was not imported"))
}

fn consent(r: &Recipient, channel: Channel, topic: Option<&str>) -> Option<(bool, String, String)> {
    let scope = ConsentScope { channel, topic: topic.map(|t| Topic::new(t).unwrap()) };
    r.consents.get(&scope).map(|c| (c.granted, c.source.as_str().to_owned(), c.at.to_rfc3339()))
}

fn at(raw: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(raw).unwrap().to_rfc3339()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinpoint_export_imports_its_people_consents_and_tokens_and_a_second_import_changes_nothing() {
    let t = TestStack::new().await;
    let dir = scratch(&t);
    let (export, expected) = (dir.join("endpoints.json.gz"), dir.join("expected.json"));
    let root = herald_cli::local::repo_root();
    let made = std::process::Command::new(herald_cli::moto::python(&root))
        .arg(root.join("scripts/pinpoint-export.py"))
        .arg(&export)
        .args(["--tag", &t.tag, "--expected"])
        .arg(&expected)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(&expected).unwrap()).unwrap();
    let users = expected["users"].as_object().unwrap();
    assert!(expected["endpoints"].as_u64().unwrap() >= 1000);

    let report = dir.join("refused.ndjson");
    let first = import(&t, &export, Format::Pinpoint, &report).await;
    assert_eq!(first.rows, expected["endpoints"].as_u64().unwrap());
    assert_eq!(first.people, users.len());

    // Every refused endpoint is in the report with its reason, and nothing else is.
    let want_refused: BTreeMap<u64, String> = expected["refused"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(line, code)| (line.parse().unwrap(), code.as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(refused(&report), want_refused);
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(!text.contains("example.org") && !text.contains("+1555") && !text.contains("ffffffff"), "{text}");

    // The people, as ingest stored them.
    let store = recipients(&t);
    for (id, want) in users {
        let r = person(&store, id).await;
        assert_eq!(r.email.as_ref().map(|e| e.as_str()), want["email"].as_str(), "{id} email");
        assert_eq!(r.phone.as_ref().map(|p| p.as_str()), want["phone"].as_str(), "{id} phone");
        assert_eq!(r.timezone.map(String::from).as_deref(), want["timezone"].as_str(), "{id} timezone");
        assert_eq!(r.locale.as_ref().map(|l| l.as_str()), want["locale"].as_str(), "{id} locale");
        assert_eq!(Value::Object(r.attributes.clone()), want["attributes"], "{id} attributes");
        let tokens: BTreeMap<String, String> =
            r.devices.iter().map(|d| (d.token.as_str().to_owned(), d.platform.as_str().to_owned())).collect();
        let want_tokens: BTreeMap<String, String> = want["tokens"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        assert_eq!(tokens, want_tokens, "{id} tokens");
        let mut consents = BTreeMap::new();
        for channel in [Channel::Email, Channel::Sms, Channel::Push] {
            if let Some(c) = consent(&r, channel, None) {
                consents.insert(channel.to_string(), c);
            }
        }
        let want_consents: BTreeMap<String, (bool, String, String)> = want["consents"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(ch, c)| {
                (ch.clone(), (c["granted"].as_bool().unwrap(), "pinpoint".to_owned(), at(c["at"].as_str().unwrap())))
            })
            .collect();
        assert_eq!(consents, want_consents, "{id} consents");
    }

    let before = scan(&t).await;
    assert!(before.keys().any(|(pk, _)| pk.starts_with("endpoint#")), "the endpoint index is part of the comparison");
    let second = import(&t, &export, Format::Pinpoint, &report).await;
    assert_eq!(second.commands, first.commands, "the same commands were published again");
    let after = scan(&t).await;
    assert_eq!(before.len(), after.len(), "no item added or removed");
    for (key, item) in &before {
        assert_eq!(Some(item), after.get(key), "{key:?} changed on the second import");
    }
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_and_ndjson_files_import_people_with_their_consents_sources_and_times() {
    let t = TestStack::new().await;
    let dir = scratch(&t);
    let fixtures = herald_cli::local::repo_root().join("tests/fixtures/import");
    let csv_report = dir.join("csv-refused.ndjson");
    let csv = import(&t, &fixtures.join("people.csv"), Format::Csv, &csv_report).await;
    assert_eq!((csv.rows, csv.people), (6, 2));
    let nd_report = dir.join("nd-refused.ndjson");
    let nd = import(&t, &fixtures.join("people.ndjson"), Format::Ndjson, &nd_report).await;
    assert_eq!((nd.rows, nd.people), (7, 3));

    let codes = |pairs: &[(u64, &str)]| pairs.iter().map(|(l, c)| (*l, (*c).to_owned())).collect::<BTreeMap<_, _>>();
    assert_eq!(
        refused(&csv_report),
        codes(&[(4, "invalid_field"), (5, "invalid_field"), (6, "missing_consent_time"), (7, "duplicate_recipient")])
    );
    assert_eq!(
        refused(&nd_report),
        codes(&[(4, "invalid_field"), (5, "invalid_field"), (6, "invalid_field"), (7, "malformed_json")])
    );
    for report in [&csv_report, &nd_report] {
        let text = std::fs::read_to_string(report).unwrap();
        assert!(!text.contains("example.org") && !text.contains("not-an-address") && !text.contains("12345"), "{text}");
    }

    let store = recipients(&t);
    let ana = person(&store, "csv-ana").await;
    assert_eq!(ana.email.as_ref().map(|e| e.as_str()), Some("ana@example.org"));
    assert_eq!(ana.phone.as_ref().map(|p| p.as_str()), Some("+15555550101"));
    assert_eq!(ana.quiet_hours.map(|q| q.start.to_string()).as_deref(), Some("22:00:00"));
    assert_eq!(
        Value::Object(ana.attributes.clone()),
        serde_json::json!({"first_name": "Ana", "plan": "pro", "lifetime_value": 120.5, "interests": ["shoes", "hats"]})
    );
    assert_eq!(
        consent(&ana, Channel::Email, None),
        Some((true, "signup-form".to_owned(), at("2026-03-01T09:30:00Z"))),
        "the consent keeps its source and time"
    );
    assert_eq!(
        consent(&ana, Channel::Sms, Some("order_updates")),
        Some((false, "signup-form".to_owned(), at("2026-03-01T09:30:00Z")))
    );
    let mut platforms: Vec<&str> = ana.devices.iter().map(|d| d.platform.as_str()).collect();
    platforms.sort();
    assert_eq!(platforms, ["apns", "fcm"]);
    let bo = person(&store, "csv-bo").await;
    assert_eq!(
        consent(&bo, Channel::Email, None),
        Some((false, "newsletter-footer".to_owned(), at("2026-02-14T18:00:00Z")))
    );
    for id in ["csv-chen", "csv-dara", "csv-eli", "nd-hana", "nd-ivo", "nd-jo"] {
        assert_eq!(store.get(&RecipientId::new(id).unwrap()).await.unwrap(), None, "{id}'s row was refused whole");
    }

    let femi = person(&store, "nd-femi").await;
    assert_eq!(
        consent(&femi, Channel::Email, Some("order_updates")),
        Some((true, "mobile-app".to_owned(), at("2026-01-20T12:00:00Z")))
    );
    assert_eq!(consent(&femi, Channel::Push, None), Some((true, "mobile-app".to_owned(), at("2026-01-20T12:00:05Z"))));
    assert_eq!(femi.attributes.get("beta"), Some(&Value::Bool(true)));
    assert_eq!(femi.devices.len(), 1);
    let gus = person(&store, "nd-gus").await;
    assert_eq!(gus.quiet_hours.map(|q| q.end.to_string()).as_deref(), Some("06:30:00"));
    let kim = person(&store, "nd-kim").await;
    assert_eq!(
        consent(&kim, Channel::Sms, None),
        Some((false, "import".to_owned(), at("2026-01-21T08:00:00Z"))),
        "a consent without a source gets the import's"
    );

    // The consent audit trail has one record per consent, and a second import adds none.
    let before = scan(&t).await;
    let audits = before.keys().filter(|(_, sk)| sk.starts_with("consent#")).count();
    assert_eq!(audits, 6);
    import(&t, &fixtures.join("people.csv"), Format::Csv, &csv_report).await;
    import(&t, &fixtures.join("people.ndjson"), Format::Ndjson, &nd_report).await;
    assert_eq!(scan(&t).await, before, "the second import changed the table");
    t.stop().await;
}

#[test]
fn pinpoint_templates_convert_to_templates_that_pass_the_check_and_render_like_pinpoint() {
    use herald::domain::profile::{AttributeType, ProfileSchema};
    use herald::domain::template::{Limits, RecipientView};
    use herald_cli::import::templates;
    let dir = herald_cli::local::repo_root().join("tests/fixtures/import/pinpoint");
    let files: Vec<PathBuf> =
        ["welcome-email.json", "welcome-sms.json", "order-push.json", "vip-email.json", "settings.json"]
            .iter()
            .map(|f| dir.join(f))
            .collect();
    let conversion = templates::convert(&files, "en").unwrap();
    assert_eq!(conversion.refused.len(), 1, "{:?}", conversion.refused);
    assert!(conversion.refused[0].contains("template vip") && conversion.refused[0].contains("{{#if"));

    let out = std::env::temp_dir().join(format!("herald-import-templates-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let written = templates::write(&conversion, &out).unwrap();
    assert_eq!(written.len(), 2);
    // What `herald templates check` runs.
    let loaded = herald_cli::templates::load_dir(&out).unwrap();
    let names: Vec<&str> = loaded.iter().map(|t| t.name().as_str()).collect();
    assert_eq!(names, ["order_shipped", "welcome"]);
    assert_eq!(herald_cli::templates::check_all(&loaded, &Limits::default()), Vec::<String>::new());
    let used: std::collections::BTreeSet<&String> = conversion.templates.iter().flat_map(|t| &t.attributes).collect();
    assert_eq!(used.into_iter().collect::<Vec<_>>(), ["Banner", "FirstName", "OrderId"]);
    let declared = ProfileSchema {
        attributes: ["Banner", "FirstName", "OrderId"].map(|a| (a.to_owned(), AttributeType::String)).into(),
    };
    assert_eq!(herald_cli::templates::check_profile_all(&loaded, &declared), Vec::<String>::new());
    assert!(!herald_cli::templates::check_profile_all(&loaded, &ProfileSchema::default()).is_empty());

    // Rendered, they say what Pinpoint's said: the attribute, or its default substitution.
    let welcome = loaded.iter().find(|t| t.name().as_str() == "welcome").unwrap();
    let ana = RecipientView {
        id: "user-42".into(),
        attributes: serde_json::json!({"FirstName": "Ana"}).as_object().unwrap().clone(),
        ..RecipientView::default()
    };
    let data = serde_json::json!({"location_city": "Lyon"}).as_object().unwrap().clone();
    let email = welcome.render_email(None, &data, &ana).unwrap();
    assert_eq!(email.subject, "Welcome to the shop, Ana");
    assert!(email.html.contains("Events near Lyon") && email.html.contains("u=user-42"), "{}", email.html);
    assert!(email.text.contains("Welcome, Ana!"), "a text part made from the HTML: {}", email.text);
    let nobody = RecipientView { id: "user-43".into(), ..RecipientView::default() };
    let plain = welcome.render_email(None, &serde_json::Map::new(), &nobody).unwrap();
    assert_eq!(plain.subject, "Welcome to the shop, there");
    assert!(plain.html.contains("Events near your city"), "{}", plain.html);
    let sms = welcome.render_sms(None, &serde_json::Map::new(), &ana).unwrap();
    assert!(format!("{sms:?}").contains("Welcome Ana! Reply STOP"), "{sms:?}");
    let order = loaded.iter().find(|t| t.name().as_str() == "order_shipped").unwrap();
    let with_order = RecipientView {
        attributes: serde_json::json!({"OrderId": "1234"}).as_object().unwrap().clone(),
        ..nobody.clone()
    };
    let push = order.render_push(None, &serde_json::Map::new(), &with_order).unwrap();
    assert_eq!(push.body, "Order 1234 is on its way, friend");
    assert_eq!(push.deep_link.as_deref(), Some("shop://orders/1234"));
    let notes = &conversion.templates.iter().find(|t| t.doc.name.as_str() == "order_shipped").unwrap().notes;
    assert!(
        notes.iter().any(|n| n.contains("APNS-specific")) && notes.iter().any(|n| n.contains("Sound")),
        "{notes:?}"
    );
    let file = std::fs::read_to_string(out.join("order_shipped.toml")).unwrap();
    assert!(file.contains("# Not converted: push: Sound does not map"), "{file}");

    let settings = conversion.settings.join("\n");
    assert!(settings.contains("--quiet-hours 22:00-07:00"), "{settings}");
    let policy = settings.split("CapPolicy='").nth(1).and_then(|r| r.split('\'').next()).unwrap();
    let policy = herald::domain::caps::CapPolicy::from_json(policy).unwrap();
    assert_eq!(policy.marketing.iter().map(|l| l.max).collect::<Vec<_>>(), [3, 10]);
}
