//! Object storage for encrypted media, behind the [`ObjectStore`] trait: the local file system
//! ([`FsObjectStore`], the embedded default) and any S3-compatible store ([`S3ObjectStore`],
//! through the `object_store` crate), chosen by URL with [`open_url`]. The `conformance`
//! suite (feature `conformance`) proves both behave the same.
//!
//! Objects are opaque bytes: the media layer encrypts before [`ObjectStore::put`] and decrypts
//! after [`ObjectStore::get`], so a store only ever holds ciphertext. What a store guarantees:
//! - a put is atomic: until it returns `Ok`, readers see the previous object (or none), and a
//!   put that fails, whether the source breaks, the store refuses or the process dies, leaves
//!   nothing under the key;
//! - puts and gets stream: memory stays flat whatever the object's size (four 1 MiB buffers on the
//!   file system, two multipart parts on S3);
//! - deletes are idempotent, so a retried erasure never fails for having half-succeeded.
//!
//! The trait is synchronous like the vault, which runs on blocking threads; the S3 backend
//! drives its async client on a runtime of its own (see `bridge`).

mod bridge;
pub mod error;
pub mod fs;
pub mod key;
pub mod s3;

#[cfg(feature = "conformance")]
pub mod conformance;

use std::io::Read;
use std::sync::Arc;

pub use error::ObjectError;
pub use fs::FsObjectStore;
pub use key::ObjectKey;
pub use s3::{S3ObjectStore, S3Options};

/// A stream of an object's bytes.
pub type ObjectReader = Box<dyn Read + Send>;

/// What a successful [`ObjectStore::put`] stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PutReceipt {
    /// The object's size in bytes.
    pub size: u64,
}

/// A store of opaque objects under validated keys.
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// Stores everything `source` yields under `key`, replacing any object there, atomically:
    /// on any error (including `source` failing, [`ObjectError::Source`]) the key keeps what
    /// it had before. Reads `source` in chunks; memory does not grow with the object's size.
    fn put(&self, key: &ObjectKey, source: &mut dyn Read) -> Result<PutReceipt, ObjectError>;

    /// The whole object, streamed. [`ObjectError::NotFound`] when there is none.
    fn get(&self, key: &ObjectKey) -> Result<ObjectReader, ObjectError>;

    /// `len` bytes from `start`, fewer when the object ends first (none when `start` is its
    /// size). [`ObjectError::InvalidRange`] when `start` is past the end.
    fn get_range(&self, key: &ObjectKey, start: u64, len: u64)
    -> Result<ObjectReader, ObjectError>;

    /// The object's size, `None` when there is none.
    fn size(&self, key: &ObjectKey) -> Result<Option<u64>, ObjectError>;

    /// Deletes the object; deleting a missing object succeeds.
    fn delete(&self, key: &ObjectKey) -> Result<(), ObjectError>;

    /// Every key strictly under `prefix` by segments (`media/a` lists `media/a/1`, not
    /// `media/ab/1`), sorted.
    fn list(&self, prefix: &ObjectKey) -> Result<Vec<ObjectKey>, ObjectError>;
}

/// Opens the store a URL names: `s3://bucket/prefix?…` (see [`S3ObjectStore::connect`]) or a
/// directory, as `file:DIR`, `file:///abs/dir` or a plain path (see [`FsObjectStore::open`]).
/// Errors never quote the URL: it may carry credentials.
pub fn open_url(url: &str) -> Result<Arc<dyn ObjectStore>, ObjectError> {
    if url.starts_with("s3://") {
        return Ok(Arc::new(S3ObjectStore::connect(
            url,
            &S3Options::default(),
        )?));
    }
    if let Some(rest) = url.strip_prefix("file:") {
        // `file:///abs` and `file://localhost/abs` are URLs; `file:dir` is a bare path.
        let path = match rest.strip_prefix("//") {
            Some(authority_and_path) => {
                let (authority, path) = authority_and_path
                    .find('/')
                    .map_or((authority_and_path, ""), |slash| {
                        authority_and_path.split_at(slash)
                    });
                if !(authority.is_empty() || authority == "localhost") {
                    return Err(ObjectError::invalid_config(
                        "a file: URL must name a local path (file:///dir or file:dir)",
                    ));
                }
                path
            }
            None => rest,
        };
        if path.is_empty() {
            return Err(ObjectError::invalid_config(
                "a file: URL names no directory",
            ));
        }
        return Ok(Arc::new(FsObjectStore::open(path)?));
    }
    if url.contains("://") {
        return Err(ObjectError::invalid_config(
            "unsupported object store URL scheme (expected s3://, file: or a path)",
        ));
    }
    if url.is_empty() {
        return Err(ObjectError::invalid_config("the object store URL is empty"));
    }
    Ok(Arc::new(FsObjectStore::open(url)?))
}

/// Reads `source` until `buffer` is full or the source ends, and returns what was read (empty
/// at the end). Failures are the source's: [`ObjectError::Source`].
pub(crate) fn fill<'b>(
    source: &mut dyn Read,
    buffer: &'b mut [u8],
) -> Result<&'b [u8], ObjectError> {
    let mut filled = 0;
    while let Some(rest) = buffer.get_mut(filled..).filter(|rest| !rest.is_empty()) {
        match source.read(rest) {
            Ok(0) => break,
            Ok(read) if read <= rest.len() => filled += read,
            Ok(_) => {
                return Err(ObjectError::Source(std::io::Error::other(
                    "the source reported reading more bytes than it was given room for",
                )));
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(ObjectError::Source(err)),
        }
    }
    Ok(buffer.get(..filled).unwrap_or_default())
}
