#!/usr/bin/env bash
# Remote-write latency while the receiver cuts blocks: starts `strata receive` on 127.0.0.1 with a
# fresh --tsdb.path and sends it paced remote-write load with `strata tools bench-write`, one
# round of all series per --round-interval of wall time, --scrape-interval apart in sample time,
# so the head passes 3h of sample time and blocks get cut while the load goes on. Then splits
# the request latencies into those overlapping a cut (from the receiver's "cut block from head"
# log lines) and the rest, and prints p50/p99/max for both and the p99 ratio
# (scripts/cut-latency.py).
#
# The first sample sits on a 2h boundary, so every cut writes a full 2h block: the first one
# after 3h of sample time, then one per 2h (defaults: rounds 181, 301, 421 of 480, 8 minutes).
#
# Usage: scripts/bench-cut-latency.sh [--series 200000] [--rounds 480] [--batch-size 2000]
#                                     [--concurrency 4] [--scrape-interval 60s]
#                                     [--round-interval 1s] [--out DIR]
# Environment: STRATA_BIN (default: build and use the release binary of this checkout).
set -euo pipefail

series=200000
rounds=480
batch_size=2000
concurrency=4
scrape_interval=60s
round_interval=1s
out=""
source "$(dirname "${BASH_SOURCE[0]}")/flags.sh"
parse_flags --series=series --rounds=rounds --batch-size=batch_size --concurrency=concurrency --scrape-interval=scrape_interval --round-interval=round_interval --out=out -- "$@"

# Milliseconds of a duration written as a number with ms, s or m.
to_ms() {
    case "$1" in
        *ms) echo "${1%ms}" ;;
        *s) echo $(( ${1%s} * 1000 )) ;;
        *m) echo $(( ${1%m} * 60000 )) ;;
        *) echo "invalid duration $1: use ms, s or m" >&2; exit 2 ;;
    esac
}
scrape_ms="$(to_ms "$scrape_interval")"
round_ms="$(to_ms "$round_interval")"

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rw_port="$(free_port)"; http_port="$(free_port)"; grpc_port="$(free_port)"
"$STRATA_BIN" receive \
    --remote-write.address "127.0.0.1:$rw_port" \
    --http-address "127.0.0.1:$http_port" \
    --grpc-address "127.0.0.1:$grpc_port" \
    --tsdb.path "$work/data" >"$out/receive.log" 2>&1 &
server_pid=$!
wait_ready "http://127.0.0.1:$http_port/-/ready" "$out/receive.log"

{
    machine_info
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$out/machine.txt"

# The first round on a 2h boundary, far enough back that the last round is not in the future.
block_ms=7200000
start_ms=$(( ($(date +%s%3N) - rounds * scrape_ms) / block_ms * block_ms ))
# The run takes rounds x round interval; anything far beyond that is a hang.
limit_s=$(( rounds * round_ms / 1000 + 300 ))
echo "== $series series x $rounds rounds, one per $round_interval," \
    "$scrape_interval apart in sample time" >&2
load_status=0
timeout "$limit_s" "$STRATA_BIN" tools bench-write \
    --url "http://127.0.0.1:$rw_port/api/v1/receive" \
    --series "$series" --samples-per-series "$rounds" --batch-size "$batch_size" \
    --concurrency "$concurrency" --scrape-interval "$scrape_interval" \
    --round-interval "$round_interval" --start-time "$start_ms" \
    --latency-log "$out/latency.log" | tee "$out/load.txt" >&2 || load_status=$?
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/machine.txt"

stop_server

cat "$out/machine.txt" >&2
python3 "$repo/scripts/cut-latency.py" "$out/receive.log" "$out/latency.log" | tee "$out/table.md"
echo >&2
echo "load report, latency log, receiver log and table: $out" >&2
if [ "$load_status" -ne 0 ]; then
    echo "bench-write exited with status $load_status (failed requests or timeout)" >&2
    exit "$load_status"
fi
