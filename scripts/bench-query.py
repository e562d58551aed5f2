#!/usr/bin/env python3
"""Times PromQL range queries or StoreAPI Series() calls against running servers.

A target is one server process:
--target name=N,url=U,pid=P[,stores=P+P...][,grpc=HOST:PORT][,fetched=URL+URL...]
(url: its HTTP base URL; stores: the processes it reads from, whose CPU is counted apart;
grpc: its StoreAPI address, for `series`; fetched: the HTTP base URLs of servers whose
--fetched-metric counters, summed over every series, are read before and after each run, e.g. a
store gateway's bytes fetched from its bucket). With several targets, every timed run of one query
goes to each target in turn, the order rotating from run to run, so that a drift in the
machine's load lands on all of them alike.

`run` times range queries: per query and target one warm-up run, then --reps timed runs, each
one GET of /api/v1/query_range, timed from sending the request to the last byte of the answer.
`series` times Series() calls with interop/bin/seriesbench (Thanos's own gRPC client code),
which reports the call's duration, series and protobuf bytes itself; the same warm-up and reps.

Around each run the server's VmHWM is reset (writing 5 to /proc/<pid>/clear_refs sets it to the
current RSS), so VmHWM after the run minus VmRSS before it is the memory the run added at its
peak. CPU time is utime + stime of the server process over the run, and apart from it that of
its stores.

A Go server's RSS barely moves during a query: its heap keeps the room of earlier garbage
collection cycles and a query allocates from that. For such a server (one that exports
go_memstats_alloc_bytes_total) each run also records the bytes the process allocated on its heap
during the run, from /metrics just before and after it, less what one /metrics scrape allocates.

Both append one tab-separated line per run to --out:
server, series, query, rep, latency_ms, rss_before_kb, peak_delta_kb, cpu_ms, result_series,
heap_alloc_kb (-1 when the server does not export it), bytes (of the answer), stores_cpu_ms
(-1 without stores), fetched (the increase of the fetched counters; -1 without them).
`table` turns such a file into a markdown table: per server the medians of latency, of the peak
increase over the RSS before the run (+MiB) and of the peak RSS itself, the mean CPU time per
run, and the latency ratios asked for (by default strata against Prometheus).
Usage: see scripts/bench-query.sh, scripts/bench-fleet-query.sh and scripts/bench-storeapi.sh,
which start the servers and load the data.
"""

import argparse
import json
import os
import statistics
import subprocess
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


def parse_target(spec):
    t = dict(kv.split("=", 1) for kv in spec.split(","))
    missing = {"name", "url", "pid"} - t.keys()
    if missing:
        sys.exit(f"--target {spec}: missing {', '.join(sorted(missing))}")
    t["pid"] = int(t["pid"])
    t["stores"] = [int(p) for p in t["stores"].split("+")] if "stores" in t else []
    t["fetched"] = t["fetched"].split("+") if "fetched" in t else []
    return t


def counter_sum(base, names):
    """Sum of every sample of the metrics `names` in the exposition at base/metrics."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=60) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in names:
            rest = line.rsplit("}", 1)[1] if "}" in line else line.split(" ", 1)[1]
            total += float(rest.split()[0])
    return total


def measured(target, scrape_alloc, call, fetched_metrics):
    """Runs call() (which returns result series, answer bytes and the duration in ms of the
    call alone, without checking the answer) with the target's readings around it."""
    pid, base = target["pid"], target["url"]
    fetch = fetched_metrics and target["fetched"]
    # Read before the CPU readings start and after they end: a scrape costs CPU too.
    fetched = sum(counter_sum(u, fetched_metrics) for u in target["fetched"]) if fetch else 0
    alloc = go_alloc_bytes(base) if scrape_alloc is not None else None
    reset_hwm(pid)
    rss = status_kb(pid, "VmRSS")
    cpu = cpu_ms(pid)
    stores_cpu = sum(cpu_ms(p) for p in target["stores"])
    n, nbytes, latency = call()
    peak = status_kb(pid, "VmHWM") - rss
    used = cpu_ms(pid) - cpu
    stores_used = sum(cpu_ms(p) for p in target["stores"]) - stores_cpu if target["stores"] else -1
    heap_kb = -1
    if alloc is not None:
        heap_kb = max(0, int((go_alloc_bytes(base) - alloc - scrape_alloc) / 1024))
    fetched = sum(counter_sum(u, fetched_metrics) for u in target["fetched"]) - fetched if fetch else -1
    return latency, rss, peak, used, n, heap_kb, nbytes, stores_used, fetched


