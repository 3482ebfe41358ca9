//! `crosswalk audit verify`: walks the whole chain and says whether it is intact,
//! and if not, which sequence number is the first bad one and what is wrong.
//!
//! # What is checked
//! - Every entry's hash is recomputed from its content and the previous entry's
//!   stored hash.
//! - Sequence numbers run 1, 2, 3, ... with no gap, and none lies beyond the head
//!   row, whose hash must be the last entry's.
//! - Signed checkpoints: the latest one in `audit_checkpoints` and, with
//!   `--checkpoint FILE`, every one in that witness file. Each must verify under
//!   the gateway's public key, the entry at its `seq` must exist (so a tail cut
//!   off after it was signed is found) and must have its `hash` (so a history
//!   rewritten and re-hashed consistently up to the head is found too).
//! - The rows of the audited tables (referrals, assignments, outcomes, cases,
//!   consents, exports) against the chain: every row has its create entry and
//!   every create entry its row ([`super::crosscheck`]). A tail cut between
//!   two checkpoints, with the head rewound to match, leaves a chain that
//!   verifies, but not the rows those entries recorded.
//!
//! # How it runs
//! First the audited tables' snapshot is opened and its head read
//! ([`crate::store::record_ids`]); their ids are read in it on a connection of
//! their own while everything below runs, and compared with the create
//! entries up to that head once the walk is done. The verifier's own snapshot
//! is opened after it, so its head is at or above the rows' (a head that went
//! back in between was moved by hand: *head moved back*).
//! The head and the latest checkpoint are read in one read-only snapshot, which
//! also looks for entries numbered below 1 first and beyond the head last (each
//! one indexed query). The entries from 1 to that
//! head are read in pages of [`PAGE_SIZE`] by sequence range, [`PAGES_IN_FLIGHT`]
//! at a time on their own connections, and each page is hashed as soon as it
//! arrives: a link depends only on two adjacent rows, so each page is read with
//! the last entry of the page before it and checks its own links. One pass then
//! goes through the checked pages in order for numbering, checkpoints and the
//! head. Entries at or below a committed head never change, so reading them
//! outside the snapshot is safe while a gateway keeps appending. The pages are
//! read by [`ChainReader`], through the native drivers rather than sqlx's
//! `Any` driver (see [`crate::store::chain`]): on SQLite with `rusqlite` on
//! blocking threads, on PostgreSQL with a binary `COPY` per page; each row's
//! columns are hashed borrowed from the driver's buffer.
//!
//! Memory is bounded by the pages in flight (a few MB) plus one `(seq, hash,
//! time, line)` per distinct checkpoint in the witness file (~60-70 bytes
//! each: 10-second checkpoints while the head moves 12 hours a day are ~100 MB
//! a year), plus the cross-check's ids: 16 bytes per create entry and per
//! audited row (~32 MB per million audited rows).
//!
//! # Where the time goes
//! Through the `Any` driver, `cargo bench --bench audit` measured ~185,000
//! entries per CPU-second on SQLite and ~180,000 on PostgreSQL (35,000-51,000
//! wall-clock at load average ~11), most of it getting rows out through sqlx:
//! SQLite building each page's JSON (~2.5 µs an entry), the `Any` driver
//! converting PostgreSQL rows (~5 µs). With the native readers of
//! [`crate::store::chain`] it measured ~540,000 entries per CPU-second on
//! SQLite (SQLite's work included) and ~540,000 on PostgreSQL (the
//! verifier's process only; the server's scan and COPY are in its own), on
//! 200,000 entries at load average ~12-13: ~358,000 and ~170,000 entries/s
//! wall-clock on that busy machine.
//!
//! On a quiet machine (2026-12-06, 1,000,000 entries, PostgreSQL settled by
//! `VACUUM` and `CHECKPOINT` after the fill): SQLite 0.93-1.03 million
//! entries/s, PostgreSQL 560,000-665,000/s, peak resident ~50 and ~33 MiB.
//! Three changes got PostgreSQL there from ~500,000: pages of 20,000 entries
//! instead of 5,000 (each page is a new `COPY` query, whose start leaves its
//! slot idle), feeding BLAKE3 each entry in one call (the per-field calls were
//! a fifth of the verifier's time; `_blake3_compress` itself is now most of
//! it), and measuring after the fill's autovacuum instead of during it. The
//! server's side is ~1 µs an entry (index scan and binary `COPY` output,
//! measured with `psql` alone), the verifier's ~1.5 µs of CPU, together on
//! two cores.
//!
//! # Naming what is wrong
//! A link that does not verify is classified by looking one entry ahead: if the
//! next entry still chains from the stored hash, only this entry's content
//! changed (*altered*); if it does not, the entry is not where it was written
//! (*inserted, moved or swapped*). An entry whose hash was recomputed after an
//! edit makes the *next* link fail, and the message says so. A gap is *missing*
//! entries; an entry numbered below 1 or beyond the head was *inserted*; entries
//! the head or a checkpoint vouches for that are not there were *truncated*.
//! When the chain itself is intact, rows and create entries that do not
//! account for each other are named by table and count, never by id.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};

