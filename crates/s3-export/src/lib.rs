//! Fetching a warehouse export from S3 into a local folder, where the personas snapshot reader reads it as a
//! folder of parts.
//!
//! A location is `s3://bucket/key` (one object), `s3://bucket/prefix/` (every object under it) or
//! `s3://bucket/prefix/part-*.parquet` (the objects whose name matches a glob of `*` and `?`). Objects whose name
//! starts with `_` or `.` (Spark's `_SUCCESS`, folder markers) are skipped. Objects are streamed to disk, so
//! memory does not grow with an export. Credentials come from the AWS default chain (environment, profile, web
//! identity, container or instance role): an export belongs to the team's warehouse account, not to a destination.

#[cfg(feature = "sdk")]
use std::path::Path;
use std::path::PathBuf;

#[cfg(feature = "sdk")]
use aws_sdk_s3::Client;
#[cfg(feature = "sdk")]
use tokio::io::AsyncWriteExt as _;

/// Where an export is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The bucket.
    pub bucket: String,
    /// The key, or the prefix of the keys (up to any glob).
    pub key: String,
}

/// Whether `text` is an S3 location rather than a path.
pub fn is_s3(text: &str) -> bool {
    text.starts_with("s3://")
}

impl Location {
    /// Parses `s3://bucket/key`.
    pub fn parse(text: &str) -> Result<Location, String> {
        let rest = text.strip_prefix("s3://").ok_or_else(|| format!("{text:?} does not start with s3://"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Err(format!("{bucket:?} in {text:?} is not an S3 bucket name (3 to 63 of a-z, 0-9, '-' and '.')"));
        }
        if key.rsplit('/').skip(1).any(|folder| folder.contains(['*', '?'])) {
            return Err(format!("{text:?}: only the last part of the key may hold a glob"));
        }
        Ok(Location { bucket: bucket.to_owned(), key: key.to_owned() })
    }

    /// The listing prefix, and the glob the names after it must match (if any).
    #[cfg(feature = "sdk")]
    fn prefix_and_glob(&self) -> (&str, Option<&str>) {
        let name = self.key.rsplit('/').next().unwrap_or(&self.key);
        if name.contains(['*', '?']) {
            (&self.key[..self.key.len() - name.len()], Some(name))
        } else {
            (&self.key, None)
        }
    }
}

/// Where S3 is and how to reach it.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// The region; default: the AWS default chain's (`AWS_REGION`, the profile), else `us-east-1`.
    pub region: Option<String>,
    /// An S3-compatible endpoint (MinIO, LocalStack); addressed path-style.
    pub endpoint: Option<String>,
}

/// Why an export could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// S3 refused or failed a call.
    #[error("{doing} s3://{bucket}/{key}: {message}")]
    S3 {
        /// What was being done (`listing`, `downloading`).
        doing: &'static str,
        /// The bucket.
        bucket: String,
        /// The key or prefix.
        key: String,
        /// What S3 said.
        message: String,
    },
    /// Writing the local copy failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The local file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The location matches no object.
    #[error("s3://{bucket}/{key} matches no export object")]
    Empty {
        /// The bucket.
        bucket: String,
        /// The key or prefix.
        key: String,
    },
}

/// An S3 client for exports.
#[cfg(feature = "sdk")]
pub async fn client(connection: &Connection) -> Client {
    let shared = aws_common::sdk::default_config(connection.region.as_deref()).await;
    let mut config = aws_sdk_s3::config::Builder::from(&shared);
    if shared.region().is_none() {
        config = config.region(aws_sdk_s3::config::Region::new("us-east-1"));
    }
    if let Some(endpoint) = &connection.endpoint {
        config = config.endpoint_url(endpoint).force_path_style(true);
    }
    Client::from_conf(config.build())
}

/// A glob matcher: whether a name matches a pattern of `*` and `?`. The caller hands in the one its local files
/// are matched with, so that a glob means the same on disk and on S3.
pub type Glob = fn(&str, &str) -> bool;

/// The keys of the export's objects, in key order (the order warehouses number their parts).
#[cfg(feature = "sdk")]
pub async fn list(client: &Client, location: &Location, glob_matches: Glob) -> Result<Vec<String>, FetchError> {
    let (prefix, glob) = location.prefix_and_glob();
    let failed = |message: String| FetchError::S3 {
        doing: "listing",
        bucket: location.bucket.clone(),
        key: location.key.clone(),
        message,
    };
    let mut keys = Vec::new();
    let mut pages = client.list_objects_v2().bucket(&location.bucket).prefix(prefix).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| failed(describe(&e)))?;
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            let rest = &key[prefix.len().min(key.len())..];
            let name = key.rsplit('/').next().unwrap_or(key);
            let wanted = match glob {
                Some(glob) => !rest.contains('/') && glob_matches(glob, rest),
                // A prefix that is a whole key is that object; else everything under the prefix as a folder.
                None => {
                    key == location.key
                        || location.key.is_empty()
                        || location.key.ends_with('/')
                        || rest.starts_with('/')
                }
            };
            if wanted && !name.is_empty() && !name.starts_with(['_', '.']) {
                keys.push(key.to_owned());
            }
        }
    }
    // An exact object wins over others that merely share its name as a prefix (`members.csv` and `members.csv.bak`).
    if keys.contains(&location.key) {
        keys.retain(|k| *k == location.key);
    }
    keys.sort();
    if keys.is_empty() {
        return Err(FetchError::Empty { bucket: location.bucket.clone(), key: location.key.clone() });
    }
    Ok(keys)
}