def range_query(target, query, a):
    params = {"query": query, "start": a.start, "end": a.end, "step": a.step}
    params.update(kv.split("=", 1) for kv in a.param)
    url = f"{target['url']}/api/v1/query_range?{urllib.parse.urlencode(params)}"

    def call():
        began = time.perf_counter()
        with urllib.request.urlopen(url, timeout=300) as resp:
            body = resp.read()
        latency = (time.perf_counter() - began) * 1000
        answer = json.loads(body)
        if answer.get("status") != "success":
            sys.exit(f"{target['name']}: {query}: {answer}")
        return len(answer["data"]["result"]), len(body), latency

    return call


def series_call(target, select, a):
    # A select is a matcher, optionally followed by " last=<Go duration>" (a recent range only).
    matcher, _, last = select.partition(" last=")
    cmd = [a.client, "-addr", target["grpc"], "-match", matcher] + (["-last", last] if last else [])

    def call():
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"{target['name']}: {matcher}: {done.stderr.strip()}")
        got = json.loads(done.stdout)
        return got["series"], got["bytes"], got["seconds"] * 1000

    return call


def measure(a, what, make_call):
    targets = [parse_target(t) for t in a.target]
    scrape_alloc = {t["name"]: scrape_alloc_bytes(t["url"]) for t in targets}
    with open(a.out, "a") as out:
        for query in what:
            for t in targets:
                measured(t, scrape_alloc[t["name"]], make_call(t, query, a), a.fetched_metric)
            for rep in range(a.reps):
                k = rep % len(targets)
                for t in targets[k:] + targets[:k]:
                    r = measured(t, scrape_alloc[t["name"]], make_call(t, query, a), a.fetched_metric)
                    latency, rss, peak, used, n, heap, nbytes, stores, fetched = r
                    out.write(f"{t['name']}\t{a.series}\t{query}{a.tag and f' [{a.tag}]'}\t{rep}\t{latency:.2f}\t{rss}\t{peak}\t"
                              f"{used:.0f}\t{n}\t{heap}\t{nbytes}\t{stores:.0f}\t{fetched:.0f}\n")
                    out.flush()
                    print(f"{t['name']} {a.series} {query}: {n} series, {latency:.1f} ms", file=sys.stderr)


