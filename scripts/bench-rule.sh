#!/usr/bin/env bash
# Rule evaluation CPU: `strata standalone --rule-file` (the ruler evaluating on the standalone's
# engine in process) vs Prometheus 3.x (interop/bin/prometheus) evaluating the same rule file
# over the same data, both running at once.
#
# Both get the same `strata tools bench-write` data by remote write (SERIES series, one sample
# every 15 s over the last MINUTES minutes, ending now), then evaluate a generated rule file of
# RULES rules (10 groups; recording rules over rates, sums, a histogram quantile, topk, and one
# alerting rule in ten that never fires) every INTERVAL. After one interval of warm-up, each
# process's CPU time (utime + stime from /proc/<pid>/stat) and its rule evaluations
# (prometheus_rule_evaluations_total, which both export) are read at the start and the end of
# a WINDOW; printed are the CPU seconds, the evaluations, the CPU seconds per 1,000 rule
# evaluations (= CPU seconds per minute for 1,000 rules evaluated once a minute) and strata's
# ratio to Prometheus. The data ages during the window; keep WINDOW well under the 5m lookback.
#
# Usage: scripts/bench-rule.sh [--series 10000] [--minutes 30] [--rules 1000] [--interval 30s]
#                              [--window 120] [--out DIR]
# Environment: STRATA_BIN (default: build and use the release binary of this checkout),
# PROMETHEUS_BIN (default: interop/bin/prometheus, built by interop/build.sh).
set -euo pipefail

n=10000
minutes=30
rules=1000
interval=30s
window=120
out=""
source "$(dirname "${BASH_SOURCE[0]}")/flags.sh"
parse_flags --series=n --minutes=minutes --rules=rules --interval=interval --window=window --out=out -- "$@"
case "$interval" in
    *s) interval_s="${interval%s}" ;;
    *) echo "--interval must be in seconds, e.g. 30s" >&2; exit 2 ;;
esac

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PROMETHEUS_BIN="${PROMETHEUS_BIN:-$repo/interop/bin/prometheus}"
[ -x "$PROMETHEUS_BIN" ] || { echo "no $PROMETHEUS_BIN (bash interop/build.sh)" >&2; exit 1; }

{
    machine_info
    echo "prometheus: $("$PROMETHEUS_BIN" --version 2>&1 | sed -n 1p)"
    echo "series: $n, minutes of data: $minutes, rules: $rules, interval: $interval, window: ${window}s"
} | tee "$out/machine.txt" >&2

# The rule file: ten groups, rule i of template i % 10.
templates=(
    'sum by (namespace) (rate(bench_http_requests_total[5m]))'
    'sum by (cluster, namespace) (rate(bench_container_cpu_usage_seconds_total[5m]))'
    'histogram_quantile(0.9, sum by (le, namespace) (rate(bench_http_request_duration_seconds_bucket[5m])))'
    'avg by (namespace) (bench_process_resident_memory_bytes)'
    'max by (cluster) (bench_node_load1)'
    'sum by (namespace) (bench_kube_pod_status_ready)'
    'count by (job) (bench_up)'
    'sum(rate(bench_node_network_receive_bytes_total[5m]))'
    'topk(5, bench_go_goroutines)'
)
rule_file="$out/rules.yml"
{
    echo "groups:"
    per_group=$(((rules + 9) / 10))
    for ((i = 0; i < rules; i++)); do
        if ((i % per_group == 0)); then
            printf '  - name: bench-%d\n    interval: %s\n    rules:\n' "$((i / per_group))" "$interval"
        fi
        t=$((i % 10))
        if ((t == 9)); then
            printf '      - alert: BenchAlert%d\n        expr: avg by (namespace) (bench_node_load1) > 1e12\n        for: 5m\n' "$i"
        else
            printf '      - record: bench:rule_%d\n        expr: %s\n' "$i" "${templates[$t]}"
        fi
    done
} >"$rule_file"

samples=$((minutes * 4))
# The samples end now, on the 15 s grid.
start_ms=$((($(date +%s) - samples * 15) / 15 * 15 * 1000))

prom_port="$(free_port)"
printf 'global:\n  scrape_interval: 1h\n  evaluation_interval: %s\nrule_files:\n  - %s\n' "$interval" "$rule_file" \
    >"$work/prometheus.yml"
