//! Java `.properties` files (`META-INF/maven/*/*/pom.properties`), read the way
//! `java.util.Properties.load` reads them.
use super::Parsed;
use super::java_manifest::lines_any_ending;

/// Parses `key=value`, `key: value` and `key value` entries in file order, with
/// `#`/`!` comment lines, trailing-backslash continuations (leading whitespace of
/// the continuation dropped) and backslash escapes (`\n`, `\t`, `\uXXXX`, `\=`, ...).
/// An entry with a malformed `\uXXXX` escape is skipped, reported at its first line.
pub fn parse(text: &str) -> Parsed<(String, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parsed = Parsed::default();
    // The logical line being joined from continuations, and its first line number.
    let mut pending: Option<(usize, String)> = None;
    for (number, line) in lines_any_ending(text) {
        let line = line.trim_start_matches(is_blank);
        let (start, mut logical) = match pending.take() {
            Some(joined) => joined,
            None if line.is_empty() || line.starts_with(['#', '!']) => continue,
            None => (number, String::new()),
        };
        logical.push_str(line);
        // Counted on this line only: what it continues ends in an even number of
        // backslashes (the odd one was dropped), so the parity is the same, and a
        // long run of backslash-only lines costs linear time, not quadratic.
        let trailing = line.len() - line.trim_end_matches('\\').len();
        if trailing % 2 == 1 {
            logical.pop();
            pending = Some((start, logical));
        } else {
            entry(&mut parsed, start, &logical);
        }
    }
    if let Some((start, logical)) = pending {
        entry(&mut parsed, start, &logical);
    }
    parsed
}

fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0c')
}

/// Splits a logical line into key and value as `Properties.load` does, and unescapes both.
fn entry(parsed: &mut Parsed<(String, String)>, line: usize, logical: &str) {
    let bytes = logical.as_bytes();
    let mut key_end = bytes.len();
    let mut value_start = bytes.len();
    let mut has_separator = false;
    let mut escaped = false;
    for (at, &b) in bytes.iter().enumerate() {
        if !escaped && matches!(b, b'=' | b':' | b' ' | b'\t' | b'\x0c') {
            key_end = at;
            value_start = at + 1;
            has_separator = matches!(b, b'=' | b':');
            break;
        }
        escaped = b == b'\\' && !escaped;
    }
    // Whitespace around the separator, and one '=' or ':' after whitespace.
    while let Some(&b) = bytes.get(value_start) {
        match b {
            b' ' | b'\t' | b'\x0c' => {}
            b'=' | b':' if !has_separator => has_separator = true,
            _ => break,
        }
        value_start += 1;
    }
    // The boundaries sit on ASCII bytes, so both are char boundaries.
    let key = logical.get(..key_end).unwrap_or_default();
    let value = logical.get(value_start..).unwrap_or_default();
    match (unescape(key), unescape(value)) {
        (Ok(key), Ok(value)) => parsed.items.push((key, value)),
        (Err(reason), _) => parsed.skip(line, format!("{reason} in key")),
        (_, Err(reason)) => parsed.skip(line, format!("{reason} in value")),
    }
}

