//! The configuration reference, `docs/configuration.md`, checked against the parser and the
//! embedded defaults, so that a key added to `file.rs` without its line in the reference, a line
//! for a key the parser no longer takes, or a default changed on one side only fails here.
//!
//! Nothing in this file lists keys. The parser's keys are found by probing it: a document with
//! an unknown field at some path makes serde name every field it expected there, and each of
//! those is probed in turn as a section, a list of sections, a map of sections or a value. The
//! reference's keys are the first cells of its `| key | type | default | ... |` tables, its
//! defaults the third cells: one code span is a value, `required` is required, anything else is
//! prose. A row saying "same keys as `Q`" documents a list or section by another's keys.

use super::file::FileConfig;
use super::{Config, ConfigError, EMBEDDED_DEFAULT};
use serde_yaml_ng::{Mapping, Value};
use std::collections::{BTreeMap, BTreeSet};

const REFERENCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
const PROBE: &str = "__probe__";

/// Every key the parser accepts is in the reference, and every key there is accepted.
#[test]
fn the_reference_lists_exactly_the_keys_the_parser_accepts() {
    let schema = schema();
    let reference = Reference::read();
    let aliases = reference.aliases(&schema);
    let mut problems = Vec::new();
    for (key, kind) in &schema {
        let canonical = canonical(key, &aliases);
        if *kind != Kind::Section && !reference.rows.contains_key(&canonical) {
            problems.push(format!(
                "`{canonical}` ({kind:?}) is accepted by the parser but not documented"
            ));
        }
    }
    for (key, row) in &reference.rows {
        if !schema.contains_key(key) {
            problems.push(format!(
                "line {}: `{key}` is documented but the parser does not accept it",
                row.line
            ));
        }
    }
    report(problems);
}

/// Every value in `deploy/slogate.yaml` is the reference's default, and every default the
/// reference writes means what leaving the key out means: the validated configuration is the
/// same either way (a list item's key is tried on an example item of the reference).
#[test]
fn the_reference_defaults_are_the_codes() {
    let reference = Reference::read();
    let mut problems = Vec::new();
    let embedded: Value = serde_yaml_ng::from_str(EMBEDDED_DEFAULT).unwrap();
    let mut values = Vec::new();
    leaves(&embedded, String::new(), &mut values);
    assert!(
        values.len() > 50,
        "found {} keys in the defaults",
        values.len()
    );
    for (key, value) in &values {
        match reference.rows.get(key).map(|r| &r.default) {
            Some(Documented::Value(d)) if same(d, value) => {}
            Some(Documented::Value(d)) => problems.push(format!(
                "`{key}`: the reference says {}, deploy/slogate.yaml {}",
                yaml(d),
                yaml(value)
            )),
            _ => problems.push(format!(
                "`{key}`: deploy/slogate.yaml sets {}, the reference has no default in code font",
                yaml(value)
            )),
        }
    }
    let defaults = outcome("");
    assert!(
        defaults.is_ok(),
        "the defaults do not validate: {defaults:?}"
    );
    for (key, row) in &reference.rows {
        let segs = segments(key);
        let in_list = segs.iter().any(|s| !matches!(s, Seg::Key(_)));
        match (&row.default, in_list) {
            (Documented::Value(d), false) => {
                let text = serde_yaml_ng::to_string(&nest(&segs, d.clone())).unwrap();
                let set = outcome(&text);
                if set != defaults {
                    problems.push(format!(
                        "line {}: `{key}: {}` is not the default: {}",
                        row.line,
                        yaml(d),
                        differ(&set, &defaults)
                    ));
                }
            }
            (Documented::Value(_) | Documented::Required, true) => {
                if let Err(p) = check_in_example(key, row, &reference) {
                    problems.push(format!("line {}: `{key}`: {p}", row.line));
                }
            }
            _ => {}
        }
    }
    report(problems);
}

