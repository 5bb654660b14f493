//! Sensitive values at rest: the parameters of a step with `is_param_sensitive=1` are stored
//! sealed (XChaCha20-Poly1305, random nonce) under the server's key, and opened only when the
//! task is handed to the agent.
//!
//! The key is 32 random bytes, hex in `secret_key_file` (default `<data_dir>/secret-key`,
//! generated at first start with mode 0600). Replicas sharing a PostgreSQL store must share
//! the file.
//!
//! A sealed value reads `shoal-sealed:v2:<base64(nonce ‖ ciphertext)>` and is bound to the
//! record it belongs to by authenticated data ([`aad`]: the kind of record, its scope, its
//! name and the field), so it opens only there: a value copied into another template, scope
//! or field fails to open instead of being revealed. Values that reach the server from a
//! caller go through [`Key::open_input`], which accepts only a v2 value bound to the very
//! record being written. `v1` values (no authenticated data, written before v2) are still
//! read from storage by [`Key::open`] — they can only have been written there by the record
//! that holds them — and are never accepted from a caller; every re-apply seals anew as v2.
//!
//! The audit chain's MAC key is made and kept the same way, apart from the sealing key:
//! `audit_key_file`, default `<data_dir>/audit-key`. And the data directory itself is kept
//! owner-only ([`secure_data_dir`]): 0700, every file in it 0600.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::ServerConfig;

/// Every sealed value starts with this.
pub const SEALED: &str = "shoal-sealed:";
const PREFIX_V1: &str = "shoal-sealed:v1:";
const PREFIX: &str = "shoal-sealed:v2:";

/// Authenticated data naming where a value belongs, e.g.
/// `aad(&["template", "biz", "2", "deploy", "variables[TOKEN].value"])`. JSON, so no two
/// different lists encode alike.
pub fn aad(parts: &[&str]) -> Vec<u8> {
    serde_json::to_vec(parts).unwrap_or_default()
}

/// Whether `value` is a sealed value (of any format version).
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(SEALED)
}
const NONCE_LEN: usize = 24;

/// The sealing key; empty until [`load_or_create`] fills it. Never printed. Beside the
/// cipher it keeps a MAC key derived from the same bytes ([`Key::mac`]: values the server
/// recomputes instead of storing, like the console's CSRF tokens).
#[derive(Clone, Default)]
pub struct Key(Option<Arc<XChaCha20Poly1305>>, Option<Arc<[u8; 32]>>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Key(<redacted>)" } else { "Key(<unset>)" })
    }
}

impl Key {
    pub fn from_bytes(bytes: &[u8; 32]) -> Key {
        use sha2::Digest;
        let mut d = sha2::Sha256::new();
        d.update(b"shoal mac key v1\0");
        d.update(bytes);
        Key(Some(Arc::new(XChaCha20Poly1305::new(bytes.into()))), Some(Arc::new(d.finalize().into())))
    }

