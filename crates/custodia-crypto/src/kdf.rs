//! [`KdfParams`]: the Argon2id parameters that turn an operator's passphrase into a root key.
//!
//! The parameters are not secret. The key store keeps them beside the root-key verifier so the
//! same passphrase gives the same key on every start; they are read back from storage, so
//! [`derive`] bounds them to keep a corrupted or hostile store from demanding terabytes of memory
//! or hours of work.

use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};

use crate::error::CryptoError;
use crate::secret::{KEY_LEN, SecretKey, fill_random};

/// Length of the random salt.
pub const SALT_LEN: usize = 16;

/// Largest accepted memory cost: 4 GiB.
const MAX_M_COST_KIB: u32 = 4 * 1024 * 1024;
/// Largest accepted number of passes.
const MAX_T_COST: u32 = 64;
/// Largest accepted parallelism.
const MAX_P_COST: u32 = 16;

/// Argon2id (version 0x13) parameters for [`RootKey::from_passphrase`](crate::RootKey::from_passphrase).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    /// Random salt, fixed for the life of the key store.
    pub salt: [u8; SALT_LEN],
    /// Memory cost in KiB.
    pub m_cost_kib: u32,
    /// Number of passes over the memory.
    pub t_cost: u32,
    /// Degree of parallelism (lanes).
    pub p_cost: u32,
}

impl KdfParams {
    /// Parameters for a new key store: a fresh salt, 64 MiB, 3 passes, 1 lane (within the range
    /// OWASP and RFC 9106 recommend for interactive use on a server).
    ///
    /// # Errors
    /// [`CryptoError::Rng`] if the random number generator fails.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut salt = [0; SALT_LEN];
        fill_random(&mut salt)?;
        Ok(Self {
            salt,
            m_cost_kib: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
        })
    }

    /// Cheap parameters with a fixed salt, so tests can derive keys in microseconds and get the
    /// same key every run. Never use them for a real key store: they offer no resistance to
    /// guessing.
    #[must_use]
    pub fn for_tests() -> Self {
        Self {
            salt: *b"custodia-test-kd",
            m_cost_kib: 8,
            t_cost: 1,
            p_cost: 1,
        }
    }
}

/// Derives a 32-byte key from `passphrase` under `params`.
pub(crate) fn derive(passphrase: &[u8], params: &KdfParams) -> Result<SecretKey, CryptoError> {
    if passphrase.is_empty() {
        return Err(kdf_error("the passphrase is empty"));
    }
    if params.m_cost_kib > MAX_M_COST_KIB {
        return Err(kdf_error("memory cost above 4 GiB"));
    }
    if params.t_cost > MAX_T_COST {
        return Err(kdf_error("more than 64 passes"));
    }
    if params.p_cost > MAX_P_COST {
        return Err(kdf_error("parallelism above 16"));
    }
    let argon_params = Params::new(
        params.m_cost_kib,
        params.t_cost,
        params.p_cost,
        Some(KEY_LEN),
    )
    .map_err(|error| kdf_error(&error.to_string()))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params);
    let mut out = zeroize::Zeroizing::new([0; KEY_LEN]);
    argon
        .hash_password_into(passphrase, &params.salt, out.as_mut_slice())
        .map_err(|error| kdf_error(&error.to_string()))?;
    Ok(SecretKey::from_bytes(*out))
}

fn kdf_error(reason: &str) -> CryptoError {
    CryptoError::Kdf {
        reason: reason.to_owned(),
    }
}
