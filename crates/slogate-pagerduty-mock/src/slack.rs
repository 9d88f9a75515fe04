//! The Slack incoming-webhook contract, as Slack documents it ("Sending messages using incoming
//! webhooks", Block Kit's block and composition-object references): a JSON object with `text`
//! and/or `blocks`; at most 50 blocks; a header's `plain_text` up to 150 characters; a
//! section's text up to 3000 and up to 10 fields of 2000; up to 10 context elements; text
//! objects `plain_text` (with `emoji`) or `mrkdwn` (with `verbatim`). Slack answers
//! `400 invalid_payload` to a body it cannot read, `400 invalid_blocks` to bad blocks and
//! `400 no_text` to a message with nothing to show.
//!
//! Stricter than Slack in two ways, both to catch a sender's bugs: unknown top-level fields are
//! `invalid_payload` (Slack ignores them), and `mrkdwn` text must escape `&`, `<` and `>`
//! (`&amp;`, `&lt;`, `&gt;`) outside `<…>` links and mentions, which Slack would render wrong
//! rather than refuse.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::receiver::Rejection;

pub const MAX_BLOCKS: usize = 50;
const TOP_LEVEL: [&str; 14] = [
    "text",
    "blocks",
    "attachments",
    "thread_ts",
    "mrkdwn",
    "unfurl_links",
    "unfurl_media",
    "username",
    "icon_emoji",
    "icon_url",
    "channel",
    "link_names",
    "parse",
    "metadata",
];

/// Validates a webhook body. `Ok` is Slack's `200 ok`.
pub fn validate(body: &[u8]) -> Result<(), Rejection> {
    let bad = |error, problems| Err(Rejection::new(400, error, problems));
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return bad("invalid_payload", vec!["body is not valid JSON".into()]);
    };
    let Some(msg) = value.as_object() else {
        return bad("invalid_payload", vec!["body must be a JSON object".into()]);
    };
    let mut problems: Vec<String> = msg
        .keys()
        .filter(|k| !TOP_LEVEL.contains(&k.as_str()))
        .map(|k| format!("unknown field {k}"))
        .collect();
    let text = match msg.get("text") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(t.as_str()),
        Some(_) => {
            problems.push("text must be a string".into());
            None
        }
    };
    if let Some(t) = text
        && msg.get("mrkdwn") != Some(&Value::Bool(false))
        && let Some(p) = mrkdwn_problem(t)
    {
        problems.push(format!("text: {p}"));
    }
    if !problems.is_empty() {
        return bad("invalid_payload", problems);
    }
    let blocks = match msg.get("blocks") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(b)) => b.as_slice(),
        Some(_) => return bad("invalid_blocks", vec!["blocks must be an array".into()]),
    };
    if blocks.len() > MAX_BLOCKS {
        problems.push(format!("{} blocks, at most {MAX_BLOCKS}", blocks.len()));
    }
    let mut ids = HashSet::new();
    for (i, b) in blocks.iter().enumerate() {
        block(&format!("blocks[{i}]"), b, &mut ids, &mut problems);
    }
    if !problems.is_empty() {
        return bad("invalid_blocks", problems);
    }
    let has_attachments = msg
        .get("attachments")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if text.is_none_or(|t| t.trim().is_empty()) && blocks.is_empty() && !has_attachments {
        return bad("no_text", vec!["neither text nor blocks".into()]);
    }
    Ok(())
}

fn keys_within(path: &str, o: &Map<String, Value>, allowed: &[&str], problems: &mut Vec<String>) {
    for k in o.keys() {
        if !allowed.contains(&k.as_str()) {
            problems.push(format!("{path}: unknown field {k}"));
        }
    }
}