fn unescape(raw: &str) -> Result<String, String> {
    if !raw.contains('\\') {
        return Ok(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    // A UTF-16 high surrogate from `\uD8xx`, waiting for its low half.
    let mut high: Option<u32> = None;
    while let Some(c) = chars.next() {
        let decoded = match c {
            '\\' => match chars.next() {
                Some('u') => {
                    let hex: String = chars.by_ref().take(4).collect();
                    let unit = match u32::from_str_radix(&hex, 16) {
                        Ok(unit)
                            if hex.len() == 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) =>
                        {
                            unit
                        }
                        _ => return Err(format!("malformed \\uxxxx escape \\u{hex}")),
                    };
                    if let Some(first) = high.take() {
                        if (0xdc00..0xe000).contains(&unit) {
                            let joined = 0x10000 + ((first - 0xd800) << 10) + (unit - 0xdc00);
                            out.push(char::from_u32(joined).unwrap_or('\u{fffd}'));
                            continue;
                        }
                        out.push('\u{fffd}');
                    }
                    if (0xd800..0xdc00).contains(&unit) {
                        high = Some(unit);
                        continue;
                    }
                    char::from_u32(unit).unwrap_or('\u{fffd}')
                }
                Some('t') => '\t',
                Some('n') => '\n',
                Some('r') => '\r',
                Some('f') => '\x0c',
                Some(other) => other,
                // A lone backslash at the very end: Java drops it.
                None => break,
            },
            other => other,
        };
        if high.take().is_some() {
            out.push('\u{fffd}');
        }
        out.push(decoded);
    }
    if high.is_some() {
        out.push('\u{fffd}');
    }
    Ok(out)
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
    fn parses_pom_properties() {
        let text = "\
#Generated by Maven
#Tue Jun 13 10:12:52 UTC 2023
artifactId=jackson-databind
groupId=com.fasterxml.jackson.core
version=2.15.2
";
        let parsed = parse(text);
        assert_eq!(parsed.skipped, vec![]);
        assert_eq!(
            pairs(&parsed),
            [
                ("artifactId", "jackson-databind"),
                ("groupId", "com.fasterxml.jackson.core"),
                ("version", "2.15.2"),
            ]
        );
    }

    #[test]
    fn separators_comments_continuations_and_escapes() {
        let text = "  ! bang comment\r\n\
colon: value one\r\n\
space   value two\r\n\
tabbed\t=\t  three\n\
both = : four\n\
empty\n\
empty2=\n\
multi = first, \\\n     second, \\\n\t third\n\
# comment ending in backslash \\\n\
not.continued=yes\n\
esc\\=aped\\:key\\ with\\ spaces = a\\tb\\nc\\\\d\\=e\n\
unicode=caf\\u00e9 \\u20AC \\uD83D\\uDE00 \\uD800x\n\
even=ends in two\\\\\n\
#!not a key\n\
last = cut at end of file \\";
        let parsed = parse(text);
        assert_eq!(parsed.skipped, vec![]);
        assert_eq!(
            pairs(&parsed),
            [
                ("colon", "value one"),
                ("space", "value two"),
                ("tabbed", "three"),
                ("both", ": four"),
                ("empty", ""),
                ("empty2", ""),
                ("multi", "first, second, third"),
                ("not.continued", "yes"),
                ("esc=aped:key with spaces", "a\tb\nc\\d=e"),
                ("unicode", "café € 😀 \u{fffd}x"),
                ("even", "ends in two\\"),
                ("last", "cut at end of file "),
            ]
        );
    }

    #[test]
    fn a_blank_continuation_line_ends_the_entry() {
        let parsed = parse("a=1\\\n\nb=2\rc=3\\\r  4");
        assert_eq!(pairs(&parsed), [("a", "1"), ("b", "2"), ("c", "34")]);
    }

    #[test]
    fn malformed_unicode_escapes_skip_the_entry_at_its_first_line() {
        let parsed =
            parse("ok=1\nbad=\\u12\\\n  continued\nbad\\uzzzz=2\nshort=\\u00\nplus=\\u+fff");
        assert_eq!(pairs(&parsed), [("ok", "1")]);
        let lines: Vec<_> = parsed.skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, [2, 4, 5, 6]);
        assert!(parsed.skipped[0].reason.contains("in value"));
        assert!(parsed.skipped[1].reason.contains("in key"));
        assert!(parsed.skipped[0].reason.starts_with("malformed \\uxxxx"));
    }

    #[test]
    fn backslash_only_continuations_take_linear_time() {
        // Found by scaling the fuzz inputs: each line of three backslashes continues
        // the entry, and counting the trailing backslashes of the whole entry so far
        // made 250 KB of them take over a minute.
        let lines = 200_000;
        let parsed = parse(&"\\\\\\\n".repeat(lines));
        assert_eq!(parsed.skipped, vec![]);
        // Every line keeps two escaped backslashes, each one backslash in the key.
        assert_eq!(pairs(&parsed), [("\\".repeat(lines).as_str(), "")]);
    }

    #[test]
    fn garbage_does_not_panic() {
        let mut state = 0xd1b5_4a32_d192_ed03_u64;
        let alphabet = b"ku=: \\\r\n\t#!0dD8\xc3\xa9\xff";
        for _ in 0..3000 {
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
