//! Operation logs (browsing and search history, device ids, IP addresses) kept de-identified: an
//! entry is stripped of what identifies a person directly before it is stored, then kept as an
//! ordinary sealed record of its category, under that category's retention rule.
//!
//! What happens to each part of an [`OperationLogEntry`]:
//!
//! | part | stored as |
//! |---|---|
//! | `identifiers` (device ids, account ids) | a keyed pseudonym `psn_…` per value: HMAC-SHA256 under the root-derived lookup key, over a domain separator, the field's name and the value, so it differs from the subject lookups and from the same value under another name; stable for the same name and value, so the logs of one device still link up |
//! | `ip_address` | the network only: IPv4 (and IPv4-mapped IPv6) to its /24, IPv6 to its /48 |
//! | `occurred_at` | coarsened as the category's `deidentify` says: none to the second, `before_analysis` to the hour, `on_collection` to the day (UTC) |
//! | `event`, `text` (search queries, URLs) | kept as given, sealed with the record |
//!
//! The mapping from `deidentify` follows what each value promises: `on_collection` de-identifies
//! as the data arrives, so the time is cut to the day; `before_analysis` keeps the hour that
//! analysis needs; a category without the field still gets its identifiers and addresses
//! replaced, which is what makes an entry an operation log here, with the time to the second.
//!
//! Raw identifiers and addresses go no further than this module: they are in no error (errors
//! name the field, never its value), no audit entry and no log, and [`OperationLogEntry`]'s
//! `Debug` shows field names only. The pseudonyms derive from the root key; the sealed record
//! goes with the subject's key when the subject is erased, like any other record.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use custodia_core::{SubjectId, Timestamp};
use custodia_policy::model::Deidentify;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::error::VaultError;
use crate::gate::{Ask, Caller, Gated};
use crate::vault::{NewRecord, Vault, WrittenRecord};

/// The most identifiers, or text fields, in one entry.
pub const MAX_FIELDS: usize = 16;
/// The longest field name, in bytes (`a-z`, `0-9`, `_`, starting with a letter).
pub const MAX_NAME_BYTES: usize = 64;
/// The longest identifier value, in bytes.
pub const MAX_IDENTIFIER_BYTES: usize = 512;
/// The longest text value, in bytes.
pub const MAX_TEXT_BYTES: usize = 8 * 1024;
/// The most text in one entry, all fields together, in bytes.
pub const MAX_TOTAL_TEXT_BYTES: usize = 32 * 1024;
/// The longest event label, in bytes (`a-z`, `0-9`, `_`, `.`, `-`).
pub const MAX_EVENT_BYTES: usize = 64;
/// How far in the future (by the vault's clock) an entry may say it happened: clock skew.
pub const FUTURE_SKEW_MILLIS: i64 = 5 * 60 * 1000;

/// Separates operation-log pseudonyms from every other use of the lookup key (subject lookups
/// hash the external id alone).
const PSEUDONYM_DOMAIN: &str = "custodia/operation-log/pseudonym/v1\0";
/// The prefix of a pseudonym.
pub const PSEUDONYM_PREFIX: &str = "psn_";
/// The format tag of the stored JSON.
const FORMAT: &str = "custodia.operation_log/v1";

/// One operation-log entry as the app sends it, raw.
#[derive(Clone, PartialEq, Eq)]
pub struct OperationLogEntry {
    /// The category it is kept under (declared in the policy, covered by the purpose).
    pub category: String,
    /// The purpose it is collected for.
    pub purpose: String,
    /// When the operation happened.
    pub occurred_at: Timestamp,
    /// What kind of operation (`page_view`, `search`, `login`), if the app says.
    pub event: Option<String>,
    /// Identifiers by name (`device_id`, `account_id`): each becomes a pseudonym.
    pub identifiers: BTreeMap<String, String>,
    /// The client's address: only its network is kept.
    pub ip_address: Option<IpAddr>,
    /// Free text by name (`query`, `url`): kept, sealed.
    pub text: BTreeMap<String, String>,
}

impl fmt::Debug for OperationLogEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Field names only: the values are what this module exists to keep out of logs.
        f.debug_struct("OperationLogEntry")
            .field("category", &self.category)
            .field("purpose", &self.purpose)
            .field("occurred_at", &self.occurred_at)
            .field("event", &self.event.as_ref().map(|_| "<redacted>"))
            .field("identifiers", &self.identifiers.keys().collect::<Vec<_>>())
            .field("ip_address", &self.ip_address.map(|_| "<redacted>"))
            .field("text", &self.text.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// How finely an entry's time is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimePrecision {
    /// To the second.
    Second,
    /// To the hour.
    Hour,
    /// To the day (UTC).
    Day,
}

