#!/usr/bin/env python3
"""The PGO training set: writes the reviews hack/pgo/train.sh sends, and curl's request lists.

    reviews.py OUT_DIR BASE_URL METRICS_URL CA_FILE

Everything is derived from fixtures the repository keeps (testdata/pods, examples/configmaps), in
the envelope kube-apiserver sends (compact JSON, as bench/lib.sh's make_payloads writes it), so
the profile sees the byte shapes production sees. Counts are fixed, not timed: two runs train on
the same requests. Python's standard library only: rust:*-bookworm (the Dockerfile's builder)
has python3 (buildpack-deps' scm layer installs mercurial, which depends on it), not jq.

Writes OUT_DIR/config.json (the server's --config-file), OUT_DIR/body/*.json and one curl config
per phase, OUT_DIR/<phase>.curl, listed with its protocol and request count in OUT_DIR/phases.
"""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Requests per phase. The mix follows bench's loads (bench/cpu.sh, bench/profile.sh), which are
# the ones the server is tuned for, with every pod kind and the ConfigMap kinds added.
MUTATE_H2 = 4000       # /mutate over h2, which kube-apiserver's Go client negotiates when offered
MUTATE_H1 = 2000       # /mutate over h1: API servers with HTTP/2 off, and bench's h1 points
VALIDATE_SAME = 1600   # the same ConfigMap again (GitOps re-syncs, dry-run then apply): the kept check
VALIDATE_FRESH = 1600  # a new ConfigMap each time: the full check (the expensive path)
VALIDATE_OTHER = 24    # each of the rest: warnings, denials, UPDATEs, the other two kinds
PROBES = 40            # /metrics scrapes, /healthz and /readyz probes

COMPACT = {"separators": (",", ":"), "ensure_ascii": False}


