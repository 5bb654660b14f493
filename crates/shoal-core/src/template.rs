//! Job templates as documents: typed variables, ordered steps (script, file distribution or
//! manual confirmation) and plans. A template is stored as one JSON document per version; YAML
//! files (`shoal template apply -f`) map onto the same types. Also here: the structured
//! diff between two versions and the shell prelude that hands variables to scripts.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use shoal_proto::jobv3::ServerDto;
use shoal_proto::status::ScriptLanguage;

use crate::JobError;

/// Global variable types (`TaskVariableTypeEnum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VarType {
    String,
    Namespace,
    HostList,
    Password,
    AssocArray,
    IndexArray,
}

impl VarType {
    pub fn code(self) -> i32 {
        match self {
            VarType::String => 1,
            VarType::Namespace => 2,
            VarType::HostList => 3,
            VarType::Password => 4,
            VarType::AssocArray => 5,
            VarType::IndexArray => 6,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    /// Stable id (what JOB callers save values under): kept across versions for a variable of
    /// the same name (or the same id, which lets a rename keep it), never reused once removed.
    /// Assigned by the server; absent in documents from before ids were kept (their id is
    /// their 1-based position, see [`variable_ids`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    pub name: String,
    #[serde(rename = "type")]
    pub var_type: VarType,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// Hosts, for `host_list` variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerDto>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Where a script step runs: a host-list variable, or hosts given directly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variable: Option<String>,
    #[serde(flatten)]
    pub server: ServerDto,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptStep {
    /// `shell`, `python`, `perl`, `powershell` (inline scripts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Inline script text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Library script (its online version) …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_id: Option<String>,
    /// … or an exact library version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_version_id: Option<i64>,
    /// For a `script_id` step: the library version that was online when this template
    /// version was applied. Set by the server (a value sent by a caller is replaced); the
    /// step runs this version, so publishing a newer one changes nothing until the template
    /// is applied again (and, if it needs approval, approved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_version_id: Option<i64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub param: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub sensitive: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// Execution account alias.
    pub account: String,
    pub target: Target,
    #[serde(default, skip_serializing_if = "is_false")]
    pub ignore_error: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confirm {
    #[serde(default)]
    pub message: String,
    /// Who may confirm; empty: anyone who may run the job.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
}

/// How a file step treats a destination directory that does not exist (JOB's
/// `transfer_mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferMode {
    /// The step fails on a host where the directory is missing.
    Strict,
    /// Missing directories are made.
    #[default]
    Force,
}

impl TransferMode {
    pub fn code(self) -> i32 {
        match self {
            TransferMode::Strict => 1,
            TransferMode::Force => 2,
        }
    }
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// A file step: files from source hosts or uploads, placed in one directory on the
/// destination hosts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileStep {
    pub sources: Vec<FileSource>,
    pub destination: FileDestination,
    #[serde(default, skip_serializing_if = "is_default")]
    pub mode: TransferMode,
    /// MB/s each source host sends at most; absent or 0: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_speed_limit: Option<i64>,
    /// MB/s each destination host receives at most; absent or 0: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_speed_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub ignore_error: bool,
}

/// Where a file step's files come from: absolute `files` on hosts (read as `account`), one
/// file uploaded through `generate_local_file_upload_url`, by its `upload` path, or `files`
/// of a file source, by its code (`file_source`; bkrepo `project/repo/path`, S3 `bucket/key`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSource {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<String>,
    /// The code of a file source `files` are read from (by the server, when the step runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_source: Option<String>,
    /// For an `upload` source: the content the upload held when this template version was
    /// applied. Set by the server (a value sent by a caller is replaced); runs place this
    /// content, so an approver sees exactly what is distributed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<PinnedUpload>,
}

/// An uploaded file as a template version holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedUpload {
    pub sha256: String,
    pub size: u64,
    /// The file's name on the destination hosts.
    pub name: String,
}

/// The directory a file step fills, the account its files belong to and its hosts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDestination {
    pub path: String,
    pub account: String,
    pub target: Target,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<ScriptStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<Confirm>,
}

/// A plan: the template's chosen steps (all when empty) and variable values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Changes wait for an approver who is not their author.
    #[serde(default, skip_serializing_if = "is_false")]
    pub needs_approval: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variables: Vec<Variable>,
    pub steps: Vec<Step>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plans: Vec<Plan>,
    /// The highest variable id this template ever gave out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub var_id_seq: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// The ids of `vars`, in order: each variable's own, or its 1-based position for a variable
