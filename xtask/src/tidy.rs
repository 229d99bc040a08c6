//! Repository checks that belong in CI, as ordinary tests (after rust-analyzer's `tidy.rs`).

use std::path::{Path, PathBuf};

use super::root;

/// Every member package's manifest.
fn manifests() -> Vec<PathBuf> {
    let root = root();
    let mut manifests: Vec<PathBuf> =
        std::fs::read_dir(root.join("crates")).unwrap().map(|e| e.unwrap().path().join("Cargo.toml")).collect();
    manifests.extend(["xtask", "benches", "tests"].iter().map(|p| root.join(p).join("Cargo.toml")));
    manifests
}

/// Every Rust source file of the members.
fn sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    for manifest in manifests() {
        walk(manifest.parent().unwrap(), &mut out);
    }
    out
}

#[test]
fn every_package_takes_its_lints_and_versions_from_the_workspace() {
    for manifest in manifests() {
        let text = std::fs::read_to_string(&manifest).unwrap();
        assert!(text.contains("[lints]\nworkspace = true"), "{} does not use the workspace lints", manifest.display());
        assert!(
            text.contains("version.workspace = true"),
            "{} does not take the workspace version",
            manifest.display()
        );
        for line in text.lines().filter(|l| l.contains("= \"") && !l.starts_with('#')) {
            let key = line.split('=').next().unwrap().trim();
            assert!(
                matches!(key, "name" | "description" | "path"),
                "{}: {line:?} pins a version; add it to [workspace.dependencies]",
                manifest.display()
            );
        }
    }
}

#[test]
fn no_stubs_are_left_in_the_code() {
    let markers = [concat!("TO", "DO"), concat!("FIX", "ME"), concat!("unimpl", "emented!"), concat!("to", "do!(")];
    for file in sources() {
        let text = std::fs::read_to_string(&file).unwrap();
        for marker in markers {
            assert!(!text.contains(marker), "{} contains {marker}", file.display());
        }
    }
}

#[test]
fn the_architecture_page_names_every_crate() {
    let page = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    for manifest in manifests() {
        let name = manifest.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            page.contains(&format!("`{name}`")) || page.contains(&format!("`crates/{name}`")),
            "ARCHITECTURE.md does not describe {name}"
        );
    }
}

#[test]
fn the_readme_gives_the_two_set_up_commands() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(readme.contains("cargo xtask demo") && readme.contains("cargo xtask test"));
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(ci.lines().any(|l| l.trim() == "cargo xtask test"), ".ci/run must run the README's test command");
}

/// The names of the packages a manifest's `[dependencies]` table lists (not its dev-dependencies).
fn dependencies(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut names = Vec::new();
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == "[dependencies]";
        } else if inside && let Some((key, _)) = line.split_once('=') {
            names.push(key.trim().trim_end_matches(".workspace").to_owned());
        }
    }
    names
}

fn package(path: &str) -> PathBuf {
    root().join(path).join("Cargo.toml")
}

/// The crate allowed to depend on each AWS crate besides the `tests` package, which sets up emulators with them.
const AWS_OWNERS: [(&str, &str); 6] = [
    ("aws-config", "crates/aws-common"),
    ("aws-sdk-sts", "crates/aws-common"),
    ("aws-sdk-iam", "crates/aws-common"),
    ("aws-sdk-kinesis", "crates/kinesis-sink"),
    ("aws-sdk-firehose", "crates/firehose-sink"),
    ("aws-sdk-s3", "crates/s3-export"),
];

