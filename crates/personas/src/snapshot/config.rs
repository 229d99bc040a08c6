//! The export a computation reads (`[source]` of its definition).

use std::path::PathBuf;

use serde::Deserialize;

/// The export with the current members (`[source]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// Where the export is, relative to the config folder unless absolute: a `.csv` (with a header row),
    /// `.ndjson` or `.parquet` file, a `.csv.gz` or `.ndjson.gz` one; a folder of such parts; a glob of them in the
    /// last component (`unload/data_*.csv.gz`); or the same on S3 (`s3://bucket/key`, `s3://bucket/prefix/`,
    /// `s3://bucket/prefix/part-*.parquet`), fetched with the AWS default credentials.
    pub path: PathBuf,
    /// The column (or NDJSON field) with the `userId`. Default `user_id`.
    #[serde(default = "user_id_column")]
    pub user_id_column: String,
    /// The column with the `anonymousId`, used when the user ID is empty. Default `anonymous_id`.
    #[serde(default = "anonymous_id_column")]
    pub anonymous_id_column: String,
    /// The column with the trait's value; traits and account traits only.
    #[serde(default)]
    pub value_column: Option<String>,
    /// The column with the account's ID (the `groupId`); account traits only.
    #[serde(default)]
    pub group_id_column: Option<String>,
    /// For an `s3://` path: the bucket's region. Default: the AWS default chain's (`AWS_REGION`, the profile),
    /// else `us-east-1`. Credentials always come from the default chain.
    #[serde(default)]
    pub region: Option<String>,
    /// For an `s3://` path: an S3-compatible endpoint (MinIO, LocalStack), addressed path-style.
    #[serde(default)]
    pub endpoint: Option<String>,
}

fn user_id_column() -> String {
    "user_id".to_owned()
}

fn anonymous_id_column() -> String {
    "anonymous_id".to_owned()
}

impl SnapshotConfig {
    /// Whether the export is on S3 (`s3://`) rather than on this machine.
    pub fn is_remote(&self) -> bool {
        self.path.to_str().is_some_and(s3_export::is_s3)
    }
}
