#!/usr/bin/env python3
"""The real node-agent as the judge of node-agent ConfigMaps (make judge; hack/velero/judge.sh).

  judge.py generate                  write the generated cases into testdata/judge/cases/
  judge.py run VERSION [CASE...]     start node-agent VERSION once per case, record what it did
                                     and our verdict into testdata/judge/results/VERSION.json
                                     (needs KUBECONFIG, E2E_DIR, VELERO_BIN; hack/velero/judge.sh)
  judge.py report                    write docs/velero-judge.md from the results

A case is a full v1/ConfigMap (what `kubectl create cm --from-file` makes, or worse): the six
examples in examples/configmaps and the mutations of valid configs generated here. For each case
node-agent is started with `--node-agent-configmap node-agent-config` and the case stored under
that name; the run ends when node-agent exits (start-up failed) or logs "Controllers starting..."
(every config section has been read by then). When it starts and the config holds settings that
go into data-mover pods, or restorePVC, a DataDownload is created and the judge records whether
node-agent's pod was created or the DataDownload failed (what an operator `in`, a negative
quantity or, on 1.18.3, a restorePVC.secretNames entry it cannot copy does).
"""

import copy
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "testdata/judge/cases"
RESULTS = ROOT / "testdata/judge/results"
EXAMPLES = ROOT / "examples/configmaps"
DOC = ROOT / "docs/velero-judge.md"
NS, CM, NODE, POD = "velero", "node-agent-config", "e2e-node-1", "node-agent-n1x2z"

# A config every version starts with cleanly; each mutation changes one thing in it.
BASE = {
    "loadConcurrency": {
        "globalConfig": 2,
        "perNodeConfig": [{"nodeSelector": {"matchLabels": {"kubernetes.io/hostname": "e2e-node-1"}}, "number": 3}],
        "prepareQueueLength": 10,
    },
    "loadAffinity": [
        {
            "nodeSelector": {
                "matchLabels": {"node-role.example.com/backup": "true"},
                "matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["zone-a"]}],
            }
        }
    ],
    "podResources": {"cpuRequest": "100m", "cpuLimit": "1", "memoryRequest": "128Mi", "memoryLimit": "1Gi"},
    "priorityClassName": "e2e-backup",
    "backupPVC": {"e2e-fast": {"storageClass": "e2e-fast", "readOnly": True, "spcNoRelabeling": True,
                               "annotations": {"example.com/clone": "fast"}}},
    "restorePVC": {"ignoreDelayBinding": False},
    "privilegedFsBackup": False,
    "cachePVC": {"storageClass": "e2e-cache", "residentThresholdInMB": 1024},
    "podLabels": {"team": "platform"},
    "podAnnotations": {"iam.amazonaws.com/role": "velero-backup-role"},
}
# Settings node-agent copies into data-mover pods, and restorePVC, which shapes how it exposes a
# restore (1.18.3 copies its secretNames and configMapNames first): a started node-agent is probed
# with a DataDownload.
PROBED_SETTINGS = ("loadaffinity", "podresources", "priorityclassname", "podlabels", "podannotations", "restorepvc")
# A Secret and a ConfigMap in the probe's namespace (hack/velero/cluster-objects.yaml).
KMS_SECRET, KMS_CONFIGMAP = "e2e-kms-token", "e2e-kms-config"
# The label node-agent 1.18.3 puts on what it copies, valued with the owner's UID
# (BackupPVCSecretLabel, pkg/exposer/csi_snapshot.go at v1.18.3).
COPIED_LABEL = "velero.io/backup-pvc-secret"


def configmap(data=None, binary=None, description=""):
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": CM, "namespace": NS, "annotations": {"judge.node-agent-webhook.io/case": description}}}
    if data is not None:
        cm["data"] = data
    if binary is not None:
        cm["binaryData"] = binary
    return cm


def one_key(value, description):
    return configmap({"node-agent-config.json": value}, description=description)


# --- generation -------------------------------------------------------------------------------

def leaves(value, path=()):
    """(path, value) of every node, depth first."""
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from leaves(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from leaves(v, path + (i,))


def with_value(path, value, base=BASE):
    doc = copy.deepcopy(base)
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return doc


def without(path, base=BASE):
    doc = copy.deepcopy(base)
    node = doc
    for k in path[:-1]:
        node = node[k]
    del node[path[-1]]
    return doc


def renamed(path, new, base=BASE):
    doc = copy.deepcopy(base)
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[new] = node.pop(path[-1])
    return doc


def dotted(path):
    out = ""
    for k in path:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else k)
    return out


