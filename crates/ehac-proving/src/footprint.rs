//! `ehac lagwatch-footprint`: ehac-lagwatch's own CPU and memory while it watches several busy
//! consumer groups. Starts a fresh broker, creates one topic per group, keeps producing to all
//! of them, runs the groups (one keeps up, one is slower than the load, one stops after a while,
//! so lagwatch reads message times and judges every status), starts the ehac-lagwatch binary
//! found next to this one, and reads its /proc figures over a measured interval.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::procstat::proc_stats;
use anyhow::{bail, Context};
use ehac_devstack::{bound_port, spawn, Lifetime, Stack, StackOptions, Tools};
use ehac_stream::admin::Readiness;
use ehac_stream::config::MembershipArgs;
use ehac_stream::kafka;
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use tokio_util::sync::CancellationToken;

/// About the size of an Avro-encoded enriched declaration.
const PAYLOAD: &str = "a 200-byte stand-in for a declaration: ............................................................................................................................................................";

#[derive(clap::Args, Debug, Clone)]
pub struct FootprintArgs {
    /// Where the broker keeps its data and lagwatch its log (wiped first).
    #[arg(long, default_value = ".ehac/footprint")]
    pub dir: PathBuf,
    /// Consumer groups, each reading a topic of its own.
    #[arg(long, default_value_t = 3)]
    pub groups: usize,
    #[arg(long, default_value_t = 12)]
    pub partitions: i32,
    /// Messages per second produced to each topic.
    #[arg(long, default_value_t = 200)]
    pub rate: u64,
    /// How long lagwatch is measured, once it sees every group's partitions.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// lagwatch's --poll-interval-ms.
    #[arg(long, default_value_t = 5_000)]
    pub poll_interval_ms: u64,
    /// lagwatch's --window-secs; shorter than its default so the slow group shows WARN and the
    /// stopped one STOP within the run.
    #[arg(long, default_value_t = 30)]
    pub window_secs: u64,
}

/// One consumer group: reads its topic in batches and commits after each, optionally slowly,
/// and stops reading (leaving the group) when `stop` fires.
async fn consume(brokers: String, group: String, topic: String, pause_per_batch: Duration, stop: CancellationToken) -> anyhow::Result<()> {
    let consumer = MembershipArgs::default().consumer(&brokers, &group, &[&topic])?;
    let readiness = Readiness::default();
    let max = if pause_per_batch.is_zero() { 1_000 } else { 20 };
    while let Some(batch) = kafka::next_batch(&consumer, max, Duration::from_millis(100), &readiness, &stop).await? {
        kafka::commit_batch(&consumer, &batch);
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(pause_per_batch) => {}
        }
    }
    Ok(())
}

