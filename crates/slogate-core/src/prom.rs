//! Prometheus text exposition (format 0.0.4): families with their `# HELP` and `# TYPE` lines,
//! samples with escaped label values, and values in the format's float syntax.
//!
//! Every `/metrics` renderer writes through [`family`], so the format's rules live here once:
//! - A [`Family`] mutably borrows the output until it is dropped, so all samples of a family are
//!   written together, right after its header; two families cannot interleave.
//! - Label values are escaped (`\` → `\\`, `"` → `\"`, newline → `\n`), HELP text too (`\` and
//!   newline); label values are written through an escaping [`fmt::Write`], so a number or any
//!   other [`fmt::Display`] value becomes a label value without a temporary string.
//! - Metric and label names are sanitised as they are written: a character outside
//!   `[a-zA-Z0-9_:]` (`[a-zA-Z0-9_]` for labels) becomes `_`, and a leading digit gets a `_`
//!   in front, so a configured name can never break the output.
//! - Values are written by [`Value`]: integers as they are, floats by [`Float`] (`NaN`, `+Inf`,
//!   `-Inf`, otherwise Rust's shortest round-trip decimal, never an exponent).
//!
//! ```
//! use slogate_core::prom::{self, Kind};
//!
//! let mut out = String::new();
//! {
//!     let mut f = prom::family(&mut out, "jobs_total", Kind::Counter, "Jobs run, by queue.");
//!     f.sample(&[("queue", &"mail")], 3u64);
//!     f.sample(&[("queue", &"say \"hi\"")], 1u64);
//! }
//! assert_eq!(
//!     out,
//!     "# HELP jobs_total Jobs run, by queue.\n# TYPE jobs_total counter\n\
//!      jobs_total{queue=\"mail\"} 3\njobs_total{queue=\"say \\\"hi\\\"\"} 1\n"
//! );
//! ```

use std::fmt::{self, Write as _};

/// The `# TYPE` of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
            Kind::Untyped => "untyped",
        }
    }
}

/// Labels of one sample: `(name, value)` pairs, written in this order. A value is anything
/// [`fmt::Display`]; it is escaped as it is written.
pub type Labels<'a> = [(&'a str, &'a dyn fmt::Display)];

/// Starts a metric family: writes its `# HELP` and `# TYPE` lines to `out` and returns the
/// [`Family`] that writes its samples. Each family should be started once per exposition; a
/// family without samples is valid (the header alone).
pub fn family<'a>(out: &'a mut String, name: &'a str, kind: Kind, help: &str) -> Family<'a> {
    debug_assert!(
        !declared(out, name),
        "metric family {name} is written twice in one exposition"
    );
    out.push_str("# HELP ");
    write_name(out, name, true);
    if !help.is_empty() {
        out.push(' ');
        escape_help(help, out);
    }
    out.push_str("\n# TYPE ");
    write_name(out, name, true);
    out.push(' ');
    out.push_str(kind.as_str());
    out.push('\n');
    Family { out, name }
}

/// The samples of one family; see [`family`].
pub struct Family<'a> {
    out: &'a mut String,
    name: &'a str,
}

impl Family<'_> {
    /// Writes `name{labels} value`.
    pub fn sample(&mut self, labels: &Labels<'_>, value: impl Value) {
        self.sample_suffixed("", labels, value);
    }

    /// Writes `name<suffix>{labels} value`, for the `_bucket`, `_sum` and `_count` series of a
    /// histogram or summary.
    pub fn sample_suffixed(&mut self, suffix: &str, labels: &Labels<'_>, value: impl Value) {
        let out = &mut *self.out;
        write_name(out, self.name, true);
        for c in suffix.chars() {
            out.push(if is_name_char(c, true) { c } else { '_' });
        }
        if !labels.is_empty() {
            out.push('{');
            for (i, (name, value)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_name(out, name, false);
                out.push_str("=\"");
                // Writing into a `String` cannot fail; a `Display` impl that reports an error
                // leaves its partial text, which is still a well-formed, escaped value.
                let _ = write!(LabelValue(out), "{value}");
                out.push('"');
            }
            out.push('}');
        }
        out.push(' ');
        value.write_value(out);
        out.push('\n');
    }
}

/// A sample value.
pub trait Value {
    fn write_value(self, out: &mut String);
}

macro_rules! integer_value {
    ($($t:ty),*) => {$(
        impl Value for $t {
            fn write_value(self, out: &mut String) {
                let _ = write!(out, "{self}");
            }
        }
    )*};
}
integer_value!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);