use super::checkpoint::{Checkpoint, CheckpointError, GatewayPublicKey};
use super::crosscheck::{self, Accounted, CreateLedger, Unaccounted};
use super::{GENESIS_HASH, columns_hash};
use crate::store::audit as repo;
use crate::store::chain::{ChainReader, ChainRow, ChainVisitor};
use crate::store::record_ids;
use crate::store::{Store, StoreError};

/// Entries per page.
pub const PAGE_SIZE: i64 = 20_000;
/// Pages read and hashed at once, each on a reader connection of its own.
pub const PAGES_IN_FLIGHT: usize = 3;
#[expect(clippy::cast_possible_truncation, reason = "a small constant")]
const PAGES_IN_FLIGHT_U32: u32 = PAGES_IN_FLIGHT as u32;

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
    /// The head row said `from` when verification began and this entry
    /// (lower) a moment later: it was moved back by hand meanwhile.
    HeadMovedBack { from: i64 },
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
            TamperKind::HeadMovedBack { from } => write!(
                f,
                "the head row moved back from entry {from} to entry {seq} while it was being \
                 verified: the head was altered"
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
    /// The chain is intact, but the audited tables hold rows it does not
    /// account for, or lack rows it created.
    #[error("the audit log is not intact: {0}")]
    Unaccounted(Unaccounted),
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
    #[error("a verification task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
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
    /// The audited rows, per set, each of which had its create entry (and
    /// each create entry its row); `None` when the check was not asked for.
    pub rows: Option<Accounted>,
}

/// How to verify. [`verify`] uses the defaults: everything checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Entries per page read ([`PAGE_SIZE`]; tests use small pages to cross
    /// page boundaries).
    pub page_size: i64,
    /// Whether to check the audited tables' rows against the create entries.
    /// Always on in `crosswalk audit verify`; off only to measure the chain
    /// walk alone (`cargo bench --bench audit`).
    pub cross_check: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            page_size: PAGE_SIZE,
            cross_check: true,
        }
    }
}

/// What a signed checkpoint says entry `seq` must be. No text: a witness
/// file of 10-second checkpoints can have millions of lines (~60 bytes each
/// here); where one came from is put into words only for a message.
#[derive(Debug, Clone, Copy)]
struct Expected {
    hash: [u8; 32],
    signed_at: DateTime<Utc>,
    /// The witness file's line, or 0 for the database's latest checkpoint.
    line: u32,
}

/// Every signed checkpoint's [`Expected`], by sequence number.
#[derive(Debug, Default)]
struct Checkpoints {
    by_seq: BTreeMap<i64, Expected>,
    /// The witness file the lines are in, for messages.
    witness: Option<PathBuf>,
}

impl Checkpoints {
    /// Where `expected` came from, for a message.
    fn source(&self, expected: &Expected) -> String {
        match (&self.witness, expected.line) {
            (Some(path), line) if line > 0 => format!("{} line {line}", path.display()),
            _ => "latest in the database".to_owned(),
        }
    }

    /// Records what `checkpoint` (from witness line `line`, 0 for the
    /// database) vouches for. Two checkpoints that disagree about one entry
    /// cannot both be true: the log cannot be intact.
    fn expect(&mut self, checkpoint: &Checkpoint, line: u32) -> Result<(), VerifyError> {
        let entry = Expected {
            hash: checkpoint.hash,
            signed_at: checkpoint.at,
            line,
        };
        match self.by_seq.get(&checkpoint.seq) {
            Some(existing) if existing.hash != entry.hash => Err(VerifyError::Tampered(Tamper {
                seq: checkpoint.seq,
                kind: TamperKind::CheckpointMismatch {
                    signed_at: entry.signed_at,
                    source: format!(
                        "{}, which disagrees with {}",
                        self.source(&entry),
                        self.source(existing)
                    ),
                },
            })),
            Some(_) => Ok(()),
            None => {
                self.by_seq.insert(checkpoint.seq, entry);
                Ok(())
            }
        }
    }
}

