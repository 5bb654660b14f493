//! `shoal config init` and `shoal config show`: the CLI's own settings file.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::cli::ClientArgs;
use crate::client_config::{self, Effective, FileConfig, Source};

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Write the CLI's settings file (mode 0600): from flags and the SHOAL_* environment, and
    /// by asking for what is missing when standard input is a terminal.
    Init(InitArgs),
    /// Print the effective client settings and where each comes from, secrets redacted.
    Show {
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Server URL [env: SHOAL_URL].
    #[arg(long)]
    pub url: Option<String>,
    /// App code [env: SHOAL_APP_CODE]; its secret from SHOAL_APP_SECRET, --app-secret-stdin
    /// or a prompt (never a flag: argv is world-readable).
    #[arg(long)]
    pub app_code: Option<String>,
    /// Read the app secret from standard input (one line).
    #[arg(long, requires = "app_code")]
    pub app_secret_stdin: bool,
    /// Read a user's API token (shoal user token create) from standard input (one line)
    /// instead of app credentials [env: SHOAL_TOKEN].
    #[arg(long, conflicts_with_all = ["app_code", "app_secret_stdin"])]
    pub token_stdin: bool,
    /// User the app acts for (bk_username) [env: SHOAL_USERNAME].
    #[arg(long)]
    pub username: Option<String>,
    /// Default business id [env: SHOAL_BIZ].
    #[arg(long)]
    pub biz: Option<i64>,
    /// PEM CA bundle that signed the server's certificate (a private CA), written into the
    /// file as an absolute path [env: SHOAL_CA].
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Write this file instead [default: $XDG_CONFIG_HOME/shoal/config.toml].
    #[arg(long)]
    pub path: Option<PathBuf>,
    /// Replace an existing file.
    #[arg(long)]
    pub force: bool,
}

pub fn run(cmd: ConfigCommand) -> anyhow::Result<u8> {
    match cmd {
        ConfigCommand::Init(a) => init(a, &client_config::process_env),
        ConfigCommand::Show { client } => {
            let e = client_config::effective(&client, &client_config::process_env)?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&show_json(&e))?);
            } else {
                print!("{}", show(&e));
            }
            Ok(0)
        }
    }
}

/// Asks on the terminal; `secret` turns echo off while the answer is typed.
pub(crate) fn ask(question: &str, secret: bool) -> anyhow::Result<Option<String>> {
    eprint!("{question}: ");
    std::io::stderr().flush()?;
    let stdin = std::io::stdin();
    let saved = if secret {
        use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
        let saved = tcgetattr(&stdin).context("reading the terminal's settings")?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("turning echo off")?;
        Some(saved)
    } else {
        None
    };
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(saved) = saved {
        let _ = nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &saved);
        eprintln!();
    }
    read?;
    let line = line.trim().to_string();
    Ok((!line.is_empty()).then_some(line))
}

pub(crate) fn read_stdin_line(what: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let line = line.trim().to_string();
    anyhow::ensure!(!line.is_empty(), "{what} on standard input is empty");
    Ok(line)
}

fn init(a: InitArgs, env: client_config::Env) -> anyhow::Result<u8> {
    let path = match a.path.clone() {
        Some(p) => p,
        None => client_config::standard_path(env)
            .context("no place for the file: set HOME, XDG_CONFIG_HOME or SHOAL_CLIENT_CONFIG, or give --path")?,
    };
    anyhow::ensure!(!path.exists() || a.force, "{} exists; --force replaces it (shoal config show prints what it holds)", path.display());
    let tty = std::io::stdin().is_terminal();
    let mut f = FileConfig {
        url: a.url.or_else(|| env("SHOAL_URL")),
        username: a.username.or_else(|| env("SHOAL_USERNAME")),
        ca: a.ca.or_else(|| env("SHOAL_CA").map(PathBuf::from)).map(|p| ca_path(&p)).transpose()?,
        ..Default::default()
    };
    f.biz = match (a.biz, env("SHOAL_BIZ")) {
        (Some(b), _) => Some(b),
        (None, Some(b)) => Some(b.trim().parse().map_err(|_| anyhow::anyhow!("SHOAL_BIZ={b:?} is not a business id (a number)"))?),
        (None, None) => None,
    };
    if a.token_stdin {
        f.token = Some(read_stdin_line("the token")?);
    } else if let Some(code) = a.app_code.or_else(|| env("SHOAL_APP_CODE")) {
        f.app_secret = Some(match (a.app_secret_stdin, env("SHOAL_APP_SECRET")) {
            (true, _) => read_stdin_line("the app secret")?,
            (false, Some(s)) => s,
            (false, None) if tty => ask(&format!("secret of app {code}"), true)?.context("no secret given")?,
            (false, None) => anyhow::bail!("no secret for app {code}: set SHOAL_APP_SECRET or pass --app-secret-stdin"),
        });
        f.app_code = Some(code);
    } else if let Some(t) = env("SHOAL_TOKEN") {
        f.token = Some(t);
    } else if tty {
        if f.url.is_none() {
            f.url = ask(&format!("server URL [{}]", client_config::DEFAULT_URL), false)?;
        }
        match ask("app code (empty to use a user's API token)", false)? {
            Some(code) => {
                f.app_secret = Some(ask(&format!("secret of app {code}"), true)?.context("no secret given")?);
                f.app_code = Some(code);
            }
            None => f.token = Some(ask("API token (shoal user token create)", true)?.context("no token given")?),
        }
        if f.username.is_none() && f.app_code.is_some() {
            f.username = ask(&format!("user the app acts for [{}]", client_config::current_os_user()), false)?;
        }
        if f.biz.is_none() {
            f.biz = ask("default business id [1]", false)?.map(|b| b.parse()).transpose().context("a business id is a number")?;
        }
    } else {
        anyhow::bail!(
            "no credentials to write: pass --app-code (secret from SHOAL_APP_SECRET or --app-secret-stdin) or --token-stdin, or set SHOAL_APP_CODE / SHOAL_TOKEN"
        );
    }
    write_private(&path, &toml::to_string(&f)?)?;
    println!("wrote {}", path.display());
    Ok(0)
}