def generate():
    cases = []

    def add(slug, description, cm):
        cases.append((slug, cm if isinstance(cm, dict) and cm.get("kind") == "ConfigMap" else one_key(cm, description), description))

    def add_doc(slug, description, doc):
        add(slug, description, one_key(json.dumps(doc, indent=2), description))

    add_doc("base", "the base config itself: every section, valid", BASE)
    add_doc("empty-object", "{}", {})

    # Wrong types, leaf by leaf, as Go's encoding/json decodes them.
    wrong = {
        int: [("string", "2"), ("float", 2.5), ("exponent", "1e3#raw"), ("bool", True), ("overflow", "99999999999999999999#raw"), ("null", None)],
        bool: [("string", "true"), ("number", 1), ("null", None)],
        str: [("number", 1), ("bool", True), ("object", {}), ("null", None)],
        dict: [("array", []), ("string", "x"), ("null", None)],
        list: [("object", {}), ("string", "x"), ("null", None)],
    }
    for path, value in leaves(BASE):
        if not path:
            continue
        kind = type(value)
        for name, bad in wrong.get(kind, []):
            slug = f"type-{dotted(path)}-{name}".replace("[", "-").replace("]", "").replace(".", "-").replace("/", "_")
            if isinstance(bad, str) and bad.endswith("#raw"):
                marker = "__RAW__"
                text = json.dumps(with_value(path, marker), indent=2).replace(f'"{marker}"', bad[:-4])
                add(slug, f"{dotted(path)}: {kind.__name__} given as {bad[:-4]}", text)
            else:
                add_doc(slug, f"{dotted(path)}: {kind.__name__} given as {json.dumps(bad)}", with_value(path, bad))

    # Unknown keys: typos and keys from the docs that the code lacks.
    typos = [
        (("podAnnotations",), "podAnotations"), (("podLabels",), "podLabel"), (("loadAffinity",), "loadAfinity"),
        (("priorityClassName",), "priorityClass"), (("podResources",), "podResource"),
        (("podResources", "cpuRequest"), "cpuRequests"), (("podResources", "memoryLimit"), "memLimit"),
        (("cachePVC", "residentThresholdInMB"), "thresholdInGB"), (("loadConcurrency", "globalConfig"), "global"),
        (("loadConcurrency", "perNodeConfig"), "perNodeConfigs"), (("backupPVC", "e2e-fast", "readOnly"), "readonlyy"),
        (("restorePVC", "ignoreDelayBinding"), "ignoreDelayedBinding"), (("loadAffinity", 0, "nodeSelector"), "selector"),
        (("privilegedFsBackup",), "privilegedFSBackups"), (("cachePVC", "storageClass"), "storageClassName"),
    ]
    for path, new in typos:
        add_doc(f"unknown-{dotted(path).replace('[', '-').replace(']', '').replace('.', '-')}-{new}", f"{dotted(path)} misspelled {new}", renamed(path, new))
    moved = copy.deepcopy(BASE)
    moved["prepareQueueLength"] = moved["loadConcurrency"].pop("prepareQueueLength")
    add_doc("unknown-top-level-prepareQueueLength", "prepareQueueLength at the top level, as the docs' sample has it", moved)

    # Keys that differ only in case: Go matches them case-insensitively.
    cases_changed = [
        (("podLabels",), "PodLabels"), (("priorityClassName",), "priorityclassname"), (("loadAffinity",), "LOADAFFINITY"),
        (("podResources", "cpuRequest"), "CPURequest"), (("loadConcurrency", "globalConfig"), "GlobalConfig"),
        (("cachePVC", "residentThresholdInMB"), "residentthresholdinmb"), (("backupPVC", "e2e-fast", "readOnly"), "ReadOnly"),
        (("loadAffinity", 0, "nodeSelector"), "NodeSelector"),
    ]
    for path, new in cases_changed:
        add_doc(f"case-{new}", f"{dotted(path)} written {new}", renamed(path, new))

    # Quantities.
    for field, value, why in [
        ("cpuRequest", "1.5.0", "not a quantity"), ("cpuRequest", "-1", "negative"), ("memoryLimit", "-1Gi", "negative"),
        ("cpuRequest", "10 m", "a space"), ("memoryRequest", "1e40", "an exponent past 32 bits"), ("cpuRequest", "", "empty"),
        ("memoryLimit", "1GB", "a unit apimachinery lacks"), ("memoryLimit", "1gi", "a lower-case unit"),
        ("cpuLimit", "0m", "'0m' is a real zero, below the request"), ("cpuLimit", "0", "the literal '0': no limit"),
        ("memoryRequest", "2Gi", "request above the limit"), ("cpuRequest", "0.1", "a decimal core"), ("cpuLimit", "1e3", "an exponent"),
        ("memoryLimit", "+1Gi", "a plus sign"), ("cpuRequest", ".5", "a leading dot"),
    ]:
        add_doc(f"quantity-{field}-{re.sub(r'[^a-zA-Z0-9]', lambda m: {'-': 'minus', '+': 'plus', '.': 'dot', ' ': 'space'}.get(m.group(), '_'), value) or 'empty'}", f"podResources.{field} {json.dumps(value)}: {why}",
                with_value(("podResources", field), value))
    for field in ["cpuRequest", "cpuLimit", "memoryRequest", "memoryLimit"]:
        add_doc(f"quantity-missing-{field}", f"podResources without {field}", without(("podResources", field)))
    add_doc("quantity-ephemeral-bad", "podResources.ephemeralStorageRequest 'abc'", with_value(("podResources", "ephemeralStorageRequest"), "abc"))
    add_doc("quantity-ephemeral-valid", "podResources with a valid ephemeral-storage pair",
            with_value(("podResources", "ephemeralStorageLimit"), "2Gi", with_value(("podResources", "ephemeralStorageRequest"), "1Gi")))

    # Selectors.
    expr = ("loadAffinity", 0, "nodeSelector", "matchExpressions", 0)
    for slug, value, why in [
        ("operator-in", {"key": "topology.kubernetes.io/zone", "operator": "in", "values": ["zone-a"]}, "operator 'in' (lower case)"),
        ("operator-equals", {"key": "topology.kubernetes.io/zone", "operator": "Equals", "values": ["zone-a"]}, "operator 'Equals'"),
        ("exists-with-values", {"key": "topology.kubernetes.io/zone", "operator": "Exists", "values": ["zone-a"]}, "Exists with values"),
        ("in-without-values", {"key": "topology.kubernetes.io/zone", "operator": "In"}, "In without values"),
        ("notin-empty-values", {"key": "topology.kubernetes.io/zone", "operator": "NotIn", "values": []}, "NotIn with an empty list"),
        ("gt-integer", {"key": "example.com/rank", "operator": "Gt", "values": ["2"]}, "Gt with one integer"),
        ("gt-not-integer", {"key": "example.com/rank", "operator": "Gt", "values": ["two"]}, "Gt with a non-integer"),
        ("lt-two-values", {"key": "example.com/rank", "operator": "Lt", "values": ["1", "2"]}, "Lt with two values"),
        ("bad-key", {"key": "a/b/c", "operator": "Exists"}, "an invalid key"),
        ("empty-key", {"key": "", "operator": "Exists"}, "an empty key"),
    ]:
        add_doc(f"selector-{slug}", f"loadAffinity[0] expression: {why}", with_value(expr, value))
    ml = ("loadAffinity", 0, "nodeSelector", "matchLabels")
    add_doc("selector-matchlabels-bad-value", "loadAffinity[0] matchLabels value with a space", with_value(ml, {"node-role.example.com/backup": "yes please"}))
    add_doc("selector-matchlabels-bad-key", "loadAffinity[0] matchLabels key 'a/b/c'", with_value(ml, {"a/b/c": "x"}))
    add_doc("selector-empty-nodeselector", "loadAffinity[0] with an empty nodeSelector", with_value(("loadAffinity", 0, "nodeSelector"), {}))
    add_doc("selector-no-nodeselector", "loadAffinity[0] without nodeSelector", with_value(("loadAffinity", 0), {}))
    two = copy.deepcopy(BASE)
    two["loadAffinity"].append({"nodeSelector": {"matchLabels": {"disk": "ssd"}}})
    add_doc("selector-second-global-entry", "a second loadAffinity entry without storageClass", two)
    sc = copy.deepcopy(BASE)
    sc["loadAffinity"] += [{"nodeSelector": {"matchLabels": {"disk": "ssd"}}, "storageClass": "e2e-fast"},
                           {"nodeSelector": {"matchLabels": {"disk": "nvme"}}, "storageClass": "e2e-fast"}]
    add_doc("selector-duplicate-storageclass", "two loadAffinity entries for one storageClass", sc)
    bad_sc = copy.deepcopy(BASE)
    bad_sc["loadAffinity"].append({"nodeSelector": {"matchLabels": {"disk": "ssd"}}, "storageClass": "Not_A_Name"})
    add_doc("selector-storageclass-bad-name", "a loadAffinity storageClass that is not a valid name", bad_sc)
    pn = ("loadConcurrency", "perNodeConfig", 0, "nodeSelector")
    add_doc("concurrency-selector-operator-in", "perNodeConfig selector with operator 'in'",
            with_value(pn, {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "in", "values": ["e2e-node-1"]}]}))
    add_doc("concurrency-selector-exists-values", "perNodeConfig selector: Exists with values",
            with_value(pn, {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "Exists", "values": ["x"]}]}))
    add_doc("concurrency-selector-bad-label", "perNodeConfig matchLabels value with a space", with_value(pn, {"matchLabels": {"kubernetes.io/hostname": "a b"}}))

    # Values that parse but mean nothing, or something else.
    for slug, path, value, why in [
        ("globalconfig-zero", ("loadConcurrency", "globalConfig"), 0, "globalConfig 0"),
        ("globalconfig-negative", ("loadConcurrency", "globalConfig"), -1, "globalConfig -1"),
        ("pernode-number-zero", ("loadConcurrency", "perNodeConfig", 0, "number"), 0, "a per-node number 0"),
        ("preparequeue-negative", ("loadConcurrency", "prepareQueueLength"), -1, "prepareQueueLength -1"),
        ("priorityclass-missing", ("priorityClassName",), "no-such-class", "a PriorityClass that does not exist"),
        ("priorityclass-bad-name", ("priorityClassName",), "Bad_Name", "a priorityClassName that is not a DNS name"),
        ("cachepvc-no-storageclass", ("cachePVC",), {"residentThresholdInMB": 10}, "cachePVC without storageClass"),
        ("cachepvc-missing-storageclass", ("cachePVC", "storageClass"), "no-such-class", "cachePVC storageClass that does not exist"),
        ("cachepvc-threshold-negative", ("cachePVC", "residentThresholdInMB"), -1, "residentThresholdInMB -1"),
        ("podlabels-velero-key", ("podLabels",), {"velero.io/data-upload": "x"}, "a velero.io/ key in podLabels"),
        ("podlabels-bad-key", ("podLabels",), {"a/b/c": "x"}, "an invalid podLabels key"),
        ("podlabels-bad-value", ("podLabels",), {"team": "a b"}, "an invalid podLabels value"),
        ("podlabels-long-value", ("podLabels",), {"team": "x" * 64}, "a podLabels value of 64 characters"),
        ("podannotations-bad-key", ("podAnnotations",), {"a/b/c": "x"}, "an invalid podAnnotations key"),
        ("spcnorelabeling-without-readonly", ("backupPVC", "e2e-fast", "readOnly"), False, "spcNoRelabeling without readOnly"),
        ("backuppvc-annotation-bool", ("backupPVC", "e2e-fast", "annotations"), {"example.com/clone": True}, "a bool backupPVC annotation (the docs' sample)"),
        ("podlabels-empty", ("podLabels",), {}, "empty podLabels"),
        ("loadaffinity-empty", ("loadAffinity",), [], "empty loadAffinity list"),
    ]:
        add_doc(f"value-{slug}", why, with_value(path, value))

    # Duplicate keys: Go keeps the last one.
    text = json.dumps(BASE, indent=2)
    add(f"duplicate-top-level", "podLabels given twice", text.replace('"podLabels": {', '"podLabels": {"team": "first"},\n  "podLabels": {', 1))
    add(f"duplicate-nested", "cpuRequest given twice", text.replace('"cpuRequest": "100m"', '"cpuRequest": "100m", "cpuRequest": "200m"', 1))
    add(f"duplicate-top-level-different-case", "podLabels and PodLabels", text.replace('"podLabels": {', '"PodLabels": {"team": "first"},\n  "podLabels": {', 1))

    # Structure of the ConfigMap and of the value.
    valid = json.dumps(BASE, indent=2)
    add("structure-two-data-keys", "two data keys, both valid", configmap({"a.json": valid, "b.json": valid}, description="two data keys, both valid"))
    add("structure-two-data-keys-one-bad", "two data keys, one YAML", configmap({"a.json": valid, "b.yaml": "podLabels:\n  team: x\n"}, description="two data keys, one YAML"))
    add("structure-empty-data", "data: {}", configmap({}, description="data: {}"))
    add("structure-no-data", "no data at all", configmap(description="no data at all"))
    add("structure-binarydata-only", "the config in binaryData", configmap(binary={"node-agent-config.json": "e30="}, description="the config in binaryData"))
    add("structure-binarydata-beside-data", "binaryData beside data", configmap({"node-agent-config.json": valid}, binary={"extra": "e30="}, description="binaryData beside data"))
    for slug, value, why in [
        ("yaml", "podLabels:\n  team: platform\n", "the config in YAML"),
        ("null", "null", "the value null"),
        ("empty", "", "an empty value"),
        ("whitespace", "  \n", "only whitespace"),
        ("bom", "\ufeff" + valid, "a UTF-8 BOM before the object"),
        ("array", "[]", "a top-level array"),
        ("string", '"podLabels"', "a top-level string"),
        ("number", "1", "a top-level number"),
        ("trailing-comma", valid[:-2] + ",\n}", "a trailing comma"),
        ("trailing-garbage", valid + "x", "text after the object"),
        ("two-objects", valid + "\n{}", "two objects"),
        ("comment", "// node-agent config\n" + valid, "a // comment"),
        ("nan", '{"loadConcurrency": {"globalConfig": NaN}}', "NaN"),
        ("single-quotes", "{'podLabels': {'team': 'x'}}", "single quotes"),
    ]:
        add(f"structure-{slug}", why, one_key(value, why))
    add("structure-other-key-name", "the data key named config", configmap({"config": valid}, description="the data key named config"))
    cases_missing = configmap(description="MISSING: no ConfigMap at all")
    cases_missing["metadata"]["annotations"]["judge.node-agent-webhook.io/missing"] = "true"
    add("structure-configmap-missing", "no ConfigMap at all", cases_missing)

    # Velero 1.18.3's keys: Secrets and ConfigMaps node-agent copies from the workload's namespace
    # into its own before it creates the backup PVC of that class or the restore PVC
    # (pkg/types/node_agent.go, pkg/exposer/csi_snapshot.go and generic_restore.go at v1.18.3).
    # Appended, so that the cases before keep their numbers (and other versions' recordings).
    # The names that exist are in hack/velero/cluster-objects.yaml (namespace e2e-app).
    fast = ("backupPVC", "e2e-fast")
    for slug, path, value, why in [
        ("backuppvc-secretnames-valid", fast, {**BASE["backupPVC"]["e2e-fast"], "secretNames": [KMS_SECRET], "configMapNames": [KMS_CONFIGMAP]},
         "backupPVC.e2e-fast.secretNames and configMapNames naming a Secret and a ConfigMap that exist"),
        ("backuppvc-secretnames-empty-name", fast + ("secretNames",), [""], "backupPVC.e2e-fast.secretNames with an empty name"),
        ("restorepvc-secretnames-valid", ("restorePVC",), {**BASE["restorePVC"], "secretNames": [KMS_SECRET], "configMapNames": [KMS_CONFIGMAP]},
         "restorePVC.secretNames and configMapNames naming a Secret and a ConfigMap that exist"),
        ("restorepvc-secretnames-empty-name", ("restorePVC", "secretNames"), [""], "restorePVC.secretNames with an empty name"),
        ("restorepvc-secretnames-duplicate", ("restorePVC", "secretNames"), [KMS_SECRET, KMS_SECRET], "restorePVC.secretNames naming one Secret twice"),
        ("restorepvc-configmapnames-empty-name", ("restorePVC", "configMapNames"), [""], "restorePVC.configMapNames with an empty name"),
    ]:
        add_doc(f"value-{slug}", why, with_value(path, value))

    CASES.mkdir(parents=True, exist_ok=True)
    for old in CASES.glob("*.json"):
        old.unlink()
    seen = set()
    for i, (slug, cm, description) in enumerate(cases):
        assert slug not in seen, slug
        seen.add(slug)
        cm.setdefault("metadata", {}).setdefault("annotations", {})["judge.node-agent-webhook.io/case"] = description
        (CASES / f"{i:03d}-{slug}.json").write_text(json.dumps(cm, indent=2, ensure_ascii=False) + "\n")
    print(f"{len(cases)} cases in {CASES.relative_to(ROOT)}")


