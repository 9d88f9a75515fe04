//! Refusing is not losing: with 70 % of exports refused (the retry drill) every span a client
//! saw acknowledged reaches the history, and under an overload that pushes memory up the
//! watchdog refuses retryably, keeps the process under its limit, keeps verdicts fast, and lets
//! traffic back in once memory falls.

use crate::harness::Server;
use slogate_load::{CohortSpec, LatencyDist, Protocol, Rate, Report, Scenario, Target};
use std::time::{Duration, Instant};

/// The sum of every sample of a family on `/metrics` (all label sets).
fn family_sum(server: &Server, name: &str) -> f64 {
    let (_, body) = server.get("/metrics").unwrap();
    body.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn load(
    server: &Server,
    protocol: Protocol,
    service: &str,
    rate: Rate,
    secs: u64,
    batch: usize,
    concurrency: usize,
) -> Scenario {
    let port = match protocol {
        Protocol::Grpc => server.grpc,
        _ => server.http,
    };
    let target = Target {
        endpoint: format!("http://127.0.0.1:{port}"),
        protocol,
        ..Target::default()
    };
    let mut sc = Scenario::new(
        target,
        rate,
        Duration::from_secs(secs),
        vec![CohortSpec::new(
            service,
            "v1",
            LatencyDist::lognormal(40.0, 0.5),
        )],
    );
    sc.batch_size = batch;
    sc.concurrency = concurrency;
    sc.connections = concurrency.min(8);
    sc
}

/// Runs the scenarios side by side and returns their reports in order.
fn run_all(scenarios: Vec<Scenario>) -> Vec<Report> {
    let handles: Vec<_> = scenarios
        .into_iter()
        .map(|sc| std::thread::spawn(move || slogate_load::run_blocking(&sc).unwrap()))
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn nothing_acknowledged_is_lost_while_seventy_percent_of_exports_are_refused() {
    let server = Server::start(
        "windows:\n  slot: 1s\n  fine_retention: 10m\n  coarse_slot: 10s\n  coarse_retention: 1h\n\
         history:\n  dir: history\n  flush_interval: 1s\n\
         ingest:\n  drill_refuse_fraction: 0.7\n  retry_after: 1s\n",
    );
    let reports = run_all(vec![
        load(
            &server,
            Protocol::Grpc,
            "drill-grpc",
            Rate::PerSecond(2000.0),
            6,
            20,
            8,
        ),
        load(
            &server,
            Protocol::HttpProtobuf,
            "drill-http",
            Rate::PerSecond(2000.0),
            6,
            20,
            8,
        ),
    ]);
    for (r, transport) in reports.iter().zip(["grpc", "http"]) {
        eprintln!(
            "{transport}: {} spans acknowledged in {} requests, {} refused, {} failed",
            r.spans_sent, r.requests_ok, r.throttled, r.requests_failed
        );
        assert_eq!(r.requests_failed, 0, "{transport}: {:?}", r.first_error);
        assert!(
            r.spans_sent > 0 && r.throttled > r.requests_ok,
            "{transport}: {r:?}"
        );
    }
    let shed = server.metric("slogate_ingest_shed_total{reason=\"drill\"}");
    let ok: f64 = ["grpc", "http_protobuf"]
        .iter()
        .map(|t| {
            server.metric(&format!(
                "slogate_receiver_requests_total{{transport=\"{t}\",outcome=\"ok\"}}"
            ))
        })
        .sum();
    let refused = shed / (shed + ok);
    eprintln!(
        "refused {shed} of {} export requests ({refused:.3})",
        shed + ok
    );
    assert!((0.66..=0.74).contains(&refused), "{refused}");
    assert_eq!(
        shed,
        reports.iter().map(|r| r.throttled).sum::<u64>() as f64,
        "every refusal reached a client as a retryable answer"
    );

    // What the clients saw acknowledged, and only that, is in the history.
    let want: Vec<u64> = reports.iter().map(|r| r.spans_sent).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, v) = server
            .sql("SELECT service, sum(requests) FROM requests GROUP BY service ORDER BY service");
        assert_eq!(status, 200, "{v}");
        let got: Vec<u64> = v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[1].as_u64().unwrap())
            .collect();
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "history has {got:?}, clients had acknowledged {want:?} (grpc, http)"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        family_sum(&server, "slogate_history_dropped_rows_total"),
        0.0
    );
    assert_eq!(
        server.metric("slogate_spans_accepted_total"),
        want.iter().sum::<u64>() as f64
    );
}

