//! The dashboard in a real headless Chromium: spans in over OTLP/HTTP, a gate evaluated, then the
//! page rendered by the browser and its DOM compared with the JSON the API returns in the same
//! test. Also: untrusted service names render as text, the page runs under its CSP without a
//! console error, and it says so when the API is unreachable.
//!
//! Chromium comes from `SLOGATE_CHROMIUM` (scripts/test installs Debian's `chromium` and sets it)
//! or `/usr/bin/chromium`; without it these tests fail.

use crate::harness::{Server, SpanSpec, lognormal_spans};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const HOSTILE: &str = "<img src=x onerror=document.title='pwned'>";

const CONFIG: &str = "
gates:
  - name: checkout-canary
    service: checkout
    window: 5m
    min_requests: 100
    baseline: {version: v1}
    criteria:
      - {name: p95-vs-baseline, metric: latency_p95, compare: ratio, pass: 1.1, fail: 1.3, confidence: 0.95}
      - {name: error-rate, metric: error_rate, pass: 0.01, fail: 0.02}
      - {name: queue-depth, otlp: jobs.queue.depth, aggregate: max, pass: 200, fail: 500}
slos:
  - {name: checkout-availability, service: checkout, objective: 0.999, period: 1h}
";

fn chromium() -> String {
    let path = std::env::var("SLOGATE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&path).is_file(),
        "Chromium not found at {path}: run scripts/test (it installs Debian's chromium and exports SLOGATE_CHROMIUM), or set SLOGATE_CHROMIUM"
    );
    path
}

/// What headless Chromium made of a page: the DOM after the scripts ran, and its log.
struct Rendered {
    dom: String,
    log: String,
}

/// Loads `url` in headless Chromium, lets its scripts run for `budget_ms` of virtual time
/// (network fetches pause the virtual clock), and dumps the DOM.
fn render(url: &str, budget_ms: u64) -> Rendered {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,1400",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .args(["--dump-dom", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).unwrap();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).unwrap();
        s
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish rendering {url} in 90 s; log:\n{}",
                err.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let rendered = Rendered {
        dom: out.join().unwrap(),
        log: err.join().unwrap(),
    };
    assert!(
        rendered.dom.contains("</html>"),
        "no DOM from chromium for {url}; log:\n{}",
        rendered.log
    );
    rendered
}

impl Rendered {
    /// The console messages Chromium logged (`INFO:CONSOLE(...)`) and any CSP refusal.
    fn console_problems(&self) -> Vec<&str> {
        self.log
            .lines()
            .filter(|l| {
                l.contains("Uncaught")
                    || l.contains("Refused to")
                    || l.contains("Content Security Policy")
                    || (l.contains(":CONSOLE") && l.contains("rror"))
            })
            .collect()
    }

    /// The outer HTML of the first element whose start tag contains `marker` (an attribute).
    fn element(&self, marker: &str) -> &str {
        element(&self.dom, marker).unwrap_or_else(|| {
            panic!(
                "no element with {marker} in the rendered DOM:\n{}",
                self.dom
            )
        })
    }
}

/// The outer HTML of the first element whose start tag contains `marker`, found by counting
/// nested start and end tags of the same name (the DOM dump is well-formed serialised HTML).
fn element<'a>(html: &'a str, marker: &str) -> Option<&'a str> {
    let at = html.find(marker)?;
    let start = html[..at].rfind('<')?;
    let name: String = html[start + 1..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    let (open, close) = (format!("<{name}"), format!("</{name}>"));
    let mut depth = 0usize;
    let mut pos = start + 1;
    loop {
        let next_open = html[pos..].find(&open).map(|p| p + pos);
        let next_close = html[pos..].find(&close).map(|p| p + pos)?;
        match next_open {
            Some(o) if o < next_close => {
                if html[o + open.len()..].starts_with([' ', '>']) {
                    depth += 1;
                }
                pos = o + 1;
            }
            _ => {
                if depth == 0 {
                    return Some(&html[start..next_close + close.len()]);
                }
                depth -= 1;
                pos = next_close + 1;
            }
        }
    }
}

