//! The line of a field in the configuration text, for error messages.
//!
//! Validation errors name a field path like `gates[1].phases[0].window`; serde's position is
//! gone by then, so the path is walked through the text: each key is looked up inside the block
//! of its parent (deeper indentation, until the block ends), and an index `[i]` picks the i-th
//! `- ` item of a block sequence. A flow sequence (`span_kinds: [server, sever]`) points at its
//! key's line. `None` when the field is not written (a default).

/// One line: its indentation and its text without the indentation.
struct Line<'a> {
    indent: usize,
    text: &'a str,
}

fn lines(text: &str) -> Vec<Line<'_>> {
    text.lines()
        .map(|l| {
            let t = l.trim_start();
            Line {
                indent: l.len() - t.len(),
                text: t,
            }
        })
        .collect()
}

fn is_content(l: &Line<'_>) -> bool {
    !l.text.is_empty() && !l.text.starts_with('#')
}

/// The end (exclusive) of the block that starts after line `start` and holds lines indented
/// more than `indent`.
fn block_end(ls: &[Line<'_>], start: usize, indent: usize) -> usize {
    (start..ls.len())
        .find(|&i| is_content(&ls[i]) && ls[i].indent <= indent)
        .unwrap_or(ls.len())
}

/// A line's key text and the indentation of its first key: after a leading `- ` (a key on an
/// item's first line), that is two columns further in.
fn key_part<'a>(l: &Line<'a>) -> (&'a str, usize) {
    match l.text.strip_prefix("- ") {
        Some(rest) => {
            let t = rest.trim_start();
            (t, l.indent + l.text.len() - t.len())
        }
        None => (l.text, l.indent),
    }
}

/// The line (0-based) of `key:` in `ls[from..to]` at the shallowest key indentation there, and
/// that indentation.
fn find_key(ls: &[Line<'_>], from: usize, to: usize, key: &str) -> Option<(usize, usize)> {
    let want = format!("{key}:");
    let depth = (from..to)
        .filter(|&i| is_content(&ls[i]))
        .map(|i| key_part(&ls[i]).1)
        .min()?;
    (from..to).find_map(|i| {
        let (text, indent) = key_part(&ls[i]);
        (is_content(&ls[i]) && indent == depth && text.starts_with(&want)).then_some((i, indent))
    })
}

/// The 1-based line of `field` in `text`.
pub fn locate(text: &str, field: &str) -> Option<usize> {
    let ls = lines(text);
    // The current block: lines from..to, the enclosing key's indentation, and the line found.
    let (mut from, mut to, mut at) = (0, ls.len(), None);
    for seg in field.split('.') {
        let (key, indices) = match seg.find('[') {
            Some(i) => (&seg[..i], &seg[i..]),
            None => (seg, ""),
        };
        let Some((line, indent)) = find_key(&ls, from, to, key) else {
            // A key inside a flow mapping (`divide_by: {spans: calls}`): its parent's line.
            return at
                .filter(|&l: &usize| ls[l].text.contains('{'))
                .map(|l| l + 1);
        };
        at = Some(line);
        from = line + 1;
        to = block_end(&ls, from, indent);
        for index in indices
            .split(['[', ']'])
            .filter(|s| !s.is_empty())
            .map(str::parse::<usize>)
        {
            let index = index.ok()?;
            // A flow sequence on the key's line: that line is as close as it gets.
            if ls[line].text.contains('[') {
                return Some(line + 1);
            }
            let items: Vec<usize> = (from..to)
                .filter(|&i| is_content(&ls[i]) && ls[i].text.starts_with("- "))
                .collect();
            let depth = items.iter().map(|&i| ls[i].indent).min()?;
            let item = *items
                .iter()
                .filter(|&&i| ls[i].indent == depth)
                .nth(index)?;
            at = Some(item);
            from = item;
            to = block_end(&ls, item + 1, depth);
        }
    }
    at.map(|l| l + 1)
}

#[cfg(test)]
mod tests {
    use super::locate;

    const TEXT: &str = "\
server:
  http: 0.0.0.0:8080
ingest:
  span_kinds: [server, sever]
gates:
  - name: checkout
    service: checkout
    window: 10m
    phases:
      - name: canary
        window: 5m
  # the second gate
  - name: search
    service: search
    window: 2s
    phases:
      - name: canary
      - name: ga
        window: 1s
cohorts:
  extra:
    - name: version
      attributes: [x]
";

    #[test]
    fn finds_the_right_list_item() {
        let cases = [
            ("server.http", Some(2)),
            ("ingest.span_kinds[1]", Some(4)),
            ("gates[0].window", Some(8)),
            ("gates[1].window", Some(15)),
            ("gates[1].name", Some(13)),
            ("gates[0].phases[0].window", Some(11)),
            ("gates[1].phases[1].window", Some(19)),
            ("gates[1].phases[1]", Some(18)),
            ("gates[1].phases[0].window", None),
            ("gates[2].window", None),
            ("cohorts.extra[0].name", Some(22)),
            ("windows.slot", None),
            ("history", None),
        ];
        for (field, want) in cases {
            assert_eq!(locate(TEXT, field), want, "{field}");
        }
    }
}
