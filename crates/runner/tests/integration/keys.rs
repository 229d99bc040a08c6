//! Kinesis partition key paths, explicit hash keys and the `messageId` fallback, read back from every Kinesis
//! emulator, with the fallbacks counted in `/metrics`.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::scratch;
use crate::server::{Server, folder};

/// 2^128 - 1, the top of the hash key space: the last shard's.
const TOP: &str = "340282366920938463463374607431768211455";

#[tokio::test]
async fn partition_key_paths_and_explicit_hash_keys_land_in_the_stream() {
    use tests::env::dummy_credentials;
    use tests::stream::{client, create, read_at_least, unique_name};
    for (emulator, url) in tests::env::kinesis_endpoints() {
        let stream = unique_name("keys");
        let admin = client(&url, dummy_credentials()).await;
        create(&admin, &stream, 2).await;
        let destination = format!(
            "name = \"keyed\"\ntype = \"kinesis\"\n[kinesis]\nregion = \"us-east-1\"\nstream = {stream:?}\n\
             endpoint = {url:?}\npartition_key = [\"context.groupId\", \"properties.account_id\"]\n\
             explicit_hash_key = \"properties.hash\"\n[kinesis.delivery]\nlinger_ms = 5\n"
        );
        let config = folder(&format!("keys-{emulator}"), &[("keyed", &destination)]);
        let server = Server::start(&config, &scratch(&format!("keys-{emulator}-spool")), &[]).await;
        let http = reqwest::Client::new();
        // Each explicit hash key is the start of a shard's range. (moto finds no shard for the top of the space,
        // 2^128 - 1, though Kinesis ranges include their end: the start is a key every emulator places alike.)
        let shards = admin.list_shards().stream_name(&stream).send().await.unwrap();
        fn range(shard: &tests::stream::Shard) -> (String, String) {
            let range = shard.hash_key_range().unwrap();
            (range.starting_hash_key().to_owned(), range.ending_hash_key().to_owned())
        }
        let first = shards.shards().iter().find(|s| range(s).0 == "0").unwrap();
        let last = shards.shards().iter().find(|s| range(s).1 == TOP).unwrap();
        let high = range(last).0;
        let messages = [
            json!({"userId": "u1", "event": "group", "context": {"groupId": "g-7"}, "properties": {"account_id": 3}}),
            json!({"userId": "u2", "event": "number", "properties": {"account_id": 42}}),
            json!({"userId": "u3", "event": "fallback", "messageId": "m-fallback", "properties": {"account_id": ""}}),
            json!({"userId": "u4", "event": "low", "properties": {"account_id": "a", "hash": "0"}}),
            json!({"userId": "u5", "event": "high", "properties": {"account_id": "a", "hash": high}}),
            json!({"userId": "u6", "event": "bad hash", "properties": {"account_id": "a", "hash": "-1"}}),
        ];
        for message in &messages {
            let (status, answer) = server.post(&http, "/v1/track", message).await;
            assert_eq!((status, answer), (200, json!({"success": true})), "{emulator}: {message}");
        }
        let records = read_at_least(&admin, &stream, messages.len()).await;
        let events: Vec<String> =
            records.iter().map(|r| serde_json::from_slice::<Value>(&r.data).unwrap()["event"].to_string()).collect();
        assert_eq!(records.len(), messages.len(), "{emulator}: {events:?}");
        let by_event: HashMap<String, (String, String)> = records
            .iter()
            .map(|r| {
                let data: Value = serde_json::from_slice(&r.data).unwrap();
                (data["event"].as_str().unwrap().to_owned(), (r.partition_key.clone(), r.shard_id.clone()))
            })
            .collect();
        let key = |event: &str| by_event[event].0.as_str();
        assert_eq!(key("group"), "g-7", "{emulator}: the first path that holds a value");
        assert_eq!(key("number"), "42", "{emulator}: a number as written");
        assert_eq!(key("fallback"), "m-fallback", "{emulator}: no path held a value: the messageId");
        assert_eq!(key("low"), "a");
        // The explicit hash keys pick the first and the last shard, whatever the partition key's MD5 says.
        assert_eq!(by_event["low"].1, first.shard_id(), "{emulator}");
        assert_eq!(by_event["high"].1, last.shard_id(), "{emulator}");
        assert!(by_event.contains_key("bad hash"), "{emulator}: a bad hash key is left out, the record still sent");

        let metrics = http.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
        for line in [
            "tributary_partition_key_fallbacks_total{destination=\"keyed\"} 1",
            "tributary_explicit_hash_keys_ignored_total{destination=\"keyed\"} 1",
        ] {
            assert!(metrics.contains(line), "{emulator}: no {line:?} in\n{metrics}");
        }
    }
}
