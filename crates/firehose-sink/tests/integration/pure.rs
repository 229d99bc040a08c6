//! The pure parts: the config's checks, the mapping of messages to delivery streams, and records and calls within
//! Firehose's limits.

use firehose_sink::record::{MAX_BATCH_BYTES, MAX_RECORD_BYTES, TooLarge, calls, frame};
use firehose_sink::{FirehoseConfig, Mapping, MappingRow};

fn config(text: &str) -> FirehoseConfig {
    toml::from_str(text).unwrap()
}

fn rows(pairs: &[(&str, &str)]) -> Vec<MappingRow> {
    pairs
        .iter()
        .map(|(event, stream)| MappingRow { event: (*event).to_owned(), stream: (*stream).to_owned() })
        .collect()
}

fn names(streams: Vec<std::sync::Arc<str>>) -> Vec<String> {
    streams.iter().map(|s| s.to_string()).collect()
}

#[test]
fn the_table_reads_as_segment_names_it_and_unknown_keys_are_refused() {
    let table = config(
        r#"
        region = "us-west-2"
        role_address = "arn:aws:iam::123456789012:role/tributary-firehose"
        secret_id = { env = "FIREHOSE_SECRET_ID" }
        mapping = [
          { event = "Order Completed", stream = "orders" },
          { event = "page", stream = "pages" },
          { event = "*", stream = "everything" },
        ]
        "#,
    );
    assert!(table.problems().is_empty(), "{:?}", table.problems());
    assert_eq!(table.mapping.len(), 3);
    assert_eq!(Mapping::all_streams(&table.mapping), ["orders", "pages", "everything"]);
    let unknown = toml::from_str::<FirehoseConfig>("region = \"us-west-2\"\nmapping = []\nstream = \"x\"\n");
    assert!(unknown.unwrap_err().to_string().contains("unknown field `stream`"));
    let row =
        toml::from_str::<FirehoseConfig>("region = \"us-west-2\"\nmapping = [{ event = \"*\", streams = \"x\" }]\n");
    assert!(row.unwrap_err().to_string().contains("unknown field `streams`"));
}

#[test]
fn every_problem_names_its_key_and_row() {
    let table = config(
        r#"
        region = "Oregon"
        role_address = "tributary-firehose"
        endpoint = "localhost:4566"
        mapping = [
          { event = "", stream = "ok" },
          { event = "page", stream = "has space" },
          { event = "PAGE", stream = "pages" },
          { event = "page", stream = "pages" },
          { event = "track", stream = "" },
        ]
        "#,
    );
    let problems: Vec<String> = table.problems().iter().map(|p| format!("{}: {}", p.key, p.message)).collect();
    let has = |wanted: &str| problems.iter().any(|p| p.contains(wanted));
    assert!(has("region: \"Oregon\" is not an AWS region"), "{problems:?}");
    assert!(has("role_address: \"tributary-firehose\" is not an IAM role ARN"), "{problems:?}");
    assert!(has("endpoint: \"localhost:4566\" is not an http:// or https:// URL"), "{problems:?}");
    assert!(has("mapping: row 1 ({ event = \"\", stream = \"ok\" }): its event is empty"), "{problems:?}");
    assert!(
        has("row 2 ({ event = \"page\", stream = \"has space\" }): the stream \"has space\" holds ' '"),
        "{problems:?}"
    );
    assert!(has("row 4 ({ event = \"page\", stream = \"pages\" }) repeats an earlier row"), "{problems:?}");
    assert!(
        has("row 5 ({ event = \"track\", stream = \"\" }): the stream \"\" is not 1 to 64 characters long"),
        "{problems:?}"
    );
    assert_eq!(problems.len(), 7, "{problems:?}");
    let long = "s".repeat(65);
    let empty = config(&format!("region = \"us-east-1\"\nmapping = [{{ event = \"*\", stream = \"{long}\" }}]\n"));
    assert!(empty.problems()[0].message.contains("1 to 64"), "{:?}", empty.problems());
    let none = config("region = \"us-east-1\"\nmapping = []\n");
    assert_eq!(none.problems()[0].key, "mapping");
}

#[test]
fn messages_go_to_every_stream_their_event_or_type_maps_to_once_each() {
    let mapping = Mapping::new(&rows(&[
        ("Order Completed", "orders"),
        ("page", "pages"),
        ("track", "tracks"),
        ("*", "everything"),
        ("order completed", "orders"),
        ("IDENTIFY", "people"),
    ]));
    // The event's name, without regard to case, then the call type, then every message's.
    assert_eq!(names(mapping.streams("track", Some("ORDER COMPLETED"))), ["orders", "tracks", "everything"]);
    assert_eq!(names(mapping.streams("track", Some("Signed Up"))), ["tracks", "everything"]);
    assert_eq!(names(mapping.streams("page", None)), ["pages", "everything"]);
    assert_eq!(names(mapping.streams("identify", None)), ["people", "everything"]);
    // An event's name counts only for a track call: a page named "Order Completed" is a page.
    assert_eq!(names(mapping.streams("page", Some("Order Completed"))), ["pages", "everything"]);
    // Read from the message's JSON.
    let json = br#"{"type":"track","event":"Order Completed","properties":{"event":"page","type":"page"}}"#;
    assert_eq!(names(mapping.streams_of(json)), ["orders", "tracks", "everything"]);
    assert_eq!(names(mapping.streams_of(b"not json")), ["everything"]);
    // Without a `*` row, a message no row matches goes nowhere.
    let narrow = Mapping::new(&rows(&[("Order Completed", "orders")]));
    assert!(narrow.streams("screen", None).is_empty());
    assert!(narrow.streams_of(br#"{"type":"track","event":"Viewed"}"#).is_empty());
}

#[test]
fn a_record_is_the_json_and_a_newline_within_firehoses_limit() {
    assert_eq!(frame(br#"{"a":1}"#).unwrap(), b"{\"a\":1}\n");
    let largest = vec![b'x'; MAX_RECORD_BYTES - 1];
    assert_eq!(frame(&largest).unwrap().len(), MAX_RECORD_BYTES);
    let over = vec![b'x'; MAX_RECORD_BYTES];
    assert_eq!(frame(&over), Err(TooLarge { bytes: MAX_RECORD_BYTES + 1 }));
    assert!(TooLarge { bytes: 1_024_001 }.to_string().contains("at most 1024000"));
}

#[test]
fn calls_hold_at_most_500_records_and_4_mib() {
    assert!(calls(Vec::new()).is_empty());
    assert_eq!(calls(vec![100; 1_201]), [0..500, 500..1_000, 1_000..1_201]);
    // Five records of 1,000 KiB: four fit in 4 MiB (4,096,000 of 4,194,304 bytes), the fifth goes in the next.
    assert_eq!(calls(vec![MAX_RECORD_BYTES; 5]), [0..4, 4..5]);
    let exact = MAX_BATCH_BYTES / 2;
    assert_eq!(calls(vec![exact, exact, 1]), [0..2, 2..3]);
}
