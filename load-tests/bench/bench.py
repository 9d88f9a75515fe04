#!/usr/bin/env python3
"""End-to-end benchmark of slogate and of the OpenTelemetry Collector: spans and metrics.

Issue 6. Python 3.11 stdlib only. `run.sh` builds the binaries and calls this script.

For each run it starts a fresh server on free loopback ports, drives it with `slogate-load`
at `--rate max` (or a fixed rate), and reports from the server process's own accounting:

- spans/s accepted: the server's own counter (slogate_spans_accepted_total, or the Collector's
  otelcol_receiver_accepted_spans) over the generator's elapsed time;
- CPU: utime+stime of the server process (/proc/PID/stat, all threads) over the run -> ns/span;
- peak RSS (VmHWM), peak anonymous RSS (RssAnon sampled every 50 ms: heap and stacks, without
  the pages of the binary itself) and RSS growth over the run (VmRSS after - before);
- series and bytes/series (slogate_series_memory_bytes / slogate_series, and dRSS / series);
- query latency under load: slogate's verdict endpoint polled at --verdict-hz (default 20/s);
  for the Collector, its Prometheus exposition scraped at 1/s (context only: it has no verdicts).

With `taskset` present and --pin (default), the server is pinned to core 0 and the generator
(and this script) to core 1, so the figures are for ONE server core / one worker.

Metrics runs (`*-metrics-*`): `slogate-load run --signal metrics` sends --metric-series cumulative
streams (gauges, sums, an up-down counter, explicit and exponential histograms, summaries) from
--metric-services services at a fixed --metric-rate data points/s (default chosen so that the
Collector keeps up on one core). Reported: points/s accepted (the server's own counter:
otelcol_receiver_accepted_metric_points, or --slogate-points-metric; the generator's count
if the server has none), server CPU ns per data point, peak RSS and RSS growth per series
(ΔRSS / series; series from the server where it exposes them, else as sent). Nothing queries
either server during these runs: the figures are for ingest and per-series state alone.
slogate runs use the config template load-tests/bench/slogate-metrics.yaml; the Collector runs
load-tests/collector/config-metrics.yaml (otlp -> prometheus exporter).

TLS runs (`slogate-grpc-tls`, `slogate-http-tls`): the same load as `slogate-grpc` and
`slogate-http` against a slogate with `server.tls` (a throwaway CA and an ECDSA P-256 server
certificate for 127.0.0.1, made with the `openssl` CLI) and bearer tokens on ingest and the API
(`auth`); the generator speaks TLS trusting that CA and sends the ingest token, the verdict loop
and the /metrics reads go over HTTPS with the API token. The table's last lines give the cost of
TLS (+ the per-request token check) as the difference in server CPU ns/span from the plain run
of the same protocol in the same invocation:
`--only slogate-grpc,slogate-grpc-tls,slogate-http,slogate-http-tls`.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import resource
import shutil
import signal
import re
import socket
import ssl
import string
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- process accounting

def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    # rest[0] is field 3 (state); utime is field 14, stime field 15.
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def system_busy_s() -> float:
    """Busy CPU seconds of the whole machine (all cores) from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]  # idle + iowait
    return (sum(v[:8]) - idle) / CLK_TCK


def children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def self_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connection(port: int, timeout: float, tls: ssl.SSLContext | None = None) -> http.client.HTTPConnection:
    if tls is not None:
        return http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=tls)
    return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)


def http_get(port: int, path: str, timeout: float = 5.0, tls: ssl.SSLContext | None = None,
             headers: dict | None = None) -> tuple[int, str]:
    c = connection(port, timeout, tls)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()


