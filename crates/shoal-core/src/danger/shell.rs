//! What a shell script runs, as far as can be known without running it.
//!
//! The script is parsed with `brush-parser` (a POSIX/bash parser) and every simple command is
//! normalised to the words the shell would pass to `exec`: quotes removed (`r""m`, `'rm'`,
//! `$'\x72m'`), backslashes and line continuations resolved, `$IFS` / `${IFS}` split as
//! blanks, variables assigned earlier in the script (or given as positional parameters)
//! expanded, `$(echo x)` replaced by `x`. Text that the script hands to another shell is
//! analysed too, as if it were part of the script: `eval "…"`, `sh -c "…"` (any common shell,
//! behind `sudo`/`env`/… wrappers), heredocs and here-strings fed to a shell, and literal
//! `echo … | base64 -d | sh` chains (the literal is decoded).
//!
//! The analysis over-approximates: assignments count whatever the control flow, so a
//! variable that is only sometimes `/` is taken as `/`. A call of a function the script
//! defined walks the function's body again with the call's arguments as `$1…`. What cannot be known (a variable set
//! by another program, `curl … | sh`) stays an unexpanded `$NAME` and matches nothing.

use std::collections::HashMap;

use base64::Engine as _;
use brush_parser::ast::{self, SourceLocation};
use brush_parser::word::{Parameter, ParameterExpr, SpecialParameter, WordPiece, WordPieceWithSource};
use brush_parser::ParserOptions;

/// How deep `eval` / `sh -c` / decoded payloads may nest before analysis stops.
const MAX_DEPTH: usize = 8;
/// Scripts handed on (eval, `sh -c`, decoded payloads) larger than this are not analysed again.
const MAX_NESTED_BYTES: usize = 256 * 1024;
/// Cap on a variable's expanded value, so `a=$a$a` loops cannot grow without bound.
const MAX_VALUE_BYTES: usize = 64 * 1024;

/// One simple command as the shell would run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// 1-based line in the outermost script.
    pub line: usize,
    /// Words after expansion and quote removal.
    pub words: Vec<String>,
}

impl Command {
    /// The words joined by single spaces: the command's normalised text.
    pub fn text(&self) -> String {
        self.words.join(" ")
    }
}

/// What a script runs.
#[derive(Debug, Default, Clone)]
pub struct Analysis {
    pub commands: Vec<Command>,
    /// Files written by output redirections: (line, normalised target).
    pub redirects: Vec<(usize, String)>,
    /// Functions that call themselves twice in one pipeline (the fork bomb): (line, name).
    pub fork_bombs: Vec<(usize, String)>,
    /// Whether some part of the script could not be parsed (then it was analysed line by line).
    pub parse_failed: bool,
}

/// Analyses `script` run with positional parameters `params` (`$1` is `params[0]`).
pub fn analyse(script: &str, params: &[String]) -> Analysis {
    // The parser traces every word it reads; scripts and parameters may carry secrets, so
    // nothing of the analysis reaches the process's logs.
    tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
        let mut a = Analyzer {
            params: params.to_vec(),
            vars: HashMap::new(),
            out: Analysis::default(),
            depth: 0,
            at_line: None,
            functions: Vec::new(),
            defined: HashMap::new(),
        };
        a.script(script);
        a.out
    })
}

fn options() -> ParserOptions {
    ParserOptions::default()
}

fn parse(script: &str) -> Option<ast::Program> {
    let mut parser = brush_parser::Parser::new(std::io::BufReader::new(script.as_bytes()), &options());
    parser.parse_program().ok()
}

fn line_of(loc: Option<brush_parser::SourceSpan>) -> usize {
    loc.map_or(1, |l| l.start.line.max(1))
}

struct Analyzer {
    /// Positional parameters in effect (the script's, or a called function's arguments).
    params: Vec<String>,
    /// Variables assigned so far (any branch).
    vars: HashMap<String, String>,
    out: Analysis,
    depth: usize,
    /// Set while analysing text handed on by a command: findings go to that command's line.
    at_line: Option<usize>,
    /// Names of the functions being walked (for the fork bomb).
    functions: Vec<String>,
    /// Functions defined so far: a call walks the body again with the call's arguments.
    defined: HashMap<String, ast::CompoundCommand>,
}

