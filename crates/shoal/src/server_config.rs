//! Server settings, layered: defaults, then the TOML file, then `SHOAL_<KEY>` env, then
//! flags. Every key of [`ServerConfig`] can be set each way.

use std::path::Path;

use anyhow::Context;
use serde_json::Value;
use shoal_server::ServerConfig;

use crate::cli::ServerArgs;

/// The annotated example configuration shipped in the repository (`shoal.example.toml`).
#[cfg(test)]
const EXAMPLE: &str = include_str!("../../../shoal.example.toml");

fn apply_env(cfg: ServerConfig, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<ServerConfig> {
    let mut v = serde_json::to_value(&cfg)?;
    let map = v.as_object_mut().context("config is an object")?;
    for (key, slot) in map.iter_mut() {
        let name = format!("SHOAL_{}", key.to_ascii_uppercase());
        let Some(raw) = env(&name) else { continue };
        *slot = match slot {
            Value::Number(_) => Value::Number(raw.trim().parse::<u64>().with_context(|| format!("{name} must be a number"))?.into()),
            Value::Bool(_) => Value::Bool(matches!(raw.trim(), "1" | "true" | "yes")),
            Value::Array(_) => {
                Value::Array(raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| Value::String(s.into())).collect())
            }
            _ => Value::String(raw),
        };
    }
    Ok(serde_json::from_value(v)?)
}

/// Where a service manager's server finds its settings.
pub const DEFAULT_PATH: &str = "/etc/shoal/server.toml";

/// The config file: `--config` or `SHOAL_CONFIG` (it must exist), else `default` when it
/// exists, else none (defaults, env and flags only).
pub fn discover(args: &ServerArgs, default: &Path) -> Option<std::path::PathBuf> {
    crate::agent_config::discover(args.config.as_deref(), default)
}

