//! npm's `package.json`: the name, version, license and private flag of one
//! installed package.
use serde_json::Value;

/// The fields of one `package.json` that the inventory keeps.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NpmPackage {
    pub name: String,
    pub version: String,
    /// An SPDX expression or free text; several licenses (an array, or the legacy
    /// `licenses` field) are joined with ` OR `. Empty when none is declared.
    pub license: String,
    /// `"private": true`: the package is not meant to be published.
    pub private: bool,
}

/// Parses one `package.json`. Errs when the text is not a JSON object or when
/// `name` or `version` is missing, empty or not a string, naming which.
pub fn parse(text: &str) -> Result<NpmPackage, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let value: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let object = value
        .as_object()
        .ok_or("package.json is not a JSON object")?;
    let required = |field: &str| match object.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        Some(Value::String(_)) => Err(format!("package.json has an empty {field}")),
        Some(_) => Err(format!("package.json has a {field} that is not a string")),
        None => Err(format!("package.json has no {field}")),
    };
    let name = required("name")?;
    let version = required("version")?;
    let license = object
        .get("license")
        .map(license)
        .filter(|l| !l.is_empty())
        .or_else(|| object.get("licenses").map(license))
        .unwrap_or_default();
    let private = match object.get("private") {
        Some(Value::Bool(private)) => *private,
        // Some packages write the flag as a string.
        Some(Value::String(private)) => private == "true",
        _ => false,
    };
    Ok(NpmPackage {
        name,
        version,
        license,
        private,
    })
}

/// `"MIT"`, `{"type": "MIT", "url": ...}`, or an array of either.
fn license(value: &Value) -> String {
    match value {
        Value::String(license) => license.trim().to_string(),
        Value::Object(object) => object.get("type").map(license).unwrap_or_default(),
        Value::Array(items) => {
            let licenses: Vec<String> = items
                .iter()
                // Nested arrays are not a license form; refusing them also bounds recursion.
                .filter(|item| !item.is_array())
                .map(license)
                .filter(|l| !l.is_empty())
                .collect();
            licenses.join(" OR ")
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::test_support::xorshift;

    #[test]
    fn parses_a_package_json() {
        let text = r#"{
  "name": "@babel/core",
  "version": "7.23.7",
  "description": "Babel compiler core.",
  "license": "MIT",
  "dependencies": { "@ampproject/remapping": "^2.2.0" },
  "private": false
}"#;
        assert_eq!(
            parse(text).unwrap(),
            NpmPackage {
                name: "@babel/core".into(),
                version: "7.23.7".into(),
                license: "MIT".into(),
                private: false,
            }
        );
    }

    #[test]
    fn license_forms() {
        let license_of = |fields: &str| {
            parse(&format!(r#"{{"name":"a","version":"1.0.0"{fields}}}"#))
                .unwrap()
                .license
        };
        assert_eq!(
            license_of(r#","license":"(MIT OR Apache-2.0)""#),
            "(MIT OR Apache-2.0)"
        );
        assert_eq!(
            license_of(r#","license":{"type":"ISC","url":"https://opensource.org/licenses/ISC"}"#),
            "ISC"
        );
        assert_eq!(
            license_of(r#","license":[{"type":"MIT"},{"type":"GPL-2.0"}]"#),
            "MIT OR GPL-2.0"
        );
        assert_eq!(
            license_of(r#","licenses":[{"type":"BSD","url":"x"},"Apache-2.0"]"#),
            "BSD OR Apache-2.0"
        );
        assert_eq!(
            license_of(r#","license":"","licenses":{"type":"MIT"}"#),
            "MIT"
        );
        assert_eq!(license_of(r#","license":42"#), "");
        assert_eq!(license_of(r#","license":[[{"type":"MIT"}]]"#), "");
        assert_eq!(license_of(""), "");
    }

    #[test]
    fn private_flags_and_bom() {
        let text = "\u{feff}{\"name\":\"app\",\"version\":\"0.0.0\",\"private\":true}";
        assert!(parse(text).unwrap().private);
        let text = r#"{"name":"app","version":"0.0.0","private":"true"}"#;
        assert!(parse(text).unwrap().private);
    }

    #[test]
    fn errors_name_the_problem() {
        let err = |text: &str| parse(text).unwrap_err();
        assert!(err(r#"{"version":"1"}"#).contains("no name"));
        assert!(err(r#"{"name":"a"}"#).contains("no version"));
        assert!(err(r#"{"name":"a","version":""}"#).contains("empty version"));
        assert!(err(r#"{"name":1,"version":"1"}"#).contains("name that is not a string"));
        assert!(err("[1, 2]").contains("not a JSON object"));
        assert!(err("{\"name\": ").starts_with("invalid JSON"));
        assert!(err("").starts_with("invalid JSON"));
    }

    #[test]
    fn garbage_does_not_panic() {
        let fragments: &[&str] = &[
            "{", "}", "[", "]", "\"", ":", ",", "name", "version", "license", "licenses", "type",
            "true", "1", " ", "\\u", "é",
        ];
        let mut state = 0x3c6e_f372_fe94_f82b_u64;
        for _ in 0..5000 {
            let mut text = String::new();
            for _ in 0..(xorshift(&mut state) % 40) {
                text.push_str(fragments[xorshift(&mut state) as usize % fragments.len()]);
            }
            let _ = parse(&text);
        }
        // Deep nesting hits serde_json's recursion limit, an error, not a crash.
        assert!(parse(&"[".repeat(100_000)).is_err());
    }
}