/// Text as the DOM serialiser writes it inside an element.
fn html_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\u{a0}', "&nbsp;")
}

// The dashboard's number formats (app.js: fmtInt, fmtMs, fmtMetric, fmtBound, fmtPct).
fn fmt_int(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn fmt_ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2} ms")
    } else {
        format!("{v:.1} ms")
    }
}

fn fmt_pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

/// A criterion's value in its metric's unit.
fn fmt_metric(metric: &str, v: f64) -> String {
    match metric {
        "error_rate" => fmt_pct(v),
        m if m.starts_with("latency_") => format!("{v:.1} ms"),
        _ => panic!("the test does not format metric {metric}"),
    }
}

fn span_json(s: &SpanSpec, i: usize) -> serde_json::Value {
    let mut attrs = vec![
        serde_json::json!({"key": "http.request.method", "value": {"stringValue": s.method}}),
        serde_json::json!({"key": "http.route", "value": {"stringValue": s.route}}),
        serde_json::json!({"key": "http.response.status_code", "value": {"intValue": s.status_code.to_string()}}),
    ];
    if s.error {
        attrs.push(serde_json::json!({"key": "error.type", "value": {"stringValue": "test"}}));
    }
    serde_json::json!({
        "traceId": format!("{:032x}", i + 1),
        "spanId": format!("{:016x}", i + 1),
        "name": s.name,
        "kind": 2,
        "startTimeUnixNano": s.start_ns.to_string(),
        "endTimeUnixNano": s.end_ns.to_string(),
        "attributes": attrs,
        "status": {"code": if s.error { 2 } else { 0 }},
    })
}

/// Sends spans of one service version over OTLP/HTTP JSON, as an SDK would.
fn send(server: &Server, service: &str, version: &str, spans: &[SpanSpec]) {
    let body = serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": service}},
            {"key": "service.version", "value": {"stringValue": version}},
            {"key": "deployment.environment.name", "value": {"stringValue": "prod"}},
        ]},
        "scopeSpans": [{"spans": spans.iter().enumerate().map(|(i, s)| span_json(s, i)).collect::<Vec<_>>()}],
    }]});
    let resp = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{}/v1/traces", server.http))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().unwrap());
}

/// A server with a canary (v2) that regressed against its baseline (v1): slower and failing more.
fn regressed_canary() -> Server {
    let server = Server::start(CONFIG);
    let baseline = lognormal_spans(1, 3000, 40.0, 0.4, 500);
    let canary = lognormal_spans(2, 1000, 80.0, 0.4, 25);
    let hostile = lognormal_spans(3, 20, 5.0, 0.2, 0);
    send(&server, "checkout", "v1", &baseline);
    send(&server, "checkout", "v2", &canary);
    send(&server, HOSTILE, "v1", &hostile);
    // And its job queue grew past the fail bound (an OTLP gauge, in OTLP/JSON).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let body = serde_json::json!({"resourceMetrics": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "checkout"}},
            {"key": "service.version", "value": {"stringValue": "v2"}},
        ]},
        "scopeMetrics": [{"metrics": [{"name": "jobs.queue.depth", "unit": "{job}",
            "gauge": {"dataPoints": [{"timeUnixNano": now.to_string(), "asInt": "612"}]}}]}],
    }]});
    let resp = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{}/v1/metrics", server.http))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().unwrap());
    let sli = server.sli_when("service=checkout&window=10m", 4000);
    assert_eq!(sli["requests"], 4000, "{sli}");
    server
}

