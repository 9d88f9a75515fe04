//! Integration tests: write two days of slots with known raw latencies, then query them back
//! through DataFusion (and DuckDB as a second, independent reader); `store` runs the same
//! checks, compaction and retention on a local directory and on a real S3-compatible server;
//! `metrics` does the same for the `metrics` table.

mod corrupt;
mod metrics;
mod s3;
mod sql_limits;
mod store;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use slogate_core::{SeriesKey, SlotRecord};
use slogate_history::{
    DocRow, DocTable, DocWriter, History, HistoryError, HistoryWriter, WriterConfig,
};
use slogate_sketch::{Sketch, nearest_rank};

/// 2025-11-24T00:00:00Z.
const DAY0: i64 = 1_763_942_400;
const DAY: i64 = 86_400;
const SERVICES: [(&str, f64); 3] = [("checkout", 20.0), ("search", 50.0), ("auth", 5.0)];
const VERSIONS: [&str; 2] = ["v1", "v2"];
/// One slot every 20 minutes per series.
const SLOT_EVERY: i64 = 1200;
const LIMIT: Duration = Duration::from_secs(60);

fn extra_dims() -> Vec<String> {
    vec!["region".to_string()]
}

/// splitmix64: deterministic data without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What was written, with the raw latencies kept for exact reference quantiles.
struct Dataset {
    rows: Vec<SlotRecord>,
    /// (service, day index) -> every raw latency in ns.
    raw_by_service_day: BTreeMap<(String, i64), Vec<u64>>,
    /// (row index) -> raw latencies of that slot.
    raw_by_row: Vec<Vec<u64>>,
}

fn dataset() -> Dataset {
    let mut rng = Rng(42);
    let mut rows = Vec::new();
    let mut raw_by_service_day: BTreeMap<(String, i64), Vec<u64>> = BTreeMap::new();
    let mut raw_by_row = Vec::new();
    for day in 0..2 {
        for t in (0..DAY).step_by(SLOT_EVERY as usize) {
            for (service, base_ms) in SERVICES {
                for version in VERSIONS {
                    let n = 20 + rng.next() % 61;
                    // One slot in ten is an incident with an eight times slower tail: the case
                    // where averaging per-slot percentiles goes wrong.
                    let slow = rng.unit() < 0.1;
                    let mut sketch = Sketch::new();
                    let mut raw = Vec::with_capacity(n as usize);
                    for _ in 0..n {
                        let noise = (rng.unit() * 2.5).exp();
                        let ms = base_ms * noise * if slow { 8.0 } else { 1.0 };
                        let ns = (ms * 1e6) as u64;
                        sketch.record(ns);
                        raw.push(ns);
                    }
                    let errors = rng.next() % 3;
                    rows.push(SlotRecord {
                        slot_start_unix: DAY0 + day * DAY + t,
                        slot_seconds: 10,
                        key: SeriesKey {
                            service: service.to_string(),
                            env: "prod".to_string(),
                            version: version.to_string(),
                            operation: "GET /items/{id}".to_string(),
                            extras: vec!["eu-west-1".to_string()],
                        },
                        requests: n,
                        errors,
                        latency_sum_ns: raw.iter().sum(),
                        latency_min_ns: *raw.iter().min().unwrap(),
                        latency_max_ns: *raw.iter().max().unwrap(),
                        sketch: sketch.encoded(),
                    });
                    raw_by_service_day
                        .entry((service.to_string(), day))
                        .or_default()
                        .extend(&raw);
                    raw_by_row.push(raw);
                }
            }
        }
    }
    Dataset {
        rows,
        raw_by_service_day,
        raw_by_row,
    }
}

/// Writes the dataset in two flushes (one per day) and opens the query side.
async fn written(root: &Path) -> (Dataset, History) {
    let data = dataset();
    let mut writer = HistoryWriter::new(WriterConfig::new(root, extra_dims())).unwrap();
    for day in 0..2 {
        let rows: Vec<SlotRecord> = data
            .rows
            .iter()
            .filter(|r| (r.slot_start_unix - DAY0) / DAY == day)
            .cloned()
            .collect();
        writer.append_all(rows).unwrap();
        let files = writer.flush().unwrap();
        assert_eq!(files.len(), 24, "one file per hour partition");
        assert_eq!(writer.buffered(), 0);
    }
    let history = History::open(root, &extra_dims()).await.unwrap();
    (data, history)
}

