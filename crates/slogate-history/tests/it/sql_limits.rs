//! History SQL against hostile queries (issue 14): each one of the paths DataFusion leaves
//! unaccounted is refused with "resources exhausted" while this process's peak memory stays
//! far below what the query asked for, ordinary queries still answer the same, and a query
//! past its timeout stops using CPU.
//!
//! Each test runs in a child process of this test binary (filtered to that one test): the
//! figures are the process's peak RSS (`VmHWM`, reset before each case) and the CPU time of the
//! history's `slogate-sql` threads, which the other tests of this binary would blur.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use slogate_history::{History, HistoryError, SqlLimits};

const MIB: u64 = 1 << 20;
/// What a refused query may leave as this process's peak: four times the pool, a tenth of what
/// the unguarded queries reached.
const PEAK_BOUND: u64 = 2048 * MIB;
const LIMITS: SqlLimits = SqlLimits {
    memory_limit: 512 << 20,
};

/// Set in the child process that runs one test alone.
const CHILD: &str = "SLOGATE_SQL_LIMITS_CHILD";

/// Runs `body` in a fresh child process of this test binary (see the file comment); here, in
/// the parent, only checks that the child passed.
fn isolated(test: &str, body: impl std::future::Future<Output = ()>) {
    if std::env::var_os(CHILD).is_some() {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(body);
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([&format!("sql_limits::{test}"), "--exact", "--nocapture"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test} failed in its own process: {}\n{stdout}\n{stderr}",
        out.status
    );
}

fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} not in /proc/self/status"))
}

/// Peak resident memory since the last [`reset_peak`].
fn peak_rss() -> u64 {
    status_kib("VmHWM:") * 1024
}

