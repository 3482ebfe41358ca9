//! Registering a chunk of identities at once: [`SubjectRegistry::register_many`].
//!
//! The batch endpoint stores referrals in chunks of a few hundred per transaction
//! and registers each chunk's identities with one call. The result is exactly
//! what calling [`SubjectRegistry::register`] on each identity in order, in the
//! same transaction and at the same instant, would give — the same links, the
//! same merges, the same `Linked` values (ids aside, which are random either
//! way) — but with a constant number of statements per chunk instead of five
//! or more per identity:
//!
//! 1. **Fingerprint** (CPU): an id, a fingerprint and its lookup keys for each
//!    identity.
//! 2. **One candidate lookup** for the union of the chunk's index keys
//!    ([`candidates_for_keys`](crate::store::subjects::bulk::candidates_for_keys)):
//!    every stored, linkable identity that shares a key with *some* identity of
//!    the chunk, with its subject and the subject's age. Only the kinds the
//!    registry stores are looked up ([`TokenKind::is_indexed`]: every pair that
//!    can match agrees on one of them).
//! 3. **Resolve in order, in memory.** Stored candidates and the chunk's own
//!    identities, as they are resolved, go into one index by token; each
//!    identity is compared with what the index holds for its tokens, so a later
//!    identity links to an earlier one of the same chunk. Merges are applied to
//!    an in-memory forwarding table (`merged_into`), so "the subject a candidate
//!    belongs to now" is what it would be after the earlier `register` calls.
//!    The same matches, filtered by holder, settle each identity's partner
//!    clusters (its submitter's and its CBO's; `subjects/clusters.rs`), with
//!    merges forwarded the same way: no second lookup.
//! 4. **Seal** all inputs with [`Vault::seal_many`](crate::vault::Vault::seal_many).
//! 5. **Write** with multi-row statements: subjects, moves of stored subjects
//!    merged away (identities and `merged_into`), moves of stored clusters
//!    merged away (only when there are any), identities with their clusters,
//!    tokens, merges.
//!
//! # Why the in-memory resolution is exact
//! `register` compares an identity with the stored identities that share a row
//! of `linkage_tokens` with it. Here the lookup returns a superset (they share a
//! key with any identity of the chunk) and the index narrows it to those that
//! share a *fingerprint token* of an indexed kind with the identity. The two
//! agree on every pair that can match: a match always agrees on a token of an
//! indexed kind ([`TokenKind::is_indexed`]), a fingerprint's tokens of those
//! kinds are exactly the rows written for it, and a stored identity sharing a
//! row but not a token with the identity is never a match.
//! Subjects are ordered by `(created_at, id)` as `register` orders them, and
//! every subject the chunk creates gets the same `created_at` (the chunk is one
//! write, at one instant).
//!
//! # Where the time goes
//! `cargo bench --bench registry` prints it per phase. With the statements per
//! chunk constant, CPU work is small (fingerprints ~5 µs, resolution and
//! sealing a few µs per identity) and the cost is the database's: one index
//! probe per lookup key and, above all, the ~14 token rows per identity, each
//! inserted at a random place of the token index, whose dirtied pages the
//! commit writes (migration 0007 trims that). That is why the CPU phases are
//! not spread over threads: rayon would save microseconds of a chunk that
//! waits milliseconds on its writes, on two cores shared with the HTTP server.
//!
//! `Linked::subject_id` is the subject at the moment the identity was resolved,
//! as `register` returns it: a later identity of the same chunk may merge that
//! subject away (the merge is in its own `Linked::merged` and in
//! `subject_merges`; the subject's `merged_into` names where it went).

use std::collections::HashMap;

use super::clusters::{ClusterTable, Held};
use super::{Linked, RegistryError, SubjectRegistry, identity_context, seal_input};
use crate::clock::Clock;
use crate::linkage::{self, Fingerprint, Token, TokenKind};
use crate::normalize::{Identity, IdentityInput};
use crate::randomness::RecordIds;
use crate::store::Tx;
use crate::store::subjects::NewIdentity;
use crate::store::subjects::bulk::{self, ChunkCandidate, IdentityTokens, NewMerge, NewSubject};
use crate::store::subjects::reviews::{self as reviews_repo, NewReview};
use crate::vault::ToSeal;

