#!/usr/bin/env bash
# End-to-end test of node-agent-webhook on a real API server (make e2e).
#
# Creates a kind cluster (one control plane, two workers), builds the image from the Dockerfile
# and loads it, installs a minimal Velero stand-in (hack/e2e/velero.yaml: namespace, the four
# data-mover CRDs, node-agent's ServiceAccount, a node-agent DaemonSet to read the version from,
# a PriorityClass), deploys manifests/overlays/self-signed with certificates generated for the
# run, and proves on the real API server:
#   * two replicas on two nodes;
#   * the validating webhook denies a malformed node-agent ConfigMap (also under
#     --dry-run=server) and admits a valid one; other ConfigMaps and other namespaces are never
#     sent to it;
#   * the mutating webhook applies the live ConfigMap to data-mover pods created by node-agent's
#     ServiceAccount from a pod named node-agent-* (as node-agent does), including the priority
#     (the API server's Priority plugin re-runs after the patch and must accept it); it leaves
#     alone the same pod created by an admin, and pods in other namespaces;
#   * with the webhook scaled to zero: ConfigMap edits are refused (Fail), data-mover pods are
#     still created, unmodified (Ignore), and the ConfigMap can be deleted (DELETE is Ignore);
#   * deleting the Velero namespace with the webhook inside does not get stuck (velero uninstall);
#   * kubectl delete -k removes the rest (make undeploy).
#
# Requires docker (with a running engine), kind, kubectl, openssl; network access for the
# kindest/node, rust, distroless, registry.k8s.io/kubectl and registry.k8s.io/pause images.
# It uses its own kubeconfig and never touches ~/.kube/config.
#
# Environment:
#   CLUSTER_NAME   kind cluster name                      (node-agent-webhook-e2e)
#   KIND_IMAGE     kindest/node image                      (kind's default)
#   IMG            image to build and deploy               (node-agent-webhook:e2e)
#   SKIP_BUILD     1 = IMG already exists locally, do not build it
#   KEEP_CLUSTER   1 = leave the cluster running at the end (prints how to reach it)
#   KUBECTL_IMAGE  image that plays node-agent creating pods (registry.k8s.io/kubectl:v1.32.4)
#   PAUSE_IMAGE    image of the fake data-mover pods         (registry.k8s.io/pause:3.10)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER_NAME="${CLUSTER_NAME:-node-agent-webhook-e2e}"
KIND_IMAGE="${KIND_IMAGE:-}"
IMG="${IMG:-node-agent-webhook:e2e}"
SKIP_BUILD="${SKIP_BUILD:-0}"
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"
KUBECTL_IMAGE="${KUBECTL_IMAGE:-registry.k8s.io/kubectl:v1.32.4}"
PAUSE_IMAGE="${PAUSE_IMAGE:-registry.k8s.io/pause:3.10}"
NS=velero
CM="node-agent-config"
DEPLOY="node-agent-webhook"
VALIDATING_HOOK=validate-config.node-agent-webhook.io

log() { printf '\n=== %s\n' "$*"; }
die() { echo "e2e: $*" >&2; exit 1; }

for tool in docker kind kubectl openssl; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done
docker info >/dev/null 2>&1 || die "no Docker engine reachable (docker info failed)"

work="$(mktemp -d)"
export KUBECONFIG="$work/kubeconfig"
created_cluster=0

passed=0
failed=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*" >&2; failed=$((failed + 1)); }

diagnostics() {
	echo "--- diagnostics" >&2
	kubectl -n "$NS" get pods -o wide >&2 || true
	kubectl -n "$NS" logs -l app.kubernetes.io/name=node-agent-webhook --tail=50 --prefix >&2 || true
	kubectl -n "$NS" get events --sort-by=.lastTimestamp >&2 | tail -30 || true
}

