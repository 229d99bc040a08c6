//! The spool test binary.

use std::path::PathBuf;

use spool::{NewEntry, Spool, SpoolError};

fn dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tributary-spool-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn entry(destination: &str, n: usize) -> NewEntry {
    NewEntry { destination: destination.into(), source_id: "src".into(), message: format!("m{n}").into_bytes() }
}

fn messages(entries: &[spool::Entry]) -> Vec<String> {
    entries.iter().map(|e| String::from_utf8(e.message.clone()).unwrap()).collect()
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
    assert_eq!(messages(&spool.due("a", 10).await.unwrap()), ["m1", "m3"]);
    assert_eq!(messages(&spool.due("b", 10).await.unwrap()), ["m2"]);
}

#[tokio::test]
async fn complete_retry_and_dead_letter() {
    let spool = Spool::open(&dir("lifecycle"), 100).unwrap();
    spool.append((0..4).map(|n| entry("a", n)).collect()).await.unwrap();
    let due = spool.due("a", 10).await.unwrap();
    spool.complete(vec![due[0].id]).await.unwrap();
    spool.retry_at(vec![(due[1].id, spool::now_millis() + 60_000, "throttled".into())]).await.unwrap();
    spool.dead_letter(vec![(due[2].id, "access denied".into())]).await.unwrap();
    assert_eq!(spool.depth(), 2);
    // The retried one is not due for a minute; only the untouched one is.
    assert_eq!(messages(&spool.due("a", 10).await.unwrap()), ["m3"]);
    assert!(spool.next_due_at("a").await.unwrap().is_some());
    let dead = spool.dead_letters(None).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, "access denied");
    assert_eq!(dead[0].message, b"m2");
    assert!(spool.dead_letters(Some("other")).await.unwrap().is_empty());
    assert_eq!(messages(&spool.all_waiting("a", 10).await.unwrap()), ["m1", "m3"]);
    spool.update_dead_letters(vec![(dead[0].id, "still denied".into())]).await.unwrap();
    assert_eq!(spool.dead_letters(Some("a")).await.unwrap()[0].reason, "still denied");
    spool.forget_dead_letters(vec![dead[0].id]).await.unwrap();
    assert!(spool.dead_letters(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn reopening_makes_waiting_retries_due() {
    let dir = dir("reschedule");
    let spool = Spool::open(&dir, 100).unwrap();
    spool.append(vec![entry("a", 1)]).await.unwrap();
    let id = spool.due("a", 10).await.unwrap()[0].id;
    spool.retry_at(vec![(id, spool::now_millis() + 3_600_000, "down".into())]).await.unwrap();
    assert!(spool.due("a", 10).await.unwrap().is_empty());
    spool.close();
    drop(spool);
    let spool = Spool::open(&dir, 100).unwrap();
    let due = spool.due("a", 10).await.unwrap();
    assert_eq!(messages(&due), ["m1"]);
    assert_eq!(due[0].attempts, 1);
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

#[tokio::test]
async fn concurrent_appends_share_commits_and_all_land() {
    let spool = Spool::open(&dir("concurrent"), 1_000_000).unwrap();
    let tasks: Vec<_> = (0..200)
        .map(|t| {
            let spool = spool.clone();
            tokio::spawn(async move { spool.append((0..50).map(|n| entry("a", t * 50 + n)).collect()).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(spool.depth(), 10_000);
    assert_eq!(spool.due("a", 20_000).await.unwrap().len(), 10_000);
}
