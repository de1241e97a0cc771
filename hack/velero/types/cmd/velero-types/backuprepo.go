package main

import (
	"fmt"
	"go/ast"
	"go/token"
	"sort"
	"strings"

	"github.com/node-agent-webhook/node-agent-webhook/hack/velero/types/walk"
)

// The backup-repository ConfigMap has no Go type: the Velero server's BackupRepository
// controller (pkg/controller/backup_repository_controller.go getBackupRepositoryConfig, 1.15+)
// unmarshals the value of the repository type's key into a map, prints each entry with %v into
// BackupRepository.spec.repositoryConfig, and the repository provider then looks keys up in that
// map by name. So its keys are read from the source: the constants that index the map where
// spec.repositoryConfig is handed over, and each key's JSON kind from how its readers parse it.
const (
	configReaderDir  = "pkg/controller"
	configReaderFunc = "getBackupRepositoryConfig"
	providerDir      = "pkg/repository/provider"
)

// basicKinds maps Go's predeclared types to the JSON value they take.
var basicKinds = map[string]walk.Kind{"string": walk.String, "bool": walk.Bool, "float32": walk.Number, "float64": walk.Number}

func init() {
	for _, n := range []string{"int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64"} {
		basicKinds[n] = walk.Number
	}
}

// key is one key of the map and where it comes from.
type key struct {
	name    string    // the string Velero looks up
	ref     qualified // the constant that holds it
	at      string    // where it indexes the map
	readers []string
	kind    walk.Kind
	goTypes []string
}

// backupRepository reads the backup-repository ConfigMap's keys; ok is false when this tag has
// no such ConfigMap.
func backupRepository(t *tree) (cm walk.ConfigMap, ok bool, err error) {
	fd, err := t.funcDecl(configReaderDir, configReaderFunc)
	if err != nil || fd == nil {
		return cm, false, err
	}
	if fd.Type.Results == nil || len(fd.Type.Results.List) == 0 {
		return cm, false, fmt.Errorf("%s returns nothing", configReaderFunc)
	}
	rootType := exprString(fd.Type.Results.List[0].Type)
	target := unmarshalTarget(fd)
	keysFunc, param, err := repositoryConfigParam(t)
	if err != nil {
		return cm, false, err
	}
	keys, err := mapKeys(t, keysFunc, param)
	if err != nil {
		return cm, false, err
	}
	if err := readKinds(t, keysFunc, keys); err != nil {
		return cm, false, err
	}
	fields := walk.Fields{}
	var cited []string
	for _, k := range keys {
		fields[k.name] = &walk.Node{Kind: k.kind, GoType: strings.Join(k.goTypes, " | ")}
		cited = append(cited, fmt.Sprintf("%s (%s at %s): %s", k.name, k.ref, k.at, strings.Join(k.readers, "; ")))
	}
	source := fmt.Sprintf("go/ast: %s %s unmarshals the repository type's value into %s and stores it with %%v as BackupRepository spec.repositoryConfig (%s); %s %s(%s) keeps the keys %s; their kinds from their readers: %s",
		t.position(fd.Pos()), configReaderFunc, target, rootType,
		t.position(keysFunc.Pos()), keysFunc.Name.Name, param, names(keys), strings.Join(cited, "; "))
	return walk.ConfigMap{Root: &walk.Node{Kind: walk.Object, GoType: rootType, Fields: &fields}, Source: source}, true, nil
}

func names(keys []*key) string {
	var out []string
	for _, k := range keys {
		out = append(out, k.name)
	}
	return strings.Join(out, ", ")
}

// unmarshalTarget is the declared type of the variable fd hands to json.Unmarshal.
func unmarshalTarget(fd *ast.FuncDecl) string {
	var target string
	vars := map[string]string{}
	ast.Inspect(fd.Body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.ValueSpec:
			for _, id := range n.Names {
				if n.Type != nil {
					vars[id.Name] = exprString(n.Type)
				}
			}
		case *ast.CallExpr:
			if sel, ok := n.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Unmarshal" && len(n.Args) == 2 {
				if u, ok := n.Args[1].(*ast.UnaryExpr); ok && u.Op == token.AND {
					if id, ok := u.X.(*ast.Ident); ok {
						target = vars[id.Name]
					}
				}
			}
		}
		return true
	})
	if target == "" {
		return "a map"
	}
	return target
}

