//! The population registry as this pipeline sees it: give it NIKs, get back what it holds.
//!
//! Wire format of the HTTP registry (and of [`crate::simulator`]):
//! `POST {url}/v1/nik/lookup` with `{"niks": ["3171...", ...]}` answers
//! `{"answers": [{"nik": "3171...", "outcome": "found", "date_of_birth": "1990-12-05",
//! "sex": "female"}, {"nik": "...", "outcome": "not_found"}]}`.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use ehac_domain::verification::RegistryAnswer;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry request to {url} failed: {source}")]
    Request { url: String, source: reqwest::Error },
    #[error("registry at {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
}

/// Anything that can look NIKs up. NIKs it does not mention in its answer stay unverified.
pub trait PopulationRegistry: Send + Sync {
    fn lookup(&self, niks: &[String]) -> impl Future<Output = Result<HashMap<String, RegistryAnswer>, RegistryError>> + Send;
}

#[derive(Debug, Serialize, Deserialize)]
pub struct LookupRequest {
    pub niks: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct LookupResponse {
    pub answers: Vec<Answer>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Answer {
    pub nik: String,
    #[serde(flatten)]
    pub answer: RegistryAnswer,
}

/// The registry's HTTP API.
#[derive(Debug, Clone)]
pub struct HttpRegistry {
    client: reqwest::Client,
    lookup_url: String,
}

impl HttpRegistry {
    /// `timeout` bounds each request, connection included.
    pub fn new(base_url: &str, timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .expect("a reqwest client without TLS settings always builds");
        HttpRegistry { client, lookup_url: format!("{}/v1/nik/lookup", base_url.trim_end_matches('/')) }
    }
}

impl PopulationRegistry for HttpRegistry {
    async fn lookup(&self, niks: &[String]) -> Result<HashMap<String, RegistryAnswer>, RegistryError> {
        let url = &self.lookup_url;
        let request = LookupRequest { niks: niks.to_vec() };
        let response =
            self.client.post(url).json(&request).send().await.map_err(|source| RegistryError::Request { url: url.clone(), source })?;
        if !response.status().is_success() {
            return Err(RegistryError::Status { url: url.clone(), status: response.status().as_u16() });
        }
        let body: LookupResponse = response.json().await.map_err(|source| RegistryError::Request { url: url.clone(), source })?;
        Ok(body.answers.into_iter().map(|a| (a.nik, a.answer)).collect())
    }
}
