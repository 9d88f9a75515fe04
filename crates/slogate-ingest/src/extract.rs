//! Span → observation: the semantic-convention rules, shared by the protobuf and JSON decoders.
//!
//! Both decoders fill a [`ResourceFields`] and a [`SpanFields`] with borrowed slices and call
//! [`extract`]; the rules live only here.

use slogate_core::{MAX_EXTRA_DIMS, Observation, Operation};

/// OTLP `SpanKind` values.
pub const KIND_INTERNAL: i32 = 1;
pub const KIND_SERVER: i32 = 2;
pub const KIND_CLIENT: i32 = 3;
pub const KIND_PRODUCER: i32 = 4;
pub const KIND_CONSUMER: i32 = 5;
/// OTLP `Status.StatusCode.STATUS_CODE_ERROR`.
pub const STATUS_ERROR: i32 = 2;

/// Which attributes form the cohort dimensions and which spans count.
#[derive(Debug, Clone)]
pub struct ExtractConfig {
    /// Resource attribute keys for `service`, first present wins.
    pub service_keys: Vec<Vec<u8>>,
    /// Resource attribute keys for `env`, first present wins.
    pub env_keys: Vec<Vec<u8>>,
    /// Resource attribute keys for `version`, first present wins.
    pub version_keys: Vec<Vec<u8>>,
    /// Extra dimensions: for each, attribute keys looked up on the span first, then the resource.
    pub extras: Vec<Vec<Vec<u8>>>,
    /// Bit `1 << kind` set for each span kind that is recorded (entry spans by default).
    pub kinds_mask: u8,
}

impl Default for ExtractConfig {
    fn default() -> Self {
        ExtractConfig {
            service_keys: vec![b"service.name".to_vec()],
            env_keys: vec![
                b"deployment.environment.name".to_vec(),
                b"deployment.environment".to_vec(),
            ],
            version_keys: vec![b"service.version".to_vec()],
            extras: Vec::new(),
            kinds_mask: (1 << KIND_SERVER) | (1 << KIND_CONSUMER),
        }
    }
}

impl ExtractConfig {
    /// Whether extraction reads this span attribute (the fixed semantic-convention keys and the
    /// configured extras); the wire decoder skips the values of all others.
    #[inline]
    pub fn span_key_wanted(&self, key: &[u8]) -> bool {
        matches!(
            key,
            HTTP_REQUEST_METHOD
                | HTTP_METHOD_LEGACY
                | HTTP_ROUTE
                | RPC_SERVICE
                | RPC_METHOD
                | HTTP_RESPONSE_STATUS_CODE
                | HTTP_STATUS_CODE_LEGACY
        ) || self
            .extras
            .iter()
            .any(|keys| keys.iter().any(|k| k.as_slice() == key))
    }

    pub fn kind_from_name(name: &str) -> Option<i32> {
        Some(match name {
            "internal" => KIND_INTERNAL,
            "server" => KIND_SERVER,
            "client" => KIND_CLIENT,
            "producer" => KIND_PRODUCER,
            "consumer" => KIND_CONSUMER,
            _ => return None,
        })
    }
}

/// A candidate value of a looked-up attribute: strings as bytes, integers as integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttrValue<'a> {
    #[default]
    Absent,
    Str(&'a [u8]),
    Int(i64),
}

impl<'a> AttrValue<'a> {
    pub fn as_str(self) -> Option<&'a [u8]> {
        match self {
            AttrValue::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_int(self) -> Option<i64> {
        match self {
            AttrValue::Int(i) => Some(i),
            // Some instrumentations send status codes as strings.
            AttrValue::Str(s) => std::str::from_utf8(s).ok()?.trim().parse().ok(),
            AttrValue::Absent => None,
        }
    }
    pub fn is_present(self) -> bool {
        !matches!(self, AttrValue::Absent)
    }
}

/// Slots a decoder fills while scanning a resource's attributes.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResourceFields<'a> {
    /// Per configured key list, the value and the index of the key that matched (lower wins).
    pub service: Found<'a>,
    pub env: Found<'a>,
    pub version: Found<'a>,
    pub extras: [Found<'a>; MAX_EXTRA_DIMS],
}

/// A value found under one of several candidate keys; `rank` is the key's position in its list,
/// so the first configured key wins whatever order the attributes come in.
#[derive(Debug, Clone, Copy, Default)]
pub struct Found<'a> {
    pub value: AttrValue<'a>,
    pub rank: u8,
}

impl<'a> Found<'a> {
    #[inline]
    pub fn offer(&mut self, value: AttrValue<'a>, rank: usize) {
        let rank = rank.min(255) as u8;
        if !self.value.is_present() || rank < self.rank {
            *self = Found { value, rank };
        }
    }
}