fn block(path: &str, b: &Value, ids: &mut HashSet<String>, problems: &mut Vec<String>) {
    let Some(o) = b.as_object() else {
        return problems.push(format!("{path} must be an object"));
    };
    match o.get("block_id") {
        None => {}
        Some(Value::String(id)) if !id.is_empty() && id.chars().count() <= 255 => {
            let unique = ids.insert(id.clone());
            if !unique {
                problems.push(format!("{path}.block_id {id:?} is not unique"));
            }
        }
        Some(_) => problems.push(format!("{path}.block_id must be 1 to 255 characters")),
    }
    let kind = o.get("type").and_then(Value::as_str).unwrap_or("");
    let at = |f: &str| format!("{path}.{f}");
    match kind {
        "header" => {
            keys_within(path, o, &["type", "text", "block_id"], problems);
            match o.get("text") {
                Some(t) => text_object(&at("text"), t, true, 150, problems),
                None => problems.push(format!("{path}.text is missing")),
            }
        }
        "section" => {
            keys_within(
                path,
                o,
                &["type", "text", "fields", "block_id", "accessory", "expand"],
                problems,
            );
            let text = o.get("text");
            if let Some(t) = text {
                text_object(&at("text"), t, false, 3000, problems);
            }
            match o.get("fields") {
                None => {
                    if text.is_none() {
                        problems.push(format!("{path} needs text or fields"));
                    }
                }
                Some(Value::Array(f)) if (1..=10).contains(&f.len()) => {
                    for (i, field) in f.iter().enumerate() {
                        text_object(&at(&format!("fields[{i}]")), field, false, 2000, problems);
                    }
                }
                Some(_) => problems.push(format!("{path}.fields must hold 1 to 10 text objects")),
            }
            if let Some(a) = o.get("accessory")
                && a.get("type").and_then(Value::as_str).is_none()
            {
                problems.push(format!("{path}.accessory needs a type"));
            }
        }
        "context" => {
            keys_within(path, o, &["type", "elements", "block_id"], problems);
            match o.get("elements") {
                Some(Value::Array(e)) if (1..=10).contains(&e.len()) => {
                    for (i, el) in e.iter().enumerate() {
                        let p = at(&format!("elements[{i}]"));
                        if el.get("type").and_then(Value::as_str) == Some("image") {
                            image(&p, el, problems);
                        } else {
                            text_object(&p, el, false, 3000, problems);
                        }
                    }
                }
                _ => problems.push(format!("{path}.elements must hold 1 to 10 elements")),
            }
        }
        "divider" => keys_within(path, o, &["type", "block_id"], problems),
        "actions" => {
            keys_within(path, o, &["type", "elements", "block_id"], problems);
            match o.get("elements") {
                Some(Value::Array(e))
                    if (1..=25).contains(&e.len())
                        && e.iter()
                            .all(|x| x.get("type").and_then(Value::as_str).is_some()) => {}
                _ => problems.push(format!("{path}.elements must hold 1 to 25 typed elements")),
            }
        }
        "image" => {
            keys_within(
                path,
                o,
                &["type", "image_url", "alt_text", "title", "block_id"],
                problems,
            );
            image(path, b, problems);
            if let Some(t) = o.get("title") {
                text_object(&at("title"), t, true, 2000, problems);
            }
        }
        "" => problems.push(format!("{path}.type is missing")),
        other => problems.push(format!(
            "{path}.type {other:?} is not a block this stand-in knows"
        )),
    }
}

fn image(path: &str, v: &Value, problems: &mut Vec<String>) {
    let url = v.get("image_url").and_then(Value::as_str);
    if url.is_none_or(|u| u.is_empty() || u.chars().count() > 3000) {
        problems.push(format!("{path}.image_url must be 1 to 3000 characters"));
    }
    let alt = v.get("alt_text").and_then(Value::as_str);
    if alt.is_none_or(|a| a.is_empty() || a.chars().count() > 2000) {
        problems.push(format!("{path}.alt_text must be 1 to 2000 characters"));
    }
}

