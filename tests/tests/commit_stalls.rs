//! A transactional commit that outlasts the enricher's wait for it, and still completes: the
//! single broker (the transaction coordinator) is frozen with SIGSTOP for longer than the
//! enricher used to wait for a call while raw records keep arriving, then resumed with SIGCONT,
//! several times. Whatever the enricher's calls saw meanwhile (a timeout, an abort, a fenced
//! producer and a restart by its supervisor), each raw record must end with exactly one
//! committed output on the enriched and rejected topics, read as a `read_committed` consumer
//! other than the sink reads them. The enricher runs as a process, restarted when it exits, as
//! systemd or Kubernetes would; build it first (`cargo build --bins`).
//!
//! `EHAC_COMMIT_STALL_ROUNDS` sets how many freezes (default 2); each takes about 40 s.

use std::time::{Duration, Instant};

use ehac_devstack::{Server, Stack, StackOptions, Tools};
use ehac_domain::sample::{Flaw, SampleGenerator};
use ehac_proving::services::{self, Service};
use ehac_stream::config::Topics;
use ehac_stream::kafka::{tally, ReadFrom};
use rdkafka::producer::FutureRecord;
use tokio_util::sync::CancellationToken;

/// A freeze outlasts the enricher's 30 s waits for a transactional call (what it gave each call
/// before it followed librdkafka's contract) but not the transaction's timeout, so the
/// coordinator, once resumed, completes a commit it had received rather than expiring it.
const FREEZE: Duration = Duration::from_secs(35);
/// The enricher's `--transaction-timeout-ms`.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Raw records a second while the broker runs.
const RATE: u64 = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_outlasting_their_wait_still_give_one_output_per_raw_record() {
    // target/debug/deps/commit_stalls-<hash> -> target/debug, where cargo puts the binaries.
    let bin = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    assert!(bin.join("ehac-enricher").is_file(), "ehac-enricher missing in {}: run cargo build --bins first", bin.display());
    let rounds: u32 = std::env::var("EHAC_COMMIT_STALL_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(2);
    ehac_stream::telemetry::init_logging();
    let dir = ehac_tests::test_dir(Some("commit-stalls"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut stack = Stack::start(&Tools::find().unwrap(), StackOptions::ephemeral(dir.join("stack")).unwrap()).await.unwrap();
    let topics = Topics::default();
    stack.provision(&topics, 4).await.unwrap();
    let brokers = stack.kafka_brokers();

    // Small batches without linger: the enricher spends much of its time committing, so a
    // freeze often lands while a commit is on its way to the coordinator.
    let args: Vec<String> = [
        "--admin-listen=127.0.0.1:0",
        "--transactions=on",
        "--transactional-id=enricher-commit-stalls",
        "--batch-max=50",
        "--batch-linger-ms=0",
    ]
    .map(str::to_owned)
    .into_iter()
    .chain([format!("--transaction-timeout-ms={}", TRANSACTION_TIMEOUT.as_millis())])
    .collect();
    let mut enricher = Service::start(&bin, &dir, "enricher", "ehac-enricher", &args, &services::enricher_env(&stack)).unwrap();
    let mut restarts = Vec::new();
    let mut broker_restarts = 0;
    let mut supervise = |enricher: &mut Service| {
        if let Some(exit) = enricher.restart_if_exited().unwrap() {
            eprintln!("the enricher exited ({exit}); started again");
            restarts.push(exit);
        }
    };

    let load_stop = CancellationToken::new();
    let load = tokio::spawn(produce_raw_until(brokers.clone(), topics.raw.clone(), load_stop.clone()));
    for round in 0..rounds {
        // Each freeze lands on an enricher that is committing: its group's offsets move first.
        let before = enricher_committed(&brokers, &topics.raw).await;
        // Longer than the enricher's watchdog (twice the transaction timeout and 5 s): a call
        // that never returns ends the process, and its restart is the recovery.
        let mut deadline = Instant::now() + 2 * TRANSACTION_TIMEOUT + Duration::from_secs(60);
        let mut broker_silent_since: Option<Instant> = None;
        while enricher_committed(&brokers, &topics.raw).await <= before {
            if revive_if_silent(&mut stack, &mut broker_silent_since).await {
                broker_restarts += 1;
                deadline = Instant::now() + 2 * TRANSACTION_TIMEOUT + Duration::from_secs(60);
            }
            if Instant::now() >= deadline {
                let counts = counts(&brokers, &topics).await;
                let broker = broker_complaints(&stack.broker_logs()[0]);
                panic!(
                    "the enricher wrote nothing for 180 s before freeze {}: (raw, outputs, unconsumed) = {counts:?}; the broker's last warnings:\n{broker}",
                    round + 1
                );
            }
            supervise(&mut enricher);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // A different moment of the enricher's cycle each time.
        tokio::time::sleep(Duration::from_millis(500 + u64::from(round) * 700 % 2_000)).await;
        supervise(&mut enricher);
        stack.freeze(Server::Broker);
        tokio::time::sleep(FREEZE).await;
        stack.thaw(Server::Broker);
        eprintln!("freeze {} of {rounds} over", round + 1);
        supervise(&mut enricher);
    }
    load_stop.cancel();
    let sent = load.await.unwrap();

    // Until the enricher's group has consumed every raw record (or the patience runs out).
    let mut deadline = Instant::now() + Duration::from_secs(180);
    let mut broker_silent_since: Option<Instant> = None;
    let (raw, outputs, unconsumed) = loop {
        supervise(&mut enricher);
        if revive_if_silent(&mut stack, &mut broker_silent_since).await {
            broker_restarts += 1;
            deadline = Instant::now() + Duration::from_secs(180);
        }
        match counts(&brokers, &topics).await {
            Ok(counts) if counts.2 == 0 || Instant::now() > deadline => break counts,
            Ok(_) => {}
            // The broker may still be settling after its last thaw.
            Err(e) => assert!(Instant::now() < deadline, "counting: {e:#}"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let _ = enricher.stop_within(Duration::from_secs(30));
    eprintln!(
        "COMMIT-STALLS rounds={rounds} sent={sent} raw={raw} outputs={outputs} unconsumed={unconsumed} restarts=[{}] broker_restarts={broker_restarts} log={}",
        restarts.join(", "),
        dir.join("enricher.log").display()
    );
    assert!(raw > 0, "raw records arrived");
    assert_eq!(unconsumed, 0, "the enricher consumed every raw record");
    assert_eq!(outputs, raw, "exactly one committed output per raw record");
}

/// Raw records, committed outputs and raw records the enricher's group has not consumed.
async fn counts(brokers: &str, topics: &Topics) -> anyhow::Result<(u64, u64, u64)> {
    let (b, t) = (brokers.to_owned(), topics.clone());
    tokio::task::spawn_blocking(move || {
        // The group's offsets first: once they cover every raw record, every transaction that
        // wrote outputs for them has committed, so the outputs read after are final. (Read
        // before, they can miss the last batches still committing.)
        let unconsumed = tally(&b, &[&t.raw], ReadFrom::Committed("ehac-enricher".into()))?.messages;
        let raw = tally(&b, &[&t.raw], ReadFrom::Beginning)?.messages;
        let outputs = tally(&b, &[&t.enriched, &t.rejected], ReadFrom::Beginning)?.messages;
        Ok((raw, outputs, unconsumed))
    })
    .await
    .unwrap()
}

/// The broker's last WARN and ERROR lines: what it said when the enricher saw nothing.
fn broker_complaints(log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_else(|e| format!("({}: {e})", log.display()));
    let complaints: Vec<&str> = text.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).collect();
    complaints[complaints.len().saturating_sub(12)..].join("\n")
}

/// Restarts the broker, as its supervisor would, once it has answered no request for 60 s
/// (seen: a node frozen for 35 s that never answered again); true if it did. The enricher must
/// still give one output per raw record.
async fn revive_if_silent(stack: &mut Stack, silent_since: &mut Option<Instant>) -> bool {
    if broker_answers(&stack.kafka_brokers()).await {
        *silent_since = None;
        return false;
    }
    if silent_since.get_or_insert_with(Instant::now).elapsed() < Duration::from_secs(60) {
        return false;
    }
    let complaints = broker_complaints(&stack.broker_logs()[0]);
    eprintln!("STALL the broker answered nothing for 60 s; restarting it. Its last warnings:\n{complaints}");
    stack.stop_server(Server::Broker, true);
    stack.restart_server(Server::Broker).await.expect("the broker starts again");
    *silent_since = None;
    true
}

/// Whether the broker answers a metadata request within 10 s.
async fn broker_answers(brokers: &str) -> bool {
    let b = brokers.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: Result<rdkafka::consumer::BaseConsumer, _> =
            rdkafka::ClientConfig::new().set("bootstrap.servers", &b).set("log_level", "0").create();
        consumer.is_ok_and(|c| rdkafka::consumer::Consumer::fetch_metadata(&c, None, Duration::from_secs(10)).is_ok())
    })
    .await
    .unwrap_or(false)
}

/// The sum of the enricher group's committed offsets on the raw topic: it moves only when a
/// transaction commits. A check of progress asks the coordinator rather than reading the output
/// topics from the beginning each time (seen in CI: those reads told of no progress for three
/// minutes while the enricher wrote 120,000 outputs).
async fn enricher_committed(brokers: &str, raw_topic: &str) -> i64 {
    let (b, t) = (brokers.to_owned(), raw_topic.to_owned());
    tokio::task::spawn_blocking(move || -> anyhow::Result<i64> {
        // Not subscribed: it only asks for the group's offsets and never joins the group.
        let consumer: rdkafka::consumer::BaseConsumer =
            rdkafka::ClientConfig::new().set("bootstrap.servers", &b).set("group.id", "ehac-enricher").create()?;
        Ok(ehac_stream::kafka::group_lag(&consumer, &[t])?.committed)
    })
    .await
    .unwrap()
    .unwrap_or(0)
}

/// Produces raw declarations at [`RATE`] until `stop`; returns how many were acknowledged.
/// Sends that fail while the broker is frozen are not retried: the test counts what reached
/// the raw topic, not what was acknowledged.
async fn produce_raw_until(brokers: String, raw_topic: String, stop: CancellationToken) -> u64 {
    let producer = ehac_stream::kafka::producer(&brokers).expect("producer");
    let mut generator = SampleGenerator::new(24);
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    // After a freeze, on at the rate, not in a burst that makes up for it.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sends = tokio::task::JoinSet::new();
    let (mut n, mut acknowledged) = (0u64, 0u64);
    while !stop.is_cancelled() {
        tick.tick().await;
        for _ in 0..RATE / 20 {
            let form = generator.declaration(chrono::Utc::now(), "commit-stalls", Flaw::None);
            let id = format!("commit-stalls-{n}");
            n += 1;
            let payload = ehac_tests::raw_message(&id, form);
            let (producer, topic) = (producer.clone(), raw_topic.clone());
            sends.spawn(async move {
                let record = FutureRecord::to(&topic).key(&id).payload(&payload);
                producer.send(record, rdkafka::util::Timeout::Never).await.is_ok()
            });
        }
        // Backpressure while the broker is frozen: at most a few seconds of records in flight.
        while sends.len() > (RATE * 5) as usize {
            if let Some(sent) = sends.join_next().await {
                acknowledged += u64::from(sent.unwrap_or(false));
            }
        }
    }
    while let Some(sent) = sends.join_next().await {
        acknowledged += u64::from(sent.unwrap_or(false));
    }
    acknowledged
}
