//! A private network for partition tests: a bridge in the test's network namespace and member
//! namespaces, each joined to the bridge by a veth pair, on link-local addresses (169.254.0.0/16,
//! never routed off a link) that exist only on this bridge. Cutting a member (its bridge-side
//! veth down) drops every packet to and from it as a real partition does: nothing answers,
//! connections already open hang and new ones time out. Everything is removed when dropped.
//!
//! Needs root (CAP_SYS_ADMIN for `ip netns`, CAP_NET_ADMIN for the links) and iproute2's `ip`;
//! without them the test fails saying so, never skips.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::fleet::{Node, Slot};
use crate::tools::tool;

/// Tells apart the networks of one test process.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// A bridge and its member namespaces; see the module documentation.
pub struct PrivateNet {
    ip: PathBuf,
    bridge: String,
    /// The third octet of the bridge's /24.
    subnet: u8,
    members: Vec<Member>,
}

struct Member {
    ns: String,
    /// The bridge's end of the member's veth pair.
    link: String,
}

impl PrivateNet {
    /// A bridge with `members` namespaces on it, every link up.
    pub fn new(members: usize) -> PrivateNet {
        assert!(members < 250, "a /24 holds the bridge and at most 249 members");
        // Interface names have at most 15 bytes: a short prefix, the pid and a counter.
        let (pid, n) = (std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let tag = format!("{}{n}", pid % 100_000);
        let mut net = PrivateNet {
            ip: tool("ip"),
            bridge: format!("stbr{tag}"),
            subnet: 100 + (pid.wrapping_add(n) % 100) as u8,
            members: Vec::new(),
        };
        if let Err(e) = net.ip(["link", "add", &net.bridge, "type", "bridge"]) {
            panic!(
                "this test needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to build a network of its own with \
                 network namespaces, veth links and a bridge; creating the bridge failed: {e}"
            );
        }
        net.must(["addr", "add", &format!("{}/24", net.bridge_addr()), "dev", &net.bridge]);
        net.must(["link", "set", &net.bridge, "up"]);
        for i in 0..members {
            let member = Member { ns: format!("strata-{tag}-{i}"), link: format!("stv{tag}-{i}") };
            if let Err(e) = net.ip(["netns", "add", &member.ns]) {
                panic!("this test needs root (CAP_SYS_ADMIN) to create a network namespace: {e}");
            }
            let peer = format!("stp{tag}-{i}");
            let addr = format!("{}/24", net.member_addr(i));
            net.members.push(member);
            let Member { ns, link } = &net.members[i];
            net.must(["link", "add", link, "type", "veth", "peer", "name", &peer, "netns", ns]);
            net.must(["link", "set", link, "master", &net.bridge]);
            net.must(["link", "set", link, "up"]);
            net.must(["-n", ns, "link", "set", "lo", "up"]);
            net.must(["-n", ns, "addr", "add", &addr, "dev", &peer]);
            net.must(["-n", ns, "link", "set", &peer, "up"]);
        }
        net
    }

    /// The address of the bridge: this namespace's address on the network.
    pub fn bridge_addr(&self) -> String {
        format!("169.254.{}.1", self.subnet)
    }

    /// The address of member `i` in its namespace.
    pub fn member_addr(&self, i: usize) -> String {
        format!("169.254.{}.{}", self.subnet, i + 2)
    }

    /// Starts `program args` in member `i`'s namespace on `slot` (whose addresses should be
    /// the member's), without waiting for it. `ip netns exec` executes the program in its own
    /// process, so killing the node kills the program.
    pub fn spawn<S: AsRef<OsStr>>(
        &self,
        i: usize,
        program: &Path,
        slot: &Slot,
        args: impl IntoIterator<Item = S>,
    ) -> Node {
        let mut all: Vec<OsString> = vec!["netns".into(), "exec".into(), (&self.members[i].ns).into(), program.into()];
        all.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        Node::spawn(&self.ip, slot, all)
    }

    /// Cuts member `i` off: its link to the bridge goes down.
    pub fn cut(&self, i: usize) {
        self.must(["link", "set", &self.members[i].link, "down"]);
    }

    /// Joins member `i` again.
    pub fn heal(&self, i: usize) {
        self.must(["link", "set", &self.members[i].link, "up"]);
    }

    fn ip<const N: usize>(&self, args: [&str; N]) -> Result<(), String> {
        let out = Command::new(&self.ip).args(args).output().map_err(|e| format!("run ip {args:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("ip {} ({}): {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim()))
        }
    }

    fn must<const N: usize>(&self, args: [&str; N]) {
        self.ip(args).unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for PrivateNet {
    /// Removes what was made, as far as it got; errors are ignored so that a failed test's own
    /// message stays the one shown. Deleting a veth end deletes the pair.
    fn drop(&mut self) {
        for Member { ns, link } in &self.members {
            let _ = self.ip(["link", "del", link]);
            let _ = self.ip(["netns", "del", ns]);
        }
        let _ = self.ip(["link", "del", &self.bridge]);
    }
}
