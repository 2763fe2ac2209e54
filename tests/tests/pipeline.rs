//! The walking skeleton, end to end on a real broker and a real ClickHouse: HTTP answers, rows
//! stored exactly once, rejections with reasons, poison messages that do not stall anything.

use std::collections::BTreeSet;
use std::time::Duration;

use ehac_domain::sample::Flaw;
use ehac_tests::{declarations, pipeline, unique_client};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Message};

const PATIENCE: Duration = Duration::from_secs(90);

#[tokio::test]
async fn valid_declarations_are_stored_exactly_once() {
    let p = pipeline();
    let client = unique_client("valid");
    let mut accepted = BTreeSet::new();
    for form in declarations(300, &client, Flaw::None, 1) {
        let (status, body) = p.post(serde_json::to_vec(&form).unwrap()).await;
        assert_eq!(status, 202, "{body}");
        accepted.insert(body["declaration_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(accepted.len(), 300, "every declaration gets its own id");

    let count = p.wait_for_count(&format!("SELECT count() FROM ehac.declarations WHERE client_id = '{client}'"), 300, PATIENCE).await;
    assert_eq!(count, 300);
    // Let any straggling duplicate arrive before counting distinct ids.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ids = p.sql(&format!("SELECT declaration_id FROM ehac.declarations WHERE client_id = '{client}' ORDER BY declaration_id")).await;
    let stored: Vec<&str> = ids.lines().collect();
    assert_eq!(stored.len(), 300, "no duplicates");
    assert_eq!(stored.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>(), accepted);

    // Enrichment reached the table.
    let row = p.sql(&format!("SELECT countIf(arrival_time_zone = ''), countIf(transport_mode = 'air' AND arrival_port_name = ''), countIf(nationality = 'IDN' AND home_province = ''), countIf(nationality = 'IDN' AND length(home_district_code) != 6), countIf(nationality != 'IDN' AND home_district_code != ''), countIf(nationality = 'IDN') FROM ehac.declarations WHERE client_id = '{client}'")).await;
    let (checks, citizens) = row.trim().rsplit_once('\t').unwrap();
    assert_eq!(checks, "0\t0\t0\t0\t0", "every row has time zone, airport name and (citizens only) home province and district code");
    assert!(citizens.parse::<u32>().unwrap() > 0, "the sample has citizens");
}

#[tokio::test]
async fn a_client_supplied_declaration_id_is_kept() {
    let p = pipeline();
    let client = unique_client("client-id");
    let mut form = declarations(1, &client, Flaw::None, 2).remove(0);
    form.declaration_id = Some(format!("{client}-0001"));
    let (status, body) = p.post(serde_json::to_vec(&form).unwrap()).await;
    assert_eq!(status, 202);
    // Scoped by client: another client's "-0001" is another declaration.
    let id = ehac_gateway::client_declaration_id(&client, &format!("{client}-0001"));
    assert_eq!(body["declaration_id"], id);
    let count = p.wait_for_count(&format!("SELECT count() FROM ehac.declarations WHERE declaration_id = '{id}'"), 1, PATIENCE).await;
    assert_eq!(count, 1);
}

#[tokio::test]
async fn requests_retried_with_the_same_idempotency_key_are_stored_once() {
    let p = pipeline();
    let client = unique_client("idempotent");
    let mut ids = BTreeSet::new();
    for (i, form) in declarations(20, &client, Flaw::None, 7).into_iter().enumerate() {
        let body = serde_json::to_vec(&form).unwrap();
        let key = format!("{client}-attempt-{i}");
        let mut answers = BTreeSet::new();
        // The first request and two retries, as a kiosk on a flaky link would send them.
        for _ in 0..3 {
            let (status, answer) = p.post_with(body.clone(), &[("Idempotency-Key", &key)]).await;
            assert_eq!(status, 202, "{answer}");
            answers.insert(answer["declaration_id"].as_str().unwrap().to_owned());
        }
        assert_eq!(answers.len(), 1, "every retry gets the same declaration id");
        ids.extend(answers);
    }
    assert_eq!(ids.len(), 20);
    let stored = p.wait_for_count(&format!("SELECT count() FROM ehac.declarations WHERE client_id = '{client}'"), 20, PATIENCE).await;
    assert_eq!(stored, 20);
    // Let any duplicate arrive before counting: the raw topic holds 60 records for 20 ids.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let counts = p.sql(&format!("SELECT count(), uniqExact(declaration_id) FROM ehac.declarations WHERE client_id = '{client}'")).await;
    assert_eq!(counts.trim(), "20\t20", "one row per declaration, without FINAL");

    let (status, body) = p.post_with("{}", &[("Idempotency-Key", "")]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["field"], "Idempotency-Key");
}

#[tokio::test]
async fn reference_failures_go_to_the_rejected_topic_and_table_with_reasons() {
    let p = pipeline();
    let client = unique_client("rejected");
    // Today's gateway refuses these with 422; a gateway of an older version let them through,
    // and the enricher checks again.
    let ids: BTreeSet<String> = p.produce_raw(declarations(20, &client, Flaw::Reference, 3)).await.into_iter().collect();
    let count = p.wait_for_count(&format!("SELECT count() FROM ehac.rejections WHERE client_id = '{client}'"), 20, PATIENCE).await;
    assert_eq!(count, 20);
    let rows = p.sql(&format!("SELECT declaration_id, service, length(error_codes), error_codes[1], error_fields[1], error_messages[1] != '', length(payload) > 10, payload_json != '' FROM ehac.rejections ANY INNER JOIN (SELECT source_topic, source_partition, source_offset, error_messages, payload, payload_json FROM ehac_pii.rejected_payloads) AS rejected USING (source_topic, source_partition, source_offset) WHERE client_id = '{client}'")).await;
    for row in rows.lines() {
        let cols: Vec<&str> = row.split('\t').collect();
        assert!(ids.contains(cols[0]), "{row}");
        assert_eq!(cols[1], "ehac-enricher");
        assert!(cols[2].parse::<u32>().unwrap() >= 1);
        assert!(
            ["unknown_district", "unknown_airport", "arrival_before_departure", "departure_outside_window"].contains(&cols[3]),
            "{row}"
        );
        assert!(cols[4].starts_with("trip.") || cols[4] == "traveller.nik", "{row}");
        assert_eq!(&cols[5..], ["1", "1", "1"], "message, original payload and readable JSON kept (identity database): {row}");
    }
    let stored = p.sql(&format!("SELECT count() FROM ehac.declarations WHERE client_id = '{client}'")).await;
    assert_eq!(stored.trim(), "0", "a rejected declaration is not stored as accepted");

    // The rejected topic itself carries them, readable with the rejection schema.
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &p.brokers)
        .set("group.id", format!("{client}-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[&p.topics.rejected]).unwrap();
    let mut seen = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while seen.len() < ids.len() {
        let message = tokio::time::timeout_at(deadline, consumer.recv()).await.expect("rejections on the topic").unwrap();
        let rejection = ehac_codec::REJECTION.decode(message.payload().unwrap()).unwrap();
        if rejection.client_id == client {
            assert!(!rejection.errors.is_empty());
            assert_eq!(message.key(), rejection.declaration_id.as_deref().map(str::as_bytes));
            seen.insert(rejection.declaration_id.unwrap());
        }
    }
    assert_eq!(seen, ids);
}

#[tokio::test]
async fn form_errors_get_422_listing_every_field() {
    let p = pipeline();
    let (status, body) = p.post("{}").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "invalid_declaration");
    let fields: Vec<&str> = body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    for field in ["client_id", "traveller.full_name", "trip.arrival_port", "health.fever"] {
        assert!(fields.contains(&field), "{field} not in {fields:?}");
    }
    assert!(body["errors"].as_array().unwrap().iter().all(|e| e["code"] == "required" && e["message"].as_str().unwrap().len() > 5));

    let client = unique_client("form");
    for form in declarations(8, &client, Flaw::Form, 4) {
        let (status, body) = p.post(serde_json::to_vec(&form).unwrap()).await;
        assert_eq!(status, 422, "{body}");
        assert!(!body["errors"].as_array().unwrap().is_empty());
    }
}

#[tokio::test]
async fn reference_errors_get_422_at_the_gateway_too() {
    let p = pipeline();
    let client = unique_client("reference-422");
    let mut codes = BTreeSet::new();
    for form in declarations(30, &client, Flaw::Reference, 6) {
        let (status, body) = p.post(serde_json::to_vec(&form).unwrap()).await;
        assert_eq!(status, 422, "the gateway runs the enricher's rules: {body}");
        for e in body["errors"].as_array().unwrap() {
            codes.insert(e["code"].as_str().unwrap().to_owned());
        }
    }
    for code in ["unknown_airport", "arrival_before_departure", "departure_outside_window"] {
        assert!(codes.contains(code), "{code} not among {codes:?}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let leaked = p.sql(&format!("SELECT (SELECT count() FROM ehac.declarations WHERE client_id = '{client}') + (SELECT count() FROM ehac.rejections WHERE client_id = '{client}')")).await;
    assert_eq!(leaked.trim(), "0", "nothing answered 422 enters the pipeline");
}

#[tokio::test]
async fn malformed_json_gets_400_with_the_reason() {
    let p = pipeline();
    let (status, body) = p.post("{\"client_id\": \"kiosk-1\", ").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "malformed_json");
    assert!(body["message"].as_str().unwrap().contains("line 1"), "{body}");

    let (status, body) = p.post(r#"{"traveller": {"full_name": 42}}"#).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["field"], "traveller.full_name", "{body}");

    let (status, body) = p.post(r#"{"channel": "fax"}"#).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("kiosk"), "the allowed values are named: {body}");

    let (status, body) = p.post(r#"{"travelers": {}}"#).await;
    assert_eq!(status, 400, "a misspelt field is an error, not silently dropped: {body}");
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413() {
    let p = pipeline();
    let big = format!("{{\"client_id\": \"{}\"}}", "x".repeat(100 * 1024));
    let (status, body) = p.post(big).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"], "payload_too_large");
}

#[tokio::test]
async fn unknown_routes_get_404_and_wrong_methods_405() {
    let p = pipeline();
    let (status, body) = p.get("/v2/declarations").await;
    assert_eq!(status, 404);
    assert!(body.contains("POST /v1/declarations"), "{body}");
    let (status, _) = p.get("/v1/declarations").await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn health_readiness_and_metrics_are_served() {
    let p = pipeline();
    assert_eq!(p.get_admin("/healthz").await.0, 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = p.get_admin("/readyz").await;
        if status == 200 {
            assert!(body.contains("\"ready\":true"), "{body}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "gateway never ready: {body}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    p.post("{}").await;
    let (status, metrics) = p.get_admin("/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("ehac_gateway_requests_total{outcome=\"invalid\",service=\"gateway\"}"), "{metrics}");
    assert!(metrics.contains("ehac_gateway_field_errors_total"), "{metrics}");
}

#[tokio::test]
async fn a_poison_message_is_rejected_without_stalling_its_partition() {
    let p = pipeline();
    let client = unique_client("poison");
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &p.brokers).create().unwrap();
    // Same key as the first valid declaration below (its id as the gateway scopes it), so it
    // lands on the same partition before them.
    let own_id = format!("{client}-0");
    let key = ehac_gateway::client_declaration_id(&client, &own_id);
    let mut positions = Vec::new();
    for payload in [&b"not avro at all"[..], &[0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 9][..]] {
        let delivery = producer.send(FutureRecord::to(&p.topics.raw).key(&key).payload(payload), Timeout::Never).await.unwrap();
        positions.push((delivery.partition, delivery.offset));
    }
    for (i, mut form) in declarations(5, &client, Flaw::None, 5).into_iter().enumerate() {
        form.declaration_id = Some(if i == 0 { own_id.clone() } else { format!("{client}-{i}") });
        assert_eq!(p.post(serde_json::to_vec(&form).unwrap()).await.0, 202);
    }
    let stored = p.wait_for_count(&format!("SELECT count() FROM ehac.declarations WHERE client_id = '{client}'"), 5, PATIENCE).await;
    assert_eq!(stored, 5, "declarations behind the poison still arrive");

    // The poison travels by the rejected topic, so it may land a moment after the declarations.
    let (partition, offsets) = (positions[0].0, positions.iter().map(|(_, o)| o.to_string()).collect::<Vec<_>>().join(","));
    let where_poison = format!("source_topic = '{}' AND source_partition = {partition} AND source_offset IN ({offsets})", p.topics.raw);
    let rejected = p.wait_for_count(&format!("SELECT count() FROM ehac.rejections WHERE {where_poison}"), 2, PATIENCE).await;
    assert_eq!(rejected, 2, "each poison message becomes one rejection");
    let poison = p.sql(&format!("SELECT DISTINCT service, error_codes[1], declaration_id, length(payload) FROM ehac.rejections ANY INNER JOIN (SELECT source_topic, source_partition, source_offset, payload FROM ehac_pii.rejected_payloads) AS rejected USING (source_topic, source_partition, source_offset) WHERE {where_poison} ORDER BY length(payload)")).await;
    assert_eq!(
        poison, "ehac-enricher\tundecodable\t\t11\nehac-enricher\tundecodable\t\t15\n",
        "no id can be read from an undecodable payload; its bytes are kept"
    );
}

#[tokio::test]
async fn migrations_are_recorded_once_and_rerunning_them_changes_nothing() {
    let p = pipeline();
    let client = ehac_stream::warehouse::client(&p.clickhouse_as(ehac_devstack::WarehouseUser::Migrator));
    let applied = ehac_stream::warehouse::migrate(&client, None).await.unwrap();
    assert!(applied.is_empty(), "already applied: {applied:?}");
    let recorded = p.sql("SELECT version, count() FROM ehac.schema_migrations GROUP BY version ORDER BY version").await;
    let expected: String = ehac_stream::warehouse::MIGRATIONS.iter().map(|m| format!("{}\t1\n", m.version)).collect();
    assert_eq!(recorded, expected);
}

#[tokio::test]
async fn analyst_queries_run_on_this_clickhouse() {
    let p = pipeline();
    for (name, sql) in ehac_stream::warehouse::ANALYST_QUERIES {
        let sql = ehac_stream::warehouse::analyst_query(sql, ehac_stream::warehouse::DEFAULT_SUPPRESS_BELOW);
        let (ok, answer) = p.sql_as(ehac_devstack::WarehouseUser::Analyst, &sql).await;
        assert!(ok, "{name} as analyst: {answer}");
    }
}

/// A retried insert is dropped by ClickHouse itself: the sink's first INSERT of a batch lands
/// but its answer is lost on the way back, so the sink sends it again; the insert's
/// deduplication token (where its rows were read) makes ClickHouse drop the second one, even
/// when its bytes differ (a later stamp).
#[tokio::test]
async fn a_retried_insert_whose_answer_was_lost_is_dropped_by_clickhouse() {
    let p = pipeline();
    let writer = p.clickhouse_as(ehac_devstack::WarehouseUser::Writer);
    let upstream: std::net::SocketAddr = writer.clickhouse_url.trim_start_matches("http://").parse().unwrap();
    let proxy = ehac_tests::AnswerLosingProxy::start(upstream, b"INSERT").await;
    let lossy = ehac_sink::Warehouse::new(&ehac_stream::config::ClickHouseArgs {
        clickhouse_url: format!("http://{}", proxy.addr),
        ..writer.clone()
    });
    let direct = ehac_sink::Warehouse::new(&writer);
    // A partition no topic of the pipeline has, so only this test's rows are counted.
    let partition = 9_000 + (std::process::id() % 900) as i32;
    // A home province of their own, so the rollup's counts of these rows are told apart.
    let province = ehac_tests::unique_client("retried-insert-province");
    let records = ehac_tests::enriched_declarations(40, "retried-insert");
    let batch_of = |stamp: u32| {
        let mut batch = ehac_sink::Batch::new(stamp);
        for (i, mut record) in records.clone().into_iter().enumerate() {
            record.enrichment.home_province = province.clone();
            batch.push_declaration(record, 500 + i as i64);
        }
        batch
    };
    // The rows, their identities, and what the rollup counted of them (ClickHouse writes it
    // from the same INSERT as the rows).
    let counted = format!(
        "SELECT (SELECT count() FROM ehac.declarations WHERE kafka_partition = {partition}), \
                (SELECT count() FROM ehac_pii.identities WHERE kafka_partition = {partition}), \
                (SELECT sum(declarations) FROM ehac.arrival_counts WHERE home_province = '{province}')"
    );
    let batch = batch_of(1_800_000_000);
    let lost = batch.insert(&lossy, partition).await;
    assert!(lost.is_err() && proxy.lost_one(), "the first answer was lost: {lost:?}");
    assert_eq!(p.sql(&counted).await.trim(), "0\t40\t0", "the identity rows landed although the sink never heard so");

    // The sink's retry: the same batch again, now answered. Its identity rows are dropped.
    batch.insert(&direct, partition).await.expect("the retry is answered");
    assert_eq!(p.sql(&counted).await.trim(), "40\t40\t40", "each row once, counted once");
    // The same records from the same positions in a batch stamped later (other bytes), as a
    // replay after a restart would send them: dropped too, and not counted again.
    batch_of(1_800_000_060).insert(&direct, partition).await.expect("answered");
    assert_eq!(p.sql(&counted).await.trim(), "40\t40\t40", "each row once, whatever the bytes, counted once");
    // The rollup's sum is the rows' own count after its parts merge, too.
    let (merged, answer) = p.sql_as(ehac_devstack::WarehouseUser::Migrator, "OPTIMIZE TABLE ehac.arrival_counts FINAL").await;
    assert!(merged, "{answer}");
    assert_eq!(p.sql(&counted).await.trim(), "40\t40\t40");
}
