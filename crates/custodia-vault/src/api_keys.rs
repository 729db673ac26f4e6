//! API keys: admin keys, and service keys bound to the purposes they may act for. A key is
//! shown once as a token `api_<id>.<secret>`; only the SHA-256 of the secret is stored, checked
//! in constant time. Revocation takes effect at once: every call reads the key's row.

use custodia_audit::EventKind;
use custodia_core::ApiKeyId;
use custodia_crypto::token;
use custodia_store::{ApiKeyRow, Mutation, WriteBatch};
use zeroize::Zeroizing;

use crate::error::VaultError;
use crate::gate::Caller;
use crate::vault::Vault;

/// A new key, with its token shown this once.
#[derive(Debug)]
pub struct IssuedKey {
    /// The key's row (without anything secret).
    pub key: ApiKeyRow,
    /// The bearer token: `api_<32 hex>.<64 hex>`.
    pub token: Zeroizing<String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// The bytes of hex text, two digits a byte; what `u8::from_str_radix(pair, 16)` accepts for
/// each pair (which includes `+` and one digit), byte by byte rather than through its parser:
/// every authenticated call decodes a secret.
fn unhex(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| match *pair {
            [b'+', low] => nibble(low),
            [high, low] => Some((nibble(high)? << 4) | nibble(low)?),
            _ => None,
        })
        .collect()
}

fn parse_token(bearer: &str) -> Result<(ApiKeyId, Zeroizing<Vec<u8>>), VaultError> {
    let (id, secret) = bearer.split_once('.').ok_or(VaultError::Unauthorized)?;
    let id: ApiKeyId = id.parse().map_err(|_| VaultError::Unauthorized)?;
    let secret = Zeroizing::new(unhex(secret).ok_or(VaultError::Unauthorized)?);
    if secret.len() != token::SECRET_LEN {
        return Err(VaultError::Unauthorized);
    }
    Ok((id, secret))
}

fn check(row: &ApiKeyRow, secret: &[u8]) -> Result<Caller, VaultError> {
    let matches = token::hashes_equal(&row.secret_hash, &token::token_hash(secret));
    if !matches || row.revoked_at.is_some() {
        return Err(VaultError::Unauthorized);
    }
    Ok(Caller {
        key: Some(row.id),
        admin: row.admin,
        purposes: row.purposes.clone(),
    })
}

impl Vault {
    /// Creates a key. A service key must name at least one purpose of the policy in force; an
    /// admin key names none.
    pub fn create_api_key(
        &self,
        name: &str,
        admin: bool,
        purposes: &[String],
        actor: &str,
    ) -> Result<IssuedKey, VaultError> {
        let invalid = |field, reason: &str| VaultError::Invalid {
            field,
            reason: reason.to_owned(),
        };
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ' '));
        if !name_ok {
            return Err(invalid(
                "name",
                "1 to 64 letters, digits, spaces, '-', '_' or '.'",
            ));
        }
        if admin && !purposes.is_empty() {
            return Err(invalid(
                "purposes",
                "an admin key acts for every purpose; give none",
            ));
        }
        if !admin && purposes.is_empty() {
            return Err(invalid(
                "purposes",
                "a service key must be bound to at least one purpose",
            ));
        }
        let policy = self.policy();
        for purpose in purposes {
            if policy.purpose(purpose).is_none() {
                return Err(VaultError::UnknownPurpose(purpose.clone()));
            }
        }
        let secret = Zeroizing::new(token::new_token_secret()?);
        let id = ApiKeyId::random().map_err(|_| custodia_crypto::CryptoError::Rng)?;
        let row = ApiKeyRow {
            id,
            name: name.to_owned(),
            secret_hash: token::token_hash(secret.as_slice()),
            admin,
            purposes: purposes.to_vec(),
            created_at: self.core.clock.now(),
            revoked_at: None,
        };
        self.core.data.commit(WriteBatch {
            mutations: vec![Mutation::InsertApiKey(row.clone())],
            audit: vec![
                self.core
                    .event(EventKind::KeyCreated, actor)
                    .with_record(id.to_string())
                    .with_outcome(if admin {
                        "admin_api_key"
                    } else {
                        "service_api_key"
                    })
                    .with_reasons(purposes.iter().cloned()),
            ],
        })?;
        Ok(IssuedKey {
            key: row,
            token: Zeroizing::new(format!("{id}.{}", hex(secret.as_slice()))),
        })
    }

    /// The caller a bearer token stands for. Unknown, malformed, revoked and wrong tokens are
    /// all the same [`VaultError::Unauthorized`], so a probe learns nothing.
    pub fn authenticate(&self, bearer: &str) -> Result<Caller, VaultError> {
        if let Some(answer) = self.try_authenticate_cached(bearer) {
            return answer;
        }
        let (id, secret) = parse_token(bearer)?;
        let read_at = self.caches.generation();
        let row = self
            .core
            .data
            .api_key(id)?
            .ok_or(VaultError::Unauthorized)?;
        let caller = check(&row, &secret)?;
        self.caches.store_key(row, read_at);
        Ok(caller)
    }

    /// Answers from memory when the key is cached (no storage read, no blocking); `None` when it
    /// must be read first, with [`Vault::authenticate`] on a blocking thread.
    pub fn try_authenticate_cached(&self, bearer: &str) -> Option<Result<Caller, VaultError>> {
        let (id, secret) = match parse_token(bearer) {
            Ok(parsed) => parsed,
            Err(err) => return Some(Err(err)),
        };
        self.caches.with_key(id, |row| check(row, &secret))
    }

    /// Revokes a key at once (other processes sharing the stores see it within
    /// [`crate::cache::TAIL_INTERVAL`]).
    pub fn revoke_api_key(&self, id: ApiKeyId, actor: &str) -> Result<(), VaultError> {
        let committed = self.core.data.commit(WriteBatch {
            mutations: vec![Mutation::RevokeApiKey {
                id,
                at: self.core.clock.now(),
            }],
            audit: vec![
                self.core
                    .event(EventKind::KeyDestroyed, actor)
                    .with_record(id.to_string())
                    .with_outcome("api_key_revoked"),
            ],
        });
        self.caches.forget_key(id);
        committed?;
        Ok(())
    }

    /// Every key, oldest first (hashes included; callers show only what they need).
    pub fn api_keys(&self) -> Result<Vec<ApiKeyRow>, VaultError> {
        Ok(self.core.data.api_keys()?)
    }
}

#[cfg(test)]
mod tests {
    use super::unhex;

    /// The reference: what tokens decoded to before the byte-wise decoder.
    fn by_radix(text: &str) -> Option<Vec<u8>> {
        if !text.len().is_multiple_of(2) {
            return None;
        }
        (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
            })
            .collect()
    }

    #[test]
    fn decodes_hex_as_the_radix_parser_does() {
        let digits = ["0", "9", "a", "f", "A", "F", "g", "+", "-", " ", "é", ""];
        for a in digits {
            for b in digits {
                for c in ["", "00", "7f", "+1"] {
                    let text = format!("{c}{a}{b}");
                    assert_eq!(unhex(&text), by_radix(&text), "{text:?}");
                }
            }
        }
        assert_eq!(unhex("00ff10Ab"), Some(vec![0x00, 0xff, 0x10, 0xab]));
    }
}
