//! The `metrics` table: slots of every metric kind written with extras and attributes, read back
//! through DataFusion (values, attribute lookups, the sketch functions, the documented example
//! queries, a join with `requests`) on a local directory and on S3, compacted, scrubbed of a
//! corrupt file, and read by DuckDB.

use std::collections::BTreeMap;

use slogate_core::{MetricSlotRecord, SeriesKey, SlotRecord};
use slogate_history::{
    History, HistoryWriter, METRICS_TABLE, MetricWriter, Store, WriterConfig, batch_to_metric_rows,
};
use slogate_sketch::Sketch;

use super::s3::both;
use super::store::{blocking, maintenance};
use super::{LIMIT, Rng, as_u64, assert_within, exact_quantile_ms, extra_dims, run_duckdb};

/// 2025-11-24T16:00:00Z.
const T0: i64 = 1_764_000_000;
const HOURS: i64 = 2;
/// Two 10-second slots at the start of each hour.
const SLOTS: [i64; 2] = [0, 10];

/// What was written, with the histogram's raw values (sketch units) kept for exact quantiles.
struct Fixture {
    metrics: Vec<MetricSlotRecord>,
    requests: Vec<SlotRecord>,
    /// Every raw value of `http.server.request.duration`, as recorded in the sketches.
    durations: Vec<u64>,
}

fn record(
    slot: i64,
    metric: &str,
    unit: &str,
    kind: &str,
    attrs: &[(&str, &str)],
) -> MetricSlotRecord {
    MetricSlotRecord {
        slot_start_unix: slot,
        slot_seconds: 10,
        service: "checkout".into(),
        env: "prod".into(),
        version: "v2".into(),
        extras: vec!["eu-west-1".into()],
        instance: "pod-a".into(),
        metric: metric.into(),
        unit: unit.into(),
        kind: kind.into(),
        attributes: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        points: 0,
        min: 0.0,
        max: 0.0,
        last: 0.0,
        value_sum: 0.0,
        last_time_unix_nano: (slot as u64 + 9) * 1_000_000_000 + 123,
        increase: 0.0,
        hist_sum: 0.0,
        sketch: Vec::new(),
    }
}

/// A sketch of `n` pseudo-random durations around `base_s` seconds, recorded in nanoseconds as
/// the metric store records duration histograms (so `sketch_quantile` answers in milliseconds),
/// with their count and their sum in seconds.
fn durations(rng: &mut Rng, n: usize, base_s: f64, raw: &mut Vec<u64>) -> (Vec<u8>, f64, f64) {
    let mut sketch = Sketch::new();
    let mut sum = 0.0;
    for _ in 0..n {
        let s = base_s * (rng.unit() * 3.0).exp();
        let v = (s * 1e9) as u64;
        sketch.record(v);
        raw.push(v);
        sum += s;
    }
    (sketch.encoded(), n as f64, sum)
}

/// Per slot: two gauge streams (queue depth per queue), cache requests by result and CPU time
/// (sums), request durations (histogram), RPC durations (exponential histogram) and GC pauses
/// (summary); and 100 requests per slot in `requests`.
fn fixture() -> Fixture {
    let mut rng = Rng(7);
    let (mut metrics, mut requests, mut raw) = (Vec::new(), Vec::new(), Vec::new());
    for h in 0..HOURS {
        for dt in SLOTS {
            let slot = T0 + h * 3600 + dt;
            for (queue, depth) in [("jobs", 4.0), ("mail", 1.0)] {
                let mut r = record(slot, "queue.depth", "{item}", "gauge", &[("queue", queue)]);
                (r.points, r.min, r.max, r.last) = (3, depth - 1.0, depth + 5.0, depth);
                r.value_sum = 3.0 * depth + 4.0;
                metrics.push(r);
            }
            for (result, n) in [("hit", 90.0 - 20.0 * h as f64), ("miss", 10.0)] {
                let mut r = record(
                    slot,
                    "cache.requests",
                    "{request}",
                    "sum",
                    &[("cache", "carts"), ("result", result)],
                );
                (r.points, r.increase, r.last) = (2, n, 1000.0 + n);
                (r.min, r.max, r.value_sum) = (1000.0, 1000.0 + n, 2000.0 + n);
                metrics.push(r);
            }
            let mut r = record(
                slot,
                "process.cpu.time",
                "s",
                "sum",
                &[("cpu.mode", "user")],
            );
            (r.points, r.increase) = (1, 2.5);
            metrics.push(r);
            let mut r = record(
                slot,
                "http.server.request.duration",
                "s",
                "histogram",
                &[("http.route", "/cart")],
            );
            (r.sketch, r.increase, r.hist_sum) =
                durations(&mut rng, 200, 0.02 * (h + 1) as f64, &mut raw);
            r.points = 1;
            metrics.push(r);
            let mut r = record(
                slot,
                "rpc.client.duration",
                "ms",
                "exponential_histogram",
                &[],
            );
            (r.sketch, r.increase, r.hist_sum) = durations(&mut rng, 50, 0.003, &mut Vec::new());
            r.hist_sum *= 1e3;
            r.points = 1;
            metrics.push(r);
            let mut r = record(slot, "gc.pause", "ms", "summary", &[("gc", "young")]);
            (r.points, r.increase, r.hist_sum) = (1, 40.0, 12.5);
            metrics.push(r);
            requests.push(SlotRecord {
                slot_start_unix: slot,
                slot_seconds: 10,
                key: SeriesKey {
                    service: "checkout".into(),
                    env: "prod".into(),
                    version: "v2".into(),
                    operation: "GET /cart".into(),
                    extras: vec!["eu-west-1".into()],
                },
                requests: 100,
                errors: 1,
                latency_sum_ns: 100 * 20_000_000,
                latency_min_ns: 1_000_000,
                latency_max_ns: 90_000_000,
                sketch: Sketch::new().encoded(),
            });
        }
    }
    Fixture {
        metrics,
        requests,
        durations: raw,
    }
}