/// Span attribute keys extraction reads.
pub const HTTP_REQUEST_METHOD: &[u8] = b"http.request.method";
pub const HTTP_METHOD_LEGACY: &[u8] = b"http.method";
pub const HTTP_ROUTE: &[u8] = b"http.route";
pub const RPC_SERVICE: &[u8] = b"rpc.service";
pub const RPC_METHOD: &[u8] = b"rpc.method";
pub const HTTP_RESPONSE_STATUS_CODE: &[u8] = b"http.response.status_code";
pub const HTTP_STATUS_CODE_LEGACY: &[u8] = b"http.status_code";

/// Slots a decoder fills while scanning one span.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpanFields<'a> {
    pub trace_id_ok: bool,
    pub span_id_ok: bool,
    pub name: &'a [u8],
    pub kind: i32,
    pub start_ns: u64,
    pub end_ns: u64,
    pub status_code: i32,
    pub http_method: Found<'a>,
    pub http_route: AttrValue<'a>,
    pub rpc_service: AttrValue<'a>,
    pub rpc_method: AttrValue<'a>,
    pub http_status: Found<'a>,
    pub extras: [Found<'a>; MAX_EXTRA_DIMS],
}

impl<'a> SpanFields<'a> {
    /// Offers one span attribute; keys extraction does not read are ignored.
    #[inline]
    pub fn offer(&mut self, cfg: &ExtractConfig, key: &[u8], value: AttrValue<'a>) {
        match key {
            HTTP_REQUEST_METHOD => self.http_method.offer(value, 0),
            HTTP_METHOD_LEGACY => self.http_method.offer(value, 1),
            HTTP_ROUTE => self.http_route = value,
            RPC_SERVICE => self.rpc_service = value,
            RPC_METHOD => self.rpc_method = value,
            HTTP_RESPONSE_STATUS_CODE => self.http_status.offer(value, 0),
            HTTP_STATUS_CODE_LEGACY => self.http_status.offer(value, 1),
            _ => {}
        }
        offer_extras(&mut self.extras, cfg, key, value);
    }
}

#[inline]
fn offer_extras<'a>(
    slots: &mut [Found<'a>; MAX_EXTRA_DIMS],
    cfg: &ExtractConfig,
    key: &[u8],
    value: AttrValue<'a>,
) {
    for (slot, keys) in slots.iter_mut().zip(&cfg.extras) {
        if let Some(rank) = keys.iter().position(|k| k.as_slice() == key) {
            slot.offer(value, rank);
        }
    }
}

impl<'a> ResourceFields<'a> {
    #[inline]
    pub fn offer(&mut self, cfg: &ExtractConfig, key: &[u8], value: AttrValue<'a>) {
        if let Some(rank) = cfg.service_keys.iter().position(|k| k.as_slice() == key) {
            self.service.offer(value, rank);
        }
        if let Some(rank) = cfg.env_keys.iter().position(|k| k.as_slice() == key) {
            self.env.offer(value, rank);
        }
        if let Some(rank) = cfg.version_keys.iter().position(|k| k.as_slice() == key) {
            self.version.offer(value, rank);
        }
        offer_extras(&mut self.extras, cfg, key, value);
    }
}

/// Why a span was not recorded. `SkippedKind` is not an error: the span is valid but not an
/// entry span; the others are rejections reported in `partial_success`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    InvalidTraceId,
    InvalidSpanId,
    EndBeforeStart,
    MissingService,
}

impl Reject {
    pub const ALL: [Reject; 4] = [
        Reject::InvalidTraceId,
        Reject::InvalidSpanId,
        Reject::EndBeforeStart,
        Reject::MissingService,
    ];

    /// The label used in `/metrics` and messages.
    pub fn label(self) -> &'static str {
        match self {
            Reject::InvalidTraceId => "invalid_trace_id",
            Reject::InvalidSpanId => "invalid_span_id",
            Reject::EndBeforeStart => "end_before_start",
            Reject::MissingService => "missing_service_name",
        }
    }
    fn describe(self) -> &'static str {
        match self {
            Reject::InvalidTraceId => "trace_id is not 16 bytes or is all zeros",
            Reject::InvalidSpanId => "span_id is not 8 bytes or is all zeros",
            Reject::EndBeforeStart => "end_time_unix_nano is before start_time_unix_nano",
            Reject::MissingService => "the resource has no service.name",
        }
    }
}

/// The result of extracting one span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extracted<'a> {
    Observation(Observation<'a>),
    /// A valid span of a kind that is not recorded (client, internal, producer by default).
    Skipped,
    Rejected(Reject),
}

fn str_or_empty(found: Found<'_>) -> &[u8] {
    found.value.as_str().unwrap_or(b"")
}

