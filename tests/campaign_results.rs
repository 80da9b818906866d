//! Campaign results on the local stack: the global control group held out of all
//! marketing through the pipeline, conversions recorded by `track` on a campaign's
//! messages, and both in `herald funnel`.

use crate::support::*;
use herald::domain::RecipientId;
use herald::domain::campaign::GlobalControl;
use serde_json::json;

/// `n` people of this test inside the global control group at `percent`, and `n` outside.
fn people(tag: &str, percent: f64, n: usize) -> (Vec<String>, Vec<String>) {
    let global = GlobalControl::new(percent).unwrap();
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    for i in 0.. {
        let who = format!("p{i}-{tag}");
        let list = if global.contains(&RecipientId::new(who.as_str()).unwrap()) { &mut inside } else { &mut outside };
        if list.len() < n {
            list.push(who);
        }
        if inside.len() == n && outside.len() == n {
            break;
        }
    }
    (inside, outside)
}

fn address(who: &str) -> String {
    format!("{who}@example.org")
}

/// Upserts each person with an email address and their opt-in to email.
async fn opted_in(t: &TestStack, who: &[String]) {
    let bodies: Vec<String> = who
        .iter()
        .flat_map(|w| {
            [
                json!({"type": "upsert_recipient", "recipient": w, "email": address(w)}).to_string(),
                json!({"type": "set_consent", "recipient": w, "channel": "email", "granted": true, "source": "test"})
                    .to_string(),
            ]
        })
        .collect();
    t.publish(&bodies).await;
    t.wait_idle().await;
}

fn digest(key: &str, who: &str, campaign: Option<&str>) -> String {
    let mut body = json!({"idempotency_key": key, "recipient": who, "template": "weekly_digest", "kind": "marketing",
                          "channels": ["email"], "data": {"headline": "Spring"}});
    if let Some(c) = campaign {
        body["campaign"] = json!(c);
    }
    body.to_string()
}

