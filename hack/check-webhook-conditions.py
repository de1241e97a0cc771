#!/usr/bin/env python3
"""Evaluates the webhooks' CEL matchConditions against the requests kube-apiserver would send.

    python3 hack/check-webhook-conditions.py _out/manifests/*.yaml

For every ValidatingWebhookConfiguration / MutatingWebhookConfiguration in the rendered manifests,
every matchCondition is compiled and evaluated with the official CEL implementation (cel-cpp, via
the PyPI package cel-expr-python) over a matrix of AdmissionRequests shaped as kube-apiserver sends
them: CREATE (object, no oldObject), UPDATE (both), DELETE (oldObject only, object null) and
CONNECT, for ConfigMaps and Pods with and without labels, from node-agent's ServiceAccount and from
other users. It fails when

  * a condition does not compile, or evaluates to an error for ANY operation (not only those the
    rules select: an erroring condition rejects the request under failurePolicy Fail, and rules are
    easy to widen later);
  * a condition matches a request it should not, or misses one it should (the expected Velero
    namespace and ConfigMap name are read from the same rendered Deployment's environment).

The kube-apiserver evaluates these with cel-go and the Kubernetes CEL libraries; the expressions
here use only the CEL standard library (has, in, exists, startsWith, ==, !=, &&), which both
implementations share. The e2e test (hack/e2e.sh) exercises them on a real API server.
"""

import sys

import yaml

try:
    from cel_expr_python import cel
except ImportError:  # pragma: no cover - the caller installs it
    sys.exit("check-webhook-conditions: the PyPI package cel-expr-python is required")

DATA_MOVER_LABELS = [
    "velero.io/data-upload",
    "velero.io/data-download",
    "velero.io/pod-volume-backup",
    "velero.io/pod-volume-restore",
]
OPERATIONS = ["CREATE", "UPDATE", "DELETE", "CONNECT"]

ENV = cel.NewEnv(
    variables={
        "object": cel.Type.DYN,
        "oldObject": cel.Type.DYN,
        "request": cel.Type.DYN,
        "authorizer": cel.Type.DYN,
    }
)


def user(username, groups=("system:authenticated",), extra=None):
    return {"username": username, "uid": "0000", "groups": list(groups), "extra": extra or {}}


def request(operation, resource, obj, who, name=None, namespace="velero"):
    """An AdmissionRequest as kube-apiserver builds it, with object/oldObject per operation."""
    group, version, kind, plural = resource
    meta = obj.get("metadata", {}) if obj else {}
    name = meta.get("name", "") if name is None else name
    req = {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": plural},
        "requestKind": {"group": group, "version": version, "kind": kind},
        "requestResource": {"group": group, "version": version, "resource": plural},
        "name": name,
        "namespace": namespace,
        "operation": operation,
        "userInfo": who,
        "dryRun": False,
    }
    if operation == "CREATE":
        return req, obj, None
    if operation == "UPDATE":
        return req, obj, obj
    if operation == "DELETE":
        return req, None, obj
    return req, None, None  # CONNECT


CONFIGMAP = ("", "v1", "ConfigMap", "configmaps")
POD = ("", "v1", "Pod", "pods")


def configmap(name, labels=None):
    meta = {"name": name, "namespace": "velero"}
    if labels is not None:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"node-agent-config": "{}"}}


def pod(name, labels=None):
    meta = {"name": name, "namespace": "velero"}
    if labels is not None:
        meta["labels"] = labels
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"containers": [{"name": "c", "image": "velero/velero:v1.18.3"}]},
    }


def evaluate(condition, req, obj, old):
    try:
        program = ENV.compile(condition["expression"])
    except Exception as exc:  # noqa: BLE001 - report any compile error
        return "error", f"does not compile: {exc}"
    value = program.eval(data={"request": req, "object": obj, "oldObject": old, "authorizer": None})
    if value.type() == cel.Type.ERROR:
        return "error", str(value.plain_value())
    if value.type() != cel.Type.BOOL:
        return "error", f"evaluates to {value.type().name()}, not bool"
    return "value", bool(value.value())


def deployment_env(docs):
    for doc in docs:
        if doc.get("kind") == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                return {e["name"]: e.get("value") for e in container.get("env", [])}
    sys.exit("check-webhook-conditions: no Deployment in the manifests")


