//! Which CBO a referral goes to: the `[routing]` configuration and its rules.
//!
//! A referral names a CBO in `assign_to`, or the rules decide:
//! 1. rules are tried in the order written; a rule matches when the referral
//!    requests at least one of its `resources` (if it lists any) **and** its
//!    district is one of the rule's `districts` (if it lists any; compared without
//!    regard to case). The first matching rule whose CBO is active wins;
//! 2. otherwise `default_cbo`, if it is active;
//! 3. otherwise the referral is refused, naming `assign_to`.
//!
//! Start-up fails when a rule or the default names a partner that is not a
//! registered CBO (see [`RoutingConfig::validate`]); a CBO that is *inactive* only
//! logs a warning, because deactivating a partner must not stop the gateway — its
//! rules are skipped until it is active again.
//!
//! ```toml
//! [routing]
//! default_cbo = "cbo-north"
//!
//! [[routing.rules]]
//! resources = ["mental_health", "alcohol_drug"]
//! districts = ["south", "d5"]
//! cbo = "cbo-south"
//! ```

use super::vocabulary::ResourceCategory;
pub use crate::config::routing::{RoutingConfig, RoutingRule};
use crate::config::{Config, PartnerKind};

/// How a referral's CBO was chosen (recorded in the assignment history).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The submitter (or the admin reassigning) named it.
    Explicit,
    /// A routing rule, by its position in the configuration.
    Rule(usize),
    /// `routing.default_cbo`.
    Default,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Explicit => "explicit",
            Self::Rule(_) => "rule",
            Self::Default => "default",
        }
    }

    pub fn rule_index(self) -> Option<usize> {
        match self {
            Self::Rule(i) => Some(i),
            _ => None,
        }
    }
}

/// A chosen CBO and how it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub cbo: String,
    pub route: Route,
}

/// Why no CBO could be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutingError {
    /// `assign_to` is not an active registered CBO.
    NotAnActiveCbo,
    /// No rule matched (or their CBOs are inactive or excluded) and there is no
    /// usable default.
    NoRoute,
}

impl RoutingError {
    pub fn problem(self) -> &'static str {
        match self {
            Self::NotAnActiveCbo => "is not an active registered CBO",
            Self::NoRoute => {
                "no routing rule applies and no default CBO is configured: name a CBO here"
            }
        }
    }
}

/// Chooses a CBO for a referral: `explicit` if given, else the rules, else the
/// default. `exclude` is a CBO that must not be chosen (the one declining it).
pub fn route(
    config: &Config,
    explicit: Option<&str>,
    resources: &[ResourceCategory],
    district: &str,
    exclude: Option<&str>,
) -> Result<Assignment, RoutingError> {
    let usable = |id: &str| is_active_cbo(config, id) && exclude != Some(id);
    if let Some(cbo) = explicit {
        return if usable(cbo) {
            Ok(Assignment {
                cbo: cbo.to_owned(),
                route: Route::Explicit,
            })
        } else {
            Err(RoutingError::NotAnActiveCbo)
        };
    }
    let routing = &config.routing;
    for (i, rule) in routing.rules.iter().enumerate() {
        let resource_ok =
            rule.resources.is_empty() || rule.resources.iter().any(|r| resources.contains(r));
        let district_ok = rule.districts.is_empty()
            || rule
                .districts
                .iter()
                .any(|d| d.trim().eq_ignore_ascii_case(district.trim()));
        if resource_ok && district_ok && usable(&rule.cbo) {
            return Ok(Assignment {
                cbo: rule.cbo.clone(),
                route: Route::Rule(i),
            });
        }
    }
    match &routing.default_cbo {
        Some(cbo) if usable(cbo) => Ok(Assignment {
            cbo: cbo.clone(),
            route: Route::Default,
        }),
        _ => Err(RoutingError::NoRoute),
    }
}

/// Whether `id` is a registered, active CBO.
pub fn is_active_cbo(config: &Config, id: &str) -> bool {
    config
        .partners
        .get(id)
        .is_some_and(|p| p.kind == PartnerKind::Cbo && p.active)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::ConfigError;
    use ResourceCategory::{Homelessness, MentalHealth, Veteran};

    fn config(routing: &str) -> Result<Config, ConfigError> {
        let text = format!(
            r#"
            [keys]
            master_secret = "m"
            vault_identity = "v"
            signing_key = "s"
            tls_cert = "c"
            tls_key = "k"
            client_ca = "ca"
            [partners.pd]
            kind = "police"
            name = "PD"
            public_key = "unused"
            [partners.north]
            kind = "cbo"
            name = "North"
            public_key = "unused"
            [partners.south]
            kind = "cbo"
            name = "South"
            public_key = "unused"
            [partners.closed]
            kind = "cbo"
            name = "Closed"
            active = false
            public_key = "unused"
            {routing}
            "#
        );
        Config::from_toml(&text, Path::new("crosswalk.toml"), std::iter::empty())
    }

    const RULES: &str = r#"
        [routing]
        default_cbo = "north"
        [[routing.rules]]
        resources = ["veteran"]
        cbo = "closed"
        [[routing.rules]]
        resources = ["mental_health", "homelessness"]
        districts = ["South", "D5"]
        cbo = "south"
    "#;

    #[test]
    fn explicit_then_first_active_matching_rule_then_default() {
        let config = config(RULES).expect("valid");
        let routed = |explicit, resources: &[ResourceCategory], district, exclude| {
            route(&config, explicit, resources, district, exclude)
        };
        assert_eq!(
            routed(Some("south"), &[Veteran], "x", None).map(|a| a.route),
            Ok(Route::Explicit)
        );
        assert_eq!(
            routed(Some("pd"), &[], "x", None),
            Err(RoutingError::NotAnActiveCbo)
        );
        assert_eq!(
            routed(Some("closed"), &[], "x", None),
            Err(RoutingError::NotAnActiveCbo)
        );
        let by_rule = routed(None, &[Veteran, MentalHealth], "south", None).expect("routes");
        assert_eq!(
            (by_rule.cbo.as_str(), by_rule.route),
            ("south", Route::Rule(1))
        );
        // The inactive CBO's rule is skipped; a district outside the rule falls through.
        let default = routed(None, &[Veteran, Homelessness], "north", None).expect("routes");
        assert_eq!(
            (default.cbo.as_str(), default.route),
            ("north", Route::Default)
        );
        // The declining CBO is never chosen again.
        assert_eq!(
            routed(None, &[Veteran], "x", Some("north")),
            Err(RoutingError::NoRoute)
        );
    }

    #[test]
    fn start_up_fails_on_a_rule_naming_a_non_cbo_or_unknown_partner() {
        let e = config("[routing]\ndefault_cbo = \"pd\"").expect_err("police");
        assert_eq!(e.key, "routing.default_cbo");
        let e = config("[[routing.rules]]\nresources = [\"veteran\"]\ncbo = \"nobody\"")
            .expect_err("unknown");
        assert_eq!(e.key, "routing.rules[0].cbo");
        let e = config("[[routing.rules]]\ncbo = \"north\"").expect_err("catch-all rule");
        assert_eq!(e.key, "routing.rules[0]");
        let e = config("[[routing.rules]]\nresources = [\"veterans\"]\ncbo = \"north\"")
            .expect_err("unknown category");
        assert!(e.key.starts_with("routing.rules"), "{e}");
        assert!(config("").expect("no routing").routing.rules.is_empty());
    }
}
