//! Who may talk to slogate: bearer tokens on the OTLP ports and the API, roles on the API, and
//! the counters and gauges that show it on `/metrics`; [`tls`] holds the listeners' rustls side.
//!
//! - Tokens live in files (one a line), several per role for rotation, re-read every second by
//!   [`Security::reload`], so a rotated file takes effect without a restart. A file that no
//!   longer holds a token (gone, unreadable, empty) is believed on the second read in a row
//!   only: a file rewritten in place is empty for a moment, and in-flight exports must not be
//!   refused for it. A request's token is compared with every configured token in constant
//!   time ([`subtle`]); only the lengths of the tokens can leak through timing.
//! - Ingest (both OTLP ports) and the API are configured separately. The gRPC verdict service
//!   shares the OTLP/gRPC port but takes API tokens.
//! - Roles: [`Need::Read`] (everything that reads) and [`Need::Admin`] (SQL and baseline
//!   writes); an admin token is also a read token. `/healthz`, `/readyz` and the dashboard's
//!   static files are [`Need::Open`].
//! - With no token file configured a side is open; the server then warns at start, in
//!   `/readyz` and in the `slogate_auth_enabled` gauge.
//!
//! Secrets never leave this module: errors and logs name files, never their contents.

pub mod tls;

use crate::config::AuthConfig;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::{Mutex, RwLock};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use subtle::ConstantTimeEq;

/// How often token and certificate files are re-read.
pub const RELOAD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The three listeners, as labels on `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    OtlpGrpc = 0,
    OtlpHttp = 1,
    Api = 2,
}

impl Listener {
    pub const ALL: [Listener; 3] = [Listener::OtlpGrpc, Listener::OtlpHttp, Listener::Api];
    pub fn label(self) -> &'static str {
        match self {
            Listener::OtlpGrpc => "otlp_grpc",
            Listener::OtlpHttp => "otlp_http",
            Listener::Api => "api",
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer …` at all: 401 / UNAUTHENTICATED.
    Missing = 0,
    /// A token that is not (or no longer) configured: 401 / UNAUTHENTICATED.
    Invalid = 1,
    /// A valid token whose role may not do this: 403 / PERMISSION_DENIED.
    Forbidden = 2,
}

impl Refusal {
    const ALL: [Refusal; 3] = [Refusal::Missing, Refusal::Invalid, Refusal::Forbidden];
    fn label(self) -> &'static str {
        match self {
            Refusal::Missing => "missing_token",
            Refusal::Invalid => "invalid_token",
            Refusal::Forbidden => "forbidden",
        }
    }
    fn message(self) -> &'static str {
        match self {
            Refusal::Missing => "missing bearer token: send Authorization: Bearer <token>",
            Refusal::Invalid => "invalid bearer token",
            Refusal::Forbidden => "this token's role may not do this: it needs an admin token",
        }
    }
}

/// The tokens of one role: the files they come from and what the files held at the last read.
pub struct TokenSet {
    files: Vec<PathBuf>,
    contents: RwLock<Vec<Vec<u8>>>,
    /// A read that left a file without tokens, until the next read confirms it.
    unconfirmed: Mutex<Option<Vec<Vec<u8>>>>,
    tokens: RwLock<Arc<Vec<Vec<u8>>>>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// A token file that cannot be used at start. Names the file, never its contents.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read token file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("token file {0} holds no token")]
    Empty(String),
}

impl TokenSet {
    /// Reads every file; at start an unreadable or empty file is an error.
    pub fn load(files: &[PathBuf]) -> Result<Option<Arc<TokenSet>>, TokenError> {
        if files.is_empty() {
            return Ok(None);
        }
        let mut contents = Vec::with_capacity(files.len());
        for p in files {
            let bytes = std::fs::read(p).map_err(|source| TokenError::Read {
                path: p.display().to_string(),
                source,
            })?;
            if parse_tokens(&bytes).is_empty() {
                return Err(TokenError::Empty(p.display().to_string()));
            }
            contents.push(bytes);
        }
        let tokens = contents.iter().flat_map(|c| parse_tokens(c)).collect();
        Ok(Some(Arc::new(TokenSet {
            files: files.to_vec(),
            contents: RwLock::new(contents),
            unconfirmed: Mutex::new(None),
            tokens: RwLock::new(Arc::new(tokens)),
        })))
    }

