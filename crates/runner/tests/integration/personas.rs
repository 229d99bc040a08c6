//! `tributary personas sync`, run as a scheduled job runs it.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::{scratch, tributary, write_files};

/// A config folder with a file destination `out` and an audience (or trait) reading `members.csv`.
struct Job {
    dir: PathBuf,
    out: PathBuf,
    state: PathBuf,
}

impl Job {
    fn new(name: &str, kind: &str) -> Job {
        let dir = scratch(&format!("personas-{name}"));
        let out = dir.join("out.ndjson");
        let value = if kind == "trait" { "value_column = \"ltv\"\n" } else { "" };
        write_files(
            &dir,
            &[
                (
                    "destinations/out.toml",
                    &format!("name = \"out\"\ntype = \"file\"\n[file]\npath = {:?}\n", out.display().to_string()),
                ),
                (
                    "audiences/a.toml",
                    &format!(
                        "name = \"Order Completed Last 30 Days\"\nkind = {kind:?}\ncomputation_id = \"aud_123\"\nspace_id = \"spa_1\"\nnamespace = \"spa_1\"\ndestinations = [\"out\"]\n[source]\npath = \"members.csv\"\n{value}"
                    ),
                ),
            ],
        );
        let state = dir.join("state");
        Job { dir, out, state }
    }

    fn members(&self, csv: &str) {
        std::fs::write(self.dir.join("members.csv"), csv).unwrap();
    }

