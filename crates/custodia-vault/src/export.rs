//! Access, copy and portability (PIPL Art. 45, GDPR Art. 15 and 20): everything held about one
//! subject, decrypted, as one zip archive ([`Vault::export_subject`]).
//!
//! The archive holds, in this order:
//!
//! | file | what |
//! |---|---|
//! | `profile.json` | the sealed profile (external id, jurisdiction, birth date or age band, guardian) and the account's times |
//! | `consents.json` | the consent ledger, oldest first |
//! | `receipts/<consent id>.json` | each ledger event's ISO/IEC TS 27560 receipt, under the policy version it was given under |
//! | `media/<media id>.<ext>` | each stored or processed media object, decrypted (stored uncompressed) |
//! | `records.json`, `records.csv` | every record still held (expired ones the sweeper has not reached yet too), decrypted; a value that is not UTF-8 text is base64 with `encoding = "base64"` (stored uncompressed) |
//! | `media.csv` | one line per media object: metadata, file name, size and SHA-256 |
//! | `disclosures.json`, `disclosures.csv` | every hand-over of the subject's data to a processor or an authority |
//! | `purposes.json` | the categories held, the purposes and retention rules that apply to them, who receives them |
//! | `requests.json` | the subject's data-subject requests with what was asked |
//! | `manifest.json` | written last: the format, the subject's pseudonymous id, the policy version, when, counts, and the size and SHA-256 of every other file |
//!
//! **Streaming**: the archive is written front to back and never sought in (each entry's sizes
//! and CRC follow it in a data descriptor), so `out` can be a file, a pipe or an HTTP response,
//! and no plaintext copy need touch a disk on the way. **Memory** stays bounded whatever the
//! media: each object streams from object storage through its verifying decryptor into its entry
//! in 64 KiB steps. Records are read once (their rows are in memory, as for
//! [`Vault::read_records`]); their two tables are rendered in memory on a thread of their own
//! while the media stream, which mostly wait on storage, and are written after them,
//! uncompressed (deflating them would put back the time the thread saves). The other JSON and
//! CSV entries are small and deflated as they are written, at the fastest level.
//!
//! **Digests**: the manifest's SHA-256 of a media object whose uploader announced its digest
//! (`Content-Digest`, checked at upload and kept sealed) is that digest: the object's stream is
//! authenticated chunk by chunk up to its final chunk, so the bytes written are exactly the ones
//! that were hashed, and hashing them again would only cost time. Every other file is hashed as
//! it is written.
//!
//! **Audit**: one `record_read` entry for the profile, one per category of records
//! (`outcome = "export records=N"`), one for the requests' sealed details and one per media
//! object, all with the purpose
//! [`EXPORT_PURPOSE`]; they are committed before any decrypted byte is written out. The gate is
//! not asked: the subject's right of access holds whatever the consent ledger says (a restricted
//! subject may still see its data).
//!
//! An erased subject cannot be exported ([`VaultError::SubjectErased`]); what remains of it is
//! statutory and storage-only. A failure midway (a media object gone or altered, the output
//! failing) returns the error and leaves a partial archive in `out`, for the caller to discard.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, BufWriter, Read, Seek, Write};
use std::sync::Arc;

use aws_lc_rs::digest;
use base64::Engine as _;
use custodia_audit::EventKind;
use custodia_core::{KeyId, SubjectId, Timestamp};
use custodia_crypto::{DataKey, FieldContext};
use custodia_policy::Policy;
use custodia_store::{ConsentRow, DisclosureRow, MediaRow, MediaState, RecordRow, WriteBatch};
use serde::Serialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use crate::error::VaultError;
use crate::retention;
use crate::vault::{PROFILE_CATEGORY, Vault};

/// The archive format this module writes, named in every manifest.
pub const EXPORT_FORMAT: &str = "custodia-export/1";

/// The purpose recorded in the audit entries of an export's reads: the subject's own right of
/// access, not a purpose of the policy.
pub const EXPORT_PURPOSE: &str = "custodia.subject_access";

