//! The server shared by the Slack and Alertmanager-webhook stand-ins: one endpoint that
//! validates what it receives against the public contract, a fault-injection script, two
//! ledgers and an optional record file (see the crate documentation for the why).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::TcpListener;

use crate::{RecordFile, Serving};

/// Far above any real notification, so oversized bodies still reach the validator.
const TRANSPORT_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// Why a stand-in refused a request: the status and the error code the real service would
/// answer, and every problem found (for the test that reads the request log).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub status: u16,
    pub error: &'static str,
    pub problems: Vec<String>,
}

impl Rejection {
    pub fn new(status: u16, error: &'static str, problems: Vec<String>) -> Rejection {
        Rejection {
            status,
            error,
            problems,
        }
    }
}

/// One scripted answer: a status and, for `429` and `503`, a `Retry-After` in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl From<u16> for Fault {
    fn from(status: u16) -> Fault {
        Fault {
            status,
            retry_after: None,
        }
    }
}

impl Fault {
    pub fn retry_after(status: u16, seconds: u64) -> Fault {
        Fault {
            status,
            retry_after: Some(seconds),
        }
    }
}

/// The contract a stand-in plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A Slack incoming webhook: `POST /services/T…/B…/…`, answers `200 ok`.
    Slack,
    /// A receiver of Alertmanager's webhook (version 4): answers `200` with an empty body.
    Alertmanager,
}

/// Where and how to run a stand-in.
#[derive(Clone, Debug)]
pub struct ReceiverConfig {
    pub kind: Kind,
    pub addr: SocketAddr,
    /// The one path that is the webhook. `None`: a Slack-shaped secret path is generated
    /// (`/services/T…/B…/…`), or `/hook` for Alertmanager.
    pub path: Option<String>,
    /// Requests must carry `Authorization: Bearer {token}` (Alertmanager receivers).
    pub token: Option<String>,
    /// Append every accepted body to this file as a JSON line, fsync'd before answering.
    pub record: Option<PathBuf>,
}

impl ReceiverConfig {
    pub fn new(kind: Kind, addr: SocketAddr) -> ReceiverConfig {
        ReceiverConfig {
            kind,
            addr,
            path: None,
            token: None,
            record: None,
        }
    }
}

/// One request received, with the answer given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Received {
    pub path: String,
    pub status: u16,
    /// The body parsed as JSON, or `null` when it was not JSON.
    pub body: Value,
    /// Whether the answer came from the fault-injection script.
    pub scripted: bool,
    /// What the validator found wrong (empty when accepted or scripted).
    pub problems: Vec<String>,
    /// Milliseconds since the server started.
    pub at_ms: u64,
}

struct ReceiverState {
    kind: Kind,
    path: String,
    token: Option<String>,
    script: Mutex<VecDeque<Fault>>,
    accepted: Mutex<Vec<Value>>,
    requests: Mutex<Vec<Received>>,
    record: Option<RecordFile>,
    started: Instant,
}

/// A running stand-in; dropping it stops the server.
pub struct ReceiverMock {
    addr: SocketAddr,
    url: String,
    state: Arc<ReceiverState>,
    serving: Serving,
}

/// A path shaped like a Slack webhook's, with random parts.
fn slack_path() -> String {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let pick = |n: usize, set: &[u8]| -> String {
        (0..n)
            .map(|_| set[rand::random_range(0..set.len())] as char)
            .collect()
    };
    let upper = &ALNUM[..26];
    format!(
        "/services/T{}/B{}/{}",
        pick(10, upper),
        pick(10, upper),
        pick(24, ALNUM)
    )
}

impl ReceiverMock {
    /// A Slack incoming webhook on `addr` (port 0 picks one) with a generated secret path.
    pub async fn slack(addr: SocketAddr) -> io::Result<ReceiverMock> {
        Self::start_with(ReceiverConfig::new(Kind::Slack, addr)).await
    }

    /// An Alertmanager webhook receiver on `addr` at `/hook`, requiring `token` when given.
    pub async fn alertmanager(addr: SocketAddr, token: Option<&str>) -> io::Result<ReceiverMock> {
        let mut c = ReceiverConfig::new(Kind::Alertmanager, addr);
        c.token = token.map(str::to_string);
        Self::start_with(c).await
    }

