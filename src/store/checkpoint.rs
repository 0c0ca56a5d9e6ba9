//! Background WAL checkpoints.
//!
//! In WAL mode a commit appends the pages it changed to the WAL; a checkpoint copies them back
//! into the database file and syncs it. SQLite's automatic checkpoint runs inside the COMMIT
//! of whichever connection crossed the threshold, so the writer (ingest, reconcile) stood
//! still while tens of MiB were copied and two fsyncs completed: a fifth of ingest's writer
//! time on a first load (BENCHMARKS.md). Here the writer's connection only reports its WAL
//! length after each commit (`sqlite3_wal_hook`), and a thread with a connection of its own
//! copies the pages, on the other core, in PASSIVE mode: it never blocks the writer nor waits
//! for it.
//!
//! The WAL starts over from its beginning only when a write transaction begins with every
//! committed page already copied, which a busy writer seldom finds. So once the WAL reaches
//! [`Thresholds::writer_frames`] the writer copies what the thread has left (little) itself,
//! right after its commit, and its next transaction restarts the WAL. The same rule bounds the
//! WAL if the thread falls behind or fails.
//!
//! Crash safety is SQLite's own: a checkpoint copies committed pages only and may stop at any
//! point; the next one, or the next open, finishes it.

use std::os::raw::{c_char, c_int, c_void};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{ffi, Connection};

/// When checkpoints run, in WAL frames (one page each, 4 KiB).
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Frames not yet copied after which the thread copies them (~16 MiB). Fewer, larger
    /// checkpoints copy a page that is rewritten commit after commit once, not once a commit;
    /// smaller ones leave less for the writer at its limit.
    pub batch_frames: i64,
    /// WAL length at which the writer copies the rest itself after its commit (~128 MiB; at
    /// most twice that).
    pub writer_frames: i64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            batch_frames: 4_096,
            writer_frames: 32_768,
        }
    }
}

impl Thresholds {
    /// The WAL's size on disk that the writer's rule usually keeps it under (frames and their
    /// headers).
    pub fn wal_bytes(&self) -> i64 {
        self.writer_frames * (4096 + 24)
    }
}

#[derive(Debug, Default)]
struct State {
    /// Frames in the WAL after the latest commit (the hook's report).
    wal_frames: i64,
    /// Frames of the current WAL already copied into the database.
    copied: i64,
    /// Bumped whenever the WAL is seen to start over, so that a copy count taken from an
    /// older WAL is not applied to the new one.
    generation: u64,
    /// The thread is copying.
    running: bool,
    /// The writer waits to copy the rest itself: the thread starts no other copy meanwhile.
    writer_turn: bool,
    /// The thread's last copy found another checkpoint under way (the writer's): wait for the
    /// next commit rather than retry at once.
    yielded: bool,
    stop: bool,
    /// Copies made by the thread and by the writer (for tests and the debug log).
    thread_copies: u64,
    writer_copies: u64,
}

impl State {
    fn wants_copy(&self, t: &Thresholds) -> bool {
        !self.yielded && !self.writer_turn && self.wal_frames - self.copied >= t.batch_frames
    }
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    idle: Condvar,
    thresholds: Thresholds,
}

impl Shared {
    /// The state, even if a thread panicked while holding it (every field stays meaningful).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state once the thread is not copying.
    fn idle<'s>(&'s self, mut s: MutexGuard<'s, State>) -> MutexGuard<'s, State> {
        while s.running {
            s = self.idle.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        s
    }
}

/// The checkpoint thread of one store and the hook on the store's connection that feeds it.
/// Dropping it (or [`Checkpointer::detach`]) removes the hook and stops the thread.
pub struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// The connection the hook is installed on, until it is removed.
    hooked: Option<Hooked>,
}

/// The raw handle of the connection carrying the hook (only used to remove it).
struct Hooked(*mut ffi::sqlite3);

// SAFETY: the handle is only used to remove the hook, through `&mut Checkpointer` (detach or
// drop), which `start`'s contract makes happen while the connection is open and not in use
// elsewhere; a rusqlite `Connection` is itself `Send`.
unsafe impl Send for Hooked {}
// SAFETY: `&Checkpointer` never touches the handle.
unsafe impl Sync for Hooked {}