/// stored before ids were kept.
pub fn variable_ids(vars: &[Variable]) -> Vec<i64> {
    vars.iter().enumerate().map(|(i, v)| v.id.unwrap_or(i as i64 + 1)).collect()
}

fn ident(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_') && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn bad(field: &str, why: impl Into<String>) -> JobError {
    JobError::args(shoal_proto::ErrorCode::ILLEGAL_PARAM_WITH_REASON, vec![field.to_string(), why.into()])
}

impl Template {
    /// Give every variable its stable id, the previous version `prev` being what callers
    /// know: a variable keeps the id it names if `prev` had that id (a rename), else the id
    /// of `prev`'s variable of the same name, else a new one above every id given out before.
    pub fn assign_variable_ids(&mut self, prev: Option<&Template>) {
        let known: Vec<(i64, String)> = match prev {
            Some(p) => variable_ids(&p.variables).into_iter().zip(p.variables.iter().map(|v| v.name.clone())).collect(),
            None => vec![],
        };
        let mut seq = self.var_id_seq.max(prev.map_or(0, |p| p.var_id_seq));
        seq = seq.max(known.iter().map(|(id, _)| *id).max().unwrap_or(0));
        let mut taken = BTreeSet::new();
        // Ids named in the document first, then names, then new ids.
        for v in &mut self.variables {
            v.id = v.id.filter(|id| known.iter().any(|(k, _)| k == id) && taken.insert(*id));
        }
        for v in self.variables.iter_mut().filter(|v| v.id.is_none()) {
            v.id = known.iter().find(|(id, n)| *n == v.name && !taken.contains(id)).map(|(id, _)| *id);
            if let Some(id) = v.id {
                taken.insert(id);
            }
        }
        for v in self.variables.iter_mut().filter(|v| v.id.is_none()) {
            seq += 1;
            v.id = Some(seq);
        }
        self.var_id_seq = seq;
    }

    /// Structural checks: unique names, one kind per step, one source per script step,
    /// targets present, variables referenced exist with the right type.
    pub fn validate(&self) -> Result<(), JobError> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 60 {
            return Err(bad("name", "1 to 60 characters"));
        }
        let mut vars = BTreeMap::new();
        for v in &self.variables {
            if !ident(&v.name) {
                return Err(bad("variables.name", format!("{:?} is not a valid variable name", v.name)));
            }
            if vars.insert(v.name.as_str(), v.var_type).is_some() {
                return Err(bad("variables.name", format!("{} is defined twice", v.name)));
            }
        }
        if self.steps.is_empty() {
            return Err(bad("steps", "a template needs at least one step"));
        }
        let mut names = BTreeSet::new();
        for s in &self.steps {
            if s.name.trim().is_empty() || !names.insert(s.name.as_str()) {
                return Err(bad("steps.name", format!("step names must be unique and non-empty ({:?})", s.name)));
            }
            match (&s.script, &s.file, &s.confirm) {
                (Some(sc), None, None) => sc.validate(&s.name, &vars)?,
                (None, Some(f), None) => f.validate(&s.name, &vars)?,
                (None, None, Some(_)) => {}
                _ => return Err(bad("steps", format!("step {:?} must be exactly one of a script, file or confirm step", s.name))),
            }
        }
        let mut plan_names = BTreeSet::new();
        for p in &self.plans {
            if p.name.trim().is_empty() || !plan_names.insert(p.name.as_str()) {
                return Err(bad("plans.name", "plan names must be unique and non-empty"));
            }
            for s in &p.steps {
                if !names.contains(s.as_str()) {
                    return Err(bad("plans.steps", format!("plan {:?} names unknown step {s:?}", p.name)));
                }
            }
            for k in p.variables.keys() {
                if !vars.contains_key(k.as_str()) {
                    return Err(bad("plans.variables", format!("plan {:?} sets unknown variable {k:?}", p.name)));
                }
            }
        }
        Ok(())
    }

    /// The document without its plans.
    pub fn without_plans(&self) -> Template {
        Template { plans: vec![], ..self.clone() }
    }

    /// Every place that holds a secret, by path: password defaults, plan values of password
    /// variables and the parameter of sensitive steps. A plan value of a password variable
    /// that is not a string (a number) becomes one, so it is sealed like the others.
    pub fn secrets_mut(&mut self) -> Vec<(String, &mut String)> {
        let pw: BTreeSet<String> = self.variables.iter().filter(|v| v.var_type == VarType::Password).map(|v| v.name.clone()).collect();
        let mut out = vec![];
        for v in self.variables.iter_mut().filter(|v| v.var_type == VarType::Password) {
            out.push((format!("variables[{}].value", v.name), &mut v.value));
        }
        for p in self.plans.iter_mut() {
            let name = &p.name;
            for (k, val) in p.variables.iter_mut().filter(|(k, _)| pw.contains(k.as_str())) {
                if !(val.is_string() || val.is_null()) {
                    *val = Value::String(val.to_string());
                }
                if let Value::String(s) = val {
                    out.push((format!("plans[{name}].variables.{k}"), s));
                }
            }
        }
        for s in self.steps.iter_mut() {
            if let Some(sc) = s.script.as_mut().filter(|sc| sc.sensitive) {
                out.push((format!("steps[{}].script.param", s.name), &mut sc.param));
            }
        }
        out
    }

    /// The secrets by path (see [`Template::secrets_mut`]).
    pub fn secrets(&self) -> BTreeMap<String, String> {
        self.clone().secrets_mut().into_iter().map(|(p, v)| (p, v.clone())).collect()
    }

    /// The document as callers see it: every non-empty secret replaced by [`KEEP`].
    pub fn masked(&self) -> Template {
        let mut d = self.clone();
        for (_, v) in d.secrets_mut() {
            if !v.is_empty() {
                *v = KEEP.to_string();
            }
        }
        d
    }
}

