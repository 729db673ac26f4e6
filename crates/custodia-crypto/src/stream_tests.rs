//! Tests of media streams: round trips, every way of cutting, reordering, altering and moving a
//! stream, ranged reads, flat memory, and a throughput measurement to run by hand in release.

use std::io::{self, BufRead, Cursor, Read, Seek, SeekFrom, Write};

use crate::stream::{CHUNK_OVERHEAD, HEADER_LEN};
use crate::{
    ChunkSize, CryptoError, DataKey, ObjectKey, SealingReader, StreamOpener, StreamSealer,
};

const ID: &str = "obj-5b1e";
const SMALL: ChunkSize = ChunkSize::MIN;
const CODES_OF_A_CUT: [&str; 2] = ["crypto.truncated", "crypto.authentication_failed"];

/// A deterministic generator, so failures reproduce and no dependency is needed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// Plaintext without repeating patterns, so a chunk moved elsewhere could never look right.
fn plaintext(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = SplitMix(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

fn chunk_len(chunk: ChunkSize) -> usize {
    chunk.get() as usize
}

fn sealed_chunk_len(chunk: ChunkSize) -> usize {
    chunk_len(chunk) + CHUNK_OVERHEAD
}

fn seal_with(key: &ObjectKey, id: &str, chunk: ChunkSize, data: &[u8], piece: usize) -> Vec<u8> {
    let mut sealer = StreamSealer::with_chunk_size(key, id, chunk, Vec::new()).unwrap();
    for part in data.chunks(piece.max(1)) {
        sealer.write_all(part).unwrap();
    }
    sealer.finish().unwrap()
}

fn seal(key: &ObjectKey, chunk: ChunkSize, data: &[u8]) -> Vec<u8> {
    seal_with(key, ID, chunk, data, data.len())
}

/// Opens a whole stream with reads of `read_size` bytes; on failure returns the error's code
/// and everything that was returned before it. Opens it twice, copying each chunk into the
/// opener's buffer and opening it in the slice's own memory, and checks both agree.
fn open_with(
    key: &ObjectKey,
    id: &str,
    sealed: &[u8],
    read_size: usize,
) -> Result<Vec<u8>, (&'static str, Vec<u8>)> {
    let copied = read_all(StreamOpener::new(key, id, sealed), read_size);
    let in_place = read_all(
        StreamOpener::new(key, id, sealed).map(StreamOpener::use_inner_buffer),
        read_size,
    );
    assert!(copied == in_place, "both ways of reading agree");
    copied
}

fn read_all<R: Read>(
    opener: Result<StreamOpener<'_, R>, CryptoError>,
    read_size: usize,
) -> Result<Vec<u8>, (&'static str, Vec<u8>)> {
    let mut opener = opener.map_err(|e| (e.code(), Vec::new()))?;
    let mut out = Vec::new();
    let mut buf = vec![0; read_size];
    loop {
        match opener.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(error) => return Err((CryptoError::from_io(error).code(), out)),
        }
    }
}

fn open(key: &ObjectKey, sealed: &[u8]) -> Result<Vec<u8>, (&'static str, Vec<u8>)> {
    open_with(key, ID, sealed, 4096)
}

fn open_range(
    key: &ObjectKey,
    sealed: &[u8],
    start: u64,
    len: u64,
) -> Result<Vec<u8>, &'static str> {
    let read = |in_place: bool| {
        let opener = StreamOpener::open_range(key, ID, Cursor::new(sealed), start, len)
            .map_err(|e| e.code())?;
        let mut opener = if in_place {
            opener.use_inner_buffer()
        } else {
            opener
        };
        let mut out = Vec::new();
        opener
            .read_to_end(&mut out)
            .map_err(|e| CryptoError::from_io(e).code())?;
        Ok(out)
    };
    let copied = read(false);
    assert!(copied == read(true), "both ways of reading agree");
    assert!(copied == open_range_fetched(key, sealed, start, len).map(|(bytes, _)| bytes));
    copied
}

/// The bytes a ranged read returned, and the `(offset, len)` of every fetch it made.
type Fetched = (Vec<u8>, Vec<(u64, u64)>);

/// A ranged read through `open_range_with`, as from object storage; also returns the byte
/// ranges it fetched.
fn open_range_fetched(
    key: &ObjectKey,
    sealed: &[u8],
    start: u64,
    len: u64,
) -> Result<Fetched, &'static str> {
    let mut fetched = Vec::new();
    let fetch = |offset: u64, len: u64| {
        fetched.push((offset, len));
        let from = (offset as usize).min(sealed.len());
        let to = offset.saturating_add(len).min(sealed.len() as u64) as usize;
        Ok(&sealed[from..to])
    };
    let mut opener = StreamOpener::open_range_with(key, ID, sealed.len() as u64, start, len, fetch)
        .map_err(|e| e.code())?;
    let mut out = Vec::new();
    opener
        .read_to_end(&mut out)
        .map_err(|e| CryptoError::from_io(e).code())?;
    drop(opener);
    Ok((out, fetched))
}

/// The stream's chunks, header first, as separate pieces to rearrange.
fn split_chunks(sealed: &[u8], chunk: ChunkSize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let (header, body) = sealed.split_at(HEADER_LEN);
    let chunks = body
        .chunks(sealed_chunk_len(chunk))
        .map(<[u8]>::to_vec)
        .collect();
    (header.to_vec(), chunks)
}

fn join(header: &[u8], chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut out = header.to_vec();
    for chunk in chunks {
        out.extend_from_slice(chunk);
    }
    out
}

// --- round trips --------------------------------------------------------------------------------

#[test]
fn round_trips_at_every_interesting_size_through_any_write_and_read_sizes() {
    let key = ObjectKey::generate().unwrap();
    for chunk in [SMALL, ChunkSize::DEFAULT] {
        let c = chunk_len(chunk);
        for len in [0, 1, c - 1, c, c + 1, 3 * c + c / 2] {
            let data = plaintext(len, len as u64);
            for write_size in [1, 7, 4096, c, 3 * c, len] {
                if write_size == 1 && len > 4 * 1024 {
                    continue; // byte-by-byte writes are covered by the small chunk size
                }
                let sealed = seal_with(&key, ID, chunk, &data, write_size);
                assert_eq!(&sealed[..4], b"CDMS");
                assert_eq!(sealed[4], 1, "format version");
                assert_eq!(
                    u32::from_be_bytes(sealed[5..9].try_into().unwrap()),
                    chunk.get()
                );
                let expected_len = HEADER_LEN + len + CHUNK_OVERHEAD * (len / c + 1);
                assert_eq!(sealed.len(), expected_len, "len {len}");
                assert_eq!(chunk.sealed_len(len as u64), Some(expected_len as u64));
                assert_eq!(
                    chunk.plaintext_len(expected_len as u64).unwrap(),
                    len as u64
                );
                for read_size in [1, 13, c, 2 * c + 5] {
                    if read_size == 1 && len > 4 * 1024 {
                        continue;
                    }
                    let opened = open_with(&key, ID, &sealed, read_size).unwrap();
                    assert!(
                        opened == data,
                        "len {len} write {write_size} read {read_size}"
                    );
                }
            }
        }
    }
}

