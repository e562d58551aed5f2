#!/usr/bin/env bash
# The receive ring behind a load balancer: `strata receive` vs the real `thanos receive`, side by
# side on this machine.
#
# For each series count, one fleet after the other, each with fresh data directories: three
# router-ingestors with replication factor 3 (one hashrings.json, ketama, each
# --label receive_replica="N"), then a single receiver with replication factor 1, first strata
# then Thanos, always behind Debian's haproxy (round robin, health-checked on /-/ready), loaded
# through it by `strata tools bench-write`. After the load, once every receiver is idle, reports
# per fleet: CPU seconds of all receiver processes per million accepted samples (utime+stime from
# /proc/<pid>/stat; haproxy's apart), their total VmRSS and RssAnon per active series, and the
# p99 and max request latency from bench-write's latency log. Prints a markdown table and the
# ratios against the targets; raw numbers, load reports, latency logs and logs go to the output
# directory. The load average is printed before and after each fleet.
#
# Usage: scripts/bench-receive-ring.sh [--series "100000 1000000"] [--samples-per-series 10]
#                                      [--fleets "strata:3 thanos:3 strata:1 thanos:1"] [--out DIR]
# Environment: STRATA_BIN (default: build and use the release binary of this checkout),
# THANOS_BIN (default: interop/bin/thanos, built by interop/build.sh).
set -euo pipefail

series_list="100000 1000000"
samples=10
fleets="strata:3 thanos:3 strata:1 thanos:1"
out=""
source "$(dirname "${BASH_SOURCE[0]}")/flags.sh"
parse_flags --series=series_list --samples-per-series=samples --fleets=fleets --out=out -- "$@"

command -v haproxy >/dev/null || { echo "haproxy not found in PATH (apt-get install haproxy)" >&2; exit 1; }
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
THANOS_BIN="${THANOS_BIN:-$repo/interop/bin/thanos}"
[ -x "$THANOS_BIN" ] || { echo "no $THANOS_BIN (bash interop/build.sh)" >&2; exit 1; }
clk_tck="$(getconf CLK_TCK)"

{
    machine_info
    echo "thanos: $("$THANOS_BIN" --version 2>&1 | sed -n 1p)"
    echo "haproxy: $(haproxy -v 2>&1 | sed -n 1p)"
} | tee "$out/machine.txt" >&2

# Value of key=value in a bench-write result line.
field() {
    sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"
}

# Sum over the receivers (pids in the array rpids) of a /proc/<pid>/status field, in kB.
sum_status() {
    local pid total=0
    for pid in "${rpids[@]}"; do
        total=$((total + $(status_kb "$pid" "$1")))
    done
    echo "$total"
}

sum_cpu() {
    local pid total=0
    for pid in "${rpids[@]}"; do
        total=$((total + $(cpu_ticks "$pid")))
    done
    echo "$total"
}

# Kills the fleet's processes (receivers and haproxy) and forgets them.
stop_fleet() {
    local p
    for p in "${other_pids[@]}"; do
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    other_pids=()
}

