# Shared by the benchmark scripts that start a server: the strata binary, a work directory
# removed on exit (with the server killed), free ports, and process readings from /proc.
# Source it after argument parsing; it sets repo, STRATA_BIN, work, out and server_pid.

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
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work/data"
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

# Waits (up to two minutes) until URL answers; shows LOG if the server exits first.
wait_ready() {
    local url="$1" log="$2" deadline=$((SECONDS + 120))
    until curl -sf -o /dev/null "$url"; do
        if ! kill -0 "$server_pid" 2>/dev/null; then
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