/// What callers see instead of a secret. Given back to `templates/apply` in the same place,
/// it keeps the value stored there.
pub const KEEP: &str = "******";

/// Changes from `before` (none: a new template) to `after`, both with their secrets sealed.
/// Secrets never appear: a secret whose sealed value differs shows as changed from
/// [`KEEP`] to [`KEEP`]. A caller's value is sealed anew every time (random nonce), so a
/// value typed in again always shows as changed — the diff says nothing about whether it
/// equals the stored one.
pub fn changes(before: Option<&Template>, after: &Template) -> Vec<Change> {
    let shown = |t: &Template| serde_json::to_value(t.masked()).unwrap_or(Value::Null);
    let Some(before) = before else { return diff(&Value::Object(Default::default()), &shown(after)) };
    let mut out = diff(&shown(before), &shown(after));
    let old = before.secrets();
    for (path, new) in after.secrets() {
        if old.get(&path).is_some_and(|o| !o.is_empty() && !new.is_empty() && *o != new) {
            let m = Value::String(KEEP.into());
            out.push(Change { path, before: Some(m.clone()), after: Some(m) });
        }
    }
    out
}

impl ScriptStep {
    fn validate(&self, step: &str, vars: &BTreeMap<&str, VarType>) -> Result<(), JobError> {
        let sources = [self.content.is_some(), self.script_id.is_some(), self.script_version_id.is_some()];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err(bad("steps.script", format!("step {step:?} needs exactly one of content, script_id, script_version_id")));
        }
        if self.content.is_some() {
            let lang = self.language.as_deref().unwrap_or("shell");
            ScriptLanguage::from_name(lang).ok_or_else(|| bad("steps.script.language", format!("unknown language {lang:?}")))?;
        }
        if self.account.trim().is_empty() {
            return Err(bad("steps.script.account", format!("step {step:?} needs an account")));
        }
        if let Some(t) = self.timeout {
            if !(1..=crate::limits::MAX_TIMEOUT_SECS).contains(&t) {
                return Err(bad("steps.script.timeout", format!("1 to {}", crate::limits::MAX_TIMEOUT_SECS)));
            }
        }
        self.target.validate("steps.script.target", step, vars)
    }
}

impl Target {
    /// A host-list variable that exists, or hosts given directly.
    fn validate(&self, field: &str, step: &str, vars: &BTreeMap<&str, VarType>) -> Result<(), JobError> {
        match &self.variable {
            Some(v) => match vars.get(v.as_str()) {
                Some(VarType::HostList) => Ok(()),
                Some(_) => Err(bad(&format!("{field}.variable"), format!("{v} is not a host_list variable"))),
                None => Err(JobError::with(shoal_proto::ErrorCode::HOST_VAR_NOT_EXIST, v.clone())),
            },
            None if self.server.is_empty() => Err(bad(field, format!("step {step:?} has no hosts here"))),
            None => Ok(()),
        }
    }
}

/// An absolute path without `..` components or NUL bytes.
fn absolute(p: &str) -> bool {
    p.starts_with('/') && !p.contains('\0') && !p.split('/').any(|c| c == "..")
}

