//! The daemon's log lines and their writer.
//!
//! `LineFormat` writes `2026-11-24T20:34:57.123456Z  INFO message k=v ...`
//! (the layout of `tracing_subscriber`'s default format), with the date
//! part of the timestamp reused within a second and no per-field styling:
//! the `rx`/`tx` lines of every request are the agent's hottest code under
//! load. Control characters in messages and values (a peer's reqid may hold
//! any text) are escaped, so that a line stays one line.
//!
//! `BufferedStderr`: lines go into a buffer in memory, written out by a
//! small thread every few milliseconds (and at once for warnings and
//! errors). Under load the lines of thousands of requests cost a few
//! `write` calls instead of one each, no thread is woken per line, and no
//! thread that logs waits while the buffer is being written out.

use std::cell::Cell;
use std::fmt::{self, Write as _};
use std::io::{self, Stderr, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// `n` of a thing, for a sentence: "1 node", "3 nodes".
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The daemon's line format (see the module's documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct LineFormat {
    /// Colour the level, for a terminal.
    pub ansi: bool,
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write_timestamp(&mut writer, SystemTime::now())?;
        writer.write_str(level_text(*event.metadata().level(), self.ansi))?;
        let mut fields = Fields {
            out: Escaping(&mut writer),
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
}

fn level_text(level: Level, ansi: bool) -> &'static str {
    match (level, ansi) {
        (Level::ERROR, false) => " ERROR ",
        (Level::WARN, false) => "  WARN ",
        (Level::INFO, false) => "  INFO ",
        (Level::DEBUG, false) => " DEBUG ",
        (Level::TRACE, false) => " TRACE ",
        (Level::ERROR, true) => " \x1b[31mERROR\x1b[0m ",
        (Level::WARN, true) => "  \x1b[33mWARN\x1b[0m ",
        (Level::INFO, true) => "  \x1b[32mINFO\x1b[0m ",
        (Level::DEBUG, true) => " \x1b[34mDEBUG\x1b[0m ",
        (Level::TRACE, true) => " \x1b[35mTRACE\x1b[0m ",
    }
}

thread_local! {
    /// The second last formatted, and its `YYYY-MM-DDTHH:MM:SS.` text.
    static DATE: Cell<(u64, [u8; 20])> = const { Cell::new((u64::MAX, [0; 20])) };
}

/// Writes `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC).
fn write_timestamp(w: &mut impl fmt::Write, now: SystemTime) -> fmt::Result {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (cached, mut text) = DATE.get();
    if cached != secs {
        text = date_text(secs);
        DATE.set((secs, text));
    }
    // The text is ASCII digits and separators, built by `date_text`.
    let date = std::str::from_utf8(&text).map_err(|_| fmt::Error)?;
    w.write_str(date)?;
    let micros = since.subsec_micros();
    let mut digits = *b"000000Z";
    let mut m = micros;
    for d in digits[..6].iter_mut().rev() {
        *d = b'0' + (m % 10) as u8;
        m /= 10;
    }
    w.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)
}

/// `YYYY-MM-DDTHH:MM:SS.` for seconds since the Unix epoch (UTC), by the
/// days-to-civil algorithm of the proleptic Gregorian calendar.
pub(crate) fn date_text(secs: u64) -> [u8; 20] {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (hour, minute, second) = (rem / 3600, rem / 60 % 60, rem % 60);
    // Shift the epoch to 0000-03-01, so that leap days end each cycle.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = (yoe + era * 400 + u64::from(month <= 2)).min(9999);
    let mut out = *b"0000-00-00T00:00:00.";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, hour);
    put(14, 2, minute);
    put(17, 2, second);
    out
}

/// Passes text through, with control characters escaped.
struct Escaping<'w, 'a>(&'w mut Writer<'a>);