/// A text composition object; `plain_only` for places that take `plain_text` only.
fn text_object(path: &str, v: &Value, plain_only: bool, max: usize, problems: &mut Vec<String>) {
    let Some(o) = v.as_object() else {
        return problems.push(format!("{path} must be a text object"));
    };
    keys_within(path, o, &["type", "text", "emoji", "verbatim"], problems);
    let kind = o.get("type").and_then(Value::as_str);
    match kind {
        Some("plain_text") => {
            if o.contains_key("verbatim") {
                problems.push(format!("{path}.verbatim applies to mrkdwn only"));
            }
        }
        Some("mrkdwn") if !plain_only => {
            if o.contains_key("emoji") {
                problems.push(format!("{path}.emoji applies to plain_text only"));
            }
        }
        Some("mrkdwn") => problems.push(format!("{path}.type must be plain_text")),
        _ => problems.push(format!("{path}.type must be plain_text or mrkdwn")),
    }
    for flag in ["emoji", "verbatim"] {
        if o.get(flag).is_some_and(|f| !f.is_boolean()) {
            problems.push(format!("{path}.{flag} must be a boolean"));
        }
    }
    match o.get("text").and_then(Value::as_str) {
        Some("") => problems.push(format!("{path}.text is empty")),
        Some(t) if t.chars().count() > max => {
            problems.push(format!("{path}.text is longer than {max} characters"))
        }
        Some(t) => {
            if kind == Some("mrkdwn")
                && let Some(p) = mrkdwn_problem(t)
            {
                problems.push(format!("{path}.text: {p}"));
            }
        }
        None => problems.push(format!("{path}.text must be a string")),
    }
}

/// The first escaping mistake in `mrkdwn` text: a `&` that starts no entity, a `<` that starts
/// no link or mention, or a bare `>`.
pub fn mrkdwn_problem(text: &str) -> Option<String> {
    const ENTITIES: [&str; 3] = ["&amp;", "&lt;", "&gt;"];
    const OPENERS: [&str; 6] = ["http://", "https://", "mailto:", "!", "@", "#"];
    let mut rest = text;
    while let Some(i) = rest.find(['&', '<', '>']) {
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix('&') {
            if !ENTITIES.iter().any(|e| tail.starts_with(e)) {
                return Some(format!("unescaped & at {:?}", excerpt(tail)));
            }
            rest = after;
        } else if tail.starts_with('<') {
            let Some(end) = tail.find('>') else {
                return Some(format!("unescaped < (never closed) at {:?}", excerpt(tail)));
            };
            let inner = &tail[1..end];
            if inner.contains('<') || !OPENERS.iter().any(|o| inner.starts_with(o)) {
                return Some(format!("unescaped < at {:?}", excerpt(tail)));
            }
            rest = &tail[end + 1..];
        } else {
            return Some(format!("unescaped > at {:?}", excerpt(tail)));
        }
    }
    None
}

