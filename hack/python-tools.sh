#!/usr/bin/env bash
# The Python tools of the manifest checks, pinned, in a venv of their own (so neither a PEP 668
# system Python nor the user's site-packages matter): kubernetes-validate (PyYAML comes with it)
# and cel-expr-python. Prints the venv's path, installing them first when missing.
#
# The venv lives in the user's cache, named for the pinned versions: like the Go and Cargo caches
# it is outside the clone, so a fresh clone (CI's included) reuses it and needs no package index.
#
#   VENV="$(bash hack/python-tools.sh)"
#
# Environment: VENV (another venv to use; the tools are installed into it when missing),
#   PYTHON (the interpreter a new venv is made from; default python3)
set -euo pipefail

# Pinned, so a new release of either cannot change the verdict under us.
KUBERNETES_VALIDATE_VERSION=1.37.0
CEL_EXPR_PYTHON_VERSION=0.1.3
PYTHON=${PYTHON:-python3}
VENV=${VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/node-agent-webhook/venv-kubernetes-validate-$KUBERNETES_VALIDATE_VERSION-cel-expr-python-$CEL_EXPR_PYTHON_VERSION}

tools_ok() { # venv
	"$1/bin/python" - "$KUBERNETES_VALIDATE_VERSION" "$CEL_EXPR_PYTHON_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
import cel_expr_python.cel, kubernetes_validate, yaml  # noqa: F401
sys.exit(0 if (version("kubernetes-validate"), version("cel-expr-python")) == tuple(sys.argv[1:3]) else 1)
PY
}

if ! tools_ok "$VENV"; then
	echo "python-tools: installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION and cel-expr-python==$CEL_EXPR_PYTHON_VERSION into $VENV" >&2
	# Built beside it and moved into place, so a clone running at the same time never sees half a venv.
	mkdir -p "$(dirname "$VENV")"
	building=$(mktemp -d "$VENV.building.XXXXXX")
	trap 'rm -rf "$building"' EXIT
	"$PYTHON" -m venv "$building"
	"$building/bin/python" -m pip install --quiet --disable-pip-version-check \
		"kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "cel-expr-python==$CEL_EXPR_PYTHON_VERSION" >&2
	rm -rf "$VENV"
	mv -T "$building" "$VENV"
	tools_ok "$VENV" || { echo "python-tools: the tools did not install into $VENV" >&2; exit 1; }
fi
echo "$VENV"
