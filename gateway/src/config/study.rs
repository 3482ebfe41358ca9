//! Evaluator studies: who may export what, under which de-identification rule.
//!
//! A study is registered by an operator in the configuration, one
//! `[studies.ID]` table each (every key overridable from the environment,
//! `CROSSWALK_STUDIES__DEMO_STUDY__K=11`):
//!
//! ```toml
//! [studies.demo-study]
//! evaluator = "evaluator"              # a registered evaluator partner with an age_recipient
//! mode = "safe_harbor"                 # or "limited_data_set"
//! purpose = "HRESCH"                   # the purpose of use the study's exports are made for
//! dua_reference = "DUA-2026-014"       # the data-use agreement on file
//! dua_expires = "2027-06-30"           # last day it covers; exports are refused after
//! quasi_identifiers = ["age", "sex", "zip", "state", "contact_date"]
//! k = 5                                # every equivalence class holds at least k people
//! max_suppression_percent = 5          # optional: referrals the first plan may suppress before generalizing further
//! # part2_research = true              # optional: 42 CFR Part 2 records are exported (42 CFR 2.52)
//! # part2_dua_reference = "DUA-2026-014-SUD"   # required with part2_research: its own agreement
//! # part2_dua_expires = "2027-06-30"
//! ```
//!
//! Start-up fails on a study naming an unknown or non-evaluator partner, one
//! without an age recipient, a `k` below 2, an unknown or repeated
//! quasi-identifier, a Safe Harbor study declaring `city` or `district`
//! (Safe Harbor releases no geographic unit below the state but ZIP3), or a
//! Part 2 agreement without `part2_research` (or the flag without one).
//!
//! # Part 2 research
//! Substance-use (42 CFR Part 2) case statuses reach an evaluator only in a
//! study configured for it: `part2_research = true` with an agreement of its
//! own (`part2_dua_reference`, `part2_dua_expires`; 42 CFR 2.52 research
//! disclosures need the researcher's written agreement to the Part 2
//! restrictions, apart from the HIPAA data-use agreement). The export tells
//! the policy (`input.study.part2_research`) and the policy's `export`
//! decision releases their fields with the 42 CFR 2.32 redisclosure statement,
//! which goes into the manifest's `notices`. In any other study such a record
//! is not in the export at all: a row with blank program and status would
//! mark its person as a Part 2 patient (42 CFR 2.13).

use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Deserializer};

use super::{Config, PartnerKind, is_valid_partner_id};

/// One study, as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyConfig {
    /// The only partner that may export it; its `age_recipient` is what the
    /// files are encrypted to.
    pub evaluator: String,
    pub mode: StudyMode,
    /// What the exports are for: a request declaring another purpose is refused.
    #[serde(default = "default_purpose")]
    pub purpose: String,
    /// The data-use agreement's reference, recorded in every manifest.
    pub dua_reference: String,
    /// The last day the agreement covers (UTC).
    #[serde(deserialize_with = "date")]
    pub dua_expires: NaiveDate,
    /// The columns k-anonymity is enforced over (see [`QuasiIdentifier`]).
    pub quasi_identifiers: Vec<QuasiIdentifier>,
    /// Minimum equivalence-class size.
    #[serde(default = "default_k")]
    pub k: u32,
    /// How many referrals (percent) the study's plan may suppress at a
    /// generalization level before it tries a coarser one; used once, when the
    /// plan is made (see `crate::exports::plan`).
    #[serde(default = "default_max_suppression")]
    pub max_suppression_percent: f64,
    /// Whether 42 CFR Part 2 (substance-use) records are exported; see the
    /// module docs.
    #[serde(default)]
    pub part2_research: bool,
    /// The Part 2 research agreement on file (required with `part2_research`),
    /// recorded in every manifest of the study.
    #[serde(default)]
    pub part2_dua_reference: Option<String>,
    /// Its last day: the study's exports are refused after it.
    #[serde(default, deserialize_with = "optional_date")]
    pub part2_dua_expires: Option<NaiveDate>,
}

/// The de-identification rule of a study.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StudyMode {
    /// HIPAA §164.514(b)(2): none of the 18 identifiers; dates to the year,
    /// ages over 89 as `90+`, ZIP to three digits (`000` for small areas).
    SafeHarbor,
    /// HIPAA §164.514(e): under a data-use agreement, dates, city, district and
    /// five-digit ZIP may stay; direct identifiers never.
    LimitedDataSet,
}

impl StudyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SafeHarbor => "safe_harbor",
            Self::LimitedDataSet => "limited_data_set",
        }
    }
}

