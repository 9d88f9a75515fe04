//! The OTLP metrics fast path: walks `ExportMetricsServiceRequest` protobuf bytes and fills a
//! [`Batch`] without materialising messages, then hands the points to the sink.
//!
//! HOT PATH: everything here runs per data point. It allocates nothing once the thread's batch
//! is warm, reads only the fields the rules need and skips the rest by wire type. Lengths are
//! checked against the bytes that are there and never used to reserve memory; a packed array
//! longer than its cap is skipped unread.
//!
//! Protobuf as prost parses it: fields in any order, unknown fields (groups included) skipped,
//! scalars last-wins, repeated scalars packed or not, a repeated message field merged (the
//! `Metric.data` oneof keeps the last member set and merges repeated occurrences of it, so data
//! points concatenate and the last temporality wins; `Buckets` merge offsets last-wins and
//! counts concatenated).
//!
//! Field numbers (opentelemetry-proto, collector/metrics/v1 and metrics/v1):
//! request{1: resource_metrics}; ResourceMetrics{1: resource, 2: scope_metrics};
//! ScopeMetrics{2: metrics}; Metric{1: name, 3: unit, 5: gauge, 7: sum, 9: histogram,
//! 10: exponential_histogram, 11: summary}; Gauge/Summary{1: data_points};
//! Sum{1: data_points, 2: aggregation_temporality, 3: is_monotonic};
//! (Exponential)Histogram{1: data_points, 2: aggregation_temporality};
//! NumberDataPoint{7: attributes, 2: start (fixed64), 3: time (fixed64), 4: as_double,
//! 6: as_int (sfixed64), 8: flags}; HistogramDataPoint{9: attributes, 2: start, 3: time,
//! 4: count (fixed64), 5: sum, 6: bucket_counts (fixed64), 7: explicit_bounds (double),
//! 10: flags, 11: min, 12: max}; ExponentialHistogramDataPoint{1: attributes, 2: start,
//! 3: time, 4: count, 5: sum, 6: scale (sint32), 7: zero_count (fixed64), 8: positive,
//! 9: negative, 10: flags, 12: min, 13: max, 14: zero_threshold}; Buckets{1: offset (sint32),
//! 2: bucket_counts (uint64)}; SummaryDataPoint{7: attributes, 2: start, 3: time, 4: count,
//! 5: sum, 6: quantile_values, 8: flags}; ValueAtQuantile{1: quantile, 2: value};
//! AnyValue{1: string, 2: bool, 3: int, 4: double, 5: array, 6: kvlist, 7: bytes}.

use super::{Batch, Draft, Kind, MetricCtx, MetricResource, MetricTally, PointLoc, Scalar};
use crate::extract::ExtractConfig;
use crate::wire::{Reader, WT_I64, WT_LEN, WT_VARINT, WireError, key_value, split_key_value};
use slogate_core::MetricSink;

/// Decodes a whole `ExportMetricsServiceRequest` and records its valid points in `sink`,
/// counting the rest in `tally`. On `Err` nothing was recorded and the request must be refused
/// as a whole (`tally` is to be dropped).
pub fn decode_metrics<S: MetricSink + ?Sized>(
    buf: &[u8],
    cfg: &ExtractConfig,
    sink: &S,
    tally: &mut MetricTally,
) -> Result<(), WireError> {
    super::with_batch(|batch| {
        decode_into(buf, cfg, batch, tally)?;
        batch.emit(sink, tally);
        Ok(())
    })
}

fn decode_into<'a>(
    buf: &'a [u8],
    cfg: &ExtractConfig,
    b: &mut Batch<'a>,
    tally: &mut MetricTally,
) -> Result<(), WireError> {
    let mut r = Reader::new(buf, 0);
    let mut loc = PointLoc::default();
    while !r.done() {
        let (field, wt) = r.tag()?;
        if field == 1 {
            let (rm, base) = r.expect_len(wt)?;
            resource_metrics(rm, base, loc, cfg, b, tally)?;
            loc.resource = loc.resource.saturating_add(1);
        } else {
            r.skip(field, wt)?;
        }
    }
    Ok(())
}

