//! `crosswalk audit verify`: walks the whole chain and says whether it is intact,
//! and if not, which sequence number is the first bad one and what is wrong.
//!
//! # What is checked
//! - Every entry's hash is recomputed from its content and the previous entry's
//!   stored hash. Each link depends only on two adjacent rows, so one pass in
//!   sequence order, a page at a time, checks the chain in constant memory.
//! - Sequence numbers run 1, 2, 3, ... with no gap, and none lies beyond the head
//!   row, whose hash must be the last entry's.
//! - Signed checkpoints: the latest one in `audit_checkpoints` and, with
//!   `--checkpoint FILE`, every one in that witness file. Each must verify under
//!   the gateway's public key, the entry at its `seq` must exist (so a tail cut
//!   off after it was signed is found) and must have its `hash` (so a history
//!   rewritten and re-hashed consistently up to the head is found too).
//!
//! The walk runs in one read-only snapshot, so a gateway appending meanwhile
//! does not disturb it. Memory is one page of entries plus one `(seq, hash)` per
//! distinct checkpoint in the witness file (~50 bytes each: a year of 5-minute
//! checkpoints is ~5 MB).
//!
//! # Naming what is wrong
//! A link that does not verify is classified by looking one entry ahead: if the
//! next entry still chains from the stored hash, only this entry's content
//! changed (*altered*); if it does not, the entry is not where it was written
//! (*inserted, moved or swapped*). An entry whose hash was recomputed after an
//! edit makes the *next* link fail, and the message says so. A gap is *missing*
//! entries; an entry numbered below 1 or beyond the head was *inserted*; entries
//! the head or a checkpoint vouches for that are not there were *truncated*.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};

use super::checkpoint::{Checkpoint, CheckpointError, GatewayPublicKey};
use super::{GENESIS_HASH, entry_hash};
use crate::store::audit::{self as repo, StoredEntry};
use crate::store::{Store, StoreError};

/// Entries per page: ~3 MB of rows, and few enough round trips.
pub const PAGE_SIZE: i64 = 10_000;

/// The chain is not intact: the first bad sequence number and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tamper {
    pub seq: i64,
    pub kind: TamperKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TamperKind {
    /// The content does not match the hash, and the next entry chains from it.
    Altered,
    /// The content does not match the hash and the next entry does not chain
    /// from it either: inserted, moved or swapped (or it and the next altered).
    OutOfPlace,
    /// The entry is numbered where no entry can be: below 1, or beyond the head.
    Inserted { head: i64 },
    /// A gap: this entry is missing and the log continues at `next`.
    Missing { next: i64 },
    /// The log ends before this entry, but the head row says it reaches `head`.
    TruncatedBeforeHead { head: i64 },
    /// The log ends before this entry, but a signed checkpoint vouches for
    /// entries up to `checkpoint`.
    TruncatedBeforeCheckpoint {
        checkpoint: i64,
        signed_at: DateTime<Utc>,
        source: String,
    },
    /// The entry's stored hash is not the one a signed checkpoint recorded: the
    /// history up to it was rewritten and re-hashed.
    CheckpointMismatch {
        signed_at: DateTime<Utc>,
        source: String,
    },
    /// The head row names this entry but not its hash.
    HeadMismatch,
}

impl fmt::Display for Tamper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seq = self.seq;
        match &self.kind {
            TamperKind::Altered => write!(
                f,
                "entry {seq} was altered: its content does not match its hash (or entry {} \
                 was altered and re-hashed)",
                seq - 1
            ),
            TamperKind::OutOfPlace => write!(
                f,
                "entry {seq} is out of order: its hash does not match and entry {} does not \
                 chain from it (inserted, moved or swapped)",
                seq + 1
            ),
            TamperKind::Inserted { head } if seq < 1 => write!(
                f,
                "entry {seq} was inserted: sequence numbers start at 1 (head is {head})"
            ),
            TamperKind::Inserted { head } => write!(
                f,
                "entry {seq} was inserted: it lies beyond the chain head ({head})"
            ),
            TamperKind::Missing { next } if *next == seq + 1 => {
                write!(f, "entry {seq} is missing (deleted)")
            }
            TamperKind::Missing { next } => {
                write!(f, "entries {seq} to {} are missing (deleted)", next - 1)
            }
            TamperKind::TruncatedBeforeHead { head } => write!(
                f,
                "entry {seq} is missing: the log was truncated (the head row says it reaches {head})"
            ),
            TamperKind::TruncatedBeforeCheckpoint {
                checkpoint,
                signed_at,
                source,
            } => write!(
                f,
                "entry {seq} is missing: the log was truncated before the checkpoint for \
                 entry {checkpoint} signed at {} ({source})",
                signed_at.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
            TamperKind::CheckpointMismatch { signed_at, source } => write!(
                f,
                "entry {seq} is not the one the checkpoint signed at {} vouches for ({source}): \
                 the history up to it was rewritten",
                signed_at.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
            TamperKind::HeadMismatch => write!(
                f,
                "the head row names entry {seq} with a different hash: the head was altered"
            ),
        }
    }
}

