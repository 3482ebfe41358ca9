//! Two exports racing to fix a study's plan, in a fixed order: the real
//! service, store, vault, policy and signer on a temporary database, driven
//! step by step (the HTTP test cannot make two builds overlap on demand).
//!
//! Export X builds first and plans over ten people (5-year bands fit); more
//! people arrive; export Y builds, plans over all of them (only `*` fits) and
//! is published first. X, published second, must not go out with its own
//! levels: it is superseded, leaves nothing behind, and is built again with
//! Y's plan.

use std::path::Path;
use std::sync::Arc;

use chrono::{Datelike, Duration};

use super::Exports;
use super::job::Recorded;
use super::request::{Job, WindowSer};
use super::tables::{Format, Table};
use crate::audit::checkpoint::CheckpointSigner;
use crate::clock::{Clock, FixedClock, SystemClock};
use crate::config::Config;
use crate::domain::ids::ExportId;
use crate::policy::Policy;
use crate::pseudonym::Pseudonymizer;
use crate::secrets::GatewayKeys;
use crate::store::exports::{self as repo, ExportRow};
use crate::store::{Store, study_plans};
use crate::vault::{RotationPolicy, ToSeal, Vault};

const DAY: i64 = 86_400_000_000;

fn service(store: &Store, exports_dir: &Path) -> Arc<Exports> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let config = Config::load(
        &root.join("keys-example/crosswalk.toml"),
        [(
            "CROSSWALK_EXPORTS__DIR".to_owned(),
            exports_dir.display().to_string(),
        )],
    )
    .expect("config");
    let keys = GatewayKeys::load(&config).expect("keys");
    let clock: Arc<dyn Clock> = Arc::new(FixedClock(
        SystemClock
            .now()
            .date_naive()
            .and_hms_opt(12, 0, 0)
            .expect("noon")
            .and_utc(),
    ));
    Arc::new(Exports {
        vault: Vault::new(
            keys.vault.clone(),
            store.clone(),
            RotationPolicy::default(),
            crate::randomness::os(),
        ),
        policy: Arc::new(Policy::load(&config.key_path(&config.policy.dir)).expect("policy")),
        pseudonyms: Arc::new(Pseudonymizer::new(&keys.master)),
        signer: Arc::new(CheckpointSigner::load(&config).expect("signer")),
        config: Arc::new(config),
        store: store.clone(),
        clock,
        ids: Arc::new(crate::randomness::RecordIds::new(crate::randomness::os())),
    })
}

/// People `first..first + ages.len()`, one referral each, contact yesterday.
async fn seed(exports: &Exports, first: usize, ages: &[i32], sex: &str) {
    let now = exports.clock.now();
    let at = now.timestamp_micros() - DAY;
    let mut tx = exports.store.begin().await.expect("tx");
    let plaintexts: Vec<(String, Vec<u8>)> = ages
        .iter()
        .enumerate()
        .map(|(n, age)| {
            let p = first + n;
            let identity = serde_json::json!({
                "given_name": format!("Race{p}"), "surname": "Plan-Demo",
                "dob": format!("{}-01-01", now.year() - age),
                "sex": sex, "street": null, "city": "Sacramento", "state": "CA",
                "zip": "95822", "phone": null, "email": null,
            });
            (
                format!("identities:i-{p}"),
                identity.to_string().into_bytes(),
            )
        })
        .collect();
    let values: Vec<ToSeal<'_>> = plaintexts
        .iter()
        .map(|(context, plaintext)| ToSeal {
            context: context.as_bytes(),
            plaintext,
        })
        .collect();
    let sealed = exports
        .vault
        .seal_many(&mut tx, &values, exports.clock.as_ref())
        .await
        .expect("seal");
    for (n, sealed) in sealed.iter().enumerate() {
        let p = first + n;
        sqlx::query("INSERT INTO subjects (id, created_at) VALUES ($1, 0)")
            .bind(format!("s-{p}"))
            .execute(&mut *tx)
            .await
            .expect("subject");
        sqlx::query(
            "INSERT INTO identities (id, subject_id, source_partner, sealed, fingerprint, \
             key_version, linkable, created_at) VALUES ($1, $2, 'pd', $3, $4, 1, 0, 0)",
        )
        .bind(format!("i-{p}"))
        .bind(format!("s-{p}"))
        .bind(sealed.as_bytes().to_vec())
        .bind(Vec::<u8>::new())
        .execute(&mut *tx)
        .await
        .expect("identity");
        sqlx::query(
            "INSERT INTO referrals (id, submitted_by, subject_id, identity_id, assigned_cbo, \
             status, workflow_state, contact_at, district, arrested, resources, follow_up_by, \
             created_at, updated_at, sealed) VALUES ($1, 'pd', $2, $3, 'cbo-north', 'new', \
             'open', $4, 'd1', NULL, '[]', NULL, $4, $4, NULL)",
        )
        .bind(format!("r-{p:04}"))
        .bind(format!("s-{p}"))
        .bind(format!("i-{p}"))
        .bind(at)
        .execute(&mut *tx)
        .await
        .expect("referral");
    }
    tx.commit().await.expect("commit");
}

