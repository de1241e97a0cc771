#!/usr/bin/env python3
"""The helpers of bench/growth.sh:

    growth.py missing storageclasses|priorityclasses NAME   exits 1 unless the check says NAME does not exist
    growth.py seen storageclasses|priorityclasses NAME      waits until the check knows NAME; prints when
    growth.py seen nodes COUNT                              waits until the node gauge says COUNT; prints when
    growth.py report OUT                                    OUT/report.md from OUT/steps.jsonl and OUT/raw/

Whether the server has seen a class is asked of the check itself: a /validate review of a
node-agent ConfigMap that names the class (priorityClassName, or backupPVC's storageClass), which
warns `... "NAME" does not exist` until the class's watch event is folded into the state the
check reads. Environment: WEBHOOK_URL (https://127.0.0.1:443), WEBHOOK_CA, METRICS_URL.
"""
import json
import os
import ssl
import sys
import time
import urllib.request

POLL_S = 0.05
TIMEOUT_S = 300
WARNING = {"storageclasses": 'StorageClass "{}" does not exist', "priorityclasses": 'PriorityClass "{}" does not exist'}


def review(kind, name):
    """The AdmissionReview of `kubectl apply` creating node-agent's ConfigMap, naming the class."""
    config = {"priorityClassName": name} if kind == "priorityclasses" else {
        "backupPVC": {"bench-source": {"storageClass": name}}}
    configmap = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "node-agent-config", "namespace": "velero"},
                 "data": {"node-agent-config": json.dumps(config)}}
    gvk = {"group": "", "version": "v1", "kind": "ConfigMap"}
    gvr = {"group": "", "version": "v1", "resource": "configmaps"}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "3f1e2d4c-5b6a-4978-8a1b-2c3d4e5f6a7b", "kind": gvk, "resource": gvr,
        "requestKind": gvk, "requestResource": gvr, "name": "node-agent-config", "namespace": "velero",
        "operation": "CREATE", "userInfo": {"username": "kubernetes-admin", "groups": ["system:authenticated"]},
        "object": configmap, "oldObject": None, "dryRun": True,
        "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}}}


def says_missing(kind, name):
    context = ssl.create_default_context(cafile=os.environ["WEBHOOK_CA"])
    context.check_hostname = False
    body = json.dumps(review(kind, name)).encode()
    request = urllib.request.Request(os.environ.get("WEBHOOK_URL", "https://127.0.0.1:443") + "/validate",
                                     data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, context=context, timeout=10) as answer:
        response = json.load(answer)["response"]
    if not response.get("allowed"):
        sys.exit(f"growth.py: the check denied the probe config: {response}")
    return any(WARNING[kind].format(name) in w for w in response.get("warnings") or [])


def nodes_counted():
    with urllib.request.urlopen(os.environ["METRICS_URL"], timeout=10) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith("node_agent_webhook_nodes "):
                return int(float(line.split()[1]))
    return -1


def seen(kind, arg):
    done = (lambda: nodes_counted() == int(arg)) if kind == "nodes" else (lambda: not says_missing(kind, arg))
    deadline = time.time() + TIMEOUT_S
    polls = 0
    while True:
        polls += 1
        if done():
            print(json.dumps({"seen_at": time.time(), "polls": polls}))
            return
        if time.time() > deadline:
            sys.exit(f"growth.py: {kind} {arg} not seen within {TIMEOUT_S} s")
        time.sleep(POLL_S)


# --- the report ---------------------------------------------------------------------------


def parse_metrics(path):
    """Prometheus/OpenMetrics text: (name, {label: value}, value) per sample."""
    samples = []
    with open(path) as f:
        for line in f:
            if not line.strip() or line.startswith("#"):
                continue
            series, _, value = line.rstrip("\n").rpartition(" ")
            name, _, labels = series.partition("{")
            parsed = {}
            for part in labels.rstrip("}").split('",'):
                if "=" in part:
                    key, _, val = part.partition("=")
                    parsed[key.strip(",")] = val.strip('"')
            samples.append((name, parsed, float(value)))
    return samples


def histogram(path, family, match):
    """Cumulative bucket counts {le: count}, summed over the series whose labels include `match`."""
    buckets = {}
    for name, labels, value in parse_metrics(path):
        if name == family + "_bucket" and all(labels.get(k) == v for k, v in match.items()):
            le = float(labels["le"])
            buckets[le] = buckets.get(le, 0.0) + value
    return buckets


def quantile(before, after, q):
    """(interpolated, bucket upper bound) of quantile q of the observations between two scrapes,
    as Prometheus' histogram_quantile interpolates inside a bucket."""
    delta = sorted((le, after.get(le, 0.0) - before.get(le, 0.0)) for le in after)
    total = delta[-1][1] if delta else 0.0
    if total <= 0:
        return None, None
    rank, lower, below = q * total, 0.0, 0.0
    for le, count in delta:
        if count >= rank:
            if le == float("inf"):
                return lower, le
            inside = count - below
            return lower + (le - lower) * ((rank - below) / inside if inside else 1.0), le
        lower, below = le, count
    return None, None


