//! Command-line and environment configuration shared by the services (clap `Args` groups).

use std::net::SocketAddr;

use clap::Args;

/// Where the Kafka-API cluster is and which topics carry declarations.
#[derive(Args, Debug, Clone)]
pub struct KafkaArgs {
    /// Bootstrap brokers, comma-separated host:port.
    #[arg(long, env = "EHAC_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,
    #[command(flatten)]
    pub topics: Topics,
}

#[derive(Args, Debug, Clone)]
pub struct Topics {
    /// Declarations as accepted by the gateway.
    #[arg(long = "topic-raw", env = "EHAC_TOPIC_RAW", default_value = "ehac.declarations.raw")]
    pub raw: String,
    /// Declarations that passed every rule, enriched.
    #[arg(long = "topic-enriched", env = "EHAC_TOPIC_ENRICHED", default_value = "ehac.declarations.enriched")]
    pub enriched: String,
    /// Records rejected downstream, with reasons.
    #[arg(long = "topic-rejected", env = "EHAC_TOPIC_REJECTED", default_value = "ehac.declarations.rejected")]
    pub rejected: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            raw: "ehac.declarations.raw".into(),
            enriched: "ehac.declarations.enriched".into(),
            rejected: "ehac.declarations.rejected".into(),
        }
    }
}

impl Topics {
    pub fn all(&self) -> [&str; 3] {
        [&self.raw, &self.enriched, &self.rejected]
    }
}

/// Where ClickHouse's HTTP interface is.
#[derive(Args, Debug, Clone)]
pub struct ClickHouseArgs {
    #[arg(long, env = "EHAC_CLICKHOUSE_URL", default_value = "http://127.0.0.1:8123")]
    pub clickhouse_url: String,
    #[arg(long, env = "EHAC_CLICKHOUSE_USER", default_value = "default")]
    pub clickhouse_user: String,
    #[arg(long, env = "EHAC_CLICKHOUSE_PASSWORD", default_value = "", hide_env_values = true)]
    pub clickhouse_password: String,
    /// The ClickHouse cluster (its name in `remote_servers`) the schema is replicated on; unset
    /// for a single server. `ehac migrate` then runs its DDL `ON CLUSTER`, and writers insert
    /// into the replicated `*_local` table of the shard they connect to, never through the
    /// Distributed table analysts read (see schemas/clickhouse/cluster/).
    #[arg(long, env = "EHAC_CLICKHOUSE_CLUSTER")]
    pub clickhouse_cluster: Option<String>,
}

/// Where a consumer service serves `/healthz`, `/readyz` and `/metrics`.
#[derive(Args, Debug, Clone)]
pub struct AdminArgs {
    #[arg(long, env = "EHAC_ADMIN_LISTEN", default_value = "127.0.0.1:9180")]
    pub admin_listen: SocketAddr,
    /// Where it was bound, for a caller in the same process that gave port 0.
    #[arg(skip)]
    pub bound: BoundAddress,
}

impl AdminArgs {
    /// Port 0 on loopback: the service binds a free port, read back through [`AdminArgs::bound`].
    pub fn any_port() -> AdminArgs {
        AdminArgs { admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)), bound: BoundAddress::default() }
    }
}

/// The address a listener was bound to, set once by the service that bound it: how a caller in
/// the same process that asked for port 0 learns the port, with no window in which another
/// process could take it.
#[derive(Debug, Clone, Default)]
pub struct BoundAddress(std::sync::Arc<std::sync::OnceLock<SocketAddr>>);

impl BoundAddress {
    pub fn set(&self, address: SocketAddr) {
        let _ = self.0.set(address);
    }

    pub fn get(&self) -> Option<SocketAddr> {
        self.0.get().copied()
    }

