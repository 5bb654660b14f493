//! Client settings: flags, then `SHOAL_URL` / `SHOAL_APP_CODE` / `SHOAL_APP_SECRET` /
//! `SHOAL_USERNAME` / `SHOAL_BIZ`, then the file named by `SHOAL_CLIENT_CONFIG` or
//! `~/.config/shoal/client.toml`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use shoal_client::{Client, ClientConfig, PathStyle};

use crate::cli::ClientArgs;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub url: Option<String>,
    pub app_code: Option<String>,
    pub app_secret: Option<String>,
    pub username: Option<String>,
    pub biz: Option<i64>,
}

pub fn default_path() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("SHOAL_CLIENT_CONFIG") {
        return Some(PathBuf::from(p));
    }
    std::env::var("HOME").ok().map(|h| PathBuf::from(h).join(".config/shoal/client.toml"))
}

pub struct Resolved {
    pub client: Client,
    pub biz: i64,
}

pub fn current_os_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "root".into())
}

pub fn resolve(args: &ClientArgs) -> anyhow::Result<Resolved> {
    let file: FileConfig = match default_path() {
        Some(p) if p.exists() => {
            let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))?
        }
        _ => FileConfig::default(),
    };
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let url = args.url.clone().or_else(|| env("SHOAL_URL")).or(file.url).unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let app_code = env("SHOAL_APP_CODE").or(file.app_code).context(
        "no app credentials: set SHOAL_APP_CODE and SHOAL_APP_SECRET (shoal dev prints them), or write ~/.config/shoal/client.toml",
    )?;
    let app_secret = env("SHOAL_APP_SECRET").or(file.app_secret).context("SHOAL_APP_SECRET is not set")?;
    let username = env("SHOAL_USERNAME").or(file.username).unwrap_or_else(current_os_user);
    let biz = args.biz.or_else(|| env("SHOAL_BIZ").and_then(|b| b.parse().ok())).or(file.biz).unwrap_or(1);
    let client = Client::new(ClientConfig {
        url,
        app_code,
        app_secret,
        username,
        style: PathStyle::Gateway,
        timeout: Duration::from_secs(60),
        language: Some("en".into()),
    })?;
    Ok(Resolved { client, biz })
}
