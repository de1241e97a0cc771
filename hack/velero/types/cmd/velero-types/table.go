package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/node-agent-webhook/node-agent-webhook/hack/velero/types/walk"
)

// table prints, from the generated files, the release each key first appears in: every top-level
// key, and any deeper key that appeared later than its parent or went away. Map values are
// written <name>, array items [].
func table(files []string) error {
	var docs []Document
	for _, name := range files {
		raw, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		var d Document
		if err := json.Unmarshal(raw, &d); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		docs = append(docs, d)
	}
	sort.Slice(docs, func(i, j int) bool { return versionLess(docs[i].Velero, docs[j].Velero) })
	if len(docs) == 0 {
		return fmt.Errorf("no files")
	}
	newest := docs[len(docs)-1].Velero
	fmt.Println("| ConfigMap | key | first release | kind and Go type (newest) |")
	fmt.Println("| --- | --- | --- | --- |")
	for _, kind := range kinds {
		type seen struct {
			first, last, goType string
			kind                walk.Kind
		}
		paths := map[string]*seen{}
		for _, d := range docs {
			cm, ok := d.ConfigMaps[kind]
			if !ok {
				continue
			}
			flat := map[string]*walk.Node{}
			flatten(cm.Root, "", flat)
			for p, n := range flat {
				s := paths[p]
				if s == nil {
					s = &seen{first: d.Velero}
					paths[p] = s
				}
				s.last, s.goType, s.kind = d.Velero, n.GoType, n.Kind
			}
		}
		for _, p := range sortedKeys(paths) {
			s := paths[p]
			parent := paths[parentPath(p)]
			if parent != nil && parent.first == s.first && s.last == newest {
				continue
			}
			first := s.first
			if s.last != newest {
				first += " (last in " + s.last + ")"
			}
			// A | in a cell ends it, even in code.
			fmt.Printf("| %s | `%s` | %s | %s `%s` |\n", kind, p, first, s.kind, strings.ReplaceAll(s.goType, "|", "\\|"))
		}
	}
	return nil
}

func flatten(n *walk.Node, prefix string, out map[string]*walk.Node) {
	if n.Fields != nil {
		for name, child := range *n.Fields {
			p := name
			if prefix != "" {
				p = prefix + "." + name
			}
			out[p] = child
			flatten(child, p, out)
		}
	}
	if n.Values != nil {
		p := prefix + ".<name>"
		out[p] = n.Values
		flatten(n.Values, p, out)
	}
	if n.Items != nil {
		p := prefix + "[]"
		out[p] = n.Items
		flatten(n.Items, p, out)
	}
}

// parentPath strips the last segment: ".x", ".<name>" or "[]"; "" for a top-level key.
func parentPath(p string) string {
	if strings.HasSuffix(p, "[]") {
		return strings.TrimSuffix(p, "[]")
	}
	if i := strings.LastIndex(p, "."); i >= 0 {
		return p[:i]
	}
	return ""
}

// versionLess orders release tags v1.MINOR.PATCH numerically.
func versionLess(a, b string) bool {
	var x, y [3]int
	fmt.Sscanf(a, "v%d.%d.%d", &x[0], &x[1], &x[2])
	fmt.Sscanf(b, "v%d.%d.%d", &y[0], &y[1], &y[2])
	for i := range x {
		if x[i] != y[i] {
			return x[i] < y[i]
		}
	}
	return false
}
