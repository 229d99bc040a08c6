//! The identity a message is grouped by: `userId`, else `anonymousId`, as text.

use std::borrow::Cow;

use crate::Message;

impl Message {
    /// The identity destinations group a message by: `userId || anonymousId` (an empty `userId` does not count),
    /// numbers written as text, whole. `None` only for a message that was never validated; what a destination
    /// makes of it (a partition key and its length limit) is the destination's rule.
    pub fn user_key(&self) -> Option<Cow<'_, str>> {
        self.user_id().or_else(|| self.anonymous_id()).map(|identity| match identity {
            crate::Id::Str(s) => Cow::Borrowed(s),
            number => Cow::Owned(number.to_text().into_owned()),
        })
    }
}
