//! The audit log: every write and every disclosure, append-only and hash-chained
//! (design.md §2.6).
//!
//! # The chain
//! Entry `n` stores `hash_n = BLAKE3(prev_hash ‖ canonical(entry_n))`, where
//! `prev_hash` is entry `n-1`'s hash (32 zero bytes before the first entry) and the
//! canonical encoding ([`canonical`]) covers every column of the row except the
//! hash itself, each length-prefixed, in a fixed order. Changing, removing,
//! inserting or reordering any row therefore changes every hash after it, and
//! `crosswalk audit verify` finds the first sequence number where the stored hash
//! and the recomputed one disagree.
//!
//! # Appending
//! [`append`] runs **inside the caller's transaction**, so an entry commits with
//! the change it records or not at all. It serializes on the single-row
//! `audit_head` table: its first statement updates that row (reserving the next
//! sequence numbers), which on PostgreSQL holds the row lock until commit and on
//! SQLite happens under the database's single writer (write transactions begin
//! `IMMEDIATE`, see [`crate::store::Store::begin`]). So any number of connections
//! and gateway replicas append without forks or gaps: a transaction that rolls
//! back rolls its reservation back too. Call it **last** before commit, so the head
//! is held for as short a time as possible, and pass all of a transaction's
//! entries in one call (one multi-row insert). An append is two statements: the
//! reservation, and the insert, which also moves the head's hash along (a
//! trigger on SQLite, migration 0005; a data-modifying `WITH` on PostgreSQL,
//! 0012; it was a third statement, ~10% of a small write's time).
//! On PostgreSQL, where each statement is a network round trip, it is usually
//! one: the process remembers the head it last appended
//! ([`repo::head_hint`]), hashes the entries on it, and one statement moves the
//! head *only if it is still exactly that* and inserts; when another appender
//! got there first, nothing happened and the two-statement path runs. The hint
//! is never trusted, only checked under the head row's lock.
//!
//! # What an entry may hold
//! Codes, ids and counts: the actor's partner id, the action, the purpose code,
//! the resource and record id, the subject's *internal* reference (a random id,
//! never an identifier), the names of the fields released and how, the policy
//! version, the decision's reason and the consent that allowed it. Never an
//! identifier, a token or free text: [`Event::detail`] takes only a small JSON
//! object of codes and numbers, and callers must not put anything else in it.
//!
//! # Around the chain
//! - [`checkpoint`]: the head signed with the gateway's Ed25519 key (a JWS), in
//!   `audit_checkpoints` and a witness file outside the database.
//! - [`verify`]: `crosswalk audit verify`, the streaming check of the chain, the
//!   head and the checkpoints, naming the first bad sequence number.
//! - [`crosscheck`]: part of `verify`: every audited row has its create entry
//!   and every create entry its row, which finds a tail cut between checkpoints.
//! - [`witness`]: checkpoints sent to an outside witness (a command, or an
//!   HTTPS POST), retried until delivered.
//! - [`refusals`]: refused requests, recorded in batches by a background writer
//!   so that a flood of them cannot slow legitimate writes.
//! - [`read`]: pages of entries for administrators and the accounting of
//!   disclosures for one person.
//! - [`partners`]: partner registry changes, noticed at start-up.
//!
//! # Auditing a new write
//! 1. Do the write in a transaction from [`crate::store::Store::begin`].
//! 2. Build its [`Event`]: actor (the partner id, or [`GATEWAY_ACTOR`] /
//!    [`OPERATOR_ACTOR`]), a dotted action (`referral.create`, `consent.revoke`),
//!    the resource and record id, the subject's internal reference, and for a
//!    disclosure the fields released and the decision's policy version and reason.
//! 3. Call [`append`] last, with all of the transaction's events, then commit.
//!    If the append fails, return the error: the change must not commit without
//!    its entry (block, don't drop).

pub mod checkpoint;
pub mod crosscheck;
pub mod partners;
pub mod read;
pub mod refusals;
pub mod verify;
pub mod witness;

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::store::audit as repo;
use crate::store::{StoreError, Tx};

