//! Databases for the library's own tests.

use super::Store;

/// A fresh, migrated PostgreSQL database on the server `TEST_DATABASE_URL`
/// names, or `None` (the test skips PostgreSQL) when it is unset — which CI
/// refuses: there, every test must run on both backends.
pub(crate) async fn postgres_store(test: &str) -> Option<Store> {
    use sqlx::Connection as _;
    let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
        assert!(
            std::env::var("CI").is_err(),
            "{test}: CI must run the PostgreSQL tests: set TEST_DATABASE_URL"
        );
        eprintln!("SKIPPED {test} on PostgreSQL: set TEST_DATABASE_URL=postgres://...");
        return None;
    };
    let name = format!("crosswalk_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("connect to TEST_DATABASE_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create the test database");
    let mut url = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
    url.set_path(&name);
    let store = Store::connect(url.as_str()).await.expect("connect");
    store.migrate().await.expect("migrate");
    Some(store)
}
