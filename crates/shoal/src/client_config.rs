//! Client settings: flags (`--url`, `--app-code`, `--username`, `--biz`), then `SHOAL_URL` /
//! `SHOAL_TOKEN` / `SHOAL_APP_CODE` / `SHOAL_APP_SECRET` / `SHOAL_USERNAME` / `SHOAL_BIZ`, then
//! the file: `SHOAL_CLIENT_CONFIG`, else `$XDG_CONFIG_HOME/shoal/config.toml` (XDG's default
//! is `~/.config`); a `~/.config/shoal/client.toml` from before is read when there is no
//! `config.toml`. `shoal config init` writes the file, `shoal config show` prints the result.
//!
//! Credentials are either a Shoal user's token (`SHOAL_TOKEN`, `token`: a personal API token
//! from `shoal user token create`) or an app's code and secret; the environment wins over the
//! file, and within each a token wins over app credentials. An app code given as a flag
//! names the credentials outright (its secret from the environment or the file).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use shoal_client::{Client, ClientConfig, PathStyle};

use crate::cli::ClientArgs;

pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_secret: Option<String>,
    /// A Shoal user's API token (instead of app_code / app_secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub biz: Option<i64>,
    /// PEM CA bundle that signed the server's certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
}

/// The environment, as a function (tests give their own).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, empty values counting as unset.
pub fn process_env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

/// Where `shoal config init` writes: `SHOAL_CLIENT_CONFIG`, else
/// `$XDG_CONFIG_HOME/shoal/config.toml`, else `~/.config/shoal/config.toml`.
pub fn standard_path(env: Env) -> Option<PathBuf> {
    if let Some(p) = env("SHOAL_CLIENT_CONFIG") {
        return Some(PathBuf::from(p));
    }
    // XDG: a relative XDG_CONFIG_HOME is invalid and ignored.
    let base = env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("shoal/config.toml"))
}

/// The client's settings file (it may not exist): the standard path, or the
/// `~/.config/shoal/client.toml` of earlier versions while the standard one is absent.
pub fn file_path(env: Env) -> Option<PathBuf> {
    let current = standard_path(env)?;
    if env("SHOAL_CLIENT_CONFIG").is_some() {
        return Some(current);
    }
    match env("HOME").map(|h| PathBuf::from(h).join(".config/shoal/client.toml")) {
        Some(old) if !current.exists() && old.exists() => Some(old),
        _ => Some(current),
    }
}

pub fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag(&'static str),
    Env(&'static str),
    File,
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Flag(n) => write!(f, "flag {n}"),
            Source::Env(n) => write!(f, "env {n}"),
            Source::File => f.write_str("config file"),
            Source::Default => f.write_str("default"),
        }
    }
}

/// A setting's value and where it came from.
pub type Sourced<T> = Option<(T, Source)>;

/// The effective client settings, before any check that they are enough to call.
pub struct Effective {
    /// The settings file and whether it was there.
    pub file: Option<(PathBuf, bool)>,
    pub url: (String, Source),
    pub token: Sourced<String>,
    pub app_code: Sourced<String>,
    pub app_secret: Sourced<String>,
    pub username: (String, Source),
    pub biz: (i64, Source),
    pub ca: Sourced<PathBuf>,
}

fn pick<T>(flag: Option<T>, flag_name: &'static str, env: Option<T>, env_name: &'static str, file: Option<T>) -> Sourced<T> {
    flag.map(|v| (v, Source::Flag(flag_name)))
        .or_else(|| env.map(|v| (v, Source::Env(env_name))))
        .or_else(|| file.map(|v| (v, Source::File)))
}

