//! The match rule: [`compare`] two fingerprints, get a [`MatchScore`].
//! The rule itself is documented in the module docs of [`crate::linkage`].

use super::bloom::{Bloom, Region};
use super::fingerprint::Fingerprint;
use super::tokens::{Strength, TokenKind};

/// Rule 3(a): a pair agreeing on only weak tokens is a match when its names are at
/// least this alike (mean Dice over the names both sides have). A typo or an
/// OCR slip in one name keeps 0.8–0.9; twins, whose given names differ, are
/// mostly near 0.6 (measured on synthetic pairs: 2% of typos fall below 0.75,
/// 2% of twins above).
pub const NAMES_DICE_MIN: f64 = 0.75;
/// ...and the detail regions at least this alike. A day-of-birth typo keeps about
/// 0.85, a missing phone about 0.9; a new address drops to near 0.5.
pub const DETAILS_DICE_MIN: f64 = 0.78;
/// ...or this alike when only one name could be compared (the other is missing
/// on one side), since the names then say less.
pub const DETAILS_DICE_MIN_ONE_NAME: f64 = 0.9;
/// Rule 3(b): the names threshold when the phone number or the email agrees as
/// well as the date of birth. Two letters swapped in a short name ("Jsoe" for
/// "José") cost most of its bigrams; a personal contact on top of the date of
/// birth is enough evidence to accept that.
pub const NAMES_DICE_MIN_WITH_CONTACT: f64 = 0.7;
/// Rule 3(c): the same given name and date of birth (a `given_dob` token) with
/// details this alike is a match whatever the surname: a surname changed by
/// marriage, or recorded wrong.
pub const DETAILS_DICE_NAME_CHANGE: f64 = 0.9;

/// The review band: a pair the rule does not link goes to the review queue
/// (`subjects/review.rs`) when its whole Bloom filters are at least this
/// alike — most fields agree, but no token the rule trusts does (a date of
/// birth garbled along with a name, a missing date of birth without a shared
/// phone or email).
pub const REVIEW_DICE_MIN: f64 = 0.7;
/// ...or when a weak token pins the date of birth and the names are at least
/// this alike: the cases the rule refuses on purpose because they look like a
/// twin, a sibling or a namesake parent as much as a typo — a person decides.
pub const REVIEW_NAMES_DICE_MIN_DATED: f64 = 0.5;

/// How a comparison was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// A strong token agrees.
    StrongToken,
    /// Weak tokens agree and the Bloom filter regions are alike enough.
    Corroborated,
    /// Not a match.
    NoMatch,
    /// One side is unlinkable, or the two were made under different keys.
    NotComparable,
}

/// The outcome of comparing two fingerprints. `score` orders candidates (higher
/// is more alike) and lies in 0..=1; whether the pair is a match is
/// [`MatchScore::is_match`], which holds exactly when `score >= 0.5`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatchScore {
    score: f64,
    dice: f64,
    names_dice: f64,
    /// How many names (0, 1 or 2) both sides had to compare.
    names_compared: u8,
    details_dice: f64,
    /// Bit `k` set when tokens of kind `k` agree.
    agreeing: u16,
    decision: Decision,
}

impl MatchScore {
    const NOT_COMPARABLE: Self = Self {
        score: 0.0,
        dice: 0.0,
        names_dice: 0.0,
        names_compared: 0,
        details_dice: 0.0,
        agreeing: 0,
        decision: Decision::NotComparable,
    };

    pub fn is_match(&self) -> bool {
        matches!(
            self.decision,
            Decision::StrongToken | Decision::Corroborated
        )
    }

    /// Not a match, but close enough that a person should look: the review
    /// band ([`REVIEW_DICE_MIN`], [`REVIEW_NAMES_DICE_MIN_DATED`]).
    pub fn needs_review(&self) -> bool {
        if self.decision != Decision::NoMatch {
            return false;
        }
        let dated = TokenKind::ALL.iter().any(|k| {
            k.pins_birth_date() && k.strength() == Strength::Weak && self.agreeing & k.bit() != 0
        });
        self.dice >= REVIEW_DICE_MIN
            || (dated && self.names_compared > 0 && self.names_dice >= REVIEW_NAMES_DICE_MIN_DATED)
    }

    /// In 0..=1: 0.75..=1 for a strong-token match, 0.5..0.75 for a corroborated
    /// match, below 0.5 for no match; within each band, the Dice similarity of the
    /// whole Bloom filters.
    pub fn score(&self) -> f64 {
        self.score
    }

    /// Dice similarity of the whole Bloom filters.
    pub fn dice(&self) -> f64 {
        self.dice
    }

