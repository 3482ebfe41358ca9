//! The audit log on real databases: SQLite files, and PostgreSQL when
//! `TEST_DATABASE_URL` names a server (each test creates its own database).
//! The real binary's `audit verify` is exercised in `tests/api/audit.rs`; these
//! check the domain functions directly, including every way verification can
//! name a bad entry.

use std::sync::Arc;

use chrono::{TimeZone as _, Utc};
use serde_json::json;
use sqlx::Row as _;

use super::chain::hashed_rows;
use super::checkpoint::{CheckpointSigner, Checkpointer, GatewayPublicKey, When};
use super::read::{disclosures, list_entries};
use super::refusals::{Refusal, Refusals, SUMMARY_ACTION, UNAUTHENTICATED_ACTOR};
use super::verify::{TamperKind, VerifyError, verify_paged};
use super::*;
use crate::clock::FixedClock;
use crate::store::audit::EntryFilter;
use crate::store::{Backend, Store};

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().expect("temp dir");
                    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
                    let store = crate::store::Store::connect(&url).await.expect("open SQLite");
                    store.migrate().await.expect("migrate");
                    super::$name(store, dir.path()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().expect("temp dir");
                    if let Some(store) = super::postgres_store(stringify!($name)).await {
                        super::$name(store, dir.path()).await;
                    }
                }
            )*
        }
    };
}

on_both_backends!(
    verify_names_the_first_bad_entry,
    verify_catches_a_consistently_rewritten_history_at_the_checkpoint,
    checkpoints_are_made_when_the_head_moved_and_witnessed,
    a_flood_of_refusals_is_coalesced_and_never_lost,
    disclosures_page_through_every_reference_of_a_person,
    entries_page_with_filters_and_a_cursor,
    registry_changes_are_recorded_once,
    the_log_refuses_updates_and_deletes,
    a_wrong_head_hint_never_forks_or_gaps_the_chain,
);

use crate::store::testing::postgres_store;

fn clock() -> FixedClock {
    FixedClock(
        Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0)
            .single()
            .expect("time"),
    )
}

fn example_signer() -> CheckpointSigner {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../keys-example/gateway/signing.key.pem");
    CheckpointSigner::from_pkcs8_pem(&std::fs::read_to_string(path).expect("key")).expect("key")
}

fn key() -> GatewayPublicKey {
    example_signer().public_key().clone()
}

/// Appends `count` entries, `per_tx` per transaction: reads, which create
/// no rows (a `referral.create` without its referral would be a row missing,
/// which `verify` reports).
async fn fill(store: &Store, count: usize, per_tx: usize) {
    let mut written = 0;
    while written < count {
        let n = per_tx.min(count - written);
        let events: Vec<Event> = (written..written + n)
            .map(|i| {
                Event::new("pd", "referral.read")
                    .with_record("referral", format!("r-{i}"))
                    .with_subject(format!("s-{}", i % 3))
            })
            .collect();
        let mut tx = store.begin().await.expect("begin");
        append(&mut tx, &events, &clock()).await.expect("append");
        tx.commit().await.expect("commit");
        written += n;
    }
}

/// What someone with the database's owner rights can do: drop the triggers
/// that keep the audit tables append-only.
async fn disable_append_only(store: &Store) {
    let statements: &[&str] = match store.backend() {
        Backend::Sqlite => &[
            "DROP TRIGGER audit_log_no_update",
            "DROP TRIGGER audit_log_no_delete",
            "DROP TRIGGER audit_checkpoints_no_delete",
        ],
        Backend::Postgres => &[
            "DROP TRIGGER audit_log_append_only ON audit_log",
            "DROP TRIGGER audit_checkpoints_append_only ON audit_checkpoints",
        ],
    };
    for statement in statements {
        sql(store, statement).await;
    }
}

