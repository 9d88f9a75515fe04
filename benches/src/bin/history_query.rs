//! History query bench (issue #5): 24 h of history for 100 services × 3 operations at 10 s slots
//! (2,592,000 rows, real sketches of 20-60 log-normal samples each), written through
//! `HistoryWriter` in 10-minute flushes and compacted to one file per hour by `Maintenance`,
//! then queried through `History::sql` (DataFusion, planning and listing included) and with
//! DuckDB (`SLOGATE_PYTHON`, the test venv) on the same files.
//!
//! Run: `cargo run --profile bench -p slogate-benches --bin history-query`
//! (`--dir D` keeps the generated files in D and reuses them; default: a temporary directory).
//! Figures: see BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use slogate_core::{SeriesKey, SlotRecord};
use slogate_history::{
    History, HistoryWriter, Maintenance, MaintenanceConfig, Store, WriterConfig,
};
use slogate_sketch::Sketch;

/// 2025-11-24T00:00:00Z.
const DAY0: i64 = 1_763_942_400;
const SERVICES: usize = 100;
const OPERATIONS: [&str; 3] = ["GET /items/{id}", "POST /cart", "GET /search"];
const SLOT: i64 = 10;
const RUNS: usize = 15;

fn generate(root: &Path) {
    let store = Store::local(root);
    let mut writer = HistoryWriter::new(WriterConfig::new(&store, vec![])).expect("writer");
    let mut rng = StdRng::seed_from_u64(7);
    let started = Instant::now();
    let mut rows = 0usize;
    for chunk in 0..(86_400 / 600) {
        for slot in 0..(600 / SLOT) {
            let t = DAY0 + chunk * 600 + slot * SLOT;
            for s in 0..SERVICES {
                let median_ms = 5.0 + (s as f64 * 1.7) % 120.0;
                for (o, op) in OPERATIONS.iter().enumerate() {
                    let dist = LogNormal::new((median_ms * (1.0 + o as f64) * 1e6).ln(), 0.7)
                        .expect("log-normal");
                    let n: u64 = rng.random_range(20..=60);
                    let mut sketch = Sketch::new();
                    let (mut sum, mut min, mut max) = (0u64, u64::MAX, 0u64);
                    for _ in 0..n {
                        let v = dist.sample(&mut rng) as u64;
                        sketch.record(v);
                        sum += v;
                        min = min.min(v);
                        max = max.max(v);
                    }
                    let row = SlotRecord {
                        slot_start_unix: t,
                        slot_seconds: SLOT as u32,
                        key: SeriesKey {
                            service: format!("svc-{s:03}"),
                            env: "prod".into(),
                            version: if s % 10 == 0 {
                                "v2".into()
                            } else {
                                "v1".into()
                            },
                            operation: (*op).into(),
                            extras: vec![],
                        },
                        requests: n,
                        errors: u64::from(rng.random_bool(0.2)) * rng.random_range(1..3),
                        latency_sum_ns: sum,
                        latency_min_ns: min,
                        latency_max_ns: max,
                        sketch: sketch.encoded(),
                    };
                    writer.append(row).expect("buffer");
                    rows += 1;
                }
            }
        }
        writer.flush().expect("flush");
    }
    let written = started.elapsed();
    let compact = Instant::now();
    let report = Maintenance::new(&store, MaintenanceConfig::new(vec![]))
        .expect("maintenance")
        .compact(DAY0 + 2 * 86_400)
        .expect("compaction");
    eprintln!(
        "generated {rows} rows in {:.1} s; compacted {} files into {} in {:.1} s",
        written.as_secs_f64(),
        report.files_in,
        report.partitions,
        compact.elapsed().as_secs_f64()
    );
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

const DUCKDB: &str = r#"
import json, sys, time
import duckdb
root, runs = sys.argv[1], int(sys.argv[2])
src = f"read_parquet('{root}/requests/**/*.parquet', hive_partitioning = true)"
queries = {
    "b": f"SELECT service, sum(requests), sum(errors), sum(errors)::DOUBLE / sum(requests) FROM {src} GROUP BY service ORDER BY service",
    "c": f"SELECT date_trunc('hour', slot_start) AS h, sum(requests), max(latency_max_ms) FROM {src} WHERE service = 'svc-042' GROUP BY h ORDER BY h",
    "n": f"SELECT count(*), sum(requests) FROM {src}",
}
con = duckdb.connect()
out = {}
for name, q in queries.items():
    first = con.execute(q).fetchall()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        con.execute(q).fetchall()
        times.append(time.perf_counter() - t)
    times.sort()
    out[name] = {"median_ms": times[len(times) // 2] * 1000, "rows": len(first), "first": [str(x) for x in first[0]]}
print(json.dumps(out))
"#;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut keep: Option<PathBuf> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dir" => keep = args.next().map(PathBuf::from),
            _ if a.starts_with("--") => {} // cargo bench passes --bench
            _ => {}
        }
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = keep.unwrap_or_else(|| tmp.path().to_path_buf());
    if !root.join("requests").exists() {
        generate(&root);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let history = rt
        .block_on(History::open(root.as_path(), &[]))
        .expect("open");
    let (t0, t1) = (DAY0, DAY0 + 86_400);
    let range = format!(
        "slot_start >= to_timestamp_seconds({t0}) AND slot_start < to_timestamp_seconds({t1})"
    );
    let queries = [
        (
            "a",
            "one service: p95, p99 over 24 h (sketch_quantile)",
            format!(
                "SELECT sketch_quantile(sketch, 0.95), sketch_quantile(sketch, 0.99), sum(requests) FROM requests WHERE service = 'svc-042' AND {range}"
            ),
        ),
        (
            "b",
            "all 100 services: requests, errors, error rate over 24 h",
            format!(
                "SELECT service, sum(requests), sum(errors), CAST(sum(errors) AS DOUBLE) / sum(requests) FROM requests WHERE {range} GROUP BY service ORDER BY service"
            ),
        ),
        (
            "c",
            "one service: per-hour p99 over 24 h (sketch_quantile)",
            format!(
                "SELECT date_trunc('hour', slot_start) AS h, sketch_quantile(sketch, 0.99), sum(requests) FROM requests WHERE service = 'svc-042' AND {range} GROUP BY h ORDER BY h"
            ),
        ),
        (
            "n",
            "count(*), sum(requests) over everything",
            "SELECT count(*), sum(requests) FROM requests".to_string(),
        ),
    ];
    let mut df = Vec::new();
    for (name, what, q) in &queries {
        let first = rt
            .block_on(history.sql(q, 10_000, Duration::from_secs(60)))
            .expect("query");
        let mut times = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let t = Instant::now();
            rt.block_on(history.sql(q, 10_000, Duration::from_secs(60)))
                .expect("query");
            times.push(t.elapsed());
        }
        let m = median(times);
        println!(
            "datafusion {name}: {:>7.1} ms  ({} rows; first {:?})  {what}",
            m.as_secs_f64() * 1e3,
            first.rows.len(),
            first.rows[0]
        );
        df.push((*name, m));
    }
    let python = std::env::var("SLOGATE_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .arg("-c")
        .arg(DUCKDB)
        .arg(&root)
        .arg(RUNS.to_string())
        .output();
    match out {
        Ok(out) if out.status.success() => {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("duckdb json");
            for (name, m) in &df {
                if let Some(d) = v.get(*name) {
                    let ms = d["median_ms"].as_f64().unwrap_or(f64::NAN);
                    println!(
                        "duckdb     {name}: {ms:>7.1} ms  ({} rows; first {})  datafusion/duckdb = {:.2}",
                        d["rows"],
                        d["first"],
                        m.as_secs_f64() * 1e3 / ms
                    );
                }
            }
        }
        Ok(out) => eprintln!(
            "duckdb failed (set SLOGATE_PYTHON to the test venv's python): {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("cannot run {python}: {e}"),
    }
    let bytes: u64 = Store::local(&root)
        .list("requests")
        .expect("list")
        .iter()
        .map(|e| e.size)
        .sum();
    println!(
        "files: {:.1} MiB under {}",
        bytes as f64 / (1 << 20) as f64,
        root.display()
    );
}
