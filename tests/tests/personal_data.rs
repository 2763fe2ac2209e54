//! Personal data apart, on the real ClickHouse 26.9 and Apache Kafka of the dev stack: who can read what (the access matrix), the traveller key, small-count suppression and
//! a pepper that appears nowhere but in its file.
//!
//! Every declaration this binary posts travels on one of two trips (`TRIP_A`, `TRIP_B`), so the
//! cells of the published tables are known: trip A's port and day hold all but three
//! travellers, trip B's hold three, which the standard queries must suppress.

use std::collections::BTreeSet;
use std::time::Duration;

use ehac_devstack::WarehouseUser;
use ehac_domain::sample::Flaw;
use ehac_domain::{DeclarationForm, Pepper, TravellerIdentity};
use ehac_stream::warehouse::{analyst_query, ANALYST_QUERIES, DEFAULT_SUPPRESS_BELOW};
use ehac_tests::{declarations, pipeline, unique_client, Pipeline};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message};
use tokio::sync::Mutex;

const PATIENCE: Duration = Duration::from_secs(90);

/// The tests of this binary share the data; each waits for the ones before it to have landed.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// Two trips from the sample generator, arriving at different ports.
fn trips() -> (DeclarationForm, DeclarationForm) {
    let forms = declarations(200, "trips", Flaw::None, 41);
    let a = forms[0].clone();
    let b = forms.iter().find(|f| f.trip.arrival_port != a.trip.arrival_port).expect("another arrival port").clone();
    (a, b)
}

/// `n` sample travellers (seeded) on the trip of `template`, submitted by `client`.
fn on_trip(template: &DeclarationForm, n: usize, client: &str, seed: u64) -> Vec<DeclarationForm> {
    declarations(n, client, Flaw::None, seed)
        .into_iter()
        .map(|mut form| {
            form.trip = template.trip.clone();
            form.submitted_at = template.submitted_at.clone();
            form
        })
        .collect()
}

async fn post_all(p: &Pipeline, forms: &[DeclarationForm]) -> Vec<String> {
    let mut ids = Vec::new();
    for form in forms {
        let (status, body) = p.post(serde_json::to_vec(form).unwrap()).await;
        assert_eq!(status, 202, "{body}");
        ids.push(body["declaration_id"].as_str().unwrap().to_owned());
    }
    ids
}

/// Waits until every id has its row in both databases.
async fn wait_stored(p: &Pipeline, ids: &[String]) {
    let list = ids.iter().map(|id| format!("'{id}'")).collect::<Vec<_>>().join(",");
    let sql = format!(
        "SELECT least((SELECT uniqExact(declaration_id) FROM ehac.declarations WHERE declaration_id IN ({list})),
                      (SELECT uniqExact(declaration_id) FROM ehac_pii.identities WHERE declaration_id IN ({list})))"
    );
    assert_eq!(p.wait_for_count(&sql, ids.len() as u64, PATIENCE).await, ids.len() as u64, "stored in both databases");
}

/// ClickHouse's error code in an answer, e.g. 497 for ACCESS_DENIED.
fn code(answer: &str) -> Option<u32> {
    let rest = answer.strip_prefix("Code: ")?;
    rest[..rest.find(|c: char| !c.is_ascii_digit())?].parse().ok()
}

async fn allowed(p: &Pipeline, user: WarehouseUser, sql: &str) -> String {
    let (ok, answer) = p.sql_as(user, sql).await;
    assert!(ok, "{} must be allowed: {sql}\n{answer}", user.name());
    answer
}

/// Rebuilds the analysts' microdata now, as the migrator (it is rebuilt on a schedule).
async fn publish_microdata(p: &Pipeline) {
    let migrator = ehac_stream::warehouse::client(&p.clickhouse_as(WarehouseUser::Migrator));
    ehac_stream::warehouse::publish_microdata(&migrator).await.expect("rebuilding the microdata");
}

/// Data on the two trips: 25 travellers on A, 3 on B. Done once, by whichever test comes first.
async fn seed_data(p: &Pipeline) {
    static SEEDED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    SEEDED
        .get_or_init(|| async {
            let (a, b) = trips();
            let client = unique_client("pii-seed");
            let mut ids = post_all(p, &on_trip(&a, 25, &client, 42)).await;
            ids.extend(post_all(p, &on_trip(&b, 3, &client, 43)).await);
            wait_stored(p, &ids).await;
        })
        .await;
}

