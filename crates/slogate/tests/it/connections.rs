//! Connection abuse on the three listeners, against the real server process: request bodies
//! sent a byte a second hold no ingest slot and are cut off at their deadline; thousands of idle
//! connections neither slow a legitimate client down nor stay open; past a listener's cap new
//! connections wait; and a process out of file descriptors backs off quietly and recovers.
//!
//! The server's side is read from `/proc/<pid>`: its open descriptors, and its CPU time.

use crate::harness::Server;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::SpanKind};
use prost::Message;
use slogate_ingest::grpc::{EXPORT_PATH, RawCodec};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The pid of `s`'s process: the child of this test process whose configuration file names
/// its gRPC port.
fn pid_of(s: &Server) -> u32 {
    let me = std::process::id();
    let wanted = format!("otlp_grpc: 127.0.0.1:{}\n", s.grpc);
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid != Some(me) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let config = args
            .iter()
            .position(|a| a == "--config")
            .and_then(|i| std::fs::read_to_string(&args[i + 1]).ok());
        if config.is_some_and(|c| c.contains(&wanted)) {
            return pid;
        }
    }
    panic!("no slogate process serves gRPC on {}", s.grpc);
}

/// Descriptors `pid` has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// User plus system CPU time of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // Fields 14 and 15 of proc(5), in clock ticks of 1/100 s; the first field here is 3.
    let ticks = |n: usize| fields[n - 3].parse::<f64>().unwrap();
    (ticks(14) + ticks(15)) / 100.0
}

/// The soft limit on open files of this process, raised to the hard limit first.
fn raise_own_fd_limit() -> usize {
    let limit = |which: usize| {
        std::fs::read_to_string("/proc/self/limits")
            .unwrap()
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(which))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(1024)
    };
    let (soft, hard) = (limit(3), limit(4));
    if soft < hard {
        let _ = std::process::Command::new("prlimit")
            .arg(format!("--pid={}", std::process::id()))
            .arg(format!("--nofile={hard}:{hard}"))
            .status();
    }
    limit(3)
}

/// Polls `f` every 100 ms until it holds or `within` passes; returns whether it held.
fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn export_request() -> ExportTraceServiceRequest {
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "conn"), kv("service.version", "v1")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![7; 16],
                    span_id: vec![7; 8],
                    name: "GET /x".into(),
                    kind: SpanKind::Server as i32,
                    start_time_unix_nano: now - 20_000_000,
                    end_time_unix_nano: now,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// An OTLP/HTTP export on a new connection: its status and how long it took.
fn http_export(port: u16) -> (u16, Duration) {
    let started = Instant::now();
    let status = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
        .post(format!("http://127.0.0.1:{port}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(export_request().encode_to_vec())
        .send()
        .map_or(0, |r| r.status().as_u16());
    (status, started.elapsed())
}

/// `GET /healthz` on a new connection: its status and how long it took.
fn healthz(port: u16) -> (u16, Duration) {
    let started = Instant::now();
    let status = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .map_or(0, |r| r.status().as_u16());
    (status, started.elapsed())
}

/// A gRPC channel to `port` (connected on its first call).
fn grpc_channel(port: u16) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(30))
        .connect_lazy()
}

/// An OTLP/gRPC export on `channel`.
async fn grpc_export(channel: tonic::transport::Channel) -> Result<Bytes, tonic::Status> {
    let mut client = tonic::client::Grpc::new(channel);
    client
        .ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    client
        .unary(
            tonic::Request::new(Bytes::from(export_request().encode_to_vec())),
            http::uri::PathAndQuery::from_static(EXPORT_PATH),
            RawCodec,
        )
        .await
        .map(|r| r.into_inner())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A gRPC export on a new connection, from a runtime of its own: whether it succeeded and how
/// long it took.
fn grpc_export_once(port: u16) -> (Result<(), tonic::Status>, Duration) {
    let started = Instant::now();
    let r = runtime().block_on(async {
        tokio::time::timeout(Duration::from_secs(30), grpc_export(grpc_channel(port)))
            .await
            .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("30 s")))
    });
    (r.map(|_| ()), started.elapsed())
}

/// `n` connections to `port` that never send a byte.
fn idle_connections(port: u16, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect()
}

