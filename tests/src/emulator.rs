//! Starting and stopping the emulators.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use testcontainers_modules::localstack::LocalStack;
use testcontainers_modules::testcontainers::runners::AsyncRunner as _;
use testcontainers_modules::testcontainers::{ContainerAsync, ImageExt as _, TestcontainersError};
use tokio::process::{Child, Command};

/// The kinesis-local release the suites are written against (its npm spec, shared with `cargo xtask demo`).
pub fn kinesis_local_package() -> &'static str {
    include_str!("kinesis-local.txt").trim()
}

/// Forces every `listen` of the Node process onto loopback: kinesis-local binds 0.0.0.0 by default. Shared with
/// `cargo xtask demo`, which starts kinesis-local without this crate.
const LOOPBACK_PRELOAD: &str = include_str!("loopback.js");

/// The Segment client libraries the ingest suites drive, pinned so that a new release cannot change a test.
const PYTHON_CLIENT: &str = "segment-analytics-python==2.4.0";
/// AWS's reference deaggregator of KPL aggregated records, which the aggregation suite reads records back with.
const DEAGGREGATOR: &str = "aws_kinesis_agg==1.2.3";
/// Checks Kubernetes manifests against Kubernetes' own schemas, bundled, offline.
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";
const NODE_CLIENT: &str = "@segment/analytics-node@3.1.0";
/// The browser library, the bundler a web app would build it with, and the driver for Debian's Chromium.
const BROWSER_PACKAGES: [&str; 3] = ["@segment/analytics-next@1.84.3", "esbuild@0.28.2", "playwright-core@1.65.1"];

/// Where Debian's `chromium` package puts the browser (`.ci/run` installs it).
const CHROMIUM: &str = "/usr/bin/chromium";

/// The Segment client libraries the suites drive.
#[derive(Debug, Clone)]
pub struct Clients {
    /// A Python with analytics-python and aws_kinesis_agg.
    pub python: PathBuf,
    /// A `node_modules` with analytics-node.
    pub node_modules: PathBuf,
    /// A `node_modules` with analytics-next, esbuild and playwright-core.
    pub browser_modules: PathBuf,
    /// Chromium, when it is installed.
    pub chromium: Option<PathBuf>,
}

/// Everything that was started.
pub struct Emulators {
    kinesis: Vec<(String, String)>,
    s3: Option<String>,
    iam: Option<(String, String)>,
    clients: Option<Clients>,
    children: Vec<Child>,
    container: Option<ContainerAsync<LocalStack>>,
}

impl Emulators {
    /// The variables the suites read.
    pub fn environment(&self) -> Vec<(String, String)> {
        let mut env = vec![(
            crate::env::KINESIS.to_owned(),
            self.kinesis.iter().map(|(name, url)| format!("{name}={url}")).collect::<Vec<_>>().join(","),
        )];
        if let Some(clients) = &self.clients {
            env.push((crate::env::PYTHON.to_owned(), clients.python.display().to_string()));
            env.push((crate::env::NODE_MODULES.to_owned(), clients.node_modules.display().to_string()));
            env.push((crate::env::BROWSER_MODULES.to_owned(), clients.browser_modules.display().to_string()));
            if let Some(chromium) = &clients.chromium {
                env.push((crate::env::CHROMIUM.to_owned(), chromium.display().to_string()));
            }
        }
        if let Some(url) = &self.s3 {
            env.push((crate::env::S3.to_owned(), url.clone()));
        }
        if let Some((url, admin)) = &self.iam {
            env.push((crate::env::IAM.to_owned(), url.clone()));
            env.push((crate::env::IAM_ADMIN.to_owned(), admin.clone()));
        }
        env
    }

    /// Stops every process and container.
    pub async fn stop(mut self) {
        for child in &mut self.children {
            let _ = child.kill().await;
        }
        if let Some(container) = self.container.take() {
            let _ = container.rm().await;
        }
    }
}

/// Where host emulators are installed: `target/emulators`, shared by runs on the same machine.
pub fn install_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").join("target"));
    target.join("emulators")
}

/// Starts the Kinesis emulators (the first of which also serves S3), the IAM-enforcing moto, and installs the
/// client libraries.
pub async fn start_all() -> anyhow::Result<Emulators> {
    let mut emulators =
        Emulators { kinesis: Vec::new(), s3: None, iam: None, clients: None, children: Vec::new(), container: None };
    match start_localstack().await {
        Ok((container, url)) => {
            eprintln!("emulators: Docker answered; Kinesis is LocalStack at {url}");
            emulators.kinesis.push(("localstack".to_owned(), url.clone()));
            emulators.s3 = Some(url);
            emulators.container = Some(container);
        }
        Err(reason) => {
            eprintln!("emulators: no Docker engine ({reason}); starting moto and kinesis-local on the host");
            let (child, url) = start_moto().await?;
            emulators.children.push(child);
            emulators.kinesis.push(("moto".to_owned(), url.clone()));
            emulators.s3 = Some(url);
            let (child, url) = start_kinesis_local().await?;
            emulators.children.push(child);
            emulators.kinesis.push(("kinesis-local".to_owned(), url));
        }
    }
    emulators.clients = Some(install_clients()?);
    let (child, url) = start_moto().await?;
    emulators.children.push(child);
    let admin = crate::env::enforce_iam(&url).await.context("turning on IAM enforcement in moto")?;
    emulators.iam = Some((url, admin));
    Ok(emulators)
}

