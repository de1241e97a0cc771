#!/usr/bin/env bash
# Installs node-agent-webhook into the control plane of KUBECONFIG the way a user would: a Velero
# stand-in, then `kubectl apply -k` of the shipped self-signed overlay (through hack/e2e/overlay,
# whose only change is the ExternalName Service that lets the API server reach a local process).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

# Namespaced objects wait for their namespace; the Velero stand-in goes first.
kubectl apply -f hack/e2e/velero.yaml
kubectl wait --for=condition=Established --timeout=60s crd/datadownloads.velero.io crd/datauploads.velero.io
kubectl apply -f hack/e2e/cluster-objects.yaml

# The certificates the overlay's Secret and caBundle come from (`make certs`; an existing CA is kept).
OUT_DIR=certs bash certs/generate.sh >/dev/null
kubectl apply -k hack/e2e/overlay
