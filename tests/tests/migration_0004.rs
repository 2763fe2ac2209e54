//! Migration 0004 (personal data apart) on a warehouse that already holds data, on the
//! real ClickHouse 18.16 of the dev stack: the database is taken to 0003 only, rows are stored in
//! their pre-0004 shape (identity, contact and payloads in `ehac`), then `migrate` runs 0004.
//! Every old declaration's identity and every old rejection's payload must be in `ehac_pii`,
//! gone from `ehac`, and the old rows still counted there, once each.

// A pre-0004 declaration row is one json! of 60 columns.
#![recursion_limit = "256"]

use std::collections::BTreeMap;

use ehac_devstack::{Stack, StackOptions, Tools, WarehouseUser};
use ehac_stream::warehouse::{self, MIGRATIONS};
use serde_json::{json, Value};

/// The columns 0004 moves out of the analyst database (or drops there), by table.
const IDENTIFYING: [(&str, &str); 13] = [
    ("declarations", "nik"),
    ("declarations", "passport_number"),
    ("declarations", "full_name"),
    ("declarations", "date_of_birth"),
    ("declarations", "phone"),
    ("declarations", "email"),
    ("declarations", "seat"),
    ("declarations", "destination_street"),
    ("declarations", "destination_postal_code"),
    ("rejections", "error_messages"),
    ("rejections", "payload"),
    ("rejections", "payload_json"),
    ("verifications", "nik"),
];

/// The identity and contact of one traveller, as `ehac_pii.identities` names them.
struct Traveller {
    declaration_id: &'static str,
    nik: Option<&'static str>,
    passport_number: Option<&'static str>,
    nationality: &'static str,
    full_name: &'static str,
    date_of_birth: &'static str,
    phone: &'static str,
    email: Option<&'static str>,
    seat: Option<&'static str>,
    destination_street: &'static str,
    destination_postal_code: Option<&'static str>,
    kafka_partition: i32,
    kafka_offset: i64,
}

/// Three travellers stored before 0004: an Indonesian with a NIK, a foreigner with a passport and
/// no email, and one with neither seat nor postal code (the Nullable columns both ways).
const TRAVELLERS: [Traveller; 3] = [
    Traveller {
        declaration_id: "pre0004-a",
        nik: Some("3174015203900001"),
        passport_number: None,
        nationality: "ID",
        full_name: "Siti Rahmawati",
        date_of_birth: "1990-03-12",
        phone: "+6281234567890",
        email: Some("siti@example.id"),
        seat: Some("12A"),
        destination_street: "Jl. Merdeka No. 5",
        destination_postal_code: Some("10110"),
        kafka_partition: 0,
        kafka_offset: 17,
    },
    Traveller {
        declaration_id: "pre0004-b",
        nik: None,
        passport_number: Some("N1234567"),
        nationality: "AU",
        full_name: "Jane O'Neill",
        date_of_birth: "1908-11-30",
        phone: "+61412345678",
        email: None,
        seat: Some("3C"),
        destination_street: "Jl. Raya Kuta 88",
        destination_postal_code: Some("80361"),
        kafka_partition: 1,
        kafka_offset: 4,
    },
    Traveller {
        declaration_id: "pre0004-c",
        nik: Some("5171044107850002"),
        passport_number: None,
        nationality: "ID",
        full_name: "Made Wirawan",
        date_of_birth: "1985-07-01",
        phone: "+6285712345678",
        email: Some("made@example.id"),
        seat: None,
        destination_street: "Jl. Gajah Mada 1",
        destination_postal_code: None,
        kafka_partition: 1,
        kafka_offset: 5,
    },
];

