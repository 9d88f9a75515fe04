//! The command line as a person uses it: config checks, startup errors, SLI queries, no-data;
//! and as a script uses it: `--format json` everywhere, errors as JSON, exit codes that do not
//! move with the format, closed pipes, plain output off a terminal, JSON logs.

use crate::harness::{Server, free_port, slogate};
use serde_json::Value;
use slogate_load::{CohortSpec, LatencyDist, Rate, Scenario, Target};
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn config_check_reports_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, "windows:\n  slot: 5s\n").unwrap();
    let (code, out, _) = slogate(&["config", "check", good.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("ok (slot 5s"), "{out}");

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "server:\n  http: 0.0.0.0:8080\nwindows:\n  slott: 5s\n",
    )
    .unwrap();
    let (code, _, err) = slogate(&["config", "check", bad.to_str().unwrap()]);
    assert_eq!(code, 3);
    assert!(
        err.contains(&format!(
            "{}:4:3: windows.slott: unknown field `slott`",
            bad.display()
        )),
        "{err}"
    );

    // serve refuses the same file with the same message and does not start.
    let (code, _, err) = slogate(&["serve", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 3);
    assert!(err.contains("unknown field `slott`"), "{err}");

    let (code, _, err) = slogate(&["config", "check", "/nonexistent/slogate.yaml"]);
    assert_eq!(code, 3);
    assert!(
        err.contains("/nonexistent/slogate.yaml: cannot read"),
        "{err}"
    );
}

