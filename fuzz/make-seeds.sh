#!/usr/bin/env bash
# Regenerates fuzz/seeds/ (committed) from examples/ and testdata/: the example node-agent
# ConfigMaps' data values, the ConfigMaps (Velero's other two too) as JSON and YAML manifests,
# and AdmissionReviews of every example pod and ConfigMap as kube-apiserver sends them (CREATE,
# UPDATE, DELETE; the other two kinds' CREATE).
set -euo pipefail
cd "$(dirname "$0")"
examples=../examples/configmaps
testdata=../testdata
rm -rf seeds
mkdir -p seeds/config_value seeds/config_file seeds/admission_review

# configmap_review OP FILE: the AdmissionReview kube-apiserver sends for OP of the ConfigMap in
# FILE, by an admin; an UPDATE's old object is the first example.
configmap_review() {
  jq -c --arg op "$1" --slurpfile old "$examples/01-valid-docs-basic.json" '. as $cm |
    {apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", request: {
      uid: "seed-\($op)", kind: {group: "", version: "v1", kind: "ConfigMap"},
      resource: {group: "", version: "v1", resource: "configmaps"},
      name: $cm.metadata.name, namespace: $cm.metadata.namespace, operation: $op,
      userInfo: {username: "kubernetes-admin", groups: ["system:masters", "system:authenticated"]},
      object: (if $op == "DELETE" then null else $cm end),
      oldObject: (if $op == "CREATE" then null elif $op == "DELETE" then $cm else $old[0] end),
      dryRun: false}}' "$2"
}

for cm in "$examples"/*.json; do
  name=$(basename "$cm" .json)
  # config_value: each data value, verbatim.
  i=0
  while IFS= read -r -d '' value; do
    printf '%s' "$value" >"seeds/config_value/$name-$i.json"
    i=$((i + 1))
  done < <(jq -j '.data[] | (., "\u0000")' "$cm")
  # config_file: the JSON manifest, and the same ConfigMap as YAML (block scalars).
  cp "$cm" "seeds/config_file/$name.json"
  {
    echo "apiVersion: v1"
    echo "kind: ConfigMap"
    echo "metadata:"
    echo "  name: $(jq -r .metadata.name "$cm")"
    echo "  namespace: $(jq -r .metadata.namespace "$cm")"
    echo "data:"
    jq -r '.data | to_entries[] | "  \(.key): |\n" + (.value | split("\n") | map("    " + .) | join("\n"))' "$cm"
  } >"seeds/config_file/$name.yaml"
  # admission_review: CREATE, an UPDATE from the first example, a DELETE.
  for op in CREATE UPDATE DELETE; do
    configmap_review "$op" "$cm" >"seeds/admission_review/cm-$name-$op.json"
  done
done
cp ../hack/demo-config.json seeds/config_value/demo-config.json
# The docs' complete example with its one unknown key fixed (the benchmark's config).
jq '.data | to_entries[0].value | fromjson
    | .cachePVC = {residentThresholdInMB: 1024, storageClass: .cachePVC.storageClass}' \
  "$examples/03-docs-complete-example-thresholdInGB.json" >seeds/config_value/config-full.json
cp ../hack/demo-config.json seeds/config_file/demo-config.json
for f in "$testdata"/fixtures/admission.k8s.io.v1*.AdmissionReview.json; do
  cp "$f" "seeds/admission_review/fixture-$(basename "$f")"
done
cp "$testdata/fixtures/core.v1.ConfigMap.json" seeds/config_file/fixture-core.v1.ConfigMap.json
# Velero's other two ConfigMaps (repository maintenance, backup repository): as manifests, and
# CREATE reviews, which the validating webhook checks as their kinds by their default names.
others=../examples/other-configmaps
cp "$others/all-three.yaml" seeds/config_file/other-all-three.yaml
for cm in "$others"/*.json; do
  name=$(basename "$cm" .json)
  cp "$cm" "seeds/config_file/other-$name.json"
  configmap_review CREATE "$cm" >"seeds/admission_review/cm-other-$name-CREATE.json"
done

# Every example pod, as submitted and as admitted (defaulted), from node-agent's account.
for pod in "$testdata"/pods/*/*.json; do
  name=$(basename "$(dirname "$pod")")-$(basename "$pod" .json)
  for admitted in false true; do
    jq -c --argjson admitted "$admitted" '
      (if $admitted then
        .spec.priority = 0 | .spec.preemptionPolicy = "PreemptLowerPriority"
        | .spec.schedulerName = "default-scheduler" | .spec.enableServiceLinks = true
        | .spec.tolerations = ((.spec.tolerations // []) + [
            {key: "node.kubernetes.io/not-ready", operator: "Exists", effect: "NoExecute", tolerationSeconds: 300}])
        | .spec.volumes += [{name: "kube-api-access-x7k2p", projected: {defaultMode: 420, sources: [
            {serviceAccountToken: {expirationSeconds: 3607, path: "token"}}]}}]
      else . end) as $pod |
      {apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", request: {
        uid: "seed-pod", kind: {group: "", version: "v1", kind: "Pod"},
        resource: {group: "", version: "v1", resource: "pods"},
        name: $pod.metadata.name, namespace: "velero", operation: "CREATE",
        userInfo: {username: "system:serviceaccount:velero:velero",
          extra: {"authentication.kubernetes.io/pod-name": ["node-agent-x2v9q"]}},
        object: $pod, oldObject: null, dryRun: false}}' "$pod" >"seeds/admission_review/pod-$name-$admitted.json"
  done
done
echo "seeds: $(find seeds -type f | wc -l) files"
