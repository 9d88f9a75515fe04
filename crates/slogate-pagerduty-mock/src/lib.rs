//! Local stand-ins for where slogate sends notifications, each written from the public contract:
//! PagerDuty's Events API v2 (this module's [`MockServer`]), a Slack incoming webhook
//! ([`slack`]) and an Alertmanager-format webhook receiver ([`alertmanager`]), the last two served
//! by [`receiver::ReceiverMock`].
//!
//! Design decisions (the same for every stand-in):
//! - **The documented contract, not a stub.** `POST /v2/enqueue` validates an event the way the
//!   Events API v2 documents it (routing key length, actions, dedup key length, payload fields,
//!   512 KB cap) and answers `202` or `400` with an `errors[]` list, so a sender that passes
//!   against the mock is not passing because the mock accepts anything. [`validate`] is public
//!   and pure so its table can be tested without a socket.
//! - **Fault injection is a script.** A queue of status codes ([`MockServer::script`] or
//!   `POST /_control/script`) is answered, one per request, before normal behaviour resumes;
//!   a scripted `202` (`200` for the webhooks) falls through to normal processing. Tests can then
//!   say "429 ×3, 500 ×2" and count attempts exactly, with no timing or randomness in the mock.
//!   The webhook stand-ins' faults may carry a `Retry-After` ([`receiver::Fault`]).
//! - **Two ledgers.** `accepted` holds only events answered `202` (what PagerDuty would have
//!   paged on), `requests` every request with the status it got, so "delivered exactly once" and
//!   "retried five times" are separate, checkable facts.
//! - **Survives its own restart when asked.** With a record file, every accepted event is
//!   appended as one JSON line and fsync'd before the `202` is sent, so a test that kills and
//!   restarts the mock process can still count deliveries across the restart.

pub mod alertmanager;
pub mod receiver;
pub mod slack;

pub use receiver::{Fault, Kind, Received, ReceiverConfig, ReceiverMock, Rejection};

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The documented cap on a whole event, in bytes.
pub const MAX_EVENT_BYTES: usize = 512 * 1024;
/// The documented cap on `payload.summary`, in characters.
pub const MAX_SUMMARY_CHARS: usize = 1024;
/// The documented cap on `dedup_key`, in characters.
pub const MAX_DEDUP_KEY_CHARS: usize = 255;
/// The length of a routing (integration) key.
pub const ROUTING_KEY_CHARS: usize = 32;

/// Bodies above the event cap must reach [`validate`] to get the documented `400` rather than
/// axum's `413`, so the transport limit sits well above it.
const TRANSPORT_BODY_LIMIT: usize = 4 * MAX_EVENT_BYTES;

const SEVERITIES: [&str; 4] = ["critical", "error", "warning", "info"];
const ACTIONS: [&str; 3] = ["trigger", "acknowledge", "resolve"];

/// Where and how to run the mock.
#[derive(Clone, Debug)]
pub struct MockConfig {
    pub addr: SocketAddr,
    /// Append every accepted event to this file as a JSON line, fsync'd before answering.
    pub record: Option<PathBuf>,
}

/// One request the mock received, with the status it answered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// The body parsed as JSON, or `null` when it was not JSON.
    pub body: Value,
    /// Whether the answer came from the fault-injection script.
    pub scripted: bool,
    /// Milliseconds since the server started, so tests can check spacing between sends.
    pub at_ms: u64,
}

struct MockState {
    script: Mutex<VecDeque<u16>>,
    accepted: Mutex<Vec<Value>>,
    requests: Mutex<Vec<RequestRecord>>,
    record: Option<RecordFile>,
    started: Instant,
}

/// A running mock; dropping it stops the server.
pub struct MockServer {
    addr: SocketAddr,
    url: String,
    state: Arc<MockState>,
    serving: Serving,
}

/// A stand-in's record file: one JSON line per accepted payload, appended and fsync'd before the
/// answer, so a kill never loses what a client was told was accepted.
pub(crate) struct RecordFile(Mutex<File>);

