//! KPL aggregation: records bound for one shard packed into one Kinesis record in the Kinesis Producer Library's
//! format, which the KCL and every standard deaggregator unpack into the original records.
//!
//! The format: the magic bytes `F3 89 9A C2`, then an `AggregatedRecord` protobuf message (field 1: the partition
//! key table; field 2: the explicit hash key table; field 3: the records, each with field 1 the index of its
//! partition key, field 2 the index of its explicit hash key if it has one, field 3 its data), then the MD5 of
//! that message.

use std::collections::HashMap;

use bytes::Bytes;
use md5::{Digest, Md5};

use crate::entry::RequestEntry;
use crate::shards::{ShardMap, hash_of};

/// The four bytes every aggregated record starts with.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
/// The MD5 trailer's length.
const DIGEST_LEN: usize = 16;

/// A Kinesis entry made from user records: one record as it was, or several aggregated.
#[derive(Debug, Clone)]
pub struct Packed {
    /// What is sent.
    pub entry: RequestEntry,
    /// The positions of the user records it carries, in order.
    pub members: Vec<usize>,
}

/// How many bytes a varint of `n` takes.
fn varint_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A length-delimited field (wire type 2) of `len` bytes: tag, length, body.
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

fn put_bytes(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    out.push(field << 3 | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The body of one inner `Record` message.
fn record_body_len(key_index: usize, hash_index: Option<usize>, data: usize) -> usize {
    1 + varint_len(key_index as u64) + hash_index.map_or(0, |i| 1 + varint_len(i as u64)) + field_len(data)
}

/// One table of an aggregate (partition keys or explicit hash keys): the strings in order, and each one's index,
/// so that finding a string costs the same however many the table holds.
#[derive(Default)]
struct Table<'e> {
    strings: Vec<&'e str>,
    index: HashMap<&'e str, usize>,
}

impl<'e> Table<'e> {
    /// The index `text` has, or would take; and whether it is new.
    fn find(&self, text: &str) -> (usize, bool) {
        match self.index.get(text) {
            Some(&at) => (at, false),
            None => (self.strings.len(), true),
        }
    }

    fn add(&mut self, text: &'e str) {
        if !self.index.contains_key(text) {
            self.index.insert(text, self.strings.len());
            self.strings.push(text);
        }
    }
}

/// One aggregate being filled, its tables borrowing from the entries.
#[derive(Default)]
struct Open<'e> {
    keys: Table<'e>,
    hashes: Table<'e>,
    /// (member position, key index, hash index).
    records: Vec<(usize, usize, Option<usize>)>,
    /// The protobuf message's length so far.
    body: usize,
}

impl<'e> Open<'e> {
    /// The body length with `entry` added, and the table indexes it would take.
    fn with(&self, entry: &RequestEntry) -> (usize, usize, Option<usize>) {
        let mut body = self.body;
        let (key, new) = self.keys.find(&entry.partition_key);
        if new {
            body += field_len(entry.partition_key.len());
        }
        let hash = entry.explicit_hash_key.as_deref().map(|h| {
            let (at, new) = self.hashes.find(h);
            if new {
                body += field_len(h.len());
            }
            at
        });
        body += field_len(record_body_len(key, hash, entry.data.len()));
        (body, key, hash)
    }

    fn push(&mut self, position: usize, entry: &'e RequestEntry, (body, key, hash): (usize, usize, Option<usize>)) {
        self.keys.add(&entry.partition_key);
        if let Some(text) = &entry.explicit_hash_key {
            self.hashes.add(text);
        }
        self.records.push((position, key, hash));
        self.body = body;
    }

