//! Any S3-compatible store (AWS S3, MinIO, Ceph, Garage, moto), through the `object_store`
//! crate, named by a URL:
//!
//! ```text
//! s3://BUCKET[/PREFIX]?endpoint=http://127.0.0.1:9000&region=us-east-1&allow_http=true
//! ```
//!
//! Query parameters are `object_store`'s S3 settings by name (`endpoint`, `region`,
//! `allow_http`, `access_key_id`, `secret_access_key`, `session_token`,
//! `virtual_hosted_style_request`, …); `AWS_*` environment variables supply the rest and URL
//! parameters win over them. Every key is stored under `PREFIX/`.
//!
//! Puts are atomic and stream: an object smaller than one part goes up in a single PUT;
//! anything larger becomes a multipart upload of [`S3Options::part_size`] parts, reading the
//! next part while the previous one uploads (so two parts are in memory at most), completed
//! only once every part is stored and aborted on any error. Until completion S3 shows nothing
//! under the key. A process that dies mid-upload leaves only invisible parts, which the
//! bucket's `AbortIncompleteMultipartUpload` lifecycle rule should reclaim.
//!
//! Gets stream too: a task on the store's runtime pulls the response body into a short
//! bounded channel that the returned reader drains, so the next chunk downloads while the
//! caller works on this one.
//!
//! Errors from below are scrubbed of the configured access key id, secret and session token
//! (S3 error bodies quote the access key id and, in a canonical request, the session token).

use std::fmt;
use std::future::{Future, poll_fn};
use std::io::{self, Read};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, GetResult, MultipartUpload,
    ObjectStore as _, PutMultipartOptions, PutOptions, PutPayload, RetryConfig,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use url::Url;

use crate::bridge::{self, Bridge};
use crate::{ObjectError, ObjectKey, ObjectReader, ObjectStore, PutReceipt, fill};

/// S3's smallest part (except the last one of an upload).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// S3's largest part.
pub const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;

/// How many downloaded chunks wait for the reader: enough to keep the connection busy while
/// the caller works, few enough to keep memory flat (a chunk is at most a few hundred KiB).
const READ_AHEAD_CHUNKS: usize = 8;

/// Longest error detail kept: S3 error bodies can be long XML documents.
const MAX_DETAIL: usize = 1000;

/// Tuning for [`S3ObjectStore`]. The defaults suit a server; tests shorten the retries.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct S3Options {
    /// Size of multipart parts, and the threshold above which a put uses them (5 MiB to 5 GiB).
    pub part_size: usize,
    /// Worker threads of the store's runtime.
    pub runtime_threads: usize,
    /// How long to wait for a TCP connection.
    pub connect_timeout: Duration,
    /// How long a response may go without a byte before the request fails (and is retried).
    pub read_timeout: Duration,
    /// How long one request that is not a download body (a part, a small put, a listing) may
    /// take in all, retries included. Downloads have no overall limit: a slow reader is fine.
    pub operation_timeout: Duration,
    /// How often a failed request (connection error, timeout, 5xx) is retried.
    pub max_retries: usize,
    /// How long after its first attempt a request is no longer retried.
    pub retry_timeout: Duration,
}

impl Default for S3Options {
    fn default() -> Self {
        Self {
            part_size: 8 * 1024 * 1024,
            runtime_threads: 2,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            operation_timeout: Duration::from_secs(5 * 60),
            max_retries: 5,
            retry_timeout: Duration::from_secs(60),
        }
    }
}

impl S3Options {
    /// These options with `max_retries` retries of a failed request (0 for none).
    pub fn with_max_retries(mut self, max_retries: usize) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// These options with another part size.
    pub fn with_part_size(mut self, part_size: usize) -> Self {
        self.part_size = part_size;
        self
    }

    /// These options with another connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}

/// Objects in an S3 bucket, under an optional prefix.
pub struct S3ObjectStore {
    store: Arc<AmazonS3>,
    bucket: String,
    prefix: Option<String>,
    options: S3Options,
    bridge: Arc<Bridge>,
    scrubber: Arc<Scrubber>,
}

impl fmt::Debug for S3ObjectStore {
    // By hand: the client's own `Debug` shows its credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3ObjectStore")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("part_size", &self.options.part_size)
            .finish_non_exhaustive()
    }
}