/// Applies the extraction rules of DESIGN.md to one span.
#[inline]
pub fn extract<'a>(
    cfg: &ExtractConfig,
    res: &ResourceFields<'a>,
    span: &SpanFields<'a>,
) -> Extracted<'a> {
    if !span.trace_id_ok {
        return Extracted::Rejected(Reject::InvalidTraceId);
    }
    if !span.span_id_ok {
        return Extracted::Rejected(Reject::InvalidSpanId);
    }
    if span.end_ns < span.start_ns {
        return Extracted::Rejected(Reject::EndBeforeStart);
    }
    let service = match res.service.value.as_str() {
        Some(s) if !s.is_empty() => s,
        _ => return Extracted::Rejected(Reject::MissingService),
    };
    if !(0..8).contains(&span.kind) || cfg.kinds_mask & (1 << span.kind) == 0 {
        return Extracted::Skipped;
    }
    let operation = match (span.http_method.value.as_str(), span.http_route.as_str()) {
        (Some(m), Some(r)) if !m.is_empty() && !r.is_empty() => Operation::pair(m, b' ', r),
        _ => match (span.rpc_service.as_str(), span.rpc_method.as_str()) {
            (Some(s), Some(m)) if !s.is_empty() && !m.is_empty() => Operation::pair(s, b'/', m),
            _ => Operation::single(span.name),
        },
    };
    let http_5xx =
        span.kind == KIND_SERVER && span.http_status.value.as_int().is_some_and(|c| c >= 500);
    let mut extras: [&[u8]; MAX_EXTRA_DIMS] = [b""; MAX_EXTRA_DIMS];
    for (i, out) in extras.iter_mut().enumerate().take(cfg.extras.len()) {
        let found = if span.extras[i].value.is_present() {
            span.extras[i]
        } else {
            res.extras[i]
        };
        *out = str_or_empty(found);
    }
    Extracted::Observation(Observation {
        service,
        env: str_or_empty(res.env),
        version: str_or_empty(res.version),
        operation,
        extras,
        error: span.status_code == STATUS_ERROR || http_5xx,
        duration_ns: span.end_ns - span.start_ns,
    })
}

/// Per-request tally of what was recorded, skipped and rejected, with the first rejection's
/// location for the `partial_success.error_message`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub recorded: u64,
    pub skipped: u64,
    pub rejected: [u64; 4],
    pub first_reject: Option<(Reject, u32, u32)>,
}

