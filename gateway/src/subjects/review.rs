//! The review queue and unmerge: what a person decides when the match rule
//! should not guess.
//!
//! # The queue
//! When an identity is registered, a stored candidate that does not match but
//! falls in the rule's review band ([`crate::linkage::MatchScore::needs_review`])
//! and sits on another subject is queued as a pair (`link_reviews`) — unless
//! the two subjects are kept apart already. Both registration paths
//! ([`SubjectRegistry::register`] and [`SubjectRegistry::register_many`]) queue
//! the same pairs. An administrator works through it
//! ([`SubjectRegistry::open_reviews`]) and sees, per field, whether the two
//! identities agree, are close, differ or lack it ([`FieldAgreement`]) — never
//! the identities: the pattern is computed in the gateway from the sealed
//! identities (keyed encodings, `linkage::probabilistic`), and only the four
//! words leave.
//!
//! [`SubjectRegistry::decide_review`]:
//! - **accept** merges the two subjects (the older survives, as at
//!   registration; `subject_merges.review_id` names the review). Partner
//!   clusters — what a partner's pseudonym groups — are left as the rule made
//!   them: a reviewer's decision links the person for the program's
//!   cross-sector measures, studies and consents, but never regroups one
//!   partner's own records behind its back.
//! - **reject** keeps the two identities apart for good (`link_apart`):
//!   registration never merges two subjects with a kept-apart pair across them
//!   (an identity matching both joins the older only), and the pair is never
//!   queued again.
//!
//! A decided review cannot be decided again (409), and an accept across a pair
//! already kept apart is refused (409).
//!
//! # Unmerge
//! [`SubjectRegistry::unmerge`] takes two identities on one subject that are
//! not the same person. It keeps them apart (`link_apart`, cause `unmerge`)
//! and re-derives the subject from its identities, as registration would have
//! resolved them in the order they arrived with that pair kept apart:
//! 1. **Subjects**: each identity, oldest first, joins the groups of the
//!    earlier identities it matches (the rule) or was accepted with (a review),
//!    merging them unless a kept-apart pair lies across. Each group gets the
//!    oldest subject its identities' records were written under that no
//!    earlier group took — so undoing a wrong merge brings back the very
//!    subject it merged away — or a new one. Records (referrals, case
//!    statuses) and the consents recorded on them follow their identity; the
//!    audit log is not rewritten (it records what was true then).
//! 2. **Partner clusters**: each holder's clusters among the identities are
//!    re-derived the same way, inside the new groups; each keeps the smallest
//!    of its identities' current cluster ids that no other cluster took, else
//!    the smallest id one of them had before a merge of clusters moved it
//!    (`identities.home_cluster_id`, written when a cluster moves), else a new
//!    one. So undoing a wrong merge gives both sides their old cluster ids
//!    back — and every pseudonym computed from them.
//!
//! If other evidence still links the two (a third identity that matches
//! both), the group is split only where the kept-apart pair forces it.

use std::collections::{BTreeSet, HashMap};

use super::{RegistryError, SubjectRegistry, unseal_identity};
use crate::linkage::probabilistic::{self, CField, ProfileKeys};
use crate::linkage::{self, Fingerprint};
use crate::normalize::{NormalizeOptions, normalize_tolerant};
use crate::store::Tx;
use crate::store::subjects::reviews::{self as repo, Member, NewReview, RecordHome};
use crate::store::subjects::{self as subjects_repo};

/// A stored candidate in the review band of a new identity.
pub(super) struct Near {
    pub(super) identity_id: String,
    pub(super) subject_id: String,
    pub(super) score: f64,
}

/// Internal subject and identity ids stay out of `Debug` (and so out of logs).
impl std::fmt::Debug for Near {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Near")
            .field("score", &self.score)
            .finish_non_exhaustive()
    }
}

/// How two identities compare on one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldAgreement {
    Agree,
    Close,
    Differ,
    Missing,
}

