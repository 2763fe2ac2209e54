//! Who may do what in the stack's ClickHouse, and the traveller-key pepper the stack's enricher
//! uses. Both are made per stack: fresh random passwords and a fresh pepper, each written to a
//! 0600 file in the stack's directory (and reused when the same directory is started again, so
//! `ehac dev up` keeps its data readable).
//!
//! ClickHouse 18.16 has no SQL access control: users live in users.xml. There a user has a
//! profile (settings: `readonly`, `allow_ddl`, result and time limits), a quota and a list of
//! databases it may touch at all (`allow_databases`); columns cannot be restricted, which is why
//! identity lives in a database of its own (`ehac_pii`). `schemas/clickhouse/access.sql` holds
//! the same users for modern ClickHouse, with per-table grants.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use ehac_stream::config::{ClickHouseArgs, PepperArgs};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The stack's ClickHouse users. `default` exists (ClickHouse cannot be without it) but has a
/// password nobody is given, so it cannot be used by accident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarehouseUser {
    /// Reads the analyst database `ehac` only (readonly, quotas, result and time limits).
    Analyst,
    /// Reads `ehac` and the identity database `ehac_pii` (contact tracing, DLQ replay).
    Investigator,
    /// The sink and `ehac reconcile`: inserts into both databases, no DDL. (On 18.16 it can
    /// also read them: a user that may insert into a database may select from it there.)
    Writer,
    /// `ehac migrate`: DDL.
    Migrator,
    /// Not for use: its password is kept only so a test can prove it is needed.
    Default,
}

impl WarehouseUser {
    pub const ALL: [WarehouseUser; 5] =
        [WarehouseUser::Analyst, WarehouseUser::Investigator, WarehouseUser::Writer, WarehouseUser::Migrator, WarehouseUser::Default];

    pub fn name(self) -> &'static str {
        match self {
            WarehouseUser::Analyst => "analyst",
            WarehouseUser::Investigator => "investigator",
            WarehouseUser::Writer => "writer",
            WarehouseUser::Migrator => "migrator",
            WarehouseUser::Default => "default",
        }
    }
}

/// The secrets of one stack, as stored in `<dir>/secrets.json` (mode 0600).
#[derive(Clone, Serialize, Deserialize)]
pub struct StackSecrets {
    pub analyst: String,
    pub investigator: String,
    pub writer: String,
    pub migrator: String,
    pub default: String,
}

impl std::fmt::Debug for StackSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StackSecrets(<redacted>)")
    }
}

fn random_hex(bytes_of_16: usize) -> String {
    (0..bytes_of_16).map(|_| uuid::Uuid::new_v4().simple().to_string()).collect()
}

/// Writes `contents` to a new file only its owner can read.
pub fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)?;
    Ok(())
}

