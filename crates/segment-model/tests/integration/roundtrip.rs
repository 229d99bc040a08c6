//! Losslessness: parsing then serializing a valid message gives back the same JSON object, unknown fields and all.

use proptest::prelude::*;
use segment_model::{Message, MessageType};
use serde_json::{Map, Value};

/// Arbitrary JSON values, a few levels deep, with unusual keys and numbers.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e15f64..1e15).prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a-zA-Z_$. ]{0,8}", inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// A valid message of any call type, with arbitrary extra fields around the required ones.
fn message() -> impl Strategy<Value = Map<String, Value>> {
    (
        prop::sample::select(MessageType::ALL.to_vec()),
        prop::collection::vec(("[a-z][a-zA-Z0-9_]{0,10}", json_value()), 0..8),
        prop::collection::vec(("[a-z][a-zA-Z0-9_]{0,10}", json_value()), 0..4),
        "[^\"]{1,20}",
    )
        .prop_map(|(kind, extra, properties, id)| {
            let mut map = Map::new();
            for (key, value) in extra {
                map.insert(format!("x_{key}"), value);
            }
            map.insert("type".into(), kind.as_str().into());
            map.insert("userId".into(), id.clone().into());
            map.insert("properties".into(), Value::Object(properties.into_iter().collect()));
            match kind {
                MessageType::Track => drop(map.insert("event".into(), "Event".into())),
                MessageType::Group => drop(map.insert("groupId".into(), "g".into())),
                MessageType::Alias => drop(map.insert("previousId".into(), "p".into())),
                _ => {}
            }
            map
        })
}

proptest! {
    #[test]
    fn parse_then_serialize_is_identity(map in message()) {
        let bytes = serde_json::to_vec(&map).unwrap();
        let message = Message::from_slice(&bytes).unwrap();
        let again: Value = serde_json::from_slice(&message.to_json_vec()).unwrap();
        prop_assert_eq!(&again, &Value::Object(map.clone()));
        // Key order is kept too, so the bytes are identical.
        prop_assert_eq!(message.to_json_vec(), bytes);
    }
}