impl TimePrecision {
    /// The precision a category's `deidentify` setting asks for (see the module docs).
    pub fn for_category(deidentify: Option<Deidentify>) -> Self {
        match deidentify {
            None => Self::Second,
            Some(Deidentify::BeforeAnalysis) => Self::Hour,
            Some(Deidentify::OnCollection) => Self::Day,
        }
    }

    /// The name used in the stored JSON and in answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Second => "second",
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }

    /// `at`, cut down to the start of its second, hour or UTC day.
    pub fn coarsen(self, at: Timestamp) -> Timestamp {
        let unit: i64 = match self {
            Self::Second => 1_000,
            Self::Hour => 3_600_000,
            Self::Day => 86_400_000,
        };
        let millis = at.as_millis();
        Timestamp::from_millis(millis - millis.rem_euclid(unit))
    }
}

/// The network an address belongs to, as `address/prefix`: IPv4 (and IPv4-mapped IPv6) to its
/// /24, IPv6 to its /48.
pub fn ip_prefix(ip: IpAddr) -> String {
    let v4 = |v4: Ipv4Addr| {
        let [a, b, c, _] = v4.octets();
        format!("{}/24", Ipv4Addr::new(a, b, c, 0))
    };
    match ip {
        IpAddr::V4(address) => v4(address),
        IpAddr::V6(address) => match address.to_ipv4_mapped() {
            Some(mapped) => v4(mapped),
            None => {
                let mut segments = address.segments();
                for segment in segments.iter_mut().skip(3) {
                    *segment = 0;
                }
                format!("{}/48", Ipv6Addr::from(segments))
            }
        },
    }
}

/// An entry with what identifies a person directly taken out: the form it is stored in.
#[derive(Clone, PartialEq, Eq)]
pub struct DeidentifiedEntry {
    /// When it happened, coarsened to `time_precision`.
    pub occurred_at: Timestamp,
    /// How finely the time is kept.
    pub time_precision: TimePrecision,
    /// What kind of operation, as given.
    pub event: Option<String>,
    /// A pseudonym per identifier, by the identifier's name.
    pub pseudonyms: BTreeMap<String, String>,
    /// The client's network (`203.0.113.0/24`, `2001:db8:1::/48`).
    pub ip_prefix: Option<String>,
    /// The free text, as given (it is sealed with the record).
    pub text: BTreeMap<String, String>,
}

impl fmt::Debug for DeidentifiedEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeidentifiedEntry")
            .field("occurred_at", &self.occurred_at)
            .field("time_precision", &self.time_precision)
            .field("event", &self.event.as_ref().map(|_| "<redacted>"))
            .field("pseudonyms", &self.pseudonyms)
            .field("ip_prefix", &self.ip_prefix)
            .field("text", &self.text.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The stored JSON of a [`DeidentifiedEntry`].
#[derive(Serialize)]
struct Stored<'a> {
    format: &'static str,
    occurred_at: String,
    time_precision: TimePrecision,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a str>,
    pseudonyms: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip_prefix: Option<&'a str>,
    text: &'a BTreeMap<String, String>,
}

impl DeidentifiedEntry {
    /// The JSON the record holds (sealed): `format`, `occurred_at` (RFC 3339),
    /// `time_precision`, `event`, `pseudonyms`, `ip_prefix`, `text`. Wiped from memory when
    /// dropped.
    pub fn to_json(&self) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let stored = Stored {
            format: FORMAT,
            occurred_at: self.occurred_at.to_string(),
            time_precision: self.time_precision,
            event: self.event.as_deref(),
            pseudonyms: &self.pseudonyms,
            ip_prefix: self.ip_prefix.as_deref(),
            text: &self.text,
        };
        serde_json::to_vec(&stored)
            .map(Zeroizing::new)
            .map_err(|_| VaultError::Invalid {
                field: "entry",
                reason: "cannot be encoded".into(),
            })
    }
}

/// What an ingest stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedOperation {
    /// The record, its rule and its expiry.
    pub record: WrittenRecord,
    /// What the record holds.
    pub entry: DeidentifiedEntry,
}

fn invalid(field: &'static str, reason: &str) -> VaultError {
    VaultError::Invalid {
        field,
        reason: reason.to_owned(),
    }
}