# --- running node-agent ------------------------------------------------------------------------

def kubectl(*args, stdin=None, check=True):
    run = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True)
    if check and run.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {run.stderr}")
    return run


def all_cases():
    out = [(p.stem, p) for p in sorted(EXAMPLES.glob("*.json"))]
    out += [(p.stem, p) for p in sorted(CASES.glob("*.json"))]
    return out


def token_kubeconfig(e2e_dir):
    token = kubectl("create", "token", "velero", "-n", NS, "--bound-object-kind", "Pod", "--bound-object-name", POD,
                    "--duration", "6h").stdout.strip()
    admin = (Path(e2e_dir) / "kubeconfig").read_text()
    server = re.search(r"server: (\S+)", admin).group(1)
    path = Path(e2e_dir) / "kubeconfig-judge"
    path.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster: {{server: {server}, certificate-authority: {Path(e2e_dir) / 'pki/ca.crt'}}}
users:
- name: node-agent
  user: {{token: {token}}}
contexts:
- name: e2e
  context: {{cluster: e2e, user: node-agent}}
current-context: e2e
""")
    return path


def port_free(port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def store_case(cm):
    kubectl("delete", "configmap", CM, "-n", NS, "--ignore-not-found", "--wait=true")
    if cm["metadata"].get("annotations", {}).get("judge.node-agent-webhook.io/missing"):
        return
    body = copy.deepcopy(cm)
    body["metadata"]["name"], body["metadata"]["namespace"] = CM, NS
    kubectl("create", "-f", "-", stdin=json.dumps(body))


# node-agent's own warnings about its config, and the section each one drops.
IGNORES = [
    (r"Failed to get node agent configs from configMap .* ignore it", "*"),
    (r"Pod resource requirements are invalid, ignore", "podResources"),
    (r"Ignore cache config", "cachePVC"),
    (r"Priority class not found in cluster", "priorityClassName"),
    (r"Global number .* is invalid", "loadConcurrency.globalConfig"),
    (r"Failed to parse rule with label selector", "loadConcurrency.perNodeConfig"),
    (r"is with an invalid number", "loadConcurrency.perNodeConfig"),
    (r"Failed to start VGDP counter", "loadConcurrency.prepareQueueLength"),
]
NOISE = [r"Pod volumes host path .* doesn't exist", r"Priority class .* not found in cluster\. Pod creation may fail"]


def parse_log(text):
    ignored, notes = [], []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            # The fatal error, as CheckError prints it (pkg/cmd/errors.go): "An error occurred: "
            # up to 1.18.2, "velero: " from 1.18.3.
            if line.startswith(("An error occurred:", "velero: ")):
                notes.append(line.strip())
            continue
        if entry.get("level") not in ("warning", "error", "fatal"):
            continue
        message = entry.get("msg", "") + (f": {entry['error']}" if entry.get("error") else "")
        if any(re.search(n, message) for n in NOISE):
            continue
        for pattern, section in IGNORES:
            if re.search(pattern, message):
                if section not in ignored:
                    ignored.append(section)
                break
        notes.append(f"{entry.get('level')}: {message}"[:400])
    return ignored, notes


def dd_workers_started(text):
    for line in text.splitlines():
        if '"Starting workers"' in line and '"datadownload"' in line:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("msg") == "Starting workers" and entry.get("controller") == "datadownload":
                return True
    return False


def probe_datadownload(name):
    """A DataDownload for the started node-agent: was its pod created, or the DD failed?"""
    target = f"{name}-target"
    kubectl("create", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": target, "namespace": "e2e-app"},
         "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}},
        {"apiVersion": "velero.io/v2alpha1", "kind": "DataDownload", "metadata": {"name": name, "namespace": NS},
         "spec": {"backupStorageLocation": "default", "operationTimeout": "10m", "snapshotID": "judge", "sourceNamespace": "e2e-app",
                  "targetVolume": {"namespace": "e2e-app", "pvc": target, "pv": ""}}}]}))
    result = "no pod within 20 s"
    deadline = time.time() + 20
    try:
        while time.time() < deadline:
            # The pod and the DataDownload in one call: pods/NAME and datadownloads/NAME.
            got = kubectl("get", f"pod/{name}", f"datadownloads.velero.io/{name}", "-n", NS, "-o", "json", "--ignore-not-found", check=False)
            parsed = json.loads(got.stdout) if got.stdout.strip().startswith("{") else {}
            items = parsed.get("items", [parsed] if parsed.get("kind") else [])
            if any(i["kind"] == "Pod" for i in items):
                result = "pod created"
                break
            dd = next((i for i in items if i["kind"] == "DataDownload"), {})
            if dd.get("status", {}).get("phase") == "Failed":
                result = "DataDownload failed: " + dd["status"].get("message", "")[:300]
                break
            time.sleep(0.1)
    except Exception:
        clean_up_probe(name)
        raise
    return result


def clean_up_probe(name):
    """After node-agent is stopped (it would put its finalizer back): leftover DataDownloads in
    Accepted count against loadConcurrency.prepareQueueLength for the next cases, and the PVCs
    keep the API server's pvc-protection finalizer (no controller-manager here removes it)."""
    unfinalize = '{"metadata":{"finalizers":null}}'
    kubectl("delete", f"datadownloads.velero.io/{name}", f"pod/{name}", f"pvc/{name}", "-n", NS, "--wait=false", "--ignore-not-found", check=False)
    # What 1.18.3 copied for it: left behind, the next probe's copy would collide with it.
    kubectl("delete", "secrets,configmaps", "-n", NS, "-l", COPIED_LABEL, "--ignore-not-found", check=False)
    kubectl("delete", "pvc", f"{name}-target", "-n", "e2e-app", "--wait=false", "--ignore-not-found", check=False)
    kubectl("patch", "datadownloads.velero.io", name, "-n", NS, "--type=merge", "-p", unfinalize, check=False)
    kubectl("patch", "pvc", name, "-n", NS, "--type=merge", "-p", unfinalize, check=False)
    kubectl("patch", "pvc", f"{name}-target", "-n", "e2e-app", "--type=merge", "-p", unfinalize, check=False)


