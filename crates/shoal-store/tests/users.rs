//! People storage on SQLite and PostgreSQL: users, tokens and sessions, the trusted-gateway
//! mark of apps, apps' access tokens.

use std::sync::Arc;

use shoal_store::users::*;
use shoal_store::*;

async fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    (open(&url).await.unwrap(), dir)
}

macro_rules! both {
    ($($name:ident),*) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let (s, _dir) = super::sqlite().await;
                super::$name(s).await;
            }
            #[tokio::test]
            async fn postgres() {
                if let Some(db) = shoal_store::testing::fresh_postgres("us").await {
                    super::$name(shoal_store::open(&db).await.unwrap()).await;
                }
            }
        }
    )*};
}

both!(users_tokens_and_sessions, gateway_mark, app_access_tokens);

fn user(name: &str) -> UserRow {
    UserRow {
        username: name.into(),
        password_hash: "$argon2id$x".into(),
        is_admin: false,
        created_by: "root".into(),
        created_at: 1,
        disabled_at: None,
    }
}

fn token(id: &str, hash: &str, who: &str, kind: TokenKind, expires_at: Option<i64>) -> TokenRow {
    TokenRow {
        id: id.into(),
        token_hash: hash.into(),
        username: who.into(),
        kind,
        name: "n".into(),
        created_at: 5,
        expires_at,
        revoked_at: None,
    }
}

async fn users_tokens_and_sessions(s: Arc<dyn Store>) {
    s.create_user(&user("alice")).await.unwrap();
    assert!(matches!(s.create_user(&user("alice")).await, Err(StoreError::Conflict(_))));
    s.create_token(&token("t1", "h1", "alice", TokenKind::Api, None)).await.unwrap();
    s.create_token(&token("s1", "hs1", "alice", TokenKind::Session, Some(100))).await.unwrap();
    let (t, u) = s.token_principal("h1").await.unwrap().unwrap();
    assert_eq!((t.id.as_str(), t.kind, t.created_at, u.username.as_str()), ("t1", TokenKind::Api, 5, "alice"));
    assert!(t.live(10));
    let (t, _) = s.token_principal("hs1").await.unwrap().unwrap();
    assert!(t.live(99) && !t.live(100), "expires at expires_at");
    assert!(s.token_principal("nope").await.unwrap().is_none());
    assert_eq!(s.list_tokens(Some("alice"), TokenKind::Api).await.unwrap().len(), 1);

    assert!(!s.revoke_token("t1", Some("bob"), 7).await.unwrap(), "only the owner's");
    assert!(s.revoke_token("t1", Some("alice"), 7).await.unwrap());
    assert!(!s.revoke_token("t1", None, 8).await.unwrap(), "once");
    assert_eq!(s.token_principal("h1").await.unwrap().unwrap().0.revoked_at, Some(7));

    s.set_user_password("alice", "$argon2id$y", 9).await.unwrap();
    assert_eq!(s.token_principal("hs1").await.unwrap().unwrap().0.revoked_at, Some(9), "a new password ends sessions");
    assert_eq!(s.get_user("alice").await.unwrap().unwrap().password_hash, "$argon2id$y");
    s.set_user_disabled("alice", Some(10)).await.unwrap();
    assert_eq!(s.token_principal("hs1").await.unwrap().unwrap().1.disabled_at, Some(10));
    assert!(matches!(s.set_user_disabled("bob", None).await, Err(StoreError::NotFound(_))));
    assert_eq!(s.list_users().await.unwrap().len(), 1);
}

async fn gateway_mark(s: Arc<dyn Store>) {
    let app = AppRow { code: "esb".into(), salt: "s".into(), secret_hash: "h".into(), is_admin: false, created_at: 1 };
    s.create_app(&app, "").await.unwrap();
    assert_eq!(s.gateway_and_user("esb", "carol").await.unwrap(), (false, None), "apps are not gateways by default");
    s.set_app_gateway("esb", true).await.unwrap();
    s.create_user(&user("carol")).await.unwrap();
    let (gw, u) = s.gateway_and_user("esb", "carol").await.unwrap();
    assert!(gw && s.app_is_gateway("esb").await.unwrap());
    assert_eq!(s.list_gateways().await.unwrap(), vec!["esb".to_string()]);
    assert_eq!(u.unwrap().username, "carol");
    assert_eq!(s.gateway_and_user("esb", "dan").await.unwrap(), (true, None));
    s.revoke_app("esb", 3).await.unwrap();
    assert_eq!(s.gateway_and_user("esb", "carol").await.unwrap(), (false, None), "a revoked app is nothing");
    assert!(matches!(s.set_app_gateway("nobody", true).await, Err(StoreError::NotFound(_))));
}

fn app_token(id: &str, hash: &str, app: &str, expires_at: i64) -> AppTokenRow {
    AppTokenRow {
        id: id.into(),
        token_hash: hash.into(),
        app_code: app.into(),
        created_by: "root".into(),
        created_at: 5,
        expires_at,
        revoked_at: None,
    }
}

async fn app_access_tokens(s: Arc<dyn Store>) {
    for code in ["ci", "ops"] {
        let app = AppRow { code: code.into(), salt: "s".into(), secret_hash: "h".into(), is_admin: false, created_at: 1 };
        s.create_app(&app, "").await.unwrap();
    }
    s.create_app_token(&app_token("t1", "h1", "ci", 100)).await.unwrap();
    s.create_app_token(&app_token("t2", "h2", "ci", 200)).await.unwrap();
    s.create_app_token(&app_token("t3", "h3", "ops", 300)).await.unwrap();
    assert!(s.create_app_token(&app_token("t4", "h1", "ops", 300)).await.is_err(), "a token hash is unique");
    let t = s.app_token("h1").await.unwrap().unwrap();
    assert_eq!((t.id.as_str(), t.app_code.as_str(), t.expires_at), ("t1", "ci", 100));
    assert!(t.live(99) && !t.live(100));
    assert_eq!(s.app_token("nope").await.unwrap(), None);
    let ids = |v: Vec<AppTokenRow>| v.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(ids(s.list_app_tokens(Some("ci")).await.unwrap()), ["t1", "t2"]);
    assert_eq!(ids(s.list_app_tokens(None).await.unwrap()), ["t1", "t2", "t3"]);
    // Another app's token is not revoked on its behalf; a revoked one is not revoked again.
    assert!(!s.revoke_app_token("t3", Some("ci"), 7).await.unwrap());
    assert!(s.revoke_app_token("t2", Some("ci"), 7).await.unwrap());
    assert!(!s.revoke_app_token("t2", None, 8).await.unwrap());
    let t2 = s.app_token("h2").await.unwrap().unwrap();
    assert_eq!(t2.revoked_at, Some(7));
    assert!(!t2.live(0));
    // A revoked app's tokens are not found at all.
    s.revoke_app("ops", 9).await.unwrap();
    assert_eq!(s.app_token("h3").await.unwrap(), None);
}
