//! Multi-row statements for registering a whole chunk of identities at once
//! (`SubjectRegistry::register_many`): a candidate lookup for every lookup key
//! of the chunk, and INSERTs per table for what the chunk resolved to, each
//! split into a few runs of power-of-two rows ([`pieces`]) so that their texts
//! repeat and are parsed once per connection.
//!
//! On SQLite every statement costs a round trip to sqlx's worker thread (~70 µs
//! with nothing to do), and on PostgreSQL a network round trip; a chunk of 500
//! identities registered one by one would pay for ~3,000 of them. Here the count
//! grows with the logarithm of the chunk, and a statement never binds more than
//! [`MAX_PARAMS`] values (SQLite allows 32,766, PostgreSQL 65,535).
//!
//! Only placeholders are spliced into SQL text; every value is bound. The
//! placeholders depend on the backend ([`Sql`]): `$n` on PostgreSQL, plain `?`
//! on SQLite, because SQLite's parser (and `sqlite3_bind_parameter_name`, which
//! sqlx calls for every parameter) looks each `$n` up in a linear list — with
//! thousands of parameters that is quadratic: a 500-identity chunk's token
//! INSERT took ~0.4 s with `$n` placeholders. For the same reason no parameter
//! is referred to twice.

use std::collections::HashSet;

use sqlx::Row as _;

use super::{HOLDING_COLUMNS, Holding, NewIdentity, holding_at};
use crate::store::{StoreError, Tx};

/// Bound values per statement, below SQLite's limit of 32,766 (and PostgreSQL's
/// 65,535) with room to spare for the few fixed parameters.
pub(super) const MAX_PARAMS: usize = 32_000;

/// A stored, linkable identity that shares a lookup key with some identity of a
/// chunk, with its subject's creation time (a merge keeps the oldest subject)
/// and who holds it in which cluster.
pub struct ChunkCandidate {
    /// The identity (`holding.identity_id`) and its partner clusters.
    pub holding: Holding,
    pub subject_id: String,
    pub subject_created_at: i64,
    pub fingerprint: Vec<u8>,
}

/// A subject row as written. `merged_into` is set for a subject that the same
/// chunk created and then merged away.
pub struct NewSubject<'a> {
    pub id: &'a str,
    pub created_at: i64,
    pub merged_into: Option<&'a str>,
}

/// The lookup keys of one new identity, for [`insert_tokens_many`].
pub struct IdentityTokens<'a> {
    pub identity_id: &'a str,
    pub keys: &'a [Vec<u8>],
}

/// One `subject_merges` row.
pub struct NewMerge<'a> {
    pub id: &'a str,
    pub from_subject: &'a str,
    pub into_subject: &'a str,
    pub identity_id: &'a str,
    pub merged_at: i64,
}

/// A stored subject merged away by a chunk, and the subject it finally went to.
pub struct SubjectMove<'a> {
    pub from: &'a str,
    pub into: &'a str,
}

/// A stored partner cluster merged into another: every identity of `subject`
/// in cluster `from` (as the source partner's or the CBO's cluster) goes to
/// `into`. A cluster's identities all sit on one subject (its links are links
/// of the subject), so the subject index finds them.
pub struct ClusterMove<'a> {
    pub from: &'a str,
    pub into: &'a str,
    pub subject: &'a str,
}

/// The clusters computed for an identity from before migration 0017.
pub struct ClusterAssignment<'a> {
    pub identity_id: &'a str,
    pub cluster_id: &'a str,
    pub cbo_cluster_id: Option<&'a str>,
}

