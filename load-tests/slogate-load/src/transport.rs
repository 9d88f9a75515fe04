//! Sending pre-encoded export requests over OTLP/gRPC and OTLP/HTTP, in plain text or, for a
//! secured server, over TLS with headers such as a bearer token ([`Access`]).
//!
//! TLS is rustls with aws-lc-rs, as in slogate: reqwest's own for HTTP, and for gRPC a
//! tokio-rustls connector handed to tonic, so the plain-text channel is tonic's usual one.

use crate::scenario::{Protocol, Target};
use bytes::{Buf, BufMut, Bytes};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use std::sync::Arc;
use std::time::Duration;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
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
/// How a client reaches a secured server. The default is plain text without headers.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// PEM of the CA that signed the server's certificate, the only one trusted. `https://`
    /// endpoints need it; `http://` ones must not have it.
    pub tls_ca_pem: Option<Vec<u8>>,
    /// Sent with every request (as gRPC metadata on gRPC), e.g. `("authorization", "Bearer
    /// …")` as `OTEL_EXPORTER_OTLP_HEADERS` would.
    pub headers: Vec<(String, String)>,
}

impl Access {
    /// The `authorization: Bearer <token>` header of a token file: its first line that is
    /// neither blank nor a `#` comment.
    pub fn bearer_from_file(path: &std::path::Path) -> Result<(String, String), String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read token file {}: {e}", path.display()))?;
        let token = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or_else(|| format!("token file {} holds no token", path.display()))?;
        Ok(("authorization".into(), format!("Bearer {token}")))
    }

    /// Whether `endpoint` speaks TLS: checks that it agrees with [`Access::tls_ca_pem`].
    fn tls_for(&self, endpoint: &str) -> Result<Option<&[u8]>, String> {
        let https = endpoint
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
        match (https, &self.tls_ca_pem) {
            (true, Some(ca)) => Ok(Some(ca)),
            (false, None) => Ok(None),
            (true, None) => Err(format!(
                "{endpoint} is https: give the CA of its certificate (--tls-ca)"
            )),
            (false, Some(_)) => Err(format!("a TLS CA is given but {endpoint} is not https://")),
        }
    }

    fn metadata(&self) -> Result<Option<MetadataMap>, String> {
        if self.headers.is_empty() {
            return Ok(None);
        }
        let mut md = MetadataMap::new();
        for (k, v) in &self.headers {
            let key = MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                .map_err(|_| format!("invalid header name {k:?}"))?;
            let value = MetadataValue::try_from(v.as_str())
                .map_err(|_| format!("invalid value of header {k}"))?;
            md.append(key, value);
        }
        Ok(Some(md))
    }

    fn header_map(&self) -> Result<http::HeaderMap, String> {
        let mut h = http::HeaderMap::new();
        for (k, v) in &self.headers {
            let name = http::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("invalid header name {k:?}"))?;
            let value = http::HeaderValue::from_str(v)
                .map_err(|_| format!("invalid value of header {k}"))?;
            h.append(name, value);
        }
        Ok(h)
    }
}

/// The certificates of `ca_pem`; at least one.
fn ca_roots(ca_pem: &[u8]) -> Result<rustls::RootCertStore, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        let c = c.map_err(|e| format!("TLS CA: {e}"))?;
        roots.add(c).map_err(|e| format!("TLS CA: {e}"))?;
    }
    if roots.is_empty() {
        return Err("the TLS CA file holds no PEM certificate".into());
    }
    Ok(roots)
}