    /// The Kinesis record: keyed as its first member, with that member's hash as its explicit hash key, so that
    /// it lands on the shard all its members map to.
    fn finish(self, entries: &'e [RequestEntry]) -> Packed {
        let members: Vec<usize> = self.records.iter().map(|r| r.0).collect();
        let first = &entries[members[0]];
        if members.len() == 1 {
            return Packed { entry: first.clone(), members };
        }
        // One buffer, written once: the magic, the message, then the MD5 of the message.
        let mut data = Vec::with_capacity(MAGIC.len() + self.body + DIGEST_LEN);
        data.extend_from_slice(&MAGIC);
        for key in &self.keys.strings {
            put_bytes(&mut data, 1, key.as_bytes());
        }
        for hash in &self.hashes.strings {
            put_bytes(&mut data, 2, hash.as_bytes());
        }
        for &(position, key, hash) in &self.records {
            let bytes = &entries[position].data;
            data.push(3 << 3 | 2);
            put_varint(&mut data, record_body_len(key, hash, bytes.len()) as u64);
            data.push(1 << 3);
            put_varint(&mut data, key as u64);
            if let Some(hash) = hash {
                data.push(2 << 3);
                put_varint(&mut data, hash as u64);
            }
            put_bytes(&mut data, 3, bytes);
        }
        debug_assert_eq!(data.len(), MAGIC.len() + self.body);
        let digest = Md5::digest(&data[MAGIC.len()..]);
        data.extend_from_slice(&digest);
        let entry = RequestEntry {
            partition_key: first.partition_key.clone(),
            explicit_hash_key: Some(hash_of(first).to_string()),
            data: Bytes::from(data),
        };
        Packed { entry, members }
    }
}

/// Packs `entries` into as few Kinesis records as fit `max_record_bytes` (data plus partition key), grouping the
/// entries of each shard of `map` in their order. Without a map, entries are grouped by hash key, which keeps
/// each aggregate on one shard whatever the shards are. An entry too large to share a record goes alone, as it
/// is; so does one that shares its shard with no other.
pub fn pack(entries: &[RequestEntry], map: Option<&ShardMap>, max_record_bytes: usize) -> Vec<Packed> {
    // Entries by group, in first-seen order of groups, so that a shard's records keep their order.
    let mut groups: Vec<(u128, Vec<usize>)> = Vec::new();
    let mut index: HashMap<u128, usize> = HashMap::new();
    for (position, entry) in entries.iter().enumerate() {
        let hash = hash_of(entry);
        let group = match map.and_then(|m| m.index_of(hash)) {
            Some(shard) => shard as u128,
            None => hash,
        };
        let at = *index.entry(group).or_insert_with(|| {
            groups.push((group, Vec::new()));
            groups.len() - 1
        });
        groups[at].1.push(position);
    }
    let mut packed = Vec::new();
    for (_, positions) in groups {
        let mut open = Open::default();
        for position in positions {
            let entry = &entries[position];
            let grown = open.with(entry);
            let first_key =
                open.records.first().map_or(entry.partition_key.len(), |r| entries[r.0].partition_key.len());
            if MAGIC.len() + grown.0 + DIGEST_LEN + first_key > max_record_bytes && !open.records.is_empty() {
                packed.push(std::mem::take(&mut open).finish(entries));
                let alone = open.with(entry);
                open.push(position, entry, alone);
            } else {
                open.push(position, entry, grown);
            }
        }
        if !open.records.is_empty() {
            packed.push(open.finish(entries));
        }
    }
    packed
}

/// One record unpacked from an aggregated record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// Its partition key.
    pub partition_key: String,
    /// Its explicit hash key, if it had one.
    pub explicit_hash_key: Option<String>,
    /// Its data.
    pub data: Vec<u8>,
}

/// Reads a varint at `*at`; `None` past the end or past 64 bits.
fn varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        n |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(n);
        }
    }
    None
}

/// A protobuf field: its number, and its varint value or its bytes.
type Field<'a> = (u64, Result<u64, &'a [u8]>);

/// The fields of a protobuf message: (field number, varint value or bytes). `None` for anything malformed or of
/// a wire type the format does not use.
fn fields(bytes: &[u8]) -> Option<Vec<Field<'_>>> {
    let (mut at, mut out) = (0, Vec::new());
    while at < bytes.len() {
        let tag = varint(bytes, &mut at)?;
        match tag & 7 {
            0 => out.push((tag >> 3, Ok(varint(bytes, &mut at)?))),
            2 => {
                let len = usize::try_from(varint(bytes, &mut at)?).ok()?;
                let body = bytes.get(at..at.checked_add(len)?)?;
                at += len;
                out.push((tag >> 3, Err(body)));
            }
            _ => return None,
        }
    }
    Some(out)
}

/// The message and the digest of what starts with the magic.
fn split(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let body = data.strip_prefix(&MAGIC)?;
    body.split_at_checked(body.len().checked_sub(DIGEST_LEN)?)
}

/// How many records an aggregated record carries, read from its message's structure without checking its digest
/// or tables (for a receiver that only counts, such as the benchmarks' endpoint); `None` when `data` does not have
/// the structure of one.
pub fn record_count(data: &[u8]) -> Option<usize> {
    let (message, _) = split(data)?;
    Some(fields(message)?.iter().filter(|f| f.0 == 3).count())
}

