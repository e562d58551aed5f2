//! Routing identity with Thanos: 100k series over 5 tenants, placed by strata-ring and by
//! Thanos v0.42's own `pkg/receive` hashring (`interop/ringref`, built by `interop/build.sh`),
//! for hashmod, ketama, zone-aware ketama, shuffle sharding with and without zone awareness (with
//! overrides) and a configuration of several hashrings, with 3, 4 and 7 endpoints and
//! replication factors 1 and 3. Every (series, replica) must land on the same endpoint, and every
//! failure (a ring that cannot be built, a tenant without a hashring, a shard too large for a
//! zone) must be the same failure. One ringref run answers every case.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use strata_ring::{config, series_hash, Algorithm, Ring, RingMetrics, RingOptions};

const SERIES: usize = 100_000;
const TENANTS: [&str; 5] = ["default-tenant", "team-a", "team-b", "billing-prod", "ml-staging"];
const ZONES: [&str; 3] = ["az-a", "az-b", "az-c"];

struct Series {
    tenant: &'static str,
    labels: Vec<(String, String)>,
}

/// Series as exporters and Kubernetes produce them: node, HTTP, kube-state-metrics, cAdvisor,
/// histogram buckets and `up`, labels sorted by name as remote write sends them, a few values
/// outside ASCII.
fn corpus() -> Vec<Series> {
    let modes = ["idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user"];
    let handlers = ["/api/v1/query", "/api/v1/query_range", "/api/v1/series", "/-/ready", "/metrics"];
    let namespaces = ["checkout", "payments", "kube-system", "monitoring", "équipe-données"];
    let buckets = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"];
    (0..SERIES)
        .map(|i| {
            let tenant = TENANTS[i % TENANTS.len()];
            let k = i / TENANTS.len();
            let host = format!("ip-10-{}-{}-{}.eu-west-1.compute.internal", k % 7, k / 7 % 200, k / 1400 % 250);
            let ns = namespaces[k % namespaces.len()];
            let pod = format!("{ns}-{:x}-{:05x}", k % 97, (k * 7919) % 0xfffff);
            let s = |pairs: &[(&str, String)]| pairs.iter().map(|(n, v)| ((*n).to_owned(), v.clone())).collect();
            let mut labels: Vec<(String, String)> = match k % 6 {
                0 => s(&[
                    ("__name__", "node_cpu_seconds_total".into()),
                    ("cpu", (k % 64).to_string()),
                    ("instance", format!("{host}:9100")),
                    ("job", "node".into()),
                    ("mode", modes[k % modes.len()].into()),
                ]),
                1 => s(&[
                    ("__name__", "http_requests_total".into()),
                    ("code", ["200", "404", "500", "503"][k % 4].into()),
                    ("handler", handlers[k % handlers.len()].into()),
                    ("instance", format!("{pod}:8080")),
                    ("job", "api".into()),
                    ("method", ["GET", "POST"][k % 2].into()),
                ]),
                2 => s(&[
                    ("__name__", "kube_pod_container_status_restarts_total".into()),
                    ("container", ["app", "sidecar", "istio-proxy"][k % 3].into()),
                    ("namespace", ns.into()),
                    ("pod", pod.clone()),
                    (
                        "uid",
                        format!(
                            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
                            k * 2654435761 % 0xffffffff,
                            k % 0xffff,
                            k % 0xfff,
                            k % 0xfff,
                            k
                        ),
                    ),
                ]),
                3 => s(&[
                    ("__name__", "container_memory_working_set_bytes".into()),
                    ("container", "app".into()),
                    ("id", format!("/kubepods/burstable/pod{k:x}/{:x}", k * 31)),
                    ("image", format!("registry.example.org/{ns}/app:v1.{}.{}", k % 20, k % 7)),
                    ("namespace", ns.into()),
                    ("node", host.clone()),
                    ("pod", pod.clone()),
                ]),
                4 => s(&[
                    ("__name__", "http_request_duration_seconds_bucket".into()),
                    ("handler", handlers[k % handlers.len()].into()),
                    ("instance", format!("{pod}:8080")),
                    ("job", "api".into()),
                    ("le", buckets[k % buckets.len()].into()),
                ]),
                _ => s(&[
                    ("__name__", "up".into()),
                    ("instance", format!("{host}:{}", 9000 + k % 1000)),
                    ("job", "node".into()),
                ]),
            };
            labels.sort();
            Series { tenant, labels }
        })
        .collect()
}