/// 256 clients send an OTLP/HTTP request head and then its body at a byte a second — as many as
/// there are in-flight slots. Before the fix each held a slot, so every export was refused for
/// as long as they trickled; now a body takes a slot only once it has arrived: normal exports
/// succeed at once meanwhile, and the trickling requests are answered 408 (or closed) at
/// `server.body_read_timeout`.
/// A byte a second on each of some connections, from a thread, until stopped.
struct Trickle {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Trickle {
    fn start(conns: &[TcpStream], byte: u8) -> Trickle {
        let mut writers: Vec<TcpStream> = conns.iter().map(|c| c.try_clone().unwrap()).collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                for w in &mut writers {
                    let _ = w.write_all(&[byte]);
                }
            }
        });
        Trickle { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap();
    }
}

/// What the server sends on `c` until it closes the connection (at most 15 s of silence).
fn read_until_closed(c: &mut TcpStream) -> Vec<u8> {
    c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got
}

#[test]
fn slow_request_bodies_hold_no_ingest_slot_and_are_cut_off() {
    const SLOW: usize = 256;
    let s = Server::start_with(
        "  body_read_timeout: 4s\n",
        "ingest:\n  max_inflight_requests: 256\n",
    );
    let head = "POST /v1/traces HTTP/1.1\r\nHost: slogate\r\nContent-Type: application/x-protobuf\r\nContent-Length: 1000\r\n\r\n";
    let mut slow: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let mut c = TcpStream::connect(("127.0.0.1", s.http)).unwrap();
            c.write_all(head.as_bytes()).unwrap();
            c.write_all(b"\x0a").unwrap();
            c
        })
        .collect();
    let started = Instant::now();
    // A byte a second on every connection, until it is closed or the test ends.
    let trickle = Trickle::start(&slow, b'\x01');
    // Meanwhile normal exports are served at once, on both transports.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(700));
        let (status, took) = http_export(s.http);
        assert_eq!(
            status, 200,
            "an OTLP/HTTP export while {SLOW} bodies trickle"
        );
        assert!(
            took < Duration::from_secs(2),
            "OTLP/HTTP export took {took:?}"
        );
        let (r, took) = grpc_export_once(s.grpc);
        assert!(r.is_ok(), "an OTLP/gRPC export while bodies trickle: {r:?}");
        assert!(
            took < Duration::from_secs(2),
            "OTLP/gRPC export took {took:?}"
        );
    }
    // Each trickling request is cut off at its deadline: a 408, then the connection closes.
    let mut answered_408 = 0;
    for c in &mut slow {
        let got = read_until_closed(c);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(3) && took < Duration::from_secs(12),
            "a trickling request was cut off after {took:?}, want ~4s"
        );
        let answer = String::from_utf8_lossy(&got);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "unexpected answer {answer:?}"
        );
        answered_408 += usize::from(!answer.is_empty());
    }
    trickle.stop();
    assert!(
        answered_408 >= SLOW / 2,
        "most trickling clients read their 408 ({answered_408} of {SLOW})"
    );
    // They count as requests whose body could not be read; the exports as ok.
    assert!(
        s.metric(
            "slogate_receiver_requests_total{transport=\"http_protobuf\",outcome=\"malformed\"}"
        ) >= SLOW as f64
    );
    assert_eq!(
        s.metric("slogate_receiver_requests_total{transport=\"http_protobuf\",outcome=\"ok\"}"),
        3.0
    );
}

