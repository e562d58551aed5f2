//! Build facts for `strata_build_info` and `/api/v1/status/buildinfo`: the git commit and
//! branch of the source (when it is a git checkout and git is installed) and the compiler's
//! version, as STRATA_REVISION, STRATA_BRANCH and STRATA_RUST_VERSION ("unknown" when not known).

use std::process::Command;

/// The trimmed standard output of a command that succeeded, unless empty.
fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    let revision = output("git", &["rev-parse", "HEAD"]);
    // A detached HEAD has no branch.
    let branch = output("git", &["rev-parse", "--abbrev-ref", "HEAD"]).filter(|b| b != "HEAD");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    // `rustc 1.85.0 (4d91de4e4 2025-02-17)`
    let rust_version = output(&rustc, &["--version"]).and_then(|v| v.split_whitespace().nth(1).map(str::to_owned));
    for (name, value) in
        [("STRATA_REVISION", revision), ("STRATA_BRANCH", branch), ("STRATA_RUST_VERSION", rust_version)]
    {
        println!("cargo:rustc-env={name}={}", value.as_deref().unwrap_or("unknown"));
    }

    // Run again when HEAD moves: a checkout changes HEAD, a commit the branch's ref. Only files
    // that exist are named; Cargo would run the script on every build for a missing one.
    println!("cargo:rerun-if-changed=build.rs");
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    watched.extend(output("git", &["rev-parse", "--symbolic-full-name", "HEAD"]).filter(|r| r.starts_with("refs/")));
    for name in watched {
        if let Some(path) = output("git", &["rev-parse", "--git-path", &name]) {
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
}