impl RecordFile {
    /// Opens (creating, appending to) `path`; `None` without one.
    pub(crate) fn open(path: Option<&std::path::Path>) -> io::Result<Option<RecordFile>> {
        path.map(|p| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map(|f| RecordFile(Mutex::new(f)))
        })
        .transpose()
    }

    /// Appends `value` as one line and syncs it to disk.
    pub(crate) fn append(&self, value: &Value) -> io::Result<()> {
        let mut line = serde_json::to_vec(value).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut file = self.0.lock();
        file.write_all(&line)?;
        file.sync_data()
    }
}

/// An axum server running in a task of its own, stopped on request or when dropped: what each
/// stand-in holds.
pub(crate) struct Serving {
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl Serving {
    /// Serves `app` on `listener` until [`Serving::stop`] or the drop.
    pub(crate) fn start(listener: TcpListener, app: Router) -> Serving {
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
        });
        Serving {
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Stops accepting connections and waits for the server task to end. Pooled keep-alive
    /// connections may hold a graceful shutdown open; a bounded wait then an abort keeps
    /// restart tests from hanging on a client's idle connection.
    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(std::time::Duration::from_secs(2), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl MockServer {
    /// Starts a mock without a record file on `addr` (port 0 picks a free port).
    pub async fn start(addr: SocketAddr) -> io::Result<MockServer> {
        Self::start_with(MockConfig { addr, record: None }).await
    }

    /// Starts a mock with the given configuration.
    pub async fn start_with(config: MockConfig) -> io::Result<MockServer> {
        let record = RecordFile::open(config.record.as_deref())?;
        let state = Arc::new(MockState {
            script: Mutex::new(VecDeque::new()),
            accepted: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            record,
            started: Instant::now(),
        });
        let listener = TcpListener::bind(config.addr).await?;
        let addr = listener.local_addr()?;
        let serving = Serving::start(listener, router(state.clone()));
        Ok(MockServer {
            addr,
            url: format!("http://{addr}"),
            state,
            serving,
        })
    }

    /// The base URL, e.g. `http://127.0.0.1:41234` (the sender appends `/v2/enqueue`).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every event answered `202`, in the order accepted, exactly as received.
    pub fn accepted(&self) -> Vec<Value> {
        self.state.accepted.lock().clone()
    }

    /// Every request received on `/v2/enqueue`, with the status answered.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state.requests.lock().clone()
    }

    /// Appends status codes to answer before normal behaviour resumes.
    pub fn script(&self, responses: Vec<u16>) {
        self.state.script.lock().extend(responses);
    }

    /// Clears the script, the accepted events and the request log (not the record file).
    pub fn reset(&self) {
        self.state.reset();
    }

    /// Stops accepting connections and waits (bounded) for the server task to end.
    pub async fn shutdown(self) {
        self.serving.stop().await;
    }
}

impl MockState {
    fn reset(&self) {
        self.script.lock().clear();
        self.accepted.lock().clear();
        self.requests.lock().clear();
    }

    fn log(&self, path: &str, status: u16, body: Value, scripted: bool) {
        let at_ms = self.started.elapsed().as_millis() as u64;
        self.requests.lock().push(RequestRecord {
            method: "POST".into(),
            path: path.into(),
            status,
            body,
            scripted,
            at_ms,
        });
    }

    /// Records an accepted event; the record file is written and fsync'd first so that a `202`
    /// is never answered for an event the file does not hold.
    fn accept(&self, event: &Value) -> io::Result<()> {
        if let Some(file) = &self.record {
            file.append(event)?;
        }
        self.accepted.lock().push(event.clone());
        Ok(())
    }
}

/// The mock's routes: the Events API endpoint and the `/_control` API tests drive it with.
fn router(state: Arc<MockState>) -> Router {
    Router::new()
        .route("/v2/enqueue", post(enqueue))
        .route("/_control/script", post(set_script))
        .route("/_control/events", get(list_events))
        .route("/_control/requests", get(list_requests))
        .route("/_control/reset", post(reset))
        .layer(DefaultBodyLimit::max(TRANSPORT_BODY_LIMIT))
        .with_state(state)
}

async fn enqueue(State(state): State<Arc<MockState>>, body: Bytes) -> Response {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let scripted = state.script.lock().pop_front();
    if let Some(status) = scripted.filter(|s| *s != 202) {
        state.log("/v2/enqueue", status, parsed, true);
        return scripted_response(status);
    }
    let scripted = scripted.is_some();
    match validate(&body) {
        Ok(dedup_key) => {
            if let Err(err) = state.accept(&parsed) {
                tracing::error!(error = %err, "record file write failed");
                state.log("/v2/enqueue", 500, parsed, scripted);
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    axum::Json(json!({"status": "error", "message": "record file write failed"})),
                )
                    .into_response();
            }
            state.log("/v2/enqueue", 202, parsed, scripted);
            (
                StatusCode::ACCEPTED,
                axum::Json(json!({
                    "status": "success",
                    "message": "Event processed",
                    "dedup_key": dedup_key,
                })),
            )
                .into_response()
        }
        Err(errors) => {
            state.log("/v2/enqueue", 400, parsed, scripted);
            invalid_response(errors)
        }
    }
}

fn invalid_response(errors: Vec<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({
            "status": "invalid event",
            "message": "Event object is invalid",
            "errors": errors,
        })),
    )
        .into_response()
}

