//! Parse, validate, enrich and serialize a 700-byte track call, beside bare serde_json on the same bytes.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use segment_model::Message;

fn track(c: &mut Criterion) {
    let bytes = benches::track_700();
    let received_at = time::OffsetDateTime::now_utc();
    let mut group = c.benchmark_group("track_700B");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("serde_json_baseline", |b| {
        b.iter(|| {
            let value: serde_json::Value = serde_json::from_slice(black_box(&bytes)).unwrap();
            black_box(serde_json::to_vec(&value).unwrap())
        })
    });
    group.bench_function("tributary", |b| {
        b.iter(|| {
            let mut message = Message::from_slice(black_box(&bytes)).unwrap();
            // The sample carries its messageId, so no ID is made.
            message.enrich_with(black_box(received_at), String::new);
            black_box(message.to_json_vec())
        })
    });
    group.finish();
}

criterion_group!(benches, track);
criterion_main!(benches);