fn shipped(key: &str, who: &str) -> String {
    json!({"idempotency_key": key, "recipient": who, "template": "order_shipped", "kind": "transactional",
           "channels": ["email"], "data": {"order_id": "7"}})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_control_group_is_held_out_of_all_marketing_and_only_marketing() {
    let t = TestStack::with_env(&[("eligibility", "HERALD_GLOBAL_CONTROL_PERCENT", "30")]).await;
    let tag = t.tag.clone();
    let (inside, outside) = people(&tag, 30.0, 3);
    opted_in(&t, &[inside.clone(), outside.clone()].concat()).await;

    let mut bodies = Vec::new();
    for who in &inside {
        // A campaign's message (spring-sale holds out 20% itself) and one of no campaign.
        bodies.push(digest(&format!("spring-sale#{who}"), who, Some("spring-sale")));
        bodies.push(digest(&format!("{tag}-plain-{who}"), who, None));
    }
    for who in inside.iter().chain(&outside) {
        bodies.push(shipped(&format!("{tag}-order-{who}"), who));
    }
    for who in &outside {
        bodies.push(digest(&format!("{tag}-plain-{who}"), who, None));
    }
    t.publish(&bodies).await;
    t.wait_idle().await;

    let data = provider_data().await;
    for who in &inside {
        for key in [format!("spring-sale#{who}"), format!("{tag}-plain-{who}")] {
            let e = t.entry(&key).await.unwrap();
            assert_eq!((e.status.as_str(), e.reason.as_deref()), ("suppressed", Some("global_control")), "{key}");
        }
        let order = t.entry(&format!("{tag}-order-{who}")).await.unwrap();
        assert_eq!(order.status.as_str(), "sent", "transactional is never held out: {who}");
        let emails = emails_to(&data, &address(who));
        assert_eq!(emails.len(), 1, "{who} got the order email only");
        assert_eq!(emails[0]["subject"], "Order 7 has shipped");
    }
    for who in &outside {
        let e = t.entry(&format!("{tag}-plain-{who}")).await.unwrap();
        assert_eq!((e.status.as_str(), e.reason.as_deref()), ("sent", None), "{who} is not in the group");
        assert_eq!(emails_to(&data, &address(who)).len(), 2, "{who}: the digest and the order");
    }
    t.stop().await;
}

/// A marketing request of `campaign` to `who`, keyed as a broadcast keys it.
fn campaign_request(campaign: &str, who: &str) -> herald::contract::NotifyRequest {
    let body = json!({"idempotency_key": format!("{campaign}#{who}"), "recipient": who, "template": "weekly_digest",
                      "kind": "marketing", "campaign": campaign});
    match herald::contract::IngestMessage::parse(&body.to_string()).unwrap() {
        herald::contract::IngestMessage::Notify(r) => *r,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_conversion_is_recorded_once_within_its_window_and_the_earliest_counts() {
    use chrono::{TimeDelta, Utc};
    use herald::domain::campaign::message_id;
    use herald::domain::ledger::{Reason, Status};
    use herald::domain::{CampaignId, EventName};
    use herald::ports::{Admit, Conversion, Converted, Ledger, Transition};

    let t = TestStack::without_functions().await;
    let ledger = t.ledger();
    let campaign = CampaignId::new(format!("{}-sale", t.tag)).unwrap();
    let other = CampaignId::new(format!("{}-other", t.tag)).unwrap();
    let purchase = EventName::new("purchase").unwrap();
    let accepted = Utc::now() - TimeDelta::days(3);
    let admit = |who: &str| {
        let request = campaign_request(campaign.as_str(), who);
        let id = message_id(&campaign, &request.recipient).unwrap();
        (request, id)
    };
    let (ana, ana_id) = admit("ana");
    let (bob, bob_id) = admit("bob");
    for (request, id) in [(&ana, &ana_id), (&bob, &bob_id)] {
        let a = Admit {
            id,
            source_id: "s",
            request,
            now: accepted,
            dedupe_until: accepted + TimeDelta::days(1),
            expires_at: accepted + TimeDelta::days(30),
        };
        ledger.admit(a).await.unwrap();
    }
    // Bob was held out: his message is suppressed, and converts all the same.
    let held = Transition::new(Status::Suppressed, accepted).reason(Reason::Holdout);
    ledger.settle(&bob_id, held).await.unwrap();

    let window = TimeDelta::hours(48);
    let nobody = message_id(&campaign, &herald::domain::RecipientId::new("nobody").unwrap()).unwrap();
    let at = |hours: i64| accepted + TimeDelta::hours(hours);
    // (label, message, campaign, at, value, expected), in order: each sees what the ones before wrote.
    let cases = [
        ("a person with no message of the campaign", &nobody, &campaign, at(1), None, Converted::NoMessage),
        ("the message of another campaign", &ana_id, &other, at(1), None, Converted::NoMessage),
        ("before the message was accepted", &ana_id, &campaign, at(-1), None, Converted::OutsideWindow),
        ("past the window", &ana_id, &campaign, at(49), None, Converted::OutsideWindow),
        ("within the window", &ana_id, &campaign, at(24), Some(10.5), Converted::Recorded),
        ("the same track again", &ana_id, &campaign, at(24), Some(10.5), Converted::AlreadyConverted),
        ("a later conversion", &ana_id, &campaign, at(30), Some(99.0), Converted::AlreadyConverted),
        ("an earlier one, arrived late", &ana_id, &campaign, at(2), None, Converted::Recorded),
        ("the edge of the window", &bob_id, &campaign, at(48), Some(5.0), Converted::Recorded),
    ];
    for (label, id, campaign, at, value, expected) in cases {
        let c = Conversion { id, campaign, event: &purchase, at, value, window };
        assert_eq!(ledger.record_conversion(c).await.unwrap(), expected, "{label}");
    }
    let e = ledger.get(&ana_id).await.unwrap().unwrap();
    let c = e.conversion.expect("ana converted");
    assert_eq!((c.event.as_str(), c.value), ("purchase", None), "the earliest conversion, whole");
    assert_eq!(c.at.parse::<chrono::DateTime<Utc>>().unwrap().timestamp(), at(2).timestamp());
    assert_eq!((e.status, e.history.len()), (Status::Accepted, 1), "status and history untouched");
    let b = ledger.get(&bob_id).await.unwrap().unwrap();
    assert_eq!((b.status, b.conversion.and_then(|c| c.value)), (Status::Suppressed, Some(5.0)));
    assert!(ledger.get(&nobody).await.unwrap().is_none(), "no item was made for a person with no message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracks_after_a_campaign_show_up_in_its_funnel_per_group() {
    use herald::aws::dynamodb::DynamoTemplates;
    use herald::domain::campaign::{CampaignDoc, group};
    use herald_cli::funnel::{HeldOut, report};

    let percent = 20.0;
    let t = TestStack::with_env(&[("eligibility", "HERALD_GLOBAL_CONTROL_PERCENT", "20")]).await;
    let tag = t.tag.clone();
    let name = format!("{tag}-sale");
    let doc: CampaignDoc = serde_json::from_value(json!({
        "name": name, "holdout_percent": 30, "conversion_event": "purchase", "conversion_window_hours": 48,
        "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]
    }))
    .unwrap();
    let templates = DynamoTemplates::new(
        aws_sdk_dynamodb::Client::new(&t.sdk),
        t.table("TemplatesTable"),
        std::time::Duration::ZERO,
    );
    templates.put_campaign(&doc, chrono::Utc::now()).await.unwrap();

    let who: Vec<String> = (0..16).map(|i| format!("c{i}-{tag}")).collect();
    opted_in(&t, &who).await;
    t.publish(&who.iter().map(|w| digest(&format!("{name}#{w}"), w, Some(&name))).collect::<Vec<_>>()).await;
    t.wait_idle().await;

    // Every other person buys (one of them twice, once as a duplicate), someone with no
    // message buys, and an event no campaign names is tracked.
    let now = chrono::Utc::now();
    let track = |key: &str, w: &str, event: &str, value: Option<f64>| {
        let mut body = json!({"type": "track", "idempotency_key": key, "recipient": w, "event": event,
                              "at": now.to_rfc3339()});
        if let Some(v) = value {
            body["value"] = json!(v);
        }
        body.to_string()
    };
    let buyers: Vec<&String> = who.iter().step_by(2).collect();
    let mut bodies: Vec<String> =
        buyers.iter().map(|w| track(&format!("order-{w}"), w, "purchase", Some(20.0))).collect();
    bodies.push(track(&format!("order-{}", buyers[0]), buyers[0], "purchase", Some(20.0)));
    bodies.push(track("order-stranger", &format!("stranger-{tag}"), "purchase", Some(20.0)));
    bodies.push(track("viewed", &who[1], "page_view", None));
    let ids = t.publish(&bodies).await;
    t.wait_idle().await;

    let ledger = t.ledger();
    for id in &ids {
        assert!(ledger.rejection(id).await.unwrap().is_none(), "every track was accepted");
    }
    assert!(t.entry(&format!("{name}#stranger-{tag}")).await.is_none(), "nothing written for a stranger");
    assert!(t.entry(&format!("{name}#{}", who[1])).await.unwrap().conversion.is_none(), "page_view is no conversion");

    let global = GlobalControl::new(percent).unwrap();
    let r = report(&t.sdk, &t.table("LedgerTable"), Some(&t.table("TemplatesTable")), &name, global).await.unwrap();
    println!("{r}");
    // What each group should hold, from the assignment eligibility sends by.
    let mut expected = std::collections::BTreeMap::<String, (usize, usize)>::new();
    for (i, w) in who.iter().enumerate() {
        let g = group(herald::contract::Kind::Marketing, &RecipientId::new(w.as_str()).unwrap(), Some(&doc), global);
        let e = expected.entry(g.label()).or_default();
        e.0 += 1;
        e.1 += usize::from(i % 2 == 0);
    }
    let got: std::collections::BTreeMap<String, (usize, usize)> =
        r.groups.iter().map(|g| (g.label.clone(), (g.conversions.rate.n, g.conversions.rate.k))).collect();
    assert_eq!(got, expected);
    for g in &r.groups {
        assert_eq!(g.conversions.value, 20.0 * g.conversions.rate.k as f64, "{}: one value per buyer", g.label);
        // Held-out groups were recorded as such; the others were sent.
        let reasons: Vec<&String> = g.funnel.suppressed.keys().collect();
        match g.held_out {
            Some(HeldOut::Holdout) => assert_eq!(reasons, ["holdout"], "{}", g.label),
            Some(HeldOut::GlobalControl) => assert_eq!(reasons, ["global_control"], "{}", g.label),
            None => assert_eq!(g.funnel.sent.values().sum::<usize>(), g.funnel.accepted, "{}", g.label),
        }
    }
    let text = r.to_string();
    assert!(text.contains("conversions: purchase within 48 h after the message was accepted"), "{text}");
    t.stop().await;
}
