//! The lag alert, for real: broker, ClickHouse, gateway, enricher, sink, ehac-lagwatch and a
//! Prometheus server loaded with the shipped rules (deploy/prometheus/rules/ehac.yml). Load keeps
//! coming while the sink is stopped; the lag alert and the STOP alert must fire in Prometheus'
//! /api/v1/alerts; after the sink is restarted both must resolve, and every declaration accepted
//! meanwhile must be in ClickHouse.
//!
//! The rules run as shipped except for the lag alert's threshold and the two alerts' `for`,
//! shortened so the test takes seconds rather than minutes; [`shorten`] fails if the shipped
//! rule no longer has the text it replaces.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ehac_devstack::{free_port, Prometheus};
use ehac_domain::sample::Flaw;
use ehac_tests::{declarations, own_pipeline, unique_client};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const LAG_ALERT: &str = "EhacConsumerLagHigh";
const STATUS_ALERT: &str = "EhacConsumerGroupStalled";
const PATIENCE: Duration = Duration::from_secs(120);

fn deploy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The shipped rule file with some text of one alert's rule replaced; panics if a text to
/// replace is not in that rule exactly once.
fn shorten(rules: &str, alert: &str, replacements: &[(&str, &str)]) -> String {
    let start = rules.find(&format!("- alert: {alert}\n")).unwrap_or_else(|| panic!("no alert {alert} in the shipped rules"));
    let end = rules[start + 1..].find("- alert: ").map_or(rules.len(), |i| start + 1 + i);
    let mut rule = rules[start..end].to_owned();
    for (from, to) in replacements {
        assert_eq!(rule.matches(from).count(), 1, "{alert}'s rule should contain {from:?} once:\n{rule}");
        rule = rule.replace(from, to);
    }
    format!("{}{}{}", &rules[..start], rule, &rules[end..])
}

/// Alerts in Prometheus for `alertname` and consumer group `group`: (state, labels).
async fn alerts(http: &reqwest::Client, prometheus: &str, alertname: &str, group: &str) -> Vec<(String, Value)> {
    let body: Value = http.get(format!("{prometheus}/api/v1/alerts")).send().await.expect("prometheus answers").json().await.unwrap();
    body["data"]["alerts"]
        .as_array()
        .expect("an alert list")
        .iter()
        .filter(|a| a["labels"]["alertname"] == alertname && a["labels"]["group"] == group)
        .map(|a| (a["state"].as_str().unwrap_or_default().to_owned(), a["labels"].clone()))
        .collect()
}

async fn wait_until<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < PATIENCE, "timed out after {PATIENCE:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    started.elapsed()
}

/// Metric names (`ehac_...`) written in a rules or dashboard file.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.starts_with("ehac_"))
        .map(str::to_owned)
        .collect()
}

