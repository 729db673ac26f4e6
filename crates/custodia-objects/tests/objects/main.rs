//! The object stores against real storage: the shared conformance suite on the file system
//! (always) and on S3 (when `CUSTODIA_TEST_S3_URL` names a server), then what only one backend
//! does: file permissions, path safety, no plaintext left by failed or crashed puts, URL
//! parsing, and S3's errors and runtime bridging.
//!
//! `scripts/start-test-s3` starts a throwaway S3-compatible server on loopback and prints the
//! URL. Without it the S3 tests print a one-line skip notice and pass, so `cargo test` passes
//! on a machine without one; CI always sets it. Each S3 test works under its own random prefix
//! of the bucket and deletes what it wrote.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use custodia_objects::conformance::{Harness, Pattern, assert_same_stream, key};
use custodia_objects::{FsObjectStore, ObjectStore, S3ObjectStore, S3Options, open_url};

const S3_URL_VAR: &str = "CUSTODIA_TEST_S3_URL";

/// Every file under `root` that is not an object: temporary files, hidden files.
fn non_object_files(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                pending.push(path);
                continue;
            }
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            if custodia_objects::ObjectKey::new(relative.as_str()).is_err() {
                found.push(relative);
            }
        }
    }
    found
}

/// Every file under `dir`, recursively.
fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    files
}

mod filesystem {
    use std::io::{self, Write};
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use custodia_objects::fs::STAGING_DIR;

    use super::*;

    fn fresh() -> Harness {
        let tmp = Arc::new(tempfile::tempdir().unwrap());
        let root = tmp.path().join("objects");
        let store = FsObjectStore::open(&root).unwrap();
        Harness {
            store: Arc::new(store),
            leftovers: Box::new(move || {
                // Holding the directory here deletes it when the harness goes.
                let _keep = &tmp;
                non_object_files(&root)
            }),
        }
    }

