#!/usr/bin/env bash
# Installs what the real node-agent needs into the control plane of KUBECONFIG, the way a cluster
# would have it, for one Velero version:
#
#   hack/velero/install.sh v1.18.3     # VELERO_VERSION, default v1.18.3
#
#   1. Velero's CRDs from its Go module (config/crd/v1/bases, config/crd/v2alpha1/bases) and the
#      CSI snapshot CRDs from the external-snapshotter client module it depends on;
#   2. what the real `velero install --use-node-agent --dry-run -o json` of that version prints,
#      less the CRDs (step 1) and the server Deployment (nothing here runs it): the namespace,
#      ServiceAccount velero, its cluster-admin ClusterRoleBinding, the Secret cloud-credentials
#      and the DaemonSet node-agent, given `--node-agent-configmap=node-agent-config` as
#      `velero install --node-agent-configmap` would (install itself insists that the ConfigMap
#      exists first);
#   3. hack/velero/cluster-objects.yaml: the Node, node-agent's Pod on it, an application
#      namespace, storage classes and a PriorityClass;
#   4. node-agent-webhook's shipped self-signed overlay through hack/e2e/overlay (the Service is
#      an ExternalName for 127.0.0.1: our server listens on 127.0.0.1:443); NO_WEBHOOK=1 leaves
#      it out (the config judge stores ConfigMaps our validating webhook would refuse).
#
# Running it again with another version switches the CRDs and the DaemonSet to that version.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
version=${1:-${VELERO_VERSION:-v1.18.3}}
: "${KUBECONFIG:?KUBECONFIG must point at the control plane (hack/controlplane/cluster.sh env)}"

velero=$(hack/velero/build.sh "$version")
for dir in $(hack/velero/build.sh crds "$version"); do
  # Server-side: Velero's CRDs are too large for client-side apply's last-applied annotation.
  kubectl apply --server-side --force-conflicts -f "$dir" >/dev/null
done
kubectl wait --for=condition=Established --timeout=60s \
  crd/datadownloads.velero.io crd/datauploads.velero.io crd/podvolumebackups.velero.io crd/podvolumerestores.velero.io \
  crd/volumesnapshots.snapshot.storage.k8s.io crd/volumesnapshotcontents.snapshot.storage.k8s.io >/dev/null

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '[default]\naws_access_key_id = e2e\naws_secret_access_key = e2e\n' >"$work/credentials"
# HOME: a user's ~/.config/velero/config.json must not change the namespace or features.
HOME="$work" "$velero" install --dry-run -o json --use-node-agent --secret-file "$work/credentials" \
  --use-volume-snapshots=false --no-default-backup-location --image "velero/velero:$version" \
  --namespace velero >"$work/install.json"
jq '.items |= [.[] | select(.kind != "CustomResourceDefinition" and .kind != "Deployment")
     | if .kind == "DaemonSet" then .spec.template.spec.containers[0].args += ["--node-agent-configmap=node-agent-config"] else . end]' \
  "$work/install.json" >"$work/velero.json"
kubectl apply -f "$work/velero.json" >/dev/null
kubectl apply -f hack/velero/cluster-objects.yaml >/dev/null

[ "${NO_WEBHOOK:-0}" != 1 ] || { echo "installed Velero $version's CRDs and node-agent DaemonSet (no webhook)" >&2; exit 0; }
# The certificates the overlay's Secret and caBundle come from (`make certs`; an existing CA is kept).
OUT_DIR=certs bash certs/generate.sh >/dev/null
kubectl apply -k hack/e2e/overlay >/dev/null
echo "installed Velero $version's CRDs and node-agent DaemonSet, and node-agent-webhook's overlay" >&2
