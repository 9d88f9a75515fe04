//! The calibrated judge through the live server: the load generator streams a baseline and
//! several canaries over OTLP/gRPC for a whole (short) rollout step while Argo's own jsonpath and
//! expr libraries poll the verdict endpoint through `deploy/argo/analysis-template.yaml`, one look
//! per interval. The gate is the one the decision-quality bench simulates
//! (`crates/slogate-gate/benches/decision_quality.md`) and the example config recommends.

use crate::gates::argo_contract_phase;
use crate::harness::Server;
use slogate_load::{CohortSpec, LatencyDist, Rate, Scenario, Target};
use std::time::{Duration, Instant};

const LOOKS: u32 = 6;
const INTERVAL_S: u64 = 2;

fn config() -> String {
    format!(
        "
gates:
  - name: checkout
    service: checkout
    min_requests: 100
    baseline: {{version: v1}}
    analysis: {{false_rollback_rate: 0.01, looks: {LOOKS}, interval: {INTERVAL_S}s}}
    criteria:
      - {{name: p95-vs-baseline, metric: latency_p95, compare: ratio, pass: 1.1, fail: 1.0, confidence: 0.95}}
      - {{name: p99-vs-baseline, metric: latency_p99, compare: ratio, pass: 1.2, fail: 1.0, confidence: 0.95}}
      - {{name: latency-shift, test: mann_whitney, confidence: 0.95, max_effect: 0.51}}
      - {{name: errors-vs-baseline, test: two_proportion, confidence: 0.95, max_difference: 0.001}}
"
    )
}

fn cohort(version: &str, weight: f64, median_ms: f64, sigma: f64, error_rate: f64) -> CohortSpec {
    let mut c = CohortSpec::new(
        "checkout",
        version,
        LatencyDist::lognormal(median_ms, sigma),
    );
    c.weight = weight;
    c.error_rate = error_rate;
    c
}

#[test]
fn a_rollout_step_polled_by_argo_decides_like_the_simulation() {
    let server = Server::start(&config());
    let target = Target {
        endpoint: format!("http://127.0.0.1:{}", server.grpc),
        ..Target::default()
    };
    // 10,000 spans/s for the whole step: the baseline takes 40 %, each canary 15 %.
    let cohorts = vec![
        cohort("v1", 0.40, 50.0, 0.6, 0.005),
        cohort("same", 0.15, 50.0, 0.6, 0.005),
        cohort("slow", 0.15, 75.0, 0.6, 0.005),
        cohort("wide", 0.15, 50.0, 0.9, 0.005),
        cohort("errors", 0.15, 50.0, 0.6, 0.03),
    ];
    // Long enough for the generator to encode its pools (a debug build takes seconds) and then
    // stream through every look.
    let step = Duration::from_secs(LOOKS as u64 * INTERVAL_S + 20);
    let mut sc = Scenario::new(target.clone(), Rate::PerSecond(10_000.0), step, cohorts);
    sc.seed = 11;
    sc.pool_size = 128;
    let load = std::thread::spawn(move || slogate_load::run_blocking(&sc).expect("load run"));
    // A thin canary in small batches: 10 requests a second, so even the last look has ~150,
    // past the gate's minimum of 100 but under the 299 a p99 needs to be estimable at all.
    let mut thin = Scenario::new(
        target,
        Rate::PerSecond(10.0),
        step,
        vec![cohort("thin", 1.0, 50.0, 0.6, 0.005)],
    );
    thin.batch_size = 5;
    thin.seed = 12;
    let thin_load =
        std::thread::spawn(move || slogate_load::run_blocking(&thin).expect("thin load run"));

    // The step begins once the canaries serve traffic (Argo starts the analysis after setting
    // the weight); one look per interval from then on.
    let flowing = Instant::now();
    let requests = |version: &str| {
        server.get_json(&format!(
            "/api/v1/sli?service=checkout&version={version}&window=1m"
        ))["requests"]
            .as_u64()
            .unwrap_or(0)
    };
    while requests("thin") == 0 || requests("errors") < 1000 {
        assert!(
            flowing.elapsed() < Duration::from_secs(60),
            "no traffic arrived"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(INTERVAL_S));
    let canaries = ["same", "slow", "wide", "errors", "thin"];
    let mut phases: Vec<Vec<String>> = vec![Vec::new(); canaries.len()];
    let start = Instant::now();
    for look in 0..LOOKS {
        let due = start + Duration::from_secs(look as u64 * INTERVAL_S);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        for (i, canary) in canaries.iter().enumerate() {
            phases[i].push(argo_contract_phase(
                &server,
                "default",
                canary,
                "v1",
                &LOOKS.to_string(),
                &format!("{INTERVAL_S}s"),
            ));
        }
    }
    for report in [load.join().unwrap(), thin_load.join().unwrap()] {
        assert_eq!(report.requests_failed, 0, "{:?}", report.first_error);
    }

    let doc = |canary: &str| {
        server.get_json(&format!(
            "/api/v1/gates/checkout/verdict?canary.version={canary}&baseline.version=v1&analysis=checkout-default-{canary}&looks={LOOKS}&interval={INTERVAL_S}s"
        ))
    };
    let ctx = |i: usize| format!("{}: {:?}\n{:#}", canaries[i], phases[i], doc(canaries[i]));
    // A/A: never rolled back, and the last look, on all of the step's data, proceeds.
    assert!(phases[0].iter().all(|p| p == "Successful"), "{}", ctx(0));
    let same = doc("same");
    assert_eq!(same["verdict"], "pass", "{}", ctx(0));
    let a = &same["analysis"];
    assert_eq!(
        (&a["look"], &a["final"]),
        (&LOOKS.into(), &true.into()),
        "{a}"
    );
    assert!((a["spent"].as_f64().unwrap() - 0.01).abs() < 1e-9, "{a}");
    // +50 % latency (scale), a wider spread with the same median, and six times the errors
    // roll back, each before the step ends, and stay rolled back.
    for i in 1..=3 {
        let first_fail = phases[i].iter().position(|p| p == "Failed");
        assert!(
            first_fail.is_some_and(|k| k < LOOKS as usize - 1),
            "{}",
            ctx(i)
        );
        assert!(
            phases[i][first_fail.unwrap()..]
                .iter()
                .all(|p| p == "Failed"),
            "{}",
            ctx(i)
        );
        assert_eq!(doc(canaries[i])["verdict"], "fail", "{}", ctx(i));
    }
    let wide = doc("wide");
    let failing: Vec<&str> = wide["criteria"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["result"] == "fail")
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        failing.contains(&"p99-vs-baseline") || failing.contains(&"p95-vs-baseline"),
        "a variance increase is caught by the quantile tests, not the rank test: {failing:?}"
    );
    // Thin data: never rolled back on noise and never passed; the last look pauses the rollout.
    let thin = &phases[4];
    assert!(
        thin[..LOOKS as usize - 1].iter().all(|p| p == "Successful"),
        "{}",
        ctx(4)
    );
    assert_eq!(thin.last().unwrap(), "Inconclusive", "{}", ctx(4));
    // Every statistical criterion explains itself: estimate, interval, level, sample sizes.
    for c in wide["criteria"].as_array().unwrap() {
        for field in [
            "score",
            "alpha",
            "canary_requests",
            "baseline_requests",
            "reason",
        ] {
            assert!(!c[field].is_null(), "{field} missing in {c}");
        }
    }
}
