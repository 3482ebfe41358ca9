//! The subject registry: resolves each incoming identity to a pseudonymous
//! subject, and rotates the keys its links rest on.
//!
//! # The resolution rule
//! 1. The identity is normalized (by the caller) and fingerprinted by the linkage
//!    engine under the current key version. An identity with too few usable
//!    fields is stored as *unlinkable*: it gets a subject of its own and is never
//!    linked to another, now or later — no guesswork.
//! 2. Candidates are the stored, linkable identities that share at least one
//!    lookup token (exact linkage token or blocking key) with it.
//! 3. Each candidate is scored by [`linkage::compare`]; those for which the
//!    engine's documented match rule holds are matches.
//! 4. No match: a new subject (a random id). Matches all on one subject: that
//!    subject. Matches on several subjects: the identity *bridges* them, so they
//!    are merged into the oldest (ties broken by id), and each merge is recorded
//!    in `subject_merges` with the identity that caused it — except a subject
//!    kept apart from those merged (a pair in `link_apart`, from a rejected
//!    review or an unmerge), which is left as it is.
//! 5. Candidates that do not match but fall in the rule's review band, on
//!    another subject not kept apart, are queued for a person to decide
//!    (`subjects/review.rs`, which also explains accept, reject and unmerge).
//!
//! The raw identity is sealed by the vault before it is stored; only its sealed
//! bytes, its keyed fingerprint and its lookup tokens reach the database.
//!
//! # One identity or a chunk
//! [`SubjectRegistry::register`] resolves one identity in five or more
//! statements: right for a single submission. [`SubjectRegistry::register_many`]
//! resolves a chunk (the batch endpoint's few hundred referrals per
//! transaction) in a constant number of statements, with exactly the result of
//! calling `register` on each in order — later identities of the chunk link to
//! earlier ones — as `subjects/register_many.rs` explains and its tests check
//! against `register` on both backends.
//!
//! Two replicas resolving the same new person at the same instant may each create
//! a subject; the next identity that matches both merges them. That is the price
//! of not serializing every write on one lock, and it heals itself. The same
//! holds for partner clusters.
//!
//! # Partner clusters
//! Subjects link everything, whoever submitted it; what a partner sees is not
//! the subject but its pseudonym of its **own cluster** of the identity: the
//! identities it holds, linked among themselves (`subjects/clusters.rs`
//! explains the rule and who holds what). Registration settles the
//! submitter's cluster, and the assigned CBO's, from the same matched
//! candidates as the subject ([`Linked::cluster_id`]);
//! [`SubjectRegistry::hand_to_cbo`] settles a CBO's cluster when a referral
//! moves to it; [`backfill_clusters`] computes them for rows from before they
//! existed; [`partner_pseudonym`] is what a partner is shown.

use std::collections::BTreeSet;

use crate::clock::Clock;
use crate::linkage::{self, Fingerprint, LinkageKeys};
use crate::normalize::{Identity, IdentityInput, NormalizeOptions};
use crate::randomness::RecordIds;
use crate::secrets::MasterSecret;
use crate::store::subjects::reviews as repo_reviews;
use crate::store::subjects::{self as repo, Candidate, NewIdentity};
use crate::store::{Store, StoreError, Tx};
use crate::vault::{Sealed, Vault, VaultError};

#[cfg(test)]
/// Runs an `async fn(Backend)` test on SQLite and, if configured, on
/// PostgreSQL: for the test modules below (`tests.rs` has `Backend` and
/// `postgres_available`).
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if super::postgres_available(stringify!($name)) {
                        super::$name(super::Backend::Postgres).await;
                    }
                }
            )*
        }
    };
}

mod backfill;
#[cfg(test)]
mod cluster_tests;
mod clusters;
mod register_many;
mod review;
#[cfg(test)]
mod review_tests;
#[cfg(test)]
mod tests;

pub use backfill::{BackfillReport, backfill_clusters};
pub use clusters::partner_pseudonym;
pub use register_many::NewSubjectIdentity;
pub use review::{FieldAgreement, ReviewDecision, ReviewError, ReviewItem, Unmerged};

use clusters::{move_stored_clusters, settle_clusters};

/// The `gateway_meta` entries that track key versions.
const META_KEY_VERSION: &str = "key_version";
const META_MASTER_CHECK: &str = "master_key_check";
const META_ROTATION_CHECK: &str = "rotation_target_check";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("a stored fingerprint could not be read (identity {identity_id})")]
    CorruptFingerprint { identity_id: String },
    #[error("a stored identity could not be read back (identity {identity_id})")]
    CorruptIdentity { identity_id: String },
    #[error("the configured master secret is not the one this database was made under")]
    WrongCurrentSecret,
    #[error("a key rotation to another master secret is in progress; finish it first")]
    OtherRotationInProgress,
    #[error(
        "a key rotation is in progress; run `crosswalk keys rotate` to finish it before serving"
    )]
    RotationInProgress,
}

