//! dpkg's status database (`/var/lib/dpkg/status`): RFC 822-style paragraphs, one per package.
use super::{Parsed, numbered_lines};

/// One package paragraph of the status file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DpkgPackage {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// Source package name; the binary name when the paragraph has no Source field.
    pub source_name: String,
    /// Source version; the binary version when Source gives none.
    pub source_version: String,
    /// The third word of `Status:` (`installed`, `config-files`, `half-configured`, ...).
    pub status: String,
    pub maintainer: String,
    /// `Installed-Size` is in KiB.
    pub installed_size_kib: u64,
}

impl DpkgPackage {
    /// Whether the package's files are on disk: anything but `not-installed` and
    /// `config-files` (removed, configuration kept).
    pub fn files_present(&self) -> bool {
        !matches!(self.status.as_str(), "not-installed" | "config-files")
    }
}

/// Parses the whole status file. Paragraphs without Package, Version or a
/// three-word Status are skipped (reported at the paragraph's first line), as
/// are lines that are neither `Field: value` nor continuations.
pub fn parse_status(text: &str) -> Parsed<DpkgPackage> {
    let mut parsed = Parsed::default();
    let mut paragraph = Paragraph::default();
    for (number, line) in numbered_lines(text) {
        if line.trim().is_empty() {
            paragraph.finish(&mut parsed);
            continue;
        }
        if paragraph.first_line == 0 {
            paragraph.first_line = number;
        }
        if line.starts_with([' ', '\t']) {
            // Continuation of a multi-line field (Description, Conffiles, ...): the
            // fields we keep are single-line, so there is nothing to append.
            if paragraph.fields.is_empty() {
                parsed.skip(number, "continuation line before any field");
            }
            continue;
        }
        match line.split_once(':') {
            Some((name, value)) if !name.is_empty() && !name.contains(char::is_whitespace) => {
                paragraph
                    .fields
                    .push((name.to_string(), value.trim().to_string()));
            }
            _ => parsed.skip(
                number,
                format!("expected 'Field: value', found {:?}", truncate(line)),
            ),
        }
    }
    paragraph.finish(&mut parsed);
    parsed
}

#[derive(Default)]
struct Paragraph {
    first_line: usize,
    fields: Vec<(String, String)>,
}

impl Paragraph {
    fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn finish(&mut self, parsed: &mut Parsed<DpkgPackage>) {
        let paragraph = std::mem::take(self);
        if paragraph.fields.is_empty() {
            return;
        }
        match paragraph.package() {
            Ok(package) => parsed.items.push(package),
            Err(reason) => parsed.skip(paragraph.first_line, reason),
        }
    }

    fn package(&self) -> Result<DpkgPackage, String> {
        let name = self
            .get("Package")
            .filter(|v| !v.is_empty())
            .ok_or("paragraph has no Package field")?;
        let status = self
            .get("Status")
            .ok_or_else(|| format!("package {name} has no Status field"))?;
        let words: Vec<&str> = status.split_whitespace().collect();
        let [_want, _flag, state] = words[..] else {
            return Err(format!("package {name} has a malformed Status {status:?}"));
        };
        let version = self.get("Version").unwrap_or_default();
        if version.is_empty() && !matches!(state, "not-installed" | "config-files") {
            return Err(format!("package {name} ({state}) has no Version field"));
        }
        let (source_name, source_version) = match self.get("Source") {
            // "Source: glibc (2.36-9)" when the source version differs from the binary's.
            Some(source) => match source.split_once(' ') {
                Some((source, rest)) => (
                    source.to_string(),
                    rest.trim()
                        .trim_start_matches('(')
                        .trim_end_matches(')')
                        .to_string(),
                ),
                None => (source.to_string(), version.to_string()),
            },
            None => (name.to_string(), version.to_string()),
        };
        Ok(DpkgPackage {
            name: name.to_string(),
            version: version.to_string(),
            arch: self.get("Architecture").unwrap_or_default().to_string(),
            source_name,
            source_version,
            status: state.to_string(),
            maintainer: self.get("Maintainer").unwrap_or_default().to_string(),
            installed_size_kib: self
                .get("Installed-Size")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        })
    }
}

