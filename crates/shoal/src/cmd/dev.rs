//! `shoal dev`: a server on an embedded store plus a few local agents in one process, an
//! app and an execution account for the current OS user ready; prints what to type next.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use shoal_agent::AgentConfig;
use shoal_client::{Client, ClientConfig, PathStyle, Scope};
use shoal_proto::agent::HostFacts;
use shoal_proto::jobv3::ServerDto;
use shoal_proto::status::ScriptLanguage;
use shoal_server::ServerConfig;
use shoal_store::AccountRow;
use tokio::sync::watch;

use crate::cli::DevArgs;
use crate::client_config::current_os_user;

const DEV_BIZ: i64 = 1;
const DEV_APP: &str = "shoal-dev";

fn dev_secret(dir: &std::path::Path) -> anyhow::Result<String> {
    let path = dir.join("dev-app-secret");
    if let Ok(s) = std::fs::read_to_string(&path) {
        if !s.trim().is_empty() {
            return Ok(s.trim().to_string());
        }
    }
    let secret = shoal_server::auth::random_secret();
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path)?;
        writeln!(f, "{secret}")?;
    }
    Ok(secret)
}

/// The dev admin user for the web console (`dev`, a random password kept in the data dir,
/// mode 0600), made at first start (an admin: every account and business is theirs). Answers
/// how to log in.
async fn dev_console_user(shared: &shoal_server::Shared, dir: &std::path::Path) -> anyhow::Result<String> {
    const NAME: &str = "dev";
    let path = dir.join("dev-console-password");
    let kept = std::fs::read_to_string(&path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let password = match (kept, shared.store.get_user(NAME).await?) {
        (Some(p), Some(_)) => p,
        _ => {
            let password = shoal_server::auth::random_token()[..20].to_string();
            let hash =
                shoal_server::auth::password::hash_password(&password).map_err(|e| anyhow::anyhow!("hashing the dev password: {e}"))?;
            let now = shoal_core::time::now_ms();
            match shared.store.get_user(NAME).await? {
                Some(_) => shared.store.set_user_password(NAME, &hash, now).await?,
                None => {
                    let row = shoal_store::users::UserRow {
                        username: NAME.into(),
                        password_hash: hash,
                        is_admin: true,
                        created_by: "shoal dev".into(),
                        created_at: now,
                        disabled_at: None,
                    };
                    shared.store.create_user(&row).await?;
                }
            }
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path)?;
            writeln!(f, "{password}")?;
            password
        }
    };
    Ok(format!("{NAME} / {password}"))
}

/// This binary as the reader should type it: `shoal` when that name on the PATH is this very
/// binary, else its absolute path (after `cargo run` it is under target/, on no PATH), so
/// every line printed to type next works as printed.
fn me_as_typed(path: Option<&std::ffi::OsStr>) -> (String, bool) {
    let me = std::env::current_exe().and_then(std::fs::canonicalize).ok();
    let on_path = path
        .into_iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("shoal"))
        .find(|p| p.is_file())
        .and_then(|p| std::fs::canonicalize(p).ok());
    match me {
        Some(me) if on_path.as_ref() != Some(&me) => (shell_quoted(&me.display().to_string()), false),
        _ => ("shoal".into(), true),
    }
}