async fn start_localstack() -> Result<(ContainerAsync<LocalStack>, String), String> {
    let request = LocalStack::default().with_tag("4.5").with_env_var("SERVICES", "kinesis,firehose,sts,iam,s3");
    match request.start().await {
        Ok(container) => {
            let port = container.get_host_port_ipv4(4566).await.map_err(|e| e.to_string())?;
            Ok((container, format!("http://127.0.0.1:{port}")))
        }
        Err(TestcontainersError::Client(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// A free loopback port.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs a setup command, failing with its output.
fn run(command: &mut std::process::Command, what: &str) -> anyhow::Result<()> {
    let output = command.output().with_context(|| format!("{what}: could not run {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Creates the virtualenv `venv` and pip-installs `package` into it.
fn pip_install(venv: &Path, package: &str) -> anyhow::Result<()> {
    eprintln!("emulators: installing {package} into {}", venv.display());
    run(std::process::Command::new("python3").args(["-m", "venv"]).arg(venv), "creating a virtualenv")?;
    run(
        std::process::Command::new(venv.join("bin/pip")).args(["install", "--quiet", package]),
        &format!("pip install {package}"),
    )
}

/// npm-installs `package` under `prefix`.
fn npm_install(prefix: &Path, packages: &[&str]) -> anyhow::Result<()> {
    let names = packages.join(" ");
    eprintln!("emulators: installing {names} into {}", prefix.display());
    std::fs::create_dir_all(prefix)?;
    run(
        std::process::Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
            .arg(prefix)
            .args(packages),
        &format!("npm install {names}"),
    )
}

/// Installs moto into a virtualenv under [`install_dir`] unless it is there.
pub fn install_moto() -> anyhow::Result<PathBuf> {
    let venv = install_dir().join("venv");
    let server = venv.join("bin/moto_server");
    if !server.exists() {
        pip_install(&venv, "moto[server]")?;
    }
    Ok(server)
}

/// Installs kinesis-local under [`install_dir`] unless it is there.
pub fn install_kinesis_local() -> anyhow::Result<PathBuf> {
    let prefix = install_dir().join("node");
    let main = prefix.join("node_modules/kinesis-local/main.js");
    if !main.exists() {
        npm_install(&prefix, &[kinesis_local_package()])?;
    }
    std::fs::write(prefix.join("loopback.js"), LOOPBACK_PRELOAD)?;
    Ok(main)
}

/// Installs the Segment client libraries under [`install_dir`] unless they are there, and finds Chromium.
pub fn install_clients() -> anyhow::Result<Clients> {
    let venv = install_dir().join("clients-venv");
    let marker = venv.join(".installed-segment-analytics-python-2.4.0");
    if !marker.exists() {
        pip_install(&venv, PYTHON_CLIENT)?;
        std::fs::write(&marker, "")?;
    }
    let marker = venv.join(".installed-aws-kinesis-agg-1.2.3");
    if !marker.exists() {
        pip_install(&venv, DEAGGREGATOR)?;
        std::fs::write(&marker, "")?;
    }
    let marker = venv.join(".installed-kubernetes-validate-1.37.0");
    if !marker.exists() {
        pip_install(&venv, KUBERNETES_VALIDATE)?;
        std::fs::write(&marker, "")?;
    }
    let prefix = install_dir().join("clients-node");
    let modules = prefix.join("node_modules");
    if !modules.join("@segment/analytics-node/package.json").exists() {
        npm_install(&prefix, &[NODE_CLIENT])?;
    }
    let browser_prefix = install_dir().join("browser-node");
    let browser_modules = browser_prefix.join("node_modules");
    if !browser_prefix.join(".installed-analytics-next-1.84.3").exists() {
        npm_install(&browser_prefix, &BROWSER_PACKAGES)?;
        std::fs::write(browser_prefix.join(".installed-analytics-next-1.84.3"), "")?;
    }
    let chromium = Path::new(CHROMIUM).exists().then(|| PathBuf::from(CHROMIUM));
    if chromium.is_none() {
        eprintln!("emulators: {CHROMIUM} is missing (apt-get install chromium); the browser suite will fail");
    }
    Ok(Clients { python: venv.join("bin/python"), node_modules: modules, browser_modules, chromium })
}

/// Polls `check` until it succeeds or `timeout` passes.
async fn wait_until(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) -> anyhow::Result<()> {
    let give_up = tokio::time::Instant::now() + timeout;
    while !check().await {
        if tokio::time::Instant::now() > give_up {
            bail!("{what} did not become ready within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Whether something accepts TCP connections on `port`.
async fn listening(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
}

async fn start_moto() -> anyhow::Result<(Child, String)> {
    let server = install_moto()?;
    let port = free_port()?;
    let child = Command::new(server)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting moto_server")?;
    let url = format!("http://127.0.0.1:{port}");
    let probe = format!("{url}/moto-api/");
    wait_until("moto", Duration::from_secs(60), async || crate::env::http_ok(&probe).await).await?;
    Ok((child, url))
}

async fn start_kinesis_local() -> anyhow::Result<(Child, String)> {
    let main = install_kinesis_local()?;
    let dir = main.parent().expect("main.js is in a folder").to_owned();
    let (plain, tls) = (free_port()?, free_port()?);
    let child = Command::new("node")
        .arg("--require")
        .arg(install_dir().join("node/loopback.js"))
        .arg(&main)
        .env("KINESIS_MOCK_PLAIN_PORT", plain.to_string())
        .env("KINESIS_MOCK_TLS_PORT", tls.to_string())
        .env("KINESIS_MOCK_CERT_PATH", dir.join("server.json"))
        .env("LOG_LEVEL", "WARN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting kinesis-local with node")?;
    wait_until("kinesis-local", Duration::from_secs(60), async || listening(plain).await).await?;
    Ok((child, format!("http://127.0.0.1:{plain}")))
}