fn truncate(line: &str) -> &str {
    match line.char_indices().nth(80) {
        Some((at, _)) => &line[..at],
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "\
Package: libc6
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 12987
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u4
Depends: libgcc-s1
Conffiles:
 /etc/ld.so.conf.d/x86_64-linux-gnu.conf d4e7a7b88a71b5ffd9e2644e71a0cfab
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system.
 .
 This package includes shared versions of the standard C library.

Package: libssl3
Status: install ok installed
Architecture: i386
Source: openssl (3.0.11-1~deb12u2)
Version: 3.0.11-1~deb12u2+b1
Description: Secure Sockets Layer toolkit - shared libraries

Package: oldpkg
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0-1
Conffiles:
 /etc/oldpkg.conf 0123456789abcdef0123456789abcdef

Package: ghost
Status: purge ok not-installed
Architecture: amd64

Package: half
Status: install reinstreq half-configured
Architecture: all
Version: 0.9
";

    #[test]
    fn parses_paragraphs_continuations_and_states() {
        let parsed = parse_status(STATUS);
        assert_eq!(parsed.skipped, vec![]);
        let names: Vec<_> = parsed.items.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["libc6", "libssl3", "oldpkg", "ghost", "half"]);

        let libc = &parsed.items[0];
        assert_eq!(libc.version, "2.36-9+deb12u4");
        assert_eq!(libc.arch, "amd64");
        assert_eq!(libc.source_name, "glibc");
        assert_eq!(libc.source_version, "2.36-9+deb12u4");
        assert_eq!(libc.installed_size_kib, 12987);
        assert_eq!(
            libc.maintainer,
            "GNU Libc Maintainers <debian-glibc@lists.debian.org>"
        );
        assert!(libc.files_present());

        let ssl = &parsed.items[1];
        assert_eq!(
            (ssl.source_name.as_str(), ssl.source_version.as_str()),
            ("openssl", "3.0.11-1~deb12u2")
        );
        assert_eq!(ssl.arch, "i386");

        let present: Vec<_> = parsed
            .items
            .iter()
            .filter(|p| p.files_present())
            .map(|p| &p.name)
            .collect();
        assert_eq!(present, ["libc6", "libssl3", "half"]);
        assert_eq!(parsed.items[4].status, "half-configured");
    }

    #[test]
    fn crlf_and_missing_trailing_newline_are_accepted() {
        let parsed = parse_status(
            "Package: a\r\nStatus: install ok installed\r\nVersion: 1\r\nArchitecture: all",
        );
        assert_eq!(parsed.skipped, vec![]);
        assert_eq!(parsed.items[0].version, "1");
        assert_eq!(parsed.items[0].arch, "all");
    }

    #[test]
    fn malformed_lines_and_paragraphs_are_skipped_with_their_line() {
        let text = "\
Package: good
Status: install ok installed
Version: 1
this line has no colon
Architecture: amd64

Status: install ok installed
Version: 2

Package: badstatus
Status: installed
Version: 3

 orphan continuation
Package: noversion
Status: install ok installed
";
        let parsed = parse_status(text);
        let names: Vec<_> = parsed.items.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["good"]);
        assert_eq!(parsed.items[0].arch, "amd64");
        let lines: Vec<_> = parsed.skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, [4, 7, 10, 14, 14], "{:?}", parsed.skipped);
        assert!(parsed.skipped[0].reason.contains("this line has no colon"));
        assert!(parsed.skipped[2].reason.contains("malformed Status"));
        assert!(parsed.skipped[4].reason.contains("noversion"));
    }

    #[test]
    fn binary_garbage_does_not_panic() {
        let garbage = String::from_utf8_lossy(&[0xff, 0x00, b':', b'\n', b' ', 0x80, b'\n', b':'])
            .into_owned();
        let parsed = parse_status(&garbage);
        assert!(parsed.items.is_empty());
        assert!(!parsed.skipped.is_empty());
    }
}
