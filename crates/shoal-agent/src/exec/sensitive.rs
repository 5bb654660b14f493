//! How a task's parameters reach its script. Plain parameters follow the script path on the
//! command line. Sensitive ones (`is_param_sensitive`) never do: every command line on a
//! host is world-readable (`ps`, `/proc/*/cmdline`), so they travel inside the script file
//! (mode 0700, owned by the account, removed when the task ends — where a plan's password
//! variables already travel) or on the interpreter's stdin:
//!
//! - shell: `set -- 'a' 'b'` placed after the shebang line sets the positional parameters;
//! - perl: `BEGIN { @ARGV = ('a', 'b') }` after the shebang line;
//! - python: a bootstrap on the command line (`python3 -c BOOT script`) reads the
//!   parameters as JSON from stdin, closes it, sets `sys.argv` and runs the script as
//!   `__main__` (a prelude would break `from __future__` imports);
//! - powershell: refused (a `param()` block must come first, and `-File` takes its
//!   arguments from the command line).
//!
//! Masking them in the output is the server's `mask` list (see `RunTask::mask`).
#![forbid(unsafe_code)]

use shoal_proto::agent::RunTask;
use shoal_proto::status::ScriptLanguage;

/// What to write and run for a task. Holds sensitive values: its `Debug` shows sizes only.
#[derive(Clone)]
pub struct Delivery {
    /// The script file's content.
    pub body: Vec<u8>,
    /// Interpreter arguments between its own and the script path.
    pub before_script: Vec<String>,
    /// Arguments after the script path.
    pub args: Vec<String>,
    /// Written to the script's stdin, then closed (otherwise stdin is `/dev/null`).
    pub stdin: Option<Vec<u8>>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("body_bytes", &self.body.len())
            .field("before_script", &self.before_script.len())
            .field("args", &self.args.len())
            .field("stdin_bytes", &self.stdin.as_ref().map(Vec::len))
            .finish()
    }
}

/// Reads the parameters from stdin and runs the script (`sys.argv[1]`) as `__main__`.
const PYTHON_BOOT: &str = "import json,os,runpy,sys\n\
a=json.loads(sys.stdin.read())\n\
sys.stdin.close()\n\
sys.stdin=open(os.devnull)\n\
p=sys.argv[1]\n\
sys.argv=[p]+a\n\
sys.path[0]=os.path.dirname(os.path.abspath(p))\n\
runpy.run_path(p,run_name='__main__')\n";

/// How `task` is written and started; `Err` is the `[shoal]` line saying why it cannot run.
pub fn delivery(task: &RunTask) -> Result<Delivery, String> {
    let plain = Delivery { body: task.script.clone(), before_script: vec![], args: task.args.clone(), stdin: None };
    if !task.sensitive || task.args.is_empty() {
        return Ok(plain);
    }
    match ScriptLanguage::from_i32(task.language) {
        Some(ScriptLanguage::Shell) => {
            let line = format!("set -- {}\n", task.args.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" "));
            Ok(Delivery { body: after_shebang(&task.script, &line), args: vec![], ..plain })
        }
        Some(ScriptLanguage::Perl) => {
            let list = task.args.iter().map(|a| format!("'{}'", a.replace('\\', "\\\\").replace('\'', "\\'"))).collect::<Vec<_>>();
            let line = format!("BEGIN {{ @ARGV = ({}); }}\n", list.join(", "));
            Ok(Delivery { body: after_shebang(&task.script, &line), args: vec![], ..plain })
        }
        Some(ScriptLanguage::Python) => Ok(Delivery {
            before_script: vec!["-c".into(), PYTHON_BOOT.into()],
            args: vec![],
            stdin: Some(serde_json::to_vec(&task.args).unwrap_or_default()),
            ..plain
        }),
        _ => Err("[shoal] sensitive parameters cannot reach a script in this language without showing in the process list".into()),
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// `line` after the first line of `body` when that is a shebang, else before it.
fn after_shebang(body: &[u8], line: &str) -> Vec<u8> {
    let at = if body.starts_with(b"#!") { body.iter().position(|b| *b == b'\n').map_or(body.len(), |i| i + 1) } else { 0 };
    let mut out = Vec::with_capacity(body.len() + line.len() + 1);
    out.extend_from_slice(&body[..at]);
    if at == body.len() && at > 0 && !body.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend_from_slice(line.as_bytes());
    out.extend_from_slice(&body[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(language: i32, script: &str, args: &[&str], sensitive: bool) -> RunTask {
        RunTask {
            key: shoal_proto::agent::TaskKey::new(1, 0, 1),
            language,
            script: script.as_bytes().to_vec(),
            args: args.iter().map(|s| s.to_string()).collect(),
            sensitive,
            user: "root".into(),
            timeout_secs: 0,
            output_cap: 0,
            mask: vec![],
            transfer: None,
        }
    }

    #[test]
    fn plain_parameters_stay_on_the_command_line() {
        let d = delivery(&task(1, "echo $1", &["a"], false)).unwrap();
        assert_eq!((d.body, d.args, d.stdin), (b"echo $1".to_vec(), vec!["a".to_string()], None));
    }

    #[test]
    fn sensitive_parameters_go_into_the_script_or_stdin() {
        let d = delivery(&task(1, "#!/bin/bash\necho $1\n", &["it's", "b c"], true)).unwrap();
        assert_eq!(String::from_utf8(d.body).unwrap(), "#!/bin/bash\nset -- 'it'\\''s' 'b c'\necho $1\n");
        assert!(d.args.is_empty());
        let d = delivery(&task(1, "echo $1", &["x"], true)).unwrap();
        assert_eq!(String::from_utf8(d.body).unwrap(), "set -- 'x'\necho $1");
        let d = delivery(&task(3, "#!/usr/bin/perl\nprint @ARGV;", &["a'\\"], true)).unwrap();
        assert_eq!(String::from_utf8(d.body).unwrap(), "#!/usr/bin/perl\nBEGIN { @ARGV = ('a\\'\\\\'); }\nprint @ARGV;");
        let d = delivery(&task(4, "print(1)", &["s"], true)).unwrap();
        assert_eq!((d.args.len(), d.stdin), (0, Some(b"[\"s\"]".to_vec())));
        assert_eq!(d.before_script[0], "-c");
        assert!(delivery(&task(5, "x", &["s"], true)).is_err());
    }
}