impl Value for f64 {
    fn write_value(self, out: &mut String) {
        let _ = write!(out, "{}", Float(self));
    }
}

impl Value for f32 {
    fn write_value(self, out: &mut String) {
        f64::from(self).write_value(out);
    }
}

/// 1 for true, 0 for false: the value of a state or "is current" gauge.
impl Value for bool {
    fn write_value(self, out: &mut String) {
        out.push(if self { '1' } else { '0' });
    }
}

/// A float in the exposition's syntax: `NaN`, `+Inf`, `-Inf`, otherwise Rust's `Display`
/// (the shortest decimal that reads back as the same float, `1` rather than `1.0`). Usable as
/// a label value too, as the `le` of a histogram bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Float(pub f64);

impl fmt::Display for Float {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if v.is_nan() {
            f.write_str("NaN")
        } else if v == f64::INFINITY {
            f.write_str("+Inf")
        } else if v == f64::NEG_INFINITY {
            f.write_str("-Inf")
        } else {
            write!(f, "{v}")
        }
    }
}

/// Appends `s` escaped as a label value: `\` → `\\`, `"` → `\"`, newline → `\n`.
pub fn escape_label_value(s: &str, out: &mut String) {
    escape(s, out, true);
}

/// Appends `s` escaped as HELP text: `\` → `\\`, newline → `\n` (quotes stay).
pub fn escape_help(s: &str, out: &mut String) {
    escape(s, out, false);
}

fn escape(s: &str, out: &mut String, quote: bool) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Escapes everything written through it as a label value.
struct LabelValue<'a>(&'a mut String);

impl fmt::Write for LabelValue<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_label_value(s, self.0);
        Ok(())
    }
}

fn is_name_char(c: char, metric: bool) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || (metric && c == ':')
}

/// Whether `name` is a valid metric name, `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(name: &str) -> bool {
    is_valid_name(name, true)
}

/// Whether `name` is a valid label name, `[a-zA-Z_][a-zA-Z0-9_]*`. (Names starting with `__`
/// are valid but reserved for Prometheus itself.)
pub fn is_valid_label_name(name: &str) -> bool {
    is_valid_name(name, false)
}

fn is_valid_name(name: &str, metric: bool) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| is_name_char(c, metric))
}

/// Writes `name` sanitised: invalid characters become `_`, a leading digit (or an empty name)
/// gets a `_` in front.
fn write_name(out: &mut String, name: &str, metric: bool) {
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    for c in name.chars() {
        out.push(if is_name_char(c, metric) { c } else { '_' });
    }
}