/// The words of a pipeline stage that feeds the next one, when they are known.
enum Stdin {
    Unknown,
    Text(String),
}

impl Analyzer {
    fn line(&self, local: usize) -> usize {
        self.at_line.unwrap_or(local)
    }

    /// Analyses a whole script; one that does not parse is taken line by line (bash runs
    /// every line before a syntax error), and a line that does not parse either is split
    /// into words the simple way.
    fn script(&mut self, script: &str) {
        if let Some(program) = parse(script) {
            self.program(&program);
            return;
        }
        self.out.parse_failed = true;
        for (index, raw) in script.lines().enumerate() {
            let saved = self.at_line;
            self.at_line = Some(saved.unwrap_or(index + 1));
            match parse(raw) {
                Some(program) => self.program(&program),
                None => {
                    for piece in super::split_simple_commands(raw) {
                        let words = shell_words::split(piece).unwrap_or_else(|_| piece.split_whitespace().map(String::from).collect());
                        let line = self.line(index + 1);
                        self.push_command(line, words);
                    }
                }
            }
            self.at_line = saved;
        }
    }

    /// Analyses text another command hands to a shell (`eval`, `sh -c`, a decoded payload).
    fn nested(&mut self, line: usize, script: &str) {
        if self.depth >= MAX_DEPTH || script.len() > MAX_NESTED_BYTES {
            return;
        }
        let saved = self.at_line;
        self.at_line = Some(line);
        self.depth += 1;
        self.script(script);
        self.depth -= 1;
        self.at_line = saved;
    }

    fn program(&mut self, p: &ast::Program) {
        for list in &p.complete_commands {
            self.compound_list(list);
        }
    }

    fn compound_list(&mut self, list: &ast::CompoundList) {
        for ast::CompoundListItem(and_or, _) in &list.0 {
            self.pipeline(&and_or.first);
            for next in &and_or.additional {
                match next {
                    ast::AndOr::And(p) | ast::AndOr::Or(p) => self.pipeline(p),
                }
            }
        }
    }

    fn pipeline(&mut self, p: &ast::Pipeline) {
        // A function calling itself twice in one pipeline is the fork bomb's shape.
        if p.seq.len() >= 2 {
            for f in &self.functions {
                let calls = p
                    .seq
                    .iter()
                    .filter(|c| matches!(c, ast::Command::Simple(s) if s.word_or_name.as_ref().is_some_and(|w| &w.value == f)))
                    .count();
                if calls >= 2 {
                    let line = self.line(line_of(p.location()));
                    self.out.fork_bombs.push((line, f.clone()));
                }
            }
        }
        let mut stdin = Stdin::Unknown;
        for command in &p.seq {
            stdin = self.command(command, stdin);
        }
    }

    /// Walks one command; returns what it writes to its standard output when that is known.
    fn command(&mut self, c: &ast::Command, stdin: Stdin) -> Stdin {
        match c {
            ast::Command::Simple(s) => return self.simple(s, stdin),
            ast::Command::Compound(compound, redirects) => {
                self.compound(compound);
                if let Some(r) = redirects {
                    for redirect in &r.0 {
                        self.redirect(redirect, line_of(c.location()));
                    }
                }
            }
            ast::Command::Function(f) => {
                self.defined.insert(f.fname.value.clone(), f.body.0.clone());
                self.functions.push(f.fname.value.clone());
                self.compound(&f.body.0);
                self.functions.pop();
            }
            ast::Command::ExtendedTest(..) => {}
        }
        Stdin::Unknown
    }

    fn compound(&mut self, c: &ast::CompoundCommand) {
        use ast::CompoundCommand::*;
        match c {
            BraceGroup(b) => self.compound_list(&b.list),
            Subshell(s) => self.compound_list(&s.list),
            ForClause(f) => {
                // `for x in / /tmp` assigns each value; the widest reading keeps the first
                // dangerous-looking one, so take the values in order and keep the last.
                if let Some(values) = &f.values {
                    let line = line_of(f.loc.clone().into());
                    for v in values {
                        for field in self.expand(v, line) {
                            self.vars.insert(f.variable_name.clone(), field);
                            self.compound_list(&f.body.list);
                        }
                    }
                } else {
                    self.compound_list(&f.body.list);
                }
            }
            ArithmeticForClause(f) => self.compound_list(&f.body.list),
            CaseClause(c) => {
                for item in &c.cases {
                    if let Some(cmd) = &item.cmd {
                        self.compound_list(cmd);
                    }
                }
            }
            IfClause(i) => {
                self.compound_list(&i.condition);
                self.compound_list(&i.then);
                for e in i.elses.iter().flatten() {
                    if let Some(c) = &e.condition {
                        self.compound_list(c);
                    }
                    self.compound_list(&e.body);
                }
            }
            WhileClause(w) | UntilClause(w) => {
                self.compound_list(&w.0);
                self.compound_list(&w.1.list);
            }
            Coprocess(c) => {
                self.command(&c.body, Stdin::Unknown);
            }
            Arithmetic(_) => {}
        }
    }

