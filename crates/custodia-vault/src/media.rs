//! Media custody: uploaded and generated files (audio, images, video) kept encrypted in object
//! storage under the policy, with their own lifecycle (uploaded, leased for processing,
//! processed, expired).
//!
//! This module owns everything between a media body and [`ObjectStore`]:
//!
//! - **Upload** ([`Vault::upload_media`]): the row is registered [`MediaState::Pending`] first
//!   (unaudited: nothing is held yet), then the body streams through a counting (and, when the
//!   client announced a digest, SHA-256) reader and a [`SealingReader`] straight into
//!   [`ObjectStore::put`]: memory stays at a few chunks whatever the file's size. A body that
//!   ends short of `expected_len`, runs past it, fails midway or does not match
//!   `expected_sha256` fails the put itself, so the store keeps nothing; the pending row is then
//!   deleted. Only a complete object becomes [`MediaState::Stored`], with its expiry and a
//!   `media_stored` audit entry, in one commit.
//! - **Keys**: every object is sealed under a fresh object key, wrapped (bound to the object
//!   id) by its subject's data key, or by the subject's statutory key when the category's
//!   retention rule is statutory, as records are. Destroying the subject's key therefore makes
//!   every object unreadable at once, wherever its bytes are.
//! - **Download** ([`Vault::download_media`]): the gate decides first; a denial reads nothing.
//!   An allowed read is audited (`record_read`, the media id as record) and streams verified
//!   plaintext: every chunk is authenticated (STREAM) before a byte of it is returned, ranged
//!   reads fetch only the chunks they cover ([`StreamOpener::open_range_with_owned_key`] over
//!   [`ObjectStore::get_range`]), and a large read fetches its next chunks on a thread of its
//!   own while it opens the current ones.
//! - **Leases** ([`Vault::lease_media`], [`Vault::read_leased`], [`Vault::attach_output`],
//!   [`Vault::complete_processing`], [`Vault::release_lease`]): a service key takes a lease for
//!   one purpose (the gate decides, as for a download), reads the input, attaches outputs and
//!   completes; completion starts the clock of `processed` retention rules, and an input kept
//!   "until processed" (`keep = "0s"`) is crypto-shredded, its bytes deleted and its row removed
//!   before the call returns. Only API keys hold leases: the operator's own tools
//!   ([`Caller::operator`], no key) cannot, since a lease names its holder.
//! - **Deletion** ([`Vault::delete_media`], completion, the sweeper, erasure) always runs in the
//!   same crash-safe order: the row becomes [`MediaState::Deleting`] with its wrapped key
//!   emptied, audited, in one commit; then the bytes are deleted (idempotently); then the row. A
//!   crash anywhere leaves a `Deleting` row the next sweep finishes (see [`crate::sweep`]).
//!
//! # Errors while streaming a download
//!
//! [`MediaDownload::reader`] is a plain [`Read`]; its failures are [`io::Error`]s that carry a
//! [`VaultError`] inside: [`VaultError::from_io`] takes it out again with its stable code
//! (`crypto.authentication_failed` for an altered object, `crypto.truncated` for one cut short,
//! `media.gone` when its bytes have disappeared, `objects.*` for storage failures). A stream that
//! fails keeps failing; treat everything it returned as failed too.
//!
//! What is not here: records whose category has a `processed` rule are left alone when an
//! input is processed (records have no processing lifecycle); holds never block an explicit
//! deletion ([`Vault::delete_media`]) or an erasure, only the sweeper and the automatic deletion
//! at completion, like records.

use std::io::{self, BufRead, Read};
use std::ops::Range;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use aws_lc_rs::digest;
use custodia_audit::EventKind;
use custodia_core::{LeaseId, MediaId, SubjectId, Timestamp};
use custodia_crypto::stream::{CHUNK_OVERHEAD, HEADER_LEN};
use custodia_crypto::{ChunkSize, CryptoError, DataKey, FieldContext, SealingReader, StreamOpener};
use custodia_objects::{ObjectError, ObjectReader, ObjectStore};
use custodia_policy::model::Trigger;
use custodia_store::{
    LeaseRow, MediaRow, MediaState, MediaUpdate, Mutation, StoreError, SubjectUpdate, WriteBatch,
};
use zeroize::{Zeroize, Zeroizing};

use crate::error::VaultError;
use crate::gate::{Ask, Caller, Gated};
use crate::retention::{self, Lifecycle};
use crate::sweep::SweepReport;
use crate::vault::{Progress, Vault};

/// A media object's own key (the crypto crate's `ObjectKey`), not an object-storage key.
type MediaKey = custodia_crypto::ObjectKey;
/// Where an object's sealed bytes are in object storage.
type Location = custodia_objects::ObjectKey;

/// The longest content type, in characters.
pub const MAX_CONTENT_TYPE_LEN: usize = 100;

/// The shortest processing lease.
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(1);

/// The longest processing lease: a lease is the gate's allowance for its whole term, so the term
/// stays short enough for a withdrawn consent to take effect within a day.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// How old (by the vault's clock) a [`MediaState::Pending`] upload must be before the sweeper
/// treats it as abandoned (the uploading process died) and deletes its bytes, if any, and its
/// row. No upload takes a day; one that did would fail at its end and store nothing.
pub const ABANDONED_UPLOAD_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// Chunks a download opens before it is returned (256 KiB of plaintext at the default chunk
/// size), so that an object missing from storage or altered at its start fails the call rather
/// than the stream.
const SEGMENT_CHUNKS: u64 = 4;

/// A download reads the stored chunks in blocks of whole sealed chunks of about this size (16
/// chunks at the default chunk size): one read per megabyte, flat memory.
const READ_AHEAD_BLOCK: u64 = 1024 * 1024;

/// A download fetching more than this many blocks reads them ahead on a thread of its own
/// (smaller ones are not worth starting a thread for)...
const READ_AHEAD_MIN_BLOCKS: u64 = 2;

/// ...keeping at most this many blocks read and waiting.
const READ_AHEAD_DEPTH: usize = 2;

// Widening casts of small constants; `u64::try_from` is not const.
const HEADER_LEN_U64: u64 = HEADER_LEN as u64;
const CHUNK_OVERHEAD_U64: u64 = CHUNK_OVERHEAD as u64;

/// A media object to store.
#[derive(Debug, Clone, Copy)]
pub struct NewMedia<'a> {
    /// The policy category.
    pub category: &'a str,
    /// The purpose it is collected for; it must cover the category. For an output attached
    /// under a lease it must be the lease's purpose.
    pub purpose: &'a str,
    /// The declared content type, a MIME token `type/subtype` of at most 100 characters
    /// (parameters such as `; charset=` are refused: they are not needed and could carry text).
    pub content_type: &'a str,
    /// The length the client announced: a body of any other length stores nothing.
    pub expected_len: Option<u64>,
    /// The SHA-256 digest the client announced: a body with any other digest stores nothing.
    pub expected_sha256: Option<[u8; 32]>,
}

/// A media object as the vault shows it: its row without key material or storage location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaInfo {
    /// The object's id.
    pub id: MediaId,
    /// Whose it is.
    pub subject: SubjectId,
    /// Its category.
    pub category: String,
    /// The purpose it was collected for.
    pub purpose: String,
    /// The declared content type.
    pub content_type: String,
    /// Plaintext length in bytes.
    pub size: u64,
    /// Lifecycle state.
    pub state: MediaState,
    /// The input this object is an output of, if it is one.
    pub parent: Option<MediaId>,
    /// When it was registered.
    pub created_at: Timestamp,
    /// When processing completed.
    pub processed_at: Option<Timestamp>,
    /// The retention rule that governs it.
    pub rule: String,
    /// When it expires; `None` while its rule's trigger has not happened.
    pub expires_at: Option<Timestamp>,
    /// Kept through an erasure, storage-only.
    pub statutory: bool,
}

