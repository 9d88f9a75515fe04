//! slogate's own gRPC API (`proto/slogate/v1/verdict.proto`): `VerdictService` on the OTLP/gRPC
//! port. The messages are written out with prost's derive to match the .proto file field for
//! field; the integration tests call the service through stubs generated from that file.

use crate::engine::analysis::AnalysisRequest;
use crate::engine::gates::{CohortSummary, Gates, VerdictDoc};
use slogate_gate::{
    CriterionResult as GateCriterionResult, Decision as GateDecision, Verdict as GateVerdict,
};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::Status;

pub const EVALUATE_PATH: &str = "/slogate.v1.VerdictService/Evaluate";
pub const LIST_GATES_PATH: &str = "/slogate.v1.VerdictService/ListGates";

#[derive(Clone, PartialEq, prost::Message)]
pub struct EvaluateRequest {
    #[prost(string, tag = "1")]
    pub gate: String,
    #[prost(string, tag = "2")]
    pub phase: String,
    #[prost(map = "string, string", tag = "3")]
    pub canary: HashMap<String, String>,
    #[prost(map = "string, string", tag = "4")]
    pub baseline: HashMap<String, String>,
    #[prost(string, tag = "5")]
    pub analysis: String,
    #[prost(uint32, tag = "6")]
    pub looks: u32,
    #[prost(uint64, tag = "7")]
    pub interval_seconds: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Latency {
    #[prost(double, optional, tag = "1")]
    pub p50: Option<f64>,
    #[prost(double, optional, tag = "2")]
    pub p90: Option<f64>,
    #[prost(double, optional, tag = "3")]
    pub p95: Option<f64>,
    #[prost(double, optional, tag = "4")]
    pub p99: Option<f64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Cohort {
    #[prost(string, tag = "1")]
    pub selector: String,
    #[prost(uint64, tag = "2")]
    pub requests: u64,
    #[prost(uint64, tag = "3")]
    pub errors: u64,
    #[prost(double, optional, tag = "4")]
    pub error_rate: Option<f64>,
    #[prost(message, optional, tag = "5")]
    pub latency_ms: Option<Latency>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Criterion {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub metric: String,
    #[prost(int32, tag = "3")]
    pub result: i32,
    #[prost(double, optional, tag = "4")]
    pub observed: Option<f64>,
    #[prost(double, optional, tag = "5")]
    pub baseline: Option<f64>,
    #[prost(double, tag = "6")]
    pub threshold_pass: f64,
    #[prost(double, tag = "7")]
    pub threshold_fail: f64,
    #[prost(string, tag = "8")]
    pub comparison: String,
    #[prost(uint64, tag = "9")]
    pub canary_requests: u64,
    #[prost(uint64, tag = "10")]
    pub baseline_requests: u64,
    #[prost(string, tag = "11")]
    pub reason: String,
    #[prost(double, optional, tag = "12")]
    pub ci_lower: Option<f64>,
    #[prost(double, optional, tag = "13")]
    pub ci_upper: Option<f64>,
    #[prost(double, optional, tag = "14")]
    pub alpha: Option<f64>,
    #[prost(double, optional, tag = "15")]
    pub p_value: Option<f64>,
    #[prost(double, optional, tag = "16")]
    pub score: Option<f64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Verdict {
    #[prost(string, tag = "1")]
    pub gate: String,
    #[prost(string, tag = "2")]
    pub phase: String,
    #[prost(string, tag = "3")]
    pub evaluated_at: String,
    #[prost(uint64, tag = "4")]
    pub window_seconds: u64,
    #[prost(int32, tag = "5")]
    pub verdict: i32,
    #[prost(int32, tag = "6")]
    pub decision: i32,
    #[prost(message, optional, tag = "7")]
    pub canary: Option<Cohort>,
    #[prost(message, optional, tag = "8")]
    pub baseline: Option<Cohort>,
    #[prost(message, repeated, tag = "9")]
    pub criteria: Vec<Criterion>,
    #[prost(string, repeated, tag = "10")]
    pub reasons: Vec<String>,
    #[prost(message, optional, tag = "11")]
    pub analysis: Option<AnalysisLook>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AnalysisLook {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(uint32, tag = "2")]
    pub look: u32,
    #[prost(uint32, tag = "3")]
    pub looks: u32,
    #[prost(bool, tag = "4")]
    pub r#final: bool,
    #[prost(string, tag = "5")]
    pub data_since: String,
    #[prost(double, tag = "6")]
    pub information_fraction: f64,
    #[prost(double, tag = "7")]
    pub alpha: f64,
    #[prost(double, tag = "8")]
    pub spent: f64,
    #[prost(double, tag = "9")]
    pub spent_this_look: f64,
    #[prost(double, tag = "10")]
    pub boundary: f64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListGatesRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GateSummary {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub service: String,
    #[prost(uint64, tag = "3")]
    pub window_seconds: u64,
    #[prost(string, repeated, tag = "4")]
    pub phases: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListGatesResponse {
    #[prost(message, repeated, tag = "1")]
    pub gates: Vec<GateSummary>,
}

fn cohort(c: &CohortSummary) -> Cohort {
    Cohort {
        selector: c.selector.clone(),
        requests: c.requests,
        errors: c.errors,
        error_rate: c.error_rate,
        latency_ms: Some(Latency {
            p50: c.latency_ms.p50,
            p90: c.latency_ms.p90,
            p95: c.latency_ms.p95,
            p99: c.latency_ms.p99,
        }),
    }
}

/// Converts the verdict document; enum numbers follow verdict.proto.
pub fn to_proto(d: &VerdictDoc) -> Verdict {
    Verdict {
        gate: d.gate.clone(),
        phase: d.phase.clone(),
        evaluated_at: d.evaluated_at.clone(),
        window_seconds: d.window_seconds,
        verdict: match d.verdict {
            GateVerdict::Pass => 1,
            GateVerdict::Fail => 2,
            GateVerdict::Inconclusive => 3,
        },
        decision: match d.decision {
            GateDecision::Proceed => 1,
            GateDecision::Hold => 2,
            GateDecision::Rollback => 3,
        },
        canary: Some(cohort(&d.canary)),
        baseline: Some(cohort(&d.baseline)),
        criteria: d
            .criteria
            .iter()
            .map(|c| Criterion {
                name: c.name.clone(),
                metric: c.metric.clone(),
                result: match c.result {
                    GateCriterionResult::Pass => 1,
                    GateCriterionResult::Marginal => 2,
                    GateCriterionResult::Fail => 3,
                    GateCriterionResult::NoData => 4,
                },
                observed: c.observed,
                baseline: c.baseline,
                threshold_pass: c.threshold.pass,
                threshold_fail: c.threshold.fail,
                comparison: c.threshold.comparison.clone(),
                canary_requests: c.canary_requests,
                baseline_requests: c.baseline_requests,
                reason: c.reason.clone(),
                ci_lower: c.ci_lower,
                ci_upper: c.ci_upper,
                alpha: c.alpha,
                p_value: c.p_value,
                score: c.score.filter(|s| s.is_finite()),
            })
            .collect(),
        reasons: d.reasons.clone(),
        analysis: d.analysis.as_ref().map(|a| AnalysisLook {
            id: a.id.clone(),
            look: a.look.look,
            looks: a.look.looks,
            r#final: a.is_final,
            data_since: a.data_since.clone(),
            information_fraction: a.look.information_fraction,
            alpha: a.look.alpha,
            spent: a.look.spent,
            spent_this_look: a.look.spent_this_look,
            boundary: a.look.boundary,
        }),
    }
}

/// The tower service tonic routes `slogate.v1.VerdictService` calls to.
#[derive(Clone)]
pub struct VerdictServiceServer {
    gates: Arc<Gates>,
}

impl VerdictServiceServer {
    pub fn new(gates: Arc<Gates>) -> Self {
        VerdictServiceServer { gates }
    }
}

impl tonic::server::NamedService for VerdictServiceServer {
    const NAME: &'static str = "slogate.v1.VerdictService";
}

type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;

struct EvaluateSvc(Arc<Gates>);

impl tonic::server::UnaryService<EvaluateRequest> for EvaluateSvc {
    type Response = Verdict;
    type Future = BoxFut<Result<tonic::Response<Verdict>, Status>>;
    fn call(&mut self, request: tonic::Request<EvaluateRequest>) -> Self::Future {
        let gates = self.0.clone();
        Box::pin(async move {
            let r = request.into_inner();
            let canary: Vec<(String, String)> = r.canary.into_iter().collect();
            let baseline: Vec<(String, String)> = r.baseline.into_iter().collect();
            let phase = (!r.phase.is_empty()).then_some(r.phase.as_str());
            let analysis = (!r.analysis.is_empty()).then(|| AnalysisRequest {
                id: r.analysis.clone(),
                looks: (r.looks > 0).then_some(r.looks),
                interval_seconds: (r.interval_seconds > 0).then_some(r.interval_seconds),
            });
            gates
                .evaluate(&r.gate, phase, &canary, &baseline, analysis.as_ref())
                .map(|doc| tonic::Response::new(to_proto(&doc)))
                .map_err(|e| Status::new(super::gate_error_codes(&e).1, e.to_string()))
        })
    }
}

struct ListSvc(Arc<Gates>);

impl tonic::server::UnaryService<ListGatesRequest> for ListSvc {
    type Response = ListGatesResponse;
    type Future = BoxFut<Result<tonic::Response<ListGatesResponse>, Status>>;
    fn call(&mut self, _request: tonic::Request<ListGatesRequest>) -> Self::Future {
        let gates = self.0.clone();
        Box::pin(async move {
            let list = gates
                .configs()
                .iter()
                .map(|g| GateSummary {
                    name: g.name.clone(),
                    service: g.service.clone(),
                    window_seconds: g.phases[0].window_seconds,
                    phases: g.phases.iter().map(|p| p.name.clone()).collect(),
                })
                .collect();
            Ok(tonic::Response::new(ListGatesResponse { gates: list }))
        })
    }
}

impl<B> tower::Service<http::Request<B>> for VerdictServiceServer
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFut<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let gates = self.gates.clone();
        Box::pin(async move {
            let resp = match req.uri().path() {
                EVALUATE_PATH => {
                    let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<
                        Verdict,
                        EvaluateRequest,
                    >::default())
                    .max_decoding_message_size(1 << 20);
                    grpc.unary(EvaluateSvc(gates), req).await
                }
                LIST_GATES_PATH => {
                    let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<
                        ListGatesResponse,
                        ListGatesRequest,
                    >::default())
                    .max_decoding_message_size(1 << 20);
                    grpc.unary(ListSvc(gates), req).await
                }
                other => Status::unimplemented(format!("unknown method {other}")).into_http(),
            };
            Ok(resp)
        })
    }
}
