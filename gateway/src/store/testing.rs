//! Databases and fixture rows for the library's own tests.

use super::{Store, Tx};

/// A fresh, migrated PostgreSQL database on the server `TEST_DATABASE_URL`
/// names, or `None` (the test skips PostgreSQL) when it is unset — which CI
/// refuses: there, every test must run on both backends.
pub(crate) async fn postgres_store(test: &str) -> Option<Store> {
    let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
        assert!(
            std::env::var("CI").is_err(),
            "{test}: CI must run the PostgreSQL tests: set TEST_DATABASE_URL"
        );
        eprintln!("SKIPPED {test} on PostgreSQL: set TEST_DATABASE_URL=postgres://...");
        return None;
    };
    let url = create_postgres_database(&admin_url).await;
    let store = Store::connect(&url).await.expect("connect");
    store.migrate().await.expect("migrate");
    Some(store)
}

/// Creates an empty database on the server `admin_url` names; returns its URL.
pub(crate) async fn create_postgres_database(admin_url: &str) -> String {
    use sqlx::Connection as _;
    let name = format!(
        "crosswalk_test_{}",
        crate::randomness::unique_name_suffix(&crate::randomness::OsRandomness)
            .expect("randomness")
    );
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .expect("connect to TEST_DATABASE_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create the test database");
    let mut url = url::Url::parse(admin_url).expect("TEST_DATABASE_URL is a URL");
    url.set_path(&name);
    url.to_string()
}

/// Subject `s` and its identity `i` (sealed as one zero byte), which rows
/// written by hand for a test can point at.
pub(crate) async fn insert_person(tx: &mut Tx<'_>) {
    sqlx::query("INSERT INTO subjects (id, created_at) VALUES ('s', 0)")
        .execute(&mut **tx)
        .await
        .expect("subject");
    sqlx::query(
        "INSERT INTO identities (id, subject_id, source_partner, sealed, fingerprint, \
         key_version, linkable, created_at) VALUES ('i', 's', 'pd', $1, $1, 1, 0, 0)",
    )
    .bind(vec![0_u8])
    .execute(&mut **tx)
    .await
    .expect("identity");
}