impl From<&MediaRow> for MediaInfo {
    fn from(row: &MediaRow) -> Self {
        Self {
            id: row.id,
            subject: row.subject,
            category: row.category.clone(),
            purpose: row.purpose.clone(),
            content_type: row.content_type.clone(),
            size: row.size,
            state: row.state,
            parent: row.parent,
            created_at: row.created_at,
            processed_at: row.processed_at,
            rule: row.rule.clone(),
            expires_at: row.expires_at,
            statutory: row.statutory,
        }
    }
}

/// A byte range of a download, as HTTP `Range: bytes=` says it (RFC 9110 §14.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaRange {
    /// `bytes=start-` (`end: None`) or `bytes=start-end`, `end` inclusive and clamped to the
    /// object's last byte.
    From {
        /// The first byte.
        start: u64,
        /// The last byte, inclusive.
        end: Option<u64>,
    },
    /// `bytes=-n`: the last `n` bytes (the whole object when it is shorter).
    Last(u64),
}

impl MediaRange {
    /// The bytes this range selects of an object of `size` bytes, or `None` when it selects
    /// none (unsatisfiable: it starts at or past the end, ends before it starts, or asks for the
    /// last 0 bytes).
    #[must_use]
    pub fn resolve(self, size: u64) -> Option<Range<u64>> {
        match self {
            Self::From { start, end } => {
                if start >= size || end.is_some_and(|end| end < start) {
                    return None;
                }
                let end = end.map_or(size, |end| end.saturating_add(1).min(size));
                Some(start..end)
            }
            Self::Last(0) => None,
            Self::Last(_) if size == 0 => None,
            Self::Last(n) => Some(size.saturating_sub(n)..size),
        }
    }
}

/// A download: the object's metadata, the range returned and a stream of its plaintext.
pub struct MediaDownload {
    /// The object.
    pub info: MediaInfo,
    /// The bytes `reader` yields, as offsets into the object.
    pub range: Range<u64>,
    /// The object's whole length.
    pub total: u64,
    /// The whole object's SHA-256, when its uploader announced it (`Content-Digest`, checked at
    /// upload); the stream's authentication proves the bytes still match it.
    pub sha256: Option<[u8; 32]>,
    /// Verified plaintext of `range`. Errors are [`io::Error`]s carrying a [`VaultError`]; see
    /// [`VaultError::from_io`] and the module documentation.
    pub reader: Box<dyn Read + Send>,
}

impl std::fmt::Debug for MediaDownload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaDownload")
            .field("info", &self.info)
            .field("range", &self.range)
            .field("total", &self.total)
            .field("sha256", &self.sha256.is_some())
            .finish_non_exhaustive()
    }
}

/// What completing the processing of an input did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessingReport {
    /// The input.
    pub id: MediaId,
    /// When processing completed.
    pub processed_at: Timestamp,
    /// The retention rule that governs the input.
    pub rule: String,
    /// Its expiry now (for a deleted input, the moment it was deleted).
    pub expires_at: Option<Timestamp>,
    /// Whether it was deleted: shredded, its bytes and its row gone.
    pub deleted: bool,
    /// Whether a legal hold kept an input that was due at once; the sweeper deletes it when
    /// the hold ends.
    pub held: bool,
}

/// Why an upload's body was refused, recorded by [`CheckedBody`] for the error.
#[derive(Debug, Clone, Copy)]
enum BodyFault {
    /// The body ended short of the announced length, or failed midway.
    Truncated { received: u64 },
    /// The body ran past the announced length.
    TooLong { expected: u64 },
    /// The body's digest is not the announced one.
    Digest,
}

impl From<BodyFault> for VaultError {
    fn from(fault: BodyFault) -> Self {
        match fault {
            BodyFault::Truncated { received } => Self::MediaTruncated { received },
            BodyFault::TooLong { expected } => Self::MediaLengthMismatch { expected },
            BodyFault::Digest => Self::MediaDigestMismatch,
        }
    }
}

/// The upload body as the sealer reads it: counts it, hashes it when a digest was announced,
/// and turns a wrong length or digest into a read error *before* the end of the stream, so the
/// sealer never writes the final chunk and the store keeps nothing.
struct CheckedBody<'a> {
    inner: &'a mut dyn Read,
    expected_len: Option<u64>,
    expected_sha256: Option<[u8; 32]>,
    hasher: Option<digest::Context>,
    received: u64,
    fault: Option<BodyFault>,
    ended: bool,
}

impl<'a> CheckedBody<'a> {
    fn new(inner: &'a mut dyn Read, new: &NewMedia<'_>) -> Self {
        Self {
            inner,
            expected_len: new.expected_len,
            expected_sha256: new.expected_sha256,
            hasher: new
                .expected_sha256
                .map(|_| digest::Context::new(&digest::SHA256)),
            received: 0,
            fault: None,
            ended: false,
        }
    }

    fn refuse(&mut self, fault: BodyFault) -> io::Error {
        self.fault = Some(fault);
        io::Error::new(io::ErrorKind::InvalidData, VaultError::from(fault))
    }
}

impl Read for CheckedBody<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(fault) = self.fault {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                VaultError::from(fault),
            ));
        }
        if self.ended || buf.is_empty() {
            return Ok(0);
        }
        let read = match self.inner.read(buf) {
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => return Err(error),
            Err(_) => {
                let received = self.received;
                return Err(self.refuse(BodyFault::Truncated { received }));
            }
        };
        if read == 0 {
            if let Some(expected) = self.expected_len
                && self.received < expected
            {
                let received = self.received;
                return Err(self.refuse(BodyFault::Truncated { received }));
            }
            if let (Some(want), Some(hasher)) = (self.expected_sha256, self.hasher.take())
                && hasher.finish().as_ref() != want.as_slice()
            {
                return Err(self.refuse(BodyFault::Digest));
            }
            self.ended = true;
            return Ok(0);
        }
        let Some(got) = buf.get(..read) else {
            let received = self.received;
            return Err(self.refuse(BodyFault::Truncated { received }));
        };
        self.received = self.received.saturating_add(read as u64);
        if let Some(expected) = self.expected_len
            && self.received > expected
        {
            return Err(self.refuse(BodyFault::TooLong { expected }));
        }
        if let Some(hasher) = self.hasher.as_mut() {
            hasher.update(got);
        }
        Ok(read)
    }
}

/// Checks a declared content type: `type/subtype`, each a non-empty RFC 9110 token, at most
/// [`MAX_CONTENT_TYPE_LEN`] characters in all.
fn check_content_type(content_type: &str) -> Result<(), VaultError> {
    let token = |part: &str| {
        !part.is_empty()
            && part.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b'!' | b'#'
                            | b'$'
                            | b'%'
                            | b'&'
                            | b'\''
                            | b'*'
                            | b'+'
                            | b'-'
                            | b'.'
                            | b'^'
                            | b'_'
                            | b'`'
                            | b'|'
                            | b'~'
                    )
            })
    };
    let valid = content_type.len() <= MAX_CONTENT_TYPE_LEN
        && content_type
            .split_once('/')
            .is_some_and(|(kind, subtype)| token(kind) && token(subtype));
    if valid {
        Ok(())
    } else {
        Err(VaultError::Invalid {
            field: "content_type",
            reason: format!(
                "must be a MIME type `type/subtype` of at most {MAX_CONTENT_TYPE_LEN} characters, without parameters"
            ),
        })
    }
}

