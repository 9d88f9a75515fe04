//! The OTLP trace fast path: walks `ExportTraceServiceRequest` protobuf bytes and extracts
//! observations without materialising messages or attribute strings.
//!
//! HOT PATH: everything here runs per span. It allocates nothing (observations borrow from the
//! request buffer and are pushed into a caller-owned vector), reads only the fields extraction
//! needs and skips the rest by wire type. Every length is checked against the bytes that are
//! actually there, never trusted for allocation.
//!
//! Field numbers (opentelemetry-proto, collector/trace/v1 and trace/v1):
//! request{1: resource_spans}; ResourceSpans{1: resource, 2: scope_spans};
//! Resource{1: attributes}; ScopeSpans{2: spans}; Span{1: trace_id, 2: span_id, 5: name,
//! 6: kind, 7: start (fixed64), 8: end (fixed64), 9: attributes, 15: status};
//! Status{3: code}; KeyValue{1: key, 2: value}; AnyValue{1: string, 3: int}.

use crate::extract::{
    AttrValue, ExtractConfig, Extracted, ResourceFields, SpanFields, SpanLimits, Tally, extract_ns,
};
use slogate_core::Observation;

/// A request that is not valid protobuf for `ExportTraceServiceRequest`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed protobuf: {what} at byte {offset}")]
pub struct WireError {
    pub what: &'static str,
    pub offset: usize,
}

pub(crate) struct Reader<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
    /// Offset of `buf` in the whole request, for error messages.
    base: usize,
}

pub(crate) const WT_VARINT: u8 = 0;
pub(crate) const WT_I64: u8 = 1;
pub(crate) const WT_LEN: u8 = 2;
pub(crate) const WT_START_GROUP: u8 = 3;
pub(crate) const WT_END_GROUP: u8 = 4;
pub(crate) const WT_I32: u8 = 5;

