#!/usr/bin/env bash
# Tests the Helm chart (charts/node-agent-webhook) with the real helm, built from its Go module
# (hack/helm/build.sh; rebuilt only when hack/helm/go.mod or go.sum change):
#
#   1. `helm lint --strict` for every certificate mode (generate, cert-manager, secret) and a
#      values file that changes everything (ci/openshift-values.yaml, namespace openshift-adp);
#   2. `helm template` of each for Kubernetes 1.30 and 1.37 (--kube-version), every built-in
#      object validated strictly against that version's schema with the validator of
#      hack/validate-manifests.sh (kubernetes-validate --strict in _out/venv), the CEL
#      matchConditions evaluated by hack/check-webhook-conditions.py (they follow the release
#      namespace and the ConfigMap value), and the certificate wiring of each mode checked;
#   3. values the schema must refuse (a typo, a wrong enum, a name that would break the CEL
#      condition, a missing Secret in secret mode) and a Kubernetes older than the chart supports;
#   4. drift: the chart with default values (generated certificates, release node-agent-webhook
#      in namespace velero) against `kubectl kustomize manifests/base`, the cert-manager mode
#      against overlays/cert-manager, and the Prometheus objects against the base with
#      components/prometheus, compared field by field (hack/helm/chart_checks.py drift); and one
#      install per Velero namespace: the same release in velero-b against an overlay of
#      overlays/cert-manager moved to velero-b with transformers/follow-namespace, sharing no
#      object with the release in velero (chart_checks.py coexist).
#
#   hack/helm/test.sh          # all of it
#   hack/helm/test.sh lint     # step 1 only (make helm-lint)
#
# Environment: KUBE_VERSIONS (default "1.30.0 1.37.0"), KUBECTL (default kubectl; kustomize v5),
# VENV, PYTHON (as for hack/python-tools.sh, which installs the pinned Python tools),
# HELM (a helm binary to use instead of building one). Output in _out/helm-test/.
set -euo pipefail
only="${1:-all}"
[[ "$only" == all || "$only" == lint ]] || { echo "usage: hack/helm/test.sh [lint]" >&2; exit 2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="${here%/hack/helm}"
cd "$root"
KUBE_VERSIONS="${KUBE_VERSIONS:-1.30.0 1.37.0}"
KUBECTL="${KUBECTL:-kubectl}"
VENV="$(bash "$root/hack/python-tools.sh")"
out="$root/_out/helm-test"
chart="$root/charts/node-agent-webhook"
checks="$root/hack/helm/chart_checks.py"

HELM="${HELM:-$(bash "$root/hack/helm/build.sh" | tail -n 1)}"
"$HELM" version --short >/dev/null

rm -rf "$out"
mkdir -p "$out"
failures=0
fail() { echo "helm/test: FAIL: $*" >&2; failures=$((failures + 1)); }

# A CA for secret mode (only its certificate is used: the caBundle).
OUT_DIR="$out/certs" bash "$root/certs/generate.sh" >/dev/null

# scenario -> namespace and helm arguments
declare -A ns args
ns[generate]=velero; args[generate]="-f $chart/ci/generate-values.yaml"
ns[cert-manager]=velero; args[cert-manager]="-f $chart/ci/cert-manager-values.yaml"
ns[secret]=velero; args[secret]="-f $chart/ci/secret-values.yaml --set-file certificates.secret.caBundle=$out/certs/ca.pem"
ns[openshift]=openshift-adp; args[openshift]="-f $chart/ci/openshift-values.yaml"
scenarios=(generate cert-manager secret openshift)
mode_of() { case "$1" in openshift) echo cert-manager ;; *) echo "$1" ;; esac; }

# --- 1. lint ------------------------------------------------------------------------------------
for s in "${scenarios[@]}"; do
	# shellcheck disable=SC2086 # args are word lists by design
	if lint="$("$HELM" lint --strict "$chart" --namespace "${ns[$s]}" ${args[$s]} 2>&1)"; then
		echo "helm/test: lint --strict ($s): $(grep -E 'chart\(s\) linted' <<<"$lint")"
		grep -E '^\[(WARNING|ERROR)\]' <<<"$lint" && fail "lint $s printed warnings"
	else
		echo "$lint" >&2
		fail "helm lint --strict ($s)"
	fi
done

if [[ "$only" == lint ]]; then
	[[ $failures -eq 0 ]] || { echo "helm/test: FAILED ($failures)" >&2; exit 1; }
	echo "helm/test: lint OK"
	exit 0
fi

# --- 2. template, schema, CEL, certificates ------------------------------------------------------
# The validator and CEL evaluator of hack/validate-manifests.sh, at its pinned versions: when the
# venv lacks them, that script installs them (and validates the kustomize overlays on the way).
py="$VENV/bin/python"