/// What the checkpointer has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointStats {
    pub wal_frames: i64,
    pub copied: i64,
    pub thread_copies: u64,
    pub writer_copies: u64,
}

impl Checkpointer {
    /// Starts the thread for the database at `path` and installs the commit hook on `conn`
    /// (the store's connection), replacing SQLite's automatic checkpoint. The thread opens its
    /// own connection when there is first something to copy.
    ///
    /// # Safety
    ///
    /// `conn` must stay open until the returned Checkpointer is detached
    /// ([`Checkpointer::detach`]) or dropped, whichever comes first: both remove the hook
    /// through `conn`'s handle, so neither may run after `conn` was closed, nor while `conn`
    /// is in use on another thread. (Detach before closing `conn`; a Checkpointer dropped
    /// while `conn` lives leaves no hook behind.)
    pub unsafe fn start(conn: &Connection, path: &Path, thresholds: Thresholds) -> Checkpointer {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            idle: Condvar::new(),
            thresholds,
        });
        let thread = {
            let shared = shared.clone();
            let path = path.to_path_buf();
            std::thread::Builder::new()
                .name("wal-checkpoint".into())
                .spawn(move || run(&shared, &path))
                .map_err(|e| tracing::warn!(error = %e, "cannot start the WAL checkpoint thread; the writer checkpoints instead"))
                .ok()
        };
        // SAFETY: the hook's argument points into `shared`, which this Checkpointer keeps
        // alive; `detach` and `drop` remove the hook before that can end (the caller keeps
        // `conn` open until then). The hook runs on the thread that commits, while the
        // connection is in use by it.
        unsafe {
            ffi::sqlite3_wal_hook(
                conn.handle(),
                Some(on_commit),
                Arc::as_ptr(&shared) as *mut c_void,
            );
        }
        Checkpointer {
            shared,
            thread,
            hooked: Some(Hooked(conn.handle())),
        }
    }

    /// Removes the hook from `conn` and stops the thread (after the copy it is making).
    /// `conn` is the connection `start` was given.
    pub fn detach(&mut self, conn: &Connection) {
        // SAFETY: reads the handle only, to compare it.
        debug_assert!(self
            .hooked
            .as_ref()
            .is_none_or(|h| h.0 == unsafe { conn.handle() }));
        self.unhook();
        self.stop_thread();
    }

    /// Removes the hook, once.
    fn unhook(&mut self) {
        if let Some(Hooked(db)) = self.hooked.take() {
            // SAFETY: `db` is the connection `start` installed the hook on, still open and not
            // in use elsewhere (`start`'s contract); passing no hook removes ours.
            unsafe {
                ffi::sqlite3_wal_hook(db, None, std::ptr::null_mut());
            }
        }
    }

    fn stop_thread(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Waits until the thread is not copying, then copies everything committed on `conn`
    /// that no reader still needs: afterwards the database file holds every commit (the WAL
    /// may still hold the pages). A reader in another process that holds an old snapshot
    /// keeps the pages after it in the WAL; this does not wait for it.
    pub fn catch_up(&self, conn: &Connection) -> rusqlite::Result<()> {
        for _ in 0..1_000 {
            drop(self.shared.idle(self.shared.lock()));
            let (busy, log, copied) = passive_checkpoint(conn)?;
            if busy == 0 {
                let mut s = self.shared.lock();
                s.wal_frames = log.max(0);
                s.copied = copied.max(0);
                return Ok(());
            }
            // The thread started another copy meanwhile: wait for it and try again.
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    pub fn stats(&self) -> CheckpointStats {
        let s = self.shared.lock();
        CheckpointStats {
            wal_frames: s.wal_frames,
            copied: s.copied,
            thread_copies: s.thread_copies,
            writer_copies: s.writer_copies,
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Not detached: the hook would point into `shared`, freed with this Checkpointer.
        self.unhook();
        self.stop_thread();
    }
}

/// The WAL hook: runs on the committing thread after every commit, with the WAL's length in
/// frames. Never fails the commit.
unsafe extern "C" fn on_commit(
    arg: *mut c_void,
    db: *mut ffi::sqlite3,
    name: *const c_char,
    frames: c_int,
) -> c_int {
    // SAFETY: `arg` is the `Shared` that `Checkpointer::start` registered and keeps alive
    // until it removes this hook.
    let shared = unsafe { &*(arg as *const Shared) };
    let frames = i64::from(frames);
    {
        let mut s = shared.lock();
        if frames < s.wal_frames {
            // The WAL started over.
            s.copied = 0;
            s.generation += 1;
        }
        s.wal_frames = frames;
        s.yielded = false;
        if s.wants_copy(&shared.thresholds) {
            shared.wake.notify_one();
        }
        // At its limit the writer copies the rest itself (what the thread has not: half a
        // batch on average), so that its next transaction finds the WAL fully copied and
        // starts it over. While the thread copies, the writer tries again at its next commit
        // (the copy lock is taken); past twice its limit it waits for that copy to end, so a
        // writer that commits faster than the thread copies still bounds the WAL.
        if frames < shared.thresholds.writer_frames
            || (s.running && frames < 2 * shared.thresholds.writer_frames)
        {
            return ffi::SQLITE_OK;
        }
        s.writer_turn = true;
        drop(shared.idle(s));
    }
    let (mut log, mut copied) = (0, 0);
    // SAFETY: `db` and `name` are the ones SQLite handed this hook; checkpointing from the
    // hook is what SQLite's own automatic checkpoint does.
    let rc = unsafe {
        ffi::sqlite3_wal_checkpoint_v2(
            db,
            name,
            ffi::SQLITE_CHECKPOINT_PASSIVE,
            &mut log,
            &mut copied,
        )
    };
    let mut s = shared.lock();
    s.writer_turn = false;
    if rc == ffi::SQLITE_OK {
        s.copied = i64::from(copied);
        s.writer_copies += 1;
    }
    ffi::SQLITE_OK
}

/// The thread: waits for enough uncopied frames, copies them, and again, until stopped.
fn run(shared: &Shared, path: &Path) {
    let mut conn: Option<Connection> = None;
    let mut warned = false;
    loop {
        let generation = {
            let mut s = shared.lock();
            while !s.stop && !s.wants_copy(&shared.thresholds) {
                s = shared.wake.wait(s).unwrap_or_else(|p| p.into_inner());
            }
            if s.stop {
                return;
            }
            s.running = true;
            s.generation
        };
        let result = open(&mut conn, path).and_then(passive_checkpoint);
        let mut s = shared.lock();
        s.running = false;
        match result {
            Ok((0, _, copied)) if copied >= 0 => {
                if s.generation == generation {
                    s.copied = s.copied.max(copied);
                }
                s.thread_copies += 1;
            }
            Ok(_) => s.yielded = true,
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %e, store = %path.display(), "WAL checkpoint thread failed; it retries at later commits and the writer copies meanwhile");
                    warned = true;
                }
                // Do not spin on a lasting error: the writer's own copies bound the WAL.
                s.yielded = true;
                conn = None;
            }
        }
        drop(s);
        shared.idle.notify_all();
    }
}

