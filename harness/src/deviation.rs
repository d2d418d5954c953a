//! Known deviations: kernels known to depart from the bonding driver's documented contract,
//! kept as data (`harness/data/known-deviations.toml`).
//!
//! The model only ever states the contract. When a check fails on a kernel that an entry
//! covers, the check re-judges what it saw against the entry's variant: a precise description
//! of the deviant behaviour. A kernel that behaves exactly so gets the verdict `known` (neither
//! passed nor failed, with the entry in the case's report); any other behaviour still fails.

use std::sync::OnceLock;

/// One known deviation.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct Deviation {
    /// Names the entry, e.g. `peer-notify-commit-tick`.
    pub id: String,
    /// The check it concerns.
    pub check: String,
    /// The deviant behaviour, as the check names it.
    pub variant: String,
    /// The first kernel release with it (`major.minor[.patch]`).
    pub from: String,
    /// The first release without it, if one is known.
    #[serde(default)]
    pub until: Option<String>,
    /// What the kernel does instead of the contract.
    pub summary: String,
    /// Where it comes from upstream, and where it was fixed.
    pub upstream: String,
}

impl Deviation {
    /// Whether `release` (e.g. `6.1.176`, `6.12.95+deb12-amd64`) lies in the entry's range.
    /// Distribution ABI names compare by their numeric prefix: Debian's `6.1.0-56-amd64` is
    /// 6.1.0, which is enough for ranges given as `major.minor`.
    pub fn covers(&self, release: &str) -> bool {
        let Some(at) = version(release) else {
            return false;
        };
        let from = version(&self.from).expect("entries' versions parse (unit test)");
        let until = self.until.as_deref().map(|u| version(u).expect("parses"));
        at >= from && until.is_none_or(|u| at < u)
    }
}

/// `major.minor[.patch]` at the start of a release string, as numbers; a missing patch is 0.
fn version(release: &str) -> Option<(u32, u32, u32)> {
    let numeric: String = release
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = numeric.split('.').filter(|p| !p.is_empty());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    Some((major, minor, patch))
}

/// Every entry, from the data file compiled in.
pub fn all() -> &'static [Deviation] {
    static ALL: OnceLock<Vec<Deviation>> = OnceLock::new();
    ALL.get_or_init(|| {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            deviation: Vec<Deviation>,
        }
        toml::from_str::<File>(include_str!("../data/known-deviations.toml"))
            .map(|f| f.deviation)
            .expect("the known-deviations file is valid (a unit test parses it)")
    })
}

/// The entry for `check` that covers kernel `release`, if any.
pub fn find(check: &str, release: &str) -> Option<&'static Deviation> {
    all().iter().find(|d| d.check == check && d.covers(release))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_file_parses_and_its_versions_too() {
        assert!(!all().is_empty());
        for d in all() {
            assert!(version(&d.from).is_some(), "{}: from {}", d.id, d.from);
            if let Some(u) = &d.until {
                assert!(version(u).is_some(), "{}: until {u}", d.id);
            }
        }
    }

    #[test]
    fn every_entry_concerns_a_check_that_knows_variants() {
        // The checks that can re-judge against a variant; each tests its own variant names.
        const CHECKS: [&str; 1] = [crate::failover::PEER_NOTIFY];
        for d in all() {
            assert!(CHECKS.contains(&d.check.as_str()), "{}: {}", d.id, d.check);
        }
    }

    #[test]
    fn ids_are_unique() {
        let mut ids: Vec<&str> = all().iter().map(|d| d.id.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), all().len());
    }

    #[test]
    fn releases_compare_by_their_numeric_prefix() {
        let d = Deviation {
            id: "x".into(),
            check: "c".into(),
            variant: "v".into(),
            from: "5.5".into(),
            until: Some("6.2.3".into()),
            summary: String::new(),
            upstream: String::new(),
        };
        assert!(d.covers("6.1.176"));
        assert!(d.covers("6.1.0-56-amd64"));
        assert!(d.covers("5.5"));
        assert!(d.covers("6.2.2+deb12-amd64"));
        assert!(!d.covers("6.2.3"));
        assert!(!d.covers("6.12.95+deb12-amd64"));
        assert!(!d.covers("5.4.290"));
        assert!(!d.covers("unknown"));
    }
}
