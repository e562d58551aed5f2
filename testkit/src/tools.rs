//! Finding the programs tests run: tools on PATH (installed from a package registry) and the real
//! peers that `interop/` builds. A missing program fails the test with the command that provides
//! it; no test skips for want of a tool.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

/// Every tool a test may ask for, with the command that installs it.
const INSTALL_HINTS: &[(&str, &str)] = &[
    // Debian bookworm's Prometheus is 2.42; Prometheus 3.x is a peer.
    ("prometheus", "apt-get install prometheus"),
    ("promtool", "apt-get install prometheus"),
    ("prometheus-alertmanager", "apt-get install prometheus-alertmanager"),
    ("moto_server", "python3 -m pip install 'moto[server]'"),
    // The HTTP/1.1 load balancer in front of receivers.
    ("haproxy", "apt-get install haproxy"),
    // Network namespaces and links for partition tests.
    ("ip", "apt-get install iproute2"),
    // The query frontend's results caches.
    ("memcached", "apt-get install memcached"),
    ("redis-server", "apt-get install redis-server"),
    // The headless browser that renders the bucket page.
    ("chromium", "apt-get install chromium"),
];

/// The peers `interop/build.sh` builds into `interop/bin/`, and its program that answers with
/// Thanos's hashring code (`ringref`).
pub const PEERS: &[&str] = &["thanos", "prometheus", "promtool", "helm", "ringref"];

/// The path of `name` on PATH; panics with its install command when it is not there.
pub fn tool(name: &str) -> PathBuf {
    find_tool(name, &std::env::var_os("PATH").unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"))
}

fn find_tool(name: &str, path: &OsStr) -> Result<PathBuf, String> {
    let hint = INSTALL_HINTS
        .iter()
        .find(|(tool, _)| *tool == name)
        .map(|(_, hint)| *hint)
        .unwrap_or_else(|| panic!("no install command is known for `{name}`: add it to testkit's INSTALL_HINTS"));
    std::env::split_paths(path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file()).ok_or_else(|| {
        format!("`{name}` is not on PATH; this test needs it. Install it with: {hint} (.ci/run does this)")
    })
}

/// `<repo>/interop/bin`, where `interop/build.sh` puts the peers it builds.
pub fn interop_bin() -> PathBuf {
    let testkit = Path::new(env!("CARGO_MANIFEST_DIR"));
    testkit.parent().expect("testkit/ sits in the repository root").join("interop/bin")
}

/// The real peer `name` (one of [`PEERS`]) as built by `interop/`; panics, naming the build
/// command, when it has not been built.
pub fn peer(name: &str) -> PathBuf {
    find_peer(&interop_bin(), name).unwrap_or_else(|e| panic!("{e}"))
}

fn find_peer(bin: &Path, name: &str) -> Result<PathBuf, String> {
    assert!(PEERS.contains(&name), "`{name}` is not a peer interop/ builds; those are {PEERS:?}");
    let path = bin.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("interop/bin/{name} is missing: build the peers with `bash interop/build.sh`"))
    }
}

/// What a program that ran to its end printed.
#[derive(Debug)]
pub struct ToolOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `program` with `args` to its end, whatever its exit status.
pub fn run<S: AsRef<OsStr>>(program: &Path, args: &[S]) -> ToolOutput {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", command_line(program, args)));
    ToolOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `program` with `args` and returns its stdout; fails the test with the command line and
/// everything it printed when it does not succeed.
pub fn run_ok<S: AsRef<OsStr>>(program: &Path, args: &[S]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{} failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
        command_line(program, args),
        out.status,
        out.stdout,
        out.stderr
    );
    out.stdout
}

fn command_line<S: AsRef<OsStr>>(program: &Path, args: &[S]) -> String {
    let name = program.file_name().unwrap_or(program.as_os_str()).to_string_lossy().into_owned();
    std::iter::once(name)
        .chain(args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_peer_names_the_build_command() {
        let empty = tempfile::tempdir().expect("temp dir");
        for name in PEERS {
            assert_eq!(
                find_peer(empty.path(), name),
                Err(format!("interop/bin/{name} is missing: build the peers with `bash interop/build.sh`"))
            );
        }
    }

    #[test]
    fn a_built_peer_is_found() {
        let bin = tempfile::tempdir().expect("temp dir");
        std::fs::write(bin.path().join("thanos"), "").expect("write");
        assert_eq!(find_peer(bin.path(), "thanos"), Ok(bin.path().join("thanos")));
    }

    #[test]
    #[should_panic(expected = "`alertmanager` is not a peer interop/ builds")]
    fn only_known_peers_are_asked_for() {
        let _ = find_peer(Path::new("."), "alertmanager");
    }

    #[test]
    fn peers_live_in_the_repository_interop_bin() {
        let bin = interop_bin();
        assert!(bin.ends_with("interop/bin"), "{}", bin.display());
        let root = bin.parent().and_then(Path::parent).expect("the repository root");
        assert!(root.join("testkit/Cargo.toml").is_file(), "{} is not the repository root", root.display());
    }

    #[test]
    fn a_missing_tool_names_its_install_command() {
        let empty = tempfile::tempdir().expect("temp dir");
        assert_eq!(
            find_tool("moto_server", empty.path().as_os_str()),
            Err("`moto_server` is not on PATH; this test needs it. Install it with: \
                 python3 -m pip install 'moto[server]' (.ci/run does this)"
                .to_owned())
        );
        std::fs::write(empty.path().join("promtool"), "").expect("write");
        assert_eq!(find_tool("promtool", empty.path().as_os_str()), Ok(empty.path().join("promtool")));
    }

    #[test]
    fn run_ok_returns_stdout_and_fails_with_everything_printed() {
        assert_eq!(run_ok(Path::new("sh"), &["-c", "echo hi"]), "hi\n");
        let failed = std::panic::catch_unwind(|| run_ok(Path::new("sh"), &["-c", "echo out; echo err >&2; exit 2"]));
        let message = *failed.expect_err("a failing command fails the test").downcast::<String>().expect("message");
        assert_eq!(
            message,
            "sh -c echo out; echo err >&2; exit 2 failed (exit status: 2):\n--- stdout ---\nout\n\n--- stderr ---\nerr\n"
        );
    }

    #[test]
    #[should_panic(expected = "no install command is known for `nonesuch`")]
    fn every_tool_has_an_install_command() {
        let _ = find_tool("nonesuch", OsStr::new(""));
    }
}