def scenarios(kind, velero_ns, configmap_name, other_configmaps=()):
    """(description, resource, object, user, explicit request name or None, expected match)."""
    node_agent = user(
        f"system:serviceaccount:{velero_ns}:velero",
        ("system:serviceaccounts", f"system:serviceaccounts:{velero_ns}", "system:authenticated"),
        {"authentication.kubernetes.io/pod-name": ["node-agent-7xkqp"]},
    )
    helm_node_agent = user(f"system:serviceaccount:{velero_ns}:velero-server")
    admin = user("kubernetes-admin", ("kubeadm:cluster-admins", "system:authenticated"))
    foreign_sa = user("system:serviceaccount:other:velero")
    if kind == "configmaps":
        return [
            ("the node-agent ConfigMap, by an admin", CONFIGMAP, configmap(configmap_name), admin, None, True),
            ("the node-agent ConfigMap with labels", CONFIGMAP, configmap(configmap_name, {"a": "b"}), admin, None, True),
            ("the node-agent ConfigMap, by node-agent", CONFIGMAP, configmap(configmap_name), node_agent, None, True),
            *[(f"Velero's {name} ConfigMap", CONFIGMAP, configmap(name), admin, None, True) for name in other_configmaps],
            ("another ConfigMap", CONFIGMAP, configmap("velero-plugins"), admin, None, False),
            ("a ConfigMap named by generateName", CONFIGMAP, configmap(""), admin, "", False),
        ]
    if kind == "pods":
        out = []
        for label in DATA_MOVER_LABELS:
            short = label.split("/")[1]
            out.append((f"{short} pod from node-agent", POD, pod("x", {label: "x"}), node_agent, None, True))
        out += [
            ("data-upload pod from the Helm chart's SA", POD,
             pod("x", {"velero.io/data-upload": "x", "velero.io/exposer-pod-group": "snapshot-exposer"}),
             helm_node_agent, None, True),
            ("pod without labels from node-agent", POD, pod("x"), node_agent, None, False),
            ("pod with an empty label map from node-agent", POD, pod("x", {}), node_agent, None, False),
            ("pod with other labels from node-agent", POD, pod("x", {"name": "node-agent"}), node_agent, None, False),
            ("data-upload pod created by an admin", POD, pod("x", {"velero.io/data-upload": "x"}), admin, None, False),
            ("data-upload pod from another namespace's SA", POD,
             pod("x", {"velero.io/data-upload": "x"}), foreign_sa, None, False),
        ]
        return out
    return []


def check_file(path):
    with open(path, encoding="utf-8") as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d]
    env = deployment_env(docs)
    velero_ns = env.get("NAW_VELERO_NAMESPACE") or "velero"
    configmap_name = env.get("NAW_CONFIGMAP") or "node-agent-config"
    # Velero's other two ConfigMaps; an empty value switches one off.
    other_configmaps = [
        name
        for name in (
            env.get("NAW_REPO_MAINTENANCE_CONFIGMAP", "velero-repo-maintenance"),
            env.get("NAW_BACKUP_REPOSITORY_CONFIGMAP", "backup-repository-config"),
        )
        if name
    ]
    failures, evaluations = [], 0
    for doc in docs:
        if doc.get("kind") not in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
            continue
        for hook in doc.get("webhooks", []):
            conditions = hook.get("matchConditions") or []
            if not conditions:
                failures.append(f"{hook['name']}: no matchConditions")
                continue
            resources = sorted({r for rule in hook.get("rules", []) for r in rule.get("resources", [])})
            ruled_ops = {op for rule in hook.get("rules", []) for op in rule.get("operations", [])}
            for kind in resources:
                cases = scenarios(kind, velero_ns, configmap_name, other_configmaps)
                if not cases:
                    failures.append(f"{hook['name']}: no scenarios for resource {kind!r}")
                for description, resource, obj, who, name, expected in cases:
                    for op in OPERATIONS:
                        req, new, old = request(op, resource, obj, who, name=name, namespace=velero_ns)
                        results = []
                        for condition in conditions:
                            evaluations += 1
                            status, value = evaluate(condition, req, new, old)
                            if status == "error":
                                failures.append(
                                    f"{hook['name']}: condition {condition['name']!r} errors on {op} of "
                                    f"{description}: {value}"
                                )
                            results.append(value is True)
                        matched = all(results)
                        # Expectations hold for the operations the rules select; for the others
                        # only "no error" is required (the API server never sends them).
                        if op in ruled_ops and matched != expected:
                            failures.append(
                                f"{hook['name']}: {op} of {description}: "
                                f"{'matched' if matched else 'skipped'}, expected "
                                f"{'match' if expected else 'skip'}"
                            )
    return failures, evaluations, velero_ns, configmap_name


def main(paths):
    if not paths:
        sys.exit("usage: check-webhook-conditions.py RENDERED.yaml...")
    failed = False
    for path in paths:
        failures, evaluations, ns, cm = check_file(path)
        if failures:
            failed = True
            for failure in failures:
                print(f"FAIL {path}: {failure}")
        else:
            print(f"ok   {path}: {evaluations} condition evaluations (namespace {ns}, ConfigMap {cm}), "
                  "no errors, expected matches only")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