/// The copy buffer for media objects.
const COPY_BUFFER: usize = 64 * 1024;

/// The buffer in front of each zip entry, so small JSON and CSV writes reach the deflater in
/// large steps.
const ENTRY_BUFFER: usize = 64 * 1024;

/// The deflate level of JSON and CSV entries: the fastest. Tables of short values shrink about
/// as well at 1 as at the default 6, at a fraction of the time, and an export's time is what
/// the subject waits for.
const TEXT_COMPRESSION_LEVEL: i64 = 1;

/// What an export holds: written as `manifest.json`, the archive's last file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportManifest {
    /// [`EXPORT_FORMAT`].
    pub format: String,
    /// The subject's pseudonymous id.
    pub subject: String,
    /// The policy version in force when the export was made.
    pub policy_version: String,
    /// When it was made (RFC 3339, UTC).
    pub generated_at: String,
    /// How many items of each kind it holds.
    pub counts: ExportCounts,
    /// Every other file of the archive, in the order written.
    pub files: Vec<ExportedFile>,
}

impl ExportManifest {
    /// The file named `name`, if the archive has one.
    pub fn file(&self, name: &str) -> Option<&ExportedFile> {
        self.files.iter().find(|file| file.name == name)
    }
}

/// Item counts of an export.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExportCounts {
    /// Records.
    pub records: u64,
    /// Distinct categories held (records and media).
    pub categories: u64,
    /// Consent-ledger events.
    pub consents: u64,
    /// Consent receipts.
    pub receipts: u64,
    /// Media objects.
    pub media: u64,
    /// Their plaintext bytes.
    pub media_bytes: u64,
    /// Disclosures.
    pub disclosures: u64,
    /// Purposes that apply to the categories held.
    pub purposes: u64,
    /// Retention rules that govern them.
    pub retention_rules: u64,
    /// Data-subject requests.
    pub requests: u64,
}

/// One file of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportedFile {
    /// Its path in the archive.
    pub name: String,
    /// Its length, uncompressed.
    pub bytes: u64,
    /// SHA-256 of its uncompressed content, lowercase hex.
    pub sha256: String,
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        for nibble in [byte >> 4, byte & 0x0f] {
            out.push(char::from(
                DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
    out
}

fn io_error(error: io::Error) -> VaultError {
    VaultError::ExportIo(error)
}

fn zip_error(error: zip::result::ZipError) -> VaultError {
    VaultError::ExportIo(io::Error::from(error))
}

fn json_error(error: serde_json::Error) -> VaultError {
    VaultError::ExportIo(io::Error::from(error))
}

/// An entry's SHA-256: known already, or computed as the content goes through.
enum Sha256 {
    Known([u8; 32]),
    Hashing(digest::Context),
}

/// A zip entry being written: counts what goes through, and hashes it unless its digest is
/// already known.
struct Entry<'z, W: Write + Seek> {
    zip: &'z mut ZipWriter<W>,
    sha256: Sha256,
    bytes: u64,
}

impl<W: Write + Seek> Write for Entry<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.zip.write(buf)?;
        if let Sha256::Hashing(hash) = &mut self.sha256 {
            hash.update(buf.get(..written).unwrap_or_default());
        }
        self.bytes = self.bytes.saturating_add(written as u64);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.zip.flush()
    }
}

/// The archive being written, with the list of its files for the manifest.
struct Archive<W: Write + Seek> {
    zip: ZipWriter<W>,
    files: Vec<ExportedFile>,
}

