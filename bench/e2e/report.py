#!/usr/bin/env python3
"""The report of `make bench-e2e`: bench/e2e/report.py OUT_DIR > OUT_DIR/report.md.

Reads OUT_DIR/results.jsonl (one line per block, from bench/e2e/run.sh), OUT_DIR/raw/*.tsv
(every timed request: class<TAB>micros), rss.tsv, machine.txt and pprof/ (kube-apiserver's
CPU profiles, as `go tool pprof -top -cum` text). The percentiles of a configuration are over
all its blocks' requests together; creates/s is its requests over the sum of its blocks' timed
seconds. Added latency = (b, c or d) - a at the same percentile.
"""
import json
import math
import os
import re
import statistics
import sys
from collections import defaultdict

CFG_NAME = {"a": "a: no webhook", "b": "b: ours", "c": "c: no-op (ceiling)", "d": "d: no-op with our patch"}
CFGS = "abcd"
CPU_PROCS = ["kube-apiserver", "etcd", "webhook", "client"]
LOAD_NAME = {"pods": "pod create", "configmaps": "ConfigMap write", "configmap-creates": "ConfigMap dry-run create",
             "mix": "pod create, mix",
             "pods-nopc": "pod create, config without priorityClassName",
             "pods-settled": "pod create, pod already settled (no patch)"}
LOADS = ["pods", "configmaps", "configmap-creates", "mix", "pods-nopc", "pods-settled"]
CONFIGMAP_LOADS = ("configmaps", "configmap-creates")
TARGET_RATIO = 1.2


def pct(sorted_values, q):
    if not sorted_values:
        return math.nan
    rank = min(max(math.ceil(q * len(sorted_values)), 1), len(sorted_values))
    return sorted_values[rank - 1] / 1000.0


def fmt(x, digits=2):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:,.{digits}f}"


def added_cells(a, x, y):
    """Cells "x added / y added | ratio" at p50, p99 and p99.9, and whether p50 and p99 are within the bound."""
    cells, ok = [], True
    for q in (0.5, 0.99, 0.999):
        ours, other = x[q] - a[q], y[q] - a[q]
        ratio = ours / other if other > 0 else math.nan
        if q in (0.5, 0.99):
            # A reference that adds nothing measurable leaves only the absolute difference to judge.
            ok = ok and (ratio <= TARGET_RATIO if other > 0 else ours <= 0)
        cells.append(f"{fmt(ours)} / {fmt(other)} | {fmt(ratio)}")
    return cells, ok


def pprof_cum(path):
    """function -> cumulative CPU seconds, from `go tool pprof -top -cum` text."""
    unit = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "hrs": 3600.0}
    total, cum = None, {}
    for line in open(path):
        m = re.search(r"Showing nodes accounting for .*?, [\d.]+% of ([\d.]+)(\w+) total", line)
        if m:
            total = float(m.group(1)) * unit[m.group(2)]
        # flat and cum carry a unit unless they are 0.
        m = re.match(r"\s*[\d.]+\w*\s+[\d.]+%\s+[\d.]+%\s+([\d.]+)(\w*)\s+[\d.]+%\s+(.+)$", line)
        if m and m.group(2) in unit:
            cum[m.group(3).strip()] = float(m.group(1)) * unit[m.group(2)]
    return total, cum


