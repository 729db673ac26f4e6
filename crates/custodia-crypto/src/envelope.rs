//! The sealed format shared by fields, wrapped keys and the root-key verifier, and the encoding of
//! their associated data.
//!
//! A sealed message is `version (1) || nonce (12) || ciphertext || tag (16)`, AES-256-GCM.
//!
//! Two nonce constructions, both from NIST SP 800-38D:
//! - wrapped keys and the verifier (rare) take a fresh 96-bit random nonce per message (§8.2.2);
//! - fields (the hot path) use the deterministic construction (§8.2.1) through a
//!   [`NonceSequence`]: a 64-bit fixed field drawn at random when a key is loaded into memory,
//!   then a 32-bit invocation counter. Within one loaded key the counter never repeats (the
//!   sequence refuses to wrap); two loadings of the same key collide only if they draw the same
//!   64-bit field, a chance of about n²/2⁶⁵ over n loadings. One random call per field would cost
//!   more than the sealing itself: AWS-LC mixes fresh CPU entropy into every call (about 350 ns on
//!   AMD EPYC, against about 110 ns to seal 100 bytes).
//!
//! The sequence lives in memory only as long as a loaded data key (one vault operation), and
//! Custodia never forks; a process that forked while holding one would repeat nonces, which is
//! why the sequence is not `Clone`.
//!
//! Associated data is a sequence of length-prefixed parts (8-byte big-endian length, then the
//! bytes), starting with a label naming the kind of object and its format version. Length
//! prefixes make the encoding injective: no two different contexts give the same bytes, so
//! `("ab", "c")` cannot stand in for `("a", "bc")`.

use std::sync::atomic::{AtomicU32, Ordering};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::error::CryptoError;
use crate::secret::{KEY_LEN, SecretKey, fill_random};

/// Format version of everything sealed by this module.
const VERSION_1: u8 = 1;
const NONCE_LEN: usize = aws_lc_rs::aead::NONCE_LEN;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + NONCE_LEN;
/// Bytes a sealed message adds to its plaintext.
pub(crate) const OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// Associated data up to this size is built on the stack, so sealing a field allocates only its
/// output. Typical field contexts (UUIDs and dotted category keys) take about 150 bytes.
const INLINE_AAD: usize = 512;

/// Prepares the AES-256-GCM key schedule once, for every message sealed under `key`.
///
/// AWS-LC cleanses the context's memory when the returned key is dropped.
pub(crate) fn cipher(key: &SecretKey) -> Result<LessSafeKey, CryptoError> {
    UnboundKey::new(&AES_256_GCM, key.expose())
        .map(LessSafeKey::new)
        .map_err(|_| CryptoError::Backend)
}

/// The deterministic nonce construction for one loaded key (see the module doc).
#[derive(Debug)]
pub(crate) struct NonceSequence {
    fixed: [u8; 8],
    next: AtomicU32,
}

impl NonceSequence {
    /// A sequence with a fresh random fixed field.
    pub(crate) fn new() -> Result<Self, CryptoError> {
        let mut fixed = [0; 8];
        fill_random(&mut fixed)?;
        Ok(Self {
            fixed,
            next: AtomicU32::new(0),
        })
    }

    /// Moves the counter, to test exhaustion without sealing 2³² times.
    #[cfg(test)]
    pub(crate) fn force_next_for_tests(&self, next: u32) {
        self.next.store(next, Ordering::Relaxed);
    }

    /// The next nonce; refuses once the counter would wrap.
    pub(crate) fn next(&self) -> Result<[u8; NONCE_LEN], CryptoError> {
        let invocation = self
            .next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1))
            .map_err(|_| CryptoError::NoncesExhausted)?;
        let mut nonce = [0; NONCE_LEN];
        for (dst, src) in nonce
            .iter_mut()
            .zip(self.fixed.iter().chain(&invocation.to_be_bytes()))
        {
            *dst = *src;
        }
        Ok(nonce)
    }
}

/// Seals `plaintext` with a fresh random nonce, in one allocation of the exact final size.
pub(crate) fn seal(
    cipher: &LessSafeKey,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut nonce = [0; NONCE_LEN];
    fill_random(&mut nonce)?;
    seal_with_nonce(cipher, nonce, aad, plaintext)
}

/// Seals `plaintext` under `nonce`, which the caller guarantees is unique for the key.
pub(crate) fn seal_with_nonce(
    cipher: &LessSafeKey,
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let capacity = plaintext
        .len()
        .checked_add(OVERHEAD)
        .ok_or(CryptoError::Backend)?;
    // The buffer holds plaintext until sealing succeeds; wipe it if sealing fails.
    let mut out = Zeroizing::new(Vec::with_capacity(capacity));
    out.push(VERSION_1);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let body = out.get_mut(HEADER_LEN..).ok_or(CryptoError::Backend)?;
    let tag = cipher
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), body)
        .map_err(|_| CryptoError::Backend)?;
    out.extend_from_slice(tag.as_ref());
    Ok(std::mem::take(&mut *out))
}

