//! `tributary validate` on broken config folders: every problem, one per line, with its file and key.

use crate::{scratch, tributary, write_files};

/// Validates a folder made of `files` and checks that it fails and that stderr holds each expected line.
#[track_caller]
fn check(name: &str, files: &[(&str, &str)], expected: &[&str]) {
    let dir = scratch(name);
    write_files(&dir, files);
    let (ok, _, stderr) = tributary(&["--config", dir.to_str().unwrap(), "validate"], &[], None);
    assert!(!ok, "validate passed a broken folder:\n{stderr}");
    let stderr = stderr.replace(&format!("{}/", dir.display()), "");
    for line in expected {
        assert!(stderr.lines().any(|l| l == *line), "missing line {line:?} in:\n{stderr}");
    }
    let errors = stderr.lines().filter(|l| l.starts_with("error: ") && !l.contains("has errors")).count();
    assert_eq!(errors, expected.iter().filter(|l| l.starts_with("error: ")).count(), "unexpected errors in:\n{stderr}");
}

const KINESIS_OK: &str = "name = \"k\"\ntype = \"kinesis\"\n[kinesis]\nregion = \"us-east-1\"\nstream = \"s\"\n";

#[test]
fn every_problem_is_reported_with_file_and_key() {
    check(
        "broken-many",
        &[
            (
                "destinations/bad.toml",
                "name = \"bad\"\ntype = \"kinesis\"\ncolour = \"blue\"\n[kinesis]\nregion = \"Oregon\"\nstream = \"has space\"\nrole_address = \"tributary-role\"\nsecret_id = \"inline\"\n",
            ),
            ("destinations/k.toml", KINESIS_OK),
            (
                "sources/web.toml",
                "id = \"src_web\"\nname = \"Web\"\nwrite_key = { env = \"W\" }\ndestinations = [\"k\", \"missing\"]\n",
            ),
            ("sources/dup.toml", "id = \"src_web\"\nname = \"Dup\"\nwrite_key = { env = \"W\" }\n"),
        ],
        &[
            "error: destinations/bad.toml: colour: is not a known key (expected one of: name, type, enabled, kinesis, firehose, file, max_retry_duration, max_backlog_bytes, filters, privacy)",
            "error: sources/web.toml: id: \"src_web\" is already the ID of sources/dup.toml",
            "error: sources/web.toml: write_key: is the same as the write key of sources/dup.toml",
            "error: sources/web.toml: destinations[1]: no destination is named \"missing\"",
        ],
    );
}

#[test]
fn kinesis_settings_are_checked() {
    check(
        "broken-kinesis",
        &[(
            "destinations/bad.toml",
            "name = \"bad\"\ntype = \"kinesis\"\n[kinesis]\nregion = \"Oregon\"\nstream = \"has space\"\nrole_address = \"tributary-role\"\nsecret_id = \"inline\"\n[kinesis.delivery]\nmax_batch_records = 501\n",
        )],
        &[
            "error: destinations/bad.toml: kinesis.region: \"Oregon\" is not an AWS region (for example us-west-2)",
            "error: destinations/bad.toml: kinesis.stream: \"has space\" is not a stream name (1 to 128 letters, digits, '_', '.' or '-')",
            "error: destinations/bad.toml: kinesis.role_address: \"tributary-role\" is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)",
            "error: destinations/bad.toml: kinesis.delivery.max_batch_records: 501 is not between 1 and 500",
            "warning: destinations/bad.toml: kinesis.secret_id: is written inline; it belongs in the environment: secret_id = { env = \"NAME\" }",
        ],
    );
}

#[test]
fn missing_settings_and_tables() {
    check(
        "broken-missing",
        &[
            ("destinations/nokinesis.toml", "name = \"a\"\ntype = \"kinesis\"\n"),
            ("destinations/nofile.toml", "name = \"b\"\ntype = \"file\"\n"),
            ("destinations/noregion.toml", "name = \"c\"\ntype = \"kinesis\"\n[kinesis]\nstream = \"s\"\n"),
            ("destinations/badtype.toml", "name = \"d\"\ntype = \"pubsub\"\n"),
            ("destinations/dupname.toml", "name = \"a\"\ntype = \"stdout\"\n"),
        ],
        &[
            "error: destinations/nokinesis.toml: kinesis: a kinesis destination needs a [kinesis] table",
            "error: destinations/nofile.toml: file: a file destination needs a [file] table with a path",
            "error: destinations/noregion.toml: kinesis.region: is required",
            "error: destinations/badtype.toml: type: \"pubsub\" is not one of: kinesis, firehose, stdout, file",
            "error: destinations/nokinesis.toml: name: \"a\" is already the name of destinations/dupname.toml",
        ],
    );
}

#[test]
fn a_missing_folder_is_named() {
    let (ok, _, stderr) = tributary(&["--config", "/nonexistent/tributary", "validate"], &[], None);
    assert!(!ok);
    assert!(stderr.contains("error: /nonexistent/tributary: is not a folder"), "{stderr}");
}
