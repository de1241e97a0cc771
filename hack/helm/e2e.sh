#!/usr/bin/env bash
# The Helm chart installed into a real kube-apiserver (the e2e control plane of
# hack/controlplane/cluster.sh, started here in a state directory of its own), generated-certificate
# mode, the way a user runs it:
#
#   1. `helm install` (the Service made an ExternalName for 127.0.0.1 by hack/helm/e2e-post-render.sh,
#      as hack/e2e/overlay does: the control plane runs no kubelet, our server runs as a local
#      process with the certificate the chart generated and a token of the chart's ServiceAccount;
#      the Service port and clientConfig.service.port are moved to a free port, so this run never
#      holds 127.0.0.1:443, which another `make e2e` on the machine may be using);
#      every object of the chart exists, the Secret's CA is every webhook's caBundle;
#   2. through the helm-installed configuration: a malformed node-agent ConfigMap is denied by
#      `kubectl apply`, a valid one admitted, and the server (with the chart's RBAC) loads it;
#   3. the e2e scenarios of the validating and mutating webhooks (tests/e2e, `validating::` and
#      `mutating::`) against this installation (HELM_E2E_SCENARIOS=0 skips them). Their harness
#      serves on 127.0.0.1:443, so for them the installation is moved back to 443 (helm upgrade)
#      and they run only when 443 is free;
#   4. `helm upgrade` with a changed value keeps the CA, the serving certificate and caBundle;
#   5. `helm uninstall` removes every object of the release, cluster-scoped ones and the release's
#      own records included, and the Velero namespace stays usable (a ConfigMap is admitted).
#
#   hack/helm/e2e.sh
#
# Environment: E2E_DIR (default _out/helm-e2e/<version>: not the directory `make e2e` uses, so both
# can run one after the other without touching each other's state), HELM_E2E_KEEP=1 (leave the
# control plane running), HELM_E2E_SCENARIOS=0.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="${here%/hack/helm}"
cd "$root"

start=$(date +%s)
release=node-agent-webhook
ns=velero
chart="$root/charts/node-agent-webhook"
HELM="${HELM:-$(bash "$root/hack/helm/build.sh" | tail -n 1)}"
failures=0
fail() { echo "helm/e2e: FAIL: $*" >&2; failures=$((failures + 1)); }
step() { echo "helm/e2e: --- $*"; }

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port_free() { python3 -c 'import socket, sys; s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null; }
export E2E_WEBHOOK_PORT="${E2E_WEBHOOK_PORT:-$(free_port)}" # read by e2e-post-render.sh

cargo build --locked --bins >&2
server_bin="${CARGO_TARGET_DIR:-$root/target}/debug/node-agent-webhook"

version="$(basename "$(dirname "$(hack/controlplane/build.sh)")")"
export E2E_DIR="${E2E_DIR:-$root/_out/helm-e2e/$version}"
hack/controlplane/cluster.sh up
if [[ "${HELM_E2E_KEEP:-0}" != 1 ]]; then
	trap 'hack/controlplane/cluster.sh down' EXIT
fi
eval "$(hack/controlplane/cluster.sh env)"
export KUBECTL="$(command -v kubectl)"
echo "helm/e2e: $("$HELM" version --short), kubectl $(kubectl version -o json | jq -r '.clientVersion.gitVersion + ", server " + .serverVersion.gitVersion')"

# What a cluster with Velero has (the stand-in `make e2e` installs, hack/e2e/install.sh).
kubectl apply -f hack/e2e/velero.yaml >/dev/null
kubectl wait --for=condition=Established --timeout=60s crd/datadownloads.velero.io crd/datauploads.velero.io >/dev/null
kubectl apply -f hack/e2e/cluster-objects.yaml >/dev/null

# Every object the chart renders, as kind/name (cluster-scoped ones without namespace).
chart_objects() { # helm args...
	"$HELM" template "$release" "$chart" --namespace "$ns" "$@" |
		"${VENV:-$root/_out/venv}/bin/python" -c '
import sys, yaml
for d in yaml.safe_load_all(sys.stdin):
    if d: print(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace", "-"))'
}
resource_of() {
	case "$1" in
	ServiceAccount) echo serviceaccounts ;; Role) echo roles.rbac.authorization.k8s.io ;;
	RoleBinding) echo rolebindings.rbac.authorization.k8s.io ;; ClusterRole) echo clusterroles.rbac.authorization.k8s.io ;;
	ClusterRoleBinding) echo clusterrolebindings.rbac.authorization.k8s.io ;; Deployment) echo deployments.apps ;;
	Service) echo services ;; Secret) echo secrets ;; PodDisruptionBudget) echo poddisruptionbudgets.policy ;;
	NetworkPolicy) echo networkpolicies.networking.k8s.io ;;
	ValidatingWebhookConfiguration) echo validatingwebhookconfigurations.admissionregistration.k8s.io ;;
	MutatingWebhookConfiguration) echo mutatingwebhookconfigurations.admissionregistration.k8s.io ;;
	*) echo "helm/e2e: no resource for kind $1" >&2; return 1 ;;
	esac
}
get_object() { # kind name namespace
	local res
	res="$(resource_of "$1")"
	if [[ "$3" == - ]]; then kubectl get "$res" "$2" -o name 2>/dev/null; else kubectl -n "$3" get "$res" "$2" -o name 2>/dev/null; fi
}
ca_bundles() {
	for kind in validatingwebhookconfiguration mutatingwebhookconfiguration; do
		kubectl get "$kind" "$release" -o jsonpath='{range .webhooks[*]}{.clientConfig.caBundle}{"\n"}{end}'
	done
}
secret_field() { kubectl -n "$ns" get secret "$release-tls" -o jsonpath="{.data.${1//./\\.}}"; }