/// Every example validates, and every key whose default is not a value is set in one of them,
/// so each documented key has been through the real validation at least once.
#[test]
fn every_example_in_the_reference_validates_and_sets_the_keys_without_a_default() {
    let schema = schema();
    let reference = Reference::read();
    let aliases = reference.aliases(&schema);
    let mut problems = Vec::new();
    let mut set = BTreeSet::new();
    for (line, text) in &reference.examples {
        if let Err(e) = Config::parse(text, &format!("docs/configuration.md:{line}")) {
            problems.push(format!("the example at line {line} does not validate: {e}"));
        }
        let v: Value = serde_yaml_ng::from_str(text).unwrap();
        keys_in(&v, String::new(), &schema, &mut set);
    }
    let set: BTreeSet<String> = set.iter().map(|k| canonical(k, &aliases)).collect();
    for (key, row) in &reference.rows {
        if !matches!(row.default, Documented::Value(_)) && !set.contains(key) {
            problems.push(format!(
                "line {}: `{key}` has no default value, and no example sets it",
                row.line
            ));
        }
    }
    report(problems);
}

fn report(problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "docs/configuration.md and the configuration code disagree:\n  {}",
        problems.join("\n  ")
    );
}

/// One step of a key path: a key, a list's item (`[]`) or a map's entry (`<name>`).
#[derive(Clone, Debug, PartialEq)]
enum Seg {
    Key(String),
    Item,
    Entry,
}

fn render(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Item => s.push_str("[]"),
            Seg::Entry => s.push_str(".<name>"),
        }
    }
    s
}

fn segments(key: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in key.split('.') {
        if part == "<name>" {
            out.push(Seg::Entry);
            continue;
        }
        let name = part.trim_end_matches("[]");
        out.push(Seg::Key(name.to_string()));
        for _ in 0..(part.len() - name.len()) / 2 {
            out.push(Seg::Item);
        }
    }
    out
}

fn key(name: &str) -> Value {
    Value::String(name.to_string())
}

/// A document holding `leaf` at `path` (lists of one item, map entries named `x`).
fn nest(path: &[Seg], leaf: Value) -> Value {
    path.iter().rev().fold(leaf, |inner, seg| match seg {
        Seg::Key(k) => Value::Mapping(Mapping::from_iter([(key(k), inner)])),
        Seg::Item => Value::Sequence(vec![inner]),
        Seg::Entry => Value::Mapping(Mapping::from_iter([(key("x"), inner)])),
    })
}

/// What the parser has at `path`: the section's fields (from serde's "unknown field, expected
/// ..." error), or `None` when it is not a section.
fn fields_at(path: &[Seg]) -> Option<Vec<String>> {
    let probe = Value::Mapping(Mapping::from_iter([(key(PROBE), Value::Bool(true))]));
    let text = serde_yaml_ng::to_string(&nest(path, probe)).unwrap();
    let de = serde_yaml_ng::Deserializer::from_str(&text);
    let message = serde_path_to_error::deserialize::<_, FileConfig>(de)
        .err()?
        .into_inner()
        .to_string();
    let rest = &message[message.find(&format!("unknown field `{PROBE}`"))?..];
    let expected = &rest[rest.find("expected").unwrap_or(rest.len())..];
    Some(
        expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect(),
    )
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Section,
    List,
    Map,
    Value,
}