#[test]
fn chunks_open_in_the_inner_readers_buffer_whatever_its_size() {
    let key = ObjectKey::generate().unwrap();
    let c = chunk_len(SMALL);
    let data = plaintext(5 * c + 123, 30);
    let sealed = seal(&key, SMALL, &data);
    for capacity in [1, 100, c, c + CHUNK_OVERHEAD, 3 * c, 1 << 20] {
        for read_size in [1, 17, c, 4 * c] {
            let reader = io::BufReader::with_capacity(capacity, sealed.as_slice());
            let opener = StreamOpener::new(&key, ID, reader).map(StreamOpener::use_inner_buffer);
            let opened = read_all(opener, read_size).unwrap();
            assert!(opened == data, "capacity {capacity} read {read_size}");
        }
        let reader = io::BufReader::with_capacity(capacity, Cursor::new(&sealed));
        let mut opener = StreamOpener::open_range(&key, ID, reader, 1000, 3000)
            .unwrap()
            .use_inner_buffer();
        let mut got = Vec::new();
        opener.read_to_end(&mut got).unwrap();
        assert!(got == data[1000..4000], "capacity {capacity}");
    }
    let mut tampered = sealed.clone();
    tampered[HEADER_LEN + 2 * sealed_chunk_len(SMALL) + 9] ^= 2;
    let opener =
        StreamOpener::new(&key, ID, tampered.as_slice()).map(StreamOpener::use_inner_buffer);
    let (code, returned) = read_all(opener, 4 * c).unwrap_err();
    assert_eq!(code, "crypto.authentication_failed");
    assert!(returned == data[..2 * c]);
}

#[test]
fn an_empty_object_is_one_empty_final_chunk() {
    let key = ObjectKey::generate().unwrap();
    let sealed = seal(&key, ChunkSize::DEFAULT, b"");
    assert_eq!(sealed.len(), HEADER_LEN + CHUNK_OVERHEAD);
    assert_eq!(open(&key, &sealed).unwrap(), b"");
    // A header alone is not an empty object but a truncated one.
    assert_eq!(
        open(&key, &sealed[..HEADER_LEN]).unwrap_err().0,
        "crypto.truncated"
    );
}

#[test]
fn a_large_object_round_trips_through_small_writes_reads_and_buf_read() {
    let key = ObjectKey::generate().unwrap();
    let data = plaintext(5 << 20, 5);
    // Irregular write sizes cross chunk boundaries everywhere.
    let mut sealer = StreamSealer::new(&key, ID, Vec::new()).unwrap();
    let mut rng = SplitMix(1);
    let mut rest = data.as_slice();
    while !rest.is_empty() {
        let take = (1 + rng.below(150_000) as usize).min(rest.len());
        let (head, tail) = rest.split_at(take);
        sealer.write_all(head).unwrap();
        rest = tail;
    }
    let sealed = sealer.finish().unwrap();
    assert_eq!(
        sealed.len() as u64,
        ChunkSize::DEFAULT.sealed_len(data.len() as u64).unwrap()
    );

    // Irregular reads.
    let mut opener = StreamOpener::new(&key, ID, sealed.as_slice()).unwrap();
    let mut opened = Vec::new();
    let mut buf = vec![0; 200_000];
    loop {
        let want = 1 + rng.below(buf.len() as u64) as usize;
        let n = opener.read(&mut buf[..want]).unwrap();
        if n == 0 {
            break;
        }
        opened.extend_from_slice(&buf[..n]);
    }
    assert!(opened == data);

    // `read_to_end` and `std::io::copy`.
    let mut opened = Vec::new();
    StreamOpener::new(&key, ID, sealed.as_slice())
        .unwrap()
        .read_to_end(&mut opened)
        .unwrap();
    assert!(opened == data);
    let mut copied = Vec::new();
    let mut opener = StreamOpener::new(&key, ID, sealed.as_slice()).unwrap();
    io::copy(&mut opener, &mut copied).unwrap();
    assert!(copied == data);

    // `BufRead`, consuming odd amounts.
    let mut opener = StreamOpener::new(&key, ID, sealed.as_slice()).unwrap();
    let mut opened = Vec::new();
    loop {
        let ready = opener.fill_buf().unwrap();
        if ready.is_empty() {
            break;
        }
        let take = ready.len().min(1 + rng.below(70_000) as usize);
        opened.extend_from_slice(&ready[..take]);
        opener.consume(take);
    }
    assert!(opened == data);
}

#[test]
fn sealing_the_same_object_twice_gives_different_streams() {
    let key = ObjectKey::generate().unwrap();
    let a = seal(&key, SMALL, b"same bytes");
    let b = seal(&key, SMALL, b"same bytes");
    assert_ne!(a[9..16], b[9..16], "a fresh nonce prefix per stream");
    assert_ne!(a[HEADER_LEN..], b[HEADER_LEN..]);
}

#[test]
fn sealed_and_plaintext_lengths_are_inverse() {
    for chunk in [SMALL, ChunkSize::DEFAULT, ChunkSize::MAX] {
        let c = u64::from(chunk.get());
        for len in [0, 1, c - 1, c, c + 1, 7 * c, 7 * c + 3, 1 << 40] {
            let sealed = chunk.sealed_len(len).unwrap();
            assert_eq!(chunk.plaintext_len(sealed).unwrap(), len);
            // Cut by at most the final chunk's plaintext, the length still looks whole (the
            // final chunk's tag catches that); cut deeper into the tag, it cannot be a stream.
            let in_final = len % c;
            let tag = CHUNK_OVERHEAD as u64;
            let cuts = [
                1,
                2,
                in_final.saturating_sub(1),
                in_final,
                in_final + 1,
                in_final + tag,
            ];
            for cut in cuts.into_iter().filter(|&cut| cut > 0) {
                let claimed = chunk.plaintext_len(sealed - cut);
                if cut <= in_final {
                    assert_eq!(claimed.unwrap(), len - cut);
                } else {
                    assert_eq!(
                        claimed.unwrap_err().code(),
                        "crypto.truncated",
                        "chunk {c} len {len} cut {cut}"
                    );
                }
            }
        }
        for short in 0..=HEADER_LEN as u64 {
            assert_eq!(
                chunk.plaintext_len(short).unwrap_err().code(),
                "crypto.truncated"
            );
        }
        assert_eq!(chunk.sealed_len(c * (1 << 32)), None, "past the counter");
        assert_eq!(chunk.sealed_len(u64::MAX), None);
    }
}

#[test]
fn chunk_sizes_are_bounded() {
    assert_eq!(ChunkSize::default(), ChunkSize::DEFAULT);
    assert_eq!(ChunkSize::DEFAULT.get(), 64 * 1024);
    assert_eq!(ChunkSize::new(0), None);
    assert_eq!(ChunkSize::new(1023), None);
    assert_eq!(ChunkSize::new(1024), Some(ChunkSize::MIN));
    assert_eq!(ChunkSize::new(1 << 24), Some(ChunkSize::MAX));
    assert_eq!(ChunkSize::new((1 << 24) + 1), None);
}

// --- truncation ---------------------------------------------------------------------------------

/// Cuts `sealed` at `cut` and checks the stream fails and never returns a byte of a chunk that
/// is not wholly present.
fn assert_cut_fails(key: &ObjectKey, chunk: ChunkSize, data: &[u8], sealed: &[u8], cut: usize) {
    let (code, returned) = open_with(key, ID, &sealed[..cut], 1000).unwrap_err();
    assert!(CODES_OF_A_CUT.contains(&code), "cut {cut}: {code}");
    let whole_chunks = cut.saturating_sub(HEADER_LEN) / sealed_chunk_len(chunk);
    assert!(
        returned.len() <= whole_chunks * chunk_len(chunk),
        "cut {cut}: returned {} bytes",
        returned.len()
    );
    assert!(returned == data[..returned.len()], "cut {cut}");
    let boundary = cut <= HEADER_LEN || matches!((cut - HEADER_LEN) % sealed_chunk_len(chunk), 0);
    if boundary {
        assert_eq!(code, "crypto.truncated", "a cut on a boundary, at {cut}");
    }
}

#[test]
fn every_truncation_point_fails() {
    let key = ObjectKey::generate().unwrap();
    let c = chunk_len(SMALL);
    for len in [0, 1, c, 3 * c, 3 * c + c / 2] {
        let data = plaintext(len, 3);
        let sealed = seal(&key, SMALL, &data);
        for cut in 0..sealed.len() {
            assert_cut_fails(&key, SMALL, &data, &sealed, cut);
        }
    }
}

