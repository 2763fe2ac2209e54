//! What the population registry (Dukcapil) says about a citizen's NIK, and how that compares
//! with the form.
//!
//! Verification never rejects a declaration: citizens must not be turned away because their
//! NIK is "offline" in the registry. A traveller whose NIK could not be checked is stored as
//! `pending` and re-verified later by the reconciliation job; a NIK the registry does not know,
//! or knows with other details, is flagged for the health officer, not refused.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::form::Sex;

/// Discriminants are the values of the ClickHouse Enum8 columns: never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerificationStatus {
    /// No NIK to verify: a foreigner.
    NotApplicable = 0,
    /// Not verified yet: the registry was down, slow or not asked. Re-verified later.
    Pending = 1,
    /// The registry knows this NIK with the declared date of birth and sex.
    Verified = 2,
    /// The registry does not know this NIK.
    NotFound = 3,
    /// The registry knows this NIK with another date of birth or sex.
    Mismatch = 4,
}

impl VerificationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            VerificationStatus::NotApplicable => "not_applicable",
            VerificationStatus::Pending => "pending",
            VerificationStatus::Verified => "verified",
            VerificationStatus::NotFound => "not_found",
            VerificationStatus::Mismatch => "mismatch",
        }
    }

    /// Whether the registry has answered for good: no need to ask again.
    pub fn is_final(self) -> bool {
        !matches!(self, VerificationStatus::Pending)
    }
}

/// The registry's answer for one NIK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RegistryAnswer {
    Found { date_of_birth: NaiveDate, sex: Sex },
    NotFound,
}

/// Compares the registry's record with what the traveller declared.
pub fn judge(declared_date_of_birth: &str, declared_sex: Option<Sex>, answer: &RegistryAnswer) -> VerificationStatus {
    match answer {
        RegistryAnswer::NotFound => VerificationStatus::NotFound,
        RegistryAnswer::Found { date_of_birth, sex } => {
            let declared_dob = crate::timefmt::date(declared_date_of_birth);
            if declared_dob == Some(*date_of_birth) && declared_sex == Some(*sex) {
                VerificationStatus::Verified
            } else {
                VerificationStatus::Mismatch
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_record_is_compared_with_the_form() {
        let judge = |answer: &RegistryAnswer| judge("1990-12-05", Some(Sex::Female), answer);
        let dob = NaiveDate::from_ymd_opt(1990, 12, 5).unwrap();
        assert_eq!(judge(&RegistryAnswer::Found { date_of_birth: dob, sex: Sex::Female }), VerificationStatus::Verified);
        assert_eq!(judge(&RegistryAnswer::Found { date_of_birth: dob, sex: Sex::Male }), VerificationStatus::Mismatch);
        let other = NaiveDate::from_ymd_opt(1991, 12, 5).unwrap();
        assert_eq!(judge(&RegistryAnswer::Found { date_of_birth: other, sex: Sex::Female }), VerificationStatus::Mismatch);
        assert_eq!(judge(&RegistryAnswer::NotFound), VerificationStatus::NotFound);
        assert!(!VerificationStatus::Pending.is_final());
        assert!(VerificationStatus::NotFound.is_final());
    }
}
