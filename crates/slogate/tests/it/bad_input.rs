//! Hostile and invalid input: every bad request gets a clear error with the status the OTLP
//! spec asks for, the server keeps serving, and nothing of a refused request is counted.

use crate::harness::Server;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::SpanKind};
use prost::Message;
use slogate_ingest::grpc::{EXPORT_PATH, RawCodec, RpcStatus};
use std::io::Write;
use tonic::Code;
use tonic::codec::CompressionEncoding;

const LIMIT: usize = 1 << 20;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn span(i: u8, valid: bool, zero_trace: bool) -> Span {
    Span {
        trace_id: if zero_trace {
            vec![0; 16]
        } else {
            vec![i + 1; 16]
        },
        span_id: vec![i + 1; 8],
        name: "GET /cart".into(),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: 1_000_000_000,
        end_time_unix_nano: if valid { 1_020_000_000 } else { 900_000_000 },
        ..Default::default()
    }
}

fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "checkout"), kv("service.version", "v1")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

struct Http {
    client: reqwest::blocking::Client,
    url: String,
}

impl Http {
    fn post(
        &self,
        content_type: &str,
        encoding: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, String, Vec<u8>) {
        let mut req = self
            .client
            .post(&self.url)
            .header("content-type", content_type)
            .body(body);
        if let Some(enc) = encoding {
            req = req.header("content-encoding", enc);
        }
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, ct, resp.bytes().unwrap().to_vec())
    }
}

async fn grpc_call(port: u16, body: Vec<u8>, gzip: bool) -> Result<Bytes, tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = tonic::client::Grpc::new(channel).max_encoding_message_size(usize::MAX);
    if gzip {
        client = client.send_compressed(CompressionEncoding::Gzip);
    }
    client.ready().await.unwrap();
    client
        .unary(
            tonic::Request::new(Bytes::from(body)),
            http::uri::PathAndQuery::from_static(EXPORT_PATH),
            RawCodec,
        )
        .await
        .map(|r| r.into_inner())
}

