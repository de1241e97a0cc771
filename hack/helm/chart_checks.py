#!/usr/bin/env python3
"""Checks of the Helm chart's renders, for hack/helm/test.sh (run with hack/python-tools.sh's Python).

    chart_checks.py drift KUSTOMIZE.yaml HELM.yaml [--allow-extra Kind/name]...
    chart_checks.py certs HELM.yaml generate|cert-manager|secret [--ca-pem FILE]
    chart_checks.py coexist A.yaml B.yaml

drift: the chart and the kustomize manifests must render the same objects, field by field. Both
sides are parsed, indexed by (apiVersion, kind, namespace, name) and compared recursively: every
mapping key, every list entry in order, every scalar with its type. Set aside, on both sides:

  * the labels Helm adds by convention (helm.sh/chart, app.kubernetes.io/instance,
    app.kubernetes.io/version) and app.kubernetes.io/managed-by (kustomize vs Helm), wherever
    labels or label selectors are (metadata.labels, pod template labels, matchLabels, a Service's
    selector); every other label must be equal;
  * the common labels (part-of, component) on an object kustomize renders without them (the
    cert-manager overlay's and the prometheus component's objects: the base's `labels` do not reach
    them); where kustomize has them, they must be equal;
  * the certificate material: webhooks[].clientConfig.caBundle and a Secret's data.

Objects only the chart renders must be named with --allow-extra (e.g. the generated Secret);
an object only kustomize renders is always a failure.

certs: the certificate wiring of one render: in generate mode the Secret's CA is every webhook's
caBundle, and its serving certificate is signed by that CA for <service>.<namespace>.svc (checked
with openssl); in cert-manager mode no caBundle, and both configurations carry
cert-manager.io/inject-ca-from naming the serving Certificate, whose dnsNames name the Service; in
secret mode every caBundle is the given PEM and the Deployment mounts the named Secret.

coexist: two renders of the same release in two namespaces (one install per Velero namespace)
share no object (kind, namespace, name), and each one's webhooks select and call its own
namespace, its mutating webhook takes pods from its own namespace's ServiceAccounts only, and its
bindings bind its own ServiceAccount.
"""

import base64
import os
import subprocess
import sys
import tempfile

import yaml

HELM_ONLY_LABELS = {
    "helm.sh/chart",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
}
# What manifests/base's `labels` transformer puts on the base's objects, but not on those of the
# cert-manager overlay or the prometheus component; the chart puts them on every object.
COMMON_LABELS = {"app.kubernetes.io/part-of", "app.kubernetes.io/component"}
WEBHOOK_KINDS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")


def load(path):
    with open(path, encoding="utf-8") as fh:
        return [d for d in yaml.safe_load_all(fh) if d]


def key(doc):
    meta = doc.get("metadata", {})
    return (doc.get("apiVersion"), doc.get("kind"), meta.get("namespace", ""), meta.get("name"))


def show(k):
    api, kind, ns, name = k
    return f"{kind}/{ns + '/' if ns else ''}{name} ({api})"


def is_label_map(path, doc):
    """True when the mapping at `path` holds labels or a label selector."""
    if not path:
        return False
    last = path[-1]
    if last in ("labels", "matchLabels"):
        return True
    # A Service's spec.selector is a plain label map.
    return doc.get("kind") == "Service" and path == ["spec", "selector"]


def normalize(node, doc, path=()):
    path = list(path)
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if is_label_map(path, doc) and k in HELM_ONLY_LABELS:
                continue
            if k == "caBundle" and doc.get("kind") in WEBHOOK_KINDS and path[-1:] == ["clientConfig"]:
                continue
            if doc.get("kind") == "Secret" and path == [] and k in ("data", "stringData"):
                continue
            out[k] = normalize(v, doc, path + [k])
        return out
    if isinstance(node, list):
        return [normalize(v, doc, path + [str(i)]) for i, v in enumerate(node)]
    return node


def dig(node, path):
    for p in path:
        if not isinstance(node, dict) or p not in node:
            return None
        node = node[p]
    return node