# --- 1. install ---------------------------------------------------------------------------------
step "helm install ($release in $ns, generated certificates)"
"$HELM" install "$release" "$chart" --namespace "$ns" --post-renderer "$here/e2e-post-render.sh" | tee "$E2E_DIR/helm-install.txt"
mapfile -t objects < <(chart_objects)
present=0
for line in "${objects[@]}"; do
	read -r kind name namespace <<<"$line"
	if get_object "$kind" "$name" "$namespace" >/dev/null; then present=$((present + 1)); else fail "after install: $kind $name missing"; fi
done
echo "helm/e2e: all ${#objects[@]} objects of the chart exist ($present found)"
ca="$(secret_field ca.crt)"
[[ -n "$ca" ]] || fail "Secret $release-tls has no ca.crt"
if [[ "$(ca_bundles | sort -u)" == "$ca" && "$(ca_bundles | wc -l)" == 3 ]]; then
	echo "helm/e2e: the Secret's CA is the caBundle of all 3 webhooks"
else
	fail "caBundle of the webhooks differs from the Secret's ca.crt"
fi

# Our server, as the chart's pod would run it: its certificate from the Secret, the chart's
# ServiceAccount (hence its RBAC), the Deployment's Velero namespace and ConfigMap.
serving="$E2E_DIR/serving"
mkdir -p "$serving"
(umask 077 && secret_field tls.crt | base64 -d >"$serving/serving.pem" && secret_field tls.key | base64 -d >"$serving/serving.key")
secret_field ca.crt | base64 -d >"$serving/ca.pem"
sa_kubeconfig="$E2E_DIR/kubeconfig-chart-sa"
token="$(kubectl -n "$ns" create token "$release" --duration 1h)"
server_url="$(awk '/server:/ {print $2; exit}' "$KUBECONFIG")"
cat >"$sa_kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: e2e, cluster: {server: "$server_url", certificate-authority: "$E2E_DIR/pki/ca.crt"}}]
users: [{name: chart-sa, user: {token: "$token"}}]
contexts: [{name: e2e, context: {cluster: e2e, user: chart-sa}}]
current-context: e2e
EOF
metrics_port="$(free_port)"
env_of() { kubectl -n "$ns" get deploy "$release" -o jsonpath="{.spec.template.spec.containers[0].env[?(@.name==\"$1\")].value}"; }
velero_ns="$(env_of NAW_VELERO_NAMESPACE)"
configmap_name="$(env_of NAW_CONFIGMAP)"
[[ "$velero_ns" == "$ns" && "$configmap_name" == node-agent-config ]] || fail "Deployment env: NAW_VELERO_NAMESPACE=$velero_ns NAW_CONFIGMAP=$configmap_name"
KUBECONFIG="$sa_kubeconfig" NAW_VELERO_NAMESPACE="$velero_ns" NAW_CONFIGMAP="$configmap_name" \
	RUST_LOG=info "$server_bin" serve --bind "127.0.0.1:$E2E_WEBHOOK_PORT" --metrics-bind "127.0.0.1:$metrics_port" \
	--tls-cert "$serving/serving.pem" --tls-key "$serving/serving.key" --log-format json \
	>/dev/null 2>>"$E2E_DIR/helm-e2e-server.log" &