/// Opens a sealed message into a buffer wiped on drop.
pub(crate) fn open(
    cipher: &LessSafeKey,
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let (nonce, body, tag) = split(sealed)?;
    let mut out = Zeroizing::new(vec![0; body.len()]);
    cipher
        .open_separate_gather(nonce, Aad::from(aad), body, tag, &mut out)
        .map_err(|_| CryptoError::AuthenticationFailed)?;
    Ok(out)
}

/// Seals a key under another key.
pub(crate) fn wrap_key(
    cipher: &LessSafeKey,
    aad: &[u8],
    key: &SecretKey,
) -> Result<Vec<u8>, CryptoError> {
    seal(cipher, aad, key.expose())
}

/// Opens a key sealed by [`wrap_key`], without the plaintext ever reaching the heap.
pub(crate) fn unwrap_key(
    cipher: &LessSafeKey,
    aad: &[u8],
    wrapped: &[u8],
) -> Result<SecretKey, CryptoError> {
    let (nonce, body, tag) = split(wrapped)?;
    if body.len() != KEY_LEN {
        return Err(CryptoError::Malformed {
            reason: "a wrapped key has the wrong length",
        });
    }
    let mut out = Zeroizing::new([0; KEY_LEN]);
    cipher
        .open_separate_gather(nonce, Aad::from(aad), body, tag, out.as_mut_slice())
        .map_err(|_| CryptoError::AuthenticationFailed)?;
    Ok(SecretKey::from_bytes(*out))
}

/// Splits a sealed message into nonce, ciphertext and tag, checking only its structure.
fn split(sealed: &[u8]) -> Result<(Nonce, &[u8], &[u8]), CryptoError> {
    let Some((&version, rest)) = sealed.split_first() else {
        return Err(CryptoError::Malformed { reason: "empty" });
    };
    if version != VERSION_1 {
        return Err(CryptoError::Malformed {
            reason: "unknown format version",
        });
    }
    let too_short = CryptoError::Malformed {
        reason: "shorter than nonce and tag",
    };
    let Some((nonce, rest)) = rest.split_at_checked(NONCE_LEN) else {
        return Err(too_short);
    };
    let Some(body_len) = rest.len().checked_sub(TAG_LEN) else {
        return Err(too_short);
    };
    let Some((body, tag)) = rest.split_at_checked(body_len) else {
        return Err(too_short);
    };
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| too_short)?;
    Ok((nonce, body, tag))
}

/// Encodes `label` and `parts` as associated data (see the module doc) and passes it to `f`.
pub(crate) fn with_aad<R>(
    label: &[u8],
    parts: &[&[u8]],
    f: impl FnOnce(&[u8]) -> Result<R, CryptoError>,
) -> Result<R, CryptoError> {
    let total = std::iter::once(label)
        .chain(parts.iter().copied())
        .try_fold(0_usize, |sum, part| {
            sum.checked_add(PREFIX_LEN)?.checked_add(part.len())
        })
        .ok_or(CryptoError::Backend)?;
    if total <= INLINE_AAD {
        let mut buf = [0; INLINE_AAD];
        let written = encode(&mut buf, label, parts).ok_or(CryptoError::Backend)?;
        f(written)
    } else {
        let mut buf = vec![0; total];
        let written = encode(&mut buf, label, parts).ok_or(CryptoError::Backend)?;
        f(written)
    }
}

/// The encoding of `label` and `parts` (see the module doc) as an owned buffer, for associated
/// data reused across many messages, such as every chunk of a media stream.
pub(crate) fn aad_vec(label: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>, CryptoError> {
    with_aad(label, parts, |aad| Ok(aad.to_vec()))
}

const PREFIX_LEN: usize = 8;

/// Writes the encoding into `buf` and returns the written prefix of it; `None` if it does not fit.
fn encode<'b>(buf: &'b mut [u8], label: &[u8], parts: &[&[u8]]) -> Option<&'b [u8]> {
    let capacity = buf.len();
    let mut rest: &mut [u8] = buf;
    for part in std::iter::once(label).chain(parts.iter().copied()) {
        let prefix = u64::try_from(part.len()).ok()?.to_be_bytes();
        for chunk in [prefix.as_slice(), part] {
            let (head, tail) = std::mem::take(&mut rest).split_at_mut_checked(chunk.len())?;
            head.copy_from_slice(chunk);
            rest = tail;
        }
    }
    let written = capacity - rest.len();
    buf.get(..written)
}
