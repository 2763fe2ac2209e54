//! Seed inputs per fuzz target, from the sample generator and the real encoders: a fuzzer
//! that starts from a valid declaration, message or spool reaches the deep code in seconds
//! rather than hours. `ehac-fuzz-seeds DIR` writes them as `DIR/<target>/seed-<n>`; the ones
//! under `fuzz/regressions/` are committed, and the regression test replays them too.

use ehac_codec::{ENRICHED, RAW, REJECTION};
use ehac_domain::sample::{Flaw, SampleGenerator};
use ehac_domain::{enrich, validate, EnrichedDeclaration, FieldError, Policy, RawDeclaration, ReferenceData, Rejection};
use ehac_spool::encode_frame;

use crate::form::received_at;
use crate::spool::{cursor_bytes, SpoolDir};

/// The seeds of `target` (a name in [`crate::TARGETS`]).
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "form" => forms().into_iter().map(|form| serde_json::to_vec_pretty(&form).unwrap()).collect(),
        "avro_raw" => raws().iter().map(|raw| RAW.encode(raw).unwrap()).collect(),
        "avro_enriched" => enriched().iter().map(|record| ENRICHED.encode(record).unwrap()).collect(),
        "avro_rejection" => rejections().iter().map(|record| REJECTION.encode(record).unwrap()).collect(),
        "spool_frame" => {
            vec![encode_frame(b"0190f0f0-0000-7000-8000-000000000000", &RAW.encode(&raws()[0]).unwrap()), encode_frame(b"", b"")]
        }
        "spool_dir" => spool_dirs().iter().map(SpoolDir::to_input).collect(),
        other => panic!("no fuzz target {other}"),
    }
}

/// Valid declarations, and ones that fail the form check and the reference check.
fn forms() -> Vec<ehac_domain::DeclarationForm> {
    let mut samples = SampleGenerator::new(13);
    [Flaw::None, Flaw::None, Flaw::Form, Flaw::Reference]
        .iter()
        .map(|&flaw| samples.declaration(received_at(), "kiosk-cgk-t3-07", flaw))
        .collect()
}

fn raws() -> Vec<RawDeclaration> {
    forms()
        .into_iter()
        .enumerate()
        .map(|(i, form)| RawDeclaration {
            declaration_id: format!("0190f0f0-0000-7000-8000-00000000000{i}"),
            received_at_ms: received_at().timestamp_millis(),
            gateway_version: "0.1.0".into(),
            form,
        })
        .collect()
}

fn enriched() -> Vec<EnrichedDeclaration> {
    let reference = ReferenceData::embedded();
    raws()
        .into_iter()
        .filter_map(|raw| {
            let checked = validate(&raw.form, reference, &Policy::default(), received_at()).ok()?;
            let enrichment = enrich(&raw.form, &checked, reference, &Policy::default(), "0.1.0");
            Some(EnrichedDeclaration { raw, enrichment })
        })
        .collect()
}

fn rejections() -> Vec<Rejection> {
    let raw = &raws()[2];
    let errors = validate(&raw.form, ReferenceData::embedded(), &Policy::default(), received_at()).err().unwrap_or_default();
    vec![
        Rejection {
            declaration_id: Some(raw.declaration_id.clone()),
            client_id: raw.form.client_id.clone(),
            service: "ehac-enricher".into(),
            service_version: "0.1.0".into(),
            source_topic: "ehac.declarations.raw".into(),
            source_partition: 3,
            source_offset: 42,
            rejected_at_ms: received_at().timestamp_millis(),
            errors,
            payload: RAW.encode(raw).unwrap(),
            payload_json: serde_json::to_string(&raw.form).unwrap(),
        },
        Rejection {
            declaration_id: None,
            client_id: String::new(),
            service: "ehac-sink".into(),
            service_version: "0.1.0".into(),
            source_topic: "ehac.declarations.raw".into(),
            source_partition: 0,
            source_offset: 0,
            rejected_at_ms: 0,
            errors: vec![FieldError { code: "undecodable".into(), field: String::new(), message: "not Avro".into() }],
            payload: vec![0, 0xC3, 0xFF],
            payload_json: String::new(),
        },
    ]
}

/// A clean spool of two segments with a cursor, one with a torn tail, and one whose cursor
/// names a segment that is gone.
fn spool_dirs() -> Vec<SpoolDir> {
    let frame = |i: u64| encode_frame(format!("key-{i}").as_bytes(), format!("payload {i}").as_bytes());
    let run = |from: u64, n: u64| (from..from + n).flat_map(frame).collect::<Vec<u8>>();
    let mut torn = run(0, 3);
    torn.truncate(torn.len() - 5);
    vec![
        SpoolDir { cursor: Some(cursor_bytes(0, frame(0).len() as u64, 1)), segments: vec![(0, run(0, 2)), (2, run(2, 2))] },
        SpoolDir { cursor: None, segments: vec![(7, torn)] },
        SpoolDir { cursor: Some(cursor_bytes(1, 0, 1)), segments: vec![(0, run(0, 1)), (4, run(4, 1)), (5, vec![])] },
    ]
}
