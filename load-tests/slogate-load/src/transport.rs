//! Sending pre-encoded export requests over OTLP/gRPC and OTLP/HTTP.

use crate::scenario::{Protocol, Target};
use bytes::{Buf, BufMut, Bytes};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use std::time::Duration;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, Endpoint};

/// Which OTLP signal a client exports: it picks the gRPC method, the default OTLP/HTTP path
/// and how `partial_success` is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Signal {
    #[default]
    Traces,
    Metrics,
}

impl Signal {
    /// The gRPC method every OTLP exporter of this signal calls.
    pub fn grpc_path(self) -> &'static str {
        match self {
            Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        }
    }
    /// The OTLP/HTTP path appended to an endpoint that has none.
    pub fn http_path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Metrics => "/v1/metrics",
        }
    }
    pub fn parse(s: &str) -> Result<Signal, String> {
        match s {
            "traces" | "trace" | "spans" => Ok(Signal::Traces),
            "metrics" | "metric" => Ok(Signal::Metrics),
            _ => Err(format!("unknown signal {s:?}; use traces or metrics")),
        }
    }
}
/// Long enough for a loaded server, short enough that a wedged one cannot hang a run's end.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What became of one export request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted; `rejected` spans (or data points) were refused in `partial_success`.
    Ok { rejected: u64 },
    /// The server asked us to slow down (gRPC UNAVAILABLE / RESOURCE_EXHAUSTED, HTTP 429 / 503).
    /// `status` is e.g. `http 503` or `grpc ResourceExhausted`.
    Throttled { status: String },
    /// `status` is `http 404`, `grpc Unimplemented`, `connection`, `timeout`...; `message` the
    /// detail (the first one is in the report).
    Failed { status: String, message: String },
}

impl Outcome {
    fn failed(status: impl Into<String>, message: String) -> Outcome {
        Outcome::Failed {
            status: status.into(),
            message,
        }
    }
}

/// Hands the already-encoded message bytes to tonic, and the response bytes back.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// One connection's worth of client; cheap to clone, clones share the connection (gRPC) or the
/// connection pool (HTTP).
#[derive(Clone)]
pub enum Client {
    Grpc {
        grpc: tonic::client::Grpc<Channel>,
        signal: Signal,
    },
    Http {
        client: reqwest::Client,
        url: String,
        json: bool,
        gzip: bool,
        signal: Signal,
    },
}

impl Client {
    /// A trace client; see [`Client::for_signal`].
    pub fn new(target: &Target) -> Result<Client, String> {
        Client::for_signal(target, Signal::Traces)
    }

    /// Builds a client; gRPC connects lazily so a server that is not up yet shows as failed
    /// requests rather than a failed run.
    pub fn for_signal(target: &Target, signal: Signal) -> Result<Client, String> {
        match target.protocol {
            Protocol::Grpc => {
                let endpoint = Endpoint::from_shared(target.endpoint.clone())
                    .map_err(|e| format!("grpc endpoint {:?}: {e}", target.endpoint))?
                    .timeout(REQUEST_TIMEOUT)
                    .connect_timeout(Duration::from_secs(5))
                    .tcp_nodelay(true)
                    // Large windows: requests are hundreds of KiB and the default 64 KiB window
                    // would make every request wait for WINDOW_UPDATEs.
                    .initial_stream_window_size(4 << 20)
                    .initial_connection_window_size(16 << 20);
                let mut grpc = tonic::client::Grpc::new(endpoint.connect_lazy())
                    .max_decoding_message_size(4 << 20);
                if target.gzip {
                    grpc = grpc
                        .send_compressed(CompressionEncoding::Gzip)
                        .accept_compressed(CompressionEncoding::Gzip);
                }
                Ok(Client::Grpc { grpc, signal })
            }
            Protocol::HttpProtobuf | Protocol::HttpJson => {
                let mut url = target.endpoint.trim_end_matches('/').to_string();
                let path_start = url.find("://").map_or(0, |i| i + 3);
                if !url[path_start..].contains('/') {
                    url.push_str(signal.http_path());
                }
                let client = reqwest::Client::builder()
                    .timeout(REQUEST_TIMEOUT)
                    .connect_timeout(Duration::from_secs(5))
                    .tcp_nodelay(true)
                    .pool_max_idle_per_host(1024)
                    .build()
                    .map_err(|e| format!("http client: {e}"))?;
                Ok(Client::Http {
                    client,
                    url,
                    json: target.protocol == Protocol::HttpJson,
                    gzip: target.gzip,
                    signal,
                })
            }
        }
    }

