//! The generator against a secured server: TLS trusting only the given CA and a bearer token,
//! over OTLP/gRPC and OTLP/HTTP. The crate's counting sink stands in for slogate behind a
//! rustls listener and a token check; what it counted must equal what the generator reports.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use slogate_load::sink::SinkCounters;
use slogate_load::{Access, CohortSpec, LatencyDist, Protocol, Rate, Scenario, Target};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

const TOKEN: &str = "bench-ingest-5e1f0c";

/// A CA's PEM and its issuer.
fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let pem = p.self_signed(&key).unwrap().pem();
    (pem, Issuer::new(p, key))
}

struct TlsSink {
    port: u16,
    counters: Arc<SinkCounters>,
    /// Requests refused for a missing or wrong token.
    refused: Arc<AtomicU64>,
    /// TLS handshakes that failed.
    handshake_failures: Arc<AtomicU64>,
}

async fn check_token(State(refused): State<Arc<AtomicU64>>, req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get("authorization")
        .is_some_and(|v| v.as_bytes() == format!("Bearer {TOKEN}").as_bytes());
    if ok {
        next.run(req).await
    } else {
        refused.fetch_add(1, Relaxed);
        // tonic reads HTTP 401 as UNAUTHENTICATED.
        axum::http::StatusCode::UNAUTHORIZED.into_response()
    }
}

/// The sink over TLS (HTTP/1.1 and HTTP/2 by ALPN) with a certificate for 127.0.0.1 signed by
/// `issuer`, behind [`check_token`].
async fn start_tls_sink(issuer: &Issuer<'static, KeyPair>) -> TlsSink {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, "sink");
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, issuer).unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(cert.der().to_vec())],
        PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
    )
    .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));

    let counters = Arc::new(SinkCounters::default());
    let refused = Arc::new(AtomicU64::new(0));
    let handshake_failures = Arc::new(AtomicU64::new(0));
    let app = slogate_load::sink::router(counters.clone()).layer(
        axum::middleware::from_fn_with_state(refused.clone(), check_token),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let failures = handshake_failures.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, app, failures) = (acceptor.clone(), app.clone(), failures.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    failures.fetch_add(1, Relaxed);
                    return;
                };
                let svc = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .await;
            });
        }
    });
    TlsSink {
        port,
        counters,
        refused,
        handshake_failures,
    }
}

fn scenario(protocol: Protocol, endpoint: String, access: Access) -> Scenario {
    let target = Target {
        endpoint,
        protocol,
        gzip: false,
    };
    let mut sc = Scenario::new(
        target,
        Rate::PerSecond(20_000.0),
        Duration::from_millis(600),
        vec![CohortSpec::new(
            "checkout",
            "v1",
            LatencyDist::lognormal(20.0, 0.3),
        )],
    );
    sc.batch_size = 100;
    sc.pool_size = 2;
    sc.connections = 2;
    sc.concurrency = 4;
    sc.access = access;
    sc
}

#[derive(Debug, Clone, Copy)]
enum Want {
    /// Every request accepted and counted by the sink.
    Delivered,
    /// Every request refused by the token check (`first_error` starts with this).
    Refused(&'static str),
    /// Every TLS handshake fails: the server's certificate is not trusted.
    Untrusted,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_bearer_token_over_grpc_and_http() {
    let (ca_pem, issuer) = ca("bench CA");
    let (other_ca, _) = ca("some other CA");
    let sink = start_tls_sink(&issuer).await;
    let access = |ca: &str, token: Option<&str>| Access {
        tls_ca_pem: Some(ca.as_bytes().to_vec()),
        headers: token
            .map(|t| ("authorization".to_string(), format!("Bearer {t}")))
            .into_iter()
            .collect(),
    };
    use Protocol::{Grpc, HttpProtobuf};
    let cases = [
        (Grpc, access(&ca_pem, Some(TOKEN)), Want::Delivered),
        (HttpProtobuf, access(&ca_pem, Some(TOKEN)), Want::Delivered),
        (
            Grpc,
            access(&ca_pem, Some("wrong")),
            Want::Refused("grpc Unauthenticated"),
        ),
        (
            HttpProtobuf,
            access(&ca_pem, None),
            Want::Refused("http 401"),
        ),
        (Grpc, access(&other_ca, Some(TOKEN)), Want::Untrusted),
        (
            HttpProtobuf,
            access(&other_ca, Some(TOKEN)),
            Want::Untrusted,
        ),
    ];
    for (protocol, access, want) in cases {
        let what = format!("{protocol:?} {want:?}");
        let endpoint = match protocol {
            Grpc => format!("https://127.0.0.1:{}", sink.port),
            _ => format!("https://127.0.0.1:{}/v1/traces", sink.port),
        };
        let spans0 = sink.counters.spans.load(Relaxed);
        let refused0 = sink.refused.load(Relaxed);
        let failures0 = sink.handshake_failures.load(Relaxed);
        let report = slogate_load::run(&scenario(protocol, endpoint, access))
            .await
            .unwrap();
        let spans = sink.counters.spans.load(Relaxed) - spans0;
        let refused = sink.refused.load(Relaxed) - refused0;
        let failures = sink.handshake_failures.load(Relaxed) - failures0;
        match want {
            Want::Delivered => {
                assert_eq!(
                    report.requests_failed, 0,
                    "{what}: {:?}",
                    report.first_error
                );
                assert!(report.requests_ok > 0, "{what}");
                assert_eq!(spans, report.spans_sent, "{what}");
                assert_eq!((refused, failures), (0, 0), "{what}");
            }
            Want::Refused(status) => {
                assert_eq!(report.requests_ok, 0, "{what}");
                assert_eq!(refused, report.requests_failed, "{what}");
                assert!(refused > 0, "{what}");
                let first = report.first_error.unwrap_or_default();
                assert!(first.starts_with(status), "{what}: {first}");
                assert_eq!(spans, 0, "{what}");
            }
            Want::Untrusted => {
                assert_eq!(report.requests_ok, 0, "{what}");
                assert!(report.requests_failed > 0, "{what}");
                assert_eq!((spans, refused), (0, 0), "{what}");
                // The client aborts the handshake; the server sees it fail.
                tokio::time::timeout(Duration::from_secs(5), async {
                    while sink.handshake_failures.load(Relaxed) == failures0 {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
                .await
                .unwrap_or_else(|_| panic!("{what}: no failed handshake on the server"));
            }
        }
    }
}

#[test]
fn https_needs_a_ca_and_a_ca_needs_https() {
    let with_ca = Access {
        tls_ca_pem: Some(b"-----BEGIN CERTIFICATE-----\n".to_vec()),
        headers: vec![],
    };
    let cases = [
        ("https://127.0.0.1:1", Access::default(), "--tls-ca"),
        ("http://127.0.0.1:1", with_ca.clone(), "not https://"),
        ("https://127.0.0.1:1", with_ca, "TLS CA"),
    ];
    for (endpoint, access, want) in cases {
        for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
            let e =
                slogate_load::run_blocking(&scenario(protocol, endpoint.into(), access.clone()))
                    .unwrap_err()
                    .to_string();
            assert!(e.contains(want), "{endpoint} {protocol:?}: {e}");
        }
    }
}
