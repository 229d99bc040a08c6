//! Reading exports.

use personas::definition::{Kind, SnapshotConfig};
use personas::snapshot::read;

fn config(value_column: Option<&str>) -> SnapshotConfig {
    SnapshotConfig {
        path: "x".into(),
        user_id_column: "user_id".into(),
        anonymous_id_column: "anonymous_id".into(),
        value_column: value_column.map(Into::into),
    }
}

fn file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tributary-snapshot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn csv_rows_duplicates_and_malformed_lines() {
    let path = file("members.csv", "user_id,anonymous_id\nu2,\n,anon_1\nu1,a9\nu2,\n,\n\"u3\nbroken,x\n");
    let snapshot = read(&path, &config(None), Kind::Audience).unwrap();
    let keys: Vec<&str> = snapshot.members.iter().map(|m| &*m.key).collect();
    assert_eq!(keys, ["a:anon_1", "u:u1", "u:u2"]);
    assert_eq!(snapshot.duplicates, 1);
    let errors: Vec<String> =
        snapshot.errors.iter().map(|e| e.to_string().replace(&format!("{}:", path.display()), "")).collect();
    assert_eq!(errors[0], "6: the row has neither a user ID nor an anonymous ID");
    assert_eq!(errors.len(), 2, "{errors:?}");
}

#[test]
fn trait_values_and_last_row_wins() {
    let path = file("values.csv", "user_id,anonymous_id,ltv\nu1,,10\nu2,,gold\nu1,,12.5\nu3,,\n");
    let snapshot = read(&path, &config(Some("ltv")), Kind::Trait).unwrap();
    let pairs: Vec<(&str, &str)> = snapshot.members.iter().map(|m| (&*m.key, &*m.value)).collect();
    assert_eq!(pairs, [("u:u1", "12.5"), ("u:u2", "\"gold\"")]);
    assert_eq!(snapshot.errors[0].line, 5);
}

#[test]
fn ndjson_exports() {
    let path =
        file("members.ndjson", "{\"user_id\":\"u1\"}\n{\"anonymous_id\":\"a1\"}\nnot json\n[1]\n{\"user_id\":42}\n");
    let snapshot = read(&path, &config(None), Kind::Audience).unwrap();
    let keys: Vec<&str> = snapshot.members.iter().map(|m| &*m.key).collect();
    assert_eq!(keys, ["a:a1", "u:42", "u:u1"]);
    let lines: Vec<u64> = snapshot.errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [3, 4]);
}

#[test]
fn a_missing_column_names_the_key() {
    let path = file("nocolumn.csv", "id,email\n1,x\n");
    let error = read(&path, &config(None), Kind::Audience).unwrap_err().to_string();
    assert!(
        error.contains(
            "the header has no column \"user_id\" (source.user_id_column in the audience file); it has: id, email"
        ),
        "{error}"
    );
}
