//! The daemon's log writer: lines go into a buffer in memory, written out
//! by a small thread every few milliseconds (and at once for warnings and
//! errors). Under load the `rx`/`tx` lines of thousands of requests cost a
//! few `write` calls instead of one each, and no thread is woken per line.

use std::io::{self, BufWriter, Stderr, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::Level;
use tracing_subscriber::fmt::MakeWriter;

/// How often buffered lines are written out.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);

type Shared = Arc<Mutex<BufWriter<Stderr>>>;

/// A `MakeWriter` for `tracing_subscriber` that buffers stderr.
#[derive(Clone)]
pub struct BufferedStderr {
    out: Shared,
}

/// Flushes what is left when dropped, and stops the flushing thread.
pub struct FlushGuard {
    out: Shared,
    stop: Arc<AtomicBool>,
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Ok(mut w) = self.out.lock() {
            let _ = w.flush();
        }
    }
}

impl BufferedStderr {
    /// The writer, and the guard that flushes at the end.
    pub fn start() -> (BufferedStderr, FlushGuard) {
        let out: Shared = Arc::new(Mutex::new(BufWriter::with_capacity(
            64 * 1024,
            io::stderr(),
        )));
        let stop = Arc::new(AtomicBool::new(false));
        let (o, s) = (Arc::clone(&out), Arc::clone(&stop));
        // Without the thread, lines still go out when the buffer fills and
        // at the end; only their promptness would suffer.
        let _ = std::thread::Builder::new()
            .name("log-flusher".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    std::thread::sleep(FLUSH_INTERVAL);
                    if let Ok(mut w) = o.lock() {
                        let _ = w.flush();
                    }
                }
            });
        (
            BufferedStderr {
                out: Arc::clone(&out),
            },
            FlushGuard { out, stop },
        )
    }
}

/// One event's writer: appends to the buffer; flushes after a warning or
/// an error.
pub struct EventWriter {
    out: Shared,
    urgent: bool,
}

impl Write for EventWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut w = self
            .out
            .lock()
            .map_err(|_| io::Error::other("log buffer poisoned"))?;
        w.write_all(buf)?;
        if self.urgent {
            w.flush()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferedStderr {
    type Writer = EventWriter;

    fn make_writer(&'a self) -> EventWriter {
        EventWriter {
            out: Arc::clone(&self.out),
            urgent: true,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> EventWriter {
        EventWriter {
            out: Arc::clone(&self.out),
            urgent: *meta.level() <= Level::WARN,
        }
    }
}
