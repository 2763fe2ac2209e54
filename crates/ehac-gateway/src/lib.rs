//! The front door: airports, kiosks and apps POST declarations here.
//!
//! A declaration is checked with the same pure rules the enricher applies
//! ([`ehac_domain::validate`]: form, airports, region codes, time windows), so a traveller gets
//! every field error at once (422) while still at the kiosk. The reference data is compiled in:
//! checking needs no back office.
//!
//! An accepted declaration gets an id and is produced to the raw topic; the answer (202) goes
//! out once the broker acknowledged it. If the broker does not acknowledge within the produce
//! deadline (down, unreachable, slow), the declaration is appended to a durable local spool
//! (`ehac-spool`: fsynced before the answer) and still gets its 202; a drain task sends the
//! spool to Kafka, oldest first, once the broker is back. "Accepted" means durable in Kafka or
//! on this gateway's disk. Only a full spool makes the gateway answer 503: when the e-HAC
//! server went down, travellers re-filled paper forms.
//!
//! Who may submit: every request carries a client's API key (`Authorization: Bearer ehac_...`),
//! checked against the client registry file ([`clients`], re-read while running). The
//! authenticated client is the declaration's `client_id`, its declaration ids are its own
//! (scoped by client), and it is held to its rate quota ([`limits`]).
//!
//! Routes: `POST /v1/declarations`, `POST /v1/declarations/batch` (a flight's manifest at once,
//! [`batch`]) and their contract `GET /openapi.json` ([`openapi`]) on `--listen`; `/healthz`,
//! `/readyz`, `/metrics` on `--admin-listen` only, so the public port serves nothing but the API.

// A refusal is an axum Response (128 bytes) returned as an Err on the cold path; boxing it
// would only add an allocation.
#![allow(clippy::result_large_err)]

mod batch;
mod body;
pub mod clients;
mod in_flight;
pub mod input;
mod limits;
mod metrics;
pub mod openapi;
pub mod pass;
mod serve;
pub mod tls;

use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use ehac_codec::RAW;
use ehac_domain::{DeclarationForm, FieldError, Policy, RawDeclaration, ReferenceData};
use ehac_spool::{Spool, SpoolConfig, SpoolError};
use ehac_stream::admin::{self, Readiness};
use ehac_stream::config::{KafkaArgs, PolicyArgs};
use ehac_stream::kafka;
use ehac_stream::spool_drain::{self, BatchOutcome, DrainError};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use crate::metrics::GatewayMetrics;

/// HTTP gateway for e-HAC declarations.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "ehac-gateway", version, about)]
pub struct Config {
    /// Print the public API's OpenAPI contract (what `GET /openapi.json` serves) and exit.
    #[arg(long)]
    pub print_openapi: bool,
    /// Address to serve the API on (only the API).
    #[arg(long, env = "EHAC_GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Address of `/healthz`, `/readyz` and `/metrics`, kept off the public port.
    #[arg(long, env = "EHAC_GATEWAY_ADMIN_LISTEN", default_value = "127.0.0.1:9182")]
    pub admin_listen: SocketAddr,
    #[command(flatten)]
    pub access: AccessArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Largest request body accepted; larger ones get 413.
    #[arg(long, env = "EHAC_GATEWAY_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,
    /// Most declarations in one `POST /v1/declarations/batch`; more get 413.
    #[arg(long, env = "EHAC_GATEWAY_MAX_BATCH_ITEMS", default_value_t = 500)]
    pub max_batch_items: usize,
    /// Largest batch request body; larger ones get 413. 4 MiB holds 500 declarations of 8 KiB,
    /// several times a real one.
    #[arg(long, env = "EHAC_GATEWAY_MAX_BATCH_BODY_BYTES", default_value_t = 4 << 20)]
    pub max_batch_body_bytes: usize,
    /// When a 202 is given: `broker-ack` after the broker acknowledged the declaration (the
    /// spool only when it does not within --produce-timeout-ms, or while the spool holds
    /// anything); `write-ahead` after the declaration is fsynced to the local spool (group
    /// commit), which the drain then sends to the broker. Both make the 202 durable.
    #[arg(long, env = "EHAC_GATEWAY_ACCEPT_AFTER", value_enum, default_value_t = AcceptAfter::BrokerAck)]
    pub accept_after: AcceptAfter,
    /// How long to wait for the broker to acknowledge a declaration before it goes to the local
    /// spool instead.
    #[arg(long, env = "EHAC_GATEWAY_PRODUCE_TIMEOUT_MS", default_value_t = 1_000)]
    pub produce_timeout_ms: u64,
    /// How long a declaration may wait in the producer for others to share its request to the
    /// broker; it adds to every traveller's wait, so it is kept shorter than the services' 5 ms.
    #[arg(long, env = "EHAC_GATEWAY_LINGER_MS", default_value_t = 1)]
    pub linger_ms: u64,
    /// Directory of the durable local spool (one gateway process per directory).
    #[arg(long, env = "EHAC_GATEWAY_SPOOL_DIR", default_value = "ehac-gateway-spool")]
    pub spool_dir: std::path::PathBuf,
    /// The regional pass issuing key (PKCS#8 PEM or JWK, from `ehac-gate keys issuing`): every
    /// 202 then carries a signed pass for the arrival gate. Without it no pass is issued.
    #[arg(long, env = "EHAC_GATEWAY_PASS_KEY")]
    pub pass_key: Option<PathBuf>,
    /// The issuing key's region, for a PEM key (a JWK names its own).
    #[arg(long, env = "EHAC_GATEWAY_PASS_REGION")]
    pub pass_region: Option<String>,
    /// Hours after the scheduled arrival that a pass stays valid (delays, slow queues).
    #[arg(long, env = "EHAC_GATEWAY_PASS_VALID_HOURS", default_value_t = 24)]
    pub pass_valid_hours: i64,
    /// Bytes the spool may hold before the gateway answers 503.
    #[arg(long, env = "EHAC_GATEWAY_SPOOL_MAX_BYTES", default_value_t = 1 << 30)]
    pub spool_max_bytes: u64,
    /// After SIGTERM and the last answer, how long to keep sending the spool to the broker
    /// before exiting (0: leave it for the next start). A supervisor's stop timeout must be
    /// longer than this plus the in-flight requests' produce timeout and 10 s of producer flush.
    #[arg(long, env = "EHAC_GATEWAY_SPOOL_DRAIN_ON_EXIT_SECS", default_value_t = 20)]
    pub spool_drain_on_exit_secs: u64,
}