/// Downloads the export's objects into `into` (created if needed), streamed, one file per object named by its
/// position and its own name, so that part order and format survive; returns the files.
#[cfg(feature = "sdk")]
pub async fn fetch(
    client: &Client,
    location: &Location,
    into: &Path,
    glob_matches: Glob,
) -> Result<Vec<PathBuf>, FetchError> {
    let keys = list(client, location, glob_matches).await?;
    tokio::fs::create_dir_all(into).await.map_err(|source| FetchError::Io { path: into.to_owned(), source })?;
    let mut files = Vec::with_capacity(keys.len());
    for (index, key) in keys.iter().enumerate() {
        let name = key.rsplit('/').next().unwrap_or(key);
        let path = into.join(format!("{index:06}-{name}"));
        let failed = |message: String| FetchError::S3 {
            doing: "downloading",
            bucket: location.bucket.clone(),
            key: key.clone(),
            message,
        };
        let object =
            client.get_object().bucket(&location.bucket).key(key).send().await.map_err(|e| failed(describe(&e)))?;
        let io = |source| FetchError::Io { path: path.clone(), source };
        let mut file = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::create(&path).await.map_err(io)?);
        let mut body = object.body;
        while let Some(bytes) = body.try_next().await.map_err(|e| failed(e.to_string()))? {
            file.write_all(&bytes).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        files.push(path);
    }
    Ok(files)
}

/// Every key under `prefix` in `bucket` (all of them with an empty prefix), in key order; none is not an error.
/// For readers of objects another service writes, such as a Firehose delivery stream's.
#[cfg(feature = "sdk")]
pub async fn keys_under(client: &Client, bucket: &str, prefix: &str) -> Result<Vec<String>, FetchError> {
    let mut keys = Vec::new();
    let mut pages = client.list_objects_v2().bucket(bucket).prefix(prefix).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| FetchError::S3 {
            doing: "listing",
            bucket: bucket.to_owned(),
            key: prefix.to_owned(),
            message: describe(&e),
        })?;
        keys.extend(page.contents().iter().filter_map(|object| object.key().map(str::to_owned)));
    }
    keys.sort();
    Ok(keys)
}

/// The bytes of one object, whole.
#[cfg(feature = "sdk")]
pub async fn read(client: &Client, bucket: &str, key: &str) -> Result<Vec<u8>, FetchError> {
    let failed = |message: String| FetchError::S3 {
        doing: "downloading",
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        message,
    };
    let object = client.get_object().bucket(bucket).key(key).send().await.map_err(|e| failed(describe(&e)))?;
    let body = object.body.collect().await.map_err(|e| failed(e.to_string()))?;
    Ok(body.into_bytes().to_vec())
}

/// An SDK error in words: S3's code and message, else the error chain.
#[cfg(feature = "sdk")]
fn describe<E: std::error::Error + aws_sdk_s3::error::ProvideErrorMetadata + 'static, R: std::fmt::Debug>(
    error: &aws_sdk_s3::error::SdkError<E, R>,
) -> String {
    use aws_sdk_s3::error::ProvideErrorMetadata as _;
    match (error.code(), error.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(inner) = source {
                text.push_str(": ");
                text.push_str(&inner.to_string());
                source = inner.source();
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_say_what_is_wrong() {
        assert_eq!(
            Location::parse("s3://exports-1/audiences/part-*.parquet"),
            Ok(Location { bucket: "exports-1".into(), key: "audiences/part-*.parquet".into() })
        );
        assert_eq!(Location::parse("s3://b12").map(|l| l.key), Ok(String::new()));
        assert!(Location::parse("s3://Bad_Bucket/x").unwrap_err().contains("is not an S3 bucket name"));
        assert!(Location::parse("s3://bucket/*/x.csv").unwrap_err().contains("only the last part"));
        let glob = Location::parse("s3://bucket/unload/data_*.csv.gz").unwrap();
        assert_eq!(glob.prefix_and_glob(), ("unload/", Some("data_*.csv.gz")));
        let folder = Location::parse("s3://bucket/unload/").unwrap();
        assert_eq!(folder.prefix_and_glob(), ("unload/", None));
    }
}
