//! Lower-case hexadecimal for 32-byte hashes, and the serde adapter that writes hashes as hex
//! strings. Kept in-crate because the audit chain needs only these two directions for one size,
//! which is less code than a dependency's feature set to review.

use std::fmt::Write as _;

/// A string that is not 64 hexadecimal digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HexError(pub(crate) &'static str);

/// Lower-case hex of `bytes`.
pub(crate) fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Parses exactly 64 hex digits, either case.
pub(crate) fn decode32(text: &str) -> Result<[u8; 32], HexError> {
    if text.len() != 64 {
        return Err(HexError("a hash is 64 hexadecimal digits"));
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let (hi, lo) = match pair {
            [hi, lo] => (nibble(*hi)?, nibble(*lo)?),
            _ => return Err(HexError("a hash is 64 hexadecimal digits")),
        };
        *byte = (hi << 4) | lo;
    }
    Ok(out)
}

fn nibble(c: u8) -> Result<u8, HexError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(HexError("not a hexadecimal digit")),
    }
}

/// `#[serde(with = "crate::hex::serde32")]`: a `[u8; 32]` as a 64-digit hex string, because a
/// JSON array of 32 numbers is unreadable in an export and easy to mistype in a ticket.
pub(crate) mod serde32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(hash: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::encode(hash))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        super::decode32(&text).map_err(|e| serde::de::Error::custom(e.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let bytes: [u8; 32] = std::array::from_fn(|i| (i * 8 + 1) as u8);
        let text = encode(&bytes);
        assert_eq!(text.len(), 64);
        assert_eq!(decode32(&text), Ok(bytes));
        assert_eq!(decode32(&text.to_uppercase()), Ok(bytes));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(decode32("").is_err());
        assert!(decode32(&"0".repeat(63)).is_err());
        assert!(decode32(&"0".repeat(65)).is_err());
        assert!(decode32(&format!("{}g", "0".repeat(63))).is_err());
        // A multi-byte character must not be split into a false "pair".
        assert!(decode32(&format!("{}é", "0".repeat(62))).is_err());
    }
}
