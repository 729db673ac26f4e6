//! API key tokens: a random secret shown once, of which only a SHA-256 hash is stored, and a
//! constant-time comparison so checking a token leaks nothing through timing.

use aws_lc_rs::{constant_time, digest};

use crate::error::CryptoError;
use crate::secret::fill_random;

/// Bytes of randomness in a token secret.
pub const SECRET_LEN: usize = 32;

/// A fresh random token secret.
pub fn new_token_secret() -> Result<[u8; SECRET_LEN], CryptoError> {
    let mut secret = [0; SECRET_LEN];
    fill_random(&mut secret)?;
    Ok(secret)
}

/// SHA-256 of a token secret, as stored. The secret has 256 bits of entropy, so a fast hash is
/// enough: there is nothing to guess.
pub fn token_hash(secret: &[u8]) -> [u8; 32] {
    let digest = digest::digest(&digest::SHA256, secret);
    let mut out = [0; 32];
    for (dst, src) in out.iter_mut().zip(digest.as_ref()) {
        *dst = *src;
    }
    out
}

/// Compares two hashes in constant time.
pub fn hashes_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stable_and_compare_exactly() {
        let secret = new_token_secret().unwrap();
        let hash = token_hash(&secret);
        assert!(hashes_equal(&hash, &token_hash(&secret)));
        let mut other = hash;
        other[31] ^= 1;
        assert!(!hashes_equal(&hash, &other));
        assert_ne!(new_token_secret().unwrap(), secret);
    }
}
