//! `tributary iam policy|trust` and `check` against moto with IAM enforcement on.

use serde_json::{Value, json};
use tests::iam::{ACCOUNT, admin_kinesis, caller, role};
use tests::stream::{create, read_all, unique_name};

use crate::{scratch, tributary, write_files};

/// The environment of a `tributary` run signing as `credentials`.
fn as_caller(credentials: &kinesis_sink::Credentials) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", credentials.access_key_id().to_owned()),
        ("AWS_SECRET_ACCESS_KEY", credentials.secret_access_key().to_owned()),
    ]
}

fn run(
    config: &std::path::Path,
    args: &[&str],
    env: &[(&'static str, String)],
    stdin: Option<&str>,
) -> (bool, String, String) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut all = vec!["--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    tributary(&all, &env, stdin)
}

fn destination(name: &str, role_arn: &str, stream: &str, url: &str) -> String {
    format!(
        "name = {name:?}\ntype = \"kinesis\"\n[kinesis]\nregion = \"us-east-1\"\nstream = {stream:?}\nrole_address = {role_arn:?}\nendpoint = {url:?}\n[kinesis.delivery]\nlinger_ms = 5\nmax_attempts = 2\nbackoff_base_ms = 10\nbackoff_max_ms = 50\n"
    )
}

fn source(id: &str, destinations: &[&str]) -> String {
    let names: Vec<String> = destinations.iter().map(|d| format!("{d:?}")).collect();
    format!("id = {id:?}\nname = {id:?}\nwrite_key = {{ env = \"KEY_{id}\" }}\ndestinations = [{}]\n", names.join(", "))
}

/// moto matches Kinesis policies only when the resource is "*": the printed policy is created as printed,
/// except for that one field.
fn for_moto(mut policy: Value) -> Value {
    policy["Statement"][0]["Resource"] = json!("*");
    policy
}

#[tokio::test]
async fn the_printed_documents_set_up_a_working_role() {
    let (url, _) = tests::env::iam();
    let (caller_arn, credentials) =
        caller("setup-caller", &["sts:AssumeRole", "sts:GetCallerIdentity", "iam:GetRole"]).await;
    let env = as_caller(&credentials);
    let role_name = unique_name("printed-role");
    let role_arn = format!("arn:aws:iam::{ACCOUNT}:role/{role_name}");
    let stream = unique_name("printed");
    let config = scratch("iam-printed");
    write_files(
        &config,
        &[
            ("destinations/main.toml", &destination("main", &role_arn, &stream, &url)),
            ("sources/a.toml", &source("src_a", &["main"])),
            ("sources/b.toml", &source("src_b", &["main"])),
        ],
    );

    let (ok, stdout, stderr) = run(&config, &["iam", "trust", "--destination", "main"], &env, None);
    assert!(ok, "{stderr}");
    let trust: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(trust["Statement"][0]["Principal"]["AWS"], caller_arn);
    assert_eq!(trust["Statement"][0]["Action"], "sts:AssumeRole");
    assert_eq!(trust["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"], json!(["src_a", "src_b"]));

    let (ok, stdout, stderr) = run(&config, &["iam", "policy", "--destination", "main"], &env, None);
    assert!(ok, "{stderr}");
    let policy: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(policy["Statement"][0]["Resource"], format!("arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/{stream}"));
    assert_eq!(
        policy["Statement"][0]["Action"],
        json!(["kinesis:PutRecord", "kinesis:PutRecords", "kinesis:ListShards", "kinesis:DescribeStreamSummary"])
    );

    // The emulator's IAM accepts both documents as printed; the delivering copy of the policy differs only in the
    // resource, which moto matches only as "*".
    role(&role_name, &trust, Some(&for_moto(policy.clone()))).await;
    tests::iam::put_role_policy(&role_name, "as-printed", &policy).await;
    let admin = admin_kinesis().await;
    create(&admin, &stream, 1).await;

    let (ok, stdout, stderr) = run(&config, &["check"], &env, None);
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(stdout.lines().filter(|l| l.starts_with("ok    main")).count(), 2, "{stdout}");

    let event = "{\"type\":\"track\",\"userId\":\"u1\",\"event\":\"Through The Role\",\"messageId\":\"printed-1\"}\n";
    let (ok, _, stderr) = run(&config, &["send", "--source", "src_a", "-"], &env, Some(event));
    assert!(ok, "{stderr}");
    let read = read_all(&admin, &stream).await;
    assert_eq!(read.len(), 1);
    assert_eq!(serde_json::from_slice::<Value>(&read[0].data).unwrap()["messageId"], "printed-1");

    // A source added to the config is refused until the trust policy lists it, and the printed policy does.
    write_files(&config, &[("sources/c.toml", &source("src_c", &["main"]))]);
    let (ok, _, stderr) = run(&config, &["send", "--source", "src_c", "-"], &env, Some(event));
    assert!(!ok);
    assert!(stderr.contains("ExternalId \"src_c\" was refused"), "{stderr}");
    let (ok, stdout, _) = run(&config, &["iam", "trust", "--destination", "main"], &env, None);
    assert!(ok);
    let trust: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        trust["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"],
        json!(["src_a", "src_b", "src_c"])
    );
}

#[tokio::test]
async fn check_explains_each_failure() {
    let (url, _) = tests::env::iam();
    let (caller_arn, credentials) =
        caller("check-caller", &["sts:AssumeRole", "sts:GetCallerIdentity", "iam:GetRole"]).await;
    let env = as_caller(&credentials);
    let full = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["kinesis:PutRecord", "kinesis:PutRecords", "kinesis:ListShards", "kinesis:DescribeStreamSummary"], "Resource": "*"}]});
    let put_only = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["kinesis:PutRecord", "kinesis:PutRecords"], "Resource": "*"}]});
    let trusting = |principal: &str, ids: &[&str]| json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"sts:ExternalId": ids}}}]});
    let admin_arn = format!("arn:aws:iam::{ACCOUNT}:user/tributary-admin");
    let stream = unique_name("checked");
    create(&admin_kinesis().await, &stream, 1).await;

    let untrusted = role(&unique_name("untrusted"), &trusting(&admin_arn, &["src_x"]), Some(&full)).await;
    let wrong_id = role(&unique_name("wrong-id"), &trusting(&caller_arn, &["src_other"]), Some(&full)).await;
    let no_describe = role(&unique_name("no-describe"), &trusting(&caller_arn, &["src_x"]), Some(&put_only)).await;
    let good = role(&unique_name("good"), &trusting(&caller_arn, &["src_x"]), Some(&full)).await;
    let missing = format!("arn:aws:iam::{ACCOUNT}:role/{}", unique_name("missing"));

    let config = scratch("iam-check");
    let missing_stream = unique_name("never-created");
    write_files(
        &config,
        &[
            ("destinations/1-untrusted.toml", &destination("untrusted", &untrusted, &stream, &url)),
            ("destinations/2-wrong-id.toml", &destination("wrong-id", &wrong_id, &stream, &url)),
            ("destinations/3-no-describe.toml", &destination("no-describe", &no_describe, &stream, &url)),
            ("destinations/4-no-stream.toml", &destination("no-stream", &good, &missing_stream, &url)),
            ("destinations/5-missing-role.toml", &destination("missing-role", &missing, &stream, &url)),
            ("destinations/6-good.toml", &destination("good", &good, &stream, &url)),
            (
                "sources/x.toml",
                &source("src_x", &["untrusted", "wrong-id", "no-describe", "no-stream", "missing-role", "good"]),
            ),
        ],
    );
    let (ok, stdout, stderr) = run(&config, &["check"], &env, None);
    assert!(!ok, "check passed with broken destinations:\n{stdout}");
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.contains(&format!(" {name} (src_x)")))
            .unwrap_or_else(|| panic!("no line for {name}:\n{stdout}{stderr}"))
            .to_owned()
    };
    assert!(
        line("untrusted").starts_with("FAIL") && line("untrusted").contains(&format!("does not trust {caller_arn}")),
        "{}",
        line("untrusted")
    );
    let wrong = line("wrong-id");
    assert!(
        wrong.starts_with("FAIL")
            && wrong.contains("the External ID does not match")
            && wrong.contains("with 1 External ID, and \"src_x\" is not among them")
            && !wrong.contains("src_other"),
        "{wrong}"
    );
    let describe = line("no-describe");
    assert!(describe.starts_with("FAIL") && describe.contains("lacks kinesis:DescribeStreamSummary"), "{describe}");
    let no_stream = line("no-stream");
    assert!(
        no_stream.starts_with("FAIL")
            && no_stream.contains(&format!("stream {missing_stream} does not exist in region us-east-1")),
        "{no_stream}"
    );
    let missing_role = line("missing-role");
    assert!(missing_role.starts_with("FAIL") && missing_role.contains("does not exist"), "{missing_role}");
    let good_line = line("good");
    assert!(good_line.starts_with("ok") && good_line.contains("is ACTIVE with 1 open shards"), "{good_line}");
    assert!(stderr.contains("6 checked, 5 failed"), "{stderr}");

    let (ok, stdout, _) = run(&config, &["check", "--destination", "good"], &env, None);
    assert!(ok, "{stdout}");
}

