//! `ehac bench analysts`: a season of declarations in a fresh ClickHouse, and every query an
//! analyst runs timed as the analyst: the standard queries (which read the published views over
//! the rollup), the dashboard's charts (`ehac.dashboards`) and the k-anonymous microdata; beside
//! each, where there is one, the same question asked of the raw rows (as the epidemiologist,
//! the standard queries as they were before the rollup). p50 and p95 over `--runs` runs each.
//!
//! Filling: `--generated` declarations come from the sample generator (arrivals spread over
//! `--season-days`), enriched as the enricher does and inserted by the sink's own `Batch` as the
//! writer, so the rollup is written as in production; the rest of `--declarations` are copies of
//! those made inside ClickHouse (other ids, arrival days shifted), which also pass through the
//! rollup's materialized view.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use ehac_devstack::{Stack, StackOptions, WarehouseUser};
use ehac_domain::sample::{Flaw, SampleGenerator};
use ehac_domain::RawDeclaration;
use ehac_stream::config::Topics;
use ehac_stream::warehouse::{self, analyst_query, publish_microdata, ANALYST_QUERIES, DEFAULT_SUPPRESS_BELOW, MICRODATA_PUBLISHER};
use serde::Serialize;

use super::progress::Phase;

#[derive(clap::Args, Debug, Clone)]
pub struct AnalystsArgs {
    /// Where the run's ClickHouse (and an idle broker) keep data (wiped first).
    #[arg(long, default_value = ".ehac/bench-analysts")]
    pub dir: PathBuf,
    /// Declarations in ClickHouse when the queries are timed.
    #[arg(long, default_value_t = 10_000_000)]
    pub declarations: u64,
    /// How many of them the sample generator makes (the rest are copies made in ClickHouse).
    #[arg(long, default_value_t = 200_000)]
    pub generated: u64,
    /// Days the season's arrivals span.
    #[arg(long, default_value_t = 90)]
    pub season_days: i64,
    /// Timed runs of each query (after one untimed).
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Write the table as Markdown here (what BENCHMARKS.md quotes).
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Draw p95 per query, published against raw, as PNG here.
    #[arg(long)]
    pub chart: Option<PathBuf>,
    #[arg(long, default_value_t = 2026_12_20)]
    pub seed: u64,
}

/// The standard queries as they were before the rollup: straight from `ehac.declarations`.
/// The raw-table side of the comparison (an epidemiologist's read; the analyst may not).
const RAW_STANDARD_QUERIES: &[(&str, &str)] = &[
    (
        "arrivals_by_port",
        "SELECT arrival_port, any(arrival_port_name), arrival_date, count() AS arrivals, countIf(domestic = 0) FROM ehac.declarations GROUP BY arrival_port, arrival_date ORDER BY arrivals DESC, arrival_port LIMIT 10",
    ),
    (
        "triage_by_port",
        "SELECT arrival_port, countIf(triage = 'red') AS r, countIf(triage = 'yellow') AS y, countIf(triage = 'green') FROM ehac.declarations GROUP BY arrival_port ORDER BY r DESC, y DESC, arrival_port LIMIT 10",
    ),
    (
        "arrivals_by_home_province",
        "SELECT home_province, count() AS arrivals, round(avg(age_years), 1) FROM ehac.declarations WHERE home_province != '' GROUP BY home_province ORDER BY arrivals DESC, home_province LIMIT 10",
    ),
    ("verification_by_status", "SELECT status, count() AS n FROM ehac.declaration_verification GROUP BY status ORDER BY n DESC, status"),
];

/// Pending declarations given a reconciled answer before the queries are timed.
const RECONCILED: u64 = 100_000;

