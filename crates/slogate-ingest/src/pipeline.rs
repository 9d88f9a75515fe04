//! The transport-independent part of a receiver: limits, load shedding, decode, record, count.

use crate::extract::{ExtractConfig, SpanLimits, Tally};
use crate::metrics::MetricTally;
use crate::shed::{BodyBudget, Reservation, ShedReason, Shedding};
use crate::stats::{IngestStats, RequestOutcome};
use crate::{json, wire};
use slogate_core::{MetricSink, Observation, ObservationWriter, Recorder};
use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Grpc = 0,
    HttpProtobuf = 1,
    HttpJson = 2,
}

impl Transport {
    pub const ALL: [Transport; 3] = [
        Transport::Grpc,
        Transport::HttpProtobuf,
        Transport::HttpJson,
    ];
    pub fn label(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::HttpProtobuf => "http_protobuf",
            Transport::HttpJson => "http_json",
        }
    }
}

#[derive(Debug, Clone)]
pub struct IngestLimits {
    /// Largest request body accepted, compressed and after decompression alike.
    pub max_request_bytes: usize,
    /// Requests decoded at the same time across both receivers; more are refused.
    pub max_inflight_requests: usize,
    /// Bytes of request bodies (as received, and inflated) held at once across both receivers;
    /// a body that does not fit is refused as overload.
    pub max_inflight_bytes: usize,
    /// The delay suggested to clients that were refused for overload.
    pub retry_after: Duration,
    /// The resident memory the process must stay under (the server's watchdog sheds ingest
    /// from 85 % of it); `None` derives it from the cgroup or the host, `Some(0)` turns it off.
    pub memory_limit_bytes: Option<u64>,
    /// The retry drill: this fraction of requests is refused as if overloaded (0 = off).
    pub drill_refuse_fraction: f64,
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            max_request_bytes: 64 << 20,
            max_inflight_requests: 256,
            max_inflight_bytes: 256 << 20,
            retry_after: Duration::from_secs(1),
            memory_limit_bytes: None,
            drill_refuse_fraction: 0.0,
        }
    }
}

/// Why a request was refused as a whole. Maps to one gRPC code and one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Malformed(String),
    #[error("request body exceeds the {limit}-byte limit{}", if *inflated { " after decompression" } else { "" })]
    TooLarge { limit: usize, inflated: bool },
    #[error("unsupported {0}")]
    Unsupported(String),
    #[error("{cause}; retry after {delay:?}", cause = overload_cause(*.1), delay = .0)]
    Overloaded(Duration, ShedReason),
    #[error("internal error while processing the request")]
    Internal,
    /// The signal has no store in this server (metrics without a metric sink).
    #[error("{0}")]
    NotConfigured(&'static str),
}

fn overload_cause(reason: ShedReason) -> &'static str {
    match reason {
        ShedReason::InFlight => "too many export requests in flight",
        ShedReason::Memory => "the server is over its memory limit",
        ShedReason::Drill => "refused by the retry drill (ingest.drill_refuse_fraction)",
        ShedReason::InFlightBytes => "too many request bytes in flight",
    }
}

impl IngestError {
    pub(crate) fn outcome(&self) -> RequestOutcome {
        match self {
            IngestError::Malformed(_) => RequestOutcome::Malformed,
            IngestError::TooLarge { .. } => RequestOutcome::TooLarge,
            IngestError::Unsupported(_) => RequestOutcome::Unsupported,
            IngestError::Overloaded(..) => RequestOutcome::Overloaded,
            IngestError::Internal => RequestOutcome::Internal,
            IngestError::NotConfigured(_) => RequestOutcome::Unsupported,
        }
    }
    /// The one mapping from error kind to gRPC code.
    pub fn grpc_code(&self) -> tonic::Code {
        match self {
            IngestError::Malformed(_) | IngestError::Unsupported(_) => tonic::Code::InvalidArgument,
            IngestError::TooLarge { .. } => tonic::Code::ResourceExhausted,
            IngestError::Overloaded(..) => tonic::Code::Unavailable,
            IngestError::Internal => tonic::Code::Internal,
            IngestError::NotConfigured(_) => tonic::Code::Unimplemented,
        }
    }
    /// The one mapping from error kind to HTTP status.
    pub fn http_status(&self) -> http::StatusCode {
        match self {
            IngestError::Malformed(_) => http::StatusCode::BAD_REQUEST,
            IngestError::TooLarge { .. } => http::StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::Unsupported(_) => http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IngestError::Overloaded(..) => http::StatusCode::SERVICE_UNAVAILABLE,
            IngestError::Internal => http::StatusCode::INTERNAL_SERVER_ERROR,
            IngestError::NotConfigured(_) => http::StatusCode::NOT_FOUND,
        }
    }
}

