//! What governance costs a message: the server's work on the ingest benchmark's traffic (`benches::traffic`) with
//! and without the controls of `benches::governance` (ten destination filters, a 50-event tracking plan, the
//! source's privacy controls), a batch of 100 calls at a time, as `serve` does it: parse, then the plan, the
//! client's IP, the source's privacy controls, enrichment, the destination's filters and privacy, and the JSON
//! written for the spool. The difference of the two is governance's cost per message on one core.

use std::borrow::Cow;
use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use segment_model::{Batch, Message};

/// The same allocator as `tributary`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Controls {
    plan: governance::Plan,
    privacy: governance::Privacy,
    filters: governance::Filters,
}

fn controls() -> Controls {
    let file: governance::PlanFile = serde_json::from_str(&benches::governance::plan()).expect("the plan parses");
    let plan = governance::Plan::compile("bench", &file).expect("the plan compiles");
    let table: toml::Value = toml::from_str(benches::governance::FILTERS).expect("the filters parse");
    let filters: Vec<governance::FilterConfig> = table["filters"].clone().try_into().expect("filter tables");
    let filters = governance::Filters::compile(&filters, "archive").expect("the filters compile");
    let table: toml::Value = toml::from_str(benches::governance::SOURCE_CONTROLS).expect("the controls parse");
    let privacy: governance::PrivacyConfig<toml::Value> = table["privacy"].clone().try_into().expect("a privacy table");
    let key = benches::governance::PRIVACY_KEY.as_bytes();
    let privacy = governance::Privacy::compile(&privacy, Some(key)).expect("the privacy controls compile");
    Controls { plan, privacy, filters }
}

/// The messages of one body, as `serve` takes them.
fn parse(body: &[u8]) -> Vec<Message> {
    let batch = Batch::from_slice(body).expect("a batch");
    let mut messages: Vec<Message> = batch.into_messages().into_iter().map(|m| m.expect("a valid call")).collect();
    messages.iter_mut().for_each(|m| drop(m.take_write_key()));
    messages
}

/// The server's work on one body, with `controls` or without.
fn serve(body: &[u8], controls: Option<&Controls>, received_at: time::OffsetDateTime) -> Vec<u8> {
    let mut messages = parse(body);
    if let Some(controls) = controls {
        for message in &mut messages {
            let checked = controls.plan.check(message);
            if !checked.violations.is_empty() {
                governance::Plan::omit(message, &checked);
            }
        }
    }
    for message in &mut messages {
        message.fill_ip("203.0.113.7", false);
    }
    if let Some(controls) = controls {
        messages.iter_mut().for_each(|m| drop(black_box(controls.privacy.apply(m))));
    }
    let mut json = Vec::with_capacity(messages.iter().map(Message::json_size).sum());
    for message in &mut messages {
        // The traffic's calls carry their messageIds: no ID is made.
        message.enrich_with(received_at, String::new);
        message.write_json(&mut json);
    }
    if let Some(controls) = controls {
        for message in &messages {
            let mut filtered = Cow::Borrowed(message);
            let applied = controls.filters.apply_to("src_bench", &mut filtered);
            if let (true, Cow::Owned(changed)) = (applied.kept, filtered) {
                black_box(changed.to_json_vec());
            }
        }
    }
    json
}

fn governance(c: &mut Criterion) {
    let traffic = benches::traffic::Traffic::new(0);
    let bodies: Vec<bytes::Bytes> = (0..64).map(|_| traffic.next().body).collect();
    let controls = controls();
    let received_at = time::OffsetDateTime::now_utc();
    let mut group = c.benchmark_group("governance");
    group.throughput(Throughput::Elements(benches::traffic::PER_REQUEST));
    let mut at = 0;
    group.bench_function("without", |b| {
        b.iter(|| {
            at = (at + 1) % bodies.len();
            black_box(serve(black_box(&bodies[at]), None, received_at))
        })
    });
    group.bench_function("with", |b| {
        b.iter(|| {
            at = (at + 1) % bodies.len();
            black_box(serve(black_box(&bodies[at]), Some(&controls), received_at))
        })
    });
    // Each part alone, on messages parsed fresh for it (the members a message keeps are part of the cost).
    let fresh = |at: &mut usize| {
        *at = (*at + 1) % bodies.len();
        parse(&bodies[*at])
    };
    group.bench_function("plan", |b| {
        b.iter_batched(
            || fresh(&mut at),
            |messages| messages.iter().map(|m| controls.plan.check(m).violations.len()).sum::<usize>(),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("privacy", |b| {
        b.iter_batched(
            || fresh(&mut at),
            |mut messages| {
                messages.iter_mut().for_each(|m| drop(black_box(controls.privacy.apply(m))));
                messages
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("filters", |b| {
        b.iter_batched(
            || fresh(&mut at),
            |messages| {
                let mut kept = 0;
                for message in &messages {
                    let mut filtered = Cow::Borrowed(message);
                    kept += usize::from(controls.filters.apply_to("src_bench", &mut filtered).kept);
                    black_box(filtered);
                }
                kept
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, governance);
criterion_main!(benches);
