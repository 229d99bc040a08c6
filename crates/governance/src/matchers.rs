//! Field matchers: which fields of a message hold personal data, by the field's key name or by its value. The
//! built-in ones cover what Segment's Privacy Portal classes as sensitive by default; a team adds its own.

use core::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use regex::Regex;
use serde::Deserialize;

/// A custom matcher (`[privacy.matchers.NAME]`): a field matches when its key name matches `key` or its value
/// matches `value`.
///
/// ```toml
/// [privacy.matchers.loyalty_id]
/// key = "loyalty_?(id|number)"        # the whole key name, without regard to case
/// value = "LOY-[0-9]{8}"              # the whole value
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatcherConfig {
    /// A regular expression the whole key name must match, without regard to case (`"loyalty_?id"`).
    #[serde(default)]
    pub key: Option<String>,
    /// A regular expression a whole value must match: a string, or a number as JSON writes it.
    #[serde(default)]
    pub value: Option<String>,
}

/// The built-in matchers' names, as `matcher:NAME` gives them.
pub const BUILT_IN: [&str; 6] = ["email", "phone", "credit_card", "ssn", "ip_address", "street_address"];

/// Key names (lowercased, with everything but letters and digits left out) each built-in matcher takes whatever the
/// value.
const EMAIL_KEYS: &[&str] = &["email", "emailaddress", "mail", "useremail", "contactemail", "workemail"];
const PHONE_KEYS: &[&str] = &[
    "phone",
    "phonenumber",
    "mobile",
    "mobilenumber",
    "mobilephone",
    "cellphone",
    "cell",
    "telephone",
    "tel",
    "homephone",
    "workphone",
    "fax",
];
const CARD_KEYS: &[&str] =
    &["creditcard", "creditcardnumber", "cardnumber", "ccnumber", "ccnum", "pan", "cardno", "cvv", "cvc"];
const SSN_KEYS: &[&str] = &["ssn", "socialsecuritynumber", "socialsecurity", "socialsecurityno"];
const IP_KEYS: &[&str] = &["ip", "ipaddress", "clientip", "remoteip", "userip", "ipv4", "ipv6"];
const ADDRESS_KEYS: &[&str] = &[
    "address",
    "streetaddress",
    "street",
    "street1",
    "street2",
    "addressline1",
    "addressline2",
    "address1",
    "address2",
    "line1",
    "line2",
    "homeaddress",
    "billingaddress",
    "shippingaddress",
    "mailingaddress",
    "postaladdress",
];

/// How a matcher tests a value.
#[derive(Debug, Clone)]
enum ValueTest {
    None,
    Email(Regex),
    Phone(Regex),
    /// 13 to 19 digits (spaces or dashes between groups allowed) with a card network's prefix and a valid Luhn
    /// check digit.
    Card,
    Ssn,
    Ip,
    Pattern(Regex),
}

/// How a matcher tests a key name.
#[derive(Debug, Clone)]
enum KeyTest {
    None,
    /// Normalized names (lowercase letters and digits).
    Names(&'static [&'static str]),
    Pattern(Regex),
}

/// One compiled matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// Its name, as `matcher:NAME` and `/metrics` give it.
    pub name: Arc<str>,
    key: KeyTest,
    value: ValueTest,
}

/// A key name as the built-in matchers compare it: lowercase letters and digits only (`Email_Address` and
/// `emailAddress` are both `emailaddress`).
pub fn normalize_key(key: &str) -> String {
    key.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

impl Matcher {
    /// The built-in matcher `name`, if there is one.
    pub fn built_in(name: &str) -> Option<Matcher> {
        let regex = |pattern: &str| Regex::new(pattern).expect("the built-in patterns compile");
        let (key, value) = match name {
            "email" => (
                EMAIL_KEYS,
                ValueTest::Email(regex(r"^[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}$")),
            ),
            // E.164 (`+14155550123`), or a ten-digit number written with separators (`415-555-0123`,
            // `(415) 555 0123`, `+1 415.555.0123`). Ten bare digits are as likely an order number: key names
            // catch those.
            "phone" => (
                PHONE_KEYS,
                ValueTest::Phone(regex(
                    r"^(?:\+[1-9][0-9]{7,14}|(?:\+[0-9]{1,3}[ .\-]?)?(?:\([0-9]{3}\) ?|[0-9]{3}[ .\-])[0-9]{3}[ .\-][0-9]{4})$",
                )),
            ),
            "credit_card" => (CARD_KEYS, ValueTest::Card),
            "ssn" => (SSN_KEYS, ValueTest::Ssn),
            "ip_address" => (IP_KEYS, ValueTest::Ip),
            "street_address" => (ADDRESS_KEYS, ValueTest::None),
            _ => return None,
        };
        Some(Matcher { name: Arc::from(name), key: KeyTest::Names(key), value })
    }

    /// A custom matcher; the error names the key (`key` or `value`) and what is wrong.
    pub fn custom(name: &str, config: &MatcherConfig) -> Result<Matcher, (&'static str, String)> {
        if config.key.is_none() && config.value.is_none() {
            return Err(("key", "a matcher needs key = \"PATTERN\" (a key name), value = \"PATTERN\", or both".into()));
        }
        let compile = |field: &'static str, pattern: &str, flags: &str| {
            Regex::new(&format!("{flags}^(?:{pattern})$"))
                .map_err(|e| (field, format!("{pattern:?} is not a regular expression: {e}")))
        };
        let key = match &config.key {
            Some(pattern) => KeyTest::Pattern(compile("key", pattern, "(?i)")?),
            None => KeyTest::None,
        };
        let value = match &config.value {
            Some(pattern) => ValueTest::Pattern(compile("value", pattern, "")?),
            None => ValueTest::None,
        };
        Ok(Matcher { name: Arc::from(name), key, value })
    }

    /// Whether the built-in key names would be compared, which needs the key normalized.
    pub(crate) fn uses_normalized_key(&self) -> bool {
        matches!(self.key, KeyTest::Names(_))
    }

    /// Whether a field named `key` (`normalized` by [`normalize_key`], when some matcher needs it) holding `text`
    /// (a string, or a number's JSON) matches.
    pub(crate) fn matches(&self, key: &str, normalized: &str, text: &str) -> bool {
        let by_key = match &self.key {
            KeyTest::None => false,
            KeyTest::Names(names) => names.contains(&normalized),
            KeyTest::Pattern(pattern) => pattern.is_match(key),
        };
        by_key || self.value_matches(text)
    }

    fn value_matches(&self, text: &str) -> bool {
        match &self.value {
            ValueTest::None => false,
            ValueTest::Email(pattern) => text.contains('@') && pattern.is_match(text),
            ValueTest::Phone(pattern) => text.len() <= 24 && pattern.is_match(text),
            ValueTest::Card => is_card_number(text),
            ValueTest::Ssn => is_ssn(text),
            ValueTest::Ip => is_ip(text),
            ValueTest::Pattern(pattern) => pattern.is_match(text),
        }
    }
}

