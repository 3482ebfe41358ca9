//! Generalization hierarchies: each quasi-identifier's levels, how a value is
//! coarsened to a level and how it is written. Which levels a study uses is
//! its plan's business ([`super::plan`]).
//!
//! # Hierarchies (level 0 is what the study's mode already requires)
//! | quasi-identifier | `safe_harbor` | `limited_data_set` |
//! |---|---|---|
//! | `age` (on the plan's reference date) | 0: years, over 89 as `90+` → 1: 5-year band (`35-39`) → 2: 10-year band (`30-39`) → 3: `*` | same |
//! | `sex` | 0: `F`/`M`/`X`/`U` → 1: `*` | same |
//! | `zip` | 0: ZIP3, `000` for the 17 three-digit areas of 20,000 people or fewer → 1: `*` | 0: ZIP5 → 1: ZIP3 (same rule) → 2: `*` |
//! | `state` | 0: state → 1: `*` | same |
//! | `city` | never released | 0: city → 1: `*` |
//! | `district` | never released | 0: district → 1: `*` |
//! | `contact_date` | 0: year → 1: `*` | 0: date → 1: month (`2026-03`) → 2: year → 3: `*` |
//!
//! An unknown value stays unknown (empty) at every level but `*`.

use std::collections::HashMap;

use chrono::{Datelike, NaiveDate};

use super::study::{QuasiIdentifier, StudyMode};

/// Three-digit ZIP areas of 20,000 people or fewer (2000 Census, as listed by
/// HHS guidance on §164.514(b)(2)(i)(B)): released as `000`.
pub const RESTRICTED_ZIP3: [u16; 17] = [
    36, 59, 63, 102, 203, 556, 692, 790, 821, 823, 830, 831, 878, 879, 884, 890, 893,
];

/// Interns short strings (city, state, district) as small codes; 0 is unknown.
#[derive(Debug, Default)]
pub struct Interner {
    codes: HashMap<String, u32>,
    values: Vec<String>,
}

impl Interner {
    pub fn code(&mut self, value: Option<&str>) -> u32 {
        let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            return 0;
        };
        if let Some(code) = self.codes.get(value) {
            return *code;
        }
        self.values.push(value.to_owned());
        let code = u32::try_from(self.values.len()).unwrap_or(u32::MAX);
        self.codes.insert(value.to_owned(), code);
        code
    }

    pub fn value(&self, code: u32) -> &str {
        code.checked_sub(1)
            .and_then(|i| self.values.get(i as usize))
            .map_or("", String::as_str)
    }
}

/// A referral's quasi-identifiers at full detail, as small codes (0 unknown).
/// Its `Debug` shows none of them: age, sex and ZIP together single people
/// out, so they stay out of logs and panics.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct QiValues {
    /// Age in whole years on the plan's reference date, plus one.
    pub age: u32,
    /// 1 F, 2 M, 3 other, 4 unknown-as-recorded.
    pub sex: u32,
    /// ZIP5 plus one.
    pub zip: u32,
    pub state: u32,
    pub city: u32,
    pub district: u32,
    /// Days since 1970-01-01 of the contact date, plus one.
    pub contact_day: u32,
}

impl QiValues {
    pub fn get(&self, qi: QuasiIdentifier) -> u32 {
        match qi {
            QuasiIdentifier::Age => self.age,
            QuasiIdentifier::Sex => self.sex,
            QuasiIdentifier::Zip => self.zip,
            QuasiIdentifier::State => self.state,
            QuasiIdentifier::City => self.city,
            QuasiIdentifier::District => self.district,
            QuasiIdentifier::ContactDate => self.contact_day,
        }
    }

    /// Only the declared quasi-identifiers (the others zeroed): the class key.
    #[must_use]
    pub fn project(&self, declared: &[QuasiIdentifier]) -> Self {
        let mut out = Self::default();
        for qi in declared {
            let v = self.get(*qi);
            match qi {
                QuasiIdentifier::Age => out.age = v,
                QuasiIdentifier::Sex => out.sex = v,
                QuasiIdentifier::Zip => out.zip = v,
                QuasiIdentifier::State => out.state = v,
                QuasiIdentifier::City => out.city = v,
                QuasiIdentifier::District => out.district = v,
                QuasiIdentifier::ContactDate => out.contact_day = v,
            }
        }
        out
    }
}

/// Age in whole years on `on`.
pub fn age_on(dob: NaiveDate, on: NaiveDate) -> Option<u32> {
    on.years_since(dob)
}

pub fn day_code(date: NaiveDate) -> u32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    u32::try_from((date - epoch).num_days() + 1).unwrap_or(0)
}

fn day_of(code: u32) -> Option<NaiveDate> {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
    epoch.checked_add_days(chrono::Days::new(u64::from(code.checked_sub(1)?)))
}

/// The highest level of `qi` under `mode`.
pub fn max_level(qi: QuasiIdentifier, mode: StudyMode) -> u8 {
    match (qi, mode) {
        (QuasiIdentifier::Age, _) | (QuasiIdentifier::ContactDate, StudyMode::LimitedDataSet) => 3,
        (QuasiIdentifier::Zip, StudyMode::LimitedDataSet) => 2,
        _ => 1,
    }
}

