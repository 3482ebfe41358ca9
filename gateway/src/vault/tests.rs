//! Vault tests on real SQLite files, and on PostgreSQL when `TEST_DATABASE_URL`
//! names a server (each test creates its own `crosswalk_test_<uuid>` database).

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{TimeZone as _, Utc};
use sqlx::Row as _;

use super::*;
use crate::clock::FixedClock;

const BUNDLE: &[u8] = br#"["Jane Quintessa","Doe","1987-03-14","F","1428 Elm Street","Springfield","IL","62704","555-867-5309","jqd@example.org"]"#;
const IDENTIFIERS: [&str; 4] = [
    "Jane Quintessa Doe",
    "Jane Quintessa",
    "555-867-5309",
    "1428 Elm Street",
];

/// Runs an `async fn(Store)` test on SQLite and, if configured, on PostgreSQL.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = super::SqliteDb::new().await;
                    super::$name(db.store.clone()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(store) = super::postgres_store(stringify!($name)).await {
                        super::$name(store).await;
                    }
                }
            )*
        }
    };
}

on_both_backends!(
    round_trip,
    wrong_context_and_tampering_fail,
    rotation_by_count,
    rotation_by_age,
    rolled_back_key_creation,
    concurrent_replicas_race_at_rotation,
    rewrap_to_a_new_identity,
);

mod seal_many;

struct SqliteDb {
    _dir: tempfile::TempDir,
    path: PathBuf,
    store: Store,
}

impl SqliteDb {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("vault.db");
        let store = Store::connect(&format!("sqlite://{}", path.display()))
            .await
            .expect("open SQLite");
        store.migrate().await.expect("migrate");
        Self {
            _dir: dir,
            path,
            store,
        }
    }
}

use crate::store::testing::postgres_store;

fn clock_at(hours: i64) -> FixedClock {
    let start = Utc
        .with_ymd_and_hms(2026, 1, 5, 9, 0, 0)
        .single()
        .expect("a valid instant");
    FixedClock(start + TimeDelta::hours(hours))
}

fn vault(store: &Store, identity: &age::x25519::Identity, policy: RotationPolicy) -> Vault {
    Vault::new(
        identity.clone(),
        store.clone(),
        policy,
        crate::randomness::os(),
    )
}

/// Seals one value in its own committed transaction.
async fn seal_committed(
    vault: &Vault,
    context: &[u8],
    plaintext: &[u8],
    clock: &FixedClock,
) -> Sealed {
    let mut tx = vault.inner.store.begin().await.expect("begin");
    let sealed = vault
        .seal(&mut tx, context, plaintext, clock)
        .await
        .expect("seal");
    tx.commit().await.expect("commit");
    sealed
}

async fn key_count(store: &Store) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM vault_keys")
        .fetch_one(store.pool())
        .await
        .expect("count keys")
        .try_get("n")
        .expect("a count")
}

fn context(n: usize) -> Vec<u8> {
    format!("identities:{n}").into_bytes()
}

async fn round_trip(store: Store) {
    let identity = age::x25519::Identity::generate();
    let origin = vault(&store, &identity, RotationPolicy::default());
    let sealed = seal_committed(&origin, b"identities:1", BUNDLE, &clock_at(0)).await;
    assert_eq!(sealed.as_bytes().len(), BUNDLE.len() + 57);

    let opened = origin
        .unseal(b"identities:1", &sealed)
        .await
        .expect("unseal");
    assert_eq!(&opened[..], BUNDLE);
    // Another replica, cold cache: reads the data key from vault_keys.
    let replica = vault(&store, &identity, RotationPolicy::default());
    let stored = Sealed::from_bytes(sealed.as_bytes().to_vec());
    let opened = replica
        .unseal(b"identities:1", &stored)
        .await
        .expect("unseal");
    assert_eq!(&opened[..], BUNDLE);
    // Empty values seal too.
    let empty = seal_committed(&origin, b"identities:2", b"", &clock_at(0)).await;
    assert!(
        replica
            .unseal(b"identities:2", &empty)
            .await
            .expect("unseal")
            .is_empty()
    );
}

