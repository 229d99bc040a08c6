//! The state store.

use personas::diff::{Change, ChangeKind, Stored};
use personas::state::StateStore;

fn stored(store: &StateStore, computation: &str) -> Vec<Stored> {
    store.with_stored(computation, |rows| rows.collect()).unwrap()
}

#[test]
fn recorded_changes_stream_back_in_key_order() {
    let dir = std::env::temp_dir().join(format!("tributary-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut store = StateStore::open(&dir).unwrap();
    let change = |kind, key: &str, value: &str, version| Change { kind, key: key.into(), value: value.into(), version };
    store
        .record("aud", &[change(ChangeKind::Added, "u:2", "true", 1), change(ChangeKind::Added, "u:1", "true", 1)])
        .unwrap();
    store.record("other", &[change(ChangeKind::Added, "u:9", "true", 1)]).unwrap();
    store.record("aud", &[change(ChangeKind::Removed, "u:2", "false", 2)]).unwrap();
    let rows = stored(&store, "aud");
    assert_eq!(
        rows,
        [
            Stored { key: "u:1".into(), value: "true".into(), version: 1, member: true },
            Stored { key: "u:2".into(), value: "false".into(), version: 2, member: false },
        ]
    );
    assert_eq!(store.members("aud").unwrap(), 1);
    drop(store);
    let reopened = StateStore::open(&dir).unwrap();
    assert_eq!(stored(&reopened, "aud").len(), 2);
}
