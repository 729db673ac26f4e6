//! `field_seal` and `field_open`: sealing and opening one ~100-byte field with
//! [`DataKey`] under a realistic [`FieldContext`], against the raw AES-256-GCM primitive of the
//! same library (`aws-lc-rs`) on the same thread: in place on a reused buffer, with a counter
//! nonce and no associated data. The difference is what the field format costs: a random nonce
//! per message, the encoded context as associated data, the version byte and a fresh buffer.

use std::hint::black_box;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use custodia_crypto::{DataKey, FieldContext};

use crate::fixture::{Filler, PHONE};
use crate::measure::{self, Plan, Rounds, Sample};
use crate::{BenchError, Figure};

/// Distinct contexts and values cycled through, so neither side seals the same input over and
/// over; small enough to stay in cache on both sides.
const POOL: usize = 1024;

/// The design's target: at least a quarter of the raw rate.
const TARGET: f64 = 0.25;

/// One field to seal: its subject and record ids (the category is fixed) and its value.
struct Field {
    subject: String,
    record: String,
    value: Vec<u8>,
}

impl Field {
    fn context(&self) -> FieldContext<'_> {
        FieldContext::new(&self.subject, PHONE.0, &self.record)
    }
}

/// The raw side: one prepared AES-256-GCM key and a nonce counter.
struct Raw {
    key: LessSafeKey,
    counter: u64,
}

impl Raw {
    fn new(filler: &mut Filler) -> Result<Self, BenchError> {
        let key = UnboundKey::new(&AES_256_GCM, &filler.bytes(32))
            .map_err(|_| BenchError::Other("raw AES-256-GCM key refused".into()))?;
        Ok(Self {
            key: LessSafeKey::new(key),
            counter: 0,
        })
    }

    /// A never-repeated nonce: the counter, big-endian, in the last 8 of its 12 bytes.
    fn next_nonce(&mut self) -> [u8; NONCE_LEN] {
        self.counter = self.counter.wrapping_add(1);
        let mut nonce = [0; NONCE_LEN];
        let (_, low) = nonce.split_at_mut(NONCE_LEN - 8);
        low.copy_from_slice(&self.counter.to_be_bytes());
        nonce
    }
}

fn raw_error(_: aws_lc_rs::error::Unspecified) -> BenchError {
    BenchError::Other("raw AES-256-GCM failed".into())
}

/// Measures both figures.
///
/// # Errors
/// [`BenchError`] if either side fails to seal or open.
pub fn run(plan: &Plan) -> Result<[Figure; 2], BenchError> {
    let mut filler = Filler::new(0x5EA1);
    let fields: Vec<Field> = (0..POOL)
        .map(|_| Field {
            subject: filler.id_text("sub"),
            record: filler.id_text("rec"),
            value: filler.bytes(plan.value_len),
        })
        .collect();
    let key = DataKey::generate()?;
    let mut raw = Raw::new(&mut filler)?;
    let slice = plan.micro_slice;
    let rounds = Rounds {
        min: 5,
        max: 10_000,
        budget: plan.micro_budget,
    };

    let (field_seal, raw_seal) = {
        let mut buf = filler.bytes(plan.value_len);
        buf.reserve(aws_lc_rs::aead::MAX_TAG_LEN);
        let value_len = plan.value_len;
        measure::alternate(
            rounds,
            &mut || seal_fields(&key, &fields, slice),
            &mut || {
                measure::time(|| {
                    for _ in 0..slice {
                        // Back to plaintext length: the buffer is sealed again in place.
                        buf.truncate(value_len);
                        let nonce = Nonce::assume_unique_for_key(raw.next_nonce());
                        raw.key
                            .seal_in_place_append_tag(nonce, Aad::empty(), &mut buf)
                            .map_err(raw_error)?;
                        black_box(&buf);
                    }
                    Ok(slice as u64)
                })
            },
        )?
    };

    let (field_open, raw_open) = {
        let sealed: Vec<(&Field, Vec<u8>)> = fields
            .iter()
            .map(|field| Ok((field, key.seal(&field.context(), &field.value)?)))
            .collect::<Result<_, BenchError>>()?;
        let raw_sealed: Vec<([u8; NONCE_LEN], Vec<u8>)> = fields
            .iter()
            .map(|field| {
                let nonce = raw.next_nonce();
                let mut buf = field.value.clone();
                raw.key
                    .seal_in_place_append_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::empty(),
                        &mut buf,
                    )
                    .map_err(raw_error)?;
                Ok((nonce, buf))
            })
            .collect::<Result<_, BenchError>>()?;
        let mut buf = Vec::with_capacity(plan.value_len + aws_lc_rs::aead::MAX_TAG_LEN);
        measure::alternate(
            rounds,
            &mut || {
                measure::time(|| {
                    for (field, ciphertext) in sealed.iter().cycle().take(slice) {
                        black_box(key.open(&field.context(), ciphertext)?);
                    }
                    Ok(slice as u64)
                })
            },
            &mut || {
                measure::time(|| {
                    for (nonce, ciphertext) in raw_sealed.iter().cycle().take(slice) {
                        // Opening in place consumes the ciphertext: start from a copy, which
                        // costs a fraction of the decryption.
                        buf.clear();
                        buf.extend_from_slice(ciphertext);
                        let plain = raw
                            .key
                            .open_in_place(
                                Nonce::assume_unique_for_key(*nonce),
                                Aad::empty(),
                                &mut buf,
                            )
                            .map_err(raw_error)?;
                        black_box(plain);
                    }
                    Ok(slice as u64)
                })
            },
        )?
    };

    let baseline = |op: &str| {
        format!(
            "raw AES-256-GCM {op} (aws-lc-rs LessSafeKey) of a {}-byte buffer, counter nonce, \
             empty AAD, same thread",
            plan.value_len
        )
    };
    Ok([
        Figure::min_ratio(
            "field_seal",
            "ops/s",
            measure::median_rate(&field_seal),
            &baseline("seal_in_place_append_tag"),
            measure::median_rate(&raw_seal),
            TARGET,
        ),
        Figure::min_ratio(
            "field_open",
            "ops/s",
            measure::median_rate(&field_open),
            &baseline("open_in_place"),
            measure::median_rate(&raw_open),
            TARGET,
        ),
    ])
}

fn seal_fields(key: &DataKey, fields: &[Field], slice: usize) -> Result<Sample, BenchError> {
    measure::time(|| {
        for field in fields.iter().cycle().take(slice) {
            black_box(key.seal(&field.context(), &field.value)?);
        }
        Ok(slice as u64)
    })
}
