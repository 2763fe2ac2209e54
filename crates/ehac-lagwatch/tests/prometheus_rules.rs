//! The Prometheus side of deploy/: the config and rules load, every alert has promtool unit tests
//! that see it both quiet and firing, and those tests pass. Needs promtool (Debian package
//! `prometheus`); without it these tests fail and say what to install.

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
    let mut alerts = Vec::new();
    for file in yml_files(&deploy().join("prometheus/rules")) {
        for line in std::fs::read_to_string(file).unwrap().lines() {
            if let Some(name) = line.trim().strip_prefix("- alert:") {
                alerts.push(name.trim().to_owned());
            }
        }
    }
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
