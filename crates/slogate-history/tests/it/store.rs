//! The same history checks on a local directory and on a real S3-compatible server: counts,
//! sketch-exact percentiles and the restart reload; compaction and retention, with a crash
//! injected between each of their steps; and queries running through a compaction.

use std::collections::BTreeMap;

use slogate_core::SlotRecord;
use slogate_history::{
    CrashPoint, DocRow, DocTable, DocWriter, History, HistoryError, HistoryWriter, Maintenance,
    MaintenanceConfig, Store, WriterConfig,
};

use super::s3::{Root, both};
use super::{
    DAY, DAY0, Dataset, LIMIT, as_u64, assert_within, dataset, exact_quantile_ms, extra_dims,
};

/// Writes the dataset in `flushes` flushes per day, so every hour partition gets that many files.
pub(crate) fn write(store: &Store, data: &Dataset, flushes: usize) {
    let mut writer = HistoryWriter::new(WriterConfig::new(store, extra_dims())).unwrap();
    for day in 0..2 {
        let rows: Vec<SlotRecord> = data
            .rows
            .iter()
            .filter(|r| (r.slot_start_unix - DAY0) / DAY == day)
            .cloned()
            .collect();
        let per = rows.len().div_ceil(flushes);
        for chunk in rows.chunks(per) {
            // Every chunk spans the whole day, so each flush writes into all 24 partitions.
            let mut chunk = chunk.to_vec();
            chunk.sort_by_key(|r| r.slot_start_unix);
            writer.append_all(chunk).unwrap();
            writer.flush().unwrap();
        }
    }
}

/// Interleaves the rows so that each of `flushes` chunks covers every hour.
pub(crate) fn interleaved(data: &Dataset, flushes: usize) -> Dataset {
    let mut rows = Vec::new();
    let mut raw = Vec::new();
    for k in 0..flushes {
        for (i, (r, x)) in data.rows.iter().zip(&data.raw_by_row).enumerate() {
            if i % flushes == k {
                rows.push(r.clone());
                raw.push(x.clone());
            }
        }
    }
    Dataset {
        rows,
        raw_by_service_day: data.raw_by_service_day.clone(),
        raw_by_row: raw,
    }
}

pub(crate) fn maintenance(store: &Store) -> Maintenance {
    Maintenance::new(store, MaintenanceConfig::new(extra_dims())).unwrap()
}

pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// (rows, sum(requests), sum(errors)) through SQL.
pub(crate) async fn totals(history: &History) -> (u64, u64, u64) {
    let res = history
        .sql(
            "SELECT count(*), sum(requests), sum(errors) FROM requests",
            10,
            LIMIT,
        )
        .await
        .unwrap();
    let r = &res.rows[0];
    (
        as_u64(&r[0]),
        r[1].as_u64().unwrap_or(0),
        r[2].as_u64().unwrap_or(0),
    )
}

pub(crate) fn want_totals(rows: &[SlotRecord]) -> (u64, u64, u64) {
    (
        rows.len() as u64,
        rows.iter().map(|r| r.requests).sum(),
        rows.iter().map(|r| r.errors).sum(),
    )
}

/// Parquet files per (table-relative) partition directory.
fn files_per_partition(store: &Store, table: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in store.list(table).unwrap() {
        if e.key.ends_with(".parquet") {
            let dir = e.key.rsplit_once('/').unwrap().0.to_string();
            *out.entry(dir).or_default() += 1;
        }
    }
    out
}