// repositoryConfigParam finds the provider function that is handed BackupRepository
// spec.repositoryConfig, and the parameter that receives it.
func repositoryConfigParam(t *tree) (*ast.FuncDecl, string, error) {
	files, err := t.pkg(providerDir)
	if err != nil {
		return nil, "", err
	}
	var fd *ast.FuncDecl
	var param string
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || fd != nil {
				return fd == nil
			}
			for i, arg := range call.Args {
				sel, ok := arg.(*ast.SelectorExpr)
				if !ok || sel.Sel.Name != "RepositoryConfig" {
					continue
				}
				if spec, ok := sel.X.(*ast.SelectorExpr); !ok || spec.Sel.Name != "Spec" {
					continue
				}
				var name string
				switch fun := call.Fun.(type) {
				case *ast.Ident:
					name = fun.Name
				case *ast.SelectorExpr:
					name = fun.Sel.Name // also a function-table field named after the function
				}
				callee, err := t.funcDecl(providerDir, name)
				if err != nil || callee == nil {
					continue
				}
				if p := paramName(callee, i); p != "" {
					fd, param = callee, p
				}
			}
			return true
		})
	}
	if fd == nil {
		return nil, "", fmt.Errorf("no function in %s is handed a BackupRepository's spec.repositoryConfig", providerDir)
	}
	return fd, param, nil
}

// paramName is the name of fd's i-th parameter, "" when there is none.
func paramName(fd *ast.FuncDecl, i int) string {
	for _, field := range fd.Type.Params.List {
		if i < len(field.Names) {
			return field.Names[i].Name
		}
		i -= len(field.Names)
	}
	return ""
}

// mapKeys are the constants fd looks param up by: param[K], or param[x] with x ranging over a
// slice literal of them.
func mapKeys(t *tree, fd *ast.FuncDecl, param string) ([]*key, error) {
	file := t.file(providerDir, fd.Pos())
	literals := map[string]*ast.CompositeLit{} // variables assigned a slice literal
	ranged := map[string]*ast.CompositeLit{}   // range variables over one
	var exprs []ast.Expr
	ast.Inspect(fd.Body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.AssignStmt:
			for i, lhs := range n.Lhs {
				if id, ok := lhs.(*ast.Ident); ok && i < len(n.Rhs) {
					if lit, ok := n.Rhs[i].(*ast.CompositeLit); ok {
						literals[id.Name] = lit
					}
				}
			}
		case *ast.RangeStmt:
			lit, _ := n.X.(*ast.CompositeLit)
			if id, ok := n.X.(*ast.Ident); ok {
				lit = literals[id.Name]
			}
			if v, ok := n.Value.(*ast.Ident); ok && lit != nil {
				ranged[v.Name] = lit
			}
		case *ast.IndexExpr:
			if id, ok := n.X.(*ast.Ident); !ok || id.Name != param {
				return true
			}
			if id, ok := n.Index.(*ast.Ident); ok && ranged[id.Name] != nil {
				exprs = append(exprs, ranged[id.Name].Elts...)
			} else {
				exprs = append(exprs, n.Index)
			}
		}
		return true
	})
	var keys []*key
	seen := map[string]bool{}
	for _, e := range exprs {
		ref, ok := t.resolve(providerDir, file, e)
		if !ok || ref.rel == "" {
			return nil, fmt.Errorf("%s: %s[%s] is not indexed by a Velero constant", t.position(e.Pos()), param, exprString(e))
		}
		name, ok, err := t.constString(ref.rel, ref.name)
		if err != nil || !ok {
			return nil, fmt.Errorf("%s: %s is not a string constant in %s (%v)", t.position(e.Pos()), ref, ref.rel, err)
		}
		if seen[name] {
			continue
		}
		seen[name] = true
		keys = append(keys, &key{name: name, ref: ref, at: t.position(e.Pos())})
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: %s looks up no key in %s", t.position(fd.Pos()), fd.Name.Name, param)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].name < keys[j].name })
	return keys, nil
}

