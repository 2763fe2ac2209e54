//! Validate + enrich per record: what the enricher's CPU goes on, apart from Avro and Kafka.
//! Run: `cargo bench -p ehac-domain --bench accept`. Issue 3's target: 200,000 records/s on
//! one core (criterion runs single-threaded).

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ehac_domain::sample::{Flaw, SampleGenerator};
use ehac_domain::{accept, validate, Policy, RawDeclaration, ReferenceData};

fn records() -> Vec<RawDeclaration> {
    let received = Utc.with_ymd_and_hms(2026, 12, 20, 1, 0, 0).unwrap();
    let mut generator = SampleGenerator::new(42);
    (0..10_000)
        .map(|i| {
            // The demo's mix: 97% valid, the rest failing a form or a reference rule.
            let flaw = match i % 100 {
                0 => Flaw::Form,
                1 => Flaw::Reference,
                _ => Flaw::None,
            };
            RawDeclaration {
                declaration_id: format!("bench-{i}"),
                received_at_ms: received.timestamp_millis(),
                gateway_version: "bench".into(),
                form: generator.declaration(received, "bench", flaw),
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let reference = ReferenceData::embedded();
    let policy = Policy::default();
    let records = records();
    let mut group = c.benchmark_group("declarations");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.bench_function("validate", |b| {
        b.iter(|| {
            records
                .iter()
                .filter(|r| validate(&r.form, reference, &policy, Utc.timestamp_millis_opt(r.received_at_ms).unwrap()).is_ok())
                .count()
        })
    });
    group.bench_function("validate_and_enrich", |b| {
        // accept() takes the record by value, as the enricher does after decoding; cloning it
        // here is part of the measured time, so the figure is a lower bound.
        b.iter(|| records.iter().filter(|r| accept((*r).clone(), reference, &policy, "bench").is_ok()).count())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
