//! Resource scope resolution (§2.1): the scope pair wins; otherwise the legacy `bk_biz_id`,
//! where ids in 8,000,000..=9,999,999 are business sets.

use shoal_proto::jobv3::ScopeReq;

use crate::limits::BIZ_SET_ID_RANGE;
use crate::JobError;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub scope_type: String,
    pub scope_id: String,
}

impl Scope {
    pub fn biz(id: i64) -> Scope {
        Scope { scope_type: "biz".into(), scope_id: id.to_string() }
    }

    /// The business id hosts register with, when the scope is a plain business.
    pub fn biz_id(&self) -> Option<i64> {
        (self.scope_type == "biz").then(|| self.scope_id.parse().ok()).flatten()
    }

    pub fn resolve(req: &ScopeReq) -> Result<Scope, JobError> {
        let ty = req.bk_scope_type.as_deref().map(str::trim).filter(|s| !s.is_empty());
        let id = req.bk_scope_id.as_deref().map(str::trim).filter(|s| !s.is_empty());
        match (ty, id) {
            (Some(ty), Some(id)) => {
                if !matches!(ty, "biz" | "biz_set" | "tenant_set") {
                    return Err(JobError::illegal("bk_scope_type"));
                }
                if id.parse::<i64>().is_err() {
                    return Err(JobError::illegal("bk_scope_id"));
                }
                Ok(Scope { scope_type: ty.into(), scope_id: id.into() })
            }
            (Some(_), None) => Err(JobError::missing("bk_scope_id")),
            (None, Some(_)) => Err(JobError::missing("bk_scope_type")),
            (None, None) => match req.bk_biz_id {
                Some(id) if id >= 1 => {
                    let ty = if BIZ_SET_ID_RANGE.contains(&id) { "biz_set" } else { "biz" };
                    Ok(Scope { scope_type: ty.into(), scope_id: id.to_string() })
                }
                Some(_) => Err(JobError::illegal("bk_biz_id")),
                None => Err(JobError::missing("bk_scope_type")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(ty: Option<&str>, id: Option<&str>, biz: Option<i64>) -> ScopeReq {
        ScopeReq { bk_scope_type: ty.map(Into::into), bk_scope_id: id.map(Into::into), bk_biz_id: biz }
    }

    #[test]
    fn scope_pair_wins_over_legacy_biz() {
        assert_eq!(Scope::resolve(&req(Some("biz"), Some("3"), Some(9))).unwrap(), Scope::biz(3));
    }

    #[test]
    fn legacy_biz_id_and_biz_set_range() {
        assert_eq!(Scope::resolve(&req(None, None, Some(2))).unwrap(), Scope::biz(2));
        assert_eq!(Scope::resolve(&req(None, None, Some(8_000_001))).unwrap().scope_type, "biz_set");
        assert_eq!(Scope::resolve(&req(None, None, Some(0))).unwrap_err().code.0, 1241005);
        assert_eq!(Scope::resolve(&req(None, None, None)).unwrap_err().code.0, 1241004);
        assert_eq!(Scope::resolve(&req(Some("team"), Some("1"), None)).unwrap_err().code.0, 1241005);
    }
}