cleanup() {
	local rc=$?
	if [[ $rc -ne 0 || $failed -ne 0 ]]; then diagnostics; fi
	if [[ $created_cluster == 1 && "$KEEP_CLUSTER" != "1" ]]; then
		kind delete cluster --name "$CLUSTER_NAME" >/dev/null 2>&1 || true
		rm -rf "$work"
	elif [[ $created_cluster == 1 ]]; then
		echo "e2e: cluster kept: KUBECONFIG=$KUBECONFIG kubectl get pods -A;" \
			"delete with: kind delete cluster --name $CLUSTER_NAME" >&2
	else
		rm -rf "$work"
	fi
	exit "$rc"
}
trap cleanup EXIT

# expect_ok DESCRIPTION COMMAND...: the command succeeds.
expect_ok() {
	local what="$1" out
	shift
	if out="$("$@" 2>&1)"; then pass "$what"; else fail "$what: $out"; fi
}

# expect_denied DESCRIPTION REGEX COMMAND...: the command fails with output matching REGEX.
expect_denied() {
	local what="$1" pattern="$2" out
	shift 2
	if out="$("$@" 2>&1)"; then
		fail "$what: unexpectedly succeeded: $out"
	elif grep -Eq "$pattern" <<<"$out"; then
		pass "$what"
	else
		fail "$what: failed, but not with /$pattern/: $out"
	fi
}

# expect_eq DESCRIPTION EXPECTED ACTUAL
expect_eq() {
	if [[ "$2" == "$3" ]]; then pass "$1"; else fail "$1: expected '$2', got '$3'"; fi
}

# configmap_yaml NAME NAMESPACE JSON: a node-agent ConfigMap as `kubectl create cm --from-file` makes it.
configmap_yaml() {
	local file="$work/cm-$1-$2.json"
	printf '%s\n' "$3" >"$file"
	kubectl create configmap "$1" -n "$2" --from-file="node-agent-config=$file" --dry-run=client -o yaml
}

# apply_configmap NAME NAMESPACE JSON [kubectl apply flags...]
apply_configmap() {
	local name="$1" ns="$2" json="$3"
	shift 3
	configmap_yaml "$name" "$ns" "$json" | kubectl apply "$@" -f -
}

# owner PLURAL API KIND NAME: creates the Velero CR a data-mover pod belongs to; prints its UID.
# Each pod gets its own CR of the same name, as in Velero (the garbage collector deletes a pod
# whose owner reference names no existing object).
owner() {
	kubectl apply -f - >/dev/null <<EOF
apiVersion: $2
kind: $3
metadata: { name: $4, namespace: $NS }
spec: { e2e: "true" }
EOF
	kubectl -n "$NS" get "$1.velero.io" "$4" -o jsonpath='{.metadata.uid}'
}

# datamover_pod NAME LABEL OWNER_API OWNER_KIND OWNER_UID [NODE]: the shape node-agent creates
# (an empty OWNER_UID leaves out the owner reference).
datamover_pod() {
	local name="$1" label="$2" api="$3" kind="$4" uid="$5" node="${6:-}" node_field="" owner_field=""
	[[ -n "$node" ]] && node_field="\"nodeName\": \"$node\","
	[[ -n "$uid" ]] && owner_field=",
    \"ownerReferences\": [
      { \"apiVersion\": \"$api\", \"kind\": \"$kind\", \"name\": \"$name\", \"uid\": \"$uid\", \"controller\": true }
    ]"
	cat <<EOF
{
  "apiVersion": "v1",
  "kind": "Pod",
  "metadata": {
    "name": "$name",
    "namespace": "$NS",
    "labels": { "$label": "$name" }$owner_field
  },
  "spec": {
    $node_field
    "restartPolicy": "Never",
    "terminationGracePeriodSeconds": 0,
    "containers": [ { "name": "${uid:-data-mover}", "image": "$PAUSE_IMAGE", "imagePullPolicy": "IfNotPresent" } ]
  }
}
EOF
}