impl StackSecrets {
    /// The secrets in `dir`, made (and the pepper file written) if there are none yet.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<StackSecrets> {
        let path = dir.join("secrets.json");
        if let Ok(text) = std::fs::read_to_string(&path) {
            if dir.join("pepper").is_file() {
                return serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()));
            }
        }
        let secrets = StackSecrets {
            analyst: random_hex(1),
            investigator: random_hex(1),
            writer: random_hex(1),
            migrator: random_hex(1),
            default: random_hex(1),
        };
        write_private(&path, serde_json::to_string_pretty(&secrets)?.as_bytes())?;
        // 32 random bytes as 64 hex digits: the pepper is the text of the file.
        write_private(&dir.join("pepper"), random_hex(2).as_bytes())?;
        Ok(secrets)
    }

    pub fn password(&self, user: WarehouseUser) -> &str {
        match user {
            WarehouseUser::Analyst => &self.analyst,
            WarehouseUser::Investigator => &self.investigator,
            WarehouseUser::Writer => &self.writer,
            WarehouseUser::Migrator => &self.migrator,
            WarehouseUser::Default => &self.default,
        }
    }

    /// users.xml for ClickHouse 18.16 (and modern servers, which read the same file).
    pub fn users_xml(&self) -> String {
        let hash = |user| format!("{:x}", Sha256::digest(self.password(user).as_bytes()));
        let user = |user: WarehouseUser, profile: &str, quota: &str, databases: &[&str]| {
            let allow = if databases.is_empty() {
                String::new()
            } else {
                let list: String = databases.iter().map(|d| format!("<database>{d}</database>")).collect();
                format!("<allow_databases>{list}</allow_databases>")
            };
            format!(
                "    <{name}><password_sha256_hex>{hash}</password_sha256_hex><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>{profile}</profile><quota>{quota}</quota>{allow}</{name}>\n",
                name = user.name(),
                hash = hash(user),
            )
        };
        let users = [
            user(WarehouseUser::Default, "default", "default", &["default"]),
            user(WarehouseUser::Migrator, "migrator", "default", &[]),
            user(WarehouseUser::Writer, "writer", "default", &["ehac", "ehac_pii"]),
            user(WarehouseUser::Analyst, "analyst", "analyst", &["ehac"]),
            user(WarehouseUser::Investigator, "investigator", "investigator", &["ehac", "ehac_pii"]),
        ]
        .concat();
        format!(
            r#"<yandex>
  <profiles>
    <default><max_memory_usage>4000000000</max_memory_usage></default>
    <migrator><max_memory_usage>4000000000</max_memory_usage></migrator>
    <!-- Inserts, and the reads its dedup needs; no CREATE, ALTER or DROP. -->
    <writer><max_memory_usage>4000000000</max_memory_usage><allow_ddl>0</allow_ddl></writer>
    <!-- readonly=1: no INSERT, no SET (so no lifting these limits), no table functions. -->
    <analyst><readonly>1</readonly><max_memory_usage>2000000000</max_memory_usage><max_execution_time>60</max_execution_time><max_result_rows>100000</max_result_rows><result_overflow_mode>throw</result_overflow_mode></analyst>
    <investigator><readonly>1</readonly><max_memory_usage>2000000000</max_memory_usage><max_execution_time>60</max_execution_time><max_result_rows>100000</max_result_rows><result_overflow_mode>throw</result_overflow_mode></investigator>
  </profiles>
  <users>
{users}  </users>
  <quotas>
    <default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default>
    <analyst><interval><duration>3600</duration><queries>10000</queries><errors>0</errors><result_rows>10000000</result_rows><read_rows>0</read_rows><execution_time>3600</execution_time></interval></analyst>
    <investigator><interval><duration>3600</duration><queries>2000</queries><errors>0</errors><result_rows>200000</result_rows><read_rows>0</read_rows><execution_time>1800</execution_time></interval></investigator>
  </quotas>
</yandex>
"#
        )
    }
}

/// The pepper the stack's enricher and `ehac lookup` use: `<dir>/pepper`, version 1.
pub fn pepper_args(dir: &Path) -> PepperArgs {
    PepperArgs { pepper_file: Some(dir.join("pepper")), pepper: None, pepper_version: 1 }
}

/// Connection settings for `user`.
pub fn clickhouse_args(url: String, secrets: &StackSecrets, user: WarehouseUser) -> ClickHouseArgs {
    ClickHouseArgs {
        clickhouse_url: url,
        clickhouse_user: user.name().to_owned(),
        clickhouse_password: secrets.password(user).to_owned(),
        clickhouse_cluster: None,
    }
}

/// An HTTP client whose every request is authenticated as `user`.
pub fn http_client(secrets: &StackSecrets, user: WarehouseUser) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("X-ClickHouse-User", reqwest::header::HeaderValue::from_static(user.name()));
    let mut key = reqwest::header::HeaderValue::from_str(secrets.password(user)).expect("hex passwords are valid header values");
    key.set_sensitive(true);
    headers.insert("X-ClickHouse-Key", key);
    reqwest::Client::builder().default_headers(headers).build().expect("a client with default headers")
}