def compare(a, b, path, diffs):
    """Records every difference between a (kustomize) and b (helm); returns the leaves compared."""
    where = ".".join(path) or "(root)"
    if isinstance(a, dict) and isinstance(b, dict):
        n = 0
        for k in sorted(set(a) | set(b), key=str):
            if k not in b:
                diffs.append(f"{where}.{k}: only in kustomize: {a[k]!r}")
            elif k not in a:
                diffs.append(f"{where}.{k}: only in the chart: {b[k]!r}")
            else:
                n += compare(a[k], b[k], path + [str(k)], diffs)
        return n
    if isinstance(a, list) and isinstance(b, list):
        n = 0
        if len(a) != len(b):
            diffs.append(f"{where}: {len(a)} entries in kustomize, {len(b)} in the chart")
        for i, (x, y) in enumerate(zip(a, b)):
            n += compare(x, y, path + [str(i)], diffs)
        return n
    if type(a) is not type(b) or a != b:
        diffs.append(f"{where}: kustomize {a!r}, chart {b!r}")
    return 1


def drift(args):
    kustomize_path, helm_path, *rest = args
    allowed = set()
    while rest:
        flag, value, *rest = rest
        if flag != "--allow-extra":
            sys.exit(f"drift: unknown option {flag}")
        allowed.add(value)
    kust = {key(d): d for d in load(kustomize_path)}
    helm = {key(d): d for d in load(helm_path)}
    failures, leaves, extras = [], 0, []
    for k in sorted(set(kust) | set(helm), key=lambda k: tuple(map(str, k))):
        if k not in helm:
            failures.append(f"{show(k)}: rendered by kustomize, missing from the chart")
            continue
        if k not in kust:
            if f"{k[1]}/{k[3]}" in allowed:
                extras.append(f"{k[1]}/{k[3]}")
            else:
                failures.append(f"{show(k)}: rendered by the chart only")
            continue
        diffs = []
        a, b = normalize(kust[k], kust[k]), normalize(helm[k], helm[k])
        for labels_path in (["metadata"], ["spec", "template", "metadata"]):
            la, lb = dig(a, labels_path + ["labels"]), dig(b, labels_path + ["labels"])
            if isinstance(lb, dict):
                for label in COMMON_LABELS - set(la or {}):
                    lb.pop(label, None)
        leaves += compare(a, b, [], diffs)
        failures += [f"{show(k)}: {d}" for d in diffs]
    label = f"{os.path.basename(kustomize_path)} vs {os.path.basename(helm_path)}"
    if failures:
        for f in failures:
            print(f"DRIFT {label}: {f}")
        print(f"drift: {label}: {len(failures)} difference(s)")
        return 1
    extra = f"; chart-only, allowed: {', '.join(extras)}" if extras else ""
    print(f"drift: {label}: {len(kust)} objects, {leaves} fields equal{extra}")
    return 0


def openssl(*argv, stdin=None):
    return subprocess.run(["openssl", *argv], input=stdin, capture_output=True, text=True, check=False)


