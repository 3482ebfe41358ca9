//! Person names and city names.
//!
//! A name is folded to lower-case ASCII words ([`super::text`]), honorifics are
//! dropped and a generational suffix is split off, so that `Dr. José Núñez-García
//! Jr.` becomes `jose nunez garcia` with suffix `jr`.

use std::fmt;

use super::text::{self, Hash};

/// A normalized person name: its words, and the generational suffix that was
/// split off them (if any).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NameParts {
    /// Lower-case ASCII words separated by single spaces: `garcia lopez`.
    pub words: String,
    /// `jr`, `sr`, `ii`, `iii`, `iv` or `v`: kept apart so that `Smith Jr` and
    /// `Smith` still agree on the surname, while the suffix can still tell a
    /// father from his son when everything else agrees.
    pub suffix: Option<&'static str>,
}

impl fmt::Debug for NameParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The words are a raw identifier; a suffix alone identifies no one.
        f.debug_struct("NameParts")
            .field("words", &"[redacted]")
            .field("suffix", &self.suffix)
            .finish()
    }
}

/// Normalizes a given name or a surname.
///
/// - Text is folded to lower-case ASCII words (NFKC, then transliterated): `José Ñúñez` →
///   `jose nunez`, `O'Brien` → `obrien`, `Garcia-Lopez` → `garcia lopez`.
/// - Honorifics (`mr`, `mrs`, `ms`, `miss`, `mx`, `dr`) are dropped wherever
///   they stand.
/// - A generational suffix is split off when it follows the first remaining
///   word: the trailing run of suffix words (`Smith Jr.`, `King III`, `Smith Jr
///   III` keeps the first, `jr`), and `jr`/`sr` anywhere after the first word
///   (`Smith Jr, John`). A suffix-like first word stays a name, so `V` alone is
///   an initial.
/// - An input with no letters left is an error.
///
/// Idempotent: the words contain no honorific, no `jr`/`sr` after the first
/// word and no suffix at the end (unless it is the only word), so a second pass
/// changes nothing.
pub fn normalize_name(input: &str) -> Result<NameParts, String> {
    let folded = text::fold_words(input, Hash::Punctuation);
    let shape = NameShape::of(&folded);
    let (words, suffix) = if shape.drops_nothing() {
        (folded, None)
    } else {
        shape.rebuild(&folded)
    };
    if !words.bytes().any(|b| b.is_ascii_alphabetic()) {
        return Err("has no letters (nothing but digits, punctuation or titles)".to_owned());
    }
    Ok(NameParts { words, suffix })
}

/// What [`normalize_name`] learned about folded text in one pass, without
/// allocating.
struct NameShape {
    /// Words that are not honorifics.
    names: usize,
    /// Length of the trailing run of suffix words among them, never including
    /// the first.
    trailing_suffixes: usize,
    /// The current run of suffix words holds a `jr` or `sr`.
    run_has_jr_sr: bool,
    honorifics: bool,
    /// A `jr`/`sr` word after the first, outside the trailing run.
    inner_suffix: bool,
}

impl NameShape {
    fn of(folded: &str) -> Self {
        let mut shape = Self {
            names: 0,
            trailing_suffixes: 0,
            run_has_jr_sr: false,
            honorifics: false,
            inner_suffix: false,
        };
        for word in text::words(folded) {
            if is_honorific(word) {
                shape.honorifics = true;
                continue;
            }
            match suffix_of(word) {
                Some(suffix) if shape.names > 0 => {
                    shape.trailing_suffixes += 1;
                    shape.run_has_jr_sr |= is_jr_sr(suffix);
                }
                _ => {
                    // A run that a name word interrupts is not trailing; any
                    // `jr` or `sr` in it is still split off.
                    shape.inner_suffix |= shape.run_has_jr_sr;
                    shape.trailing_suffixes = 0;
                    shape.run_has_jr_sr = false;
                }
            }
            shape.names += 1;
        }
        shape
    }

    fn drops_nothing(&self) -> bool {
        !self.honorifics && self.trailing_suffixes == 0 && !self.inner_suffix
    }

    /// Rebuilds the name without honorifics and suffix words; returns the words
    /// and the first suffix dropped.
    fn rebuild(&self, folded: &str) -> (String, Option<&'static str>) {
        let mut words = String::with_capacity(folded.len());
        let mut suffix = None;
        let trailing_start = self.names - self.trailing_suffixes;
        let mut position = 0;
        for word in text::words(folded) {
            if is_honorific(word) {
                continue;
            }
            let dropped_suffix = if position == 0 {
                None
            } else {
                suffix_of(word)
                    .filter(|canonical| position >= trailing_start || is_jr_sr(canonical))
            };
            position += 1;
            if let Some(canonical) = dropped_suffix {
                suffix = suffix.or(Some(canonical));
                continue;
            }
            if !words.is_empty() {
                words.push(' ');
            }
            words.push_str(word);
        }
        (words, suffix)
    }
}

/// `jr` and `sr` are suffixes wherever they follow the first word; a bare
/// numeral is one only at the end (elsewhere it is more likely an initial).
fn is_jr_sr(canonical_suffix: &str) -> bool {
    matches!(canonical_suffix, "jr" | "sr")
}

fn is_honorific(word: &str) -> bool {
    matches!(word, "mr" | "mrs" | "ms" | "miss" | "mx" | "dr")
}

/// The canonical suffix a word spells, if it is one.
fn suffix_of(word: &str) -> Option<&'static str> {
    Some(match word {
        "jr" | "jnr" | "junior" => "jr",
        "sr" | "snr" | "senior" => "sr",
        "ii" | "2nd" => "ii",
        "iii" | "3rd" => "iii",
        "iv" | "4th" => "iv",
        "v" | "5th" => "v",
        _ => return None,
    })
}

