//! Configuration tests: the embedded defaults, every example under `deploy/`, and errors that
//! name file, line and field.

use super::*;
use serde::Deserialize as _;

#[test]
fn embedded_default_parses_and_matches_code_defaults() {
    let c = Config::load(None).unwrap();
    let from_empty = Config::parse("", "empty").unwrap();
    assert_eq!(
        serde_json::to_value(&c.file).unwrap(),
        serde_json::to_value(&from_empty.file).unwrap(),
        "deploy/slogate.yaml documents the real defaults"
    );
    assert_eq!(c.window.slot_seconds, 10);
}

#[test]
fn every_example_under_deploy_parses() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy");
    let mut seen = 0;
    for entry in walk(Path::new(root)) {
        // Helm templates are Go templates, not YAML; `scripts/check-deploy` renders them.
        if entry.components().any(|c| c.as_os_str() == "templates") {
            continue;
        }
        let text = std::fs::read_to_string(&entry).unwrap();
        if entry.extension().is_some_and(|e| e == "yaml")
            && text.starts_with("# slogate configuration")
        {
            Config::parse(&text, &entry.display().to_string()).unwrap_or_else(|e| panic!("{e}"));
            seen += 1;
        }
        // Kubernetes manifests carry the configuration in a ConfigMap.
        if entry.extension().is_some_and(|e| e == "yaml") && text.contains("kind: ConfigMap") {
            for doc in serde_yaml_ng::Deserializer::from_str(&text) {
                let v = serde_yaml_ng::Value::deserialize(doc).unwrap();
                if let Some(cfg) = v
                    .get("data")
                    .and_then(|d| d.get("slogate.yaml"))
                    .and_then(|c| c.as_str())
                {
                    Config::parse(cfg, &format!("{} (ConfigMap)", entry.display()))
                        .unwrap_or_else(|e| panic!("{e}"));
                    seen += 1;
                }
            }
        }
    }
    assert!(
        seen >= 3,
        "expected the default, the example and the Kubernetes ConfigMap, found {seen}"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn check(text: &str, expected: &str) {
    let err = Config::parse(text, "slogate.yaml").unwrap_err().to_string();
    assert_eq!(err, expected);
}

#[test]
fn judge_keys_name_file_line_and_field() {
    // The one budget of an analysis, and what a confidence can apply to.
    check(
        "gates:\n  - name: a\n    service: a\n    analysis:\n      false_rollback_rate: 0.7\n    criteria: [{name: e, metric: error_rate, pass: 0.01, fail: 0.02}]\n",
        "slogate.yaml:5: gates[0].analysis.false_rollback_rate: 0.7 must be above 0 and below 0.5 (e.g. 0.01: one false rollback in 100 steps)",
    );
    check(
        "gates:\n  - name: a\n    service: a\n    criteria:\n      - name: rate\n        metric: request_rate\n        pass: 10\n        fail: 5\n        direction: higher_is_better\n        confidence: 0.95\n",
        "slogate.yaml:9: gates[0].criteria[0].direction: a criterion with a confidence judges a latency or the error rate, where lower is better",
    );
    check(
        "gates:\n  - name: a\n    service: a\n    criteria:\n      - name: p99\n        metric: latency_p99\n        pass: 300\n        fail: 500\n        baseline_known: true\n",
        "slogate.yaml:9: gates[0].criteria[0].baseline_known: baseline_known applies to a criterion with a confidence",
    );
}

#[test]
fn errors_name_file_line_and_field() {
    check(
        "history:\n  dir: h\n  flush_interval: 0s\n",
        "slogate.yaml:3: history.flush_interval: must be at least 100ms",
    );
    check(
        "ingest:\n  drill_refuse_fraction: 1.5\n",
        "slogate.yaml:2: ingest.drill_refuse_fraction: must be between 0 and 1",
    );
    check(
        "ingest:\n  memory_limit_bytes: 1000\n",
        "slogate.yaml:2: ingest.memory_limit_bytes: must be 0 (off) or at least 67108864 (64 MiB)",
    );
    check(
        "ingest:\n  max_inflight_bytes: 1000000\n",
        "slogate.yaml:2: ingest.max_inflight_bytes: must be at least twice ingest.max_request_bytes (134217728), so that the largest gzip request and what it inflates to fit",
    );
    check(
        "server:\n  http: 0.0.0.0:8080\n  htpp: 1\n",
        "slogate.yaml:3:3: server.htpp: unknown field `htpp`, expected one of `otlp_grpc`, `otlp_http`, `http`, `shutdown_grace`, `header_read_timeout`, `max_connections`, `grpc_max_connections`, `idle_timeout`, `body_read_timeout`, `tls`",
    );
    check(
        "server:\n  http: 0.0.0.0:8080\n  grpc_max_connections: 0\n",
        "slogate.yaml:3: server.grpc_max_connections: must be at least 1",
    );
    check(
        "server:\n  idle_timeout: 0s\n",
        "slogate.yaml:2: server.idle_timeout: must be more than 0s",
    );
    check(
        "server:\n  body_read_timeout: 0s\n",
        "slogate.yaml:2: server.body_read_timeout: must be more than 0s",
    );
    check(
        "server:\n  tls:\n    key_file: /k.pem\n",
        "slogate.yaml:3: server.tls.key_file: needs cert_file too: cert_file and key_file go together",
    );
    check(
        "server:\n  tls:\n    client_ca_file: /ca.pem\n",
        "slogate.yaml:3: server.tls.client_ca_file: mutual TLS needs TLS: set cert_file and key_file too",
    );
    check(
        "auth:\n  api:\n    token_files: [/t]\n",
        "slogate.yaml:3:5: auth.api.token_files: unknown field `token_files`, expected `read_token_files` or `admin_token_files`",
    );
    check(
        "auth:\n  ingest:\n    token_files: [\"\"]\n",
        "slogate.yaml:3: auth.ingest.token_files: a token file path is empty",
    );
    check(
        "windows:\n  slot: ten seconds\n",
        "slogate.yaml:2:3: windows.slot: invalid duration \"ten seconds\" (expected number at 0); write e.g. 10s, 5m, 1h, 3d",
    );
    check(
        "windows:\n  slot: 7s\n",
        "slogate.yaml: windows.coarse_slot: must be a multiple of windows.slot (7s)",
    );
    check(
        "ingest:\n  span_kinds: [server, sever]\n",
        "slogate.yaml:2: ingest.span_kinds[1]: unknown span kind \"sever\"; use server, consumer, client, producer or internal",
    );
    check(
        "cohorts:\n  extra:\n    - name: version\n      attributes: [x]\n",
        "slogate.yaml:3: cohorts.extra[0].name: \"version\" must be lowercase [a-z0-9_] and not a built-in dimension",
    );
    check(
        "limits: [1, 2]\n",
        "slogate.yaml:1:9: limits: invalid type: sequence, expected struct LimitSection",
    );
    check(
        "history:\n  url: /var/lib/slogate\n",
        "slogate.yaml:2: history.url: \"/var/lib/slogate\" must be an s3://bucket/prefix url (use history.dir for a local directory)",
    );
    check(
        "history:\n  retention: 10m\n",
        "slogate.yaml:2: history.retention: must be at least 1h",
    );
    // An error in the second gate points at the second gate's line, not the first's.
    check(
        "gates:\n  - name: a\n    service: a\n    window: 10m\n    criteria: [{name: e, metric: error_rate, pass: 0.01, fail: 0.02}]\n  - name: b\n    service: b\n    window: 2s\n",
        "slogate.yaml:8: gates[1].window: must be between 1m (and one slot) and windows.coarse_retention (259200s)",
    );
    check(
        "history:\n  s3:\n    secret_key: x\n",
        "slogate.yaml:3:5: history.s3.secret_key: unknown field `secret_key`, expected one of `endpoint`, `region`, `allow_http`, `access_key_id_file`, `secret_access_key_file`",
    );
}

#[test]
fn notification_keys_name_file_line_and_field() {
    let slack = |extra: &str| format!("notifications:\n  slack:\n    enabled: true\n{extra}");
    let hook = |extra: &str| {
        format!("notifications:\n  webhooks:\n    - name: ops\n      url: http://h/hook\n{extra}")
    };
    check(
        &slack("    events: []\n"),
        "slogate.yaml:4: notifications.slack.events: list what to send: alerts, verdicts or both",
    );
    check(
        &slack("    events: [alerts, pages]\n"),
        "slogate.yaml:4:22: notifications.slack.events[1]: unknown variant `pages`, expected `alerts` or `verdicts`",
    );
    check(
        &slack("    webhook_url_env: \"\"\n"),
        "slogate.yaml:4: notifications.slack.webhook_url_env: name the environment variable holding the webhook URL, or set webhook_url_file",
    );
    check(
        &slack("    webhook_url: https://hooks.slack.com/services/T/B/x\n"),
        "slogate.yaml:4:5: notifications.slack.webhook_url: unknown field `webhook_url`, expected one of `enabled`, `webhook_url_env`, `webhook_url_file`, `events`, `min_tier`, `max_pending`, `max_per_minute`, `retry_min`, `retry_max`",
    );
    check(
        &slack("    min_tier: P3\n"),
        "slogate.yaml:4:15: notifications.slack.min_tier: unknown variant `P3`, expected one of `P1`, `P2`, `ticket`",
    );
    check(
        &slack("    retry_min: 2m\n"),
        "slogate.yaml:4: notifications.slack.retry_min: must be more than 0s and at most notifications.slack.retry_max",
    );
    check(
        &slack("    max_per_minute: 0\n"),
        "slogate.yaml:4: notifications.slack.max_per_minute: must be at least 1",
    );
    // An error in the second webhook points at the second webhook's line.
    check(
        &hook("    - name: Ops Bridge\n      url: http://h\n"),
        "slogate.yaml:5: notifications.webhooks[1].name: \"Ops Bridge\" must be 1 to 64 characters of [a-z0-9_-] (it names the outbox directory and the destination label)",
    );
    check(
        &hook("    - {name: ops, url: http://h}\n"),
        "slogate.yaml:5: notifications.webhooks[1].name: \"ops\" is taken: every destination needs its own name",
    );
    check(
        "notifications:\n  webhooks:\n    - {name: slack, url: http://h}\n",
        "slogate.yaml:3: notifications.webhooks[0].name: \"slack\" is taken: every destination needs its own name",
    );
    check(
        &hook("      token_env: T\n      token_file: /t\n"),
        "slogate.yaml:6: notifications.webhooks[0].token_file: set token_env or token_file, not both",
    );
    check(
        "notifications:\n  webhooks:\n    - name: ops\n      url: hooks.example.com\n",
        "slogate.yaml:4: notifications.webhooks[0].url: \"hooks.example.com\" must be an http(s) URL",
    );
    check(
        "notifications:\n  webhooks:\n    - name: ops\n",
        "slogate.yaml:3:7: notifications.webhooks[0]: missing field `url`",
    );
    check(
        &hook("      max_pending: 0\n"),
        "slogate.yaml:5: notifications.webhooks[0].max_pending: must be at least 1",
    );
    check(
        "pagerduty:\n  enabled: true\n  outbox_dir: /var/q\nnotifications:\n  outbox_dir: /var/q\n",
        "slogate.yaml:5: notifications.outbox_dir: /var/q is pagerduty.outbox_dir too; give notifications a directory of their own",
    );
}

#[test]
fn notifications_validate_into_destinations() {
    let cfg = Config::parse(
        "notifications:\n  outbox_dir: /q\n  slack:\n    enabled: true\n    webhook_url_file: /s/url\n    events: [verdicts]\n  webhooks:\n    - {name: ops, url: https://h/x, token_env: OPS_TOKEN, min_tier: P1, events: [alerts]}\n    - {name: audit, url: http://a}\n",
        "n.yaml",
    )
    .unwrap();
    let n = &cfg.notifications;
    let slack = n.slack.as_ref().unwrap();
    assert_eq!(
        (
            slack.name.as_str(),
            &slack.secret,
            slack.outbox_dir.as_path()
        ),
        (
            "slack",
            &Some(SecretSource::File("/s/url".into())),
            Path::new("/q/slack")
        )
    );
    assert_eq!((slack.alerts, slack.verdicts), (false, true));
    assert_eq!(
        (slack.max_per_minute, slack.min_tier),
        (60, slogate_gate::Tier::Ticket)
    );
    let names: Vec<(&str, Option<&str>, bool, bool)> = n
        .webhooks
        .iter()
        .map(|w| (w.name.as_str(), w.url.as_deref(), w.alerts, w.verdicts))
        .collect();
    assert_eq!(
        names,
        [
            ("ops", Some("https://h/x"), true, false),
            ("audit", Some("http://a"), true, true)
        ]
    );
    assert_eq!(
        n.webhooks[0].secret,
        Some(SecretSource::Env("OPS_TOKEN".into()))
    );
    assert_eq!(n.webhooks[0].min_tier, slogate_gate::Tier::P1);
    assert_eq!(n.webhooks[1].secret, None);
    assert_eq!(n.webhooks[1].outbox_dir, Path::new("/q/webhook-audit"));
    // Off by default, and `config show` holds where secrets are, never a value.
    let defaults = Config::load(None).unwrap().notifications;
    assert!(defaults.slack.is_none() && defaults.webhooks.is_empty());
    let shown = cfg.effective_yaml().unwrap();
    assert!(
        shown.contains("webhook_url_file: /s/url") && shown.contains("token_env: OPS_TOKEN"),
        "{shown}"
    );
}

#[test]
fn metric_criteria_against_a_stored_baseline_compare_only_span_free_numbers() {
    let gate = |criterion: &str| {
        format!(
            "gates:\n  - name: a\n    service: a\n    baseline: {{stored: staging}}\n    criteria:\n      - {criterion}\n"
        )
    };
    for ok in [
        "{name: q, otlp: jobs.queue.depth, aggregate: max, compare: ratio, pass: 1.2, fail: 1.5}",
        "{name: q, otlp: http.duration, aggregate: p95, compare: ratio, pass: 1.2, fail: 1.5}",
        "{name: q, otlp: jobs.done, aggregate: rate, compare: ratio, pass: 1.1, fail: 1.3}",
        "{name: q, otlp: llm.cost, aggregate: increase, divide_by: {spans: requests}, compare: ratio, pass: 1.1, fail: 1.5}",
        "{name: q, otlp: cache.requests, where: {result: hit}, aggregate: increase, divide_by: {otlp: cache.requests, aggregate: increase}, compare: difference, pass: 0.02, fail: 0.05}",
        // Absolute criteria never read the baseline.
        "{name: q, otlp: breaker, aggregate: time_in_state, state: 1, pass: 5, fail: 300}",
    ] {
        Config::parse(&gate(ok), "slogate.yaml").unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for (bad, want) in [
        (
            "{name: q, otlp: jobs.done, aggregate: increase, compare: ratio, pass: 1.2, fail: 1.5}",
            "criterion \"q\" cannot be compared with a stored baseline: the increase of an OTLP metric grows with the span of time",
        ),
        (
            "{name: q, otlp: breaker, aggregate: transitions, compare: difference, pass: 0, fail: 1}",
            "criterion \"q\" cannot be compared with a stored baseline: an OTLP metric's transitions is measured from its points",
        ),
    ] {
        let err = Config::parse(&gate(bad), "slogate.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{bad}: {err}");
        assert!(err.contains("gates[0].phases[0].criteria"), "{err}");
    }
}

#[test]
fn metric_keys_name_file_line_and_field() {
    let gate = |criterion: &str| {
        format!("gates:\n  - name: a\n    service: a\n    criteria:\n      - name: c\n{criterion}")
    };
    check(
        &gate(
            "        otlp: jobs.queue.depth\n        aggregate: median\n        pass: 1\n        fail: 2\n",
        ),
        "slogate.yaml:7: gates[0].criteria[0].aggregate: unknown aggregate \"median\"; use last, min, max, avg, sum, count, increase, rate, pNN (p50, p95, p999), time_in_state or transitions",
    );
    check(
        &gate("        otlp: jobs.queue.depth\n        pass: 1\n        fail: 2\n"),
        "slogate.yaml:6: gates[0].criteria[0].otlp: an OTLP metric criterion needs aggregate: last, min, max, avg, sum, count, increase, rate, pNN, time_in_state or transitions",
    );
    check(
        &gate(
            "        otlp: jobs.queue.depth\n        metric: error_rate\n        aggregate: max\n        pass: 1\n        fail: 2\n",
        ),
        "slogate.yaml:7: gates[0].criteria[0].metric: an OTLP metric criterion (otlp: jobs.queue.depth) is a threshold on its value; metric does not apply",
    );
    check(
        &gate(
            "        otlp: breaker\n        aggregate: max\n        state: 1\n        pass: 1\n        fail: 2\n",
        ),
        "slogate.yaml:8: gates[0].criteria[0].state: state applies to aggregate: time_in_state or transitions",
    );
    check(
        &gate(
            "        otlp: cost\n        aggregate: increase\n        divide_by: {spans: calls}\n        pass: 1\n        fail: 2\n",
        ),
        "slogate.yaml:8: gates[0].criteria[0].divide_by.spans: unknown span count \"calls\"; use requests or errors",
    );
    check(
        &gate(
            "        metric: error_rate\n        where: {queue: jobs}\n        pass: 0.01\n        fail: 0.02\n",
        ),
        "slogate.yaml:7: gates[0].criteria[0].where: where applies to an OTLP metric criterion (otlp: NAME)",
    );
    check(
        "metrics:\n  retention: 10m\ngates:\n  - name: a\n    service: a\n    window: 30m\n    criteria:\n      - {name: q, otlp: q, aggregate: max, pass: 1, fail: 2}\n",
        "slogate.yaml:6: gates[0].window: 1800s is longer than metrics.retention (600s), which the OTLP metric criteria read",
    );
    check(
        "alerting:\n  rules:\n    - {name: r, service: a, otlp: q, aggregate: max, above: 1, below: 0, tier: P1}\n",
        "slogate.yaml:3: alerting.rules[0].above: a rule needs exactly one of above and below",
    );
    check(
        "alerting:\n  rules:\n    - {name: r, service: a, metric: error_rate, below: 0.5, tier: P1}\n",
        "slogate.yaml:3: alerting.rules[0].below: span rules alert above an error rate or latency; use above",
    );
    check(
        "cohorts:\n  extra:\n    - {name: instance, attributes: [k8s.pod.name]}\n",
        "slogate.yaml:3: cohorts.extra[0].name: \"instance\" is a column of the history's requests or metrics table; name the dimension otherwise",
    );
    check(
        "metrics:\n  stale_after: 0s\n",
        "slogate.yaml:2: metrics.stale_after: must be at least 1s",
    );
}

/// `deploy/examples/metric-gates.yaml` writes the seeds' metric lines as criteria and rules:
/// each one is there, measuring what the plan says.
#[test]
fn the_rollout_plans_metric_lines_are_criteria_and_rules() {
    use crate::config::{Divisor, RuleMetric, SpanCount};
    use slogate_metrics::{Aggregate, Combine};
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/examples/metric-gates.yaml"
    );
    let cfg = Config::load(Some(Path::new(path))).unwrap_or_else(|e| panic!("{e}"));
    let phase = |gate: &str, phase: &str| {
        cfg.gates
            .iter()
            .find(|g| g.name == gate)
            .and_then(|g| g.phases.iter().find(|p| p.name == phase))
            .unwrap_or_else(|| panic!("{gate}/{phase}"))
    };
    let bands = |p: &crate::config::PhaseConfig, name: &str| match &p
        .spec
        .criteria
        .iter()
        .find(|c| c.name == name)
        .unwrap()
        .check
    {
        slogate_gate::Check::Threshold {
            metric: slogate_gate::Metric::Measured,
            pass,
            fail,
            direction,
            ..
        } => (*pass, *fail, *direction),
        other => panic!("{name}: {other:?}"),
    };
    // The GA change request: queue depth under 200, summed over pods, sustained 5 minutes.
    let ga = phase("api-ga", "default");
    let q = &ga.measures["queue-depth"];
    assert_eq!(
        (q.numerator.aggregate, q.numerator.combine),
        (Aggregate::Max, Combine::Sum)
    );
    assert_eq!(bands(ga, "queue-depth"), (200.0, 500.0, None));
    // The skills playbook: five metric bands in each of its three phases.
    for name in ["canary", "beta", "full"] {
        let p = phase("skills", name);
        assert_eq!(p.measures.len(), 5, "{name}");
        assert_eq!(
            bands(p, "skills-api-success"),
            (0.95, 0.90, Some(slogate_gate::Direction::HigherIsBetter))
        );
        assert_eq!(bands(p, "cost-per-request"), (0.02, 0.05, None));
        assert_eq!(
            p.measures["cost-per-request"].divide_by,
            Some(Divisor::Spans(SpanCount::Requests))
        );
        assert_eq!(bands(p, "cache-hit-rate").0, 0.40);
        assert_eq!(bands(p, "memory-usage"), (0.80, 0.90, None));
    }
    // The soft-launch plan: breakers per phase, the staging backlog tightening by phase.
    let p1 = phase("ingestion", "p1-canary");
    assert_eq!(
        p1.measures["breaker-open"].numerator.aggregate,
        Aggregate::TimeInState { state: Some(1.0) }
    );
    assert_eq!(
        p1.measures["breaker-events"].numerator.aggregate,
        Aggregate::Transitions { into: Some(1.0) }
    );
    assert_eq!(bands(p1, "breaker-events"), (0.0, 1.0, None));
    assert_eq!(p1.window_seconds, 86_400);
    for (name, pass) in [
        ("p1-canary", 10_000.0),
        ("p2-beta", 50_000.0),
        ("ga", 100_000.0),
    ] {
        assert_eq!(
            bands(phase("ingestion", name), "staging-backlog").0,
            pass,
            "{name}"
        );
    }
    // The alert tiers of the operations runbook.
    let rule = |name: &str| cfg.rules.iter().find(|r| r.name == name).unwrap();
    let cache = rule("redis-cache-hit-ratio");
    assert!(cache.below && cache.bound == 0.85 && cache.for_seconds == 900);
    assert_eq!(cache.tier, slogate_gate::Tier::P2);
    let queue = rule("queue-depth");
    assert!(!queue.below && queue.bound == 500.0 && queue.for_seconds == 300);
    assert_eq!(queue.tier, slogate_gate::Tier::P1);
    assert!(
        matches!(&rule("synthetic-uptime").metric, RuleMetric::Otlp(q) if matches!(q.divide_by, Some(Divisor::Metric(_))))
    );
    assert_eq!(cfg.rules.len(), 7);
}
