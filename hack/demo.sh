#!/usr/bin/env bash
# A local demo that needs no cluster: throw-away certificates, the real server on
# 127.0.0.1, and the reviews kube-apiserver would send it.
set -euo pipefail
cd "$(dirname "$0")/.."

# `make demo` builds it with cargo, which honours CARGO_TARGET_DIR (a shared build cache).
bin=${CARGO_TARGET_DIR:-target}/debug/node-agent-webhook
work=$(mktemp -d)
port=${DEMO_PORT:-18443}
metrics_port=${DEMO_METRICS_PORT:-19090}
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }

bold "1. Throw-away CA and serving certificate for localhost ($work)"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj "/CN=demo CA" -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout "$work/tls.key" -out "$work/tls.csr" 2>/dev/null
openssl x509 -req -in "$work/tls.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial -days 1 \
  -extfile <(printf 'subjectAltName=DNS:localhost,IP:127.0.0.1') -out "$work/tls.crt" 2>/dev/null
echo "ok"

bold "2. The live node-agent config the server applies (a file here; the ConfigMap in a cluster)"
cp hack/demo-config.json "$work/config.json"
cat "$work/config.json"

"$bin" serve --tls-cert "$work/tls.crt" --tls-key "$work/tls.key" \
  --bind "127.0.0.1:$port" --metrics-bind "127.0.0.1:$metrics_port" \
  --config-file "$work/config.json" --log-format text --shutdown-delay 0s 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$metrics_port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$metrics_port/readyz" >/dev/null || { cat "$work/server.log"; exit 1; }

review() { # review OPERATION CONFIGMAP_FILE -> AdmissionReview JSON
  jq -n --arg op "$1" --slurpfile cm "$2" '{apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview",
    request: {uid: "demo-\($op)", kind: {group: "", version: "v1", kind: "ConfigMap"},
      resource: {group: "", version: "v1", resource: "configmaps"},
      name: $cm[0].metadata.name, namespace: $cm[0].metadata.namespace, operation: $op,
      userInfo: {username: "demo"}, object: $cm[0], oldObject: null}}'
}
verdict() { # verdict PATH REVIEW_FILE
  curl -sS --cacert "$work/ca.crt" -H 'content-type: application/json' \
    --data-binary @"$2" "https://localhost:$port$1" | jq -r '.response |
      (if .allowed then "ALLOWED" else "DENIED (HTTP \(.status.code)): \(.status.message)" end),
      ((.warnings // [])[] | "  warning: \(.)")'
}

bold "3. kubectl apply of a valid node-agent ConfigMap (examples/configmaps/01-valid-docs-basic.json)"
review CREATE examples/configmaps/01-valid-docs-basic.json > "$work/valid.json"
verdict /validate "$work/valid.json"

bold "4. kubectl apply of a malformed one (examples/configmaps/05-loadaffinity-and-label-pitfalls.json)"
review CREATE examples/configmaps/05-loadaffinity-and-label-pitfalls.json > "$work/invalid.json"
verdict /validate "$work/invalid.json"

bold "5. The same file, checked offline as CI would (node-agent-webhook check)"
"$bin" check examples/configmaps/05-loadaffinity-and-label-pitfalls.json || echo "(exit $?)"

bold "6. node-agent creates a DataUpload pod (testdata/pods/v1.18/pod-dataupload.json): the patch it gets"
jq -n --slurpfile pod testdata/pods/v1.18/pod-dataupload.json '{apiVersion: "admission.k8s.io/v1",
  kind: "AdmissionReview", request: {uid: "demo-pod", kind: {group: "", version: "v1", kind: "Pod"},
    resource: {group: "", version: "v1", resource: "pods"}, name: $pod[0].metadata.name, namespace: "velero",
    operation: "CREATE", userInfo: {username: "system:serviceaccount:velero:velero"}, object: $pod[0]}}' > "$work/pod.json"
curl -sS --cacert "$work/ca.crt" -H 'content-type: application/json' --data-binary @"$work/pod.json" \
  "https://localhost:$port/mutate" | jq -r '.response.patch' | base64 -d | jq .

bold "7. The same preview offline: node-agent-webhook mutate --config ... --pod ..."
"$bin" mutate --config "$work/config.json" --pod testdata/pods/v1.18/pod-dataupload.json --apply \
  | jq '{labels: .metadata.labels, annotations: .metadata.annotations, affinity: .spec.affinity, resources: .spec.containers[0].resources}'

bold "8. Edit the live config: the next pod gets the new setting, no restart"
jq '.podLabels.team = "storage"' "$work/config.json" > "$work/config.next" && mv "$work/config.next" "$work/config.json"
sleep 0.5
curl -sS --cacert "$work/ca.crt" -H 'content-type: application/json' --data-binary @"$work/pod.json" \
  "https://localhost:$port/mutate" | jq -r '.response.patch' | base64 -d | jq -c '.[] | select(.path == "/metadata/labels/team")'

bold "9. A few of the metrics Prometheus scrapes from :$metrics_port/metrics"
curl -sS "http://127.0.0.1:$metrics_port/metrics" | grep -E '^node_agent_webhook_(admission_requests|settings_applied|config_generation)' || true

bold "Server log"
cat "$work/server.log"
