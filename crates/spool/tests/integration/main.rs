//! The spool test binary.

use std::path::PathBuf;

use spool::{NewEntry, Retry, Settlement, Spool, SpoolError};

fn dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tributary-spool-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn entry(destination: &str, n: usize) -> NewEntry {
    NewEntry { destination: destination.into(), source_id: "src".into(), items: format!("m{n}").into_bytes(), count: 1 }
}

fn messages(entries: &[spool::Entry]) -> Vec<String> {
    entries.iter().map(|e| String::from_utf8(e.items.clone()).unwrap()).collect()
}

/// The entries of `destination` due now, as a worker's first read takes them: retries due, then fresh ones.
async fn due_now(spool: &Spool, destination: &str, limit: usize) -> Result<Vec<spool::Entry>, SpoolError> {
    spool.take(destination, limit, spool::now_millis(), 0, Vec::new()).await
}

/// Every entry of `destination`, due or not.
async fn all_waiting(spool: &Spool, destination: &str, limit: usize) -> Result<Vec<spool::Entry>, SpoolError> {
    spool.take(destination, limit, i64::MAX, 0, Vec::new()).await
}

/// Every dead letter (of one destination, if given), in one page.
async fn dead_letters(spool: &Spool, destination: Option<&str>) -> Result<Vec<spool::DeadLetter>, SpoolError> {
    spool.dead_letter_page(destination, 0, usize::MAX).await
}

/// Bytes of stored entries waiting, across destinations.
fn total_bytes(spool: &Spool) -> u64 {
    spool.backlogs().values().map(|b| b.bytes).sum()
}

fn delivered(id: i64) -> Settlement {
    Settlement { id, retry: None, dead: Vec::new() }
}

fn retry(id: i64, at: i64, reason: &str) -> Settlement {
    Settlement {
        id,
        retry: Some(Retry { items: b"left".to_vec(), count: 1, at, reason: reason.into() }),
        dead: Vec::new(),
    }
}

#[tokio::test]
async fn appended_entries_survive_reopening() {
    let dir = dir("reopen");
    let spool = Spool::open(&dir, 100).unwrap();
    spool.append(vec![entry("a", 1), entry("b", 2), entry("a", 3)]).await.unwrap();
    assert_eq!(spool.depth(), 3);
    spool.close();
    drop(spool);
    let spool = Spool::open(&dir, 100).unwrap();
    assert_eq!(spool.depth(), 3);
    assert_eq!(messages(&due_now(&spool, "a", 10).await.unwrap()), ["m1", "m3"]);
    assert_eq!(messages(&due_now(&spool, "b", 10).await.unwrap()), ["m2"]);
}

#[tokio::test]
async fn complete_retry_and_dead_letter() {
    let spool = Spool::open(&dir("lifecycle"), 100).unwrap();
    spool.append((0..4).map(|n| entry("a", n)).collect()).await.unwrap();
    let due = due_now(&spool, "a", 10).await.unwrap();
    spool.settle(vec![delivered(due[0].id)]).await.unwrap();
    spool.settle(vec![retry(due[1].id, spool::now_millis() + 60_000, "throttled")]).await.unwrap();
    let buried = Settlement { id: due[2].id, retry: None, dead: vec![(b"m2".to_vec(), "access denied".into())] };
    spool.settle(vec![buried]).await.unwrap();
    assert_eq!(spool.depth(), 2);
    // The retried one is not due for a minute; only the untouched one is.
    assert_eq!(messages(&due_now(&spool, "a", 10).await.unwrap()), ["m3"]);
    assert!(spool.next_due_at("a").await.unwrap().is_some());
    let dead = dead_letters(&spool, None).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, "access denied");
    assert_eq!(dead[0].message, b"m2");
    assert!(dead_letters(&spool, Some("other")).await.unwrap().is_empty());
    assert_eq!(messages(&all_waiting(&spool, "a", 10).await.unwrap()), ["left", "m3"]);

    assert_eq!(spool.dead_letter_page(Some("a"), dead[0].id, 10).await.unwrap(), []);
    assert_eq!(spool.dead_letter_page(None, 0, 10).await.unwrap(), dead);
    // Requeued, a letter leaves the table and its message waits again, in one commit.
    let again = NewEntry { destination: "a".into(), source_id: "src".into(), items: b"m2".to_vec(), count: 1 };
    assert!(spool.requeue(vec![again.clone()], vec![dead[0].id]).await.unwrap());
    assert!(dead_letters(&spool, None).await.unwrap().is_empty());
    assert_eq!(spool.depth(), 3);
    // A second replay that read the same letter before the first moved it changes nothing: no message twice.
    assert!(!spool.requeue(vec![again], vec![dead[0].id]).await.unwrap());
    assert_eq!(spool.depth(), 3);
    // A replayed entry counts in the backlog, marked as replayed, and is never among the oldest a budget moves.
    assert_eq!(spool.backlog("a").replayed_bytes, 2);
    let oldest = spool.oldest("a", 10, Vec::new()).await.unwrap();
    assert!(oldest.iter().all(|e| e.items != b"m2"), "{oldest:?}");
}