#[test]
fn truncation_at_the_default_chunk_size_fails_at_boundaries_and_inside_chunks() {
    let key = ObjectKey::generate().unwrap();
    let chunk = ChunkSize::DEFAULT;
    let data = plaintext(3 * chunk_len(chunk) + 1000, 4);
    let sealed = seal(&key, chunk, &data);
    let mut cuts = vec![0, 1, HEADER_LEN - 1, HEADER_LEN, HEADER_LEN + 1];
    for boundary in (HEADER_LEN..sealed.len()).step_by(sealed_chunk_len(chunk)) {
        cuts.extend([
            boundary - 1,
            boundary,
            boundary + 1,
            boundary + 15,
            boundary + 16,
        ]);
        cuts.push(boundary + 1 + chunk_len(chunk) / 2);
    }
    cuts.push(sealed.len() - 1);
    for cut in cuts.into_iter().filter(|&cut| cut < sealed.len()) {
        assert_cut_fails(&key, chunk, &data, &sealed, cut);
    }
}

#[test]
fn appended_bytes_fail() {
    let key = ObjectKey::generate().unwrap();
    let data = plaintext(2 * chunk_len(SMALL) + 10, 6);
    let sealed = seal(&key, SMALL, &data);
    for extra in [1, 15, 16, 17, sealed_chunk_len(SMALL)] {
        let mut longer = sealed.clone();
        longer.extend(std::iter::repeat_n(0, extra));
        let (code, _) = open(&key, &longer).unwrap_err();
        assert!(CODES_OF_A_CUT.contains(&code), "{extra}: {code}");
        assert!(CODES_OF_A_CUT.contains(&open_range(&key, &longer, 0, u64::MAX).unwrap_err()));
    }
    // Another stream's chunks appended after the final chunk.
    let other = seal(&key, SMALL, &data);
    let mut spliced = sealed.clone();
    spliced.extend_from_slice(&other[HEADER_LEN..]);
    assert!(open(&key, &spliced).is_err());
}

// --- reordering, tampering, moving --------------------------------------------------------------

#[test]
fn reordered_duplicated_dropped_and_swapped_chunks_fail() {
    let key = ObjectKey::generate().unwrap();
    let data = plaintext(4 * chunk_len(SMALL) + 100, 7);
    let sealed = seal(&key, SMALL, &data);
    let (header, chunks) = split_chunks(&sealed, SMALL);
    assert_eq!(chunks.len(), 5);
    let c = chunk_len(SMALL);
    // Each case: the rearranged chunk indices, and how many leading chunks are still genuine.
    let cases: [(&[usize], usize); 9] = [
        (&[1, 0, 2, 3, 4], 0),
        (&[0, 2, 1, 3, 4], 1),
        (&[0, 1, 1, 2, 3, 4], 2),
        (&[0, 0, 1, 2, 3, 4], 1),
        (&[0, 1, 3, 4], 2),
        (&[1, 2, 3, 4], 0),
        (&[0, 1, 2, 4, 3], 3),
        (&[4], 0),
        (&[0, 1, 2, 3, 4, 4], 4),
    ];
    for (order, genuine) in cases {
        let rearranged: Vec<Vec<u8>> = order.iter().map(|&i| chunks[i].clone()).collect();
        let (code, returned) = open(&key, &join(&header, &rearranged)).unwrap_err();
        assert!(CODES_OF_A_CUT.contains(&code), "{order:?}: {code}");
        assert!(returned.len() <= genuine * c, "{order:?}");
        assert!(returned == data[..returned.len()], "{order:?}");
    }
}

#[test]
fn a_flipped_bit_anywhere_fails() {
    let key = ObjectKey::generate().unwrap();
    let data = plaintext(2 * chunk_len(SMALL) + 500, 8);
    let sealed = seal(&key, SMALL, &data);
    for byte in 0..sealed.len() {
        for bit in 0..8 {
            let mut tampered = sealed.clone();
            tampered[byte] ^= 1 << bit;
            let (code, returned) = open(&key, &tampered).unwrap_err();
            let expected: &[&str] = match byte {
                // Magic and version.
                0..5 => &["crypto.malformed"],
                // The chunk size: out of range, or a size that splits the stream elsewhere.
                5..9 => &[
                    "crypto.malformed",
                    "crypto.truncated",
                    "crypto.authentication_failed",
                ],
                _ => &["crypto.authentication_failed"],
            };
            assert!(expected.contains(&code), "byte {byte} bit {bit}: {code}");
            // Nothing from the altered chunk (or, for the header, from any chunk) comes out.
            let limit = byte.saturating_sub(HEADER_LEN) / sealed_chunk_len(SMALL);
            let limit = if byte < HEADER_LEN {
                0
            } else {
                limit * chunk_len(SMALL)
            };
            assert!(returned.len() <= limit, "byte {byte} bit {bit}");
        }
    }
}

#[test]
fn a_failed_stream_keeps_failing_and_never_returns_later_chunks() {
    let key = ObjectKey::generate().unwrap();
    let data = plaintext(3 * chunk_len(SMALL), 9);
    let mut sealed = seal(&key, SMALL, &data);
    sealed[HEADER_LEN + sealed_chunk_len(SMALL) + 3] ^= 1;
    let mut opener = StreamOpener::new(&key, ID, sealed.as_slice()).unwrap();
    let mut buf = vec![0; chunk_len(SMALL)];
    assert_eq!(opener.read(&mut buf).unwrap(), chunk_len(SMALL));
    for _ in 0..3 {
        let error = opener.read(&mut buf).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            CryptoError::from_io(error).code(),
            "crypto.authentication_failed"
        );
    }
    assert!(opener.fill_buf().is_err());
}

#[test]
fn a_chunk_that_fails_leaves_no_plaintext_in_the_callers_buffer() {
    let key = ObjectKey::generate().unwrap();
    let data = plaintext(2 * chunk_len(SMALL), 10);
    let mut sealed = seal(&key, SMALL, &data);
    // The tag of the first chunk: its body decrypts to the right plaintext, the tag then fails.
    sealed[HEADER_LEN + chunk_len(SMALL)] ^= 1;
    let mut opener = StreamOpener::new(&key, ID, sealed.as_slice()).unwrap();
    let mut buf = vec![0xaa; 3 * chunk_len(SMALL)];
    assert!(opener.read(&mut buf).is_err());
    assert!(
        buf[..chunk_len(SMALL)].iter().all(|&b| b == 0),
        "wiped where the chunk was decrypted"
    );
    assert!(buf[chunk_len(SMALL)..].iter().all(|&b| b == 0xaa));

    let mut opener = StreamOpener::new(&key, ID, sealed.as_slice())
        .unwrap()
        .use_inner_buffer();
    let mut buf = vec![0xaa; 3 * chunk_len(SMALL)];
    assert!(opener.read(&mut buf).is_err());
    assert!(buf[..chunk_len(SMALL)].iter().all(|&b| b == 0));
}

#[test]
fn chunks_moved_from_another_object_fail() {
    let key = ObjectKey::generate().unwrap();
    let data = plaintext(3 * chunk_len(SMALL) + 7, 11);
    let sealed = seal(&key, SMALL, &data);
    let (header, chunks) = split_chunks(&sealed, SMALL);

    // The whole stream under another object id.
    assert_eq!(
        open_with(&key, "obj-other", &sealed, 4096).unwrap_err().0,
        "crypto.authentication_failed"
    );
    // The same object id and plaintext sealed again under the same key (which should never
    // happen): another nonce prefix, so neither its chunks nor its header fit.
    let again = seal(&key, SMALL, &data);
    let (other_header, other_chunks) = split_chunks(&again, SMALL);
    // Another object under another key.
    let other_key = ObjectKey::generate().unwrap();
    let foreign = seal(&other_key, SMALL, &data);
    let (_, foreign_chunks) = split_chunks(&foreign, SMALL);
    // Another object id under the same key.
    let renamed = seal_with(&key, "obj-other", SMALL, &data, data.len());
    let (renamed_header, renamed_chunks) = split_chunks(&renamed, SMALL);

    for source in [&other_chunks, &foreign_chunks, &renamed_chunks] {
        for i in 0..chunks.len() {
            let mut mixed = chunks.clone();
            mixed[i] = source[i].clone();
            let (code, returned) = open(&key, &join(&header, &mixed)).unwrap_err();
            assert_eq!(code, "crypto.authentication_failed", "chunk {i}");
            assert!(returned.len() <= i * chunk_len(SMALL));
        }
    }
    for other in [&other_header, &renamed_header] {
        assert_eq!(
            open(&key, &join(other, &chunks)).unwrap_err().0,
            "crypto.authentication_failed"
        );
    }
    assert_eq!(
        open(&other_key, &sealed).unwrap_err().0,
        "crypto.authentication_failed"
    );
}