/// Why verification stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error("the audit log is not intact: {0}")]
    Tampered(Tamper),
    #[error("the checkpoint {source_name} cannot be trusted: {error}")]
    BadCheckpoint {
        source_name: String,
        error: CheckpointError,
    },
    #[error("cannot read the witness file {}: {source}", path.display())]
    Witness {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for VerifyError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::from(e))
    }
}

/// An intact chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Entries checked (the last sequence number).
    pub entries: i64,
    /// The last entry's hash (zeros for an empty log).
    pub head_hash: [u8; 32],
    /// The latest checkpoint in the database, if any, which the chain matched.
    pub database_checkpoint: Option<(i64, DateTime<Utc>)>,
    /// How many checkpoints of the witness file the chain matched.
    pub witness_checkpoints: usize,
}

/// What a signed checkpoint says entry `seq` must be.
#[derive(Debug, Clone)]
struct Expected {
    hash: [u8; 32],
    signed_at: DateTime<Utc>,
    source: String,
}

/// Verifies the chain in `store` against its latest checkpoint and, if given,
/// the witness file at `witness`, with checkpoints checked under `key`.
pub async fn verify(
    store: &Store,
    key: &GatewayPublicKey,
    witness: Option<&Path>,
) -> Result<Verified, VerifyError> {
    verify_paged(store, key, witness, PAGE_SIZE).await
}

/// [`verify`] with a chosen page size (tests use small pages to cross pages).
pub async fn verify_paged(
    store: &Store,
    key: &GatewayPublicKey,
    witness: Option<&Path>,
    page_size: i64,
) -> Result<Verified, VerifyError> {
    let mut expected = BTreeMap::new();
    let witness_checkpoints = match witness {
        Some(path) => read_witness(path, key, &mut expected)?,
        None => 0,
    };
    let mut tx = repo::begin_snapshot(store).await?;
    let (head_seq, head_hash) = repo::head(&mut tx).await?;
    let database_checkpoint = match repo::latest_checkpoint(&mut tx).await? {
        Some(stored) => {
            let source = "latest in the database".to_owned();
            let checkpoint = Checkpoint::verify(&stored.jws, key).map_err(|error| {
                VerifyError::BadCheckpoint {
                    source_name: format!("for entry {} ({source})", stored.seq),
                    error,
                }
            })?;
            let at = checkpoint.at;
            expect(&mut expected, &checkpoint, source)?;
            Some((checkpoint.seq, at))
        }
        None => None,
    };

    let mut walk = Walk::new(head_seq, expected);
    let mut after = i64::MIN;
    loop {
        let page = repo::page_after(&mut tx, after, page_size).await?;
        let Some((last, _)) = page.last() else { break };
        after = last.seq;
        for (entry, stored_hash) in &page {
            walk.step(entry, stored_hash)
                .map_err(VerifyError::Tampered)?;
        }
        if i64::try_from(page.len()).unwrap_or(i64::MAX) < page_size {
            break;
        }
    }
    tx.rollback().await?;
    let (entries, last_hash) = walk.finish(head_hash).map_err(VerifyError::Tampered)?;
    Ok(Verified {
        entries,
        head_hash: last_hash,
        database_checkpoint,
        witness_checkpoints,
    })
}

/// Records what `checkpoint` vouches for. Two checkpoints that disagree about
/// one entry cannot both be true: the log cannot be intact.
fn expect(
    expected: &mut BTreeMap<i64, Expected>,
    checkpoint: &Checkpoint,
    source: String,
) -> Result<(), VerifyError> {
    let entry = Expected {
        hash: checkpoint.hash,
        signed_at: checkpoint.at,
        source,
    };
    match expected.get(&checkpoint.seq) {
        Some(existing) if existing.hash != entry.hash => Err(VerifyError::Tampered(Tamper {
            seq: checkpoint.seq,
            kind: TamperKind::CheckpointMismatch {
                signed_at: entry.signed_at,
                source: format!("{}, which disagrees with {}", entry.source, existing.source),
            },
        })),
        Some(_) => Ok(()),
        None => {
            expected.insert(checkpoint.seq, entry);
            Ok(())
        }
    }
}

