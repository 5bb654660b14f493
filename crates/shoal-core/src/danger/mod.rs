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

pub mod shell;

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
    /// The built-in that matched ([`BuiltIn::name`]); `None` for custom rules and advice.
    pub builtin: Option<&'static str>,
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

/// Checks `script` as [`check`] does, without parameters and with every built-in on.
pub fn check_script(language: i32, script: &str, rules: &[CompiledRule]) -> Vec<Finding> {
    check(language, script, &[], rules, &[])
}

/// Checks `script`, run with positional parameters `params`, for `language`:
///
/// - every language: enabled custom rules on each raw line (blank and comment lines skipped,
///   see [`is_comment`]) and on the parameters' text;
/// - shell: the script is parsed (see [`shell`]) and the custom rules run again on each
///   normalised command (quotes resolved, variables and `$1…` expanded, `eval` / `sh -c` /
///   `base64 -d | sh` payloads included); the built-ins ([`BUILTINS`]) not named in
///   `disabled_builtins` run on the normalised commands of the script and of the parameters'
///   text; the first line must be a shebang.
///
/// One finding per (source, line): a rule that matches both the raw line and its normalised
/// command reports once.
pub fn check(language: i32, script: &str, params: &[String], rules: &[CompiledRule], disabled_builtins: &[String]) -> Vec<Finding> {
    let shell = language == ScriptLanguage::Shell as i32;
    let rules: Vec<&CompiledRule> = rules.iter().filter(|r| r.applies_to(language)).collect();
    let script = script.strip_prefix('\u{feff}').unwrap_or(script);
    let lines: Vec<&str> = script.lines().collect();
    let raw_line = |line: usize| lines.get(line.wrapping_sub(1)).map_or(String::new(), |l| l.to_string());
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut push = |out: &mut Vec<Finding>, f: Finding| {
        let key = (f.rule_id, f.builtin, f.line);
        if seen.insert(key) {
            out.push(f);
        }
    };
    if shell && lines.first().is_some_and(|l| !l.trim().starts_with("#!")) {
        push(
            &mut out,
            Finding {
                line: 1,
                line_content: lines[0].to_string(),
                match_content: String::new(),
                level: LEVEL_WARNING,
                description: "missing shebang (#!/bin/bash)".to_string(),
                rule_id: None,
                builtin: None,
                action: None,
            },
        );
    }
    if shell {
        let analysis = shell::analyse(script, params);
        for (builtin, line, matched) in builtin_hits(&analysis, &lines, disabled_builtins) {
            push(&mut out, builtin_finding(builtin, line, raw_line(line), matched));
        }
        for command in &analysis.commands {
            let text = command.text();
            for rule in &rules {
                if let Some(m) = rule.regex.find(&text) {
                    push(&mut out, rule_finding(rule, command.line, raw_line(command.line), m.as_str()));
                }
            }
        }
    }
    for (index, raw) in lines.iter().enumerate() {
        let trimmed = raw.trim();
        if trimmed.is_empty() || is_comment(language, trimmed) {
            continue;
        }
        for rule in &rules {
            if let Some(m) = rule.regex.find(raw) {
                push(&mut out, rule_finding(rule, index + 1, raw.to_string(), m.as_str()));
            }
        }
    }
    // The parameters' own text: a rule or built-in that matches it is reported on line 0.
    if !params.is_empty() {
        let text = params.join(" ");
        for rule in &rules {
            if let Some(m) = rule.regex.find(&text) {
                push(&mut out, rule_finding(rule, 0, PARAMS_LINE.to_string(), m.as_str()));
            }
        }
        if shell {
            let analysis = shell::analyse(&text, &[]);
            for (builtin, _, matched) in builtin_hits(&analysis, &[], disabled_builtins) {
                push(&mut out, builtin_finding(builtin, 0, PARAMS_LINE.to_string(), matched));
            }
        }
    }
    out.sort_by_key(|f| f.line);
    out
}

/// What a finding on the parameters shows as its line.
pub const PARAMS_LINE: &str = "(script_param)";

fn rule_finding(rule: &CompiledRule, line: usize, line_content: String, matched: &str) -> Finding {
    Finding {
        line,
        line_content,
        match_content: matched.to_string(),
        level: LEVEL_FATAL,
        description: rule.rule.description.clone(),
        rule_id: Some(rule.rule.id),
        builtin: None,
        action: Some(rule.rule.action),
    }
}

