#!/usr/bin/env bash
# StoreAPI Series() throughput of `strata sidecar` vs the real `thanos sidecar`, both beside the
# same Prometheus 3.x (interop/bin/prometheus) in one run.
#
# Prometheus runs with external labels (cluster, prometheus_replica), its remote-write receiver
# on and --storage.tsdb.min-block-duration=2h --storage.tsdb.max-block-duration=2h; it is loaded
# with `strata tools bench-write` data covering the last HOURS hours (one sample per series
# every 15 s; older parts cut into blocks by Prometheus as the load goes), then both sidecars
# start (no bucket) and Series() is called on each with interop/seriesbench (Thanos's own gRPC
# client code, 64 series per response message, chunks included) through
# scripts/bench-query.py, the two sidecars taking turns call by call: every series of one
# metric (bench_http_requests_total, 5 % of the series) and every series, each over the last
# hour and the last HOURS hours. Reports per sidecar the median call time, series/s and MB/s of
# protobuf messages, the sidecar's CPU time per call (Prometheus's apart) and its peak memory per
# call. Prints a markdown table; raw runs, load reports and logs go to the output directory.
#
# Usage: scripts/bench-sidecar.sh [--series 10000] [--hours 12] [--reps 5] [--out DIR]
# Environment: STRATA_BIN (default: build and use the release binary of this checkout),
# THANOS_BIN, PROMETHEUS_BIN and SERIESBENCH_BIN (default: interop/bin/…, built by
# interop/build.sh; seriesbench needs its -last flag).
set -euo pipefail

n=10000
hours=12
reps=5
out=""
source "$(dirname "${BASH_SOURCE[0]}")/flags.sh"
parse_flags --series=n --hours=hours --reps=reps --out=out -- "$@"

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
THANOS_BIN="${THANOS_BIN:-$repo/interop/bin/thanos}"
PROMETHEUS_BIN="${PROMETHEUS_BIN:-$repo/interop/bin/prometheus}"
SERIESBENCH_BIN="${SERIESBENCH_BIN:-$repo/interop/bin/seriesbench}"
for bin in "$THANOS_BIN" "$PROMETHEUS_BIN" "$SERIESBENCH_BIN"; do
    [ -x "$bin" ] || { echo "no $bin (bash interop/build.sh)" >&2; exit 1; }
done

samples=$((hours * 240))
# The samples end 15 s ago, on the 15 s grid.
start_ms=$((($(date +%s) - samples * 15) / 15 * 15 * 1000))

{
    machine_info
    echo "thanos: $("$THANOS_BIN" --version 2>&1 | sed -n 1p)"
    echo "prometheus: $("$PROMETHEUS_BIN" --version 2>&1 | sed -n 1p)"
} | tee "$out/machine.txt" >&2

prom_port="$(free_port)"
printf 'global:\n  scrape_interval: 1h\n  external_labels:\n    cluster: bench\n    prometheus_replica: r0\n' \
    >"$work/prometheus.yml"
mkdir -p "$work/data/prometheus"
start_bg prometheus "http://127.0.0.1:$prom_port/-/ready" "$PROMETHEUS_BIN" \
    --web.enable-remote-write-receiver --config.file "$work/prometheus.yml" \
    --storage.tsdb.path "$work/data/prometheus" --web.listen-address "127.0.0.1:$prom_port" \
    --storage.tsdb.min-block-duration=2h --storage.tsdb.max-block-duration=2h
prom_pid=$pid
echo "== prometheus: $n series x $samples samples ($hours h)" >&2
began=$SECONDS
load_bench "http://127.0.0.1:$prom_port/api/v1/write" "$n" "$samples" "$start_ms" "$out/prometheus.load.txt"
echo "load took $((SECONDS - began)) s" | tee -a "$out/prometheus.load.txt" >&2
wait_idle "$prom_pid"
echo "blocks: $(find "$work/data/prometheus" -maxdepth 2 -name meta.json | wc -l)" | tee -a "$out/prometheus.load.txt" >&2

targets=()
for server in strata thanos; do
    name="$server-sidecar"
    grpc_port="$(free_port)"; http_port="$(free_port)"
    bin="$STRATA_BIN"
    [ "$server" = thanos ] && bin="$THANOS_BIN"
    start_bg "$name" "http://127.0.0.1:$http_port/-/ready" "$bin" sidecar \
        --prometheus.url "http://127.0.0.1:$prom_port" --tsdb.path "$work/data/prometheus" \
        --http-address "127.0.0.1:$http_port" --grpc-address "127.0.0.1:$grpc_port"
    wait_idle "$pid"
    targets+=(--target "name=$name,url=http://127.0.0.1:$http_port,pid=$pid,stores=$prom_pid,grpc=127.0.0.1:$grpc_port")
done
echo "load average before the calls: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt" >&2

results="$out/runs.tsv"
: >"$results"
python3 "$repo/scripts/bench-query.py" series "${targets[@]}" --client "$SERIESBENCH_BIN" \
    --select '__name__=bench_http_requests_total last=1h' --select "__name__=bench_http_requests_total last=${hours}h" \
    --select '__name__=~bench_.+ last=1h' --select "__name__=~bench_.+ last=${hours}h" \
    --series "$n" --reps "$reps" --out "$results"
echo "load average after the calls: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt" >&2
for t in strata thanos; do
    p="$(grep -o "name=$t-sidecar,[^ ]*" <<<"${targets[*]}" | sed 's/.*pid=\([0-9]*\).*/\1/')"
    echo "$t-sidecar: CPU over the whole run $(($(cpu_ticks "$p") * 1000 / $(getconf CLK_TCK))) ms, VmHWM $(status_kb "$p" VmHWM) kB" |
        tee -a "$out/machine.txt" >&2
done

python3 "$repo/scripts/bench-query.py" table "$results" --throughput \
    --servers "strata-sidecar=strata sidecar" "thanos-sidecar=thanos sidecar" \
    --ratio strata-sidecar/thanos-sidecar --memory-ratio strata-sidecar/thanos-sidecar | tee "$out/table.md"
