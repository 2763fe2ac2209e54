//! Test harness: one real pipeline per test binary, shared by its tests.
//!
//! The broker (Apache Kafka) and ClickHouse are real servers on free loopback ports with their data in
//! a fresh directory; the gateway, enricher and sink run in-process on a runtime of their own.
//! Tests tell their data apart by a unique `client_id`. A missing server binary fails the test
//! with what to install; nothing is skipped.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use ehac_devstack::{Stack, StackOptions, StackSecrets, Tools, WarehouseUser};
use ehac_domain::sample::{Flaw, SampleGenerator};
use ehac_domain::{DeclarationForm, RawDeclaration};
use ehac_registry::RegistryArgs;
use ehac_stream::config::{AdminArgs, ClickHouseArgs, KafkaArgs, PepperArgs, PolicyArgs, Topics};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct Pipeline {
    pub gateway: String,
    /// The gateway's admin listener (`/healthz`, `/readyz`, `/metrics`).
    pub gateway_admin: String,
    pub clickhouse_url: String,
    /// The stack's ClickHouse passwords (users analyst, investigator, writer, migrator, default).
    pub secrets: StackSecrets,
    /// The pepper the enricher computes traveller keys with (a 0600 file in the stack's dir).
    pub pepper: PepperArgs,
    /// The stack's data directory (servers' logs are under it).
    pub dir: std::path::PathBuf,
    pub brokers: String,
    pub topics: Topics,
    kafka: KafkaArgs,
    /// The runtime the services run on, so tests can restart one.
    runtime: tokio::runtime::Handle,
    enricher: Mutex<Option<(CancellationToken, JoinHandle<anyhow::Result<()>>)>>,
}

/// How the enricher of a test binary's pipeline is configured.
#[derive(Clone)]
pub struct PipelineOptions {
    pub policy: PolicyArgs,
    pub registry: RegistryArgs,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions { policy: PolicyArgs::default(), registry: no_registry() }
    }
}

/// No population registry: citizens stay `pending`.
pub fn no_registry() -> RegistryArgs {
    RegistryArgs { registry_url: None, registry_timeout_ms: 300, registry_breaker_failures: 3, registry_breaker_cooldown_ms: 1_000 }
}

static PIPELINE: OnceLock<Result<Pipeline, String>> = OnceLock::new();

/// The shared pipeline, started on first use.
pub fn pipeline() -> &'static Pipeline {
    pipeline_with(PipelineOptions::default)
}

/// The shared pipeline; the first call of a test binary decides its options.
pub fn pipeline_with(options: impl FnOnce() -> PipelineOptions) -> &'static Pipeline {
    match PIPELINE.get_or_init(|| start(options())) {
        Ok(p) => p,
        Err(e) => panic!("could not start the test pipeline: {e}"),
    }
}

fn start(options: PipelineOptions) -> Result<Pipeline, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    // The servers are tied to this thread's life (PR_SET_PDEATHSIG), so it must outlive every
    // test: it parks forever, and the servers die with the test process.
    std::thread::Builder::new()
        .name("ehac-test-pipeline".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("test runtime");
            let started = runtime.block_on(start_pipeline(options));
            let failed = started.is_err();
            tx.send(started.map_err(|e| format!("{e:#}"))).ok();
            if !failed {
                runtime.block_on(std::future::pending::<()>());
            }
        })
        .map_err(|e| e.to_string())?;
    rx.recv().map_err(|e| e.to_string())?
}

