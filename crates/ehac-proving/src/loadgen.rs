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

use bytes::Bytes;
use ehac_domain::sample::{Flaw, SampleGenerator};
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Uri};
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

impl LoadArgs {
    /// A steady load (no surge) of `count` declarations at `rate` per second to `gateway`, as
    /// `client_id` with `api_keys` in turn; the rest as the command's defaults (1.5% invalid
    /// forms and 1.5% failing a reference check, 128 in flight, one attempt, single requests).
    pub fn steady(gateway: &str, count: u64, rate: f64, client_id: &str, api_keys: &[String]) -> LoadArgs {
        LoadArgs {
            gateway: gateway.to_owned(),
            count,
            baseline_rate: rate,
            surge_factor: 1.0,
            surge_share: 0.0,
            invalid_form_percent: 1.5,
            invalid_reference_percent: 1.5,
            concurrency: 128,
            seed: 20_201_219,
            client_id: client_id.to_owned(),
            api_keys: api_keys.to_vec(),
            attempts: 1,
            batch: 0,
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct LoadResult {
    pub sent: u64,
    /// HTTP requests those declarations went in (one each, or one per batch).
    pub requests: u64,
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
    /// CPU of this process (every thread) from the first request to the last answer: the
    /// sender's own cost, without building the declarations beforehand.
    pub sending_cpu_seconds: f64,
    /// Offered and accepted declarations and ack latency, second by second.
    pub per_second: Vec<LoadSecond>,
    /// When the first request was due (the per-second series count from here).
    pub started: Option<std::time::Instant>,
}

/// One second of a run: declarations scheduled in it, declarations accepted (answered 202) in
/// it, and the ack latency of those scheduled in it.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct LoadSecond {
    pub second: u32,
    pub offered: u64,
    pub accepted: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
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

type HttpClient = hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// How long one request may take before it counts as unanswered (and is retried).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What every request of a run shares: the connection pool, the parsed URL, the prebuilt
/// header values. Built once, so sending a request formats and parses nothing.
struct Sender {
    client: HttpClient,
    uri: Uri,
    json: HeaderValue,
    /// `Bearer ...` per API key, or none for an anonymous gateway.
    authorizations: Vec<HeaderValue>,
    throttled: AtomicU64,
}

/// One declaration (or batch) on its way: as whom, with which Idempotency-Key and body.
struct Request<'a> {
    sender: &'a Sender,
    authorization: Option<&'a HeaderValue>,
    idempotency_key: &'a HeaderValue,
    body: &'a Bytes,
    keep_pass: bool,
}

/// An answer: its status, its Retry-After in seconds if any, and its body.
struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: Bytes,
}

impl Request<'_> {
    /// The POST both senders make: JSON, the request's Idempotency-Key, its key if any. The
    /// body is read whole (small), so the connection goes back to the pool.
    async fn post(&self) -> Option<Answer> {
        let mut request = hyper::Request::new(Full::new(self.body.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.sender.uri.clone();
        let headers = request.headers_mut();
        headers.insert(CONTENT_TYPE, self.sender.json.clone());
        headers.insert(IDEMPOTENCY_KEY, self.idempotency_key.clone());
        if let Some(authorization) = self.authorization {
            headers.insert(AUTHORIZATION, authorization.clone());
        }
        let exchange = async {
            let response = self.sender.client.request(request).await.ok()?;
            let status = response.status().as_u16();
            let retry_after = response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()?.parse().ok());
            let body = response.into_body().collect().await.ok()?.to_bytes();
            Some(Answer { status, retry_after, body })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange).await.ok().flatten()
    }
}

/// Sends one declaration `attempts` times; the first decisive answer counts.
async fn send_all(request: &Request<'_>, attempts: u32) -> Outcome {
    let mut outcome = send(request).await;
    for _ in 1..attempts {
        let again = send(request).await;
        if matches!(outcome, Outcome::Failed) {
            outcome = again;
        }
    }
    outcome
}

/// One request, retried while the gateway is unreachable or answers 503, and after the wait a
/// 429 asks for. The answer is parsed only when the pass is wanted (the sender stays cheap).
async fn send(request: &Request<'_>) -> Outcome {
    let mut backoff = Duration::from_millis(100);
    for attempt in 0..8 {
        let answer = request.post().await;
        match answer.as_ref().map(|a| a.status) {
            Some(429) if attempt < 7 => {
                request.sender.throttled.fetch_add(1, Ordering::Relaxed);
                let wait = answer.and_then(|a| a.retry_after).unwrap_or(1);
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
            Some(202) if request.keep_pass => {
                let pass = answer
                    .and_then(|a| serde_json::from_slice::<serde_json::Value>(&a.body).ok())
                    .and_then(|a| a["pass"].as_str().map(str::to_owned));
                return Outcome::Accepted(pass);
            }
            Some(202) => return Outcome::Accepted(None),
            Some(422) => return Outcome::Refused,
            Some(503) | None if attempt < 7 => {
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
async fn send_batch(request: &Request<'_>, items: usize, attempts: u32) -> Counted {
    let mut counted = None;
    for _ in 0..attempts.max(1) {
        let again = send_batch_once(request, items).await;
        if counted.as_ref().is_none_or(|c: &Counted| c.failed == items as u64) {
            counted = Some(again);
        }
    }
    counted.unwrap_or_default()
}

async fn send_batch_once(request: &Request<'_>, items: usize) -> Counted {
    let failed = Counted { failed: items as u64, ..Counted::default() };
    let mut backoff = Duration::from_millis(100);
    for attempt in 0..8 {
        let answer = request.post().await;
        match answer {
            Some(Answer { status: 429, retry_after, .. }) if attempt < 7 => {
                request.sender.throttled.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(retry_after.unwrap_or(1))).await;
            }
            Some(Answer { status: 200 | 207, body, .. }) => {
                let Ok(answer) = serde_json::from_slice::<serde_json::Value>(&body) else { return failed };
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
            Some(Answer { status: 503, .. }) | None if attempt < 7 => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            _ => return failed,
        }
    }
    failed
}

/// One request's outcome as the run records it, for the totals and the per-second series.
struct Sample {
    /// Scheduled send time and answer time, in milliseconds from the start.
    scheduled_ms: u32,
    answered_ms: u32,
    latency_us: u64,
    accepted: u32,
    in_surge: bool,
}

/// Per-second series of a run, by second from the start.
fn per_second(samples: &[Sample], times: &[(f64, bool)]) -> Vec<LoadSecond> {
    let seconds = samples.iter().map(|s| s.scheduled_ms.max(s.answered_ms) / 1000 + 1).max().unwrap_or(0) as usize;
    let mut out: Vec<LoadSecond> = (0..seconds).map(|s| LoadSecond { second: s as u32, ..LoadSecond::default() }).collect();
    for (at, _) in times {
        if let Some(second) = out.get_mut(*at as usize) {
            second.offered += 1;
        }
    }
    let mut latencies: Vec<Vec<u64>> = vec![Vec::new(); seconds];
    for s in samples {
        out[(s.answered_ms / 1000) as usize].accepted += u64::from(s.accepted);
        if s.accepted > 0 {
            latencies[(s.scheduled_ms / 1000) as usize].extend(std::iter::repeat_n(s.latency_us, s.accepted as usize));
        }
    }
    for (second, mut l) in out.iter_mut().zip(latencies) {
        l.sort_unstable();
        second.p50_ms = quantile_ms(&l, 0.5);
        second.p99_ms = quantile_ms(&l, 0.99);
    }
    out
}

pub async fn run(args: &LoadArgs) -> anyhow::Result<LoadResult> {
    let times = schedule(args);
    let bodies = bodies(args);
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    // The gateway's answers are small and come at once: Nagle would hold requests back.
    connector.set_nodelay(true);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(args.concurrency)
        .build(connector);
    let per_request = args.batch.max(1);
    let path = if per_request > 1 { "/v1/declarations/batch" } else { "/v1/declarations" };
    let uri: Uri = format!("{}{path}", args.gateway.trim_end_matches('/')).parse()?;
    anyhow::ensure!(uri.scheme_str() == Some("http"), "the load generator speaks plain HTTP: {uri}");
    // A request's declarations: scheduled when its last one is due; a batch's body is their
    // JSON array, sent with its own Idempotency-Key. Built before the clock starts.
    let mut requests = Vec::with_capacity(times.len().div_ceil(per_request));
    let mut bodies = bodies.into_iter();
    for chunk in times.chunks(per_request) {
        let (at, in_surge) = *chunk.last().expect("chunks are not empty");
        let items: Vec<(String, Vec<u8>)> = bodies.by_ref().take(chunk.len()).collect();
        let (key, body) = if per_request == 1 {
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
        requests.push(((at, in_surge, chunk.len()), (HeaderValue::try_from(key)?, Bytes::from(body))));
    }
    let sender = Arc::new(Sender {
        client,
        uri,
        json: HeaderValue::from_static("application/json"),
        authorizations: args.api_keys.iter().map(|k| HeaderValue::try_from(format!("Bearer {}", k.trim()))).collect::<Result<_, _>>()?,
        throttled: AtomicU64::new(0),
    });
    let slots = Arc::new(Semaphore::new(args.concurrency));
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let samples = Arc::new(std::sync::Mutex::new(Vec::with_capacity(requests.len())));
    let passes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let surge_sent = times.iter().filter(|(_, in_surge)| *in_surge).count() as u64;
    let surge_seconds = surge_sent as f64 / (args.baseline_rate * args.surge_factor);
    let mut dispatch_lateness_us = Vec::with_capacity(requests.len());
    let mut waited_for_slot = 0;

    let bar = if std::io::stderr().is_terminal() { ProgressBar::new(args.count) } else { ProgressBar::hidden() };
    bar.set_style(ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} {msg}")?);
    let plain_every = (args.count / 10).max(1);

    let cpu_at_start = own_cpu_seconds();
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let attempts = args.attempts.max(1);
    let mut first_declaration = 0;
    for (i, ((at, in_surge, items), (key, body))) in requests.into_iter().enumerate() {
        // The pass sample: every PASS_SAMPLE_EVERYth declaration, by its number in the run.
        let keep_pass = if per_request == 1 { i % PASS_SAMPLE_EVERY == 0 } else { first_declaration % PASS_SAMPLE_EVERY < items };
        first_declaration += items;
        let scheduled = start + Duration::from_secs_f64(at);
        // A request already due goes now: no timer for it.
        if scheduled > Instant::now() {
            tokio::time::sleep_until(scheduled).await;
        }
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                waited_for_slot += 1;
                slots.clone().acquire_owned().await?
            }
        };
        dispatch_lateness_us.push(scheduled.elapsed().as_micros() as u64);
        let (sender, task_counts, samples, passes) = (sender.clone(), counts.clone(), samples.clone(), passes.clone());
        let task_bar = (!bar.is_hidden()).then(|| bar.clone());
        tasks.spawn(async move {
            let authorization = (!sender.authorizations.is_empty()).then(|| &sender.authorizations[i % sender.authorizations.len()]);
            let request = Request { sender: &sender, authorization, idempotency_key: &key, body: &body, keep_pass };
            let counted =
                if per_request == 1 { send_all(&request, attempts).await.into() } else { send_batch(&request, items, attempts).await };
            drop(permit);
            let answered = Instant::now();
            samples.lock().unwrap().push(Sample {
                scheduled_ms: (at * 1000.0) as u32,
                answered_ms: answered.duration_since(start).as_millis() as u32,
                latency_us: answered.duration_since(scheduled).as_micros() as u64,
                accepted: counted.accepted as u32,
                in_surge,
            });
            if !counted.passes.is_empty() {
                passes.lock().unwrap().extend(counted.passes);
            }
            for (slot, n) in [counted.accepted, counted.refused, counted.failed].into_iter().enumerate() {
                task_counts[slot].fetch_add(n, Ordering::Relaxed);
            }
            if let Some(bar) = task_bar {
                bar.inc(items as u64);
            }
        });
        while tasks.try_join_next().is_some() {}
        let crossed = (first_declaration as u64 / plain_every) > ((first_declaration - items) as u64 / plain_every);
        if crossed && bar.is_hidden() {
            eprintln!("loadgen: scheduled {}/{} after {:.1}s", first_declaration, args.count, start.elapsed().as_secs_f64());
        } else if crossed {
            bar.set_message(format!(
                "accepted {} refused {} failed {}",
                counts[0].load(Ordering::Relaxed),
                counts[1].load(Ordering::Relaxed),
                counts[2].load(Ordering::Relaxed)
            ));
        }
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed();
    let sending_cpu_seconds = own_cpu_seconds() - cpu_at_start;
    bar.finish();

    let samples = std::mem::take(&mut *samples.lock().unwrap());
    let latencies = |surge_only: bool| {
        let mut out: Vec<u64> = samples
            .iter()
            .filter(|s| !surge_only || s.in_surge)
            .flat_map(|s| std::iter::repeat_n(s.latency_us, s.accepted as usize))
            .collect();
        out.sort_unstable();
        out
    };
    let (latencies_us, surge_latencies_us) = (latencies(false), latencies(true));
    dispatch_lateness_us.sort_unstable();
    let passes = std::mem::take(&mut *passes.lock().unwrap());
    Ok(LoadResult {
        sent: args.count,
        requests: samples.len() as u64,
        accepted: counts[0].load(Ordering::Relaxed),
        refused: counts[1].load(Ordering::Relaxed),
        failed: counts[2].load(Ordering::Relaxed),
        elapsed,
        latencies_us,
        surge_latencies_us,
        surge_sent,
        surge_seconds,
        dispatch_lateness_us,
        waited_for_slot,
        throttled: sender.throttled.load(Ordering::Relaxed),
        passes,
        sending_cpu_seconds,
        per_second: per_second(&samples, &times),
        started: Some(start.into_std()),
    })
}

/// CPU time of this whole process so far (user + system, every thread).
fn own_cpu_seconds() -> f64 {
    crate::procstat::proc_stats(std::process::id()).map_or(0.0, |s| s.cpu_seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(scheduled_ms: u32, answered_ms: u32, accepted: u32) -> Sample {
        Sample { scheduled_ms, answered_ms, latency_us: u64::from(answered_ms - scheduled_ms) * 1000, accepted, in_surge: false }
    }

    #[test]
    fn per_second_counts_offered_by_schedule_and_accepted_by_answer() {
        let times = [(0.1, false), (0.5, false), (1.2, false)];
        let samples = [sample(100, 150, 1), sample(500, 1_100, 1), sample(1_200, 1_210, 0)];
        let series = per_second(&samples, &times);
        assert_eq!(series.iter().map(|s| (s.offered, s.accepted)).collect::<Vec<_>>(), vec![(2, 1), (1, 1)]);
        // Latency by scheduled second: second 0 had 50 ms and 600 ms, second 1 nothing accepted.
        assert_eq!((series[0].p50_ms, series[0].p99_ms), (50.0, 600.0));
        assert!(series[1].p50_ms.is_nan());
    }
}
