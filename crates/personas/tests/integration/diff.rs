//! The pure membership diff.

use personas::diff::{ChangeKind, Counts, Member, Step, Stored, diff};

fn member(key: &str, value: &str) -> Member {
    Member { key: key.into(), value: value.into() }
}

fn stored(key: &str, value: &str, version: i64, member: bool) -> Stored {
    Stored { key: key.into(), value: value.into(), version, member }
}

/// Runs a diff and renders each step as "kind key=value@version" (or "unchanged").
fn check(state: Vec<Stored>, current: Vec<Member>, full_resync: bool, expected: &[&str]) {
    let steps: Vec<String> = diff(state, current, "false", full_resync)
        .map(|step| match step {
            Step::Unchanged => "unchanged".to_owned(),
            Step::Change(c) => format!("{:?} {}={}@{}", c.kind, c.key, c.value, c.version).to_lowercase(),
        })
        .collect();
    assert_eq!(steps, expected);
}

#[test]
fn first_sync_adds_everyone() {
    check(vec![], vec![member("a:x", "true"), member("u:1", "true")], false, &["added a:x=true@1", "added u:1=true@1"]);
}

#[test]
fn later_syncs_send_only_adds_and_removes() {
    check(
        vec![stored("u:1", "true", 1, true), stored("u:2", "true", 1, true)],
        vec![member("u:2", "true"), member("u:3", "true")],
        false,
        &["removed u:1=false@2", "unchanged", "added u:3=true@1"],
    );
}

#[test]
fn re_adding_after_removal_gets_a_new_version() {
    check(vec![stored("u:1", "false", 2, false)], vec![member("u:1", "true")], false, &["added u:1=true@3"]);
    // A tombstone that stays out of the snapshot is not removed twice.
    check(vec![stored("u:1", "false", 2, false)], vec![], false, &[]);
}

#[test]
fn trait_values_change_only_when_they_differ() {
    check(
        vec![stored("u:1", "10", 1, true), stored("u:2", "\"gold\"", 4, true)],
        vec![member("u:1", "10"), member("u:2", "\"silver\"")],
        false,
        &["unchanged", "changed u:2=\"silver\"@5"],
    );
}

#[test]
fn a_full_resync_sends_unchanged_members_again() {
    check(
        vec![stored("u:1", "true", 1, true), stored("u:2", "true", 1, true)],
        vec![member("u:1", "true")],
        true,
        &["resent u:1=true@2", "removed u:2=false@2"],
    );
}

#[test]
fn counts_and_removal_share() {
    let state = vec![
        stored("u:1", "true", 1, true),
        stored("u:2", "true", 1, true),
        stored("u:3", "true", 1, true),
        stored("u:4", "true", 1, true),
    ];
    let counts = Counts::of(diff(state, vec![member("u:1", "true"), member("u:5", "true")], "false", false));
    assert_eq!(
        (counts.added, counts.removed, counts.changed, counts.unchanged, counts.previous_members),
        (1, 3, 0, 1, 4)
    );
    assert_eq!(counts.removal_share(), 0.75);
    assert_eq!(Counts::default().removal_share(), 0.0);
    let _ = ChangeKind::Added;
}
