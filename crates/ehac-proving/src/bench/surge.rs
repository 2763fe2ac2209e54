//! The surge itself: gateway, enricher and sink as separate processes, the load generator's
//! baseline-spike-baseline schedule through the gateway, consumer lag sampled every second
//! while it builds and drains, ClickHouse's row count sampled likewise, and every process's
//! CPU and peak memory from /proc.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::ensure;
use ehac_devstack::Stack;
use ehac_stream::config::Topics;
use serde::Serialize;

use super::progress::Phase;
use super::SurgeArgs;
use crate::loadgen::{self, LoadArgs, LoadResult};
use crate::procstat::{proc_stats, renice, ProcStats};
use crate::services::{metric_value, wait_ready};
use crate::warehouse_report::{self, Stored};

#[derive(Debug, Clone, Serialize)]
pub struct ProcessUse {
    pub cpu_seconds: f64,
    pub cpu_seconds_per_million: f64,
    pub peak_rss_mib: f64,
}

pub struct SurgeRun {
    pub load: LoadResult,
    pub stored: Stored,
    pub peak_lag_enricher: i64,
    pub peak_lag_sink: i64,
    pub drain_seconds: f64,
    pub e2e_rows_per_s: f64,
    /// Accepted declarations the gateway answered from its spool.
    pub spooled: u64,
    pub services: BTreeMap<String, ProcessUse>,
    pub series: Series,
}

/// One second of the back office, as the sampler saw it: each group's lag, summed over its
/// partitions, in messages and in seconds, and each watched process's CPU in cores.
#[derive(Debug, Clone, Serialize)]
pub struct BackOfficeSample {
    /// Seconds from the load's start (negative: before the first request).
    pub t: f64,
    pub enricher_lag: i64,
    pub sink_lag: i64,
    /// How long ago the topics' end was where the group has committed up to now: the age of
    /// the oldest message it still owes, taken over the sums of all partitions.
    pub enricher_lag_seconds: f64,
    pub sink_lag_seconds: f64,
    /// CPU of each of [`Series::processes`] over the last interval, in cores.
    pub cores: Vec<f64>,
}

/// The surge second by second, for the plots and the JSON.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Series {
    /// Offered and accepted declarations and ack latency, by second from the load's start.
    pub load: Vec<crate::loadgen::LoadSecond>,
    pub processes: Vec<String>,
    pub back_office: Vec<BackOfficeSample>,
    /// Rows stored in ClickHouse (declarations and rejections): (seconds from the load's
    /// start, rows so far).
    pub rows: Vec<(f64, u64)>,
}

/// Seconds since the topics' summed end offset was at `committed`, from the sampled history
/// of (time, summed end offsets); 0 when the group is at the end.
pub(crate) fn lag_seconds(history: &[(f64, i64)], committed: i64, now: f64) -> f64 {
    if history.last().is_none_or(|(_, end)| *end <= committed) {
        return 0.0;
    }
    // The first sample past what the group committed: the oldest message it owes was written
    // after the sample before it and by this one.
    history.iter().find(|(_, end)| *end > committed).map_or(0.0, |(t, _)| (now - t).max(0.0))
}

