#!/usr/bin/env bash
# A week-long `sum by (job) (rate(...[5m]))` range query at a 5 m step through
# `strata query-frontend` (cold and warm cache), straight to the downstream, and through the real
# `thanos query-frontend` (interop/bin/thanos) with the same cache type, all in front of one
# `strata standalone` loaded with --days of data by `strata tools bench-write`.
#
# Cold runs ask a query no frontend has seen (a matcher `job!="<run id>"` that every series
# passes, so every run does the same work); warm runs repeat one query after a first run has
# filled the caches. Each timed run is one GET, from sending it to the last byte (curl's
# time_total); the table has the median and the minimum of --reps runs. The script also checks
# that each frontend's warm answer is byte for byte the downstream's.
#
# Usage: scripts/bench-query-frontend.sh [--series 1000] [--days 7] [--reps 7]
#                                        [--cache "IN-MEMORY"|"MEMCACHED"|"REDIS"] [--out DIR]
# Environment: STRATA_BIN (default: build and use the release binary of this checkout).
set -euo pipefail

series=1000
days=7
reps=7
cache="IN-MEMORY"
out=""
source "$(dirname "${BASH_SOURCE[0]}")/flags.sh"
parse_flags --series=series --days=days --reps=reps --cache=cache --out=out -- "$@"

thanos="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/interop/bin/thanos"
[ -x "$thanos" ] || { echo "no $thanos: build it with bash interop/build.sh" >&2; exit 1; }
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case "$cache" in
    IN-MEMORY) cache_yaml=$'type: IN-MEMORY\nconfig:\n  max_size: 1GB' ;;
    MEMCACHED)
        command -v memcached >/dev/null || { echo "memcached not found (apt-get install memcached)" >&2; exit 1; }
        mc_port="$(free_port)"
        memcached -l 127.0.0.1 -p "$mc_port" -m 1024 -I 64m -u "$(id -un)" >"$out/memcached.log" 2>&1 &
        other_pids+=("$!")
        cache_yaml=$'type: MEMCACHED\nconfig:\n  addresses: ["127.0.0.1:'"$mc_port"$'"]\n  max_item_size: 64MB'
        ;;
    REDIS)
        command -v redis-server >/dev/null || { echo "redis-server not found (apt-get install redis-server)" >&2; exit 1; }
        redis_port="$(free_port)"
        redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >"$out/redis.log" 2>&1 &
        other_pids+=("$!")
        cache_yaml=$'type: REDIS\nconfig:\n  addr: 127.0.0.1:'"$redis_port"
        ;;
    *) echo "unknown cache type $cache" >&2; exit 2 ;;
esac

{
    machine_info
    echo "thanos: $("$thanos" --version 2>&1 | sed -n 1p)"
    echo "series: $series, days: $days, reps: $reps, cache: $cache"
} | tee "$out/machine.txt" >&2

# One sample a minute for --days up to now.
interval=60
samples=$((days * 86400 / interval))
now=$(date +%s)
start_ms=$(((now - days * 86400) / interval * interval * 1000))
# The week up to ten minutes ago, on the 5 m grid (older than the frontends' max freshness).
query_end=$(((now - 600) / 300 * 300))
query_start=$((query_end - days * 86400))

rw_port="$(free_port)"; http_port="$(free_port)"; grpc_port="$(free_port)"
"$STRATA_BIN" standalone --remote-write.address "127.0.0.1:$rw_port" --http-address "127.0.0.1:$http_port" \
    --grpc-address "127.0.0.1:$grpc_port" --data-dir "$work/data" >"$out/standalone.log" 2>&1 &
server_pid=$!
downstream="http://127.0.0.1:$http_port"
wait_ready "$downstream/-/ready" "$out/standalone.log"
echo "== loading $series series x $samples samples" >&2
# One connection, one round after another: a week goes through many block cuts, and a sample
# behind the newest cut block is refused, so no connection may fall behind another.
"$STRATA_BIN" tools bench-write --url "http://127.0.0.1:$rw_port/api/v1/receive" --series "$series" \
    --samples-per-series "$samples" --start-time "$start_ms" --scrape-interval "${interval}s" \
    --concurrency 1 --batch-size "$series" >"$out/load.txt"
wait_idle

strata_port="$(free_port)"
start_bg strata-frontend "http://127.0.0.1:$strata_port/-/ready" "$STRATA_BIN" query-frontend \
    --http-address "127.0.0.1:$strata_port" --query-frontend.downstream-url "$downstream" \
    --query-range.response-cache-config "$cache_yaml"
thanos_port="$(free_port)"
start_bg thanos-frontend "http://127.0.0.1:$thanos_port/-/ready" "$thanos" query-frontend \
    --http-address "127.0.0.1:$thanos_port" --query-frontend.downstream-url "$downstream" \
    --query-range.response-cache-config "$cache_yaml"
declare -A url=(
    [direct]="$downstream"
    [strata]="http://127.0.0.1:$strata_port"
    [thanos]="http://127.0.0.1:$thanos_port"
)

query() {
    echo "sum by (job) (rate(bench_http_requests_total{job!=\"$1\"}[5m]))"
}

# Seconds for one GET of the range query $2 from target $1; the body goes to $3.
time_query() {
    local status
    status="$(curl -s -o "$3" -w '%{http_code} %{time_total}' --get --data-urlencode "query=$2" \
        --data "start=$query_start&end=$query_end&step=300" "${url[$1]}/api/v1/query_range")"
    [ "${status%% *}" = 200 ] || { echo "$1 answered ${status%% *}: $(head -c 300 "$3")" >&2; exit 1; }
    echo "${status#* }"
}

results="$out/runs.tsv"
: >"$results"
for rep in $(seq "$reps"); do
    # A cold query for each target, the targets in an order that rotates from run to run.
    targets=(direct strata thanos)
    for i in 0 1 2; do
        t="${targets[$(((i + rep) % 3))]}"
        case "$t" in direct) what=direct ;; *) what="$t-cold" ;; esac
        printf '%s\t%s\n' "$what" "$(time_query "$t" "$(query "cold-$t-$rep")" "$work/body")" >>"$results"
    done
done
for t in strata thanos; do
    time_query "$t" "$(query warm)" "$out/warm-$t.json" >/dev/null
    for rep in $(seq "$reps"); do
        printf '%s\t%s\n' "$t-warm" "$(time_query "$t" "$(query warm)" "$out/warm-$t.json")" >>"$results"
    done
done
time_query direct "$(query warm)" "$out/warm-direct.json" >/dev/null
for t in strata thanos; do
    if cmp -s "$out/warm-$t.json" "$out/warm-direct.json"; then same=yes; else same=no; fi
    echo "$t frontend's warm answer identical to the downstream's: $same" | tee -a "$out/machine.txt" >&2
done

{
    echo "| path | median ms | min ms |"
    echo "|---|---:|---:|"
    for what in direct strata-cold strata-warm thanos-cold thanos-warm; do
        awk -F'\t' -v w="$what" '$1 == w { print $2 * 1000 }' "$results" | sort -n | awk -v w="$what" '
            { v[NR] = $1 }
            END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "| %s | %.1f | %.1f |\n", w, m, v[1] }'
    done
} | tee "$out/table.md"