/// Every key path the parser accepts.
fn schema() -> BTreeMap<String, Kind> {
    fn walk(path: &[Seg], out: &mut BTreeMap<String, Kind>) {
        let fields = fields_at(path).unwrap_or_else(|| panic!("{} is no section", render(path)));
        for field in fields {
            let p: Vec<Seg> = path.iter().cloned().chain([Seg::Key(field)]).collect();
            let with = |s: Seg| -> Vec<Seg> { p.iter().cloned().chain([s]).collect() };
            let (kind, inner) = if fields_at(&p).is_some() {
                (Kind::Section, Some(p.clone()))
            } else if fields_at(&with(Seg::Item)).is_some() {
                (Kind::List, Some(with(Seg::Item)))
            } else if fields_at(&with(Seg::Entry)).is_some() {
                (Kind::Map, Some(with(Seg::Entry)))
            } else {
                (Kind::Value, None)
            };
            out.insert(render(&p), kind);
            if let Some(inner) = inner {
                walk(&inner, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&[], &mut out);
    assert!(out.len() > 100, "the probe found only {out:?}");
    out
}

#[derive(Debug)]
enum Documented {
    Value(Value),
    Required,
    Prose,
}

struct Row {
    line: usize,
    /// The type and meaning cells.
    text: String,
    default: Documented,
}

struct Reference {
    rows: BTreeMap<String, Row>,
    /// `(line, text)` of every `yaml` code block.
    examples: Vec<(usize, String)>,
}

impl Reference {
    fn read() -> Reference {
        let text =
            std::fs::read_to_string(REFERENCE).unwrap_or_else(|e| panic!("{REFERENCE}: {e}"));
        let mut rows = BTreeMap::new();
        let mut examples = Vec::new();
        let mut fence: Option<(bool, usize, String)> = None;
        let mut in_keys = false;
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let trimmed = line.trim_start();
            if let Some((is_yaml, start, body)) = &mut fence {
                if trimmed.starts_with("```") {
                    if *is_yaml {
                        examples.push((*start, std::mem::take(body)));
                    }
                    fence = None;
                } else {
                    body.push_str(line);
                    body.push('\n');
                }
                continue;
            }
            if let Some(lang) = trimmed.strip_prefix("```") {
                fence = Some((lang.trim() == "yaml", n + 1, String::new()));
                continue;
            }
            let Some(cells) = line.strip_prefix('|') else {
                in_keys = false;
                continue;
            };
            let cells: Vec<&str> = cells.split('|').map(str::trim).collect();
            if cells[0] == "key" {
                in_keys = true;
                continue;
            }
            let Some(key) = code(cells[0]).filter(|_| in_keys) else {
                continue;
            };
            assert!(
                cells.len() >= 4,
                "{REFERENCE}:{n}: a key row is | key | type | default | meaning |"
            );
            let default = match code(cells[2]) {
                Some(v) => Documented::Value(
                    serde_yaml_ng::from_str(v)
                        .unwrap_or_else(|e| panic!("{REFERENCE}:{n}: default `{v}`: {e}")),
                ),
                None if cells[2] == "required" => Documented::Required,
                None => Documented::Prose,
            };
            let row = Row {
                line: n,
                text: format!("{} {}", cells[1], cells[3]),
                default,
            };
            if let Some(earlier) = rows.insert(key.to_string(), row) {
                panic!("{REFERENCE}:{n}: `{key}` is also at line {}", earlier.line);
            }
        }
        assert!(fence.is_none(), "{REFERENCE}: a code block is not closed");
        Reference { rows, examples }
    }

    /// `(documented prefix, prefix it has the keys of)` from rows saying "same keys as `Q`".
    fn aliases(&self, schema: &BTreeMap<String, Kind>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (key, row) in &self.rows {
            let Some(at) = row.text.find("same keys as `") else {
                continue;
            };
            let target = row.text[at + "same keys as `".len()..]
                .split('`')
                .next()
                .unwrap_or_default();
            let from = match schema.get(key) {
                Some(Kind::List) => format!("{key}[]"),
                Some(Kind::Map) => format!("{key}.<name>"),
                _ => key.clone(),
            };
            out.push((from, target.to_string()));
        }
        out
    }
}

/// The text of a cell that is exactly one code span.
fn code(cell: &str) -> Option<&str> {
    let inner = cell.strip_prefix('`')?.strip_suffix('`')?;
    (!inner.contains('`')).then_some(inner)
}

/// `key` with documented-by-alias prefixes replaced by the prefix that documents them.
fn canonical(key: &str, aliases: &[(String, String)]) -> String {
    let mut key = key.to_string();
    while let Some((from, to)) = aliases.iter().find(|(from, _)| {
        key.strip_prefix(from.as_str())
            .is_some_and(|rest| rest.starts_with('.'))
    }) {
        key = format!("{to}{}", &key[from.len()..]);
    }
    key
}

/// Scalar and list values of the defaults file, by key path (empty sections have none).
fn leaves(v: &Value, path: String, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Mapping(m) => {
            for (k, child) in m {
                let k = k.as_str().expect("keys are strings");
                let p = if path.is_empty() {
                    k.to_string()
                } else {
                    format!("{path}.{k}")
                };
                leaves(child, p, out);
            }
        }
        other => out.push((path, other.clone())),
    }
}

/// Every key path an example sets (items as `[]`, map entries as `<name>`).
fn keys_in(v: &Value, path: String, schema: &BTreeMap<String, Kind>, out: &mut BTreeSet<String>) {
    match v {
        Value::Mapping(m) => {
            let entries = schema.get(&path) == Some(&Kind::Map);
            for (k, child) in m {
                let k = if entries {
                    "<name>"
                } else {
                    k.as_str().unwrap_or_default()
                };
                let p = if path.is_empty() {
                    k.to_string()
                } else {
                    format!("{path}.{k}")
                };
                out.insert(p.clone());
                keys_in(child, p, schema, out);
            }
        }
        Value::Sequence(items) if schema.get(&path) == Some(&Kind::List) => {
            for item in items {
                keys_in(item, format!("{path}[]"), schema, out);
            }
        }
        _ => {}
    }
}

/// Equal values, durations compared as durations (`30d` is `30days`) and numbers as numbers.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::String(x), Value::String(y)) => {
            x == y
                || matches!(
                    (humantime::parse_duration(x), humantime::parse_duration(y)),
                    (Ok(d), Ok(e)) if d == e
                )
        }
        (Value::Sequence(x), Value::Sequence(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Mapping(x), Value::Mapping(y)) => {
            x.len() == y.len() && x.iter().all(|(k, a)| y.get(k).is_some_and(|b| same(a, b)))
        }
        _ => a == b,
    }
}

