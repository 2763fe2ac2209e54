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
        Topics { raw: "ehac.declarations.raw".into(), enriched: "ehac.declarations.enriched".into(), rejected: "ehac.declarations.rejected".into() }
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