    pub async fn send(&mut self, body: Bytes) -> Outcome {
        match self {
            Client::Grpc { grpc, signal } => {
                if let Err(e) = grpc.ready().await {
                    return Outcome::failed("connection", format!("grpc connection: {e}"));
                }
                let path = http::uri::PathAndQuery::from_static(signal.grpc_path());
                match grpc.unary(tonic::Request::new(body), path, RawCodec).await {
                    Ok(resp) => match rejected_in(&resp.into_inner(), *signal) {
                        Ok(rejected) => Outcome::Ok { rejected },
                        Err(e) => Outcome::failed(
                            "bad response",
                            format!("grpc response does not decode: {e}"),
                        ),
                    },
                    Err(st)
                        if matches!(
                            st.code(),
                            tonic::Code::Unavailable | tonic::Code::ResourceExhausted
                        ) && !is_transport(&st) =>
                    {
                        Outcome::Throttled {
                            status: format!("grpc {:?}", st.code()),
                        }
                    }
                    Err(st) => Outcome::failed(
                        if is_transport(&st) {
                            "connection".to_string()
                        } else {
                            format!("grpc {:?}", st.code())
                        },
                        format!("grpc {:?}: {}", st.code(), st.message()),
                    ),
                }
            }
            Client::Http {
                client,
                url,
                json,
                gzip,
                signal,
            } => {
                let mut req = client.post(url.as_str()).header(
                    http::header::CONTENT_TYPE,
                    if *json {
                        "application/json"
                    } else {
                        "application/x-protobuf"
                    },
                );
                if *gzip {
                    req = req.header(http::header::CONTENT_ENCODING, "gzip");
                }
                let resp = match req.body(body).send().await {
                    Ok(r) => r,
                    Err(e) => {
                        let status = if e.is_timeout() {
                            "timeout"
                        } else {
                            "connection"
                        };
                        return Outcome::failed(status, format!("http: {e}"));
                    }
                };
                let status = resp.status().as_u16();
                match status {
                    200..=299 => match resp.bytes().await {
                        Ok(b) => Outcome::Ok {
                            rejected: http_rejected(&b, *json, *signal),
                        },
                        Err(e) => Outcome::failed(
                            format!("http {status}"),
                            format!("http response body: {e}"),
                        ),
                    },
                    429 | 503 => Outcome::Throttled {
                        status: format!("http {status}"),
                    },
                    _ => {
                        let text = resp.text().await.unwrap_or_default();
                        Outcome::failed(
                            format!("http {status}"),
                            format!(
                                "http {status}: {}",
                                text.chars().take(200).collect::<String>()
                            ),
                        )
                    }
                }
            }
        }
    }
}

/// tonic reports a refused or broken connection as UNAVAILABLE too; that is a failure, not
/// the server's backpressure.
fn is_transport(st: &tonic::Status) -> bool {
    use std::error::Error;
    let mut src = st.source();
    while let Some(e) = src {
        if e.is::<tonic::transport::Error>() || e.is::<std::io::Error>() {
            return true;
        }
        src = e.source();
    }
    false
}

/// `partial_success.rejected_spans` (traces) or `.rejected_data_points` (metrics) of an encoded
/// export response.
fn rejected_in(body: &[u8], signal: Signal) -> Result<u64, prost::DecodeError> {
    Ok(match signal {
        Signal::Traces => ExportTraceServiceResponse::decode(body)?
            .partial_success
            .map_or(0, |p| p.rejected_spans.max(0) as u64),
        Signal::Metrics => ExportMetricsServiceResponse::decode(body)?
            .partial_success
            .map_or(0, |p| p.rejected_data_points.max(0) as u64),
    })
}

/// The rejected count of an OTLP/HTTP response (empty bodies mean none).
fn http_rejected(body: &[u8], json: bool, signal: Signal) -> u64 {
    if body.is_empty() {
        return 0;
    }
    if json {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let key = match signal {
            Signal::Traces => "rejectedSpans",
            Signal::Metrics => "rejectedDataPoints",
        };
        let r = &v["partialSuccess"][key];
        // proto3 JSON writes int64 as a string; accept a number too.
        r.as_u64()
            .or_else(|| r.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(0)
    } else {
        rejected_in(body, signal).unwrap_or(0)
    }
}
