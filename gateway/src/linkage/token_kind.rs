//! The kinds of linkage token and how much each says: the ground floor of
//! `linkage`, below the keys (one key per kind) and the tokens (one hash per
//! kind). Which fields each kind combines is in [`super::tokens`].

/// A token's kind. The discriminant is stored with the token: never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum TokenKind {
    /// names + dob key. Strong.
    NamesDob = 0,
    /// alias + dob key + phone. Strong.
    GivenDobPhone = 1,
    /// alias + email. Strong.
    GivenEmail = 2,
    /// unordered phonetic names + dob key + sex. Weak: four-letter phonetic
    /// codes collide across unrelated names (Mary Cruz and Grace Moore share
    /// one pair); sex is in it so that boy–girl twins with names that sound
    /// alike (Francis and Frances) at least differ here.
    PhoneticNamesDobSex = 3,
    /// alias + dob key. Weak (two Johns born on one day, in a large registry).
    GivenDob = 4,
    /// surname key + dob key. Weak (twins share it).
    SurnameDob = 5,
    /// dob key + ZIP. Weak (twins share it).
    DobZip = 6,
    /// dob key + phone. Weak (twins share a home phone).
    PhoneDob = 7,
    /// email alone. Weak (a family may share one address).
    Email = 8,
    /// names + phone. Weak (a father and son of one name share a phone).
    NamesPhone = 9,
    /// names + ZIP. Weak (likewise).
    NamesZip = 10,
    /// names + birth year. Weak.
    NamesYear = 11,
    /// phonetic surname + birth year: the coarse blocking key. Weak.
    PhoneticSurnameYear = 12,
    /// names + the unordered {month, day} without the year: still agrees when
    /// the year has a typo, where a namesake parent or child would not. Weak.
    NamesDayMonth = 13,
}

/// How much an agreeing token says on its own (see the match rule in the module
/// docs of [`crate::linkage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strength {
    /// Agreement is a match by itself: the kind pins a person's given name to
    /// their date of birth or to a contact only they are likely to hold.
    Strong,
    /// Agreement makes a pair a candidate and corroborates Bloom similarity,
    /// but is shared by people who are not the same person often enough
    /// (twins, a father and son of one name) that it never decides alone.
    Weak,
}

impl TokenKind {
    pub const COUNT: usize = 14;
    pub const ALL: [Self; Self::COUNT] = [
        Self::NamesDob,
        Self::GivenDobPhone,
        Self::GivenEmail,
        Self::PhoneticNamesDobSex,
        Self::GivenDob,
        Self::SurnameDob,
        Self::DobZip,
        Self::PhoneDob,
        Self::Email,
        Self::NamesPhone,
        Self::NamesZip,
        Self::NamesYear,
        Self::PhoneticSurnameYear,
        Self::NamesDayMonth,
    ];

    /// The kind's name in key-derivation contexts. Never change one.
    pub fn name(self) -> &'static str {
        match self {
            Self::NamesDob => "names_dob",
            Self::GivenDobPhone => "given_dob_phone",
            Self::GivenEmail => "given_email",
            Self::PhoneticNamesDobSex => "phonetic_names_dob_sex",
            Self::GivenDob => "given_dob",
            Self::SurnameDob => "surname_dob",
            Self::DobZip => "dob_zip",
            Self::PhoneDob => "phone_dob",
            Self::Email => "email",
            Self::NamesPhone => "names_phone",
            Self::NamesZip => "names_zip",
            Self::NamesYear => "names_year",
            Self::PhoneticSurnameYear => "phonetic_surname_year",
            Self::NamesDayMonth => "names_day_month",
        }
    }

    pub fn strength(self) -> Strength {
        match self {
            Self::NamesDob | Self::GivenDobPhone | Self::GivenEmail => Strength::Strong,
            _ => Strength::Weak,
        }
    }

    /// Whether tokens of this kind are stored in the registry's token index
    /// (`linkage_tokens`) and looked up to find candidates.
    ///
    /// Candidate lookup only has to find every stored identity that *can*
    /// match, and every match needs an agreeing token of a deciding kind (a
    /// strong one, one that pins the date of birth, or `names_phone` or
    /// `email`). Some deciding kinds never agree alone: their fields are a
    /// superset of another kind's, built from the same parts, so when they
    /// agree that kind agrees too —
    /// `names_dob` ⇒ `names_year`, `given_dob_phone` ⇒ `given_dob`,
    /// `given_email` ⇒ `email`. Those three, and the two kinds that decide
    /// nothing (`names_zip`, `phonetic_surname_year`), need no row: 9 rows per
    /// identity instead of 14, each a random insert into the index. They stay
    /// in the fingerprint, where the rule reads them. (Rows of every kind
    /// written before this are harmless: nothing looks them up.) The registry's test
    /// `every_match_agrees_on_a_kind_that_is_looked_up` checks it on
    /// synthetic people, their corrupted copies and their households.
    pub fn is_indexed(self) -> bool {
        !matches!(
            self,
            Self::NamesDob
                | Self::GivenDobPhone
                | Self::GivenEmail
                | Self::NamesZip
                | Self::PhoneticSurnameYear
        )
    }

    /// Whether the kind pins the date of birth: the whole date, or the birth
    /// year or the {month, day} together with both names. A corroborated match
    /// needs one of these to agree. (`phonetic_surname_year` does not count: a
    /// sibling born in the same year shares it.)
    pub fn pins_birth_date(self) -> bool {
        !matches!(
            self,
            Self::GivenEmail
                | Self::Email
                | Self::NamesPhone
                | Self::NamesZip
                | Self::PhoneticSurnameYear
        )
    }

    pub fn from_u8(byte: u8) -> Option<Self> {
        Self::ALL.get(usize::from(byte)).copied()
    }

    /// A bit for this kind in a `u16` mask.
    pub(super) fn bit(self) -> u16 {
        1 << (self as u16)
    }
}
