//! Dangerous-statement rules (高危语句, spec §11) and the script check behind `check_script`
//! and the pre-execution interception (`1244019`).
//!
//! Two sources of findings:
//! - **custom rules**: admin-written regexes, applied per language and only when enabled; every
//!   hit is level 3 (fatal) as in JOB, and the rule's action decides whether execution is
//!   blocked ([`blocks`]) or the hit is only recorded (scan, JOB PR #893);
//! - **built-ins** (shell only): a missing shebang warning and a small table of obviously
//!   destructive commands ([`BUILTINS`]), which always intercept.
//!
//! Rules compile with the `regex` crate, whose matching is linear in the input, so a hostile
//! expression cannot stall a check the way a backtracking Java pattern can; lookaround and
//! backreferences are therefore rejected at [`compile`] time.

use std::sync::LazyLock;

use regex::{Regex, RegexBuilder};
use shoal_proto::code::ErrorCode;
use shoal_proto::status::ScriptLanguage;

use crate::JobError;

/// 1244019 "Dangerous script, cannot be executed": an intercepting rule matched.
pub const DANGEROUS_SCRIPT_FORBIDDEN_EXECUTION: ErrorCode = ErrorCode(1244019);

/// JOB's limit on a rule's expression (`create_dangerous_rule`).
pub const MAX_EXPRESSION_CHARS: usize = 250;

/// Compiled-program cap: a 250-character expression such as `(\w{100}){100}` would otherwise
/// expand to megabytes of automaton.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Finding levels as `check_script` reports them.
pub const LEVEL_WARNING: i32 = 1;
pub const LEVEL_ERROR: i32 = 2;
pub const LEVEL_FATAL: i32 = 3;

/// What a matching rule does (`HighRiskGrammarActionEnum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleAction {
    /// Record the hit, let the job run.
    Scan = 1,
    /// Refuse to start the job (`1244019`).
    Intercept = 2,
}

impl RuleAction {
    pub fn from_i32(v: i32) -> Option<Self> {
        match v {
            1 => Some(Self::Scan),
            2 => Some(Self::Intercept),
            _ => None,
        }
    }

    pub fn code(self) -> i32 {
        self as i32
    }
}

/// A dangerous-statement rule as stored and served by the rule APIs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: i64,
    /// Regular expression searched for in each script line (≤ 250 characters).
    pub expression: String,
    /// `ScriptLanguage` values the rule applies to.
    pub script_languages: Vec<i32>,
    pub description: String,
    pub action: RuleAction,
    pub enabled: bool,
}

/// A rule whose expression compiled; build with [`compile`].
#[derive(Debug, Clone)]
pub struct CompiledRule {
    rule: Rule,
    regex: Regex,
}

impl CompiledRule {
    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// Whether the rule takes part in checking a script of `language`.
    pub fn applies_to(&self, language: i32) -> bool {
        self.rule.enabled && self.rule.script_languages.contains(&language)
    }
}

/// Validates and compiles a rule's expression: blank, longer than [`MAX_EXPRESSION_CHARS`],
/// unsupported syntax or too large a program → `1241005` "expression".
pub fn compile(rule: &Rule) -> Result<CompiledRule, JobError> {
    let expr = rule.expression.as_str();
    if expr.trim().is_empty() || expr.chars().count() > MAX_EXPRESSION_CHARS {
        return Err(JobError::illegal("expression"));
    }
    let regex = RegexBuilder::new(expr)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|_| JobError::illegal("expression"))?;
    Ok(CompiledRule { rule: rule.clone(), regex })
}

/// One hit of a check, as `check_script` answers it (sorted by line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// 1-based line number.
    pub line: usize,
    /// The whole line, without its line ending.
    pub line_content: String,
    /// The part of the line that matched.
    pub match_content: String,
    /// [`LEVEL_WARNING`], [`LEVEL_ERROR`] or [`LEVEL_FATAL`].
    pub level: i32,
    pub description: String,
    /// The custom rule that matched; `None` for built-in checks.
    pub rule_id: Option<i64>,
    /// `None` for findings that are advice only (the shebang warning).
    pub action: Option<RuleAction>,
}

