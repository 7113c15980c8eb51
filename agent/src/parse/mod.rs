//! Pure parsers for the host files the collectors read. Each takes the file's text
//! and returns what it understood plus the lines it had to skip, so a malformed
//! line costs one warning, never the whole file.
pub mod apache_conf;
pub mod apk;
pub mod cgroup;
pub mod crontab;
pub mod dpkg;
pub mod go_buildinfo;
pub mod group;
pub mod java_manifest;
pub mod java_properties;
pub mod key_value;
pub mod nginx_conf;
pub mod npm_package;
pub mod passwd;
pub mod proc_modules;
pub mod proc_net;
pub mod python_metadata;
pub mod rpm_header;
pub mod shadow;
pub mod sudoers;
pub mod systemd_unit;

/// The result of parsing a file: the items understood and the lines skipped.
#[derive(Debug)]
pub struct Parsed<T> {
    pub items: Vec<T>,
    pub skipped: Vec<Skipped>,
}

impl<T> Default for Parsed<T> {
    fn default() -> Self {
        Parsed {
            items: Vec::new(),
            skipped: Vec::new(),
        }
    }
}

impl<T> Parsed<T> {
    pub(crate) fn skip(&mut self, line: usize, reason: impl Into<String>) {
        self.skipped.push(Skipped {
            line,
            reason: reason.into(),
        });
    }

    /// Logs one warning per skipped line, naming the file and the line, and returns the items.
    pub fn warn_skipped(self, path: &std::path::Path) -> Vec<T> {
        for skipped in &self.skipped {
            tracing::warn!(
                path = %path.display(),
                line = skipped.line,
                reason = %skipped.reason,
                "skipped malformed input"
            );
        }
        self.items
    }
}

/// A line (1-based) a parser could not understand, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub line: usize,
    pub reason: String,
}

/// Lines of `text` numbered from 1, with a trailing `\r` (CRLF files) removed.
pub(crate) fn numbered_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.strip_suffix('\r').unwrap_or(line)))
}

/// Pseudo-random input for the parsers' garbage tests.
#[cfg(test)]
pub(crate) mod test_support {
    /// xorshift64: a fast, repeatable sequence from a seed.
    pub fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    /// Text that looks enough like the real files to reach deep into the parsers:
    /// fragments of each format glued with arbitrary characters.
    fn host_file_text() -> impl Strategy<Value = String> {
        let fragment = prop_oneof![
            Just("Package: a\n".to_string()),
            Just("Status: install ok installed\n".to_string()),
            Just(" continuation\n".to_string()),
            Just("\n".to_string()),
            Just("0100007F:1F90 ".to_string()),
            Just("0A ".to_string()),
            Just("ext4 1 0 - Live 0x0 (OE)\n".to_string()),
            Just("KEY=\"value\\".to_string()),
            Just("root:x:0:0::/:/bin/sh\n".to_string()),
            Just("[Service]\nExecStart=/bin/x \\\n".to_string()),
            Just("*/5 * * * * root /bin/true\n".to_string()),
            Just("%sudo ALL=(ALL:ALL) ALL\n".to_string()),
            Just("alice:$6$x$y:19000:0:99999:7:::\n".to_string()),
            Just("server { listen 80; }\n".to_string()),
            Just("<VirtualHost *:80>\n".to_string()),
            Just("P:musl\nV:1.2\n".to_string()),
            ".{0,12}",
        ];
        proptest::collection::vec(fragment, 0..40).prop_map(|parts| parts.concat())
    }

    proptest! {
        #[test]
        fn parsers_never_panic_and_report_lines_that_exist(text in host_file_text()) {
            let lines = text.lines().count().max(1);
            let skipped: Vec<usize> = [
                super::dpkg::parse_status(&text).skipped,
                super::proc_net::parse(&text).skipped,
                super::proc_modules::parse(&text).skipped,
                super::key_value::parse(&text).skipped,
                super::passwd::parse(&text).skipped,
                super::group::parse(&text).skipped,
                super::shadow::parse(&text).skipped,
                super::sudoers::parse(&text).skipped,
                super::systemd_unit::parse(&text).1,
                super::crontab::parse(&text, true).skipped,
                super::crontab::parse(&text, false).skipped,
                super::apk::parse(&text).skipped,
                super::java_properties::parse(&text).skipped,
                super::apache_conf::parse(&text).skipped,
            ]
            .into_iter()
            .flatten()
            .map(|s| s.line)
            .collect();
            let _ = super::cgroup::container_of(&text);
            let _ = super::nginx_conf::parse(&text);
            let _ = super::python_metadata::parse(&text);
            let _ = super::npm_package::parse(&text);
            let _ = super::java_manifest::parse(&text);
            for line in skipped {
                prop_assert!(line >= 1 && line <= lines, "line {} of {}", line, lines);
            }
        }
    }
}
