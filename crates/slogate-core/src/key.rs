//! Series keys (owned) and observations (borrowed from the request buffer).

use serde::Serialize;

/// At most this many configured extra dimensions; the array in [`Observation`] is fixed-size so
/// that an observation never allocates.
pub const MAX_EXTRA_DIMS: usize = 4;

/// Dimension values longer than this are truncated (at a UTF-8 boundary). Clients send
/// attribute values of any length; a series key must stay small.
pub const MAX_DIM_BYTES: usize = 256;

/// The value that replaces a dimension once a cardinality cap is reached.
pub const OVERFLOW: &str = "__overflow__";

/// The operation of a span: one or two parts, joined by a space when both are present
/// (`GET /users/{id}`, `payments.Ledger/Post`... the second form is written by the extractor as
/// `rpc.service` + `/` + `rpc.method`, hence the separator is part of the value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation<'a> {
    pub first: &'a [u8],
    pub sep: u8,
    pub second: &'a [u8],
}

impl<'a> Operation<'a> {
    pub const fn single(name: &'a [u8]) -> Self {
        Operation {
            first: name,
            sep: 0,
            second: b"",
        }
    }
    pub const fn pair(first: &'a [u8], sep: u8, second: &'a [u8]) -> Self {
        Operation { first, sep, second }
    }
    /// Appends the joined operation to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.first);
        if self.sep != 0 {
            out.push(self.sep);
            out.extend_from_slice(self.second);
        }
    }
    pub fn to_string_lossy(&self) -> String {
        let mut v = Vec::new();
        self.write_to(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    }
}

/// One span turned into what slogate measures. Every string borrows from the decoded request
/// and is valid UTF-8: the decoders reject a span whose dimension is not, which is what keeps
/// the `0xFF` terminator of [`write_key`] out of the values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation<'a> {
    pub service: &'a [u8],
    pub env: &'a [u8],
    pub version: &'a [u8],
    pub operation: Operation<'a>,
    pub extras: [&'a [u8]; MAX_EXTRA_DIMS],
    pub error: bool,
    pub duration_ns: u64,
    /// How many spans this one stands for: 1, or the inverse of its sampling probability when
    /// the span says it was sampled (see [`crate::sampling`]). Counts grow by it; the latency
    /// sketch records the span once.
    pub adjusted_count: u32,
}

/// The owned identity of a series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct SeriesKey {
    pub service: String,
    pub env: String,
    pub version: String,
    pub operation: String,
    /// Values of the configured extra dimensions, in configuration order.
    pub extras: Vec<String>,
}