printf 'server\trf\treceivers\tseries\tsamples_accepted\tfailed_requests\twall_s\tcpu_s\tcpu_s_per_1m_samples\thaproxy_cpu_s\trss_idle_kb\trss_after_kb\tanon_after_kb\thwm_kb\trss_bytes_per_series\tanon_bytes_per_series\tp99_ms\tmax_ms\n' >"$out/results.tsv"
for n in $series_list; do
    for fleet in $fleets; do
        server="${fleet%:*}"
        rf="${fleet#*:}"
        name="$server-rf$rf-$n"
        bin="$STRATA_BIN"
        extra=()
        if [ "$server" = thanos ]; then
            bin="$THANOS_BIN"
            # Its Cap'n Proto replication server (unused: replication is over gRPC, the default)
            # would listen on one fixed port in every receiver.
            extra=(--receive.capnproto-address 127.0.0.1:0)
        fi
        rm -rf "$work/data"
        mkdir -p "$work/data"

        # Every receiver's ports first: the ring names them all before any starts.
        rw=(); grpc=(); http=()
        for ((i = 0; i < rf; i++)); do
            rw+=("127.0.0.1:$(free_port)"); grpc+=("127.0.0.1:$(free_port)"); http+=("127.0.0.1:$(free_port)")
        done
        endpoints="$(printf '"%s",' "${grpc[@]}")"
        ring="$work/data/hashrings.json"
        echo "[{\"endpoints\":[${endpoints%,}]}]" >"$ring"

        rpids=()
        for ((i = 0; i < rf; i++)); do
            mkdir -p "$work/data/r$i"
            start_bg "$name-r$i" "http://${http[$i]}/-/ready" "$bin" receive \
                --tsdb.path "$work/data/r$i" --label "receive_replica=\"$i\"" \
                --remote-write.address "${rw[$i]}" --http-address "${http[$i]}" \
                --grpc-address "${grpc[$i]}" \
                --receive.hashrings-file "$ring" --receive.hashrings-algorithm ketama \
                --receive.local-endpoint "${grpc[$i]}" --receive.replication-factor "$rf" "${extra[@]}"
            rpids+=("$pid")
        done

        # As cmd/tests/receive_lb.rs configures it, with server timeouts long enough for the
        # slowest receiver under this load.
        lb_rw="127.0.0.1:$(free_port)"; lb_http="127.0.0.1:$(free_port)"
        {
            printf 'global\n  maxconn 1000\n'
            printf 'defaults\n  mode http\n  timeout connect 1s\n  timeout client 120s\n  timeout server 120s\n'
            printf '  retries 3\n  option redispatch\n  option http-buffer-request\n  retry-on conn-failure empty-response\n'
            printf 'frontend remote_write\n  bind %s\n  bind %s\n  monitor-uri /-/ready\n  default_backend receivers\n' "$lb_rw" "$lb_http"
            printf 'backend receivers\n  balance roundrobin\n  option httpchk GET /-/ready\n'
            for ((i = 0; i < rf; i++)); do
                printf '  server r%d %s check port %s inter 1s fall 3 rise 2\n' "$i" "${rw[$i]}" "${http[$i]##*:}"
            done
        } >"$work/data/haproxy.cfg"
        start_bg "$name-haproxy" "http://$lb_http/-/ready" haproxy -db -f "$work/data/haproxy.cfg"
        lb_pid="$pid"

        # Let start-up work (WAL creation, first GC) finish before taking the idle baseline.
        sleep 2
        rss0="$(sum_status VmRSS)"
        cpu0="$(sum_cpu)"
        lb_cpu0="$(cpu_ticks "$lb_pid")"
        echo "== $name: $rf receiver(s), RF=$rf, $n series x $samples samples; load average before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt" >&2
        # The samples end 15 s ago, on the 15 s grid, so that every head accepts all of them.
        start_ms=$((($(date +%s) - samples * 15) / 15 * 15 * 1000))
        # bench-write exits non-zero when a request failed; the failures are counted in the
        # table (a 503 at the forward timeout is the ring's answer to an overloaded peer).
        load_bench "http://$lb_rw/api/v1/receive" "$n" "$samples" "$start_ms" "$out/$name.load.txt" \
            --latency-log "$out/$name.latency.txt" || grep -q '^result ' "$out/$name.load.txt"
        cat "$out/$name.load.txt" >&2
        for p in "${rpids[@]}"; do
            wait_idle "$p"
        done
        cpu1="$(sum_cpu)"
        lb_cpu1="$(cpu_ticks "$lb_pid")"
        rss1="$(sum_status VmRSS)"
        anon1="$(sum_status RssAnon)"
        hwm="$(sum_status VmHWM)"
        echo "== $name done; load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt" >&2
        stop_fleet

        result="$(grep '^result ' "$out/$name.load.txt")"
        # p99 and max of the latency log's second column (ms), nearest rank.
        read -r p99 max < <(awk '{ print $2 }' "$out/$name.latency.txt" | sort -n |
            awk '{ v[NR] = $1 } END { i = int(NR * 0.99 + 0.999); if (i < 1) i = 1; print v[i], v[NR] }')
        awk -v s="$server" -v rf="$rf" -v n="$n" -v acc="$(field samples_accepted "$result")" \
            -v failed="$(field failed_requests "$result")" -v wall="$(field wall_seconds "$result")" \
            -v c0="$cpu0" -v c1="$cpu1" -v l0="$lb_cpu0" -v l1="$lb_cpu1" -v tck="$clk_tck" \
            -v r0="$rss0" -v r1="$rss1" -v a1="$anon1" -v hwm="$hwm" -v p99="$p99" -v max="$max" 'BEGIN {
                cpu = (c1 - c0) / tck
                printf "%s\t%d\t%d\t%d\t%d\t%d\t%s\t%.2f\t%.3f\t%.2f\t%d\t%d\t%d\t%d\t%.0f\t%.0f\t%s\t%s\n",
                    s, rf, rf, n, acc, failed, wall, cpu, (acc > 0 ? cpu / (acc / 1e6) : 0), (l1 - l0) / tck,
                    r0, r1, a1, hwm, r1 * 1024 / n, a1 * 1024 / n, p99, max
            }' >>"$out/results.tsv"
    done
