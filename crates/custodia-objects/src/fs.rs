//! The file system store, the embedded default: one file per object at `ROOT/<key>`, each key
//! segment a directory or file name (keys are validated so that this mapping cannot leave the
//! root). Directories are created `0700` and files `0600`: only the service's user reads media.
//!
//! A put streams into a temporary file in `ROOT/.staging`, fsyncs it, renames it over the
//! target and fsyncs the target's directory, so the object appears whole or not at all, and an
//! acknowledged put survives a crash. The staging directory is on the same file system as every
//! object (it is inside the root), which is what makes the rename atomic; keeping temporary
//! files in one place rather than beside each object means a crash's leftovers are found and
//! removed ([`FsObjectStore::remove_stale_temp_files`], run on open) without walking the tree,
//! and listing never sees them (no key segment starts with a dot).
//!
//! A put larger than one buffer (about 1 MiB) overlaps its work: the calling thread reads (for
//! media, seals) the source while a helper thread writes what was read before, and the bytes
//! written start on their way to disk every few megabytes (`fdatasync` on another helper), so
//! the fsync that acknowledges the put waits for its last megabytes, not for all of it. At most
//! four buffers are in flight, whatever the object's size.

use std::fs::{self, DirBuilder, File, Permissions};
use std::io::{self, ErrorKind, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, SystemTime};

use crate::key::{self, ObjectKey};
use crate::{ObjectError, ObjectReader, ObjectStore, PutReceipt, fill};

/// The directory, inside the root, that holds puts in progress.
pub const STAGING_DIR: &str = ".staging";

/// How long a temporary file must have gone unmodified before [`FsObjectStore::open`] treats it
/// as a crashed put's leftover. A live put writes continuously, so an hour of silence is a
/// crash, not a slow upload.
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(60 * 60);

const TEMP_PREFIX: &str = ".put-";

/// A put writes in buffers of about 1 MiB: one syscall per megabyte, flat memory. The size is a
/// multiple of a sealed media chunk (64 KiB of plaintext and a 16-byte tag), so a sealing
/// source seals whole chunks straight into it.
const COPY_BUFFER: usize = 16 * (64 * 1024 + 16);

/// Filled buffers a put may have waiting for its writer thread. With the one being filled and
/// the one being written, a large put holds at most `PIPELINE_DEPTH + 2` buffers (4 MiB).
const PIPELINE_DEPTH: usize = 2;

/// A put larger than one buffer starts moving its bytes to disk every this many bytes
/// (`fdatasync` on a helper thread, while the writes go on), so the fsync that acknowledges it
/// waits for the last few megabytes rather than for the whole object.
const EARLY_FLUSH_EVERY: u64 = 8 * 1024 * 1024;

/// How often a put re-creates its directories when a concurrent delete pruned them between
/// creation and rename.
const RENAME_ATTEMPTS: usize = 3;

/// Objects as files under a root directory.
#[derive(Debug)]
pub struct FsObjectStore {
    root: PathBuf,
    staging: PathBuf,
}

