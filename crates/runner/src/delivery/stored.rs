//! How messages are kept in a spool entry: a format mark, then postcard (a compact serde format) of `(messageId,
//! user key, message JSON)` triples, compressed with LZ4. The keys travel with the message so that delivery never
//! parses it again, and reading an entry back is one decompression and a walk over lengths.
//!
//! The mark is a zero byte and the format's version: format 1 holds the postcard bytes as they are, format 2 the
//! length of those bytes as a postcard varint and then an LZ4 block of them. This build writes format 2 where
//! compression saves an eighth or more of an entry, format 1 where it does not. Compression takes a batch's keys and
//! its repeated context to a fraction of their size: the spool's writer, the one thread every acknowledgement waits
//! on, copies, checksums and writes a fraction of the pages, and the disk takes a fraction of the bytes. Entries of the first layout had no mark; they start with the postcard count of their
//! messages, which is never zero. Every layout reads back.

use std::sync::Arc;

use bytes::Bytes;
use sink::Record;

/// Encodes triples of (messageId, user key, message JSON) as an entry of format [`FORMAT`], or of format 1 when
/// compression would save less than an eighth of its bytes ([`compression_pays`]).
///
/// The postcard bytes are written out rather than through serde, which grows the buffer as it goes and checks
/// each message's UTF-8 again: they are sized once and copied into, then compressed.
pub fn encode<'a>(items: impl IntoIterator<Item = (&'a str, &'a str, &'a [u8])>) -> Vec<u8> {
    let plain = postcard_triples(items);
    let packed = lz4_flex::block::compress(&plain);
    if !compression_pays(plain.len(), packed.len()) {
        // Stored as it is, the entry is read back as a slice, with nothing to decompress.
        let mut out = Vec::with_capacity(2 + plain.len());
        out.extend_from_slice(&[0, 1]);
        out.extend_from_slice(&plain);
        return out;
    }
    let mut out = Vec::with_capacity(MARK.len() + VARINT_MAX + packed.len());
    out.extend_from_slice(&MARK);
    varint(&mut out, plain.len());
    out.extend_from_slice(&packed);
    out
}

/// Whether an entry of `plain` bytes is worth storing as the `packed` bytes LZ4 made of it: when they save an
/// eighth or more. One app's batches, whose keys and `context` repeat, compress 2x to 4x and always pay (the spool's
/// writer, the thread every acknowledgement waits on, writes a third of the pages); a single call, or values that
/// are random bytes (IDs, tokens, encrypted blobs), save little, and decompressing them on every read would cost
/// delivery for nothing.
fn compression_pays(plain: usize, packed: usize) -> bool {
    packed + VARINT_MAX < plain - plain / 8
}

/// The longest postcard varint of a `usize`.
const VARINT_MAX: usize = 10;

/// What postcard makes of a `Vec<(&str, &str, &str)>` of the triples.
fn postcard_triples<'a>(items: impl IntoIterator<Item = (&'a str, &'a str, &'a [u8])>) -> Vec<u8> {
    let items: Vec<(&str, &str, &[u8])> = items.into_iter().collect();
    let size = VARINT_MAX
        + items.iter().map(|(id, key, message)| 3 * VARINT_MAX + id.len() + key.len() + message.len()).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    varint(&mut out, items.len());
    for (id, key, message) in items {
        for field in [id.as_bytes(), key.as_bytes(), message] {
            varint(&mut out, field.len());
            out.extend_from_slice(field);
        }
    }
    out
}

/// The version of the entry format this build writes (it reads this one and every earlier one).
pub const FORMAT: u8 = 2;

/// What an entry of this format starts with.
const MARK: [u8; 2] = [0, FORMAT];

/// The most bytes an entry's postcard may claim to take uncompressed (an entry holds one request's messages, a few
/// MB at most); a damaged length beyond it is refused rather than allocated.
const MAX_PLAIN_BYTES: usize = 1 << 30;

/// Why a stored entry cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum StoredError {
    /// A newer Tributary wrote it.
    #[error("the entry was written in format {0} by a newer Tributary, and this one reads format {FORMAT}")]
    Newer(u8),
    /// Its bytes are not an entry.
    #[error("the entry is damaged: {0}")]
    Damaged(#[from] postcard::Error),
    /// Its compressed bytes do not decompress to what its header says.
    #[error("the entry is damaged: {0}")]
    Compressed(String),
}