/// Thousands of connections that never send a byte, on each of the three ports (the gRPC port
/// had no limit at all before): a legitimate request on each port is served as fast as ever,
/// and every idle connection is closed after `server.header_read_timeout` (no request yet) or
/// `server.idle_timeout` (none since the last), so the server's descriptors go back to where
/// they were. The idle connections are opened well within the first deadline, so they are all
/// open at once.
#[test]
fn idle_connections_neither_slow_clients_down_nor_stay_open() {
    let limit = raise_own_fd_limit();
    // Three ports' worth of idle connections, and room for the rest of the test process.
    let n = 2_000.min(limit.saturating_sub(1_000) / 3);
    assert!(
        n >= 300,
        "this test needs ~1,900 open files, the limit is {limit}"
    );
    let s = Server::start_with("  header_read_timeout: 10s\n  idle_timeout: 4s\n", "");
    let pid = pid_of(&s);
    let before = open_fds(pid);
    let opened = Instant::now();
    let mut idle = Vec::with_capacity(3 * n);
    for port in [s.grpc, s.http, s.api] {
        idle.extend(idle_connections(port, n));
    }
    let mut most = 0;
    assert!(
        eventually(Duration::from_secs(10), || {
            most = most.max(open_fds(pid));
            most >= before + 3 * n
        }),
        "the server accepted at most {} of {} connections at once ({:?} after the first)",
        most - before,
        3 * n,
        opened.elapsed()
    );
    // While they are open, a legitimate client on each port is served at once.
    let (status, took) = healthz(s.api);
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(2), "/healthz took {took:?}");
    let (status, took) = http_export(s.http);
    assert_eq!(status, 200);
    assert!(
        took < Duration::from_secs(2),
        "OTLP/HTTP export took {took:?}"
    );
    let (r, took) = grpc_export_once(s.grpc);
    assert!(r.is_ok(), "{r:?}");
    assert!(
        took < Duration::from_secs(2),
        "OTLP/gRPC export took {took:?}"
    );
    // gRPC clients that export once and then stay connected without a request. Their runtime
    // keeps running, as an exporter's does, so they notice when the server closes.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let channels = rt.block_on(async {
        let mut channels = Vec::new();
        for _ in 0..20 {
            let c = grpc_channel(s.grpc);
            grpc_export(c.clone()).await.unwrap();
            channels.push(c);
        }
        channels
    });
    // All of them are closed: the server's descriptors go back to where they were.
    assert!(
        eventually(Duration::from_secs(25), || open_fds(pid) <= before + 10),
        "the server still has {} descriptors open, {before} before",
        open_fds(pid)
    );
    assert!(
        opened.elapsed() >= Duration::from_secs(9),
        "closed before the deadline"
    );
    // The clients see their connections end (after the gRPC server's SETTINGS frame).
    let mut buf = [0u8; 256];
    for c in [&idle[0], &idle[n], &idle[2 * n]] {
        let mut c = c;
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let ended = loop {
            match c.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(e) => break e.kind() != std::io::ErrorKind::WouldBlock,
            }
        };
        assert!(ended, "the client sees its connection closed");
    }
    for listener in ["otlp_grpc", "otlp_http", "api"] {
        let closed = s.metric(&format!(
            "slogate_connections_closed_total{{listener=\"{listener}\",reason=\"no_request\"}}"
        ));
        assert!(
            closed >= n as f64,
            "{listener}: {closed} closed without a request"
        );
    }
    let idle_grpc =
        s.metric("slogate_connections_closed_total{listener=\"otlp_grpc\",reason=\"idle\"}");
    assert!(
        idle_grpc >= 20.0,
        "{idle_grpc} idle gRPC connections closed"
    );
    // The channels reconnect when they next export.
    rt.block_on(async { grpc_export(channels[0].clone()).await.unwrap() });
}

/// Past a listener's cap, new connections wait in the kernel's accept queue instead of taking
/// a descriptor, on every port; they are served once the connections before them close.
#[test]
fn connections_past_the_cap_wait_their_turn() {
    const CAP: usize = 50;
    let s = Server::start_with(
        &format!(
            "  header_read_timeout: 2s\n  max_connections: {CAP}\n  grpc_max_connections: {CAP}\n"
        ),
        "",
    );
    let pid = pid_of(&s);
    assert_eq!(
        s.metric("slogate_max_connections{listener=\"otlp_grpc\"}"),
        CAP as f64
    );
    let before = open_fds(pid);
    let mut idle = Vec::new();
    for port in [s.grpc, s.http, s.api] {
        idle.extend(idle_connections(port, 2 * CAP));
    }
    std::thread::sleep(Duration::from_millis(500));
    let held = open_fds(pid) - before;
    assert!(
        (3 * CAP - 3..=3 * CAP + 5).contains(&held),
        "{held} connections accepted, want {} ({CAP} per port)",
        3 * CAP
    );
    // A new client on each port waits for the idle ones ahead of it to be closed, then is served.
    let api = std::thread::spawn(move || healthz(s.api));
    let http = std::thread::spawn(move || http_export(s.http));
    let grpc = std::thread::spawn(move || grpc_export_once(s.grpc));
    let (status, took) = api.join().unwrap();
    assert_eq!(status, 200);
    assert!(
        took >= Duration::from_secs(1),
        "/healthz did not wait: {took:?}"
    );
    let (status, took) = http.join().unwrap();
    assert_eq!(status, 200);
    assert!(
        took >= Duration::from_secs(1),
        "the export did not wait: {took:?}"
    );
    let (r, took) = grpc.join().unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert!(
        took >= Duration::from_secs(1),
        "the gRPC export did not wait: {took:?}"
    );
    assert!(
        eventually(Duration::from_secs(15), || open_fds(pid) <= before + 10),
        "{} descriptors open, {before} before",
        open_fds(pid)
    );
    drop(idle);
}

