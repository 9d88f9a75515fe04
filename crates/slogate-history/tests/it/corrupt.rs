//! Corrupt history files, on a local directory and on S3: a truncated file and a bit-flipped
//! one in the reload range, and one outside it. The reload skips, names, quarantines and counts
//! them and loads every other row; no query panics on them; compaction and a scrub quarantine
//! what they meet too, and SQL over the whole history works again afterwards. Damaged files of
//! the document tables are found by a scrub of those tables (what a start runs before reading
//! the verdict log and the alert states back) and cost only their own documents.

use std::collections::BTreeSet;

use slogate_core::{SeriesKey, SlotRecord};
use slogate_history::{DocRow, DocTable, DocWriter, History, QUARANTINE_DIR, Store, batch_to_rows};

use super::s3::both;
use super::store::{blocking, interleaved, maintenance, totals, want_totals, write};
use super::{DAY, DAY0, LIMIT, dataset, extra_dims};

/// The rows a file holds, read before it is damaged.
fn rows_of(store: &Store, key: &str) -> Vec<SlotRecord> {
    let bytes = store.get(key).unwrap().unwrap();
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(
        bytes,
    ))
    .unwrap()
    .build()
    .unwrap()
    .flat_map(|b| batch_to_rows(&b.unwrap(), &extra_dims()).unwrap())
    .collect()
}

fn parquet_keys(store: &Store, under: &str) -> Vec<String> {
    store
        .list(under)
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .filter(|k| k.ends_with(".parquet"))
        .collect()
}

#[derive(Clone, Copy, Debug)]
enum Damage {
    /// The first half of the file only, as a crash in a non-atomic copy leaves it.
    Truncate,
    /// One bit flipped in the middle of the data pages, as a bad disk or bus does: the file still
    /// decodes (or not), only its checksum is certain to tell.
    FlipBit,
}

fn damage(store: &Store, key: &str, how: Damage) -> Vec<u8> {
    let mut bytes = store.get(key).unwrap().unwrap();
    match how {
        Damage::Truncate => bytes.truncate(bytes.len() / 2),
        Damage::FlipBit => {
            let at = bytes.len() / 3;
            bytes[at] ^= 0x10;
        }
    }
    store.put(key, bytes.clone()).unwrap();
    bytes
}

/// Each file is gone from its table and under quarantine/ with the same key, byte for byte.
async fn assert_quarantined(store: &Store, files: Vec<(String, Vec<u8>)>) {
    let s = store.clone();
    blocking(move || {
        for (key, bytes) in &files {
            assert_eq!(s.get(key).unwrap(), None, "{key}");
            assert_eq!(
                s.get(&format!("{QUARANTINE_DIR}/{key}")).unwrap().as_ref(),
                Some(bytes),
                "{key}"
            );
        }
    })
    .await;
}