    fn sync(&self, extra: &[&str]) -> (bool, String, String) {
        let mut args = vec![
            "--config",
            self.dir.to_str().unwrap(),
            "personas",
            "sync",
            "--state-dir",
            self.state.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        tributary(&args, &[], None)
    }

    /// Every identify call delivered so far, in order.
    fn sent(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// (identity, trait value) of identify calls.
fn changes(calls: &[Value]) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = calls
        .iter()
        .map(|c| {
            let who = c["userId"]
                .as_str()
                .map(|u| format!("u:{u}"))
                .unwrap_or_else(|| format!("a:{}", c["anonymousId"].as_str().unwrap()));
            let value = c["traits"].as_object().unwrap().values().next().unwrap().clone();
            (who, value)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn pairs(list: &[(&str, Value)]) -> Vec<(String, Value)> {
    list.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

#[test]
fn first_sync_sends_everyone_then_only_changes() {
    let job = Job::new("first", "audience");
    job.members("user_id,anonymous_id\nu1,\nu2,anon_2\n,anon_9\n");
    let (ok, _, stderr) = job.sync(&[]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("3 added, 0 removed, 0 changed, 0 unchanged, 0 failed"), "{stderr}");
    let first = job.sent();
    assert_eq!(changes(&first), pairs(&[("a:anon_9", true.into()), ("u:u1", true.into()), ("u:u2", true.into())]));
    let call = first.iter().find(|c| c["anonymousId"] == "anon_9").unwrap();
    assert!(call.get("userId").is_none(), "an anonymous-only member must not get a userId: {call}");
    let u1 = first.iter().find(|c| c["userId"] == "u1").unwrap();
    assert_eq!(u1["type"], "identify");
    assert_eq!(u1["traits"], serde_json::json!({"order_completed_last_30_days": true}));
    assert_eq!(
        u1["context"]["personas"],
        serde_json::json!({"computation_class": "audience", "computation_id": "aud_123", "computation_key": "order_completed_last_30_days", "namespace": "spa_1", "space_id": "spa_1"})
    );

    job.members("user_id,anonymous_id\nu2,anon_2\n,anon_9\nu3,\n");
    let (ok, _, stderr) = job.sync(&[]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("1 added, 1 removed, 0 changed, 2 unchanged, 0 failed"), "{stderr}");
    assert_eq!(changes(&job.sent()[3..]), pairs(&[("u:u1", false.into()), ("u:u3", true.into())]));

    let (ok, _, stderr) = job.sync(&[]);
    assert!(ok && stderr.contains("0 added, 0 removed, 0 changed, 3 unchanged"), "{stderr}");
    assert_eq!(job.sent().len(), 5);
}

#[test]
fn re_adding_after_removal_sends_a_new_message_id() {
    let job = Job::new("readd", "audience");
    for members in ["user_id\nu1\nu2\n", "user_id\nu2\n", "user_id\nu1\nu2\n"] {
        job.members(members);
        let (ok, _, stderr) = job.sync(&["--allow-mass-removal"]);
        assert!(ok, "{stderr}");
    }
    let sent = job.sent();
    let u1: Vec<&Value> = sent.iter().filter(|c| c["userId"] == "u1").collect();
    let values: Vec<&Value> = u1.iter().map(|c| &c["traits"]["order_completed_last_30_days"]).collect();
    assert_eq!(values, [&Value::Bool(true), &Value::Bool(false), &Value::Bool(true)]);
    let ids: HashSet<&str> = u1.iter().map(|c| c["messageId"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "each change needs its own messageId");
}

#[test]
fn duplicate_rows_count_once_and_malformed_rows_are_reported() {
    let job = Job::new("rows", "audience");
    job.members("user_id,anonymous_id\nu1,\nu1,\n,\nu2,\n");
    let (ok, _, stderr) = job.sync(&[]);
    assert!(!ok, "a malformed row must fail the run");
    assert!(
        stderr.contains(&format!(
            "{}:4: the row has neither a user ID nor an anonymous ID",
            job.dir.join("members.csv").display()
        )),
        "{stderr}"
    );
    assert_eq!(changes(&job.sent()), pairs(&[("u:u1", true.into()), ("u:u2", true.into())]));
}

#[test]
fn traits_send_values_only_when_they_change() {
    let job = Job::new("traits", "trait");
    job.members("user_id,ltv\nu1,10\nu2,gold\n");
    assert!(job.sync(&[]).0);
    job.members("user_id,ltv\nu1,10\nu2,silver\n");
    let (ok, _, stderr) = job.sync(&[]);
    assert!(ok && stderr.contains("0 added, 0 removed, 1 changed, 1 unchanged"), "{stderr}");
    let sent = job.sent();
    assert_eq!(changes(&sent[2..]), pairs(&[("u:u2", "silver".into())]));
    assert_eq!(sent[2]["context"]["personas"]["computation_class"], "trait");
    assert_eq!(changes(&sent[..2]), pairs(&[("u:u1", 10.into()), ("u:u2", "gold".into())]));
}

#[test]
fn a_dry_run_prints_and_changes_nothing() {
    let job = Job::new("dry", "audience");
    job.members("user_id\nu1\nu2\n");
    let (ok, stdout, stderr) = job.sync(&["--dry-run"]);
    assert!(ok, "{stderr}");
    let printed: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(changes(&printed), pairs(&[("u:u1", true.into()), ("u:u2", true.into())]));
    assert!(stderr.contains("would send 2"), "{stderr}");
    assert!(job.sent().is_empty(), "a dry run delivered");
    // Nothing was recorded: the real run sends the same calls, with the same messageIds.
    assert!(job.sync(&[]).0);
    let ids =
        |calls: &[Value]| calls.iter().map(|c| c["messageId"].as_str().unwrap().to_owned()).collect::<HashSet<_>>();
    assert_eq!(ids(&job.sent()), ids(&printed));
}

#[test]
fn a_full_resync_sends_every_member_again() {
    let job = Job::new("resync", "audience");
    job.members("user_id\nu1\nu2\n");
    assert!(job.sync(&[]).0);
    let (ok, _, stderr) = job.sync(&["--full-resync"]);
    assert!(ok, "{stderr}");
    let sent = job.sent();
    assert_eq!(sent.len(), 4);
    assert_eq!(changes(&sent[2..]), pairs(&[("u:u1", true.into()), ("u:u2", true.into())]));
    assert_ne!(sent[0]["messageId"], sent[2]["messageId"]);
}

#[test]
fn the_mass_removal_guard_stops_a_broken_export() {
    let job = Job::new("guard", "audience");
    job.members("user_id\nu1\nu2\nu3\nu4\n");
    assert!(job.sync(&[]).0);
    job.members("user_id\nu1\n");
    let (ok, _, stderr) = job.sync(&[]);
    assert!(!ok);
    assert!(stderr.contains("this run would remove 3 of 4 members (75%), more than the 50% allowed"), "{stderr}");
    assert_eq!(job.sent().len(), 4, "nothing may be sent when the guard stops the run");
    // An empty export counts too.
    job.members("user_id\n");
    let (ok, _, stderr) = job.sync(&[]);
    assert!(!ok && stderr.contains("remove 4 of 4 members (100%)"), "{stderr}");
    job.members("user_id\nu1\n");
    let (ok, _, stderr) = job.sync(&["--allow-mass-removal"]);
    assert!(ok, "{stderr}");
    assert_eq!(
        changes(&job.sent()[4..]),
        pairs(&[("u:u2", false.into()), ("u:u3", false.into()), ("u:u4", false.into())])
    );
}

#[test]
fn failed_deliveries_are_retried_by_the_next_run_with_the_same_ids() {
    let job = Job::new("retry", "audience");
    job.members("user_id\nu1\nu2\n");
    let (_, printed, _) = job.sync(&["--dry-run"]);
    // First the destination is down: a Kinesis stream on a port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let down = format!(
        "name = \"out\"\ntype = \"kinesis\"\n[kinesis]\nregion = \"us-east-1\"\nstream = \"s\"\nendpoint = \"http://127.0.0.1:{dead}\"\n[kinesis.delivery]\nmax_attempts = 1\n"
    );
    let file = std::fs::read_to_string(job.dir.join("destinations/out.toml")).unwrap();
    write_files(&job.dir, &[("destinations/out.toml", &down)]);
    let (ok, _, stderr) = tributary(
        &["--config", job.dir.to_str().unwrap(), "personas", "sync", "--state-dir", job.state.to_str().unwrap()],
        &[("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test")],
        None,
    );
    assert!(!ok, "a failed delivery must fail the run");
    assert!(stderr.contains("2 failed") && stderr.contains("will be sent again by the next run"), "{stderr}");
    // Back up: the next run sends both, with the IDs the failed run used.
    write_files(&job.dir, &[("destinations/out.toml", &file)]);
    let (ok, _, stderr) = job.sync(&[]);
    assert!(ok && stderr.contains("2 added"), "{stderr}");
    let ids =
        |calls: Vec<Value>| calls.iter().map(|c| c["messageId"].as_str().unwrap().to_owned()).collect::<HashSet<_>>();
    assert_eq!(ids(job.sent()), ids(printed.lines().map(|l| serde_json::from_str(l).unwrap()).collect()));
}

#[test]
fn a_run_killed_midway_loses_nothing() {
    let job = Job::new("killed", "audience");
    let count = 200_000;
    let mut csv = String::from("user_id\n");
    for i in 0..count {
        csv.push_str(&format!("user_{i:07}\n"));
    }
    job.members(&csv);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(["--config", job.dir.to_str().unwrap(), "personas", "sync", "--state-dir", job.state.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let give_up = std::time::Instant::now() + Duration::from_secs(60);
    while job.sent().len() < 5_000 {
        assert!(std::time::Instant::now() < give_up, "the sync never got going");
        assert!(child.try_wait().unwrap().is_none(), "the sync finished before it could be killed; raise the count");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = job.sent().len();
    assert!(before < count, "killed too late to test anything");
    let (ok, _, stderr) = job.sync(&[]);
    assert!(ok, "{stderr}");
    let mut seen: HashMap<String, usize> = HashMap::new();
    for call in job.sent() {
        *seen.entry(call["userId"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    assert_eq!(seen.len(), count, "members missing after the rerun");
    let (ok, _, stderr) = job.sync(&[]);
    assert!(ok && stderr.contains(&format!("0 added, 0 removed, 0 changed, {count} unchanged")), "{stderr}");
}

/// The identify calls land in a Kinesis stream, keyed as every message is.
#[tokio::test]
async fn audiences_land_in_the_stream() {
    use tests::env::dummy_credentials;
    use tests::stream::{client, create, read_all, unique_name};
    let (_, url) = tests::env::kinesis_endpoints().remove(0);
    let stream = unique_name("personas");
    let admin = client(&url, dummy_credentials()).await;
    create(&admin, &stream, 2).await;
    let job = Job::new("kinesis", "audience");
    write_files(
        &job.dir,
        &[(
            "destinations/out.toml",
            &format!(
                "name = \"out\"\ntype = \"kinesis\"\n[kinesis]\nregion = \"us-east-1\"\nstream = {stream:?}\nendpoint = {url:?}\n[kinesis.delivery]\nmax_in_flight = 1\n"
            ),
        )],
    );
    job.members("user_id,anonymous_id\nuser_1,\n,anon_7\n");
    let (ok, _, stderr) = tributary(
        &["--config", job.dir.to_str().unwrap(), "personas", "sync", "--state-dir", job.state.to_str().unwrap()],
        &[("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test")],
        None,
    );
    assert!(ok, "{stderr}");
    let mut records: Vec<(String, Value)> = read_all(&admin, &stream)
        .await
        .into_iter()
        .map(|r| (r.partition_key, serde_json::from_slice(&r.data).unwrap()))
        .collect();
    records.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].0, "anon_7");
    assert_eq!(records[1].0, "user_1");
    for (_, data) in &records {
        assert_eq!(data["traits"]["order_completed_last_30_days"], true);
        assert_eq!(data["context"]["personas"]["computation_key"], "order_completed_last_30_days");
    }
}