/// Whether the findings stop the job from starting (`1244019`). Scan-only hits never do.
pub fn blocks(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.action == Some(RuleAction::Intercept))
}

/// The error a blocked start answers with.
pub fn forbidden() -> JobError {
    JobError::new(DANGEROUS_SCRIPT_FORBIDDEN_EXECUTION)
}

/// Checks `script` line by line: enabled custom rules for `language`, and for shell the
/// built-ins. Blank and comment lines are skipped (see [`is_comment`]); a shell script's first
/// line must be a shebang.
pub fn check_script(language: i32, script: &str, rules: &[CompiledRule]) -> Vec<Finding> {
    let shell = language == ScriptLanguage::Shell as i32;
    let rules: Vec<&CompiledRule> = rules.iter().filter(|r| r.applies_to(language)).collect();
    let script = script.strip_prefix('\u{feff}').unwrap_or(script);
    let mut out = Vec::new();
    for (index, raw) in script.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if index == 0 && shell && !trimmed.starts_with("#!") {
            out.push(Finding {
                line,
                line_content: raw.to_string(),
                match_content: String::new(),
                level: LEVEL_WARNING,
                description: "missing shebang (#!/bin/bash)".to_string(),
                rule_id: None,
                action: None,
            });
        }
        if trimmed.is_empty() || is_comment(language, trimmed) {
            continue;
        }
        if shell {
            for (builtin, matched) in builtin_hits(trimmed) {
                out.push(Finding {
                    line,
                    line_content: raw.to_string(),
                    match_content: matched,
                    level: LEVEL_FATAL,
                    description: builtin.description.to_string(),
                    rule_id: None,
                    action: Some(RuleAction::Intercept),
                });
            }
        }
        for rule in &rules {
            if let Some(m) = rule.regex.find(raw) {
                out.push(Finding {
                    line,
                    line_content: raw.to_string(),
                    match_content: m.as_str().to_string(),
                    level: LEVEL_FATAL,
                    description: rule.rule.description.clone(),
                    rule_id: Some(rule.rule.id),
                    action: Some(rule.rule.action),
                });
            }
        }
    }
    out
}

/// Whether a trimmed, non-empty line is a comment in `language`: `#` for shell, perl, python
/// and powershell (this covers the shebang too); `REM` or `::` for bat (also `@REM`). SQL and
/// unknown languages have no comment lines, as in JOB.
pub fn is_comment(language: i32, trimmed: &str) -> bool {
    use ScriptLanguage::*;
    match ScriptLanguage::from_i32(language) {
        Some(Shell | Perl | Python | Powershell) => trimmed.starts_with('#'),
        Some(Bat) => trimmed.starts_with("::") || is_rem(trimmed),
        Some(Sql) | None => false,
    }
}

