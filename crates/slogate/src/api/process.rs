//! The standard `process_*` families and `slogate_build_info`, as every Prometheus client
//! library exports them, read from `/proc/self` (Linux; elsewhere only the build info).

use slogate_core::prom::{Kind, family};

/// Clock ticks per second of `/proc/*/stat` times: `USER_HZ`, 100 on every Linux ABI.
const USER_HZ: f64 = 100.0;

pub fn render(out: &mut String) {
    family(
        out,
        "slogate_build_info",
        Kind::Gauge,
        "Always 1; the labels say which slogate this is.",
    )
    .sample(&[("version", &env!("CARGO_PKG_VERSION"))], 1u64);
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    // Field n of proc(5) is fields[n - 3] here (pid and comm come first).
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    if let (Some(utime), Some(stime)) = (field(14), field(15)) {
        family(
            out,
            "process_cpu_seconds_total",
            Kind::Counter,
            "Total user and system CPU time spent in seconds.",
        )
        .sample(&[], (utime + stime) / USER_HZ);
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| crate::server::memory::kib(&status, key);
    if let Some(rss) = kib("VmRSS:") {
        family(
            out,
            "process_resident_memory_bytes",
            Kind::Gauge,
            "Resident memory size in bytes.",
        )
        .sample(&[], rss * 1024);
    }
    if let Some(vm) = kib("VmSize:") {
        family(
            out,
            "process_virtual_memory_bytes",
            Kind::Gauge,
            "Virtual memory size in bytes.",
        )
        .sample(&[], vm * 1024);
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        family(
            out,
            "process_open_fds",
            Kind::Gauge,
            "Number of open file descriptors.",
        )
        .sample(&[], dir.count() as u64);
    }
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let max_fds = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(max) = max_fds {
        family(
            out,
            "process_max_fds",
            Kind::Gauge,
            "Maximum number of open file descriptors.",
        )
        .sample(&[], max);
    }
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    });
    if let (Some(boot), Some(start)) = (boot, field(22)) {
        family(
            out,
            "process_start_time_seconds",
            Kind::Gauge,
            "Start time of the process since unix epoch in seconds.",
        )
        .sample(&[], boot + start / USER_HZ);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn families_are_there_and_sane() {
        let mut out = String::new();
        super::render(&mut out);
        let value = |name: &str| {
            out.lines()
                .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("{name} missing in:\n{out}"))
        };
        assert!(out.contains("slogate_build_info{version=\""), "{out}");
        if cfg!(target_os = "linux") {
            assert!(value("process_resident_memory_bytes") > 1e6);
            assert!(value("process_open_fds") >= 3.0);
            assert!(value("process_max_fds") >= value("process_open_fds"));
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            let start = value("process_start_time_seconds");
            assert!(
                start <= now + 1.0 && start > now - 86_400.0 * 365.0,
                "{start}"
            );
            assert!(value("process_cpu_seconds_total") >= 0.0);
        }
    }
}
