//! A Velero release number, as flags, image tags and Velero's own tags write it. A leaf: the
//! key tables and the version rules both name releases.

use std::fmt;
use std::str::FromStr;

/// A Velero release, `major.minor.patch`; pre-release suffixes are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VeleroVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl VeleroVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self { major, minor, patch }
    }
}

impl fmt::Display for VeleroVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Velero version {0:?}: expected MAJOR.MINOR[.PATCH], e.g. 1.17.0 or v1.18.1")]
pub struct VersionError(pub String);

impl FromStr for VeleroVersion {
    type Err = VersionError;

    /// Accepts `1.17`, `v1.18.1`, and image tags such as `v1.18.1-rc.1` or `1.17.0_linux`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || VersionError(s.to_string());
        let trimmed = s.trim().trim_start_matches('v');
        let core = trimmed.split(['-', '+', '_']).next().unwrap_or_default();
        let mut parts = core.split('.');
        let mut number = |required: bool| -> Result<u32, VersionError> {
            match parts.next() {
                Some(p) => p.parse().map_err(|_| err()),
                None if required => Err(err()),
                None => Ok(0),
            }
        };
        let version = Self::new(number(true)?, number(true)?, number(false)?);
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions_and_image_tags() {
        let cases = [
            ("1.17", Some(VeleroVersion::new(1, 17, 0))),
            ("v1.18.1", Some(VeleroVersion::new(1, 18, 1))),
            ("v1.18.1-rc.1", Some(VeleroVersion::new(1, 18, 1))),
            ("1.16.2_linux", Some(VeleroVersion::new(1, 16, 2))),
            ("latest", None),
            ("1", None),
            ("1.2.3.4", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<VeleroVersion>().ok(), want, "{input}");
        }
        assert!(VeleroVersion::new(1, 18, 0) < VeleroVersion::new(1, 18, 1));
    }
}