const STAR: u32 = u32::MAX;

/// The generalized code of a level-0 `value` (0 unknown, [`STAR`] suppressed).
pub fn generalize(qi: QuasiIdentifier, mode: StudyMode, value: u32, level: u8) -> u32 {
    if level >= max_level(qi, mode) {
        return STAR;
    }
    if value == 0 {
        return 0;
    }
    match qi {
        QuasiIdentifier::Age => {
            let years = (value - 1).min(90);
            match level {
                0 => years + 1,
                1 if years >= 90 => 1000,
                1 => years / 5 + 1,
                _ if years >= 90 => 1000,
                _ => years / 10 + 1,
            }
        }
        QuasiIdentifier::Zip => {
            let zip3 = zip3_of(value - 1) + 1;
            match (mode, level) {
                (StudyMode::LimitedDataSet, 0) => value,
                _ => zip3,
            }
        }
        QuasiIdentifier::ContactDate => {
            let Some(day) = day_of(value) else { return 0 };
            let year = u32::try_from(day.year()).unwrap_or(0);
            match (mode, level) {
                (StudyMode::LimitedDataSet, 0) => value,
                (StudyMode::LimitedDataSet, 1) => year * 100 + day.month(),
                _ => year,
            }
        }
        _ => value,
    }
}

/// ZIP3 with the small-area rule applied (the number, `000` → 0).
fn zip3_of(zip5: u32) -> u32 {
    let zip3 = zip5 / 100;
    if RESTRICTED_ZIP3.iter().any(|r| u32::from(*r) == zip3) {
        0
    } else {
        zip3
    }
}

/// The text of a generalized code, as it is written to the export.
pub fn render(
    qi: QuasiIdentifier,
    mode: StudyMode,
    code: u32,
    level: u8,
    interned: &Interner,
) -> String {
    if code == STAR {
        return "*".to_owned();
    }
    if code == 0 {
        return String::new();
    }
    match qi {
        QuasiIdentifier::Age => match level {
            _ if code == 1000 || (level == 0 && code > 90) => "90+".to_owned(),
            0 => (code - 1).to_string(),
            1 => format!("{}-{}", (code - 1) * 5, (code - 1) * 5 + 4),
            _ => format!("{}-{}", (code - 1) * 10, (code - 1) * 10 + 9),
        },
        QuasiIdentifier::Sex => match code {
            1 => "F",
            2 => "M",
            3 => "X",
            _ => "U",
        }
        .to_owned(),
        QuasiIdentifier::Zip => match (mode, level) {
            (StudyMode::LimitedDataSet, 0) => format!("{:05}", code - 1),
            _ => format!("{:03}", code - 1),
        },
        QuasiIdentifier::ContactDate => match (mode, level) {
            (StudyMode::LimitedDataSet, 0) => {
                day_of(code).map(|d| d.to_string()).unwrap_or_default()
            }
            (StudyMode::LimitedDataSet, 1) => format!("{}-{:02}", code / 100, code % 100),
            _ => code.to_string(),
        },
        QuasiIdentifier::State | QuasiIdentifier::City | QuasiIdentifier::District => {
            interned.value(code).to_owned()
        }
    }
}

/// Levels per quasi-identifier, indexed by [`QuasiIdentifier::index`].
pub type Node = [u8; 7];

impl std::fmt::Debug for QiValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QiValues(..)")
    }
}

/// A class key generalized to a node.
pub fn generalized_key(
    key: &QiValues,
    node: &Node,
    declared: &[QuasiIdentifier],
    mode: StudyMode,
) -> [u32; 7] {
    let mut out = [0; 7];
    for qi in declared {
        let i = qi.index();
        out[i] = generalize(*qi, mode, key.get(*qi), node[i]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SH: StudyMode = StudyMode::SafeHarbor;

    #[test]
    fn ages_over_89_are_pooled_and_bands_render() {
        let i = Interner::default();
        let r = |years: u32, level| {
            let code = generalize(QuasiIdentifier::Age, SH, years + 1, level);
            render(QuasiIdentifier::Age, SH, code, level, &i)
        };
        assert_eq!(r(37, 0), "37");
        assert_eq!(r(93, 0), "90+");
        assert_eq!(r(89, 0), "89");
        assert_eq!(r(37, 1), "35-39");
        assert_eq!(r(37, 2), "30-39");
        assert_eq!(r(95, 2), "90+");
        assert_eq!(r(37, 3), "*");
    }

    #[test]
    fn small_zip3_areas_become_000() {
        let i = Interner::default();
        let r = |zip: u32, mode, level| {
            let code = generalize(QuasiIdentifier::Zip, mode, zip + 1, level);
            render(QuasiIdentifier::Zip, mode, code, level, &i)
        };
        assert_eq!(r(95822, SH, 0), "958");
        assert_eq!(r(3601, SH, 0), "000");
        assert_eq!(r(89301, SH, 0), "000");
        assert_eq!(r(95822, StudyMode::LimitedDataSet, 0), "95822");
        assert_eq!(r(95822, StudyMode::LimitedDataSet, 1), "958");
        assert_eq!(r(95822, SH, 1), "*");
    }
}
