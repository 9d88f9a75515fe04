//! HTTP API behaviour not covered elsewhere: paging of `/api/v1/series`.

use crate::harness::Server;
use slogate_load::{CohortSpec, LatencyDist, Operations, Rate, Scenario, Target};
use std::collections::BTreeSet;
use std::time::Duration;

/// 30 series (operations) with different traffic: pages of 7 walk all of them once, busiest
/// first, and the limits are checked.
#[test]
fn series_are_paged_busiest_first() {
    let server = Server::start("");
    let target = Target {
        endpoint: format!("http://127.0.0.1:{}", server.grpc),
        ..Target::default()
    };
    let mut cohort = CohortSpec::new("pager", "v1", LatencyDist::lognormal(40.0, 0.5));
    cohort.operations = Operations::Count(30);
    let mut sc = Scenario::new(
        target,
        Rate::PerSecond(3000.0),
        Duration::from_secs(1),
        vec![cohort],
    );
    sc.batch_size = 100;
    let report = slogate_load::run_blocking(&sc).unwrap();
    assert_eq!(report.requests_failed, 0, "{:?}", report.first_error);
    server.sli_when("service=pager&window=5m", report.spans_sent);

    let mut seen = BTreeSet::new();
    let mut last_requests = u64::MAX;
    let mut offset = Some(0);
    let mut pages = 0;
    while let Some(at) = offset {
        let page = server.get_json(&format!(
            "/api/v1/series?window=5m&service=pager&limit=7&offset={at}"
        ));
        assert_eq!(page["total"], 30, "{page}");
        let rows = page["series"].as_array().unwrap();
        assert!(!rows.is_empty() && rows.len() <= 7, "{page}");
        for r in rows {
            let n = r["requests"].as_u64().unwrap();
            assert!(n <= last_requests, "busiest first: {page}");
            last_requests = n;
            assert!(
                seen.insert(r["operation"].as_str().unwrap().to_string()),
                "{r}"
            );
        }
        offset = page["next_offset"].as_u64();
        assert_eq!(page["truncated"], offset.is_some(), "{page}");
        pages += 1;
    }
    assert_eq!((seen.len(), pages), (30, 5));

    let past = server.get_json("/api/v1/series?window=5m&offset=1000");
    assert_eq!(past["series"].as_array().map(Vec::len), Some(0), "{past}");
    assert!(past["next_offset"].is_null(), "{past}");
    for bad in ["limit=0", "limit=10001", "limit=x", "offset=-1", "page=2"] {
        let (status, body) = server.get(&format!("/api/v1/series?{bad}")).unwrap();
        assert_eq!(status, 400, "{bad}: {body}");
    }
}
