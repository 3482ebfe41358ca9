//! [`SubjectRegistry::register_many`] against sequential [`SubjectRegistry::register`],
//! on real SQLite files and, when `TEST_DATABASE_URL` names a server, on
//! PostgreSQL (each test creates its own `crosswalk_test_<uuid>` database):
//! the same subjects, and the same partner clusters — which are, for each
//! partner, the connected components of the match rule over the identities it
//! holds (`partner_clusters_are_the_components_of_its_own_matches`). The
//! clusters' own properties (independence from other partners, the hand-over
//! to another CBO, the backfill) are in `cluster_tests.rs`.

use std::collections::{BTreeMap, HashMap};

use chrono::{TimeZone as _, Utc};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use sqlx::Row as _;

use super::*;
use crate::clock::FixedClock;
use crate::linkage::synth;
use crate::normalize::normalize;
use crate::vault::RotationPolicy;

on_both_backends!(
    register_many_equals_sequential_register,
    partner_clusters_are_the_components_of_its_own_matches,
    a_chunk_links_and_merges_within_itself,
    a_merge_moves_subjects_merged_earlier,
    a_rolled_back_chunk_leaves_nothing_behind,
    an_empty_chunk_does_nothing,
);

#[derive(Debug, Clone, Copy)]
pub(super) enum Backend {
    Sqlite,
    Postgres,
}

pub(super) fn postgres_available(test: &str) -> bool {
    if std::env::var("TEST_DATABASE_URL").is_ok() {
        return true;
    }
    assert!(
        std::env::var("CI").is_err(),
        "{test}: CI must run the PostgreSQL tests: set TEST_DATABASE_URL"
    );
    eprintln!("SKIPPED {test} on PostgreSQL: set TEST_DATABASE_URL=postgres://...");
    false
}

/// A fresh, migrated database and a registry on it. Every registry in a test
/// uses the same master secret, so fingerprints (and so links) are comparable.
pub(super) struct Fixture {
    _dir: tempfile::TempDir,
    pub(super) store: Store,
    pub(super) registry: SubjectRegistry,
}

impl Fixture {
    pub(super) async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("subjects.db").display()),
            Backend::Postgres => create_postgres_database().await,
        };
        let store = Store::connect(&url).await.expect("connect");
        store.migrate().await.expect("migrate");
        let vault = Vault::new(
            age::x25519::Identity::generate(),
            store.clone(),
            RotationPolicy::default(),
            crate::randomness::os(),
        );
        let master = MasterSecret::from_bytes([42; 32]);
        let registry = SubjectRegistry::open(&store, &master, vault)
            .await
            .expect("registry");
        Self {
            _dir: dir,
            store,
            registry,
        }
    }

    /// Registers each chunk with `register_many`, one transaction per chunk, the
    /// n-th chunk n minutes after [`clock`].
    pub(super) async fn register_chunks(&self, chunks: &[&[Item]]) -> Vec<Linked> {
        let mut linked = Vec::new();
        for (n, chunk) in chunks.iter().enumerate() {
            let items: Vec<NewSubjectIdentity<'_>> = chunk.iter().map(Item::as_new).collect();
            let mut tx = self.store.begin().await.expect("begin");
            let got = self
                .registry
                .register_many(&mut tx, &items, &clock_at(n))
                .await
                .expect("register_many");
            tx.commit().await.expect("commit");
            assert_eq!(got.len(), chunk.len(), "one Linked per identity");
            linked.extend(got);
        }
        linked
    }

    /// Registers each identity with `register`, one transaction per chunk, at
    /// the same times as [`Fixture::register_chunks`].
    async fn register_one_by_one(&self, chunks: &[&[Item]]) -> Vec<Linked> {
        let mut linked = Vec::new();
        for (n, chunk) in chunks.iter().enumerate() {
            let mut tx = self.store.begin().await.expect("begin");
            for item in *chunk {
                let got = self
                    .registry
                    .register_identity(&mut tx, &item.as_new(), &clock_at(n))
                    .await
                    .expect("register");
                linked.push(got);
            }
            tx.commit().await.expect("commit");
        }
        linked
    }
}