fn exact_quantile_ms(raw: &[u64], q: f64) -> f64 {
    let mut v = raw.to_vec();
    v.sort_unstable();
    let rank = nearest_rank(q, v.len() as u64).unwrap();
    v[rank as usize - 1] as f64 / 1e6
}

fn assert_within(got: f64, want: f64, rel: f64, what: &str) {
    let err = (got - want).abs() / want;
    assert!(
        err <= rel,
        "{what}: got {got}, want {want} (relative error {err:.5} > {rel})"
    );
}

fn as_u64(v: &serde_json::Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not an unsigned integer: {v}"))
}

#[tokio::test]
async fn counts_and_sums_match_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let (data, history) = written(dir.path()).await;
    let res = history
        .sql(
            "SELECT count(*) AS n, sum(requests) AS requests, sum(errors) AS errors, count(DISTINCT date) AS days \
             FROM requests",
            10,
            LIMIT,
        )
        .await
        .unwrap();
    assert_eq!(res.columns, ["n", "requests", "errors", "days"]);
    let row = &res.rows[0];
    assert_eq!(as_u64(&row[0]), data.rows.len() as u64);
    assert_eq!(
        as_u64(&row[1]),
        data.rows.iter().map(|r| r.requests).sum::<u64>()
    );
    assert_eq!(
        as_u64(&row[2]),
        data.rows.iter().map(|r| r.errors).sum::<u64>()
    );
    assert_eq!(as_u64(&row[3]), 2);
    assert!(!res.truncated);

    // Partition pruning by the hive columns gives the same per-day answers as the timestamp.
    let res = history
        .sql(
            "SELECT date, count(*) FROM requests WHERE hour = '05' GROUP BY date ORDER BY date",
            10,
            LIMIT,
        )
        .await
        .unwrap();
    let per_hour = (3600 / SLOT_EVERY) as u64 * (SERVICES.len() * VERSIONS.len()) as u64;
    assert_eq!(res.rows.len(), 2);
    assert_eq!(res.rows[0][0], "2025-11-24");
    assert_eq!(as_u64(&res.rows[0][1]), per_hour);
    assert_eq!(res.rows[1][0], "2025-11-25");
}

#[tokio::test]
async fn daily_p99_per_service_matches_exact_nearest_rank() {
    let dir = tempfile::tempdir().unwrap();
    let (data, history) = written(dir.path()).await;
    for (day, date) in [(0, "2025-11-24"), (1, "2025-11-25")] {
        let q = format!(
            "SELECT service, sketch_quantile(sketch, 0.99) AS p99, sketch_quantile(sketch, 0.5) AS p50 \
             FROM requests WHERE date = '{date}' GROUP BY service ORDER BY service"
        );
        let res = history.sql(&q, 100, LIMIT).await.unwrap();
        assert_eq!(res.rows.len(), SERVICES.len());
        for row in &res.rows {
            let service = row[0].as_str().unwrap();
            let raw = &data.raw_by_service_day[&(service.to_string(), day)];
            for (col, q) in [(1, 0.99), (2, 0.5)] {
                let got = row[col].as_f64().unwrap();
                assert_within(
                    got,
                    exact_quantile_ms(raw, q),
                    0.01,
                    &format!("{service} {date} q{q}"),
                );
            }
        }
    }
}