/// A column k-anonymity can be enforced over, each with its hierarchy (see
/// [`crate::exports::hierarchy`]).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum QuasiIdentifier {
    /// Age at contact, from the date of birth.
    Age,
    Sex,
    Zip,
    State,
    /// Limited data sets only.
    City,
    /// Limited data sets only.
    District,
    /// The contact date (year under Safe Harbor).
    ContactDate,
}

impl QuasiIdentifier {
    pub const ALL: [Self; 7] = [
        Self::Age,
        Self::Sex,
        Self::Zip,
        Self::State,
        Self::City,
        Self::District,
        Self::ContactDate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Age => "age",
            Self::Sex => "sex",
            Self::Zip => "zip",
            Self::State => "state",
            Self::City => "city",
            Self::District => "district",
            Self::ContactDate => "contact_date",
        }
    }

    pub(crate) fn index(self) -> usize {
        Self::ALL.iter().position(|q| *q == self).unwrap_or(0)
    }
}

impl fmt::Display for QuasiIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn default_purpose() -> String {
    "HRESCH".to_owned()
}
fn default_k() -> u32 {
    5
}
fn default_max_suppression() -> f64 {
    5.0
}

fn optional_date<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<NaiveDate>, D::Error> {
    date(deserializer).map(Some)
}

/// A date written as a TOML date (`2027-06-30`) or a string (`"2027-06-30"`):
/// an environment override is read as TOML, so both forms arrive.
pub(crate) fn date<'de, D: Deserializer<'de>>(deserializer: D) -> Result<NaiveDate, D::Error> {
    let value = toml::Value::deserialize(deserializer)?;
    let text = match value {
        toml::Value::String(s) => s,
        toml::Value::Datetime(d) => d.to_string(),
        _ => return Err(serde::de::Error::custom("must be a date, YYYY-MM-DD")),
    };
    NaiveDate::parse_from_str(&text, "%Y-%m-%d")
        .map_err(|_| serde::de::Error::custom("must be a date, YYYY-MM-DD"))
}

impl StudyConfig {
    /// What serde cannot check; the error names the key under `studies.ID`.
    pub(crate) fn validate(&self, id: &str, config: &Config) -> Result<(), (&'static str, String)> {
        if !is_valid_partner_id(id) {
            return Err((
                "",
                "a study id is 1-64 characters of a-z, 0-9 and '-'".into(),
            ));
        }
        match config.partners.get(&self.evaluator) {
            None => return Err(("evaluator", "names no registered partner".into())),
            Some(p) if p.kind != PartnerKind::Evaluator => {
                return Err((
                    "evaluator",
                    "names a partner that is not an evaluator".into(),
                ));
            }
            Some(p) if p.age_recipient.is_none() => {
                return Err((
                    "evaluator",
                    "the evaluator has no age_recipient to encrypt exports to".into(),
                ));
            }
            Some(_) => {}
        }
        if self.purpose.parse::<crate::domain::Purpose>().is_err() {
            return Err(("purpose", "must be an HL7 PurposeOfUse code".into()));
        }
        if self.dua_reference.trim().is_empty() {
            return Err(("dua_reference", "must not be empty".into()));
        }
        if !(2..=1000).contains(&self.k) {
            return Err(("k", "must be from 2 to 1000".into()));
        }
        if !(0.0..=100.0).contains(&self.max_suppression_percent) {
            return Err(("max_suppression_percent", "must be from 0 to 100".into()));
        }
        match (
            self.part2_research,
            &self.part2_dua_reference,
            self.part2_dua_expires,
        ) {
            (true, None, _) => {
                return Err((
                    "part2_dua_reference",
                    "a Part 2 research study needs its Part 2 agreement's reference".into(),
                ));
            }
            (true, Some(r), _) if r.trim().is_empty() => {
                return Err(("part2_dua_reference", "must not be empty".into()));
            }
            (true, _, None) => {
                return Err((
                    "part2_dua_expires",
                    "a Part 2 research study needs its Part 2 agreement's last day".into(),
                ));
            }
            (false, Some(_), _) | (false, _, Some(_)) => {
                return Err((
                    "part2_research",
                    "a Part 2 agreement is configured: set part2_research = true, or remove it"
                        .into(),
                ));
            }
            _ => {}
        }
        if self.quasi_identifiers.is_empty() {
            return Err(("quasi_identifiers", "must name at least one".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for qi in &self.quasi_identifiers {
            if !seen.insert(*qi) {
                return Err(("quasi_identifiers", format!("names {qi} twice")));
            }
            if self.mode == StudyMode::SafeHarbor
                && matches!(qi, QuasiIdentifier::City | QuasiIdentifier::District)
            {
                return Err((
                    "quasi_identifiers",
                    format!("{qi} is never released under safe_harbor"),
                ));
            }
        }
        Ok(())
    }
}
