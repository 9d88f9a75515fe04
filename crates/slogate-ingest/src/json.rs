//! OTLP/JSON trace requests: hex ids, integer enums, lowerCamelCase names, 64-bit integers as
//! strings or numbers, unknown fields ignored. The slow path: parsed into owned structs, then the
//! same [`extract`](crate::extract::extract) rules as the protobuf path.
//!
//! Strings are kept as the bytes the body holds (escapes resolved, UTF-8 not checked), as the
//! protobuf path keeps them: a span whose dimension is not valid UTF-8 is then rejected on its
//! own by the shared rules, through `partial_success`, instead of failing the whole request.

use crate::extract::{
    AttrValue, ExtractConfig, Extracted, ResourceFields, SpanFields, SpanLimits, Tally, extract_ns,
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
    trace_id: Bytes,
    #[serde(default)]
    span_id: Bytes,
    #[serde(default)]
    name: Bytes,
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
    #[serde(default)]
    trace_state: Bytes,
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
    key: Bytes,
    #[serde(default)]
    value: Option<JsonAnyValue>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct JsonAnyValue {
    #[serde(default)]
    string_value: Option<Bytes>,
    #[serde(default, deserialize_with = "opt_i64_lenient")]
    int_value: Option<i64>,
    #[serde(default, deserialize_with = "opt_f64_lenient")]
    double_value: Option<f64>,
}

impl JsonAnyValue {
    fn as_attr(&self) -> AttrValue<'_> {
        if let Some(s) = &self.string_value {
            AttrValue::Str(&s.0)
        } else if let Some(i) = self.int_value {
            AttrValue::Int(i)
        } else if let Some(d) = self.double_value {
            AttrValue::Double(d)
        } else {
            AttrValue::Absent
        }
    }
}

/// A JSON string as bytes, without the UTF-8 check `String` makes.
#[derive(Default)]
pub(crate) struct Bytes(pub(crate) Vec<u8>);

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Bytes, E> {
                Ok(Bytes(v.as_bytes().to_vec()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Bytes, E> {
                Ok(Bytes(v.into_bytes()))
            }
        }
        // serde_json hands a string to `deserialize_bytes` as its raw bytes (escapes resolved).
        d.deserialize_bytes(V)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IntOrString {
    U(u64),
    I(i64),
    S(String),
}

pub(crate) fn u64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match IntOrString::deserialize(d)? {
        IntOrString::U(u) => Ok(u),
        IntOrString::I(_) => Err(de::Error::custom("negative timestamp")),
        IntOrString::S(s) => s
            .parse()
            .map_err(|_| de::Error::custom(format!("invalid 64-bit integer string {s:?}"))),
    }
}

pub(crate) fn opt_i64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
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

/// A double as proto3 JSON writes it: a number, or a string (`"NaN"`, `"Infinity"`, `"0.25"`).
/// Anything else is no value rather than a refused request: the field is only read to find a
/// sampling probability.
fn opt_f64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrString {
        N(f64),
        S(String),
    }
    Ok(match NumOrString::deserialize(d)? {
        NumOrString::N(n) => Some(n),
        NumOrString::S(s) => s.parse().ok(),
    })
}

/// Parses an OTLP/JSON body. The error message is serde_json's, with line and column.
pub fn parse(body: &[u8]) -> Result<TracesRequest, serde_json::Error> {
    serde_json::from_slice(body)
}

/// True when `hex` is exactly `2 * len` hex digits (either case) and not all zeros.
fn hex_id_ok(hex: &Bytes, len: usize) -> bool {
    let hex = &hex.0;
    hex.len() == 2 * len
        && hex.iter().all(|b| b.is_ascii_hexdigit())
        && hex.iter().any(|b| *b != b'0')
}

/// Extracts observations from a parsed request with the default [`SpanLimits`]; see
/// [`extract_request_with`].
pub fn extract_request<'a>(
    req: &'a TracesRequest,
    cfg: &ExtractConfig,
    out: &mut Vec<Observation<'a>>,
    tally: &mut Tally,
) {
    extract_request_with(req, cfg, &SpanLimits::DEFAULT, out, tally);
}

/// Extracts observations from a parsed request; they borrow from `req`.
pub fn extract_request_with<'a>(
    req: &'a TracesRequest,
    cfg: &ExtractConfig,
    limits: &SpanLimits,
    out: &mut Vec<Observation<'a>>,
    tally: &mut Tally,
) {
    tally.limits = *limits;
    let max_duration_ns = limits.max_duration_ns();
    for (ri, rs) in req.resource_spans.iter().enumerate() {
        let mut res = ResourceFields::default();
        if let Some(resource) = &rs.resource {
            for kv in &resource.attributes {
                if let Some(v) = &kv.value {
                    res.offer(cfg, &kv.key.0, v.as_attr());
                }
            }
        }
        res.check_utf8();
        let mut si = 0u32;
        for ss in &rs.scope_spans {
            for sp in &ss.spans {
                let mut fields = SpanFields {
                    trace_id_ok: hex_id_ok(&sp.trace_id, 16),
                    span_id_ok: hex_id_ok(&sp.span_id, 8),
                    name: &sp.name.0,
                    kind: sp.kind,
                    start_ns: sp.start_time_unix_nano,
                    end_ns: sp.end_time_unix_nano,
                    status_code: sp.status.as_ref().map_or(0, |s| s.code),
                    trace_state: &sp.trace_state.0,
                    ..Default::default()
                };
                for kv in &sp.attributes {
                    if let Some(v) = &kv.value {
                        fields.offer(cfg, &kv.key.0, v.as_attr());
                    }
                }
                match extract_ns(cfg, max_duration_ns, &res, &fields) {
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
        assert_eq!(tally.rejected[Reject::InvalidTraceId.index()], 1);
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