/// Postcard's unsigned varint: seven bits a byte, low bits first, the high bit set on every byte but the last.
fn varint(out: &mut Vec<u8>, mut value: usize) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Decodes an entry into records from `source_id`, and gives its postcard bytes ([`plain`]) too, so that a caller
/// can read its [`triples`] again without decompressing it twice. Each record's payload is a slice of those bytes,
/// not a copy of its own.
pub fn decode(source_id: &str, items: &Bytes) -> Result<(Bytes, Vec<Record>), StoredError> {
    let plain = plain(items)?;
    let triples = triples(&plain)?;
    let source: Arc<str> = Arc::from(source_id);
    let records = triples
        .into_iter()
        .map(|(id, key, message)| {
            Record::from_stored(source.clone(), id.to_owned(), key.to_owned(), plain.slice_ref(message))
        })
        .collect();
    Ok((plain, records))
}

/// An entry without the messages whose messageId is in `dropped`, and how many messages it keeps.
pub fn without(items: &[u8], dropped: &std::collections::HashSet<&str>) -> Result<(Vec<u8>, u32), StoredError> {
    let plain = plain(&Bytes::copy_from_slice(items))?;
    let kept: Vec<Triple<'_>> = triples(&plain)?.into_iter().filter(|(id, _, _)| !dropped.contains(id)).collect();
    let count = kept.len() as u32;
    // The JSON was stored as it came; encode takes it as bytes again.
    Ok((encode(kept), count))
}

/// An entry's postcard bytes, for [`triples`]: decompressed from format 2, a slice of `items` otherwise.
pub fn plain(items: &Bytes) -> Result<Bytes, StoredError> {
    match &items[..] {
        [0, 2, rest @ ..] => {
            let (length, packed) = read_varint(rest)
                .filter(|(length, _)| *length <= MAX_PLAIN_BYTES)
                .ok_or_else(|| StoredError::Compressed("its length is missing or beyond 1 GiB".to_owned()))?;
            let plain =
                lz4_flex::block::decompress(packed, length).map_err(|e| StoredError::Compressed(e.to_string()))?;
            if plain.len() != length {
                return Err(StoredError::Compressed(format!("{} bytes where its header says {length}", plain.len())));
            }
            Ok(Bytes::from(plain))
        }
        [0, 1, ..] => Ok(items.slice(2..)),
        [0, newer, ..] => Err(StoredError::Newer(*newer)),
        // The first layout, without a mark.
        _ => Ok(items.clone()),
    }
}

