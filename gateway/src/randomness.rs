//! The one place the gateway draws random bytes.
//!
//! Whatever must be unpredictable — vault data keys and nonces, the master
//! secret a first run creates, key files, the random part of record and
//! internal ids, the seed of differential-privacy noise — is drawn from a
//! [`Randomness`] handed in at start-up, like the [`crate::clock::Clock`], so
//! that a test can pass a seeded double and see the same ids twice.
//! `clippy.toml` forbids `OsRng`, `Uuid::new_v4` and OS-seeded generators
//! everywhere else.
//!
//! Two libraries still draw their own: `age` (the ephemeral key of each
//! wrapped data key) and `rcgen` (certificate serial numbers). Both read the
//! operating system's generator, which is what production uses anyway.

use std::sync::{Arc, Mutex, PoisonError};

use rand::rngs::StdRng;
use rand::{RngCore as _, SeedableRng as _};

/// The generator could not be read (the operating system refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the random number generator could not be read")]
pub struct RandomnessFailed;

pub trait Randomness: Send + Sync + 'static {
    /// Fills `buf` with bytes no one can predict (in production).
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomnessFailed>;
}

/// The operating system's generator: what the gateway runs with.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsRandomness;

impl Randomness for OsRandomness {
    #[expect(
        clippy::disallowed_types,
        reason = "this is the one sanctioned source of randomness"
    )]
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomnessFailed> {
        let mut os: rand::rngs::OsRng = rand::rngs::OsRng;
        rand::TryRngCore::try_fill_bytes(&mut os, buf).map_err(|_| RandomnessFailed)
    }
}

/// The operating system's generator, shared.
pub fn os() -> Arc<dyn Randomness> {
    Arc::new(OsRandomness)
}

/// A generator seeded by the caller: the same seed gives the same bytes, so
/// nothing it protects is secret. For tests only — no configuration selects
/// it, and its constructor says so.
pub struct SeededRandomness {
    rng: Mutex<StdRng>,
}

impl SeededRandomness {
    pub fn danger_predictable_for_tests(seed: u64) -> Self {
        Self {
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }
}

impl Randomness for SeededRandomness {
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomnessFailed> {
        self.rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .fill_bytes(buf);
        Ok(())
    }
}

/// 32 hex digits from `randomness`: a name no other process picks (a test
/// database, a bench's scratch directory).
pub fn unique_name_suffix(randomness: &dyn Randomness) -> Result<String, RandomnessFailed> {
    let mut bytes = [0u8; 16];
    randomness.fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// A `ChaCha` generator seeded with 32 bytes of `randomness`: for a stream of
/// draws (noise for a whole table) at the cost of one read.
pub fn seeded_rng(randomness: &dyn Randomness) -> Result<StdRng, RandomnessFailed> {
    let mut seed = [0u8; 32];
    randomness.fill(&mut seed)?;
    Ok(StdRng::from_seed(seed))
}

/// Record and internal ids: UUID v7 (RFC 9562) stamped with the gateway's
/// clock (never the system's) and the rest drawn from its [`Randomness`].
/// Monotonic within the process — a batch's referrals sort in line order, and
/// a clock that steps back never makes an id sort before the last one — and
/// random across replicas.
pub struct RecordIds {
    randomness: Arc<dyn Randomness>,
    /// The last id's milliseconds and its 74 bits after the time.
    last: Mutex<(u64, u128)>,
}

/// The 74 bits of a v7 id after its 48-bit time: a fresh draw keeps the top
/// one clear, so at least 2^73 ids fit in one millisecond.
const TAIL_BITS: u32 = 74;

impl RecordIds {
    pub fn new(randomness: Arc<dyn Randomness>) -> Self {
        Self {
            randomness,
            last: Mutex::new((0, 0)),
        }
    }

    /// A new id stamped `at`.
    ///
    /// # Panics
    /// Never in practice: only if the operating system's generator fails,
    /// in which case nothing random (keys, nonces) could be made either.
    pub fn next(&self, at: chrono::DateTime<chrono::Utc>) -> String {
        let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
        let mut bytes = [0u8; 16];
        #[expect(
            clippy::expect_used,
            reason = "an id cannot be made without randomness; see # Panics"
        )]
        self.randomness
            .fill(&mut bytes)
            .expect("the random number generator failed");
        let fresh = u128::from_be_bytes(bytes) & ((1 << (TAIL_BITS - 1)) - 1);
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let (millis, tail) = if millis > last.0 {
            (millis, fresh)
        } else {
            // The same millisecond, or the clock stepped back: one past the
            // last id, so that ids never go backwards.
            (last.0, (last.1 + 1) & ((1 << TAIL_BITS) - 1))
        };
        *last = (millis, tail);
        drop(last);
        let rand_a = u16::try_from((tail >> 62) & 0xFFF).unwrap_or(0);
        let rand_b = u64::try_from(tail & ((1 << 62) - 1)).unwrap_or(0);
        let mut counter_random = [0u8; 10];
        counter_random[..2].copy_from_slice(&rand_a.to_be_bytes());
        counter_random[2..].copy_from_slice(&rand_b.to_be_bytes());
        uuid::Builder::from_unix_timestamp_millis(millis, &counter_random)
            .into_uuid()
            .to_string()
    }