/// One configuration: the `--receive.hashrings-algorithm` flag, the replication factor and the
/// hashrings.json.
struct Case {
    name: String,
    algorithm: &'static str,
    replication_factor: u64,
    /// The hashrings.json text.
    hashrings: String,
}

fn addresses(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("receive-{i}.receive.monitoring.svc:10901")).collect()
}

fn zoned(n: usize) -> Value {
    addresses(n).into_iter().enumerate().map(|(i, a)| json!({"address": a, "az": ZONES[i % ZONES.len()]})).collect()
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for n in [3, 4, 7] {
        for rf in [1, 3] {
            let mut add = |variant: &str, algorithm: &'static str, hashrings: Value| {
                cases.push(Case {
                    name: format!("{variant} endpoints={n} rf={rf}"),
                    algorithm,
                    replication_factor: rf,
                    hashrings: hashrings.to_string(),
                })
            };
            add("hashmod", "hashmod", json!([{"endpoints": addresses(n)}]));
            // The ring's own algorithm over the flag's.
            add("ketama", "hashmod", json!([{"algorithm": "ketama", "endpoints": addresses(n)}]));
            add("ketama-3az", "ketama", json!([{"endpoints": zoned(n)}]));
            add(
                "shuffle-3az",
                "ketama",
                json!([{
                    "hashring": "zoned",
                    "endpoints": zoned(n),
                    "shuffle_sharding_config": {
                        "shard_size": 3,
                        "overrides": [
                            {"shard_size": 6, "tenants": ["billing-prod"], "tenant_matcher_type": "exact"},
                            {"shard_size": 4, "tenants": ["team-*"], "tenant_matcher_type": "glob"},
                        ],
                    },
                }]),
            );
            add(
                "shuffle-flat",
                "ketama",
                json!([{
                    "hashring": "flat",
                    "endpoints": zoned(n),
                    "shuffle_sharding_config": {
                        "shard_size": 2,
                        "zone_awareness_disabled": true,
                        "overrides": [
                            // No matcher type: Thanos applies it to nobody.
                            {"shard_size": 1, "tenants": ["default-tenant"]},
                            {"shard_size": 3, "tenants": ["team-?"], "tenant_matcher_type": "glob"},
                            {"shard_size": n, "tenants": ["billing-prod"], "tenant_matcher_type": "exact"},
                        ],
                    },
                }]),
            );
            // Configurations both refuse: zones under hashmod, a shard larger than its ring.
            add("refused-hashmod-az", "hashmod", json!([{"endpoints": zoned(n)}]));
            add(
                "refused-shard",
                "ketama",
                json!([{"hashring": "small", "endpoints": addresses(n), "shuffle_sharding_config": {"shard_size": n + 1}}]),
            );
            // Several hashrings in order; ml-staging matches none of them.
            add(
                "multi",
                "ketama",
                json!([
                    {"hashring": "billing", "tenants": ["billing-prod"], "endpoints": zoned(n)},
                    {"hashring": "teams", "tenants": ["team-[ab]"], "tenant_matcher_type": "glob",
                     "algorithm": "hashmod", "endpoints": addresses(n)},
                    {"hashring": "shared", "tenants": ["*-tenant"], "tenant_matcher_type": "glob",
                     "endpoints": zoned(n), "shuffle_sharding_config": {"shard_size": 2, "zone_awareness_disabled": true}},
                ]),
            );
        }
    }
    cases
}

/// Go reports one of the zones a shard is too large for, picked by map order; the zone named
/// is left out of the comparison of that error.
fn comparable(answer: &str) -> &str {
    const AZ: &str = " is larger than number of nodes in AZ";
    match answer.find(AZ) {
        Some(i) if answer.starts_with("!shard size ") => &answer[..i + AZ.len()],
        _ => answer,
    }
}

/// What strata-ring answers for a series: each replica's address or `!error`, tab-separated, as
/// ringref prints it.
fn strata_line(tenant: Result<&strata_ring::TenantRing<'_>, &String>, hash: u64, rf: u64) -> String {
    (0..rf)
        .map(|n| match tenant {
            Err(e) => format!("!{e}"),
            Ok(t) => match t.get_n(hash, n) {
                Ok(e) => e.address.clone(),
                Err(e) => format!("!{e}"),
            },
        })
        .collect::<Vec<_>>()
        .join("\t")
}

