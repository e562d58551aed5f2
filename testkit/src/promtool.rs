//! promtool (Debian's, 2.42): running it, making real Prometheus blocks from OpenMetrics text,
//! and listing the blocks of a directory.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::tools::{run, run_ok, tool, ToolOutput};

/// Runs `promtool args` and returns its stdout; fails the test with the command and its output
/// when it does not succeed.
pub fn promtool<S: AsRef<OsStr>>(args: &[S]) -> String {
    run_ok(&tool("promtool"), args)
}

/// Runs `promtool args` to its end, for tests that expect it to fail.
pub fn promtool_output<S: AsRef<OsStr>>(args: &[S]) -> ToolOutput {
    run(&tool("promtool"), args)
}

/// The arguments of `promtool query <sub> <url> <rest…>` for `sub_and_rest` = `[sub, rest…]`.
pub fn query_args(url: &str, sub_and_rest: &[&str]) -> Vec<String> {
    let (sub, rest) = sub_and_rest.split_first().expect("a promtool query subcommand");
    ["query", sub, url].into_iter().chain(rest.iter().copied()).map(str::to_owned).collect()
}

/// A path as a promtool argument next to `&str` ones.
pub fn path_arg(path: &Path) -> &str {
    path.to_str().unwrap_or_else(|| panic!("{} is not UTF-8", path.display()))
}

/// Writes `openmetrics` (text ending in `# EOF`) to a temporary file and lets
/// `promtool tsdb create-blocks-from openmetrics` turn it into blocks under `out`; returns the
/// blocks it made, oldest first. Fails the test when promtool fails or makes no block.
pub fn create_blocks(openmetrics: &str, out: &Path) -> Vec<PathBuf> {
    let mut input =
        tempfile::Builder::new().prefix("openmetrics-").suffix(".om").tempfile().expect("temporary OpenMetrics file");
    input.write_all(openmetrics.as_bytes()).expect("write the OpenMetrics file");
    std::fs::create_dir_all(out).unwrap_or_else(|e| panic!("create {}: {e}", out.display()));
    let before = block_dirs(out);
    promtool(&["tsdb", "create-blocks-from", "openmetrics", path_arg(input.path()), path_arg(out)]);
    let mut made: Vec<PathBuf> = block_dirs(out).into_iter().filter(|d| !before.contains(d)).collect();
    made.sort_by_key(|d| (block_min_time(d), d.clone()));
    assert!(!made.is_empty(), "promtool made no blocks in {}", out.display());
    made
}

/// The blocks in `dir`: directories with a ULID for a name and a meta.json, sorted by name.
pub fn block_dirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(is_ulid) && p.join("meta.json").is_file())
        .collect();
    out.sort();
    out
}

/// The shape of a ULID: 26 characters of Crockford's base 32, the first at most 7.
fn is_ulid(name: &str) -> bool {
    const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    name.len() == 26 && name.as_bytes()[0] <= b'7' && name.bytes().all(|b| CROCKFORD.contains(&b))
}

/// `minTime` from a block's meta.json.
pub fn block_min_time(block: &Path) -> i64 {
    let path = block.join("meta.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let meta: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON ({e}): {text}", path.display()));
    meta["minTime"].as_i64().unwrap_or_else(|| panic!("no minTime in {}: {text}", path.display()))
}

/// An OpenMetrics timestamp: seconds with millisecond decimals.
pub fn om_timestamp(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// promtool turns an OpenMetrics timestamp into milliseconds as `int64(seconds * 1000)` on the
/// parsed float, which can land 1 ms low: the first time from `ms` on that survives the trip.
pub fn exact_ms(mut ms: i64) -> i64 {
    while (om_timestamp(ms).parse::<f64>().expect("a formatted timestamp parses") * 1000.0) as i64 != ms {
        ms += 1;
    }
    ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_ulid_directories_with_meta() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, meta) in [
            ("01HZZZZZZZZZZZZZZZZZZZZZZZ", true),
            ("01ARZ3NDEKTSV4RRFFQ69G5FAV", true),
            ("01ARZ3NDEKTSV4RRFFQ69G5FAW", false),
            ("01ARZ3NDEKTSV4RRFFQ69G5FAV.tmp-for-creation", true),
            ("wal", true),
            ("81ARZ3NDEKTSV4RRFFQ69G5FAV", true),
            ("01ARZ3NDEKTSV4RRFFQ69G5FAU", true),
        ] {
            std::fs::create_dir(dir.path().join(name)).expect("mkdir");
            if meta {
                std::fs::write(dir.path().join(name).join("meta.json"), "{}").expect("write");
            }
        }
        let names: Vec<String> =
            block_dirs(dir.path()).iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["01ARZ3NDEKTSV4RRFFQ69G5FAV", "01HZZZZZZZZZZZZZZZZZZZZZZZ"]);
        assert!(block_dirs(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn timestamps_survive_promtools_conversion() {
        assert_eq!(om_timestamp(1_700_000_000_123), "1700000000.123");
        for ms in [1_700_000_000_000, 1_700_000_000_001, 1_700_000_012_345] {
            let exact = exact_ms(ms);
            assert!(exact >= ms && exact - ms < 10);
            assert_eq!((om_timestamp(exact).parse::<f64>().unwrap() * 1000.0) as i64, exact);
        }
    }

    #[test]
    fn promtool_makes_blocks_oldest_first() {
        let dir = tempfile::tempdir().expect("temp dir");
        // Three hours from a 2h boundary: two blocks.
        let start = 1_700_006_400;
        let mut text = String::from("# TYPE g gauge\n");
        for t in (0..3 * 3600).step_by(60) {
            text.push_str(&format!("g{{a=\"b\"}} {t} {}\n", start + t));
        }
        text.push_str("# EOF\n");
        let out = dir.path().join("blocks");
        let blocks = create_blocks(&text, &out);
        let min_times: Vec<i64> = blocks.iter().map(|b| block_min_time(b)).collect();
        assert_eq!(min_times, [start * 1000, (start + 7200) * 1000]);
        let list = promtool(&["tsdb", "list", path_arg(&out)]);
        assert_eq!(list.lines().count(), 3, "a header and two blocks:\n{list}");
        // Blocks made earlier are not returned again.
        let more = create_blocks(&text.replace("g{", "h{").replace("TYPE g", "TYPE h"), &out);
        assert_eq!(more.len(), 2);
        assert!(more.iter().all(|b| !blocks.contains(b)));
        assert_eq!(block_dirs(&out).len(), 4);
    }

    #[test]
    fn query_arguments_put_the_url_after_the_subcommand() {
        assert_eq!(
            query_args("http://h:1", &["instant", "--time", "5", "up"]),
            ["query", "instant", "http://h:1", "--time", "5", "up"]
        );
    }
}