impl fmt::Write for Escaping<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if !s.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return self.0.write_str(s);
        }
        for c in s.chars() {
            if c.is_control() {
                write!(self.0, "{}", c.escape_default())?;
            } else {
                self.0.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// Writes an event's fields: the message bare, the others as `name=value`,
/// separated by spaces.
struct Fields<'w, 'a> {
    out: Escaping<'w, 'a>,
    first: bool,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn start(&mut self, field: &Field) -> bool {
        if self.result.is_err() {
            return false;
        }
        if !self.first {
            self.result = self.out.write_char(' ');
        }
        self.first = false;
        if field.name() != "message" {
            self.result = self
                .result
                .and_then(|()| self.out.write_str(field.name()))
                .and_then(|()| self.out.write_char('='));
        }
        self.result.is_ok()
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.start(field) {
            self.result = if field.name() == "message" {
                self.out.write_str(value)
            } else {
                write!(self.out, "{value:?}")
            };
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.start(field) {
            self.result = write!(self.out, "{value}");
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.start(field) {
            self.result = write!(self.out, "{value}");
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.start(field) {
            self.result = self.out.write_str(if value { "true" } else { "false" });
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.start(field) {
            self.result = write!(self.out, "{value:?}");
        }
    }
}

/// How often buffered lines are written out.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);

/// Buffered lines beyond which the writer writes them out itself.
const HIGH_WATER: usize = 64 * 1024;

/// Lines wait in `lines`; whoever writes them out holds `out` (so that
/// buffers go out in the order they were taken) and swaps `lines` with its
/// spare buffer first, so that the agent's threads never wait for a write
/// to the log, only for that swap.
struct Shared {
    lines: Mutex<Vec<u8>>,
    out: Mutex<(Stderr, Vec<u8>)>,
}

impl Shared {
    fn write_out(&self) -> io::Result<()> {
        let mut out = self
            .out
            .lock()
            .map_err(|_| io::Error::other("log output poisoned"))?;
        let (stderr, spare) = &mut *out;
        {
            let mut lines = self
                .lines
                .lock()
                .map_err(|_| io::Error::other("log buffer poisoned"))?;
            std::mem::swap(&mut *lines, spare);
        }
        let written = stderr.write_all(spare);
        spare.clear();
        written
    }
}

/// A `MakeWriter` for `tracing_subscriber` that buffers stderr.
#[derive(Clone)]
pub struct BufferedStderr {
    shared: Arc<Shared>,
}

/// Writes out what is left when dropped, and stops the flushing thread.
pub struct FlushGuard {
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.shared.write_out();
    }
}

impl BufferedStderr {
    /// The writer, and the guard that flushes at the end.
    pub fn start() -> (BufferedStderr, FlushGuard) {
        let shared = Arc::new(Shared {
            lines: Mutex::new(Vec::new()),
            out: Mutex::new((io::stderr(), Vec::new())),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (sh, st) = (Arc::clone(&shared), Arc::clone(&stop));
        // Without the thread, lines still go out when the buffer fills and
        // at the end; only their promptness would suffer.
        let _ = std::thread::Builder::new()
            .name("log-flusher".into())
            .spawn(move || {
                while !st.load(Ordering::Relaxed) {
                    std::thread::sleep(FLUSH_INTERVAL);
                    let _ = sh.write_out();
                }
            });
        (
            BufferedStderr {
                shared: Arc::clone(&shared),
            },
            FlushGuard { shared, stop },
        )
    }
}

/// One event's writer: appends to the buffer; writes it out after a
/// warning or an error, or when it has grown large.
pub struct EventWriter {
    shared: Arc<Shared>,
    urgent: bool,
}

impl Write for EventWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let full = {
            let mut lines = self
                .shared
                .lines
                .lock()
                .map_err(|_| io::Error::other("log buffer poisoned"))?;
            lines.extend_from_slice(buf);
            lines.len() >= HIGH_WATER
        };
        if self.urgent || full {
            self.shared.write_out()?;
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
            shared: Arc::clone(&self.shared),
            urgent: true,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> EventWriter {
        EventWriter {
            shared: Arc::clone(&self.shared),
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_follow_the_gregorian_calendar() {
        for (secs, text) in [
            (0, "1970-01-01T00:00:00."),
            (951_868_799, "2000-02-29T23:59:59."),
            (1_709_210_096, "2024-02-29T12:34:56."),
            (4_107_542_399, "2100-02-28T23:59:59."),
            (4_107_542_400, "2100-03-01T00:00:00."),
            (1_795_552_497, "2026-11-24T20:34:57."),
            (253_402_300_799, "9999-12-31T23:59:59."),
        ] {
            assert_eq!(std::str::from_utf8(&date_text(secs)).unwrap(), text);
        }
    }

    #[test]
    fn timestamps_carry_microseconds_and_the_cached_date_follows_the_clock() {
        let mut s = String::new();
        let t = UNIX_EPOCH + Duration::new(1_795_552_497, 7_000);
        write_timestamp(&mut s, t).unwrap();
        s.push('|');
        write_timestamp(&mut s, t + Duration::from_micros(999_993)).unwrap();
        s.push('|');
        write_timestamp(&mut s, t + Duration::from_secs(86_400)).unwrap();
        assert_eq!(
            s,
            "2026-11-24T20:34:57.000007Z|2026-11-24T20:34:58.000000Z|2026-11-25T20:34:57.000007Z"
        );
    }

    /// Formats the events `emit` makes, as the daemon would.
    fn lines(ansi: bool, emit: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let out = Arc::clone(&sink.0);
        let subscriber = tracing_subscriber::fmt()
            .event_format(LineFormat { ansi })
            .with_writer(move || sink.clone())
            .with_max_level(Level::DEBUG)
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = out.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn lines_have_the_timestamp_level_message_and_fields() {
        let peer = 7u64;
        let reqid = "r-1";
        let out = lines(false, || {
            tracing::info!(%peer, %reqid, n = 3, ok = true, s = "text", "rx {}_request", "get_nodes");
            tracing::warn!("bare");
        });
        let mut it = out.lines();
        let first = it.next().unwrap();
        let (ts, rest) = first.split_at(27);
        assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
        assert_eq!(
            rest,
            "  INFO rx get_nodes_request peer=7 reqid=r-1 n=3 ok=true s=\"text\""
        );
        assert_eq!(&it.next().unwrap()[27..], "  WARN bare");
        assert_eq!(it.next(), None);
    }

    #[test]
    fn control_characters_from_peers_stay_on_one_line() {
        let reqid = "a\nINFO forged\x1b[31m";
        let out = lines(false, || {
            tracing::info!(%reqid, "request {reqid} is already in flight");
        });
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(!out.contains('\x1b'), "{out}");
        assert!(
            out.contains(r"request a\nINFO forged\u{1b}[31m is already"),
            "{out}"
        );
    }

    #[test]
    fn a_terminal_gets_a_coloured_level() {
        let out = lines(true, || tracing::error!("boom"));
        assert_eq!(&out[27..], " \x1b[31mERROR\x1b[0m boom\n");
    }
}
