package walk

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// quantity stands for resource.Quantity: its own UnmarshalJSON, on the pointer.
type quantity struct{ s string }

func (q *quantity) UnmarshalJSON(b []byte) error { q.s = string(b); return nil }

// level stands for a TextUnmarshaler used as a value and as a map key.
type level int

func (l *level) UnmarshalText(b []byte) error { *l = level(len(b)); return nil }

type Inner struct {
	Depth    int    `json:"depth"`
	Shadowed string `json:"name"` // hidden by outer's tagged "name" (shallower)
}

type inner2 struct {
	Promoted bool // untagged, unexported embedded struct: its exported fields still promote
}

type Twin1 struct{ Same int }
type Twin2 struct{ Same int } // same depth, both untagged: encoding/json drops "Same"

type Named struct {
	Child int `json:"child"`
}

type tree struct {
	Next *tree `json:"next"`
}

type sample struct {
	Name     string            `json:"name,omitempty"`
	Untagged float32           // no tag: the Go name
	Skipped  string            `json:"-"`
	Dash     string            `json:"-,"` // the name "-"
	private  string            //nolint:unused // unexported: skipped
	Ptr      *Named            `json:"ptr"`
	Labels   map[string]string `json:"labels"`
	ByLevel  map[level]uint8   `json:"byLevel"`
	List     []*Named          `json:"list"`
	Fixed    [2]int64          `json:"fixed"`
	Raw      []byte            `json:"raw"`
	Size     quantity          `json:"size"`
	SizePtr  *quantity         `json:"sizePtr"`
	Level    level             `json:"level"`
	When     time.Time         `json:"when"`
	Anything any               `json:"anything"`
	Quoted   int               `json:"quoted,string"`
	Tree     tree              `json:"tree"`
	Ptrs     **bool            `json:"ptrs"`
	*Inner                     // promoted, pointer embedding
	inner2                     // promoted from an unexported type
	Twin1
	Twin2
	NamedEmbed Named `json:"namedEmbed"` // tagged: a field, not promoted
}

func TestTypeFollowsEncodingJSON(t *testing.T) {
	got, err := Type(reflect.TypeFor[sample]())
	if err != nil {
		t.Fatal(err)
	}
	if got.Kind != Object || got.GoType != "walk.sample" || got.Fields == nil {
		t.Fatalf("root = %+v", got)
	}
	fields := *got.Fields
	var names []string
	for name := range fields {
		names = append(names, name)
	}
	wantNames := []string{"-", "Promoted", "Untagged", "anything", "byLevel", "depth", "fixed", "labels", "level", "list", "name", "namedEmbed", "ptr", "ptrs", "quoted", "raw", "size", "sizePtr", "tree", "when"}
	if strings.Join(sorted(names), " ") != strings.Join(wantNames, " ") {
		t.Fatalf("fields = %v, want %v", sorted(names), wantNames)
	}
	for _, tc := range []struct {
		path, kind, goType string
	}{
		{"name", "string", "string"},
		{"Untagged", "number", "float32"},
		{"-", "string", "string"},
		{"ptr", "object", "*walk.Named"},
		{"ptr.child", "number", "int"},
		{"labels", "map", "map[string]string"},
		{"labels.<>", "string", "string"},
		{"byLevel", "map", "map[walk.level]uint8"},
		{"byLevel.<>", "number", "uint8"},
		{"list", "array", "[]*walk.Named"},
		{"list[]", "object", "*walk.Named"},
		{"list[].child", "number", "int"},
		{"fixed", "array", "[2]int64"},
		{"fixed[]", "number", "int64"},
		{"raw", "string", "[]uint8"},
		{"size", "unmarshaler", "walk.quantity"},
		{"sizePtr", "unmarshaler", "*walk.quantity"},
		{"level", "unmarshaler", "walk.level"},
		{"when", "unmarshaler", "time.Time"},
		{"anything", "any", "interface {}"},
		{"quoted", "string", "int"},
		{"tree", "object", "walk.tree"},
		{"tree.next", "object", "*walk.tree"},
		{"ptrs", "bool", "**bool"},
		{"depth", "number", "int"},
		{"Promoted", "bool", "bool"},
		{"namedEmbed.child", "number", "int"},
	} {
		n := lookup(got, tc.path)
		if n == nil {
			t.Errorf("%s: missing", tc.path)
			continue
		}
		if string(n.Kind) != tc.kind || n.GoType != tc.goType {
			t.Errorf("%s = %s %s, want %s %s", tc.path, n.Kind, n.GoType, tc.kind, tc.goType)
		}
	}
	if n := lookup(got, "byLevel"); n.KeyType != "walk.level" {
		t.Errorf("byLevel keyType = %q", n.KeyType)
	}
	if n := lookup(got, "labels"); n.KeyType != "" {
		t.Errorf("labels keyType = %q, want none for string keys", n.KeyType)
	}
	if n := lookup(got, "tree.next"); !n.Recursive || n.Fields != nil {
		t.Errorf("tree.next = %+v, want a recursive stub", n)
	}
	if n := lookup(got, "name"); n.KubernetesType != "" {
		t.Errorf("kubernetesType on a non-k8s type: %q", n.KubernetesType)
	}
}

// The tree agrees with what json.Unmarshal really does with each key.
func TestTypeAgreesWithUnmarshal(t *testing.T) {
	var s sample
	in := `{"name":"n","Untagged":1.5,"Skipped":"x","-":"d","depth":3,"Promoted":true,"Same":9,"quoted":"7","NAME":"folded"}`
	if err := json.Unmarshal([]byte(in), &s); err != nil {
		t.Fatal(err)
	}
	if s.Skipped != "" || s.Dash != "d" || s.Inner == nil || s.Depth != 3 || !s.Promoted || s.Twin1.Same != 0 || s.Twin2.Same != 0 || s.Quoted != 7 {
		t.Fatalf("unmarshalled %+v", s)
	}
	if err := json.Unmarshal([]byte(`{"quoted":7}`), &s); err == nil {
		t.Fatal("a ,string int took a bare number; the tree says string")
	}
}

func TestTypeRefusesWhatEncodingJSONCannotDecode(t *testing.T) {
	for _, typ := range []reflect.Type{
		reflect.TypeFor[struct{ C chan int }](),
		reflect.TypeFor[map[[2]int]string](),
		reflect.TypeFor[struct{ E error }](),
	} {
		if _, err := Type(typ); err == nil {
			t.Errorf("%s: no error", typ)
		}
	}
}

// lookup follows a path of field names, "<>" for map values and "[]" for items.
func lookup(n *Node, path string) *Node {
	for _, part := range strings.Split(strings.ReplaceAll(path, "[]", ".[]"), ".") {
		switch {
		case n == nil:
			return nil
		case part == "<>":
			n = n.Values
		case part == "[]":
			n = n.Items
		case n.Fields == nil:
			return nil
		default:
			n = (*n.Fields)[part]
		}
	}
	return n
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}
