//! Which program runs a script of a given language on this host.
#![forbid(unsafe_code)]

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use shoal_proto::status::ScriptLanguage;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreter {
    pub program: PathBuf,
    /// Arguments before the script path.
    pub pre_args: Vec<&'static str>,
    /// Script file extension.
    pub ext: &'static str,
}

/// Finds the interpreter for `language` (a JOB `script_language`). `Err` is the `[shoal]` log
/// line explaining why the script cannot run here.
pub fn resolve(language: i32, search_path: &OsStr) -> Result<Interpreter, String> {
    let Some(lang) = ScriptLanguage::from_i32(language) else {
        return Err(format!("[shoal] unknown script language {language}"));
    };
    let found = |names: &[&str]| names.iter().find_map(|n| which(n, search_path));
    let missing = |name: &str| format!("[shoal] interpreter {name} not found on this host");
    let (program, pre_args) = match lang {
        ScriptLanguage::Shell => {
            let program = ["/bin/bash", "/bin/sh"].iter().map(Path::new).find(|p| is_executable(p)).ok_or_else(|| missing("/bin/sh"))?;
            (program.to_path_buf(), vec![])
        }
        ScriptLanguage::Perl => (found(&["perl"]).ok_or_else(|| missing("perl"))?, vec![]),
        ScriptLanguage::Python => (found(&["python3", "python"]).ok_or_else(|| missing("python3"))?, vec![]),
        ScriptLanguage::Powershell => (found(&["pwsh"]).ok_or_else(|| missing("pwsh"))?, vec!["-NoProfile", "-NonInteractive", "-File"]),
        ScriptLanguage::Bat => return Err(format!("[shoal] bat scripts need a Windows host; this host is {}", std::env::consts::OS)),
        ScriptLanguage::Sql => return Err("[shoal] sql scripts cannot run on this agent (no database client support)".to_string()),
    };
    Ok(Interpreter { program, pre_args, ext: lang.extension() })
}

/// `name` on `search_path`, like `which`.
pub fn which(name: &str, search_path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(search_path).filter(|dir| !dir.as_os_str().is_empty()).map(|dir| dir.join(name)).find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> std::ffi::OsString {
        std::env::var_os("PATH").unwrap()
    }

    #[test]
    fn shell_prefers_bash() {
        let i = resolve(1, &path()).unwrap();
        assert_eq!(i.ext, "sh");
        let expected = if Path::new("/bin/bash").exists() { "/bin/bash" } else { "/bin/sh" };
        assert_eq!(i.program, Path::new(expected));
    }

    #[test]
    fn windows_and_unknown_languages_are_refused() {
        let e = resolve(2, &path()).unwrap_err();
        assert_eq!(e, format!("[shoal] bat scripts need a Windows host; this host is {}", std::env::consts::OS));
        assert!(resolve(6, &path()).unwrap_err().contains("sql"));
        assert_eq!(resolve(42, &path()).unwrap_err(), "[shoal] unknown script language 42");
    }

    #[test]
    fn missing_interpreters_are_named() {
        let empty = OsStr::new("/nonexistent-dir");
        assert_eq!(resolve(4, empty).unwrap_err(), "[shoal] interpreter python3 not found on this host");
        assert_eq!(resolve(5, empty).unwrap_err(), "[shoal] interpreter pwsh not found on this host");
        assert!(resolve(3, &path()).is_ok(), "perl is installed here");
    }
}
