//! Reading and creating root-key files: 64 hex characters and a newline, mode 0600.
//!
//! A key file is the whole secret of the vault, so a file that group or others can access is
//! refused rather than used with a warning, and errors name the path and mode, never the content.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

use zeroize::Zeroizing;

use crate::error::CryptoError;
use crate::secret::{HEX_LEN, SecretKey};

/// Longest content accepted: the key with generous room for whitespace around it.
const MAX_LEN: usize = 2 * HEX_LEN;

/// Creates `path`, which must not exist, holding `key`; on Unix with mode 0600 from the start, so
/// the key is never readable by others, not even briefly.
pub(crate) fn create(path: &Path, key: &SecretKey) -> Result<(), CryptoError> {
    let io_error = |source| CryptoError::KeyFileIo {
        path: path.to_owned(),
        source,
    };
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io_error)?;

    let mut line = key.to_hex();
    line.push('\n');
    let written = file
        .write_all(line.as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(source) = written {
        // A half-written key file would be refused at the next start, and `create_new` would
        // refuse to replace it: remove it so the operator can simply retry.
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(io_error(source));
    }
    sync_parent(path).map_err(io_error)
}

/// Makes the new directory entry durable: losing the key file in a crash loses the vault.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let parent = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        File::open(parent)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

/// Reads the key in `path`, refusing a file that group or others may access.
pub(crate) fn read(path: &Path) -> Result<SecretKey, CryptoError> {
    let io_error = |source| CryptoError::KeyFileIo {
        path: path.to_owned(),
        source,
    };
    let content_error = |reason| CryptoError::KeyFileContent {
        path: path.to_owned(),
        reason,
    };
    let file = File::open(path).map_err(io_error)?;
    // Checked on the open handle, not the path, so the file cannot be swapped in between.
    let metadata = file.metadata().map_err(io_error)?;
    if !metadata.is_file() {
        return Err(content_error("not a regular file"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(CryptoError::KeyFilePermissions {
                path: path.to_owned(),
                mode,
            });
        }
    }

    // Room for more than `take` lets through, so the buffer never grows: a reallocation would
    // leave a copy of the key behind that `Zeroizing` cannot wipe.
    let mut content = Zeroizing::new(Vec::with_capacity(2 * MAX_LEN));
    file.take(MAX_LEN as u64 + 1)
        .read_to_end(&mut content)
        .map_err(io_error)?;
    if content.len() > MAX_LEN {
        return Err(content_error("too large to be a key file"));
    }
    let text = std::str::from_utf8(&content).map_err(|_| content_error("not text"))?;
    SecretKey::from_hex(text.trim_ascii()).map_err(content_error)
}