/// Whether a `# TYPE` line for `name` is already in `out` (debug check only: it scans).
fn declared(out: &str, name: &str) -> bool {
    out.lines().any(|l| {
        l.strip_prefix("# TYPE ")
            .and_then(|rest| rest.strip_prefix(name))
            .is_some_and(|rest| rest.starts_with(' '))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_escape(f: fn(&str, &mut String), cases: &[(&str, &str)]) {
        for (input, want) in cases {
            let mut out = String::new();
            f(input, &mut out);
            assert_eq!(out, *want, "{input:?}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        check_escape(
            escape_label_value,
            &[
                ("plain", "plain"),
                ("", ""),
                ("a\"b", "a\\\"b"),
                ("a\\b", "a\\\\b"),
                ("a\nb", "a\\nb"),
                (
                    "rule \"x\"\nline two \\ end",
                    "rule \\\"x\\\"\\nline two \\\\ end",
                ),
                ("\\n is not a newline", "\\\\n is not a newline"),
                ("tab\tand é stay", "tab\tand é stay"),
            ],
        );
    }

    #[test]
    fn help_is_escaped() {
        check_escape(
            escape_help,
            &[
                ("Spans recorded.", "Spans recorded."),
                ("a \"quoted\" word", "a \"quoted\" word"),
                ("back\\slash", "back\\\\slash"),
                ("two\nlines", "two\\nlines"),
            ],
        );
    }

    #[test]
    fn values() {
        fn render(v: impl Value) -> String {
            let mut out = String::new();
            v.write_value(&mut out);
            out
        }
        let cases: [(String, &str); 16] = [
            (render(0u64), "0"),
            (render(u64::MAX), "18446744073709551615"),
            (render(-3i64), "-3"),
            (render(7usize), "7"),
            (render(true), "1"),
            (render(false), "0"),
            (render(1.0f64), "1"),
            (render(0.5f64), "0.5"),
            (render(0.0001f64), "0.0001"),
            (render(-2.25f64), "-2.25"),
            (render(1e-7f64), "0.0000001"),
            (render(0.1f32), "0.10000000149011612"),
            (render(f64::NAN), "NaN"),
            (render(f64::INFINITY), "+Inf"),
            (render(f64::NEG_INFINITY), "-Inf"),
            (render(123_456_789.125f64), "123456789.125"),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn names() {
        // (name, valid metric, valid label, written as metric, written as label)
        let cases = [
            (
                "slogate_spans_total",
                true,
                true,
                "slogate_spans_total",
                "slogate_spans_total",
            ),
            ("job:rate5m", true, false, "job:rate5m", "job_rate5m"),
            ("_private", true, true, "_private", "_private"),
            ("http.route", false, false, "http_route", "http_route"),
            ("1st", false, false, "_1st", "_1st"),
            ("", false, false, "_", "_"),
            ("a-b c", false, false, "a_b_c", "a_b_c"),
            ("é", false, false, "_", "_"),
        ];
        for (name, metric, label, as_metric, as_label) in cases {
            assert_eq!(is_valid_metric_name(name), metric, "{name:?}");
            assert_eq!(is_valid_label_name(name), label, "{name:?}");
            let mut out = String::new();
            write_name(&mut out, name, true);
            assert_eq!(out, as_metric, "{name:?}");
            out.clear();
            write_name(&mut out, name, false);
            assert_eq!(out, as_label, "{name:?}");
        }
    }

    #[test]
    fn families() {
        let mut out = String::new();
        family(&mut out, "up", Kind::Gauge, "Whether it is up.").sample(&[], 1u8);
        {
            let mut f = family(
                &mut out,
                "slogate_alert_state",
                Kind::Gauge,
                "State per rule.\nSecond \\ line.",
            );
            f.sample(
                &[
                    ("rule", &"slow \"checkout\"\nv2 \\ eu"),
                    ("state", &"firing"),
                ],
                true,
            );
            f.sample(&[("rule", &"plain"), ("state", &"firing")], false);
        }
        {
            let mut f = family(&mut out, "req_seconds", Kind::Histogram, "Request time.");
            for (le, n) in [(0.005, 1u64), (0.25, 3), (f64::INFINITY, 4)] {
                f.sample_suffixed("_bucket", &[("path", &"/"), ("le", &Float(le))], n);
            }
            f.sample_suffixed("_sum", &[("path", &"/")], 0.3125);
            f.sample_suffixed("_count", &[("path", &"/")], 4u64);
        }
        family(&mut out, "odd name", Kind::Untyped, "").sample(&[("http.route", &7)], f64::NAN);
        family(&mut out, "empty_total", Kind::Counter, "No samples yet.");
        let want = "\
# HELP up Whether it is up.
# TYPE up gauge
up 1
# HELP slogate_alert_state State per rule.\\nSecond \\\\ line.
# TYPE slogate_alert_state gauge
slogate_alert_state{rule=\"slow \\\"checkout\\\"\\nv2 \\\\ eu\",state=\"firing\"} 1
slogate_alert_state{rule=\"plain\",state=\"firing\"} 0
# HELP req_seconds Request time.
# TYPE req_seconds histogram
req_seconds_bucket{path=\"/\",le=\"0.005\"} 1
req_seconds_bucket{path=\"/\",le=\"0.25\"} 3
req_seconds_bucket{path=\"/\",le=\"+Inf\"} 4
req_seconds_sum{path=\"/\"} 0.3125
req_seconds_count{path=\"/\"} 4
# HELP odd_name
# TYPE odd_name untyped
odd_name{http_route=\"7\"} NaN
# HELP empty_total No samples yet.
# TYPE empty_total counter
";
        assert_eq!(out, want);
        // Every line is one of: a comment, or `name[{labels}] value`; an escaped newline never
        // splits a sample.
        assert_eq!(out.lines().count(), want.lines().count());
    }

    #[test]
    fn declared_families_are_found() {
        let out = "# HELP a_total x\n# TYPE a_total counter\na_total 1\n";
        let cases = [
            ("a_total", true),
            ("a", false),
            ("a_total_2", false),
            ("b", false),
        ];
        for (name, want) in cases {
            assert_eq!(declared(out, name), want, "{name}");
        }
    }
}
