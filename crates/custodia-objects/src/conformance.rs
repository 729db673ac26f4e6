//! The conformance suite every object store passes. A backend's integration tests call
//! [`conformance_tests!`](crate::conformance_tests) with a function that opens a fresh, empty
//! store; the macro expands to one `#[test]` per case, so a failure names the case.
//!
//! This module is test code shipped in the library (behind the `conformance` feature) so that
//! the file system and S3 run the very same assertions. Objects are generated and checked
//! as streams, never held whole, so the large cases also show that memory stays flat.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{self, Read};
use std::sync::Arc;

use crate::{ObjectError, ObjectKey, ObjectStore};

const MIB: u64 = 1024 * 1024;

/// Lists what a backend holds besides its objects (temporary files of puts), to show that a
/// failed put leaves nothing behind. Backends that cannot see such things return nothing.
pub type Leftovers = Box<dyn Fn() -> Vec<String> + Send + Sync>;

/// A fresh store for one test case.
#[allow(missing_debug_implementations)]
pub struct Harness {
    /// The store, empty.
    pub store: Arc<dyn ObjectStore>,
    /// What the backend holds besides objects.
    pub leftovers: Leftovers,
}

/// What a backend's `fresh()` returns: a store, or `None` when the backend is not available here
/// (S3 without `CUSTODIA_TEST_S3_URL`), in which case the case prints a skip notice and passes.
pub trait IntoHarness {
    /// The harness, if the backend is available.
    fn into_harness(self) -> Option<Harness>;
}

impl IntoHarness for Harness {
    fn into_harness(self) -> Option<Harness> {
        Some(self)
    }
}

impl IntoHarness for Option<Harness> {
    fn into_harness(self) -> Option<Harness> {
        self
    }
}

/// Runs one case, or prints why it is skipped.
pub fn run_case(name: &str, harness: impl IntoHarness, case: fn(Harness)) {
    match harness.into_harness() {
        Some(harness) => case(harness),
        None => {
            let mut err = io::stderr().lock();
            let _ = io::Write::write_fmt(
                &mut err,
                format_args!("skipped {name}: backend not available (see the backend's tests)\n"),
            );
        }
    }
}

/// Expands to one `#[test]` per conformance case, each calling `$fresh()` for its store.
#[macro_export]
macro_rules! conformance_tests {
    ($fresh:path) => {
        $crate::conformance_tests!(@cases $fresh;
            small_objects_round_trip,
            a_5_mib_object_round_trips,
            an_object_of_exactly_one_part_round_trips,
            a_20_mib_object_round_trips_through_a_slow_reader,
            ranged_reads_return_the_bytes_asked_for,
            size_tells_present_from_missing,
            deletes_are_idempotent,
            list_finds_keys_under_a_prefix_by_segment,
            a_prefix_of_keys_is_not_an_object,
            a_put_that_fails_midstream_leaves_nothing,
            a_failed_overwrite_keeps_the_previous_object,
            an_overwrite_replaces_the_whole_object,
            concurrent_puts_to_one_key_leave_one_whole_object,
            a_reader_outlives_its_store,
            invalid_keys_are_refused,
        );
    };
    (@cases $fresh:path; $($case:ident),+ $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::conformance::run_case(
                    stringify!($case),
                    $fresh(),
                    $crate::conformance::$case,
                );
            }
        )+
    };
}

/// A key from text the suite knows is valid.
pub fn key(text: &str) -> ObjectKey {
    ObjectKey::new(text).unwrap()
}

/// A reproducible stream of `len` pseudo-random bytes, handed out at most `max_read` bytes per
/// `read`, optionally failing once `fail_at` bytes have been read.
#[derive(Debug, Clone)]
pub struct Pattern {
    state: u64,
    remaining: u64,
    max_read: usize,
    fail_at: Option<u64>,
    read: u64,
}

impl Pattern {
    /// `len` bytes from `seed`, in reads as large as the caller asks for.
    pub fn new(seed: u64, len: u64) -> Self {
        Self {
            // Xorshift has one fixed point, zero.
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            remaining: len,
            max_read: usize::MAX,
            fail_at: None,
            read: 0,
        }
    }

    /// The same bytes, at most `max_read` per `read` (a slow network client).
    pub fn slow(mut self, max_read: usize) -> Self {
        self.max_read = max_read;
        self
    }

    /// The same bytes, but the read that would pass `at` bytes fails instead.
    pub fn failing_at(mut self, at: u64) -> Self {
        self.fail_at = Some(at);
        self
    }

