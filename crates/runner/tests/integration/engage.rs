//! `tributary personas` as Segment Engage sends to an event destination: track, identify and group calls read
//! back from the Kinesis emulator, exports larger than memory, pacing, and the sync log.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{scratch, tributary, write_files};

const AWS: [(&str, &str); 2] = [("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test")];

fn sync(dir: &Path, state: &Path, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec!["--config", dir.to_str().unwrap(), "personas", "sync", "--state-dir", state.to_str().unwrap()];
    args.extend_from_slice(extra);
    tributary(&args, &AWS, None)
}

fn lines(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

fn file_destination(name: &str, path: &Path) -> String {
    format!("name = {name:?}\ntype = \"file\"\n[file]\npath = {:?}\n", path.display().to_string())
}

fn audience(name: &str, kind: &str, id: &str, destinations: &str, extra: &str, source: &str) -> String {
    format!(
        "name = {name:?}\nkind = {kind:?}\ncomputation_id = {id:?}\nspace_id = \"spa_1\"\nnamespace = \"spa_1\"\n\
         destinations = {destinations}\n{extra}\n[source]\n{source}\n"
    )
}

/// Track mode, identify mode and both, for an audience, a trait and an account trait, read back from the stream.
#[tokio::test]
async fn engage_calls_land_in_the_stream() {
    use tests::env::dummy_credentials;
    use tests::stream::{client, create, read_all, unique_name};
    let (_, url) = tests::env::kinesis_endpoints().remove(0);
    let stream = unique_name("engage");
    let admin = client(&url, dummy_credentials()).await;
    create(&admin, &stream, 1).await;
    let dir = scratch("engage-kinesis");
    let state = dir.join("state");
    let kinesis = format!(
        "name = \"stream\"\ntype = \"kinesis\"\n[kinesis]\nregion = \"us-east-1\"\nstream = {stream:?}\nendpoint = {url:?}\n"
    );
    write_files(
        &dir,
        &[
            ("destinations/stream.toml", &kinesis),
            (
                "audiences/shoppers.toml",
                &audience(
                    "First Time Shopper",
                    "audience",
                    "aud_1",
                    "[\"stream\"]",
                    "send = [\"identify\", \"track\"]",
                    "path = \"shoppers.csv\"",
                ),
            ),
            (
                "audiences/revenue.toml",
                &audience(
                    "Total Revenue 180 Days",
                    "trait",
                    "trt_1",
                    "[\"stream\"]",
                    "send = [\"track\"]",
                    "path = \"revenue.csv\"\nvalue_column = \"revenue\"",
                ),
            ),
            (
                "audiences/named.toml",
                &audience(
                    "Plan Tier",
                    "trait",
                    "trt_2",
                    "[\"stream\"]",
                    "send = [\"track\"]\ntrack_event = \"Plan Tier Computed\"",
                    "path = \"revenue.csv\"\nvalue_column = \"revenue\"",
                ),
            ),
            (
                "audiences/account.toml",
                &audience(
                    "Account Seats",
                    "account_trait",
                    "acc_1",
                    "[\"stream\"]",
                    "",
                    "path = \"accounts.csv\"\nvalue_column = \"seats\"\ngroup_id_column = \"account_id\"",
                ),
            ),
            ("shoppers.csv", "user_id\nu1\nu2\n"),
            ("revenue.csv", "user_id,revenue\nu1,450.00\n"),
            ("accounts.csv", "user_id,account_id,seats\nu1,acme,12\nu2,acme,12\n"),
        ],
    );
    let (ok, _, stderr) = sync(&dir, &state, &[]);
    assert!(ok, "{stderr}");
    let records: Vec<Value> =
        read_all(&admin, &stream).await.iter().map(|r| serde_json::from_slice(&r.data).unwrap()).collect();
    let of = |id: &str| -> Vec<&Value> {
        records.iter().filter(|r| r["context"]["personas"]["computation_id"] == id).collect()
    };
    // The audience: an identify and an Audience Entered track per member, each with its own messageId.
    let shoppers = of("aud_1");
    assert_eq!(shoppers.len(), 4, "{shoppers:?}");
    let u1: Vec<&&Value> = shoppers.iter().filter(|r| r["userId"] == "u1").collect();
    let identify = u1.iter().find(|r| r["type"] == "identify").expect("an identify call");
    let track = u1.iter().find(|r| r["type"] == "track").expect("a track call");
    assert_eq!(identify["traits"], json!({"first_time_shopper": true}));
    assert_eq!(track["event"], "Audience Entered");
    assert_eq!(track["properties"], json!({"audience_key": "first_time_shopper", "first_time_shopper": true}));
    assert_eq!(track["context"]["personas"]["computation_class"], "audience");
    assert_ne!(identify["messageId"], track["messageId"]);
    // The trait, as Trait Computed or the event it names, and only as track.
    let revenue = of("trt_1");
    assert_eq!(revenue.len(), 1);
    assert_eq!(revenue[0]["event"], "Trait Computed");
    assert_eq!(
        revenue[0]["properties"],
        json!({"trait_key": "total_revenue_180_days", "total_revenue_180_days": 450.0})
    );
    assert_eq!(of("trt_2")[0]["event"], "Plan Tier Computed");
    // The account trait, as group calls for each of the account's users.
    let seats = of("acc_1");
    assert_eq!(seats.len(), 2);
    for call in &seats {
        assert_eq!(call["type"], "group");
        assert_eq!(call["groupId"], "acme");
        assert_eq!(call["traits"], json!({"account_seats": 12}));
    }

    // Without max_rate, the one-shard stream is sent 800 records/s: 2,000 identify calls take at least 2.4 s.
    let many: String = std::iter::once("user_id\n".to_owned()).chain((0..2_000).map(|i| format!("m{i}\n"))).collect();
    write_files(
        &dir,
        &[
            (
                "audiences/many.toml",
                &audience("Many", "audience", "aud_many", "[\"stream\"]", "", "path = \"many.csv\""),
            ),
            ("many.csv", &many),
        ],
    );
    let started = Instant::now();
    let (ok, _, stderr) = sync(&dir, &state, &["--audience", "Many"]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("sending stream at most 800 records/s (80% of 1 open shards"), "{stderr}");
    assert!(started.elapsed() >= Duration::from_millis(2_400), "2,000 calls at 800/s took {:?}", started.elapsed());

    // u1 leaves (Audience Exited), then comes back: new IDs for the new entry.
    write_files(&dir, &[("shoppers.csv", "user_id\nu2\n")]);
    let (ok, _, stderr) = sync(&dir, &state, &["--audience", "First Time Shopper"]);
    assert!(ok, "{stderr}");
    write_files(&dir, &[("shoppers.csv", "user_id\nu1\nu2\n")]);
    let (ok, _, stderr) = sync(&dir, &state, &["--audience", "First Time Shopper"]);
    assert!(ok, "{stderr}");
    let records: Vec<Value> =
        read_all(&admin, &stream).await.iter().map(|r| serde_json::from_slice(&r.data).unwrap()).collect();
    let u1: Vec<&Value> = records
        .iter()
        .filter(|r| r["userId"] == "u1" && r["context"]["personas"]["computation_id"] == "aud_1")
        .collect();
    let events: Vec<&str> = u1.iter().filter_map(|r| r["event"].as_str()).collect();
    assert_eq!(events, ["Audience Entered", "Audience Exited", "Audience Entered"]);
    let ids: HashSet<&str> = u1.iter().map(|r| r["messageId"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 6, "every call of every change has its own messageId");
}

/// A config folder with a file destination `out` and a trait reading `members.csv`.
fn file_job(name: &str, extra: &str) -> (PathBuf, PathBuf) {
    let dir = scratch(name);
    let out = dir.join("out.ndjson");
    write_files(
        &dir,
        &[
            ("destinations/out.toml", &file_destination("out", &out)),
            (
                "audiences/ltv.toml",
                &audience(
                    "Lifetime Value",
                    "trait",
                    "trt_ltv",
                    "[\"out\"]",
                    extra,
                    "path = \"members.csv\"\nvalue_column = \"ltv\"",
                ),
            ),
        ],
    );
    (dir, out)
}

/// (userId, value) of every call delivered, sorted.
fn delivered(out: &Path) -> Vec<(String, Value)> {
    let mut pairs: Vec<(String, Value)> = lines(&std::fs::read_to_string(out).unwrap_or_default())
        .into_iter()
        .map(|c| (c["userId"].as_str().unwrap().to_owned(), c["traits"]["lifetime_value"].clone()))
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs
}

/// Runs a sync; returns its log and the peak memory it reports (its own `VmHWM`, read as it ends).
fn sync_with_peak(dir: &Path, extra: &[&str]) -> (String, u64) {
    let mut args = vec!["--allow-mass-removal"];
    args.extend_from_slice(extra);
    let (ok, _, stderr) = sync(dir, &dir.join("state"), &args);
    assert!(ok, "{stderr}");
    let mib: f64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak memory: "))
        .and_then(|l| l.strip_suffix(" MiB"))
        .unwrap_or_else(|| panic!("no peak memory line in\n{stderr}"))
        .parse()
        .unwrap();
    (stderr, (mib * f64::from(1 << 20)) as u64)
}

fn scrambled(rows: u64, users: u64) -> String {
    let mut csv = String::from("user_id,ltv\n");
    for i in 0..rows {
        // Not in key order, and some users twice.
        let user = (i * 7_919) % users;
        csv.push_str(&format!("user_{user:07},{i}\n"));
    }
    csv
}

/// With a small --memory-budget, an export many times its size syncs as it does in memory, and the sync's peak
/// memory does not grow with the export: four times the members cost less than the budget and a little slack more.
#[test]
fn an_export_larger_than_the_memory_budget_syncs_as_in_memory() {
    let (small, _) = file_job("engage-budget-small", "");
    write_files(&small, &[("members.csv", &scrambled(50_000, 45_000))]);
    let (_, small_peak) = sync_with_peak(&small, &["--memory-budget", "4MiB"]);

    let csv = scrambled(200_000, 180_000);
    let (external, external_out) = file_job("engage-budget-external", "");
    let (memory, memory_out) = file_job("engage-budget-memory", "");
    write_files(&external, &[("members.csv", &csv)]);
    write_files(&memory, &[("members.csv", &csv)]);
    let (log, external_peak) = sync_with_peak(&external, &["--memory-budget", "4MiB"]);
    assert!(log.contains("sorted runs on disk"), "{log}");
    let (log, memory_peak) = sync_with_peak(&memory, &["--memory-budget", "1GiB"]);
    assert!(log.contains("in memory"), "{log}");
    assert_eq!(delivered(&external_out), delivered(&memory_out));
    assert_eq!(delivered(&external_out).len(), 180_000);
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    eprintln!(
        "peak memory: 45,000 members {:.1} MiB; 180,000 members {:.1} MiB with a 4 MiB budget, {:.1} MiB in memory",
        mib(small_peak),
        mib(external_peak),
        mib(memory_peak)
    );
    // 135,000 more members held would be about 13 MiB more.
    assert!(
        external_peak < small_peak + ((4 + 4) << 20),
        "the peak grew with the export: {:.1} MiB against {:.1} MiB",
        mib(external_peak),
        mib(small_peak)
    );

    assert!(
        memory_peak > external_peak + (8 << 20),
        "holding 180,000 members should cost more than the budget: {:.1} MiB against {:.1} MiB",
        mib(memory_peak),
        mib(external_peak)
    );

    // After 1% churn, the external sort's diff still matches the in-memory one.
    let churned: String = csv.replace("user_0000007,", "user_9999997,");
    write_files(&external, &[("members.csv", &churned)]);
    write_files(&memory, &[("members.csv", &churned)]);
    let (a, _) = sync_with_peak(&memory, &["--memory-budget", "1GiB"]);
    let (b, _) = sync_with_peak(&external, &["--memory-budget", "4MiB"]);
    let summary = |s: &str| s.lines().find(|l| l.contains(" added, ")).unwrap().split(';').next().unwrap().to_owned();
    assert_eq!(summary(&a), summary(&b));
    assert!(summary(&a).contains("1 added, 1 removed, 0 changed, 179999 unchanged"), "{a}");
}

/// max_rate: 20,000 members at 2,000/s take about 10 s, and no second of the calls' times holds more than 2,000.
#[test]
fn max_rate_paces_a_sync() {
    let (dir, out) = file_job("engage-rate", "max_rate = 2000");
    let mut csv = String::from("user_id,ltv\n");
    for i in 0..20_000 {
        csv.push_str(&format!("user_{i},{i}\n"));
    }
    write_files(&dir, &[("members.csv", &csv)]);
    let started = Instant::now();
    let (ok, _, stderr) = sync(&dir, &dir.join("state"), &[]);
    let took = started.elapsed();
    assert!(ok, "{stderr}");
    let calls = lines(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(calls.len(), 20_000);
    let mut per_second: BTreeMap<String, usize> = BTreeMap::new();
    for call in &calls {
        let time = call["receivedAt"].as_str().unwrap();
        *per_second.entry(time[..19].to_owned()).or_default() += 1;
    }
    eprintln!("took {took:?}; per second: {:?}", per_second.values().collect::<Vec<_>>());
    assert!(per_second.values().all(|n| *n <= 2_000), "a second took more than the rate: {per_second:?}");
    assert!((9.0..14.0).contains(&took.as_secs_f64()), "20,000 at 2,000/s took {took:?}");
    // --max-rate on the command wins over the file.
    let (dir, _) = file_job("engage-rate-flag", "max_rate = 10");
    write_files(&dir, &[("members.csv", "user_id,ltv\nu1,1\nu2,2\nu3,3\n")]);
    let started = Instant::now();
    let (ok, _, stderr) = sync(&dir, &dir.join("state"), &["--max-rate", "1000"]);
    assert!(ok && started.elapsed() < Duration::from_secs(2), "{stderr}");
}

/// The export's files: (relative name, contents).
type Files = Vec<(String, Vec<u8>)>;

fn csv_of(rows: &[(String, i64)]) -> Vec<u8> {
    std::iter::once("user_id,ltv\n".to_owned())
        .chain(rows.iter().map(|(u, v)| format!("{u},{v}\n")))
        .collect::<String>()
        .into_bytes()
}

/// One audience exported four ways: one CSV, gzip NDJSON parts, Parquet parts (Snappy, several row groups, one
/// with the value as DECIMAL(18,2)) and a glob of CSV parts.
fn exports(rows: &[(String, i64)]) -> Vec<(&'static str, Files)> {
    use std::io::Write as _;
    let mut gzip = Files::new();
    for (part, chunk) in rows.chunks(200).enumerate() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        for (u, v) in chunk {
            writeln!(gz, "{}", json!({"user_id": u, "ltv": v})).unwrap();
        }
        gzip.push((format!("part-{part:04}.ndjson.gz"), gz.finish().unwrap()));
    }
    gzip.push(("_SUCCESS".to_owned(), Vec::new()));
    let mut parquet = Files::new();
    let scratch_file = std::env::temp_dir().join(format!("tributary-engage-{}.parquet", std::process::id()));
    for (part, chunk) in rows.chunks(180).enumerate() {
        let value = if part == 1 { tests::export::ValueColumn::Decimal } else { tests::export::ValueColumn::Int64 };
        tests::export::parquet(&scratch_file, chunk, value, 64).unwrap();
        parquet.push((format!("{part:06}_0.parquet"), std::fs::read(&scratch_file).unwrap()));
    }
    let glob =
        rows.chunks(150).enumerate().map(|(part, chunk)| (format!("data_0_{part}.csv"), csv_of(chunk))).collect();
    vec![
        ("members.csv", vec![("members.csv".to_owned(), csv_of(rows))]),
        ("gzip/", gzip),
        ("parquet/", parquet),
        ("glob/data_0_*.csv", glob),
    ]
}

/// (userId, value) of every call delivered, values compared as numbers (a DECIMAL part gives 7.0 for 7).
fn delivered_numbers(out: &Path) -> Vec<(String, f64)> {
    delivered(out)
        .into_iter()
        .map(|(u, v)| {
            let number = v.as_f64().unwrap_or_else(|| panic!("{u}: {v} is not a number"));
            (u, number)
        })
        .collect()
}

/// The same audience exported as one CSV, gzip NDJSON parts, Parquet parts and a glob of CSV parts, in a local
/// folder and on (the emulator's) S3, syncs to the same calls.
#[tokio::test]
async fn an_export_in_parts_and_formats_local_or_on_s3_syncs_alike() {
    let rows: Vec<(String, i64)> = (0..500).map(|i| (format!("user_{:03}", (i * 37) % 500), i)).collect();
    let s3 = tests::env::s3_client().await;
    let bucket = format!("exports-{}", std::process::id());
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let mut results = Vec::new();
    for (path, files) in exports(&rows) {
        let folder = path.split_once('/').map_or("", |(f, _)| f);
        for remote in [false, true] {
            let (dir, out) = file_job(&format!("engage-formats-{}-{remote}", folder.replace('/', "")), "");
            let source = if remote {
                for (name, bytes) in &files {
                    let key = if folder.is_empty() { name.clone() } else { format!("{folder}/{name}") };
                    s3.put_object().bucket(&bucket).key(&key).body(bytes.clone().into()).send().await.unwrap();
                }
                format!("path = \"s3://{bucket}/{path}\"\nendpoint = {:?}\nregion = \"us-east-1\"", tests::env::s3())
            } else {
                for (name, bytes) in &files {
                    let file = if folder.is_empty() { dir.join(name) } else { dir.join(folder).join(name) };
                    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                    std::fs::write(file, bytes).unwrap();
                }
                format!("path = {path:?}")
            };
            let definition = audience(
                "Lifetime Value",
                "trait",
                "trt_ltv",
                "[\"out\"]",
                "",
                &format!("{source}\nvalue_column = \"ltv\""),
            );
            write_files(&dir, &[("audiences/ltv.toml", &definition)]);
            let (ok, _, stderr) = sync(&dir, &dir.join("state"), &[]);
            assert!(ok, "{path} (S3: {remote}): {stderr}");
            assert_eq!(stderr.contains("fetched"), remote, "{stderr}");
            assert!(
                !dir.join("state").read_dir().unwrap().any(|e| e
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("fetch-")),
                "the fetched copy is removed"
            );
            results.push((format!("{path} (S3: {remote})"), delivered_numbers(&out)));
        }
    }
    let (first, expected) = &results[0];
    assert_eq!(expected.len(), 500);
    for (name, calls) in &results[1..] {
        assert_eq!(calls, expected, "{name} differs from {first}");
    }
}

/// The sync log after a run with one failing destination shows the failed calls, and the next run's entries show
/// them retried with the same messageIds; `personas runs` lists both runs.
#[test]
fn the_sync_log_shows_failures_and_their_retries() {
    let dir = scratch("engage-log");
    let state = dir.join("state");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let down = format!(
        "name = \"archive\"\ntype = \"kinesis\"\n[kinesis]\nregion = \"us-east-1\"\nstream = \"s\"\nendpoint = \"http://127.0.0.1:{dead}\"\n[kinesis.delivery]\nmax_attempts = 1\n"
    );
    write_files(
        &dir,
        &[
            ("destinations/out.toml", &file_destination("out", &dir.join("out.ndjson"))),
            ("destinations/archive.toml", &down),
            (
                "audiences/a.toml",
                &audience(
                    "Churn Risk",
                    "audience",
                    "aud_churn",
                    "[\"out\", \"archive\"]",
                    "max_rate = 100000\n[per_destination.out]\nsend = [\"identify\", \"track\"]",
                    "path = \"members.csv\"",
                ),
            ),
            ("members.csv", "user_id,anonymous_id\nu1,\n,anon_2\n"),
        ],
    );
    let (ok, _, stderr) = sync(&dir, &state, &[]);
    assert!(!ok && stderr.contains("2 failed"), "{stderr}");
    let log = |extra: &[&str]| -> Vec<Value> {
        let mut args =
            vec!["--config", dir.to_str().unwrap(), "personas", "log", "--state-dir", state.to_str().unwrap()];
        args.extend_from_slice(extra);
        let (ok, stdout, stderr) = tributary(&args, &[], None);
        assert!(ok, "{stderr}");
        lines(&stdout)
    };
    let first = log(&[]);
    // Two changes: identify and track to out, identify to archive.
    assert_eq!(first.len(), 6, "{first:?}");
    let run_1 = first[0]["run_id"].as_str().unwrap().to_owned();
    for entry in &first {
        assert_eq!(entry["audience"], "Churn Risk");
        assert_eq!(entry["change"], "added");
        assert_eq!(entry["value"], true);
        let failed = entry["destination"] == "archive";
        assert_eq!(entry["outcome"], if failed { "failed" } else { "delivered" }, "{entry}");
        assert_eq!(entry.get("error").is_some(), failed, "{entry}");
    }
    assert_eq!(log(&["--user", "anon_2"]).len(), 3);
    assert!(log(&["--user", "anon_2"]).iter().all(|e| e["anonymousId"] == "anon_2"));

    // The archive comes back (as a file): the next run sends both changes again, with the same messageIds.
    write_files(&dir, &[("destinations/archive.toml", &file_destination("archive", &dir.join("archive.ndjson")))]);
    let (ok, _, stderr) = sync(&dir, &state, &[]);
    assert!(ok && stderr.contains("2 added"), "{stderr}");
    let all = log(&[]);
    let second: Vec<&Value> = all.iter().filter(|e| e["run_id"] != run_1.as_str()).collect();
    assert_eq!(second.len(), 6);
    assert!(second.iter().all(|e| e["outcome"] == "delivered"));
    let ids = |entries: &[&Value]| -> HashMap<(String, String, String), String> {
        entries
            .iter()
            .map(|e| {
                let who = e.get("userId").or(e.get("anonymousId")).unwrap().as_str().unwrap().to_owned();
                let key = (who, e["destination"].as_str().unwrap().to_owned(), e["call"].as_str().unwrap().to_owned());
                (key, e["messageId"].as_str().unwrap().to_owned())
            })
            .collect()
    };
    assert_eq!(ids(&first.iter().collect::<Vec<_>>()), ids(&second), "retries reuse the failed run's messageIds");
    let run_2 = second[0]["run_id"].as_str().unwrap();
    assert_eq!(log(&["--run", run_2, "--limit", "2"]).len(), 2);

    let (ok, stdout, stderr) = tributary(
        &["--config", dir.to_str().unwrap(), "personas", "runs", "--state-dir", state.to_str().unwrap()],
        &[],
        None,
    );
    assert!(ok, "{stderr}");
    let runs = lines(&stdout);
    assert_eq!(runs.len(), 2);
    assert_eq!(
        (runs[0]["run_id"].as_str(), runs[0]["failed"].as_i64(), runs[0]["added"].as_i64()),
        (Some(run_1.as_str()), Some(2), Some(2))
    );
    assert_eq!((runs[1]["sent"].as_i64(), runs[1]["failed"].as_i64()), (Some(2), Some(0)));
    assert!(runs[1]["seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(runs[1]["audience"], "Churn Risk");
}
