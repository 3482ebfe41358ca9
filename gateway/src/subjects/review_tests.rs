//! The review queue and unmerge on real databases (both backends): a near
//! pair is queued alike by `register` and `register_many`; a rejected pair is
//! never merged, even by an identity that matches both (and, without the
//! rejection, that identity does merge them); an accepted pair is linked and
//! a decided review cannot be decided again; an unmerge splits a bridged
//! merge and the partner's cluster it made, giving both sides their cluster
//! ids from before, and leaves the bridge with the older.

use super::tests::{Backend, Fixture, Item, clock_at, holdings_by_identity, postgres_available};
use super::*;
use crate::linkage::LinkageKeys;
use crate::store::subjects::reviews as reviews_repo;

on_both_backends!(
    a_near_pair_is_queued_alike_by_both_paths,
    a_rejected_pair_is_never_merged_by_a_bridge,
    an_accepted_pair_is_linked_once,
    an_unmerge_splits_a_bridged_merge_and_its_cluster,
);

fn input(given: &str, dob: &str, email: Option<&str>, phone: Option<&str>) -> IdentityInput {
    IdentityInput {
        given_name: Some(given.to_owned()),
        surname: Some("Lopez".to_owned()),
        dob: Some(dob.to_owned()),
        email: email.map(str::to_owned),
        phone: phone.map(str::to_owned),
        street: phone.map(|_| "1420 Alder Street".to_owned()),
        city: phone.map(|_| "Sacramento".to_owned()),
        zip: phone.map(|_| "95814".to_owned()),
        ..IdentityInput::default()
    }
}

/// Maria, with only her email; "Mariah" (a slip in the given name), with her
/// phone and address; and a third record with Mariah's name, the email and
/// the phone, which matches both.
fn people() -> [Item; 3] {
    let item = |given, email, phone| {
        Item::new("pd", input(given, "1984-03-09", email, phone)).expect("valid identity")
    };
    [
        item("Maria", Some("m.lopez@example.org"), None),
        item("Mariah", None, Some("916-555-0142")),
        item("Mariah", Some("m.lopez@example.org"), Some("916-555-0142")),
    ]
}

/// The premises the tests stand on, checked on the engine itself: the first
/// two are a review pair, the third matches both.
fn check_premises(items: &[Item; 3]) {
    let keys = LinkageKeys::derive(&MasterSecret::from_bytes([42; 32]), 1);
    let f: Vec<_> = items
        .iter()
        .map(|i| linkage::fingerprint(&i.identity, &keys))
        .collect();
    let near = linkage::compare(&f[0], &f[1]);
    assert!(!near.is_match() && near.needs_review(), "{near:?}");
    assert!(linkage::compare(&f[2], &f[0]).is_match(), "bridge to Maria");
    assert!(
        linkage::compare(&f[2], &f[1]).is_match(),
        "bridge to Mariah"
    );
}

async fn subject_of(fixture: &Fixture, identity: &str) -> String {
    let mut tx = fixture.store.begin().await.expect("begin");
    let subject = repo::subject_of(&mut tx, identity)
        .await
        .expect("read")
        .expect("identity exists");
    tx.commit().await.expect("commit");
    subject
}

async fn open_reviews(fixture: &Fixture) -> Vec<ReviewItem> {
    let options = NormalizeOptions::new(phonenumber::country::Id::US, clock_at(0).0.date_naive());
    let mut tx = fixture.store.begin().await.expect("begin");
    let items = fixture
        .registry
        .open_reviews(&mut tx, &options, None, 100)
        .await
        .expect("open reviews");
    tx.commit().await.expect("commit");
    items
}

async fn decide(
    fixture: &Fixture,
    review: &str,
    decision: ReviewDecision,
) -> Result<review::Decided, ReviewError> {
    let mut tx = fixture.store.begin().await.expect("begin");
    let decided = fixture
        .registry
        .decide_review(&mut tx, review, decision, "admin", 1)
        .await;
    tx.commit().await.expect("commit");
    decided
}

async fn a_near_pair_is_queued_alike_by_both_paths(backend: Backend) {
    let items = people();
    check_premises(&items);
    let one_by_one = Fixture::new(backend).await;
    let first = one_by_one.register_chunks(&[&items[..1]]).await;
    let mut tx = one_by_one.store.begin().await.expect("begin");
    let second = one_by_one
        .registry
        .register(
            &mut tx,
            "pd",
            &items[1].input,
            &items[1].identity,
            &clock_at(1),
        )
        .await
        .expect("register");
    tx.commit().await.expect("commit");
    assert_ne!(first[0].subject_id, second.subject_id, "not linked");

    let chunked = Fixture::new(backend).await;
    chunked.register_chunks(&[&items[..2]]).await;

    for fixture in [&one_by_one, &chunked] {
        let queue = open_reviews(fixture).await;
        assert_eq!(queue.len(), 1, "one pair queued");
        let fields: std::collections::HashMap<_, _> = queue[0].fields.iter().copied().collect();
        assert_eq!(fields["surname"], FieldAgreement::Agree);
        assert_eq!(fields["dob"], FieldAgreement::Agree);
        assert_eq!(fields["given_name"], FieldAgreement::Close);
        assert_eq!(fields["phone"], FieldAgreement::Missing);
        assert!(!queue[0].already_linked);
    }
}