impl FsObjectStore {
    /// Opens (creating it `0700` if missing) the store rooted at `dir`, and removes temporary
    /// files left by puts that crashed more than [`STALE_TEMP_AGE`] ago.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, ObjectError> {
        let root = dir.as_ref().to_path_buf();
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .map_err(ObjectError::Io)?;
        if !fs::metadata(&root).map_err(ObjectError::Io)?.is_dir() {
            return Err(ObjectError::invalid_config(
                "the object store path is not a directory",
            ));
        }
        let staging = root.join(STAGING_DIR);
        match DirBuilder::new().mode(0o700).create(&staging) {
            Ok(()) => sync_dir(&root).map_err(ObjectError::Io)?,
            Err(err) if err.kind() == ErrorKind::AlreadyExists => {}
            Err(err) => return Err(ObjectError::Io(err)),
        }
        let store = Self { root, staging };
        store.remove_stale_temp_files(STALE_TEMP_AGE)?;
        Ok(store)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Removes temporary files not modified for `older_than` (puts that crashed) and returns
    /// how many. A put still writing to a file younger than that is not disturbed.
    pub fn remove_stale_temp_files(&self, older_than: Duration) -> Result<usize, ObjectError> {
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in fs::read_dir(&self.staging).map_err(ObjectError::Io)? {
            let entry = entry.map_err(ObjectError::Io)?;
            let is_temp = entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.starts_with(TEMP_PREFIX));
            let Ok(meta) = entry.metadata() else {
                // Gone already: its put finished or failed meanwhile.
                continue;
            };
            if !is_temp || !meta.is_file() {
                continue;
            }
            let age = meta
                .modified()
                .ok()
                .and_then(|modified| now.duration_since(modified).ok())
                .unwrap_or(Duration::ZERO);
            if age >= older_than {
                match fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(err) if err.kind() == ErrorKind::NotFound => {}
                    Err(err) => return Err(ObjectError::Io(err)),
                }
            }
        }
        Ok(removed)
    }

    fn path_of(&self, key: &ObjectKey) -> PathBuf {
        let mut path = self.root.clone();
        path.extend(key.segments());
        path
    }

    /// Creates the directories above `key`'s file, fsyncing the parent of each new one so the
    /// object's path survives a crash along with the object.
    fn create_parents(&self, key: &ObjectKey) -> io::Result<PathBuf> {
        let mut dir = self.root.clone();
        let mut segments = key.segments().peekable();
        while let Some(segment) = segments.next() {
            if segments.peek().is_none() {
                break;
            }
            dir.push(segment);
            match DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => sync_dir(dir.parent().unwrap_or(&self.root))?,
                Err(err) if err.kind() == ErrorKind::AlreadyExists => {}
                Err(err) => return Err(err),
            }
        }
        Ok(dir)
    }

    /// Opens the object's file, `None` when there is no object (a missing path, a directory, or
    /// a path through a file).
    fn open_object(&self, key: &ObjectKey) -> Result<Option<(File, u64)>, ObjectError> {
        let file = match File::open(self.path_of(key)) {
            Ok(file) => file,
            Err(err) if is_absent(&err) => return Ok(None),
            Err(err) => return Err(ObjectError::Io(err)),
        };
        let meta = file.metadata().map_err(ObjectError::Io)?;
        Ok(meta.is_file().then_some((file, meta.len())))
    }

    /// Removes directories emptied by a delete, up to (not including) the root, so erased
    /// subjects leave no empty directory named after them. Best effort: a directory that is
    /// not empty, or just got a new object, stays.
    fn prune_empty_parents(&self, path: &Path) {
        let mut dir = path.parent();
        while let Some(current) = dir {
            if current == self.root || !current.starts_with(&self.root) {
                break;
            }
            if fs::remove_dir(current).is_err() {
                break;
            }
            dir = current.parent();
        }
    }
}

impl ObjectStore for FsObjectStore {
    fn put(&self, key: &ObjectKey, source: &mut dyn io::Read) -> Result<PutReceipt, ObjectError> {
        // Until `persist` succeeds, the temporary file is deleted whenever it is dropped: on
        // every error path below, and during unwinding.
        let mut temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .permissions(Permissions::from_mode(0o600))
            .tempfile_in(&self.staging)
            .map_err(ObjectError::Io)?;
        let size = copy(source, temp.as_file())?;
        temp.as_file().sync_all().map_err(ObjectError::Io)?;
        let target = self.path_of(key);
        let conflict_or_io = |err: io::Error| match err.kind() {
            ErrorKind::NotADirectory | ErrorKind::IsADirectory => ObjectError::Conflict {
                key: key.as_str().to_owned(),
            },
            _ => ObjectError::Io(err),
        };
        let mut attempt = 1;
        loop {
            let parent = self.create_parents(key).map_err(conflict_or_io)?;
            match temp.persist(&target) {
                Ok(_file) => {
                    sync_dir(&parent).map_err(ObjectError::Io)?;
                    return Ok(PutReceipt { size });
                }
                Err(err)
                    if err.error.kind() == ErrorKind::NotFound && attempt < RENAME_ATTEMPTS =>
                {
                    temp = err.file;
                    attempt += 1;
                }
                Err(err) => return Err(conflict_or_io(err.error)),
            }
        }
    }