fn same(ours: &str, theirs: &str) -> bool {
    ours.split('\t').count() == theirs.split('\t').count()
        && ours.split('\t').zip(theirs.split('\t')).all(|(a, b)| comparable(a) == comparable(b))
}

/// Runs every case through strata-ring and, in one ringref run, through Thanos's code; returns
/// one report line per case and the first disagreements.
fn compare(series: &[Series], cases: &[Case]) -> (Vec<String>, Vec<String>) {
    let ringref = strata_testkit::peer("ringref");
    let dir = tempfile::tempdir().unwrap();
    let series_file = dir.path().join("series.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&series_file).unwrap());
    for s in series {
        let mut fields = vec![s.tenant];
        fields.extend(s.labels.iter().flat_map(|(n, v)| [n.as_str(), v.as_str()]));
        serde_json::to_writer(&mut out, &fields).unwrap();
        out.write_all(b"\n").unwrap();
    }
    out.flush().unwrap();
    drop(out);

    let mut paths = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let path = dir.path().join(format!("case-{i}.json"));
        // The hashrings go in as written, so that ringref reads the very bytes strata-ring reads.
        let body = format!(
            r#"{{"algorithm": "{}", "replication_factor": {}, "hashrings": {}}}"#,
            case.algorithm, case.replication_factor, case.hashrings
        );
        std::fs::write(&path, body).unwrap();
        paths.push(path);
    }
    let hashes: Vec<u64> =
        series.iter().map(|s| series_hash(s.tenant, s.labels.iter().map(|(n, v)| (n.as_str(), v.as_str())))).collect();

    let mut child = Command::new(&ringref)
        .arg("route")
        .arg("-series")
        .arg(&series_file)
        .args(&paths)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", ringref.display()));
    let mut lines = BufReader::with_capacity(1 << 20, child.stdout.take().unwrap()).lines();
    let mut next = || lines.next().expect("ringref ended early").expect("read ringref output");

    let mut mismatches = Vec::new();
    let mut report = Vec::new();
    for (case, path) in cases.iter().zip(&paths) {
        assert_eq!(next(), format!("case {}", path.display()));
        let algorithm: Algorithm = case.algorithm.parse().unwrap();
        let options = RingOptions { algorithm, replication_factor: case.replication_factor };
        let built = config::parse(case.hashrings.as_bytes())
            .and_then(|c| Ring::new(&c.unwrap_or_default(), options, &RingMetrics::default()));
        let ring = match built {
            // Go's JSON errors are worded by Go; that both refuse the file is what must agree.
            Err(e @ strata_ring::Error::Parse(_)) => {
                let theirs = next();
                assert!(theirs.starts_with("build error: "), "{}: strata refused ({e}), Thanos read it", case.name);
                report.push(format!("{}: refused by both: {e} / {theirs}", case.name));
                continue;
            }
            Err(e) => {
                assert_eq!(next(), format!("build error: {e}"), "{}: both refuse the configuration alike", case.name);
                report.push(format!("{}: refused by both: {e}", case.name));
                continue;
            }
            Ok(ring) => ring,
        };
        let tenants: BTreeMap<&str, Result<strata_ring::TenantRing<'_>, String>> =
            TENANTS.iter().map(|t| (*t, ring.tenant(t).map_err(|e| e.to_string()))).collect();
        let (mut placed, mut failed) = (0usize, 0usize);
        for (s, &hash) in series.iter().zip(&hashes) {
            let theirs = next();
            assert!(!theirs.starts_with("build error"), "{}: Thanos refused a ring strata built: {theirs}", case.name);
            let ours = strata_line(tenants[s.tenant].as_ref(), hash, case.replication_factor);
            if ours.starts_with('!') {
                failed += 1;
            } else {
                placed += 1;
            }
            if !same(&ours, &theirs) && mismatches.len() < 20 {
                mismatches
                    .push(format!("{} {} {:?}:\n  strata: {ours}\n  thanos: {theirs}", case.name, s.tenant, s.labels));
            }
        }
        report.push(format!("{}: {placed} series placed, {failed} refused, alike", case.name));
    }
    assert!(lines.next().is_none(), "ringref printed more than the cases");
    assert!(child.wait().unwrap().success());
    (report, mismatches)
}

