//! Building PutRecords entries: encode 500 records, cut them into requests, and make the SDK's entries. No network.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kinesis_sink::DataEncoding;
use kinesis_sink::request_builder::RequestBuilder;
use kinesis_sink::sdk::sdk_entries;
use segment_model::Message;
use sink::Record;

fn entries(c: &mut Criterion) {
    let bytes = benches::track_700();
    let source: Arc<str> = Arc::from("src_web");
    let records: Vec<Record> = (0..500)
        .map(|i| {
            let body = String::from_utf8(bytes.clone()).unwrap().replace("user_1234567890", &format!("user_{i:010}"));
            let mut message = Message::from_slice(body.as_bytes()).unwrap();
            message.enrich_with(time::OffsetDateTime::now_utc(), String::new);
            Record::new(source.clone(), message)
        })
        .collect();
    let mut group = c.benchmark_group("put_records_entries");
    group.throughput(Throughput::Elements(records.len() as u64));
    for (name, data_encoding) in [("json", DataEncoding::Json), ("base64", DataEncoding::Base64)] {
        let builder = RequestBuilder {
            use_message_id: false,
            data_encoding,
            max_record_bytes: 1 << 20,
            max_batch_records: 500,
            max_batch_bytes: 5 << 20,
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                let entries: Vec<_> = black_box(&records).iter().map(|r| builder.encode(r).unwrap()).collect();
                let requests = builder.split(&entries);
                let built: Vec<_> = requests.into_iter().map(|range| sdk_entries(&entries[range])).collect();
                black_box(built)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, entries);
criterion_main!(benches);