impl FileStep {
    fn validate(&self, step: &str, vars: &BTreeMap<&str, VarType>) -> Result<(), JobError> {
        if self.sources.is_empty() {
            return Err(bad("steps.file.sources", format!("step {step:?} needs at least one source")));
        }
        for (i, src) in self.sources.iter().enumerate() {
            let field = format!("steps.file.sources[{i}]");
            if let Some(code) = &src.file_source {
                if code.trim().is_empty() {
                    return Err(bad(&format!("{field}.file_source"), format!("step {step:?}: an empty file source code")));
                }
                if src.upload.is_some() || src.account.is_some() || src.target.is_some() {
                    return Err(bad(&field, format!("step {step:?}: a file_source source has files and no upload, account or target")));
                }
                if src.files.is_empty() {
                    return Err(bad(&format!("{field}.files"), format!("step {step:?}: a file_source source needs files")));
                }
                let in_source = |p: &str| {
                    let p = p.trim().trim_start_matches('/');
                    !p.is_empty() && !p.ends_with('/') && !p.contains('\0') && !p.split('/').any(|c| c == "..")
                };
                if let Some(p) = src.files.iter().find(|p| !in_source(p)) {
                    return Err(bad(&format!("{field}.files"), format!("{p:?} is not a file path in the source")));
                }
                continue;
            }
            match (&src.upload, src.files.is_empty()) {
                (Some(path), true) => {
                    if path.trim().is_empty() {
                        return Err(bad(&format!("{field}.upload"), format!("step {step:?}: an empty upload path")));
                    }
                    if src.account.is_some() || src.target.is_some() {
                        return Err(bad(&field, format!("step {step:?}: an upload source has no account or target")));
                    }
                }
                (None, false) => {
                    if let Some(p) = src.files.iter().find(|p| !absolute(p.trim())) {
                        return Err(bad(&format!("{field}.files"), format!("{p:?} is not an absolute path")));
                    }
                    if src.account.as_deref().is_none_or(|a| a.trim().is_empty()) {
                        return Err(bad(&format!("{field}.account"), format!("step {step:?}: files on hosts need an account")));
                    }
                    match &src.target {
                        Some(t) => t.validate(&format!("{field}.target"), step, vars)?,
                        None => return Err(bad(&format!("{field}.target"), format!("step {step:?}: files on hosts need a target"))),
                    }
                }
                _ => return Err(bad(&field, format!("step {step:?}: a source has either files (on hosts) or an upload"))),
            }
        }
        let d = &self.destination;
        if !absolute(d.path.trim()) {
            return Err(bad("steps.file.destination.path", format!("{:?} is not an absolute directory", d.path)));
        }
        if d.account.trim().is_empty() {
            return Err(bad("steps.file.destination.account", format!("step {step:?} needs an account")));
        }
        d.target.validate("steps.file.destination.target", step, vars)?;
        for (field, limit) in [("upload_speed_limit", self.upload_speed_limit), ("download_speed_limit", self.download_speed_limit)] {
            if limit.is_some_and(|l| l < 0) {
                return Err(bad(&format!("steps.file.{field}"), "MB/s, 0 or more"));
            }
        }
        if let Some(t) = self.timeout {
            if !(1..=crate::limits::MAX_TIMEOUT_SECS).contains(&t) {
                return Err(bad("steps.file.timeout", format!("1 to {}", crate::limits::MAX_TIMEOUT_SECS)));
            }
        }
        Ok(())
    }

    /// The host-list variables the step names (sources' and destination's).
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        let sources = self.sources.iter().filter_map(|s| s.target.as_ref()?.variable.as_deref());
        sources.chain(self.destination.target.variable.as_deref())
    }
}

/// One change between two JSON documents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub path: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Structured diff: objects by key, arrays of named items (steps, variables, plans) by
/// name, other arrays by position.
pub fn diff(before: &Value, after: &Value) -> Vec<Change> {
    let mut out = vec![];
    walk("", before, after, &mut out);
    out
}

fn named(v: &Value) -> Option<BTreeMap<String, &Value>> {
    let items = v.as_array()?;
    let mut m = BTreeMap::new();
    for i in items {
        m.insert(i.get("name")?.as_str()?.to_string(), i);
    }
    (m.len() == items.len()).then_some(m)
}

fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<Change>) {
    if a == b {
        return;
    }
    let join = |k: &str| if path.is_empty() { k.to_string() } else { format!("{path}.{k}") };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => walk(&join(k), p, q, out),
                    (p, q) => out.push(Change { path: join(k), before: p.cloned(), after: q.cloned() }),
                }
            }
        }
        (Value::Array(_), Value::Array(_)) => {
            if let (Some(x), Some(y)) = (named(a), named(b)) {
                let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let p = format!("{}[{k}]", if path.is_empty() { "" } else { path });
                    match (x.get(k), y.get(k)) {
                        (Some(p1), Some(q1)) => walk(&p, p1, q1, out),
                        (p1, q1) => out.push(Change { path: p, before: p1.map(|v| (*v).clone()), after: q1.map(|v| (*v).clone()) }),
                    }
                }
                let order = |m: &Value| m.as_array().map(|i| i.iter().map(|v| v["name"].clone()).collect::<Vec<_>>());
                if order(a) != order(b) && x.keys().eq(y.keys()) {
                    out.push(Change {
                        path: format!("{path}(order)"),
                        before: order(a).map(Value::from),
                        after: order(b).map(Value::from),
                    });
                }
            } else {
                out.push(Change { path: path.to_string(), before: Some(a.clone()), after: Some(b.clone()) });
            }
        }
        _ => out.push(Change { path: path.to_string(), before: Some(a.clone()), after: Some(b.clone()) }),
    }
}

/// Quote for a POSIX shell single-quoted string.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The environment variable naming the file a script's changed string variables go to
/// (set by the agent; see [`with_shell_variables`]).
pub const VARS_FILE_ENV: &str = shoal_proto::agent::VARS_FILE_ENV;

/// Variables as shell definitions placed before a script body (after its shebang line),
/// the way JOB hands global variables to shell scripts. Host lists become a
/// space-separated list of their IPs.
///
/// When there are string variables, the prelude also installs an EXIT trap: as the script
/// ends, each string variable whose value differs from the one it started with is written,
/// `name\0value\0`, to the file named by `$SHOAL_VARS_FILE` (nothing when that is unset),
/// and the script's exit status is kept. This is how a script sets a global variable for
/// the steps after it. A script that installs its own EXIT trap replaces this one (and
/// changes nothing then), as does one that `exec`s another program.
pub fn with_shell_variables(body: &str, vars: &[(String, VarType, String)]) -> String {
    prelude_before(body, vars, Report::Changes)
}

/// [`with_shell_variables`] without the EXIT trap: the script as its author wrote it with
/// the variables defined, which is what dangerous-script rules judge (the trap is Shoal's
/// own code, not the author's).
pub fn with_shell_definitions(body: &str, vars: &[(String, VarType, String)]) -> String {
    prelude_before(body, vars, Report::Nothing)
}

/// Whether a prelude reports the string variables the script changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Report {
    Changes,
    Nothing,
}

