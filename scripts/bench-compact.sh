#!/usr/bin/env bash
# `strata compact` vs the real `thanos compact` (interop/bin/thanos), each once (no --wait) on
# its own copy of the same FILESYSTEM bucket, taking turns, never at the same time:
#
#   compaction:   four consecutive 2h blocks of SERIES series compacted into one 8h block
#                 (--downsampling.disable). A fifth, small 2h block (100 series) after the 8h
#                 range is there because both planners leave the newest block of a group alone.
#   downsampling: one 2d raw block of DS_SERIES series downsampled to 5m (nothing to compact).
#
# The blocks are written by `strata tools bench-blocks` (node-exporter series, one sample every
# SCRAPE_INTERVAL, chunks of 120) and uploaded by the strata shipper with external labels, then
# checked with `thanos tools bucket verify` (which reads every meta.json). Each compactor runs under /usr/bin/time: CPU seconds
# (user + system), wall seconds and peak RSS. Both must leave the same blocks (time range,
# resolution, series, samples, chunks) in their bucket. Prints a markdown table and the ratios
# strata/thanos; the logs, the blocks left and strata's per-phase durations go to the output
# directory. Every data directory is removed at the end.
#
# Usage: scripts/bench-compact.sh [--series 1000000] [--downsample-series 100000]
#        [--scrape-interval 15s] [--reps 1] [--out DIR]
# Environment: STRATA_BIN (default: build and use the release binary of this checkout),
# THANOS_BIN (default: interop/bin/thanos, built by interop/build.sh).
set -euo pipefail