#[tokio::test]
async fn range_percentile_comes_from_merged_sketches_not_averaged_percentiles() {
    let dir = tempfile::tempdir().unwrap();
    let (data, history) = written(dir.path()).await;
    // 06:00 to 18:00 on day 0, checkout only, all versions.
    let (from, to) = (DAY0 + 6 * 3600, DAY0 + 18 * 3600);
    let q = format!(
        "SELECT sketch_quantile(sketch, 0.99) AS merged, avg(sketch_quantile_of(sketch, 0.99)) AS averaged, \
                sketch_quantile_of(sketch_merge(sketch), 0.99) AS merged_bytes \
         FROM requests WHERE service = 'checkout' \
           AND slot_start >= to_timestamp_seconds({from}) AND slot_start < to_timestamp_seconds({to})"
    );
    let res = history.sql(&q, 10, LIMIT).await.unwrap();
    let raw: Vec<u64> = data
        .rows
        .iter()
        .zip(&data.raw_by_row)
        .filter(|(r, _)| r.key.service == "checkout" && (from..to).contains(&r.slot_start_unix))
        .flat_map(|(_, raw)| raw.iter().copied())
        .collect();
    let exact = exact_quantile_ms(&raw, 0.99);
    let merged = res.rows[0][0].as_f64().unwrap();
    let averaged = res.rows[0][1].as_f64().unwrap();
    let merged_bytes = res.rows[0][2].as_f64().unwrap();
    assert_within(merged, exact, 0.01, "sketch_quantile over a range");
    assert_eq!(
        merged, merged_bytes,
        "sketch_merge + sketch_quantile_of agrees with sketch_quantile"
    );
    let off = (averaged - exact).abs() / exact;
    assert!(
        off > 0.10,
        "the average of per-slot p99s should be far off: {averaged} vs exact {exact}"
    );
}

#[tokio::test]
async fn statements_that_write_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (_, history) = written(dir.path()).await;
    let cases = [
        ("CREATE TABLE t AS SELECT 1", "CREATE"),
        ("CREATE TABLE t (a INT)", "CREATE"),
        (
            "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/tmp/x'",
            "CREATE",
        ),
        ("CREATE VIEW v AS SELECT * FROM requests", "CREATE"),
        ("INSERT INTO requests SELECT * FROM requests", "INSERT"),
        ("DROP TABLE requests", "DROP"),
        ("DELETE FROM requests", "DELETE"),
        ("UPDATE requests SET requests = 0", "UPDATE"),
        ("COPY requests TO '/tmp/slogate-copy-out.parquet'", "COPY"),
        ("COPY (SELECT 1) TO '/tmp/slogate-copy-out.csv'", "COPY"),
        ("SET datafusion.execution.batch_size = 1", "SET"),
        ("EXPLAIN CREATE TABLE t (a INT)", "EXPLAIN"),
    ];
    for (query, statement) in cases {
        match history.sql(query, 10, LIMIT).await {
            Err(e @ HistoryError::ReadOnly { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("read-only"), "{query}: {msg}");
                assert!(msg.ends_with(statement), "{query}: {msg}");
            }
            other => panic!("{query}: expected a read-only rejection, got {other:?}"),
        }
    }
    // Still there and unchanged; queries and EXPLAIN of a query pass.
    let res = history
        .sql("SELECT count(*) FROM requests", 10, LIMIT)
        .await
        .unwrap();
    assert_eq!(as_u64(&res.rows[0][0]), 864);
    history
        .sql("EXPLAIN SELECT count(*) FROM requests", 10, LIMIT)
        .await
        .unwrap();
    history
        .sql("WITH x AS (SELECT 1 AS a) SELECT a FROM x", 10, LIMIT)
        .await
        .unwrap();
    assert!(!Path::new("/tmp/slogate-copy-out.parquet").exists());
}

#[tokio::test]
async fn leftover_tmp_file_is_invisible() {
    let dir = tempfile::tempdir().unwrap();
    let (data, history) = written(dir.path()).await;
    let part = dir.path().join("requests/date=2025-11-24/hour=03");
    let real = std::fs::read_dir(&part)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    // A crash mid-write leaves a partial file, or one complete but not yet renamed.
    std::fs::write(part.join("part-1-99.parquet.tmp"), b"PAR1 truncated").unwrap();
    std::fs::copy(&real, part.join("part-2-99.parquet.tmp")).unwrap();
    let res = history
        .sql("SELECT count(*) FROM requests", 10, LIMIT)
        .await
        .unwrap();
    assert_eq!(as_u64(&res.rows[0][0]), data.rows.len() as u64);
}