/// Lag of the enricher's and the sink's groups, and every watched process's CPU, once a
/// second. A partition a group has not committed yet counts from offset 0: the topics are new.
fn sample_back_office(
    brokers: String,
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<BackOfficeSample>>>,
    topics: Topics,
    origin: Instant,
    watched: Vec<u32>,
) {
    let Ok(mut cluster) =
        ehac_lagwatch::cluster::Cluster::connect(&brokers, Duration::from_secs(5), Some(topics.all().map(String::from).to_vec()))
    else {
        return;
    };
    let groups = ["ehac-enricher".to_owned(), "ehac-sink".to_owned()];
    let (mut raw_ends, mut outputs_ends) = (Vec::new(), Vec::new());
    let cpu = || watched.iter().map(|pid| proc_stats(*pid).map_or(0.0, |s| s.cpu_seconds)).collect::<Vec<f64>>();
    let (mut last_cpu, mut last_at) = (cpu(), origin.elapsed().as_secs_f64());
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_secs(1));
        let Ok(reading) = cluster.read(&groups) else { continue };
        let now = origin.elapsed().as_secs_f64();
        let sums = |group: &str, wanted: &[&str]| -> (i64, i64) {
            let committed = reading.committed.get(group).and_then(|c| c.as_ref().ok());
            reading
                .high_watermarks
                .iter()
                .filter(|((topic, _), _)| wanted.contains(&topic.as_str()))
                .map(|(tp, hw)| (*hw, committed.and_then(|c| c.get(tp)).copied().unwrap_or(0)))
                .fold((0, 0), |(e, c), (hw, committed)| (e + hw, c + committed))
        };
        let (raw_end, enricher_at) = sums("ehac-enricher", &[&topics.raw]);
        let (outputs_end, sink_at) = sums("ehac-sink", &[&topics.enriched, &topics.rejected]);
        raw_ends.push((now, raw_end));
        outputs_ends.push((now, outputs_end));
        let cpu_now = cpu();
        let cores = cpu_now.iter().zip(&last_cpu).map(|(a, b)| (a - b) / (now - last_at).max(1e-3)).collect();
        (last_cpu, last_at) = (cpu_now, now);
        samples.lock().unwrap().push(BackOfficeSample {
            t: now,
            enricher_lag: raw_end - enricher_at,
            sink_lag: outputs_end - sink_at,
            enricher_lag_seconds: lag_seconds(&raw_ends, enricher_at, now),
            sink_lag_seconds: lag_seconds(&outputs_ends, sink_at, now),
            cores,
        });
    }
}

/// Rows in the declarations and rejections tables, duplicates included.
async fn rows(http: &reqwest::Client, url: &str) -> anyhow::Result<u64> {
    let text =
        warehouse_report::post(http, url, "SELECT (SELECT count() FROM ehac.declarations) + (SELECT count() FROM ehac.rejections)").await?;
    Ok(String::from_utf8_lossy(&text).trim().parse()?)
}

/// The load generator's name among the processes: this process.
pub const LOADGEN: &str = "loadgen";

/// Clients the surge is spread over, each with its own API key and quota.
pub const BENCH_CLIENTS: usize = 16;

