//! The command line as a person uses it: config checks, startup errors, SLI queries, no-data.

use crate::harness::{Server, slogate};

#[test]
fn config_check_reports_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, "windows:\n  slot: 5s\n").unwrap();
    let (code, out, _) = slogate(&["config", "check", good.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("ok (slot 5s"), "{out}");

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "server:\n  http: 0.0.0.0:8080\nwindows:\n  slott: 5s\n",
    )
    .unwrap();
    let (code, _, err) = slogate(&["config", "check", bad.to_str().unwrap()]);
    assert_eq!(code, 3);
    assert!(
        err.contains(&format!(
            "{}:4:3: windows.slott: unknown field `slott`",
            bad.display()
        )),
        "{err}"
    );

    // serve refuses the same file with the same message and does not start.
    let (code, _, err) = slogate(&["serve", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 3);
    assert!(err.contains("unknown field `slott`"), "{err}");

    let (code, _, err) = slogate(&["config", "check", "/nonexistent/slogate.yaml"]);
    assert_eq!(code, 3);
    assert!(
        err.contains("/nonexistent/slogate.yaml: cannot read"),
        "{err}"
    );
}

#[test]
fn sli_without_data_is_null_not_zero() {
    let server = Server::start("");
    let v = server.get_json("/api/v1/sli?service=nobody&window=5m");
    assert_eq!(v["requests"], 0);
    assert!(v["error_rate"].is_null(), "{v}");
    assert!(v["latency_ms"]["p99"].is_null(), "{v}");

    let cases = [
        (
            "/api/v1/sli?window=5m",
            400,
            "missing query parameter `service`",
        ),
        ("/api/v1/sli?service=a&window=soon", 400, "invalid window"),
        ("/api/v1/sli?service=a&window=30d", 400, "outside"),
        (
            "/api/v1/sli?service=a&colour=red",
            400,
            "unknown dimension `colour`",
        ),
    ];
    for (path, status, fragment) in cases {
        let (got, body) = server.get(path).unwrap();
        assert_eq!(got, status, "{path}: {body}");
        assert!(body.contains(fragment), "{path}: {body}");
    }

    let (code, out, err) = slogate(&[
        "sli",
        "--service",
        "nobody",
        "--window",
        "5m",
        "--server",
        &server.api_url(""),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"requests\":0"), "{out}");
    for path in ["/healthz", "/readyz", "/metrics", "/"] {
        assert_eq!(server.get(path).unwrap().0, 200, "{path}");
    }
}

#[test]
fn usage_errors_never_share_an_exit_code_with_a_verdict() {
    // A typo in a CI step must not read as "hold" (2) or "fail" (1).
    for args in [
        &["verdict", "checkout", "--bogus"][..],
        &["verdict"][..],
        &["verdict", "checkout", "--looks", "3"][..],
        &["nosuchcommand"][..],
    ] {
        let (code, _, stderr) = slogate(args);
        assert_eq!(code, 64, "{args:?}: {stderr}");
        assert!(stderr.contains("error"), "{args:?}: {stderr}");
    }
    // Help is an answer, and it lists the exit codes.
    let (code, stdout, _) = slogate(&["--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("64 usage error"), "{stdout}");
}