/// Writes both tables, the metrics in `flushes` flushes (each covering every hour).
fn write(store: &Store, f: &Fixture, flushes: usize) {
    let mut w = MetricWriter::new(WriterConfig::new(store, extra_dims())).unwrap();
    for k in 0..flushes {
        let rows: Vec<_> = (f.metrics.iter().enumerate())
            .filter(|(i, _)| i % flushes == k)
            .map(|(_, r)| r.clone())
            .collect();
        w.append_all(rows).unwrap();
        assert_eq!(w.flush().unwrap().len(), HOURS as usize);
        assert_eq!(w.buffered(), 0);
    }
    let mut w = HistoryWriter::new(WriterConfig::new(store, extra_dims())).unwrap();
    w.append_all(f.requests.clone()).unwrap();
    w.flush().unwrap();
}

fn sorted(mut rows: Vec<MetricSlotRecord>) -> Vec<MetricSlotRecord> {
    rows.sort_by(|a, b| {
        (a.slot_start_unix, &a.metric, &a.attributes).cmp(&(
            b.slot_start_unix,
            &b.metric,
            &b.attributes,
        ))
    });
    rows
}

/// Every row of the `metrics` table, read through the DataFusion session.
async fn read_back(history: &History) -> Vec<MetricSlotRecord> {
    let batches = history
        .context()
        .sql("SELECT * FROM metrics")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let rows = batches
        .iter()
        .flat_map(|b| batch_to_metric_rows(b, &extra_dims()).unwrap())
        .collect();
    sorted(rows)
}

async fn sql(history: &History, query: &str) -> Vec<Vec<serde_json::Value>> {
    history
        .sql(query, 1000, LIMIT)
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .rows
}

fn f64_of(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The example queries of the `metrics` table's documentation (docs/history.md), verbatim.
const HIT_RATIO: &str = "SELECT date_trunc('hour', slot_start) AS hour,
       sum(increase) FILTER (WHERE attributes['result'] = 'hit') / sum(increase) AS hit_ratio
FROM metrics
WHERE service = 'checkout' AND metric = 'cache.requests'
GROUP BY 1 ORDER BY 1";
const CPU_PER_REQUEST: &str = "WITH cpu AS (
  SELECT date_trunc('hour', slot_start) AS hour, sum(increase) AS cpu_s
  FROM metrics WHERE service = 'checkout' AND metric = 'process.cpu.time' GROUP BY 1
), traffic AS (
  SELECT date_trunc('hour', slot_start) AS hour, sum(requests) AS requests
  FROM requests WHERE service = 'checkout' GROUP BY 1
)
SELECT hour, cpu_s * 1000 / requests AS cpu_ms_per_request
FROM cpu JOIN traffic USING (hour) ORDER BY hour";
const P95: &str = "SELECT date_trunc('hour', slot_start) AS hour,
       sum(increase) AS requests,
       sum(hist_sum) / sum(increase) AS mean_s,
       sketch_quantile(sketch, 0.95) AS p95_ms
FROM metrics
WHERE service = 'checkout' AND metric = 'http.server.request.duration'
GROUP BY 1 ORDER BY 1";