pub fn effective(args: &ClientArgs, env: Env) -> anyhow::Result<Effective> {
    let path = file_path(env);
    let exists = path.as_ref().is_some_and(|p| p.exists());
    let file = match &path {
        Some(p) if exists => read_file(p)?,
        _ => FileConfig::default(),
    };
    let env_biz = match env("SHOAL_BIZ") {
        Some(b) => Some(b.trim().parse::<i64>().map_err(|_| anyhow::anyhow!("SHOAL_BIZ={b:?} is not a business id (a number)"))?),
        None => None,
    };
    let ca = pick(args.ca.clone(), "--ca", env("SHOAL_CA").map(PathBuf::from), "SHOAL_CA", file.ca.clone());
    let url = pick(args.url.clone(), "--url", env("SHOAL_URL"), "SHOAL_URL", file.url).unwrap_or((DEFAULT_URL.into(), Source::Default));
    let username = pick(args.username.clone(), "--username", env("SHOAL_USERNAME"), "SHOAL_USERNAME", file.username)
        .unwrap_or_else(|| (current_os_user(), Source::Default));
    let biz = pick(args.biz, "--biz", env_biz, "SHOAL_BIZ", file.biz).unwrap_or((1, Source::Default));
    let secret = pick(None, "", env("SHOAL_APP_SECRET"), "SHOAL_APP_SECRET", file.app_secret);
    // Which credentials: an app code given as a flag, else the environment's token or app,
    // else the file's (see `credentials`).
    let (token, app_code) = if let Some(code) = args.app_code.clone() {
        (None, Some((code, Source::Flag("--app-code"))))
    } else {
        let env_token = env("SHOAL_TOKEN").map(|t| (t, Source::Env("SHOAL_TOKEN")));
        let env_code = env("SHOAL_APP_CODE").map(|c| (c, Source::Env("SHOAL_APP_CODE")));
        let file_token = file.token.map(|t| (t, Source::File));
        let file_code = file.app_code.map(|c| (c, Source::File));
        match (env_token, env_code) {
            (Some(t), _) => (Some(t), None),
            (None, Some(c)) => (None, Some(c)),
            (None, None) => match (file_token, file_code) {
                (Some(t), _) => (Some(t), None),
                (None, c) => (None, c),
            },
        }
    };
    let app_secret = if app_code.is_some() { secret } else { None };
    Ok(Effective { file: path.map(|p| (p, exists)), url, token, app_code, app_secret, username, biz, ca })
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
    let e = effective(args, &process_env)?;
    let (app_code, app_secret, token) = match (e.token, e.app_code) {
        (Some((t, _)), _) => (String::new(), String::new(), Some(t)),
        (None, Some((code, _))) => {
            let (secret, _) = e.app_secret.context("an app code without its secret: set SHOAL_APP_SECRET (or app_secret in the config file)")?;
            (code, secret, None)
        }
        (None, None) => anyhow::bail!(
            "no credentials: set SHOAL_TOKEN (shoal user token create), or SHOAL_APP_CODE and SHOAL_APP_SECRET (shoal dev prints them), or write the config file (shoal config init)"
        ),
    };
    crate::errors::set_call(&e.url.0, e.biz.0, (!app_code.is_empty()).then_some(app_code.as_str()));
    let client = Client::new(ClientConfig {
        url: e.url.0,
        app_code,
        app_secret,
        username: e.username.0,
        token,
        style: PathStyle::Gateway,
        timeout: Duration::from_secs(60),
        language: Some("en".into()),
    })?;
    let client = match &e.ca {
        Some((path, _)) => {
            let pem = std::fs::read(path).with_context(|| format!("reading the CA bundle {}", path.display()))?;
            client.with_ca_pem(&pem).with_context(|| format!("the CA bundle {}", path.display()))?
        }
        None => client,
    };
    Ok(Resolved { client, biz: e.biz.0 })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Effective settings with this environment and this config file text.
    fn with(vars: &[(&str, &str)], file: Option<&str>, args: &ClientArgs) -> anyhow::Result<Effective> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        if let Some(text) = file {
            std::fs::write(&path, text).unwrap();
        }
        let mut vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        vars.insert("SHOAL_CLIENT_CONFIG".into(), path.display().to_string());
        effective(args, &|k| vars.get(k).cloned())
    }

    fn ids(e: &Effective) -> (Option<&str>, Option<&str>, Option<&str>) {
        (e.token.as_ref().map(|t| t.0.as_str()), e.app_code.as_ref().map(|t| t.0.as_str()), e.app_secret.as_ref().map(|t| t.0.as_str()))
    }

    #[test]
    fn environment_then_file_token_before_app() {
        let none = ClientArgs::default();
        let file = "token = \"tok\"\napp_code = \"app\"\napp_secret = \"sec\"\n";
        assert_eq!(ids(&with(&[], Some(file), &none).unwrap()), (Some("tok"), None, None));
        let e = with(&[("SHOAL_APP_CODE", "envapp"), ("SHOAL_APP_SECRET", "envsec")], Some("token = \"tok\"\n"), &none).unwrap();
        assert_eq!(ids(&e), (None, Some("envapp"), Some("envsec")));
        assert_eq!(e.app_code.unwrap().1, Source::Env("SHOAL_APP_CODE"));
        // An app code given as a flag wins over every token; its secret may come from the file.
        let flag = ClientArgs { app_code: Some("flagapp".into()), ..Default::default() };
        let e = with(&[("SHOAL_TOKEN", "envtok")], Some(file), &flag).unwrap();
        assert_eq!(ids(&e), (None, Some("flagapp"), Some("sec")));
    }

    #[test]
    fn flags_then_environment_then_file_then_defaults() {
        let file = "url = \"http://file:1\"\nusername = \"fileuser\"\nbiz = 3\n";
        let e = with(&[("SHOAL_URL", "http://env:1")], Some(file), &ClientArgs::default()).unwrap();
        assert_eq!(e.url, ("http://env:1".into(), Source::Env("SHOAL_URL")));
        assert_eq!(e.username, ("fileuser".into(), Source::File));
        assert_eq!(e.biz, (3, Source::File));
        let args = ClientArgs { url: Some("http://flag:1".into()), biz: Some(7), ..Default::default() };
        let e = with(&[("SHOAL_URL", "http://env:1"), ("SHOAL_BIZ", "5")], Some(file), &args).unwrap();
        assert_eq!((e.url.0.as_str(), e.biz.0), ("http://flag:1", 7));
        let e = with(&[], None, &ClientArgs::default()).unwrap();
        assert_eq!((e.url, e.biz), ((DEFAULT_URL.into(), Source::Default), (1, Source::Default)));
        assert!(with(&[("SHOAL_BIZ", "two")], None, &ClientArgs::default()).is_err());
        assert!(with(&[], Some("ulr = \"x\"\n"), &ClientArgs::default()).is_err(), "an unknown key is refused");
    }

    #[test]
    fn the_ca_comes_from_the_flag_then_the_environment_then_the_file() {
        let file = "ca = \"/file/ca.pem\"\n";
        let e = with(&[], Some(file), &ClientArgs::default()).unwrap();
        assert_eq!(e.ca, Some((PathBuf::from("/file/ca.pem"), Source::File)));
        let e = with(&[("SHOAL_CA", "/env/ca.pem")], Some(file), &ClientArgs::default()).unwrap();
        assert_eq!(e.ca, Some((PathBuf::from("/env/ca.pem"), Source::Env("SHOAL_CA"))));
        let flag = ClientArgs { ca: Some("/flag/ca.pem".into()), ..Default::default() };
        let e = with(&[("SHOAL_CA", "/env/ca.pem")], Some(file), &flag).unwrap();
        assert_eq!(e.ca, Some((PathBuf::from("/flag/ca.pem"), Source::Flag("--ca"))));
        assert_eq!(with(&[], None, &ClientArgs::default()).unwrap().ca, None);
    }

    #[test]
    fn the_file_is_found_under_xdg_config_home_then_home() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let xdg = dir.path().join("xdg");
        let h = home.display().to_string();
        let x = xdg.display().to_string();
        let env = |vars: Vec<(&'static str, String)>| move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        assert_eq!(file_path(&env(vec![("HOME", h.clone()), ("XDG_CONFIG_HOME", x.clone())])), Some(xdg.join("shoal/config.toml")));
        assert_eq!(file_path(&env(vec![("HOME", h.clone())])), Some(home.join(".config/shoal/config.toml")));
        assert_eq!(
            file_path(&env(vec![("HOME", h.clone()), ("XDG_CONFIG_HOME", "relative".into())])),
            Some(home.join(".config/shoal/config.toml"))
        );
        // The file of earlier versions is read while there is no config.toml.
        std::fs::create_dir_all(home.join(".config/shoal")).unwrap();
        std::fs::write(home.join(".config/shoal/client.toml"), "").unwrap();
        assert_eq!(file_path(&env(vec![("HOME", h.clone())])), Some(home.join(".config/shoal/client.toml")));
        std::fs::write(home.join(".config/shoal/config.toml"), "").unwrap();
        assert_eq!(file_path(&env(vec![("HOME", h.clone())])), Some(home.join(".config/shoal/config.toml")));
        assert_eq!(file_path(&env(vec![("HOME", h), ("SHOAL_CLIENT_CONFIG", "/x/c.toml".into())])), Some(PathBuf::from("/x/c.toml")));
    }
}
