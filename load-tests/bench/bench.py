#!/usr/bin/env python3
"""End-to-end benchmark of slogate and of the OpenTelemetry Collector spanmetrics pipeline.

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
import socket
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


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
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

    def __init__(self, port: int, path: str, hz: float):
        super().__init__(daemon=True)
        self.port, self.path, self.period = port, path, 1.0 / hz
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
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            t0 = time.perf_counter()
            try:
                conn.request("GET", self.path)
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


class Server:
    kind = ""
    proc: subprocess.Popen
    grpc_port = http_port = 0

    def endpoint(self, protocol: str) -> str:
        if protocol == "grpc":
            return f"http://127.0.0.1:{self.grpc_port}"
        return f"http://127.0.0.1:{self.http_port}/v1/traces"

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

    def __init__(self, binary: str, workdir: str, pin: list[str]):
        self.grpc_port, self.http_port, self.api_port = free_port(), free_port(), free_port()
        # Each server gets its own data directory: otherwise the history (and the alert outbox)
        # of an earlier run would be reloaded on start and counted as this run's series.
        rundir = tempfile.mkdtemp(prefix="slogate-run-", dir=workdir)
        cfg = os.path.join(rundir, "slogate.yaml")
        with open(cfg, "w") as f:
            f.write("server:\n"
                    f"  otlp_grpc: 127.0.0.1:{self.grpc_port}\n"
                    f"  otlp_http: 127.0.0.1:{self.http_port}\n"
                    f"  http: 127.0.0.1:{self.api_port}\n"
                    "  shutdown_grace: 2s\n" + GATE_YAML)
        self.log = open(os.path.join(workdir, "slogate.log"), "ab")
        self.proc = subprocess.Popen(pin + [binary, "serve", "--config", cfg], cwd=rundir,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"slogate exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if http_get(self.api_port, "/readyz", 1)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("slogate did not become ready")

    def metrics(self) -> str:
        return http_get(self.api_port, "/metrics")[1]

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
        return QueryLoop(self.api_port, VERDICT_PATH, hz)


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
                raise RuntimeError(f"collector exited with {self.proc.returncode}; see {self.log.name}")
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
             workdir: str) -> dict:
    """scenario "telemetrygen" drives the server with telemetrygen instead of slogate-load."""
    have_taskset = pinned and shutil.which("taskset") is not None
    pin_srv = ["taskset", "-c", "0"] if have_taskset else []
    pin_gen = ["taskset", "-c", "1"] if have_taskset else []
    if kind == "slogate":
        srv: Server = Slogate(a.slogate_bin, workdir, pin_srv)
    else:
        srv = Collector(a.otelcol_bin, a.collector_config, workdir, pin_srv)
    try:
        time.sleep(1.0)
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
            "pinned": have_taskset, "server_cores": "0" if have_taskset else "0-1",
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


# ---------------------------------------------------------------- report

def fmt(v, spec):
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    return format(v, spec)


def table(rows: list[dict]) -> str:
    out = ["| run | server | proto | scenario | rate | server cores | spans/s | CPU util | CPU ns/span | peak RSS MiB | peak anon MiB "
           "| series | bytes/series (self: all / live) | ΔRSS/series | query p50 / p99 / max ms (n) | other CPU on the box (cores) |",
           "|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        q = (f"{r['query']}: {fmt(r['query_p50_ms'], '.2f')} / {fmt(r['query_p99_ms'], '.2f')} / "
             f"{fmt(r['query_max_ms'], '.2f')} ({r['query_n']})")
        other = r["other_cpu_s"] / r["wall_s"] if r.get("wall_s") else float("nan")
        out.append(f"| {r['label']} | {r['server']} | {r['protocol']} | {r['scenario']} | {r['rate']} | "
                   f"{r['server_cores']} | {r['spans_per_s']:,.0f} | {r['server_cpu_util']:.2f} | "
                   f"{fmt(r['cpu_ns_per_span'], ',.0f')} | {r['peak_rss_mib']:.1f} | {r['peak_anon_mib']:.1f} | {r['series']} | "
                   f"{fmt(r['self_reported_bytes_per_series'], ',.0f')} / {fmt(r.get('live_bytes_per_series'), ',.0f')} | {fmt(r['drss_bytes_per_series'], ',.0f')} | {q} | {fmt(other, '.2f')} |")
    ratios = []
    for r in rows:
        if r["server"] != "slogate":
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
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--slogate-bin", default=os.environ.get("SLOGATE_BIN", "/tmp/e2e-target/release/slogate"))
    p.add_argument("--load-bin", default=os.environ.get("SLOGATE_LOAD_BIN", "/tmp/e2e-target/release/slogate-load"))
    p.add_argument("--otelcol-bin", default=os.environ.get("OTELCOL_BIN", ""))
    p.add_argument("--telemetrygen-bin", default=os.environ.get("TELEMETRYGEN_BIN", ""),
                   help="also drive each server with telemetrygen (gRPC) as a second client")
    p.add_argument("--collector-config", default=os.path.join(ROOT, "load-tests", "collector", "config.yaml"))
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
    plan = [
        ("slogate-grpc", "slogate", "grpc", "canary", "max", pinned),
        ("slogate-http", "slogate", "http-protobuf", "canary", "max", pinned),
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
    if a.unpinned_too and pinned:
        plan += [("slogate-grpc-2cores", "slogate", "grpc", "canary", "max", False)]
        if a.otelcol_bin:
            plan += [("collector-grpc-2cores", "collector", "grpc", "canary", "max", False)]
    only = set(filter(None, a.only.split(",")))
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="slogate-bench-") as wd:
        for label, kind, proto, scen, rate, pin in plan:
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
                rows.append(run_once(a, kind, proto, scen, rate, pin, label, wd))
            except Exception as e:  # keep going; report what failed
                print(f"# {label} FAILED: {e}", file=sys.stderr)
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
