//! The lag alert, for real, from the broker to the on-call engineer: broker, ClickHouse, gateway,
//! enricher, sink, ehac-lagwatch, a Prometheus server loaded with the shipped rules
//! (deploy/prometheus/rules/ehac.yml) and an Alertmanager running the shipped routing
//! (deploy/alertmanager/alertmanager.yml), whose receivers post to a webhook server of the test's
//! own.
//!
//! - Load keeps coming while the sink is stopped: the lag alert and the STOP alert fire in
//!   Prometheus, and the page reaches the pager receiver with the group, the lag in seconds and
//!   the runbook link; after the sink is restarted both resolve and the resolved notice arrives.
//! - With both groups falling behind, the broker is stopped: one page arrives, for the broker;
//!   every group's lag alert reaches Alertmanager and is held back (inhibited). When the broker
//!   is back its page resolves and the groups, still behind, page.
//! - Every declaration accepted meanwhile is in ClickHouse.
//!
//! The rules run as shipped except for thresholds and `for` durations, and Alertmanager except
//! for its waits and the receivers' endpoints, shortened so the test takes minutes rather than
//! hours; [`shorten`] and [`test_alertmanager_config`] fail if the shipped files no longer have
//! the text they replace.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ehac_devstack::{Alertmanager, Prometheus, Server};
use ehac_domain::sample::Flaw;
use ehac_tests::{declarations, own_pipeline, unique_client, PipelineOptions};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const LAG_ALERT: &str = "EhacConsumerLagHigh";
const STATUS_ALERT: &str = "EhacConsumerGroupStalled";
const BROKER_ALERT: &str = "EhacKafkaUnreachable";
const PATIENCE: Duration = Duration::from_secs(120);
/// The lag and status alerts' `for` here: longer than the broker alert takes to fire, so that a
/// group alert pending when the broker stops fires only once the broker alert inhibits it.
const GROUP_ALERT_FOR: &str = "for: 30s";

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

/// One POST Alertmanager made to the test's webhook: the receiver's path and the payload.
#[derive(Clone, Debug)]
struct Notification {
    receiver: String,
    at: Instant,
    body: Value,
}

impl Notification {
    /// The notification's alerts named `alertname` (and of consumer group `group`, if given).
    fn alerts<'a>(&'a self, alertname: &'a str, group: Option<&'a str>) -> impl Iterator<Item = &'a Value> + 'a {
        self.body["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(move |a| a["labels"]["alertname"] == alertname && group.is_none_or(|g| a["labels"]["group"] == g))
    }

    fn is(&self, status: &str, alertname: &str, group: Option<&str>) -> bool {
        self.body["status"] == status && self.alerts(alertname, group).next().is_some()
    }
}