/// One identity of a chunk, as [`SubjectRegistry::register`] takes it. `Debug`
/// prints only which fields are present (the identity types redact themselves).
#[derive(Debug, Clone, Copy)]
pub struct NewSubjectIdentity<'a> {
    /// The partner that submitted the identity, which holds it.
    pub source_partner: &'a str,
    /// The CBO its record is assigned to, which holds it too (a referral's);
    /// `None` for a record no CBO is given (a case).
    pub assigned_cbo: Option<&'a str>,
    /// The identity as sent, which the vault seals.
    pub input: &'a IdentityInput,
    /// The identity normalized, which the linkage engine fingerprints.
    pub identity: &'a Identity,
}

impl NewSubjectIdentity<'_> {
    /// The CBO holding it besides its submitter (never the submitter itself).
    pub(super) fn cbo(&self) -> Option<&str> {
        self.assigned_cbo.filter(|cbo| *cbo != self.source_partner)
    }
}

/// An identity of the chunk once fingerprinted, with who holds it.
pub(super) struct Prepared<'a> {
    pub(super) identity_id: String,
    pub(super) fingerprint: Fingerprint,
    /// The keys stored for it and looked up for it (`Fingerprint::index_keys`).
    pub(super) index_keys: Vec<Vec<u8>>,
    pub(super) source_partner: &'a str,
    pub(super) cbo: Option<&'a str>,
}

/// What resolving the chunk decided, to be written.
pub(super) struct Resolution {
    subjects: SubjectTable,
    /// Per identity of the chunk: the subject it was given (an index into
    /// `subjects`) and the subjects it merged into that one.
    assigned: Vec<(usize, Vec<usize>)>,
    /// (merged away, survivor, index of the bridging identity), in order.
    merges: Vec<(usize, usize, usize)>,
    /// The partner clusters the chunk touched.
    pub(super) clusters: ClusterTable,
    /// Per identity of the chunk: its submitter's cluster and its CBO's (slots
    /// of `clusters`) at the moment it was resolved.
    pub(super) clustered: Vec<(usize, Option<usize>)>,
    /// Pairs for the review queue: (the earlier identity's id, the index of
    /// the chunk's identity, the score).
    near: Vec<(String, usize, f64)>,
}

impl SubjectRegistry {
    /// Registers a chunk of identities inside the caller's transaction, with the
    /// result of calling [`SubjectRegistry::register`] on each in order (see the
    /// module docs of `subjects::register_many` for how and why it is exact), in
    /// a handful of statements whatever the chunk's size. Returns one [`Linked`]
    /// per identity, in order. Never commits `tx`.
    #[tracing::instrument(name = "subjects.register_many", skip_all, fields(count = items.len()))]
    pub async fn register_many(
        &self,
        tx: &mut Tx<'_>,
        items: &[NewSubjectIdentity<'_>],
        clock: &dyn Clock,
    ) -> Result<Vec<Linked>, RegistryError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let now = clock.now().timestamp();
        let prepared: Vec<Prepared> = tracing::debug_span!("subjects.fingerprint").in_scope(|| {
            items
                .iter()
                .map(|item| {
                    let fingerprint = linkage::fingerprint(item.identity, &self.keys);
                    Prepared {
                        identity_id: self.ids.internal(now),
                        index_keys: fingerprint.index_keys(),
                        fingerprint,
                        source_partner: item.source_partner,
                        cbo: item.cbo(),
                    }
                })
                .collect()
        });

        let mut keys: Vec<&[u8]> = prepared
            .iter()
            .flat_map(|p| p.index_keys.iter().map(Vec::as_slice))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let stored = if keys.is_empty() {
            Vec::new()
        } else {
            bulk::candidates_for_keys(tx, self.key_version, &keys).await?
        };
        // Pairs kept apart (a rejected review, an unmerge) matter only where
        // the chunk merges stored subjects or queues a pair across two: most
        // chunks do neither, and pay no lookup. When one does, the stored
        // subjects' pairs are read and, if there are any, the chunk is
        // resolved again with them (in memory: nothing was written yet).
        let mut resolution = tracing::debug_span!("subjects.resolve")
            .in_scope(|| resolve(&stored, &prepared, &[], (&self.ids, now)))?;
        if stored.len() > 1 && (!resolution.merges.is_empty() || !resolution.near.is_empty()) {
            let mut subjects: Vec<&str> = stored.iter().map(|c| c.subject_id.as_str()).collect();
            subjects.sort_unstable();
            subjects.dedup();
            let apart = reviews_repo::apart_subjects(tx, &subjects).await?;
            if !apart.is_empty() {
                resolution = tracing::debug_span!("subjects.resolve")
                    .in_scope(|| resolve(&stored, &prepared, &apart, (&self.ids, now)))?;
            }
        }

        let contexts: Vec<Vec<u8>> = prepared
            .iter()
            .map(|p| identity_context(&p.identity_id))
            .collect();
        let plaintexts: Vec<Vec<u8>> = items.iter().map(|item| seal_input(item.input)).collect();
        let to_seal: Vec<ToSeal<'_>> = contexts
            .iter()
            .zip(&plaintexts)
            .map(|(context, plaintext)| ToSeal { context, plaintext })
            .collect();
        let sealed = self.vault.seal_many(tx, &to_seal, clock).await?;

        self.write(tx, &prepared, &sealed, &resolution, now).await?;
        Ok(resolution.linked(&prepared))
    }