mkdir -p "$work/data/prometheus"
start_bg prometheus "http://127.0.0.1:$prom_port/-/ready" "$PROMETHEUS_BIN" \
    --web.enable-remote-write-receiver \
    --config.file "$work/prometheus.yml" \
    --storage.tsdb.path "$work/data/prometheus" \
    --web.listen-address "127.0.0.1:$prom_port"
prom_pid="$pid"

rw_port="$(free_port)"; http_port="$(free_port)"; grpc_port="$(free_port)"
start_bg standalone "http://127.0.0.1:$http_port/-/ready" "$STRATA_BIN" standalone \
    --data-dir "$work/data/standalone" \
    --remote-write.address "127.0.0.1:$rw_port" \
    --http-address "127.0.0.1:$http_port" \
    --grpc-address "127.0.0.1:$grpc_port" \
    --rule-file "$rule_file" --eval-interval "$interval"
strata_pid="$pid"

echo "== loading $n series x $samples samples into both" >&2
load_bench "http://127.0.0.1:$prom_port/api/v1/write" "$n" "$samples" "$start_ms" "$out/load-prometheus.txt"
load_bench "http://127.0.0.1:$rw_port/api/v1/receive" "$n" "$samples" "$start_ms" "$out/load-strata.txt"

# Rule evaluations so far, summed over the groups.
evaluations() {
    curl -sf "$1/metrics" | awk '$1 ~ /^prometheus_rule_evaluations_total([{]|$)/ { s += $2 } END { printf "%d\n", s }'
}

echo "== warm-up: ${interval_s}s" >&2
sleep "$interval_s"
prom_api="http://127.0.0.1:$prom_port"; strata_api="http://127.0.0.1:$http_port"
p_cpu0="$(cpu_ticks "$prom_pid")"; s_cpu0="$(cpu_ticks "$strata_pid")"
p_ev0="$(evaluations "$prom_api")"; s_ev0="$(evaluations "$strata_api")"
echo "== measuring: ${window}s" >&2
sleep "$window"
p_cpu1="$(cpu_ticks "$prom_pid")"; s_cpu1="$(cpu_ticks "$strata_pid")"
p_ev1="$(evaluations "$prom_api")"; s_ev1="$(evaluations "$strata_api")"

# Both must have evaluated every rule without failures for the comparison to mean anything.
failures() {
    curl -sf "$1/metrics" | awk '$1 ~ /^prometheus_rule_evaluation_failures_total([{]|$)/ { s += $2 } END { printf "%d\n", s }'
}
echo "evaluation failures: prometheus $(failures "$prom_api"), strata $(failures "$strata_api")" | tee -a "$out/machine.txt" >&2
curl -sf "$strata_api/api/v1/query?query=count(%7B__name__%3D~%22bench%3Arule_.*%22%7D)" >"$out/strata-recorded.json" || true
curl -sf "$prom_api/api/v1/query?query=count(%7B__name__%3D~%22bench%3Arule_.*%22%7D)" >"$out/prometheus-recorded.json" || true

tck="$(getconf CLK_TCK)"
python3 - "$tck" "$p_cpu0" "$p_cpu1" "$p_ev0" "$p_ev1" "$s_cpu0" "$s_cpu1" "$s_ev0" "$s_ev1" "$rules" "$interval_s" <<'EOF' | tee "$out/results.md"
import sys
tck, pc0, pc1, pe0, pe1, sc0, sc1, se0, se1, rules, interval = map(float, sys.argv[1:])
rows = []
for name, c0, c1, e0, e1 in (("Prometheus 3.x", pc0, pc1, pe0, pe1), ("strata standalone", sc0, sc1, se0, se1)):
    cpu = (c1 - c0) / tck
    ev = e1 - e0
    rows.append((name, cpu, ev, cpu / ev * 1000 if ev else float("nan")))
print(f"{int(rules)} rules every {int(interval)}s")
print()
print("| process | CPU s in window | rule evaluations | CPU s per 1,000 evaluations |")
print("|---|---|---|---|")
for name, cpu, ev, per in rows:
    print(f"| {name} | {cpu:.2f} | {int(ev)} | {per:.3f} |")
print()
print(f"strata / Prometheus (CPU per 1,000 evaluations): {rows[1][3] / rows[0][3]:.2f}")
EOF
echo "results in $out" >&2