async fn create_postgres_database() -> String {
    let admin_url = std::env::var("TEST_DATABASE_URL").expect("checked by postgres_available");
    crate::store::testing::create_postgres_database(&admin_url).await
}

pub(super) fn clock() -> FixedClock {
    clock_at(0)
}

/// `minutes` after [`clock`]: chunks registered at different times make the
/// oldest subject of a merge well defined across chunks.
pub(super) fn clock_at(minutes: usize) -> FixedClock {
    let start = Utc
        .with_ymd_and_hms(2026, 11, 23, 12, 0, 0)
        .single()
        .expect("time");
    FixedClock(start + chrono::Duration::minutes(i64::try_from(minutes).expect("small")))
}

/// One identity to register, owned.
#[derive(Clone)]
pub(super) struct Item {
    pub(super) partner: String,
    /// The CBO its referral is assigned to, which holds it too.
    pub(super) cbo: Option<String>,
    pub(super) input: IdentityInput,
    pub(super) identity: Identity,
}

impl Item {
    pub(super) fn new(partner: &str, input: IdentityInput) -> Option<Self> {
        let options = NormalizeOptions::new(phonenumber::country::Id::US, clock().0.date_naive());
        let identity = normalize(&input, &options).ok()?;
        Some(Self {
            partner: partner.to_owned(),
            cbo: None,
            input,
            identity,
        })
    }

    /// The same, assigned to `cbo`.
    pub(super) fn assigned(mut self, cbo: &str) -> Self {
        self.cbo = Some(cbo.to_owned());
        self
    }

    pub(super) fn as_new(&self) -> NewSubjectIdentity<'_> {
        NewSubjectIdentity {
            source_partner: &self.partner,
            assigned_cbo: self.cbo.as_deref(),
            input: &self.input,
            identity: &self.identity,
        }
    }

    /// Whether `partner` holds it: it submitted it, or its referral is
    /// assigned to it.
    pub(super) fn held_by(&self, partner: &str) -> bool {
        self.partner == partner || self.cbo.as_deref() == Some(partner)
    }
}

/// The partners that hold identities in [`stream`]s.
pub(super) const HOLDERS: [&str; 4] = ["pd", "county-health", "cbo-north", "cbo-south"];

/// A stream of identities as partners would send them: synthetic people (with
/// their households, twins and namesakes), corrupted duplicates of some — right
/// after the original (so in the same chunk) or anywhere later — pairs of
/// records of one person that do not link on their own followed by a record
/// that bridges them, and identities too thin to link. Police records are
/// assigned to one of two CBOs; `cbo-north` submits some records itself, to
/// hold identities both ways.
pub(super) fn stream(seed: u64, people: usize) -> Vec<Item> {
    let mut rng = StdRng::seed_from_u64(seed);
    let population = synth::people(seed, people * 2);
    let (people_list, strangers) = population.split_at(people);
    let partners = ["pd", "county-health", "cbo-north"];
    // Positions in hundredths of a person, so that a record can go "right after".
    let span = people as u64 * 100;
    let mut keyed: Vec<(u64, IdentityInput)> = Vec::new();
    for (i, (person, stranger)) in people_list.iter().zip(strangers).enumerate() {
        let at = i as u64 * 100;
        keyed.push((at, person.clone()));
        if rng.random_bool(0.3) {
            let later = if rng.random_bool(0.5) {
                at + rng.random_range(1..500)
            } else {
                at + rng.random_range(1..span)
            };
            let duplicate = synth::corrupt(&mut rng, person, &synth::CorruptionConfig::default());
            keyed.push((later, duplicate));
        }
        if rng.random_bool(0.05) {
            let (first, second, bridge) = bridging_records(person, stranger);
            let second_at = at + rng.random_range(1..span / 4);
            keyed.push((at + 10, first));
            keyed.push((second_at, second));
            keyed.push((second_at + rng.random_range(50..3000), bridge));
        }
        if rng.random_bool(0.05) {
            keyed.push((
                at + 20,
                IdentityInput {
                    given_name: person.given_name.clone(),
                    zip: person.zip.clone(),
                    ..IdentityInput::default()
                },
            ));
        }
    }
    keyed.sort_by_key(|(at, _)| *at);
    keyed
        .into_iter()
        .enumerate()
        .filter_map(|(n, (_, input))| {
            let item = Item::new(partners[n % partners.len()], input)?;
            Some(match (item.partner.as_str(), n % 7) {
                ("pd", 0..=3) => item.assigned("cbo-south"),
                // Also a CBO holding what it submitted itself: never twice.
                ("pd", _) | ("cbo-north", 0) => item.assigned("cbo-north"),
                _ => item,
            })
        })
        .collect()
}

