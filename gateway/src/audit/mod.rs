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

mod chain;
pub mod checkpoint;
pub mod crosscheck;
mod event;
pub mod partners;
pub mod read;
pub mod refusals;
pub mod verify;
pub mod witness;

pub(crate) use self::chain::columns_hash;
pub use self::chain::{Appended, GENESIS_HASH, append, canonical, entry_hash, micros};
pub use self::event::{
    Event, GATEWAY_ACTOR, KEY_ROTATION_ACTION, OPERATOR_ACTOR, POLICY_RELOAD_ACTION, Released,
    key_rotation_event, policy_reload_event, released_fields,
};
use crate::clock::Clock;
use crate::store::StoreError;
pub use crate::store::audit::StoredEntry;

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

#[cfg(test)]
mod store_tests;
