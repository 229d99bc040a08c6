//! Endpoints and credentials from the environment that `cargo xtask test` sets.

use std::time::Duration;

use anyhow::{Context as _, bail};
use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// `name=url` pairs of the Kinesis emulators.
pub const KINESIS: &str = "TRIBUTARY_TEST_KINESIS";
/// The URL of an S3 emulator (moto's, or LocalStack's).
pub const S3: &str = "TRIBUTARY_TEST_S3";
/// The URL of the moto that enforces IAM.
pub const IAM: &str = "TRIBUTARY_TEST_IAM";
/// `key_id:secret` of an administrator on that moto.
pub const IAM_ADMIN: &str = "TRIBUTARY_TEST_IAM_ADMIN";

/// A Python interpreter with segment-analytics-python installed.
pub const PYTHON: &str = "TRIBUTARY_TEST_PYTHON";
/// A `node_modules` folder with @segment/analytics-node installed.
pub const NODE_MODULES: &str = "TRIBUTARY_TEST_NODE_MODULES";

/// A `node_modules` folder with @segment/analytics-next, esbuild and playwright-core.
pub const BROWSER_MODULES: &str = "TRIBUTARY_TEST_BROWSER_MODULES";
/// The Chromium the browser suite drives.
pub const CHROMIUM: &str = "TRIBUTARY_TEST_CHROMIUM";

/// The `node_modules` folder for the browser suite, and Chromium.
pub fn browser() -> (String, String) {
    (required(BROWSER_MODULES), required(CHROMIUM))
}

/// The Python with segment-analytics-python (and aws_kinesis_agg), and the node_modules folder with
/// @segment/analytics-node.
pub fn clients() -> (String, String) {
    (required(PYTHON), required(NODE_MODULES))
}

/// The OCI archive of the image `cargo xtask image` built.
pub const IMAGE: &str = "TRIBUTARY_TEST_IMAGE";

/// The OCI archive of the image under test.
pub fn image() -> String {
    required(IMAGE)
}

/// `kubernetes-validate`, installed beside the client libraries' Python.
pub fn kubernetes_validate() -> std::path::PathBuf {
    std::path::Path::new(&required(PYTHON)).with_file_name("kubernetes-validate")
}

/// The region every suite uses.
pub const REGION: &str = "us-east-1";

fn required(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!(
            "{name} is not set: this suite needs the AWS emulators. Run it with `cargo xtask test`, which starts \
             them and sets {name}."
        ),
    }
}

/// Every Kinesis emulator, as (name, URL). Panics with instructions when none is set.
pub fn kinesis_endpoints() -> Vec<(String, String)> {
    let endpoints: Vec<(String, String)> = required(KINESIS)
        .split(',')
        .filter_map(|pair| pair.split_once('=').map(|(n, u)| (n.to_owned(), u.to_owned())))
        .collect();
    assert!(!endpoints.is_empty(), "{KINESIS} holds no name=url pair");
    endpoints
}

/// The S3 emulator's URL. Panics with instructions when it is not set.
pub fn s3() -> String {
    required(S3)
}

/// An S3 client for the S3 emulator, path-style (the emulator has no bucket DNS names).
pub async fn s3_client() -> aws_sdk_s3::Client {
    let shared = sdk_config(&s3(), dummy_credentials()).await;
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&shared).force_path_style(true).build())
}

/// The IAM-enforcing moto's URL and its administrator's credentials.
pub fn iam() -> (String, Credentials) {
    let url = required(IAM);
    let admin = required(IAM_ADMIN);
    let (key, secret) = admin.split_once(':').expect("TRIBUTARY_TEST_IAM_ADMIN is key_id:secret");
    (url, Credentials::new(key, secret, None, None, "tributary-tests"))
}

/// Credentials the emulators accept when they do not enforce IAM.
pub fn dummy_credentials() -> Credentials {
    Credentials::new("test", "test", None, None, "tributary-tests")
}

/// An SDK config for an emulator.
pub async fn sdk_config(url: &str, credentials: Credentials) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(url)
        .credentials_provider(credentials)
        .load()
        .await
}

/// A raw HTTP request to a loopback emulator's own API; returns the status code.
pub async fn http(method: &str, url: &str, body: &str) -> anyhow::Result<u16> {
    let rest = url.strip_prefix("http://").context("only http:// URLs")?;
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".to_owned()));
    let mut stream = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(host)).await??;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await??;
    let text = String::from_utf8_lossy(&response);
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("no HTTP status")?;
    Ok(status)
}

/// Whether a GET of `url` answers 200.
pub async fn http_ok(url: &str) -> bool {
    matches!(http("GET", url, "").await, Ok(200))
}

/// Creates an administrator in a fresh moto, then turns IAM enforcement on. Returns `key_id:secret`.
pub async fn enforce_iam(url: &str) -> anyhow::Result<String> {
    let iam = aws_sdk_iam::Client::new(&sdk_config(url, dummy_credentials()).await);
    iam.create_user().user_name("tributary-admin").send().await?;
    iam.put_user_policy()
        .user_name("tributary-admin")
        .policy_name("everything")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#)
        .send()
        .await?;
    let key = iam.create_access_key().user_name("tributary-admin").send().await?;
    let key = key.access_key().context("moto returned no access key")?;
    let status = http("POST", &format!("{url}/moto-api/reset-auth"), "0").await?;
    if status != 200 {
        bail!("POST /moto-api/reset-auth answered {status}");
    }
    Ok(format!("{}:{}", key.access_key_id(), key.secret_access_key()))
}
