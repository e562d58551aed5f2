//! Behind a real HTTP/1.1 load balancer: Debian's haproxy (round robin, health-checked on
//! `/-/ready`) in front of three `strata receive` router-ingestors with replication factor 3
//! (ketama), and two real senders remote-writing their own metrics through it, Debian's
//! Prometheus 2.42 (remote write 1.0) and Prometheus 3.x (2.0). One receiver is SIGKILLed under
//! that steady load and restarted on its data: neither Prometheus counts a failed sample
//! (`prometheus_remote_storage_samples_failed_total` stays 0), and `strata query`
//! deduplicating `receive_replica` over the three holds every sample each Prometheus had
//! acknowledged, once.

mod common;

use std::ffi::OsString;
use std::time::Duration;

use common::{raw_samples, strata_bin, LabelSet};
use strata_testkit::metrics::metric_sum;
use strata_testkit::{http, peer, tool, wait_for, Fleet, Node, Slot};

fn receive_args(slot: &Slot, ring: &str, replica: usize) -> Vec<OsString> {
    let mut args = slot.receive_args();
    args.extend([
        format!("--receive.hashrings={ring}").into(),
        "--receive.hashrings-algorithm=ketama".into(),
        format!("--receive.local-endpoint={}", slot.grpc).into(),
        "--receive.replication-factor=3".into(),
        format!("--label=receive_replica=\"{replica}\"").into(),
    ]);
    args
}

/// haproxy's configuration: remote write on the slot's remote-write address, `/-/ready` (its
/// monitor URI) on its HTTP address, each receiver checked on its own `/-/ready`; a request
/// whose connection fails goes to another receiver.
fn haproxy_config(lb: &Slot, receivers: &[Slot]) -> String {
    let mut config = format!(
        "global\n  maxconn 1000\n\
         defaults\n  mode http\n  timeout connect 1s\n  timeout client 30s\n  timeout server 30s\n  \
         retries 3\n  option redispatch\n  option http-buffer-request\n  retry-on conn-failure empty-response\n\
         frontend remote_write\n  bind {}\n  bind {}\n  monitor-uri /-/ready\n  default_backend receivers\n\
         backend receivers\n  balance roundrobin\n  option httpchk GET /-/ready\n",
        lb.remote_write, lb.http
    );
    for (i, r) in receivers.iter().enumerate() {
        let check_port = r.http.rsplit_once(':').map(|(_, p)| p).unwrap_or_default();
        config.push_str(&format!("  server r{i} {} check port {check_port} inter 200 fall 1 rise 2\n", r.remote_write));
    }
    config
}

/// A Prometheus scraping itself every second and remote-writing through the balancer, one
/// shard, so that its highest sent timestamp means every older sample was acknowledged.
fn prometheus_args(slot: &Slot, lb: &Slot, v2: bool) -> Vec<OsString> {
    let config = format!(
        "global:\n  scrape_interval: 1s\n\
         scrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['{}']\n\
         remote_write:\n  - url: http://{}/api/v1/receive\n    queue_config:\n      \
         batch_send_deadline: 1s\n      min_backoff: 10ms\n      max_backoff: 200ms\n      \
         min_shards: 1\n      max_shards: 1\n{}",
        slot.http,
        lb.remote_write,
        if v2 { "    protobuf_message: io.prometheus.write.v2.Request\n" } else { "" }
    );
    let mut args = slot.prometheus_args(&config);
    args.extend(["--storage.remote.flush-deadline".into(), "10s".into()]);
    args
}

fn metrics(addr: &str) -> String {
    http::get(addr, "/metrics").unwrap_or_else(|e| panic!("{e}")).1
}

/// Highest timestamp (whole seconds) the Prometheus at `addr` has had acknowledged.
fn highest_sent(addr: &str) -> f64 {
    metric_sum(&metrics(addr), "prometheus_remote_storage_queue_highest_sent_timestamp_seconds").unwrap_or(0.0)
}

fn failed_samples(addr: &str) -> Option<f64> {
    metric_sum(&metrics(addr), "prometheus_remote_storage_samples_failed_total")
}