/// Groups (the deprecated proto2 wire types 3 and 4) nest at most this deep in a skipped field,
/// counting a group's fields one level deeper than the group: prost's recursion limit, exactly
/// at the top level of the request. (prost also counts the messages around a group, so inside
/// a span it stops a few levels earlier; whatever prost accepts is accepted here too.)
const MAX_GROUP_DEPTH: u32 = 100;

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, base }
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn err(&self, what: &'static str) -> WireError {
        WireError {
            what,
            offset: self.base + self.pos,
        }
    }

    #[inline]
    pub(crate) fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Most varints on the OTLP wire (tags, lengths below 128, kinds, status codes) are one
    /// byte; that case is one bounds check and one compare, the rest goes out of line.
    #[inline(always)]
    pub(crate) fn varint(&mut self) -> Result<u64, WireError> {
        // HOT PATH. Nested on purpose: merged into one pattern (`Some(&b @ 0..0x80)`) the
        // same instructions decode 5 % slower (decode_loop 131 vs 138 ns/span, 2,244
        // instructions/span either way, 2026-11-29), from the branch layout.
        #[allow(clippy::collapsible_if)]
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b));
            }
        }
        self.varint_slow()
    }

    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64, WireError> {
        let mut out: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err("truncated varint"));
            };
            self.pos += 1;
            out |= u64::from(b & 0x7F) << (7 * i);
            if b < 0x80 {
                return Ok(out);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    /// Field numbers below 16 have one-byte tags: every field the decoder reads does.
    #[inline(always)]
    pub(crate) fn tag(&mut self) -> Result<(u32, u8), WireError> {
        // Nested on purpose, as in `varint`.
        #[allow(clippy::collapsible_if)]
        if let Some(&b) = self.buf.get(self.pos) {
            if (8..0x80).contains(&b) {
                self.pos += 1;
                return Ok((u32::from(b >> 3), b & 7));
            }
        }
        self.tag_slow()
    }

    #[inline(never)]
    fn tag_slow(&mut self) -> Result<(u32, u8), WireError> {
        let t = self.varint()?;
        let field = (t >> 3) as u32;
        if field == 0 || t >> 3 > u64::from(u32::MAX >> 3) {
            return Err(self.err("invalid field number"));
        }
        Ok((field, (t & 7) as u8))
    }

    #[inline]
    pub(crate) fn bytes(&mut self) -> Result<(&'a [u8], usize), WireError> {
        let len = self.varint()?;
        let start = self.pos;
        if len > (self.buf.len() - start) as u64 {
            return Err(self.err("length-delimited field runs past the end of its message"));
        }
        self.pos = start + len as usize;
        Ok((&self.buf[start..self.pos], self.base + start))
    }

    #[inline]
    pub(crate) fn fixed64(&mut self) -> Result<u64, WireError> {
        let Some(b) = self.buf.get(self.pos..self.pos + 8) else {
            return Err(self.err("truncated fixed64"));
        };
        self.pos += 8;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    /// Skips the value of a field the decoder does not read. `field` is the field's number
    /// (a group ends with an end-group tag of the same number).
    #[inline]
    pub(crate) fn skip(&mut self, field: u32, wire_type: u8) -> Result<(), WireError> {
        match wire_type {
            WT_VARINT => self.varint().map(drop),
            WT_I64 => self.fixed64().map(drop),
            WT_LEN => self.bytes().map(drop),
            WT_I32 => {
                if self.buf.len() - self.pos < 4 {
                    return Err(self.err("truncated fixed32"));
                }
                self.pos += 4;
                Ok(())
            }
            // Unknown fields may be groups: protobuf parsers (prost, protobuf-go, the C++ one)
            // skip them, so refusing them would refuse requests every other receiver accepts.
            WT_START_GROUP => self.skip_group(field, 1),
            WT_END_GROUP => Err(self.err("end-group tag without a matching start-group tag")),
            _ => Err(self.err("unsupported wire type")),
        }
    }

    /// Skips a group's fields up to its end-group tag, nested groups included.
    #[cold]
    #[inline(never)]
    fn skip_group(&mut self, field: u32, depth: u32) -> Result<(), WireError> {
        if depth > MAX_GROUP_DEPTH {
            return Err(self.err("groups nested too deep"));
        }
        loop {
            let (f, w) = self.tag()?;
            match w {
                WT_END_GROUP if f == field => return Ok(()),
                WT_END_GROUP => {
                    return Err(self.err("end-group tag does not match its start-group tag"));
                }
                // prost counts a group's fields one level deeper than the group.
                _ if depth >= MAX_GROUP_DEPTH => return Err(self.err("groups nested too deep")),
                WT_START_GROUP => self.skip_group(f, depth + 1)?,
                _ => self.skip(f, w)?,
            }
        }
    }

    /// Reads a length-delimited field after checking its wire type.
    #[inline]
    pub(crate) fn expect_len(&mut self, wire_type: u8) -> Result<(&'a [u8], usize), WireError> {
        if wire_type != WT_LEN {
            return Err(self.err("wrong wire type for a message or string field"));
        }
        self.bytes()
    }
}

/// Decodes a whole request with the default [`SpanLimits`]; see [`decode_traces_with`].
pub fn decode_traces<'a>(
    buf: &'a [u8],
    cfg: &ExtractConfig,
    out: &mut Vec<Observation<'a>>,
    tally: &mut Tally,
) -> Result<(), WireError> {
    decode_traces_with(buf, cfg, &SpanLimits::DEFAULT, out, tally)
}

/// Decodes a whole request, pushing observations into `out` and counting the rest in `tally`.
/// On `Err` the request must be refused as a whole; `out` may hold a prefix and is to be dropped.
pub fn decode_traces_with<'a>(
    buf: &'a [u8],
    cfg: &ExtractConfig,
    limits: &SpanLimits,
    out: &mut Vec<Observation<'a>>,
    tally: &mut Tally,
) -> Result<(), WireError> {
    tally.limits = *limits;
    let max_duration_ns = limits.max_duration_ns();
    let mut r = Reader::new(buf, 0);
    let mut resource_index = 0u32;
    while !r.done() {
        let (field, wt) = r.tag()?;
        if field == 1 {
            let (rs, base) = r.expect_len(wt)?;
            resource_spans(rs, base, resource_index, cfg, max_duration_ns, out, tally)?;
            resource_index = resource_index.saturating_add(1);
        } else {
            r.skip(field, wt)?;
        }
    }
    Ok(())
}

