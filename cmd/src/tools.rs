//! `strata tools`: operator and benchmark utilities.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use strata_loadgen::{self as loadgen, Version};
use strata_tsdb::gotext::parse_duration;

mod bench_blocks;
mod bucket;
mod ring;

#[derive(Args)]
pub struct ToolsArgs {
    #[command(subcommand)]
    command: ToolsCommand,
}

#[derive(Subcommand)]
enum ToolsCommand {
    /// Send realistic remote-write load to a URL and report throughput and latency.
    BenchWrite(BenchWriteArgs),
    /// Write Prometheus blocks of synthetic node-exporter series (and optionally upload them),
    /// for the compaction benchmark, scripts/bench-compact.sh.
    BenchBlocks(bench_blocks::BenchBlocksArgs),
    /// Inspect a local TSDB directory.
    Tsdb(TsdbArgs),
    /// Inspect and maintain an object-storage bucket in the Thanos layout (Thanos's `tools
    /// bucket`).
    ///
    /// Without an objstore flag, the bucket is ./data/bucket (strata standalone's) if it is in
    /// the current directory.
    Bucket(BucketArgs),
    /// Inspect a receive hashrings.json: its hashrings, and where a series goes.
    Ring(ring::RingArgs),
    /// Check rule files as `promtool check rules` does (Thanos's `tools rules-check`).
    RulesCheck(RulesCheckArgs),
}

#[derive(Args)]
struct RulesCheckArgs {
    /// Rule files to check (globs; repeatable).
    #[arg(long = "rules", required = true)]
    rules: Vec<String>,
}

/// Prints what promtool prints for each file; fails if any file fails.
fn rules_check(a: RulesCheckArgs) -> anyhow::Result<()> {
    let files = strata_rule::ruler::rule_files(&a.rules)?;
    if files.is_empty() {
        bail!("no rule file matches {:?}", a.rules);
    }
    let mut failed = 0;
    for path in files {
        println!("Checking {}", path.display());
        match strata_rule::rulefmt::parse_file(&path) {
            Ok(f) => {
                let rules: usize = f.groups.iter().map(|g| g.rules.len()).sum();
                println!("  SUCCESS: {rules} rules found\n");
            }
            Err(e) => {
                failed += 1;
                eprintln!("  FAILED:\n{e}");
            }
        }
    }
    if failed > 0 {
        bail!("{failed} rule file(s) failed the checks");
    }
    Ok(())
}

#[derive(Args)]
struct BenchWriteArgs {
    /// Remote-write URL (plain http), e.g. http://127.0.0.1:19291/api/v1/receive.
    #[arg(long)]
    url: String,
    /// Distinct series to write.
    #[arg(long, default_value_t = 10_000)]
    series: usize,
    /// Samples per series; one round sends one sample of every series.
    #[arg(long = "samples-per-series", default_value_t = 10)]
    samples_per_series: usize,
    /// Series per request.
    #[arg(long = "batch-size", default_value_t = 2000)]
    batch_size: usize,
    /// Parallel connections.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Remote-write protocol: v1 (prometheus.WriteRequest) or v2 (io.prometheus.write.v2.Request).
    #[arg(long, default_value = "v1")]
    protocol: Version,
    /// Tenant sent in the THANOS-TENANT header.
    #[arg(long)]
    tenant: Option<String>,
    /// Sample-time distance between rounds.
    #[arg(long = "scrape-interval", default_value = "15s", value_parser = parse_duration)]
    scrape_interval: Duration,
    /// Timestamp of the first round in milliseconds; default: now minus rounds x interval.
    #[arg(long = "start-time")]
    start_time: Option<i64>,
    /// Deadline for one request.
    #[arg(long = "request-timeout", default_value = "60s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// Wall-clock time between round starts, so rounds arrive like scrapes; default: back to back.
    #[arg(long = "round-interval", value_parser = parse_duration)]
    round_interval: Option<Duration>,
    /// Write one line per request: unix ms at send, latency ms, HTTP status (or transport/timeout).
    #[arg(long = "latency-log")]
    latency_log: Option<PathBuf>,
}

#[derive(Args)]
struct TsdbArgs {
    #[command(subcommand)]
    command: TsdbCommand,
}

