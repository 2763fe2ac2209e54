//! The sink's backpressure path on a real broker: a partition whose task is behind is paused,
//! its held-back messages are handed on in order, and it is resumed. Every record must arrive
//! once, and the offsets stored per partition must have no holes.
//!
//! The pipeline tests never fill a partition's buffer (4,096 messages), so this one shrinks it
//! to 16: the task falls behind the reader at once, and the partition is paused and resumed
//! many times.

use std::time::Duration;

use ehac_proving::bench::ceilings::enriched_payloads;
use ehac_tests::own_pipeline;
use rdkafka::producer::{FutureProducer, FutureRecord};

const RECORDS: u64 = 2_000;

/// The value of an unlabelled-but-for-`service` counter on a Prometheus text page.
fn counter(metrics: &str, name: &str) -> f64 {
    let line = metrics
        .lines()
        .find(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with([' ', '{'])))
        .unwrap_or_else(|| panic!("{name} not exported:\n{metrics}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_and_resumed_partition_delivers_every_record_once_without_holes() {
    let own = own_pipeline("backpressure", 2).await.expect("pipeline starts");
    let p = &own.pipeline;

    // Written straight to the enriched topic: this test is about the sink alone.
    let producer: FutureProducer = ehac_stream::kafka::producer(&p.brokers).unwrap();
    let payloads = enriched_payloads(RECORDS, 7);
    let deliveries: Vec<_> = payloads
        .iter()
        .map(|(key, payload)| {
            producer.send_result(FutureRecord::to(&p.topics.enriched).key(key).payload(payload)).map_err(|(e, _)| e).expect("queued")
        })
        .collect();
    for delivery in deliveries {
        delivery.await.expect("delivered").expect("acknowledged");
    }

    let ehac_tests::RunningSink { token, task: sink, admin } = own
        .start_sink_with(|config| {
            config.partition_buffer = 16;
            // Batches still fill while the partition is paused (each insert of ClickHouse 18 takes
            // a few hundred milliseconds here; small batches would only make the test slow).
            config.batch_max = 500;
            config.batch_linger_ms = 200;
        })
        .await;
    let stored = p.wait_for_count("SELECT count() FROM ehac.declarations", RECORDS, Duration::from_secs(180)).await;
    let metrics = reqwest::get(format!("http://{admin}/metrics")).await.unwrap().text().await.unwrap();
    token.cancel();
    sink.await.unwrap().expect("the sink stops cleanly");

    assert_eq!(stored, RECORDS);
    let distinct = p.sql("SELECT uniqExact(declaration_id) FROM ehac.declarations").await;
    assert_eq!(distinct.trim(), RECORDS.to_string(), "no declaration stored twice");
    // Per partition: as many rows as offsets from 0 to the highest, i.e. no offset skipped.
    let partitions = p.sql("SELECT kafka_partition, count(), max(kafka_offset) + 1 FROM ehac.declarations GROUP BY kafka_partition ORDER BY kafka_partition").await;
    let lines: Vec<&str> = partitions.lines().collect();
    assert_eq!(lines.len(), 2, "both partitions stored rows: {partitions}");
    for line in lines {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields[1], fields[2], "partition {}: rows vs offsets 0..max ({partitions})", fields[0]);
    }
    eprintln!(
        "pauses: {}, batches: {}",
        counter(&metrics, "ehac_sink_partition_pauses_total"),
        counter(&metrics, "ehac_sink_batch_size_count")
    );
    assert!(
        counter(&metrics, "ehac_sink_partition_pauses_total") > 0.0,
        "the partitions were paused at least once, or this test proves nothing:\n{metrics}"
    );
}