fn resource_spans<'a>(
    buf: &'a [u8],
    base: usize,
    resource_index: u32,
    cfg: &ExtractConfig,
    max_duration_ns: u64,
    out: &mut Vec<Observation<'a>>,
    tally: &mut Tally,
) -> Result<(), WireError> {
    // The resource may come after the spans on the wire (fields may appear in any order), so
    // the resource is read first in its own pass.
    let mut res = ResourceFields::default();
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
    res.check_utf8();
    let mut r = Reader::new(buf, base);
    let mut span_index = 0u32;
    while !r.done() {
        let (field, wt) = r.tag()?;
        if field == 2 {
            let (scope, sbase) = r.expect_len(wt)?;
            let mut sr = Reader::new(scope, sbase);
            while !sr.done() {
                let (f, w) = sr.tag()?;
                if f == 2 {
                    let (span_bytes, spbase) = sr.expect_len(w)?;
                    // Filled in place and read in place: returned by value inside a `Result`, the
                    // struct was copied with wide loads over its narrow field stores.
                    let mut fields = SpanFields::default();
                    span(span_bytes, spbase, cfg, &mut fields)?;
                    match extract_ns(cfg, max_duration_ns, &res, &fields) {
                        Extracted::Observation(o) => {
                            out.push(o);
                            tally.recorded += 1;
                        }
                        Extracted::Skipped => tally.skipped += 1,
                        Extracted::Rejected(why) => tally.reject(why, resource_index, span_index),
                    }
                    span_index = span_index.saturating_add(1);
                } else {
                    sr.skip(f, w)?;
                }
            }
        } else {
            r.skip(field, wt)?;
        }
    }
    Ok(())
}

#[inline]
fn id_ok(id: &[u8], len: usize) -> bool {
    id.len() == len && id.iter().any(|b| *b != 0)
}

#[inline]
fn span<'a>(
    buf: &'a [u8],
    base: usize,
    cfg: &ExtractConfig,
    s: &mut SpanFields<'a>,
) -> Result<(), WireError> {
    let mut r = Reader::new(buf, base);
    while !r.done() {
        let (field, wt) = r.tag()?;
        match (field, wt) {
            (1, WT_LEN) => s.trace_id_ok = id_ok(r.bytes()?.0, 16),
            (2, WT_LEN) => s.span_id_ok = id_ok(r.bytes()?.0, 8),
            (3, WT_LEN) => s.trace_state = r.bytes()?.0,
            (5, WT_LEN) => s.name = r.bytes()?.0,
            (6, WT_VARINT) => s.kind = r.varint()? as i32,
            (7, WT_I64) => s.start_ns = r.fixed64()?,
            (8, WT_I64) => s.end_ns = r.fixed64()?,
            (9, WT_LEN) => {
                let (kv, kbase) = r.bytes()?;
                // Most attributes are not read by extraction: their values are skipped unparsed
                // and their keys compared once. The usual layout is split inline, so key and
                // value stay in registers: merging it with the general path's result (returned
                // through memory) made every attribute wait on a failed store-to-load forward.
                match split_key_value(kv, kbase) {
                    Some((key, value, vbase)) => {
                        if cfg.span_key_wanted(key) {
                            s.offer(cfg, key, any_value(Some((value, vbase)))?);
                        }
                    }
                    None => {
                        let wanted = |key: &[u8]| cfg.span_key_wanted(key);
                        if let (key, Some(value)) = key_value_general(kv, kbase, wanted)? {
                            s.offer(cfg, key, value);
                        }
                    }
                }
            }
            (15, WT_LEN) => {
                let (status, stbase) = r.bytes()?;
                let mut sr = Reader::new(status, stbase);
                while !sr.done() {
                    let (f, w) = sr.tag()?;
                    if (f, w) == (3, WT_VARINT) {
                        s.status_code = sr.varint()? as i32;
                    } else {
                        sr.skip(f, w)?;
                    }
                }
            }
            (1 | 2 | 3 | 5 | 6 | 7 | 8 | 9 | 15, _) => {
                return Err(r.err("wrong wire type for a span field"));
            }
            _ => r.skip(field, wt)?,
        }
    }
    Ok(())
}

/// Reads a `KeyValue`: the key bytes and, for string and int values, the value.
#[inline]
pub(crate) fn key_value(buf: &[u8], base: usize) -> Result<(&[u8], AttrValue<'_>), WireError> {
    match split_key_value(buf, base) {
        Some((key, value, vbase)) => Ok((key, any_value(Some((value, vbase)))?)),
        None => {
            let (key, value) = key_value_general(buf, base, |_| true)?;
            Ok((key, value.unwrap_or_default()))
        }
    }
}

/// The unparsed bytes of an `AnyValue` and their offset in the request, if the `KeyValue` had one.
type AnyBytes<'a> = Option<(&'a [u8], usize)>;