def table(a):
    runs = {}
    order = []
    with open(a.results) as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            server, series, query, _, latency, rss, peak, cpu, n = fields[:9]
            # Files written before these columns existed lack them.
            heap, nbytes, stores, fetched = (int(x) for x in (fields[9:] + ["-1"] * 4)[:4])
            key = (int(series), query)
            if key not in runs:
                order.append(key)
            run = (float(latency), int(peak), float(cpu), int(n), int(rss) + int(peak), heap, nbytes, stores, fetched)
            runs.setdefault(key, {}).setdefault(server, []).append(run)

    servers = [s.split("=", 1) if "=" in s else (s, s) for s in a.servers]
    label = dict(servers)
    names = [name for name, _ in servers]
    ratios = [r.split("/") for r in a.ratio]
    memory_ratios = [r.split("/") for r in a.memory_ratio]

    def med(rs, i):
        return statistics.median(r[i] for r in rs)

    # CPU time is counted in clock ticks (10 ms), so a mean over the runs says more.
    def mean(rs, i):
        return statistics.mean(r[i] for r in rs)

    def has(name, i):
        return any(r[i] >= 0 for cells in runs.values() for r in cells.get(name, []))

    columns = [(f"{label[s]} ms", lambda c, s=s: f"{med(c[s], 0):.1f}") for s in names]
    columns += [(f"{label[x]} / {label[y]}", lambda c, x=x, y=y: f"{med(c[x], 0) / med(c[y], 0):.2f}")
                for x, y in ratios]
    columns += [(f"{label[s]} CPU ms", lambda c, s=s: f"{mean(c[s], 2):.0f}") for s in names]
    columns += [(f"{label[s]} stores CPU ms", lambda c, s=s: f"{mean(c[s], 7):.0f}") for s in names if has(s, 7)]
    columns += [(f"{label[s]} fetched KiB", lambda c, s=s: f"{med(c[s], 8) / 1024:.0f}") for s in names if has(s, 8)]
    # A ratio to nothing (CPU under a clock tick, nothing fetched) is not one.
    def ratio(x, y):
        return f"{x / y:.2f}" if y > 0 else "-"

    columns += [(f"{label[x]} / {label[y]} fetched", lambda c, x=x, y=y: ratio(med(c[x], 8), med(c[y], 8)))
                for x, y in a.fetched_ratio if has(x, 8) and has(y, 8)]
    columns += [(f"{label[x]} / {label[y]} stores CPU", lambda c, x=x, y=y: ratio(mean(c[x], 7), mean(c[y], 7)))
                for x, y in a.stores_cpu_ratio if has(x, 7) and has(y, 7)]
    if a.throughput:
        columns += [(f"{label[s]} series/s", lambda c, s=s: f"{c[s][0][3] / (med(c[s], 0) / 1000):.0f}")
                    for s in names]
        columns += [(f"{label[s]} MB/s", lambda c, s=s: f"{med(c[s], 6) / 1e6 / (med(c[s], 0) / 1000):.1f}")
                    for s in names]
    columns += [(f"{label[s]} peak +MiB", lambda c, s=s: f"{med(c[s], 1) / 1024:.2f}") for s in names]
    columns += [(f"{label[s]} heap alloc MiB", lambda c, s=s: f"{med(c[s], 5) / 1024:.1f}") for s in names if has(s, 5)]
    columns += [(f"{label[s]} peak RSS MiB", lambda c, s=s: f"{med(c[s], 4) / 1024:.0f}") for s in names]
    columns += [(f"{label[x]} / {label[y]} peak RSS", lambda c, x=x, y=y: f"{med(c[x], 4) / med(c[y], 4):.2f}")
                for x, y in memory_ratios]

    print("| series | query | result series | " + " | ".join(h for h, _ in columns) + " |")
    print("|---:|---|---:|" + "---:|" * len(columns))
    for key in order:
        cells = runs[key]
        if not all(cells.get(s) for s in names):
            continue
        print(f"| {key[0]} | `{key[1]}` | {cells[names[0]][0][3]} | " + " | ".join(f(cells) for _, f in columns) + " |")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(required=True)

    def common(r):
        r.add_argument("--target", action="append", required=True,
                       help="name=N,url=U,pid=P[,stores=P+P][,grpc=HOST:PORT] (repeatable)")
        r.add_argument("--series", type=int, required=True, help="series loaded, for the results")
        r.add_argument("--reps", type=int, default=5, help="timed runs per query and target")
        r.add_argument("--out", required=True, help="TSV file to append to")
        r.add_argument("--tag", default="", help="written after each query in brackets, to tell runs apart")
        r.add_argument("--fetched-metric", action="append", default=[],
                       help="counter read from each target's fetched= servers around each run (repeatable)")

    r = sub.add_parser("run", help="time range queries")
    common(r)
    r.add_argument("--start", type=float, required=True, help="range start, Unix seconds")
    r.add_argument("--end", type=float, required=True, help="range end, Unix seconds")
    r.add_argument("--step", default="15", help="range step, seconds")
    r.add_argument("--param", action="append", default=[], help="extra KEY=VALUE for every request")
    r.add_argument("--query", action="append", required=True, help="PromQL (repeatable)")
    r.set_defaults(func=lambda a: measure(a, a.query, range_query))
    s = sub.add_parser("series", help="time StoreAPI Series() calls")
    common(s)
    s.add_argument("--client", required=True, help="the seriesbench binary (interop/build.sh)")
    s.add_argument("--select", action="append", required=True,
                   help="one matcher, name=~regex etc., optionally with ' last=1h' for a recent range only (repeatable)")
    s.set_defaults(func=lambda a: measure(a, a.select, series_call))
    t = sub.add_parser("table", help="markdown table of medians from a results file")
    t.add_argument("results")
    t.add_argument("--servers", nargs="+", default=["strata", "prometheus=Prometheus"],
                   help="servers as in the results, each NAME or NAME=Label, the first one's result series shown")
    t.add_argument("--ratio", nargs="*", default=["strata/prometheus"], help="latency ratios, A/B")
    t.add_argument("--memory-ratio", nargs="*", default=[], help="peak RSS ratios, A/B")
    t.add_argument("--throughput", action="store_true", help="series/s and MB/s columns")
    t.add_argument("--fetched-ratio", nargs="*", default=[], type=lambda r: r.split("/"),
                   help="ratios of the fetched bytes, A/B")
    t.add_argument("--stores-cpu-ratio", nargs="*", default=[], type=lambda r: r.split("/"),
                   help="ratios of the stores' CPU time, A/B")
    t.set_defaults(func=table)
    a = p.parse_args()
    a.func(a)


if __name__ == "__main__":
    main()