/// Seals an object's plaintext SHA-256 under the data key that wraps its key, bound to the
/// subject, the category and the object (`<id>#sha-256`), so it opens for this object only and
/// is gone with the subject's key.
fn seal_digest(
    data_key: &DataKey,
    row: &MediaRow,
    sha256: &[u8; 32],
) -> Result<Vec<u8>, VaultError> {
    let (subject, record) = digest_field(row);
    Ok(data_key.seal(&FieldContext::new(&subject, &row.category, &record), sha256)?)
}

/// The subject and record names a media object's digest is sealed under.
fn digest_field(row: &MediaRow) -> (String, String) {
    (row.subject.to_string(), format!("{}#sha-256", row.id))
}

/// The plaintext SHA-256 [`seal_digest`] sealed for `row`, if it has one. A sealed digest
/// that does not open is [`VaultError::MediaCorrupt`].
pub(crate) fn open_digest(
    data_key: &DataKey,
    row: &MediaRow,
) -> Result<Option<[u8; 32]>, VaultError> {
    if row.digest.is_empty() {
        return Ok(None);
    }
    let (subject, record) = digest_field(row);
    let opened = data_key
        .open(
            &FieldContext::new(&subject, &row.category, &record),
            &row.digest,
        )
        .map_err(|_| VaultError::MediaCorrupt(row.id))?;
    <[u8; 32]>::try_from(opened.as_slice())
        .map(Some)
        .map_err(|_| VaultError::MediaCorrupt(row.id))
}

/// Where an object's bytes go: `media/<subject id>/<media id>`.
fn location_of(subject: SubjectId, id: MediaId) -> Result<Location, VaultError> {
    Ok(Location::new(format!("media/{subject}/{id}"))?)
}

fn parse_location(row: &MediaRow) -> Result<Location, VaultError> {
    Ok(Location::new(row.location.as_str())?)
}

