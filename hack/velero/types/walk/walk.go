// Package walk turns a Go type into the tree of JSON keys that encoding/json's Unmarshal accepts
// for it, following encoding/json's own rules (go/src/encoding/json/encode.go typeFields and
// decode.go indirect), so that the tree is what Velero's json.Unmarshal of a ConfigMap value
// reads, not what a reader of the source believes it reads.
package walk

import (
	"encoding"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"unicode"
)

// Kind is what JSON value a node accepts.
type Kind string

const (
	Object      Kind = "object"      // a struct (or pointer to one): Fields
	Map         Kind = "map"         // a map: Values, and KeyType when the key is not string
	Array       Kind = "array"       // a slice or array: Items
	String      Kind = "string"      // a string, []byte (base64) or a `,string`-quoted scalar
	Number      Kind = "number"      // any Go int, uint or float; GoType says which
	Bool        Kind = "bool"        // a bool
	Any         Kind = "any"         // an interface: any JSON value
	Unmarshaler Kind = "unmarshaler" // a type with its own UnmarshalJSON or UnmarshalText
)

// Fields are an object's members by JSON name; a pointer so that a struct with none still
// prints "fields": {}.
type Fields map[string]*Node

// Node is one JSON value's shape. Go declares the members in JSON-name order, so that the
// encoding is sorted as testdata/velero-types promises.
type Node struct {
	Fields         *Fields `json:"fields,omitempty"`
	GoType         string  `json:"goType"`
	Items          *Node   `json:"items,omitempty"`
	KeyType        string  `json:"keyType,omitempty"`
	Kind           Kind    `json:"kind"`
	KubernetesType string  `json:"kubernetesType,omitempty"`
	// Recursive marks a struct already being expanded further up: its fields are there.
	Recursive bool  `json:"recursive,omitempty"`
	Values    *Node `json:"values,omitempty"`
}

// ConfigMap is one ConfigMap's tree and where it was read from.
type ConfigMap struct {
	Root   *Node  `json:"root"`
	Source string `json:"source"`
}

// Root names a Go type to walk for one ConfigMap.
type Root struct {
	ConfigMap string
	Source    string
	Type      reflect.Type
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// Type walks t.
func Type(t reflect.Type) (*Node, error) {
	return walk(t, map[reflect.Type]bool{})
}

// Main walks every root and writes them as one JSON object by ConfigMap: the program that
// cmd/velero-types generates for a Velero tag calls it.
func Main(w io.Writer, roots []Root) error {
	out := map[string]ConfigMap{}
	for _, r := range roots {
		node, err := Type(r.Type)
		if err != nil {
			return fmt.Errorf("%s (%s): %w", r.ConfigMap, r.Type, err)
		}
		out[r.ConfigMap] = ConfigMap{Root: node, Source: r.Source}
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// unmarshals reports whether encoding/json hands a value of t to t's own UnmarshalJSON or
// UnmarshalText: it looks through pointers and at the pointer to an addressable value, which
// struct fields, slice items and map values all are.
func unmarshals(t reflect.Type) bool {
	for _, u := range []reflect.Type{jsonUnmarshaler, textUnmarshaler} {
		if t.Implements(u) || (t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(u)) {
			return true
		}
	}
	return false
}

// kubernetesType is "<pkgpath>.<Name>" for a named type from a k8s.io/ package, else "".
func kubernetesType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer && t.Name() == "" {
		t = t.Elem()
	}
	if t.Name() == "" || !strings.HasPrefix(t.PkgPath(), "k8s.io/") {
		return ""
	}
	return t.PkgPath() + "." + t.Name()
}

func walk(t reflect.Type, expanding map[reflect.Type]bool) (*Node, error) {
	node := &Node{GoType: t.String(), KubernetesType: kubernetesType(t)}
	// encoding/json's indirect: an Unmarshaler is found before a pointer is followed.
	base := t
	for {
		if unmarshals(base) {
			node.Kind = Unmarshaler
			return node, nil
		}
		if base.Kind() != reflect.Pointer {
			break
		}
		base = base.Elem()
	}
	switch base.Kind() {
	case reflect.Struct:
		node.Kind = Object
		if expanding[base] {
			node.Recursive = true
			return node, nil
		}
		expanding[base] = true
		defer delete(expanding, base)
		fields := Fields{}
		for _, f := range typeFields(base) {
			child, err := walk(f.typ, expanding)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f.name, err)
			}
			if f.quoted {
				child = &Node{GoType: child.GoType, Kind: String, KubernetesType: child.KubernetesType}
			}
			fields[f.name] = child
		}
		node.Fields = &fields
	case reflect.Map:
		switch key := base.Key(); {
		case key.Kind() == reflect.String, isInteger(key.Kind()), reflect.PointerTo(key).Implements(textUnmarshaler):
			if key.String() != "string" {
				node.KeyType = key.String()
			}
		default:
			return nil, fmt.Errorf("encoding/json cannot decode a map with %s keys", key)
		}
		node.Kind = Map
		values, err := walk(base.Elem(), expanding)
		if err != nil {
			return nil, err
		}
		node.Values = values
	case reflect.Slice, reflect.Array:
		if base.Kind() == reflect.Slice && base.Elem().Kind() == reflect.Uint8 && !unmarshals(base.Elem()) {
			node.Kind = String // base64, decode.go literalStore
			return node, nil
		}
		node.Kind = Array
		items, err := walk(base.Elem(), expanding)
		if err != nil {
			return nil, err
		}
		node.Items = items
	case reflect.String:
		node.Kind = String
	case reflect.Bool:
		node.Kind = Bool
	case reflect.Float32, reflect.Float64:
		node.Kind = Number
	case reflect.Interface:
		if base.NumMethod() > 0 {
			return nil, fmt.Errorf("encoding/json cannot decode into the non-empty interface %s", base)
		}
		node.Kind = Any
	default:
		if !isInteger(base.Kind()) {
			return nil, fmt.Errorf("encoding/json cannot decode into %s", base)
		}
		node.Kind = Number
	}
	return node, nil
}

