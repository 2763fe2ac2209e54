//! Watches consumer groups so on-call engineers see a surge building and a stuck consumer before
//! travellers do.
//!
//! Every poll reads, with standard Kafka requests only, each partition's high watermark and each
//! watched group's committed offsets (without joining the group), and from them:
//! - lag in messages, and lag in seconds: the age of the next message the group will read (the
//!   message's own timestamp, else interpolated from watermarks seen earlier);
//! - a Burrow-style status per partition and group over a sliding window ([`status`]);
//! - Prometheus series (`/metrics`), a JSON API (`/v1/groups`, `/v1/groups/{group}/status`) and,
//!   optionally, a webhook POST on every status change ([`notify`]).
//!
//! Routes: the API above plus `/healthz`, `/readyz`, `/metrics`.

pub mod api;
pub mod cluster;
pub mod metrics;
pub mod notify;
pub mod status;
pub mod timestamps;
pub mod watch;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ehac_stream::admin::{self, Readiness};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::metrics::Metrics;
use crate::status::Rules;
use crate::watch::Watcher;

/// Consumer lag and status for the e-HAC pipeline's groups (and any other).
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "ehac-lagwatch", version, about)]
pub struct Config {
    /// Bootstrap brokers, comma-separated host:port. (The services' `--kafka-brokers`; lagwatch
    /// takes no topic flags because it reads whatever topics the groups commit.)
    #[arg(long, env = "EHAC_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,
    /// Address to serve the API and the admin endpoints on.
    #[arg(long, env = "EHAC_LAGWATCH_LISTEN", default_value = "127.0.0.1:9191")]
    pub listen: SocketAddr,
    /// Consumer groups to watch, comma-separated or repeated.
    #[arg(long = "group", env = "EHAC_LAGWATCH_GROUPS", value_delimiter = ',', default_value = "ehac-enricher,ehac-sink")]
    pub groups: Vec<String>,
    /// Only these topics' committed offsets are read; by default every topic but internal
    /// (`__`-prefixed) ones.
    #[arg(long = "topic", env = "EHAC_LAGWATCH_TOPICS", value_delimiter = ',')]
    pub topics: Vec<String>,
    /// How often the cluster is read.
    #[arg(long, env = "EHAC_LAGWATCH_POLL_INTERVAL_MS", default_value_t = 5_000)]
    pub poll_interval_ms: u64,
    /// How far back the status rules look: STOP and STALL need a whole window without a commit.
    #[arg(long, env = "EHAC_LAGWATCH_WINDOW_SECS", default_value_t = 120)]
    pub window_secs: u64,
    /// A lag of at most this many messages counts as caught up.
    #[arg(long, env = "EHAC_LAGWATCH_OK_LAG", default_value_t = 0)]
    pub ok_lag: i64,
    /// POST every group status change here (JSON, "open" and "close" events). Plain HTTP.
    #[arg(long, env = "EHAC_LAGWATCH_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// Timeout of each request to the cluster.
    #[arg(long, env = "EHAC_LAGWATCH_KAFKA_TIMEOUT_MS", default_value_t = 5_000)]
    pub kafka_timeout_ms: u64,
    /// High watermarks remembered per partition to interpolate message times.
    #[arg(long, env = "EHAC_LAGWATCH_TIME_TABLE_SIZE", default_value_t = 720)]
    pub time_table_size: usize,
}

impl Config {
    /// The defaults, as the binary would get them with no flags or environment.
    pub fn with_brokers(kafka_brokers: &str) -> Self {
        Config {
            kafka_brokers: kafka_brokers.to_owned(),
            listen: "127.0.0.1:9191".parse().unwrap(),
            groups: vec!["ehac-enricher".into(), "ehac-sink".into()],
            topics: Vec::new(),
            poll_interval_ms: 5_000,
            window_secs: 120,
            ok_lag: 0,
            webhook_url: None,
            kafka_timeout_ms: 5_000,
            time_table_size: 720,
        }
    }
}

/// A started lagwatch: where it listens, and the task polling the cluster.
pub struct Running {
    pub addr: SocketAddr,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Waits until lagwatch stopped after shutdown.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await?
    }
}

/// Runs until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    start(config, shutdown).await?.wait().await
}