    /// Re-reads the files and swaps the tokens in when any changed. A file that is gone,
    /// unreadable or empty contributes no token (fail closed: a rotated-out file stops working)
    /// once two reads in a row found it so; `echo new > file` truncates before it writes, and a
    /// read in between must not refuse every client of the file for a second.
    pub fn reload(&self) {
        let now: Vec<Vec<u8>> = self
            .files
            .iter()
            .map(|p| match std::fs::read(p) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(file = %p.display(), error = %e, "cannot read token file; its tokens are refused until it is back");
                    Vec::new()
                }
            })
            .collect();
        if *self.contents.read() == now {
            *self.unconfirmed.lock() = None;
            return;
        }
        let empties = self
            .contents
            .read()
            .iter()
            .zip(&now)
            .any(|(before, after)| {
                parse_tokens(after).is_empty() && !parse_tokens(before).is_empty()
            });
        let mut pending = self.unconfirmed.lock();
        if empties && pending.as_ref() != Some(&now) {
            *pending = Some(now);
            return;
        }
        *pending = None;
        drop(pending);
        let tokens: Vec<Vec<u8>> = now.iter().flat_map(|c| parse_tokens(c)).collect();
        tracing::info!(
            files = self.files.len(),
            tokens = tokens.len(),
            "token files changed; tokens reloaded"
        );
        *self.tokens.write() = Arc::new(tokens);
        *self.contents.write() = now;
    }

    /// Whether `presented` is one of the tokens, comparing with all of them in constant time.
    pub fn accepts(&self, presented: &[u8]) -> bool {
        let tokens = self.tokens.read().clone();
        let mut ok = subtle::Choice::from(0u8);
        for t in tokens.iter() {
            ok |= t.as_slice().ct_eq(presented);
        }
        ok.into()
    }
}

/// The tokens of a file: one a line, trimmed; blank lines and `#` comments skipped.
fn parse_tokens(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split(|b| *b == b'\n')
        .map(|l| l.trim_ascii())
        .filter(|l| !l.is_empty() && !l.starts_with(b"#"))
        .map(<[u8]>::to_vec)
        .collect()
}

/// The token of an `Authorization: Bearer T` value (scheme case-insensitive).
pub fn bearer(value: Option<&[u8]>) -> Option<&[u8]> {
    let v = value?.trim_ascii();
    let (scheme, rest) = v.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// What an API request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Open,
    Read,
    Admin,
}

/// The role an API request needs: probes and the dashboard's static files are open, SQL and
/// baseline writes need admin, everything else (verdicts, SLIs, `/metrics`, …) read.
pub fn api_need(method: &Method, path: &str) -> Need {
    match path {
        "/healthz" | "/readyz" | "/" => return Need::Open,
        p if p.starts_with("/assets/") => return Need::Open,
        "/api/v1/sql" => return Need::Admin,
        _ => {}
    }
    let reads = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if path.starts_with("/api/v1/baselines") && !reads {
        return Need::Admin;
    }
    Need::Read
}

/// The gRPC methods of the verdict service take API tokens; everything else on the port is
/// OTLP ingest.
fn grpc_is_api(path: &str) -> bool {
    path.starts_with("/slogate.")
}

/// Counters of refused requests and failed TLS handshakes, per listener.
#[derive(Debug, Default)]
pub struct SecurityStats {
    refused: [[AtomicU64; 3]; 3],
    tls_failures: [AtomicU64; 3],
}

