#!/usr/bin/env python3
"""Times PromQL range queries against one running server (strata or Prometheus).

For every query: one warm-up run, then --reps timed runs. Each run is one GET of
/api/v1/query_range, timed from sending the request to the last byte of the answer. Around each
run the server's VmHWM is reset (writing 5 to /proc/<pid>/clear_refs sets it to the current RSS),
so VmHWM after the run minus VmRSS before it is the memory the query added at its peak. CPU time
is utime + stime of the server process over the run.

A Go server's RSS barely moves during a query: its heap keeps the room of earlier garbage
collection cycles and a query allocates from that. For such a server (one that exports
go_memstats_alloc_bytes_total) each run also records the bytes the process allocated on its heap
during the run, from /metrics just before and after it, less what one /metrics scrape allocates.

`run` appends one tab-separated line per run to --out:
server, series, query, rep, latency_ms, rss_before_kb, peak_delta_kb, cpu_ms, result_series,
heap_alloc_kb (-1 when the server does not export it).
`table` turns such a file into a markdown table comparing strata with Prometheus: medians of
latency, of the peak increase over the RSS before the run (+MiB) and of the peak RSS itself, and
the mean CPU time per run.
Usage: see scripts/bench-query.sh, which starts the servers and loads the data.
"""

import argparse
import json
import os
import statistics
import sys
import time
import urllib.parse
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")


def status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def cpu_ms(pid):
    with open(f"/proc/{pid}/stat") as f:
        # The command name is in parentheses and may hold spaces; fields count from after it.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / CLK_TCK


def reset_hwm(pid):
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def go_alloc_bytes(base):
    """go_memstats_alloc_bytes_total of the server, or None."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=60) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("go_memstats_alloc_bytes_total "):
                return float(line.split()[1])
    return None


def scrape_alloc_bytes(base):
    """What one /metrics scrape allocates (median of five), or None for a non-Go server."""
    deltas = []
    for _ in range(5):
        a = go_alloc_bytes(base)
        if a is None:
            return None
        deltas.append(go_alloc_bytes(base) - a)
    return statistics.median(deltas)


def run(base, pid, query, start, end, step, scrape_alloc):
    params = urllib.parse.urlencode({"query": query, "start": start, "end": end, "step": step})
    alloc = go_alloc_bytes(base) if scrape_alloc is not None else None
    reset_hwm(pid)
    rss = status_kb(pid, "VmRSS")
    cpu = cpu_ms(pid)
    began = time.perf_counter()
    with urllib.request.urlopen(f"{base}/api/v1/query_range?{params}", timeout=300) as resp:
        body = resp.read()
    latency = (time.perf_counter() - began) * 1000
    peak = status_kb(pid, "VmHWM") - rss
    used = cpu_ms(pid) - cpu
    heap_kb = -1
    if alloc is not None:
        heap_kb = max(0, int((go_alloc_bytes(base) - alloc - scrape_alloc) / 1024))
    answer = json.loads(body)
    if answer.get("status") != "success":
        sys.exit(f"{query}: {answer}")
    return latency, rss, peak, used, len(answer["data"]["result"]), heap_kb


def measure(a):
    scrape_alloc = scrape_alloc_bytes(a.url)
    with open(a.out, "a") as out:
        for query in a.query:
            run(a.url, a.pid, query, a.start, a.end, a.step, scrape_alloc)
            for rep in range(a.reps):
                latency, rss, peak, used, n, heap = run(a.url, a.pid, query, a.start, a.end, a.step, scrape_alloc)
                out.write(f"{a.server}\t{a.series}\t{query}\t{rep}\t{latency:.2f}\t{rss}\t{peak}\t{used:.0f}\t{n}\t{heap}\n")
                out.flush()
            print(f"{a.server} {a.series} {query}: {n} series, last run {latency:.1f} ms", file=sys.stderr)


def table(a):
    runs = {}
    order = []
    with open(a.results) as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            server, series, query, _, latency, rss, peak, cpu, n = fields[:9]
            heap = int(fields[9]) if len(fields) > 9 else -1
            key = (int(series), query)
            if key not in runs:
                order.append(key)
            run = (float(latency), int(peak), float(cpu), int(n), int(rss) + int(peak), heap)
            runs.setdefault(key, {}).setdefault(server, []).append(run)
    print("| series | query | result series | strata ms | Prometheus ms | strata / Prometheus | "
          "strata CPU ms | Prometheus CPU ms | strata peak +MiB | Prometheus peak +MiB | "
          "Prometheus heap alloc MiB | strata peak RSS MiB | Prometheus peak RSS MiB |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key in order:
        s, p = runs[key].get("strata"), runs[key].get("prometheus")
        if not s or not p:
            continue

        def med(rs, i):
            return statistics.median(r[i] for r in rs)

        # CPU time is counted in clock ticks (10 ms), so a mean over the runs says more.
        def mean(rs, i):
            return statistics.mean(r[i] for r in rs)

        print(f"| {key[0]} | `{key[1]}` | {s[0][3]} | {med(s, 0):.1f} | {med(p, 0):.1f} | "
              f"{med(s, 0) / med(p, 0):.2f} | {mean(s, 2):.0f} | {mean(p, 2):.0f} | "
              f"{med(s, 1) / 1024:.2f} | {med(p, 1) / 1024:.2f} | {med(p, 5) / 1024:.1f} | "
              f"{med(s, 4) / 1024:.0f} | {med(p, 4) / 1024:.0f} |")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(required=True)
    r = sub.add_parser("run", help="time queries against one server")
    r.add_argument("--url", required=True, help="HTTP API base URL of the server")
    r.add_argument("--pid", type=int, required=True, help="server process id")
    r.add_argument("--server", required=True, help="strata or prometheus")
    r.add_argument("--series", type=int, required=True, help="series loaded, for the results")
    r.add_argument("--start", type=float, required=True, help="range start, Unix seconds")
    r.add_argument("--end", type=float, required=True, help="range end, Unix seconds")
    r.add_argument("--step", default="15", help="range step, seconds")
    r.add_argument("--reps", type=int, default=5, help="timed runs per query")
    r.add_argument("--query", action="append", required=True, help="PromQL (repeatable)")
    r.add_argument("--out", required=True, help="TSV file to append to")
    r.set_defaults(func=measure)
    t = sub.add_parser("table", help="markdown table of medians from a results file")
    t.add_argument("results")
    t.set_defaults(func=table)
    a = p.parse_args()
    a.func(a)


if __name__ == "__main__":
    main()