impl<W: Write + Seek> Archive<W> {
    /// Writes one file through `body`; stored files (media) are not compressed. `known` is the
    /// content's SHA-256 when it is known already (a media object's verified upload digest):
    /// the content is then not hashed again.
    fn file(
        &mut self,
        name: &str,
        stored: bool,
        large: bool,
        known: Option<[u8; 32]>,
        body: impl FnOnce(&mut dyn Write) -> Result<(), VaultError>,
    ) -> Result<&ExportedFile, VaultError> {
        let (method, level) = if stored {
            (CompressionMethod::Stored, None)
        } else {
            (CompressionMethod::Deflated, Some(TEXT_COMPRESSION_LEVEL))
        };
        let options = SimpleFileOptions::default()
            .compression_method(method)
            .compression_level(level)
            .large_file(large)
            .unix_permissions(0o600);
        self.zip.start_file(name, options).map_err(zip_error)?;
        let entry = Entry {
            zip: &mut self.zip,
            sha256: known.map_or_else(
                || Sha256::Hashing(digest::Context::new(&digest::SHA256)),
                Sha256::Known,
            ),
            bytes: 0,
        };
        let mut buffered = BufWriter::with_capacity(ENTRY_BUFFER, entry);
        body(&mut buffered)?;
        let entry = buffered
            .into_inner()
            .map_err(|error| io_error(error.into_error()))?;
        let Entry { sha256, bytes, .. } = entry;
        let sha256 = match sha256 {
            Sha256::Known(known) => hex(&known),
            Sha256::Hashing(hash) => hex(hash.finish().as_ref()),
        };
        self.files.push(ExportedFile {
            name: name.to_owned(),
            bytes,
            sha256,
        });
        self.files
            .last()
            .ok_or_else(|| VaultError::ExportIo(io::Error::other("file list empty")))
    }

    /// Writes a pretty-printed JSON file.
    fn json(&mut self, name: &str, value: &impl Serialize) -> Result<(), VaultError> {
        self.file(name, false, false, None, |out| {
            serde_json::to_writer_pretty(&mut *out, value).map_err(json_error)?;
            out.write_all(b"\n").map_err(io_error)
        })?;
        Ok(())
    }
}

/// Writes one CSV line (RFC 4180: fields with a comma, quote or line break are quoted).
fn csv_line(out: &mut dyn Write, fields: &[&str]) -> Result<(), VaultError> {
    for (index, field) in fields.iter().enumerate() {
        if index > 0 {
            out.write_all(b",").map_err(io_error)?;
        }
        if field.contains([',', '"', '\n', '\r']) {
            out.write_all(b"\"").map_err(io_error)?;
            out.write_all(field.replace('"', "\"\"").as_bytes())
                .map_err(io_error)?;
            out.write_all(b"\"").map_err(io_error)?;
        } else {
            out.write_all(field.as_bytes()).map_err(io_error)?;
        }
    }
    out.write_all(b"\r\n").map_err(io_error)
}

/// A value as text: UTF-8 as it is (borrowed), anything else base64 (wiped when dropped).
pub(crate) enum EncodedValue<'a> {
    Utf8(&'a str),
    Base64(Zeroizing<String>),
}

impl EncodedValue<'_> {
    /// `utf8` or `base64`, as the export's `encoding` column says.
    pub(crate) fn encoding(&self) -> &'static str {
        match self {
            Self::Utf8(_) => "utf8",
            Self::Base64(_) => "base64",
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::Utf8(text) => text,
            Self::Base64(text) => text.as_str(),
        }
    }
}

/// A value as text: UTF-8 as it is, anything else base64.
pub(crate) fn encode_value(value: &[u8]) -> EncodedValue<'_> {
    match std::str::from_utf8(value) {
        Ok(text) => EncodedValue::Utf8(text),
        Err(_) => EncodedValue::Base64(Zeroizing::new(
            base64::engine::general_purpose::STANDARD.encode(value),
        )),
    }
}

/// Serializes through `Display` straight into the output, without an intermediate string.
struct Shown<T>(T);

impl<T: std::fmt::Display> Serialize for Shown<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// One line of `records.json`.
#[derive(Serialize)]
struct RecordLine<'a> {
    id: Shown<custodia_core::RecordId>,
    category: &'a str,
    purpose: &'a str,
    collected_at: Shown<Timestamp>,
    expires_at: Option<Shown<Timestamp>>,
    rule: &'a str,
    statutory: bool,
    encoding: &'static str,
    value: &'a str,
}

