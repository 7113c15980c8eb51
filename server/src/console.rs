//! Console Configuration Data: the settings users make (detection schedules, enabled
//! collectors, ignore and whitelist rules, trust/isolate decisions, alarm settings,
//! upgrade and renewal settings), validated per kind, and what of it applies to a node.
use serde::{Deserialize, Serialize};

use crate::policy::{self, Category};

/// Longest detection schedule: a year.
pub const MAX_INTERVAL_SECS: u64 = 366 * 24 * 3600;

/// Every scan runs on this schedule; node-scoped items override global ones.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DetectionSchedule {
    /// Seconds between scans.
    pub interval_secs: u64,
    /// Only this node; every node when absent.
    pub node: Option<String>,
}

/// The collectors (record kinds) agents run.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnabledCollectors {
    pub kinds: Vec<String>,
    pub node: Option<String>,
}

/// Findings to ignore (vulnerability or baseline checks).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IgnoreRule {
    /// `vulnerability` or `baseline`.
    pub rule_type: IgnoreType,
    /// Identifier or substring of what is ignored (CVE id, check id, package).
    pub pattern: String,
    pub reason: Option<String>,
    pub node: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IgnoreType {
    Vulnerability,
    Baseline,
}

/// Behaviour not to alarm on.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WhitelistRule {
    pub rule_type: WhitelistType,
    /// Process path, command line or file path pattern.
    pub pattern: String,
    pub node: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WhitelistType {
    AbnormalProcess,
    ReverseShell,
    FileTampering,
    PrivilegeEscalation,
    AbnormalLogin,
}

/// A trust or isolate decision on a file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileDecision {
    pub path: String,
    /// Hex SHA-256 of the file, when the decision is about one content.
    pub sha256: Option<String>,
    pub decision: Decision,
    pub node: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Trust,
    Isolate,
}

/// A webhook called for every new record of a kind (e.g. a new listening port).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmSetting {
    /// `https://` (or `http://`) URL the alarm is POSTed to as JSON.
    pub webhook: String,
    /// Record kind that raises the alarm.
    pub kind: String,
    /// Only records of this node.
    pub node: Option<String>,
    /// Only records whose key or fields contain this text.
    pub pattern: Option<String>,
}

/// Validates the fields of a console configuration item of `kind`; the error names
/// the kind and what is wrong.
pub fn validate(kind: &str, fields: &serde_json::Value) -> Result<(), String> {
    fn parse<T: for<'de> Deserialize<'de>>(
        kind: &str,
        fields: &serde_json::Value,
    ) -> Result<T, String> {
        T::deserialize(fields).map_err(|error| format!("{kind}: {error}"))
    }
    let asset_kind = |what: &str, kind: &str| match policy::category(kind) {
        Some(Category::AssetBasicData) => Ok(()),
        _ => Err(format!(
            "{what}: {kind:?} is not a record kind agents collect"
        )),
    };
    match kind {
        "detection_schedule" => {
            let schedule: DetectionSchedule = parse(kind, fields)?;
            if !(1..=MAX_INTERVAL_SECS).contains(&schedule.interval_secs) {
                return Err(format!(
                    "detection_schedule: interval_secs must be between 1 and {MAX_INTERVAL_SECS}, got {}",
                    schedule.interval_secs
                ));
            }
        }
        "enabled_collectors" => {
            let enabled: EnabledCollectors = parse(kind, fields)?;
            if enabled.kinds.is_empty() {
                return Err("enabled_collectors: kinds must name at least one kind".into());
            }
            for kind in &enabled.kinds {
                asset_kind("enabled_collectors", kind)?;
            }
        }
        "ignore_rule" => {
            parse::<IgnoreRule>(kind, fields)?;
        }
        "whitelist_rule" => {
            parse::<WhitelistRule>(kind, fields)?;
        }
        "file_decision" => {
            let decision: FileDecision = parse(kind, fields)?;
            if let Some(sha) = &decision.sha256
                && (sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(format!(
                    "file_decision: sha256 {sha:?} is not 64 hex digits"
                ));
            }
        }
        "alarm_setting" => {
            let alarm: AlarmSetting = parse(kind, fields)?;
            asset_kind("alarm_setting", &alarm.kind)?;
            if !alarm.webhook.starts_with("https://") && !alarm.webhook.starts_with("http://") {
                return Err(format!(
                    "alarm_setting: webhook {:?} must be an https:// or http:// URL",
                    alarm.webhook
                ));
            }
        }
        "upgrade_setting" | "renewal_setting" => {
            if !fields.is_object() {
                return Err(format!("{kind}: expected a JSON object"));
            }
        }
        other => {
            return Err(format!(
                "unknown console configuration kind {other:?}: expected one of {}",
                policy::CONSOLE_KINDS.join(", ")
            ));
        }
    }
    Ok(())
}