/// Verifies the chain in `store` against its latest checkpoint and, if given,
/// the witness file at `witness`, with checkpoints checked under `key`.
pub async fn verify(
    store: &Store,
    key: &GatewayPublicKey,
    witness: Option<&Path>,
) -> Result<Verified, VerifyError> {
    verify_with(store, key, witness, VerifyOptions::default()).await
}

/// [`verify`] with a chosen page size (tests use small pages to cross pages).
pub async fn verify_paged(
    store: &Store,
    key: &GatewayPublicKey,
    witness: Option<&Path>,
    page_size: i64,
) -> Result<Verified, VerifyError> {
    let options = VerifyOptions {
        page_size,
        ..VerifyOptions::default()
    };
    verify_with(store, key, witness, options).await
}

/// [`verify`] with chosen [`VerifyOptions`].
pub async fn verify_with(
    store: &Store,
    key: &GatewayPublicKey,
    witness: Option<&Path>,
    options: VerifyOptions,
) -> Result<Verified, VerifyError> {
    let mut expected = Checkpoints::default();
    let witness_checkpoints = match witness {
        Some(path) => read_witness(path, key, &mut expected)?,
        None => 0,
    };
    // The rows' snapshot first: the chain's head below is at or above its head.
    let rows = if options.cross_check {
        Some(record_ids::start(store).await?)
    } else {
        None
    };
    let mut tx = repo::begin_snapshot(store).await?;
    let (head_seq, head_hash) = repo::head(&mut tx).await?;
    let rows_head = rows.as_ref().map_or(0, |rows| rows.head);
    if rows_head > head_seq {
        return Err(VerifyError::Tampered(Tamper {
            seq: head_seq,
            kind: TamperKind::HeadMovedBack { from: rows_head },
        }));
    }
    let database_checkpoint = match repo::latest_checkpoint(&mut tx).await? {
        Some(stored) => {
            let checkpoint = Checkpoint::verify(&stored.jws, key).map_err(|error| {
                VerifyError::BadCheckpoint {
                    source_name: format!("for entry {} (latest in the database)", stored.seq),
                    error,
                }
            })?;
            let at = checkpoint.at;
            expected.expect(&checkpoint, 0)?;
            Some((checkpoint.seq, at))
        }
        None => None,
    };

    // Numbers start at 1: the lowest entry below that is the first bad one.
    if let Some(seq) = repo::first_below(&mut tx, 1).await? {
        return Err(VerifyError::Tampered(Tamper {
            seq,
            kind: TamperKind::Inserted { head: head_seq },
        }));
    }
    let reader = ChainReader::open(store, PAGES_IN_FLIGHT_U32).await?;
    let pages = Pages {
        head: head_seq,
        size: options.page_size,
        creates_up_to: rows_head,
    };
    let walked = walk_pages(&reader, Walk::new(head_seq, expected), pages).await;
    reader.close().await;
    let mut walk = walked?;
    let beyond = repo::first_after(&mut tx, head_seq.max(0)).await?;
    tx.rollback().await?;
    let creates = std::mem::take(&mut walk.creates);
    let (entries, last_hash) = walk
        .finish(head_hash, beyond)
        .map_err(VerifyError::Tampered)?;
    let rows = match rows {
        Some(rows) => {
            let ids = rows.finish().await?;
            Some(crosscheck::compare(creates, &ids).map_err(VerifyError::Unaccounted)?)
        }
        None => None,
    };
    Ok(Verified {
        entries,
        head_hash: last_hash,
        database_checkpoint,
        witness_checkpoints,
        rows,
    })
}

/// What the walk reads: entries `1..=head` in pages of `size`, noting the
/// create entries up to `creates_up_to` (the rows' head; 0 for none).
#[derive(Debug, Clone, Copy)]
struct Pages {
    head: i64,
    size: i64,
    creates_up_to: i64,
}

