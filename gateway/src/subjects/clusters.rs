//! Partner clusters: what a partner's pseudonym of a person groups.
//!
//! # Why not the subject
//! Subjects are the gateway's global grouping: an identity links to every
//! stored identity it matches, *whoever submitted it*, and bridges merge
//! subjects. A pseudonym computed from the subject would therefore tell a
//! partner about everybody else's records: police posting {name, dob} and then
//! {name, email} got one pseudonym for both exactly when county health had
//! sent {name, dob, email} for the person. So a partner's pseudonym is instead
//! computed from its **own cluster** of the record's identity.
//!
//! # The rule
//! The linkage engine's match rule is pairwise ([`crate::linkage::compare`]):
//! whether two identities match does not depend on any third. A partner `P`'s
//! clusters are the connected components of the match graph restricted to the
//! identities `P` holds. They are built at registration from the very same
//! candidate lookup that links subjects — the matched candidates are filtered
//! by holder, no second lookup:
//! 1. a new identity of `P` that matches none of `P`'s identities starts a new
//!    cluster (a random internal id, UUID v7);
//! 2. one that matches identities of one of `P`'s clusters joins it;
//! 3. one that matches identities of several of `P`'s clusters bridges them:
//!    they are merged into the one with the smallest id — the oldest, as ids
//!    are time-ordered — and their identities move to it.
//!
//! Since `P`'s matches are matches, a cluster of `P` always lies inside one
//! subject; that is how a merge finds the identities to move (the subject
//! index), and why clusters need no table of their own.
//!
//! # Who holds an identity
//! - **police and health** hold the identities they submit (`source_partner`:
//!   referrals, cases);
//! - **a CBO** holds the identity of each referral assigned to it, from the
//!   assignment until the referral is reassigned elsewhere (decision (a) of
//!   the guidance): the CBO sees those identities anyway, so grouping
//!   them tells it nothing it could not work out itself, and it saves case
//!   workers from matching repeat referrals by hand. Its clusters are built
//!   among its own referrals only — never through the police's clusters,
//!   where a police referral assigned to another CBO would be the bridge. A
//!   merge of a CBO's clusters stays when the bridging referral later moves
//!   to another CBO: the CBO saw that referral when it was its own.
//! - **anyone else** (an admin, a health partner reading a referral under
//!   consent, a police partner reading another's) holds nothing: its pseudonym
//!   of a record is computed from the record's identity alone and groups
//!   nothing ([`super::partner_pseudonym`]).
//!
//! Study pseudonyms stay global (computed from the subject): joining records
//! across partners is what evaluators need.
//!
//! [`ClusterTable`] is the in-memory part, shared by
//! [`super::SubjectRegistry::register`], [`super::SubjectRegistry::register_many`],
//! the hand-over to another CBO ([`super::SubjectRegistry::hand_to_cbo`]) and
//! the backfill of rows from before migration 0017, so that all four apply
//! exactly one rule; [`partner_pseudonym`] is what a partner is shown.

use std::collections::HashMap;

use super::{RegistryError, SubjectRegistry};
use crate::clock::Clock;
use crate::domain::PartnerId;
use crate::linkage::Fingerprint;
use crate::pseudonym::{Pseudonym, Pseudonymizer};
use crate::randomness::RecordIds;
use crate::store::Tx;
use crate::store::subjects::bulk::{self as bulk_repo, ClusterMove};
use crate::store::subjects::clusters as cluster_repo;
use crate::store::subjects::{Candidate, Holding};

/// The pseudonym `partner` is shown for the person of a record whose identity
/// is held as `holding`: the keyed hash of `partner`'s own cluster of it if it
/// holds it, else of the record's identity alone (which groups nothing): see
/// the module docs for who holds what.
pub fn partner_pseudonym(
    pseudonyms: &Pseudonymizer,
    partner: &PartnerId,
    holding: &Holding,
) -> Pseudonym {
    match holding.cluster_of(partner) {
        Some(cluster) => pseudonyms.for_partner_cluster(partner, cluster),
        None => pseudonyms.for_partner_record(partner, &holding.identity_id),
    }
}

/// Who holds one known identity, and in which cluster (a slot of a
/// [`ClusterTable`]): its submitter and the CBO holding it, if any.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Held<'a> {
    pub(super) source: Option<(&'a str, usize)>,
    pub(super) cbo: Option<(&'a str, usize)>,
}

impl Held<'_> {
    /// The cluster `partner` holds the identity in, if it holds it.
    fn cluster_of(&self, partner: &str) -> Option<usize> {
        match (self.source, self.cbo) {
            (Some((holder, slot)), _) if holder == partner => Some(slot),
            (_, Some((holder, slot))) if holder == partner => Some(slot),
            _ => None,
        }
    }
}