// readKinds finds every place under pkg/ (but keysFunc) that reads a key's value and how it
// parses it: handed to a function (its result type), converted to a named type (its underlying
// type), or looked up and type-asserted. Every key needs a reader, and its readers must agree on
// the JSON kind; the Go types they parse into are all kept.
func readKinds(t *tree, keysFunc *ast.FuncDecl, keys []*key) error {
	dirs, err := t.dirs("pkg")
	if err != nil {
		return err
	}
	byRef := map[qualified]*key{}
	for _, k := range keys {
		byRef[k.ref] = k
	}
	for _, dir := range dirs {
		files, err := t.pkg(dir)
		if err != nil {
			return err
		}
		for _, f := range files {
			for _, d := range f.Decls {
				fd, ok := d.(*ast.FuncDecl)
				if !ok || fd == keysFunc || fd.Body == nil {
					continue
				}
				var stack []ast.Node
				var ferr error
				ast.Inspect(fd.Body, func(n ast.Node) bool {
					if n == nil {
						stack = stack[:len(stack)-1]
						return true
					}
					defer func() { stack = append(stack, n) }()
					var ref qualified
					switch e := n.(type) {
					case *ast.SelectorExpr:
						r, ok := t.resolve(dir, f, e)
						if !ok {
							return true
						}
						ref = r
					case *ast.Ident:
						if _, isSel := stack[len(stack)-1].(*ast.SelectorExpr); isSel {
							return true
						}
						ref = qualified{rel: dir, import_: veleroModule + "/" + dir, name: e.Name}
					default:
						return true
					}
					k := byRef[ref]
					if k == nil {
						return true
					}
					goType, kind, ok := t.readAs(dir, f, fd, n.(ast.Expr), stack)
					if !ok {
						return true
					}
					if k.kind != "" && k.kind != kind {
						ferr = fmt.Errorf("%s: %s is read as %s here but as %s at %s", t.position(n.Pos()), k.name, kind, k.kind, k.readers[0])
					}
					k.kind = kind
					k.readers = append(k.readers, fmt.Sprintf("%s %s as %s", t.position(n.Pos()), fd.Name.Name, goType))
					if !contains(k.goTypes, goType) {
						k.goTypes = append(k.goTypes, goType)
						sort.Strings(k.goTypes)
					}
					return true
				})
				if ferr != nil {
					return ferr
				}
			}
		}
	}
	for _, k := range keys {
		if k.kind == "" {
			return fmt.Errorf("%s (%s): no reader found under pkg/ that parses it", k.name, k.ref)
		}
	}
	return nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// readAs is how the use u of a key constant (with its ancestors in stack) parses the value.
func (t *tree) readAs(dir string, f *ast.File, fd *ast.FuncDecl, u ast.Expr, stack []ast.Node) (string, walk.Kind, bool) {
	parent := stack[len(stack)-1]
	switch p := parent.(type) {
	case *ast.CallExpr: // helper(ctx, KEY, options, ...) returning the parsed value
		callee, ok := t.resolve(dir, f, p.Fun)
		if !ok || callee.rel == "" {
			return "", "", false
		}
		cd, err := t.funcDecl(callee.rel, callee.name)
		if err != nil || cd == nil || cd.Type.Results == nil || len(cd.Type.Results.List) == 0 {
			return "", "", false
		}
		return t.kindOf(callee.rel, t.file(callee.rel, cd.Pos()), cd.Type.Results.List[0].Type)
	case *ast.IndexExpr: // options[KEY]
		if p.Index != u || len(stack) < 2 {
			return "", "", false
		}
		switch g := stack[len(stack)-2].(type) {
		case *ast.CallExpr: // NamedType(options[KEY])
			conv, ok := t.resolve(dir, f, g.Fun)
			if !ok || conv.rel == "" || len(g.Args) != 1 {
				return "", "", false
			}
			ts, err := t.typeSpec(conv.rel, conv.name)
			if err != nil || ts == nil {
				return "", "", false
			}
			_, kind, ok := t.kindOf(conv.rel, t.file(conv.rel, ts.Pos()), ts.Type)
			return conv.String(), kind, ok
		case *ast.AssignStmt: // v, found := options[KEY]; ... v.(T)
			if len(g.Rhs) != 1 || g.Rhs[0] != p {
				return "", "", false
			}
			v, ok := g.Lhs[0].(*ast.Ident)
			if !ok {
				return "", "", false
			}
			var asserted ast.Expr
			ast.Inspect(fd.Body, func(n ast.Node) bool {
				if ta, ok := n.(*ast.TypeAssertExpr); ok && ta.Type != nil && asserted == nil {
					if x, ok := ta.X.(*ast.Ident); ok && x.Name == v.Name && ta.Pos() > g.Pos() {
						asserted = ta.Type
					}
				}
				return asserted == nil
			})
			if asserted == nil {
				return "", "", false
			}
			return t.kindOf(dir, f, asserted)
		}
	}
	return "", "", false
}

// kindOf is the JSON kind of the type expression e (in file f of the package in dir), through
// named types declared in Velero; its Go type as written.
func (t *tree) kindOf(dir string, f *ast.File, e ast.Expr) (string, walk.Kind, bool) {
	if id, ok := e.(*ast.Ident); ok {
		if kind, ok := basicKinds[id.Name]; ok {
			return id.Name, kind, true
		}
	}
	ref, ok := t.resolve(dir, f, e)
	if !ok || ref.rel == "" {
		return "", "", false
	}
	ts, err := t.typeSpec(ref.rel, ref.name)
	if err != nil || ts == nil {
		return "", "", false
	}
	_, kind, ok := t.kindOf(ref.rel, t.file(ref.rel, ts.Pos()), ts.Type)
	return ref.String(), kind, ok
}
