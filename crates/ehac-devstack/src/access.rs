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
    /// Reads the published counts and the k-anonymous microdata of `ehac` (readonly, quotas,
    /// result and time limits); on 18.16 the whole database.
    Analyst,
    /// Reads `ehac` row by row (pseudonymised, no identity), every query kept in the query log.
    Epidemiologist,
    /// Reads `ehac` and the identity database `ehac_pii` (contact tracing, DLQ replay).
    Investigator,
    /// The sink and `ehac reconcile`: inserts into both databases, no DDL. (On 18.16 it can
    /// also read them: a user that may insert into a database may select from it there.)
    Writer,
    /// `ehac migrate`: DDL.
    Migrator,
    /// `ehac reconcile`: the pending citizens' NIK and birth date, and the verification answers.
    /// (On 18.16 it has the writer's rights: users.xml cannot restrict columns.)
    Reconciler,
    /// Not for use: its password is kept only so a test can prove it is needed.
    Default,
}

impl WarehouseUser {
    pub const ALL: [WarehouseUser; 7] = [
        WarehouseUser::Analyst,
        WarehouseUser::Epidemiologist,
        WarehouseUser::Investigator,
        WarehouseUser::Writer,
        WarehouseUser::Migrator,
        WarehouseUser::Reconciler,
        WarehouseUser::Default,
    ];

    pub fn name(self) -> &'static str {
        match self {
            WarehouseUser::Analyst => "analyst",
            WarehouseUser::Epidemiologist => "epidemiologist",
            WarehouseUser::Investigator => "investigator",
            WarehouseUser::Writer => "writer",
            WarehouseUser::Migrator => "migrator",
            WarehouseUser::Reconciler => "reconciler",
            WarehouseUser::Default => "default",
        }
    }
}