pub async fn run(args: FootprintArgs) -> anyhow::Result<()> {
    let lagwatch_bin = std::env::current_exe()?.with_file_name("ehac-lagwatch");
    anyhow::ensure!(lagwatch_bin.is_file(), "{} not found (cargo build --release --bins)", lagwatch_bin.display());
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let dir = args.dir.canonicalize()?;
    let tools = Tools::find_or_install()?;
    let stack = Stack::start(&tools, StackOptions::ephemeral(dir.join("stack"))?).await.context("starting the broker")?;
    let brokers = stack.kafka_brokers();
    let topics: Vec<String> = (0..args.groups).map(|i| format!("footprint.topic-{i}")).collect();
    let groups: Vec<String> = (0..args.groups).map(|i| format!("footprint-group-{i}")).collect();
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = kafka::ensure_topics(&brokers, &topic_refs, args.partitions).await {
        if Instant::now() > deadline {
            return Err(e.context("creating topics"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let stop = CancellationToken::new();
    let producer = kafka::producer(&brokers)?;
    let load = {
        let (topics, stop, rate) = (topics.clone(), stop.clone(), args.rate);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut n: u64 = 0;
            while !stop.is_cancelled() {
                tick.tick().await;
                let mut keyed = Vec::new();
                for topic in &topics {
                    for _ in 0..(rate / 10).max(1) {
                        n += 1;
                        keyed.push((topic, format!("declaration-{n}")));
                    }
                }
                let sends = keyed.iter().map(|(topic, key)| {
                    producer.send(FutureRecord::to(topic).key(key).payload(PAYLOAD), Timeout::After(Duration::from_secs(10)))
                });
                for send in futures::future::join_all(sends).await {
                    if let Err((e, _)) = send {
                        tracing::warn!(error = %e, "produce failed");
                    }
                }
            }
        })
    };
    // Group 0 keeps up; group 1 reads about 100 messages a second, slower than the load; the
    // last group stops 10 s into the measurement and leaves the group with its lag.
    let mut consumers = Vec::new();
    let stop_last = CancellationToken::new();
    for (i, (group, topic)) in groups.iter().zip(&topics).enumerate() {
        let pause = if i == 1 { Duration::from_millis(200) } else { Duration::ZERO };
        let token = if i + 1 == groups.len() && i > 0 { stop_last.clone() } else { stop.clone() };
        consumers.push(tokio::spawn(consume(brokers.clone(), group.clone(), topic.clone(), pause, token)));
    }

    let mut command = std::process::Command::new(&lagwatch_bin);
    command
        .args([
            "--kafka-brokers",
            &brokers,
            "--listen",
            "127.0.0.1:0",
            "--group",
            &groups.join(","),
            "--poll-interval-ms",
            &args.poll_interval_ms.to_string(),
            "--window-secs",
            &args.window_secs.to_string(),
        ])
        .env("RUST_LOG", "info,rdkafka=warn");
    let mut lagwatch = spawn(command, &dir.join("lagwatch.log"), Lifetime::Attached)?;
    let port = bound_port(&mut lagwatch, Duration::from_secs(30)).await?;
    let pid = lagwatch.id();
    let http = reqwest::Client::new();
    let wanted = args.groups * args.partitions as usize;
    let started = Instant::now();
    loop {
        let seen = match http.get(format!("http://127.0.0.1:{port}/v1/groups")).send().await {
            Ok(r) => r
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|b| b["groups"].as_array().map(|g| g.iter().filter_map(|x| x["partitions"].as_u64()).sum::<u64>()))
                .unwrap_or(0),
            Err(_) => 0,
        };
        if seen as usize >= wanted {
            break;
        }
        if started.elapsed() > Duration::from_secs(90) {
            bail!("lagwatch sees {seen} of {wanted} partitions after 90 s; see {}", dir.join("lagwatch.log").display());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "lagwatch (pid {pid}) watches {} groups x {} partitions; measuring for {} s, polling every {} ms",
        args.groups, args.partitions, args.seconds, args.poll_interval_ms
    );
    let stop_after = tokio::spawn({
        let stop_last = stop_last.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            stop_last.cancel();
        }
    });

    let before = proc_stats(pid)?;
    let measure_start = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let after = proc_stats(pid)?;
    let wall = measure_start.elapsed().as_secs_f64();
    let groups_now: serde_json::Value = http.get(format!("http://127.0.0.1:{port}/v1/groups")).send().await?.json().await?;
    let statuses: Vec<String> = groups_now["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            format!(
                "{}={} (lag {}, {}s)",
                g["group"].as_str().unwrap_or("?"),
                g["status"].as_str().unwrap_or("-"),
                g["total_lag"],
                g["max_lag_seconds"]
            )
        })
        .collect();
    let cpu = after.cpu_seconds - before.cpu_seconds;
    println!("statuses at the end: {}", statuses.join(", "));
    println!(
        "FOOTPRINT groups={} partitions_per_group={} poll_interval_ms={} seconds={:.0} cpu_seconds={:.2} cpu_percent_of_one_core={:.2} rss_mib={:.1} peak_rss_mib={:.1} threads={}",
        args.groups,
        args.partitions,
        args.poll_interval_ms,
        wall,
        cpu,
        100.0 * cpu / wall,
        after.rss_kib as f64 / 1024.0,
        after.hwm_kib as f64 / 1024.0,
        after.threads
    );

    ehac_devstack::signal_term(pid);
    let status = lagwatch.wait()?;
    stop.cancel();
    stop_after.abort();
    let _ = load.await;
    for c in consumers {
        let _ = c.await;
    }
    drop(stack);
    if !status.success() {
        bail!("lagwatch exited with {status} after SIGTERM; see {}", dir.join("lagwatch.log").display());
    }
    Ok(())
}
