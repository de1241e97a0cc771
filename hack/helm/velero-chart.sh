#!/usr/bin/env bash
# Velero's own Helm chart (the pinned copy in testdata/velero-chart/<version>, never downloaded)
# rendered as a user who runs node-agent-webhook beside it would install it, for
# tests/e2e/velero_chart.rs, which applies what this prints to the real API server:
#
#   hack/helm/velero-chart.sh velero [VALUES.yaml...]   # the Velero chart: release velero in
#       # namespace velero, testdata/velero-chart/values.yaml, then each VALUES file on top
#   hack/helm/velero-chart.sh ours                      # our chart (charts/node-agent-webhook)
#       # with testdata/velero-chart/ours-values.yaml: the names NOTES.txt tells such a user to set
#
# Both print YAML on stdout, with the helm of hack/helm/build.sh (built once, cached).
# Environment: HELM (a helm binary to use instead), VELERO_CHART_VERSION (default 12.1.0).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="${here%/hack/helm}"
data="$root/testdata/velero-chart"
chart="$data/${VELERO_CHART_VERSION:-12.1.0}"
HELM="${HELM:-$(bash "$here/build.sh" 2>/dev/null | tail -n 1)}"

case "${1:-}" in
velero)
	shift
	[[ -f "$chart/Chart.yaml" ]] || { echo "velero-chart: no chart in $chart (see $data/README.md)" >&2; exit 2; }
	values=(-f "$data/values.yaml")
	for file in "$@"; do values+=(-f "$file"); done
	"$HELM" template velero "$chart" --namespace velero "${values[@]}"
	;;
ours)
	"$HELM" template node-agent-webhook "$root/charts/node-agent-webhook" --namespace velero -f "$data/ours-values.yaml"
	;;
*)
	echo "usage: hack/helm/velero-chart.sh velero [VALUES.yaml...] | ours" >&2
	exit 2
	;;
esac