#[test]
fn malformed_headers_are_refused_before_any_chunk() {
    let key = ObjectKey::generate().unwrap();
    let sealed = seal(&key, SMALL, b"some audio");
    let code_of = |bytes: &[u8]| StreamOpener::new(&key, ID, bytes).unwrap_err().code();
    for len in 0..HEADER_LEN {
        assert_eq!(code_of(&sealed[..len]), "crypto.truncated", "{len}");
    }
    let with = |at: usize, bytes: &[u8]| {
        let mut out = sealed.clone();
        out[at..at + bytes.len()].copy_from_slice(bytes);
        out
    };
    assert_eq!(code_of(&with(0, b"CDMX")), "crypto.malformed");
    assert_eq!(code_of(&with(4, &[2])), "crypto.malformed");
    for size in [0_u32, 1023, (1 << 24) + 1, u32::MAX] {
        let error =
            StreamOpener::new(&key, ID, with(5, &size.to_be_bytes()).as_slice()).unwrap_err();
        assert_eq!(error.code(), "crypto.malformed");
        assert!(error.to_string().contains("chunk size"), "{error}");
    }
    // A field-sealed value is not a media stream.
    let field = DataKey::generate()
        .unwrap()
        .seal(&crate::FieldContext::new("s", "c", "r"), &[0; 64])
        .unwrap();
    assert_eq!(code_of(&field), "crypto.malformed");
}

// --- ranged reads -------------------------------------------------------------------------------

fn expected_slice(data: &[u8], start: u64, len: u64) -> &[u8] {
    let start = (start as usize).min(data.len());
    let end = start
        .saturating_add(len.min(usize::MAX as u64) as usize)
        .min(data.len());
    &data[start..end]
}

#[test]
fn ranged_reads_return_exactly_the_requested_bytes() {
    let key = ObjectKey::generate().unwrap();
    let mut rng = SplitMix(12);
    for chunk in [SMALL, ChunkSize::DEFAULT] {
        let c = chunk_len(chunk) as u64;
        for len in [0, 1, c - 1, c, c + 1, 3 * c + c / 2, 10 * c] {
            let data = plaintext(len as usize, len);
            let sealed = seal(&key, chunk, &data);
            let mut ranges = vec![
                (0, len),
                (0, u64::MAX),
                (len, 0),
                (len, 10),
                (len + 1, 10),
                (u64::MAX, u64::MAX),
                (0, 0),
                (c, c),
                (c - 1, 2),
                (len.saturating_sub(1), 1),
            ];
            for _ in 0..40 {
                let start = rng.below(len + 2);
                let span = rng.below(len + 2 - start.min(len)) + rng.below(2);
                ranges.push((start, span));
            }
            for (start, span) in ranges {
                let got = open_range(&key, &sealed, start, span).unwrap();
                assert!(
                    got == expected_slice(&data, start, span),
                    "chunk {c} len {len} range {start}+{span}"
                );
            }
            let opener =
                StreamOpener::open_range(&key, ID, Cursor::new(&sealed), 1, u64::MAX).unwrap();
            assert_eq!(opener.object_len(), Some(len));
            assert_eq!(opener.range(), Some(1.min(len)..len));
        }
    }
}

#[test]
fn ranged_reads_through_small_reads_and_from_an_offset_in_the_reader() {
    let key = ObjectKey::generate().unwrap();
    let data = plaintext(5 * chunk_len(SMALL) + 11, 13);
    let sealed = seal(&key, SMALL, &data);
    let mut file = b"unrelated bytes before the object".to_vec();
    let base = file.len() as u64;
    file.extend_from_slice(&sealed);
    let mut cursor = Cursor::new(&file);
    cursor.seek(SeekFrom::Start(base)).unwrap();
    let mut opener = StreamOpener::open_range(&key, ID, cursor, 1500, 3000).unwrap();
    assert_eq!(opener.object_len(), Some(data.len() as u64));
    let mut got = Vec::new();
    let mut buf = [0; 7];
    loop {
        let n = opener.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got == data[1500..4500]);
}

#[test]
fn a_ranged_read_verifies_the_chunks_it_touches_and_only_those() {
    let key = ObjectKey::generate().unwrap();
    let c = chunk_len(SMALL);
    let data = plaintext(5 * c + 100, 14);
    let sealed = seal(&key, SMALL, &data);
    for tampered_chunk in 0..6 {
        let mut tampered = sealed.clone();
        tampered[HEADER_LEN + tampered_chunk * sealed_chunk_len(SMALL) + 5] ^= 0x40;
        for (start, len) in [
            (0, 1),
            (c as u64 + 10, 2 * c as u64),
            (3 * c as u64, 1),
            (0, u64::MAX),
        ] {
            let first = start as usize / c;
            let last =
                (start + len.min(data.len() as u64) - 1).min(data.len() as u64 - 1) as usize / c;
            let touched = (first..=last).contains(&tampered_chunk);
            let result = open_range(&key, &tampered, start, len);
            if touched {
                assert_eq!(
                    result.unwrap_err(),
                    "crypto.authentication_failed",
                    "chunk {tampered_chunk} range {start}+{len}"
                );
            } else {
                assert!(result.unwrap() == expected_slice(&data, start, len));
            }
        }
    }
    // The header is in every chunk's associated data.
    let mut tampered = sealed.clone();
    tampered[12] ^= 1;
    assert_eq!(
        open_range(&key, &tampered, 2 * c as u64, 5).unwrap_err(),
        "crypto.authentication_failed"
    );
}

#[test]
fn a_ranged_read_of_a_truncated_objects_tail_fails() {
    let key = ObjectKey::generate().unwrap();
    let c = chunk_len(SMALL);
    // A length that is a multiple of the chunk size ends with an empty final chunk, which a
    // range to the end must still open.
    for len in [4 * c, 4 * c + 300] {
        let data = plaintext(len, 15);
        let sealed = seal(&key, SMALL, &data);
        for cut in HEADER_LEN..sealed.len() {
            let cut_sealed = &sealed[..cut];
            // Every range that reaches the end the cut object claims, or asks past it, fails.
            let claimed = SMALL.plaintext_len(cut as u64);
            let tails = [
                (0, u64::MAX),
                (claimed.as_ref().map_or(0, |&l| l.saturating_sub(1)), 1),
                (claimed.as_ref().map_or(0, |&l| l), 0),
                (u64::MAX, 1),
            ];
            for (start, span) in tails {
                let code = open_range(&key, cut_sealed, start, span).unwrap_err();
                assert!(
                    CODES_OF_A_CUT.contains(&code),
                    "cut {cut} range {start}+{span}"
                );
            }
            let boundary = (cut - HEADER_LEN) % sealed_chunk_len(SMALL) < CHUNK_OVERHEAD;
            if boundary {
                assert_eq!(
                    StreamOpener::open_range(&key, ID, Cursor::new(cut_sealed), 0, 1)
                        .unwrap_err()
                        .code(),
                    "crypto.truncated"
                );
            }
            // A range wholly inside the chunks that survived still returns genuine bytes.
            let survived = cut > HEADER_LEN + 2 * sealed_chunk_len(SMALL);
            if matches!(claimed, Ok(claimed) if claimed > c as u64) && survived {
                assert!(open_range(&key, cut_sealed, 10, 100).unwrap() == data[10..110]);
            }
        }
    }
}