async fn sql(store: &Store, statement: &str) {
    sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(store.pool())
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

async fn tamper_kind(store: &Store) -> (i64, TamperKind) {
    match verify_paged(store, &key(), None, 4).await {
        Err(VerifyError::Tampered(tamper)) => (tamper.seq, tamper.kind),
        other => panic!("expected tampering to be found, got {other:?}"),
    }
}

/// Each way of tampering, on a fresh log of 20 entries read in pages of 4 (so
/// that bad entries sit on page boundaries too), names the right entry.
async fn verify_names_the_first_bad_entry(store: Store, _dir: &std::path::Path) {
    fill(&store, 20, 3).await;
    let verified = verify_paged(&store, &key(), None, 4).await.expect("intact");
    assert_eq!(verified.entries, 20);
    disable_append_only(&store).await;

    // Altered: one field of entry 8 (the last of a page).
    sql(
        &store,
        "UPDATE audit_log SET actor = 'cbo-north' WHERE seq = 8",
    )
    .await;
    assert_eq!(tamper_kind(&store).await, (8, TamperKind::Altered));
    sql(&store, "UPDATE audit_log SET actor = 'pd' WHERE seq = 8").await;
    assert!(
        verify_paged(&store, &key(), None, 4).await.is_ok(),
        "restored"
    );

    // A value of another type where text belongs (SQLite columns are untyped).
    if store.backend() == Backend::Sqlite {
        sql(&store, "UPDATE audit_log SET actor = x'00ff' WHERE seq = 3").await;
        assert_eq!(tamper_kind(&store).await, (3, TamperKind::Altered));
        sql(&store, "UPDATE audit_log SET actor = 'pd' WHERE seq = 3").await;
    }

    // Swapped: the contents (and hashes) of entries 5 and 6.
    swap(&store, 5, 6).await;
    assert_eq!(tamper_kind(&store).await, (5, TamperKind::OutOfPlace));
    swap(&store, 5, 6).await;

    // Re-hashed after an edit: the next link breaks, and the message says the
    // previous entry may be the edited one.
    let (entry, _) = stored(&store, 11).await;
    let prev = stored(&store, 10).await.1;
    let edited = crate::store::audit::StoredEntry {
        action: "referral.delete".into(),
        ..entry
    };
    let rehash = entry_hash(&prev, &edited);
    sqlx::query("UPDATE audit_log SET action = $1, hash = $2 WHERE seq = 11")
        .bind(&edited.action)
        .bind(rehash.to_vec())
        .execute(store.pool())
        .await
        .expect("rehash");
    let found = verify_paged(&store, &key(), None, 4).await;
    let Err(VerifyError::Tampered(tamper)) = found else {
        panic!("{found:?}")
    };
    assert_eq!((tamper.seq, &tamper.kind), (12, &TamperKind::Altered));
    assert!(
        tamper
            .to_string()
            .contains("entry 11 was altered and re-hashed"),
        "{tamper}"
    );

    // The head rolled back below the last entry: what lies beyond it was inserted.
    sql(
        &store,
        "UPDATE audit_log SET action = 'referral.read' WHERE seq = 11",
    )
    .await;
    sqlx::query("UPDATE audit_log SET hash = $1 WHERE seq = 11")
        .bind(entry_hash(&prev, &stored(&store, 11).await.0).to_vec())
        .execute(store.pool())
        .await
        .expect("restore");
    assert!(
        verify_paged(&store, &key(), None, 4).await.is_ok(),
        "restored"
    );
    sql(&store, "UPDATE audit_head SET seq = 18 WHERE id = 1").await;
    assert_eq!(
        tamper_kind(&store).await,
        (19, TamperKind::Inserted { head: 18 })
    );
}

async fn swap(store: &Store, a: i64, b: i64) {
    sql(
        store,
        &format!("UPDATE audit_log SET seq = -1 WHERE seq = {a}"),
    )
    .await;
    sql(
        store,
        &format!("UPDATE audit_log SET seq = {a} WHERE seq = {b}"),
    )
    .await;
    sql(
        store,
        &format!("UPDATE audit_log SET seq = {b} WHERE seq = -1"),
    )
    .await;
}

async fn stored(store: &Store, seq: i64) -> (crate::store::audit::StoredEntry, [u8; 32]) {
    let mut tx = store.begin_read().await.expect("read");
    let rows = crate::store::audit::list(&mut tx, &EntryFilter::default(), seq - 1, 1)
        .await
        .expect("entry");
    let (entry, hash) = rows.into_iter().next().expect("entry");
    assert_eq!(entry.seq, seq);
    (
        entry,
        <[u8; 32]>::try_from(hash.as_slice()).expect("32 bytes"),
    )
}

/// A deleted entry is missing; a row numbered below 1 was inserted.
async fn deleted_and_inserted_entries_are_named(store: &Store) {
    sql(store, "DELETE FROM audit_log WHERE seq = 7").await;
    assert_eq!(
        tamper_kind(store).await,
        (7, TamperKind::Missing { next: 8 })
    );
    sql(
        store,
        "INSERT INTO audit_log (seq, at, actor, action, fields, hash) \
         SELECT 0, at, actor, action, fields, hash FROM audit_log WHERE seq = 1",
    )
    .await;
    let (seq, kind) = tamper_kind(store).await;
    assert_eq!(seq, 0);
    assert!(matches!(kind, TamperKind::Inserted { .. }), "{kind:?}");
}

/// Someone rewrites history from entry 5 on and recomputes every hash and the
/// head: the chain is consistent again, but not with the signed checkpoint.
async fn verify_catches_a_consistently_rewritten_history_at_the_checkpoint(
    store: Store,
    dir: &std::path::Path,
) {
    fill(&store, 12, 5).await;
    let checkpointer = Checkpointer::new(
        store.clone(),
        Arc::new(example_signer()),
        Arc::new(clock()),
        dir.join("witness.jsonl"),
    );
    checkpointer
        .checkpoint(When::Always)
        .await
        .expect("checkpoint");
    disable_append_only(&store).await;

    let mut prev = stored(&store, 4).await.1;
    for seq in 5..=12 {
        let (entry, _) = stored(&store, seq).await;
        let rewritten = crate::store::audit::StoredEntry {
            actor: "cbo-south".into(),
            ..entry
        };
        let hash = entry_hash(&prev, &rewritten);
        sqlx::query("UPDATE audit_log SET actor = $1, hash = $2 WHERE seq = $3")
            .bind(&rewritten.actor)
            .bind(hash.to_vec())
            .bind(seq)
            .execute(store.pool())
            .await
            .expect("rewrite");
        prev = hash;
    }
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
        .bind(prev.to_vec())
        .execute(store.pool())
        .await
        .expect("head");

    let found = tamper_kind(&store).await;

    assert_eq!(found.0, 12);
    assert!(
        matches!(found.1, TamperKind::CheckpointMismatch { .. }),
        "{found:?}"
    );

    // And a truncation with the head moved back to match: only the checkpoint
    // knows entries 11 and 12 existed.
    sql(&store, "DELETE FROM audit_log WHERE seq > 10").await;
    let ten = stored(&store, 10).await.1;
    sqlx::query("UPDATE audit_head SET seq = 10, hash = $1 WHERE id = 1")
        .bind(ten.to_vec())
        .execute(store.pool())
        .await
        .expect("head");
    let (seq, kind) = tamper_kind(&store).await;
    assert_eq!(seq, 11);
    assert!(
        matches!(
            kind,
            TamperKind::TruncatedBeforeCheckpoint { checkpoint: 12, .. }
        ),
        "{kind:?}"
    );

    // Without the head moved back, the head row itself says so.
    sql(&store, "DELETE FROM audit_checkpoints").await;
    sql(&store, "UPDATE audit_head SET seq = 12 WHERE id = 1").await;
    assert_eq!(
        tamper_kind(&store).await,
        (11, TamperKind::TruncatedBeforeHead { head: 12 })
    );
    deleted_and_inserted_entries_are_named(&store).await;
}

async fn checkpoints_are_made_when_the_head_moved_and_witnessed(
    store: Store,
    dir: &std::path::Path,
) {
    let witness = dir.join("deep/witness.jsonl");
    let checkpointer = Checkpointer::new(
        store.clone(),
        Arc::new(example_signer()),
        Arc::new(clock()),
        witness.clone(),
    );
    assert_eq!(
        checkpointer.checkpoint(When::IfMoved).await.expect("empty"),
        None,
        "an empty log needs no checkpoint"
    );
    fill(&store, 5, 5).await;
    let first = checkpointer
        .checkpoint(When::IfMoved)
        .await
        .expect("moved")
        .expect("made");
    assert_eq!(first.seq, 5);
    assert_eq!(
        checkpointer.checkpoint(When::IfMoved).await.expect("idle"),
        None,
        "nothing moved"
    );
    let again = checkpointer
        .checkpoint(When::Always)
        .await
        .expect("forced")
        .expect("made");
    assert_eq!((again.seq, again.hash), (first.seq, first.hash));

    let lines = std::fs::read_to_string(&witness).expect("witness file");
    assert_eq!(lines.lines().count(), 2);
    let verified = verify_paged(&store, &key(), Some(&witness), 2)
        .await
        .expect("intact");
    assert_eq!(verified.witness_checkpoints, 2);
    assert_eq!(verified.database_checkpoint.map(|c| c.0), Some(5));

    // A witness line signed by someone else is refused, naming the line.
    let forged = CheckpointSigner::from_pkcs8_pem(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../keys-example/partners/pd.key.pem"),
        )
        .expect("key"),
    )
    .expect("key")
    .sign(5, first.hash, clock().0)
    .expect("sign");
    std::fs::write(&witness, format!("{lines}{}\n", forged.witness_line())).expect("write");
    let refused = verify_paged(&store, &key(), Some(&witness), 2).await;
    let Err(VerifyError::BadCheckpoint { source_name, .. }) = refused else {
        panic!("{refused:?}")
    };
    assert!(source_name.ends_with("line 3"), "{source_name}");
}

