//! What the runner writes itself: times as Segment writes them, durations as the config does, and new messageIds.

/// A new `messageId` for a message that came without one: a random UUID, as Segment's libraries make.
pub fn new_message_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Writes a duration as the config writes it: `4h`, `30m`, `90s`.
pub fn format_duration(duration: std::time::Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        s if s > 0 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s > 0 && s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Formats Unix milliseconds as Segment formats times (`2026-11-25T23:54:55.123Z`).
pub fn format_millis(millis: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    segment_model::format_timestamp(at)
}