    fn simple(&mut self, s: &ast::SimpleCommand, stdin: Stdin) -> Stdin {
        let line = line_of(s.location());
        let mut words: Vec<String> = Vec::new();
        let mut assignments: Vec<(String, String)> = Vec::new();
        let mut here: Option<String> = None;
        let items = s
            .prefix
            .iter()
            .flat_map(|p| p.0.iter())
            .map(Some)
            .chain(std::iter::once(None))
            .chain(s.suffix.iter().flat_map(|p| p.0.iter()).map(Some));
        for item in items {
            match item {
                None => {
                    if let Some(w) = &s.word_or_name {
                        words.extend(self.expand(w, line));
                    }
                }
                Some(ast::CommandPrefixOrSuffixItem::Word(w)) => words.extend(self.expand(w, line)),
                Some(ast::CommandPrefixOrSuffixItem::AssignmentWord(a, w)) => {
                    if words.is_empty() {
                        if let (ast::AssignmentName::VariableName(name), ast::AssignmentValue::Scalar(v)) = (&a.name, &a.value) {
                            assignments.push((name.clone(), self.expand_joined(v, line)));
                        }
                    } else {
                        // `export a=rm`, `declare a=rm`, `local a=rm`: an argument word
                        // that is also an assignment.
                        let value = self.expand_joined(w, line);
                        words.push(value.clone());
                        if let Some((name, v)) = value.split_once('=') {
                            assignments.push((name.to_string(), v.to_string()));
                        }
                    }
                }
                Some(ast::CommandPrefixOrSuffixItem::IoRedirect(r)) => {
                    if let Some(text) = self.redirect(r, line) {
                        here = Some(text);
                    }
                }
                Some(ast::CommandPrefixOrSuffixItem::ProcessSubstitution(_, sub)) => self.compound_list(&sub.list),
            }
        }
        let is_declaration = words.first().is_some_and(|w| matches!(w.as_str(), "export" | "declare" | "typeset" | "local" | "readonly"));
        if words.is_empty() || is_declaration {
            for (name, value) in assignments {
                self.vars.insert(name, value);
            }
        }
        if words.is_empty() {
            return Stdin::Unknown;
        }
        let stdin = match here {
            Some(text) => Stdin::Text(text),
            None => stdin,
        };
        self.run(self.line(line), words, stdin)
    }

