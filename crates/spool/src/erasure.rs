//! Carrying out an erasure ([`Spool::erase`]) and asking a spool's owner for one: a command writes the request in
//! the `erasure_requests` table ([`request_erasure`]), the owner carries it out (at start, and while it runs) and
//! writes its report there, and the user's IDs leave the table in the erasure's last commit.
//!
//! The spool knows nothing of messages: an [`Eraser`] (the caller's) says which messages are the user's. Entries
//! are read and rewritten a page at a time, so that appends keep committing between pages.

use std::path::Path;
use std::sync::{Arc, mpsc};

use rusqlite::{OptionalExtension as _, TransactionBehavior, params};

use crate::erase::{Erased, Eraser, Scanned};
use crate::error::SpoolError;
use crate::suppress::IdKind;
use crate::writer::Op;
use crate::{FILE_NAME, Spool};

/// How many entries an erasure reads and rewrites per commit.
const ENTRIES_PER_PAGE: i64 = 64;
/// How many dead letters or rejections an erasure reads per query.
const ROWS_PER_PAGE: i64 = 512;

impl Spool {
    /// Removes the messages `eraser` names from everything the spool holds, beside deliveries and appends (call it
    /// on the owner's handle). `request` is the [`request_erasure`] it carries out, whose IDs its last commit
    /// forgets. Messages stored after it began are not erased: suppress the user first to keep them out.
    pub async fn erase(&self, eraser: Arc<dyn Eraser>, request: Option<i64>) -> Result<Erased, SpoolError> {
        let (answer, up_to) = mpsc::channel();
        self.submit(Op::EraseBegin(eraser.clone(), answer)).await?;
        let up_to = up_to.try_recv().map_err(|_| SpoolError::Stopped)?;
        let erased = self.erase_up_to(&eraser, up_to, request).await;
        if erased.is_err() {
            // Ended all the same; a failed stop leaves it to the process's end.
            let _ = self.submit(Op::EraseStop(eraser)).await;
        }
        erased
    }

    /// The rest of [`Spool::erase`], once the eraser is in force for entries up to `up_to`.
    async fn erase_up_to(
        &self,
        eraser: &Arc<dyn Eraser>,
        up_to: i64,
        request: Option<i64>,
    ) -> Result<Erased, SpoolError> {
        let mut erased = Erased::default();
        let mut after = 0;
        loop {
            let reading = eraser.clone();
            let (scanned, last) = self.read(move |reader| scan(reader, &*reading, after, up_to)).await?;
            let Some(last) = last else { break };
            after = last;
            if scanned.is_empty() {
                continue;
            }
            let (answer, part) = mpsc::channel();
            self.submit(Op::EraseRewrite(eraser.clone(), scanned, answer)).await?;
            let part = part.try_recv().map_err(|_| SpoolError::Stopped)?;
            for (destination, removed) in part.waiting {
                *erased.waiting.entry(destination).or_default() += removed;
            }
            erased.entries += part.entries;
            erased.handed.extend(part.handed);
        }
        let dead_letters = self.matching_rows("dead_letters", eraser).await?;
        let rejected = self.matching_rows("rejected", eraser).await?;
        erased.dead_letters = dead_letters.len() as u64;
        erased.rejected = rejected.len() as u64;
        let (answer, ended) = mpsc::channel();
        self.submit(Op::EraseEnd(eraser.clone(), dead_letters, rejected, request, answer)).await?;
        (erased.free_pages, erased.checkpointed) = ended.try_recv().map_err(|_| SpoolError::Stopped)?;
        Ok(erased)
    }

    /// The IDs of the rows of `table` (dead letters or rejections) whose message `eraser` erases.
    async fn matching_rows(&self, table: &'static str, eraser: &Arc<dyn Eraser>) -> Result<Vec<i64>, SpoolError> {
        let mut found = Vec::new();
        let mut after = 0;
        loop {
            let eraser = eraser.clone();
            let (matched, last) = self
                .read(move |reader| {
                    let mut statement = reader.prepare_cached(&format!(
                        "SELECT id, message FROM {table} WHERE id > ?1 AND message IS NOT NULL ORDER BY id LIMIT ?2"
                    ))?;
                    let mut rows = statement.query(params![after, ROWS_PER_PAGE])?;
                    let (mut matched, mut last) = (Vec::new(), None);
                    while let Some(row) = rows.next()? {
                        let id: i64 = row.get(0)?;
                        last = Some(id);
                        if eraser.message(row.get_ref(1)?.as_blob()?) {
                            matched.push(id);
                        }
                    }
                    Ok((matched, last))
                })
                .await?;
            found.extend(matched);
            match last {
                Some(last) => after = last,
                None => return Ok(found),
            }
        }
    }

