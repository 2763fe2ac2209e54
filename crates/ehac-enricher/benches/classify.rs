//! The enricher's whole per-record CPU work: Avro decode, validate, enrich, Avro encode.
//! Run: `cargo bench -p ehac-enricher --bench classify` (single-threaded: records/s on one core).

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ehac_codec::RAW;
use ehac_domain::sample::{Flaw, SampleGenerator};
use ehac_domain::{Policy, RawDeclaration, ReferenceData};
use ehac_enricher::classify;

// As in the service's binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench(c: &mut Criterion) {
    let received = Utc.with_ymd_and_hms(2026, 12, 20, 1, 0, 0).unwrap();
    let mut generator = SampleGenerator::new(42);
    let payloads: Vec<Vec<u8>> = (0..10_000)
        .map(|i| {
            let flaw = if i % 100 == 1 { Flaw::Reference } else { Flaw::None };
            let raw = RawDeclaration {
                declaration_id: format!("bench-{i}"),
                received_at_ms: received.timestamp_millis(),
                gateway_version: "bench".into(),
                form: generator.declaration(received, "bench", flaw),
            };
            RAW.encode(&raw).unwrap()
        })
        .collect();
    let reference = ReferenceData::embedded();
    let policy = Policy::default();
    let mut group = c.benchmark_group("enricher");
    group.throughput(Throughput::Elements(payloads.len() as u64));
    group.bench_function("decode_classify_encode", |b| {
        b.iter(|| {
            payloads
                .iter()
                .enumerate()
                .map(|(i, p)| classify("raw", 0, i as i64, p, reference, &policy, 0).encode().payload.len())
                .sum::<usize>()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
