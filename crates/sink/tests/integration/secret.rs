//! Secret references: resolution, and that values never show in Debug output.

use sink::{Secret, SecretRef};

#[derive(serde::Deserialize, Debug)]
struct Holder {
    secret: SecretRef,
}

fn parse(toml_text: &str) -> SecretRef {
    let holder: Holder = serde_json::from_value(toml_to_json(toml_text)).unwrap();
    holder.secret
}

/// The sink crate does not depend on a TOML parser; the three shapes are the same in JSON.
fn toml_to_json(text: &str) -> serde_json::Value {
    match text {
        r#"secret = "inline-value""# => serde_json::json!({"secret": "inline-value"}),
        r#"secret = { env = "TRIBUTARY_TEST_SECRET" }"# => {
            serde_json::json!({"secret": {"env": "TRIBUTARY_TEST_SECRET"}})
        }
        r#"secret = { file = "secret.txt" }"# => serde_json::json!({"secret": {"file": "secret.txt"}}),
        other => panic!("no JSON form for {other}"),
    }
}

#[test]
fn three_ways_to_write_a_secret() {
    let dir = std::env::temp_dir().join(format!("tributary-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("secret.txt"), "from-file\n").unwrap();

    let inline = parse(r#"secret = "inline-value""#);
    assert!(inline.is_inline());
    assert_eq!(inline.resolve(&dir).unwrap().expose(), "inline-value");

    let file = parse(r#"secret = { file = "secret.txt" }"#);
    assert_eq!(file.resolve(&dir).unwrap().expose(), "from-file");

    let env = parse(r#"secret = { env = "TRIBUTARY_TEST_SECRET" }"#);
    // The variable is deliberately unset in this process.
    assert_eq!(env.resolve(&dir).unwrap_err().to_string(), "environment variable TRIBUTARY_TEST_SECRET is not set");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn secrets_never_print() {
    let secret = Secret::new("hunter2");
    assert_eq!(format!("{secret:?} {secret}"), "*** ***");
    let inline = SecretRef::Inline("hunter2".into());
    assert!(!format!("{inline:?}").contains("hunter2"));
}