async fn a_flood_of_refusals_is_coalesced_and_never_lost(store: Store, _dir: &std::path::Path) {
    let (refusals, writer) = Refusals::start(store.clone(), Arc::new(clock()), 8);
    let purpose: crate::policy::Purpose = "CAREMGT".parse().expect("purpose");
    let sent = 2_000;
    // Hold the chain head while the flood arrives, as a burst of slow writes
    // would: the writer blocks on its first batch, so the queue fills and the
    // rest must coalesce however fast this machine drains it.
    let mut blocker = store.begin().await.expect("begin");
    crate::store::audit::reserve(&mut blocker, 0)
        .await
        .expect("hold the head");
    for i in 0..sent {
        let refusal = if i % 2 == 0 {
            Refusal::authentication(None, "bad_signature", "GET", "/v1/whoami", None)
        } else {
            Refusal::policy(
                "pd",
                "GET",
                "/v1/audit/entries",
                &purpose,
                "no rule allows this request",
            )
        };
        refusals.record(refusal);
    }
    blocker.rollback().await.expect("release the head");
    writer.shutdown().await;

    let mut tx = store.begin_read().await.expect("read");
    let page = list_entries(&mut tx, &EntryFilter::default(), None, 1000)
        .await
        .expect("list");
    let mut recorded = 0u64;
    let mut summaries = 0;
    for (entry, _) in &page.entries {
        if entry.action == SUMMARY_ACTION {
            summaries += 1;
            let detail: serde_json::Value =
                serde_json::from_str(entry.detail.as_deref().expect("detail")).expect("json");
            recorded += detail["count"].as_u64().expect("count");
            assert!(detail["first"].is_string() && detail["last"].is_string());
        } else {
            recorded += 1;
        }
    }
    assert_eq!(recorded, sent, "every refusal is counted");
    assert!(summaries >= 1, "a full queue coalesces");
    // The writer's first batch takes what the queue hands it while the flood
    // is still arriving — up to a whole batch when both run at once — and
    // blocks; everything after that can only queue (8) or coalesce. So the
    // bound is one batch, the queue and a few summaries, whatever the timing
    // (a tighter bound of 200 failed when the writer drained the queue as
    // fast as this loop filled it).
    assert!(
        page.entries.len() <= super::refusals::MAX_BATCH + 8 + 16,
        "coalesced into few entries: {} of {sent}",
        page.entries.len()
    );
    let unauthenticated = page
        .entries
        .iter()
        .find(|(e, _)| e.actor == UNAUTHENTICATED_ACTOR)
        .expect("an unauthenticated refusal");
    assert_eq!(unauthenticated.0.reason.as_deref(), Some("bad_signature"));
    assert_eq!(unauthenticated.0.resource.as_deref(), Some("/v1/whoami"));
    assert_eq!(refusals.unrecorded(), 0);
    drop(tx);

    // After shutdown a refusal cannot be written: counted, not silently lost.
    refusals.record(Refusal::authentication(
        None,
        "expired",
        "GET",
        "/v1/whoami",
        None,
    ));
    assert_eq!(refusals.unrecorded(), 1);
    assert!(verify_paged(&store, &key(), None, 100).await.is_ok());
}