fn resource_metrics<'a>(
    buf: &'a [u8],
    base: usize,
    mut loc: PointLoc,
    cfg: &ExtractConfig,
    b: &mut Batch<'a>,
    tally: &mut MetricTally,
) -> Result<(), WireError> {
    // The resource may come after the metrics on the wire: read it first, in its own pass.
    let mut res = MetricResource::default();
    let mut r = Reader::new(buf, base);
    while !r.done() {
        let (field, wt) = r.tag()?;
        if field == 1 {
            let (resource, rbase) = r.expect_len(wt)?;
            let mut rr = Reader::new(resource, rbase);
            while !rr.done() {
                let (f, w) = rr.tag()?;
                if f == 1 {
                    let (kv, kbase) = rr.expect_len(w)?;
                    let (key, value) = key_value(kv, kbase)?;
                    res.offer(cfg, key, value);
                } else {
                    rr.skip(f, w)?;
                }
            }
        } else {
            r.skip(field, wt)?;
        }
    }
    let res = b.add_resource(cfg, &res);
    let mut r = Reader::new(buf, base);
    while !r.done() {
        let (field, wt) = r.tag()?;
        if field == 2 {
            let (scope, sbase) = r.expect_len(wt)?;
            let mut sr = Reader::new(scope, sbase);
            loc.metric = 0;
            while !sr.done() {
                let (f, w) = sr.tag()?;
                if f == 2 {
                    let (m, mbase) = sr.expect_len(w)?;
                    metric(m, mbase, res, loc, b, tally)?;
                    loc.metric = loc.metric.saturating_add(1);
                } else {
                    sr.skip(f, w)?;
                }
            }
            loc.scope = loc.scope.saturating_add(1);
        } else {
            r.skip(field, wt)?;
        }
    }
    Ok(())
}

const GAUGE: u32 = 5;
const SUM: u32 = 7;
const HISTOGRAM: u32 = 9;
const EXP_HISTOGRAM: u32 = 10;
const SUMMARY: u32 = 11;

fn metric<'a>(
    buf: &'a [u8],
    base: usize,
    res: Result<u32, super::PointReject>,
    mut loc: PointLoc,
    b: &mut Batch<'a>,
    tally: &mut MetricTally,
) -> Result<(), WireError> {
    // Pass 1: name and unit, and which data member wins. A later member of the oneof replaces
    // an earlier one; repeated occurrences of the same member merge. So the data read is every
    // occurrence of the last member from where its final run begins.
    let (mut name, mut unit): (&[u8], &[u8]) = (b"", b"");
    let (mut variant, mut run_start) = (0u32, 0usize);
    let mut r = Reader::new(buf, base);
    while !r.done() {
        let at = r.pos;
        let (field, wt) = r.tag()?;
        match field {
            1 => name = r.expect_len(wt)?.0,
            3 => unit = r.expect_len(wt)?.0,
            GAUGE | SUM | HISTOGRAM | EXP_HISTOGRAM | SUMMARY => {
                r.expect_len(wt)?;
                if field != variant {
                    (variant, run_start) = (field, at);
                }
            }
            _ => r.skip(field, wt)?,
        }
    }
    if variant == 0 {
        return Ok(());
    }
    let data = &buf[run_start..];
    let dbase = base + run_start;
    // Pass 2: the data message's own fields (the last value across merged occurrences wins),
    // which apply to every point whatever their order on the wire.
    let (mut temporality, mut monotonic) = (0i32, false);
    if matches!(variant, SUM | HISTOGRAM | EXP_HISTOGRAM) {
        for_each_data(data, dbase, variant, |msg, mbase| {
            let mut r = Reader::new(msg, mbase);
            while !r.done() {
                let (f, w) = r.tag()?;
                match (f, w) {
                    (2, WT_VARINT) => temporality = r.varint()? as i32,
                    (3, WT_VARINT) if variant == SUM => monotonic = r.varint()? != 0,
                    (2, _) => return Err(r.err("wrong wire type for aggregation_temporality")),
                    (3, _) if variant == SUM => {
                        return Err(r.err("wrong wire type for is_monotonic"));
                    }
                    (_, WT_LEN) => drop(len_bytes(&mut r, mbase)?),
                    _ => r.skip(f, w)?,
                }
            }
            Ok(())
        })?;
    }
    let kind = match variant {
        GAUGE => Kind::Gauge,
        SUM => Kind::Sum {
            temporality,
            monotonic,
        },
        HISTOGRAM => Kind::Histogram { temporality },
        EXP_HISTOGRAM => Kind::ExponentialHistogram { temporality },
        _ => Kind::Summary,
    };
    let m = b.metric(res, name, unit, kind);
    // Pass 3: the points.
    loc.point = 0;
    for_each_data(data, dbase, variant, |msg, mbase| {
        let mut r = Reader::new(msg, mbase);
        while !r.done() {
            let (f, w) = r.tag()?;
            if f == 1 {
                if w != WT_LEN {
                    r.expect_len(w)?;
                }
                let (p, pbase) = len_bytes(&mut r, mbase)?;
                point(p, pbase, &m, loc, b, tally)?;
                loc.point = loc.point.saturating_add(1);
            } else {
                r.skip(f, w)?;
            }
        }
        Ok(())
    })
}