use crate::store::audit::EntryColumns;
pub use crate::store::audit::StoredEntry;

/// The hash before the first entry.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// The domain-separation tag at the start of every hashed entry. Bump it (and
/// keep verifying the old one) if the canonical encoding ever changes.
const ENTRY_TAG: &[u8] = b"crosswalk audit entry v1\0";

/// The actor recorded for what the gateway does on its own (checkpoints, reloads
/// on SIGHUP).
pub const GATEWAY_ACTOR: &str = "gateway";
/// The actor recorded for operator commands run from the CLI (key rotation).
pub const OPERATOR_ACTOR: &str = "operator";

/// How a field left the gateway, as the audit log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Released {
    Released,
    Pseudonymized,
    Generalized,
}

impl Released {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Released => "released",
            Self::Pseudonymized => "pseudonymized",
            Self::Generalized => "generalized",
        }
    }
}

/// One thing that happened, to be appended. Build it with [`Event::new`] and the
/// `with_*` methods.
#[derive(Clone, Default, PartialEq)]
pub struct Event {
    pub actor: String,
    pub action: String,
    pub purpose: Option<String>,
    pub resource: Option<String>,
    pub record_id: Option<String>,
    /// The subject's internal reference (never an identifier).
    pub subject_ref: Option<String>,
    /// The fields released and how (empty for writes and refusals).
    pub fields: Vec<(String, Released)>,
    pub policy_version: Option<String>,
    pub reason: Option<String>,
    pub consent_id: Option<String>,
    /// Codes and counts only (e.g. `{"status": 404}`, `{"rows": 1200}`).
    pub detail: Option<serde_json::Value>,
}

impl fmt::Debug for Event {
    // Only the shape: even internal references stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("actor", &self.actor)
            .field("action", &self.action)
            .field("resource", &self.resource)
            .field("fields", &self.fields.len())
            .finish_non_exhaustive()
    }
}

impl Event {
    pub fn new(actor: impl Into<String>, action: impl Into<String>) -> Self {
        Self {
            actor: actor.into(),
            action: action.into(),
            ..Self::default()
        }
    }

    #[must_use]
    pub fn with_purpose(mut self, purpose: impl Into<String>) -> Self {
        self.purpose = Some(purpose.into());
        self
    }

    #[must_use]
    pub fn with_record(
        mut self,
        resource: impl Into<String>,
        record_id: impl Into<String>,
    ) -> Self {
        self.resource = Some(resource.into());
        self.record_id = Some(record_id.into());
        self
    }

    #[must_use]
    pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    #[must_use]
    pub fn with_subject(mut self, subject_ref: impl Into<String>) -> Self {
        self.subject_ref = Some(subject_ref.into());
        self
    }

    #[must_use]
    pub fn with_fields(mut self, fields: Vec<(String, Released)>) -> Self {
        self.fields = fields;
        self
    }

    #[must_use]
    pub fn with_decision(
        mut self,
        policy_version: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        self.policy_version = Some(policy_version.into());
        self.reason = Some(reason.into());
        self
    }

    #[must_use]
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    #[must_use]
    pub fn with_consent(mut self, consent_id: impl Into<String>) -> Self {
        self.consent_id = Some(consent_id.into());
        self
    }

    #[must_use]
    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }
}

/// The fields a decision releases and how, for a disclosure's entry (withheld
/// fields are not disclosed and not listed).
pub fn released_fields(decision: &crate::policy::Decision) -> Vec<(String, Released)> {
    use crate::policy::FieldAction;
    decision
        .fields
        .iter()
        .filter_map(|(name, action)| {
            let how = match action {
                FieldAction::Release => Released::Released,
                FieldAction::Pseudonymize => Released::Pseudonymized,
                FieldAction::Generalize => Released::Generalized,
                FieldAction::Withhold => return None,
            };
            Some((name.clone(), how))
        })
        .collect()
}

/// The action recorded for a policy reload on SIGHUP.
pub const POLICY_RELOAD_ACTION: &str = "policy.reload";
/// The action recorded for a finished master-key rotation.
pub const KEY_ROTATION_ACTION: &str = "keys.rotate";

