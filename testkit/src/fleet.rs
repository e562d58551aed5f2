//! Fleets of processes for multi-process tests: `strata` components, Prometheus and the Thanos
//! peers, each on its own free ports with its own directory and log, stopped when dropped.
//!
//! Ports and directories are handed out as [`Slot`]s before anything starts, so that one
//! process's flags can name another's addresses (a hashring of receivers, a querier's
//! endpoints, Prometheus's remote-write URL).

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::Proc;

/// How long a process may take to answer `/-/ready` (a receiver replays its WAL first).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Hands out slots under one directory, with ports no other slot of the fleet has.
pub struct Fleet {
    dir: PathBuf,
    names: BTreeSet<String>,
    ports: BTreeSet<u16>,
}

/// What one process of a fleet gets: three ports on 127.0.0.1 and a directory holding its data
/// directory and log.
#[derive(Clone, Debug)]
pub struct Slot {
    pub name: String,
    /// `127.0.0.1:<port>` for HTTP: `/-/ready`, `/metrics`, the APIs.
    pub http: String,
    /// `127.0.0.1:<port>` for gRPC (StoreAPI).
    pub grpc: String,
    /// `127.0.0.1:<port>` for remote write (a receiver's `/api/v1/receive`).
    pub remote_write: String,
    /// `<fleet dir>/<name>`, created by the fleet.
    pub dir: PathBuf,
    /// `<dir>/data`, left for the process to create.
    pub data_dir: PathBuf,
    /// `<dir>/<name>.log`: the process's stdout and stderr.
    pub log: PathBuf,
}

impl Fleet {
    /// A fleet whose processes keep their data and logs under `dir`.
    pub fn new(dir: &Path) -> Fleet {
        Fleet { dir: dir.to_path_buf(), names: BTreeSet::new(), ports: BTreeSet::new() }
    }

    /// A slot named `name` (unique in the fleet).
    pub fn slot(&mut self, name: &str) -> Slot {
        assert!(self.names.insert(name.to_owned()), "the fleet already has a process named {name}");
        let ports = loop {
            let ports = crate::free_ports(3);
            if ports.iter().all(|p| !self.ports.contains(p)) {
                break ports;
            }
        };
        self.ports.extend(&ports);
        let addr = |port: u16| format!("127.0.0.1:{port}");
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        Slot {
            name: name.to_owned(),
            http: addr(ports[0]),
            grpc: addr(ports[1]),
            remote_write: addr(ports[2]),
            data_dir: dir.join("data"),
            log: dir.join(format!("{name}.log")),
            dir,
        }
    }

    /// `n` slots named `<prefix>-0` … `<prefix>-<n-1>`.
    pub fn slots(&mut self, prefix: &str, n: usize) -> Vec<Slot> {
        (0..n).map(|i| self.slot(&format!("{prefix}-{i}"))).collect()
    }
}

impl Slot {
    /// `--http-address` and `--grpc-address`, which every strata component takes.
    fn listen_args(&self) -> Vec<OsString> {
        ["--http-address", &self.http, "--grpc-address", &self.grpc].iter().map(OsString::from).collect()
    }

    /// `strata receive` on this slot: its three addresses and `--tsdb.path` = the data dir.
    pub fn receive_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["receive".into(), "--tsdb.path".into(), self.data_dir.clone().into()];
        args.extend(["--remote-write.address".into(), self.remote_write.clone().into()]);
        args.extend(self.listen_args());
        args
    }

    /// `strata standalone` on this slot: its three addresses and `--data-dir` = the data dir.
    pub fn standalone_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["standalone".into(), "--data-dir".into(), self.data_dir.clone().into()];
        args.extend(["--remote-write.address".into(), self.remote_write.clone().into()]);
        args.extend(self.listen_args());
        args
    }

    /// `strata query` on this slot over the StoreAPI `endpoints`.
    pub fn query_args(&self, endpoints: &[&str]) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["query".into()];
        args.extend(self.listen_args());
        args.extend(endpoints.iter().map(|e| OsString::from(format!("--endpoint={e}"))));
        args
    }

    /// The real `thanos receive` on this slot as a single ingestor (no hashring): its three
    /// addresses and `--tsdb.path` = the data dir. Its Cap'n Proto replication server, which a
    /// single ingestor does not use, listens on a port the OS picks: its fixed default would
    /// clash with any other `thanos receive` on the machine.
    pub fn thanos_receive_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["receive".into(), "--tsdb.path".into(), self.data_dir.clone().into()];
        args.extend(["--remote-write.address".into(), self.remote_write.clone().into()]);
        args.push("--receive.capnproto-address=127.0.0.1:0".into());
        args.extend(self.listen_args());
        args
    }

    /// The real `thanos query` on this slot over the StoreAPI `endpoints`.
    pub fn thanos_query_args(&self, endpoints: &[&str]) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["query".into()];
        args.extend(self.listen_args());
        args.extend(endpoints.iter().map(|e| OsString::from(format!("--endpoint={e}"))));
        args
    }

    /// Writes `config` (YAML) to `<dir>/prometheus.yml` and returns the flags that run
    /// Prometheus (Debian's 2.42 or 3.x) on this slot with it: the config, the data dir as its
    /// TSDB, and the HTTP address to listen on.
    pub fn prometheus_args(&self, config: &str) -> Vec<OsString> {
        let file = self.dir.join("prometheus.yml");
        std::fs::write(&file, config).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        let flag = |name: &str, value: &OsStr| {
            let mut flag = OsString::from(format!("--{name}="));
            flag.push(value);
            flag
        };
        vec![
            flag("config.file", file.as_os_str()),
            flag("storage.tsdb.path", self.data_dir.as_os_str()),
            flag("web.listen-address", OsStr::new(&self.http)),
        ]
    }
}

