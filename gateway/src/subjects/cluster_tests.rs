//! Partner clusters on real databases: a partner's grouping of its own records
//! does not depend on anybody else's submissions (a property over random
//! submissions by three partners), a referral moving to another CBO joins that
//! CBO's own clusters, and rows from before migration 0017 get, from the
//! backfill, the clusters registration would have given them.

use std::collections::HashMap;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use super::tests::{
    Backend, Fixture, HOLDERS, Item, clock_at, components, holdings_by_identity, partition,
    postgres_available, stream,
};
use super::*;
use crate::linkage::synth;

on_both_backends!(
    a_referral_handed_to_another_cbo_joins_only_that_cbos_clusters,
    the_backfill_gives_old_rows_the_clusters_registration_would_have,
);

/// The three partners of the property: police submits referrals (each
/// assigned to one of two CBOs), health submits cases, and `cbo-north` holds
/// the referrals assigned to it.
const PARTNERS: [&str; 3] = ["pd", "county-health", "cbo-north"];

/// A random history: synthetic people, some sent again with typos, some as two
/// records that do not link on their own plus a third that bridges them, each
/// record sent by police (to `cbo-north` or `cbo-south`) or health at random.
fn submissions(seed: u64, people: usize) -> Vec<Item> {
    let mut rng = StdRng::seed_from_u64(seed);
    let population = synth::people(seed, people * 2);
    let (persons, strangers) = population.split_at(people);
    let mut inputs = Vec::new();
    for (person, stranger) in persons.iter().zip(strangers) {
        inputs.push(person.clone());
        if rng.random_bool(0.4) {
            let config = synth::CorruptionConfig::default();
            inputs.push(synth::corrupt(&mut rng, person, &config));
        }
        if rng.random_bool(0.3) {
            let (first, second, bridge) = super::tests::bridging_records(person, stranger);
            inputs.extend([first, second, bridge]);
        }
    }
    // Interleave: records of one person arrive in any order among the others.
    for i in (1..inputs.len()).rev() {
        inputs.swap(i, rng.random_range(0..=i));
    }
    inputs
        .into_iter()
        .filter_map(|input| {
            let item = if rng.random_bool(0.6) {
                let cbo = if rng.random_bool(0.5) {
                    "cbo-north"
                } else {
                    "cbo-south"
                };
                Item::new("pd", input)?.assigned(cbo)
            } else {
                Item::new("county-health", input)?
            };
            Some(item)
        })
        .collect()
}

/// Registers `items` on a fresh SQLite database in chunks of the given sizes
/// (cycled), and returns each of `partners`' grouping of the records it
/// holds, by their position in `items`.
async fn groupings(
    items: &[Item],
    chunk_sizes: &[usize],
    partners: &[&str],
) -> Vec<Vec<Vec<usize>>> {
    let f = Fixture::new(Backend::Sqlite).await;
    let mut chunks: Vec<&[Item]> = Vec::new();
    let mut rest = items;
    for &size in chunk_sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(size.clamp(1, rest.len()));
        chunks.push(chunk);
        rest = tail;
    }
    let linked = f.register_chunks(&chunks).await;
    let holdings = holdings_by_identity(&f.store).await;
    partners
        .iter()
        .map(|partner| partition(&holdings, &linked, partner))
        .collect()
}

proptest! {
    // Each case registers four small histories on SQLite files: ~0.5 s of
    // CPU per case in a debug build, mostly migrating the four databases.
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]

    /// Random submissions by three partners; each partner's pseudonym
    /// partition of its own records is identical with and without the other
    /// partners' submissions (chunked differently, too), and is the
    /// components of its own matches.
    #[test]
    fn a_partners_grouping_does_not_depend_on_other_partners_submissions(
        seed in 0_u64..1_000_000,
        people in 6_usize..14,
        chunk_sizes in proptest::collection::vec(1_usize..9, 1..4),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let items = submissions(seed, people);
        let everyone = runtime.block_on(groupings(&items, &chunk_sizes, &PARTNERS));
        for (partner, everyone) in PARTNERS.iter().zip(everyone) {
            // Only the partner's own records, in the same order.
            let own: Vec<usize> = (0..items.len()).filter(|&n| items[n].held_by(partner)).collect();
            let own_items: Vec<Item> = own.iter().map(|&n| items[n].clone()).collect();
            let mut alone: Vec<Vec<usize>> = runtime
                .block_on(groupings(&own_items, &[3, 1, 5], &[partner]))
                .remove(0)
                .into_iter()
                .map(|class| class.into_iter().map(|i| own[i]).collect())
                .collect();
            alone.sort();
            prop_assert_eq!(&everyone, &alone, "{}: with and without the others", partner);
            prop_assert_eq!(&everyone, &components(&items, partner), "{}: its own matches", partner);
        }
    }
}