#[test]
fn a_ranged_read_from_object_storage_fetches_only_the_chunks_it_needs() {
    let key = ObjectKey::generate().unwrap();
    let c = chunk_len(SMALL) as u64;
    let s = sealed_chunk_len(SMALL) as u64;
    let h = HEADER_LEN as u64;
    let data = plaintext(6 * c as usize + 40, 23);
    let sealed = seal(&key, SMALL, &data);
    let total = sealed.len() as u64;
    let cases = [
        // (start, len, the chunk bytes fetched after the header)
        (0, 1, Some((h, s))),
        (c - 1, 2, Some((h, 2 * s))),
        (2 * c, c, Some((h + 2 * s, s))),
        (2 * c + 5, 10, Some((h + 2 * s, s))),
        (5 * c, 100, Some((h + 5 * s, s))),
        (5 * c + 1000, 100, Some((h + 5 * s, total - h - 5 * s))),
        (6 * c + 39, 1, Some((h + 6 * s, total - h - 6 * s))),
        (6 * c + 40, 0, Some((h + 6 * s, total - h - 6 * s))),
        (u64::MAX, 5, Some((h + 6 * s, total - h - 6 * s))),
        (3 * c, 0, None),
    ];
    for (start, len, chunks) in cases {
        let (bytes, fetched) = open_range_fetched(&key, &sealed, start, len).unwrap();
        assert!(bytes == expected_slice(&data, start, len), "{start}+{len}");
        let mut expected = vec![(0, h)];
        expected.extend(chunks);
        assert_eq!(fetched, expected, "{start}+{len}");
    }
    // A store that hands back fewer bytes than asked (the object changed underneath) is a cut.
    let short = |offset: u64, len: u64| {
        let to = (offset + len).min(sealed.len() as u64 - 1) as usize;
        Ok(&sealed[offset as usize..to])
    };
    let mut opener =
        StreamOpener::open_range_with(&key, ID, sealed.len() as u64, 0, u64::MAX, short).unwrap();
    let error = opener.read_to_end(&mut Vec::new()).unwrap_err();
    assert_eq!(CryptoError::from_io(error).code(), "crypto.truncated");
    // An error of the store is an I/O error that keeps its own.
    let failing = |_: u64, _: u64| -> io::Result<&[u8]> { Err(io::Error::other("store down")) };
    let error = StreamOpener::open_range_with(&key, ID, 100, 0, 1, failing).unwrap_err();
    assert_eq!(error.code(), "crypto.io");
    assert!(error.to_string().contains("store down"), "{error}");
}

#[test]
fn an_opener_that_owns_its_key_reads_as_one_that_borrows_it() {
    let data_key = DataKey::generate().unwrap();
    let key = ObjectKey::generate().unwrap();
    let wrapped = data_key.wrap_object_key(ID, &key).unwrap();
    let c = chunk_len(SMALL) as u64;
    let data = plaintext(6 * c as usize + 40, 29);
    let sealed = seal(&key, SMALL, &data);
    let fetch = |offset: u64, len: u64| -> io::Result<&[u8]> {
        let from = (offset as usize).min(sealed.len());
        let to = offset.saturating_add(len).min(sealed.len() as u64) as usize;
        Ok(&sealed[from..to])
    };
    for (start, len) in [
        (0, u64::MAX),
        (c - 1, 2),
        (2 * c + 5, 3 * c),
        (6 * c + 40, 0),
    ] {
        // The opener outlives the scope the key was unwrapped in.
        let mut opener = {
            let owned = data_key.unwrap_object_key(ID, &wrapped).unwrap();
            StreamOpener::open_range_with_owned_key(
                owned,
                ID,
                sealed.len() as u64,
                start,
                len,
                fetch,
            )
            .unwrap()
            .use_inner_buffer()
        };
        let mut out = Vec::new();
        opener.read_to_end(&mut out).unwrap();
        assert!(out == expected_slice(&data, start, len), "{start}+{len}");
        let borrowed = open_range_fetched(&key, &sealed, start, len).unwrap().0;
        assert!(out == borrowed, "{start}+{len}");
    }
    // Altered bytes fail as with a borrowed key.
    let mut tampered = sealed.clone();
    tampered[HEADER_LEN + 3] ^= 1;
    let owned = data_key.unwrap_object_key(ID, &wrapped).unwrap();
    let mut opener = StreamOpener::open_range_with_owned_key(
        owned,
        ID,
        tampered.len() as u64,
        0,
        u64::MAX,
        |offset: u64, len: u64| -> io::Result<&[u8]> {
            let to = offset.saturating_add(len).min(tampered.len() as u64) as usize;
            Ok(&tampered[offset as usize..to])
        },
    )
    .unwrap();
    let error = opener.read_to_end(&mut Vec::new()).unwrap_err();
    assert_eq!(
        CryptoError::from_io(error).code(),
        "crypto.authentication_failed"
    );
}

// --- sealing through a reader -------------------------------------------------------------------

fn seal_by_reading(key: &ObjectKey, chunk: ChunkSize, data: &[u8], read_size: usize) -> Vec<u8> {
    let reader = SealingReader::with_chunk_size(key, ID, chunk, data).unwrap();
    let copied = pull(reader, read_size);
    let reader = SealingReader::with_chunk_size(key, ID, chunk, data).unwrap();
    let in_place = pull(reader.use_inner_buffer(), read_size);
    // The nonce prefixes differ; the layout does not.
    assert_eq!(copied.len(), in_place.len());
    assert!(open(key, &in_place).unwrap() == data);
    copied
}

fn pull<R: Read>(mut reader: SealingReader<'_, R>, read_size: usize) -> Vec<u8> {
    let mut sealed = Vec::new();
    let mut buf = vec![0; read_size];
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        sealed.extend_from_slice(&buf[..n]);
    }
    // The end stays the end.
    assert_eq!(reader.read(&mut buf).unwrap(), 0);
    sealed
}

#[test]
fn a_sealing_reader_yields_the_same_format_through_any_read_size() {
    let key = ObjectKey::generate().unwrap();
    for chunk in [SMALL, ChunkSize::DEFAULT] {
        let c = chunk_len(chunk);
        let s = sealed_chunk_len(chunk);
        for len in [0, 1, c - 1, c, c + 1, 3 * c + c / 2] {
            let data = plaintext(len, 40 + len as u64);
            for read_size in [1, 13, HEADER_LEN, c, s, s + 5, 3 * s] {
                if read_size < 16 && len > 4096 {
                    continue;
                }
                let sealed = seal_by_reading(&key, chunk, &data, read_size);
                assert_eq!(
                    sealed.len() as u64,
                    chunk.sealed_len(len as u64).unwrap(),
                    "len {len} read {read_size}"
                );
                assert!(
                    open(&key, &sealed).unwrap() == data,
                    "len {len} read {read_size}"
                );
            }
        }
    }
    // Over buffered readers of any capacity.
    let data = plaintext(4 * chunk_len(SMALL) + 9, 43);
    for capacity in [1, 100, chunk_len(SMALL), 3 * chunk_len(SMALL)] {
        for read_size in [7, sealed_chunk_len(SMALL), 1 << 16] {
            let source = io::BufReader::with_capacity(capacity, data.as_slice());
            let reader = SealingReader::with_chunk_size(&key, ID, SMALL, source).unwrap();
            let sealed = pull(reader.use_inner_buffer(), read_size);
            assert!(
                open(&key, &sealed).unwrap() == data,
                "{capacity} {read_size}"
            );
        }
    }
    // `std::io::copy` and `read_to_end` pull it like any reader.
    let data = plaintext(3 * chunk_len(SMALL) + 9, 41);
    let mut reader = SealingReader::with_chunk_size(&key, ID, SMALL, data.as_slice()).unwrap();
    let mut sealed = Vec::new();
    io::copy(&mut reader, &mut sealed).unwrap();
    assert!(open(&key, &sealed).unwrap() == data);
    let mut sealed = Vec::new();
    SealingReader::with_chunk_size(&key, ID, SMALL, data.as_slice())
        .unwrap()
        .read_to_end(&mut sealed)
        .unwrap();
    assert!(open(&key, &sealed).unwrap() == data);
}