/// Reads the entries from 1 to `head` in pages, [`PAGES_IN_FLIGHT`] at a time,
/// and steps `walk` through them in order.
async fn walk_pages(
    reader: &ChainReader,
    mut walk: Walk,
    pages: Pages,
) -> Result<Walk, VerifyError> {
    let mut ranges = page_ranges(pages.head, pages.size);
    let mut in_flight = VecDeque::new();
    let spawn =
        |(lo, hi): (i64, i64)| tokio::spawn(read_page(reader.clone(), lo, hi, pages.creates_up_to));
    in_flight.extend(ranges.by_ref().take(PAGES_IN_FLIGHT).map(spawn));
    while let Some(reading) = in_flight.pop_front() {
        let read = reading.await;
        let failure = match read {
            Ok(Ok(page)) => Ok(page),
            Ok(Err(e)) => Err(VerifyError::Store(e)),
            Err(e) => Err(VerifyError::Task(e)),
        };
        let page = failure.inspect_err(|_| {
            in_flight.iter().for_each(tokio::task::JoinHandle::abort);
        })?;
        in_flight.extend(ranges.next().map(spawn));
        for link in &page.links {
            if let Err(tamper) = walk.step(link) {
                in_flight.iter().for_each(tokio::task::JoinHandle::abort);
                return Err(VerifyError::Tampered(tamper));
            }
        }
        walk.creates.append(page.creates);
    }
    Ok(walk)
}

/// The sequence ranges `(lo, hi)` (inclusive) that cover every entry from 1
/// to `head`: the first from 0, each next one starting at the last of the one
/// before, whose entry it reads again as its first link's predecessor.
fn page_ranges(head: i64, page_size: i64) -> impl Iterator<Item = (i64, i64)> {
    let mut lo: i64 = 0;
    let mut done = head < 1;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let hi = lo.saturating_add(page_size).min(head);
        done = hi >= head;
        let range = (lo, hi);
        lo = hi;
        Some(range)
    })
}

/// One entry as the walk needs it, once its page was read and hashed.
#[derive(Debug, Clone, Copy)]
struct Link {
    seq: i64,
    /// The stored hash, unless it is not 32 bytes.
    hash: Option<[u8; 32]>,
    /// Whether the stored hash is the hash of the content and of the stored
    /// hash of the entry before it in the same read; `None` when that entry was
    /// not in the read.
    chains: Option<bool>,
}

/// Reads the entries `lo ..= hi`, checks each one's link to the one before
/// it and notes the create entries up to `creates_up_to`.
async fn read_page(
    reader: ChainReader,
    lo: i64,
    hi: i64,
    creates_up_to: i64,
) -> Result<PageLinks, StoreError> {
    let expected = usize::try_from(hi.saturating_sub(lo).saturating_add(1)).unwrap_or(0);
    reader
        .read(lo, hi, PageLinks::new(lo, expected, creates_up_to))
        .await
}

/// Checks each row of a range's read against the row before it, as they
/// arrive. The row at `lo` of a range after the first only serves as the
/// predecessor of the next. A row whose content could not be read (a value of
/// the wrong type) breaks its own link; the next one is checked against its
/// stored hash as usual.
struct PageLinks {
    lo: i64,
    /// Whether this is the first range, which starts at 0, where no entry is
    /// (checked before): its first entry chains from the genesis hash.
    first_range: bool,
    /// The stored hash of the row before. Outer `None`: that row was not read;
    /// inner `None`: its stored hash is unusable, so nothing can chain from it.
    #[expect(
        clippy::option_option,
        reason = "the two absences mean different things"
    )]
    prev: Option<Option<[u8; 32]>>,
    /// Whether a row was read yet.
    started: bool,
    links: Vec<Link>,
    /// Create entries are noted up to here (the rows' snapshot's head).
    creates_up_to: i64,
    creates: CreateLedger,
}

impl PageLinks {
    fn new(lo: i64, capacity: usize, creates_up_to: i64) -> Self {
        let first_range = lo == 0;
        Self {
            lo,
            first_range,
            prev: first_range.then_some(Some(GENESIS_HASH)),
            started: false,
            links: Vec::with_capacity(capacity),
            creates_up_to,
            creates: CreateLedger::default(),
        }
    }
}

impl ChainVisitor for PageLinks {
    fn visit(&mut self, row: ChainRow<'_>) {
        let chains = match &row.columns {
            Some(columns) => self.prev.map(|prev| {
                prev.zip(row.hash)
                    .is_some_and(|(prev, hash)| columns_hash(&prev, columns) == hash)
            }),
            None => Some(false),
        };
        self.prev = Some(row.hash);
        let predecessor_only = !self.started && !self.first_range && row.seq == self.lo;
        self.started = true;
        if !predecessor_only {
            self.links.push(Link {
                seq: row.seq,
                hash: row.hash,
                chains,
            });
            // An entry that could not be read breaks its link, which fails
            // the verification before the rows are compared.
            if row.seq <= self.creates_up_to
                && let Some(columns) = &row.columns
            {
                self.creates.note(columns.texts[1], columns.texts[4]);
            }
        }
    }
}

