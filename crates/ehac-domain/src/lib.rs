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
//! - [`enrich`]: the columns analysts and health officers need that the form does not carry.
//! - [`reference`]: airports and Indonesian region codes, embedded at build time.
//! - [`sample`]: realistic synthetic declarations for demos, tests and load generation.

pub mod enrich;
pub mod form;
pub mod record;
pub mod reference;
pub mod sample;
pub mod validate;

pub use enrich::enrich;
pub use form::DeclarationForm;
pub use record::{EnrichedDeclaration, Enrichment, RawDeclaration, Rejection};
pub use reference::ReferenceData;
pub use validate::{check_form, check_references, ErrorCode, FieldError};

/// Runs every check on a raw declaration and enriches it: what the enricher does to each record.
pub fn accept(raw: RawDeclaration, reference: &ReferenceData, enricher_version: &str) -> Result<EnrichedDeclaration, (RawDeclaration, Vec<FieldError>)> {
    let received_at = chrono::DateTime::from_timestamp_millis(raw.received_at_ms).unwrap_or_default();
    let checked = check_form(&raw.form).and_then(|facts| check_references(&raw.form, &facts, reference, received_at));
    match checked {
        Ok(checked) => {
            let enrichment = enrich(&raw.form, &checked, reference, enricher_version);
            Ok(EnrichedDeclaration { raw, enrichment })
        }
        Err(errors) => Err((raw, errors)),
    }
}