/// Who may submit, how fast, and how much a client can hold open.
#[derive(clap::Args, Debug, Clone)]
pub struct AccessArgs {
    /// The client registry (JSON, managed with `ehac clients`); re-read every second.
    #[arg(long, env = "EHAC_GATEWAY_CLIENTS_FILE")]
    pub clients_file: Option<PathBuf>,
    /// Development only: without a clients file, accept requests without a key and trust the
    /// body's `client_id`. Without either option the gateway refuses to start.
    #[arg(long, env = "EHAC_GATEWAY_ALLOW_ANONYMOUS", conflicts_with = "clients_file")]
    pub allow_anonymous: bool,
    /// Requests per second from one peer address before authentication (0: no limit). Kiosk
    /// banks and carrier apps behind NAT share an address, so it is generous.
    #[arg(long, env = "EHAC_GATEWAY_PEER_RATE_PER_SECOND", default_value_t = 2_000)]
    pub peer_rate_per_second: u32,
    #[arg(long, env = "EHAC_GATEWAY_PEER_BURST", default_value_t = 5_000)]
    pub peer_burst: u32,
    /// A client must send a request's headers within this time, or the connection is closed.
    #[arg(long, env = "EHAC_GATEWAY_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,
    /// Open connections; more are closed at once.
    #[arg(long, env = "EHAC_GATEWAY_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Requests being worked on at once, counted from when their body has arrived; more get
    /// 503 with `Retry-After: 1`.
    #[arg(long, env = "EHAC_GATEWAY_MAX_REQUESTS_IN_FLIGHT", default_value_t = 4_096)]
    pub max_requests_in_flight: usize,
    /// Requests one authenticated client may have in flight, from its headers to its answer;
    /// more get 429 with `Retry-After: 1` (0: no cap). A kiosk sends one at a time and an
    /// airline's batch client a few; 64 leaves room for a bank of kiosks sharing a key, or a
    /// client at the default 50/s while the broker takes its full produce timeout.
    #[arg(long, env = "EHAC_GATEWAY_MAX_REQUESTS_IN_FLIGHT_PER_CLIENT", default_value_t = 64)]
    pub max_requests_in_flight_per_client: usize,
    /// The same cap per peer address for requests with no authenticated client (anonymous
    /// mode): an address may be a whole airport's NAT, so it is generous (0: no cap).
    #[arg(long, env = "EHAC_GATEWAY_MAX_REQUESTS_IN_FLIGHT_PER_ADDRESS", default_value_t = 1_024)]
    pub max_requests_in_flight_per_address: usize,
    /// A request's body must arrive within this time after its headers, plus the allowance of
    /// --body-min-bytes-per-second for its length; else 408 and the connection is closed.
    #[arg(long, env = "EHAC_GATEWAY_BODY_READ_TIMEOUT_MS", default_value_t = 5_000)]
    pub body_read_timeout_ms: u64,
    /// The slowest upload the body deadline allows for: it grows by the declared
    /// Content-Length at this rate, up to the route's largest body (0: no allowance). 32 KiB/s
    /// gives a 64 KiB declaration 7 s and a 4 MiB manifest 133 s.
    #[arg(long, env = "EHAC_GATEWAY_BODY_MIN_BYTES_PER_SECOND", default_value_t = 32 * 1024)]
    pub body_min_bytes_per_second: u64,
    #[command(flatten)]
    pub tls: tls::TlsArgs,
}

impl Config {
    /// A gateway on loopback ports the OS picks (`Running` tells which), with the service's
    /// defaults otherwise: what tests and in-process tools start.
    pub fn on_loopback(kafka_brokers: &str, spool_dir: PathBuf, access: AccessArgs) -> Config {
        Config {
            listen: "127.0.0.1:0".parse().expect("a socket address"),
            admin_listen: "127.0.0.1:0".parse().expect("a socket address"),
            access,
            kafka: KafkaArgs { kafka_brokers: kafka_brokers.to_owned(), topics: Default::default() },
            policy: PolicyArgs::default(),
            max_body_bytes: 64 * 1024,
            max_batch_items: 500,
            max_batch_body_bytes: 4 << 20,
            accept_after: AcceptAfter::BrokerAck,
            produce_timeout_ms: 1_000,
            linger_ms: 1,
            spool_dir,
            spool_max_bytes: 64 << 20,
            spool_drain_on_exit_secs: 20,
            pass_key: None,
            pass_region: None,
            pass_valid_hours: 24,
            print_openapi: false,
        }
    }
}

