//! The demo's arrival gates: an issuing key for the gateway, a root-signed trust list, and gate
//! scanners that check passes with nothing but that list, after the back office (Kafka,
//! ClickHouse, the registry) has been stopped: when gates could not reach the server, travellers
//! re-filled paper forms.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{Duration, Utc};
use ehac_pass::{inspect_unverified, IssuingKey, RootKey, TrustList, TrustedKey, Verdict, VerifiedTrustList};

/// The demo's keys: the root (kept offline in real life) and the gateway's issuing key.
pub struct GateKeys {
    root: RootKey,
    issuing: IssuingKey,
    /// The issuing key as a file, for the gateway's `--pass-key`.
    pub issuing_key_file: PathBuf,
}

impl GateKeys {
    pub fn create(dir: &Path, region: &str) -> anyhow::Result<GateKeys> {
        let root = RootKey::generate()?;
        let issuing = IssuingKey::generate(region)?;
        let issuing_key_file = dir.join("pass-issuing-key.jwk");
        std::fs::write(&issuing_key_file, issuing.to_jwk())?;
        Ok(GateKeys { root, issuing, issuing_key_file })
    }
}

/// What the gates said.
#[derive(Debug, Default)]
pub struct GateReport {
    pub verified: u64,
    pub rejected: u64,
    pub degraded: u64,
    pub by_reason: BTreeMap<String, u64>,
    /// Genuine passes verified per second on this thread.
    pub per_second: f64,
}

impl GateReport {
    pub fn line(&self) -> String {
        let reasons: Vec<String> = self.by_reason.iter().map(|(reason, n)| format!("{reason}={n}")).collect();
        format!(
            "GATE verified={} rejected={} degraded={} by reason: {} ({:.0} passes/s on one core)",
            self.verified,
            self.rejected,
            self.degraded,
            if reasons.is_empty() { "none".to_owned() } else { reasons.join(" ") },
            self.per_second
        )
    }
}

/// Checks `passes` at their arrival airports' gates, offline, with a trust list that revokes
/// the first two of them, plus planted bad ones: three tampered copies and two passes shown
/// at the wrong airport.
pub fn check_offline(keys: &GateKeys, passes: &[String]) -> anyhow::Result<GateReport> {
    let now = Utc::now();
    let mut list = TrustList::new(Duration::hours(24));
    list.add_key(TrustedKey::new(&keys.issuing.public_key(), keys.issuing.region(), now - Duration::days(1), now + Duration::days(90))?)?;
    for pass in passes.iter().take(2) {
        let unverified = inspect_unverified(pass).map_err(|r| anyhow::anyhow!("a pass the gateway issued does not parse: {r:?}"))?;
        list.revoke(&unverified.pass_id, now + Duration::days(7));
    }
    // What a gate holds: the list as published, its root signature checked on load.
    let trust = VerifiedTrustList::load(&list.sign(&keys.root, now), &[keys.root.public()])?;

    let mut report = GateReport::default();
    let mut tally = |verdict: Verdict| match verdict {
        Verdict::Accept(_) => report.verified += 1,
        Verdict::Reject { reason } => {
            report.rejected += 1;
            *report.by_reason.entry(reason.code().to_owned()).or_default() += 1;
        }
        Verdict::Degraded { reason, .. } => {
            report.degraded += 1;
            *report.by_reason.entry(reason.code().to_owned()).or_default() += 1;
        }
    };
    let gate_of = |pass: &str| inspect_unverified(pass).map(|p| p.view.arrival_airport).unwrap_or_default();
    let started = Instant::now();
    for pass in passes {
        tally(ehac_pass::verify(pass, &trust, &gate_of(pass), now));
    }
    let genuine_seconds = started.elapsed().as_secs_f64();
    for pass in passes.iter().skip(2).take(3) {
        // One character changed in the middle: what a forger or a damaged print does.
        let mut tampered: Vec<char> = pass.chars().collect();
        let middle = tampered.len() / 2;
        tampered[middle] = if tampered[middle] == 'A' { 'B' } else { 'A' };
        let tampered: String = tampered.into_iter().collect();
        tally(ehac_pass::verify(&tampered, &trust, &gate_of(pass), now));
    }
    for pass in passes.iter().skip(5).take(2) {
        let elsewhere = if gate_of(pass) == "KNO" { "CGK" } else { "KNO" };
        tally(ehac_pass::verify(pass, &trust, elsewhere, now));
    }
    report.per_second = passes.len() as f64 / genuine_seconds.max(1e-9);
    Ok(report)
}