fn scripted_response(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match status {
        400 => invalid_response(vec!["scripted rejection".into()]),
        429 => (
            code,
            axum::Json(json!({
                "status": "throttle event",
                "message": "Requests for this service are arriving too quickly. Please retry later.",
            })),
        )
            .into_response(),
        _ => (
            code,
            axum::Json(json!({"status": "error", "message": "scripted failure"})),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct ScriptBody {
    responses: Vec<u16>,
}

async fn set_script(
    State(state): State<Arc<MockState>>,
    axum::Json(body): axum::Json<ScriptBody>,
) -> StatusCode {
    state.script.lock().extend(body.responses);
    StatusCode::NO_CONTENT
}

async fn list_events(State(state): State<Arc<MockState>>) -> axum::Json<Vec<Value>> {
    axum::Json(state.accepted.lock().clone())
}

async fn list_requests(State(state): State<Arc<MockState>>) -> axum::Json<Vec<RequestRecord>> {
    axum::Json(state.requests.lock().clone())
}

async fn reset(State(state): State<Arc<MockState>>) -> StatusCode {
    state.reset();
    StatusCode::NO_CONTENT
}

/// Validates a raw request body against the Events API v2 contract. On success returns the
/// dedup key the answer carries (generated for a trigger without one); on failure, every
/// problem found, in field order.
pub fn validate(body: &[u8]) -> Result<String, Vec<String>> {
    if body.len() > MAX_EVENT_BYTES {
        return Err(vec!["event is larger than 512 KB".into()]);
    }
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return Err(vec!["body is not valid JSON".into()]),
    };
    let Some(event) = value.as_object() else {
        return Err(vec!["event must be a JSON object".into()]);
    };
    let mut errors = Vec::new();

    match event.get("routing_key") {
        None | Some(Value::Null) => errors.push("routing_key is missing".into()),
        Some(Value::String(key)) if key.chars().count() != ROUTING_KEY_CHARS => {
            errors.push("routing_key must be 32 characters".into())
        }
        Some(Value::String(_)) => {}
        Some(_) => errors.push("routing_key must be a string".into()),
    }

    let action = match event.get("event_action") {
        None | Some(Value::Null) => {
            errors.push("event_action is missing".into());
            None
        }
        Some(Value::String(a)) if ACTIONS.contains(&a.as_str()) => Some(a.as_str()),
        Some(_) => {
            errors.push("event_action must be one of trigger, acknowledge, resolve".into());
            None
        }
    };

    let dedup_key = match event.get("dedup_key") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) if k.chars().count() > MAX_DEDUP_KEY_CHARS => {
            errors.push("dedup_key must be at most 255 characters".into());
            None
        }
        Some(Value::String(k)) if k.is_empty() => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => {
            errors.push("dedup_key must be a string".into());
            None
        }
    };
    let dedup_missing = match event.get("dedup_key") {
        None | Some(Value::Null) => true,
        Some(Value::String(k)) => k.is_empty(),
        Some(_) => false,
    };
    if matches!(action, Some("acknowledge" | "resolve")) && dedup_missing {
        errors.push("dedup_key is required for acknowledge and resolve".into());
    }

    // PagerDuty ignores the payload of acknowledge and resolve events, so only triggers are held
    // to the payload rules.
    if action == Some("trigger") {
        validate_payload(event.get("payload"), &mut errors);
    }
    validate_links(event.get("links"), &mut errors);
    validate_images(event.get("images"), &mut errors);

    if errors.is_empty() {
        Ok(dedup_key.unwrap_or_else(generate_dedup_key))
    } else {
        Err(errors)
    }
}