func isInteger(k reflect.Kind) bool {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return true
	}
	return false
}

// field is one JSON member of a struct, as encoding/json's typeFields finds it.
type field struct {
	name   string
	tagged bool
	index  []int
	typ    reflect.Type // the declared type, pointer and all
	quoted bool         // `json:",string"` on a scalar: the JSON value is a string
}

// typeFields is encoding/json's typeFields (encode.go), reduced to what decoding needs: a
// breadth-first walk of embedded structs, then Go's rules for hidden fields, except that a
// field with a JSON tag dominates an untagged one at the same depth.
func typeFields(t reflect.Type) []field {
	var fields []field
	next := []field{{typ: t}}
	var count, nextCount map[reflect.Type]int
	visited := map[reflect.Type]bool{}
	for len(next) > 0 {
		current := next
		next = nil
		count, nextCount = nextCount, map[reflect.Type]int{}
		for _, f := range current {
			if visited[f.typ] {
				continue
			}
			visited[f.typ] = true
			for i := range f.typ.NumField() {
				sf := f.typ.Field(i)
				if sf.Anonymous {
					ft := sf.Type
					if ft.Kind() == reflect.Pointer {
						ft = ft.Elem()
					}
					if !sf.IsExported() && ft.Kind() != reflect.Struct {
						continue
					}
				} else if !sf.IsExported() {
					continue
				}
				tag := sf.Tag.Get("json")
				if tag == "-" {
					continue
				}
				name, opts, _ := strings.Cut(tag, ",")
				if !validTag(name) {
					name = ""
				}
				index := append(slices.Clone(f.index), i)
				ft := sf.Type
				if ft.Name() == "" && ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				quoted := false
				if slices.Contains(strings.Split(opts, ","), "string") {
					switch k := ft.Kind(); {
					case k == reflect.Bool, k == reflect.Float32, k == reflect.Float64, isInteger(k):
						quoted = true
					}
				}
				if name != "" || !sf.Anonymous || ft.Kind() != reflect.Struct {
					tagged := name != ""
					if name == "" {
						name = sf.Name
					}
					fields = append(fields, field{name: name, tagged: tagged, index: index, typ: sf.Type, quoted: quoted})
					if count[f.typ] > 1 {
						// Several embeddings of the same struct at one depth: the duplicate makes
						// the annihilation below drop the name, as encoding/json does.
						fields = append(fields, fields[len(fields)-1])
					}
					continue
				}
				nextCount[ft]++
				if nextCount[ft] == 1 {
					next = append(next, field{name: ft.Name(), index: index, typ: ft})
				}
			}
		}
	}
	slices.SortFunc(fields, func(a, b field) int {
		if c := strings.Compare(a.name, b.name); c != 0 {
			return c
		}
		if c := len(a.index) - len(b.index); c != 0 {
			return c
		}
		if a.tagged != b.tagged {
			if a.tagged {
				return -1
			}
			return 1
		}
		return slices.Compare(a.index, b.index)
	})
	var out []field
	for i := 0; i < len(fields); {
		j := i + 1
		for j < len(fields) && fields[j].name == fields[i].name {
			j++
		}
		// dominantField: the shallowest wins, a tagged one among equals, else none.
		if j-i == 1 || len(fields[i].index) != len(fields[i+1].index) || fields[i].tagged != fields[i+1].tagged {
			out = append(out, fields[i])
		}
		i = j
	}
	return out
}

// validTag is encoding/json's isValidTag.
func validTag(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		switch {
		case strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c):
		case !unicode.IsLetter(c) && !unicode.IsDigit(c):
			return false
		}
	}
	return true
}
