//! OTLP/HTTP receiver: `POST /v1/traces` and `POST /v1/metrics`, protobuf or JSON by
//! Content-Type, optional gzip.
//!
//! The response has the request's Content-Type. Errors carry a `google.rpc.Status` body
//! (protobuf or JSON to match); overload answers 503 with `Retry-After`. `/v1/metrics` answers
//! 404 when the pipeline has no metric sink.
//!
//! A request's body is read (bounded by `max_request_bytes`, within `body_read_timeout`) before
//! it takes an in-flight slot: slots bound decoding, and a client that trickles its body must
//! not hold one (256 bodies sent at a byte a second would otherwise refuse every export). A
//! body that has not arrived in time is answered 408 and its connection closed; it counts as
//! `malformed`, like a body whose connection broke off. Refusals
//! decided before the body is read (wrong content type, no metric sink, already overloaded)
//! still read and drop the body, bounded, so the client gets the answer on a clean connection
//! instead of a broken pipe mid-upload.

use crate::grpc::{ExportMetricsServiceResponse, ExportTraceServiceResponse, RpcStatus};
use crate::pipeline::{IngestError, METRICS_NOT_CONFIGURED, Pipeline, Transport};
use crate::shed::{Reservation, ShedReason};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use prost::Message;
use slogate_core::Recorder;
use std::sync::Arc;
use std::time::Duration;

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// Settings of the OTLP/HTTP receiver beyond the pipeline's limits.
#[derive(Debug, Clone, Copy)]
pub struct HttpOptions {
    /// A request body must have fully arrived this long after its head; else 408.
    pub body_read_timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            body_read_timeout: Duration::from_secs(30),
        }
    }
}

/// What the handlers share.
struct Receiver<R: Recorder> {
    pipeline: Arc<Pipeline<R>>,
    options: HttpOptions,
}

/// The router for the OTLP/HTTP port, with the default [`HttpOptions`].
pub fn router<R: Recorder>(pipeline: Arc<Pipeline<R>>) -> Router {
    router_with(pipeline, HttpOptions::default())
}

/// The router for the OTLP/HTTP port.
pub fn router_with<R: Recorder>(pipeline: Arc<Pipeline<R>>, options: HttpOptions) -> Router {
    Router::new()
        .route("/v1/traces", post(export::<R>))
        .route("/v1/metrics", post(export_metrics::<R>))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: OTLP/HTTP serves POST /v1/traces and POST /v1/metrics\n",
            )
        })
        .with_state(Arc::new(Receiver { pipeline, options }))
}

async fn export<R: Recorder>(
    State(rx): State<Arc<Receiver<R>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    let pipeline = &rx.pipeline;
    let r = receive(&rx, &headers, body, |bytes, json| {
        pipeline.process(bytes, json)
    })
    .await;
    pipeline.finish(r.transport, started, &r.result);
    let json = r.json;
    match &r.result {
        Ok(tally) => {
            let resp = ExportTraceServiceResponse::from_tally(tally);
            if json {
                let body = match &resp.partial_success {
                    // int64 fields are strings in the proto3 JSON mapping.
                    Some(p) => {
                        serde_json::json!({"partialSuccess": {"rejectedSpans": p.rejected_spans.to_string(), "errorMessage": p.error_message}})
                    }
                    None => serde_json::json!({}),
                };
                ([(header::CONTENT_TYPE, JSON)], body.to_string()).into_response()
            } else {
                ([(header::CONTENT_TYPE, PROTOBUF)], resp.encode_to_vec()).into_response()
            }
        }
        Err(e) => r.refusal(e),
    }
}

