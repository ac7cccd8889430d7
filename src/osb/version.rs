//! The `X-Broker-API-Version` header: parsing, and which features a version has.
//!
//! Every later feature of the OSB API is switched on per request by comparing the
//! request's version with the version that introduced the feature, so that a 2.13
//! platform never sees a field that 2.13 does not define.

use std::fmt;
use std::str::FromStr;

/// Name of the header every platform sends on every request.
pub const VERSION_HEADER: &str = "x-broker-api-version";

/// A parsed `MAJOR.MINOR` API version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion {
    /// Major version; bindery serves only 2.
    pub major: u16,
    /// Minor version; 13 is the floor.
    pub minor: u16,
}

impl ApiVersion {
    /// v2.13, the version every platform in the field speaks and bindery's floor.
    pub const V2_13: Self = Self::new(2, 13);
    /// v2.14: fetch endpoints, async bindings, `ConcurrencyError`.
    pub const V2_14: Self = Self::new(2, 14);
    /// v2.15: `maintenance_info`, `Retry-After`, request identity.
    pub const V2_15: Self = Self::new(2, 15);
    /// v2.16: `instance_usable`, `update_repeatable`, instance labels.
    pub const V2_16: Self = Self::new(2, 16);
    /// v2.17: binding rotation, instance attributes.
    pub const V2_17: Self = Self::new(2, 17);

    /// Builds a version from its parts.
    pub const fn new(major: u16, minor: u16) -> Self {
        Self { major, minor }
    }

    /// True when this request's version includes what `introduced_in` introduced.
    pub fn has(self, introduced_in: ApiVersion) -> bool {
        self >= introduced_in
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Why a header value is not a usable version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a MAJOR.MINOR version")]
pub struct InvalidVersion(pub String);

impl FromStr for ApiVersion {
    type Err = InvalidVersion;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let trimmed = raw.trim();
        let invalid = || InvalidVersion(trimmed.chars().take(32).collect());
        let (major, minor) = trimmed.split_once('.').ok_or_else(invalid)?;
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(major) || !digits(minor) {
            return Err(invalid());
        }
        Ok(Self::new(
            major.parse().map_err(|_| invalid())?,
            minor.parse().map_err(|_| invalid())?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_major_minor() {
        assert_eq!("2.13".parse(), Ok(ApiVersion::V2_13));
        assert_eq!(" 2.17 ".parse(), Ok(ApiVersion::V2_17));
        assert_eq!("3.0".parse(), Ok(ApiVersion::new(3, 0)));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "", "2", "2.", ".13", "2.13.1", "v2.13", "2.x", "latest", "2.-1", "99999.1",
        ] {
            assert!(bad.parse::<ApiVersion>().is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn later_versions_have_earlier_features() {
        assert!(ApiVersion::V2_17.has(ApiVersion::V2_14));
        assert!(!ApiVersion::V2_13.has(ApiVersion::V2_14));
        assert!(ApiVersion::new(2, 40).has(ApiVersion::V2_17));
    }
}
