// Command velero-types writes the key trees of the ConfigMaps Velero reads at one release into
// testdata/velero-types/<tag>.json (hack/velero/types/generate.sh runs it for every release).
//
//	velero-types gen -tag v1.18.3 -out testdata/velero-types/v1.18.3.json -work _out/velero-types/v1.18.3
//	velero-types table testdata/velero-types/*.json   # the first release of each key, Markdown
//
// gen finds the Go types in that tag's source (discover.go), writes a throw-away main module in
// -work that requires Velero at the tag and walks those types with reflect (package walk), runs
// it, and adds the backup-repository keys read from the source with go/ast (backuprepo.go).
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/node-agent-webhook/node-agent-webhook/hack/velero/types/walk"
)

// toolsModule is this module's path: the throw-away module requires it for package walk.
const toolsModule = "github.com/node-agent-webhook/node-agent-webhook/hack/velero/types"

// kinds are every ConfigMap a file may describe; the ones a tag does not read are "absent".
var kinds = []string{"node-agent", "repo-maintenance", "backup-repository"}

// Document is one testdata/velero-types/<tag>.json; members in JSON-name order, so the file's
// keys are sorted.
type Document struct {
	Absent      map[string]string         `json:"absent,omitempty"`
	ConfigMaps  map[string]walk.ConfigMap `json:"configMaps"`
	GeneratedBy string                    `json:"generatedBy"`
	Velero      string                    `json:"velero"`
}