/// A declaration row as 0001..0003 left the table: identity beside the counting columns.
fn pre_0004_declaration(t: &Traveller) -> Value {
    json!({
        "declaration_id": t.declaration_id,
        "client_id": "migration-0004-test",
        "channel": "app",
        "submitted_at": "2026-03-01 08:00:00",
        "received_at": "2026-03-01 08:00:01",
        "nik": t.nik,
        "passport_number": t.passport_number,
        "nationality": t.nationality,
        "full_name": t.full_name,
        "sex": "female",
        "date_of_birth": t.date_of_birth,
        "phone": t.phone,
        "email": t.email,
        "transport_mode": "air",
        "carrier": "GA",
        "flight_number": "GA715",
        "seat": t.seat,
        "departure_port": "SYD",
        "departure_port_name": "Sydney Kingsford Smith",
        "departure_city": "Sydney",
        "departure_subdivision": "NSW",
        "departure_country": "AU",
        "departure_time_zone": "Australia/Sydney",
        "arrival_port": "CGK",
        "arrival_port_name": "Soekarno-Hatta",
        "arrival_city": "Tangerang",
        "arrival_subdivision": "ID-BT",
        "arrival_country": "ID",
        "arrival_time_zone": "Asia/Jakarta",
        "departure_at": "2026-03-01 10:00:00",
        "arrival_at": "2026-03-01 17:00:00",
        "arrival_date": "2026-03-02",
        "arrival_local_hour": 0,
        "domestic": 0,
        "destination_street": t.destination_street,
        "destination_city": "Jakarta Pusat",
        "destination_province": "DKI Jakarta",
        "destination_postal_code": t.destination_postal_code,
        "fever": 0,
        "cough": 1,
        "shortness_of_breath": 0,
        "contact_with_case": 0,
        "vaccination_doses": 2,
        "test_kind": "pcr",
        "test_result": "negative",
        "test_taken_on": "2026-02-28",
        "home_province": "DKI Jakarta",
        "home_regency": "Jakarta Pusat",
        "age_years": 36,
        "age_band": "30-39",
        "risk_flags": ["cough"],
        "triage": "yellow",
        "warnings": [],
        "gateway_version": "0.1.0",
        "enricher_version": "0.1.0",
        "kafka_partition": t.kafka_partition,
        "kafka_offset": t.kafka_offset,
        "verification_status": if t.nik.is_some() { "verified" } else { "not_applicable" },
    })
}

/// What `ehac_pii.identities` must hold for a traveller stored before 0004.
fn expected_identity(t: &Traveller) -> Value {
    json!({
        "declaration_id": t.declaration_id,
        "traveller_key": "",
        "pepper_version": 0,
        "nik": t.nik,
        "passport_number": t.passport_number,
        "nationality": t.nationality,
        "full_name": t.full_name,
        "date_of_birth": t.date_of_birth,
        "phone": t.phone,
        "email": t.email,
        "seat": t.seat,
        "destination_street": t.destination_street,
        "destination_postal_code": t.destination_postal_code,
        "kafka_partition": t.kafka_partition,
        "kafka_offset": t.kafka_offset,
    })
}

/// Two rejections stored before 0004: one of a decodable record (its messages quote the value)
/// and one of bytes that did not decode (no declaration id).
fn pre_0004_rejections() -> Vec<Value> {
    vec![
        json!({
            "declaration_id": "pre0004-r1",
            "client_id": "migration-0004-test",
            "service": "ehac-enricher",
            "service_version": "0.1.0",
            "source_topic": "ehac.declarations.raw",
            "source_partition": 2,
            "source_offset": 40,
            "rejected_at": "2026-03-01 09:00:00",
            "error_codes": ["invalid_nik"],
            "error_fields": ["traveller.nik"],
            "error_messages": ["nik 3174015203901234 fails the checksum"],
            "payload": "\u{2}\u{10}Obj pre0004-r1 3174015203901234",
            "payload_json": "{\"declaration_id\":\"pre0004-r1\",\"nik\":\"3174015203901234\"}",
            "kafka_partition": 0,
            "kafka_offset": 7,
        }),
        json!({
            "declaration_id": "",
            "client_id": "",
            "service": "ehac-enricher",
            "service_version": "0.1.0",
            "source_topic": "ehac.declarations.raw",
            "source_partition": 3,
            "source_offset": 41,
            "rejected_at": "2026-03-01 09:05:00",
            "error_codes": ["undecodable"],
            "error_fields": [""],
            "error_messages": ["not Avro: unexpected end of input"],
            "payload": "\u{1}\u{ff}garbage",
            "payload_json": "",
            "kafka_partition": 1,
            "kafka_offset": 8,
        }),
    ]
}

/// What `ehac_pii.rejected_payloads` must hold for a rejection stored before 0004.
fn expected_payload(rejection: &Value) -> Value {
    let keys = [
        "declaration_id",
        "source_topic",
        "source_partition",
        "source_offset",
        "error_messages",
        "payload",
        "payload_json",
        "kafka_partition",
        "kafka_offset",
    ];
    Value::Object(keys.iter().map(|k| (k.to_string(), rejection[k].clone())).collect())
}

/// ClickHouse over HTTP as the migrator (the user `ehac migrate` runs as).
struct Warehouse {
    url: String,
    http: reqwest::Client,
}

impl Warehouse {
    async fn sql(&self, sql: &str) -> String {
        // 64-bit integers as JSON numbers, so rows compare with what was inserted.
        let response = self
            .http
            .post(format!("{}/?output_format_json_quote_64bit_integers=0", self.url))
            .body(sql.to_owned())
            .send()
            .await
            .expect("ClickHouse answers");
        let status = response.status();
        let answer = response.text().await.unwrap();
        assert!(status.is_success(), "{sql}\n{answer}");
        answer
    }

