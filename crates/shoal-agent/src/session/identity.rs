//! The agent's stable identity: a v4 UUID created once in `state_dir/agent_id`.
#![forbid(unsafe_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Reads `state_dir/agent_id`, creating it on first start. Blocking.
pub fn load_or_create(state_dir: &Path) -> std::io::Result<String> {
    let path = state_dir.join("agent_id");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            if let Ok(id) = uuid::Uuid::parse_str(text.trim()) {
                // Made 0644 by agents before 0600 was the rule.
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
                return Ok(id.to_string());
            }
            tracing::warn!(path = %path.display(), "agent_id is not a UUID; making a new one");
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let id = uuid::Uuid::new_v4().to_string();
    super::outbox::write_atomic(&path, format!("{id}\n").as_bytes())?;
    Ok(id)
}

/// Reads `state_dir/agent_credential` (mode 0600), creating it on first start: the secret
/// the server binds to this agent's id at enrolment. Blocking.
pub fn load_or_create_credential(state_dir: &Path) -> std::io::Result<String> {
    let path = state_dir.join("agent_credential");
    match std::fs::read_to_string(&path) {
        Ok(text) if text.trim().len() >= 32 => {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            return Ok(text.trim().to_string());
        }
        Ok(_) => tracing::warn!(path = %path.display(), "agent_credential is too short; making a new one"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let secret = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(format!("{secret}\n").as_bytes())?;
        f.sync_all()?;
    }
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, &path)?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_id_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = super::load_or_create(dir.path()).unwrap();
        let b = super::load_or_create(dir.path()).unwrap();
        assert_eq!(a, b);
        assert!(uuid::Uuid::parse_str(&a).is_ok());
    }

    #[test]
    fn the_credential_is_private_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = super::load_or_create_credential(dir.path()).unwrap();
        assert_eq!(a, super::load_or_create_credential(dir.path()).unwrap());
        assert!(a.len() >= 32);
        let mode = std::fs::metadata(dir.path().join("agent_credential")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
