//! Planning as Thanos's `tsdbBasedPlanner` (pkg/compact/planner.go), which follows Prometheus's
//! `LeveledCompactor` (tsdb/compact.go `selectDirs`, `selectOverlappingDirs`, `splitByRange`):
//! overlapping blocks first; else, leaving the group's newest block out, the first aligned
//! range of the next level up that is full (or lies before the newest block) and holds two
//! or more blocks; else a big block with many tombstones. Blocks with a no-compact mark are
//! never planned, and planning around them leaves no gap.

use std::collections::HashSet;

use strata_tsdb::block::meta::BlockMeta;
use ulid::Ulid;

const HOUR: i64 = 3_600_000;

/// Thanos's compaction levels: 2h blocks become 8h, 2d and 14d blocks.
pub const DEFAULT_RANGES: [i64; 4] = [2 * HOUR, 8 * HOUR, 48 * HOUR, 14 * 24 * HOUR];

/// The blocks to merge next among `metas` (one group, sorted by min time); empty when there is
/// nothing to do.
pub fn plan<'a>(ranges: &[i64], metas: &'a [BlockMeta], no_compact: &HashSet<Ulid>) -> Vec<&'a BlockMeta> {
    let Some(newest) = metas.last() else { return Vec::new() };
    let mut not_excluded: Vec<&BlockMeta> = metas.iter().filter(|m| !no_compact.contains(&m.ulid)).collect();
    let overlapping = select_overlapping(&not_excluded);
    if !overlapping.is_empty() {
        return overlapping;
    }
    // The newest block stays out: it may have just been uploaded, and leaving it gives a
    // block range's time to look at it.
    if !no_compact.contains(&newest.ulid) {
        not_excluded.pop();
    }
    let candidates: Vec<&BlockMeta> = metas[..metas.len() - 1].iter().collect();
    let selected = select(ranges, no_compact, &candidates);
    if !selected.is_empty() {
        return selected;
    }
    // A block big enough with more than 5% tombstones is rewritten on its own.
    let Some(&middle) = ranges.get(ranges.len() / 2) else { return Vec::new() };
    for m in not_excluded.iter().rev() {
        if m.max_time - m.min_time < middle {
            break;
        }
        if m.stats.num_tombstones as f64 / (m.stats.num_series + 1) as f64 > 0.05 {
            return vec![m];
        }
    }
    Vec::new()
}

/// Prometheus's `selectDirs` with Thanos's exclusion of marked blocks.
fn select<'a>(ranges: &[i64], no_compact: &HashSet<Ulid>, metas: &[&'a BlockMeta]) -> Vec<&'a BlockMeta> {
    let (Some(_), Some(last)) = (ranges.get(1), metas.last()) else { return Vec::new() };
    let high_time = last.min_time;
    for &range in &ranges[1..] {
        'parts: for part in split_by_range(metas, range) {
            if part.iter().any(|m| m.compaction.failed) || part.len() < 2 {
                continue 'parts;
            }
            let (mint, maxt) = (part[0].min_time, part[part.len() - 1].max_time);
            // A range is taken when full, or when it lies wholly before the newest block: a
            // block still to come could fill it otherwise.
            if maxt - mint != range && maxt > high_time {
                continue;
            }
            // Marked blocks cut the range into runs; the first run of two or more is taken.
            let mut start = 0;
            for (i, m) in part.iter().enumerate() {
                if !no_compact.contains(&m.ulid) {
                    continue;
                }
                if i - start > 1 {
                    return part[start..i].to_vec();
                }
                start = i + 1;
            }
            if part.len() - start > 1 {
                return part[start..].to_vec();
            }
        }
    }
    Vec::new()
}

/// The first run of blocks (sorted by min time) that overlap one another.
pub fn select_overlapping<'a>(metas: &[&'a BlockMeta]) -> Vec<&'a BlockMeta> {
    let Some(first) = metas.first() else { return Vec::new() };
    let mut out: Vec<&BlockMeta> = Vec::new();
    let mut global_max = first.max_time;
    for (i, m) in metas.iter().enumerate().skip(1) {
        if m.min_time < global_max {
            if out.is_empty() {
                out.push(metas[i - 1]);
            }
            out.push(m);
        } else if !out.is_empty() {
            break;
        }
        global_max = global_max.max(m.max_time);
    }
    out
}

/// Every run of overlapping blocks in `metas` (sorted by min time), for the halt message.
pub fn overlaps<'a>(metas: &[&'a BlockMeta]) -> Vec<Vec<&'a BlockMeta>> {
    let mut out = Vec::new();
    let mut rest = metas;
    while !rest.is_empty() {
        let run = select_overlapping(rest);
        let Some(last) = run.last() else { break };
        let at = rest.iter().position(|m| m.ulid == last.ulid).map_or(rest.len(), |p| p + 1);
        out.push(run);
        rest = &rest[at..];
    }
    out
}