async fn disclosures_page_through_every_reference_of_a_person(
    store: Store,
    _dir: &std::path::Path,
) {
    let disclosed = |subject: &str, record: &str, recipient: &str| {
        Event::new(recipient, "referral.read")
            .with_purpose("CAREMGT")
            .with_record("referral", record)
            .with_subject(subject)
            .with_fields(vec![
                ("subject.phone".into(), Released::Released),
                ("subject.dob".into(), Released::Generalized),
            ])
            .with_decision("v1", "assigned CBO")
            .with_consent("c-1")
    };
    let events = vec![
        Event::new("pd", "referral.create")
            .with_record("referral", "r-1")
            .with_subject("s-old"),
        disclosed("s-old", "r-1", "cbo-north"),
        disclosed("s-other", "r-9", "cbo-south"),
        disclosed("s-new", "r-2", "cbo-south"),
        Event::new("cbo-north", "refusal").with_subject("s-new"),
        disclosed("s-old", "r-1", "county-health"),
    ];
    let mut tx = store.begin().await.expect("begin");
    append(&mut tx, &events, &clock()).await.expect("append");
    tx.commit().await.expect("commit");

    let person = vec!["s-old".to_owned(), "s-new".to_owned()];
    let mut tx = store.begin_read().await.expect("read");
    let first = disclosures(&mut tx, &person, None, 2)
        .await
        .expect("page 1");
    let second = disclosures(&mut tx, &person, first.next_cursor, 2)
        .await
        .expect("page 2");

    let recipients: Vec<(&str, i64)> = first
        .disclosures
        .iter()
        .chain(&second.disclosures)
        .map(|d| (d.recipient.as_str(), d.seq))
        .collect();
    assert_eq!(
        recipients,
        [("cbo-north", 2), ("cbo-south", 4), ("county-health", 6)]
    );
    assert_eq!(first.next_cursor, Some(4));
    assert_eq!(second.next_cursor, None);
    let d = &first.disclosures[0];
    assert_eq!(d.purpose.as_deref(), Some("CAREMGT"));
    assert_eq!(d.record_id.as_deref(), Some("r-1"));
    assert_eq!(d.consent_id.as_deref(), Some("c-1"));
    assert_eq!(d.policy_version.as_deref(), Some("v1"));
    assert_eq!(d.at, clock().0);
    assert_eq!(
        d.fields,
        [
            ("subject.phone".to_owned(), Released::Released),
            ("subject.dob".to_owned(), Released::Generalized)
        ]
    );
    assert!(
        disclosures(&mut tx, &[], None, 10)
            .await
            .expect("none")
            .disclosures
            .is_empty()
    );
}