done

# Markdown table, then per series count the ratios next to the targets.
awk -F'\t' -v order="$series_list" 'NR == 1 { next }
    {
        printf "| %s receive | %d | %d | %d | %d | %.1f | %.2f | %.3f | %.2f | %.1f | %.1f | %.1f | %.1f | %.0f | %.0f | %.1f | %.1f |\n",
            $1, $2, $4, $5, $6, $7, $8, $9, $10, $11 / 1024, $12 / 1024, $13 / 1024, $14 / 1024, $15, $16, $17, $18
        cpu[$1, $2, $4] = $9; rss[$1, $2, $4] = $15; anon[$1, $2, $4] = $16
    }
    BEGIN {
        print "| server | RF (= receivers) | active series | samples accepted | failed requests | wall s | receivers CPU s | CPU s per 1M samples | haproxy CPU s | RSS idle MiB | RSS after MiB | RssAnon after MiB | VmHWM MiB (sum) | RSS bytes per series | RssAnon bytes per series | p99 ms | max ms |"
        print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    }
    function ratio(a, b) { return b > 0 ? sprintf("%.2f", a / b) : "-" }
    END {
        print ""
        print "| active series | comparison | CPU per sample | RSS per series | RssAnon per series | target |"
        print "|---:|---|---:|---:|---:|---|"
        count = split(order, sizes, " ")
        for (i = 1; i <= count; i++) {
            n = sizes[i]
            if ((("strata", 3, n) in cpu) && (("thanos", 3, n) in cpu))
                printf "| %d | strata / thanos, RF=3 | %s | %s | %s | CPU <= 0.20, memory <= 0.30 |\n", n,
                    ratio(cpu["strata", 3, n], cpu["thanos", 3, n]), ratio(rss["strata", 3, n], rss["thanos", 3, n]),
                    ratio(anon["strata", 3, n], anon["thanos", 3, n])
            if ((("strata", 1, n) in cpu) && (("thanos", 1, n) in cpu))
                printf "| %d | strata / thanos, RF=1 | %s | %s | %s | |\n", n,
                    ratio(cpu["strata", 1, n], cpu["thanos", 1, n]), ratio(rss["strata", 1, n], rss["thanos", 1, n]),
                    ratio(anon["strata", 1, n], anon["thanos", 1, n])
            split("strata thanos", impls, " ")
            for (j = 1; j <= 2; j++) {
                s = impls[j]
                if (((s, 3, n) in cpu) && ((s, 1, n) in cpu))
                    printf "| %d | %s RF=3 / RF=1 | %s | %s | %s | %s |\n", n, s,
                        ratio(cpu[s, 3, n], cpu[s, 1, n]), ratio(rss[s, 3, n], rss[s, 1, n]),
                        ratio(anon[s, 3, n], anon[s, 1, n]), s == "strata" ? "<= 3.3" : ""
            }
        }
    }' "$out/results.tsv" | tee "$out/table.md"
echo >&2
echo "raw numbers, load reports, latency logs and logs: $out" >&2