/// `s` as one shell word.
fn shell_quoted(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+:@%".contains(&b)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

pub async fn run(a: DevArgs) -> anyhow::Result<u8> {
    anyhow::ensure!((1..=50).contains(&a.agents), "--agents must be between 1 and 50");
    std::fs::create_dir_all(&a.data_dir).with_context(|| format!("creating {}", a.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&a.data_dir)?;
    let secret = dev_secret(&data_dir)?;
    let user = current_os_user();

    let listener = match tokio::net::TcpListener::bind(&a.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("note: {} is taken ({e}); using a free port", a.listen);
            tokio::net::TcpListener::bind("127.0.0.1:0").await?
        }
    };
    let addr = listener.local_addr()?;
    let url = format!("http://{addr}");
    let cfg = ServerConfig {
        listen: addr.to_string(),
        data_dir: Some(data_dir.clone()),
        bootstrap_app: Some(format!("{DEV_APP}:{secret}")),
        agent_lost_grace_secs: 5,
        ..ServerConfig::default()
    };
    let shared = shoal_server::prepare(cfg).await?;
    let now = shoal_core::time::now_ms();
    if shared.store.get_account_by_alias("biz", &DEV_BIZ.to_string(), &user).await?.is_none() {
        shared
            .store
            .create_account(&AccountRow {
                id: 0,
                scope_type: "biz".into(),
                scope_id: DEV_BIZ.to_string(),
                account: user.clone(),
                alias: user.clone(),
                category: 1,
                account_type: 1,
                description: Some("created by shoal dev".into()),
                creator: user.clone(),
                create_time: now,
                last_modify_user: user.clone(),
                last_modify_time: now,
            })
            .await?;
    }

    let console_login = dev_console_user(&shared, &data_dir).await?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let server = tokio::spawn(shoal_server::serve(shared.clone(), listener, stopped(stop_rx.clone())));
    let mut agents = Vec::new();
    for i in 0..a.agents {
        let mut labels = BTreeMap::new();
        labels.insert("env".to_string(), "dev".to_string());
        labels.insert("role".to_string(), if i % 2 == 0 { "web" } else { "db" }.to_string());
        let facts = HostFacts {
            bk_biz_id: DEV_BIZ,
            bk_cloud_id: 0,
            ip: format!("127.0.0.{}", 11 + i),
            set_id: Some(1),
            module_id: Some(1 + (i as i64 % 2)),
            labels,
            hostname: format!("dev-{}", i + 1),
            os: std::env::consts::OS.into(),
        };
        let acfg = AgentConfig::new(vec![url.clone()], shared.agent_token.clone(), data_dir.join(format!("agent-{}", i + 1)), facts);
        agents.push(tokio::spawn(shoal_agent::run(acfg, stopped(stop_rx.clone()))));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while shared.gateway.connected_set().len() < a.agents {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "dev agents did not connect within 20s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut host_ids: Vec<i64> = shared.gateway.connected_set().into_iter().collect();
    host_ids.sort_unstable();

    let code = match &a.run {
        Some(cmd) => {
            let client = Client::new(ClientConfig {
                url: url.clone(),
                app_code: DEV_APP.into(),
                app_secret: secret.clone(),
                username: user.clone(),
                token: None,
                style: PathStyle::Gateway,
                timeout: Duration::from_secs(60),
                language: Some("en".into()),
            })?;
            let scope = Scope::biz(DEV_BIZ);
            let target = ServerDto { host_id_list: Some(host_ids.clone()), ..Default::default() };
            println!("shoal dev: {} agents up at {url}; running on hosts {host_ids:?} as {user}", a.agents);
            println!("shoal dev: web console {url}/console/ (log in as {console_login})");
            let job = client.run_script(&scope, ScriptLanguage::Shell as i32, cmd.as_bytes(), None, &user, target, Some(600), None).await?;
            super::run::show_job(&client, &scope, job.job_instance_id, false).await?
        }
        None => {
            // JOB's history query needs a creation-time range of at most 30 days.
            let day = 86_400_000;
            let (since, until) = (shoal_core::time::now_ms() - 29 * day, shoal_core::time::now_ms() + day);
            let (shoal, on_path) = me_as_typed(std::env::var_os("PATH").as_deref());
            let how = if on_path {
                String::new()
            } else {
                " (shoal is not on your PATH, so by its path; scripts/install or `cargo install --locked --path crates/shoal` puts it there)".into()
            };
            println!(
                "\nShoal dev is up: server {url}, {} agents (hosts {host_ids:?}), business {DEV_BIZ}, account {user:?}.\n\n\
                 Web console: {url}/console/ (log in as {console_login}).\n\n\
                 In another terminal{how}:\n\n  \
                 export SHOAL_URL={url} SHOAL_APP_CODE={DEV_APP} SHOAL_APP_SECRET={secret}\n  \
                 {shoal} host list\n  \
                 {shoal} run --all -c 'uptime'\n  \
                 {shoal} run --selector role=web -c 'echo hi from $(hostname)'\n\n\
                 Or through the JOB v3 API, as a BlueKing caller would:\n\n  \
                 curl -s {url}/api/v3/get_job_instance_list -G -d bk_scope_type=biz -d bk_scope_id={DEV_BIZ} \\\n    \
                 -d create_time_start={since} -d create_time_end={until} \\\n    \
                 -H 'X-Bkapi-Authorization: {{\"bk_app_code\":\"{DEV_APP}\",\"bk_app_secret\":\"{secret}\",\"bk_username\":\"{user}\"}}'\n\n\
                 Ctrl-C stops everything.",
                a.agents
            );
            super::shutdown_signal().await;
            0
        }
    };
    let _ = stop_tx.send(true);
    for a in agents {
        let _ = tokio::time::timeout(Duration::from_secs(5), a).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binary_is_named_as_it_can_be_typed() {
        let dir = tempfile::tempdir().unwrap();
        // Not on the PATH: its absolute path.
        let (typed, on_path) = me_as_typed(Some(dir.path().as_os_str()));
        assert!(!on_path && typed.starts_with('/'), "{typed}");
        // On the PATH (a link to this very binary): its name.
        std::os::unix::fs::symlink(std::env::current_exe().unwrap(), dir.path().join("shoal")).unwrap();
        assert_eq!(me_as_typed(Some(dir.path().as_os_str())), ("shoal".to_string(), true));
        assert_eq!(shell_quoted("/a b/it's"), "'/a b/it'\\''s'");
        assert_eq!(shell_quoted("/usr/local/bin/shoal"), "/usr/local/bin/shoal");
    }
}