fn prelude_before(body: &str, vars: &[(String, VarType, String)], report: Report) -> String {
    if vars.is_empty() {
        return body.to_string();
    }
    let mut prelude = String::new();
    let mut trap = String::new();
    for (name, ty, value) in vars {
        if !ident(name) {
            continue;
        }
        let line = match ty {
            VarType::AssocArray | VarType::IndexArray => {
                let flag = if *ty == VarType::AssocArray { "-A" } else { "-a" };
                let v = value.trim();
                let literal = if v.starts_with('(') && v.ends_with(')') { v.to_string() } else { format!("({v})") };
                format!("declare {flag} {name}={literal}")
            }
            _ => format!("{name}={}", shell_quote(value)),
        };
        prelude.push_str(&line);
        prelude.push('\n');
        if *ty == VarType::String {
            let start = shell_quote(value);
            trap.push_str(&format!("    if [ \"${{{name}-}}\" != {start} ]; then printf '%s\\0%s\\0' {name} \"${{{name}-}}\"; fi\n"));
        }
    }
    if !trap.is_empty() && report == Report::Changes {
        // `set +eu`: the script's own options must not end the trap half-way (or change
        // its exit status); `return` keeps the status the script ended with.
        prelude.push_str(&format!(
            "__shoal_vars_exit() {{\n  __shoal_status=$?\n  set +eu\n  if [ -n \"${{{VARS_FILE_ENV}:-}}\" ]; then\n  {{\n{trap}  }} > \"${VARS_FILE_ENV}\" 2>/dev/null\n  fi\n  return $__shoal_status\n}}\ntrap __shoal_vars_exit EXIT\n"
        ));
    }
    match body.strip_prefix("#!") {
        Some(_) => {
            let (first, rest) = body.split_once('\n').unwrap_or((body, ""));
            format!("{first}\n{prelude}{rest}")
        }
        None => format!("{prelude}{body}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Template {
        serde_json::from_value(json!({
            "name": "deploy",
            "variables": [
                {"name": "VERSION", "type": "string", "value": "1.0"},
                {"name": "TOKEN", "type": "password", "value": "s3cret"},
                {"name": "HOSTS", "type": "host_list", "server": {"host_id_list": [1, 2]}}
            ],
            "steps": [
                {"name": "install", "script": {"content": "echo $VERSION", "account": "root", "target": {"variable": "HOSTS"}}},
                {"name": "check", "confirm": {"message": "ok?", "users": ["bob"]}},
                {"name": "verify", "script": {"script_id": "abc", "account": "root", "target": {"host_id_list": [1]}, "ignore_error": true}}
            ],
            "plans": [{"name": "default", "variables": {"VERSION": "2.0"}}]
        }))
        .unwrap()
    }

    #[test]
    fn valid_document() {
        doc().validate().unwrap();
    }

    #[test]
    fn structural_errors() {
        let mut d = doc();
        d.steps[0].script.as_mut().unwrap().target = Target { variable: Some("NOPE".into()), server: ServerDto::default() };
        assert_eq!(d.validate().unwrap_err().code.0, 1244008);
        let mut d = doc();
        d.steps[0].script.as_mut().unwrap().target = Target { variable: Some("VERSION".into()), server: ServerDto::default() };
        assert_eq!(d.validate().unwrap_err().code.0, 1241010);
        let mut d = doc();
        d.steps[1].script = Some(ScriptStep::default());
        assert!(d.validate().is_err());
        let mut d = doc();
        d.steps[2].name = "install".into();
        assert!(d.validate().is_err());
        let mut d = doc();
        d.plans[0].steps = vec!["ghost".into()];
        assert!(d.validate().is_err());
        let mut d = doc();
        d.variables[0].name = "1x".into();
        assert!(d.validate().is_err());
        assert!(serde_json::from_value::<Template>(json!({"name": "x", "steps": [], "surprise": 1})).is_err());
    }

    fn file_step() -> Value {
        json!({"name": "ship", "file": {
            "sources": [
                {"files": ["/data/app.tar"], "account": "root", "target": {"host_id_list": [3]}},
                {"upload": "1/abc/alice/conf.ini"}
            ],
            "destination": {"path": "/opt/app", "account": "root", "target": {"variable": "HOSTS"}},
            "mode": "strict", "download_speed_limit": 5
        }})
    }

    fn with_file_step(step: Value) -> Result<Template, serde_json::Error> {
        let mut d = serde_json::to_value(doc()).unwrap();
        d["steps"].as_array_mut().unwrap().push(step);
        serde_json::from_value(d)
    }

    #[test]
    fn file_steps_validate() {
        let d = with_file_step(file_step()).unwrap();
        d.validate().unwrap();
        let f = d.steps[3].file.as_ref().unwrap();
        assert_eq!(f.mode.code(), 1);
        assert_eq!(f.variables().collect::<Vec<_>>(), vec!["HOSTS"]);
        let field = |e: JobError| e.args[0].clone();
        let bad_ones = [
            ("/file/sources", json!([]), "steps.file.sources"),
            ("/file/sources/0/files/0", json!("data/app.tar"), "steps.file.sources[0].files"),
            ("/file/sources/0/account", json!(" "), "steps.file.sources[0].account"),
            ("/file/sources/1/files", json!(["/x"]), "steps.file.sources[1]"),
            ("/file/sources/1/account", json!("root"), "steps.file.sources[1]"),
            ("/file/destination/path", json!("/opt/../etc"), "steps.file.destination.path"),
            ("/file/destination/account", json!(""), "steps.file.destination.account"),
            ("/file/destination/target/variable", json!("VERSION"), "steps.file.destination.target.variable"),
            ("/file/upload_speed_limit", json!(-1), "steps.file.upload_speed_limit"),
            ("/file/timeout", json!(0), "steps.file.timeout"),
        ];
        for (ptr, value, want) in bad_ones {
            let mut s = file_step();
            let (parent, key) = ptr.rsplit_once('/').unwrap();
            match s.pointer_mut(parent).unwrap() {
                Value::Array(a) => a[key.parse::<usize>().unwrap()] = value,
                o => o[key] = value,
            }
            let e = with_file_step(s).unwrap().validate().unwrap_err();
            assert_eq!((e.code.0, field(e).as_str()), (1241010, want), "{ptr}");
        }
        let mut s = file_step();
        s["file"]["sources"][0].as_object_mut().unwrap().remove("target");
        assert_eq!(field(with_file_step(s).unwrap().validate().unwrap_err()), "steps.file.sources[0].target");
        let mut s = file_step();
        s["file"]["destination"]["target"] = json!({"variable": "NOPE"});
        assert_eq!(with_file_step(s).unwrap().validate().unwrap_err().code.0, 1244008);
        let mut s = file_step();
        s["script"] = json!({"content": "true", "account": "root", "target": {"host_id_list": [1]}});
        assert!(with_file_step(s).unwrap().validate().is_err(), "a step of two kinds");
        let mut s = file_step();
        s["file"]["mode"] = json!("careful");
        assert!(with_file_step(s).is_err(), "an unknown mode");
    }

    #[test]
    fn diff_by_name_and_path() {
        let a = serde_json::to_value(doc().without_plans()).unwrap();
        let mut d = doc().without_plans();
        d.variables[0].value = "1.1".into();
        d.steps.remove(1);
        let b = serde_json::to_value(d).unwrap();
        let changes = diff(&a, &b);
        let paths: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, vec!["steps[check]", "variables[VERSION].value"]);
        assert_eq!(changes[1].before, Some(json!("1.0")));
        assert_eq!(changes[1].after, Some(json!("1.1")));
        assert!(changes[0].after.is_none());
        assert!(diff(&a, &a).is_empty());
    }

    #[test]
    fn secrets_are_masked_and_diffed_by_sealed_value() {
        let mut d = doc();
        d.steps[2].script.as_mut().unwrap().param = "sealed-a".into();
        d.steps[2].script.as_mut().unwrap().sensitive = true;
        d.plans[0].variables.insert("TOKEN".into(), json!(1234));
        let paths: Vec<String> = d.secrets().into_keys().collect();
        assert_eq!(paths, vec!["plans[default].variables.TOKEN", "steps[verify].script.param", "variables[TOKEN].value"]);
        let shown = serde_json::to_string(&d.masked()).unwrap();
        assert!(!shown.contains("s3cret") && !shown.contains("sealed-a") && !shown.contains("1234"), "{shown}");
        assert!(changes(Some(&d), &d.clone()).is_empty());
        let mut e = d.clone();
        e.variables[1].value = "other".into();
        let c = changes(Some(&d), &e);
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].path.as_str(), c[0].before.clone(), c[0].after.clone()),
            ("variables[TOKEN].value", Some(json!(KEEP)), Some(json!(KEEP)))
        );
        assert!(!serde_json::to_string(&changes(None, &d)).unwrap().contains("s3cret"));
    }

    #[test]
    fn shell_variables_go_after_the_shebang() {
        let vars = vec![
            ("A".to_string(), VarType::String, "it's".to_string()),
            ("M".to_string(), VarType::AssocArray, "([k]=v)".to_string()),
            ("L".to_string(), VarType::IndexArray, "a b".to_string()),
        ];
        let out = with_shell_variables("#!/bin/bash\necho $A\n", &vars);
        assert!(out.starts_with("#!/bin/bash\nA='it'\\''s'\ndeclare -A M=([k]=v)\ndeclare -a L=(a b)\n__shoal_vars_exit() {"), "{out}");
        assert!(out.ends_with("trap __shoal_vars_exit EXIT\necho $A\n"), "{out}");
        assert!(with_shell_variables("echo\n", &vars[..1]).starts_with("A='it'\\''s'\n__shoal_vars_exit() {"));
        // Without string variables there is nothing to report: no trap.
        assert_eq!(with_shell_variables("echo\n", &vars[1..]), "declare -A M=([k]=v)\ndeclare -a L=(a b)\necho\n");
        // What rules judge: the definitions, not Shoal's trap.
        assert_eq!(with_shell_definitions("echo\n", &vars[..1]), "A='it'\\''s'\necho\n");
    }

    #[test]
    fn the_exit_trap_raises_no_builtin_finding() {
        let vars = vec![("V".to_string(), VarType::String, "1".to_string())];
        let text = with_shell_variables("#!/bin/bash\necho $V\n", &vars);
        let findings = crate::danger::check(1, &text, &[], &[], &[]);
        assert!(findings.is_empty(), "{findings:?}");
    }

    /// Runs `body` behind the prelude of `vars` with real bash; (exit status, what the
    /// trap wrote as name → value, output).
    fn run_bash(body: &str, vars: &[(&str, VarType, &str)], vars_file: bool) -> (Option<i32>, Vec<(String, String)>, String) {
        let vars: Vec<(String, VarType, String)> = vars.iter().map(|(n, t, v)| (n.to_string(), *t, v.to_string())).collect();
        let dir = std::env::temp_dir().join(format!(
            "shoal-vars-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("s.sh");
        std::fs::write(&script, with_shell_variables(body, &vars)).unwrap();
        let file = dir.join("vars");
        let mut cmd = std::process::Command::new("bash");
        cmd.arg(&script).env_remove(VARS_FILE_ENV);
        if vars_file {
            cmd.env(VARS_FILE_ENV, &file);
        }
        let out = cmd.output().unwrap();
        let written = std::fs::read(&file).unwrap_or_default();
        let mut fields: Vec<String> = written.split(|b| *b == 0).map(|f| String::from_utf8_lossy(f).into_owned()).collect();
        assert_eq!(fields.pop().as_deref(), Some(""), "NUL-terminated: {written:?}");
        let pairs = fields.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect();
        std::fs::remove_dir_all(&dir).unwrap();
        (out.status.code(), pairs, String::from_utf8_lossy(&out.stdout).into_owned())
    }

    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn the_exit_trap_reports_changed_string_variables_only() {
        let vars = [
            ("VERSION", VarType::String, "1.0"),
            ("SAME", VarType::String, "it's"),
            ("GONE", VarType::String, "x"),
            ("TOKEN", VarType::Password, "s3cret"),
            ("L", VarType::IndexArray, "a b"),
        ];
        let body =
            "#!/bin/bash\nset -eu\necho \"$VERSION $SAME\"\nVERSION='2.0\nsecond line'\nSAME=\"it's\"\nunset GONE\nTOKEN=other\nL=(c)\n";
        let (code, written, out) = run_bash(body, &vars, true);
        assert_eq!(code, Some(0));
        assert_eq!(out, "1.0 it's\n");
        assert_eq!(written, pairs(&[("VERSION", "2.0\nsecond line"), ("GONE", "")]), "passwords and arrays are never written");
        // Nothing changed: an empty file.
        let (_, written, _) = run_bash("true\n", &vars, true);
        assert!(written.is_empty());
        // No file named: nothing written, nothing printed.
        let (code, written, out) = run_bash("VERSION=3\n", &vars, false);
        assert_eq!((code, written.is_empty(), out.as_str()), (Some(0), true, ""));
    }

    #[test]
    fn the_exit_trap_keeps_the_exit_status() {
        let vars = [("V", VarType::String, "a")];
        for (body, want) in [("V=b\nexit 3\n", 3), ("V=b\nfalse\n", 1), ("set -e\nV=b\nfalse\necho never\n", 1), ("V=b\n", 0)] {
            let (code, written, out) = run_bash(body, &vars, true);
            assert_eq!(code, Some(want), "{body:?}");
            assert_eq!(written, pairs(&[("V", "b")]), "{body:?}");
            assert_eq!(out, "", "{body:?}");
        }
        // A script with its own EXIT trap replaces ours: its status holds, nothing is written.
        let (code, written, out) = run_bash("trap 'echo mine' EXIT\nV=b\nexit 4\n", &vars, true);
        assert_eq!((code, written.is_empty(), out.as_str()), (Some(4), true, "mine\n"));
    }

    #[test]
    fn variable_ids_follow_names_and_are_never_reused() {
        let var = |name: &str| Variable {
            id: None,
            name: name.into(),
            var_type: VarType::String,
            value: String::new(),
            server: None,
            required: false,
            description: String::new(),
        };
        let with = |names: &[&str]| {
            let mut t: Template = serde_json::from_value(json!({"name": "t", "steps": []})).unwrap();
            t.variables = names.iter().map(|n| var(n)).collect();
            t
        };
        // Stored before ids were kept: positions are the ids callers know.
        let legacy = with(&["A", "B", "C"]);
        assert_eq!(variable_ids(&legacy.variables), vec![1, 2, 3]);
        let mut next = with(&["C", "A", "N"]);
        next.assign_variable_ids(Some(&legacy));
        assert_eq!(variable_ids(&next.variables), vec![3, 1, 4]);
        assert_eq!(next.var_id_seq, 4);
        // Duplicated or unknown explicit ids are not trusted.
        let mut again = with(&["X", "Y", "A"]);
        again.variables[0].id = Some(3);
        again.variables[1].id = Some(3);
        again.variables[2].id = Some(99);
        again.assign_variable_ids(Some(&next));
        assert_eq!(variable_ids(&again.variables), vec![3, 5, 1]);
        let mut first = with(&["P", "Q"]);
        first.assign_variable_ids(None);
        assert_eq!(variable_ids(&first.variables), vec![1, 2]);
    }
}