    /// A new internal id for an identity, a subject, a merge or a partner
    /// cluster, stamped `now` (unix seconds, from the caller's clock).
    ///
    /// Time-ordered so that each table's primary key (and
    /// `identities_subject`) grows at its end: with random v4 ids every new row
    /// dirtied a page somewhere in the middle of each of those B-trees, which
    /// SQLite's commit then wrote out (most of a referral's write cost was such
    /// pages). These ids never leave the gateway — partners and studies see
    /// keyed pseudonyms of the subject id — and the time in them is the row's
    /// `created_at`, which the database holds anyway. They are still not
    /// derived from anything about the person, which study pseudonyms rely on
    /// (§164.514(c)).
    pub fn internal(&self, now: i64) -> String {
        self.next(chrono::DateTime::from_timestamp(now, 0).unwrap_or_default())
    }
}

impl std::fmt::Debug for RecordIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordIds")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_repeats_and_the_os_does_not() {
        let draw = |r: &dyn Randomness| {
            let mut buf = [0u8; 16];
            r.fill(&mut buf).expect("fills");
            buf
        };
        let a = SeededRandomness::danger_predictable_for_tests(7);
        let b = SeededRandomness::danger_predictable_for_tests(7);
        assert_eq!(draw(&a), draw(&b));
        assert_ne!(
            draw(&a),
            draw(&SeededRandomness::danger_predictable_for_tests(8))
        );
        assert_ne!(draw(&OsRandomness), draw(&OsRandomness));
    }

    #[test]
    fn record_ids_are_v7_ordered_and_come_from_the_randomness_given() {
        let at = chrono::DateTime::from_timestamp(1_780_000_000, 5_000_000).expect("a time");
        let ids = RecordIds::new(Arc::new(SeededRandomness::danger_predictable_for_tests(1)));
        let first = ids.next(at);
        let parsed = uuid::Uuid::parse_str(&first).expect("a uuid");
        assert_eq!(parsed.get_version_num(), 7);
        assert_eq!(
            parsed.get_timestamp().map(|t| t.to_unix()),
            Some((1_780_000_000, 5_000_000)),
            "stamped with the time given"
        );
        // Later in the same millisecond, and with the clock stepped back:
        // still after the last one.
        let second = ids.next(at);
        let third = ids.next(at - chrono::TimeDelta::seconds(1));
        assert!(first < second && second < third, "{first} {second} {third}");
        let again = RecordIds::new(Arc::new(SeededRandomness::danger_predictable_for_tests(1)));
        assert_eq!(again.next(at), first, "the same seed, the same id");
        let other = RecordIds::new(Arc::new(SeededRandomness::danger_predictable_for_tests(2)));
        assert_ne!(other.next(at), first);
    }
}
