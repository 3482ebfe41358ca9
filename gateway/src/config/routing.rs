//! The `[routing]` section: which CBO a referral goes to when it names none.
//! The rules themselves are applied in [`crate::exchange::routing`].

use serde::Deserialize;

use super::{Config, ConfigError, PartnerKind};
use crate::domain::vocabulary::ResourceCategory;

/// The `[routing]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// Where a referral goes when it names no CBO and no rule matches. Without
    /// it, such a referral is refused (and must name `assign_to`).
    #[serde(default)]
    pub default_cbo: Option<String>,
    /// Tried in order; the first match wins.
    #[serde(default)]
    pub rules: Vec<RoutingRule>,
}

/// One `[[routing.rules]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingRule {
    /// Matches a referral requesting any of these; empty matches any.
    #[serde(default)]
    pub resources: Vec<ResourceCategory>,
    /// Matches a referral from any of these districts; empty matches any.
    #[serde(default)]
    pub districts: Vec<String>,
    /// The CBO the rule routes to.
    pub cbo: String,
}

impl RoutingConfig {
    /// Every CBO named must be a registered CBO; every rule must narrow something.
    pub fn validate(&self, config: &Config) -> Result<(), ConfigError> {
        let err = |key: String, problem: &str| Err(ConfigError::new(&config.source, key, problem));
        let check_cbo = |key: String, id: &str| match config.partners.get(id) {
            None => err(key, "names no partner in the registry"),
            Some(p) if p.kind != PartnerKind::Cbo => err(key, "names a partner that is not a cbo"),
            Some(p) => {
                if !p.active {
                    tracing::warn!(%key, "routing names an inactive CBO; it is skipped while inactive");
                }
                Ok(())
            }
        };
        if let Some(default) = &self.default_cbo {
            check_cbo("routing.default_cbo".to_owned(), default)?;
        }
        for (i, rule) in self.rules.iter().enumerate() {
            check_cbo(format!("routing.rules[{i}].cbo"), &rule.cbo)?;
            if rule.resources.is_empty() && rule.districts.is_empty() {
                return err(
                    format!("routing.rules[{i}]"),
                    "a rule must list resources or districts (use default_cbo for a catch-all)",
                );
            }
            if rule.districts.iter().any(|d| d.trim().is_empty()) {
                return err(
                    format!("routing.rules[{i}].districts"),
                    "must not hold an empty district",
                );
            }
        }
        Ok(())
    }
}