# create_as_node_agent POD_JSON_FILE: creates the pod from a pod named node-agent-* running as
# node-agent's ServiceAccount, so the API server authenticates the request exactly as it does
# node-agent's (bound token with the pod-name claim).
runner=0
create_as_node_agent() {
	runner=$((runner + 1))
	local creator="node-agent-e2e-$runner" spec="e2e-pod-spec-$runner"
	kubectl -n "$NS" create configmap "$spec" --from-file=pod.json="$1" >/dev/null
	kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $creator
  namespace: $NS
spec:
  serviceAccountName: velero
  restartPolicy: Never
  containers:
    - name: kubectl
      image: $KUBECTL_IMAGE
      args: ["create", "-f", "/spec/pod.json"]
      volumeMounts: [{ name: spec, mountPath: /spec }]
  volumes:
    - name: spec
      configMap: { name: $spec }
EOF
	if ! kubectl -n "$NS" wait "pod/$creator" --for=jsonpath='{.status.phase}'=Succeeded --timeout=180s >/dev/null; then
		kubectl -n "$NS" logs "$creator" >&2 || true
		return 1
	fi
}

jp() { kubectl -n "${3:-$NS}" get pod "$1" -o jsonpath="$2"; }

# ---------------------------------------------------------------------------------------------
log "cluster $CLUSTER_NAME"
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
	die "a kind cluster named $CLUSTER_NAME exists already; delete it or set CLUSTER_NAME"
fi
kind_args=(create cluster --name "$CLUSTER_NAME" --kubeconfig "$KUBECONFIG" --wait 180s --config -)
[[ -n "$KIND_IMAGE" ]] && kind_args+=(--image "$KIND_IMAGE")
kind "${kind_args[@]}" <<'EOF'
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
  - role: worker
  - role: worker
EOF
created_cluster=1
kubectl wait nodes --all --for=condition=Ready --timeout=180s
kubectl version

log "image $IMG"
if [[ "$SKIP_BUILD" != "1" ]]; then
	DOCKER_BUILDKIT=1 docker build -t "$IMG" \
		--build-arg VERSION=e2e --build-arg VCS_REF="$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)" \
		"$root"
fi
kind load docker-image "$IMG" --name "$CLUSTER_NAME"

log "Velero stand-in"
kubectl apply -f "$root/hack/e2e/velero.yaml"
kubectl wait --for=condition=Established --timeout=60s \
	crd/datauploads.velero.io crd/datadownloads.velero.io crd/podvolumebackups.velero.io crd/podvolumerestores.velero.io

log "deploy (self-signed overlay, certificates generated for this run)"
mkdir -p "$work/tree"
cp -R "$root/manifests" "$work/tree/manifests"
mkdir -p "$work/tree/certs"
cp "$root/certs/kustomization.yaml" "$root/certs/generate.sh" "$work/tree/certs/"
OUT_DIR="$work/tree/certs" SERVICE=node-agent-webhook NAMESPACE="$NS" bash "$work/tree/certs/generate.sh"
mkdir -p "$work/tree/e2e"
img_name="${IMG%:*}"
img_tag="${IMG##*:}"
[[ "$img_name" == "$IMG" ]] && img_tag=latest
cat >"$work/tree/e2e/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [../manifests/overlays/self-signed]
images:
  - name: node-agent-webhook
    newName: $img_name
    newTag: $img_tag
EOF
kubectl apply -k "$work/tree/e2e"
kubectl -n "$NS" rollout status "deployment/$DEPLOY" --timeout=180s

nodes="$(kubectl -n "$NS" get pods -l app.kubernetes.io/name=node-agent-webhook -o jsonpath='{range .items[*]}{.spec.nodeName}{"\n"}{end}' | sort -u | wc -l)"
expect_eq "two replicas on two nodes" 2 "$((nodes))"

# ---------------------------------------------------------------------------------------------
log "validating webhook"
valid='{"loadConcurrency":{"globalConfig":2}}'
# cpuLimit missing (Velero would ignore all podResources), `in` is not an operator.
invalid='{"podResources":{"cpuRequest":"1","memoryRequest":"1Gi","memoryLimit":"2Gi"},"loadAffinity":[{"nodeSelector":{"matchExpressions":[{"key":"zone","operator":"in","values":["a"]}]}}]}'
denied="admission webhook \"$VALIDATING_HOOK\" denied the request"