/// The access matrix of `schemas/clickhouse/access.sql`, enforced by the stack's ClickHouse 26.9
/// on real logins over HTTP: each user with its own password, its grants from the same file.
/// Codes: 497 ACCESS_DENIED (no grant; checked before readonly), 164 READONLY (the profile's
/// readonly, for SET), 452 a constraint of the profile, 47 unknown identifier (the column is not in the analyst database at all).
#[tokio::test]
async fn the_access_matrix_holds_for_every_user_on_real_logins() {
    let p = pipeline();
    let _serial = SERIAL.lock().await;
    seed_data(p).await;
    use WarehouseUser::*;
    let mut m = Matrix { p, violations: Vec::new(), checked: 0 };
    let version = m.allowed(Analyst, "SELECT version()").await;
    assert!(version.trim().starts_with("26."), "the stack's ClickHouse: {version}");

    // analyst: the analyst database, read-only; nothing of the identity database, however asked.
    for sql in [
        "SELECT nik FROM ehac_pii.identities",
        "SELECT * FROM ehac_pii.identities",
        "SELECT * FROM ehac_pii.rejected_payloads",
        "SELECT count() FROM ehac_pii.identity_positions",
        "SELECT d.declaration_id FROM ehac.declarations AS d ANY INNER JOIN (SELECT declaration_id FROM ehac_pii.identities) AS i USING (declaration_id)",
        "SELECT count() FROM ehac.declarations WHERE declaration_id IN (SELECT declaration_id FROM ehac_pii.identities)",
        "SELECT (SELECT any(full_name) FROM ehac_pii.identities)",
        "WITH named AS (SELECT full_name FROM ehac_pii.identities) SELECT * FROM named",
    ] {
        m.refused(Analyst, sql, 497).await;
    }
    // merge() over the identity database, or the declarations, finds no table the analyst may
    // see (636).
    m.refused(Analyst, "SELECT * FROM merge('ehac_pii', '.*')", 636).await;
    m.refused(Analyst, "SELECT * FROM merge('ehac', '^declarations$')", 636).await;
    // No identifying column is left in the analyst database (the epidemiologist, who reads its
    // rows, finds none), and the analyst may not read its rows at all.
    for column in ["nik", "passport_number", "full_name", "date_of_birth", "phone", "email", "seat", "destination_street"] {
        m.refused(Epidemiologist, &format!("SELECT {column} FROM ehac.declarations"), 47).await;
        m.refused(Analyst, &format!("SELECT {column} FROM ehac.declarations"), 497).await;
    }
    m.refused(Analyst, "SELECT payload FROM ehac.rejections", 47).await;
    // Table functions that would reach around the grants: another server, a URL, a file.
    let native = p.clickhouse_url.replace("http://", "");
    for sql in [
        format!("SELECT * FROM remote('{native}', ehac_pii.identities)"),
        "SELECT * FROM url('http://127.0.0.1:1/x', 'TSV', 'a String')".to_owned(),
        "SELECT * FROM file('/etc/passwd', 'LineAsString')".to_owned(),
        "SELECT * FROM cluster('loopback', ehac_pii.identities)".to_owned(),
    ] {
        m.refused(Analyst, &sql, 497).await;
    }
    // No writes and no views of its own (no grant: 497), no SET to lift the limits (readonly: 164).
    m.refused(Analyst, "INSERT INTO ehac.verifications (declaration_id) VALUES ('x')", 497).await;
    m.refused(Analyst, "CREATE VIEW ehac.names AS SELECT full_name FROM ehac_pii.identities", 497).await;
    m.refused(Analyst, "CREATE TABLE ehac.copy (a UInt8) ENGINE = Memory", 497).await;
    // readonly = 2 (ClickHouse's web pages send settings), the limits constraints (452).
    m.refused(Analyst, "SET max_result_rows = 0", 452).await;
    m.refused(Analyst, "SELECT 1 SETTINGS max_execution_time = 0", 452).await;
    m.refused(Analyst, "SET readonly = 0", 164).await;
    // Other users' query text is not the analyst's to read.
    m.refused(Analyst, "SELECT query FROM system.processes", 497).await;
    m.refused(Analyst, "SELECT query FROM system.query_log", 497).await;
    // Result limits of the analyst profile (100,000 rows), which SET cannot lift.
    // (The answer buffered whole, so the overflow is the HTTP error, not a stream cut short.)
    let response = ehac_devstack::access::http_client(&p.secrets, Analyst)
        .post(format!("{}/?wait_end_of_query=1", p.clickhouse_url))
        .body("SELECT number FROM numbers(200000)")
        .send()
        .await
        .unwrap();
    let (ok, answer) = (response.status().is_success(), response.text().await.unwrap());
    assert!(!ok && answer.contains("Limit for result"), "{answer}");
    // Even the catalogue hides the identity database's tables and columns from the analyst.
    let listed = m.allowed(Analyst, "SELECT count() FROM system.columns WHERE database = 'ehac_pii'").await;
    assert_eq!(listed.trim(), "0", "system.columns lists ehac_pii to the analyst");
    // Every standard query runs as analyst.
    for (name, sql) in ANALYST_QUERIES {
        let (ok, answer) = p.sql_as(Analyst, &analyst_query(sql, DEFAULT_SUPPRESS_BELOW)).await;
        assert!(ok, "{name} as analyst: {answer}");
    }
    // The analyst reads the published counts, the k-anonymous microdata and rejection codes...
    for table in PUBLISHED_TO_ANALYSTS {
        m.allowed(Analyst, &format!("SELECT * FROM ehac.{table} LIMIT 5")).await;
    }
    m.allowed(Analyst, "SELECT error_codes, error_fields, rejected_at FROM ehac.rejections LIMIT 5").await;
    // ...and nothing row by row that could single a traveller out: not the declarations (their
    // traveller key least of all), not the rollup's raw counts, not which declaration was
    // rejected or verified.
    for sql in [
        "SELECT uniqExact(traveller_key), count() FROM ehac.declarations",
        "SELECT count() FROM ehac.declarations",
        "SELECT arrival_port, age_years, home_district_code, flight_number FROM ehac.declarations",
        "SELECT sum(declarations) FROM ehac.arrival_counts",
        "SELECT * FROM ehac.declaration_verification",
        "SELECT count() FROM ehac.verifications",
        "SELECT count() FROM ehac.declaration_positions",
        "SELECT declaration_id FROM ehac.rejections",
        "SELECT client_id FROM ehac.rejections",
        "SELECT m.triage FROM ehac.arrivals_microdata AS m ANY INNER JOIN ehac.declarations AS d USING (arrival_port)",
    ] {
        m.refused(Analyst, sql, 497).await;
    }

    // epidemiologist: the analyst database row by row (pseudonymised), read-only, no identity,
    // and every query kept in the query log, which it cannot turn off.
    m.allowed(Epidemiologist, "SELECT uniqExact(traveller_key), count() FROM ehac.declarations").await;
    m.allowed(Epidemiologist, "SELECT sum(declarations) FROM ehac.arrival_counts").await;
    m.allowed(Epidemiologist, "SELECT count() FROM ehac.arrivals_microdata").await;
    for sql in [
        "SELECT nik FROM ehac_pii.identities",
        "SELECT count() FROM ehac_pii.identities",
        "SELECT * FROM ehac_pii.rejected_payloads",
        "INSERT INTO ehac.verifications (declaration_id) VALUES ('x')",
        "DROP TABLE ehac.declarations",
        "SELECT query FROM system.query_log",
    ] {
        m.refused(Epidemiologist, sql, 497).await;
    }
    m.refused(Epidemiologist, "SET log_queries = 0", 164).await;
    for user in [Epidemiologist, Investigator] {
        let marker = unique_client("audited-read");
        m.allowed(user, &format!("SELECT count() FROM ehac.declarations WHERE client_id != '{marker}'")).await;
        let logged = format!(
            "SELECT count() FROM system.query_log WHERE user = '{}' AND type = 'QueryFinish' AND query LIKE '%{marker}%' AND query NOT LIKE '%system.query_log%'",
            user.name()
        );
        let mut found = String::new();
        for _ in 0..120 {
            found = m.allowed(Migrator, &logged).await;
            if found.trim() == "1" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert_eq!(found.trim(), "1", "{}'s query is not in system.query_log", user.name());
    }

    // investigator: both databases, read-only.
    let rows = m.allowed(Investigator, "SELECT count() FROM ehac_pii.identities WHERE full_name != '' AND phone != ''").await;
    assert!(rows.trim().parse::<u64>().unwrap() >= 28, "{rows}");
    m.allowed(Investigator, "SELECT count() FROM ehac_pii.rejected_payloads").await;
    m.allowed(Investigator, "SELECT count() FROM ehac.declarations").await;
    m.refused(Investigator, "INSERT INTO ehac_pii.identities (declaration_id) VALUES ('x')", 497).await;
    m.refused(Investigator, "DROP TABLE ehac_pii.identities", 497).await;

    // writer: inserts what the sink writes and reads back only the positions its dedup window
    // needs; no identity, no analyst rows, no DDL.
    for table in
        ["ehac.declaration_positions", "ehac.rejection_positions", "ehac_pii.identity_positions", "ehac_pii.rejected_payload_positions"]
    {
        m.allowed(Writer, &format!("SELECT count() FROM {table}")).await;
    }
    for sql in [
        "SELECT count() FROM ehac_pii.identities",
        "SELECT nik FROM ehac_pii.identities",
        "SELECT count() FROM ehac_pii.rejected_payloads",
        "SELECT count() FROM ehac.declarations",
        "SELECT count() FROM ehac.verifications",
        "CREATE TABLE ehac.copy (a UInt8) ENGINE = Memory",
        "DROP TABLE ehac_pii.identities",
        "ALTER TABLE ehac.declarations DROP COLUMN triage",
        "CREATE DATABASE elsewhere",
        "INSERT INTO ehac.verifications (declaration_id) VALUES ('x')",
    ] {
        m.refused(Writer, sql, 497).await;
    }

    // reconciler: the pending citizens' NIK and birth date, the verification answers.
    m.allowed(Reconciler, "SELECT declaration_id, nik, date_of_birth FROM ehac_pii.identities LIMIT 1").await;
    m.allowed(Reconciler, "SELECT count() FROM ehac.declarations WHERE verification_status = 'pending'").await;
    m.allowed(Reconciler, "SELECT count() FROM ehac.verifications").await;
    for sql in [
        "SELECT full_name FROM ehac_pii.identities",
        "SELECT phone FROM ehac_pii.identities",
        "SELECT * FROM ehac_pii.identities",
        "SELECT count() FROM ehac_pii.rejected_payloads",
        "SELECT arrival_port FROM ehac.declarations",
        "DROP TABLE ehac.verifications",
    ] {
        m.refused(Reconciler, sql, 497).await;
    }

    // default: the server's own session runs as it, so it logs in without a password, but it
    // may only start listeners: no table, no catalogue of users, no other users' queries.
    for sql in [
        "SELECT count() FROM ehac_pii.identities",
        "SELECT count() FROM ehac.declarations",
        "SELECT name FROM system.users",
        "SELECT query FROM system.processes",
        "SELECT * FROM file('/etc/passwd', 'LineAsString')",
        "CREATE DATABASE elsewhere",
    ] {
        m.refused(Default, sql, 497).await;
    }
    // A wrong password is refused (516 AUTHENTICATION_FAILED).
    let response = reqwest::Client::new()
        .post(&p.clickhouse_url)
        .header("X-ClickHouse-User", "analyst")
        .header("X-ClickHouse-Key", "guess")
        .body("SELECT 1")
        .send()
        .await
        .unwrap();
    let answer = response.text().await.unwrap();
    assert_eq!(code(&answer), Some(516), "{answer}");

    // migrator: DDL (ehac migrate ran as it; a second run applies nothing).
    m.allowed(Migrator, "CREATE TABLE IF NOT EXISTS ehac_pii.migrator_probe (a UInt8) ENGINE = Memory").await;
    m.allowed(Migrator, "DROP TABLE ehac_pii.migrator_probe").await;
    assert!(m.violations.is_empty(), "{} of {} checks broke the matrix:\n{}", m.violations.len(), m.checked, m.violations.join("\n"));
    println!("access matrix: {} checks held", m.checked);
}

/// What the analyst may read of the analyst database, besides rejection codes.
const PUBLISHED_TO_ANALYSTS: [&str; 8] = [
    "published_arrivals_by_port_day",
    "published_arrivals_by_hour",
    "published_triage_by_port",
    "published_arrivals_by_home_province",
    "published_arrivals_by_departure_country",
    "published_arrivals_by_channel",
    "published_verification_by_status",
    "arrivals_microdata",
];

/// The access matrix's checks, every broken one kept so that a run shows them all.
struct Matrix<'a> {
    p: &'a Pipeline,
    violations: Vec<String>,
    checked: usize,
}