fn is_rem(line: &str) -> bool {
    let line = line.strip_prefix('@').unwrap_or(line);
    match (line.get(..3), line.get(3..)) {
        (Some(head), Some(rest)) => head.eq_ignore_ascii_case("rem") && rest.chars().next().is_none_or(char::is_whitespace),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Built-in checks (shell)

/// A built-in shell check: either over the words of each simple command on the line, or over
/// the raw line for shapes that are not a command (the fork bomb, redirections).
pub struct BuiltIn {
    pub description: &'static str,
    matcher: Matcher,
}

enum Matcher {
    /// Gets one simple command's words, wrappers (`sudo`, `env`, …) already removed.
    Command(fn(&[String]) -> bool),
    /// Gets the trimmed line, returns the matched text.
    Line(fn(&str) -> Option<&str>),
}

/// The destructive forms every shell script is checked for.
pub const BUILTINS: &[BuiltIn] = &[
    BuiltIn { description: "recursive rm of the root directory (rm -rf /)", matcher: Matcher::Command(rm_root) },
    BuiltIn { description: "mkfs formats a block device", matcher: Matcher::Command(mkfs_device) },
    BuiltIn { description: "dd writes over a disk device", matcher: Matcher::Command(dd_to_disk) },
    BuiltIn { description: "output redirected over a disk device", matcher: Matcher::Line(redirect_to_disk) },
    BuiltIn { description: "fork bomb", matcher: Matcher::Line(fork_bomb) },
];

fn builtin_hits(line: &str) -> Vec<(&'static BuiltIn, String)> {
    let commands: Vec<(&str, Vec<String>)> = simple_commands(line).into_iter().map(|c| (c, words(c))).collect();
    let mut hits = Vec::new();
    for builtin in BUILTINS {
        match builtin.matcher {
            Matcher::Command(check) => {
                if let Some((text, _)) = commands.iter().find(|(_, w)| check(strip_wrappers(w))) {
                    hits.push((builtin, text.trim().to_string()));
                }
            }
            Matcher::Line(check) => {
                if let Some(m) = check(line) {
                    hits.push((builtin, m.to_string()));
                }
            }
        }
    }
    hits
}

/// Splits a line into simple commands at unquoted `;`, `&`, `|`, `(`, `)` and backticks, and
/// stops at an unquoted `#` that starts a word. Braces are left alone so `/{a,b}` stays a word.
fn simple_commands(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut single, mut double, mut escaped) = (false, false, false);
    let mut start = 0;
    let mut prev: Option<char> = None;
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
        } else if single {
            single = c != '\'';
        } else if c == '\\' {
            escaped = true;
        } else if double {
            double = c != '"';
        } else {
            match c {
                '\'' => single = true,
                '"' => double = true,
                '#' if prev.is_none_or(char::is_whitespace) => {
                    out.push(&line[start..i]);
                    start = line.len();
                    break;
                }
                ';' | '&' | '|' | '(' | ')' | '`' => {
                    out.push(&line[start..i]);
                    start = i + c.len_utf8();
                }
                _ => {}
            }
        }
        prev = Some(c);
    }
    out.push(&line[start..]);
    out.retain(|c| !c.trim().is_empty());
    out
}

/// The words of a simple command with quotes removed; unbalanced quotes fall back to
/// whitespace splitting.
fn words(command: &str) -> Vec<String> {
    shell_words::split(command).unwrap_or_else(|_| command.split_whitespace().map(String::from).collect())
}

/// Drops what runs the real command: assignments, `sudo`/`env`/`nice`… with their options,
/// and keywords such as `then` or `do` that precede a command on the same line.
fn strip_wrappers(mut words: &[String]) -> &[String] {
    while let Some(first) = words.first() {
        let word = first.as_str();
        if is_assignment(word)
            || matches!(word, "{" | "!" | "if" | "then" | "else" | "elif" | "do" | "while" | "until")
            || matches!(word, "exec" | "command" | "builtin" | "nohup" | "time")
        {
            words = &words[1..];
            continue;
        }
        let with_argument: &[&str] = match basename(word) {
            "sudo" | "doas" => &["-u", "-g", "-h", "-p", "-C", "-D", "-r", "-t", "-T", "-U", "-R"],
            "env" => &["-u", "-C", "-S", "--unset", "--chdir"],
            "nice" => &["-n", "--adjustment"],
            _ => break,
        };
        words = &words[1..];
        while let Some(w) = words.first() {
            if with_argument.contains(&w.as_str()) {
                words = &words[words.len().min(2)..];
            } else if w.starts_with('-') || is_assignment(w) {
                words = &words[1..];
            } else {
                break;
            }
        }
    }
    words
}

fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// `rm` with a recursive option and a target that is `/` (however spelled) or `/*`.
fn rm_root(words: &[String]) -> bool {
    let Some((cmd, args)) = words.split_first() else { return false };
    if basename(cmd) != "rm" {
        return false;
    }
    let (mut recursive, mut root, mut options_done) = (false, false, false);
    for arg in args {
        if options_done || arg == "-" || !arg.starts_with('-') {
            root |= is_root(arg);
        } else if arg == "--" {
            options_done = true;
        } else if let Some(long) = arg.strip_prefix("--") {
            // GNU accepts unambiguous prefixes (`--rec`).
            recursive |= long.len() >= 3 && "recursive".starts_with(long);
        } else {
            recursive |= arg.contains(['r', 'R']);
        }
    }
    recursive && root
}