/// Questions of the microdata, and the same of the raw rows.
const MICRODATA_QUESTIONS: &[(&str, &str, &str)] = &[
    (
        "microdata: fever rate by age band",
        "SELECT age_band, count(), avg(fever) FROM ehac.arrivals_microdata GROUP BY age_band ORDER BY age_band",
        "SELECT age_band, count(), avg(fever) FROM ehac.declarations GROUP BY age_band ORDER BY age_band",
    ),
    (
        "microdata: positive tests by province and port",
        "SELECT home_province, arrival_port, countIf(test_result = 'positive') AS positive FROM ehac.arrivals_microdata GROUP BY home_province, arrival_port ORDER BY positive DESC LIMIT 10",
        "SELECT home_province, arrival_port, countIf(test_result = 'positive') AS positive FROM ehac.declarations GROUP BY home_province, arrival_port ORDER BY positive DESC LIMIT 10",
    ),
];

#[derive(Debug, Serialize)]
pub struct Timing {
    pub p50_ms: f64,
    pub p95_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct QueryRow {
    pub name: String,
    /// What the analyst's query reads.
    pub reads: &'static str,
    pub analyst: Timing,
    /// The same question of the raw rows, where there is one.
    pub raw: Option<Timing>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub declarations: u64,
    pub rollup_rows: u64,
    /// Rows of the published microdata after the load, and how long one rebuild took.
    pub microdata_rows: u64,
    /// Rows in `ehac.verifications` (reconciled answers) when the queries are timed.
    pub reconciled: u64,
    pub microdata_rebuild_s: f64,
    pub runs: usize,
    pub queries: Vec<QueryRow>,
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut md = format!(
            "{} declarations ({} rows in the rollup `ehac.arrival_counts`), {} timed runs per query, as `analyst` (raw: as `epidemiologist`)\n\n| query | the analyst's reads | p50 ms | p95 ms | raw p50 ms | raw p95 ms |\n|---|---|---:|---:|---:|---:|\n",
            self.declarations, self.rollup_rows, self.runs
        );
        for q in &self.queries {
            let raw = q.raw.as_ref().map_or(("-".to_owned(), "-".to_owned()), |r| (format!("{:.0}", r.p50_ms), format!("{:.0}", r.p95_ms)));
            md.push_str(&format!(
                "| {} | {} | {:.0} | {:.0} | {} | {} |\n",
                q.name, q.reads, q.analyst.p50_ms, q.analyst.p95_ms, raw.0, raw.1
            ));
        }
        md.push_str(&format!(
            "\nThe published microdata: {} rows of {} declarations, one rebuild (`SYSTEM REFRESH VIEW {MICRODATA_PUBLISHER}` to its end) {:.1} s. Reconciled answers in `ehac.verifications`: {}.\n",
            self.microdata_rows, self.declarations, self.microdata_rebuild_s, self.reconciled
        ));
        md
    }
}

