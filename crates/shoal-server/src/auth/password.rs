//! Operator-chosen secrets at rest: argon2id, in PHC strings (`$argon2id$v=19$m=…`), so the
//! parameters and salt travel with each hash. For app secrets, and for anything else a
//! person picks (user passwords): reuse [`hash`], [`verify`] and [`VerifyCache`].
//!
//! Parameters: argon2id, m = 12 MiB, t = 3, p = 1 (one of OWASP's baseline settings). A
//! verification takes about 48 ms on the machine Shoal is tested on, measured in an
//! optimised build under load (see `docs/security/evidence.md`), too slow to run on every
//! API call: successful
//! verifications are cached for a short while ([`VerifyCache`]), keyed by the stored hash,
//! so a rotated or revoked secret stops matching at once, on every replica.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use sha2::{Digest, Sha256};

/// Memory (KiB), passes and lanes of new hashes; verification reads them from each hash.
pub const PARAMS: (u32, u32, u32) = (12 * 1024, 3, 1);

fn hasher() -> Argon2<'static> {
    let params = Params::new(PARAMS.0, PARAMS.1, PARAMS.2, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The argon2id PHC string of `secret`, with a fresh random salt.
pub fn hash(secret: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    hasher().hash_password(secret.as_bytes(), &salt).expect("argon2 hashes any input").to_string()
}

/// Whether `stored` is an argon2 PHC string (rather than a legacy hash).
pub fn is_argon2(stored: &str) -> bool {
    stored.starts_with("$argon2")
}

/// Whether `secret` matches the PHC string `stored` (false for anything not a PHC string).
pub fn verify(stored: &str, secret: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default().verify_password(secret.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
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