/// Every kind round-trips exactly through Parquet and DataFusion, on a local directory and on
/// S3; attributes and extras are queryable; the documented queries give the expected answers;
/// `requests` and `metrics` live side by side in one session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_of_every_kind_read_back_and_answer_the_documented_queries() {
    let f = fixture();
    for make in both() {
        let root = make();
        let kind = root.kind;
        let (store, rows) = (root.store.clone(), fixture());
        blocking(move || write(&store, &rows, 1)).await;
        let history = History::open(&root.store, &extra_dims()).await.unwrap();

        assert_eq!(
            read_back(&history).await,
            sorted(f.metrics.clone()),
            "{kind}"
        );

        let kinds = sql(
            &history,
            "SELECT kind, count(*), sum(points) FROM metrics GROUP BY kind ORDER BY kind",
        )
        .await;
        let kinds: Vec<(String, u64, u64)> = kinds
            .iter()
            .map(|r| {
                (
                    r[0].as_str().unwrap().to_string(),
                    as_u64(&r[1]),
                    as_u64(&r[2]),
                )
            })
            .collect();
        let slots = HOURS as u64 * SLOTS.len() as u64;
        assert_eq!(
            kinds,
            [
                ("exponential_histogram".to_string(), slots, slots),
                ("gauge".to_string(), 2 * slots, 6 * slots),
                ("histogram".to_string(), slots, slots),
                ("sum".to_string(), 3 * slots, 5 * slots),
                ("summary".to_string(), slots, slots),
            ],
            "{kind}"
        );

        // The brief's query: increases per metric of one service.
        let per_metric = sql(
            &history,
            "SELECT metric, sum(increase) FROM metrics WHERE service = 'checkout' GROUP BY metric ORDER BY metric",
        )
        .await;
        let per_metric: BTreeMap<String, f64> = per_metric
            .iter()
            .map(|r| (r[0].as_str().unwrap().to_string(), f64_of(&r[1])))
            .collect();
        assert_eq!(
            per_metric["cache.requests"],
            2.0 * (90.0 + 70.0 + 20.0),
            "{kind}"
        );
        assert_eq!(per_metric["gc.pause"], 40.0 * slots as f64, "{kind}");
        assert_eq!(
            per_metric["http.server.request.duration"],
            200.0 * slots as f64,
            "{kind}"
        );

        // Attributes by key, extras and the partition columns like in `requests`.
        let jobs = sql(
            &history,
            "SELECT count(*), max(max), min(min), sum(value_sum) FROM metrics \
             WHERE attributes['queue'] = 'jobs' AND region = 'eu-west-1' AND hour = '16'",
        )
        .await;
        assert_eq!(jobs[0][0], 2, "{kind}");
        assert_eq!(
            (
                f64_of(&jobs[0][1]),
                f64_of(&jobs[0][2]),
                f64_of(&jobs[0][3])
            ),
            (9.0, 3.0, 32.0),
            "{kind}"
        );
        let none = sql(
            &history,
            "SELECT count(*) FROM metrics WHERE attributes['no.such.key'] = 'x'",
        )
        .await;
        assert_eq!(none[0][0], 0, "{kind}");
        let text = sql(
            &history,
            "SELECT attributes, last_time, slot_start FROM metrics WHERE metric = 'cache.requests' \
             ORDER BY slot_start, attributes['result'] LIMIT 1",
        )
        .await;
        assert_eq!(
            text[0],
            [
                serde_json::json!("{cache: carts, result: hit}"),
                serde_json::json!("2025-11-24T16:00:09.000000123Z"),
                serde_json::json!("2025-11-24T16:00:00Z")
            ],
            "{kind}"
        );

        // Cache hit ratio per hour: 90/100, then 70/80.
        let ratio = sql(&history, HIT_RATIO).await;
        assert_eq!(ratio.len(), 2, "{kind}");
        assert_eq!(ratio[0][0], "2025-11-24T16:00:00Z", "{kind}");
        assert!(
            (f64_of(&ratio[0][1]) - 0.9).abs() < 1e-12,
            "{kind}: {ratio:?}"
        );
        assert!(
            (f64_of(&ratio[1][1]) - 70.0 / 80.0).abs() < 1e-12,
            "{kind}: {ratio:?}"
        );

        // CPU per request, joining the two tables: 2 x 2.5 s over 2 x 100 requests an hour.
        let cpu = sql(&history, CPU_PER_REQUEST).await;
        assert_eq!(cpu.len(), 2, "{kind}");
        for row in &cpu {
            assert!((f64_of(&row[1]) - 25.0).abs() < 1e-9, "{kind}: {cpu:?}");
        }

        // p95 per hour from the histogram's merged sketches, against the exact nearest rank.
        let p95 = sql(&history, P95).await;
        let per_hour = f.durations.len() / HOURS as usize;
        for (h, row) in p95.iter().enumerate() {
            assert_eq!(f64_of(&row[1]), per_hour as f64, "{kind}");
            let raw = &f.durations[h * per_hour..(h + 1) * per_hour];
            let want = exact_quantile_ms(raw, 0.95);
            assert_within(
                f64_of(&row[3]),
                want,
                1.0 / 256.0,
                &format!("{kind}: p95 of hour {h}"),
            );
            let mean = raw.iter().sum::<u64>() as f64 / raw.len() as f64 / 1e9;
            assert_within(
                f64_of(&row[2]),
                mean,
                1e-6,
                &format!("{kind}: mean of hour {h}"),
            );
        }
        // Rows without a sketch (null) are skipped: a group of gauges has no percentile, and
        // the histogram's answer does not change when other kinds are in the input.
        let by_metric = sql(
            &history,
            "SELECT metric, sketch_quantile(sketch, 0.95), sketch_quantile_of(sketch_merge(sketch), 0.95) \
             FROM metrics GROUP BY metric ORDER BY metric",
        )
        .await;
        let by_metric: BTreeMap<&str, &Vec<serde_json::Value>> = by_metric
            .iter()
            .map(|r| (r[0].as_str().unwrap(), r))
            .collect();
        assert_eq!(
            by_metric["queue.depth"][1],
            serde_json::Value::Null,
            "{kind}"
        );
        assert_eq!(by_metric["gc.pause"][2], serde_json::Value::Null, "{kind}");
        let all = exact_quantile_ms(&f.durations, 0.95);
        let hist = &by_metric["http.server.request.duration"];
        assert_within(f64_of(&hist[1]), all, 1.0 / 256.0, kind);
        assert_eq!(hist[1], hist[2], "{kind}");
        assert!(f64_of(&by_metric["rpc.client.duration"][1]) > 0.0, "{kind}");

        // The requests table is untouched by the metrics next to it.
        let req = sql(&history, "SELECT count(*), sum(requests) FROM requests").await;
        assert_eq!(
            (as_u64(&req[0][0]), as_u64(&req[0][1])),
            (slots, 100 * slots),
            "{kind}"
        );
    }
}