for s in "${scenarios[@]}"; do
	for v in $KUBE_VERSIONS; do
		file="$out/$s-$v.yaml"
		# shellcheck disable=SC2086
		if ! "$HELM" template node-agent-webhook "$chart" --namespace "${ns[$s]}" --kube-version "$v" ${args[$s]} >"$file"; then
			fail "helm template $s for $v"
			continue
		fi
		if "$VENV/bin/python" -m kubernetes_validate --strict --quiet --no-warn -k "$v" "$file"; then
			echo "helm/test: template $s: $(grep -c '^kind: ' "$file") objects, every built-in object valid for Kubernetes $v (strict)"
		else
			fail "template $s: INVALID for Kubernetes $v"
		fi
	done
	last="$out/$s-${KUBE_VERSIONS##* }.yaml"
	[[ -s "$last" ]] || continue
	"$py" "$root/hack/check-webhook-conditions.py" "$last" | sed 's|^|helm/test: CEL: |' || fail "CEL conditions ($s)"
	"$py" "$checks" certs "$last" "$(mode_of "$s")" --ca-pem "$out/certs/ca.pem" | sed 's|^|helm/test: |' || fail "certificates ($s)"
done

# --- 3. what must be refused ----------------------------------------------------------------------
refuse() { # description, then helm template arguments
	local what="$1"
	shift
	if msg="$("$HELM" template node-agent-webhook "$chart" --namespace velero "$@" 2>&1 >/dev/null)"; then
		fail "accepted $what ($*)"
	else
		echo "helm/test: refused $what: $(tr '\n' ' ' <<<"$msg" | sed -E 's/ +/ /g' | cut -c1-160)"
	fi
}
refuse "a typo in a key" --set nodeAgent.configmap=node-agent-config
refuse "an unknown certificate mode" --set certificates.mode=self-signed
refuse "secret mode without a Secret" --set certificates.mode=secret
refuse "a failure policy in lower case" --set webhooks.mutate.failurePolicy=fail
refuse "a ConfigMap name that would break the CEL condition" --set "nodeAgent.configMap=a'b"
refuse "a duration the server cannot parse" --set shutdownDelay=5
refuse "an unknown securityContext field" --set securityContext.runAsUsr=1
refuse "Kubernetes 1.29 (matchConditions are GA from 1.30)" --kube-version 1.29.0

# --- 4. drift against the kustomize manifests ----------------------------------------------------
"$KUBECTL" kustomize manifests/base >"$out/kustomize-base.yaml"
"$KUBECTL" kustomize manifests/overlays/cert-manager >"$out/kustomize-cert-manager.yaml"
mkdir -p "$out/kustomize-prometheus"
cat >"$out/kustomize-prometheus/kustomization.yaml" <<'EOF'
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [../../../manifests/base]
components: [../../../manifests/components/prometheus]
EOF
"$KUBECTL" kustomize "$out/kustomize-prometheus" >"$out/kustomize-prometheus.yaml"
# A second Velero namespace, as docs/deploy.md tells kustomize users to add one.
mkdir -p "$out/kustomize-velero-b"
cat >"$out/kustomize-velero-b/kustomization.yaml" <<'EOF'
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: velero-b
resources: [../../../manifests/overlays/cert-manager]
transformers: [../../../manifests/transformers/follow-namespace]
EOF
"$KUBECTL" kustomize "$out/kustomize-velero-b" >"$out/kustomize-velero-b.yaml"

"$HELM" template node-agent-webhook "$chart" --namespace velero >"$out/helm-default.yaml"
"$HELM" template node-agent-webhook "$chart" --namespace velero -f "$chart/ci/cert-manager-values.yaml" >"$out/helm-cert-manager.yaml"
"$HELM" template node-agent-webhook "$chart" --namespace velero \
	--set metrics.serviceMonitor.enabled=true --set metrics.prometheusRule.enabled=true >"$out/helm-prometheus.yaml"
"$HELM" template node-agent-webhook "$chart" --namespace velero-b -f "$chart/ci/cert-manager-values.yaml" >"$out/helm-velero-b.yaml"

"$py" "$checks" drift "$out/kustomize-base.yaml" "$out/helm-default.yaml" \
	--allow-extra Secret/node-agent-webhook-tls | sed 's|^|helm/test: |' || fail "drift: default values vs manifests/base"
"$py" "$checks" drift "$out/kustomize-cert-manager.yaml" "$out/helm-cert-manager.yaml" |
	sed 's|^|helm/test: |' || fail "drift: cert-manager mode vs overlays/cert-manager"
"$py" "$checks" drift "$out/kustomize-prometheus.yaml" "$out/helm-prometheus.yaml" \
	--allow-extra Secret/node-agent-webhook-tls | sed 's|^|helm/test: |' || fail "drift: metrics vs components/prometheus"
"$py" "$checks" drift "$out/kustomize-velero-b.yaml" "$out/helm-velero-b.yaml" |
	sed 's|^|helm/test: |' || fail "drift: the release in velero-b vs overlays/cert-manager moved to velero-b"
"$py" "$checks" coexist "$out/helm-cert-manager.yaml" "$out/helm-velero-b.yaml" |
	sed 's|^|helm/test: |' || fail "the releases in velero and velero-b share objects or requests"
"$py" "$root/hack/check-webhook-conditions.py" "$out/kustomize-velero-b.yaml" "$out/helm-velero-b.yaml" |
	sed 's|^|helm/test: CEL: |' || fail "CEL conditions in velero-b"

if [[ $failures -ne 0 ]]; then
	echo "helm/test: FAILED ($failures)" >&2
	exit 1
fi
echo "helm/test: OK ($("$HELM" version --short), renders in ${out#"$root"/})"
