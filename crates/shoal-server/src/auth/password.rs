//! Secrets people choose, as argon2id PHC strings (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`):
//! user passwords ([`hash_password`], [`verify_password`]) and app secrets ([`hash`],
//! [`verify`], the same parameters).
//!
//! Parameters: 12 MiB, 3 passes, 1 lane — one of OWASP's equivalent minimum settings for
//! argon2id, and the one that was fastest on a small shared machine (one verification
//! ≈ 40–60 ms on 2 busy cores with optimised code; 19 MiB × 2 took ~90 ms there, its working
//! set falling out of cache). Passwords are verified only at login; app secrets on every
//! app call, so successful verifications of those are cached for a short while
//! ([`VerifyCache`]), keyed by the stored hash: a rotated or revoked secret stops matching
//! at once, on every replica.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Params, Version};
use sha2::{Digest, Sha256};

fn hasher() -> Argon2<'static> {
    let params = Params::new(12 * 1024, 3, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hash a password with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(hasher().hash_password(password.as_bytes(), &salt)?.to_string())
}

/// Whether `password` matches the PHC string `phc` (false for a malformed one). The
/// parameters are read from `phc`, so hashes made with older settings keep verifying.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => hasher().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A hash no password matches, verified against when a login names an unknown user so that
/// the answer takes as long as for a known one (no user enumeration by timing).
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&super::random_token()).expect("hash decoy"))
}

/// The argon2id PHC string of an app secret, with a fresh random salt.
pub fn hash(secret: &str) -> String {
    hash_password(secret).expect("argon2 hashes any input")
}

/// Whether `stored` is an argon2 PHC string (rather than a legacy hash).
pub fn is_argon2(stored: &str) -> bool {
    stored.starts_with("$argon2")
}

/// Whether `secret` matches the PHC string `stored` (false for anything not a PHC string).
pub fn verify(stored: &str, secret: &str) -> bool {
    verify_password(secret, stored)
}

/// How long a successful verification is remembered.
pub const CACHE_TTL: Duration = Duration::from_secs(300);
const CACHE_MAX: usize = 4096;

/// (principal, stored hash, SHA-256 of the presented secret).
type CacheKey = (String, String, [u8; 32]);

/// Remembers successful verifications: (principal, stored hash, SHA-256 of the presented
/// secret) → when it expires. The presented secret itself is never kept; a new stored hash
/// (rotation, revocation) misses.
#[derive(Default)]
pub struct VerifyCache {
    entries: Mutex<HashMap<CacheKey, Instant>>,
}

impl VerifyCache {
    fn key(principal: &str, stored: &str, secret: &str) -> CacheKey {
        (principal.to_string(), stored.to_string(), Sha256::digest(secret.as_bytes()).into())
    }

    pub fn hit(&self, principal: &str, stored: &str, secret: &str) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(&Self::key(principal, stored, secret)).is_some_and(|until| *until > Instant::now())
    }

    pub fn remember(&self, principal: &str, stored: &str, secret: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if entries.len() >= CACHE_MAX {
            entries.retain(|_, until| *until > now);
            if entries.len() >= CACHE_MAX {
                entries.clear();
            }
        }
        entries.insert(Self::key(principal, stored, secret), now + CACHE_TTL);
    }

    /// Drop everything remembered for `principal` (on rotation and revocation).
    pub fn forget(&self, principal: &str) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).retain(|(p, _, _), _| p != principal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phc_round_trip() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=12288,t=3,p=1$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct horsE", &h));
        assert!(!verify_password("x", "not a phc string"));
        assert_ne!(h, hash_password("correct horse").unwrap(), "salted");
    }

    #[test]
    fn hashes_verify_and_differ_per_salt() {
        let h = hash("correct horse");
        assert!(h.starts_with("$argon2id$v=19$m=12288,t=3,p=1$") && is_argon2(&h), "{h}");
        assert!(verify(&h, "correct horse"));
        assert!(!verify(&h, "battery staple"));
        assert_ne!(h, hash("correct horse"));
        assert!(!verify("0123abcd", "x"), "not a PHC string");
    }

    #[test]
    fn cache_is_keyed_by_the_stored_hash() {
        let c = VerifyCache::default();
        c.remember("ci", "h1", "s");
        assert!(c.hit("ci", "h1", "s"));
        assert!(!c.hit("ci", "h2", "s"), "rotated");
        assert!(!c.hit("ci", "h1", "t"), "another secret");
        c.forget("ci");
        assert!(!c.hit("ci", "h1", "s"));
    }

    /// Not an assertion on time: prints what one verification costs here, for the docs.
    #[test]
    fn measure_one_verification() {
        let h = hash("x");
        let t = Instant::now();
        assert!(verify(&h, "x"));
        eprintln!("argon2id verify: {:?}", t.elapsed());
    }
}