/// An open review as an administrator sees it.
#[derive(Debug, Clone)]
pub struct ReviewItem {
    pub id: String,
    /// The match rule's score (below 0.5: not a match).
    pub score: f64,
    /// Unix seconds.
    pub created_at: i64,
    /// The two are on one subject by now (other evidence linked them).
    pub already_linked: bool,
    /// Per field (`given_name`, `surname`, `dob`, `street`, `city`, `zip`,
    /// `phone`, `email`).
    pub fields: Vec<(&'static str, FieldAgreement)>,
}

/// A reviewer's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewDecision {
    Accept,
    Reject,
}

impl ReviewDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accept => "accepted",
            Self::Reject => "rejected",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReviewError {
    #[error("no such review")]
    NotFound,
    #[error("the review was already decided ({0})")]
    AlreadyDecided(String),
    #[error("the two are kept apart by an earlier decision")]
    KeptApart,
    #[error("the two records are not linked")]
    NotLinked,
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl From<crate::store::StoreError> for ReviewError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Registry(e.into())
    }
}

/// What a decision did.
#[derive(Clone, PartialEq, Eq)]
pub struct Decided {
    /// The subject of the pair after the decision (the survivor on accept;
    /// the first identity's on reject), for the audit entry.
    pub subject_id: String,
    /// The subject merged away by an accept, if any.
    pub merged: Option<String>,
}

/// Internal subject and identity ids stay out of `Debug` (and so out of logs).
impl std::fmt::Debug for Decided {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decided").finish_non_exhaustive()
    }
}

/// Where an unmerge puts a subject's identities and records.
struct Placement {
    /// The groups' subjects, most senior first.
    subjects: Vec<String>,
    /// Each member's subject.
    subject_of: Vec<String>,
    /// Records (and the consents on them) to move, with their new subject.
    records_to_move: Vec<(RecordHome, String)>,
}

/// What an unmerge did.
#[derive(Clone, PartialEq, Eq)]
pub struct Unmerged {
    /// The subject that was split.
    pub subject_id: String,
    /// The subjects its identities are on now, the first being the one that
    /// kept the most senior record.
    pub subjects: Vec<String>,
    /// Identities whose subject or cluster changed.
    pub identities_moved: usize,
}

/// Internal subject and identity ids stay out of `Debug` (and so out of logs).
impl std::fmt::Debug for Unmerged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unmerged")
            .field("identities_moved", &self.identities_moved)
            .finish_non_exhaustive()
    }
}

impl SubjectRegistry {
    /// Queues the near pairs of a new identity (registered on `subject_id`,
    /// which absorbed `merged`) whose candidates sit on another subject not
    /// kept apart from it.
    pub(super) async fn queue_near(
        &self,
        tx: &mut Tx<'_>,
        identity_id: &str,
        subject_id: &str,
        merged: &[String],
        near: Vec<Near>,
        now: i64,
    ) -> Result<(), RegistryError> {
        let near: Vec<Near> = near
            .into_iter()
            .filter(|n| n.subject_id != subject_id && !merged.contains(&n.subject_id))
            .collect();
        if near.is_empty() {
            return Ok(());
        }
        let mut subjects: Vec<&str> = near.iter().map(|n| n.subject_id.as_str()).collect();
        subjects.push(subject_id);
        let apart = repo::apart_subjects(tx, &subjects).await?;
        let rows: Vec<NewReview> = near
            .iter()
            .filter(|n| {
                !apart.iter().any(|(a, b)| {
                    (a == subject_id && *b == n.subject_id)
                        || (b == subject_id && *a == n.subject_id)
                })
            })
            .map(|n| NewReview {
                id: self.ids.internal(now),
                identity_a: n.identity_id.clone(),
                identity_b: identity_id.to_owned(),
                score: n.score,
                created_at: now,
            })
            .collect();
        repo::insert_reviews(tx, &rows).await?;
        Ok(())
    }

