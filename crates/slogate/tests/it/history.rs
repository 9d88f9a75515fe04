//! The Parquet history end to end: closed slots reach SQL with counts equal to the spans sent
//! and sketch-exact percentiles; SQL is read-only; the CLI reads through the server or straight
//! from the files; and a restarted (SIGKILLed) server reloads the history into its live windows.

use crate::harness::{Server, slogate};
use slogate_load::{CohortSpec, LatencyDist, Rate, Scenario, Target};
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn history_sql_and_restart_without_blindness() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("history");
    let config = format!(
        "windows:\n  slot: 1s\n  fine_retention: 10m\n  coarse_slot: 10s\n  coarse_retention: 1h\nhistory:\n  dir: {}\n  flush_interval: 1s\n  reload: 10m\n\
         gates:\n  - {{name: sla, service: checkout, window: 1m, min_requests: 10, canary: {{version: v1}}, criteria: [{{name: error-rate, metric: error_rate, pass: 0.05, fail: 0.1}}]}}\n",
        dir.display()
    );
    let server = Server::start(&config);
    let target = Target {
        endpoint: format!("http://127.0.0.1:{}", server.grpc),
        ..Target::default()
    };
    let mut cohort = CohortSpec::new("checkout", "v1", LatencyDist::lognormal(60.0, 0.7));
    cohort.error_rate = 0.02;
    let mut sc = Scenario::new(
        target,
        Rate::PerSecond(3000.0),
        Duration::from_secs(3),
        vec![cohort],
    );
    sc.batch_size = 100;
    let report = slogate_load::run_blocking(&sc).unwrap();
    let sent = report.spans_sent;
    let sent_errors = report.per_cohort[0].errors_sent;

    // Slots close every second and the writer flushes every second.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, v) = server.sql("SELECT sum(requests) AS n FROM requests");
        assert_eq!(status, 200, "{v}");
        if v["rows"][0][0].as_u64() == Some(sent) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "history has {} of {sent} spans",
            v["rows"][0][0]
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let (_, v) = server.sql(
        "SELECT sum(errors), sketch_quantile(sketch, 0.99), sketch_quantile(sketch, 0.5), count(DISTINCT slot_start) FROM requests WHERE service = 'checkout'",
    );
    assert_eq!(v["rows"][0][0].as_u64(), Some(sent_errors), "{v}");
    for (col, q) in [(1, 0.99), (2, 0.5)] {
        let exact = report.per_cohort[0].quantile_ms(q).unwrap();
        let got = v["rows"][0][col].as_f64().unwrap();
        assert!(
            (got - exact).abs() / exact <= 0.01,
            "p{q}: history {got} ms, exact {exact} ms"
        );
    }
    assert!(
        v["rows"][0][3].as_u64().unwrap() >= 3,
        "one row per 1 s slot: {v}"
    );

    // Every verdict is kept: "which verdicts held the release" is a query.
    assert_eq!(
        server.get_json("/api/v1/gates/sla/verdict")["verdict"],
        "pass"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = server.sql("SELECT gate, verdict, doc FROM verdicts");
        if v["rows"].as_array().is_some_and(|r| !r.is_empty()) {
            assert_eq!(v["rows"][0][0], "sla");
            assert_eq!(v["rows"][0][1], "pass");
            let doc: serde_json::Value =
                serde_json::from_str(v["rows"][0][2].as_str().unwrap()).unwrap();
            assert_eq!(doc["canary"]["requests"].as_u64(), Some(sent), "{doc}");
            break;
        }
        assert!(Instant::now() < deadline, "no verdict in the history: {v}");
        std::thread::sleep(Duration::from_millis(300));
    }

    // Read-only.
    for stmt in [
        "DROP TABLE requests",
        "CREATE TABLE t AS SELECT 1",
        "INSERT INTO requests SELECT * FROM requests",
    ] {
        let (status, v) = server.sql(stmt);
        assert_eq!(status, 400, "{stmt}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains("read-only"),
            "{stmt}: {v}"
        );
    }

    // The CLI, through the server and straight from the files.
    let bin = env!("CARGO_BIN_EXE_slogate");
    let out = Command::new(bin)
        .args([
            "sql",
            "SELECT service, sum(requests) AS n FROM requests GROUP BY service",
            "--format",
            "csv",
            "--server",
            &server.api_url(""),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("service,n\ncheckout,{sent}\n")
    );
    let out = Command::new(bin)
        .args(["sql", "SELECT count(*) > 0 AS ok FROM requests", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("true"));
    // Straight from the files, the query runs under the limits given on the command line:
    // 64 MiB of rows that are 1 MiB each is refused by a 16 MiB limit, and passes at 1 GiB.
    let wide = "SELECT length(repeat('x', 1048576)) AS n FROM generate_series(1, 64)";
    let with_limit = |limit: &str| {
        Command::new(bin)
            .args([
                "sql",
                wide,
                "--format",
                "csv",
                "--memory-limit-bytes",
                limit,
            ])
            .arg("--dir")
            .arg(&dir)
            .output()
            .unwrap()
    };
    let out = with_limit("16777216");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("memory") || err.contains("esources"), "{err}");
    let out = with_limit("1073741824");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 65);
    let out = Command::new(bin)
        .args(["sql", "SELEKT 1", "--server", &server.api_url("")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));

    // A crash and a restart: the live windows come back from the history.
    server.kill();
    let server = Server::start(&config);
    let sli = server.get_json("/api/v1/sli?service=checkout&window=5m");
    assert_eq!(
        sli["requests"].as_u64(),
        Some(sent),
        "restart without blindness: {sli}"
    );
    assert_eq!(sli["errors"].as_u64(), Some(sent_errors));
}

