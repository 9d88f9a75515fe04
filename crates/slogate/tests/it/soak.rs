//! A bounded soak: steady traffic over many series with verdicts, SQL, alert evaluation, history
//! flushes and compactions all running, for `SLOGATE_SOAK_SECS` (120 s in CI; longer runs are
//! recorded in BENCHMARKS.md). Once the windows have filled, the resident set, the open
//! descriptors and the threads stay flat, the history keeps up, and every span is accounted
//! for.

use crate::harness::Server;
use slogate_load::{CohortSpec, LatencyDist, Rate, Scenario, Target};
use std::time::{Duration, Instant};

/// `(resident bytes, open descriptors, threads)` of a server.
fn footprint(server: &Server) -> (u64, usize, usize) {
    let fds = std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .unwrap()
        .count();
    (
        server.proc_status("VmRSS:") * 1024,
        fds,
        server.proc_status("Threads:") as usize,
    )
}

#[test]
fn a_steady_load_runs_in_flat_memory() {
    let secs: u64 = std::env::var("SLOGATE_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    // The windows fill in their coarse retention (60 s); the rest of the run must be flat.
    let fill = 60;
    assert!(
        secs >= fill + 40,
        "SLOGATE_SOAK_SECS must be at least {}",
        fill + 40
    );
    let server = Server::start(
        "windows:\n  slot: 1s\n  fine_retention: 1m\n  coarse_slot: 5s\n  coarse_retention: 1m\n\
         history:\n  dir: history\n  flush_interval: 1s\n  compaction_interval: 10s\n\
         gates:\n  - {name: soak, service: soak-0, window: 1m, min_requests: 10, canary: {version: v2}, baseline: {version: v1}, criteria: [{name: error-rate, metric: error_rate, pass: 0.05, fail: 0.1}, {name: p99, metric: latency_p99, compare: ratio, pass: 1.5, fail: 2.0}]}\n\
         slos:\n  - {name: soak-availability, service: soak-1, objective: 0.99, period: 1h}\n\
         alerting:\n  evaluation_interval: 1s\n  burn_rates:\n    - {tier: P1, factor: 10, long: 1m, short: 5s}\n  rules:\n    - {name: soak-errors, service: soak-2, metric: error_rate, above: 0.5, window: 1m, for: 0s, tier: ticket}\n",
    );
    // 4 services × 2 versions × 16 operations = 128 series, 4,000 spans/s.
    let cohorts = (0..4)
        .flat_map(|s| {
            ["v1", "v2"].map(|v| {
                let mut c =
                    CohortSpec::new(&format!("soak-{s}"), v, LatencyDist::lognormal(30.0, 0.6));
                c.operations = slogate_load::Operations::Count(16);
                c.error_rate = 0.01;
                c
            })
        })
        .collect();
    let target = Target {
        endpoint: format!("http://127.0.0.1:{}", server.grpc),
        ..Target::default()
    };
    let mut sc = Scenario::new(
        target,
        Rate::PerSecond(4000.0),
        Duration::from_secs(secs),
        cohorts,
    );
    sc.batch_size = 100;
    let load = std::thread::spawn(move || slogate_load::run_blocking(&sc).unwrap());

    // Verdicts, SQL and /metrics while it runs, and a footprint every 5 s.
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut verdict_ms = Vec::new();
    let client = reqwest::blocking::Client::new();
    while started.elapsed() < Duration::from_secs(secs) {
        let t = Instant::now();
        let resp = client
            .get(server.api_url("/api/v1/gates/soak/verdict"))
            .send()
            .unwrap();
        assert!(resp.status().as_u16() < 500, "{}", resp.status());
        verdict_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let (status, v) = server.sql("SELECT count(*) FROM requests");
        assert_eq!(status, 200, "{v}");
        assert_eq!(server.get("/metrics").unwrap().0, 200);
        samples.push((started.elapsed().as_secs(), footprint(&server)));
        std::thread::sleep(Duration::from_secs(5));
    }
    let report = load.join().unwrap();
    assert_eq!(report.requests_failed, 0, "{:?}", report.first_error);

    let after_fill: Vec<_> = samples.iter().filter(|(t, _)| *t >= fill).collect();
    let (first, last) = (after_fill[0].1, after_fill[after_fill.len() - 1].1);
    let max_rss = after_fill.iter().map(|(_, f)| f.0).max().unwrap();
    verdict_ms.sort_by(f64::total_cmp);
    let p99 = verdict_ms[(verdict_ms.len() * 99).div_ceil(100) - 1];
    eprintln!(
        "soak {secs} s, {} spans: RSS {} MiB at {fill} s, {} MiB at the end, {} MiB at most; fds {} → {}; threads {} → {}; verdict p99 {p99:.1} ms of {}",
        report.spans_sent,
        first.0 >> 20,
        last.0 >> 20,
        max_rss >> 20,
        first.1,
        last.1,
        first.2,
        last.2,
        verdict_ms.len()
    );
    for (t, f) in &samples {
        eprintln!(
            "  {t:>4} s  {:>4} MiB  {:>3} fds  {:>3} threads",
            f.0 >> 20,
            f.1,
            f.2
        );
    }
    // Flat: after the windows filled, the resident set grows by at most 10 % + 8 MiB (the
    // allocator's and the history writer's working sets move a little), descriptors and
    // threads by a handful (a compaction or a query in progress).
    assert!(
        max_rss <= first.0 + first.0 / 10 + (8 << 20),
        "RSS grew from {} to {} MiB after the windows filled",
        first.0 >> 20,
        max_rss >> 20
    );
    assert!(
        last.1 <= first.1 + 8,
        "descriptors {} → {}",
        first.1,
        last.1
    );
    assert!(last.2 <= first.2 + 8, "threads {} → {}", first.2, last.2);

    // Every acknowledged span reaches the history; nothing dropped.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = server.sql("SELECT sum(requests) FROM requests");
        if v["rows"][0][0].as_u64() == Some(report.spans_sent) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "history has {} of {} spans",
            v["rows"][0][0],
            report.spans_sent
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let (_, metrics) = server.get("/metrics").unwrap();
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("slogate_history_dropped_rows_total"))
    {
        assert!(line.ends_with(" 0"), "{line}");
    }
}