func main() {
	if len(os.Args) < 2 {
		fail(errors.New("usage: velero-types gen|table ..."))
	}
	var err error
	switch os.Args[1] {
	case "gen":
		err = gen(os.Args[2:])
	case "table":
		err = table(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: gen or table", os.Args[1])
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "velero-types:", err)
	os.Exit(1)
}

func gen(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ExitOnError)
	tag := fs.String("tag", "", "the Velero release, e.g. v1.18.3")
	out := fs.String("out", "", "the JSON file to write")
	work := fs.String("work", "", "the directory for the throw-away module")
	tools := fs.String("tools", ".", "this module's directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *tag == "" || *out == "" || *work == "" {
		return errors.New("gen needs -tag, -out and -work")
	}
	toolsDir, err := filepath.Abs(*tools)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*work, 0o755); err != nil {
		return err
	}
	mod, err := download(*work, *tag)
	if err != nil {
		return err
	}
	t := newTree(mod.Dir)
	found, err := discover(t)
	if err != nil {
		return fmt.Errorf("%s: %w", *tag, err)
	}
	for _, f := range found {
		fmt.Fprintf(os.Stderr, "%s %s\n", *tag, f)
	}
	reflected, err := reflectTypes(*work, toolsDir, *tag, mod.GoMod, found)
	if err != nil {
		return fmt.Errorf("%s: %w", *tag, err)
	}
	doc := Document{ConfigMaps: reflected, GeneratedBy: "make velero-types (hack/velero/types)", Velero: *tag}
	br, ok, err := backupRepository(t)
	if err != nil {
		return fmt.Errorf("%s: backup-repository: %w", *tag, err)
	}
	if ok {
		doc.ConfigMaps["backup-repository"] = br
	}
	for _, kind := range kinds {
		if _, ok := doc.ConfigMaps[kind]; !ok {
			if doc.Absent == nil {
				doc.Absent = map[string]string{}
			}
			doc.Absent[kind] = "not read by Velero " + *tag
		}
	}
	if _, ok := doc.ConfigMaps["node-agent"]; !ok {
		return fmt.Errorf("%s: no node-agent config type found", *tag)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	if err := os.WriteFile(*out+".tmp", buf.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(*out+".tmp", *out)
}

// module is what `go mod download -json` says of a module version.
type module struct {
	Dir, GoMod, Error string
}

func download(work, tag string) (module, error) {
	var m module
	stdout, err := goCmd(work, "mod", "download", "-json", veleroModule+"@"+tag)
	if jerr := json.Unmarshal(stdout, &m); jerr != nil && err == nil {
		err = jerr
	}
	if m.Error != "" {
		return m, fmt.Errorf("go mod download %s@%s: %s", veleroModule, tag, m.Error)
	}
	if err != nil || m.Dir == "" {
		return m, fmt.Errorf("go mod download %s@%s: %v", veleroModule, tag, err)
	}
	return m, nil
}

// reflectTypes writes and runs the throw-away module that walks the found types.
func reflectTypes(work, toolsDir, tag, veleroGoMod string, found []found) (map[string]walk.ConfigMap, error) {
	raw, err := goCmd(work, "mod", "edit", "-json", veleroGoMod)
	if err != nil {
		return nil, err
	}
	var vmod struct {
		Go      string
		Replace []struct {
			Old, New struct{ Path, Version string }
		}
	}
	if err := json.Unmarshal(raw, &vmod); err != nil {
		return nil, err
	}
	var gomod strings.Builder
	fmt.Fprintf(&gomod, "// Generated by hack/velero/types (cmd/velero-types): walks Velero %s's config types.\n", tag)
	fmt.Fprintf(&gomod, "module velero-types.local/%s\n\ngo %s\n\n", strings.ReplaceAll(tag, ".", "-"), vmod.Go)
	fmt.Fprintf(&gomod, "require %s %s\n\nrequire %s v0.0.0-00010101000000-000000000000\n\n", veleroModule, tag, toolsModule)
	fmt.Fprintf(&gomod, "replace %s => %s\n", toolsModule, toolsDir)
	fmt.Fprintf(&gomod, "\n// Velero %s's own replaces.\n", tag)
	for _, r := range vmod.Replace {
		if strings.HasPrefix(r.New.Path, ".") {
			return nil, fmt.Errorf("Velero's go.mod replaces %s with the local %s", r.Old.Path, r.New.Path)
		}
		fmt.Fprintf(&gomod, "replace %s => %s\n", strings.TrimSpace(r.Old.Path+" "+r.Old.Version), strings.TrimSpace(r.New.Path+" "+r.New.Version))
	}

	var main strings.Builder
	fmt.Fprintf(&main, "// Generated by hack/velero/types (cmd/velero-types) for Velero %s.\npackage main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n\t\"reflect\"\n\n\t\"%s/walk\"\n", tag, toolsModule)
	alias := map[string]string{}
	var imports []string
	for _, f := range found {
		if _, ok := alias[f.typ.import_]; !ok {
			alias[f.typ.import_] = fmt.Sprintf("p%d", len(alias))
			imports = append(imports, f.typ.import_)
		}
	}
	for _, p := range imports {
		fmt.Fprintf(&main, "\t%s %q\n", alias[p], p)
	}
	main.WriteString(")\n\nfunc main() {\n\tif err := walk.Main(os.Stdout, []walk.Root{\n")
	for _, f := range found {
		fmt.Fprintf(&main, "\t\t{ConfigMap: %q, Source: %q, Type: reflect.TypeOf((*%s.%s)(nil)).Elem()},\n", f.configMap, f.reflectSource(), alias[f.typ.import_], f.typ.name)
	}
	main.WriteString("\t}); err != nil {\n\t\tfmt.Fprintln(os.Stderr, err)\n\t\tos.Exit(1)\n\t}\n}\n")

	// Tidy only when the go.mod we write changes (tidy rewrites go.mod, so compare with a copy).
	written := filepath.Join(work, "go.mod.written")
	old, _ := os.ReadFile(written)
	if _, err := os.Stat(filepath.Join(work, "go.sum")); err != nil || !bytes.Equal(old, []byte(gomod.String())) {
		os.Remove(filepath.Join(work, "go.sum"))
		for name, text := range map[string]string{"go.mod": gomod.String(), "main.go": main.String()} {
			if err := os.WriteFile(filepath.Join(work, name), []byte(text), 0o644); err != nil {
				return nil, err
			}
		}
		if _, err := goCmd(work, "mod", "tidy"); err != nil {
			return nil, err
		}
		if err := os.WriteFile(written, []byte(gomod.String()), 0o644); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(work, "main.go"), []byte(main.String()), 0o644); err != nil {
		return nil, err
	}
	// -trimpath as hack/velero/build.sh builds: the Go build cache then shares Velero's
	// dependencies with the node-agent builds.
	stdout, err := goCmd(work, "run", "-mod=mod", "-trimpath", ".")
	if err != nil {
		return nil, err
	}
	var out map[string]walk.ConfigMap
	if err := json.Unmarshal(stdout, &out); err != nil {
		return nil, fmt.Errorf("the reflect program's output: %w", err)
	}
	return out, nil
}

// goCmd runs `nice go ARGS` in dir with this toolchain and no workspace; stderr passes through.
func goCmd(dir string, args ...string) ([]byte, error) {
	cmd := exec.Command("nice", append([]string{"go"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOWORK=off")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("go %s (in %s): %w", strings.Join(args, " "), dir, err)
	}
	return out, nil
}

// sortedKeys is m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
