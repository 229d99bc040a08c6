//! Reading exports.

use personas::definition::{Kind, SnapshotConfig};
use personas::diff::Member;
use personas::snapshot::{ReadOptions, Snapshot};

fn read(
    path: &std::path::Path,
    config: &SnapshotConfig,
    kind: Kind,
) -> Result<Snapshot, personas::snapshot::SnapshotError> {
    personas::snapshot::read(path, config, kind, &ReadOptions::new(&std::env::temp_dir(), "test"))
}

fn members(snapshot: &Snapshot) -> Vec<Member> {
    snapshot.with_members(|members| members.collect()).unwrap()
}

fn config(value_column: Option<&str>) -> SnapshotConfig {
    SnapshotConfig {
        path: "x".into(),
        user_id_column: "user_id".into(),
        anonymous_id_column: "anonymous_id".into(),
        value_column: value_column.map(Into::into),
        group_id_column: None,
        region: None,
        endpoint: None,
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
    let members = members(&snapshot);
    let keys: Vec<&str> = members.iter().map(|m| &*m.key).collect();
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
    let members = members(&snapshot);
    let pairs: Vec<(&str, &str)> = members.iter().map(|m| (&*m.key, &*m.value)).collect();
    assert_eq!(pairs, [("u:u1", "12.5"), ("u:u2", "\"gold\"")]);
    assert_eq!(snapshot.errors[0].line, 5);
}

#[test]
fn ndjson_exports() {
    let path =
        file("members.ndjson", "{\"user_id\":\"u1\"}\n{\"anonymous_id\":\"a1\"}\nnot json\n[1]\n{\"user_id\":42}\n");
    let snapshot = read(&path, &config(None), Kind::Audience).unwrap();
    let members = members(&snapshot);
    let keys: Vec<&str> = members.iter().map(|m| &*m.key).collect();
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

/// A trait export of `rows` rows over `users` users (so some repeat), in a scrambled order.
fn scrambled(rows: u64, users: u64) -> String {
    let mut text = String::from("user_id,anonymous_id,ltv\n");
    for i in 0..rows {
        let user = (i * 7_919) % users;
        text.push_str(&format!("user_{user},,{i}\n"));
    }
    text
}

fn read_with_budget(path: &std::path::Path, budget: usize) -> Snapshot {
    let spill = std::env::temp_dir().join(format!("tributary-spill-{}", std::process::id()));
    let options = ReadOptions { memory_budget: budget, spill_dir: spill, name: "t".into() };
    personas::snapshot::read(path, &config(Some("ltv")), Kind::Trait, &options).unwrap()
}

#[test]
fn an_export_larger_than_the_budget_sorts_on_disk_to_the_same_members() {
    let path = file("scrambled.csv", &scrambled(20_000, 15_000));
    let in_memory = read_with_budget(&path, usize::MAX);
    assert_eq!(in_memory.strategy(), "in memory");
    let on_disk = read_with_budget(&path, 64 * 1024);
    assert!(on_disk.strategy().ends_with("sorted runs on disk"), "{}", on_disk.strategy());
    assert_eq!(members(&on_disk), members(&in_memory));
    assert_eq!((on_disk.count, on_disk.duplicates), (in_memory.count, in_memory.duplicates));
    assert_eq!(in_memory.count, 15_000);
    // The last row of a user wins, across runs too: user_0 is on rows 0 and 15,000.
    let user_0 = members(&on_disk).into_iter().find(|m| &*m.key == "u:user_0").unwrap();
    assert_eq!(&*user_0.value, "15000");
    // Two passes read the same members (the sync counts, then sends).
    assert_eq!(members(&on_disk), members(&on_disk));
}

#[test]
fn runs_left_by_a_killed_sync_are_removed_and_a_running_ones_kept() {
    let parent = std::env::temp_dir().join(format!("tributary-abandoned-{}", std::process::id()));
    let killed = parent.join("sort-aud-999999999-0");
    let running = parent.join(format!("sort-aud-{}-77", std::process::id()));
    for dir in [&killed, &running] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("run-00000"), "x").unwrap();
    }
    personas::snapshot::remove_abandoned(&parent, "sort-");
    assert!(!killed.exists(), "no process 999999999 runs: its runs are abandoned");
    assert!(running.exists(), "this process runs: its runs stay");
}

