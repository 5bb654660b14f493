//! The global variables a plan job runs with, as stored with the job (JSON), and what is
//! derived from them: shell definitions for scripts, and the password values to mask. A
//! script may change a string variable (see `shoal_core::template::with_shell_variables`):
//! the steps after it see the value it left.
//! Password values are stored sealed (see [`crate::secrets`], bound to "a job variable named
//! so") and opened only here; a job never takes a sealed value from a caller.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shoal_core::template::VarType;
use shoal_proto::jobv3::ServerDto;
use shoal_store::StepVarOutput;

use crate::secrets::Key;

pub const MASK: &str = shoal_proto::agent::MASK;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobVar {
    pub id: i64,
    pub name: String,
    #[serde(rename = "type")]
    pub var_type: i32,
    #[serde(default)]
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerDto>,
}

pub fn var_type(code: i32) -> Option<VarType> {
    Some(match code {
        1 => VarType::String,
        2 => VarType::Namespace,
        3 => VarType::HostList,
        4 => VarType::Password,
        5 => VarType::AssocArray,
        6 => VarType::IndexArray,
        _ => return None,
    })
}

pub fn parse(json: &str) -> Vec<JobVar> {
    serde_json::from_str(json).unwrap_or_default()
}

fn var_aad(name: &str) -> Vec<u8> {
    crate::secrets::aad(&["job", "var", name])
}

/// Seal the password values of `vars` for storage.
pub fn seal(vars: &mut [JobVar], key: &Key) -> anyhow::Result<()> {
    for v in vars.iter_mut().filter(|v| v.var_type == 4 && !v.value.is_empty()) {
        v.value = key.seal(&v.value, &var_aad(&v.name))?;
    }
    Ok(())
}

/// The stored variables with password values opened.
pub fn open(json: &str, key: &Key) -> Vec<JobVar> {
    let mut vars = parse(json);
    for v in vars.iter_mut().filter(|v| v.var_type == 4) {
        v.value = key.open_all(std::slice::from_ref(&v.value), &var_aad(&v.name)).remove(0);
    }
    vars
}

/// Values handed to shell scripts (host lists are targets, not values).
pub fn shell_values(json: &str, key: &Key) -> Vec<(String, VarType, String)> {
    open(json, key)
        .into_iter()
        .filter_map(|v| var_type(v.var_type).filter(|t| *t != VarType::HostList).map(|t| (v.name, t, v.value)))
        .collect()
}

/// The values scripts of a job changed, by step and name ([`shoal_store::Store::step_var_outputs`]).
pub fn outputs_by_step(outputs: Vec<StepVarOutput>) -> BTreeMap<i64, BTreeMap<String, String>> {
    let mut by_step: BTreeMap<i64, BTreeMap<String, String>> = BTreeMap::new();
    for o in outputs {
        by_step.entry(o.step_instance_id).or_default().insert(o.name, o.value);
    }
    by_step
}

/// A step's outputs over `vars`: string variables only (a password, array or host list
/// changed by a script is never taken).
pub fn apply_outputs(vars: &mut [(String, VarType, String)], outputs: Option<&BTreeMap<String, String>>) {
    let Some(outputs) = outputs else { return };
    for (name, _, value) in vars.iter_mut().filter(|(_, t, _)| *t == VarType::String) {
        if let Some(v) = outputs.get(name) {
            value.clone_from(v);
        }
    }
}

/// Non-empty password values, longest first so overlapping values mask fully.
pub fn passwords(json: &str, key: &Key) -> Vec<String> {
    let mut out: Vec<String> = open(json, key).into_iter().filter(|v| v.var_type == 4 && !v.value.is_empty()).map(|v| v.value).collect();
    out.sort_by_key(|v| std::cmp::Reverse(v.len()));
    out
}

pub fn mask(text: &str, passwords: &[String]) -> String {
    let mut out = text.to_string();
    for p in passwords {
        out = out.replace(p.as_str(), MASK);
    }
    out
}

/// [`mask`] on raw output bytes.
pub fn mask_bytes(data: Vec<u8>, passwords: &[String]) -> Vec<u8> {
    let mut data = data;
    for p in passwords.iter().map(String::as_bytes).filter(|p| !p.is_empty()) {
        if !data.windows(p.len()).any(|w| w == p) {
            continue;
        }
        let mut out = Vec::with_capacity(data.len());
        let mut i = 0;
        while i < data.len() {
            if data[i..].starts_with(p) {
                out.extend_from_slice(MASK.as_bytes());
                i += p.len();
            } else {
                out.push(data[i]);
                i += 1;
            }
        }
        data = out;
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_and_not_shell_hidden() {
        let key = Key::from_bytes(&[7u8; 32]);
        let mut vars = parse(
            r#"[{"id":1,"name":"A","type":1,"value":"x"},{"id":2,"name":"P","type":4,"value":"hunter2"},{"id":3,"name":"H","type":3,"value":""}]"#,
        );
        seal(&mut vars, &key).unwrap();
        let json = serde_json::to_string(&vars).unwrap();
        assert!(!json.contains("hunter2"), "stored sealed: {json}");
        assert_eq!(shell_values(&json, &key).len(), 2);
        assert_eq!(shell_values(&json, &key)[1].2, "hunter2");
        assert_eq!(mask("pw=hunter2!", &passwords(&json, &key)), "pw=******!");
        assert_eq!(mask_bytes(b"a hunter2 b hunter2".to_vec(), &passwords(&json, &key)), b"a ****** b ******");
    }
}