impl Matrix<'_> {
    async fn refused(&mut self, user: WarehouseUser, sql: &str, expected_code: u32) {
        self.checked += 1;
        let (ok, answer) = self.p.sql_as(user, sql).await;
        if ok || code(&answer) != Some(expected_code) {
            self.violations.push(format!("{} must be refused with {expected_code}: {sql}\n  got: {}", user.name(), answer.trim()));
        }
    }

    async fn allowed(&mut self, user: WarehouseUser, sql: &str) -> String {
        self.checked += 1;
        let (ok, answer) = self.p.sql_as(user, sql).await;
        if !ok {
            self.violations.push(format!("{} must be allowed: {sql}\n  got: {}", user.name(), answer.trim()));
        }
        answer
    }
}

#[tokio::test]
async fn small_counts_are_suppressed_in_the_published_tables() {
    let p = pipeline();
    let _serial = SERIAL.lock().await;
    seed_data(p).await;
    let (a, b) = trips();
    // The whole table, not only its top ten: other tests of this binary add busier days.
    let by_port = ANALYST_QUERIES.iter().find(|(name, _)| *name == "arrivals_by_port").unwrap().1.replace("\nLIMIT 10", "");
    let by_port = by_port.as_str();

    // arrival_port, port_name, arrival_date, travellers, international, suppressed_cells
    let rows = |answer: String| -> Vec<Vec<String>> { answer.lines().map(|l| l.split('\t').map(str::to_owned).collect()).collect() };
    let published = rows(allowed(p, WarehouseUser::Analyst, &analyst_query(by_port, DEFAULT_SUPPRESS_BELOW)).await);
    let small = published.iter().find(|r| r[0] == b.trip.arrival_port).unwrap_or_else(|| panic!("trip B's port in {published:?}"));
    assert_eq!(small[3], "\\N", "3 travellers are published as NULL: {small:?}");
    assert!(small[5].parse::<u32>().unwrap() >= 1, "and the row says a cell was suppressed: {small:?}");
    let big = published.iter().find(|r| r[0] == a.trip.arrival_port).unwrap();
    assert!(big[3].parse::<u32>().unwrap() >= 25, "a cell of 25 or more is published: {big:?}");

    // Every published count is NULL, 0 or at least the threshold, in every standard query.
    for (name, sql) in ANALYST_QUERIES.iter().filter(|(name, _)| *name != "rejections_by_code") {
        let answer = allowed(p, WarehouseUser::Analyst, &analyst_query(sql, DEFAULT_SUPPRESS_BELOW)).await;
        for row in rows(answer) {
            let counts = &row[..row.len() - 1];
            for cell in counts.iter().filter_map(|c| c.parse::<u64>().ok()) {
                assert!(cell == 0 || cell >= DEFAULT_SUPPRESS_BELOW as u64 || name.contains("province"), "{name}: {row:?}");
            }
        }
    }

    // The threshold can be raised, never lowered below the published views' 11: at 2, trip B's
    // 3 travellers stay NULL; at 1000, trip A's cell is NULL too.
    let published = rows(allowed(p, WarehouseUser::Analyst, &analyst_query(by_port, 2)).await);
    let small = published.iter().find(|r| r[0] == b.trip.arrival_port).unwrap();
    assert_eq!(small[3], "\\N", "{small:?}");
    let published = rows(allowed(p, WarehouseUser::Analyst, &analyst_query(by_port, 1000)).await);
    let big = published.iter().find(|r| r[0] == a.trip.arrival_port).unwrap();
    assert_eq!((big[3].as_str(), big[5].parse::<u32>().unwrap() >= 1), ("\\N", true), "{big:?}");
}

