#!/usr/bin/env bash
# helm --post-renderer for hack/helm/e2e.sh: the chart's Service becomes an ExternalName for
# 127.0.0.1, exactly as hack/e2e/overlay does for the kustomize install. The e2e control plane has
# no kubelet and no kube-proxy, so our server runs as a local process; the webhook configurations
# keep `clientConfig.service`, so the API server still resolves <service>.<namespace>.svc:443 through
# the Service and verifies the chart's certificate for that name, as in a cluster.
# E2E_WEBHOOK_PORT (default 443) moves the Service's https port and the webhooks'
# clientConfig.service.port together, so the local server need not hold 127.0.0.1:443 (which
# another end-to-end run on the machine may be using).
# Reads the rendered manifests on stdin, writes them on stdout. KUBECTL: kubectl with kustomize v5.
set -euo pipefail
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
cat >"$dir/chart.yaml"
port="${E2E_WEBHOOK_PORT:-443}"
[[ "$port" =~ ^[0-9]+$ ]] || { echo "e2e-post-render: E2E_WEBHOOK_PORT must be a number" >&2; exit 1; }
cat >"$dir/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [chart.yaml]
patches:
  - target:
      kind: Service
      labelSelector: app.kubernetes.io/name=node-agent-webhook
    patch: |-
      - op: replace
        path: /spec/type
        value: ExternalName
      - op: add
        path: /spec/externalName
        value: 127.0.0.1
      - op: remove
        path: /spec/selector
      - op: replace
        path: /spec/ports/0/port
        value: $port
  - target:
      kind: ValidatingWebhookConfiguration
    patch: |-
      - op: replace
        path: /webhooks/0/clientConfig/service/port
        value: $port
      - op: replace
        path: /webhooks/1/clientConfig/service/port
        value: $port
  - target:
      kind: MutatingWebhookConfiguration
    patch: |-
      - op: replace
        path: /webhooks/0/clientConfig/service/port
        value: $port
EOF
"${KUBECTL:-kubectl}" kustomize "$dir"