expect_denied "a malformed node-agent ConfigMap is denied on CREATE" "$denied" apply_configmap "$CM" "$NS" "$invalid"
expect_ok "a valid node-agent ConfigMap is admitted" apply_configmap "$CM" "$NS" "$valid"
expect_denied "a malformed edit is denied on UPDATE" "$denied" apply_configmap "$CM" "$NS" "$invalid"
expect_denied "--dry-run=server is validated too (sideEffects: None)" "$denied" \
	apply_configmap "$CM" "$NS" "$invalid" --dry-run=server
expect_ok "another ConfigMap in the Velero namespace is not sent to the webhook" \
	apply_configmap not-node-agent-config "$NS" "$invalid"
kubectl create namespace e2e-other >/dev/null
expect_ok "a ConfigMap of the same name in another namespace is not sent to the webhook" \
	apply_configmap "$CM" e2e-other "$invalid"

# ---------------------------------------------------------------------------------------------
log "mutating webhook"
live='{
  "loadAffinity": [{"nodeSelector": {"matchLabels": {"kubernetes.io/os": "linux"}}}],
  "podResources": {"cpuRequest": "100m", "cpuLimit": "1", "memoryRequest": "128Mi", "memoryLimit": "1Gi"},
  "priorityClassName": "e2e-backup",
  "podLabels": {"e2e.node-agent-webhook.io/patched": "true"},
  "podAnnotations": {"e2e.node-agent-webhook.io/note": "from-the-live-configmap"}
}'
expect_ok "the live config is admitted" apply_configmap "$CM" "$NS" "$live"
# The server watches the ConfigMap; a valid edit serves the next review within a second.
sleep 5

# The DataUpload's PVC, created before the pod as Velero does; its storage class (kind's default)
# selects the loadAffinity entry.
kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: { name: e2e-du, namespace: $NS }
spec:
  accessModes: [ReadWriteOnce]
  resources: { requests: { storage: 1Gi } }
EOF
du_uid="$(owner datauploads velero.io/v2alpha1 DataUpload e2e-du)"
pvb_uid="$(owner podvolumebackups velero.io/v1 PodVolumeBackup e2e-pvb)"
worker="$(kubectl get nodes -l '!node-role.kubernetes.io/control-plane' -o jsonpath='{.items[0].metadata.name}')"

datamover_pod e2e-du velero.io/data-upload velero.io/v2alpha1 DataUpload "$du_uid" >"$work/du.json"
if create_as_node_agent "$work/du.json"; then
	pass "node-agent created a DataUpload pod through the webhook"
	expect_eq "podResources: cpu request" 100m "$(jp e2e-du '{.spec.containers[0].resources.requests.cpu}')"
	expect_eq "podResources: memory limit" 1Gi "$(jp e2e-du '{.spec.containers[0].resources.limits.memory}')"
	expect_eq "podLabels" true "$(jp e2e-du '{.metadata.labels.e2e\.node-agent-webhook\.io/patched}')"
	expect_eq "Velero's own label untouched" e2e-du "$(jp e2e-du '{.metadata.labels.velero\.io/data-upload}')"
	expect_eq "podAnnotations" from-the-live-configmap "$(jp e2e-du '{.metadata.annotations.e2e\.node-agent-webhook\.io/note}')"
	expect_eq "priorityClassName" e2e-backup "$(jp e2e-du '{.spec.priorityClassName}')"
	expect_eq "priority recomputed by the API server from the class" 1000 "$(jp e2e-du '{.spec.priority}')"
	expect_eq "preemptionPolicy recomputed from the class" Never "$(jp e2e-du '{.spec.preemptionPolicy}')"
	affinity="$(jp e2e-du '{.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms}')"
	if grep -q 'kubernetes.io/os' <<<"$affinity"; then pass "loadAffinity"; else fail "loadAffinity: $affinity"; fi
	echo "e2e: annotations of the patched pod: $(jp e2e-du '{.metadata.annotations}')"
