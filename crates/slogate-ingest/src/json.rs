//! OTLP/JSON trace requests: hex ids, integer enums, lowerCamelCase names, 64-bit integers as
//! strings or numbers, unknown fields ignored. The slow path: parsed into owned structs, then the
//! same [`extract`](crate::extract::extract) rules as the protobuf path.

use crate::extract::{
    AttrValue, ExtractConfig, Extracted, ResourceFields, SpanFields, Tally, extract,
};
use serde::Deserialize;
use serde::de::{self, Deserializer};
use slogate_core::Observation;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TracesRequest {
    #[serde(default)]
    resource_spans: Vec<JsonResourceSpans>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct JsonResourceSpans {
    #[serde(default)]
    resource: Option<JsonResource>,
    #[serde(default)]
    scope_spans: Vec<JsonScopeSpans>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct JsonResource {
    #[serde(default)]
    attributes: Vec<JsonKeyValue>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct JsonScopeSpans {
    #[serde(default)]
    spans: Vec<JsonSpan>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct JsonSpan {
    #[serde(default)]
    trace_id: String,
    #[serde(default)]
    span_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: i32,
    #[serde(default, deserialize_with = "u64_lenient")]
    start_time_unix_nano: u64,
    #[serde(default, deserialize_with = "u64_lenient")]
    end_time_unix_nano: u64,
    #[serde(default)]
    attributes: Vec<JsonKeyValue>,
    #[serde(default)]
    status: Option<JsonStatus>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct JsonStatus {
    #[serde(default)]
    code: i32,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct JsonKeyValue {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: Option<JsonAnyValue>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct JsonAnyValue {
    #[serde(default)]
    string_value: Option<String>,
    #[serde(default, deserialize_with = "opt_i64_lenient")]
    int_value: Option<i64>,
}

impl JsonAnyValue {
    fn as_attr(&self) -> AttrValue<'_> {
        if let Some(s) = &self.string_value {
            AttrValue::Str(s.as_bytes())
        } else if let Some(i) = self.int_value {
            AttrValue::Int(i)
        } else {
            AttrValue::Absent
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IntOrString {
    U(u64),
    I(i64),
    S(String),
}

fn u64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match IntOrString::deserialize(d)? {
        IntOrString::U(u) => Ok(u),
        IntOrString::I(_) => Err(de::Error::custom("negative timestamp")),
        IntOrString::S(s) => s
            .parse()
            .map_err(|_| de::Error::custom(format!("invalid 64-bit integer string {s:?}"))),
    }
}

fn opt_i64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(Some(match IntOrString::deserialize(d)? {
        IntOrString::U(u) => {
            i64::try_from(u).map_err(|_| de::Error::custom("integer out of range"))?
        }
        IntOrString::I(i) => i,
        IntOrString::S(s) => s
            .parse()
            .map_err(|_| de::Error::custom(format!("invalid 64-bit integer string {s:?}")))?,
    }))
}

/// Parses an OTLP/JSON body. The error message is serde_json's, with line and column.
pub fn parse(body: &[u8]) -> Result<TracesRequest, serde_json::Error> {
    serde_json::from_slice(body)
}

/// True when `hex` is exactly `2 * len` hex digits (either case) and not all zeros.
fn hex_id_ok(hex: &str, len: usize) -> bool {
    hex.len() == 2 * len
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
        && hex.bytes().any(|b| b != b'0')
}

/// Extracts observations from a parsed request; they borrow from `req`.
pub fn extract_request<'a>(
    req: &'a TracesRequest,
    cfg: &ExtractConfig,
    out: &mut Vec<Observation<'a>>,
    tally: &mut Tally,
) {
    for (ri, rs) in req.resource_spans.iter().enumerate() {
        let mut res = ResourceFields::default();
        if let Some(resource) = &rs.resource {
            for kv in &resource.attributes {
                if let Some(v) = &kv.value {
                    res.offer(cfg, kv.key.as_bytes(), v.as_attr());
                }
            }
        }
        let mut si = 0u32;
        for ss in &rs.scope_spans {
            for sp in &ss.spans {
                let mut fields = SpanFields {
                    trace_id_ok: hex_id_ok(&sp.trace_id, 16),
                    span_id_ok: hex_id_ok(&sp.span_id, 8),
                    name: sp.name.as_bytes(),
                    kind: sp.kind,
                    start_ns: sp.start_time_unix_nano,
                    end_ns: sp.end_time_unix_nano,
                    status_code: sp.status.as_ref().map_or(0, |s| s.code),
                    ..Default::default()
                };
                for kv in &sp.attributes {
                    if let Some(v) = &kv.value {
                        fields.offer(cfg, kv.key.as_bytes(), v.as_attr());
                    }
                }
                match extract(cfg, &res, &fields) {
                    Extracted::Observation(o) => {
                        out.push(o);
                        tally.recorded += 1;
                    }
                    Extracted::Skipped => tally.skipped += 1,
                    Extracted::Rejected(why) => tally.reject(why, ri as u32, si),
                }
                si = si.saturating_add(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::Reject;

    #[test]
    fn parses_otlp_json() {
        let body = br#"{"resourceSpans":[{"resource":{"attributes":[
            {"key":"service.name","value":{"stringValue":"checkout"}},
            {"key":"service.version","value":{"stringValue":"v2"}},
            {"key":"future.field","value":{"kvlistValue":{"values":[]}}}]},
          "scopeSpans":[{"scope":{"name":"x"},"spans":[
            {"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"eee19b7ec3c1b174","name":"GET",
             "kind":2,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":1544712661000000000,
             "attributes":[{"key":"http.request.method","value":{"stringValue":"GET"}},
                           {"key":"http.route","value":{"stringValue":"/cart"}},
                           {"key":"http.response.status_code","value":{"intValue":"503"}}],
             "status":{"code":0}, "unknownField": true},
            {"traceId":"00000000000000000000000000000000","spanId":"eee19b7ec3c1b174","kind":2,
             "startTimeUnixNano":"1","endTimeUnixNano":"2"},
            {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","kind":3,
             "startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]}"#;
        let req = parse(body).unwrap();
        let (mut out, mut tally) = (Vec::new(), Tally::default());
        extract_request(&req, &ExtractConfig::default(), &mut out, &mut tally);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].operation.to_string_lossy(), "GET /cart");
        assert!(out[0].error);
        assert_eq!(out[0].duration_ns, 1_000_000_000);
        assert_eq!(out[0].version, b"v2");
        assert_eq!(tally.skipped, 1);
        assert_eq!(tally.rejected[Reject::InvalidTraceId as usize], 1);
    }

    #[test]
    fn rejects_bad_json_with_position() {
        let err = parse(b"{\"resourceSpans\": [").err().unwrap().to_string();
        assert!(err.contains("line 1"), "{err}");
        let err = parse(
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":"soon"}]}]}]}"#,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("invalid 64-bit integer"), "{err}");
    }

    #[test]
    fn empty_object_is_an_empty_request() {
        let req = parse(b"{}").unwrap();
        let (mut out, mut tally) = (Vec::new(), Tally::default());
        extract_request(&req, &ExtractConfig::default(), &mut out, &mut tally);
        assert!(out.is_empty());
        assert_eq!(tally, Tally::default());
    }
}