/// A value on one line, for messages.
fn yaml(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The validated configuration (what the program runs on, without the file it came from), or
/// the error without its position.
fn outcome(text: &str) -> Result<String, String> {
    match Config::parse(text, "reference") {
        Ok(c) => Ok(format!(
            "{:#?}",
            Config {
                source: String::new(),
                file: FileConfig::default(),
                ..c
            }
        )),
        Err(ConfigError::Invalid { field, message, .. }) => Err(format!("{field}: {message}")),
        Err(ConfigError::Parse { message, .. }) => Err(message),
        Err(e) => Err(e.to_string()),
    }
}

/// The first line where two outcomes differ.
fn differ(a: &Result<String, String>, b: &Result<String, String>) -> String {
    match (a, b) {
        (Ok(a), Ok(b)) => a
            .lines()
            .zip(b.lines())
            .find(|(x, y)| x != y)
            .map(|(x, y)| format!("`{}` instead of `{}`", x.trim(), y.trim()))
            .unwrap_or_else(|| "the configurations differ".into()),
        (Err(e), _) => format!("refused: {e}"),
        (_, Err(e)) => format!("without it: {e}"),
    }
}

/// A key inside list items: leaving it out of an example item must be the same as writing the
/// documented default (or, for `required`, must be refused).
fn check_in_example(path: &str, row: &Row, reference: &Reference) -> Result<(), String> {
    let segs = segments(path);
    let cut = segs
        .iter()
        .rposition(|s| !matches!(s, Seg::Key(_)))
        .unwrap()
        + 1;
    let (item, rest) = segs.split_at(cut);
    let rest: Vec<&str> = rest
        .iter()
        .map(|s| match s {
            Seg::Key(k) => k.as_str(),
            _ => unreachable!(),
        })
        .collect();
    // Every item of every example, the ones holding most of `rest` first.
    let mut found = Vec::new();
    for (b, (_, text)) in reference.examples.iter().enumerate() {
        let v: Value = serde_yaml_ng::from_str(text).unwrap();
        let mut at = Vec::new();
        instances(&v, item, Vec::new(), &mut at);
        for steps in at {
            let mut node = get(&v, &steps);
            let mut depth = 0;
            for k in &rest {
                node = node.and_then(|n| n.get(*k));
                if node.is_none() {
                    break;
                }
                depth += 1;
            }
            found.push((rest.len() - depth, b, v.clone(), steps));
        }
    }
    found.sort_by_key(|(missing, b, _, _)| (*missing, *b));
    // The example with the key set to `value`, or removed; sections on the way are created
    // only to set it.
    let edit = |v: &Value, steps: &[Step], value: Option<&Value>| -> String {
        let mut v = v.clone();
        let (last, parents) = rest.split_last().unwrap();
        let mut node = get_mut(&mut v, steps);
        for k in parents {
            node = match (node, value) {
                (Some(n), Some(_)) => {
                    if !n.get(*k).is_some_and(Value::is_mapping) {
                        n.as_mapping_mut()
                            .unwrap()
                            .insert(key(k), Value::Mapping(Mapping::new()));
                    }
                    n.get_mut(*k)
                }
                (Some(n), None) => n.get_mut(*k),
                (None, _) => None,
            };
        }
        if let Some(m) = node.and_then(Value::as_mapping_mut) {
            match value {
                Some(value) => {
                    m.insert(key(last), value.clone());
                }
                None => {
                    m.remove(*last);
                }
            }
        }
        serde_yaml_ng::to_string(&v).unwrap()
    };
    match &row.default {
        Documented::Required => {
            let (_, _, v, steps) = found
                .iter()
                .find(|(missing, ..)| *missing == 0)
                .ok_or("no example sets it: add one")?;
            match outcome(&edit(v, steps, None)) {
                Ok(_) => Err("an example item without it is accepted: not required".into()),
                Err(e) if e.contains(rest[rest.len() - 1]) => Ok(()),
                Err(e) => Err(format!("without it the error does not name it: {e}")),
            }
        }
        Documented::Value(d) => {
            let (_, _, v, steps) = found
                .iter()
                .find(|(_, _, v, steps)| outcome(&edit(v, steps, None)).is_ok())
                .or(found.first())
                .ok_or_else(|| format!("no example has a `{}` item: add one", render(item)))?;
            let (without, with) = (
                outcome(&edit(v, steps, None)),
                outcome(&edit(v, steps, Some(d))),
            );
            if without == with {
                Ok(())
            } else {
                Err(format!(
                    "`{}` is not the default: {}",
                    yaml(d),
                    differ(&with, &without)
                ))
            }
        }
        Documented::Prose => Ok(()),
    }
}

/// A step into a document: a mapping key or a sequence index.
#[derive(Clone, Debug)]
enum Step {
    Key(Value),
    Index(usize),
}

fn instances(v: &Value, path: &[Seg], at: Vec<Step>, out: &mut Vec<Vec<Step>>) {
    let then = |s: Step| -> Vec<Step> { at.iter().cloned().chain([s]).collect() };
    match path.split_first() {
        None => out.push(at),
        Some((Seg::Key(k), rest)) => {
            if let Some(child) = v.get(k.as_str()) {
                instances(child, rest, then(Step::Key(key(k))), out);
            }
        }
        Some((Seg::Item, rest)) => {
            for (i, child) in v.as_sequence().into_iter().flatten().enumerate() {
                instances(child, rest, then(Step::Index(i)), out);
            }
        }
        Some((Seg::Entry, rest)) => {
            for (k, child) in v.as_mapping().into_iter().flatten() {
                instances(child, rest, then(Step::Key(k.clone())), out);
            }
        }
    }
}

fn get<'a>(v: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    steps.iter().try_fold(v, |v, s| match s {
        Step::Key(k) => v.get(k),
        Step::Index(i) => v.get(*i),
    })
}

fn get_mut<'a>(v: &'a mut Value, steps: &[Step]) -> Option<&'a mut Value> {
    steps.iter().try_fold(v, |v, s| match s {
        Step::Key(k) => v.get_mut(k),
        Step::Index(i) => v.get_mut(*i),
    })
}