async fn check_everything_reads_back(store: &Store, data: &Dataset, what: &str) {
    let history = History::open(store, &extra_dims()).await.unwrap();
    assert_eq!(
        totals(&history).await,
        want_totals(&data.rows),
        "{what}: totals"
    );
    for (day, date) in [(0, "2025-11-24"), (1, "2025-11-25")] {
        let q = format!(
            "SELECT service, sketch_quantile(sketch, 0.99) FROM requests WHERE date = '{date}' \
             GROUP BY service ORDER BY service"
        );
        let res = history.sql(&q, 100, LIMIT).await.unwrap();
        assert_eq!(res.rows.len(), 3, "{what}");
        for row in &res.rows {
            let service = row[0].as_str().unwrap();
            let raw = &data.raw_by_service_day[&(service.to_string(), day)];
            assert_within(
                row[1].as_f64().unwrap(),
                exact_quantile_ms(raw, 0.99),
                0.01,
                &format!("{what}: {service} {date} p99"),
            );
        }
    }
    // The restart reload returns exactly what was written, in order.
    let since = DAY0 + DAY + 20 * 3600;
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
    assert_eq!(
        history.load_since(since).await.unwrap(),
        want,
        "{what}: load_since"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_api_puts_atomically_lists_and_deletes() {
    for make in both() {
        let root = make();
        let s = root.store.clone();
        let kind = root.kind;
        blocking(move || {
            assert_eq!(s.get("baselines/a.json").unwrap(), None, "{kind}");
            s.put("baselines/a.json", b"{\"a\":1}".to_vec()).unwrap();
            s.put("baselines/deep/b.json", b"b".to_vec()).unwrap();
            s.put("other/c", b"c".to_vec()).unwrap();
            assert_eq!(
                s.get("baselines/a.json").unwrap().as_deref(),
                Some(&b"{\"a\":1}"[..])
            );
            let keys: Vec<(String, u64)> = s
                .list("baselines")
                .unwrap()
                .into_iter()
                .map(|e| (e.key, e.size))
                .collect();
            assert_eq!(
                keys,
                [
                    ("baselines/a.json".to_string(), 7),
                    ("baselines/deep/b.json".to_string(), 1)
                ],
                "{kind}"
            );
            s.delete("baselines/a.json").unwrap();
            s.delete("baselines/a.json").unwrap(); // idempotent
            assert_eq!(s.get("baselines/a.json").unwrap(), None);
            assert_eq!(s.list("baselines").unwrap().len(), 1);
            assert!(s.list("nothing-here").unwrap().is_empty());
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_percentiles_and_reload_on_both_stores() {
    let data = dataset();
    for make in both() {
        let root = make();
        let (s, d) = (root.store.clone(), interleaved(&data, 1));
        blocking(move || write(&s, &d, 1)).await;
        check_everything_reads_back(&root.store, &data, root.kind).await;
        // A restarted process, with a store of its own, reads the same.
        check_everything_reads_back(&root.reopen(), &data, root.kind).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_merges_each_closed_hour_into_one_sorted_file() {
    let data = dataset();
    for make in both() {
        let root = make();
        let kind = root.kind;
        let (s, d) = (root.store.clone(), interleaved(&data, 3));
        blocking(move || write(&s, &d, 3)).await;
        let before = files_per_partition(&root.store, "requests");
        assert_eq!(before.len(), 48, "{kind}");
        assert!(before.values().all(|&n| n == 3), "{kind}: {before:?}");

        // At 12:30 on day 1 with the default 10 minutes: day 0 and 00..11 of day 1 are closed.
        let now = DAY0 + DAY + 12 * 3600 + 1800;
        let s = root.store.clone();
        let report = blocking(move || maintenance(&s).compact(now))
            .await
            .unwrap();
        assert_eq!(report.partitions, 36, "{kind}: {report:?}");
        assert_eq!(report.files_in, 108, "{kind}");
        let after = files_per_partition(&root.store, "requests");
        for (dir, n) in &after {
            let open = dir.ends_with("date=2025-11-25/hour=12")
                || dir.as_str() > "requests/date=2025-11-25/hour=12";
            assert_eq!(*n, if open { 3 } else { 1 }, "{kind}: {dir}");
        }
        assert!(
            root.store
                .list("requests")
                .unwrap()
                .iter()
                .all(|e| !e.key.ends_with(".json"))
        );
        check_everything_reads_back(&root.store, &data, kind).await;

        // The merged file is sorted by service, operation, slot_start and names its inputs.
        let key = root
            .store
            .list("requests/date=2025-11-24/hour=05")
            .unwrap()
            .remove(0)
            .key;
        assert!(key.contains("/compact-"), "{key}");
        let s = root.store.clone();
        let bytes = blocking(move || s.get(&key).unwrap().unwrap()).await;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(bytes),
        )
        .unwrap();
        let from = reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| {
                kv.iter()
                    .find(|k| k.key == "slogate.compacted_from")
                    .cloned()
            })
            .and_then(|k| k.value)
            .unwrap();
        assert_eq!(serde_json::from_str::<Vec<String>>(&from).unwrap().len(), 3);
        let rows: Vec<SlotRecord> = reader
            .build()
            .unwrap()
            .flat_map(|b| slogate_history::batch_to_rows(&b.unwrap(), &extra_dims()).unwrap())
            .collect();
        let keys: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.key.service.clone(),
                    r.key.operation.clone(),
                    r.slot_start_unix,
                )
            })
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "{kind}: sorted for pruning");

        // A second pass has nothing to do.
        let s = root.store.clone();
        let again = blocking(move || maintenance(&s).compact(now))
            .await
            .unwrap();
        assert_eq!(again.partitions, 0, "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_any_two_compaction_steps_loses_and_doubles_nothing() {
    let data = dataset();
    let want = want_totals(&data.rows);
    let now = DAY0 + 3 * DAY;
    let points = [
        CrashPoint::AfterManifest,
        CrashPoint::AfterOutput,
        CrashPoint::AfterFirstInputDeleted,
        CrashPoint::AfterInputsDeleted,
    ];
    for make in both() {
        for point in points {
            let root = make();
            let what = format!("{} {point:?}", root.kind);
            let (s, d) = (root.store.clone(), interleaved(&data, 2));
            blocking(move || write(&s, &d, 2)).await;
            let s = root.store.clone();
            let err = blocking(move || {
                let mut m = maintenance(&s);
                m.set_crash_point(Some(point));
                m.compact(now)
            })
            .await
            .unwrap_err();
            assert!(
                matches!(err, HistoryError::Injected(p) if p == point),
                "{what}: {err}"
            );

            // Restart: a new store and maintenance, recovery first, then queries.
            let store = root.reopen();
            let s = store.clone();
            let repaired = blocking(move || maintenance(&s).recover(true))
                .await
                .unwrap();
            assert_eq!(repaired.manifests(), 1, "{what}: one manifest to repair");
            let history = History::open(&store, &extra_dims()).await.unwrap();
            assert_eq!(totals(&history).await, want, "{what}: after recovery");
            let files = files_per_partition(&store, "requests");
            let first = &files["requests/date=2025-11-24/hour=00"];
            let rolled_forward = !matches!(point, CrashPoint::AfterManifest);
            assert_eq!(
                (repaired.rolled_forward, repaired.rolled_back),
                if rolled_forward { (1, 0) } else { (0, 1) },
                "{what}"
            );
            assert_eq!(*first, if rolled_forward { 1 } else { 2 }, "{what}");

            // The next pass finishes the job.
            let s = store.clone();
            let report = blocking(move || maintenance(&s).run_once(now))
                .await
                .unwrap()
                .1;
            assert_eq!(
                report.partitions,
                if rolled_forward { 47 } else { 48 },
                "{what}"
            );
            assert!(
                files_per_partition(&store, "requests")
                    .values()
                    .all(|&n| n == 1),
                "{what}"
            );
            check_everything_reads_back(&store, &data, &what).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_during_compaction_never_see_a_file_twice() {
    let data = dataset();
    let want = want_totals(&data.rows);
    for make in both() {
        let root = make();
        let (s, d) = (root.store.clone(), interleaved(&data, 4));
        blocking(move || write(&s, &d, 4)).await;
        let history = History::open(&root.store, &extra_dims()).await.unwrap();
        let s = root.store.clone();
        let compaction =
            tokio::task::spawn_blocking(move || maintenance(&s).compact(DAY0 + 3 * DAY));
        let mut seen = 0;
        while !compaction.is_finished() {
            assert_eq!(
                totals(&history).await,
                want,
                "{}: query {seen} during compaction",
                root.kind
            );
            seen += 1;
        }
        assert_eq!(compaction.await.unwrap().unwrap().partitions, 48);
        assert!(
            seen > 0,
            "{}: no query ran during the compaction",
            root.kind
        );
        assert_eq!(totals(&history).await, want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_expired_partitions_and_survives_a_crash() {
    let data = dataset();
    for make in both() {
        let root = make();
        let kind = root.kind;
        let (s, d) = (root.store.clone(), interleaved(&data, 2));
        blocking(move || write(&s, &d, 2)).await;
        let s = root.store.clone();
        blocking(move || {
            let mut w = DocWriter::new(&s, DocTable::Verdicts, 10).unwrap();
            for (i, at) in [DAY0, DAY0 + DAY + 23 * 3600].into_iter().enumerate() {
                let doc = serde_json::json!({"i": i});
                w.append(DocRow {
                    at_unix_ms: at * 1000,
                    name: "g".into(),
                    status: "pass".into(),
                    doc,
                })
                .unwrap();
            }
            w.flush().unwrap();
        })
        .await;
        // One day of retention at 01:30 on day 2: everything before 01:00 on day 1 expires
        // (an hour is deleted once all of it is past retention).
        let now = DAY0 + 2 * DAY + 5400;
        let config = MaintenanceConfig {
            retention: Some(std::time::Duration::from_secs(86_400)),
            ..MaintenanceConfig::new(extra_dims())
        };
        let (s, c) = (root.store.clone(), config.clone());
        let err = blocking(move || {
            let mut m = Maintenance::new(&s, c).unwrap();
            m.set_crash_point(Some(CrashPoint::AfterFirstExpiredFile));
            m.retain(now)
        })
        .await
        .unwrap_err();
        assert!(matches!(err, HistoryError::Injected(_)), "{kind}: {err}");
        let (s, c) = (root.store.clone(), config.clone());
        let report = blocking(move || Maintenance::new(&s, c).unwrap().run_once(now))
            .await
            .unwrap()
            .0;
        assert_eq!(
            report.partitions, 26,
            "{kind}: requests 24 + 1 (the first half done by the crash), verdicts 1"
        );
        let history = History::open(&root.store, &extra_dims()).await.unwrap();
        let kept: Vec<SlotRecord> = data
            .rows
            .iter()
            .filter(|r| r.slot_start_unix >= DAY0 + DAY + 3600)
            .cloned()
            .collect();
        assert_eq!(totals(&history).await, want_totals(&kept), "{kind}");
        let res = history
            .sql("SELECT doc FROM verdicts", 10, LIMIT)
            .await
            .unwrap();
        assert_eq!(
            res.rows,
            vec![vec![serde_json::json!("{\"i\":1}")]],
            "{kind}"
        );
        let s = root.store.clone();
        let again = blocking(move || Maintenance::new(&s, config).unwrap().retain(now))
            .await
            .unwrap();
        assert_eq!(again.partitions, 0, "{kind}");
        if let Some(dir) = root.local_dir() {
            assert!(
                !dir.join("requests/date=2025-11-24").exists(),
                "empty partition directories go too"
            );
        }
    }
}

/// DuckDB reads the compacted tree (local) and agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_reads_the_compacted_files() {
    let data = dataset();
    let root = Root::local();
    let (s, d) = (root.store.clone(), interleaved(&data, 3));
    blocking(move || write(&s, &d, 3)).await;
    let s = root.store.clone();
    blocking(move || maintenance(&s).compact(DAY0 + 3 * DAY))
        .await
        .unwrap();
    let got = super::duckdb_totals(root.local_dir().unwrap());
    let (n, requests, errors) = want_totals(&data.rows);
    assert_eq!(
        &got[..3],
        &[n, requests, errors],
        "duckdb: [count, sum(requests), sum(errors)]"
    );
}
