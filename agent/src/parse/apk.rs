//! Alpine's package database (`/lib/apk/db/installed`): blank-line-separated blocks
//! of `X:value` lines, one block per installed package.
use super::{Parsed, numbered_lines};

/// One package block of the installed database.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApkPackage {
    /// `P:`
    pub name: String,
    /// `V:`
    pub version: String,
    /// `A:`
    pub arch: String,
    /// `o:`, the source package the binary package was built from (empty when absent).
    pub origin: String,
    /// `L:`
    pub license: String,
    /// `m:`
    pub maintainer: String,
    /// `I:`, in bytes (0 when absent or not a number).
    pub installed_size: u64,
}

/// Parses the whole database. Blocks without `P:` or `V:` are skipped (reported at
/// the block's first line), as are lines that are not `X:value`. Fields other than
/// the ones [`ApkPackage`] keeps (file lists, checksums, dependencies) are ignored
/// without being stored, so huge file lists cost no memory.
pub fn parse(text: &str) -> Parsed<ApkPackage> {
    let mut parsed = Parsed::default();
    let mut block = Block::default();
    for (number, line) in numbered_lines(text) {
        if line.trim().is_empty() {
            block.finish(&mut parsed);
            continue;
        }
        if block.first_line == 0 {
            block.first_line = number;
        }
        match field(line) {
            Some((key, value)) => block.set(key, value),
            None => parsed.skip(
                number,
                format!("expected 'X:value', found {:?}", truncate(line)),
            ),
        }
    }
    block.finish(&mut parsed);
    parsed
}

/// Splits `X:value` into its one-letter key and value.
fn field(line: &str) -> Option<(u8, &str)> {
    let bytes = line.as_bytes();
    let key = *bytes.first()?;
    // An ASCII key followed by ':' makes byte 2 a char boundary.
    if !key.is_ascii_alphanumeric() || bytes.get(1) != Some(&b':') {
        return None;
    }
    Some((key, line.get(2..)?))
}

#[derive(Default)]
struct Block {
    first_line: usize,
    has_name: bool,
    has_version: bool,
    package: ApkPackage,
}

impl Block {
    fn set(&mut self, key: u8, value: &str) {
        let value = value.trim();
        let package = &mut self.package;
        match key {
            b'P' => {
                self.has_name = !value.is_empty();
                package.name = value.to_string();
            }
            b'V' => {
                self.has_version = !value.is_empty();
                package.version = value.to_string();
            }
            b'A' => package.arch = value.to_string(),
            b'o' => package.origin = value.to_string(),
            b'L' => package.license = value.to_string(),
            b'm' => package.maintainer = value.to_string(),
            b'I' => package.installed_size = value.parse().unwrap_or(0),
            _ => {}
        }
    }

    fn finish(&mut self, parsed: &mut Parsed<ApkPackage>) {
        let block = std::mem::take(self);
        if block.first_line == 0 {
            return;
        }
        if !block.has_name {
            parsed.skip(block.first_line, "package block has no P (name) field");
        } else if !block.has_version {
            parsed.skip(
                block.first_line,
                format!(
                    "package {} has no V (version) field",
                    truncate(&block.package.name)
                ),
            );
        } else {
            parsed.items.push(block.package);
        }
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
    use crate::parse::test_support::xorshift;

    const INSTALLED: &str = "\
C:Q1Ei7oVmzR6x6Fk9p2h9kGSJ0dbnU=
P:musl
V:1.2.4_git20230717-r4
A:x86_64
S:407325
I:667648
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Timo Teräs <timo.teras@iki.fi>
t:1705937389
c:f93af038c3be40bd3e7bab5ed1b33ca7e5ad2e4d
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1Zyjg8L5ZCCRvBXTeKNFpC/Cd/O0=
R:libc.musl-x86_64.so.1
a:0:0:777
Z:Q1q41c+VK/g+uLYl5UPVP2/WvZBqk=

P:libcrypto3
V:3.1.4-r5
A:x86_64
I:4620288
L:Apache-2.0
o:openssl
m:Ariadne Conill <ariadne@dereferenced.org>
D:so:libc.musl-x86_64.so.1
p:so:libcrypto.so.3=3
r:libcrypto1.1
F:etc
F:etc/ssl
M:0:0:755
R:openssl.cnf

P:alpine-baselayout-data
V:3.4.3-r2
A:x86_64
";

    #[test]
    fn parses_blocks_and_ignores_other_fields() {
        let parsed = parse(INSTALLED);
        assert_eq!(parsed.skipped, vec![]);
        assert_eq!(parsed.items.len(), 3);
        assert_eq!(
            parsed.items[0],
            ApkPackage {
                name: "musl".into(),
                version: "1.2.4_git20230717-r4".into(),
                arch: "x86_64".into(),
                origin: "musl".into(),
                license: "MIT".into(),
                maintainer: "Timo Teräs <timo.teras@iki.fi>".into(),
                installed_size: 667648,
            }
        );
        assert_eq!(parsed.items[1].origin, "openssl");
        assert_eq!(parsed.items[1].installed_size, 4620288);
        // Missing optional fields stay empty.
        let data = &parsed.items[2];
        assert_eq!(data.name, "alpine-baselayout-data");
        assert_eq!((data.origin.as_str(), data.installed_size), ("", 0));
    }

    #[test]
    fn crlf_extra_blank_lines_and_no_trailing_newline() {
        let parsed = parse("\r\n\r\nP:a\r\nV:1-r0\r\nI:12\r\n\r\n\r\n\r\nP:b\r\nV:2-r0");
        assert_eq!(parsed.skipped, vec![]);
        let got: Vec<_> = parsed
            .items
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str(), p.installed_size))
            .collect();
        assert_eq!(got, [("a", "1-r0", 12), ("b", "2-r0", 0)]);
    }

    #[test]
    fn huge_file_lists_are_ignored() {
        let mut text = String::from("P:big\nV:1\n");
        for i in 0..50_000 {
            text.push_str(&format!("R:file{i}\nZ:Q1abc=\n"));
        }
        let parsed = parse(&text);
        assert_eq!(parsed.skipped, vec![]);
        assert_eq!(parsed.items.len(), 1);
    }

    #[test]
    fn malformed_lines_and_blocks_are_skipped_with_their_line() {
        let text = "\
P:good
V:1
not a field
I:notanumber

V:2
A:x86_64

P:noversion
A:x86_64

P:
V:3
";
        let parsed = parse(text);
        let names: Vec<_> = parsed.items.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["good"]);
        assert_eq!(parsed.items[0].installed_size, 0);
        let lines: Vec<_> = parsed.skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, [3, 6, 9, 12], "{:?}", parsed.skipped);
        assert!(parsed.skipped[0].reason.contains("not a field"));
        assert!(parsed.skipped[1].reason.contains("no P (name)"));
        assert!(parsed.skipped[2].reason.contains("noversion"));
        assert!(parsed.skipped[3].reason.contains("no P (name)"));
    }

    #[test]
    fn garbage_does_not_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let alphabet = b"PVAoLmI:\n\r \xc3\xa9\xff0";
        for _ in 0..2000 {
            let mut bytes = Vec::new();
            for _ in 0..(xorshift(&mut state) % 64) {
                let pick = xorshift(&mut state) as usize;
                bytes.push(alphabet[pick % alphabet.len()]);
            }
            let text = String::from_utf8_lossy(&bytes);
            let parsed = parse(&text);
            let lines = text.lines().count().max(1);
            assert!(
                parsed
                    .skipped
                    .iter()
                    .all(|s| s.line >= 1 && s.line <= lines)
            );
        }
    }
}