/// s3s-fs (crates.io, installed by scripts/test, found through SLOGATE_S3_SERVER) on a free
/// loopback port, serving bucket `history` from a temporary directory.
struct S3Server {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl S3Server {
    const KEY: &str = "slogate-test";
    const SECRET: &str = "slogate-test-secret";

    fn start() -> S3Server {
        let bin = std::env::var("SLOGATE_S3_SERVER").expect("SLOGATE_S3_SERVER is not set: run scripts/test, which installs s3s-fs from crates.io and exports it");
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("history")).unwrap();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = Command::new(&bin)
                .args([
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--access-key",
                    Self::KEY,
                    "--secret-key",
                    Self::SECRET,
                ])
                .arg(dir.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start the S3 server {bin}: {e}"));
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return S3Server {
                        child,
                        port,
                        _dir: dir,
                    };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("the S3 server {bin} did not start")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn history_on_s3_counts_spans_and_survives_a_restart() {
    let s3 = S3Server::start();
    let creds = tempfile::tempdir().unwrap();
    let (key_file, secret_file) = (creds.path().join("key"), creds.path().join("secret"));
    std::fs::write(&key_file, format!("{}\n", S3Server::KEY)).unwrap();
    std::fs::write(&secret_file, S3Server::SECRET).unwrap();
    let config = format!(
        "windows:\n  slot: 1s\n  fine_retention: 10m\n  coarse_slot: 10s\n  coarse_retention: 1h\n\
         history:\n  url: s3://history/slogate/test\n  s3:\n    endpoint: http://127.0.0.1:{}\n    region: us-east-1\n    allow_http: true\n    access_key_id_file: {}\n    secret_access_key_file: {}\n  flush_interval: 1s\n  reload: 10m\n",
        s3.port,
        key_file.display(),
        secret_file.display()
    );
    let server = Server::start(&config);
    let target = Target {
        endpoint: format!("http://127.0.0.1:{}", server.grpc),
        ..Target::default()
    };
    let mut cohort = CohortSpec::new("checkout", "v1", LatencyDist::lognormal(40.0, 0.6));
    cohort.error_rate = 0.03;
    let mut sc = Scenario::new(
        target,
        Rate::PerSecond(2000.0),
        Duration::from_secs(2),
        vec![cohort],
    );
    sc.batch_size = 100;
    let report = slogate_load::run_blocking(&sc).unwrap();
    let (sent, sent_errors) = (report.spans_sent, report.per_cohort[0].errors_sent);

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, v) = server
            .sql("SELECT sum(requests), sum(errors), sketch_quantile(sketch, 0.99) FROM requests");
        assert_eq!(status, 200, "{v}");
        if v["rows"][0][0].as_u64() == Some(sent) {
            assert_eq!(v["rows"][0][1].as_u64(), Some(sent_errors), "{v}");
            let exact = report.per_cohort[0].quantile_ms(0.99).unwrap();
            let got = v["rows"][0][2].as_f64().unwrap();
            assert!(
                (got - exact).abs() / exact <= 0.01,
                "p99 on s3: history {got} ms, exact {exact} ms"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "s3 history has {} of {sent} spans",
            v["rows"][0][0]
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // The CLI reads the bucket directly, with the standard AWS environment variables.
    let out = Command::new(env!("CARGO_BIN_EXE_slogate"))
        .args([
            "sql",
            "SELECT sum(requests) AS n FROM requests",
            "--format",
            "csv",
            "--url",
            "s3://history/slogate/test",
        ])
        .env("AWS_ACCESS_KEY_ID", S3Server::KEY)
        .env("AWS_SECRET_ACCESS_KEY", S3Server::SECRET)
        .env("AWS_ENDPOINT", format!("http://127.0.0.1:{}", s3.port))
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ALLOW_HTTP", "true")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("n\n{sent}\n"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A crash and a restart: the live windows come back from the bucket.
    server.kill();
    let server = Server::start(&config);
    let sli = server.get_json("/api/v1/sli?service=checkout&window=5m");
    assert_eq!(
        sli["requests"].as_u64(),
        Some(sent),
        "restart from s3: {sli}"
    );
    assert_eq!(sli["errors"].as_u64(), Some(sent_errors));

    // Stored baselines live in the bucket too: the CLI, given only the configuration, captures
    // from the S3 history and saves there; the server lists and reads it from there.
    let cfg_path = creds.path().join("slogate.yaml");
    std::fs::write(&cfg_path, &config).unwrap();
    let cli = |args: &[&str]| slogate(&[args, &["--config", cfg_path.to_str().unwrap()]].concat());
    let (code, out, err) = cli(&[
        "baseline",
        "capture",
        "--name",
        "s3-v1",
        "--service",
        "checkout",
        "--from",
        "-1h",
        "--min-requests",
        "10",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("saved baseline s3-v1 to s3://history/slogate/test/baselines/s3-v1.json"),
        "{out}"
    );
    let (code, out, err) = cli(&["baseline", "show", "s3-v1", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            shown["total"]["requests"].as_u64(),
            shown["total"]["errors"].as_u64()
        ),
        (Some(sent), Some(sent_errors)),
        "{shown}"
    );
    let listed = server.get_json("/api/v1/baselines");
    assert_eq!(listed["baselines"][0]["name"], "s3-v1", "{listed}");
    assert_eq!(
        listed["baselines"][0]["total"]["requests"].as_u64(),
        Some(sent),
        "{listed}"
    );
    let (code, _, err) = cli(&["baseline", "delete", "s3-v1"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli(&["baseline", "show", "s3-v1"]);
    assert_eq!(code, 3);
    assert!(err.contains("s3-v1"), "{err}");
    assert_eq!(
        server.get_json("/api/v1/baselines")["baselines"],
        serde_json::json!([])
    );
}

/// A history that cannot be written (here the table's directory replaced by a file, which stops
/// root too, like a full disk stops everyone) shows on `/metrics` and `/readyz` while the
/// server keeps ingesting and answering; once the disk is back, the rows kept for the retry are
/// written and nothing acknowledged is missing from the history.
#[test]
fn failing_history_writes_are_visible_and_nothing_is_lost() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("history");
    let config = history_config(&dir, "1s");
    let server = Server::start(&config);
    let send = |n: usize| send_checkout(&server, n);
    let mut sent = send(500);
    // The table's directory becomes a file: every flush fails from now on.
    let table = dir.join("requests");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !table.exists() {
        assert!(Instant::now() < deadline, "no requests table written");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Moved aside (kept: its files are history already written), a file in its place.
    let aside = dir.join("requests.aside");
    std::fs::rename(&table, &aside).unwrap();
    std::fs::write(&table, b"not a directory").unwrap();
    sent += send(500);
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.metric("slogate_history_write_failing{table=\"requests\"}") != 1.0 {
        assert!(
            Instant::now() < deadline,
            "the failure never showed on /metrics"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(server.metric("slogate_history_flush_failures_total{table=\"requests\"}") >= 1.0);
    assert!(server.metric("slogate_history_backlog_rows{table=\"requests\"}") >= 1.0);
    let (status, body) = server.get("/readyz").unwrap();
    assert_eq!(status, 200, "verdicts still come from the live windows");
    assert!(
        body.contains("history writes to the requests table are failing"),
        "{body}"
    );
    // Still ingesting and answering.
    let sli = server.sli_when("service=checkout&window=5m", sent);
    assert_eq!(sli["requests"].as_u64(), Some(sent));

    // The disk is back: the kept rows are written, the warning goes, every span is there.
    std::fs::remove_file(&table).unwrap();
    std::fs::rename(&aside, &table).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.metric("slogate_history_write_failing{table=\"requests\"}") != 0.0 {
        assert!(Instant::now() < deadline, "the history never recovered");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, body) = server.get("/readyz").unwrap();
    assert!(!body.contains("failing"), "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, out) = server.sql("SELECT sum(requests) AS n FROM requests");
        assert_eq!(status, 200, "{out}");
        if out["rows"][0][0].as_u64() == Some(sent) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "history holds {} of {sent} spans",
            out["rows"][0][0]
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// SIGTERM while the history cannot be written: the final flush is retried within
/// `shutdown_grace`. When the disk comes back in time every acknowledged span is in the history
/// after the exit; when it does not, the loss is logged with its row count and the process
/// exits with an error, never silently.
#[test]
fn shutdown_flush_is_retried_within_the_grace_then_reported_as_loss() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("history");
    let config = history_config(&dir, "1h");
    let break_table = || {
        let table = dir.join("requests");
        if table.exists() {
            std::fs::rename(&table, dir.join("requests.aside")).unwrap();
        }
        std::fs::write(&table, b"not a directory").unwrap();
    };
    let mend_table = || {
        let table = dir.join("requests");
        std::fs::remove_file(&table).unwrap();
        if dir.join("requests.aside").exists() {
            std::fs::rename(dir.join("requests.aside"), &table).unwrap();
        }
    };

    // The disk comes back 1.5 s into a 20 s grace: nothing is lost.
    let server = Server::start_with("  shutdown_grace: 20s\n", &config);
    let sent = send_checkout(&server, 600);
    server.sli_when("service=checkout&window=5m", sent);
    break_table();
    let mender = std::thread::spawn({
        let dir = dir.clone();
        move || {
            std::thread::sleep(Duration::from_millis(1500));
            let table = dir.join("requests");
            std::fs::remove_file(&table).unwrap();
            if dir.join("requests.aside").exists() {
                std::fs::rename(dir.join("requests.aside"), &table).unwrap();
            }
        }
    });
    let (ok, log) = server.terminate(Duration::from_secs(30));
    mender.join().unwrap();
    assert!(
        ok,
        "a flush that succeeded within the grace is a clean exit:\n{log}"
    );
    assert!(
        log.contains("retrying within the shutdown grace"),
        "the first attempts failed:\n{log}"
    );
    let server = Server::start(&config);
    let (status, out) = server.sql("SELECT sum(requests) AS n FROM requests");
    assert_eq!(status, 200, "{out}");
    assert_eq!(
        out["rows"][0][0].as_u64(),
        Some(sent),
        "every acknowledged span"
    );

    // The disk never comes back within a 2 s grace: the loss is said, with its count.
    let more = send_checkout(&server, 300);
    server.sli_when("service=checkout&window=5m", sent + more);
    break_table();
    let (ok, log) = server.terminate(Duration::from_secs(30));
    assert!(!ok, "lost rows make the exit an error:\n{log}");
    let line = log
        .lines()
        .find(|l| l.contains("still unwritten when the shutdown grace ended"))
        .unwrap_or_else(|| panic!("no loss line:\n{log}"));
    assert!(
        line.contains("requests") && line.contains("rows="),
        "{line}"
    );
    assert!(log.contains("history rows could not be written"), "{log}");
    mend_table();
}

/// SIGTERM in the middle of steady traffic, three times on one history: each time the clients'
/// requests either got an answer (acknowledged) or failed to connect, and after the last start
/// the history holds exactly the spans acknowledged over the three runs.
#[test]
fn sigterm_under_steady_load_keeps_every_acknowledged_span() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("history");
    let config = history_config(&dir, "1h");
    let mut acknowledged = 0;
    for round in 0..3 {
        let server = Server::start_with("  shutdown_grace: 10s\n", &config);
        let sc = checkout_scenario(&server, 3000.0, Duration::from_secs(4));
        let load = std::thread::spawn(move || slogate_load::run_blocking(&sc).unwrap());
        // The signal lands while requests are in flight, 1.5 to 2.5 s into the run.
        std::thread::sleep(Duration::from_millis(1500 + 500 * round));
        let (ok, log) = server.terminate(Duration::from_secs(30));
        assert!(ok, "round {round}:\n{log}");
        let report = load.join().unwrap();
        assert!(
            report.spans_sent > 0 && report.requests_failed > 0,
            "round {round}: the load ran across the stop: {report:?}"
        );
        eprintln!(
            "round {round}: {} spans acknowledged, {} requests failed after the stop",
            report.spans_sent, report.requests_failed
        );
        acknowledged += report.spans_sent;
    }
    let server = Server::start(&config);
    let (status, out) = server.sql("SELECT sum(requests) AS n FROM requests");
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["rows"][0][0].as_u64(), Some(acknowledged), "{out}");
}

/// Sends `n` spans of checkout v1 over one second through OTLP/gRPC; returns the count sent
/// (every request acknowledged).
fn send_checkout(server: &Server, n: usize) -> u64 {
    let sc = checkout_scenario(server, n as f64, Duration::from_secs(1));
    let report = slogate_load::run_blocking(&sc).unwrap();
    assert_eq!(report.requests_failed, 0, "{:?}", report.first_error);
    report.spans_sent
}

/// Checkout v1 at `rate` spans/s for `length` through OTLP/gRPC, 50 spans a request.
fn checkout_scenario(server: &Server, rate: f64, length: Duration) -> Scenario {
    let target = Target {
        endpoint: format!("http://127.0.0.1:{}", server.grpc),
        ..Target::default()
    };
    let cohort = CohortSpec::new("checkout", "v1", LatencyDist::lognormal(60.0, 0.7));
    let mut sc = Scenario::new(target, Rate::PerSecond(rate), length, vec![cohort]);
    sc.batch_size = 50;
    sc
}

/// 1 s slots and a history in `dir`, flushed every `flush_interval`.
fn history_config(dir: &std::path::Path, flush_interval: &str) -> String {
    format!(
        "windows:\n  slot: 1s\n  fine_retention: 10m\n  coarse_slot: 10s\n  coarse_retention: 1h\nhistory:\n  dir: {}\n  flush_interval: {flush_interval}\n",
        dir.display()
    )
}
