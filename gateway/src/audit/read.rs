//! Reading the log: pages of entries for administrators, and the accounting of
//! disclosures for one person (45 CFR 164.528 style).
//!
//! Both page by sequence number: the cursor is the last `seq` a page returned,
//! so a page never shifts under appends (entries only ever come after it).
//! Callers that return what they read to someone append an `audit.read` entry in
//! the same transaction ([`READ_ACTION`]): reading the log is itself audited.
//!
//! # What counts as a disclosure
//! An entry about the person (`subject_ref` is one of their internal references)
//! that released at least one field (`fields` is not empty), whatever its action:
//! a read, a list, an export line. Writes and refusals release nothing and are
//! not disclosures. The caller passes *every* internal reference of the person —
//! subjects merged into theirs included — since entries keep the reference they
//! were written with.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::Released;
use crate::store::audit::{self as repo, EntryFilter, StoredEntry};
use crate::store::{StoreError, Tx};

/// The action of the entry that records a read of the log.
pub const READ_ACTION: &str = "audit.read";

/// Subject references per query (each is a bind parameter); more are queried in
/// chunks and merged.
const SUBJECTS_PER_QUERY: usize = 500;

/// A page of entries and the cursor of the next, if there is more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPage {
    pub entries: Vec<(StoredEntry, [u8; 32])>,
    pub next_cursor: Option<i64>,
}

/// Up to `limit` entries after `cursor` (a `seq`) that pass `filter`.
pub async fn list_entries(
    tx: &mut Tx<'_>,
    filter: &EntryFilter,
    cursor: Option<i64>,
    limit: u32,
) -> Result<EntryPage, StoreError> {
    let limit = usize::try_from(limit.max(1)).unwrap_or(usize::MAX);
    let rows = repo::list(
        tx,
        filter,
        cursor.unwrap_or(0),
        i64::try_from(limit + 1).unwrap_or(i64::MAX),
    )
    .await?;
    let more = rows.len() > limit;
    let mut entries = Vec::with_capacity(limit.min(rows.len()));
    for (entry, hash) in rows.into_iter().take(limit) {
        let hash = <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| StoreError::Corrupt {
            what: "an audit hash is not 32 bytes",
        })?;
        entries.push((entry, hash));
    }
    let next_cursor = more
        .then(|| entries.last().map(|(entry, _)| entry.seq))
        .flatten();
    Ok(EntryPage {
        entries,
        next_cursor,
    })
}

/// An entry as the policy's `audit_entry` resource sees it (the catalog's field
/// names), for [`crate::policy::release_view`]. `detail` (codes and counts,
/// e.g. how many refusals a `refusal.summary` stands for) goes out as the JSON
/// it was recorded as.
pub fn entry_record(entry: &StoredEntry, hash: &[u8; 32]) -> Value {
    let fields: Vec<Value> = parse_fields(&entry.fields)
        .unwrap_or_default()
        .into_iter()
        .map(|(field, how)| json!({"field": field, "how": how.as_str()}))
        .collect();
    json!({
        "seq": entry.seq,
        "at": time(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "purpose": entry.purpose,
        "resource": entry.resource,
        "record_id": entry.record_id,
        "subject_ref": entry.subject_ref,
        "fields": fields,
        "policy_version": entry.policy_version,
        "reason": entry.reason,
        "consent_id": entry.consent_id,
        "detail": entry
            .detail
            .as_deref()
            .and_then(|d| serde_json::from_str::<Value>(d).ok()),
        "hash": hex::encode(hash),
    })
}

/// One disclosure about the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disclosure {
    pub seq: i64,
    pub at: DateTime<Utc>,
    /// The partner that received the fields.
    pub recipient: String,
    pub action: String,
    pub purpose: Option<String>,
    pub resource: Option<String>,
    pub record_id: Option<String>,
    /// What was released and how.
    pub fields: Vec<(String, Released)>,
    pub policy_version: Option<String>,
    pub consent_id: Option<String>,
}

/// A page of disclosures and the cursor of the next, if there is more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisclosurePage {
    pub disclosures: Vec<Disclosure>,
    pub next_cursor: Option<i64>,
}

/// Up to `limit` disclosures after `cursor` about any of `subject_refs` (every
/// internal reference of one person), oldest first.
pub async fn disclosures(
    tx: &mut Tx<'_>,
    subject_refs: &[String],
    cursor: Option<i64>,
    limit: u32,
) -> Result<DisclosurePage, StoreError> {
    disclosures_under(tx, subject_refs, None, cursor, limit).await
}

/// [`disclosures`], only those made under one of `consents` when given (what
/// the partner that recorded those consents may account for).
pub async fn disclosures_under(
    tx: &mut Tx<'_>,
    subject_refs: &[String],
    consents: Option<&[String]>,
    cursor: Option<i64>,
    limit: u32,
) -> Result<DisclosurePage, StoreError> {
    let limit = usize::try_from(limit.max(1)).unwrap_or(usize::MAX);
    let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
    let mut subjects: Vec<String> = subject_refs.to_vec();
    subjects.sort();
    subjects.dedup();
    let mut rows = Vec::new();
    for chunk in subjects.chunks(SUBJECTS_PER_QUERY) {
        rows.extend(repo::disclosures(tx, chunk, consents, cursor.unwrap_or(0), fetch).await?);
    }
    // Chunks are each in order; together they need one sort before the cut.
    rows.sort_by_key(|entry| entry.seq);
    let more = rows.len() > limit;
    rows.truncate(limit);
    let disclosures = rows
        .into_iter()
        .map(|entry| {
            let fields = parse_fields(&entry.fields).ok_or(StoreError::Corrupt {
                what: "an audit entry's fields are not [[field, how], ...]",
            })?;
            Ok(Disclosure {
                seq: entry.seq,
                at: DateTime::from_timestamp_micros(entry.at).unwrap_or_default(),
                recipient: entry.actor,
                action: entry.action,
                purpose: entry.purpose,
                resource: entry.resource,
                record_id: entry.record_id,
                fields,
                policy_version: entry.policy_version,
                consent_id: entry.consent_id,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let next_cursor = more.then(|| disclosures.last().map(|d| d.seq)).flatten();
    Ok(DisclosurePage {
        disclosures,
        next_cursor,
    })
}

fn parse_fields(text: &str) -> Option<Vec<(String, Released)>> {
    serde_json::from_str(text).ok()
}

fn time(micros: i64) -> String {
    DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}
