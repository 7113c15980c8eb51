//! What the fuzz targets share: decoding input the way the agent reads host files, and
//! the contract every line-based parser keeps about the lines it skips.
use std::borrow::Cow;

use census_agent::parse::Skipped;

/// The input as the collectors read host and image files: UTF-8, invalid bytes replaced.
pub fn text(data: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// Lines as the host-file parsers number them (`str::lines`: LF or CRLF), at least 1.
pub fn lines(text: &str) -> usize {
    text.lines().count().max(1)
}

/// Lines as the Java parsers number them (`Properties.load`, manifests): CRLF, a lone
/// CR and LF each end a line. At least 1.
pub fn java_lines(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut count = 0;
    let mut at = 0;
    while at < bytes.len() {
        count += 1;
        match bytes[at..].iter().position(|&b| b == b'\r' || b == b'\n') {
            Some(end) => {
                at += end + 1;
                if bytes[at - 1] == b'\r' && bytes.get(at) == Some(&b'\n') {
                    at += 1;
                }
            }
            None => break,
        }
    }
    count.max(1)
}

/// Panics when a parser reports a skipped line that a text of `lines` lines does not have.
pub fn assert_skipped_within(lines: usize, skipped: &[Skipped]) {
    for skipped in skipped {
        assert!(
            (1..=lines).contains(&skipped.line),
            "skipped line {} of a {lines}-line text ({})",
            skipped.line,
            skipped.reason
        );
    }
}