/// The quasi-identifiers of `ehac.arrivals_microdata`: what someone who knows a traveller could
/// know of her trip. Every other column of the view is an attribute (`MICRODATA_ATTRIBUTES`).
const QUASI_IDENTIFIERS: &str = "arrival_date, arrival_port, domestic, citizen, home_province, age_band, sex";
const MICRODATA_ATTRIBUTES: &str =
    "fever, cough, shortness_of_breath, contact_with_case, vaccination_doses, test_kind, test_result, triage, verification_status";

/// Rows of `table` whose quasi-identifier combination is held by fewer than 11 rows.
fn rows_in_small_groups(table: &str) -> String {
    format!(
        "SELECT ifNull(sum(n), 0) FROM (SELECT count() AS n FROM {table} GROUP BY {QUASI_IDENTIFIERS} HAVING n < {DEFAULT_SUPPRESS_BELOW})"
    )
}

/// `n` sample citizens who share `template`'s district, birth date and sex (their NIKs differ
/// only in the serial), on `trip`'s flight: one quasi-identifier group of `n` travellers.
fn a_crowd(template: &DeclarationForm, trip: &DeclarationForm, n: u32) -> Vec<DeclarationForm> {
    let nik = template.traveller.nik.clone().expect("a citizen");
    (1..=n)
        .map(|serial| {
            let mut form = template.clone();
            form.traveller.nik = Some(format!("{}{:04}", &nik[..12], 9000 + serial));
            form.traveller.full_name = format!("{} {serial}", form.traveller.full_name);
            form.trip = trip.trip.clone();
            form.submitted_at = trip.submitted_at.clone();
            form
        })
        .collect()
}

