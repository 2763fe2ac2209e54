//! The signed e-HAC pass in every 202: what the traveller shows at the arrival gate, which the
//! gate verifies offline (`ehac-pass`, docs/PASS.md). Signed here, at the front door, so a pass
//! exists even while Kafka is away and the declaration waits in the spool.

use std::path::Path;

use chrono::{DateTime, Utc};
use ehac_domain::validate::Checked;
use ehac_domain::{DeclarationForm, Policy};
use ehac_pass::{IssuePolicy, IssuingKey, PassClaims, Signer, Triage};
use sha2::Digest;

/// Signs passes with the gateway's regional issuing key.
pub struct PassIssuer {
    signer: Signer,
}

impl PassIssuer {
    /// Reads the issuing key (PKCS#8 PEM or JWK; `region` names a PEM key's region).
    pub fn from_file(path: &Path, region: Option<&str>, valid_after_arrival: chrono::Duration) -> anyhow::Result<PassIssuer> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading the pass issuing key {}: {e}", path.display()))?;
        let key = IssuingKey::parse(&text, region).map_err(|e| anyhow::anyhow!("the pass issuing key {}: {e}", path.display()))?;
        tracing::info!(kid = %key.kid(), region = key.region(), "passes signed with this issuing key");
        Ok(PassIssuer { signer: Signer::new(&key, IssuePolicy { valid_after_arrival }) })
    }

    /// The pass for an accepted declaration, or `None` (logged) when none can be issued: a
    /// trip whose arrival plus the validity window is already past.
    pub fn issue(
        &self,
        declaration_id: &str,
        form: &DeclarationForm,
        checked: &Checked<'_>,
        policy: &Policy,
        now: DateTime<Utc>,
    ) -> Option<String> {
        let claims = claims(declaration_id, form, checked, policy);
        match self.signer.issue(&claims, now) {
            Ok(pass) => Some(pass),
            Err(e) => {
                tracing::info!(declaration_id, error = %e, "no pass issued");
                None
            }
        }
    }
}

/// The pass's claims: the minimum a gate officer needs, and the triage from the same pure rule
/// the enricher applies (`ehac_domain::triage`), so the pass and the warehouse agree.
pub fn claims(declaration_id: &str, form: &DeclarationForm, checked: &Checked<'_>, policy: &Policy) -> PassClaims {
    let triage = Triage::parse(ehac_domain::triage(form, checked, policy)).unwrap_or(Triage::Yellow);
    // The same declaration (a client retry) gets the same pass id, so revoking one revokes all.
    let digest = sha2::Sha256::digest(declaration_id.as_bytes());
    let mut pass_id = [0u8; 16];
    pass_id.copy_from_slice(&digest[..16]);
    PassClaims {
        pass_id,
        traveller_name: form.traveller.full_name.clone(),
        date_of_birth: checked.date_of_birth,
        flight: form.trip.flight_number.clone(),
        arrival_airport: form.trip.arrival_port.clone(),
        arrival_at: checked.arrival_at,
        arrival_date: checked.arrival_at.with_timezone(&checked.arrival.time_zone()).date_naive(),
        triage,
    }
}