fn builtin_finding(builtin: &'static BuiltIn, line: usize, line_content: String, matched: String) -> Finding {
    Finding {
        line,
        line_content,
        match_content: matched,
        level: LEVEL_FATAL,
        description: builtin.description.to_string(),
        rule_id: None,
        builtin: Some(builtin.name),
        action: Some(RuleAction::Intercept),
    }
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

/// A built-in shell check over the analysed script (see [`shell::Analysis`]).
pub struct BuiltIn {
    /// Stable name an admin uses to turn the check off (`shoal danger builtin disable NAME`).
    pub name: &'static str,
    pub description: &'static str,
    matcher: Matcher,
}

enum Matcher {
    /// Gets one simple command's words, wrappers (`sudo`, `env`, …) already removed.
    Command(fn(&[String]) -> bool),
    /// Gets each file an output redirection writes.
    Redirect(fn(&str) -> bool),
    /// A function that calls itself twice in one pipeline; on unparsable lines, the regex.
    ForkBomb,
}

/// The destructive forms every shell script is checked for. Each intercepts (1244019) unless
/// an admin turned it off.
pub const BUILTINS: &[BuiltIn] = &[
    BuiltIn { name: "rm-root", description: "recursive rm of the root directory (rm -rf /)", matcher: Matcher::Command(rm_root) },
    BuiltIn { name: "mkfs-device", description: "mkfs formats a block device", matcher: Matcher::Command(mkfs_device) },
    BuiltIn { name: "dd-device", description: "dd writes over a disk device", matcher: Matcher::Command(dd_to_disk) },
    BuiltIn { name: "redirect-device", description: "output redirected over a disk device", matcher: Matcher::Redirect(is_disk_device) },
    BuiltIn { name: "fork-bomb", description: "fork bomb", matcher: Matcher::ForkBomb },
    BuiltIn { name: "chmod-root", description: "recursive chmod or chown of the root directory", matcher: Matcher::Command(chmod_root) },
];

/// The built-in with this name.
pub fn builtin(name: &str) -> Option<&'static BuiltIn> {
    BUILTINS.iter().find(|b| b.name == name)
}

fn builtin_hits(analysis: &shell::Analysis, lines: &[&str], disabled: &[String]) -> Vec<(&'static BuiltIn, usize, String)> {
    let mut hits = Vec::new();
    for builtin in BUILTINS.iter().filter(|b| !disabled.iter().any(|d| d == b.name)) {
        match builtin.matcher {
            Matcher::Command(check) => {
                for c in &analysis.commands {
                    let words = strip_wrappers(&c.words);
                    if check(words) {
                        hits.push((builtin, c.line, words.join(" ")));
                    }
                }
            }
            Matcher::Redirect(check) => {
                for (line, target) in &analysis.redirects {
                    if check(target) {
                        hits.push((builtin, *line, format!("> {target}")));
                    }
                }
            }
            Matcher::ForkBomb => {
                for (line, name) in &analysis.fork_bombs {
                    hits.push((builtin, *line, format!("{name}() {{ {name} | {name} & }}")));
                }
                if analysis.parse_failed {
                    for (i, l) in lines.iter().enumerate() {
                        if let Some(m) = fork_bomb(l) {
                            hits.push((builtin, i + 1, m.to_string()));
                        }
                    }
                }
            }
        }
    }
    hits
}