pub async fn run(args: &AnalystsArgs) -> anyhow::Result<Report> {
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let dir = args.dir.canonicalize()?;
    let phase = Phase::start("servers");
    let tools = ehac_devstack::Tools::find_or_install()?;
    let stack = Stack::start(&tools, StackOptions::ephemeral(dir.join("stack"))?).await.context("starting ClickHouse")?;
    stack.provision(&Topics::default(), 1).await?;
    phase.done(format!("ClickHouse {}", stack.clickhouse_version().await?));

    let phase = Phase::start("generated declarations");
    let generated = args.generated.min(args.declarations).max(1);
    let writer = ehac_sink::Warehouse::new(&stack.clickhouse_as(WarehouseUser::Writer));
    let season_start = chrono::Utc::now() - chrono::Duration::days(args.season_days);
    let mut generator = SampleGenerator::new(args.seed);
    let reference = ehac_domain::ReferenceData::embedded();
    let policy = ehac_domain::Policy::default();
    let mut offset = 0i64;
    while (offset as u64) < generated {
        let mut batch = ehac_sink::Batch::stamped_now();
        let end = (offset as u64 + 20_000).min(generated) as i64;
        for i in offset..end {
            // Arrivals spread over the season, a few minutes apart.
            let now = season_start + chrono::Duration::minutes((i * 7_919) % (args.season_days * 1_440).max(1));
            let form = generator.declaration(now, "bench-analysts", Flaw::None);
            let raw = RawDeclaration {
                declaration_id: format!("bench-{i}"),
                received_at_ms: now.timestamp_millis(),
                gateway_version: "bench".into(),
                form,
            };
            if let Ok(record) = ehac_domain::accept(raw, reference, &policy, "bench") {
                batch.push_declaration(record, i);
            }
        }
        batch.insert(&writer, 0).await.context("inserting generated declarations as the writer")?;
        offset = end;
        phase.set(format!("{offset} of {generated}"));
    }
    let sql = |user| {
        let client = stack.clickhouse_http(user);
        let url = stack.clickhouse_url();
        move |query: String| {
            let (client, url) = (client.clone(), url.clone());
            async move { answer(client.post(&url).body(query.clone())).await.with_context(|| query) }
        }
    };
    let as_migrator = sql(WarehouseUser::Migrator);
    let stored: u64 = as_migrator("SELECT count() FROM ehac.declarations".into()).await?.trim().parse()?;
    phase.done(format!("{stored} stored through the sink's batches"));

    let phase = Phase::start("copies in ClickHouse");
    // The copies are made from a snapshot of the generated rows, apart from the table they go to
    // (a WHERE on the copied table would see the REPLACE's new values, not the stored ones).
    as_migrator("CREATE TABLE ehac.bench_generated AS ehac.declarations ENGINE = MergeTree ORDER BY tuple()".into()).await?;
    as_migrator("INSERT INTO ehac.bench_generated SELECT * FROM ehac.declarations".into()).await?;
    let mut copy = 1u64;
    let mut total = stored;
    while total < args.declarations {
        let take = (args.declarations - total).min(stored);
        let shift = (copy as i64 * 7) % args.season_days.max(1);
        as_migrator(format!(
            "INSERT INTO ehac.declarations SELECT * REPLACE (concat(declaration_id, '-{copy}') AS declaration_id, arrival_date + {shift} AS arrival_date, arrival_at + {} AS arrival_at) FROM ehac.bench_generated LIMIT {take}",
            shift * 86_400
        ))
        .await?;
        total += take;
        copy += 1;
        phase.set(format!("{total} of {}", args.declarations));
    }
    as_migrator("DROP TABLE ehac.bench_generated".into()).await?;
    // `ehac reconcile`'s answers for pending citizens, as after a registry outage: the
    // verification counts read them beside the rollup.
    as_migrator(format!(
        "INSERT INTO ehac.verifications (declaration_id, status, checked_at, checked_by) SELECT declaration_id, 'verified', now(), 'bench' FROM ehac.declarations WHERE verification_status = 'pending' LIMIT {RECONCILED}"
    ))
    .await?;
    let reconciled: u64 = as_migrator("SELECT count() FROM ehac.verifications".into()).await?.trim().parse()?;
    as_migrator("OPTIMIZE TABLE ehac.arrival_counts FINAL".into()).await?;
    as_migrator("OPTIMIZE TABLE ehac.microdata_groups FINAL".into()).await?;
    let rollup_rows: u64 = as_migrator("SELECT count() FROM ehac.arrival_counts".into()).await?.trim().parse()?;
    let declarations: u64 = as_migrator("SELECT count() FROM ehac.declarations".into()).await?.trim().parse()?;
    let counted: u64 = as_migrator("SELECT sum(declarations) FROM ehac.arrival_counts".into()).await?.trim().parse()?;
    anyhow::ensure!(counted == declarations, "the rollup counts {counted} declarations of {declarations}");
    phase.done(format!("{declarations} declarations, {rollup_rows} rollup rows"));

    let phase = Phase::start("microdata rebuild");
    let rebuild = Instant::now();
    publish_microdata(&warehouse::client(&stack.clickhouse_as(WarehouseUser::Migrator))).await.context("rebuilding the microdata")?;
    let microdata_rebuild_s = rebuild.elapsed().as_secs_f64();
    let microdata_rows: u64 = as_migrator("SELECT count() FROM ehac.arrivals_microdata".into()).await?.trim().parse()?;
    phase.done(format!("{microdata_rows} rows in {microdata_rebuild_s:.1} s"));

    let phase = Phase::start("queries");
    let (as_analyst, as_epidemiologist) = (sql(WarehouseUser::Analyst), sql(WarehouseUser::Epidemiologist));
    let mut queries = Vec::new();
    let season = (args.season_days * 86_400 * 2).to_string();
    for (name, query) in ANALYST_QUERIES {
        let analyst = timed(args.runs, || as_analyst(format!("{}\nFORMAT Null", analyst_query(query, DEFAULT_SUPPRESS_BELOW)))).await?;
        let raw = match RAW_STANDARD_QUERIES.iter().find(|(n, _)| n == name) {
            Some((_, raw)) => Some(timed(args.runs, || as_epidemiologist(format!("{raw}\nFORMAT Null"))).await?),
            None => None,
        };
        let reads = match *name {
            "rejections_by_code" => "ehac.rejections",
            "verification_by_status" => "published views over the rollup and ehac.verifications",
            _ => "published views over the rollup",
        };
        queries.push(QueryRow { name: (*name).to_owned(), reads, analyst, raw });
        phase.set((*name).to_owned());
    }
    let charts =
        as_analyst("SELECT title, query FROM ehac.dashboards WHERE dashboard = 'e-HAC' ORDER BY title FORMAT JSONEachRow".into()).await?;
    for line in charts.lines() {
        let chart: serde_json::Value = serde_json::from_str(line)?;
        let (title, query) = (chart["title"].as_str().unwrap_or_default(), chart["query"].as_str().unwrap_or_default());
        let body = format!("{query}\nFORMAT Null");
        // The whole season at daily points, as an analyst looks at a season: hourly points over
        // it can pass the analyst's result-row limit, which refuses the chart rather than time it.
        let params = [("param_rounding", "86400"), ("param_seconds", season.as_str()), ("param_from", ""), ("param_to", "")];
        let client = stack.clickhouse_http(WarehouseUser::Analyst);
        let url = stack.clickhouse_url();
        let analyst = timed(args.runs, || answer(client.post(&url).query(&params).body(body.clone())))
            .await
            .with_context(|| format!("chart {title}"))?;
        let reads = if query.contains("FROM ehac.rejections") { "ehac.rejections" } else { "published views over the rollup" };
        queries.push(QueryRow { name: format!("chart: {title}"), reads, analyst, raw: None });
        phase.set(title.to_owned());
    }
    for (name, microdata, raw) in MICRODATA_QUESTIONS {
        let analyst = timed(args.runs, || as_analyst(format!("{microdata}\nFORMAT Null"))).await?;
        let raw = timed(args.runs, || as_epidemiologist(format!("{raw}\nFORMAT Null"))).await?;
        queries.push(QueryRow {
            name: (*name).to_owned(),
            reads: "ehac.arrivals_microdata (k = 11, the rebuilt table)",
            analyst,
            raw: Some(raw),
        });
    }
    phase.done(format!("{} queries", queries.len()));
    let report = Report { declarations, rollup_rows, microdata_rows, reconciled, microdata_rebuild_s, runs: args.runs, queries };
    if let Some(path) = &args.chart {
        super::plots::query_times(path, &report.queries)?;
    }
    Ok(report)
}

/// ClickHouse's answer to `request`, or its error.
async fn answer(request: reqwest::RequestBuilder) -> anyhow::Result<String> {
    let response = request.send().await?;
    let status = response.status();
    // ClickHouse names the error in a header too: the body can be empty when it failed late.
    let exception = response.headers().get("x-clickhouse-exception-code").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let text = response.text().await?;
    anyhow::ensure!(status.is_success(), "HTTP {status}, exception code {}: {text}", exception.as_deref().unwrap_or("none"));
    Ok(text)
}

/// One untimed run, then `runs` timed ones: p50 and p95 in milliseconds.
async fn timed<F, Fut>(runs: usize, mut run: F) -> anyhow::Result<Timing>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<String>>,
{
    run().await?;
    let mut times: Vec<Duration> = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        run().await?;
        times.push(started.elapsed());
    }
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1].as_secs_f64() * 1000.0;
    Ok(Timing { p50_ms: at(0.50), p95_ms: at(0.95) })
}