/// The peak resident set of a server, in bytes.
fn peak_rss(server: &Server) -> u64 {
    server.proc_status("VmHWM:") * 1024
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[test]
fn overload_is_refused_retryably_within_the_memory_limit() {
    const GATE: &str = "gates:\n  - {name: mem, service: mem-grpc, window: 1m, min_requests: 10, canary: {version: v1}, criteria: [{name: error-rate, metric: error_rate, pass: 0.05, fail: 0.1}]}\n";
    // What the process needs with no load, measured on the same build.
    let probe = Server::start(GATE);
    let idle = peak_rss(&probe);
    drop(probe);
    // Room for the idle process, 64 MiB of request bodies and their decoding: the load below
    // offers far more (48 requests of 10,000 spans, ~4 MB each, at once, without pause).
    let limit = (idle + (192 << 20)).next_multiple_of(1 << 20);
    let server = Server::start(&format!(
        "ingest:\n  memory_limit_bytes: {limit}\n  max_request_bytes: 16777216\n  max_inflight_bytes: 67108864\n  retry_after: 1s\n{GATE}"
    ));
    let verdicts = {
        let url = server.api_url("/api/v1/gates/mem/verdict");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let client = reqwest::blocking::Client::new();
            let mut took = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                let resp = client.get(&url).send().unwrap();
                assert!(resp.status().as_u16() < 500, "{}", resp.status());
                took.push(started.elapsed());
                std::thread::sleep(Duration::from_millis(50));
            }
            took
        });
        (stop, handle)
    };
    // 12 s in CI; `SLOGATE_OVERLOAD_SECS=60` for the run recorded in BENCHMARKS.md.
    let secs = std::env::var("SLOGATE_OVERLOAD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let reports = run_all(vec![
        load(
            &server,
            Protocol::Grpc,
            "mem-grpc",
            Rate::Max,
            secs,
            10_000,
            24,
        ),
        load(
            &server,
            Protocol::HttpProtobuf,
            "mem-http",
            Rate::Max,
            secs,
            10_000,
            24,
        ),
    ]);
    verdicts.0.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut took = verdicts.1.join().unwrap();
    took.sort();
    let peak = peak_rss(&server);
    let shed = family_sum(&server, "slogate_ingest_shed_total");
    let episodes = server.metric("slogate_memory_shedding_episodes_total");
    eprintln!(
        "{secs} s of overload: idle {} MiB, limit {} MiB, peak {} MiB; {shed} requests refused ({} for bytes in flight, {} for memory in {episodes} episodes); verdicts p50 {:?} p99 {:?} of {}",
        idle >> 20,
        limit >> 20,
        peak >> 20,
        server.metric("slogate_ingest_shed_total{reason=\"in_flight_bytes\"}"),
        server.metric("slogate_ingest_shed_total{reason=\"memory\"}"),
        percentile(&took, 0.5),
        percentile(&took, 0.99),
        took.len()
    );
    for (r, transport) in reports.iter().zip(["grpc", "http"]) {
        eprintln!(
            "{transport}: {} spans acknowledged in {} requests, {} refused, {} failed",
            r.spans_sent, r.requests_ok, r.throttled, r.requests_failed
        );
        assert_eq!(
            r.requests_failed, 0,
            "{transport}: only retryable refusals, no reset or timeout: {:?}",
            r.first_error
        );
    }
    assert!(shed > 0.0, "the load never reached a limit");
    let served: u64 = reports.iter().map(|r| r.requests_ok).sum();
    let offered: u64 = served + reports.iter().map(|r| r.throttled).sum::<u64>();
    eprintln!(
        "offered {offered} requests, {:.1}× the {served} served",
        offered as f64 / served as f64
    );
    assert!(served > 0, "some of the overload was served");
    assert!(
        offered >= 2 * served,
        "not an overload: {offered} offered, {served} served"
    );
    assert!(peak < limit, "peak {peak} over the limit {limit}");
    // 50 ms is the target for a release build; this is a debug build on two cores shared
    // with the load generator and other tests (measured: p99 22-54 ms).
    assert!(
        percentile(&took, 0.99) <= Duration::from_millis(250),
        "verdict p99 {:?}",
        percentile(&took, 0.99)
    );

    // Once the overload ends memory falls back and a normal load goes through untouched.
    let deadline = Instant::now() + Duration::from_secs(20);
    // Back to normal: shedding off for a whole second (memory settles for a moment after the
    // clients stop; a light load just then can meet the last episode).
    let mut calm = 0;
    while calm < 10 {
        calm = if server.metric("slogate_memory_shedding") == 0.0 {
            calm + 1
        } else {
            0
        };
        assert!(
            Instant::now() < deadline,
            "still shedding 20 s after the overload, at {} MiB",
            server.metric("process_resident_memory_bytes") as u64 >> 20
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "shedding stopped: resident {} MiB, peak {} MiB",
        server.metric("process_resident_memory_bytes") as u64 >> 20,
        peak_rss(&server) >> 20
    );
    let shed_before = family_sum(&server, "slogate_ingest_shed_total");
    let after = run_all(vec![load(
        &server,
        Protocol::Grpc,
        "mem-grpc",
        Rate::PerSecond(5000.0),
        3,
        100,
        4,
    )]);
    assert_eq!(
        (after[0].throttled, after[0].requests_failed),
        (0, 0),
        "{:?}",
        after[0]
    );
    assert!(after[0].spans_sent >= 12_000, "{:?}", after[0]);
    assert_eq!(
        family_sum(&server, "slogate_ingest_shed_total"),
        shed_before
    );
}
