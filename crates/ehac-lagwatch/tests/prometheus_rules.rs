//! The Prometheus side of deploy/: the config and rules load, every alert has promtool unit tests
//! that see it both quiet and firing, and those tests pass; every alert links a runbook section
//! that exists (docs/RUNBOOK.md), and the dashboard links each alert's panel to it. Needs promtool
//! (Debian package `prometheus`); without it these tests fail and say what to install.

use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy").canonicalize().expect("deploy/ exists")
}

fn yml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "yml")).collect();
    files.sort();
    assert!(!files.is_empty(), "no .yml files in {}", dir.display());
    files
}

/// Where the operations docs host serves the repository's docs/ from.
const RUNBOOK_HOST: &str = "https://runbooks.ehac.internal/";

/// Every alert rule of deploy/prometheus/rules: its name and its `runbook_url`, if it has one.
fn alert_rules() -> Vec<(String, Option<String>)> {
    let mut alerts: Vec<(String, Option<String>)> = Vec::new();
    for file in yml_files(&deploy().join("prometheus/rules")) {
        for line in std::fs::read_to_string(file).unwrap().lines().map(str::trim) {
            if let Some(name) = line.strip_prefix("- alert:") {
                alerts.push((name.trim().to_owned(), None));
            } else if line.starts_with("- record:") {
                // A recording rule after an alert: its lines are not the alert's.
                alerts.push((String::new(), None));
            } else if let Some(url) = line.strip_prefix("runbook_url:") {
                let current = alerts.last_mut().filter(|(name, _)| !name.is_empty()).expect("runbook_url inside an alert rule");
                current.1 = Some(url.trim().trim_matches('"').to_owned());
            }
        }
    }
    alerts.retain(|(name, _)| !name.is_empty());
    alerts
}

/// GitHub's anchors for a Markdown file's headings: lower case, spaces to dashes, punctuation
/// other than `-` and `_` dropped.
fn heading_anchors(markdown: &str) -> Vec<String> {
    markdown
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

/// What is wrong with a runbook URL: not on the docs host, no anchor, no such file under docs/,
/// or no such section in it.
fn runbook_problem(url: &str) -> Option<String> {
    let Some(page) = url.strip_prefix(RUNBOOK_HOST) else { return Some(format!("{url} is not under {RUNBOOK_HOST}")) };
    let Some((file, anchor)) = page.split_once('#') else { return Some(format!("{url} names no section (#anchor)")) };
    let path = deploy().join("../docs").join(file);
    let Ok(markdown) = std::fs::read_to_string(&path) else { return Some(format!("{url}: no file docs/{file}")) };
    (!heading_anchors(&markdown).iter().any(|a| a == anchor)).then(|| format!("{url}: docs/{file} has no heading #{anchor}"))
}

fn promtool(args: &[&str], files: &[PathBuf]) {
    let promtool = ehac_devstack::prometheus_tool("promtool").unwrap_or_else(|e| panic!("{e:#}"));
    let output = Command::new(promtool).current_dir(deploy().join("prometheus")).args(args).args(files).output().expect("promtool runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "promtool {} failed:\n{text}", args.join(" "));
}

#[test]
fn the_scrape_config_and_rules_are_valid() {
    promtool(&["check", "config"], &[deploy().join("prometheus/prometheus.yml")]);
    promtool(&["check", "rules"], &yml_files(&deploy().join("prometheus/rules")));
}

#[test]
fn the_rule_unit_tests_pass() {
    promtool(&["test", "rules"], &yml_files(&deploy().join("prometheus/tests")));
}

#[test]
fn every_alert_is_unit_tested_quiet_and_firing() {
    let alerts: Vec<String> = alert_rules().into_iter().map(|(name, _)| name).collect();
    assert!(alerts.len() >= 6, "{alerts:?}");
    // (alert, firing?) for every alert_rule_test case: the `exp_alerts:` line after its
    // `alertname:` is `[]` when the alert must be quiet.
    let mut cases: Vec<(String, bool)> = Vec::new();
    for file in yml_files(&deploy().join("prometheus/tests")) {
        let text = std::fs::read_to_string(file).unwrap();
        let mut current: Option<String> = None;
        for line in text.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix("alertname:") {
                current = Some(name.trim().to_owned());
            } else if let Some(rest) = line.strip_prefix("exp_alerts:") {
                let name = current.take().expect("exp_alerts follows an alertname");
                cases.push((name, rest.trim() != "[]"));
            }
        }
    }
    for alert in &alerts {
        assert!(cases.contains(&(alert.clone(), true)), "{alert} has no promtool test where it fires");
        assert!(cases.contains(&(alert.clone(), false)), "{alert} has no promtool test where it stays quiet");
    }
}

#[test]
fn the_grafana_dashboard_is_json_with_the_pipeline_panels() {
    let text = std::fs::read_to_string(deploy().join("grafana/ehac-pipeline.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for wanted in ["Ingest rate", "Consumer lag (seconds)", "Gateway ack latency", "Rejects", "Gateway spool depth"] {
        assert!(titles.contains(&wanted), "no panel {wanted:?} in {titles:?}");
    }
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let targets = panel["targets"].as_array().unwrap_or_else(|| panic!("panel {} has no queries", panel["title"]));
        assert!(
            targets.iter().all(|t| t["expr"].as_str().is_some_and(|e| e.contains("ehac"))),
            "panel {} queries something else",
            panel["title"]
        );
    }
}

#[test]
fn every_alert_links_its_runbook_section() {
    let alerts = alert_rules();
    assert!(alerts.len() >= 12, "{alerts:?}");
    let problems: Vec<String> = alerts
        .iter()
        .filter_map(|(alert, url)| match url {
            None => Some(format!("{alert} has no runbook_url annotation")),
            Some(url) => runbook_problem(url).map(|p| format!("{alert}: {p}")),
        })
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_runbook_check_refuses_what_does_not_exist() {
    assert_eq!(runbook_problem(&format!("{RUNBOOK_HOST}RUNBOOK.md#ehacconsumerlaghigh")), None);
    for url in [
        format!("{RUNBOOK_HOST}RUNBOOK.md#ehacnosuchalert"),
        format!("{RUNBOOK_HOST}NO-SUCH-FILE.md#ehacconsumerlaghigh"),
        format!("{RUNBOOK_HOST}RUNBOOK.md"),
        "https://elsewhere.example/RUNBOOK.md#ehacconsumerlaghigh".to_owned(),
    ] {
        assert!(runbook_problem(&url).is_some(), "{url} passed the check");
    }
}

#[test]
fn the_dashboard_links_each_alert_panel_to_its_runbook() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(deploy().join("grafana/ehac-pipeline.json")).unwrap()).unwrap();
    let links: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["links"].as_array().into_iter().flatten())
        .filter_map(|l| l["url"].as_str())
        .collect();
    let runbooks: Vec<String> = alert_rules().into_iter().filter_map(|(_, url)| url).collect();
    for url in &runbooks {
        assert!(links.contains(&url.as_str()), "no dashboard panel links {url}");
    }
    for link in &links {
        assert!(runbooks.iter().any(|r| r == link), "a panel links {link}, which is no alert's runbook");
    }
}
