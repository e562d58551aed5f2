# Shared by the benchmark scripts that start a server: the strata binary, a work directory
# removed on exit (with the server killed), free ports, and process readings from /proc.
# Source it after argument parsing (scripts/flags.sh); it sets repo, STRATA_BIN, work, out and
# server_pid. A script that runs several servers at once adds the others' ids to other_pids, so
# they die with it.

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${STRATA_BIN:-}" ]; then
    (cd "$repo" && cargo build --release --locked -p strata >&2)
    STRATA_BIN="${CARGO_TARGET_DIR:-$repo/target}/release/strata"
fi
[ -x "$STRATA_BIN" ] || { echo "no strata binary at $STRATA_BIN" >&2; exit 1; }

work="$(mktemp -d)"
out="${out:-$work/results}"
mkdir -p "$out"
server_pid=""
other_pids=()
cleanup() {
    local pid
    for pid in "$server_pid" "${other_pids[@]}"; do
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
            # Reaped here, so that the shell does not report each one as killed.
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$work/data"
    # Gone unless the results (or a config file) are in it.
    rmdir "$work" 2>/dev/null || true
}
trap cleanup EXIT

# A port nothing listens on, below the ephemeral range: a port of that range can be the local
# end of some connection at the moment a server binds it.
free_port() {
    local port tries=0 ephemeral
    ephemeral="$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range)"
    while [ "$tries" -lt 100 ]; do
        port=$((10000 + RANDOM % (ephemeral - 10000)))
        # A refused connection means nothing listens there.
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
        tries=$((tries + 1))
    done
    echo "no free port found" >&2
    exit 1
}

# utime + stime in clock ticks; the command name is in parentheses and may hold spaces.
cpu_ticks() {
    sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# A /proc/<pid>/status field in kB: status_kb PID VmRSS.
status_kb() {
    awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status"
}

# Waits (up to two minutes) until URL answers; shows LOG if the server (PID, by default
# server_pid) exits first.
wait_ready() {
    local url="$1" log="$2" pid="${3:-$server_pid}" deadline=$((SECONDS + 120))
    until curl -sf -o /dev/null "$url"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "server exited before becoming ready; log follows" >&2
            cat "$log" >&2
            exit 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "server not ready at $url after 120s" >&2
            exit 1
        fi
        sleep 0.2
    done
}

# Starts the command (the arguments after NAME and READY_URL) in the background with its output
# to $out/NAME.log, adds it to other_pids and waits until READY_URL answers; sets pid.
start_bg() {
    local name="$1" ready="$2"
    shift 2
    "$@" >"$out/$name.log" 2>&1 &
    pid=$!
    other_pids+=("$pid")
    wait_ready "$ready" "$out/$name.log" "$pid"
}

# Waits (up to two minutes) until the server (PID, by default server_pid) spends under 5% of a
# core for a whole second, so background work after a load (WAL, GC, head compaction) does not
# land in the timings.
wait_idle() {
    local pid="${1:-$server_pid}" deadline=$((SECONDS + 120)) before after
    local limit=$(($(getconf CLK_TCK) / 20))
    while [ "$SECONDS" -lt "$deadline" ]; do
        before="$(cpu_ticks "$pid")"
        sleep 1
        after="$(cpu_ticks "$pid")"
        if [ $((after - before)) -le "$limit" ]; then
            return
        fi
    done
    echo "warning: server $pid still busy after 120s; timing anyway" >&2
}

# SIGTERM, then SIGKILL if the server is still there after two minutes.
stop_server() {
    kill -TERM "$server_pid"
    local deadline=$((SECONDS + 120))
    while kill -0 "$server_pid" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            kill -KILL "$server_pid"
            break
        fi
        sleep 0.2
    done
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}

# Starts Debian's Prometheus with its remote-write receiver on, nothing scraped, data under
# $work/data, output to LOG; sets server_pid, api (its base URL) and write_url.
start_prometheus() {
    local port
    port="$(free_port)"
    printf 'global:\n  scrape_interval: 15s\n' >"$work/prometheus.yml"
    prometheus --web.enable-remote-write-receiver \
        --config.file "$work/prometheus.yml" \
        --storage.tsdb.path "$work/data" \
        --web.listen-address "127.0.0.1:$port" >"$1" 2>&1 &
    server_pid=$!
    api="http://127.0.0.1:$port"
    write_url="$api/api/v1/write"
}

# The machine and build a benchmark ran on, one "key: value" a line.
machine_info() {
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "strata: $(cd "$repo" && git describe --always --dirty)"
    echo "cpus: $(nproc), $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
    echo "memory: $(awk '$1 == "MemTotal:" { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "kernel: $(uname -r)"
}

# The range queries of the query benchmarks, over bench-write's series: per scrape target 10
# counters (5 of them bench_http_requests_total), 10 gauges and 5 classic histograms; every
# metric name starts with bench_ and every series has job="kubernetes-pods".
bench_queries=(
    'rate(bench_http_requests_total[5m])'
    'sum by (job) (rate(bench_http_requests_total[5m]))'
    'histogram_quantile(0.9, sum by (le) (rate(bench_http_request_duration_seconds_bucket[5m])))'
    'topk(10, bench_http_requests_total)'
)

# Loads N series of SAMPLES samples each, 15 s apart from START_MS, into the remote-write URL
# with `strata tools bench-write`; its report goes to REPORT. Each of bench-write's 4
# connections sends its own batches' rounds back to back, so a connection with more batches
# falls behind; more than an hour behind the newest sample, a TSDB refuses its samples as out
# of bounds. Equal shares keep them in step. Arguments after REPORT go to bench-write.
load_bench() {
    local url="$1" n="$2" samples="$3" start_ms="$4" report="$5"
    shift 5
    local batch=$((n / 4 < 2500 ? n / 4 : 2500))
    "$STRATA_BIN" tools bench-write --url "$url" --series "$n" \
        --samples-per-series "$samples" --start-time "$start_ms" \
        --concurrency 4 --batch-size "$batch" "$@" >"$report"
}
