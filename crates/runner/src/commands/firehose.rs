//! The setup commands of a Firehose destination (`streams create|describe`, `tail`, and `check`'s and `iam
//! trust`'s calls), through `firehose_sink::setup`; built with the `firehose` feature. `streams`, `tail` and
//! `setup` hand a Firehose destination here.

use std::time::Duration;

use anyhow::bail;
use firehose_sink::FirehoseConfig;
use firehose_sink::setup as firehose_setup;
use serde_json::{Value, json};

use crate::config::Config;

/// The delivery stream of the Firehose destination `destination` that a command works on: `stream` if its mapping
/// names it, else the one stream its mapping names.
fn delivery_stream(firehose: &FirehoseConfig, destination: &str, stream: Option<&str>) -> anyhow::Result<String> {
    let mapped = firehose_sink::Mapping::all_streams(&firehose.mapping);
    match stream {
        Some(name) if mapped.contains(&name) => Ok(name.to_owned()),
        Some(name) => bail!(
            "delivery stream {name:?} is not one destination {destination:?} maps events to (its mapping names {})",
            mapped.join(", ")
        ),
        None if mapped.len() == 1 => Ok(mapped[0].to_owned()),
        None => bail!(
            "destination {destination:?} maps events to {} delivery streams ({}): name one with --stream",
            mapped.len(),
            mapped.join(", ")
        ),
    }
}

/// Creates the Firehose destination's delivery stream `stream` (a DirectPut stream writing to S3) with the
/// caller's own credentials, or finds it, and waits until it is ACTIVE; returns its name and whether it was made.
pub async fn create_delivery_stream(
    config: &Config,
    destination: &str,
    stream: Option<&str>,
    new: &firehose_setup::NewStream,
) -> anyhow::Result<(String, firehose_setup::Created)> {
    let firehose = config.firehose(destination)?;
    let name = delivery_stream(firehose, destination, stream)?;
    anyhow::ensure!(
        new.bucket_arn.starts_with("arn:") && new.bucket_arn.contains(":s3:::"),
        "--bucket-arn {:?} is not an S3 bucket ARN (arn:aws:s3:::BUCKET)",
        new.bucket_arn
    );
    anyhow::ensure!(
        firehose_sink::policy::is_role_arn(&new.delivery_role),
        "--delivery-role {:?} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)",
        new.delivery_role
    );
    anyhow::ensure!((0..=900).contains(&new.buffer_seconds), "--buffer-seconds must be 0 to 900");
    let client = firehose_setup::Client::own(firehose, &crate::route::base_credentials()).await;
    let created = firehose_setup::create(&client, &name, new, Duration::from_secs(300)).await?;
    Ok((name, created))
}

/// Describes the Firehose destination's delivery streams (`stream`, or every one its mapping names) with the
/// caller's own credentials.
pub async fn describe_delivery_streams(
    config: &Config,
    destination: &str,
    stream: Option<&str>,
) -> anyhow::Result<Vec<firehose_setup::StreamSummary>> {
    let firehose = config.firehose(destination)?;
    let names = match stream {
        Some(_) => vec![delivery_stream(firehose, destination, stream)?],
        None => firehose_sink::Mapping::all_streams(&firehose.mapping).into_iter().map(str::to_owned).collect(),
    };
    let client = firehose_setup::Client::own(firehose, &crate::route::base_credentials()).await;
    let mut summaries = Vec::new();
    for name in names {
        summaries.push(firehose_setup::describe(&client, &name).await?);
    }
    Ok(summaries)
}

/// What `streams create` was given for a Firehose destination.
pub struct CreateFlags {
    /// `--bucket-arn`.
    pub bucket_arn: Option<String>,
    /// `--delivery-role`.
    pub delivery_role: Option<String>,
    /// `--prefix`.
    pub prefix: Option<String>,
    /// `--buffer-seconds`.
    pub buffer_seconds: Option<i32>,
}

/// `streams create` of a Firehose destination: creates the delivery stream and says so on `out`.
pub async fn create(
    config: &Config,
    destination: &str,
    stream: Option<&str>,
    flags: CreateFlags,
    out: super::Out<'_>,
) -> anyhow::Result<()> {
    let (Some(bucket_arn), Some(delivery_role)) = (flags.bucket_arn, flags.delivery_role) else {
        bail!(
            "a Firehose delivery stream writes to S3: pass --bucket-arn arn:aws:s3:::BUCKET and --delivery-role ARN \
             (the role Firehose assumes to write the bucket)"
        );
    };
    let new = firehose_setup::NewStream {
        bucket_arn,
        delivery_role,
        prefix: flags.prefix,
        buffer_seconds: flags.buffer_seconds.unwrap_or(60),
    };
    let (name, created) = create_delivery_stream(config, destination, stream, &new).await?;
    let verb = match created {
        firehose_setup::Created::New => "created",
        firehose_setup::Created::Existing => "found existing",
    };
    writeln!(
        out,
        "{verb} delivery stream {name} (Direct PUT) writing to {}{} with a {}s buffer; it is ACTIVE",
        new.bucket_arn,
        new.prefix.as_deref().map(|p| format!(" under {p}")).unwrap_or_default(),
        new.buffer_seconds
    )?;
    Ok(())
}