#[tokio::test]
async fn reopening_makes_waiting_retries_due() {
    let dir = dir("reschedule");
    let spool = Spool::open(&dir, 100).unwrap();
    spool.append(vec![entry("a", 1)]).await.unwrap();
    let id = due_now(&spool, "a", 10).await.unwrap()[0].id;
    spool.settle(vec![retry(id, spool::now_millis() + 3_600_000, "down")]).await.unwrap();
    assert!(due_now(&spool, "a", 10).await.unwrap().is_empty());
    spool.close();
    drop(spool);
    let spool = Spool::open(&dir, 100).unwrap();
    let due = due_now(&spool, "a", 10).await.unwrap();
    assert_eq!(messages(&due), ["left"]);
    assert_eq!(due[0].attempts, 1);
}

#[tokio::test]
async fn depth_counts_messages_not_entries() {
    let spool = Spool::open(&dir("counts"), 1_000).unwrap();
    let many = NewEntry { destination: "a".into(), source_id: "src".into(), items: b"[...]".to_vec(), count: 100 };
    spool.append(vec![many.clone(), many]).await.unwrap();
    assert_eq!(spool.depth(), 200);
    let due = due_now(&spool, "a", 10).await.unwrap();
    // 60 delivered, 30 left for later, 10 dead: the entry holds 30 now.
    let partial = Settlement {
        id: due[0].id,
        retry: Some(Retry { items: b"[30 left]".to_vec(), count: 30, at: 0, reason: "throttled".into() }),
        dead: (0..10).map(|i| (format!("dead {i}").into_bytes(), "too large".to_owned())).collect(),
    };
    spool.settle(vec![partial, delivered(due[1].id)]).await.unwrap();
    // The second entry is settled as all delivered: its 100 leave whatever the caller thinks it held.
    assert_eq!(spool.depth(), 30);
    assert_eq!(dead_letters(&spool, Some("a")).await.unwrap().len(), 10);
    let left = due_now(&spool, "a", 10).await.unwrap();
    assert_eq!((left.len(), left[0].count, left[0].items.as_slice()), (1, 30, &b"[30 left]"[..]));
}

