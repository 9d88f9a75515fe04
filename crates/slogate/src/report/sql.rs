//! A SQL result (`{columns, rows, truncated}`) as an aligned table, CSV or JSON.

use super::aligned;
use serde_json::Value;

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum SqlFormat {
    Table,
    Csv,
    Json,
}

/// A cell as text: strings bare, `null` empty, anything else as JSON.
fn plain(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn render(result: &Value, format: SqlFormat) -> String {
    let columns: Vec<String> = result["columns"]
        .as_array()
        .into_iter()
        .flatten()
        .map(plain)
        .collect();
    let rows = result["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r.as_array().into_iter().flatten().map(plain).collect());
    match format {
        SqlFormat::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(result).unwrap_or_default()
        ),
        SqlFormat::Csv => {
            let quote = |s: &String| {
                if s.contains([',', '"', '\n']) {
                    format!("\"{}\"", s.replace('"', "\"\""))
                } else {
                    s.clone()
                }
            };
            let line = |r: &Vec<String>| r.iter().map(quote).collect::<Vec<_>>().join(",") + "\n";
            std::iter::once(columns)
                .chain(rows)
                .map(|r| line(&r))
                .collect()
        }
        SqlFormat::Table => {
            let mut all = vec![columns];
            all.extend(rows);
            let mut out = aligned(&all);
            if result["truncated"].as_bool() == Some(true) {
                out.push_str("  (truncated: more rows than --max-rows)\n");
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let r = serde_json::json!({
            "columns": ["service", "n"],
            "rows": [["a,b", 3], ["x\"y", null]],
            "truncated": true,
        });
        let cases = [
            (SqlFormat::Csv, "service,n\n\"a,b\",3\n\"x\"\"y\",\n"),
            (
                SqlFormat::Table,
                "  service  n\n  a,b      3\n  x\"y\n  (truncated: more rows than --max-rows)\n",
            ),
        ];
        for (format, want) in cases {
            assert_eq!(render(&r, format), want, "{format:?}");
        }
        let json: Value = serde_json::from_str(&render(&r, SqlFormat::Json)).unwrap();
        assert_eq!(json, r);
    }
}
