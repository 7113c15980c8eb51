//! Python core metadata (`*.dist-info/METADATA`, `*.egg-info/PKG-INFO`): RFC 822
//! headers up to the first blank line; the description body after it is ignored.

/// The fields of one installed distribution that the inventory keeps.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PythonDist {
    pub name: String,
    pub version: String,
    /// `License-Expression` when present, else the first line of `License`.
    pub license: String,
    pub summary: String,
}

/// Parses the metadata headers. Header names are case-insensitive and the first
/// occurrence of a header wins. Like Python's `email` parser, a line that is neither
/// a header nor a continuation ends the headers. Errs when Name or Version is missing.
pub fn parse(text: &str) -> Result<PythonDist, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut headers: Vec<(&str, String)> = Vec::new();
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            // A folded header (whitespace-only lines included, as setuptools writes
            // blank lines of a multi-line License): keep its lines apart so License
            // can take the first.
            if let Some((_, value)) = headers.last_mut() {
                value.push('\n');
                value.push_str(line.trim());
            }
            continue;
        }
        match line.split_once(':') {
            Some((name, value)) if is_header_name(name) => {
                headers.push((name, value.trim().to_string()));
            }
            _ => break,
        }
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
            .filter(|value| !value.trim().is_empty())
    };
    let name = get("Name").ok_or("metadata has no Name header")?;
    let version = get("Version").ok_or("metadata has no Version header")?;
    let license = get("License-Expression")
        .or_else(|| get("License"))
        .and_then(|value| value.lines().map(str::trim).find(|l| !l.is_empty()))
        .unwrap_or_default();
    let summary = get("Summary")
        .map(|value| {
            let lines: Vec<&str> = value.split('\n').filter(|l| !l.is_empty()).collect();
            lines.join(" ")
        })
        .unwrap_or_default();
    Ok(PythonDist {
        name: first_line(name).to_string(),
        version: first_line(version).to_string(),
        license: license.to_string(),
        summary: summary.trim().to_string(),
    })
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

fn first_line(value: &str) -> &str {
    value.lines().next().unwrap_or_default().trim()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::test_support::xorshift;

    #[test]
    fn parses_dist_info_metadata_and_ignores_the_body() {
        let text = "\
Metadata-Version: 2.1
Name: requests
Version: 2.31.0
Summary: Python HTTP for Humans.
Home-page: https://requests.readthedocs.io
Author: Kenneth Reitz
License: Apache 2.0
Classifier: License :: OSI Approved :: Apache Software License
Requires-Python: >=3.7
Description-Content-Type: text/markdown

# Requests
Name: not-a-header
License: not-a-header
";
        let dist = parse(text).unwrap();
        assert_eq!(
            dist,
            PythonDist {
                name: "requests".into(),
                version: "2.31.0".into(),
                license: "Apache 2.0".into(),
                summary: "Python HTTP for Humans.".into(),
            }
        );
    }

    #[test]
    fn license_expression_wins_and_multi_line_licenses_keep_the_first_line() {
        let text = "Name: x\nLicense: MIT License\n        \n        Copyright (c) 2020\n        Permission is hereby granted\nVersion: 1\nlicense-expression: MIT OR Apache-2.0\n";
        assert_eq!(parse(text).unwrap().license, "MIT OR Apache-2.0");
        let text = "Name: x\nVersion: 1\nLicense: BSD 3-Clause License\n        \n        Copyright (c) 2005\n";
        assert_eq!(parse(text).unwrap().license, "BSD 3-Clause License");
        let text = "Name: x\nVersion: 1\nLicense: \n  Apache License\n  Version 2.0\n";
        assert_eq!(parse(text).unwrap().license, "Apache License");
    }

    #[test]
    fn case_insensitive_crlf_bom_folded_summary_and_missing_optional_fields() {
        let text = "\u{feff}metadata-version: 1.0\r\nNAME: Foo_Bar\r\nversion:0.1.dev0\r\nsummary: a long\r\n  folded summary\r\n";
        let dist = parse(text).unwrap();
        assert_eq!(dist.name, "Foo_Bar");
        assert_eq!(dist.version, "0.1.dev0");
        assert_eq!(dist.summary, "a long folded summary");
        assert_eq!(dist.license, "");
        // The first occurrence wins.
        assert_eq!(parse("Name: a\nName: b\nVersion: 1").unwrap().name, "a");
    }

    #[test]
    fn missing_name_or_version_is_an_error_naming_it() {
        assert!(parse("Version: 1\n").unwrap_err().contains("Name"));
        assert!(
            parse("Name: a\nVersion:   \n")
                .unwrap_err()
                .contains("Version")
        );
        assert!(parse("").unwrap_err().contains("Name"));
        // The headers end at the first blank line, or at a line that is not a header.
        assert!(
            parse("Name: a\n\nVersion: 1\n")
                .unwrap_err()
                .contains("Version")
        );
        assert!(
            parse("Name: a\r\n\r\nVersion: 1\n")
                .unwrap_err()
                .contains("Version")
        );
        assert!(
            parse("Name: a\nthis is not a header\nVersion: 1\n")
                .unwrap_err()
                .contains("Version")
        );
    }

    #[test]
    fn garbage_does_not_panic() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let alphabet = b"NameVrsiLc-:\n\r \t\xc3\xa9\xff";
        for _ in 0..2000 {
            let mut bytes = Vec::new();
            for _ in 0..(xorshift(&mut state) % 64) {
                let pick = xorshift(&mut state) as usize;
                bytes.push(alphabet[pick % alphabet.len()]);
            }
            let _ = parse(&String::from_utf8_lossy(&bytes));
        }
    }
}
