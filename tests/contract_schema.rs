//! probe (temporary)
use herald::contract::IngestMessage;
use serde_json::json;

#[test]
fn contract_schema_probe() {
    let base = |field: &str, v: serde_json::Value| {
        let mut b = json!({"type":"upsert_recipient","recipient":"u"});
        b[field] = v;
        b.to_string()
    };
    let emails = [
        "ana@example.org",
        " ana@example.org",
        "ana@example.org ",
        "Ana <ana@example.org>",
        "José@example.org",
        "ana@exämple.org",
        "\"a b\"@example.org",
        "\"a@b\"@example.org",
        "ana@[192.168.0.1]",
        "ana@[IPv6:::1]",
        "ana@example.",
        "ana@.example.org",
        "ana@-ex.org",
        "ana@ex_ample.org",
        "a..b@example.org",
        "ana@example..org",
        "ana@localhost",
        "ana@1.2.3.4",
        "ana@example.org.",
        "(c)ana@example.org",
        "ana@ex-.org",
    ];
    let fmt = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&json!({"type":"string","format":"email"}))
        .unwrap();
    for e in emails {
        let r = IngestMessage::parse(&base("email", json!(e))).is_ok();
        println!("email {e:?}: rust={r} fmt={}", fmt.is_valid(&json!(e)));
    }
    let dfmt = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&json!({"type":"string","format":"date-time"}))
        .unwrap();
    for d in [
        "2026-11-25T18:00:00Z",
        "2026-11-25 18:00:00Z",
        "2026-11-25t18:00:00z",
        "2026-11-25T18:00:00 UTC",
        "2026-11-25T18:00:00+0100",
        "2026-11-25T18:00:00+01:00",
        "2026-11-25T18:00:00.123456789123Z",
        "2026-12-31T23:59:60Z",
        "2026-11-25T18:00:60Z",
        "2026-02-29T00:00:00Z",
        "2028-02-29T00:00:00Z",
        "2026-11-25T18:00Z",
        "2026-11-25T18:00:00",
        "2026-11-25T18:00:00+24:00",
        "2026-11-25T18:00:00-23:59",
        "2026-11-25T18:00:00 +01:00",
        "2026-11-25T18:00:00Z ",
        "2026-1-25T18:00:00Z",
        "2026-11-25T8:00:00Z",
        "+2026-11-25T18:00:00Z",
        "2026-11-25T18:00:00.Z",
        "2026-11-25T18:00:00+01",
    ] {
        let r = IngestMessage::parse(
            &json!({"idempotency_key":"k","recipient":"u","template":"t","kind":"marketing","send_at":d}).to_string(),
        )
        .is_ok();
        println!("dt {d:?}: rust={r} fmt={}", dfmt.is_valid(&json!(d)));
    }
    for q in ["22:00", " 9:00", "9:00 ", "09: 0", "09:5 ", "24:00", "23:59", "+9:00", "09:60", "9:5  ", "0900 "] {
        let r = IngestMessage::parse(&base("quiet_hours", json!({"start": q, "end": "08:00"}))).is_ok();
        println!("qh {q:?}: rust={r}");
    }
    for b in [
        "[]",
        "[null]",
        "[\"notify\"]",
        "null",
        "{\"type\":null,\"idempotency_key\":\"k\",\"recipient\":\"u\",\"template\":\"t\",\"kind\":\"marketing\"}",
        "{\"idempotency_key\":\"k\",\"recipient\":\"u\",\"template\":\"t\",\"kind\":\"marketing\",\"topic\":null,\"channels\":null,\"campaign\":null,\"send_at\":null}",
        "{\"idempotency_key\":\"k\",\"recipient\":\"u\",\"template\":\"t\",\"kind\":\"marketing\",\"data\":null}",
        "{\"idempotency_key\":\"k\",\"recipient\":\"u\",\"template\":\"t\",\"kind\":\"marketing\",\"mode\":null}",
        "{\"idempotency_key\":\"k\",\"recipient\":\"u\",\"template\":\"t\",\"kind\":\"marketing\",\"kind\":\"marketing\"}",
        "{\"type\":\"erase_recipient\",\"recipient\":\"u\",\"type\":\"erase_recipient\"}",
        "{\"type\":\"set_consent\",\"recipient\":\"u\",\"channel\":\"email\",\"granted\":true,\"source\":\"x\",\"topic\":null,\"at\":null}",
        "{\"type\":\"upsert_recipient\",\"recipient\":\"u\",\"timezone\":\"utc\"}",
        "{\"type\":\"upsert_recipient\",\"recipient\":\"u\",\"timezone\":\"UTC\"}",
        "{\"type\":\"upsert_recipient\",\"recipient\":\"u\",\"timezone\":\"Etc/GMT+5\"}",
        "{\"type\":\"upsert_recipient\",\"recipient\":\"u\",\"timezone\":\"europe/paris\"}",
        "{\"type\":\"upsert_recipient\",\"recipient\":\"u\",\"attributes\":null,\"email\":null,\"phone\":null,\"timezone\":null,\"locale\":null,\"quiet_hours\":null}",
    ] {
        println!("body {b}: {:?}", IngestMessage::parse(b).map(|m| m.type_name()));
    }
}
