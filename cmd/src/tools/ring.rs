//! `strata tools ring`: what a hashrings.json means. `show` prints each hashring (algorithm,
//! tenants, shuffle sharding, endpoints with their zone and share of the hash space); `route`
//! prints where one series of one tenant goes, replica by replica.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use strata_ring::{series_hash, Algorithm, EndpointShare, Hashring, Ring, RingMetrics, RingOptions};
use strata_tsdb::matchers::MatchOp;

#[derive(Args)]
pub struct RingArgs {
    #[command(subcommand)]
    command: RingCommand,
}

#[derive(Subcommand)]
enum RingCommand {
    /// Print each hashring of a hashrings.json: algorithm, tenants, shuffle sharding, endpoints
    /// with their zone and share of the series.
    Show(ShowArgs),
    /// Print the endpoint of each replica of one series.
    Route(RouteArgs),
}

/// What the receiver's flags add to the file.
#[derive(Args)]
struct RingFlags {
    /// The hashrings.json file (as for --receive.hashrings-file).
    file: PathBuf,
    /// Algorithm of hashrings that do not name one (as --receive.hashrings-algorithm).
    #[arg(long = "receive.hashrings-algorithm", alias = "algorithm", default_value = "hashmod")]
    algorithm: Algorithm,
    /// Replicas per series (as --receive.replication-factor).
    #[arg(long = "replication-factor", alias = "receive.replication-factor", default_value_t = 1)]
    replication_factor: u64,
}

#[derive(Args)]
struct ShowArgs {
    #[command(flatten)]
    ring: RingFlags,
}

#[derive(Args)]
struct RouteArgs {
    #[command(flatten)]
    ring: RingFlags,
    /// Tenant of the series (as the THANOS-TENANT header).
    #[arg(long, default_value = "default-tenant")]
    tenant: String,
    /// The series, e.g. '{__name__="up",job="a"}' or 'up{job="a"}'.
    #[arg(long)]
    series: String,
}

/// Runs the command, writing its report to `out` (also when it then fails: `route` reports the
/// replicas it could place before saying which it could not).
pub fn run(args: RingArgs, out: &mut String) -> anyhow::Result<()> {
    match args.command {
        RingCommand::Show(a) => {
            let ring = load(&a.ring)?;
            show(&ring, out);
            Ok(())
        }
        RingCommand::Route(a) => {
            let ring = load(&a.ring)?;
            let labels = parse_series(&a.series)?;
            route(&ring, &a.tenant, &labels, out)
        }
    }
}

fn load(flags: &RingFlags) -> anyhow::Result<Ring> {
    let (configs, _) = strata_ring::config::load_file(&flags.file)?;
    let options = RingOptions { algorithm: flags.algorithm, replication_factor: flags.replication_factor };
    Ring::new(&configs, options, &RingMetrics::default())
        .with_context(|| format!("build the hashrings of {}", flags.file.display()))
}

fn show(ring: &Ring, out: &mut String) {
    for (i, h) in ring.hashrings().iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        show_hashring(out, h, ring.replication_factor());
    }
}

// Writing to a String cannot fail; the results of writeln! are ignored below.
fn show_hashring(out: &mut String, h: &Hashring, rf: u64) {
    let c = h.config();
    let name = if c.hashring.is_empty() { "(unnamed)".to_owned() } else { format!("{:?}", c.hashring) };
    let _ = writeln!(out, "hashring {name}: {}, replication factor {rf}", h.algorithm());
    let tenants = if c.tenants.is_empty() {
        "all (no tenants listed: takes every tenant no earlier hashring took)".to_owned()
    } else {
        let matcher = if c.tenant_matcher_type.is_empty() { "exact" } else { c.tenant_matcher_type.as_str() };
        format!("{matcher} {}", c.tenants.join(", "))
    };
    let _ = writeln!(out, "  tenants: {tenants}");
    if !c.external_labels.is_empty() {
        let labels: Vec<String> = c.external_labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        let _ = writeln!(out, "  external labels: {{{}}}", labels.join(", "));
    }
    let ss = &c.shuffle_sharding_config;
    if h.is_shuffle_sharded() {
        let zones = if ss.zone_awareness_disabled { "zone awareness off" } else { "spread over zones" };
        let cache = if ss.cache_size > 0 { ss.cache_size } else { 100 };
        let _ = writeln!(out, "  shuffle sharding: shard size {} ({zones}), {cache} subrings cached", ss.shard_size);
        for o in &ss.overrides {
            let matcher = if o.tenant_matcher_type.is_empty() {
                "(no matcher: applies to nobody)"
            } else {
                &o.tenant_matcher_type
            };
            let _ = writeln!(out, "    shard size {} for {matcher} {}", o.shard_size, o.tenants.join(", "));
        }
        let _ = writeln!(out, "  endpoints ({}; shares of the whole ring, before sharding):", c.endpoints.len());
    } else {
        let _ = writeln!(out, "  endpoints ({}):", c.endpoints.len());
    }
    write_shares(out, &h.shares());
}