    /// Records a command (and, through `xargs`, the command it runs with its input) and
    /// follows what it hands to a shell. Returns its output when it is a literal.
    fn run(&mut self, line: usize, mut words: Vec<String>, stdin: Stdin) -> Stdin {
        let mut stripped_start = words.len() - super::strip_wrappers(&words).len();
        // `… | xargs rm -rf`: the input's words are the command's last arguments.
        if words[..stripped_start].iter().any(|w| super::basename(w) == "xargs") {
            if let Stdin::Text(t) = &stdin {
                words.extend(t.split_whitespace().map(String::from));
                stripped_start = words.len() - super::strip_wrappers(&words).len();
            }
        }
        let name = words.get(stripped_start).map(|w| super::basename(w).to_string()).unwrap_or_default();
        let args = &words[(stripped_start + 1).min(words.len())..];
        // A call of a function the script defined: its body runs with these arguments.
        if let Some(body) = words.get(stripped_start).and_then(|w| self.defined.get(w)).cloned() {
            if self.depth < MAX_DEPTH {
                let saved = (std::mem::replace(&mut self.params, args.to_vec()), self.at_line);
                self.at_line = Some(line);
                self.depth += 1;
                self.compound(&body);
                self.depth -= 1;
                (self.params, self.at_line) = saved;
            }
        }
        let mut output = Stdin::Unknown;
        match name.as_str() {
            "eval" => self.nested(line, &args.join(" ")),
            "echo" => {
                output = Stdin::Text(
                    args.iter()
                        .skip_while(|a| matches!(a.as_str(), "-n" | "-e" | "-E" | "-ne" | "-en"))
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(" "),
                )
            }
            "printf" => output = args.first().map_or(Stdin::Unknown, |f| Stdin::Text(printf_literal(f, &args[1..]))),
            "cat" if args.is_empty() => output = stdin_text(&stdin),
            "base64" | "openssl" if args.iter().any(|a| matches!(a.as_str(), "-d" | "--decode" | "-D" | "-decode")) => {
                if let Stdin::Text(t) = &stdin {
                    if let Some(decoded) = decode_base64(t) {
                        output = Stdin::Text(decoded);
                    }
                }
            }
            "rev" => output = stdin_text(&stdin).map_text(|t| t.chars().rev().collect()),
            n if is_shell(n) => {
                if let Some(script) = dash_c(args) {
                    self.nested(line, &script);
                } else if let Stdin::Text(t) = &stdin {
                    if args.iter().all(|a| a.starts_with('-')) {
                        self.nested(line, t);
                    }
                }
            }
            "su" | "runuser" => {
                if let Some(script) = dash_c(args) {
                    self.nested(line, &script);
                }
            }
            _ => {}
        }
        self.push_command(line, words.split_off(0));
        output
    }

    fn push_command(&mut self, line: usize, words: Vec<String>) {
        if !words.is_empty() {
            self.out.commands.push(Command { line, words });
        }
    }

    /// Records an output redirection's target; returns a heredoc's or here-string's text.
    fn redirect(&mut self, r: &ast::IoRedirect, line: usize) -> Option<String> {
        use ast::{IoFileRedirectKind as K, IoFileRedirectTarget as T, IoRedirect as R};
        let line = self.line(line);
        match r {
            R::File(_, K::Write | K::Append | K::Clobber | K::ReadAndWrite, T::Filename(w)) => {
                let target = self.expand_joined(w, line);
                self.out.redirects.push((line, target));
                None
            }
            R::File(_, _, T::ProcessSubstitution(_, sub)) => {
                self.compound_list(&sub.list);
                None
            }
            R::OutputAndError(w, _) => {
                let target = self.expand_joined(w, line);
                self.out.redirects.push((line, target));
                None
            }
            R::HereString(_, w) => Some(self.expand_joined(w, line)),
            R::HereDocument(_, doc) => {
                if doc.requires_expansion {
                    let pieces = brush_parser::word::parse_heredoc(&doc.doc.value, &options()).ok()?;
                    Some(self.pieces(&pieces, true, line).join(""))
                } else {
                    Some(doc.doc.value.clone())
                }
            }
            _ => None,
        }
    }

    /// The fields a word expands to (unquoted expansions split on blanks).
    fn expand(&mut self, w: &ast::Word, line: usize) -> Vec<String> {
        match brush_parser::word::parse(&w.value, &options()) {
            Ok(pieces) => self.pieces(&pieces, false, line),
            Err(_) => vec![strip_quotes(&w.value)],
        }
    }

    fn expand_joined(&mut self, w: &ast::Word, line: usize) -> String {
        self.expand(w, line).join(" ")
    }