    /// Writes what [`resolve`] decided, in an order the foreign keys accept:
    /// subjects before the identities and merges that name them.
    async fn write(
        &self,
        tx: &mut Tx<'_>,
        prepared: &[Prepared<'_>],
        sealed: &[crate::vault::Sealed],
        resolution: &Resolution,
        now: i64,
    ) -> Result<(), RegistryError> {
        let table = &resolution.subjects;
        let id = |slot: usize| table.slots[slot].id.as_str();
        let mut new_subjects: Vec<NewSubject<'_>> = table
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.stored)
            .map(|(slot, s)| NewSubject {
                id: &s.id,
                created_at: s.created_at,
                merged_into: s.merged_into.map(|_| id(table.root(slot))),
            })
            .collect();
        // The subjects others were merged into first: a long chunk is inserted
        // in several statements, and `merged_into` must name a row that is
        // already there when its statement ends (PostgreSQL checks the key
        // then). Every `merged_into` names a root, which has none itself.
        new_subjects.sort_by_key(|s| s.merged_into.is_some());
        bulk::insert_subjects(tx, &new_subjects).await?;

        let moves: Vec<bulk::SubjectMove<'_>> = table
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.stored && s.merged_into.is_some())
            .map(|(slot, s)| bulk::SubjectMove {
                from: &s.id,
                into: id(table.root(slot)),
            })
            .collect();
        if !moves.is_empty() {
            bulk::move_subjects(tx, &moves).await?;
        }
        // Stored clusters merged away: their identities were on the stored
        // subjects read with them, which are now (moved above) on the roots.
        super::move_stored_clusters(tx, &resolution.clusters, |subject| {
            table
                .stored_by_id
                .get(subject)
                .map_or(subject, |&slot| id(table.root(slot)))
        })
        .await?;

        let clusters = &resolution.clusters;
        let cluster = |slot: usize| clusters.id(clusters.root(slot));
        let fingerprints: Vec<Vec<u8>> =
            prepared.iter().map(|p| p.fingerprint.to_bytes()).collect();
        let identities: Vec<NewIdentity<'_>> = prepared
            .iter()
            .zip(&resolution.assigned)
            .zip(&resolution.clustered)
            .zip(sealed.iter().zip(&fingerprints))
            .map(
                |(((p, (slot, _)), (source, cbo)), (sealed, fingerprint))| NewIdentity {
                    id: &p.identity_id,
                    subject_id: id(table.root(*slot)),
                    source_partner: p.source_partner,
                    sealed: sealed.as_bytes(),
                    fingerprint,
                    key_version: self.key_version,
                    linkable: p.fingerprint.is_linkable(),
                    created_at: now,
                    // The final clusters: one this chunk merged away has no
                    // identity left in it.
                    cluster_id: cluster(*source),
                    assigned_cbo: p.cbo,
                    cbo_cluster_id: cbo.map(cluster),
                },
            )
            .collect();
        bulk::insert_identities(tx, &identities).await?;