/// Linkable identities under `key_version` that share at least one of `keys`,
/// each once, with its current subject and that subject's creation time.
///
/// The work is one index probe per key and one row fetch per candidate, on
/// either backend, whatever the table sizes. SQLite's planner does that with
/// `IN (...)`; PostgreSQL's, costing random reads as if from disk and often
/// without fresh statistics on a table that grows this fast, turns a long
/// `IN` list into a sequential scan of `identities` or `linkage_tokens`
/// (measured: 1.3 s for 7,000 keys against 100,000 identities), so there each
/// key drives a `LATERAL` index lookup (`OFFSET 0` keeps the planner from
/// flattening it back into a join it could hash).
#[tracing::instrument(name = "db.linkage_tokens.candidates_many", skip_all, fields(keys = keys.len()))]
pub async fn candidates_for_keys(
    tx: &mut Tx<'_>,
    key_version: i64,
    keys: &[&[u8]],
) -> Result<Vec<ChunkCandidate>, StoreError> {
    let mut seen = HashSet::new();
    let mut found = Vec::new();
    for chunk in pieces(keys, MAX_PARAMS - 1) {
        let mut sql = Sql::new(tx, "");
        let key_version_param = sql.param_text();
        if sql.numbered {
            sql.push(
                "SELECT c.id, c.source_partner, c.cluster_id, c.assigned_cbo, c.cbo_cluster_id, \
                 c.subject_id, c.created_at, c.fingerprint \
                 FROM (SELECT DISTINCT m.identity_id FROM (VALUES ",
            );
            for i in 0..chunk.len() {
                sql.push(if i == 0 { "(" } else { ", (" });
                sql.param();
                sql.push(")");
            }
            sql.push(&format!(
                ") AS k (token) CROSS JOIN LATERAL (SELECT t.identity_id FROM linkage_tokens t \
                 WHERE t.token = k.token AND t.key_version = {key_version_param} OFFSET 0) AS m) AS d \
                 CROSS JOIN LATERAL (SELECT {HOLDING_COLUMNS}, i.subject_id, s.created_at, \
                 i.fingerprint FROM identities i JOIN subjects s ON s.id = i.subject_id \
                 WHERE i.id = d.identity_id AND i.linkable = 1 OFFSET 0) AS c"
            ));
        } else {
            sql.push(&format!(
                "SELECT {HOLDING_COLUMNS}, i.subject_id, s.created_at, i.fingerprint \
                 FROM identities i JOIN subjects s ON s.id = i.subject_id \
                 WHERE i.linkable = 1 AND i.id IN (SELECT t.identity_id FROM linkage_tokens t \
                 WHERE t.key_version = {key_version_param} AND t.token IN ("
            ));
            sql.list(chunk.len());
            sql.push("))");
        }
        let mut query = sqlx::query(sql.into_text()).bind(key_version);
        for key in chunk {
            query = query.bind(*key);
        }
        for row in query.fetch_all(&mut **tx).await? {
            let holding = holding_at(&row, 0)?;
            if !seen.insert(holding.identity_id.clone()) {
                continue;
            }
            found.push(ChunkCandidate {
                holding,
                subject_id: row.try_get(5)?,
                subject_created_at: row.try_get(6)?,
                fingerprint: row.try_get(7)?,
            });
        }
    }
    Ok(found)
}