pub fn load(args: &ServerArgs, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<ServerConfig> {
    load_from(args, env, Path::new(DEFAULT_PATH))
}

pub fn load_from(args: &ServerArgs, env: &dyn Fn(&str) -> Option<String>, default: &Path) -> anyhow::Result<ServerConfig> {
    let mut cfg = match discover(args, default) {
        Some(path) => read_file(&path)?,
        None => ServerConfig::default(),
    };
    cfg = apply_env(cfg, env)?;
    if let Some(v) = &args.listen {
        cfg.listen = v.clone();
    }
    if let Some(v) = &args.data_dir {
        cfg.data_dir = Some(v.clone());
    }
    if let Some(v) = &args.database_url {
        cfg.database_url = Some(v.clone());
    }
    if let Some(v) = args.output_cap_bytes {
        cfg.output_cap_bytes = v;
    }
    if let Some(v) = args.agent_lost_grace_secs {
        cfg.agent_lost_grace_secs = v;
    }
    if let Some(v) = &args.tls_cert {
        cfg.tls_cert = Some(v.clone());
    }
    if let Some(v) = &args.tls_key {
        cfg.tls_key = Some(v.clone());
    }
    if cfg.data_dir.is_none() && cfg.database_url.is_none() {
        // An embedded store with no data dir: a named dir here, as for a first try.
        cfg.data_dir = Some("./shoal-data".into());
    }
    cfg.validate()?;
    Ok(cfg)
}

/// The effective settings as a TOML file would hold them, every key, secrets redacted;
/// settings left unset are listed as comments.
pub fn effective_toml(cfg: &ServerConfig) -> anyhow::Result<String> {
    let v = serde_json::to_value(cfg.redacted())?;
    let map = v.as_object().context("config is an object")?;
    let mut set = toml::Table::new();
    let mut unset = Vec::new();
    for (k, v) in map {
        if v.is_null() {
            unset.push(k.clone());
        } else {
            set.insert(k.clone(), serde_json::from_value(v.clone())?);
        }
    }
    let mut out = String::from("# effective configuration (secrets redacted)\n");
    out.push_str(&toml::to_string(&set)?);
    for k in unset {
        out.push_str(&format!("# {k} is not set\n"));
    }
    Ok(out)
}

fn read_file(path: &Path) -> anyhow::Result<ServerConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unit tests never read the machine's own /etc/shoal/server.toml.
    const NO_DEFAULT: &str = "/nonexistent/server.toml";

    #[test]
    fn layers_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.toml");
        std::fs::write(&file, "listen = \"0.0.0.0:9000\"\nheartbeat_secs = 4\ndata_dir = \"/tmp/x\"\n").unwrap();
        let env = |k: &str| match k {
            "SHOAL_HEARTBEAT_SECS" => Some("7".to_string()),
            "SHOAL_AGENT_TOKEN" => Some("tok".to_string()),
            _ => None,
        };
        let args = ServerArgs { config: Some(file), listen: Some("127.0.0.1:1".into()), ..Default::default() };
        let cfg = load_from(&args, &env, NO_DEFAULT.as_ref()).unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:1");
        assert_eq!(cfg.heartbeat_secs, 7);
        assert_eq!(cfg.agent_token.as_deref(), Some("tok"));
        assert_eq!(cfg.data_dir.as_deref(), Some(Path::new("/tmp/x")));
    }

    #[test]
    fn example_config_parses_and_names_every_setting() {
        let cfg: ServerConfig = toml::from_str(EXAMPLE).unwrap();
        cfg.validate().unwrap();
        for key in serde_json::to_value(&cfg).unwrap().as_object().unwrap().keys() {
            assert!(EXAMPLE.contains(&format!("{key} =")), "shoal.example.toml does not describe {key}");
        }
    }

    #[test]
    fn postgres_without_a_data_dir_is_refused() {
        // Keys and first-start credentials never land in the directory the server started in.
        let args = ServerArgs { database_url: Some("postgres://db/shoal".into()), ..Default::default() };
        let err = load_from(&args, &|_| None, NO_DEFAULT.as_ref()).unwrap_err().to_string();
        assert!(err.contains("give --data-dir"), "{err}");
        let args = ServerArgs { data_dir: Some("/var/lib/shoal".into()), ..args };
        assert!(load_from(&args, &|_| None, NO_DEFAULT.as_ref()).is_ok());
    }

    #[test]
    fn the_effective_config_is_complete_toml_with_secrets_redacted() {
        let env = |k: &str| match k {
            "SHOAL_AGENT_TOKEN" => Some("tok-secret".to_string()),
            "SHOAL_BOOTSTRAP_APP" => Some("ops:app-secret".to_string()),
            "SHOAL_DATABASE_URL" => Some("postgres://shoal:db-secret@db/shoal".to_string()),
            _ => None,
        };
        let args = ServerArgs { data_dir: Some("/var/lib/shoal".into()), ..Default::default() };
        let cfg = load_from(&args, &env, NO_DEFAULT.as_ref()).unwrap();
        let text = effective_toml(&cfg).unwrap();
        for secret in ["tok-secret", "app-secret", "db-secret"] {
            assert!(!text.contains(secret), "{secret} shown: {text}");
        }
        // It reads back as a config file with every key (the unset ones as comments).
        let back: ServerConfig = toml::from_str(&text).unwrap();
        assert_eq!(back.output_cap_bytes, cfg.output_cap_bytes);
        assert_eq!(back.bootstrap_app.as_deref(), Some("ops:<redacted>"));
        let keys = serde_json::to_value(&cfg).unwrap().as_object().unwrap().len();
        let shown = text.lines().filter(|l| !l.starts_with("# effective") && (l.contains(" = ") || l.ends_with(" is not set"))).count();
        assert_eq!(shown, keys, "{text}");
    }

    /// A password given in the database URL's query string (as libpq and sqlx accept it), or
    /// the S3 secret key, never shows.
    #[test]
    fn passwords_in_the_url_query_and_the_s3_secret_are_redacted() {
        let env = |k: &str| match k {
            "SHOAL_DATABASE_URL" => Some("postgres://shoal@db/shoal?sslmode=require&password=qs-secret&application_name=x".to_string()),
            "SHOAL_S3_SECRET_KEY" => Some("s3-secret".to_string()),
            _ => None,
        };
        let args = ServerArgs { data_dir: Some("/var/lib/shoal".into()), ..Default::default() };
        let cfg = load_from(&args, &env, NO_DEFAULT.as_ref()).unwrap();
        let text = effective_toml(&cfg).unwrap();
        for secret in ["qs-secret", "s3-secret"] {
            assert!(!text.contains(secret), "{secret} shown: {text}");
        }
        // What is not secret stays readable.
        assert!(text.contains("sslmode=require") && text.contains("application_name=x") && text.contains("@db/shoal"), "{text}");
        assert!(text.contains("s3_secret_key = \"<redacted>\""), "{text}");
    }

    #[test]
    fn the_default_file_is_read_when_no_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let default = dir.path().join("server.toml");
        std::fs::write(&default, "listen = \"0.0.0.0:7001\"\ndata_dir = \"/tmp/d\"\n").unwrap();
        let named = dir.path().join("named.toml");
        std::fs::write(&named, "listen = \"0.0.0.0:7002\"\ndata_dir = \"/tmp/d\"\n").unwrap();
        assert_eq!(load_from(&ServerArgs::default(), &|_| None, &default).unwrap().listen, "0.0.0.0:7001");
        let args = ServerArgs { config: Some(named), ..Default::default() };
        assert_eq!(load_from(&args, &|_| None, &default).unwrap().listen, "0.0.0.0:7002");
        // No file anywhere: the defaults.
        let none = load_from(&ServerArgs::default(), &|_| None, &dir.path().join("absent.toml")).unwrap();
        assert_eq!(none.listen, ServerConfig::default().listen);
        // A named file that is missing is an error, never a silent fallback to the default.
        let args = ServerArgs { config: Some(dir.path().join("missing.toml")), ..Default::default() };
        assert!(load_from(&args, &|_| None, &default).is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<ServerConfig>("listne = \"x\"").is_err());
    }
}
