//! Partition keys: which identity a destination groups a message by.

use std::borrow::Cow;

use crate::Message;

/// Kinesis accepts partition keys of 1 to 256 Unicode characters.
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

impl Message {
    /// The partition key Segment's Kinesis destination uses: `userId || anonymousId`, or `messageId` when
    /// `use_message_id` is set.
    ///
    /// The key is cut to [`MAX_PARTITION_KEY_CHARS`] characters and is never empty: validation guarantees an
    /// identity, and a message that has no `messageId` yet (not enriched) falls back to its identity.
    pub fn partition_key(&self, use_message_id: bool) -> Cow<'_, str> {
        let key = match self.message_id().filter(|_| use_message_id) {
            Some(id) => Cow::Borrowed(id),
            None => match self.user_id().or_else(|| self.anonymous_id()) {
                Some(identity) => match identity {
                    crate::Id::Str(s) => Cow::Borrowed(s),
                    number => Cow::Owned(number.to_text().into_owned()),
                },
                // Unreachable for a validated message; a fixed key keeps Kinesis from rejecting the whole batch.
                None => Cow::Borrowed("anonymous"),
            },
        };
        truncate_chars(key, MAX_PARTITION_KEY_CHARS)
    }
}

/// Cuts a string to at most `max` characters, on a character boundary.
fn truncate_chars(text: Cow<'_, str>, max: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => text,
        Some((cut, _)) => match text {
            Cow::Borrowed(s) => Cow::Borrowed(&s[..cut]),
            Cow::Owned(mut s) => {
                s.truncate(cut);
                Cow::Owned(s)
            }
        },
    }
}