/// Whether a path names the root directory or everything directly in it: `/`, `//`, `/.`,
/// `/tmp/..`, `/*`.
fn is_root(path: &str) -> bool {
    if !path.starts_with('/') {
        return false;
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    segments.is_empty() || segments == ["*"]
}

/// `mkfs`, `mkfs.<type>` or `mke2fs` given a `/dev/` path.
fn mkfs_device(words: &[String]) -> bool {
    let Some((cmd, args)) = words.split_first() else { return false };
    let cmd = basename(cmd);
    (cmd == "mkfs" || cmd.starts_with("mkfs.") || cmd == "mke2fs") && args.iter().any(|a| a.starts_with("/dev/"))
}

/// `dd … of=<disk device>`.
fn dd_to_disk(words: &[String]) -> bool {
    let Some((cmd, args)) = words.split_first() else { return false };
    basename(cmd) == "dd" && args.iter().any(|a| a.strip_prefix("of=").is_some_and(is_disk_device))
}

/// Block devices holding file systems; `/dev/null`, `/dev/zero`, ttys and the like are not.
fn is_disk_device(path: &str) -> bool {
    const DISKS: &[&str] = &["sd", "hd", "vd", "xvd", "nvme", "mmcblk", "md", "dm-", "mapper/", "disk/", "cciss/"];
    path.strip_prefix("/dev/").is_some_and(|dev| DISKS.iter().any(|d| dev.starts_with(d)))
}

fn redirect_to_disk(line: &str) -> Option<&str> {
    static REDIRECT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r">\|?\s*(/dev/[\w/.-]+)").expect("valid regex"));
    REDIRECT.captures_iter(line).find(|c| is_disk_device(&c[1])).map(|c| c.get(0).map_or("", |m| m.as_str()))
}