        let tokens: Vec<IdentityTokens<'_>> = prepared
            .iter()
            .filter(|p| p.fingerprint.is_linkable())
            .map(|p| IdentityTokens {
                identity_id: &p.identity_id,
                keys: &p.index_keys,
            })
            .collect();
        bulk::insert_tokens_many(tx, self.key_version, &tokens).await?;

        if !resolution.merges.is_empty() {
            let merge_ids: Vec<String> = resolution
                .merges
                .iter()
                .map(|_| self.ids.internal(now))
                .collect();
            let merges: Vec<NewMerge<'_>> = resolution
                .merges
                .iter()
                .zip(&merge_ids)
                .map(|(&(from, into, item), merge_id)| NewMerge {
                    id: merge_id,
                    from_subject: id(from),
                    into_subject: id(into),
                    identity_id: &prepared[item].identity_id,
                    merged_at: now,
                })
                .collect();
            bulk::insert_merges(tx, &merges).await?;
        }
        self.write_reviews(tx, prepared, &resolution.near, now)
            .await
    }

    /// Queues the chunk's near pairs (after its identities are written).
    async fn write_reviews(
        &self,
        tx: &mut Tx<'_>,
        prepared: &[Prepared<'_>],
        near: &[(String, usize, f64)],
        now: i64,
    ) -> Result<(), RegistryError> {
        if near.is_empty() {
            return Ok(());
        }
        let reviews: Vec<NewReview> = near
            .iter()
            .map(|(earlier, item, score)| NewReview {
                id: self.ids.internal(now),
                identity_a: earlier.clone(),
                identity_b: prepared[*item].identity_id.clone(),
                score: *score,
                created_at: now,
            })
            .collect();
        reviews_repo::insert_reviews(tx, &reviews).await?;
        Ok(())
    }
}

impl Resolution {
    fn linked(&self, prepared: &[Prepared<'_>]) -> Vec<Linked> {
        let id = |slot: usize| self.subjects.slots[slot].id.clone();
        let cluster = |slot: usize| self.clusters.id(slot).to_owned();
        prepared
            .iter()
            .zip(&self.assigned)
            .zip(&self.clustered)
            .map(|((p, (slot, merged)), (source, cbo))| Linked {
                identity_id: p.identity_id.clone(),
                subject_id: id(*slot),
                merged: merged.iter().map(|&s| id(s)).collect(),
                linkable: p.fingerprint.is_linkable(),
                cluster_id: cluster(*source),
                cbo_cluster_id: cbo.map(cluster),
            })
            .collect()
    }
}

/// Subjects the chunk touches: the stored subjects of its candidates and the ones
/// it creates, with merges applied as forwarding pointers.
struct SubjectTable {
    slots: Vec<SubjectSlot>,
    stored_by_id: HashMap<String, usize>,
}

struct SubjectSlot {
    id: String,
    created_at: i64,
    /// Set when the chunk merged this subject into another (which may itself
    /// have been merged later: follow to [`SubjectTable::root`]).
    merged_into: Option<usize>,
    /// In the database before the chunk, rather than created by it.
    stored: bool,
}

impl SubjectTable {
    fn stored(&mut self, id: &str, created_at: i64) -> usize {
        if let Some(&slot) = self.stored_by_id.get(id) {
            return slot;
        }
        let slot = self.push(id.to_owned(), created_at, true);
        self.stored_by_id.insert(id.to_owned(), slot);
        slot
    }

    fn push(&mut self, id: String, created_at: i64, stored: bool) -> usize {
        self.slots.push(SubjectSlot {
            id,
            created_at,
            merged_into: None,
            stored,
        });
        self.slots.len() - 1
    }