/// Prometheus's `splitByRange`: consecutive blocks falling into one `range`-aligned window
/// (`[t0, t0 + range]`); a block wider than its window is skipped.
fn split_by_range<'a>(metas: &[&'a BlockMeta], range: i64) -> Vec<Vec<&'a BlockMeta>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < metas.len() {
        let m = metas[i];
        let t0 = range * m.min_time.div_euclid(range);
        if m.max_time > t0 + range {
            i += 1;
            continue;
        }
        let mut part = Vec::new();
        while i < metas.len() && metas[i].max_time <= t0 + range {
            part.push(metas[i]);
            i += 1;
        }
        out.push(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ranges of Thanos's and Prometheus's planner tests: 20, 60, 180, 540, 1620.
    const TEST_RANGES: [i64; 5] = [20, 60, 180, 540, 1620];

    fn m(id: u128, min: i64, max: i64) -> BlockMeta {
        crate::test_meta(id, min, max)
    }

    fn with_tombstones(mut meta: BlockMeta, series: u64, tombstones: u64) -> BlockMeta {
        meta.stats.num_series = series;
        meta.stats.num_tombstones = tombstones;
        meta
    }

    fn ids(plan: &[&BlockMeta]) -> Vec<u128> {
        plan.iter().map(|m| m.ulid.0).collect()
    }

    fn sorted(mut metas: Vec<BlockMeta>) -> Vec<BlockMeta> {
        metas.sort_by(|a, b| a.min_time.cmp(&b.min_time).then(a.ulid.cmp(&b.ulid)));
        metas
    }

    fn run(metas: Vec<BlockMeta>, no_compact: &[u128]) -> Vec<u128> {
        let metas = sorted(metas);
        let excluded: HashSet<Ulid> = no_compact.iter().map(|&i| Ulid(i)).collect();
        ids(&plan(&TEST_RANGES, &metas, &excluded))
    }

    /// Thanos's `TestPlanners_Plan_Compatibility` cases (pkg/compact/planner_test.go), which
    /// are Prometheus's `TestLeveledCompactor_plan`.
    #[test]
    fn thanos_planner_cases() {
        let cases: Vec<(&str, Vec<BlockMeta>, Vec<u128>)> = vec![
            ("outside range", vec![m(1, 0, 20)], vec![]),
            ("wait for four blocks of size 20", vec![m(1, 0, 20), m(2, 20, 40)], vec![]),
            ("three, but the fresh one is ignored", vec![m(1, 0, 20), m(2, 20, 40), m(3, 40, 60)], vec![]),
            (
                "block to fill the parent range appeared",
                vec![m(1, 0, 20), m(2, 20, 40), m(3, 40, 60), m(4, 60, 80)],
                vec![1, 2, 3],
            ),
            (
                "blocks fill the entire second parent range",
                vec![m(6, 0, 60), m(7, 60, 120), m(8, 120, 180), m(9, 180, 200), m(10, 200, 220)],
                vec![6, 7, 8],
            ),
            (
                "next range appeared after a gap, fresh one ignored",
                vec![m(1, 0, 20), m(2, 20, 40), m(4, 60, 80)],
                vec![],
            ),
            (
                "gap of 20 before the next range",
                vec![m(1, 0, 20), m(2, 20, 40), m(4, 60, 80), m(5, 80, 100)],
                vec![1, 2],
            ),
            (
                "20, 20, 20, 60, 60; the last is fresh",
                vec![m(1, 0, 20), m(2, 20, 40), m(3, 40, 60), m(4, 60, 120), m(5, 120, 180)],
                vec![1, 2, 3],
            ),
            (
                "second parent range with a gap",
                vec![m(6, 0, 60), m(8, 120, 180), m(9, 180, 200), m(10, 200, 220)],
                vec![6, 8],
            ),
            (
                "two sets fill single ranges; the first is planned",
                vec![
                    m(1, 180, 200),
                    m(2, 200, 220),
                    m(3, 220, 240),
                    m(4, 240, 260),
                    m(5, 260, 280),
                    m(6, 280, 300),
                    m(7, 0, 60),
                    m(8, 60, 120),
                    m(9, 120, 180),
                    m(10, 300, 320),
                ],
                vec![1, 2, 3],
            ),
            (
                "20, 60, 20, 60, 240: compact 20 + 60 + 60",
                vec![m(2, 20, 40), m(4, 60, 120), m(5, 960, 980), m(6, 120, 180), m(7, 720, 960)],
                vec![2, 4, 6],
            ),
            ("large block with tombstones and no fresh block", vec![with_tombstones(m(1, 0, 540), 10, 3)], vec![]),
            (
                "large block with tombstones once a fresh one appears",
                vec![with_tombstones(m(1, 0, 540), 10, 3), m(2, 540, 560)],
                vec![1],
            ),
            ("small blocks keep their tombstones", vec![with_tombstones(m(1, 0, 60), 10, 3), m(2, 60, 80)], vec![]),
            (
                "no loop over a block without series or tombstones",
                vec![with_tombstones(m(1, 0, 540), 0, 0), m(2, 540, 560)],
                vec![],
            ),
            (
                "the fresh block is the one with the newest min time, not the newest ULID",
                vec![m(5, 0, 360), m(6, 540, 560), m(7, 360, 420), m(8, 420, 540)],
                vec![7, 8],
            ),
            ("overlapping blocks 1", vec![m(1, 0, 20), m(2, 19, 40), m(3, 40, 60)], vec![1, 2]),
            ("overlapping blocks 2", vec![m(1, 0, 20), m(2, 20, 40), m(3, 30, 50)], vec![2, 3]),
            ("overlapping blocks 3", vec![m(1, 0, 20), m(2, 10, 40), m(3, 30, 50)], vec![1, 2, 3]),
            (
                "overlapping blocks 4",
                vec![m(1, 0, 360), m(2, 340, 560), m(3, 360, 420), m(4, 420, 540), m(5, 560, 580)],
                vec![1, 2, 3, 4],
            ),
            ("overlapping blocks 5", vec![m(1, 0, 10), m(2, 9, 20), m(3, 30, 40), m(4, 39, 50)], vec![1, 2]),
        ];
        for (name, metas, want) in cases {
            assert_eq!(run(metas, &[]), want, "{name}");
        }
    }

    /// Planning around no-compact marks: runs between marked blocks, no gaps bridged.
    #[test]
    fn no_compact_marks() {
        let four = || vec![m(1, 0, 20), m(2, 20, 40), m(3, 40, 60), m(4, 60, 80)];
        assert_eq!(run(four(), &[2]), Vec::<u128>::new(), "a marked block in the middle leaves runs of one");
        assert_eq!(run(four(), &[1]), vec![2, 3], "a marked first block");
        assert_eq!(run(four(), &[3]), vec![1, 2], "a marked last candidate");
        assert_eq!(run(four(), &[4]), vec![1, 2, 3], "the marked newest block still stays out");
        let six = vec![m(1, 0, 20), m(2, 20, 40), m(3, 40, 60), m(4, 60, 80), m(5, 80, 100), m(6, 100, 120)];
        assert_eq!(run(six, &[1, 4]), vec![2, 3], "blocks across a marked one are not merged");
        let overlapping = vec![m(1, 0, 20), m(2, 19, 40), m(3, 40, 60)];
        assert_eq!(run(overlapping.clone(), &[2]), Vec::<u128>::new(), "a marked block's overlap is ignored");
        assert_eq!(run(overlapping, &[3]), vec![1, 2]);
    }

    #[test]
    fn thanos_levels_on_two_hour_blocks() {
        // Thirteen 2h blocks of a day and a bit: the first two 8h windows are full.
        let blocks: Vec<BlockMeta> =
            (0..13).map(|i| m(i + 1, i as i64 * 2 * HOUR, (i as i64 + 1) * 2 * HOUR)).collect();
        let no = HashSet::new();
        assert_eq!(ids(&plan(&DEFAULT_RANGES, &blocks, &no)), vec![1, 2, 3, 4]);
        // Four 8h blocks and one more 2h block after them: 8h → 2d waits for the window.
        let eights: Vec<BlockMeta> = (0..4).map(|i| m(i + 1, i as i64 * 8 * HOUR, (i as i64 + 1) * 8 * HOUR)).collect();
        assert!(plan(&DEFAULT_RANGES, &eights, &no).is_empty());
        let mut six = eights.clone();
        six.extend((4..6).map(|i| m(i + 1, i as i64 * 8 * HOUR, (i as i64 + 1) * 8 * HOUR)));
        six.push(m(9, 48 * HOUR, 50 * HOUR));
        assert_eq!(ids(&plan(&DEFAULT_RANGES, &six, &no)), vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn overlap_runs() {
        let metas = sorted(vec![m(1, 0, 20), m(2, 10, 40), m(3, 50, 60), m(4, 55, 70), m(5, 80, 90)]);
        let refs: Vec<&BlockMeta> = metas.iter().collect();
        let runs: Vec<Vec<u128>> = overlaps(&refs).iter().map(|r| ids(r)).collect();
        assert_eq!(runs, vec![vec![1, 2], vec![3, 4]]);
        assert!(overlaps(&[]).is_empty());
    }

    #[test]
    fn negative_times_align_down() {
        let metas = sorted(vec![m(1, -60, -40), m(2, -40, -20), m(3, -20, 0), m(4, 0, 20)]);
        assert_eq!(ids(&plan(&TEST_RANGES, &metas, &HashSet::new())), vec![1, 2, 3]);
    }
}