def run_node_agent(velero, kubeconfig, e2e_dir, case_id, probe):
    deadline = time.time() + 30
    while not port_free(8080):
        if time.time() > deadline:
            sys.exit("judge: port 8080 is taken: controller-runtime inside node-agent binds :8080; stop whatever listens there")
        time.sleep(0.5)
    home = Path(e2e_dir) / "judge-home"
    home.mkdir(exist_ok=True)
    log_path = Path(e2e_dir) / "judge-logs" / f"{case_id}.log"
    log_path.parent.mkdir(exist_ok=True)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    metrics = s.getsockname()[1]
    s.close()
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env.update(HOME=str(home), NODE_NAME=NODE)
    with open(log_path, "w") as log:
        child = subprocess.Popen([velero, "node-agent", "server", "-n", NS, "--kubeconfig", str(kubeconfig),
                                  "--node-agent-configmap", CM, "--metrics-address", f"127.0.0.1:{metrics}", "--log-format", "json"],
                                 stdout=log, stderr=subprocess.STDOUT, env=env, cwd=home, stdin=subprocess.DEVNULL)
    with open(Path(e2e_dir) / "pids", "a") as pids:
        pids.write(f"{child.pid}\n")
    outcome, exit_code, pod = "timeout", None, None
    deadline = time.time() + 60
    while time.time() < deadline:
        code = child.poll()
        text = log_path.read_text(errors="replace")
        if code is not None:
            outcome, exit_code = ("exit", code)
            break
        if "Controllers starting..." in text:
            outcome = "started"
            break
        time.sleep(0.05)
    if outcome == "started" and probe:
        while time.time() < deadline and not dd_workers_started(log_path.read_text(errors="replace")):
            if child.poll() is not None:
                break
            time.sleep(0.05)
        probe_name = f"judge-{case_id[:3].strip('-').lower()}-{int(time.time() * 1000) % 100000}"
        pod = probe_datadownload(probe_name)
    if child.poll() is None:
        # Its verdict is in; a graceful stop of a manager that is still starting can take 10 s.
        child.kill()
        child.wait()
    if pod is not None:
        clean_up_probe(probe_name)
    ignored, notes = parse_log(log_path.read_text(errors="replace"))
    return {"node_agent": outcome, "exit_code": exit_code, "ignored": ignored, "log": notes, "probe": pod}


