//! DPSA tagging: the data-protection category of every record kind and the retention
//! deadlines that follow from it (DESIGN.md section 3).
use jiff::{SignedDuration, Timestamp};

/// The rule set records are tagged under: the container security service's DPSA
/// module of 2023-04-03, as census implements it.
pub const POLICY: &str = "dpsa-tcss-2023-04-03/v1";

/// Minimum retention of asset basic data.
pub const ASSET_RETENTION: SignedDuration = SignedDuration::from_hours(180 * 24);

/// DPSA data category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Fingerprints of servers, containers, images and clusters.
    AssetBasicData,
    /// Settings users make in the console.
    ConsoleConfigurationData,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::AssetBasicData => "asset_basic_data",
            Category::ConsoleConfigurationData => "console_configuration_data",
        }
    }
}

/// Record kinds the DPSA lists as asset basic data.
pub const ASSET_KINDS: &[&str] = &[
    "host",
    "resource_usage",
    "account",
    "group",
    "listening_port",
    "package",
    "process",
    "database",
    "web_service",
    "web_framework",
    "web_site",
    "web_application",
    "startup_service",
    "scheduled_task",
    "environment_variable",
    "kernel_module",
    "container",
    "image",
    "image_history",
    "image_risk",
    "cluster",
];

/// Record kinds the DPSA lists as console configuration data.
pub const CONSOLE_KINDS: &[&str] = &[
    "detection_schedule",
    "enabled_collectors",
    "ignore_rule",
    "whitelist_rule",
    "file_decision",
    "alarm_setting",
    "upgrade_setting",
    "renewal_setting",
];

/// The category of `kind`, if the policy knows the kind.
pub fn category(kind: &str) -> Option<Category> {
    if ASSET_KINDS.contains(&kind) {
        Some(Category::AssetBasicData)
    } else if CONSOLE_KINDS.contains(&kind) {
        Some(Category::ConsoleConfigurationData)
    } else {
        None
    }
}

/// What every stored record carries besides its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tags {
    pub category: Category,
    pub policy: &'static str,
    pub collected_at: Timestamp,
    /// No deletion before this instant.
    pub retain_until: Timestamp,
    /// Latest deletion instant; `None` while open-ended.
    pub delete_by: Option<Timestamp>,
    /// The node or cluster the record belongs to, e.g. `node:3d12…`.
    pub hosting_service: String,
    pub legal_hold: bool,
}

/// A kind the policy cannot tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown record kind {kind:?}: policy {POLICY} has no category for it")]
pub struct UnknownKind {
    pub kind: String,
}

/// Tags a record of `kind` collected at `collected_at` for `hosting_service`.
///
/// Asset basic data is kept at least 180 days and has no deletion deadline while its
/// hosting service is in use. Console configuration data may go at any time on request
/// and has no deadline until a deletion request or the feature's termination.
pub fn tag(
    kind: &str,
    collected_at: Timestamp,
    hosting_service: &str,
) -> Result<Tags, UnknownKind> {
    let category = category(kind).ok_or_else(|| UnknownKind {
        kind: kind.to_string(),
    })?;
    let retain_until = match category {
        Category::AssetBasicData => collected_at
            .saturating_add(ASSET_RETENTION)
            .unwrap_or(Timestamp::MAX),
        Category::ConsoleConfigurationData => collected_at,
    };
    Ok(Tags {
        category,
        policy: POLICY,
        collected_at,
        retain_until,
        delete_by: None,
        hosting_service: hosting_service.to_string(),
        legal_hold: false,
    })
}

/// The hosting service a node's records belong to.
pub fn node_service(node_id: &str) -> String {
    format!("node:{node_id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn asset_data_is_kept_180_days_with_no_deadline() {
        let collected: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        let tags = tag("process", collected, "node:n1").unwrap();
        assert_eq!(tags.category, Category::AssetBasicData);
        assert_eq!(
            tags.retain_until,
            "2027-05-23T10:00:00Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(tags.delete_by, None);
        assert_eq!(tags.policy, POLICY);
        assert_eq!(tags.hosting_service, "node:n1");
        assert!(!tags.legal_hold);
    }

    #[test]
    fn console_configuration_may_go_at_once() {
        let collected: Timestamp = "2026-02-28T00:00:00Z".parse().unwrap();
        let tags = tag("alarm_setting", collected, "node:n1").unwrap();
        assert_eq!(tags.category, Category::ConsoleConfigurationData);
        assert_eq!(tags.retain_until, collected);
        assert_eq!(tags.delete_by, None);
    }

    #[test]
    fn unknown_kinds_are_refused_by_name() {
        let error = tag("frobnicator", Timestamp::UNIX_EPOCH, "node:n1").unwrap_err();
        assert!(error.to_string().contains("\"frobnicator\""), "{error}");
    }

    #[test]
    fn every_kind_the_protocol_carries_has_a_category() {
        for kind in census_proto::KINDS {
            assert!(category(kind).is_some(), "{kind} has no category");
        }
    }

    proptest! {
        #[test]
        fn asset_retention_is_exactly_180_days(secs in 0i64..4_000_000_000) {
            let collected = Timestamp::from_second(secs).unwrap();
            let tags = tag("package", collected, "node:n").unwrap();
            prop_assert_eq!(tags.retain_until.as_second() - secs, 180 * 86_400);
        }
    }
}