/// Metric names a service exports on /metrics.
async fn exported(http: &reqwest::Client, url: &str) -> BTreeSet<String> {
    let text = http.get(url).send().await.expect("metrics answer").text().await.unwrap();
    text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split(['{', ' ']).next()).map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_sink_under_load_fires_the_lag_alert_and_restarting_it_resolves_it() {
    let own = own_pipeline("lag-alerts", 4).await.expect("pipeline starts");
    let p = &own.pipeline;
    let sink_admin = format!("127.0.0.1:{}", free_port().unwrap()).parse().unwrap();
    let (sink_token, sink) = own.start_sink(sink_admin);

    let lagwatch_shutdown = CancellationToken::new();
    let mut config = ehac_lagwatch::Config::with_brokers(&p.brokers);
    config.listen = format!("127.0.0.1:{}", free_port().unwrap()).parse().unwrap();
    config.poll_interval_ms = 1_000;
    config.window_secs = 5;
    let lagwatch = ehac_lagwatch::start(config, lagwatch_shutdown.clone()).await.expect("lagwatch starts");
    let lagwatch_url = format!("http://{}", lagwatch.addr);

    let shipped = std::fs::read_to_string(deploy().join("prometheus/rules/ehac.yml")).unwrap();
    let rules = shorten(&shipped, LAG_ALERT, &[("> 120", "> 5"), ("for: 3m", "for: 5s")]);
    let rules = shorten(&rules, STATUS_ALERT, &[("for: 1m", "for: 5s")]);
    let prometheus_dir = ehac_tests::test_dir(Some("lag-alerts-prometheus"));
    let _ = std::fs::remove_dir_all(&prometheus_dir);
    std::fs::create_dir_all(&prometheus_dir).unwrap();
    std::fs::write(prometheus_dir.join("ehac.yml"), rules).unwrap();
    let job = |name: &str, target: String| format!("  - job_name: {name}\n    static_configs:\n      - targets: [\"{target}\"]\n");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - ehac.yml\nscrape_configs:\n{}{}{}{}",
        job("ehac-lagwatch", lagwatch.addr.to_string()),
        job("ehac-gateway", own.gateway_admin.to_string()),
        job("ehac-enricher", own.enricher_admin.to_string()),
        job("ehac-sink", sink_admin.to_string()),
    );
    let prometheus = Prometheus::start(&prometheus_dir, &config).await.unwrap_or_else(|e| panic!("{e:#}"));
    let prom_url = prometheus.url();
    let http_client = reqwest::Client::new();
    // References, so the polling closures below can copy them into their futures.
    let (http, prom) = (&http_client, prom_url.as_str());

    // Open-loop load, about 20 declarations a second, until the end of the test.
    let client = unique_client("lag-alerts");
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop_load = CancellationToken::new();
    let load = {
        let (gateway, client, accepted, stop_load) = (p.gateway.clone(), client.clone(), accepted.clone(), stop_load.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            for seed in 0.. {
                for form in declarations(100, &client, Flaw::None, seed) {
                    tokio::select! {
                        _ = stop_load.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    let response = http.post(format!("{gateway}/v1/declarations")).json(&form).send().await;
                    if let Ok(r) = response {
                        if r.status() == 202 {
                            let body: Value = r.json().await.unwrap();
                            accepted.lock().unwrap().push(body["declaration_id"].as_str().unwrap().to_owned());
                        }
                    }
                }
            }
        })
    };

    // Healthy first: Prometheus has the sink's lag, below the threshold, and no alert for it.
    wait_until("the sink's lag in Prometheus, under 5 s", || async move {
        let body: Value = http
            .get(format!("{prom}/api/v1/query"))
            .query(&[("query", "ehac_consumer_group_max_lag_seconds{group=\"ehac-sink\"}")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let value = body["data"]["result"][0]["value"][1].as_str().and_then(|v| v.parse::<f64>().ok());
        value.is_some_and(|v| v < 5.0) && alerts(http, prom, LAG_ALERT, "ehac-sink").await.is_empty()
    })
    .await;

    // One refused form, so the gateway's field-error counter exists too.
    let refused = declarations(1, &client, Flaw::Form, 1).remove(0);
    let (status, body) = p.post(serde_json::to_vec(&refused).unwrap()).await;
    assert_eq!(status, 422, "{body}");

    // The rules and the dashboard query metrics the services really export.
    let mut names = BTreeSet::new();
    for url in [
        format!("{lagwatch_url}/metrics"),
        format!("http://{}/metrics", own.gateway_admin),
        format!("http://{}/metrics", own.enricher_admin),
        format!("http://{sink_admin}/metrics"),
    ] {
        names.extend(exported(http, &url).await);
    }
    let mut referenced = metric_names(&shipped);
    referenced.extend(metric_names(&std::fs::read_to_string(deploy().join("grafana/ehac-pipeline.json")).unwrap()));
    // Comes with the gateway spool (issue 4).
    referenced.remove("ehac_gateway_spool_records");
    let missing: Vec<&String> = referenced.difference(&names).collect();
    assert!(missing.is_empty(), "rules or dashboard use metrics no service exports: {missing:?}");

    // Stop the sink; load goes on.
    sink_token.cancel();
    sink.await.unwrap().expect("the sink stops cleanly");
    let stopped = Instant::now();
    let to_firing = wait_until("the lag alert to fire", || async move {
        alerts(http, prom, LAG_ALERT, "ehac-sink").await.iter().any(|(state, _)| state == "firing")
    })
    .await;
    wait_until("the STOP alert to fire", || async move {
        alerts(http, prom, STATUS_ALERT, "ehac-sink").await.iter().any(|(state, labels)| state == "firing" && labels["status"] == "STOP")
    })
    .await;
    let to_stop_alert = stopped.elapsed();
    let status: Value = http.get(format!("{lagwatch_url}/v1/groups/ehac-sink/status")).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["status"], "STOP", "{status:#}");
    assert!(status["total_lag"].as_i64().unwrap() > 0, "{status:#}");
    assert!(!status["partitions"].as_array().unwrap().is_empty(), "a group with no members keeps its partitions");

    // Restart it in the same group: it catches up and both alerts resolve.
    let (sink_token, sink) = own.start_sink(format!("127.0.0.1:{}", free_port().unwrap()).parse().unwrap());
    let to_resolved = wait_until("the lag alert and the STOP alert to resolve", || async move {
        alerts(http, prom, LAG_ALERT, "ehac-sink").await.is_empty() && alerts(http, prom, STATUS_ALERT, "ehac-sink").await.is_empty()
    })
    .await;
    eprintln!(
        "lag alert: sink stopped -> {LAG_ALERT} firing in {:.1}s, {STATUS_ALERT}(STOP) firing in {:.1}s; sink restarted -> both resolved in {:.1}s \
         (lagwatch poll 1s, window 5s; Prometheus scrape and evaluation 1s; lag > 5s for 5s; STOP for 5s)",
        to_firing.as_secs_f64(),
        to_stop_alert.as_secs_f64(),
        to_resolved.as_secs_f64()
    );

    // Nothing accepted while the sink was down is missing.
    stop_load.cancel();
    load.await.unwrap();
    let accepted = accepted.lock().unwrap().len() as u64;
    assert!(accepted > 100, "load was going on: {accepted} accepted");
    let stored = p
        .wait_for_count(
            &format!("SELECT uniqExact(declaration_id) FROM ehac.declarations WHERE client_id = '{client}'"),
            accepted,
            PATIENCE,
        )
        .await;
    assert_eq!(stored, accepted, "every accepted declaration stored");

    sink_token.cancel();
    sink.await.unwrap().expect("the restarted sink stops cleanly");
    lagwatch_shutdown.cancel();
    lagwatch.wait().await.expect("lagwatch stops cleanly");
    own.shutdown.cancel();
    drop(prometheus);
}
