//! Configuration reload without a restart: on SIGHUP, and when the file's content changes
//! (polled every [`POLL_INTERVAL`]).
//!
//! The file is validated as at start ([`Config::reload`]); a bad one is logged with the error a
//! start would give and counted, and the configuration in force stays. A good one puts its
//! gates, SLOs, burn tiers, threshold rules and gate-failure alerting in force
//! ([`Gates::replace`], [`Alerts::replace`]); every other changed field is named in a warning
//! and waits for a restart. [`LiveConfig`] holds the configuration in force for the API and the
//! reload counters for `/metrics`.

use crate::config::Config;
use crate::engine::alerts::Alerts;
use crate::engine::gates::Gates;
use parking_lot::{Mutex, RwLock};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often the file is read to see whether its content changed.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// The configuration in force, and how reloads went.
pub struct LiveConfig {
    current: RwLock<Arc<Config>>,
    applied: AtomicU64,
    rejected: AtomicU64,
    unchanged: AtomicU64,
    /// Unix seconds of the start, then of the last reload that was not rejected.
    last_success_unix: AtomicU64,
    /// A hash of the file text in force (`none` with the embedded defaults).
    hash: Mutex<String>,
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// 16 hex digits of the file's bytes.
fn hash_text(text: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    text.hash(&mut h);
    format!("{:016x}", h.finish())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Rejected,
    Unchanged,
}

impl LiveConfig {
    pub fn new(cfg: Config) -> LiveConfig {
        LiveConfig {
            current: RwLock::new(Arc::new(cfg)),
            applied: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            unchanged: AtomicU64::new(0),
            last_success_unix: AtomicU64::new(now_unix()),
            hash: Mutex::new("none".into()),
        }
    }

    /// The configuration in force now.
    pub fn get(&self) -> Arc<Config> {
        self.current.read().clone()
    }

    fn count(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Applied => &self.applied,
            Outcome::Rejected => &self.rejected,
            Outcome::Unchanged => &self.unchanged,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if outcome != Outcome::Rejected {
            self.last_success_unix.store(now_unix(), Ordering::Relaxed);
        }
    }

    /// Appends the reload families to `/metrics`.
    pub fn render_metrics(&self, out: &mut String) {
        use slogate_core::prom::{Kind, family};
        let mut f = family(
            out,
            "slogate_config_reloads_total",
            Kind::Counter,
            "Configuration reloads (SIGHUP or a changed file) by result: applied, rejected (the file was invalid; the configuration in force stays), unchanged (nothing that applies live changed).",
        );
        for (result, n) in [
            ("applied", &self.applied),
            ("rejected", &self.rejected),
            ("unchanged", &self.unchanged),
        ] {
            f.sample(&[("result", &result)], n.load(Ordering::Relaxed));
        }
        family(
            out,
            "slogate_config_last_reload_success_timestamp_seconds",
            Kind::Gauge,
            "When the configuration was last loaded without error (the start, or a reload), in Unix seconds.",
        )
        .sample(&[], self.last_success_unix.load(Ordering::Relaxed));
        family(
            out,
            "slogate_config_info",
            Kind::Gauge,
            "The configuration file in force: its path and a hash of its content (16 hex digits).",
        )
        .sample(
            &[
                ("source", &self.get().source.as_str()),
                ("hash", &self.hash.lock().as_str()),
            ],
            1,
        );
    }
}

/// The configuration file a server started from: where it is, and the bytes read at start.
pub struct ConfigFile {
    pub path: PathBuf,
    pub read: Vec<u8>,
}

/// Re-reads the configuration file and puts what it changed in force.
pub struct Reloader {
    path: PathBuf,
    live: Arc<LiveConfig>,
    gates: Arc<Gates>,
    alerts: Arc<Alerts>,
    /// The hash of the text last read (applied or not), or of the read error: the poller
    /// reloads only when it differs.
    seen: Mutex<String>,
}

impl Reloader {
    /// The poller reloads when the file's content differs from `file.read`, what the start
    /// read: a change made while the server was starting applies at the first poll.
    pub fn new(
        file: ConfigFile,
        live: Arc<LiveConfig>,
        gates: Arc<Gates>,
        alerts: Arc<Alerts>,
    ) -> Reloader {
        let seen = hash_text(&file.read);
        *live.hash.lock() = seen.clone();
        Reloader {
            path: file.path,
            live,
            gates,
            alerts,
            seen: Mutex::new(seen),
        }
    }