    /// Expands pieces to fields. `quoted` is true inside double quotes (no splitting).
    fn pieces(&mut self, pieces: &[WordPieceWithSource], quoted: bool, line: usize) -> Vec<String> {
        let mut fields = Fields::default();
        for p in pieces {
            match &p.piece {
                WordPiece::Text(t) => fields.push_literal(t),
                WordPiece::SingleQuotedText(t) => fields.push_literal(t),
                WordPiece::AnsiCQuotedText(t) => fields.push_literal(&ansi_c(t)),
                WordPiece::DoubleQuotedSequence(inner) | WordPiece::GettextDoubleQuotedSequence(inner) => {
                    // Several fields only from "$@".
                    for (i, text) in self.pieces(inner, true, line).iter().enumerate() {
                        if i > 0 {
                            fields.split_here();
                        }
                        fields.push_literal(text);
                    }
                }
                WordPiece::EscapeSequence(e) => {
                    let c = e.strip_prefix('\\').unwrap_or(e);
                    if quoted && !matches!(c, "$" | "`" | "\"" | "\\" | "\n") {
                        fields.push_literal(e);
                    } else if c != "\n" {
                        fields.push_literal(c);
                    }
                }
                WordPiece::TildeExpansion(_) => fields.push_literal("~"),
                WordPiece::ParameterExpansion(ParameterExpr::Parameter {
                    parameter: Parameter::Special(SpecialParameter::AllPositionalParameters { concatenate: false }),
                    ..
                }) if quoted && !self.params.is_empty() => {
                    // "$@": one field per parameter, the first and last joined to the text around.
                    for (i, p) in self.params.iter().enumerate() {
                        if i > 0 {
                            fields.split_here();
                        }
                        fields.push_literal(p);
                    }
                }
                WordPiece::ParameterExpansion(expr) => {
                    let value = self.parameter(expr, line);
                    fields.push_expansion(&value, quoted);
                }
                WordPiece::CommandSubstitution(inner) | WordPiece::BackquotedCommandSubstitution(inner) => {
                    let value = self.substitution(inner, line);
                    fields.push_expansion(&value, quoted);
                }
                WordPiece::ArithmeticExpression(e) => fields.push_literal(&format!("$(({}))", e.value)),
            }
        }
        fields.finish()
    }

    /// A command substitution: its commands are analysed; its value is known when it only
    /// prints a literal (`$(echo /)`, `$(echo cm0= | base64 -d)`).
    fn substitution(&mut self, inner: &str, line: usize) -> String {
        let Some(program) = parse(inner) else {
            self.nested(self.line(line), inner);
            return format!("$({inner})");
        };
        let saved = self.at_line;
        self.at_line = Some(self.line(line));
        let mut value = None;
        if let [list] = program.complete_commands.as_slice() {
            if let [ast::CompoundListItem(and_or, _)] = list.0.as_slice() {
                if and_or.additional.is_empty() && self.depth < MAX_DEPTH {
                    self.depth += 1;
                    let mut stdin = Stdin::Unknown;
                    for c in &and_or.first.seq {
                        stdin = self.command(c, stdin);
                    }
                    self.depth -= 1;
                    if let Stdin::Text(t) = stdin {
                        value = Some(t.trim_end_matches('\n').to_string());
                    }
                    self.at_line = saved;
                    return value.unwrap_or_else(|| format!("$({inner})"));
                }
            }
        }
        self.program(&program);
        self.at_line = saved;
        value.unwrap_or_else(|| format!("$({inner})"))
    }

    fn parameter(&mut self, expr: &ParameterExpr, line: usize) -> String {
        let (parameter, default) = match expr {
            ParameterExpr::Parameter { parameter, .. } => (parameter, None),
            ParameterExpr::UseDefaultValues { parameter, default_value, .. }
            | ParameterExpr::AssignDefaultValues { parameter, default_value, .. } => (parameter, default_value.as_deref()),
            ParameterExpr::IndicateErrorIfNullOrUnset { parameter, .. } => (parameter, None),
            other => return format!("${{{}}}", other_name(other)),
        };
        match self.value_of(parameter) {
            Some(v) if !v.is_empty() || default.is_none() => v,
            _ => match default {
                Some(d) => match brush_parser::word::parse(d, &options()) {
                    Ok(p) => self.pieces(&p, true, line).join(""),
                    Err(_) => d.to_string(),
                },
                None => format!("{parameter}"),
            },
        }
    }

    fn value_of(&self, p: &Parameter) -> Option<String> {
        match p {
            Parameter::Named(n) if n == "IFS" => Some(" ".into()),
            Parameter::Named(n) => self.vars.get(n).cloned(),
            Parameter::Positional(0) => Some("sh".into()),
            Parameter::Positional(n) => self.params.get(*n as usize - 1).cloned(),
            Parameter::Special(SpecialParameter::AllPositionalParameters { .. }) => {
                (!self.params.is_empty()).then(|| self.params.join(" "))
            }
            Parameter::NamedWithIndex { name, .. } | Parameter::NamedWithAllIndices { name, .. } => self.vars.get(name).cloned(),
            Parameter::Special(_) => None,
        }
    }
}