impl SecurityStats {
    pub fn refused(&self, l: Listener, r: Refusal) {
        self.refused[l as usize][r as usize].fetch_add(1, Ordering::Relaxed);
    }
    pub fn tls_failed(&self, l: Listener) {
        self.tls_failures[l as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// The running server's access control: the token sets, whether TLS is on, the counters.
#[derive(Debug)]
pub struct Security {
    pub ingest: Option<Arc<TokenSet>>,
    pub api_read: Option<Arc<TokenSet>>,
    pub api_admin: Option<Arc<TokenSet>>,
    pub tls: bool,
    pub mutual_tls: bool,
    pub stats: SecurityStats,
}

impl Security {
    pub fn new(
        cfg: &AuthConfig,
        tls: Option<&crate::config::TlsConfig>,
    ) -> Result<Security, TokenError> {
        Ok(Security {
            ingest: TokenSet::load(&cfg.ingest)?,
            api_read: TokenSet::load(&cfg.api_read)?,
            api_admin: TokenSet::load(&cfg.api_admin)?,
            tls: tls.is_some(),
            mutual_tls: tls.is_some_and(|t| t.client_ca_file.is_some()),
            stats: SecurityStats::default(),
        })
    }

    pub fn api_enabled(&self) -> bool {
        self.api_read.is_some() || self.api_admin.is_some()
    }

    /// Re-reads every token file (see [`TokenSet::reload`]).
    pub fn reload(&self) {
        for set in [&self.ingest, &self.api_read, &self.api_admin]
            .into_iter()
            .flatten()
        {
            set.reload();
        }
    }

    /// Checks an ingest request's `Authorization` value.
    pub fn check_ingest(&self, l: Listener, auth: Option<&[u8]>) -> Result<(), Refusal> {
        let Some(set) = &self.ingest else {
            return Ok(());
        };
        let r = match bearer(auth) {
            None => Err(Refusal::Missing),
            Some(t) if set.accepts(t) => Ok(()),
            Some(_) => Err(Refusal::Invalid),
        };
        r.inspect_err(|r| self.stats.refused(l, *r))
    }

    /// Checks an API request that needs `need`.
    pub fn check_api(&self, l: Listener, need: Need, auth: Option<&[u8]>) -> Result<(), Refusal> {
        if need == Need::Open || !self.api_enabled() {
            return Ok(());
        }
        let accepts =
            |set: &Option<Arc<TokenSet>>, t: &[u8]| set.as_ref().is_some_and(|s| s.accepts(t));
        let r = match bearer(auth) {
            None => Err(Refusal::Missing),
            Some(t) if accepts(&self.api_admin, t) => Ok(()),
            Some(t) if accepts(&self.api_read, t) => {
                if need == Need::Admin {
                    Err(Refusal::Forbidden)
                } else {
                    Ok(())
                }
            }
            Some(_) => Err(Refusal::Invalid),
        };
        r.inspect_err(|r| self.stats.refused(l, *r))
    }

    /// What is not protected, for the start-up warning and `/readyz`; empty when all is.
    pub fn warnings(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.ingest.is_none() {
            out.push("no authentication on the OTLP ports (auth.ingest)");
        }
        if !self.api_enabled() {
            out.push("no authentication on the API (auth.api)");
        }
        if !self.tls {
            out.push("no TLS on any listener (server.tls)");
        }
        out
    }

    /// `slogate_auth_enabled`, `slogate_tls_enabled`, `slogate_auth_refused_total` and
    /// `slogate_tls_handshake_failures_total`.
    pub fn render_metrics(&self, out: &mut String) {
        use slogate_core::prom::{Kind, family};
        let mut f = family(
            out,
            "slogate_auth_enabled",
            Kind::Gauge,
            "1 when the listener requires a bearer token, 0 when it is open to anyone who reaches it.",
        );
        for l in Listener::ALL {
            let on = match l {
                Listener::Api => self.api_enabled(),
                _ => self.ingest.is_some(),
            };
            f.sample(&[("listener", &l.label())], u64::from(on));
        }
        let mut f = family(
            out,
            "slogate_tls_enabled",
            Kind::Gauge,
            "1 when the listener speaks TLS (2 with client certificates required), 0 for plain TCP.",
        );
        let tls = u64::from(self.tls) + u64::from(self.mutual_tls);
        for l in Listener::ALL {
            f.sample(&[("listener", &l.label())], tls);
        }
        let mut f = family(
            out,
            "slogate_auth_refused_total",
            Kind::Counter,
            "Requests refused: no token, a token not configured (401 / UNAUTHENTICATED), or a read token on an admin endpoint (403).",
        );
        for l in Listener::ALL {
            for r in Refusal::ALL {
                let n = self.stats.refused[l as usize][r as usize].load(Ordering::Relaxed);
                f.sample(&[("listener", &l.label()), ("reason", &r.label())], n);
            }
        }
        let mut f = family(
            out,
            "slogate_tls_handshake_failures_total",
            Kind::Counter,
            "TLS handshakes that failed: plain text to a TLS port, an unknown or expired client certificate, a timeout.",
        );
        for l in Listener::ALL {
            f.sample(
                &[("listener", &l.label())],
                self.stats.tls_failures[l as usize].load(Ordering::Relaxed),
            );
        }
    }
}

fn refusal_response(r: Refusal) -> Response {
    let status = match r {
        Refusal::Forbidden => StatusCode::FORBIDDEN,
        _ => StatusCode::UNAUTHORIZED,
    };
    let mut resp = (
        status,
        axum::Json(serde_json::json!({ "error": r.message() })),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"slogate\""),
        );
    }
    resp
}

fn authorization(h: &HeaderMap) -> Option<&[u8]> {
    h.get(header::AUTHORIZATION).map(HeaderValue::as_bytes)
}

/// The API's middleware: the role check.
pub async fn api_layer(sec: Arc<Security>, req: Request, next: Next) -> Response {
    let need = api_need(req.method(), req.uri().path());
    if let Err(r) = sec.check_api(Listener::Api, need, authorization(req.headers())) {
        return refusal_response(r);
    }
    next.run(req).await
}

/// Whether a request says its body is JSON.
pub fn is_json(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// The OTLP/HTTP receiver's middleware: the ingest token.
pub async fn otlp_http_layer(sec: Arc<Security>, req: Request, next: Next) -> Response {
    match sec.check_ingest(Listener::OtlpHttp, authorization(req.headers())) {
        Ok(()) => next.run(req).await,
        Err(r) => refusal_response(r),
    }
}

/// A tower layer for the gRPC port: OTLP methods need an ingest token, the verdict service an
/// API read token; refusals are gRPC UNAUTHENTICATED (or PERMISSION_DENIED) answers.
#[derive(Clone)]
pub struct GrpcAuthLayer(pub Arc<Security>);

impl<S> tower::Layer<S> for GrpcAuthLayer {
    type Service = GrpcAuth<S>;
    fn layer(&self, inner: S) -> GrpcAuth<S> {
        GrpcAuth {
            inner,
            sec: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct GrpcAuth<S> {
    inner: S,
    sec: Arc<Security>,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for GrpcAuth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let auth = authorization(req.headers());
        let checked = if grpc_is_api(req.uri().path()) {
            self.sec.check_api(Listener::OtlpGrpc, Need::Read, auth)
        } else {
            self.sec.check_ingest(Listener::OtlpGrpc, auth)
        };
        match checked {
            Ok(()) => Box::pin(self.inner.call(req)),
            Err(r) => {
                let status = match r {
                    Refusal::Forbidden => tonic::Status::permission_denied(r.message()),
                    _ => tonic::Status::unauthenticated(r.message()),
                };
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_values() {
        let cases: &[(Option<&str>, Option<&str>)] = &[
            (None, None),
            (Some(""), None),
            (Some("Bearer abc"), Some("abc")),
            (Some("bearer  abc "), Some("abc")),
            (Some("BEARER abc"), Some("abc")),
            (Some("Basic abc"), None),
            (Some("Bearer "), None),
            (Some("Bearerabc"), None),
        ];
        for (input, want) in cases {
            assert_eq!(
                bearer(input.map(str::as_bytes)),
                want.map(str::as_bytes),
                "{input:?}"
            );
        }
    }

    #[test]
    fn roles_of_endpoints() {
        let cases = [
            (Method::GET, "/healthz", Need::Open),
            (Method::GET, "/readyz", Need::Open),
            (Method::GET, "/", Need::Open),
            (Method::GET, "/assets/app.js", Need::Open),
            (Method::GET, "/metrics", Need::Read),
            (Method::GET, "/api/v1/sli", Need::Read),
            (Method::GET, "/api/v1/gates/g/verdict", Need::Read),
            (Method::POST, "/api/v1/gates/g/verdict", Need::Read),
            (Method::GET, "/api/v1/baselines", Need::Read),
            (Method::POST, "/api/v1/baselines", Need::Admin),
            (Method::DELETE, "/api/v1/baselines/x", Need::Admin),
            (Method::POST, "/api/v1/sql", Need::Admin),
            (Method::GET, "/api/v1/sql", Need::Admin),
            (Method::GET, "/nope", Need::Read),
        ];
        for (m, path, want) in cases {
            assert_eq!(api_need(&m, path), want, "{m} {path}");
        }
    }

    #[test]
    fn tokens_roles_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let read = dir.path().join("read");
        let admin = dir.path().join("admin");
        std::fs::write(&read, "# read tokens\nr-one\n\n  r-two  \n").unwrap();
        std::fs::write(&admin, "a-one\n").unwrap();
        let cfg = AuthConfig {
            ingest: vec![],
            api_read: vec![read.clone()],
            api_admin: vec![admin.clone()],
        };
        let sec = Security::new(&cfg, None).unwrap();
        let check = |need, v: &str| sec.check_api(Listener::Api, need, Some(v.as_bytes()));
        assert_eq!(check(Need::Read, "Bearer r-one"), Ok(()));
        assert_eq!(check(Need::Read, "Bearer r-two"), Ok(()));
        assert_eq!(check(Need::Read, "Bearer a-one"), Ok(()));
        assert_eq!(check(Need::Admin, "Bearer a-one"), Ok(()));
        assert_eq!(check(Need::Admin, "Bearer r-one"), Err(Refusal::Forbidden));
        assert_eq!(check(Need::Read, "Bearer r-on"), Err(Refusal::Invalid));
        assert_eq!(
            check(Need::Read, "Bearer # read tokens"),
            Err(Refusal::Invalid)
        );
        assert_eq!(check(Need::Open, "Bearer nope"), Ok(()));
        assert_eq!(
            sec.check_api(Listener::Api, Need::Read, None),
            Err(Refusal::Missing)
        );
        // Ingest is open: no token files.
        assert_eq!(sec.check_ingest(Listener::OtlpHttp, None), Ok(()));

        // Rewritten in place: a reload between the truncation and the write finds the file
        // empty, and must not refuse the file's tokens for it.
        std::fs::write(&read, "").unwrap();
        sec.reload();
        assert_eq!(check(Need::Read, "Bearer r-one"), Ok(()));
        std::fs::write(&read, "r-three\n").unwrap();
        sec.reload();
        assert_eq!(check(Need::Read, "Bearer r-one"), Err(Refusal::Invalid));
        assert_eq!(check(Need::Read, "Bearer r-three"), Ok(()));
        // Removed (or emptied) for good: refused from the second read that finds it so.
        std::fs::remove_file(&read).unwrap();
        sec.reload();
        assert_eq!(check(Need::Read, "Bearer r-three"), Ok(()));
        sec.reload();
        assert_eq!(check(Need::Read, "Bearer r-three"), Err(Refusal::Invalid));
        std::fs::write(&read, "r-four\n").unwrap();
        sec.reload();
        assert_eq!(check(Need::Read, "Bearer r-four"), Ok(()));
        std::fs::write(&read, "\n").unwrap();
        sec.reload();
        sec.reload();
        assert_eq!(check(Need::Read, "Bearer r-four"), Err(Refusal::Invalid));

        let mut text = String::new();
        sec.render_metrics(&mut text);
        assert!(
            text.contains(
                "slogate_auth_refused_total{listener=\"api\",reason=\"invalid_token\"} 5"
            ),
            "{text}"
        );
        assert!(
            text.contains("slogate_auth_enabled{listener=\"otlp_http\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("slogate_auth_enabled{listener=\"api\"} 1"),
            "{text}"
        );
        for secret in ["r-one", "r-two", "r-three", "r-four", "a-one"] {
            assert!(!text.contains(secret));
            assert!(!format!("{:?}", sec.api_read).contains(secret));
        }
    }

    #[test]
    fn start_refuses_missing_and_empty_files_without_showing_contents() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "# nothing yet\n\n").unwrap();
        let cfg = |p: &std::path::Path| AuthConfig {
            ingest: vec![p.to_path_buf()],
            ..AuthConfig::default()
        };
        let e = Security::new(&cfg(&empty), None).unwrap_err().to_string();
        assert!(e.contains("holds no token"), "{e}");
        let e = Security::new(&cfg(&dir.path().join("gone")), None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("cannot read token file"), "{e}");
    }
}