#[tracing::instrument(name = "db.subjects.insert_many", skip_all, fields(count = rows.len()))]
pub async fn insert_subjects(tx: &mut Tx<'_>, rows: &[NewSubject<'_>]) -> Result<(), StoreError> {
    for chunk in pieces(rows, MAX_PARAMS / 3) {
        let mut sql = Sql::new(
            tx,
            "INSERT INTO subjects (id, created_at, merged_into) VALUES ",
        );
        sql.rows(chunk.len(), 3);
        let mut query = sqlx::query(sql.into_text());
        for row in chunk {
            query = query
                .bind(row.id)
                .bind(row.created_at)
                .bind(row.merged_into);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

#[tracing::instrument(name = "db.identities.insert_many", skip_all, fields(count = rows.len()))]
pub async fn insert_identities(
    tx: &mut Tx<'_>,
    rows: &[NewIdentity<'_>],
) -> Result<(), StoreError> {
    for chunk in pieces(rows, MAX_PARAMS / 11) {
        let mut sql = Sql::new(
            tx,
            "INSERT INTO identities \
             (id, subject_id, source_partner, sealed, fingerprint, key_version, linkable, created_at, \
              cluster_id, assigned_cbo, cbo_cluster_id) \
             VALUES ",
        );
        sql.rows(chunk.len(), 11);
        let mut query = sqlx::query(sql.into_text());
        for row in chunk {
            query = query
                .bind(row.id)
                .bind(row.subject_id)
                .bind(row.source_partner)
                .bind(row.sealed)
                .bind(row.fingerprint)
                .bind(row.key_version)
                .bind(i64::from(row.linkable))
                .bind(row.created_at)
                .bind(row.cluster_id)
                .bind(row.assigned_cbo)
                .bind(row.cbo_cluster_id);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Writes the lookup keys of many identities, many rows per statement.
#[tracing::instrument(name = "db.linkage_tokens.insert_many", skip_all, fields(identities = rows.len()))]
pub async fn insert_tokens_many(
    tx: &mut Tx<'_>,
    key_version: i64,
    rows: &[IdentityTokens<'_>],
) -> Result<(), StoreError> {
    let tokens: Vec<(&str, &[u8])> = rows
        .iter()
        .flat_map(|r| r.keys.iter().map(|key| (r.identity_id, key.as_slice())))
        .collect();
    for chunk in pieces(&tokens, MAX_PARAMS / 3) {
        let mut sql = Sql::new(
            tx,
            "INSERT INTO linkage_tokens (token, identity_id, key_version) VALUES ",
        );
        sql.rows(chunk.len(), 3);
        sql.push(" ON CONFLICT DO NOTHING");
        let mut query = sqlx::query(sql.into_text());
        for (identity_id, key) in chunk {
            query = query.bind(*key).bind(*identity_id).bind(key_version);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

#[tracing::instrument(name = "db.subject_merges.insert_many", skip_all, fields(count = rows.len()))]
pub async fn insert_merges(tx: &mut Tx<'_>, rows: &[NewMerge<'_>]) -> Result<(), StoreError> {
    for chunk in pieces(rows, MAX_PARAMS / 5) {
        let mut sql = Sql::new(
            tx,
            "INSERT INTO subject_merges (id, from_subject, into_subject, identity_id, merged_at) \
             VALUES ",
        );
        sql.rows(chunk.len(), 5);
        let mut query = sqlx::query(sql.into_text());
        for row in chunk {
            query = query
                .bind(row.id)
                .bind(row.from_subject)
                .bind(row.into_subject)
                .bind(row.identity_id)
                .bind(row.merged_at);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Moves stored subjects that a chunk merged away: their identities go to the
/// subject they were finally merged into, and they — and any subject that had
/// been merged into them before — remember it in `merged_into`, as
/// [`super::merge_subjects`] does one merge at a time.
#[tracing::instrument(name = "db.subjects.move_many", skip_all, fields(count = moves.len()))]
pub async fn move_subjects(tx: &mut Tx<'_>, moves: &[SubjectMove<'_>]) -> Result<(), StoreError> {
    for chunk in pieces(moves, MAX_PARAMS / 2) {
        for update in [
            "UPDATE identities SET subject_id = moved.into_id FROM moved \
             WHERE identities.subject_id = moved.from_id",
            "UPDATE subjects SET merged_into = moved.into_id FROM moved \
             WHERE subjects.id = moved.from_id OR subjects.merged_into = moved.from_id",
        ] {
            let mut sql = Sql::new(tx, "WITH moved (from_id, into_id) AS (VALUES ");
            sql.rows(chunk.len(), 2);
            sql.push(") ");
            sql.push(update);
            let mut query = sqlx::query(sql.into_text());
            for row in chunk {
                query = query.bind(row.from).bind(row.into);
            }
            query.execute(&mut **tx).await?;
        }
    }
    Ok(())
}

/// Moves the identities of stored partner clusters merged into others
/// ([`ClusterMove`]): one statement per cluster column, whatever the count.
/// Each column separately, because one identity's source cluster and CBO
/// cluster may both move in one chunk.
#[tracing::instrument(name = "db.identities.move_clusters", skip_all, fields(count = moves.len()))]
pub async fn move_clusters(tx: &mut Tx<'_>, moves: &[ClusterMove<'_>]) -> Result<(), StoreError> {
    for chunk in pieces(moves, MAX_PARAMS / 3) {
        for column in ["cluster_id", "cbo_cluster_id"] {
            let mut sql = Sql::new(tx, "WITH moved (from_id, into_id, subject_id) AS (VALUES ");
            sql.rows(chunk.len(), 3);
            sql.push(&format!(
                ") UPDATE identities SET home_{column} = \
                 COALESCE(identities.home_{column}, identities.{column}), \
                 {column} = moved.into_id FROM moved \
                 WHERE identities.subject_id = moved.subject_id \
                 AND identities.{column} = moved.from_id"
            ));
            let mut query = sqlx::query(sql.into_text());
            for row in chunk {
                query = query.bind(row.from).bind(row.into).bind(row.subject);
            }
            query.execute(&mut **tx).await?;
        }
    }
    Ok(())
}

/// Up to `limit` identities from before migration 0017, without clusters yet,
/// oldest first (`identities_unclustered`), with what computing their
/// clusters needs: who holds them, their subject and their fingerprint.
#[tracing::instrument(name = "db.identities.unclustered", skip_all)]
pub async fn unclustered(tx: &mut Tx<'_>, limit: i64) -> Result<Vec<ChunkCandidate>, StoreError> {
    let sql = format!(
        "SELECT {HOLDING_COLUMNS}, i.subject_id, i.created_at, i.fingerprint \
         FROM identities i WHERE i.cluster_id IS NULL ORDER BY i.created_at, i.id LIMIT $1"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(limit)
        .fetch_all(&mut **tx)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(ChunkCandidate {
                holding: holding_at(row, 0)?,
                subject_id: row.try_get(5)?,
                // The identity's own time here, not its subject's.
                subject_created_at: row.try_get(6)?,
                fingerprint: row.try_get(7)?,
            })
        })
        .collect()
}

/// Writes the clusters computed for identities from before migration 0017.
#[tracing::instrument(name = "db.identities.set_clusters", skip_all, fields(count = rows.len()))]
pub async fn set_clusters(
    tx: &mut Tx<'_>,
    rows: &[ClusterAssignment<'_>],
) -> Result<(), StoreError> {
    for chunk in pieces(rows, MAX_PARAMS / 3) {
        let mut sql = Sql::new(
            tx,
            "WITH computed (id, cluster_id, cbo_cluster_id) AS (VALUES ",
        );
        sql.rows(chunk.len(), 3);
        sql.push(
            ") UPDATE identities SET cluster_id = computed.cluster_id, \
             cbo_cluster_id = computed.cbo_cluster_id FROM computed \
             WHERE identities.id = computed.id",
        );
        let mut query = sqlx::query(sql.into_text());
        for row in chunk {
            query = query
                .bind(row.identity_id)
                .bind(row.cluster_id)
                .bind(row.cbo_cluster_id);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Splits `items` into runs whose lengths are powers of two (largest first, at
/// most `max`), e.g. 6,500 tokens into 4,096 + 2,048 + 256 + 64 + 32 + 4.
///
/// A statement's text depends on how many rows it has, and sqlx prepares each
/// new text (and keeps it, per connection, for reuse). Parsing is what costs:
/// PostgreSQL took 53 ms to prepare one 6,500-row INSERT. Chunks vary in their
/// number of tokens, new subjects and candidates, so one statement per table
/// would be a new text nearly every time; runs of power-of-two lengths keep
/// the texts to a dozen or so per table, each prepared once per connection,
/// for a few more round trips per chunk.
pub(super) fn pieces<T>(mut items: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    let cap = floor_power_of_two(max.max(1));
    std::iter::from_fn(move || {
        if items.is_empty() {
            return None;
        }
        let (run, rest) = items.split_at(floor_power_of_two(items.len().min(cap)));
        items = rest;
        Some(run)
    })
}

/// The largest power of two not above `n` (`n` ≥ 1).
fn floor_power_of_two(n: usize) -> usize {
    1 << (usize::BITS - 1 - n.leading_zeros())
}

/// The text of one statement, with placeholders in the backend's best form:
/// `$1, $2, ...` on PostgreSQL, `?, ?, ...` on SQLite (see the module docs).
/// Values must be bound in the order their placeholders were written.
pub(super) struct Sql {
    text: String,
    numbered: bool,
    next: usize,
}

impl Sql {
    pub(super) fn new(tx: &Tx<'_>, head: &str) -> Self {
        Self {
            text: head.to_owned(),
            numbered: tx.backend_name() != "SQLite",
            next: 1,
        }
    }

    pub(super) fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }

    pub(super) fn param(&mut self) {
        let placeholder = self.param_text();
        self.text.push_str(&placeholder);
    }

    /// The next placeholder, to be written into the text by the caller —
    /// before any placeholder that follows it, since on SQLite they are
    /// numbered by position.
    pub(super) fn param_text(&mut self) -> String {
        self.next += 1;
        if self.numbered {
            format!("${}", self.next - 1)
        } else {
            "?".to_owned()
        }
    }

    /// `count` placeholders separated by commas.
    pub(super) fn list(&mut self, count: usize) {
        for i in 0..count {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.param();
        }
    }

    /// `(…), (…), …`: `rows` rows of `width` placeholders.
    pub(super) fn rows(&mut self, rows: usize, width: usize) {
        for row in 0..rows {
            if row > 0 {
                self.text.push_str(", ");
            }
            self.text.push('(');
            self.list(width);
            self.text.push(')');
        }
    }

    /// Only placeholders were spliced into the text; every value is bound.
    pub(super) fn into_text(self) -> sqlx::AssertSqlSafe<String> {
        sqlx::AssertSqlSafe(self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::pieces;

    #[test]
    fn pieces_are_powers_of_two_that_cover_everything_in_order() {
        let items: Vec<usize> = (0..6500).collect();
        let runs: Vec<&[usize]> = pieces(&items, 10_000).collect();
        let lengths: Vec<usize> = runs.iter().map(|r| r.len()).collect();
        assert_eq!(lengths, [4096, 2048, 256, 64, 32, 4]);
        assert_eq!(runs.concat(), items);
        let capped: Vec<usize> = pieces(&items, 3000).map(<[usize]>::len).collect();
        assert_eq!(capped, [2048, 2048, 2048, 256, 64, 32, 4]);
        assert_eq!(pieces(&items[..1], 5).count(), 1);
        assert_eq!(pieces::<usize>(&[], 5).count(), 0);
    }
}
