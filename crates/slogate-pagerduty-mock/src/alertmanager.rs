//! Alertmanager's webhook payload, version 4, as its documentation (`webhook_config`) and
//! `notify/webhook` give it:
//!
//! ```json
//! {"version": "4", "groupKey": "…", "truncatedAlerts": 0, "status": "firing|resolved",
//!  "receiver": "…", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
//!  "externalURL": "…", "alerts": [{"status": "firing|resolved", "labels": {}, "annotations": {},
//!  "startsAt": "RFC 3339", "endsAt": "RFC 3339", "generatorURL": "…", "fingerprint": "…"}]}
//! ```
//!
//! Checked strictly: every field present with its type and no other; label names as Prometheus
//! allows them and an `alertname` on every alert; the group `status` is `firing` exactly when an
//! alert fires; `groupLabels` and `commonLabels` (and `commonAnnotations`) are shared by every
//! alert; times are RFC 3339, a resolved alert ends at or after it started; and the
//! `fingerprint` is the one Prometheus computes for the alert's labels (FNV-1a 64 over the
//! sorted `name 0xff value 0xff` pairs, 16 hex digits), written here independently of the
//! sender's.

use serde_json::{Map, Value};

use crate::receiver::Rejection;

const TOP_LEVEL: [&str; 10] = [
    "version",
    "groupKey",
    "truncatedAlerts",
    "status",
    "receiver",
    "groupLabels",
    "commonLabels",
    "commonAnnotations",
    "externalURL",
    "alerts",
];
const ALERT_FIELDS: [&str; 7] = [
    "status",
    "labels",
    "annotations",
    "startsAt",
    "endsAt",
    "generatorURL",
    "fingerprint",
];

/// Validates a webhook body. `Ok` is the receiver's `200`.
pub fn validate(body: &[u8]) -> Result<(), Rejection> {
    let bad = |problems| Err(Rejection::new(400, "invalid payload", problems));
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return bad(vec!["body is not valid JSON".into()]);
    };
    let Some(p) = value.as_object() else {
        return bad(vec!["body must be a JSON object".into()]);
    };
    let mut problems = Vec::new();
    exact_fields("payload", p, &TOP_LEVEL, &mut problems);
    if p.get("version").and_then(Value::as_str) != Some("4") {
        problems.push("version must be \"4\"".into());
    }
    if p.get("groupKey")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        problems.push("groupKey must be a non-empty string".into());
    }
    if p.get("truncatedAlerts").and_then(Value::as_u64).is_none() {
        problems.push("truncatedAlerts must be a non-negative integer".into());
    }
    if p.get("receiver")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        problems.push("receiver must be a non-empty string".into());
    }
    match p.get("externalURL").and_then(Value::as_str) {
        Some(u) if u.starts_with("http://") || u.starts_with("https://") => {}
        _ => problems.push("externalURL must be an http(s) URL".into()),
    }
    let group_labels = string_map("groupLabels", p.get("groupLabels"), true, &mut problems);
    let common_labels = string_map("commonLabels", p.get("commonLabels"), true, &mut problems);
    let common_annotations = string_map(
        "commonAnnotations",
        p.get("commonAnnotations"),
        false,
        &mut problems,
    );
    let alerts = match p.get("alerts") {
        Some(Value::Array(a)) if !a.is_empty() => a.as_slice(),
        _ => {
            problems.push("alerts must be a non-empty array".into());
            &[]
        }
    };
    let mut any_firing = false;
    for (i, a) in alerts.iter().enumerate() {
        let path = format!("alerts[{i}]");
        let Some(a) = a.as_object() else {
            problems.push(format!("{path} must be an object"));
            continue;
        };
        exact_fields(&path, a, &ALERT_FIELDS, &mut problems);
        let status = a.get("status").and_then(Value::as_str);
        let firing = match status {
            Some("firing") => true,
            Some("resolved") => false,
            _ => {
                problems.push(format!("{path}.status must be firing or resolved"));
                false
            }
        };
        any_firing |= firing;
        let labels = string_map(
            &format!("{path}.labels"),
            a.get("labels"),
            true,
            &mut problems,
        );
        if let Some(l) = &labels {
            if l.get("alertname")
                .is_none_or(|v| v.as_str().is_none_or(str::is_empty))
            {
                problems.push(format!("{path}.labels.alertname is missing"));
            }
            match a.get("fingerprint").and_then(Value::as_str) {
                Some(f) if f == fingerprint(l) => {}
                Some(f) => problems.push(format!(
                    "{path}.fingerprint {f:?} is not the labels' fingerprint {}",
                    fingerprint(l)
                )),
                None => problems.push(format!("{path}.fingerprint must be a string")),
            }
            for (what, set) in [
                ("groupLabels", &group_labels),
                ("commonLabels", &common_labels),
            ] {
                for (k, v) in set.iter().copied().flatten() {
                    if l.get(k) != Some(v) {
                        problems.push(format!("{what}.{k} is not a label of {path}"));
                    }
                }
            }
        }
        let annotations = string_map(
            &format!("{path}.annotations"),
            a.get("annotations"),
            false,
            &mut problems,
        );
        if let Some(ann) = &annotations {
            for (k, v) in common_annotations.iter().copied().flatten() {
                if ann.get(k) != Some(v) {
                    problems.push(format!(
                        "commonAnnotations.{k} is not an annotation of {path}"
                    ));
                }
            }
        }
        let starts = time(
            &format!("{path}.startsAt"),
            a.get("startsAt"),
            &mut problems,
        );
        let ends = time(&format!("{path}.endsAt"), a.get("endsAt"), &mut problems);
        if let (Some(s), Some(e)) = (starts, ends) {
            if s < 0 {
                problems.push(format!("{path}.startsAt is not set"));
            }
            // Firing: endsAt is Go's zero time or a time still to come, after the start.
            if firing && e >= 0 && e < s {
                problems.push(format!("{path}.endsAt is before startsAt"));
            }
            if !firing && (e < 0 || e < s) {
                problems.push(format!(
                    "{path}.endsAt of a resolved alert must be at or after startsAt"
                ));
            }
        }
        if a.get("generatorURL").and_then(Value::as_str).is_none() {
            problems.push(format!("{path}.generatorURL must be a string"));
        }
    }
    let want = if any_firing { "firing" } else { "resolved" };
    if !alerts.is_empty() && p.get("status").and_then(Value::as_str) != Some(want) {
        problems.push(format!(
            "status must be {want:?}: it is firing exactly when an alert fires"
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bad(problems)
    }
}

fn exact_fields(path: &str, o: &Map<String, Value>, fields: &[&str], problems: &mut Vec<String>) {
    for f in fields {
        if !o.contains_key(*f) {
            problems.push(format!("{path}: {f} is missing"));
        }
    }
    for k in o.keys() {
        if !fields.contains(&k.as_str()) {
            problems.push(format!("{path}: unknown field {k}"));
        }
    }
}

/// An object of string values; with `names`, keys must be Prometheus label names.
fn string_map<'a>(
    path: &str,
    v: Option<&'a Value>,
    names: bool,
    problems: &mut Vec<String>,
) -> Option<&'a Map<String, Value>> {
    let Some(o) = v.and_then(Value::as_object) else {
        problems.push(format!("{path} must be an object"));
        return None;
    };
    for (k, v) in o {
        if !v.is_string() {
            problems.push(format!("{path}.{k} must be a string"));
        }
        if names && !is_label_name(k) {
            problems.push(format!("{path}: {k:?} is not a valid label name"));
        }
    }
    Some(o)
}