def prom_sum(text: str, prefix: str) -> float:
    """Sum of all samples whose metric name starts with prefix."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(prefix) and not line.startswith("#"):
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name.startswith(prefix):
                total += float(line.rsplit(" ", 1)[1] if "}" not in line else line.rsplit("}", 1)[1].split()[0])
    return total


def prom_count(text: str, name: str) -> int:
    return sum(1 for l in text.splitlines() if l.startswith(name + "{") or l.startswith(name + " "))


_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def prom_series(text: str, skip=("target_info", "otel_scope_info")) -> int:
    """Distinct series in a Prometheus text exposition: a histogram or summary (all its
    _bucket/_sum/_count lines, every le/quantile) is one series, as an OTLP stream is."""
    types: dict[str, str] = {}
    seen: set[tuple] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                types[parts[2]] = parts[3]
            continue
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition("{")
        name = name.split(" ", 1)[0]
        base = name
        for suf in ("_bucket", "_sum", "_count", "_gcount", "_gsum"):
            if name.endswith(suf) and types.get(name[: -len(suf)]) in ("histogram", "summary", "gaugehistogram"):
                base = name[: -len(suf)]
                break
        if base in skip:
            continue
        labels = tuple(sorted((k, v) for k, v in _LABEL.findall(rest.rsplit("}", 1)[0]) if k not in ("le", "quantile")))
        seen.add((base, labels))
    return len(seen)


def prom_select(text: str, selector: str) -> float:
    """Sum of the samples matching `name` or `name{k="v",...}` (those labels, any others)."""
    name, _, want = selector.partition("{")
    want_labels = set(_LABEL.findall(want))
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, rest = line.partition("{")
        if head.split(" ", 1)[0] != name:
            continue
        if "{" in line:
            labels, _, value = rest.rpartition("}")
        else:
            labels, value = "", line.split(" ", 1)[1]
        if want_labels <= set(_LABEL.findall(labels)):
            total += float(value.split()[0])
    return total


def http_post(port: int, path: str, body: bytes, ctype: str, timeout: float = 5.0) -> tuple[int, str]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("POST", path, body=body, headers={"Content-Type": ctype})
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()


class NotServed(RuntimeError):
    """The server has no OTLP metrics receiver (HTTP 404/405, gRPC UNIMPLEMENTED)."""


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-q * len(s) // 1)) - 1))
    return s[k]


# ---------------------------------------------------------------- query loop under load

class AnonSampler(threading.Thread):
    """Peak RssAnon (heap and stacks, without the binary's mapped pages), sampled every 50 ms."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak_kib = pid, 0
        self.stop_ev = threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            try:
                self.peak_kib = max(self.peak_kib, status_kib(self.pid, "RssAnon"))
            except (OSError, ValueError):
                pass
            self.stop_ev.wait(0.05)


class QueryLoop(threading.Thread):
    """GETs `path` at `hz` on a keep-alive connection and records each latency (ms)."""

    def __init__(self, port: int, path: str, hz: float, tls: ssl.SSLContext | None = None,
                 headers: dict | None = None):
        super().__init__(daemon=True)
        self.port, self.path, self.period = port, path, 1.0 / hz
        self.tls, self.headers = tls, headers or {}
        self.lat_ms: list[float] = []
        self.statuses: dict[str, int] = {}
        self.stop_ev = threading.Event()

    def run(self):
        # The client shares a core with the generator; as a real-time thread it is not left
        # waiting behind the generator, so the latency measured is the server's (plus ~0.1 ms
        # of Python). Needs CAP_SYS_NICE; without it the figures include client scheduling.
        self.rt = False
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
            self.rt = True
        except (OSError, AttributeError):
            pass
        conn = None
        nxt = time.perf_counter()
        while not self.stop_ev.is_set():
            if conn is None:
                conn = connection(self.port, 10, self.tls)
            t0 = time.perf_counter()
            try:
                conn.request("GET", self.path, headers=self.headers)
                r = conn.getresponse()
                body = r.read()
                dt = (time.perf_counter() - t0) * 1e3
                self.lat_ms.append(dt)
                key = str(r.status)
                if r.status == 200 and body.startswith(b"{"):
                    try:
                        key += ":" + json.loads(body).get("verdict", "?")
                    except ValueError:
                        pass
                self.statuses[key] = self.statuses.get(key, 0) + 1
            except (OSError, http.client.HTTPException) as e:
                self.statuses["error:" + type(e).__name__] = self.statuses.get("error:" + type(e).__name__, 0) + 1
                conn.close()
                conn = None
            nxt += self.period
            delay = nxt - time.perf_counter()
            if delay > 0:
                self.stop_ev.wait(delay)
            else:
                nxt = time.perf_counter()
        if conn is not None:
            conn.close()

    def stop(self):
        self.stop_ev.set()
        self.join(5)


# ---------------------------------------------------------------- servers

GATE_YAML = """\
gates:
  - name: checkout
    service: checkout
    window: 5m
    min_requests: 100
    criteria:
      - {name: latency-shift, test: mann_whitney, confidence: 0.99, max_effect: 0.55}
      - {name: errors-vs-baseline, test: two_proportion, confidence: 0.99, max_difference: 0.005}
      - {name: p95-vs-baseline, metric: latency_p95, compare: ratio, pass: 1.1, fail: 1.3}
    phases:
      - name: canary
        criteria:
          - {name: error-rate, metric: error_rate, pass: 0.02, fail: 0.05}
          - {name: p95, metric: latency_p95, pass: 5000, fail: 10000}
"""

VERDICT_PATH = "/api/v1/gates/checkout/verdict?phase=canary&canary.version=v2&baseline.version=v1"


class Secrets:
    """A throwaway CA, a server certificate for 127.0.0.1 signed by it, and the token files of a
    secured slogate, written to `directory` with the `openssl` CLI."""

    def __init__(self, directory: str):
        if shutil.which("openssl") is None:
            raise RuntimeError("the TLS runs need the openssl CLI to make a throwaway CA and certificate")
        os.makedirs(directory, exist_ok=True)
        self.ca = os.path.join(directory, "ca.pem")
        self.cert = os.path.join(directory, "tls.crt")
        self.key = os.path.join(directory, "tls.key")
        ca_key, csr, ext = (os.path.join(directory, n) for n in ("ca.key", "tls.csr", "ext.cnf"))
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        with open(ext, "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
                    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                    "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
        for cmd in (
            ["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", self.ca, "-days", "2",
             "-subj", "/CN=slogate bench CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            ["openssl", "req", *ec, "-keyout", self.key, "-out", csr, "-subj", "/CN=slogate bench"],
            ["openssl", "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", ca_key, "-CAcreateserial",
             "-out", self.cert, "-days", "2", "-extfile", ext],
        ):
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd[:3])} failed: {out.stderr[-600:]}")
        self.ingest_token_file = os.path.join(directory, "ingest-token")
        self.api_token_file = os.path.join(directory, "api-token")
        self.api_token = os.urandom(16).hex()
        with open(self.ingest_token_file, "w") as f:
            f.write(os.urandom(16).hex() + "\n")
        with open(self.api_token_file, "w") as f:
            f.write(self.api_token + "\n")
        self.context = ssl.create_default_context(cafile=self.ca)

    def config(self) -> tuple[str, str]:
        """(lines under `server:`, the top-level `auth:` section) of slogate's configuration."""
        server = f"  tls:\n    cert_file: {self.cert}\n    key_file: {self.key}\n"
        auth = (f"auth:\n  ingest:\n    token_files: [{self.ingest_token_file}]\n"
                f"  api:\n    read_token_files: [{self.api_token_file}]\n")
        return server, auth


class Server:
    kind = ""
    proc: subprocess.Popen
    grpc_port = http_port = 0
    secrets: Secrets | None = None

    def endpoint(self, protocol: str) -> str:
        scheme = "https" if self.secrets else "http"
        if protocol == "grpc":
            return f"{scheme}://127.0.0.1:{self.grpc_port}"
        return f"{scheme}://127.0.0.1:{self.http_port}/v1/traces"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Slogate(Server):
    kind = "slogate"

    def __init__(self, binary: str, workdir: str, pin: list[str], config_text=None,
                 secrets: Secrets | None = None):
        """config_text(grpc_port, http_port, api_port) -> YAML replaces the span config;
        `secrets` secures the span config with TLS on every listener and bearer tokens."""
        if secrets is not None and config_text is not None:
            raise ValueError("TLS runs use the span configuration")
        self.secrets = secrets
        self.grpc_port, self.http_port, self.api_port = free_port(), free_port(), free_port()
        # Each server gets its own data directory: otherwise the history (and the alert outbox)
        # of an earlier run would be reloaded on start and counted as this run's series.
        rundir = tempfile.mkdtemp(prefix="slogate-run-", dir=workdir)
        cfg = os.path.join(rundir, "slogate.yaml")
        with open(cfg, "w") as f:
            if config_text is not None:
                f.write(config_text(self.grpc_port, self.http_port, self.api_port))
            else:
                tls, auth = secrets.config() if secrets else ("", "")
                f.write("server:\n"
                        f"  otlp_grpc: 127.0.0.1:{self.grpc_port}\n"
                        f"  otlp_http: 127.0.0.1:{self.http_port}\n"
                        f"  http: 127.0.0.1:{self.api_port}\n"
                        "  shutdown_grace: 2s\n" + tls + auth + GATE_YAML)
        self.config_path = cfg
        self.log = open(os.path.join(workdir, "slogate.log"), "ab")
        self.proc = subprocess.Popen(pin + [binary, "serve", "--config", cfg], cwd=rundir,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.log.flush()
                tail = open(self.log.name, errors="replace").read()[-600:].strip()
                raise RuntimeError(f"slogate exited with {self.proc.returncode} (config {cfg}); "
                                   f"log tail: {tail}")
            try:
                if self.api_get("/readyz", 1)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("slogate did not become ready")

    def api_access(self) -> tuple[ssl.SSLContext | None, dict]:
        """The TLS context and headers of API requests."""
        if self.secrets is None:
            return None, {}
        return self.secrets.context, {"Authorization": f"Bearer {self.secrets.api_token}"}

    def api_get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        tls, headers = self.api_access()
        return http_get(self.api_port, path, timeout, tls, headers)

    def metrics(self) -> str:
        status, text = self.api_get("/metrics")
        if status != 200:
            raise RuntimeError(f"slogate answers GET /metrics with HTTP {status}: {text[:200]}")
        return text

    def accepted(self) -> float:
        return prom_sum(self.metrics(), "slogate_spans_accepted_total")

    def received(self) -> float:
        """Accepted + skipped (valid spans of kinds slogate does not record, e.g. CLIENT)."""
        m = self.metrics()
        return prom_sum(m, "slogate_spans_accepted_total") + prom_sum(m, "slogate_spans_skipped_total")

    def series(self) -> tuple[int, float]:
        m = self.metrics()
        return int(prom_value(m, "slogate_series")), prom_value(m, "slogate_series_memory_bytes")

    def live_bytes(self) -> float:
        return prom_value(self.metrics(), 'slogate_series_state_bytes{part="live"}')

    def query_loop(self, hz: float) -> QueryLoop:
        return QueryLoop(self.api_port, VERDICT_PATH, hz, *self.api_access())


def prom_value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.split()[-1])
    return 0.0


class Collector(Server):
    kind = "collector"

    def __init__(self, binary: str, config: str, workdir: str, pin: list[str]):
        self.grpc_port, self.http_port = free_port(), free_port()
        self.prom_port, self.tel_port = free_port(), free_port()
        env = dict(os.environ, OTLP_GRPC_PORT=str(self.grpc_port), OTLP_HTTP_PORT=str(self.http_port),
                   PROM_PORT=str(self.prom_port), TELEMETRY_PORT=str(self.tel_port))
        self.log = open(os.path.join(workdir, "collector.log"), "ab")
        self.proc = subprocess.Popen(pin + [binary, "--config", config], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.log.flush()
                tail = open(self.log.name, errors="replace").read()[-600:].strip()
                raise RuntimeError(f"collector exited with {self.proc.returncode}; see {self.log.name}; "
                                   f"log tail: {tail}")
            try:
                ok = http_get(self.tel_port, "/metrics", 1)[0] == 200
                with socket.create_connection(("127.0.0.1", self.grpc_port), 1):
                    pass
                with socket.create_connection(("127.0.0.1", self.http_port), 1):
                    pass
                if ok:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("collector did not become ready")

    def accepted(self) -> float:
        return prom_sum(http_get(self.tel_port, "/metrics")[1], "otelcol_receiver_accepted_spans")

    received = accepted

    def series(self) -> tuple[int, float]:
        text = http_get(self.prom_port, "/metrics")[1]
        return prom_count(text, "traces_span_metrics_calls_total"), 0.0

    def query_loop(self, hz: float) -> QueryLoop:
        # One scrape every 15 s, a usual Prometheus interval: scraping thousands of series every
        # second would bill the exposition, not the pipeline, to the spans.
        return QueryLoop(self.prom_port, "/metrics", 1.0 / 15)


# ---------------------------------------------------------------- one run

def run_once(a, kind: str, protocol: str, scenario: str, rate: str, pinned: bool, label: str,
             workdir: str, tls: bool = False) -> dict:
    """scenario "telemetrygen" drives the server with telemetrygen instead of slogate-load;
    `tls` secures slogate (see Secrets) and has the generator speak TLS with a token."""
    have_taskset = pinned and shutil.which("taskset") is not None
    pin_srv = ["taskset", "-c", "0"] if have_taskset else []
    pin_gen = ["taskset", "-c", "1"] if have_taskset else []
    if tls and (kind != "slogate" or scenario == "telemetrygen"):
        raise ValueError("TLS runs are slogate-load against slogate")
    if kind == "slogate":
        secrets = Secrets(tempfile.mkdtemp(prefix="secrets-", dir=workdir)) if tls else None
        srv: Server = Slogate(a.slogate_bin, workdir, pin_srv, secrets=secrets)
    else:
        srv = Collector(a.otelcol_bin, a.collector_config, workdir, pin_srv)
    try:
        time.sleep(1.0)
        if tls and prom_select(srv.metrics(), 'slogate_tls_enabled{listener="otlp_grpc"}') < 1:
            raise RuntimeError("slogate does not report TLS on its listeners (slogate_tls_enabled)")
        pid = srv.proc.pid
        rss0 = status_kib(pid, "VmRSS")
        tg = scenario == "telemetrygen"
        count = srv.received if tg else srv.accepted
        acc0 = count()
        cpu0 = cpu_seconds(pid)
        sys0, kids0, self0 = system_busy_s(), children_cpu_s(), self_cpu_s()
        loop = srv.query_loop(a.verdict_hz)
        loop.start()
        anon = AnonSampler(pid)
        anon.start()
        if tg:
            # One worker, unthrottled: its batch span processor drops what the exporter cannot
            # send, so the rate is whatever one core of the Go SDK exports.
            cmd = pin_gen + [a.telemetrygen_bin, "traces", "--otlp-endpoint", f"127.0.0.1:{srv.grpc_port}",
                             "--otlp-insecure", "--duration", a.duration, "--rate", "0", "--workers", "1",
                             "--batch-size", str(a.batch_size), "--service", "checkout",
                             "--otlp-attributes", 'service.version="v1"']
        else:
            cmd = pin_gen + [a.load_bin, "run", os.path.join(HERE, "scenarios", scenario),
                             "--endpoint", srv.endpoint(protocol), "--protocol", protocol,
                             "--rate", rate, "--duration", a.duration, "--batch-size", str(a.batch_size), "--json"]
            if have_taskset:
                cmd += ["--threads", "1"]
            if a.concurrency:
                cmd += ["--concurrency", str(a.concurrency)]
            if srv.secrets:
                cmd += ["--tls-ca", srv.secrets.ca, "--token-file", srv.secrets.ingest_token_file]
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        loop.stop()
        anon.stop_ev.set()
        time.sleep(0.3)  # in-flight work drains
        cpu1 = cpu_seconds(pid)
        sys1, kids1, self1 = system_busy_s(), children_cpu_s(), self_cpu_s()
        acc1 = count()
        rss1 = status_kib(pid, "VmRSS")
        hwm = status_kib(pid, "VmHWM")
        if tg:
            if out.returncode != 0:
                raise RuntimeError(f"telemetrygen failed ({out.returncode}): {out.stderr[-2000:]}")
            rep = {"elapsed": wall, "spans_sent": None}
        else:
            if out.returncode != 0 and not out.stdout.strip().startswith("{"):
                raise RuntimeError(f"generator failed ({out.returncode}): {out.stderr[-2000:]}")
            rep = json.loads(out.stdout)
        series, mem = srv.series()
        if kind == "collector" and series == 0:
            # the spanmetrics connector flushes every metrics_flush_interval (15 s)
            for _ in range(40):
                time.sleep(0.5)
                series, mem = srv.series()
                if series:
                    break
        accepted = acc1 - acc0
        elapsed = rep["elapsed"]
        cpu = cpu1 - cpu0
        row = {
            "label": label, "server": kind, "protocol": protocol, "scenario": scenario, "rate": rate,
            "pinned": have_taskset, "server_cores": "0" if have_taskset else "0-1", "tls": tls,
            "accepted_spans": accepted, "generator_spans_sent": rep["spans_sent"],
            "rejected_spans": rep.get("rejected_spans", 0), "throttled": rep.get("throttled", 0),
            "requests_failed": rep.get("requests_failed", 0), "first_error": rep.get("first_error"),
            "elapsed_s": elapsed, "spans_per_s": accepted / elapsed if elapsed else 0.0,
            "server_cpu_s": cpu, "generator_cpu_s": kids1 - kids0, "bench_script_cpu_s": self1 - self0,
            # CPU the machine spent on anything else during the run (other builds on a shared VM)
            "other_cpu_s": (sys1 - sys0) - cpu - (kids1 - kids0) - (self1 - self0), "wall_s": wall, "server_cpu_util": cpu / wall if wall else 0.0,
            "cpu_ns_per_span": cpu * 1e9 / accepted if accepted else float("nan"),
            "peak_rss_mib": hwm / 1024, "peak_anon_mib": anon.peak_kib / 1024, "rss_before_mib": rss0 / 1024, "rss_after_mib": rss1 / 1024,
            "series": series, "self_reported_bytes_per_series": mem / series if series and mem else None,
            # live state only (keys, index, open slots), without the closed slots kept for windows
            "live_bytes_per_series": (srv.live_bytes() / series) if kind == "slogate" and series else None,
            "drss_bytes_per_series": (rss1 - rss0) * 1024 / series if series else None,
            "query": "verdict" if kind == "slogate" else "prom scrape",
            "query_n": len(loop.lat_ms), "query_p50_ms": pct(loop.lat_ms, 0.50),
            "query_p99_ms": pct(loop.lat_ms, 0.99), "query_max_ms": max(loop.lat_ms) if loop.lat_ms else float("nan"),
            "query_statuses": loop.statuses, "query_client_realtime": getattr(loop, "rt", False),
        }
        print(f"# {label}: {row['spans_per_s']:,.0f} spans/s, {row['cpu_ns_per_span']:.0f} ns/span, "
              f"cpu util {row['server_cpu_util']:.2f}, HWM {row['peak_rss_mib']:.1f} MiB, series {series}, "
              f"query p99 {row['query_p99_ms']:.2f} ms {loop.statuses}", file=sys.stderr, flush=True)
        return row
    finally:
        srv.stop()


# ---------------------------------------------------------------- one metrics run

def slogate_metrics_config(a):
    with open(a.slogate_metrics_config) as f:
        tmpl = string.Template(f.read())
    series, services = a.metric_series, a.metric_services

    def render(grpc_port: int, http_port: int, api_port: int) -> str:
        # Streams per service and metric name: at most a quarter of a service's streams share a
        # name (the generator's mix); 2x headroom so nothing overflows.
        per_service = -(-series // services)
        return tmpl.substitute(grpc_port=grpc_port, http_port=http_port, api_port=api_port,
                               series=series, max_series=2 * series,
                               max_series_per_metric=max(1000, per_service))
    return render


def check_metrics_served(srv: Server):
    """An empty OTLP/HTTP metrics export is valid: 2xx if the server has a metrics receiver."""
    try:
        status, body = http_post(srv.http_port, "/v1/metrics", b"", "application/x-protobuf")
    except OSError as e:
        raise RuntimeError(f"POST /v1/metrics to port {srv.http_port} failed: {e}")
    if status in (404, 405):
        said = "".join(c for c in body if c.isprintable()).strip()[:200]
        raise NotServed(f"{srv.kind} answers POST /v1/metrics with HTTP {status} ({said!r}): its OTLP "
                        "metrics receiver is not wired yet, or not enabled by the config "
                        f"({getattr(srv, 'config_path', '?')}, from load-tests/bench/slogate-metrics.yaml)")
    if not 200 <= status < 300:
        raise RuntimeError(f"{srv.kind} answers an empty POST /v1/metrics with HTTP {status}: {body[:200]}")


def run_metrics_once(a, kind: str, protocol: str, rate: str, pinned: bool, label: str, workdir: str) -> dict:
    have_taskset = pinned and shutil.which("taskset") is not None
    pin_srv = ["taskset", "-c", "0"] if have_taskset else []
    pin_gen = ["taskset", "-c", "1"] if have_taskset else []
    if kind == "slogate":
        srv: Server = Slogate(a.slogate_bin, workdir, pin_srv, slogate_metrics_config(a))
    else:
        srv = Collector(a.otelcol_bin, a.collector_metrics_config, workdir, pin_srv)
    try:
        time.sleep(1.0)
        check_metrics_served(srv)
        pid = srv.proc.pid
        if kind == "slogate":
            def accepted() -> float:
                return prom_select(srv.metrics(), a.slogate_points_metric)
        else:
            def accepted() -> float:
                return prom_sum(http_get(srv.tel_port, "/metrics")[1], "otelcol_receiver_accepted_metric_points")
        rss0 = status_kib(pid, "VmRSS")
        acc0 = accepted()
        cpu0 = cpu_seconds(pid)
        sys0, kids0, self0 = system_busy_s(), children_cpu_s(), self_cpu_s()
        anon = AnonSampler(pid)
        anon.start()
        endpoint = f"http://127.0.0.1:{srv.grpc_port if protocol == 'grpc' else srv.http_port}"
        cmd = pin_gen + [a.load_bin, "run", "--signal", "metrics", "--endpoint", endpoint, "--protocol", protocol,
                         "--rate", rate, "--duration", a.duration, "--batch-size", str(a.metric_batch),
                         "--services", str(a.metric_services), "--metric-series", str(a.metric_series), "--json"]
        if have_taskset:
            cmd += ["--threads", "1"]
        if a.concurrency:
            cmd += ["--concurrency", str(a.concurrency)]
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        anon.stop_ev.set()
        time.sleep(0.3)  # in-flight work drains
        cpu1 = cpu_seconds(pid)
        sys1, kids1, self1 = system_busy_s(), children_cpu_s(), self_cpu_s()
        acc1 = accepted()
        rss1 = status_kib(pid, "VmRSS")
        hwm = status_kib(pid, "VmHWM")
        if not out.stdout.strip().startswith("{"):
            raise RuntimeError(f"generator failed ({out.returncode}): {out.stderr[-2000:]}")
        rep = json.loads(out.stdout)
        errs = rep.get("errors_by_status", {})
        if rep["requests_ok"] == 0 and errs and all(k in ("http 404", "http 405", "grpc Unimplemented") for k in errs):
            raise NotServed(f"{kind} does not serve OTLP metrics over {protocol}: {errs} "
                            f"(first error: {rep.get('first_error')})")
        store = {}
        if kind == "slogate":
            m = srv.metrics()
            series_self = int(prom_select(m, a.slogate_series_metric))
            store = {"memory_bytes": prom_select(m, a.slogate_memory_metric)}
            for outcome in ("stored", "overflow", "duplicate", "out_of_range", "conflict", "dropped"):
                store[outcome] = prom_select(m, f'slogate_metric_points_total{{outcome="{outcome}"}}')
        else:
            series_self = prom_series(http_get(srv.prom_port, "/metrics", 60)[1])
        series = series_self or a.metric_series
        accepted_pts = acc1 - acc0
        source = "server"
        if accepted_pts <= 0:
            accepted_pts, source = rep["points_accepted"], "generator"
        elapsed = rep["elapsed"]
        cpu = cpu1 - cpu0
        row = {
            "label": label, "server": kind, "protocol": protocol, "scenario": "metrics", "rate": rate,
            "pinned": have_taskset, "server_cores": "0" if have_taskset else "0-1",
            "metric_series_sent": a.metric_series, "metric_services": a.metric_services,
            "points_per_request": a.metric_batch, "series": series, "series_self_reported": series_self,
            "accepted_points": accepted_pts, "accepted_source": source,
            "generator_points_sent": rep["points_sent"], "generator_points_accepted": rep["points_accepted"],
            "rejected_points": rep["points_rejected"], "failed_points": rep["points_failed"],
            "throttled": rep["throttled"], "requests_failed": rep["requests_failed"],
            "errors_by_status": errs, "first_error": rep.get("first_error"),
            "bytes_per_point": rep["bytes_sent"] / rep["points_sent"] if rep["points_sent"] else None,
            "elapsed_s": elapsed, "points_per_s": accepted_pts / elapsed if elapsed else 0.0,
            "points_per_series": accepted_pts / series if series else None,
            "server_cpu_s": cpu, "generator_cpu_s": kids1 - kids0, "bench_script_cpu_s": self1 - self0,
            "other_cpu_s": (sys1 - sys0) - cpu - (kids1 - kids0) - (self1 - self0), "wall_s": wall,
            "server_cpu_util": cpu / wall if wall else 0.0,
            "cpu_ns_per_point": cpu * 1e9 / accepted_pts if accepted_pts else float("nan"),
            "peak_rss_mib": hwm / 1024, "peak_anon_mib": anon.peak_kib / 1024,
            "rss_before_mib": rss0 / 1024, "rss_after_mib": rss1 / 1024,
            "drss_bytes_per_series": (rss1 - rss0) * 1024 / series if series else None,
            "self_reported_bytes_per_series": (store["memory_bytes"] / series
                                               if series and store.get("memory_bytes") else None),
            "slogate_store_points": store or None,
        }
        print(f"# {label}: {row['points_per_s']:,.0f} points/s ({source} count), "
              f"{row['cpu_ns_per_point']:.0f} ns/point, cpu util {row['server_cpu_util']:.2f}, "
              f"HWM {row['peak_rss_mib']:.1f} MiB, ΔRSS/series {fmt(row['drss_bytes_per_series'], ',.0f')} B, "
              f"series {series} (self-reported {series_self}), errors {errs}", file=sys.stderr, flush=True)
        return row
    finally:
        srv.stop()


# ---------------------------------------------------------------- report

def fmt(v, spec):
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    return format(v, spec)


def metrics_table(rows: list[dict]) -> str:
    out = ["| run | server | proto | rate (points/s) | server cores | series | points/s accepted | CPU util | CPU ns/point "
           "| peak RSS MiB | peak anon MiB | ΔRSS/series (bytes) | self-reported bytes/series | points/series | bytes/point sent | failed points | other CPU on the box (cores) |",
           "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        other = r["other_cpu_s"] / r["wall_s"] if r.get("wall_s") else float("nan")
        out.append(f"| {r['label']} | {r['server']} | {r['protocol']} | {r['rate']} | {r['server_cores']} | {r['series']:,} | "
                   f"{r['points_per_s']:,.0f}{'' if r['accepted_source'] == 'server' else ' (gen)'} | {r['server_cpu_util']:.2f} | "
                   f"{fmt(r['cpu_ns_per_point'], ',.0f')} | {r['peak_rss_mib']:.1f} | {r['peak_anon_mib']:.1f} | "
                   f"{fmt(r['drss_bytes_per_series'], ',.0f')} | {fmt(r.get('self_reported_bytes_per_series'), ',.0f')} | {fmt(r['points_per_series'], ',.0f')} | "
                   f"{fmt(r['bytes_per_point'], ',.0f')} | {r['failed_points']:,} | {fmt(other, '.2f')} |")
    ratios = []
    for r in rows:
        if r["server"] != "slogate":
            continue
        for c in rows:
            if c["server"] == "collector" and c["protocol"] == r["protocol"] and c["rate"] == r["rate"] and c["pinned"] == r["pinned"]:
                ratios.append(f"- {r['protocol']}, {r['rate']} points/s: Collector {c['cpu_ns_per_point']:,.0f} ns/point ÷ slogate "
                              f"{r['cpu_ns_per_point']:,.0f} ns/point = **{c['cpu_ns_per_point'] / r['cpu_ns_per_point']:.1f}×**; "
                              f"ΔRSS/series Collector {fmt(c['drss_bytes_per_series'], ',.0f')} B, slogate {fmt(r['drss_bytes_per_series'], ',.0f')} B")
    if ratios:
        out += ["", "CPU per data point and memory per series, Collector (otlp -> prometheus) vs slogate (same generator, same load):", ""] + ratios
    return "\n".join(out)


def table(rows: list[dict]) -> str:
    metric_rows = [r for r in rows if r.get("scenario") == "metrics"]
    rows = [r for r in rows if r.get("scenario") != "metrics"]
    if not rows:
        return metrics_table(metric_rows) if metric_rows else ""
    out = ["| run | server | proto | scenario | rate | server cores | spans/s | CPU util | CPU ns/span | peak RSS MiB | peak anon MiB "
           "| series | bytes/series (self: all / live) | ΔRSS/series | query p50 / p99 / max ms (n) | other CPU on the box (cores) |",
           "|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        q = (f"{r['query']}: {fmt(r['query_p50_ms'], '.2f')} / {fmt(r['query_p99_ms'], '.2f')} / "
             f"{fmt(r['query_max_ms'], '.2f')} ({r['query_n']})")
        other = r["other_cpu_s"] / r["wall_s"] if r.get("wall_s") else float("nan")
        out.append(f"| {r['label']} | {r['server']} | {r['protocol']}{' + TLS' if r.get('tls') else ''} | {r['scenario']} | {r['rate']} | "
                   f"{r['server_cores']} | {r['spans_per_s']:,.0f} | {r['server_cpu_util']:.2f} | "
                   f"{fmt(r['cpu_ns_per_span'], ',.0f')} | {r['peak_rss_mib']:.1f} | {r['peak_anon_mib']:.1f} | {r['series']} | "
                   f"{fmt(r['self_reported_bytes_per_series'], ',.0f')} / {fmt(r.get('live_bytes_per_series'), ',.0f')} | {fmt(r['drss_bytes_per_series'], ',.0f')} | {q} | {fmt(other, '.2f')} |")
    ratios = []
    for r in rows:
        if r["server"] != "slogate" or r.get("tls"):
            continue
        for c in rows:
            if (c["server"] == "collector" and c["protocol"] == r["protocol"] and c["scenario"] == r["scenario"]
                    and c["pinned"] == r["pinned"] and c["rate"] == r["rate"]):
                ratios.append(f"- {r['protocol']}, {r['scenario']}, rate {r['rate']}, server cores {r['server_cores']}: Collector "
                              f"{c['cpu_ns_per_span']:,.0f} ns/span ÷ slogate {r['cpu_ns_per_span']:,.0f} ns/span "
                              f"= **{c['cpu_ns_per_span'] / r['cpu_ns_per_span']:.1f}×** "
                              f"(slogate/collector = {r['cpu_ns_per_span'] / c['cpu_ns_per_span']:.3f})")
    if ratios:
        out += ["", "CPU per span, Collector spanmetrics vs slogate (same generator, same load):", ""] + ratios
    costs = []
    for t in rows:
        if not t.get("tls"):
            continue
        for r in rows:
            if (not r.get("tls") and r["server"] == t["server"] and r["protocol"] == t["protocol"]
                    and r["scenario"] == t["scenario"] and r["rate"] == t["rate"] and r["pinned"] == t["pinned"]):
                d = t["cpu_ns_per_span"] - r["cpu_ns_per_span"]
                costs.append(f"- {t['protocol']}, {t['scenario']}, rate {t['rate']}, server cores {t['server_cores']}: "
                             f"plain {r['cpu_ns_per_span']:,.0f} ns/span, TLS + token {t['cpu_ns_per_span']:,.0f} ns/span: "
                             f"**{d:+,.0f} ns/span ({d / r['cpu_ns_per_span']:+.1%})**; spans/s {r['spans_per_s']:,.0f} -> "
                             f"{t['spans_per_s']:,.0f}")
    if costs:
        out += ["", "Cost of TLS on the ingest path, server CPU per span (same generator, same load, same invocation):", ""] + costs
    if metric_rows:
        out += ["", metrics_table(metric_rows)]
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--slogate-bin", default=os.environ.get("SLOGATE_BIN", "/tmp/e2e-target/release/slogate"))
    p.add_argument("--load-bin", default=os.environ.get("SLOGATE_LOAD_BIN", "/tmp/e2e-target/release/slogate-load"))
    p.add_argument("--otelcol-bin", default=os.environ.get("OTELCOL_BIN", ""))
    p.add_argument("--telemetrygen-bin", default=os.environ.get("TELEMETRYGEN_BIN", ""),
                   help="also drive each server with telemetrygen (gRPC) as a second client")
    p.add_argument("--collector-config", default=os.path.join(ROOT, "load-tests", "collector", "config.yaml"))
    p.add_argument("--collector-metrics-config",
                   default=os.path.join(ROOT, "load-tests", "collector", "config-metrics.yaml"))
    p.add_argument("--slogate-metrics-config", default=os.path.join(HERE, "slogate-metrics.yaml"),
                   help="string.Template of slogate's config for the metrics runs")
    p.add_argument("--metric-series", type=int, default=20000, help="metric streams sent in the metrics runs")
    p.add_argument("--metric-services", type=int, default=20)
    p.add_argument("--metric-batch", type=int, default=1000, help="data points per export request")
    p.add_argument("--metric-rate", default="50000",
                   help="data points/s of the metrics runs (fixed so the Collector keeps up), or max")
    p.add_argument("--slogate-points-metric", default='slogate_ingest_points_total{signal="metrics",outcome="accepted"}',
                   help="slogate's accepted-data-points counter on /metrics (samples summed)")
    p.add_argument("--slogate-series-metric", default="slogate_metric_series",
                   help="slogate's gauge of metric streams held (all kinds summed)")
    p.add_argument("--slogate-memory-metric", default="slogate_metric_memory_bytes",
                   help="slogate's metric store heap bytes")
    p.add_argument("--duration", default="20s")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--concurrency", type=int, default=0,
                   help="generator requests in flight (default: the scenario's 16)")
    p.add_argument("--verdict-hz", type=float, default=20.0)
    p.add_argument("--no-pin", action="store_true", help="don't pin with taskset")
    p.add_argument("--unpinned-too", action="store_true", help="also run slogate/collector gRPC on both cores")
    p.add_argument("--only", default="", help="comma list of run labels to run (default: all)")
    p.add_argument("--json-out", default="", help="write the rows as JSON here")
    a = p.parse_args()

    pinned = not a.no_pin and shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    if pinned:
        os.sched_setaffinity(0, {1})  # this script (the verdict loop) shares the generator's core
    print(f"# {platform.node()} {os.cpu_count()} cpus; "
          + ("server pinned to core 0, generator + query loop to core 1 (1 server core / 1 worker measured)"
             if pinned else "no pinning"), file=sys.stderr)
    # An optional seventh field "tls" makes a TLS run (see Secrets).
    plan = [
        ("slogate-grpc", "slogate", "grpc", "canary", "max", pinned),
        ("slogate-grpc-tls", "slogate", "grpc", "canary", "max", pinned, "tls"),
        ("slogate-http", "slogate", "http-protobuf", "canary", "max", pinned),
        ("slogate-http-tls", "slogate", "http-protobuf", "canary", "max", pinned, "tls"),
        ("slogate-grpc-70%", "slogate", "grpc", "canary", "70%", pinned),
        ("slogate-1k-series", "slogate", "grpc", "series-1k", "max", pinned),
        ("slogate-1k-series-20k", "slogate", "grpc", "series-1k", "20000", pinned),
    ]
    if a.otelcol_bin:
        plan += [
            ("collector-grpc", "collector", "grpc", "canary", "max", pinned),
            ("collector-http", "collector", "http-protobuf", "canary", "max", pinned),
            ("collector-1k-series", "collector", "grpc", "series-1k", "max", pinned),
            ("collector-1k-series-20k", "collector", "grpc", "series-1k", "20000", pinned),
        ]
    if a.telemetrygen_bin:
        plan += [("slogate-telemetrygen", "slogate", "grpc", "telemetrygen", "max", pinned)]
        if a.otelcol_bin:
            plan += [("collector-telemetrygen", "collector", "grpc", "telemetrygen", "max", pinned)]
    # Metrics: the same fixed point rate for both servers.
    plan += [
        ("slogate-metrics-grpc", "slogate", "grpc", "metrics", a.metric_rate, pinned),
        ("slogate-metrics-http", "slogate", "http-protobuf", "metrics", a.metric_rate, pinned),
    ]
    if a.otelcol_bin:
        plan += [
            ("collector-metrics-grpc", "collector", "grpc", "metrics", a.metric_rate, pinned),
            ("collector-metrics-http", "collector", "http-protobuf", "metrics", a.metric_rate, pinned),
        ]
    if a.unpinned_too and pinned:
        plan += [("slogate-grpc-2cores", "slogate", "grpc", "canary", "max", False)]
        if a.otelcol_bin:
            plan += [("collector-grpc-2cores", "collector", "grpc", "canary", "max", False)]
    only = set(filter(None, a.only.split(",")))
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="slogate-bench-") as wd:
        for label, kind, proto, scen, rate, pin, *opts in plan:
            if only and label not in only:
                continue
            if rate == "70%":
                base = next((r for r in rows if r["label"] == "slogate-grpc"), None)
                if base is None:
                    continue
                rate = str(int(base["spans_per_s"] * 0.7))
            if not pin and pinned:
                os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
            try:
                for attempt in range(3):
                    try:
                        if scen == "metrics":
                            rows.append(run_metrics_once(a, kind, proto, rate, pin, label, wd))
                        else:
                            rows.append(run_once(a, kind, proto, scen, rate, pin, label, wd, tls="tls" in opts))
                        break
                    except RuntimeError as e:
                        # free_port() races with other processes on a shared box: retry.
                        if "address already in use" not in str(e) or attempt == 2:
                            raise
                        print(f"# {label}: a port was taken meanwhile, retrying", file=sys.stderr)
            except NotServed as e:
                print(f"# {label} FAILED: {e}", file=sys.stderr)
                continue
            except Exception as e:  # keep going; report what failed
                import traceback
                print(f"# {label} FAILED: {e!r}", file=sys.stderr)
                traceback.print_exc(file=sys.stderr)
                for name in ("slogate.log", "collector.log"):
                    path = os.path.join(wd, name)
                    if os.path.exists(path):
                        print(open(path, errors="replace").read()[-1500:], file=sys.stderr)
            finally:
                if not pin and pinned:
                    os.sched_setaffinity(0, {1})
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(rows, f, indent=2)
    print(table(rows))


if __name__ == "__main__":
    main()