#[test]
fn dashboard_shows_what_the_api_says() {
    let server = regressed_canary();
    // The last look of a one-look analysis, so the card shows where the step stands.
    let doc = server.get_json(
        "/api/v1/gates/checkout-canary/verdict?canary.version=v2&analysis=dash-1&looks=1",
    );
    assert_eq!(doc["decision"], "rollback", "the canary regressed: {doc}");

    let page = render(&server.api_url("/"), 5000);
    assert_eq!(
        page.console_problems(),
        Vec::<&str>::new(),
        "console:\n{}",
        page.log
    );
    assert!(
        page.dom.contains("data-state=\"ok\""),
        "the page did not finish a refresh:\n{}",
        page.dom
    );
    assert!(!page.dom.contains("data-js-error"), "{}", page.dom);

    // The gate's latest verdict: decision, verdict, and every criterion's why, without a click.
    let sli_after = server.get_json("/api/v1/sli?service=checkout&window=10m");
    let verdicts = server.get_json("/api/v1/verdicts?gate=checkout-canary");
    assert_eq!(
        verdicts["verdicts"][0], doc,
        "the dashboard reads the verdict log"
    );
    let card = page.element("data-gate=\"checkout-canary\"");
    assert!(card.contains("data-decision=\"rollback\""), "{card}");
    let look = element(card, "class=\"analysis muted\"").expect("the analysis line");
    assert!(
        look.contains("dash-1") && look.contains("1 of 1") && look.contains("(final)"),
        "{look}"
    );
    assert!(
        card.contains(">rollback<") && card.contains(">fail<"),
        "decision and verdict shown: {card}"
    );
    assert!(
        card.contains(&html_text(doc["canary"]["selector"].as_str().unwrap())),
        "{card}"
    );
    assert!(
        card.contains(&fmt_int(doc["canary"]["requests"].as_u64().unwrap())),
        "{card}"
    );
    for c in doc["criteria"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let row = element(card, &format!("data-criterion=\"{name}\""))
            .unwrap_or_else(|| panic!("criterion {name} not shown in {card}"));
        let metric = c["metric"].as_str().unwrap();
        // An OTLP metric criterion shows its value in its own unit, and its sample in points.
        let fmt_metric = |metric: &str, v: f64| match c["unit"].as_str() {
            Some(unit) => format!("{v} {unit}"),
            None => fmt_metric(metric, v),
        };
        if let Some(points) = c["points"].as_u64() {
            assert_eq!((name, c["unit"].as_str()), ("queue-depth", Some("job")));
            let samples = element(row, "class=\"num samples\"").unwrap();
            assert!(samples.contains(&format!("{points} points")), "{samples}");
            assert!(
                element(row, "class=\"num observed\"")
                    .unwrap()
                    .contains("612 job")
            );
            assert!(row.contains("max(jobs.queue.depth)"), "{row}");
        }
        let observed = element(row, "class=\"num observed\"").unwrap();
        assert!(
            observed.contains(&fmt_metric(metric, c["observed"].as_f64().unwrap())),
            "{name} observed {}: {observed}",
            c["observed"]
        );
        let baseline = element(row, "class=\"num baseline\"").unwrap();
        if let Some(b) = c["baseline"].as_f64() {
            assert!(
                baseline.contains(&fmt_metric(metric, b)),
                "{name} baseline {b}: {baseline}"
            );
        }
        // A criterion with a confidence shows its interval and the fail test's level.
        let score = element(row, "class=\"num score\"").unwrap();
        if let (Some(lo), Some(hi)) = (c["ci_lower"].as_f64(), c["ci_upper"].as_f64()) {
            assert!(
                score.contains(&format!("[×{lo:.2}, ×{hi:.2}]")),
                "{name} interval [{lo}, {hi}]: {score}"
            );
            let alpha = c["alpha"].as_f64().expect("alpha with an interval");
            assert!(score.contains(&format!("α {alpha:.1e}")), "{score}");
        } else {
            assert!(!score.contains('['), "{name} has no interval: {score}");
        }
        let t = &c["threshold"];
        let (pass, fail) = (t["pass"].as_f64().unwrap(), t["fail"].as_f64().unwrap());
        let (pass_text, fail_text) = match t["comparison"].as_str().unwrap() {
            "ratio" => (format!("×{pass:.2}"), format!("×{fail:.2}")),
            "absolute" => (fmt_metric(metric, pass), fmt_metric(metric, fail)),
            other => panic!("the test does not format comparison {other}"),
        };
        let threshold = element(row, "class=\"threshold\"").unwrap();
        assert!(
            threshold.contains(&format!("pass ≤ {pass_text}"))
                && threshold.contains(&format!("fail &gt; {fail_text}")),
            "{name}: {threshold}"
        );
        let samples = element(row, "class=\"num samples\"").unwrap();
        assert!(
            c["points"].is_u64()
                || (samples.contains(&fmt_int(c["canary_requests"].as_u64().unwrap()))
                    && samples.contains(&fmt_int(c["baseline_requests"].as_u64().unwrap()))),
            "{samples}"
        );
        assert!(
            row.contains(&format!(
                "data-result=\"{}\"",
                c["result"].as_str().unwrap()
            )),
            "{row}"
        );
        assert!(
            row.contains(&html_text(c["reason"].as_str().unwrap())),
            "the reason of {name} is visible: {row}"
        );
    }
    assert!(
        doc["criteria"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["result"] == "fail"),
        "{doc}"
    );
    assert!(
        doc["criteria"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "queue-depth" && c["result"] == "fail"),
        "the queue criterion is judged: {doc}"
    );

    // Traffic: the service's row carries /api/v1/sli's figures.
    let row = page.element("data-service=\"checkout\"");
    assert!(
        row.contains(&format!(
            ">{}<",
            fmt_int(sli_after["requests"].as_u64().unwrap())
        )),
        "requests of {sli_after}: {row}"
    );
    for q in ["p50", "p95", "p99"] {
        let want = fmt_ms(sli_after["latency_ms"][q].as_f64().unwrap());
        let cell = element(row, &format!("class=\"num {q}\"")).unwrap();
        assert!(cell.contains(&want), "{q}: want {want} in {cell}");
    }
    assert!(
        element(row, "class=\"num error-rate\"")
            .unwrap()
            .contains(&fmt_pct(sli_after["error_rate"].as_f64().unwrap())),
        "{row}"
    );
    let versions = server.get_json("/api/v1/series?window=10m");
    let v2 = versions["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "checkout" && s["version"] == "v2")
        .expect("v2 series listed");
    let v2_sli = server.get_json("/api/v1/sli?service=checkout&version=v2&env=prod&operation=GET%20/cart/%7Bid%7D&window=10m");
    for k in ["requests", "errors", "latency_ms"] {
        assert_eq!(
            v2[k], v2_sli[k],
            "/api/v1/series agrees with /api/v1/sli on {k}"
        );
    }
    assert!(
        page.dom
            .contains(&fmt_ms(v2["latency_ms"]["p99"].as_f64().unwrap())),
        "the v2 series' p99 is shown"
    );

    // SLOs: the budget left as /api/v1/slos computes it.
    let slos = server.get_json("/api/v1/slos");
    let slo = &slos["slos"][0];
    let card = page.element("data-slo=\"checkout-availability\"");
    assert!(
        card.contains(&fmt_pct(slo["remaining_ratio"].as_f64().unwrap())),
        "budget of {slo}: {card}"
    );
    assert!(card.contains("99.9%"), "{card}");

    // A service name from a span is text, never markup.
    assert!(
        page.dom.contains(&html_text(HOSTILE)),
        "the hostile service name is shown as text"
    );
    assert!(
        !page.dom.contains("<img"),
        "no element was injected:\n{}",
        page.dom
    );
    assert!(!page.dom.contains("<title>pwned"), "no script ran");
}

#[test]
fn evaluate_link_posts_a_verdict_and_shows_it() {
    let server = regressed_canary();
    let before = server.get_json("/api/v1/verdicts")["verdicts"]
        .as_array()
        .unwrap()
        .len();
    let page = render(
        &server.api_url("/#evaluate?gate=checkout-canary&canary.version=v2&baseline.version=v1"),
        5000,
    );
    assert_eq!(
        page.console_problems(),
        Vec::<&str>::new(),
        "console:\n{}",
        page.log
    );
    let verdicts = server.get_json("/api/v1/verdicts");
    let all = verdicts["verdicts"].as_array().unwrap();
    assert_eq!(all.len(), before + 1, "the page evaluated the gate once");
    let result = page.element("id=\"evaluate-result\"");
    assert!(result.contains("data-decision=\"rollback\""), "{result}");
    assert!(
        result.contains(&html_text(all[0]["reasons"][0].as_str().unwrap())),
        "{result}"
    );
    assert!(
        page.element("id=\"evaluate-panel\"").contains(" open="),
        "the form is open"
    );
}

#[test]
fn sql_link_runs_the_query_and_shows_rows_or_the_error() {
    let server = Server::start("");
    let page = render(
        &server.api_url("/#sql?q=SELECT%206%20*%207%20AS%20answer%2C%20'%3Cb%3Ex'%20AS%20label"),
        3000,
    );
    assert_eq!(
        page.console_problems(),
        Vec::<&str>::new(),
        "console:\n{}",
        page.log
    );
    let result = page.element("id=\"sql-result\"");
    assert!(
        result.contains("<th>answer</th>") && result.contains(">42<"),
        "{result}"
    );
    assert!(
        result.contains("&lt;b&gt;x") && !result.contains("<b>x"),
        "values are text: {result}"
    );
    assert!(result.contains("1 row in"), "{result}");

    let bad = "SELEC 1";
    let resp = reqwest::blocking::Client::new()
        .post(server.api_url("/api/v1/sql"))
        .json(&serde_json::json!({"query": bad}))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    let error: serde_json::Value = resp.json().unwrap();
    let page = render(&server.api_url("/#sql?q=SELEC%201"), 3000);
    let result = page.element("id=\"sql-result\"");
    assert!(
        result.contains("class=\"error\"")
            && result.contains(&html_text(error["error"].as_str().unwrap())),
        "{result}"
    );
}

/// A stand-in for a network where the page loads but the API does not answer: serves the
/// dashboard's files from the real server and drops every `/api/` connection unanswered.
fn api_blackhole(upstream: String) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let upstream = upstream.clone();
            // One thread per connection: the browser may open a connection and send nothing.
            std::thread::spawn(move || serve_or_drop(stream, &upstream));
        }
    });
    port
}

