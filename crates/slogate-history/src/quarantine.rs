//! Unreadable history files: how they are found (the checksum in the file name, then a full
//! decode) and moved aside, so that one bad file costs its own rows and nothing else.
//!
//! Parquet has no checksum that the writer here fills in (page CRCs are optional and arrow-rs
//! writes none), so a flipped bit can decode into wrong rows without any error: in a compressed
//! page, or in the footer (a row count, a column's type). Every file slogate writes therefore
//! carries the CRC-32 of all its bytes in its name, `<stem>.crc<8 hex digits>.parquet`
//! ([`checked_name`]): [`read_checked`] verifies it when the name has one (files written before
//! it are only decoded) and decodes every page, with panics in the decoder caught (the Parquet
//! decoder does panic on some corrupt pages).
//!
//! A file that fails is moved to `<root>/quarantine/<its key>` by [`Store::quarantine`],
//! logged with its key and the reason, and counted ([`Store::quarantined_files`]). Nothing
//! lists `quarantine/` as a table, so SQL, the reload and compaction no longer see it; an
//! operator can inspect it and move it back.
//!
//! [`Store::quarantine`]: crate::Store::quarantine
//! [`Store::quarantined_files`]: crate::Store::quarantined_files

use crate::arrow::array::RecordBatch;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Directory under the root that unreadable files are moved into, keeping their keys.
pub const QUARANTINE_DIR: &str = "quarantine";

/// The file name for `bytes`: `<stem>.crc<crc32 of bytes>.parquet`.
pub(crate) fn checked_name(stem: &str, bytes: &[u8]) -> String {
    format!("{stem}.crc{:08x}.parquet", crc32(bytes))
}

/// The CRC-32 a file name records, if it has one.
fn recorded_crc(key: &str) -> Option<u32> {
    let stem = key.strip_suffix(".parquet")?;
    let (_, hex) = stem.rsplit_once(".crc")?;
    (hex.len() == 8)
        .then(|| u32::from_str_radix(hex, 16).ok())
        .flatten()
}

/// Reads a whole Parquet file named `key`: checks the checksum its name records, decodes every
/// page, and turns a panic of the decoder into an error. The error says what is wrong.
pub(crate) fn read_checked(key: &str, bytes: Vec<u8>) -> Result<Vec<RecordBatch>, String> {
    if let Some(want) = recorded_crc(key) {
        let got = crc32(&bytes);
        if got != want {
            return Err(format!(
                "checksum mismatch (crc32 {got:08x}, the name records {want:08x}): the file changed after it was written"
            ));
        }
    }
    decode(bytes)
}

/// Decodes every page of a Parquet file, a decoder panic included as an error.
fn decode(bytes: Vec<u8>) -> Result<Vec<RecordBatch>, String> {
    let bytes = Bytes::from(bytes);
    let run = || -> Result<Vec<RecordBatch>, String> {
        ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
            .and_then(|b| b.build())
            .map_err(|e| format!("unreadable parquet footer: {e}"))?
            .map(|b| b.map_err(|e| format!("unreadable parquet data: {e}")))
            .collect()
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(format!("the parquet decoder panicked: {what}"))
    })
}

