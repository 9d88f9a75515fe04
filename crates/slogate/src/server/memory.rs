//! The memory watchdog: a thread that reads the process's resident set (every 100 ms, every
//! 10 ms once above 60 % of the limit) and sheds ingest (the retryable overload answer) from
//! 85 % of `ingest.memory_limit_bytes` until usage is back under 75 %. Verdicts, queries and the history keep working meanwhile: only new
//! export requests wait, and their clients retry.
//!
//! The limit defaults to 90 % of the cgroup's memory limit (v2 `memory.max`, v1
//! `memory.limit_in_bytes`), else of the host's memory, so that the kernel's OOM killer is never
//! what stops an overloaded slogate.

use slogate_ingest::Shedding;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// How often the resident set is read (`/proc/self/statm`: a few microseconds a read) far
/// from the limit…
const SAMPLE_CALM: Duration = Duration::from_millis(100);
/// …and from this share of it on: what arrives between two reads must fit in the 15 % above
/// the high-water mark.
const SAMPLE_CLOSE: Duration = Duration::from_millis(10);
const CLOSE: f64 = 0.60;
/// Shedding starts at this share of the limit…
const HIGH_WATER: f64 = 0.85;
/// …and stops below this one.
const LOW_WATER: f64 = 0.75;
/// The default limit's share of the cgroup's or the host's memory.
const DEFAULT_SHARE: f64 = 0.90;

/// The limit in force and where it came from (for the start log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub bytes: u64,
    pub source: &'static str,
}

/// The limit: the configured one, else derived from the cgroup or the host. `None` when the
/// watchdog is off (configured `0`, or nothing to derive from).
pub fn resolve(configured: Option<u64>) -> Option<Limit> {
    match configured {
        Some(0) => None,
        Some(bytes) => Some(Limit {
            bytes,
            source: "ingest.memory_limit_bytes",
        }),
        None => {
            let derived = |total: u64, source| Limit {
                bytes: (total as f64 * DEFAULT_SHARE) as u64,
                source,
            };
            cgroup_limit()
                .map(|b| derived(b, "90 % of the cgroup's memory limit"))
                .or_else(|| host_memory().map(|b| derived(b, "90 % of the host's memory")))
        }
    }
}

/// The cgroup's memory limit, v2 then v1; `None` when unlimited or not in a cgroup.
fn cgroup_limit() -> Option<u64> {
    let read = |path: &str| -> Option<u64> {
        let v = std::fs::read_to_string(path).ok()?;
        let n = v.trim().parse::<u64>().ok()?;
        // v1 reports "no limit" as a huge page-rounded number.
        (n < 1 << 60).then_some(n)
    };
    read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
}

fn host_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    kib(&info, "MemTotal:").map(|k| k * 1024)
}

/// A `key: N kB` line of a `/proc` status file.
pub fn kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
}

/// The process's resident set in bytes (Linux): `/proc/self/statm`'s second field, in pages.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages = statm.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    Some(pages * page_size())
}

/// The page size, from the auxiliary vector the kernel gave the process (`AT_PAGESZ`), else
/// 4 KiB.
fn page_size() -> u64 {
    static PAGE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        const AT_PAGESZ: u64 = 6;
        let auxv = std::fs::read("/proc/self/auxv").unwrap_or_default();
        auxv.chunks_exact(16)
            .map(|kv| {
                let word = |b: &[u8]| u64::from_ne_bytes(b.try_into().unwrap_or([0; 8]));
                (word(&kv[..8]), word(&kv[8..]))
            })
            .find_map(|(k, v)| (k == AT_PAGESZ && v > 0).then_some(v))
            .unwrap_or(4096)
    })
}

/// What the watchdog has seen, for `/metrics`.
#[derive(Debug, Default)]
pub struct MemoryStats {
    pub limit_bytes: AtomicU64,
    /// Times shedding was switched on.
    pub episodes: AtomicU64,
    pub shedding: AtomicBool,
}

