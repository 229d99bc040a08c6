//! The shards of a stream and which one a record lands on: the MD5 of its partition key read as a 128-bit
//! big-endian number, or its explicit hash key, falls in exactly one open shard's hash-key range.

use md5::{Digest, Md5};

use crate::entry::RequestEntry;

/// An open shard and its hash-key range (both ends included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// `shardId-000000000000`.
    pub id: String,
    /// The first hash key it takes.
    pub start: u128,
    /// The last hash key it takes.
    pub end: u128,
}

/// The open shards of a stream, ordered by range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardMap {
    shards: Vec<Shard>,
    /// Each shard's position, by ID.
    by_id: std::collections::HashMap<String, usize>,
}

impl ShardMap {
    /// The map of `shards` (open ones, as ListShards gives them, in any order).
    pub fn new(mut shards: Vec<Shard>) -> ShardMap {
        shards.sort_by_key(|s| s.start);
        let by_id = shards.iter().enumerate().map(|(i, s)| (s.id.clone(), i)).collect();
        ShardMap { shards, by_id }
    }

    /// The shards, ordered by range.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// The position in [`ShardMap::shards`] of the shard that takes `hash`; `None` when no open shard does
    /// (a map read mid-reshard).
    pub fn index_of(&self, hash: u128) -> Option<usize> {
        let after = self.shards.partition_point(|s| s.start <= hash);
        let index = after.checked_sub(1)?;
        (self.shards[index].end >= hash).then_some(index)
    }

    /// The position of the shard named `id`.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }
}

/// The hash key Kinesis derives from a partition key: the MD5 of its UTF-8 bytes as a big-endian number.
pub fn hash_of_key(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// The hash key that places `entry`: its explicit hash key, or its partition key's MD5.
pub fn hash_of(entry: &RequestEntry) -> u128 {
    entry.explicit_hash_key.as_deref().and_then(|k| k.parse().ok()).unwrap_or_else(|| hash_of_key(&entry.partition_key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn even(n: u128) -> ShardMap {
        let width = u128::MAX / n;
        ShardMap::new(
            (0..n)
                .rev()
                .map(|i| Shard {
                    id: format!("shardId-{i:012}"),
                    start: i * width,
                    end: if i == n - 1 { u128::MAX } else { (i + 1) * width - 1 },
                })
                .collect(),
        )
    }

    #[test]
    fn md5_as_kinesis_reads_it() {
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e, read big-endian.
        assert_eq!(hash_of_key(""), 0xd41d8cd98f00b204e9800998ecf8427e);
        let entry =
            RequestEntry { partition_key: "x".into(), explicit_hash_key: Some("7".into()), data: Default::default() };
        assert_eq!(hash_of(&entry), 7);
    }

    #[test]
    fn every_hash_lands_in_one_shard() {
        let map = even(4);
        assert_eq!(map.shards()[0].id, "shardId-000000000000");
        assert_eq!(map.index_of(0), Some(0));
        assert_eq!(map.index_of(u128::MAX), Some(3));
        for shard in 0..4 {
            let s = &map.shards()[shard];
            assert_eq!((map.index_of(s.start), map.index_of(s.end)), (Some(shard), Some(shard)));
        }
        let gap = ShardMap::new(vec![Shard { id: "a".into(), start: 10, end: 20 }]);
        assert_eq!((gap.index_of(9), gap.index_of(21), gap.index_of(15)), (None, None, Some(0)));
    }
}
