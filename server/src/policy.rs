//! DPSA tagging: the data-protection category of every record kind and the retention
//! deadlines that follow from it (DESIGN.md section 3).
use jiff::{SignedDuration, Timestamp};

use crate::calendar::{Calendar, add_months};

/// The rule set records are tagged under: the container security service's DPSA
/// module of 2023-04-03, as census implements it.
pub const POLICY: &str = "dpsa-tcss-2023-04-03/v1";

/// Minimum retention of asset basic data.
pub const ASSET_RETENTION: SignedDuration = SignedDuration::from_hours(180 * 24);
/// How long asset data of a terminated hosting service stays (archived) at least.
pub const TERMINATION_GRACE: SignedDuration = SignedDuration::from_hours(30 * 24);
/// Working days within which console configuration data goes after a deletion request.
pub const CONSOLE_DELETION_WORKING_DAYS: u32 = 30;
/// Calendar months console configuration data stays after the feature's termination.
pub const FEATURE_TERMINATION_MONTHS: i32 = 1;

/// The hosting service of console configuration data: the feature itself.
pub const FEATURE: &str = "feature";

/// An event that sets a deletion deadline, and so the rule a deletion follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The hosting service (node or cluster) terminated at T: asset data is archived
    /// and deleted by max(T + 30 days, collected_at + 180 days).
    HostingServiceTerminated,
    /// Deletion requested at R for asset data: honoured at max(R, collected_at + 180
    /// days); the 180-day floor is never broken.
    AssetDeletionRequest,
    /// Deletion requested at R for console configuration data: within 30 working days.
    ConsoleDeletionRequest,
    /// The feature terminated at F: console configuration data goes within 1 calendar
    /// month.
    FeatureTerminated,
}

impl Rule {
    pub const ALL: [Rule; 4] = [
        Rule::HostingServiceTerminated,
        Rule::AssetDeletionRequest,
        Rule::ConsoleDeletionRequest,
        Rule::FeatureTerminated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::HostingServiceTerminated => "hosting_service_terminated",
            Rule::AssetDeletionRequest => "asset_deletion_request",
            Rule::ConsoleDeletionRequest => "console_deletion_request",
            Rule::FeatureTerminated => "feature_terminated",
        }
    }

    pub fn parse(text: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|rule| rule.as_str() == text)
    }

    /// The category of data the rule applies to.
    pub fn category(self) -> Category {
        match self {
            Rule::HostingServiceTerminated | Rule::AssetDeletionRequest => Category::AssetBasicData,
            Rule::ConsoleDeletionRequest | Rule::FeatureTerminated => {
                Category::ConsoleConfigurationData
            }
        }
    }

    /// The rule as the DPSA module states it.
    pub fn text(self) -> &'static str {
        match self {
            Rule::HostingServiceTerminated => {
                "asset basic data of a terminated hosting service is archived and deleted by max(T + 30 days, collected_at + 180 days)"
            }
            Rule::AssetDeletionRequest => {
                "a deletion request for asset basic data is honoured at max(request, collected_at + 180 days)"
            }
            Rule::ConsoleDeletionRequest => {
                "console configuration data is deleted within 30 working days of a deletion request"
            }
            Rule::FeatureTerminated => {
                "console configuration data is deleted 1 calendar month after the feature's termination"
            }
        }
    }

    /// The deadline the event at `at` sets before the retention floor: every record's
    /// `delete_by` is then max(this, its `retain_until`) (see [`deadline`]).
    pub fn base(self, at: Timestamp, calendar: &Calendar) -> Timestamp {
        match self {
            Rule::HostingServiceTerminated => at
                .saturating_add(TERMINATION_GRACE)
                .unwrap_or(Timestamp::MAX),
            Rule::AssetDeletionRequest => at,
            Rule::ConsoleDeletionRequest => {
                calendar.add_working_days(at, CONSOLE_DELETION_WORKING_DAYS)
            }
            Rule::FeatureTerminated => add_months(at, FEATURE_TERMINATION_MONTHS),
        }
    }
}

/// The deletion deadline the event `rule` at `at` sets for a record retained until
/// `retain_until`: never before the retention floor.
pub fn deadline(
    rule: Rule,
    at: Timestamp,
    retain_until: Timestamp,
    calendar: &Calendar,
) -> Timestamp {
    rule.base(at, calendar).max(retain_until)
}