fn time(at: Timestamp) -> String {
    at.to_string()
}

fn time_or_empty(at: Option<Timestamp>) -> String {
    at.map(time).unwrap_or_default()
}

/// A file extension for a declared content type; `bin` when it is not a common one.
pub fn extension_for(content_type: &str) -> &'static str {
    match content_type.to_ascii_lowercase().as_str() {
        "audio/mpeg" | "audio/mp3" => "mp3",
        "audio/wav" | "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => "wav",
        "audio/mp4" | "audio/x-m4a" | "audio/aac" => "m4a",
        "audio/ogg" | "audio/opus" => "ogg",
        "audio/flac" | "audio/x-flac" => "flac",
        "audio/webm" | "video/webm" => "webm",
        "audio/midi" | "audio/x-midi" => "mid",
        "image/jpeg" | "image/jpg" => "jpg",
        "image/png" => "png",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "image/heic" => "heic",
        "video/mp4" => "mp4",
        "video/quicktime" => "mov",
        "application/pdf" => "pdf",
        "application/json" => "json",
        "text/plain" => "txt",
        "text/csv" => "csv",
        _ => "bin",
    }
}

/// A record decrypted for the export.
struct Decrypted {
    row: RecordRow,
    value: Zeroizing<Vec<u8>>,
}

impl Decrypted {
    /// Writes the record as one line of JSON.
    fn write_json(&self, out: &mut dyn Write) -> Result<(), VaultError> {
        let value = encode_value(&self.value);
        let line = RecordLine {
            id: Shown(self.row.id),
            category: &self.row.category,
            purpose: &self.row.purpose,
            collected_at: Shown(self.row.collected_at),
            expires_at: self.row.expires_at.map(Shown),
            rule: &self.row.rule,
            statutory: self.row.statutory,
            encoding: value.encoding(),
            value: value.as_str(),
        };
        serde_json::to_writer(out, &line).map_err(json_error)
    }
}