#[tokio::test]
async fn a_full_spool_refuses() {
    let spool = Spool::open(&dir("full"), 3).unwrap();
    spool.append(vec![entry("a", 1), entry("a", 2)]).await.unwrap();
    let error = spool.append(vec![entry("a", 3), entry("a", 4)]).await.unwrap_err();
    assert!(matches!(error, SpoolError::Full { depth: 2, max: 3 }), "{error}");
    spool.append(vec![entry("a", 3)]).await.unwrap();
    assert_eq!(spool.depth(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_commits_and_all_land() {
    let spool = Spool::open(&dir("concurrent"), 1_000_000).unwrap();
    let before = spool.commits();
    const APPENDS: usize = 200;
    let tasks: Vec<_> = (0..APPENDS)
        .map(|t| {
            let spool = spool.clone();
            tokio::spawn(async move { spool.append((0..50).map(|n| entry("a", t * 50 + n)).collect()).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    // Group commit is what lets many clients share one fsync: with a commit per append this is 200. The 200
    // appends are queued within microseconds while each commit syncs a file, so most of them wait together.
    let commits = (spool.commits() - before) as usize;
    assert!(commits > 0, "the appends were committed, so the count moved");
    assert!(commits <= APPENDS / 2, "{commits} commits for {APPENDS} concurrent appends: commits are not shared");
    assert_eq!(spool.depth(), 10_000);
    assert_eq!(due_now(&spool, "a", 20_000).await.unwrap().len(), 10_000);
}

#[tokio::test]
async fn the_committing_connection_is_wal_with_full_sync() {
    // Read back on the writer thread's own connection, inside a commit: an append acknowledged after a commit on
    // a connection with `synchronous` below FULL, or a rollback journal, may be lost with the power.
    let spool = Spool::open(&dir("durability"), 100).unwrap();
    spool.append(vec![entry("a", 1)]).await.unwrap();
    let durability = spool.durability().await.unwrap();
    assert_eq!(durability.journal_mode, "wal", "{durability:?}");
    assert_eq!(durability.synchronous, 2, "synchronous must be FULL (2): {durability:?}");
    // The personas state opens through the same function, so its answer must be the same.
    let path = dir("durability-open").join("state.sqlite3");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let connection = sqlite_durable::open_database(&path).unwrap();
    let mode: String = connection.pragma_query_value(None, "journal_mode", |row| row.get(0)).unwrap();
    let synchronous: i64 = connection.pragma_query_value(None, "synchronous", |row| row.get(0)).unwrap();
    assert_eq!((mode.as_str(), synchronous), ("wal", 2));
}

#[test]
fn the_owner_is_found_through_the_lock_while_it_holds_it() {
    let dir = dir("owner");
    assert_eq!(spool::owner(&dir).unwrap(), None, "no lock file: no owner");
    let spool = Spool::open(&dir, 100).unwrap();
    assert_eq!(spool::owner(&dir).unwrap(), Some(std::process::id()));
    spool.close();
    drop(spool);
    // The lock file stays, with the old PID in it; its lock is free, so nobody owns the spool.
    assert!(dir.join(spool::LOCK_FILE).exists());
    assert_eq!(spool::owner(&dir).unwrap(), None);
    // Looking does not lock: the next owner opens it.
    Spool::open(&dir, 100).unwrap();
}

#[tokio::test]
async fn a_second_owner_is_refused_with_the_first_ones_pid() {
    let dir = dir("lock");
    let spool = Spool::open(&dir, 100).unwrap();
    let error = Spool::open(&dir, 100).err().expect("the folder is locked");
    assert!(matches!(error, SpoolError::Locked { owner: Some(pid), .. } if pid == std::process::id()), "{error}");
    let message = error.to_string();
    assert!(message.contains(&dir.display().to_string()) && message.contains("PID"), "{message}");
    // A shared handle works beside the owner.
    let shared = Spool::open_shared(&dir).unwrap();
    assert!(dead_letters(&shared, None).await.unwrap().is_empty());
    spool.close();
    drop(spool);
    Spool::open(&dir, 100).unwrap();
}

#[tokio::test]
async fn a_shared_handle_leaves_the_retry_schedule_alone() {
    let dir = dir("shared-schedule");
    let spool = Spool::open(&dir, 100).unwrap();
    spool.append(vec![entry("a", 1)]).await.unwrap();
    let id = due_now(&spool, "a", 10).await.unwrap()[0].id;
    let at = spool::now_millis() + 3_600_000;
    spool.settle(vec![retry(id, at, "down")]).await.unwrap();
    let shared = Spool::open_shared(&dir).unwrap();
    assert_eq!(shared.depth(), 1);
    drop(shared);
    assert!(due_now(&spool, "a", 10).await.unwrap().is_empty());
    assert_eq!(spool.next_due_at("a").await.unwrap(), Some(at));
}

#[tokio::test]
async fn take_skips_entries_in_flight_and_resumes_after_the_cursor() {
    let spool = Spool::open(&dir("take"), 100).unwrap();
    spool.append((0..6).map(|n| entry("a", n)).collect()).await.unwrap();
    let now = spool::now_millis();
    let first = spool.take("a", 2, now, 0, Vec::new()).await.unwrap();
    assert_eq!(messages(&first), ["m0", "m1"]);
    assert!(first.iter().all(|e| e.fresh));
    let busy: Vec<i64> = first.iter().map(|e| e.id).collect();
    let second = spool.take("a", 2, now, busy[1], busy.clone()).await.unwrap();
    assert_eq!(messages(&second), ["m2", "m3"]);
    // A retry that is due comes before fresh entries; one in flight is skipped.
    spool.settle(vec![retry(busy[0], now - 1, "throttled")]).await.unwrap();
    let third = spool.take("a", 2, now, second[1].id, vec![second[0].id, second[1].id]).await.unwrap();
    assert_eq!(messages(&third), ["left", "m4"]);
    assert!(!third[0].fresh);
    let fourth = spool.take("a", 5, now, third[1].id, vec![busy[0]]).await.unwrap();
    assert_eq!(messages(&fourth), ["m5"]);
}

#[tokio::test]
async fn backlogs_count_messages_and_bytes_per_destination() {
    let spool = Spool::open(&dir("backlogs"), 100).unwrap();
    spool.append(vec![entry("a", 1), entry("a", 22), entry("b", 3)]).await.unwrap();
    let backlogs = spool.backlogs();
    assert_eq!(backlogs["a"], spool::Backlog { messages: 2, bytes: 5, replayed_bytes: 0 });
    assert_eq!(backlogs["b"], spool::Backlog { messages: 1, bytes: 2, replayed_bytes: 0 });
    let due = due_now(&spool, "a", 10).await.unwrap();
    spool.settle(vec![delivered(due[0].id)]).await.unwrap();
    assert_eq!(spool.backlogs()["a"], spool::Backlog { messages: 1, bytes: 3, replayed_bytes: 0 });
    assert_eq!(spool.depth(), 2);
    assert!(spool.oldest_at("a").await.unwrap().is_some());
    assert_eq!(spool.oldest_at("c").await.unwrap(), None);
}

#[tokio::test]
async fn a_spool_of_the_first_layout_is_migrated_with_its_schedule() {
    let dir = dir("migrate");
    std::fs::create_dir_all(&dir).unwrap();
    let old = rusqlite::Connection::open(dir.join(spool::FILE_NAME)).unwrap();
    old.execute_batch(
        "CREATE TABLE spool (id INTEGER PRIMARY KEY, destination TEXT NOT NULL, source_id TEXT NOT NULL,
             items BLOB NOT NULL, count INTEGER NOT NULL, enqueued_at INTEGER NOT NULL,
             attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER NOT NULL DEFAULT 0, last_error TEXT);
         CREATE INDEX spool_by_destination ON spool (destination, id);
         INSERT INTO spool (destination, source_id, items, count, enqueued_at, attempts, next_attempt_at)
             VALUES ('a', 'src', X'6D31', 1, 5, 0, 0), ('a', 'src', X'6D32', 3, 6, 2, 99999999999999);",
    )
    .unwrap();
    drop(old);
    let spool = Spool::open(&dir, 100).unwrap();
    assert_eq!(spool.depth(), 4);
    assert_eq!(spool.backlogs()["a"], spool::Backlog { messages: 4, bytes: 4, replayed_bytes: 0 });
    let due = due_now(&spool, "a", 10).await.unwrap();
    assert_eq!(messages(&due), ["m1", "m2"]);
    assert_eq!((due[1].attempts, due[1].count, due[1].enqueued_at), (2, 3, 6));
}

#[tokio::test]
async fn a_spool_full_of_bytes_refuses_and_the_oldest_entries_come_first() {
    let spool = Spool::open(&dir("bytes"), 1_000).unwrap();
    spool.set_max_bytes(5);
    spool.append(vec![entry("a", 1), entry("a", 22)]).await.unwrap();
    assert_eq!(total_bytes(&spool), 5);
    let error = spool.append(vec![entry("b", 3)]).await.unwrap_err();
    assert!(matches!(error, SpoolError::FullBytes { bytes: 5, max: 5 }), "{error}");
    let oldest = spool.oldest("a", 1, Vec::new()).await.unwrap();
    assert_eq!(messages(&oldest), ["m1"]);
    assert_eq!(messages(&spool.oldest("a", 5, vec![oldest[0].id]).await.unwrap()), ["m22"]);
    spool.settle(vec![delivered(oldest[0].id)]).await.unwrap();
    spool.append(vec![entry("b", 3)]).await.unwrap();
}

#[tokio::test]
async fn a_spool_from_a_newer_version_is_refused_clearly() {
    let dir = dir("newer");
    drop(Spool::open(&dir, 10).unwrap());
    let db = rusqlite::Connection::open(dir.join(spool::FILE_NAME)).unwrap();
    db.pragma_update(None, "user_version", 99).unwrap();
    drop(db);
    let error = Spool::open(&dir, 10).err().expect("refused");
    assert!(error.to_string().contains("written by a newer Tributary (spool version 99"), "{error}");
}

/// Waits up to five seconds for the writer's next removal pass to leave `spool` holding `keys` keys.
async fn keys_become(spool: &Spool, keys: u64) -> spool::DedupeStats {
    for _ in 0..100 {
        if spool.dedupe_stats().keys == keys {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    spool.dedupe_stats()
}

const HOUR: std::time::Duration = std::time::Duration::from_secs(3_600);

#[tokio::test]
async fn a_key_is_held_once_its_messages_are_committed_and_survives_reopening() {
    let dir = dir("dedupe-held");
    let spool = Spool::open(&dir, 100).unwrap();
    spool.set_dedupe(HOUR, 1 << 20).unwrap();
    assert_eq!(spool.held(&[7, 8]), [false, false]);
    spool.append_keyed(vec![entry("d", 1)], Vec::new(), vec![7]).await.unwrap();
    assert_eq!(spool.held(&[7, 8]), [true, false]);
    // A refused append records nothing: its messages were not stored.
    let refused = spool.append_keyed((0..200).map(|n| entry("d", n)).collect(), Vec::new(), vec![8]).await;
    assert!(matches!(refused, Err(SpoolError::Full { .. })), "{refused:?}");
    assert_eq!(spool.held(&[8]), [false]);
    let stats = spool.dedupe_stats();
    assert_eq!((stats.keys, stats.window_held_millis), (1, 3_600_000));
    assert!(stats.oldest_at.is_some_and(|at| (spool::now_millis() - at).abs() < 5_000), "{stats:?}");
    spool.close();
    drop(spool);
    let spool = Spool::open(&dir, 100).unwrap();
    spool.set_dedupe(HOUR, 1 << 20).unwrap();
    assert_eq!(spool.held(&[7]), [true], "keys are on disk with the messages");
    assert_eq!(spool.dedupe_stats().keys, 1);
    // A shared handle does not load them (nor would it remove them).
    let shared = Spool::open_shared(&dir).unwrap();
    shared.set_dedupe(std::time::Duration::ZERO, 0).unwrap();
    assert_eq!(shared.held(&[7]), [false]);
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    assert_eq!(spool.held(&[7]), [true]);
}

#[tokio::test]
async fn keys_adopted_from_other_nodes_count_at_once_are_kept_and_leave_with_the_window() {
    let dir = dir("dedupe-adopt");
    let spool = Spool::open(&dir, 100).unwrap();
    // Adopted with dedupe off: nothing held, nothing written.
    spool.adopt(vec![1, 2], spool::now_millis()).await.unwrap();
    assert_eq!(spool.held(&[1, 2]), [false, false]);
    spool.set_dedupe(HOUR, 1 << 20).unwrap();
    spool.append_keyed(vec![entry("d", 1)], Vec::new(), vec![7]).await.unwrap();
    // Held before the commit is awaited: another node stored their messages already.
    let written = spool.adopt(vec![7, 8, 9], spool::now_millis());
    assert_eq!(spool.held(&[7, 8, 9]), [true, true, true]);
    written.await.unwrap();
    // Keys held already (7, this node's own) are not written twice.
    assert_eq!(spool.dedupe_stats().keys, 3, "{:?}", spool.dedupe_stats());
    spool.close();
    drop(spool);
    let spool = Spool::open(&dir, 100).unwrap();
    spool.set_dedupe(std::time::Duration::from_secs(2), 1 << 20).unwrap();
    assert_eq!(spool.held(&[7, 8, 9]), [true, true, true], "adopted keys are on disk too");
    assert_eq!(spool.dedupe_stats().keys, 3);
    // They leave with the window, as the node's own do.
    tokio::time::sleep(std::time::Duration::from_millis(2_200)).await;
    assert_eq!(keys_become(&spool, 0).await.keys, 0);
    assert_eq!(spool.held(&[7, 8, 9]), [false, false, false]);
}

#[tokio::test]
async fn keys_leave_with_the_window_and_the_oldest_leave_first_past_the_budget() {
    let dir = dir("dedupe-evict");
    let spool = Spool::open(&dir, 10_000).unwrap();
    // Two blocks of 50 keys: 2 x (50 x 8 + 24) bytes.
    spool.set_dedupe(HOUR, 2 * (50 * spool::DISK_BYTES_PER_KEY + 24)).unwrap();
    for batch in 0..3i64 {
        let keys: Vec<i64> = (batch * 50..batch * 50 + 50).collect();
        spool.append_keyed(vec![entry("d", batch as usize)], Vec::new(), keys).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let stats = keys_become(&spool, 100).await;
    assert_eq!(stats.keys, 100, "the budget holds 100 keys: the oldest 50 went");
    assert!(stats.window_held_millis < 3_600_000, "the window held shrank: {stats:?}");
    assert!(stats.window_held_millis >= 500, "it still reaches back past the newest batch: {stats:?}");
    assert_eq!(spool.held(&[0, 49, 50, 149]), [false, false, true, true]);
    // Reopened, the disk holds what memory held.
    spool.close();
    drop(spool);
    let spool = Spool::open(&dir, 10_000).unwrap();
    spool.set_dedupe(HOUR, 1 << 20).unwrap();
    assert_eq!(spool.held(&[0, 49, 50, 149]), [false, false, true, true]);
    // A window of zero keeps none.
    spool.set_dedupe(std::time::Duration::ZERO, 1 << 20).unwrap();
    assert_eq!(keys_become(&spool, 0).await.keys, 0);
    assert_eq!(spool.held(&[50, 149]), [false, false]);
    // A spool opened with dedupe off counts its keys without loading them, and removes them.
    spool.set_dedupe(HOUR, 1 << 20).unwrap();
    spool.append_keyed(vec![entry("d", 9)], Vec::new(), vec![1, 2, 3]).await.unwrap();
    spool.close();
    drop(spool);
    let spool = Spool::open(&dir, 10_000).unwrap();
    spool.set_dedupe(std::time::Duration::ZERO, 1 << 20).unwrap();
    let stats = spool.dedupe_stats();
    assert_eq!((stats.keys, stats.memory_bytes), (3, 0), "counted, not loaded: {stats:?}");
    assert_eq!(keys_become(&spool, 0).await.keys, 0);
    spool.close();
    drop(spool);
    let spool = Spool::open(&dir, 10_000).unwrap();
    spool.set_dedupe(HOUR, 1 << 20).unwrap();
    assert_eq!((spool.dedupe_stats().keys, spool.held(&[1])[0]), (0, false), "and removed from disk");
}

#[tokio::test]
async fn a_short_window_lets_old_keys_go() {
    let dir = dir("dedupe-window");
    let spool = Spool::open(&dir, 10_000).unwrap();
    spool.set_dedupe(std::time::Duration::from_secs(2), 1 << 20).unwrap();
    spool.append_keyed(vec![entry("d", 1)], Vec::new(), vec![1, 2, 3]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    spool.append_keyed(vec![entry("d", 2)], Vec::new(), vec![4]).await.unwrap();
    assert_eq!(spool.dedupe_stats().keys, 4);
    let stats = keys_become(&spool, 1).await;
    assert_eq!(stats.keys, 1, "the first three left the window: {stats:?}");
    assert_eq!(stats.window_held_millis, 2_000, "leaving with the window does not shrink it");
    assert_eq!(spool.held(&[1, 4]), [false, true]);
}

/// What `--dedupe-max-bytes` and the memory bound count: the bytes a key takes in the database (8, packed in one
/// row a commit) and in memory (a hash set's slot, at most 21 as the sets double), measured on random keys.
#[tokio::test]
async fn a_key_takes_about_8_bytes_of_the_database_and_at_most_21_of_memory() {
    let dir = dir("dedupe-size");
    let spool = Spool::open(&dir, 10_000).unwrap();
    spool.set_dedupe(HOUR, u64::MAX).unwrap();
    let pages = |spool: &Spool| {
        let connection = rusqlite::Connection::open(spool.path()).unwrap();
        let count: i64 = connection.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
        let free: i64 = connection.query_row("PRAGMA freelist_count", [], |r| r.get(0)).unwrap();
        let size: i64 = connection.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
        (count - free) * size
    };
    // Seeded xorshift: random keys, the same on every run.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut random = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as i64
    };
    spool.append_keyed(vec![entry("d", 0)], Vec::new(), (0..1_000).map(|_| random()).collect()).await.unwrap();
    let before = pages(&spool);
    const KEYS: u64 = 1_000_000;
    for chunk in 0..KEYS / 2_000 {
        let keys = (0..2_000).map(|_| random()).collect();
        spool.append_keyed(vec![entry("d", chunk as usize)], Vec::new(), keys).await.unwrap();
    }
    // The entries' own bytes are a few per append; the rest is the keys'.
    let disk = (pages(&spool) - before) as f64 / KEYS as f64;
    let stats = spool.dedupe_stats();
    let memory = stats.memory_bytes as f64 / stats.keys as f64;
    println!("a dedupe key takes {disk:.1} bytes of the database and {memory:.1} of memory");
    assert!(disk <= 8.5, "{disk:.1} bytes of the database a key");
    assert!(memory <= spool::MEMORY_BYTES_PER_KEY as f64, "{memory:.1} bytes of memory a key");
    assert!(stats.bytes <= (KEYS + 1_000) * 8 + 600 * 24, "the budget counts what the disk holds: {stats:?}");
}

#[tokio::test]
async fn the_suppression_list_changes_beside_its_owner_and_the_owner_sees_each_change() {
    let dir = dir("suppressions");
    // A list made before the spool's first owner is kept: the owner opens what the command created.
    let ids = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(spool::suppress(&dir, spool::IdKind::UserId, &ids(&["u1", "u2"]), 1_000).unwrap(), 2);
    let owner = Spool::open(&dir, 100).unwrap();
    let mut watch = spool::SuppressionWatch::open(&dir).unwrap();
    let first = watch.poll().unwrap().expect("the first poll reads the list");
    assert_eq!(first.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["u1", "u2"]);
    assert_eq!(watch.poll().unwrap(), None, "nothing changed");
    // Beside the owner: a second suppression keeps its first date; an anonymousId; a removal.
    assert_eq!(spool::suppress(&dir, spool::IdKind::UserId, &ids(&["u2", "u3"]), 2_000).unwrap(), 1);
    assert_eq!(spool::suppress(&dir, spool::IdKind::AnonymousId, &ids(&["a1"]), 3_000).unwrap(), 1);
    assert_eq!(spool::unsuppress(&dir, spool::IdKind::UserId, &ids(&["u1", "nobody"])).unwrap(), 1);
    let now = watch.poll().unwrap().expect("changed");
    let listed: Vec<(spool::IdKind, &str, i64)> = now.iter().map(|s| (s.kind, s.id.as_str(), s.since)).collect();
    assert_eq!(
        listed,
        [
            (spool::IdKind::UserId, "u2", 1_000),
            (spool::IdKind::UserId, "u3", 2_000),
            (spool::IdKind::AnonymousId, "a1", 3_000)
        ]
    );
    assert_eq!(spool::suppressions(&dir).unwrap(), now);
    drop(owner);
    // A remove and an add between two polls are seen, though the list's length is the same.
    spool::unsuppress(&dir, spool::IdKind::UserId, &ids(&["u3"])).unwrap();
    spool::suppress(&dir, spool::IdKind::UserId, &ids(&["u4"]), 4_000).unwrap();
    assert!(watch.poll().unwrap().unwrap().iter().any(|s| s.id == "u4"));
}

/// Test entries are lines of `messageId user payload`; the eraser takes out one user's lines.
struct EraseUser(&'static str);

impl spool::Eraser for EraseUser {
    fn entry(&self, items: &[u8]) -> Option<spool::Rewrite> {
        let text = std::str::from_utf8(items).ok()?;
        let (theirs, kept): (Vec<&str>, Vec<&str>) =
            text.lines().partition(|line| line.split(' ').nth(1) == Some(self.0));
        if theirs.is_empty() {
            return None;
        }
        let removed = theirs.iter().map(|line| line.split(' ').next().unwrap().to_owned()).collect();
        let items = kept.iter().map(|line| format!("{line}\n")).collect::<String>().into_bytes();
        Some(spool::Rewrite { items, count: kept.len() as u32, removed })
    }

    fn message(&self, message: &[u8]) -> bool {
        std::str::from_utf8(message).is_ok_and(|m| m.split(' ').nth(1) == Some(self.0))
    }
}

fn lines(destination: &str, lines: &[&str]) -> NewEntry {
    let items = lines.iter().map(|line| format!("{line}\n")).collect::<String>().into_bytes();
    NewEntry { destination: destination.into(), source_id: "src".into(), items, count: lines.len() as u32 }
}

/// Every byte of the spool's files, the WAL included.
fn spool_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for name in [spool::FILE_NAME.to_owned(), format!("{}-wal", spool::FILE_NAME)] {
        bytes.extend(std::fs::read(dir.join(name)).unwrap_or_default());
    }
    bytes
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn an_erasure_takes_a_users_messages_out_of_everything_and_leaves_no_bytes_behind() {
    let dir = dir("erase");
    let spool = Spool::open(&dir, 1_000).unwrap();
    // Delivered before the erasure: its pages are free, with the old bytes in them.
    let padding = "p".repeat(20_000);
    spool.append(vec![lines("a", &[&format!("m0 alice SECRET-free {padding}")])]).await.unwrap();
    let gone = due_now(&spool, "a", 10).await.unwrap();
    spool.settle(vec![delivered(gone[0].id)]).await.unwrap();
    spool
        .append(vec![
            lines("a", &[&format!("m1 alice SECRET-held {padding}"), "m2 bob kept-2"]),
            lines("a", &["m3 bob kept-3"]),
            lines("b", &["m4 alice SECRET-waiting"]),
            lines("c", &["m5 alice SECRET-dead", "m6 bob kept-dead"]),
        ])
        .await
        .unwrap();
    let rejections = ["r1 alice SECRET-rejected", "r2 bob kept-rejected"].map(|m| spool::NewRejection {
        source_id: "src".into(),
        index: None,
        field: Some("event".into()),
        reason: "missing".into(),
        message: Some(m.as_bytes().to_vec()),
    });
    spool.append_with(Vec::new(), rejections.to_vec()).await.unwrap();
    let letters = due_now(&spool, "c", 10).await.unwrap();
    let buried = Settlement {
        id: letters[0].id,
        retry: None,
        dead: vec![
            (b"m5 alice SECRET-dead".to_vec(), "refused".into()),
            (b"m6 bob kept-dead".to_vec(), "refused".into()),
        ],
    };
    spool.settle(vec![buried]).await.unwrap();
    // A delivery holds the first entry of `a` while the erasure runs.
    let held = due_now(&spool, "a", 1).await.unwrap();

    let erased = spool.erase(std::sync::Arc::new(EraseUser("alice")), None).await.unwrap();
    assert_eq!(erased.waiting, [("a".to_owned(), 1), ("b".to_owned(), 1)].into());
    assert_eq!((erased.entries, erased.dead_letters, erased.rejected), (2, 1, 1));
    assert_eq!(erased.handed, [("a".to_owned(), "m1".to_owned())], "the held entry's message was handed to a sink");
    assert!(erased.free_pages >= 1, "{} free pages", erased.free_pages);
    assert!(erased.checkpointed);

    // The delivery fails and writes back what it held: the erasure still applies.
    let written_back =
        Retry { items: held[0].items.clone(), count: 2, at: spool::now_millis() - 1, reason: "throttled".into() };
    spool.settle(vec![Settlement { id: held[0].id, retry: Some(written_back), dead: Vec::new() }]).await.unwrap();
    assert_eq!(messages(&all_waiting(&spool, "a", 10).await.unwrap()), ["m2 bob kept-2\n", "m3 bob kept-3\n"]);
    assert!(all_waiting(&spool, "b", 10).await.unwrap().is_empty(), "an entry with nothing left is removed");
    assert_eq!(spool.depth(), 2);
    let letters = dead_letters(&spool, None).await.unwrap();
    assert_eq!(letters.iter().map(|l| l.message.as_slice()).collect::<Vec<_>>(), [b"m6 bob kept-dead".as_slice()]);
    // A replay (another process, which sees no erasure in force) read the user's letter before the erasure removed
    // it: its requeue is refused whole, and the user's message does not come back.
    let replayed = lines("c", &["m5 alice SECRET-dead", "m6 bob kept-dead"]);
    let ids: Vec<i64> = letters.iter().map(|l| l.id).collect();
    let shared = Spool::open_shared(&dir).unwrap();
    assert!(!shared.requeue(vec![replayed], vec![letters[0].id - 1, ids[0]]).await.unwrap());
    shared.close();
    assert_eq!(dead_letters(&spool, None).await.unwrap().len(), 1, "the other letter is still a letter");
    assert!(all_waiting(&spool, "c", 10).await.unwrap().is_empty());
    let kept = spool::read_rejections(&dir, &spool::RejectionFilter { limit: 10, ..Default::default() }).unwrap();
    assert_eq!(kept.len(), 1);
    spool.close();
    drop(spool);

    let bytes = spool_bytes(&dir);
    for secret in ["SECRET-free", "SECRET-held", "SECRET-waiting", "SECRET-dead", "SECRET-rejected"] {
        assert!(!holds(&bytes, secret), "{secret} lingers in the spool's files");
    }
    for kept in ["kept-2", "kept-3", "kept-dead", "kept-rejected"] {
        assert!(holds(&bytes, kept), "{kept} was lost");
    }
}

#[tokio::test]
async fn an_erasure_is_asked_of_the_owner_and_its_ids_leave_the_spool_with_it() {
    let dir = dir("erase-request");
    let spool = Spool::open(&dir, 1_000).unwrap();
    spool.append(vec![lines("a", &["m1 carol-the-user x", "m2 bob y"])]).await.unwrap();
    let ids = [(spool::IdKind::UserId, "carol-the-user".to_owned())];
    let request = spool::request_erasure(&dir, &ids, 1_000).unwrap();
    let asked = spool.erasure_requests().await.unwrap();
    assert_eq!(asked, [spool::ErasureRequest { id: request, ids: ids.to_vec() }]);
    assert_eq!(spool::erasure_report(&dir, request).unwrap(), None);
    let erased = spool.erase(std::sync::Arc::new(EraseUser("carol-the-user")), Some(request)).await.unwrap();
    assert_eq!(erased.waiting, [("a".to_owned(), 1)].into());
    spool.report_erasure(request, "removed 1".into()).await.unwrap();
    assert!(spool.erasure_requests().await.unwrap().is_empty());
    assert_eq!(spool::erasure_report(&dir, request).unwrap().as_deref(), Some("removed 1"));
    spool::forget_erasure(&dir, request).unwrap();
    assert_eq!(spool::erasure_report(&dir, request).unwrap(), None);
    spool.close();
    drop(spool);
    assert!(!holds(&spool_bytes(&dir), "carol-the-user"), "the request's ID lingers");
}