/// Whether `text` is a payment card number: 13 to 19 digits, grouped by single spaces or dashes or not at all, with
/// a card network's prefix (Visa, Mastercard, American Express, Discover, Diners Club, JCB, UnionPay, Maestro) and
/// a valid Luhn check digit. A 16-digit order number fails the check nine times in ten, and the prefix most of the
/// rest.
pub fn is_card_number(text: &str) -> bool {
    if text.len() > 23 {
        return false;
    }
    let mut digits = Vec::with_capacity(19);
    let mut separator = None;
    let mut last_was_digit = false;
    for c in text.chars() {
        match c {
            '0'..='9' => {
                digits.push(c as u8 - b'0');
                last_was_digit = true;
            }
            ' ' | '-' if last_was_digit && separator.is_none_or(|s| s == c) => {
                separator = Some(c);
                last_was_digit = false;
            }
            _ => return false,
        }
    }
    last_was_digit && (13..=19).contains(&digits.len()) && has_card_prefix(&digits) && luhn(&digits)
}

fn has_card_prefix(digits: &[u8]) -> bool {
    let prefix = |n: usize| digits[..n].iter().fold(0u32, |acc, d| acc * 10 + u32::from(*d));
    let (two, three, four, six) = (prefix(2), prefix(3), prefix(4), prefix(6));
    let length = digits.len();
    match digits[0] {
        4 => matches!(length, 13 | 16 | 19),
        2 => (222_100..=272_099).contains(&six) && length == 16,
        // Mastercard's 51 to 55 and Maestro's 50 and 56 to 58.
        5 => (50..=58).contains(&two),
        3 => {
            (matches!(two, 34 | 37) && length == 15)
                || (((300..=305).contains(&three) || matches!(two, 36 | 38 | 39)) && length >= 14)
                || ((3528..=3589).contains(&four) && length >= 16)
        }
        6 => {
            (four == 6011 || two == 65 || (644..=649).contains(&three) || two == 62 || matches!(two, 63 | 67))
                && length >= 16
        }
        _ => false,
    }
}

/// The Luhn check: from the right, every second digit doubled (less 9 past 9), the sum a multiple of 10.
pub fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            match i % 2 {
                1 if d * 2 > 9 => d * 2 - 9,
                1 => d * 2,
                _ => d,
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether `text` is a US Social Security number as written, `AAA-GG-SSSS`, with an area, group and serial the SSA
/// issues (no 000, 666 or 9xx area, no 00 group, no 0000 serial).
pub fn is_ssn(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() != 11 || bytes[3] != b'-' || bytes[6] != b'-' {
        return false;
    }
    let part = |range: std::ops::Range<usize>| {
        let part = &text[range];
        part.bytes().all(|b| b.is_ascii_digit()).then(|| part.parse::<u32>().unwrap_or(0))
    };
    match (part(0..3), part(4..6), part(7..11)) {
        (Some(area), Some(group), Some(serial)) => area != 0 && area != 666 && area < 900 && group != 0 && serial != 0,
        _ => false,
    }
}

/// Whether `text` is an IPv4 address in dotted-quad form or an IPv6 address.
pub fn is_ip(text: &str) -> bool {
    match text.contains(':') {
        true => text.len() <= 45 && text.matches(':').count() >= 2 && text.parse::<Ipv6Addr>().is_ok(),
        false => text.len() <= 15 && text.parse::<Ipv4Addr>().is_ok(),
    }
}