fn serve_or_drop(mut stream: std::net::TcpStream, upstream: &str) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Read the whole head so that closing the socket is a clean end, not a reset.
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
        line.clear();
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    if path.starts_with("/api/") {
        return;
    }
    let resp = reqwest::blocking::get(format!("{upstream}{path}")).unwrap();
    let status = resp.status().as_u16();
    let mut head = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
    for (k, v) in resp.headers() {
        if k != "content-length" && k != "connection" && k != "transfer-encoding" {
            head.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap()));
        }
    }
    let body = resp.bytes().unwrap();
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

#[test]
fn unreachable_api_shows_a_banner() {
    let server = Server::start("");
    let port = api_blackhole(server.api_url(""));
    let page = render(&format!("http://127.0.0.1:{port}/"), 3000);
    assert!(
        page.dom.contains("data-state=\"unreachable\""),
        "{}",
        page.dom
    );
    let banner = page.element("id=\"banner\"");
    assert!(
        !banner.contains(" hidden"),
        "the banner is visible: {banner}"
    );
    assert!(
        banner.contains("unreachable since") && banner.contains("Nothing has loaded yet"),
        "{banner}"
    );
    assert!(!page.log.contains("Uncaught"), "console:\n{}", page.log);
}

#[test]
fn page_and_assets_carry_security_headers() {
    let server = Server::start("");
    for (path, content_type) in [
        ("/", "text/html"),
        ("/assets/app.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
        ("/assets/favicon.svg", "image/svg+xml"),
    ] {
        let resp = reqwest::blocking::get(server.api_url(path)).unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let h = resp.headers();
        let header = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("{path}: no {name}"))
                .to_string()
        };
        assert!(header("content-type").starts_with(content_type), "{path}");
        let csp = header("content-security-policy");
        assert!(
            csp.contains("default-src 'self'")
                && csp.contains("frame-ancestors 'none'")
                && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        // Self-contained: nothing is loaded from another origin. (The SVG namespace, which the
        // charts' elements are created in, is a name, not an address anything is fetched from.)
        let body = resp
            .text()
            .unwrap()
            .replace("'http://www.w3.org/2000/svg'", "");
        for external in ["http://", "https://", "//fonts.", "//cdn"] {
            assert!(
                !body.contains(external) || path == "/assets/favicon.svg" && external == "http://",
                "{path} refers to {external}"
            );
        }
    }
    let (_, js) = server.get("/assets/app.js").unwrap();
    assert!(
        !js.contains("innerHTML")
            && !js.contains("insertAdjacentHTML")
            && !js.contains("document.write"),
        "app.js builds the DOM from nodes only"
    );
    let (_, html) = server.get("/").unwrap();
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "no inline script or style"
    );
}