fn write_shares(out: &mut String, shares: &[EndpointShare]) {
    let width = shares.iter().map(|s| s.endpoint.address.len()).max().unwrap_or(0).max("ADDRESS".len());
    let capnp = shares.iter().map(|s| s.endpoint.capnproto_address.len()).max().unwrap_or(0).max("CAPNPROTO".len());
    let az = shares.iter().map(|s| s.endpoint.az.len()).max().unwrap_or(0).max("AZ".len());
    let _ = writeln!(
        out,
        "    {:width$}  {:capnp$}  {:az$}  SECTIONS  PRIMARY  ALL REPLICAS",
        "ADDRESS", "CAPNPROTO", "AZ"
    );
    for s in shares {
        let e = &s.endpoint;
        let sections = if s.sections == 0 { "-".to_owned() } else { s.sections.to_string() };
        let _ = writeln!(
            out,
            "    {:width$}  {:capnp$}  {:az$}  {sections:>8}  {:>6.2}%  {:>11.2}%",
            e.address,
            e.capnproto_address,
            e.az,
            s.primary * 100.0,
            s.replicas * 100.0
        );
    }
}

fn route(ring: &Ring, tenant: &str, labels: &[(String, String)], out: &mut String) -> anyhow::Result<()> {
    let hashring = ring
        .hashring_of(tenant)?
        .with_context(|| format!("tenant {tenant:?}: no matching hashring to handle tenant"))?;
    let c = hashring.config();
    let name = if c.hashring.is_empty() { "(unnamed)".to_owned() } else { format!("{:?}", c.hashring) };
    let _ = writeln!(out, "tenant {tenant:?}: hashring {name} ({})", hashring.algorithm());
    let tenant_ring = ring.tenant(tenant).with_context(|| format!("tenant {tenant:?}"))?;
    if let Some(size) = hashring.shard_size(tenant) {
        let shard: Vec<&str> = tenant_ring.endpoints().iter().map(|e| e.address.as_str()).collect();
        let _ = writeln!(out, "shard (size {size}): {}", shard.join(", "));
    }
    let hash = series_hash(tenant, labels.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let _ = writeln!(out, "series hash: {hash:#018x}");
    let mut failed = Vec::new();
    for n in 0..ring.replication_factor() {
        match tenant_ring.get_n(hash, n) {
            Ok(e) if e.az.is_empty() => {
                let _ = writeln!(out, "replica {n}: {}", e.address);
            }
            Ok(e) => {
                let _ = writeln!(out, "replica {n}: {} (az {})", e.address, e.az);
            }
            Err(e) => {
                let _ = writeln!(out, "replica {n}: error: {e}");
                failed.push(n);
            }
        }
    }
    if !failed.is_empty() {
        bail!("no endpoint for replica(s) {failed:?} of the series");
    }
    Ok(())
}

/// A series as a selector of equality matchers, in label order (as remote write sends it).
fn parse_series(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let matchers = strata_query::parse::parse_selector(text).map_err(|e| anyhow::anyhow!("--series {text}: {e}"))?;
    let mut labels = Vec::with_capacity(matchers.len());
    for m in matchers {
        if m.op != MatchOp::Equal {
            bail!("--series {text}: a series has only label=\"value\" pairs, not {} matchers", m.op);
        }
        if m.value.is_empty() {
            bail!("--series {text}: label {} is empty; a series has no empty labels", m.name);
        }
        labels.push((m.name, m.value));
    }
    labels.sort();
    if let Some(w) = labels.windows(2).find(|w| w[0].0 == w[1].0) {
        bail!("--series {text}: label {} given twice", w[0].0);
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(json: &str, algorithm: Algorithm, rf: u64) -> Ring {
        let configs = strata_ring::config::parse(json.as_bytes()).unwrap().unwrap();
        Ring::new(&configs, RingOptions { algorithm, replication_factor: rf }, &RingMetrics::default()).unwrap()
    }

    #[test]
    fn series_as_selectors() {
        let want = vec![("__name__".to_owned(), "up".to_owned()), ("job".to_owned(), "a".to_owned())];
        assert_eq!(parse_series(r#"{__name__="up",job="a"}"#).unwrap(), want);
        assert_eq!(parse_series(r#"up{job="a"}"#).unwrap(), want);
        assert_eq!(parse_series(r#"{job="a", __name__="up"}"#).unwrap(), want);
        assert!(parse_series(r#"up{job=~"a"}"#).unwrap_err().to_string().contains("=~"));
        assert!(parse_series(r#"up{job=""}"#).unwrap_err().to_string().contains("empty"));
        assert!(parse_series(r#"{job="a",job="b"}"#).unwrap_err().to_string().contains("twice"));
        assert!(parse_series("up{").is_err());
    }

    #[test]
    fn show_prints_every_hashring() {
        let r = ring(
            r#"[{"hashring": "zoned", "tenants": ["team-*"], "tenant_matcher_type": "glob", "external_labels": {"region": "eu"},
                 "endpoints": [{"address": "r0:10901", "az": "a"}, {"address": "r1:10901", "az": "b"}, {"address": "r2:10901", "az": "c"}],
                 "shuffle_sharding_config": {"shard_size": 2, "overrides": [{"shard_size": 3, "tenants": ["team-big"], "tenant_matcher_type": "exact"}]}},
                {"algorithm": "hashmod", "endpoints": ["h0:10901", "h1:10901"]}]"#,
            Algorithm::Ketama,
            2,
        );
        let mut text = String::new();
        show(&r, &mut text);
        for expected in [
            "hashring \"zoned\": ketama, replication factor 2",
            "  tenants: glob team-*",
            "  external labels: {region=\"eu\"}",
            "  shuffle sharding: shard size 2 (spread over zones), 100 subrings cached",
            "    shard size 3 for exact team-big",
            "hashring (unnamed): hashmod, replication factor 2",
            "  tenants: all",
            "    h0:10901  h0:19391   ",
        ] {
            assert!(text.contains(expected), "{expected:?} not in\n{text}");
        }
        let r0 = text.lines().find(|l| l.trim_start().starts_with("r0:10901")).unwrap();
        assert!(r0.contains("1000") && r0.contains(" a "), "{r0}");
        let h0 = text.lines().find(|l| l.trim_start().starts_with("h0:10901")).unwrap();
        assert!(h0.contains(" 50.00%") && h0.contains(" 100.00%"), "{h0}");
    }

    #[test]
    fn route_prints_each_replica() {
        let r = ring(
            r#"[{"endpoints": [{"address": "r0", "az": "a"}, {"address": "r1", "az": "b"}, {"address": "r2", "az": "c"}]}]"#,
            Algorithm::Ketama,
            3,
        );
        let labels = parse_series(r#"up{job="a"}"#).unwrap();
        let mut text = String::new();
        route(&r, "t", &labels, &mut text).unwrap();
        assert!(text.starts_with("tenant \"t\": hashring (unnamed) (ketama)\nseries hash: 0x"), "{text}");
        let replicas: Vec<&str> = text.lines().filter(|l| l.starts_with("replica ")).collect();
        assert_eq!(replicas.len(), 3, "{text}");
        for (n, line) in replicas.iter().enumerate() {
            let want = r.get_n("t", labels.iter().map(|(a, b)| (a.as_str(), b.as_str())), n as u64).unwrap();
            assert_eq!(*line, format!("replica {n}: {} (az {})", want.address, want.az));
        }
        let none = ring(r#"[{"tenants": ["x"], "endpoints": ["r0"]}]"#, Algorithm::Hashmod, 1);
        let e = route(&none, "t", &labels, &mut String::new()).unwrap_err();
        assert!(e.to_string().contains("no matching hashring"), "{e}");
        // Replicas beyond the ring are reported after those that were placed.
        let small = ring(r#"[{"endpoints": ["r0", "r1"]}]"#, Algorithm::Hashmod, 3);
        let mut text = String::new();
        let e = route(&small, "t", &labels, &mut text).unwrap_err();
        assert!(
            text.contains("replica 1: r") && text.contains("replica 2: error: insufficient nodes; have 2, want 3"),
            "{text}"
        );
        assert_eq!(e.to_string(), "no endpoint for replica(s) [2] of the series");
    }
}