/// Deletes an object's bytes; a missing object is not an error.
fn delete_bytes(objects: &dyn ObjectStore, location: &Location) -> Result<(), VaultError> {
    match objects.delete(location) {
        Ok(()) | Err(ObjectError::NotFound { .. }) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

fn rng() -> VaultError {
    VaultError::Crypto(CryptoError::Rng)
}

impl Vault {
    /// This vault with `store` holding its media objects' sealed bytes. Without one, every media
    /// operation fails with [`VaultError::MediaStoreMissing`] and the sweeper leaves media
    /// alone.
    #[must_use]
    pub fn with_media_store(mut self, store: Arc<dyn ObjectStore>) -> Self {
        self.objects = Some(store);
        self
    }

    /// The media object store, if one is set.
    pub fn media_store(&self) -> Option<&Arc<dyn ObjectStore>> {
        self.objects.as_ref()
    }

    fn objects(&self) -> Result<Arc<dyn ObjectStore>, VaultError> {
        self.objects.clone().ok_or(VaultError::MediaStoreMissing)
    }

    /// Stores a media object for `subject`, streaming `body` into object storage sealed under a
    /// fresh key (see the module documentation). The category must be declared and covered by
    /// the purpose, a service key must be bound to the purpose, the content type must be a MIME
    /// type, and the subject must exist and not be erased. A body that does not match
    /// `expected_len` or `expected_sha256`, or that fails midway, stores nothing
    /// ([`VaultError::MediaTruncated`], [`VaultError::MediaLengthMismatch`],
    /// [`VaultError::MediaDigestMismatch`]).
    pub fn upload_media(
        &self,
        subject: SubjectId,
        new: &NewMedia<'_>,
        body: &mut dyn Read,
        caller: &Caller,
    ) -> Result<MediaInfo, VaultError> {
        if !caller.admin && !caller.purposes.iter().any(|p| p == new.purpose) {
            return Err(VaultError::PurposeNotBound(new.purpose.to_owned()));
        }
        self.store_media(subject, new, None, body, &caller.actor())
    }

    /// Registers, uploads and commits one object (an upload, or an output under a lease).
    fn store_media(
        &self,
        subject: SubjectId,
        new: &NewMedia<'_>,
        parent: Option<MediaId>,
        body: &mut dyn Read,
        actor: &str,
    ) -> Result<MediaInfo, VaultError> {
        let objects = self.objects()?;
        check_content_type(new.content_type)?;
        let policy = self.policy();
        Self::check_use(&policy, new.category, new.purpose)?;
        let governing = retention::rule_for(&policy, new.category)
            .ok_or_else(|| VaultError::UnknownCategory(new.category.to_owned()))?;
        let statutory = governing.rule.statutory;
        let subject_row = self.live_subject(subject)?;
        let mut created_keys = Vec::new();
        let keys = self.subject_keys(&subject_row, statutory, &mut created_keys)?;
        let (key_id, data_key) = match (statutory, &keys.statutory) {
            (true, Some((id, key))) => (*id, key),
            _ => (keys.ordinary.0, &keys.ordinary.1),
        };
        let now = self.core.clock.now();
        let id = MediaId::ordered(now).map_err(|_| rng())?;
        let id_text = id.to_string();
        let media_key = MediaKey::generate()?;
        let wrapped_key = data_key.wrap_object_key(&id_text, &media_key)?;
        let location = location_of(subject, id)?;
        let expires_at = retention::expiry_at_write(
            &governing,
            &Lifecycle {
                now,
                closed_at: subject_row.closed_at,
                last_active_at: subject_row.last_active_at,
            },
        )?;
        let row = MediaRow {
            id,
            subject,
            category: new.category.to_owned(),
            purpose: new.purpose.to_owned(),
            key: key_id,
            wrapped_key,
            location: location.as_str().to_owned(),
            content_type: new.content_type.to_owned(),
            size: 0,
            stored_size: 0,
            state: MediaState::Pending,
            parent,
            created_at: now,
            processed_at: None,
            rule: governing.id(),
            expires_at: None,
            statutory,
            lease: None,
            digest: Vec::new(),
        };
        if !created_keys.is_empty() {
            self.core.keys.insert_data_keys(&created_keys)?;
        }
        // Registered before a byte is stored: a crash during the upload leaves a pending row the
        // sweeper finds, never bytes nobody knows of. Nothing is held yet, so nothing is audited.
        self.core.data.commit(WriteBatch {
            mutations: vec![Mutation::InsertMedia(row.clone())],
            audit: Vec::new(),
        })?;
        // A digest the body matched is kept, sealed, for exports to name without hashing the
        // object again (the stream's authentication proves the bytes are still the ones hashed).
        let digest = new
            .expected_sha256
            .map(|sha256| seal_digest(data_key, &row, &sha256))
            .transpose()?;
        let stored = self
            .put_body(objects.as_ref(), &location, &media_key, &id_text, new, body)
            .and_then(|sizes| self.commit_stored(row, sizes, digest, expires_at, actor));
        match stored {
            Ok(info) => Ok(info),
            Err(error) => {
                // Best effort: what is left (a pending row) is the sweeper's after a day.
                let _ = delete_bytes(objects.as_ref(), &location);
                let _ = self.core.data.commit(WriteBatch {
                    mutations: vec![Mutation::DeleteMedia(id)],
                    audit: Vec::new(),
                });
                Err(error)
            }
        }
    }

    /// Streams the checked body through the sealer into the store; returns (plaintext, sealed)
    /// sizes.
    fn put_body(
        &self,
        objects: &dyn ObjectStore,
        location: &Location,
        media_key: &MediaKey,
        id_text: &str,
        new: &NewMedia<'_>,
        body: &mut dyn Read,
    ) -> Result<(u64, u64), VaultError> {
        let mut checked = CheckedBody::new(body, new);
        let put = {
            let mut sealing = SealingReader::new(media_key, id_text, &mut checked)?;
            objects.put(location, &mut sealing)
        };
        if let Some(fault) = checked.fault {
            return Err(fault.into());
        }
        let receipt = match put {
            Ok(receipt) => receipt,
            // The body's faults are recorded above: this is the sealer's own failure.
            Err(ObjectError::Source(error)) => return Err(CryptoError::from_io(error).into()),
            Err(error) => return Err(error.into()),
        };
        let expected = ChunkSize::DEFAULT.sealed_len(checked.received);
        if expected != Some(receipt.size) {
            return Err(VaultError::Objects(ObjectError::Backend {
                detail: format!(
                    "the store reports {} bytes stored where {} were sent",
                    receipt.size,
                    expected.unwrap_or(0)
                ),
            }));
        }
        Ok((checked.received, receipt.size))
    }

    /// Marks an uploaded object stored, with its expiry, and audits it.
    fn commit_stored(
        &self,
        row: MediaRow,
        sizes: (u64, u64),
        digest: Option<Vec<u8>>,
        expires_at: Option<Timestamp>,
        actor: &str,
    ) -> Result<MediaInfo, VaultError> {
        // An erasure or a deletion may have claimed the pending row meanwhile: never bring it
        // back.
        match self.core.data.media(row.id)? {
            Some(current) if current.state == MediaState::Pending => {}
            Some(_) => return Err(VaultError::MediaGone(row.id)),
            None => return Err(VaultError::MediaNotFound(row.id)),
        }
        let now = self.core.clock.now();
        self.core.data.commit(WriteBatch {
            mutations: vec![
                Mutation::UpdateMedia {
                    id: row.id,
                    update: MediaUpdate {
                        state: Some(MediaState::Stored),
                        sizes: Some(sizes),
                        digest,
                        expires_at,
                        ..MediaUpdate::default()
                    },
                },
                Mutation::UpdateSubject {
                    id: row.subject,
                    update: SubjectUpdate {
                        last_active_at: Some(now),
                        ..SubjectUpdate::default()
                    },
                },
            ],
            audit: vec![
                self.core
                    .event(EventKind::MediaStored, actor)
                    .with_subject(row.subject.to_string())
                    .with_category(&row.category)
                    .with_purpose(&row.purpose)
                    .with_rule(&row.rule)
                    .with_record(row.id.to_string()),
            ],
        })?;
        Ok(MediaInfo {
            size: sizes.0,
            state: MediaState::Stored,
            expires_at,
            ..MediaInfo::from(&row)
        })
    }

    /// An object that can be read, leased or shown: stored or processed, and not past its
    /// expiry. Pending and missing objects are [`VaultError::MediaNotFound`]; deleting and
    /// expired ones [`VaultError::MediaGone`].
    fn live_media(&self, id: MediaId, now: Timestamp) -> Result<MediaRow, VaultError> {
        let row = self
            .core
            .data
            .media(id)?
            .ok_or(VaultError::MediaNotFound(id))?;
        match row.state {
            MediaState::Pending => Err(VaultError::MediaNotFound(id)),
            MediaState::Deleting => Err(VaultError::MediaGone(id)),
            MediaState::Stored | MediaState::Processed
                if row.expires_at.is_some_and(|expiry| expiry <= now) =>
            {
                Err(VaultError::MediaGone(id))
            }
            MediaState::Stored | MediaState::Processed => Ok(row),
        }
    }

    /// A media object's metadata (no personal data: nothing is decrypted, nothing audited).
    /// Pending and missing objects are [`VaultError::MediaNotFound`], deleting ones
    /// [`VaultError::MediaGone`]; an expired object not yet swept is still shown.
    pub fn media_info(&self, id: MediaId) -> Result<MediaInfo, VaultError> {
        let row = self
            .core
            .data
            .media(id)?
            .ok_or(VaultError::MediaNotFound(id))?;
        match row.state {
            MediaState::Pending => Err(VaultError::MediaNotFound(id)),
            MediaState::Deleting => Err(VaultError::MediaGone(id)),
            MediaState::Stored | MediaState::Processed => Ok(MediaInfo::from(&row)),
        }
    }

    /// A subject's stored and processed media objects, oldest first, optionally of one
    /// category; pending uploads, objects being deleted and expired objects are not listed.
    pub fn list_media(
        &self,
        subject: SubjectId,
        category: Option<&str>,
    ) -> Result<Vec<MediaInfo>, VaultError> {
        if self.core.data.subject(subject)?.is_none() {
            return Err(VaultError::SubjectNotFound(subject));
        }
        let now = self.core.clock.now();
        Ok(self
            .core
            .data
            .media_of(subject, category)?
            .iter()
            .filter(|row| matches!(row.state, MediaState::Stored | MediaState::Processed))
            .filter(|row| row.expires_at.is_none_or(|expiry| expiry > now))
            .map(MediaInfo::from)
            .collect())
    }

    /// Downloads a media object (all of it, or `range`) for `purpose`, if the gate allows it:
    /// a denial reads nothing. The decision and the read are audited. An unsatisfiable range is
    /// [`VaultError::MediaRangeNotSatisfiable`]. The first bytes are fetched and verified before
    /// this returns, so an object missing from storage or altered at its start fails here
    /// rather than in the stream.
    pub fn download_media(
        &self,
        id: MediaId,
        purpose: &str,
        range: Option<MediaRange>,
        caller: &Caller,
    ) -> Result<Gated<MediaDownload>, VaultError> {
        let objects = self.objects()?;
        let now = self.core.clock.now();
        let row = self.live_media(id, now)?;
        let range = Self::resolve_range(&row, range)?;
        let decision = self.decide(
            &Ask {
                subject: row.subject,
                purpose: purpose.to_owned(),
                categories: vec![row.category.clone()],
            },
            caller,
        )?;
        if !decision.allowed {
            return Ok(Gated::Denied(decision));
        }
        let value = self.open_download(objects, &row, range, purpose, None, &caller.actor())?;
        Ok(Gated::Allowed { value, decision })
    }

    fn resolve_range(row: &MediaRow, range: Option<MediaRange>) -> Result<Range<u64>, VaultError> {
        match range {
            None => Ok(0..row.size),
            Some(range) => range
                .resolve(row.size)
                .ok_or(VaultError::MediaRangeNotSatisfiable { size: row.size }),
        }
    }

    /// Opens the object's stream, audits the read and returns the download.
    pub(crate) fn open_download(
        &self,
        objects: Arc<dyn ObjectStore>,
        row: &MediaRow,
        range: Range<u64>,
        purpose: &str,
        lease: Option<LeaseId>,
        actor: &str,
    ) -> Result<MediaDownload, VaultError> {
        let data_key = self.core.load_key(row.key, row.subject)?;
        let id_text = row.id.to_string();
        let key = data_key.unwrap_object_key(&id_text, &row.wrapped_key)?;
        let sha256 = open_digest(&data_key, row)?;
        let reader = MediaReader::open(
            objects.as_ref(),
            &parse_location(row)?,
            row.id,
            key,
            row.stored_size,
            row.size,
            range.clone(),
        )?;
        let mut event = self
            .core
            .event(EventKind::RecordRead, actor)
            .with_subject(row.subject.to_string())
            .with_category(&row.category)
            .with_purpose(purpose)
            .with_record(&id_text);
        let whole = range.start == 0 && range.end == row.size;
        let outcome = match (lease, whole) {
            (Some(lease), true) => Some(format!("lease={lease}")),
            (Some(lease), false) => Some(format!(
                "lease={lease} bytes={}-{}",
                range.start,
                range.end.saturating_sub(1)
            )),
            (None, false) => Some(format!(
                "bytes={}-{}",
                range.start,
                range.end.saturating_sub(1)
            )),
            (None, true) => None,
        };
        if let Some(outcome) = outcome {
            event = event.with_outcome(outcome);
        }
        self.core.data.commit(WriteBatch {
            mutations: Vec::new(),
            audit: vec![event],
        })?;
        Ok(MediaDownload {
            info: MediaInfo::from(row),
            range,
            total: row.size,
            sha256,
            reader: Box::new(reader),
        })
    }

    /// Grants `caller` a processing lease on a stored (or processed, not yet deleted) object for
    /// `purpose`, for `ttl` (1 s to 24 h), if the gate allows it (a denial changes nothing).
    /// Only API keys hold leases ([`VaultError::LeaseKeyRequired`] for the operator's tools). An
    /// unexpired lease of another key is [`VaultError::MediaLeased`]; the holder asking again
    /// for the same purpose renews its lease, keeping its id. The lease grant itself is recorded
    /// by the gate decision's audit entry; reads under it are audited one by one.
    ///
    /// The grant is a compare-and-set on the lease read: of two keys leasing the same free
    /// object at the same instant (on one instance or two), one gets it and the other is
    /// refused with [`VaultError::MediaLeased`].
    pub fn lease_media(
        &self,
        id: MediaId,
        purpose: &str,
        ttl: Duration,
        caller: &Caller,
    ) -> Result<Gated<LeaseRow>, VaultError> {
        let holder = caller.key.ok_or(VaultError::LeaseKeyRequired)?;
        if !(MIN_LEASE_TTL..=MAX_LEASE_TTL).contains(&ttl) {
            return Err(VaultError::Invalid {
                field: "ttl",
                reason: "must be 1 second to 24 hours".into(),
            });
        }
        let now = self.core.clock.now();
        let row = self.live_media(id, now)?;
        let current = row.lease.as_ref().filter(|lease| lease.expires_at > now);
        if current.is_some_and(|lease| lease.holder != holder) {
            return Err(VaultError::MediaLeased(id));
        }
        let decision = self.decide(
            &Ask {
                subject: row.subject,
                purpose: purpose.to_owned(),
                categories: vec![row.category.clone()],
            },
            caller,
        )?;
        if !decision.allowed {
            return Ok(Gated::Denied(decision));
        }
        let lease_id = match current {
            Some(lease) if lease.purpose == purpose => lease.id,
            _ => LeaseId::random().map_err(|_| rng())?,
        };
        let ttl_millis = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let lease = LeaseRow {
            id: lease_id,
            holder,
            purpose: purpose.to_owned(),
            granted_at: now,
            expires_at: now.plus_millis(ttl_millis),
        };
        // Granted only if the lease is still the one read above: of two keys racing for a free
        // object, one gets it and the other is told it is leased.
        let granted = self.core.data.commit(WriteBatch {
            mutations: vec![Mutation::UpdateMedia {
                id,
                update: MediaUpdate {
                    lease: Some(Some(lease.clone())),
                    expected_lease: Some(row.lease.as_ref().map(|lease| lease.id)),
                    ..MediaUpdate::default()
                },
            }],
            audit: Vec::new(),
        });
        match granted {
            Ok(_) => Ok(Gated::Allowed {
                value: lease,
                decision,
            }),
            Err(StoreError::Conflict(_)) => Err(VaultError::MediaLeased(id)),
            Err(other) => Err(other.into()),
        }
    }

    /// The lease `lease` on `row` if `caller` holds it and it has not expired.
    fn held_lease(
        row: &MediaRow,
        lease: LeaseId,
        caller: &Caller,
        now: Timestamp,
    ) -> Result<LeaseRow, VaultError> {
        let current = row
            .lease
            .as_ref()
            .filter(|current| current.id == lease && Some(current.holder) == caller.key)
            .ok_or(VaultError::LeaseNotHeld(lease))?;
        if current.expires_at <= now {
            return Err(VaultError::LeaseExpired(lease));
        }
        Ok(current.clone())
    }

    /// Reads a leased object (all of it, or `range`) for the lease's purpose: the holder only
    /// ([`VaultError::LeaseNotHeld`]), before the lease expires ([`VaultError::LeaseExpired`]).
    /// The gate allowed the purpose when the lease was granted; each read is audited.
    pub fn read_leased(
        &self,
        id: MediaId,
        lease: LeaseId,
        range: Option<MediaRange>,
        caller: &Caller,
    ) -> Result<MediaDownload, VaultError> {
        let objects = self.objects()?;
        let now = self.core.clock.now();
        let row = self.live_media(id, now)?;
        let held = Self::held_lease(&row, lease, caller, now)?;
        let range = Self::resolve_range(&row, range)?;
        self.open_download(
            objects,
            &row,
            range,
            &held.purpose,
            Some(lease),
            &caller.actor(),
        )
    }

    /// Stores an output of processing the leased input `id` (an effect image, a tuned
    /// recording): same subject, `parent` = the input, its own category and retention rule
    /// counted from its own collection. `new.purpose` must be the lease's purpose and cover
    /// `new.category`. Otherwise as [`Vault::upload_media`].
    pub fn attach_output(
        &self,
        id: MediaId,
        lease: LeaseId,
        new: &NewMedia<'_>,
        body: &mut dyn Read,
        caller: &Caller,
    ) -> Result<MediaInfo, VaultError> {
        let now = self.core.clock.now();
        let row = self.live_media(id, now)?;
        let held = Self::held_lease(&row, lease, caller, now)?;
        if new.purpose != held.purpose {
            return Err(VaultError::Invalid {
                field: "purpose",
                reason: "an output is stored for its input's lease purpose".into(),
            });
        }
        self.store_media(row.subject, new, Some(id), body, &caller.actor())
    }

    /// Ends a lease early; the holder only. Releasing an expired lease succeeds.
    pub fn release_lease(
        &self,
        id: MediaId,
        lease: LeaseId,
        caller: &Caller,
    ) -> Result<(), VaultError> {
        let row = self
            .core
            .data
            .media(id)?
            .ok_or(VaultError::MediaNotFound(id))?;
        let ours = row
            .lease
            .as_ref()
            .is_some_and(|current| current.id == lease && Some(current.holder) == caller.key);
        if !ours {
            return Err(VaultError::LeaseNotHeld(lease));
        }
        self.core.data.commit(WriteBatch {
            mutations: vec![Mutation::UpdateMedia {
                id,
                update: MediaUpdate {
                    lease: Some(None),
                    ..MediaUpdate::default()
                },
            }],
            audit: Vec::new(),
        })?;
        Ok(())
    }

    /// Completes the processing of the leased input `id`: it becomes processed now, its lease
    /// ends, and a `processed` retention rule starts counting. When that leaves no time
    /// (`keep = "0s"`, "until processed") the input is deleted before this returns: shredded
    /// and audited (`media_deleted` with its rule), then its bytes, then its row, so no object
    /// and no key remain. A legal hold covering it keeps it instead, expired, for the sweeper
    /// once the hold ends. Otherwise the completion is audited (`media_stored`, outcome
    /// `processed`). Records of `processed` categories are not touched.
    pub fn complete_processing(
        &self,
        id: MediaId,
        lease: LeaseId,
        caller: &Caller,
    ) -> Result<ProcessingReport, VaultError> {
        let objects = self.objects()?;
        let now = self.core.clock.now();
        let row = self.live_media(id, now)?;
        Self::held_lease(&row, lease, caller, now)?;
        let policy = self.policy();
        let governing = retention::rule_for(&policy, &row.category);
        let rule = governing.map_or_else(|| row.rule.clone(), |governing| governing.id());
        // Processing completes once: an input processed again keeps its first completion time
        // and the expiry counted from it.
        let processed_at = row.processed_at.unwrap_or(now);
        let expires_at = match governing {
            Some(governing)
                if governing.rule.after == Trigger::Processed && row.processed_at.is_none() =>
            {
                Some(
                    retention::add(now, governing.rule.keep.get_ref())
                        .ok_or_else(|| VaultError::Expiry { rule: rule.clone() })?,
                )
            }
            _ => row.expires_at,
        };
        let due = expires_at.is_some_and(|expiry| expiry <= now);
        let held = due
            && self
                .core
                .data
                .holds()?
                .iter()
                .any(|hold| hold.applies(row.subject, &row.category, now));
        let actor = caller.actor();
        let mut report = ProcessingReport {
            id,
            processed_at,
            rule: rule.clone(),
            expires_at,
            deleted: false,
            held,
        };
        if due && !held {
            self.erase_media(
                objects.as_ref(),
                &row,
                &actor,
                "processed",
                &rule,
                Some(processed_at),
            )?;
            report.deleted = true;
            return Ok(report);
        }
        self.core.data.commit(WriteBatch {
            mutations: vec![Mutation::UpdateMedia {
                id,
                update: MediaUpdate {
                    state: Some(MediaState::Processed),
                    processed_at: Some(processed_at),
                    expires_at,
                    lease: Some(None),
                    ..MediaUpdate::default()
                },
            }],
            audit: vec![
                self.core
                    .event(EventKind::MediaStored, &actor)
                    .with_subject(row.subject.to_string())
                    .with_category(&row.category)
                    .with_purpose(&row.purpose)
                    .with_rule(&rule)
                    .with_record(id.to_string())
                    .with_outcome("processed"),
            ],
        })?;
        Ok(report)
    }

    /// Deletes a media object now, whatever its state (a pending upload too): shredded and
    /// audited (`media_deleted`, outcome `deleted`), then its bytes, then its row. An object
    /// already being deleted is finished. Holds do not apply (as for records).
    pub fn delete_media(&self, id: MediaId, actor: &str) -> Result<(), VaultError> {
        let objects = self.objects()?;
        let row = self
            .core
            .data
            .media(id)?
            .ok_or(VaultError::MediaNotFound(id))?;
        let rule = row.rule.clone();
        self.erase_media(objects.as_ref(), &row, actor, "deleted", &rule, None)
    }

    /// Shreds (state deleting, wrapped key emptied, lease cleared, audited), then deletes the
    /// bytes, then the row. An object already deleting skips the first step.
    fn erase_media(
        &self,
        objects: &dyn ObjectStore,
        row: &MediaRow,
        actor: &str,
        outcome: &str,
        rule: &str,
        processed_at: Option<Timestamp>,
    ) -> Result<(), VaultError> {
        let location = parse_location(row)?;
        if row.state != MediaState::Deleting {
            self.core.data.commit(WriteBatch {
                mutations: vec![Mutation::UpdateMedia {
                    id: row.id,
                    update: MediaUpdate {
                        state: Some(MediaState::Deleting),
                        processed_at,
                        lease: Some(None),
                        shred: true,
                        ..MediaUpdate::default()
                    },
                }],
                audit: vec![
                    self.core
                        .event(EventKind::MediaDeleted, actor)
                        .with_subject(row.subject.to_string())
                        .with_category(&row.category)
                        .with_rule(rule)
                        .with_record(row.id.to_string())
                        .with_outcome(outcome),
                ],
            })?;
        }
        delete_bytes(objects, &location)?;
        self.core.data.commit(WriteBatch {
            mutations: vec![Mutation::DeleteMedia(row.id)],
            audit: Vec::new(),
        })?;
        Ok(())
    }

    /// The media part of a sweep, after the records: finishes objects left deleting, deletes
    /// expired objects no hold keeps (claimed `batch` at a time, each claim audited with its
    /// rule), and removes abandoned uploads. Every step is idempotent: after a crash the next
    /// sweep carries on. A vault without a media store leaves media alone.
    pub(crate) fn sweep_media(
        &self,
        now: Timestamp,
        batch: usize,
        actor: &str,
        report: &mut SweepReport,
        due: u64,
        progress: &mut dyn Progress,
    ) -> Result<(), VaultError> {
        let Some(objects) = self.objects.clone() else {
            return Ok(());
        };
        // Left deleting by a crash (or by an erasure's shred): audited already.
        loop {
            let rows = self
                .core
                .data
                .media_in_state(MediaState::Deleting, now, batch)?;
            if rows.is_empty() {
                break;
            }
            let mut mutations = Vec::with_capacity(rows.len());
            for row in &rows {
                delete_bytes(objects.as_ref(), &parse_location(row)?)?;
                mutations.push(Mutation::DeleteMedia(row.id));
            }
            self.core.data.commit(WriteBatch {
                mutations,
                audit: Vec::new(),
            })?;
            report.media_finished += rows.len() as u64;
        }
        // Expired: the claim shreds and audits; the bytes and the rows follow.
        loop {
            let claimed = self.core.data.claim_expired_media(now, batch, actor)?;
            if claimed.is_empty() {
                break;
            }
            let mut mutations = Vec::with_capacity(claimed.len());
            for media in &claimed {
                delete_bytes(objects.as_ref(), &Location::new(media.location.as_str())?)?;
                mutations.push(Mutation::DeleteMedia(media.id));
            }
            self.core.data.commit(WriteBatch {
                mutations,
                audit: Vec::new(),
            })?;
            for media in claimed {
                report.deleted += 1;
                report.media_deleted += 1;
                *report
                    .by_rule
                    .entry((media.category, media.rule))
                    .or_insert(0) += 1;
            }
            progress.advance(report.deleted, due.max(report.deleted));
        }
        // Abandoned uploads: the bytes (a put that finished after its process died), then the
        // row with its audit entry.
        let age = i64::try_from(ABANDONED_UPLOAD_AGE.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now.plus_millis(age.saturating_neg());
        loop {
            let rows = self
                .core
                .data
                .media_in_state(MediaState::Pending, cutoff, batch)?;
            if rows.is_empty() {
                break;
            }
            let mut batch_write = WriteBatch::default();
            for row in &rows {
                delete_bytes(objects.as_ref(), &parse_location(row)?)?;
                batch_write.mutations.push(Mutation::DeleteMedia(row.id));
                batch_write.audit.push(
                    self.core
                        .event(EventKind::MediaDeleted, actor)
                        .with_subject(row.subject.to_string())
                        .with_category(&row.category)
                        .with_rule(&row.rule)
                        .with_record(row.id.to_string())
                        .with_outcome("abandoned_upload"),
                );
            }
            self.core.data.commit(batch_write)?;
            report.abandoned_uploads += rows.len() as u64;
        }
        Ok(())
    }

    /// Deletes the bytes and rows of a shredded subject's media objects, except statutory ones
    /// not being deleted; returns the mutations that delete the rows (for the purge's commit)
    /// and how many statutory objects are kept.
    pub(crate) fn purge_media(
        &self,
        subject: SubjectId,
    ) -> Result<(Vec<Mutation>, u64), VaultError> {
        let media = self.core.data.media_of(subject, None)?;
        let (kept, gone): (Vec<&MediaRow>, Vec<&MediaRow>) = media
            .iter()
            .partition(|row| row.statutory && row.state != MediaState::Deleting);
        if gone.is_empty() {
            return Ok((Vec::new(), kept.len() as u64));
        }
        let objects = self.objects()?;
        let mut mutations = Vec::with_capacity(gone.len());
        for row in gone {
            delete_bytes(objects.as_ref(), &parse_location(row)?)?;
            mutations.push(Mutation::DeleteMedia(row.id));
        }
        Ok((mutations, kept.len() as u64))
    }
}

/// The stored bytes an opener reads: the header (kept from the start), or the chunks the range
/// covers, read through a buffer or, for a large range, read ahead on a thread of their own.
enum Fetched {
    Header(io::Cursor<[u8; HEADER_LEN]>),
    Buffered(io::BufReader<ObjectReader>),
    Ahead(ReadAhead),
    Nothing,
}

impl Read for Fetched {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Header(cursor) => cursor.read(buf),
            Self::Buffered(reader) => reader.read(buf),
            Self::Ahead(reader) => reader.read(buf),
            Self::Nothing => Ok(0),
        }
    }
}

impl BufRead for Fetched {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        match self {
            Self::Header(cursor) => cursor.fill_buf(),
            Self::Buffered(reader) => reader.fill_buf(),
            Self::Ahead(reader) => reader.fill_buf(),
            Self::Nothing => Ok(&[]),
        }
    }

    fn consume(&mut self, amount: usize) {
        match self {
            Self::Header(cursor) => cursor.consume(amount),
            Self::Buffered(reader) => reader.consume(amount),
            Self::Ahead(reader) => reader.consume(amount),
            Self::Nothing => {}
        }
    }
}