    async fn insert(&self, table: &str, rows: &[Value]) {
        let body: String = rows.iter().map(|row| format!("{row}\n")).collect();
        self.sql(&format!("INSERT INTO {table} FORMAT JSONEachRow\n{body}")).await;
    }

    async fn rows(&self, sql: &str) -> Vec<Value> {
        self.sql(&format!("{sql} FORMAT JSONEachRow")).await.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    }

    async fn number(&self, sql: &str) -> u64 {
        let answer = self.sql(sql).await;
        answer.trim().parse().unwrap_or_else(|_| panic!("{sql} answered {answer}"))
    }

    /// Everything a repeated `migrate` could change: row counts of every table and the columns
    /// of both databases, and the migrations recorded.
    async fn state(&self) -> String {
        let tables = self
            .sql("SELECT database, name FROM system.tables WHERE database IN ('ehac', 'ehac_pii') AND engine NOT IN ('View') ORDER BY database, name FORMAT TabSeparated")
            .await;
        let mut state = String::new();
        for line in tables.lines() {
            let (database, table) = line.split_once('\t').unwrap();
            let count = self.sql(&format!("SELECT count() FROM `{database}`.`{table}`")).await;
            state.push_str(&format!("{database}.{table}\t{count}"));
        }
        state.push_str(
            &self
                .sql("SELECT database, table, name, type FROM system.columns WHERE database IN ('ehac', 'ehac_pii') ORDER BY database, table, name FORMAT TabSeparated")
                .await,
        );
        state.push_str(&self.sql("SELECT version, name, checksum FROM ehac.schema_migrations ORDER BY version FORMAT TabSeparated").await);
        state
    }
}