fn clip(v: &[u8]) -> &[u8] {
    if v.len() <= MAX_DIM_BYTES {
        return v;
    }
    let mut end = MAX_DIM_BYTES;
    // Step back to a UTF-8 boundary: continuation bytes look like 0b10xx_xxxx.
    while end > 0 && (v[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    &v[..end]
}

/// Writes the canonical key bytes of an observation into `out` (cleared first): each dimension
/// clipped to [`MAX_DIM_BYTES`] and terminated by `0xFF`, a byte that never occurs in UTF-8, so
/// distinct keys never collide. `extra_count` is how many extras are configured.
pub fn write_key(obs: &Observation<'_>, extra_count: usize, out: &mut Vec<u8>) {
    debug_assert!(
        [
            obs.service,
            obs.env,
            obs.version,
            obs.operation.first,
            obs.operation.second
        ]
        .iter()
        .chain(&obs.extras)
        .all(|v| std::str::from_utf8(v).is_ok()),
        "observation dimensions must be valid UTF-8: {obs:?}"
    );
    out.clear();
    for part in [obs.service, obs.env, obs.version] {
        out.extend_from_slice(clip(part));
        out.push(0xFF);
    }
    let start = out.len();
    obs.operation.write_to(out);
    if out.len() - start > MAX_DIM_BYTES {
        let clipped = clip(&out[start..]).len();
        out.truncate(start + clipped);
    }
    out.push(0xFF);
    for extra in &obs.extras[..extra_count.min(MAX_EXTRA_DIMS)] {
        out.extend_from_slice(clip(extra));
        out.push(0xFF);
    }
}

impl SeriesKey {
    /// Rebuilds a key from the bytes written by [`write_key`]. Invalid UTF-8 is replaced.
    pub fn from_key_bytes(bytes: &[u8]) -> SeriesKey {
        let mut parts = bytes
            .split(|b| *b == 0xFF)
            .map(|p| String::from_utf8_lossy(p).into_owned());
        let service = parts.next().unwrap_or_default();
        let env = parts.next().unwrap_or_default();
        let version = parts.next().unwrap_or_default();
        let operation = parts.next().unwrap_or_default();
        let mut extras: Vec<String> = parts.collect();
        // The trailing terminator yields one empty part at the end.
        extras.pop();
        SeriesKey {
            service,
            env,
            version,
            operation,
            extras,
        }
    }

    /// Writes this key in the [`write_key`] encoding.
    pub fn key_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for part in [&self.service, &self.env, &self.version, &self.operation] {
            out.extend_from_slice(part.as_bytes());
            out.push(0xFF);
        }
        for e in &self.extras {
            out.extend_from_slice(e.as_bytes());
            out.push(0xFF);
        }
        out
    }

    /// The value of a named dimension; extras are looked up through `extra_names`.
    pub fn dim(&self, name: &str, extra_names: &[String]) -> Option<&str> {
        match name {
            "service" => Some(&self.service),
            "env" => Some(&self.env),
            "version" => Some(&self.version),
            "operation" => Some(&self.operation),
            other => extra_names
                .iter()
                .position(|n| n == other)
                .and_then(|i| self.extras.get(i))
                .map(String::as_str),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs<'a>(service: &'a str, op: Operation<'a>, extra: &'a str) -> Observation<'a> {
        Observation {
            service: service.as_bytes(),
            env: b"prod",
            version: b"v2",
            operation: op,
            extras: [extra.as_bytes(), b"", b"", b""],
            error: false,
            duration_ns: 1,
            adjusted_count: 1,
        }
    }

    #[test]
    fn key_roundtrip() {
        let cases = [
            (
                obs(
                    "checkout",
                    Operation::pair(b"GET", b' ', b"/cart/{id}"),
                    "eu-west-1",
                ),
                1,
                "GET /cart/{id}",
                vec!["eu-west-1"],
            ),
            (
                obs("auth", Operation::single(b"login"), ""),
                0,
                "login",
                vec![],
            ),
            (obs("", Operation::single(b""), "x"), 1, "", vec!["x"]),
        ];
        for (o, extras, op, want_extras) in cases {
            let mut buf = Vec::new();
            write_key(&o, extras, &mut buf);
            let key = SeriesKey::from_key_bytes(&buf);
            assert_eq!(key.operation, op);
            assert_eq!(key.extras, want_extras);
            assert_eq!(key.key_bytes(), buf, "key bytes are canonical");
        }
    }

    #[test]
    fn long_values_are_clipped_at_char_boundary() {
        let long = "é".repeat(300); // 600 bytes
        let o = obs(&long, Operation::single(long.as_bytes()), "");
        let mut buf = Vec::new();
        write_key(&o, 0, &mut buf);
        let key = SeriesKey::from_key_bytes(&buf);
        assert_eq!(key.service.len(), MAX_DIM_BYTES);
        assert_eq!(key.operation.len(), MAX_DIM_BYTES);
        assert!(key.service.chars().all(|c| c == 'é'));
    }

    /// Valid UTF-8 never holds the terminator, whatever the characters: U+00FF and U+FFFF
    /// included. So a value cannot end a dimension early and carry the rest into the next.
    #[test]
    fn utf8_values_never_hold_the_terminator() {
        let values = [
            "\u{ff}",
            "\u{ffff}",
            "\u{10ffff}",
            "caf\u{e9} \u{1F600}",
            "a\u{7f}",
        ];
        for v in values {
            assert!(!v.as_bytes().contains(&0xFF), "{v:?}");
            let o = Observation {
                env: v.as_bytes(),
                ..obs(v, Operation::pair(v.as_bytes(), b' ', v.as_bytes()), v)
            };
            let mut buf = Vec::new();
            write_key(&o, 1, &mut buf);
            let key = SeriesKey::from_key_bytes(&buf);
            assert_eq!(
                (key.service.as_str(), key.env.as_str(), key.extras.len()),
                (v, v, 1)
            );
            assert_eq!(key.key_bytes(), buf);
        }
    }

    #[test]
    fn distinct_splits_do_not_collide() {
        let a = Observation {
            env: b"ab",
            version: b"c",
            ..obs("s", Operation::single(b"o"), "")
        };
        let b = Observation {
            env: b"a",
            version: b"bc",
            ..obs("s", Operation::single(b"o"), "")
        };
        let (mut ka, mut kb) = (Vec::new(), Vec::new());
        write_key(&a, 0, &mut ka);
        write_key(&b, 0, &mut kb);
        assert_ne!(ka, kb);
    }
}
