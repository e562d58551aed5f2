#!/usr/bin/env python3
"""Splits remote-write request latencies into those that overlap a block cut and the rest.

Inputs: the stderr log of `strata receive` (logfmt) and the latency log of
`strata tools bench-write --latency-log` (lines: unix ms at send, latency ms, HTTP status).

A cut is the interval [ts - duration, ts] of each `msg="cut block from head"` line; its first
`write_duration` is the block write, the rest head truncation, WAL checkpoint and retention.
A request belongs to "during a cut" when [send, send + latency] overlaps a cut interval.
Prints markdown tables: latency percentiles for both groups (and for the two phases of a cut)
with the p99 ratio, then one row per cut with the latency of the requests during it next to
that of the requests sent in the BASELINE_S seconds before it (a local baseline, for when other
work on the machine changes the load over the run).

Usage: cut-latency.py RECEIVE_LOG LATENCY_LOG
"""

import math
import re
import sys
from datetime import datetime

PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')
UNIT_MS = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1000.0}
DURATION = re.compile(r"^([0-9.]+)(ns|µs|us|ms|s)$")
BASELINE_S = 20


def logfmt(line):
    return {k: v[1:-1] if v.startswith('"') else v for k, v in PAIR.findall(line)}


def duration_ms(text):
    """A Rust `Duration` as Debug prints it (`1.5s`, `830.2ms`, `12µs`), in milliseconds."""
    m = DURATION.match(text)
    if not m:
        raise ValueError(f"unparsable duration {text!r}")
    return float(m.group(1)) * UNIT_MS[m.group(2)]


def unix_ms(ts):
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000.0


def read_cuts(path):
    cuts = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if 'msg="cut block from head"' not in line:
                continue
            kv = logfmt(line)
            end = unix_ms(kv["ts"])
            total = duration_ms(kv["duration"])
            write = duration_ms(kv["write_duration"])
            cuts.append({
                "start": end - total,
                "write_end": end - total + write,
                "end": end,
                "duration": total,
                "write": write,
                "series": int(kv.get("series", 0)),
                "samples": int(kv.get("samples", 0)),
            })
    return cuts


def read_requests(path):
    with open(path, encoding="utf-8") as f:
        return [(int(a), float(b), c) for a, b, c in (line.split() for line in f if line.strip())]


def percentile(sorted_values, q):
    # Nearest rank, as bench-write's own report computes it.
    if not sorted_values:
        return math.nan
    rank = min(max(math.ceil(len(sorted_values) * q), 1), len(sorted_values))
    return sorted_values[rank - 1]


def overlaps(send, latency, start, end):
    # Log timestamps have millisecond resolution; widen by one so touching counts.
    return send <= end + 1 and send + latency >= start - 1


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    cuts = read_cuts(sys.argv[1])
    requests = read_requests(sys.argv[2])
    if not requests:
        sys.exit("no requests in the latency log")
    groups = {"outside a cut": [], "during a cut": [], "  of which block write": [],
              "  of which truncate + WAL checkpoint": []}
    failed = {name: 0 for name in groups}
    for send, latency, status in requests:
        names = []
        hit = [c for c in cuts if overlaps(send, latency, c["start"], c["end"])]
        if not hit:
            names.append("outside a cut")
        else:
            names.append("during a cut")
            if any(overlaps(send, latency, c["start"], c["write_end"]) for c in hit):
                names.append("  of which block write")
            if any(overlaps(send, latency, c["write_end"], c["end"]) for c in hit):
                names.append("  of which truncate + WAL checkpoint")
        for name in names:
            groups[name].append(latency)
            failed[name] += not status.startswith("2")

    print("| requests | count | failed | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, values in groups.items():
        values.sort()
        print(f"| {name.strip()} | {len(values)} | {failed[name]} | {percentile(values, 0.5):.1f} "
              f"| {percentile(values, 0.99):.1f} | {(values[-1] if values else math.nan):.1f} |")
    outside = percentile(groups["outside a cut"], 0.99)
    during = percentile(groups["during a cut"], 0.99)
    print(f"\np99 during a cut / p99 outside: {during / outside:.2f} (target <= 2)")

    first = requests[0][0]
    print(f"\n| cut | starts at s | write s | total s | series | samples | requests during "
          f"| p50 ms | p99 ms | p50 ms {BASELINE_S} s before | p99 ms {BASELINE_S} s before |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for i, c in enumerate(cuts, 1):
        during = sorted(l for s, l, _ in requests if overlaps(s, l, c["start"], c["end"]))
        before = sorted(l for s, l, _ in requests
                        if c["start"] - BASELINE_S * 1000 <= s and s + l < c["start"] - 1)
        print(f"| {i} | {(c['start'] - first) / 1000:.1f} | {c['write'] / 1000:.2f} "
              f"| {c['duration'] / 1000:.2f} | {c['series']} | {c['samples']} | {len(during)} "
              f"| {percentile(during, 0.5):.1f} | {percentile(during, 0.99):.1f} "
              f"| {percentile(before, 0.5):.1f} | {percentile(before, 0.99):.1f} |")
    if not cuts:
        print("\nno block was cut during the run")


if __name__ == "__main__":
    main()