#[test]
fn bad_requests_are_refused_clearly_and_change_nothing() {
    let server = Server::start(&format!("ingest:\n  max_request_bytes: {LIMIT}\n"));
    let http = Http {
        client: reqwest::blocking::Client::new(),
        url: format!("http://127.0.0.1:{}/v1/traces", server.http),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let good = request((0..10).map(|i| span(i, true, false)).collect()).encode_to_vec();
    let (status, _, _) = http.post("application/x-protobuf", None, good.clone());
    assert_eq!(status, 200);

    // A 4 MiB body of zeros compresses to a few KiB: a small gzip bomb.
    let bomb = gzip(&vec![0u8; 4 * LIMIT]);
    assert!(bomb.len() < LIMIT / 16);
    let garbage = b"\x0a\xff\xff\xff\x0fthis is not protobuf".to_vec();

    // gRPC: (body, gzip, expected code, message fragment)
    let grpc_cases: Vec<(Vec<u8>, bool, Code, &str)> = vec![
        (
            garbage.clone(),
            false,
            Code::InvalidArgument,
            "invalid ExportTraceServiceRequest",
        ),
        (
            vec![0x0a; 2 * LIMIT],
            false,
            Code::ResourceExhausted,
            "exceeds the 1048576-byte limit",
        ),
        (
            vec![0u8; 4 * LIMIT],
            true,
            Code::ResourceExhausted,
            "after decompression",
        ),
    ];
    for (body, gz, code, fragment) in grpc_cases {
        let err = rt.block_on(grpc_call(server.grpc, body, gz)).unwrap_err();
        assert_eq!(err.code(), code, "{err:?}");
        assert!(err.message().contains(fragment), "{err:?}");
    }

    // HTTP: (content type, encoding, body, status, message fragment)
    type HttpCase<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, &'a str);
    let http_cases: Vec<HttpCase> = vec![
        (
            "application/x-protobuf",
            None,
            garbage.clone(),
            400,
            "invalid ExportTraceServiceRequest",
        ),
        (
            "application/json",
            None,
            b"{\"resourceSpans\": [ {".to_vec(),
            400,
            "invalid OTLP/JSON",
        ),
        (
            "application/json",
            None,
            br#"{"resourceSpans": 7}"#.to_vec(),
            400,
            "invalid type",
        ),
        (
            "application/x-protobuf",
            Some("gzip"),
            b"\x1f\x8b\x08\x00corrupt".to_vec(),
            400,
            "corrupt gzip body",
        ),
        (
            "application/x-protobuf",
            None,
            vec![0x0a; 2 * LIMIT],
            413,
            "exceeds the 1048576-byte limit",
        ),
        (
            "application/x-protobuf",
            Some("gzip"),
            bomb,
            413,
            "exceeds the 1048576-byte limit",
        ),
        (
            "application/x-protobuf",
            Some("br"),
            good.clone(),
            415,
            "content encoding",
        ),
        ("text/plain", None, good.clone(), 415, "content type"),
    ];
    for (ct, enc, body, want_status, fragment) in http_cases {
        let (status, resp_ct, resp) = http.post(ct, enc, body);
        assert_eq!(
            status,
            want_status,
            "{ct} {enc:?}: {}",
            String::from_utf8_lossy(&resp)
        );
        let message = if resp_ct.starts_with("application/json") {
            let v: serde_json::Value = serde_json::from_slice(&resp).unwrap();
            assert!(v["code"].as_i64().is_some(), "{v}");
            v["message"].as_str().unwrap().to_string()
        } else {
            assert_eq!(resp_ct, "application/x-protobuf");
            RpcStatus::decode(&resp[..])
                .expect("google.rpc.Status body")
                .message
        };
        assert!(message.contains(fragment), "{ct} {enc:?}: {message}");
    }

    // The server still serves, and only the good request was counted.
    let (status, _, _) = http.post("application/x-protobuf", Some("gzip"), gzip(&good));
    assert_eq!(status, 200);
    let sli = server.get_json("/api/v1/sli?service=checkout&window=10m");
    assert_eq!(sli["requests"].as_u64(), Some(20), "{sli}");
    assert_eq!(server.metric("slogate_spans_accepted_total"), 20.0);
    // The memory gauge's parts add up to it (one scrape, so both come from the same moment).
    let (_, metrics) = server.get("/metrics").unwrap();
    let sample = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    let live = sample("slogate_series_state_bytes{part=\"live\"}");
    let parts = live
        + sample("slogate_series_state_bytes{part=\"fine\"}")
        + sample("slogate_series_state_bytes{part=\"coarse\"}");
    assert!(live > 0.0);
    assert_eq!(parts, sample("slogate_series_memory_bytes"));
    assert_eq!(
        server.metric("slogate_receiver_requests_total{transport=\"grpc\",outcome=\"malformed\"}"),
        1.0
    );
    assert_eq!(
        server.metric("slogate_receiver_requests_total{transport=\"grpc\",outcome=\"too_large\"}"),
        2.0
    );
    assert_eq!(
        server.metric(
            "slogate_receiver_requests_total{transport=\"http_protobuf\",outcome=\"too_large\"}"
        ),
        2.0
    );
}

#[test]
fn invalid_spans_get_partial_success_on_every_transport() {
    let server = Server::start("");
    let http = Http {
        client: reqwest::blocking::Client::new(),
        url: format!("http://127.0.0.1:{}/v1/traces", server.http),
    };
    let req = request(vec![
        span(0, true, false),
        span(1, false, false),
        span(2, true, true),
    ]);
    let want = "rejected 2 invalid span(s): 1 invalid_trace_id, 1 end_before_start; first at resource_spans[0] span #1: end_time_unix_nano is before start_time_unix_nano";

    // gRPC
    let rt = tokio::runtime::Runtime::new().unwrap();
    let resp = rt
        .block_on(grpc_call(server.grpc, req.encode_to_vec(), false))
        .unwrap();
    let ps = ExportTraceServiceResponse::decode(resp)
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!((ps.rejected_spans, ps.error_message.as_str()), (2, want));

    // HTTP protobuf
    let (status, ct, body) = http.post("application/x-protobuf", None, req.encode_to_vec());
    assert_eq!((status, ct.as_str()), (200, "application/x-protobuf"));
    let ps = ExportTraceServiceResponse::decode(&body[..])
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!((ps.rejected_spans, ps.error_message.as_str()), (2, want));

    // HTTP JSON, written by hand as a client would: hex ids, integer enums, string int64s.
    let json = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}}]},
        "scopeSpans":[{"spans":[
          {"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"GET","kind":2,"startTimeUnixNano":"1000","endTimeUnixNano":"2000"},
          {"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"GET","kind":2,"startTimeUnixNano":"3000","endTimeUnixNano":"2000"},
          {"traceId":"00000000000000000000000000000000","spanId":"0102030405060708","name":"GET","kind":2,"startTimeUnixNano":1000,"endTimeUnixNano":2000}]}]}]}"#;
    let (status, ct, body) = http.post("application/json", None, json.as_bytes().to_vec());
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["partialSuccess"]["rejectedSpans"], "2");
    assert_eq!(v["partialSuccess"]["errorMessage"], want);

    // An empty request is a success without partial_success.
    let (status, _, body) = http.post("application/x-protobuf", None, Vec::new());
    assert_eq!(status, 200);
    assert_eq!(
        ExportTraceServiceResponse::decode(&body[..])
            .unwrap()
            .partial_success,
        None
    );
    let (status, _, body) = http.post("application/json", None, b"{}".to_vec());
    assert_eq!((status, body.as_slice()), (200, b"{}".as_slice()));

    let sli = server.get_json("/api/v1/sli?service=checkout&window=10m");
    assert_eq!(
        sli["requests"].as_u64(),
        Some(3),
        "one valid span per transport: {sli}"
    );
    assert_eq!(
        server.metric("slogate_spans_rejected_total{reason=\"end_before_start\"}"),
        3.0
    );
    assert_eq!(
        server.metric("slogate_spans_rejected_total{reason=\"invalid_trace_id\"}"),
        3.0
    );
}

