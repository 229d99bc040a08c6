//! The identify calls.

use personas::definition::Kind;
use personas::diff::{Change, ChangeKind};
use personas::message::Computation;
use serde_json::json;

fn computation(kind: Kind) -> Computation {
    Computation {
        key: "order_completed_last_30_days".into(),
        kind,
        computation_id: "aud_123".into(),
        space_id: "spa_1".into(),
        namespace: "spa_1".into(),
    }
}

fn change(key: &str, value: &str, version: i64) -> Change {
    Change { kind: ChangeKind::Added, key: key.into(), value: value.into(), version }
}

#[test]
fn an_audience_identify_as_personas_sends_it() {
    let audience = computation(Kind::Audience);
    let message = audience.identify(&change("u:user_1", "true", 1));
    let mut json: serde_json::Value = serde_json::from_slice(&message.to_json_vec()).unwrap();
    let id = json.as_object_mut().unwrap().remove("messageId").unwrap();
    assert_eq!(
        json,
        json!({
            "type": "identify",
            "traits": {"order_completed_last_30_days": true},
            "context": {"personas": {"computation_class": "audience", "computation_id": "aud_123", "computation_key": "order_completed_last_30_days", "namespace": "spa_1", "space_id": "spa_1"}},
            "userId": "user_1"
        })
    );
    assert_eq!(id, audience.message_id(&change("u:user_1", "true", 1)));
}

#[test]
fn removals_anonymous_users_and_traits() {
    let removed =
        computation(Kind::Audience).identify(&Change { kind: ChangeKind::Removed, ..change("a:anon_1", "false", 2) });
    assert_eq!(removed.get("traits").unwrap(), json!({"order_completed_last_30_days": false}));
    assert_eq!(removed.get("anonymousId").unwrap(), "anon_1");
    assert!(removed.get("userId").is_none());
    let trait_call = computation(Kind::Trait).identify(&change("u:u", "\"gold\"", 1));
    assert_eq!(trait_call.get("traits").unwrap(), json!({"order_completed_last_30_days": "gold"}));
    assert_eq!(trait_call.get("context").unwrap()["personas"]["computation_class"], "trait");
}

#[test]
fn message_ids_are_deterministic_per_version() {
    let audience = computation(Kind::Audience);
    let first = audience.message_id(&change("u:1", "true", 1));
    assert_eq!(first, audience.message_id(&change("u:1", "true", 1)), "a retried run must reuse its IDs");
    assert_ne!(first, audience.message_id(&change("u:1", "true", 3)), "a later change needs a new ID");
    assert_ne!(first, audience.message_id(&change("u:2", "true", 1)));
    assert!(first.len() <= 100);
}