/// The stored chunks of a large download, read ahead by a thread of their own in blocks of whole
/// sealed chunks, so that fetching the next chunks (a copy out of the page cache, or the network)
/// overlaps opening the current ones. At most [`READ_AHEAD_DEPTH`] + 2 blocks exist at a time;
/// they hold only sealed bytes. The thread ends at the object's end, at its first error, or
/// when the download is dropped.
struct ReadAhead {
    /// The block being consumed: `block[pos..]` is still to read.
    block: Vec<u8>,
    pos: usize,
    /// A block's full length; a shorter block is the last.
    block_len: usize,
    full: mpsc::Receiver<io::Result<Vec<u8>>>,
    spent: mpsc::Sender<Vec<u8>>,
    ended: bool,
    failed: bool,
}

impl ReadAhead {
    /// Starts reading `inner` ahead in blocks of `block_len` bytes.
    fn start(inner: ObjectReader, block_len: usize) -> io::Result<Self> {
        let (full_tx, full) = mpsc::sync_channel(READ_AHEAD_DEPTH);
        let (spent, spent_rx) = mpsc::channel::<Vec<u8>>();
        let mut inner = inner;
        std::thread::Builder::new()
            .name("custodia-media-read".to_owned())
            .spawn(move || read_ahead(&mut inner, block_len, &full_tx, &spent_rx))?;
        Ok(Self {
            block: Vec::new(),
            pos: 0,
            block_len,
            full,
            spent,
            ended: false,
            failed: false,
        })
    }
}