def pprof_section(out):
    """kube-apiserver's profile per request of the load run.sh profiled (BENCH_PPROF_LOAD): pods
    (pprof/pods.txt) or ConfigMap dry-run creates (pprof/configmaps.txt)."""
    for what, noun in (("pods", "pod"), ("configmaps", "ConfigMap dry-run create")):
        counts_file = os.path.join(out, "pprof", f"{what}.txt")
        if os.path.exists(counts_file):
            break
    else:
        return
    counts = dict((cfg, int(n)) for cfg, n in (line.split() for line in open(counts_file) if line.strip()))
    profiles = {}
    for cfg, n in counts.items():
        top = os.path.join(out, "pprof", f"kube-apiserver-{cfg}.top.txt")
        if n and os.path.exists(top):
            total, cum = pprof_cum(top)
            if total:
                profiles[cfg] = (n, total, cum)
    if not profiles:
        return
    p = print
    p(f"## kube-apiserver's CPU profile per {noun} (at concurrency 16)\n")
    p(f"`/debug/pprof/profile` while the client makes {what} under each configuration; CPU ms per {noun} "
      "in the window (`go tool pprof -top -cum`, in pprof/).\n")
    p(f"| config | {what} in the window | kube-apiserver CPU ms per {noun} |")
    p("|---|---:|---:|")
    for cfg, (n, total, _) in sorted(profiles.items()):
        p(f"| {CFG_NAME[cfg]} | {n:,} | {fmt(1000 * total / n, 3)} |")
    p("")
    pairs = [(x, y) for x, y in (("d", "c"), ("b", "d"), ("b", "c")) if x in profiles and y in profiles]
    for x, y in pairs:
        nx, _, cx = profiles[x]
        ny, _, cy = profiles[y]
        diffs = sorted(((1000 * cx.get(f, 0) / nx - 1000 * cy.get(f, 0) / ny, f) for f in set(cx) | set(cy)), reverse=True)
        p(f"### Functions costing more per {noun} under {x} than under {c_name(y)} (cumulative ms per {noun})\n")
        p(f"| function | {x} | {y} | difference |")
        p("|---|---:|---:|---:|")
        for diff, f in diffs[:25]:
            p(f"| `{f}` | {fmt(1000 * cx.get(f, 0) / nx, 3)} | {fmt(1000 * cy.get(f, 0) / ny, 3)} | {fmt(diff, 3)} |")
        p("")


def paired_section(points, blocks):
    """Added latency paired within each block: the configurations of a block run back to back, so
    (b - a) and (c - a) of one block share the machine's state; the median over the blocks is
    robust to the slow blocks that strike one configuration or another from run to run."""
    p = print
    p("## Added latency paired within blocks: median over the blocks of each block's (x − a)\n")
    p("The percentiles above pool every block's requests, so a block in which the API server runs slow for "
      "a second or two (it strikes b, c and d alike, in different blocks from run to run) moves the pooled "
      "p99 of whichever configuration it hit. Here each block's a, b, c (and d) ran back to back; the added "
      "latency is taken per block and the median over the blocks is reported.\n")
    p("| load | conc | blocks | p50 added ms: ours / no-op / patching no-op | ratio to no-op | ratio to patching no-op | p99 added ms: ours / no-op / patching no-op | ratio to no-op | ratio to patching no-op |")
    p("|---|---:|---:|---|---:|---:|---|---:|---:|")
    for load, conc in points:
        by_block = defaultdict(dict)
        for blk, cfg, p50, p99, _ in blocks[(load, conc)]:
            by_block[blk][cfg] = (p50, p99)
        full = [b for b in by_block.values() if all(c in b for c in "abc")]
        if not full:
            continue
        cells = []
        for i in (0, 1):
            med = {x: (statistics.median(b[x][i] - b["a"][i] for b in full) if all(x in b for b in full) else None)
                   for x in "bcd"}
            ratio = lambda y: fmt(med["b"] / med[y]) if med[y] and med[y] > 0 else "–"
            cells += [" / ".join(fmt(med[x]) for x in "bcd" if med[x] is not None), ratio("c"), ratio("d")]
        p(f"| {LOAD_NAME[load]} | {conc} | {len(full)} | {' | '.join(cells)} |")
    p("")


def c_name(cfg):
    return CFG_NAME[cfg].split(": ", 1)[1] + f" ({cfg})"