impl Default for AccessArgs {
    fn default() -> Self {
        AccessArgs {
            clients_file: None,
            allow_anonymous: false,
            peer_rate_per_second: 2_000,
            peer_burst: 5_000,
            header_read_timeout_ms: 10_000,
            max_connections: 10_000,
            max_requests_in_flight: 4_096,
            max_requests_in_flight_per_client: 64,
            max_requests_in_flight_per_address: 1_024,
            body_read_timeout_ms: 5_000,
            body_min_bytes_per_second: 32 * 1024,
            tls: tls::TlsArgs::default(),
        }
    }
}

struct Gateway {
    /// `None`: anonymous (development) mode.
    clients: Option<clients::Registry>,
    /// `None`: plain HTTP (TLS ends at a proxy in front).
    tls: Option<tls::Tls>,
    client_limits: limits::ClientLimits,
    peer_limits: limits::PeerLimits,
    /// Each caller's requests in flight, body included ([`in_flight`]).
    caller_slots: in_flight::CallerSlots,
    /// The gateway's requests being worked on, taken once the body has arrived.
    work_slots: Arc<tokio::sync::Semaphore>,
    body_deadline: body::BodyDeadline,
    max_body_bytes: usize,
    max_batch_body_bytes: usize,
    producer: FutureProducer,
    topic: String,
    produce_timeout: Duration,
    accept_after: AcceptAfter,
    policy: Policy,
    metrics: GatewayMetrics,
    spool: Spool,
    passes: Option<pass::PassIssuer>,
    max_batch_items: usize,
    /// The spool's fsync count last copied to `metrics.spool_fsyncs`.
    spool_fsyncs_seen: std::sync::Mutex<u64>,
}

/// When the gateway answers 202 (see `--accept-after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AcceptAfter {
    BrokerAck,
    WriteAhead,
}

impl Gateway {
    /// Whether a declaration goes to the broker before the spool: in `broker-ack` mode, unless
    /// the spool holds anything (the broker is then known to be away: do not wait for it
    /// again).
    fn tries_the_broker_first(&self) -> bool {
        self.accept_after == AcceptAfter::BrokerAck && self.spool.depth().records == 0
    }

    /// After an append: brings `gateway_spool_fsyncs_total` up to the spool's own count, and
    /// the depth gauges up to date (the drain task sets them too, but while the broker is away
    /// it sits in a send for up to the producer's message timeout, and the stranded-spool
    /// alert must not read a stale depth meanwhile).
    fn note_spool_written(&self) {
        let depth = self.spool.depth();
        self.metrics.spool_records.set(depth.records as i64);
        self.metrics.spool_bytes.set(depth.bytes as i64);
        let fsyncs = self.spool.stats().fsyncs;
        let mut seen = self.spool_fsyncs_seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if fsyncs > *seen {
            self.metrics.spool_fsyncs.inc_by(fsyncs - *seen);
            *seen = fsyncs;
        }
    }
}

/// A started gateway: where it listens, and the task serving it.
pub struct Running {
    pub addr: SocketAddr,
    /// Where `/healthz`, `/readyz` and `/metrics` are.
    pub admin_addr: SocketAddr,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Waits until the gateway has drained after shutdown.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await?
    }
}

