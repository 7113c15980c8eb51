//! `KEY=value` files in the os-release(5) format: optional single or double quotes,
//! backslash escapes inside double quotes, `#` comments.
use super::{Parsed, numbered_lines};

/// Parses `KEY=value` lines into pairs, in file order.
pub fn parse(text: &str) -> Parsed<(String, String)> {
    let mut parsed = Parsed::default();
    for (number, line) in numbered_lines(text) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            parsed.skip(number, "expected KEY=value");
            continue;
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            parsed.skip(number, format!("invalid key {key:?}"));
            continue;
        }
        match unquote(value.trim()) {
            Some(value) => parsed.items.push((key.to_string(), value)),
            None => parsed.skip(number, format!("unterminated quote in value of {key}")),
        }
    }
    parsed
}

fn unquote(value: &str) -> Option<String> {
    let Some(quote) = value.chars().next().filter(|c| *c == '"' || *c == '\'') else {
        return Some(value.to_string());
    };
    let inner = value[1..].strip_suffix(quote)?;
    if quote == '\'' {
        return Some(inner.to_string());
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_os_release() {
        let text = "# comment\r\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\r\nID=debian\n\
                    VERSION_ID='12'\nHOME_URL=\"https://www.debian.org/\"\nQUOTED=\"say \\\"hi\\\"\"\n";
        let parsed = parse(text);
        assert_eq!(parsed.skipped, vec![]);
        assert_eq!(
            parsed.items,
            [
                (
                    "PRETTY_NAME".to_string(),
                    "Debian GNU/Linux 12 (bookworm)".to_string()
                ),
                ("ID".into(), "debian".into()),
                ("VERSION_ID".into(), "12".into()),
                ("HOME_URL".into(), "https://www.debian.org/".into()),
                ("QUOTED".into(), "say \"hi\"".into()),
            ]
        );
    }

    #[test]
    fn bad_lines_are_skipped() {
        let parsed = parse("ID=debian\nno equals sign\nBAD KEY=1\nNAME=\"open\n");
        assert_eq!(parsed.items.len(), 1);
        let lines: Vec<_> = parsed.skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, [2, 3, 4]);
    }
}
