//! The identifier vault: raw identifiers (and free text) are sealed before they are
//! stored and unsealed, in memory only, when a release decision allows it. The
//! database holds ciphertext, never a raw identifier (design.md §2.1).
//!
//! # Design: envelope encryption under an age root
//! The vault's root is an age X25519 identity, so it can be held offline, split or
//! moved to an age plugin. Sealing every record to it with age would cost about
//! 57 µs and ~200 bytes per record (`cargo bench --bench vault` prints the figures),
//! so records are sealed under *data keys* instead:
//!
//! - a data key is 256 random bits, stored only as age ciphertext to the vault
//!   recipient in `vault_keys` (one age operation per key, not per record);
//! - a record is sealed with XChaCha20-Poly1305 under the current data key with a
//!   random 192-bit nonce (no counter to coordinate between replicas), and the AEAD
//!   binds the format version, the key id and a caller-chosen *context* naming the
//!   row (`b"identities:<id>"`), so a ciphertext copied to another row does not open;
//! - a data key seals at most [`RotationPolicy::max_seals_per_key`] records and for
//!   at most [`RotationPolicy::max_key_age`]; then the next seal makes a new one;
//! - unsealed data keys are kept in a small bounded cache, zeroized when evicted,
//!   so only the first record under a key pays the age decrypt.
//!
//! # Several replicas, one database
//! Each `Vault` (each gateway process) seals under data keys it created itself and
//! counts their use in memory; it never seals under another replica's key, so
//! nothing assumes a single writer and no row is contended. Any replica unseals any
//! record: keys are looked up by the id in the record.
//!
//! A new data key's row is written in the *caller's* transaction — a second
//! transaction could wait forever on SQLite's single writer or on an exhausted
//! pool. Until the vault has seen that row committed (it looks on the 2nd, 4th,
//! 8th... seal under the key, with a read that never waits for a connection), every
//! seal under the key writes the row again if it is missing (`ON CONFLICT DO
//! NOTHING`), so a record can only commit together with its key even if the
//! transaction that created the key rolled back. Keep sealing transactions short:
//! one that seals many records after a rotation rewrites the row for each — or
//! seal them with [`Vault::seal_many`], which writes (or looks for) the row once
//! per data key the batch uses, with the same guarantee: the row is written in the
//! batch's transaction unless it was seen committed.
//!
//! # Sealing a new kind of value
//! 1. Choose a context that names the row: `"<table>:<row id>"` as bytes. Use the
//!    same context to unseal; never one shared by two rows.
//! 2. Store [`Sealed::as_bytes`] in a BLOB (SQLite) / BYTEA (PostgreSQL) column,
//!    written in the transaction passed to [`Vault::seal`] (or, for many rows
//!    written together, to [`Vault::seal_many`]).
//! 3. Unseal only after a release decision allows it, and keep the result in its
//!    [`Zeroizing`] buffer: do not log, clone into `String`s that outlive the
//!    response, or put it in an error.
//!
//! # Changing the sealed format
//! The first byte of a sealed value is its format version. Add a new version in
//! `sealed.rs`, seal with it, and keep opening the old one.
//!
//! # Replacing the vault identity
//! [`Vault::rewrap`] re-encrypts every data key to a new recipient (records are not
//! touched). Stop the gateways, run it with the old identity, then start them with
//! the new one. It commits in batches and is safe to re-run after an interruption.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chacha20poly1305::{KeyInit as _, XChaCha20Poly1305};
use chrono::{DateTime, TimeDelta, Utc};
use zeroize::Zeroizing;

use crate::clock::Clock;
use crate::randomness::Randomness;
use crate::store::{Store, StoreError, Tx};

mod cache;
mod sealed;
#[cfg(test)]
mod tests;

use cache::KeyCache;
pub use sealed::Sealed;

/// How many unsealed data keys a vault keeps. A key covers up to a day and 100,000
/// records per replica, so this spans months of records on a few replicas.
const CACHE_CAPACITY: usize = 64;

/// How many data keys one transaction of [`Vault::rewrap`] re-encrypts.
const REWRAP_BATCH: i64 = 100;