    fn next_byte(&mut self) -> u8 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state >> 24) as u8
    }
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = buf.len().min(self.max_read);
        n = n.min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        if let Some(at) = self.fail_at
            && self.read + n as u64 >= at
            && n > 0
        {
            return Err(io::Error::other("the source broke off"));
        }
        for byte in &mut buf[..n] {
            *byte = self.next_byte();
        }
        self.remaining -= n as u64;
        self.read += n as u64;
        Ok(n)
    }
}

/// Asserts that `actual` yields exactly the bytes of `expected`, reading both in chunks.
pub fn assert_same_stream(mut actual: impl Read, mut expected: impl Read, what: &str) {
    let mut offset = 0u64;
    let mut want = vec![0; 64 * 1024];
    let mut got = vec![0; 64 * 1024];
    loop {
        let n = read_full(&mut expected, &mut want);
        let m = read_full(&mut actual, &mut got);
        assert_eq!(m, n, "{what}: length differs after byte {offset}");
        if want[..n] != got[..m] {
            let first = want[..n]
                .iter()
                .zip(&got[..m])
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            panic!("{what}: bytes differ at offset {}", offset + first as u64);
        }
        if n == 0 {
            return;
        }
        offset += n as u64;
    }
}

fn read_full(source: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(&mut buf[filled..]).unwrap() {
            0 => break,
            n => filled += n,
        }
    }
    filled
}

fn read_all(store: &dyn ObjectStore, key: &ObjectKey) -> Vec<u8> {
    let mut bytes = Vec::new();
    store.get(key).unwrap().read_to_end(&mut bytes).unwrap();
    bytes
}

fn put_bytes(store: &dyn ObjectStore, key: &ObjectKey, bytes: &[u8]) {
    let receipt = store.put(key, &mut &bytes[..]).unwrap();
    assert_eq!(receipt.size, bytes.len() as u64);
}

fn round_trip(h: &Harness, key: &ObjectKey, seed: u64, len: u64, max_read: usize) {
    let receipt = h
        .store
        .put(key, &mut Pattern::new(seed, len).slow(max_read))
        .unwrap();
    assert_eq!(receipt.size, len, "receipt of {len} bytes");
    assert_eq!(h.store.size(key).unwrap(), Some(len));
    assert_same_stream(
        h.store.get(key).unwrap(),
        Pattern::new(seed, len),
        &format!("{len}-byte object"),
    );
}

fn assert_not_found(result: Result<impl Sized, ObjectError>, what: &str) {
    match result {
        Err(err) => assert_eq!(err.code(), "objects.not_found", "{what}: {err}"),
        Ok(_) => panic!("{what}: expected objects.not_found, got an object"),
    }
}

