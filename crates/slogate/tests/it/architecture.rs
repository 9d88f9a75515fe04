//! The architecture invariants of ARCHITECTURE.md that a test can check: which crates may
//! depend on what (from `cargo metadata`), and where unsafe code may live (from the sources).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Each workspace crate's normal (non-dev, non-build) dependencies, by name.
fn normal_dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().unwrap().to_string())
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

/// Architecture invariant: `core`, `sketch` and `gate` are pure — no I/O, no async runtime, no
/// network or storage crate — so they build in seconds and test without a server. Only
/// `slogate-ingest` knows OTLP; only `slogate-history` pulls in DataFusion, Parquet and the
/// object store.
#[test]
fn dependency_graph_keeps_the_layers() {
    let deps = normal_dependencies();
    let pure: &[(&str, &[&str])] = &[
        ("slogate-core", &["serde", "thiserror"]),
        ("slogate-sketch", &["thiserror"]),
        ("slogate-gate", &["serde", "thiserror", "slogate-sketch"]),
    ];
    for (krate, allowed) in pure {
        let got = &deps[*krate];
        let extra: Vec<&String> = got
            .iter()
            .filter(|d| !allowed.contains(&d.as_str()))
            .collect();
        assert!(
            extra.is_empty(),
            "{krate} must stay free of I/O; it now depends on {extra:?}"
        );
    }
    let only_in = |dep: &str, owners: &[&str]| {
        for (krate, d) in &deps {
            if d.contains(dep) {
                assert!(
                    owners.contains(&krate.as_str()),
                    "{krate} depends on {dep}, which only {owners:?} may"
                );
            }
        }
    };
    for dep in ["datafusion", "parquet", "object_store", "arrow"] {
        only_in(dep, &["slogate-history"]);
    }
    // The load generator encodes OTLP requests with the reference types; the product decodes
    // them by hand in slogate-ingest.
    for dep in ["opentelemetry-proto", "opentelemetry"] {
        only_in(dep, &["slogate-load"]);
    }
    // The binary reaches OTLP only through slogate-ingest.
    for krate in [
        "slogate-window",
        "slogate-gate",
        "slogate-alert",
        "slogate-history",
    ] {
        assert!(
            !deps[krate].contains("slogate-ingest"),
            "{krate} must not know OTLP"
        );
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if p.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&p, out);
            }
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

/// Architecture invariant: unsafe code is forbidden in the workspace except in four modules —
/// the scheduler hint of the API threads, the metric store's prefetch hint, and the counting
/// allocators of the window's and the metrics decoder's allocation tests — and those allow it
/// for themselves only.
#[test]
fn unsafe_code_lives_in_four_modules() {
    let root = workspace_root();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains("[workspace.lints.rust]\nunsafe_code = \"forbid\""),
        "the workspace forbids unsafe code"
    );
    // Every package inherits the workspace lints, except the four with such a module, which
    // deny unsafe code instead (a forbid cannot be lifted for one module).
    let deny = [
        "crates/slogate",
        "crates/slogate-window",
        "crates/slogate-ingest",
        "crates/slogate-metrics",
    ];
    let mut manifests: Vec<PathBuf> = vec![root.join("benches/Cargo.toml")];
    for dir in ["crates", "load-tests"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
            if e.path().join("Cargo.toml").exists() {
                manifests.push(e.path().join("Cargo.toml"));
            }
        }
    }
    for m in &manifests {
        let text = std::fs::read_to_string(m).unwrap();
        let rel = m
            .parent()
            .unwrap()
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let want = if deny.contains(&rel.as_str()) {
            "[lints.rust]\nunsafe_code = \"deny\""
        } else {
            "[lints]\nworkspace = true"
        };
        assert!(text.contains(want), "{rel}/Cargo.toml lacks {want:?}");
    }
    let mut files = Vec::new();
    for dir in ["crates", "benches", "load-tests"] {
        rust_files(&root.join(dir), &mut files);
    }
    let allowing: BTreeSet<String> = files
        .iter()
        .filter(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .contains(concat!("allow(", "unsafe_code)"))
        })
        .map(|f| {
            f.strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect();
    let want: BTreeSet<String> = [
        "crates/slogate/src/server/sched.rs",
        "crates/slogate-metrics/src/prefetch.rs",
        "crates/slogate-window/tests/it/alloc.rs",
        "crates/slogate-ingest/tests/it/metrics_alloc.rs",
    ]
    .map(String::from)
    .into();
    assert_eq!(allowing, want);
}