fn reset_peak() {
    // "5" resets VmHWM to the current RSS (proc(5), clear_refs).
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

/// A regression must fail this test, not take the machine: past 4 GiB resident, abort.
fn watchdog() {
    static STARTED: AtomicBool = AtomicBool::new(false);
    if STARTED.swap(true, Ordering::SeqCst) {
        return;
    }
    std::thread::spawn(|| {
        loop {
            let rss = status_kib("VmRSS:") * 1024;
            if rss > 4096 * MIB {
                eprintln!("sql_limits watchdog: {} MiB resident, aborting", rss / MIB);
                std::process::abort();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
}

async fn history() -> (tempfile::TempDir, History) {
    let dir = tempfile::tempdir().unwrap();
    let history = History::open_with(dir.path(), &[], LIMITS).await.unwrap();
    (dir, history)
}

/// `n` copies of `term` joined by `sep`.
fn times(n: usize, term: &str, sep: &str) -> String {
    vec![term; n].join(sep)
}

#[test]
fn hostile_queries_are_refused_with_bounded_memory() {
    isolated(
        "hostile_queries_are_refused_with_bounded_memory",
        hostile_queries(),
    );
}

async fn hostile_queries() {
    watchdog();
    let (_dir, history) = history().await;
    // Planning folds the concatenation of the literals and both reverses: about 48 KiB of
    // constants a term (each term its own letter, so that no two become one common expression).
    let folded_sum = |terms: usize| {
        (0..terms)
            .map(|t| {
                let literal = format!("'{}'", ((b'a' + t as u8) as char).to_string().repeat(2048));
                format!(
                    "length(reverse(reverse(concat({}))))",
                    times(8, &literal, ", ")
                )
            })
            .collect::<Vec<_>>()
            .join(" + ")
    };
    // (what, query, a fragment of the refusal): each asks for gigabytes to terabytes.
    let cases = [
        (
            "the issue's string_agg of repeat('x', 1e6)",
            "SELECT length(string_agg(s, ',')) FROM (SELECT repeat('x', 1000000) AS s FROM generate_series(1, 100000))".to_string(),
            "repeat() over 1024 rows",
        ),
        (
            "string_agg growing past the pool",
            "SELECT length(string_agg(s, '')) FROM (SELECT repeat('x', 10000) AS s FROM generate_series(1, 1000000))".to_string(),
            "Failed to allocate",
        ),
        (
            "the issue's cross join of a 1 MB value",
            "SELECT sum(length(a.s)) FROM (SELECT repeat('x', 1000000) AS s) a CROSS JOIN generate_series(1, 100000) b".to_string(),
            "would be repeated",
        ),
        (
            "a string doubled by every step of a recursive query",
            "WITH RECURSIVE t(n, s) AS (SELECT 1, 'x' UNION ALL SELECT n + 1, s || s FROM t WHERE n < 40) SELECT max(length(s)) FROM t".to_string(),
            "Failed to allocate",
        ),
        (
            "twelve 100 MB results in one projection",
            format!(
                "SELECT {} FROM generate_series(1, 1024)",
                times(12, "length(repeat('x', 100000))", " + ")
            ),
            "repeat() over 1024 rows",
        ),
        (
            "a ten-billion-element list",
            "SELECT cardinality(range(1, 10000000000))".to_string(),
            "range()",
        ),
        (
            "a window buffering its whole input",
            "SELECT sum(m) FROM (SELECT max(value) OVER () AS m FROM generate_series(1, 200000000))".to_string(),
            "produced a batch",
        ),
        (
            "a result of a gigabyte",
            "SELECT repeat('x', 100000) AS s FROM generate_series(1, 10000)".to_string(),
            "sql result",
        ),
        (
            "a delimiter per element",
            "SELECT length(array_to_string(range(1, 100000), repeat('x', 10000)))".to_string(),
            "array_to_string()",
        ),
        (
            "a replacement at every character",
            "SELECT length(regexp_replace(repeat('a', 100000), '', repeat('b', 10000), 'g'))"
                .to_string(),
            "regexp_replace()",
        ),
        (
            "padding to a billion characters",
            "SELECT length(lpad('x', 1000000000))".to_string(),
            "lpad()",
        ),
        (
            "ten billion character comparisons",
            "SELECT levenshtein(repeat('a', 100000), repeat('b', 100000))".to_string(),
            "levenshtein()",
        ),
    ];
    for (what, query, fragment) in &cases {
        reset_peak();
        let started = Instant::now();
        let result = history.sql(query, 10_000, Duration::from_secs(300)).await;
        let peak = peak_rss();
        eprintln!(
            "{what}: peak {} MiB, {:.1} s: {result:?}",
            peak / MIB,
            started.elapsed().as_secs_f64()
        );
        match result {
            Err(HistoryError::ResourcesExhausted(message)) => {
                assert!(message.contains(fragment), "{what}: {message}")
            }
            other => panic!("{what}: expected resources exhausted, got {other:?}"),
        }
        assert!(peak < PEAK_BOUND, "{what}: peak {} MiB", peak / MIB);
    }

    let long = format!("SELECT '{}' AS s", "x".repeat(70 << 10));
    match history.sql(&long, 10, Duration::from_secs(30)).await {
        Err(HistoryError::QueryTooLong { bytes, max }) => {
            assert_eq!((bytes, max), (long.len(), 64 << 10))
        }
        other => panic!("expected query too long, got {other:?}"),
    }

    // Planning folds at most 64 KiB of constants a query; the rest is computed per batch.
    for (terms, folded) in [(1, true), (3, false)] {
        let query = format!("SELECT {} AS n", folded_sum(terms));
        let plan = history
            .sql(&format!("EXPLAIN {query}"), 100, Duration::from_secs(60))
            .await
            .unwrap();
        let plan = json!(plan.rows).to_string();
        // Folded whole, the projection computes a number: `expr=[16384 as n]`.
        let computes = plan
            .split("ProjectionExec: expr=[")
            .nth(1)
            .and_then(|p| p.split(" as n").next())
            .unwrap_or_else(|| panic!("no projection in {plan}"));
        assert_eq!(
            !computes.contains('('),
            folded,
            "{terms} terms: {}",
            &computes[..200.min(computes.len())]
        );
        let result = history
            .sql(&query, 10, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(json!(result.rows), json!([[terms * 16384]]));
    }

    // The same session still answers, and the guards change no answer.
    let ok = [
        ("SELECT length(repeat('x', 1000)) AS n", json!([[1000]])),
        (
            "SELECT count(*) AS n, sum(value) AS s FROM generate_series(1, 1000000)",
            json!([[1000000, 500000500000u64]]),
        ),
        (
            "SELECT s || '!' AS t FROM (VALUES ('a'), (NULL), ('c')) v(s) ORDER BY s NULLS LAST",
            json!([["a!"], ["c!"], [null]]),
        ),
        ("SELECT 'a' || 'b' || 3 AS t", json!([["ab3"]])),
        (
            "SELECT string_agg(v, ',' ORDER BY v) AS s FROM (VALUES ('b'), ('a')) t(v)",
            json!([["a,b"]]),
        ),
        (
            "SELECT count(*) AS n FROM generate_series(1, 300) a CROSS JOIN generate_series(1, 300) b WHERE a.value < b.value",
            json!([[44850]]),
        ),
        (
            "WITH RECURSIVE t(n, s) AS (SELECT 1, 'x' UNION ALL SELECT n + 1, s || s FROM t WHERE n < 10) SELECT max(length(s)) AS m FROM t",
            json!([[512]]),
        ),
        (
            "SELECT max(m) AS m FROM (SELECT max(value) OVER () AS m FROM generate_series(1, 100000))",
            json!([[100000]]),
        ),
        (
            "SELECT cardinality(range(1, 1000)) AS n, array_to_string(range(1, 4), '-') AS s",
            json!([[999, "1-2-3"]]),
        ),
        (
            "SELECT lpad('7', 3, '0') AS p, replace('aXa', 'X', 'yy') AS r, upper('ß') AS u",
            json!([["007", "ayya", "SS"]]),
        ),
        (
            "SELECT count(*) AS n FROM (SELECT unnest(range(1, 1001)) AS v FROM generate_series(1, 50))",
            json!([[50000]]),
        ),
    ];
    for (query, rows) in ok {
        let result = history
            .sql(query, 100, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        assert_eq!(json!(result.rows), rows, "{query}");
    }
    // The guards are invisible in plans.
    let plan = history
        .sql(
            "EXPLAIN SELECT upper(s) FROM (VALUES ('a')) t(s)",
            100,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let text = json!(plan.rows).to_string();
    assert!(text.contains("ProjectionExec"), "{text}");
    assert!(!text.contains("Guarded"), "{text}");
}

/// CPU seconds of this process's `slogate-sql` threads (the histories' query runtimes).
fn sql_cpu_seconds() -> f64 {
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim() != "slogate-sql" {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        // utime and stime are fields 14 and 15 of proc(5); fields[0] here is field 3.
        for n in [14, 15] {
            ticks += fields
                .get(n - 3)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    ticks as f64 / 100.0
}

#[test]
fn a_timed_out_query_stops_using_cpu() {
    isolated("a_timed_out_query_stops_using_cpu", timed_out_query());
}

async fn timed_out_query() {
    let (_dir, history) = history().await;
    let before = sql_cpu_seconds();
    // A trillion rows: hours of work, all of it CPU.
    let query = "SELECT max(a.value * b.value + a.value) AS m FROM generate_series(1, 1000000) a CROSS JOIN generate_series(1, 1000000) b";
    let timeout = Duration::from_secs(3);
    let result = history.sql(query, 10, timeout).await;
    assert!(
        matches!(result, Err(HistoryError::Timeout(t)) if t == timeout),
        "{result:?}"
    );
    let timed_out = Instant::now();
    let busy = sql_cpu_seconds() - before;
    assert!(
        busy > 0.2,
        "the query used only {busy:.2} s of CPU before its timeout"
    );
    // Sampled twice a second: the CPU time must stop growing.
    let mut last = sql_cpu_seconds();
    let stopped_after = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = sql_cpu_seconds();
        if now - last <= 0.02 {
            break timed_out.elapsed();
        }
        assert!(
            timed_out.elapsed() < Duration::from_secs(20),
            "the query still uses CPU {:?} after its timeout",
            timed_out.elapsed()
        );
        last = now;
    };
    eprintln!(
        "cross join: {busy:.2} s CPU before the timeout; flat {:.1} s after it",
        stopped_after.as_secs_f64()
    );
    assert!(
        stopped_after < Duration::from_secs(3),
        "the query used CPU for {stopped_after:?} after its timeout"
    );
    // Flat for good, and the history still answers.
    let flat = sql_cpu_seconds();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(sql_cpu_seconds() - flat <= 0.02);
    let result = history
        .sql("SELECT 1 AS one", 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(json!(result.rows), json!([[1]]));
}
