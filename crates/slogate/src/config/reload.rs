//! Reloading a running server's configuration: which fields of the file apply live, which need
//! a restart, and the configuration a reload leaves in force.
//!
//! A reload validates the new text exactly as a start does ([`Config::parse`]), so a bad file is
//! refused with the same error (file, line, field). Fields outside [`LIVE_FIELDS`] are built
//! into the running pieces (listeners, windows, ingest, history, delivery) and keep their old
//! value: the new file's live sections are grafted onto the old file and the result is
//! validated again, so the gates and rules that apply were checked against the windows and
//! cohort dimensions actually in force.

use super::file::{FileConfig, GateFile};
use super::{Config, ConfigError, validate};
use serde_json::Value;

/// The fields of the file (paths as errors name them) that a reload applies: gates, SLOs, burn
/// tiers, threshold rules, gate-failure alerting and the alert request floor. Every other field
/// needs a restart (`pagerduty.link_base_url` too: the webhook senders are built with it).
pub const LIVE_FIELDS: &[&str] = &[
    "gates",
    "slos",
    "alerting.min_requests",
    "alerting.burn_rates",
    "alerting.rules",
    "alerting.gate_failures",
];

/// What a reload of the file would do.
#[derive(Debug)]
pub struct Reloaded {
    /// The configuration in force after the reload: the new live fields, the old rest.
    pub config: Config,
    /// Fields that changed but need a restart (their old value stays), e.g. `server.http`.
    pub restart: Vec<String>,
    /// Whether any live field changed.
    pub live_changed: bool,
}

/// A gate's definition as 16 hex digits: equal definitions, equal fingerprints. Gates carried
/// in requests are told apart by it, and a reload uses it to see which gates changed.
pub(super) fn fingerprint(g: &GateFile) -> String {
    use std::hash::{Hash, Hasher};
    let canonical = serde_json::to_string(g).unwrap_or_default();
    let mut h = std::hash::DefaultHasher::new();
    canonical.hash(&mut h);
    format!("{:016x}", h.finish())
}

impl Config {
    /// Loads the file at `path` as [`Config::load`] does, and returns the bytes it read with
    /// it: a reload compares later reads with them.
    pub fn load_file(path: &std::path::Path) -> Result<(Config, Vec<u8>), ConfigError> {
        let file = path.display().to_string();
        let read = |source| ConfigError::Read {
            file: file.clone(),
            source,
        };
        let bytes = std::fs::read(path).map_err(read)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            read(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "stream did not contain valid UTF-8",
            ))
        })?;
        let cfg = Config::parse(text, &file)?;
        Ok((cfg, bytes))
    }

    /// Reads `text` (the file `file`, again) as a reload: validated as at start, then the
    /// fields a running server cannot change are kept from `self` and reported.
    pub fn reload(&self, text: &str, file: &str) -> Result<Reloaded, ConfigError> {
        let new = Config::parse(text, file)?;
        let old_v = to_value(&self.file);
        let new_v = to_value(&new.file);
        let mut restart = Vec::new();
        diff("", &old_v, &new_v, &mut restart);
        let live_changed = LIVE_FIELDS
            .iter()
            .any(|f| lookup(&old_v, f) != lookup(&new_v, f));
        if restart.is_empty() {
            return Ok(Reloaded {
                config: new,
                restart,
                live_changed,
            });
        }
        let mut merged = old_v;
        for field in LIVE_FIELDS {
            if let Some(v) = lookup(&new_v, field) {
                graft(&mut merged, field, v.clone());
            }
        }
        let f: FileConfig = serde_json::from_value(merged).map_err(|e| ConfigError::Invalid {
            file: file.into(),
            line: None,
            field: restart.join(", "),
            message: format!("cannot be combined with the configuration in force: {e}"),
        })?;
        let config = validate::validate(f, file, text).map_err(|e| match e {
            ConfigError::Invalid {
                file,
                line,
                field,
                message,
            } => ConfigError::Invalid {
                file,
                line,
                field,
                message: format!(
                    "{message} (with the value in force of {}, which needs a restart to change)",
                    restart.join(", ")
                ),
            },
            other => other,
        })?;
        Ok(Reloaded {
            config,
            restart,
            live_changed,
        })
    }

    /// The fingerprint of each configured gate's definition, by name.
    pub fn gate_fingerprints(&self) -> std::collections::BTreeMap<String, String> {
        self.file
            .gates
            .iter()
            .map(|g| (g.name.clone(), fingerprint(g)))
            .collect()
    }
}

fn to_value(f: &FileConfig) -> Value {
    serde_json::to_value(f).unwrap_or(Value::Null)
}

fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn graft(v: &mut Value, path: &str, new: Value) {
    let mut at = v;
    let mut keys = path.split('.').peekable();
    while let Some(k) = keys.next() {
        let Value::Object(map) = at else { return };
        if keys.peek().is_none() {
            map.insert(k.to_string(), new);
            return;
        }
        at = map
            .entry(k)
            .or_insert_with(|| Value::Object(Default::default()));
    }
}