/// The secrets of one stack, as stored in `<dir>/secrets.json` (mode 0600).
#[derive(Clone, Serialize, Deserialize)]
pub struct StackSecrets {
    pub analyst: String,
    /// Absent from the secrets of a stack made before epidemiologists had a user of their own.
    #[serde(default = "new_password")]
    pub epidemiologist: String,
    pub investigator: String,
    pub writer: String,
    pub migrator: String,
    /// Absent from the secrets of a stack made before the reconciler had a user of its own.
    #[serde(default = "new_password")]
    pub reconciler: String,
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

fn new_password() -> String {
    random_hex(1)
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
            epidemiologist: random_hex(1),
            investigator: random_hex(1),
            writer: random_hex(1),
            migrator: random_hex(1),
            reconciler: random_hex(1),
            default: random_hex(1),
        };
        write_private(&path, serde_json::to_string_pretty(&secrets)?.as_bytes())?;
        // 32 random bytes as 64 hex digits: the pepper is the text of the file.
        write_private(&dir.join("pepper"), random_hex(2).as_bytes())?;
        Ok(secrets)
    }

    /// Fixed one-letter passwords, for tests of what is generated from them.
    #[cfg(test)]
    pub(crate) fn for_tests() -> StackSecrets {
        StackSecrets {
            analyst: "a".into(),
            epidemiologist: "e".into(),
            investigator: "i".into(),
            writer: "w".into(),
            migrator: "m".into(),
            reconciler: "r".into(),
            default: "d".into(),
        }
    }

    pub fn password(&self, user: WarehouseUser) -> &str {
        match user {
            WarehouseUser::Analyst => &self.analyst,
            WarehouseUser::Epidemiologist => &self.epidemiologist,
            WarehouseUser::Investigator => &self.investigator,
            WarehouseUser::Writer => &self.writer,
            WarehouseUser::Migrator => &self.migrator,
            WarehouseUser::Reconciler => &self.reconciler,
            WarehouseUser::Default => &self.default,
        }
    }

    fn password_sha256_hex(&self, user: WarehouseUser) -> String {
        format!("{:x}", Sha256::digest(self.password(user).as_bytes()))
    }

    /// users.xml for a modern server (the stack's 26.9), generated from
    /// `schemas/clickhouse/access.sql` so the two cannot drift: [`AccessPlan`] reads its
    /// profiles, roles, quotas, users and grants. `default` has no password because the
    /// server's own in-process session runs as it (`clickhouse_server.py`), so it may do nothing
    /// but start the listeners and read `system.numbers`.
    pub fn modern_users_xml(&self) -> anyhow::Result<String> {
        let plan = AccessPlan::parse(ehac_stream::warehouse::ACCESS_SQL)?;
        let mut x = String::from("<clickhouse>\n  <profiles>\n    <default/>\n");
        for (name, settings) in &plan.profiles {
            let values: String = settings.iter().map(|(k, v)| format!("<{k}>{}</{k}>", xml_escape(v))).collect();
            let constant: Vec<&str> = plan.constant_settings.iter().filter(|(p, _)| p == name).map(|(_, k)| k.as_str()).collect();
            let constraints = if constant.is_empty() {
                String::new()
            } else {
                format!("<constraints>{}</constraints>", constant.iter().map(|k| format!("<{k}><readonly/></{k}>")).collect::<String>())
            };
            x.push_str(&format!("    <{name}>{values}{constraints}</{name}>\n"));
        }
        x.push_str("  </profiles>\n  <quotas>\n    <default/>\n");
        for (name, limits) in &plan.quotas {
            let limits: String = limits.iter().map(|(k, v)| format!("<{k}>{v}</{k}>")).collect();
            x.push_str(&format!("    <{name}><interval><duration>3600</duration>{limits}</interval></{name}>\n"));
        }
        x.push_str("  </quotas>\n  <roles>\n");
        for (name, grants) in &plan.roles {
            x.push_str(&format!("    <{name}><grants>{}</grants></{name}>\n", grant_queries(grants)));
        }
        x.push_str("  </roles>\n  <users>\n");
        let loopback = "<networks><ip>127.0.0.1</ip><ip>::1</ip></networks>";
        x.push_str(&format!(
            "    <default><no_password/>{loopback}<profile>default</profile><quota>default</quota><grants>{}</grants></default>\n",
            grant_queries(&["GRANT SYSTEM LISTEN ON *.*".to_owned(), "GRANT SELECT ON system.numbers".to_owned()])
        ));
        for user in &plan.users {
            let known = WarehouseUser::ALL.into_iter().find(|u| u.name() == user.name);
            let known = known.with_context(|| format!("access.sql creates user {}, which the stack has no password for", user.name))?;
            // XML roles hold grants only: a role's settings profile and quota go on its users.
            let profile = plan.role_profiles.get(&user.default_role).map_or("default", String::as_str);
            let quota = plan.role_quotas.get(&user.default_role).map_or("default", String::as_str);
            x.push_str(&format!(
                "    <{name}><password_sha256_hex>{hash}</password_sha256_hex>{loopback}<profile>{profile}</profile><quota>{quota}</quota><grants>{grants}</grants></{name}>\n",
                name = user.name,
                hash = self.password_sha256_hex(known),
                grants = grant_queries(&user.grants),
            ));
        }
        x.push_str("  </users>\n</clickhouse>\n");
        Ok(x)
    }

    /// users.xml for ClickHouse 18.16, which has no SQL access control: per-database rights only.
    pub fn users_xml(&self) -> String {
        let hash = |user| self.password_sha256_hex(user);
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
            user(WarehouseUser::Reconciler, "writer", "default", &["ehac", "ehac_pii"]),
            user(WarehouseUser::Analyst, "analyst", "analyst", &["ehac"]),
            user(WarehouseUser::Epidemiologist, "epidemiologist", "investigator", &["ehac"]),
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
    <epidemiologist><readonly>1</readonly><log_queries>1</log_queries><max_memory_usage>2000000000</max_memory_usage><max_execution_time>120</max_execution_time><max_result_rows>1000000</max_result_rows><result_overflow_mode>throw</result_overflow_mode></epidemiologist>
    <investigator><readonly>1</readonly><log_queries>1</log_queries><max_memory_usage>2000000000</max_memory_usage><max_execution_time>60</max_execution_time><max_result_rows>100000</max_result_rows><result_overflow_mode>throw</result_overflow_mode></investigator>
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

/// `schemas/clickhouse/access.sql` read statement by statement: what a users.xml needs to hold
/// the same rights on a server whose SQL access storage is read-only.
#[derive(Debug, Default)]
pub struct AccessPlan {
    /// Settings profiles: name, then `(setting, value)` with quotes taken off.
    pub profiles: Vec<(String, Vec<(String, String)>)>,
    /// `(profile, setting)` for each setting marked CONST: no query may change it.
    pub constant_settings: Vec<(String, String)>,
    /// Quotas (per hour): name, then `(limit, value)`.
    pub quotas: Vec<(String, Vec<(String, String)>)>,
    /// Roles and the GRANT statements given to each, without their `TO` clause.
    pub roles: Vec<(String, Vec<String>)>,
    pub role_profiles: std::collections::HashMap<String, String>,
    pub role_quotas: std::collections::HashMap<String, String>,
    pub users: Vec<PlannedUser>,
    /// Statements to run as SQL after the migrations (the views' definers).
    pub after_migrations: Vec<String>,
}

#[derive(Debug)]
pub struct PlannedUser {
    pub name: String,
    pub default_role: String,
    /// GRANT statements given to the user itself (its roles among them), without `TO`.
    pub grants: Vec<String>,
}

/// The statements of a SQL file, comments dropped, white space folded.
pub fn sql_statements(text: &str) -> Vec<String> {
    let without_comments: String = text.lines().filter(|l| !l.trim_start().starts_with("--")).map(|l| format!("{l}\n")).collect();
    without_comments.split(';').map(|s| s.split_whitespace().collect::<Vec<_>>().join(" ")).filter(|s| !s.is_empty()).collect()
}

fn strip_if_not_exists(s: &str) -> &str {
    s.strip_prefix("IF NOT EXISTS ").unwrap_or(s)
}

/// `k = v, k = 'v'` as pairs, quotes taken off.
fn assignments(list: &str) -> Vec<(String, String)> {
    list.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('\'').to_owned()))
        .collect()
}

