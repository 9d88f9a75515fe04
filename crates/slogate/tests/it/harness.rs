//! Starts a real `slogate serve` process on free loopback ports and talks to its API.

use rand::SeedableRng;
use rand_distr::{Distribution, LogNormal};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The routing key every test server is given (PagerDuty keys are 32 characters).
pub const TEST_ROUTING_KEY: &str = "R0123456789abcdef0123456789abcde";

pub struct Server {
    child: Child,
    pub grpc: u16,
    pub http: u16,
    pub api: u16,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// The configuration file the server was started with (a reload re-reads it).
    pub config: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// A loopback port free at the time of the call.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// Starts the server with `extra` YAML appended to a config that only sets the ports.
    /// Ports are picked free and released before the server binds them, so another test may
    /// grab one in between: a start that fails to bind is retried with new ports.
    pub fn start(extra: &str) -> Server {
        Server::start_with("", extra)
    }

    /// Like [`Server::start`], with `server_extra` (indented lines) added to the `server:`
    /// section.
    pub fn start_with(server_extra: &str, extra: &str) -> Server {
        for attempt in 1..=5 {
            match Server::try_start(server_extra, extra) {
                Ok(server) => return server,
                Err(log) if log.contains("cannot bind") && attempt < 5 => continue,
                Err(log) => panic!("slogate did not become ready; log:\n{log}"),
            }
        }
        unreachable!()
    }

    fn try_start(server_extra: &str, extra: &str) -> Result<Server, String> {
        let dir = tempfile::tempdir().unwrap();
        let (grpc, http, api) = (free_port(), free_port(), free_port());
        // 2 s of shutdown grace unless the test sets its own.
        let grace = if server_extra.contains("shutdown_grace:") {
            ""
        } else {
            "  shutdown_grace: 2s\n"
        };
        let config = format!(
            "# slogate configuration (integration test)\nserver:\n  otlp_grpc: 127.0.0.1:{grpc}\n  otlp_http: 127.0.0.1:{http}\n  http: 127.0.0.1:{api}\n{grace}{server_extra}{extra}"
        );
        let path = dir.path().join("slogate.yaml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_slogate"))
            .args(["serve", "--config"])
            .arg(&path)
            // Relative data paths (history, outbox) land in the test's own directory.
            .current_dir(dir.path())
            .env("SLOGATE_LOG", "info")
            .env("SLOGATE_PAGERDUTY_ROUTING_KEY", TEST_ROUTING_KEY)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start slogate");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut server = Server {
            child,
            grpc,
            http,
            api,
            log,
            config: path,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok((200, _)) = server.get("/readyz") {
                return Ok(server);
            }
            if let Ok(Some(_)) = server.child.try_wait() {
                // Exited: give the log reader a moment to collect the last lines.
                std::thread::sleep(Duration::from_millis(100));
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(server.log.lock().unwrap().join("\n"))
    }

    pub fn api_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.api)
    }

    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        let resp = reqwest::blocking::get(self.api_url(path)).map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().map_err(|e| e.to_string())?))
    }

    /// `POST /api/v1/sql` with `query`: the status and the JSON answer.
    pub fn sql(&self, query: &str) -> (u16, serde_json::Value) {
        let resp = reqwest::blocking::Client::new()
            .post(self.api_url("/api/v1/sql"))
            .json(&serde_json::json!({ "query": query }))
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().unwrap())
    }

    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path).unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Polls the SLI until it reports `want` requests (the exporters are asynchronous).
    pub fn sli_when(&self, query: &str, want: u64) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.get_json(&format!("/api/v1/sli?{query}"));
            if v["requests"].as_u64() == Some(want) || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The value of one sample line of `/metrics`.
    pub fn metric(&self, line_prefix: &str) -> f64 {
        let (_, body) = self.get("/metrics").unwrap();
        body.lines()
            .find(|l| l.starts_with(line_prefix) && l[line_prefix.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("metric {line_prefix} not found in:\n{body}"))
    }
}