async fn export_metrics<R: Recorder>(
    State(rx): State<Arc<Receiver<R>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    let pipeline = &rx.pipeline;
    if !pipeline.metrics_enabled() {
        let json = content_type(&headers) == Some(JSON);
        let drained = drain(body, &rx).await;
        let resp = error_response(&IngestError::NotConfigured(METRICS_NOT_CONFIGURED), json);
        return if drained { resp } else { close(resp) };
    }
    let r = receive(&rx, &headers, body, |bytes, json| {
        pipeline.process_metrics(bytes, json)
    })
    .await;
    pipeline.finish_metrics(r.transport, started, &r.result);
    let json = r.json;
    match &r.result {
        Ok(tally) => {
            let resp = ExportMetricsServiceResponse::from_tally(tally);
            if json {
                let body = match &resp.partial_success {
                    // int64 fields are strings in the proto3 JSON mapping.
                    Some(p) => serde_json::json!({"partialSuccess": {
                        "rejectedDataPoints": p.rejected_data_points.to_string(),
                        "errorMessage": p.error_message,
                    }}),
                    None => serde_json::json!({}),
                };
                ([(header::CONTENT_TYPE, JSON)], body.to_string()).into_response()
            } else {
                ([(header::CONTENT_TYPE, PROTOBUF)], resp.encode_to_vec()).into_response()
            }
        }
        Err(e) => r.refusal(e),
    }
}

/// What both exports share: the content type, the body within its limits and deadline, an
/// in-flight slot, then `process` on the (decompressed) body.
async fn receive<R: Recorder, T>(
    rx: &Receiver<R>,
    headers: &HeaderMap,
    body: Body,
    process: impl FnOnce(&[u8], bool) -> Result<T, IngestError>,
) -> Received<T> {
    let pipeline = &rx.pipeline;
    let limit = pipeline.limits.max_request_bytes;
    let mut r = Received {
        transport: Transport::HttpProtobuf,
        json: false,
        result: Err(IngestError::Internal),
        closing: false,
        timed_out: None,
    };
    r.json = match content_type(headers) {
        Some(PROTOBUF) => false,
        Some(JSON) => true,
        other => {
            r.result = Err(IngestError::Unsupported(format!(
                "content type {:?}: send application/x-protobuf or application/json",
                other.unwrap_or("")
            )));
            r.closing = !drain(body, rx).await;
            return r;
        }
    };
    if r.json {
        r.transport = Transport::HttpJson;
    }
    // Already overloaded: the body is read and dropped rather than buffered, and the 503 goes
    // out once it has been, on a connection the client can still read from.
    if let Err(e) = pipeline.refuse_early() {
        r.result = Err(e);
        r.closing = !drain(body, rx).await;
        return r;
    }
    let deadline = rx.options.body_read_timeout;
    let mut budget = pipeline.reservation();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .unwrap_or(0);
    let read = read_body(body, limit, declared, &mut budget);
    let raw = match tokio::time::timeout(deadline, read).await {
        Ok(Ok(raw)) => raw,
        Ok(Err(e)) => {
            r.result = Err(match e {
                IngestError::Overloaded(_, reason) => pipeline.shed(reason),
                e => e,
            });
            return r;
        }
        Err(_) => {
            r.result = Err(IngestError::Malformed(format!(
                "the request body did not fully arrive within {deadline:?}"
            )));
            r.timed_out = Some(deadline);
            return r;
        }
    };
    // The slot is taken only now that the body is here: it covers decompressing and decoding.
    let json = r.json;
    r.result = match pipeline.admit() {
        Err(e) => Err(e),
        Ok(_permit) => decode(raw, headers, limit).and_then(|bytes| {
            // What gzip inflated to is held too.
            if headers.contains_key(header::CONTENT_ENCODING) && !budget.grow(bytes.len()) {
                return Err(pipeline.shed(ShedReason::InFlightBytes));
            }
            process(&bytes, json)
        }),
    };
    r
}

/// The outcome of [`receive`].
struct Received<T> {
    /// What the request counts under.
    transport: Transport,
    /// Whether to answer in JSON.
    json: bool,
    result: Result<T, IngestError>,
    /// The body was not read to its end: the connection closes after the answer.
    closing: bool,
    /// The body did not arrive within this.
    timed_out: Option<Duration>,
}

