#!/usr/bin/env python3
"""Helpers for bench/run.sh and bench/soak.sh (standard library only).

  report.py pct LOGFILE                 h2load --log-file -> "p50_us p99_us p999_us non2xx"
  report.py summary RESULTS.tsv         median of the runs, ratios to the ceiling, targets (markdown)
"""
import statistics
import sys
from collections import defaultdict

# Issue 6, part 3.
THROUGHPUT_RATIO = 0.85  # at 16 and 64 connections, HTTP/1.1 and h2
P99_RATIO = 1.2  # at 16 connections
RSS_LIMIT_MIB = 24


def percentile(sorted_values, q):
    """Nearest-rank percentile, as wrk and HdrHistogram report them."""
    if not sorted_values:
        return 0
    rank = max(1, int(-(-q * len(sorted_values) // 100)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def pct(path):
    values, non2xx = [], 0
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 3:
                continue
            if not parts[1].startswith("2"):
                non2xx += 1
            values.append(int(parts[2]))
    values.sort()
    print(percentile(values, 50), percentile(values, 99), percentile(values, 99.9), non2xx)


def ms(us):
    return f"{us / 1000:.2f}"


def summary(path):
    rows = defaultdict(list)  # (proto, load, conns, server) -> [row]
    with open(path) as f:
        header = f.readline().split()
        for line in f:
            row = dict(zip(header, line.split()))
            key = (row["proto"], row["load"], int(row["conns"]), row["server"])
            rows[key].append(row)

    def med(key, field):
        values = [float(r[field]) for r in rows.get(key, [])]
        return statistics.median(values) if values else 0.0

    def peak(key, field):
        values = [float(r[field]) for r in rows.get(key, [])]
        return max(values) if values else 0.0

    runs = max((len(v) for v in rows.values()), default=0)
    load_order = ["mutate", "validate", "validate-fresh"]
    points = sorted(
        {k[:3] for k in rows},
        key=lambda k: (k[0] != "h1", load_order.index(k[1]) if k[1] in load_order else len(load_order), k[1], k[2]),
    )
    out = []
    out.append(f"Median of {runs} run(s) per point; ratios are ours / ceiling, pair by pair.\n")
    out.append(
        "| proto | review | conns | ceiling rev/s | ours rev/s | ratio | ceiling p50 / p99 / p99.9 ms "
        "| ours p50 / p99 / p99.9 ms | p99 ratio | ours peak RSS MiB | errors | targets |"
    )
    out.append("|---|---|---:|---:|---:|---:|---|---|---:|---:|---:|---|")
    failed = []
    # The -fresh loads are ours, beyond the targets: judged the same way, listed apart.
    beyond = []
    worst_rss = 0.0
    for proto, load, conns in points:
        c, o = (proto, load, conns, "ceiling"), (proto, load, conns, "ours")
        c_rps, o_rps = med(c, "rps"), med(o, "rps")
        ratio = o_rps / c_rps if c_rps else 0.0
        c_p99, o_p99 = med(c, "p99_us"), med(o, "p99_us")
        p99_ratio = o_p99 / c_p99 if c_p99 else 0.0
        rss = peak(o, "rss_peak_kib") / 1024
        worst_rss = max(worst_rss, rss)
        errors = int(sum(float(r["errors"]) for r in rows.get(o, []) + rows.get(c, [])))
        verdicts = []
        misses = beyond if load.endswith("-fresh") else failed
        if conns in (16, 64):
            ok = ratio >= THROUGHPUT_RATIO
            verdicts.append(("tput " + ("ok" if ok else "MISS")))
            if not ok:
                misses.append(f"{proto} {load} c={conns}: throughput ratio {ratio:.2f} < {THROUGHPUT_RATIO}")
        if conns == 16:
            ok = p99_ratio <= P99_RATIO
            verdicts.append(("p99 " + ("ok" if ok else "MISS")))
            if not ok:
                misses.append(f"{proto} {load} c={conns}: p99 ratio {p99_ratio:.2f} > {P99_RATIO}")
        if verdicts and misses is beyond:
            verdicts.append("(not a target)")
        if errors:
            failed.append(f"{proto} {load} c={conns}: {errors} failed requests")
        out.append(
            f"| {'HTTP/1.1' if proto == 'h1' else 'h2'} | /{load} | {conns} | {c_rps:,.0f} | {o_rps:,.0f} | "
            f"{ratio:.2f} | {ms(med(c, 'p50_us'))} / {ms(c_p99)} / {ms(med(c, 'p999_us'))} | "
            f"{ms(med(o, 'p50_us'))} / {ms(o_p99)} / {ms(med(o, 'p999_us'))} | {p99_ratio:.2f} | {rss:.1f} | "
            f"{errors} | {', '.join(verdicts) or '-'} |"
        )
    ok = worst_rss <= RSS_LIMIT_MIB
    if not ok:
        failed.append(f"peak RSS {worst_rss:.1f} MiB > {RSS_LIMIT_MIB} MiB")
    out.append("")
    out.append(f"Peak RSS of node-agent-webhook under load: {worst_rss:.1f} MiB (target <= {RSS_LIMIT_MIB} MiB: "
               f"{'ok' if ok else 'MISS'}).")
    out.append("")
    if failed:
        out.append("Targets missed:")
        out.extend(f"- {f}" for f in failed)
    else:
        out.append("All targets met.")
    if beyond:
        out.append("")
        out.append("Beyond the targets (a different ConfigMap on every request, so no verdict is reused):")
        out.extend(f"- {f}" for f in beyond)
    print("\n".join(out))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "pct":
        pct(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "summary":
        summary(sys.argv[2])
    else:
        sys.exit(__doc__)
