//! Administrative sex.

use super::Sex;

/// Normalizes a recorded sex: `f`/`female`/`woman` → [`Sex::Female`],
/// `m`/`male`/`man` → [`Sex::Male`], `x`/`other`/`nonbinary` → [`Sex::Other`],
/// `u`/`unknown` → [`Sex::Unknown`] (case and surrounding spaces ignored).
/// Anything else is an error rather than a guess.
pub fn normalize_sex(input: &str) -> Result<Sex, String> {
    let input = input.trim();
    let is = |words: &[&str]| words.iter().any(|word| input.eq_ignore_ascii_case(word));
    if is(&["f", "female", "woman"]) {
        Ok(Sex::Female)
    } else if is(&["m", "male", "man"]) {
        Ok(Sex::Male)
    } else if is(&["x", "other", "nonbinary", "non-binary", "non binary", "nb"]) {
        Ok(Sex::Other)
    } else if is(&["u", "unknown", "unk"]) {
        Ok(Sex::Unknown)
    } else if input.is_empty() {
        Err("is empty".to_owned())
    } else {
        Err("is not a recognized sex (use F, M, X or U)".to_owned())
    }
}

impl Sex {
    /// The canonical text of the value, which [`normalize_sex`] reads back as
    /// the same value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Female => "female",
            Self::Male => "male",
            Self::Other => "other",
            Self::Unknown => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_common_spellings() {
        for (inputs, sex) in [
            (&["F", "f", "Female", " FEMALE ", "woman"][..], Sex::Female),
            (&["M", "male", "Man"], Sex::Male),
            (&["X", "other", "Nonbinary", "non-binary"], Sex::Other),
            (&["U", "unknown"], Sex::Unknown),
        ] {
            for input in inputs {
                assert_eq!(normalize_sex(input), Ok(sex), "{input}");
            }
            assert_eq!(normalize_sex(sex.as_str()), Ok(sex));
        }
    }

    #[test]
    fn rejects_anything_else() {
        for input in ["", "fem", "boy", "1", "mf", "♀"] {
            assert!(normalize_sex(input).is_err(), "{input:?}");
        }
    }
}