/// Compaction covers `metrics`: each hour's files become one sorted file with the same rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_partitions_are_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(dir.path());
    let f = fixture();
    let (s, rows) = (store.clone(), fixture());
    blocking(move || write(&s, &rows, 3)).await;
    let files = |store: &Store| {
        store
            .list(METRICS_TABLE)
            .unwrap()
            .into_iter()
            .filter(|e| e.key.ends_with(".parquet"))
            .count()
    };
    assert_eq!(files(&store), 3 * HOURS as usize);
    let s = store.clone();
    let report = blocking(move || maintenance(&s).compact(T0 + 2 * 86_400).unwrap()).await;
    // Each metrics hour; requests has one file per hour already.
    assert_eq!(
        (report.partitions, report.files_in),
        (HOURS as usize, 3 * HOURS as usize)
    );
    assert_eq!(files(&store), HOURS as usize);
    let history = History::open(&store, &extra_dims()).await.unwrap();
    let rows = read_back(&history).await;
    assert_eq!(rows, sorted(f.metrics.clone()));
    // Sorted for pruning: service, metric, slot_start within the file.
    let order = sql(
        &history,
        "SELECT metric, slot_start FROM metrics WHERE hour = '16'",
    )
    .await;
    let keys: Vec<(String, String)> = order
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_string(),
                r[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut want = keys.clone();
    want.sort();
    assert_eq!(keys, want);
}

