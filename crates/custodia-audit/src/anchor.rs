//! [`Anchor`]: a `(seq, hash)` pair naming one point of the chain.
//!
//! Anchors serve two ends. Verification of a suffix starts from a trusted anchor instead of
//! genesis. And an operator who writes the current head down somewhere the database's writers
//! cannot reach (a ticket, a transparency report, another system's log) can later prove that the
//! chain still contains that point unchanged, which is the only way to detect a removed tail or
//! a chain rewritten from some point on: a bare hash chain carries no secret, so whoever can write
//! the table can recompute every hash after the one they changed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::canonical::GENESIS_HASH;
use crate::error::AuditError;
use crate::hex;

/// One point of the chain: the entry at `seq` has hash `hash`. Seq 0 with [`GENESIS_HASH`] is
/// the point before the first entry.
///
/// Its text form, `SEQ:HASH` such as `10000:9f86…`, is what an operator copies and keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Anchor {
    /// The entry's seq; 0 for the empty chain.
    pub seq: u64,
    /// The entry's hash, hex in serialised form.
    #[serde(with = "crate::hex::serde32")]
    pub hash: [u8; 32],
}

impl Anchor {
    /// The point before the first entry.
    pub const GENESIS: Anchor = Anchor {
        seq: 0,
        hash: GENESIS_HASH,
    };

    /// The anchor at `seq` with `hash`.
    pub const fn new(seq: u64, hash: [u8; 32]) -> Self {
        Self { seq, hash }
    }

    /// The hash in lower-case hex.
    pub fn hash_hex(&self) -> String {
        hex::encode(&self.hash)
    }
}

impl Default for Anchor {
    fn default() -> Self {
        Self::GENESIS
    }
}

impl From<(u64, [u8; 32])> for Anchor {
    fn from((seq, hash): (u64, [u8; 32])) -> Self {
        Self { seq, hash }
    }
}

impl From<Anchor> for (u64, [u8; 32]) {
    fn from(a: Anchor) -> Self {
        (a.seq, a.hash)
    }
}

impl fmt::Display for Anchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash_hex())
    }
}

impl FromStr for Anchor {
    type Err = AuditError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (seq, hash) = text.split_once(':').ok_or(AuditError::InvalidAnchor {
            reason: "missing `:` between seq and hash",
        })?;
        // `u64::from_str` accepts a leading `+`; an anchor is copied by hand, keep one spelling.
        if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AuditError::InvalidAnchor {
                reason: "the seq is not a decimal number",
            });
        }
        let seq = seq.parse::<u64>().map_err(|_| AuditError::InvalidAnchor {
            reason: "the seq is too large",
        })?;
        let hash = hex::decode32(hash).map_err(|e| AuditError::InvalidAnchor { reason: e.0 })?;
        Ok(Self { seq, hash })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip() {
        let a = Anchor::new(10_000, std::array::from_fn(|i| i as u8));
        let text = a.to_string();
        assert_eq!(
            text,
            "10000:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
        );
        assert_eq!(text.parse::<Anchor>().unwrap(), a);
        assert_eq!(format!("  {text}\n").parse::<Anchor>().unwrap(), a);
    }

    #[test]
    fn serde_uses_hex() {
        let a = Anchor::new(3, [0xff; 32]);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, format!(r#"{{"seq":3,"hash":"{}"}}"#, "ff".repeat(32)));
        assert_eq!(serde_json::from_str::<Anchor>(&json).unwrap(), a);
        assert!(serde_json::from_str::<Anchor>(r#"{"seq":3,"hash":"ff"}"#).is_err());
    }

    #[test]
    fn rejects_malformed_text() {
        let hash = "0".repeat(64);
        for bad in [
            String::new(),
            hash.clone(),
            format!(":{hash}"),
            format!("+1:{hash}"),
            format!("-1:{hash}"),
            format!("1:{}", &hash[1..]),
            format!("99999999999999999999:{hash}"),
            "1:xyz".to_owned(),
        ] {
            let err = bad.parse::<Anchor>().unwrap_err();
            assert_eq!(err.code(), "audit.invalid_anchor", "{bad:?}");
        }
    }
}
