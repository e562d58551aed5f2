//! Routing in one process: routers and ingestors, the ingestors serving
//! `thanos.WriteableStore` on a local port.
//! - A forward in flight to an endpoint that leaves the ring, and then fails, is written to the
//!   series' owner on the new ring: the write succeeds.
//! - Snappy-compressed and uncompressed forwards are both taken.
//! - A router-ingestor estimates a tenant's head series (for its limit) from its ring share.
//! - With a split-tenant label, each series goes to its own tenant, without the label, on the
//!   endpoint the ring gives it as that tenant's.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use strata_proto::prometheus as v1;
use strata_proto::remote_write::WriteBatch;
use strata_receiver::{Compression, ForwardOptions, Receiver, ReceiverConfig, RoutingConfig, Tenants};
use strata_ring::{Algorithm, RingOptions, RingSource};
use strata_store::server::ServerOptions;
use tokio::net::TcpListener;

const NOW: i64 = 1_700_000_000_000;

/// `timeseries` as a remote write 1.0 body, for `WriteBatch::decode_v1`.
fn body(timeseries: &[v1::TimeSeries]) -> Vec<u8> {
    v1::WriteRequest { timeseries: timeseries.to_vec(), ..Default::default() }.encode_to_vec()
}

fn series(n: usize) -> Vec<v1::TimeSeries> {
    (0..n)
        .map(|i| v1::TimeSeries {
            labels: vec![
                v1::Label { name: "__name__".into(), value: "up".into() },
                v1::Label { name: "instance".into(), value: format!("i{i}") },
            ],
            samples: vec![v1::Sample { value: 1.0, timestamp: NOW }],
            ..Default::default()
        })
        .collect()
}

/// An ingestor-only receiver serving gRPC on a local port; its address.
async fn ingestor(dir: &std::path::Path) -> (Arc<Receiver>, String) {
    let rx = Receiver::new(ReceiverConfig::new(dir));
    rx.start().await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let served = rx.clone();
    tokio::spawn(async move { served.serve_grpc(listener, ServerOptions::default(), std::future::pending()).await });
    (rx, addr)
}

