//! Shard-aware pacing under load: a `KinesisSink` sends to the Kinesis stand-in (`tests::standin`, which throttles
//! each shard past 1,000 records or 1 MiB in any second, as Kinesis does) at 90% of a 4-shard stream's capacity,
//! 3,600 records a second of about 600 bytes for `--seconds` (default 30), with pacing on and then off. Prints the
//! entries throttled as a share of the entries sent, and how far behind the offered load delivery ended.
//!
//! `cargo xtask bench kinesis` runs it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use benches::arg;
use kinesis_sink::{BaseCredentials, Credentials, KinesisConfig, KinesisSink};
use segment_model::Message;
use sink::{Record, Sink};
use tests::standin::StandIn;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SHARDS: u32 = 4;
/// 90% of four shards' 1,000 records a second.
const RATE: usize = 3600;
/// Records are handed over every tick, as a server's delivery workers would.
const TICK: Duration = Duration::from_millis(100);

/// About 600 bytes once enriched, from 20,000 users.
fn record(source: &Arc<str>, i: usize) -> Record {
    let body = serde_json::json!({
        "type": "track",
        "userId": format!("user-{:05}", i * 7919 % 20_000),
        "event": "Product Viewed",
        "messageId": format!("bench-{i}"),
        "properties": {"n": i, "pad": "p".repeat(400)},
    });
    let mut message = Message::from_slice(body.to_string().as_bytes()).expect("a valid message");
    message.enrich_with(time::OffsetDateTime::now_utc(), String::new);
    Record::new(source.clone(), message)
}

struct Run {
    sent: u64,
    throttled: u64,
    delivered: usize,
    late: Duration,
}

async fn run(standin: &StandIn, pacing: bool, seconds: u64) -> anyhow::Result<Run> {
    let stream = format!("bench-paced-{pacing}");
    standin.create(&stream, SHARDS, false);
    let mut config: KinesisConfig = serde_json::from_value(serde_json::json!({
        "region": "us-east-1",
        "stream": stream,
        "endpoint": standin.url,
        "pacing": pacing,
    }))?;
    config.delivery.max_attempts = 30;
    let config = config.resolve().map_err(|problems| anyhow::anyhow!("{problems:?}"))?;
    let identities = config.identity_rule(None);
    let base = BaseCredentials::Static(Credentials::new("AKIDBENCH", "bench", None, None, "bench"));
    let sink = Arc::new(KinesisSink::connect(&config, identities, &base).await);
    let source: Arc<str> = Arc::from("src_bench");
    let per_tick = RATE * TICK.as_millis() as usize / 1000;
    let ticks = seconds * 1000 / TICK.as_millis() as u64;
    let started = Instant::now();
    let mut deliveries = Vec::new();
    for tick in 0..ticks {
        tokio::time::sleep_until((started + TICK * tick as u32).into()).await;
        let records: Vec<Record> = (0..per_tick).map(|i| record(&source, tick as usize * per_tick + i)).collect();
        let sink = sink.clone();
        deliveries.push(tokio::spawn(async move { sink.deliver(records).await }));
    }
    let mut delivered = 0;
    for delivery in deliveries {
        delivered += delivery.await?.iter().filter(|o| o.is_delivered()).count();
    }
    let late = started.elapsed().saturating_sub(Duration::from_secs(seconds));
    let throttled = sink.throttled();
    Ok(Run { sent: standin.records(&stream).len() as u64 + throttled, throttled, delivered, late })
}

fn main() -> anyhow::Result<()> {
    let seconds: u64 = arg("--seconds").map_or(Ok(30), |s| s.parse()).context("--seconds")?;
    let runtime = tokio::runtime::Runtime::new()?;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let standin = runtime.block_on(StandIn::start());
    println!(
        "kinesis pacing ({cores} cores; {RATE} records/s of ~600 bytes, 90% of {SHARDS} shards, for {seconds} s, to \
         the stand-in that throttles past 1,000 records or 1 MiB per shard-second):"
    );
    let mut verdicts = benches::verdict::Verdicts::default();
    for pacing in [true, false] {
        let r = runtime.block_on(run(&standin, pacing, seconds))?;
        if pacing {
            verdicts.at_most("kinesis throttled with pacing", r.throttled as f64 * 100.0 / r.sent as f64, 1.0, "%");
            verdicts.holds(
                "kinesis: every offered record delivered with pacing",
                r.delivered as u64 == RATE as u64 * seconds,
            );
        }
        let offered = RATE as u64 * seconds;
        println!(
            "  pacing {}: {} of {offered} delivered, {} entries throttled of {} sent ({:.3}%), finished {:.1} s after \
             the load",
            if pacing { "on" } else { "off" },
            r.delivered,
            r.throttled,
            r.sent,
            r.throttled as f64 * 100.0 / r.sent as f64,
            r.late.as_secs_f64()
        );
    }
    verdicts.finish()
}