impl MemoryStats {
    pub fn render(&self, out: &mut String) {
        use slogate_core::prom::{Kind, family};
        let limit = self.limit_bytes.load(Relaxed);
        if limit == 0 {
            return;
        }
        family(
            out,
            "slogate_memory_limit_bytes",
            Kind::Gauge,
            "The resident memory slogate stays under; ingest is refused from 85 % of it until usage is back under 75 %.",
        )
        .sample(&[], limit);
        family(
            out,
            "slogate_memory_shedding",
            Kind::Gauge,
            "1 while ingest is refused because the process is over 85 % of its memory limit.",
        )
        .sample(&[], u64::from(self.shedding.load(Relaxed)));
        family(
            out,
            "slogate_memory_shedding_episodes_total",
            Kind::Counter,
            "Times ingest started to be refused for memory.",
        )
        .sample(&[], self.episodes.load(Relaxed));
    }
}

/// The decision for one sample: `Some(on)` when shedding should switch.
fn decide(shedding: bool, resident: u64, limit: u64) -> Option<bool> {
    let share = resident as f64 / limit as f64;
    match shedding {
        false if share >= HIGH_WATER => Some(true),
        true if share < LOW_WATER => Some(false),
        _ => None,
    }
}

/// Starts the watchdog thread; it runs until `stop` turns true.
pub fn spawn(
    limit: Limit,
    shedding: Arc<Shedding>,
    stats: Arc<MemoryStats>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    stats.limit_bytes.store(limit.bytes, Relaxed);
    tracing::info!(
        limit_bytes = limit.bytes,
        source = limit.source,
        "memory watchdog on: ingest is refused from 85 % of the limit"
    );
    std::thread::Builder::new()
        .name("slogate-memory".into())
        .spawn(move || {
            while !stop.load(Relaxed) {
                let mut every = SAMPLE_CALM;
                if let Some(resident) = resident_bytes() {
                    if resident as f64 >= CLOSE * limit.bytes as f64 {
                        every = SAMPLE_CLOSE;
                    }
                    let on = shedding.memory_pressure();
                    if let Some(next) = decide(on, resident, limit.bytes) {
                        shedding.set_memory_pressure(next);
                        stats.shedding.store(next, Relaxed);
                        if next {
                            stats.episodes.fetch_add(1, Relaxed);
                            tracing::warn!(
                                resident_bytes = resident,
                                limit_bytes = limit.bytes,
                                "over 85 % of the memory limit: refusing ingest (clients retry) until under 75 %"
                            );
                        } else {
                            tracing::info!(
                                resident_bytes = resident,
                                limit_bytes = limit.bytes,
                                "under 75 % of the memory limit: accepting ingest again"
                            );
                        }
                    }
                }
                std::thread::sleep(every);
            }
        })
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shedding_switches_with_hysteresis() {
        let limit = 1000;
        // (shedding now, resident) → switch
        for (on, resident, want) in [
            (false, 849, None),
            (false, 850, Some(true)),
            (false, 2000, Some(true)),
            (true, 800, None),
            (true, 750, None),
            (true, 749, Some(false)),
            (true, 0, Some(false)),
            (false, 0, None),
        ] {
            assert_eq!(decide(on, resident, limit), want, "{on} {resident}");
        }
    }

    #[test]
    fn the_limit_is_configured_or_derived() {
        assert_eq!(resolve(Some(0)), None);
        assert_eq!(resolve(Some(1 << 30)).unwrap().bytes, 1 << 30);
        if cfg!(target_os = "linux") {
            let derived = resolve(None).expect("a cgroup or /proc/meminfo");
            assert!(derived.bytes > 64 << 20, "{derived:?}");
            let host = host_memory().unwrap();
            assert!(derived.bytes <= host, "{derived:?} > host {host}");
            assert_eq!(page_size() % 4096, 0);
            // statm and status agree (within what the test itself allocates in between).
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let vm_rss = kib(&status, "VmRSS:").unwrap() * 1024;
            let statm = resident_bytes().unwrap();
            assert!(statm > 1 << 20);
            assert!(statm.abs_diff(vm_rss) < 4 << 20, "{statm} vs {vm_rss}");
        }
    }
}
