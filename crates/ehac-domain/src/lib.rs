//! The e-HAC travel health declaration: what a traveller files, how it is checked and what the
//! pipeline adds to it.
//!
//! Everything here is a pure function of its inputs (the form, the reference data, the clock
//! value passed in). Services call into this crate; it never talks to Kafka, ClickHouse or the
//! network, so every rule can be unit-tested and benchmarked on its own.
//!
//! - [`form`]: the declaration as submitted (JSON at the gateway, Avro on the raw topic).
//! - [`record`]: the records that travel between services (raw, enriched, rejected).
//! - [`validate`]: form and reference checks, each failure a stable code plus a field path.
//! - [`mrz`], [`country`]: passport machine-readable zones and nationality codes.
//! - [`pseudonym`]: the keyed traveller key analysts count and link trips by.
//! - [`verification`]: what a population registry said about a citizen's NIK.
//! - [`enrich`]: the columns analysts and health officers need that the form does not carry.
//! - [`reference`]: airports and Indonesian region codes, embedded at build time.
//! - [`sample`]: realistic synthetic declarations for demos, tests and load generation.

pub mod country;
pub mod enrich;
pub mod form;
pub mod mrz;
pub mod pseudonym;
pub mod record;
pub mod reference;
pub mod sample;
pub mod timefmt;
pub mod validate;
pub mod verification;

pub use enrich::{enrich, triage};
pub use form::DeclarationForm;
pub use pseudonym::{Pepper, TravellerIdentity};
pub use record::{EnrichedDeclaration, Enrichment, RawDeclaration, Rejection};
pub use reference::ReferenceData;
pub use validate::{check_form, check_references, validate, ErrorCode, FieldError, Policy, Warning};
pub use verification::VerificationStatus;

/// Runs every check on a raw declaration and enriches it: what the enricher does to each record.
/// Time rules are judged against the gateway's receive time, so the outcome does not depend on
/// when (or how often) the record is processed. A citizen's NIK verification starts `pending`.
// The error hands the declaration back, by value, to become a rejection: it is as large as the
// success, and boxing it would only add an allocation per rejected record.
#[allow(clippy::result_large_err)]
pub fn accept(
    raw: RawDeclaration,
    reference: &ReferenceData,
    policy: &Policy,
    enricher_version: &str,
) -> Result<EnrichedDeclaration, (RawDeclaration, Vec<FieldError>)> {
    let received_at = chrono::DateTime::from_timestamp_millis(raw.received_at_ms).unwrap_or_default();
    match validate(&raw.form, reference, policy, received_at) {
        Ok(checked) => {
            let enrichment = enrich(&raw.form, &checked, reference, policy, enricher_version);
            Ok(EnrichedDeclaration { raw, enrichment })
        }
        Err(errors) => Err((raw, errors)),
    }
}