    /// Reloads when the file's content differs from what was last read.
    pub fn poll(&self) {
        let mut seen = self.seen.lock();
        let read = read(&self.path);
        let now = read.as_ref().map_or_else(|e| e.clone(), |t| hash_text(t));
        if now == *seen {
            return;
        }
        *seen = now;
        self.apply(read, "file changed");
    }

    /// Reloads now (SIGHUP), whatever the file holds.
    pub fn reload(&self, trigger: &'static str) -> Outcome {
        let mut seen = self.seen.lock();
        let read = read(&self.path);
        *seen = read.as_ref().map_or_else(|e| e.clone(), |t| hash_text(t));
        self.apply(read, trigger)
    }

    fn apply(&self, read: Result<Vec<u8>, String>, trigger: &'static str) -> Outcome {
        let started = std::time::Instant::now();
        let file = self.path.display().to_string();
        let outcome = match read.and_then(|bytes| {
            let hash = hash_text(&bytes);
            let text = String::from_utf8(bytes)
                .map_err(|_| format!("{file}: cannot read: stream did not contain valid UTF-8"))?;
            let old = self.live.get();
            old.reload(&text, &file)
                .map(|r| (old, r, hash))
                .map_err(|e| e.to_string())
        }) {
            Err(error) => {
                tracing::error!(file = %file, trigger, error = %error, "configuration reload rejected; the configuration in force stays");
                Outcome::Rejected
            }
            Ok((old, reloaded, hash)) => {
                for field in &reloaded.restart {
                    tracing::warn!(file = %file, field = %field, "configuration field changed; restart to apply (its value in force stays)");
                }
                if !reloaded.live_changed {
                    tracing::info!(file = %file, trigger, restart_needed = reloaded.restart.len(), "configuration reloaded; nothing that applies live changed");
                    *self.live.hash.lock() = hash;
                    Outcome::Unchanged
                } else {
                    let new = reloaded.config;
                    let gates = self.gates.replace(
                        new.gates.clone(),
                        &old.gate_fingerprints(),
                        &new.gate_fingerprints(),
                    );
                    let resolved = self.alerts.replace(&new);
                    *self.live.current.write() = Arc::new(new);
                    *self.live.hash.lock() = hash;
                    tracing::info!(
                        file = %file,
                        trigger,
                        gates_added = %gates.added.join(","),
                        gates_changed = %gates.changed.join(","),
                        gates_removed = %gates.removed.join(","),
                        alerts_resolved = %resolved.join(","),
                        restart_needed = reloaded.restart.len(),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "configuration reloaded"
                    );
                    Outcome::Applied
                }
            }
        };
        self.live.count(outcome);
        outcome
    }
}

/// The file's bytes, or the read error as a reload would report it.
fn read(path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
}

/// Starts listening for SIGHUP, whose default is to end the process: call it first thing. A
/// signal that arrives before [`on_sighup`] runs is kept, and reloads then.
#[cfg(unix)]
pub fn listen_sighup() -> std::io::Result<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup())
}

/// Runs `reload` on the blocking pool at every SIGHUP until `stop`. Without a file (the
/// embedded defaults) a SIGHUP is logged and ignored rather than ending the process.
#[cfg(unix)]
pub fn on_sighup(
    hup: std::io::Result<tokio::signal::unix::Signal>,
    reloader: Option<Arc<Reloader>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut hup = match hup {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; the configuration reloads only when its file changes");
                return;
            }
        };
        loop {
            tokio::select! {
                got = hup.recv() => if got.is_none() { return },
                _ = stop.wait_for(|v| *v) => return,
            }
            let Some(r) = reloader.clone() else {
                tracing::warn!(
                    "SIGHUP ignored: slogate runs on the embedded defaults, there is no configuration file to reload"
                );
                continue;
            };
            if let Err(e) = tokio::task::spawn_blocking(move || r.reload("SIGHUP")).await {
                tracing::error!(error = %e, "configuration reload panicked; the configuration in force stays");
            }
        }
    })
}