/// A reader that fails once, at `fail_at` bytes, then goes on.
#[derive(Debug)]
struct FailsOnce<'a> {
    data: &'a [u8],
    given: usize,
    fail_at: usize,
    failed: bool,
}

impl Read for FailsOnce<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.failed && self.given == self.fail_at {
            self.failed = true;
            return Err(io::Error::other("connection reset"));
        }
        let limit = if self.failed {
            usize::MAX
        } else {
            self.fail_at - self.given
        };
        let n = buf.len().min(self.data.len()).min(limit).min(300);
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        self.given += n;
        Ok(n)
    }
}

#[test]
fn a_sealing_reader_resumes_after_an_error_of_its_source_and_leaves_no_plaintext_behind() {
    let key = ObjectKey::generate().unwrap();
    let c = chunk_len(SMALL);
    let data = plaintext(3 * c + 100, 42);
    for fail_at in [0, 1, 500, c, c + 7, 3 * c + 50] {
        for read_size in [100, 3 * sealed_chunk_len(SMALL)] {
            let source = FailsOnce {
                data: &data,
                given: 0,
                fail_at,
                failed: false,
            };
            let mut reader = SealingReader::with_chunk_size(&key, ID, SMALL, source).unwrap();
            let mut sealed = Vec::new();
            let mut buf = vec![0; read_size];
            let mut errors = 0;
            loop {
                buf.fill(0x55);
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => sealed.extend_from_slice(&buf[..n]),
                    Err(error) => {
                        errors += 1;
                        assert_eq!(error.to_string(), "connection reset");
                        // Whatever plaintext went into the slice before the error was wiped.
                        let window = &data[fail_at.saturating_sub(fail_at % c)..fail_at];
                        assert!(
                            window.len() < 8 || !buf.windows(8).any(|w| w == &window[..8]),
                            "fail at {fail_at}, read {read_size}"
                        );
                    }
                }
            }
            assert_eq!(errors, 1);
            assert!(
                open(&key, &sealed).unwrap() == data,
                "fail at {fail_at} read {read_size}"
            );
        }
    }
}

#[test]
fn a_sealing_reader_that_runs_out_of_counter_stops_for_good() {
    let key = ObjectKey::generate().unwrap();
    let c = chunk_len(SMALL);
    let data = vec![1; 2 * c];
    let mut reader = SealingReader::with_chunk_size(&key, ID, SMALL, data.as_slice()).unwrap();
    reader.force_next_chunk_for_tests(u32::MAX);
    let mut buf = vec![0; 4 * c];
    assert_eq!(reader.read(&mut buf).unwrap(), HEADER_LEN);
    let error = reader.read(&mut buf).unwrap_err();
    assert_eq!(CryptoError::from_io(error).code(), "crypto.stream_too_long");
    assert!(
        buf.iter().all(|&b| b != 1),
        "no plaintext left in the slice"
    );
    let error = reader.read(&mut buf).unwrap_err();
    assert_eq!(CryptoError::from_io(error).code(), "crypto.io");
}

// --- memory, I/O and limits ---------------------------------------------------------------------

/// Reads a stream of `block` repeated through `opener` in reads of random sizes, checking every
/// byte and that the opener's buffer never grows; returns how many bytes it read.
fn read_repeated_block<R: Read>(
    opener: &mut StreamOpener<'_, R>,
    block: &[u8],
    rng: &mut SplitMix,
) -> usize {
    let one_chunk = opener.buffer_capacity();
    let mut read = 0;
    let mut buf = vec![0; 1 << 20];
    loop {
        let want = 1 + rng.below(buf.len() as u64) as usize;
        let n = opener.read(&mut buf[..want]).unwrap();
        assert_eq!(opener.buffer_capacity(), one_chunk);
        if n == 0 {
            return read;
        }
        let mut checked = 0;
        while checked < n {
            let at = (read + checked) % block.len();
            let len = (n - checked).min(block.len() - at);
            assert!(
                buf[checked..checked + len] == block[at..at + len],
                "at {read}"
            );
            checked += len;
        }
        read += n;
    }
}

/// `block` repeated until `left` bytes have been read.
#[derive(Debug)]
struct Repeated<'a> {
    block: &'a [u8],
    at: usize,
    left: usize,
}

impl Read for Repeated<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.left).min(self.block.len() - self.at);
        buf[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at = (self.at + n) % self.block.len();
        self.left -= n;
        Ok(n)
    }
}

#[test]
fn sixty_four_mib_pass_through_sealer_and_opener_in_one_chunk_of_memory() {
    const TOTAL: usize = 64 << 20;
    let key = ObjectKey::generate().unwrap();
    let chunk = ChunkSize::DEFAULT;
    let one_chunk = sealed_chunk_len(chunk);
    // The plaintext is a 1 MiB block repeated, so the test itself holds little memory.
    let block = plaintext(1 << 20, 16);
    let mut rng = SplitMix(17);

    // Written through a sealer, in writes of random sizes.
    let mut file = tempfile::tempfile().unwrap();
    let mut sealer = StreamSealer::new(&key, ID, &mut file).unwrap();
    assert_eq!(sealer.buffer_capacity(), one_chunk);
    let mut written = 0;
    while written < TOTAL {
        let at = written % block.len();
        let take = (1 + rng.below(3 * one_chunk as u64) as usize)
            .min(block.len() - at)
            .min(TOTAL - written);
        sealer.write_all(&block[at..at + take]).unwrap();
        assert_eq!(sealer.buffer_capacity(), one_chunk);
        written += take;
    }
    sealer.finish().unwrap();
    let sealed_len = file.seek(SeekFrom::End(0)).unwrap();
    assert_eq!(sealed_len, chunk.sealed_len(TOTAL as u64).unwrap());

    file.seek(SeekFrom::Start(0)).unwrap();
    let mut opener = StreamOpener::new(&key, ID, &mut file).unwrap();
    assert_eq!(opener.buffer_capacity(), one_chunk);
    assert_eq!(read_repeated_block(&mut opener, &block, &mut rng), TOTAL);

    file.seek(SeekFrom::Start(0)).unwrap();
    let mut ranged =
        StreamOpener::open_range(&key, ID, &mut file, TOTAL as u64 - 100_000, 1 << 30).unwrap();
    let mut tail = Vec::new();
    ranged.read_to_end(&mut tail).unwrap();
    assert_eq!(ranged.buffer_capacity(), one_chunk);
    assert!(tail == block[block.len() - 100_000..]);

    // Pulled through a sealing reader, as an object store's upload would, in reads of random
    // sizes.
    let source = Repeated {
        block: &block,
        at: 0,
        left: TOTAL,
    };
    let mut reader = SealingReader::new(&key, ID, source).unwrap();
    let mut file = tempfile::tempfile().unwrap();
    let mut buf = vec![0; 1 << 20];
    loop {
        let want = 1 + rng.below(buf.len() as u64) as usize;
        let n = reader.read(&mut buf[..want]).unwrap();
        assert_eq!(reader.buffer_capacity(), one_chunk);
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).unwrap();
    }
    assert_eq!(file.seek(SeekFrom::End(0)).unwrap(), sealed_len);
    file.seek(SeekFrom::Start(0)).unwrap();
    let mut opener = StreamOpener::new(&key, ID, &mut file).unwrap();
    assert_eq!(read_repeated_block(&mut opener, &block, &mut rng), TOTAL);
}

/// A reader that hands out at most `step` bytes at a time and is interrupted, or would block,
/// between reads.
#[derive(Debug)]
struct Choppy<'a> {
    data: &'a [u8],
    step: usize,
    calls: usize,
    would_block: bool,
}