async fn entries_page_with_filters_and_a_cursor(store: Store, _dir: &std::path::Path) {
    let early = FixedClock(clock().0 - chrono::Duration::hours(1));
    let mut tx = store.begin().await.expect("begin");
    append(
        &mut tx,
        &[
            Event::new("pd", "referral.create"),
            Event::new("admin", "audit.read"),
        ],
        &early,
    )
    .await
    .expect("append");
    tx.commit().await.expect("commit");
    fill(&store, 5, 5).await;

    let mut tx = store.begin_read().await.expect("read");
    let by_actor = EntryFilter {
        actor: Some("pd".into()),
        ..EntryFilter::default()
    };
    let first = list_entries(&mut tx, &by_actor, None, 4)
        .await
        .expect("page");
    assert_eq!(first.entries.len(), 4);
    assert_eq!(first.next_cursor, Some(5));
    let rest = list_entries(&mut tx, &by_actor, first.next_cursor, 4)
        .await
        .expect("page");
    assert_eq!(rest.entries.len(), 2);
    assert_eq!(rest.next_cursor, None);

    let recent = EntryFilter {
        from: Some(micros(clock().0)),
        action: Some("referral.read".into()),
        ..EntryFilter::default()
    };
    let page = list_entries(&mut tx, &recent, None, 100)
        .await
        .expect("page");
    assert_eq!(page.entries.len(), 5);
    assert!(page.entries.iter().all(|(e, _)| e.seq >= 3));
    let before = EntryFilter {
        to: Some(micros(clock().0)),
        ..EntryFilter::default()
    };
    let page = list_entries(&mut tx, &before, None, 100)
        .await
        .expect("page");
    let seqs: Vec<i64> = page.entries.iter().map(|(e, _)| e.seq).collect();
    assert_eq!(seqs, [1, 2]);
    let record = read::entry_record(&page.entries[1].0, &page.entries[1].1);
    assert_eq!(record["action"], "audit.read");
    assert_eq!(record["at"], "2026-11-23T11:00:00.000000Z");
    assert_eq!(record["hash"].as_str().map(str::len), Some(64));
}

