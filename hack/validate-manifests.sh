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
#   PYTHON         interpreter used to create the tool venv (default python3)
#   VENV           where the Python tools are installed (default _out/venv; created when missing)
#   KUBECTL, OUT_DIR as for hack/render-manifests.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KUBE_VERSIONS="${KUBE_VERSIONS:-1.30.0 1.37.0}"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-$root/_out/venv}"
OUT_DIR="${OUT_DIR:-$root/_out/manifests}"
export OUT_DIR

# Pinned, so a new release of either cannot change the verdict under us.
KUBERNETES_VALIDATE_VERSION="1.37.0"
CEL_EXPR_PYTHON_VERSION="0.1.3"

# --- tools: a private venv, so neither a PEP 668 system Python nor the user's site-packages matter
tools_ok() {
	"$VENV/bin/python" - "$KUBERNETES_VALIDATE_VERSION" "$CEL_EXPR_PYTHON_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
import cel_expr_python.cel, kubernetes_validate, yaml  # noqa: F401
sys.exit(0 if (version("kubernetes-validate"), version("cel-expr-python")) == tuple(sys.argv[1:3]) else 1)
PY
}
if ! tools_ok; then
	echo "validate-manifests: installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION and cel-expr-python==$CEL_EXPR_PYTHON_VERSION into ${VENV#"$root"/}"
	"$PYTHON" -m venv "$VENV"
	"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
		"kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "cel-expr-python==$CEL_EXPR_PYTHON_VERSION"
	tools_ok || { echo "validate-manifests: the tools did not install" >&2; exit 1; }
fi

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
		if "$VENV/bin/kubernetes-validate" --strict --quiet --no-warn -k "$version" "$file"; then
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
		if "$VENV/bin/kubernetes-validate" --strict --quiet --no-warn -k "$version" "$file"; then
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