fn ring_file(path: &std::path::Path, endpoints: &[&str]) {
    let endpoints: Vec<String> = endpoints.iter().map(|e| format!("{e:?}")).collect();
    std::fs::write(path, format!(r#"[{{"endpoints":[{}]}}]"#, endpoints.join(","))).unwrap();
}

fn routing(path: &std::path::Path, compression: Compression) -> RoutingConfig {
    RoutingConfig {
        source: RingSource::File { path: path.to_owned(), refresh_interval: Duration::from_secs(3600) },
        options: RingOptions { algorithm: Algorithm::Ketama, replication_factor: 1 },
        local_endpoint: None,
        forward: ForwardOptions { compression, ..ForwardOptions::default() },
    }
}

fn head_series(rx: &Receiver, tenant: &str) -> u64 {
    rx.tenants.get(tenant).map_or(0, |db| db.head().status(1).num_series)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_to_an_endpoint_that_left_goes_to_the_new_owner() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, owner_addr) = ingestor(&dir.path().join("owner")).await;

    // An endpoint that takes connections and never answers, until told to drop them.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    let hang_up = Arc::new(tokio::sync::Notify::new());
    let hang = hang_up.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            tokio::select! {
                Ok((conn, _)) = silent.accept() => {
                    held.push(conn);
                    let _ = accepted_tx.send(());
                }
                () = hang.notified() => held.clear(),
            }
        }
    });

    let ring = dir.path().join("hashrings.json");
    ring_file(&ring, &[&silent_addr]);
    let (router, mut watcher) =
        Receiver::with_routing(ReceiverConfig::new(dir.path().join("router")), routing(&ring, Compression::Snappy))
            .unwrap();
    router.start().await.unwrap();

    let writing = router.clone();
    let write = tokio::spawn(async move {
        let body = body(&series(10));
        let batch = WriteBatch::decode_v1(&body).unwrap();
        writing.write(&Tenants::One("t"), 0, &batch).await.map_err(|(e, _)| e.to_string())
    });
    accepted.recv().await.unwrap();
    // The endpoint leaves the ring while the forward waits on it, then fails.
    ring_file(&ring, &[&owner_addr]);
    assert!(watcher.reload().unwrap(), "the ring changed");
    hang_up.notify_one();
    let written = tokio::time::timeout(Duration::from_secs(10), write).await.unwrap().unwrap();
    assert_eq!(written, Ok(10));
    assert_eq!(head_series(&owner, "t"), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_with_and_without_snappy_are_taken() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, owner_addr) = ingestor(&dir.path().join("owner")).await;
    let ring = dir.path().join("hashrings.json");
    ring_file(&ring, &[&owner_addr]);
    for (i, compression) in [Compression::Snappy, Compression::None].into_iter().enumerate() {
        let (router, _watcher) = Receiver::with_routing(
            ReceiverConfig::new(dir.path().join(format!("router{i}"))),
            routing(&ring, compression),
        )
        .unwrap();
        router.start().await.unwrap();
        let timeseries = series(5 * (i + 1));
        let body = body(&timeseries);
        let tenant = format!("t{i}");
        assert_eq!(
            router
                .write(&Tenants::One(&tenant), 0, &WriteBatch::decode_v1(&body).unwrap())
                .await
                .map_err(|(e, _)| e.to_string()),
            Ok(timeseries.len() as u64)
        );
        assert_eq!(head_series(&owner, &tenant), timeseries.len() as u64, "{compression:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_split_by_tenant_label_go_to_their_tenants_owners() {
    let dir = tempfile::tempdir().unwrap();
    let (a, a_addr) = ingestor(&dir.path().join("a")).await;
    let (b, b_addr) = ingestor(&dir.path().join("b")).await;
    let ring = dir.path().join("hashrings.json");
    ring_file(&ring, &[&a_addr, &b_addr]);
    let config =
        ReceiverConfig { split_tenant_label: Some("team".into()), ..ReceiverConfig::new(dir.path().join("router")) };
    let (router, _watcher) = Receiver::with_routing(config, routing(&ring, Compression::Snappy)).unwrap();
    router.start().await.unwrap();

    let mut timeseries = series(40);
    for (i, ts) in timeseries.iter_mut().enumerate() {
        if i % 4 != 0 {
            ts.labels.push(v1::Label { name: "team".into(), value: format!("team-{}", i % 4) });
        }
    }
    let body = body(&timeseries);
    let batch = WriteBatch::decode_v1(&body).unwrap();
    let (split, tenants) = router.tenants_of("header", &batch).unwrap().unwrap();
    assert_eq!(router.write(&tenants, 0, &split).await.map_err(|(e, _)| e.to_string()), Ok(40));

    // Where each series should be: its tenant's placement, without the team label.
    let (configs, _) = strata_ring::config::load_file(&ring).unwrap();
    let options = RingOptions { algorithm: Algorithm::Ketama, replication_factor: 1 };
    let placed = strata_ring::Ring::new(&configs, options, &strata_ring::RingMetrics::default()).unwrap();
    let mut want: std::collections::BTreeMap<(String, String), u64> = Default::default();
    for (i, ts) in timeseries.iter().enumerate() {
        let tenant = if i % 4 == 0 { "header".to_owned() } else { format!("team-{}", i % 4) };
        let labels = ts.labels.iter().filter(|l| l.name != "team").map(|l| (l.name.as_str(), l.value.as_str()));
        let owner = placed.get_n(&tenant, labels, 0).unwrap().address;
        *want.entry((owner, tenant)).or_default() += 1;
    }
    let mut got = std::collections::BTreeMap::new();
    for (rx, addr) in [(&a, &a_addr), (&b, &b_addr)] {
        for (tenant, db) in rx.tenants.all() {
            let n = db.head().status(1).num_series;
            if n > 0 {
                got.insert((addr.clone(), tenant), n);
            }
        }
    }
    assert_eq!(got, want);
    assert!(want.keys().any(|(owner, _)| *owner == a_addr) && want.keys().any(|(owner, _)| *owner == b_addr));
    let stored = a.tenants.get("team-1").or_else(|| b.tenants.get("team-1")).unwrap();
    let names = stored.head().status(10).label_value_count_by_label_name;
    assert!(names.iter().all(|s| s.name != "team"), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_ingestor_counts_a_tenants_series_from_its_share() {
    let dir = tempfile::tempdir().unwrap();
    let (other, other_addr) = ingestor(&dir.path().join("other")).await;
    // This receiver's own endpoint is never dialled: its share is written locally.
    let local = "127.0.0.1:1";
    let ring = dir.path().join("hashrings.json");
    ring_file(&ring, &[&other_addr, local]);
    let mut config = routing(&ring, Compression::Snappy);
    config.local_endpoint = Some(local.into());
    config.options.algorithm = Algorithm::Hashmod;
    let (rx, _watcher) = Receiver::with_routing(ReceiverConfig::new(dir.path().join("local")), config).unwrap();
    rx.start().await.unwrap();
    let body = body(&series(200));
    assert_eq!(
        rx.write(&Tenants::One("t"), 0, &WriteBatch::decode_v1(&body).unwrap()).await.map_err(|(e, _)| e.to_string()),
        Ok(200)
    );
    let (here, there) = (head_series(&rx, "t"), head_series(&other, "t"));
    assert_eq!(here + there, 200);
    // Half of the hash space: twice what it holds, near the 200 written.
    let estimate = rx.tenant_head_series("t").unwrap();
    assert_eq!(estimate, 2 * here);
    assert!((140..=260).contains(&estimate), "{estimate}");
}