/// The clusters an operation touches: those of the stored identities it was
/// compared with, and those it creates, with merges as forwarding pointers.
#[derive(Debug, Default)]
pub(super) struct ClusterTable {
    slots: Vec<ClusterSlot>,
    stored_by_id: HashMap<String, usize>,
}

#[derive(Debug)]
struct ClusterSlot {
    id: String,
    /// Set when this cluster was merged into another (which may itself have
    /// been merged later: follow to [`ClusterTable::root`]).
    merged_into: Option<usize>,
    /// For a stored cluster, the subject its identities sit on (as stored),
    /// where a merge finds them; `None` for a cluster made by this operation.
    stored_subject: Option<String>,
}

impl ClusterTable {
    /// The stored clusters of `holding` (an identity on `subject`) as slots.
    /// A cluster not computed yet (a row the backfill has not reached) is as
    /// if the identity were not held: it is never a bridge.
    pub(super) fn held<'h>(&mut self, holding: &'h Holding, subject: &str) -> Held<'h> {
        let mut slot = |cluster: &Option<String>| {
            cluster
                .as_deref()
                .map(|cluster| self.stored(cluster, subject))
        };
        let source = slot(&holding.cluster_id).map(|s| (holding.source_partner.as_str(), s));
        let cbo = match (
            holding.assigned_cbo.as_deref(),
            slot(&holding.cbo_cluster_id),
        ) {
            (Some(cbo), Some(s)) => Some((cbo, s)),
            _ => None,
        };
        Held { source, cbo }
    }

    fn stored(&mut self, id: &str, subject: &str) -> usize {
        if let Some(&slot) = self.stored_by_id.get(id) {
            return slot;
        }
        self.slots.push(ClusterSlot {
            id: id.to_owned(),
            merged_into: None,
            stored_subject: Some(subject.to_owned()),
        });
        let slot = self.slots.len() - 1;
        self.stored_by_id.insert(id.to_owned(), slot);
        slot
    }

    /// The cluster `slot`'s identities belong to now.
    pub(super) fn root(&self, mut slot: usize) -> usize {
        while let Some(next) = self.slots[slot].merged_into {
            slot = next;
        }
        slot
    }

    pub(super) fn id(&self, slot: usize) -> &str {
        &self.slots[slot].id
    }

    /// The cluster of `partner` for a new identity that matched the known
    /// identities `matched` (the rule in the module docs): a new one (id from
    /// `new_id`) if `partner` holds none of them, else the oldest of their
    /// clusters, the others merged into it.
    pub(super) fn settle<'h>(
        &mut self,
        partner: &str,
        matched: impl IntoIterator<Item = &'h Held<'h>>,
        new_id: impl FnOnce() -> String,
    ) -> usize {
        let mut clusters: Vec<usize> = matched
            .into_iter()
            .filter_map(|held| held.cluster_of(partner))
            .map(|slot| self.root(slot))
            .collect();
        clusters.sort_unstable_by(|a, b| self.slots[*a].id.cmp(&self.slots[*b].id));
        clusters.dedup();
        let Some((&survivor, others)) = clusters.split_first() else {
            self.slots.push(ClusterSlot {
                id: new_id(),
                merged_into: None,
                stored_subject: None,
            });
            return self.slots.len() - 1;
        };
        for &other in others {
            self.slots[other].merged_into = Some(survivor);
        }
        survivor
    }

    /// Each stored cluster merged away: (its id, the id it finally went to,
    /// the subject its identities sat on). Clusters made by the operation
    /// need no move: their identities are written with their final cluster.
    pub(super) fn stored_moves(&self) -> Vec<(&str, &str, &str)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.merged_into.is_some())
            .filter_map(|(i, slot)| {
                let subject = slot.stored_subject.as_deref()?;
                Some((slot.id.as_str(), self.id(self.root(i)), subject))
            })
            .collect()
    }
}