impl Vault {
    /// Writes everything held about `subject` to `out` as a zip archive (see the module
    /// documentation) and returns its manifest. Every read is audited, by `actor`. The subject
    /// must exist and not be erased; a subject with media needs the media store.
    pub fn export_subject<W: Write>(
        &self,
        subject: SubjectId,
        out: &mut W,
        actor: &str,
    ) -> Result<ExportManifest, VaultError> {
        let row = self.live_subject(subject)?;
        let view = self.subject(subject)?;
        let now = self.core.clock.now();
        let policy = self.policy();
        let subject_text = subject.to_string();

        let media: Vec<MediaRow> = self
            .core
            .data
            .media_of(subject, None)?
            .into_iter()
            .filter(|media| matches!(media.state, MediaState::Stored | MediaState::Processed))
            .collect();
        let objects = if media.is_empty() {
            None
        } else {
            Some(self.objects.clone().ok_or(VaultError::MediaStoreMissing)?)
        };
        // Everything is read and decrypted before anything is written, and the reads are
        // audited before any plaintext leaves the vault.
        let records = self.decrypt_all(subject, &subject_text)?;
        let consents = self.core.data.consents_of(subject)?;
        let disclosures = self.core.data.disclosures_of(subject)?;
        let requests = self.subject_requests(subject)?;

        let mut per_category: BTreeMap<String, u64> = BTreeMap::new();
        for record in &records {
            *per_category.entry(record.row.category.clone()).or_default() += 1;
        }
        let mut audit = vec![
            self.core
                .event(EventKind::RecordRead, actor)
                .with_subject(&subject_text)
                .with_category(PROFILE_CATEGORY)
                .with_purpose(EXPORT_PURPOSE)
                .with_outcome("export"),
        ];
        for (category, count) in &per_category {
            audit.push(
                self.core
                    .event(EventKind::RecordRead, actor)
                    .with_subject(&subject_text)
                    .with_category(category)
                    .with_purpose(EXPORT_PURPOSE)
                    .with_outcome(format!("export records={count}")),
            );
        }
        if requests.iter().any(|request| request.details.is_some()) {
            audit.push(
                self.core
                    .event(EventKind::RecordRead, actor)
                    .with_subject(&subject_text)
                    .with_category(crate::requests::DETAILS_CATEGORY)
                    .with_purpose(EXPORT_PURPOSE)
                    .with_outcome(format!("export requests={}", requests.len())),
            );
        }
        self.core.data.commit(WriteBatch {
            mutations: Vec::new(),
            audit,
        })?;

        let mut archive = Archive {
            zip: ZipWriter::new_stream(out),
            files: Vec::new(),
        };
        let mut counts = ExportCounts::default();

        let profile = view.profile.as_ref();
        archive.json(
            "profile.json",
            &json!({
                "subject": subject_text,
                "external_id": profile.map(|p| p.external_id.as_str()),
                "jurisdiction": profile.map(|p| p.jurisdiction.as_str()),
                "birth_date": profile.and_then(|p| p.birth_date.as_deref()),
                "age_band": profile.and_then(|p| p.age_band.as_deref()),
                "guardian": profile.and_then(|p| p.guardian.map(|g| g.to_string())),
                "created_at": time(row.created_at),
                "last_active_at": time(row.last_active_at),
                "closed_at": row.closed_at.map(time),
            }),
        )?;

        counts.records = records.len() as u64;
        // The records' tables are rendered on a thread of their own while the media stream
        // (which mostly waits on storage), and written after them.
        let tables = std::thread::Builder::new()
            .name("custodia-export-tables".to_owned())
            .spawn(move || render_records(&records))
            .map_err(io_error)?;

        counts.consents = consents.len() as u64;
        let ledger: Vec<Value> = consents.iter().map(consent_json).collect();
        archive.json("consents.json", &ledger)?;
        for (consent, receipt) in consents.iter().zip(self.receipts_for(&consents)?) {
            archive.json(&format!("receipts/{}.json", consent.id), &receipt)?;
            counts.receipts += 1;
        }

        let mut media_lines = Vec::with_capacity(media.len());
        if let Some(objects) = objects {
            let mut buffer = Zeroizing::new(vec![0u8; COPY_BUFFER]);
            for object in &media {
                let download = self.open_download(
                    objects.clone(),
                    object,
                    0..object.size,
                    EXPORT_PURPOSE,
                    None,
                    actor,
                )?;
                let mut reader = download.reader;
                let name = format!(
                    "media/{}.{}",
                    object.id,
                    extension_for(&object.content_type)
                );
                let large = object.size >= u64::from(u32::MAX);
                let file = archive.file(&name, true, large, download.sha256, |out| {
                    copy_media(&mut reader, out, &mut buffer)
                })?;
                if file.bytes != object.size {
                    return Err(VaultError::MediaCorrupt(object.id));
                }
                counts.media += 1;
                counts.media_bytes = counts.media_bytes.saturating_add(file.bytes);
                media_lines.push((object, name, file.sha256.clone()));
            }
        }
        let tables = tables
            .join()
            .map_err(|_| io_error(io::Error::other("rendering the records failed")))??;
        for (name, table) in [("records.json", &tables.json), ("records.csv", &tables.csv)] {
            let large = table.bytes.len() as u64 >= u64::from(u32::MAX);
            archive.file(name, true, large, Some(table.sha256), |out| {
                out.write_all(&table.bytes).map_err(io_error)
            })?;
        }
        archive.file("media.csv", false, false, None, |out| {
            csv_line(
                out,
                &[
                    "id",
                    "file",
                    "category",
                    "purpose",
                    "content_type",
                    "size",
                    "sha256",
                    "state",
                    "parent",
                    "created_at",
                    "processed_at",
                    "rule",
                    "expires_at",
                    "statutory",
                ],
            )?;
            for (object, name, sha256) in &media_lines {
                csv_line(
                    out,
                    &[
                        &object.id.to_string(),
                        name,
                        &object.category,
                        &object.purpose,
                        &object.content_type,
                        &object.size.to_string(),
                        sha256,
                        object.state.as_str(),
                        &object.parent.map(|p| p.to_string()).unwrap_or_default(),
                        &time(object.created_at),
                        &time_or_empty(object.processed_at),
                        &object.rule,
                        &time_or_empty(object.expires_at),
                        if object.statutory { "true" } else { "false" },
                    ],
                )?;
            }
            Ok(())
        })?;

        counts.disclosures = disclosures.len() as u64;
        let disclosed: Vec<Value> = disclosures.iter().map(disclosure_json).collect();
        archive.json("disclosures.json", &disclosed)?;
        archive.file("disclosures.csv", false, false, None, |out| {
            csv_line(
                out,
                &[
                    "id",
                    "recipient",
                    "recipient_kind",
                    "categories",
                    "purpose",
                    "at",
                    "reference",
                    "country",
                    "mechanism",
                ],
            )?;
            for disclosure in &disclosures {
                csv_line(
                    out,
                    &[
                        &disclosure.id.to_string(),
                        &disclosure.recipient,
                        &disclosure.recipient_kind,
                        &disclosure.categories.join(";"),
                        &disclosure.purpose,
                        &time(disclosure.at),
                        disclosure.reference.as_deref().unwrap_or_default(),
                        disclosure.country.as_deref().unwrap_or_default(),
                        disclosure.mechanism.as_deref().unwrap_or_default(),
                    ],
                )?;
            }
            Ok(())
        })?;

        let mut held: BTreeSet<String> = per_category.into_keys().collect();
        held.extend(media.iter().map(|m| m.category.clone()));
        counts.categories = held.len() as u64;
        let applicable = applicable(&policy, &held, &consents);
        counts.purposes = applicable.purposes;
        counts.retention_rules = applicable.rules;
        archive.json("purposes.json", &applicable.json)?;

        counts.requests = requests.len() as u64;
        let requests: Vec<Value> = requests.iter().map(|r| r.to_json()).collect();
        archive.json("requests.json", &requests)?;

        let manifest = ExportManifest {
            format: EXPORT_FORMAT.to_owned(),
            subject: subject_text,
            policy_version: policy.version.get_ref().clone(),
            generated_at: time(now),
            counts,
            files: archive.files.clone(),
        };
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .compression_level(Some(TEXT_COMPRESSION_LEVEL))
            .unix_permissions(0o600);
        archive
            .zip
            .start_file("manifest.json", options)
            .map_err(zip_error)?;
        serde_json::to_writer_pretty(&mut archive.zip, &manifest).map_err(json_error)?;
        archive.zip.finish().map_err(zip_error)?;
        Ok(manifest)
    }

