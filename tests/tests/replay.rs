//! A Kafka replay, as an operator runs one after a ClickHouse restore or a sink bug: the
//! pipeline's sink stopped, a sink reads the enriched and rejected topics again from the
//! beginning. Every record is already stored, so nothing is stored again, and the rollup and
//! the microdata groups, which ClickHouse writes from the sink's inserts, still count each
//! declaration once.

use std::time::{Duration, Instant};

use ehac_domain::sample::Flaw;
use ehac_stream::config::KafkaArgs;
use ehac_tests::{declarations, own_pipeline, unique_client};
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

const DECLARATIONS: u64 = 400;
const REJECTED: u64 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_of_the_topics_from_the_beginning_stores_nothing_twice_and_the_rollups_count_each_declaration_once() {
    let own = own_pipeline("replay", 2).await.expect("pipeline starts");
    let p = &own.pipeline;
    let sink = own.start_sink().await;
    let client = unique_client("replay");
    for form in declarations(DECLARATIONS as usize, &client, Flaw::None, 71) {
        let (status, body) = p.post(serde_json::to_vec(&form).unwrap()).await;
        assert_eq!(status, 202, "{body}");
    }
    // Records the enricher rejects (not Avro): rejections are replayed too.
    let producer: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", &p.brokers).create().unwrap();
    for i in 0..REJECTED {
        let key = format!("{client}-poison-{i}");
        producer.send(FutureRecord::to(&p.topics.raw).key(&key).payload(&b"not avro"[..]), Timeout::Never).await.unwrap();
    }
    let stored = p.wait_for_count("SELECT count() FROM ehac.declarations", DECLARATIONS, Duration::from_secs(120)).await;
    assert_eq!(stored, DECLARATIONS);
    let counts = "SELECT (SELECT count() FROM ehac.declarations), (SELECT uniqExact(declaration_id) FROM ehac.declarations), \
                  (SELECT sum(declarations) FROM ehac.arrival_counts), \
                  (SELECT uniqExactMerge(travellers) FROM ehac.microdata_groups), \
                  (SELECT count() FROM ehac.rejections)";
    p.wait_for_count("SELECT count() FROM ehac.rejections", REJECTED, Duration::from_secs(60)).await;
    let before = p.sql(counts).await;
    sink.token.cancel();
    sink.task.await.unwrap().expect("the sink stops cleanly");

    // The replay: a sink in a group with no committed offsets starts at the beginning.
    let group = "ehac-sink-replay";
    let kafka = KafkaArgs { kafka_brokers: p.brokers.clone(), topics: p.topics.clone() };
    let replay = own
        .start_sink_with(|config| {
            config.kafka = kafka;
            config.group = group.to_owned();
        })
        .await;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new().set("bootstrap.servers", &p.brokers).set("group.id", group).create().unwrap();
    let topics = [p.topics.enriched.clone(), p.topics.rejected.clone()];
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let progress = tokio::task::block_in_place(|| ehac_stream::kafka::group_lag(&consumer, &topics)).unwrap();
        if progress.lag == 0 && progress.committed > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the replaying sink did not reach the end of the topics: {progress:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let after = p.sql(counts).await;
    replay.token.cancel();
    replay.task.await.unwrap().expect("the replaying sink stops cleanly");

    let fields: Vec<u64> = before.split_whitespace().map(|f| f.parse().unwrap()).collect();
    assert_eq!(fields[0], DECLARATIONS, "rows: {before}");
    assert_eq!(fields[..3], [DECLARATIONS; 3], "rows, distinct ids, rollup before the replay: {before}");
    assert!(fields[3] > 0 && fields[3] <= DECLARATIONS, "travellers in the microdata groups: {before}");
    assert_eq!(fields[4], REJECTED, "rejections: {before}");
    assert_eq!(after, before, "the replay changed the counts (rows, distinct ids, rollup, travellers, rejections)");
    println!("replay: {} records read again, nothing stored twice: {}", DECLARATIONS + REJECTED, after.trim());
}
