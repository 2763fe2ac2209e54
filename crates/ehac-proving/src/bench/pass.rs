//! `ehac bench pass`: what one signed pass costs the gateway to issue and a gate to verify,
//! counted in the measuring thread's own CPU time (CLOCK_THREAD_CPUTIME_ID), not wall time, so
//! that other work on a shared machine does not inflate it. Pure functions only: no servers.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{Duration as Span, NaiveDate, TimeZone, Utc};
use ehac_pass::{verify, IssuePolicy, IssuingKey, PassClaims, RootKey, Signer, Triage, TrustList, TrustedKey, Verdict, VerifiedTrustList};
use serde::Serialize;

#[derive(clap::Args, Debug, Clone)]
pub struct PassArgs {
    /// Passes issued and verified per measurement.
    #[arg(long, default_value_t = 20_000)]
    pub count: u32,
    /// Revoked pass ids in the gate's trust list.
    #[arg(long, default_value_t = 10_000)]
    pub revocations: u32,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct PassReport {
    pub count: u32,
    pub revocations: u32,
    /// Characters of the pass text (`EH1:...`) for the benchmark's 30-character name.
    pub pass_chars: usize,
    /// The whole issue path: claims, COSE_Sign1, ES256 (ring), zlib, Base45.
    pub issue_cpu_us: f64,
    /// ES256 alone (ring) over a Sig_structure of the same size.
    pub es256_sign_cpu_us: f64,
    /// The other stages alone: claims CBOR, COSE_Sign1 envelope, zlib, Base45.
    pub claims_cpu_us: f64,
    pub envelope_cpu_us: f64,
    pub zlib_cpu_us: f64,
    pub base45_cpu_us: f64,
    /// The gate's whole check, with the trust list's revocations.
    pub verify_cpu_us: f64,
    pub verifications_per_second_per_core: f64,
    /// The signature check alone, with the verifier the gate uses (ring) and with RustCrypto's.
    pub es256_verify_ring_cpu_us: f64,
    pub es256_verify_p256_cpu_us: f64,
    pub budget_issue_cpu_us: f64,
}

/// The gateway's budget for signing one pass.
pub const ISSUE_BUDGET_CPU_US: f64 = 25.0;

fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(rc, 0, "CLOCK_THREAD_CPUTIME_ID is available on Linux");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Mean CPU-µs of `work` over `count` calls, after `count / 10` unmeasured ones (warm caches and
/// allocator, as criterion's warm-up).
fn cpu_us_per_call(count: u32, mut work: impl FnMut(u32)) -> f64 {
    for i in 0..count / 10 {
        work(i);
    }
    let started = thread_cpu_time();
    for i in 0..count {
        work(i);
    }
    (thread_cpu_time() - started).as_secs_f64() * 1e6 / f64::from(count.max(1))
}

pub fn run(args: &PassArgs) -> anyhow::Result<PassReport> {
    let key = IssuingKey::generate("ID-JK")?;
    let signer = Signer::new(&key, IssuePolicy::default());
    let arrival = Utc.with_ymd_and_hms(2026, 12, 20, 10, 0, 0).single().expect("a valid instant");
    let now = arrival - Span::hours(3);
    let claims = |i: u32| {
        let mut pass_id = [0; 16];
        pass_id[..4].copy_from_slice(&i.to_be_bytes());
        PassClaims {
            pass_id,
            traveller_name: "Siti Nurhaliza binti Abdullah".into(),
            date_of_birth: NaiveDate::from_ymd_opt(1988, 3, 14).expect("a date"),
            flight: "GA404".into(),
            arrival_airport: "CGK".into(),
            arrival_at: arrival,
            arrival_date: arrival.date_naive(),
            triage: Triage::Green,
        }
    };
    let inputs: Vec<PassClaims> = (0..args.count).map(claims).collect();
    let issue_cpu_us = cpu_us_per_call(args.count, |i| {
        std::hint::black_box(signer.issue(&inputs[i as usize], now).expect("the pass is issued"));
    });
    let tbs = vec![0x5a; 230];
    let es256_sign_cpu_us = cpu_us_per_call(args.count, |_| {
        std::hint::black_box(ehac_pass::issue::sign_with_ring(&signer, &tbs));
    });
    use ehac_pass::issue_stages as stage;
    let claims_cpu_us = cpu_us_per_call(args.count, |i| {
        std::hint::black_box(stage::claims(&inputs[i as usize]));
    });
    let payload = stage::claims(&inputs[0]);
    let envelope_cpu_us = cpu_us_per_call(args.count, |_| {
        std::hint::black_box(stage::envelope(signer.kid(), &payload));
    });
    let envelope = stage::envelope(signer.kid(), &payload);
    let zlib_cpu_us = cpu_us_per_call(args.count, |_| {
        std::hint::black_box(stage::zlib(&envelope));
    });
    let compressed = stage::zlib(&envelope);
    let base45_cpu_us = cpu_us_per_call(args.count, |_| {
        std::hint::black_box(stage::base45(&compressed));
    });

    let root = RootKey::generate()?;
    let mut list = TrustList::new(Span::hours(24));
    list.add_key(TrustedKey::new(&key.public_key(), "ID-JK", now - Span::days(1), now + Span::days(30))?)?;
    // Revoked ids unlike the issued ones (those start with their index and end in zeros).
    for i in 0..args.revocations {
        list.revoke(&[i.to_le_bytes(), [0xff; 4]].concat(), arrival + Span::days(1));
    }
    let trust = VerifiedTrustList::load(&list.sign(&root, now), &[root.public()])?;
    let passes: Vec<String> = inputs.iter().map(|c| signer.issue(c, now)).collect::<Result<_, _>>()?;
    let at_gate = arrival + Span::minutes(20);
    anyhow::ensure!(
        passes.iter().all(|p| matches!(verify(p, &trust, "CGK", at_gate), Verdict::Accept(_))),
        "a pass issued by the benchmark did not verify"
    );
    let verify_cpu_us = cpu_us_per_call(args.count, |i| {
        std::hint::black_box(verify(&passes[i as usize], &trust, "CGK", at_gate));
    });
    let public = key.public_key();
    let signature = ehac_pass::issue::sign_with_ring(&signer, &tbs);
    let es256_verify_ring_cpu_us = cpu_us_per_call(args.count, |_| {
        assert!(ehac_pass::verifier_comparison::ring(&public, &signature, &tbs));
    });
    // RustCrypto is an order of magnitude slower: a tenth of the calls keeps the run short.
    let es256_verify_p256_cpu_us = cpu_us_per_call((args.count / 10).max(10), |_| {
        assert!(ehac_pass::verifier_comparison::p256(&public, &signature, &tbs));
    });
    Ok(PassReport {
        count: args.count,
        revocations: args.revocations,
        pass_chars: passes[0].len(),
        issue_cpu_us,
        es256_sign_cpu_us,
        claims_cpu_us,
        envelope_cpu_us,
        zlib_cpu_us,
        base45_cpu_us,
        verify_cpu_us,
        verifications_per_second_per_core: 1e6 / verify_cpu_us,
        es256_verify_ring_cpu_us,
        es256_verify_p256_cpu_us,
        budget_issue_cpu_us: ISSUE_BUDGET_CPU_US,
    })
}

impl PassReport {
    pub fn markdown(&self) -> String {
        let row = |what: &str, value: String| format!("| {what} | {value} |\n");
        let mut out = String::from("| per pass, CPU time of the measuring thread | |\n|--|--:|\n");
        out += &row("issue a whole pass (claims, COSE_Sign1, ES256, zlib, Base45)", format!("{:.1} µs", self.issue_cpu_us));
        out += &row("of which ES256 sign alone (ring)", format!("{:.1} µs", self.es256_sign_cpu_us));
        out += &row("the rest of the issue path", format!("{:.1} µs", self.issue_cpu_us - self.es256_sign_cpu_us));
        out += &row("claims CBOR, alone", format!("{:.1} µs", self.claims_cpu_us));
        out += &row("COSE_Sign1 envelope without the signature, alone", format!("{:.1} µs", self.envelope_cpu_us));
        out += &row("zlib (stored blocks), alone", format!("{:.1} µs", self.zlib_cpu_us));
        out += &row("Base45, alone", format!("{:.1} µs", self.base45_cpu_us));
        out += &row(
            &format!("verify at the gate ({} revocations listed)", self.revocations),
            format!("{:.1} µs = {:.0} passes/s per core", self.verify_cpu_us, self.verifications_per_second_per_core),
        );
        out += &row("of which ES256 verify (ring, used)", format!("{:.1} µs", self.es256_verify_ring_cpu_us));
        out += &row("ES256 verify, RustCrypto p256 (not used)", format!("{:.1} µs", self.es256_verify_p256_cpu_us));
        out += &row("pass text for a 30-character name", format!("{} characters", self.pass_chars));
        out
    }

    pub fn line(&self) -> String {
        format!(
            "PASS issue={:.1}cpu-us (es256 {:.1}, budget {:.0}) verify={:.1}cpu-us ({:.0}/s per core) count={}",
            self.issue_cpu_us,
            self.es256_sign_cpu_us,
            self.budget_issue_cpu_us,
            self.verify_cpu_us,
            self.verifications_per_second_per_core,
            self.count
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_issue_and_verify_of_real_passes() {
        let report = run(&PassArgs { count: 200, revocations: 100, out: None }).unwrap();
        assert!(report.issue_cpu_us > 0.0 && report.es256_sign_cpu_us > 0.0 && report.verify_cpu_us > 0.0, "{report:?}");
        assert!((300..=420).contains(&report.pass_chars), "a 30-character name gives about 330 characters: {report:?}");
        assert!(report.markdown().contains("passes/s per core") && report.line().starts_with("PASS issue="));
    }
}
