//! Time and randomness are passed in: a gateway built with a pinned clock and
//! a seeded generator makes the same ids and the same sealed bytes as another
//! built the same way. If any step of a referral's write drew from the
//! operating system behind the injected generator's back (an id, a data key, a
//! nonce), the two would differ.

use std::path::Path;
use std::sync::Arc;

use sqlx::Row as _;

use super::Gateway;
use crate::clock::{Clock, FixedClock};
use crate::config::Config;
use crate::domain::PartnerId;
use crate::exchange::{Submission, Submitted};
use crate::randomness::SeededRandomness;

async fn submit_one(seed: u64, dir: &Path) -> (String, Vec<u8>) {
    let root = Path::new(
        &std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR for tests"),
    )
    .join("..");
    let database = format!("sqlite://{}?mode=rwc", dir.join("gateway.db").display());
    let config = Config::load(
        &root.join("keys-example/crosswalk.toml"),
        [
            ("CROSSWALK_SERVER__DATABASE_URL".to_owned(), database),
            (
                "CROSSWALK_EXPORTS__DIR".to_owned(),
                dir.join("exports").display().to_string(),
            ),
            (
                "CROSSWALK_AUDIT__CHECKPOINT_FILE".to_owned(),
                dir.join("checkpoint").display().to_string(),
            ),
        ],
    )
    .expect("config");
    let at = chrono::DateTime::from_timestamp(1_780_000_000, 0).expect("a time");
    let clock: Arc<dyn Clock> = Arc::new(FixedClock(at));
    let gateway = Gateway::build(
        config,
        clock,
        Arc::new(SeededRandomness::danger_predictable_for_tests(seed)),
    )
    .await
    .expect("the gateway builds");
    let body = serde_json::json!({
        "cad_number": "CAD-1",
        "officer_id": "OFFICER-7",
        "subject": {"given_name": "Ada", "surname": "Lovelace", "dob": "1980-12-10",
                    "phone": "(916) 555-0136"},
        "contact_at": "2026-05-28T19:00:00Z",
        "district": "3",
        "arrested": false,
        "circumstances": "Seeded test",
        "resources": ["homelessness"],
        "follow_up_by": "cbo",
    });
    let draft = gateway
        .exchange
        .check_referral(
            body.to_string().as_bytes(),
            crate::exchange::subject::Tolerance::RefuseRequest,
        )
        .expect("a valid referral");
    let results = gateway
        .exchange
        .submit(vec![Submission {
            submitter: PartnerId::parse("pd").expect("a partner id"),
            purpose: "CAREMGT".parse().expect("a purpose"),
            draft,
            claim: None,
        }])
        .await
        .expect("submitted");
    let Some(Ok(Submitted::Created(receipt))) = results.into_iter().next() else {
        panic!("the referral was not created");
    };
    let mut tx = gateway.store.begin_read().await.expect("a snapshot");
    let sealed: Vec<u8> = sqlx::query("SELECT sealed FROM referrals WHERE id = $1")
        .bind(receipt.id.as_str())
        .fetch_one(&mut *tx)
        .await
        .expect("the row")
        .try_get(0)
        .expect("sealed bytes");
    tx.commit().await.expect("commit");
    (receipt.id.into_string(), sealed)
}

#[tokio::test]
async fn a_seeded_gateway_repeats_its_ids_and_sealed_bytes_and_another_seed_does_not() {
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir().expect("a temp dir"))
        .collect();
    let (id_a, sealed_a) = submit_one(42, dirs[0].path()).await;
    let (id_b, sealed_b) = submit_one(42, dirs[1].path()).await;
    let (id_c, sealed_c) = submit_one(43, dirs[2].path()).await;
    assert_eq!(id_a, id_b, "the same seed and time, the same referral id");
    assert_eq!(sealed_a, sealed_b, "the same data key and nonce");
    assert_ne!(id_a, id_c);
    assert_ne!(sealed_a, sealed_c);
}