def ms(seconds):
    if seconds is None:
        return "n/a"
    return "+Inf" if seconds == float("inf") else f"{seconds * 1000:.2f} ms"


def burst_rows(out, step):
    raw = os.path.join(out, "raw")
    rows = []
    for label, family, match, prefix in [
        ("our /mutate (node_agent_webhook_admission_duration_seconds)",
         "node_agent_webhook_admission_duration_seconds", {"webhook": "mutate"}, "ours"),
        ("the API server's call of our webhook (apiserver_admission_webhook_admission_duration_seconds)",
         "apiserver_admission_webhook_admission_duration_seconds",
         {"name": "mutate-datamover-pods.node-agent-webhook.io"}, "apiserver"),
    ]:
        before = histogram(os.path.join(raw, f"{prefix}-before-{step}.txt"), family, match)
        after = histogram(os.path.join(raw, f"{prefix}-after-{step}.txt"), family, match)
        count = max(after.values(), default=0) - max(before.values(), default=0)
        cells = []
        for q in (0.5, 0.99):
            value, bound = quantile(before, after, q)
            cells.append(f"{ms(value)} (bucket ≤ {ms(bound)})")
        rows.append(f"| {label} | {count:.0f} | {cells[0]} | {cells[1]} |")
    return rows


def step_row(s, previous_rss, versus=""):
    added = s.get("added", 0)
    # Objects the step's kubectl wrote: created, or (touch steps) changed.
    objects = added or s.get("touched", 0)
    delta = s["rss_kib"] - previous_rss if previous_rss is not None else None
    cells = [s["step"], f"{added:,}" if added else "", f"{s['total']:,}" if "total" in s else "", f"{s['rss_kib']:,} KiB",
             "" if delta is None else f"{delta:+,} KiB{versus}",
             f"{delta / added:.2f} KiB" if delta is not None and added else "", f"{s['hwm_kib']:,} KiB",
             f"{s['kubectl_s']:.2f} s" if "kubectl_s" in s else "",
             f"{s['lag_s'] * 1000:.0f} ms ({s['polls']} polls)" if "lag_s" in s else "",
             f"{s['cpu_ms']} ms" if "cpu_ms" in s else "",
             f"{s['cpu_ms'] * 1000 / objects:.0f} µs" if objects else ""]
    return "| " + " | ".join(cells) + " |"


def burst_section(out, s):
    load = s["load"]
    cpu = load.get("cpu_ms", {})
    calls = load.get("webhook_duration_count") or 0
    mean = f"{load['webhook_duration_sum_s'] / calls * 1000:.2f} ms" if calls else "n/a"
    ours = f" ({cpu['webhook'] * 1000 / load['ok']:.0f} µs of ours per pod)" if cpu.get("webhook") and load["ok"] else ""
    return [
        "", f"### {s['step']}: {load['ok']} data-mover pods by {load['concurrency']} clients ({load['failed']} failed), "
        f"{load['elapsed_s']:.1f} s, {load['all']['rate']:.0f}/s", "",
        "| Latency | Observations | p50 | p99 |", "|---|---|---|---|", *burst_rows(out, s["step"]),
        f"| pod create, end to end at the client | {load['ok']} | {load['all']['p50_ms']:.2f} ms | "
        f"{load['all']['p99_ms']:.2f} ms |", "",
        f"API server calls of our webhook: {load['webhook_calls']:.0f} ({load['webhook_calls_200']:.0f} answered 200), "
        f"mean {mean}; pods given podResources (our settings_applied): {s.get('patched', 'n/a')}; "
        "CPU over the burst: " + ", ".join(f"{k} {v:.0f} ms" for k, v in sorted(cpu.items())) + ours + "."]


def report(out):
    with open(os.path.join(out, "steps.jsonl")) as f:
        steps = [json.loads(line) for line in f if line.strip()]
    with open(os.path.join(out, "machine.txt")) as f:
        lines = [f.read().rstrip(), ""]
    lines += ["| Step | Added | In the cluster | VmRSS after | ΔRSS | ΔRSS per object | VmHWM | kubectl | "
              "Seen after kubectl returned | Server CPU | CPU per object |", "|" + "---|" * 11]
    previous = None
    for s in steps:
        # A restarted server is compared with the one that started into the bare cluster.
        restart = s["step"] == "restart"
        lines.append(step_row(s, steps[0]["rss_kib"] if restart else previous, " (vs start)" if restart else ""))
        previous = s["rss_kib"]
    for s in steps:
        if "load" in s:
            lines += burst_section(out, s)
    print("\n".join(lines))


def main():
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "missing" and len(sys.argv) == 4:
        sys.exit(0 if says_missing(sys.argv[2], sys.argv[3]) else 1)
    elif command == "seen" and len(sys.argv) == 4:
        seen(sys.argv[2], sys.argv[3])
    elif command == "report" and len(sys.argv) == 3:
        report(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