/// Reads a length-delimited field's value (after its tag) from `r`, whose buffer starts at
/// `base` in the request: [`Reader::bytes`] with two-byte lengths (128 to 16,383 bytes, the
/// size of most data points) read inline too.
// HOT PATH
#[inline(always)]
fn len_bytes<'a>(r: &mut Reader<'a>, base: usize) -> Result<(&'a [u8], usize), WireError> {
    let at = r.pos;
    if let Some([lo, hi, rest @ ..]) = r.buf.get(at..)
        && *lo >= 0x80
        && *hi < 0x80
    {
        let len = usize::from(lo & 0x7F) | (usize::from(*hi) << 7);
        if len <= rest.len() {
            r.pos = at + 2 + len;
            return Ok((&rest[..len], base + at + 2));
        }
    }
    r.bytes()
}

/// Calls `f` on every occurrence of field `variant` (a length-delimited message) in `buf`.
fn for_each_data<'a>(
    buf: &'a [u8],
    base: usize,
    variant: u32,
    mut f: impl FnMut(&'a [u8], usize) -> Result<(), WireError>,
) -> Result<(), WireError> {
    let mut r = Reader::new(buf, base);
    while !r.done() {
        let (field, wt) = r.tag()?;
        if field == variant {
            let (msg, mbase) = r.expect_len(wt)?;
            f(msg, mbase)?;
        } else {
            r.skip(field, wt)?;
        }
    }
    Ok(())
}

#[inline]
fn point<'a>(
    buf: &'a [u8],
    base: usize,
    m: &MetricCtx<'a>,
    loc: PointLoc,
    b: &mut Batch<'a>,
    tally: &mut MetricTally,
) -> Result<(), WireError> {
    let mut d = b.begin_point();
    match m.kind {
        Kind::Gauge | Kind::Sum { .. } => number_point(buf, base, b, &mut d)?,
        Kind::Histogram { .. } => histogram_point(buf, base, b, &mut d)?,
        Kind::ExponentialHistogram { .. } => exp_point(buf, base, b, &mut d)?,
        Kind::Summary => summary_point(buf, base, b, &mut d)?,
    }
    b.finish_point(m, &d, loc, tally);
    Ok(())
}

#[inline]
fn double(r: &mut Reader<'_>) -> Result<f64, WireError> {
    Ok(f64::from_bits(r.fixed64()?))
}

#[inline]
fn sint32(v: u64) -> i32 {
    let v = v as u32;
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}

#[cold]
#[inline(never)]
fn wrong_type(r: &Reader<'_>) -> WireError {
    r.err("wrong wire type for a data point field")
}

// HOT PATH
fn number_point<'a>(
    buf: &'a [u8],
    base: usize,
    b: &mut Batch<'a>,
    d: &mut Draft,
) -> Result<(), WireError> {
    let mut r = Reader::new(buf, base);
    while !r.done() {
        let (field, wt) = r.tag()?;
        match (field, wt) {
            (7, WT_LEN) => attribute(&mut r, b, d)?,
            (2, WT_I64) => d.start = r.fixed64()?,
            (3, WT_I64) => d.time = r.fixed64()?,
            (4, WT_I64) => d.number = Some(double(&mut r)?),
            (6, WT_I64) => d.number = Some(r.fixed64()? as i64 as f64),
            (8, WT_VARINT) => d.flags = r.varint()? as u32,
            (2 | 3 | 4 | 6 | 7 | 8, _) => return Err(wrong_type(&r)),
            _ => r.skip(field, wt)?,
        }
    }
    Ok(())
}