/// A test's data directory, `ehac-test-[NAME-]PID` under the temp dir. The servers outlive the
/// test's own code (see [`own_pipeline`]), so nothing can delete it at the end; instead the
/// directories of test processes that have exited are removed here, before each start, so
/// repeated runs do not fill the disk (they did: a few hundred MB each).
pub fn test_dir(name: Option<&str>) -> std::path::PathBuf {
    let temp = std::env::temp_dir();
    for entry in std::fs::read_dir(&temp).into_iter().flatten().flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name.to_str().and_then(|n| n.strip_prefix("ehac-test-")) else { continue };
        let pid = rest.rsplit('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let pid = std::process::id();
    temp.join(name.map_or_else(|| format!("ehac-test-{pid}"), |name| format!("ehac-test-{name}-{pid}")))
}

async fn start_pipeline(options: PipelineOptions) -> anyhow::Result<Pipeline> {
    ehac_stream::telemetry::init_logging();
    let tools = Tools::find()?;
    let dir = test_dir(None);
    let _ = std::fs::remove_dir_all(&dir);
    let stack = Stack::start(&tools, StackOptions::ephemeral(&dir)?).await?;
    let topics = Topics::default();
    stack.provision(&topics, 4).await?;
    let kafka = KafkaArgs { kafka_brokers: stack.kafka_brokers(), topics: topics.clone() };
    let shutdown = CancellationToken::new();
    let admin = AdminArgs::any_port;

    let gateway = ehac_gateway::start(
        ehac_gateway::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            // The tests tell their data apart by client ids they make up, so the gateway trusts
            // the body's client_id here; authentication has its own tests (crates/ehac-gateway).
            access: anonymous_access(),
            kafka: kafka.clone(),
            policy: options.policy.clone(),
            max_body_bytes: 64 * 1024,
            max_batch_items: 500,
            max_batch_body_bytes: 4 << 20,
            accept_after: ehac_gateway::AcceptAfter::BrokerAck,
            produce_timeout_ms: 5_000,
            linger_ms: 1,
            spool_dir: dir.join("gateway-spool"),
            spool_max_bytes: 64 << 20,
            spool_drain_on_exit_secs: 20,
            pass_key: None,
            pass_region: None,
            pass_valid_hours: 24,
            print_openapi: false,
        },
        shutdown.clone(),
    )
    .await?;
    let enricher_shutdown = shutdown.child_token();
    let enricher = tokio::spawn(ehac_enricher::run(enricher_config(&kafka, &options, &stack.pepper()), enricher_shutdown.clone()));
    let sink = sink_config(kafka.clone(), stack.clickhouse_as(WarehouseUser::Writer), admin());
    tokio::spawn(ehac_sink::run(sink, shutdown.clone()));

    let pipeline = Pipeline {
        gateway: format!("http://{}", gateway.addr),
        gateway_admin: format!("http://{}", gateway.admin_addr),
        clickhouse_url: stack.clickhouse_url(),
        secrets: stack.secrets.clone(),
        pepper: stack.pepper(),
        dir: stack.options.dir.clone(),
        brokers: stack.kafka_brokers(),
        topics,
        kafka,
        runtime: tokio::runtime::Handle::current(),
        enricher: Mutex::new(Some((enricher_shutdown, enricher))),
    };
    // The stack lives as long as the process.
    std::mem::forget(stack);
    Ok(pipeline)
}

/// No client registry, and no per-address limit (all test traffic comes from one address).
pub fn anonymous_access() -> ehac_gateway::AccessArgs {
    ehac_gateway::AccessArgs { allow_anonymous: true, peer_rate_per_second: 0, ..Default::default() }
}

/// The sink as the tests run it: batches of at most 2,000 that linger 100 ms (the service's
/// defaults are 20,000 and 5 s, made for throughput, not for tests waiting on rows).
pub fn sink_config(kafka: KafkaArgs, clickhouse: ClickHouseArgs, admin: AdminArgs) -> ehac_sink::Config {
    ehac_sink::Config {
        kafka,
        clickhouse,
        admin,
        group: "ehac-sink".into(),
        batch_max: 2_000,
        batch_linger_ms: 100,
        dedup_window: 100_000,
        handover_timeout_ms: 15_000,
        partition_buffer: 4_096,
        membership: Default::default(),
    }
}

fn enricher_config(kafka: &KafkaArgs, options: &PipelineOptions, pepper: &PepperArgs) -> ehac_enricher::Config {
    ehac_enricher::Config {
        kafka: kafka.clone(),
        pepper: pepper.clone(),
        admin: AdminArgs::any_port(),
        policy: options.policy.clone(),
        registry: options.registry.clone(),
        group: "ehac-enricher".into(),
        batch_max: 500,
        batch_linger_ms: 20,
        transactions: ehac_enricher::Transactions::Auto,
        transactional_id: None,
        transaction_timeout_ms: 30_000,
        membership: Default::default(),
    }
}

/// Declarations from the sample generator, all with the given flaw and client id.
pub fn declarations(n: usize, client_id: &str, flaw: Flaw, seed: u64) -> Vec<DeclarationForm> {
    let mut generator = SampleGenerator::new(seed);
    (0..n).map(|_| generator.declaration(chrono::Utc::now(), client_id, flaw)).collect()
}