def certs(args):
    path, mode, *rest = args
    ca_pem = None
    if rest[:1] == ["--ca-pem"]:
        with open(rest[1], encoding="utf-8") as fh:
            ca_pem = fh.read()
    docs = load(path)
    hooks = [h for d in docs if d["kind"] in WEBHOOK_KINDS for h in d["webhooks"]]
    configs = [d for d in docs if d["kind"] in WEBHOOK_KINDS]
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    service = next(d for d in docs if d["kind"] == "Service")
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
    mounted = next(v["secret"]["secretName"] for v in deploy["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls")
    failures = []
    for h in hooks:
        svc = h["clientConfig"]["service"]
        if (svc["name"], svc["namespace"], svc["port"]) != (service["metadata"]["name"], service["metadata"]["namespace"], 443):
            failures.append(f"{h['name']}: clientConfig.service {svc} is not the chart's Service on 443")
    if mode == "generate":
        secrets = [d for d in docs if d["kind"] == "Secret"]
        if len(secrets) != 1 or secrets[0]["metadata"]["name"] != mounted:
            failures.append(f"expected one Secret, the mounted {mounted}; got {[s['metadata']['name'] for s in secrets]}")
        else:
            data = secrets[0]["data"]
            if secrets[0].get("type") != "kubernetes.io/tls" or set(data) != {"tls.crt", "tls.key", "ca.crt"}:
                failures.append(f"Secret {mounted}: type {secrets[0].get('type')}, keys {sorted(data)}")
            for h in hooks:
                if h["clientConfig"].get("caBundle") != data.get("ca.crt"):
                    failures.append(f"{h['name']}: caBundle is not the Secret's ca.crt")
            with tempfile.TemporaryDirectory() as tmp:
                for name in ("ca.crt", "tls.crt", "tls.key"):
                    with open(os.path.join(tmp, name), "wb") as fh:
                        fh.write(base64.b64decode(data[name]))
                ca, crt, key_ = (os.path.join(tmp, n) for n in ("ca.crt", "tls.crt", "tls.key"))
                r = openssl("verify", "-CAfile", ca, "-verify_hostname", host, "-purpose", "sslserver", crt)
                if r.returncode != 0:
                    failures.append(f"serving certificate does not verify for {host}: {r.stdout.strip()} {r.stderr.strip()}")
                r = openssl("x509", "-in", crt, "-noout", "-ext", "subjectAltName")
                if f"DNS:{host}.cluster.local" not in r.stdout:
                    failures.append(f"serving certificate lacks DNS:{host}.cluster.local: {r.stdout.strip()}")
                pub_crt = openssl("x509", "-in", crt, "-noout", "-pubkey").stdout
                pub_key = openssl("pkey", "-in", key_, "-pubout").stdout
                if not pub_crt or pub_crt != pub_key:
                    failures.append("tls.key is not the key of tls.crt")
    elif mode == "cert-manager":
        certs_ = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Certificate"}
        for h in hooks:
            if "caBundle" in h["clientConfig"]:
                failures.append(f"{h['name']}: caBundle set, but cainjector owns it")
        for c in configs:
            ref = (c["metadata"].get("annotations") or {}).get("cert-manager.io/inject-ca-from", "")
            ns, _, name = ref.partition("/")
            cert = certs_.get(name)
            if ns != service["metadata"]["namespace"] or cert is None:
                failures.append(f"{c['kind']}: inject-ca-from {ref!r} names no Certificate of the release")
            elif cert["spec"]["secretName"] != mounted or cert["spec"]["dnsNames"] != [host, f"{host}.cluster.local"]:
                failures.append(f"Certificate {name}: secretName {cert['spec']['secretName']}, dnsNames {cert['spec']['dnsNames']}")
        if any(d["kind"] == "Secret" for d in docs):
            failures.append("a Secret is rendered; cert-manager writes it")
    elif mode == "secret":
        want = base64.b64encode(ca_pem.strip().encode()).decode()
        for h in hooks:
            if h["clientConfig"].get("caBundle") != want:
                failures.append(f"{h['name']}: caBundle is not base64 of the given CA PEM")
        if any(d["kind"] in ("Secret", "Certificate") for d in docs):
            failures.append("the chart renders a Secret or Certificate in secret mode")
    else:
        sys.exit(f"certs: unknown mode {mode}")
    if failures:
        for f in failures:
            print(f"FAIL certs {os.path.basename(path)} ({mode}): {f}")
        return 1
    print(f"certs: {os.path.basename(path)}: {mode} mode wired for {len(hooks)} webhooks, Secret {mounted}, host {host}")
    return 0


def coexist(args):
    paths = args
    renders = [load(p) for p in paths]
    failures = []
    keys = [{key(d) for d in docs} for docs in renders]
    shared = keys[0] & keys[1]
    failures += [f"both installs own {show(k)}" for k in sorted(shared, key=lambda k: tuple(map(str, k)))]
    for path, docs in zip(paths, renders):
        ns = next(d["metadata"]["namespace"] for d in docs if d["kind"] == "Deployment")
        where = os.path.basename(path)
        for d in docs:
            if d["kind"] in WEBHOOK_KINDS:
                for h in d["webhooks"]:
                    values = [v for e in h["namespaceSelector"]["matchExpressions"] for v in e["values"]]
                    if values != [ns] or h["clientConfig"]["service"]["namespace"] != ns:
                        failures.append(f"{where}: {h['name']}: selects {values}, calls {h['clientConfig']['service']}")
                    for c in h.get("matchConditions", []):
                        if "serviceaccount:" in c["expression"] and f"'system:serviceaccount:{ns}:'" not in c["expression"]:
                            failures.append(f"{where}: {h['name']}: {c['expression']}")
            if d["kind"] in ("RoleBinding", "ClusterRoleBinding"):
                if {s["namespace"] for s in d["subjects"]} != {ns}:
                    failures.append(f"{where}: {d['kind']} {d['metadata']['name']} binds {d['subjects']}")
    if failures:
        for f in failures:
            print(f"FAIL coexist: {f}")
        return 1
    cluster = sorted(f"{k[1]}/{k[3]}" for docs in renders for d in docs if not (k := key(d))[2])
    print(f"coexist: {' and '.join(map(os.path.basename, paths))}: no object in common; cluster-scoped: {', '.join(cluster)}")
    return 0


def main(argv):
    if len(argv) < 3 or argv[0] not in ("drift", "certs", "coexist"):
        sys.exit(__doc__)
    return {"drift": drift, "certs": certs, "coexist": coexist}[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
