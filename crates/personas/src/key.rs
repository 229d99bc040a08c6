//! Trait keys from names.
//!
//! The rule, shared with the common snake_case libraries (this is `heck`'s): words are split at every character
//! that is not a letter or a digit (spaces, punctuation, runs of them count once) and where lower case turns to
//! upper case (`orderCompleted`, `HTTPServer` → `http_server`); words are lower-cased and joined with `_`.
//! Digits stay with their word unless something separates them (`Last 30 Days` → `last_30_days`, `last30Days` →
//! `last30_days`), leading digits are kept, and non-ASCII letters are kept, lower-cased (`Café Crème` →
//! `café_crème`). So Segment's "Order Completed Last 30 Days" is `order_completed_last_30_days`.

use heck::ToSnakeCase as _;

/// The snake_cased key of an audience or trait name.
pub fn snake_case(name: &str) -> String {
    name.to_snake_case()
}
