//! Agent settings, layered: the TOML file, then `SHOAL_*` env, then flags (clap folds the
//! environment into the flags, so a flag's value here is a flag or its variable).
//!
//! The file is `--config`, else `SHOAL_CONFIG`, else `/etc/shoal/agent.toml` when it exists
//! (see `dist/agent.example.toml`). Its keys are named as the flags are.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::cli::AgentArgs;

/// Where a service manager's agent finds its settings.
pub const DEFAULT_PATH: &str = "/etc/shoal/agent.toml";

/// Where the agent keeps its identity and unacknowledged results unless told otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/shoal-agent";

/// The agent's config file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentFile {
    pub server: Vec<String>,
    pub token_file: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub bk_biz_id: Option<i64>,
    pub bk_cloud_id: Option<i64>,
    pub ip: Option<String>,
    pub set: Option<i64>,
    pub module: Option<i64>,
    pub labels: BTreeMap<String, String>,
    pub ca: Option<PathBuf>,
    pub insecure: Option<bool>,
    pub peer_listen: Option<String>,
}

/// The agent's effective settings (all but the token, which is read where it is used).
#[derive(Debug, Serialize)]
pub struct Settings {
    /// The file the settings were read from, if any.
    #[serde(skip)]
    pub file: Option<PathBuf>,
    pub server: Vec<String>,
    pub token_file: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub bk_biz_id: i64,
    pub bk_cloud_id: i64,
    pub ip: Option<String>,
    pub set: Option<i64>,
    pub module: Option<i64>,
    pub labels: BTreeMap<String, String>,
    pub ca: Option<PathBuf>,
    pub insecure: bool,
    /// Where held files are served to peers; `off`: never.
    pub peer_listen: String,
}

/// The config file to read: the one named (it must exist), else `default` when it exists.
pub fn discover(named: Option<&Path>, default: &Path) -> Option<PathBuf> {
    match named {
        Some(p) => Some(p.to_path_buf()),
        None => default.exists().then(|| default.to_path_buf()),
    }
}

pub fn load(a: &AgentArgs, default: &Path) -> anyhow::Result<Settings> {
    let path = discover(a.config.as_deref(), default);
    let file: AgentFile = match &path {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))?
        }
        None => AgentFile::default(),
    };
    let server = if a.server.is_empty() { file.server } else { a.server.clone() };
    let whence = || {
        path.as_ref()
            .map_or_else(|| format!(" (no config file: {} does not exist)", default.display()), |p| format!(" or in {}", p.display()))
    };
    anyhow::ensure!(!server.is_empty(), "no server: give --server (SHOAL_SERVER) or server = [...]{}", whence());
    let bk_biz_id = a
        .bk_biz_id
        .or(file.bk_biz_id)
        .with_context(|| format!("no business: give --bk-biz-id (SHOAL_BK_BIZ_ID) or bk_biz_id{}", whence()))?;
    let mut labels = file.labels;
    labels.extend(crate::cmd::agent::parse_labels(&a.labels)?);
    Ok(Settings {
        file: path,
        server,
        token_file: a.token_file.clone().or(file.token_file),
        state_dir: a.state_dir.clone().or(file.state_dir).unwrap_or_else(|| DEFAULT_STATE_DIR.into()),
        bk_biz_id,
        bk_cloud_id: a.bk_cloud_id.or(file.bk_cloud_id).unwrap_or(0),
        ip: a.ip.clone().or(file.ip),
        set: a.set_id.or(file.set),
        module: a.module_id.or(file.module),
        labels,
        ca: a.ca.clone().or(file.ca),
        insecure: a.insecure || file.insecure.unwrap_or(false),
        peer_listen: a.peer_listen.clone().or(file.peer_listen).unwrap_or_else(|| "0.0.0.0:0".into()),
    })
}

/// The settings as an agent.toml would hold them, with where they came from.
pub fn effective_toml(s: &Settings) -> anyhow::Result<String> {
    let mut out = match &s.file {
        Some(p) => format!("# effective agent settings (file {})\n", p.display()),
        None => "# effective agent settings (no config file)\n".to_string(),
    };
    out.push_str(&toml::to_string(s)?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn the_file_fills_what_flags_and_env_leave_out() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "agent.toml",
            "server = [\"https://a:8080\"]\nbk_biz_id = 2\nset = 3\nstate_dir = \"/srv/agent\"\n[labels]\nrole = \"web\"\nenv = \"prod\"\n",
        );
        let a = AgentArgs { config: Some(file.clone()), bk_biz_id: Some(5), labels: vec!["env=staging".into()], ..Default::default() };
        let s = load(&a, Path::new("/nonexistent")).unwrap();
        assert_eq!(s.server, ["https://a:8080"]);
        assert_eq!((s.bk_biz_id, s.bk_cloud_id, s.set, s.module), (5, 0, Some(3), None));
        assert_eq!(s.state_dir, Path::new("/srv/agent"));
        assert_eq!(s.labels.get("role").map(String::as_str), Some("web"));
        assert_eq!(s.labels.get("env").map(String::as_str), Some("staging"), "a flag's label wins over the file's");
        assert_eq!(s.file.as_deref(), Some(file.as_path()));
    }

    #[test]
    fn the_default_file_is_read_only_when_nothing_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let default = write(dir.path(), "default.toml", "server = [\"https://default\"]\nbk_biz_id = 1\n");
        let named = write(dir.path(), "named.toml", "server = [\"https://named\"]\nbk_biz_id = 1\n");
        let s = load(&AgentArgs::default(), &default).unwrap();
        assert_eq!(s.server, ["https://default"]);
        let s = load(&AgentArgs { config: Some(named), ..Default::default() }, &default).unwrap();
        assert_eq!(s.server, ["https://named"]);
        // A named file that is not there is an error, not a silent fallback.
        let missing = AgentArgs { config: Some(dir.path().join("missing.toml")), ..Default::default() };
        assert!(load(&missing, &default).unwrap_err().to_string().contains("missing.toml"));
        // Nothing anywhere: the error says what to give.
        let err = load(&AgentArgs::default(), &dir.path().join("none.toml")).unwrap_err().to_string();
        assert!(err.contains("--server"), "{err}");
        let a = AgentArgs { server: vec!["https://x".into()], ..Default::default() };
        assert!(load(&a, &dir.path().join("none.toml")).unwrap_err().to_string().contains("--bk-biz-id"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "agent.toml", "servr = [\"https://a\"]\n");
        let err = load(&AgentArgs { config: Some(file), ..Default::default() }, Path::new("/nonexistent")).unwrap_err();
        assert!(format!("{err:#}").contains("servr"), "{err:#}");
    }

    #[test]
    fn the_shipped_example_parses() {
        let text = include_str!("../../../dist/agent.example.toml");
        let f: AgentFile = toml::from_str(text).unwrap();
        assert!(!f.server.is_empty() && f.bk_biz_id.is_some() && f.token_file.is_some());
    }
}