    pub async fn start_with(config: ReceiverConfig) -> io::Result<ReceiverMock> {
        let record = RecordFile::open(config.record.as_deref())?;
        let path = config.path.clone().unwrap_or_else(|| match config.kind {
            Kind::Slack => slack_path(),
            Kind::Alertmanager => "/hook".into(),
        });
        let state = Arc::new(ReceiverState {
            kind: config.kind,
            path: path.clone(),
            token: config.token.clone(),
            script: Mutex::new(VecDeque::new()),
            accepted: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            record,
            started: Instant::now(),
        });
        let listener = TcpListener::bind(config.addr).await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/_control/script", post(set_script))
            .route("/_control/accepted", get(list_accepted))
            .route("/_control/requests", get(list_requests))
            .route("/_control/reset", post(reset))
            .fallback(receive)
            .layer(DefaultBodyLimit::max(TRANSPORT_BODY_LIMIT))
            .with_state(state.clone());
        Ok(ReceiverMock {
            addr,
            url: format!("http://{addr}{path}"),
            state,
            serving: Serving::start(listener, app),
        })
    }

    /// The webhook URL to configure (for Slack it holds the secret path).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every body accepted, in order, exactly as received.
    pub fn accepted(&self) -> Vec<Value> {
        self.state.accepted.lock().clone()
    }

    /// Every request on the webhook path (and any other non-control path), with its answer.
    pub fn requests(&self) -> Vec<Received> {
        self.state.requests.lock().clone()
    }

    /// Appends faults to answer before normal behaviour resumes; a scripted `200` falls through
    /// to normal processing.
    pub fn script(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.script.lock().extend(faults);
    }

    /// Scripted answers not yet used.
    pub fn script_left(&self) -> usize {
        self.state.script.lock().len()
    }

    /// Clears the script and both ledgers (not the record file).
    pub fn reset(&self) {
        self.state.reset();
    }

    /// Stops accepting connections and waits (bounded) for the server task to end.
    pub async fn shutdown(self) {
        self.serving.stop().await;
    }
}

impl ReceiverState {
    fn reset(&self) {
        self.script.lock().clear();
        self.accepted.lock().clear();
        self.requests.lock().clear();
    }

    fn log(&self, path: &str, status: u16, body: Value, scripted: bool, problems: Vec<String>) {
        let at_ms = self.started.elapsed().as_millis() as u64;
        self.requests.lock().push(Received {
            path: path.into(),
            status,
            body,
            scripted,
            problems,
            at_ms,
        });
    }

    fn accept(&self, body: &Value) -> io::Result<()> {
        if let Some(file) = &self.record {
            file.append(body)?;
        }
        self.accepted.lock().push(body.clone());
        Ok(())
    }

    /// The contract's answer to a request that is not scripted.
    fn check(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), Rejection> {
        if method != Method::POST {
            return Err(Rejection::new(
                405,
                "method_not_allowed",
                vec![format!("{method} is not POST")],
            ));
        }
        if path != self.path {
            return Err(match self.kind {
                // Slack's answer to a revoked or mistyped webhook URL.
                Kind::Slack => {
                    Rejection::new(404, "no_service", vec![format!("no webhook at {path}")])
                }
                Kind::Alertmanager => {
                    Rejection::new(404, "not found", vec![format!("no receiver at {path}")])
                }
            });
        }
        if let Some(token) = &self.token {
            let want = format!("Bearer {token}");
            let got = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if got != Some(want.as_str()) {
                return Err(Rejection::new(
                    401,
                    "unauthorized",
                    vec!["missing or wrong bearer token".into()],
                ));
            }
        }
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            let error = match self.kind {
                Kind::Slack => "invalid_payload",
                Kind::Alertmanager => "invalid payload",
            };
            return Err(Rejection::new(
                400,
                error,
                vec!["Content-Type is not application/json".into()],
            ));
        }
        match self.kind {
            Kind::Slack => crate::slack::validate(body),
            Kind::Alertmanager => crate::alertmanager::validate(body),
        }
    }

    /// The body of a scripted or refused answer, in the service's words.
    fn error_body(&self, status: u16, error: &str) -> String {
        match (self.kind, error) {
            (Kind::Slack, "") => match status {
                400 => "invalid_payload",
                403 => "action_prohibited",
                404 => "no_service",
                410 => "channel_is_archived",
                429 => "rate_limited",
                500 => "rollup_error",
                _ => "scripted_failure",
            }
            .to_string(),
            (Kind::Alertmanager, "") => format!("scripted failure {status}"),
            (_, e) => e.to_string(),
        }
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let scripted = state.script.lock().pop_front();
    if let Some(fault) = scripted.filter(|f| f.status != 200) {
        state.log(&path, fault.status, parsed, true, Vec::new());
        let code = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let text = state.error_body(fault.status, "");
        let mut resp = (code, text).into_response();
        if let Some(secs) = fault.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, secs.into());
        }
        return resp;
    }
    match state.check(&method, &path, &headers, &body) {
        Ok(()) => {
            if let Err(err) = state.accept(&parsed) {
                tracing::error!(error = %err, "record file write failed");
                state.log(
                    &path,
                    500,
                    parsed,
                    scripted.is_some(),
                    vec![err.to_string()],
                );
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "record file write failed",
                )
                    .into_response();
            }
            state.log(&path, 200, parsed, scripted.is_some(), Vec::new());
            let body = match state.kind {
                Kind::Slack => "ok",
                Kind::Alertmanager => "",
            };
            (StatusCode::OK, body).into_response()
        }
        Err(r) => {
            let text = match state.kind {
                Kind::Slack => state.error_body(r.status, r.error),
                Kind::Alertmanager => format!("{}: {}", r.error, r.problems.join("; ")),
            };
            state.log(&path, r.status, parsed, scripted.is_some(), r.problems);
            let code = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST);
            (code, text).into_response()
        }
    }
}

