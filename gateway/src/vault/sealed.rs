//! The bytes of a sealed value, one BLOB column for callers.
//!
//! Format version 1, 57 bytes more than the plaintext:
//!
//! ```text
//! version (1) = 0x01 | data key id (16, a UUID) | nonce (24) | ciphertext | tag (16)
//! ```
//!
//! XChaCha20-Poly1305 with a random nonce; the associated data is a domain string,
//! the version and key id bytes, then the caller's context, so neither the header nor
//! the row a value belongs to can change without the tag failing.

use std::fmt;

use chacha20poly1305::{AeadInPlace as _, XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use super::VaultError;

const VERSION_1: u8 = 1;
const KEY_ID_LEN: usize = 16;
pub(super) const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Version and key id: the part of the header that goes into the associated data
/// (the nonce is bound by the cipher itself).
const BOUND_HEADER_LEN: usize = 1 + KEY_ID_LEN;
const HEADER_LEN: usize = BOUND_HEADER_LEN + NONCE_LEN;
/// Separates this use of the data keys from any other that might come later.
const DOMAIN: &[u8] = b"crosswalk vault record v1\0";

/// A sealed value: ciphertext that names its data key. Opening it needs the vault
/// and the context it was sealed for.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed(Vec<u8>);

impl Sealed {
    /// Wraps bytes read back from a column; they are checked when unsealed.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The bytes to store.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// Seals under a nonce the caller drew from the vault's randomness (a batch
    /// draws all of its nonces in one call instead of one system call per
    /// value). The nonce must be fresh random bytes, never reused or derived.
    pub(super) fn seal_with_nonce(
        cipher: &XChaCha20Poly1305,
        key_id: uuid::Uuid,
        nonce: &[u8; NONCE_LEN],
        context: &[u8],
        plaintext: &[u8],
    ) -> Result<Self, VaultError> {
        // Zeroizing: should encryption fail, the plaintext copy is wiped.
        let mut bytes = Zeroizing::new(Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN));
        bytes.push(VERSION_1);
        bytes.extend_from_slice(key_id.as_bytes());
        bytes.extend_from_slice(nonce);
        bytes.extend_from_slice(plaintext);
        let aad = associated_data(&bytes[..BOUND_HEADER_LEN], context);
        let tag = cipher
            .encrypt_in_place_detached(XNonce::from_slice(nonce), &aad, &mut bytes[HEADER_LEN..])
            .map_err(|_| VaultError::TooLarge)?;
        bytes.extend_from_slice(&tag);
        Ok(Self(std::mem::take(&mut *bytes)))
    }

    /// The data key this value was sealed under.
    pub(super) fn key_id(&self) -> Result<uuid::Uuid, VaultError> {
        if self.0.len() < HEADER_LEN + TAG_LEN || self.0[0] != VERSION_1 {
            return Err(VaultError::Malformed);
        }
        uuid::Uuid::from_slice(&self.0[1..BOUND_HEADER_LEN]).map_err(|_| VaultError::Malformed)
    }

    pub(super) fn open(
        &self,
        cipher: &XChaCha20Poly1305,
        context: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        self.key_id()?;
        let (header, body) = self.0.split_at(HEADER_LEN);
        let (ciphertext, tag) = body.split_at(body.len() - TAG_LEN);
        let aad = associated_data(&header[..BOUND_HEADER_LEN], context);
        let mut plaintext = Zeroizing::new(ciphertext.to_vec());
        cipher
            .decrypt_in_place_detached(
                XNonce::from_slice(&header[BOUND_HEADER_LEN..]),
                &aad,
                &mut plaintext,
                tag.into(),
            )
            .map_err(|_| VaultError::Open)?;
        Ok(plaintext)
    }
}

fn associated_data(bound_header: &[u8], context: &[u8]) -> Vec<u8> {
    [DOMAIN, bound_header, context].concat()
}

impl fmt::Debug for Sealed {
    // Ciphertext is not secret, but printing it helps no one and invites pasting
    // into tickets; the length and version say what a reader needs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("version", &self.0.first())
            .field("len", &self.0.len())
            .finish()
    }
}