impl Read for Choppy<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.calls += 1;
        if matches!(self.calls % 3, 0) {
            let kind = if self.would_block {
                io::ErrorKind::WouldBlock
            } else {
                io::ErrorKind::Interrupted
            };
            return Err(kind.into());
        }
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[test]
fn short_interrupted_and_blocking_reads_of_the_inner_reader_are_resumed() {
    let key = ObjectKey::generate().unwrap();
    let data = plaintext(3 * chunk_len(SMALL) + 77, 18);
    let sealed = seal(&key, SMALL, &data);
    for would_block in [false, true] {
        let reader = Choppy {
            data: &sealed,
            step: 100,
            calls: 0,
            would_block,
        };
        let mut opener = StreamOpener::new(&key, ID, reader).unwrap();
        let mut opened = Vec::new();
        let mut buf = [0; 333];
        let mut blocked = 0;
        loop {
            match opener.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => opened.extend_from_slice(&buf[..n]),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => blocked += 1,
                Err(error) => panic!("{error}"),
            }
        }
        assert!(opened == data);
        assert_eq!(blocked > 0, would_block);
    }
}

/// A writer that fails once it has taken `budget` bytes.
#[derive(Debug)]
struct Failing {
    budget: usize,
}

impl Write for Failing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.budget == 0 {
            return Err(io::Error::other("disk full"));
        }
        let n = buf.len().min(self.budget);
        self.budget -= n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failed_inner_write_ends_the_stream() {
    let key = ObjectKey::generate().unwrap();
    assert_eq!(
        StreamSealer::new(&key, ID, Failing { budget: 3 })
            .unwrap_err()
            .code(),
        "crypto.io"
    );
    let mut sealer = StreamSealer::with_chunk_size(
        &key,
        ID,
        SMALL,
        Failing {
            budget: HEADER_LEN + 100,
        },
    )
    .unwrap();
    let error = sealer
        .write_all(&plaintext(2 * chunk_len(SMALL), 19))
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "disk full",
        "the inner error passes through"
    );
    assert_eq!(
        CryptoError::from_io(sealer.write(b"more").unwrap_err()).code(),
        "crypto.io"
    );
    assert!(sealer.flush().is_err());
    assert_eq!(sealer.finish().unwrap_err().code(), "crypto.io");
}

#[test]
fn the_chunk_counter_refuses_to_run_out() {
    let key = ObjectKey::generate().unwrap();
    let c = chunk_len(SMALL);
    // The last counter value is left for the final chunk.
    let mut sealer = StreamSealer::with_chunk_size(&key, ID, SMALL, Vec::new()).unwrap();
    sealer.force_next_chunk_for_tests(u32::MAX - 1);
    sealer.write_all(&vec![1; c]).unwrap();
    let error = sealer.write_all(&vec![1; c]).unwrap_err();
    assert_eq!(CryptoError::from_io(error).code(), "crypto.stream_too_long");
    assert_eq!(sealer.finish().unwrap_err().code(), "crypto.io");

    let mut sealer = StreamSealer::with_chunk_size(&key, ID, SMALL, Vec::new()).unwrap();
    sealer.force_next_chunk_for_tests(u32::MAX);
    sealer.write_all(&vec![1; c - 1]).unwrap();
    sealer.finish().unwrap();
}

#[test]
fn flush_does_not_seal_a_partial_chunk() {
    let key = ObjectKey::generate().unwrap();
    let mut sealer = StreamSealer::with_chunk_size(&key, ID, SMALL, Vec::new()).unwrap();
    sealer.write_all(b"part of a chunk").unwrap();
    sealer.flush().unwrap();
    sealer.write_all(b", and the rest").unwrap();
    let sealed = sealer.finish().unwrap();
    assert_eq!(sealed.len(), HEADER_LEN + 29 + CHUNK_OVERHEAD);
    assert_eq!(
        open(&key, &sealed).unwrap(),
        b"part of a chunk, and the rest"
    );
}

#[test]
fn an_unfinished_stream_never_opens() {
    let key = ObjectKey::generate().unwrap();
    let mut out = Vec::new();
    let mut sealer = StreamSealer::with_chunk_size(&key, ID, SMALL, &mut out).unwrap();
    sealer
        .write_all(&plaintext(3 * chunk_len(SMALL) + 5, 20))
        .unwrap();
    drop(sealer);
    assert_eq!(open(&key, &out).unwrap_err().0, "crypto.truncated");
}

// --- object keys --------------------------------------------------------------------------------

#[test]
fn object_keys_wrap_under_the_subjects_data_key_bound_to_the_object() {
    let data_key = DataKey::generate().unwrap();
    let key = ObjectKey::generate().unwrap();
    let sealed = seal(&key, SMALL, b"a voice memo");
    let wrapped = data_key.wrap_object_key(ID, &key).unwrap();
    assert_eq!(wrapped.len(), 61);
    drop(key);

    let key = data_key.unwrap_object_key(ID, &wrapped).unwrap();
    assert_eq!(open(&key, &sealed).unwrap(), b"a voice memo");

    let code = |r: Result<ObjectKey, CryptoError>| r.unwrap_err().code();
    assert_eq!(
        code(data_key.unwrap_object_key("obj-other", &wrapped)),
        "crypto.authentication_failed"
    );
    assert_eq!(
        code(DataKey::generate().unwrap().unwrap_object_key(ID, &wrapped)),
        "crypto.authentication_failed"
    );
    let mut tampered = wrapped.clone();
    tampered[30] ^= 1;
    assert_eq!(
        code(data_key.unwrap_object_key(ID, &tampered)),
        "crypto.authentication_failed"
    );
    assert_eq!(
        code(data_key.unwrap_object_key(ID, &wrapped[..40])),
        "crypto.malformed"
    );
    // A field sealed by the same data key cannot pass for a wrapped object key.
    let field = data_key
        .seal(&crate::FieldContext::new("s", "c", ID), &[0; 32])
        .unwrap();
    assert_eq!(
        code(data_key.unwrap_object_key(ID, &field)),
        "crypto.authentication_failed"
    );
}

#[test]
fn nothing_prints_a_key_or_a_buffer() {
    let key = ObjectKey::generate().unwrap();
    assert_eq!(format!("{key:?}"), "ObjectKey(redacted)");
    let mut sealer = StreamSealer::with_chunk_size(&key, ID, SMALL, Vec::new()).unwrap();
    sealer.write_all(b"secret words").unwrap();
    let debug = format!("{sealer:?}");
    assert!(debug.starts_with("StreamSealer"), "{debug}");
    assert!(!debug.contains("secret"), "{debug}");
    let sealed = sealer.finish().unwrap();
    let mut opener = StreamOpener::new(&key, ID, sealed.as_slice()).unwrap();
    assert_eq!(opener.fill_buf().unwrap(), b"secret words");
    let debug = format!("{opener:?}");
    assert!(!debug.contains("115, 101, 99"), "{debug}");
}

#[test]
fn streams_and_keys_can_move_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}
    assert_send_sync::<ObjectKey>();
    assert_send::<StreamSealer<'static, Vec<u8>>>();
    assert_send::<StreamOpener<'static, &'static [u8]>>();
}

#[test]
fn stream_error_codes_are_stable_and_survive_std_io() {
    let cases = [
        (
            CryptoError::Truncated,
            "crypto.truncated",
            io::ErrorKind::UnexpectedEof,
        ),
        (
            CryptoError::AuthenticationFailed,
            "crypto.authentication_failed",
            io::ErrorKind::InvalidData,
        ),
        (
            CryptoError::Malformed { reason: "r" },
            "crypto.malformed",
            io::ErrorKind::InvalidData,
        ),
        (
            CryptoError::StreamTooLong,
            "crypto.stream_too_long",
            io::ErrorKind::Other,
        ),
        (
            CryptoError::Io {
                source: io::ErrorKind::BrokenPipe.into(),
            },
            "crypto.io",
            io::ErrorKind::BrokenPipe,
        ),
    ];
    for (error, code, kind) in cases {
        assert_eq!(error.code(), code);
        let through: io::Error = error.into();
        assert_eq!(through.kind(), kind, "{code}");
        assert_eq!(CryptoError::from_io(through).code(), code);
    }
    let plain = CryptoError::from_io(io::Error::new(io::ErrorKind::NotFound, "gone"));
    assert!(
        matches!(&plain, CryptoError::Io { source } if source.kind() == io::ErrorKind::NotFound)
    );
}