def our_verdict(binary, path, version):
    run = subprocess.run([binary, "check", "--output", "json", "--velero-version", version.lstrip("v"), str(path)],
                         capture_output=True, text=True)
    try:
        findings = json.loads(run.stdout or "[]")
    except ValueError:
        findings = [{"severity": "error", "path": "", "message": f"check printed no JSON (exit {run.returncode}): {run.stderr.strip()}"}]
    if run.returncode == 2 and not findings:
        findings = [{"severity": "error", "path": "", "message": run.stderr.strip()}]

    def short(p):
        return re.sub(r"^data\[[^\]]*\]\.?", "", p or "")
    return {
        "exit": run.returncode,
        "errors": [f"{short(f.get('path'))}: {f.get('message', '')}" for f in findings if f.get("severity") == "error"],
        "warnings": [f"{short(f.get('path'))}: {f.get('message', '')}" for f in findings if f.get("severity") == "warning"],
    }


def config_of(cm):
    data = cm.get("data") or {}
    if len(data) != 1:
        return None
    try:
        value = json.loads(next(iter(data.values())))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def needs_probe(case_id, config):
    """A DataDownload for configs with probed settings: each example, and each generated case
    whose probed settings differ from the base config's (the base itself is probed once)."""
    lower = {k.lower(): v for k, v in config.items()}
    if not any(k in PROBED_SETTINGS for k in lower):
        return False
    if case_id[:3].isdigit() and not case_id.startswith(("000-", "0000")):
        base = {k.lower(): v for k, v in BASE.items()}
        keys = [k for k in config if k.lower() in PROBED_SETTINGS]
        # A key written in another case (PodLabels) is the same setting to Go: probe it too.
        return any(lower.get(s) != base.get(s) for s in PROBED_SETTINGS) or any(k not in BASE for k in keys)
    return True