impl<T> Received<T> {
    /// The answer to a refused request.
    fn refusal(&self, err: &IngestError) -> Response {
        if let Some(deadline) = self.timed_out {
            let status = RpcStatus {
                code: tonic::Code::DeadlineExceeded as i32,
                message: err.to_string(),
                details: Vec::new(),
            };
            let mut resp = status_body(&status, self.json);
            *resp.status_mut() = StatusCode::REQUEST_TIMEOUT;
            tracing::debug!(deadline = ?deadline, "an OTLP/HTTP request body arrived too slowly");
            return close(resp);
        }
        let resp = error_response(err, self.json);
        if self.closing { close(resp) } else { resp }
    }
}

/// Asks hyper to close the connection after `resp`.
fn close(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

fn content_type(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = v.split(';').next().unwrap_or("").trim();
    [PROTOBUF, JSON]
        .into_iter()
        .find(|known| essence.eq_ignore_ascii_case(known))
        .or(Some(essence))
}

/// Past the limit, up to this many times the limit is still read and discarded, so the client
/// gets its 413 on a clean connection instead of a reset mid-upload; beyond it the connection
/// is dropped.
const DRAIN_FACTOR: usize = 8;

/// Reads the body of a request that is refused anyway and drops it: up to `max_request_bytes`
/// within `body_read_timeout`. Returns whether the body was read to its end (else the
/// connection should close after the answer).
async fn drain<R: Recorder>(body: Body, rx: &Receiver<R>) -> bool {
    let cap = rx.pipeline.limits.max_request_bytes;
    let read = async move {
        let mut body = body;
        let mut read = 0usize;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return false;
            };
            if let Some(data) = frame.data_ref() {
                read += data.len();
                if read > cap {
                    return false;
                }
            }
        }
        true
    };
    tokio::time::timeout(rx.options.body_read_timeout, read)
        .await
        .unwrap_or(false)
}

/// Reads the body, up to `limit` bytes (see [`DRAIN_FACTOR`] for what is over), each byte
/// taken from `budget` as it arrives. A body the budget cannot hold is read to its end and
/// discarded, then refused as overload (uncounted: the caller counts it), so the client reads
/// its 503 on a clean connection.
/// `declared` (the Content-Length, or 0) sizes the buffer, and its share is taken at once, so a
/// body is buffered without reallocating.
async fn read_body(
    body: Body,
    limit: usize,
    declared: usize,
    budget: &mut Reservation,
) -> Result<Bytes, IngestError> {
    let mut body = body;
    let declared = declared.min(limit);
    let mut refused = !budget.grow(declared);
    let mut reserved = if refused { 0 } else { declared };
    let mut buf = bytes::BytesMut::with_capacity(reserved);
    let mut over = false;
    let mut discarded = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| IngestError::Malformed(format!("could not read the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let beyond = (buf.len() + data.len()).saturating_sub(reserved);
        if !over && !refused && beyond > 0 {
            if budget.grow(beyond) {
                reserved += beyond;
            } else {
                refused = true;
                buf = bytes::BytesMut::new();
                budget.release();
            }
        }
        if over || refused || buf.len() + data.len() > limit {
            over |= !refused;
            discarded += data.len();
            if discarded > DRAIN_FACTOR * limit {
                break;
            }
            continue;
        }
        buf.extend_from_slice(&data);
    }
    if refused {
        return Err(IngestError::Overloaded(
            Duration::ZERO,
            ShedReason::InFlightBytes,
        ));
    }
    if over {
        return Err(IngestError::TooLarge {
            limit,
            inflated: false,
        });
    }
    Ok(buf.freeze())
}

/// The body as sent, or inflated from gzip up to `limit` bytes of output.
fn decode(raw: Bytes, headers: &HeaderMap, limit: usize) -> Result<Bytes, IngestError> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "" | "identity" => Ok(raw),
        "gzip" => crate::pipeline::gunzip(&raw, limit, "gzip body").map(Bytes::from),
        other => Err(IngestError::Unsupported(format!(
            "content encoding {other:?}: send gzip or no encoding"
        ))),
    }
}

/// A `google.rpc.Status` body, protobuf or JSON.
fn status_body(status: &RpcStatus, json: bool) -> Response {
    if json {
        let body = serde_json::json!({"code": status.code, "message": status.message});
        ([(header::CONTENT_TYPE, JSON)], body.to_string()).into_response()
    } else {
        ([(header::CONTENT_TYPE, PROTOBUF)], status.encode_to_vec()).into_response()
    }
}