def as_admitted(pod):
    """The pod after defaulting and the built-in admission plugins, as bench/lib.sh's
    make_payloads (and tests/support::as_admitted) shape it: what /mutate receives."""
    spec = pod["spec"]
    spec.update(priority=0, preemptionPolicy="PreemptLowerPriority", schedulerName="default-scheduler",
                enableServiceLinks=True)
    spec["tolerations"] = [
        {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")]
    token = "kube-api-access-x7k2p"
    spec["volumes"] = spec.get("volumes", []) + [{"name": token, "projected": {
        "defaultMode": 420, "sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]}}]
    for c in spec["containers"]:
        c.update(terminationMessagePath="/dev/termination-log", terminationMessagePolicy="File")
        c["volumeMounts"] = c.get("volumeMounts", []) + [
            {"name": token, "readOnly": True, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]
    return pod


def review(kind, resource, obj, operation="CREATE", old=None, user="system:serviceaccount:velero:velero"):
    gv = {"group": "", "version": "v1"}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "",
        "kind": {**gv, "kind": kind}, "resource": {**gv, "resource": resource},
        "requestKind": {**gv, "kind": kind}, "requestResource": {**gv, "resource": resource},
        "name": obj["metadata"]["name"], "namespace": "velero", "operation": operation,
        "userInfo": {"username": user, "groups": ["system:serviceaccounts", "system:authenticated"]},
        "object": obj, "oldObject": old, "dryRun": False,
        "options": {"kind": f"{operation.title()}Options", "apiVersion": "meta.k8s.io/v1"}}}


def configmap(name, data):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "velero"}, "data": data}


def main():
    out, base, metrics, ca = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    body = out / "body"
    body.mkdir(parents=True, exist_ok=True)
    load = lambda p: json.loads((ROOT / p).read_text())
    n = 0

    def write(name, doc):
        nonlocal n
        n += 1
        doc["request"]["uid"] = f"00000000-0000-4000-8000-{n:012d}"
        path = body / f"{name}.json"
        path.write_text(json.dumps(doc, **COMPACT))
        return path

    # The served config: the docs' complete example (every section, every pod setting), with
    # the one key Velero does not know fixed, as bench/lib.sh's config-full.json.
    full = load("examples/configmaps/03-docs-complete-example-thresholdInGB.json")
    config = json.loads(next(iter(full["data"].values())))
    config["cachePVC"] = {"residentThresholdInMB": 1024, "storageClass": config["cachePVC"]["storageClass"]}
    (out / "config.json").write_text(json.dumps(config, indent=2))

    # Every pod kind node-agent creates (DataUpload, DataDownload, PodVolumeBackup and
    # PodVolumeRestore), as Velero 1.17 and 1.18 write them: each takes its own planner branches.
    pods = [write(f"mutate-{p.parent.name}-{p.stem}", review("Pod", "pods", as_admitted(json.loads(p.read_text()))))
            for p in sorted((ROOT / "testdata/pods").glob("v*/pod-*.json"))]

    basic = load("examples/configmaps/01-valid-docs-basic.json")
    same = write("validate-same", review("ConfigMap", "configmaps", basic, user="kubernetes-admin"))
    # Fresh ConfigMaps: the same config with trailing whitespace of a different length in its
    # value each time, so no kept check answers (bench's validate-fresh load, wrk-post.lua).
    key = next(iter(basic["data"]))
    fresh = []
    for i in range(VALIDATE_FRESH):
        cm = json.loads(json.dumps(basic))
        cm["data"][key] += " " * (i % 64) + "\t" * (i // 64)
        fresh.append(write(f"validate-fresh-{i:04d}", review("ConfigMap", "configmaps", cm, user="kubernetes-admin")))
    # The rest of the validating webhook's work, a few of each so none of it is laid out as
    # never run: the other examples (warnings, ignored sections, a fatal two-key ConfigMap), a
    # kubectl apply's UPDATE (the old contents checked for the restart warning), the other two
    # ConfigMap kinds, a DELETE, and a ConfigMap the webhook does not check.
    other = [write(f"validate-{p.stem}", review("ConfigMap", "configmaps", json.loads(p.read_text()), user="kubernetes-admin"))
             for p in sorted((ROOT / "examples/configmaps").glob("0[2-6]-*.json"))]
    changed = json.loads(json.dumps(basic))
    changed["data"][key] = changed["data"][key].replace('"globalConfig": 2', '"globalConfig": 3')
    other.append(write("validate-update", review("ConfigMap", "configmaps", changed, "UPDATE", basic)))
    other.append(write("validate-delete", review("ConfigMap", "configmaps", basic, "DELETE")))
    other.append(write("validate-repo-maintenance", review("ConfigMap", "configmaps", configmap(
        "velero-repo-maintenance", {"global": json.dumps({"podResources": {"cpuRequest": "100m", "memoryRequest": "128Mi"},
                                                          "keepLatestMaintenanceJobs": 3})}))))
    other.append(write("validate-backup-repository", review("ConfigMap", "configmaps", configmap(
        "backup-repository-config", {"kopia": json.dumps({"cacheLimitMB": 2048, "fullMaintenanceInterval": "fastGC"})}))))
    other.append(write("validate-unrelated", review("ConfigMap", "configmaps", configmap("app-settings", {"a": "b"}))))

    # curl's --next resets every per-transfer option, so each request carries its own.
    def request(proto, url, path=None):
        lines = [f'url = "{url}"', "http2" if proto == "h2" else "http1.1", f'cacert = "{ca}"',
                 'output = "/dev/null"', 'write-out = "%{http_code}\\n"']
        if path:
            lines += [f'data-binary = "@{path}"', 'header = "content-type: application/json"']
        return "\n".join(lines) + "\n"

    # Requests interleave their bodies round-robin, as they arrive in a cluster.
    phases = {
        "mutate-h2": ("h2", f"{base}/mutate", [pods[i % len(pods)] for i in range(MUTATE_H2)]),
        "mutate-h1": ("h1", f"{base}/mutate", [pods[i % len(pods)] for i in range(MUTATE_H1)]),
        "validate-same-h2": ("h2", f"{base}/validate", [same] * (VALIDATE_SAME // 2)),
        "validate-same-h1": ("h1", f"{base}/validate", [same] * (VALIDATE_SAME // 2)),
        "validate-fresh-h2": ("h2", f"{base}/validate", fresh[0::2]),
        "validate-fresh-h1": ("h1", f"{base}/validate", fresh[1::2]),
        "validate-other-h2": ("h2", f"{base}/validate", other * VALIDATE_OTHER),
    }
    with open(out / "phases", "w") as listing:
        for name, (proto, url, bodies) in phases.items():
            (out / f"{name}.curl").write_text("next\n".join(request(proto, url, b) for b in bodies))
            print(name, proto, len(bodies), file=listing)
        probes = [request("h1", f"{metrics}/{p}") for _ in range(PROBES) for p in ("metrics", "healthz", "readyz")]
        (out / "probes.curl").write_text("next\n".join(probes))
        print("probes", "h1", len(probes), file=listing)
    # One of each body, for the answers train.sh checks before training.
    (out / "samples").write_text("".join(f"{p}\n" for p in pods + [same, fresh[0]] + other))


if __name__ == "__main__":
    main()