/// Inflates a gzip body for either receiver, with a hard cap on the output: a gzip bomb stops
/// at `limit + 1` bytes and never allocates past it. `what` names the body in the error
/// ("gzip body", "gzip message"). Public for the fuzz targets.
pub fn gunzip(raw: &[u8], limit: usize, what: &str) -> Result<Vec<u8>, IngestError> {
    use std::io::Read;
    let mut out = Vec::with_capacity(raw.len().saturating_mul(4).min(limit));
    flate2::read::GzDecoder::new(raw)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| IngestError::Malformed(format!("corrupt {what}: {e}")))?;
    if out.len() > limit {
        return Err(IngestError::TooLarge {
            limit,
            inflated: true,
        });
    }
    Ok(out)
}

/// Shared by both receivers: the recorder, the extraction rules, the limits and the counters.
pub struct Pipeline<R: Recorder> {
    pub recorder: Arc<R>,
    pub extract: ExtractConfig,
    pub limits: IngestLimits,
    pub stats: Arc<IngestStats>,
    inflight: Arc<Semaphore>,
    shedding: Arc<Shedding>,
    bodies: BodyBudget,
    span_limits: SpanLimits,
    metrics: Option<Arc<dyn MetricSink>>,
}

/// What the metrics receivers answer when the pipeline has no metric sink.
pub(crate) const METRICS_NOT_CONFIGURED: &str =
    "metrics ingest is not enabled on this server: it has no metric store";

thread_local! {
    /// A reusable observation buffer per thread, so a request does not allocate one.
    static OBS_POOL: RefCell<Vec<Observation<'static>>> = const { RefCell::new(Vec::new()) };
}

/// Buffers bigger than this are not kept for reuse, so one huge request does not pin memory.
const POOL_KEEP_CAPACITY: usize = 1 << 16;

/// Runs `f` with an empty observation vector borrowed from the thread's pool.
fn with_observations<'b, T>(f: impl FnOnce(&mut Vec<Observation<'b>>) -> T) -> T {
    let pooled = OBS_POOL.with(|p| std::mem::take(&mut *p.borrow_mut()));
    // Re-typing an empty vector through an in-place collect keeps its allocation (same size and
    // alignment) without unsafe code: the lifetime only changes at compile time.
    let mut buf: Vec<Observation<'b>> = pooled
        .into_iter()
        .map(|_| unreachable!("pool is empty"))
        .collect();
    let out = f(&mut buf);
    buf.clear();
    if buf.capacity() <= POOL_KEEP_CAPACITY {
        let back: Vec<Observation<'static>> =
            buf.into_iter().map(|_| unreachable!("cleared")).collect();
        OBS_POOL.with(|p| *p.borrow_mut() = back);
    }
    out
}

impl<R: Recorder> Pipeline<R> {
    pub fn new(
        recorder: Arc<R>,
        extract: ExtractConfig,
        limits: IngestLimits,
        stats: Arc<IngestStats>,
    ) -> Self {
        let inflight = Arc::new(Semaphore::new(limits.max_inflight_requests.max(1)));
        let shedding = Arc::new(Shedding::default());
        shedding.set_drill_fraction(limits.drill_refuse_fraction);
        let bodies = BodyBudget::new(limits.max_inflight_bytes);
        Pipeline {
            recorder,
            extract,
            limits,
            stats,
            inflight,
            shedding,
            bodies,
            span_limits: SpanLimits::default(),
            metrics: None,
        }
    }

    /// Enables metrics ingest: valid data points go to `sink`. Without one, the metrics
    /// receivers answer gRPC `UNIMPLEMENTED` and HTTP 404.
    pub fn with_metrics(mut self, sink: Arc<dyn MetricSink>) -> Self {
        self.metrics = Some(sink);
        self
    }

    /// Whether metrics ingest is enabled.
    pub fn metrics_enabled(&self) -> bool {
        self.metrics.is_some()
    }

    /// Sets the per-span plausibility limits (the default is [`SpanLimits::DEFAULT`]).
    pub fn with_span_limits(mut self, limits: SpanLimits) -> Self {
        self.span_limits = limits;
        self
    }

    /// The per-span plausibility limits in force.
    pub fn span_limits(&self) -> &SpanLimits {
        &self.span_limits
    }

    /// The shedding switches (memory pressure, the retry drill) this pipeline's admission
    /// check reads.
    pub fn shedding(&self) -> &Arc<Shedding> {
        &self.shedding
    }

    /// Takes an in-flight slot or refuses the request: under memory pressure, for the retry
    /// drill, or when every slot is taken. Each refusal is counted with its reason.
    pub fn admit(&self) -> Result<OwnedSemaphorePermit, IngestError> {
        if let Some(reason) = self.shedding.refuse(true) {
            return Err(self.shed(reason));
        }
        self.inflight
            .clone()
            .try_acquire_owned()
            .map_err(|_| self.shed(ShedReason::InFlight))
    }