/// Two records of `person` that share only the given name and the date of
/// birth — one with the email and the old address, one under another surname
/// at `elsewhere`'s address with its phone — and a record with the email and
/// that phone, which matches both.
pub(super) fn bridging_records(
    person: &IdentityInput,
    elsewhere: &IdentityInput,
) -> (IdentityInput, IdentityInput, IdentityInput) {
    let email = person.email.clone().unwrap_or_else(|| {
        format!(
            "{}.bridge@example.org",
            person.given_name.as_deref().unwrap_or("someone")
        )
    });
    let phone = elsewhere
        .phone
        .clone()
        .unwrap_or_else(|| "916-482-7731".to_owned());
    let first = IdentityInput {
        email: Some(email.clone()),
        phone: None,
        ..person.clone()
    };
    let second = IdentityInput {
        surname: elsewhere.surname.clone(),
        street: elsewhere.street.clone(),
        city: elsewhere.city.clone(),
        zip: elsewhere.zip.clone(),
        phone: Some(phone.clone()),
        email: None,
        ..person.clone()
    };
    let bridge = IdentityInput {
        email: Some(email),
        phone: Some(phone),
        street: None,
        ..person.clone()
    };
    (first, second, bridge)
}

/// What a run did, in terms that do not depend on random ids. A subject is
/// named by the identity that created it; subjects merged together form a
/// class, named by its first creator. (Which subject of a class survives a
/// merge is not compared across runs: subjects created in one chunk share a
/// creation time, and `register` breaks that tie by their random ids. Each
/// run is checked on its own to have picked the oldest, ties by id.)
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    /// Per identity: the classes it linked to (several: it merged them), or
    /// empty if it was given a new subject.
    joined: Vec<Vec<usize>>,
    linkable: Vec<bool>,
    /// Per identity: its class after the whole stream — the partition.
    final_class: Vec<usize>,
    /// Per holder: the identities it holds, grouped by its cluster of them.
    clusters: BTreeMap<&'static str, Vec<Vec<usize>>>,
    /// The pairs queued for review, by position (earlier first).
    reviews: std::collections::BTreeSet<(usize, usize)>,
}

/// Reads a run's result and its database into an [`Outcome`], asserting on the
/// way that the database agrees with what the `Linked` values said.
async fn outcome(store: &Store, linked: &[Linked]) -> Outcome {
    let classes = Classes::replay(linked);
    check_database(store, linked, &classes).await;
    let holdings = holdings_by_identity(store).await;
    let position: HashMap<&str, usize> = linked
        .iter()
        .enumerate()
        .map(|(n, l)| (l.identity_id.as_str(), n))
        .collect();
    let mut tx = store.begin_read().await.expect("begin");
    let queued = repo::reviews::open_reviews(&mut tx, None, i64::MAX)
        .await
        .expect("reviews");
    tx.commit().await.expect("end read");
    let reviews = queued
        .iter()
        .map(|r| {
            let (a, b) = (
                position[r.identity_a.as_str()],
                position[r.identity_b.as_str()],
            );
            (a.min(b), a.max(b))
        })
        .collect();
    Outcome {
        reviews,
        final_class: (0..linked.len()).map(|n| classes.find(n)).collect(),
        joined: classes.joined,
        linkable: linked.iter().map(|l| l.linkable).collect(),
        clusters: HOLDERS
            .iter()
            .map(|&partner| (partner, partition(&holdings, linked, partner)))
            .collect(),
    }
}