#[test]
fn prometheus_through_haproxy_loses_nothing_when_a_receiver_dies() {
    let work = tempfile::tempdir().expect("temp dir");
    let mut fleet = Fleet::new(work.path());
    let slots = fleet.slots("receive", 3);
    let endpoints: Vec<String> = slots.iter().map(|s| format!("{:?}", s.grpc)).collect();
    let ring = format!(r#"[{{"endpoints":[{}]}}]"#, endpoints.join(","));
    let mut receivers: Vec<Option<Node>> = Node::start_all(strata_bin(), &slots, |s| {
        receive_args(s, &ring, slots.iter().position(|x| x.name == s.name).unwrap_or(0))
    })
    .into_iter()
    .map(Some)
    .collect();
    let lb = fleet.slot("haproxy");
    let config_file = lb.dir.join("haproxy.cfg");
    std::fs::write(&config_file, haproxy_config(&lb, &slots)).expect("write haproxy.cfg");
    let _haproxy = Node::start(&tool("haproxy"), &lb, ["-db".into(), "-f".into(), OsString::from(&config_file)]);

    let senders = [("prometheus-2", tool("prometheus"), false), ("prometheus-3", peer("prometheus"), true)];
    let proms: Vec<Node> = senders
        .iter()
        .map(|(name, bin, v2)| {
            let slot = fleet.slot(name);
            Node::spawn(bin, &slot, prometheus_args(&slot, &lb, *v2))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|mut n| {
            n.wait_ready();
            n
        })
        .collect();
    let sending = |what: &str, after: f64| {
        for p in &proms {
            wait_for(&format!("{} to send {what}", p.slot.name), Duration::from_secs(60), || {
                match highest_sent(p.http()) {
                    h if h > after => Ok(()),
                    h => Err(format!("highest sent {h}")),
                }
            })
            .unwrap_or_else(|e| panic!("{e}"));
        }
    };
    sending("its first samples", 0.0);
    std::thread::sleep(Duration::from_secs(3));

    // One receiver dies under the load, and comes back on its data.
    let killed_at = proms.iter().map(|p| highest_sent(p.http())).fold(0.0, f64::max);
    if let Some(node) = receivers[1].take() {
        node.proc.kill();
    }
    sending("past the kill", killed_at + 3.0);
    receivers[1] = Some(Node::start(strata_bin(), &slots[1], receive_args(&slots[1], &ring, 1)));
    let restarted_at = proms.iter().map(|p| highest_sent(p.http())).fold(0.0, f64::max);
    sending("past the restart", restarted_at + 3.0);

    let query_slot = fleet.slot("query");
    let grpc: Vec<&str> = slots.iter().map(|s| s.grpc.as_str()).collect();
    let mut args = query_slot.query_args(&grpc);
    args.extend(["--query.replica-label=receive_replica".into(), "--deduplication.func=chain".into()]);
    let query = Node::start(strata_bin(), &query_slot, args);
    for p in &proms {
        assert_eq!(failed_samples(p.http()), Some(0.0), "{} counts failed samples", p.slot.name);
        // Strictly before the highest sent second: that second may be split over requests.
        let t = highest_sent(p.http()) as i64 * 1000 - 1;
        let acked = raw_samples(p.http(), t).unwrap_or_else(|e| panic!("{e}"));
        let instance = p.slot.http.as_str();
        let stored: std::collections::BTreeMap<LabelSet, Vec<(i64, f64)>> = raw_samples(query.http(), t)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .filter(|(labels, _)| labels.iter().any(|(n, v)| n == "instance" && v == instance))
            .map(|(labels, samples)| (labels.into_iter().filter(|(n, _)| n != "tenant_id").collect(), samples))
            .collect();
        let mut wrong = Vec::new();
        for (labels, samples) in &acked {
            match stored.get(labels) {
                Some(got)
                    if got.len() == samples.len()
                        && got
                            .iter()
                            .zip(samples)
                            .all(|(a, b)| a.0 == b.0 && (a.1 == b.1 || a.1.is_nan() && b.1.is_nan())) => {}
                got => wrong.push(format!(
                    "{labels:?}: Prometheus {} samples, strata {:?}",
                    samples.len(),
                    got.map(Vec::len)
                )),
            }
        }
        let total: usize = acked.values().map(Vec::len).sum();
        assert!(total > 1000, "{}: only {total} samples acknowledged", p.slot.name);
        assert!(
            wrong.is_empty(),
            "{}: {} of {} series differ, first: {:#?}",
            p.slot.name,
            wrong.len(),
            acked.len(),
            &wrong[..wrong.len().min(5)]
        );
    }
}
