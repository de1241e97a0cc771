#!/usr/bin/env bash
# Renders every overlay and validates the result:
#   1. every built-in object strictly against the OpenAPI schema of Kubernetes KUBE_VERSIONS
#      (kubernetes-validate --strict: unknown fields and wrong types are errors);
#      (and the e2e test's Velero stand-in, hack/e2e/*.yaml, likewise);
#   2. every webhook matchCondition compiles and evaluates without error, and matches exactly the
#      requests it should, for every operation (hack/check-webhook-conditions.py, cel-cpp).
# Custom resources (cert-manager Certificate/Issuer, Prometheus Operator ServiceMonitor/
# PrometheusRule) have no schema there; tests/manifests.rs checks their required fields.
#
#   bash hack/validate-manifests.sh
#
# Environment:
#   KUBE_VERSIONS  space-separated Kubernetes versions (default: "1.30.0 1.37.0": the oldest
#                  release with GA matchConditions, which the webhooks need, and the current one)
#   VENV, PYTHON   as for hack/python-tools.sh, which installs the pinned Python tools
#   KUBECTL, OUT_DIR as for hack/render-manifests.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KUBE_VERSIONS="${KUBE_VERSIONS:-1.30.0 1.37.0}"
OUT_DIR="${OUT_DIR:-$root/_out/manifests}"
export OUT_DIR

VENV="$(bash "$root/hack/python-tools.sh")"

# --- render -------------------------------------------------------------------------------------
bash "$root/hack/render-manifests.sh"
shopt -s nullglob
rendered=("$OUT_DIR"/*.yaml)
[[ ${#rendered[@]} -gt 0 ]] || { echo "validate-manifests: nothing rendered" >&2; exit 1; }

# --- 1. schema ----------------------------------------------------------------------------------
status=0
for version in $KUBE_VERSIONS; do
	for file in "${rendered[@]}"; do
		# --no-warn: the only warnings are "Couldn't find schema" for the custom resources.
		if "$VENV/bin/python" -m kubernetes_validate --strict --quiet --no-warn -k "$version" "$file"; then
			echo "validate-manifests: ${file#"$root"/}: every built-in object is valid for Kubernetes $version (strict)"
		else
			echo "validate-manifests: ${file#"$root"/}: INVALID for Kubernetes $version" >&2
			status=1
		fi
	done
done

# The e2e test's Velero stand-in is applied to a real API server too: keep it valid.
for version in $KUBE_VERSIONS; do
	for file in "$root"/hack/e2e/*.yaml; do
		if "$VENV/bin/python" -m kubernetes_validate --strict --quiet --no-warn -k "$version" "$file"; then
			echo "validate-manifests: ${file#"$root"/}: valid for Kubernetes $version (strict)"
		else
			echo "validate-manifests: ${file#"$root"/}: INVALID for Kubernetes $version" >&2
			status=1
		fi
	done
done

# --- 2. CEL matchConditions ---------------------------------------------------------------------
"$VENV/bin/python" "$root/hack/check-webhook-conditions.py" "${rendered[@]}" || status=1

if [[ $status -ne 0 ]]; then
	echo "validate-manifests: FAILED" >&2
fi
exit $status