    fn get(&self, key: &ObjectKey) -> Result<ObjectReader, ObjectError> {
        match self.open_object(key)? {
            Some((file, _)) => Ok(Box::new(file)),
            None => Err(ObjectError::not_found(key)),
        }
    }

    fn get_range(
        &self,
        key: &ObjectKey,
        start: u64,
        len: u64,
    ) -> Result<ObjectReader, ObjectError> {
        let Some((mut file, size)) = self.open_object(key)? else {
            return Err(ObjectError::not_found(key));
        };
        if start > size {
            return Err(ObjectError::InvalidRange { start, len, size });
        }
        file.seek(SeekFrom::Start(start)).map_err(ObjectError::Io)?;
        Ok(Box::new(io::Read::take(file, len)))
    }

    fn size(&self, key: &ObjectKey) -> Result<Option<u64>, ObjectError> {
        match fs::metadata(self.path_of(key)) {
            Ok(meta) => Ok(meta.is_file().then_some(meta.len())),
            Err(err) if is_absent(&err) => Ok(None),
            Err(err) => Err(ObjectError::Io(err)),
        }
    }

    fn delete(&self, key: &ObjectKey) -> Result<(), ObjectError> {
        let path = self.path_of(key);
        match fs::remove_file(&path) {
            Ok(()) => {}
            // A directory is not an object: there is nothing to delete.
            Err(err) if is_absent(&err) || err.kind() == ErrorKind::IsADirectory => return Ok(()),
            Err(err) => return Err(ObjectError::Io(err)),
        }
        // An erasure must not come back after a crash.
        if let Some(parent) = path.parent() {
            sync_dir(parent).map_err(ObjectError::Io)?;
        }
        self.prune_empty_parents(&path);
        Ok(())
    }

    fn list(&self, prefix: &ObjectKey) -> Result<Vec<ObjectKey>, ObjectError> {
        let mut keys = Vec::new();
        let mut pending = vec![(self.path_of(prefix), prefix.clone(), 1usize)];
        while let Some((dir, dir_key, depth)) = pending.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(err) if is_absent(&err) => continue,
                Err(err) => return Err(ObjectError::Io(err)),
            };
            for entry in entries {
                let entry = entry.map_err(ObjectError::Io)?;
                let name = entry.file_name();
                let Some(name) = name.to_str().filter(|name| key::is_valid_segment(name)) else {
                    continue;
                };
                let Ok(child) = dir_key.child(name) else {
                    // Deeper or longer than any key: not something this store wrote.
                    continue;
                };
                // `file_type` does not follow symbolic links, and neither does the store.
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_file() {
                    keys.push(child);
                } else if kind.is_dir() && depth < key::MAX_SEGMENTS {
                    pending.push((entry.path(), child, depth + 1));
                }
            }
        }
        keys.sort();
        Ok(keys)
    }
}