impl S3ObjectStore {
    /// Connects to the store `url` names (see the module docs). Performs no request: a store
    /// that cannot be reached fails its first operation with [`ObjectError::Unavailable`].
    pub fn connect(url: &str, options: &S3Options) -> Result<Self, ObjectError> {
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&options.part_size) {
            return Err(ObjectError::invalid_config(
                "the S3 part size must be between 5 MiB and 5 GiB",
            ));
        }
        let url =
            Url::parse(url).map_err(|_| ObjectError::invalid_config("the S3 URL is malformed"))?;
        if url.scheme() != "s3" {
            return Err(ObjectError::invalid_config("an S3 URL starts with s3://"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ObjectError::invalid_config(
                "S3 credentials go in the access_key_id and secret_access_key parameters or \
                 AWS_* variables, not in the URL's user part",
            ));
        }
        if url.fragment().is_some() {
            return Err(ObjectError::invalid_config("an S3 URL has no #fragment"));
        }
        let bucket = url
            .host_str()
            .filter(|host| !host.is_empty())
            .ok_or_else(|| ObjectError::invalid_config("the S3 URL names no bucket"))?
            .to_owned();
        let prefix = match url.path().trim_matches('/') {
            "" => None,
            path => Some(
                ObjectKey::new(path)
                    .map_err(|_| {
                        ObjectError::invalid_config(
                            "the S3 URL's path is not a valid key prefix (letters, digits, \
                             '-', '_', '.' and '/')",
                        )
                    })?
                    .as_str()
                    .to_owned(),
            ),
        };

        let client = ClientOptions::new()
            .with_timeout_disabled()
            .with_connect_timeout(options.connect_timeout)
            .with_read_timeout(options.read_timeout);
        let retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: options.max_retries,
            retry_timeout: options.retry_timeout,
        };
        let mut builder = AmazonS3Builder::new()
            .with_client_options(client)
            .with_retry(retry);
        // What `AmazonS3Builder::from_env` does, after the client options rather than before,
        // so that `AWS_ALLOW_HTTP` and the like are not overwritten by them.
        for (name, value) in std::env::vars_os() {
            let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else {
                continue;
            };
            if name.starts_with("AWS_")
                && let Ok(key) = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>()
            {
                builder = builder.with_config(key, value);
            }
        }
        for (position, (name, value)) in url.query_pairs().enumerate() {
            // The name is not quoted: a secret pasted where a name belongs would be.
            let key = name.parse::<AmazonS3ConfigKey>().map_err(|_| {
                ObjectError::invalid_config(format!(
                    "S3 URL parameter number {} is not an S3 setting (endpoint, region, \
                     allow_http, access_key_id, secret_access_key, session_token, …)",
                    position + 1
                ))
            })?;
            builder = builder.with_config(key, value.into_owned());
        }
        builder = builder.with_bucket_name(bucket.as_str());
        let scrubber = Arc::new(Scrubber::new(
            [
                AmazonS3ConfigKey::AccessKeyId,
                AmazonS3ConfigKey::SecretAccessKey,
                AmazonS3ConfigKey::Token,
            ]
            .iter()
            .filter_map(|key| builder.get_config_value(key)),
        ));
        let store = builder.build().map_err(|err| ObjectError::InvalidConfig {
            reason: scrubber.describe(&err),
        })?;
        Ok(Self {
            store: Arc::new(store),
            bucket,
            prefix,
            options: options.clone(),
            bridge: Bridge::new(options.runtime_threads)?,
            scrubber,
        })
    }

    fn path(&self, key: &ObjectKey) -> Result<Path, ObjectError> {
        let text = match &self.prefix {
            Some(prefix) => format!("{prefix}/{key}"),
            None => key.as_str().to_owned(),
        };
        Path::parse(text).map_err(|_| ObjectError::InvalidKey {
            reason: "the key is not a valid S3 object name",
        })
    }

    /// Runs one request on the store's runtime, bounded by the operation timeout.
    fn request<F, T>(&self, request: F) -> Result<Result<T, object_store::Error>, ObjectError>
    where
        F: Future<Output = Result<T, object_store::Error>> + Send + 'static,
        T: Send + 'static,
    {
        let limit = self.options.operation_timeout;
        let outcome = self
            .bridge
            .run(async move { tokio::time::timeout(limit, request).await })?;
        outcome.map_err(|_| ObjectError::Unavailable {
            detail: format!("the request did not finish within {}s", limit.as_secs_f32()),
        })
    }

    /// Starts one request on the store's runtime without waiting for it.
    fn start<F>(&self, request: F) -> JoinHandle<Result<(), ObjectError>>
    where
        F: Future<Output = Result<(), object_store::Error>> + Send + 'static,
    {
        let limit = self.options.operation_timeout;
        let scrubber = Arc::clone(&self.scrubber);
        self.bridge.spawn(async move {
            match tokio::time::timeout(limit, request).await {
                Ok(result) => result.map_err(|err| scrubber.convert(err, None)),
                Err(_) => Err(ObjectError::Unavailable {
                    detail: format!("a part did not upload within {}s", limit.as_secs_f32()),
                }),
            }
        })
    }

    fn head(&self, key: &ObjectKey) -> Result<Option<u64>, ObjectError> {
        let store = Arc::clone(&self.store);
        let path = self.path(key)?;
        let options = GetOptions::new().with_head(true);
        match self.request(async move { store.get_opts(&path, options).await })? {
            Ok(result) => Ok(Some(result.meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(self.scrubber.convert(err, Some(key))),
        }
    }

    /// A reader draining `result`'s body, which a task on the store's runtime downloads ahead.
    fn reader(&self, result: GetResult) -> ObjectReader {
        let expected = result.range.end.saturating_sub(result.range.start);
        let mut body = result.into_stream();
        let (sender, receiver) = mpsc::channel(READ_AHEAD_CHUNKS);
        self.bridge.spawn(async move {
            while let Some(chunk) = poll_fn(|cx| body.as_mut().poll_next(cx)).await {
                let failed = chunk.is_err();
                // A closed channel means the reader was dropped: stop downloading.
                if sender.send(chunk).await.is_err() || failed {
                    break;
                }
            }
        });
        Box::new(S3Reader {
            receiver,
            chunk: Bytes::new(),
            remaining: expected,
            finished: false,
            scrubber: Arc::clone(&self.scrubber),
            _bridge: Arc::clone(&self.bridge),
        })
    }

    /// Uploads `first` (a full part) and the rest of `source` as parts of `upload`, keeping at
    /// most one part in flight while the next one is read. Returns the object's size.
    fn upload_parts(
        &self,
        upload: &mut dyn MultipartUpload,
        first: Vec<u8>,
        source: &mut dyn Read,
    ) -> Result<u64, ObjectError> {
        let part_size = self.options.part_size;
        let mut in_flight: Option<JoinHandle<Result<(), ObjectError>>> = None;
        let mut size = 0u64;
        let mut part = first;
        let outcome = loop {
            let len = part.len();
            if len > 0 {
                if let Some(previous) = in_flight.take()
                    && let Err(err) = bridge::join(previous).and_then(|result| result)
                {
                    break Err(err);
                }
                in_flight = Some(self.start(upload.put_part(PutPayload::from(part))));
                size += len as u64;
            }
            if len < part_size {
                break Ok(size);
            }
            let mut next = vec![0; part_size];
            match fill(source, &mut next) {
                Ok(read) => {
                    let read = read.len();
                    next.truncate(read);
                    part = next;
                }
                Err(err) => break Err(err),
            }
        };
        // Wait for the last part even on error: aborting while a part is still uploading can
        // leave that part behind.
        let last = in_flight.take().map(bridge::join);
        match (outcome, last) {
            (Err(err), _) => Err(err),
            (Ok(_), Some(Err(err) | Ok(Err(err)))) => Err(err),
            (Ok(size), _) => Ok(size),
        }
    }
}

impl ObjectStore for S3ObjectStore {
    fn put(&self, key: &ObjectKey, source: &mut dyn Read) -> Result<PutReceipt, ObjectError> {
        let path = self.path(key)?;
        let mut first = vec![0; self.options.part_size];
        let len = fill(source, &mut first)?.len();
        if len < self.options.part_size {
            // It all fits in one part: a single PUT, atomic by itself.
            first.truncate(len);
            let store = Arc::clone(&self.store);
            let payload = PutPayload::from(first);
            self.request(
                async move { store.put_opts(&path, payload, PutOptions::default()).await },
            )?
            .map_err(|err| self.scrubber.convert(err, Some(key)))?;
            return Ok(PutReceipt { size: len as u64 });
        }

        let store = Arc::clone(&self.store);
        let upload_path = path.clone();
        let mut upload = self
            .request(async move {
                store
                    .put_multipart_opts(&upload_path, PutMultipartOptions::default())
                    .await
            })?
            .map_err(|err| self.scrubber.convert(err, Some(key)))?;
        let uploaded = self.upload_parts(upload.as_mut(), first, source);
        let completed = match uploaded {
            Ok(size) => self
                .request(async move {
                    match upload.complete().await {
                        Ok(_) => Ok(size),
                        Err(err) => {
                            // Best effort: the error to report is the completion's.
                            let _ = upload.abort().await;
                            Err(err)
                        }
                    }
                })?
                .map_err(|err| self.scrubber.convert(err, Some(key))),
            Err(err) => {
                // Best effort: the error to report is the one that stopped the upload, and an
                // abort that fails leaves only invisible parts.
                let _ = self.request(async move { upload.abort().await });
                Err(err)
            }
        };
        completed.map(|size| PutReceipt { size })
    }

    fn get(&self, key: &ObjectKey) -> Result<ObjectReader, ObjectError> {
        let store = Arc::clone(&self.store);
        let path = self.path(key)?;
        let result = self
            .request(async move { store.get_opts(&path, GetOptions::default()).await })?
            .map_err(|err| self.scrubber.convert(err, Some(key)))?;
        Ok(self.reader(result))
    }

    fn get_range(
        &self,
        key: &ObjectKey,
        start: u64,
        len: u64,
    ) -> Result<ObjectReader, ObjectError> {
        // S3 answers an empty range, or one starting at the end, with an error (416) where
        // this trait promises an empty read: those cases go by the object's size.
        let by_size = |this: &Self| -> Result<ObjectReader, ObjectError> {
            let size = this.head(key)?.ok_or_else(|| ObjectError::not_found(key))?;
            if start > size {
                return Err(ObjectError::InvalidRange { start, len, size });
            }
            if start == size || len == 0 {
                return Ok(Box::new(io::empty()));
            }
            Err(ObjectError::Backend {
                detail: "the store refused a range inside the object".to_owned(),
            })
        };
        if len == 0 {
            return by_size(self);
        }
        // Past the end is clipped to the end, by the store and by the trait alike.
        let end = start.saturating_add(len);
        let store = Arc::clone(&self.store);
        let path = self.path(key)?;
        let options = GetOptions::new().with_range(Some(GetRange::Bounded(start..end)));
        match self.request(async move { store.get_opts(&path, options).await })? {
            Ok(result) => Ok(self.reader(result)),
            Err(object_store::Error::NotFound { .. }) => Err(ObjectError::not_found(key)),
            Err(err) => {
                let original = self.scrubber.convert(err, Some(key));
                match by_size(self) {
                    Err(ObjectError::Backend { .. }) => Err(original),
                    other => other,
                }
            }
        }
    }

    fn size(&self, key: &ObjectKey) -> Result<Option<u64>, ObjectError> {
        self.head(key)
    }

    fn delete(&self, key: &ObjectKey) -> Result<(), ObjectError> {
        let store = Arc::clone(&self.store);
        let path = self.path(key)?;
        match self
            .request(async move { object_store::ObjectStoreExt::delete(&*store, &path).await })?
        {
            // S3 answers a delete of a missing object with success; other stores may not.
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(self.scrubber.convert(err, Some(key))),
        }
    }

    fn list(&self, prefix: &ObjectKey) -> Result<Vec<ObjectKey>, ObjectError> {
        let store = Arc::clone(&self.store);
        let path = self.path(prefix)?;
        let listed = self
            .request(async move {
                let mut stream = store.list(Some(&path));
                let mut paths = Vec::new();
                while let Some(meta) = poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
                    paths.push(meta?.location);
                }
                Ok(paths)
            })?
            .map_err(|err| self.scrubber.convert(err, Some(prefix)))?;
        let strip = self.prefix.as_ref().map(|prefix| format!("{prefix}/"));
        let mut keys: Vec<ObjectKey> = listed
            .iter()
            .filter_map(|path| {
                let full = path.as_ref();
                let relative = match &strip {
                    Some(strip) => full.strip_prefix(strip.as_str())?,
                    None => full,
                };
                // Objects this store did not write (invalid names) are not its objects.
                ObjectKey::new(relative).ok()
            })
            .filter(|key| key.is_under(prefix))
            .collect();
        keys.sort();
        Ok(keys)
    }
}