async fn a_rejected_pair_is_never_merged_by_a_bridge(backend: Backend) {
    let items = people();
    // Without a decision, the third record merges the first two...
    let control = Fixture::new(backend).await;
    let linked = control.register_chunks(&[&items[..2], &items[2..]]).await;
    assert_eq!(linked[2].merged.len(), 1, "the bridge merges them");

    // ...rejected, it joins the older only, in either path.
    for chunked in [false, true] {
        let fixture = Fixture::new(backend).await;
        let linked = fixture.register_chunks(&[&items[..2]]).await;
        let queue = open_reviews(&fixture).await;
        decide(&fixture, &queue[0].id, ReviewDecision::Reject)
            .await
            .expect("reject");
        let bridge = if chunked {
            fixture.register_chunks(&[&items[2..]]).await.remove(0)
        } else {
            let mut tx = fixture.store.begin().await.expect("begin");
            let got = fixture
                .registry
                .register_identity(&mut tx, &items[2].as_new(), &clock_at(1))
                .await
                .expect("register");
            tx.commit().await.expect("commit");
            got
        };
        assert!(bridge.merged.is_empty(), "chunked {chunked}: no merge");
        let (a, b) = (
            subject_of(&fixture, &linked[0].identity_id).await,
            subject_of(&fixture, &linked[1].identity_id).await,
        );
        assert_ne!(a, b, "chunked {chunked}: kept apart");
        assert_eq!(bridge.subject_id, a.min(b), "chunked {chunked}: joins one");
        assert!(
            open_reviews(&fixture).await.is_empty(),
            "never queued again"
        );
        let again = decide(&fixture, &queue[0].id, ReviewDecision::Accept).await;
        assert!(matches!(again, Err(ReviewError::AlreadyDecided(d)) if d == "rejected"));
    }
}

async fn an_accepted_pair_is_linked_once(backend: Backend) {
    let items = people();
    let fixture = Fixture::new(backend).await;
    let linked = fixture.register_chunks(&[&items[..2]]).await;
    let before = holdings_by_identity(&fixture.store).await;
    let queue = open_reviews(&fixture).await;
    let decided = decide(&fixture, &queue[0].id, ReviewDecision::Accept)
        .await
        .expect("accept");
    assert!(decided.merged.is_some());
    let a = subject_of(&fixture, &linked[0].identity_id).await;
    assert_eq!(a, subject_of(&fixture, &linked[1].identity_id).await);
    assert_eq!(a, decided.subject_id);
    // The partner's own grouping is not the reviewer's to change.
    assert_eq!(before, holdings_by_identity(&fixture.store).await);
    let again = decide(&fixture, &queue[0].id, ReviewDecision::Reject).await;
    assert!(matches!(again, Err(ReviewError::AlreadyDecided(d)) if d == "accepted"));
    let missing = decide(
        &fixture,
        "00000000-0000-7000-8000-000000000000",
        ReviewDecision::Accept,
    )
    .await;
    assert!(matches!(missing, Err(ReviewError::NotFound)));
}

async fn an_unmerge_splits_a_bridged_merge_and_its_cluster(backend: Backend) {
    let items = people();
    let fixture = Fixture::new(backend).await;
    let mut linked = fixture.register_chunks(&[&items[..1], &items[1..2]]).await;
    let before = holdings_by_identity(&fixture.store).await;
    let bridge = fixture.register_chunks(&[&items[2..]]).await;
    assert_eq!(bridge[0].merged.len(), 1, "the bridge merges them");
    linked.extend(bridge);
    let ids: Vec<&str> = linked.iter().map(|l| l.identity_id.as_str()).collect();
    let merged = holdings_by_identity(&fixture.store).await;
    assert_eq!(
        merged[ids[0]].cluster_id, merged[ids[1]].cluster_id,
        "pd's cluster merged"
    );

    let mut tx = fixture.store.begin().await.expect("begin");
    let unmerged = fixture
        .registry
        .unmerge(&mut tx, ids[0], ids[1], 10)
        .await
        .expect("unmerge");
    tx.commit().await.expect("commit");
    assert_eq!(unmerged.subjects.len(), 2);
    let subjects = [
        subject_of(&fixture, ids[0]).await,
        subject_of(&fixture, ids[1]).await,
        subject_of(&fixture, ids[2]).await,
    ];
    assert_ne!(subjects[0], subjects[1], "split");
    assert_eq!(subjects[2], subjects[0], "the bridge stays with the older");
    let split = holdings_by_identity(&fixture.store).await;
    assert_ne!(
        split[ids[0]].cluster_id, split[ids[1]].cluster_id,
        "pd's cluster split"
    );
    assert_eq!(split[ids[2]].cluster_id, split[ids[0]].cluster_id);
    for n in 0..2 {
        assert_eq!(
            split[ids[n]].cluster_id, before[ids[n]].cluster_id,
            "identity {n} has its cluster id from before the merge, and so its pseudonym"
        );
    }
    let mut tx = fixture.store.begin().await.expect("begin");
    let apart = reviews_repo::pairs_within(&mut tx, &subjects[0], false)
        .await
        .expect("read");
    tx.commit().await.expect("commit");
    assert!(
        apart.is_empty(),
        "the kept-apart pair now spans two subjects"
    );
    let mut tx = fixture.store.begin().await.expect("begin");
    let again = fixture.registry.unmerge(&mut tx, ids[0], ids[1], 11).await;
    assert!(matches!(again, Err(ReviewError::NotLinked)));
}