    /// Every record of the subject, decrypted, oldest first.
    fn decrypt_all(
        &self,
        subject: SubjectId,
        subject_text: &str,
    ) -> Result<Vec<Decrypted>, VaultError> {
        let mut keys: HashMap<KeyId, DataKey> = HashMap::new();
        let mut out = Vec::new();
        for row in self.core.data.records_of(subject, None)? {
            let key = match keys.entry(row.key) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => {
                    entry.insert(self.core.load_key(row.key, subject)?)
                }
            };
            let id_text = row.id.to_string();
            let value = key.open(
                &FieldContext::new(subject_text, &row.category, &id_text),
                &row.ciphertext,
            )?;
            out.push(Decrypted { row, value });
        }
        Ok(out)
    }

    /// The ISO/IEC TS 27560 receipt of each event, each under the version it was given under
    /// (each version parsed once).
    fn receipts_for(&self, consents: &[ConsentRow]) -> Result<Vec<Value>, VaultError> {
        if consents.is_empty() {
            return Ok(Vec::new());
        }
        let history = self.core.data.policy_versions()?;
        let mut policies: HashMap<&str, Arc<Policy>> = HashMap::new();
        let mut receipts = Vec::with_capacity(consents.len());
        for consent in consents {
            let version = consent.policy_version.as_str();
            let policy = match policies.get(version) {
                Some(policy) => policy.clone(),
                None => {
                    let shown = history
                        .iter()
                        .find(|row| row.version == version)
                        .map(|row| crate::published::checked("receipt policy", &row.source))
                        .transpose()?;
                    let policy = shown.map_or_else(|| self.policy(), |c| Arc::new(c.policy));
                    policies.insert(version, policy.clone());
                    policy
                }
            };
            receipts.push(crate::receipt::iso_27560(&policy, consent));
        }
        Ok(receipts)
    }
}

