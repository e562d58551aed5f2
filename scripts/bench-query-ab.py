#!/usr/bin/env python3
"""Interleaved A/B timing of one range query against two running servers.

On a shared machine the load drifts within seconds, so two servers timed one after the other
can differ by more than the change being measured. This alternates short rounds between the
two (A then B, B then A, ...) and reports the median of each server's round medians, its mean
server CPU per query (utime + stime from /proc/<pid>/stat), and how many rounds B won.

Usage: scripts/bench-query-ab.py --a PORT:PID --b PORT:PID --start S --end E
                                 [--step 15] [--rounds 20] [--per-round 25] [--query Q]
"""
import argparse
import statistics
import time
import urllib.parse
import urllib.request


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--a", required=True, help="PORT:PID of server A")
    p.add_argument("--b", required=True, help="PORT:PID of server B")
    p.add_argument("--start", required=True)
    p.add_argument("--end", required=True)
    p.add_argument("--step", default="15")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--per-round", type=int, default=25)
    p.add_argument("--query", default="rate(bench_http_requests_total[5m])")
    args = p.parse_args()

    servers = [tuple(s.split(":")) for s in (args.a, args.b)]
    params = urllib.parse.urlencode({"query": args.query, "start": args.start, "end": args.end, "step": args.step})
    latency = [[], []]
    cpu = [[], []]
    for r in range(args.rounds):
        for i in (0, 1) if r % 2 == 0 else (1, 0):
            port, pid = servers[i]
            url = f"http://127.0.0.1:{port}/api/v1/query_range?{params}"
            before = cpu_seconds(pid)
            times = []
            for _ in range(args.per_round):
                began = time.perf_counter()
                with urllib.request.urlopen(url, timeout=300) as resp:
                    resp.read()
                times.append(time.perf_counter() - began)
            cpu[i].append((cpu_seconds(pid) - before) / args.per_round * 1000)
            latency[i].append(statistics.median(times) * 1000)
    for i, name in enumerate("AB"):
        print(f"{name}: median of round medians {statistics.median(latency[i]):.2f} ms, "
              f"CPU {statistics.mean(cpu[i]):.2f} ms per query")
    wins = sum(1 for a, b in zip(*latency) if b < a)
    ratio = statistics.median(latency[1]) / statistics.median(latency[0])
    print(f"B faster in {wins} of {args.rounds} rounds; B/A of the medians {ratio:.3f}")


if __name__ == "__main__":
    main()