def run(version, only):
    velero = os.environ["VELERO_BIN"]
    e2e_dir = os.environ["E2E_DIR"]
    # What judge.sh's `cargo build` made: in CARGO_TARGET_DIR when that is set.
    target = ROOT / os.environ.get("CARGO_TARGET_DIR", "target")
    binary = os.environ.get("NAW_BIN", str(target / "debug/node-agent-webhook"))
    kubeconfig = token_kubeconfig(e2e_dir)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_path = RESULTS / f"{version}.json"
    results = json.loads(out_path.read_text()) if out_path.exists() and only else {}
    start = time.time()
    for case_id, path in all_cases():
        if only and not any(o in case_id for o in only):
            continue
        cm = json.loads(path.read_text())
        probe = needs_probe(case_id, config_of(cm) or {})
        store_case(cm)
        t0 = time.time()
        result = run_node_agent(velero, kubeconfig, e2e_dir, case_id, probe)
        result["seconds"] = round(time.time() - t0, 1)
        result["ours"] = our_verdict(binary, path, version)
        result["description"] = cm["metadata"].get("annotations", {}).get("judge.node-agent-webhook.io/case") or \
            cm["metadata"].get("annotations", {}).get("example.com/expect", "")
        result["class"] = classify(result, version)
        results[case_id] = result
        print(f"{version} {case_id}: node-agent {result['node_agent']}{' ignored ' + ','.join(result['ignored']) if result['ignored'] else ''}"
              f"{' / ' + result['probe'] if result['probe'] else ''}; ours {len(result['ours']['errors'])} errors -> {result['class']}", flush=True)
    kubectl("delete", "configmap", CM, "-n", NS, "--ignore-not-found")
    out_path.write_text(json.dumps(dict(sorted(results.items())), indent=1, ensure_ascii=False) + "\n")
    print(f"judge {version}: {len(results)} cases in {time.time() - start:.0f} s -> {out_path.relative_to(ROOT)}")


