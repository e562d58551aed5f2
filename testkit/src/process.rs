//! Child processes that cannot outlive a test: each writes its output to a log file, is killed
//! and reaped when dropped, and shows the end of that log when the test fails.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::wait::wait_for;

/// How many lines of a process's log a failure shows.
const LOG_TAIL_LINES: usize = 40;

/// A signal a test sends to a process it started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: a clean shutdown.
    Term,
    /// SIGKILL: a crash.
    Kill,
    /// SIGHUP: reload the configuration.
    Hup,
}

/// Sends `signal` to the process `pid`, which must be a child of this test that has not been
/// reaped yet (a [`Proc`] still held, see [`Proc::pid`]), so the pid cannot name anyone else.
pub fn send_signal(pid: u32, signal: Signal) {
    let pid = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
    let signal = match signal {
        Signal::Term => libc::SIGTERM,
        Signal::Kill => libc::SIGKILL,
        Signal::Hup => libc::SIGHUP,
    };
    // SAFETY: kill(2) has no memory effects on this process; the pid is our own unreaped child.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "send signal {signal} to {pid}: {}", std::io::Error::last_os_error());
}

/// A child process, killed and reaped when dropped; its stdout and stderr go to a log file.
pub struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd` as `name` (used in messages) with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, cmd: Command, log: &Path) -> Proc {
        Proc::spawn_with_stdout(name, cmd, open_log(log), log)
    }

    /// Starts `cmd` with stdout going to `stdout` and stderr appended to `log`.
    pub fn spawn_with_stdout(name: &str, mut cmd: Command, stdout: File, log: &Path) -> Proc {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(open_log(log)))
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({:?}): {e}", cmd.get_program()));
        Proc { name: name.to_owned(), child: Some(child), log: log.to_path_buf() }
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("the process is still ours until kill, terminate or wait")
    }

    /// The process id, for signals sent from another thread with [`send_signal`] while this
    /// handle is alive.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the process is still ours until kill, terminate or wait").id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Fails with the log when the process has already exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child().try_wait() {
            panic!("{} exited early with {status}\n{}", self.name, self.log_tail());
        }
    }

    /// Polls `GET http://addr/path` until it answers 200; fails with the log when `timeout`
    /// passes first or the process exits.
    pub fn wait_http_ok(&mut self, addr: &str, path: &str, timeout: Duration) {
        let what = format!("{} to answer 200 on {addr}{path}", self.name);
        let ok = wait_for(&what, timeout, || {
            self.assert_running();
            match crate::http::get(addr, path)? {
                (200, _) => Ok(()),
                (status, body) => Err(format!("status {status}: {body}")),
            }
        });
        if let Err(e) = ok {
            panic!("{e}\n{}", self.log_tail());
        }
    }

    /// Sends `signal` to the process.
    pub fn signal(&mut self, signal: Signal) {
        let pid = self.child().id();
        send_signal(pid, signal);
    }

    /// SIGKILL, then reap.
    pub fn kill(mut self) {
        let mut child = self.child.take().expect("the process is still ours until kill, terminate or wait");
        child.kill().unwrap_or_else(|e| panic!("SIGKILL {}: {e}", self.name));
        child.wait().unwrap_or_else(|e| panic!("reap {}: {e}", self.name));
    }

    /// SIGTERM, then the exit status; fails with the log if the process is still there after
    /// `timeout`.
    pub fn terminate(mut self, timeout: Duration) -> ExitStatus {
        self.signal(Signal::Term);
        self.wait_exit(timeout, "exit after SIGTERM")
    }

    /// The exit status of a process that ends by itself within `timeout`; fails with the log
    /// otherwise.
    pub fn wait(mut self, timeout: Duration) -> ExitStatus {
        self.wait_exit(timeout, "finish")
    }

    fn wait_exit(&mut self, timeout: Duration, what: &str) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child().try_wait().unwrap_or_else(|e| panic!("wait for {}: {e}", self.name)) {
                self.child = None;
                return status;
            }
            if Instant::now() >= deadline {
                panic!("{} did not {what} within {timeout:?}\n{}", self.name, self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last lines of the process's log, headed by its name, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        // The frames of an error's stack backtrace would fill the tail and push the error
        // itself out of it.
        let is_frame = |l: &str| {
            let t = l.trim_start();
            t.len() < l.len()
                && (t.starts_with("at ")
                    || t.split_once(": ").is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())))
        };
        let lines: Vec<&str> = text.lines().filter(|l| !is_frame(l)).collect();
        let start = lines.len().saturating_sub(LOG_TAIL_LINES);
        format!("--- last lines of the {} log ({}) ---\n{}", self.name, self.log.display(), lines[start..].join("\n"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.is_some() && std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn open_log(log: &Path) -> File {
    File::options()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("open log file {}: {e}", log.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn output_goes_to_the_log_and_exit_status_comes_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("echo.log");
        let status = Proc::spawn("echo", sh("echo out; echo err >&2; exit 3"), &log).wait(Duration::from_secs(30));
        assert_eq!(status.code(), Some(3));
        let text = std::fs::read_to_string(&log).expect("log");
        assert!(text.contains("out\n") && text.contains("err\n"), "{text}");
    }

    #[test]
    fn the_log_tail_keeps_an_error_above_its_backtrace() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("fail.log");
        let frames: String = (0..60).map(|i| format!("  {i}: frame\n             at src/x.rs:{i}:5\n")).collect();
        std::fs::write(&log, format!("Error: bind 127.0.0.1:1: address in use\n\nStack backtrace:\n{frames}"))
            .expect("log");
        let tail = Proc::spawn("fail", sh("exit 1"), &log).log_tail();
        assert!(tail.contains("Error: bind 127.0.0.1:1: address in use"), "{tail}");
        assert!(!tail.contains("frame"), "{tail}");
    }

    #[test]
    fn terminate_sends_sigterm() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("trap.log");
        let mut p = Proc::spawn(
            "trap",
            sh("trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.01; done"),
            &log,
        );
        wait_for("the trap to be set", Duration::from_secs(30), || {
            p.assert_running();
            let text = std::fs::read_to_string(&log).map_err(|e| e.to_string())?;
            if text.contains("ready") {
                Ok(())
            } else {
                Err(text)
            }
        })
        .expect("ready");
        assert_eq!(p.terminate(Duration::from_secs(30)).code(), Some(7));
        assert!(std::fs::read_to_string(&log).expect("log").contains("got TERM"));
    }

    #[test]
    fn drop_kills_and_reaps() {
        let dir = tempfile::tempdir().expect("temp dir");
        let p = Proc::spawn("sleeper", sh("exec sleep 600"), &dir.path().join("sleep.log"));
        let pid = p.pid();
        drop(p);
        // SAFETY: signal 0 only asks whether the pid exists; a reaped child no longer does.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, 0) }, -1, "the child is gone");
    }

    #[test]
    #[should_panic(expected = "early exited early with exit status: 1")]
    fn an_exited_process_fails_with_its_log() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut p = Proc::spawn("early", sh("echo bye; exit 1"), &dir.path().join("early.log"));
        p.wait_http_ok("127.0.0.1:1", "/-/ready", Duration::from_secs(30));
    }

    #[test]
    fn the_log_tail_names_the_process_and_keeps_the_last_lines() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("count.log");
        let p = Proc::spawn("counter", sh("seq 1 100"), &log);
        let tail = {
            let mut p = p;
            let status = p.wait_exit(Duration::from_secs(30), "finish");
            assert!(status.success());
            p.log_tail()
        };
        assert!(tail.starts_with("--- last lines of the counter log"), "{tail}");
        assert!(tail.contains("---\n61\n62\n") && tail.ends_with("\n100"), "{tail}");
    }
}