trait MapText {
    fn map_text(self, f: impl FnOnce(&str) -> String) -> Stdin;
}

impl MapText for Stdin {
    fn map_text(self, f: impl FnOnce(&str) -> String) -> Stdin {
        match self {
            Stdin::Text(t) => Stdin::Text(f(&t)),
            Stdin::Unknown => Stdin::Unknown,
        }
    }
}

fn stdin_text(s: &Stdin) -> Stdin {
    match s {
        Stdin::Text(t) => Stdin::Text(t.clone()),
        Stdin::Unknown => Stdin::Unknown,
    }
}

fn other_name(_e: &ParameterExpr) -> &'static str {
    "?"
}

/// Builds fields the way the shell does: literal text joins the current field, unquoted
/// expansions split on blanks.
#[derive(Default)]
struct Fields {
    done: Vec<String>,
    current: Option<String>,
}

impl Fields {
    fn push_literal(&mut self, t: &str) {
        let cur = self.current.get_or_insert_with(String::new);
        if cur.len() < MAX_VALUE_BYTES {
            cur.push_str(t);
        }
    }

    fn push_expansion(&mut self, value: &str, quoted: bool) {
        if quoted {
            self.push_literal(value);
            return;
        }
        let mut parts = value.split([' ', '\t', '\n']).peekable();
        let starts_blank = value.starts_with([' ', '\t', '\n']);
        if starts_blank {
            self.flush();
        }
        while let Some(part) = parts.next() {
            if !part.is_empty() {
                self.push_literal(part);
            }
            if parts.peek().is_some() {
                self.flush();
            }
        }
    }

    /// Ends the current field even when it is empty (a quoted `"$@"` boundary).
    fn split_here(&mut self) {
        let c = self.current.take().unwrap_or_default();
        self.done.push(c);
    }

    fn flush(&mut self) {
        if let Some(c) = self.current.take() {
            if !c.is_empty() {
                self.done.push(c);
            }
        }
    }

    fn finish(mut self) -> Vec<String> {
        if let Some(c) = self.current.take() {
            // A word that was only quotes (`""`) is still one (empty) field.
            self.done.push(c);
        }
        self.done
    }
}

fn is_shell(name: &str) -> bool {
    matches!(name, "sh" | "bash" | "dash" | "zsh" | "ksh" | "ash" | "mksh" | "busybox-sh")
}

/// The script after `-c` (also inside grouped options such as `-ec`, `-lc`).
fn dash_c(args: &[String]) -> Option<String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" || !a.starts_with('-') {
            return None;
        }
        if a.len() > 1 && !a.starts_with("--") && a[1..].contains('c') {
            return it.next().cloned();
        }
    }
    None
}

fn decode_base64(text: &str) -> Option<String> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(compact.trim_end_matches('=')))
        .ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// `printf FORMAT ARGS…` for plain formats: `%s` takes the next argument, `\n` is a newline.
fn printf_literal(format: &str, args: &[String]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '%' if chars.peek() == Some(&'s') => {
                chars.next();
                out.push_str(args.next().map_or("", String::as_str));
            }
            '\\' if chars.peek() == Some(&'n') => {
                chars.next();
                out.push('\n');
            }
            c => out.push(c),
        }
    }
    for rest in args {
        out.push(' ');
        out.push_str(rest);
    }
    out
}

/// `$'…'` text: the common escapes, hex and octal.
fn ansi_c(t: &str) -> String {
    let mut out = String::new();
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('x') => {
                let mut hex = String::new();
                while hex.len() < 2 && chars.peek().is_some_and(char::is_ascii_hexdigit) {
                    hex.push(chars.next().unwrap_or('0'));
                }
                if let Some(ch) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    out.push(ch);
                }
            }
            Some(d @ '0'..='7') => {
                let mut oct = String::from(d);
                while oct.len() < 3 && chars.peek().is_some_and(|c| ('0'..='7').contains(c)) {
                    oct.push(chars.next().unwrap_or('0'));
                }
                if let Some(ch) = u32::from_str_radix(&oct, 8).ok().and_then(char::from_u32) {
                    out.push(ch);
                }
            }
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

fn strip_quotes(w: &str) -> String {
    shell_words::split(w).map(|v| v.join(" ")).unwrap_or_else(|_| w.to_string())
}