async fn wrong_context_and_tampering_fail(store: Store) {
    let identity = age::x25519::Identity::generate();
    let vault = vault(&store, &identity, RotationPolicy::default());
    let sealed = seal_committed(&vault, b"identities:1", BUNDLE, &clock_at(0)).await;

    for wrong in [&b"identities:2"[..], b"referrals:1", b"", b"identities:1\0"] {
        assert!(matches!(
            vault.unseal(wrong, &sealed).await,
            Err(VaultError::Open)
        ));
    }
    for at in 0..sealed.as_bytes().len() {
        let mut bytes = sealed.as_bytes().to_vec();
        bytes[at] ^= 0x01;
        let result = vault
            .unseal(b"identities:1", &Sealed::from_bytes(bytes))
            .await;
        assert!(
            matches!(
                result,
                Err(VaultError::Open | VaultError::Malformed | VaultError::UnknownKey { .. })
            ),
            "byte {at} flipped: {result:?}"
        );
    }
    let bytes = sealed.as_bytes();
    let truncated = Sealed::from_bytes(bytes[..bytes.len() - 1].to_vec());
    assert!(vault.unseal(b"identities:1", &truncated).await.is_err());
    let short = Sealed::from_bytes(bytes[..40].to_vec());
    assert!(matches!(
        vault.unseal(b"identities:1", &short).await,
        Err(VaultError::Malformed)
    ));
    // Someone else's vault identity cannot open it.
    let stranger = Vault::new(
        age::x25519::Identity::generate(),
        store,
        RotationPolicy::default(),
        crate::randomness::os(),
    );
    assert!(matches!(
        stranger.unseal(b"identities:1", &sealed).await,
        Err(VaultError::Unwrap { .. })
    ));
}

async fn rotation_by_count(store: Store) {
    let identity = age::x25519::Identity::generate();
    let policy = RotationPolicy {
        max_seals_per_key: 3,
        ..RotationPolicy::default()
    };
    let vault = vault(&store, &identity, policy);
    let mut sealed = Vec::new();
    for n in 0..10 {
        sealed.push(seal_committed(&vault, &context(n), BUNDLE, &clock_at(0)).await);
    }
    assert_eq!(key_count(&store).await, 4, "3 + 3 + 3 + 1 seals");
    let fresh = Vault::new(identity, store, policy, crate::randomness::os());
    for (n, value) in sealed.iter().enumerate() {
        assert_eq!(
            &fresh.unseal(&context(n), value).await.expect("unseal")[..],
            BUNDLE
        );
    }
}

async fn rotation_by_age(store: Store) {
    let identity = age::x25519::Identity::generate();
    let vault = vault(&store, &identity, RotationPolicy::default());
    let first = seal_committed(&vault, &context(0), BUNDLE, &clock_at(0)).await;
    let same_day = seal_committed(&vault, &context(1), BUNDLE, &clock_at(23)).await;
    assert_eq!(key_count(&store).await, 1);
    let next_day = seal_committed(&vault, &context(2), BUNDLE, &clock_at(24)).await;
    assert_eq!(key_count(&store).await, 2);
    assert_eq!(first.key_id().ok(), same_day.key_id().ok());
    assert_ne!(first.key_id().ok(), next_day.key_id().ok());

    let created: Vec<i64> = sqlx::query("SELECT created_at FROM vault_keys ORDER BY created_at")
        .fetch_all(store.pool())
        .await
        .expect("keys")
        .iter()
        .map(|r| r.try_get("created_at").expect("created_at"))
        .collect();
    assert_eq!(
        created,
        [clock_at(0).0.timestamp(), clock_at(24).0.timestamp()]
    );

    let fresh = Vault::new(
        identity,
        store,
        RotationPolicy::default(),
        crate::randomness::os(),
    );
    for (n, value) in [first, same_day, next_day].iter().enumerate() {
        assert_eq!(
            &fresh.unseal(&context(n), value).await.expect("unseal")[..],
            BUNDLE
        );
    }
}

