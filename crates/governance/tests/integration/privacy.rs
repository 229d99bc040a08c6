//! Privacy controls: HMAC-SHA-256 against RFC 4231, paths and matchers on messages of the Segment spec, and the
//! matchers on a corpus of real-looking personal data and of near misses.

use governance::matchers::{is_card_number, is_ip, is_ssn, luhn};
use governance::privacy::hmac_hex;
use governance::{Privacy, PrivacyAction, PrivacyConfig};
use segment_model::Message;
use serde_json::{Value, json};

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

fn config(toml_text: &str) -> PrivacyConfig<String> {
    #[derive(serde::Deserialize)]
    struct File {
        privacy: PrivacyConfig<String>,
    }
    let file: File = toml::from_str(toml_text).unwrap();
    file.privacy
}

fn privacy(toml_text: &str) -> Privacy {
    Privacy::compile(&config(toml_text), Some(KEY)).unwrap()
}

fn problems(toml_text: &str, key: Option<&[u8]>) -> Vec<(String, String)> {
    Privacy::compile(&config(toml_text), key).unwrap_err().into_iter().map(|p| (p.key, p.message)).collect()
}

fn message(json: Value) -> Message {
    Message::from_slice(json.to_string().as_bytes()).unwrap()
}

fn applied(privacy: &Privacy, json: Value) -> (Value, Vec<(String, PrivacyAction)>) {
    let mut message = message(json);
    let changes = privacy.apply(&mut message);
    let changes = changes.into_iter().map(|c| (c.matcher.to_string(), c.action)).collect();
    (Value::Object(message.into_map()), changes)
}

fn hashed(value: &str) -> String {
    hmac_hex(KEY, value.as_bytes())
}

