//! OpenTelemetry probability sampling: the adjusted count of a sampled span, the number of
//! spans it stands for (the inverse of its sampling probability).
//!
//! Read, in order of precedence:
//! - the `th` (rejection threshold) of the `ot` entry of the W3C `tracestate`, as the
//!   OpenTelemetry "TraceState: Probability Sampling" specification writes it: 1 to 14
//!   lowercase hex digits, padded with trailing zeros to 56 bits; the sampling probability is
//!   `(2^56 − T) / 2^56` (`th:0` samples everything, `th:8` one in two, `th:c` one in four);
//! - the older experimental `p` value of the same entry (`ot=p:N`: probability `2^−N`);
//! - the legacy span attributes: `sampling.probability` (a probability in `(0, 1]`, from the
//!   first probability sampler specification) and `SampleRate` (one in N, from Honeycomb's
//!   and other vendors' samplers).
//!
//! Counts are rounded to the nearest whole number (an adjusted count of 3.0000000000000004 is
//! 3): slogate's counters are integers, and real samplers use probabilities whose inverse is
//! whole. Anything unparsable is treated as unsampled (count 1): a malformed `tracestate` must
//! not inflate a cohort.

/// Largest adjusted count accepted (a sampling probability below ~1e-6 is not a canary's).
pub const MAX_ADJUSTED_COUNT: u32 = 1 << 20;

/// The adjusted count from a `tracestate` header value, if its `ot` entry carries a `th` or a
/// `p` value.
pub fn adjusted_count_from_tracestate(tracestate: &[u8]) -> Option<u32> {
    // Cheap rejection first: almost every tracestate has no `ot=` entry.
    if !tracestate.windows(3).any(|w| w == b"ot=") {
        return None;
    }
    let ot = tracestate
        .split(|&b| b == b',')
        .map(trim)
        .find_map(|member| member.strip_prefix(b"ot="))?;
    let mut p_value = None;
    for field in ot.split(|&b| b == b';') {
        if let Some(hex) = field.strip_prefix(b"th:") {
            return threshold_count(hex);
        }
        if let Some(p) = field.strip_prefix(b"p:") {
            p_value = std::str::from_utf8(p)
                .ok()
                .and_then(|p| p.parse::<u32>().ok());
        }
    }
    // p = 63 meant "adjusted count zero" (not sampled by probability): count it once.
    p_value.filter(|p| *p < 63).and_then(|p| {
        let count = 1u64.checked_shl(p)?;
        u32::try_from(count)
            .ok()
            .filter(|c| *c <= MAX_ADJUSTED_COUNT)
    })
}

/// The adjusted count of a `th` rejection threshold (1–14 hex digits).
fn threshold_count(hex: &[u8]) -> Option<u32> {
    if hex.is_empty() || hex.len() > 14 {
        return None;
    }
    let mut t: u64 = 0;
    for &b in hex {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        t = (t << 4) | u64::from(d);
    }
    t <<= 4 * (14 - hex.len());
    let kept = (1u64 << 56) - t;
    adjusted_count_from_probability(kept as f64 / (1u64 << 56) as f64)
}

/// The adjusted count of a sampling probability in `(0, 1]`.
pub fn adjusted_count_from_probability(p: f64) -> Option<u32> {
    if !(p > 0.0 && p <= 1.0) {
        return None;
    }
    let count = (1.0 / p).round();
    (count >= 1.0 && count <= f64::from(MAX_ADJUSTED_COUNT)).then_some(count as u32)
}

/// The adjusted count of a `SampleRate`-style "one in N" attribute.
pub fn adjusted_count_from_rate(one_in: i64) -> Option<u32> {
    u32::try_from(one_in)
        .ok()
        .filter(|n| (1..=MAX_ADJUSTED_COUNT).contains(n))
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_from_the_specification() {
        let cases: &[(&str, Option<u32>)] = &[
            ("ot=th:0", Some(1)),
            ("ot=th:8", Some(2)),
            ("ot=th:c", Some(4)),
            ("ot=th:c0", Some(4)),
            ("ot=th:e", Some(8)),
            // One in 10 (the specification's 10 % example).
            ("ot=th:e666666666666", Some(10)),
            // One in 100, with other fields and vendors around it.
            (
                "vendor=x,ot=rv:abcdef01234567;th:fd70a3d70a3d71,other=y",
                Some(100),
            ),
            (" rojo=00f067aa0ba902b7 , ot=th:f", Some(16)),
            // Older experimental p-values: 2^-p.
            ("ot=p:3", Some(8)),
            ("ot=p:0", Some(1)),
            ("ot=p:63", None),
            // Malformed or absent: unsampled.
            ("ot=th:", None),
            ("ot=th:G", None),
            ("ot=th:fffffffffffffff", None),
            ("ot=th:ffffffffffffff", None),
            ("rojo=00f067aa0ba902b7", None),
            ("", None),
            ("notot=th:8", None),
        ];
        for (ts, want) in cases {
            assert_eq!(adjusted_count_from_tracestate(ts.as_bytes()), *want, "{ts}");
        }
    }

    #[test]
    fn legacy_attributes() {
        assert_eq!(adjusted_count_from_probability(0.25), Some(4));
        assert_eq!(adjusted_count_from_probability(1.0), Some(1));
        assert_eq!(adjusted_count_from_probability(0.1), Some(10));
        assert_eq!(adjusted_count_from_probability(0.0), None);
        assert_eq!(adjusted_count_from_probability(1.5), None);
        assert_eq!(adjusted_count_from_probability(f64::NAN), None);
        assert_eq!(adjusted_count_from_rate(20), Some(20));
        assert_eq!(adjusted_count_from_rate(0), None);
        assert_eq!(adjusted_count_from_rate(-5), None);
    }
}