#[tokio::test]
async fn migration_0004_moves_the_rows_stored_before_it() {
    ehac_stream::telemetry::init_logging();
    let dir = ehac_tests::test_dir(Some("migration-0004"));
    let _ = std::fs::remove_dir_all(&dir);
    // The stack's servers die with this test's thread; no `provision`: it would migrate to the end.
    let stack = Stack::start(&Tools::find().unwrap(), StackOptions::ephemeral(&dir).unwrap()).await.unwrap();
    let migrator = warehouse::client(&stack.clickhouse_as(WarehouseUser::Migrator));
    let w = Warehouse { url: stack.clickhouse_url(), http: stack.clickhouse_http(WarehouseUser::Migrator) };

    let before_0004 = &MIGRATIONS[..3];
    assert_eq!(before_0004.last().unwrap().version, 3);
    assert_eq!(
        warehouse::migrate_these(&migrator, None, before_0004).await.unwrap(),
        vec!["0001_declarations", "0002_verification", "0003_exactly_once"]
    );

    let declarations: Vec<Value> = TRAVELLERS.iter().map(pre_0004_declaration).collect();
    w.insert("ehac.declarations", &declarations).await;
    let rejections = pre_0004_rejections();
    w.insert("ehac.rejections", &rejections).await;
    // A reconciled verification, whose NIK 0004 drops (it is in the identities already).
    w.insert(
        "ehac.verifications",
        &[json!({"declaration_id": "pre0004-a", "nik": TRAVELLERS[0].nik, "status": "verified", "checked_at": "2026-03-01 12:00:00", "checked_by": "ehac-reconcile 0.1.0"})],
    )
    .await;
    // The shape 0004 starts from, so the test is about moving data, not about an empty table.
    assert_eq!(w.number("SELECT count() FROM ehac.declarations WHERE nik IS NOT NULL OR passport_number IS NOT NULL").await, 3);
    assert_eq!(w.number("SELECT count() FROM ehac.rejections WHERE payload != ''").await, 2);
    assert_eq!(w.number("SELECT count() FROM system.databases WHERE name = 'ehac_pii'").await, 0);

    // 0004 and whatever came after it (0005 adds the home district code).
    let later: Vec<&str> = MIGRATIONS[3..].iter().map(|m| m.name).collect();
    assert_eq!(later[0], "0004_personal_data");
    assert_eq!(warehouse::migrate(&migrator, None).await.unwrap(), later);

    // Every old declaration: exactly one identity row, with the values it had.
    let identities = w
        .rows(
            "SELECT declaration_id, traveller_key, pepper_version, nik, passport_number, nationality, full_name, date_of_birth, phone, email, seat, destination_street, destination_postal_code, kafka_partition, kafka_offset
             FROM ehac_pii.identities ORDER BY declaration_id",
        )
        .await;
    let expected: Vec<Value> = TRAVELLERS.iter().map(expected_identity).collect();
    assert_eq!(identities, expected, "ehac_pii.identities after 0004");
    // The sink's dedup window for identities knows the old rows' positions.
    let positions =
        w.rows("SELECT kafka_partition, kafka_offset, declaration_id FROM ehac_pii.identity_positions ORDER BY declaration_id").await;
    let expected_positions: Vec<Value> = TRAVELLERS
        .iter()
        .map(|t| json!({"kafka_partition": t.kafka_partition, "kafka_offset": t.kafka_offset, "declaration_id": t.declaration_id}))
        .collect();
    assert_eq!(positions, expected_positions, "ehac_pii.identity_positions after 0004");

    // Every old rejection's payload, messages and JSON.
    let payloads = w
        .rows(
            "SELECT declaration_id, source_topic, source_partition, source_offset, error_messages, payload, payload_json, kafka_partition, kafka_offset
             FROM ehac_pii.rejected_payloads ORDER BY source_offset",
        )
        .await;
    let expected: Vec<Value> = rejections.iter().map(expected_payload).collect();
    assert_eq!(payloads, expected, "ehac_pii.rejected_payloads after 0004");
    assert_eq!(w.number("SELECT count() FROM ehac_pii.rejected_payload_positions").await, 2);

    // No identifying column is left in the analyst database.
    let left: Vec<Value> = w.rows("SELECT table, name FROM system.columns WHERE database = 'ehac' ORDER BY table, name").await;
    let left: Vec<(String, String)> =
        left.iter().map(|c| (c["table"].as_str().unwrap().to_owned(), c["name"].as_str().unwrap().to_owned())).collect();
    for (table, column) in IDENTIFYING {
        assert!(!left.contains(&(table.to_owned(), column.to_owned())), "ehac.{table}.{column} is still there");
    }
    // ...while what counting needs is (and the check above looked at the right tables).
    for (table, column) in
        [("declarations", "home_province"), ("declarations", "traveller_key"), ("rejections", "error_codes"), ("verifications", "status")]
    {
        assert!(left.contains(&(table.to_owned(), column.to_owned())), "ehac.{table}.{column} is missing");
    }

    // The old rows are still counted, once each, under an empty key of pepper version 0.
    let counted = w
        .rows("SELECT declaration_id, traveller_key, pepper_version, home_province, age_band, triage FROM ehac.declarations ORDER BY declaration_id")
        .await;
    let expected: Vec<Value> = TRAVELLERS
        .iter()
        .map(|t| {
            json!({"declaration_id": t.declaration_id, "traveller_key": "", "pepper_version": 0, "home_province": "DKI Jakarta", "age_band": "30-39", "triage": "yellow"})
        })
        .collect();
    assert_eq!(counted, expected, "ehac.declarations after 0004");
    assert_eq!(w.sql("SELECT count(), uniqExact(declaration_id) FROM ehac.declarations FORMAT TabSeparated").await, "3\t3\n");
    assert_eq!(w.sql("SELECT count(), uniqExact(declaration_id) FROM ehac.declarations FINAL FORMAT TabSeparated").await, "3\t3\n");
    let reasons = w.rows("SELECT declaration_id, error_codes, error_fields FROM ehac.rejections ORDER BY source_offset").await;
    let expected: Vec<Value> = rejections
        .iter()
        .map(|r| json!({"declaration_id": r["declaration_id"], "error_codes": r["error_codes"], "error_fields": r["error_fields"]}))
        .collect();
    assert_eq!(reasons, expected, "ehac.rejections keeps the reasons' codes and fields");
    let verification = w.sql("SELECT declaration_id, toString(status) FROM ehac.verifications FORMAT TabSeparated").await;
    assert_eq!(verification, "pre0004-a\tverified\n");

    // A second run applies nothing and changes nothing.
    let state = w.state().await;
    assert!(state.contains("ehac_pii.identities\t3\n"), "{state}");
    assert!(warehouse::migrate(&migrator, None).await.unwrap().is_empty());
    assert_eq!(w.state().await, state, "a second migrate changed the warehouse");
    let per_version: BTreeMap<u64, u64> = w
        .rows("SELECT version, count() AS n FROM ehac.schema_migrations GROUP BY version")
        .await
        .iter()
        .map(|r| (r["version"].as_u64().unwrap(), r["n"].as_u64().unwrap()))
        .collect();
    assert_eq!(per_version, MIGRATIONS.iter().map(|m| (u64::from(m.version), 1)).collect());
}
