//! The front door alone: a gateway writing to a topic nobody reads, offered a rising rate in
//! short steps, to find the highest rate at which its ack p99 stays within the target. This is
//! the gateway and broker with the back office on other hosts, as in production; the surge
//! measures them sharing one machine with everything else.

use std::path::Path;
use std::time::Duration;

use ehac_devstack::Stack;
use serde::Serialize;

use super::progress::Phase;
use crate::loadgen::{self, LoadArgs};
use crate::procstat::proc_stats;
use crate::services::{metric_value, provision_clients, wait_ready, Access, Service};

pub const SWEEP_TOPIC: &str = "bench.front-door.raw";
/// The gateway's count of declarations answered from its spool.
pub const SPOOLED: &str = "ehac_gateway_spooled_total";

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub offered_rate: f64,
    pub accepted_rate: f64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub ack_p999_ms: f64,
    /// Accepted declarations that were answered from the gateway's spool (the broker had not
    /// acknowledged within the latency budget), as a share of those accepted.
    pub spooled_share: f64,
    /// Gateway, broker and load generator CPU per million declarations sent in this step.
    pub gateway_cpu_seconds_per_million: f64,
    pub broker_cpu_seconds_per_million: f64,
    /// The load generator's CPU from its first request to its last answer (building the
    /// declarations beforehand is not counted), per million declarations and per request.
    pub loadgen_cpu_seconds_per_million: f64,
    pub loadgen_cpu_us_per_request: f64,
    /// The load generator's CPU over the gateway's in the step: kept at most 1/3, so the
    /// sender is not what limits the rate measured.
    pub loadgen_to_gateway_cpu: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sweep {
    /// Declarations per request: 1, or the batch size through the batch endpoint.
    pub batch: usize,
    pub step_seconds: f64,
    pub p99_limit_ms: f64,
    pub steps: Vec<Step>,
    /// The highest offered rate whose ack p99 stayed within the limit.
    pub max_rate_within_limit: f64,
}