/// `PRAGMA wal_checkpoint(PASSIVE)`: (1 if another checkpoint held the lock, frames in the
/// WAL, frames copied).
fn passive_checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
}

fn open<'c>(conn: &'c mut Option<Connection>, path: &Path) -> rusqlite::Result<&'c Connection> {
    if let Some(c) = conn {
        return Ok(c);
    }
    let c = Connection::open(path)?;
    // The same sync rule as the store's: the WAL is synced before a copy and the database
    // after it.
    c.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn.insert(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(path: &Path) -> Connection {
        let c = Connection::open(path).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.pragma_update(None, "synchronous", "NORMAL").unwrap();
        c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
            .unwrap();
        c
    }

    /// Commits `n` transactions of `rows` rows of ~4 KiB each (about one WAL frame a row).
    fn commit_many(c: &Connection, from: i64, n: i64, rows: i64) {
        for i in 0..n {
            c.execute_batch("BEGIN").unwrap();
            for j in 0..rows {
                c.execute(
                    "INSERT INTO t (id, v) VALUES (?1, zeroblob(4000))",
                    [from + i * rows + j],
                )
                .unwrap();
            }
            c.execute_batch("COMMIT").unwrap();
        }
    }

    /// The WAL's length on disk, in frames (a page and its header each).
    fn wal_frames(path: &Path) -> i64 {
        let bytes = std::fs::metadata(path.with_extension("db-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
        bytes as i64 / (4096 + 24)
    }

    fn start(c: &Connection, path: &Path, t: Thresholds) -> Checkpointer {
        // SAFETY: every test detaches or drops the Checkpointer before closing `c`.
        unsafe { Checkpointer::start(c, path, t) }
    }

    /// The argument of the WAL hook installed on `c` (null: none), read by replacing the hook
    /// with none (SQLite returns the previous argument).
    fn hook_arg(c: &Connection) -> *mut c_void {
        // SAFETY: `c` is open; the returned pointer is compared, never dereferenced.
        unsafe { ffi::sqlite3_wal_hook(c.handle(), None, std::ptr::null_mut()) }
    }

    fn rows(c: &Connection) -> i64 {
        c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn the_thread_copies_and_the_wal_stays_near_the_writer_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let c = writer(&path);
        let t = Thresholds {
            batch_frames: 64,
            writer_frames: 256,
        };
        let mut cp = start(&c, &path, t);
        commit_many(&c, 0, 200, 20);
        cp.catch_up(&c).unwrap();
        let stats = cp.stats();
        assert!(stats.thread_copies > 0, "{stats:?}");
        assert_eq!(stats.copied, stats.wal_frames, "{stats:?}");
        // ~4,000 frames were written; the WAL started over instead of holding them all.
        let frames = wal_frames(&path);
        assert!(frames <= 2 * t.writer_frames + 64, "WAL of {frames} frames");
        cp.detach(&c);
        drop(c);
        let c = Connection::open(&path).unwrap();
        assert_eq!(rows(&c), 4_000);
    }

    #[test]
    fn when_the_thread_fails_the_writer_bounds_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let c = writer(&path);
        let t = Thresholds {
            batch_frames: 32,
            writer_frames: 128,
        };
        // The thread cannot open its connection (no such directory).
        let mut cp = start(&c, &dir.path().join("gone/s.db"), t);
        commit_many(&c, 0, 100, 20);
        let stats = cp.stats();
        assert_eq!(stats.thread_copies, 0, "{stats:?}");
        assert!(stats.writer_copies > 5, "{stats:?}");
        let frames = wal_frames(&path);
        assert!(frames <= 2 * t.writer_frames + 64, "WAL of {frames} frames");
        cp.detach(&c);
        assert_eq!(rows(&c), 2_000);
    }

    #[test]
    fn detach_stops_the_thread_and_commits_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let c = writer(&path);
        let mut cp = start(&c, &path, Thresholds::default());
        commit_many(&c, 0, 3, 5);
        cp.detach(&c);
        assert!(cp.thread.is_none());
        // No hook any more: commits neither call into the gone state nor fail.
        commit_many(&c, 100, 3, 5);
        assert_eq!(rows(&c), 30);
    }

    #[test]
    fn dropping_the_checkpointer_removes_its_hook() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let c = writer(&path);
        let cp = start(&c, &path, Thresholds::default());
        commit_many(&c, 0, 3, 5);
        drop(cp);
        // Before, the hook stayed, pointing into the freed state: the next commit on `c`
        // would have read freed memory.
        assert!(
            hook_arg(&c).is_null(),
            "the WAL hook outlived its Checkpointer"
        );
        commit_many(&c, 100, 3, 5);
        assert_eq!(rows(&c), 30);
    }

    #[test]
    fn detach_then_drop_removes_the_hook_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let c = writer(&path);
        let mut cp = start(&c, &path, Thresholds::default());
        assert!(!hook_arg_peek(&c).is_null());
        cp.detach(&c);
        assert!(hook_arg(&c).is_null());
        drop(c);
        // The connection is closed: dropping must not touch its handle again.
        drop(cp);
    }

    /// The hook's argument, leaving the hook in place.
    fn hook_arg_peek(c: &Connection) -> *mut c_void {
        let arg = hook_arg(c);
        if !arg.is_null() {
            // SAFETY: re-installs the hook that was there, with its own argument.
            unsafe { ffi::sqlite3_wal_hook(c.handle(), Some(on_commit), arg) };
        }
        arg
    }
}
