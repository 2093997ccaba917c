//! The access log's writer: each thread appends its lines to its own
//! buffer (no shared lock, no system call per request), and one thread
//! writes every buffer out to stderr every [`FLUSH_EVERY`], so a line
//! reaches the log within about that. A buffer that grows past
//! [`HIGH_WATER`] (a burst faster than the flushes) is written by its own
//! thread at once, so memory stays bounded.
//!
//! A clean shutdown loses nothing: [`flush`] runs when `server::run` has
//! drained every request (and again before the process exits), after the
//! last line was appended. Only a kill -9 loses the lines of the last
//! [`FLUSH_EVERY`]. The other log lines still go through tracing to stderr
//! at once; an access line may follow them by up to [`FLUSH_EVERY`] (each
//! carries its own timestamp).

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use thread_local::ThreadLocal;

use crate::proxy::{AccessFormat, AccessSink};

/// How often buffered lines are written out.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// A thread's buffer past this size is written at once, by that thread.
const HIGH_WATER: usize = 256 * 1024;

/// The buffers of every thread that logged a request.
struct Buffers {
    format: AccessFormat,
    per_thread: ThreadLocal<Mutex<Vec<u8>>>,
}

impl Buffers {
    /// Writes out and empties every thread's buffer. Each is swapped for an
    /// empty one of the same capacity, so a thread's buffer never regrows.
    fn flush(&self) {
        let mut spare = Vec::new();
        for buf in self.per_thread.iter() {
            {
                let mut buf = buf.lock().unwrap_or_else(|p| p.into_inner());
                if buf.is_empty() {
                    continue;
                }
                spare.reserve(buf.capacity());
                std::mem::swap(&mut *buf, &mut spare);
            }
            write_out(&spare);
            spare.clear();
        }
    }
}

/// Whole lines to stderr in one write where the OS allows (stderr's lock
/// keeps them apart from tracing's lines). A closed or full stderr loses
/// them, as it would tracing's.
fn write_out(lines: &[u8]) {
    if !lines.is_empty() {
        let _ = std::io::stderr().lock().write_all(lines);
    }
}

struct Sink(Arc<Buffers>);

impl AccessSink for Sink {
    fn format(&self) -> AccessFormat {
        self.0.format
    }

    fn append(&self, line: &mut dyn FnMut(&mut Vec<u8>)) {
        let cell = self
            .0
            .per_thread
            .get_or(|| Mutex::new(Vec::with_capacity(16 * 1024)));
        let mut buf = cell.lock().unwrap_or_else(|p| p.into_inner());
        line(&mut buf);
        if buf.len() >= HIGH_WATER {
            let lines = std::mem::take(&mut *buf);
            drop(buf);
            write_out(&lines);
        }
    }
}

/// The installed writer, for [`flush`].
static INSTALLED: OnceLock<Arc<Buffers>> = OnceLock::new();

/// Sends the process's access lines to stderr through per-thread buffers
/// written every [`FLUSH_EVERY`], in `format`. Once per process (by the
/// command that sets up logging); false if a writer is installed already.
pub fn install(format: AccessFormat) -> bool {
    let buffers = Arc::new(Buffers {
        format,
        per_thread: ThreadLocal::new(),
    });
    if INSTALLED.set(buffers.clone()).is_err()
        || !crate::proxy::set_sink(Box::new(Sink(buffers.clone())))
    {
        return false;
    }
    let flusher = std::thread::Builder::new()
        .name("countersign-log".into())
        .spawn(move || loop {
            std::thread::sleep(FLUSH_EVERY);
            buffers.flush();
        });
    if let Err(e) = flusher {
        // Lines still reach stderr: at the high-water mark and at shutdown.
        tracing::warn!(error = %e, "cannot start the access log's writer thread; access lines are written in bursts");
    }
    true
}

/// Writes out every buffered access line now (shutdown).
pub fn flush() {
    if let Some(b) = INSTALLED.get() {
        b.flush();
    }
}