/// A field name: 1 to 64 bytes of `a-z`, `0-9` and `_`, starting with a letter.
fn valid_name(name: &str) -> bool {
    name.len() <= MAX_NAME_BYTES
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn valid_event(event: &str) -> bool {
    !event.is_empty()
        && event.len() <= MAX_EVENT_BYTES
        && event
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
}

impl OperationLogEntry {
    /// Checks the entry's shape against the limits above, and that it did not happen in the
    /// future by more than [`FUTURE_SKEW_MILLIS`]. Errors name the field, never a value.
    pub fn validate(&self, now: Timestamp) -> Result<(), VaultError> {
        if self.occurred_at > now.plus_millis(FUTURE_SKEW_MILLIS) {
            return Err(invalid("occurred_at", "is in the future"));
        }
        if let Some(event) = &self.event
            && !valid_event(event)
        {
            return Err(invalid(
                "event",
                &format!("must be 1 to {MAX_EVENT_BYTES} bytes of a-z, 0-9, _, . and -"),
            ));
        }
        if self.identifiers.len() > MAX_FIELDS {
            return Err(invalid(
                "identifiers",
                &format!("at most {MAX_FIELDS} identifiers"),
            ));
        }
        if self.text.len() > MAX_FIELDS {
            return Err(invalid(
                "text",
                &format!("at most {MAX_FIELDS} text fields"),
            ));
        }
        let name_rule = format!(
            "names must be 1 to {MAX_NAME_BYTES} bytes of a-z, 0-9 and _, starting with a letter"
        );
        for (name, value) in &self.identifiers {
            if !valid_name(name) {
                return Err(invalid("identifiers", &name_rule));
            }
            if value.trim().is_empty() || value.len() > MAX_IDENTIFIER_BYTES {
                return Err(invalid(
                    "identifiers",
                    &format!("values must be 1 to {MAX_IDENTIFIER_BYTES} bytes, not blank"),
                ));
            }
        }
        let mut total = 0usize;
        for (name, value) in &self.text {
            if !valid_name(name) {
                return Err(invalid("text", &name_rule));
            }
            if value.len() > MAX_TEXT_BYTES {
                return Err(invalid(
                    "text",
                    &format!("values must be at most {MAX_TEXT_BYTES} bytes"),
                ));
            }
            total = total.saturating_add(value.len());
        }
        if total > MAX_TOTAL_TEXT_BYTES {
            return Err(invalid(
                "text",
                &format!("at most {MAX_TOTAL_TEXT_BYTES} bytes in all"),
            ));
        }
        if self.event.is_none()
            && self.identifiers.is_empty()
            && self.ip_address.is_none()
            && self.text.is_empty()
        {
            return Err(invalid(
                "entry",
                "needs an event, an identifier, an IP address or a text field",
            ));
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
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

impl Vault {
    /// The pseudonym of identifier `name` = `value`: `psn_` and 32 hex digits of a keyed hash
    /// under the root-derived lookup key, domain-separated from subject lookups.
    fn operation_log_pseudonym(&self, name: &str, value: &str) -> Result<String, VaultError> {
        let mut input = Zeroizing::new(String::with_capacity(
            PSEUDONYM_DOMAIN.len() + name.len() + 1 + value.len(),
        ));
        input.push_str(PSEUDONYM_DOMAIN);
        input.push_str(name);
        input.push('\0');
        input.push_str(value);
        let digest = self.core.lookup(&input)?;
        Ok(format!(
            "{PSEUDONYM_PREFIX}{}",
            hex(digest.get(..16).unwrap_or(&digest))
        ))
    }

    /// The de-identified form of `entry` under the policy in force (see the module docs). The
    /// entry should have been [validated](OperationLogEntry::validate).
    pub fn deidentify_operation_log(
        &self,
        entry: &OperationLogEntry,
    ) -> Result<DeidentifiedEntry, VaultError> {
        let policy = self.policy();
        let category = policy
            .category(&entry.category)
            .ok_or_else(|| VaultError::UnknownCategory(entry.category.clone()))?;
        let time_precision = TimePrecision::for_category(category.deidentify);
        let pseudonyms = entry
            .identifiers
            .iter()
            .map(|(name, value)| Ok((name.clone(), self.operation_log_pseudonym(name, value)?)))
            .collect::<Result<BTreeMap<_, _>, VaultError>>()?;
        Ok(DeidentifiedEntry {
            occurred_at: time_precision.coarsen(entry.occurred_at),
            time_precision,
            event: entry.event.clone(),
            pseudonyms,
            ip_prefix: entry.ip_address.map(ip_prefix),
            text: entry.text.clone(),
        })
    }

    /// Stores an operation-log entry of a subject, de-identified, if the gate allows collecting
    /// its category for its purpose (a service key must be bound to the purpose). The entry is
    /// checked before the gate is asked, so a malformed one changes nothing, not even the audit
    /// chain; then the decision is audited, and the de-identified entry is written as an
    /// ordinary sealed record of the category, expiring under the category's retention rule.
    /// A denial stores nothing.
    pub fn ingest_operation_log(
        &self,
        subject: SubjectId,
        entry: &OperationLogEntry,
        caller: &Caller,
    ) -> Result<Gated<LoggedOperation>, VaultError> {
        entry.validate(self.now())?;
        let decision = self.decide(
            &Ask {
                subject,
                purpose: entry.purpose.clone(),
                categories: vec![entry.category.clone()],
            },
            caller,
        )?;
        if !decision.allowed {
            return Ok(Gated::Denied(decision));
        }
        let deidentified = self.deidentify_operation_log(entry)?;
        let value = deidentified.to_json()?;
        let mut written = self.write_records(
            subject,
            &[NewRecord {
                category: &entry.category,
                purpose: &entry.purpose,
                value: value.as_slice(),
            }],
            &caller.actor(),
        )?;
        let record = written.pop().ok_or(VaultError::SubjectNotFound(subject))?;
        Ok(Gated::Allowed {
            value: LoggedOperation {
                record,
                entry: deidentified,
            },
            decision,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_keep_their_network_only() {
        let prefix = |text: &str| ip_prefix(text.parse().unwrap());
        assert_eq!(prefix("203.0.113.77"), "203.0.113.0/24");
        assert_eq!(prefix("10.1.2.255"), "10.1.2.0/24");
        assert_eq!(prefix("::ffff:198.51.100.9"), "198.51.100.0/24");
        assert_eq!(
            prefix("2001:db8:85a3:8d3:1319:8a2e:370:7348"),
            "2001:db8:85a3::/48"
        );
        assert_eq!(prefix("2001:db8::1"), "2001:db8::/48");
        assert_eq!(prefix("::1"), "::/48");
    }

    #[test]
    fn times_are_cut_to_the_precision_deidentify_asks_for() {
        let at = Timestamp::parse("2026-02-10T09:41:27.345Z").unwrap();
        let cut = |deidentify| {
            TimePrecision::for_category(deidentify)
                .coarsen(at)
                .to_string()
        };
        assert_eq!(cut(None), "2026-02-10T09:41:27Z");
        assert_eq!(
            cut(Some(Deidentify::BeforeAnalysis)),
            "2026-02-10T09:00:00Z"
        );
        assert_eq!(cut(Some(Deidentify::OnCollection)), "2026-02-10T00:00:00Z");
        // Before the epoch, too, the cut goes down, not towards zero.
        let early = Timestamp::parse("1969-12-31T23:30:00Z").unwrap();
        assert_eq!(
            TimePrecision::Day.coarsen(early).to_string(),
            "1969-12-31T00:00:00Z"
        );
    }

    fn entry() -> OperationLogEntry {
        OperationLogEntry {
            category: "user.behavior.search_history".into(),
            purpose: "search".into(),
            occurred_at: Timestamp::parse("2026-02-10T09:00:00Z").unwrap(),
            event: Some("search".into()),
            identifiers: BTreeMap::from([("device_id".into(), "SECRET-DEVICE".into())]),
            ip_address: Some("203.0.113.77".parse().unwrap()),
            text: BTreeMap::from([("query".into(), "SECRET QUERY".into())]),
        }
    }

    #[test]
    fn validation_names_fields_never_values() {
        let now = Timestamp::parse("2026-02-10T09:00:00Z").unwrap();
        assert!(entry().validate(now).is_ok());
        let cases: Vec<(OperationLogEntry, &str)> = vec![
            (
                OperationLogEntry {
                    occurred_at: now.plus_millis(FUTURE_SKEW_MILLIS + 1),
                    ..entry()
                },
                "occurred_at",
            ),
            (
                OperationLogEntry {
                    event: Some("Not An Event".into()),
                    ..entry()
                },
                "event",
            ),
            (
                OperationLogEntry {
                    identifiers: BTreeMap::from([("Device-Id".into(), "SECRET-DEVICE".into())]),
                    ..entry()
                },
                "identifiers",
            ),
            (
                OperationLogEntry {
                    identifiers: BTreeMap::from([("device_id".into(), "x".repeat(513))]),
                    ..entry()
                },
                "identifiers",
            ),
            (
                OperationLogEntry {
                    text: BTreeMap::from([("query".into(), "x".repeat(MAX_TEXT_BYTES + 1))]),
                    ..entry()
                },
                "text",
            ),
            (
                OperationLogEntry {
                    event: None,
                    identifiers: BTreeMap::new(),
                    ip_address: None,
                    text: BTreeMap::new(),
                    ..entry()
                },
                "entry",
            ),
        ];
        for (case, field) in cases {
            match case.validate(now) {
                Err(VaultError::Invalid {
                    field: named,
                    reason,
                }) => {
                    assert_eq!(named, field);
                    assert!(!reason.contains("SECRET"), "{reason}");
                }
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn debug_output_shows_names_not_values() {
        let text = format!("{:?}", entry());
        assert!(
            text.contains("device_id") && text.contains("query"),
            "{text}"
        );
        for secret in ["SECRET", "203.0.113"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}