/// The analyst's microdata cannot single a traveller out: as the analyst, no row of
/// `ehac.arrivals_microdata` has a quasi-identifier combination held by fewer than 11
/// declarations, after an ordinary load and after one built to break it (a crowd of 15 alike
/// at a busy port beside a very old traveller and a rare nationality at a small airport),
/// while the same grouping of the raw rows (the epidemiologist's) is full of such rows.
#[tokio::test]
async fn no_quasi_identifier_group_of_the_analysts_microdata_holds_fewer_than_eleven() {
    let p = pipeline();
    let _serial = SERIAL.lock().await;
    seed_data(p).await;
    use WarehouseUser::{Analyst, Epidemiologist};
    let raw = format!("SELECT {QUASI_IDENTIFIERS} FROM (SELECT *, nationality = 'IDN' AS citizen FROM ehac.declarations)");
    let count = |answer: String| answer.trim().parse::<u64>().unwrap_or_else(|_| panic!("a count: {answer}"));

    // The view's columns are the quasi-identifiers and the attributes, nothing else.
    let columns =
        allowed(p, Analyst, "SELECT name FROM system.columns WHERE database = 'ehac' AND table = 'arrivals_microdata' ORDER BY position")
            .await;
    let expected: Vec<&str> = QUASI_IDENTIFIERS.split(", ").chain(MICRODATA_ATTRIBUTES.split(", ")).collect();
    assert_eq!(columns.lines().collect::<Vec<_>>(), expected);

    // An ordinary load: sample declarations over the generator's ports and days.
    let client = unique_client("k-anon-ordinary");
    let ids = post_all(p, &declarations(300, &client, Flaw::None, 61)).await;
    wait_stored(p, &ids).await;
    let exposed = count(allowed(p, Epidemiologist, &rows_in_small_groups(&format!("({raw})"))).await);
    assert!(exposed >= 250, "the raw rows single travellers out ({exposed} in groups under 11): the check below means something");
    publish_microdata(p).await;
    assert_eq!(count(allowed(p, Analyst, &rows_in_small_groups("ehac.arrivals_microdata")).await), 0, "after an ordinary load");

    // A load built to break it. A crowd of 15 alike on trip A, which the view must publish; a
    // traveller of 101 and a rare nationality on a trip to a small airport, and the crowd's
    // twin of the other sex on trip A, which it must not.
    let (a, _) = trips();
    let forms = declarations(100, &unique_client("k-anon-skew"), Flaw::None, 62);
    let citizen = forms.iter().find(|f| f.traveller.nik.is_some()).unwrap().clone();
    let crowd = a_crowd(&citizen, &a, 15);
    let mut small_airport = forms.iter().find(|f| f.trip.arrival_port != "LBJ" && f.trip.departure_port != "LBJ").unwrap().clone();
    small_airport.trip.arrival_port = "LBJ".to_owned();
    let mut very_old = small_airport.clone();
    very_old.traveller = citizen.traveller.clone();
    let nik = citizen.traveller.nik.clone().unwrap();
    very_old.traveller.date_of_birth = format!("1925{}", &citizen.traveller.date_of_birth[4..]);
    very_old.traveller.nik = Some(format!("{}25{}", &nik[..10], &nik[12..]));
    let mut rare = small_airport.clone();
    rare.traveller = forms.iter().find(|f| f.traveller.passport_number.is_some()).unwrap().traveller.clone();
    rare.traveller.nationality = Some("ISL".to_owned());
    rare.traveller.passport_mrz = None;
    let mut twin = a_crowd(&citizen, &a, 1).remove(0);
    let other_sex = match twin.traveller.sex {
        Some(ehac_domain::form::Sex::Female) => ehac_domain::form::Sex::Male,
        _ => ehac_domain::form::Sex::Female,
    };
    let day: u32 = nik[6..8].parse().unwrap();
    let twin_day = if day > 40 { day - 40 } else { day + 40 };
    twin.traveller.sex = Some(other_sex);
    twin.traveller.nik = Some(format!("{}{twin_day:02}{}", &nik[..6], &nik[8..]));
    let skew: Vec<DeclarationForm> = crowd.iter().cloned().chain([very_old, rare, twin]).collect();
    let ids = post_all(p, &skew).await;
    wait_stored(p, &ids).await;

    let list = ids.iter().map(|id| format!("'{id}'")).collect::<Vec<_>>().join(",");
    let skewed_groups = allowed(
        p,
        Epidemiologist,
        &format!("SELECT count() FROM ({raw} WHERE declaration_id IN ({list})) GROUP BY {QUASI_IDENTIFIERS} ORDER BY count()"),
    )
    .await;
    assert_eq!(skewed_groups.split_whitespace().collect::<Vec<_>>(), ["1", "1", "1", "15"], "the skew is stored as built");
    publish_microdata(p).await;
    assert_eq!(count(allowed(p, Analyst, &rows_in_small_groups("ehac.arrivals_microdata")).await), 0, "after a skewed load");
    let at_small_airport = count(allowed(p, Analyst, "SELECT count() FROM ehac.arrivals_microdata WHERE arrival_port = 'LBJ'").await);
    assert_eq!(at_small_airport, 0, "the very old traveller and the rare nationality are not published");
    let crowd_group = allowed(
        p,
        Epidemiologist,
        &format!("SELECT home_province, age_band, sex FROM ehac.declarations WHERE declaration_id = '{}' FORMAT TSV", ids[0]),
    )
    .await;
    let [province, band, sex] = <[&str; 3]>::try_from(crowd_group.trim().split('\t').collect::<Vec<_>>()).unwrap();
    let crowd_published = count(
        allowed(
            p,
            Analyst,
            &format!(
                "SELECT count() FROM ehac.arrivals_microdata WHERE arrival_port = '{}' AND citizen = 1 AND home_province = '{province}' AND age_band = '{band}' AND sex = '{sex}'",
                a.trip.arrival_port
            ),
        )
        .await,
    );
    assert!(crowd_published >= 15, "the crowd of 15 is published ({crowd_published} rows)");
    println!("k-anonymity: {exposed} raw rows in quasi-identifier groups under 11 (as the epidemiologist), 0 in the analyst's microdata; {crowd_published} crowd rows published");
}