/// The same person referred three times by police: A {name, dob} to
/// `cbo-north`, B {name, email} and C {name, dob, email} to `cbo-south`.
/// Police links all three (C bridges its own A and B); `cbo-south` holds B
/// and C together; `cbo-north` only A. When C moves to `cbo-north` it joins A
/// there (they match) and `cbo-south` keeps B alone; when B follows, it joins
/// them through C, now `cbo-north`'s own.
async fn a_referral_handed_to_another_cbo_joins_only_that_cbos_clusters(backend: Backend) {
    let f = Fixture::new(backend).await;
    let person = synth::people(21, 1)[0].clone();
    let (a, b, c) = three_records(&person);
    let items = [
        Item::new("pd", a).expect("A").assigned("cbo-north"),
        Item::new("pd", b).expect("B").assigned("cbo-south"),
        Item::new("pd", c).expect("C").assigned("cbo-south"),
    ];
    let chunks: Vec<&[Item]> = items.chunks(1).collect();
    let linked = f.register_chunks(&chunks).await;
    let groups =
        |holdings: &HashMap<String, repo::Holding>, partner| partition(holdings, &linked, partner);

    let before = holdings_by_identity(&f.store).await;
    assert_eq!(
        groups(&before, "pd"),
        vec![vec![0, 1, 2]],
        "C bridges pd's own"
    );
    assert_eq!(groups(&before, "cbo-south"), vec![vec![1, 2]]);
    assert_eq!(groups(&before, "cbo-north"), vec![vec![0]]);

    hand(&f, &linked[2].identity_id, "cbo-north", 3).await;
    let moved = holdings_by_identity(&f.store).await;
    assert_eq!(groups(&moved, "cbo-north"), vec![vec![0, 2]], "C joins A");
    assert_eq!(groups(&moved, "cbo-south"), vec![vec![1]], "B stays alone");
    assert_eq!(
        groups(&moved, "pd"),
        vec![vec![0, 1, 2]],
        "police unchanged"
    );
    assert_eq!(
        moved[&linked[0].identity_id].cbo_cluster_id, before[&linked[0].identity_id].cbo_cluster_id,
        "A keeps its cluster (the older)"
    );

    hand(&f, &linked[1].identity_id, "cbo-north", 4).await;
    let all_north = holdings_by_identity(&f.store).await;
    assert_eq!(groups(&all_north, "cbo-north"), vec![vec![0, 1, 2]]);
    assert_eq!(groups(&all_north, "cbo-south"), Vec::<Vec<usize>>::new());
}

/// A {name, dob}, B {name, email} and C {name, dob, email} of one person (the
/// issue's finding): A and B share only the name, C matches both.
fn three_records(person: &IdentityInput) -> (IdentityInput, IdentityInput, IdentityInput) {
    let email = Some(format!(
        "{}.three@example.org",
        person.given_name.as_deref().unwrap_or("someone")
    ));
    let name = IdentityInput {
        given_name: person.given_name.clone(),
        surname: person.surname.clone(),
        ..IdentityInput::default()
    };
    let a = IdentityInput {
        dob: person.dob.clone(),
        ..name.clone()
    };
    let b = IdentityInput {
        email: email.clone(),
        ..name.clone()
    };
    let c = IdentityInput {
        dob: person.dob.clone(),
        email,
        ..name
    };
    (a, b, c)
}