/// What registering an identity did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linked {
    pub identity_id: String,
    pub subject_id: String,
    /// Subjects merged into `subject_id` because this identity bridged them.
    pub merged: Vec<String>,
    pub linkable: bool,
    /// The submitter's own cluster of the identity at the moment it was
    /// resolved: what its pseudonym of the person is computed from.
    pub cluster_id: String,
    /// The assigned CBO's cluster of it, when a CBO holds it too.
    pub cbo_cluster_id: Option<String>,
}

/// Resolves identities to subjects. One per gateway process.
pub struct SubjectRegistry {
    keys: LinkageKeys,
    key_version: i64,
    vault: Vault,
    /// Internal ids (identities, subjects, merges, clusters): see
    /// [`RecordIds::internal`] for why they are time-ordered.
    ids: RecordIds,
    /// The review queue's keyed profiles (`subjects/review.rs`): made on
    /// first use, since deriving them hashes every bigram of every field.
    profile_keys: std::sync::OnceLock<crate::linkage::probabilistic::ProfileKeys>,
}

impl std::fmt::Debug for SubjectRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubjectRegistry")
            .field("key_version", &self.key_version)
            .finish_non_exhaustive()
    }
}

impl SubjectRegistry {
    /// Reads the current key version from the database; refuses to run while a
    /// key rotation is unfinished.
    pub async fn open(
        store: &Store,
        master: &MasterSecret,
        vault: Vault,
    ) -> Result<Self, RegistryError> {
        let mut tx = store.begin().await?;
        if Store::meta_get(&mut tx, META_ROTATION_CHECK)
            .await?
            .is_some()
        {
            return Err(RegistryError::RotationInProgress);
        }
        let key_version = current_key_version(&mut tx).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(Self {
            keys: LinkageKeys::derive(master, key_version_u32(key_version)),
            key_version,
            ids: RecordIds::new(vault.randomness()),
            profile_keys: std::sync::OnceLock::new(),
            vault,
        })
    }

    pub fn key_version(&self) -> i64 {
        self.key_version
    }

    /// Seals, fingerprints and links one identity inside the caller's
    /// transaction, held by its submitter only.
    pub async fn register(
        &self,
        tx: &mut Tx<'_>,
        source_partner: &str,
        input: &IdentityInput,
        identity: &Identity,
        clock: &dyn Clock,
    ) -> Result<Linked, RegistryError> {
        let item = NewSubjectIdentity {
            source_partner,
            assigned_cbo: None,
            input,
            identity,
        };
        self.register_identity(tx, &item, clock).await
    }

    /// Seals, fingerprints and links one identity inside the caller's
    /// transaction, and settles its holders' clusters.
    pub async fn register_identity(
        &self,
        tx: &mut Tx<'_>,
        item: &NewSubjectIdentity<'_>,
        clock: &dyn Clock,
    ) -> Result<Linked, RegistryError> {
        let now = clock.now().timestamp();
        let identity_id = self.ids.internal(now);
        let fingerprint = linkage::fingerprint(item.identity, &self.keys);
        let linkable = fingerprint.is_linkable();
        let (mut matched, near) = if linkable {
            self.compare_candidates(tx, &fingerprint).await?
        } else {
            (Vec::new(), Vec::new())
        };
        let subjects = matched.iter().map(|c| c.subject_id.clone()).collect();
        let (subject_id, merged) = self.settle_subject(tx, subjects, &identity_id, now).await?;
        // A subject kept apart from the survivor was not merged: its
        // identities are not this one's to cluster with.
        matched.retain(|c| c.subject_id == subject_id || merged.contains(&c.subject_id));
        let (cluster_id, cbo_cluster_id) = settle_clusters(
            tx,
            &matched,
            &subject_id,
            (item.source_partner, item.cbo()),
            (&self.ids, now),
        )
        .await?;
        let sealed = self
            .vault
            .seal(
                tx,
                &identity_context(&identity_id),
                &seal_input(item.input),
                clock,
            )
            .await?;
        repo::insert_identity(
            tx,
            &NewIdentity {
                id: &identity_id,
                subject_id: &subject_id,
                source_partner: item.source_partner,
                sealed: sealed.as_bytes(),
                fingerprint: &fingerprint.to_bytes(),
                key_version: self.key_version,
                linkable,
                created_at: now,
                cluster_id: &cluster_id,
                assigned_cbo: item.cbo(),
                cbo_cluster_id: cbo_cluster_id.as_deref(),
            },
        )
        .await?;
        if linkable {
            repo::insert_tokens(
                tx,
                &identity_id,
                self.key_version,
                &fingerprint.index_keys(),
            )
            .await?;
        }
        self.queue_near(tx, &identity_id, &subject_id, &merged, near, now)
            .await?;
        Ok(Linked {
            identity_id,
            subject_id,
            merged,
            linkable,
            cluster_id,
            cbo_cluster_id,
        })
    }

