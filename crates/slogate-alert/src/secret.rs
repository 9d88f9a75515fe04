//! A secret string (the PagerDuty routing key) that never prints its value.

use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// A secret value. `Debug` and `Display` print `<secret>`; it has no `Serialize`, so it cannot
/// end up in a JSON document or the outbox by accident. [`Secret::expose`] is the one way out.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// Why a secret could not be loaded. Messages name the variable or path, never the value.
#[derive(Debug, Error)]
pub enum SecretError {
    #[error("environment variable {var} is not set")]
    EnvMissing { var: String },
    #[error("environment variable {var} is not valid unicode")]
    EnvNotUnicode { var: String },
    #[error("cannot read secret file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("secret from {origin} is empty")]
    Empty { origin: String },
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// Reads the secret from an environment variable, trimming surrounding whitespace.
    pub fn from_env(var: &str) -> Result<Secret, SecretError> {
        match std::env::var(var) {
            Ok(v) => Self::checked(v.trim(), || format!("environment variable {var}")),
            Err(std::env::VarError::NotPresent) => Err(SecretError::EnvMissing { var: var.into() }),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(SecretError::EnvNotUnicode { var: var.into() })
            }
        }
    }

    /// Reads the secret from a file, trimming surrounding whitespace (files written with `echo`
    /// end in a newline, which is never part of a key).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Secret, SecretError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| SecretError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::checked(text.trim(), || format!("file {}", path.display()))
    }

    fn checked(value: &str, origin: impl FnOnce() -> String) -> Result<Secret, SecretError> {
        if value.is_empty() {
            return Err(SecretError::Empty { origin: origin() });
        }
        Ok(Secret(value.to_string()))
    }

    /// The secret value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let s = Secret::new("hunter2-hunter2-hunter2-hunter22");
        for shown in [format!("{s}"), format!("{s:?}"), format!("{:?}", Some(&s))] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("<secret>"), "{shown}");
        }
        assert_eq!(s.expose(), "hunter2-hunter2-hunter2-hunter22");
    }

    #[test]
    fn from_file_table() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, &str, Result<&str, &str>); 3] = [
            ("trailing newline", "abc\n", Ok("abc")),
            ("surrounding blanks", "  \tabc  \r\n", Ok("abc")),
            ("only whitespace", " \n", Err("is empty")),
        ];
        for (name, content, want) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, content).unwrap();
            match (Secret::from_file(&path), want) {
                (Ok(s), Ok(w)) => assert_eq!(s.expose(), w, "{name}"),
                (Err(e), Err(w)) => {
                    let msg = e.to_string();
                    assert!(msg.contains(w) && msg.contains(name), "{name}: {msg}");
                }
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
        let missing = dir.path().join("missing-key-file");
        let msg = Secret::from_file(&missing).unwrap_err().to_string();
        assert!(msg.contains("missing-key-file"), "{msg}");
    }

    #[test]
    fn from_env_names_the_variable() {
        // Reading only: set_var is unsafe in a multi-threaded test binary, so the present case
        // uses PATH, which every test environment has.
        let msg = Secret::from_env("SLOGATE_TEST_SURELY_UNSET_VAR")
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "environment variable SLOGATE_TEST_SURELY_UNSET_VAR is not set"
        );
        let path = std::env::var("PATH").unwrap();
        assert_eq!(Secret::from_env("PATH").unwrap().expose(), path.trim());
    }
}