/// Binds the listener and starts serving. Returns once the port is bound.
pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Running> {
    let clients = match (&config.access.clients_file, config.access.allow_anonymous) {
        (Some(path), _) => {
            let registry = clients::Registry::load(path)?;
            tokio::spawn(registry.clone().watch(path.clone(), Duration::from_secs(1), shutdown.clone()));
            Some(registry)
        }
        (None, true) => {
            tracing::warn!("no clients file: accepting declarations without an API key (--allow-anonymous, development only)");
            None
        }
        (None, false) => anyhow::bail!(
            "no client registry: give --clients-file (EHAC_GATEWAY_CLIENTS_FILE), or --allow-anonymous for local development only"
        ),
    };
    let tls = tls::Tls::load(&config.access.tls).context("setting up TLS")?;
    if let Some(tls) = &tls {
        tokio::spawn(tls.clone().watch(Duration::from_secs(1), shutdown.clone()));
    }
    let registry = ehac_stream::telemetry::registry("gateway");
    let metrics = GatewayMetrics::register(&registry)?;
    let producer = kafka::producer_with_linger(&config.kafka.kafka_brokers, Duration::from_millis(config.linger_ms))?;
    let readiness = Readiness::default();
    let spool = Spool::open(&config.spool_dir, SpoolConfig { max_bytes: config.spool_max_bytes, ..SpoolConfig::default() })
        .map_err(|e| anyhow::anyhow!("opening the spool in {}: {e}", config.spool_dir.display()))?;
    // The broker's state is shown, not required: while it is away, declarations go to the spool.
    readiness.detail("kafka", "broker not contacted yet");
    readiness.check("spool", "not checked yet");
    tokio::spawn(watch_broker(producer.clone(), config.kafka.topics.raw.clone(), readiness.clone(), shutdown.clone()));

    let passes = match &config.pass_key {
        Some(path) => {
            Some(pass::PassIssuer::from_file(path, config.pass_region.as_deref(), chrono::Duration::hours(config.pass_valid_hours))?)
        }
        None => {
            tracing::warn!("no --pass-key: accepted declarations get no signed pass");
            None
        }
    };
    let gateway = Arc::new(Gateway {
        clients,
        tls: tls.clone(),
        client_limits: limits::ClientLimits::default(),
        peer_limits: limits::PeerLimits::new(limits::quota(config.access.peer_rate_per_second, config.access.peer_burst)),
        caller_slots: in_flight::CallerSlots::new(
            config.access.max_requests_in_flight_per_client,
            config.access.max_requests_in_flight_per_address,
        ),
        work_slots: Arc::new(tokio::sync::Semaphore::new(config.access.max_requests_in_flight)),
        body_deadline: body::BodyDeadline {
            base: Duration::from_millis(config.access.body_read_timeout_ms),
            min_bytes_per_second: config.access.body_min_bytes_per_second,
        },
        max_body_bytes: config.max_body_bytes,
        max_batch_body_bytes: config.max_batch_body_bytes,
        producer: producer.clone(),
        topic: config.kafka.topics.raw.clone(),
        produce_timeout: Duration::from_millis(config.produce_timeout_ms),
        accept_after: config.accept_after,
        policy: config.policy.policy(),
        metrics,
        spool,
        passes,
        max_batch_items: config.max_batch_items,
        spool_fsyncs_seen: std::sync::Mutex::new(0),
    });
    let drain = tokio::spawn(drain_spool(gateway.clone(), readiness.clone(), config.spool_max_bytes, shutdown.clone()));
    let (spool, raw_topic) = (gateway.spool.clone(), gateway.topic.clone());
    let drain_on_exit = Duration::from_secs(config.spool_drain_on_exit_secs);
    tokio::spawn(forget_idle_peers(gateway.clone(), shutdown.clone()));
    let app = Router::new()
        .route("/v1/declarations", post(submit).layer(DefaultBodyLimit::max(config.max_body_bytes)))
        .route("/v1/declarations/batch", post(batch::submit_batch).layer(DefaultBodyLimit::max(config.max_batch_body_bytes)))
        .with_state(gateway)
        .route("/openapi.json", get(contract))
        .fallback(not_found);
    let admin_addr = admin::serve(config.admin_listen, registry, readiness, shutdown.clone()).await?;

    let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|e| anyhow::anyhow!("binding {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, %admin_addr, topic = %config.kafka.topics.raw, "gateway listening");
    let limits = serve::Limits {
        header_read_timeout: Duration::from_millis(config.access.header_read_timeout_ms),
        max_connections: config.access.max_connections,
    };
    let task = tokio::spawn(async move {
        serve::serve(listener, app, limits, tls, shutdown).await;
        drain.await?;
        // What is still spooled after this stays on disk for the next start (or `ehac spool drain`).
        drain_spool_before_exit(&spool, &producer, &raw_topic, drain_on_exit).await;
        // Every in-flight request awaited its own delivery; flush anything librdkafka still holds.
        tokio::task::spawn_blocking(move || producer.flush(Timeout::After(Duration::from_secs(10)))).await??;
        tracing::info!("gateway drained");
        Ok(())
    });
    Ok(Running { addr, admin_addr, task })
}

/// Answer body for everything that is not a 202.
#[derive(Serialize, utoipa::ToSchema)]
struct Problem {
    /// A stable code: malformed_json, unauthorized, forbidden, invalid_declaration, rate_limited,
    /// too_many_in_flight, request_timeout, ...
    error: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldError>,
}

fn problem(status: StatusCode, error: &'static str, message: impl Into<String>, errors: Vec<FieldError>) -> Response {
    (status, Json(Problem { error, message: message.into(), errors })).into_response()
}

#[derive(Serialize, Clone, utoipa::ToSchema)]
struct Accepted {
    /// The declaration's id, scoped by the client (see Idempotency-Key).
    #[schema(format = "uuid")]
    declaration_id: String,
    /// When the gateway received it, RFC 3339.
    #[schema(format = DateTime)]
    received_at: String,
    /// The signed e-HAC pass (`EH1:...`) for the arrival gate; absent without an issuing key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pass: Option<String>,
}

/// Namespace of declaration ids derived from an `Idempotency-Key` (UUIDv5).
const IDEMPOTENCY_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6568_6163_2d69_646d_8000_0000_0000_0001);
/// Namespace of declaration ids derived from a client's own `declaration_id` (UUIDv5).
const CLIENT_DECLARATION_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6568_6163_2d69_646d_8000_0000_0000_0002);

/// The declaration id, always scoped by the client: from the client's own `declaration_id`,
/// else from its `Idempotency-Key` (UUIDv5 of client and value, so a retry gets the same id
/// and two clients that happen to pick the same value get two declarations), else a new
/// UUIDv7. The client's own id stays in the form as sent.
fn declaration_id(client_id: &str, form: &DeclarationForm, idempotency_key: Option<&str>) -> String {
    match (&form.declaration_id, idempotency_key) {
        (Some(id), _) => client_declaration_id(client_id, id),
        (None, Some(key)) => uuid::Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, format!("{client_id}\n{key}").as_bytes()).to_string(),
        (None, None) => uuid::Uuid::now_v7().to_string(),
    }
}

/// The stored id of a declaration a client sent with its own `declaration_id`: UUIDv5 of the
/// client and that id. Public so tests and tools can find a declaration by the client's id.
pub fn client_declaration_id(client_id: &str, own_id: &str) -> String {
    uuid::Uuid::new_v5(&CLIENT_DECLARATION_NAMESPACE, format!("{client_id}\n{own_id}").as_bytes()).to_string()
}

/// Who sent a request, as far as the gateway trusts it.
#[derive(Clone)]
enum Caller {
    /// A valid key of this client, with the client's registry entry.
    Client { client_id: String, client: ehac_clients::Client },
    /// Anonymous (development) mode: the body's `client_id` is believed.
    Anonymous,
}