    /// The erasures asked of this spool's owner and not yet carried out, oldest first.
    pub async fn erasure_requests(&self) -> Result<Vec<ErasureRequest>, SpoolError> {
        self.read(|reader| {
            let mut statement = reader.prepare_cached(
                "SELECT r.id, i.kind, i.id FROM erasure_requests r JOIN erasure_ids i ON i.request = r.id
                 WHERE r.report IS NULL ORDER BY r.id",
            )?;
            let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get::<_, String>(1)?, row.get(2)?)))?;
            let mut requests: Vec<ErasureRequest> = Vec::new();
            for row in rows {
                let (request, kind, id): (i64, String, String) = row?;
                let Some(kind) = IdKind::parse(&kind) else { continue };
                match requests.last_mut() {
                    Some(last) if last.id == request => last.ids.push((kind, id)),
                    _ => requests.push(ErasureRequest { id: request, ids: vec![(kind, id)] }),
                }
            }
            Ok(requests)
        })
        .await
    }

    /// Records the report of erasure `request`, for the command that asked for it ([`erasure_report`]).
    pub async fn report_erasure(&self, request: i64, report: String) -> Result<(), SpoolError> {
        self.submit(Op::EraseReport(request, report)).await
    }
}

/// Reads the entries after `after` up to `up_to`, a page of them, and what `eraser` makes of each; returns the
/// changed ones and the last ID read (`None` past the end).
fn scan(
    reader: &rusqlite::Connection,
    eraser: &dyn Eraser,
    after: i64,
    up_to: i64,
) -> Result<(Vec<Scanned>, Option<i64>), rusqlite::Error> {
    let mut statement = reader.prepare_cached(
        "SELECT id, destination, attempts, items FROM spool WHERE id > ?1 AND id <= ?2 ORDER BY id LIMIT ?3",
    )?;
    let mut rows = statement.query(params![after, up_to, ENTRIES_PER_PAGE])?;
    let (mut scanned, mut last) = (Vec::new(), None);
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        last = Some(id);
        if let Some(rewrite) = eraser.entry(row.get_ref(3)?.as_blob()?) {
            scanned.push(Scanned { id, destination: row.get(1)?, attempts: row.get(2)?, rewrite });
        }
    }
    Ok((scanned, last))
}

/// An erasure asked of a spool's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureRequest {
    /// Its number, for [`erasure_report`].
    pub id: i64,
    /// The users whose messages to erase.
    pub ids: Vec<(IdKind, String)>,
}

/// Asks the owner of the spool in `dir` to erase the messages of `ids`, in one durable commit; returns the
/// request's number. An owner carries out every request it finds, at start and while it runs.
pub fn request_erasure(dir: &Path, ids: &[(IdKind, String)], at: i64) -> Result<i64, SpoolError> {
    let (mut connection, path) = crate::suppress::open_writable(dir)?;
    let failed = |source| SpoolError::Database { path: path.clone(), source };
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(failed)?;
    transaction.execute("INSERT INTO erasure_requests (requested_at) VALUES (?1)", params![at]).map_err(failed)?;
    let request = transaction.last_insert_rowid();
    {
        let mut insert = transaction
            .prepare("INSERT OR IGNORE INTO erasure_ids (request, kind, id) VALUES (?1, ?2, ?3)")
            .map_err(failed)?;
        for (kind, id) in ids {
            insert.execute(params![request, kind.as_str(), id]).map_err(failed)?;
        }
    }
    transaction.commit().map_err(failed)?;
    Ok(request)
}

/// The report of erasure `request` of the spool in `dir`, once its owner has carried it out.
pub fn erasure_report(dir: &Path, request: i64) -> Result<Option<String>, SpoolError> {
    let path = dir.join(FILE_NAME);
    let failed = |source| SpoolError::Database { path: path.clone(), source };
    let connection = sqlite_durable::open_database_read_only(&path).map_err(failed)?;
    connection
        .query_row("SELECT report FROM erasure_requests WHERE id = ?1", params![request], |row| row.get(0))
        .optional()
        .map(Option::flatten)
        .map_err(failed)
}

/// Forgets erasure `request` of the spool in `dir` once its report was read.
pub fn forget_erasure(dir: &Path, request: i64) -> Result<(), SpoolError> {
    let (connection, path) = crate::suppress::open_writable(dir)?;
    connection
        .execute("DELETE FROM erasure_requests WHERE id = ?1 AND report IS NOT NULL", params![request])
        .map_err(|source| SpoolError::Database { path, source })?;
    Ok(())
}
