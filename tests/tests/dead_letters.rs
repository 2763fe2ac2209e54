//! The dead-letter round trip on a real broker and ClickHouse: records an older gateway let
//! through are rejected by the enricher with every reason and their original bytes; after a
//! rule fix, `ehac dlq replay` sends the chosen ones through again, they land exactly once, and
//! replaying again sends nothing.

use std::time::Duration;

use ehac_cli::dlq::{replay, Filter, ReplayArgs};
use ehac_domain::sample::Flaw;
use ehac_stream::config::{KafkaArgs, PolicyArgs};
use ehac_tests::{declarations, pipeline, unique_client, PipelineOptions};

const PATIENCE: Duration = Duration::from_secs(90);

/// Moves a declaration's trip `days` later.
fn postpone(form: &mut ehac_domain::DeclarationForm, days: i64) {
    for time in [&mut form.trip.departure_time, &mut form.trip.arrival_time] {
        let t = chrono::NaiveDateTime::parse_from_str(time, "%Y-%m-%dT%H:%M").unwrap() + chrono::Duration::days(days);
        *time = t.format("%Y-%m-%dT%H:%M").to_string();
    }
}

#[tokio::test]
async fn rejected_declarations_are_replayed_after_a_rule_fix_without_duplicates() {
    let p = pipeline();
    let client = unique_client("dlq");
    // 20 filed 5 days ahead (today's window is 3 days), 5 to an unknown airport, 5 fine.
    let mut ahead = declarations(20, &client, Flaw::None, 11);
    for form in &mut ahead {
        postpone(form, 5);
    }
    let mut unknown_airport = declarations(5, &client, Flaw::None, 12);
    for form in &mut unknown_airport {
        form.trip.transport_mode = Some(ehac_domain::form::TransportMode::Air);
        form.trip.flight_number = "GA404".into();
        form.trip.departure_port = "CGK".into();
        form.trip.arrival_port = "QQQ".into();
    }
    let ahead_ids = p.produce_raw(ahead).await;
    let airport_ids = p.produce_raw(unknown_airport).await;
    p.produce_raw(declarations(5, &client, Flaw::None, 13)).await;

    let rejected = p
        .wait_for_count(&format!("SELECT uniqExact(declaration_id) FROM ehac.rejections WHERE client_id = '{client}'"), 25, PATIENCE)
        .await;
    assert_eq!(rejected, 25);
    assert_eq!(p.wait_for_count(&format!("SELECT count() FROM ehac.declarations WHERE client_id = '{client}'"), 5, PATIENCE).await, 5);
    let row = p
        .sql(&format!(
            "SELECT error_codes, error_fields, service, service_version != '', rejected_at > toDateTime('2026-01-01 00:00:00'), length(payload) > 100
             FROM ehac.rejections
             ANY INNER JOIN (SELECT source_topic, source_partition, source_offset, payload FROM ehac_pii.rejected_payloads) AS rejected
             USING (source_topic, source_partition, source_offset)
             WHERE declaration_id = '{}'",
            ahead_ids[0]
        ))
        .await;
    assert_eq!(
        row.trim(),
        "['departure_outside_window']\t['trip.departure_time']\tehac-enricher\t1\t1\t1",
        "code, field, service, version, time and original payload"
    );

    // The health ministry widens the window to 8 days; the enricher is redeployed with it.
    p.restart_enricher(PipelineOptions {
        policy: PolicyArgs { departure_window_future_days: 8, ..PolicyArgs::default() },
        ..PipelineOptions::default()
    })
    .await;

    let args = |codes: &[&str]| ReplayArgs {
        kafka: KafkaArgs { kafka_brokers: p.brokers.clone(), topics: p.topics.clone() },
        // Payloads live in the identity database: replay is an investigator's job.
        clickhouse: p.clickhouse_as(ehac_devstack::WarehouseUser::Investigator),
        filter: Filter {
            codes: codes.iter().map(|c| c.to_string()).collect(),
            client_id: Some(client.clone()),
            limit: 1_000,
            ..Filter::default()
        },
        dry_run: false,
        wait_secs: PATIENCE.as_secs(),
    };
    let report = replay(&args(&["departure_outside_window"])).await.unwrap();
    assert_eq!((report.replayed, report.stored, report.rejected_again, report.in_flight), (20, 20, 0, 0), "{}", report.line());

    // Replaying the same selection again sends nothing: they all landed.
    let again = replay(&args(&["departure_outside_window"])).await.unwrap();
    assert_eq!(again.replayed, 0, "{}", again.line());

    // The unknown airport is not fixed: replayed, rejected again with the same code.
    let airport = replay(&args(&["unknown_airport"])).await.unwrap();
    assert_eq!((airport.replayed, airport.stored, airport.rejected_again), (5, 0, 5), "{}", airport.line());
    assert_eq!(airport.rejected_codes.get("unknown_airport"), Some(&5));

    // Exactly once: every replayed declaration is one row, none of the others is stored.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ids = ahead_ids.iter().map(|id| format!("'{id}'")).collect::<Vec<_>>().join(",");
    let counts = p.sql(&format!("SELECT count(), uniqExact(declaration_id) FROM ehac.declarations WHERE declaration_id IN ({ids})")).await;
    assert_eq!(counts.trim(), "20\t20");
    let ids = airport_ids.iter().map(|id| format!("'{id}'")).collect::<Vec<_>>().join(",");
    assert_eq!(p.sql(&format!("SELECT count() FROM ehac.declarations WHERE declaration_id IN ({ids})")).await.trim(), "0");
    assert_eq!(p.sql(&format!("SELECT count() FROM ehac.declarations WHERE client_id = '{client}'")).await.trim(), "25");
}