/// A stored console configuration item.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigItem {
    pub kind: String,
    pub key: String,
    pub fields: serde_json::Value,
    pub version: u64,
    pub category: String,
    pub policy: String,
    pub collected_at: String,
    pub retain_until: String,
    pub delete_by: Option<String>,
    pub delete_rule: Option<String>,
    pub hosting_service: String,
    pub legal_hold: bool,
    pub updated_at: String,
    /// When a deletion was requested; the item no longer applies.
    pub deleted_at: Option<String>,
}

/// What of the console configuration a node applies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeConfig {
    pub version: u64,
    pub interval_secs: u64,
    pub enabled_kinds: Vec<String>,
}

/// The configuration that applies to `node` among the active `items`: a node-scoped
/// item wins over a global one, and among equals the newest.
pub fn node_config(node: &str, items: &[ConfigItem]) -> NodeConfig {
    let version = items.iter().map(|i| i.version).max().unwrap_or(0);
    let pick = |kind: &str| {
        items
            .iter()
            .filter(|i| i.kind == kind && i.deleted_at.is_none())
            .filter_map(|i| {
                let scope = i.fields.get("node").and_then(|n| n.as_str());
                match scope {
                    Some(n) if n != node => None,
                    scope => Some((scope.is_some(), i.version, i)),
                }
            })
            .max_by_key(|(scoped, version, _)| (*scoped, *version))
            .map(|(_, _, item)| item.fields.clone())
    };
    let interval_secs = pick("detection_schedule")
        .and_then(|f| serde_json::from_value::<DetectionSchedule>(f).ok())
        .map_or(0, |s| s.interval_secs);
    let enabled_kinds = pick("enabled_collectors")
        .and_then(|f| serde_json::from_value::<EnabledCollectors>(f).ok())
        .map_or_else(Vec::new, |e| e.kinds);
    NodeConfig {
        version,
        interval_secs,
        enabled_kinds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(kind: &str, version: u64, fields: serde_json::Value) -> ConfigItem {
        ConfigItem {
            kind: kind.into(),
            key: format!("k{version}"),
            fields,
            version,
            category: "console_configuration_data".into(),
            policy: policy::POLICY.into(),
            collected_at: String::new(),
            retain_until: String::new(),
            delete_by: None,
            delete_rule: None,
            hosting_service: policy::FEATURE.into(),
            legal_hold: false,
            updated_at: String::new(),
            deleted_at: None,
        }
    }

    #[test]
    fn bad_items_are_refused_by_kind_and_field() {
        let cases = [
            (
                "detection_schedule",
                json!({"interval_secs": 0}),
                "between 1 and",
            ),
            (
                "detection_schedule",
                json!({"interval": 5}),
                "unknown field `interval`",
            ),
            (
                "enabled_collectors",
                json!({"kinds": ["frobnicator"]}),
                "\"frobnicator\"",
            ),
            (
                "alarm_setting",
                json!({"webhook": "ftp://x", "kind": "listening_port"}),
                "https:// or http://",
            ),
            (
                "file_decision",
                json!({"path": "/x", "decision": "maybe"}),
                "unknown variant `maybe`",
            ),
            (
                "colour_scheme",
                json!({}),
                "unknown console configuration kind",
            ),
        ];
        for (kind, fields, expected) in cases {
            let error = validate(kind, &fields).unwrap_err();
            assert!(error.contains(expected), "{kind} {fields}: {error}");
        }
        validate("detection_schedule", &json!({"interval_secs": 30})).unwrap();
        validate(
            "alarm_setting",
            &json!({"webhook": "http://127.0.0.1:9/x", "kind": "listening_port"}),
        )
        .unwrap();
        validate(
            "file_decision",
            &json!({"path": "/bin/nc", "decision": "isolate"}),
        )
        .unwrap();
    }

    #[test]
    fn node_scoped_items_win_and_deleted_ones_do_not_apply() {
        let mut items = vec![
            item("detection_schedule", 1, json!({"interval_secs": 600})),
            item(
                "detection_schedule",
                2,
                json!({"interval_secs": 5, "node": "n1"}),
            ),
            item("detection_schedule", 3, json!({"interval_secs": 300})),
            item(
                "enabled_collectors",
                4,
                json!({"kinds": ["package"], "node": "n2"}),
            ),
        ];
        assert_eq!(
            node_config("n1", &items),
            NodeConfig {
                version: 4,
                interval_secs: 5,
                enabled_kinds: vec![]
            }
        );
        assert_eq!(
            node_config("n2", &items),
            NodeConfig {
                version: 4,
                interval_secs: 300,
                enabled_kinds: vec!["package".into()]
            }
        );
        items[1].deleted_at = Some("2026-11-24T00:00:00Z".into());
        assert_eq!(node_config("n1", &items).interval_secs, 300);
    }
}