    /// The subject `slot`'s identities belong to now.
    fn root(&self, mut slot: usize) -> usize {
        while let Some(next) = self.slots[slot].merged_into {
            slot = next;
        }
        slot
    }

    /// Whether a pair kept apart lies between the subjects `group` (roots,
    /// merged or about to be) and `other` (a root).
    fn kept_apart(&self, apart: &[(usize, usize)], group: &[usize], other: usize) -> bool {
        apart.iter().any(|&(a, b)| {
            let (a, b) = (self.root(a), self.root(b));
            (group.contains(&a) && b == other) || (group.contains(&b) && a == other)
        })
    }

    /// The subject of an identity that matched the subjects `matched` (roots,
    /// oldest first): the oldest, with the others merged into it unless a
    /// pair kept apart lies across (`register`'s rule); `None` when it matched
    /// none. Also returns the subjects now joined (survivor first); `merged`
    /// hears of each merge as (merged away, survivor).
    fn settle(
        &mut self,
        matched: &[usize],
        apart: &[(usize, usize)],
        mut merged: impl FnMut(usize, usize),
    ) -> (Option<usize>, Vec<usize>) {
        let Some((&survivor, others)) = matched.split_first() else {
            return (None, Vec::new());
        };
        let mut group = vec![survivor];
        for &other in others {
            if self.kept_apart(apart, &group, other) {
                continue;
            }
            self.slots[other].merged_into = Some(survivor);
            merged(other, survivor);
            group.push(other);
        }
        (Some(survivor), group)
    }

