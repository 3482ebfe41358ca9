//! Repository for the subject registry: `subjects`, `identities`,
//! `linkage_tokens` and `subject_merges` (migration 0003), and the partner
//! clusters on `identities` (migration 0017).
//!
//! Everything here takes the caller's transaction, so that an identity, its
//! tokens, any merge it causes and the audit entry of the write that brought it
//! commit together. [`bulk`] holds the multi-row forms that register a whole
//! chunk of identities in a constant number of statements; [`clusters`] the
//! reads and writes of partner clusters outside registration.

use sqlx::Row as _;

use super::{StoreError, Tx};

pub mod bulk;
pub mod clusters;
pub mod reviews;

/// An identity row as written. `sealed` and `fingerprint` are opaque bytes made by
/// the vault and the linkage engine.
pub struct NewIdentity<'a> {
    pub id: &'a str,
    pub subject_id: &'a str,
    pub source_partner: &'a str,
    pub sealed: &'a [u8],
    pub fingerprint: &'a [u8],
    pub key_version: i64,
    pub linkable: bool,
    pub created_at: i64,
    /// The source partner's cluster of it.
    pub cluster_id: &'a str,
    /// The CBO that holds it too (its referral's), and that CBO's cluster.
    pub assigned_cbo: Option<&'a str>,
    pub cbo_cluster_id: Option<&'a str>,
}

/// Who holds an identity, and in which of their own clusters (migration 0017):
/// the partner that submitted it and the CBO its referral is assigned to. A
/// partner's pseudonym of the person is computed from its cluster
/// (`subjects::partner_pseudonym`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Holding {
    pub identity_id: String,
    pub source_partner: String,
    /// `None` only for a row from before migration 0017 that the start-up
    /// backfill has not reached.
    pub cluster_id: Option<String>,
    pub assigned_cbo: Option<String>,
    pub cbo_cluster_id: Option<String>,
}

impl Holding {
    /// The cluster `partner` holds this identity in, or `None` if it does not
    /// hold it (or its cluster is not computed yet).
    pub fn cluster_of(&self, partner: &str) -> Option<&str> {
        if self.source_partner == partner {
            self.cluster_id.as_deref()
        } else if self.assigned_cbo.as_deref() == Some(partner) {
            self.cbo_cluster_id.as_deref()
        } else {
            None
        }
    }
}

impl std::fmt::Debug for Holding {
    // Partners only: internal references stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Holding")
            .field("source_partner", &self.source_partner)
            .field("assigned_cbo", &self.assigned_cbo)
            .finish_non_exhaustive()
    }
}

/// The columns of a [`Holding`] on `identities i`, in [`holding_at`]'s order.
pub(crate) const HOLDING_COLUMNS: &str =
    "i.id, i.source_partner, i.cluster_id, i.assigned_cbo, i.cbo_cluster_id";

/// The [`Holding`] in columns `first..first + 5` of `row` ([`HOLDING_COLUMNS`]).
pub(crate) fn holding_at(row: &sqlx::any::AnyRow, first: usize) -> Result<Holding, StoreError> {
    Ok(Holding {
        identity_id: row.try_get(first)?,
        source_partner: row.try_get(first + 1)?,
        cluster_id: row.try_get(first + 2)?,
        assigned_cbo: row.try_get(first + 3)?,
        cbo_cluster_id: row.try_get(first + 4)?,
    })
}

/// A stored identity that shares a lookup token with an incoming one.
#[derive(Debug)]
pub struct Candidate {
    /// The identity (`holding.identity_id`), who holds it and in which clusters.
    pub holding: Holding,
    pub subject_id: String,
    pub fingerprint: Vec<u8>,
}

/// An identity as key rotation needs it.
pub struct StoredIdentity {
    pub id: String,
    pub sealed: Vec<u8>,
}

/// How many tokens go into one multi-row statement (SQLite's default limit on
/// bound parameters is 32,766; PostgreSQL's 65,535).
const TOKENS_PER_STATEMENT: usize = 200;