#[test]
fn sli_without_data_is_null_not_zero() {
    let server = Server::start("");
    let v = server.get_json("/api/v1/sli?service=nobody&window=5m");
    assert_eq!(v["requests"], 0);
    assert!(v["error_rate"].is_null(), "{v}");
    assert!(v["latency_ms"]["p99"].is_null(), "{v}");

    let cases = [
        (
            "/api/v1/sli?window=5m",
            400,
            "missing query parameter `service`",
        ),
        ("/api/v1/sli?service=a&window=soon", 400, "invalid window"),
        ("/api/v1/sli?service=a&window=30d", 400, "outside"),
        (
            "/api/v1/sli?service=a&colour=red",
            400,
            "unknown dimension `colour`",
        ),
    ];
    for (path, status, fragment) in cases {
        let (got, body) = server.get(path).unwrap();
        assert_eq!(got, status, "{path}: {body}");
        assert!(body.contains(fragment), "{path}: {body}");
    }

    let (code, out, err) = slogate(&[
        "sli",
        "--service",
        "nobody",
        "--window",
        "5m",
        "--server",
        &server.api_url(""),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"requests\":0"), "{out}");
    let (code, out, err) = slogate(&[
        "sli",
        "--service",
        "nobody",
        "--format",
        "table",
        "--server",
        &server.api_url(""),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("SLI service=nobody · window 600s"), "{out}");
    assert!(out.lines().nth(2).unwrap().starts_with("  0 "), "{out}");
    for path in ["/healthz", "/readyz", "/metrics", "/"] {
        assert_eq!(server.get(path).unwrap().0, 200, "{path}");
    }
}

#[test]
fn usage_errors_never_share_an_exit_code_with_a_verdict() {
    // A typo in a CI step must not read as "hold" (2) or "fail" (1).
    for args in [
        &["verdict", "checkout", "--bogus"][..],
        &["verdict"][..],
        &["verdict", "checkout", "--looks", "3"][..],
        &["nosuchcommand"][..],
    ] {
        let (code, _, stderr) = slogate(args);
        assert_eq!(code, 64, "{args:?}: {stderr}");
        assert!(stderr.contains("error"), "{args:?}: {stderr}");
    }
    // Help is an answer, and it lists the exit codes.
    let (code, stdout, _) = slogate(&["--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("64 usage error"), "{stdout}");
}

/// Sends v1 (fast, clean) and v2 (slow, 10% errors) of `checkout` over OTLP/gRPC; returns the
/// spans sent per version.
fn send_canary(grpc: u16) -> (u64, u64) {
    let target = Target {
        endpoint: format!("http://127.0.0.1:{grpc}"),
        ..Target::default()
    };
    let v1 = CohortSpec::new("checkout", "v1", LatencyDist::lognormal(20.0, 0.3));
    let mut v2 = CohortSpec::new("checkout", "v2", LatencyDist::lognormal(80.0, 0.3));
    v2.error_rate = 0.1;
    let mut sc = Scenario::new(
        target,
        Rate::PerSecond(2000.0),
        Duration::from_millis(1500),
        vec![v1, v2],
    );
    sc.batch_size = 100;
    sc.seed = 16;
    let report = slogate_load::run_blocking(&sc).expect("load run");
    assert_eq!(report.requests_failed, 0, "{:?}", report.first_error);
    let spans = |v: &str| {
        report
            .per_cohort
            .iter()
            .find(|c| c.version == v)
            .map_or(0, |c| c.spans)
    };
    (spans("v1"), spans("v2"))
}

/// The whole of stdout as exactly one JSON document: trailing text fails the parse.
fn one_document(args: &[&str], out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{args:?}: {e}: stdout is\n{out}"))
}

const GATE: &str = "
gates:
  - name: release
    service: checkout
    window: 5m
    min_requests: 100
    canary: {version: v2}
    baseline: {version: v1}
    criteria:
      - {name: p95-ratio, metric: latency_p95, compare: ratio, pass: 1.1, fail: 1.3}
";

#[test]
fn every_command_prints_one_json_document() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("history");
    let cfg_text = format!(
        "windows:\n  slot: 1s\n  fine_retention: 10m\n  coarse_slot: 10s\n  coarse_retention: 1h\nhistory:\n  dir: {}\n  flush_interval: 1s\n{GATE}",
        dir.display()
    );
    let cfg_path = data.path().join("slogate.yaml");
    std::fs::write(
        &cfg_path,
        format!("# slogate configuration (cli test)\n{cfg_text}"),
    )
    .unwrap();
    let cfg = cfg_path.to_str().unwrap();
    let dir_s = dir.to_str().unwrap();
    let server = Server::start(&cfg_text);
    let api = server.api_url("");
    let (v1, v2) = send_canary(server.grpc);
    assert!(v1 > 500 && v2 > 500, "{v1} {v2}");
    // The history holds every span once the writer has flushed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, out, _) = slogate(&[
            "sql",
            "SELECT sum(requests) FROM requests",
            "--format",
            "json",
            "--server",
            &api,
        ]);
        let got = serde_json::from_str::<Value>(&out).ok();
        if got.as_ref().and_then(|v| v["rows"][0][0].as_u64()) == Some(v1 + v2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "history never held {}: {out}",
            v1 + v2
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // One live verdict, in the history before the report reads it.
    let (code, _, err) = slogate(&["verdict", "release", "--server", &api]);
    assert_eq!(code, 1, "{err}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, out, _) = slogate(&[
            "sql",
            "SELECT count(*) FROM verdicts",
            "--format",
            "csv",
            "--server",
            &api,
        ]);
        if out.lines().nth(1).is_some_and(|n| n != "0") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no verdict in the history: {out}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // (arguments, exit code, what the document must hold)
    type Check = fn(&Value, u64, u64);
    let cases: &[(&[&str], i32, Check)] = &[
        (
            &["verdict", "release", "--format", "json", "--server", &api],
            1,
            |v, _, v2| {
                // The API's verdict document: slow v2 against fast v1 fails.
                assert_eq!(v["gate"], "release");
                assert_eq!(v["verdict"], "fail");
                assert_eq!(v["decision"], "rollback");
                assert_eq!(v["canary"]["requests"].as_u64(), Some(v2));
                assert_eq!(v["criteria"][0]["name"], "p95-ratio");
                assert!(!v["reasons"].as_array().unwrap().is_empty(), "{v}");
            },
        ),
        (
            &[
                "sli",
                "--service",
                "checkout",
                "--version",
                "v2",
                "--format",
                "json",
                "--server",
                &api,
            ],
            0,
            |v, _, v2| {
                assert_eq!(v["requests"].as_u64(), Some(v2));
                assert!(v["latency_ms"]["p95"].as_f64().unwrap() > 50.0, "{v}");
            },
        ),
        (
            &[
                "sql",
                "SELECT version, sum(requests) AS n FROM requests GROUP BY 1 ORDER BY 1",
                "--format",
                "json",
                "--server",
                &api,
            ],
            0,
            |v, v1, v2| {
                assert_eq!(v["columns"], serde_json::json!(["version", "n"]));
                assert_eq!(v["rows"], serde_json::json!([["v1", v1], ["v2", v2]]));
                assert_eq!(v["truncated"], false);
            },
        ),
        (
            &[
                "sql",
                "SELECT count(DISTINCT version) FROM requests",
                "--format",
                "json",
                "--dir",
                dir_s,
            ],
            0,
            |v, _, _| {
                assert_eq!(v["rows"][0][0], 2, "{v}");
            },
        ),
        (
            &[
                "sla",
                "--service",
                "checkout",
                "--hours",
                "1",
                "--error-rate",
                "1%",
                "--format",
                "json",
                "--config",
                cfg,
            ],
            1,
            |v, v1, v2| {
                // v2's 10% errors break a 1% target over the whole service.
                assert_eq!(v["service"], "checkout");
                assert_eq!(v["requests"].as_u64(), Some(v1 + v2));
                assert_eq!(v["result"], "fail");
                assert_eq!(v["checks"][0]["outcome"], "fail");
            },
        ),
        (
            &[
                "report", "release", "--since", "1h", "--format", "json", "--config", cfg,
            ],
            0,
            |v, v1, v2| {
                assert_eq!(v["gate"], "release");
                assert_eq!(v["canary"]["requests"].as_u64(), Some(v2));
                assert_eq!(v["baseline"]["requests"].as_u64(), Some(v1));
                assert_eq!(v["recommendation"]["decision"], "rollback");
                // The verdict above was recorded: a change with its time and value.
                assert_eq!(v["verdicts"]["changes"][0]["verdict"], "fail", "{v}");
                assert!(v["verdicts"]["changes"][0]["at_unix_ms"].is_i64(), "{v}");
            },
        ),
        (
            &[
                "baseline",
                "capture",
                "--name",
                "v1-now",
                "--service",
                "checkout",
                "--version",
                "v1",
                "--from",
                "-1h",
                "--format",
                "json",
                "--dir",
                dir_s,
            ],
            0,
            |v, v1, _| {
                assert!(v["saved"].as_str().unwrap().ends_with("v1-now.json"), "{v}");
                assert_eq!(v["baseline"]["name"], "v1-now");
                assert_eq!(v["baseline"]["total"]["requests"].as_u64(), Some(v1));
            },
        ),
        (
            &["baseline", "list", "--format", "json", "--dir", dir_s],
            0,
            |v, _, _| {
                assert_eq!(v["baselines"][0]["name"], "v1-now", "{v}");
            },
        ),
        (
            &[
                "baseline", "show", "v1-now", "--format", "json", "--dir", dir_s,
            ],
            0,
            |v, v1, _| {
                assert_eq!(v["total"]["requests"].as_u64(), Some(v1));
                assert_eq!(v["selector"], "service=checkout,version=v1");
            },
        ),
        (
            &[
                "baseline", "delete", "v1-now", "--format", "json", "--dir", dir_s,
            ],
            0,
            |v, _, _| {
                assert_eq!(v["deleted"], "v1-now");
            },
        ),
        (
            &["config", "check", cfg, "--format", "json"],
            0,
            |v, _, _| {
                assert_eq!(v["ok"], true);
                assert_eq!(v["slot_seconds"], 1);
                assert_eq!(v["gates"], 1);
            },
        ),
        (
            &["config", "show", cfg, "--format", "json"],
            0,
            |v, _, _| {
                assert_eq!(v["gates"][0]["name"], "release", "{v}");
                assert_eq!(v["gates"][0]["canary"]["version"], "v2", "{v}");
            },
        ),
    ];
    for (args, want_code, check) in cases {
        let (code, out, err) = slogate(args);
        assert_eq!(code, *want_code, "{args:?}: {err}");
        check(&one_document(args, &out), v1, v2);
    }

    // Failures with --format json: nothing on stdout, one `{"error": ...}` on stderr, and the
    // exit code of the failure (3 refused, 4 unreachable, 2 too little data).
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["verdict", "nope", "--format", "json", "--server", &api],
            3,
            "nope",
        ),
        (
            &[
                "sli",
                "--service",
                "a",
                "--format",
                "json",
                "--server",
                "http://127.0.0.1:1",
            ],
            4,
            "cannot connect",
        ),
        (
            &["sql", "SELEC 1", "--format", "json", "--server", &api],
            3,
            "400",
        ),
        (
            &[
                "baseline", "show", "missing", "--format", "json", "--dir", dir_s,
            ],
            3,
            "missing",
        ),
        (
            &[
                "baseline",
                "capture",
                "--name",
                "empty",
                "--service",
                "nobody",
                "--from",
                "-1h",
                "--format",
                "json",
                "--dir",
                dir_s,
            ],
            2,
            "no requests",
        ),
        (
            &["report", "nope", "--format", "json", "--config", cfg],
            3,
            "nope",
        ),
        (
            &["config", "show", "/nonexistent.yaml", "--format", "json"],
            3,
            "cannot read",
        ),
    ];
    for (args, want_code, fragment) in cases {
        let (code, out, err) = slogate(args);
        assert_eq!(code, *want_code, "{args:?}: {err}");
        assert_eq!(out, "", "{args:?}");
        let e: Value =
            serde_json::from_str(&err).unwrap_or_else(|e| panic!("{args:?}: {e}: {err}"));
        assert!(
            e["error"].as_str().unwrap().contains(fragment),
            "{args:?}: {e}"
        );
    }
    // The same failure without --format json is text.
    let (code, _, err) = slogate(&["verdict", "nope", "--server", &api]);
    assert_eq!(code, 3);
    assert!(err.starts_with("error: "), "{err}");

    // Off a terminal nothing is coloured and no progress line is drawn; on a terminal (a
    // pseudo-terminal from `script`) the verdict is coloured unless NO_COLOR is set.
    let (_, table, err) = slogate(&["verdict", "release", "--server", &api]);
    assert!(table.contains("VERDICT: FAIL -> ROLLBACK"), "{table}");
    assert!(
        !table.contains('\x1b') && !err.contains('\x1b'),
        "{table}{err}"
    );
    let (code, _, err) = slogate(&["report", "release", "--since", "1h", "--config", cfg]);
    assert_eq!(code, 0);
    assert_eq!(err, "", "no progress off a terminal");
    let on_terminal = |no_color: Option<&str>| {
        let mut cmd = Command::new("script");
        cmd.args(["-q", "-e", "-c"])
            .arg(format!(
                "{} verdict release --server {api}",
                env!("CARGO_BIN_EXE_slogate")
            ))
            .arg("/dev/null")
            .env_remove("NO_COLOR");
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        let out = cmd.output().expect("script(1) from util-linux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let coloured = on_terminal(None);
    assert!(
        coloured.contains("\x1b[1;31mVERDICT: FAIL -> ROLLBACK\x1b[0m"),
        "{coloured:?}"
    );
    let plain = on_terminal(Some("1"));
    assert!(plain.contains("VERDICT: FAIL -> ROLLBACK"), "{plain:?}");
    assert!(!plain.contains('\x1b'), "{plain:?}");

    // A reader that stops early (`| head -1`) is not a failure and never a panic (exit 101).
    let query = "SELECT repeat('x', 2000000) AS big";
    let out = Command::new("bash")
        .args([
            "-c",
            r#""$0" sql "$1" --server "$2" | head -1; exit "${PIPESTATUS[0]}""#,
            env!("CARGO_BIN_EXE_slogate"),
            query,
            &api,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "big");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn every_subcommand_help_ends_with_examples() {
    // The subcommands as `--help` lists them, recursively: a new command without examples fails.
    fn subcommands(help: &str) -> Vec<String> {
        help.lines()
            .skip_while(|l| !l.starts_with("Commands:"))
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|c| *c != "help")
            .map(String::from)
            .collect()
    }
    let mut todo: Vec<Vec<String>> = vec![vec![]];
    let mut seen = 0;
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let (code, help, err) = slogate(&args);
        assert_eq!(code, 0, "{args:?}: {err}");
        let examples = help
            .find("\nExamples:\n")
            .unwrap_or_else(|| panic!("{args:?} has no examples:\n{help}"));
        assert!(
            help[examples..].contains("\n  slogate "),
            "{args:?}: the examples run slogate:\n{help}"
        );
        for sub in subcommands(&help) {
            todo.push(path.iter().cloned().chain([sub]).collect());
        }
        seen += 1;
    }
    // slogate, 8 commands, config's 2 and baseline's 4.
    assert_eq!(seen, 15);
}

/// A server started with `--log-format json`; its stderr lines are collected.
struct JsonLogServer {
    child: std::process::Child,
    grpc: u16,
    api: u16,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Drop for JsonLogServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl JsonLogServer {
    fn start(extra: &str) -> JsonLogServer {
        // Free ports may be taken between the probe and the bind: retry with new ones.
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let (grpc, http, api) = (free_port(), free_port(), free_port());
            let path = dir.path().join("slogate.yaml");
            std::fs::write(
                &path,
                format!("# slogate configuration (json logs)\nserver:\n  otlp_grpc: 127.0.0.1:{grpc}\n  otlp_http: 127.0.0.1:{http}\n  http: 127.0.0.1:{api}\n  shutdown_grace: 1s\n{extra}"),
            )
            .unwrap();
            let mut child = Command::new(env!("CARGO_BIN_EXE_slogate"))
                .args(["serve", "--log-format", "json", "--config"])
                .arg(&path)
                .current_dir(dir.path())
                .env("SLOGATE_LOG", "info")
                .env_remove("SLOGATE_LOG_FORMAT")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let (stderr, sink) = (child.stderr.take().unwrap(), log.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push(line);
                }
            });
            let server = JsonLogServer {
                child,
                grpc,
                api,
                log,
                _dir: dir,
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            let client = reqwest::blocking::Client::new();
            let ready = loop {
                let url = format!("http://127.0.0.1:{api}/readyz");
                if client.get(url).send().is_ok_and(|r| r.status() == 200) {
                    break true;
                }
                if Instant::now() > deadline
                    || server.lines().iter().any(|l| l.contains("cannot bind"))
                {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            if ready {
                return server;
            }
        }
        panic!("slogate --log-format json did not start");
    }

    fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn verdict(&self) -> Value {
        reqwest::blocking::Client::new()
            .post(format!(
                "http://127.0.0.1:{}/api/v1/gates/release/verdict",
                self.api
            ))
            .json(&serde_json::json!({}))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }
}

#[test]
fn json_logs_carry_one_line_per_verdict_change_and_alert_transition() {
    let server = JsonLogServer::start(&format!(
        "windows:\n  slot: 1s\n  fine_retention: 10m\n  coarse_slot: 10s\n  coarse_retention: 1h\nhistory:\n  enabled: false\n{GATE}"
    ));
    // No traffic yet: inconclusive (hold). Then v2 is slow: fail (rollback), twice.
    assert_eq!(server.verdict()["verdict"], "inconclusive");
    let (_, v2) = send_canary(server.grpc);
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.verdict()["canary"]["requests"].as_u64() != Some(v2) {
        assert!(
            Instant::now() < deadline,
            "the canary never reached {v2} requests"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(server.verdict()["verdict"], "fail");
    assert_eq!(server.verdict()["verdict"], "fail");
    std::thread::sleep(Duration::from_millis(300));

    let lines = server.lines();
    assert!(lines.len() > 2, "{lines:?}");
    let events: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for e in &events {
        assert!(e["timestamp"].is_string() && e["level"].is_string(), "{e}");
    }
    let changes: Vec<&Value> = events
        .iter()
        .filter(|e| e["message"] == "gate verdict changed")
        .collect();
    // inconclusive with too little data (while the traffic arrived, perhaps more than once
    // as the cohorts filled), then fail: every line is a change.
    let verdicts: Vec<&str> = changes
        .iter()
        .map(|e| e["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts.first(), Some(&"inconclusive"), "{changes:?}");
    assert_eq!(
        verdicts.iter().filter(|v| **v == "fail").count(),
        1,
        "{changes:?}"
    );
    assert!(verdicts.windows(2).all(|w| w[0] != w[1]), "{verdicts:?}");
    let fail = changes.last().unwrap();
    assert_eq!(fail["level"], "INFO", "{fail}");
    assert_eq!(fail["gate"], "release", "{fail}");
    assert_eq!(fail["verdict"], "fail", "{fail}");
    assert_eq!(fail["decision"], "Rollback", "{fail}");
    assert!(fail["why"].as_str().unwrap().contains("p95"), "{fail}");

    // The failing verdict raised the gate's alert: one transition line, fired, with the gate
    // in its id and the reason in its summary.
    let transitions: Vec<&Value> = events
        .iter()
        .filter(|e| e["message"] == "alert transition")
        .collect();
    assert_eq!(transitions.len(), 1, "{transitions:?}");
    let t = transitions[0];
    assert_eq!(t["transition"], "fired", "{t}");
    assert_eq!(t["level"], "WARN", "{t}");
    assert_eq!(t["tier"], "P2", "{t}");
    assert!(t["alert"].as_str().unwrap().contains("release"), "{t}");
    assert!(
        t["reason"]
            .as_str()
            .unwrap()
            .contains("gate release failed"),
        "{t}"
    );
}
