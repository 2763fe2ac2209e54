//! The pipeline's services as separate processes, for the demo and the chaos runs: started from
//! the binaries next to `ehac`, killed, restarted, stopped with SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::bail;
use ehac_devstack::{spawn_appending, Lifetime};

/// Where the service binaries are: next to the running `ehac`, or `EHAC_BIN_DIR`.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("EHAC_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe()?;
    Ok(exe.parent().expect("an executable lives in a directory").to_path_buf())
}

/// How to start a service process, kept to start it again.
struct Launch {
    command: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
}

impl Launch {
    fn spawn(&self) -> anyhow::Result<Child> {
        let mut command = Command::new(&self.command);
        command.args(&self.args).envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        spawn_appending(command, &self.log, Lifetime::Attached)
    }
}

/// A service process.
pub struct Service {
    pub name: String,
    pub child: Child,
    launch: Launch,
}

impl Service {
    /// Starts `bin_dir/binary` with `args` and `env`, logging to `log_dir/name.log`.
    pub fn start(
        bin_dir: &Path,
        log_dir: &Path,
        name: &str,
        binary: &str,
        args: &[String],
        env: &[(impl AsRef<str>, impl AsRef<str>)],
    ) -> anyhow::Result<Service> {
        let command = bin_dir.join(binary);
        anyhow::ensure!(command.is_file(), "{} not found (build the workspace's binaries: cargo build --bins)", command.display());
        let env = env
            .iter()
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
            // The operator's RUST_LOG if set (e.g. `ehac_sink=debug` to see every batch).
            .chain([("RUST_LOG".into(), std::env::var("RUST_LOG").unwrap_or_else(|_| "info,rdkafka=warn".into()))])
            .collect();
        let launch = Launch { command, args: args.to_vec(), env, log: log_dir.join(format!("{name}.log")) };
        Ok(Service { name: name.to_owned(), child: launch.spawn()?, launch })
    }

    /// Restarts give `flag` the value `value` (a service first started on port 0 comes back on
    /// the port it bound, where its clients look for it).
    pub fn listen_again_on(&mut self, flag: &str, value: &str) {
        if let Some(at) = self.launch.args.iter().position(|a| a == flag) {
            if let Some(slot) = self.launch.args.get_mut(at + 1) {
                *slot = value.to_owned();
            }
        }
    }

    /// kill -9: no chance to drain or commit, as in a crash.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Starts the same program again (after [`Service::kill`] or [`Service::stop`]).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.child = self.launch.spawn()?;
        Ok(())
    }

    /// What a supervisor (systemd's `Restart=always`, Kubernetes) does: if the process has
    /// exited, starts it again and says how it had exited and why, as far as its log says.
    pub fn restart_if_exited(&mut self) -> anyhow::Result<Option<String>> {
        let Some(status) = self.child.try_wait()? else { return Ok(None) };
        let why = last_words(&self.launch.log);
        self.restart()?;
        Ok(Some(match why {
            Some(why) => format!("{status}: {why}"),
            None => status.to_string(),
        }))
    }

    /// SIGTERM, then waits for the exit status (the service drains and commits first).
    pub fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        ehac_devstack::signal_term(self.child.id());
        Ok(self.child.wait()?)
    }

    /// [`Service::stop`], but a service still running `grace` after SIGTERM is killed and
    /// `None` returned: a drain that hangs is a finding, not a reason for the harness to hang.
    pub fn stop_within(&mut self, grace: Duration) -> anyhow::Result<Option<ExitStatus>> {
        ehac_devstack::signal_term(self.child.id());
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kill()?;
        Ok(None)
    }
}

/// The reason a service gave for exiting: the `Error:` its `main` printed last, else its last
/// ERROR log line's message; shortened to one line.
fn last_words(log: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(log).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024))).ok()?;
    let mut tail = String::new();
    file.take(64 * 1024).read_to_string(&mut tail).ok()?;
    let lines: Vec<&str> = tail.lines().collect();
    // anyhow's report: `Error: context`, then `Caused by:` and the causes, one per line.
    let why = match lines.iter().rposition(|line| line.starts_with("Error: ")) {
        Some(at) => {
            let mut chain: Vec<&str> = lines[at..]
                .iter()
                .take_while(|line| !line.starts_with("Stack backtrace"))
                .map(|line| line.trim_start_matches("Error: ").trim())
                .filter(|line| !line.is_empty() && *line != "Caused by:")
                .map(|line| match line.split_once(": ") {
                    // A numbered cause (`0: ...`).
                    Some((n, cause)) if n.chars().all(|c| c.is_ascii_digit()) => cause,
                    _ => line,
                })
                .collect();
            // An error that repeats its source's text says it once.
            chain.dedup_by(|cause, error| error.ends_with(*cause));
            chain.join(": ")
        }
        None => lines.iter().rev().find_map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line).ok()?;
            (entry["level"] == "ERROR").then(|| entry["fields"]["message"].as_str().unwrap_or_default().to_owned())
        })?,
    };
    Some(why.chars().take(300).collect())
}