    /// `register`'s order for a merge: oldest first, ties by id.
    fn age_key(&self, slot: usize) -> (i64, &str) {
        let s = &self.slots[slot];
        (s.created_at, &s.id)
    }
}

/// Resolves the chunk's identities in order against the stored candidates and
/// the chunk's earlier identities (steps 3 and 4 of the rule in the `subjects`
/// module docs), and settles their partner clusters from the same matches.
pub(super) fn resolve(
    stored: &[ChunkCandidate],
    prepared: &[Prepared<'_>],
    apart: &[(String, String)],
    (ids, now): (&RecordIds, i64),
) -> Result<Resolution, RegistryError> {
    let mut subjects = SubjectTable {
        slots: Vec::with_capacity(stored.len() + prepared.len()),
        stored_by_id: HashMap::with_capacity(stored.len()),
    };
    let mut clusters = ClusterTable::default();
    // Everything an identity may be compared with: the stored candidates, then
    // each linkable identity of the chunk once resolved, with its subject and
    // who holds it in which cluster. Fingerprints are borrowed from `prepared`
    // or owned from decoding the stored bytes.
    let mut decoded: Vec<(Fingerprint, usize)> = Vec::with_capacity(stored.len());
    let mut holders: Vec<Held<'_>> = Vec::with_capacity(stored.len() + prepared.len());
    let mut known_ids: Vec<&str> = Vec::with_capacity(stored.len() + prepared.len());
    for candidate in stored {
        let fingerprint = Fingerprint::from_bytes(&candidate.fingerprint).map_err(|_| {
            RegistryError::CorruptFingerprint {
                identity_id: candidate.holding.identity_id.clone(),
            }
        })?;
        let slot = subjects.stored(&candidate.subject_id, candidate.subject_created_at);
        decoded.push((fingerprint, slot));
        holders.push(clusters.held(&candidate.holding, &candidate.subject_id));
        known_ids.push(&candidate.holding.identity_id);
    }
    // Kept-apart pairs as slots; a subject no candidate sits on cannot be
    // merged by this chunk, so its pairs do not matter.
    let apart: Vec<(usize, usize)> = apart
        .iter()
        .filter_map(|(a, b)| {
            Some((
                *subjects.stored_by_id.get(a)?,
                *subjects.stored_by_id.get(b)?,
            ))
        })
        .collect();
    let mut known: Vec<(&Fingerprint, usize)> = decoded.iter().map(|(f, s)| (f, *s)).collect();
    let mut index = TokenIndex::new(prepared);
    for (i, (fingerprint, _)) in decoded.iter().enumerate() {
        index.add(fingerprint, i);
    }

    let mut assigned = Vec::with_capacity(prepared.len());
    let mut clustered = Vec::with_capacity(prepared.len());
    let mut merge_log = Vec::new();
    let mut near_log = Vec::new();
    let mut candidates = Vec::new();
    let mut matched_known: Vec<(usize, Held<'_>)> = Vec::new();
    let mut near: Vec<(usize, f64)> = Vec::new();
    for (item, p) in prepared.iter().enumerate() {
        let mut matched: Vec<usize> = Vec::new();
        matched_known.clear();
        near.clear();
        if p.fingerprint.is_linkable() {
            index.candidates(&p.fingerprint, &mut candidates);
            for &c in &candidates {
                let (fingerprint, slot) = known[c];
                let score = linkage::compare(&p.fingerprint, fingerprint);
                if score.is_match() {
                    matched.push(subjects.root(slot));
                    matched_known.push((slot, holders[c]));
                } else if score.needs_review() {
                    near.push((c, score.score()));
                }
            }
            matched.sort_unstable_by(|a, b| subjects.age_key(*a).cmp(&subjects.age_key(*b)));
            matched.dedup();
        }
        let (subject, group) = subjects.settle(&matched, &apart, |other, survivor| {
            merge_log.push((other, survivor, item));
        });
        let subject = subject.unwrap_or_else(|| subjects.push(ids.internal(now), now, false));
        // Only the matches now on this identity's subject settle its clusters.
        let on_subject: Vec<Held<'_>> = matched_known
            .iter()
            .filter(|(slot, _)| subjects.root(*slot) == subject)
            .map(|(_, held)| *held)
            .collect();
        let source = clusters.settle(p.source_partner, &on_subject, || ids.internal(now));
        let cbo = p
            .cbo
            .map(|cbo| clusters.settle(cbo, &on_subject, || ids.internal(now)));
        clustered.push((source, cbo));
        for &(c, score) in &near {
            let theirs = subjects.root(known[c].1);
            if theirs != subject && !subjects.kept_apart(&apart, &[subject], theirs) {
                near_log.push((known_ids[c].to_owned(), item, score));
            }
        }
        if p.fingerprint.is_linkable() {
            index.add(&p.fingerprint, known.len());
            known.push((&p.fingerprint, subject));
            known_ids.push(&p.identity_id);
            holders.push(Held {
                source: Some((p.source_partner, source)),
                cbo: p.cbo.zip(cbo),
            });
        }
        assigned.push((subject, group.get(1..).unwrap_or_default().to_vec()));
    }
    Ok(Resolution {
        subjects,
        assigned,
        merges: merge_log,
        clusters,
        clustered,
        near: near_log,
    })
}

/// Which of the fingerprints known so far hold each token of the chunk. Only
/// the chunk's own tokens of indexed kinds ([`TokenKind::is_indexed`]) are
/// keys, as in the database: two identities that can match share one.
struct TokenIndex {
    entries: HashMap<Token, Vec<usize>>,
}

impl TokenIndex {
    fn new(prepared: &[Prepared<'_>]) -> Self {
        let mut entries = HashMap::with_capacity(prepared.len() * TokenKind::COUNT);
        for p in prepared {
            for token in p.fingerprint.tokens() {
                if token.kind.is_indexed() {
                    entries.entry(*token).or_insert_with(Vec::new);
                }
            }
        }
        Self { entries }
    }

    fn add(&mut self, fingerprint: &Fingerprint, known: usize) {
        for token in fingerprint.tokens() {
            if let Some(holders) = self.entries.get_mut(token) {
                holders.push(known);
            }
        }
    }

    /// The known fingerprints sharing a token with `fingerprint`, each once.
    fn candidates(&self, fingerprint: &Fingerprint, out: &mut Vec<usize>) {
        out.clear();
        for token in fingerprint.tokens() {
            if let Some(holders) = self.entries.get(token) {
                out.extend_from_slice(holders);
            }
        }
        out.sort_unstable();
        out.dedup();
    }
}