/// The test's own webhook receiver: every POST to /<receiver> is kept, in order.
async fn webhook_receiver() -> (SocketAddr, Arc<Mutex<Vec<Notification>>>) {
    use axum::extract::{Path, State};
    let received = Arc::new(Mutex::new(Vec::<Notification>::new()));
    let app = axum::Router::new()
        .route(
            "/{receiver}",
            axum::routing::post(
                |State(received): State<Arc<Mutex<Vec<Notification>>>>, Path(receiver): Path<String>, body: axum::Json<Value>| async move {
                    received.lock().unwrap().push(Notification { receiver, at: Instant::now(), body: body.0 });
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, received)
}

/// The shipped Alertmanager configuration with its waits shortened and each receiver replaced by
/// a webhook to `webhook`/<receiver name>; the routes and inhibit rules stay as shipped. Panics if
/// the shipped file no longer has the text it replaces.
fn test_alertmanager_config(shipped: &str, webhook: SocketAddr) -> String {
    let mut config = shipped.to_owned();
    for (from, to) in [("group_wait: 30s", "group_wait: 1s"), ("group_interval: 5m", "group_interval: 2s")] {
        assert_eq!(config.matches(from).count(), 1, "the shipped alertmanager.yml should contain {from:?} once");
        config = config.replace(from, to);
    }
    let (routing, receivers) = config.split_once("\nreceivers:\n").expect("alertmanager.yml ends with its receivers");
    let names: Vec<&str> = receivers.lines().filter_map(|l| l.trim().strip_prefix("- name: ")).collect();
    assert_eq!(names, ["ehac-pager", "ehac-chat"], "the shipped receivers");
    let webhooks: String = names
        .iter()
        .map(|name| format!("  - name: {name}\n    webhook_configs:\n      - url: http://{webhook}/{name}\n        send_resolved: true\n"))
        .collect();
    format!("{routing}\nreceivers:\n{webhooks}")
}

/// Alertmanager's view of its alerts named `alertname`: (consumer group, state, inhibited by).
async fn alertmanager_alerts(http: &reqwest::Client, alertmanager: &str, alertname: &str) -> Vec<(String, String, usize)> {
    let body: Value = http.get(format!("{alertmanager}/api/v2/alerts")).send().await.expect("alertmanager answers").json().await.unwrap();
    body.as_array()
        .expect("an alert list")
        .iter()
        .filter(|a| a["labels"]["alertname"] == alertname)
        .map(|a| {
            (
                a["labels"]["group"].as_str().unwrap_or_default().to_owned(),
                a["status"]["state"].as_str().unwrap_or_default().to_owned(),
                a["status"]["inhibitedBy"].as_array().map_or(0, Vec::len),
            )
        })
        .collect()
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
async fn a_group_behind_pages_the_on_call_engineer_and_a_broker_outage_pages_once() {
    let mut own = own_pipeline("lag-alerts", 4).await.expect("pipeline starts");
    let p = &own.pipeline;
    let ehac_tests::RunningSink { token: sink_token, task: sink, admin: sink_admin } = own.start_sink().await;

    let lagwatch_shutdown = CancellationToken::new();
    let mut config = ehac_lagwatch::Config::with_brokers(&p.brokers);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.poll_interval_ms = 1_000;
    config.window_secs = 5;
    let lagwatch = ehac_lagwatch::start(config, lagwatch_shutdown.clone()).await.expect("lagwatch starts");
    let lagwatch_url = format!("http://{}", lagwatch.addr);
    let http_client = reqwest::Client::new();
    // References, so the polling closures below can copy them into their futures.
    let (http, lagwatch_ref) = (&http_client, lagwatch_url.as_str());
    // lagwatch's first poll done, so that its last-poll time is not the 0 of a fresh start (which
    // reads as a cluster unreachable for 56 years).
    wait_until("lagwatch's first poll", || async move {
        matches!(http.get(format!("{lagwatch_ref}/readyz")).send().await, Ok(r) if r.status() == 200)
    })
    .await;

    let (webhook, notifications) = webhook_receiver().await;
    let shipped_routing = std::fs::read_to_string(deploy().join("alertmanager/alertmanager.yml")).unwrap();
    let alertmanager_dir = ehac_tests::test_dir(Some("lag-alerts-alertmanager"));
    let _ = std::fs::remove_dir_all(&alertmanager_dir);
    let alertmanager = Alertmanager::start(&alertmanager_dir, &test_alertmanager_config(&shipped_routing, webhook))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let am_url = alertmanager.url();

    let shipped = std::fs::read_to_string(deploy().join("prometheus/rules/ehac.yml")).unwrap();
    let rules = shorten(&shipped, LAG_ALERT, &[("> 120", "> 5"), ("for: 3m", GROUP_ALERT_FOR)]);
    let rules = shorten(&rules, STATUS_ALERT, &[("for: 1m", GROUP_ALERT_FOR)]);
    let rules = shorten(&rules, BROKER_ALERT, &[("> 60", "> 10"), ("for: 1m", "for: 1s")]);
    let runbook = |alert: &str| format!("https://runbooks.ehac.internal/RUNBOOK.md#{}", alert.to_lowercase());
    let prometheus_dir = ehac_tests::test_dir(Some("lag-alerts-prometheus"));
    let _ = std::fs::remove_dir_all(&prometheus_dir);
    std::fs::create_dir_all(&prometheus_dir).unwrap();
    std::fs::write(prometheus_dir.join("ehac.yml"), rules).unwrap();
    let job = |name: &str, target: String| format!("  - job_name: {name}\n    static_configs:\n      - targets: [\"{target}\"]\n");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - ehac.yml\n\
         alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"127.0.0.1:{}\"]\nscrape_configs:\n{}{}{}{}",
        alertmanager.port,
        job("ehac-lagwatch", lagwatch.addr.to_string()),
        job("ehac-gateway", own.gateway_admin.to_string()),
        job("ehac-enricher", own.enricher_admin.to_string()),
        job("ehac-sink", sink_admin.to_string()),
    );
    let prometheus = Prometheus::start(&prometheus_dir, &config).await.unwrap_or_else(|e| panic!("{e:#}"));
    let prom_url = prometheus.url();
    let (prom, am) = (prom_url.as_str(), am_url.as_str());
    let received = &notifications;
    // The notifications received after the first `since` of them that match.
    let arrived = |since: usize, matches: &dyn Fn(&Notification) -> bool| -> Option<Notification> {
        received.lock().unwrap()[since..].iter().find(|n| matches(n)).cloned()
    };
    let count = || received.lock().unwrap().len();

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
    let missing: Vec<&String> = referenced.difference(&names).collect();
    assert!(missing.is_empty(), "rules or dashboard use metrics no service exports: {missing:?}");

    // Stop the sink; load goes on.
    let before_stop = count();
    sink_token.cancel();
    sink.await.unwrap().expect("the sink stops cleanly");
    let stopped = Instant::now();
    let to_firing = wait_until("the lag alert to fire", || async move {
        alerts(http, prom, LAG_ALERT, "ehac-sink").await.iter().any(|(state, _)| state == "firing")
    })
    .await;
    // The page: on the pager receiver, grouped by consumer group, with the lag and the runbook.
    wait_until("the lag page at the webhook", || async move {
        arrived(before_stop, &|n| n.is("firing", LAG_ALERT, Some("ehac-sink"))).is_some()
    })
    .await;
    let page = arrived(before_stop, &|n| n.is("firing", LAG_ALERT, Some("ehac-sink"))).unwrap();
    let to_page = page.at - stopped;
    assert_eq!(page.receiver, "ehac-pager", "{:#}", page.body);
    assert_eq!(page.body["groupLabels"]["group"], "ehac-sink", "{:#}", page.body);
    let lag_page = page.alerts(LAG_ALERT, Some("ehac-sink")).next().unwrap();
    assert_eq!(lag_page["labels"]["severity"], "page");
    assert_eq!(lag_page["annotations"]["runbook_url"], runbook(LAG_ALERT).as_str(), "{lag_page:#}");
    let lag_seconds: f64 =
        lag_page["annotations"]["lag_seconds"].as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{lag_page:#}"));
    assert!(lag_seconds > 5.0, "the page says {lag_seconds} s behind");
    wait_until("the STOP alert to fire", || async move {
        alerts(http, prom, STATUS_ALERT, "ehac-sink").await.iter().any(|(state, labels)| state == "firing" && labels["status"] == "STOP")
    })
    .await;
    let to_stop_alert = stopped.elapsed();
    let status: Value = http.get(format!("{lagwatch_url}/v1/groups/ehac-sink/status")).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["status"], "STOP", "{status:#}");
    assert!(status["total_lag"].as_i64().unwrap() > 0, "{status:#}");
    assert!(!status["partitions"].as_array().unwrap().is_empty(), "a group with no members keeps its partitions");

    // Restart it in the same group: it catches up, both alerts resolve, and so does the page.
    let ehac_tests::RunningSink { token: sink_token, task: sink, .. } = own.start_sink().await;
    let restarted = Instant::now();
    let to_resolved = wait_until("the lag alert and the STOP alert to resolve", || async move {
        alerts(http, prom, LAG_ALERT, "ehac-sink").await.is_empty() && alerts(http, prom, STATUS_ALERT, "ehac-sink").await.is_empty()
    })
    .await;
    wait_until("the resolved notice at the webhook", || async move {
        arrived(before_stop, &|n| n.is("resolved", LAG_ALERT, Some("ehac-sink"))).is_some()
    })
    .await;
    let resolved = arrived(before_stop, &|n| n.is("resolved", LAG_ALERT, Some("ehac-sink"))).unwrap();
    assert_eq!(resolved.receiver, "ehac-pager");
    let to_resolved_notice = resolved.at - restarted;

    // The broker goes down while both groups are behind: stop the sink, and the enricher a
    // moment later (so the sink has enriched messages to fall behind on).
    sink_token.cancel();
    sink.await.unwrap().expect("the sink stops cleanly");
    tokio::time::sleep(Duration::from_secs(2)).await;
    p.stop_enricher().await;
    let groups = ["ehac-enricher", "ehac-sink"];
    wait_until("both groups' lag alerts pending", || async move {
        let mut pending = 0;
        for group in groups {
            pending += alerts(http, prom, LAG_ALERT, group).await.iter().filter(|(state, _)| state == "pending").count();
        }
        pending == groups.len()
    })
    .await;
    let before_outage = count();
    tokio::task::block_in_place(|| own.stack.stop_server(Server::Broker, false));
    let broker_stopped = Instant::now();
    wait_until(
        "the broker page at the webhook",
        || async move { arrived(before_outage, &|n| n.is("firing", BROKER_ALERT, None)).is_some() },
    )
    .await;
    let broker_page = arrived(before_outage, &|n| n.is("firing", BROKER_ALERT, None)).unwrap();
    let to_broker_page = broker_page.at - broker_stopped;
    assert_eq!(broker_page.receiver, "ehac-pager");
    assert_eq!(broker_page.alerts(BROKER_ALERT, None).next().unwrap()["annotations"]["runbook_url"], runbook(BROKER_ALERT).as_str());
    // Each group's lag alert fires (its last figure stays over the threshold) and reaches
    // Alertmanager, which holds it back.
    wait_until("both groups' lag alerts inhibited in Alertmanager", || async move {
        let held: Vec<(String, String, usize)> = alertmanager_alerts(http, am, LAG_ALERT).await;
        groups.iter().all(|g| held.iter().any(|(group, state, by)| group == g && state == "suppressed" && *by > 0))
    })
    .await;
    let inhibited_at = broker_stopped.elapsed();
    // Several of Alertmanager's group intervals later, still the broker's page alone.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let during_outage: Vec<Notification> = received.lock().unwrap()[before_outage..].to_vec();
    let firing: Vec<String> = during_outage
        .iter()
        .filter(|n| n.body["status"] == "firing")
        .flat_map(|n| n.body["alerts"].as_array().unwrap().iter().filter(|a| a["status"] == "firing").map(|a| format!("{}", a["labels"])))
        .collect();
    assert_eq!(firing.len(), 1, "one page for the broker and none per group while it is down: {firing:#?}");
    assert!(firing[0].contains(BROKER_ALERT), "{firing:?}");

    // The broker comes back: its page resolves, and the groups, still behind, page now.
    let before_return = count();
    own.stack.restart_server(Server::Broker).await.expect("the broker starts again");
    wait_until(
        "the broker's resolved notice",
        || async move { arrived(before_return, &|n| n.is("resolved", BROKER_ALERT, None)).is_some() },
    )
    .await;
    for group in groups {
        wait_until("the groups' pages once the broker is back", || async move {
            arrived(before_return, &|n| n.is("firing", LAG_ALERT, Some(group))).is_some()
        })
        .await;
    }

    // The consumers come back and catch up: nothing is left firing.
    p.restart_enricher(PipelineOptions::default()).await;
    let ehac_tests::RunningSink { token: sink_token, task: sink, .. } = own.start_sink().await;
    wait_until("every group alert to resolve", || async move {
        let mut left = 0;
        for group in groups {
            left += alerts(http, prom, LAG_ALERT, group).await.len() + alerts(http, prom, STATUS_ALERT, group).await.len();
        }
        left == 0
    })
    .await;
    eprintln!(
        "lag alert: sink stopped -> {LAG_ALERT} firing in Prometheus {:.1}s, page at the webhook {:.1}s (lag {lag_seconds} s), \
         {STATUS_ALERT}(STOP) firing {:.1}s; sink restarted -> alerts resolved {:.1}s, resolved notice {:.1}s; \
         broker stopped -> {BROKER_ALERT} page {:.1}s, both groups' lag alerts inhibited by {:.1}s \
         (lagwatch poll 1s, window 5s; Prometheus scrape and evaluation 1s; lag > 5s {GROUP_ALERT_FOR}; STOP {GROUP_ALERT_FOR}; \
         last poll > 10s for: 1s; Alertmanager group_wait 1s, group_interval 2s)",
        to_firing.as_secs_f64(),
        to_page.as_secs_f64(),
        to_stop_alert.as_secs_f64(),
        to_resolved.as_secs_f64(),
        to_resolved_notice.as_secs_f64(),
        to_broker_page.as_secs_f64(),
        inhibited_at.as_secs_f64(),
    );

    // Nothing accepted while the sink or the broker was down is missing.
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
    drop(alertmanager);
}