    custodia_objects::conformance_tests!(fresh);

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_are_0600_and_directories_0700() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("objects");
        let store = FsObjectStore::open(&root).unwrap();
        store
            .put(&key("media/sub_1/obj_1"), &mut &b"ciphertext"[..])
            .unwrap();
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join(STAGING_DIR)), 0o700);
        assert_eq!(mode(&root.join("media")), 0o700);
        assert_eq!(mode(&root.join("media/sub_1")), 0o700);
        assert_eq!(mode(&root.join("media/sub_1/obj_1")), 0o600);
    }

    #[test]
    fn keys_map_inside_the_root_and_traversal_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("objects");
        let store = FsObjectStore::open(&root).unwrap();
        for bad in [
            "../escaped",
            "media/../../escaped",
            "/etc/passwd",
            "media/..",
            "..",
            "media\\..\\escaped",
            ".staging/x",
        ] {
            let err = custodia_objects::ObjectKey::new(bad).unwrap_err();
            assert_eq!(err.code(), "objects.invalid_key", "{bad}");
        }
        store.put(&key("media/a/b"), &mut &b"x"[..]).unwrap();
        assert!(root.join("media/a/b").is_file());
        // Nothing appeared beside the root.
        let beside: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(beside, ["objects"]);
        // A file the store did not write under a hidden name is not listed.
        std::fs::write(root.join("media/a/.hidden"), b"x").unwrap();
        assert_eq!(store.list(&key("media")).unwrap(), vec![key("media/a/b")]);
    }

    #[test]
    fn deleting_the_last_object_of_a_directory_removes_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("objects");
        let store = FsObjectStore::open(&root).unwrap();
        store
            .put(&key("media/sub_1/obj_1"), &mut &b"x"[..])
            .unwrap();
        store
            .put(&key("media/sub_2/obj_1"), &mut &b"x"[..])
            .unwrap();
        store.delete(&key("media/sub_1/obj_1")).unwrap();
        assert!(!root.join("media/sub_1").exists());
        assert!(root.join("media/sub_2/obj_1").is_file());
        store.delete(&key("media/sub_2/obj_1")).unwrap();
        assert!(!root.join("media").exists());
        assert!(root.join(STAGING_DIR).is_dir());
    }

    #[test]
    fn a_key_cannot_be_both_an_object_and_a_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FsObjectStore::open(tmp.path().join("objects")).unwrap();
        store.put(&key("media/p/1"), &mut &b"x"[..]).unwrap();
        for clash in ["media/p/1/deeper", "media/p"] {
            let err = store.put(&key(clash), &mut &b"y"[..]).unwrap_err();
            assert_eq!(err.code(), "objects.conflict", "{clash}: {err}");
        }
        assert_eq!(store.list(&key("media")).unwrap(), [key("media/p/1")]);
        assert!(non_object_files(store.root()).is_empty());
    }

    const CANARY: &[u8] = b"PLAINTEXT-CANARY-7f3a9c";

    /// Yields the canary over and over, then fails.
    struct CanarySource {
        left: usize,
    }

    impl Read for CanarySource {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::Error::other("the client went away"));
            }
            let n = buf.len().min(CANARY.len()).min(self.left);
            buf[..n].copy_from_slice(&CANARY[..n]);
            self.left -= n;
            Ok(n)
        }
    }

    #[test]
    fn no_canary_survives_a_failed_put_anywhere_under_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("objects");
        let store = FsObjectStore::open(&root).unwrap();
        store
            .put(&key("media/s/other"), &mut &b"unrelated ciphertext"[..])
            .unwrap();
        for size in [CANARY.len() * 3, 3 * 1024 * 1024] {
            let err = store
                .put(&key("media/s/leaky"), &mut CanarySource { left: size })
                .unwrap_err();
            assert_eq!(err.code(), "objects.source");
        }
        let files = all_files(&root);
        assert_eq!(files, [root.join("media/s/other")]);
        for file in files {
            let bytes = std::fs::read(&file).unwrap();
            assert!(
                !bytes.windows(CANARY.len()).any(|window| window == CANARY),
                "{}",
                file.display()
            );
        }
    }

    const CRASH_DIR_VAR: &str = "CUSTODIA_OBJECTS_CRASH_CHILD_DIR";
    const CRASH_MARKER: &str = "crash-child-is-mid-put";

    /// Streams 3 MiB, says so, then hangs until the process is killed.
    struct StallingSource {
        pattern: Pattern,
        marker: PathBuf,
    }

    impl Read for StallingSource {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.pattern.read(buf)? {
                0 => {
                    std::fs::File::create(&self.marker)?.sync_all()?;
                    loop {
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
                n => Ok(n),
            }
        }
    }

    /// Not a test on its own: the body of the process that the crash test kills mid-put.
    #[test]
    fn crash_child() {
        let Some(dir) = std::env::var_os(CRASH_DIR_VAR) else {
            return;
        };
        let dir = PathBuf::from(dir);
        let store = FsObjectStore::open(dir.join("objects")).unwrap();
        let mut source = StallingSource {
            pattern: Pattern::new(9, 3 * 1024 * 1024),
            marker: dir.join(CRASH_MARKER),
        };
        store.put(&key("media/s/crashed"), &mut source).unwrap();
        panic!("the put should never have finished");
    }

    #[test]
    fn a_process_killed_mid_put_leaves_no_object_and_its_temp_file_is_swept() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("objects");
        let store = FsObjectStore::open(&root).unwrap();
        store
            .put(&key("media/s/crashed"), &mut &b"the previous version"[..])
            .unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "filesystem::crash_child", "--test-threads=1"])
            .env(CRASH_DIR_VAR, tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while !tmp.path().join(CRASH_MARKER).exists() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the crash child exited early: {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the crash child never got mid-put"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();

        // The key still holds what it held: the killed put is invisible.
        let mut stored = Vec::new();
        store
            .get(&key("media/s/crashed"))
            .unwrap()
            .read_to_end(&mut stored)
            .unwrap();
        assert_eq!(stored, b"the previous version");
        assert_eq!(store.list(&key("media")).unwrap(), [key("media/s/crashed")]);
        // Its temporary file is left in the staging directory, and only there ...
        let left = non_object_files(&root);
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(left[0].starts_with(STAGING_DIR), "{left:?}");
        // ... until a sweep (on open, once it is an hour old) removes it.
        drop(FsObjectStore::open(&root).unwrap());
        assert_eq!(non_object_files(&root).len(), 1);
        assert_eq!(store.remove_stale_temp_files(Duration::ZERO).unwrap(), 1);
        assert!(non_object_files(&root).is_empty());
    }

    #[test]
    fn open_url_takes_paths_and_file_urls() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("by-url");
        let dir_text = dir.to_str().unwrap();
        for url in [
            dir_text.to_owned(),
            format!("file:{dir_text}"),
            format!("file://{dir_text}"),
            format!("file://localhost{dir_text}"),
        ] {
            let store = open_url(&url).unwrap();
            store.put(&key("a/b"), &mut &b"via url"[..]).unwrap();
            assert!(dir.join("a/b").is_file(), "{url}");
            store.delete(&key("a/b")).unwrap();
        }
        for url in [
            "",
            "file:",
            "file://otherhost/dir",
            "ftp://host/dir",
            "gs://bucket?secret=hunter2secret",
        ] {
            let err = open_url(url).unwrap_err();
            assert_eq!(err.code(), "objects.invalid_config", "{url}");
            assert!(!err.to_string().contains("hunter2secret"));
        }
        // A file where the directory should be.
        let file = tmp.path().join("a-file");
        std::fs::File::create(&file)
            .unwrap()
            .write_all(b"x")
            .unwrap();
        assert!(FsObjectStore::open(&file).is_err());
    }
}

