//! Span → observation: the semantic-convention rules, shared by the protobuf and JSON decoders.
//!
//! Both decoders fill a [`ResourceFields`] and a [`SpanFields`] with borrowed slices and call
//! [`extract`]; the rules live only here.

use slogate_core::{MAX_EXTRA_DIMS, Observation, Operation};
use std::time::Duration;

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
                | SAMPLING_PROBABILITY
                | SAMPLE_RATE
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

/// A candidate value of a looked-up attribute: strings as bytes, integers as integers, doubles
/// (read for `sampling.probability` only) as doubles.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum AttrValue<'a> {
    #[default]
    Absent,
    Str(&'a [u8]),
    Int(i64),
    Double(f64),
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
            AttrValue::Absent | AttrValue::Double(_) => None,
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
    /// Set by [`ResourceFields::check_utf8`] once the service, env and version values are
    /// known to be valid UTF-8, so that extraction does not check them again for every span.
    pub utf8_checked: bool,
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
/// Legacy sampling attributes: a probability in `(0, 1]` (the first probability sampler
/// specification) and "one in N" (Honeycomb's and other vendors' samplers).
pub const SAMPLING_PROBABILITY: &[u8] = b"sampling.probability";
pub const SAMPLE_RATE: &[u8] = b"SampleRate";
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
    /// The span's W3C `tracestate` (its `ot` entry may carry the sampling threshold).
    pub trace_state: &'a [u8],
    /// A legacy sampling attribute (`sampling.probability` or `SampleRate`), as an adjusted
    /// count; 0 when absent.
    pub legacy_adjusted_count: u32,
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
            SAMPLING_PROBABILITY => {
                let p = match value {
                    AttrValue::Double(p) => Some(p),
                    AttrValue::Int(1) => Some(1.0),
                    _ => None,
                };
                if let Some(n) = p.and_then(slogate_core::sampling::adjusted_count_from_probability)
                {
                    self.legacy_adjusted_count = n;
                }
            }
            SAMPLE_RATE => {
                if let Some(n) = value
                    .as_int()
                    .and_then(slogate_core::sampling::adjusted_count_from_rate)
                {
                    self.legacy_adjusted_count = n;
                }
            }
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
    /// Checks the resource's own dimension values once, after every attribute was offered:
    /// when they are valid UTF-8, [`extract`] skips them. (When not, it finds and reports them
    /// span by span.)
    pub fn check_utf8(&mut self) {
        let ok = |f: Found<'_>| {
            f.value
                .as_str()
                .is_none_or(|v| std::str::from_utf8(v).is_ok())
        };
        self.utf8_checked = ok(self.service) && ok(self.env) && ok(self.version);
    }

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
    /// Longer than [`SpanLimits::max_duration`].
    DurationTooLong,
    /// A dimension value that is not valid UTF-8. Series keys separate dimensions with `0xFF`,
    /// a byte valid UTF-8 never contains, so only valid UTF-8 may reach a key.
    InvalidUtf8(Dim),
}

/// The dimension a [`Reject::InvalidUtf8`] was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dim {
    Service,
    Env,
    Version,
    Operation,
    /// The configured extra dimension at this index.
    Extra(u8),
}

impl Dim {
    fn describe(self) -> String {
        match self {
            Dim::Service => "service (resource attribute service.name or as configured)".into(),
            Dim::Env => {
                "env (resource attribute deployment.environment.name or as configured)".into()
            }
            Dim::Version => "version (resource attribute service.version or as configured)".into(),
            Dim::Operation => "operation (span name, http.request.method, http.route, \
                               rpc.service or rpc.method)"
                .into(),
            Dim::Extra(i) => format!("extra dimension #{i} (as configured)"),
        }
    }
}

impl Reject {
    /// How many reasons there are: the size of per-reason counter arrays.
    pub const COUNT: usize = 6;

    /// One value per reason, in [`Reject::index`] order (`InvalidUtf8` stands for every
    /// dimension: reasons are counted, not dimensions).
    pub const ALL: [Reject; Reject::COUNT] = [
        Reject::InvalidTraceId,
        Reject::InvalidSpanId,
        Reject::EndBeforeStart,
        Reject::MissingService,
        Reject::DurationTooLong,
        Reject::InvalidUtf8(Dim::Service),
    ];