pub async fn run(stack: &Stack, bin: &Path, dir: &Path, args: &SurgeArgs) -> anyhow::Result<SurgeRun> {
    let phase = Phase::start("surge: services");
    let brokers = stack.kafka_brokers();
    let clients = crate::services::provision_clients(dir, "bench-client", BENCH_CLIENTS, args.baseline_rate * args.surge_factor)?;
    let gateway_args = crate::services::gateway_args("127.0.0.1:0", "127.0.0.1:0", &dir.join("gateway-spool"), &clients.access());
    let (gateway_service, gateway, gateway_admin) =
        crate::services::start_gateway(bin, dir, "gateway", &gateway_args, &[("EHAC_KAFKA_BROKERS", brokers.as_str())]).await?;
    let gateway_admin = format!("http://{gateway_admin}");
    let mut services = vec![gateway_service];
    let mut admins = Vec::new();
    for i in 0..args.enrichers {
        let enricher_env = crate::services::enricher_env(stack);
        let (enricher, admin) =
            crate::services::start_with_admin(bin, dir, &format!("enricher-{i}"), "ehac-enricher", &[], &enricher_env).await?;
        services.push(enricher);
        admins.push(admin);
    }
    for i in 0..args.sinks {
        let sink_env = crate::services::sink_env(stack);
        let (sink, admin) = crate::services::start_with_admin(bin, dir, &format!("sink-{i}"), "ehac-sink", &[], &sink_env).await?;
        services.push(sink);
        admins.push(admin);
    }
    // Counting both databases is an investigator's read (the headers are ignored elsewhere).
    let http = stack.clickhouse_http(ehac_devstack::WarehouseUser::Investigator);
    wait_ready(&http, &format!("{gateway_admin}/readyz"), Duration::from_secs(60)).await?;
    for admin in &admins {
        wait_ready(&http, &format!("http://{admin}/readyz"), Duration::from_secs(60)).await?;
    }
    if args.back_office_nice != 0 {
        let back_office = services
            .iter()
            .filter(|s| s.name != "gateway")
            .map(|s| s.child.id())
            .chain(stack.pids.iter().filter(|(n, _)| n.starts_with("clickhouse")).map(|(_, p)| *p));
        for pid in back_office {
            renice(pid, args.back_office_nice)?;
        }
    }
    phase.done(format!(
        "gateway, {} enricher(s), {} sink(s) ready; back office at nice {}",
        args.enrichers, args.sinks, args.back_office_nice
    ));

    // Every process whose CPU counts: ours, the servers, and this one (the load generator).
    let mut watched: Vec<(String, u32)> = services.iter().map(|s| (s.name.clone(), s.child.id())).collect();
    watched.extend(stack.pids.iter().cloned());
    watched.push((LOADGEN.into(), std::process::id()));
    let before: Vec<ProcStats> = watched.iter().map(|(_, pid)| proc_stats(*pid).unwrap_or_default()).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let back_office = Arc::new(Mutex::new(Vec::new()));
    // Every series is timed from here and shifted to the load's start afterwards.
    let origin = Instant::now();
    let sampler = std::thread::spawn({
        let (brokers, stop, back_office) = (brokers.clone(), stop.clone(), back_office.clone());
        let pids = watched.iter().map(|(_, pid)| *pid).collect();
        move || sample_back_office(brokers, stop, back_office, Topics::default(), origin, pids)
    });
    let peaks = || {
        let samples = back_office.lock().unwrap();
        (samples.iter().map(|s| s.enricher_lag).max().unwrap_or(0), samples.iter().map(|s| s.sink_lag).max().unwrap_or(0))
    };

    let baseline = (args.baseline_rate * args.baseline_secs).round() as u64;
    let spike = (args.baseline_rate * args.surge_factor * args.surge_secs).round() as u64;
    let count = 2 * baseline + spike;
    let load_args = LoadArgs {
        gateway: gateway.clone(),
        count,
        baseline_rate: args.baseline_rate,
        surge_factor: args.surge_factor,
        surge_share: spike as f64 / count as f64,
        invalid_form_percent: 1.5,
        invalid_reference_percent: 1.5,
        concurrency: args.concurrency,
        seed: args.seed,
        client_id: "bench".into(),
        api_keys: clients.api_keys.clone(),
        attempts: 1,
        batch: 0,
    };
    println!(
        "surge: {count} declarations: {:.0}/s for {:.0} s, {:.0}/s for {:.0} s, {:.0}/s for {:.0} s",
        args.baseline_rate,
        args.baseline_secs,
        args.baseline_rate * args.surge_factor,
        args.surge_secs,
        args.baseline_rate,
        args.baseline_secs
    );

    // ClickHouse's row count once a second: the spike's start is `baseline_secs` after the
    // load's, and everything stored from then on came through a saturated pipeline.
    let load_started = origin;
    let counts = Arc::new(Mutex::new(Vec::<(f64, u64)>::new()));
    let counter = tokio::spawn({
        let (http, url, counts, stop) = (http.clone(), stack.clickhouse_url(), counts.clone(), stop.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(rows) = rows(&http, &url).await {
                    counts.lock().unwrap().push((load_started.elapsed().as_secs_f64(), rows));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    let load = loadgen::run(&load_args).await;
    let load_ended = Instant::now();
    let load = match load {
        Ok(load) => load,
        Err(e) => {
            stop.store(true, Ordering::Relaxed);
            return Err(e);
        }
    };
    println!("{}", load.line());

    let phase = Phase::start("surge: drain");
    // Polled with a plain count(), which ClickHouse answers from part metadata: the distinct
    // counts below would cost it real CPU every time and slow the pipeline being measured.
    let drained = async {
        loop {
            let rows = rows(&http, &stack.clickhouse_url()).await?;
            let (enricher, sink) = peaks();
            phase.set(format!("{rows}/{} rows in ClickHouse (peak lag: enricher {enricher}, sink {sink})", load.accepted));
            if rows >= load.accepted {
                return anyhow::Ok(());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    let timed_out = tokio::time::timeout(Duration::from_secs(900), drained).await.is_err();
    let drain_seconds = load_ended.elapsed().as_secs_f64();
    let drained_at = load_started.elapsed().as_secs_f64();
    // Then the exact counts: distinct declarations stored and rejected, and duplicates.
    let stored =
        warehouse_report::wait_for(&http, &stack.clickhouse_url(), load.accepted, 0, Duration::from_secs(if timed_out { 10 } else { 30 }))
            .await?;
    stop.store(true, Ordering::Relaxed);
    let _ = counter.await;
    let _ = sampler.join();
    let (peak_lag_enricher, peak_lag_sink) = peaks();
    phase.done(format!("{:.1} s after the last request; peak lag enricher {peak_lag_enricher}, sink {peak_lag_sink}", drain_seconds));

    let after: Vec<ProcStats> = watched.iter().map(|(_, pid)| proc_stats(*pid).unwrap_or_default()).collect();
    let per_million = 1e6 / load.accepted.max(1) as f64;
    let services_use = watched
        .iter()
        .zip(before.iter().zip(&after))
        .map(|((name, _), (b, a))| {
            // This process also built the declarations before the clock started and sampled
            // the others: the load generator's own cost is its CPU while sending.
            let cpu = if name == LOADGEN { load.sending_cpu_seconds } else { a.cpu_seconds - b.cpu_seconds };
            (
                name.clone(),
                ProcessUse { cpu_seconds: cpu, cpu_seconds_per_million: cpu * per_million, peak_rss_mib: a.hwm_kib as f64 / 1024.0 },
            )
        })
        .collect();

    let spooled = metric_value(&http, &format!("{gateway_admin}/metrics"), super::front_door::SPOOLED).await? as u64;
    for service in &mut services {
        let status = service.stop()?;
        ensure!(status.success(), "{} exited with {status} after SIGTERM; see {}/{}.log", service.name, dir.display(), service.name);
    }

    // The load generator built its declarations before its clock started: its second 0 is
    // that far after the origin.
    let offset = load.started.map_or(0.0, |started| started.saturating_duration_since(origin).as_secs_f64());
    let spike_start = offset + args.baseline_secs;
    let counts = counts.lock().unwrap().clone();
    let at_spike = counts.iter().rev().find(|(t, _)| *t <= spike_start).map_or((0.0, 0), |&(t, c)| (t, c));
    let total = stored.stored + stored.rejected;
    let e2e_rows_per_s = (total - at_spike.1) as f64 / (drained_at - at_spike.0).max(1e-3);
    let mut back_office = std::mem::take(&mut *back_office.lock().unwrap());
    for sample in &mut back_office {
        sample.t -= offset;
    }
    let series = Series {
        load: load.per_second.clone(),
        processes: watched.iter().map(|(name, _)| name.clone()).collect(),
        back_office,
        rows: counts.iter().map(|&(t, rows)| (t - offset, rows)).collect(),
    };
    Ok(SurgeRun { load, stored, peak_lag_enricher, peak_lag_sink, drain_seconds, e2e_rows_per_s, spooled, services: services_use, series })
}

#[cfg(test)]
mod tests {
    use super::lag_seconds;

    #[test]
    fn lag_in_seconds_is_the_age_of_the_first_end_offset_past_the_commit() {
        let history = [(1.0, 100), (2.0, 300), (3.0, 600), (4.0, 600)];
        // Committed 250 of 600: the first sample past 250 was at t = 2, two seconds ago.
        assert_eq!(lag_seconds(&history, 250, 4.0), 2.0);
        // At the end: no lag, however old the last write.
        assert_eq!(lag_seconds(&history, 600, 4.0), 0.0);
        assert_eq!(lag_seconds(&history, 0, 4.0), 3.0);
        assert_eq!(lag_seconds(&[], 0, 4.0), 0.0);
    }
}