/// The External IDs of the trust policy: connected sources and audiences, or the secret_id alone. No AWS call is
/// needed when the principal is given.
#[test]
fn the_trust_policy_lists_audiences_or_only_the_secret_id() {
    let config = scratch("iam-trust-ids");
    let role = format!("arn:aws:iam::{ACCOUNT}:role/r");
    write_files(
        &config,
        &[
            ("destinations/main.toml", &destination("main", &role, "s", "http://127.0.0.1:9")),
            ("sources/web.toml", &source("src_web", &["main"])),
            (
                "audiences/vip.toml",
                "name = \"VIP\"\nkind = \"audience\"\ncomputation_id = \"aud_vip\"\nspace_id = \"spa_1\"\nnamespace = \"spa_1\"\ndestinations = [\"main\"]\nsource_id = \"src_personas\"\n[source]\npath = \"vip.csv\"\n",
            ),
        ],
    );
    let principal = format!("arn:aws:iam::{ACCOUNT}:user/tributary");
    let trust = |env: &[(&'static str, String)]| {
        let (ok, stdout, stderr) =
            run(&config, &["iam", "trust", "--destination", "main", "--principal", &principal], env, None);
        assert!(ok, "{stderr}");
        serde_json::from_str::<Value>(&stdout).unwrap()["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"]
            .clone()
    };
    assert_eq!(trust(&[]), json!(["src_personas", "src_web"]));

    let with_secret = destination("main", &role, "s", "http://127.0.0.1:9")
        .replace("[kinesis.delivery]", "secret_id = { env = \"TRIBUTARY_TEST_SECRET_ID\" }\n[kinesis.delivery]");
    write_files(&config, &[("destinations/main.toml", &with_secret)]);
    assert_eq!(trust(&[("TRIBUTARY_TEST_SECRET_ID", "shared-secret".to_owned())]), json!(["shared-secret"]));

    let (ok, _, stderr) = run(&config, &["iam", "policy", "--destination", "main"], &[], None);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) =
        run(&config, &["iam", "policy", "--destination", "main", "--account-id", "999999999999"], &[], None);
    assert!(ok, "{stderr}");
}