fn validate_payload(payload: Option<&Value>, errors: &mut Vec<String>) {
    let payload = match payload {
        None | Some(Value::Null) => return errors.push("payload is missing".into()),
        Some(Value::Object(p)) => p,
        Some(_) => return errors.push("payload must be an object".into()),
    };
    match payload.get("summary") {
        Some(Value::String(s)) if s.trim().is_empty() => {
            errors.push("payload.summary is missing or blank".into())
        }
        Some(Value::String(s)) if s.chars().count() > MAX_SUMMARY_CHARS => {
            errors.push("payload.summary must be at most 1024 characters".into())
        }
        Some(Value::String(_)) => {}
        None | Some(Value::Null) => errors.push("payload.summary is missing or blank".into()),
        Some(_) => errors.push("payload.summary must be a string".into()),
    }
    match payload.get("source") {
        Some(Value::String(s)) if !s.trim().is_empty() => {}
        Some(Value::String(_)) | None | Some(Value::Null) => {
            errors.push("payload.source is missing or blank".into())
        }
        Some(_) => errors.push("payload.source must be a string".into()),
    }
    match payload.get("severity") {
        None | Some(Value::Null) => errors.push("payload.severity is missing".into()),
        Some(Value::String(s)) if SEVERITIES.contains(&s.as_str()) => {}
        Some(_) => {
            errors.push("payload.severity must be one of critical, error, warning, info".into())
        }
    }
    match payload.get("timestamp") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if looks_like_iso8601(s) => {}
        Some(_) => errors.push("payload.timestamp must be an ISO 8601 timestamp".into()),
    }
    for field in ["component", "group", "class"] {
        match payload.get(field) {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(_) => errors.push(format!("payload.{field} must be a string")),
        }
    }
    match payload.get("custom_details") {
        None | Some(Value::Null) | Some(Value::Object(_)) => {}
        Some(_) => errors.push("payload.custom_details must be an object".into()),
    }
}

fn validate_links(links: Option<&Value>, errors: &mut Vec<String>) {
    let links = match links {
        None | Some(Value::Null) => return,
        Some(Value::Array(l)) => l,
        Some(_) => return errors.push("links must be an array".into()),
    };
    for (i, link) in links.iter().enumerate() {
        let Some(link) = link.as_object() else {
            errors.push(format!("links[{i}] must be an object"));
            continue;
        };
        match link.get("href") {
            Some(Value::String(h)) if !h.is_empty() => {}
            Some(Value::String(_)) | None | Some(Value::Null) => {
                errors.push(format!("links[{i}].href is missing"))
            }
            Some(_) => errors.push(format!("links[{i}].href must be a string")),
        }
        match link.get("text") {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(_) => errors.push(format!("links[{i}].text must be a string")),
        }
    }
}

fn validate_images(images: Option<&Value>, errors: &mut Vec<String>) {
    let images = match images {
        None | Some(Value::Null) => return,
        Some(Value::Array(l)) => l,
        Some(_) => return errors.push("images must be an array".into()),
    };
    for (i, image) in images.iter().enumerate() {
        let Some(image) = image.as_object() else {
            errors.push(format!("images[{i}] must be an object"));
            continue;
        };
        match image.get("src") {
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(Value::String(_)) | None | Some(Value::Null) => {
                errors.push(format!("images[{i}].src is missing"))
            }
            Some(_) => errors.push(format!("images[{i}].src must be a string")),
        }
        for field in ["href", "alt"] {
            match image.get(field) {
                None | Some(Value::Null) | Some(Value::String(_)) => {}
                Some(_) => errors.push(format!("images[{i}].{field} must be a string")),
            }
        }
    }
}