#[tokio::test]
async fn one_traveller_has_one_key_across_trips_and_another_pepper_gives_another_key() {
    let p = pipeline();
    let _serial = SERIAL.lock().await;
    seed_data(p).await;
    let (a, _) = trips();
    let client = unique_client("pii-key");
    let mut forms = on_trip(&a, 40, &client, 44);
    let citizen = forms.iter().position(|f| f.traveller.nik.is_some()).expect("a citizen");
    let foreigner = forms.iter().position(|f| f.traveller.passport_number.is_some()).expect("a foreigner");
    // The same traveller again, on the return leg as far as the key is concerned: another
    // declaration (another id) staying at another address.
    let trips_of = |who: usize| {
        let mut second = forms[who].clone();
        second.destination_address.street = format!("{} (second trip)", second.destination_address.street);
        second
    };
    let again = [trips_of(citizen), trips_of(foreigner)];
    forms = vec![forms[citizen].clone(), again[0].clone(), forms[foreigner].clone(), again[1].clone()];
    let ids = post_all(p, &forms).await;
    wait_stored(p, &ids).await;

    let key_of = |id: &str| format!("SELECT DISTINCT traveller_key, pepper_version FROM ehac.declarations WHERE declaration_id = '{id}'");
    let mut keys = Vec::new();
    for id in &ids {
        keys.push(allowed(p, WarehouseUser::Epidemiologist, &key_of(id)).await.trim().to_owned());
    }
    assert_eq!(keys[0], keys[1], "one citizen on two trips: one key");
    assert_eq!(keys[2], keys[3], "one foreigner on two trips: one key");
    assert_ne!(keys[0], keys[2]);

    // The key is HMAC-SHA256 under the stack's pepper, version 1, and the identity row agrees.
    let pepper = p.pepper.pepper().unwrap();
    let nik = forms[0].traveller.nik.clone().unwrap();
    let expected = pepper.traveller_key(&TravellerIdentity::citizen(&nik));
    assert_eq!(keys[0], format!("{expected}\t1"));
    let identity_key = allowed(
        p,
        WarehouseUser::Investigator,
        &format!("SELECT traveller_key FROM ehac_pii.identities WHERE declaration_id = '{}'", ids[0]),
    )
    .await;
    assert_eq!(identity_key.trim(), expected);
    // Another pepper: another key for the same NIK (no link across peppers, nor without one).
    let other = Pepper::new(2, b"a different pepper of thirty-two bytes or more").unwrap();
    assert_ne!(other.traveller_key(&TravellerIdentity::citizen(&nik)), expected);
    // Epidemiologists count travellers, not trips.
    let list = ids.iter().map(|id| format!("'{id}'")).collect::<Vec<_>>().join(",");
    let counted = allowed(
        p,
        WarehouseUser::Epidemiologist,
        &format!("SELECT count(), uniqExact(traveller_key) FROM ehac.declarations WHERE declaration_id IN ({list})"),
    )
    .await;
    assert_eq!(counted.trim(), "4\t2");

    // `ehac lookup` finds the citizen's two trips by NIK, as investigator, and not as analyst.
    let case = unique_client("case");
    let lookup = |user| ehac_cli::lookup::LookupArgs {
        clickhouse: p.clickhouse_as(user),
        pepper: p.pepper.clone(),
        nik: Some(nik.clone()),
        passport: None,
        nationality: None,
        investigator: "Dr. Ratna Sari".to_owned(),
        case_reference: case.clone(),
    };
    let found = ehac_cli::lookup::lookup(&lookup(WarehouseUser::Investigator)).await.unwrap();
    let found_ids: BTreeSet<&str> = found.iter().map(|d| d.declaration_id.as_str()).collect();
    assert_eq!(found_ids, BTreeSet::from([ids[0].as_str(), ids[1].as_str()]));
    assert!(found.iter().all(|d| d.full_name == forms[0].traveller.full_name && d.arrival_port == a.trip.arrival_port), "{found:?}");
    let denied = ehac_cli::lookup::lookup(&lookup(WarehouseUser::Analyst)).await.unwrap_err();
    assert!(format!("{denied:#}").contains("Code: 497"), "{denied:#}");
    // The lookup left its audit row: who, which case, which traveller, how many came back.
    let audit = format!(
        "SELECT investigator, clickhouse_user, traveller_key, pepper_version, declarations_returned, read_at > now() - 600 FROM ehac_pii.identity_reads WHERE case_reference = '{case}'"
    );
    assert_eq!(p.sql(&audit).await.trim(), format!("Dr. Ratna Sari\tinvestigator\t{expected}\t1\t2\t1"));
    // A lookup without an investigator's name or a case reference is refused before any read.
    for (investigator, case_reference) in [("", case.as_str()), ("Dr. Ratna Sari", " ")] {
        let unnamed = ehac_cli::lookup::LookupArgs {
            investigator: investigator.to_owned(),
            case_reference: case_reference.to_owned(),
            ..lookup(WarehouseUser::Investigator)
        };
        let refused = ehac_cli::lookup::lookup(&unnamed).await.unwrap_err();
        assert!(format!("{refused:#}").contains("every read of identity is audited"), "{refused:#}");
    }
    assert_eq!(p.sql(&format!("SELECT count() FROM ehac_pii.identity_reads WHERE case_reference = '{case}'")).await.trim(), "1");
    // The audit is append-only for investigators: no rewriting, deleting or dropping it.
    for sql in [
        format!("ALTER TABLE ehac_pii.identity_reads UPDATE investigator = 'nobody' WHERE case_reference = '{case}'"),
        format!("ALTER TABLE ehac_pii.identity_reads DELETE WHERE case_reference = '{case}'"),
        format!("DELETE FROM ehac_pii.identity_reads WHERE case_reference = '{case}'"),
        "ALTER TABLE ehac_pii.identity_reads DROP PARTITION tuple()".to_owned(),
        "ALTER TABLE ehac_pii.identity_reads DROP COLUMN investigator".to_owned(),
        "TRUNCATE TABLE ehac_pii.identity_reads".to_owned(),
        "DROP TABLE ehac_pii.identity_reads".to_owned(),
        "RENAME TABLE ehac_pii.identity_reads TO ehac_pii.gone".to_owned(),
        "INSERT INTO ehac_pii.identities (declaration_id) VALUES ('x')".to_owned(),
    ] {
        let (ok, answer) = p.sql_as(WarehouseUser::Investigator, &sql).await;
        assert!(!ok && code(&answer) == Some(497), "the investigator must be refused: {sql}\n{answer}");
    }
    // Nor lift its limits or its query log.
    for sql in ["SET log_queries = 0", "SELECT 1 SETTINGS log_queries = 0", "SELECT 1 SETTINGS max_result_rows = 0"] {
        let (ok, answer) = p.sql_as(WarehouseUser::Investigator, sql).await;
        assert!(!ok && answer.contains("SETTING_CONSTRAINT_VIOLATION"), "{sql}: {answer}");
    }
    assert_eq!(p.sql(&format!("SELECT count() FROM ehac_pii.identity_reads WHERE case_reference = '{case}'")).await.trim(), "1");
    // By passport and nationality.
    let traveller = &forms[2].traveller;
    let by_passport = ehac_cli::lookup::LookupArgs {
        nik: None,
        passport: traveller.passport_number.clone(),
        nationality: traveller.nationality.clone(),
        ..lookup(WarehouseUser::Investigator)
    };
    let found = ehac_cli::lookup::lookup(&by_passport).await.unwrap();
    assert_eq!(
        found.iter().map(|d| d.declaration_id.as_str()).collect::<BTreeSet<_>>(),
        BTreeSet::from([ids[2].as_str(), ids[3].as_str()])
    );
}

