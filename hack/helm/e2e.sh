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
#      1b. the same release name installed into a second Velero namespace, velero-b (its Service
#      on another port): both releases' objects exist, the cluster-scoped ones named
#      <fullname>.<namespace>, each webhook selecting and calling its own namespace;
#   2. through each helm-installed configuration, with a server per release: a malformed
#      node-agent ConfigMap is denied by `kubectl apply` naming that namespace's ConfigMap, a
#      valid one admitted, each server (with its release's RBAC) loads its own and answered its own
#      namespace's reviews only; 2b. `helm uninstall` of the velero-b release leaves every object
#      of the velero one, whose webhook still denies;
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
# control plane running), HELM_E2E_SCENARIOS=0, VENV and PYTHON (as for hack/python-tools.sh).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="${here%/hack/helm}"
cd "$root"

start=$(date +%s)
release=node-agent-webhook
ns=velero
chart="$root/charts/node-agent-webhook"
HELM="${HELM:-$(bash "$root/hack/helm/build.sh" | tail -n 1)}"
python="$(bash "$root/hack/python-tools.sh")/bin/python"
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

# Every object the chart renders in a namespace, as kind/name/namespace ("-" when cluster-scoped).
chart_objects() { # namespace, helm args...
	local namespace="$1"
	shift
	"$HELM" template "$release" "$chart" --namespace "$namespace" "$@" |
		"$python" -c '
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
missing_objects() { # namespace: the release's objects the API server does not have
	local kind name namespace
	while read -r kind name namespace; do
		get_object "$kind" "$name" "$namespace" >/dev/null || echo "$kind $name $namespace"
	done < <(chart_objects "$1")
}
# The cluster-scoped objects carry the namespace: <fullname>.<namespace>.
ca_bundles() { # [namespace]
	for kind in validatingwebhookconfiguration mutatingwebhookconfiguration; do
		kubectl get "$kind" "$release.${1:-$ns}" -o jsonpath='{range .webhooks[*]}{.clientConfig.caBundle}{"\n"}{end}'
	done
}
secret_field() { kubectl -n "${2:-$ns}" get secret "$release-tls" -o jsonpath="{.data.${1//./\\.}}"; }

# --- 1. install ---------------------------------------------------------------------------------
step "helm install ($release in $ns, generated certificates)"
"$HELM" install "$release" "$chart" --namespace "$ns" --post-renderer "$here/e2e-post-render.sh" | tee "$E2E_DIR/helm-install.txt"
mapfile -t objects < <(chart_objects "$ns")
missing="$(missing_objects "$ns")"
[[ -z "$missing" ]] || fail "after install, missing: $missing"
echo "helm/e2e: all ${#objects[@]} objects of the chart exist"
ca="$(secret_field ca.crt)"
[[ -n "$ca" ]] || fail "Secret $release-tls has no ca.crt"
if [[ "$(ca_bundles | sort -u)" == "$ca" && "$(ca_bundles | wc -l)" == 3 ]]; then
	echo "helm/e2e: the Secret's CA is the caBundle of all 3 webhooks"
else
	fail "caBundle of the webhooks differs from the Secret's ca.crt"
fi

# --- 1b. the same release name in a second Velero namespace ---------------------------------------
# One install per Velero namespace: the cluster-scoped objects are named <fullname>.<namespace>, so
# the second `helm install` owns none of the first's. Its Service points at another port.
ns_b=velero-b
step "helm install ($release in $ns_b too: one release per Velero namespace)"
kubectl create namespace "$ns_b" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
declare -A webhook_port=(["$ns"]="$E2E_WEBHOOK_PORT" ["$ns_b"]="$(free_port)")
E2E_WEBHOOK_PORT="${webhook_port[$ns_b]}" "$HELM" install "$release" "$chart" --namespace "$ns_b" \
	--post-renderer "$here/e2e-post-render.sh" >"$E2E_DIR/helm-install-$ns_b.txt" || fail "helm install in $ns_b"
for n in "$ns" "$ns_b"; do
	missing="$(missing_objects "$n")"
	[[ -z "$missing" ]] || fail "with both releases installed, $n's are missing: $missing"
	selected="$(kubectl get validatingwebhookconfiguration,mutatingwebhookconfiguration "$release.$n" \
		-o jsonpath='{range .items[*].webhooks[*]}{.namespaceSelector.matchExpressions[0].values[0]}/{.clientConfig.service.namespace}{"\n"}{end}' | sort -u)"
	[[ "$selected" == "$n/$n" ]] || fail "the webhooks of $release.$n select and call: $selected"
	[[ "$(ca_bundles "$n" | sort -u)" == "$(secret_field ca.crt "$n")" ]] || fail "$n: caBundle is not $n's CA"
done
cluster_scoped="$(kubectl get validatingwebhookconfiguration,mutatingwebhookconfiguration,clusterrole,clusterrolebinding \
	-l "app.kubernetes.io/instance=$release" -o name | wc -l)"
[[ "$cluster_scoped" == 8 ]] || fail "$cluster_scoped cluster-scoped objects of the two releases, not 8"
echo "helm/e2e: $release in $ns and in $ns_b both installed: $cluster_scoped cluster-scoped objects ($release.$ns, $release.$ns_b), each webhook selecting and calling its own namespace"

# Our server for each release, as the chart's pod would run it: its certificate from the Secret,
# the chart's ServiceAccount (hence its RBAC), the Deployment's Velero namespace and ConfigMap.
declare -A server_pid metrics_port
env_of() { kubectl -n "${2:-$ns}" get deploy "$release" -o jsonpath="{.spec.template.spec.containers[0].env[?(@.name==\"$1\")].value}"; }
start_server() { # namespace
	local n="$1" serving="$E2E_DIR/serving-$1" kubeconfig="$E2E_DIR/kubeconfig-chart-sa-$1" token server_url velero_ns configmap_name
	# The e2e scenarios of step 3 serve the first release's certificate from serving/.
	[[ "$n" == "$ns" ]] && serving="$E2E_DIR/serving"
	mkdir -p "$serving"
	(umask 077 && secret_field tls.crt "$n" | base64 -d >"$serving/serving.pem" && secret_field tls.key "$n" | base64 -d >"$serving/serving.key")
	secret_field ca.crt "$n" | base64 -d >"$serving/ca.pem"
	token="$(kubectl -n "$n" create token "$release" --duration 1h)"
	server_url="$(awk '/server:/ {print $2; exit}' "$KUBECONFIG")"
	cat >"$kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters: [{name: e2e, cluster: {server: "$server_url", certificate-authority: "$E2E_DIR/pki/ca.crt"}}]
users: [{name: chart-sa, user: {token: "$token"}}]
contexts: [{name: e2e, context: {cluster: e2e, user: chart-sa}}]
current-context: e2e
KUBECONFIG
	velero_ns="$(env_of NAW_VELERO_NAMESPACE "$n")"
	configmap_name="$(env_of NAW_CONFIGMAP "$n")"
	[[ "$velero_ns" == "$n" && "$configmap_name" == node-agent-config ]] || fail "$n: Deployment env: NAW_VELERO_NAMESPACE=$velero_ns NAW_CONFIGMAP=$configmap_name"
	metrics_port[$n]="$(free_port)"
	KUBECONFIG="$kubeconfig" NAW_VELERO_NAMESPACE="$velero_ns" NAW_CONFIGMAP="$configmap_name" \
		RUST_LOG=info "$server_bin" serve --bind "127.0.0.1:${webhook_port[$n]}" --metrics-bind "127.0.0.1:${metrics_port[$n]}" \
		--tls-cert "$serving/serving.pem" --tls-key "$serving/serving.key" --log-format json \
		>/dev/null 2>>"$E2E_DIR/helm-e2e-server-$n.log" &
	server_pid[$n]=$!
	echo "${server_pid[$n]}" >>"$E2E_DIR/pids" # cluster.sh down stops it too
	for _ in $(seq 1 60); do
		curl -fsS "http://127.0.0.1:${metrics_port[$n]}/readyz" >/dev/null 2>&1 && break
		sleep 0.5
	done
	curl -fsS "http://127.0.0.1:${metrics_port[$n]}/readyz" >/dev/null || fail "our server for $n is not ready (see $E2E_DIR/helm-e2e-server-$n.log)"
}
metric_of() { # namespace, awk pattern: the sum of the matching samples of that namespace's server
	curl -fsS "http://127.0.0.1:${metrics_port[$1]}/metrics" | awk -v pattern="$2" '$0 ~ pattern {s += $NF} END {print s + 0}'
}
for n in "$ns" "$ns_b"; do start_server "$n"; done

# --- 2. the helm-installed configurations deny and admit, each in its own namespace --------------
step "kubectl apply through the helm-installed webhooks, in $ns and $ns_b"
configmap() { # namespace, value
	kubectl -n "$1" create configmap node-agent-config --from-literal=node-agent-config="$2" --dry-run=client -o yaml
}
bad='{"podAnotations": {"team": "platform"}, "podResources": {"cpuRequest": "1", "cpuLimit": "0m", "memoryRequest": "1Gi", "memoryLimit": "1Gi"}}'
good='{"podLabels": {"team": "platform"}, "podResources": {"cpuRequest": "500m", "cpuLimit": "2", "memoryRequest": "512Mi", "memoryLimit": "2Gi"}}'
for n in "$ns" "$ns_b"; do
	if configmap "$n" "$bad" | kubectl apply -f - >"$E2E_DIR/denied-$n.txt" 2>&1; then
		fail "a malformed node-agent ConfigMap was admitted in $n"
	else
		echo "\$ kubectl -n $n apply -f node-agent-config.yaml   # $bad"
		cat "$E2E_DIR/denied-$n.txt"
		grep -q "denied the request: ConfigMap $n/node-agent-config is not a valid" "$E2E_DIR/denied-$n.txt" ||
			fail "the refusal in $n is not the webhook's for $n/node-agent-config"
	fi
	if configmap "$n" "$good" | kubectl apply -f - >/dev/null; then
		echo "helm/e2e: a valid node-agent ConfigMap is admitted in $n"
	else
		fail "a valid node-agent ConfigMap was denied in $n"
	fi
done
for n in "$ns" "$ns_b"; do
	generation=0
	for _ in $(seq 1 40); do
		generation="$(metric_of "$n" '^node_agent_webhook_config_generation ')"
		[[ "${generation:-0}" != 0 ]] && break
		sleep 0.25
	done
	reviews="$(metric_of "$n" '^node_agent_webhook_admission_requests_total[{].*webhook="validate"')"
	if [[ "${generation:-0}" != 0 && "$reviews" == 2 ]]; then
		echo "helm/e2e: $n's server (its release's ServiceAccount and RBAC) serves $n's ConfigMap, generation $generation, and answered $n's 2 reviews only"
	else
		fail "$n's server: config generation ${generation:-0} (RBAC?), $reviews validating reviews (want 2: $n's denial and admission)"
	fi
done

# --- 2b. uninstalling one release leaves the other -------------------------------------------------
step "helm uninstall $release in $ns_b: $ns's release keeps every object"
"$HELM" uninstall "$release" --namespace "$ns_b" --wait --timeout 2m >/dev/null || fail "helm uninstall in $ns_b"
gone="$(missing_objects "$ns_b" | wc -l)"
[[ "$gone" == "${#objects[@]}" ]] || fail "after uninstalling $ns_b's release, $((${#objects[@]} - gone)) of its objects are left"
missing="$(missing_objects "$ns")"
[[ -z "$missing" ]] || fail "uninstalling $ns_b's release removed $ns's: $missing"
if configmap "$ns" "$bad" | kubectl apply --dry-run=server -f - >/dev/null 2>&1; then
	fail "after uninstalling $ns_b's release, $ns admits a malformed ConfigMap"
else
	echo "helm/e2e: $ns_b's release uninstalled; all ${#objects[@]} objects of $ns's are there and its webhook still denies"
fi
kubectl -n "$ns_b" delete configmap node-agent-config --ignore-not-found >/dev/null
kubectl -n "$ns" delete configmap node-agent-config --ignore-not-found >/dev/null
for n in "$ns" "$ns_b"; do
	kill -TERM "${server_pid[$n]}" 2>/dev/null || true
	wait "${server_pid[$n]}" 2>/dev/null || true
done

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
if configmap "$ns" "$bad" | kubectl apply -f - >/dev/null; then
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