else
	fail "node-agent could not create a DataUpload pod"
fi

datamover_pod e2e-pvb velero.io/pod-volume-backup velero.io/v1 PodVolumeBackup "$pvb_uid" "$worker" >"$work/pvb.json"
if create_as_node_agent "$work/pvb.json"; then
	expect_eq "PodVolumeBackup pod gets podResources" 100m "$(jp e2e-pvb '{.spec.containers[0].resources.requests.cpu}')"
	expect_eq "PodVolumeBackup pod (bound to its node) gets no affinity" "" "$(jp e2e-pvb '{.spec.affinity}')"
else
	fail "node-agent could not create a PodVolumeBackup pod"
fi

admin_uid="$(owner datauploads velero.io/v2alpha1 DataUpload e2e-admin)"
datamover_pod e2e-admin velero.io/data-upload velero.io/v2alpha1 DataUpload "$admin_uid" >"$work/admin.json"
expect_ok "an admin creates a pod with a data-mover label" kubectl create -f "$work/admin.json"
expect_eq "...which the webhook leaves alone (not node-agent's ServiceAccount)" "" "$(jp e2e-admin '{.spec.priorityClassName}')"
# Owner references cannot cross namespaces: this one has none.
datamover_pod e2e-other velero.io/data-upload "" "" "" | sed "s/\"namespace\": \"$NS\"/\"namespace\": \"e2e-other\"/" >"$work/other.json"
expect_ok "a data-mover-labelled pod in another namespace" kubectl create -f "$work/other.json"
expect_eq "...is left alone" "" "$(jp e2e-other '{.spec.priorityClassName}' e2e-other)"

# ---------------------------------------------------------------------------------------------
log "webhook down: failure policies"
kubectl -n "$NS" scale "deployment/$DEPLOY" --replicas=0
for _ in $(seq 120); do
	[[ -z "$(kubectl -n "$NS" get pods -l app.kubernetes.io/name=node-agent-webhook -o name)" ]] && break
	sleep 1
done
expect_denied "ConfigMap edits are refused while the webhook is down (Fail)" "failed calling webhook" \
	apply_configmap "$CM" "$NS" '{"loadConcurrency":{"globalConfig":3}}'
down_uid="$(owner datauploads velero.io/v2alpha1 DataUpload e2e-du-down)"
datamover_pod e2e-du-down velero.io/data-upload velero.io/v2alpha1 DataUpload "$down_uid" >"$work/down.json"
if create_as_node_agent "$work/down.json"; then
	pass "data-mover pods are still created while the webhook is down (Ignore)"
	expect_eq "...unmodified" "" "$(jp e2e-du-down '{.spec.priorityClassName}')"
else
	fail "a data-mover pod was refused while the webhook was down"
fi
expect_ok "the node-agent ConfigMap can be deleted while the webhook is down (DELETE is Ignore)" \
	kubectl -n "$NS" delete configmap "$CM"
kubectl -n "$NS" scale "deployment/$DEPLOY" --replicas=2
kubectl -n "$NS" rollout status "deployment/$DEPLOY" --timeout=180s

# ---------------------------------------------------------------------------------------------
log "uninstall"
expect_ok "the node-agent ConfigMap is recreated" apply_configmap "$CM" "$NS" "$valid"
# Like `velero uninstall`: the namespace goes, with the webhook and the ConfigMap inside.
expect_ok "deleting the Velero namespace with the webhook inside completes" \
	kubectl delete namespace "$NS" --wait=true --timeout=180s
expect_ok "kubectl delete -k removes the cluster-scoped rest (make undeploy)" \
	kubectl delete -k "$work/tree/e2e" --ignore-not-found=true --wait=true --timeout=120s
expect_eq "no webhook configuration left" "" \
	"$(kubectl get validatingwebhookconfigurations,mutatingwebhookconfigurations -o name | grep node-agent-webhook || true)"

echo
echo "e2e: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