/// With `auth.api` on, the page says it needs a token, and with one given once in its address
/// (`/#token=...`) it loads the gates through the token, which then leaves the address bar.
#[test]
fn the_dashboard_works_with_an_api_token() {
    let dir = tempfile::tempdir().unwrap();
    let read = dir.path().join("read-tokens");
    std::fs::write(&read, "dashboard-read-token-0123456789\n").unwrap();
    let server = Server::start(&format!(
        "{CONFIG}auth:\n  api:\n    read_token_files: [{}]\n",
        read.display()
    ));
    let page = render(&server.api_url("/"), 3000);
    assert!(
        page.dom.contains("data-state=\"unauthorized\""),
        "{}",
        page.dom
    );
    let banner = page.element("id=\"banner\"");
    assert!(banner.contains("needs a read token"), "{banner}");
    let page = render(
        &server.api_url("/#token=dashboard-read-token-0123456789"),
        3000,
    );
    assert!(page.dom.contains("data-state=\"ok\""), "{}", page.dom);
    assert!(
        !page.dom.contains("dashboard-read-token"),
        "the token is not in the page"
    );
    assert!(!page.log.contains("Uncaught"), "console:\n{}", page.log);
}

const LIVE: &str = "
windows:
  slot: 1s
  fine_retention: 10m
  coarse_slot: 10s
  coarse_retention: 3days
