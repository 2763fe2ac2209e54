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
}

/// Where a consumer service serves `/healthz`, `/readyz` and `/metrics`.
#[derive(Args, Debug, Clone)]
pub struct AdminArgs {
    #[arg(long, env = "EHAC_ADMIN_LISTEN", default_value = "127.0.0.1:9180")]
    pub admin_listen: SocketAddr,
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