/// A loose shape check (`YYYY-MM-DDTHH:MM`…): PagerDuty accepts several ISO 8601 forms, and the
/// point here is to catch numbers and free text, not to re-implement a date parser.
fn looks_like_iso8601(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    b.len() >= 16
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && (b[10] == b'T' || b[10] == b' ')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
}

fn generate_dedup_key() -> String {
    let n: u128 = rand::random();
    format!("{n:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789ABCDEF";

    fn trigger() -> Value {
        json!({
            "routing_key": KEY,
            "event_action": "trigger",
            "dedup_key": "slo/checkout/latency",
            "payload": {"summary": "burn rate high", "source": "slogate", "severity": "critical"},
        })
    }

    /// Applies `edit` to a valid trigger and checks the validator's verdict.
    fn check(name: &str, edit: impl FnOnce(&mut Value), want: Result<(), &[&str]>) {
        let mut event = trigger();
        edit(&mut event);
        let got = validate(&serde_json::to_vec(&event).unwrap());
        match (got, want) {
            (Ok(_), Ok(())) => {}
            (Err(got), Err(want)) => assert_eq!(got, want, "{name}"),
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn validation_table() {
        type Edit = fn(&mut Value);
        type Case = (&'static str, Edit, Result<(), &'static [&'static str]>);
        let cases: Vec<Case> = vec![
            ("valid trigger", |_| {}, Ok(())),
            (
                "trigger without dedup key",
                |e| {
                    e.as_object_mut().unwrap().remove("dedup_key");
                },
                Ok(()),
            ),
            (
                "resolve without payload",
                |e| {
                    e["event_action"] = json!("resolve");
                    e.as_object_mut().unwrap().remove("payload");
                },
                Ok(()),
            ),
            (
                "acknowledge",
                |e| e["event_action"] = json!("acknowledge"),
                Ok(()),
            ),
            (
                "all optional fields",
                |e| {
                    e["payload"]["timestamp"] = json!("2026-11-24T16:00:00.000+0000");
                    e["payload"]["component"] = json!("checkout");
                    e["payload"]["group"] = json!("prod");
                    e["payload"]["class"] = json!("latency");
                    e["payload"]["custom_details"] = json!({"burn": 14.4});
                    e["links"] = json!([{"href": "https://x", "text": "dash"}]);
                    e["images"] =
                        json!([{"src": "https://x/i.png", "href": "https://x", "alt": "graph"}]);
                },
                Ok(()),
            ),
            (
                "summary exactly 1024 chars",
                |e| e["payload"]["summary"] = json!("é".repeat(1024)),
                Ok(()),
            ),
            (
                "dedup key exactly 255 chars",
                |e| e["dedup_key"] = json!("k".repeat(255)),
                Ok(()),
            ),
            (
                "missing routing key",
                |e| {
                    e.as_object_mut().unwrap().remove("routing_key");
                },
                Err(&["routing_key is missing"]),
            ),
            (
                "short routing key",
                |e| e["routing_key"] = json!("abc"),
                Err(&["routing_key must be 32 characters"]),
            ),
            (
                "numeric routing key",
                |e| e["routing_key"] = json!(7),
                Err(&["routing_key must be a string"]),
            ),
            (
                "missing action",
                |e| {
                    e.as_object_mut().unwrap().remove("event_action");
                },
                Err(&["event_action is missing"]),
            ),
            (
                "bad action",
                |e| e["event_action"] = json!("fire"),
                Err(&["event_action must be one of trigger, acknowledge, resolve"]),
            ),
            (
                "dedup key too long",
                |e| e["dedup_key"] = json!("k".repeat(256)),
                Err(&["dedup_key must be at most 255 characters"]),
            ),
            (
                "dedup key not a string",
                |e| e["dedup_key"] = json!(1),
                Err(&["dedup_key must be a string"]),
            ),
            (
                "resolve without dedup key",
                |e| {
                    e["event_action"] = json!("resolve");
                    e.as_object_mut().unwrap().remove("dedup_key");
                },
                Err(&["dedup_key is required for acknowledge and resolve"]),
            ),
            (
                "resolve with empty dedup key",
                |e| {
                    e["event_action"] = json!("resolve");
                    e["dedup_key"] = json!("");
                },
                Err(&["dedup_key is required for acknowledge and resolve"]),
            ),
            (
                "trigger without payload",
                |e| {
                    e.as_object_mut().unwrap().remove("payload");
                },
                Err(&["payload is missing"]),
            ),
            (
                "payload not an object",
                |e| e["payload"] = json!("x"),
                Err(&["payload must be an object"]),
            ),
            (
                "blank summary",
                |e| e["payload"]["summary"] = json!("  "),
                Err(&["payload.summary is missing or blank"]),
            ),
            (
                "summary too long",
                |e| e["payload"]["summary"] = json!("s".repeat(1025)),
                Err(&["payload.summary must be at most 1024 characters"]),
            ),
            (
                "missing source",
                |e| {
                    e["payload"].as_object_mut().unwrap().remove("source");
                },
                Err(&["payload.source is missing or blank"]),
            ),
            (
                "missing severity",
                |e| {
                    e["payload"].as_object_mut().unwrap().remove("severity");
                },
                Err(&["payload.severity is missing"]),
            ),
            (
                "bad severity",
                |e| e["payload"]["severity"] = json!("high"),
                Err(&["payload.severity must be one of critical, error, warning, info"]),
            ),
            (
                "numeric timestamp",
                |e| e["payload"]["timestamp"] = json!(1700000000),
                Err(&["payload.timestamp must be an ISO 8601 timestamp"]),
            ),
            (
                "free text timestamp",
                |e| e["payload"]["timestamp"] = json!("yesterday"),
                Err(&["payload.timestamp must be an ISO 8601 timestamp"]),
            ),
            (
                "numeric component",
                |e| e["payload"]["component"] = json!(1),
                Err(&["payload.component must be a string"]),
            ),
            (
                "custom details array",
                |e| e["payload"]["custom_details"] = json!([1]),
                Err(&["payload.custom_details must be an object"]),
            ),
            (
                "links not an array",
                |e| e["links"] = json!({}),
                Err(&["links must be an array"]),
            ),
            (
                "link without href",
                |e| e["links"] = json!([{"text": "t"}]),
                Err(&["links[0].href is missing"]),
            ),
            (
                "link text numeric",
                |e| e["links"] = json!([{"href": "h", "text": 1}]),
                Err(&["links[0].text must be a string"]),
            ),
            (
                "image without src",
                |e| e["images"] = json!([{"alt": "a"}]),
                Err(&["images[0].src is missing"]),
            ),
            (
                "image alt numeric",
                |e| e["images"] = json!([{"src": "s", "alt": 2}]),
                Err(&["images[0].alt must be a string"]),
            ),
            (
                "several problems at once",
                |e| {
                    e["routing_key"] = json!("x");
                    e["payload"]["severity"] = json!("x");
                },
                Err(&[
                    "routing_key must be 32 characters",
                    "payload.severity must be one of critical, error, warning, info",
                ]),
            ),
        ];
        for (name, edit, want) in cases {
            check(name, edit, want);
        }
    }

    #[test]
    fn body_shape_table() {
        let big = {
            let mut e = trigger();
            e["payload"]["custom_details"] = json!({"blob": "x".repeat(MAX_EVENT_BYTES)});
            serde_json::to_vec(&e).unwrap()
        };
        let cases: [(&str, &[u8], &str); 3] = [
            ("not json", b"{nope", "body is not valid JSON"),
            ("array", b"[]", "event must be a JSON object"),
            ("over 512 KB", &big, "event is larger than 512 KB"),
        ];
        for (name, body, want) in cases {
            assert_eq!(validate(body), Err(vec![want.to_string()]), "{name}");
        }
    }

    #[test]
    fn generated_dedup_key_is_returned_for_triggers_without_one() {
        let mut e = trigger();
        e.as_object_mut().unwrap().remove("dedup_key");
        let key = validate(&serde_json::to_vec(&e).unwrap()).unwrap();
        assert_eq!(key.len(), 32);
        let kept = validate(&serde_json::to_vec(&trigger()).unwrap()).unwrap();
        assert_eq!(kept, "slo/checkout/latency");
    }
}