/// The records of a KPL aggregated record, or `None` when `data` is not one (no magic, a wrong MD5, a malformed
/// message or an index outside its table): then it is an ordinary record. Linear in `data`.
pub fn unpack(data: &[u8]) -> Option<Vec<Unpacked>> {
    let (message, digest) = split(data)?;
    if Md5::digest(message).as_slice() != digest {
        return None;
    }
    let top = fields(message)?;
    let table = |n: u64| -> Option<Vec<String>> {
        top.iter().filter(|f| f.0 == n).map(|f| f.1.err().and_then(|b| String::from_utf8(b.to_vec()).ok())).collect()
    };
    let (keys, hashes) = (table(1)?, table(2)?);
    let mut records = Vec::new();
    for (_, value) in top.iter().filter(|f| f.0 == 3) {
        let inner = fields(value.err()?)?;
        let number = |n: u64| inner.iter().find(|g| g.0 == n).and_then(|g| g.1.ok());
        let key = keys.get(usize::try_from(number(1)?).ok()?)?.clone();
        let hash = match number(2) {
            Some(index) => Some(hashes.get(usize::try_from(index).ok()?)?.clone()),
            None => None,
        };
        let data = inner.iter().find(|g| g.0 == 3).and_then(|g| g.1.err())?.to_vec();
        records.push(Unpacked { partition_key: key, explicit_hash_key: hash, data });
    }
    Some(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, hash: Option<&str>, data: &str) -> RequestEntry {
        RequestEntry {
            partition_key: key.into(),
            explicit_hash_key: hash.map(Into::into),
            data: Bytes::copy_from_slice(data.as_bytes()),
        }
    }

    #[test]
    fn records_of_a_shard_share_an_aggregate_in_order() {
        let entries = vec![entry("a", None, "1"), entry("b", Some("5"), "2"), entry("a", None, "3")];
        let map = ShardMap::new(vec![crate::shards::Shard { id: "s".into(), start: 0, end: u128::MAX }]);
        let packed = pack(&entries, Some(&map), 1 << 20);
        assert_eq!(packed.len(), 1);
        assert_eq!(packed[0].members, [0, 1, 2]);
        assert_eq!(packed[0].entry.partition_key, "a");
        assert_eq!(packed[0].entry.explicit_hash_key, Some(crate::shards::hash_of_key("a").to_string()));
        let inner: Vec<(String, Option<String>, Vec<u8>)> = unpack(&packed[0].entry.data)
            .unwrap()
            .into_iter()
            .map(|u| (u.partition_key, u.explicit_hash_key, u.data))
            .collect();
        assert_eq!(
            inner,
            [
                ("a".into(), None, b"1".to_vec()),
                ("b".into(), Some("5".into()), b"2".to_vec()),
                ("a".into(), None, b"3".to_vec())
            ]
        );
        // Anything else is not an aggregate: a JSON record, the magic with a wrong digest, a cut record.
        assert_eq!(unpack(b"{}"), None);
        let mut broken = packed[0].entry.data.to_vec();
        broken[6] ^= 1;
        assert_eq!(unpack(&broken), None);
        assert_eq!(unpack(&packed[0].entry.data[..10]), None);
        assert_eq!(record_count(&packed[0].entry.data), Some(3));
        assert_eq!(record_count(b"{}"), None);
    }

    #[test]
    fn aggregates_stay_within_the_record_limit_and_loners_go_plain() {
        let entries: Vec<RequestEntry> = (0..100).map(|i| entry("k", None, &format!("{i:0>90}"))).collect();
        let packed = pack(&entries, None, 1000);
        assert!(packed.len() > 1);
        let mut seen: Vec<usize> = Vec::new();
        for p in &packed {
            assert!(p.entry.size() <= 1000, "{}", p.entry.size());
            seen.extend(&p.members);
            if p.members.len() > 1 {
                assert_eq!(unpack(&p.entry.data).unwrap().len(), p.members.len());
            }
        }
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        // Two shards by hash without a map: one record each, sent as they are.
        let two = [entry("a", None, "x"), entry("b", None, "y")];
        let plain = pack(&two, None, 1000);
        assert_eq!(plain.iter().map(|p| p.entry.clone()).collect::<Vec<_>>(), two);
    }
}