#[test]
fn hmac_is_rfc_4231s() {
    // RFC 4231, test cases 2 (a short key) and 6 (a key longer than SHA-256's block, hashed first).
    assert_eq!(
        hmac_hex(b"Jefe", b"what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(
        hmac_hex(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First"),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
}

#[test]
fn paths_are_hashed_and_dropped_and_the_rest_is_left_as_sent() {
    let p = privacy(
        r#"
        [privacy]
        hash = ["traits.email", "traits.address"]
        drop = ["context.ip", "traits.missing"]
        privacy_key = "k"
        "#,
    );
    let (out, changes) = applied(
        &p,
        json!({"type":"identify","userId":"u1","traits":{"email":"jane@example.com","plan":"pro",
            "address":{"city":"Oslo"}},"context":{"ip":"203.0.113.9","locale":"nb-NO"}}),
    );
    assert_eq!(out["traits"]["email"], hashed("jane@example.com"));
    assert_eq!(out["traits"]["address"], hashed(r#"{"city":"Oslo"}"#), "an object's JSON is hashed whole");
    assert_eq!(out["traits"]["plan"], "pro");
    assert_eq!(out["context"], json!({"locale":"nb-NO"}));
    assert_eq!(out["userId"], "u1", "identity is never touched");
    assert_eq!(
        changes,
        [
            ("field".into(), PrivacyAction::Hash),
            ("field".into(), PrivacyAction::Hash),
            ("field".into(), PrivacyAction::Drop)
        ]
    );
    // The same value hashes alike in another message (it still joins), and differently under another key.
    let (again, _) = applied(&p, json!({"type":"identify","userId":"u2","traits":{"email":"jane@example.com"}}));
    assert_eq!(again["traits"]["email"], out["traits"]["email"]);
    let other =
        Privacy::compile(&config("[privacy]\nhash = [\"traits.email\"]"), Some(b"another key, 16+ bytes")).unwrap();
    let (elsewhere, _) =
        applied(&other, json!({"type":"identify","userId":"u2","traits":{"email":"jane@example.com"}}));
    assert_ne!(elsewhere["traits"]["email"], out["traits"]["email"]);
}

#[test]
fn a_message_the_controls_do_not_touch_keeps_its_bytes() {
    let p = privacy("[privacy]\ndrop = [\"context.ip\", \"matcher:email\"]");
    let sent =
        r#"{"type":"track","event":"Viewed","anonymousId":"a1","properties":{ "n" : 1.50 },"context":{"locale":"en"}}"#;
    let mut m = Message::from_slice(sent.as_bytes()).unwrap();
    let before = m.to_json_vec();
    assert!(p.apply(&mut m).is_empty());
    assert_eq!(m.to_json_vec(), before);
}

#[test]
fn a_field_both_lists_name_is_dropped() {
    let p = privacy("[privacy]\nhash = [\"properties.email\", \"matcher:email\"]\ndrop = [\"properties.email\"]");
    let (out, changes) = applied(
        &p,
        json!({"type":"track","event":"Signed Up","userId":"u","properties":{"email":"a@example.org","other":"b@example.org"}}),
    );
    assert_eq!(out["properties"], json!({"other": hashed("b@example.org")}));
    assert_eq!(changes, [("field".into(), PrivacyAction::Drop), ("email".into(), PrivacyAction::Hash)]);
}

#[test]
fn built_in_matchers_find_fields_by_key_name_and_by_value_and_leave_near_misses() {
    let p = privacy(
        r#"
        [privacy]
        hash = ["matcher:email", "matcher:phone", "matcher:street_address"]
        drop = ["matcher:credit_card", "matcher:ssn", "matcher:ip_address"]
        "#,
    );
    let (out, _) = applied(
        &p,
        json!({"type":"track","event":"Order Completed","userId":"u1",
            "properties":{
                "Email_Address": "not even an address",
                "note": "reach me at jane.doe+tag@mail.example.co.uk",
                "contact": "jane.doe+tag@mail.example.co.uk",
                "phoneNumber": 4155550123u64,
                "alt": "+14155550123",
                "office": "(415) 555-0123",
                "order_id": "4155550123",
                "date": "2024-01-15",
                "card": "4111 1111 1111 1111",
                "amex": "378282246310005",
                "as_number": 4111111111111111u64,
                "order_number": "4111111111111112",
                "tracking": "9999999999999995",
                "tax": "123-45-6789",
                "bad_ssn": "666-12-3456",
                "zero_group": "123-00-6789",
                "server": "192.168.1.20",
                "v6": "2001:db8::1",
                "version": "1.2.3",
                "overflow": "256.1.1.1",
                "time": "10:30:00",
                "shipping": {"street": "1 Infinite Loop", "city": "Cupertino", "line1": "Apt 4"},
                "emails": ["a@example.com", "no"],
                "total": 19.99
            },
            "context":{"ip":"198.51.100.7","library":{"name":"analytics-node","version":"6.2.0"}}}),
    );
    let props = &out["properties"];
    let kept = |key: &str, value: Value| assert_eq!(props[key], value, "{key} is not personal data");
    let gone = |key: &str| assert!(props.get(key).is_none(), "{key} should be dropped: {}", props[key]);
    let hash = |key: &str, of: &str| assert_eq!(props[key], hashed(of), "{key} should be hashed");
    hash("Email_Address", "not even an address");
    kept("note", json!("reach me at jane.doe+tag@mail.example.co.uk"));
    hash("contact", "jane.doe+tag@mail.example.co.uk");
    hash("phoneNumber", "4155550123");
    hash("alt", "+14155550123");
    hash("office", "(415) 555-0123");
    kept("order_id", json!("4155550123"));
    kept("date", json!("2024-01-15"));
    gone("card");
    gone("amex");
    gone("as_number");
    kept("order_number", json!("4111111111111112"));
    kept("tracking", json!("9999999999999995"));
    gone("tax");
    kept("bad_ssn", json!("666-12-3456"));
    kept("zero_group", json!("123-00-6789"));
    gone("server");
    gone("v6");
    kept("version", json!("1.2.3"));
    kept("overflow", json!("256.1.1.1"));
    kept("time", json!("10:30:00"));
    assert_eq!(
        props["shipping"],
        json!({"street": hashed("1 Infinite Loop"), "city": "Cupertino", "line1": hashed("Apt 4")})
    );
    assert_eq!(props["emails"], json!([hashed("a@example.com"), "no"]));
    kept("total", json!(19.99));
    assert_eq!(out["context"], json!({"library":{"name":"analytics-node","version":"6.2.0"}}));
}

#[test]
fn the_value_tests_on_their_own() {
    for card in
        ["4242424242424242", "5555 5555 5555 4444", "2223-0031-2200-3222", "6011111111111117", "3566002020360505"]
    {
        assert!(is_card_number(card), "{card} is a test card of its network");
    }
    for not in ["4242424242424241", "1234567812345670", "4242 4242-4242 4242", "42424242424242424242", "4242 "] {
        assert!(!is_card_number(not), "{not} is not a card number");
    }
    // An order number whose digits pass Luhn but whose prefix no card network issues.
    assert!(luhn(&[1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 0]));
    assert!(!is_card_number("1234567812345670"));
    assert!(is_ssn("078-05-1120") && !is_ssn("078051120") && !is_ssn("900-12-3456") && !is_ssn("123-45-0000"));
    assert!(is_ip("::1") && is_ip("10.0.0.1") && !is_ip("10.0.0") && !is_ip("1.2.3.4.5") && !is_ip("a:b"));
}

#[test]
fn custom_matchers_take_key_name_patterns_and_value_patterns() {
    let p = privacy(
        r#"
        [privacy]
        drop = ["matcher:loyalty"]
        hash = ["matcher:account"]
        [privacy.matchers.loyalty]
        key = "loyalty_?(id|number)"
        [privacy.matchers.account]
        value = "ACCT-[0-9]{6}"
        "#,
    );
    let (out, changes) = applied(
        &p,
        json!({"type":"identify","userId":"u","traits":{"Loyalty_ID":"L1","loyalty_ids_seen":"x","ref":"ACCT-123456",
            "memo":"see ACCT-123456"}}),
    );
    assert_eq!(out["traits"], json!({"loyalty_ids_seen":"x","ref":hashed("ACCT-123456"),"memo":"see ACCT-123456"}));
    assert_eq!(changes, [("loyalty".into(), PrivacyAction::Drop), ("account".into(), PrivacyAction::Hash)]);
}

#[test]
fn problems_name_the_key_and_say_what_is_wrong() {
    let found = problems(
        r#"
        [privacy]
        hash = ["matcher:nope", "userId", "properties"]
        drop = ["context.ip\\"]
        [privacy.matchers.email]
        key = "e"
        [privacy.matchers.bad]
        value = "("
        [privacy.matchers.empty]
        "#,
        None,
    );
    let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "matchers.bad.value",
            "matchers.email",
            "matchers.empty.key",
            "drop[0]",
            "hash[0]",
            "hash[1]",
            "hash[2]",
            "privacy_key"
        ]
    );
    assert!(found[4].1.contains("no matcher is named \"nope\""), "{found:?}");
    assert!(found[4].1.contains("known: email, phone, credit_card, ssn, ip_address, street_address"), "{found:?}");
    assert!(found[5].1.contains("userId and anonymousId stay"), "{found:?}");
    assert!(found[7].1.contains("hash needs a key"), "{found:?}");
    let short = problems("[privacy]\nhash = [\"traits.email\"]", Some(b"short"));
    assert_eq!(short, [("privacy_key".to_owned(), "is 5 bytes; use at least 16 (openssl rand -hex 32)".to_owned())]);
    // Dropping needs no key.
    assert!(Privacy::compile(&config("[privacy]\ndrop = [\"context.ip\"]"), None).is_ok());
}
