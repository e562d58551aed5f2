//! A fleet mixing Thanos v0.42 and strata receivers behind one hashrings.json: two
//! `strata receive` ingestors and one `thanos receive` ingestor (no hashring: they store what
//! they are sent), a `thanos receive` router and a `strata receive` router (the hashring, no
//! local endpoint: they route only; Thanos's forwards snappy-compressed, its default). Tenants
//! ending in `-k` are on a ketama hashring, the others on a hashmod one.
//! - Every series written through either router is on exactly the ingestor the ring gives it
//!   (read back over each ingestor's StoreAPI), and on no other.
//! - Refusals get the same status from both routers, whichever kind of ingestor refused: an
//!   out-of-order sample is 409; a series whose ingestor is down is 503, while a request whose
//!   series all have live ingestors is still 200.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::Path;

use common::{corpus, remote_write_body, strata_bin, REMOTE_WRITE_V1};
use strata_proto::prometheus as v1;
use strata_proto::thanos as pb;
use strata_proto::thanos::store_client::StoreClient;
use strata_ring::{Algorithm, Ring, RingMetrics, RingOptions};
use strata_testkit::{http, peer, Fleet, Node, Slot};
use tonic::transport::Channel;

/// The external label naming each receiver.
const NODE_LABEL: &str = "receive_node";

/// Labels of a series, as written.
type Series = Vec<(String, String)>;

fn labels(ts: &v1::TimeSeries) -> Series {
    ts.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect()
}

/// Remote-writes `req` as `tenant` to the router at `addr`; the status and body.
fn write(addr: &str, tenant: &str, req: &v1::WriteRequest) -> (u16, String) {
    let mut headers = REMOTE_WRITE_V1.to_vec();
    headers.push(("THANOS-TENANT", tenant));
    http::post(addr, "/api/v1/receive", &headers, &remote_write_body(req)).unwrap_or_else(|e| panic!("{e}"))
}

/// `base` with the external label every receiver gets (Thanos refuses to start without one).
fn node_args(base: Vec<OsString>, slot: &Slot) -> Vec<OsString> {
    let mut args = base;
    args.push(format!("--label={NODE_LABEL}=\"{}\"", slot.name).into());
    args
}

/// A router's flags: `base` with the ring, replication factor 1.
fn router_args(base: Vec<OsString>, slot: &Slot, ring: &Path) -> Vec<OsString> {
    let mut args = node_args(base, slot);
    args.extend([
        format!("--receive.hashrings-file={}", ring.display()).into(),
        "--receive.replication-factor=1".into(),
    ]);
    args
}

/// Every `diff_*` series the StoreAPI at `addr` holds, by tenant, without the tenant and node
/// labels.
async fn stored(addr: &str) -> BTreeMap<String, BTreeSet<Series>> {
    let channel = Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("dial");
    let mut client = StoreClient::new(channel).max_decoding_message_size(usize::MAX);
    let matcher = pb::LabelMatcher {
        r#type: pb::label_matcher::Type::Re as i32,
        name: "__name__".into(),
        value: "diff_.+".into(),
    };
    let req = pb::SeriesRequest {
        min_time: 0,
        max_time: i64::MAX,
        matchers: vec![matcher],
        skip_chunks: true,
        ..Default::default()
    };
    let mut stream = client.series(req).await.unwrap_or_else(|e| panic!("Series of {addr}: {e}")).into_inner();
    let mut out: BTreeMap<String, BTreeSet<Series>> = BTreeMap::new();
    while let Some(resp) = stream.message().await.unwrap_or_else(|e| panic!("Series of {addr}: {e}")) {
        let batch = match resp.result {
            Some(pb::series_response::Result::Series(s)) => vec![s],
            Some(pb::series_response::Result::Batch(b)) => b.series,
            _ => continue,
        };
        for s in batch {
            let mut tenant = String::new();
            let mut series = Series::new();
            for (name, value) in s.labels() {
                if name == "tenant_id" {
                    tenant = value.to_owned();
                } else if name != NODE_LABEL {
                    series.push((name.to_owned(), value.to_owned()));
                }
            }
            out.entry(tenant).or_default().insert(series);
        }
    }
    out
}