/// Starts a gateway given `args` from [`gateway_args`] with both addresses `127.0.0.1:0`, and
/// reads its ports back once bound (no window for another process to take them); a restart
/// binds the same ones. Returns the service, its API's URL and its admin address.
pub async fn start_gateway(
    bin_dir: &Path,
    log_dir: &Path,
    name: &str,
    args: &[String],
    env: &[(impl AsRef<str>, impl AsRef<str>)],
) -> anyhow::Result<(Service, String, String)> {
    let mut service = Service::start(bin_dir, log_dir, name, "ehac-gateway", args, env)?;
    let (port, admin_port) = ehac_devstack::api_and_admin_ports(&mut service.child, Duration::from_secs(60)).await?;
    let (listen, admin) = (format!("127.0.0.1:{port}"), format!("127.0.0.1:{admin_port}"));
    service.listen_again_on("--listen", &listen);
    service.listen_again_on("--admin-listen", &admin);
    Ok((service, format!("http://{listen}"), admin))
}

/// Starts an enricher or a sink with `--admin-listen 127.0.0.1:0` added to `args`, and reads
/// the admin address back once bound; a restart binds the same one.
pub async fn start_with_admin(
    bin_dir: &Path,
    log_dir: &Path,
    name: &str,
    binary: &str,
    args: &[String],
    env: &[(impl AsRef<str>, impl AsRef<str>)],
) -> anyhow::Result<(Service, String)> {
    let args: Vec<String> = ["--admin-listen".to_owned(), "127.0.0.1:0".to_owned()].into_iter().chain(args.iter().cloned()).collect();
    let mut service = Service::start(bin_dir, log_dir, name, binary, &args, env)?;
    let admin = format!("127.0.0.1:{}", ehac_devstack::bound_port(&mut service.child, Duration::from_secs(60)).await?);
    service.listen_again_on("--admin-listen", &admin);
    Ok((service, admin))
}

/// How the gateways that the demo, the chaos matrix and the benchmarks start let clients in.
pub enum Access<'a> {
    /// Development mode: no API key, the body's `client_id` believed, no per-address limit.
    Anonymous,
    /// A client registry file (see [`provision_clients`]) and a per-address limit.
    Clients { file: &'a Path, peer_rate_per_second: u32 },
}

/// Flags of such a gateway: the API on `listen`, `/readyz` and `/metrics` on `admin`.
pub fn gateway_args(listen: &str, admin: &str, spool_dir: &Path, access: &Access) -> Vec<String> {
    let mut args: Vec<String> =
        ["--listen", listen, "--admin-listen", admin, "--spool-dir", &spool_dir.display().to_string()].map(str::to_owned).to_vec();
    match access {
        Access::Anonymous => args.extend(["--allow-anonymous", "--peer-rate-per-second", "0"].map(str::to_owned)),
        Access::Clients { file, peer_rate_per_second } => {
            // Every request of a harness comes from 127.0.0.1, as a bank of kiosks behind one
            // airport NAT: the address may burst to one second of its rate.
            let rate = peer_rate_per_second.to_string();
            args.extend(["--clients-file".to_owned(), file.display().to_string()]);
            args.extend(["--peer-rate-per-second".to_owned(), rate.clone(), "--peer-burst".to_owned(), rate]);
        }
    }
    args
}

/// The clients a harness submits as, and the keys it sends in turn.
pub struct HarnessClients {
    pub file: PathBuf,
    pub api_keys: Vec<String>,
    /// The per-address limit to give the gateway: twice the peak rate, all from one address.
    pub peer_rate_per_second: u32,
}

impl HarnessClients {
    pub fn access(&self) -> Access<'_> {
        Access::Clients { file: &self.file, peer_rate_per_second: self.peer_rate_per_second }
    }
}