    /// The address once bound, or None if `within` passed first.
    pub async fn wait(&self, within: std::time::Duration) -> Option<SocketAddr> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(address) = self.get() {
                return Some(address);
            }
            if tokio::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// Validation policy the health ministry sets; the gateway and the enricher must agree on it.
#[derive(Args, Debug, Clone)]
pub struct PolicyArgs {
    /// Days before submission a declared departure may be (travellers declaring after take-off).
    #[arg(long, env = "EHAC_DEPARTURE_WINDOW_PAST_DAYS", default_value_t = 3)]
    pub departure_window_past_days: i64,
    /// Days after submission a declared departure may be (declaring ahead of the trip).
    #[arg(long, env = "EHAC_DEPARTURE_WINDOW_FUTURE_DAYS", default_value_t = 3)]
    pub departure_window_future_days: i64,
}

impl Default for PolicyArgs {
    fn default() -> Self {
        let policy = ehac_domain::Policy::default();
        PolicyArgs {
            departure_window_past_days: policy.departure_past.num_days(),
            departure_window_future_days: policy.departure_future.num_days(),
        }
    }
}

impl PolicyArgs {
    pub fn policy(&self) -> ehac_domain::Policy {
        ehac_domain::Policy {
            departure_past: chrono::Duration::days(self.departure_window_past_days),
            departure_future: chrono::Duration::days(self.departure_window_future_days),
            ..ehac_domain::Policy::default()
        }
    }
}

/// Where the pepper of the traveller key comes from (see `ehac_domain::pseudonym`). The file is
/// preferred: an environment variable is visible in `/proc/<pid>/environ` to the same user.
/// The value is never logged, never printed by `--help` and never written anywhere.
#[derive(Args, Clone, Default)]
pub struct PepperArgs {
    /// A file holding the pepper (at least 32 bytes, e.g. `openssl rand -hex 32`), mode 0600.
    #[arg(long, env = "EHAC_PEPPER_FILE")]
    pub pepper_file: Option<std::path::PathBuf>,
    /// The pepper itself, when no file is given.
    #[arg(long, env = "EHAC_PEPPER", hide_env_values = true)]
    pub pepper: Option<String>,
    /// The version of this pepper, stored beside every key it computes. Rotating the pepper
    /// means a new secret under a new version; old keys keep theirs.
    #[arg(long, env = "EHAC_PEPPER_VERSION", default_value_t = 1)]
    pub pepper_version: u32,
}

impl std::fmt::Debug for PepperArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PepperArgs")
            .field("pepper_file", &self.pepper_file)
            .field("pepper", &self.pepper.as_ref().map(|_| "<redacted>"))
            .field("pepper_version", &self.pepper_version)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PepperConfigError {
    #[error("no pepper: give --pepper-file (EHAC_PEPPER_FILE) or EHAC_PEPPER")]
    Missing,
    #[error("reading the pepper file {path}: {source}")]
    Read { path: std::path::PathBuf, source: std::io::Error },
    #[error("the pepper file {0} can be read by others than its owner: chmod 600 it")]
    Exposed(std::path::PathBuf),
    #[error(transparent)]
    Invalid(#[from] ehac_domain::pseudonym::PepperError),
}

impl PepperArgs {
    /// The pepper, from the file if one is given, else from the value.
    pub fn pepper(&self) -> Result<ehac_domain::Pepper, PepperConfigError> {
        let secret = match (&self.pepper_file, &self.pepper) {
            (Some(path), _) => {
                use std::os::unix::fs::PermissionsExt;
                let read = |source| PepperConfigError::Read { path: path.clone(), source };
                let mode = std::fs::metadata(path).map_err(read)?.permissions().mode();
                if mode & 0o077 != 0 {
                    return Err(PepperConfigError::Exposed(path.clone()));
                }
                std::fs::read(path).map_err(read)?
            }
            (None, Some(value)) => value.as_bytes().to_vec(),
            (None, None) => return Err(PepperConfigError::Missing),
        };
        Ok(ehac_domain::Pepper::new(self.pepper_version, &secret)?)
    }
}

/// How a consumer service takes part in its consumer group.
#[derive(Args, Debug, Clone)]
pub struct MembershipArgs {
    /// Seconds a member may hold no partitions while its group has lag before it exits for its
    /// supervisor to restart it; 0: never exit, only report (readiness, kafka_member_stranded).
    #[arg(long, env = "EHAC_KAFKA_UNASSIGNED_EXIT_SECS", default_value_t = 60)]
    pub unassigned_exit_secs: u64,
    /// Static group membership (KIP-345): a stable id per instance (e.g. the pod name), so a
    /// restarted member takes its partitions back at once instead of waiting for the group to
    /// notice the old one is gone. Unset: dynamic membership.
    #[arg(long, env = "EHAC_KAFKA_GROUP_INSTANCE_ID")]
    pub kafka_group_instance_id: Option<String>,
    /// librdkafka's `partition.assignment.strategy`.
    #[arg(long, env = "EHAC_KAFKA_ASSIGNMENT", default_value = "cooperative-sticky")]
    pub kafka_assignment: String,
}

impl Default for MembershipArgs {
    fn default() -> Self {
        MembershipArgs { unassigned_exit_secs: 60, kafka_group_instance_id: None, kafka_assignment: "cooperative-sticky".into() }
    }
}
