//! What commands print. A reader that goes away (`community-sync status | head -1`, a pager
//! quit early) ends the output quietly, as it does for `ls | head`: the rest is dropped, the
//! command finishes its work and exits with the code it would have had (for `status`, the
//! health). `println!` would panic on the closed pipe instead (exit 101).
//!
//! Any other write error (a full disk under `status > file`) also stops the output; `main`
//! then reports it and exits 2, since the output the caller asked for is incomplete.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Set once stdout's reader is gone or writing failed: nothing more is written.
static STDOUT_DONE: AtomicBool = AtomicBool::new(false);
/// A write error other than a closed pipe, reported by `main`.
static STDOUT_ERROR: Mutex<Option<String>> = Mutex::new(None);

/// Writes formatted text to stdout (see the module doc for a closed pipe).
pub fn stdout_fmt(args: std::fmt::Arguments<'_>) {
    if STDOUT_DONE.load(Ordering::Relaxed) {
        return;
    }
    let mut o = io::stdout().lock();
    if let Err(e) = o.write_fmt(args).and_then(|_| o.flush()) {
        STDOUT_DONE.store(true, Ordering::Relaxed);
        if e.kind() != io::ErrorKind::BrokenPipe {
            if let Ok(mut slot) = STDOUT_ERROR.lock() {
                slot.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// Writes formatted text to stderr; a closed stderr is ignored (messages only).
pub fn stderr_fmt(args: std::fmt::Arguments<'_>) {
    let mut e = io::stderr().lock();
    let _ = e.write_fmt(args);
}

/// Whether stdout's reader went away (so there is no point in producing more).
pub fn stdout_closed() -> bool {
    STDOUT_DONE.load(Ordering::Relaxed)
}

/// A write error on stdout other than a closed pipe, if one happened.
pub fn stdout_error() -> Option<String> {
    STDOUT_ERROR.lock().ok().and_then(|s| s.clone())
}

/// `println!` for command output: quiet on a closed pipe.
macro_rules! outln {
    () => { $crate::cli::out::stdout_fmt(format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::cli::out::stdout_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for command output: quiet on a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::out::stdout_fmt(format_args!($($arg)*)) };
}

/// `eprintln!` that never panics on a closed stderr.
macro_rules! errln {
    () => { $crate::cli::out::stderr_fmt(format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::cli::out::stderr_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {errln, out, outln};