/// The entry for a policy reload: `accepted` (a new version is in force),
/// `unchanged`, or `refused` (the previous version stays) with the kind of
/// failure — a code, since the error text names files.
pub fn policy_reload_event(
    outcome: &Result<crate::policy::Reloaded, crate::policy::PolicyError>,
    in_force: &str,
) -> Event {
    use crate::policy::PolicyError;
    let event = Event::new(GATEWAY_ACTOR, POLICY_RELOAD_ACTION).with_resource("policy");
    match outcome {
        Ok(reloaded) if reloaded.previous == reloaded.current => event
            .with_decision(in_force, "unchanged")
            .with_detail(serde_json::json!({"previous_version": &*reloaded.previous})),
        Ok(reloaded) => event
            .with_decision(in_force, "accepted")
            .with_detail(serde_json::json!({"previous_version": &*reloaded.previous})),
        Err(error) => {
            let failure = match error {
                PolicyError::Bundle { .. } => "bundle",
                PolicyError::File { .. } => "file",
                PolicyError::Catalog { .. } => "catalog",
                PolicyError::Decision { .. } => "decision",
                PolicyError::TestsFailed { .. } => "tests_failed",
                _ => "other",
            };
            event
                .with_decision(in_force, "refused")
                .with_detail(serde_json::json!({"failure": failure}))
        }
    }
}

/// Appends the entry for a policy reload in its own transaction. A reload
/// changes no row, so there is no other write for it to share one with.
pub async fn record_policy_reload(
    store: &crate::store::Store,
    outcome: &Result<crate::policy::Reloaded, crate::policy::PolicyError>,
    in_force: &str,
    clock: &dyn Clock,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    append(&mut tx, &[policy_reload_event(outcome, in_force)], clock).await?;
    tx.commit().await?;
    Ok(())
}

/// The entry for a finished master-key rotation, appended in its final
/// transaction by [`crate::subjects::rotate_keys`].
pub fn key_rotation_event(key_version: i64) -> Event {
    Event::new(OPERATOR_ACTOR, KEY_ROTATION_ACTION)
        .with_resource("master_secret")
        .with_detail(serde_json::json!({"key_version": key_version}))
}

/// What [`append`] wrote: the sequence numbers `first..=last` and the new head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub first: i64,
    pub last: i64,
    pub head: [u8; 32],
}

/// Appends `events`, in order, inside `tx`. Call it last before committing.
/// Appending nothing is a no-op that does not touch the head.
pub async fn append(
    tx: &mut Tx<'_>,
    events: &[Event],
    clock: &dyn Clock,
) -> Result<Option<Appended>, StoreError> {
    if events.is_empty() {
        return Ok(None);
    }
    let count = i64::try_from(events.len()).unwrap_or(i64::MAX);
    let at = micros(clock.now());
    // PostgreSQL: guess the head from this process's last append and append
    // after it in one statement, which moves the head only if the guess holds.
    if events.len() <= repo::ENTRIES_AFTER_HEAD
        && let Some((head_seq, head_hash)) = repo::head_hint(tx)
    {
        let (rows, appended) = hashed_rows(head_seq + 1, head_hash, at, events);
        if repo::insert_after_head(tx, head_seq, &head_hash, &rows).await? {
            repo::set_head_hint(tx, appended.last, appended.head);
            return Ok(Some(appended));
        }
    }
    let (reserved_to, prev) = repo::reserve(tx, count).await?;
    let (rows, appended) = hashed_rows(reserved_to - count + 1, prev, at, events);
    // The head's hash follows in the same statement.
    repo::insert(tx, &rows).await?;
    repo::set_head_hint(tx, appended.last, appended.head);
    Ok(Some(appended))
}