/// Runs `sql` as the analyst with query parameters (`param_<name>` in the URL, as ClickHouse's
/// /dashboard page sends them): its TabSeparated rows.
async fn rows_as_analyst_with(p: &Pipeline, sql: &str, params: &[(&str, &str)]) -> Vec<Vec<String>> {
    let response = ehac_devstack::access::http_client(&p.secrets, WarehouseUser::Analyst)
        .post(&p.clickhouse_url)
        .query(&params.iter().map(|(k, v)| (format!("param_{k}"), *v)).collect::<Vec<_>>())
        .body(format!("{sql}\nFORMAT TabSeparated"))
        .send()
        .await
        .unwrap();
    let ok = response.status().is_success();
    let answer = response.text().await.unwrap();
    assert!(ok, "as analyst: {sql}\n{answer}");
    answer.lines().map(|l| l.split('\t').map(str::to_owned).collect()).collect()
}

/// The analysts' two dashboards, as the analyst after a small load: every chart of ClickHouse's
/// own /dashboard (the rows of `ehac.dashboards`, with the page's parameters) and every panel of
/// the Grafana dashboard (its SQL with the ClickHouse plugin's macros expanded) runs, the two
/// have the same charts, and the arrivals chart has data.
#[tokio::test]
async fn the_analysts_dashboards_run_as_the_analyst_and_draw_data() {
    let p = pipeline();
    let _serial = SERIAL.lock().await;
    seed_data(p).await;
    let two_days = (2 * 86_400).to_string();
    let charts = rows_as_analyst_with(p, "SELECT title, query FROM ehac.dashboards WHERE dashboard = 'e-HAC' ORDER BY title", &[]).await;
    assert_eq!(charts.len(), 7, "{charts:?}");
    let params = [("rounding", "60"), ("seconds", two_days.as_str()), ("from", ""), ("to", "")];
    let mut drawn = Vec::new();
    for chart in &charts {
        let (title, query) = (&chart[0], chart[1].replace("\\n", "\n").replace("\\'", "'"));
        let rows = rows_as_analyst_with(p, &query, &params).await;
        assert!(rows.iter().all(|r| r.len() == 3), "{title}: time, series, value: {rows:?}");
        drawn.push((title.clone(), rows.iter().filter(|r| r[2] != "\\N").count()));
    }
    let arrivals = drawn.iter().find(|(title, _)| title == "Arrivals per hour by airport").unwrap();
    assert!(arrivals.1 >= 1, "the arrivals chart has data: {drawn:?}");

    let grafana: serde_json::Value =
        serde_json::from_str(include_str!("../../deploy/grafana/ehac-analysts.json")).expect("the Grafana dashboard is JSON");
    let now = chrono::Utc::now().timestamp();
    let (from, to) = (format!("toDateTime({})", now - 2 * 86_400), format!("toDateTime({})", now + 2 * 86_400));
    let mut titles = Vec::new();
    for panel in grafana["panels"].as_array().unwrap() {
        assert_eq!(panel["datasource"]["type"], "grafana-clickhouse-datasource");
        let title = panel["title"].as_str().unwrap();
        for target in panel["targets"].as_array().unwrap() {
            let sql =
                target["rawSql"].as_str().unwrap().replace("$__fromTime", &from).replace("$__toTime", &to).replace("$__interval_s", "3600");
            let rows = rows_as_analyst_with(p, &sql, &[]).await;
            if title == "Arrivals per hour by airport" {
                assert!(rows.iter().any(|r| r[2] != "\\N"), "Grafana's arrivals panel has data: {rows:?}");
            }
        }
        titles.push(title.to_owned());
    }
    titles.sort();
    assert_eq!(titles, charts.iter().map(|c| c[0].clone()).collect::<Vec<_>>(), "the same charts in Grafana and in /dashboard");
    println!("dashboard charts with data points: {drawn:?}");
}

/// The analysts' dashboard and /play in Debian's Chromium (web/analysts/test/dashboard.test.mjs,
/// playwright-core), against this pipeline's ClickHouse after its small load: the charts draw
/// data as the analyst, and /play shows the access error for identity. With
/// EHAC_UPDATE_SCREENSHOTS set it saves the dashboard to docs/analysts-dashboard.png.
#[tokio::test]
async fn the_analysts_dashboard_and_play_work_in_chromium() {
    let p = pipeline();
    let _serial = SERIAL.lock().await;
    seed_data(p).await;
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let web = repo.join("web/analysts");
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: npm ci in web/analysts (deploy/local/test.sh does)"
    );
    let mut node = std::process::Command::new("node");
    node.current_dir(&web)
        .args(["--test", "test/dashboard.test.mjs"])
        .env("EHAC_CLICKHOUSE_URL", &p.clickhouse_url)
        .env("EHAC_ANALYST_PASSWORD", p.secrets.password(WarehouseUser::Analyst));
    if std::env::var_os("EHAC_UPDATE_SCREENSHOTS").is_some() {
        node.env("EHAC_SCREENSHOT", repo.join("docs/analysts-dashboard.png"));
    }
    let out = node.output().expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(out.status.success() && stdout.contains("# pass 2"), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
}