/// A table rendered in memory (wiped when dropped), with its SHA-256.
struct Table {
    bytes: Zeroizing<Vec<u8>>,
    sha256: [u8; 32],
}

impl Table {
    fn of(bytes: Vec<u8>) -> Result<Self, VaultError> {
        let bytes = Zeroizing::new(bytes);
        let sha256 = <[u8; 32]>::try_from(digest::digest(&digest::SHA256, &bytes).as_ref())
            .map_err(|_| io_error(io::Error::other("SHA-256 is not 32 bytes")))?;
        Ok(Self { bytes, sha256 })
    }
}

/// `records.json` and `records.csv`.
struct RecordTables {
    json: Table,
    csv: Table,
}

/// Renders `records.json` and `records.csv`. They are stored in the archive as they are:
/// rendering them beside the media (see [`Vault::export_subject`]) takes them out of the
/// export's time, deflating them would put them back.
fn render_records(records: &[Decrypted]) -> Result<RecordTables, VaultError> {
    let mut json = Vec::with_capacity(records.len().saturating_mul(256));
    json.extend_from_slice(b"[");
    for (index, record) in records.iter().enumerate() {
        json.extend_from_slice(if index == 0 { b"\n  " } else { b",\n  " });
        record.write_json(&mut json)?;
    }
    json.extend_from_slice(b"\n]\n");
    let json = Table::of(json)?;

    let mut csv = Vec::with_capacity(records.len().saturating_mul(160));
    csv_line(
        &mut csv,
        &[
            "id",
            "category",
            "purpose",
            "collected_at",
            "expires_at",
            "rule",
            "statutory",
            "encoding",
            "value",
        ],
    )?;
    for record in records {
        let value = encode_value(&record.value);
        csv_line(
            &mut csv,
            &[
                &record.row.id.to_string(),
                &record.row.category,
                &record.row.purpose,
                &time(record.row.collected_at),
                &time_or_empty(record.row.expires_at),
                &record.row.rule,
                if record.row.statutory {
                    "true"
                } else {
                    "false"
                },
                value.encoding(),
                value.as_str(),
            ],
        )?;
    }
    Ok(RecordTables {
        json,
        csv: Table::of(csv)?,
    })
}

/// Copies a media stream into its entry; a failure of the stream keeps its own code.
fn copy_media(
    reader: &mut dyn Read,
    out: &mut dyn Write,
    buffer: &mut [u8],
) -> Result<(), VaultError> {
    loop {
        let read = match reader.read(buffer) {
            Ok(0) => return Ok(()),
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(VaultError::from_io(error)),
        };
        out.write_all(buffer.get(..read).unwrap_or_default())
            .map_err(io_error)?;
    }
}

fn consent_json(event: &ConsentRow) -> Value {
    json!({
        "id": event.id.to_string(),
        "purposes": event.purposes,
        "kind": event.kind.as_str(),
        "guardian": event.guardian.map(|g| g.to_string()),
        "guardian_verified": event.guardian_verified,
        "policy_version": event.policy_version,
        "method": event.method,
        "at": time(event.at),
        "expires_at": event.expires_at.map(time),
    })
}

fn disclosure_json(disclosure: &DisclosureRow) -> Value {
    json!({
        "id": disclosure.id.to_string(),
        "recipient": disclosure.recipient,
        "recipient_kind": disclosure.recipient_kind,
        "categories": disclosure.categories,
        "purpose": disclosure.purpose,
        "at": time(disclosure.at),
        "reference": disclosure.reference,
        "country": disclosure.country,
        "mechanism": disclosure.mechanism,
    })
}