/// A started process of a fleet; killed when dropped.
pub struct Node {
    pub slot: Slot,
    pub proc: Proc,
}

impl Node {
    /// Starts `program args` in `slot` (its log, named after the slot) without waiting for it.
    pub fn spawn<S: AsRef<OsStr>>(program: &Path, slot: &Slot, args: impl IntoIterator<Item = S>) -> Node {
        let mut cmd = Command::new(program);
        cmd.args(args).current_dir(&slot.dir);
        Node { slot: slot.clone(), proc: Proc::spawn(&slot.name, cmd, &slot.log) }
    }

    /// [`Node::spawn`], then [`Node::wait_ready`].
    pub fn start<S: AsRef<OsStr>>(program: &Path, slot: &Slot, args: impl IntoIterator<Item = S>) -> Node {
        let mut node = Node::spawn(program, slot, args);
        node.wait_ready();
        node
    }

    /// Starts one process per slot with `args(slot)`, then waits until every one is ready.
    pub fn start_all<S: AsRef<OsStr>>(program: &Path, slots: &[Slot], args: impl Fn(&Slot) -> Vec<S>) -> Vec<Node> {
        let mut nodes: Vec<Node> = slots.iter().map(|slot| Node::spawn(program, slot, args(slot))).collect();
        nodes.iter_mut().for_each(Node::wait_ready);
        nodes
    }

    /// Waits until `/-/ready` on the HTTP address answers 200; fails with the log when the
    /// process exits or a minute passes first.
    pub fn wait_ready(&mut self) {
        self.proc.wait_http_ok(&self.slot.http, "/-/ready", READY_TIMEOUT);
    }

    /// The HTTP address.
    pub fn http(&self) -> &str {
        &self.slot.http
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_get_their_own_ports_and_directories() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut fleet = Fleet::new(dir.path());
        let mut slots = fleet.slots("receive", 3);
        slots.push(fleet.slot("query"));
        let mut ports: Vec<&str> =
            slots.iter().flat_map(|s| [&s.http, &s.grpc, &s.remote_write]).map(|a| a.as_str()).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 12);
        assert_eq!(slots[1].name, "receive-1");
        assert_eq!(slots[1].dir, dir.path().join("receive-1"));
        assert!(slots[1].dir.is_dir());
        assert_eq!(slots[3].log, dir.path().join("query/query.log"));
        let args: Vec<String> = slots[0].receive_args().iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            args,
            [
                "receive",
                "--tsdb.path",
                &slots[0].data_dir.display().to_string(),
                "--remote-write.address",
                &slots[0].remote_write,
                "--http-address",
                &slots[0].http,
                "--grpc-address",
                &slots[0].grpc,
            ]
        );
    }

    #[test]
    #[should_panic(expected = "the fleet already has a process named a")]
    fn names_are_unique() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut fleet = Fleet::new(dir.path());
        fleet.slot("a");
        fleet.slot("a");
    }

    #[test]
    fn prometheus_starts_with_the_given_config() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut fleet = Fleet::new(dir.path());
        let slot = fleet.slot("prometheus");
        let config = format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['{}']\n",
            slot.http
        );
        let node = Node::start(&crate::tool("prometheus"), &slot, slot.prometheus_args(&config));
        let config = crate::http::get_json(node.http(), "/api/v1/status/config").expect("config");
        assert!(config["data"]["yaml"].as_str().is_some_and(|y| y.contains("job_name: self")), "{config}");
        let status = node.proc.terminate(Duration::from_secs(30));
        assert!(status.success(), "{status}");
        assert!(slot.data_dir.join("wal").is_dir());
    }
}
