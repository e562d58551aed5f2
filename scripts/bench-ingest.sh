#!/usr/bin/env bash
# Remote-write ingest benchmark: `strata receive` and Prometheus's own remote-write receiver,
# side by side on this machine, each loaded by `strata tools bench-write`.
#
# For each server and series count: CPU seconds of the server process per million accepted
# samples (utime+stime from /proc/<pid>/stat), and resident memory per active series (VmRSS after
# the load minus VmRSS of the idle, just-started server), plus VmHWM. Every run gets a fresh
# data directory. Prints a markdown table; raw numbers, load reports and server logs go to the
# output directory.
#
# Usage: scripts/bench-ingest.sh [--series "100000 1000000"] [--samples-per-series 10]
#                                [--servers "strata prometheus"] [--out DIR]
# Environment: STRATA_BIN (default: build and use the release binary of this checkout).
set -euo pipefail

series_list="100000 1000000"
samples=10
servers="strata prometheus"
out=""
source "$(dirname "${BASH_SOURCE[0]}")/flags.sh"
parse_flags --series=series_list --samples-per-series=samples --servers=servers --out=out -- "$@"

command -v prometheus >/dev/null || { echo "prometheus not found in PATH (apt-get install prometheus)" >&2; exit 1; }
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

clk_tck="$(getconf CLK_TCK)"

# Value of key=value in a bench-write result line.
field() {
    sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"
}

printf 'server\tseries\tsamples_accepted\twall_s\tsamples_per_s\tcpu_s\tcpu_s_per_1m_samples\trss_idle_kb\trss_after_kb\thwm_kb\trss_bytes_per_series\tthreads\n' >"$out/results.tsv"

for n in $series_list; do
    for server in $servers; do
        rm -rf "$work/data"
        mkdir -p "$work/data"
        log="$out/$server-$n.log"
        case "$server" in
            strata)
                rw_port="$(free_port)"; http_port="$(free_port)"; grpc_port="$(free_port)"
                "$STRATA_BIN" receive \
                    --remote-write.address "127.0.0.1:$rw_port" \
                    --http-address "127.0.0.1:$http_port" \
                    --grpc-address "127.0.0.1:$grpc_port" \
                    --tsdb.path "$work/data" >"$log" 2>&1 &
                server_pid=$!
                api="http://127.0.0.1:$http_port"
                write_url="http://127.0.0.1:$rw_port/api/v1/receive"
                ;;
            prometheus) start_prometheus "$log" ;;
            *) echo "unknown server $server" >&2; exit 2 ;;
        esac
        wait_ready "$api/-/ready" "$log"
        # Let start-up work (WAL creation, first GC) finish before taking the idle baseline.
        sleep 2
        rss0="$(status_kb "$server_pid" VmRSS)"
        cpu0="$(cpu_ticks "$server_pid")"

        echo "== $server, $n series x $samples samples" >&2
        "$STRATA_BIN" tools bench-write --url "$write_url" --series "$n" \
            --samples-per-series "$samples" | tee "$out/$server-$n.load.txt" >&2

        cpu1="$(cpu_ticks "$server_pid")"
        rss1="$(status_kb "$server_pid" VmRSS)"
        hwm="$(status_kb "$server_pid" VmHWM)"
        threads="$(awk '$1 == "Threads:" { print $2 }' "/proc/$server_pid/status")"
        # CPU seconds per thread name, to see which part of the server did the work.
        for task in /proc/"$server_pid"/task/*; do
            printf '%s\t%s\n' "$(cat "$task/comm")" "$(cpu_ticks "${task#/proc/}")"
        done | awk -F'\t' -v tck="$clk_tck" '{ t[$1] += $2 }
            END { for (n in t) printf "%.2f\t%s\n", t[n] / tck, n }' |
            sort -rn >"$out/$server-$n.threads.txt"
        stop_server

        result="$(grep '^result ' "$out/$server-$n.load.txt")"
        accepted="$(field samples_accepted "$result")"
        wall="$(field wall_seconds "$result")"
        rate="$(field samples_per_second "$result")"
        awk -v s="$server" -v n="$n" -v acc="$accepted" -v wall="$wall" -v rate="$rate" \
            -v c0="$cpu0" -v c1="$cpu1" -v tck="$clk_tck" -v r0="$rss0" -v r1="$rss1" \
            -v hwm="$hwm" -v th="$threads" 'BEGIN {
                cpu = (c1 - c0) / tck
                printf "%s\t%d\t%d\t%s\t%s\t%.2f\t%.3f\t%d\t%d\t%d\t%.0f\t%d\n", s, n, acc, wall,
                    rate, cpu, cpu / (acc / 1e6), r0, r1, hwm, (r1 - r0) * 1024 / n, th
            }' >>"$out/results.tsv"
    done
done

# Markdown table, then per series count the strata / Prometheus ratios next to the targets.
awk -F'\t' -v order="$series_list" 'NR == 1 { next }
    {
        printf "| %s | %d | %d | %.1f | %d | %.2f | %.3f | %.1f | %.1f | %.1f | %.0f |\n",
            $1, $2, $3, $4, $5, $6, $7, $8 / 1024, $9 / 1024, $10 / 1024, $11
        cpu[$1, $2] = $7; mem[$1, $2] = $11
    }
    BEGIN {
        print "| server | active series | samples accepted | wall s | samples/s | server CPU s | CPU s per 1M samples | RSS idle MiB | RSS after MiB | VmHWM MiB | RSS bytes per series |"
        print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    }
    END {
        count = split(order, sizes, " ")
        for (i = 1; i <= count; i++) {
            n = sizes[i]
            if ((("strata", n) in cpu) && (("prometheus", n) in cpu) && cpu["prometheus", n] > 0 && mem["prometheus", n] > 0) {
                printf "\n%d series: strata/Prometheus CPU per sample %.2f (target <= 0.20), memory per series %.2f (target <= 0.50)\n",
                    n, cpu["strata", n] / cpu["prometheus", n], mem["strata", n] / mem["prometheus", n]
            }
        }
    }' "$out/results.tsv" | tee "$out/table.md"

echo >&2
echo "raw numbers, load reports and server logs: $out" >&2
