//! The hand-written OTLP metrics decoder on arbitrary bytes: never panics; every point it hands
//! to the sink holds what the sink is promised (finite values, bucket counts that add up to the
//! count, strictly increasing bounds that match the buckets, sorted unique attributes); every
//! point is counted once, as recorded, skipped or rejected; and whatever prost accepts as an
//! `ExportMetricsServiceRequest`, the decoder accepts too (it may accept more: it does not parse
//! the fields it skips).
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;
use slogate_core::{MetricPoint, MetricSink, PointRefusal, PointValue};
use slogate_fuzz::config;
use slogate_ingest::metrics::MetricTally;
use slogate_ingest::metrics::wire::decode_metrics;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
struct Checking(AtomicU64);

impl MetricSink for Checking {
    fn record_point(&self, p: &MetricPoint<'_>) -> Result<(), PointRefusal> {
        assert!(!p.metric.is_empty() && !p.service.is_empty(), "{p:?}");
        assert!(p.time_unix_nano > 0, "{p:?}");
        assert!(
            p.attributes.windows(2).all(|w| w[0].0 < w[1].0),
            "attributes sorted and unique: {p:?}"
        );
        let finite = |v: Option<f64>| v.is_none_or(f64::is_finite);
        match p.value {
            PointValue::Gauge(v) | PointValue::Sum { value: v, .. } => assert!(v.is_finite()),
            PointValue::Histogram {
                count,
                sum,
                min,
                max,
                bounds,
                counts,
                ..
            } => {
                assert!(finite(sum) && finite(min) && finite(max));
                assert!(bounds.iter().all(|b| b.is_finite()));
                assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{bounds:?}");
                assert!(counts.is_empty() || counts.len() == bounds.len() + 1);
                if !counts.is_empty() {
                    let total = counts.iter().try_fold(0u64, |a, &c| a.checked_add(c));
                    assert_eq!(total, Some(count));
                }
            }
            PointValue::ExponentialHistogram {
                count,
                sum,
                min,
                max,
                zero_count,
                zero_threshold,
                positive,
                negative,
                ..
            } => {
                assert!(finite(sum) && finite(min) && finite(max) && zero_threshold.is_finite());
                let total = positive
                    .iter()
                    .chain(negative)
                    .try_fold(zero_count, |a, &c| a.checked_add(c));
                assert_eq!(total, Some(count));
            }
            PointValue::Summary { sum, quantiles, .. } => {
                assert!(sum.is_finite());
                assert!(
                    quantiles
                        .iter()
                        .all(|(q, v)| (0.0..=1.0).contains(q) && v.is_finite())
                );
            }
        }
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let cfg = config();
    let sink = Checking::default();
    let mut tally = MetricTally::default();
    let ours = decode_metrics(data, &cfg, &sink, &mut tally);
    if ours.is_ok() {
        assert_eq!(tally.recorded, sink.0.load(Ordering::Relaxed), "{tally:?}");
    }
    if ExportMetricsServiceRequest::decode(data).is_ok()
        && let Err(e) = ours
    {
        panic!("prost accepts the request, the metrics decoder refuses it: {e}");
    }
});
