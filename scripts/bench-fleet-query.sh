#!/usr/bin/env bash
# PromQL range-query latency over an HA pair: `strata query` and the real `thanos query`, both
# deduplicating the same two `strata receive` replicas, against `strata standalone` holding one
# copy of the data.
#
# In one run: start two `strata receive` (--label replica="a" / "b") and a `strata standalone`,
# load all three with the same `strata tools bench-write` data (the same sample timestamps),
# wait until they are idle, start `strata query` and `thanos query`, both with
# --query.replica-label=replica over the two receivers, and a `strata query` over replica "a"
# alone, wait until each sees its replicas, then
# time bench-query.sh's queries over the last hour of the data at a 15 s step with
# scripts/bench-query.py, the four targets taking turns run by run: median latency, CPU time
# per run of the querier (and apart, of the receivers serving it), and peak memory of the
# querier per query. Prints a markdown table; raw runs, load reports and logs go to the output
# directory.
#
# Usage: scripts/bench-fleet-query.sh [--series 100000] [--hours 2] [--reps 5] [--out DIR]
# Environment: STRATA_BIN (default: build and use the release binary of this checkout),
# THANOS_BIN (default: interop/bin/thanos, built by interop/build.sh).
set -euo pipefail

n=100000
hours=2
reps=5
out=""
source "$(dirname "${BASH_SOURCE[0]}")/flags.sh"
parse_flags --series=n --hours=hours --reps=reps --out=out -- "$@"

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
THANOS_BIN="${THANOS_BIN:-$repo/interop/bin/thanos}"
[ -x "$THANOS_BIN" ] || { echo "no thanos at $THANOS_BIN (bash interop/build.sh)" >&2; exit 1; }

samples=$((hours * 240))
# One start time for every load, on the 15 s grid, so all three hold identical samples.
start_ms=$((($(date +%s) - hours * 3600) / 15 * 15 * 1000))
query_end=$((start_ms / 1000 + hours * 3600 - 15))
query_start=$((query_end - 3600))

{
    machine_info
    echo "thanos: $("$THANOS_BIN" --version 2>&1 | sed -n 1p)"
} | tee "$out/machine.txt" >&2

declare -A pids grpc
for name in a b standalone; do
    mkdir -p "$work/data/$name"
    rw_port="$(free_port)"; grpc_port="$(free_port)"; http="http://127.0.0.1:$(free_port)"
    if [ "$name" = standalone ]; then
        start_bg "$name" "$http/-/ready" "$STRATA_BIN" standalone --data-dir "$work/data/$name" \
            --remote-write.address "127.0.0.1:$rw_port" --http-address "${http#http://}" \
            --grpc-address "127.0.0.1:$grpc_port"
    else
        start_bg "$name" "$http/-/ready" "$STRATA_BIN" receive --tsdb.path "$work/data/$name" --label "replica=\"$name\"" \
            --remote-write.address "127.0.0.1:$rw_port" --http-address "${http#http://}" \
            --grpc-address "127.0.0.1:$grpc_port"
    fi
    pids[$name]=$pid; grpc[$name]="127.0.0.1:$grpc_port"
    if [ "$name" = standalone ]; then
        targets=(--target "name=$name,url=$http,pid=$pid")
    fi
    echo "== $name: $n series x $samples samples" >&2
    load_bench "http://127.0.0.1:$rw_port/api/v1/receive" "$n" "$samples" "$start_ms" "$out/$name.load.txt"
done
for name in a b standalone; do
    wait_idle "${pids[$name]}"
done

# strata-query-one reads replica "a" alone: against standalone it costs the gRPC hop, against
# strata-query the second replica and the deduplication.
for querier in strata-query thanos-query strata-query-one; do
    http="http://127.0.0.1:$(free_port)"
    bin="$STRATA_BIN"
    [ "$querier" = thanos-query ] && bin="$THANOS_BIN"
    replicas=(a b)
    [ "$querier" = strata-query-one ] && replicas=(a)
    endpoints=()
    stores=""
    for r in "${replicas[@]}"; do
        endpoints+=(--endpoint "${grpc[$r]}")
        stores="${stores:+$stores+}${pids[$r]}"
    done
    start_bg "$querier" "$http/-/ready" "$bin" query --http-address "${http#http://}" \
        --grpc-address "127.0.0.1:$(free_port)" "${endpoints[@]}" --query.replica-label replica
    targets+=(--target "name=$querier,url=$http,pid=$pid,stores=$stores")
    # Ready is not enough: the querier learns its endpoints from Info calls made in the
    # background. The replicas are in view when the undeduplicated answer holds them all (at
    # the last sample: the load can take longer than the lookback).
    probe="$http/api/v1/query?dedup=false&time=$query_end&query=count(count+by+(replica)+(bench_http_requests_total))"
    deadline=$((SECONDS + 60))
    until curl -sf "$probe" | grep -q "\"${#replicas[@]}\"\]"; do
        [ "$SECONDS" -lt "$deadline" ] || { echo "$querier does not see its replicas" >&2; exit 1; }
        sleep 0.5
    done
    wait_idle "$pid"
done
echo "load average before queries: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt" >&2

query_args=()
for q in "${bench_queries[@]}"; do
    query_args+=(--query "$q")
done
results="$out/runs.tsv"
: >"$results"
python3 "$repo/scripts/bench-query.py" run "${targets[@]}" \
    --param dedup=true --series "$n" --start "$query_start" --end "$query_end" --step 15 \
    --reps "$reps" --out "$results" "${query_args[@]}"
echo "load average after queries: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt" >&2

python3 "$repo/scripts/bench-query.py" table "$results" \
    --servers "strata-query=strata query" "thanos-query=thanos query" "standalone=strata standalone" \
    "strata-query-one=strata query, one replica" \
    --ratio strata-query/thanos-query strata-query/standalone strata-query-one/standalone \
    --memory-ratio strata-query/thanos-query | tee "$out/table.md"