/// Every text in ClickHouse's two databases, as the migrator sees it.
async fn everything_in_clickhouse(p: &Pipeline) -> String {
    let tables =
        allowed(p, WarehouseUser::Migrator, "SELECT database, name FROM system.tables WHERE database IN ('ehac', 'ehac_pii') FORMAT TSV")
            .await;
    let mut all = String::new();
    for line in tables.lines() {
        let (database, table) = line.split_once('\t').unwrap();
        all.push_str(&allowed(p, WarehouseUser::Migrator, &format!("SELECT * FROM {database}.`{table}` FORMAT TSV")).await);
    }
    all
}

/// Every file under `dir` but the pepper itself and the secrets file, as bytes.
fn files_under(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else if !matches!(path.file_name().and_then(|n| n.to_str()), Some("pepper" | "secrets.json")) {
            if let Ok(bytes) = std::fs::read(&path) {
                out.push((path, bytes));
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

#[tokio::test]
async fn the_pepper_is_nowhere_in_clickhouse_kafka_or_logs() {
    let p = pipeline();
    let _serial = SERIAL.lock().await;
    seed_data(p).await;
    let pepper_file = p.pepper.pepper_file.clone().unwrap();
    let pepper = std::fs::read_to_string(&pepper_file).unwrap().trim().to_owned();
    assert!(pepper.len() >= 32);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&pepper_file).unwrap().permissions().mode() & 0o777, 0o600, "the pepper file is the owner's only");

    // An enricher process with the pepper in its environment (EHAC_PEPPER) and debug logging,
    // reading the raw topic in a group of its own and writing to topics nobody sinks.
    let bin_dir = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    let enricher = bin_dir.join("ehac-enricher");
    assert!(enricher.is_file(), "service binaries missing in {}: run cargo build --bins first", bin_dir.display());
    let help = std::process::Command::new(&enricher).arg("--help").env("EHAC_PEPPER", &pepper).output().unwrap();
    assert!(help.status.success());
    assert!(!contains(&help.stdout, pepper.as_bytes()), "--help shows the pepper from the environment");
    let log = p.dir.join("pepper-check-enricher.log");
    let (enriched, rejected) = ("pepper-check.enriched", "pepper-check.rejected");
    ehac_stream::kafka::ensure_topics(&p.brokers, &[enriched, rejected], 1).await.unwrap();
    let mut child = ehac_devstack::spawn(
        {
            let mut c = std::process::Command::new(&enricher);
            c.args(["--admin-listen", "127.0.0.1:0", "--topic-enriched", enriched, "--topic-rejected", rejected])
                .env("EHAC_KAFKA_BROKERS", &p.brokers)
                .env("EHAC_ENRICHER_GROUP", "pepper-check")
                .env("EHAC_PEPPER", &pepper)
                .env("EHAC_PEPPER_VERSION", "1")
                .env("RUST_LOG", "debug");
            c
        },
        &log,
        ehac_devstack::Lifetime::Attached,
    )
    .unwrap();

    // Its output carries keys, computed with that pepper, and never the pepper.
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &p.brokers)
        .set("group.id", unique_client("pepper-reader"))
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    consumer.subscribe(&[enriched]).unwrap();
    let message = tokio::time::timeout(PATIENCE, consumer.recv()).await.expect("the checking enricher writes").unwrap();
    let record = ehac_codec::ENRICHED.decode(message.payload().unwrap()).unwrap();
    let identity = TravellerIdentity::of(&record.raw.form.traveller, &record.enrichment.nationality).unwrap();
    assert_eq!(record.enrichment.traveller_key, p.pepper.pepper().unwrap().traveller_key(&identity));
    // Not dropped: closing a group consumer here blocked in rd_kafka_destroy (seen); the
    // process ends with the test binary.
    std::mem::forget(consumer);
    ehac_devstack::terminate(child.id(), Duration::from_secs(20));
    let _ = child.wait();
    let log_text = std::fs::read(&log).unwrap();
    assert!(contains(&log_text, b"enricher started"), "the log is there: {}", String::from_utf8_lossy(&log_text));
    assert!(!contains(&log_text, pepper.as_bytes()), "the enricher's debug log holds the pepper");

    // Kafka: every record of every topic, read from the start.
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &p.brokers)
        .set("group.id", unique_client("pepper-scan"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let topics = [p.topics.raw.as_str(), p.topics.enriched.as_str(), p.topics.rejected.as_str(), enriched, rejected];
    consumer.subscribe(&topics).unwrap();
    let mut scanned = 0;
    while let Ok(Ok(message)) = tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await {
        scanned += 1;
        assert!(!contains(message.payload().unwrap_or_default(), pepper.as_bytes()), "a Kafka record holds the pepper");
        assert!(!contains(message.key().unwrap_or_default(), pepper.as_bytes()), "a Kafka key holds the pepper");
    }
    assert!(scanned >= 28, "read {scanned} records");
    std::mem::forget(consumer);

    // ClickHouse: every row of every table in both databases.
    let stored = everything_in_clickhouse(p).await;
    assert!(stored.len() > 10_000, "dumped {} bytes", stored.len());
    assert!(stored.contains(&record.enrichment.traveller_key), "the dump holds the rows (a key the checking enricher computed)");
    assert!(!stored.contains(&pepper), "ClickHouse holds the pepper");

    // Logs and data files of the servers (Kafka's segments and logs, ClickHouse's logs).
    let mut files = Vec::new();
    files_under(&p.dir, &mut files);
    assert!(files.len() > 20, "{} files", files.len());
    for (path, bytes) in &files {
        assert!(!contains(bytes, pepper.as_bytes()), "{} holds the pepper", path.display());
    }
}
