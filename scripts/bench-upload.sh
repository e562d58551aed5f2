#!/usr/bin/env bash
# Shipper upload throughput for one block of about --size-mib MiB (a small promtool block padded
# with chunk segments of random bytes), to a moto S3 server on 127.0.0.1 and to a FILESYSTEM
# bucket on the same disk, next to the speed of reading the same files from that disk.
#
# Usage: scripts/bench-upload.sh [--size-mib 1024] [--work DIR]
# Needs promtool (Debian prometheus) and moto_server (pip install 'moto[server]').
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

size_mib=1024
work=""
source "$(dirname "${BASH_SOURCE[0]}")/flags.sh"
parse_flags --size-mib=size_mib --work=work -- "$@"
for tool in promtool moto_server python3; do
    command -v "$tool" >/dev/null || { echo "$tool is not on PATH" >&2; exit 1; }
done

created_work=0
if [ -z "$work" ]; then
    work=$(mktemp -d "${TMPDIR:-/tmp}/strata-bench-upload.XXXXXX")
    created_work=1
fi
moto_pid=""
cleanup() {
    if [ -n "$moto_pid" ]; then kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true; fi
    if [ "$created_work" -eq 1 ]; then rm -rf "$work"; fi
}
trap cleanup EXIT

echo "== build"
cargo build --release -q -p strata-shipper --example upload_bench
bench=target/release/examples/upload_bench

echo "== block of ${size_mib} MiB in $work"
tsdb="$work/tsdb"
mkdir -p "$tsdb"
python3 - "$work/input.om" <<'EOF'
import sys
start = 1_700_006_400
with open(sys.argv[1], "w") as f:
    f.write("# HELP bench_metric a gauge\n# TYPE bench_metric gauge\n")
    for s in range(20):
        for t in range(0, 7200, 15):
            f.write(f'bench_metric{{series="{s}"}} {t * 0.5 + s} {start + t}\n')
    f.write("# EOF\n")
EOF
promtool tsdb create-blocks-from openmetrics "$work/input.om" "$tsdb" >/dev/null
block=$(find "$tsdb" -mindepth 1 -maxdepth 1 -type d | head -n 1)
# Segments of at most 512 MiB, as Prometheus cuts them, each with the segment header.
left=$size_mib
seg=2
while [ "$left" -gt 0 ]; do
    n=$(( left > 512 ? 512 : left ))
    f="$block/chunks/$(printf '%06d' "$seg")"
    { printf '\x85\xbd\x40\xdd\x01\x00\x00\x00'; head -c "$(( n * 1048576 - 8 ))" /dev/urandom; } > "$f"
    left=$(( left - n ))
    seg=$(( seg + 1 ))
done
sync
total=$(du -sb "$block" | cut -f1)
echo "block $(basename "$block"): $total bytes"

echo "== disk read"
# O_DIRECT bypasses the page cache the files were just written through.
read_speed() {
    local flag="$1" start end
    start=$(date +%s.%N)
    for f in "$block"/chunks/* "$block"/index; do
        dd if="$f" of=/dev/null bs=4M $flag status=none
    done
    end=$(date +%s.%N)
    python3 -c "import sys; t=float(sys.argv[2])-float(sys.argv[1]); print(f'{float(sys.argv[3])/1048576/t:.1f} MiB/s ({t:.2f} s)')" "$start" "$end" "$total"
}
echo "O_DIRECT read (cold):      $(read_speed iflag=direct)"
echo "page-cache read (hot):     $(read_speed '')"

echo "== FILESYSTEM bucket"
printf 'type: FILESYSTEM\nconfig:\n  directory: %s\n' "$work/fs-bucket" > "$work/fs.yml"
"$bench" "$work/fs.yml" "$tsdb"

echo "== S3 (moto on 127.0.0.1)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
moto_server -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto_pid=$!
python3 - "$port" <<'EOF'
import sys, time, urllib.request
port = int(sys.argv[1])
deadline = time.time() + 60
while True:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
        break
    except Exception:
        if time.time() > deadline:
            sys.exit("moto_server did not start")
        time.sleep(0.2)
urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/bench", method="PUT"), timeout=10)
EOF
printf 'type: S3\nconfig:\n  bucket: bench\n  endpoint: 127.0.0.1:%s\n  region: us-east-1\n  access_key: bench\n  secret_key: bench\n  insecure: true\n' \
    "$port" > "$work/s3.yml"
"$bench" "$work/s3.yml" "$tsdb"
echo "moto_server peak RSS: $(grep VmHWM "/proc/$moto_pid/status" | awk '{print $2, $3}')"