    /// HMAC-SHA256 (hex) of `data` for `purpose` (so a MAC made for one use never passes
    /// for another); `None` without a key.
    pub fn mac(&self, purpose: &str, data: &str) -> Option<String> {
        use hmac::Mac;
        let key = self.1.as_ref()?;
        let mut m = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&key[..]).expect("HMAC takes any key length");
        m.update(purpose.as_bytes());
        m.update(&[0]);
        m.update(data.as_bytes());
        Some(hex::encode(m.finalize().into_bytes()))
    }

    /// Seal one value, bound to `aad`. Without a key (never the case in a running server)
    /// the value is refused rather than stored in clear.
    pub fn seal(&self, plain: &str, aad: &[u8]) -> anyhow::Result<String> {
        let cipher = self.0.as_ref().context("no sealing key loaded")?;
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = cipher.encrypt(&nonce, Payload { msg: plain.as_bytes(), aad }).map_err(|_| anyhow::anyhow!("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!("{PREFIX}{}", base64::engine::general_purpose::STANDARD.encode(out)))
    }

    /// Open a stored value sealed for `aad`. A value that is not sealed is returned as it
    /// is (rows written before sealing existed); a v1 value (written before values were
    /// bound to their record) opens without authenticated data.
    pub fn open(&self, value: &str, aad: &[u8]) -> anyhow::Result<String> {
        if let Some(b64) = value.strip_prefix(PREFIX_V1) {
            return self.decrypt(b64, b"");
        }
        match value.strip_prefix(PREFIX) {
            Some(b64) => self.decrypt(b64, aad),
            None if is_sealed(value) => anyhow::bail!("unknown sealed value format"),
            None => Ok(value.to_string()),
        }
    }

    /// Check a sealed value a caller sent back: it must be a v2 value sealed for exactly
    /// `aad`. Anything else — a value copied from another record or scope, or an old v1
    /// value — is refused, so an API never opens what it did not seal for this place.
    pub fn open_input(&self, value: &str, aad: &[u8]) -> anyhow::Result<String> {
        let b64 = value.strip_prefix(PREFIX).context("only values sealed for this very record can be given back sealed")?;
        self.decrypt(b64, aad).map_err(|_| anyhow::anyhow!("the sealed value belongs to another record or scope"))
    }

    fn decrypt(&self, b64: &str, aad: &[u8]) -> anyhow::Result<String> {
        let cipher = self.0.as_ref().context("no sealing key loaded")?;
        let raw = base64::engine::general_purpose::STANDARD.decode(b64).context("sealed value is not base64")?;
        anyhow::ensure!(raw.len() > NONCE_LEN, "sealed value too short");
        let (nonce, data) = raw.split_at(NONCE_LEN);
        let plain = cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: data, aad })
            .map_err(|_| anyhow::anyhow!("sealed value does not open here (another key or another record)"))?;
        String::from_utf8(plain).context("sealed value is not UTF-8")
    }

    pub fn seal_all(&self, values: &[String], aad: &[u8]) -> anyhow::Result<Vec<String>> {
        values.iter().map(|v| self.seal(v, aad)).collect()
    }

    /// Open every value; one that does not open becomes empty (and is logged without its
    /// content), so a task never carries ciphertext to a script.
    pub fn open_all(&self, values: &[String], aad: &[u8]) -> Vec<String> {
        values
            .iter()
            .map(|v| {
                self.open(v, aad).unwrap_or_else(|e| {
                    tracing::error!(error = %e, "cannot open a sealed parameter");
                    String::new()
                })
            })
            .collect()
    }
}

/// Authenticated data of a job's sensitive script parameters.
pub const JOB_PARAM_AAD: &[u8] = br#"["job","param"]"#;

fn key_path(config: &ServerConfig) -> PathBuf {
    config.secret_key_file.clone().unwrap_or_else(|| config.data_dir().join("secret-key"))
}

fn audit_key_path(config: &ServerConfig) -> PathBuf {
    config.audit_key_file.clone().unwrap_or_else(|| config.data_dir().join("audit-key"))
}

