//! The swarm tracker's shared state (`swarm_peers`) on SQLite and PostgreSQL: leases up to
//! the limit, holders named once they announce, fallbacks, releases and expiry; on
//! PostgreSQL, two handles on one database (two replicas) see one swarm and never give out
//! more leases than the limit however the askers race.

use std::sync::Arc;

use shoal_store::*;

async fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    (open(&url).await.unwrap(), dir)
}

const BLOB: &str = "b";

async fn leases_then_holders(s: Arc<dyn Store>) {
    let now = 1_000;
    let ask = |host, fallback, at| {
        let s = s.clone();
        async move { s.swarm_ask(BLOB, host, 2, at + 60_000, fallback, at).await.unwrap() }
    };
    assert_eq!(ask(1, false, now).await, (true, vec![]));
    assert_eq!(ask(2, false, now).await, (true, vec![]));
    assert_eq!(ask(3, false, now).await, (false, vec![]), "two leases out: the third waits");
    assert!(ask(1, false, now).await.0, "asking again keeps one's own lease");
    assert!(ask(3, true, now).await.0, "could not reach anyone: let through");
    s.swarm_announce(BLOB, 1, "10.0.0.1:7000", "c1", now + 60_000, now).await.unwrap();
    assert_eq!(ask(4, false, now).await, (false, vec![("10.0.0.1:7000".to_string(), "c1".to_string())]));
    assert!(ask(1, false, now).await.1.is_empty(), "a holder is not told to fetch from itself");
    s.swarm_release(BLOB, 1).await.unwrap();
    assert!(ask(4, false, now).await.1.is_empty(), "a holder that withdrew is no longer named");
    // Leases and holders expire.
    s.swarm_announce(BLOB, 5, "10.0.0.5:7000", "c5", now + 1_000, now).await.unwrap();
    assert_eq!(ask(6, false, now + 500).await.1.len(), 1);
    let later = now + 120_000;
    assert_eq!(ask(6, false, later).await, (true, vec![]), "everything expired: a lease again");
}

mod leases_then_holders {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        let (s, _dir) = super::sqlite().await;
        super::leases_then_holders(s).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        if let Some(db) = shoal_store::testing::fresh_postgres("sw").await {
            super::leases_then_holders(shoal_store::open(&db).await.unwrap()).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_share_one_swarm_on_postgres() {
    let Some(url) = shoal_store::testing::fresh_postgres("sw2").await else { return };
    let (a, b) = (open(&url).await.unwrap(), open(&url).await.unwrap());
    let now = 1_000;
    // Forty targets asking at once through two replicas: exactly four leases.
    let asks: Vec<_> = (0..40)
        .map(|host| {
            let s = if host % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { s.swarm_ask("x", host, 4, now + 60_000, false, now).await.unwrap().0 })
        })
        .collect();
    let mut direct = 0;
    for t in asks {
        direct += usize::from(t.await.unwrap());
    }
    assert_eq!(direct, 4);
    // A holder announced through one replica is named through the other.
    a.swarm_announce("x", 0, "10.0.0.9:7000", "c", now + 60_000, now).await.unwrap();
    assert_eq!(b.swarm_ask("x", 39, 4, now + 60_000, false, now).await.unwrap().1.len(), 1);
}