/// A download in progress.
struct S3Reader {
    receiver: mpsc::Receiver<Result<Bytes, object_store::Error>>,
    chunk: Bytes,
    remaining: u64,
    finished: bool,
    scrubber: Arc<Scrubber>,
    // Keeps the runtime that downloads the body alive as long as the reader.
    _bridge: Arc<Bridge>,
}

impl Read for S3Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.chunk.is_empty() {
                let n = buf.len().min(self.chunk.len());
                let bytes = self.chunk.split_to(n);
                if let Some(target) = buf.get_mut(..n) {
                    target.copy_from_slice(&bytes);
                }
                return Ok(n);
            }
            if buf.is_empty() || self.finished {
                return Ok(0);
            }
            match bridge::wait(self.receiver.recv()) {
                Some(Ok(chunk)) => {
                    let len = chunk.len() as u64;
                    if len > self.remaining {
                        self.finished = true;
                        return Err(io::Error::other(
                            "the store sent more bytes than the object holds",
                        ));
                    }
                    self.remaining -= len;
                    self.chunk = chunk;
                }
                Some(Err(err)) => {
                    self.finished = true;
                    return Err(io::Error::other(self.scrubber.convert(err, None)));
                }
                None if self.remaining == 0 => {
                    self.finished = true;
                    return Ok(0);
                }
                // Checked because a body that breaks off must not look like a shorter object.
                None => {
                    self.finished = true;
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the object's download ended early",
                    ));
                }
            }
        }
    }
}