/// Every identity's holding, by identity id.
pub(super) async fn holdings_by_identity(store: &Store) -> HashMap<String, repo::Holding> {
    let mut tx = store.begin_read().await.expect("begin");
    let holdings = repo::clusters::holdings(&mut tx).await.expect("holdings");
    tx.commit().await.expect("end read");
    holdings
        .into_iter()
        .map(|h| (h.identity_id.clone(), h))
        .collect()
}

/// The identities of `linked` that `partner` holds, by position, grouped by
/// its cluster of them: classes in order of their first identity.
pub(super) fn partition(
    holdings: &HashMap<String, repo::Holding>,
    linked: &[Linked],
    partner: &str,
) -> Vec<Vec<usize>> {
    let mut by_cluster: HashMap<&str, Vec<usize>> = HashMap::new();
    for (n, l) in linked.iter().enumerate() {
        let holding = &holdings[&l.identity_id];
        assert!(holding.cluster_id.is_some(), "identity {n} has its cluster");
        if let Some(cluster) = holding.cluster_of(partner) {
            by_cluster.entry(cluster).or_default().push(n);
        }
    }
    let mut classes: Vec<Vec<usize>> = by_cluster.into_values().collect();
    classes.sort();
    classes
}

/// What the rule says `partner`'s clusters of `items` are: the connected
/// components of the match rule, compared pair by pair, over the linkable
/// identities it holds (each other one alone).
pub(super) fn components(items: &[Item], partner: &str) -> Vec<Vec<usize>> {
    let keys = crate::linkage::LinkageKeys::derive(&MasterSecret::from_bytes([42; 32]), 1);
    let held: Vec<(usize, crate::linkage::Fingerprint)> = items
        .iter()
        .enumerate()
        .filter(|(_, item)| item.held_by(partner))
        .map(|(n, item)| (n, crate::linkage::fingerprint(&item.identity, &keys)))
        .collect();
    let mut parent: Vec<usize> = (0..held.len()).collect();
    let find = |parent: &mut Vec<usize>, mut i: usize| {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    };
    for i in 0..held.len() {
        for j in 0..i {
            let (a, b) = (&held[i].1, &held[j].1);
            if a.is_linkable() && b.is_linkable() && crate::linkage::compare(a, b).is_match() {
                let (ri, rj) = (find(&mut parent, i), find(&mut parent, j));
                parent[ri] = rj;
            }
        }
    }
    let mut by_root: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, (n, _)) in held.iter().enumerate() {
        let root = find(&mut parent, i);
        by_root.entry(root).or_default().push(*n);
    }
    let mut classes: Vec<Vec<usize>> = by_root.into_values().collect();
    classes.sort();
    classes
}

/// Each partner's clusters, as registration left them in the database, are
/// exactly the components of the match rule over the identities it holds —
/// and on this stream that differs from the subjects: some of a partner's
/// identities sit on one subject only because another partner's record
/// linked them, and it does not see them grouped.
async fn partner_clusters_are_the_components_of_its_own_matches(backend: Backend) {
    let items = stream(4, 200);
    let chunks: Vec<&[Item]> = items.chunks(64).collect();
    let f = Fixture::new(backend).await;
    let linked = f.register_chunks(&chunks).await;
    let holdings = holdings_by_identity(&f.store).await;
    let subject_of = subjects_now(&f.store, &linked).await;
    let mut bridged_by_others = 0;
    for partner in HOLDERS {
        let clusters = partition(&holdings, &linked, partner);
        assert_eq!(
            clusters,
            components(&items, partner),
            "{partner}'s clusters are the components of its own matches"
        );
        // Two of this partner's clusters on one subject: linked only through
        // someone else's record.
        let mut subjects: Vec<&str> = clusters
            .iter()
            .map(|class| subject_of[class[0]].as_str())
            .collect();
        let count = subjects.len();
        subjects.sort_unstable();
        subjects.dedup();
        bridged_by_others += count - subjects.len();
    }
    assert!(
        bridged_by_others > 0,
        "the stream has identities linked only through another partner's record"
    );
    for (n, item) in items.iter().enumerate() {
        let holding = &holdings[&linked[n].identity_id];
        assert_eq!(holding.source_partner, item.partner, "identity {n}");
        assert_eq!(
            holding.assigned_cbo.as_deref(),
            item.as_new().cbo(),
            "identity {n}"
        );
    }
}

