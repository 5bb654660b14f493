//! `shoal login`: a Shoal user's password, given once, for a lasting personal API token in
//! the CLI's settings file.
//!
//! The server's `POST /api/shoal/v1/login` answers an 8-hour session; a CLI used all day
//! would ask for the password every morning. So login uses the session once to make a
//! personal API token (`shoal user token list` shows it, named after this machine; it
//! expires after `--expires-in`), ends the session, and writes the token — never the
//! password — with the URL, user name, CA and business into the file `shoal config init`
//! writes (mode 0600). Settings already in the file stay unless given again; app
//! credentials there are replaced by the token.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};
use shoal_client::{Client, ClientConfig, ClientError, PathStyle};
use shoal_proto::ErrorCode;

use crate::client_config::{self, FileConfig};
use crate::cmd::config::{ask, ca_path, read_stdin_line, write_private};

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Server URL [env: SHOAL_URL; else the config file's; asked on a terminal].
    #[arg(long)]
    pub url: Option<String>,
    /// The Shoal user to log in as [env: SHOAL_USERNAME; else the config file's; asked on a
    /// terminal, default: the OS user].
    #[arg(long)]
    pub username: Option<String>,
    /// Read the password from standard input (one line) instead of asking on the terminal.
    #[arg(long)]
    pub password_stdin: bool,
    /// PEM CA bundle that signed the server's certificate (a private CA); written into the
    /// file [env: SHOAL_CA; else the config file's].
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Default business id written into the file [env: SHOAL_BIZ; else the file's is kept].
    #[arg(long)]
    pub biz: Option<i64>,
    /// Lifetime of the token login makes: 3600, 90s, 30m, 12h, 30d.
    #[arg(long, default_value = "30d")]
    pub expires_in: String,
    /// Write this file instead [default: $XDG_CONFIG_HOME/shoal/config.toml].
    #[arg(long)]
    pub path: Option<PathBuf>,
}

pub async fn run(a: LoginArgs) -> anyhow::Result<u8> {
    let env = &client_config::process_env;
    let expires_in = crate::cmd::user::parse_duration(&a.expires_in)?;
    let path = match a.path.clone() {
        Some(p) => p,
        None => client_config::standard_path(env)
            .context("no place for the file: set HOME, XDG_CONFIG_HOME or SHOAL_CLIENT_CONFIG, or give --path")?,
    };
    let old = if path.exists() {
        client_config::read_file(&path).context("the settings file login would update (fix it, or remove it)")?
    } else {
        FileConfig::default()
    };
    let tty = std::io::stdin().is_terminal();
    let url = match a.url.or_else(|| env("SHOAL_URL")).or_else(|| old.url.clone()) {
        Some(u) => u,
        None if tty && !a.password_stdin => {
            ask(&format!("server URL [{}]", client_config::DEFAULT_URL), false)?.unwrap_or_else(|| client_config::DEFAULT_URL.into())
        }
        None => anyhow::bail!("which server? give --url (or SHOAL_URL)"),
    };
    let ca = match a.ca.or_else(|| env("SHOAL_CA").map(PathBuf::from)) {
        Some(p) => Some(ca_path(&p)?),
        None => old.ca.clone(),
    };
    let username = match a.username.or_else(|| env("SHOAL_USERNAME")).or_else(|| old.username.clone()) {
        Some(u) => u,
        None if tty && !a.password_stdin => {
            let me = client_config::current_os_user();
            ask(&format!("user name [{me}]"), false)?.unwrap_or(me)
        }
        None => client_config::current_os_user(),
    };
    let password = if a.password_stdin {
        read_stdin_line("the password")?
    } else if tty {
        ask(&format!("password of {username} at {url}"), true)?.context("no password given")?
    } else {
        anyhow::bail!("no password: pass --password-stdin, or run shoal login on a terminal to be asked")
    };
    let biz = match (a.biz, env("SHOAL_BIZ")) {
        (Some(b), _) => Some(b),
        (None, Some(b)) => Some(b.trim().parse().map_err(|_| anyhow::anyhow!("SHOAL_BIZ={b:?} is not a business id (a number)"))?),
        (None, None) => old.biz,
    };
    crate::errors::set_call(&url, biz.unwrap_or(1), None);

    let client = |token: Option<String>| -> anyhow::Result<Client> {
        let c = Client::new(ClientConfig {
            url: url.clone(),
            app_code: String::new(),
            app_secret: String::new(),
            username: username.clone(),
            token,
            style: PathStyle::Gateway,
            timeout: Duration::from_secs(60),
            language: Some("en".into()),
        })?;
        Ok(match &ca {
            Some(p) => c.with_ca_pem(&std::fs::read(p).with_context(|| format!("reading the CA bundle {}", p.display()))?)?,
            None => c,
        })
    };
    let session: Value = match client(None)?.shoal("login", false, json!({"username": username, "password": password})).await {
        Ok(v) => v,
        Err(ClientError::Api { code, .. }) if code == ErrorCode::SERVICE_AUTH_FAIL.0 => {
            anyhow::bail!("error {code}: {url} refused the login of {username:?}: wrong user name or password, or the user is disabled")
        }
        Err(e) => return Err(e.into()),
    };
    let session = session["token"].as_str().context("the server's login answer has no token")?.to_string();
    let user = client(Some(session))?;
    let host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "this machine".into());
    let made: Value =
        user.shoal("users/tokens", false, json!({"name": format!("shoal login on {host}"), "expires_in": expires_in})).await?;
    // The session was only the way to the token.
    if let Err(e) = user.shoal::<Value>("logout", false, json!({})).await {
        tracing::warn!(error = %e, "ending the login session");
    }
    let token = made["token"].as_str().context("the server's answer has no token")?.to_string();
    let id = made["id"].as_str().unwrap_or("").to_string();
    let file = FileConfig {
        url: Some(url.clone()),
        token: Some(token),
        username: Some(username.clone()),
        biz,
        ca,
        app_code: None,
        app_secret: None,
    };
    write_private(&path, &toml::to_string(&file)?)?;
    println!(
        "logged in to {url} as {username}: token {id} (valid for {}) written to {}; 'shoal user token revoke {id}' ends it",
        a.expires_in,
        path.display()
    );
    Ok(0)
}
