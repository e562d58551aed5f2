#!/usr/bin/env bash
# Memory per active series at a full head: `strata receive`, Prometheus 3.x
# (interop/bin/prometheus), Prometheus 2.42 (Debian's `prometheus`) and VictoriaMetrics
# single-node (interop/bin/victoria-metrics), one server at a time, each with a fresh data
# directory, all loaded with the same samples.
#
# Per series count and server: start it and read its idle memory, load 2 h of samples 15 s apart
# (480 per series) with `strata tools bench-write` (node_exporter/kubernetes-like label sets),
# wait until it idles, read its memory, wait a minute and read it again, then stop it (SIGTERM)
# and time a restart until it answers ready with that head. `prometheus3-snapshot` is Prometheus
# 3.x with --enable-feature=memory-snapshot-on-shutdown, which restores its head from a snapshot
# written at shutdown as strata does. Memory is VmRSS and RssAnon from
# /proc/<pid>/status and Anonymous from /proc/<pid>/smaps_rollup, per active series net of the
# idle server's reading before the load. CPU per sample is the server's utime + stime from the
# start of the load until it idles afterwards (background work the load caused included), over
# the samples accepted. Prints a markdown table; load reports, server logs and raw readings go
# to the output directory.
#
# Usage: scripts/bench-head-memory.sh [--series "100000 1000000"] [--idle 60]
#                                     [--servers "strata prometheus3 prometheus2 victoriametrics"]
#                                     [--out DIR]
#        (--servers also takes prometheus3-snapshot)
# Environment: STRATA_BIN (default: build and use the release binary of this checkout).
# Needs: `bash interop/build.sh` (Prometheus 3.x, VictoriaMetrics) and `apt-get install prometheus`.
set -euo pipefail

series_list="100000"
idle=60
servers="strata prometheus3 prometheus2 victoriametrics"
out=""
source "$(dirname "${BASH_SOURCE[0]}")/flags.sh"
parse_flags --series=series_list --idle=idle --servers=servers --out=out -- "$@"

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
prometheus3="$repo/interop/bin/prometheus"
victoriametrics="$repo/interop/bin/victoria-metrics"
for server in $servers; do
    case "$server" in
        prometheus2) command -v prometheus >/dev/null || { echo "prometheus not in PATH (apt-get install prometheus)" >&2; exit 1; } ;;
        prometheus3 | prometheus3-snapshot) [ -x "$prometheus3" ] || { echo "no $prometheus3: run bash interop/build.sh" >&2; exit 1; } ;;
        victoriametrics) [ -x "$victoriametrics" ] || { echo "no $victoriametrics: run bash interop/build.sh" >&2; exit 1; } ;;
        strata) ;;
        *) echo "unknown server $server" >&2; exit 2 ;;
    esac
done

hours=2
samples=$((hours * 240))
# One start time for every load, on the 15 s grid, so every server holds identical samples.
# On the 2h grid: the samples fill four whole chunks of 120 (Prometheus cuts chunks at 2h
# boundaries), the last of them still open and full, whatever the time of day. A start off the
# grid leaves the open chunk anywhere from empty to full.
start_ms=$((($(date +%s) - hours * 3600) / 7200 * 7200 * 1000))

{
    machine_info
    echo "prometheus2: $(prometheus --version 2>&1 | sed -n 1p)"
    echo "prometheus3: $("$prometheus3" --version 2>&1 | sed -n 1p)"
    echo "victoriametrics: $("$victoriametrics" --version 2>&1 | sed -n 1p)"
} | tee "$out/machine.txt" >&2