/// Each identity's subject now, by position.
async fn subjects_now(store: &Store, linked: &[Linked]) -> Vec<String> {
    let mut tx = store.begin_read().await.expect("begin");
    let stored: HashMap<String, String> = repo::identity_subjects(&mut tx)
        .await
        .expect("identities")
        .into_iter()
        .collect();
    tx.commit().await.expect("end read");
    linked
        .iter()
        .map(|l| stored[&l.identity_id].clone())
        .collect()
}

/// The classes of subjects merged together, replayed from the `Linked` values
/// in order (a union-find over the identities that created subjects).
struct Classes<'a> {
    /// Each subject id and the identity whose registration created it.
    creator: HashMap<&'a str, usize>,
    parent: Vec<usize>,
    /// Per identity, as in [`Outcome::joined`].
    joined: Vec<Vec<usize>>,
}

impl<'a> Classes<'a> {
    fn replay(linked: &'a [Linked]) -> Self {
        let mut classes = Self {
            creator: HashMap::new(),
            parent: (0..linked.len()).collect(),
            joined: Vec::with_capacity(linked.len()),
        };
        for (n, l) in linked.iter().enumerate() {
            let Some(&made_by) = classes.creator.get(l.subject_id.as_str()) else {
                assert!(
                    l.merged.is_empty(),
                    "identity {n}: a new subject merges nothing"
                );
                classes.creator.insert(&l.subject_id, n);
                classes.joined.push(Vec::new());
                continue;
            };
            let mut joined: Vec<usize> = std::iter::once(&l.subject_id)
                .chain(&l.merged)
                .map(|s| classes.of_subject(s))
                .collect();
            joined.sort_unstable();
            joined.dedup();
            assert_eq!(
                joined.len(),
                1 + l.merged.len(),
                "identity {n}: merged distinct subjects"
            );
            for &c in &joined[1..] {
                classes.parent[c] = joined[0];
            }
            classes.parent[n] = classes.find(made_by);
            classes.joined.push(joined);
        }
        classes
    }

    /// The class of identity `n`, named by its first creator.
    fn find(&self, mut n: usize) -> usize {
        while self.parent[n] != n {
            n = self.parent[n];
        }
        n
    }

    fn of_subject(&self, subject: &str) -> usize {
        self.find(self.creator[subject])
    }
}

/// The database agrees with the `Linked` values: the merges recorded, the
/// survivor of each (the oldest, ties by id), every identity on its class's
/// surviving subject and every other subject of a class pointing there.
async fn check_database(store: &Store, linked: &[Linked], classes: &Classes<'_>) {
    let mut tx = store.begin_read().await.expect("begin");
    let subjects: HashMap<String, (i64, Option<String>)> =
        sqlx::query("SELECT id, created_at, merged_into FROM subjects")
            .fetch_all(&mut *tx)
            .await
            .expect("subjects")
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect();
    let mut recorded: Vec<(String, String, String)> =
        sqlx::query("SELECT from_subject, into_subject, identity_id FROM subject_merges")
            .fetch_all(&mut *tx)
            .await
            .expect("merges")
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
    let stored = repo::identity_subjects(&mut tx).await.expect("identities");
    tx.commit().await.expect("end read");

    let mut implied: Vec<(String, String, String)> = Vec::new();
    for (n, l) in linked.iter().enumerate() {
        let age = |s: &String| (subjects[s].0, s.clone());
        for absorbed in &l.merged {
            assert!(
                age(&l.subject_id) < age(absorbed),
                "identity {n}: the oldest survives"
            );
            implied.push((
                absorbed.clone(),
                l.subject_id.clone(),
                l.identity_id.clone(),
            ));
        }
    }
    recorded.sort();
    implied.sort();
    assert_eq!(recorded, implied, "subject_merges records what Linked said");

    let identity_at: HashMap<&str, usize> = linked
        .iter()
        .enumerate()
        .map(|(n, l)| (l.identity_id.as_str(), n))
        .collect();
    let mut survivor: HashMap<usize, &String> = HashMap::new();
    assert_eq!(stored.len(), linked.len(), "one row per identity");
    for (identity, subject) in &stored {
        let n = identity_at[identity.as_str()];
        let class = classes.find(n);
        assert_eq!(
            classes.of_subject(subject),
            class,
            "identity {n} in its class"
        );
        let first = *survivor.entry(class).or_insert(subject);
        assert_eq!(first, subject, "identity {n}: one subject per class");
    }
    for (subject, (_, merged_into)) in &subjects {
        let root = survivor[&classes.of_subject(subject)];
        let expected = (root != subject).then_some(root);
        assert_eq!(
            merged_into.as_ref(),
            expected,
            "merged_into names the survivor"
        );
    }
}

