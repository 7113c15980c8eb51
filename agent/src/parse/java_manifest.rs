//! JAR manifests (`META-INF/MANIFEST.MF`): the main section's `Name: value`
//! attributes, with values wrapped onto continuation lines that start with a space.
use super::Parsed;

/// Parses the main section (up to the first blank line) into its attributes in
/// file order, names as written. A line starting with a single space continues the
/// previous value (joined without that space); whole values are then trimmed.
/// Lines ending in CRLF, CR or LF are all accepted. Lines that are not
/// `Name: value` are skipped.
pub fn parse(text: &str) -> Parsed<(String, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parsed: Parsed<(String, String)> = Parsed::default();
    for (number, line) in lines_any_ending(text) {
        if line.is_empty() {
            break;
        }
        if let Some(rest) = line.strip_prefix(' ') {
            match parsed.items.last_mut() {
                Some((_, value)) => value.push_str(rest),
                None => parsed.skip(number, "continuation line before any attribute"),
            }
            continue;
        }
        match line.split_once(':') {
            Some((name, value)) if is_name(name) => {
                // The spec asks for exactly ": "; accept a missing space too.
                let value = value.strip_prefix(' ').unwrap_or(value);
                parsed.items.push((name.to_string(), value.to_string()));
            }
            Some((name, _)) => parsed.skip(
                number,
                format!("invalid attribute name {:?}", truncate(name)),
            ),
            None => parsed.skip(
                number,
                format!("expected 'Name: value', found {:?}", truncate(line)),
            ),
        }
    }
    for (_, value) in &mut parsed.items {
        let trimmed = value.trim();
        if trimmed.len() != value.len() {
            *value = trimmed.to_string();
        }
    }
    parsed
}

fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Lines of `text` numbered from 1, split at CRLF, CR or LF (Java's line endings).
pub(super) fn lines_any_ending(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut rest = text;
    let mut number = 0;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        number += 1;
        let (line, after) = rest.split_at(rest.find(['\r', '\n']).unwrap_or(rest.len()));
        rest = after
            .strip_prefix("\r\n")
            .or_else(|| after.strip_prefix('\r'))
            .or_else(|| after.strip_prefix('\n'))
            .unwrap_or(after);
        Some((number, line))
    })
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

    fn pairs(parsed: &Parsed<(String, String)>) -> Vec<(&str, &str)> {
        parsed
            .items
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn parses_the_main_section_with_continuations() {
        let text = "Manifest-Version: 1.0\r\n\
Created-By: Maven JAR Plugin 3.3.0\r\n\
Build-Jdk-Spec: 17\r\n\
Bundle-SymbolicName: com.fasterxml.jackson.core.jackson-databind\r\n\
Export-Package: com.fasterxml.jackson.databind;version=\"2.15.2\";uses:=\"c\r\n \
om.fasterxml.jackson.core\",com.fasterxml.jackson.databind.annotation\r\n\
Implementation-Title: jackson-databind\r\n\
Implementation-Version: 2.15.2\r\n\
\r\n\
Name: com/fasterxml/jackson/databind/\r\n\
Implementation-Version: 9.9.9\r\n";
        let parsed = parse(text);
        assert_eq!(parsed.skipped, vec![]);
        assert_eq!(
            pairs(&parsed),
            [
                ("Manifest-Version", "1.0"),
                ("Created-By", "Maven JAR Plugin 3.3.0"),
                ("Build-Jdk-Spec", "17"),
                (
                    "Bundle-SymbolicName",
                    "com.fasterxml.jackson.core.jackson-databind"
                ),
                (
                    "Export-Package",
                    "com.fasterxml.jackson.databind;version=\"2.15.2\";uses:=\"com.fasterxml.jackson.core\",com.fasterxml.jackson.databind.annotation"
                ),
                ("Implementation-Title", "jackson-databind"),
                ("Implementation-Version", "2.15.2"),
            ]
        );
    }

    #[test]
    fn cr_only_lf_only_bom_empty_values_and_no_trailing_newline() {
        let cr = parse("Manifest-Version: 1.0\rMain-Class: a.B\r  two spaces\rX:\r\rY: z");
        assert_eq!(
            pairs(&cr),
            [
                ("Manifest-Version", "1.0"),
                ("Main-Class", "a.B two spaces"),
                ("X", "")
            ]
        );
        let lf = parse("\u{feff}Manifest-Version: 1.0\nSpecification-Title:Foo ");
        assert_eq!(
            pairs(&lf),
            [("Manifest-Version", "1.0"), ("Specification-Title", "Foo")]
        );
        assert!(parse("").items.is_empty());
        assert!(parse("\r\nA: b\r\n").items.is_empty());
    }

    #[test]
    fn malformed_lines_are_skipped_with_their_line() {
        let parsed =
            parse(" orphan\nGood: 1\nno colon here\nbad name: 2\n\tTabbed: 3\nAlso-Good: 4\n");
        assert_eq!(pairs(&parsed), [("Good", "1"), ("Also-Good", "4")]);
        let lines: Vec<_> = parsed.skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, [1, 3, 4, 5]);
        assert!(parsed.skipped[0].reason.contains("continuation"));
        assert!(parsed.skipped[1].reason.contains("no colon here"));
        assert!(parsed.skipped[2].reason.contains("bad name"));
    }

    #[test]
    fn line_splitting_counts_every_ending() {
        let lines: Vec<_> = lines_any_ending("a\r\nb\rc\n\nd").collect();
        assert_eq!(lines, [(1, "a"), (2, "b"), (3, "c"), (4, ""), (5, "d")]);
    }

    #[test]
    fn garbage_does_not_panic() {
        let mut state = 0x5851_f42d_4c95_7f2d_u64;
        let alphabet = b"Name-: \r\n\t\xc3\xa9\xff";
        for _ in 0..2000 {
            let mut bytes = Vec::new();
            for _ in 0..(xorshift(&mut state) % 64) {
                let pick = xorshift(&mut state) as usize;
                bytes.push(alphabet[pick % alphabet.len()]);
            }
            let text = String::from_utf8_lossy(&bytes);
            let parsed = parse(&text);
            let lines = lines_any_ending(&text).count();
            assert!(
                parsed
                    .skipped
                    .iter()
                    .all(|s| s.line >= 1 && s.line <= lines)
            );
        }
    }
}
