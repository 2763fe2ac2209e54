//! The schema, the sink and the users on a ClickHouse cluster: ZooKeeper and two ClickHouse
//! 18.16 replicas of one shard (the dev stack's `with_clickhouse_replicas`), with a broker.
//! The sink writes replica 1; everything is read back on replica 2.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ehac_devstack::{Stack, StackOptions, StackSecrets, Tools, WarehouseUser};
use ehac_domain::reference::ReferenceData;
use ehac_domain::sample::{Flaw, SampleGenerator};
use ehac_domain::{EnrichedDeclaration, Policy, RawDeclaration};
use ehac_stream::config::{AdminArgs, ClickHouseArgs, KafkaArgs, Topics};
use ehac_stream::warehouse::{self, Migration, MIGRATIONS};

const PATIENCE: Duration = Duration::from_secs(60);

/// What the tests need of the cluster's stack, which a parked thread keeps alive.
struct Cluster {
    name: String,
    /// Replica 1's and replica 2's HTTP URLs.
    replicas: [String; 2],
    secrets: StackSecrets,
    brokers: String,
    topics: Topics,
    writer: ClickHouseArgs,
    migrator: ClickHouseArgs,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

fn cluster() -> &'static Cluster {
    let started = CLUSTER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        // The servers die with the thread that started them (PR_SET_PDEATHSIG): it parks for
        // the life of the test process.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            let started = runtime.block_on(start());
            let ok = started.is_ok();
            tx.send(started.map_err(|e| format!("{e:#}"))).ok();
            if ok {
                runtime.block_on(std::future::pending::<()>());
            }
        });
        rx.recv().map_err(|e| e.to_string())?
    });
    match started {
        Ok(c) => c,
        Err(e) => panic!("could not start the ClickHouse cluster: {e}"),
    }
}

async fn start() -> anyhow::Result<Cluster> {
    ehac_stream::telemetry::init_logging();
    let dir = ehac_tests::test_dir(Some("cluster"));
    let _ = std::fs::remove_dir_all(&dir);
    let stack = Stack::start(&Tools::find()?, StackOptions::ephemeral(&dir)?.with_clickhouse_replicas(2)?).await?;
    let topics = Topics::default();
    // Creates the topics and runs `migrate` ON CLUSTER for the first time.
    stack.provision(&topics, 4).await?;
    let cluster = Cluster {
        name: stack.clickhouse_cluster().expect("replicated").to_owned(),
        replicas: [stack.clickhouse_replica_url(0), stack.clickhouse_replica_url(1)],
        secrets: stack.secrets.clone(),
        brokers: stack.kafka_brokers(),
        topics,
        writer: stack.clickhouse_as(WarehouseUser::Writer),
        migrator: stack.clickhouse_as(WarehouseUser::Migrator),
    };
    std::mem::forget(stack);
    Ok(cluster)
}

impl Cluster {
    /// Runs SQL on replica `replica` (0 or 1) as `user`: whether it was accepted, and the answer.
    async fn sql_as(&self, replica: usize, user: WarehouseUser, sql: &str) -> (bool, String) {
        let response = ehac_devstack::access::http_client(&self.secrets, user)
            .post(&self.replicas[replica])
            .body(sql.to_owned())
            .send()
            .await
            .expect("ClickHouse answers");
        (response.status().is_success(), response.text().await.unwrap())
    }

    /// TabSeparated answer of `sql` on `replica` as the investigator (reads both databases).
    async fn sql(&self, replica: usize, sql: &str) -> String {
        let (ok, text) = self.sql_as(replica, WarehouseUser::Investigator, &format!("{sql} FORMAT TabSeparated")).await;
        assert!(ok, "{sql}: {text}");
        text
    }