series=1000000
ds_series=100000
interval=15s
reps=1
out=""
source "$(dirname "${BASH_SOURCE[0]}")/flags.sh"
parse_flags --series=series --downsample-series=ds_series --scrape-interval=interval --reps=reps --out=out -- "$@"

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
THANOS_BIN="${THANOS_BIN:-$repo/interop/bin/thanos}"
[ -x "$THANOS_BIN" ] || { echo "no $THANOS_BIN (bash interop/build.sh)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "no /usr/bin/time (apt-get install time)" >&2; exit 1; }

{
    machine_info
    echo "thanos: $("$THANOS_BIN" --version 2>&1 | sed -n 1p)"
    echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out/machine.txt" >&2

hour=3600000
# A week back, on the 8h grid, so that the four 2h blocks fill one 8h compaction range.
t0=$((($(date +%s) * 1000 - 168 * hour) / (8 * hour) * (8 * hour)))
mkdir -p "$work/data"

# Free space on the work directory's file system, in bytes.
free_bytes() {
    df -B1 --output=avail "$work/data" | tail -n 1 | tr -d ' '
}

# Writes the objstore config of the FILESYSTEM bucket at DIR to FILE.
objstore_config() {
    printf 'type: FILESYSTEM\nconfig:\n  directory: %s\n' "$1" >"$2"
}

# Writes blocks into the bucket of PHASE (arguments after PHASE go to bench-blocks), uploading
# them as the stream {monitor="bench",replica="0"}.
generate() {
    local phase="$1"
    shift
    local bucket="$work/data/$phase-bucket" local_dir="$work/data/$phase-gen"
    mkdir -p "$bucket"
    objstore_config "$bucket" "$work/data/$phase.yml"
    "$STRATA_BIN" --log.level=info tools bench-blocks --out "$local_dir" --scrape-interval "$interval" \
        --objstore.config-file "$work/data/$phase.yml" --label 'monitor="bench"' --label 'replica="0"' "$@" \
        >>"$out/generate-$phase.log" 2>&1
    rm -rf "$local_dir"
}

# Blocks of the bucket at DIR not marked for deletion, one line each without the ULID:
# resolution, min and max time, level, series, samples, chunks.
blocks_left() {
    python3 - "$1" <<'EOF'
import json, os, sys
root = sys.argv[1]
for d in sorted(os.listdir(root)):
    meta = os.path.join(root, d, "meta.json")
    if not os.path.exists(meta) or os.path.exists(os.path.join(root, d, "deletion-mark.json")):
        continue
    m = json.load(open(meta))
    s = m["stats"]
    print(f'res={m["thanos"]["downsample"]["resolution"]} min={m["minTime"]} max={m["maxTime"]} '
          f'level={m["compaction"]["level"]} series={s["numSeries"]} samples={s["numSamples"]} chunks={s["numChunks"]}')
EOF
}

# Runs compactor IMPL (strata or thanos) once on a copy of PHASE's bucket; the arguments after
# PHASE go to it. Appends "phase impl rep wall user sys maxrss_kb" to runs.tsv.
run_compact() {
    local impl="$1" phase="$2" rep="$3"
    shift 3
    local dir="$work/data/$impl-$phase" bin="$STRATA_BIN" log_flag=(--log.level=info,strata_compact=debug)
    if [ "$impl" = thanos ]; then
        bin="$THANOS_BIN"
        log_flag=(--log.level=info)
    fi
    rm -rf "$dir"
    mkdir -p "$dir"
    # Hard links: neither compactor writes into an object it did not create (strata's
    # FILESYSTEM bucket writes through a rename, Thanos's creates new files only), so the copy
    # costs no space and the original stays intact for the next run.
    cp -al "$work/data/$phase-bucket" "$dir/bucket"
    objstore_config "$dir/bucket" "$dir/objstore.yml"
    local log="$out/$impl-$phase-$rep.log"
    echo "== $impl compact: $phase, run $rep (load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    if ! /usr/bin/time -f '%e %U %S %M' -o "$dir/time" "$bin" compact "${log_flag[@]}" \
        --objstore.config-file "$dir/objstore.yml" --data-dir "$dir/compact" \
        --http-address "127.0.0.1:$(free_port)" --consistency-delay=0s --delete-delay=0s "$@" >"$log" 2>&1; then
        echo "$impl compact failed ($phase); its log follows" >&2
        tail -n 50 "$log" >&2
        exit 1
    fi
    local wall user sys rss
    read -r wall user sys rss < <(tail -n 1 "$dir/time")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$phase" "$impl" "$rep" "$wall" "$user" "$sys" "$rss" >>"$out/runs.tsv"
    echo "   wall ${wall}s, CPU $(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')s, peak RSS $((rss / 1024)) MiB" >&2
    blocks_left "$dir/bucket" >"$out/$impl-$phase-$rep.blocks"
    rm -rf "$dir"
}

# The compactors of run REP in turns, the first one alternating between runs.
both() {
    local phase="$1" rep="$2"
    shift 2
    local order=(strata thanos)
    [ $((rep % 2)) -eq 0 ] && order=(thanos strata)
    for impl in "${order[@]}"; do
        run_compact "$impl" "$phase" "$rep" "$@"
    done
    if ! diff -u "$out/strata-$phase-$rep.blocks" "$out/thanos-$phase-$rep.blocks" >&2; then
        echo "strata and thanos left different blocks after $phase" >&2
        exit 1
    fi
    echo "   both left:" >&2
    sed 's/^/     /' "$out/strata-$phase-$rep.blocks" >&2
}

# Refuses to go on unless the bucket of PHASE fits three more times (download, output and
# upload of one compactor) with 10 GiB to spare.
check_room() {
    local size need
    size="$(du -sb "$work/data/$1-bucket" | cut -f1)"
    need=$((3 * size + (10 << 30)))
    echo "   bucket of $1: $((size >> 20)) MiB; free $(($(free_bytes) >> 20)) MiB" | tee -a "$out/machine.txt" >&2
    if [ "$(free_bytes)" -lt "$need" ]; then
        echo "not enough disk for the runs: need $((need >> 20)) MiB free; try a longer --scrape-interval" >&2
        exit 1
    fi
}

: >"$out/runs.tsv"
echo "== compaction: 4 x 2h blocks of $series series, one sample every $interval" >&2
began=$SECONDS
generate compaction --series "$series" --min-time "$t0" --block-duration 2h --blocks 4
generate compaction --series 100 --min-time $((t0 + 8 * hour)) --block-duration 2h --blocks 1
echo "   generated and uploaded in $((SECONDS - began)) s" | tee -a "$out/machine.txt" >&2
"$THANOS_BIN" tools bucket verify --issues=overlapped_blocks --objstore.config-file "$work/data/compaction.yml" >"$out/verify-compaction.log" 2>&1
check_room compaction
for rep in $(seq 1 "$reps"); do
    both compaction "$rep" --downsampling.disable
done
rm -rf "$work/data/compaction-bucket"

echo "== downsampling: one 2d block of $ds_series series, one sample every $interval" >&2
began=$SECONDS
generate downsampling --series "$ds_series" --min-time "$t0" --block-duration 48h --blocks 1
echo "   generated and uploaded in $((SECONDS - began)) s" | tee -a "$out/machine.txt" >&2
"$THANOS_BIN" tools bucket verify --issues=overlapped_blocks --objstore.config-file "$work/data/downsampling.yml" >"$out/verify-downsampling.log" 2>&1
check_room downsampling
for rep in $(seq 1 "$reps"); do
    both downsampling "$rep"
done
rm -rf "$work/data/downsampling-bucket"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt" >&2

# strata's phases (download, merge, upload, downsample) with their durations, for reading where
# the time goes.
grep -h 'duration_ms' "$out"/strata-*.log >"$out/strata-phases.txt" || true

python3 - "$out/runs.tsv" "$series" "$ds_series" "$interval" <<'EOF' | tee "$out/table.md"
import statistics, sys
from collections import defaultdict
path, series, ds_series, interval = sys.argv[1:]
runs = defaultdict(list)
for line in open(path):
    phase, impl, rep, wall, user, sys_, rss = line.split()
    runs[(phase, impl)].append((float(user) + float(sys_), float(wall), int(rss) / 1024))
what = {
    "compaction": f"4 x 2h blocks of {int(series):,} series ({interval}) into one 8h block",
    "downsampling": f"2d block of {int(ds_series):,} series ({interval}) to 5m",
}
med = lambda xs, i: statistics.median(x[i] for x in xs)
print("| phase | compactor | runs | CPU s (user+sys) | wall s | peak RSS MiB |")
print("|---|---|---:|---:|---:|---:|")
for phase in what:
    for impl in ("strata", "thanos"):
        r = runs.get((phase, impl))
        if r:
            print(f"| {what[phase]} | {impl} compact | {len(r)} | {med(r, 0):.1f} | {med(r, 1):.1f} | {med(r, 2):.0f} |")
print()
print("| phase | CPU strata/thanos | wall strata/thanos | peak RSS strata/thanos |")
print("|---|---:|---:|---:|")
for phase in what:
    s, t = runs.get((phase, "strata")), runs.get((phase, "thanos"))
    if s and t:
        ratio = lambda i: med(s, i) / med(t, i)
        mark = lambda x: f"{x:.2f} ({'met' if x <= 0.3 else 'not met'})"
        print(f"| {phase} | {mark(ratio(0))} | {ratio(1):.2f} | {mark(ratio(2))} |")
print()
print("Targets: CPU and peak RSS at most 0.3 of thanos compact's.")
EOF
