#!/usr/bin/env bash
# The store gateway: `strata store` + `strata query` against the real `thanos store` +
# `thanos query` (interop/bin/thanos) on the same bucket, in one run, taking turns:
#
#   sync:    a bucket of BLOCKS small 2h blocks (BLOCK_SERIES series each). Each store is
#            started on an empty data directory, one at a time (the first one alternating
#            between runs): seconds until its /-/ready answers 200 (the first sync, index
#            headers built), then its VmRSS and RssAnon once it is idle, given per 1,000 blocks.
#   queries: a bucket of DAYS days of SERIES series in 2h blocks; with DAYS of 3 or more, one
#            run of the real `thanos compact` (no --wait, no delays) compacts them and
#            downsamples the blocks of 2 days to 5m. Both stores, each behind its own querier
#            (strata query over strata store, thanos query over thanos store), the queries
#            below over the last day at a 5m step on raw data (max_source_resolution=0s) and,
#            when downsampled, over the last min(DAYS, 7) days at a 30m step with
#            max_source_resolution=5m, timed by scripts/bench-query.py, the two taking turns
#            run by run: latency, the
#            store's CPU time (utime + stime) per query and the bytes it fetched from the bucket
#            per query (thanos_objstore_bucket_operation_fetched_bytes_total, summed over its
#            operations, read before and after each run).
#
# Blocks are written by `strata tools bench-blocks` (node-exporter series, one sample every
# 15s) and uploaded by the strata shipper with external labels. Both stores get the same flags:
# the same in-memory index cache size (--index-cache-size), every other flag at its default
# (index headers loaded at sync: lazy loading is off by default in both). The queries are the
# query benchmark's shapes (scripts/lib.sh: a rate, a sum by of rates, a topk) over the
# node-exporter metrics, and an average by cluster.
#
# Not measured: 30 days at 1h (Thanos makes 1h blocks of 5m blocks of 10 days, 30 days of data
# are too many samples to write and compact here).
#
# Usage: scripts/bench-store.sh [--bucket fs|s3] [--blocks 1000] [--block-series 100]
#        [--series 10000] [--days 1] [--reps 3] [--index-cache-size 250MB] [--out DIR]
# --bucket s3 runs moto_server (pip install 'moto[server]') on 127.0.0.1 as the bucket.
# Environment: STRATA_BIN (default: build and use the release binary of this checkout),
# THANOS_BIN (default: interop/bin/thanos, built by interop/build.sh).
set -euo pipefail

bucket_kind=fs
blocks=1000
block_series=100
series=10000
days=1
reps=3
cache_size=250MB
out=""
source "$(dirname "${BASH_SOURCE[0]}")/flags.sh"
parse_flags --bucket=bucket_kind --blocks=blocks --block-series=block_series --series=series --days=days --reps=reps --index-cache-size=cache_size --out=out -- "$@"
case "$bucket_kind" in
    fs | s3) ;;
    *) echo "--bucket must be fs or s3, not $bucket_kind" >&2; exit 2 ;;
esac

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
THANOS_BIN="${THANOS_BIN:-$repo/interop/bin/thanos}"
[ -x "$THANOS_BIN" ] || { echo "no thanos at $THANOS_BIN (bash interop/build.sh)" >&2; exit 1; }
if [ "$bucket_kind" = s3 ]; then
    command -v moto_server >/dev/null || { echo "no moto_server (pip install 'moto[server]')" >&2; exit 1; }
fi

queries=(
    'rate(node_network_receive_bytes_total[5m])'
    'sum by (mode) (rate(node_cpu_seconds_total[5m]))'
    'topk(10, node_load1)'
    'avg by (cluster) (node_memory_MemAvailable_bytes)'
)
fetched_metric=thanos_objstore_bucket_operation_fetched_bytes_total