/// The read-ahead thread: fills blocks from `inner` and sends them on, reusing spent ones.
fn read_ahead(
    inner: &mut ObjectReader,
    block_len: usize,
    full: &mpsc::SyncSender<io::Result<Vec<u8>>>,
    spent: &mpsc::Receiver<Vec<u8>>,
) {
    // Every block is allocated before any is reused, so that a download's memory is the same
    // whatever the timing of its threads.
    let mut unallocated = READ_AHEAD_DEPTH + 2;
    loop {
        let mut block = if unallocated > 0 {
            unallocated -= 1;
            Vec::new()
        } else {
            match spent.recv() {
                Ok(block) => block,
                Err(_) => return,
            }
        };
        block.resize(block_len, 0);
        let mut filled = 0;
        while let Some(rest) = block.get_mut(filled..).filter(|rest| !rest.is_empty()) {
            match inner.read(rest) {
                Ok(0) => break,
                Ok(read) => filled = filled.saturating_add(read).min(block_len),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    let _ = full.send(Err(error));
                    return;
                }
            }
        }
        block.truncate(filled);
        if full.send(Ok(block)).is_err() || filled < block_len {
            return;
        }
    }
}

impl BufRead for ReadAhead {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.failed {
            return Err(io::Error::other(
                "an earlier read of this media stream failed",
            ));
        }
        if self.pos >= self.block.len() && !self.ended {
            let spent = std::mem::take(&mut self.block);
            if spent.capacity() > 0 {
                // The thread may have ended already; the block is then simply dropped.
                let _ = self.spent.send(spent);
            }
            self.pos = 0;
            match self.full.recv() {
                Ok(Ok(block)) => {
                    self.ended = block.len() < self.block_len;
                    self.block = block;
                }
                Ok(Err(error)) => {
                    self.failed = true;
                    return Err(error);
                }
                Err(_) => {
                    self.failed = true;
                    return Err(io::Error::other(
                        "the read-ahead of a media stream stopped early",
                    ));
                }
            }
        }
        Ok(self.block.get(self.pos..).unwrap_or_default())
    }

    fn consume(&mut self, amount: usize) {
        self.pos = self.pos.saturating_add(amount).min(self.block.len());
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        if let (Some(dst), Some(src)) = (out.get_mut(..n), available.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.consume(n);
        Ok(n)
    }
}