fn histogram_point<'a>(
    buf: &'a [u8],
    base: usize,
    b: &mut Batch<'a>,
    d: &mut Draft,
) -> Result<(), WireError> {
    let mut r = Reader::new(buf, base);
    while !r.done() {
        let (field, wt) = r.tag()?;
        match (field, wt) {
            (9, WT_LEN) => attribute(&mut r, b, d)?,
            (2, WT_I64) => d.start = r.fixed64()?,
            (3, WT_I64) => d.time = r.fixed64()?,
            (4, WT_I64) => d.count = r.fixed64()?,
            (5, WT_I64) => d.sum = Some(double(&mut r)?),
            (11, WT_I64) => d.min = Some(double(&mut r)?),
            (12, WT_I64) => d.max = Some(double(&mut r)?),
            (10, WT_VARINT) => d.flags = r.varint()? as u32,
            (6, WT_I64) => {
                let v = r.fixed64()?;
                b.bucket_count(d, v);
            }
            (7, WT_I64) => {
                let v = double(&mut r)?;
                b.bound(d, v);
            }
            (6 | 7, WT_LEN) => {
                let (packed, _) = r.bytes()?;
                if packed.len() % 8 != 0 {
                    return Err(r.err("packed fixed-width field length is not a multiple of 8"));
                }
                let bounds = field == 7;
                if packed.len() / 8 > b.explicit_room(d, bounds) {
                    // Too many buckets: skipped unread, the point is rejected.
                    b.overflow(d);
                    continue;
                }
                b.explicit_packed(bounds, packed.as_chunks::<8>().0);
            }
            (2..=7 | 9..=12, _) => return Err(wrong_type(&r)),
            _ => r.skip(field, wt)?,
        }
    }
    Ok(())
}

fn exp_point<'a>(
    buf: &'a [u8],
    base: usize,
    b: &mut Batch<'a>,
    d: &mut Draft,
) -> Result<(), WireError> {
    let mut r = Reader::new(buf, base);
    while !r.done() {
        let (field, wt) = r.tag()?;
        match (field, wt) {
            (1, WT_LEN) => attribute(&mut r, b, d)?,
            (2, WT_I64) => d.start = r.fixed64()?,
            (3, WT_I64) => d.time = r.fixed64()?,
            (4, WT_I64) => d.count = r.fixed64()?,
            (5, WT_I64) => d.sum = Some(double(&mut r)?),
            (6, WT_VARINT) => d.scale = sint32(r.varint()?),
            (7, WT_I64) => d.zero_count = r.fixed64()?,
            (8 | 9, WT_LEN) => {
                let negative = field == 9;
                let (msg, mbase) = r.bytes()?;
                let mut br = Reader::new(msg, mbase);
                while !br.done() {
                    let (f, w) = br.tag()?;
                    match (f, w) {
                        (1, WT_VARINT) => {
                            let offset = sint32(br.varint()?);
                            if negative {
                                d.negative_offset = offset;
                            } else {
                                d.positive_offset = offset;
                            }
                        }
                        (2, WT_VARINT) => {
                            let v = br.varint()?;
                            b.exp_count(d, negative, v);
                        }
                        (2, WT_LEN) => {
                            // Varints: the count is not known before reading them. Past the cap
                            // they are still scanned (to refuse what prost refuses), not stored.
                            let (packed, pbase) = br.bytes()?;
                            // Usually every count is below 128: one byte each.
                            if packed.iter().fold(0, |acc, &c| acc | c) < 0x80 {
                                b.exp_counts_small(d, negative, packed);
                                continue;
                            }
                            let mut pr = Reader::new(packed, pbase);
                            while !pr.done() {
                                let v = pr.varint()?;
                                b.exp_count(d, negative, v);
                            }
                        }
                        (1 | 2, _) => return Err(wrong_type(&br)),
                        _ => br.skip(f, w)?,
                    }
                }
            }
            (10, WT_VARINT) => d.flags = r.varint()? as u32,
            (12, WT_I64) => d.min = Some(double(&mut r)?),
            (13, WT_I64) => d.max = Some(double(&mut r)?),
            (14, WT_I64) => d.zero_threshold = double(&mut r)?,
            (1..=10 | 12..=14, _) => return Err(wrong_type(&r)),
            _ => r.skip(field, wt)?,
        }
    }
    Ok(())
}