/// Declarations as the enricher hands them to the sink (valid samples, accepted as received now).
pub fn enriched_declarations(n: usize, client_id: &str) -> Vec<ehac_domain::EnrichedDeclaration> {
    let received_at = chrono::Utc::now();
    let run = uuid_like();
    declarations(n, client_id, Flaw::None, 7)
        .into_iter()
        .enumerate()
        .map(|(i, form)| {
            let raw = RawDeclaration {
                declaration_id: format!("{client_id}-{run}-{i}"),
                received_at_ms: received_at.timestamp_millis(),
                gateway_version: "test".into(),
                form,
            };
            let accepted = ehac_domain::accept(raw, ehac_domain::ReferenceData::embedded(), &ehac_domain::Policy::default(), "test");
            accepted.map_err(|(_, e)| e).expect("a valid sample")
        })
        .collect()
}

/// The raw topic's message for `form`, received now, as a gateway of an older version writes it
/// (see [`Pipeline::produce_raw`]).
pub fn raw_message(declaration_id: &str, form: DeclarationForm) -> Vec<u8> {
    let raw = RawDeclaration {
        declaration_id: declaration_id.to_owned(),
        received_at_ms: chrono::Utc::now().timestamp_millis(),
        gateway_version: "0.0.1-old".into(),
        form,
    };
    ehac_codec::RAW.encode(&raw).expect("a raw declaration encodes")
}

/// A client id no other test uses.
pub fn unique_client(test: &str) -> String {
    format!("test-{test}-{}", uuid_like())
}

fn uuid_like() -> String {
    format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
}

impl Pipeline {
    /// A second gateway's config on this pipeline's broker and topics, authenticating the
    /// clients in `clients_file`, with a produce budget of `produce_timeout_ms` (tests that
    /// must not spool give it seconds).
    pub fn gateway_config(
        &self,
        spool_dir: std::path::PathBuf,
        clients_file: std::path::PathBuf,
        produce_timeout_ms: u64,
    ) -> ehac_gateway::Config {
        ehac_gateway::Config {
            produce_timeout_ms,
            kafka: KafkaArgs { kafka_brokers: self.brokers.clone(), topics: self.topics.clone() },
            ..ehac_gateway::Config::on_loopback(
                &self.brokers,
                spool_dir,
                ehac_gateway::AccessArgs {
                    clients_file: Some(clients_file),
                    peer_rate_per_second: 0,
                    ..ehac_gateway::AccessArgs::default()
                },
            )
        }
    }

    /// Stops the enricher (SIGTERM-like: it drains and commits); its group is left with no
    /// member until [`Pipeline::restart_enricher`].
    pub async fn stop_enricher(&self) {
        let old = self.enricher.lock().unwrap().take();
        if let Some((token, task)) = old {
            token.cancel();
            task.await.expect("enricher task").expect("enricher drained cleanly");
        }
    }

    /// Stops the enricher, if it runs, and starts a new one in the same consumer group with
    /// `options`: a deploy of a rule fix.
    pub async fn restart_enricher(&self, options: PipelineOptions) {
        self.stop_enricher().await;
        let token = CancellationToken::new();
        let task = self.runtime.spawn(ehac_enricher::run(enricher_config(&self.kafka, &options, &self.pepper), token.clone()));
        *self.enricher.lock().unwrap() = Some((token, task));
    }

    /// Produces declarations straight to the raw topic, as a gateway of an older version that
    /// lacks today's rules would: the enricher's checks are the only ones they meet.
    pub async fn produce_raw(&self, forms: Vec<DeclarationForm>) -> Vec<String> {
        let producer = ehac_stream::kafka::producer(&self.brokers).expect("producer");
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let mut ids = Vec::new();
        for form in forms {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let declaration_id = form.declaration_id.clone().unwrap_or_else(|| format!("{}-raw-{n}", form.client_id));
            let payload = raw_message(&declaration_id, form);
            let record = rdkafka::producer::FutureRecord::to(&self.topics.raw).key(&declaration_id).payload(&payload);
            producer.send(record, rdkafka::util::Timeout::Never).await.expect("raw record acknowledged");
            ids.push(declaration_id);
        }
        ids
    }

    pub async fn post(&self, body: impl Into<reqwest::Body>) -> (u16, serde_json::Value) {
        self.post_with(body, &[]).await
    }