/// Reads and verifies every checkpoint in a witness file; returns how many.
fn read_witness(
    path: &Path,
    key: &GatewayPublicKey,
    expected: &mut BTreeMap<i64, Expected>,
) -> Result<usize, VerifyError> {
    use std::io::BufRead as _;
    let io_error = |source| VerifyError::Witness {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_error)?;
    let mut count = 0;
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_error)?;
        let source = format!("{} line {}", path.display(), index + 1);
        let bad = |error| VerifyError::BadCheckpoint {
            source_name: source.clone(),
            error,
        };
        let Some(jws) = Checkpoint::jws_of_witness_line(&line).map_err(bad)? else {
            continue;
        };
        let checkpoint = Checkpoint::verify(&jws, key).map_err(bad)?;
        expect(expected, &checkpoint, source.clone())?;
        count += 1;
    }
    Ok(count)
}

/// The state of one pass over the chain.
struct Walk {
    head_seq: i64,
    expected: BTreeMap<i64, Expected>,
    /// The sequence number the next entry must have.
    next_seq: i64,
    /// The stored hash of the last entry that verified.
    prev: [u8; 32],
    /// An entry whose link failed, waiting for the next entry to tell altered
    /// from out of place: its number and stored hash.
    suspect: Option<(i64, Vec<u8>)>,
}

impl Walk {
    fn new(head_seq: i64, expected: BTreeMap<i64, Expected>) -> Self {
        Self {
            head_seq,
            expected,
            next_seq: 1,
            prev: GENESIS_HASH,
            suspect: None,
        }
    }

    fn step(&mut self, entry: &StoredEntry, stored_hash: &[u8]) -> Result<(), Tamper> {
        let seq = entry.seq;
        if let Some((suspect, suspect_hash)) = self.suspect.take() {
            let chains = <[u8; 32]>::try_from(suspect_hash.as_slice())
                .is_ok_and(|prev| entry_hash(&prev, entry).as_slice() == stored_hash);
            let kind = if chains {
                TamperKind::Altered
            } else {
                TamperKind::OutOfPlace
            };
            return Err(Tamper { seq: suspect, kind });
        }
        if seq < self.next_seq {
            return Err(Tamper {
                seq,
                kind: TamperKind::Inserted {
                    head: self.head_seq,
                },
            });
        }
        if seq > self.next_seq {
            return Err(Tamper {
                seq: self.next_seq,
                kind: TamperKind::Missing { next: seq },
            });
        }
        if seq > self.head_seq {
            return Err(Tamper {
                seq,
                kind: TamperKind::Inserted {
                    head: self.head_seq,
                },
            });
        }
        if entry_hash(&self.prev, entry).as_slice() != stored_hash {
            self.suspect = Some((seq, stored_hash.to_vec()));
            return Ok(());
        }
        if let Some(expected) = self.expected.get(&seq)
            && expected.hash.as_slice() != stored_hash
        {
            return Err(Tamper {
                seq,
                kind: TamperKind::CheckpointMismatch {
                    signed_at: expected.signed_at,
                    source: expected.source.clone(),
                },
            });
        }
        self.prev.copy_from_slice(stored_hash);
        self.next_seq += 1;
        Ok(())
    }

    /// After the last entry: the head and the checkpoints must agree with where
    /// the chain ended. Returns the count and the last hash.
    fn finish(mut self, head_hash: [u8; 32]) -> Result<(i64, [u8; 32]), Tamper> {
        if let Some((seq, _)) = self.suspect.take() {
            return Err(Tamper {
                seq,
                kind: TamperKind::Altered,
            });
        }
        let last = self.next_seq - 1;
        // A checkpoint for the empty log (seq 0) vouches for the genesis hash.
        if let Some(expected) = self.expected.get(&0)
            && expected.hash != GENESIS_HASH
        {
            return Err(Tamper {
                seq: 0,
                kind: TamperKind::CheckpointMismatch {
                    signed_at: expected.signed_at,
                    source: expected.source.clone(),
                },
            });
        }
        if let Some((&checkpoint, expected)) = self.expected.range(last + 1..).next_back() {
            return Err(Tamper {
                seq: last + 1,
                kind: TamperKind::TruncatedBeforeCheckpoint {
                    checkpoint,
                    signed_at: expected.signed_at,
                    source: expected.source.clone(),
                },
            });
        }
        if self.head_seq > last {
            return Err(Tamper {
                seq: last + 1,
                kind: TamperKind::TruncatedBeforeHead {
                    head: self.head_seq,
                },
            });
        }
        if self.head_seq == last && head_hash != self.prev {
            return Err(Tamper {
                seq: last,
                kind: TamperKind::HeadMismatch,
            });
        }
        Ok((last, self.prev))
    }
}