# Starts SERVER on a fresh port over $work/data with its output to LOG; sets server_pid,
# ready_url and write_url. Called again for the restart, on the same data.
start_server() {
    local server="$1" log="$2" port
    port="$(free_port)"
    case "$server" in
        strata)
            local rw_port grpc_port
            rw_port="$(free_port)"; grpc_port="$(free_port)"
            "$STRATA_BIN" receive --tsdb.path "$work/data" \
                --remote-write.address "127.0.0.1:$rw_port" \
                --http-address "127.0.0.1:$port" \
                --grpc-address "127.0.0.1:$grpc_port" >>"$log" 2>&1 &
            server_pid=$!
            ready_url="http://127.0.0.1:$port/-/ready"
            write_url="http://127.0.0.1:$rw_port/api/v1/receive"
            ;;
        prometheus2 | prometheus3 | prometheus3-snapshot)
            local bin=prometheus features=()
            [ "$server" != prometheus2 ] && bin="$prometheus3"
            [ "$server" = prometheus3-snapshot ] && features=(--enable-feature=memory-snapshot-on-shutdown)
            printf 'global:\n  scrape_interval: 15s\n' >"$work/prometheus.yml"
            "$bin" --web.enable-remote-write-receiver "${features[@]}" \
                --config.file "$work/prometheus.yml" \
                --storage.tsdb.path "$work/data" \
                --web.listen-address "127.0.0.1:$port" >>"$log" 2>&1 &
            server_pid=$!
            ready_url="http://127.0.0.1:$port/-/ready"
            write_url="http://127.0.0.1:$port/api/v1/write"
            ;;
        victoriametrics)
            "$victoriametrics" -storageDataPath "$work/data" \
                -httpListenAddr "127.0.0.1:$port" >>"$log" 2>&1 &
            server_pid=$!
            ready_url="http://127.0.0.1:$port/health"
            write_url="http://127.0.0.1:$port/api/v1/write"
            ;;
    esac
}

# "VmRSS RssAnon Anonymous" of the server in kB.
memory_kb() {
    echo "$(status_kb "$server_pid" VmRSS) $(status_kb "$server_pid" RssAnon)" \
        "$(awk '$1 == "Anonymous:" { print $2 }' "/proc/$server_pid/smaps_rollup")"
}

# Nanoseconds since the epoch, for the restart timing.
now_ns() {
    date +%s%N
}

tick=$(getconf CLK_TCK)
runs="$out/runs.tsv"
printf 'server\tseries\tsamples\tload_s\tcpu_s\tidle_kb\tafter_kb\tminute_kb\trestart_s\trestart_kb\tloadavg\n' >"$runs"
for n in $series_list; do
    for server in $servers; do
        rm -rf "$work/data"
        mkdir -p "$work/data"
        log="$out/$server-$n.log"
        : >"$log"
        start_server "$server" "$log"
        wait_ready "$ready_url" "$log"
        sleep 2
        idle_kb="$(memory_kb)"

        echo "== $server, $n series x $samples samples" >&2
        cpu0="$(cpu_ticks "$server_pid")"
        t0=$SECONDS
        load_bench "$write_url" "$n" "$samples" "$start_ms" "$out/$server-$n.load.txt"
        load_s=$((SECONDS - t0))
        wait_idle
        cpu1="$(cpu_ticks "$server_pid")"
        loadavg="$(cut -d' ' -f1-3 /proc/loadavg)"
        after_kb="$(memory_kb)"
        sleep "$idle"
        minute_kb="$(memory_kb)"
        accepted="$(sed -n 's/.*samples_accepted=\([0-9]*\).*/\1/p' "$out/$server-$n.load.txt")"

        stop_server
        t0="$(now_ns)"
        start_server "$server" "$log"
        wait_ready "$ready_url" "$log"
        restart_s="$(awk -v a="$t0" -v b="$(now_ns)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')"
        wait_idle
        restart_kb="$(memory_kb)"
        stop_server

        cpu_s="$(awk -v t=$((cpu1 - cpu0)) -v hz="$tick" 'BEGIN { printf "%.2f", t / hz }')"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$server" "$n" "$accepted" "$load_s" "$cpu_s" \
            "$idle_kb" "$after_kb" "$minute_kb" "$restart_s" "$restart_kb" "$loadavg" >>"$runs"
        rm -rf "$work/data"
    done
done

# Bytes per series net of the idle reading: RSS / RssAnon / smaps Anonymous.
awk -F'\t' '
function per(now, idle, n,    a, b, i, s) {
    split(now, a, " "); split(idle, b, " ")
    for (i = 1; i <= 3; i++) s = s (i > 1 ? " / " : "") sprintf("%.0f", (a[i] - b[i]) * 1024 / n)
    return s
}
NR == 1 {
    print "| server | series | samples accepted | load s | CPU µs per sample | B per series after load (RSS / RssAnon / Anonymous) | after an idle minute | after restart | restart-to-ready s | load average |"
    print "|---|---:|---:|---:|---:|---|---|---|---:|---|"
    next
}
{
    printf "| %s | %d | %d | %d | %.2f | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 * 1e6 / $3,
        per($7, $6, $2), per($8, $6, $2), per($10, $6, $2), $9, $11
}' "$runs" | tee "$out/table.md"
