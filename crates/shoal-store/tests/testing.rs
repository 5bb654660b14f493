//! The test databases: each is dropped by the test that made it, when its handle goes.

/// Whether PostgreSQL has a database of this name.
async fn exists(name: &str) -> bool {
    let admin = sqlx::PgPool::connect(&shoal_store::testing::base_url()).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_database WHERE datname = $1").bind(name).fetch_one(&admin).await.unwrap();
    admin.close().await;
    n > 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_test_databases_go_with_their_handle() {
    let Some(db) = shoal_store::testing::fresh_postgres("drop").await else { return };
    let name = db.rsplit('/').next().unwrap().split('?').next().unwrap().to_string();
    assert!(exists(&name).await, "{name} was made");
    // In use when the handle goes (a test's server still holds connections): dropped anyway.
    let store = shoal_store::open(&db).await.unwrap();
    store.list_hosts(None).await.unwrap();
    drop(db);
    assert!(!exists(&name).await, "{name} is left behind");
}