    /// The stored identities `fingerprint` matches.
    async fn matching_candidates(
        &self,
        tx: &mut Tx<'_>,
        fingerprint: &Fingerprint,
    ) -> Result<Vec<Candidate>, RegistryError> {
        Ok(self.compare_candidates(tx, fingerprint).await?.0)
    }

    /// The stored identities `fingerprint` matches, and those in the review
    /// band ([`linkage::MatchScore::needs_review`]) with their scores.
    async fn compare_candidates(
        &self,
        tx: &mut Tx<'_>,
        fingerprint: &Fingerprint,
    ) -> Result<(Vec<Candidate>, Vec<review::Near>), RegistryError> {
        let candidates = repo::candidates(tx, self.key_version, &fingerprint.index_keys()).await?;
        let mut matched = Vec::new();
        let mut near = Vec::new();
        for candidate in candidates {
            let stored = Fingerprint::from_bytes(&candidate.fingerprint).map_err(|_| {
                RegistryError::CorruptFingerprint {
                    identity_id: candidate.holding.identity_id.clone(),
                }
            })?;
            let score = linkage::compare(fingerprint, &stored);
            if score.is_match() {
                matched.push(candidate);
            } else if score.needs_review() {
                near.push(review::Near {
                    identity_id: candidate.holding.identity_id,
                    subject_id: candidate.subject_id,
                    score: score.score(),
                });
            }
        }
        Ok((matched, near))
    }

    /// Picks the subject for a new identity, creating or merging as the rule says.
    async fn settle_subject(
        &self,
        tx: &mut Tx<'_>,
        matched: BTreeSet<String>,
        identity_id: &str,
        now: i64,
    ) -> Result<(String, Vec<String>), RegistryError> {
        if matched.is_empty() {
            let subject_id = self.ids.internal(now);
            repo::insert_subject(tx, &subject_id, now).await?;
            return Ok((subject_id, Vec::new()));
        }
        let mut by_age = Vec::with_capacity(matched.len());
        for subject in matched {
            let created = repo::subject_created_at(tx, &subject)
                .await?
                .unwrap_or(i64::MAX);
            by_age.push((created, subject));
        }
        by_age.sort();
        let ids: Vec<&str> = by_age.iter().map(|(_, s)| s.as_str()).collect();
        let apart = repo_reviews::apart_subjects(tx, &ids).await?;
        let mut subjects = by_age.into_iter().map(|(_, s)| s);
        let survivor = subjects.next().unwrap_or_default();
        let mut merged: Vec<String> = Vec::new();
        for other in subjects {
            // Never merge across a pair kept apart (a rejected review, an
            // unmerge): the identity joins the survivor only.
            let kept_apart = apart.iter().any(|(a, b)| {
                let joined = |s: &String| *s == survivor || merged.contains(s);
                (joined(a) && *b == other) || (joined(b) && *a == other)
            });
            if kept_apart {
                continue;
            }
            let merge_id = self.ids.internal(now);
            repo::merge_subjects(tx, &merge_id, &other, &survivor, identity_id, None, now).await?;
            merged.push(other);
        }
        Ok((survivor, merged))
    }
}

/// Opens a stored identity (`identities.sealed` of `identity_id`): the
/// identifiers as the partner sent them. For the read side, and only after a
/// release decision discloses some of them; the result must not be logged.
pub async fn unseal_identity(
    vault: &Vault,
    identity_id: &str,
    sealed: &[u8],
) -> Result<IdentityInput, RegistryError> {
    let sealed = Sealed::from_bytes(sealed.to_vec());
    let plain = vault
        .unseal(&identity_context(identity_id), &sealed)
        .await?;
    unseal_input(&plain).ok_or_else(|| RegistryError::CorruptIdentity {
        identity_id: identity_id.to_owned(),
    })
}

/// Associated data binding a sealed identity to its row.
fn identity_context(identity_id: &str) -> Vec<u8> {
    format!("identities:{identity_id}").into_bytes()
}

/// The identity as the partner sent it, for the vault.
fn seal_input(input: &IdentityInput) -> Vec<u8> {
    serde_json::to_vec(input).unwrap_or_default()
}

fn unseal_input(bytes: &[u8]) -> Option<IdentityInput> {
    serde_json::from_slice(bytes).ok()
}

async fn current_key_version(tx: &mut Tx<'_>) -> Result<i64, StoreError> {
    Ok(Store::meta_get(tx, META_KEY_VERSION)
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or(1))
}