#[tokio::test]
async fn the_secret_id_never_appears_in_any_output_even_at_trace() {
    const SECRET: &str = "zq-ext-secret-7f3a9c";
    let (url, _) = tests::env::iam();
    let (caller_arn, credentials) =
        caller("secret-caller", &["sts:AssumeRole", "sts:GetCallerIdentity", "iam:GetRole"]).await;
    let full = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["kinesis:PutRecord", "kinesis:PutRecords", "kinesis:ListShards", "kinesis:DescribeStreamSummary"], "Resource": "*"}]});
    let trusting = |ids: &[&str]| json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": caller_arn}, "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"sts:ExternalId": ids}}}]});
    let stream = unique_name("secret");
    create(&admin_kinesis().await, &stream, 1).await;
    let good = role(&unique_name("secret-good"), &trusting(&[SECRET]), Some(&full)).await;
    // This one trusts the secret of another destination, and not ours.
    let other = role(&unique_name("secret-other"), &trusting(&["another-destinations-secret"]), Some(&full)).await;
    let with_secret = |name: &str, role: &str| {
        destination(name, role, &stream, &url)
            .replace("[kinesis.delivery]", "secret_id = { env = \"KINESIS_SECRET\" }\n[kinesis.delivery]")
    };
    let config = scratch("secret-trace");
    write_files(
        &config,
        &[
            ("destinations/good.toml", &with_secret("good", &good)),
            ("destinations/other.toml", &with_secret("other", &other)),
            ("sources/s.toml", &source("src_s", &["good"])),
        ],
    );
    let mut env = as_caller(&credentials);
    env.push(("KINESIS_SECRET", SECRET.to_owned()));
    env.push(("TRIBUTARY_LOG", "trace".to_owned()));
    let event = "{\"type\":\"track\",\"userId\":\"u\",\"event\":\"Secret Kept\",\"messageId\":\"secret-1\"}\n";
    let (ok, stdout, stderr) = run(&config, &["send", "--source", "src_s", "-"], &env, Some(event));
    assert!(ok, "{stderr}");
    assert!(stderr.len() > 10_000, "TRIBUTARY_LOG=trace printed little: {} bytes", stderr.len());
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET), "the secret_id was printed during a delivery");
    assert_eq!(read_all(&admin_kinesis().await, &stream).await.len(), 1);

    let (ok, stdout, stderr) = run(&config, &["check", "--destination", "other"], &env, None);
    assert!(!ok);
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET), "the secret_id was printed by check");
    assert!(!stdout.contains("another-destinations-secret"), "check printed the trust policy's values:\n{stdout}");
    assert!(stdout.contains("with 1 External ID, and the configured secret_id is not among them"), "{stdout}");
}