/// `purposes.json` and what it counts.
struct Applicable {
    json: Value,
    purposes: u64,
    rules: u64,
}

/// The categories held, and the purposes, retention rules and recipients that apply to them.
fn applicable(policy: &Policy, held: &BTreeSet<String>, consents: &[ConsentRow]) -> Applicable {
    let covers = |categories: &[custodia_policy::model::Key]| {
        categories
            .iter()
            .filter(|c| held.contains(c.get_ref().as_str()))
            .map(|c| c.get_ref().clone())
            .collect::<Vec<_>>()
    };
    let categories: Vec<Value> = held
        .iter()
        .map(|key| {
            let declared = policy.category(key);
            let governing = retention::rule_for(policy, key);
            json!({
                "key": key,
                "name": declared.map(|c| c.display_name().to_owned()),
                "sensitive": declared.is_some_and(|c| c.sensitive),
                "retention_rule": governing.map(|g| g.id()),
                "purposes": policy
                    .purposes
                    .iter()
                    .filter(|p| p.categories.iter().any(|c| c.get_ref() == key))
                    .map(|p| p.key.get_ref().clone())
                    .collect::<Vec<_>>(),
                "recipients": policy
                    .processors
                    .iter()
                    .filter(|p| p.categories.iter().any(|c| c.get_ref() == key))
                    .map(|p| p.name.get_ref().clone())
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    let purposes: Vec<Value> = policy
        .purposes
        .iter()
        .filter_map(|purpose| {
            let used = covers(&purpose.categories);
            if used.is_empty() {
                return None;
            }
            let key = purpose.key.get_ref();
            let latest = consents
                .iter()
                .rev()
                .find(|event| event.purposes.iter().any(|p| p == key))
                .map(|event| event.kind.as_str());
            Some(json!({
                "key": key,
                "name": purpose.display_name(),
                "description": purpose.description,
                "legal_basis": serde_json::to_value(purpose.basis.get_ref()).unwrap_or(Value::Null),
                "optional": purpose.optional,
                "automated_decision": purpose.automated_decision,
                "categories": used,
                "latest_consent_event": latest,
            }))
        })
        .collect();
    let mut seen = BTreeSet::new();
    let rules: Vec<Value> = held
        .iter()
        .filter_map(|key| retention::rule_for(policy, key))
        .filter(|governing| seen.insert(governing.index))
        .map(|governing| {
            let rule = governing.rule;
            json!({
                "id": governing.id(),
                "categories": covers(&rule.categories),
                "keep": rule.keep.get_ref().to_string(),
                "after": serde_json::to_value(rule.after).unwrap_or(Value::Null),
                "in_words": format!("{} {}", rule.keep.get_ref().to_words(), rule.after.to_words()),
                "statutory": rule.statutory,
                "legal_source": rule.legal_source,
                "description": rule.description,
            })
        })
        .collect();
    Applicable {
        purposes: purposes.len() as u64,
        rules: rules.len() as u64,
        json: json!({
            "policy_version": policy.version.get_ref(),
            "categories": categories,
            "purposes": purposes,
            "retention": rules,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_what_needs_it() {
        let mut out = Vec::new();
        csv_line(&mut out, &["plain", "a,b", "say \"hi\"", "two\nlines"]).ok();
        assert_eq!(
            String::from_utf8(out).ok().as_deref(),
            Some("plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\"\r\n")
        );
    }

    #[test]
    fn values_are_text_or_base64() {
        assert_eq!(encode_value(b"hello").encoding(), "utf8");
        let text = encode_value(&[0xff, 0x00]);
        assert_eq!((text.encoding(), text.as_str()), ("base64", "/wA="));
        assert_eq!(extension_for("audio/MPEG"), "mp3");
        assert_eq!(extension_for("application/x-unknown"), "bin");
        assert_eq!(hex(&[0x0a, 0xff]), "0aff");
    }
}
