//! Receivers cut off by a partition, two ways. Three `strata receive` router-ingestors with
//! replication factor 3 each time; writes to a receiver left reach quorum while one peer is cut
//! off (200, without waiting for it), are 503 once two are (quorum is impossible; the replicas
//! that never answer count as unavailable at the forward timeout), and 200 again once the
//! partition heals.
//!
//! - Through testkit's `FaultProxy` (the ring addresses of two receivers are the proxies'),
//!   which holds every byte to play a network that drops packets: the connections stay open
//!   and nothing answers. Needs no privileges.
//! - Over a real network: two receivers run in network namespaces of their own, joined to a
//!   bridge by veth links, and cutting a link (its bridge end down) drops their packets in the
//!   kernel. Needs root; fails saying so without it.

mod common;

use std::ffi::OsString;
use std::time::{Duration, Instant};

use common::{remote_write_body, strata_bin, REMOTE_WRITE_V1};
use strata_proto::prometheus as v1;
use strata_testkit::{http, wait_for, FaultProxy, Fleet, Node, PrivateNet, Slot};

/// `--receive-forward-timeout` of every receiver.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(1);

fn port(addr: &str) -> u16 {
    addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).expect("host:port")
}

fn receive_args(slot: &Slot, ring: &str, endpoint: &str, replica: usize) -> Vec<OsString> {
    let mut args = slot.receive_args();
    args.extend([
        format!("--receive.hashrings={ring}").into(),
        format!("--receive.local-endpoint={endpoint}").into(),
        "--receive.replication-factor=3".into(),
        format!("--receive-forward-timeout={}ms", FORWARD_TIMEOUT.as_millis()).into(),
        format!("--label=receive_replica=\"{replica}\"").into(),
    ]);
    args
}

/// Request `i`: ten series, one sample each at `t0 + i` ms.
fn request(i: i64, t0: i64) -> Vec<u8> {
    let timeseries = (0..10)
        .map(|s| v1::TimeSeries {
            labels: vec![
                v1::Label { name: "__name__".into(), value: "partition_up".into() },
                v1::Label { name: "series".into(), value: format!("s{s}") },
            ],
            samples: vec![v1::Sample { value: 1.0, timestamp: t0 + i }],
            ..Default::default()
        })
        .collect();
    remote_write_body(&v1::WriteRequest { timeseries, metadata: Vec::new() })
}

/// Ten-series writes, each one millisecond after the last, to any receiver of the ring.
struct Writer {
    t0: i64,
    i: i64,
}

impl Writer {
    fn new() -> Writer {
        let t0 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis();
        Writer { t0: i64::try_from(t0).expect("milliseconds fit i64"), i: 0 }
    }

    /// Status, body and time taken of the next write, sent to `receiver`'s remote-write address.
    fn write(&mut self, receiver: &str) -> (u16, String, Duration) {
        self.i += 1;
        let started = Instant::now();
        let (status, body) = http::post(receiver, "/api/v1/receive", &REMOTE_WRITE_V1, &request(self.i, self.t0))
            .unwrap_or_else(|e| panic!("{e}"));
        (status, body, started.elapsed())
    }
}

