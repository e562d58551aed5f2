//! A moto S3-protocol server on 127.0.0.1 for a test, killed when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::Proc;

/// moto keeps its buckets in memory: a restarted server is empty.
pub struct Moto {
    pub port: u16,
    proc: Option<Proc>,
    log: PathBuf,
}

impl Moto {
    /// Starts `moto_server` on a free port, logging to `log_dir/moto.log`, and waits until it
    /// answers.
    pub fn start(log_dir: &Path) -> Moto {
        let mut moto = Moto { port: crate::free_port(), proc: None, log: log_dir.join("moto.log") };
        moto.spawn();
        moto
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(crate::tool("moto_server"));
        cmd.args(["-H", "127.0.0.1", "-p", &self.port.to_string()]);
        let mut proc = Proc::spawn("moto_server", cmd, &self.log);
        proc.wait_http_ok(&self.addr(), "/", Duration::from_secs(60));
        self.proc = Some(proc);
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILL: the server vanishes mid-request, and its buckets with it.
    pub fn kill(&mut self) {
        if let Some(proc) = self.proc.take() {
            proc.kill();
        }
    }

    /// Starts a fresh, empty server on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Creates a bucket (moto takes an unsigned request).
    pub fn create_bucket(&self, name: &str) {
        let answer = crate::http::request(&self.addr(), "PUT", &format!("/{name}"), &[], b"");
        assert!(matches!(answer, Ok((200, _))), "create bucket {name}: {answer:?}");
    }

    /// Creates bucket `name` and returns its objstore YAML.
    pub fn new_bucket(&self, name: &str) -> String {
        self.create_bucket(name);
        s3_objstore_yaml(self.port, name, "")
    }
}

/// The Thanos objstore YAML for bucket `bucket` of a moto server (or a proxy in front of one)
/// at `127.0.0.1:<port>`; `extra` is more lines of the `config:` section, each indented by two
/// spaces.
pub fn s3_objstore_yaml(port: u16, bucket: &str, extra: &str) -> String {
    format!(
        "type: S3\nconfig:\n  bucket: {bucket}\n  endpoint: 127.0.0.1:{port}\n  region: us-east-1\n  access_key: test\n  \
         secret_key: test\n  insecure: true\n{extra}"
    )
}
