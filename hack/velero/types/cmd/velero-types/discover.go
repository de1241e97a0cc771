package main

import (
	"fmt"
	"strings"
)

// A reader is a function by which Velero reads a ConfigMap with json.Unmarshal into the type
// it returns (first result, through a pointer); the type is the key tree.
type reader struct {
	configMap string
	under     string   // the directory searched, with the directories below it
	funcs     []string // the function's names over the releases
}

// readers are found by name; where the types live is read from their result types, so a move
// between packages (pkg/nodeagent.Configs up to 1.16, pkg/types.NodeAgentConfigs from 1.17)
// needs no change here.
var readers = []reader{
	// pkg/nodeagent/node_agent.go GetConfigs, every release.
	{configMap: "node-agent", under: "pkg/nodeagent", funcs: []string{"GetConfigs"}},
	// pkg/repository/maintenance.go GetMaintenanceJobConfig (1.15),
	// pkg/repository/maintenance/maintenance.go getJobConfig (1.16+); none in 1.14.
	{configMap: "repo-maintenance", under: "pkg/repository", funcs: []string{"GetMaintenanceJobConfig", "getJobConfig"}},
}

// found is the type one ConfigMap is unmarshalled into, and what says so.
type found struct {
	configMap string
	typ       qualified
	readers   []string // "file:line func"
}

// discover finds each reader's result type; a ConfigMap with no reader at this tag is left out.
// Every reader found for one ConfigMap must return the same type.
func discover(t *tree) ([]found, error) {
	var out []found
	for _, r := range readers {
		dirs, err := t.dirs(r.under)
		if err != nil {
			return nil, err
		}
		var f *found
		for _, dir := range dirs {
			for _, name := range r.funcs {
				fd, err := t.funcDecl(dir, name)
				if err != nil {
					return nil, err
				}
				if fd == nil {
					continue
				}
				typ, err := t.resultType(dir, fd)
				if err != nil {
					return nil, err
				}
				if typ.rel == "" {
					return nil, fmt.Errorf("%s: %s returns %s, outside Velero", r.configMap, name, typ.import_)
				}
				at := t.position(fd.Pos()) + " " + name
				switch {
				case f == nil:
					f = &found{configMap: r.configMap, typ: typ, readers: []string{at}}
				case f.typ != typ:
					return nil, fmt.Errorf("%s: %s returns %s, %s returns %s", r.configMap, f.readers[0], f.typ.import_+"."+f.typ.name, at, typ.import_+"."+typ.name)
				default:
					f.readers = append(f.readers, at)
				}
			}
		}
		if f != nil {
			out = append(out, *f)
		}
	}
	return out, nil
}

// reflectSource is the "source" of a ConfigMap read by reflection.
func (f found) reflectSource() string {
	return fmt.Sprintf("reflect: %s.%s", f.typ.import_, f.typ.name)
}

// String says where the type was found, for the log.
func (f found) String() string {
	return fmt.Sprintf("%s: %s.%s, the result of %s", f.configMap, f.typ.import_, f.typ.name, strings.Join(f.readers, ", "))
}
