//! Object keys: parsed once, valid everywhere. A key is a `/`-separated path of segments made
//! only of ASCII letters, digits, `-`, `_` and `.`, none starting with a dot. That one rule is
//! what makes keys safe as file system paths (no `..`, no hidden or temporary names, no
//! separators of any platform) and as S3 object names (nothing to percent-encode), and it keeps
//! anything but identifiers out of them: keys appear in logs and errors.

use std::fmt;
use std::str::FromStr;

use crate::ObjectError;

/// The longest key, in bytes: S3's limit on object names, less room for a store's prefix.
pub const MAX_KEY_LEN: usize = 512;

/// The longest segment, in bytes: file systems cap a name at 255 bytes.
pub const MAX_SEGMENT_LEN: usize = 200;

/// The most segments a key has: keeps file system trees shallow and listing bounded.
pub const MAX_SEGMENTS: usize = 8;

/// A validated object key such as `media/sub_0123…/obj_4567…`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Parses a key, refusing anything outside the safe alphabet (see the module docs).
    pub fn new(key: impl Into<String>) -> Result<Self, ObjectError> {
        let key = key.into();
        validate(&key)?;
        Ok(Self(key))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key's segments, in order.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// This key with one more segment, e.g. a subject's prefix plus an object id.
    pub fn child(&self, segment: &str) -> Result<Self, ObjectError> {
        Self::new(format!("{}/{segment}", self.0))
    }

    /// Whether `self` lies strictly under `prefix`, segment by segment (`media/a` is under
    /// `media` but not under `med`).
    pub fn is_under(&self, prefix: &ObjectKey) -> bool {
        self.0
            .strip_prefix(prefix.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ObjectKey {
    type Err = ObjectError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for ObjectKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Whether `segment` is one valid key segment.
pub(crate) fn is_valid_segment(segment: &str) -> bool {
    segment_error(segment).is_none()
}

fn segment_error(segment: &str) -> Option<&'static str> {
    if segment.is_empty() {
        return Some("a key has an empty segment (leading, trailing or doubled '/')");
    }
    if segment.len() > MAX_SEGMENT_LEN {
        return Some("a key segment is longer than 200 bytes");
    }
    if segment.starts_with('.') {
        // Also refuses `.` and `..`, and the file store's temporary names.
        return Some("a key segment starts with '.'");
    }
    if !segment
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Some("a key may hold only ASCII letters, digits, '-', '_', '.' and '/'");
    }
    None
}

// The reasons never quote the input: a caller could pass a value where an id belongs, and error
// messages must not carry values.
fn validate(key: &str) -> Result<(), ObjectError> {
    let invalid = |reason| Err(ObjectError::InvalidKey { reason });
    if key.is_empty() {
        return invalid("a key is empty");
    }
    if key.len() > MAX_KEY_LEN {
        return invalid("a key is longer than 512 bytes");
    }
    let mut count = 0;
    for segment in key.split('/') {
        count += 1;
        if count > MAX_SEGMENTS {
            return invalid("a key has more than 8 segments");
        }
        if let Some(reason) = segment_error(segment) {
            return invalid(reason);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ids_and_dotted_names() {
        for key in [
            "a",
            "media/sub_0123456789abcdef/obj_00ff",
            "media/x/chunk.0001.bin",
            "A-Z_0-9",
        ] {
            assert_eq!(ObjectKey::new(key).unwrap().as_str(), key);
        }
    }

    #[test]
    fn refuses_traversal_and_odd_characters() {
        let long_segment = "a".repeat(MAX_SEGMENT_LEN + 1);
        let long_key = ["abcdefghij"; 50].join("/");
        let deep_key = ["a"; MAX_SEGMENTS + 1].join("/");
        for key in [
            "",
            "/",
            "/a",
            "a/",
            "a//b",
            ".",
            "..",
            "a/../b",
            "a/./b",
            "../a",
            ".hidden",
            "a/.tmp",
            "a\\b",
            "a b",
            "a:b",
            "a%2Fb",
            "é",
            "a\0b",
            "a\nb",
            "C:/x",
            long_segment.as_str(),
            long_key.as_str(),
            deep_key.as_str(),
        ] {
            let err = ObjectKey::new(key).unwrap_err();
            assert_eq!(err.code(), "objects.invalid_key", "{key:?}");
            assert!(key.len() < 3 || !err.to_string().contains(key), "{key:?}");
        }
    }

    #[test]
    fn under_is_by_segment() {
        let key = ObjectKey::new("media/abc/1").unwrap();
        assert!(key.is_under(&ObjectKey::new("media").unwrap()));
        assert!(key.is_under(&ObjectKey::new("media/abc").unwrap()));
        assert!(!key.is_under(&ObjectKey::new("media/ab").unwrap()));
        assert!(!key.is_under(&ObjectKey::new("media/abc/1").unwrap()));
        assert_eq!(
            ObjectKey::new("media")
                .unwrap()
                .child("abc")
                .unwrap()
                .as_str(),
            "media/abc"
        );
        assert!(ObjectKey::new("media").unwrap().child("..").is_err());
    }
}
