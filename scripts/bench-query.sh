#!/usr/bin/env bash
# PromQL range-query latency: `strata standalone` vs Prometheus on the same remote-written data.
#
# For each series count and server (one server at a time, each with a fresh data directory):
# start it, load it with `strata tools bench-write` (the same sample timestamps for both), wait
# until it is idle, then time range queries over the last hour of the data at a 15 s step with
# scripts/bench-query.py: median latency over several runs, server CPU time per run, and peak
# memory per query (VmHWM after the query minus VmRSS before it; VmHWM is reset before each run
# through /proc/<pid>/clear_refs). Prints a markdown table; raw runs, load reports and server
# logs go to the output directory.
#
# Usage: scripts/bench-query.sh [--series "1000 10000 100000"] [--hours 2] [--reps 5]
#                               [--servers "strata prometheus"] [--out DIR]
# Environment: STRATA_BIN (default: build and use the release binary of this checkout).
set -euo pipefail

series_list="1000 10000 100000"
hours=2
reps=5
servers="strata prometheus"
out=""
source "$(dirname "${BASH_SOURCE[0]}")/flags.sh"
parse_flags --series=series_list --hours=hours --reps=reps --servers=servers --out=out -- "$@"

command -v prometheus >/dev/null || { echo "prometheus not found in PATH (apt-get install prometheus)" >&2; exit 1; }
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

samples=$((hours * 240))
# One start time for every load, on the 15 s grid, so both servers hold identical samples.
start_ms=$((($(date +%s) - hours * 3600) / 15 * 15 * 1000))
query_end=$((start_ms / 1000 + hours * 3600 - 15))
query_start=$((query_end - 3600))

{
    machine_info
    echo "prometheus: $(prometheus --version 2>&1 | sed -n 1p)"
} | tee "$out/machine.txt" >&2

results="$out/runs.tsv"
: >"$results"
query_args=()
for q in "${bench_queries[@]}"; do
    query_args+=(--query "$q")
done

for n in $series_list; do
    for server in $servers; do
        rm -rf "$work/data"
        mkdir -p "$work/data"
        log="$out/$server-$n.log"
        case "$server" in
            strata)
                rw_port="$(free_port)"; http_port="$(free_port)"; grpc_port="$(free_port)"
                "$STRATA_BIN" standalone \
                    --remote-write.address "127.0.0.1:$rw_port" \
                    --http-address "127.0.0.1:$http_port" \
                    --grpc-address "127.0.0.1:$grpc_port" \
                    --data-dir "$work/data" >"$log" 2>&1 &
                server_pid=$!
                api="http://127.0.0.1:$http_port"
                write_url="http://127.0.0.1:$rw_port/api/v1/receive"
                ;;
            prometheus) start_prometheus "$log" ;;
            *) echo "unknown server $server" >&2; exit 2 ;;
        esac
        wait_ready "$api/-/ready" "$log"

        echo "== $server, $n series x $samples samples" >&2
        load_bench "$write_url" "$n" "$samples" "$start_ms" "$out/$server-$n.load.txt"
        wait_idle
        echo "load average before queries: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/$server-$n.load.txt" >&2
        echo "VmRSS after load: $(awk '$1 == "VmRSS:" { print $2 " kB" }' "/proc/$server_pid/status")" \
            >>"$out/$server-$n.load.txt"

        python3 "$repo/scripts/bench-query.py" run --target "name=$server,url=$api,pid=$server_pid" \
            --series "$n" --start "$query_start" --end "$query_end" \
            --step 15 --reps "$reps" --out "$results" "${query_args[@]}"
        stop_server
    done
done

python3 "$repo/scripts/bench-query.py" table "$results" | tee "$out/table.md"
