//! Privacy-preserving record linkage: deciding, from keyed one-way fingerprints
//! alone, whether two identities are the same person.
//!
//! A normalized [`Identity`](crate::normalize::Identity) becomes a
//! [`Fingerprint`] under the [`LinkageKeys`] of one key version; two fingerprints
//! are compared by [`compare`] (the match rule below). The subject registry
//! stores fingerprints and indexes their [`Fingerprint::lookup_keys`].
//! `crosswalk link` ([`offline`]) links two CSV files with the probabilistic
//! linker instead ([`probabilistic`]: Fellegi–Sunter weights on keyed
//! per-field profiles, with a review band); the live registry moves to it
//! once a review queue exists for live pairs. Nothing here ever holds a raw
//! identifier longer than one call, and nothing prints one.
//!
//! # What a fingerprint holds
//! - **Tokens** ([`TokenKind`]): 16-byte keyed BLAKE3 hashes, each over a
//!   different combination of normalized fields, made tolerant on purpose —
//!   nicknames fold to a canonical name, the two names are an unordered pair
//!   (so swapped given name and surname agree), the date of birth is the year
//!   with an unordered {month, day} (so a transposed date agrees), and phonetic
//!   codes absorb many typos. Each kind is either *strong* or *weak*:
//!
//!   | kind | fields | strength |
//!   |---|---|---|
//!   | `names_dob` | names, dob | strong |
//!   | `given_dob_phone` | given name, dob, phone | strong |
//!   | `given_email` | given name, email | strong |
//!   | `phonetic_names_dob_sex` | phonetic names, dob, sex | weak |
//!   | `given_dob` | given name, dob | weak |
//!   | `surname_dob` | surname, dob | weak |
//!   | `dob_zip` | dob, ZIP | weak |
//!   | `phone_dob` | phone, dob | weak |
//!   | `email` | email | weak |
//!   | `names_phone` | names, phone | weak |
//!   | `names_zip` | names, ZIP | weak |
//!   | `names_year` | names, birth year | weak |
//!   | `phonetic_surname_year` | phonetic surname, birth year | weak |
//!   | `names_day_month` | names, {month, day} without the year | weak |
//!
//!   Every strong kind ties the person's exact *given name* (after nickname
//!   folding) to their date of birth, or to an email; every kind that lacks
//!   that is weak, because people who are not the same person share it often
//!   enough: twins share a date of birth, a ZIP and a home phone; a father and
//!   son of one name share a phone and a ZIP; phonetic codes collide across
//!   unrelated names.
//! - **A Bloom filter** (a CLK, see `bloom.rs`), 1024 bits under a key: the
//!   bigrams of the given name (256 bits), of the surname (256 bits), and the
//!   details (512 bits: date-of-birth parts, sex, street and city bigrams, ZIP,
//!   state, phone, email). Regions are compared by Dice similarity; names are
//!   compared straight or crosswise (swapped), only where both sides have them.
//!
//! # The match rule
//! For two fingerprints made under the same key version:
//! 1. If either identity is **unlinkable** — no name, or none of date of birth,
//!    phone and email, or fewer than three usable fields among given name,
//!    surname, date of birth, phone, email, street and ZIP — they do **not**
//!    match. Such identities are never linked by guesswork.
//! 2. If any **strong** token agrees, they **match**.
//! 3. Otherwise they **match** only if a weak token that pins the date of birth
//!    agrees (any weak kind but `email`, `names_phone`, `names_zip` and
//!    `phonetic_surname_year`) *and* one of:
//!    - (a) the names are alike — mean Dice of the names both sides have
//!      ≥ [`NAMES_DICE_MIN`] (0.75) — *and* the details are alike — Dice
//!      ≥ [`DETAILS_DICE_MIN`] (0.78), or ≥ [`DETAILS_DICE_MIN_ONE_NAME`] (0.9)
//!      when only one name could be compared: a slip in a name or in the date;
//!    - (b) the names are nearly alike (≥ [`NAMES_DICE_MIN_WITH_CONTACT`], 0.7)
//!      *and* `phone_dob` or `email` agrees: a person who moved, recorded with a
//!      typo, still has their phone or email and date of birth;
//!    - (c) `given_dob` agrees *and* the details have Dice
//!      ≥ [`DETAILS_DICE_NAME_CHANGE`] (0.9): same given name, date of birth
//!      and address or contacts under another surname (marriage).
//!
//!    When one side has **no date of birth** (referral forms often lack one),
//!    nothing can pin it; then they match if the names and details are alike as
//!    in (a) *and* `names_phone` or `email` agrees.
//! 4. Otherwise they do **not** match.
//!
//! The score (0..=1) orders candidates: 0.75–1 for a rule-2 match, 0.5–0.75 for
//! a rule-3 match, below 0.5 for no match, and within each band the Dice
//! similarity of the whole filters. `is_match()` ⇔ `score ≥ 0.5`.
//!
//! Candidates come only from shared tokens, and every match needs at least one
//! agreeing token, so blocking loses no match the rule would have made. The
//! registry stores and looks up nine of the kinds ([`TokenKind::is_indexed`]):
//! the others either decide nothing (`names_zip`, `phonetic_surname_year`) or
//! never agree without an indexed kind agreeing too (`names_dob` implies
//! `names_year`, `given_dob_phone` implies `given_dob`, `given_email` implies
//! `email`). `names_phone` and `email` decide nothing on their own; with the
//! weak kinds they are there so that a record whose other tokens are broken is
//! still a candidate.
//!
//! What the rule knowingly gets wrong: two different people with the same given
//! name (after nickname folding), surname and date of birth link; so do twins
//! with the same name or with names that differ by a letter or two, and a
//! namesake parent and child at one address and phone when one record has no
//! date of birth. A record
//! with errors in both names and in the date of birth does not link; nor does
//! one whose given name, surname or date of birth was replaced outright while
//! everything else stayed (it looks exactly like a twin, a sibling or a
//! namesake parent, and the rule prefers a missed link to a false one). These
//! were measured, not guessed: `benches/linkage.rs` prints this rule's
//! precision and recall (through [`batch`]) beside the probabilistic
//! linker's, on synthetic and FEBRL data.
//!
//! # The review band
//! A pair that does not match but comes close — whole filters with Dice
//! ≥ [`REVIEW_DICE_MIN`] (0.7), or a weak token pinning the date of birth with
//! names at least [`REVIEW_NAMES_DICE_MIN_DATED`] (0.5) alike — is
//! [`MatchScore::needs_review`]: the live registry queues it for a person to
//! accept or reject (`subjects/review.rs`) instead of guessing.
//!
//! # Changing the engine
//! Any change to what a token hashes, to the Bloom encoding or to the key
//! contexts changes every stored fingerprint: bump the key version (the registry's
//! `keys rotate` re-fingerprints every identity) rather than editing in place.
//! To add a token kind: add a variant with the next discriminant to
//! [`TokenKind`] (and to `ALL`, `name`, `strength`, `pins_birth_date`), build it
//! in `tokens::tokens`, document it in the table above, and rerun the bench
//! (`cargo bench --bench linkage`; `LINKAGE_N=10000` for a quick run) to see
//! what it does to precision and recall.

pub mod batch;
mod bloom;
mod fingerprint;
mod keys;
pub mod offline;
pub mod probabilistic;
mod rule;
pub mod synth;
mod token_kind;
mod tokens;

pub use fingerprint::{Fingerprint, FingerprintError, fingerprint, is_linkable};
pub use keys::LinkageKeys;
pub use rule::{
    DETAILS_DICE_MIN, DETAILS_DICE_MIN_ONE_NAME, DETAILS_DICE_NAME_CHANGE, Decision, MatchScore,
    NAMES_DICE_MIN, NAMES_DICE_MIN_WITH_CONTACT, REVIEW_DICE_MIN, REVIEW_NAMES_DICE_MIN_DATED,
    compare,
};
pub use tokens::{Strength, TOKEN_LEN, Token, TokenKind};

#[cfg(test)]
mod tests;