/// Turns `object_store` errors into [`ObjectError`]s without the store's secrets.
#[derive(Debug)]
struct Scrubber {
    secrets: Vec<String>,
}

impl Scrubber {
    fn new(secrets: impl Iterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.filter(|secret| !secret.is_empty()).collect();
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        Self { secrets }
    }

    /// The error and its sources as one line, scrubbed and shortened.
    fn describe(&self, err: &dyn std::error::Error) -> String {
        let mut text = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !text.contains(&cause_text) {
                text.push_str(": ");
                text.push_str(&cause_text);
            }
            source = cause.source();
        }
        for secret in &self.secrets {
            text = text.replace(secret.as_str(), "[redacted]");
        }
        if text.len() > MAX_DETAIL {
            let mut cut = MAX_DETAIL;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        text
    }

    fn convert(&self, err: object_store::Error, key: Option<&ObjectKey>) -> ObjectError {
        use object_store::Error as E;
        match (&err, key) {
            (E::NotFound { .. }, Some(key)) => ObjectError::not_found(key),
            (E::PermissionDenied { .. } | E::Unauthenticated { .. }, _) => ObjectError::Denied {
                detail: self.describe(&err),
            },
            (E::InvalidPath { .. }, _) => ObjectError::InvalidKey {
                reason: "the key is not a valid S3 object name",
            },
            (E::UnknownConfigurationKey { .. }, _) => ObjectError::InvalidConfig {
                reason: self.describe(&err),
            },
            // What reaches here as `Generic` from an HTTP store is a request that failed after
            // its retries: no connection, a timeout, a server error.
            (E::Generic { .. }, _) => ObjectError::Unavailable {
                detail: self.describe(&err),
            },
            _ => ObjectError::Backend {
                detail: self.describe(&err),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str) -> ObjectError {
        S3ObjectStore::connect(url, &S3Options::default()).unwrap_err()
    }

    #[test]
    fn malformed_urls_are_refused_without_being_quoted() {
        for url in [
            "s3://",
            "s3:///prefix",
            "s3://user:hunter2secret@bucket",
            "s3://bucket/.hidden",
            "s3://bucket/a//b",
            "s3://bucket?no_such_setting=hunter2secret",
            "s3://bucket?hunter2secret",
            "s3://bucket#hunter2secret",
            "http://bucket",
        ] {
            let err = refused(url);
            assert_eq!(err.code(), "objects.invalid_config", "{url}");
            assert!(!err.to_string().contains("hunter2secret"), "{err}");
        }
    }

    #[test]
    fn part_sizes_outside_s3_limits_are_refused() {
        let options = S3Options::default().with_part_size(1024);
        let err = S3ObjectStore::connect("s3://bucket", &options).unwrap_err();
        assert_eq!(err.code(), "objects.invalid_config");
    }

    #[test]
    fn keys_go_under_the_prefix_and_debug_shows_no_secret() {
        let store = S3ObjectStore::connect(
            "s3://bucket/tenant/one?endpoint=http://127.0.0.1:1&allow_http=true\
             &access_key_id=AKIDEXAMPLE&secret_access_key=hunter2secret",
            &S3Options::default(),
        )
        .unwrap();
        let key = ObjectKey::new("media/s/o").unwrap();
        assert_eq!(store.path(&key).unwrap().as_ref(), "tenant/one/media/s/o");
        let debug = format!("{store:?}");
        assert!(debug.contains("bucket"), "{debug}");
        assert!(!debug.contains("hunter2secret") && !debug.contains("AKIDEXAMPLE"));
    }

    #[test]
    fn the_scrubber_removes_every_secret() {
        let scrubber = Scrubber::new(["AKID", "AKIDLONGER", ""].into_iter().map(str::to_owned));
        let err = io::Error::other("<AWSAccessKeyId>AKIDLONGER</AWSAccessKeyId> AKID");
        assert_eq!(
            scrubber.describe(&err),
            "<AWSAccessKeyId>[redacted]</AWSAccessKeyId> [redacted]"
        );
    }
}