/// Offers `rates` in turn for `step_seconds` each. It goes on past the limit to show the curve,
/// and stops once the gateway falls behind (accepts under 90% of the offered rate) or its p99
/// passes a second: a queue, not a tail.
///
/// With `batch` > 1 the declarations go `batch` to a request to the batch endpoint, and the
/// rates are declarations per second.
#[allow(clippy::too_many_arguments)]
pub async fn sweep(
    stack: &Stack,
    bin: &Path,
    dir: &Path,
    rates: &[f64],
    step_seconds: f64,
    concurrency: usize,
    p99_limit_ms: f64,
    batch: usize,
) -> anyhow::Result<Sweep> {
    ehac_stream::kafka::ensure_topics(&stack.kafka_brokers(), &[SWEEP_TOPIC], 12).await?;
    let peak = rates.iter().copied().fold(0.0, f64::max);
    let clients = provision_clients(dir, "front-door-client", super::surge::BENCH_CLIENTS, peak)?;
    let batch = batch.max(1);
    if batch > 1 {
        allow_whole_batches(&clients.file, batch)?;
    }
    let name = if batch > 1 { "front-door-batch-gateway" } else { "front-door-gateway" };
    let door = FrontDoor::start(stack, bin, dir, name, &clients.access(), &[]).await?;
    let (mut gateway, url, metrics_url, http) = (door.gateway, door.url, door.metrics_url, door.http);
    let broker = stack.pid(ehac_devstack::Server::Broker);
    let mut steps = Vec::new();
    let mut max_rate_within_limit = 0.0;
    for (i, &rate) in rates.iter().enumerate() {
        let phase = Phase::start(&if batch > 1 {
            format!("front door, batches of {batch}, {rate:.0} declarations/s")
        } else {
            format!("front door {rate:.0}/s")
        });
        let count = (rate * step_seconds).round() as u64;
        let load = LoadArgs {
            concurrency,
            seed: 1000 + i as u64,
            batch,
            ..LoadArgs::steady(&url, count, rate, "bench-front-door", &clients.api_keys)
        };
        // One unmeasured second at the step's rate first: new connections, the producer's
        // first metadata request and the broker's first write to a partition are start-up
        // costs, not the front door's steady behaviour.
        loadgen::run(&LoadArgs { count: rate.round() as u64, seed: 2000 + i as u64, ..load.clone() }).await?;
        let cpu = |pid: Option<u32>| pid.and_then(|p| proc_stats(p).ok()).map_or(0.0, |s| s.cpu_seconds);
        let spooled = || metric_value(&http, &metrics_url, SPOOLED);
        let (spooled_before, before) = (spooled().await?, (cpu(Some(gateway.child.id())), cpu(broker)));
        let result = loadgen::run(&load).await?;
        let after = (cpu(Some(gateway.child.id())), cpu(broker));
        let spooled_share = (spooled().await? - spooled_before) / result.accepted.max(1) as f64;
        let per_million = 1e6 / result.sent.max(1) as f64;
        let gateway_cpu = after.0 - before.0;
        let step = Step {
            offered_rate: rate,
            accepted_rate: result.accepted as f64 / result.elapsed.as_secs_f64(),
            ack_p50_ms: result.percentile_ms(0.5),
            ack_p99_ms: result.percentile_ms(0.99),
            ack_p999_ms: result.percentile_ms(0.999),
            spooled_share,
            gateway_cpu_seconds_per_million: gateway_cpu * per_million,
            broker_cpu_seconds_per_million: (after.1 - before.1) * per_million,
            loadgen_cpu_seconds_per_million: result.sending_cpu_seconds * per_million,
            loadgen_cpu_us_per_request: result.sending_cpu_seconds * 1e6 / result.requests.max(1) as f64,
            loadgen_to_gateway_cpu: result.sending_cpu_seconds / gateway_cpu.max(1e-9),
        };
        phase.done(format!(
            "accepted {:.0}/s, ack p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, {:.0}% through the spool",
            step.accepted_rate,
            step.ack_p50_ms,
            step.ack_p99_ms,
            step.ack_p999_ms,
            step.spooled_share * 100.0
        ));
        if step.ack_p99_ms <= p99_limit_ms {
            max_rate_within_limit = rate;
        }
        // 3% of the load is invalid on purpose and refused, so 97% is all that can be accepted.
        let saturated = step.accepted_rate < 0.9 * 0.97 * rate || step.ack_p99_ms > 1_000.0;
        steps.push(step);
        if saturated {
            break;
        }
        // Let the broker settle so one step's backlog does not spill into the next.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let status = gateway.stop()?;
    anyhow::ensure!(status.success(), "the front-door gateway exited with {status}");
    Ok(Sweep { batch, step_seconds, p99_limit_ms, steps, max_rate_within_limit })
}

/// Lets every client of a registry file send a whole batch at once: its burst covers two.
fn allow_whole_batches(file: &Path, batch: usize) -> anyhow::Result<()> {
    let mut registry = ehac_clients::file::load(file)?;
    for client in registry.clients.values_mut() {
        client.burst = client.burst.max(2 * batch as u32);
    }
    ehac_clients::file::save(file, &registry)?;
    Ok(())
}

/// A gateway alone on [`SWEEP_TOPIC`], started and ready.
pub(super) struct FrontDoor {
    pub(super) gateway: Service,
    pub(super) url: String,
    metrics_url: String,
    http: reqwest::Client,
}

impl FrontDoor {
    pub(super) async fn start(
        stack: &Stack,
        bin: &Path,
        dir: &Path,
        name: &str,
        access: &Access<'_>,
        extra: &[String],
    ) -> anyhow::Result<FrontDoor> {
        let spool = dir.join(format!("{name}-spool"));
        let _ = std::fs::remove_dir_all(&spool);
        let mut args = crate::services::gateway_args("127.0.0.1:0", "127.0.0.1:0", &spool, access);
        args.extend_from_slice(extra);
        let env = [("EHAC_KAFKA_BROKERS", stack.kafka_brokers()), ("EHAC_TOPIC_RAW", SWEEP_TOPIC.to_owned())];
        let (gateway, url, admin) = crate::services::start_gateway(bin, dir, name, &args, &env).await?;
        let http = reqwest::Client::new();
        wait_ready(&http, &format!("http://{admin}/readyz"), Duration::from_secs(60)).await?;
        Ok(FrontDoor { gateway, url, metrics_url: format!("http://{admin}/metrics"), http })
    }
}

/// One way of running the front door, at a fixed rate.
#[derive(Debug, Clone, Serialize)]
pub struct AccessRun {
    pub variant: &'static str,
    pub round: usize,
    pub accepted: u64,
    pub throttled: u64,
    pub ack_p99_ms: f64,
    /// Gateway CPU (user + system, all threads) per accepted declaration.
    pub gateway_cpu_us_per_accepted: f64,
}

/// What authentication and pass signing cost the gateway: the same load through a gateway
/// without keys, with API keys (and their rate limits), and with API keys and a signed pass
/// in every 202, in alternating rounds so that a slow minute on a shared machine does not
/// land on one variant only.
#[derive(Debug, Clone, Serialize)]
pub struct AccessCost {
    pub rate: f64,
    pub seconds: f64,
    pub clients: usize,
    pub runs: Vec<AccessRun>,
    /// Means over the rounds, CPU-µs per accepted declaration.
    pub anonymous_cpu_us: f64,
    pub api_keys_cpu_us: f64,
    pub api_keys_and_pass_cpu_us: f64,
}

pub const ANONYMOUS: &str = "anonymous";
pub const API_KEYS: &str = "API keys";
pub const API_KEYS_AND_PASS: &str = "API keys + signed pass";

pub async fn access_cost(stack: &Stack, bin: &Path, dir: &Path, rate: f64, seconds: f64, rounds: usize) -> anyhow::Result<AccessCost> {
    ehac_stream::kafka::ensure_topics(&stack.kafka_brokers(), &[SWEEP_TOPIC], 12).await?;
    let clients = provision_clients(dir, "cost-client", super::surge::BENCH_CLIENTS, rate)?;
    let keys = crate::gate::GateKeys::create(dir, "ID-JK")?;
    let pass_args = ["--pass-key".to_owned(), keys.issuing_key_file.display().to_string()];
    let mut runs = Vec::new();
    for round in 0..rounds.max(1) {
        for variant in [ANONYMOUS, API_KEYS, API_KEYS_AND_PASS] {
            let phase = Phase::start(&format!("front door cost: {variant}, {rate:.0}/s, round {}", round + 1));
            let (access, extra): (Access, &[String]) = match variant {
                ANONYMOUS => (Access::Anonymous, &[]),
                API_KEYS => (clients.access(), &[]),
                _ => (clients.access(), &pass_args),
            };
            let mut door = FrontDoor::start(stack, bin, dir, "cost-gateway", &access, extra).await?;
            let keys = if variant == ANONYMOUS { &[][..] } else { &clients.api_keys[..] };
            let count = (rate * seconds).round() as u64;
            let load = LoadArgs { seed: 3000 + round as u64, ..LoadArgs::steady(&door.url, count, rate, "bench-cost", keys) };
            // As in the sweep: one unmeasured second first.
            loadgen::run(&LoadArgs { count: rate.round() as u64, seed: 4000 + round as u64, ..load.clone() }).await?;
            let pid = door.gateway.child.id();
            let before = proc_stats(pid)?.cpu_seconds;
            let result = loadgen::run(&load).await?;
            let used = proc_stats(pid)?.cpu_seconds - before;
            let status = door.gateway.stop()?;
            anyhow::ensure!(status.success(), "the {variant} gateway exited with {status}");
            anyhow::ensure!(result.failed == 0, "{variant}: {} declarations failed", result.failed);
            let run = AccessRun {
                variant,
                round,
                accepted: result.accepted,
                throttled: result.throttled,
                ack_p99_ms: result.percentile_ms(0.99),
                gateway_cpu_us_per_accepted: used * 1e6 / result.accepted.max(1) as f64,
            };
            phase.done(format!(
                "{:.1} gateway CPU-µs per accepted declaration, ack p99 {:.1} ms, {} throttled",
                run.gateway_cpu_us_per_accepted, run.ack_p99_ms, run.throttled
            ));
            runs.push(run);
        }
    }
    let mean = |variant: &str| {
        let values: Vec<f64> = runs.iter().filter(|r| r.variant == variant).map(|r| r.gateway_cpu_us_per_accepted).collect();
        values.iter().sum::<f64>() / values.len().max(1) as f64
    };
    Ok(AccessCost {
        rate,
        seconds,
        clients: clients.api_keys.len(),
        anonymous_cpu_us: mean(ANONYMOUS),
        api_keys_cpu_us: mean(API_KEYS),
        api_keys_and_pass_cpu_us: mean(API_KEYS_AND_PASS),
        runs,
    })
}

/// `ehac bench batch`: the same declarations sent one per request and in batches, to one
/// gateway process with API keys on a fresh broker, in alternating rounds.
#[derive(clap::Args, Debug, Clone)]
pub struct BatchCostArgs {
    /// Where the run's servers keep data and the gateway its log (wiped first).
    #[arg(long, default_value = ".ehac/bench-batch")]
    pub dir: std::path::PathBuf,
    /// Declarations per batch request.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Offered declarations per second, for both ways (open loop: above what single requests
    /// keep up with, so declarations/s shows the ceiling of each).
    #[arg(long, default_value_t = 4_000.0)]
    pub rate: f64,
    /// Seconds of load per way and round.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Rounds (single, then batch, in each).
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// Requests in flight from the load generator.
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
}

/// One way of sending, one round.
#[derive(Debug, Clone, Serialize)]
pub struct BatchRun {
    /// 1: one declaration per request.
    pub batch: usize,
    pub round: usize,
    pub accepted: u64,
    pub refused: u64,
    pub failed: u64,
    /// Accepted declarations per second of the run.
    pub declarations_per_s: f64,
    /// Gateway CPU (user + system, all threads) per declaration sent.
    pub gateway_cpu_us_per_declaration: f64,
    pub ack_p99_ms: f64,
}

pub async fn batch_cost(args: &BatchCostArgs) -> anyhow::Result<Vec<BatchRun>> {
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let dir = args.dir.canonicalize()?;
    let bin = crate::services::bin_dir()?;
    let phase = Phase::start("servers");
    let tools = ehac_devstack::Tools::find_or_install()?;
    let stack = Stack::start(&tools, ehac_devstack::StackOptions::ephemeral(dir.join("stack"))?).await?;
    ehac_stream::kafka::ensure_topics(&stack.kafka_brokers(), &[SWEEP_TOPIC], 12).await?;
    phase.done(format!("kafka {}", stack.kafka_brokers()));
    let clients = provision_clients(&dir, "batch-client", super::surge::BENCH_CLIENTS, args.rate)?;
    // A client must be able to send one batch at once.
    allow_whole_batches(&clients.file, args.batch)?;
    let mut door = FrontDoor::start(&stack, &bin, &dir, "batch-gateway", &clients.access(), &[]).await?;
    let pid = door.gateway.child.id();
    let mut runs = Vec::new();
    for round in 0..args.rounds.max(1) {
        for batch in [1, args.batch] {
            let phase = Phase::start(&format!("{} per request, round {}", batch, round + 1));
            let count = (args.rate * args.seconds).round() as u64;
            let load = LoadArgs {
                concurrency: args.concurrency,
                seed: 5000 + round as u64 * 10 + u64::from(batch > 1),
                batch,
                ..LoadArgs::steady(&door.url, count, args.rate, "bench-batch", &clients.api_keys)
            };
            // One unmeasured second first, as in the sweep.
            loadgen::run(&LoadArgs { count: args.rate.round() as u64, seed: load.seed + 100, ..load.clone() }).await?;
            let before = proc_stats(pid)?.cpu_seconds;
            let result = loadgen::run(&load).await?;
            let used = proc_stats(pid)?.cpu_seconds - before;
            let run = BatchRun {
                batch,
                round,
                accepted: result.accepted,
                refused: result.refused,
                failed: result.failed,
                declarations_per_s: result.accepted as f64 / result.elapsed.as_secs_f64(),
                gateway_cpu_us_per_declaration: used * 1e6 / result.sent.max(1) as f64,
                ack_p99_ms: result.percentile_ms(0.99),
            };
            phase.done(format!(
                "{:.0} declarations/s, {:.1} gateway CPU-µs per declaration, ack p99 {:.1} ms, failed {}",
                run.declarations_per_s, run.gateway_cpu_us_per_declaration, run.ack_p99_ms, run.failed
            ));
            runs.push(run);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let status = door.gateway.stop()?;
    anyhow::ensure!(status.success(), "the gateway exited with {status}");
    drop(stack);
    Ok(runs)
}