/// When a data key stops sealing new records (it keeps opening old ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// Limits how much one data key protects: a leaked key opens at most this many
    /// records. (Random 192-bit nonces would allow far more.)
    pub max_seals_per_key: u64,
    /// Limits how long a key seals, so that keys (and what each one opens) follow
    /// the calendar, e.g. for retention.
    pub max_key_age: Duration,
}

impl Default for RotationPolicy {
    fn default() -> Self {
        Self {
            max_seals_per_key: 100_000,
            max_key_age: Duration::from_hours(24),
        }
    }
}

/// Why sealing or unsealing failed. No variant carries plaintext or key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    #[error("vault storage: {0}")]
    Store(#[from] StoreError),
    #[error("sealed value is malformed or of an unknown format version")]
    Malformed,
    #[error("sealed value names data key {key_id}, which is not in vault_keys")]
    UnknownKey { key_id: uuid::Uuid },
    #[error("cannot unwrap data key {key_id} with the vault identity: {source}")]
    Unwrap {
        key_id: uuid::Uuid,
        source: age::DecryptError,
    },
    #[error("data key {key_id} is not 32 bytes once unwrapped")]
    CorruptKey { key_id: uuid::Uuid },
    #[error("cannot wrap a data key to the vault recipient: {0}")]
    Wrap(#[from] age::EncryptError),
    #[error("sealed value does not open: wrong context, altered, or sealed elsewhere")]
    Open,
    #[error("value too large to seal")]
    TooLarge,
    #[error("the operating system's random number generator failed")]
    Random,
}

/// What [`Vault::rewrap`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RewrapReport {
    /// Data keys re-encrypted to the new recipient by this run.
    pub rewrapped: u64,
}

/// Seals and unseals identifiers. Cheap to clone: clones share the data keys and
/// the cache.
#[derive(Clone)]
pub struct Vault {
    inner: Arc<Inner>,
}

struct Inner {
    identity: age::x25519::Identity,
    /// `identity`'s recipient, which new data keys are wrapped to, and its text,
    /// which `vault_keys.recipient` records so that a re-wrap knows what is left.
    recipient: age::x25519::Recipient,
    recipient_text: String,
    store: Store,
    /// Data keys, their ids and nonces.
    randomness: Arc<dyn Randomness>,
    policy: RotationPolicy,
    /// The key this vault seals under. A std Mutex, not a Tokio one: it is never
    /// held across an await (creating a key is CPU work only).
    sealing: Mutex<Option<SealingKey>>,
    cache: Mutex<KeyCache>,
}

/// The data key this vault currently seals under.
struct SealingKey {
    id: uuid::Uuid,
    cipher: Arc<XChaCha20Poly1305>,
    created_at: DateTime<Utc>,
    seals: u64,
    /// The key's row, kept until the vault has seen it committed; `None` after.
    unconfirmed: Option<Arc<PendingRow>>,
}

/// A data key's `vault_keys` row, as written.
struct PendingRow {
    id_text: String,
    wrapped: Vec<u8>,
    created_at: i64,
}

/// One value for [`Vault::seal_many`]. Named fields, not a pair, because both
/// are bytes and swapping them would seal the context under the plaintext's name.
#[derive(Clone, Copy)]
pub struct ToSeal<'a> {
    /// Names the row the sealed value is stored in, as for [`Vault::seal`].
    pub context: &'a [u8],
    pub plaintext: &'a [u8],
}

impl fmt::Debug for ToSeal<'_> {
    // The plaintext is a raw identifier; its length is all a reader needs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToSeal")
            .field("context_len", &self.context.len())
            .field("plaintext_len", &self.plaintext.len())
            .finish()
    }
}

/// What one seal needs from [`Inner::sealing`], taken out of the lock.
struct SealTicket {
    id: uuid::Uuid,
    cipher: Arc<XChaCha20Poly1305>,
    unconfirmed: Option<Arc<PendingRow>>,
    /// Whether to look for the key's committed row before writing it again: not
    /// for the seal that created the key, and then on the 2nd, 4th, 8th... seal,
    /// so that a long transaction sealing many records does not pay a read for
    /// each while its own new key cannot be committed yet.
    check_committed: bool,
}