    /// The reason's position in per-reason counter arrays.
    pub const fn index(self) -> usize {
        match self {
            Reject::InvalidTraceId => 0,
            Reject::InvalidSpanId => 1,
            Reject::EndBeforeStart => 2,
            Reject::MissingService => 3,
            Reject::DurationTooLong => 4,
            Reject::InvalidUtf8(_) => 5,
        }
    }

    /// The label used in `/metrics` and messages.
    pub fn label(self) -> &'static str {
        match self {
            Reject::InvalidTraceId => "invalid_trace_id",
            Reject::InvalidSpanId => "invalid_span_id",
            Reject::EndBeforeStart => "end_before_start",
            Reject::MissingService => "missing_service_name",
            Reject::DurationTooLong => "duration_too_long",
            Reject::InvalidUtf8(_) => "invalid_utf8",
        }
    }

    fn describe(self, limits_hint: &str) -> String {
        match self {
            Reject::InvalidTraceId => "trace_id is not 16 bytes or is all zeros".into(),
            Reject::InvalidSpanId => "span_id is not 8 bytes or is all zeros".into(),
            Reject::EndBeforeStart => "end_time_unix_nano is before start_time_unix_nano".into(),
            Reject::MissingService => "the resource has no service.name".into(),
            Reject::DurationTooLong => {
                format!("end_time_unix_nano - start_time_unix_nano is longer than {limits_hint}")
            }
            Reject::InvalidUtf8(dim) => format!("{} is not valid UTF-8", dim.describe()),
        }
    }
}

/// Per-span plausibility limits. Separate from [`ExtractConfig`] (which callers build field by
/// field) so that adding a limit never breaks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanLimits {
    /// Spans that last longer than this are rejected: one absurd duration (an unset or garbage
    /// `end_time_unix_nano`) would otherwise own the top quantiles of its series for the whole
    /// window. `Duration::MAX` turns the check off.
    pub max_duration: Duration,
}

impl SpanLimits {
    /// The defaults: spans of up to one hour.
    pub const DEFAULT: SpanLimits = SpanLimits {
        max_duration: Duration::from_secs(3600),
    };

    #[inline]
    pub(crate) fn max_duration_ns(&self) -> u64 {
        u64::try_from(self.max_duration.as_nanos()).unwrap_or(u64::MAX)
    }
}

impl Default for SpanLimits {
    fn default() -> Self {
        SpanLimits::DEFAULT
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

/// Applies the extraction rules of DESIGN.md to one span, with the default [`SpanLimits`].
#[inline]
pub fn extract<'a>(
    cfg: &ExtractConfig,
    res: &ResourceFields<'a>,
    span: &SpanFields<'a>,
) -> Extracted<'a> {
    extract_with(cfg, &SpanLimits::DEFAULT, res, span)
}

/// Applies the extraction rules of DESIGN.md to one span.
#[inline]
pub fn extract_with<'a>(
    cfg: &ExtractConfig,
    limits: &SpanLimits,
    res: &ResourceFields<'a>,
    span: &SpanFields<'a>,
) -> Extracted<'a> {
    extract_ns(cfg, limits.max_duration_ns(), res, span)
}

/// [`extract_with`] with the duration limit in nanoseconds, worked out once per request.
// HOT PATH
#[inline]
pub(crate) fn extract_ns<'a>(
    cfg: &ExtractConfig,
    max_duration_ns: u64,
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
    let duration_ns = span.end_ns - span.start_ns;
    if duration_ns > max_duration_ns {
        return Extracted::Rejected(Reject::DurationTooLong);
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
    let (env, version) = (str_or_empty(res.env), str_or_empty(res.version));
    let resource = (!res.utf8_checked).then_some((service, env, version));
    let extras_used = &extras[..cfg.extras.len().min(MAX_EXTRA_DIMS)];
    if let Some(dim) = invalid_utf8(resource, &operation, extras_used) {
        return Extracted::Rejected(Reject::InvalidUtf8(dim));
    }
    // Built in the return value: a local observation moved into it was copied with memcpy.
    Extracted::Observation(Observation {
        service,
        env,
        version,
        operation,
        extras,
        error: span.status_code == STATUS_ERROR || http_5xx,
        duration_ns,
        adjusted_count: adjusted_count(span),
    })
}