/// `f(){ f|f& };f` for any function name, `:` included, however spaced.
fn fork_bomb(line: &str) -> Option<&str> {
    static BOMB: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"([\w:.-]+)\s*\(\s*\)\s*\{\s*([\w:.-]+)\s*\|\s*([\w:.-]+)\s*&\s*;?\s*\}").expect("valid regex"));
    // The regex crate has no backreferences: compare the three names here.
    BOMB.captures_iter(line).find(|c| c[1] == c[2] && c[2] == c[3]).map(|c| c.get(0).map_or("", |m| m.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHELL: i32 = 1;
    const BAT: i32 = 2;
    const PERL: i32 = 3;
    const PYTHON: i32 = 4;
    const POWERSHELL: i32 = 5;
    const SQL: i32 = 6;

    fn rule(id: i64, expression: &str, languages: &[i32], action: RuleAction) -> Rule {
        Rule {
            id,
            expression: expression.to_string(),
            script_languages: languages.to_vec(),
            description: format!("rule {id}"),
            action,
            enabled: true,
        }
    }

    fn compiled(id: i64, expression: &str, languages: &[i32], action: RuleAction) -> CompiledRule {
        compile(&rule(id, expression, languages, action)).unwrap()
    }

    /// Built-in fatal findings for one shell line (after a shebang so no warning shows).
    fn builtin_findings(line: &str) -> Vec<Finding> {
        check_script(SHELL, &format!("#!/bin/bash\n{line}\n"), &[])
    }

    #[test]
    fn compile_rejects_bad_expressions_with_1241005() {
        for bad in ["", "   ", "(", "[a-", "a{2,1}", "(?=lookahead)", "(a)\\1", &"a".repeat(251), r"(\w{100}){100}"] {
            let err = compile(&rule(1, bad, &[SHELL], RuleAction::Scan)).unwrap_err();
            assert_eq!(err.code, ErrorCode::ILLEGAL_PARAM_WITH_NAME, "{bad:?}");
            assert_eq!(err.args, vec!["expression".to_string()]);
        }
    }

    #[test]
    fn compile_accepts_up_to_250_characters() {
        let at_limit = "é".repeat(MAX_EXPRESSION_CHARS);
        let c = compile(&rule(7, &at_limit, &[SHELL], RuleAction::Scan)).unwrap();
        assert_eq!(c.rule().id, 7);
        assert!(compile(&rule(1, r"rm\s+-rf", &[SHELL], RuleAction::Intercept)).is_ok());
    }

    #[test]
    fn custom_rules_report_every_matching_line_at_level_3() {
        let rules = [compiled(10, r"rm\s+-\w+", &[SHELL], RuleAction::Intercept)];
        let script = "#!/bin/bash\necho start\nrm -rf /tmp/a\n\n  rm -f b\n";
        let f = check_script(SHELL, script, &rules);
        assert_eq!(f.len(), 2);
        assert_eq!((f[0].line, f[0].line_content.as_str(), f[0].match_content.as_str()), (3, "rm -rf /tmp/a", "rm -rf"));
        assert_eq!((f[1].line, f[1].line_content.as_str(), f[1].match_content.as_str()), (5, "  rm -f b", "rm -f"));
        for x in &f {
            assert_eq!(x.level, LEVEL_FATAL);
            assert_eq!(x.rule_id, Some(10));
            assert_eq!(x.action, Some(RuleAction::Intercept));
            assert_eq!(x.description, "rule 10");
        }
        assert!(blocks(&f));
    }

    #[test]
    fn rules_apply_only_to_their_languages_and_only_when_enabled() {
        let mut disabled = rule(2, "danger", &[PYTHON], RuleAction::Intercept);
        disabled.enabled = false;
        let rules = [compiled(1, "danger", &[PERL], RuleAction::Intercept), compile(&disabled).unwrap()];
        assert_eq!(check_script(PERL, "danger()", &rules).len(), 1);
        assert!(check_script(PYTHON, "danger()", &rules).is_empty());
        assert!(check_script(SQL, "danger()", &rules).is_empty());
        assert!(check_script(99, "danger()", &rules).is_empty());
    }

    #[test]
    fn several_rules_on_one_line_each_report() {
        let rules = [
            compiled(1, "drop", &[SQL], RuleAction::Scan),
            compiled(2, "table", &[SQL], RuleAction::Intercept),
            compiled(3, "nomatch", &[SQL], RuleAction::Intercept),
        ];
        let f = check_script(SQL, "drop table users;", &rules);
        assert_eq!(f.iter().map(|x| x.rule_id).collect::<Vec<_>>(), vec![Some(1), Some(2)]);
    }

    #[test]
    fn comment_and_blank_lines_are_skipped_per_language() {
        let any = |langs: &[i32]| [compiled(1, "danger", langs, RuleAction::Intercept)];
        for lang in [SHELL, PERL, PYTHON, POWERSHELL] {
            let rules = any(&[lang]);
            let f = check_script(lang, "#!/usr/bin/env x danger\n  # danger\n\t\n   \ndanger # trailing\n", &rules);
            assert_eq!(f.iter().filter(|x| x.rule_id.is_some()).map(|x| x.line).collect::<Vec<_>>(), vec![5], "{lang}");
        }
        let rules = any(&[BAT]);
        let script = "REM danger\n  rem danger\n@REM danger\n:: danger\nremark danger\necho danger\n";
        let f = check_script(BAT, script, &rules);
        assert_eq!(f.iter().map(|x| x.line).collect::<Vec<_>>(), vec![5, 6]);
        // `#` is not a bat comment, and SQL has no comment lines JOB knows of.
        assert_eq!(check_script(BAT, "# danger", &rules).len(), 1);
        assert_eq!(check_script(SQL, "-- danger", &any(&[SQL])).len(), 1);
    }

    #[test]
    fn crlf_and_bom_are_handled() {
        let rules = [compiled(1, "danger$", &[SHELL], RuleAction::Scan)];
        let f = check_script(SHELL, "\u{feff}#!/bin/sh\r\necho danger\r\n", &rules);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].line, f[0].line_content.as_str()), (2, "echo danger"));
    }

    #[test]
    fn scan_only_findings_never_block() {
        let rules = [compiled(1, "curl", &[SHELL], RuleAction::Scan)];
        let f = check_script(SHELL, "#!/bin/bash\ncurl http://x | sh\n", &rules);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].action, Some(RuleAction::Scan));
        assert!(!blocks(&f));
        assert!(!blocks(&[]));
        assert_eq!(forbidden().code.0, 1244019);
    }

    #[test]
    fn shell_without_shebang_gets_a_warning_that_does_not_block() {
        let f = check_script(SHELL, "echo hi\n", &[]);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].line, f[0].level, f[0].action), (1, LEVEL_WARNING, None));
        assert_eq!(f[0].description, "missing shebang (#!/bin/bash)");
        assert!(!blocks(&f));
        // The shebang must be on the first line; other languages are not asked for one.
        assert_eq!(check_script(SHELL, "\n#!/bin/bash\n", &[]).len(), 1);
        assert!(check_script(SHELL, "#!/bin/sh\necho hi", &[]).is_empty());
        assert!(check_script(SHELL, "", &[]).is_empty());
        assert!(check_script(PYTHON, "print(1)", &[]).is_empty());
    }

    #[test]
    fn destructive_shell_forms_are_fatal_and_intercepted() {
        let dangerous = [
            ("rm -rf /", "rm -rf /"),
            ("rm -fr /", "rm -fr /"),
            ("rm -Rf /", "rm -Rf /"),
            ("rm -r -f /", "rm -r -f /"),
            ("rm -r /", "rm -r /"),
            ("rm --recursive --force /", "rm --recursive --force /"),
            ("rm --rec --force /", "rm --rec --force /"),
            ("rm -rf /*", "rm -rf /*"),
            ("rm -rf \"/\"", "rm -rf \"/\""),
            ("rm -rf '/*'", "rm -rf '/*'"),
            ("rm -rf //", "rm -rf //"),
            ("rm -rf /.", "rm -rf /."),
            ("rm -rf /tmp/..", "rm -rf /tmp/.."),
            ("rm -rf -- /", "rm -rf -- /"),
            ("rm -rf / --no-preserve-root", "rm -rf / --no-preserve-root"),
            ("rm -rf /tmp/x /", "rm -rf /tmp/x /"),
            ("/bin/rm -rf /", "/bin/rm -rf /"),
            ("\\rm -rf /", "\\rm -rf /"),
            ("sudo rm -rf --no-preserve-root /", "sudo rm -rf --no-preserve-root /"),
            ("sudo -u root -E rm -rf /", "sudo -u root -E rm -rf /"),
            ("env LANG=C rm -rf /", "env LANG=C rm -rf /"),
            ("X=1 rm -rf /", "X=1 rm -rf /"),
            ("  rm \t -rf \t  /  ", "rm \t -rf \t  /"),
            ("cd /tmp && rm -rf /", "rm -rf /"),
            ("true; rm -rf / ; echo done", "rm -rf /"),
            ("if true; then rm -rf /; fi", "then rm -rf /"),
            ("out=$(rm -rf /)", "rm -rf /"),
            ("nohup rm -rf / &", "nohup rm -rf /"),
            ("mkfs.ext4 /dev/sda", "mkfs.ext4 /dev/sda"),
            ("mkfs -t xfs /dev/nvme0n1p1", "mkfs -t xfs /dev/nvme0n1p1"),
            ("sudo mke2fs /dev/vdb", "sudo mke2fs /dev/vdb"),
            ("dd if=/dev/zero of=/dev/sda bs=1M", "dd if=/dev/zero of=/dev/sda bs=1M"),
            ("dd if=/dev/urandom of=/dev/sdb1", "dd if=/dev/urandom of=/dev/sdb1"),
            ("cat image > /dev/sda", "> /dev/sda"),
            (":(){ :|:& };:", ":(){ :|:& }"),
            (":() { : | : & } ; :", ":() { : | : & }"),
            ("bomb(){ bomb|bomb& };bomb", "bomb(){ bomb|bomb& }"),
        ];
        for (line, matched) in dangerous {
            let f = builtin_findings(line);
            assert_eq!(f.len(), 1, "{line:?}: {f:?}");
            let f = &f[0];
            assert_eq!((f.line, f.level, f.rule_id, f.action), (2, LEVEL_FATAL, None, Some(RuleAction::Intercept)), "{line}");
            assert_eq!(f.line_content, line);
            assert_eq!(f.match_content, matched, "{line}");
            assert!(blocks(std::slice::from_ref(f)));
        }
    }

    #[test]
    fn builtin_descriptions_come_from_the_table() {
        let f = builtin_findings("dd if=/dev/zero of=/dev/sda");
        assert_eq!(f[0].description, "dd writes over a disk device");
        assert!(BUILTINS.iter().any(|b| b.description == f[0].description));
    }

    #[test]
    fn harmless_lines_never_match_builtins() {
        let rms = ["rm -rf", "rm -fr", "rm -r -f", "rm --recursive --force", "sudo rm -rf", "/bin/rm -rf", "rm -f", "rm"];
        let targets = [
            "/tmp/x",
            "./build",
            "build/",
            "/var/log/app/*.log",
            "/tmp/*",
            "*",
            ".",
            "..",
            "~/cache",
            "\"$DIR\"",
            "\"${BUILD_DIR:?}/out\"",
            "/opt/app/releases/{a,b}",
            "/home/user/.cache/",
            "/tmp/x/../y",
            "'/srv/data dir'",
            "-- -weird-name",
        ];
        let suffixes = ["", " ; ls /", " && cd /", " || echo /", " # then rm -rf /", " 2>/dev/null", " > /tmp/log"];
        let mut lines: Vec<String> = Vec::new();
        for rm in rms {
            for target in targets {
                for suffix in suffixes {
                    lines.push(format!("{rm} {target}{suffix}"));
                }
            }
        }
        let others = [
            "ls -la /",
            "cd /",
            "find / -name '*.log' -mtime +7",
            "du -sh /*",
            "rm -f /",
            "rm /",
            "echo \"rm -rf /\"",
            "echo 'rm -rf /' >> /tmp/notes",
            "printf '%s\\n' rm -rf /",
            "chmod -R 755 /opt/app",
            "chown -R app:app /",
            "grep -r foo /etc",
            "cp -r /etc /backup",
            "tar -czf /backup/root.tgz /",
            "rsync -a / /mnt/backup",
            "dd if=/dev/zero of=/tmp/disk.img bs=1M count=10",
            "dd if=/dev/sda of=/backup/sda.img",
            "dd if=/dev/zero of=/dev/null count=1",
            "mkfs.ext4 /tmp/disk.img",
            "mkfs.ext4 -F \"$IMAGE\"",
            "echo hello > /dev/null",
            "cmd 2>/dev/null >/dev/stderr",
            "exec 3>/dev/tcp/127.0.0.1/80",
            "ls /dev/sda*",
            "fdisk -l /dev/sda",
            "lsblk /dev/sda",
            "f() { echo hi; }",
            "main() { run | tee log & }",
            "a(){ b|c& }",
            "trap ':' INT",
            "while :; do sleep 1; done",
            ": > /tmp/empty",
            "farm -rf /",
            "rmdir /tmp/x",
            "rm -rf \"$HOME/.cache\"",
            "rm -rf /tmp/'unbalanced",
            "ssh host 'ls /'",
            "echo $((1 + 2))",
            "x=\"a;b|c&d\"",
        ];
        lines.extend(others.iter().map(|s| s.to_string()));
        assert!(lines.len() > 900);
        for line in &lines {
            let f = builtin_findings(line);
            assert!(f.is_empty(), "{line:?} matched: {f:?}");
        }
    }

    #[test]
    fn builtins_run_for_shell_only() {
        for lang in [BAT, PERL, PYTHON, POWERSHELL, SQL] {
            assert!(check_script(lang, "rm -rf /", &[]).is_empty(), "{lang}");
        }
        // Commented-out destruction is not reported.
        assert!(builtin_findings("# rm -rf /").is_empty());
    }

    #[test]
    fn builtin_and_custom_findings_share_a_line() {
        let rules = [compiled(5, "rm", &[SHELL], RuleAction::Scan)];
        let f = check_script(SHELL, "rm -rf /", &rules);
        let summary: Vec<_> = f.iter().map(|x| (x.line, x.level, x.rule_id, x.action)).collect();
        assert_eq!(
            summary,
            vec![
                (1, LEVEL_WARNING, None, None),
                (1, LEVEL_FATAL, None, Some(RuleAction::Intercept)),
                (1, LEVEL_FATAL, Some(5), Some(RuleAction::Scan)),
            ]
        );
    }

    #[test]
    fn rule_action_codes_round_trip() {
        for a in [RuleAction::Scan, RuleAction::Intercept] {
            assert_eq!(RuleAction::from_i32(a.code()), Some(a));
        }
        assert_eq!(RuleAction::from_i32(0), None);
        assert_eq!(RuleAction::from_i32(3), None);
    }
}
