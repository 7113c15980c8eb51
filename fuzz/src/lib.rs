//! What the fuzz targets share: decoding input the way the agent reads host files, and
//! the contract every line-based parser keeps about the lines it skips.
use std::borrow::Cow;

use census_agent::parse::Skipped;

/// The input as the collectors read host and image files: UTF-8, invalid bytes replaced.
pub fn text(data: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// Panics when a parser reports a skipped line that `text` does not have.
pub fn assert_skipped_lines_exist(text: &str, skipped: &[Skipped]) {
    let lines = text.lines().count().max(1);
    for skipped in skipped {
        assert!(
            (1..=lines).contains(&skipped.line),
            "skipped line {} of a {lines}-line text ({})",
            skipped.line,
            skipped.reason
        );
    }
}
