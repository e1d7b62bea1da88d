//! The last lines of a node's output, as a failure quotes them: Zeek's
//! error lines kept whole and first, the warnings before them only where
//! they fit.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// How much of a file's end a tail reads: enough for a screen of Zeek's
/// warnings before its error, little enough to read on the actor's thread.
const WINDOW: u64 = 64 * 1024;

/// The last `lines` lines of a file (reading at most its last 64 KiB).
pub fn tail(path: &Path, lines: usize) -> String {
    tail_of(path, 0, lines).0
}

/// At most `lines` lines of a node's output file from byte `from` on (the
/// latest launch's), chosen by [`failure_lines`], as the node wrote them:
/// with the final newline when the file ends with one.
pub fn output_tail(path: &Path, from: u64, lines: usize) -> String {
    match tail_of(path, from, lines) {
        (text, true) if !text.is_empty() => text + "\n",
        (text, _) => text,
    }
}

/// What a file holds from byte `from` on (at most 16 KiB of it, the
/// start): one launch's lines of a node's appended output.
pub fn read_from(path: &Path, from: u64) -> String {
    const MAX: u64 = 16 * 1024;
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let _ = f.seek(SeekFrom::Start(from));
    let mut buf = Vec::new();
    let _ = f.take(MAX).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// The chosen lines, joined, and whether the file ended with a newline.
fn tail_of(path: &Path, from: u64, lines: usize) -> (String, bool) {
    let Ok(mut f) = std::fs::File::open(path) else {
        return (String::new(), false);
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(WINDOW).max(from);
    let _ = f.seek(SeekFrom::Start(start));
    let mut buf = Vec::new();
    let _ = f.take(WINDOW).read_to_end(&mut buf);
    let mut text: &[u8] = &buf;
    // Started inside a line: its end is not a line of its own.
    if start > from {
        match text.iter().position(|b| *b == b'\n') {
            Some(nl) => text = &text[nl + 1..],
            None => text = &[],
        }
    }
    let text = String::from_utf8_lossy(text);
    let all: Vec<&str> = text.lines().collect();
    (failure_lines(&all, lines).join("\n"), buf.ends_with(b"\n"))
}

/// At most `max` of `lines`, in their order: the last ones, except that
/// when there are more than fit, Zeek's warnings (`warning in …`,
/// `warning: …`) give way to every other line, so that errors reported
/// before a run of warnings are still quoted, each line whole.
pub fn failure_lines<'a>(lines: &[&'a str], max: usize) -> Vec<&'a str> {
    if lines.len() <= max {
        return lines.to_vec();
    }
    let warning = |l: &str| l.starts_with("warning in ") || l.starts_with("warning: ");
    let mut keep = vec![false; lines.len()];
    let mut room = max;
    // The last lines that are not warnings first, then the warnings
    // nearest the end into what room is left.
    for pass_warnings in [false, true] {
        for (i, l) in lines.iter().enumerate().rev() {
            if room == 0 {
                break;
            }
            if warning(l) == pass_warnings && !keep[i] {
                keep[i] = true;
                room -= 1;
            }
        }
    }
    lines
        .iter()
        .zip(keep)
        .filter_map(|(l, k)| k.then_some(*l))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        let text: String = (0..50).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&p, text).expect("write");
        let t = tail(&p, 20);
        assert_eq!(t.lines().count(), 20);
        assert!(t.starts_with("line 30"));
        assert_eq!(tail(&dir.path().join("none"), 20), "");
    }

    /// Zeek's own order, printed by `zeek -a` on a script with two errors
    /// at its top and 25 deprecated globals below them.
    #[test]
    fn errors_before_a_run_of_warnings_are_kept_and_the_warnings_fill_the_rest() {
        let mut lines = vec![
            "error in ./y.zeek, line 1: \"redef\" used but not previously defined (no_such_thing)".to_owned(),
            "error in ./y.zeek, line 2: assignment of non-arithmetic value to arithmetic (count/string) (x = a)".to_owned(),
        ];
        lines.extend((0..25).map(|i| {
            format!(
                "warning in ./y.zeek, line {}: deprecated (g{i}): old",
                28 + i
            )
        }));
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let picked = failure_lines(&refs, 20);
        assert_eq!(picked.len(), 20);
        assert_eq!(picked[..2], refs[..2], "the errors first, whole");
        assert_eq!(picked[2..], refs[9..], "then the last 18 warnings");
        // When everything fits, nothing is dropped or reordered.
        assert_eq!(failure_lines(&refs[..5], 20), refs[..5]);
    }

    #[test]
    fn when_errors_alone_overflow_the_last_of_them_are_kept() {
        let lines: Vec<String> = (0..30)
            .map(|i| format!("error in x, line {i}: bad"))
            .collect();
        let mut refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        refs.insert(3, "warning: something");
        let picked = failure_lines(&refs, 20);
        assert_eq!(picked, refs[11..]);
    }

    #[test]
    fn a_tail_that_starts_inside_a_line_drops_the_piece() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("stderr");
        let long = "x".repeat(WINDOW as usize);
        std::fs::write(&p, format!("{long}\nerror in a.zeek, line 1: bad\n")).expect("write");
        assert_eq!(output_tail(&p, 0, 20), "error in a.zeek, line 1: bad\n");
    }
}