async fn submit(
    State(gateway): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    certified: Option<Extension<tls::CertifiedClient>>,
    request: Request,
) -> Response {
    let (outcome, response) = match receive(&gateway, peer, certified.as_ref().map(|c| &c.0), request, Route::Single).await {
        Ok(received) => {
            let started = Instant::now();
            let answered = handle(&gateway, &received.caller, received.idempotency_key.as_deref(), received.body).await;
            if answered.0 == "accepted" {
                gateway.metrics.ack_seconds.observe(started.elapsed().as_secs_f64());
            }
            answered
        }
        Err(refused) => refused,
    };
    gateway.metrics.requests.with_label_values(&[outcome]).inc();
    response
}

/// A request let in: who sent it, its body as read, and the slots it holds until answered.
struct Received {
    caller: Caller,
    idempotency_key: Option<String>,
    /// Sent as `application/x-ndjson` (a batch's other form).
    ndjson: bool,
    body: Result<Bytes, BytesRejection>,
    _slots: (in_flight::Slot, tokio::sync::OwnedSemaphorePermit),
}

/// What both endpoints do between the headers and the work, in this order: [`admit`] from the
/// headers alone (nothing of the body is read for a caller who is refused), one of the caller's
/// slots, the body within its deadline (counted from here: the handler starts as soon as the
/// headers are read), and only then one of the gateway's slots for the work.
async fn receive(
    gateway: &Gateway,
    peer: SocketAddr,
    certified: Option<&tls::CertifiedClient>,
    request: Request,
    route: Route,
) -> Result<Received, (&'static str, Response)> {
    let (parts, body) = request.into_parts();
    let largest = match route {
        Route::Single => gateway.max_body_bytes,
        Route::Batch => gateway.max_batch_body_bytes,
    };
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let within = gateway.body_deadline.for_body(declared, largest as u64);
    let deadline = tokio::time::Instant::now() + within;

    let caller = admit(gateway, peer, certified, &parts.headers, route)?;
    let idempotency_key = idempotency_key(&parts.headers).map_err(|problem| ("malformed", problem))?;
    let ndjson = input::is_ndjson(&parts.headers);
    let holder = match &caller {
        Caller::Client { client_id, .. } => in_flight::Holder::Client(client_id.clone()),
        Caller::Anonymous => in_flight::Holder::Address(peer.ip()),
    };
    let kind = holder.kind();
    let Some(caller_slot) = gateway.caller_slots.try_take(holder) else {
        gateway.metrics.in_flight_refusals.with_label_values(&[kind]).inc();
        return Err(("too_many_in_flight", too_many_in_flight(kind)));
    };

    let http1 = parts.version < axum::http::Version::HTTP_2;
    let body = match tokio::time::timeout_at(deadline, Bytes::from_request(Request::from_parts(parts, body), &())).await {
        Ok(body) => body,
        Err(_) => {
            gateway.metrics.body_timeouts.with_label_values(&[route.label()]).inc();
            return Err(("timeout", request_timeout(within, http1)));
        }
    };
    let Ok(work_slot) = gateway.work_slots.clone().try_acquire_owned() else {
        gateway.metrics.in_flight_refusals.with_label_values(&["gateway"]).inc();
        let mut response = problem(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "too many requests in flight; retry", vec![]);
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Err(("overloaded", response));
    };
    Ok(Received { caller, idempotency_key, ndjson, body, _slots: (caller_slot, work_slot) })
}

/// 429 for a caller whose every slot is taken: its own requests end within milliseconds unless
/// it is slow to send them, so a second is enough.
fn too_many_in_flight(whose: &str) -> Response {
    let message = format!("too many requests in flight for this {whose}; retry after 1 s with the same Idempotency-Key");
    let mut response = problem(StatusCode::TOO_MANY_REQUESTS, "too_many_in_flight", message, vec![]);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// 408 for a body that did not arrive in time. The rest of it may still be on its way, so the
/// connection cannot carry another request: it is closed (HTTP/2 resets the stream instead).
fn request_timeout(within: Duration, http1: bool) -> Response {
    let message =
        format!("the body did not arrive within {} ms of the headers; send it again with the same Idempotency-Key", within.as_millis());
    let mut response = problem(StatusCode::REQUEST_TIMEOUT, "request_timeout", message, vec![]);
    if http1 {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Which endpoint a request came to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    /// `POST /v1/declarations`: one declaration, one unit of the client's rate.
    Single,
    /// `POST /v1/declarations/batch`: JSON or NDJSON; the client's rate is charged per item
    /// once the body is read ([`batch`]).
    Batch,
}

impl Route {
    /// The `route` label of the gateway's metrics.
    fn label(self) -> &'static str {
        match self {
            Route::Single => "single",
            Route::Batch => "batch",
        }
    }
}

/// Everything decided from the headers alone, cheapest first: the peer's rate, the key, the
/// media type, the client's rate (for a single declaration). Nothing here reads the body.
fn admit(
    gateway: &Gateway,
    peer: SocketAddr,
    certified: Option<&tls::CertifiedClient>,
    headers: &HeaderMap,
    route: Route,
) -> Result<Caller, (&'static str, Response)> {
    gateway.peer_limits.check(peer.ip()).map_err(|wait| ("rate_limited", too_many_requests(wait, "from this address")))?;
    let caller = match (&gateway.clients, certified) {
        (_, Some(certified)) => certified_caller(gateway, certified, headers)?,
        (None, None) => Caller::Anonymous,
        (Some(registry), None) => {
            let registry = registry.current();
            let presented = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            });
            let Some(presented) = presented else {
                return Err(("unauthorized", unauthorized(None, "an API key is required: Authorization: Bearer ehac_...")));
            };
            match registry.authenticate(presented, chrono::Utc::now()) {
                Ok(auth) => Caller::Client { client_id: auth.client_id.to_owned(), client: auth.client.clone() },
                Err(ehac_clients::AuthError::Token(e)) => {
                    return Err(("unauthorized", unauthorized(Some("invalid_token"), &e.to_string())));
                }
                Err(e) => {
                    // Unknown, wrong, revoked and expired keys get one answer, so it tells a
                    // guesser nothing; the log says which.
                    tracing::info!(reason = %e, "API key refused");
                    return Err(("unauthorized", unauthorized(Some("invalid_token"), "the API key is not valid")));
                }
            }
        }
    };
    let media_type_ok = match route {
        Route::Single => input::is_json(headers),
        Route::Batch => input::is_json(headers) || input::is_ndjson(headers),
    };
    if !media_type_ok {
        let message = match route {
            Route::Single => "declarations are sent as Content-Type: application/json",
            Route::Batch => "a batch is sent as Content-Type: application/json (an array) or application/x-ndjson (one per line)",
        };
        return Err(("unsupported_media_type", problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message, vec![])));
    }
    if let (Caller::Client { client_id, client }, Route::Single) = (&caller, route) {
        let quota = limits::quota(client.rate_per_second, client.burst);
        gateway.client_limits.check(client_id, quota).map_err(|wait| ("rate_limited", too_many_requests(wait, "for this client")))?;
    }
    Ok(caller)
}