server_pid=$!
echo "$server_pid" >>"$E2E_DIR/pids" # cluster.sh down stops it too
for _ in $(seq 1 60); do
	curl -fsS "http://127.0.0.1:$metrics_port/readyz" >/dev/null 2>&1 && break
	sleep 0.5
done
curl -fsS "http://127.0.0.1:$metrics_port/readyz" >/dev/null || fail "our server is not ready (see $E2E_DIR/helm-e2e-server.log)"

# --- 2. the helm-installed configuration denies and admits ---------------------------------------
step "kubectl apply through the helm-installed webhooks"
configmap() { # value
	kubectl -n "$ns" create configmap node-agent-config --from-literal=node-agent-config="$1" --dry-run=client -o yaml
}
bad='{"podAnotations": {"team": "platform"}, "podResources": {"cpuRequest": "1", "cpuLimit": "0m", "memoryRequest": "1Gi", "memoryLimit": "1Gi"}}'
good='{"podLabels": {"team": "platform"}, "podResources": {"cpuRequest": "500m", "cpuLimit": "2", "memoryRequest": "512Mi", "memoryLimit": "2Gi"}}'
if configmap "$bad" | kubectl apply -f - >"$E2E_DIR/denied.txt" 2>&1; then
	fail "a malformed node-agent ConfigMap was admitted"
else
	echo "\$ kubectl apply -f node-agent-config.yaml   # $bad"
	cat "$E2E_DIR/denied.txt"
	grep -q 'denied the request' "$E2E_DIR/denied.txt" || fail "the refusal is not the webhook's"
fi
if configmap "$good" | kubectl apply -f - >/dev/null; then
	echo "helm/e2e: a valid node-agent ConfigMap is admitted"
else
	fail "a valid node-agent ConfigMap was denied"
fi
generation=0
for _ in $(seq 1 40); do
	generation="$(curl -fsS "http://127.0.0.1:$metrics_port/metrics" | awk '/^node_agent_webhook_config_generation / {print $2}' || true)"
	[[ "${generation:-0}" != 0 ]] && break
	sleep 0.25
done
if [[ "${generation:-0}" != 0 ]]; then
	echo "helm/e2e: the server (the chart's ServiceAccount and RBAC) serves the ConfigMap, generation $generation"
else
	fail "the server never loaded the ConfigMap through the API (RBAC?)"
fi
kubectl -n "$ns" delete configmap node-agent-config --ignore-not-found >/dev/null
kill -TERM "$server_pid" 2>/dev/null || true
wait "$server_pid" 2>/dev/null || true

# --- 3. the e2e scenarios against this installation ----------------------------------------------
if [[ "${HELM_E2E_SCENARIOS:-1}" == 1 ]] && ! port_free 443; then
	fail "127.0.0.1:443 is taken (another make e2e?): the e2e scenarios serve there; rerun, or HELM_E2E_SCENARIOS=0"