#[tracing::instrument(name = "db.subjects.insert", skip_all)]
pub async fn insert_subject(tx: &mut Tx<'_>, id: &str, created_at: i64) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO subjects (id, created_at) VALUES ($1, $2)")
        .bind(id)
        .bind(created_at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[tracing::instrument(name = "db.identities.insert", skip_all)]
pub async fn insert_identity(tx: &mut Tx<'_>, row: &NewIdentity<'_>) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO identities \
         (id, subject_id, source_partner, sealed, fingerprint, key_version, linkable, created_at, \
          cluster_id, assigned_cbo, cbo_cluster_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(row.id)
    .bind(row.subject_id)
    .bind(row.source_partner)
    .bind(row.sealed.to_vec())
    .bind(row.fingerprint.to_vec())
    .bind(row.key_version)
    .bind(i64::from(row.linkable))
    .bind(row.created_at)
    .bind(row.cluster_id)
    .bind(row.assigned_cbo)
    .bind(row.cbo_cluster_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes an identity's lookup tokens, many rows per statement.
#[tracing::instrument(name = "db.linkage_tokens.insert", skip_all, fields(count = tokens.len()))]
pub async fn insert_tokens(
    tx: &mut Tx<'_>,
    identity_id: &str,
    key_version: i64,
    tokens: &[Vec<u8>],
) -> Result<(), StoreError> {
    for chunk in tokens.chunks(TOKENS_PER_STATEMENT) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| format!("(${}, ${}, ${})", i * 3 + 1, i * 3 + 2, i * 3 + 3))
            .collect();
        let sql = format!(
            "INSERT INTO linkage_tokens (token, identity_id, key_version) VALUES {} \
             ON CONFLICT DO NOTHING",
            rows.join(", ")
        );
        // Only placeholders are spliced into the text; every value is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for token in chunk {
            query = query
                .bind(token.clone())
                .bind(identity_id)
                .bind(key_version);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Linkable identities under `key_version` that share at least one token with
/// `tokens`, with their current subject and who holds them.
#[tracing::instrument(name = "db.linkage_tokens.candidates", skip_all, fields(tokens = tokens.len()))]
pub async fn candidates(
    tx: &mut Tx<'_>,
    key_version: i64,
    tokens: &[Vec<u8>],
) -> Result<Vec<Candidate>, StoreError> {
    let mut found: Vec<Candidate> = Vec::new();
    for chunk in tokens.chunks(TOKENS_PER_STATEMENT) {
        let placeholders: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT DISTINCT {HOLDING_COLUMNS}, i.subject_id, i.fingerprint \
             FROM linkage_tokens t JOIN identities i ON i.id = t.identity_id \
             WHERE t.key_version = $1 AND i.linkable = 1 AND t.token IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(key_version);
        for token in chunk {
            query = query.bind(token.clone());
        }
        for row in query.fetch_all(&mut **tx).await? {
            let holding = holding_at(&row, 0)?;
            if found
                .iter()
                .any(|c| c.holding.identity_id == holding.identity_id)
            {
                continue;
            }
            found.push(Candidate {
                holding,
                subject_id: row.try_get(5)?,
                fingerprint: row.try_get(6)?,
            });
        }
    }
    Ok(found)
}

/// Merges `from` into `into`: every identity of `from` moves to `into`, `from`
/// remembers where it went, and the merge is recorded with the identity that
/// bridged the two.
#[tracing::instrument(name = "db.subjects.merge", skip_all)]
pub async fn merge_subjects(
    tx: &mut Tx<'_>,
    merge_id: &str,
    from: &str,
    into: &str,
    bridging_identity: &str,
    review_id: Option<&str>,
    merged_at: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE identities SET subject_id = $1 WHERE subject_id = $2")
        .bind(into)
        .bind(from)
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE subjects SET merged_into = $1 WHERE id = $2 OR merged_into = $2")
        .bind(into)
        .bind(from)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO subject_merges (id, from_subject, into_subject, identity_id, merged_at, \
         review_id) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(merge_id)
    .bind(from)
    .bind(into)
    .bind(bridging_identity)
    .bind(merged_at)
    .bind(review_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The creation time of each subject, to pick the oldest as a merge's survivor.
#[tracing::instrument(name = "db.subjects.created_at", skip_all)]
pub async fn subject_created_at(tx: &mut Tx<'_>, id: &str) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query("SELECT created_at FROM subjects WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// The subject an identity currently belongs to.
#[tracing::instrument(name = "db.identities.subject", skip_all)]
pub async fn subject_of(tx: &mut Tx<'_>, identity_id: &str) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT subject_id FROM identities WHERE id = $1")
        .bind(identity_id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// Up to `limit` identities whose fingerprints are not yet under `key_version`,
/// oldest first: the work list of `crosswalk keys rotate`.
#[tracing::instrument(name = "db.identities.pending_rotation", skip_all)]
pub async fn identities_below_version(
    tx: &mut Tx<'_>,
    key_version: i64,
    limit: i64,
) -> Result<Vec<StoredIdentity>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, sealed FROM identities WHERE key_version < $1 ORDER BY created_at, id LIMIT $2",
    )
    .bind(key_version)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(StoredIdentity {
                id: r.try_get(0)?,
                sealed: r.try_get(1)?,
            })
        })
        .collect()
}

/// Replaces an identity's fingerprint with one under a newer key version.
#[tracing::instrument(name = "db.identities.refingerprint", skip_all)]
pub async fn update_fingerprint(
    tx: &mut Tx<'_>,
    identity_id: &str,
    fingerprint: &[u8],
    key_version: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE identities SET fingerprint = $1, key_version = $2 WHERE id = $3")
        .bind(fingerprint.to_vec())
        .bind(key_version)
        .bind(identity_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Drops tokens of key versions older than `key_version`, once every identity has
/// tokens under it.
#[tracing::instrument(name = "db.linkage_tokens.drop_old", skip_all)]
pub async fn delete_tokens_below(tx: &mut Tx<'_>, key_version: i64) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM linkage_tokens WHERE key_version < $1")
        .bind(key_version)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected())
}

/// Identity pairs that share a subject: what "linked" means, for checking that
/// rotation kept every link.
#[tracing::instrument(name = "db.identities.subject_map", skip_all)]
pub async fn identity_subjects(tx: &mut Tx<'_>) -> Result<Vec<(String, String)>, StoreError> {
    let rows = sqlx::query("SELECT id, subject_id FROM identities ORDER BY id")
        .fetch_all(&mut **tx)
        .await?;
    rows.into_iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}
