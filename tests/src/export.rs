//! Warehouse exports written as warehouses write them, for the personas suites.

use std::path::Path;
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;

/// How a Parquet export writes a trait's value column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueColumn {
    /// `INT64`: the value as it is.
    Int64,
    /// `INT64 (DECIMAL(18,2))`, as Snowflake unloads `NUMBER(18,2)`: the value in hundredths.
    Decimal,
}

/// Writes a Snappy-compressed Parquet file of `(user_id, value)` rows (`user_id` a UTF-8 string, `ltv` the value),
/// one row group per `rows_per_group` rows.
pub fn parquet(path: &Path, rows: &[(String, i64)], value: ValueColumn, rows_per_group: usize) -> anyhow::Result<()> {
    let value_type = match value {
        ValueColumn::Int64 => "REQUIRED INT64 ltv;",
        ValueColumn::Decimal => "REQUIRED INT64 ltv (DECIMAL(18,2));",
    };
    let schema = format!("message schema {{ OPTIONAL BYTE_ARRAY user_id (UTF8); {value_type} }}");
    let schema = Arc::new(parquet::schema::parser::parse_message_type(&schema)?);
    let properties = Arc::new(WriterProperties::builder().set_compression(Compression::SNAPPY).build());
    let mut writer = SerializedFileWriter::new(std::fs::File::create(path)?, schema, properties)?;
    for group in rows.chunks(rows_per_group.max(1)) {
        let mut row_group = writer.next_row_group()?;
        let users: Vec<ByteArray> = group.iter().map(|(u, _)| ByteArray::from(u.as_str())).collect();
        let mut column = row_group.next_column()?.expect("user_id");
        column.typed::<ByteArrayType>().write_batch(&users, Some(&vec![1; users.len()]), None)?;
        column.close()?;
        let values: Vec<i64> =
            group.iter().map(|(_, v)| if value == ValueColumn::Decimal { v * 100 } else { *v }).collect();
        let mut column = row_group.next_column()?.expect("ltv");
        column.typed::<Int64Type>().write_batch(&values, None, None)?;
        column.close()?;
        row_group.close()?;
    }
    writer.close()?;
    Ok(())
}