    /// Whether a request would be refused now, before its body is read: under memory pressure
    /// or with every slot taken. Takes no slot and does not draw for the drill, which
    /// [`Pipeline::admit`] does once the body is here.
    pub fn refuse_early(&self) -> Result<(), IngestError> {
        if let Some(reason) = self.shedding.refuse(false) {
            return Err(self.shed(reason));
        }
        if self.inflight.available_permits() == 0 {
            return Err(self.shed(ShedReason::InFlight));
        }
        Ok(())
    }

    /// An empty share of the body budget for one request: grow it as bytes arrive, and refuse
    /// with [`Pipeline::shed`]`(ShedReason::InFlightBytes)` when it cannot grow.
    pub fn reservation(&self) -> Reservation {
        self.bodies.reservation()
    }

    /// Counts a refusal for overload and returns its error.
    pub fn shed(&self, reason: ShedReason) -> IngestError {
        self.stats.count_shed(reason);
        IngestError::Overloaded(self.limits.retry_after, reason)
    }

    /// Decodes a protobuf or JSON body (already decompressed) and records it. Nothing is
    /// recorded unless the whole body decodes. A panic is caught and reported as `Internal`.
    pub fn process(&self, body: &[u8], json: bool) -> Result<Tally, IngestError> {
        let run = || {
            if json {
                let req = json::parse(body)
                    .map_err(|e| IngestError::Malformed(format!("invalid OTLP/JSON: {e}")))?;
                Ok(with_observations(|obs| {
                    let mut tally = Tally::default();
                    json::extract_request_with(
                        &req,
                        &self.extract,
                        &self.span_limits,
                        obs,
                        &mut tally,
                    );
                    self.record(obs);
                    tally
                }))
            } else {
                with_observations(|obs| {
                    let mut tally = Tally::default();
                    wire::decode_traces_with(
                        body,
                        &self.extract,
                        &self.span_limits,
                        obs,
                        &mut tally,
                    )
                    .map_err(|e| {
                        IngestError::Malformed(format!("invalid ExportTraceServiceRequest: {e}"))
                    })?;
                    self.record(obs);
                    Ok(tally)
                })
            }
        };
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|_| {
                tracing::error!("panic while processing an export request");
                Err(IngestError::Internal)
            });
        if let Ok(tally) = &result {
            self.stats.count_tally(tally);
        }
        result
    }

    /// Decodes an `ExportMetricsServiceRequest` body (protobuf or JSON, already decompressed) and
    /// hands its valid points to the metric sink. Nothing is recorded unless the whole body
    /// decodes. A panic is caught and reported as `Internal`. Per-reason rejections are counted
    /// here; per-transport point counts when the receiver finishes the request.
    pub fn process_metrics(&self, body: &[u8], json: bool) -> Result<MetricTally, IngestError> {
        let Some(sink) = self.metrics.as_deref() else {
            return Err(IngestError::NotConfigured(METRICS_NOT_CONFIGURED));
        };
        let run = || {
            let mut tally = MetricTally::default();
            if json {
                let req = crate::metrics::json::parse(body)
                    .map_err(|e| IngestError::Malformed(format!("invalid OTLP/JSON: {e}")))?;
                crate::metrics::json::record_request(&req, &self.extract, sink, &mut tally);
            } else {
                crate::metrics::wire::decode_metrics(body, &self.extract, sink, &mut tally)
                    .map_err(|e| {
                        IngestError::Malformed(format!("invalid ExportMetricsServiceRequest: {e}"))
                    })?;
            }
            Ok(tally)
        };
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|_| {
                tracing::error!("panic while processing a metrics export request");
                Err(IngestError::Internal)
            });
        if let Ok(tally) = &result {
            self.stats.count_metric_tally(tally);
        }
        result
    }

    fn record(&self, obs: &[Observation<'_>]) {
        if obs.is_empty() {
            return;
        }
        let mut writer = self.recorder.writer();
        for o in obs {
            writer.record(o);
        }
    }

    pub(crate) fn finish(
        &self,
        transport: Transport,
        started: std::time::Instant,
        result: &Result<Tally, IngestError>,
    ) {
        let outcome = match result {
            Ok(t) if t.total_rejected() > 0 => RequestOutcome::Partial,
            Ok(_) => RequestOutcome::Ok,
            Err(e) => e.outcome(),
        };
        self.stats
            .count_request(transport, outcome, started.elapsed());
        if let Err(e) = result {
            tracing::debug!(transport = transport.label(), error = %e, "export request refused");
        }
    }

    pub(crate) fn finish_metrics(
        &self,
        transport: Transport,
        started: std::time::Instant,
        result: &Result<MetricTally, IngestError>,
    ) {
        let outcome = match result {
            Ok(t) if t.total_rejected() > 0 => RequestOutcome::Partial,
            Ok(_) => RequestOutcome::Ok,
            Err(e) => e.outcome(),
        };
        self.stats.count_metric_request(
            transport,
            outcome,
            started.elapsed(),
            result.as_ref().ok(),
        );
        if let Err(e) = result {
            tracing::debug!(transport = transport.label(), error = %e, "metrics export request refused");
        }
    }
}
