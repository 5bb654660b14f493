//! Label selectors (`env=prod,role!=db,gpu`) and dynamic groups: a saved selector over the
//! host registry, the Shoal counterpart of a CMDB dynamic group.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::JobError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LabelTerm {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    Absent(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelSelector {
    pub terms: Vec<LabelTerm>,
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<LabelSelector, JobError> {
        let mut terms = vec![];
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let term = if let Some((k, v)) = part.split_once("!=") {
                LabelTerm::Ne(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                LabelTerm::Eq(k.trim().into(), v.trim().into())
            } else if let Some(k) = part.strip_prefix('!') {
                LabelTerm::Absent(k.trim().into())
            } else {
                LabelTerm::Exists(part.into())
            };
            let key = match &term {
                LabelTerm::Eq(k, _) | LabelTerm::Ne(k, _) | LabelTerm::Exists(k) | LabelTerm::Absent(k) => k,
            };
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) {
                return Err(JobError::illegal("selector"));
            }
            terms.push(term);
        }
        Ok(LabelSelector { terms })
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.terms.iter().all(|t| match t {
            LabelTerm::Eq(k, v) => labels.get(k) == Some(v),
            LabelTerm::Ne(k, v) => labels.get(k) != Some(v),
            LabelTerm::Exists(k) => labels.contains_key(k),
            LabelTerm::Absent(k) => !labels.contains_key(k),
        })
    }
}

/// What a dynamic group selects, within its scope's business.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSpec {
    #[serde(default)]
    pub set_ids: Vec<i64>,
    #[serde(default)]
    pub module_ids: Vec<i64>,
    /// Label selector text, e.g. `env=prod,role!=db`.
    #[serde(default)]
    pub selector: String,
}

/// The host facts a selection looks at.
pub struct HostView<'a> {
    pub set_id: Option<i64>,
    pub module_id: Option<i64>,
    pub labels: &'a BTreeMap<String, String>,
}

impl GroupSpec {
    pub fn matches(&self, sel: &LabelSelector, h: &HostView<'_>) -> bool {
        (self.set_ids.is_empty() || h.set_id.is_some_and(|s| self.set_ids.contains(&s)))
            && (self.module_ids.is_empty() || h.module_id.is_some_and(|m| self.module_ids.contains(&m)))
            && sel.matches(h.labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_terms() {
        let s = LabelSelector::parse("env=prod, role!=db,gpu,!old").unwrap();
        let mut l = BTreeMap::new();
        l.insert("env".to_string(), "prod".to_string());
        l.insert("gpu".to_string(), "1".to_string());
        assert!(s.matches(&l));
        l.insert("role".to_string(), "db".to_string());
        assert!(!s.matches(&l));
        assert!(LabelSelector::parse("a b=c").is_err());
        assert!(LabelSelector::parse("").unwrap().matches(&BTreeMap::new()));
    }

    #[test]
    fn double_equals_is_equality() {
        // As in Kubernetes label selectors: `role==web` is `role=web`, not `role` = "=web".
        let s = LabelSelector::parse("role==web").unwrap();
        assert_eq!(s.terms, LabelSelector::parse("role=web").unwrap().terms);
        let mut l = BTreeMap::new();
        l.insert("role".to_string(), "web".to_string());
        assert!(s.matches(&l));
    }
}
