//! Degraded mode: no citizen is refused because the registry is "offline". The
//! population registry is a real process the test kills, slows down and restarts; declarations
//! keep flowing, citizens are stored `pending` instead of being blocked or rejected, and the
//! reconciliation job verifies them once the registry is back.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use ehac_domain::sample::Flaw;
use ehac_registry::RegistryArgs;
use ehac_tests::{declarations, pipeline_with, unique_client, PipelineOptions};

const PATIENCE: Duration = Duration::from_secs(90);

struct Registry {
    port: u16,
    child: Child,
}

impl Registry {
    /// The simulator on `port`: 0 the first time, then the port it bound, where the enricher
    /// looks for it after it was killed.
    async fn start(port: u16, delay_ms: u64) -> Registry {
        let mut child = Command::new(env!("CARGO_BIN_EXE_registry-sim"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--delay-ms", &delay_ms.to_string()])
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("registry simulator starts");
        let bound = ehac_devstack::bound_port(&mut child, Duration::from_secs(20)).await.expect("the registry simulator listens");
        assert!(port == 0 || bound == port, "asked for {port}, bound {bound}");
        Registry { port: bound, child }
    }

    /// kill -9: the registry vanishes as a crashed server would.
    fn kill(self) -> u16 {
        self.port
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `n` citizens' declarations (citizens are the ones verified) and waits until all are
/// stored; returns how long that took.
async fn send(p: &ehac_tests::Pipeline, client: &str, n: usize, seed: u64) -> Duration {
    let started = Instant::now();
    let forms = declarations(n * 2, client, Flaw::None, seed).into_iter().filter(|f| f.traveller.nik.is_some()).take(n);
    for form in forms {
        let (status, body) = p.post(serde_json::to_vec(&form).unwrap()).await;
        assert_eq!(status, 202, "{body}");
    }
    let stored = p.wait_for_count(&format!("SELECT count() FROM ehac.declarations WHERE client_id = '{client}'"), n as u64, PATIENCE).await;
    assert_eq!(stored, n as u64, "every citizen stored");
    started.elapsed()
}

async fn statuses(p: &ehac_tests::Pipeline, client: &str, view: bool) -> String {
    let sql = if view {
        format!("SELECT status, count() FROM ehac.declaration_verification WHERE declaration_id IN (SELECT declaration_id FROM ehac.declarations WHERE client_id = '{client}') GROUP BY status ORDER BY status")
    } else {
        format!("SELECT verification_status, count() FROM ehac.declarations WHERE client_id = '{client}' GROUP BY verification_status ORDER BY verification_status")
    };
    p.sql(&sql).await
}

#[tokio::test]
async fn citizens_are_stored_pending_while_the_registry_is_down_and_verified_later() {
    let registry = Registry::start(0, 0).await;
    let port = registry.port;
    let registry_args = RegistryArgs {
        registry_url: Some(format!("http://127.0.0.1:{port}")),
        registry_timeout_ms: 300,
        registry_breaker_failures: 2,
        registry_breaker_cooldown_ms: 1_000,
    };
    let p = pipeline_with(|| PipelineOptions { registry: registry_args.clone(), ..PipelineOptions::default() });

    // Registry up: citizens are verified on the way in.
    let up = unique_client("registry-up");
    send(p, &up, 100, 21).await;
    let seen = statuses(p, &up, false).await;
    assert!(!seen.contains("pending"), "registry up: nobody pending: {seen}");
    assert!(seen.contains("verified"), "{seen}");

    // Registry killed: declarations keep flowing, citizens stored pending, nobody rejected.
    let port = registry.kill();
    let down = unique_client("registry-down");
    let took = send(p, &down, 300, 22).await;
    assert_eq!(statuses(p, &down, false).await, "pending\t300\n");
    assert_eq!(p.sql(&format!("SELECT count() FROM ehac.rejections WHERE client_id = '{down}'")).await.trim(), "0");
    eprintln!("300 declarations through the pipeline with the registry down in {took:?}");

    // Registry slow (2 s per answer, timeout 300 ms): still stored, still pending.
    let slow = Registry::start(port, 2_000).await;
    let slow_client = unique_client("registry-slow");
    send(p, &slow_client, 100, 23).await;
    assert_eq!(statuses(p, &slow_client, false).await, "pending\t100\n");
    let port = slow.kill();

    // Registry back: new citizens are verified again once the breaker's probe succeeds.
    let _back = Registry::start(port, 0).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let back = unique_client("registry-back");
    send(p, &back, 100, 24).await;
    let seen = statuses(p, &back, false).await;
    assert!(seen.contains("verified"), "the breaker closed again after the registry came back: {seen}");

    // The reconciliation job verifies the pending ones and writes the answers back.
    let metrics = prometheus::Registry::new();
    let verifier = RegistryArgs { registry_timeout_ms: 5_000, ..registry_args.clone() }.verifier(&metrics).unwrap().unwrap();
    // Reading pending NIKs and birth dates (identity database) and writing answers: the
    // reconciler, which access.sql allows nothing more.
    let warehouse = p.clickhouse_as(ehac_devstack::WarehouseUser::Reconciler);
    let report = ehac_registry::reconcile::run_once(&warehouse, &verifier, 250, "test").await.unwrap();
    assert!(report.stopped.is_none(), "{}", report.line());
    assert!(report.verified + report.not_found >= 400, "the 300 + 100 pending, at least: {}", report.line());
    for client in [&down, &slow_client] {
        let view = statuses(p, client, true).await;
        assert!(!view.contains("pending"), "{client}: {view}");
        assert!(view.contains("verified"), "{client}: {view}");
    }
    // The analysts' published counts follow the answers: the rollup's statuses at arrival,
    // corrected by them, are the row-by-row view's counts (1 to 10 published as NULL).
    let row_by_row = p.sql("SELECT status, count() FROM ehac.declaration_verification GROUP BY status ORDER BY status").await;
    let expected: String = row_by_row
        .lines()
        .map(|line| {
            let (status, n) = line.split_once('\t').unwrap();
            let n: u64 = n.parse().unwrap();
            format!("{status}\t{}\n", if n < 11 { "\\N".to_owned() } else { n.to_string() })
        })
        .collect();
    assert!(expected.contains("verified"), "{expected}");
    let (ok, published) = p
        .sql_as(
            ehac_devstack::WarehouseUser::Analyst,
            "SELECT status, declarations FROM ehac.published_verification_by_status ORDER BY status FORMAT TabSeparated",
        )
        .await;
    assert!(ok, "{published}");
    assert_eq!(published, expected, "published vs row by row");

    // A second run finds nothing left to do.
    let again = ehac_registry::reconcile::run_once(&warehouse, &verifier, 250, "test").await.unwrap();
    assert_eq!((again.verified, again.not_found, again.mismatch), (0, 0, 0), "{}", again.line());
}
