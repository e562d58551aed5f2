//! Finding and running the Debian Prometheus tools from tests. A missing tool fails the test
//! with an install hint: these tests must never pass without the real counterpart.

#![allow(dead_code)] // Each test binary uses its own subset.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `name` (promtool, prometheus) from PATH.
pub fn require_binary(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "`{name}` not found on PATH: this test checks our output against Prometheus's own tools; \
             install Debian's prometheus package (apt-get install prometheus; .ci/run does) and run it again"
        )
    })
}

/// Runs promtool with `args`, failing the test with its output if it fails; returns stdout.
pub fn run_promtool(args: &[&str]) -> String {
    let out = Command::new(require_binary("promtool")).args(args).output().expect("run promtool");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "promtool {} failed ({}):\n{stdout}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A path as a command-line argument.
pub fn arg(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}
