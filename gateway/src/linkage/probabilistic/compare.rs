//! Comparing two profiles field by field: each field gets one agreement
//! level (see the module docs' table), or "missing" when either side lacks it.

use super::encode::{CField, FIELDS, Profile};

/// A field's level: 0 is the strongest agreement; [`MISSING`] when either
/// side lacks the field.
pub type Levels = [u8; FIELDS];

pub const MISSING: u8 = u8::MAX;

/// Levels per field (excluding "missing").
pub const LEVELS: [usize; FIELDS] = [6, 6, 7, 6, 5, 3, 3, 3];

/// The names' Dice bands.
const NAME_BANDS: [f64; 3] = [0.8, 0.6, 0.4];
/// A name compared crosswise (given against surname) counts this much less,
/// so a straight comparison wins a tie.
const CROSS_PENALTY: f64 = 0.1;

fn band(dice: f64, bands: &[f64], first: u8) -> u8 {
    let mut level = first;
    for threshold in bands {
        if dice >= *threshold {
            return level;
        }
        level += 1;
    }
    level
}

fn same(a: Option<super::encode::Hash>, b: Option<super::encode::Hash>) -> bool {
    matches!((a, b), (Some(x), Some(y)) if x == y)
}

/// A name's level: exact (or the same canonical given name), swapped with the
/// other name, then Dice straight or crosswise.
fn name_level(
    a: &Profile,
    b: &Profile,
    (name, other): (CField, CField),
    exact: bool,
    swapped: bool,
) -> u8 {
    if exact {
        0
    } else if swapped {
        1
    } else {
        let straight = a.dice(b, name, name);
        let cross = if b.has(other) {
            a.dice(b, name, other) - CROSS_PENALTY
        } else {
            0.0
        };
        band(straight.max(cross), &NAME_BANDS, 2)
    }
}

/// The agreement pattern of two profiles.
pub fn compare(a: &Profile, b: &Profile) -> Levels {
    let mut levels = [MISSING; FIELDS];
    let both = |f: CField| a.has(f) && b.has(f);
    let ex = |f: CField| (a.exact[f as usize], b.exact[f as usize]);

    if both(CField::Given) {
        let (x, y) = ex(CField::Given);
        let exact = same(x, y) || same(a.given_alias.or(x), b.given_alias.or(y));
        let swapped = same(a.given_as_surname, b.exact[CField::Surname as usize]);
        levels[0] = name_level(a, b, (CField::Given, CField::Surname), exact, swapped);
    }
    if both(CField::Surname) {
        let (x, y) = ex(CField::Surname);
        let swapped = same(a.surname_as_given, b.exact[CField::Given as usize]);
        levels[1] = name_level(a, b, (CField::Surname, CField::Given), same(x, y), swapped);
    }
    if both(CField::Dob) {
        let (x, y) = ex(CField::Dob);
        let dice = a.dice(b, CField::Dob, CField::Dob);
        levels[2] = if same(x, y) {
            0
        } else if same(a.dob_swapped, y) {
            1
        } else if dice >= 0.75 {
            2
        } else if same(a.dob_year_month, b.dob_year_month) {
            3
        } else if same(a.dob_year, b.dob_year) {
            4
        } else if dice >= 0.5 {
            5
        } else {
            6
        };
    }
    if both(CField::Street) {
        let (x, y) = ex(CField::Street);
        levels[3] = if same(x, y) {
            0
        } else if same(a.street_rest, b.street_rest) {
            1
        } else {
            band(a.dice(b, CField::Street, CField::Street), &NAME_BANDS, 2)
        };
    }
    if both(CField::City) {
        let (x, y) = ex(CField::City);
        levels[4] = if same(x, y) {
            0
        } else {
            band(a.dice(b, CField::City, CField::City), &NAME_BANDS, 1)
        };
    }
    if both(CField::Zip) {
        let (x, y) = ex(CField::Zip);
        levels[5] = if same(x, y) {
            0
        } else if same(a.zip3, b.zip3) || a.dice(b, CField::Zip, CField::Zip) >= 0.75 {
            1
        } else {
            2
        };
    }
    if both(CField::Phone) {
        let (x, y) = ex(CField::Phone);
        levels[6] = if same(x, y) {
            0
        } else if a.dice(b, CField::Phone, CField::Phone) >= 0.75 {
            1
        } else {
            2
        };
    }
    if both(CField::Email) {
        let (x, y) = ex(CField::Email);
        levels[7] = if same(x, y) {
            0
        } else if a.dice(b, CField::Email, CField::Email) >= 0.8 {
            1
        } else {
            2
        };
    }
    levels
}
