//! [`SecretKey`], the 32 bytes behind every key of the hierarchy, and the hex form of root keys.
//!
//! The bytes are wiped when the value is dropped, and no trait that could print or serialise them
//! is implemented: `Debug` is redacted, and there is no `Display`, `Serialize` or `Clone`. Code
//! in this crate reads them through a crate-private accessor, only to build a cipher or to wrap
//! the key under another one.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::CryptoError;

/// Length in bytes of every key in the hierarchy (AES-256).
pub const KEY_LEN: usize = 32;

/// Length of a key in hex, as in key files and environment variables.
pub(crate) const HEX_LEN: usize = 2 * KEY_LEN;

/// 32 bytes of key material, wiped on drop and never printed.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; KEY_LEN]);

impl SecretKey {
    /// A fresh key from the operating system's random number generator.
    ///
    /// # Errors
    /// [`CryptoError::Rng`] if the generator fails.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut key = Self([0; KEY_LEN]);
        fill_random(&mut key.0)?;
        Ok(key)
    }

    /// Takes ownership of key bytes. The caller should wipe its own copies.
    pub(crate) fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    pub(crate) fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Lowercase hex, in a buffer wiped on drop.
    pub(crate) fn to_hex(&self) -> Zeroizing<String> {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = Zeroizing::new(String::with_capacity(HEX_LEN));
        for byte in &self.0 {
            for nibble in [byte >> 4, byte & 0x0f] {
                out.push(char::from(
                    DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0'),
                ));
            }
        }
        out
    }

    /// Parses exactly 64 hex digits (either case).
    ///
    /// The error is a fixed description: it must never echo the input, which may be a key.
    pub(crate) fn from_hex(text: &str) -> Result<Self, &'static str> {
        if text.len() != HEX_LEN {
            return Err("expected 64 hex characters (32 bytes)");
        }
        let mut key = Self([0; KEY_LEN]);
        for (byte, pair) in key.0.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            let (Some(&high), Some(&low)) = (pair.first(), pair.get(1)) else {
                return Err("expected 64 hex characters (32 bytes)");
            };
            match (hex_value(high), hex_value(low)) {
                (Some(high), Some(low)) => *byte = (high << 4) | low,
                _ => return Err("expected only hex characters 0-9, a-f"),
            }
        }
        Ok(key)
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(redacted)")
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Fills `dest` from the system generator (AWS-LC's DRBG, seeded by the kernel).
pub(crate) fn fill_random(dest: &mut [u8]) -> Result<(), CryptoError> {
    SystemRandom::new().fill(dest).map_err(|_| CryptoError::Rng)
}