#[test]
fn aws_common_alone_configures_the_sdk_and_each_sink_only_its_own_service() {
    // The reader of manifests must see what is there, or this test could not fail.
    assert!(dependencies(&package("crates/kinesis-sink")).iter().any(|n| n == "aws-sdk-kinesis"));
    assert!(dependencies(&package("crates/aws-common")).iter().any(|n| n == "aws-config"));
    for manifest in manifests() {
        for name in dependencies(&manifest) {
            if !(name.starts_with("aws-sdk-") || name == "aws-config") || manifest == package("tests") {
                continue;
            }
            let owner = AWS_OWNERS.iter().find(|(crate_name, _)| *crate_name == name);
            assert!(
                owner.is_some_and(|(_, owner)| manifest == package(owner)),
                "{} depends on {name}; {}",
                manifest.display(),
                match owner {
                    Some((_, owner)) => format!("only {owner} may (see ARCHITECTURE.md)"),
                    None => "no product crate talks to that service".to_owned(),
                }
            );
        }
    }
    for name in dependencies(&package("crates/aws-common")) {
        assert!(
            !name.ends_with("-sink") && name != "s3-export",
            "aws-common depends on {name}: the plumbing the sinks share depends on no sink (the `sink` crate's \
             trait types are all it may use)"
        );
    }
    // A second sink plugs in beside the first, sharing aws-common and sink, never reaching into kinesis-sink.
    assert!(dependencies(&package("crates/firehose-sink")).iter().any(|n| n == "aws-common"));
    for name in dependencies(&package("crates/firehose-sink")) {
        assert!(
            name != "kinesis-sink",
            "firehose-sink depends on kinesis-sink: what they share belongs in aws-common or sink"
        );
    }
}

#[test]
fn the_runner_names_no_aws_sdk_type() {
    let runner: Vec<PathBuf> =
        sources().into_iter().filter(|f| f.starts_with(root().join("crates/runner/src"))).collect();
    assert!(runner.iter().any(|f| f.ends_with("main.rs")), "the reader of sources must see the runner");
    for file in runner {
        let text = std::fs::read_to_string(&file).unwrap();
        for sdk in ["aws_sdk_", "aws_config", "aws_smithy", "aws_credential_types"] {
            assert!(
                !text.contains(sdk),
                "{} names {sdk}: the runner sees the sinks' own types, never the SDK's",
                file.display()
            );
        }
    }
}

#[test]
fn the_pure_cores_do_no_io_and_read_no_clock() {
    let io = ["tokio", "rusqlite", "axum", "hyper", "reqwest", "uuid", "rand"];
    for name in dependencies(&package("crates/segment-model")) {
        assert!(!io.contains(&name.as_str()), "segment-model depends on {name}: it does no IO and makes no IDs");
    }
    for name in dependencies(&package("crates/governance")) {
        assert!(!io.contains(&name.as_str()), "governance depends on {name}: its controls are pure");
    }
    let pure_crates = [root().join("crates/segment-model/src"), root().join("crates/governance/src")];
    let mut pure: Vec<PathBuf> =
        sources().into_iter().filter(|f| pure_crates.iter().any(|c| f.starts_with(c))).collect();
    pure.extend(["diff.rs", "key.rs"].iter().map(|f| root().join("crates/personas/src").join(f)));
    let clock_and_io =
        ["SystemTime::now", "now_utc", "Instant::now", "new_v4", "std::fs", "tokio::", "rusqlite", "std::net"];
    for file in pure {
        let text = std::fs::read_to_string(&file).unwrap();
        for forbidden in clock_and_io {
            assert!(
                !text.contains(forbidden),
                "{} uses {forbidden}: the clock and new IDs are arguments",
                file.display()
            );
        }
    }
}

#[test]
fn the_message_model_knows_no_destination() {
    let sources: Vec<PathBuf> =
        sources().into_iter().filter(|f| f.starts_with(root().join("crates/segment-model/src"))).collect();
    assert!(sources.iter().any(|f| f.ends_with("user_key.rs")), "the reader of sources must see segment-model");
    for file in sources {
        let text = std::fs::read_to_string(&file).unwrap().to_lowercase();
        for destination in ["kinesis", "use_message_id", "partition_key"] {
            assert!(!text.contains(destination), "{} mentions {destination}: that is the sink's rule", file.display());
        }
    }
}

#[test]
fn the_spool_knows_nothing_of_segment_http_or_aws() {
    for name in dependencies(&package("crates/spool")) {
        let foreign =
            name.starts_with("aws-") || ["segment-model", "sink", "axum", "hyper", "reqwest"].contains(&name.as_str());
        assert!(!foreign, "spool depends on {name}");
    }
}

