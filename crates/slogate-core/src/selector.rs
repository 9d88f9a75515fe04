//! Selectors: which series a query or a gate cohort covers.

use crate::SeriesKey;
use serde::Serialize;

/// The fixed dimensions every series has, in key order.
pub const DIMENSIONS: [&str; 4] = ["service", "env", "version", "operation"];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectorError {
    #[error(
        "unknown dimension `{0}` (known: service, env, version, operation and the configured extras)"
    )]
    UnknownDimension(String),
    #[error("a selector needs a service")]
    MissingService,
}

/// Equality matchers over dimensions; a dimension that is not named matches every value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Selector {
    /// `(dimension, value)` pairs, sorted by dimension name, one per dimension.
    pub matchers: Vec<(String, String)>,
}

impl Selector {
    /// Builds a selector, checking every dimension name against the fixed and extra dimensions.
    pub fn new<I, K, V>(pairs: I, extra_names: &[String]) -> Result<Selector, SelectorError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut matchers: Vec<(String, String)> = Vec::new();
        for (k, v) in pairs {
            let k = k.into();
            if !DIMENSIONS.contains(&k.as_str()) && !extra_names.contains(&k) {
                return Err(SelectorError::UnknownDimension(k));
            }
            let v = v.into();
            match matchers.iter_mut().find(|(name, _)| *name == k) {
                Some(slot) => slot.1 = v,
                None => matchers.push((k, v)),
            }
        }
        matchers.sort();
        let sel = Selector { matchers };
        if sel.service().is_none() {
            return Err(SelectorError::MissingService);
        }
        Ok(sel)
    }

    pub fn service(&self) -> Option<&str> {
        self.get("service")
    }

    pub fn get(&self, dim: &str) -> Option<&str> {
        self.matchers
            .iter()
            .find(|(k, _)| k == dim)
            .map(|(_, v)| v.as_str())
    }

    pub fn matches(&self, key: &SeriesKey, extra_names: &[String]) -> bool {
        self.matchers
            .iter()
            .all(|(dim, want)| key.dim(dim, extra_names) == Some(want.as_str()))
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (k, v)) in self.matchers.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(version: &str, region: &str) -> SeriesKey {
        SeriesKey {
            service: "checkout".into(),
            env: "prod".into(),
            version: version.into(),
            operation: "GET /cart".into(),
            extras: vec![region.into()],
        }
    }

    #[test]
    fn matching() {
        let extras = vec!["region".to_string()];
        // (selector, version, region, matches)
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str, bool);
        let cases: &[Case<'_>] = &[
            (&[("service", "checkout")], "v1", "eu", true),
            (
                &[("service", "checkout"), ("version", "v2")],
                "v1",
                "eu",
                false,
            ),
            (
                &[("service", "checkout"), ("version", "v1"), ("region", "eu")],
                "v1",
                "eu",
                true,
            ),
            (
                &[("service", "checkout"), ("region", "us")],
                "v1",
                "eu",
                false,
            ),
            (&[("service", "auth")], "v1", "eu", false),
        ];
        for (pairs, version, region, want) in cases {
            let sel = Selector::new(pairs.iter().copied(), &extras).unwrap();
            assert_eq!(sel.matches(&key(version, region), &extras), *want, "{sel}");
        }
    }

    #[test]
    fn errors() {
        assert_eq!(
            Selector::new([("service", "a"), ("colour", "red")], &[]),
            Err(SelectorError::UnknownDimension("colour".into()))
        );
        assert_eq!(
            Selector::new([("env", "prod")], &[]),
            Err(SelectorError::MissingService)
        );
    }
}
