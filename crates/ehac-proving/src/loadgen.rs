//! Synthetic declarations sent to a gateway on a schedule: a baseline rate, a surge of
//! `surge_factor` times that rate, then the baseline again.
//!
//! Requests are scheduled on a clock (open loop) and latency is measured from each request's
//! scheduled time, so a queue building up in front of the gateway shows in the figures instead
//! of silently slowing the sender down (coordinated omission). At most `concurrency` requests
//! are in flight; beyond that, waiting for a slot counts as latency too. With `--batch N` a
//! request carries N declarations to the batch endpoint, as an airline's check-in system would.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ehac_domain::sample::{Flaw, SampleGenerator};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::Semaphore;
use tokio::time::Instant;

#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// Gateway base URL.
    #[arg(long, env = "EHAC_GATEWAY_URL", default_value = "http://127.0.0.1:8080")]
    pub gateway: String,
    /// Declarations to send.
    #[arg(long, default_value_t = 50_000)]
    pub count: u64,
    /// Declarations per second outside the surge.
    #[arg(long, default_value_t = 500.0)]
    pub baseline_rate: f64,
    /// The surge's rate as a multiple of the baseline.
    #[arg(long, default_value_t = 10.0)]
    pub surge_factor: f64,
    /// Share of all declarations sent during the surge.
    #[arg(long, default_value_t = 0.6)]
    pub surge_share: f64,
    /// Percent of declarations with a form error (the gateway answers 422).
    #[arg(long, default_value_t = 1.5)]
    pub invalid_form_percent: f64,
    /// Percent of declarations that pass the form check but fail a reference check (unknown
    /// airport or district, departure outside the window): the gateway answers 422 too.
    #[arg(long, default_value_t = 1.5)]
    pub invalid_reference_percent: f64,
    /// Most requests in flight at once.
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
    /// Seed for the generator: the same seed sends the same declarations.
    #[arg(long, default_value_t = 2020_12_19)]
    pub seed: u64,
    /// client_id of every declaration sent (kiosk or app id), to a gateway in anonymous mode.
    /// With API keys the body carries none and the gateway takes each key's client.
    #[arg(long, default_value = "loadgen")]
    pub client_id: String,
    /// API keys (`ehac_...`) to send as `Authorization: Bearer`, in turn, one per declaration:
    /// the load is spread over their clients as over a bank of kiosks and apps.
    #[arg(long = "api-key", env = "EHAC_API_KEYS", value_delimiter = ',', hide_env_values = true)]
    pub api_keys: Vec<String>,
    /// Times each declaration is sent (with the same Idempotency-Key), as a client that
    /// retries although its first request went through: 3 = the request and two retries.
    #[arg(long, default_value_t = 1)]
    pub attempts: u32,
    /// Send the declarations in batches of N to `POST /v1/declarations/batch`, each batch when
    /// its last declaration is due (0 or 1: one declaration per request). Latency is then
    /// counted per declaration, from the batch's scheduled time.
    #[arg(long, default_value_t = 0)]
    pub batch: usize,
}

#[derive(Debug, Default, Clone)]
pub struct LoadResult {
    pub sent: u64,
    /// Answered 202: the gateway holds these and the pipeline owes a row for each.
    pub accepted: u64,
    /// Answered 422: the traveller was told what to fix; nothing enters the pipeline.
    pub refused: u64,
    /// No answer or another status, after retries.
    pub failed: u64,
    pub elapsed: Duration,
    /// Latency of accepted requests from their scheduled send time, sorted, in microseconds.
    pub latencies_us: Vec<u64>,
    /// The same for the requests scheduled during the surge only.
    pub surge_latencies_us: Vec<u64>,
    /// Declarations scheduled during the surge, and the surge's scheduled length.
    pub surge_sent: u64,
    pub surge_seconds: f64,
    /// How late this sender itself dispatched requests against their schedule, sorted, in
    /// microseconds, measured once a connection slot was free.
    pub dispatch_lateness_us: Vec<u64>,
    /// Requests that found all `concurrency` slots busy and had to wait for one: the gateway
    /// was answering slower than the schedule asked for.
    pub waited_for_slot: u64,
    /// Answers 429 (a client's or the address's rate limit), each waited out for its
    /// Retry-After and sent again with the same Idempotency-Key.
    pub throttled: u64,
    /// The signed passes of every [`PASS_SAMPLE_EVERY`]th declaration accepted, for a gate to
    /// check (empty when the gateway signs none).
    pub passes: Vec<String>,
}

/// One declaration in this many has its pass kept in [`LoadResult::passes`].
pub const PASS_SAMPLE_EVERY: usize = 100;