/// A damaged metrics file fails SQL over its partition until a scrub moves it to the
/// quarantine; then the rest of `metrics`, and `requests`, answer as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_metrics_file_is_quarantined_and_the_rest_still_answers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(dir.path());
    let f = fixture();
    let (s, rows) = (store.clone(), fixture());
    blocking(move || write(&s, &rows, 1)).await;
    let key = store
        .list("metrics/date=2025-11-24/hour=17")
        .unwrap()
        .remove(0)
        .key;
    let mut bytes = store.get(&key).unwrap().unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x10;
    store.put(&key, bytes).unwrap();

    let s = store.clone();
    let report = blocking(move || maintenance(&s).scrub(None).unwrap()).await;
    // Two metrics files and two requests files read; the damaged one moved aside.
    assert_eq!((report.files, report.quarantined), (4, 1));
    assert_eq!(store.quarantined_files(), 1);
    assert!(store.get(&format!("quarantine/{key}")).unwrap().is_some());

    let history = History::open(&store, &extra_dims()).await.unwrap();
    let want: Vec<_> = f
        .metrics
        .iter()
        .filter(|r| r.slot_start_unix < T0 + 3600)
        .cloned()
        .collect();
    assert_eq!(read_back(&history).await, sorted(want));
    let req = sql(&history, "SELECT count(*) FROM requests").await;
    assert_eq!(as_u64(&req[0][0]), f.requests.len() as u64);
}

/// DuckDB reads the metrics tree with its partitions, the attributes map and the nullable
/// sketch, and agrees with what was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_reads_the_metrics_table() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(dir.path());
    let f = fixture();
    let (s, rows) = (store.clone(), fixture());
    blocking(move || write(&s, &rows, 2)).await;
    let script = r#"
import json, sys, duckdb
glob = sys.argv[1] + "/metrics/**/*.parquet"
con = duckdb.connect()
con.execute(f"CREATE VIEW metrics AS SELECT * FROM read_parquet('{glob}', hive_partitioning = true)")
one = lambda q: con.execute(q).fetchall()[0]
out = {
    "totals": [float(x) for x in one("SELECT count(*), sum(points), sum(increase), sum(hist_sum) FROM metrics")],
    "types": dict(con.execute(
        "SELECT column_name, column_type FROM (DESCRIBE metrics) "
        "WHERE column_name IN ('attributes', 'slot_start', 'last_time', 'sketch', 'region', 'points')"
    ).fetchall()),
    "jobs": [float(x) for x in one(
        "SELECT count(*), sum(value_sum) FROM metrics WHERE attributes['queue'] = 'jobs' AND region = 'eu-west-1'"
    )],
    "hit_ratio": [float(x) for x in one(
        "SELECT sum(increase) FILTER (WHERE attributes['result'] = 'hit') / sum(increase) "
        "FROM metrics WHERE metric = 'cache.requests' AND hour = '16'"
    )],
    "first": [str(x) for x in one(
        "SELECT epoch(min(slot_start))::BIGINT, epoch_ns(min(last_time)), count(sketch), count(DISTINCT date) FROM metrics"
    )],
    "kinds": [r[0] for r in con.execute("SELECT DISTINCT kind FROM metrics ORDER BY 1").fetchall()],
}
print(json.dumps(out))
"#;
    let got = run_duckdb(script, dir.path());
    let sum = |g: fn(&MetricSlotRecord) -> f64| f.metrics.iter().map(g).sum::<f64>();
    let totals: Vec<f64> = serde_json::from_value(got["totals"].clone()).unwrap();
    assert_eq!(totals[0] as usize, f.metrics.len());
    assert_eq!(totals[1], sum(|r| r.points as f64));
    assert_within(totals[2], sum(|r| r.increase), 1e-12, "sum(increase)");
    assert_within(totals[3], sum(|r| r.hist_sum), 1e-12, "sum(hist_sum)");
    assert_eq!(
        got["types"],
        serde_json::json!({
            "attributes": "MAP(VARCHAR, VARCHAR)",
            "slot_start": "TIMESTAMP WITH TIME ZONE",
            "last_time": "TIMESTAMPTZ_NS",
            "sketch": "BLOB",
            "region": "VARCHAR",
            "points": "UBIGINT",
        })
    );
    let jobs_sum: f64 = f
        .metrics
        .iter()
        .filter(|r| {
            r.attributes
                .iter()
                .any(|(k, v)| k == "queue" && v == "jobs")
        })
        .map(|r| r.value_sum)
        .sum();
    assert_eq!(
        got["jobs"],
        serde_json::json!([2.0 * HOURS as f64, jobs_sum])
    );
    assert_eq!(got["hit_ratio"], serde_json::json!([0.9]));
    let histograms = f.metrics.iter().filter(|r| !r.sketch.is_empty()).count();
    assert_eq!(
        got["first"],
        serde_json::json!([
            T0.to_string(),
            ((T0 as u64 + 9) * 1_000_000_000 + 123).to_string(),
            histograms.to_string(),
            "1"
        ])
    );
    assert_eq!(
        got["kinds"],
        serde_json::json!([
            "exponential_histogram",
            "gauge",
            "histogram",
            "sum",
            "summary"
        ])
    );
}