/// A CA bundle's path as the file keeps it: absolute (the CLI runs from any directory), and
/// there now (a wrong path is caught when the file is written, not at the next call).
pub(crate) fn ca_path(p: &Path) -> anyhow::Result<PathBuf> {
    let abs = std::fs::canonicalize(p).with_context(|| format!("the CA bundle {}", p.display()))?;
    anyhow::ensure!(abs.is_file(), "the CA bundle {} is not a file", p.display());
    Ok(abs)
}

/// Writes `text` to `path` readable by its owner only, making the directory (0700) if needed.
pub(crate) fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    // A file that was there before keeps its old mode through open(): tighten it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The effective settings as config-file lines, each with where it came from.
pub fn show(e: &Effective) -> String {
    let mut out = match &e.file {
        Some((p, true)) => format!("# client settings; config file {}\n", p.display()),
        Some((p, false)) => format!("# client settings; config file {} (not present)\n", p.display()),
        None => "# client settings; no config file (HOME is not set)\n".to_string(),
    };
    let mut missing = Vec::new();
    let mut line = |key: &str, value: String, source: &Source| out.push_str(&format!("{key} = {value}  # {source}\n"));
    let quoted = |s: &str| toml::Value::String(s.to_string()).to_string();
    line("url", quoted(&e.url.0), &e.url.1);
    match (&e.token, &e.app_code) {
        (Some((_, src)), _) => line("token", quoted("<redacted>"), src),
        (None, Some((code, src))) => {
            line("app_code", quoted(code), src);
            match &e.app_secret {
                Some((_, src)) => line("app_secret", quoted("<redacted>"), src),
                None => missing.push("app_secret: not set (SHOAL_APP_SECRET, or app_secret in the file)"),
            }
        }
        (None, None) => missing.push("credentials: not set (token, or app_code and app_secret; shoal config init)"),
    }
    line("username", quoted(&e.username.0), &e.username.1);
    line("biz", e.biz.0.to_string(), &e.biz.1);
    if let Some((ca, src)) = &e.ca {
        line("ca", quoted(&ca.display().to_string()), src);
    }
    for m in missing {
        out.push_str(&format!("# {m}\n"));
    }
    out
}

/// [`show`] as JSON: each setting as `{value, source}`, secrets redacted, missing ones null.
pub fn show_json(e: &Effective) -> serde_json::Value {
    use serde_json::json;
    let entry = |v: serde_json::Value, s: &Source| json!({"value": v, "source": s.to_string()});
    let secret = |x: &Option<(String, Source)>| x.as_ref().map(|(_, s)| entry(json!("<redacted>"), s));
    let (token, app_code, app_secret) = match &e.token {
        Some(_) => (secret(&e.token), None, None),
        None => (None, e.app_code.as_ref().map(|(c, s)| entry(json!(c), s)), secret(&e.app_secret)),
    };
    json!({
        "file": e.file.as_ref().map(|(p, exists)| json!({"path": p, "exists": exists})),
        "url": entry(json!(e.url.0), &e.url.1),
        "token": token,
        "app_code": app_code,
        "app_secret": app_secret,
        "username": entry(json!(e.username.0), &e.username.1),
        "biz": entry(json!(e.biz.0), &e.biz.1),
        "ca": e.ca.as_ref().map(|(p, s)| entry(json!(p), s)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_redacts_secrets_and_names_sources() {
        let e = Effective {
            file: Some(("/h/.config/shoal/config.toml".into(), true)),
            url: ("http://s:8080".into(), Source::Env("SHOAL_URL")),
            token: None,
            app_code: Some(("ops".into(), Source::File)),
            app_secret: Some(("very-secret".into(), Source::File)),
            username: ("alice".into(), Source::Flag("--username")),
            biz: (2, Source::Default),
            ca: None,
        };
        let text = show(&e);
        assert!(!text.contains("very-secret"), "{text}");
        assert!(text.contains("app_secret = \"<redacted>\"  # config file"), "{text}");
        assert!(text.contains("url = \"http://s:8080\"  # env SHOAL_URL"), "{text}");
        assert!(text.contains("username = \"alice\"  # flag --username"), "{text}");
        let j = show_json(&e);
        assert!(!j.to_string().contains("very-secret"), "{j}");
        assert_eq!(j["app_secret"], serde_json::json!({"value": "<redacted>", "source": "config file"}));
        assert_eq!(j["url"]["source"], "env SHOAL_URL");
        assert!(j["token"].is_null());
        let e = Effective { app_secret: None, ..e };
        assert!(show(&e).contains("# app_secret: not set"), "{}", show(&e));
        assert!(show_json(&e)["app_secret"].is_null());
    }
}