#[test]
fn thanos_and_strata_routers_agree_on_placement_and_status() {
    let work = tempfile::tempdir().expect("temp dir");
    let mut fleet = Fleet::new(work.path());
    let thanos = peer("thanos");
    let strata_ingestors = fleet.slots("strata-ingestor", 2);
    let thanos_ingestor = fleet.slot("thanos-ingestor");
    let ingestors: Vec<&Slot> = strata_ingestors.iter().chain([&thanos_ingestor]).collect();
    let ring_file = work.path().join("hashrings.json");
    let endpoints: Vec<String> = ingestors.iter().map(|s| format!("{:?}", s.grpc)).collect();
    let endpoints = endpoints.join(",");
    std::fs::write(
        &ring_file,
        format!(
            r#"[{{"hashring":"ketama","tenants":["*-k"],"tenant_matcher_type":"glob","algorithm":"ketama","endpoints":[{endpoints}]}},
                {{"hashring":"hashmod","endpoints":[{endpoints}]}}]"#
        ),
    )
    .expect("write hashrings.json");

    let thanos_router_slot = fleet.slot("thanos-router");
    let strata_router_slot = fleet.slot("strata-router");
    let mut nodes: Vec<Node> =
        strata_ingestors.iter().map(|s| Node::spawn(strata_bin(), s, node_args(s.receive_args(), s))).collect();
    let mut thanos_ingestor_node = Some(Node::spawn(
        &thanos,
        &thanos_ingestor,
        node_args(thanos_ingestor.thanos_receive_args(), &thanos_ingestor),
    ));
    nodes.push(Node::spawn(
        &thanos,
        &thanos_router_slot,
        router_args(thanos_router_slot.thanos_receive_args(), &thanos_router_slot, &ring_file),
    ));
    nodes.push(Node::spawn(
        strata_bin(),
        &strata_router_slot,
        router_args(strata_router_slot.receive_args(), &strata_router_slot, &ring_file),
    ));
    nodes.iter_mut().chain(thanos_ingestor_node.as_mut()).for_each(Node::wait_ready);

    // Where the ring puts each series (strata-ring routes as Thanos does: ring_identity.rs).
    let (configs, _) = strata_ring::config::load_file(&ring_file).expect("hashrings.json");
    let ring = Ring::new(
        &configs,
        RingOptions { algorithm: Algorithm::Hashmod, replication_factor: 1 },
        &RingMetrics::default(),
    )
    .expect("ring");
    let owner = |tenant: &str, series: &Series| -> String {
        ring.get_n(tenant, series.iter().map(|(n, v)| (n.as_str(), v.as_str())), 0).expect("placed").address
    };

    let t0 = corpus::data_start();
    let requests = corpus::write_requests(t0, &corpus::generate());
    let routers = [("thanos", &thanos_router_slot), ("strata", &strata_router_slot)];
    let mut want: BTreeMap<String, BTreeMap<String, BTreeSet<Series>>> = BTreeMap::new();
    for (name, router) in routers {
        for tenant in [format!("via-{name}-k"), format!("via-{name}")] {
            for req in &requests[..2] {
                let (status, body) = write(&router.remote_write, &tenant, req);
                assert_eq!(status, 200, "{tenant} through the {name} router: {body}");
                for ts in &req.timeseries {
                    let series = labels(ts);
                    want.entry(owner(&tenant, &series)).or_default().entry(tenant.clone()).or_default().insert(series);
                }
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    for ingestor in &ingestors {
        let got = runtime.block_on(stored(&ingestor.grpc));
        let expected = want.get(&ingestor.grpc).cloned().unwrap_or_default();
        assert_eq!(got.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>(), "tenants on {}", ingestor.name);
        for (tenant, series) in &expected {
            assert!(!series.is_empty());
            assert_eq!(&got[tenant], series, "{tenant}'s series on {}", ingestor.name);
        }
    }

    // One series per ingestor, and a request of it alone.
    let tenant = "status";
    let series_on = |slot: &Slot| -> v1::TimeSeries {
        requests[1]
            .timeseries
            .iter()
            .find(|ts| owner(tenant, &labels(ts)) == slot.grpc)
            .cloned()
            .unwrap_or_else(|| panic!("a series on {}", slot.name))
    };
    let alone = |ts: v1::TimeSeries| v1::WriteRequest { timeseries: vec![ts], metadata: Vec::new() };
    // The series with one sample at `t` (a sample before the newest of its series is out of
    // order, the same sample written again included).
    let at = |ts: &v1::TimeSeries, t: i64| v1::TimeSeries {
        samples: vec![v1::Sample { value: 1.0, timestamp: t }],
        ..ts.clone()
    };
    let newest = requests[1].timeseries.iter().flat_map(|ts| &ts.samples).map(|s| s.timestamp).max().expect("samples");
    for ingestor in &ingestors {
        let series = series_on(ingestor);
        let (status, body) = write(&thanos_router_slot.remote_write, tenant, &alone(at(&series, newest)));
        assert_eq!(status, 200, "{}: {body}", ingestor.name);
        for (name, router) in routers {
            let (status, body) = write(&router.remote_write, tenant, &alone(at(&series, newest - 1)));
            assert_eq!(status, 409, "out of order on {} via the {name} router: {body}", ingestor.name);
        }
    }

    // The Thanos ingestor down: its series are 503 from both routers, the others' 200.
    if let Some(node) = thanos_ingestor_node.take() {
        node.proc.kill();
    }
    let down = series_on(&thanos_ingestor);
    for (i, (name, router)) in routers.into_iter().enumerate() {
        let t = newest + 1 + i as i64;
        let up = v1::WriteRequest {
            timeseries: strata_ingestors.iter().map(|s| at(&series_on(s), t)).collect(),
            metadata: Vec::new(),
        };
        let (status, body) = write(&router.remote_write, tenant, &up);
        assert_eq!(status, 200, "live ingestors only via the {name} router: {body}");
        for _ in 0..2 {
            // The second time the peer is backed off: still 503.
            let (status, body) = write(&router.remote_write, tenant, &alone(at(&down, t)));
            assert_eq!(status, 503, "a series of the dead ingestor via the {name} router: {body}");
        }
    }
}
