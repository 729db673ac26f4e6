//! Typed reads of result columns. Every failure is [`StoreError::Corrupt`]: this code wrote the
//! rows, so a value that does not decode means the schema was changed under this build or the
//! data was damaged. Messages name the column, never its value.

use custodia_store::StoreError;
use postgres::Row;
use postgres::types::FromSql;

/// Column `index` as `T`.
pub(crate) fn column<'a, T: FromSql<'a>>(
    row: &'a Row,
    index: usize,
    what: &str,
) -> Result<T, StoreError> {
    row.try_get(index)
        .map_err(|e| StoreError::Corrupt(format!("{what}: column {index} does not decode: {e}")))
}

/// Column `index` as exactly `N` bytes (an id or a hash).
pub(crate) fn bytes_n<const N: usize>(
    row: &Row,
    index: usize,
    what: &str,
) -> Result<[u8; N], StoreError> {
    let bytes: &[u8] = column(row, index, what)?;
    bytes.try_into().map_err(|_| {
        StoreError::Corrupt(format!("{what}: expected {N} bytes, found {}", bytes.len()))
    })
}

/// Column `index` as exactly `N` bytes, or `None` when it is NULL.
pub(crate) fn opt_bytes_n<const N: usize>(
    row: &Row,
    index: usize,
    what: &str,
) -> Result<Option<[u8; N]>, StoreError> {
    let bytes: Option<&[u8]> = column(row, index, what)?;
    bytes
        .map(|bytes| {
            bytes.try_into().map_err(|_| {
                StoreError::Corrupt(format!("{what}: expected {N} bytes, found {}", bytes.len()))
            })
        })
        .transpose()
}
