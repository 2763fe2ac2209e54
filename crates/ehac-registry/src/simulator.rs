//! A stand-in population registry for tests and demos: same wire format as the real one (see
//! [`crate::client`]), answers derived from the NIK itself.
//!
//! It "knows" every NIK whose digits 7-12 are a valid birth date, with that date of birth and
//! the sex the day encodes (+40 for women), except NIKs whose serial (last four digits) is
//! 9900 or above: those are "not found", about 1% of generated citizens. Tests stop and start
//! the process, or slow it down with `--delay-ms`, to see the pipeline keep going without it.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{Datelike, NaiveDate};
use ehac_domain::form::Sex;
use ehac_domain::verification::RegistryAnswer;
use tokio_util::sync::CancellationToken;

use crate::client::{Answer, LookupRequest, LookupResponse};

/// Serves a stand-in population registry.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "ehac-registry-sim", version, about)]
pub struct Options {
    #[arg(long, env = "EHAC_REGISTRY_SIM_LISTEN", default_value = "127.0.0.1:9190")]
    pub listen: SocketAddr,
    /// Delay before every answer, to play a slow registry.
    #[arg(long, env = "EHAC_REGISTRY_SIM_DELAY_MS", default_value_t = 0)]
    pub delay_ms: u64,
}

/// What the simulated registry holds for `nik`.
pub fn answer_for(nik: &str, today: NaiveDate) -> RegistryAnswer {
    let digits = |r: std::ops::Range<usize>| nik.get(r).and_then(|s| s.parse::<u32>().ok());
    let (Some(day), Some(month), Some(yy), Some(serial)) = (digits(6..8), digits(8..10), digits(10..12), digits(12..16)) else {
        return RegistryAnswer::NotFound;
    };
    if nik.len() != 16 || serial >= 9900 {
        return RegistryAnswer::NotFound;
    }
    let (day, sex) = if day > 40 { (day - 40, Sex::Female) } else { (day, Sex::Male) };
    // Nobody is born in the future: a two-digit year after this year's is last century.
    let this_yy = (today.year() % 100) as u32;
    let year = if yy <= this_yy { 2000 + yy } else { 1900 + yy } as i32;
    match NaiveDate::from_ymd_opt(year, month, day) {
        Some(date_of_birth) => RegistryAnswer::Found { date_of_birth, sex },
        None => RegistryAnswer::NotFound,
    }
}

/// The simulator as a program: options from flags and env, JSON logs, stops on SIGTERM.
pub fn main() -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(async {
        ehac_stream::telemetry::init_logging();
        let options = <Options as clap::Parser>::parse();
        let shutdown = ehac_stream::shutdown::on_signal();
        let addr = serve(options, shutdown.clone()).await?;
        tracing::info!(%addr, "registry simulator listening");
        shutdown.cancelled().await;
        Ok(())
    })
}

/// Serves the simulator on `options.listen` until `shutdown`; returns the bound address.
pub async fn serve(options: Options, shutdown: CancellationToken) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(options.listen).await.map_err(|e| anyhow::anyhow!("binding {}: {e}", options.listen))?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/v1/nik/lookup", post(lookup))
        .with_state(Duration::from_millis(options.delay_ms));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await {
            tracing::error!(error = %e, "registry simulator failed");
        }
    });
    Ok(bound)
}

async fn lookup(State(delay): State<Duration>, Json(request): Json<LookupRequest>) -> Json<LookupResponse> {
    tokio::time::sleep(delay).await;
    let today = chrono::Utc::now().date_naive();
    let answers = request.niks.into_iter().map(|nik| Answer { answer: answer_for(&nik, today), nik }).collect();
    Json(LookupResponse { answers })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_follow_the_nik() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
        assert_eq!(
            answer_for("3171044512900001", today),
            RegistryAnswer::Found { date_of_birth: NaiveDate::from_ymd_opt(1990, 12, 5).unwrap(), sex: Sex::Female }
        );
        assert_eq!(
            answer_for("3171040501100001", today),
            RegistryAnswer::Found { date_of_birth: NaiveDate::from_ymd_opt(2010, 1, 5).unwrap(), sex: Sex::Male }
        );
        assert_eq!(answer_for("3171044512909900", today), RegistryAnswer::NotFound);
        assert_eq!(answer_for("3171043302900001", today), RegistryAnswer::NotFound, "30 February");
        assert_eq!(answer_for("31710445", today), RegistryAnswer::NotFound);
    }
}