impl Server {
    /// The server's process id (for `/proc/<pid>` figures: peak memory, CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`HUP`, `TERM`...) to the process with `kill`.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -{signal} {pid}");
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The log lines so far, joined.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// A number from `/proc/<pid>/status` (`"VmHWM:"` and `"VmRSS:"` in KiB, `"Threads:"`).
    pub fn proc_status(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{key} in /proc/{}/status", self.pid()))
    }

    /// Kills the process with SIGKILL, as a crash or an OOM kill would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM, as Kubernetes does, and waits for the exit (at most `within`): whether
    /// it exited successfully, and its log.
    pub fn terminate(mut self, within: Duration) -> (bool, String) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "slogate did not exit within {within:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        // The log reader gets the last lines.
        std::thread::sleep(Duration::from_millis(200));
        (status.success(), self.log.lock().unwrap().join("\n"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` every 20 ms until it gives a value; panics naming `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (at most `timeout`) for two events at the PagerDuty stand-in, then 3 s more for any
/// other: exactly one trigger and one resolve of the same incident. Returns them.
pub fn one_incident(
    pd: &slogate_pagerduty_mock::MockServer,
    timeout: Duration,
) -> Vec<serde_json::Value> {
    wait_for("a trigger and a resolve", timeout, || {
        (pd.accepted().len() >= 2).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let events = pd.accepted();
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[0]["event_action"], "trigger");
    assert_eq!(events[1]["event_action"], "resolve");
    assert_eq!(events[0]["dedup_key"], events[1]["dedup_key"]);
    events
}

/// One span to send, with exact times.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SpanSpec {
    pub name: String,
    pub method: String,
    pub route: String,
    pub start_ns: u64,
    pub end_ns: u64,
    pub error: bool,
    pub status_code: i64,
}

impl SpanSpec {
    pub fn duration_ns(&self) -> u64 {
        self.end_ns - self.start_ns
    }
}

/// `n` spans with lognormal latencies (median `median_ms`), every `error_every`-th an error
/// (alternating status ERROR and HTTP 503), starting now.
pub fn lognormal_spans(
    seed: u64,
    n: usize,
    median_ms: f64,
    sigma: f64,
    error_every: usize,
) -> Vec<SpanSpec> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dist = LogNormal::new((median_ms * 1e6).ln(), sigma).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    (0..n)
        .map(|i| {
            let d = dist.sample(&mut rng).max(1_000.0) as u64;
            let start = now - 5_000_000_000 + i as u64 * 1_000;
            let error = error_every > 0 && i % error_every == 0;
            SpanSpec {
                name: "GET /cart".into(),
                method: "GET".into(),
                route: "/cart/{id}".into(),
                start_ns: start,
                end_ns: start + d,
                error: error && i % (2 * error_every) == 0,
                status_code: if error && i % (2 * error_every) != 0 {
                    503
                } else {
                    200
                },
            }
        })
        .collect()
}

/// Exact nearest-rank quantile.
pub fn exact_quantile(sorted: &[u64], q: f64) -> u64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank - 1]
}

/// Asserts the served p50/p95/p99 are within 1% of the exact quantiles of `spans`.
pub fn assert_quantiles(sli: &serde_json::Value, spans: &[SpanSpec]) {
    let mut durations: Vec<u64> = spans.iter().map(SpanSpec::duration_ns).collect();
    durations.sort_unstable();
    for (q, key) in [(0.5, "p50"), (0.95, "p95"), (0.99, "p99")] {
        let exact_ms = exact_quantile(&durations, q) as f64 / 1e6;
        let served = sli["latency_ms"][key]
            .as_f64()
            .unwrap_or_else(|| panic!("no {key} in {sli}"));
        let err = (served - exact_ms).abs() / exact_ms;
        assert!(
            err <= 0.01,
            "{key}: served {served} ms, exact {exact_ms} ms, error {:.3}%",
            err * 100.0
        );
    }
}

pub fn expected_errors(spans: &[SpanSpec]) -> u64 {
    spans
        .iter()
        .filter(|s| s.error || s.status_code >= 500)
        .count() as u64
}

/// Runs the `slogate` binary: (exit code, stdout, stderr).
pub fn slogate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_slogate"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