/// The partition both tests play on a ring of three: `cut[0]` cuts off the peer of `router`
/// that is not `bystander`, `cut[1]` cuts off `bystander` too, `heal` joins both again.
fn play_partition(router: &str, bystander: &str, cut: [&dyn Fn(); 2], heal: &dyn Fn()) {
    let mut writer = Writer::new();
    for receiver in [router, bystander] {
        let (status, body, _) = writer.write(receiver);
        assert_eq!(status, 200, "{receiver}: {body}");
    }

    // One peer cut off: quorum from the two receivers left, without waiting for the silent one
    // (its forwards pile up until each times out), whichever of them takes the write.
    cut[0]();
    for n in 0..10 {
        let receiver = if n % 2 == 0 { router } else { bystander };
        let (status, body, took) = writer.write(receiver);
        assert_eq!(status, 200, "{receiver}: {body}");
        assert!(took < FORWARD_TIMEOUT, "a write to {receiver} waited {took:?} for the cut-off receiver");
    }

    // Both peers cut off: quorum is impossible; retryable.
    cut[1]();
    let (status, body, took) = writer.write(router);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("context deadline exceeded"), "{body}");
    assert!(took >= FORWARD_TIMEOUT && took < 3 * FORWARD_TIMEOUT, "answered after {took:?}");

    // The partition heals: writes reach quorum again.
    heal();
    wait_for("writes to succeed again", Duration::from_secs(15), || match writer.write(router) {
        (200, _, _) => Ok(()),
        (status, body, _) => Err(format!("{status} {body}")),
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Starts a receiver per slot (`spawn` starts one), then waits until all are ready.
fn start_ring(slots: &[Slot], spawn: impl Fn(usize, &Slot) -> Node) -> Vec<Node> {
    let mut nodes: Vec<Node> = slots.iter().enumerate().map(|(i, s)| spawn(i, s)).collect();
    nodes.iter_mut().for_each(Node::wait_ready);
    nodes
}

fn ketama_ring(endpoints: &[String]) -> String {
    let quoted: Vec<String> = endpoints.iter().map(|e| format!("{e:?}")).collect();
    format!(r#"[{{"algorithm":"ketama","endpoints":[{}]}}]"#, quoted.join(","))
}

#[test]
fn writes_reach_quorum_across_a_partition_and_are_503_without_one() {
    let work = tempfile::tempdir().expect("temp dir");
    let mut fleet = Fleet::new(work.path());
    let slots = fleet.slots("receive", 3);
    let proxies: Vec<FaultProxy> = slots[1..].iter().map(|s| FaultProxy::start(port(&s.grpc))).collect();
    let endpoints =
        [slots[0].grpc.clone(), format!("127.0.0.1:{}", proxies[0].port), format!("127.0.0.1:{}", proxies[1].port)];
    let ring = ketama_ring(&endpoints);
    let _nodes = start_ring(&slots, |i, s| Node::spawn(strata_bin(), s, receive_args(s, &ring, &endpoints[i], i)));

    play_partition(
        &slots[0].remote_write,
        &slots[1].remote_write,
        [&|| proxies[1].hold(), &|| proxies[0].hold()],
        &|| proxies.iter().for_each(FaultProxy::release),
    );
}

/// `addr` (`host:port`) with its host replaced by `host`.
fn on_host(addr: &str, host: &str) -> String {
    format!("{host}:{}", port(addr))
}

#[test]
fn a_receiver_cut_off_by_its_network_link_leaves_quorum_to_the_others() {
    let work = tempfile::tempdir().expect("temp dir");
    let mut fleet = Fleet::new(work.path());
    let net = PrivateNet::new(2);
    let mut slots = fleet.slots("receive", 3);
    // Receiver 0 runs here and is reached over the bridge by the others; the test talks to its
    // remote-write and HTTP addresses on loopback. Receivers 1 and 2 are members of the
    // network, every address of theirs in their own namespace.
    slots[0].grpc = on_host(&slots[0].grpc, &net.bridge_addr());
    for (member, slot) in slots[1..].iter_mut().enumerate() {
        let host = net.member_addr(member);
        for addr in [&mut slot.grpc, &mut slot.http, &mut slot.remote_write] {
            *addr = on_host(addr, &host);
        }
    }
    let endpoints: Vec<String> = slots.iter().map(|s| s.grpc.clone()).collect();
    let ring = ketama_ring(&endpoints);
    let _nodes = start_ring(&slots, |i, s| {
        let args = receive_args(s, &ring, &s.grpc, i);
        match i {
            0 => Node::spawn(strata_bin(), s, args),
            _ => net.spawn(i - 1, strata_bin(), s, args),
        }
    });

    play_partition(&slots[0].remote_write, &slots[1].remote_write, [&|| net.cut(1), &|| net.cut(0)], &|| {
        (0..2).for_each(|member| net.heal(member))
    });
}