/// The transaction that created a data key rolls back; records sealed under the key
/// afterwards still commit with it.
async fn rolled_back_key_creation(store: Store) {
    let identity = age::x25519::Identity::generate();
    let vault = vault(&store, &identity, RotationPolicy::default());
    let mut tx = store.begin().await.expect("begin");
    let lost = vault
        .seal(&mut tx, &context(0), BUNDLE, &clock_at(0))
        .await
        .expect("seal");
    tx.rollback().await.expect("rollback");
    assert_eq!(key_count(&store).await, 0);

    let kept = seal_committed(&vault, &context(1), BUNDLE, &clock_at(0)).await;
    assert_eq!(lost.key_id().ok(), kept.key_id().ok(), "the same data key");
    assert_eq!(key_count(&store).await, 1);
    // Once seen committed (looked for on the 2nd, 4th, 8th... seal, whenever a
    // pooled connection happens to be free), the row is no longer rewritten.
    // The check uses a connection only if one is idle; open a second one so
    // that there is, however the pool has grown so far on this machine.
    {
        let first = store.pool().acquire().await.expect("connection");
        let second = store.pool().acquire().await.expect("connection");
        drop((first, second));
    }
    let mut confirmed = false;
    for n in 2..256 {
        seal_committed(&vault, &context(n), BUNDLE, &clock_at(0)).await;
        confirmed = lock(&vault.inner.sealing)
            .as_ref()
            .is_some_and(|k| k.unconfirmed.is_none());
        if confirmed {
            break;
        }
    }
    assert!(confirmed, "the committed key row is eventually recognised");

    let fresh = Vault::new(
        identity,
        store,
        RotationPolicy::default(),
        crate::randomness::os(),
    );
    assert_eq!(
        &fresh.unseal(&context(1), &kept).await.expect("unseal")[..],
        BUNDLE
    );
}