/// `events` as rows numbered from `first`, chained on `prev`, stamped `at`.
fn hashed_rows(
    first: i64,
    mut prev: [u8; 32],
    at: i64,
    events: &[Event],
) -> (Vec<(StoredEntry, [u8; 32])>, Appended) {
    let mut rows = Vec::with_capacity(events.len());
    for (offset, event) in (0..).zip(events) {
        let row = stored_entry(first + offset, at, event);
        let hash = entry_hash(&prev, &row);
        prev = hash;
        rows.push((row, hash));
    }
    let last = first + i64::try_from(events.len()).unwrap_or(i64::MAX) - 1;
    (
        rows,
        Appended {
            first,
            last,
            head: prev,
        },
    )
}

/// `BLAKE3(tag ‖ prev ‖ canonical(entry))`.
pub fn entry_hash(prev: &[u8; 32], entry: &StoredEntry) -> [u8; 32] {
    columns_hash(prev, &EntryColumns::of(entry))
}

/// The row an event becomes at `seq`, stamped `at`.
fn stored_entry(seq: i64, at: i64, event: &Event) -> StoredEntry {
    let fields: Vec<[&str; 2]> = event
        .fields
        .iter()
        .map(|(name, how)| [name.as_str(), how.as_str()])
        .collect();
    StoredEntry {
        seq,
        at,
        actor: event.actor.clone(),
        action: event.action.clone(),
        purpose: event.purpose.clone(),
        resource: event.resource.clone(),
        record_id: event.record_id.clone(),
        subject_ref: event.subject_ref.clone(),
        fields: serde_json::to_string(&fields).unwrap_or_else(|_| "[]".to_owned()),
        policy_version: event.policy_version.clone(),
        reason: event.reason.clone(),
        consent_id: event.consent_id.clone(),
        detail: event.detail.as_ref().map(ToString::to_string),
    }
}

/// [`entry_hash`] over borrowed columns, so the verifier hashes rows straight
/// from the page it read without copying them into a [`StoredEntry`].
pub(crate) fn columns_hash(prev: &[u8; 32], entry: &EntryColumns<'_>) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(ENTRY_TAG);
    hasher.update(prev);
    feed_canonical(entry, &mut hasher);
    *hasher.finalize().as_bytes()
}

/// Feeds the canonical encoding of `entry` to `hasher`: `seq` and `at` as 8-byte
/// big-endian integers, then each text column in table order as a presence byte
/// (0 absent, 1 present) and, if present, its UTF-8 length (8 bytes big-endian)
/// and bytes.
pub fn canonical(entry: &StoredEntry, hasher: &mut blake3::Hasher) {
    feed_canonical(&EntryColumns::of(entry), hasher);
}

fn feed_canonical(entry: &EntryColumns<'_>, hasher: &mut blake3::Hasher) {
    // Gathered into a buffer and fed in one call: the hasher's per-call cost
    // was a fifth of `audit verify`'s time, fed field by field. The bytes are
    // the same either way.
    let mut out = Gather::new(hasher);
    out.put(&entry.seq.to_be_bytes());
    out.put(&entry.at.to_be_bytes());
    for text in entry.texts {
        match text {
            None => out.put(&[0]),
            Some(text) => {
                out.put(&[1]);
                out.put(&(text.len() as u64).to_be_bytes());
                out.put(text.as_bytes());
            }
        }
    }
    out.finish();
}

/// Bytes for a hasher, passed on in blocks of up to [`Gather::CAPACITY`].
struct Gather<'h> {
    hasher: &'h mut blake3::Hasher,
    buf: [u8; Gather::CAPACITY],
    len: usize,
}

impl<'h> Gather<'h> {
    /// Most entries fit whole (an entry is ~200-700 bytes).
    const CAPACITY: usize = 1024;

    fn new(hasher: &'h mut blake3::Hasher) -> Self {
        Self {
            hasher,
            buf: [0; Self::CAPACITY],
            len: 0,
        }
    }

