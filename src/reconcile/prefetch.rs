//! Reconcile's activity phase one chunk ahead. A reader thread with a read-only connection of
//! its own loads the next chunk of dirty records, opens them and looks up each activity
//! record's parent person while the writer handles the current chunk, so that the writer's
//! thread does little more than write. Reading was about a third of the phase, the longest
//! of a first load (BENCHMARKS.md).
//!
//! Why what the reader saw still holds when the writer handles it:
//! - Within a reconcile run the writer's connection is the only one of this process that
//!   writes (`reconcile` holds the store). A commit from any other connection (a `review`
//!   decision in another process) changes `PRAGMA data_version`, which the writer checks
//!   inside each chunk's IMMEDIATE transaction, where no one else can commit; if it moved, the
//!   pipeline stops and the writer reads the rest itself.
//! - The reader reads chunk N+1 only after the writer took chunk N, i.e. after chunk N-1
//!   committed; of the rows it reads, only chunk N can have changed any since: it rewrites
//!   its own records (not N+1's) and may move person records to another resident. If it
//!   moved one, the writer looks chunk N+1's parents up again itself, as it does for the
//!   records after such a move within a chunk (`handle_chunk`).
//! - A record made dirty behind the reader (a follower of a moved person record) is found
//!   by the pass from the start that ends every phase (`each_chunk`).

use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::{
    chunk_sql, handle_chunk, load_dirty, parent_person, prepare_record, Dirty, Phase,
    ReconcileStats, RunState,
};
use crate::config::Config;
use crate::store::{Codec, Store, StoreError};

/// Page cache of the reader's connection, in KiB: the parents' index pages it revisits.
const READER_CACHE_KIB: i64 = -4_096;

/// What the activity phase read ahead did (logged; asserted by the tests).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Prefetched {
    /// Chunks handled from the reader's reads.
    pub chunks: u64,
    /// Of those, chunks whose parents the writer looked up again (the chunk before moved a
    /// record they may point at).
    pub parents_again: u64,
    /// Why the pipeline stopped before the reader ran out of records, if it did.
    pub stopped: Option<&'static str>,
    /// How long the writer waited for the reader's chunks (the reader bounds the phase when
    /// this is a large part of it).
    pub writer_waited: std::time::Duration,
}

/// Handles the activity phase's dirty records, `chunk` at a time, with the reader one chunk
/// ahead, when there is more than one chunk of them (a poll with a few changes starts no
/// thread). Stops early, leaving the rest to the caller's passes, if the store changed under
/// the reader or the reader failed. `between_chunks` runs after each commit (a seam for tests).
///
/// Only this phase: a first load's record-order pass walks its records in id order too, but
/// reading ahead there gained nothing measurable (its writer is bound by its own writes) and
/// added ~7 MiB at peak (person records and their match features are the heaviest chunks).
pub(super) fn activity_phase(
    store: &mut Store,
    codec: &Codec,
    config: &Config,
    run: &mut RunState,
    stats: &mut ReconcileStats,
    chunk: usize,
    mut between_chunks: impl FnMut(),
) -> Result<Prefetched, StoreError> {
    let mut done = Prefetched::default();
    let sql = chunk_sql().rest.as_str();
    if !more_than(store.conn(), sql, chunk)? {
        return Ok(done);
    }
    let data_version = data_version(store.conn())?;
    let reader = Reader::start(store.path(), sql, codec.clone(), chunk);
    let mut moved_parents = false;
    loop {
        let waiting = std::time::Instant::now();
        let next = reader.next();
        done.writer_waited += waiting.elapsed();
        let Some(read) = next else {
            break;
        };
        let batch = match read {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(error = %e, store = %store.path().display(), "reconcile's prefetch reader failed; the writer reads the rest of the activity phase itself");
                done.stopped = Some("the reader failed");
                break;
            }
        };
        let tx = store
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if self::data_version(&tx)? != data_version {
            done.stopped = Some("another connection wrote to the store");
            break;
        }
        if moved_parents {
            done.parents_again += 1;
        }
        moved_parents = handle_chunk(
            &tx,
            codec,
            config,
            Phase::Rest,
            &batch,
            moved_parents,
            run,
            stats,
        )?;
        tx.commit()?;
        done.chunks += 1;
        drop(batch);
        crate::memory::release_free();
        between_chunks();
    }
    Ok(done)
}

/// Whether the chunk query `sql` finds more than `n` records from the start.
fn more_than(conn: &Connection, sql: &str, n: usize) -> Result<bool, StoreError> {
    let found: i64 = conn
        .prepare_cached(&format!("SELECT count(*) FROM ({sql})"))?
        .query_row(rusqlite::params!["", 0, n as i64 + 1], |r| r.get(0))?;
    Ok(found > n as i64)
}