fn sort(mut rows: Vec<SlotRecord>) -> Vec<SlotRecord> {
    rows.sort_by(|a, b| {
        a.slot_start_unix
            .cmp(&b.slot_start_unix)
            .then_with(|| a.key.cmp(&b.key))
    });
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_files_are_quarantined_and_the_rest_is_reloaded() {
    let data = dataset();
    let since = DAY0 + DAY + 20 * 3600;
    for make in both() {
        let root = make();
        let kind = root.kind;
        let (s, d) = (root.store.clone(), interleaved(&data, 2));
        blocking(move || write(&s, &d, 2)).await;

        // Two files in the reload range (day 1, 21:00 and 22:00) and one outside it (day 0).
        let store = root.store.clone();
        let (victims, lost, all) = blocking(move || {
            let pick = |dir: &str| parquet_keys(&store, dir).remove(0);
            let victims = [
                (pick("requests/date=2025-11-25/hour=21"), Damage::Truncate),
                (pick("requests/date=2025-11-25/hour=22"), Damage::FlipBit),
                (pick("requests/date=2025-11-24/hour=03"), Damage::Truncate),
            ];
            let mut lost: BTreeSet<(i64, SeriesKey)> = BTreeSet::new();
            for (key, _) in &victims[..2] {
                for r in rows_of(&store, key) {
                    lost.insert((r.slot_start_unix, r.key));
                }
            }
            let mut all = Vec::new();
            for key in parquet_keys(&store, "requests") {
                all.extend(rows_of(&store, &key));
            }
            let damaged: Vec<_> = victims
                .iter()
                .map(|(key, how)| (key.clone(), damage(&store, key, *how)))
                .collect();
            (damaged, lost, all)
        })
        .await;
        assert!(!lost.is_empty(), "{kind}");

        // A restart: a new store. Before any reload, SQL over the damaged files does not panic
        // (an error is fine), and neither do the range queries.
        let store = root.reopen();
        let history = History::open(&store, &extra_dims()).await.unwrap();
        for q in [
            "SELECT count(*), sum(requests) FROM requests",
            "SELECT service, sketch_quantile(sketch, 0.99) FROM requests GROUP BY service",
            "SELECT * FROM requests WHERE date = '2025-11-25' AND hour = '22'",
        ] {
            let _ = history.sql(q, 10, LIMIT).await;
        }
        let checkout = [("service".to_string(), "checkout".to_string())];
        let _ =
            slogate_history::operation_totals(&history, &checkout, (DAY0, DAY0 + 2 * DAY)).await;
        let _ =
            slogate_history::slot_counts(&history, &checkout, (DAY0, DAY0 + 2 * DAY), 10_000).await;

        // The reload: every row of the intact files, none of the two damaged ones.
        let reloaded = history.load_since(since).await.unwrap();
        let want = sort(
            all.iter()
                .filter(|r| r.slot_start_unix >= since)
                .filter(|r| !lost.contains(&(r.slot_start_unix, r.key.clone())))
                .cloned()
                .collect(),
        );
        assert!(reloaded.len() < all.iter().filter(|r| r.slot_start_unix >= since).count());
        assert_eq!(reloaded, want, "{kind}: the intact files reload whole");
        assert_eq!(store.quarantined_files(), 2, "{kind}");
        assert_eq!(history.quarantined_files(), 2, "{kind}");

        // Moved, byte for byte, under quarantine/ with the same key; gone from the table.
        assert_quarantined(&store, victims[..2].to_vec()).await;

        // A second reload finds nothing more to move.
        assert_eq!(history.load_since(since).await.unwrap(), want, "{kind}");
        assert_eq!(store.quarantined_files(), 2, "{kind}");

        // The damaged file outside the reload range is found by a scrub of the whole history;
        // then SQL over everything answers again, with the rows of the intact files.
        let s = store.clone();
        let report = blocking(move || maintenance(&s).scrub(None)).await.unwrap();
        assert_eq!(report.quarantined, 1, "{kind}: {report:?}");
        assert_eq!(store.quarantined_files(), 3, "{kind}");
        let s = store.clone();
        let intact: Vec<SlotRecord> = blocking(move || {
            parquet_keys(&s, "requests")
                .iter()
                .flat_map(|k| rows_of(&s, k))
                .collect()
        })
        .await;
        assert_eq!(totals(&history).await, want_totals(&intact), "{kind}");
        let s = store.clone();
        let again = blocking(move || maintenance(&s).scrub(None)).await.unwrap();
        assert_eq!(again.quarantined, 0, "{kind}");
        assert_eq!(again.files, report.files - 1, "{kind}");
    }
}

/// Compaction meets a damaged input: it moves it aside and compacts the rest on its next pass,
/// instead of failing every pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_quarantines_a_damaged_input() {
    let data = dataset();
    for make in both() {
        let root = make();
        let kind = root.kind;
        let (s, d) = (root.store.clone(), interleaved(&data, 3));
        blocking(move || write(&s, &d, 3)).await;
        let s = root.store.clone();
        let now = DAY0 + 3 * DAY;
        let (first, second) = blocking(move || {
            let key = parquet_keys(&s, "requests/date=2025-11-24/hour=07").remove(1);
            damage(&s, &key, Damage::FlipBit);
            let m = maintenance(&s);
            (m.compact(now).unwrap(), m.compact(now).unwrap())
        })
        .await;
        assert_eq!(first.partitions, 47, "{kind}: {first:?}");
        assert_eq!(second.partitions, 1, "{kind}: {second:?}");
        assert_eq!(root.store.quarantined_files(), 1, "{kind}");
        let s = root.store.clone();
        let left = blocking(move || parquet_keys(&s, "requests/date=2025-11-24/hour=07")).await;
        assert_eq!(left.len(), 1, "{kind}: {left:?}");
    }
}

/// One truncated `verdicts` file and one bit-flipped `alerts` file among intact ones: the scrub
/// of the document tables moves exactly those two aside (byte for byte, under `quarantine/`),
/// counts them, and SQL reads every document of the other files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_document_files_are_quarantined_and_the_rest_is_read() {
    for make in both() {
        let root = make();
        let kind = root.kind;
        let s = root.store.clone();
        // Three files per table, one document each, an hour apart; the middle one is damaged.
        let victims = blocking(move || {
            let mut victims = Vec::new();
            for (table, how) in DocTable::ALL
                .into_iter()
                .zip([Damage::Truncate, Damage::FlipBit])
            {
                let mut keys = Vec::new();
                for i in 0..3i64 {
                    let mut w = DocWriter::new(&s, table, 10).unwrap();
                    w.append(DocRow {
                        at_unix_ms: (DAY0 + i * 3600) * 1000,
                        name: "checkout".into(),
                        status: format!("s{i}"),
                        doc: serde_json::json!({ "n": i }),
                    })
                    .unwrap();
                    keys.extend(w.flush().unwrap());
                }
                let bytes = damage(&s, &keys[1], how);
                victims.push((keys[1].clone(), bytes));
            }
            victims
        })
        .await;

        let store = root.reopen();
        let s = store.clone();
        let tables = DocTable::ALL.map(DocTable::name);
        let report = blocking(move || maintenance(&s).scrub_tables(&tables, None))
            .await
            .unwrap();
        assert_eq!((report.files, report.quarantined), (6, 2), "{kind}");
        assert_eq!(store.quarantined_files(), 2, "{kind}");
        assert_quarantined(&store, victims).await;

        let history = History::open(&store, &extra_dims()).await.unwrap();
        for table in DocTable::ALL {
            let q = format!(
                "SELECT {}, doc FROM {} ORDER BY at",
                table.columns().1,
                table.name()
            );
            let res = history.sql(&q, 10, LIMIT).await.unwrap();
            assert_eq!(
                res.rows,
                [0, 2].map(|i| vec![
                    serde_json::json!(format!("s{i}")),
                    serde_json::json!(format!("{{\"n\":{i}}}"))
                ]),
                "{kind}: {}",
                table.name()
            );
        }
        let s = store.clone();
        let again = blocking(move || maintenance(&s).scrub_tables(&tables, None))
            .await
            .unwrap();
        assert_eq!((again.files, again.quarantined), (4, 0), "{kind}");
    }
}