    fn put(&mut self, bytes: &[u8]) {
        if self.len + bytes.len() > Self::CAPACITY {
            self.flush();
            if bytes.len() > Self::CAPACITY {
                self.hasher.update(bytes);
                return;
            }
        }
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn flush(&mut self) {
        self.hasher.update(&self.buf[..self.len]);
        self.len = 0;
    }

    fn finish(mut self) {
        self.flush();
    }
}

/// Unix microseconds, the resolution entries are stamped with.
pub fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

#[cfg(test)]
mod store_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: i64) -> StoredEntry {
        stored_entry(
            seq,
            1_700_000_000_000_000,
            &Event::new("pd", "referral.create")
                .with_record("referral", "r-1")
                .with_subject("s-1"),
        )
    }

    /// The hash is BLAKE3 over exactly the encoding the module documents,
    /// whatever the sizes (entries that fit the gathering buffer, one text
    /// longer than it, and texts that straddle its end).
    #[test]
    fn the_hash_is_the_documented_encoding() {
        fn reference(prev: &[u8; 32], e: &StoredEntry) -> [u8; 32] {
            let mut h = blake3::Hasher::new();
            h.update(b"crosswalk audit entry v1\0");
            h.update(prev);
            h.update(&e.seq.to_be_bytes());
            h.update(&e.at.to_be_bytes());
            for text in EntryColumns::of(e).texts {
                match text {
                    None => h.update(&[0]),
                    Some(t) => h
                        .update(&[1])
                        .update(&(t.len() as u64).to_be_bytes())
                        .update(t.as_bytes()),
                };
            }
            *h.finalize().as_bytes()
        }
        for size in [0, 10, 900, 1_000, 1_024, 3_000] {
            let mut e = entry(7);
            e.detail = Some("d".repeat(size));
            e.reason = Some("r".repeat(size / 2));
            assert_eq!(entry_hash(&[9; 32], &e), reference(&[9; 32], &e), "{size}");
        }
    }

    #[test]
    fn every_column_is_hashed() {
        let base = entry(1);
        let hash = entry_hash(&GENESIS_HASH, &base);
        let variants: Vec<StoredEntry> = vec![
            StoredEntry {
                seq: 2,
                ..base.clone()
            },
            StoredEntry {
                at: base.at + 1,
                ..base.clone()
            },
            StoredEntry {
                actor: "cbo-north".into(),
                ..base.clone()
            },
            StoredEntry {
                action: "disclosure".into(),
                ..base.clone()
            },
            StoredEntry {
                purpose: Some("CAREMGT".into()),
                ..base.clone()
            },
            StoredEntry {
                resource: None,
                ..base.clone()
            },
            StoredEntry {
                record_id: Some("r-2".into()),
                ..base.clone()
            },
            StoredEntry {
                subject_ref: None,
                ..base.clone()
            },
            StoredEntry {
                fields: r#"[["district","released"]]"#.into(),
                ..base.clone()
            },
            StoredEntry {
                policy_version: Some("v".into()),
                ..base.clone()
            },
            StoredEntry {
                reason: Some("r".into()),
                ..base.clone()
            },
            StoredEntry {
                consent_id: Some("c".into()),
                ..base.clone()
            },
            StoredEntry {
                detail: Some("{}".into()),
                ..base.clone()
            },
        ];
        for variant in &variants {
            assert_ne!(entry_hash(&GENESIS_HASH, variant), hash, "{variant:?}");
        }
        assert_ne!(
            entry_hash(&[1; 32], &base),
            hash,
            "the previous hash is chained"
        );
    }

    #[test]
    fn presence_is_not_confused_with_an_empty_text() {
        let base = entry(1);
        let empty = StoredEntry {
            purpose: Some(String::new()),
            ..base.clone()
        };
        assert_ne!(
            entry_hash(&GENESIS_HASH, &empty),
            entry_hash(&GENESIS_HASH, &base)
        );
        // Moving bytes between adjacent columns changes the hash too.
        let a = StoredEntry {
            actor: "ab".into(),
            action: "c".into(),
            ..base.clone()
        };
        let b = StoredEntry {
            actor: "a".into(),
            action: "bc".into(),
            ..base
        };
        assert_ne!(entry_hash(&GENESIS_HASH, &a), entry_hash(&GENESIS_HASH, &b));
    }
}
