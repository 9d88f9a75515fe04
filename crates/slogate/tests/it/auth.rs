//! Who may talk to slogate, shown with real clients against the real server: bearer tokens on
//! the three ports (refused with 401 + `WWW-Authenticate: Bearer` or gRPC UNAUTHENTICATED, and
//! counted), read and admin roles on the API, token and certificate rotation without a restart
//! and without losing an export of clients that keep exporting through it,
//! TLS and mutual TLS (plain text, a client certificate from another CA and an expired one are
//! refused in the handshake, and counted), the Rust and Python OTLP exporters, the CLI and
//! Argo's jsonpath/expr harness over TLS with a token, and no secret in logs at TRACE,
//! `/metrics`, `config show` or error bodies.

use crate::exporters::python;
use crate::harness::{SpanSpec, free_port, lognormal_spans, slogate};
use bytes::Bytes;
use opentelemetry::KeyValue;
use opentelemetry::trace::{Span, SpanKind, Tracer, TracerProvider};
use opentelemetry_otlp::{
    Protocol, SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use slogate_ingest::grpc::{EXPORT_PATH, RawCodec};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

const INGEST_A: &str = "ingest-A-3f9c2a7d1e5b";
const INGEST_B: &str = "ingest-B-8b41c6e0f2aa";
const INGEST_NEW: &str = "ingest-N-77aa19c4e0d3";
const READ: &str = "read-5d2e9a41c7f0e3";
const ADMIN: &str = "admin-c0ffee12345678";

// ---------------------------------------------------------------------------------------------
// Certificates

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(p, key),
    }
}

/// A certificate and its key (PEM) signed by `ca`: a server one for 127.0.0.1 and localhost,
/// or a client one; `expired` makes it valid only in 2020.
fn leaf(ca: &Ca, name: &str, server: bool, expired: bool) -> (String, String) {
    let sans: Vec<String> = if server {
        vec!["localhost".into(), "127.0.0.1".into()]
    } else {
        vec![]
    };
    let mut p = CertificateParams::new(sans).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    // As real CAs do; OpenSSL's strict verification (urllib3's default) wants it.
    p.use_authority_key_identifier_extension = true;
    if expired {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2020, 12, 31);
    }
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Every certificate the tests use, written to `dir`.
struct Pki {
    ca: String,
    ca_path: PathBuf,
    cert_path: PathBuf,
    key_path: PathBuf,
    client_ca_path: PathBuf,
    server_key: String,
    client: (String, String),
    foreign_client: (String, String),
    expired_client: (String, String),
    /// A server certificate from another CA, for the rotation.
    next_ca: String,
    next_server: (String, String),
    /// A new server certificate and key from the same CA, for the rotation under load.
    renewed_server: (String, String),
}

impl Pki {
    /// The `server.tls` lines (indented for the `server:` section) for the server certificate.
    fn tls_section(&self) -> String {
        format!(
            "  tls:\n    cert_file: {}\n    key_file: {}\n",
            self.cert_path.display(),
            self.key_path.display()
        )
    }
}

fn pki(dir: &Path) -> Pki {
    let server_ca = ca("slogate test server CA");
    let client_ca = ca("slogate test client CA");
    let stranger = ca("some other CA");
    let next_ca = ca("slogate test server CA 2");
    let (cert, key) = leaf(&server_ca, "slogate", true, false);
    let p = Pki {
        ca: server_ca.pem.clone(),
        ca_path: dir.join("ca.pem"),
        cert_path: dir.join("tls.crt"),
        key_path: dir.join("tls.key"),
        client_ca_path: dir.join("client-ca.pem"),
        server_key: key.clone(),
        client: leaf(&client_ca, "good client", false, false),
        foreign_client: leaf(&stranger, "foreign client", false, false),
        expired_client: leaf(&client_ca, "expired client", false, true),
        next_ca: next_ca.pem.clone(),
        next_server: leaf(&next_ca, "slogate rotated", true, false),
        renewed_server: leaf(&server_ca, "slogate renewed", true, false),
    };
    std::fs::write(&p.ca_path, &p.ca).unwrap();
    std::fs::write(&p.cert_path, cert).unwrap();
    std::fs::write(&p.key_path, key).unwrap();
    std::fs::write(&p.client_ca_path, client_ca.pem).unwrap();
    p
}

// ---------------------------------------------------------------------------------------------
// A server process with auth and TLS