/// For random streams cut into chunks of several sizes, `register_many` gives
/// what `register` one identity at a time gives: every identity links to the
/// same subjects (merging the same ones), is linkable or not alike, and the
/// final partition of identities into subjects is the same.
async fn register_many_equals_sequential_register(backend: Backend) {
    for (seed, people, chunk_size) in [(1, 300, 100), (2, 250, 37), (3, 150, 1000)] {
        let items = stream(seed, people);
        let chunks: Vec<&[Item]> = items.chunks(chunk_size).collect();
        let expected = same_as_sequential(backend, &chunks).await;

        // The stream exercises what it is meant to: links inside one chunk and
        // across chunks, merges, and unlinkable identities.
        let chunk_of = |n: usize| n / chunk_size;
        let (mut within, mut across) = (0, 0);
        for (n, classes) in expected.joined.iter().enumerate() {
            for &c in classes {
                if chunk_of(c) == chunk_of(n) {
                    within += 1;
                } else {
                    across += 1;
                }
            }
        }
        assert!(within > 5, "seed {seed}: {within} links inside a chunk");
        assert!(
            chunks.len() == 1 || across > 5,
            "seed {seed}: {across} links across chunks"
        );
        assert!(
            expected.joined.iter().any(|j| j.len() > 1),
            "seed {seed}: no merge"
        );
        assert!(
            expected.linkable.contains(&false),
            "seed {seed}: all linkable"
        );
        assert!(
            !expected.reviews.is_empty(),
            "seed {seed}: no pair queued for review"
        );
    }
}

/// Registers `chunks` one identity at a time on one fresh database and chunk by
/// chunk on another; asserts the two outcomes are the same, and returns it.
async fn same_as_sequential(backend: Backend, chunks: &[&[Item]]) -> Outcome {
    let sequential = Fixture::new(backend).await;
    let one_by_one = sequential.register_one_by_one(chunks).await;
    let expected = outcome(&sequential.store, &one_by_one).await;

    let batched = Fixture::new(backend).await;
    let many = batched.register_chunks(chunks).await;
    let got = outcome(&batched.store, &many).await;

    assert_eq!(got.joined.len(), expected.joined.len());
    for (n, (g, e)) in got.joined.iter().zip(&expected.joined).enumerate() {
        assert_eq!(g, e, "identity {n} linked to other subjects");
    }
    assert_eq!(got, expected);
    expected
}

/// Subject C is merged into B, then B into the older A in a later chunk: C's
/// `merged_into` must follow to A (the stored-subject path of a merge).
async fn a_merge_moves_subjects_merged_earlier(backend: Backend) {
    let people = synth::people(5, 200);
    let person = people
        .iter()
        .find(|p| p.email.is_some())
        .expect("someone with an email");
    let mut with_phone = people
        .iter()
        .filter(|p| p.phone.is_some() && p.surname != person.surname);
    let (elsewhere, further) = (
        with_phone.next().expect("a stranger"),
        with_phone.next().expect("another"),
    );
    // A: the person; B: the person under another surname and phone; the bridge
    // of the two comes last.
    let (first, second, bridge) = bridging_records(person, elsewhere);
    // C: B's person under a third surname and phone; B's bridge to C.
    let (_, third, bridge_to_third) = bridging_records(&second, further);
    let chunks: Vec<Vec<Item>> = [
        vec![first],
        vec![second],
        vec![third, bridge_to_third],
        vec![bridge],
    ]
    .into_iter()
    .map(|c| {
        c.into_iter()
            .map(|i| Item::new("pd", i).expect("valid"))
            .collect()
    })
    .collect();
    let chunks: Vec<&[Item]> = chunks.iter().map(Vec::as_slice).collect();

    let outcome = same_as_sequential(backend, &chunks).await;
    assert_eq!(
        outcome.joined,
        vec![vec![], vec![], vec![], vec![1, 2], vec![0, 1]],
        "C merged into B, then B into A"
    );
    assert_eq!(outcome.final_class, vec![0; 5]);
}

