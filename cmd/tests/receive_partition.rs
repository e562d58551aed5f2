//! Receivers cut off by a partition: three `strata receive` router-ingestors with replication
//! factor 3, the other two reached through testkit's `FaultProxy` (their ring addresses are the
//! proxies'), which holds every byte to play a network that drops packets: the connections
//! stay open and nothing answers. Writes to the receiver left reach quorum while one peer is
//! cut off (200, without waiting for it), are 503 once two are (quorum is impossible; the
//! replicas that never answer count as unavailable at the forward timeout), and 200 again
//! once the partition heals.

mod common;

use std::ffi::OsString;
use std::time::{Duration, Instant};

use common::{remote_write_body, strata_bin, REMOTE_WRITE_V1};
use strata_proto::prometheus as v1;
use strata_testkit::{http, wait_for, FaultProxy, Fleet, Node, Slot};

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

#[test]
fn writes_reach_quorum_across_a_partition_and_are_503_without_one() {
    let work = tempfile::tempdir().expect("temp dir");
    let mut fleet = Fleet::new(work.path());
    let slots = fleet.slots("receive", 3);
    let proxies: Vec<FaultProxy> = slots[1..].iter().map(|s| FaultProxy::start(port(&s.grpc))).collect();
    let endpoints =
        [slots[0].grpc.clone(), format!("127.0.0.1:{}", proxies[0].port), format!("127.0.0.1:{}", proxies[1].port)];
    let quoted: Vec<String> = endpoints.iter().map(|e| format!("{e:?}")).collect();
    let ring = format!(r#"[{{"algorithm":"ketama","endpoints":[{}]}}]"#, quoted.join(","));
    let _nodes: Vec<Node> = slots
        .iter()
        .enumerate()
        .map(|(i, s)| Node::spawn(strata_bin(), s, receive_args(s, &ring, &endpoints[i], i)))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|mut n| {
            n.wait_ready();
            n
        })
        .collect();

    let t0 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    let router = &slots[0].remote_write;
    let mut i = 0;
    let mut write = || {
        i += 1;
        let started = Instant::now();
        let (status, body) =
            http::post(router, "/api/v1/receive", &REMOTE_WRITE_V1, &request(i, t0)).unwrap_or_else(|e| panic!("{e}"));
        (status, body, started.elapsed())
    };
    let (status, body, _) = write();
    assert_eq!(status, 200, "{body}");

    // One peer cut off: quorum from this receiver and the other, without waiting for the
    // silent one (its forwards pile up until each times out).
    proxies[1].hold();
    for _ in 0..10 {
        let (status, body, took) = write();
        assert_eq!(status, 200, "{body}");
        assert!(took < FORWARD_TIMEOUT, "a write waited {took:?} for the cut-off receiver");
    }

    // Both cut off: quorum is impossible; retryable.
    proxies[0].hold();
    let (status, body, took) = write();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("context deadline exceeded"), "{body}");
    assert!(took >= FORWARD_TIMEOUT && took < 3 * FORWARD_TIMEOUT, "answered after {took:?}");

    // The partition heals: writes reach quorum again.
    proxies[0].release();
    proxies[1].release();
    wait_for("writes to succeed again", Duration::from_secs(15), || match write() {
        (200, _, _) => Ok(()),
        (status, body, _) => Err(format!("{status} {body}")),
    })
    .unwrap_or_else(|e| panic!("{e}"));
}