/// CRC-32 (IEEE 802.3, the zlib/gzip one), table-driven: a few hundred MB/s, no dependency.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for b in data {
        crc = TABLE[((crc ^ u32::from(*b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{requests_schema, rows_to_batch};
    use crate::writer::{encode_parquet, zstd_props};
    use slogate_core::{SeriesKey, SlotRecord};
    use slogate_sketch::Sketch;

    fn file() -> Vec<u8> {
        let rows: Vec<SlotRecord> = (0..40u64)
            .map(|i| {
                let mut sketch = Sketch::new();
                sketch.record(1_000_000 * (i + 1));
                SlotRecord {
                    slot_start_unix: 1_764_000_000 + 10 * i as i64,
                    slot_seconds: 10,
                    key: SeriesKey {
                        service: format!("svc{}", i % 3),
                        env: "prod".into(),
                        version: "v1".into(),
                        operation: "GET /x".into(),
                        extras: vec![],
                    },
                    requests: i + 1,
                    errors: i % 2,
                    latency_sum_ns: 1_000_000 * (i + 1),
                    latency_min_ns: 1_000_000 * (i + 1),
                    latency_max_ns: 1_000_000 * (i + 1),
                    sketch: sketch.encoded(),
                }
            })
            .collect();
        encode_parquet(
            requests_schema(&[]),
            &[rows_to_batch(&rows, &[])],
            &zstd_props(3).unwrap(),
            &[],
        )
        .unwrap()
    }

    /// Every flipped bit anywhere in the file is caught, whether or not the decoder would
    /// notice (and without the checksum some flips do give wrong rows silently); truncations
    /// fail; nothing panics out of `read_checked` although the decoder itself panics on some of
    /// these inputs. A name without a checksum is only decoded.
    #[test]
    fn every_flip_and_cut_is_caught() {
        let good = file();
        let key = format!(
            "requests/date=2025-11-24/hour=16/{}",
            checked_name("part-1-1", &good)
        );
        assert!(
            key.ends_with(&format!(".crc{:08x}.parquet", crc32(&good))),
            "{key}"
        );
        let want = read_checked(&key, good.clone()).unwrap();
        assert_eq!(want.iter().map(|b| b.num_rows()).sum::<usize>(), 40);
        let mut silent_without_checksum = 0;
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 1 << (at % 8);
            assert!(
                read_checked(&key, bad.clone()).is_err(),
                "a flip at byte {at} of {} went unnoticed",
                good.len()
            );
            if decode(bad).is_ok_and(|got| got != want) {
                silent_without_checksum += 1;
            }
        }
        assert!(silent_without_checksum > 0);
        for len in [0, 4, 8, good.len() / 2, good.len() - 8, good.len() - 1] {
            assert!(
                read_checked(&key, good[..len].to_vec()).is_err(),
                "cut at {len}"
            );
        }
        // Names that record no checksum: decoded only.
        for name in [
            "part-1-1.parquet",
            "x.crc123.parquet",
            "x.crczzzzzzzz.parquet",
        ] {
            assert_eq!(recorded_crc(name), None, "{name}");
            assert_eq!(read_checked(name, good.clone()).unwrap(), want);
        }
    }

    /// A file that makes the Parquet decoder panic (found by flipping bits until it does): SQL
    /// and the range queries over it return errors instead of panicking, and the reload moves
    /// it aside.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queries_never_panic_on_a_file_that_panics_the_decoder() {
        let good = file();
        let bad = (0..good.len())
            .map(|at| {
                let mut bad = good.clone();
                bad[at] ^= 1 << (at % 8);
                bad
            })
            .find(|bad| {
                decode(bad.clone()).is_err_and(|e| e.starts_with("the parquet decoder panicked"))
            })
            .expect("some flip panics the decoder");
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::local(dir.path());
        store
            .put("requests/date=2025-11-24/hour=16/part-1-1.parquet", bad)
            .unwrap();
        let history = crate::History::open(&store, &[]).await.unwrap();
        let timeout = std::time::Duration::from_secs(30);
        let err = history
            .sql("SELECT * FROM requests", 100, timeout)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("panic"), "{err}");
        for q in [
            "SELECT sum(requests), sum(errors) FROM requests",
            "SELECT service, sketch_quantile(sketch, 0.99) FROM requests GROUP BY service",
        ] {
            let _ = history.sql(q, 100, timeout).await;
        }
        let checkout = [("service".to_string(), "svc0".to_string())];
        let range = (1_763_942_400, 1_764_028_800);
        let _ = crate::operation_totals(&history, &checkout, range).await;
        let _ = crate::slot_counts(&history, &checkout, range, 100).await;
        let all = crate::operation_totals(&history, &[], range)
            .await
            .unwrap_err();
        assert!(all.to_string().contains("panicked"), "{all}");
        assert_eq!(history.load_since(0).await.unwrap(), vec![]);
        assert_eq!(store.quarantined_files(), 1);
        let answer = history
            .sql("SELECT count(*) FROM requests", 10, timeout)
            .await;
        assert_eq!(answer.unwrap().rows, vec![vec![serde_json::json!(0)]]);
    }

    #[test]
    fn crc32_known_values() {
        for (data, want) in [
            (&b""[..], 0),
            (b"a", 0xE8B7_BE43),
            (b"123456789", 0xCBF4_3926),
            (b"The quick brown fox jumps over the lazy dog", 0x414F_A339),
        ] {
            assert_eq!(crc32(data), want, "{data:?}");
        }
    }
}