/// A client that opens a connection and trickles its request head a byte at a time (slow-loris)
/// is cut off at `server.header_read_timeout` on both HTTP listeners, however steadily it keeps
/// sending; complete requests on other connections are served meanwhile.
#[test]
fn slow_loris_connections_are_cut_off() {
    use std::io::Read;
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    let s = Server::start_with("  header_read_timeout: 1s\n", "");
    for (listener, port) in [("api", s.api), ("otlp_http", s.http)] {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let started = Instant::now();
        let head = b"POST /v1/traces HTTP/1.1\r\nHost: slogate\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let mut closed_after = None;
        let mut buf = [0u8; 512];
        for byte in head.iter().cycle().take(100) {
            if c.write_all(std::slice::from_ref(byte)).is_err() {
                closed_after = Some(started.elapsed());
                break;
            }
            match c.read(&mut buf) {
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                // EOF or a reset: the server closed the connection.
                Ok(0) | Err(_) => {
                    closed_after = Some(started.elapsed());
                    break;
                }
                Ok(n) => {
                    // hyper may answer 408 before closing; the connection must still end.
                    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
                    assert!(
                        answer.starts_with("HTTP/1.1 408"),
                        "{listener}: unexpected answer {answer:?}"
                    );
                }
            }
            // Meanwhile a well-behaved client is served.
            if closed_after.is_none() && started.elapsed() < Duration::from_millis(300) {
                assert_eq!(s.get("/healthz").unwrap().0, 200);
            }
        }
        let took = closed_after.unwrap_or_else(|| {
            panic!(
                "{listener}: a trickled request head was never cut off ({:?})",
                started.elapsed()
            )
        });
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(6),
            "{listener}: cut off after {took:?}, want ~1s"
        );
    }
    assert_eq!(
        s.get("/healthz").unwrap().0,
        200,
        "the server keeps serving"
    );
}

/// `ingest.max_span_duration` is what decides an absurd span: `end_time = u64::MAX` is rejected
/// per span at the default (1h), and a configured limit moves the line.
#[test]
fn absurd_durations_are_rejected_per_span_at_the_configured_limit() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    let two_hours = |i: u8| Span {
        end_time_unix_nano: 1_000_000_000 + 7_200_000_000_000,
        ..span(i, true, false)
    };
    let forever = |i: u8| Span {
        end_time_unix_nano: u64::MAX,
        ..span(i, true, false)
    };
    let rejected = |extra: &str| {
        let server = Server::start(extra);
        let http = Http {
            client: reqwest::blocking::Client::new(),
            url: format!("http://127.0.0.1:{}/v1/traces", server.http),
        };
        let req = request(vec![span(0, true, false), two_hours(1), forever(2)]);
        let (status, _, body) = http.post("application/x-protobuf", None, req.encode_to_vec());
        assert_eq!(status, 200);
        let ps = ExportTraceServiceResponse::decode(&body[..])
            .unwrap()
            .partial_success
            .unwrap_or_default();
        let sli = server.get_json("/api/v1/sli?service=checkout&window=10m");
        (ps.rejected_spans, ps.error_message, sli)
    };
    let (n, message, sli) = rejected("");
    assert_eq!(n, 2, "{message}");
    assert!(message.contains("duration_too_long"), "{message}");
    // The valid span of the same request was kept, and no 527-year p999 appeared.
    assert!(
        sli["latency_ms"]["p99"].as_f64().unwrap() < 1_000.0,
        "{sli}"
    );
    let (n, message, _) = rejected("ingest:\n  max_span_duration: 3h\n");
    assert_eq!(n, 1, "only the endless span: {message}");
}