/// The usual `KeyValue` layout: every encoder writes `1: key` then `2: value`, each with a
/// one-byte tag; keys are shorter than 128 bytes and values usually are. Read with
/// straight-line checks: `(key, AnyValue bytes, their offset)`, or `None` for any other layout
/// (then [`key_value_general`] reads it).
// HOT PATH
#[inline(always)]
pub(crate) fn split_key_value(buf: &[u8], base: usize) -> Option<(&[u8], &[u8], usize)> {
    if let [0x0A, klen, rest @ ..] = buf {
        let klen = usize::from(*klen);
        if klen < 0x80 && klen < rest.len() {
            let (key, rest) = rest.split_at(klen);
            // Nested on purpose, as in `Reader::varint`.
            #[allow(clippy::collapsible_if)]
            if let [0x12, vlen, value @ ..] = rest {
                if *vlen < 0x80 && usize::from(*vlen) == value.len() {
                    return Some((key, value, base + buf.len() - value.len()));
                }
            }
        }
    }
    None
}

/// Any `KeyValue` layout: fields in any order, repeated, unknown ones in between. The value is
/// parsed only when `wanted(key)`; `None` otherwise.
#[inline(never)]
fn key_value_general<'a>(
    buf: &'a [u8],
    base: usize,
    wanted: impl Fn(&[u8]) -> bool,
) -> Result<(&'a [u8], Option<AttrValue<'a>>), WireError> {
    let mut key: &[u8] = b"";
    let mut values = 0u32;
    let mut r = Reader::new(buf, base);
    while !r.done() {
        let (field, wt) = r.tag()?;
        match field {
            1 => key = r.expect_len(wt)?.0,
            2 => {
                r.expect_len(wt)?;
                values += 1;
            }
            _ => r.skip(field, wt)?,
        }
    }
    if !wanted(key) {
        return Ok((key, None));
    }
    // A message field that occurs more than once is merged (protobuf's rule, and prost's): a
    // later `AnyValue` replaces the value only if it sets one of the oneof's members.
    let mut value = AttrValue::Absent;
    if values > 0 {
        let mut r = Reader::new(buf, base);
        while !r.done() {
            let (field, wt) = r.tag()?;
            if field == 2 {
                if let Some(v) = any_member(r.expect_len(wt)?)? {
                    value = v;
                }
            } else {
                r.skip(field, wt)?;
            }
        }
    }
    Ok((key, Some(value)))
}

/// Parses an `AnyValue`: strings and ints are kept, every other kind is `Absent`. The usual
/// layouts (one short string, one int of up to two varint bytes) are read inline.
// HOT PATH
#[inline(always)]
fn any_value(any: AnyBytes<'_>) -> Result<AttrValue<'_>, WireError> {
    match any {
        Some(([0x0A, len, s @ ..], _)) if *len < 0x80 && usize::from(*len) == s.len() => {
            Ok(AttrValue::Str(s))
        }
        Some((&[0x18, v], _)) if v < 0x80 => Ok(AttrValue::Int(i64::from(v))),
        Some((&[0x18, lo, hi], _)) if lo >= 0x80 && hi < 0x80 => {
            Ok(AttrValue::Int(i64::from(lo & 0x7F) | (i64::from(hi) << 7)))
        }
        _ => any_value_general(any),
    }
}

#[inline(never)]
fn any_value_general(any: AnyBytes<'_>) -> Result<AttrValue<'_>, WireError> {
    match any {
        Some(any) => Ok(any_member(any)?.unwrap_or_default()),
        None => Ok(AttrValue::Absent),
    }
}

/// The oneof member an `AnyValue` sets last (strings and ints kept, every other kind
/// `Absent`), or `None` when it sets none.
fn any_member((any, abase): (&[u8], usize)) -> Result<Option<AttrValue<'_>>, WireError> {
    let mut value = None;
    let mut ar = Reader::new(any, abase);
    while !ar.done() {
        let (f, w) = ar.tag()?;
        match (f, w) {
            (1, WT_LEN) => value = Some(AttrValue::Str(ar.bytes()?.0)),
            (3, WT_VARINT) => value = Some(AttrValue::Int(ar.varint()? as i64)),
            (4, WT_I64) => value = Some(AttrValue::Double(f64::from_bits(ar.fixed64()?))),
            // bool, array, kvlist, bytes, string_value_strindex (profiles only): a later member
            // replaces an earlier one.
            (2 | 4 | 5 | 6 | 7 | 8, _) => {
                value = Some(AttrValue::Absent);
                ar.skip(f, w)?;
            }
            _ => ar.skip(f, w)?,
        }
    }
    Ok(value)
}