/// The plaintext stream of a download: one [`StreamOpener`] over the range, owning the object's
/// key, reading the stored chunks it covers once and in order. Chunks are opened straight from
/// the fetched bytes, into the caller's slice when it holds a whole chunk. The last bytes of the
/// range are handed out only once the opener has reached its end, so a range that reaches the
/// object's end has had its final chunk verified before the reader's last bytes are returned,
/// even to a caller that stops reading there.
struct MediaReader {
    /// The range's first segment, opened before the download is returned: `head[head_pos..]`
    /// is still to return.
    head: Zeroizing<Vec<u8>>,
    head_pos: usize,
    /// `None` once the stream has failed: dropping the opener wipes its buffer.
    opener: Option<StreamOpener<'static, Fetched>>,
    /// Plaintext bytes of the range not yet taken from the opener.
    unread: u64,
    failed: Option<VaultError>,
}

impl MediaReader {
    fn open(
        objects: &dyn ObjectStore,
        location: &Location,
        id: MediaId,
        key: MediaKey,
        sealed_len: u64,
        size: u64,
        range: Range<u64>,
    ) -> Result<Self, VaultError> {
        let id_text = id.to_string();
        let mut header = [0u8; HEADER_LEN];
        let mut stored_header = objects
            .get_range(location, 0, HEADER_LEN_U64)
            .map_err(|error| object_error(error, id))?;
        stored_header.read_exact(&mut header).map_err(|error| {
            if error.kind() == io::ErrorKind::UnexpectedEof {
                VaultError::Crypto(CryptoError::Truncated)
            } else {
                VaultError::MediaIo(error)
            }
        })?;
        let header_only = |from: u64, _| {
            Ok(if from == 0 {
                Fetched::Header(io::Cursor::new(header))
            } else {
                Fetched::Nothing
            })
        };
        // The header's magic, version and chunk size, and the length the sealed size implies.
        let probe = StreamOpener::open_range_with(&key, &id_text, sealed_len, 0, 0, header_only)?;
        let object_len = probe.object_len().unwrap_or(u64::MAX);
        drop(probe);
        if object_len != size {
            return Err(VaultError::MediaCorrupt(id));
        }
        let [_, _, _, _, _, c0, c1, c2, c3, ..] = header;
        let chunk: u64 = ChunkSize::new(u32::from_be_bytes([c0, c1, c2, c3]))
            .unwrap_or(ChunkSize::DEFAULT)
            .get()
            .into();
        let sealed_chunk = chunk.saturating_add(CHUNK_OVERHEAD_U64);
        let block = sealed_chunk.saturating_mul((READ_AHEAD_BLOCK / sealed_chunk).max(1));
        let block_len = usize::try_from(block).map_err(|_| CryptoError::Backend)?;
        let mut fetch_error = None;
        let opened = StreamOpener::open_range_with_owned_key(
            key,
            &id_text,
            sealed_len,
            range.start,
            range.end - range.start,
            |from, count| {
                if from == 0 {
                    return Ok(Fetched::Header(io::Cursor::new(header)));
                }
                let fetch = || objects.get_range(location, from, count);
                let buffered = |chunks| {
                    let capacity = usize::try_from(count).unwrap_or(block_len).min(block_len);
                    Fetched::Buffered(io::BufReader::with_capacity(capacity, chunks))
                };
                let fetched = fetch().and_then(|chunks| {
                    if count <= block.saturating_mul(READ_AHEAD_MIN_BLOCKS) {
                        return Ok(buffered(chunks));
                    }
                    match ReadAhead::start(chunks, block_len) {
                        Ok(ahead) => Ok(Fetched::Ahead(ahead)),
                        // No thread to read ahead with: read in turn instead.
                        Err(_) => fetch().map(buffered),
                    }
                });
                fetched.map_err(|error| {
                    fetch_error = Some(object_error(error, id));
                    io::Error::other("fetching the stored chunks failed")
                })
            },
        );
        let opener = match opened {
            Ok(opener) => opener.use_inner_buffer(),
            Err(error) => return Err(fetch_error.unwrap_or_else(|| error.into())),
        };
        let mut reader = Self {
            head: Zeroizing::new(Vec::new()),
            head_pos: 0,
            opener: Some(opener),
            unread: range.end - range.start,
            failed: None,
        };
        // The first segment now: a missing or altered object fails the call, not the stream.
        let segment_end = (range.start / chunk)
            .saturating_add(SEGMENT_CHUNKS)
            .saturating_mul(chunk)
            .min(range.end);
        let head_len =
            usize::try_from(segment_end - range.start).map_err(|_| CryptoError::Backend)?;
        let mut head = Zeroizing::new(vec![0; head_len]);
        let mut filled = 0;
        while let Some(rest) = head.get_mut(filled..).filter(|rest| !rest.is_empty()) {
            match reader.pull(rest)? {
                0 => return Err(CryptoError::Truncated.into()),
                read => filled += read,
            }
        }
        reader.head = head;
        if range.is_empty() {
            // An empty range at the object's end: its final chunk is verified all the same.
            reader.finish()?;
        }
        Ok(reader)
    }

