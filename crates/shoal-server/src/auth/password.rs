//! Passwords of users, as argon2id PHC strings (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
//!
//! Parameters: 12 MiB, 3 passes, 1 lane — one of OWASP's equivalent minimum settings for
//! argon2id, and the one that was fastest on a small shared machine (one verification
//! ≈ 40–60 ms on 2 busy cores with optimised code; 19 MiB × 2 took ~90 ms there, its working
//! set falling out of cache). Passwords
//! are verified only at login; the per-call credentials (API and session tokens) are 256-bit
//! random values checked by SHA-256, so argon2 is never on the hot path.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

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
}