/// A process out of file descriptors: its accept loops back off (10 ms doubling to 1 s) instead
/// of spinning — before the fix the gRPC loop burned a core and wrote millions of warnings —
/// log at most one warning per listener every 10 s, count every failure, and serve again as soon
/// as descriptors are free.
#[test]
fn out_of_descriptors_the_listeners_back_off_quietly_and_recover() {
    let s = Server::start_with("  header_read_timeout: 60s\n", "");
    let pid = pid_of(&s);
    // A few descriptors to spare, then none: connections to the gRPC port use them up.
    let limit = open_fds(pid) + 32;
    let set = std::process::Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(set.success());
    let held = idle_connections(s.grpc, 200);
    assert!(
        eventually(Duration::from_secs(10), || open_fds(pid) >= limit - 1),
        "the server's descriptors ran out ({} of {limit})",
        open_fds(pid)
    );
    let cpu = cpu_seconds(pid);
    let window = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let used = (cpu_seconds(pid) - cpu) / window.elapsed().as_secs_f64();
    assert!(
        used < 0.5,
        "the server used {:.0}% of a core while out of descriptors",
        used * 100.0
    );
    let warnings = || -> Vec<String> {
        s.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("accepting a connection failed"))
            .cloned()
            .collect()
    };
    let w = warnings();
    assert!(
        (1..=3).contains(&w.len()),
        "{} accept warnings in the log, want one per listener at most:\n{}",
        w.len(),
        w.join("\n")
    );
    // The descriptors come back when the connections close, and so does service.
    drop(held);
    assert!(
        eventually(Duration::from_secs(15), || healthz(s.api).0 == 200),
        "the API did not recover"
    );
    let (status, _) = http_export(s.http);
    assert_eq!(status, 200);
    let (r, _) = grpc_export_once(s.grpc);
    assert!(r.is_ok(), "{r:?}");
    assert!(s.metric("slogate_accept_errors_total{listener=\"otlp_grpc\"}") >= 1.0);
    let w = warnings();
    assert!(
        w.len() <= 4,
        "{} accept warnings:\n{}",
        w.len(),
        w.join("\n")
    );
}

/// The API's POST bodies have the same deadline: 40 verdict requests whose bodies trickle in a
/// byte a second, on a listener capped at 48 connections, are each answered 408 (in the API's
/// JSON error shape) at `server.body_read_timeout` and closed, while the API answers others at
/// once; afterwards every connection slot is free again.
#[test]
fn slow_api_bodies_are_cut_off_at_their_deadline() {
    const SLOW: usize = 40;
    let s = Server::start_with("  body_read_timeout: 3s\n  max_connections: 48\n", "");
    let head = "POST /api/v1/gates/none/verdict HTTP/1.1\r\nHost: slogate\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{";
    let mut slow: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let mut c = TcpStream::connect(("127.0.0.1", s.api)).unwrap();
            c.write_all(head.as_bytes()).unwrap();
            c
        })
        .collect();
    let started = Instant::now();
    let trickle = Trickle::start(&slow, b' ');
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(500));
        let t = Instant::now();
        let (status, _) = s.get("/api/v1/gates").unwrap();
        assert_eq!(status, 200, "the API while {SLOW} bodies trickle");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
    for c in &mut slow {
        let got = read_until_closed(c);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(10),
            "a trickling body was cut off after {took:?}, want ~3s"
        );
        let answer = String::from_utf8_lossy(&got);
        assert!(
            answer.starts_with("HTTP/1.1 408"),
            "unexpected answer {answer:?}"
        );
        assert!(
            answer.contains("{\"error\":\"the request body did not arrive within 3s"),
            "{answer}"
        );
    }
    trickle.stop();
    // Every slot is free: 48 connections at once are served again.
    let clients: Vec<_> = (0..48)
        .map(|_| {
            let api = s.api_url("/api/v1/gates");
            std::thread::spawn(move || reqwest::blocking::get(api).map(|r| r.status().as_u16()))
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap().unwrap(), 200);
    }
}