/// Read 32 bytes (64 hex digits) from `path`, or make them (0600) at first start. A key file
/// others can read is tightened.
fn load_or_create_bytes(path: &Path, what: &str) -> anyhow::Result<[u8; 32]> {
    let hex_key = match std::fs::read_to_string(path) {
        Ok(text) => {
            make_private(path)?;
            text.trim().to_string()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            bytes.copy_from_slice(&XChaCha20Poly1305::generate_key(&mut OsRng));
            let hex_key = hex::encode(bytes);
            crate::write_secret_file(path, &format!("{hex_key}\n"))?;
            tracing::info!(path = %path.display(), "generated the {what}");
            hex_key
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    hex::decode(&hex_key).ok().and_then(|b| b.try_into().ok()).with_context(|| format!("{} must hold 64 hex digits", path.display()))
}

/// Read the key file, or make one (0600) at first start.
pub fn load_or_create(config: &ServerConfig) -> anyhow::Result<Key> {
    Ok(Key::from_bytes(&load_or_create_bytes(&key_path(config), "key for sensitive values at rest")?))
}

/// The audit chain's MAC key, read or made (0600) like the sealing key. Replicas on one
/// PostgreSQL store share the file; losing it makes the chain unverifiable from then on.
pub fn load_or_create_audit_key(config: &ServerConfig) -> anyhow::Result<shoal_store::trust::AuditKey> {
    Ok(shoal_store::trust::AuditKey::from_bytes(load_or_create_bytes(&audit_key_path(config), "audit chain key")?))
}

/// Make `path` 0600 if it is a file others can read or write; logs when it changed it.
pub fn make_private(path: &Path) -> anyhow::Result<()> {
    let meta = std::fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if meta.is_file() && mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
        tracing::warn!(path = %path.display(), old_mode = format!("{mode:o}"), "tightened a file in the data directory to 0600");
    }
    Ok(())
}

/// Create the data directory owner-only (0700), or tighten an existing one, and every file
/// directly in it to 0600 (the database and its WAL, keys, generated credentials): they hold
/// job output, secret hashes and keys.
pub fn secure_data_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).with_context(|| format!("creating data dir {}", dir.display()))?;
    let mode = std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(|| format!("restricting {}", dir.display()))?;
        tracing::warn!(path = %dir.display(), old_mode = format!("{mode:o}"), "tightened the data directory to 0700");
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        // A file the server cannot tighten (another owner) is reported, not fatal: the files
        // the server itself writes are made owner-only when written.
        if let Err(e) = make_private(&entry?.path()) {
            tracing::error!(error = format!("{e:#}"), "a file in the data directory stays readable by others");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_hides_the_value() {
        let k = Key::from_bytes(&[7; 32]);
        let here = aad(&["template", "biz", "2", "deploy", "variables[PW].value"]);
        let sealed = k.seal("p@ss w0rd", &here).unwrap();
        assert!(sealed.starts_with(PREFIX) && !sealed.contains("p@ss"));
        assert_ne!(sealed, k.seal("p@ss w0rd", &here).unwrap(), "random nonce");
        assert_eq!(k.open(&sealed, &here).unwrap(), "p@ss w0rd");
        assert_eq!(k.open_input(&sealed, &here).unwrap(), "p@ss w0rd");
        assert_eq!(k.open("plain", &here).unwrap(), "plain");
        assert!(Key::from_bytes(&[8; 32]).open(&sealed, &here).is_err(), "another key does not open it");
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(k.open(&tampered, &here).is_err());
        assert!(Key::default().seal("x", &here).is_err(), "no key: refuse, never store in clear");
        assert_eq!(format!("{k:?}"), "Key(<redacted>)");
    }

    #[test]
    fn a_value_opens_only_where_it_was_sealed() {
        let k = Key::from_bytes(&[7; 32]);
        let here = aad(&["template", "biz", "3", "deploy", "variables[PW].value"]);
        let sealed = k.seal("biz3-secret", &here).unwrap();
        for elsewhere in [
            aad(&["template", "biz", "2", "deploy", "variables[PW].value"]),
            aad(&["template", "biz", "3", "other", "variables[PW].value"]),
            aad(&["template", "biz", "3", "deploy", "variables[PW2].value"]),
        ] {
            assert!(k.open(&sealed, &elsewhere).is_err());
            assert!(k.open_input(&sealed, &elsewhere).is_err());
        }
        // A v1 value (no authenticated data) is read from storage but never taken from a caller.
        let cipher = XChaCha20Poly1305::new((&[7u8; 32]).into());
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let mut raw = nonce.to_vec();
        raw.extend_from_slice(&cipher.encrypt(&nonce, b"old".as_slice()).unwrap());
        let v1 = format!("{PREFIX_V1}{}", base64::engine::general_purpose::STANDARD.encode(raw));
        assert_eq!(k.open(&v1, &here).unwrap(), "old");
        assert!(k.open_input(&v1, &here).is_err());
        assert!(k.open_input("plain", &here).is_err());
        assert!(k.open("shoal-sealed:v9:xx", &here).is_err());
    }

    #[test]
    fn data_dir_and_its_files_are_tightened() {
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        secure_data_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let f = dir.join("shoal.db");
        std::fs::write(&f, b"x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        secure_data_dir(&dir).unwrap();
        assert_eq!((mode(&dir), mode(&f)), (0o700, 0o600));
    }
}