async fn registry_changes_are_recorded_once(store: Store, _dir: &std::path::Path) {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../keys-example/crosswalk.toml");
    let config = crate::config::Config::load(&path, std::iter::empty()).expect("config");
    let added = partners::record_registry_changes(&store, &config, &clock())
        .await
        .expect("first start");
    assert_eq!(added, config.partners.len());
    let again = partners::record_registry_changes(&store, &config, &clock())
        .await
        .expect("restart");
    assert_eq!(again, 0, "an unchanged registry records nothing");

    let changed = crate::config::Config::load(
        &path,
        [(
            "CROSSWALK_PARTNERS__CBO_SOUTH__ACTIVE".to_owned(),
            "false".to_owned(),
        )],
    )
    .expect("config");
    let recorded = partners::record_registry_changes(&store, &changed, &clock())
        .await
        .expect("changed");
    assert_eq!(recorded, 1);
    let mut tx = store.begin_read().await.expect("read");
    let filter = EntryFilter {
        action: Some(partners::PARTNER_CHANGE_ACTION.into()),
        ..EntryFilter::default()
    };
    let page = list_entries(&mut tx, &filter, None, 100)
        .await
        .expect("list");
    let (last, _) = page.entries.last().expect("entries");
    assert_eq!(last.record_id.as_deref(), Some("cbo-south"));
    assert_eq!(last.reason.as_deref(), Some("changed"));
    let detail: serde_json::Value =
        serde_json::from_str(last.detail.as_deref().expect("detail")).expect("json");
    assert_eq!(detail["changed"], json!(["active"]));
}

