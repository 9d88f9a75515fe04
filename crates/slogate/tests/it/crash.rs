//! Crash consistency of the history under SIGKILL: on one history directory, a real server is
//! killed round after round while OTLP traffic flows, slots are flushed every 250 ms and freshly
//! imported past hours are being compacted: at a random (seeded, logged) moment, or as soon as a
//! flush's temporary file shows, or a random few milliseconds into a compaction. After every
//! restart nothing the server reported as written is missing, nothing is counted twice, every
//! leftover of an interrupted write or compaction is gone, and DuckDB reads every file the
//! server's SQL reads. Also: a damaged verdict file is quarantined at start and the other
//! verdicts are restored.

use crate::harness::Server;
use rand::{Rng, SeedableRng};
use slogate_core::{SeriesKey, SlotRecord};
use slogate_history::{HistoryWriter, QUARANTINE_DIR, WriterConfig};
use slogate_load::{CohortSpec, LatencyDist, Rate, Scenario, Target};
use slogate_sketch::Sketch;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Kills; the server is started once more than this to check what the last kill left.
const ROUNDS: usize = 9;
/// The default seed of the kill moments; `SLOGATE_CRASH_SEED` replays another.
const DEFAULT_SEED: u64 = 0x5107_c4a5;
/// Past hours (before the current one) that each round imports small files into, for the
/// server's compactor to merge while the kill may come.
const IMPORT_HOURS: [i64; 3] = [2, 3, 4];
const IMPORT_FILES: usize = 20;
const IMPORT_ROWS: usize = 50;

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Every file under `root`, as `/`-separated paths relative to it, the quarantine excluded.
fn files(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if let Ok(rel) = path.strip_prefix(root) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.retain(|k| !k.starts_with(&format!("{QUARANTINE_DIR}/")));
    out.sort();
    out
}

fn partition(unix: i64) -> String {
    let (date, hour) = slogate_history::partition_of(unix);
    format!("requests/date={date}/hour={hour}")
}

/// Writes [`IMPORT_FILES`] small files of service `import` into each of [`IMPORT_HOURS`], one
/// atomic file each as any writer of the history does, and returns the spans they hold.
fn import(dir: &Path, round: usize) -> u64 {
    let mut w = HistoryWriter::new(WriterConfig::new(dir, vec![])).unwrap();
    let hour0 = now_unix() / 3600 * 3600;
    let mut spans = 0;
    for h in IMPORT_HOURS {
        for f in 0..IMPORT_FILES {
            for r in 0..IMPORT_ROWS {
                let requests = 1 + ((round * 7 + f * 3 + r) % 11) as u64;
                let ns = 1_000_000 * (1 + r as u64);
                let mut sketch = Sketch::new();
                sketch.record_n(ns, requests);
                let row = SlotRecord {
                    slot_start_unix: hour0 - h * 3600 + ((f * IMPORT_ROWS + r) % 3600) as i64,
                    slot_seconds: 1,
                    key: SeriesKey {
                        service: "import".into(),
                        env: "prod".into(),
                        version: format!("r{round}"),
                        operation: format!("GET /i{}", r % 5),
                        extras: vec![],
                    },
                    requests,
                    errors: 0,
                    latency_sum_ns: ns * requests,
                    latency_min_ns: ns,
                    latency_max_ns: ns,
                    sketch: sketch.encoded(),
                };
                w.append(row).unwrap();
                spans += requests;
            }
            w.flush().unwrap();
        }
    }
    spans
}

/// The test venv's Python with DuckDB: `SLOGATE_PYTHON`, else the venv `scripts/test` creates.
fn python() -> String {
    std::env::var("SLOGATE_PYTHON").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("{home}/.cache/slogate-venv/bin/python")
    })
}

