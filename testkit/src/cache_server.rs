//! memcached and Redis servers (Debian's) for the tests of the caches that use them.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::{free_port, tool, wait_for, Proc};

/// A cache server on a free port of 127.0.0.1, stopped when dropped.
pub struct CacheServer {
    pub proc: Proc,
    /// `127.0.0.1:<port>`.
    pub addr: String,
}

impl CacheServer {
    /// memcached with 64 MiB of memory, logging to `log_dir/memcached.log`.
    pub fn memcached(log_dir: &Path) -> CacheServer {
        let port = free_port().to_string();
        Self::start(log_dir, "memcached", &["-l", "127.0.0.1", "-p", &port, "-U", "0", "-m", "64", "-u", "root"], &port)
    }

    /// redis-server without persistence, logging to `log_dir/redis-server.log`.
    pub fn redis(log_dir: &Path) -> CacheServer {
        let port = free_port().to_string();
        Self::start(
            log_dir,
            "redis-server",
            &["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            &port,
        )
    }

    fn start(log_dir: &Path, program: &str, args: &[&str], port: &str) -> CacheServer {
        let mut cmd = Command::new(tool(program));
        cmd.args(args);
        let proc = Proc::spawn(program, cmd, &log_dir.join(format!("{program}.log")));
        let addr = format!("127.0.0.1:{port}");
        wait_for(&format!("{program} on {addr}"), Duration::from_secs(20), || {
            std::net::TcpStream::connect(&addr).map_err(|e| e.to_string())
        })
        .unwrap_or_else(|e| panic!("{e}"));
        CacheServer { proc, addr }
    }
}