#[test]
fn every_series_lands_where_thanos_puts_it() {
    let started = std::time::Instant::now();
    let (report, mismatches) = compare(&corpus(), &cases());
    println!("{}\ncompared in {:.1?}", report.join("\n"), started.elapsed());
    assert!(mismatches.is_empty(), "strata-ring and Thanos disagree:\n{}", mismatches.join("\n"));
    // Every variant placed series in some case (the comparison is not all errors).
    for variant in ["hashmod ", "ketama ", "ketama-3az", "shuffle-3az", "shuffle-flat", "multi"] {
        assert!(report.iter().any(|r| r.starts_with(variant) && !r.contains(": 0 series placed")), "{variant}");
    }
    assert_eq!(report.iter().filter(|r| r.contains("refused by both")).count(), 12);
}

/// Files written oddly but legally, read as Go's decoder reads them: keys in any case (and `ſ`
/// for `s`), repeated keys decoding into what is there, nulls, unknown keys, values that are
/// not names Thanos knows, repeated endpoints, a malformed glob; and files both refuse. (A
/// negative shard size override is left out: Thanos panics on its tenant's first series.)
#[test]
fn odd_files_are_read_as_thanos_reads_them() {
    let files: &[(&str, u64, &str)] = &[
        ("case-insensitive keys", 1, r#"[{"ENDPOINTS": ["a:1", "b:1", "c:1"], "Algorithm": "ketama"}]"#),
        (
            "long s",
            1,
            r#"[{"ſhuffle_ſharding_config": {"ſhard_ſize": 2}, "endpoints": ["a:1", "b:1", "c:1"], "algorithm": "ketama"}]"#,
        ),
        ("repeated array", 1, r#"[{"endpoints": ["a:1"], "endpoints": ["x:1", "y:1", "z:1"]}]"#),
        (
            "repeated array reuses elements",
            1,
            r#"[{"endpoints": [{"address": "a:1", "az": "z1"}, {"address": "b:1", "az": "z2"}], "endpoints": ["d:1", "e:1"], "algorithm": "ketama"}]"#,
        ),
        (
            "repeated object merges",
            1,
            r#"[{"endpoints": ["a:1", "b:1", "c:1"], "algorithm": "ketama", "shuffle_sharding_config": {"shard_size": 2, "zone_awareness_disabled": true}, "shuffle_sharding_config": {"shard_size": 1}}]"#,
        ),
        (
            "nulls",
            1,
            r#"[{"endpoints": ["a:1", "b:1", "c:1"], "tenants": null, "hashring": null, "algorithm": null, "external_labels": null}]"#,
        ),
        (
            "unknown keys",
            1,
            r#"[{"endpoints": [{"address": "a:1", "address": "b:1", "port": 9}], "extra": {"deep": [1, {"x": null}]}}]"#,
        ),
        (
            "matcher type is not folded",
            1,
            r#"[{"endpoints": ["a:1"], "tenants": ["team-*"], "tenant_matcher_type": "GLOB"}, {"endpoints": ["b:1"], "tenants": ["team-a"]}]"#,
        ),
        ("algorithm is not folded", 1, r#"[{"endpoints": ["a:1", "b:1"], "algorithm": "Ketama"}]"#),
        (
            "malformed glob",
            1,
            r#"[{"endpoints": ["a:1"], "tenants": ["["], "tenant_matcher_type": "glob"}, {"endpoints": ["b:1"]}]"#,
        ),
        ("null file", 1, "null"),
        ("empty file", 1, "[]"),
        ("ipv6 address", 1, r#"[{"endpoints": ["[::1]:10901", "[::2]:10901"]}]"#),
        (
            "overrides without shard size",
            1,
            r#"[{"endpoints": ["a:1", "b:1"], "algorithm": "ketama", "shuffle_sharding_config": {"overrides": [{"shard_size": 1, "tenants": ["team-a"], "tenant_matcher_type": "exact"}]}}]"#,
        ),
        ("repeated endpoints, hashmod", 2, r#"[{"endpoints": ["b:1", "a:1", "b:1"]}]"#),
        ("repeated endpoints, ketama", 2, r#"[{"endpoints": ["a:1", "a:1", "b:1", "c:1"], "algorithm": "ketama"}]"#),
        (
            "repeated endpoints, shuffle sharding",
            2,
            r#"[{"algorithm": "ketama", "endpoints": [{"address": "a:1", "az": "x"}, {"address": "a:1", "az": "x"}, {"address": "b:1", "az": "y"}, {"address": "c:1", "az": "y"}], "shuffle_sharding_config": {"shard_size": 2}}]"#,
        ),
        ("refused: float shard size", 1, r#"[{"endpoints": ["a:1"], "shuffle_sharding_config": {"shard_size": 1.0}}]"#),
        ("refused: endpoint without address", 1, r#"[{"endpoints": [{"az": "x"}]}]"#),
        ("refused: number endpoint", 1, r#"[{"endpoints": [7]}]"#),
        ("refused: object file", 1, r#"{"endpoints": ["a:1"]}"#),
        ("refused: one endpoint, two replicas", 2, r#"[{"endpoints": ["a:1"], "algorithm": "ketama"}]"#),
    ];
    let cases: Vec<Case> = files
        .iter()
        .map(|(name, rf, text)| Case {
            name: (*name).to_owned(),
            algorithm: "hashmod",
            replication_factor: *rf,
            hashrings: (*text).to_owned(),
        })
        .collect();
    let series: Vec<Series> = corpus().into_iter().step_by(97).collect();
    let (report, mismatches) = compare(&series, &cases);
    println!("{}", report.join("\n"));
    assert!(mismatches.is_empty(), "strata-ring and Thanos disagree:\n{}", mismatches.join("\n"));
    assert_eq!(report.iter().filter(|r| r.contains("refused by both")).count(), 5, "{report:#?}");
}

/// The corpus is what the comparison needs: 100k distinct series, every tenant, several shapes.
#[test]
fn the_corpus_is_distinct_and_mixed() {
    let series = corpus();
    let distinct: std::collections::HashSet<(&str, &Vec<(String, String)>)> =
        series.iter().map(|s| (s.tenant, &s.labels)).collect();
    assert_eq!(distinct.len(), SERIES);
    let names: std::collections::HashSet<&str> =
        series.iter().filter_map(|s| s.labels.iter().find(|(n, _)| n == "__name__")).map(|(_, v)| v.as_str()).collect();
    assert_eq!(names.len(), 6);
    assert!(series.iter().all(|s| s.labels.windows(2).all(|w| w[0].0 < w[1].0)));
}

/// `strata tools ring route` names the replicas Thanos names, for a zone-aware shuffle-sharded
/// ring given as a file.
#[test]
fn the_route_tool_answers_as_thanos() {
    let ringref = strata_testkit::peer("ringref");
    let dir = tempfile::tempdir().unwrap();
    let hashrings = json!([{
        "hashring": "zoned",
        "endpoints": zoned(7),
        "shuffle_sharding_config": {"shard_size": 3, "overrides": [{"shard_size": 6, "tenants": ["billing-*"], "tenant_matcher_type": "glob"}]},
    }]);
    let ring_file = dir.path().join("hashrings.json");
    std::fs::write(&ring_file, hashrings.to_string()).unwrap();
    let case = dir.path().join("case.json");
    std::fs::write(&case, json!({"algorithm": "ketama", "replication_factor": 3, "hashrings": hashrings}).to_string())
        .unwrap();
    let sample: Vec<Series> = corpus().into_iter().step_by(4999).collect();
    let series_file = dir.path().join("series.jsonl");
    let lines: Vec<String> = sample
        .iter()
        .map(|s| {
            let mut fields = vec![s.tenant];
            fields.extend(s.labels.iter().flat_map(|(n, v)| [n.as_str(), v.as_str()]));
            serde_json::to_string(&fields).unwrap()
        })
        .collect();
    std::fs::write(&series_file, lines.join("\n")).unwrap();
    let out = Command::new(&ringref).arg("route").arg("-series").arg(&series_file).arg(&case).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let thanos = String::from_utf8(out.stdout).unwrap();
    let thanos: Vec<&str> = thanos.lines().skip(1).collect();
    assert_eq!(thanos.len(), sample.len());

    for (s, theirs) in sample.iter().zip(thanos) {
        let selector: Vec<String> =
            s.labels.iter().map(|(n, v)| format!("{n}={}", serde_json::to_string(v).unwrap())).collect();
        let selector = format!("{{{}}}", selector.join(","));
        let out = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["tools", "ring", "route"])
            .arg(&ring_file)
            .args(["--receive.hashrings-algorithm", "ketama", "--replication-factor", "3", "--tenant", s.tenant])
            .args(["--series", &selector])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{selector}: {text}{}", String::from_utf8_lossy(&out.stderr));
        let ours: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("replica "))
            .map(|l| l.split_whitespace().nth(1).unwrap())
            .collect();
        assert_eq!(ours.join("\t"), theirs, "{} {selector}:\n{text}", s.tenant);
    }
}
