//! A subject's profile: the app's user id, jurisdiction, birth date or age band, guardian. It is
//! personal data, so it is sealed under the subject's data key like any record; the store sees
//! only a keyed hash of the external id, to find the subject again.

use custodia_core::SubjectId;
use serde::{Deserialize, Serialize};

use crate::error::VaultError;

/// What the app tells the vault about a new subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSubject {
    /// The app's own user id.
    pub external_id: String,
    /// Where the person is, as an ISO 3166 code (`CN`, `DE`, `US-CA`).
    pub jurisdiction: String,
    /// Birth date, `YYYY-MM-DD`, when known.
    #[serde(default)]
    pub birth_date: Option<String>,
    /// Age band (`under_13`, `13_17`, `adult`...) when the birth date is not collected.
    #[serde(default)]
    pub age_band: Option<String>,
    /// A guardian who acts for this subject.
    #[serde(default)]
    pub guardian: Option<SubjectId>,
}

/// The sealed profile, as stored.
pub type SubjectProfile = NewSubject;

impl NewSubject {
    /// Checks the fields' shapes.
    pub fn validate(&self) -> Result<(), VaultError> {
        let invalid = |field, reason: &str| {
            Err(VaultError::Invalid {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.external_id.is_empty() || self.external_id.len() > 256 {
            return invalid("external_id", "must be 1 to 256 bytes");
        }
        let jurisdiction_ok = (2..=6).contains(&self.jurisdiction.len())
            && self
                .jurisdiction
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == '-');
        if !jurisdiction_ok {
            return invalid(
                "jurisdiction",
                "must be an ISO 3166 code like CN, DE or US-CA",
            );
        }
        if let Some(date) = &self.birth_date
            && (custodia_core::Timestamp::parse(date).is_err() || date.len() != 10)
        {
            return invalid("birth_date", "must be a date YYYY-MM-DD");
        }
        if let Some(band) = &self.age_band
            && (band.is_empty() || band.len() > 32)
        {
            return invalid("age_band", "must be 1 to 32 characters");
        }
        Ok(())
    }
}
