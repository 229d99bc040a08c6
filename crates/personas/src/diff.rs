//! The membership diff. Pure: sorted previous state and sorted current snapshot in, changes out.

use std::cmp::Ordering;
use std::iter::Peekable;

/// A member of the current snapshot: its storage key and its value as JSON text (`true` for audiences).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// [`crate::Identity::storage_key`].
    pub key: Box<str>,
    /// The value's JSON text.
    pub value: Box<str>,
}

/// What the state store holds for one identity: what the destinations were last told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// [`crate::Identity::storage_key`].
    pub key: String,
    /// The value last sent, as JSON text.
    pub value: String,
    /// How many changes were delivered for this identity; the next change is `version + 1`.
    pub version: i64,
    /// Whether the identity is a member (false after its removal was delivered).
    pub member: bool,
}

/// What a change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Joined (or rejoined): send the value.
    Added,
    /// Left: send `false` (audiences) or `null` (traits).
    Removed,
    /// Still a member with a new value (traits): send it.
    Changed,
    /// Unchanged, sent again by a full resync.
    Resent,
}

/// One identity whose destinations must be told something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// [`crate::Identity::storage_key`].
    pub key: String,
    /// The value to send, as JSON text.
    pub value: String,
    /// The version this change makes; with the computation and the key it fixes the messageId.
    pub version: i64,
}

/// One step of the diff: a change, or an unchanged member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Something to send.
    Change(Change),
    /// A member whose value the destinations already have.
    Unchanged,
}

/// Merges the previous state with the current snapshot; both must be sorted by key with each key once.
///
/// `removed_value` is what a leaver is sent (`false` or `null`). With `full_resync`, unchanged members are sent
/// again (as [`ChangeKind::Resent`]).
pub fn diff<S, C>(state: S, current: C, removed_value: &str, full_resync: bool) -> Diff<S::IntoIter, C::IntoIter>
where
    S: IntoIterator<Item = Stored>,
    C: IntoIterator<Item = Member>,
{
    Diff {
        state: state.into_iter().peekable(),
        current: current.into_iter().peekable(),
        removed_value: removed_value.to_owned(),
        full_resync,
    }
}

/// The iterator [`diff`] returns.
pub struct Diff<S: Iterator<Item = Stored>, C: Iterator<Item = Member>> {
    state: Peekable<S>,
    current: Peekable<C>,
    removed_value: String,
    full_resync: bool,
}

impl<S: Iterator<Item = Stored>, C: Iterator<Item = Member>> Iterator for Diff<S, C> {
    type Item = Step;

    fn next(&mut self) -> Option<Step> {
        loop {
            let order = match (self.state.peek(), self.current.peek()) {
                (None, None) => return None,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(stored), Some(member)) => stored.key.as_str().cmp(&member.key),
            };
            match order {
                // Only in the state: a member who left, or a tombstone of one who left earlier.
                Ordering::Less => {
                    let stored = self.state.next().expect("peeked");
                    if stored.member {
                        return Some(Step::Change(Change {
                            kind: ChangeKind::Removed,
                            key: stored.key,
                            value: self.removed_value.clone(),
                            version: stored.version + 1,
                        }));
                    }
                }
                Ordering::Greater => {
                    let member = self.current.next().expect("peeked");
                    return Some(Step::Change(Change {
                        kind: ChangeKind::Added,
                        key: member.key.into(),
                        value: member.value.into(),
                        version: 1,
                    }));
                }
                Ordering::Equal => {
                    let stored = self.state.next().expect("peeked");
                    let member = self.current.next().expect("peeked");
                    let kind = if !stored.member {
                        ChangeKind::Added
                    } else if stored.value != *member.value {
                        ChangeKind::Changed
                    } else if self.full_resync {
                        ChangeKind::Resent
                    } else {
                        return Some(Step::Unchanged);
                    };
                    return Some(Step::Change(Change {
                        kind,
                        key: stored.key,
                        value: member.value.into(),
                        version: stored.version + 1,
                    }));
                }
            }
        }
    }
}

/// Counts of one diff.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Joined.
    pub added: u64,
    /// Left.
    pub removed: u64,
    /// New value.
    pub changed: u64,
    /// Already known (including those a full resync sends again).
    pub unchanged: u64,
    /// Members before this run.
    pub previous_members: u64,
}

impl Counts {
    /// Counts the steps of a diff.
    pub fn of(steps: impl Iterator<Item = Step>) -> Counts {
        let mut counts = Counts::default();
        for step in steps {
            match step {
                Step::Unchanged => counts.unchanged += 1,
                Step::Change(change) => match change.kind {
                    ChangeKind::Added => counts.added += 1,
                    ChangeKind::Removed => counts.removed += 1,
                    ChangeKind::Changed => counts.changed += 1,
                    ChangeKind::Resent => counts.unchanged += 1,
                },
            }
        }
        counts.previous_members = counts.removed + counts.changed + counts.unchanged;
        counts
    }

    /// The share of the previous members this run removes.
    pub fn removal_share(&self) -> f64 {
        if self.previous_members == 0 { 0.0 } else { self.removed as f64 / self.previous_members as f64 }
    }
}
