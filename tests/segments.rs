//! Segments against moto: segments and the profile schema in the templates table
//! (versioned pushes, cached reads, an audience resolved through the store), and the
//! parallel scan of the recipients table that a broadcast's fan-out and `herald
//! segments count` read.

use crate::profiles::recipients;
use crate::support::*;
use chrono::Utc;
use herald::aws::dynamodb::{DynamoTemplates, Pushed};
use herald::contract::{IngestMessage, SetConsent, UpsertRecipient};
use herald::domain::profile::{AttributeType, ProfileSchema};
use herald::domain::recipient::Device;
use herald::domain::segment::SegmentDoc;
use herald::domain::{Platform, PushToken, RecipientId, SegmentName};
use herald::ports::*;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub fn templates(t: &TestStack, ttl: Duration) -> DynamoTemplates {
    DynamoTemplates::new(aws_sdk_dynamodb::Client::new(&t.sdk), t.table("TemplatesTable"), ttl)
}

pub fn segment(body: serde_json::Value) -> SegmentDoc {
    serde_json::from_value(body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_are_pushed_versioned_and_read_through_a_cache() {
    let t = TestStack::without_functions().await;
    let store = templates(&t, Duration::ZERO);
    let now = Utc::now();
    let v1 = segment(json!({"name": "fans", "version": 1, "channels": ["email"], "exclude": "recent",
                            "filter": {"field": "attributes.ltv", "gt": 100}}));
    let recent = segment(json!({"name": "recent", "channels": ["email"],
                                "filter": {"field": "last_engaged.email", "after": "-7d"}}));
    assert_eq!(store.put_segment(&v1, now).await.unwrap(), Pushed::Written);
    assert_eq!(store.put_segment(&recent, now).await.unwrap(), Pushed::Written);
    assert_eq!(store.put_segment(&v1, now).await.unwrap(), Pushed::Unchanged, "pushing the same file again");

    let changed = SegmentDoc { description: Some("big spenders".into()), ..v1.clone() };
    let err = store.put_segment(&changed, now).await.unwrap_err();
    assert_eq!(err.permanent_code(), Some("VersionConflict"));
    assert!(err.to_string().contains("raise its version"), "{err}");

    let v2 = SegmentDoc { version: 2, ..changed };
    assert_eq!(store.put_segment(&v2, now).await.unwrap(), Pushed::Written);
    let err = store.put_segment(&v1, now).await.unwrap_err();
    assert!(err.to_string().contains("v2 is stored, newer than v1"), "an old checkout cannot push back: {err}");

    let fans = SegmentName::new("fans").unwrap();
    assert_eq!(store.segment(&fans).await.unwrap().as_deref(), Some(&v2));
    assert_eq!(store.segment(&SegmentName::new("nobody").unwrap()).await.unwrap(), None);
    let audience = resolve_audience(&store, &fans).await.unwrap().unwrap();
    assert_eq!((audience.segment.version, audience.exclusions.len()), (2, 1));
    let err = resolve_audience(&store, &SegmentName::new("nobody").unwrap()).await.unwrap().unwrap_err();
    assert_eq!(err, "no segment named nobody");

    // Cached: a push is seen once the entry expires, not before.
    let cached = templates(&t, Duration::from_secs(3600));
    assert_eq!(cached.segment(&fans).await.unwrap().unwrap().version, 2);
    store.put_segment(&SegmentDoc { version: 3, ..v2.clone() }, now).await.unwrap();
    assert_eq!(cached.segment(&fans).await.unwrap().unwrap().version, 2, "read from memory");
    assert_eq!(store.segment(&fans).await.unwrap().unwrap().version, 3);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_profile_schema_is_empty_until_pushed() {
    let t = TestStack::without_functions().await;
    let store = templates(&t, Duration::ZERO);
    // The test stack pushed the repository's profile.toml: take it away.
    aws_sdk_dynamodb::Client::new(&t.sdk)
        .delete_item()
        .table_name(t.table("TemplatesTable"))
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S("profile#schema".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(*store.profile_schema().await.unwrap(), ProfileSchema::default());
    let schema = ProfileSchema {
        attributes: BTreeMap::from([
            ("first_name".to_owned(), AttributeType::String),
            ("ltv".to_owned(), AttributeType::Number),
        ]),
    };
    store.put_profile_schema(&schema, Utc::now()).await.unwrap();
    assert_eq!(*store.profile_schema().await.unwrap(), schema);
    t.stop().await;
}

fn upsert(body: serde_json::Value) -> UpsertRecipient {
    let mut body = body;
    body["type"] = json!("upsert_recipient");
    match IngestMessage::parse(&body.to_string()).unwrap() {
        IngestMessage::UpsertRecipient(cmd) => cmd,
        other => panic!("{other:?}"),
    }
}

fn consent(who: &str, at: &str) -> SetConsent {
    let body = json!({"type": "set_consent", "recipient": who, "channel": "email", "topic": "news",
                      "granted": true, "source": "form", "at": at});
    match IngestMessage::parse(&body.to_string()).unwrap() {
        IngestMessage::SetConsent(cmd) => cmd,
        other => panic!("{other:?}"),
    }
}

/// Recipients `<tag>-r<n>` for n in `0..count`, with `lifetime_value` n and `plan` "even" or
/// "odd"; an email address unless n is a multiple of 7; every third with two consent
/// records for news by email (two audit items), every fifth with a device (an endpoint
/// index item). Returns the ids.
pub async fn populate(t: &TestStack, count: usize) -> BTreeSet<String> {
    let store = recipients(t);
    let now = Utc::now();
    let ids: Vec<String> = (0..count).map(|n| format!("{}-r{n}", t.tag)).collect();
    let work = ids.iter().enumerate().map(|(n, who)| {
        let store = &store;
        async move {
            let attributes = json!({"lifetime_value": n, "plan": if n % 2 == 0 { "even" } else { "odd" }});
            let mut body = json!({"recipient": who, "attributes": attributes});
            if n % 7 != 0 {
                body["email"] = json!(format!("{who}@example.org"));
            }
            store.upsert(&upsert(body), now).await.unwrap();
            if n % 3 == 0 {
                store.set_consent(&consent(who, "2026-01-01T00:00:00Z"), now).await.unwrap();
                store.set_consent(&consent(who, "2026-01-02T00:00:00Z"), now).await.unwrap();
            }
            if n % 5 == 0 {
                let device = Device {
                    platform: Platform::Fcm,
                    token: PushToken::new(format!("tok-{who}")).unwrap(),
                    endpoint_arn: format!("arn:aws:sns:us-east-1:123456789012:endpoint/GCM/app/{who}"),
                };
                store.register_device(&RecipientId::new(who.clone()).unwrap(), &device, None, now).await.unwrap();
            }
        }
    });
    futures::stream::iter(work).buffer_unordered(8).collect::<Vec<()>>().await;
    ids.into_iter().collect()
}

use futures::StreamExt as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_scan_reads_every_profile_exactly_once_and_nothing_else() {
    let t = TestStack::without_functions().await;
    let ids = populate(&t, 300).await;
    let table_items = aws_sdk_dynamodb::Client::new(&t.sdk)
        .scan()
        .table_name(t.table("RecipientsTable"))
        .select(aws_sdk_dynamodb::types::Select::Count)
        .send()
        .await
        .unwrap()
        .count;
    assert_eq!(table_items, 300 + 2 * 100 + 60, "profiles, consent audit items, endpoint index items");

    let store = recipients(&t);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let (mut items_read, mut pages) = (0, 0);
    let mut per_segment = Vec::new();
    for start in ScanCursor::all(4) {
        let mut cursor = start;
        let mut in_segment = 0;
        loop {
            let page = store.page(&cursor, 25).await.unwrap();
            pages += 1;
            items_read += page.items_read;
            assert!(page.items_read <= 25, "at most the limit read");
            assert!(page.recipients.len() <= page.items_read);
            for r in &page.recipients {
                let id = r.id.as_ref().expect("a profile has its id").to_string();
                assert!(
                    r.attributes.contains_key("lifetime_value") && r.created_at.is_some(),
                    "the whole profile: {id}"
                );
                *seen.entry(id).or_default() += 1;
                in_segment += 1;
            }
            match page.next {
                Some(next) => cursor.start = Some(next),
                None => break,
            }
        }
        per_segment.push(in_segment);
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "read twice: {twice:?}");
    assert_eq!(seen.keys().cloned().collect::<BTreeSet<_>>(), ids, "every profile, and nothing else");
    assert_eq!(items_read, 560, "every item of the table read once, over all segments");
    assert!(pages >= 560 / 25, "paged: {pages}");
    assert!(per_segment.iter().all(|n| *n > 0), "each scan segment has its share: {per_segment:?}");

    // A cursor that is not one the scan gave is refused, not misread.
    let bad = ScanCursor { segment: 0, total_segments: 4, start: Some("not a key".into()) };
    assert_eq!(store.page(&bad, 10).await.unwrap_err().permanent_code(), Some("InvalidCursor"));
    let bad = ScanCursor { segment: 4, total_segments: 4, start: None };
    assert_eq!(store.page(&bad, 10).await.unwrap_err().permanent_code(), Some("InvalidCursor"));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counting_a_pushed_segment_judges_every_profile_once() {
    let t = TestStack::without_functions().await;
    let ids = populate(&t, 300).await;
    let store = templates(&t, Duration::ZERO);
    let now = Utc::now();
    let big = segment(json!({"name": "big", "topic": "news", "channels": ["email"], "exclude": "odd",
                             "filter": {"field": "attributes.lifetime_value", "gte": 100}}));
    let odd =
        segment(json!({"name": "odd", "channels": ["email"], "filter": {"field": "attributes.plan", "equals": "odd"}}));
    store.put_segment(&big, now).await.unwrap();
    store.put_segment(&odd, now).await.unwrap();
    let audience = resolve_audience(&store, &SegmentName::new("big").unwrap()).await.unwrap().unwrap();

    let count = herald_cli::segments::count(&recipients(&t), &audience, now, 3, 40, 5).await.unwrap();
    // What each person should be, from how `populate` made them.
    let mut expected: BTreeMap<&str, usize> = BTreeMap::new();
    let mut members = BTreeSet::new();
    for n in 0..300 {
        let verdict = if n < 100 {
            "filter"
        } else if n % 2 == 1 {
            "excluded"
        } else if n % 7 == 0 {
            "unreachable"
        } else if n % 3 != 0 {
            "no_consent"
        } else {
            members.insert(format!("{}-r{n}", t.tag));
            "matched"
        };
        *expected.entry(verdict).or_default() += 1;
    }
    let mut got: BTreeMap<&str, usize> = count.missed.iter().map(|(r, n)| (r.as_str(), *n)).collect();
    got.insert("matched", count.matched);
    assert_eq!(got, expected);
    assert_eq!(count.profiles, ids.len());
    assert_eq!(count.items_read, 300 + 2 * 100 + 60, "the whole table, once");
    assert_eq!(count.on_channel.get(&herald::domain::Channel::Email), Some(&count.matched));
    assert_eq!(count.sample.len(), 5);
    assert!(count.sample.iter().all(|id| members.contains(id.as_str())), "{:?}", count.sample);
    let report = count.to_string();
    assert!(report.starts_with("segment big v1 (excluding odd v1): 300 profile(s) judged"), "{report}");
    assert!(!report.contains("@example.org"), "ids only, never contacts: {report}");
    t.stop().await;
}