/// A kiosk that proved its certificate: the certificate's client, if the CRL in force does not
/// revoke it (checked per request: a kept-alive connection does not outlive a revocation) and
/// the registry lists the client. A bearer key sent as well must be the same client's.
fn certified_caller(gateway: &Gateway, certified: &tls::CertifiedClient, headers: &HeaderMap) -> Result<Caller, (&'static str, Response)> {
    if gateway.tls.as_ref().is_some_and(|tls| tls.is_revoked(&certified.serial)) {
        tracing::info!(client_id = %certified.client_id, "revoked client certificate refused");
        return Err(("unauthorized", unauthorized(Some("invalid_token"), "the client certificate is revoked")));
    }
    let Some(registry) = &gateway.clients else {
        // Anonymous (development) mode: the certificate still names the client.
        let client = ehac_clients::Client { rate_per_second: 0, ..Default::default() };
        return Ok(Caller::Client { client_id: certified.client_id.clone(), client });
    };
    let registry = registry.current();
    let Some(client) = registry.clients.get(&certified.client_id) else {
        tracing::info!(client_id = %certified.client_id, "certificate of an unregistered client refused");
        return Err(("unauthorized", unauthorized(Some("invalid_token"), "the certificate's client is not registered")));
    };
    if headers.contains_key(header::AUTHORIZATION) {
        let presented =
            headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().split_once(' ')).map(|(_, t)| t.trim());
        let same =
            presented.and_then(|t| registry.authenticate(t, chrono::Utc::now()).ok()).is_some_and(|a| a.client_id == certified.client_id);
        if !same {
            let message = format!("the API key is not a valid key of {}, whose certificate this connection presented", certified.client_id);
            return Err(forbidden("Authorization", message).answer());
        }
    }
    Ok(Caller::Client { client_id: certified.client_id.clone(), client: client.clone() })
}

fn unauthorized(error: Option<&str>, message: &str) -> Response {
    let mut response = problem(StatusCode::UNAUTHORIZED, "unauthorized", message, vec![]);
    let challenge = match error {
        Some(error) => format!("Bearer realm=\"ehac\", error=\"{error}\""),
        None => "Bearer realm=\"ehac\"".to_owned(),
    };
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_str(&challenge).expect("ASCII"));
    response
}

fn too_many_requests(wait_secs: u64, whose: &str) -> Response {
    let message = format!("rate limit reached {whose}; retry after {wait_secs} s with the same Idempotency-Key");
    let mut response = problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message, vec![]);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait_secs));
    response
}

fn forbidden(field: &str, message: String) -> Refusal {
    let error = FieldError { code: "forbidden".into(), field: field.into(), message: message.clone() };
    Refusal { outcome: "forbidden", status: StatusCode::FORBIDDEN, problem: Problem { error: "forbidden", message, errors: vec![error] } }
}

/// The authenticated client is the declaration's client: an empty `client_id` is filled in,
/// another one is refused, and so are a channel or departure port the client may not use.
fn bind_to_client(form: &mut DeclarationForm, caller: &Caller) -> Result<(), Refusal> {
    let Caller::Client { client_id, client } = caller else { return Ok(()) };
    if form.client_id.is_empty() {
        form.client_id = client_id.clone();
    } else if form.client_id != *client_id {
        return Err(forbidden("client_id", format!("the API key is client {client_id}'s; it cannot submit for {:?}", form.client_id)));
    }
    if let (Some(allowed), Some(channel)) = (client.channel, form.channel) {
        if allowed != channel {
            return Err(forbidden("channel", format!("client {client_id} submits through channel {allowed:?} only")));
        }
    }
    if let Some(ports) = &client.allowed_ports {
        if !ports.iter().any(|p| p == &form.trip.departure_port) {
            let message = format!("client {client_id} declares departures from {} only", ports.join(", "));
            return Err(forbidden("trip.departure_port", message));
        }
    }
    Ok(())
}