/// Spelled-differently records of one person in one chunk share a subject; a
/// later record of the chunk that bridges two subjects merges them, into the
/// older — here, a stored one.
async fn a_chunk_links_and_merges_within_itself(backend: Backend) {
    let f = Fixture::new(backend).await;
    let people = synth::people(7, 2);
    let (first, second, bridge) = bridging_records(&people[0], &people[1]);
    let stored = f
        .register_chunks(&[&[Item::new("pd", first).expect("valid")]])
        .await;

    let retyped = synth::corrupt_one_field(&people[1], 3);
    let chunk = [
        Item::new("county-health", second).expect("valid"),
        Item::new("pd", people[1].clone()).expect("valid"),
        Item::new("cbo-north", retyped).expect("valid"),
        Item::new("cbo-south", bridge).expect("valid"),
    ];
    let mut tx = f.store.begin().await.expect("begin");
    let items: Vec<NewSubjectIdentity<'_>> = chunk.iter().map(Item::as_new).collect();
    let linked = f
        .registry
        .register_many(&mut tx, &items, &clock_at(1))
        .await
        .expect("register_many");
    tx.commit().await.expect("commit");

    assert!(linked.iter().all(|l| l.linkable));
    assert_ne!(
        linked[0].subject_id, stored[0].subject_id,
        "not linked on its own"
    );
    assert_eq!(
        linked[1].subject_id, linked[2].subject_id,
        "a retyped record"
    );
    assert_ne!(linked[1].subject_id, linked[0].subject_id);
    assert_eq!(
        linked[3].subject_id, stored[0].subject_id,
        "merged into the older subject"
    );
    assert_eq!(linked[3].merged, vec![linked[0].subject_id.clone()]);

    let mut tx = f.store.begin_read().await.expect("begin");
    let subjects: HashMap<String, String> = repo::identity_subjects(&mut tx)
        .await
        .expect("identities")
        .into_iter()
        .collect();
    for l in [&stored[0], &linked[0], &linked[3]] {
        assert_eq!(subjects[&l.identity_id], stored[0].subject_id);
    }
    let merged_into: Option<String> = sqlx::query("SELECT merged_into FROM subjects WHERE id = $1")
        .bind(&linked[0].subject_id)
        .fetch_one(&mut *tx)
        .await
        .expect("the merged subject")
        .get(0);
    assert_eq!(merged_into.as_deref(), Some(stored[0].subject_id.as_str()));
    tx.commit().await.expect("end read");
}

/// Everything the registry's tables hold, to compare before and after.
async fn snapshot(store: &Store) -> Vec<String> {
    let mut rows = Vec::new();
    for (table, sql) in [
        (
            "subjects",
            "SELECT id, merged_into FROM subjects ORDER BY id",
        ),
        (
            "identities",
            "SELECT id, subject_id FROM identities ORDER BY id",
        ),
        (
            "subject_merges",
            "SELECT from_subject, into_subject FROM subject_merges ORDER BY id",
        ),
        ("vault_keys", "SELECT id, NULL FROM vault_keys ORDER BY id"),
    ] {
        for row in sqlx::query(sql)
            .fetch_all(store.pool())
            .await
            .expect("snapshot")
        {
            let (a, b): (String, Option<String>) = (row.get(0), row.get(1));
            rows.push(format!("{table} {a} {b:?}"));
        }
    }
    let tokens: i64 = sqlx::query("SELECT COUNT(*) FROM linkage_tokens")
        .fetch_one(store.pool())
        .await
        .expect("tokens")
        .get(0);
    rows.push(format!("linkage_tokens {tokens}"));
    rows
}