/// `streams describe` of a Firehose destination: each delivery stream (or `stream`) on `out`.
pub async fn describe(
    config: &Config,
    destination: &str,
    stream: Option<&str>,
    out: super::Out<'_>,
) -> anyhow::Result<()> {
    for (n, s) in describe_delivery_streams(config, destination, stream).await?.iter().enumerate() {
        if n > 0 {
            writeln!(out)?;
        }
        writeln!(out, "delivery stream: {}", s.name)?;
        writeln!(out, "arn:             {}", s.arn)?;
        writeln!(out, "status:          {}", s.status)?;
        writeln!(out, "source:          {}", s.kind)?;
        let Some(s3) = &s.s3 else {
            writeln!(out, "destination:     not S3 (tail reads only S3 destinations)")?;
            continue;
        };
        writeln!(out, "s3 bucket:       {}", s3.bucket_arn)?;
        writeln!(out, "s3 prefix:       {}", if s3.prefix.is_empty() { "(none)" } else { &s3.prefix })?;
        writeln!(out, "delivery role:   {}", s3.role_arn)?;
        let seconds = s3.buffer_seconds.map_or("not reported".to_owned(), |n| format!("{n} seconds"));
        let mib = s3.buffer_mib.map(|m| format!(" or {m} MiB")).unwrap_or_default();
        writeln!(out, "buffer:          {seconds}{mib}")?;
    }
    Ok(())
}

/// The records of one S3 object a delivery stream wrote: its lines (a gzip object unpacked first), each as `tail`
/// prints it: the object's key and the record's data as JSON, else as a string.
fn render_object(key: &str, bytes: &[u8]) -> anyhow::Result<Vec<String>> {
    let text = if key.ends_with(".gz") || bytes.starts_with(&[0x1f, 0x8b]) {
        let mut unpacked = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(bytes), &mut unpacked)
            .map_err(|e| anyhow::anyhow!("s3 object {key} is not gzip as it looks: {e}"))?;
        unpacked
    } else {
        bytes.to_vec()
    };
    Ok(text
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let data = serde_json::from_slice::<Value>(line)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(line).into_owned()));
            json!({"s3_key": key, "data": data}).to_string()
        })
        .collect())
}

/// Reads the S3 objects the Firehose destination's delivery stream `stream` wrote (with the caller's own
/// credentials) and prints one JSON line per record to `out`: every object there now, in key order (which is time
/// order: Firehose names them by hour and time), then with `follow` each object written after, polling until
/// interrupted. Returns how many records were printed.
pub async fn tail(
    config: &Config,
    destination: &str,
    stream: Option<&str>,
    follow: bool,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<usize> {
    use firehose_sink::setup as firehose_setup;
    let firehose = config.firehose(destination)?;
    let name = delivery_stream(firehose, destination, stream)?;
    let client = firehose_setup::Client::own(firehose, &crate::route::base_credentials()).await;
    let summary = firehose_setup::describe(&client, &name).await?;
    let Some(s3) = summary.s3 else {
        anyhow::bail!("delivery stream {name} does not write to S3, so there is nothing for tail to read");
    };
    let connection =
        s3_export::Connection { region: Some(firehose.region.clone()), endpoint: firehose.endpoint.clone() };
    let s3_client = s3_export::client(&connection).await;
    let mut seen = std::collections::HashSet::new();
    let mut printed = 0;
    loop {
        for key in s3_export::keys_under(&s3_client, s3.bucket(), &s3.prefix).await? {
            if !seen.insert(key.clone()) {
                continue;
            }
            let bytes = s3_export::read(&s3_client, s3.bucket(), &key).await?;
            for line in render_object(&key, &bytes)? {
                match writeln!(out, "{line}").and_then(|()| out.flush()) {
                    Ok(()) => printed += 1,
                    // A closed pipe (`tributary tail | head`) is the reader saying it has seen enough.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(printed),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if !follow {
            return Ok(printed);
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}
