//! Every metric name ARCHITECTURE.md or the shipped Prometheus rules mention is one a service
//! exports. Each service's registry is built here the way the service builds it at start
//! (its own metrics, then the shared groups its configuration turns on), with no server: a
//! renamed metric, or a rule or doc naming one that is gone, fails here rather than as an alert
//! that can never fire.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::Parser;
use prometheus::{IntCounter, Registry};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Each service's registry as its `run` (or `start`) fills it.
fn service_registries() -> Vec<(&'static str, Registry)> {
    let gateway = ehac_stream::telemetry::registry("gateway");
    ehac_gateway::GatewayMetrics::register(&gateway).unwrap();

    let enricher = ehac_stream::telemetry::registry("enricher");
    let config = ehac_enricher::Config::try_parse_from(["ehac-enricher", "--registry-url", "http://127.0.0.1:1"]).unwrap();
    ehac_enricher::Metrics::register(&enricher).unwrap();
    assert!(config.registry.verifier(&enricher).unwrap().is_some(), "a registry URL turns the verifier on");
    config.membership.watch(&enricher, &[&config.kafka.topics.raw]).unwrap();

    let sink = ehac_stream::telemetry::registry("sink");
    let config = ehac_sink::Config::try_parse_from(["ehac-sink"]).unwrap();
    ehac_sink::Metrics::register(&sink).unwrap();
    config.membership.watch(&sink, &[&config.kafka.topics.enriched, &config.kafka.topics.rejected]).unwrap();

    let lagwatch = ehac_stream::telemetry::registry("lagwatch");
    ehac_lagwatch::metrics::Metrics::register(&lagwatch).unwrap();

    vec![("gateway", gateway), ("enricher", enricher), ("sink", sink), ("lagwatch", lagwatch)]
}

/// Whether `registry` holds a metric named `name` (without the `ehac_` prefix the registry adds
/// when it renders). A labelled metric with no series yet renders nothing, so the names are
/// asked of the registry itself: registering a second metric under a taken name fails.
fn registered(registry: &Registry, name: &str) -> bool {
    let probe = IntCounter::new(name, "probe").unwrap_or_else(|e| panic!("{name} is not a valid metric name: {e}"));
    match registry.register(Box::new(probe.clone())) {
        Ok(()) => {
            registry.unregister(Box::new(probe)).unwrap();
            false
        }
        Err(prometheus::Error::AlreadyReg) => true,
        Err(prometheus::Error::Msg(m)) if m.contains("same fully-qualified name") => true,
        Err(e) => panic!("probing {name}: {e}"),
    }
}

/// Whether some service exports `name` as rendered on /metrics: a histogram's series carry a
/// `_bucket`, `_sum` or `_count` suffix.
fn exported(registries: &[(&str, Registry)], name: &str) -> bool {
    let Some(bare) = name.strip_prefix("ehac_") else { return false };
    let mut candidates = vec![bare];
    candidates.extend(["_bucket", "_sum", "_count"].iter().filter_map(|s| bare.strip_suffix(s)));
    registries.iter().any(|(_, r)| candidates.iter().any(|c| registered(r, c)))
}

/// `ehac_...` identifiers in `text`: metric names in PromQL. Recording rules' own names
/// (`ehac:...`) are not metrics a service exports and do not match.
fn ehac_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("ehac_").map(|a| a + i) {
        let before = at.checked_sub(1).map(|b| bytes[b]);
        let end = text[at..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(text.len(), |e| e + at);
        let name = &text[at..end];
        let after = &text[end..];
        // Part of a longer identifier, a Rust path (`ehac_domain::`) or a table (`ehac_pii.x`).
        let standalone = !before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':');
        if standalone && !after.starts_with("::") && !after.starts_with('.') && name.len() > "ehac_".len() {
            names.insert(name.trim_end_matches('_').to_owned());
        }
        i = end.max(at + 1);
    }
    names
}

fn rules() -> Vec<PathBuf> {
    let dir = repo().join("deploy/prometheus/rules");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(!files.is_empty(), "no rule files in {}", dir.display());
    files
}

#[test]
fn every_metric_the_rules_use_is_exported() {
    let registries = service_registries();
    for file in rules() {
        let names = ehac_names(&std::fs::read_to_string(&file).unwrap());
        assert!(!names.is_empty(), "{} names no metric", file.display());
        let missing: Vec<&String> = names.iter().filter(|n| !exported(&registries, n)).collect();
        assert!(missing.is_empty(), "{} uses metrics no service exports: {missing:?}", file.display());
    }
}

#[test]
fn every_metric_architecture_md_names_is_exported() {
    let registries = service_registries();
    let mut names = ehac_names(&std::fs::read_to_string(repo().join("ARCHITECTURE.md")).unwrap());
    // The databases share the prefix; they are named in the warehouse's code.
    names.remove(ehac_stream::warehouse::PII_DATABASE);
    assert!(!names.is_empty(), "ARCHITECTURE.md names no metric");
    let missing: Vec<&String> = names.iter().filter(|n| !exported(&registries, n)).collect();
    assert!(missing.is_empty(), "ARCHITECTURE.md names metrics no service exports: {missing:?}");
}

#[test]
fn the_probe_tells_a_taken_name_from_a_free_one() {
    let registries = service_registries();
    assert!(exported(&registries, "ehac_sink_insert_seconds_bucket"));
    assert!(exported(&registries, "ehac_enricher_records_total"), "a labelled counter with no series yet");
    assert!(!exported(&registries, "ehac_sink_offset_gaps_total"));
    assert!(!exported(&registries, "ehac_sink_rows"));
    assert_eq!(
        ehac_names("`ehac_domain::accept`, `ehac_pii.identities`, ehac:x_ratio:rate5m, sum(rate(ehac_sink_rows_total[5m]))"),
        BTreeSet::from(["ehac_sink_rows_total".to_owned()])
    );
}