// --- throughput ---------------------------------------------------------------------------------

/// Sealing and opening 64 MiB against raw AES-256-GCM over the same 64 KiB chunks, in one
/// process. Run by hand:
/// `cargo test --release -p custodia-crypto stream_throughput -- --ignored --nocapture`.
///
/// The baselines seal and open in place, chunk by chunk, over the 64 MiB in memory: the least
/// any streaming code could do. Best of several rounds, interleaved, so that a noisy neighbour
/// slows all alike.
#[test]
#[ignore = "a measurement, not a check; run in release"]
fn stream_throughput_against_raw_aes_gcm() {
    use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    use std::time::{Duration, Instant};

    const TOTAL: usize = 64 << 20;
    const CHUNK: usize = 64 << 10;
    const PIECE: usize = 8 << 10;
    let data = plaintext(TOTAL, 21);
    let key = ObjectKey::generate().unwrap();
    let raw = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7; 32]).unwrap());
    fn nonce(i: usize) -> Nonce {
        let mut n = [0; 12];
        n[7..11].copy_from_slice(&(i as u32).to_be_bytes());
        Nonce::assume_unique_for_key(n)
    }
    let sealed = seal(&key, ChunkSize::DEFAULT, &data);
    let hot_piece = plaintext(PIECE, 22);

    struct Bench {
        key: ObjectKey,
        raw: LessSafeKey,
        data: Vec<u8>,
        sealed: Vec<u8>,
        hot_piece: Vec<u8>,
        raw_buf: Vec<u8>,
        tags: Vec<[u8; 16]>,
        out: Vec<u8>,
        small: Vec<u8>,
        file: std::fs::File,
    }
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&sealed).unwrap();
    let mut bench = Bench {
        file,
        raw_buf: data.clone(),
        tags: vec![[0_u8; 16]; TOTAL / CHUNK],
        out: vec![0; CHUNK],
        small: vec![0; PIECE],
        key,
        raw,
        data,
        sealed,
        hot_piece,
    };
    let names = [
        "raw seal_in_place_separate_tag",
        "seal -> sink, one 64 MiB write",
        "seal -> sink, 8 KiB writes of the 64 MiB",
        "seal -> sink, 8 KiB writes from a hot buffer",
        "SealingReader over &[u8], reads of 64 KiB + 16",
        "SealingReader over &[u8], reads of 64 KiB",
        "SealingReader use_inner_buffer, reads of 64 KiB + 16",
        "SealingReader use_inner_buffer, reads of 64 KiB",
        "SealingReader over a hot 8 KiB source, reads of 64 KiB",
        "raw open_in_place_separate_tag",
        "open &[u8], 64 KiB reads",
        "open &[u8], 8 KiB reads",
        "open &[u8] use_inner_buffer, 64 KiB reads",
        "open &[u8] use_inner_buffer, 8 KiB reads",
        "open &[u8] use_inner_buffer, io::copy",
        "open a File (page cache), 64 KiB reads",
    ];
    let runs: [fn(&mut Bench); 16] = [
        |b| {
            for (i, chunk) in b.raw_buf.chunks_mut(CHUNK).enumerate() {
                let tag = b
                    .raw
                    .seal_in_place_separate_tag(nonce(i), Aad::from(&[0_u8; 60]), chunk)
                    .unwrap();
                b.tags[i].copy_from_slice(tag.as_ref());
            }
        },
        |b| {
            let mut sealer = StreamSealer::new(&b.key, ID, io::sink()).unwrap();
            sealer.write_all(&b.data).unwrap();
            sealer.finish().unwrap();
        },
        |b| {
            let mut sealer = StreamSealer::new(&b.key, ID, io::sink()).unwrap();
            for part in b.data.chunks(PIECE) {
                sealer.write_all(part).unwrap();
            }
            sealer.finish().unwrap();
        },
        |b| {
            let mut sealer = StreamSealer::new(&b.key, ID, io::sink()).unwrap();
            for _ in 0..TOTAL / PIECE {
                sealer
                    .write_all(std::hint::black_box(&b.hot_piece))
                    .unwrap();
            }
            sealer.finish().unwrap();
        },
        |b| {
            let mut reader = SealingReader::new(&b.key, ID, b.data.as_slice()).unwrap();
            let mut out = vec![0; CHUNK + CHUNK_OVERHEAD];
            while reader.read(&mut out).unwrap() > 0 {}
        },
        |b| {
            let mut reader = SealingReader::new(&b.key, ID, b.data.as_slice()).unwrap();
            while reader.read(&mut b.out).unwrap() > 0 {}
        },
        |b| {
            let reader = SealingReader::new(&b.key, ID, b.data.as_slice()).unwrap();
            let mut reader = reader.use_inner_buffer();
            let mut out = vec![0; CHUNK + CHUNK_OVERHEAD];
            while reader.read(&mut out).unwrap() > 0 {}
        },
        |b| {
            let reader = SealingReader::new(&b.key, ID, b.data.as_slice()).unwrap();
            let mut reader = reader.use_inner_buffer();
            while reader.read(&mut b.out).unwrap() > 0 {}
        },
        |b| {
            let source = Repeated {
                block: &b.hot_piece,
                at: 0,
                left: TOTAL,
            };
            let mut reader = SealingReader::new(&b.key, ID, source).unwrap();
            while reader.read(&mut b.out).unwrap() > 0 {}
        },
        |b| {
            for (i, chunk) in b.raw_buf.chunks_mut(CHUNK).enumerate() {
                b.raw
                    .open_in_place_separate_tag(nonce(i), Aad::from(&[0_u8; 60]), &b.tags[i], chunk)
                    .unwrap();
            }
        },
        |b| {
            let mut opener = StreamOpener::new(&b.key, ID, b.sealed.as_slice()).unwrap();
            while opener.read(&mut b.out).unwrap() > 0 {}
        },
        |b| {
            let mut opener = StreamOpener::new(&b.key, ID, b.sealed.as_slice()).unwrap();
            while opener.read(&mut b.small).unwrap() > 0 {}
        },
        |b| {
            let opener = StreamOpener::new(&b.key, ID, b.sealed.as_slice()).unwrap();
            let mut opener = opener.use_inner_buffer();
            while opener.read(&mut b.out).unwrap() > 0 {}
        },
        |b| {
            let opener = StreamOpener::new(&b.key, ID, b.sealed.as_slice()).unwrap();
            let mut opener = opener.use_inner_buffer();
            while opener.read(&mut b.small).unwrap() > 0 {}
        },
        |b| {
            let opener = StreamOpener::new(&b.key, ID, b.sealed.as_slice()).unwrap();
            let mut opener = opener.use_inner_buffer();
            io::copy(&mut opener, &mut io::sink()).unwrap();
        },
        |b| {
            b.file.seek(SeekFrom::Start(0)).unwrap();
            let mut opener = StreamOpener::new(&b.key, ID, &mut b.file).unwrap();
            while opener.read(&mut b.out).unwrap() > 0 {}
        },
    ];
    let mut best = [Duration::MAX; 16];
    for _round in 0..9 {
        for (slot, run) in best.iter_mut().zip(runs) {
            let started = Instant::now();
            run(&mut bench);
            *slot = (*slot).min(started.elapsed());
        }
    }
    let rate = |d: Duration| TOTAL as f64 / d.as_secs_f64() / f64::from(1 << 20);
    for (i, (name, d)) in names.iter().zip(best).enumerate() {
        let baseline = if i < 9 { best[0] } else { best[9] };
        println!(
            "{name:56} {:7.0} MiB/s {:6.1}% of raw",
            rate(d),
            100.0 * baseline.as_secs_f64() / d.as_secs_f64()
        );
    }
}
