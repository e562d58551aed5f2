use std::collections::BTreeSet;

use prometheus_client::registry::Registry;

use super::*;
use crate::config::parse;

fn ring(json: &str, algorithm: Algorithm, rf: u64) -> Result<Ring, Error> {
    let configs = parse(json.as_bytes()).unwrap().unwrap();
    Ring::new(&configs, RingOptions { algorithm, replication_factor: rf }, &RingMetrics::default())
}

fn endpoints(addresses: &[&str]) -> Vec<Endpoint> {
    addresses.iter().map(|a| Endpoint::from_address(a)).collect()
}

fn zoned(pairs: &[(&str, &str)]) -> Vec<Endpoint> {
    pairs.iter().map(|(a, z)| Endpoint { az: (*z).to_owned(), ..Endpoint::from_address(a) }).collect()
}

fn get(ring: &Ring, tenant: &str, labels: &[(&str, &str)], n: u64) -> Result<String, String> {
    ring.get_n(tenant, labels.iter().copied(), n).map(|e| e.address).map_err(|e| e.to_string())
}

/// Thanos's TestKetamaHashringGet (ten sections per endpoint).
#[test]
fn thanos_ketama_get_cases() {
    let nginx = series_hash("tenant", [("pod", "nginx")]);
    let thanos = series_hash("tenant", [("pod", "thanos")]);
    let cases: &[(&[&str], u64, u64, &str)] = &[
        (&["node-1", "node-2", "node-3"], nginx, 0, "node-2"),
        (&["node-1", "node-2", "node-3"], nginx, 1, "node-1"),
        (&["node-1", "node-2", "node-3"], nginx, 2, "node-3"),
        (&["node-1", "node-3", "node-2"], nginx, 2, "node-3"),
        (&["node-0", "node-1", "node-2", "node-3"], nginx, 0, "node-2"),
        (&["node-1", "node-2", "node-3", "node-4"], nginx, 0, "node-2"),
        (&["node-1", "node-2", "node-3"], thanos, 0, "node-3"),
    ];
    for (addresses, hash, n, want) in cases {
        let k = Ketama::new(endpoints(addresses), 10, n + 1).unwrap();
        assert_eq!(k.get_n(*hash, *n).unwrap().address, *want, "{addresses:?} replica {n}");
    }
}