/// DuckDB, the second reader, reads every visible `requests` file one by one:
/// `[files, rows, spans of checkout, spans of import]`.
fn duckdb_requests(root: &Path) -> [u64; 4] {
    let script = r#"
import json, os, sys
import duckdb
root = sys.argv[1]
con = duckdb.connect()
out = [0, 0, 0, 0]
for d, _, names in os.walk(os.path.join(root, "requests")):
    for n in names:
        if not n.endswith(".parquet"):
            continue
        c, a, b = con.execute(
            "SELECT count(*), coalesce(sum(requests) FILTER (WHERE service = 'checkout'), 0), "
            "coalesce(sum(requests) FILTER (WHERE service = 'import'), 0) FROM read_parquet(?)",
            [os.path.join(d, n)],
        ).fetchone()
        out = [out[0] + 1, out[1] + c, out[2] + a, out[3] + b]
print(json.dumps([int(x) for x in out]))
"#;
    let python = python();
    let out = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(root)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {python} (set SLOGATE_PYTHON to a python with duckdb): {e}")
        });
    assert!(
        out.status.success(),
        "duckdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The server's SQL over `requests`: `[rows, spans of checkout, spans of import]`.
fn server_requests(server: &Server) -> [u64; 3] {
    let (status, v) = server.sql(
        "SELECT count(*), sum(requests) FILTER (WHERE service = 'checkout'), \
         sum(requests) FILTER (WHERE service = 'import') FROM requests",
    );
    assert_eq!(status, 200, "{v}");
    // A sum over no rows is null; a coalesced one may come back as a decimal string.
    let count = |x: &serde_json::Value| match x {
        serde_json::Value::Null => Some(0),
        serde_json::Value::String(s) => s.parse().ok(),
        x => x.as_u64(),
    };
    [0, 1, 2].map(|i| count(&v["rows"][0][i]).unwrap_or_else(|| panic!("{v}")))
}

/// What the server says it has durably written: (spans, `requests` rows).
fn server_written(server: &Server) -> (u64, u64) {
    (
        server.metric("slogate_history_spans_written_total") as u64,
        server.metric("slogate_history_rows_written_total{table=\"requests\"}") as u64,
    )
}

/// Waits until no compaction is under way and every imported hour is one file.
fn wait_compacted(dir: &Path) {
    let hour0 = now_unix() / 3600 * 3600;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = files(dir);
        let busy = all.iter().any(|k| k.ends_with(".manifest.json"));
        let merged = IMPORT_HOURS.iter().all(|h| {
            let p = format!("{}/", partition(hour0 - h * 3600));
            all.iter()
                .filter(|k| k.starts_with(&p) && k.ends_with(".parquet"))
                .count()
                <= 1
        });
        if !busy && merged {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the imported hours were not compacted: {all:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// When a round kills the server.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// This long into the traffic.
    After(Duration),
    /// As soon as a `requests` file being flushed shows as `.tmp`: mid-write.
    MidFlush,
    /// This long after a compaction's manifest shows: between its steps.
    MidCompaction(Duration),
}

/// Polls `dirs` until a file ending with `suffix` shows, for at most `within`: whether one did.
fn wait_for_file(dirs: &[std::path::PathBuf], suffix: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        for d in dirs {
            if let Ok(entries) = std::fs::read_dir(d)
                && entries
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(suffix))
            {
                return true;
            }
        }
        std::thread::sleep(Duration::from_micros(300));
    }
    false
}

/// OTLP traffic of checkout v1 for `duration` in a thread: the spans acknowledged.
fn traffic(server: &Server, duration: Duration) -> std::thread::JoinHandle<u64> {
    let target = Target {
        endpoint: format!("http://127.0.0.1:{}", server.grpc),
        ..Target::default()
    };
    let cohort = CohortSpec::new("checkout", "v1", LatencyDist::lognormal(60.0, 0.7));
    let mut sc = Scenario::new(target, Rate::PerSecond(3000.0), duration, vec![cohort]);
    sc.batch_size = 50;
    std::thread::spawn(move || slogate_load::run_blocking(&sc).unwrap().spans_sent)
}

#[test]
fn history_survives_sigkill_mid_flush_and_mid_compaction() {
    let seed = std::env::var("SLOGATE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    eprintln!("crash: seed {seed} (SLOGATE_CRASH_SEED replays it)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("history");
    let config = format!(
        "windows:\n  slot: 1s\n  fine_retention: 10m\n  coarse_slot: 10s\n  coarse_retention: 1h\n\
         history:\n  dir: {}\n  flush_interval: 250ms\n  compaction_interval: 1s\n  compact_after: 0s\n  reload: 6h\n",
        dir.display()
    );
    let started = Instant::now();
    // Spans the server said were written before each kill; spans acknowledged to the load
    // generator; spans imported. The history must hold persisted ≤ checkout ≤ acked, and
    // exactly the imported ones.
    let (mut persisted, mut acked, mut imported) = (0u64, 0u64, 0u64);
    let (mut tmp_left, mut planted, mut manifests_left) = (0usize, 0usize, 0usize);
    let (mut rolled_forward, mut rolled_back) = (0u64, 0u64);
    let mut rows_written = 0u64;
    // Kills that found a flush's temporary file, and a compaction's manifest, to aim at.
    let mut hit = [0usize; 3];
    let mut found = 0u64;
    for round in 0..=ROUNDS {
        // What the last kill left, plus one interrupted write planted as a kill leaves it (a
        // half-written file that was never renamed), so that the clean-up is checked each time.
        if round > 0 {
            let some = files(&dir)
                .into_iter()
                .find(|k| k.starts_with("requests/") && k.ends_with(".parquet"))
                .unwrap();
            let bytes = std::fs::read(dir.join(&some)).unwrap();
            let tmp = some.replace(".parquet", &format!("-planted{round}.parquet.tmp"));
            std::fs::write(dir.join(&tmp), &bytes[..bytes.len() / 2]).unwrap();
            planted += 1;
        }
        let left = files(&dir);
        let tmps: Vec<&String> = left.iter().filter(|k| k.ends_with(".tmp")).collect();
        let manifests: Vec<&String> = left
            .iter()
            .filter(|k| k.ends_with(".manifest.json"))
            .collect();
        tmp_left += tmps.len().saturating_sub(usize::from(round > 0));
        manifests_left += manifests.len();

        let server = Server::start(&config);
        let removed = server.metric("slogate_history_interrupted_writes_removed_total");
        assert_eq!(removed as usize, tmps.len(), "round {round}: {tmps:?}");
        let forward = server
            .metric("slogate_history_compactions_recovered_total{outcome=\"rolled_forward\"}");
        let back =
            server.metric("slogate_history_compactions_recovered_total{outcome=\"rolled_back\"}");
        assert_eq!(
            (forward + back) as usize,
            manifests.len(),
            "round {round}: {manifests:?}"
        );
        (rolled_forward, rolled_back) =
            (rolled_forward + forward as u64, rolled_back + back as u64);
        for k in tmps.iter().chain(&manifests) {
            assert!(
                !dir.join(k).exists(),
                "round {round}: {k} left after the start"
            );
        }
        assert_eq!(
            server.metric("slogate_history_quarantined_files_total"),
            0.0,
            "round {round}: a file was torn (the reload read every file of the last 6 h whole)"
        );

        // Nothing reported written is missing, nothing is counted twice; DuckDB agrees file by
        // file.
        wait_compacted(&dir);
        let [rows, checkout, import_spans] = server_requests(&server);
        assert!(
            persisted <= checkout && checkout <= acked,
            "round {round}: history holds {checkout} checkout spans; {persisted} were reported written, {acked} acknowledged"
        );
        assert_eq!(import_spans, imported, "round {round}: imported spans");
        let visible = files(&dir)
            .iter()
            .filter(|k| k.starts_with("requests/") && k.ends_with(".parquet"))
            .count() as u64;
        assert_eq!(
            duckdb_requests(&dir),
            [visible, rows, checkout, import_spans],
            "round {round}: duckdb [files, rows, checkout spans, import spans]"
        );
        eprintln!(
            "crash: round {round} after restart: checkout {checkout} (reported written {persisted}, acknowledged {acked}), import {import_spans}, files {visible}, leftovers removed: {} tmp, {} manifests",
            tmps.len(),
            manifests.len()
        );
        if round == ROUNDS {
            found = checkout;
            break;
        }

        // New past hours for the compactor (it runs every second), traffic, and the kill.
        imported += import(&dir, round);
        let kill = match round % 3 {
            0 => Kill::After(Duration::from_millis(rng.random_range(100..3000))),
            1 => Kill::MidFlush,
            _ => Kill::MidCompaction(Duration::from_micros(rng.random_range(0..2_000))),
        };
        let load = traffic(&server, Duration::from_secs(4));
        let started_load = Instant::now();
        let hour0 = now_unix() / 3600 * 3600;
        // Read before the moment is waited for: a file being written now is not counted yet.
        let written = match kill {
            Kill::After(after) => {
                std::thread::sleep(after);
                server_written(&server)
            }
            Kill::MidFlush => {
                std::thread::sleep(Duration::from_millis(1200));
                let w = server_written(&server);
                let live = [dir.join(partition(now_unix())), dir.join(partition(hour0))];
                hit[1] += usize::from(wait_for_file(&live, ".tmp", Duration::from_secs(2)));
                w
            }
            Kill::MidCompaction(delay) => {
                let w = server_written(&server);
                let imported: Vec<_> = IMPORT_HOURS
                    .iter()
                    .map(|h| dir.join(partition(hour0 - h * 3600)))
                    .collect();
                if wait_for_file(&imported, ".manifest.json", Duration::from_secs(3)) {
                    hit[2] += 1;
                    std::thread::sleep(delay);
                }
                w
            }
        };
        let killed_at = started_load.elapsed();
        rows_written += written.1;
        let written = written.0;
        server.kill();
        let sent = load.join().unwrap();
        persisted += written as u64;
        acked += sent;
        let after: Vec<String> = files(&dir)
            .into_iter()
            .filter(|k| k.ends_with(".tmp") || k.ends_with(".manifest.json"))
            .collect();
        eprintln!(
            "crash: round {round}: {kill:?}, killed {} ms into the traffic; reported written {written}, acknowledged {sent}; left {after:?}",
            killed_at.as_millis()
        );
    }
    eprintln!(
        "crash: {ROUNDS} kills in {:.1} s ({} aimed at a flush's .tmp, {} at a compaction's manifest): {persisted} spans reported written ({rows_written} rows), {found} found, {acked} acknowledged, {imported} imported (all found); leftovers cleaned: {tmp_left} interrupted writes (+{planted} planted), {manifests_left} compactions ({rolled_forward} rolled forward, {rolled_back} back)",
        started.elapsed().as_secs_f64(),
        hit[1],
        hit[2]
    );
    assert!(persisted > 0 && acked > persisted, "{persisted} {acked}");
}

/// A verdict file damaged while the server was down: at the start it is moved to the
/// quarantine, named in the log and counted on `/metrics`, and the verdicts of the other files
/// are restored (the whole restore used to fail and start empty).
#[test]
fn damaged_verdict_file_is_quarantined_and_the_other_verdicts_restored() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("history");
    let config = format!(
        "windows:\n  slot: 1s\n  fine_retention: 10m\n  coarse_slot: 10s\n  coarse_retention: 1h\nhistory:\n  dir: {}\n  flush_interval: 250ms\n\
         gates:\n  - {{name: sla, service: checkout, window: 1m, min_requests: 10, canary: {{version: v1}}, criteria: [{{name: error-rate, metric: error_rate, pass: 0.05, fail: 0.1}}]}}\n",
        dir.display()
    );
    let server = Server::start(&config);
    let sent = traffic(&server, Duration::from_secs(1)).join().unwrap();
    server.sli_when("service=checkout&window=5m", sent);
    // Three verdicts, each flushed to a file of its own.
    let verdict_files = || -> Vec<String> {
        let mut keys: Vec<String> = files(&dir)
            .into_iter()
            .filter(|k| k.starts_with("verdicts/") && k.ends_with(".parquet"))
            .collect();
        // `part-<unix ms>-<n>.crc…`: oldest first.
        keys.sort_by_key(|k| {
            let name = k.rsplit('/').next().unwrap();
            let ms: u64 = name.split('-').nth(1).unwrap().parse().unwrap();
            ms
        });
        keys
    };
    let mut evaluated = Vec::new();
    for n in 1..=3 {
        let v = server.get_json("/api/v1/gates/sla/verdict");
        evaluated.push(v["evaluated_at"].clone());
        let deadline = Instant::now() + Duration::from_secs(10);
        while verdict_files().len() < n {
            assert!(Instant::now() < deadline, "verdict {n} was not flushed");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    server.kill();
    let victim = verdict_files().remove(1);
    let mut bytes = std::fs::read(dir.join(&victim)).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x10;
    std::fs::write(dir.join(&victim), bytes).unwrap();

    let server = Server::start(&config);
    assert_eq!(
        server.metric("slogate_history_quarantined_files_total"),
        1.0
    );
    assert!(!dir.join(&victim).exists(), "{victim}");
    assert!(
        dir.join(QUARANTINE_DIR).join(&victim).exists(),
        "{victim} not in the quarantine"
    );
    let log = server.log.lock().unwrap().join("\n");
    assert!(
        log.lines().any(
            |l| l.contains("unreadable history file moved to quarantine") && l.contains(&victim)
        ),
        "no log line names {victim}:\n{log}"
    );
    let (status, body) = server.get("/readyz").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("not restored"), "{body}");
    let restored = server.get_json("/api/v1/verdicts");
    let at: Vec<&serde_json::Value> = restored["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| &v["evaluated_at"])
        .collect();
    assert_eq!(
        at,
        vec![&evaluated[2], &evaluated[0]],
        "the newest first, without the damaged file's: {restored}"
    );
}