/// `{"responses": [500, {"status": 429, "retry_after": 2}]}`.
#[derive(Deserialize)]
struct ScriptBody {
    responses: Vec<FaultSpec>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum FaultSpec {
    Status(u16),
    Fault(Fault),
}

async fn set_script(
    State(state): State<Arc<ReceiverState>>,
    axum::Json(body): axum::Json<ScriptBody>,
) -> StatusCode {
    state
        .script
        .lock()
        .extend(body.responses.into_iter().map(|f| match f {
            FaultSpec::Status(s) => Fault::from(s),
            FaultSpec::Fault(f) => f,
        }));
    StatusCode::NO_CONTENT
}

async fn list_accepted(State(state): State<Arc<ReceiverState>>) -> axum::Json<Vec<Value>> {
    axum::Json(state.accepted.lock().clone())
}

async fn list_requests(State(state): State<Arc<ReceiverState>>) -> axum::Json<Vec<Received>> {
    axum::Json(state.requests.lock().clone())
}

async fn reset(State(state): State<Arc<ReceiverState>>) -> StatusCode {
    state.reset();
    StatusCode::NO_CONTENT
}

/// Runs a stand-in as a process: parses `[--listen ADDR] [--path P] [--token T] [--record F]`,
/// prints `listening on URL` once bound, and serves until Ctrl-C.
pub async fn main_with(kind: Kind, name: &str) -> std::process::ExitCode {
    let usage =
        format!("usage: {name} [--listen ADDR] [--path PATH] [--token TOKEN] [--record FILE]");
    let mut config = ReceiverConfig::new(kind, "127.0.0.1:0".parse().expect("literal address"));
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        let parsed: Result<(), String> = match arg.as_str() {
            "--listen" => value().and_then(|v| {
                config.addr = v
                    .parse()
                    .map_err(|e| format!("invalid --listen address {v:?}: {e}"))?;
                Ok(())
            }),
            "--path" => value().map(|v| config.path = Some(v)),
            "--token" => value().map(|v| config.token = Some(v)),
            "--record" => value().map(|v| config.record = Some(PathBuf::from(v))),
            "-h" | "--help" => Err(usage.clone()),
            other => Err(format!("unknown argument {other:?}\n{usage}")),
        };
        if let Err(msg) = parsed {
            eprintln!("{msg}");
            return std::process::ExitCode::from(2);
        }
    }
    let server = match ReceiverMock::start_with(config).await {
        Ok(s) => s,
        Err(err) => {
            eprintln!("cannot start: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "listening on {}", server.url());
    let _ = stdout.flush();
    let _ = tokio::signal::ctrl_c().await;
    server.shutdown().await;
    std::process::ExitCode::SUCCESS
}