#[derive(Subcommand)]
enum TsdbCommand {
    /// Print every sample as `{labels} value timestamp_ms`, like `promtool tsdb dump`.
    Dump(DumpArgs),
    /// List the blocks with their time ranges, counts and sizes, like `promtool tsdb list`.
    List(ListArgs),
    /// Label cardinality and series churn of one block, like `promtool tsdb analyze`.
    Analyze(AnalyzeArgs),
}

#[derive(Args)]
struct DumpArgs {
    /// TSDB directory of one tenant, e.g. <receive --tsdb.path>/default-tenant.
    #[arg(long = "tsdb.path")]
    tsdb_path: PathBuf,
    /// Earliest sample timestamp to print, in milliseconds.
    #[arg(long = "min-time", default_value_t = i64::MIN, allow_hyphen_values = true)]
    min_time: i64,
    /// Latest sample timestamp to print, in milliseconds.
    #[arg(long = "max-time", default_value_t = i64::MAX, allow_hyphen_values = true)]
    max_time: i64,
}

#[derive(Args)]
struct ListArgs {
    /// TSDB directory of one tenant (e.g. <receive --tsdb.path>/default-tenant) or one block.
    #[arg(long = "tsdb.path")]
    tsdb_path: PathBuf,
    /// Print times as UTC dates and sizes in KiB/MiB/GiB.
    #[arg(short = 'r', long = "human-readable")]
    human_readable: bool,
}

#[derive(Args)]
struct AnalyzeArgs {
    /// TSDB directory of one tenant (e.g. <receive --tsdb.path>/default-tenant) or one block.
    #[arg(long = "tsdb.path")]
    tsdb_path: PathBuf,
    /// ULID of the block to analyze; default: the one with the latest min time.
    #[arg(long)]
    block: Option<strata_tsdb::inspect::Ulid>,
    /// How many entries to show in each list.
    #[arg(long, default_value_t = 20)]
    limit: usize,
}

#[derive(Args)]
struct BucketArgs {
    #[command(subcommand)]
    command: BucketCommand,
}

#[derive(Subcommand)]
enum BucketCommand {
    /// List the blocks: time range, level, resolution, series/samples/chunks, labels, source.
    Ls(BucketLsArgs),
    /// Print one block's meta.json and its objects with their sizes.
    Inspect(BucketInspectArgs),
    #[command(flatten)]
    Tools(bucket::BucketTools),
}

#[derive(Args)]
struct BucketLsArgs {
    #[command(flatten)]
    objstore: crate::objstore::ObjstoreArgs,
}

#[derive(Args)]
struct BucketInspectArgs {
    #[command(flatten)]
    objstore: crate::objstore::ObjstoreArgs,
    /// ULID of the block.
    block: strata_tsdb::inspect::Ulid,
}

pub async fn run(args: ToolsArgs) -> anyhow::Result<()> {
    match args.command {
        ToolsCommand::BenchWrite(a) => bench_write(a).await,
        ToolsCommand::BenchBlocks(a) => bench_blocks::run(a).await,
        ToolsCommand::RulesCheck(a) => rules_check(a),
        ToolsCommand::Tsdb(TsdbArgs { command: TsdbCommand::Dump(a) }) => dump(a).await,
        ToolsCommand::Tsdb(TsdbArgs { command: TsdbCommand::List(a) }) => {
            print_blocking(a.tsdb_path, move |dir, out| strata_tsdb::inspect::list(dir, a.human_readable, out)).await
        }
        ToolsCommand::Tsdb(TsdbArgs { command: TsdbCommand::Analyze(a) }) => {
            print_blocking(a.tsdb_path, move |dir, out| {
                strata_tsdb::inspect::analyze(dir, a.block, a.limit, out).map(|()| None)
            })
            .await
        }
        ToolsCommand::Bucket(BucketArgs { command: BucketCommand::Ls(a) }) => {
            let bucket = tool_bucket(&a.objstore)?;
            let mut out = Vec::new();
            strata_shipper::tools::bucket_ls(&bucket, &mut out).await?;
            print_stdout(&out)
        }
        ToolsCommand::Ring(a) => {
            // Building a ketama ring hashes a thousand sections per endpoint: keep it off the
            // async workers.
            let (out, result) = tokio::task::spawn_blocking(move || {
                let mut out = String::new();
                let result = ring::run(a, &mut out);
                (out, result)
            })
            .await?;
            print_stdout(out.as_bytes())?;
            result
        }
        ToolsCommand::Bucket(BucketArgs { command: BucketCommand::Tools(t) }) => bucket::run(t).await,
        ToolsCommand::Bucket(BucketArgs { command: BucketCommand::Inspect(a) }) => {
            let bucket = tool_bucket(&a.objstore)?;
            let mut out = Vec::new();
            strata_shipper::tools::bucket_inspect(&bucket, a.block, &mut out).await?;
            print_stdout(&out)
        }
    }
}