{
    machine_info
    echo "thanos: $("$THANOS_BIN" --version 2>&1 | sed -n 1p)"
    echo "bucket: $bucket_kind"
    echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out/machine.txt" >&2

hour=3600000
mkdir -p "$work/data"
# The newest block ends on the last 2h boundary at least 2h ago; the sync test's blocks end
# where the query test's begin.
query_end_ms=$((($(date +%s) * 1000 - 2 * hour) / (2 * hour) * (2 * hour)))
query_start_ms=$((query_end_ms - days * 24 * hour))
sync_start_ms=$((query_start_ms - blocks * 2 * hour))

# Writes the objstore config of bucket NAME to $work/data/NAME.yml, creating the bucket.
moto_port=""
make_bucket() {
    local name="$1"
    if [ "$bucket_kind" = fs ]; then
        mkdir -p "$work/data/$name-bucket"
        printf 'type: FILESYSTEM\nconfig:\n  directory: %s\n' "$work/data/$name-bucket" >"$work/data/$name.yml"
        return
    fi
    if [ -z "$moto_port" ]; then
        moto_port="$(free_port)"
        moto_server -H 127.0.0.1 -p "$moto_port" >"$out/moto.log" 2>&1 &
        other_pids+=("$!")
        local deadline=$((SECONDS + 60))
        until curl -s -o /dev/null "http://127.0.0.1:$moto_port/"; do
            [ "$SECONDS" -lt "$deadline" ] || { echo "moto_server did not start" >&2; exit 1; }
            sleep 0.2
        done
    fi
    curl -sf -X PUT -o /dev/null "http://127.0.0.1:$moto_port/$name"
    printf 'type: S3\nconfig:\n  bucket: %s\n  endpoint: 127.0.0.1:%s\n  region: us-east-1\n  access_key: bench\n  secret_key: bench\n  insecure: true\n' \
        "$name" "$moto_port" >"$work/data/$name.yml"
}

# Writes blocks into bucket NAME (arguments after NAME go to bench-blocks) and uploads them as
# the stream {monitor="bench",replica="0"}.
generate() {
    local name="$1"
    shift
    local began=$SECONDS
    "$STRATA_BIN" --log.level=info tools bench-blocks --out "$work/data/$name-gen" --scrape-interval 15s \
        --objstore.config-file "$work/data/$name.yml" --label 'monitor="bench"' --label 'replica="0"' "$@" \
        >>"$out/generate-$name.log" 2>&1
    rm -rf "$work/data/$name-gen"
    echo "   $name: generated and uploaded in $((SECONDS - began)) s" | tee -a "$out/machine.txt" >&2
}

# Starts store IMPL (strata or thanos) on bucket NAME with an empty data directory; sets pid,
# store_http and store_grpc, and ready_s to the seconds until /-/ready answered 200.
start_store() {
    local impl="$1" name="$2" tag="$3" bin="$STRATA_BIN"
    [ "$impl" = thanos ] && bin="$THANOS_BIN"
    local dir="$work/data/$impl-store"
    rm -rf "$dir"
    mkdir -p "$dir"
    store_http="127.0.0.1:$(free_port)"
    store_grpc="127.0.0.1:$(free_port)"
    local began
    began="$(date +%s.%N)"
    "$bin" store --objstore.config-file "$work/data/$name.yml" --data-dir "$dir" \
        --http-address "$store_http" --grpc-address "$store_grpc" --index-cache-size "$cache_size" \
        >"$out/$impl-store-$tag.log" 2>&1 &
    pid=$!
    other_pids+=("$pid")
    local deadline=$((SECONDS + 900))
    until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$store_http/-/ready")" = 200 ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$impl store exited before becoming ready; log follows" >&2
            tail -n 50 "$out/$impl-store-$tag.log" >&2
            exit 1
        fi
        [ "$SECONDS" -lt "$deadline" ] || { echo "$impl store not ready after 900s" >&2; exit 1; }
        sleep 0.05
    done
    ready_s="$(python3 -c "import sys, time; print(f'{time.time() - float(sys.argv[1]):.2f}')" "$began")"
}

stop_pid() {
    kill -TERM "$1" 2>/dev/null || true
    local deadline=$((SECONDS + 60))
    while kill -0 "$1" 2>/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || { kill -KILL "$1"; break; }
        sleep 0.1
    done
    wait "$1" 2>/dev/null || true
}

: >"$out/sync.tsv"
echo "== sync: $blocks blocks of 2h, $block_series series each" >&2
make_bucket sync
generate sync --series "$block_series" --min-time "$sync_start_ms" --block-duration 2h --blocks "$blocks"
for rep in $(seq 1 "$reps"); do
    order=(strata thanos)
    [ $((rep % 2)) -eq 0 ] && order=(thanos strata)
    for impl in "${order[@]}"; do
        start_store "$impl" sync "sync-$rep"
        wait_idle "$pid"
        rss="$(status_kb "$pid" VmRSS)"
        anon="$(status_kb "$pid" RssAnon)"
        printf '%s\t%s\t%s\t%s\t%s\n' "$impl" "$rep" "$ready_s" "$rss" "$anon" >>"$out/sync.tsv"
        echo "   $impl store, run $rep: ready after ${ready_s}s, VmRSS $((rss / 1024)) MiB, RssAnon $((anon / 1024)) MiB" >&2
        stop_pid "$pid"
        rm -rf "$work/data/$impl-store"
    done
done

echo "== queries: $days day(s) of $series series in 2h blocks" >&2
make_bucket query
generate query --series "$series" --min-time "$query_start_ms" --block-duration 2h --blocks $((days * 12))
downsampled=""
if [ "$days" -ge 3 ]; then
    began=$SECONDS
    "$THANOS_BIN" compact --log.level=info --objstore.config-file "$work/data/query.yml" \
        --data-dir "$work/data/compact" --http-address "127.0.0.1:$(free_port)" \
        --consistency-delay=0s --delete-delay=0s >"$out/thanos-compact.log" 2>&1 ||
        { echo "thanos compact failed; its log follows" >&2; tail -n 50 "$out/thanos-compact.log" >&2; exit 1; }
    rm -rf "$work/data/compact"
    echo "   compacted and downsampled by thanos compact in $((SECONDS - began)) s" | tee -a "$out/machine.txt" >&2
    "$THANOS_BIN" tools bucket inspect --objstore.config-file "$work/data/query.yml" >"$out/blocks.txt" 2>&1
    downsampled=$((days < 7 ? days : 7))
fi
declare -A store_pid store_url
targets=()
for impl in strata thanos; do
    start_store "$impl" query query
    store_pid[$impl]=$pid
    store_url[$impl]="http://$store_http"
    echo "   $impl store ready after ${ready_s}s" | tee -a "$out/machine.txt" >&2
    bin="$STRATA_BIN"
    [ "$impl" = thanos ] && bin="$THANOS_BIN"
    http="127.0.0.1:$(free_port)"
    start_bg "$impl-query" "http://$http/-/ready" "$bin" query --http-address "$http" \
        --grpc-address "127.0.0.1:$(free_port)" --endpoint "$store_grpc"
    # The querier learns its store from Info calls in the background: wait until it answers.
    probe="http://$http/api/v1/query?time=$((query_end_ms / 1000 - 60))&query=count(up)"
    deadline=$((SECONDS + 120))
    until curl -sf "$probe" | grep -q "\"$((series / 100))\"\]"; do
        [ "$SECONDS" -lt "$deadline" ] || { echo "$impl query does not see its store" >&2; exit 1; }
        sleep 0.5
    done
    targets+=(--target "name=$impl,url=http://$http,pid=$pid,stores=${store_pid[$impl]},fetched=${store_url[$impl]}")
done
for impl in strata thanos; do
    wait_idle "${store_pid[$impl]}"
done
echo "load average before queries: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt" >&2

query_args=()
for q in "${queries[@]}"; do
    query_args+=(--query "$q")
done
: >"$out/runs.tsv"
python3 "$repo/scripts/bench-query.py" run "${targets[@]}" \
    --param max_source_resolution=0s --series "$series" --tag "1d raw" \
    --start $((query_end_ms / 1000 - 24 * 3600)) --end $((query_end_ms / 1000 - 1)) --step 300 \
    --reps "$reps" --fetched-metric "$fetched_metric" --out "$out/runs.tsv" "${query_args[@]}"
if [ -n "$downsampled" ]; then
    python3 "$repo/scripts/bench-query.py" run "${targets[@]}" \
        --param max_source_resolution=5m --series "$series" --tag "${downsampled}d 5m" \
        --start $((query_end_ms / 1000 - downsampled * 24 * 3600)) --end $((query_end_ms / 1000 - 1)) --step 1800 \
        --reps "$reps" --fetched-metric "$fetched_metric" --out "$out/runs.tsv" "${query_args[@]}"
fi
for impl in strata thanos; do
    echo "   $impl store after the queries: VmRSS $(($(status_kb "${store_pid[$impl]}" VmRSS) / 1024)) MiB, RssAnon $(($(status_kb "${store_pid[$impl]}" RssAnon) / 1024)) MiB" |
        tee -a "$out/machine.txt" >&2
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt" >&2

{
    echo "Sync: $blocks blocks of 2h x $block_series series ($bucket_kind bucket), $reps runs each, medians."
    echo
    python3 - "$out/sync.tsv" "$blocks" <<'EOF'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    impl, _, ready, rss, anon = line.split()
    runs.setdefault(impl, []).append((float(ready), int(rss) / 1024, int(anon) / 1024))
per = 1000 / int(sys.argv[2])
med = lambda impl, i: statistics.median(r[i] for r in runs[impl])
print("| store | runs | ready s | VmRSS MiB | RssAnon MiB | VmRSS MiB per 1,000 blocks |")
print("|---|---:|---:|---:|---:|---:|")
for impl in ("strata", "thanos"):
    print(f"| {impl} store | {len(runs[impl])} | {med(impl, 0):.2f} | {med(impl, 1):.0f} | {med(impl, 2):.0f} | {med(impl, 1) * per:.0f} |")
mark = lambda x: f"{x:.2f} ({'met' if x <= 0.5 else 'not met'})"
print()
print(f"strata/thanos: time to ready {mark(med('strata', 0) / med('thanos', 0))}, "
      f"VmRSS {mark(med('strata', 1) / med('thanos', 1))}, RssAnon {med('strata', 2) / med('thanos', 2):.2f}")
EOF
    echo
    echo "Queries: $days day(s) of $series series; [1d raw]: the last day, step 5m, raw data;"
    echo "[${downsampled:-no}d 5m]: the last ${downsampled:-no} days, step 30m, max_source_resolution=5m. $reps runs each."
    echo
    python3 "$repo/scripts/bench-query.py" table "$out/runs.tsv" \
        --servers "strata=strata" "thanos=thanos" --ratio strata/thanos --memory-ratio strata/thanos \
        --fetched-ratio strata/thanos --stores-cpu-ratio strata/thanos
    echo
    echo "Targets (issue 13): latency, bytes fetched and memory at most 0.5 of Thanos's; first sync at most 0.5 of its time."
} | tee "$out/table.md"