fn is_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

fn time(path: &str, v: Option<&Value>, problems: &mut Vec<String>) -> Option<i64> {
    let parsed = v.and_then(Value::as_str).and_then(parse_rfc3339);
    if parsed.is_none() {
        problems.push(format!("{path} must be an RFC 3339 time"));
    }
    parsed
}

/// Unix seconds of `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`; Go's zero time is far negative.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), ..] if b.len() == i + 6 && b[i + 3] == b':' => {
            let m = num(i + 1..i + 3)? * 60 + num(i + 4..i + 6)?;
            if *sign == b'+' { m * 60 } else { -m * 60 }
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, mo) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

/// Prometheus' label-set fingerprint, as 16 hex digits.
pub fn fingerprint(labels: &Map<String, Value>) -> String {
    let mut names: Vec<&String> = labels.keys().collect();
    names.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &c in bytes {
            hash ^= u64::from(c);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for name in names {
        feed(name.as_bytes());
        feed(&[255]);
        feed(labels[name].as_str().unwrap_or("").as_bytes());
        feed(&[255]);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload() -> Value {
        let labels = json!({"alertname": "HighLatency", "service": "checkout"});
        json!({
            "version": "4",
            "groupKey": "{}:{alertname=\"HighLatency\"}",
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "team-x",
            "groupLabels": {"alertname": "HighLatency"},
            "commonLabels": labels,
            "commonAnnotations": {"summary": "p99 high"},
            "externalURL": "http://alertmanager:9093",
            "alerts": [{
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": "p99 high"},
                "startsAt": "2025-11-07T18:00:00.123+01:00",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus/graph",
                "fingerprint": fingerprint(labels.as_object().unwrap()),
            }],
        })
    }

    #[test]
    fn contract_table() {
        type Edit = fn(&mut Value);
        let cases: Vec<(&str, Edit, Option<&str>)> = vec![
            ("valid", |_| {}, None),
            (
                "resolved",
                |p| {
                    p["status"] = json!("resolved");
                    p["alerts"][0]["status"] = json!("resolved");
                    p["alerts"][0]["endsAt"] = json!("2025-11-07T17:30:00Z");
                },
                None,
            ),
            (
                "missing field",
                |p| {
                    p.as_object_mut().unwrap().remove("truncatedAlerts");
                },
                Some("truncatedAlerts is missing"),
            ),
            (
                "unknown field",
                |p| p["extra"] = json!(1),
                Some("unknown field extra"),
            ),
            (
                "version 3",
                |p| p["version"] = json!("3"),
                Some("version must be"),
            ),
            (
                "no alerts",
                |p| p["alerts"] = json!([]),
                Some("non-empty array"),
            ),
            (
                "group status disagrees",
                |p| p["status"] = json!("resolved"),
                Some("status must be \"firing\""),
            ),
            (
                "bad alert status",
                |p| p["alerts"][0]["status"] = json!("pending"),
                Some("firing or resolved"),
            ),
            (
                "no alertname",
                |p| {
                    p["alerts"][0]["labels"] = json!({"service": "checkout"});
                    p["commonLabels"] = json!({});
                    p["groupLabels"] = json!({});
                    p["alerts"][0]["fingerprint"] =
                        json!(fingerprint(p["alerts"][0]["labels"].as_object().unwrap()));
                },
                Some("alertname is missing"),
            ),
            (
                "wrong fingerprint",
                |p| p["alerts"][0]["fingerprint"] = json!("0000000000000000"),
                Some("not the labels' fingerprint"),
            ),
            (
                "label value not a string",
                |p| p["alerts"][0]["labels"]["n"] = json!(1),
                Some("must be a string"),
            ),
            (
                "bad label name",
                |p| p["groupLabels"]["1x"] = json!("a"),
                Some("not a valid label name"),
            ),
            (
                "group label not on the alert",
                |p| p["groupLabels"]["team"] = json!("a"),
                Some("groupLabels.team is not a label"),
            ),
            (
                "common annotation not on the alert",
                |p| p["commonAnnotations"]["x"] = json!("y"),
                Some("commonAnnotations.x"),
            ),
            (
                "unix time",
                |p| p["alerts"][0]["startsAt"] = json!(1700000000),
                Some("RFC 3339"),
            ),
            (
                "resolved before it started",
                |p| {
                    p["status"] = json!("resolved");
                    p["alerts"][0]["status"] = json!("resolved");
                    p["alerts"][0]["endsAt"] = json!("2025-11-07T16:00:00Z");
                },
                Some("at or after startsAt"),
            ),
            (
                "resolved without an end",
                |p| {
                    p["status"] = json!("resolved");
                    p["alerts"][0]["status"] = json!("resolved");
                },
                Some("at or after startsAt"),
            ),
            (
                "external url",
                |p| p["externalURL"] = json!("alertmanager"),
                Some("externalURL"),
            ),
        ];
        for (name, edit, want) in cases {
            let mut p = payload();
            edit(&mut p);
            let got = validate(&serde_json::to_vec(&p).unwrap());
            match (got, want) {
                (Ok(()), None) => {}
                (Err(r), Some(w)) => {
                    assert_eq!(r.status, 400, "{name}");
                    assert!(r.problems.iter().any(|p| p.contains(w)), "{name}: {r:?}");
                }
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn rfc3339_table() {
        let cases: [(&str, Option<i64>); 8] = [
            ("1970-01-01T00:00:00Z", Some(0)),
            ("2025-11-07T18:00:00Z", Some(1_762_538_400)),
            ("2025-11-07T19:00:00+01:00", Some(1_762_538_400)),
            ("2025-11-07T18:00:00.999999999Z", Some(1_762_538_400)),
            ("0001-01-01T00:00:00Z", Some(-62_135_596_800)),
            ("2025-11-07 18:00:00Z", None),
            ("2025-13-07T18:00:00Z", None),
            ("2025-11-07T18:00:00", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_rfc3339(s), want, "{s}");
        }
    }

    #[test]
    fn fingerprint_is_prometheus_fnv() {
        // prometheus/common model/signature_test.go, TestMetricToFingerprint.
        let l = json!({"name": "garland, briggs", "fear": "love is not enough"});
        assert_eq!(
            fingerprint(l.as_object().unwrap()),
            format!("{:016x}", 5_799_056_148_416_392_346u64)
        );
        assert_eq!(
            fingerprint(&Map::new()),
            format!("{:016x}", 14_695_981_039_346_656_037u64)
        );
    }
}