# --- comparing -----------------------------------------------------------------------------------

def covered(section, ours):
    """Is node-agent's ignored section one of our findings (error or warning)?"""
    findings = ours["errors"] + ours["warnings"]
    if section == "*":
        return bool(ours["errors"])
    section = section.lower()
    for finding in findings:
        path = finding.split(": ", 1)[0].lower()
        # The same place, a place inside it, or the section that holds it (a finding on
        # `loadConcurrency` that says `globalConfig is not set`).
        if path == section or path.startswith((section + ".", section + "[")) or section.startswith(path + "."):
            return True
    # An error beside it in the same section: `loadConcurrency.global` (unknown, did you mean
    # globalConfig) is why node-agent finds no globalConfig.
    parent = section.rsplit(".", 1)[0] if "." in section else None
    return bool(parent) and any(e.split(": ", 1)[0].lower().startswith(parent + ".") for e in ours["errors"])


# Sections node-agent drops when a class they name does not exist: offline `check` cannot know,
# the validating webhook watches those classes and warns.
CLUSTER_LOOKUPS = {"priorityClassName": "PriorityClass", "cachePVC": "StorageClass"}


def classify(r, version):
    ours_error = bool(r["ours"]["errors"])
    if r["node_agent"] == "timeout":
        return "TIMEOUT"
    if r["node_agent"] == "exit":
        return "agree: both fatal" if ours_error else "DISAGREE: we admit, node-agent exits"
    uncovered = [s for s in r["ignored"] if not covered(s, r["ours"])]
    if uncovered and all(s in CLUSTER_LOOKUPS for s in uncovered):
        # The class does not exist in the judge's cluster; `check` runs offline, the validating
        # webhook watches the classes and warns (tests/validate_webhook.rs, tests/e2e).
        kinds = "/".join(CLUSTER_LOOKUPS[s] for s in uncovered)
        return f"agree (cluster lookup): node-agent drops a missing {kinds}, the webhook warns"
    if uncovered:
        return f"DISAGREE: node-agent ignores {','.join(uncovered)}, we say nothing"
    failed = (r.get("probe") or "").startswith("DataDownload failed")
    stuck = (r.get("probe") or "").startswith("no pod")
    if failed and not ours_error:
        return "DISAGREE: we admit, node-agent's DataDownload fails"
    if stuck and not ours_error:
        return "DISAGREE: we admit, node-agent makes no pod for its DataDownload"
    if stuck:
        panic = any("Observed a panic" in n for n in r["log"])
        return "stricter on purpose: node-agent starts, its DataDownload never gets a pod" + (" (reconciler panic)" if panic else "") + "; we reject"
    if r["ignored"]:
        return "agree: node-agent ignores a section, we flag it" + (" (error)" if ours_error else " (warning)")
    if failed:
        return "stricter on purpose: node-agent starts, its DataDownload fails; we reject"
    if ours_error:
        return "stricter on purpose: node-agent starts and drops or keeps it silently; we reject"
    return "agree: both accept"


