//! Opaque identifiers: 128 random bits, written with a type prefix (`sub_…`, `rec_…`, `key_…`) so
//! an id of one kind is never mistaken for another. They carry no personal data and are the
//! pseudonymous ids that logs, metrics and audit entries use.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The kind of thing an [`Id`] names.
pub trait IdKind {
    /// The text prefix, such as `sub`.
    const PREFIX: &'static str;
}

/// Marks subject ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubjectKind {}
impl IdKind for SubjectKind {
    const PREFIX: &'static str = "sub";
}

/// Marks record ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKind {}
impl IdKind for RecordKind {
    const PREFIX: &'static str = "rec";
}

/// Marks key ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyKind {}
impl IdKind for KeyKind {
    const PREFIX: &'static str = "key";
}

/// Marks consent-ledger event ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConsentKind {}
impl IdKind for ConsentKind {
    const PREFIX: &'static str = "con";
}

/// Marks API key ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ApiKeyKind {}
impl IdKind for ApiKeyKind {
    const PREFIX: &'static str = "api";
}

/// Marks legal-hold ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HoldKind {}
impl IdKind for HoldKind {
    const PREFIX: &'static str = "hold";
}

/// A 128-bit random identifier of kind `K`.
#[derive(PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id<K> {
    bytes: [u8; 16],
    kind: PhantomData<K>,
}

/// Marks media-object ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MediaKind {}
impl IdKind for MediaKind {
    const PREFIX: &'static str = "med";
}

/// Marks processing-lease ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LeaseKind {}
impl IdKind for LeaseKind {
    const PREFIX: &'static str = "lease";
}

/// Marks data-subject request ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequestKind {}
impl IdKind for RequestKind {
    const PREFIX: &'static str = "req";
}

/// Marks disclosure ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DisclosureKind {}
impl IdKind for DisclosureKind {
    const PREFIX: &'static str = "dis";
}

/// Marks outbox notification ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NotificationKind {}
impl IdKind for NotificationKind {
    const PREFIX: &'static str = "ntf";
}

/// A subject's id.
pub type SubjectId = Id<SubjectKind>;
/// A record's id.
pub type RecordId = Id<RecordKind>;
/// A key's id.
pub type KeyId = Id<KeyKind>;
/// A consent-ledger event's id.
pub type ConsentId = Id<ConsentKind>;
/// An API key's id.
pub type ApiKeyId = Id<ApiKeyKind>;
/// A legal hold's id.
pub type HoldId = Id<HoldKind>;
/// A media object's id.
pub type MediaId = Id<MediaKind>;
/// A processing lease's id.
pub type LeaseId = Id<LeaseKind>;
/// A data-subject request's id.
pub type RequestId = Id<RequestKind>;
/// A disclosure's id.
pub type DisclosureId = Id<DisclosureKind>;
/// An outbox notification's id.
pub type NotificationId = Id<NotificationKind>;

/// Text that is not an id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {expected} id: expected `{expected}_` followed by 32 hex digits")]
pub struct IdError {
    /// The expected prefix.
    pub expected: &'static str,
}

/// Randomness failed; the operating system could not supply entropy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the operating system's random source failed")]
pub struct RandomError;

impl<K> Clone for Id<K> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K> Copy for Id<K> {}

impl<K: IdKind> Id<K> {
    /// A fresh random id.
    pub fn random() -> Result<Self, RandomError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|_| RandomError)?;
        Ok(Self::from_bytes(bytes))
    }

    /// A fresh id whose first 48 bits are `at` in milliseconds (big-endian) and whose other 80
    /// bits are random, so ids made later sort later and land together in indexes.
    pub fn ordered(at: crate::Timestamp) -> Result<Self, RandomError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|_| RandomError)?;
        let millis = u64::try_from(at.as_millis()).unwrap_or(0).to_be_bytes();
        for (dst, src) in bytes.iter_mut().zip(millis.iter().skip(2)) {
            *dst = *src;
        }
        Ok(Self::from_bytes(bytes))
    }

    /// From raw bytes (for storage round trips).
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self {
            bytes,
            kind: PhantomData,
        }
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.bytes
    }
}

impl<K: IdKind> fmt::Display for Id<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Ids are formatted on every audit entry and response: one write, not sixteen.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; 32];
        for (pair, byte) in hex.chunks_exact_mut(2).zip(self.bytes) {
            if let [high, low] = pair {
                *high = HEX.get(usize::from(byte >> 4)).copied().unwrap_or(b'0');
                *low = HEX.get(usize::from(byte & 0x0f)).copied().unwrap_or(b'0');
            }
        }
        f.write_str(K::PREFIX)?;
        f.write_str("_")?;
        f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

impl<K: IdKind> fmt::Debug for Id<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<K: IdKind> FromStr for Id<K> {
    type Err = IdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = IdError {
            expected: K::PREFIX,
        };
        let hex = text
            .strip_prefix(K::PREFIX)
            .and_then(|rest| rest.strip_prefix('_'))
            .ok_or_else(|| err.clone())?;
        if hex.len() != 32 {
            return Err(err);
        }
        // Every request names ids: decode the digits directly rather than through a parser.
        let nibble = |digit: u8| match digit {
            b'0'..=b'9' => Some(digit - b'0'),
            b'a'..=b'f' => Some(digit - b'a' + 10),
            b'A'..=b'F' => Some(digit - b'A' + 10),
            _ => None,
        };
        let mut bytes = [0u8; 16];
        for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            let [high, low] = *pair else {
                return Err(err);
            };
            match (nibble(high), nibble(low)) {
                (Some(high), Some(low)) => *byte = (high << 4) | low,
                _ => return Err(err),
            }
        }
        Ok(Self::from_bytes(bytes))
    }
}

impl<K: IdKind> Serialize for Id<K> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de, K: IdKind> Deserialize<'de> for Id<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Parses the text where it lies when the format lends it (no copy), else a copy.
        struct Text<K>(PhantomData<K>);

        impl<K: IdKind> serde::de::Visitor<'_> for Text<K> {
            type Value = Id<K>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a string id `{}_<32 hex digits>`", K::PREFIX)
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
                text.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_str(Text(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text_and_refuses_other_kinds() {
        let id = SubjectId::random().unwrap();
        let text = id.to_string();
        assert!(text.starts_with("sub_") && text.len() == 36);
        assert_eq!(text.parse::<SubjectId>().unwrap(), id);
        assert!(text.replacen("sub", "rec", 1).parse::<SubjectId>().is_err());
        assert!(text.parse::<RecordId>().is_err());
        assert!("sub_zz".parse::<SubjectId>().is_err());
        assert_ne!(SubjectId::random().unwrap(), id);
    }

    #[test]
    fn ordered_ids_sort_by_time_and_stay_unique() {
        let t = |ms| crate::Timestamp::from_millis(ms);
        let early = RecordId::ordered(t(1_000)).unwrap();
        let late = RecordId::ordered(t(2_000)).unwrap();
        assert!(early < late);
        assert_ne!(RecordId::ordered(t(1_000)).unwrap(), early);
        assert_eq!(&early.as_bytes()[..6], &1_000u64.to_be_bytes()[2..]);
    }
}