fn excerpt(s: &str) -> String {
    s.chars().take(20).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message() -> Value {
        json!({
            "text": "fallback &amp; more",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": ":red_circle: FIRING", "emoji": true}},
                {"type": "section", "text": {"type": "mrkdwn", "text": "p99 &gt; 300 ms"}},
                {"type": "section", "fields": [{"type": "mrkdwn", "text": "*Tier*\nP1"}]},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": "<https://x/a?b=1&amp;c=2|Open> <!here>"}]},
                {"type": "divider"},
            ],
        })
    }

    fn check(name: &str, edit: impl FnOnce(&mut Value), want: Result<(), (&str, &str)>) {
        let mut m = message();
        edit(&mut m);
        let got = validate(&serde_json::to_vec(&m).unwrap());
        match (got, want) {
            (Ok(()), Ok(())) => {}
            (Err(r), Err((error, problem))) => {
                assert_eq!(r.error, error, "{name}: {r:?}");
                assert_eq!(r.status, 400, "{name}");
                assert!(
                    r.problems.iter().any(|p| p.contains(problem)),
                    "{name}: {r:?}"
                );
            }
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn contract_table() {
        type Edit = fn(&mut Value);
        type Want = Result<(), (&'static str, &'static str)>;
        let cases: Vec<(&str, Edit, Want)> = vec![
            ("valid", |_| {}, Ok(())),
            (
                "text only",
                |m| {
                    m.as_object_mut().unwrap().remove("blocks");
                },
                Ok(()),
            ),
            (
                "blocks only",
                |m| {
                    m.as_object_mut().unwrap().remove("text");
                },
                Ok(()),
            ),
            (
                "plain text top level may hold <",
                |m| {
                    m["text"] = json!("a < b");
                    m["mrkdwn"] = json!(false);
                },
                Ok(()),
            ),
            (
                "nothing to show",
                |m| {
                    m["text"] = json!(" ");
                    m["blocks"] = json!([]);
                },
                Err(("no_text", "neither text nor blocks")),
            ),
            (
                "unknown field",
                |m| m["colour"] = json!("red"),
                Err(("invalid_payload", "unknown field colour")),
            ),
            (
                "text not a string",
                |m| m["text"] = json!(1),
                Err(("invalid_payload", "text must be a string")),
            ),
            (
                "unescaped < in text",
                |m| m["text"] = json!("p99 < 300"),
                Err(("invalid_payload", "unescaped <")),
            ),
            (
                "unescaped & in section",
                |m| m["blocks"][1]["text"]["text"] = json!("a & b"),
                Err(("invalid_blocks", "unescaped &")),
            ),
            (
                "bare > in field",
                |m| m["blocks"][2]["fields"][0]["text"] = json!("1 > 0"),
                Err(("invalid_blocks", "unescaped >")),
            ),
            (
                "mrkdwn header",
                |m| m["blocks"][0]["text"]["type"] = json!("mrkdwn"),
                Err(("invalid_blocks", "must be plain_text")),
            ),
            (
                "header too long",
                |m| m["blocks"][0]["text"]["text"] = json!("h".repeat(151)),
                Err(("invalid_blocks", "longer than 150")),
            ),
            (
                "section too long",
                |m| m["blocks"][1]["text"]["text"] = json!("s".repeat(3001)),
                Err(("invalid_blocks", "longer than 3000")),
            ),
            (
                "eleven fields",
                |m| {
                    m["blocks"][2]["fields"] =
                        json!(vec![json!({"type": "mrkdwn", "text": "f"}); 11])
                },
                Err(("invalid_blocks", "1 to 10 text objects")),
            ),
            (
                "empty section",
                |m| m["blocks"][1] = json!({"type": "section"}),
                Err(("invalid_blocks", "needs text or fields")),
            ),
            (
                "empty text",
                |m| m["blocks"][1]["text"]["text"] = json!(""),
                Err(("invalid_blocks", "text is empty")),
            ),
            (
                "emoji on mrkdwn",
                |m| m["blocks"][1]["text"]["emoji"] = json!(true),
                Err(("invalid_blocks", "emoji applies to plain_text only")),
            ),
            (
                "unknown block",
                |m| m["blocks"][4]["type"] = json!("banner"),
                Err(("invalid_blocks", "not a block")),
            ),
            (
                "51 blocks",
                |m| m["blocks"] = json!(vec![json!({"type": "divider"}); 51]),
                Err(("invalid_blocks", "51 blocks")),
            ),
            (
                "duplicate block id",
                |m| {
                    m["blocks"][1]["block_id"] = json!("a");
                    m["blocks"][2]["block_id"] = json!("a");
                },
                Err(("invalid_blocks", "not unique")),
            ),
            (
                "context without elements",
                |m| m["blocks"][3]["elements"] = json!([]),
                Err(("invalid_blocks", "1 to 10 elements")),
            ),
        ];
        for (name, edit, want) in cases {
            check(name, edit, want);
        }
        let r = validate(b"{nope").unwrap_err();
        assert_eq!((r.status, r.error), (400, "invalid_payload"));
    }

    #[test]
    fn mrkdwn_escaping_table() {
        let cases: [(&str, Option<&str>); 9] = [
            ("plain words", None),
            ("&amp; &lt; &gt;", None),
            (
                "<https://x|label> <mailto:a@b> <!here> <@U123> <#C123>",
                None,
            ),
            ("a & b", Some("unescaped &")),
            ("&nbsp;", Some("unescaped &")),
            ("a < b", Some("unescaped <")),
            ("<script>", Some("unescaped <")),
            ("<https://x", Some("never closed")),
            ("a > b", Some("unescaped >")),
        ];
        for (text, want) in cases {
            let got = mrkdwn_problem(text);
            match want {
                None => assert_eq!(got, None, "{text}"),
                Some(w) => assert!(
                    got.as_deref().is_some_and(|g| g.contains(w)),
                    "{text}: {got:?}"
                ),
            }
        }
    }
}
