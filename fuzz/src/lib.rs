//! What the fuzz targets share: the extraction config they decode with, prost as the reference
//! decoder (the same rules run on prost's structs), and the invariants every observation must
//! keep whichever decoder produced it.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use slogate_core::{Observation, SeriesKey, write_key};
use slogate_ingest::extract::{
    AttrValue, ExtractConfig, Extracted, ResourceFields, SpanFields, Tally, extract,
};

/// The default cohorts plus two extras, one of them a key long enough for a two-byte length.
pub fn config() -> ExtractConfig {
    ExtractConfig {
        extras: vec![
            vec![b"cloud.region".to_vec(), b"region".to_vec()],
            vec![b"tenant".to_vec()],
        ],
        ..Default::default()
    }
}

/// prost's decoded request through the same extraction rules: what the wire decoder must give.
pub fn reference<'a>(
    req: &'a ExportTraceServiceRequest,
    cfg: &ExtractConfig,
) -> (Vec<Observation<'a>>, Tally) {
    let (mut out, mut tally) = (Vec::new(), Tally::default());
    let attr = |v: &'a Option<AnyValue>| match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => AttrValue::Str(s.as_bytes()),
        Some(any_value::Value::IntValue(i)) => AttrValue::Int(*i),
        _ => AttrValue::Absent,
    };
    for (ri, rs) in req.resource_spans.iter().enumerate() {
        let mut res = ResourceFields::default();
        for kv in rs.resource.iter().flat_map(|r| &r.attributes) {
            res.offer(cfg, kv.key.as_bytes(), attr(&kv.value));
        }
        for (si, span) in rs.scope_spans.iter().flat_map(|s| &s.spans).enumerate() {
            let mut f = SpanFields {
                trace_id_ok: span.trace_id.len() == 16 && span.trace_id.iter().any(|b| *b != 0),
                span_id_ok: span.span_id.len() == 8 && span.span_id.iter().any(|b| *b != 0),
                name: span.name.as_bytes(),
                kind: span.kind,
                start_ns: span.start_time_unix_nano,
                end_ns: span.end_time_unix_nano,
                status_code: span.status.as_ref().map_or(0, |s| s.code),
                ..Default::default()
            };
            for kv in &span.attributes {
                f.offer(cfg, kv.key.as_bytes(), attr(&kv.value));
            }
            match extract(cfg, &res, &f) {
                Extracted::Observation(o) => {
                    out.push(o);
                    tally.recorded += 1;
                }
                Extracted::Skipped => tally.skipped += 1,
                Extracted::Rejected(why) => tally.reject(why, ri as u32, si as u32),
            }
        }
    }
    (out, tally)
}

/// What any accepted observation must satisfy: every dimension is valid UTF-8 (so none holds
/// the key separator), the key bytes split back into exactly the dimensions they were built
/// from, and the tally counts what was returned.
pub fn check_observations(obs: &[Observation<'_>], tally: &Tally, extras: usize) {
    assert_eq!(tally.recorded as usize, obs.len());
    let mut key = Vec::new();
    for o in obs {
        for (what, v) in [
            ("service", o.service),
            ("env", o.env),
            ("version", o.version),
            ("operation.first", o.operation.first),
            ("operation.second", o.operation.second),
        ]
        .into_iter()
        .chain(o.extras.iter().map(|e| ("extra", *e)))
        {
            assert!(
                std::str::from_utf8(v).is_ok(),
                "{what} is not UTF-8: {v:x?}"
            );
        }
        assert!(!o.service.is_empty());
        write_key(o, extras, &mut key);
        let parsed = SeriesKey::from_key_bytes(&key);
        assert_eq!(parsed.key_bytes(), key, "key bytes are not canonical");
        assert_eq!(parsed.extras.len(), extras, "a dimension split into two");
    }
    if let Some(msg) = tally.message() {
        assert!(tally.total_rejected() > 0 && msg.starts_with("rejected "));
    }
}