/// The `Idempotency-Key` header: 1-128 printable ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Response> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    match value.to_str() {
        Ok(key) if (1..=128).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) => Ok(Some(key.to_owned())),
        _ => {
            let field = FieldError {
                code: "invalid_format".into(),
                field: "Idempotency-Key".into(),
                message: "must be 1-128 printable ASCII characters, e.g. a UUID".into(),
            };
            Err(problem(StatusCode::BAD_REQUEST, "invalid_header", "the Idempotency-Key header is malformed", vec![field]))
        }
    }
}

async fn handle(
    gateway: &Gateway,
    caller: &Caller,
    idempotency_key: Option<&str>,
    body: Result<Bytes, BytesRejection>,
) -> (&'static str, Response) {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return (
                "too_large",
                problem(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the declaration is larger than this gateway accepts", vec![]),
            );
        }
        Err(rejection) => return ("malformed", problem(rejection.status(), "unreadable_body", rejection.body_text(), vec![])),
    };
    let form = match input::parse_declaration(&body) {
        Ok(form) => form,
        Err(e) => return ("malformed", problem(StatusCode::BAD_REQUEST, "malformed_json", e.to_string(), vec![e.field_error()])),
    };
    let prepared = match prepare(gateway, caller, form, |client_id, form| declaration_id(client_id, form, idempotency_key)) {
        Ok(prepared) => prepared,
        Err(refusal) => return refusal.answer(),
    };
    let accepted = || ("accepted", (StatusCode::ACCEPTED, Json(prepared.accepted.clone())).into_response());
    let declaration_id = &prepared.accepted.declaration_id;
    if gateway.tries_the_broker_first() {
        let record = FutureRecord::to(&gateway.topic).key(declaration_id).payload(&prepared.payload);
        match tokio::time::timeout(gateway.produce_timeout, gateway.producer.send(record, Timeout::After(gateway.produce_timeout))).await {
            Ok(Ok(_)) => return accepted(),
            Ok(Err((e, _))) => tracing::warn!(error = %e, %declaration_id, "broker refused; spooling"),
            // librdkafka may still deliver it later; the spooled copy then is a duplicate with
            // the same id and key, which the sink drops.
            Err(_) => tracing::warn!(%declaration_id, "broker did not acknowledge in time; spooling"),
        }
    }
    let appended = gateway.spool.append(declaration_id.as_bytes(), &prepared.payload).await;
    gateway.note_spool_written();
    match appended {
        Ok(()) => {
            gateway.metrics.spooled.inc();
            accepted()
        }
        Err(e) => {
            if matches!(e, SpoolError::Full { .. }) {
                tracing::error!(error = %e, "spool full: refusing declarations");
            } else {
                tracing::error!(error = %e, "spool append failed");
            }
            ("unavailable", not_stored("the declaration"))
        }
    }
}

/// 503: what was sent could not be made durable.
fn not_stored(what: &str) -> Response {
    let message = format!("{what} could not be stored; retry with the same Idempotency-Key");
    problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message, vec![])
}

/// A declaration refused before it is an HTTP answer: the single endpoint answers it as it is,
/// a batch reports it as the item's result.
struct Refusal {
    /// The `gateway_requests_total` outcome.
    outcome: &'static str,
    status: StatusCode,
    problem: Problem,
}

impl Refusal {
    fn answer(self) -> (&'static str, Response) {
        (self.outcome, (self.status, Json(self.problem)).into_response())
    }
}

/// A declaration checked, given its id and pass, and encoded: ready to be made durable.
struct Prepared {
    accepted: Accepted,
    payload: Vec<u8>,
}

/// Everything between a parsed form and a durable one, the same for a single declaration and
/// each item of a batch: bound to the caller's client, checked with the domain rules, given its
/// id (`id_for`, from the client and the bound form) and its signed pass, and encoded.
fn prepare(
    gateway: &Gateway,
    caller: &Caller,
    mut form: DeclarationForm,
    id_for: impl FnOnce(&str, &DeclarationForm) -> String,
) -> Result<Prepared, Refusal> {
    bind_to_client(&mut form, caller)?;
    let received_at = chrono::Utc::now();
    let checked = match ehac_domain::validate(&form, ReferenceData::embedded(), &gateway.policy, received_at) {
        Ok(checked) => checked,
        Err(errors) => {
            for e in &errors {
                gateway.metrics.field_errors.with_label_values(&[&e.code]).inc();
            }
            let message = format!("{} field(s) need fixing", errors.len());
            return Err(Refusal {
                outcome: "invalid",
                status: StatusCode::UNPROCESSABLE_ENTITY,
                problem: Problem { error: "invalid_declaration", message, errors },
            });
        }
    };

    let declaration_id = id_for(&form.client_id, &form);
    // Signed before the declaration is made durable, so the answer needs nothing more after.
    let pass = gateway.passes.as_ref().and_then(|p| {
        let signing = Instant::now();
        let pass = p.issue(&declaration_id, &form, &checked, &gateway.policy, received_at);
        gateway.metrics.pass_seconds.observe(signing.elapsed().as_secs_f64());
        pass
    });
    drop(checked);
    let raw = RawDeclaration {
        declaration_id,
        received_at_ms: received_at.timestamp_millis(),
        gateway_version: ehac_stream::VERSION.to_owned(),
        form,
    };
    let payload = RAW.encode_raw(&raw);
    Ok(Prepared { accepted: Accepted { declaration_id: raw.declaration_id, received_at: received_at.to_rfc3339(), pass }, payload })
}

