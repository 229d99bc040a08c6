//! A record as a Kinesis request carries it.

use bytes::Bytes;

/// One record as Kinesis receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestEntry {
    /// The partition key (1 to 256 characters).
    pub partition_key: String,
    /// The explicit hash key (a decimal number below 2^128), which picks the shard instead of the key's MD5.
    pub explicit_hash_key: Option<String>,
    /// The record's data, before the base64 of the wire format.
    pub data: Bytes,
}

impl RequestEntry {
    /// The size Kinesis counts against its record and request limits: data plus partition key, in bytes.
    pub fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}
