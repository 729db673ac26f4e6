//! Opening the vault the way every serving command does: the stores from `--data`/`--database`,
//! the root key, and the policy file from `--policy`, `CUSTODIA_POLICY`, or `DATA/policy.toml`,
//! which the first start creates from the built-in sample policy; and the media object store
//! (`--objects`) for the commands that touch media.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use custodia_core::SystemClock;
use custodia_objects::ObjectStore;
use custodia_vault::Vault;

use crate::stores::StoreArgs;

/// The sample policy a first start runs under: the DeepPiano operator's file.
pub const SAMPLE_POLICY: &str = include_str!("../../../examples/deeppiano.toml");

/// Stores plus the policy.
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    #[command(flatten)]
    pub stores: StoreArgs,
    /// The policy file (default: DATA/policy.toml, created from the sample policy on first
    /// start).
    #[arg(long, env = "CUSTODIA_POLICY")]
    pub policy: Option<PathBuf>,
}

/// Why the vault could not be opened, with a stable code.
#[derive(Debug)]
pub struct OpenError {
    /// The code.
    pub code: String,
    /// The message.
    pub message: String,
}

impl OpenError {
    fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

impl EngineArgs {
    /// The policy file to use, writing the sample policy into the data directory when neither a
    /// file is named nor one exists there yet. Returns the path and whether it was created.
    pub fn resolve_policy(&self) -> Result<(PathBuf, bool), OpenError> {
        if let Some(path) = &self.policy {
            return Ok((path.clone(), false));
        }
        let data = self.stores.data_dir();
        let path = data.join("policy.toml");
        if path.exists() {
            return Ok((path, false));
        }
        create_private_dir(&data)?;
        std::fs::write(&path, SAMPLE_POLICY).map_err(|err| {
            OpenError::new(
                "config.data_dir",
                format!(
                    "cannot write the sample policy to {}: {err}",
                    path.display()
                ),
            )
        })?;
        Ok((path, true))
    }

    /// Opens the vault under the policy (which must check clean).
    pub fn open(&self) -> Result<Vault, OpenError> {
        let (path, _) = self.resolve_policy()?;
        self.open_with(&path)
    }

    /// Opens the vault under the policy at `path`.
    pub fn open_with(&self, path: &Path) -> Result<Vault, OpenError> {
        let checked = custodia_policy::load(path)
            .map_err(|err| OpenError::new(err.code(), err.to_string()))?;
        if !checked.is_clean() {
            return Err(OpenError::new(
                "policy.not_clean",
                format!(
                    "{} has {} finding(s); run `custodia policy check {}`",
                    path.display(),
                    checked.findings.len(),
                    path.display()
                ),
            ));
        }
        if self.stores.database.is_none() {
            create_private_dir(&self.stores.data_dir())?;
        }
        let (data, keys) = self
            .stores
            .open()
            .map_err(|err| OpenError::new(err.code(), err.to_string()))?;
        Vault::open(
            data,
            keys,
            checked,
            Arc::new(SystemClock),
            &self.stores.root_key(),
        )
        .map_err(|err| OpenError::new(err.code(), err.to_string()))
    }
}

/// Where media objects are kept, for the commands that touch media (`serve`, `sweep`).
#[derive(Debug, Clone, Args)]
pub struct ObjectArgs {
    /// The media object store: a directory (a path or `file:DIR`) or
    /// `s3://bucket/prefix?endpoint=…&region=…` [default: DATA/objects].
    #[arg(long = "objects", env = "CUSTODIA_OBJECTS_URL")]
    pub objects: Option<String>,
}

/// Where media objects are kept when no store is named: `DATA/objects`.
pub fn default_objects_dir(data: &Path) -> PathBuf {
    data.join("objects")
}

/// Opens the media object store `url` names (see [`custodia_objects::open_url`]), or the
/// directory `DATA/objects` when it names none. A file-system store removes what crashed puts
/// left in its staging directory as it opens. Errors never quote the URL: it may carry
/// credentials.
pub fn open_objects(url: Option<&str>, data: &Path) -> Result<Arc<dyn ObjectStore>, OpenError> {
    let opened = match url {
        Some(url) => custodia_objects::open_url(url),
        None => custodia_objects::FsObjectStore::open(default_objects_dir(data))
            .map(|store| Arc::new(store) as Arc<dyn ObjectStore>),
    };
    opened.map_err(|err| {
        OpenError::new(
            err.code(),
            format!("cannot open the media object store (--objects, CUSTODIA_OBJECTS_URL): {err}"),
        )
    })
}

/// Creates the data directory, readable by its owner only.
pub fn create_private_dir(dir: &Path) -> Result<(), OpenError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|err| {
            OpenError::new(
                "config.data_dir",
                format!("cannot create the data directory {}: {err}", dir.display()),
            )
        })
}