    /// Polls `sql` on `replica` until it answers `expected` or PATIENCE passes; the last answer.
    async fn wait_for(&self, replica: usize, sql: &str, expected: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let answer = self.sql(replica, sql).await;
            if answer.trim() == expected || Instant::now() > deadline {
                return answer.trim().to_owned();
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until replica `replica` has fetched everything in its replication queue.
    async fn replicated(&self, replica: usize) {
        let queued = "SELECT sum(queue_size) + sum(inserts_in_queue) FROM system.replicas WHERE database IN ('ehac', 'ehac_pii')";
        assert_eq!(self.wait_for(replica, queued, "0").await, "0", "replica {} still has a replication queue", replica + 1);
    }
}

/// Valid enriched declarations of `client_id` received at `received_at`, as the enricher would
/// write them; the same arguments give the same records.
fn enriched(n: usize, client_id: &str, seed: u64, received_at: chrono::DateTime<chrono::Utc>) -> Vec<EnrichedDeclaration> {
    let mut generator = SampleGenerator::new(seed);
    (0..n)
        .map(|i| {
            let form = generator.declaration(received_at, client_id, Flaw::None);
            let raw = RawDeclaration {
                declaration_id: format!("{client_id}-{i}"),
                received_at_ms: received_at.timestamp_millis(),
                gateway_version: "test".into(),
                form,
            };
            ehac_domain::accept(raw, ReferenceData::embedded(), &Policy::default(), "test").map_err(|(_, e)| e).expect("a valid sample")
        })
        .collect()
}

#[tokio::test]
async fn migrating_the_cluster_again_changes_nothing_and_a_later_migration_reaches_every_replica() {
    let c = cluster();
    let client = warehouse::client(&c.migrator);
    let again = warehouse::migrate(&client, Some(&c.name)).await.unwrap();
    assert!(again.is_empty(), "the baseline was applied by provision already: {again:?}");
    let expected: String = MIGRATIONS.iter().map(|m| format!("{}\t{}\t1\n", m.version, m.name)).collect();
    for replica in 0..2 {
        let recorded =
            c.sql(replica, "SELECT version, name, count() FROM ehac.schema_migrations GROUP BY version, name ORDER BY version").await;
        assert_eq!(recorded, expected, "replica {}", replica + 1);
        let engines = c
            .sql(replica, "SELECT name, engine FROM system.tables WHERE database = 'ehac' AND name IN ('declarations', 'declarations_local', 'schema_migrations') ORDER BY name")
            .await;
        assert_eq!(
            engines,
            "declarations\tDistributed\ndeclarations_local\tReplicatedReplacingMergeTree\nschema_migrations\tReplicatedMergeTree\n"
        );
    }

    // A migration after the baseline runs its cluster form on every replica, once: the shape of
    // migration 0005 (ALTER the replicated local table, make the Distributed one again), on a
    // table of its own, so that no other test's queries stand in its DROP's way (18.16's DROP
    // waits for them; a DDL task left waiting past distributed_ddl_task_timeout fails with 159).
    let mut migrations: Vec<Migration> =
        MIGRATIONS.iter().map(|m| Migration { version: m.version, name: m.name, sql: m.sql, cluster_sql: m.cluster_sql }).collect();
    let next = MIGRATIONS.last().unwrap().version + 1;
    migrations.push(Migration {
        version: next,
        name: "test_note",
        sql: "CREATE TABLE IF NOT EXISTS ehac.migration_probe (declaration_id String, note String DEFAULT '') ENGINE = MergeTree ORDER BY declaration_id",
        cluster_sql: Some(
            "CREATE TABLE IF NOT EXISTS ehac.migration_probe_local ON CLUSTER ${CLUSTER} (declaration_id String)\n\
             ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/ehac/migration_probe_local', '{replica}') ORDER BY declaration_id;\n\
             CREATE TABLE IF NOT EXISTS ehac.migration_probe ON CLUSTER ${CLUSTER} AS ehac.migration_probe_local\n\
             ENGINE = Distributed(${CLUSTER}, ehac, migration_probe_local);\n\
             ALTER TABLE ehac.migration_probe_local ON CLUSTER ${CLUSTER} ADD COLUMN note String DEFAULT '';\n\
             DROP TABLE IF EXISTS ehac.migration_probe ON CLUSTER ${CLUSTER};\n\
             CREATE TABLE IF NOT EXISTS ehac.migration_probe ON CLUSTER ${CLUSTER} AS ehac.migration_probe_local\n\
             ENGINE = Distributed(${CLUSTER}, ehac, migration_probe_local);\n",
        ),
    });
    assert_eq!(warehouse::migrate_these(&client, Some(&c.name), &migrations).await.unwrap(), vec!["test_note"]);
    assert!(warehouse::migrate_these(&client, Some(&c.name), &migrations).await.unwrap().is_empty());
    for replica in 0..2 {
        let columns = c.sql(replica, "SELECT table FROM system.columns WHERE database = 'ehac' AND name = 'note' ORDER BY table").await;
        assert_eq!(columns, "migration_probe\nmigration_probe_local\n", "replica {}", replica + 1);
        assert_eq!(c.sql(replica, &format!("SELECT count() FROM ehac.schema_migrations WHERE version = {next}")).await, "1\n");
    }

    // A migration without its cluster form is refused on a cluster, not run half-way.
    migrations.push(Migration { version: next + 1, name: "single_only", sql: "SELECT 1", cluster_sql: None });
    let refused = warehouse::migrate_these(&client, Some(&c.name), &migrations).await.unwrap_err().to_string();
    assert!(refused.contains("no cluster form"), "{refused}");
}

#[tokio::test]
async fn the_sink_writes_replica_one_and_analysts_read_every_row_on_replica_two_through_the_distributed_tables() {
    let c = cluster();
    let client_id = "kiosk-cluster-sink";
    let records = enriched(40, client_id, 11, chrono::Utc::now());
    let producer = ehac_stream::kafka::producer(&c.brokers).unwrap();
    for record in &records {
        let payload = ehac_codec::ENRICHED.encode(record).unwrap();
        let message = rdkafka::producer::FutureRecord::to(&c.topics.enriched).key(&record.raw.declaration_id).payload(&payload);
        producer.send(message, rdkafka::util::Timeout::Never).await.expect("acknowledged");
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    let kafka = KafkaArgs { kafka_brokers: c.brokers.clone(), topics: c.topics.clone() };
    let config = ehac_tests::sink_config(kafka, c.writer.clone(), AdminArgs::any_port());
    assert_eq!(config.clickhouse.clickhouse_cluster.as_deref(), Some(c.name.as_str()), "the sink is told it writes a cluster");
    let sink = tokio::spawn(ehac_sink::run(config, shutdown.clone()));

    let on_both = format!(
        "SELECT (SELECT count() FROM ehac.declarations_local WHERE client_id = '{client_id}'), \
                (SELECT count() FROM ehac_pii.identities_local WHERE declaration_id LIKE '{client_id}-%')"
    );
    assert_eq!(c.wait_for(0, &on_both, "40\t40").await, "40\t40", "written to replica 1");
    assert_eq!(c.wait_for(1, &on_both, "40\t40").await, "40\t40", "replicated to replica 2");
    shutdown.cancel();
    sink.await.unwrap().unwrap();

    // The names analysts know are Distributed tables over the shard: on replica 2 they see the
    // rows written to replica 1, and so do the standard queries.
    let through_distributed = format!(
        "SELECT count(), uniqExact(declaration_id), countIf(inserted_at > toDateTime('2020-01-01 00:00:00')) FROM ehac.declarations WHERE client_id = '{client_id}'"
    );
    assert_eq!(c.sql(1, &through_distributed).await, "40\t40\t40\n", "every row has the sink's inserted_at");
    for (name, sql) in warehouse::ANALYST_QUERIES {
        let sql = warehouse::analyst_query(sql, 1);
        let (ok, answer) = c.sql_as(1, WarehouseUser::Analyst, &sql).await;
        assert!(ok, "{name} as analyst on replica 2: {answer}");
        if *name != "rejections_by_code" {
            assert!(!answer.trim().is_empty(), "{name} found none of the rows written to replica 1");
        }
    }
    // The dedup window reads positions through the Distributed tables too.
    let positions = format!("SELECT count() FROM ehac.declaration_positions WHERE declaration_id LIKE '{client_id}-%'");
    assert_eq!(c.sql(1, &positions).await, "40\n");

    // A read the local replica does not serve goes to the other one as the cluster's user.
    let response = ehac_devstack::access::http_client(&c.secrets, WarehouseUser::Migrator)
        .post(format!("{}/?prefer_localhost_replica=0", c.replicas[1]))
        .body(format!("SELECT count() FROM ehac_pii.identities WHERE declaration_id LIKE '{client_id}-%'"))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "remote read: {}", response.text().await.unwrap());
}

#[tokio::test]
async fn every_replica_has_the_same_users_and_refuses_the_same_things() {
    let c = cluster();
    for replica in 0..2 {
        let r = replica + 1;
        let (ok, _) = c.sql_as(replica, WarehouseUser::Analyst, "SELECT count() FROM ehac.declarations").await;
        assert!(ok, "the analyst reads the analyst database on replica {r}");
        let (ok, error) = c.sql_as(replica, WarehouseUser::Analyst, "SELECT count() FROM ehac_pii.identities").await;
        assert!(!ok && error.contains("Code: 291"), "the analyst opened the identity database on replica {r}: {error}");
        let (ok, error) =
            c.sql_as(replica, WarehouseUser::Analyst, "INSERT INTO ehac.declarations_local (declaration_id) VALUES ('x')").await;
        assert!(!ok && error.contains("Code: 164"), "the analyst wrote on replica {r}: {error}");
        let (ok, answer) = c.sql_as(replica, WarehouseUser::Investigator, "SELECT count() FROM ehac_pii.identities").await;
        assert!(ok, "the investigator reads identity on replica {r}: {answer}");
        let (ok, error) = c
            .sql_as(
                replica,
                WarehouseUser::Writer,
                &format!("CREATE TABLE ehac.writer_was_here ON CLUSTER {} (x UInt8) ENGINE = Log", c.name),
            )
            .await;
        assert!(!ok && error.contains("Code: 392"), "the writer ran DDL on replica {r}: {error}");
        let (ok, error) = c.sql_as(replica, WarehouseUser::Writer, "DROP TABLE ehac.declarations_local").await;
        assert!(!ok && error.contains("Code: 392"), "the writer dropped a table on replica {r}: {error}");
        let anonymous = reqwest::Client::new().post(&c.replicas[replica]).body("SELECT 1").send().await.unwrap();
        assert!(!anonymous.status().is_success(), "replica {r} answered without a password");
    }
}

#[tokio::test]
async fn a_batch_sent_twice_seconds_apart_is_stored_once_on_both_replicas() {
    let c = cluster();
    let client_id = "kiosk-cluster-retry";
    let warehouse = ehac_sink::Warehouse::new(&c.writer);
    let received_at = chrono::Utc::now();
    let mut batch = ehac_sink::Batch::stamped_now();
    for (offset, record) in enriched(25, client_id, 21, received_at).into_iter().enumerate() {
        batch.push_declaration(record, 1_000 + offset as i64);
    }
    // The insert's answer was lost, say: the sink sends the same batch again.
    batch.insert(&warehouse, 2).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    batch.insert(&warehouse, 2).await.unwrap();

    let stored = format!(
        "SELECT (SELECT concat(toString(count()), '/', toString(uniqExact(declaration_id))) FROM ehac.declarations_local WHERE client_id = '{client_id}'), \
                (SELECT concat(toString(count()), '/', toString(uniqExact(declaration_id))) FROM ehac_pii.identities_local WHERE declaration_id LIKE '{client_id}-%')"
    );
    for replica in 0..2 {
        assert_eq!(c.wait_for(replica, &stored, "25/25\t25/25").await, "25/25\t25/25", "replica {}", replica + 1);
        c.replicated(replica).await;
        assert_eq!(c.sql(replica, &stored).await, "25/25\t25/25\n", "no FINAL: one copy of each row on replica {}", replica + 1);
    }

    // The same rows under another inserted_at are another block: nothing would drop them. This
    // is what `DEFAULT now()` did to every retry.
    let mut restamped = ehac_sink::Batch::new(batch.inserted_at() + 1);
    for (offset, record) in enriched(25, client_id, 21, received_at).into_iter().enumerate() {
        restamped.push_declaration(record, 1_000 + offset as i64);
    }
    restamped.insert(&warehouse, 2).await.unwrap();
    assert_eq!(c.wait_for(1, &stored, "50/25\t50/25").await, "50/25\t50/25", "a differing retry is not deduplicated");
}

#[tokio::test]
async fn reconciliation_writes_replica_one_and_every_replica_sees_the_answers() {
    let c = cluster();
    let client_id = "kiosk-cluster-reconcile";
    let warehouse = ehac_sink::Warehouse::new(&c.writer);
    let mut batch = ehac_sink::Batch::stamped_now();
    let citizens: Vec<EnrichedDeclaration> =
        enriched(60, client_id, 31, chrono::Utc::now()).into_iter().filter(|d| d.raw.form.traveller.nik.is_some()).collect();
    assert!(citizens.len() >= 10, "the sample has citizens");
    let n = citizens.len();
    for (offset, record) in citizens.into_iter().enumerate() {
        batch.push_declaration(record, 5_000 + offset as i64);
    }
    batch.insert(&warehouse, 3).await.unwrap();

    let mut simulator = std::process::Command::new(env!("CARGO_BIN_EXE_registry-sim"))
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("registry simulator starts");
    let port = ehac_devstack::bound_port(&mut simulator, Duration::from_secs(20)).await.expect("the registry simulator listens");
    let registry = ehac_registry::RegistryArgs {
        registry_url: Some(format!("http://127.0.0.1:{port}")),
        registry_timeout_ms: 5_000,
        registry_breaker_failures: 3,
        registry_breaker_cooldown_ms: 1_000,
    };
    let verifier = registry.verifier(&prometheus::Registry::new()).unwrap().unwrap();
    let report = ehac_registry::reconcile::run_once(&c.writer, &verifier, 250, "test").await;
    let _ = simulator.kill();
    let _ = simulator.wait();
    let report = report.unwrap();
    assert!(report.stopped.is_none(), "{}", report.line());

    // The answers were written to replica 1's local table and replicated; the view reads them
    // through the Distributed tables on replica 2.
    let answered = format!(
        "SELECT count() FROM ehac.verifications_local WHERE declaration_id IN (SELECT declaration_id FROM ehac.declarations_local WHERE client_id = '{client_id}')"
    );
    assert_eq!(c.wait_for(1, &answered, &n.to_string()).await, n.to_string(), "replica 2 has every answer");
    let still_pending = format!(
        "SELECT count() FROM ehac.declaration_verification WHERE status = 'pending' AND declaration_id IN (SELECT declaration_id FROM ehac.declarations WHERE client_id = '{client_id}')"
    );
    assert_eq!(c.sql(1, &still_pending).await, "0\n");
}