/// Splits a line into simple commands at unquoted `;`, `&`, `|`, `(`, `)` and backticks, and
/// stops at an unquoted `#` that starts a word: the fallback for a line the parser refuses.
pub(crate) fn split_simple_commands(line: &str) -> Vec<&str> {
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

/// Drops what runs the real command: assignments, `sudo`/`env`/`nice`… with their options,
/// and keywords such as `then` or `do` that precede a command on the same line.
pub(crate) fn strip_wrappers(mut words: &[String]) -> &[String] {
    while let Some(first) = words.first() {
        let word = first.as_str();
        if is_assignment(word) || matches!(word, "{" | "!" | "if" | "then" | "else" | "elif" | "do" | "while" | "until") {
            words = &words[1..];
            continue;
        }
        let name = basename(word);
        let with_argument: &[&str] = match name {
            "sudo" | "doas" => &["-u", "-g", "-h", "-p", "-C", "-D", "-r", "-t", "-T", "-U", "-R"],
            "env" => &["-u", "-C", "-S", "--unset", "--chdir"],
            "nice" => &["-n", "--adjustment"],
            "ionice" => &["-c", "-n", "-p", "-t"],
            "xargs" => &["-I", "-n", "-P", "-d", "-L", "-s", "-a", "-E", "--delimiter", "--max-args", "--max-procs"],
            "timeout" => &["-s", "-k", "--signal", "--kill-after"],
            "stdbuf" => &["-i", "-o", "-e"],
            "exec" => &["-a"],
            "command" | "builtin" | "nohup" | "time" | "setsid" | "busybox" | "chronic" | "unbuffer" => &[],
            _ => break,
        };
        words = &words[1..];
        while let Some(w) = words.first() {
            if with_argument.contains(&w.as_str()) {
                words = &words[words.len().min(2)..];
            } else if (w.starts_with('-') && w.len() > 1) || is_assignment(w) {
                words = &words[1..];
            } else {
                break;
            }
        }
        // `timeout DURATION command…`
        if name == "timeout" && !words.is_empty() {
            words = &words[1..];
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

pub(crate) fn basename(path: &str) -> &str {
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

/// `chmod` or `chown`/`chgrp` with a recursive option on the root directory (any mode).
fn chmod_root(words: &[String]) -> bool {
    let Some((cmd, args)) = words.split_first() else { return false };
    if !matches!(basename(cmd), "chmod" | "chown" | "chgrp") {
        return false;
    }
    let recursive = args.iter().any(|a| a == "--recursive" || (a.starts_with('-') && !a.starts_with("--") && a.contains('R')));
    recursive && args.iter().any(|a| is_root(a))
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

/// `f(){ f|f& };f` for any function name, `:` included, however spaced.
fn fork_bomb(line: &str) -> Option<&str> {
    static BOMB: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"([\w:.-]+)\s*\(\s*\)\s*\{\s*([\w:.-]+)\s*\|\s*([\w:.-]+)\s*&\s*;?\s*\}").expect("valid regex"));
    // The regex crate has no backreferences: compare the three names here.
    BOMB.captures_iter(line).find(|c| c[1] == c[2] && c[2] == c[3]).map(|c| c.get(0).map_or("", |m| m.as_str()))
}

/// Spellings of `rm -rf /` that bash runs as exactly that: every one must be blocked (the
/// test table of the core and server suites, kept here so both use the same list).
pub const RM_ROOT_SPELLINGS: &[&str] = &[
    "rm -rf /",
    "rm -fr /",
    "rm -Rf /",
    "rm -r -f /",
    "rm -R -f /",
    "rm -r /",
    "rm --recursive --force /",
    "rm --rec --force /",
    "rm -rf --no-preserve-root /",
    "rm -rf / --no-preserve-root",
    "rm -rf -- /",
    "rm -rf /*",
    "rm -rf //",
    "rm -rf /.",
    "rm -rf /tmp/..",
    "rm -rf /tmp/x /",
    "rm -rf \"/\"",
    "rm -rf '/*'",
    "r\"\"m -rf /",
    "'rm' -rf /",
    "\"rm\" \"-rf\" \"/\"",
    "r'm' -r''f /''",
    "\\rm -rf /",
    "\\r\\m -rf \\/",
    "$'\\x72\\x6d' -rf /",
    "$'\\162m' -rf $'\\x2f'",
    "rm${IFS}-rf${IFS}/",
    "rm$IFS-rf$IFS/",
    "rm -rf \\\n  /",
    "rm \\\n -rf \\\n /",
    "a=rm; $a -rf /",
    "a=rm\nb=-rf\n$a $b /",
    "x=/; rm -rf $x",
    "x=/\nrm -rf \"$x\"",
    "c='rm -rf /'; $c",
    "export T=/; rm -rf ${T}",
    "rm -rf ${x:-/}",
    "rm -rf \"$(echo /)\"",
    "rm -rf `echo /`",
    "/bin/rm -rf /",
    "/usr/bin/rm -rf /",
    "sudo rm -rf /",
    "sudo -u root -E rm -rf /",
    "env rm -rf /",
    "env LANG=C rm -rf /",
    "X=1 rm -rf /",
    "command rm -rf /",
    "exec rm -rf /",
    "nohup rm -rf / &",
    "timeout 10 rm -rf /",
    "busybox rm -rf /",
    "nice -n 5 rm -rf /",
    "echo / | xargs rm -rf",
    "cd /tmp && rm -rf /",
    "true; rm -rf / ; echo done",
    "if true; then rm -rf /; fi",
    "for d in /; do rm -rf $d; done",
    "out=$(rm -rf /)",
    "out=`rm -rf /`",
    "(rm -rf /)",
    "{ rm -rf /; }",
    "eval \"rm -rf /\"",
    "eval rm -rf /",
    "a=r; b=m; eval \"$a$b -rf /\"",
    "sh -c \"rm -rf /\"",
    "bash -c 'rm -rf /'",
    "sudo bash -ec 'rm -rf /'",
    "su -c 'rm -rf /' root",
    "echo cm0gLXJmIC8= | base64 -d | sh",
    "echo 'cm0gLXJmIC8=' | base64 --decode | bash",
    "printf cm0gLXJmIC8= | base64 -d | sudo sh",
    "eval \"$(echo cm0gLXJmIC8= | base64 -d)\"",
    "bash <<< 'rm -rf /'",
    "base64 -d <<< cm0gLXJmIC8= | sh",
    "sh <<'EOF'\nrm -rf /\nEOF",
    "echo 'rm -rf /' | sh",
    "echo 'sh -c \"rm -rf /\"' | bash",
    "f() { rm -rf \"$1\"; }; f /",
    "wipe() {\n  rm -rf \"$@\"\n}\nwipe -- /",
    "g() { rm \"$@\"; }; h() { g -rf \"$1\"; }; h /",
];

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
    fn every_rm_root_spelling_is_blocked() {
        assert!(RM_ROOT_SPELLINGS.len() >= 21);
        for script in RM_ROOT_SPELLINGS {
            let f = builtin_findings(script);
            let hit = f.iter().find(|x| x.builtin == Some("rm-root"));
            let Some(hit) = hit else { panic!("{script:?} passed: {f:?}") };
            assert_eq!((hit.level, hit.rule_id, hit.action), (LEVEL_FATAL, None, Some(RuleAction::Intercept)), "{script}");
            assert!(blocks(&f), "{script}");
        }
    }

    #[test]
    fn rm_root_finding_points_at_its_line_with_the_normalised_command() {
        let f = builtin_findings("echo start\nr\"\"m -rf${IFS}/\necho end");
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!((f[0].line, f[0].line_content.as_str(), f[0].match_content.as_str()), (3, "r\"\"m -rf${IFS}/", "rm -rf /"));
        // A continuation line reports where the command starts.
        let f = builtin_findings("rm -rf \\\n /");
        assert_eq!(f[0].line, 2);
    }

    #[test]
    fn other_destructive_forms_are_blocked() {
        let dangerous = [
            ("mkfs.ext4 /dev/sda", "mkfs-device"),
            ("mkfs -t xfs /dev/nvme0n1p1", "mkfs-device"),
            ("sudo mke2fs /dev/vdb", "mkfs-device"),
            ("d=/dev/sda; mkfs.ext4 $d", "mkfs-device"),
            ("dd if=/dev/zero of=/dev/sda bs=1M", "dd-device"),
            ("dd if=/dev/urandom of=/dev/sdb1", "dd-device"),
            ("dd if=/dev/zero \"of=/dev/sda\"", "dd-device"),
            ("cat image > /dev/sda", "redirect-device"),
            ("echo x >/dev/nvme0n1", "redirect-device"),
            ("dev=/dev/sda; cat x > \"$dev\"", "redirect-device"),
            ("echo x &> /dev/sda", "redirect-device"),
            (":(){ :|:& };:", "fork-bomb"),
            (":() { : | : & } ; :", "fork-bomb"),
            ("bomb(){ bomb|bomb& };bomb", "fork-bomb"),
            ("f() {\n  f | f &\n}\nf", "fork-bomb"),
            ("chmod -R 777 /", "chmod-root"),
            ("chmod --recursive 000 /", "chmod-root"),
            ("sudo chown -R nobody /", "chmod-root"),
            ("eval 'chmod -R 777 /'", "chmod-root"),
        ];
        for (script, name) in dangerous {
            let f = builtin_findings(script);
            assert!(f.iter().any(|x| x.builtin == Some(name) && x.action == Some(RuleAction::Intercept)), "{script:?}: {f:?}");
        }
    }

    /// Look-alikes that run nothing destructive and must pass. Deliberately allowed: text
    /// that is only printed or stored (`echo "rm -rf /"`, a heredoc to `cat`, a decoded
    /// payload that is not run), targets that are not the root (`/tmp/*`, `./build`), and
    /// variables whose value the script does not set (`"$DIR"`): those are left to custom rules.
    #[test]
    fn look_alikes_pass() {
        let harmless = [
            "rm -rf ./build",
            "rm -rf build/",
            "rm -rf /tmp/*",
            "rm -rf \"$DIR\"",
            "rm -rf \"${BUILD_DIR:?}/out\"",
            "x=/tmp; rm -rf $x",
            "x=/; x=/opt/app; echo $x",
            "rm -f /",
            "rm /",
            "echo \"rm -rf /\"",
            "echo 'rm -rf /' >> /tmp/notes",
            "printf '%s\\n' 'rm -rf /'",
            "grep -r 'rm -rf /' .",
            "# rm -rf /",
            "cat <<EOF\nrm -rf /\nEOF",
            "echo cm0gLXJmIC8= | base64 -d",
            "echo cm0gLXJmIC8= | base64 -d > /tmp/payload",
            "sh -c 'ls /'",
            "eval \"ls -la /\"",
            "bash -c 'rm -rf /tmp/x'",
            "ls -la / | xargs echo",
            "echo /tmp/a | xargs rm -rf",
            "chmod -R 755 /opt/app",
            "chmod 755 /",
            "dd if=/dev/sda of=/backup/sda.img",
            "echo hello > /dev/null",
            "f() { echo hi; }; f | f",
            "main() { run | tee log & }",
            "f() { rm -rf \"$1\"; }; f /tmp/x",
        ];
        for script in harmless {
            let f = builtin_findings(script);
            assert!(f.is_empty(), "{script:?} matched: {f:?}");
        }
    }

    #[test]
    fn parameters_are_checked_as_the_scripts_arguments_and_as_text() {
        let params = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let script = "#!/bin/bash\nrm -rf \"$1\"\n";
        let f = check(SHELL, script, &params(&["/"]), &[], &[]);
        assert!(f.iter().any(|x| x.builtin == Some("rm-root") && x.line == 2), "{f:?}");
        assert!(check(SHELL, script, &params(&["/tmp/x"]), &[], &[]).is_empty());
        let f = check(SHELL, "#!/bin/bash\nrm $2 \"$@\"\n", &params(&["/", "-rf"]), &[], &[]);
        assert!(blocks(&f), "{f:?}");
        // The parameters' own text, for custom rules and built-ins alike.
        let rules = [compiled(9, "secret-token", &[SHELL, PYTHON], RuleAction::Intercept)];
        let f = check(PYTHON, "print(1)", &params(&["--secret-token"]), &rules, &[]);
        assert_eq!((f.len(), f[0].line, f[0].line_content.as_str()), (1, 0, PARAMS_LINE), "{f:?}");
        let f = check(SHELL, "#!/bin/sh\neval \"$@\"\n", &params(&["rm", "-rf", "/"]), &[], &[]);
        assert!(blocks(&f), "{f:?}");
    }

    #[test]
    fn a_disabled_builtin_does_not_report() {
        let disabled = vec!["rm-root".to_string()];
        assert!(check(SHELL, "#!/bin/sh\nrm -rf /\n", &[], &[], &disabled).is_empty());
        assert!(!check(SHELL, "#!/bin/sh\nmkfs.ext4 /dev/sda\n", &[], &[], &disabled).is_empty());
        assert!(builtin("rm-root").is_some() && builtin("nope").is_none());
    }

    #[test]
    fn custom_rules_see_the_normalised_command_and_the_raw_line() {
        let rules = [compiled(4, r"^curl .*\| *sh$|rm -rf /opt", &[SHELL], RuleAction::Intercept)];
        // Normalised: quotes and variables resolved.
        let f = check(SHELL, "#!/bin/sh\nd=/opt; 'rm' -rf \"$d\"/app\n", &[], &rules, &[]);
        assert_eq!(f.iter().filter(|x| x.rule_id == Some(4)).count(), 1, "{f:?}");
        // Raw: a rule on the line as written (one finding per line, not two).
        let rules = [compiled(5, r"rm -rf /opt", &[SHELL], RuleAction::Scan)];
        let f = check(SHELL, "#!/bin/sh\nrm -rf /opt/app\n", &[], &rules, &[]);
        assert_eq!(f.len(), 1, "{f:?}");
    }

    #[test]
    fn builtin_descriptions_come_from_the_table() {
        let f = builtin_findings("dd if=/dev/zero of=/dev/sda");
        assert_eq!(f[0].builtin, Some("dd-device"));
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