    /// A page of open reviews, oldest first, after the review `after`, with
    /// each pair's agreement pattern.
    pub async fn open_reviews(
        &self,
        tx: &mut Tx<'_>,
        options: &NormalizeOptions,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ReviewItem>, RegistryError> {
        let rows = repo::open_reviews(tx, after, limit).await?;
        let keys = self
            .profile_keys
            .get_or_init(|| ProfileKeys::new(&self.keys));
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            let a = self.profile_of(tx, &row.identity_a, options, keys).await?;
            let b = self.profile_of(tx, &row.identity_b, options, keys).await?;
            let levels = probabilistic::compare::compare(&a, &b);
            let fields = CField::ALL
                .iter()
                .map(|f| (f.name(), agreement(*f, levels[*f as usize])))
                .collect();
            items.push(ReviewItem {
                id: row.id,
                score: row.score,
                created_at: row.created_at,
                already_linked: row.subject_a == row.subject_b,
                fields,
            });
        }
        Ok(items)
    }

    /// The keyed profile of a stored identity, made in memory from its sealed
    /// bytes; the identity itself is dropped before this returns.
    async fn profile_of(
        &self,
        tx: &mut Tx<'_>,
        identity_id: &str,
        options: &NormalizeOptions,
        keys: &ProfileKeys,
    ) -> Result<probabilistic::Profile, RegistryError> {
        let sealed = repo::sealed_of(tx, identity_id).await?.ok_or_else(|| {
            RegistryError::CorruptIdentity {
                identity_id: identity_id.to_owned(),
            }
        })?;
        let input = unseal_identity(&self.vault, identity_id, &sealed).await?;
        let tolerant = normalize_tolerant(&input, options);
        Ok(probabilistic::profile(
            &tolerant.identity,
            &tolerant.remnants,
            keys,
        ))
    }

    /// Decides an open review (see the module docs). Never commits `tx`.
    pub async fn decide_review(
        &self,
        tx: &mut Tx<'_>,
        review_id: &str,
        decision: ReviewDecision,
        decided_by: &str,
        now: i64,
    ) -> Result<Decided, ReviewError> {
        let row = repo::review(tx, review_id)
            .await?
            .ok_or(ReviewError::NotFound)?;
        if let Some(done) = row.decision {
            return Err(ReviewError::AlreadyDecided(done));
        }
        if !repo::decide(tx, review_id, decision.as_str(), decided_by, now).await? {
            let done = repo::review(tx, review_id)
                .await?
                .and_then(|r| r.decision)
                .unwrap_or_default();
            return Err(ReviewError::AlreadyDecided(done));
        }
        match decision {
            ReviewDecision::Reject => {
                repo::insert_apart(tx, &row.identity_a, &row.identity_b, "review", now).await?;
                Ok(Decided {
                    subject_id: row.subject_a,
                    merged: None,
                })
            }
            ReviewDecision::Accept if row.subject_a == row.subject_b => Ok(Decided {
                subject_id: row.subject_a,
                merged: None,
            }),
            ReviewDecision::Accept => {
                let pair = [row.subject_a.as_str(), row.subject_b.as_str()];
                if !repo::apart_subjects(tx, &pair).await?.is_empty() {
                    return Err(ReviewError::KeptApart);
                }
                let mut by_age = Vec::with_capacity(2);
                for subject in pair {
                    let created = subjects_repo::subject_created_at(tx, subject)
                        .await?
                        .unwrap_or(i64::MAX);
                    by_age.push((created, subject));
                }
                by_age.sort_unstable();
                let (survivor, other) = (by_age[0].1, by_age[1].1);
                let merge_id = self.ids.internal(now);
                subjects_repo::merge_subjects(
                    tx,
                    &merge_id,
                    other,
                    survivor,
                    &row.identity_b,
                    Some(review_id),
                    now,
                )
                .await?;
                Ok(Decided {
                    subject_id: survivor.to_owned(),
                    merged: Some(other.to_owned()),
                })
            }
        }
    }