elif [[ "${HELM_E2E_SCENARIOS:-1}" == 1 ]]; then
	step "tests/e2e validating:: and mutating:: against the helm installation"
	# Their harness serves on 127.0.0.1:443: the same installation, its Service port put back.
	E2E_WEBHOOK_PORT=443 "$HELM" upgrade "$release" "$chart" --namespace "$ns" --reuse-values \
		--post-renderer "$here/e2e-post-render.sh" >/dev/null
	# The harness serves the certificate it finds in $E2E_DIR/serving: the chart's (written above).
	if cargo test --locked --test e2e -- --test-threads=1 validating:: mutating:: 2>&1 | tee "$E2E_DIR/scenarios.txt" | grep -E '^test |test result'; then
		grep -q '^test result: ok' "$E2E_DIR/scenarios.txt" || fail "e2e scenarios against the helm installation"
	else
		fail "e2e scenarios against the helm installation"
	fi
fi

# --- 4. upgrade keeps the certificates -----------------------------------------------------------
step "helm upgrade (a changed value) keeps the CA"
before="$(secret_field ca.crt) $(secret_field tls.crt) $(secret_field tls.key)"
bundles_before="$(ca_bundles)"
"$HELM" upgrade "$release" "$chart" --namespace "$ns" --reuse-values --set logLevel=debug \
	--post-renderer "$here/e2e-post-render.sh" | tee "$E2E_DIR/helm-upgrade.txt" | grep -E 'REVISION|STATUS|Certificates'
[[ "$(env_of RUST_LOG)" == debug ]] || fail "the upgrade did not change the Deployment"
if [[ "$(secret_field ca.crt) $(secret_field tls.crt) $(secret_field tls.key)" == "$before" && "$(ca_bundles)" == "$bundles_before" ]]; then
	echo "helm/e2e: after the upgrade (revision $("$HELM" -n "$ns" history "$release" -o json | jq 'length')): same CA, same serving certificate and key, same caBundle"
else
	fail "helm upgrade changed the certificates or caBundle"
fi

# --- 5. uninstall removes everything -------------------------------------------------------------
step "helm uninstall"
"$HELM" uninstall "$release" --namespace "$ns" --wait --timeout 2m
left=0
for line in "${objects[@]}"; do
	read -r kind name namespace <<<"$line"
	if get_object "$kind" "$name" "$namespace" >/dev/null; then fail "after uninstall: $kind $name is left"; left=$((left + 1)); fi
done
by_label="$(kubectl get all,secrets,configmaps,serviceaccounts,roles,rolebindings,poddisruptionbudgets,networkpolicies -n "$ns" -l "app.kubernetes.io/instance=$release" -o name)
$(kubectl get clusterroles,clusterrolebindings,validatingwebhookconfigurations,mutatingwebhookconfigurations -l "app.kubernetes.io/instance=$release" -o name)"
by_label="$(sed '/^$/d' <<<"$by_label")"
[[ -z "$by_label" ]] || fail "after uninstall, objects with the release label are left: $by_label"
records="$(kubectl -n "$ns" get secrets -l "owner=helm,name=$release" -o name)"
[[ -z "$records" ]] || fail "helm's release records are left: $records"
[[ "$(kubectl get namespace "$ns" -o jsonpath='{.status.phase}')" == Active ]] || fail "namespace $ns is not Active"
if configmap "$bad" | kubectl apply -f - >/dev/null; then
	echo "helm/e2e: uninstalled: none of the ${#objects[@]} objects is left, no release record; $ns is Active and takes any ConfigMap again"
	kubectl -n "$ns" delete configmap node-agent-config >/dev/null
else
	fail "after uninstall, $ns still refuses the ConfigMap"
fi

if [[ $failures -ne 0 ]]; then
	echo "helm/e2e: FAILED ($failures), $(($(date +%s) - start)) s; state in ${E2E_DIR#"$root"/}" >&2
	exit 1
fi
echo "helm/e2e: OK in $(($(date +%s) - start)) s"
