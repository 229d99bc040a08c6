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

#[test]
fn the_sync_log_expands_each_change_into_its_calls_and_forgets_old_runs() {
    use personas::definition::Call;
    use personas::state::{LogFilter, Logged, Run};
    let dir = std::env::temp_dir().join(format!("tributary-state-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut store = StateStore::open(&dir).unwrap();
    let plan =
        vec![("stream".to_owned(), vec![Call::Identify, Call::Track]), ("archive".to_owned(), vec![Call::Identify])];
    let run = |id: &str, started_ms| Run {
        run_id: id.into(),
        computation: "aud".into(),
        audience: "Audience".into(),
        plan: plan.clone(),
        started_ms,
        ..Run::default()
    };
    let old = store.begin_run(&run("old", 1_000)).unwrap();
    let new = store.begin_run(&run("new", 5_000)).unwrap();
    let added = |key: &str| Change { kind: ChangeKind::Added, key: key.into(), value: "true".into(), version: 1 };
    let account =
        personas::Identity::Account { group: "acme".into(), user: Box::new(personas::Identity::User("u1".into())) };
    store
        .record_with_log("aud", &[], Some(old), &[Logged { change: added("u:u0"), failures: vec![], at_ms: 1_000 }])
        .unwrap();
    let failure = vec![("archive".to_owned(), Call::Identify, "stream not found".to_owned())];
    let logged = [
        Logged { change: added("u:u1"), failures: failure, at_ms: 5_000 },
        Logged { change: added(&account.storage_key()), failures: vec![], at_ms: 5_001 },
    ];
    store.record_with_log("aud", &[added("u:u1")], Some(new), &logged).unwrap();

    let all = |store: &StateStore, filter: LogFilter| store.log(&LogFilter { limit: 100, ..filter }).unwrap();
    let entries = all(&store, LogFilter { run_id: Some("new".into()), ..LogFilter::default() });
    assert_eq!(entries.len(), 6, "two changes, three calls each");
    let u1: Vec<_> = entries.iter().filter(|e| e.identity == "u:u1").collect();
    let calls: Vec<(&str, &str)> = u1.iter().map(|e| (e.destination.as_str(), e.call.as_str())).collect();
    assert_eq!(calls, [("stream", "identify"), ("stream", "track"), ("archive", "identify")]);
    assert_eq!(u1[2].error.as_deref(), Some("stream not found"));
    assert!(u1[0].error.is_none());
    let expected = personas::message::message_id("aud", &added("u:u1"), Call::Track);
    assert_eq!(u1[1].message_id, expected);
    // --user finds a user directly and as an account's user, and nothing else.
    assert_eq!(all(&store, LogFilter { user: Some("u1".into()), ..LogFilter::default() }).len(), 6);
    assert_eq!(all(&store, LogFilter { user: Some("1".into()), ..LogFilter::default() }).len(), 0);
    // The newest entries, oldest first.
    let newest = store.log(&LogFilter { limit: 2, ..LogFilter::default() }).unwrap();
    assert_eq!(newest.len(), 2);
    assert_eq!(newest[1].identity, entries.last().unwrap().identity);
    assert_eq!(all(&store, LogFilter::default()).len(), 9);
    // Retention: the run that started before 2,000 goes, with its entries.
    assert_eq!(store.prune_log("aud", 2_000).unwrap(), 1);
    assert_eq!(all(&store, LogFilter::default()).len(), 6);
    assert_eq!(store.runs(Some("aud")).unwrap().iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(), ["new"]);
    assert_eq!(store.runs(None).unwrap()[0].plan, plan);
}