/// The `p` quantile (0..=1) of sorted microseconds, in milliseconds; NaN when empty.
pub fn quantile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted_us.len() as f64 * p).ceil() as usize).clamp(1, sorted_us.len()) - 1;
    sorted_us[i] as f64 / 1000.0
}

impl LoadResult {
    pub fn percentile_ms(&self, p: f64) -> f64 {
        quantile_ms(&self.latencies_us, p)
    }

    pub fn surge_percentile_ms(&self, p: f64) -> f64 {
        quantile_ms(&self.surge_latencies_us, p)
    }

    pub fn line(&self) -> String {
        format!(
            "loadgen sent={} accepted={} refused={} failed={} throttled={} in {:.1}s ({:.0}/s); ack latency from schedule p50={:.1}ms p99={:.1}ms p99.9={:.1}ms",
            self.sent, self.accepted, self.refused, self.failed, self.throttled, self.elapsed.as_secs_f64(),
            self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9), self.percentile_ms(0.5), self.percentile_ms(0.99), self.percentile_ms(0.999)
        )
    }
}

/// Send time of every request, in seconds from the start, and whether it is in the surge.
fn schedule(args: &LoadArgs) -> Vec<(f64, bool)> {
    let surge = (args.count as f64 * args.surge_share).round() as u64;
    let before = (args.count - surge) / 2;
    let mut t = 0.0;
    (0..args.count)
        .map(|i| {
            let in_surge = i >= before && i < before + surge;
            let rate = if in_surge { args.baseline_rate * args.surge_factor } else { args.baseline_rate };
            let at = t;
            t += 1.0 / rate;
            (at, in_surge)
        })
        .collect()
}

fn bodies(args: &LoadArgs) -> Vec<(String, Vec<u8>)> {
    let mut generator = SampleGenerator::new(args.seed);
    let now = chrono::Utc::now();
    let form_cut = args.invalid_form_percent / 100.0;
    let reference_cut = form_cut + args.invalid_reference_percent / 100.0;
    (0..args.count)
        .map(|i| {
            // Spread flaws evenly over the run rather than in clumps.
            let position = ((i * 7919) % 10_000) as f64 / 10_000.0;
            let flaw = if position < form_cut {
                Flaw::Form
            } else if position < reference_cut {
                Flaw::Reference
            } else {
                Flaw::None
            };
            let client_id = if args.api_keys.is_empty() { args.client_id.as_str() } else { "" };
            let form = generator.declaration(now, client_id, flaw);
            // A client-generated idempotency key: a retried request is recognisably the same
            // declaration, and the gateway derives the same declaration id from it.
            let key = uuid::Uuid::now_v7().to_string();
            (key, serde_json::to_vec(&form).expect("forms serialise"))
        })
        .collect()
}

enum Outcome {
    /// With the pass, when it was asked for and the answer had one.
    Accepted(Option<String>),
    Refused,
    Failed,
}

/// What one request's declarations came to: one for a single request, N for a batch.
#[derive(Default)]
struct Counted {
    accepted: u64,
    refused: u64,
    failed: u64,
    passes: Vec<String>,
}

impl From<Outcome> for Counted {
    fn from(outcome: Outcome) -> Counted {
        match outcome {
            Outcome::Accepted(pass) => Counted { accepted: 1, passes: pass.into_iter().collect(), ..Counted::default() },
            Outcome::Refused => Counted { refused: 1, ..Counted::default() },
            Outcome::Failed => Counted { failed: 1, ..Counted::default() },
        }
    }
}

/// One declaration on its way: where to, as whom, and with which Idempotency-Key.
struct Request<'a> {
    client: &'a reqwest::Client,
    url: &'a str,
    /// `Bearer ...`, or none for an anonymous gateway.
    authorization: Option<&'a str>,
    idempotency_key: &'a str,
    keep_pass: bool,
    throttled: &'a AtomicU64,
}

/// Sends one declaration `attempts` times; the first decisive answer counts.
async fn send_all(request: &Request<'_>, body: Vec<u8>, attempts: u32) -> Outcome {
    let mut outcome = send(request, body.clone()).await;
    for _ in 1..attempts {
        let again = send(request, body.clone()).await;
        if matches!(outcome, Outcome::Failed) {
            outcome = again;
        }
    }
    outcome
}

impl Request<'_> {
    /// The POST both senders make: JSON, the request's Idempotency-Key, its key if any.
    fn post(&self, body: Vec<u8>) -> reqwest::RequestBuilder {
        let post = self
            .client
            .post(self.url)
            .header("content-type", "application/json")
            .header("idempotency-key", self.idempotency_key)
            .body(body);
        match self.authorization {
            Some(authorization) => post.header("authorization", authorization),
            None => post,
        }
    }
}