#[test]
fn an_export_in_key_order_is_streamed_without_a_sort() {
    let mut text = String::from("user_id,anonymous_id,ltv\n");
    for i in 0..10_000 {
        text.push_str(&format!("u{i:06},,{i}\n"));
        if i % 1000 == 0 {
            text.push_str(&format!("u{i:06},,{}\n", i + 1));
        }
    }
    let path = file("sorted.csv", &text);
    let snapshot = read_with_budget(&path, 64 * 1024);
    assert_eq!(snapshot.strategy(), "sorted export, streamed");
    assert_eq!(snapshot.count, 10_000);
    assert_eq!(snapshot.duplicates, 10);
    let members = members(&snapshot);
    assert_eq!(members, self::members(&read_with_budget(&path, usize::MAX)));
    assert_eq!(&*members[0].value, "1", "the last row of a repeated identity wins");

    // In order for longer than the budget, then not: read again and sorted on disk.
    text.push_str("a000001,,5\n");
    let path = file("sorted-then-not.csv", &text);
    let snapshot = read_with_budget(&path, 64 * 1024);
    assert!(snapshot.strategy().ends_with("sorted runs on disk"), "{}", snapshot.strategy());
    assert_eq!(self::members(&snapshot)[0].key.as_ref(), "u:a000001");
}

#[test]
fn gzip_parts_folders_and_globs_read_as_one_export() {
    use std::io::Write as _;
    let dir = std::env::temp_dir().join(format!("tributary-parts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("part-0.csv"), "user_id,ltv\nu1,1\nu2,2\n").unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"{\"user_id\":\"u3\",\"ltv\":3}\n{\"user_id\":\"u1\",\"ltv\":10}\n").unwrap();
    std::fs::write(dir.join("part-1.ndjson.gz"), gz.finish().unwrap()).unwrap();
    std::fs::write(dir.join("_SUCCESS"), "").unwrap();
    let read_trait = |path: &std::path::Path| read(path, &config(Some("ltv")), Kind::Trait).unwrap();
    let pairs = |snapshot: &Snapshot| -> Vec<(String, String)> {
        members(snapshot).into_iter().map(|m| (m.key.into(), m.value.into())).collect()
    };
    let expected = [("u:u1", "10"), ("u:u2", "2"), ("u:u3", "3")].map(|(k, v)| (k.to_owned(), v.to_owned()));
    assert_eq!(pairs(&read_trait(&dir)), expected, "a folder, in part order, markers skipped");
    assert_eq!(pairs(&read_trait(&dir.join("part-*"))), expected, "a glob");
    assert_eq!(pairs(&read_trait(&dir.join("part-1.ndjson.gz")))[0], ("u:u1".to_owned(), "10".to_owned()));
    let none = read(&dir.join("nothing-*.csv"), &config(Some("ltv")), Kind::Trait).unwrap_err().to_string();
    assert!(none.contains("matches no export file"), "{none}");
    std::fs::write(dir.join("notes.txt"), "x").unwrap();
    let wrong = read(&dir, &config(Some("ltv")), Kind::Trait).unwrap_err().to_string();
    assert!(wrong.contains("notes.txt") && wrong.contains("is neither .csv, .ndjson"), "{wrong}");
}

#[test]
fn parquet_exports_in_row_groups_with_decimals() {
    use tests::export::{ValueColumn, parquet};
    let dir = std::env::temp_dir().join(format!("tributary-parquet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let rows: Vec<(String, i64)> = (0..1_000).map(|i| (format!("u{:04}", (i * 7) % 1_000), i)).collect();
    parquet(&dir.join("plain.parquet"), &rows, ValueColumn::Int64, 300).unwrap();
    parquet(&dir.join("decimal.parquet"), &rows, ValueColumn::Decimal, 1_000).unwrap();
    let plain = read(&dir.join("plain.parquet"), &config(Some("ltv")), Kind::Trait).unwrap();
    let decimal = read(&dir.join("decimal.parquet"), &config(Some("ltv")), Kind::Trait).unwrap();
    let (plain, decimal) = (members(&plain), members(&decimal));
    assert_eq!(plain.len(), 1_000);
    assert_eq!((&*plain[1].key, &*plain[1].value), ("u:u0001", "143"));
    // DECIMAL(18,2) 143.00 is the number 143.0, as the CSV cell "143.00" is.
    assert_eq!((&*decimal[1].key, &*decimal[1].value), ("u:u0001", "143.0"));
    let error = read(&dir.join("plain.parquet"), &config(Some("revenue")), Kind::Trait).unwrap_err().to_string();
    assert!(error.contains("no column \"revenue\" (source.value_column") && error.contains("user_id, ltv"), "{error}");
}