impl SubjectRegistry {
    /// A referral's identity moves to the CBO `cbo` (a reassignment): the CBO
    /// it leaves no longer holds it, and `cbo` holds it in its own cluster,
    /// settled against the identities `cbo` holds as registration would have.
    /// Returns that cluster. Never commits `tx`.
    pub async fn hand_to_cbo(
        &self,
        tx: &mut Tx<'_>,
        identity_id: &str,
        cbo: &str,
        clock: &dyn Clock,
    ) -> Result<String, RegistryError> {
        let now = clock.now().timestamp();
        let corrupt = || RegistryError::CorruptIdentity {
            identity_id: identity_id.to_owned(),
        };
        let held = cluster_repo::held_identity(tx, identity_id)
            .await?
            .ok_or_else(corrupt)?;
        let fingerprint = Fingerprint::from_bytes(&held.fingerprint).map_err(|_| {
            RegistryError::CorruptFingerprint {
                identity_id: identity_id.to_owned(),
            }
        })?;
        let mut matched = if fingerprint.is_linkable() && held.key_version == self.key_version {
            self.matching_candidates(tx, &fingerprint).await?
        } else {
            Vec::new()
        };
        matched.retain(|c| c.holding.identity_id != identity_id);
        let mut table = ClusterTable::default();
        let known: Vec<_> = matched
            .iter()
            .map(|c| table.held(&c.holding, &c.subject_id))
            .collect();
        let slot = table.settle(cbo, &known, || self.ids.internal(now));
        move_stored_clusters(tx, &table, |_| held.subject_id.as_str()).await?;
        let cluster = table.id(slot).to_owned();
        cluster_repo::set_cbo(tx, identity_id, cbo, &cluster).await?;
        Ok(cluster)
    }
}

/// Settles the clusters of a new identity (its submitter's, and its CBO's,
/// `holders`) among the stored identities it matched, and moves the stored
/// clusters it bridged. Every matched identity is on `subject_id` by now (the
/// subject merges ran first).
pub(super) async fn settle_clusters(
    tx: &mut Tx<'_>,
    matched: &[Candidate],
    subject_id: &str,
    (source_partner, assigned_cbo): (&str, Option<&str>),
    (ids, now): (&RecordIds, i64),
) -> Result<(String, Option<String>), RegistryError> {
    let mut table = ClusterTable::default();
    let known: Vec<_> = matched
        .iter()
        .map(|c| table.held(&c.holding, &c.subject_id))
        .collect();
    let source = table.settle(source_partner, &known, || ids.internal(now));
    let cbo = assigned_cbo.map(|cbo| table.settle(cbo, &known, || ids.internal(now)));
    move_stored_clusters(tx, &table, |_| subject_id).await?;
    let cluster_id = table.id(source).to_owned();
    Ok((cluster_id, cbo.map(|slot| table.id(slot).to_owned())))
}

/// Writes the moves of the stored clusters `table` merged away; `subject_of`
/// names the subject their identities are on now, given the one they were
/// read on.
pub(super) async fn move_stored_clusters<'t>(
    tx: &mut Tx<'_>,
    table: &'t ClusterTable,
    subject_of: impl Fn(&'t str) -> &'t str,
) -> Result<(), RegistryError> {
    let moves: Vec<ClusterMove<'_>> = table
        .stored_moves()
        .into_iter()
        .map(|(from, into, subject)| ClusterMove {
            from,
            into,
            subject: subject_of(subject),
        })
        .collect();
    if !moves.is_empty() {
        bulk_repo::move_clusters(tx, &moves).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holding(source: &str, cluster: &str, cbo: Option<(&str, &str)>) -> Holding {
        Holding {
            identity_id: format!("identity-{cluster}"),
            source_partner: source.to_owned(),
            cluster_id: Some(cluster.to_owned()),
            assigned_cbo: cbo.map(|(c, _)| c.to_owned()),
            cbo_cluster_id: cbo.map(|(_, k)| k.to_owned()),
        }
    }

    #[test]
    fn a_partner_settles_among_its_own_clusters_only() {
        let mut table = ClusterTable::default();
        let health = holding("county-health", "c-1", None);
        let pd_b = holding("pd", "c-3", Some(("cbo-north", "k-2")));
        let pd_a = holding("pd", "c-2", Some(("cbo-south", "k-1")));
        let held = [
            table.held(&health, "s"),
            table.held(&pd_b, "s"),
            table.held(&pd_a, "s"),
        ];

        // Police: its two clusters merge into the older (smaller id); health's
        // cluster is never pd's bridge.
        let pd = table.settle("pd", &held, || unreachable!("pd holds some"));
        assert_eq!(table.id(pd), "c-2");
        assert_eq!(table.stored_moves(), vec![("c-3", "c-2", "s")]);
        // A CBO that holds one of them joins its cluster; one that holds none
        // gets a new cluster.
        let north = table.settle("cbo-north", &held, || unreachable!());
        assert_eq!(table.id(north), "k-2");
        let east = table.settle("cbo-east", &held, || "k-new".to_owned());
        assert_eq!(table.id(east), "k-new");
        assert_eq!(table.stored_moves().len(), 1, "a new cluster is not moved");
    }

    #[test]
    fn an_uncomputed_cluster_is_never_a_bridge() {
        let mut table = ClusterTable::default();
        let pending = Holding {
            cluster_id: None,
            ..holding("pd", "unused", None)
        };
        let held = [table.held(&pending, "s")];
        let slot = table.settle("pd", &held, || "fresh".to_owned());
        assert_eq!(table.id(slot), "fresh");
    }
}