def report():
    rows, versions = {}, []
    for path in sorted(RESULTS.glob("v*.json"), key=lambda p: [int(x) for x in p.stem[1:].split(".")]):
        versions.append(path.stem)
        for case_id, r in json.loads(path.read_text()).items():
            r["class"] = classify(r, path.stem)
            rows.setdefault(case_id, {})[path.stem] = r
    classes = sorted({r["class"] for case in rows.values() for r in case.values()})
    lines = [
        "# node-agent as the judge of configs",
        "",
        "Generated by `make judge` (hack/velero/judge.sh, hack/velero/judge.py) from",
        "`testdata/judge/results/<version>.json`: each of the six example ConfigMaps",
        "(`examples/configmaps`) and each generated case (`testdata/judge/cases`, mutations of one valid",
        "config: wrong types, unknown and case-changed keys, bad quantities and selectors, duplicate keys,",
        "several data keys, YAML, `null`, ...) was stored as `velero/node-agent-config` and the real",
        "node-agent of that version (built from Velero's Go module) started with it against a real",
        "kube-apiserver. The run ends when node-agent exits or logs `Controllers starting...`; when it",
        "starts and the config has settings that go into data-mover pods, or `restorePVC` (1.18.3 copies",
        "its `secretNames` and `configMapNames` before the restore pod), a DataDownload is created and",
        "the judge records whether node-agent's pod was created or the DataDownload failed. Our verdict is",
        "`node-agent-webhook check --output json --velero-version <version>`.",
        "",
        "Rules: **no ConfigMap we admit without an error may make node-agent exit** (or fail its",
        "DataDownload), and **every section node-agent ignores with a warning must be a finding of ours**.",
        "Rows marked DISAGREE break one of them; each is explained below.",
        "",
        "## Agreement table",
        "",
        "| Outcome | " + " | ".join(versions) + " |",
        "|---|" + "---:|" * len(versions),
    ]
    for c in classes:
        counts = [sum(1 for case in rows.values() if case.get(v, {}).get("class") == c) for v in versions]
        lines.append(f"| {c} | " + " | ".join(str(n) for n in counts) + " |")
    lines.append("| **cases** | " + " | ".join(str(sum(1 for case in rows.values() if v in case)) for v in versions) + " |")
    lines += [
        "",
        "What the outcomes mean:",
        "",
        "- *agree: both fatal*: node-agent exits at start-up (on every node: CrashLoopBackOff) and we",
        "  reject the ConfigMap.",
        "- *agree: node-agent ignores a section, we flag it*: node-agent starts but its own warning says",
        "  it drops a section (`Pod resource requirements are invalid, ignore`, `Ignore cache config`,",
        "  `Global number 0 is invalid`, a skipped per-node rule; on 1.16 `Failed to get node agent",
        "  configs ..., ignore it`, the whole config), and that section is one of our findings.",
        "- *agree (cluster lookup)*: node-agent drops a PriorityClass, or the cachePVC section of a",
        "  StorageClass, that does not exist; `check` runs offline, the validating webhook watches both",
        "  kinds and warns.",
        "- *stricter on purpose: node-agent starts, its DataDownload fails*: node-agent copies the",
        "  setting into the pod and the API server rejects the pod (operator `in`, `Exists` with values,",
        "  a negative quantity, an invalid label): the restore fails at once; we reject at apply time.",
        "- *stricter on purpose: node-agent starts, its DataDownload never gets a pod (reconciler",
        "  panic)*: `loadAffinity: [null]` passes start-up, then the DataDownload reconciler",
        "  dereferences the nil entry on every try (`Observed a panic ... nil pointer dereference`) and",
        "  the restore hangs until its prepare timeout.",
        "- *stricter on purpose: node-agent starts and drops or keeps it silently*: what Go's",
        "  `encoding/json` drops without a word (unknown keys, the docs' `thresholdInGB`, top-level",
        "  `prepareQueueLength`), a second data key 1.16/1.17 pick at random, YAML 1.16 ignores, and",
        "  settings that start fine but break later (a second global `loadAffinity` entry node-agent never",
        "  uses, an empty `nodeSelector`, a `velero.io/` pod label that breaks how Velero finds its pod,",
        "  settings in DataUpload pods only, which the DataDownload probe cannot show).",
        "- *agree: both accept*: node-agent starts cleanly (its DataDownload pod created) and we find no",
        "  error (warnings, such as a setting this version ignores, may be there).",
        "",
        "## By kind of case",
        "",
        "| Kind | " + " | ".join(versions) + " |",
        "|---|" + "---|" * len(versions),
    ]
    def kind(case_id):
        parts = case_id.split("-")
        return "example" if len(parts[0]) == 2 else parts[1]
    for k in sorted({kind(c) for c in rows}):
        cells = []
        for v in versions:
            counts = {}
            for case_id, case in rows.items():
                if kind(case_id) == k and v in case:
                    short = case[v]["class"].split(":")[0]
                    counts[short] = counts.get(short, 0) + 1
            cells.append(", ".join(f"{n} {c}" for c, n in sorted(counts.items())))
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines += ["", "## Disagreements and timeouts", ""]
    any_dis = False
    for case_id, case in sorted(rows.items()):
        bad = {v: r for v, r in case.items() if r["class"].startswith(("DISAGREE", "TIMEOUT"))}
        if not bad:
            continue
        any_dis = True
        first = next(iter(bad.values()))
        lines.append(f"### `{case_id}`: {first['description']}")
        lines.append("")
        for v, r in bad.items():
            lines.append(f"- **{v}**: {r['class']}. node-agent: {r['node_agent']}"
                         f"{' (exit ' + str(r['exit_code']) + ')' if r['exit_code'] is not None else ''}"
                         f"{'; ' + r['probe'] if r.get('probe') else ''}; log: "
                         + ("; ".join(f"`{n}`" for n in r["log"][:3]) or "nothing") + "; ours: "
                         + ("; ".join(f"`{e}`" for e in (r["ours"]["errors"] or r["ours"]["warnings"])[:3]) or "no finding"))
        note = EXPLANATIONS.get(case_id.split("-", 1)[-1]) or EXPLANATIONS.get(case_id)
        lines += ["", f"Why: {note}" if note else "Why: not explained yet.", ""]
    if not any_dis:
        lines.append("None.")
    lines += ["", "## Every case", "",
              "| Case | " + " | ".join(versions) + " | Ours (" + versions[-1] + ") |", "|---|" + "---|" * (len(versions) + 1)]
    for case_id, case in sorted(rows.items()):
        cells = []
        for v in versions:
            r = case.get(v)
            if not r:
                cells.append("")
                continue
            cell = r["node_agent"] + (f" ({r['exit_code']})" if r["exit_code"] else "")
            if r["ignored"]:
                cell += " ignores " + ",".join(r["ignored"])
            if r.get("probe"):
                cell += "; DD failed" if r["probe"].startswith("DataDownload failed") else ("; pod" if r["probe"] == "pod created" else "; " + r["probe"])
            if r["class"].startswith(("DISAGREE", "TIMEOUT")):
                cell = f"**{cell}**"
            cells.append(cell)
        last = case.get(versions[-1]) or next(iter(case.values()))
        ours = f"{len(last['ours']['errors'])} error(s), {len(last['ours']['warnings'])} warning(s)"
        lines.append(f"| `{case_id}` | " + " | ".join(cells) + f" | {ours} |")
    DOC.write_text("\n".join(lines) + "\n")
    print(f"wrote {DOC.relative_to(ROOT)}")


# Why each disagreement is what it is, by case slug (the part after the number). Empty: the one
# the judge found (a cachePVC of a missing StorageClass) is fixed, see CLUSTER_LOOKUPS.
EXPLANATIONS = {}


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("generate", "run", "report"):
        sys.exit(__doc__)
    if sys.argv[1] == "generate":
        generate()
    elif sys.argv[1] == "run":
        run(sys.argv[2], sys.argv[3:])
    else:
        report()