async fn the_log_refuses_updates_and_deletes(store: Store, _dir: &std::path::Path) {
    fill(&store, 2, 2).await;
    for statement in [
        "UPDATE audit_log SET actor = 'x' WHERE seq = 1",
        "DELETE FROM audit_log WHERE seq = 2",
    ] {
        let result = sqlx::query(statement).execute(store.pool()).await;
        let error = result.expect_err(statement).to_string();
        assert!(error.contains("append-only"), "{statement}: {error}");
    }
    let rows: i64 = sqlx::query("SELECT COUNT(*) AS n FROM audit_log")
        .fetch_one(store.pool())
        .await
        .expect("count")
        .try_get("n")
        .expect("n");
    assert_eq!(rows, 2);
}

/// The head hint that saves PostgreSQL a round trip is only ever a guess: an
/// append after a hint naming an older head, the right seq with another hash,
/// a head that does not exist yet, or a head whose transaction rolled back,
/// still lands right after the real head. (Other tests in this process move
/// the same hint meanwhile, which is the point: it is never trusted.)
async fn a_wrong_head_hint_never_forks_or_gaps_the_chain(store: Store, _dir: &std::path::Path) {
    use crate::store::audit::set_head_hint;
    fill(&store, 5, 2).await;
    let (_, hash_of_4) = stored(&store, 4).await;
    let one = || vec![Event::new("pd", "referral.read").with_record("referral", "r-x")];
    let wrong_hints = [
        (4, hash_of_4), // the head before the last one
        (5, [7; 32]),   // the last seq, another hash
        (9, [0; 32]),   // ahead of the chain
    ];
    for (appended, (seq, hash)) in (6..).zip(wrong_hints) {
        let mut tx = store.begin().await.expect("begin");
        set_head_hint(&tx, seq, hash);
        let done = append(&mut tx, &one(), &clock()).await.expect("append");
        tx.commit().await.expect("commit");
        assert_eq!(done.map(|a| (a.first, a.last)), Some((appended, appended)));
    }
    // An append that rolls back leaves the hint on a head that never was.
    let mut tx = store.begin().await.expect("begin");
    append(&mut tx, &one(), &clock()).await.expect("append");
    tx.rollback().await.expect("rollback");
    fill(&store, 3, 1).await;
    let verified = verify_paged(&store, &key(), None, 4).await.expect("intact");
    assert_eq!(verified.entries, 11);
}

/// The one-statement append moves the head and inserts when the head is the
/// one named, and changes nothing otherwise (PostgreSQL; SQLite has no
/// statement that updates inside a `WITH`, and needs no round-trip saving).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_one_statement_append_happens_only_on_the_named_head() {
    use crate::store::audit::{head, insert_after_head};
    let Some(store) =
        postgres_store("the_one_statement_append_happens_only_on_the_named_head").await
    else {
        return;
    };
    fill(&store, 3, 3).await;
    let (_, hash_of_2) = stored(&store, 2).await;
    let mut tx = store.begin().await.expect("begin");
    let (seq, hash) = head(&mut tx).await.expect("head");
    assert_eq!(seq, 3);
    let (rows, appended) = hashed_rows(4, hash, 7, &[Event::new("pd", "a"), Event::new("pd", "b")]);
    let stale = insert_after_head(&mut tx, 2, &hash_of_2, &rows).await;
    assert!(!stale.expect("a stale head is no error"));
    assert_eq!(head(&mut tx).await.expect("head"), (3, hash));
    let fresh = insert_after_head(&mut tx, 3, &hash, &rows).await;
    assert!(fresh.expect("insert"));
    assert_eq!(head(&mut tx).await.expect("head"), (5, appended.head));
    tx.commit().await.expect("commit");
    let verified = verify_paged(&store, &key(), None, 4).await.expect("intact");
    assert_eq!((verified.entries, verified.head_hash), (5, appended.head));
}