    /// Splits the subject of two identities that are not the same person (see
    /// the module docs). Never commits `tx`.
    pub async fn unmerge(
        &self,
        tx: &mut Tx<'_>,
        identity_a: &str,
        identity_b: &str,
        now: i64,
    ) -> Result<Unmerged, ReviewError> {
        let subject_a = subjects_repo::subject_of(tx, identity_a).await?;
        let subject_b = subjects_repo::subject_of(tx, identity_b).await?;
        let subject = match (subject_a, subject_b) {
            (Some(a), Some(b)) if a == b && identity_a != identity_b => a,
            _ => return Err(ReviewError::NotLinked),
        };
        repo::insert_apart(tx, identity_a, identity_b, "unmerge", now).await?;
        let members = repo::members(tx, &subject).await?;
        let fingerprints = members
            .iter()
            .map(|m| {
                Fingerprint::from_bytes(&m.fingerprint).map_err(|_| {
                    RegistryError::CorruptFingerprint {
                        identity_id: m.holding.identity_id.clone(),
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let index: HashMap<&str, usize> = members
            .iter()
            .enumerate()
            .map(|(i, m)| (m.holding.identity_id.as_str(), i))
            .collect();
        let pairs = |list: Vec<(String, String)>| -> Vec<(usize, usize)> {
            list.iter()
                .filter_map(|(a, b)| Some((*index.get(a.as_str())?, *index.get(b.as_str())?)))
                .collect()
        };
        let apart = pairs(repo::pairs_within(tx, &subject, false).await?);
        let accepted = pairs(repo::pairs_within(tx, &subject, true).await?);

        // 1. Subjects.
        let groups = replay(members.len(), &apart, |x, y| {
            (members[x].linkable
                && members[y].linkable
                && linkage::compare(&fingerprints[x], &fingerprints[y]).is_match())
                || accepted.contains(&(x, y))
                || accepted.contains(&(y, x))
        });
        let placed = self
            .place_groups(tx, &subject, &members, &groups, now)
            .await?;

        // 2. Partner clusters, inside the new groups.
        let clusters = self.replay_clusters(&members, &fingerprints, &groups, &apart, now);

        for (record, new_subject) in &placed.records_to_move {
            repo::move_record(tx, record, new_subject).await?;
        }
        let mut moved = 0;
        for (i, member) in members.iter().enumerate() {
            let new_subject = placed.subject_of[i].as_str();
            let (source, cbo) = &clusters[i];
            let changed = new_subject != subject
                || source.as_deref() != member.holding.cluster_id.as_deref()
                || cbo.as_deref() != member.holding.cbo_cluster_id.as_deref();
            if changed {
                moved += 1;
                repo::place_identity(
                    tx,
                    &member.holding.identity_id,
                    new_subject,
                    (source.as_deref(), cbo.as_deref()),
                )
                .await?;
            }
        }
        Ok(Unmerged {
            subject_id: subject,
            subjects: placed.subjects,
            identities_moved: moved,
        })
    }

    /// Gives each group of `subject`'s members (`groups`, from [`replay`]) a
    /// subject — the most senior home its records were written under that
    /// no earlier group took, else a new one — and points every home's
    /// records where they now belong (step 1 of the module docs' unmerge).
    async fn place_groups(
        &self,
        tx: &mut Tx<'_>,
        subject: &str,
        members: &[Member],
        groups: &[usize],
        now: i64,
    ) -> Result<Placement, RegistryError> {
        let homes = repo::home_subjects(tx, subject).await?;
        let home_ids: Vec<&str> = homes.iter().map(|(id, _)| id.as_str()).collect();
        let records = repo::records_under(tx, &home_ids).await?;
        let home_age: HashMap<&str, (i64, &str)> = homes
            .iter()
            .map(|(id, created)| (id.as_str(), (*created, id.as_str())))
            .collect();
        let mut records_of: HashMap<&str, Vec<&RecordHome>> = HashMap::new();
        for record in &records {
            records_of
                .entry(record.identity_id.as_str())
                .or_default()
                .push(record);
        }
        let home_of = |i: usize| -> &str {
            records_of
                .get(members[i].holding.identity_id.as_str())
                .and_then(|r| r.first())
                .map_or(subject, |r| r.subject_id.as_str())
        };
        let age = |h: &str| home_age.get(h).copied().unwrap_or((i64::MAX, ""));
        let group_list = group_members(groups);
        // Groups in the order of their most senior home, each taking its most
        // senior home no earlier group took.
        let senior = |g: usize| {
            group_list[g]
                .iter()
                .map(|&i| age(home_of(i)))
                .min()
                .unwrap_or((i64::MAX, ""))
        };
        let mut order: Vec<usize> = (0..group_list.len()).collect();
        order.sort_by_key(|&g| (senior(g), group_list[g][0]));
        let mut taken: BTreeSet<String> = BTreeSet::new();
        let mut subject_of_group = vec![String::new(); group_list.len()];
        for &g in &order {
            let mut candidates: Vec<&str> = group_list[g].iter().map(|&i| home_of(i)).collect();
            candidates.sort_by_key(|h| age(h));
            let chosen = if let Some(home) = candidates.into_iter().find(|h| !taken.contains(*h)) {
                home.to_owned()
            } else {
                let id = self.ids.internal(now);
                subjects_repo::insert_subject(tx, &id, now).await?;
                id
            };
            taken.insert(chosen.clone());
            subject_of_group[g] = chosen;
        }
        let mut subject_of = vec![String::new(); members.len()];
        for (g, list) in group_list.iter().enumerate() {
            for &i in list {
                subject_of[i].clone_from(&subject_of_group[g]);
            }
        }
        // Where each home's records resolve: to itself when a group took it,
        // else to the one group all its identities went to, if one did.
        let mut target: HashMap<&str, Option<&str>> = HashMap::new();
        for (i, here) in subject_of.iter().enumerate() {
            target
                .entry(home_of(i))
                .and_modify(|t| {
                    if *t != Some(here.as_str()) {
                        *t = None;
                    }
                })
                .or_insert(Some(here.as_str()));
        }
        for home in &home_ids {
            if taken.contains(*home) {
                target.insert(home, Some(home));
                repo::set_merged_into(tx, home, None).await?;
            } else if let Some(Some(into)) = target.get(home) {
                repo::set_merged_into(tx, home, Some(into)).await?;
            }
        }
        // The records that do not follow their home.
        let mut records_to_move = Vec::new();
        for (i, member) in members.iter().enumerate() {
            if target.get(home_of(i)).copied().flatten() != Some(subject_of[i].as_str()) {
                for record in records_of
                    .get(member.holding.identity_id.as_str())
                    .into_iter()
                    .flatten()
                {
                    records_to_move.push(((*record).clone(), subject_of[i].clone()));
                }
            }
        }
        Ok(Placement {
            subjects: order.iter().map(|&g| subject_of_group[g].clone()).collect(),
            subject_of,
            records_to_move,
        })
    }

    /// Each member's (submitter cluster, CBO cluster) after re-deriving every
    /// holder's clusters inside `groups`.
    fn replay_clusters(
        &self,
        members: &[Member],
        fingerprints: &[Fingerprint],
        groups: &[usize],
        apart: &[(usize, usize)],
        now: i64,
    ) -> Vec<(Option<String>, Option<String>)> {
        let mut out: Vec<(Option<String>, Option<String>)> = members
            .iter()
            .map(|m| {
                (
                    m.holding.cluster_id.clone(),
                    m.holding.cbo_cluster_id.clone(),
                )
            })
            .collect();
        let mut holders: BTreeSet<&str> = BTreeSet::new();
        for m in members {
            holders.insert(&m.holding.source_partner);
            if let Some(cbo) = &m.holding.assigned_cbo {
                holders.insert(cbo);
            }
        }
        for holder in holders {
            // The members `holder` holds in a computed cluster.
            let held: Vec<usize> = (0..members.len())
                .filter(|&i| members[i].holding.cluster_of(holder).is_some())
                .collect();
            let local_apart: Vec<(usize, usize)> = apart
                .iter()
                .filter_map(|(a, b)| {
                    Some((
                        held.iter().position(|i| i == a)?,
                        held.iter().position(|i| i == b)?,
                    ))
                })
                .collect();
            let local = replay(held.len(), &local_apart, |x, y| {
                let (x, y) = (held[x], held[y]);
                groups[x] == groups[y]
                    && members[x].linkable
                    && members[y].linkable
                    && linkage::compare(&fingerprints[x], &fingerprints[y]).is_match()
            });
            let mut taken: BTreeSet<String> = BTreeSet::new();
            for list in group_members(&local) {
                // The smallest current id no other cluster took, else the
                // smallest id one of them had before a merge moved it.
                let mut current: Vec<&str> = list
                    .iter()
                    .filter_map(|&l| members[held[l]].holding.cluster_of(holder))
                    .collect();
                current.sort_unstable();
                let mut homes: Vec<&str> = list
                    .iter()
                    .filter_map(|&l| {
                        let m = &members[held[l]];
                        let (source, cbo) = &m.home_clusters;
                        if m.holding.source_partner == holder {
                            source.as_deref()
                        } else {
                            cbo.as_deref()
                        }
                    })
                    .collect();
                homes.sort_unstable();
                let id = current
                    .into_iter()
                    .chain(homes)
                    .find(|c| !taken.contains(*c))
                    .map_or_else(|| self.ids.internal(now), str::to_owned);
                taken.insert(id.clone());
                for &l in &list {
                    let i = held[l];
                    if members[i].holding.source_partner == holder {
                        out[i].0 = Some(id.clone());
                    } else {
                        out[i].1 = Some(id.clone());
                    }
                }
            }
        }
        out
    }
}

/// The agreement word for a field's level.
fn agreement(field: CField, level: u8) -> FieldAgreement {
    if level == probabilistic::MISSING {
        FieldAgreement::Missing
    } else if level == 0 {
        FieldAgreement::Agree
    } else if usize::from(level) + 1 >= probabilistic::compare::LEVELS[field as usize] {
        FieldAgreement::Differ
    } else {
        FieldAgreement::Close
    }
}

/// Resolves `n` items in order as registration does: each joins the groups
/// of the earlier items it is `linked` to, oldest group first, merging them
/// unless a pair of `apart` lies across. Returns each item's group, named by
/// its oldest item.
pub(super) fn replay(
    n: usize,
    apart: &[(usize, usize)],
    linked: impl Fn(usize, usize) -> bool,
) -> Vec<usize> {
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    let mut parent: Vec<usize> = (0..n).collect();
    for x in 0..n {
        let mut roots: Vec<usize> = (0..x)
            .filter(|&y| linked(x, y))
            .map(|y| find(&mut parent, y))
            .collect();
        roots.sort_unstable();
        roots.dedup();
        for root in roots {
            let mine = find(&mut parent, x);
            let crosses = apart.iter().any(|&(a, b)| {
                let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
                (ra == mine && rb == root) || (ra == root && rb == mine)
            });
            if crosses || mine == root {
                continue;
            }
            // The older group names the union.
            let (keep, gone) = if root < mine {
                (root, mine)
            } else {
                (mine, root)
            };
            parent[gone] = keep;
        }
    }
    (0..n).map(|x| find(&mut parent, x)).collect()
}

/// The items of each group, in order, groups ordered by their oldest item.
fn group_members(groups: &[usize]) -> Vec<Vec<usize>> {
    let mut by_root: std::collections::BTreeMap<usize, Vec<usize>> =
        std::collections::BTreeMap::new();
    for (i, &g) in groups.iter().enumerate() {
        by_root.entry(g).or_default().push(i);
    }
    by_root.into_values().collect()
}