/// The span's adjusted count: the `tracestate` threshold first, then a legacy attribute, else 1.
#[inline]
fn adjusted_count(span: &SpanFields<'_>) -> u32 {
    if span.trace_state.is_empty() && span.legacy_adjusted_count == 0 {
        return 1;
    }
    slogate_core::sampling::adjusted_count_from_tracestate(span.trace_state)
        .unwrap_or(span.legacy_adjusted_count)
        .max(1)
}

/// The OR of all bytes of `v` (some more than once): its top bits are clear when `v` is
/// ASCII. Dimension values are short, so the usual lengths take one or two loads and no loop.
#[inline(always)]
fn or_bytes(v: &[u8]) -> u64 {
    let n = v.len();
    if n >= 8 {
        // The last eight bytes, then the whole eights from the start (overlapping is fine).
        let mut acc = u64::from_ne_bytes(v[n - 8..].try_into().expect("8 bytes"));
        for c in v.as_chunks::<8>().0 {
            acc |= u64::from_ne_bytes(*c);
        }
        acc
    } else if n >= 4 {
        let head = u32::from_ne_bytes(v[..4].try_into().expect("4 bytes"));
        let tail = u32::from_ne_bytes(v[n - 4..].try_into().expect("4 bytes"));
        u64::from(head | tail)
    } else if n > 0 {
        u64::from(v[0] | v[n / 2] | v[n - 1])
    } else {
        0
    }
}

/// The first dimension that is not valid UTF-8 (`resource`: the service, env and version
/// values, unless already checked). Dimension values are nearly always ASCII: that is one OR
/// over their bytes; anything else is validated properly, out of line.
// HOT PATH
#[inline(always)]
fn invalid_utf8(
    resource: Option<(&[u8], &[u8], &[u8])>,
    operation: &Operation<'_>,
    extras: &[&[u8]],
) -> Option<Dim> {
    let mut acc = or_bytes(operation.first) | or_bytes(operation.second);
    if let Some((service, env, version)) = resource {
        acc |= or_bytes(service) | or_bytes(env) | or_bytes(version);
    }
    for e in extras {
        acc |= or_bytes(e);
    }
    if acc & 0x8080_8080_8080_8080 == 0 {
        return None;
    }
    invalid_utf8_slow(resource, operation, extras)
}

#[cold]
#[inline(never)]
fn invalid_utf8_slow(
    resource: Option<(&[u8], &[u8], &[u8])>,
    operation: &Operation<'_>,
    extras: &[&[u8]],
) -> Option<Dim> {
    let bad = |v: &[u8]| std::str::from_utf8(v).is_err();
    if let Some((service, env, version)) = resource {
        if bad(service) {
            return Some(Dim::Service);
        } else if bad(env) {
            return Some(Dim::Env);
        } else if bad(version) {
            return Some(Dim::Version);
        }
    }
    if bad(operation.first) || bad(operation.second) {
        return Some(Dim::Operation);
    }
    extras
        .iter()
        .position(|e| bad(e))
        .map(|i| Dim::Extra(i as u8))
}

/// Per-request tally of what was recorded, skipped and rejected, with the first rejection's
/// location for the `partial_success.error_message`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub recorded: u64,
    pub skipped: u64,
    /// Rejected spans per reason, by [`Reject::index`].
    pub rejected: [u64; Reject::COUNT],
    pub first_reject: Option<(Reject, u32, u32)>,
    /// The [`SpanLimits`] the spans were checked against, for the message.
    pub limits: SpanLimits,
}