/// A postcard varint at the start of `bytes`, and what follows it.
fn read_varint(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let mut value = 0usize;
    for (i, &byte) in bytes.iter().enumerate().take(VARINT_MAX) {
        value |= usize::from(byte & 0x7f).checked_shl(7 * i as u32)?;
        if byte & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

/// One stored message: its messageId, its user key and its JSON.
pub type Triple<'a> = (&'a str, &'a str, &'a [u8]);

/// The (messageId, user key, message JSON) triples of an entry's postcard bytes ([`plain`]), borrowed from them.
/// The messages' bytes are taken as they are (the same wire format as postcard's `&str`, without checking UTF-8
/// again): they were JSON text when stored, and every destination takes them as bytes.
pub fn triples(plain: &[u8]) -> Result<Vec<Triple<'_>>, StoredError> {
    Ok(postcard::from_bytes(plain)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let items = encode([("m1", "user \"1\"", br#"{"a":1}"#.as_slice()), ("m2", "ü", br#"{"b":[2]}"#.as_slice())]);
        let (_, records) = decode("src", &Bytes::from(items)).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!((records[0].message_id(), records[0].user_key()), ("m1", "user \"1\""));
        assert_eq!(records[1].payload().as_ref(), br#"{"b":[2]}"#);
        assert_eq!(records[1].source_id(), "src");
        assert!(decode("src", &Bytes::from_static(b"\x05garbage")).is_err());
    }

    #[test]
    fn an_entry_without_some_messages_keeps_the_others_as_they_were() {
        let padding = "x".repeat(400);
        let messages: Vec<(String, String)> =
            (0..5).map(|i| (format!("m{i}"), format!(r#"{{"n":{i},"p":"{padding}"}}"#))).collect();
        let items = encode(messages.iter().map(|(id, json)| (id.as_str(), "u", json.as_bytes())));
        let dropped = std::collections::HashSet::from(["m1", "m3"]);
        let (kept, count) = without(&items, &dropped).unwrap();
        assert_eq!(count, 3);
        let (_, records) = decode("src", &Bytes::from(kept)).unwrap();
        let ids: Vec<&str> = records.iter().map(|r| r.message_id()).collect();
        assert_eq!(ids, ["m0", "m2", "m4"]);
        assert_eq!(records[1].payload().as_ref(), messages[2].1.as_bytes());
    }

    #[test]
    fn holds_postcard_compressed() {
        let long = "x".repeat(20_000);
        let triples = vec![("m1", "k", "{}"), ("", "ü", long.as_str()), ("m3", &long[..127], &long[..128])];
        let ours = encode(triples.iter().map(|(id, key, message)| (*id, *key, message.as_bytes())));
        assert_eq!(ours[..2], [0, FORMAT]);
        let postcard = postcard::to_stdvec(&triples).unwrap();
        assert!(ours.len() < postcard.len() / 10, "{} bytes for {} uncompressed", ours.len(), postcard.len());
        assert_eq!(plain(&Bytes::from(ours)).unwrap(), postcard);
        let empty = encode([]);
        assert_eq!(
            plain(&Bytes::from(empty)).unwrap(),
            postcard::to_stdvec::<Vec<(&str, &str, &str)>>(&vec![]).unwrap()
        );
    }

    #[test]
    fn an_entry_compression_cannot_shrink_is_stored_as_it_is() {
        let random: String = (0..4_000u64)
            .map(|i| {
                let z = (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                char::from(b'!' + ((z ^ (z >> 29)) % 90) as u8)
            })
            .collect();
        let message = format!(r#"{{"p":"{}"}}"#, random.replace(['"', '\\'], "x"));
        let ours = encode([("m1", "k", message.as_bytes())]);
        assert_eq!(ours[..2], [0, 1], "random bytes are stored uncompressed");
        let (_, records) = decode("src", &Bytes::from(ours)).unwrap();
        assert_eq!(records[0].payload().as_ref(), message.as_bytes());
        assert!(compression_pays(1000, 300) && !compression_pays(1000, 900) && !compression_pays(10, 2));
    }

    #[test]
    fn entries_of_earlier_formats_read_and_newer_ones_are_named() {
        let triples = vec![("m1", "k", "{}")];
        let first_layout = Bytes::from(postcard::to_stdvec(&triples).unwrap());
        assert_eq!(decode("src", &first_layout).unwrap().1[0].message_id(), "m1");
        let format_1 = Bytes::from([&[0, 1][..], &first_layout[..]].concat());
        assert_eq!(decode("src", &format_1).unwrap().1[0].payload().as_ref(), b"{}");
        let newer = Bytes::from([&[0, FORMAT + 1][..], &first_layout[..]].concat());
        let error = decode("src", &newer).unwrap_err().to_string();
        assert!(error.contains("format 3 by a newer Tributary"), "{error}");
    }

    #[test]
    fn a_damaged_compressed_entry_is_an_error_not_a_panic_or_an_allocation() {
        let good = encode([("m1", "k", br#"{"type":"track","event":"e","userId":"u"}"#.as_slice())]);
        // A length beyond the bound, a length that does not match, a truncated block, and every cut of the entry.
        let huge = [&[0, FORMAT][..], &[0xff, 0xff, 0xff, 0xff, 0x7f][..], &good[3..]].concat();
        let wrong_length = [&[0, FORMAT, good[2] + 1][..], &good[3..]].concat();
        for damaged in [huge, wrong_length, good[..good.len() - 1].to_vec()] {
            let error = decode("src", &Bytes::from(damaged)).unwrap_err().to_string();
            assert!(error.starts_with("the entry is damaged"), "{error}");
        }
        for cut in 0..good.len() {
            let _ = decode("src", &Bytes::copy_from_slice(&good[..cut]));
        }
    }
}