/// Reads and verifies every checkpoint in a witness file; returns how many.
fn read_witness(
    path: &Path,
    key: &GatewayPublicKey,
    expected: &mut Checkpoints,
) -> Result<usize, VerifyError> {
    use std::io::BufRead as _;
    expected.witness = Some(path.to_owned());
    let io_error = |source| VerifyError::Witness {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_error)?;
    let mut count = 0;
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_error)?;
        let number = index + 1;
        let bad = |error| VerifyError::BadCheckpoint {
            source_name: format!("{} line {number}", path.display()),
            error,
        };
        let Some(jws) = Checkpoint::jws_of_witness_line(&line).map_err(bad)? else {
            continue;
        };
        let checkpoint = Checkpoint::verify(&jws, key).map_err(bad)?;
        expected.expect(&checkpoint, u32::try_from(number).unwrap_or(u32::MAX))?;
        count += 1;
    }
    Ok(count)
}

/// The state of one pass over the chain.
struct Walk {
    head_seq: i64,
    expected: Checkpoints,
    /// The sequence number the next entry must have.
    next_seq: i64,
    /// The stored hash of the last entry that verified.
    prev: [u8; 32],
    /// An entry whose link failed, waiting for the next entry to tell altered
    /// from out of place.
    suspect: Option<i64>,
    /// The create entries of the pages stepped through so far.
    creates: CreateLedger,
}

impl Walk {
    fn new(head_seq: i64, expected: Checkpoints) -> Self {
        Self {
            head_seq,
            expected,
            next_seq: 1,
            prev: GENESIS_HASH,
            suspect: None,
            creates: CreateLedger::default(),
        }
    }

    fn step(&mut self, link: &Link) -> Result<(), Tamper> {
        let seq = link.seq;
        if let Some(suspect) = self.suspect.take() {
            let kind = if link.chains == Some(true) {
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
        let (Some(true), Some(hash)) = (link.chains, link.hash) else {
            self.suspect = Some(seq);
            return Ok(());
        };
        if let Some(expected) = self.expected.by_seq.get(&seq)
            && expected.hash != hash
        {
            return Err(Tamper {
                seq,
                kind: TamperKind::CheckpointMismatch {
                    signed_at: expected.signed_at,
                    source: self.expected.source(expected),
                },
            });
        }
        self.prev = hash;
        self.next_seq += 1;
        Ok(())
    }

    /// After the last entry: the head and the checkpoints must agree with where
    /// the chain ended, and nothing may lie beyond the head (`beyond`: the first
    /// entry above it, if any). Returns the count and the last hash.
    fn finish(
        mut self,
        head_hash: [u8; 32],
        beyond: Option<i64>,
    ) -> Result<(i64, [u8; 32]), Tamper> {
        if let Some(seq) = self.suspect.take() {
            return Err(Tamper {
                seq,
                kind: TamperKind::Altered,
            });
        }
        let last = self.next_seq - 1;
        // A checkpoint for the empty log (seq 0) vouches for the genesis hash.
        if let Some(expected) = self.expected.by_seq.get(&0)
            && expected.hash != GENESIS_HASH
        {
            return Err(Tamper {
                seq: 0,
                kind: TamperKind::CheckpointMismatch {
                    signed_at: expected.signed_at,
                    source: self.expected.source(expected),
                },
            });
        }
        if let Some(seq) = beyond
            && last == self.head_seq
        {
            return Err(Tamper {
                seq,
                kind: TamperKind::Inserted {
                    head: self.head_seq,
                },
            });
        }
        if let Some((&checkpoint, expected)) = self.expected.by_seq.range(last + 1..).next_back() {
            return Err(Tamper {
                seq: last + 1,
                kind: TamperKind::TruncatedBeforeCheckpoint {
                    checkpoint,
                    signed_at: expected.signed_at,
                    source: self.expected.source(expected),
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
        if head_hash != self.prev {
            return Err(Tamper {
                seq: last,
                kind: TamperKind::HeadMismatch,
            });
        }
        Ok((last, self.prev))
    }
}