impl fmt::Debug for Vault {
    // The recipient is public; the identity and the data keys are never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("recipient", &self.inner.recipient_text)
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// A vault whose data keys are wrapped to `identity`'s recipient. Touches
    /// neither the database nor the identity until the first seal or unseal.
    pub fn new(
        identity: age::x25519::Identity,
        store: Store,
        policy: RotationPolicy,
        randomness: Arc<dyn Randomness>,
    ) -> Self {
        let recipient = identity.to_public();
        Self {
            inner: Arc::new(Inner {
                recipient_text: recipient.to_string(),
                recipient,
                identity,
                store,
                randomness,
                policy,
                sealing: Mutex::new(None),
                cache: Mutex::new(KeyCache::new(CACHE_CAPACITY)),
            }),
        }
    }

    /// The randomness the vault draws keys and nonces from, for services built
    /// beside it.
    pub fn randomness(&self) -> Arc<dyn Randomness> {
        Arc::clone(&self.inner.randomness)
    }

    /// Seals `plaintext` for the row named by `context` (e.g. `b"identities:<id>"`).
    /// Writes to `tx` only while the data key is new (its `vault_keys` row, see the
    /// module docs); commit `tx` with the row that stores the result.
    pub async fn seal(
        &self,
        tx: &mut Tx<'_>,
        context: &[u8],
        plaintext: &[u8],
        clock: &dyn Clock,
    ) -> Result<Sealed, VaultError> {
        let ticket = self.take_ticket(clock.now())?;
        if let Some(row) = &ticket.unconfirmed {
            self.ensure_key_row(tx, row, ticket.id, ticket.check_committed)
                .await?;
        }
        let mut nonce = [0u8; sealed::NONCE_LEN];
        self.inner
            .randomness
            .fill(&mut nonce)
            .map_err(|_| VaultError::Random)?;
        Sealed::seal_with_nonce(&ticket.cipher, ticket.id, &nonce, context, plaintext)
    }

