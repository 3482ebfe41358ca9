//! Folding free text (names, cities, streets) to lower-case ASCII words.
//!
//! Every textual normalizer starts here, so that `José`, `JOSE`, `Jose\u{301}` and
//! `Ｊｏｓｅ` (full-width) all become `jose`. The output alphabet is `a`–`z`,
//! `0`–`9` and single spaces between words, which is also what the linkage
//! engine's q-gram encodings expect.
//!
//! Folding is allocation-light: ASCII input (nearly all of it) is folded in one
//! pass into one `String`; other input goes through an NFKC iterator and
//! `deunicode`'s per-character table without an intermediate buffer.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// How [`fold_words`] treats `#`: in a street address it is a word of its own
/// ("#4" is "unit 4"); elsewhere it is punctuation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Hash {
    Word,
    Punctuation,
}

/// Folds `input` into lower-case ASCII words separated by single spaces.
///
/// - NFKC, then diacritics and other scripts transliterated (`deunicode`):
///   `Øyvind` → `oyvind`, `王小明` → `wang xiao ming`;
/// - apostrophes (straight or typographic) join: `O'Brien` → `obrien`;
/// - combining marks join (a decomposed `é` is an `e`);
/// - any other punctuation, symbol or space separates words: `Garcia-Lopez` →
///   `garcia lopez`; emoji and symbols are dropped, not spelled out.
pub(super) fn fold_words(input: &str, hash: Hash) -> String {
    let mut folder = Folder {
        out: String::with_capacity(input.len()),
        pending_space: false,
        hash,
    };
    if input.is_ascii() {
        for byte in input.bytes() {
            folder.push_ascii(byte);
        }
    } else {
        for c in input.nfkc() {
            folder.push_char(c);
        }
    }
    folder.out
}

struct Folder {
    out: String,
    /// A separator was seen since the last word character: the next word
    /// character starts a new word. Separators at the start or the end never
    /// produce a space, and runs of them produce one.
    pending_space: bool,
    hash: Hash,
}

impl Folder {
    fn push_ascii(&mut self, byte: u8) {
        match byte {
            b'a'..=b'z' | b'0'..=b'9' => self.push_word_byte(byte),
            b'A'..=b'Z' => self.push_word_byte(byte.to_ascii_lowercase()),
            // Apostrophes join: O'Brien, D`Angelo.
            b'\'' | b'`' => {}
            b'#' if self.hash == Hash::Word => {
                self.pending_space = true;
                self.push_word_byte(b'#');
                self.pending_space = true;
            }
            _ => self.pending_space = true,
        }
    }

    fn push_word_byte(&mut self, byte: u8) {
        if self.pending_space && !self.out.is_empty() {
            self.out.push(' ');
        }
        self.pending_space = false;
        self.out.push(char::from(byte));
    }

    fn push_char(&mut self, c: char) {
        if let Some(byte) = u8::try_from(c).ok().filter(u8::is_ascii) {
            self.push_ascii(byte);
        } else if is_apostrophe(c) || is_combining_mark(c) {
            // Joins, like an ASCII apostrophe; a stray mark adds nothing.
        } else if c.is_alphanumeric() {
            // deunicode's table is ASCII; what it spells is folded like input, so
            // `Ø` → `O` → `o` and `王` → `Wang ` ends a word.
            match deunicode::deunicode_char(c) {
                Some(ascii) => {
                    for byte in ascii.bytes() {
                        self.push_ascii(byte);
                    }
                }
                None => self.pending_space = true,
            }
        } else {
            self.pending_space = true;
        }
    }
}

/// Typographic apostrophes and the modifier letters used as one (`ʼ`, `ʻ`).
fn is_apostrophe(c: char) -> bool {
    matches!(
        c,
        '\u{2018}' | '\u{2019}' | '\u{201B}' | '\u{02BB}' | '\u{02BC}' | '\u{00B4}' | '\u{2032}'
    )
}

/// The words of folded text.
pub(super) fn words(folded: &str) -> impl Iterator<Item = &str> {
    folded.split(' ').filter(|w| !w.is_empty())
}

/// Rebuilds folded text from `words`, replacing each through `map` (a word
/// mapped to `None` is dropped). Returns `folded` unchanged, without allocating,
/// when no word changes.
pub(super) fn map_words(folded: String, map: impl Fn(&str) -> Option<&str>) -> String {
    let changes = words(&folded).any(|w| map(w) != Some(w));
    if !changes {
        return folded;
    }
    let mut out = String::with_capacity(folded.len() + 16);
    for word in words(&folded) {
        if let Some(mapped) = map(word) {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(mapped);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(s: &str) -> String {
        fold_words(s, Hash::Punctuation)
    }

    #[test]
    fn folds_case_diacritics_and_punctuation() {
        assert_eq!(fold("José Ñúñez"), "jose nunez");
        assert_eq!(fold("Øyvind"), "oyvind");
        assert_eq!(fold("O'Brien"), "obrien");
        assert_eq!(fold("O\u{2019}Brien"), "obrien");
        assert_eq!(fold("Garcia-Lopez"), "garcia lopez");
        assert_eq!(fold("  Mary   Ann  "), "mary ann");
        assert_eq!(fold("Smith, Jr."), "smith jr");
        assert_eq!(fold("Straße"), "strasse");
    }

    #[test]
    fn canonically_equal_text_folds_equal() {
        // Precomposed, decomposed, full-width and ligature forms.
        assert_eq!(fold("Jos\u{e9}"), fold("Jose\u{301}"));
        assert_eq!(fold("Ｊｏｓｅ"), "jose");
        assert_eq!(fold("\u{FB01}ona"), "fiona");
    }

    #[test]
    fn other_scripts_transliterate_and_symbols_drop() {
        assert_eq!(fold("Владимир"), "vladimir");
        assert_eq!(fold("王小明"), "wang xiao ming");
        assert_eq!(fold("Σωκράτης"), "sokrates");
        assert_eq!(fold("😀 Ann ☎"), "ann");
        assert_eq!(fold("\u{301}"), "");
    }

    #[test]
    fn hash_is_a_word_only_in_addresses() {
        assert_eq!(fold_words("12 Main #4B", Hash::Word), "12 main # 4b");
        assert_eq!(fold_words("12 Main #4B", Hash::Punctuation), "12 main 4b");
    }

    #[test]
    fn map_words_reuses_unchanged_text() {
        let folded = fold("mary ann");
        let ptr = folded.as_ptr();
        let same = map_words(folded, |w| Some(w));
        assert_eq!(same.as_ptr(), ptr);
        let changed = map_words(same, |w| (w != "ann").then_some(w));
        assert_eq!(changed, "mary");
    }
}
