//! Streams for one test: unique names, creation, and reading everything back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_credential_types::Credentials;
use kinesis_sink::setup::admin::{self, ReadRecord, StartAt};

use crate::env::sdk_config;

/// The Kinesis client the suites read streams with, named for suites that do not depend on the SDK themselves.
pub type KinesisClient = aws_sdk_kinesis::Client;

/// A shard as ListShards describes it.
pub type Shard = aws_sdk_kinesis::types::Shard;

/// A stream name no other test in this run uses.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{n}-{nanos}", std::process::id())
}

/// A Kinesis client for an emulator.
pub async fn client(url: &str, credentials: Credentials) -> aws_sdk_kinesis::Client {
    aws_sdk_kinesis::Client::new(&sdk_config(url, credentials).await)
}

/// Creates `name` with `shards` shards and polls until it is ACTIVE.
pub async fn create(client: &aws_sdk_kinesis::Client, name: &str, shards: i32) {
    let new = admin::NewStream { shards: Some(shards), kms_key: None };
    admin::create(&admin::Client::from_sdk(client.clone()), name, &new, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("creating stream {name}: {e}"));
}

/// Every record in every shard of `name`, from the oldest. A read the emulator fails (moto answers an occasional
/// GetRecords under load with a bare 500) is read again from the start, twice at most.
pub async fn read_all(client: &aws_sdk_kinesis::Client, name: &str) -> Vec<ReadRecord> {
    let mut attempt = 0;
    loop {
        let mut records = Vec::new();
        let read = admin::read(&admin::Client::from_sdk(client.clone()), name, StartAt::TrimHorizon, false, |r| {
            records.push(r);
            true
        })
        .await;
        match read {
            Ok(_) => return records,
            Err(e) if attempt < 2 => {
                attempt += 1;
                eprintln!("reading stream {name} failed ({e}); reading it again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("reading stream {name}: {e}"),
        }
    }
}

/// Every record of `name`, read again until there are at least `count` or about 20 seconds have passed.
pub async fn read_at_least(client: &aws_sdk_kinesis::Client, name: &str, count: usize) -> Vec<ReadRecord> {
    let mut records = Vec::new();
    for _ in 0..100 {
        records = read_all(client, name).await;
        if records.len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    records
}