/// Copies `source` into `file`, telling the source's failures from the file's. An object that
/// fits one buffer is written here; a larger one is read (on this thread: the source need not
/// be `Send`) while a writer thread writes what was read before, and a flusher thread starts
/// its early bytes on their way to disk (see [`EARLY_FLUSH_EVERY`]). Every byte is written in
/// order before this returns; the caller still fsyncs the file.
fn copy(source: &mut dyn io::Read, file: &File) -> Result<u64, ObjectError> {
    let mut buffer = vec![0; COPY_BUFFER];
    let first = fill(source, &mut buffer)?.len();
    if first < COPY_BUFFER {
        return copy_in_turn(source, file, &mut buffer, first);
    }
    thread::scope(|scope| {
        let (flush_tx, flush_rx) = mpsc::sync_channel::<()>(1);
        let (full_tx, full_rx) = mpsc::sync_channel::<Vec<u8>>(PIPELINE_DEPTH);
        let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
        // Without a flusher (no thread to be had), the writer's requests go nowhere: the final
        // fsync does all the flushing.
        let flusher = thread::Builder::new()
            .name("custodia-put-flush".to_owned())
            .spawn_scoped(scope, move || -> io::Result<()> {
                for () in flush_rx {
                    file.sync_data()?;
                }
                Ok(())
            })
            .ok();
        let writer = thread::Builder::new()
            .name("custodia-put-write".to_owned())
            .spawn_scoped(scope, move || -> io::Result<()> {
                let mut unflushed = 0u64;
                for buffer in full_rx {
                    (&*file).write_all(&buffer)?;
                    unflushed += buffer.len() as u64;
                    // Skipped while the flusher is still busy: its next flush covers these too.
                    if unflushed >= EARLY_FLUSH_EVERY && flush_tx.try_send(()).is_ok() {
                        unflushed = 0;
                    }
                    // The reader may be gone already; the buffer is then simply dropped.
                    let _ = empty_tx.send(buffer);
                }
                Ok(())
            });
        let (read, written) = match writer {
            Ok(writer) => {
                let read = feed(source, buffer, &full_tx, &empty_rx);
                // The writer ends once it has written everything sent, or at its first failure.
                drop(full_tx);
                (read, join(writer))
            }
            // No thread to be had: write in turn.
            Err(_) => (copy_in_turn(source, file, &mut buffer, first), Ok(())),
        };
        let flushed = flusher.map_or(Ok(()), join);
        // A failed write or early flush is the store's failure, whatever the source did after.
        written.map_err(ObjectError::Io)?;
        flushed.map_err(ObjectError::Io)?;
        read
    })
}

/// Writes the first `first` bytes of `buffer`, then copies the rest of `source` through it.
fn copy_in_turn(
    source: &mut dyn io::Read,
    mut file: &File,
    buffer: &mut [u8],
    first: usize,
) -> Result<u64, ObjectError> {
    let mut chunk = buffer.get(..first).unwrap_or_default();
    let mut total = 0u64;
    while !chunk.is_empty() {
        file.write_all(chunk).map_err(ObjectError::Io)?;
        total += chunk.len() as u64;
        chunk = fill(source, buffer)?;
    }
    Ok(total)
}

/// Reads `source` into buffers for the writer, starting with the already full `first`; returns
/// the bytes read. At most `PIPELINE_DEPTH + 2` buffers exist at any time: spent ones come back
/// on `empty`. Stops early, without error, if the writer has failed (it reports why).
fn feed(
    source: &mut dyn io::Read,
    first: Vec<u8>,
    full: &mpsc::SyncSender<Vec<u8>>,
    empty: &mpsc::Receiver<Vec<u8>>,
) -> Result<u64, ObjectError> {
    let mut total = first.len() as u64;
    if full.send(first).is_err() {
        return Ok(total);
    }
    // Every buffer is allocated before any is reused, so that a large put's memory is the
    // same whatever the timing of its threads.
    let mut unallocated = PIPELINE_DEPTH + 1;
    loop {
        let mut buffer = if unallocated > 0 {
            unallocated -= 1;
            vec![0; COPY_BUFFER]
        } else {
            match empty.recv() {
                Ok(buffer) => buffer,
                Err(_) => return Ok(total),
            }
        };
        let len = fill(source, &mut buffer)?.len();
        if len == 0 {
            return Ok(total);
        }
        buffer.truncate(len);
        total += len as u64;
        if full.send(buffer).is_err() || len < COPY_BUFFER {
            return Ok(total);
        }
    }
}

/// A helper thread's result; a panic (there is none to expect) becomes an I/O error.
fn join(handle: thread::ScopedJoinHandle<'_, io::Result<()>>) -> io::Result<()> {
    handle
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("a put's helper thread panicked")))
}

/// Whether an I/O error means "no such object" rather than a failure.
fn is_absent(err: &io::Error) -> bool {
    matches!(err.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
