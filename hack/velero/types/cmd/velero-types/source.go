package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// veleroModule is Velero's module path; every package it reads is under it.
const veleroModule = "github.com/vmware-tanzu/velero"

// tree is Velero's source at one tag, parsed with go/parser (non-test files only; mocks skipped)
// package by package on demand.
type tree struct {
	dir  string
	fset *token.FileSet
	pkgs map[string][]*ast.File // by directory relative to dir, slash-separated
}

func newTree(dir string) *tree {
	return &tree{dir: dir, fset: token.NewFileSet(), pkgs: map[string][]*ast.File{}}
}

// pkg parses the package in rel (e.g. "pkg/nodeagent"); nil when there is none.
func (t *tree) pkg(rel string) ([]*ast.File, error) {
	if files, ok := t.pkgs[rel]; ok {
		return files, nil
	}
	names, err := filepath.Glob(filepath.Join(t.dir, filepath.FromSlash(rel), "*.go"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var files []*ast.File
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(t.fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	t.pkgs[rel] = files
	return files, nil
}

// dirs lists rel and every directory below it that holds Go files, sorted, without mocks.
func (t *tree) dirs(rel string) ([]string, error) {
	var out []string
	root := filepath.Join(t.dir, filepath.FromSlash(rel))
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) && p == root {
				return fs.SkipDir
			}
			return err
		}
		if d.IsDir() && (d.Name() == "mocks" || d.Name() == "testdata") {
			return fs.SkipDir
		}
		if d.IsDir() {
			r, err := filepath.Rel(t.dir, p)
			if err != nil {
				return err
			}
			out = append(out, filepath.ToSlash(r))
		}
		return nil
	})
	return out, err
}

// position is "file:line" relative to the module, for citations.
func (t *tree) position(p token.Pos) string {
	pos := t.fset.Position(p)
	rel, err := filepath.Rel(t.dir, pos.Filename)
	if err != nil {
		rel = pos.Filename
	}
	return fmt.Sprintf("%s:%d", filepath.ToSlash(rel), pos.Line)
}

// file is the file of the package in rel that holds pos.
func (t *tree) file(rel string, pos token.Pos) *ast.File {
	for _, f := range t.pkgs[rel] {
		if f.FileStart <= pos && pos <= f.FileEnd {
			return f
		}
	}
	return nil
}

// funcDecl finds the function (not method) name in the package in rel.
func (t *tree) funcDecl(rel, name string) (*ast.FuncDecl, error) {
	files, err := t.pkg(rel)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil && fd.Name.Name == name {
				return fd, nil
			}
		}
	}
	return nil, nil
}

// typeSpec finds the type name in the package in rel.
func (t *tree) typeSpec(rel, name string) (*ast.TypeSpec, error) {
	files, err := t.pkg(rel)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		for _, d := range f.Decls {
			if gd, ok := d.(*ast.GenDecl); ok && gd.Tok == token.TYPE {
				for _, s := range gd.Specs {
					if ts := s.(*ast.TypeSpec); ts.Name.Name == name {
						return ts, nil
					}
				}
			}
		}
	}
	return nil, nil
}

// constString finds the string constant name in the package in rel.
func (t *tree) constString(rel, name string) (string, bool, error) {
	files, err := t.pkg(rel)
	if err != nil {
		return "", false, err
	}
	for _, f := range files {
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, s := range gd.Specs {
				vs := s.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if n.Name != name || i >= len(vs.Values) {
						continue
					}
					if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						v, err := strconv.Unquote(lit.Value)
						return v, err == nil, err
					}
				}
			}
		}
	}
	return "", false, nil
}

// qualified is a reference to a declaration: the package's directory (relative to the module)
// or, outside Velero, its import path, and the name.
type qualified struct {
	rel     string // "" when outside Velero
	import_ string
	name    string
}

func (q qualified) String() string { return path.Base(q.import_) + "." + q.name }

// resolve names what the identifier or pkg.Name selector e refers to, seen from the file f of
// the package in rel.
func (t *tree) resolve(rel string, f *ast.File, e ast.Expr) (qualified, bool) {
	switch e := e.(type) {
	case *ast.Ident:
		return qualified{rel: rel, import_: veleroModule + "/" + rel, name: e.Name}, true
	case *ast.SelectorExpr:
		x, ok := e.X.(*ast.Ident)
		if !ok || f == nil {
			return qualified{}, false
		}
		for _, imp := range f.Imports {
			p, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				continue
			}
			name := path.Base(p)
			if imp.Name != nil {
				name = imp.Name.Name
			}
			if name != x.Name {
				continue
			}
			q := qualified{import_: p, name: e.Sel.Name}
			if r, ok := strings.CutPrefix(p, veleroModule+"/"); ok {
				q.rel = r
			}
			return q, true
		}
	}
	return qualified{}, false
}

// resultType is the named type a function returns first, looking through one pointer: what
// the function that reads a ConfigMap unmarshals it into.
func (t *tree) resultType(rel string, fd *ast.FuncDecl) (qualified, error) {
	if fd.Type.Results == nil || len(fd.Type.Results.List) == 0 {
		return qualified{}, fmt.Errorf("%s returns nothing", fd.Name.Name)
	}
	e := fd.Type.Results.List[0].Type
	if star, ok := e.(*ast.StarExpr); ok {
		e = star.X
	}
	q, ok := t.resolve(rel, t.file(rel, fd.Pos()), e)
	if !ok {
		return qualified{}, fmt.Errorf("%s at %s: cannot resolve its result type", fd.Name.Name, t.position(fd.Pos()))
	}
	return q, nil
}

// exprString prints a type expression as written.
func exprString(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return exprString(e.X) + "." + e.Sel.Name
	case *ast.StarExpr:
		return "*" + exprString(e.X)
	case *ast.ArrayType:
		return "[]" + exprString(e.Elt)
	case *ast.MapType:
		return "map[" + exprString(e.Key) + "]" + exprString(e.Value)
	case *ast.InterfaceType:
		if e.Methods == nil || len(e.Methods.List) == 0 {
			return "interface {}"
		}
	}
	return fmt.Sprintf("%T", e)
}