/// A recorded, running export of the demo study over everything so far.
async fn job(exports: &Exports) -> Job {
    let now = exports.clock.now();
    let today = now.date_naive();
    let job = Job {
        id: exports.ids.next(now),
        study_id: "demo-study".to_owned(),
        evaluator: crate::domain::PartnerId::parse("evaluator").expect("a partner id"),
        purpose: "HRESCH".to_owned(),
        from: today - Duration::days(30),
        to: today,
        tables: vec![Table::Referrals],
        format: Format::Csv,
        window: WindowSer {
            from: now.timestamp_micros() - 30 * DAY,
            to: now.timestamp_micros() + DAY,
            cutoff: now.timestamp_micros(),
        },
    };
    let mut tx = exports.store.begin().await.expect("tx");
    repo::insert(
        &mut tx,
        &ExportRow {
            id: job.id.clone(),
            study_id: job.study_id.clone(),
            requested_by: job.evaluator.to_string(),
            purpose: job.purpose.clone(),
            request: "{}".to_owned(),
            state: "running".to_owned(),
            requested_at: now.timestamp_micros(),
            finished_at: None,
            file_name: None,
            manifest_jws: None,
        },
    )
    .await
    .expect("export row");
    tx.commit().await.expect("commit");
    job
}

async fn plan_entries(store: &Store) -> usize {
    let mut tx = store.begin_read().await.expect("tx");
    let (n,): (i64,) = sqlx::query_as(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM audit_log WHERE action = 'export.plan'",
    )
    .fetch_one(&mut *tx)
    .await
    .expect("count");
    tx.commit().await.expect("commit");
    usize::try_from(n).unwrap_or(usize::MAX)
}

async fn the_plan_that_is_stored_first_wins(store: Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let exports = service(&store, dir.path());
    let age = super::study::QuasiIdentifier::Age.index();
    let sex = super::study::QuasiIdentifier::Sex.index();

    // Ten women aged 30-39: 5-year bands hold five each.
    seed(&exports, 0, &[30, 31, 32, 33, 34, 35, 36, 37, 38, 39], "F").await;
    let x = job(&exports).await;
    let x_partial = dir.path().join("x.partial");
    let x_built = exports.build(&x, &x_partial, None).await.expect("X builds");
    assert_eq!(x_built.plan.node[age], 1, "{:?}", x_built.plan);

    // Three men in their fifties: now only `*` for age and sex holds k = 5.
    seed(&exports, 10, &[50, 51, 52], "M").await;
    let y = job(&exports).await;
    let y_built = exports
        .build(&y, &dir.path().join("y.partial"), None)
        .await
        .expect("Y builds");
    assert_eq!((y_built.plan.node[age], y_built.plan.node[sex]), (3, 1));
    let y_plan = y_built.plan.clone();
    assert!(matches!(
        exports.record_ready(&y, y_built).await,
        Ok(Recorded::Ready)
    ));

    // X comes second with other levels: not published.
    assert!(matches!(
        exports.record_ready(&x, x_built).await,
        Ok(Recorded::PlanSuperseded)
    ));
    let mut tx = store.begin_read().await.expect("tx");
    let stored = study_plans::get(&mut tx, "demo-study")
        .await
        .expect("read")
        .expect("a plan");
    let x_row = repo::get(&mut tx, &ExportId::stored(x.id.clone()))
        .await
        .expect("read")
        .expect("row");
    tx.commit().await.expect("commit");
    assert_eq!(stored.planned_by, y.id);
    assert_eq!(
        x_row.state, "running",
        "X is not published with its own plan"
    );
    assert!(!dir.path().join(format!("{}.zip.age", x.id)).exists());
    assert_eq!(plan_entries(&store).await, 1);

    // Built again, X uses the stored plan.
    assert!(matches!(
        exports.attempt(&x, &x_partial).await,
        Ok(Recorded::Ready)
    ));
    let mut tx = store.begin_read().await.expect("tx");
    let x_row = repo::get(&mut tx, &ExportId::stored(x.id.clone()))
        .await
        .expect("read")
        .expect("row");
    tx.commit().await.expect("commit");
    assert_eq!(x_row.state, "ready");
    let jws = x_row.manifest_jws.expect("manifest");
    let claims = jws.split('.').nth(1).expect("payload");
    let manifest: serde_json::Value = serde_json::from_slice(
        &data_encoding::BASE64URL_NOPAD
            .decode(claims.as_bytes())
            .expect("base64"),
    )
    .expect("json");
    assert_eq!(manifest["plan"]["planned_by"], y.id.as_str());
    assert_eq!(manifest["generalization"]["age"], y_plan.node[age]);
    assert_eq!(manifest["generalization"]["sex"], 1);
    assert_eq!(plan_entries(&store).await, 1, "one plan, one entry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_that_is_stored_first_wins_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("race.db").display());
    let store = Store::connect(&url).await.expect("open SQLite");
    store.migrate().await.expect("migrate");
    the_plan_that_is_stored_first_wins(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_that_is_stored_first_wins_on_postgres() {
    if let Some(store) = crate::store::testing::postgres_store("exports_plan_race").await {
        the_plan_that_is_stored_first_wins(store).await;
    }
}