#[tokio::test]
async fn max_rows_truncates() {
    let dir = tempfile::tempdir().unwrap();
    let (data, history) = written(dir.path()).await;
    let cases = [
        (5, 5, true),
        (864, 864, false),
        (10_000, 864, false),
        (0, 0, true),
    ];
    for (max_rows, want_rows, truncated) in cases {
        let res = history
            .sql(
                "SELECT service, slot_start, requests FROM requests ORDER BY slot_start",
                max_rows,
                LIMIT,
            )
            .await
            .unwrap();
        assert_eq!(res.rows.len(), want_rows, "max_rows {max_rows}");
        assert_eq!(res.truncated, truncated, "max_rows {max_rows}");
    }
    assert_eq!(data.rows.len(), 864);
    let res = history
        .sql(
            "SELECT slot_start FROM requests ORDER BY slot_start",
            1,
            LIMIT,
        )
        .await
        .unwrap();
    assert_eq!(res.rows[0][0], "2025-11-24T00:00:00Z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_query_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let (_, history) = written(dir.path()).await;
    let q = "SELECT count(*) FROM requests a, requests b, requests c WHERE a.requests + b.requests > c.requests";
    match history.sql(q, 10, Duration::from_millis(200)).await {
        Err(e @ HistoryError::Timeout(_)) => {
            assert_eq!(e.to_string(), "query timed out after 200ms")
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn load_since_reads_back_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (data, history) = written(dir.path()).await;
    let since = DAY0 + DAY + 12 * 3600;
    let got = history.load_since(since).await.unwrap();
    let mut want: Vec<SlotRecord> = data
        .rows
        .iter()
        .filter(|r| r.slot_start_unix >= since)
        .cloned()
        .collect();
    want.sort_by(|a, b| {
        a.slot_start_unix
            .cmp(&b.slot_start_unix)
            .then(a.key.cmp(&b.key))
    });
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
}

#[tokio::test]
async fn empty_history_answers_queries() {
    let dir = tempfile::tempdir().unwrap();
    let history = History::open(dir.path(), &extra_dims()).await.unwrap();
    let res = history
        .sql(
            "SELECT count(*), sketch_quantile(sketch, 0.99) FROM requests",
            10,
            LIMIT,
        )
        .await
        .unwrap();
    assert_eq!(
        res.rows,
        vec![vec![serde_json::json!(0), serde_json::Value::Null]]
    );
    assert!(history.load_since(0).await.unwrap().is_empty());
}

#[tokio::test]
async fn append_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset();
    let config = WriterConfig {
        max_buffered_rows: 3,
        ..WriterConfig::new(dir.path(), extra_dims())
    };
    let mut writer = HistoryWriter::new(config).unwrap();
    for row in &data.rows[..3] {
        writer.append(row.clone()).unwrap();
    }
    let err = writer.append(data.rows[3].clone()).unwrap_err();
    assert!(
        matches!(
            err,
            HistoryError::Full {
                max_buffered_rows: 3
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "history buffer is full (3 rows waiting for a flush)"
    );
    assert!(writer.append_all(data.rows[3..5].to_vec()).is_err());
    writer.flush().unwrap();
    writer.append_all(data.rows[3..6].to_vec()).unwrap();
    assert_eq!(writer.buffered(), 3);
}

#[tokio::test]
async fn bad_configuration_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    for dims in [
        vec!["service".to_string()],
        vec!["date".to_string()],
        vec!["a".into(), "a".into()],
    ] {
        let err = HistoryWriter::new(WriterConfig::new(dir.path(), dims.clone())).unwrap_err();
        assert!(matches!(err, HistoryError::Config(_)), "{dims:?}: {err}");
    }
}

#[tokio::test]
async fn invalid_sketch_bytes_fail_the_query() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = dataset().rows;
    rows.truncate(2);
    rows[1].sketch = vec![9, 9, 9];
    let mut writer = HistoryWriter::new(WriterConfig::new(dir.path(), extra_dims())).unwrap();
    writer.append_all(rows).unwrap();
    writer.flush().unwrap();
    let history = History::open(dir.path(), &extra_dims()).await.unwrap();
    let err = history
        .sql(
            "SELECT sketch_quantile(sketch, 0.5) FROM requests",
            10,
            LIMIT,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid sketch bytes"), "{err}");
    let err = history
        .sql(
            "SELECT sketch_quantile(sketch, 1.5) FROM requests",
            10,
            LIMIT,
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("q must be between 0 and 1"),
        "{err}"
    );
}

/// The test venv's Python, which has DuckDB: `SLOGATE_PYTHON`, else the venv `scripts/test`
/// creates. Missing, the test fails saying how to get it: these tests never skip.
fn python() -> String {
    if let Ok(p) = std::env::var("SLOGATE_PYTHON") {
        return p;
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let venv = format!("{home}/.cache/slogate-venv/bin/python");
    assert!(
        Path::new(&venv).exists(),
        "DuckDB's Python package is needed: run scripts/test (it creates {venv}) or set SLOGATE_PYTHON \
         to a python that has duckdb (pip install -r tests/python/requirements.txt)"
    );
    venv
}

/// Runs a Python `script` with `root` as its first argument in the test venv and parses the
/// JSON it prints. The script may `import duckdb` as its first import: a missing module fails
/// with what to do.
fn run_duckdb(script: &str, root: &Path) -> serde_json::Value {
    let python = python();
    let guard = r#"
import sys
try:
    import duckdb
except ImportError as e:
    print(f"duckdb is not importable: {e}", file=sys.stderr)
    sys.exit(3)
"#;
    let out = Command::new(&python)
        .arg("-c")
        .arg(format!("{guard}{script}"))
        .arg(root)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {python} (set SLOGATE_PYTHON to a python with duckdb): {e}")
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() != Some(3),
        "{python}: {stderr}\nset SLOGATE_PYTHON to a python that has duckdb (pip install -r tests/python/requirements.txt)"
    );
    assert!(out.status.success(), "duckdb query failed: {stderr}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// DuckDB (from the test venv) over `root/requests/**/*.parquet`:
/// [count, sum(requests), sum(errors), days, min(slot_start), regions].
fn duckdb_totals(root: &Path) -> Vec<u64> {
    let script = r#"
import json, sys, duckdb
glob = sys.argv[1] + "/requests/**/*.parquet"
row = duckdb.connect().execute(
    "SELECT count(*), sum(requests), sum(errors), count(DISTINCT date), epoch(min(slot_start))::BIGINT, "
    "count(DISTINCT region) "
    f"FROM read_parquet('{glob}', hive_partitioning = true)"
).fetchall()[0]
print(json.dumps([int(x) for x in row]))
"#;
    serde_json::from_value(run_duckdb(script, root)).unwrap()
}

/// DuckDB reads the same tree and agrees on counts and sums.
#[tokio::test]
async fn duckdb_reads_the_same_files() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _history) = written(dir.path()).await;
    // A stray temp file must not be picked up by the glob either.
    std::fs::write(
        dir.path()
            .join("requests/date=2025-11-24/hour=00/part-0-0.parquet.tmp"),
        b"x",
    )
    .unwrap();
    let got = duckdb_totals(dir.path());
    let want = vec![
        data.rows.len() as u64,
        data.rows.iter().map(|r| r.requests).sum(),
        data.rows.iter().map(|r| r.errors).sum(),
        2,
        DAY0 as u64,
        1,
    ];
    assert_eq!(
        got, want,
        "duckdb: [count, sum(requests), sum(errors), days, min(slot_start), regions]"
    );
}

#[tokio::test]
async fn document_tables_are_written_and_queryable() {
    let dir = tempfile::tempdir().unwrap();
    let at = DAY0 * 1000;
    let cases = [
        (
            DocTable::Verdicts,
            "checkout-canary",
            "pass",
            serde_json::json!({"gate": "checkout-canary", "verdict": "pass", "decision": "proceed"}),
        ),
        (
            DocTable::Verdicts,
            "checkout-canary",
            "fail",
            serde_json::json!({"gate": "checkout-canary", "verdict": "fail", "reasons": ["p99 up 40%"]}),
        ),
        (
            DocTable::Alerts,
            "checkout-availability",
            "firing",
            serde_json::json!({"rule": "checkout-availability", "state": "firing"}),
        ),
    ];
    for (i, (table, name, status, doc)) in cases.iter().enumerate() {
        let mut writer = DocWriter::new(dir.path(), *table, 10).unwrap();
        let row = DocRow {
            at_unix_ms: at + i as i64 * 3_600_000,
            name: name.to_string(),
            status: status.to_string(),
            doc: doc.clone(),
        };
        writer.append(row).unwrap();
        assert_eq!(writer.flush().unwrap().len(), 1);
    }
    let history = History::open(dir.path(), &extra_dims()).await.unwrap();
    let res = history
        .sql(
            "SELECT gate, verdict, hour, doc FROM verdicts ORDER BY at",
            10,
            LIMIT,
        )
        .await
        .unwrap();
    assert_eq!(res.columns, ["gate", "verdict", "hour", "doc"]);
    assert_eq!(res.rows.len(), 2);
    assert_eq!(res.rows[1][1], "fail");
    assert_eq!(res.rows[1][2], "01");
    let doc: serde_json::Value = serde_json::from_str(res.rows[1][3].as_str().unwrap()).unwrap();
    assert_eq!(doc, cases[1].3);
    let res = history
        .sql("SELECT rule, outcome, at FROM alerts", 10, LIMIT)
        .await
        .unwrap();
    assert_eq!(
        res.rows,
        vec![vec![
            serde_json::json!("checkout-availability"),
            serde_json::json!("firing"),
            serde_json::json!("2025-11-24T02:00:00Z")
        ]]
    );
}

#[tokio::test]
async fn files_flushed_after_open_are_seen_by_the_next_query() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset();
    let history = History::open(dir.path(), &extra_dims()).await.unwrap();
    let mut writer = HistoryWriter::new(WriterConfig::new(dir.path(), extra_dims())).unwrap();
    for (flushed, chunk) in data.rows.chunks(100).take(3).enumerate() {
        writer.append_all(chunk.to_vec()).unwrap();
        writer.flush().unwrap();
        let res = history
            .sql("SELECT count(*) FROM requests", 10, LIMIT)
            .await
            .unwrap();
        assert_eq!(as_u64(&res.rows[0][0]), 100 * (flushed as u64 + 1));
    }
}

#[test]
fn doc_batches_are_written_outside_the_writer_and_put_back_in_order_on_failure() {
    let doc = |i: i64| DocRow {
        at_unix_ms: 1_764_000_000_000 + i,
        name: "checkout".into(),
        status: "pass".into(),
        doc: serde_json::json!({"i": i}),
    };
    let order = |rows: &[DocRow]| {
        rows.iter()
            .map(|r| r.doc["i"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };

    // A root under a regular file cannot be created: every write fails.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"x").unwrap();
    let mut w = DocWriter::new(file.join("history"), DocTable::Verdicts, 10).unwrap();
    w.append(doc(0)).unwrap();
    w.append(doc(1)).unwrap();
    let batch = w.take();
    assert_eq!(batch.len(), 2);
    assert_eq!(w.buffered(), 0);
    // The writer takes appends while the batch is out.
    w.append(doc(2)).unwrap();
    let (_, rest) = batch.write().expect_err("the root cannot be created");
    w.restore(rest);
    let again = w.take();
    assert_eq!(order(again.rows()), [0, 1, 2]);
    w.restore(again.write().expect_err("still failing").1);
    assert_eq!(w.buffered(), 3);

    // On a good root the batch is written and what came meanwhile stays buffered.
    let dir = tempfile::tempdir().unwrap();
    let mut w = DocWriter::new(dir.path(), DocTable::Verdicts, 10).unwrap();
    w.append(doc(0)).unwrap();
    let batch = w.take();
    w.append(doc(1)).unwrap();
    assert_eq!(batch.write().unwrap().len(), 1);
    assert_eq!(w.buffered(), 1);
    assert_eq!(order(w.take().rows()), [1]);
}
