//! [`SubjectFacts`]: what the gate knows about one subject, derived from its consent ledger (the
//! latest event per purpose wins; restriction and objection events apply as they come) and from
//! its profile (age) and lifecycle (erased).

use std::collections::HashMap;

use custodia_core::Timestamp;

/// The kinds of ledger event the gate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerKind {
    /// Consent given.
    Given,
    /// Consent given again.
    Renewed,
    /// Consent withdrawn.
    Withdrawn,
    /// Consent refused.
    Refused,
    /// Consent lapsed.
    Expired,
    /// Objection to the purposes.
    Objected,
    /// All processing restricted.
    Restricted,
    /// Restriction lifted.
    Unrestricted,
}

/// One ledger event, as the gate reads it.
#[derive(Debug, Clone, Copy)]
pub struct LedgerEntry<'a> {
    /// The purposes it covers (empty for a restriction).
    pub purposes: &'a [String],
    /// What happened.
    pub kind: LedgerKind,
    /// `Some(verified)` when a guardian expressed it.
    pub guardian: Option<bool>,
    /// When.
    pub at: Timestamp,
    /// When a given consent lapses.
    pub expires_at: Option<Timestamp>,
}

/// The state of the latest consent event for a purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentStatus {
    /// Given or renewed.
    Given,
    /// Withdrawn.
    Withdrawn,
    /// Refused.
    Refused,
    /// Lapsed.
    Expired,
}

/// The latest consent event for one purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsentFact {
    /// Its state.
    pub status: ConsentStatus,
    /// When it was expressed.
    pub at: Timestamp,
    /// When it lapses.
    pub expires_at: Option<Timestamp>,
    /// It covered several purposes at once.
    pub bundled: bool,
    /// `Some(verified)` when a guardian expressed it.
    pub guardian: Option<bool>,
}

/// What the gate knows about one subject.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectFacts {
    /// Age in whole years, when known.
    pub age: Option<u8>,
    /// The subject was erased.
    pub erased: bool,
    /// Processing is restricted.
    pub restricted: bool,
    /// Purposes objected to.
    pub objections: Vec<String>,
    /// The latest consent event per purpose.
    pub consents: HashMap<String, ConsentFact>,
}

impl SubjectFacts {
    /// Replays a ledger, oldest event first.
    pub fn from_ledger<'a>(
        entries: impl IntoIterator<Item = LedgerEntry<'a>>,
        age: Option<u8>,
        erased: bool,
    ) -> Self {
        let mut facts = Self {
            age,
            erased,
            ..Self::default()
        };
        for entry in entries {
            let status = match entry.kind {
                LedgerKind::Given | LedgerKind::Renewed => ConsentStatus::Given,
                LedgerKind::Withdrawn => ConsentStatus::Withdrawn,
                LedgerKind::Refused => ConsentStatus::Refused,
                LedgerKind::Expired => ConsentStatus::Expired,
                LedgerKind::Objected => {
                    for purpose in entry.purposes {
                        if !facts.objections.contains(purpose) {
                            facts.objections.push(purpose.clone());
                        }
                    }
                    continue;
                }
                LedgerKind::Restricted => {
                    facts.restricted = true;
                    continue;
                }
                LedgerKind::Unrestricted => {
                    facts.restricted = false;
                    continue;
                }
            };
            for purpose in entry.purposes {
                facts.consents.insert(
                    purpose.clone(),
                    ConsentFact {
                        status,
                        at: entry.at,
                        expires_at: entry.expires_at,
                        bundled: entry.purposes.len() > 1,
                        guardian: entry.guardian,
                    },
                );
            }
        }
        facts
    }
}

/// Whole years between a birth date and `now` (both UTC), for age rules.
pub fn age_on(birth: Timestamp, now: Timestamp) -> Option<u8> {
    let (birth, now) = (birth.date_string(), now.date_string());
    let parse = |date: &str| -> Option<(i32, u32, u32)> {
        let mut parts = date.split('-');
        Some((
            parts.next()?.parse().ok()?,
            parts.next()?.parse().ok()?,
            parts.next()?.parse().ok()?,
        ))
    };
    let ((by, bm, bd), (ny, nm, nd)) = (parse(&birth)?, parse(&now)?);
    let mut years = ny - by;
    if (nm, nd) < (bm, bd) {
        years -= 1;
    }
    u8::try_from(years.max(0)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_count_whole_years() {
        let birth = Timestamp::parse("2012-03-15").unwrap();
        assert_eq!(
            age_on(birth, Timestamp::parse("2026-03-14").unwrap()),
            Some(13)
        );
        assert_eq!(
            age_on(birth, Timestamp::parse("2026-03-15").unwrap()),
            Some(14)
        );
        assert_eq!(
            age_on(birth, Timestamp::parse("2011-01-01").unwrap()),
            Some(0)
        );
    }

    #[test]
    fn the_latest_event_per_purpose_wins() {
        let both = vec!["a".to_owned(), "b".to_owned()];
        let only_a = vec!["a".to_owned()];
        let none: Vec<String> = Vec::new();
        let t = |ms| Timestamp::from_millis(ms);
        let entries = [
            LedgerEntry {
                purposes: &both,
                kind: LedgerKind::Given,
                guardian: None,
                at: t(1),
                expires_at: None,
            },
            LedgerEntry {
                purposes: &only_a,
                kind: LedgerKind::Withdrawn,
                guardian: None,
                at: t(2),
                expires_at: None,
            },
            LedgerEntry {
                purposes: &none,
                kind: LedgerKind::Restricted,
                guardian: None,
                at: t(3),
                expires_at: None,
            },
            LedgerEntry {
                purposes: &none,
                kind: LedgerKind::Unrestricted,
                guardian: None,
                at: t(4),
                expires_at: None,
            },
            LedgerEntry {
                purposes: &only_a,
                kind: LedgerKind::Objected,
                guardian: None,
                at: t(5),
                expires_at: None,
            },
        ];
        let facts = SubjectFacts::from_ledger(entries, None, false);
        assert_eq!(facts.consents["a"].status, ConsentStatus::Withdrawn);
        assert_eq!(facts.consents["b"].status, ConsentStatus::Given);
        assert!(facts.consents["b"].bundled);
        assert!(!facts.restricted);
        assert_eq!(facts.objections, vec!["a".to_owned()]);
    }
}