def main(out):
    rows = [json.loads(line) for line in open(os.path.join(out, "results.jsonl")) if line.strip()]
    machine = open(os.path.join(out, "machine.txt")).read() if os.path.exists(os.path.join(out, "machine.txt")) else ""

    # (load, conc, cfg) -> samples per class, seconds, failures, metrics
    samples = defaultdict(lambda: defaultdict(list))
    seconds = defaultdict(float)
    failed = defaultdict(int)
    timeouts = defaultdict(int)
    calls = defaultdict(float)
    calls200 = defaultdict(float)
    dsum = defaultdict(float)
    dcount = defaultdict(float)
    exclusions = defaultdict(float)
    fail_open = defaultdict(float)
    buckets = defaultdict(lambda: defaultdict(float))
    blocks = defaultdict(list)
    ours_own = defaultdict(lambda: defaultdict(float))
    loadavgs = []
    errors = defaultdict(set)
    cpu = defaultdict(lambda: defaultdict(float))
    for r in rows:
        load = r.get("load", r["kind"])
        key = (load, r["concurrency"], r["cfg"])
        seconds[key] += r["elapsed_s"]
        failed[key] += r["failed"] + r.get("warmup_failed", 0) + r.get("delete_failed", 0)
        for e in r.get("errors", []):
            errors[key].add(e[:200])
            if "timed out" in e or "Timeout" in e:
                timeouts[key] += 1
        calls[key] += r["webhook_calls"]
        calls200[key] += r["webhook_calls_200"]
        dsum[key] += r["webhook_duration_sum_s"]
        dcount[key] += r["webhook_duration_count"]
        exclusions[key] += r["match_exclusions"]
        fail_open[key] += r["fail_open"]
        webhook = "validate-config" if r["kind"] in CONFIGMAP_LOADS else "mutate-datamover-pods"
        for series, value in r.get("metrics_delta", {}).items():
            if series.startswith("apiserver_admission_webhook_admission_duration_seconds_bucket") and webhook in series:
                le = re.search(r'le="([^"]+)"', series).group(1)
                buckets[key][le] += value
        loadavgs.append(float(r["loadavg"].split()[0]))
        for proc, ms in r.get("cpu_ms", {}).items():
            cpu[key][proc] += ms
        ours_metrics = os.path.join(out, "raw", "ours-metrics-" + r["tag"] + ".txt")
        if r["cfg"] == "b" and os.path.exists(ours_metrics):
            which = "validate" if r["kind"] in CONFIGMAP_LOADS else "mutate"
            for line in open(ours_metrics):
                for part in ("sum", "count"):
                    if line.startswith(f'node_agent_webhook_admission_duration_seconds_{part}{{webhook="{which}"}}'):
                        ours_own[key][part] += float(line.split()[-1])
                for result in ("checked", "reused"):
                    if line.startswith(f'node_agent_webhook_config_checks_total{{result="{result}"}}'):
                        ours_own[key][result] += float(line.split()[-1])
        raw = os.path.join(out, "raw", r["tag"] + ".tsv")
        block = []
        if os.path.exists(raw):
            for line in open(raw):
                cls, micros = line.split("\t")
                samples[key][cls].append(int(micros))
                block.append(int(micros))
        block.sort()
        blocks[(load, r["concurrency"])].append((r["block"], r["cfg"], pct(block, 0.5), pct(block, 0.99), r["loadavg"]))

    points = sorted({(k[0], k[1]) for k in seconds}, key=lambda p: (LOADS.index(p[0]), p[1]))
    p = print
    p("# make bench-e2e: pod creation and ConfigMap writes through the real API server\n")
    p("```text\n" + machine.strip() + "\n```\n")
    if loadavgs:
        p(f"Load average (1 min) at the start of the {len(loadavgs)} blocks: min {min(loadavgs):.2f}, "
          f"median {sorted(loadavgs)[len(loadavgs) // 2]:.2f}, max {max(loadavgs):.2f} (2 cores).\n")

    p("## Latency and throughput per configuration\n")
    p("| load | conc | config | requests | failed | per s | p50 ms | p99 ms | p99.9 ms | webhook calls | API server's webhook mean ms |")
    p("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    stats = {}
    for load, conc in points:
        for cfg in CFGS:
            key = (load, conc, cfg)
            if key not in seconds:
                continue
            every = sorted(v for cls in samples[key].values() for v in cls)
            stats[key] = {q: pct(every, q) for q in (0.5, 0.99, 0.999)}
            stats[key]["rate"] = len(every) / seconds[key] if seconds[key] else math.nan
            mean = 1000 * dsum[key] / dcount[key] if dcount[key] else None
            p(f"| {LOAD_NAME[load]} | {conc} | {CFG_NAME[cfg]} | {len(every):,} | {failed[key]} | {fmt(stats[key]['rate'], 0)} | "
              f"{fmt(stats[key][0.5])} | {fmt(stats[key][0.99])} | {fmt(stats[key][0.999])} | {calls[key]:,.0f} | {fmt(mean)} |")
    p("")

    p("## Added latency: (b) ours − (a) and (c) no-op − (a), and their ratio\n")
    p(f"Target: ours' added p50 and p99 ≤ {TARGET_RATIO} × the no-op's.\n")
    p("| load | conc | p50 ours / no-op added ms | ratio | p99 ours / no-op added ms | ratio | p99.9 ours / no-op added ms | ratio | per s a / b / c | target |")
    p("|---|---:|---|---:|---|---:|---|---:|---|---|")
    verdicts = []
    for load, conc in points:
        if not all((load, conc, c) in stats for c in "abc"):
            continue
        a, b, c = (stats[(load, conc, x)] for x in "abc")
        cells, ok = added_cells(a, b, c)
        verdict = "met" if ok else "**missed**"
        verdicts.append((load, conc, verdict))
        p(f"| {LOAD_NAME[load]} | {conc} | {' | '.join(cells)} | {fmt(a['rate'], 0)} / {fmt(b['rate'], 0)} / {fmt(c['rate'], 0)} | {verdict} |")
    p("")
    paired_section(points, blocks)

    patched = [(load, conc) for load, conc in points if all((load, conc, x) in stats for x in "abd")]
    if patched:
        p("## Against the no-op that returns our patch: (b) − (a) and (d) − (a)\n")
        p("Configuration d is the ceiling answering every pod with the patch our server gives it, so the API "
          "server does the same work after the call (decoding the patch, applying it, admitting the result again). "
          f"Same {TARGET_RATIO} × bound, for comparison; the issue's target is the one above.\n")
        p("| load | conc | p50 ours / patching no-op added ms | ratio | p99 ours / patching no-op added ms | ratio | p99.9 ours / patching no-op added ms | ratio | per s a / b / d | within 1.2 × |")
        p("|---|---:|---|---:|---|---:|---|---:|---|---|")
        for load, conc in patched:
            a, b, d = (stats[(load, conc, x)] for x in "abd")
            cells, ok = added_cells(a, b, d)
            p(f"| {LOAD_NAME[load]} | {conc} | {' | '.join(cells)} | {fmt(a['rate'], 0)} / {fmt(b['rate'], 0)} / {fmt(d['rate'], 0)} | {'yes' if ok else '**no**'} |")
        p("")

    if cpu:
        p("## CPU per request (user + system ms over the timed requests, per process)\n")
        p("From /proc/PID/stat at the instants the client reads the API server's metrics; `client` includes its "
          "background deletes. On 2 cores the sum bounds the throughput: 2,000 ms / sum = requests per second.\n")
        p("| load | conc | config | " + " | ".join(CPU_PROCS) + " | sum |")
        p("|---|---:|---|" + "---:|" * (len(CPU_PROCS) + 1))
        for load, conc in points:
            for cfg in CFGS:
                key = (load, conc, cfg)
                n = sum(len(v) for v in samples[key].values())
                if key not in cpu or not n:
                    continue
                per = [cpu[key].get(proc, math.nan) / n if proc in cpu[key] else None for proc in CPU_PROCS]
                total = sum(x for x in per if x is not None)
                p(f"| {LOAD_NAME[load]} | {conc} | {CFG_NAME[cfg]} | " + " | ".join(fmt(x, 3) for x in per) + f" | {fmt(total, 3)} |")
        p("")

    p("## Per block (drift check): p50 / p99 ms of each block, in the order run\n")
    p("| load | conc | block | order | a | b | c | d | load avg at start |")
    p("|---|---:|---:|---|---|---|---|---|---|")
    for load, conc in points:
        by_block = defaultdict(dict)
        order = defaultdict(str)
        la = defaultdict(list)
        for blk, cfg, p50, p99, loadavg in blocks[(load, conc)]:
            by_block[blk][cfg] = f"{fmt(p50)} / {fmt(p99)}"
            order[blk] += cfg
            la[blk].append(loadavg.split()[0])
        for blk in sorted(by_block):
            cells = " | ".join(by_block[blk].get(c, "–") for c in CFGS)
            p(f"| {LOAD_NAME[load]} | {conc} | {blk} | {order[blk]} | {cells} | {', '.join(la[blk])} |")
    p("")

    p("## The API server's view (its /metrics, change over the timed requests)\n")
    p("`apiserver_admission_webhook_request_total` and `apiserver_admission_webhook_admission_duration_seconds` "
      "for our webhook's name (`mutate-datamover-pods.node-agent-webhook.io` for pods, "
      "`validate-config.node-agent-webhook.io` for the ConfigMap; under c the ceiling answers under the same name). "
      "The last column is our server's `node_agent_webhook_admission_duration_seconds` (from the request's "
      "arrival to its answer, warm-up and probes included). For the ConfigMap, the last but one column is how our "
      "server came by the config checks those reviews needed (`node_agent_webhook_config_checks_total`): made, or "
      "reused from the same contents seen before (a retried write, an UPDATE's old object).\n")
    p("| load | conc | config | requests | calls | calls with 200 | calls per request | fail-open | matchCondition exclusions | mean ms | ≤ 5 ms | ≤ 25 ms | ≤ 100 ms | our checks made / reused | our server's own mean ms |")
    p("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for load, conc in points:
        for cfg in "bcd":
            key = (load, conc, cfg)
            if key not in seconds:
                continue
            n = sum(len(v) for v in samples[key].values())
            bk = buckets[key]
            total = dcount[key]

            def share(le):
                return f"{100 * bk.get(le, 0) / total:.1f} %" if total else "–"

            def own(key):
                o = ours_own.get(key)
                return fmt(1000 * o["sum"] / o["count"]) if o and o["count"] else "–"

            def checks(key):
                o = ours_own.get(key)
                return f'{o["checked"]:,.0f} / {o["reused"]:,.0f}' if o and o["checked"] + o["reused"] else "–"

            mean = 1000 * dsum[key] / total if total else None
            p(f"| {LOAD_NAME[load]} | {conc} | {CFG_NAME[cfg]} | {n:,} | {calls[key]:,.0f} | {calls200[key]:,.0f} | "
              f"{calls[key] / n if n else math.nan:.3f} | {fail_open[key]:.0f} | {exclusions[key]:,.0f} | {fmt(mean)} | "
              f"{share('0.005')} | {share('0.025')} | {share('0.1')} | {checks(key)} | {own(key)} |")
    p("")

    mix = [(conc, cfg) for (load, conc, cfg) in seconds if load == "mix"]
    if mix:
        p("## The mix: who reaches the webhook\n")
        p("Per four pods in the Velero namespace: one DataUpload pod by node-agent (`datamover`), one pod by node-agent's "
          "ServiceAccount without a data-mover label (`sa-plain`: the second matchCondition excludes it), two by another "
          "user (`other-user`, as Velero's Deployment, DaemonSet and Job controllers: the first excludes them).\n")
        p("| conc | config | class | requests | p50 ms | p99 ms | p99.9 ms |")
        p("|---:|---|---|---:|---:|---:|---:|")
        for conc in sorted({c for c, _ in mix}):
            for cfg in CFGS:
                key = ("mix", conc, cfg)
                for cls in ("datamover", "sa-plain", "other-user"):
                    v = sorted(samples[key].get(cls, []))
                    if v:
                        p(f"| {conc} | {CFG_NAME[cfg]} | {cls} | {len(v):,} | {fmt(pct(v, .5))} | {fmt(pct(v, .99))} | {fmt(pct(v, .999))} |")
            key = ("mix", conc, "b")
            if key in seconds:
                n = sum(len(v) for v in samples[key].values())
                dm = len(samples[key].get("datamover", []))
                p(f"\nUnder b at concurrency {conc}: {n:,} pods created in the Velero namespace, {dm:,} of them data-mover "
                  f"pods; the API server called our webhook {calls[key]:,.0f} times and excluded "
                  f"{exclusions[key]:,.0f} requests by a matchCondition: **{100 * (n - calls[key]) / n:.1f} % of the pods "
                  f"never reached us**.\n")

    rss = os.path.join(out, "rss.tsv")
    if os.path.exists(rss):
        vals = [line.split("\t") for line in open(rss) if line.strip()]
        if vals:
            peak = max(vals, key=lambda v: int(v[1]))
            p("## Our server's memory\n")
            p(f"Our server runs anew in every b block ({len(vals)} processes). Peak RSS (VmHWM) over all of them: "
              f"**{int(peak[1]) / 1024:.1f} MiB** (in {peak[0]}); RSS at the end of the last block: "
              f"{int(vals[-1][2]) / 1024:.1f} MiB. Target ≤ 24 MiB: {'met' if int(peak[1]) <= 24 * 1024 else '**missed**'}.\n")

    pprof_section(out)

    p("## Failures\n")
    total_failed = sum(failed.values())
    p(f"Failed requests (timed, warm-up and background deletes): {total_failed}; timed out: {sum(timeouts.values())}.\n")
    for key, errs in sorted(errors.items()):
        for e in sorted(errs):
            p(f"- {key}: {e}")
    if verdicts:
        p("\n## Targets\n")
        for load, conc, verdict in verdicts:
            p(f"- {LOAD_NAME[load]}, concurrency {conc}: added p50 and p99 ≤ {TARGET_RATIO} × the no-op's: {verdict}")
        p(f"- no failed or timed-out request: {'met' if total_failed == 0 else '**missed**'}")


if __name__ == "__main__":
    main(sys.argv[1])