fn assert_no_leftovers(h: &Harness) {
    let left = (h.leftovers)();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Objects of 0, 1 and a few thousand bytes round-trip, and the receipt tells their size.
pub fn small_objects_round_trip(h: Harness) {
    for (i, len) in [0u64, 1, 2, 4095, 65_537].into_iter().enumerate() {
        round_trip(
            &h,
            &key(&format!("media/s/small-{i}")),
            i as u64,
            len,
            usize::MAX,
        );
    }
}

/// A 5 MiB object round-trips (one request on S3: under the part size).
pub fn a_5_mib_object_round_trips(h: Harness) {
    round_trip(&h, &key("media/s/five"), 5, 5 * MIB, usize::MAX);
}

/// An object of exactly the S3 part size round-trips (a multipart upload of one part).
pub fn an_object_of_exactly_one_part_round_trips(h: Harness) {
    round_trip(&h, &key("media/s/eight"), 8, 8 * MIB, usize::MAX);
}

/// A 20 MiB object handed over a kilobyte at a time round-trips (three parts on S3), and
/// reads across its part boundaries return the right bytes.
pub fn a_20_mib_object_round_trips_through_a_slow_reader(h: Harness) {
    let key = key("media/s/twenty");
    round_trip(&h, &key, 20, 20 * MIB, 997);
    for start in [8 * MIB - 5, 16 * MIB - 1, 20 * MIB - 3] {
        let mut got = Vec::new();
        h.store
            .get_range(&key, start, 10)
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        let mut want = Vec::new();
        let mut pattern = Pattern::new(20, 20 * MIB);
        io::copy(&mut (&mut pattern).take(start), &mut io::sink()).unwrap();
        pattern.take(10).read_to_end(&mut want).unwrap();
        assert_eq!(got, want, "range at {start}");
    }
}

/// Ranges return their bytes, are clipped at the end, are empty at the end, and are refused
/// past it.
pub fn ranged_reads_return_the_bytes_asked_for(h: Harness) {
    let key = key("media/s/ranged");
    let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    put_bytes(&*h.store, &key, &bytes);
    let range = |start: u64, len: u64| -> Result<Vec<u8>, ObjectError> {
        let mut out = Vec::new();
        h.store
            .get_range(&key, start, len)?
            .read_to_end(&mut out)
            .unwrap();
        Ok(out)
    };
    assert_eq!(range(0, 10).unwrap(), &bytes[..10]);
    assert_eq!(range(1234, 4321).unwrap(), &bytes[1234..5555]);
    assert_eq!(range(9990, 10).unwrap(), &bytes[9990..]);
    assert_eq!(
        range(9995, 100).unwrap(),
        &bytes[9995..],
        "clipped at the end"
    );
    assert_eq!(range(0, u64::MAX).unwrap(), bytes, "clipped at the end");
    assert_eq!(range(10, u64::MAX).unwrap(), &bytes[10..], "no overflow");
    assert_eq!(range(5, 0).unwrap(), b"", "empty range");
    assert_eq!(range(10_000, 5).unwrap(), b"", "starting at the end");
    let err = range(10_001, 1).unwrap_err();
    assert_eq!(err.code(), "objects.invalid_range", "{err}");
    assert_not_found(
        h.store.get_range(&self::key("media/s/none"), 0, 1),
        "range of missing",
    );
    assert_not_found(
        h.store.get_range(&self::key("media/s/none"), 0, 0),
        "empty range of missing",
    );

    let empty = self::key("media/s/empty");
    put_bytes(&*h.store, &empty, b"");
    let mut out = Vec::new();
    h.store
        .get_range(&empty, 0, 10)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    assert!(out.is_empty());
}

/// `size` is `None` for a missing object, the length for a present one, and `get` of a missing
/// object is `not_found`.
pub fn size_tells_present_from_missing(h: Harness) {
    let key = key("media/s/sized");
    assert_eq!(h.store.size(&key).unwrap(), None);
    assert_not_found(h.store.get(&key), "get of missing");
    put_bytes(&*h.store, &key, b"twelve bytes");
    assert_eq!(h.store.size(&key).unwrap(), Some(12));
}

/// Deleting removes the object; deleting again, or deleting what never existed, succeeds.
pub fn deletes_are_idempotent(h: Harness) {
    let key = key("media/s/deleted");
    h.store.delete(&key).unwrap();
    put_bytes(&*h.store, &key, b"gone soon");
    let keep = self::key("media/s/kept");
    put_bytes(&*h.store, &keep, b"kept");
    h.store.delete(&key).unwrap();
    assert_not_found(h.store.get(&key), "get after delete");
    assert_eq!(h.store.size(&key).unwrap(), None);
    h.store.delete(&key).unwrap();
    assert_eq!(
        h.store.list(&self::key("media")).unwrap(),
        vec![keep.clone()]
    );
    h.store.delete(&keep).unwrap();
    assert!(h.store.list(&self::key("media")).unwrap().is_empty());
    // A key whose directory was emptied can be written again.
    put_bytes(&*h.store, &key, b"back");
    assert_eq!(read_all(&*h.store, &key), b"back");
}

/// `list` returns the keys under a prefix segment by segment, sorted, and nothing else.
pub fn list_finds_keys_under_a_prefix_by_segment(h: Harness) {
    let keys = [
        "media/a/2",
        "media/a/1",
        "media/ab/1",
        "media/b/x/y",
        "other/1",
    ];
    for k in keys {
        put_bytes(&*h.store, &key(k), k.as_bytes());
    }
    let listed = |prefix: &str| -> Vec<String> {
        h.store
            .list(&key(prefix))
            .unwrap()
            .iter()
            .map(|k| k.as_str().to_owned())
            .collect()
    };
    assert_eq!(listed("media/a"), ["media/a/1", "media/a/2"]);
    assert_eq!(
        listed("media"),
        ["media/a/1", "media/a/2", "media/ab/1", "media/b/x/y"]
    );
    assert_eq!(listed("media/b"), ["media/b/x/y"]);
    assert_eq!(listed("other"), ["other/1"]);
    assert!(listed("media/a/1").is_empty(), "a key is not under itself");
    assert!(listed("med").is_empty(), "prefixes match whole segments");
    assert!(listed("nothing").is_empty());
}

/// A key that is a prefix of other keys holds no object: get, size and delete treat it as
/// missing, and deleting it leaves the keys below alone.
pub fn a_prefix_of_keys_is_not_an_object(h: Harness) {
    let child = key("media/p/1");
    put_bytes(&*h.store, &child, b"child");
    let parent = key("media/p");
    assert_not_found(h.store.get(&parent), "get of a prefix");
    assert_not_found(h.store.get_range(&parent, 0, 1), "range of a prefix");
    assert_eq!(h.store.size(&parent).unwrap(), None);
    h.store.delete(&parent).unwrap();
    assert_eq!(read_all(&*h.store, &child), b"child");
    let beneath_a_file = key("media/p/1/deeper");
    assert_not_found(h.store.get(&beneath_a_file), "get beneath an object");
    assert_eq!(h.store.size(&beneath_a_file).unwrap(), None);
}

/// A put whose source fails (after a byte, and after more than a part) reports the source's
/// failure and leaves no object, no listing entry and no temporary file.
pub fn a_put_that_fails_midstream_leaves_nothing(h: Harness) {
    for (i, (len, fail_at)) in [(10 * 1024, 1), (20 * MIB, 10 * MIB)]
        .into_iter()
        .enumerate()
    {
        let key = key(&format!("media/f/broken-{i}"));
        let err = h
            .store
            .put(
                &key,
                &mut Pattern::new(7, len).slow(64 * 1024).failing_at(fail_at),
            )
            .unwrap_err();
        assert_eq!(err.code(), "objects.source", "{err}");
        assert_not_found(h.store.get(&key), "get after a failed put");
        assert_eq!(h.store.size(&key).unwrap(), None);
        assert!(h.store.list(&self::key("media")).unwrap().is_empty());
        assert_no_leftovers(&h);
    }
}

/// A failed put over an existing object leaves the previous object intact.
pub fn a_failed_overwrite_keeps_the_previous_object(h: Harness) {
    let key = key("media/o/kept");
    put_bytes(&*h.store, &key, b"the previous version");
    for (len, fail_at) in [(1024, 512), (12 * MIB, 9 * MIB)] {
        let err = h
            .store
            .put(&key, &mut Pattern::new(3, len).failing_at(fail_at))
            .unwrap_err();
        assert_eq!(err.code(), "objects.source", "{err}");
        assert_eq!(read_all(&*h.store, &key), b"the previous version");
        assert_no_leftovers(&h);
    }
}

/// An overwrite replaces the object whole, whether the new one is shorter or longer.
pub fn an_overwrite_replaces_the_whole_object(h: Harness) {
    let key = key("media/o/replaced");
    round_trip(&h, &key, 1, MIB, usize::MAX);
    put_bytes(&*h.store, &key, b"short");
    assert_eq!(read_all(&*h.store, &key), b"short");
    assert_eq!(h.store.size(&key).unwrap(), Some(5));
    round_trip(&h, &key, 2, 9 * MIB, usize::MAX);
    assert_eq!(h.store.list(&self::key("media")).unwrap(), vec![key]);
}

/// Two puts racing on one key leave one of them whole, never a mix.
pub fn concurrent_puts_to_one_key_leave_one_whole_object(h: Harness) {
    let key = key("media/c/raced");
    let len = 2 * MIB;
    let writers: Vec<_> = [11u64, 12]
        .into_iter()
        .map(|seed| {
            let store = Arc::clone(&h.store);
            let key = key.clone();
            std::thread::spawn(move || store.put(&key, &mut Pattern::new(seed, len).slow(8192)))
        })
        .collect();
    for writer in writers {
        writer.join().unwrap().unwrap();
    }
    let stored = read_all(&*h.store, &key);
    let candidates = [11u64, 12].map(|seed| {
        let mut bytes = Vec::new();
        Pattern::new(seed, len).read_to_end(&mut bytes).unwrap();
        bytes
    });
    assert!(
        candidates.contains(&stored),
        "the stored object is neither put's bytes"
    );
    assert_no_leftovers(&h);
}

/// A reader keeps working after the store that handed it out is dropped.
pub fn a_reader_outlives_its_store(h: Harness) {
    let key = key("media/r/outlived");
    round_trip(&h, &key, 4, MIB + 17, usize::MAX);
    let reader = h.store.get(&key).unwrap();
    // The leftovers hook may clean up the backend when dropped: it goes last.
    let Harness { store, leftovers } = h;
    drop(store);
    assert_same_stream(
        reader,
        Pattern::new(4, MIB + 17),
        "after the store was dropped",
    );
    drop(leftovers);
}

/// Keys that could escape a directory, hide a file or need encoding are refused before any
/// store sees them, and valid neighbours of them work.
pub fn invalid_keys_are_refused(h: Harness) {
    for bad in [
        "",
        "/",
        "../x",
        "media/../x",
        "media/./x",
        "media//x",
        "/media",
        "media/",
        ".staging",
        "media/.put-x",
        "media/x y",
        "media/x\\y",
        "media/%2e%2e",
        "media/ü",
    ] {
        let err = ObjectKey::new(bad).unwrap_err();
        assert_eq!(err.code(), "objects.invalid_key", "{bad:?}");
    }
    let good = key("media/x..y/v1.0");
    put_bytes(&*h.store, &good, b"dots inside a segment are fine");
    assert_eq!(h.store.list(&key("media")).unwrap(), vec![good]);
}