/// The paths under `at` whose value differs, outside [`LIVE_FIELDS`]: objects are walked key by
/// key, anything else (a list, a scalar) is one field.
fn diff(at: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    if LIVE_FIELDS.contains(&at) || old == new {
        return;
    }
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                diff(
                    &path,
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        _ => out.push(at.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "\
server:
  http: 127.0.0.1:8080
windows:
  slot: 10s
gates:
  - name: checkout
    service: checkout
    window: 1m
    baseline: {version: v1}
    criteria:
      - {name: errors, metric: error_rate, pass: 0.02, fail: 0.05}
alerting:
  evaluation_interval: 30s
  rules:
    - {name: slow, service: checkout, metric: latency_p99, above: 500, window: 5m, tier: P2}
";

    /// Reloads `BASE` with `from` replaced by `to`: the restart fields, whether live fields
    /// changed, and the gate's pass threshold and HTTP address in force after it.
    fn check(from: &str, to: &str, restart: &[&str], live: bool, pass: f64, http: &str) {
        let old = Config::parse(BASE, "slogate.yaml").unwrap();
        assert!(BASE.contains(from), "{from}");
        let text = BASE.replace(from, to);
        let r = old.reload(&text, "slogate.yaml").unwrap();
        assert_eq!(r.restart, restart, "{from} -> {to}");
        assert_eq!(r.live_changed, live, "{from} -> {to}");
        let check = &r.config.gates[0].phases[0].spec.criteria[0].check;
        assert!(
            matches!(check, slogate_gate::Check::Threshold { pass: p, .. } if *p == pass),
            "{check:?}"
        );
        assert_eq!(r.config.server.http.to_string(), http);
    }

    #[test]
    fn live_and_restart_fields() {
        let a = "127.0.0.1:8080";
        // (from, to, restart fields, live changed, pass threshold in force, HTTP address)
        check("gates:", "# the gates\ngates:", &[], false, 0.02, a);
        check("pass: 0.02", "pass: 0.03", &[], true, 0.03, a);
        check("above: 500", "above: 400", &[], true, 0.02, a);
        check("8080", "9090", &["server.http"], false, 0.02, a);
        check(
            "8080",
            "9090\n  shutdown_grace: 3s",
            &["server.http", "server.shutdown_grace"],
            false,
            0.02,
            a,
        );
        check(
            "  evaluation_interval: 30s",
            "  evaluation_interval: 5s\n  min_requests: 7",
            &["alerting.evaluation_interval"],
            true,
            0.02,
            a,
        );
        // A restart field and a live one at once: the live one applies, the other stays.
        check(
            "slot: 10s\ngates:",
            "slot: 5s\ngates:",
            &["windows.slot"],
            false,
            0.02,
            a,
        );
        check(
            "8080\n",
            "8080\n  tls: {cert_file: c.pem, key_file: k.pem}\n",
            &["server.tls.cert_file", "server.tls.key_file"],
            false,
            0.02,
            a,
        );
    }

    #[test]
    fn live_changes_are_checked_against_the_fields_in_force() {
        let old = Config::parse(BASE, "slogate.yaml").unwrap();
        // The new windows would keep a 4-day gate's data; those in force (3 days of coarse
        // slots by default) do not.
        let text = BASE
            .replace("slot: 10s", "slot: 10s\n  coarse_retention: 5d")
            .replace("window: 1m", "window: 4d");
        let err = old.reload(&text, "slogate.yaml").unwrap_err().to_string();
        assert!(
            err.starts_with("slogate.yaml:9: gates[0].window:")
                && err.ends_with(
                    "(with the value in force of windows.coarse_retention, which needs a restart to change)"
                ),
            "{err}"
        );
        // A bad file is refused with the error a start gives.
        let bad = BASE.replace("pass: 0.02", "pass: high");
        assert_eq!(
            old.reload(&bad, "slogate.yaml").unwrap_err().to_string(),
            Config::parse(&bad, "slogate.yaml").unwrap_err().to_string()
        );
    }

    /// The reference's reload section names every field that applies live.
    #[test]
    fn the_reference_lists_the_live_fields() {
        let reference = include_str!("../../../../docs/configuration.md");
        let section = reference
            .split("## Reloading the configuration")
            .nth(1)
            .expect("docs/configuration.md has a reload section");
        let applies = section
            .split("**What applies live**")
            .nth(1)
            .and_then(|s| s.split("**What needs a restart**").next())
            .expect("the section says what applies live");
        for field in LIVE_FIELDS {
            assert!(
                applies.contains(&format!("`{field}`")),
                "{field} applies live but the reference does not say so"
            );
        }
    }

    #[test]
    fn fingerprints_change_with_the_definition() {
        let a = Config::parse(BASE, "x").unwrap().gate_fingerprints();
        let b = Config::parse(&BASE.replace("0.05", "0.06"), "x")
            .unwrap()
            .gate_fingerprints();
        let c = Config::parse(&BASE.replace("5m}", "6m}"), "x")
            .unwrap()
            .gate_fingerprints();
        assert_ne!(a["checkout"], b["checkout"]);
        assert_eq!(a["checkout"], c["checkout"]);
    }
}