impl Tally {
    pub fn total_rejected(&self) -> u64 {
        self.rejected.iter().sum()
    }
    pub fn reject(&mut self, why: Reject, resource: u32, span: u32) {
        self.rejected[why as usize] += 1;
        if self.first_reject.is_none() {
            self.first_reject = Some((why, resource, span));
        }
    }
    /// The English message OTLP asks for when some spans were rejected.
    pub fn message(&self) -> Option<String> {
        let total = self.total_rejected();
        if total == 0 {
            return None;
        }
        let parts: Vec<String> = Reject::ALL
            .iter()
            .filter(|r| self.rejected[**r as usize] > 0)
            .map(|r| format!("{} {}", self.rejected[*r as usize], r.label()))
            .collect();
        let mut msg = format!("rejected {total} invalid span(s): {}", parts.join(", "));
        if let Some((why, res, span)) = self.first_reject {
            msg.push_str(&format!(
                "; first at resource_spans[{res}] span #{span}: {}",
                why.describe()
            ));
        }
        Some(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span<'a>(kind: i32) -> SpanFields<'a> {
        SpanFields {
            trace_id_ok: true,
            span_id_ok: true,
            name: b"handler",
            kind,
            start_ns: 1_000,
            end_ns: 3_500,
            ..Default::default()
        }
    }

    fn resource<'a>() -> ResourceFields<'a> {
        let cfg = ExtractConfig::default();
        let mut r = ResourceFields::default();
        r.offer(&cfg, b"service.name", AttrValue::Str(b"checkout"));
        r.offer(
            &cfg,
            b"deployment.environment",
            AttrValue::Str(b"legacy-env"),
        );
        r.offer(
            &cfg,
            b"deployment.environment.name",
            AttrValue::Str(b"prod"),
        );
        r.offer(&cfg, b"service.version", AttrValue::Str(b"v2"));
        r
    }

    /// `attrs` are offered to the span; expected is (operation, error) or the non-observation.
    fn check(
        kind: i32,
        status: i32,
        attrs: &[(&[u8], AttrValue<'static>)],
        expected: Result<(&str, bool), Extracted<'static>>,
    ) {
        let cfg = ExtractConfig::default();
        let mut s = span(kind);
        s.status_code = status;
        for (k, v) in attrs {
            s.offer(&cfg, k, *v);
        }
        let got = extract(&cfg, &resource(), &s);
        match (got, expected) {
            (Extracted::Observation(o), Ok((op, err))) => {
                assert_eq!(o.operation.to_string_lossy(), op);
                assert_eq!(o.error, err, "error flag for {op}");
                assert_eq!(o.env, b"prod", "new semconv key wins over the legacy one");
                assert_eq!(o.duration_ns, 2_500);
            }
            (got, Err(want)) => assert_eq!(got, want),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn extraction_rules() {
        use AttrValue::{Int, Str};
        check(
            KIND_SERVER,
            0,
            &[
                (b"http.request.method", Str(b"GET")),
                (b"http.route", Str(b"/cart/{id}")),
            ],
            Ok(("GET /cart/{id}", false)),
        );
        check(
            KIND_SERVER,
            0,
            &[
                (b"http.method", Str(b"POST")),
                (b"http.route", Str(b"/pay")),
            ],
            Ok(("POST /pay", false)),
        );
        check(
            KIND_SERVER,
            0,
            &[
                (b"http.method", Str(b"POST")),
                (b"http.request.method", Str(b"PUT")),
                (b"http.route", Str(b"/pay")),
            ],
            Ok(("PUT /pay", false)),
        );
        check(
            KIND_SERVER,
            0,
            &[(b"http.request.method", Str(b"GET"))],
            Ok(("handler", false)),
        );
        check(
            KIND_SERVER,
            0,
            &[
                (b"rpc.service", Str(b"ledger.Ledger")),
                (b"rpc.method", Str(b"Post")),
            ],
            Ok(("ledger.Ledger/Post", false)),
        );
        check(KIND_CONSUMER, 2, &[], Ok(("handler", true)));
        check(
            KIND_SERVER,
            0,
            &[(b"http.response.status_code", Int(503))],
            Ok(("handler", true)),
        );
        check(
            KIND_SERVER,
            0,
            &[(b"http.status_code", Str(b"500"))],
            Ok(("handler", true)),
        );
        check(
            KIND_SERVER,
            0,
            &[(b"http.response.status_code", Int(404))],
            Ok(("handler", false)),
        );
        check(
            KIND_CONSUMER,
            0,
            &[(b"http.response.status_code", Int(503))],
            Ok(("handler", false)),
        );
        check(KIND_CLIENT, 0, &[], Err(Extracted::Skipped));
        check(KIND_INTERNAL, 2, &[], Err(Extracted::Skipped));
        check(0, 0, &[], Err(Extracted::Skipped));
        check(99, 0, &[], Err(Extracted::Skipped));
    }

    #[test]
    fn rejections() {
        let cfg = ExtractConfig::default();
        type Mutate = fn(&mut SpanFields<'static>);
        let cases: [(Mutate, Reject); 3] = [
            (|s| s.trace_id_ok = false, Reject::InvalidTraceId),
            (|s| s.span_id_ok = false, Reject::InvalidSpanId),
            (|s| s.end_ns = 10, Reject::EndBeforeStart),
        ];
        for (mutate, want) in cases {
            let mut s = span(KIND_SERVER);
            mutate(&mut s);
            assert_eq!(extract(&cfg, &resource(), &s), Extracted::Rejected(want));
        }
        let empty_service = ResourceFields::default();
        assert_eq!(
            extract(&cfg, &empty_service, &span(KIND_SERVER)),
            Extracted::Rejected(Reject::MissingService)
        );
    }

    #[test]
    fn extras_prefer_span_then_resource() {
        let cfg = ExtractConfig {
            extras: vec![vec![b"cloud.region".to_vec()], vec![b"tenant".to_vec()]],
            ..Default::default()
        };
        let mut r = resource();
        r.offer(&cfg, b"cloud.region", AttrValue::Str(b"eu-west-1"));
        r.offer(&cfg, b"tenant", AttrValue::Str(b"from-resource"));
        let mut s = span(KIND_SERVER);
        s.offer(&cfg, b"tenant", AttrValue::Str(b"acme"));
        let Extracted::Observation(o) = extract(&cfg, &r, &s) else {
            panic!()
        };
        assert_eq!(
            &o.extras[..2],
            &[b"eu-west-1".as_slice(), b"acme".as_slice()]
        );
    }

    #[test]
    fn tally_message() {
        let mut t = Tally::default();
        assert_eq!(t.message(), None);
        t.reject(Reject::EndBeforeStart, 0, 3);
        t.reject(Reject::InvalidTraceId, 1, 0);
        t.reject(Reject::EndBeforeStart, 1, 1);
        assert_eq!(
            t.message().unwrap(),
            "rejected 3 invalid span(s): 1 invalid_trace_id, 2 end_before_start; first at resource_spans[0] span #3: end_time_unix_nano is before start_time_unix_nano"
        );
    }
}