    /// Reads the opener to its end: opens a pending final chunk (empty, or past the range).
    fn finish(&mut self) -> Result<(), VaultError> {
        let Some(opener) = self.opener.as_mut() else {
            return Err(CryptoError::Backend.into());
        };
        let mut probe = [0u8; 1];
        loop {
            match opener.read(&mut probe) {
                Ok(0) => return Ok(()),
                Ok(_) => return Err(CryptoError::Backend.into()),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(CryptoError::from_io(error).into()),
            }
        }
    }

    /// Takes verified plaintext from the opener into `out`; 0 only at the range's end.
    fn pull(&mut self, out: &mut [u8]) -> Result<usize, VaultError> {
        if self.unread == 0 || out.is_empty() {
            return Ok(0);
        }
        let Some(opener) = self.opener.as_mut() else {
            return Err(CryptoError::Backend.into());
        };
        let want = usize::try_from(self.unread)
            .unwrap_or(usize::MAX)
            .min(out.len());
        let out = out.get_mut(..want).ok_or(CryptoError::Backend)?;
        let read = loop {
            match opener.read(out) {
                Ok(0) => return Err(CryptoError::Truncated.into()),
                Ok(read) => break read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(CryptoError::from_io(error).into()),
            }
        };
        self.unread = self.unread.saturating_sub(read as u64);
        if self.unread == 0 {
            // The last bytes go out only once the stream's end is verified.
            if let Err(error) = self.finish() {
                if let Some(returned) = out.get_mut(..read) {
                    returned.zeroize();
                }
                return Err(error);
            }
        }
        Ok(read)
    }

    fn step(&mut self, out: &mut [u8]) -> Result<usize, VaultError> {
        if let Some(ready) = self.head.get(self.head_pos..).filter(|r| !r.is_empty()) {
            let n = ready.len().min(out.len());
            if let (Some(dst), Some(src)) = (out.get_mut(..n), ready.get(..n)) {
                dst.copy_from_slice(src);
            }
            self.head_pos += n;
            if self.head_pos == self.head.len() {
                // Spent: wiped now rather than when the download ends.
                self.head = Zeroizing::new(Vec::new());
                self.head_pos = 0;
            }
            return Ok(n);
        }
        self.pull(out)
    }
}

/// An object-store failure while reading: a missing object is gone.
fn object_error(error: ObjectError, id: MediaId) -> VaultError {
    match error {
        ObjectError::NotFound { .. } => VaultError::MediaGone(id),
        other => VaultError::Objects(other),
    }
}

/// A failure to report again on every later read of a failed stream.
fn replay(error: &VaultError) -> VaultError {
    match error {
        VaultError::Crypto(CryptoError::AuthenticationFailed) => {
            VaultError::Crypto(CryptoError::AuthenticationFailed)
        }
        VaultError::Crypto(CryptoError::Truncated) => VaultError::Crypto(CryptoError::Truncated),
        VaultError::Crypto(CryptoError::Malformed { reason }) => {
            VaultError::Crypto(CryptoError::Malformed { reason })
        }
        VaultError::MediaGone(id) => VaultError::MediaGone(*id),
        VaultError::MediaCorrupt(id) => VaultError::MediaCorrupt(*id),
        _ => VaultError::MediaIo(io::Error::other(
            "an earlier read of this media stream failed",
        )),
    }
}

impl Read for MediaReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if let Some(error) = &self.failed {
            return Err(replay(error).into_io());
        }
        if out.is_empty() {
            return Ok(0);
        }
        match self.step(out) {
            Ok(read) => Ok(read),
            Err(error) => {
                // Nothing unverified was handed out; what was buffered is wiped now.
                self.head = Zeroizing::new(Vec::new());
                self.head_pos = 0;
                self.opener = None;
                self.failed = Some(replay(&error));
                Err(error.into_io())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{MediaRange, check_content_type};

    #[test]
    fn ranges_resolve_as_http_says() {
        let from = |start, end| MediaRange::From { start, end };
        assert_eq!(from(0, None).resolve(10), Some(0..10));
        assert_eq!(from(2, Some(4)).resolve(10), Some(2..5));
        assert_eq!(from(2, Some(400)).resolve(10), Some(2..10));
        assert_eq!(from(9, Some(9)).resolve(10), Some(9..10));
        assert_eq!(from(10, None).resolve(10), None);
        assert_eq!(from(0, None).resolve(0), None);
        assert_eq!(from(5, Some(4)).resolve(10), None);
        assert_eq!(MediaRange::Last(3).resolve(10), Some(7..10));
        assert_eq!(MediaRange::Last(30).resolve(10), Some(0..10));
        assert_eq!(MediaRange::Last(0).resolve(10), None);
        assert_eq!(MediaRange::Last(3).resolve(0), None);
    }

    #[test]
    fn content_types_are_mime_tokens() {
        for good in ["image/jpeg", "audio/x-wav", "application/vnd.api+json"] {
            assert!(check_content_type(good).is_ok(), "{good}");
        }
        let long = format!("image/{}", "a".repeat(100));
        for bad in [
            "",
            "image",
            "image/",
            "/jpeg",
            "image/jpeg; charset=utf-8",
            "image/jp eg",
            "image/jpeg/x",
            "imäge/jpeg",
            long.as_str(),
        ] {
            assert_eq!(
                check_content_type(bad).map_err(|e| e.code()),
                Err("vault.invalid"),
                "{bad}"
            );
        }
    }
}