/// Normalizes a city name: folded like a person name, with the abbreviations
/// that begin US place names spelled out (`St. Louis` → `saint louis`, `Ft
/// Worth` → `fort worth`, `Mt Shasta` → `mount shasta`, `N Highlands` → `north
/// highlands`).
pub fn normalize_city(input: &str) -> Result<String, String> {
    let folded = text::fold_words(input, Hash::Punctuation);
    let city = text::map_words(folded, |word| Some(expand_city_word(word)));
    if !city.bytes().any(|b| b.is_ascii_alphabetic()) {
        return Err("has no letters".to_owned());
    }
    Ok(city)
}

fn expand_city_word(word: &str) -> &str {
    match word {
        "st" | "ste" => "saint",
        "ft" => "fort",
        "mt" => "mount",
        "n" => "north",
        "s" => "south",
        "e" => "east",
        "w" => "west",
        _ => word,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(input: &str) -> (String, Option<&'static str>) {
        let parts = normalize_name(input).expect("a valid name");
        (parts.words, parts.suffix)
    }

    fn words(input: &str) -> String {
        name(input).0
    }

    #[test]
    fn folds_diacritics_case_and_punctuation() {
        assert_eq!(words("José Ñúñez"), "jose nunez");
        assert_eq!(words("Øyvind"), "oyvind");
        assert_eq!(words("O'Brien"), "obrien");
        assert_eq!(words("D’Angelo"), "dangelo");
        assert_eq!(words("Garcia-Lopez"), "garcia lopez");
        assert_eq!(words("  de   la  CRUZ "), "de la cruz");
        assert_eq!(words("MCDONALD"), "mcdonald");
        assert_eq!(words("Zoë"), "zoe");
        assert_eq!(words("Nguyễn"), "nguyen");
    }

    #[test]
    fn splits_off_every_suffix() {
        for (input, suffix) in [
            ("Smith Jr.", "jr"),
            ("Smith, JR", "jr"),
            ("Smith Junior", "jr"),
            ("Smith Jnr", "jr"),
            ("Smith Sr.", "sr"),
            ("Smith Senior", "sr"),
            ("Smith II", "ii"),
            ("Smith 2nd", "ii"),
            ("Smith III", "iii"),
            ("Smith 3rd", "iii"),
            ("Smith IV", "iv"),
            ("Smith V", "v"),
        ] {
            assert_eq!(name(input), ("smith".to_owned(), Some(suffix)), "{input}");
        }
    }

    #[test]
    fn suffix_placement() {
        assert_eq!(name("Smith Jr III"), ("smith".to_owned(), Some("jr")));
        assert_eq!(
            name("Smith Jr, John"),
            ("smith john".to_owned(), Some("jr"))
        );
        assert_eq!(
            name("Martin Luther King Jr"),
            ("martin luther king".to_owned(), Some("jr"))
        );
        // A suffix-like first word is a name or an initial.
        assert_eq!(name("V"), ("v".to_owned(), None));
        assert_eq!(name("Jr Smith"), ("jr smith".to_owned(), None));
        // A numeral inside a name is an initial, not a suffix.
        assert_eq!(name("John V Smith"), ("john v smith".to_owned(), None));
    }

    #[test]
    fn drops_honorifics() {
        assert_eq!(name("Dr. Jane Doe"), ("jane doe".to_owned(), None));
        assert_eq!(name("Mrs Ann Lee"), ("ann lee".to_owned(), None));
        assert_eq!(
            name("Mr. John Smith Sr."),
            ("john smith".to_owned(), Some("sr"))
        );
        assert_eq!(name("Ms. Miss Mx Dr Lee"), ("lee".to_owned(), None));
    }

    #[test]
    fn no_letters_is_an_error() {
        for input in ["", "   ", "---", "12345", "Dr.", "😀", "\u{301}"] {
            assert!(normalize_name(input).is_err(), "{input:?}");
        }
    }

    #[test]
    fn non_latin_scripts_do_not_panic() {
        assert_eq!(words("Владимир Путин"), "vladimir putin");
        assert_eq!(words("王小明"), "wang xiao ming");
        assert_eq!(words("김민준"), "gimminjun");
        assert!(normalize_name("محمد").is_ok());
        assert!(normalize_name("Σωκράτης").is_ok());
        // Scripts deunicode may not know, and invisible characters alone.
        let _ = normalize_name("ᏣᎳᎩ ꆈꌠ");
        assert!(normalize_name("\u{202E}\u{200B}\u{FEFF}").is_err());
    }

    #[test]
    fn debug_redacts_the_name() {
        let parts = normalize_name("Smith Jr").expect("valid");
        let debug = format!("{parts:?}");
        assert!(!debug.contains("smith"), "{debug}");
    }

    #[test]
    fn cities_spell_out_abbreviations() {
        assert_eq!(normalize_city("St. Louis").expect("valid"), "saint louis");
        assert_eq!(normalize_city("SAINT LOUIS").expect("valid"), "saint louis");
        assert_eq!(normalize_city("Ft Worth").expect("valid"), "fort worth");
        assert_eq!(normalize_city("Mt. Shasta").expect("valid"), "mount shasta");
        assert_eq!(
            normalize_city("N. Highlands").expect("valid"),
            "north highlands"
        );
        assert_eq!(normalize_city("San José").expect("valid"), "san jose");
        assert_eq!(
            normalize_city("Winston-Salem").expect("valid"),
            "winston salem"
        );
        assert!(normalize_city(" , ").is_err());
    }
}