#[test]
fn the_runner_depends_one_way() {
    let src = root().join("crates/runner/src");
    let files: Vec<PathBuf> = sources().into_iter().filter(|f| f.starts_with(&src)).collect();
    assert!(files.iter().any(|f| f.ends_with("serve/ingest/mod.rs")), "the reader of sources must see the runner");
    // What `serve` and the commands share lives below both: `delivery`, `sync`, `route`, `config`, `metrics`, `format`.
    let rules: [(&str, &[&str]); 4] = [
        ("serve", &["crate::commands", "super::super::commands"]),
        ("commands", &["crate::serve", "runner::serve"]),
        ("delivery", &["crate::serve", "crate::commands"]),
        ("sync", &["crate::serve", "crate::commands"]),
    ];
    for (module, forbidden) in rules {
        for file in files.iter().filter(|f| f.starts_with(src.join(module))) {
            let text = std::fs::read_to_string(file).unwrap();
            for path in forbidden {
                let used = text.lines().any(|l| !l.trim_start().starts_with("//") && l.contains(path));
                assert!(!used, "{} uses {path}: `{module}` must not reach into it", file.display());
            }
        }
    }
}

#[test]
fn the_spool_names_no_command_line_flag() {
    let src = root().join("crates/spool/src");
    let files: Vec<PathBuf> = sources().into_iter().filter(|f| f.starts_with(&src)).collect();
    assert!(files.iter().any(|f| f.ends_with("error.rs")), "the reader of sources must see the spool's errors");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (at, line) in text.lines().enumerate() {
            let flag =
                line.match_indices("--").any(|(i, _)| line[i + 2..].starts_with(|c: char| c.is_ascii_lowercase()));
            assert!(
                !flag,
                "{}:{}: the spool names a flag; the command that opened it words the hint",
                file.display(),
                at + 1
            );
        }
    }
}

/// The module a library source file is, as a path from its crate's root (`a::b` for `src/a/b.rs` or
/// `src/a/b/mod.rs`; empty for `src/lib.rs`); `None` for binaries.
fn module_of(src: &Path, file: &Path) -> Option<Vec<String>> {
    let relative = file.strip_prefix(src).ok()?;
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop()?;
    if parts.first().is_some_and(|p| p == "bin") || last == "main.rs" {
        return None;
    }
    match last.as_str() {
        "lib.rs" | "mod.rs" => {}
        other => parts.push(other.trim_end_matches(".rs").to_owned()),
    }
    Some(parts)
}

/// The modules of its own crate that `text` (the source of `module`) names through `crate::`, `super::`,
/// `self::` or child-module paths, outside comments and its tests, resolved to the longest known file module.
fn named_modules(text: &str, module: &[String], known: &[Vec<String>]) -> Vec<Vec<String>> {
    // The tests' module is the file's last item, whatever its `cfg`.
    let code = text.split("\nmod tests {").next().unwrap_or(text);
    let mut named = Vec::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        // Every path's first segment: a lowercase word followed by `::`, not itself inside a path.
        let starts = line.char_indices().filter(|&(at, c)| {
            (c.is_ascii_lowercase() || c == '_')
                && !line[..at].ends_with(|p: char| p.is_alphanumeric() || p == '_' || p == ':')
                && line[at..]
                    .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .next()
                    .is_some_and(|word| line[at + word.len()..].starts_with("::"))
        });
        for (at, _) in starts {
            let path: String =
                line[at..].chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
            let mut segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
            let mut base: Vec<String> = match segments.first().copied() {
                Some("crate") => Vec::new(),
                Some("self") => module.to_vec(),
                // A child named without `self::` (`ingest::router` in `serve`).
                Some(child) if known.contains(&[module, &[child.to_owned()]].concat()) => {
                    segments.insert(0, "self");
                    module.to_vec()
                }
                Some("super") => {
                    let mut base = module.to_vec();
                    while segments.get(1) == Some(&"super") {
                        segments.remove(0);
                        base.pop();
                    }
                    base.pop();
                    base
                }
                _ => continue,
            };
            for segment in &segments[1..] {
                base.push((*segment).to_owned());
            }
            while !base.is_empty() && !known.contains(&base) {
                base.pop();
            }
            if !base.is_empty() && base != module {
                named.push(base);
            }
        }
    }
    named
}