async fn hand(f: &Fixture, identity_id: &str, cbo: &str, minutes: usize) {
    let mut tx = f.store.begin().await.expect("begin");
    f.registry
        .hand_to_cbo(&mut tx, identity_id, cbo, &clock_at(minutes))
        .await
        .expect("hand over");
    tx.commit().await.expect("commit");
}

/// A database from before migration 0017 — the same rows, registered here
/// and then stripped of what 0017 adds — is migrated (which finds each
/// referral's CBO) and backfilled, in several batches: every holder gets the
/// very grouping registration gave it. The backfill is recorded in the audit
/// log once, and a second run has nothing to do.
async fn the_backfill_gives_old_rows_the_clusters_registration_would_have(backend: Backend) {
    let items = stream(6, 120);
    let chunks: Vec<&[Item]> = items.chunks(50).collect();
    let f = Fixture::new(backend).await;
    let linked = f.register_chunks(&chunks).await;
    let registered = holdings_by_identity(&f.store).await;
    // Police records are referrals, each with its CBO.
    for (n, (item, link)) in items.iter().zip(&linked).enumerate() {
        if item.partner == "pd" {
            insert_referral(&f.store, n, link, item.cbo.as_deref().expect("assigned")).await;
        }
    }

    for statement in [
        "DROP INDEX identities_unclustered",
        "ALTER TABLE identities DROP COLUMN cluster_id",
        "ALTER TABLE identities DROP COLUMN assigned_cbo",
        "ALTER TABLE identities DROP COLUMN cbo_cluster_id",
        "DELETE FROM _sqlx_migrations WHERE version = 17",
    ] {
        sqlx::query(statement)
            .execute(f.store.pool())
            .await
            .expect("back to before 0017");
    }
    f.store.migrate().await.expect("migration 0017");
    let migrated = holdings_by_identity_unchecked(&f.store).await;
    for (item, link) in items.iter().zip(&linked) {
        let holding = &migrated[&link.identity_id];
        assert_eq!(holding.cluster_id, None, "not computed by the migration");
        if item.partner == "pd" {
            assert_eq!(holding.assigned_cbo, item.cbo, "the referral's CBO");
        }
    }

    let report = backfill::backfill_in_batches(&f.store, &f.registry, &clock_at(9), 37)
        .await
        .expect("backfill");
    assert_eq!(report.identities, items.len() as u64);
    let backfilled = holdings_by_identity(&f.store).await;
    for partner in HOLDERS {
        let expected = partition(&registered, &linked, partner);
        assert!(expected.iter().any(|class| class.len() > 1), "{partner}");
        assert_eq!(
            partition(&backfilled, &linked, partner),
            expected,
            "{partner}"
        );
    }

    let again = backfill_clusters(&f.store, &f.registry, &clock_at(10))
        .await
        .expect("second run");
    assert_eq!(again.identities, 0);
    let recorded: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = $1")
        .bind(backfill::CLUSTER_BACKFILL_ACTION)
        .fetch_one(f.store.pool())
        .await
        .expect("audit");
    assert_eq!(recorded, 1);
}

/// Every identity's holding, clusters computed or not.
async fn holdings_by_identity_unchecked(store: &Store) -> HashMap<String, repo::Holding> {
    let mut tx = store.begin_read().await.expect("begin");
    let holdings = repo::clusters::holdings(&mut tx).await.expect("holdings");
    tx.commit().await.expect("end read");
    holdings
        .into_iter()
        .map(|h| (h.identity_id.clone(), h))
        .collect()
}

/// A referral (the `n`-th of a test) written with `link`'s identity, assigned
/// to `cbo`, as the intake would have written it.
async fn insert_referral(store: &Store, n: usize, link: &Linked, cbo: &str) {
    let id = format!("00000000-0000-7000-8000-{n:012}");
    sqlx::query(
        "INSERT INTO referrals (id, submitted_by, subject_id, identity_id, assigned_cbo, \
         status, workflow_state, contact_at, district, resources, created_at, updated_at) \
         VALUES ($1, 'pd', $2, $3, $4, 'new', 'open', 0, 'd1', '[\"other\"]', 0, 0)",
    )
    .bind(id)
    .bind(&link.subject_id)
    .bind(&link.identity_id)
    .bind(cbo)
    .execute(store.pool())
    .await
    .expect("referral");
}