/// A rustls client configuration that trusts only the certificates of `ca_pem`.
fn rustls_client(ca_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, String> {
    let roots = ca_roots(ca_pem)?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// A lazy gRPC channel over TLS: tonic gets a connector that dials TCP and runs the rustls
/// handshake, verifying the certificate for the endpoint's host.
fn tls_channel(endpoint: Endpoint, ca_pem: &[u8]) -> Result<Channel, String> {
    let cfg = rustls_client(ca_pem)?;
    let uri = endpoint.uri().clone();
    let host = uri
        .host()
        .ok_or_else(|| format!("grpc endpoint {uri} has no host"))?
        .trim_matches(['[', ']'])
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let name = rustls_pki_types::ServerName::try_from(host.clone())
        .map_err(|e| format!("grpc endpoint host {host:?}: {e}"))?;
    let connector = tower::service_fn(move |_: http::Uri| {
        let (cfg, host, name) = (cfg.clone(), host.clone(), name.clone());
        async move {
            let connect = async {
                let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
                tcp.set_nodelay(true)?;
                tokio_rustls::TlsConnector::from(cfg)
                    .connect(name, tcp)
                    .await
            };
            let tls = tokio::time::timeout(CONNECT_TIMEOUT, connect)
                .await
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(connector))
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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
        /// [`Access::headers`], copied into every request; `None` without headers.
        metadata: Option<Arc<MetadataMap>>,
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
    pub fn new(target: &Target, access: &Access) -> Result<Client, String> {
        Client::for_signal(target, Signal::Traces, access)
    }

    /// Builds a client; gRPC connects lazily so a server that is not up yet shows as failed
    /// requests rather than a failed run.
    pub fn for_signal(target: &Target, signal: Signal, access: &Access) -> Result<Client, String> {
        let tls = access.tls_for(&target.endpoint)?;
        match target.protocol {
            Protocol::Grpc => {
                // With TLS the connector below does the handshake; tonic sees plain HTTP/2.
                let uri = match tls {
                    Some(_) => format!("http://{}", &target.endpoint["https://".len()..]),
                    None => target.endpoint.clone(),
                };
                let endpoint = Endpoint::from_shared(uri)
                    .map_err(|e| format!("grpc endpoint {:?}: {e}", target.endpoint))?
                    .timeout(REQUEST_TIMEOUT)
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tcp_nodelay(true)
                    // Large windows: requests are hundreds of KiB and the default 64 KiB window
                    // would make every request wait for WINDOW_UPDATEs.
                    .initial_stream_window_size(4 << 20)
                    .initial_connection_window_size(16 << 20);
                let channel = match tls {
                    Some(ca) => tls_channel(endpoint, ca)?,
                    None => endpoint.connect_lazy(),
                };
                let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(4 << 20);
                if target.gzip {
                    grpc = grpc
                        .send_compressed(CompressionEncoding::Gzip)
                        .accept_compressed(CompressionEncoding::Gzip);
                }
                Ok(Client::Grpc {
                    grpc,
                    signal,
                    metadata: access.metadata()?.map(Arc::new),
                })
            }
            Protocol::HttpProtobuf | Protocol::HttpJson => {
                let mut url = target.endpoint.trim_end_matches('/').to_string();
                let path_start = url.find("://").map_or(0, |i| i + 3);
                if !url[path_start..].contains('/') {
                    url.push_str(signal.http_path());
                }
                let mut builder = reqwest::Client::builder()
                    .timeout(REQUEST_TIMEOUT)
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tcp_nodelay(true)
                    .pool_max_idle_per_host(1024)
                    .default_headers(access.header_map()?);
                if let Some(ca) = tls {
                    ca_roots(ca)?;
                    let ca = reqwest::Certificate::from_pem_bundle(ca)
                        .map_err(|e| format!("TLS CA: {e}"))?;
                    builder = builder.tls_certs_only(ca);
                }
                let client = builder.build().map_err(|e| format!("http client: {e}"))?;
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
            Client::Grpc {
                grpc,
                signal,
                metadata,
            } => {
                if let Err(e) = grpc.ready().await {
                    return Outcome::failed("connection", format!("grpc connection: {e}"));
                }
                let path = http::uri::PathAndQuery::from_static(signal.grpc_path());
                let mut req = tonic::Request::new(body);
                if let Some(md) = metadata {
                    *req.metadata_mut() = MetadataMap::clone(md);
                }
                match grpc.unary(req, path, RawCodec).await {
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