/// Registers `count` clients `<prefix>-1..` with one key each in `dir/clients.json`. Sent in
/// turn at `peak_rate` in all, each client sees `peak_rate / count`: its quota is a quarter
/// above that, with a burst of one second of it (at least a planeload, 300), so the limits are
/// enforced on every request without throttling the load.
pub fn provision_clients(dir: &Path, prefix: &str, count: usize, peak_rate: f64) -> anyhow::Result<HarnessClients> {
    let file = dir.join("clients.json");
    let _ = std::fs::remove_file(&file);
    let mut registry = ehac_clients::ClientRegistry::default();
    let per_client = (peak_rate / count.max(1) as f64 * 1.25).ceil() as u32;
    let now = chrono::Utc::now();
    let mut api_keys = Vec::with_capacity(count);
    for i in 1..=count.max(1) {
        let client_id = format!("{prefix}-{i}");
        let client = ehac_clients::Client { rate_per_second: per_client.max(1), burst: per_client.max(300), ..Default::default() };
        registry.add_client(&client_id, client)?;
        api_keys.push(registry.issue_key(&client_id, now, None)?.to_string());
    }
    ehac_clients::file::save(&file, &registry)?;
    Ok(HarnessClients { file, api_keys, peer_rate_per_second: (peak_rate * 2.0).ceil() as u32 })
}

pub async fn wait_ready(http: &reqwest::Client, url: &str, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(r) = http.get(url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{url} not ready after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The value of a counter or gauge on a service's `/metrics` page, summed over its label sets
/// (the services' metrics carry a constant `service` label).
pub async fn metric_value(http: &reqwest::Client, metrics_url: &str, name: &str) -> anyhow::Result<f64> {
    let text = http.get(metrics_url).send().await?.error_for_status()?.text().await?;
    parse_metric(&text, name).ok_or_else(|| anyhow::anyhow!("{metrics_url} has no metric {name}"))
}

fn parse_metric(text: &str, name: &str) -> Option<f64> {
    let values = text.lines().filter_map(|line| {
        let rest = line.strip_prefix(name)?;
        let value = match rest.strip_prefix('{') {
            Some(labelled) => labelled.split_once("} ")?.1,
            None => rest.strip_prefix(' ')?,
        };
        value.trim().parse::<f64>().ok()
    });
    values.fold(None, |sum, v| Some(sum.unwrap_or(0.0) + v))
}

/// The environment of an enricher process on `stack`: brokers and the pepper file (its path,
/// never the pepper).
pub fn enricher_env(stack: &ehac_devstack::Stack) -> Vec<(String, String)> {
    let mut env = vec![("EHAC_KAFKA_BROKERS".to_owned(), stack.kafka_brokers())];
    env.extend(stack.pepper_env());
    env
}

/// The environment of a sink process on `stack`: brokers and the `writer` user's credentials.
pub fn sink_env(stack: &ehac_devstack::Stack) -> Vec<(String, String)> {
    let mut env = vec![("EHAC_KAFKA_BROKERS".to_owned(), stack.kafka_brokers())];
    env.extend(stack.clickhouse_env(ehac_devstack::WarehouseUser::Writer));
    env
}

#[cfg(test)]
mod tests {
    use super::{last_words, parse_metric};

    #[test]
    fn an_exit_is_explained_by_the_error_main_printed_else_by_the_last_error_logged() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("enricher.log");
        let json = |level: &str, message: &str| format!(r#"{{"level":"{level}","fields":{{"message":"{message}"}}}}"#);
        let logged = [json("INFO", "enricher started"), json("ERROR", "librdkafka: FAIL"), json("WARN", "retrying")].join("\n");
        std::fs::write(&log, format!("{logged}\n")).unwrap();
        assert_eq!(last_words(&log).as_deref(), Some("librdkafka: FAIL"));
        let report = "Error: commit_transaction: the transactional producer cannot go on\n\nCaused by:\n    0: Transaction error: fenced\n    1: fenced\n    2: 30 s passed\n\nStack backtrace:\n   0: main\n";
        std::fs::write(&log, format!("{logged}\n{report}")).unwrap();
        assert_eq!(
            last_words(&log).as_deref(),
            Some("commit_transaction: the transactional producer cannot go on: Transaction error: fenced: 30 s passed")
        );
        std::fs::write(&log, json("INFO", "enricher drained")).unwrap();
        assert_eq!(last_words(&log), None);
        assert_eq!(last_words(&dir.path().join("missing.log")), None);
    }

    #[test]
    fn reads_the_named_metric_only() {
        let text = "# HELP ehac_gateway_spooled_total x\n# TYPE ehac_gateway_spooled_total counter\nehac_gateway_spooled_total_other{service=\"gateway\"} 7\nehac_gateway_spooled_total{service=\"gateway\"} 42\n";
        assert_eq!(parse_metric(text, "ehac_gateway_spooled_total"), Some(42.0));
        assert_eq!(parse_metric(text, "ehac_gateway_spool_records"), None);
        assert_eq!(parse_metric("up 1\nup{a=\"b c\"} 2\n", "up"), Some(3.0));
    }
}