fn error_response(err: &IngestError, json: bool) -> Response {
    let status = RpcStatus {
        code: err.grpc_code() as i32,
        message: err.to_string(),
        details: Vec::new(),
    };
    let mut resp = status_body(&status, json);
    *resp.status_mut() = err.http_status();
    if let IngestError::Overloaded(delay, _) = err {
        let secs = delay.as_secs().max(1);
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IngestLimits, IngestStats};
    use slogate_core::{Observation, ObservationWriter};
    use std::time::Instant;
    use tower::ServiceExt;

    struct Nothing;
    impl ObservationWriter for Nothing {
        fn record(&mut self, _obs: &Observation<'_>) {}
    }
    impl Recorder for Nothing {
        type Writer<'a> = Nothing;
        fn writer(&self) -> Nothing {
            Nothing
        }
    }

    /// A request body fed from a channel, one frame per message.
    struct Fed(tokio::sync::mpsc::Receiver<Bytes>);
    impl http_body::Body for Fed {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            self.0
                .poll_recv(cx)
                .map(|b| b.map(|b| Ok(http_body::Frame::data(b))))
        }
    }

    /// One in-flight slot, a 64 KiB limit, a 300 ms body deadline.
    fn receiver() -> (Arc<Pipeline<Nothing>>, Router) {
        let limits = IngestLimits {
            max_request_bytes: 64 << 10,
            max_inflight_requests: 1,
            retry_after: Duration::from_secs(2),
            ..IngestLimits::default()
        };
        let stats = Arc::new(IngestStats::default());
        let p = Arc::new(Pipeline::new(
            Arc::new(Nothing),
            Default::default(),
            limits,
            stats,
        ));
        let options = HttpOptions {
            body_read_timeout: Duration::from_millis(300),
        };
        (p.clone(), router_with(p, options))
    }

    fn request(content_type: &str, body: Fed) -> http::Request<Body> {
        http::Request::post("/v1/traces")
            .header("content-type", content_type)
            .body(Body::new(body))
            .unwrap()
    }

    #[tokio::test]
    async fn a_trickling_body_holds_no_slot_and_is_answered_408_at_its_deadline() {
        let (pipeline, router) = receiver();
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(Bytes::from_static(b"\x0a")).await.unwrap();
        let started = Instant::now();
        let answer = tokio::spawn(router.oneshot(request(PROTOBUF, Fed(rx))));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            pipeline.admit().is_ok(),
            "the only slot is free while the body arrives"
        );
        let resp = answer.await.unwrap().unwrap();
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(resp.headers()[header::CONNECTION], "close");
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let status = RpcStatus::decode(&body[..]).unwrap();
        assert_eq!(status.code, tonic::Code::DeadlineExceeded as i32);
        assert!(
            status.message.contains("did not fully arrive"),
            "{status:?}"
        );
        drop(tx);
    }

    /// Refusals decided before the body is read still read it to its end (bounded), so the
    /// client's upload completes and it reads the answer instead of a broken pipe.
    #[tokio::test]
    async fn early_refusals_read_the_body_first() {
        let check = |content_type: &'static str, hold_slot: bool, want: StatusCode| async move {
            let (pipeline, router) = receiver();
            let held = hold_slot.then(|| pipeline.admit().unwrap());
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            let upload = tokio::spawn(async move {
                for _ in 0..8 {
                    tx.send(Bytes::from(vec![0u8; 4096])).await.unwrap();
                }
            });
            let resp = router
                .oneshot(request(content_type, Fed(rx)))
                .await
                .unwrap();
            assert_eq!(resp.status(), want, "{content_type}");
            // Had the body been dropped unread, a send would have failed and panicked.
            upload.await.expect("the whole body was read");
            assert!(!resp.headers().contains_key(header::CONNECTION));
            drop(held);
            resp
        };
        let resp = check(PROTOBUF, true, StatusCode::SERVICE_UNAVAILABLE).await;
        assert_eq!(resp.headers()[header::RETRY_AFTER], "2");
        check("text/plain", false, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    }
}
