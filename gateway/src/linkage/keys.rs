//! The linkage keys: one keyed-BLAKE3 key per token kind and one for the Bloom
//! filter, all derived from the master secret.
//!
//! # Context strings
//! Every key is `blake3::derive_key(context, master)` with a context of one fixed
//! format, so that no two purposes (and no two key versions) ever share a key:
//!
//! ```text
//! crosswalk 2026-11 linkage token {kind} v{version}    one per TokenKind, e.g.
//!                                                      "crosswalk 2026-11 linkage token names_dob v1"
//! crosswalk 2026-11 linkage bloom v{version}           the Bloom filter's q-gram hashing
//! crosswalk 2026-12 linkage profile hash v{version}    the probabilistic linker's exact
//!                                                      and blocking hashes
//! crosswalk 2026-12 linkage profile grams v{version}   its bigram filters
//! ```
//!
//! `{kind}` is [`TokenKind::name`]; `{version}` is the key version in decimal.
//! Changing either format, or a kind's name, changes every token: that is a new
//! key version, never an edit in place.

use std::fmt;

use super::bloom::BloomKey;
use super::token_kind::TokenKind;
use crate::secrets::MasterSecret;

/// Keys for one key version. Derived once per process (deriving also builds the
/// Bloom filter's q-gram table, about a millisecond), then shared by reference.
pub struct LinkageKeys {
    /// Stored with every fingerprint, so that fingerprints made under different
    /// keys are never compared as if they could agree.
    pub(super) version: u32,
    /// Indexed by `TokenKind as usize`.
    pub(super) token_keys: [[u8; 32]; TokenKind::COUNT],
    /// The Bloom filter's key, with the positions of every q-gram over the
    /// normalized alphabet and of small-domain elements (birth year, ZIP
    /// prefix, ...) computed once from it: hashing ~40 q-grams per identity
    /// with BLAKE3 would cost more than everything else in a fingerprint
    /// together.
    pub(super) bloom: BloomKey,
    /// The probabilistic linker's exact and blocking hashes.
    profile_hash: [u8; 32],
    /// The probabilistic linker's bigram positions.
    profile_grams: [u8; 32],
}

impl LinkageKeys {
    /// Derives the keys of `key_version` from the master secret.
    pub fn derive(master: &MasterSecret, key_version: u32) -> Self {
        let token_keys = TokenKind::ALL.map(|kind| {
            master.derive(&format!(
                "crosswalk 2026-11 linkage token {} v{key_version}",
                kind.name()
            ))
        });
        let bloom = BloomKey::new(
            master.derive(&format!("crosswalk 2026-11 linkage bloom v{key_version}")),
        );
        Self {
            version: key_version,
            token_keys,
            bloom,
            profile_hash: master.derive(&format!(
                "crosswalk 2026-12 linkage profile hash v{key_version}"
            )),
            profile_grams: master.derive(&format!(
                "crosswalk 2026-12 linkage profile grams v{key_version}"
            )),
        }
    }

    pub fn key_version(&self) -> u32 {
        self.version
    }

    /// The probabilistic linker's keys (exact hashes and blocking keys; bigram
    /// positions), derived on demand: `crosswalk link` derives them once per
    /// run.
    pub(super) fn profile_keys(&self) -> ([u8; 32], [u8; 32]) {
        (self.profile_hash, self.profile_grams)
    }

    pub(super) fn token_key(&self, kind: TokenKind) -> &[u8; 32] {
        &self.token_keys[kind as usize]
    }
}

impl fmt::Debug for LinkageKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkageKeys")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}
