//! The calls of a change: identify, track and group, as Engage sends them.

use personas::definition::{Call, Kind};
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
        track_event: "Trait Computed".into(),
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
    assert_eq!(id, audience.message_id(&change("u:user_1", "true", 1), Call::Identify));
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
    let first = audience.message_id(&change("u:1", "true", 1), Call::Identify);
    assert_eq!(
        first,
        audience.message_id(&change("u:1", "true", 1), Call::Identify),
        "a retried run must reuse its IDs"
    );
    assert_ne!(first, audience.message_id(&change("u:1", "true", 3), Call::Identify), "a later change needs a new ID");
    assert_ne!(first, audience.message_id(&change("u:2", "true", 1), Call::Identify));
    assert!(first.len() <= 100);
}

fn without_id(message: &segment_model::Message) -> (serde_json::Value, String) {
    let mut json: serde_json::Value = serde_json::from_slice(&message.to_json_vec()).unwrap();
    let id = json.as_object_mut().unwrap().remove("messageId").unwrap();
    (json, id.as_str().unwrap().to_owned())
}

const PERSONAS: &str = r#"{"computation_class": "audience", "computation_id": "aud_123", "computation_key": "order_completed_last_30_days", "namespace": "spa_1", "space_id": "spa_1"}"#;

#[test]
fn an_audience_as_track_events() {
    let audience = computation(Kind::Audience);
    let personas: serde_json::Value = serde_json::from_str(PERSONAS).unwrap();
    let (entered, entered_id) = without_id(&audience.call(&change("u:user_1", "true", 1), Call::Track));
    assert_eq!(
        entered,
        json!({
            "type": "track",
            "event": "Audience Entered",
            "properties": {"audience_key": "order_completed_last_30_days", "order_completed_last_30_days": true},
            "context": {"personas": personas},
            "userId": "user_1"
        })
    );
    let left = Change { kind: ChangeKind::Removed, ..change("u:user_1", "false", 2) };
    let (exited, exited_id) = without_id(&audience.call(&left, Call::Track));
    assert_eq!(exited["event"], "Audience Exited");
    assert_eq!(
        exited["properties"],
        json!({"audience_key": "order_completed_last_30_days", "order_completed_last_30_days": false})
    );
    let (_, identify_id) = without_id(&audience.call(&change("u:user_1", "true", 1), Call::Identify));
    assert_ne!(entered_id, identify_id, "the track and identify calls of one change need their own IDs");
    assert_ne!(entered_id, exited_id);
    assert_eq!(entered_id, audience.message_id(&change("u:user_1", "true", 1), Call::Track));
}

#[test]
fn a_trait_as_track_events_with_its_event_name() {
    let mut revenue = computation(Kind::Trait);
    revenue.key = "total_revenue_180_days".into();
    let (call, _) = without_id(&revenue.call(&change("u:u", "450.0", 1), Call::Track));
    assert_eq!(call["event"], "Trait Computed");
    assert_eq!(call["properties"], json!({"trait_key": "total_revenue_180_days", "total_revenue_180_days": 450.0}));
    assert_eq!(call["context"]["personas"]["computation_class"], "trait");
    revenue.track_event = "Revenue Updated".into();
    assert_eq!(revenue.call(&change("u:u", "450.0", 1), Call::Track).get("event").unwrap(), "Revenue Updated");
}

#[test]
fn an_account_trait_as_group_calls() {
    let mut plan = computation(Kind::AccountTrait);
    plan.key = "account_plan".into();
    let key =
        personas::Identity::Account { group: "acme:1".into(), user: Box::new(personas::Identity::User("u9".into())) }
            .storage_key();
    let (group, _) = without_id(&plan.call(&change(&key, "\"enterprise\"", 1), Call::Group));
    assert_eq!(group["type"], "group");
    assert_eq!(group["groupId"], "acme:1");
    assert_eq!(group["userId"], "u9");
    assert_eq!(group["traits"], json!({"account_plan": "enterprise"}));
    assert_eq!(group["context"]["personas"]["computation_class"], "account_trait");
    let (track, _) = without_id(&plan.call(&change(&key, "\"enterprise\"", 1), Call::Track));
    assert_eq!(track["context"]["groupId"], "acme:1");
    assert_eq!(track["properties"]["trait_key"], "account_plan");
}

#[test]
fn storage_keys_round_trip_whatever_the_ids_hold() {
    use personas::Identity;
    for identity in [
        Identity::User("u:1".into()),
        Identity::Anonymous("".into()),
        Identity::Account { group: "g:12:x".into(), user: Box::new(Identity::Anonymous("a".into())) },
        Identity::Account { group: "é".into(), user: Box::new(Identity::User("1:u:x".into())) },
    ] {
        assert_eq!(Identity::from_storage_key(&identity.storage_key()), Some(identity));
    }
    assert_eq!(Identity::from_storage_key("g:99:short"), None);
    assert_eq!(Identity::from_storage_key("x:1"), None);
}