/// One request, retried while the gateway is unreachable or answers 503, and after the wait a
/// 429 asks for. The answer's body is read only when the pass is wanted (the sender stays cheap).
async fn send(request: &Request<'_>, body: Vec<u8>) -> Outcome {
    let mut backoff = Duration::from_millis(100);
    for attempt in 0..8 {
        let post = request.post(body.clone());
        let keep_pass = request.keep_pass;
        let response = post.send().await;
        if let Ok(r) = &response {
            if r.status().as_u16() == 429 && attempt < 7 {
                request.throttled.fetch_add(1, Ordering::Relaxed);
                let wait = r.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(1);
                tokio::time::sleep(Duration::from_secs(wait)).await;
                continue;
            }
        }
        match response.as_ref().map(|r| r.status().as_u16()) {
            Ok(202) if keep_pass => {
                let answer: Option<serde_json::Value> = match response {
                    Ok(r) => r.json().await.ok(),
                    Err(_) => None,
                };
                return Outcome::Accepted(answer.and_then(|a| a["pass"].as_str().map(str::to_owned)));
            }
            Ok(202) => return Outcome::Accepted(None),
            Ok(422) => return Outcome::Refused,
            Ok(503) | Err(_) if attempt < 7 => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            _ => return Outcome::Failed,
        }
    }
    Outcome::Failed
}

/// One batch of `items` declarations sent `attempts` times with the same Idempotency-Key; the
/// first decisive answer counts. Retried while the gateway is unreachable or answers 503, and
/// after the wait a 429 asks for (the batch is refused whole then).
async fn send_batch(request: &Request<'_>, body: Vec<u8>, items: usize, attempts: u32) -> Counted {
    let mut counted = None;
    for _ in 0..attempts.max(1) {
        let again = send_batch_once(request, body.clone(), items).await;
        if counted.as_ref().is_none_or(|c: &Counted| c.failed == items as u64) {
            counted = Some(again);
        }
    }
    counted.unwrap_or_default()
}