/// Binds the listener, starts serving and polling. Returns once the port is bound.
pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Running> {
    let mut groups: Vec<String> = Vec::new();
    for g in config.groups.iter().map(|g| g.trim()).filter(|g| !g.is_empty()) {
        if !groups.iter().any(|x| x == g) {
            groups.push(g.to_owned());
        }
    }
    anyhow::ensure!(!groups.is_empty(), "no consumer group to watch: pass --group");
    let registry = ehac_stream::telemetry::registry("lagwatch");
    let metrics = Metrics::register(&registry)?;
    let readiness = Readiness::default();
    readiness.check("kafka", "cluster not read yet");
    let topics = (!config.topics.is_empty()).then(|| config.topics.clone());
    let cluster = Cluster::connect(&config.kafka_brokers, Duration::from_millis(config.kafka_timeout_ms), topics)?;
    let rules = Rules { window_ms: config.window_secs as i64 * 1000, ok_lag: config.ok_lag };
    let watcher = Watcher::new(rules, config.time_table_size);
    let notifications = config.webhook_url.clone().map(|url| notify::spawn(url, metrics.notifications.clone(), shutdown.clone()));

    let state = api::ApiState { groups: Arc::new(groups), snapshot: Arc::new(RwLock::new(None)) };
    let app = api::routes(state.clone()).merge(admin::routes(registry, readiness.clone()));
    let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|e| anyhow::anyhow!("binding {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    let server_shutdown = shutdown.clone();
    let server = tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(server_shutdown.cancelled_owned()).await });
    tracing::info!(%addr, groups = ?state.groups, poll_interval_ms = config.poll_interval_ms, window_secs = config.window_secs, "lagwatch started");

    let poller = Poller {
        cluster,
        watcher,
        metrics,
        readiness,
        state,
        notifications,
        interval: Duration::from_millis(config.poll_interval_ms.max(100)),
    };
    let task = tokio::spawn(async move {
        poller.run(shutdown).await;
        server.await??;
        tracing::info!("lagwatch stopped");
        Ok(())
    });
    Ok(Running { addr, task })
}

struct Poller {
    cluster: Cluster,
    watcher: Watcher,
    metrics: Metrics,
    readiness: Readiness,
    state: api::ApiState,
    notifications: Option<notify::Notifications>,
    interval: Duration,
}

impl Poller {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut next = tokio::time::Instant::now();
        loop {
            self = self.poll_once().await;
            next += self.interval;
            let now = tokio::time::Instant::now();
            if next < now {
                // A poll took longer than the interval: start the next one now, do not pile up.
                next = now;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(next) => {}
            }
        }
    }

    async fn poll_once(mut self) -> Self {
        let started = Instant::now();
        let groups = self.state.groups.clone();
        // Reading message times may take up to half the interval; what is not read by then is
        // interpolated this time and read next time.
        let budget = (self.interval / 2).clamp(Duration::from_millis(500), Duration::from_secs(5));
        let (cluster, watcher, outcome) = tokio::task::spawn_blocking(move || {
            let mut cluster = self.cluster;
            let mut watcher = self.watcher;
            let outcome = cluster.read(&groups).map(|reading| {
                let deadline = Instant::now() + budget;
                let observed = watcher.observe(&reading, |wanted| cluster.message_times(wanted, deadline));
                (reading, observed)
            });
            (cluster, watcher, outcome)
        })
        .await
        .expect("the poll does not panic");
        self.cluster = cluster;
        self.watcher = watcher;
        match outcome {
            Ok((reading, (snapshot, changes, counts))) => {
                for (group, result) in &reading.committed {
                    if let Err(e) = result {
                        self.metrics.errors.with_label_values(&["committed_offsets"]).inc();
                        tracing::warn!(group, error = %e, "reading committed offsets failed; keeping the previous view");
                    }
                }
                self.metrics.count_lookups(&counts);
                self.metrics.update(&snapshot);
                self.metrics.polls.with_label_values(&["ok"]).inc();
                self.readiness.ready("kafka");
                for change in changes {
                    tracing::info!(event = change.event, group = %change.group, status = %change.status, previous = change.previous_status.map_or("none", |s| s.as_str()), total_lag = change.total_lag, "group status changed");
                    if let Some(tx) = &self.notifications {
                        if tx.try_send(change).is_err() {
                            self.metrics.notifications.with_label_values(&["any", "dropped"]).inc();
                        }
                    }
                }
                *self.state.snapshot.write().unwrap() = Some(snapshot);
            }
            Err(e) => {
                let stage = match e {
                    cluster::ReadError::Metadata(_) => "metadata",
                    cluster::ReadError::HighWatermarks(_) => "high_watermarks",
                    cluster::ReadError::Client(_) => "client",
                };
                self.metrics.errors.with_label_values(&[stage]).inc();
                self.metrics.polls.with_label_values(&["error"]).inc();
                self.readiness.not_ready("kafka", e.to_string());
                tracing::warn!(error = %e, "polling the cluster failed");
            }
        }
        self.metrics.poll_seconds.observe(started.elapsed().as_secs_f64());
        self
    }
}
