//! Partner clusters for identities stored before migration 0017, computed by
//! the gateway at start-up, before it serves ([`backfill_clusters`]).
//!
//! Clusters cannot be computed in SQL: the match rule is the linkage engine's,
//! in Rust. Nor would a default do: "each identity its own cluster" would give
//! every old record of a person a pseudonym of its own, and "the subject" would
//! keep the very cross-partner linkage that clusters remove. So the gateway
//! replays what registration would have done: it takes the identities without a
//! cluster, oldest first, in batches, looks up their candidates with the
//! intake's own statement, and resolves them with the intake's own code
//! ([`super::register_many::resolve`]) — of which it keeps only the clusters.
//! Identities not reached yet have no cluster and count as held by nobody, so
//! each batch sees exactly the earlier identities, as the intake would have.
//! The result is the same partition as if the rows had been registered with
//! clusters (a test checks it), only with other random ids.
//!
//! Each batch commits on its own, so an interrupted backfill resumes where it
//! stopped at the next start. Each batch first writes a `gateway_meta` row,
//! which takes the write lock (SQLite) or that row's lock (PostgreSQL), so
//! replicas starting together take turns, each seeing the batches before.
//! A batch costs what linking a batch chunk costs in the intake (one candidate
//! lookup, the in-memory resolution) plus one multi-row UPDATE, without
//! sealing or inserting tokens: of the order of the intake's link phase per
//! identity, once (not measured at scale). Replicas still running the previous
//! version would write identities without clusters while the others serve:
//! stop them all before upgrading.

use std::collections::HashSet;

use super::register_many::{Prepared, resolve};
use super::{RegistryError, SubjectRegistry};
use crate::audit::{self, Event, OPERATOR_ACTOR};
use crate::clock::Clock;
use crate::linkage::Fingerprint;
use crate::store::subjects::bulk::{self, ChunkCandidate, ClusterAssignment};
use crate::store::{Store, StoreError};

/// Identities per transaction.
const BATCH: i64 = 500;

/// The `gateway_meta` row that serializes the batches of concurrent replicas.
const META_BACKFILL: &str = "cluster_backfill";

/// The audit action of a backfill that computed clusters.
pub const CLUSTER_BACKFILL_ACTION: &str = "subjects.cluster_backfill";

/// What a backfill did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackfillReport {
    /// Identities given their clusters by this run.
    pub identities: u64,
}

/// Gives every identity stored without partner clusters its clusters (see the
/// module docs), then records how many in the audit log. Nothing to do (the
/// usual case) costs one short transaction.
pub async fn backfill_clusters(
    store: &Store,
    registry: &SubjectRegistry,
    clock: &dyn Clock,
) -> Result<BackfillReport, RegistryError> {
    backfill_in_batches(store, registry, clock, BATCH).await
}

/// [`backfill_clusters`], `batch_size` identities per transaction.
pub(super) async fn backfill_in_batches(
    store: &Store,
    registry: &SubjectRegistry,
    clock: &dyn Clock,
    batch_size: i64,
) -> Result<BackfillReport, RegistryError> {
    let mut report = BackfillReport::default();
    loop {
        let mut tx = store.begin().await?;
        Store::meta_set(&mut tx, META_BACKFILL, "running").await?;
        let batch = bulk::unclustered(&mut tx, batch_size).await?;
        if batch.is_empty() {
            Store::meta_delete(&mut tx, META_BACKFILL).await?;
            if report.identities > 0 {
                let entry = Event::new(OPERATOR_ACTOR, CLUSTER_BACKFILL_ACTION)
                    .with_resource("identities")
                    .with_detail(serde_json::json!({"identities": report.identities}));
                audit::append(&mut tx, &[entry], clock).await?;
            }
            tx.commit().await.map_err(StoreError::from)?;
            return Ok(report);
        }
        cluster_batch(registry, &mut tx, &batch, clock.now().timestamp()).await?;
        tx.commit().await.map_err(StoreError::from)?;
        report.identities += batch.len() as u64;
        tracing::info!(
            identities = report.identities,
            "partner clusters computed for identities stored before them"
        );
    }
}

/// Computes and writes the clusters of `batch` (identities without any,
/// oldest first).
async fn cluster_batch(
    registry: &SubjectRegistry,
    tx: &mut crate::store::Tx<'_>,
    batch: &[ChunkCandidate],
    now: i64,
) -> Result<(), RegistryError> {
    let mut prepared = Vec::with_capacity(batch.len());
    for row in batch {
        let holding = &row.holding;
        let fingerprint = Fingerprint::from_bytes(&row.fingerprint).map_err(|_| {
            RegistryError::CorruptFingerprint {
                identity_id: holding.identity_id.clone(),
            }
        })?;
        prepared.push(Prepared {
            identity_id: holding.identity_id.clone(),
            index_keys: fingerprint.index_keys(),
            fingerprint,
            source_partner: &holding.source_partner,
            cbo: holding
                .assigned_cbo
                .as_deref()
                .filter(|cbo| *cbo != holding.source_partner),
        });
    }
    let mut keys: Vec<&[u8]> = prepared
        .iter()
        .filter(|p| p.fingerprint.is_linkable())
        .flat_map(|p| p.index_keys.iter().map(Vec::as_slice))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let mut stored = if keys.is_empty() {
        Vec::new()
    } else {
        bulk::candidates_for_keys(tx, registry.key_version, &keys).await?
    };
    // The batch's own rows are resolved as the chunk, in order.
    let in_batch: HashSet<&str> = batch
        .iter()
        .map(|row| row.holding.identity_id.as_str())
        .collect();
    stored.retain(|c| !in_batch.contains(c.holding.identity_id.as_str()));

    let resolution = resolve(&stored, &prepared, &[], (&registry.ids, now))?;
    let clusters = &resolution.clusters;
    let cluster = |slot: usize| clusters.id(clusters.root(slot));
    let assignments: Vec<ClusterAssignment<'_>> = prepared
        .iter()
        .zip(&resolution.clustered)
        .map(|(p, (source, cbo))| ClusterAssignment {
            identity_id: &p.identity_id,
            cluster_id: cluster(*source),
            cbo_cluster_id: cbo.map(cluster),
        })
        .collect();
    // Subjects do not change here: a stored cluster's identities are where
    // they were read.
    super::move_stored_clusters(tx, clusters, |subject| subject).await?;
    bulk::set_clusters(tx, &assignments).await?;
    Ok(())
}