/// The bucket of the objstore flags or, without them, strata standalone's default bucket if it
/// is here (named on stderr, so that the output stays the listing).
fn tool_bucket(objstore: &crate::objstore::ObjstoreArgs) -> anyhow::Result<strata_shipper::Bucket> {
    if let Some(bucket) = objstore.bucket()? {
        return Ok(bucket);
    }
    let dir = Path::new(crate::DEFAULT_DATA_DIR).join(crate::BUCKET_DIR);
    if !dir.is_dir() {
        bail!(
            "no bucket given: set --objstore.config-file or --objstore.config (without them, the bucket of strata \
             standalone, {}, is used, but there is none here)",
            dir.display()
        );
    }
    eprintln!(
        "bucket: the FILESYSTEM bucket {} of strata standalone (--objstore.config-file selects another)",
        dir.display()
    );
    crate::objstore::filesystem_bucket(&dir, "strata standalone's bucket")
}

/// Writes a finished report to stdout; a reader that stops early is not an error.
fn print_stdout(text: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("write to stdout"),
    }
}

async fn bench_write(a: BenchWriteArgs) -> anyhow::Result<()> {
    let config = loadgen::Config {
        url: a.url,
        series: a.series,
        samples_per_series: a.samples_per_series,
        batch_size: a.batch_size,
        concurrency: a.concurrency,
        protocol: a.protocol,
        tenant: a.tenant,
        scrape_interval_ms: i64::try_from(a.scrape_interval.as_millis()).context("scrape interval too long")?,
        start_ms: a.start_time,
        request_timeout: a.request_timeout,
        round_interval: a.round_interval,
        latency_log: a.latency_log,
    };
    let report = loadgen::run(&config).await?;
    println!("{report}");
    let failed = report.failed_requests();
    if failed > 0 {
        bail!("{failed} of {} requests failed", report.requests);
    }
    Ok(())
}

async fn dump(a: DumpArgs) -> anyhow::Result<()> {
    let dir = a.tsdb_path;
    // Replaying a WAL is blocking file work; keep it off the async workers.
    tokio::task::spawn_blocking(move || {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        let written = strata_tsdb::db::dump(&dir, a.min_time, a.max_time, &mut out)
            .with_context(|| format!("dump {}", dir.display()))
            .and_then(|()| out.flush().context("write to stdout"));
        match written {
            // A reader that stops early (`| head`) is not a failure of the dump.
            Err(e) if is_broken_pipe(&e) => Ok(()),
            other => other,
        }
    })
    .await?
}

/// Runs a report over the TSDB at `dir` off the async workers (it reads files), printing to
/// stdout, then the note it may return to stderr; a reader that stops early is not an error.
async fn print_blocking<F>(dir: PathBuf, report: F) -> anyhow::Result<()>
where
    F: FnOnce(&Path, &mut dyn Write) -> strata_tsdb::Result<Option<String>> + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        let written = report(&dir, &mut out)
            .with_context(|| format!("inspect {}", dir.display()))
            .and_then(|note| out.flush().context("write to stdout").map(|()| note));
        match written {
            Ok(note) => {
                if let Some(note) = note {
                    eprintln!("{note}");
                }
                Ok(())
            }
            Err(e) if is_broken_pipe(&e) => Ok(()),
            Err(e) => Err(e),
        }
    })
    .await?
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_write_takes_prometheus_durations() {
        use clap::FromArgMatches;
        let parse = |interval: &str| {
            BenchWriteArgs::augment_args(clap::Command::new("bench-write"))
                .try_get_matches_from(["bench-write", "--url", "http://x", "--scrape-interval", interval])
                .and_then(|m| BenchWriteArgs::from_arg_matches(&m))
                .map(|a| a.scrape_interval)
                .map_err(|e| e.to_string())
        };
        assert_eq!(parse("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        for bad in ["15", "s", "1.5s", "30s1m"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