alerting:
  evaluation_interval: 1s
history:
  enabled: false
gates:
  - name: checkout-live
    service: checkout
    window: 1m
    min_requests: 200
    baseline: {version: v1}
    criteria:
      - {name: p95-vs-baseline, metric: latency_p95, compare: ratio, pass: 1.1, fail: 1.3}
      - {name: error-rate, metric: error_rate, pass: 0.01, fail: 0.02}
slos:
  - {name: checkout-availability, service: checkout, objective: 0.999, period: 1h}
";

/// Saves a screenshot of `url` as headless Chromium draws it after `budget_ms` of virtual time.
fn screenshot(url: &str, budget_ms: u64, path: &std::path::Path) {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--hide-scrollbars",
            "--window-size=1280,1600",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .arg(format!("--screenshot={}", path.display()))
        .arg(url)
        .output()
        .expect("start chromium");
    assert!(
        path.exists(),
        "no screenshot of {url}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The dashboard while the load generator runs a canary regression: the gate is polled as Argo
/// would, turns `fail` while the traffic still flows, and the page then shows the failing card
/// with canary and baseline charted, and the SLO's budget charted; a screenshot is kept.
#[test]
fn the_dashboard_follows_a_live_regression_until_the_gate_fails() {
    use slogate_load::{CohortOverride, CohortSpec, LatencyDist, Phase, Rate, Scenario, Target};
    let server = Server::start(LIVE);
    let mut baseline = CohortSpec::new("checkout", "v1", LatencyDist::lognormal(40.0, 0.4));
    baseline.weight = 0.5;
    baseline.error_rate = 0.002;
    let mut canary = CohortSpec::new("checkout", "v2", LatencyDist::lognormal(40.0, 0.4));
    canary.weight = 0.5;
    canary.error_rate = 0.002;
    let canary_name = canary.display_name();
    let mut sc = Scenario::new(
        Target {
            endpoint: format!("http://127.0.0.1:{}", server.grpc),
            ..Target::default()
        },
        Rate::PerSecond(1500.0),
        Duration::from_secs(40),
        vec![baseline, canary],
    );
    // Healthy for 5 s, then the canary gets 80 % slower and fails 4 % of its requests.
    sc.phases = vec![Phase {
        name: Some("regression".into()),
        at: Duration::from_secs(5),
        rate: None,
        cohorts: [(
            canary_name,
            CohortOverride {
                weight: None,
                error_rate: Some(0.04),
                latency_multiplier: Some(1.8),
            },
        )]
        .into_iter()
        .collect(),
    }];
    sc.seed = 11;
    let load = std::thread::spawn(move || slogate_load::run_blocking(&sc).expect("load run"));

    // Polled every second, as an AnalysisTemplate would (more often than Argo, to be quick).
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(35);
    let failed = loop {
        let doc: serde_json::Value = reqwest::blocking::Client::new()
            .post(server.api_url("/api/v1/gates/checkout-live/verdict"))
            .json(&serde_json::json!({"canary": {"version": "v2"}}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        seen.push(doc["verdict"].as_str().unwrap().to_string());
        if doc["verdict"] == "fail" {
            break doc;
        }
        assert!(Instant::now() < deadline, "the gate never failed: {seen:?}");
        std::thread::sleep(Duration::from_secs(1));
    };
    assert_ne!(seen[0], "fail", "the canary was healthy at first: {seen:?}");
    assert!(
        !load.is_finished(),
        "the gate failed only after the load ended"
    );
    assert_eq!(failed["decision"], "rollback", "{failed}");

    let page = render(&server.api_url("/"), 6000);
    assert_eq!(
        page.console_problems(),
        Vec::<&str>::new(),
        "console:\n{}",
        page.log
    );
    let card = page.element("data-gate=\"checkout-live\"");
    assert!(card.contains("data-decision=\"rollback\""), "{card}");
    assert!(card.contains(">fail<"), "{card}");
    assert!(
        !card.contains("class=\"card decision-rollback stale"),
        "{card}"
    );
    // Canary and baseline over time: both drawn in each chart, with their points.
    for chart in ["error rate", "latency"] {
        let fig = element(card, &format!("data-chart=\"{chart}\"")).expect("the chart");
        let points: u64 = fig
            .split("data-points=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!(points >= 2, "{chart}: {fig}");
        for cohort in ["canary", "baseline"] {
            assert!(
                fig.contains(&format!("class=\"line {cohort}"))
                    || fig.contains(&format!("class=\"dot {cohort}")),
                "{chart} has no {cohort}: {fig}"
            );
        }
    }
    assert!(card.contains("data-series=\"canary p99\""), "{card}");
    // A rollout under ten minutes old is charted ten seconds a step.
    assert!(card.contains("data-step=\"10\""), "{card}");
    // The timeline the charts read says the canary got worse than the baseline.
    let timeline =
        server.get_json("/api/v1/gates/checkout-live/timeline?canary.version=v2&range=10m&step=1m");
    let p95 = |side: &str| -> f64 {
        let steps = timeline[side]["steps"].as_array().unwrap();
        let last = steps
            .iter()
            .rev()
            .find(|s| s["requests"].as_u64() > Some(0));
        last.unwrap()["latency_ms"]["p95"].as_f64().unwrap()
    };
    assert!(p95("canary") > p95("baseline"), "{timeline}");
    // The SLO's budget over time.
    let slo = page.element("data-slo=\"checkout-availability\"");
    let budget = element(slo, "data-chart=\"budget remaining\"").expect("the budget chart");
    assert!(!budget.contains("data-points=\"0\""), "{budget}");

    let png =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-live-regression.png");
    let _ = std::fs::remove_file(&png);
    screenshot(&server.api_url("/"), 6000, &png);
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(bytes.len() > 20_000, "{} bytes: a blank page?", bytes.len());
    eprintln!("screenshot: {}", png.display());

    let report = load.join().unwrap();
    assert_eq!(report.requests_failed, 0, "{:?}", report.first_error);
}