    /// POSTs a declaration with extra headers (e.g. `Idempotency-Key`).
    pub async fn post_with(&self, body: impl Into<reqwest::Body>, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
        let mut request =
            reqwest::Client::new().post(format!("{}/v1/declarations", self.gateway)).header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.body(body).send().await.expect("gateway answers");
        let status = response.status().as_u16();
        let json = response.json().await.unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = reqwest::get(format!("{}{}", self.gateway, path)).await.expect("gateway answers");
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// GET on the gateway's admin listener.
    pub async fn get_admin(&self, path: &str) -> (u16, String) {
        let response = reqwest::get(format!("{}{}", self.gateway_admin, path)).await.expect("gateway admin answers");
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// How to connect to ClickHouse as `user`.
    pub fn clickhouse_as(&self, user: WarehouseUser) -> ClickHouseArgs {
        ehac_devstack::access::clickhouse_args(self.clickhouse_url.clone(), &self.secrets, user)
    }

    /// Runs SQL on ClickHouse as the investigator (who reads both databases) and returns the
    /// TabSeparated answer.
    pub async fn sql(&self, sql: &str) -> String {
        let (ok, text) = self.sql_as(WarehouseUser::Investigator, &format!("{sql} FORMAT TabSeparated")).await;
        assert!(ok, "{sql}: {text}");
        text
    }

    /// Runs SQL as `user`, as it is: whether ClickHouse accepted it, and its answer (or error).
    pub async fn sql_as(&self, user: WarehouseUser, sql: &str) -> (bool, String) {
        let response = ehac_devstack::access::http_client(&self.secrets, user)
            .post(&self.clickhouse_url)
            .body(sql.to_owned())
            .send()
            .await
            .expect("ClickHouse answers");
        let status = response.status();
        (status.is_success(), response.text().await.unwrap())
    }

    /// Polls a `SELECT count()`-like query until it returns `expected` or `within` passes;
    /// returns the last value.
    pub async fn wait_for_count(&self, sql: &str, expected: u64, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let value: u64 = self.sql(sql).await.trim().parse().unwrap();
            if value >= expected || Instant::now() > deadline {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// A pipeline of its own, for a test that stops and restarts services while the shared one stays
/// up for the other tests. Broker, ClickHouse, gateway and enricher run; sinks are started with
/// [`OwnPipeline::start_sink`], each with its own token so one can be stopped alone.
pub struct OwnPipeline {
    /// The usual helpers (`post`, `sql`, `wait_for_count`) against this pipeline.
    pub pipeline: Pipeline,
    /// Stops the gateway and the enricher.
    pub shutdown: CancellationToken,
    pub gateway_addr: std::net::SocketAddr,
    pub gateway_admin: std::net::SocketAddr,
    pub enricher_admin: std::net::SocketAddr,
    /// The broker and ClickHouse, for a test that stops and restarts them. Never dropped: the
    /// servers die with the test's thread (see [`own_pipeline`]).
    pub stack: std::mem::ManuallyDrop<Stack>,
}

/// Starts an [`OwnPipeline`] with its data under a fresh temporary directory named after `name`.
pub async fn own_pipeline(name: &str, partitions: i32) -> anyhow::Result<OwnPipeline> {
    ehac_stream::telemetry::init_logging();
    let tools = Tools::find()?;
    let dir = test_dir(Some(name));
    let _ = std::fs::remove_dir_all(&dir);
    let stack = Stack::start(&tools, StackOptions::ephemeral(&dir)?).await?;
    let topics = Topics::default();
    stack.provision(&topics, partitions).await?;
    let kafka = KafkaArgs { kafka_brokers: stack.kafka_brokers(), topics: topics.clone() };
    let shutdown = CancellationToken::new();
    let gateway = ehac_gateway::start(
        ehac_gateway::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            // The tests tell their data apart by client ids they make up, so the gateway trusts
            // the body's client_id here; authentication has its own tests (crates/ehac-gateway).
            access: anonymous_access(),
            kafka: kafka.clone(),
            policy: PolicyArgs::default(),
            max_body_bytes: 64 * 1024,
            max_batch_items: 500,
            max_batch_body_bytes: 4 << 20,
            accept_after: ehac_gateway::AcceptAfter::BrokerAck,
            produce_timeout_ms: 5_000,
            linger_ms: 1,
            spool_dir: dir.join("gateway-spool"),
            spool_max_bytes: 64 << 20,
            spool_drain_on_exit_secs: 20,
            pass_key: None,
            pass_region: None,
            pass_valid_hours: 24,
            print_openapi: false,
        },
        shutdown.clone(),
    )
    .await?;
    let enricher =
        ehac_enricher::Config { admin: AdminArgs::any_port(), ..enricher_config(&kafka, &PipelineOptions::default(), &stack.pepper()) };
    let enricher_bound = enricher.admin.bound.clone();
    let enricher_shutdown = shutdown.child_token();
    let enricher = tokio::spawn(ehac_enricher::run(enricher, enricher_shutdown.clone()));
    let enricher_admin = enricher_bound
        .wait(Duration::from_secs(60))
        .await
        .ok_or_else(|| anyhow::anyhow!("the enricher did not bind its admin endpoint"))?;
    let pipeline = Pipeline {
        gateway: format!("http://{}", gateway.addr),
        gateway_admin: format!("http://{}", gateway.admin_addr),
        clickhouse_url: stack.clickhouse_url(),
        secrets: stack.secrets.clone(),
        pepper: stack.pepper(),
        dir: stack.options.dir.clone(),
        brokers: stack.kafka_brokers(),
        topics,
        kafka,
        runtime: tokio::runtime::Handle::current(),
        enricher: Mutex::new(Some((enricher_shutdown, enricher))),
    };
    // The servers die with the test's thread (PR_SET_PDEATHSIG), after its runtime is gone.
    // Stopping them earlier, when a failing test unwinds, would leave the services' consumers
    // closing against a dead broker, which librdkafka waits for without end: so the stack is
    // never dropped.
    let stack = std::mem::ManuallyDrop::new(stack);
    Ok(OwnPipeline { pipeline, shutdown, gateway_addr: gateway.addr, gateway_admin: gateway.admin_addr, enricher_admin, stack })
}

impl OwnPipeline {
    /// Starts a sink in the `ehac-sink` group serving its admin endpoints on a port of its own,
    /// returned once bound. Cancel the returned token to stop it (it leaves the group); the
    /// handle ends when it has.
    pub async fn start_sink(&self) -> RunningSink {
        self.start_sink_with(|_| {}).await
    }

    /// [`OwnPipeline::start_sink`] with settings changed by `configure`.
    pub async fn start_sink_with(&self, configure: impl FnOnce(&mut ehac_sink::Config)) -> RunningSink {
        let token = CancellationToken::new();
        let kafka = KafkaArgs { kafka_brokers: self.pipeline.brokers.clone(), topics: self.pipeline.topics.clone() };
        let mut config = sink_config(kafka, self.pipeline.clickhouse_as(WarehouseUser::Writer), AdminArgs::any_port());
        configure(&mut config);
        let bound = config.admin.bound.clone();
        let task = tokio::spawn(ehac_sink::run(config, token.clone()));
        let admin = bound.wait(Duration::from_secs(60)).await.expect("the sink binds its admin endpoint");
        RunningSink { token, task, admin }
    }
}

/// A sink started by [`OwnPipeline::start_sink`].
pub struct RunningSink {
    pub token: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// Its admin endpoint (`/metrics`).
    pub admin: std::net::SocketAddr,
}

/// A TCP proxy in front of `upstream` that loses one answer: the first request whose bytes
/// contain `marker` reaches the server whole, but its answer is dropped and the connection
/// closed, as when a network cuts out after the server did the work. Everything else passes.
pub struct AnswerLosingProxy {
    pub addr: std::net::SocketAddr,
    lost: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: JoinHandle<()>,
}

impl AnswerLosingProxy {
    pub async fn start(upstream: std::net::SocketAddr, marker: &'static [u8]) -> AnswerLosingProxy {
        use std::sync::atomic::{AtomicBool, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding the proxy");
        let addr = listener.local_addr().unwrap();
        let lost = std::sync::Arc::new(AtomicBool::new(false));
        let lost_in_task = lost.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let lost = lost_in_task.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else { return };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    // Armed once the marked request has gone upstream on this connection.
                    let armed = std::sync::Arc::new(AtomicBool::new(false));
                    let armed_up = armed.clone();
                    let up = tokio::spawn(async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let Ok(n) = client_read.read(&mut buf).await else { return };
                            if n == 0 || server_write.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                            if memchr::memmem::find(&buf[..n], marker).is_some() && !lost.swap(true, Ordering::SeqCst) {
                                armed_up.store(true, Ordering::SeqCst);
                            }
                        }
                    });
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = server_read.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        if armed.load(Ordering::SeqCst) {
                            // The server answered: the work is done. The client never hears of it.
                            break;
                        }
                        if client_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    up.abort();
                });
            }
        });
        AnswerLosingProxy { addr, lost, task }
    }

    /// Whether the marked request's answer has been lost yet.
    pub fn lost_one(&self) -> bool {
        self.lost.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for AnswerLosingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
