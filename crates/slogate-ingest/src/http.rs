//! OTLP/HTTP receiver: `POST /v1/traces` and `POST /v1/metrics`, protobuf or JSON by
//! Content-Type, optional gzip.
//!
//! The response has the request's Content-Type. Errors carry a `google.rpc.Status` body
//! (protobuf or JSON to match); overload answers 503 with `Retry-After`. `/v1/metrics` answers
//! 404 when the pipeline has no metric sink.

use crate::grpc::{ExportMetricsServiceResponse, ExportTraceServiceResponse, RpcStatus};
use crate::pipeline::{IngestError, METRICS_NOT_CONFIGURED, Pipeline, Transport};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use prost::Message;
use slogate_core::Recorder;
use std::sync::Arc;

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// The router for the OTLP/HTTP port.
pub fn router<R: Recorder>(pipeline: Arc<Pipeline<R>>) -> Router {
    Router::new()
        .route("/v1/traces", post(export::<R>))
        .route("/v1/metrics", post(export_metrics::<R>))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: OTLP/HTTP serves POST /v1/traces and POST /v1/metrics\n",
            )
        })
        .with_state(pipeline)
}

async fn export<R: Recorder>(
    State(pipeline): State<Arc<Pipeline<R>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    let (transport, json, result) = receive(&pipeline, &headers, body, |bytes, json| {
        pipeline.process(bytes, json)
    })
    .await;
    pipeline.finish(transport, started, &result);
    match result {
        Ok(tally) => {
            let resp = ExportTraceServiceResponse::from_tally(&tally);
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
        Err(e) => error_response(&e, json),
    }
}

async fn export_metrics<R: Recorder>(
    State(pipeline): State<Arc<Pipeline<R>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    if !pipeline.metrics_enabled() {
        let json = content_type(&headers) == Some(JSON);
        return error_response(&IngestError::NotConfigured(METRICS_NOT_CONFIGURED), json);
    }
    let (transport, json, result) = receive(&pipeline, &headers, body, |bytes, json| {
        pipeline.process_metrics(bytes, json)
    })
    .await;
    pipeline.finish_metrics(transport, started, &result);
    match result {
        Ok(tally) => {
            let resp = ExportMetricsServiceResponse::from_tally(&tally);
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
        Err(e) => error_response(&e, json),
    }
}

/// What both exports share: the content type, an in-flight slot, the body within its limits,
/// then `process` on it. Returns the transport the request counts under, whether to answer in
/// JSON, and the outcome (an unsupported content type is an error like the others).
async fn receive<R: Recorder, T>(
    pipeline: &Pipeline<R>,
    headers: &HeaderMap,
    body: Body,
    process: impl FnOnce(&[u8], bool) -> Result<T, IngestError>,
) -> (Transport, bool, Result<T, IngestError>) {
    let json = match content_type(headers) {
        Some(PROTOBUF) => false,
        Some(JSON) => true,
        other => {
            let err = IngestError::Unsupported(format!(
                "content type {:?}: send application/x-protobuf or application/json",
                other.unwrap_or("")
            ));
            return (Transport::HttpProtobuf, false, Err(err));
        }
    };
    let transport = if json {
        Transport::HttpJson
    } else {
        Transport::HttpProtobuf
    };
    let result = match pipeline.admit() {
        Err(e) => Err(e),
        Ok(_permit) => match read_body(body, headers, pipeline.limits.max_request_bytes).await {
            Ok(bytes) => process(&bytes, json),
            Err(e) => Err(e),
        },
    };
    (transport, json, result)
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

/// Reads the body up to `limit` bytes, then inflates gzip up to `limit` bytes of output.
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, IngestError> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    let mut over = false;
    let mut discarded = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| IngestError::Malformed(format!("could not read the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if over || buf.len() + data.len() > limit {
            over = true;
            discarded += data.len();
            if discarded > DRAIN_FACTOR * limit {
                break;
            }
            continue;
        }
        buf.extend_from_slice(&data);
    }
    if over {
        return Err(IngestError::TooLarge {
            limit,
            inflated: false,
        });
    }
    let raw = buf.freeze();
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

fn error_response(err: &IngestError, json: bool) -> Response {
    let status = RpcStatus {
        code: err.grpc_code() as i32,
        message: err.to_string(),
        details: Vec::new(),
    };
    let mut resp = if json {
        let body = serde_json::json!({"code": status.code, "message": status.message});
        ([(header::CONTENT_TYPE, JSON)], body.to_string()).into_response()
    } else {
        ([(header::CONTENT_TYPE, PROTOBUF)], status.encode_to_vec()).into_response()
    };
    *resp.status_mut() = err.http_status();
    if let IngestError::Overloaded(delay) = err {
        let secs = delay.as_secs().max(1);
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}