/// A record's deadline after one more event: the earlier of the two.
pub fn earlier(current: Option<Timestamp>, new: Timestamp) -> Timestamp {
    current.map_or(new, |current| current.min(new))
}

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

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn termination_keeps_asset_data_30_days_or_until_the_floor() {
        let calendar = Calendar::weekends_only();
        let collected = at("2026-01-10T00:00:00Z");
        let floor = tag("package", collected, "node:n").unwrap().retain_until;
        // Terminated early: the 180-day floor wins.
        let early = deadline(
            Rule::HostingServiceTerminated,
            at("2026-02-01T00:00:00Z"),
            floor,
            &calendar,
        );
        assert_eq!(early, floor);
        // Terminated late: 30 days after.
        let late = deadline(
            Rule::HostingServiceTerminated,
            at("2026-12-01T00:00:00Z"),
            floor,
            &calendar,
        );
        assert_eq!(late, at("2026-12-31T00:00:00Z"));
    }

    #[test]
    fn console_data_goes_by_the_earlier_of_request_and_feature_termination() {
        let calendar = Calendar::weekends_only();
        let collected = at("2026-01-05T09:00:00Z");
        let retain = tag("alarm_setting", collected, FEATURE)
            .unwrap()
            .retain_until;
        let request = deadline(
            Rule::ConsoleDeletionRequest,
            at("2026-11-24T12:00:00Z"),
            retain,
            &calendar,
        );
        assert_eq!(request, at("2027-01-05T12:00:00Z"));
        let feature = deadline(
            Rule::FeatureTerminated,
            at("2026-11-30T12:00:00Z"),
            retain,
            &calendar,
        );
        assert_eq!(feature, at("2026-12-30T12:00:00Z"));
        assert_eq!(earlier(Some(request), feature), feature);
        assert_eq!(earlier(None, request), request);
    }

    fn any_timestamp() -> impl Strategy<Value = Timestamp> {
        (0i64..4_102_444_800).prop_map(|s| Timestamp::from_second(s).unwrap())
    }

    proptest! {
        #[test]
        fn delete_by_is_never_before_retain_until(
            collected in any_timestamp(),
            console in any::<bool>(),
            events in proptest::collection::vec((any::<bool>(), any_timestamp()), 1..5),
        ) {
            let calendar = Calendar::with_holidays([jiff::civil::date(2026, 12, 25)]);
            let (kind, rules) = if console {
                ("alarm_setting", [Rule::ConsoleDeletionRequest, Rule::FeatureTerminated])
            } else {
                ("package", [Rule::HostingServiceTerminated, Rule::AssetDeletionRequest])
            };
            let tags = tag(kind, collected, "node:n").unwrap();
            let mut delete_by = None;
            for (first, when) in events {
                let rule = if first { rules[0] } else { rules[1] };
                prop_assert_eq!(rule.category(), tags.category);
                let due = deadline(rule, when, tags.retain_until, &calendar);
                prop_assert!(due >= tags.retain_until);
                prop_assert!(due >= when);
                delete_by = Some(earlier(delete_by, due));
                prop_assert!(delete_by.unwrap() >= tags.retain_until);
                prop_assert!(delete_by.unwrap() <= due);
            }
        }

        #[test]
        fn termination_deadline_is_the_later_of_grace_and_floor(
            collected in any_timestamp(),
            terminated in any_timestamp(),
        ) {
            let tags = tag("package", collected, "node:n").unwrap();
            let due = deadline(Rule::HostingServiceTerminated, terminated, tags.retain_until, &Calendar::weekends_only());
            let grace = terminated.as_second() + 30 * 86_400;
            let floor = collected.as_second() + 180 * 86_400;
            prop_assert_eq!(due.as_second(), grace.max(floor));
        }

        #[test]
        fn asset_deletion_requests_never_break_the_floor(
            collected in any_timestamp(),
            requested in any_timestamp(),
        ) {
            let tags = tag("process", collected, "node:n").unwrap();
            let due = deadline(Rule::AssetDeletionRequest, requested, tags.retain_until, &Calendar::weekends_only());
            prop_assert_eq!(due, requested.max(tags.retain_until));
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