fn key_version_u32(version: i64) -> u32 {
    u32::try_from(version).unwrap_or(u32::MAX)
}

/// How a rotation runs.
#[derive(Debug, Clone, Copy)]
pub struct RotationOptions {
    /// Identities re-derived per transaction.
    pub batch_size: i64,
    /// Stop after this many batches (leaving the rotation in progress), so an
    /// operator can rotate a large database in slices.
    pub max_batches: Option<u64>,
}

impl Default for RotationOptions {
    fn default() -> Self {
        Self {
            batch_size: 500,
            max_batches: None,
        }
    }
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
    /// The key version the database is now (or, if incomplete, is going) on.
    pub key_version: i64,
    /// Identities re-derived by this run.
    pub identities: u64,
    /// Whether every identity is now under the new secret.
    pub complete: bool,
    /// The database was already on this secret: nothing to do.
    pub already_done: bool,
}

/// Re-derives every stored fingerprint and token under `new_master`, keeping every
/// subject assignment — so no link is lost — and then makes `new_master` the one
/// the database expects. Work is committed in batches and tracked per identity
/// (`identities.key_version`), so an interrupted rotation resumes where it stopped
/// when run again with the same new secret. The gateway must not serve while a
/// rotation is in progress ([`SubjectRegistry::open`] refuses).
pub async fn rotate_keys(
    store: &Store,
    vault: &Vault,
    current_master: &MasterSecret,
    new_master: &MasterSecret,
    normalize_options: &NormalizeOptions,
    options: RotationOptions,
) -> Result<RotationReport, RegistryError> {
    let new_check = new_master.key_check();
    let mut tx = store.begin().await?;
    let current_check = Store::meta_get(&mut tx, META_MASTER_CHECK).await?;
    let current_version = current_key_version(&mut tx).await?;
    if current_check.as_deref() == Some(new_check.as_str()) {
        return Ok(RotationReport {
            key_version: current_version,
            identities: 0,
            complete: true,
            already_done: true,
        });
    }
    if current_check.is_some_and(|c| c != current_master.key_check()) {
        return Err(RegistryError::WrongCurrentSecret);
    }
    match Store::meta_get(&mut tx, META_ROTATION_CHECK).await? {
        Some(in_progress) if in_progress != new_check => {
            return Err(RegistryError::OtherRotationInProgress);
        }
        Some(_) => {}
        None => Store::meta_set(&mut tx, META_ROTATION_CHECK, &new_check).await?,
    }
    tx.commit().await.map_err(StoreError::from)?;

    let target = current_version + 1;
    let keys = LinkageKeys::derive(new_master, key_version_u32(target));
    let mut identities = 0;
    let mut batches = 0;
    loop {
        if options.max_batches.is_some_and(|max| batches >= max) {
            return Ok(RotationReport {
                key_version: target,
                identities,
                complete: false,
                already_done: false,
            });
        }
        batches += 1;
        let mut tx = store.begin().await?;
        let batch = repo::identities_below_version(&mut tx, target, options.batch_size).await?;
        if batch.is_empty() {
            break;
        }
        for stored in &batch {
            let corrupt = || RegistryError::CorruptIdentity {
                identity_id: stored.id.clone(),
            };
            let sealed = Sealed::from_bytes(stored.sealed.clone());
            let plain = vault.unseal(&identity_context(&stored.id), &sealed).await?;
            let input = unseal_input(&plain).ok_or_else(corrupt)?;
            // Tolerant, as a batch line was registered: a value that did
            // not normalize then was left out of the identity, and is again.
            let identity = crate::normalize::normalize_tolerant(&input, normalize_options).identity;
            let fingerprint = linkage::fingerprint(&identity, &keys);
            repo::update_fingerprint(&mut tx, &stored.id, &fingerprint.to_bytes(), target).await?;
            if fingerprint.is_linkable() {
                repo::insert_tokens(&mut tx, &stored.id, target, &fingerprint.index_keys()).await?;
            }
        }
        identities += batch.len() as u64;
        tx.commit().await.map_err(StoreError::from)?;
    }

    let mut tx = store.begin().await?;
    repo::delete_tokens_below(&mut tx, target).await?;
    Store::meta_set(&mut tx, META_KEY_VERSION, &target.to_string()).await?;
    Store::meta_set(&mut tx, META_MASTER_CHECK, &new_check).await?;
    Store::meta_delete(&mut tx, META_ROTATION_CHECK).await?;
    // Stamped by the system clock: rotation is an operator command and takes none.
    let entry = crate::audit::key_rotation_event(target);
    crate::audit::append(&mut tx, &[entry], &crate::clock::SystemClock).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(RotationReport {
        key_version: target,
        identities,
        complete: true,
        already_done: false,
    })
}
