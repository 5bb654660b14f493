//! Client settings: flags, then `SHOAL_URL` / `SHOAL_TOKEN` / `SHOAL_APP_CODE` /
//! `SHOAL_APP_SECRET` / `SHOAL_USERNAME` / `SHOAL_BIZ`, then the file named by
//! `SHOAL_CLIENT_CONFIG` or `~/.config/shoal/client.toml`.
//!
//! Credentials are either a Shoal user's token (`SHOAL_TOKEN`, `token`: a personal API token
//! from `shoal user token create`) or an app's code and secret; the environment wins over the
//! file, and within each a token wins over app credentials.

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
    /// A Shoal user's API token (instead of app_code / app_secret).
    pub token: Option<String>,
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
    let (app_code, app_secret, token) =
        credentials((env("SHOAL_TOKEN"), env("SHOAL_APP_CODE"), env("SHOAL_APP_SECRET")), (file.token, file.app_code, file.app_secret))?;
    let username = env("SHOAL_USERNAME").or(file.username).unwrap_or_else(current_os_user);
    let env_biz = match env("SHOAL_BIZ") {
        Some(b) => Some(b.trim().parse::<i64>().map_err(|_| anyhow::anyhow!("SHOAL_BIZ={b:?} is not a business id (a number)"))?),
        None => None,
    };
    let biz = args.biz.or(env_biz).or(file.biz).unwrap_or(1);
    let client = Client::new(ClientConfig {
        url,
        app_code,
        app_secret,
        username,
        token,
        style: PathStyle::Gateway,
        timeout: Duration::from_secs(60),
        language: Some("en".into()),
    })?;
    Ok(Resolved { client, biz })
}

type Creds = (Option<String>, Option<String>, Option<String>);

/// `(app_code, app_secret, token)` from `(token, app_code, app_secret)` of the environment,
/// then of the file.
fn credentials(env: Creds, file: Creds) -> anyhow::Result<(String, String, Option<String>)> {
    let secret = env.2.or(file.2);
    for (token, code) in [(env.0, env.1), (file.0, file.1)] {
        if let Some(t) = token {
            return Ok((String::new(), String::new(), Some(t)));
        }
        if let Some(code) = code {
            let secret = secret.context("an app code without its secret: set SHOAL_APP_SECRET (or app_secret)")?;
            return Ok((code, secret, None));
        }
    }
    anyhow::bail!(
        "no credentials: set SHOAL_TOKEN (shoal user token create), or SHOAL_APP_CODE and SHOAL_APP_SECRET (shoal dev prints them), or write ~/.config/shoal/client.toml"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_then_file_token_before_app() {
        let s = |v: &str| Some(v.to_string());
        let (c, _, t) = credentials((None, None, None), (s("tok"), s("app"), s("sec"))).unwrap();
        assert_eq!((c.as_str(), t.as_deref()), ("", Some("tok")));
        let (c, sec, t) = credentials((None, s("app"), s("sec")), (s("tok"), None, None)).unwrap();
        assert_eq!((c.as_str(), sec.as_str(), t), ("app", "sec", None));
        assert!(credentials((None, s("app"), None), (None, None, None)).is_err());
        assert!(credentials((None, None, None), (None, None, None)).is_err());
    }
}