    /// Mean Dice similarity of the names both sides have, compared crosswise
    /// when that fits better (given name and surname swapped).
    pub fn names_dice(&self) -> f64 {
        self.names_dice
    }

    pub fn names_compared(&self) -> u8 {
        self.names_compared
    }

    pub fn details_dice(&self) -> f64 {
        self.details_dice
    }

    pub fn decision(&self) -> Decision {
        self.decision
    }

    /// The token kinds on which the two agree.
    pub fn agreeing_kinds(&self) -> impl Iterator<Item = TokenKind> + '_ {
        TokenKind::ALL
            .into_iter()
            .filter(|k| self.agreeing & k.bit() != 0)
    }
}

/// Compares two fingerprints by the documented rule. Symmetric:
/// `compare(a, b) == compare(b, a)`.
pub fn compare(a: &Fingerprint, b: &Fingerprint) -> MatchScore {
    if !a.linkable || !b.linkable || a.key_version != b.key_version {
        return MatchScore::NOT_COMPARABLE;
    }
    let agreeing = agreeing_kinds(a, b);
    let agrees = |kind: TokenKind| agreeing & kind.bit() != 0;
    let strong = TokenKind::ALL
        .iter()
        .any(|k| k.strength() == Strength::Strong && agrees(*k));
    let dice = a.bloom.dice(&b.bloom);
    let (names_dice, names_compared) = name_similarity(&a.bloom, &b.bloom);
    let details_dice = a
        .bloom
        .dice_regions(Region::Details, &b.bloom, Region::Details);

    let details_min = if names_compared == 2 {
        DETAILS_DICE_MIN
    } else {
        DETAILS_DICE_MIN_ONE_NAME
    };
    let dated = TokenKind::ALL
        .iter()
        .any(|k| k.pins_birth_date() && k.strength() == Strength::Weak && agrees(*k));
    let names_alike = names_compared > 0 && names_dice >= NAMES_DICE_MIN;
    let rest_alike = names_alike && details_dice >= details_min;
    let contact = names_compared > 0
        && names_dice >= NAMES_DICE_MIN_WITH_CONTACT
        && (agrees(TokenKind::PhoneDob) || agrees(TokenKind::Email));
    let name_change = agrees(TokenKind::GivenDob) && details_dice >= DETAILS_DICE_NAME_CHANGE;
    // Without a date of birth on one side there is no date to pin.
    let undated = !(a.has_dob && b.has_dob)
        && rest_alike
        && (agrees(TokenKind::NamesPhone) || agrees(TokenKind::Email));
    let corroborated = (dated && (rest_alike || contact || name_change)) || undated;

    let (decision, score) = if strong {
        (Decision::StrongToken, 0.75 + 0.25 * dice)
    } else if corroborated {
        (Decision::Corroborated, 0.5 + 0.2499 * dice)
    } else {
        (Decision::NoMatch, 0.4999 * dice)
    };
    MatchScore {
        score,
        dice,
        names_dice,
        names_compared,
        details_dice,
        agreeing,
        decision,
    }
}

/// Mean Dice of the names both sides have, straight (given with given, surname
/// with surname) or crosswise (given with surname), whichever compares more
/// names and, at equal count, is more alike. Returns the mean and the count.
fn name_similarity(a: &Bloom, b: &Bloom) -> (f64, u8) {
    use Region::{Given, Surname};
    let orient = |pairs: [(Region, Region); 2]| {
        let (mut sum, mut n) = (0.0, 0u8);
        for (ra, rb) in pairs {
            if a.has(ra) && b.has(rb) {
                sum += a.dice_regions(ra, b, rb);
                n += 1;
            }
        }
        (if n == 0 { 0.0 } else { sum / f64::from(n) }, n)
    };
    let straight = orient([(Given, Given), (Surname, Surname)]);
    let crossed = orient([(Given, Surname), (Surname, Given)]);
    if (crossed.1, crossed.0) > (straight.1, straight.0) {
        crossed
    } else {
        straight
    }
}

/// A mask of the kinds whose tokens are equal. Both lists are sorted by kind
/// with at most one token per kind.
fn agreeing_kinds(a: &Fingerprint, b: &Fingerprint) -> u16 {
    let (mut left, mut right) = (a.tokens.iter().peekable(), b.tokens.iter().peekable());
    let mut mask = 0u16;
    while let (Some(x), Some(y)) = (left.peek(), right.peek()) {
        match x.kind.cmp(&y.kind) {
            std::cmp::Ordering::Less => {
                left.next();
            }
            std::cmp::Ordering::Greater => {
                right.next();
            }
            std::cmp::Ordering::Equal => {
                if x.value == y.value {
                    mask |= x.kind.bit();
                }
                left.next();
                right.next();
            }
        }
    }
    mask
}