#[test]
fn ketama_needs_as_many_endpoints_as_replicas() {
    let e = Ketama::new(endpoints(&["node-1"]), 1, 2).err().unwrap();
    assert_eq!(e.to_string(), "ketama: amount of endpoints needs to be larger than replication factor");
    let e = ring(r#"[{"endpoints": ["a", "b"]}]"#, Algorithm::Ketama, 3).unwrap_err();
    assert!(matches!(e, Error::KetamaTooFewEndpoints));
    assert!(matches!(ring(r#"[{"endpoints": ["a"]}]"#, Algorithm::Ketama, 0), Err(Error::ZeroReplicationFactor)));
}

#[test]
fn lookups_beyond_the_ring() {
    let k = ring(r#"[{"endpoints": ["a", "b", "c"]}]"#, Algorithm::Ketama, 2).unwrap();
    assert_eq!(get(&k, "t", &[("a", "1")], 3), Err("insufficient nodes; have 3, want 4".into()));
    assert_eq!(get(&k, "t", &[("a", "1")], 2), Err("replica 2 is beyond the replication factor 2".into()));
    let h = ring(r#"[{"endpoints": ["a", "b"]}]"#, Algorithm::Hashmod, 3).unwrap();
    assert!(get(&h, "t", &[("a", "1")], 1).is_ok());
    assert_eq!(get(&h, "t", &[("a", "1")], 2), Err("insufficient nodes; have 2, want 3".into()));
    let empty = ring(r#"[{"endpoints": []}]"#, Algorithm::Hashmod, 1).unwrap();
    assert_eq!(get(&empty, "t", &[], 0), Err("insufficient nodes; have 0, want 1".into()));
    let single = Ring::single_node("me:10901");
    assert_eq!(get(&single, "any", &[("a", "1")], 0), Ok("me:10901".into()));
    assert_eq!(single.single_node_endpoint().unwrap().capnproto_address, "me:10901");
    assert_eq!(get(&single, "any", &[], 1), Err("insufficient nodes; have 1, want 2".into()));
}

#[test]
fn hashmod_is_sorted_address_plus_replica_modulo() {
    let h = ring(r#"[{"endpoints": ["c", "a", "b"]}]"#, Algorithm::Hashmod, 3).unwrap();
    let sorted = ["a", "b", "c"];
    for i in 0..50 {
        let value = i.to_string();
        let labels = [("__name__", "up"), ("i", value.as_str())];
        let hash = series_hash("t", labels);
        for n in 0..3 {
            let want = sorted[(hash.wrapping_add(n) % 3) as usize];
            assert_eq!(get(&h, "t", &labels, n).unwrap(), want);
        }
    }
}

#[test]
fn what_thanos_refuses_to_build() {
    let e =
        ring(r#"[{"endpoints": [{"address": "a", "az": "1"}, {"address": "b", "az": "2"}]}]"#, Algorithm::Hashmod, 2);
    assert_eq!(
        e.unwrap_err().to_string(),
        "Hashmod algorithm does not support AZ aware hashring configuration. Either use Ketama or remove AZ configuration."
    );
    let e = ring(r#"[{"endpoints": ["a", "b"], "shuffle_sharding_config": {"shard_size": 1}}]"#, Algorithm::Hashmod, 1);
    assert_eq!(
        e.unwrap_err().to_string(),
        "hashmod algorithm does not support shuffle sharding. Either use Ketama or remove shuffle sharding configuration"
    );
    // An unknown algorithm is hashmod, and says so about shuffle sharding first.
    let e = ring(
        r#"[{"algorithm": "rendezvous", "endpoints": [{"address": "a", "az": "1"}], "shuffle_sharding_config": {"shard_size": 1}}]"#,
        Algorithm::Ketama,
        1,
    );
    assert!(matches!(e, Err(Error::HashmodShuffleSharding)));
    let r = ring(r#"[{"algorithm": "rendezvous", "endpoints": ["a", "b"]}]"#, Algorithm::Ketama, 1).unwrap();
    assert_eq!(r.hashrings()[0].algorithm(), Algorithm::Hashmod);
    let e = ring(
        r#"[{"hashring": "big", "endpoints": ["a", "b"], "shuffle_sharding_config": {"shard_size": 3}}]"#,
        Algorithm::Ketama,
        1,
    );
    assert_eq!(e.unwrap_err().to_string(), "shard size 3 is larger than number of nodes in hashring big (2)");
    let many: Vec<String> = (0..=MAX_ENDPOINTS_PER_HASHRING).map(|i| format!("\"r{i}\"")).collect();
    let e = ring(&format!(r#"[{{"endpoints": [{}]}}]"#, many.join(",")), Algorithm::Hashmod, 1);
    assert!(matches!(e, Err(Error::TooManyEndpoints { .. })));
}

/// With zones of 3 and 1 endpoints, the fourth replica can never be placed: Thanos's build
/// loops forever; here it is an error.
#[test]
fn replicas_that_zones_cannot_take_are_an_error() {
    let cfg = r#"[{"endpoints": [{"address": "a1", "az": "a"}, {"address": "a2", "az": "a"}, {"address": "a3", "az": "a"}, {"address": "b1", "az": "b"}]}]"#;
    assert!(ring(cfg, Algorithm::Ketama, 3).is_ok());
    assert!(matches!(ring(cfg, Algorithm::Ketama, 4), Err(Error::ReplicasUnplaceable { replication_factor: 4 })));
}

/// Thanos's TestKetamaHashringEvenAZSpread: a series' replicas fill every zone before any zone
/// takes a second one.
#[test]
fn replicas_spread_evenly_over_zones() {
    let cases: Vec<(Vec<Endpoint>, u64)> = vec![
        (zoned(&[("a", "1"), ("b", "2"), ("c", "1"), ("d", "2")]), 1),
        (endpoints(&["a", "b", "c", "d"]), 1),
        (zoned(&[("a", "1"), ("b", "2"), ("c", "1"), ("d", "2")]), 2),
        (zoned(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "1"), ("e", "2"), ("f", "3")]), 3),
        (endpoints(&["a", "b", "c", "d", "e", "f", "g"]), 3),
        (
            zoned(&[
                ("a", "1"),
                ("b", "2"),
                ("c", "3"),
                ("d", "1"),
                ("e", "2"),
                ("f", "3"),
                ("g", "4"),
                ("h", "4"),
                ("i", "4"),
                ("j", "5"),
                ("k", "5"),
                ("l", "5"),
            ]),
            10,
        ),
    ];
    for (nodes, rf) in cases {
        let zones: BTreeSet<&str> = nodes.iter().map(|e| e.az.as_str()).collect();
        let k = Ketama::new(nodes.clone(), SECTIONS_PER_NODE, rf).unwrap();
        for i in 0..200 {
            let value = i.to_string();
            let hash = series_hash("default-tenant", [("foo", value.as_str())]);
            let mut per_zone: BTreeMap<&str, i64> = BTreeMap::new();
            let mut seen = BTreeSet::new();
            for n in 0..rf {
                let e = k.get_n(hash, n).unwrap();
                assert!(seen.insert(e.address.clone()), "replicas on distinct endpoints");
                *per_zone.entry(nodes.iter().find(|x| x.address == e.address).unwrap().az.as_str()).or_default() += 1;
            }
            assert_eq!(per_zone.len(), (rf as usize).min(zones.len()));
            let least = per_zone.values().min().unwrap();
            assert!(per_zone.values().all(|c| c - least <= 1), "{per_zone:?}");
        }
    }
}

/// Thanos's TestKetamaHashringEvenNodeSpread: every endpoint holds within 10% of its share of
/// the replicas.
#[test]
fn replicas_spread_evenly_over_endpoints() {
    let cases: Vec<(Vec<Endpoint>, u64, usize)> = vec![
        (zoned(&[("a", "1"), ("b", "2"), ("c", "1"), ("d", "2")]), 2, 1000),
        (endpoints(&["a", "b", "c", "d"]), 2, 1000),
        (zoned(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "2"), ("e", "1"), ("f", "3")]), 3, 10000),
        (
            zoned(&[
                ("a", "1"),
                ("b", "2"),
                ("c", "3"),
                ("d", "2"),
                ("e", "1"),
                ("f", "3"),
                ("g", "1"),
                ("h", "2"),
                ("i", "3"),
            ]),
            2,
            10000,
        ),
        (
            zoned(&[
                ("a", "1"),
                ("b", "2"),
                ("c", "3"),
                ("d", "2"),
                ("e", "1"),
                ("f", "3"),
                ("g", "1"),
                ("h", "2"),
                ("i", "3"),
            ]),
            9,
            10000,
        ),
    ];
    for (nodes, rf, series) in cases {
        let k = Ketama::new(nodes.clone(), SECTIONS_PER_NODE, rf).unwrap();
        let optimal = (series as u64 * rf) as f64 / nodes.len() as f64;
        let mut count: BTreeMap<String, u64> = BTreeMap::new();
        for i in 0..series {
            let value = i.to_string();
            let hash = series_hash("default-tenant", [("foo", value.as_str())]);
            for n in 0..rf {
                *count.entry(k.get_n(hash, n).unwrap().address.clone()).or_default() += 1;
            }
        }
        for (node, c) in count {
            assert!((c as f64 - optimal).abs() / optimal < 0.1, "{node}: {c} vs {optimal}");
        }
    }
}

#[test]
fn ketama_shares_add_up_and_are_balanced() {
    for n in [1, 3, 4, 7] {
        let addresses: Vec<String> = (0..n).map(|i| format!("receive-{i}:10901")).collect();
        let refs: Vec<&str> = addresses.iter().map(String::as_str).collect();
        let k = Ketama::new(endpoints(&refs), SECTIONS_PER_NODE, n.min(3) as u64).unwrap();
        let shares = k.shares();
        let primary: f64 = shares.iter().map(|s| s.primary).sum();
        let replicas: f64 = shares.iter().map(|s| s.replicas).sum();
        assert!((primary - 1.0).abs() < 1e-9, "{primary}");
        assert!((replicas - n.min(3) as f64).abs() < 1e-9, "{replicas}");
        for s in &shares {
            assert_eq!(s.sections, SECTIONS_PER_NODE);
            // A thousand sections keep every endpoint within 10% of an even share.
            assert!(
                (s.primary * n as f64 - 1.0).abs() < 0.1,
                "{n} endpoints: {} holds {}",
                s.endpoint.address,
                s.primary
            );
        }
    }
    let one = Ketama::new(endpoints(&["a"]), 1, 1).unwrap().shares();
    assert_eq!((one[0].primary, one[0].replicas), (1.0, 1.0));
}

/// Thanos's TestHashringGet: rings in order, exact and glob tenants, the default ring, no match.
#[test]
fn tenants_pick_the_first_matching_hashring() {
    let labels = [("foo", "bar"), ("baz", "qux")];
    let cases: &[(&str, &str, Option<&[&str]>)] = &[
        (r#"[{"endpoints": ["node1"]}]"#, "", Some(&["node1"])),
        (
            r#"[{"endpoints": ["node2"], "tenants": ["tenant2"]}, {"endpoints": ["node1"]}]"#,
            "tenant2",
            Some(&["node2"]),
        ),
        (
            r#"[{"endpoints": ["node1"], "tenants": ["tenant1"]}, {"endpoints": ["node2"], "tenants": ["tenant2"]}, {"endpoints": ["node3"], "tenants": ["tenant3"]}]"#,
            "tenant1",
            Some(&["node1"]),
        ),
        (
            r#"[{"endpoints": ["node1"], "tenants": ["tenant1"]}, {"endpoints": ["node2"], "tenants": ["tenant2"]}, {"endpoints": ["node3"], "tenants": ["tenant3"]}]"#,
            "tenant4",
            None,
        ),
        (
            r#"[{"endpoints": ["node1", "node2", "node3"], "tenants": ["tenant1"]}, {"endpoints": ["node4", "node5", "node6"]}]"#,
            "tenant1",
            Some(&["node1", "node2", "node3"]),
        ),
        (
            r#"[{"endpoints": ["node1", "node2", "node3"], "tenants": ["tenant1"]}, {"endpoints": ["node4", "node5", "node6"]}]"#,
            "",
            Some(&["node4", "node5", "node6"]),
        ),
        (
            r#"[{"endpoints": ["node1", "node2", "node3"], "tenants": ["prefix*"], "tenant_matcher_type": "glob"}, {"endpoints": ["node4", "node5", "node6"]}]"#,
            "prefix-1",
            Some(&["node1", "node2", "node3"]),
        ),
        (
            r#"[{"endpoints": ["node1", "node2", "node3"], "tenants": ["prefix*"], "tenant_matcher_type": "glob"}, {"endpoints": ["node4", "node5", "node6"]}]"#,
            "suffix-1",
            Some(&["node4", "node5", "node6"]),
        ),
        (
            r#"[{"endpoints": ["node1", "node2", "node3"], "tenants": ["t1-*", "t2", "t3-*"], "tenant_matcher_type": "glob"}, {"endpoints": ["node4", "node5", "node6"]}]"#,
            "t2",
            Some(&["node1", "node2", "node3"]),
        ),
    ];
    for (cfg, tenant, want) in cases {
        let r = ring(cfg, Algorithm::Hashmod, 3).unwrap();
        match (get(&r, tenant, &labels, 0), want) {
            (Ok(node), Some(nodes)) => assert!(nodes.contains(&node.as_str()), "{cfg} {tenant}: {node}"),
            (Err(e), None) => assert_eq!(e, "no matching hashring to handle tenant"),
            (got, want) => panic!("{cfg} {tenant}: got {got:?}, want one of {want:?}"),
        }
    }
}

#[test]
fn tenant_matchers_edge_cases() {
    // An exact ring does not read its tenants as patterns; an unknown matcher type matches no
    // tenant (the ring without tenants after it takes them).
    let r = ring(
        r#"[{"endpoints": ["exact"], "tenants": ["t*"]},
            {"endpoints": ["unknown"], "tenants": ["t1"], "tenant_matcher_type": "regex"},
            {"endpoints": ["glob"], "tenants": ["t?", "[", "x*"], "tenant_matcher_type": "glob"},
            {"endpoints": ["rest"]}]"#,
        Algorithm::Hashmod,
        1,
    )
    .unwrap();
    let at = |tenant: &str| get(&r, tenant, &[("a", "b")], 0);
    assert_eq!(at("t*"), Ok("exact".into()));
    assert_eq!(at("t1"), Ok("glob".into()));
    assert_eq!(at("xyz"), Ok("glob".into()));
    // A malformed pattern fails a tenant nothing else in its ring matches, as in Thanos.
    assert_eq!(at("other"), Err("error matching tenant pattern [ (tenant other): syntax error in pattern".into()));
    assert_eq!(at("t12"), Err("error matching tenant pattern [ (tenant t12): syntax error in pattern".into()));
    // Remembered tenants answer the same.
    assert_eq!(at("t1"), Ok("glob".into()));
    assert_eq!(r.hashring_of("t*").unwrap().unwrap().config().endpoints[0].address, "exact");
    assert!(r.hashring_of("other").is_err());
    let none = ring(r#"[]"#, Algorithm::Hashmod, 1).unwrap();
    assert!(none.hashring_of("t").unwrap().is_none());
    assert_eq!(get(&none, "t", &[], 0), Err("no matching hashring to handle tenant".into()));
}

#[test]
fn external_labels_come_from_the_first_ring_naming_the_tenant() {
    let r = ring(
        r#"[{"endpoints": ["a"], "tenants": ["t*"], "tenant_matcher_type": "glob", "external_labels": {"ring": "glob"}},
            {"endpoints": ["b"], "tenants": ["t1"], "external_labels": {"ring": "exact"}},
            {"endpoints": ["c"], "tenants": ["t1"], "external_labels": {"ring": "later"}}]"#,
        Algorithm::Hashmod,
        1,
    )
    .unwrap();
    assert_eq!(r.external_labels("t1").unwrap()["ring"], "exact");
    assert_eq!(r.external_labels("t*").unwrap()["ring"], "glob");
    assert!(r.external_labels("t2").is_none());
}

/// Values printed by Thanos's `receive.ShuffleShardSeed` (`interop/ringref seed`).
#[test]
fn shuffle_shard_seed_is_thanos() {
    assert_eq!(shuffle_shard_seed("tenant-a", ""), -3380867882834763730);
    assert_eq!(shuffle_shard_seed("tenant-a", "az-1"), -3943348642294895949);
    assert_eq!(shuffle_shard_seed("default-tenant", ""), -3533951271318758415);
    assert_eq!(shuffle_shard_seed("default-tenant", "az-1"), 6390780238306591901);
    assert_eq!(shuffle_shard_seed("", ""), -3162216497309240828);
    assert_eq!(shuffle_shard_seed("", "az-1"), -6478363203276284382);
}

fn six_in_three_zones() -> String {
    r#"[{"hashring": "test", "endpoints": [
        {"address": "node-1", "az": "az-1"}, {"address": "node-2", "az": "az-1"},
        {"address": "node-3", "az": "az-2"}, {"address": "node-4", "az": "az-2"},
        {"address": "node-5", "az": "az-3"}, {"address": "node-6", "az": "az-3"}],
      "shuffle_sharding_config": SHUFFLE}]"#
        .to_owned()
}

fn used_nodes(r: &Ring, tenant: &str) -> Result<BTreeSet<String>, String> {
    let t = r.tenant(tenant).map_err(|e| e.to_string())?;
    let mut used = BTreeSet::new();
    for i in 0..300 {
        let value = i.to_string();
        let hash = series_hash(tenant, [("iteration", value.as_str())]);
        used.insert(t.get_n(hash, 0).map_err(|e| e.to_string())?.address.clone());
    }
    Ok(used)
}

/// Thanos's TestShuffleShardHashring: how many endpoints a tenant's series use.
#[test]
fn shuffle_shards_take_the_configured_endpoints() {
    let cases: &[(&str, &str, Result<usize, &str>)] = &[
        // An override without a matcher type applies to nobody.
        (r#"{"shard_size": 2, "overrides": [{"tenants": ["tenant-1"], "shard_size": 1}]}"#, "tenant-1", Ok(3)),
        (
            r#"{"shard_size": 2, "overrides": [{"tenants": ["prefix*"], "shard_size": 3, "tenant_matcher_type": "glob"}]}"#,
            "prefix-tenant",
            Ok(3),
        ),
        (
            r#"{"shard_size": 2, "overrides": [{"tenants": ["big"], "shard_size": 4, "tenant_matcher_type": "exact"}]}"#,
            "big",
            Ok(6),
        ),
        (
            r#"{"shard_size": 2, "overrides": [{"tenants": ["prefix*"], "shard_size": 20, "tenant_matcher_type": "glob"}]}"#,
            "prefix-tenant",
            Err("shard size 20 is larger than number of nodes in AZ az-1 (2)"),
        ),
        (
            r#"{"shard_size": 1, "zone_awareness_disabled": true, "overrides": [{"tenants": ["prefix*"], "shard_size": 3, "tenant_matcher_type": "glob"}]}"#,
            "prefix-tenant",
            Ok(3),
        ),
        (r#"{"shard_size": 1, "zone_awareness_disabled": true}"#, "other", Ok(1)),
    ];
    for (shuffle, tenant, want) in cases {
        let r = ring(&six_in_three_zones().replace("SHUFFLE", shuffle), Algorithm::Ketama, 1).unwrap();
        let used = used_nodes(&r, tenant);
        assert_eq!(used.as_ref().map(BTreeSet::len).map_err(String::as_str), *want, "{shuffle} {tenant}: {used:?}");
        // The same tenant gets the same endpoints every time.
        assert_eq!(used_nodes(&r, tenant), used);
    }
}

/// Thanos panics on a negative shard size (it makes a slice of negative capacity); here the
/// tenant's shard is empty and its writes fail.
#[test]
fn a_negative_shard_size_fails_its_tenant() {
    let r = ring(
        &six_in_three_zones().replace(
            "SHUFFLE",
            r#"{"shard_size": 3, "overrides": [{"shard_size": -2, "tenants": ["odd"], "tenant_matcher_type": "exact"}]}"#,
        ),
        Algorithm::Ketama,
        1,
    )
    .unwrap();
    assert_eq!(
        r.tenant("odd").err().unwrap().to_string(),
        "ketama: amount of endpoints needs to be larger than replication factor"
    );
    assert_eq!(r.tenant("even").unwrap().endpoints().len(), 3);
}

#[test]
fn zone_aware_shards_take_from_every_zone() {
    let r = ring(&six_in_three_zones().replace("SHUFFLE", r#"{"shard_size": 3}"#), Algorithm::Ketama, 3).unwrap();
    for tenant in ["a", "b", "c", "d"] {
        let t = r.tenant(tenant).unwrap();
        let zones: BTreeSet<&str> = t.endpoints().iter().map(|e| e.az.as_str()).collect();
        assert_eq!(zones.len(), 3, "{tenant}");
        assert_eq!(t.endpoints().len(), 3);
    }
    // Without enough endpoints in the shard for the replicas, the tenant's writes fail.
    let r = ring(
        &six_in_three_zones().replace("SHUFFLE", r#"{"shard_size": 2, "zone_awareness_disabled": true}"#),
        Algorithm::Ketama,
        3,
    )
    .unwrap();
    assert_eq!(
        r.tenant("x").err().unwrap().to_string(),
        "ketama: amount of endpoints needs to be larger than replication factor"
    );
}

/// Thanos's TestShuffleShardHashringStability: one endpoint more or less moves at most one
/// endpoint of any tenant's shard.
#[test]
fn shuffle_shards_are_stable_when_scaling() {
    for (from, to) in [(10, 11), (20, 21), (11, 10)] {
        let config = |n: usize| {
            let list: Vec<String> = (0..n).map(|i| format!("\"node-{i}\"")).collect();
            format!(
                r#"[{{"endpoints": [{}], "shuffle_sharding_config": {{"shard_size": 5, "zone_awareness_disabled": true}}}}]"#,
                list.join(",")
            )
        };
        let before = ring(&config(from), Algorithm::Ketama, 1).unwrap();
        let after = ring(&config(to), Algorithm::Ketama, 1).unwrap();
        for i in 0..100 {
            let tenant = format!("tenant-{i}");
            let shard = |r: &Ring| -> BTreeSet<String> {
                r.tenant(&tenant).unwrap().endpoints().iter().map(|e| e.address.clone()).collect()
            };
            let (a, b) = (shard(&before), shard(&after));
            assert_eq!((a.len(), b.len()), (5, 5));
            assert!(a.difference(&b).count() <= 1, "{tenant} {from}→{to}: {a:?} → {b:?}");
        }
    }
}

#[test]
fn shuffle_shard_cache_counts_and_evicts() {
    let mut registry = Registry::default();
    let metrics = RingMetrics::register(&mut registry);
    let configs = parse(six_in_three_zones().replace("SHUFFLE", r#"{"shard_size": 3, "cache_size": 2}"#).as_bytes())
        .unwrap()
        .unwrap();
    let r = Ring::new(&configs, RingOptions { algorithm: Algorithm::Ketama, replication_factor: 1 }, &metrics).unwrap();
    for tenant in ["a", "b", "a", "c", "a", "b"] {
        r.tenant(tenant).unwrap();
    }
    let text = encode(&registry);
    // a miss, b miss, a hit, c miss (evicts b), a hit, b miss (evicts c).
    for line in [
        "thanos_shuffle_shard_cache_requests_total{hashring=\"test\"} 6",
        "thanos_shuffle_shard_cache_hits_total{hashring=\"test\"} 2",
        "thanos_shuffle_shard_cache_items{hashring=\"test\"} 2",
        "thanos_shuffle_shard_cache_max_items{hashring=\"test\"} 2",
        "thanos_shuffle_shard_cache_evicted_total{hashring=\"test\"} 2",
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
    drop(r);
    assert!(encode(&registry).contains("thanos_shuffle_shard_cache_items{hashring=\"test\"} 0"));
}

fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text
}

#[test]
fn endpoints_lists_each_once() {
    let r = ring(r#"[{"endpoints": ["b", "a"], "tenants": ["x"]}, {"endpoints": ["c", "a"]}]"#, Algorithm::Hashmod, 1)
        .unwrap();
    let addresses: Vec<&str> = r.endpoints().iter().map(|e| e.address.as_str()).collect();
    assert_eq!(addresses, ["a", "b", "c"]);
}

/// Hostile or broken files: thousands of byte-level mutations of a full configuration are each
/// refused or built and routed, never a panic or a hang.
#[test]
fn mutated_configurations_never_panic() {
    let base = br#"[{"hashring": "a", "tenants": ["t*", "u"], "tenant_matcher_type": "glob", "algorithm": "ketama",
        "external_labels": {"k": "v"},
        "endpoints": ["r1:1", {"address": "r2:1", "az": "x"}, {"address": "r3:1", "capnproto_address": "c", "az": "y"}],
        "shuffle_sharding_config": {"shard_size": 2, "cache_size": 1, "zone_awareness_disabled": false,
          "overrides": [{"shard_size": -1, "tenants": ["u"], "tenant_matcher_type": "exact"}]}},
        {"endpoints": ["r4:1", "r5:1"], "algorithm": "hashmod"}]"#;
    let alphabet = b"[]{}\":,-0123456789 tuaxyz*?\\nul";
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut built, mut refused) = (0, 0);
    for _ in 0..3000 {
        let mut text = base.to_vec();
        for _ in 0..1 + next() % 3 {
            let at = (next() % text.len() as u64) as usize;
            match next() % 3 {
                0 => text[at] = alphabet[(next() % alphabet.len() as u64) as usize],
                1 => {
                    text.remove(at);
                }
                _ => text.insert(at, alphabet[(next() % alphabet.len() as u64) as usize]),
            }
        }
        let Ok(Some(configs)) = parse(&text) else {
            refused += 1;
            continue;
        };
        match Ring::new(
            &configs,
            RingOptions { algorithm: Algorithm::Ketama, replication_factor: 2 },
            &RingMetrics::default(),
        ) {
            Ok(r) => {
                built += 1;
                for tenant in ["t1", "u", "v", ""] {
                    if let Ok(t) = r.tenant(tenant) {
                        for n in 0..3 {
                            let _ = t.get_n(next(), n);
                        }
                    }
                }
            }
            Err(_) => refused += 1,
        }
    }
    assert!(built > 100 && refused > 100, "built {built}, refused {refused}");
}