/// Sends spooled declarations to the raw topic, oldest first, and forgets them only after the
/// broker acknowledged them (`ehac_stream::spool_drain`). Keeps the spool gauges and the
/// `spool` readiness check current.
async fn drain_spool(gateway: Arc<Gateway>, readiness: Readiness, max_bytes: u64, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let depth = gateway.spool.depth();
        gateway.metrics.spool_records.set(depth.records as i64);
        gateway.metrics.spool_bytes.set(depth.bytes as i64);
        readiness.detail("spool_records", depth.records.to_string());
        if depth.bytes > max_bytes / 10 * 9 {
            readiness
                .not_ready("spool", format!("spool {}% full: the broker has been away too long", depth.bytes * 100 / max_bytes.max(1)));
        } else {
            readiness.ready("spool");
        }
        if depth.records == 0 {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = gateway.spool.wait_for_records() => continue,
                // Refresh the gauges now and then even when idle.
                _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
            }
        }
        // Not abandoned on shutdown: its records would stay queued in the producer and hold up
        // the exit's flush; each send ends by the producer's message timeout.
        let sent = spool_drain::send_batch(&gateway.spool, &gateway.producer, &gateway.topic, spool_drain::DEFAULT_BATCH).await;
        match sent {
            Ok(BatchOutcome::Sent { records }) => {
                gateway.metrics.spool_drained.inc_by(records as u64);
                backoff = Duration::from_millis(500);
                continue;
            }
            Ok(BatchOutcome::Empty) => continue,
            Ok(BatchOutcome::BrokerAway { failed, records }) => {
                tracing::warn!(failed, records, retry_in_ms = backoff.as_millis() as u64, "broker still away; spooled declarations wait")
            }
            Err(e @ DrainError::Read(_)) => {
                tracing::error!(error = %e, "reading the spool failed; draining is stopped until it is fixed");
                readiness.not_ready("spool", e.to_string());
                tokio::select! { _ = shutdown.cancelled() => return, _ = tokio::time::sleep(Duration::from_secs(10)) => continue }
            }
            Err(e @ DrainError::Acknowledge(_)) => tracing::error!(error = %e, "could not record drained spool records"),
            Err(e @ DrainError::Panicked(_)) => {
                tracing::error!(error = %e, "spool reader panicked");
                return;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => backoff = (backoff * 2).min(Duration::from_secs(10)),
        }
    }
}

/// After SIGTERM, once no request is in flight: give what the spool still holds to the broker
/// for up to `within`, so a gateway that is scaled down leaves an empty spool volume when the
/// broker is there. What remains stays on disk for the next start or `ehac spool drain`.
async fn drain_spool_before_exit(spool: &Spool, producer: &FutureProducer, topic: &str, within: Duration) {
    let waiting = spool.depth().records;
    if waiting == 0 || within.is_zero() {
        return;
    }
    // Only when the broker answers: records handed to a producer whose broker is away would
    // only wait in librdkafka and hold up the exit's flush.
    let (probe, probe_topic) = (producer.clone(), topic.to_owned());
    let reachable = tokio::task::spawn_blocking(move || probe.client().fetch_metadata(Some(&probe_topic), Duration::from_secs(2)).is_ok())
        .await
        .unwrap_or(false);
    if !reachable {
        tracing::warn!(records = waiting, "broker not reachable: the spool stays on disk for the next start");
        return;
    }
    tracing::info!(records = waiting, within_secs = within.as_secs(), "draining the spool before exit");
    let options = spool_drain::DrainToEmpty { batch: spool_drain::DEFAULT_BATCH, give_up_after: within };
    let never = CancellationToken::new();
    match tokio::time::timeout(within, spool_drain::drain_to_empty(spool, producer, topic, options, &never)).await {
        Ok(Ok(report)) if report.remaining == 0 => tracing::info!(drained = report.drained, "spool empty"),
        Ok(Ok(report)) => tracing::warn!(drained = report.drained, remaining = report.remaining, "spool not empty at exit"),
        Ok(Err(e)) => tracing::error!(error = %e, remaining = spool.depth().records, "spool not drained at exit"),
        Err(_) => tracing::warn!(remaining = spool.depth().records, "spool not empty at exit: the broker did not take it in time"),
    }
}

/// Forgets rate-limit state of peers that have been quiet, once a minute.
async fn forget_idle_peers(gateway: Arc<Gateway>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(60)) => gateway.peer_limits.forget_idle(),
        }
    }
}

async fn contract() -> Response {
    static CONTRACT: std::sync::LazyLock<String> = std::sync::LazyLock::new(openapi::json);
    ([(header::CONTENT_TYPE, "application/json")], CONTRACT.as_str()).into_response()
}

async fn not_found(method: Method, uri: Uri) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no route for {method} {}; declarations are submitted with POST /v1/declarations or POST /v1/declarations/batch",
            uri.path()
        ),
        vec![],
    )
}

/// Shows in /readyz whether the broker answers metadata requests for the raw topic.
async fn watch_broker(producer: FutureProducer, topic: String, readiness: Readiness, shutdown: CancellationToken) {
    loop {
        let (p, t) = (producer.clone(), topic.clone());
        let probe = tokio::task::spawn_blocking(move || {
            p.client()
                .fetch_metadata(Some(&t), Duration::from_secs(3))
                .map(|m| m.topics().first().map(|t| t.partitions().len()).unwrap_or(0))
        })
        .await;
        match probe {
            Ok(Ok(partitions)) if partitions > 0 => readiness.detail("kafka", "ok"),
            Ok(Ok(_)) => readiness.detail("kafka", format!("topic {topic} has no partitions")),
            Ok(Err(e)) => readiness.detail("kafka", format!("{e} (declarations go to the spool)")),
            Err(e) => readiness.detail("kafka", e.to_string()),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}