impl Tally {
    pub fn total_rejected(&self) -> u64 {
        self.rejected.iter().sum()
    }
    pub fn reject(&mut self, why: Reject, resource: u32, span: u32) {
        self.rejected[why.index()] += 1;
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
            .filter(|r| self.rejected[r.index()] > 0)
            .map(|r| format!("{} {}", self.rejected[r.index()], r.label()))
            .collect();
        let mut msg = format!("rejected {total} invalid span(s): {}", parts.join(", "));
        if let Some((why, res, span)) = self.first_reject {
            msg.push_str(&format!(
                "; first at resource_spans[{res}] span #{span}: {}",
                why.describe(&format!("{:?}", self.limits.max_duration))
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
        let cfg = ExtractConfig {
            extras: vec![vec![b"tenant".to_vec()]],
            ..Default::default()
        };
        type Mutate = fn(&mut ResourceFields<'static>, &mut SpanFields<'static>);
        let cases: [(Mutate, Reject); 12] = [
            (|_, s| s.trace_id_ok = false, Reject::InvalidTraceId),
            (|_, s| s.span_id_ok = false, Reject::InvalidSpanId),
            (|_, s| s.end_ns = 10, Reject::EndBeforeStart),
            (|_, s| s.end_ns = u64::MAX, Reject::DurationTooLong),
            (
                |r, _| *r = ResourceFields::default(),
                Reject::MissingService,
            ),
            (
                |r, _| r.service.value = AttrValue::Str(b"a\xffb"),
                Reject::InvalidUtf8(Dim::Service),
            ),
            (
                |r, _| r.env.value = AttrValue::Str(b"\xc3"),
                Reject::InvalidUtf8(Dim::Env),
            ),
            (
                |r, _| r.version.value = AttrValue::Str(b"v\x80"),
                Reject::InvalidUtf8(Dim::Version),
            ),
            (|_, s| s.name = b"\xff", Reject::InvalidUtf8(Dim::Operation)),
            (
                |_, s| {
                    s.http_method.value = AttrValue::Str(b"GET");
                    s.http_route = AttrValue::Str(b"/a\xffb");
                },
                Reject::InvalidUtf8(Dim::Operation),
            ),
            (
                |_, s| s.extras[0].value = AttrValue::Str(b"\xed\xa0\x80"),
                Reject::InvalidUtf8(Dim::Extra(0)),
            ),
            (
                |r, _| r.extras[0].value = AttrValue::Str(b"\xf0\x9f\x98"),
                Reject::InvalidUtf8(Dim::Extra(0)),
            ),
        ];
        for (mutate, want) in cases {
            let (mut r, mut s) = (resource(), span(KIND_SERVER));
            mutate(&mut r, &mut s);
            assert_eq!(extract(&cfg, &r, &s), Extracted::Rejected(want), "{want:?}");
        }
        // Valid multi-byte UTF-8 in every dimension passes.
        let (mut r, mut s) = (resource(), span(KIND_SERVER));
        r.service.value = AttrValue::Str("caf\u{e9}".as_bytes());
        s.name = "\u{1F600}\u{ff}".as_bytes();
        s.extras[0].value = AttrValue::Str("\u{10FFFF}".as_bytes());
        assert!(matches!(extract(&cfg, &r, &s), Extracted::Observation(_)));
        // An invalid dimension of a span that is not recorded does not matter.
        let (r, mut s) = (resource(), span(KIND_CLIENT));
        s.name = b"\xff";
        assert_eq!(extract(&cfg, &r, &s), Extracted::Skipped);
    }

    #[test]
    fn duration_limit_is_inclusive_and_configurable() {
        let cfg = ExtractConfig::default();
        let limits = |secs| SpanLimits {
            max_duration: Duration::from_secs(secs),
        };
        let cases = [
            (3_600_000_000_000u64, SpanLimits::DEFAULT, true),
            (3_600_000_000_001, SpanLimits::DEFAULT, false),
            (1_000_000_000, limits(1), true),
            (1_000_000_001, limits(1), false),
            (0, limits(0), true),
            (
                u64::MAX - 1_000,
                SpanLimits {
                    max_duration: Duration::MAX,
                },
                true,
            ),
        ];
        for (duration, limits, kept) in cases {
            let mut s = span(KIND_SERVER);
            s.end_ns = s.start_ns + duration;
            let got = extract_with(&cfg, &limits, &resource(), &s);
            assert_eq!(
                matches!(got, Extracted::Observation(_)),
                kept,
                "{duration} ns under {limits:?}: {got:?}"
            );
        }
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
