#!/usr/bin/env bash
# StoreAPI Series() throughput: `strata receive` vs the real `thanos receive` serving the same
# data.
#
# In one run: start both receivers (each --label replica="a"), load both with the same
# `strata tools bench-write` data (the same sample timestamps), one after the other, wait until
# they are idle, then call Series() on each with interop/bin/seriesbench (Thanos's own gRPC
# client code and dial options, 64 series per response message, the whole time range, chunks
# included) through scripts/bench-query.py, the two receivers taking turns call by call: for a
# select of every series of one metric (bench_http_requests_total, 5 % of the series) and of
# every series. Reports per receiver the median call time, series/s and MB/s of protobuf
# messages, CPU time per call and peak memory per call. Prints a markdown table; raw runs, load
# reports and logs go to the output directory.
#
# Usage: scripts/bench-storeapi.sh [--series 1000000] [--samples-per-series 120] [--reps 5]
#                                  [--out DIR]
# Environment: STRATA_BIN (default: build and use the release binary of this checkout),
# THANOS_BIN and SERIESBENCH_BIN (default: interop/bin/thanos and interop/bin/seriesbench, built
# by interop/build.sh).
set -euo pipefail

n=1000000
samples=120
reps=5
out=""
source "$(dirname "${BASH_SOURCE[0]}")/flags.sh"
parse_flags --series=n --samples-per-series=samples --reps=reps --out=out -- "$@"

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
THANOS_BIN="${THANOS_BIN:-$repo/interop/bin/thanos}"
SERIESBENCH_BIN="${SERIESBENCH_BIN:-$repo/interop/bin/seriesbench}"
for bin in "$THANOS_BIN" "$SERIESBENCH_BIN"; do
    [ -x "$bin" ] || { echo "no $bin (bash interop/build.sh)" >&2; exit 1; }
done

# The samples end 15 s ago, on the 15 s grid, so that both heads accept all of them.
start_ms=$((($(date +%s) - samples * 15) / 15 * 15 * 1000))

{
    machine_info
    echo "thanos: $("$THANOS_BIN" --version 2>&1 | sed -n 1p)"
} | tee "$out/machine.txt" >&2

targets=()
for server in strata thanos; do
    name="$server-receive"
    mkdir -p "$work/data/$name"
    rw_port="$(free_port)"; grpc_port="$(free_port)"; http_port="$(free_port)"
    bin="$STRATA_BIN"
    [ "$server" = thanos ] && bin="$THANOS_BIN"
    start_bg "$name" "http://127.0.0.1:$http_port/-/ready" "$bin" receive \
        --tsdb.path "$work/data/$name" --label 'replica="a"' \
        --remote-write.address "127.0.0.1:$rw_port" --http-address "127.0.0.1:$http_port" \
        --grpc-address "127.0.0.1:$grpc_port"
    echo "== $name: $n series x $samples samples" >&2
    began=$SECONDS
    load_bench "http://127.0.0.1:$rw_port/api/v1/receive" "$n" "$samples" "$start_ms" "$out/$name.load.txt"
    echo "load took $((SECONDS - began)) s" | tee -a "$out/$name.load.txt" >&2
    wait_idle "$pid"
    echo "VmRSS after load: $(status_kb "$pid" VmRSS) kB" | tee -a "$out/$name.load.txt" >&2
    targets+=(--target "name=$name,url=http://127.0.0.1:$http_port,pid=$pid,grpc=127.0.0.1:$grpc_port")
done
echo "load average before the calls: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt" >&2

results="$out/runs.tsv"
: >"$results"
python3 "$repo/scripts/bench-query.py" series "${targets[@]}" --client "$SERIESBENCH_BIN" \
    --select '__name__=bench_http_requests_total' --select '__name__=~.+' \
    --series "$n" --reps "$reps" --out "$results"
echo "load average after the calls: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt" >&2

python3 "$repo/scripts/bench-query.py" table "$results" --throughput \
    --servers "strata-receive=strata receive" "thanos-receive=thanos receive" \
    --ratio strata-receive/thanos-receive --memory-ratio strata-receive/thanos-receive | tee "$out/table.md"