/// A chunk that links to stored identities, merges stored subjects and creates
/// a data key, then rolls back: the database is as it was.
async fn a_rolled_back_chunk_leaves_nothing_behind(backend: Backend) {
    let f = Fixture::new(backend).await;
    let people = synth::people(11, 40);
    let (first, second, bridge) = bridging_records(&people[0], &people[1]);
    let stored: Vec<Item> = std::iter::once(first)
        .chain(std::iter::once(second))
        .chain(people[2..20].iter().cloned())
        .filter_map(|input| Item::new("pd", input))
        .collect();
    f.register_chunks(&[&stored]).await;
    let before = snapshot(&f.store).await;

    let chunk: Vec<Item> = std::iter::once(bridge)
        .chain(people[2..40].iter().map(|p| synth::corrupt_one_field(p, 5)))
        .filter_map(|input| Item::new("cbo-north", input))
        .collect();
    let items: Vec<NewSubjectIdentity<'_>> = chunk.iter().map(Item::as_new).collect();
    // A vault that has not sealed yet, so the chunk writes a new data key too.
    let registry = SubjectRegistry::open(
        &f.store,
        &MasterSecret::from_bytes([42; 32]),
        Vault::new(
            age::x25519::Identity::generate(),
            f.store.clone(),
            RotationPolicy::default(),
            crate::randomness::os(),
        ),
    )
    .await
    .expect("registry");
    let mut tx = f.store.begin().await.expect("begin");
    let linked = registry
        .register_many(&mut tx, &items, &clock_at(1))
        .await
        .expect("register_many");
    assert_eq!(
        linked[0].merged.len(),
        1,
        "the bridge merged stored subjects"
    );
    tx.rollback().await.expect("rollback");

    assert_eq!(snapshot(&f.store).await, before);
}

async fn an_empty_chunk_does_nothing(backend: Backend) {
    let f = Fixture::new(backend).await;
    let before = snapshot(&f.store).await;
    let mut tx = f.store.begin().await.expect("begin");
    let linked = f
        .registry
        .register_many(&mut tx, &[], &clock())
        .await
        .expect("register_many");
    tx.commit().await.expect("commit");
    assert!(linked.is_empty());
    assert_eq!(snapshot(&f.store).await, before);
}

/// The registry stores and looks up only the indexed token kinds
/// (`TokenKind::is_indexed`); on synthetic people, their corrupted copies and
/// their households (twins, namesakes), every pair the rule matches agrees on
/// such a kind.
#[test]
fn every_match_agrees_on_a_kind_that_is_looked_up() {
    let keys = crate::linkage::LinkageKeys::derive(&MasterSecret::from_bytes([42; 32]), 1);
    let options = NormalizeOptions::new(phonenumber::country::Id::US, clock().0.date_naive());
    let fingerprint = |input: &IdentityInput| {
        normalize(input, &options)
            .ok()
            .map(|identity| crate::linkage::fingerprint(&identity, &keys))
    };
    let mut rng = StdRng::seed_from_u64(9);
    let people: Vec<_> = synth::people(9, 3000)
        .iter()
        .filter_map(fingerprint)
        .collect();
    let mut matches = 0;
    for (i, person) in synth::people(9, 3000).iter().enumerate() {
        let Some(original) = fingerprint(person) else {
            continue;
        };
        let copies: Vec<_> = (0..3)
            .filter_map(|_| {
                fingerprint(&synth::corrupt(
                    &mut rng,
                    person,
                    &synth::CorruptionConfig::default(),
                ))
            })
            .collect();
        // The people generated just before share households with some.
        let others = people[i.saturating_sub(50)..i].iter();
        for other in copies.iter().chain(others) {
            let score = crate::linkage::compare(&original, other);
            if score.is_match() {
                matches += 1;
                assert!(
                    score
                        .agreeing_kinds()
                        .any(crate::linkage::TokenKind::is_indexed),
                    "person {i}: a match on kinds that are not looked up"
                );
            }
        }
    }
    assert!(matches > 5000, "{matches} matches checked");
}