/// Changes whenever another connection commits to the store.
fn data_version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("PRAGMA data_version", [], |r| r.get(0))?)
}

/// The reader thread and the chunks it hands over, one at a time: it reads the next while
/// the writer handles the last (a rendezvous channel, so at most two chunks are in memory).
struct Reader {
    chunks: Option<Receiver<Result<Vec<Dirty>, StoreError>>>,
    thread: Option<JoinHandle<()>>,
}

impl Reader {
    fn start(path: &Path, sql: &'static str, codec: Codec, chunk: usize) -> Reader {
        let (sender, chunks) = sync_channel(0);
        let path = path.to_path_buf();
        match std::thread::Builder::new()
            .name("reconcile-prefetch".into())
            .spawn(move || read_ahead(&path, sql, &codec, chunk, &sender))
        {
            Ok(thread) => Reader {
                chunks: Some(chunks),
                thread: Some(thread),
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot start reconcile's prefetch reader; the writer reads the activity phase itself");
                Reader {
                    chunks: None,
                    thread: None,
                }
            }
        }
    }

    /// The next chunk; `None` once the reader found no more dirty records.
    fn next(&self) -> Option<Result<Vec<Dirty>, StoreError>> {
        self.chunks.as_ref()?.recv().ok()
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // A reader waiting to hand over a chunk sees the channel closed and ends.
        self.chunks = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn read_ahead(
    path: &Path,
    sql: &str,
    codec: &Codec,
    chunk: usize,
    chunks: &SyncSender<Result<Vec<Dirty>, StoreError>>,
) {
    if let Err(e) = read_chunks(path, sql, codec, chunk, chunks) {
        let _ = chunks.send(Err(e));
    }
}

/// Reads every record the chunk query `sql` finds, in id order, a chunk per read transaction
/// (ended before the chunk is handed over, so that no old snapshot holds back the WAL's
/// checkpoints).
fn read_chunks(
    path: &Path,
    sql: &str,
    codec: &Codec,
    chunk: usize,
    chunks: &SyncSender<Result<Vec<Dirty>, StoreError>>,
) -> Result<(), StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "cache_size", READER_CACHE_KIB)?;
    let mut after = 0;
    loop {
        let tx = conn.unchecked_transaction()?;
        let mut batch = load_dirty(&tx, sql, "", after, chunk)?;
        let Some(last) = batch.last() else {
            return Ok(());
        };
        after = last.id;
        // On this thread alone: the shared pool is the writer's, which seals its chunk's
        // events there (waiting on the reader's jobs left the writer idle half the time).
        for rec in &mut batch {
            prepare_record(codec, rec)?;
            if rec.live() && rec.entity.is_some_and(|e| !e.carries_person()) {
                rec.parent = Some(parent_person(&tx, rec)?);
            }
        }
        drop(tx);
        if chunks.send(Ok(batch)).is_err() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{each_chunk, run_chunk, Ranking};
    use super::*;
    use crate::model::{EntityKind, NormalizedRecord, PersonFields};
    use crate::store::{Ingest, StreamRef};

    fn config() -> Config {
        toml::from_str("[platform]\nurl = \"http://127.0.0.1:9/events\"\n").unwrap()
    }

    fn ingest(key: &str, person: PersonFields, entity: EntityKind, parent: Option<&str>) -> Ingest {
        let record = NormalizedRecord {
            entity,
            source_key: key.into(),
            person,
            fields: Default::default(),
            person_ref: parent.map(str::to_string),
            updated_at: None,
            field_rejects: vec![],
        };
        Ingest::Ok {
            record: Box::new(record),
            deleted: false,
            raw: format!("{{\"k\":\"{key}\"}}"),
        }
    }

    /// Card holders `h0`, `h1`, … each followed in record order by a transaction `t0`,
    /// `t1`, … that points at it: a transaction's chunk comes right after its holder's.
    fn holders_then_their_transactions(dir: &std::path::Path, pairs: usize) -> Store {
        let mut store = Store::open(&dir.join("s.db")).unwrap();
        let holders = StreamRef {
            source: "a",
            stream: "holders",
            run_id: 1,
            link_stream: None,
            full_refresh: false,
            entity: EntityKind::CardAccount,
            run_started: "2000-01-01T00:00:00.000Z",
        };
        let transactions = StreamRef {
            stream: "tx",
            link_stream: Some("holders"),
            entity: EntityKind::CardTransaction,
            ..holders.clone()
        };
        for i in 0..pairs {
            let holder = PersonFields {
                name: Some(["张三", "李四", "王五", "赵六"][i % 4].into()),
                phone: Some(format!("1380013{i:04}")),
                ..Default::default()
            };
            let key = format!("h{i}");
            let h = ingest(&key, holder, EntityKind::CardAccount, None);
            store.ingest(&holders, &[h], None).unwrap();
            let t = ingest(
                &format!("t{i}"),
                PersonFields::default(),
                EntityKind::CardTransaction,
                Some(&key),
            );
            store.ingest(&transactions, &[t], None).unwrap();
        }
        store
    }

    /// The whole store in the activity phase alone: read ahead `chunk` at a time, then the
    /// writer's own pass from the start (as `reconcile` runs it).
    fn activity_phase_with(
        store: &mut Store,
        chunk: usize,
        between_chunks: impl FnMut(),
    ) -> (Prefetched, ReconcileStats) {
        let config = config();
        let codec = store.codec().clone();
        let mut run = RunState {
            ranking: Ranking::new(false),
            followers_dirty: false,
        };
        let mut stats = ReconcileStats::default();
        let done = activity_phase(
            store,
            &codec,
            &config,
            &mut run,
            &mut stats,
            chunk,
            between_chunks,
        )
        .unwrap();
        each_chunk(|at| {
            let tx = store.conn_mut().transaction()?;
            let next = run_chunk(&tx, &codec, &config, Phase::Rest, at, &mut run, &mut stats)?;
            tx.commit()?;
            Ok(next)
        })
        .unwrap();
        assert_eq!(
            count(store, "SELECT count(*) FROM source_records WHERE dirty = 1"),
            0,
            "every record handled"
        );
        (done, stats)
    }

    fn count(store: &Store, sql: &str) -> i64 {
        store.conn().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Transactions whose person is not their holder's, or whose domain row disagrees.
    const MISLINKED: &str = "SELECT count(*) FROM source_records t
         JOIN source_records h ON h.stream = 'holders' AND h.source_key = 'h' || substr(t.source_key, 2)
         LEFT JOIN card_transactions d ON d.record_id = t.id
         WHERE t.stream = 'tx' AND (t.person_id IS NULL OR t.person_id IS NOT h.person_id
                                    OR d.person_id IS NOT h.person_id)";

    #[test]
    fn parents_read_before_a_holder_was_linked_are_looked_up_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = holders_then_their_transactions(dir.path(), 8);
        // Three records a chunk, (h0 t0 h1) (t1 h2 t2) …: the reader reads a chunk while the
        // writer links the holders of its first transaction, and a holder linked in a chunk
        // is the parent of the transaction after it in the same chunk.
        let (done, stats) = activity_phase_with(&mut store, 3, || {});
        assert_eq!(done.chunks, 6, "{done:?}");
        assert_eq!(done.parents_again, 5, "{done:?}");
        assert_eq!(done.stopped, None);
        assert_eq!(stats.records, 16);
        assert_eq!(count(&store, MISLINKED), 0);
        assert_eq!(
            count(
                &store,
                "SELECT count(DISTINCT person_id) FROM source_records"
            ),
            8
        );
    }

    #[test]
    fn a_write_by_another_connection_stops_the_reader_and_the_writer_reads_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = holders_then_their_transactions(dir.path(), 6);
        let path = store.path().to_path_buf();
        let mut chunks = 0;
        // After the first chunk (h0, t0) the reader has read, or is reading, (h1, t1): a
        // `review` or a sync in another process now deletes t1.
        let (done, _) = activity_phase_with(&mut store, 2, || {
            chunks += 1;
            if chunks == 1 {
                let other = rusqlite::Connection::open(&path).unwrap();
                other
                    .execute(
                        "UPDATE source_records SET deleted = 1 WHERE source_key = 't1'",
                        [],
                    )
                    .unwrap();
            }
        });
        assert_eq!(done.chunks, 1, "{done:?}");
        assert_eq!(
            done.stopped,
            Some("another connection wrote to the store"),
            "{done:?}"
        );
        // t1 got no live domain row; every other transaction follows its holder.
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM card_transactions d JOIN source_records s ON s.id = d.record_id
                 WHERE s.source_key = 't1' AND d.deleted = 0"
            ),
            0
        );
        assert_eq!(
            count(&store, &format!("{MISLINKED} AND t.source_key != 't1'")),
            0
        );
    }

    #[test]
    fn a_phase_of_one_chunk_starts_no_reader() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = holders_then_their_transactions(dir.path(), 3);
        let (done, stats) = activity_phase_with(&mut store, 6, || {});
        assert_eq!(done.chunks, 0);
        assert_eq!(done.stopped, None);
        assert_eq!(stats.records, 6, "the writer's own pass handled them");
        assert_eq!(count(&store, MISLINKED), 0);
    }
}