mod s3 {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    use super::*;

    fn s3_url() -> Option<String> {
        std::env::var(S3_URL_VAR).ok().filter(|url| !url.is_empty())
    }

    /// `url` with `segment` appended to its path (the store's key prefix).
    fn under(url: &str, segment: &str) -> String {
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (url, None),
        };
        let base = base.trim_end_matches('/');
        match query {
            Some(query) => format!("{base}/{segment}?{query}"),
            None => format!("{base}/{segment}"),
        }
    }

    fn random_prefix() -> String {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).unwrap();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("t-{hex}")
    }

    fn options() -> S3Options {
        S3Options::default().with_max_retries(2)
    }

    /// Deletes everything a test wrote under its prefix when dropped.
    struct Cleanup(S3ObjectStore);

    impl Drop for Cleanup {
        fn drop(&mut self) {
            for top in ["media", "other", "a"] {
                if let Ok(keys) = self.0.list(&key(top)) {
                    for key in keys {
                        let _ = self.0.delete(&key);
                    }
                }
            }
        }
    }

    fn connect_fresh(url: &str, prefix: &str) -> (S3ObjectStore, Cleanup) {
        let url = under(url, prefix);
        let store = S3ObjectStore::connect(&url, &options()).unwrap();
        let cleanup = Cleanup(S3ObjectStore::connect(&url, &options()).unwrap());
        (store, cleanup)
    }

    /// Keys of multipart uploads begun and neither completed nor aborted under `prefix`: the
    /// leftovers of a failed put on S3, invisible through the trait. Asked of the server with an
    /// unsigned request, which moto answers; servers that insist on signatures, or that are not
    /// on loopback, are not asked (and nothing is reported).
    fn incomplete_uploads(url: &str, prefix: &str) -> Vec<String> {
        let parsed = url::Url::parse(url).unwrap();
        let bucket = parsed.host_str().unwrap().to_owned();
        let Some(endpoint) = parsed
            .query_pairs()
            .find(|(name, _)| name == "endpoint")
            .and_then(|(_, endpoint)| url::Url::parse(&endpoint).ok())
        else {
            return Vec::new();
        };
        let (Some(host), Some(port)) = (endpoint.host_str(), endpoint.port_or_known_default())
        else {
            return Vec::new();
        };
        if endpoint.scheme() != "http" || !(host == "127.0.0.1" || host == "localhost") {
            return Vec::new();
        }
        let mut stream = TcpStream::connect((host, port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "GET /{bucket}?uploads&prefix={prefix}/ HTTP/1.1\r\nHost: {host}:{port}\r\n\
             Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        if !response.starts_with("HTTP/1.1 200") {
            return Vec::new();
        }
        response
            .split("<Upload>")
            .skip(1)
            .filter_map(|upload| {
                let start = upload.find("<Key>")? + "<Key>".len();
                let end = upload.find("</Key>")?;
                upload.get(start..end).map(str::to_owned)
            })
            .collect()
    }

    fn fresh() -> Option<Harness> {
        let url = s3_url()?;
        let prefix = random_prefix();
        let (store, cleanup) = connect_fresh(&url, &prefix);
        Some(Harness {
            store: Arc::new(store),
            leftovers: Box::new(move || {
                let _cleanup = &cleanup;
                incomplete_uploads(&url, &prefix)
            }),
        })
    }

    custodia_objects::conformance_tests!(fresh);

    /// The S3 URL, or a skip notice and an early return from the test. The notice goes
    /// straight to stderr, which the test harness does not capture, like the suite's.
    macro_rules! s3_or_skip {
        ($test:literal) => {
            match s3_url() {
                Some(url) => url,
                None => {
                    let _ = writeln!(
                        std::io::stderr().lock(),
                        "skipped {}: {S3_URL_VAR} is not set (scripts/start-test-s3 starts a \
                         server and prints one)",
                        $test
                    );
                    return;
                }
            }
        };
    }

    #[test]
    fn open_url_connects_to_s3() {
        let url = s3_or_skip!("open_url_connects_to_s3");
        let url = under(&url, &random_prefix());
        let store = open_url(&url).unwrap();
        store.put(&key("a/b"), &mut &b"via url"[..]).unwrap();
        assert_eq!(store.size(&key("a/b")).unwrap(), Some(7));
        store.delete(&key("a/b")).unwrap();
    }

    #[test]
    fn works_from_another_runtimes_blocking_threads_and_tasks() {
        let url = s3_or_skip!("works_from_another_runtimes_blocking_threads_and_tasks");
        let (store, _cleanup) = connect_fresh(&url, &random_prefix());
        let store: Arc<dyn ObjectStore> = Arc::new(store);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let blocking = Arc::clone(&store);
        runtime
            .block_on(runtime.spawn_blocking(move || {
                let key = key("media/b/blocking");
                blocking
                    .put(&key, &mut Pattern::new(1, 9 * 1024 * 1024))
                    .unwrap();
                assert_same_stream(
                    blocking.get(&key).unwrap(),
                    Pattern::new(1, 9 * 1024 * 1024),
                    "from a blocking thread",
                );
            }))
            .unwrap();
        // Not how the vault should call it (it stalls a worker), but it must not panic.
        let in_task = Arc::clone(&store);
        runtime
            .block_on(runtime.spawn(async move {
                in_task
                    .put(&key("media/b/task"), &mut &b"from a task"[..])
                    .unwrap();
                assert_eq!(in_task.size(&key("media/b/task")).unwrap(), Some(11));
            }))
            .unwrap();
        // Dropping the last handle inside an async context must not panic either.
        runtime.block_on(async move { drop(store) });
    }

    #[test]
    fn a_partly_read_download_can_be_dropped() {
        let url = s3_or_skip!("a_partly_read_download_can_be_dropped");
        let (store, _cleanup) = connect_fresh(&url, &random_prefix());
        let key = key("media/d/dropped");
        store
            .put(&key, &mut Pattern::new(2, 12 * 1024 * 1024))
            .unwrap();
        let mut reader = store.get(&key).unwrap();
        let mut first = [0u8; 1000];
        reader.read_exact(&mut first).unwrap();
        drop(reader);
        // The store keeps working after an abandoned download.
        assert_eq!(store.size(&key).unwrap(), Some(12 * 1024 * 1024));
    }

    #[test]
    fn an_unreachable_store_is_unavailable_and_no_message_has_a_secret() {
        // A port nothing listens on: bound, then released.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!(
            "s3://bucket/prefix?endpoint=http://127.0.0.1:{port}&region=us-east-1\
             &allow_http=true&access_key_id=AKIDSECRETID&secret_access_key=hunter2secret\
             &session_token=tokensecret"
        );
        let options = S3Options::default()
            .with_max_retries(0)
            .with_connect_timeout(Duration::from_secs(2));
        let store = S3ObjectStore::connect(&url, &options).unwrap();
        let started = Instant::now();
        let key = key("media/u/1");
        let errors = [
            store.size(&key).unwrap_err(),
            store.get(&key).err().unwrap(),
            store.get_range(&key, 0, 1).err().unwrap(),
            store.put(&key, &mut &b"x"[..]).unwrap_err(),
            store
                .put(&key, &mut Pattern::new(1, 9 * 1024 * 1024))
                .unwrap_err(),
            store.delete(&key).unwrap_err(),
            store.list(&key).unwrap_err(),
        ];
        for err in &errors {
            assert_eq!(err.code(), "objects.unavailable", "{err}");
            let text = format!("{err} {err:?}");
            for secret in ["AKIDSECRETID", "hunter2secret", "tokensecret"] {
                assert!(!text.contains(secret), "{text}");
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "failing took {:?}",
            started.elapsed()
        );
    }
}
