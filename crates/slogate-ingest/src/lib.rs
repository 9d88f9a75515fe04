//! OTLP trace and metrics ingest: the gRPC and HTTP receivers, the protobuf fast paths,
//! OTLP/JSON, the span → observation rules and the data point validation rules. Only this crate
//! knows OTLP.
//!
//! Design decisions:
//! - **Wire-level decoding.** [`wire`] walks the protobuf bytes and reads only the fields the
//!   extraction rules need; observations borrow from the request buffer, so a span costs no
//!   allocation. OTLP/JSON ([`json`]) is the slow path and shares the rules in [`extract`].
//! - **Metrics the same way.** [`metrics::wire`] walks `ExportMetricsServiceRequest` bytes
//!   into a per-thread [`metrics`] batch (bucket arrays, quantiles and rendered attributes in
//!   reusable arenas, strings borrowed from the request), so a warm decoder allocates nothing;
//!   [`metrics::json`] is the slow path into the same batch and rules. Each valid point goes to
//!   a [`slogate_core::MetricSink`] set with [`Pipeline::with_metrics`]; without one the
//!   metrics receivers answer gRPC `UNIMPLEMENTED` and HTTP 404. Metrics and traces share the
//!   body limits and the in-flight slots.
//! - **A request is all or nothing on structure, per span or point on content.** Malformed
//!   protobuf or JSON rejects the whole request before anything is recorded (metrics are fully
//!   decoded into their batch before the sink sees a point); invalid spans (bad ids, end before
//!   start, longer than [`SpanLimits::max_duration`], no service, a dimension value that is not
//!   valid UTF-8) and invalid data points (NaN or infinite numbers, inconsistent or too many
//!   buckets, no time, no metric name, no service, see [`PointReject`]) are rejected one by one
//!   and reported in `partial_success`; so are points the sink refuses.
//! - **Bounded arrays.** Bucket and quantile arrays are capped while they are read, never
//!   reserved from a client's length prefix; a packed array past its cap rejects its point
//!   unread.
//! - **Dimension values are valid UTF-8.** Series keys end each dimension with `0xFF`, a byte
//!   UTF-8 never holds; both decoders keep strings as raw bytes and the shared rules reject a
//!   span whose service, env, version, operation or extra value is not UTF-8, so no value can
//!   carry a separator into another series. The check is an OR over the (short) values and the
//!   resource's values are checked once per resource. Metric points carry `&str` throughout: a
//!   point whose resource dimensions, instance, metric name, unit or attributes are not UTF-8
//!   is rejected.
//! - **Protobuf as the spec parses it.** Unknown fields are skipped whatever their wire type,
//!   groups included (to prost's nesting limit), and repeated or conflicting message fields
//!   merge as protobuf merges them: whatever prost accepts, the fast path accepts and reads
//!   alike (checked against prost by the differential tests and the `wire_decoder` fuzz target).
//! - **Bounded.** Request bodies are capped before and after decompression; at most
//!   `max_inflight_requests` requests are decoded at once, and the next one is refused with the
//!   signal clients retry on (gRPC `UNAVAILABLE` with `RetryInfo`, HTTP 503 with `Retry-After`).
//!   The same refusal sheds load under memory pressure and in the retry drill ([`shed`]); every
//!   refusal is counted with its reason.
//! - **Status codes follow the OTLP spec**, not the library defaults: tonic's `OUT_OF_RANGE` for
//!   an oversized message becomes `RESOURCE_EXHAUSTED`, a corrupt gzip stream `INVALID_ARGUMENT`.

pub mod extract;
pub mod grpc;
pub mod http;
pub mod json;
pub mod metrics;
mod pipeline;
pub mod shed;
mod stats;
pub mod wire;

pub use extract::SpanLimits;
pub use metrics::{MetricTally, PointReject};
pub use pipeline::{IngestError, IngestLimits, Pipeline, Transport, gunzip};
pub use shed::{ShedReason, Shedding};
pub use stats::{IngestStats, LatencyHistogram, PointOutcome, RequestOutcome};