struct Proc {
    child: Child,
    grpc: u16,
    http: u16,
    api: u16,
    scheme: &'static str,
    log: Arc<Mutex<Vec<String>>>,
    config: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes the token files into `dir`: ingest A and B (two files), read, admin.
fn token_files(dir: &Path) -> String {
    for (name, text) in [
        ("ingest-a", format!("# first ingest token\n{INGEST_A}\n")),
        ("ingest-b", format!("{INGEST_B}\n")),
        ("read", format!("{READ}\n")),
        ("admin", format!("{ADMIN}\n")),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let d = dir.display();
    format!(
        "auth:\n  ingest:\n    token_files: [{d}/ingest-a, {d}/ingest-b]\n  api:\n    read_token_files: [{d}/read]\n    admin_token_files: [{d}/admin]\n"
    )
}

/// Starts `slogate serve` at TRACE with `server_extra` in `server:` and `extra` after it;
/// `client` (trusting the server's CA when TLS is on) polls `/readyz`.
fn start(
    dir: &Path,
    server_extra: &str,
    extra: &str,
    tls: bool,
    client: &reqwest::blocking::Client,
) -> Proc {
    for _attempt in 0..5 {
        let (grpc, http, api) = (free_port(), free_port(), free_port());
        let config = dir.join("slogate.yaml");
        std::fs::write(
            &config,
            format!(
                "# slogate configuration (auth test)\nserver:\n  otlp_grpc: 127.0.0.1:{grpc}\n  otlp_http: 127.0.0.1:{http}\n  http: 127.0.0.1:{api}\n  shutdown_grace: 2s\n{server_extra}{extra}"
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_slogate"))
            .args(["serve", "--config"])
            .arg(&config)
            .current_dir(dir)
            .env("SLOGATE_LOG", "trace")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (stderr, sink) = (child.stderr.take().unwrap(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut p = Proc {
            child,
            grpc,
            http,
            api,
            scheme: if tls { "https" } else { "http" },
            log,
            config,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = client.get(p.url(p.api, "/readyz")).send()
                && r.status() == 200
            {
                return p;
            }
            if let Ok(Some(_)) = p.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = p.log.lock().unwrap().join("\n");
        if !log.contains("cannot bind") {
            panic!("slogate did not become ready; log:\n{log}");
        }
    }
    panic!("no free ports");
}

impl Proc {
    fn url(&self, port: u16, path: &str) -> String {
        format!("{}://127.0.0.1:{port}{path}", self.scheme)
    }

    /// The value of one sample of `/metrics`, read with the read token.
    fn metric(&self, client: &reqwest::blocking::Client, sample: &str) -> f64 {
        let body = client
            .get(self.url(self.api, "/metrics"))
            .bearer_auth(READ)
            .send()
            .unwrap()
            .text()
            .unwrap();
        body.lines()
            .find(|l| l.starts_with(sample) && l[sample.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{sample} not in:\n{body}"))
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

fn https_client(ca: &str, identity: Option<&(String, String)>) -> reqwest::blocking::Client {
    let mut b = reqwest::blocking::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(ca.as_bytes()).unwrap())
        .timeout(Duration::from_secs(10));
    if let Some((cert, key)) = identity {
        b = b.identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap());
    }
    b.build().unwrap()
}

fn plain_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// (status, `WWW-Authenticate`, body) of a request with an optional bearer token.
fn call(
    client: &reqwest::blocking::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> (u16, String, String) {
    let mut req = client.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some((content_type, bytes)) = body {
        req = req.header("content-type", content_type).body(bytes);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, challenge, resp.text().unwrap())
}

// ---------------------------------------------------------------------------------------------
// gRPC

/// A TLS client configuration trusting `ca`, with an optional client certificate.
fn rustls_client(ca: &str, identity: Option<&(String, String)>) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut cfg = match identity {
        Some((cert, key)) => b
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(cfg)
}

/// A lazy tonic channel to 127.0.0.1:`port`, over TLS with `tls`.
fn grpc_channel(port: u16, tls: Option<Arc<rustls::ClientConfig>>) -> tonic::transport::Channel {
    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}")).unwrap();
    match tls {
        None => endpoint.connect_lazy(),
        Some(cfg) => {
            endpoint.connect_with_connector_lazy(tower::service_fn(move |_: http::Uri| {
                let cfg = cfg.clone();
                async move {
                    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
                    let name = rustls_pki_types::ServerName::IpAddress(
                        std::net::Ipv4Addr::LOCALHOST.into(),
                    );
                    let tls = tokio_rustls::TlsConnector::from(cfg)
                        .connect(name, tcp)
                        .await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
                }
            }))
        }
    }
}

/// One gRPC call of `path` with an empty body and an optional token: the status code.
async fn grpc_code(
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
    path: &'static str,
    token: Option<&str>,
) -> tonic::Code {
    let mut client = tonic::client::Grpc::new(grpc_channel(port, tls));
    if client.ready().await.is_err() {
        return tonic::Code::Unavailable;
    }
    let mut req = tonic::Request::new(Bytes::new());
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    match client
        .unary(req, http::uri::PathAndQuery::from_static(path), RawCodec)
        .await
    {
        Ok(_) => tonic::Code::Ok,
        Err(s) => s.code(),
    }
}

const LIST_GATES: &str = "/slogate.v1.VerdictService/ListGates";

// ---------------------------------------------------------------------------------------------
// Exporters

fn send_rust(exporter: SpanExporter, version: &str, spans: &[SpanSpec]) {
    let provider = provider(exporter, version);
    emit(&provider, spans);
    let _ = provider.shutdown();
}

/// A tracer provider exporting service `secure`, `version` through `exporter`.
fn provider(exporter: SpanExporter, version: &str) -> SdkTracerProvider {
    let resource = Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", "secure"),
            KeyValue::new("service.version", version.to_string()),
        ])
        .build();
    SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build()
}

/// Records `spans` as server spans and flushes them.
fn emit(provider: &SdkTracerProvider, spans: &[SpanSpec]) {
    let tracer = provider.tracer("slogate-it");
    for s in spans {
        let mut span = tracer
            .span_builder(s.name.clone())
            .with_kind(SpanKind::Server)
            .with_start_time(UNIX_EPOCH + Duration::from_nanos(s.start_ns))
            .with_attributes(vec![KeyValue::new("http.route", s.route.clone())])
            .start(&tracer);
        span.end_with_timestamp(UNIX_EPOCH + Duration::from_nanos(s.end_ns));
    }
    let _ = provider.force_flush();
}

fn send_python(
    protocol: &str,
    endpoint: &str,
    version: &str,
    spans: &[SpanSpec],
    extra: &[&str],
) -> String {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("spans.json");
    let doc =
        serde_json::json!({"service": "secure", "version": version, "env": "prod", "spans": spans});
    std::fs::write(&input, doc.to_string()).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/python/send_spans.py"
    );
    let out = Command::new(python())
        .args([
            script,
            "--protocol",
            protocol,
            "--endpoint",
            endpoint,
            "--input",
        ])
        .arg(&input)
        .args(extra)
        // requests lets these override a session's own CA file (the exporter's
        // certificate_file): a machine-wide bundle must not hide the test's CA.
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python exporter failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Polls the SLI of service `secure`, `version`, until it has `want` requests (or 20 s).
fn requests(p: &Proc, client: &reqwest::blocking::Client, version: &str, want: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let url = p.url(
            p.api,
            &format!("/api/v1/sli?service=secure&version={version}&window=10m"),
        );
        let v: serde_json::Value = client
            .get(url)
            .bearer_auth(READ)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let n = v["requests"].as_u64().unwrap_or(0);
        if n >= want || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `f` until it is true (or 10 s): files are re-read every second.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within 10 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The Go harness of tests/argo-contract, built into a path of this file's own (gates.rs
/// builds another copy; two `go build`s must not write one file).
fn argo_contract() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let out = format!("{}/argo-contract-auth", env!("CARGO_TARGET_TMPDIR"));
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/argo-contract");
        let status = Command::new("go")
            .args(["build", "-o", &out, "."])
            .current_dir(dir)
            .status()
            .expect("the Go toolchain is needed to build tests/argo-contract");
        assert!(status.success(), "go build of tests/argo-contract failed");
        out
    })
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn tokens_on_every_port_roles_rotation_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let auth = token_files(dir.path());
    let c = plain_client();
    let p = start(dir.path(), "", &auth, false, &c);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let api = |path: &str| p.url(p.api, path);
    let traces = p.url(p.http, "/v1/traces");
    let proto = || Some(("application/x-protobuf", Vec::new()));
    let json = |q: &str| {
        Some((
            "application/json",
            serde_json::json!({"query": q}).to_string().into_bytes(),
        ))
    };
    use reqwest::Method as M;

    // Probes stay open; /readyz says what is still open (no TLS here).
    assert_eq!(call(&c, M::GET, &api("/healthz"), None, None).0, 200);
    let (status, _, ready) = call(&c, M::GET, &api("/readyz"), None, None);
    assert_eq!(status, 200);
    assert!(ready.contains("warning: no TLS on any listener"), "{ready}");
    assert!(!ready.contains("no authentication"), "{ready}");

    // The API: 401 with a Bearer challenge without a token or with a wrong one (an ingest
    // token is not an API token); read and admin tokens read; only admin runs SQL.
    let sli = api("/api/v1/sli?service=x&window=1m");
    for token in [None, Some("wrong"), Some(INGEST_A)] {
        let (status, challenge, body) = call(&c, M::GET, &sli, token, None);
        assert_eq!(
            (status, challenge.starts_with("Bearer")),
            (401, true),
            "{token:?}: {body}"
        );
    }
    for token in [READ, ADMIN] {
        assert_eq!(call(&c, M::GET, &sli, Some(token), None).0, 200);
    }
    assert_eq!(call(&c, M::GET, &api("/metrics"), None, None).0, 401);
    assert_eq!(call(&c, M::GET, &api("/metrics"), Some(READ), None).0, 200);
    assert_eq!(
        call(&c, M::GET, &api("/api/v1/gates"), Some(READ), None).0,
        200
    );
    let (status, _, body) = call(
        &c,
        M::POST,
        &api("/api/v1/sql"),
        Some(READ),
        json("SELECT 1"),
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        call(&c, M::POST, &api("/api/v1/sql"), None, json("SELECT 1")).0,
        401
    );
    let (status, _, body) = call(
        &c,
        M::POST,
        &api("/api/v1/sql"),
        Some(ADMIN),
        json("SELECT 1"),
    );
    assert_eq!(status, 200, "{body}");
    // A cross-origin form cannot send SQL: only JSON bodies are taken.
    let text = Some(("text/plain", br#"{"query": "SELECT 1"}"#.to_vec()));
    assert_eq!(
        call(&c, M::POST, &api("/api/v1/sql"), Some(ADMIN), text).0,
        415
    );

    // OTLP/HTTP: either ingest file's token; nothing else.
    for (token, want) in [
        (None, 401),
        (Some("wrong"), 401),
        (Some(READ), 401),
        (Some(INGEST_A), 200),
        (Some(INGEST_B), 200),
    ] {
        let (status, challenge, body) = call(&c, M::POST, &traces, token, proto());
        assert_eq!(status, want, "{token:?}: {body}");
        assert_eq!(challenge.starts_with("Bearer"), want == 401);
    }

    // OTLP/gRPC: UNAUTHENTICATED without the ingest token; the verdict service on the same
    // port takes API tokens instead.
    let code = |path, token| rt.block_on(grpc_code(p.grpc, None, path, token));
    use tonic::Code;
    assert_eq!(code(EXPORT_PATH, None), Code::Unauthenticated);
    assert_eq!(code(EXPORT_PATH, Some("wrong")), Code::Unauthenticated);
    assert_eq!(code(EXPORT_PATH, Some(READ)), Code::Unauthenticated);
    assert_eq!(code(EXPORT_PATH, Some(INGEST_B)), Code::Ok);
    assert_eq!(code(LIST_GATES, None), Code::Unauthenticated);
    assert_eq!(code(LIST_GATES, Some(INGEST_A)), Code::Unauthenticated);
    assert_eq!(code(LIST_GATES, Some(READ)), Code::Ok);

    // The Rust exporter with the token as gRPC metadata and as an HTTP header.
    let spans = lognormal_spans(21, 600, 30.0, 0.5, 0);
    {
        let _guard = rt.enter();
        let mut md = tonic::metadata::MetadataMap::new();
        md.insert(
            "authorization",
            format!("Bearer {INGEST_A}").parse().unwrap(),
        );
        let exporter = SpanExporter::builder()
            .with_tonic()
            .with_endpoint(format!("http://127.0.0.1:{}", p.grpc))
            .with_metadata(md)
            .build()
            .unwrap();
        send_rust(exporter, "rust-grpc", &spans);
        let exporter = SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(traces.clone())
            .with_headers([("Authorization".to_string(), format!("Bearer {INGEST_B}"))].into())
            .build()
            .unwrap();
        send_rust(exporter, "rust-http", &spans);
        // Without a token nothing arrives.
        let exporter = SpanExporter::builder()
            .with_tonic()
            .with_endpoint(format!("http://127.0.0.1:{}", p.grpc))
            .build()
            .unwrap();
        send_rust(exporter, "rust-none", &spans);
    }
    assert_eq!(requests(&p, &c, "rust-grpc", 600), 600);
    assert_eq!(requests(&p, &c, "rust-http", 600), 600);
    assert_eq!(requests(&p, &c, "rust-none", 1), 0);

    // The Python SDK with OTEL-style headers.
    let header = format!("authorization=Bearer {INGEST_A}");
    send_python(
        "grpc",
        &format!("http://127.0.0.1:{}", p.grpc),
        "py-grpc",
        &spans,
        &["--header", &header],
    );
    send_python("http", &traces, "py-http", &spans, &["--header", &header]);
    assert_eq!(requests(&p, &c, "py-grpc", 600), 600);
    assert_eq!(requests(&p, &c, "py-http", 600), 600);

    // Every refusal is counted by listener and reason.
    let refused = |l: &str, r: &str| {
        p.metric(
            &c,
            &format!("slogate_auth_refused_total{{listener=\"{l}\",reason=\"{r}\"}}"),
        )
    };
    assert_eq!(refused("api", "missing_token"), 3.0); // sli, metrics, sql
    assert_eq!(refused("api", "invalid_token"), 2.0);
    assert_eq!(refused("api", "forbidden"), 1.0);
    assert_eq!(refused("otlp_http", "missing_token"), 1.0);
    assert_eq!(refused("otlp_http", "invalid_token"), 2.0);
    // Two calls and the exporter without a token (which may retry).
    assert!(refused("otlp_grpc", "missing_token") >= 3.0);
    assert_eq!(refused("otlp_grpc", "invalid_token"), 3.0);
    assert_eq!(
        p.metric(&c, "slogate_auth_enabled{listener=\"otlp_grpc\"}"),
        1.0
    );
    assert_eq!(p.metric(&c, "slogate_auth_enabled{listener=\"api\"}"), 1.0);
    assert_eq!(p.metric(&c, "slogate_tls_enabled{listener=\"api\"}"), 0.0);

    // Rotation without a restart: file A gets a new token, file B is removed.
    std::fs::write(dir.path().join("ingest-a"), format!("{INGEST_NEW}\n")).unwrap();
    std::fs::remove_file(dir.path().join("ingest-b")).unwrap();
    eventually("the new token is taken", || {
        call(&c, M::POST, &traces, Some(INGEST_NEW), proto()).0 == 200
    });
    for old in [INGEST_A, INGEST_B] {
        assert_eq!(
            call(&c, M::POST, &traces, Some(old), proto()).0,
            401,
            "{old}"
        );
        assert_eq!(code(EXPORT_PATH, Some(old)), Code::Unauthenticated, "{old}");
    }
    assert_eq!(code(EXPORT_PATH, Some(INGEST_NEW)), Code::Ok);
    std::fs::write(dir.path().join("read"), "read-rotated\n").unwrap();
    eventually("the read token is rotated", || {
        call(&c, M::GET, &sli, Some(READ), None).0 == 401
    });
    assert_eq!(call(&c, M::GET, &sli, Some("read-rotated"), None).0, 200);
    std::fs::write(dir.path().join("read"), format!("{READ}\n")).unwrap();
    eventually("the read token is back", || {
        call(&c, M::GET, &sli, Some(READ), None).0 == 200
    });

    // The CLI: no token is refused (exit 3), a token file or $SLOGATE_TOKEN works, and a read
    // token cannot run SQL.
    let server = api("");
    let read_file = dir.path().join("read");
    let (code3, _, err) = slogate(&["sli", "--service", "secure", "--server", &server]);
    assert_eq!(code3, 3, "{err}");
    assert!(err.contains("401"), "{err}");
    let (code0, out, err) = slogate(&[
        "sli",
        "--service",
        "secure",
        "--server",
        &server,
        "--token-file",
        read_file.to_str().unwrap(),
    ]);
    assert_eq!(code0, 0, "{err}");
    assert!(out.contains("\"requests\""), "{out}");
    let out = Command::new(env!("CARGO_BIN_EXE_slogate"))
        .args(["sli", "--service", "secure", "--server", &server])
        .env("SLOGATE_TOKEN", ADMIN)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code3, _, err) = slogate(&[
        "sql",
        "SELECT 1",
        "--server",
        &server,
        "--token-file",
        read_file.to_str().unwrap(),
    ]);
    assert_eq!(code3, 3, "{err}");
    assert!(err.contains("403"), "{err}");

    // No secret anywhere: logs at TRACE, /metrics, config show, error bodies, CLI errors.
    let (_, _, metrics) = call(&c, M::GET, &api("/metrics"), Some(READ), None);
    let (_, shown, _) = slogate(&["config", "show", p.config.to_str().unwrap()]);
    assert!(shown.contains("read_token_files"), "{shown}");
    let (_, _, e401) = call(&c, M::POST, &traces, Some(READ), proto());
    let (_, _, e403) = call(
        &c,
        M::POST,
        &api("/api/v1/sql"),
        Some(READ),
        json("SELECT 1"),
    );
    let haystacks = [
        ("log", p.log_text()),
        ("metrics", metrics),
        ("config show", shown),
        ("401 body", e401),
        ("403 body", e403),
        ("cli error", err),
    ];
    assert!(
        haystacks[0].1.contains("TRACE") || haystacks[0].1.contains("trace"),
        "the log is at TRACE"
    );
    for secret in [INGEST_A, INGEST_B, INGEST_NEW, READ, ADMIN, "read-rotated"] {
        for (what, text) in &haystacks {
            assert!(!text.contains(secret), "{what} shows a token:\n{text}");
        }
    }
}

#[test]
fn tls_with_tokens_exporters_cli_argo_and_certificate_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let auth = token_files(dir.path());
    let tls = pki.tls_section();
    let c = https_client(&pki.ca, None);
    let gates = "gates:\n  - name: checkout\n    service: secure\n    criteria:\n      - {name: p95, metric: latency_p95, compare: ratio, pass: 1.1, fail: 1.3}\n";
    let p = start(dir.path(), &tls, &format!("{auth}{gates}"), true, &c);
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(
        p.metric(&c, "slogate_tls_enabled{listener=\"otlp_grpc\"}"),
        1.0
    );
    let (_, _, ready) = call(
        &c,
        reqwest::Method::GET,
        &p.url(p.api, "/readyz"),
        None,
        None,
    );
    assert_eq!(ready, "ready\n", "nothing is left open");

    // Plain text to each TLS port fails and is counted.
    for (port, label) in [(p.grpc, "otlp_grpc"), (p.http, "otlp_http"), (p.api, "api")] {
        let plain = plain_client()
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send();
        assert!(plain.is_err() || plain.unwrap().status() != 200, "{label}");
        eventually("the failed handshake is counted", || {
            p.metric(
                &c,
                &format!("slogate_tls_handshake_failures_total{{listener=\"{label}\"}}"),
            ) >= 1.0
        });
    }

    // The Rust exporter over TLS with a token: gRPC (metadata) and HTTP (header).
    let spans = lognormal_spans(31, 600, 50.0, 0.6, 0);
    {
        let _guard = rt.enter();
        let mut md = tonic::metadata::MetadataMap::new();
        md.insert(
            "authorization",
            format!("Bearer {INGEST_A}").parse().unwrap(),
        );
        let exporter = SpanExporter::builder()
            .with_tonic()
            .with_channel(grpc_channel(p.grpc, Some(rustls_client(&pki.ca, None))))
            .with_metadata(md)
            .build()
            .unwrap();
        send_rust(exporter, "rust-grpc-tls", &spans);
        let exporter = SpanExporter::builder()
            .with_http()
            .with_http_client(https_client(&pki.ca, None))
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(p.url(p.http, "/v1/traces"))
            .with_headers([("Authorization".to_string(), format!("Bearer {INGEST_B}"))].into())
            .build()
            .unwrap();
        send_rust(exporter, "rust-http-tls", &spans);
    }
    assert_eq!(requests(&p, &c, "rust-grpc-tls", 600), 600);
    assert_eq!(requests(&p, &c, "rust-http-tls", 600), 600);

    // The Python SDK over TLS with a token.
    let header = format!("authorization=Bearer {INGEST_A}");
    let ca = pki.ca_path.to_str().unwrap();
    let extra = ["--header", &header, "--ca-file", ca];
    let py_grpc = send_python(
        "grpc",
        &format!("https://127.0.0.1:{}", p.grpc),
        "py-grpc-tls",
        &spans,
        &extra,
    );
    let py_http = send_python(
        "http",
        &p.url(p.http, "/v1/traces"),
        "py-http-tls",
        &spans,
        &extra,
    );
    assert_eq!(requests(&p, &c, "py-grpc-tls", 600), 600, "{py_grpc}");
    assert_eq!(requests(&p, &c, "py-http-tls", 600), 600, "{py_http}");

    // The CLI over https: the CA from --ca-file, the token from --token-file.
    let server = p.url(p.api, "");
    let read_file = dir.path().join("read");
    let (code, out, err) = slogate(&[
        "sli",
        "--service",
        "secure",
        "--server",
        &server,
        "--ca-file",
        ca,
        "--token-file",
        read_file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"requests\":2400"), "{out}");
    // Without the CA the server is not trusted: unreachable (exit 4).
    let (code, _, err) = slogate(&["sli", "--service", "secure", "--server", &server]);
    assert_eq!(code, 4, "{err}");

    // Argo's jsonpath/expr harness reads a verdict over https with the token from the
    // template's secretKeyRef; without the secret it gets 401, a measurement error.
    let argo = |secret: Option<&str>| {
        let template = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/argo/analysis-template.yaml"
        ))
        .unwrap()
        .replace(
            "http://slogate.observability.svc.cluster.local:8080/",
            &p.url(p.api, "/"),
        );
        let path = dir.path().join("analysis-template.yaml");
        std::fs::write(&path, template).unwrap();
        let mut cmd = Command::new(argo_contract());
        cmd.arg("-template").arg(&path).args(["-ca-file", ca]);
        for a in [
            "gate=checkout",
            "phase=default",
            "canary-hash=rust-grpc-tls",
            "stable-hash=rust-http-tls",
        ] {
            cmd.args(["-arg", a]);
        }
        if let Some(s) = secret {
            cmd.args(["-secret", &format!("slogate-api-token/read-token={s}")]);
        }
        String::from_utf8(cmd.output().unwrap().stdout).unwrap()
    };
    let measured = argo(Some(READ));
    assert!(!measured.starts_with("Error"), "{measured}");
    assert!(measured.contains("\"verdict\""), "{measured}");
    let refused = argo(None);
    assert!(
        refused.starts_with("Error") && refused.contains("401"),
        "{refused}"
    );

    // Certificate rotation: a connection opened before keeps working (an exporter's gRPC
    // connection, a pooled HTTPS one), new connections get the new certificate, without a
    // restart. The exporter trusts only the old CA: had its connection been dropped, its
    // reconnection would fail and the second batch would be lost.
    let long_lived = {
        let _guard = rt.enter();
        let mut md = tonic::metadata::MetadataMap::new();
        md.insert(
            "authorization",
            format!("Bearer {INGEST_A}").parse().unwrap(),
        );
        let exporter = SpanExporter::builder()
            .with_tonic()
            .with_channel(grpc_channel(p.grpc, Some(rustls_client(&pki.ca, None))))
            .with_metadata(md)
            .build()
            .unwrap();
        let provider = provider(exporter, "rust-grpc-long");
        emit(&provider, &spans);
        provider
    };
    assert_eq!(requests(&p, &c, "rust-grpc-long", 600), 600);
    let before = https_client(&pki.ca, None);
    assert_eq!(
        call(
            &before,
            reqwest::Method::GET,
            &p.url(p.api, "/healthz"),
            None,
            None
        )
        .0,
        200
    );
    let (cert, key) = &pki.next_server;
    std::fs::write(&pki.key_path, key).unwrap();
    std::fs::write(&pki.cert_path, cert).unwrap();
    let next = https_client(&pki.next_ca, None);
    eventually("the new certificate is served", || {
        next.get(p.url(p.api, "/healthz"))
            .send()
            .is_ok_and(|r| r.status() == 200)
    });
    for port in [p.grpc, p.http] {
        let fresh = https_client(&pki.ca, None);
        assert!(
            fresh.get(p.url(port, "/")).send().is_err(),
            "old CA still trusted on {port}"
        );
    }
    assert!(
        https_client(&pki.ca, None)
            .get(p.url(p.api, "/healthz"))
            .send()
            .is_err()
    );
    // The connection pooled by `before` still answers (the old session).
    assert_eq!(
        call(
            &before,
            reqwest::Method::GET,
            &p.url(p.api, "/healthz"),
            None,
            None
        )
        .0,
        200
    );
    let code = rt.block_on(grpc_code(
        p.grpc,
        Some(rustls_client(&pki.next_ca, None)),
        EXPORT_PATH,
        Some(INGEST_A),
    ));
    assert_eq!(code, tonic::Code::Ok);
    {
        let _guard = rt.enter();
        emit(&long_lived, &spans);
        let _ = long_lived.shutdown();
    }
    assert_eq!(requests(&p, &c, "rust-grpc-long", 1200), 1200);

    let log = p.log_text();
    for secret in [INGEST_A, INGEST_B, READ, ADMIN] {
        assert!(!log.contains(secret), "the log shows a token");
    }
    for key in [&pki.server_key, &pki.next_server.1, &pki.client.1] {
        let body = key.lines().nth(1).unwrap();
        assert!(!log.contains(body), "the log shows key material");
    }
}

// ---------------------------------------------------------------------------------------------
// Rotation under load

/// Spans in each export of the rotation test.
const SPANS_PER_EXPORT: u64 = 10;
/// Refusals of the old token each lagging client takes before it switches to the new one.
const LAGGARD_REFUSALS: u64 = 3;

/// Where the rotation test is; a client reads it before each export and files the outcome
/// under it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    /// The first certificate and token.
    Before = 0,
    /// Every port serves the renewed certificate.
    Renewed = 1,
    /// The new token is accepted and the clients were told to use it.
    NewToken = 2,
    /// The old token's removal was written.
    OldRemoved = 3,
}

/// What the test and the exporting clients share.
struct Load {
    stage: AtomicU8,
    /// The token of the clients that follow the rotation.
    token: Mutex<&'static str>,
    stop: AtomicBool,
    /// Export failures that must not happen, described.
    unexpected: Mutex<Vec<String>>,
}

const STAGES: [Stage; 4] = [
    Stage::Before,
    Stage::Renewed,
    Stage::NewToken,
    Stage::OldRemoved,
];

impl Load {
    fn stage(&self) -> Stage {
        STAGES[usize::from(self.stage.load(SeqCst))]
    }
    fn set(&self, s: Stage) {
        self.stage.store(s as u8, SeqCst);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wire {
    Grpc,
    Http,
}

/// One exporting client and what became of its exports.
struct Exporter {
    name: String,
    wire: Wire,
    /// A new TLS connection for every export (and the old token until refused
    /// [`LAGGARD_REFUSALS`] times), or one connection opened at the start and kept.
    per_export: bool,
    /// Acknowledged exports, by the stage they were sent in.
    acked: [AtomicU64; 4],
    /// Exports refused as UNAUTHENTICATED / 401 with the old token after its removal.
    refused: AtomicU64,
    /// The certificate each connection was served (gRPC: per connection; HTTP: per response),
    /// with the stage it was opened in.
    certs: Mutex<Vec<(Stage, Vec<u8>)>>,
}

impl Exporter {
    fn acked(&self, s: Stage) -> u64 {
        self.acked[s as usize].load(SeqCst)
    }
    fn acked_total(&self) -> u64 {
        STAGES.into_iter().map(|s| self.acked(s)).sum()
    }
    fn refused(&self) -> u64 {
        self.refused.load(SeqCst)
    }
}

/// Replaces `path` as a secret mount or `mv` does: a new file renamed over the old one.
fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_file_name(format!(
        "{}.new",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn der(pem: &str) -> Vec<u8> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// The certificate a new TLS connection to `port` is served.
async fn served_cert(port: u16, ca: &str) -> Vec<u8> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let tls = tokio_rustls::TlsConnector::from(rustls_client(ca, None))
        .connect(name, tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// A lazy gRPC channel over TLS whose connections note the certificate they were served.
fn noting_channel(
    port: u16,
    ca: &str,
    me: Arc<Exporter>,
    load: Arc<Load>,
) -> tonic::transport::Channel {
    let cfg = rustls_client(ca, None);
    tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_with_connector_lazy(tower::service_fn(move |_: http::Uri| {
            let (cfg, me, load) = (cfg.clone(), me.clone(), load.clone());
            async move {
                let stage = load.stage();
                let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
                tcp.set_nodelay(true)?;
                let name =
                    rustls_pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
                let tls = tokio_rustls::TlsConnector::from(cfg)
                    .connect(name, tcp)
                    .await?;
                let cert = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
                me.certs.lock().unwrap().push((stage, cert));
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
}

/// An OTLP export of [`SPANS_PER_EXPORT`] SERVER spans of service `rotation` ending now.
fn rotation_export(client: u64, seq: u64) -> Bytes {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
    use prost::Message;
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    };
    let now = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let spans = (0..SPANS_PER_EXPORT)
        .map(|i| {
            let id = (client << 48) | (seq << 8) | i;
            Span {
                trace_id: [id.to_be_bytes(), 7u64.to_be_bytes()].concat(),
                span_id: (id | 1 << 63).to_be_bytes().to_vec(),
                name: "GET /rotate".into(),
                kind: span::SpanKind::Server as i32,
                start_time_unix_nano: now - 25_000_000 - i * 1_000_000,
                end_time_unix_nano: now,
                ..Default::default()
            }
        })
        .collect();
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "rotation"), kv("service.version", "v1")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    Bytes::from(req.encode_to_vec())
}

/// How one export ended.
enum Sent {
    Acked,
    /// gRPC UNAUTHENTICATED or HTTP 401.
    Refused,
    Failed(String),
}

/// Exports until told to stop, filing every outcome in `me`.
async fn export_loop(load: Arc<Load>, me: Arc<Exporter>, id: u64, port: u16, ca: String) {
    let long_lived = tonic::client::Grpc::new(noting_channel(port, &ca, me.clone(), load.clone()));
    let mut http = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(ca.as_bytes()).unwrap())
        .tls_info(true)
        .timeout(Duration::from_secs(10));
    if me.per_export {
        http = http.pool_max_idle_per_host(0);
    }
    let http = http.build().unwrap();
    let mut seq = 0;
    while !load.stop.load(SeqCst) {
        // The stage first: a client that sees a stage sees the token set before it.
        let stage = load.stage();
        let token = if me.per_export && me.refused() < LAGGARD_REFUSALS {
            INGEST_A
        } else {
            *load.token.lock().unwrap()
        };
        let body = rotation_export(id, seq);
        seq += 1;
        let sent = match me.wire {
            Wire::Grpc => {
                let mut client = if me.per_export {
                    tonic::client::Grpc::new(noting_channel(port, &ca, me.clone(), load.clone()))
                } else {
                    long_lived.clone()
                };
                let mut req = tonic::Request::new(body);
                req.metadata_mut()
                    .insert("authorization", format!("Bearer {token}").parse().unwrap());
                match client.ready().await {
                    Err(e) => Sent::Failed(format!("connection: {e}")),
                    Ok(()) => match client
                        .unary(
                            req,
                            http::uri::PathAndQuery::from_static(EXPORT_PATH),
                            RawCodec,
                        )
                        .await
                    {
                        Ok(_) => Sent::Acked,
                        Err(s) if s.code() == tonic::Code::Unauthenticated => Sent::Refused,
                        Err(s) => Sent::Failed(format!("{:?}: {}", s.code(), s.message())),
                    },
                }
            }
            Wire::Http => {
                let resp = http
                    .post(format!("https://127.0.0.1:{port}/v1/traces"))
                    .bearer_auth(token)
                    .header("content-type", "application/x-protobuf")
                    .body(body)
                    .send()
                    .await;
                match resp {
                    Err(e) => Sent::Failed(format!("{e:?}")),
                    Ok(r) => {
                        let cert = r
                            .extensions()
                            .get::<reqwest::tls::TlsInfo>()
                            .and_then(|t| t.peer_certificate())
                            .map(<[u8]>::to_vec)
                            .unwrap_or_default();
                        me.certs.lock().unwrap().push((stage, cert));
                        match r.status().as_u16() {
                            200 => Sent::Acked,
                            401 => Sent::Refused,
                            s => Sent::Failed(format!(
                                "http {s}: {}",
                                r.text().await.unwrap_or_default()
                            )),
                        }
                    }
                }
            }
        };
        match sent {
            Sent::Acked => {
                me.acked[stage as usize].fetch_add(1, SeqCst);
            }
            // The deliberate ones: the old token, sent after its removal was written.
            Sent::Refused if token == INGEST_A && stage == Stage::OldRemoved => {
                me.refused.fetch_add(1, SeqCst);
            }
            Sent::Refused => load.unexpected.lock().unwrap().push(format!(
                "{}: refused in {stage:?} with {}",
                me.name,
                if token == INGEST_A {
                    "the old token"
                } else {
                    "the new token"
                }
            )),
            Sent::Failed(e) => load
                .unexpected
                .lock()
                .unwrap()
                .push(format!("{} in {stage:?}: {e}", me.name)),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn certificate_and_token_rotation_under_continuous_export_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let auth = token_files(dir.path());
    let tls = pki.tls_section();
    let c = https_client(&pki.ca, None);
    let p = start(dir.path(), &tls, &auth, true, &c);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let old_cert = der(&std::fs::read_to_string(&pki.cert_path).unwrap());
    let new_cert = der(&pki.renewed_server.0);
    assert_ne!(old_cert, new_cert);
    let ports = [p.grpc, p.http, p.api];
    for port in ports {
        assert_eq!(rt.block_on(served_cert(port, &pki.ca)), old_cert);
    }

    // Three long-lived connections and one connection per export on each OTLP port.
    let load = Arc::new(Load {
        stage: Default::default(),
        token: Mutex::new(INGEST_A),
        stop: Default::default(),
        unexpected: Mutex::new(Vec::new()),
    });
    let (mut exporters, mut tasks) = (Vec::new(), Vec::new());
    for (wire, port) in [(Wire::Grpc, p.grpc), (Wire::Http, p.http)] {
        for i in 0..4 {
            let per_export = i == 3;
            exporters.push(Arc::new(Exporter {
                name: format!(
                    "{wire:?} {}",
                    if per_export {
                        "per-export".to_string()
                    } else {
                        format!("long-lived #{i}")
                    }
                ),
                wire,
                per_export,
                acked: Default::default(),
                refused: Default::default(),
                certs: Mutex::new(Vec::new()),
            }));
            let me = exporters.last().unwrap().clone();
            let id = exporters.len() as u64;
            tasks.push(rt.spawn(export_loop(load.clone(), me, id, port, pki.ca.clone())));
        }
    }
    let all_acked_in = |s: Stage, n: u64| exporters.iter().all(|e| e.acked(s) >= n);
    eventually("every client exports", || all_acked_in(Stage::Before, 3));

    // A renewed certificate (new key, same CA), key first as a careless operator might: the
    // mismatched pair in between must not be served.
    let (cert, key) = &pki.renewed_server;
    replace_file(&pki.key_path, key);
    replace_file(&pki.cert_path, cert);
    eventually("every port serves the renewed certificate", || {
        ports
            .iter()
            .all(|port| rt.block_on(served_cert(*port, &pki.ca)) == new_cert)
    });
    load.set(Stage::Renewed);
    eventually("every client exports after the renewal", || {
        all_acked_in(Stage::Renewed, 3)
    });

    // A new token next to the old one; the clients switch once it is taken.
    let ingest_a = dir.path().join("ingest-a");
    replace_file(&ingest_a, &format!("{INGEST_A}\n{INGEST_NEW}\n"));
    let traces = p.url(p.http, "/v1/traces");
    let proto = || Some(("application/x-protobuf", Vec::new()));
    let mut probe_refusals = 0;
    eventually("the new token is taken", || {
        let ok = call(
            &c,
            reqwest::Method::POST,
            &traces,
            Some(INGEST_NEW),
            proto(),
        )
        .0 == 200;
        probe_refusals += u64::from(!ok);
        ok
    });
    *load.token.lock().unwrap() = INGEST_NEW;
    load.set(Stage::NewToken);
    eventually("every client exports with the new token", || {
        all_acked_in(Stage::NewToken, 2)
    });

    // The old token removed: the lagging clients are refused until they switch too.
    load.set(Stage::OldRemoved);
    replace_file(&ingest_a, &format!("{INGEST_NEW}\n"));
    eventually("the lagging clients are refused, switch and export", || {
        exporters
            .iter()
            .filter(|e| e.per_export)
            .all(|e| e.refused() == LAGGARD_REFUSALS && e.acked(Stage::OldRemoved) >= 3)
    });
    eventually("every client exports after the removal", || {
        all_acked_in(Stage::OldRemoved, 3)
    });
    load.stop.store(true, SeqCst);
    for t in tasks {
        rt.block_on(t).unwrap();
    }

    for e in &exporters {
        eprintln!(
            "{}: acked by stage {:?}, refused {}, connections or responses {}",
            e.name,
            STAGES.map(|s| e.acked(s)),
            e.refused(),
            e.certs.lock().unwrap().len()
        );
    }
    let unexpected = load.unexpected.lock().unwrap().clone();
    assert!(
        unexpected.is_empty(),
        "failed exports:\n{}",
        unexpected.join("\n")
    );
    for e in &exporters {
        let certs = e.certs.lock().unwrap();
        assert!(!certs.is_empty(), "{}", e.name);
        if e.per_export {
            // Each connection got the certificate current when it was opened.
            for (stage, cert) in certs.iter() {
                if *stage >= Stage::Renewed {
                    assert!(
                        *cert == new_cert,
                        "{}: a new connection got the old certificate",
                        e.name
                    );
                }
            }
            assert!(certs.iter().any(|(_, c)| *c == old_cert), "{}", e.name);
        } else {
            // Its one connection, opened before the renewal, carried on through all of it:
            // a reconnection would have been served the renewed certificate.
            assert!(
                certs.iter().all(|(_, c)| *c == old_cert),
                "{}: reconnected ({} connections or responses)",
                e.name,
                certs.len()
            );
        }
    }

    // The server counted exactly what the clients were told it accepted, and refused exactly
    // the deliberate ones.
    let acked: u64 = exporters.iter().map(|e| e.acked_total()).sum::<u64>() * SPANS_PER_EXPORT;
    let accepted = || p.metric(&c, "slogate_spans_accepted_total") as u64;
    let deadline = Instant::now() + Duration::from_secs(20);
    while accepted() < acked && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(accepted(), acked);
    let refused = |l: &str, r: &str| {
        p.metric(
            &c,
            &format!("slogate_auth_refused_total{{listener=\"{l}\",reason=\"{r}\"}}"),
        ) as u64
    };
    let by_wire = |w: Wire| -> u64 {
        exporters
            .iter()
            .filter(|e| e.wire == w)
            .map(|e| e.refused())
            .sum()
    };
    assert_eq!(refused("otlp_grpc", "invalid_token"), by_wire(Wire::Grpc));
    assert_eq!(
        refused("otlp_http", "invalid_token"),
        by_wire(Wire::Http) + probe_refusals
    );
    assert_eq!(refused("otlp_grpc", "missing_token"), 0);
    assert_eq!(refused("otlp_http", "missing_token"), 0);
    assert_eq!(
        p.metric(
            &c,
            "slogate_tls_handshake_failures_total{listener=\"otlp_grpc\"}"
        ),
        0.0
    );
    assert_eq!(
        p.metric(
            &c,
            "slogate_tls_handshake_failures_total{listener=\"otlp_http\"}"
        ),
        0.0
    );
    let log = p.log_text();
    assert!(log.contains("certificate reloaded"), "{log}");
    for secret in [INGEST_A, INGEST_NEW] {
        assert!(!log.contains(secret), "the log shows a token");
    }
}

/// Sends an HTTP/2 preface over TLS to `port` with an optional client certificate: whether
/// the server answered (a rejected certificate is an alert after the handshake in TLS 1.3).
async fn mtls_answers(port: u16, ca: &str, identity: Option<&(String, String)>) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let Ok(mut tls) = tokio_rustls::TlsConnector::from(rustls_client(ca, identity))
        .connect(name, tcp)
        .await
    else {
        return false;
    };
    // The preface and an empty SETTINGS frame; the server answers with its SETTINGS.
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    if tls.write_all(&hello).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 9];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await,
        Ok(Ok(n)) if n > 0
    )
}

#[test]
fn mutual_tls_refuses_missing_foreign_and_expired_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let tls = format!(
        "  tls:\n    cert_file: {}\n    key_file: {}\n    client_ca_file: {}\n",
        pki.cert_path.display(),
        pki.key_path.display(),
        pki.client_ca_path.display()
    );
    let c = https_client(&pki.ca, Some(&pki.client));
    let p = start(dir.path(), &tls, "", true, &c);
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(p.metric(&c, "slogate_tls_enabled{listener=\"api\"}"), 2.0);
    // Open (no tokens): said in /readyz.
    let (_, _, ready) = call(
        &c,
        reqwest::Method::GET,
        &p.url(p.api, "/readyz"),
        None,
        None,
    );
    assert!(
        ready.contains("no authentication on the OTLP ports"),
        "{ready}"
    );
    assert!(!ready.contains("no TLS"), "{ready}");
    for (port, label) in [(p.grpc, "otlp_grpc"), (p.http, "otlp_http"), (p.api, "api")] {
        let ok = |id| rt.block_on(mtls_answers(port, &pki.ca, id));
        assert!(ok(Some(&pki.client)), "{label}: a good client certificate");
        let failures = || {
            p.metric(
                &c,
                &format!("slogate_tls_handshake_failures_total{{listener=\"{label}\"}}"),
            )
        };
        for (what, id) in [
            ("no client certificate", None),
            ("a certificate from another CA", Some(&pki.foreign_client)),
            ("an expired certificate", Some(&pki.expired_client)),
        ] {
            let before = failures();
            assert!(!ok(id), "{label}: {what} was let in");
            eventually("the refusal is counted", || failures() > before);
        }
    }
    // A real request with the good certificate, and the OTLP/HTTP receiver behind it.
    let (status, _, _) = call(
        &c,
        reqwest::Method::POST,
        &p.url(p.http, "/v1/traces"),
        None,
        Some(("application/x-protobuf", Vec::new())),
    );
    assert_eq!(status, 200);
    let code = rt.block_on(grpc_code(
        p.grpc,
        Some(rustls_client(&pki.ca, Some(&pki.client))),
        EXPORT_PATH,
        None,
    ));
    assert_eq!(code, tonic::Code::Ok);
    let log = p.log_text();
    assert!(log.contains("slogate is not secured"), "the start warns");
}

#[test]
fn unusable_token_and_certificate_files_stop_the_start_without_showing_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("empty"), "# no token yet\n").unwrap();
    std::fs::write(
        d.join("secret-key.pem"),
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    std::fs::write(d.join("cert.pem"), "not a certificate\n").unwrap();
    let d = d.display();
    let cases = [
        (
            String::new(),
            format!("auth:\n  ingest:\n    token_files: [{d}/empty]\n"),
            "holds no token",
        ),
        (
            String::new(),
            format!("auth:\n  api:\n    read_token_files: [{d}/missing]\n"),
            "cannot read token file",
        ),
        (
            format!("  tls:\n    cert_file: {d}/cert.pem\n    key_file: {d}/secret-key.pem\n"),
            String::new(),
            "holds no usable PEM certificate",
        ),
        (
            "  tls:\n    cert_file: /x.pem\n".to_string(),
            String::new(),
            "server.tls.cert_file: needs key_file too",
        ),
        (
            "  tls:\n    client_ca_file: /ca.pem\n".to_string(),
            String::new(),
            "mutual TLS needs TLS",
        ),
    ];
    for (server_extra, extra, want) in cases {
        let path = dir.path().join("c.yaml");
        let yaml = format!(
            "# slogate configuration\nserver:\n  otlp_grpc: 127.0.0.1:0\n  otlp_http: 127.0.0.1:0\n  http: 127.0.0.1:0\n{server_extra}{extra}"
        );
        std::fs::write(&path, &yaml).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_slogate"))
            .args(["serve", "--config"])
            .arg(&path)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{yaml}: {err}");
        assert!(err.contains(want), "{yaml}: {err}");
        assert!(
            !err.contains("c2VjcmV0"),
            "key material in the error: {err}"
        );
    }
}