/// Two replicas (two vaults on one database), each with several tasks sealing at
/// once, rotating every other seal: every record opens afterwards.
async fn concurrent_replicas_race_at_rotation(store: Store) {
    let identity = age::x25519::Identity::generate();
    let policy = RotationPolicy {
        max_seals_per_key: 2,
        ..RotationPolicy::default()
    };
    let replicas = [
        vault(&store, &identity, policy),
        vault(&store, &identity, policy),
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..8 {
        let vault = replicas[task % 2].clone();
        tasks.spawn(async move {
            let mut sealed = Vec::new();
            for i in 0..5 {
                let n = task * 100 + i;
                let plaintext = format!("record {n}").into_bytes();
                sealed.push((
                    n,
                    seal_committed(&vault, &context(n), &plaintext, &clock_at(0)).await,
                ));
            }
            sealed
        });
    }
    let sealed: Vec<(usize, Sealed)> = tasks.join_all().await.into_iter().flatten().collect();
    assert_eq!(sealed.len(), 40);
    assert!(key_count(&store).await >= 20, "40 seals, 2 per key");

    let fresh = Vault::new(identity, store, policy, crate::randomness::os());
    for (n, value) in &sealed {
        let opened = fresh.unseal(&context(*n), value).await.expect("unseal");
        assert_eq!(&opened[..], format!("record {n}").as_bytes());
    }
}

async fn rewrap_to_a_new_identity(store: Store) {
    let old = age::x25519::Identity::generate();
    let new = age::x25519::Identity::generate();
    let policy = RotationPolicy {
        max_seals_per_key: 1,
        ..RotationPolicy::default()
    };
    let vault = vault(&store, &old, policy);
    let mut sealed = Vec::new();
    for n in 0..3 {
        sealed.push(seal_committed(&vault, &context(n), BUNDLE, &clock_at(0)).await);
    }
    let report = vault
        .rewrap(&new.to_public(), &clock_at(1))
        .await
        .expect("rewrap");
    assert_eq!(report.rewrapped, 3);
    let again = vault
        .rewrap(&new.to_public(), &clock_at(2))
        .await
        .expect("re-run");
    assert_eq!(again.rewrapped, 0, "nothing left to do");

    let after = Vault::new(new, store.clone(), policy, crate::randomness::os());
    let before = Vault::new(old, store, policy, crate::randomness::os());
    for (n, value) in sealed.iter().enumerate() {
        assert_eq!(
            &after.unseal(&context(n), value).await.expect("unseal")[..],
            BUNDLE
        );
        assert!(matches!(
            before.unseal(&context(n), value).await,
            Err(VaultError::Unwrap { .. })
        ));
    }
}

/// Everything a database file holds: the file, its WAL and shared memory.
fn database_bytes(path: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        if let Ok(content) = std::fs::read(&file) {
            bytes.extend(content);
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn no_identifier_or_data_key_rests_in_the_sqlite_file() {
    let db = SqliteDb::new().await;
    sqlx::query("CREATE TABLE sealed_rows (id TEXT PRIMARY KEY NOT NULL, sealed BLOB NOT NULL)")
        .execute(db.store.pool())
        .await
        .expect("create table");
    let identity = age::x25519::Identity::generate();
    let vault = vault(&db.store, &identity, RotationPolicy::default());
    let mut tx = db.store.begin().await.expect("begin");
    for n in 0..50 {
        let sealed = vault
            .seal(&mut tx, &context(n), BUNDLE, &clock_at(0))
            .await
            .expect("seal");
        for identifier in IDENTIFIERS {
            assert!(!contains(sealed.as_bytes(), identifier.as_bytes()));
        }
        sqlx::query("INSERT INTO sealed_rows (id, sealed) VALUES ($1, $2)")
            .bind(n.to_string())
            .bind(sealed.into_bytes())
            .execute(&mut *tx)
            .await
            .expect("insert");
    }
    tx.commit().await.expect("commit");

    let row = sqlx::query("SELECT id, wrapped FROM vault_keys")
        .fetch_one(db.store.pool())
        .await
        .expect("the data key");
    let key_id: String = row.try_get("id").expect("id");
    let wrapped: Vec<u8> = row.try_get("wrapped").expect("wrapped");
    let data_key =
        unwrap_key(&identity, parse_key_id(&key_id).expect("uuid"), &wrapped).expect("unwrap");

    let file = database_bytes(&db.path);
    assert!(
        contains(&file, &wrapped),
        "sanity: the search sees what was written"
    );
    for identifier in IDENTIFIERS {
        assert!(
            !contains(&file, identifier.as_bytes()),
            "{identifier} found in the database file"
        );
    }
    assert!(
        !contains(&file, &data_key[..]),
        "a raw data key in the database file"
    );
}

#[tokio::test]
async fn debug_shows_no_key_material() {
    let db = SqliteDb::new().await;
    let identity = age::x25519::Identity::generate();
    let vault = vault(&db.store, &identity, RotationPolicy::default());
    let sealed = seal_committed(&vault, b"identities:1", BUNDLE, &clock_at(0)).await;
    let printed = format!("{vault:?} {vault:#?} {sealed:?}");
    let secret = identity.to_string();
    let secret: &str = age::secrecy::ExposeSecret::expose_secret(&secret);
    assert!(!printed.contains(secret));
    assert!(!printed.contains("AGE-SECRET-KEY"));
    assert!(!printed.contains(&hex::encode(sealed.as_bytes())[..32]));
    assert_eq!(
        format!("{sealed:?}"),
        format!("Sealed {{ version: Some(1), len: {} }}", BUNDLE.len() + 57)
    );
    let error = vault
        .unseal(b"identities:2", &sealed)
        .await
        .expect_err("wrong context");
    assert!(!format!("{error} {error:?}").contains("Jane"));
}

#[test]
fn key_cache_is_bounded_and_evicts_the_least_recently_used() {
    let cipher = || Arc::new(XChaCha20Poly1305::new(&[7u8; 32].into()));
    let [a, b, c] = [1u128, 2, 3].map(uuid::Uuid::from_u128);
    let mut cache = KeyCache::new(2);
    cache.insert(a, cipher());
    cache.insert(b, cipher());
    assert!(cache.get(a).is_some());
    cache.insert(c, cipher());
    assert_eq!(cache.len(), 2);
    assert!(cache.get(b).is_none(), "b was least recently used");
    assert!(cache.get(a).is_some() && cache.get(c).is_some());
}

#[test]
fn default_policy_rotates_daily_or_every_100k_seals() {
    let policy = RotationPolicy::default();
    assert_eq!(policy.max_seals_per_key, 100_000);
    assert_eq!(policy.max_key_age, Duration::from_hours(24));
}