impl AccessPlan {
    /// Reads access.sql; a statement it cannot translate is an error, so the file cannot grow
    /// something the stack would silently leave out.
    pub fn parse(sql: &str) -> anyhow::Result<AccessPlan> {
        let mut plan = AccessPlan::default();
        for statement in sql_statements(sql) {
            let st = statement.as_str();
            if let Some(rest) = st.strip_prefix("CREATE SETTINGS PROFILE ") {
                let (name, settings) = strip_if_not_exists(rest).split_once(" SETTINGS ").context("a profile without SETTINGS")?;
                let mut values = assignments(settings);
                for (setting, value) in &mut values {
                    if let Some(constant) = value.strip_suffix(" CONST") {
                        *value = constant.trim_matches('\'').to_owned();
                        plan.constant_settings.push((name.to_owned(), setting.clone()));
                    }
                }
                plan.profiles.push((name.to_owned(), values));
            } else if let Some(rest) = st.strip_prefix("CREATE ROLE ") {
                let rest = strip_if_not_exists(rest);
                let (name, profile) = match rest.split_once(" SETTINGS PROFILE ") {
                    Some((name, profile)) => (name, Some(profile.trim_matches('\''))),
                    None => (rest, None),
                };
                plan.roles.push((name.to_owned(), Vec::new()));
                if let Some(profile) = profile {
                    plan.role_profiles.insert(name.to_owned(), profile.to_owned());
                }
            } else if let Some(rest) = st.strip_prefix("CREATE QUOTA ") {
                let (name, rest) = strip_if_not_exists(rest).split_once(" FOR INTERVAL 1 hour MAX ").context("a quota not per hour")?;
                let (limits, role) = rest.rsplit_once(" TO ").context("a quota for nobody")?;
                plan.quotas.push((name.to_owned(), assignments(limits)));
                plan.role_quotas.insert(role.to_owned(), name.to_owned());
            } else if let Some(rest) = st.strip_prefix("CREATE USER ") {
                let rest = strip_if_not_exists(rest);
                let (name, rest) = rest.split_once(' ').context("a user without a definition")?;
                let default_role = rest.rsplit_once(" DEFAULT ROLE ").context("a user without a default role")?.1;
                plan.users.push(PlannedUser { name: name.to_owned(), default_role: default_role.to_owned(), grants: Vec::new() });
            } else if st.starts_with("GRANT ") {
                let (grant, grantee) = st.rsplit_once(" TO ").context("a GRANT to nobody")?;
                if let Some((_, grants)) = plan.roles.iter_mut().find(|(name, _)| name == grantee) {
                    grants.push(grant.to_owned());
                } else if let Some(user) = plan.users.iter_mut().find(|u| u.name == grantee) {
                    user.grants.push(grant.to_owned());
                } else {
                    anyhow::bail!("access.sql grants to {grantee} before creating it: {st}");
                }
            } else if st.starts_with("ALTER TABLE ") {
                plan.after_migrations.push(statement.clone());
            } else {
                anyhow::bail!("the dev stack cannot translate this statement of access.sql into users.xml: {st}");
            }
        }
        Ok(plan)
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn grant_queries(grants: &[String]) -> String {
    grants.iter().map(|g| format!("<query>{}</query>", xml_escape(g))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> StackSecrets {
        StackSecrets::for_tests()
    }

    /// Every statement of access.sql lands in the generated users.xml (or in what runs after the
    /// migrations): the dev server's rights are production's, statement for statement.
    #[test]
    fn the_generated_users_xml_holds_every_statement_of_access_sql() {
        let xml = secrets().modern_users_xml().unwrap();
        let plan = AccessPlan::parse(ehac_stream::warehouse::ACCESS_SQL).unwrap();
        let mut checked = 0;
        for statement in sql_statements(ehac_stream::warehouse::ACCESS_SQL) {
            if statement.starts_with("GRANT ") {
                let grant = statement.rsplit_once(" TO ").unwrap().0;
                assert!(xml.contains(&format!("<query>{grant}</query>")), "{grant} is not in users.xml");
            } else if let Some(rest) = statement.strip_prefix("CREATE USER IF NOT EXISTS ") {
                let name = rest.split(' ').next().unwrap();
                assert!(xml.contains(&format!("<{name}><password_sha256_hex>")), "user {name} is not in users.xml");
            } else if statement.starts_with("ALTER TABLE ") {
                assert!(plan.after_migrations.contains(&statement), "{statement}");
            } else {
                let name = statement.split(' ').find(|w| w.starts_with("ehac_")).unwrap();
                assert!(xml.contains(&format!("<{name}>")), "{name} is not in users.xml");
            }
            checked += 1;
        }
        assert!(checked >= 40, "only {checked} statements read");
        // Each role's settings profile and quota reach the users whose default role it is.
        assert!(xml.contains("<analyst><password_sha256_hex>"));
        let analyst = xml.split("<analyst><password_sha256_hex>").nth(1).unwrap().split("</analyst>").next().unwrap();
        assert!(analyst.contains("<profile>ehac_analyst_limits</profile><quota>ehac_analyst_quota</quota>"), "{analyst}");
        // A setting marked CONST becomes a constraint no query can lift.
        let investigator = xml.split("<ehac_investigator_limits>").nth(1).unwrap().split("</ehac_investigator_limits>").next().unwrap();
        assert!(investigator.contains("<log_queries>1</log_queries>"), "{investigator}");
        assert!(investigator.contains("<constraints><log_queries><readonly/></log_queries>"), "{investigator}");
        assert!(investigator.contains("<result_overflow_mode>throw</result_overflow_mode>"), "{investigator}");
        assert!(analyst.contains("<query>GRANT ehac_analyst</query>"), "{analyst}");
        // The analyst's limits are the profile's, quotes off.
        assert!(xml.contains("<ehac_analyst_limits><readonly>2</readonly><max_execution_time>60</max_execution_time>"), "{xml}");
        assert!(xml.contains("<constraints><max_execution_time><readonly/></max_execution_time>"), "{xml}");
        assert!(xml.contains("<result_overflow_mode>throw</result_overflow_mode>"));
        // The password is each user's own, hashed.
        let reconciler_hash = format!("{:x}", Sha256::digest(b"r"));
        assert!(xml.contains(&format!("<reconciler><password_sha256_hex>{reconciler_hash}</password_sha256_hex>")));
        assert!(!xml.contains("${"), "a placeholder was left in: {xml}");
    }

    #[test]
    fn a_statement_users_xml_cannot_hold_is_an_error() {
        let err = AccessPlan::parse("CREATE ROW POLICY p ON ehac.declarations USING 1 TO analyst;").unwrap_err();
        assert!(err.to_string().contains("cannot translate"), "{err}");
        let err = AccessPlan::parse("GRANT SELECT ON ehac.* TO nobody;").unwrap_err();
        assert!(err.to_string().contains("before creating it"), "{err}");
    }
}