    /// Seals many values in the caller's transaction, as [`Vault::seal`] would one
    /// by one, for a batch that stores them all in `tx`. The data key's row is
    /// written (or its commit looked for) once per data key the batch uses, not
    /// once per value, and the nonces come from one read of the OS RNG. A batch
    /// that uses up the current data key continues under a new one, so the
    /// [`RotationPolicy`] holds exactly as for single seals. Results are in the
    /// order of `values`.
    #[tracing::instrument(name = "vault.seal_many", skip_all, fields(count = values.len()))]
    pub async fn seal_many(
        &self,
        tx: &mut Tx<'_>,
        values: &[ToSeal<'_>],
        clock: &dyn Clock,
    ) -> Result<Vec<Sealed>, VaultError> {
        if values.is_empty() {
            return Ok(Vec::new());
        }
        let tickets = self.take_tickets(values.len(), clock.now())?;
        for (ticket, _) in &tickets {
            if let Some(row) = &ticket.unconfirmed {
                self.ensure_key_row(tx, row, ticket.id, ticket.check_committed)
                    .await?;
            }
        }
        let mut nonces = Zeroizing::new(vec![[0u8; sealed::NONCE_LEN]; values.len()]);
        self.inner
            .randomness
            .fill(nonces.as_flattened_mut())
            .map_err(|_| VaultError::Random)?;
        let mut out = Vec::with_capacity(values.len());
        let mut rest = values.iter().zip(nonces.iter());
        for (ticket, count) in &tickets {
            for (value, nonce) in rest.by_ref().take(*count) {
                out.push(Sealed::seal_with_nonce(
                    &ticket.cipher,
                    ticket.id,
                    nonce,
                    value.context,
                    value.plaintext,
                )?);
            }
        }
        Ok(out)
    }

    /// Opens a value sealed for `context`. The plaintext is zeroized when dropped.
    pub async fn unseal(
        &self,
        context: &[u8],
        sealed: &Sealed,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let key_id = sealed.key_id()?;
        let cipher = self.cipher_for(key_id).await?;
        sealed.open(&cipher, context)
    }

    /// Re-encrypts every data key not yet wrapped to `new_recipient` from this
    /// vault's identity to `new_recipient`, in batches of one transaction each.
    /// Records are untouched. Safe to re-run; see the module docs for the order of
    /// operations.
    pub async fn rewrap(
        &self,
        new_recipient: &age::x25519::Recipient,
        clock: &dyn Clock,
    ) -> Result<RewrapReport, VaultError> {
        let new_text = new_recipient.to_string();
        let mut rewrapped = 0;
        loop {
            let mut tx = self.inner.store.begin().await?;
            let batch = Store::vault_keys_not_wrapped_to(&mut tx, &new_text, REWRAP_BATCH).await?;
            if batch.is_empty() {
                break;
            }
            let mut progressed = false;
            for row in &batch {
                let key_id = parse_key_id(&row.id)?;
                let key = unwrap_key(&self.inner.identity, key_id, &row.wrapped)?;
                let wrapped = age::encrypt(new_recipient, &key[..])?;
                let updated = Store::vault_key_rewrap(
                    &mut tx,
                    &row.id,
                    &row.recipient,
                    &wrapped,
                    &new_text,
                    clock.now().timestamp(),
                )
                .await?;
                if updated {
                    rewrapped += 1;
                    progressed = true;
                }
            }
            tx.commit().await.map_err(StoreError::from)?;
            if !progressed {
                // Another re-wrap is moving these rows elsewhere; leave it to that one.
                break;
            }
        }
        Ok(RewrapReport { rewrapped })
    }

    /// Counts a seal against the current data key, first replacing the key if it
    /// is used up or too old (or there is none yet).
    fn take_ticket(&self, now: DateTime<Utc>) -> Result<SealTicket, VaultError> {
        let mut tickets = self.take_tickets(1, now)?;
        // One seal always fits the first key taken (a fresh key seals at least one).
        Ok(tickets.swap_remove(0).0)
    }

    /// Counts `n` seals against the current data key and, when it runs out (or is
    /// too old, or there is none), against new ones: each ticket with how many of
    /// the `n` seals it covers, in order.
    fn take_tickets(
        &self,
        n: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<(SealTicket, usize)>, VaultError> {
        let mut sealing = lock(&self.inner.sealing);
        let mut tickets = Vec::with_capacity(1);
        let mut left = n as u64;
        while left > 0 {
            let mut fresh = false;
            let mut key = match sealing.take() {
                Some(key) if key.can_seal(&self.inner.policy, now) => key,
                _ => {
                    fresh = true;
                    self.new_key(now)?
                }
            };
            // A fresh key seals at least one value, whatever the policy says, as a
            // single seal always did.
            let room = self
                .inner
                .policy
                .max_seals_per_key
                .saturating_sub(key.seals)
                .max(1);
            let take = room.min(left);
            let first = key.seals + 1;
            key.seals += take;
            tickets.push((
                SealTicket {
                    id: key.id,
                    cipher: Arc::clone(&key.cipher),
                    unconfirmed: key.unconfirmed.clone(),
                    // The 2nd, 4th, 8th... seal under the key falls in this batch.
                    check_committed: !fresh && first.next_power_of_two() <= key.seals,
                },
                // At most `n`, which is a usize.
                usize::try_from(take).unwrap_or(usize::MAX),
            ));
            left -= take;
            *sealing = Some(key);
        }
        Ok(tickets)
    }

    /// Makes a data key and wraps it to the vault recipient. The key also goes into
    /// the cache, so that this process can unseal under it before its row commits.
    fn new_key(&self, now: DateTime<Utc>) -> Result<SealingKey, VaultError> {
        let mut key = Zeroizing::new([0u8; 32]);
        let mut id = [0u8; 16];
        self.inner
            .randomness
            .fill(&mut key[..])
            .and_then(|()| self.inner.randomness.fill(&mut id))
            .map_err(|_| VaultError::Random)?;
        let wrapped = age::encrypt(&self.inner.recipient, &key[..])?;
        let id = uuid::Builder::from_random_bytes(id).into_uuid();
        let cipher = Arc::new(XChaCha20Poly1305::new((&*key).into()));
        lock(&self.inner.cache).insert(id, Arc::clone(&cipher));
        tracing::info!(key_id = %id, "vault: new data key");
        Ok(SealingKey {
            id,
            cipher,
            created_at: now,
            seals: 0,
            unconfirmed: Some(Arc::new(PendingRow {
                id_text: id.to_string(),
                wrapped,
                created_at: now.timestamp(),
            })),
        })
    }

    /// Makes sure a data key's row commits with `tx`, until the key is seen
    /// committed (see "Several replicas" in the module docs).
    async fn ensure_key_row(
        &self,
        tx: &mut Tx<'_>,
        row: &PendingRow,
        id: uuid::Uuid,
        check_committed: bool,
    ) -> Result<(), VaultError> {
        if check_committed
            && self.inner.store.vault_key_committed(&row.id_text).await? == Some(true)
        {
            let mut sealing = lock(&self.inner.sealing);
            if let Some(key) = sealing.as_mut().filter(|k| k.id == id) {
                key.unconfirmed = None;
            }
            return Ok(());
        }
        Store::vault_key_insert(
            tx,
            &row.id_text,
            &row.wrapped,
            &self.inner.recipient_text,
            row.created_at,
        )
        .await?;
        Ok(())
    }

    /// The cipher for a data key: from the cache, or unwrapped from `vault_keys`.
    async fn cipher_for(&self, key_id: uuid::Uuid) -> Result<Arc<XChaCha20Poly1305>, VaultError> {
        if let Some(cipher) = lock(&self.inner.cache).get(key_id) {
            return Ok(cipher);
        }
        // Two tasks missing the same key both unwrap it; that costs one extra age
        // decrypt, rarely, and keeps the lock free of awaits.
        let wrapped = self
            .inner
            .store
            .vault_key_wrapped(&key_id.to_string())
            .await?
            .ok_or(VaultError::UnknownKey { key_id })?;
        let key = unwrap_key(&self.inner.identity, key_id, &wrapped)?;
        let cipher = Arc::new(XChaCha20Poly1305::new((&*key).into()));
        lock(&self.inner.cache).insert(key_id, Arc::clone(&cipher));
        Ok(cipher)
    }
}

impl SealingKey {
    fn can_seal(&self, policy: &RotationPolicy, now: DateTime<Utc>) -> bool {
        let max_age = TimeDelta::from_std(policy.max_key_age).unwrap_or(TimeDelta::MAX);
        self.seals < policy.max_seals_per_key
            && now.signed_duration_since(self.created_at) < max_age
    }
}

/// Decrypts a data key with the vault identity.
fn unwrap_key(
    identity: &age::x25519::Identity,
    key_id: uuid::Uuid,
    wrapped: &[u8],
) -> Result<Zeroizing<[u8; 32]>, VaultError> {
    use std::io::Read as _;
    let unwrap = |source| VaultError::Unwrap { key_id, source };
    let decryptor = age::Decryptor::new_buffered(wrapped).map_err(unwrap)?;
    let mut reader = decryptor
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .map_err(unwrap)?;
    let mut key = Zeroizing::new([0u8; 32]);
    let corrupt = || VaultError::CorruptKey { key_id };
    reader.read_exact(&mut key[..]).map_err(|_| corrupt())?;
    // A longer plaintext is not a key this vault wrote.
    if reader.read(&mut [0u8; 1]).map_err(|_| corrupt())? != 0 {
        return Err(corrupt());
    }
    Ok(key)
}

fn parse_key_id(text: &str) -> Result<uuid::Uuid, VaultError> {
    uuid::Uuid::parse_str(text).map_err(|_| VaultError::Malformed)
}

/// Locks a vault mutex. Nothing panics while holding one mid-update, so a poisoned
/// lock still guards consistent state.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
