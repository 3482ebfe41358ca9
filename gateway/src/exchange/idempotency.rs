//! Idempotency keys for referral submissions.
//!
//! A police system that retries `POST /v1/referrals` with the same
//! `Idempotency-Key` gets the first response again and never a second referral;
//! the same key with a different body is refused (409), since it means the client
//! reused a key by mistake. Keys are scoped to the partner: two departments may
//! use the same key.
//!
//! On `POST /v1/referrals/batch` the header applies line by line: line *n* gets
//! its own key derived from the batch key and *n*. A batch cut off part-way can
//! be sent again with the same key; lines already stored answer as before and
//! the rest are created.
//!
//! # What is stored
//! Neither the key nor the body: a client may use a CAD number as its key, and
//! the body is a person's identifiers. Both are hashed with keyed BLAKE3 under a
//! key derived from the master secret with its own context, so that a stolen
//! database cannot be checked against guessed bodies (a plain hash could).
//! "Same body" means the same bytes: a client retrying resends what it sent.
//!
//! Keys do not expire: a key is a promise about one referral, and the row is a
//! few dozen bytes beside it.

use crate::domain::PartnerId;
use crate::secrets::MasterSecret;

const CONTEXT: &str = "crosswalk 2026-11 idempotency key v1";

/// The longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 255;

/// A claim on a key: what the intake records, or compares with what it recorded.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub key_hash: [u8; 32],
    pub body_hash: [u8; 32],
}

impl std::fmt::Debug for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Claim(..)")
    }
}

/// Computes the keyed hashes. Holds only the derived key.
pub struct IdempotencyKeys {
    key: [u8; 32],
}

impl std::fmt::Debug for IdempotencyKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdempotencyKeys([redacted])")
    }
}

/// A header value that cannot be a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidKey;

impl IdempotencyKeys {
    pub fn new(master: &MasterSecret) -> Self {
        Self {
            key: master.derive(CONTEXT),
        }
    }

    /// Checks a header value: 1-255 visible ASCII characters.
    pub fn check_key(raw: &[u8]) -> Result<(), InvalidKey> {
        if (1..=MAX_KEY_LEN).contains(&raw.len()) && raw.iter().all(|b| (0x21..=0x7e).contains(b)) {
            Ok(())
        } else {
            Err(InvalidKey)
        }
    }

    /// The claim of a single submission.
    pub fn claim(&self, partner: &PartnerId, key: &[u8], body: &[u8]) -> Claim {
        Claim {
            key_hash: self.hash(&[b"single", partner.as_bytes(), key]),
            body_hash: self.hash(&[b"body", body]),
        }
    }

    /// The claim of line `line` (1-based) of a batch sent under `key`.
    pub fn line_claim(&self, partner: &PartnerId, key: &[u8], line: u64, body: &[u8]) -> Claim {
        Claim {
            key_hash: self.hash(&[b"line", partner.as_bytes(), key, &line.to_be_bytes()]),
            body_hash: self.hash(&[b"body", body]),
        }
    }

    /// Keyed BLAKE3 over length-prefixed parts, so that no two part lists collide.
    fn hash(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        for part in parts {
            hasher.update(&(part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        *hasher.finalize().as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(text: &str) -> PartnerId {
        PartnerId::parse(text).expect("a partner id")
    }

    #[test]
    fn claims_are_scoped_and_keyed() {
        let keys = IdempotencyKeys::new(&MasterSecret::from_bytes([1; 32]));
        let a = keys.claim(&pid("pd"), b"k-1", b"{}");
        assert_eq!(a, keys.claim(&pid("pd"), b"k-1", b"{}"));
        assert_ne!(a.key_hash, keys.claim(&pid("pd2"), b"k-1", b"{}").key_hash);
        assert_ne!(
            a.body_hash,
            keys.claim(&pid("pd"), b"k-1", b"{ }").body_hash
        );
        assert_ne!(
            a.key_hash,
            keys.line_claim(&pid("pd"), b"k-1", 1, b"{}").key_hash
        );
        assert_ne!(
            keys.line_claim(&pid("pd"), b"k-1", 1, b"{}").key_hash,
            keys.line_claim(&pid("pd"), b"k-1", 2, b"{}").key_hash
        );
        let other = IdempotencyKeys::new(&MasterSecret::from_bytes([2; 32]));
        assert_ne!(
            a,
            other.claim(&pid("pd"), b"k-1", b"{}"),
            "keyed by the master secret"
        );
        assert_ne!(a.body_hash, *blake3::hash(b"{}").as_bytes());
        assert!(IdempotencyKeys::check_key(b"retry-7f3a").is_ok());
        assert!(IdempotencyKeys::check_key(b"").is_err());
        assert!(IdempotencyKeys::check_key(b"has space").is_err());
        assert!(IdempotencyKeys::check_key(&[b'a'; 256]).is_err());
    }
}