async fn send_batch_once(request: &Request<'_>, body: Vec<u8>, items: usize) -> Counted {
    let failed = Counted { failed: items as u64, ..Counted::default() };
    let mut backoff = Duration::from_millis(100);
    for attempt in 0..8 {
        let post = request.post(body.clone());
        let response = post.send().await;
        let status = response.as_ref().map(|r| r.status().as_u16()).map_err(|_| ());
        match (status, response) {
            (Ok(429), Ok(r)) if attempt < 7 => {
                request.throttled.fetch_add(1, Ordering::Relaxed);
                let wait = r.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(1);
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
            (Ok(200 | 207), Ok(r)) => {
                let Ok(answer) = r.json::<serde_json::Value>().await else { return failed };
                let Some(results) = answer["results"].as_array() else { return failed };
                let mut counted = Counted::default();
                for (i, item) in results.iter().enumerate() {
                    match item["status"].as_u64() {
                        Some(202) => {
                            counted.accepted += 1;
                            if request.keep_pass && i % PASS_SAMPLE_EVERY == 0 {
                                counted.passes.extend(item["pass"].as_str().map(str::to_owned));
                            }
                        }
                        Some(422) => counted.refused += 1,
                        _ => counted.failed += 1,
                    }
                }
                counted.failed += (items as u64).saturating_sub(results.len() as u64);
                return counted;
            }
            (Ok(503), _) | (Err(_), _) if attempt < 7 => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            _ => return failed,
        }
    }
    failed
}

pub async fn run(args: &LoadArgs) -> anyhow::Result<LoadResult> {
    let times = schedule(args);
    let bodies = bodies(args);
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).timeout(Duration::from_secs(30)).build()?;
    let per_request = args.batch.max(1);
    let path = if per_request > 1 { "/v1/declarations/batch" } else { "/v1/declarations" };
    let url = format!("{}{path}", args.gateway.trim_end_matches('/'));
    // A request's declarations: scheduled when its last one is due; a batch's body is their
    // JSON array, sent with its own Idempotency-Key.
    let mut requests = Vec::with_capacity(times.len().div_ceil(per_request));
    let mut bodies = bodies.into_iter();
    for chunk in times.chunks(per_request) {
        let (at, in_surge) = *chunk.last().expect("chunks are not empty");
        let items: Vec<(String, Vec<u8>)> = bodies.by_ref().take(chunk.len()).collect();
        let request = if per_request == 1 {
            items.into_iter().next().expect("one body per declaration")
        } else {
            let mut body = b"[".to_vec();
            for (i, (_, item)) in items.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(item);
            }
            body.push(b']');
            (uuid::Uuid::now_v7().to_string(), body)
        };
        requests.push(((at, in_surge, chunk.len()), request));
    }
    let slots = Arc::new(Semaphore::new(args.concurrency));
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(args.count as usize)));
    let surge_latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let passes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let throttled = Arc::new(AtomicU64::new(0));
    let authorizations: Arc<Vec<String>> = Arc::new(args.api_keys.iter().map(|k| format!("Bearer {}", k.trim())).collect());
    let surge_sent = times.iter().filter(|(_, in_surge)| *in_surge).count() as u64;
    let surge_seconds = surge_sent as f64 / (args.baseline_rate * args.surge_factor);
    let mut dispatch_lateness_us = Vec::with_capacity(args.count as usize);
    let mut waited_for_slot = 0;

    let bar = if std::io::stderr().is_terminal() { ProgressBar::new(args.count) } else { ProgressBar::hidden() };
    bar.set_style(ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} {msg}")?);
    let plain_every = (args.count / 10).max(1);

    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let attempts = args.attempts.max(1);
    let mut first_declaration = 0;
    for (i, ((at, in_surge, items), (key, body))) in requests.into_iter().enumerate() {
        // The pass sample: every PASS_SAMPLE_EVERYth declaration, by its number in the run.
        let keep_pass = if per_request == 1 { i % PASS_SAMPLE_EVERY == 0 } else { first_declaration % PASS_SAMPLE_EVERY < items };
        first_declaration += items;
        let scheduled = start + Duration::from_secs_f64(at);
        tokio::time::sleep_until(scheduled).await;
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                waited_for_slot += 1;
                slots.clone().acquire_owned().await?
            }
        };
        dispatch_lateness_us.push(scheduled.elapsed().as_micros() as u64);
        let (client, url, counts, task_bar) = (client.clone(), url.clone(), counts.clone(), bar.clone());
        let latencies = if in_surge { surge_latencies.clone() } else { latencies.clone() };
        let (passes, throttled, authorizations) = (passes.clone(), throttled.clone(), authorizations.clone());
        tasks.spawn(async move {
            let request = Request {
                client: &client,
                url: &url,
                authorization: (!authorizations.is_empty()).then(|| authorizations[i % authorizations.len()].as_str()),
                idempotency_key: &key,
                keep_pass,
                throttled: &throttled,
            };
            let counted = if items == 1 && per_request == 1 {
                send_all(&request, body, attempts).await.into()
            } else {
                send_batch(&request, body, items, attempts).await
            };
            drop(permit);
            if counted.accepted > 0 {
                let latency = scheduled.elapsed().as_micros() as u64;
                latencies.lock().unwrap().extend(std::iter::repeat_n(latency, counted.accepted as usize));
            }
            passes.lock().unwrap().extend(counted.passes);
            for (slot, n) in [counted.accepted, counted.refused, counted.failed].into_iter().enumerate() {
                counts[slot].fetch_add(n, Ordering::Relaxed);
            }
            task_bar.inc(items as u64);
            task_bar.set_message(format!(
                "accepted {} refused {} failed {}",
                counts[0].load(Ordering::Relaxed),
                counts[1].load(Ordering::Relaxed),
                counts[2].load(Ordering::Relaxed)
            ));
        });
        while tasks.try_join_next().is_some() {}
        if bar.is_hidden() && (first_declaration as u64 / plain_every) > ((first_declaration - items) as u64 / plain_every) {
            eprintln!("loadgen: scheduled {}/{} after {:.1}s", first_declaration, args.count, start.elapsed().as_secs_f64());
        }
    }
    while tasks.join_next().await.is_some() {}
    bar.finish();

    let mut surge_latencies_us = std::mem::take(&mut *surge_latencies.lock().unwrap());
    surge_latencies_us.sort_unstable();
    let mut latencies_us = std::mem::take(&mut *latencies.lock().unwrap());
    latencies_us.extend_from_slice(&surge_latencies_us);
    latencies_us.sort_unstable();
    dispatch_lateness_us.sort_unstable();
    let passes = std::mem::take(&mut *passes.lock().unwrap());
    Ok(LoadResult {
        sent: args.count,
        accepted: counts[0].load(Ordering::Relaxed),
        refused: counts[1].load(Ordering::Relaxed),
        failed: counts[2].load(Ordering::Relaxed),
        elapsed: start.elapsed(),
        latencies_us,
        surge_latencies_us,
        surge_sent,
        surge_seconds,
        dispatch_lateness_us,
        waited_for_slot,
        throttled: throttled.load(Ordering::Relaxed),
        passes,
    })
}
