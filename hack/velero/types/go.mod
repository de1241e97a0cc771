// Tools module for testdata/velero-types: reads the key trees of the ConfigMaps Velero reads,
// from Velero's own Go types (reflect, walk/) and source (go/ast, cmd/velero-types), per
// release. Standard library only, so that the throw-away module of each Velero tag, which
// requires this one through a local replace, gets Velero's dependency set unchanged.
module github.com/node-agent-webhook/node-agent-webhook/hack/velero/types

go 1.22
