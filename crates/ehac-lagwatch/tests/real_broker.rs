//! ehac-lagwatch against a real broker (Apache Kafka, started on a free port): lag in messages and
//! in seconds from the messages' own timestamps, no numbers for what was never committed, STOP,
//! REWIND and recovery with their webhook events, STALL (a live member that does not commit) told
//! apart from STOP (no member) through DescribeGroups, and the binary's SIGTERM exit.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::{Json, Router};
use ehac_devstack::{Stack, StackOptions, Tools};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(60);

async fn stack(name: &str) -> Stack {
    ehac_stream::telemetry::init_logging();
    let tools = Tools::find().unwrap_or_else(|e| panic!("{e:#}"));
    let dir = std::env::temp_dir().join(format!("ehac-lagwatch-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    Stack::start(&tools, StackOptions::ephemeral(&dir).unwrap()).await.expect("broker and ClickHouse start")
}

async fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    let deadline = Instant::now() + PATIENCE;
    // A broker that just started listening may refuse admin requests for a moment.
    while let Err(e) = ehac_stream::kafka::ensure_topics(brokers, &[topic], partitions).await {
        assert!(Instant::now() < deadline, "creating {topic}: {e:#}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Produces `count` messages to one partition with CreateTime `first_ms`, `first_ms + 1000`, ...
async fn produce(brokers: &str, topic: &str, partition: i32, count: i64, first_ms: i64) {
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    for i in 0..count {
        let key = format!("k{i}");
        producer
            .send(
                FutureRecord::to(topic).partition(partition).key(&key).payload("declaration").timestamp(first_ms + i * 1000),
                Timeout::After(Duration::from_secs(10)),
            )
            .await
            .expect("produced");
    }
}

/// Commits offsets for `group` the way a consumer that assigns its own partitions does: without
/// joining the group, so the group has committed offsets and no members.
fn commit(brokers: &str, group: &str, topic: &str, offsets: &[(i32, i64)]) {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", brokers).set("group.id", group).set("enable.auto.commit", "false").create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for &(partition, offset) in offsets {
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset)).unwrap();
    }
    consumer.commit(&tpl, CommitMode::Sync).expect("commit");
}

async fn get(url: &str) -> (u16, Value) {
    let response = reqwest::get(url).await.expect("lagwatch answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls `GET url` until `check` holds for its JSON or PATIENCE runs out; returns the last body.
async fn wait_for(url: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        // Connection refused while a process is still starting counts as not yet.
        let body = match reqwest::get(url).await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        if check(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; last answer: {body:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn partition<'a>(group: &'a Value, topic: &str, p: i64) -> &'a Value {
    group["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["topic"] == topic && x["partition"] == p)
        .unwrap_or_else(|| panic!("no {topic}/{p} in {group:#}"))
}

/// A webhook receiver on a free port; returns its URL and what it received.
async fn webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    let app = Router::new().route(
        "/hook",
        post(move |Json(body): Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_status_and_webhook_follow_a_group_that_stops_rewinds_and_catches_up() {
    let stack = stack("status").await;
    let brokers = stack.kafka_brokers();
    let topic = "lagwatch.arrivals";
    create_topic(&brokers, topic, 3).await;
    let hour_ago = chrono::Utc::now().timestamp_millis() - 3_600_000;
    produce(&brokers, topic, 0, 10, hour_ago).await;
    produce(&brokers, topic, 1, 5, hour_ago).await;
    // Partition 0: 6 unread, the next written at hour_ago + 4 s. Partition 1: caught up.
    // Partition 2: never committed.
    commit(&brokers, "arrivals-audit", topic, &[(0, 4), (1, 5)]);

    let (hook, events) = webhook().await;
    let shutdown = CancellationToken::new();
    let mut config = ehac_lagwatch::Config::with_brokers(&brokers);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.groups = vec!["arrivals-audit".into(), "never-committed".into()];
    config.poll_interval_ms = 300;
    config.window_secs = 3;
    config.webhook_url = Some(hook);
    let lagwatch = ehac_lagwatch::start(config, shutdown.clone()).await.expect("lagwatch starts");
    let base = format!("http://{}", lagwatch.addr);
    let status_url = format!("{base}/v1/groups/arrivals-audit/status");

    // The first poll may not get the message's time back in time (a new reader connection on a
    // busy machine) and then says so with no number; the next poll reads it.
    let group = wait_for(&status_url, "the group's partitions with partition 0's message time", |g| {
        g["partitions"]
            .as_array()
            .is_some_and(|p| p.len() == 2 && p.iter().any(|x| x["partition"] == 0 && !x["lag_seconds_source"].is_null()))
    })
    .await;
    let p0 = partition(&group, topic, 0);
    assert_eq!(
        (p0["committed_offset"].as_i64(), p0["high_watermark"].as_i64(), p0["lag"].as_i64()),
        (Some(4), Some(10), Some(6)),
        "{p0:#}"
    );
    assert_eq!(p0["lag_seconds_source"], "message", "{p0:#}");
    let expected = (chrono::Utc::now().timestamp_millis() - (hour_ago + 4_000)) as f64 / 1000.0;
    let lag_seconds = p0["lag_seconds"].as_f64().unwrap();
    assert!((expected - 10.0..=expected + 1.0).contains(&lag_seconds), "lag seconds {lag_seconds}, expected about {expected}");
    let p1 = partition(&group, topic, 1);
    assert_eq!((p1["lag"].as_i64(), p1["lag_seconds"].as_f64(), p1["status"].as_str()), (Some(0), Some(0.0), Some("OK")));
    assert_eq!(group["partitions_without_commit"], serde_json::json!([{ "topic": topic, "partition": 2 }]));

    let metrics = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(&format!(
            "ehac_consumer_lag_messages{{group=\"arrivals-audit\",partition=\"0\",topic=\"{topic}\",service=\"lagwatch\"}} 6"
        )),
        "{metrics}"
    );
    assert!(
        !metrics.contains("ehac_consumer_lag_messages{group=\"arrivals-audit\",partition=\"2\""),
        "no lag is made up for a partition never committed"
    );
    // Its member count is known (DescribeGroups answers: 0), but nothing about lag is made up.
    assert!(
        !metrics.lines().any(|l| l.contains("never-committed") && !l.starts_with("ehac_consumer_group_members{")),
        "a group without commits has no lag series:\n{metrics}"
    );
    assert!(metrics.contains("ehac_consumer_group_members{group=\"never-committed\",service=\"lagwatch\"} 0"), "{metrics}");
    let (status, never) = get(&format!("{base}/v1/groups/never-committed/status")).await;
    assert_eq!((status, never["status"].clone(), never["partitions"].as_array().map(Vec::len)), (200, Value::Null, Some(0)));
    let (status, _) = get(&format!("{base}/v1/groups/not-watched/status")).await;
    assert_eq!(status, 404);

    // Nobody commits for a whole window while partition 0 has lag: STOP. The group has no
    // members at all, and its series stay.
    let group = wait_for(&status_url, "STOP", |g| g["status"] == "STOP").await;
    assert_eq!(partition(&group, topic, 0)["status"], "STOP");
    assert_eq!(partition(&group, topic, 1)["status"], "OK", "an idle partition with no lag is OK");
    let metrics = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("ehac_consumer_group_status{group=\"arrivals-audit\",status=\"STOP\",service=\"lagwatch\"} 1"), "{metrics}");

    // Someone resets the group to an earlier offset: REWIND.
    commit(&brokers, "arrivals-audit", topic, &[(0, 2)]);
    let group = wait_for(&status_url, "REWIND", |g| g["status"] == "REWIND").await;
    assert_eq!(partition(&group, topic, 0)["lag"].as_i64(), Some(8));

    // The group catches up: OK, and the incident closes.
    commit(&brokers, "arrivals-audit", topic, &[(0, 10)]);
    let group = wait_for(&status_url, "OK", |g| g["status"] == "OK").await;
    assert_eq!(group["total_lag"].as_i64(), Some(0));
    assert!(partition(&group, topic, 0)["last_commit_at"].is_string(), "lagwatch saw the offset move");

    let deadline = Instant::now() + PATIENCE;
    let events: Vec<Value> = loop {
        let events = events.lock().unwrap().clone();
        if events.last().is_some_and(|e| e["event"] == "close") || Instant::now() > deadline {
            break events;
        }
        drop(events);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let summary: Vec<(String, String)> =
        events.iter().map(|e| (e["event"].as_str().unwrap().to_owned(), e["status"].as_str().unwrap().to_owned())).collect();
    assert_eq!(summary.first(), Some(&("open".to_owned(), "STOP".to_owned())), "{events:#?}");
    assert!(summary.contains(&("open".to_owned(), "REWIND".to_owned())), "{summary:?}");
    assert_eq!(summary.last(), Some(&("close".to_owned(), "OK".to_owned())), "{summary:?}");
    assert!(
        events.iter().all(|e| e["group"] == "arrivals-audit" && e["since"] == events[0]["since"]),
        "one incident from open to close: {events:#?}"
    );
    assert_eq!(events[0]["partitions"][0]["partition"], 0, "the open event names the stuck partition");

    shutdown.cancel();
    lagwatch.wait().await.expect("lagwatch stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_member_that_does_not_commit_is_stall_and_a_group_without_members_is_stop() {
    let stack = stack("stall").await;
    let brokers = stack.kafka_brokers();
    let topic = "lagwatch.stall";
    create_topic(&brokers, topic, 1).await;
    produce(&brokers, topic, 0, 8, chrono::Utc::now().timestamp_millis() - 60_000).await;

    // A member of the group that holds the partition, committed at 2 of 8, and then reads on
    // without committing: alive (heartbeats, in DescribeGroups with the partition) but stuck.
    let stop_member = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let member = {
        let (brokers, stop) = (brokers.clone(), stop_member.clone());
        std::thread::spawn(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("group.id", "arrivals-stuck")
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest")
                .create()
                .unwrap();
            consumer.subscribe(&[topic]).unwrap();
            let mut committed = false;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                consumer.poll(Duration::from_millis(100));
                if !committed && consumer.assignment().is_ok_and(|a| a.count() == 1) {
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition_offset(topic, 0, Offset::Offset(2)).unwrap();
                    consumer.commit(&tpl, CommitMode::Sync).unwrap();
                    committed = true;
                }
            }
            // Leaves the group: no member any more.
            drop(consumer);
        })
    };

    let shutdown = CancellationToken::new();
    let mut config = ehac_lagwatch::Config::with_brokers(&brokers);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.groups = vec!["arrivals-stuck".into()];
    config.poll_interval_ms = 300;
    config.window_secs = 3;
    let lagwatch = ehac_lagwatch::start(config, shutdown.clone()).await.expect("lagwatch starts");
    let status_url = format!("http://{}/v1/groups/arrivals-stuck/status", lagwatch.addr);

    let group = wait_for(&status_url, "STALL", |g| g["status"] == "STALL").await;
    let p0 = partition(&group, topic, 0);
    assert_eq!((p0["lag"].as_i64(), p0["status"].as_str()), (Some(6), Some("STALL")), "{group:#}");

    stop_member.store(true, std::sync::atomic::Ordering::Relaxed);
    member.join().unwrap();
    let group = wait_for(&status_url, "STOP once the member left", |g| g["status"] == "STOP").await;
    assert_eq!(partition(&group, topic, 0)["status"], "STOP", "{group:#}");
    shutdown.cancel();
    lagwatch.wait().await.expect("lagwatch drains");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_health_and_exits_zero_on_sigterm() {
    let stack = stack("binary").await;
    let log = std::env::temp_dir().join(format!("ehac-lagwatch-binary-{}.log", std::process::id()));
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ehac-lagwatch"));
    command
        .env("EHAC_KAFKA_BROKERS", stack.kafka_brokers())
        .env("EHAC_LAGWATCH_LISTEN", "127.0.0.1:0")
        .env("EHAC_LAGWATCH_POLL_INTERVAL_MS", "300");
    let mut child = ehac_devstack::spawn(command, &log, ehac_devstack::Lifetime::Attached).unwrap();
    let port = ehac_devstack::bound_port(&mut child, Duration::from_secs(30)).await.expect("lagwatch listens");
    let ready = wait_for(&format!("http://127.0.0.1:{port}/readyz"), "readiness", |r| r["ready"] == true).await;
    assert_eq!(ready["checks"]["kafka"], "ok");
    let (status, groups) = get(&format!("http://127.0.0.1:{port}/v1/groups")).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = groups["groups"].as_array().unwrap().iter().map(|g| g["group"].as_str().unwrap()).collect();
    assert_eq!(names, ["ehac-enricher", "ehac-sink"], "the pipeline's groups by default");

    ehac_devstack::signal_term(child.id());
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "exit {status}; log:\n{logs}");
    assert!(logs.lines().all(|l| l.starts_with('{')), "JSON logs:\n{logs}");
}