#[test]
fn no_import_circle_between_files_of_one_crate() {
    let mut checked = 0;
    let (mut circles, mut reported) = (Vec::new(), std::collections::BTreeSet::new());
    for manifest in manifests() {
        let src = manifest.parent().unwrap().join("src");
        let files: Vec<PathBuf> = sources().into_iter().filter(|f| f.starts_with(&src)).collect();
        let modules: Vec<(Vec<String>, &PathBuf)> =
            files.iter().filter_map(|f| module_of(&src, f).map(|m| (m, f))).collect();
        let known: Vec<Vec<String>> = modules.iter().map(|(m, _)| m.clone()).collect();
        let mut edges: std::collections::BTreeMap<Vec<String>, std::collections::BTreeSet<Vec<String>>> =
            Default::default();
        for (module, file) in &modules {
            let text = std::fs::read_to_string(file).unwrap();
            edges.entry(module.clone()).or_default().extend(named_modules(&text, module, &known));
        }
        checked += modules.len();
        // A circle is a module that reaches itself; walk from each, remembering the way.
        for start in edges.keys() {
            let mut stack = vec![(start.clone(), vec![start.clone()])];
            let mut seen = std::collections::BTreeSet::new();
            while let Some((at, way)) = stack.pop() {
                for next in edges.get(&at).into_iter().flatten() {
                    if next == start {
                        let way: Vec<String> = way.iter().chain([start]).map(|m| m.join("::")).collect();
                        let mut members = way.clone();
                        members.sort();
                        members.dedup();
                        if reported.insert(members) {
                            circles.push(format!("{}: {}", src.display(), way.join(" -> ")));
                        }
                        continue;
                    }
                    if seen.insert(next.clone()) {
                        let mut longer = way.clone();
                        longer.push(next.clone());
                        stack.push((next.clone(), longer));
                    }
                }
            }
        }
    }
    assert!(checked > 50, "the circle check saw only {checked} modules");
    assert!(circles.is_empty(), "files that import each other in a circle:\n{}", circles.join("\n"));
}

/// The functions of a source file outside its tests, as (name, first line, length in lines, the comment above it).
/// A function ends at the first line that is its indentation and a closing brace, as rustfmt writes it.
fn functions(text: &str) -> Vec<(String, usize, usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.starts_with("#[cfg(test)]") {
            break;
        }
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let signature = ["fn ", "pub fn ", "pub(crate) fn ", "async fn ", "pub async fn ", "pub(crate) async fn "]
            .iter()
            .find_map(|prefix| trimmed.strip_prefix(prefix));
        if let Some(rest) = signature {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            let close = format!("{indent}}}");
            let end = (i + 1..lines.len()).find(|&j| lines[j] == close).unwrap_or(lines.len() - 1);
            let comment: Vec<&str> = lines[..i]
                .iter()
                .rev()
                .take_while(|l| l.trim_start().starts_with("//") || l.trim_start().starts_with("#["))
                .copied()
                .collect();
            found.push((name, i + 1, end - i + 1, comment.join("\n")));
            i = end;
        }
        i += 1;
    }
    found
}

#[test]
fn no_function_is_over_80_lines_without_saying_why() {
    let sample = "/// Long on purpose: a table.\nfn table() {\n    one();\n}\n";
    assert_eq!(functions(sample), [("table".to_owned(), 2, 3, "/// Long on purpose: a table.".to_owned())]);
    // Tests (integration suites and the tests package) read best as one scenario each, however long.
    let root = root();
    let outside_tests = sources().into_iter().filter(|f| !f.strip_prefix(&root).unwrap().iter().any(|c| c == "tests"));
    for file in outside_tests {
        let text = std::fs::read_to_string(&file).unwrap();
        for (name, line, length, comment) in functions(&text) {
            assert!(
                length <= 80 || comment.to_lowercase().contains("long"),
                "{}:{line}: fn {name} is {length} lines; split it, or say in its comment why it is long",
                file.display()
            );
        }
    }
}