fn summary_point<'a>(
    buf: &'a [u8],
    base: usize,
    b: &mut Batch<'a>,
    d: &mut Draft,
) -> Result<(), WireError> {
    d.sum = Some(0.0);
    let mut r = Reader::new(buf, base);
    while !r.done() {
        let (field, wt) = r.tag()?;
        match (field, wt) {
            (7, WT_LEN) => attribute(&mut r, b, d)?,
            (2, WT_I64) => d.start = r.fixed64()?,
            (3, WT_I64) => d.time = r.fixed64()?,
            (4, WT_I64) => d.count = r.fixed64()?,
            (5, WT_I64) => d.sum = Some(double(&mut r)?),
            (8, WT_VARINT) => d.flags = r.varint()? as u32,
            (6, WT_LEN) => {
                let (msg, mbase) = r.bytes()?;
                let mut qr = Reader::new(msg, mbase);
                let (mut q, mut v) = (0.0, 0.0);
                while !qr.done() {
                    let (f, w) = qr.tag()?;
                    match (f, w) {
                        (1, WT_I64) => q = double(&mut qr)?,
                        (2, WT_I64) => v = double(&mut qr)?,
                        (1 | 2, _) => return Err(wrong_type(&qr)),
                        _ => qr.skip(f, w)?,
                    }
                }
                b.quantile(d, q, v);
            }
            (2..=8, _) => return Err(wrong_type(&r)),
            _ => r.skip(field, wt)?,
        }
    }
    Ok(())
}

/// Reads one point attribute (a `KeyValue`) into the batch.
// HOT PATH
#[inline]
fn attribute<'a>(r: &mut Reader<'a>, b: &mut Batch<'a>, d: &mut Draft) -> Result<(), WireError> {
    let (kv, kbase) = r.bytes()?;
    let (key, value) = match split_key_value(kv, kbase) {
        // The usual layout, and the usual value: a short string.
        Some((key, [0x0A, len, s @ ..], _)) if *len < 0x80 && usize::from(*len) == s.len() => {
            if let Some(key) = b.known_key(key) {
                // The usual case: the key is the one this position had in the last point.
                if let Ok(value) = std::str::from_utf8(s) {
                    b.attr_text(d, key, value);
                    return Ok(());
                }
            } else if let Ok(all) = std::str::from_utf8(kv) {
                // `kv` is the key and the value with one-byte tags and lengths (ASCII) around
                // them: one UTF-8 check covers both.
                let (head, value) = all.split_at(all.len() - s.len());
                let key = &head[2..2 + key.len()];
                b.remember_key(key);
                b.attr_text(d, key, value);
                return Ok(());
            }
            (key, Scalar::Str(s))
        }
        Some((key, any, abase)) => (key, any_scalar(any, abase)?.unwrap_or(Scalar::Other)),
        None => key_value_general(kv, kbase)?,
    };
    b.attr(d, key, value);
    Ok(())
}

/// Any `KeyValue` layout: the last key wins, and a later `AnyValue` replaces the value only if
/// it sets a member of the oneof (protobuf merges repeated message fields).
#[inline(never)]
fn key_value_general(buf: &[u8], base: usize) -> Result<(&[u8], Scalar<'_>), WireError> {
    let mut key: &[u8] = b"";
    let mut value = Scalar::Other;
    let mut r = Reader::new(buf, base);
    while !r.done() {
        let (field, wt) = r.tag()?;
        match field {
            1 => key = r.expect_len(wt)?.0,
            2 => {
                let (any, abase) = r.expect_len(wt)?;
                if let Some(v) = any_scalar(any, abase)? {
                    value = v;
                }
            }
            _ => r.skip(field, wt)?,
        }
    }
    Ok((key, value))
}

/// The member an `AnyValue` sets last, or `None` when it sets none.
fn any_scalar(buf: &[u8], base: usize) -> Result<Option<Scalar<'_>>, WireError> {
    let mut value = None;
    let mut r = Reader::new(buf, base);
    while !r.done() {
        let (f, w) = r.tag()?;
        value = match (f, w) {
            (1, WT_LEN) => Some(Scalar::Str(r.bytes()?.0)),
            (2, WT_VARINT) => Some(Scalar::Bool(r.varint()? != 0)),
            (3, WT_VARINT) => Some(Scalar::Int(r.varint()? as i64)),
            (4, WT_I64) => Some(Scalar::Double(double(&mut r)?)),
            (5..=7, WT_LEN) => {
                r.bytes()?;
                Some(Scalar::Other)
            }
            (8, WT_VARINT) => {
                r.varint()?;
                Some(Scalar::Other)
            }
            (1..=8, _) => return Err(r.err("wrong wire type for an AnyValue field")),
            _ => {
                r.skip(f, w)?;
                value
            }
        };
    }
    Ok(value)
}
