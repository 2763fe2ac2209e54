//! Our load generator against an independent one, side by side on one gateway: `oha` (from
//! crates.io; deploy/local/install.sh installs it) at the same fixed rate, open loop with its
//! latency correction (latency from each request's scheduled time, as ours), so the ack
//! latency figures are not an artefact of our own tool. Also what each sender costs in CPU per
//! request against the gateway's.
//!
//! oha sends no Idempotency-Key (the gateway gives each request a new declaration id) and
//! cycles through 1,000 declarations, so the gateway does the same work for both.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context};
use ehac_devstack::Stack;
use ehac_domain::sample::{Flaw, SampleGenerator};
use serde::Serialize;

use super::front_door::{FrontDoor, SWEEP_TOPIC};
use super::progress::Phase;
use crate::loadgen::{self, LoadArgs};
use crate::procstat::proc_stats;
use crate::services::provision_clients;

/// One load generator's run at the cross-check's rate.
#[derive(Debug, Clone, Serialize)]
pub struct LoadFigures {
    pub tool: String,
    pub requests: u64,
    /// Requests answered 2xx per second of the run.
    pub accepted_rate: f64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    /// The load generator's CPU (user + system, every thread) per request, and the gateway's.
    pub cpu_us_per_request: f64,
    pub gateway_cpu_us_per_request: f64,
    /// The first over the second: at most 1/3, so the sender is not what limits the rate measured.
    pub loadgen_to_gateway_cpu: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CrossCheck {
    pub rate: f64,
    pub seconds: f64,
    pub connections: usize,
    pub ours: LoadFigures,
    /// None when the independent load generator is not installed; `missing` says what to do.
    pub independent: Option<LoadFigures>,
    pub missing: Option<String>,
}

/// Where `oha` is: `$EHAC_OHA`, the project's tools folder, or the PATH.
pub fn find_oha() -> Option<PathBuf> {
    let tools = std::env::var("EHAC_TOOLS_DIR")
        .ok()
        .map(PathBuf::from)
        .or_else(|| std::env::var("HOME").ok().map(|h| PathBuf::from(h).join(".cache/ehac/tools")));
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::var("EHAC_OHA")
        .ok()
        .map(PathBuf::from)
        .into_iter()
        .chain(tools.map(|t| t.join("bin/oha")))
        .chain(std::env::split_paths(&path).map(|p| p.join("oha")))
        .find(|p| p.is_file())
}

/// The cross-check's client: one key for all of oha's requests, with a quota above the rate.
const INDEPENDENT_CLIENT: &str = "independent-loadgen";

pub async fn cross_check(stack: &Stack, bin: &Path, dir: &Path, rate: f64, seconds: f64, connections: usize) -> anyhow::Result<CrossCheck> {
    ehac_stream::kafka::ensure_topics(&stack.kafka_brokers(), &[SWEEP_TOPIC], 12).await?;
    let clients = provision_clients(dir, "cross-check-client", super::surge::BENCH_CLIENTS, rate)?;
    let mut registry = ehac_clients::file::load(&clients.file)?;
    let quota = (rate * 1.25).ceil() as u32;
    registry.add_client(INDEPENDENT_CLIENT, ehac_clients::Client { rate_per_second: quota, burst: quota, ..Default::default() })?;
    let oha_key = registry.issue_key(INDEPENDENT_CLIENT, chrono::Utc::now(), None)?.to_string();
    ehac_clients::file::save(&clients.file, &registry)?;
    let mut door = FrontDoor::start(stack, bin, dir, "cross-check-gateway", &clients.access(), &[]).await?;
    let gateway_pid = door.gateway.child.id();
    let gateway_cpu = || proc_stats(gateway_pid).map(|s| s.cpu_seconds);

    let phase = Phase::start(&format!("cross-check: ehac loadgen at {rate:.0}/s"));
    let count = (rate * seconds).round() as u64;
    let load = LoadArgs {
        // Every declaration valid, as oha's bodies are.
        invalid_form_percent: 0.0,
        invalid_reference_percent: 0.0,
        concurrency: connections,
        seed: 6000,
        ..LoadArgs::steady(&door.url, count, rate, "bench-cross-check", &clients.api_keys)
    };
    // One unmeasured second first, as in the sweep.
    loadgen::run(&LoadArgs { count: rate.round() as u64, seed: 6001, ..load.clone() }).await?;
    let before = gateway_cpu()?;
    let result = loadgen::run(&load).await?;
    let gateway_used = gateway_cpu()? - before;
    let requests = result.requests.max(1) as f64;
    let ours = LoadFigures {
        tool: format!("ehac loadgen {}", env!("CARGO_PKG_VERSION")),
        requests: result.requests,
        accepted_rate: result.accepted as f64 / result.elapsed.as_secs_f64(),
        ack_p50_ms: result.percentile_ms(0.5),
        ack_p99_ms: result.percentile_ms(0.99),
        cpu_us_per_request: result.sending_cpu_seconds * 1e6 / requests,
        gateway_cpu_us_per_request: gateway_used * 1e6 / requests,
        loadgen_to_gateway_cpu: result.sending_cpu_seconds / gateway_used.max(1e-9),
    };
    phase.done(figures(&ours));

    let (independent, missing) = match find_oha() {
        None => {
            let missing = "oha not found (cargo install oha --locked --root ~/.cache/ehac/tools, which deploy/local/install.sh does, or set EHAC_OHA): the cross-check ran ours only".to_owned();
            println!("   {missing}");
            (None, Some(missing))
        }
        Some(oha) => {
            let phase = Phase::start(&format!("cross-check: oha at {rate:.0}/s"));
            tokio::time::sleep(Duration::from_secs(1)).await;
            // Bodies one per line, which oha sends in turn: 1,000 different valid declarations.
            let body = dir.join("cross-check-declarations.jsonl");
            let mut generator = SampleGenerator::new(6002);
            let mut lines = Vec::new();
            for _ in 0..1_000 {
                serde_json::to_writer(&mut lines, &generator.declaration(chrono::Utc::now(), "", Flaw::None))?;
                lines.push(b'\n');
            }
            std::fs::write(&body, lines)?;
            let before = gateway_cpu()?;
            let run = run_oha(&oha, &door.url, &body, &oha_key, rate, seconds, connections, &dir.join("oha.json")).await?;
            let gateway_used = gateway_cpu()? - before;
            let requests = run.requests.max(1) as f64;
            let figures_oha = LoadFigures {
                tool: run.tool,
                requests: run.requests,
                accepted_rate: run.accepted_rate,
                ack_p50_ms: run.p50_ms,
                ack_p99_ms: run.p99_ms,
                cpu_us_per_request: run.cpu_seconds * 1e6 / requests,
                gateway_cpu_us_per_request: gateway_used * 1e6 / requests,
                loadgen_to_gateway_cpu: run.cpu_seconds / gateway_used.max(1e-9),
            };
            phase.done(figures(&figures_oha));
            (Some(figures_oha), None)
        }
    };
    let status = door.gateway.stop()?;
    ensure!(status.success(), "the cross-check gateway exited with {status}");
    Ok(CrossCheck { rate, seconds, connections, ours, independent, missing })
}

fn figures(f: &LoadFigures) -> String {
    format!(
        "{}: {:.0}/s accepted, ack p50 {:.1} ms, p99 {:.1} ms; {:.1} CPU-µs per request (gateway {:.1}, ratio {:.2})",
        f.tool, f.accepted_rate, f.ack_p50_ms, f.ack_p99_ms, f.cpu_us_per_request, f.gateway_cpu_us_per_request, f.loadgen_to_gateway_cpu
    )
}

/// What one oha run reported, and its CPU.
struct OhaRun {
    tool: String,
    requests: u64,
    accepted_rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_seconds: f64,
}

/// Runs oha for `seconds` at `rate` (open loop, latency corrected), POSTing the lines of
/// `body` in turn with the key; its JSON summary is kept in `out`. Its CPU comes from wait4's rusage.
#[allow(clippy::too_many_arguments)]
async fn run_oha(
    oha: &Path,
    gateway: &str,
    body: &Path,
    api_key: &str,
    rate: f64,
    seconds: f64,
    connections: usize,
    out: &Path,
) -> anyhow::Result<OhaRun> {
    let version = std::process::Command::new(oha).arg("--version").output()?;
    let tool = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    let mut command = std::process::Command::new(oha);
    command
        .args(["--no-tui", "--output-format", "json", "--latency-correction", "-m", "POST", "-T", "application/json"])
        .args(["-q", &format!("{rate}"), "-z", &format!("{}ms", (seconds * 1000.0).round()), "-c", &connections.to_string()])
        .arg("-H")
        .arg(format!("Authorization: Bearer {api_key}"))
        .arg("-Z")
        .arg(body)
        .arg(format!("{gateway}/v1/declarations"))
        .stdout(std::fs::File::create(out)?)
        .stderr(std::fs::File::create(out.with_extension("log"))?);
    let child = command.spawn().with_context(|| format!("starting {}", oha.display()))?;
    let pid = child.id() as libc::pid_t;
    let (status, usage) = tokio::task::spawn_blocking(move || {
        let mut status = 0;
        // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        (waited == pid).then_some((status, usage))
    })
    .await?
    .context("waiting for oha")?;
    drop(child);
    ensure!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "oha failed; see {}", out.with_extension("log").display());
    let seconds_of = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cpu_seconds = seconds_of(usage.ru_utime) + seconds_of(usage.ru_stime);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out)?).with_context(|| format!("oha's JSON in {}", out.display()))?;
    parse_oha(&json, tool, cpu_seconds)
}

/// The figures of oha's JSON summary: latencies are in seconds there.
fn parse_oha(json: &serde_json::Value, tool: String, cpu_seconds: f64) -> anyhow::Result<OhaRun> {
    let number = |v: &serde_json::Value, what: &str| v.as_f64().with_context(|| format!("oha's JSON has no {what}: {json}"));
    let statuses = json["statusCodeDistribution"].as_object().context("oha's JSON has no statusCodeDistribution")?;
    let count = |accepted: bool| -> u64 {
        statuses.iter().filter(|(code, _)| code.starts_with('2') == accepted).filter_map(|(_, n)| n.as_u64()).sum()
    };
    let (ok, other) = (count(true), count(false));
    let total_seconds = number(&json["summary"]["total"], "summary.total")?;
    Ok(OhaRun {
        tool,
        requests: ok + other,
        accepted_rate: ok as f64 / total_seconds.max(1e-9),
        p50_ms: number(&json["latencyPercentiles"]["p50"], "latencyPercentiles.p50")? * 1000.0,
        p99_ms: number(&json["latencyPercentiles"]["p99"], "latencyPercentiles.p99")? * 1000.0,
        cpu_seconds,
    })
}
