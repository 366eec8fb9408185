package step

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

type state struct{ log []string }

func (s *state) do(name string) func(*state) error {
	return func(st *state) error { st.log = append(st.log, name); return nil }
}

func TestListRun(t *testing.T) {
	boom := errors.New("boom")
	var s0 state
	for _, tc := range []struct {
		name    string
		list    List[*state]
		ran     []string
		skipped []string
		err     error
	}{
		{"in order", List[*state]{}.Append("a", "", s0.do("a")).Append("b", "", s0.do("b")), []string{"a", "b"}, nil, nil},
		{"when false leaves it out", List[*state]{}.Append("a", "", s0.do("a")).AppendWhen(false, "b", "", s0.do("b")).AppendWhen(true, "c", "", s0.do("c")), []string{"a", "c"}, nil, nil},
		{"skipped is reported, not run", List[*state]{}.AppendSkipped("a", "", "not needed", s0.do("a")).Append("b", "", s0.do("b")), []string{"b"}, []string{"a"}, nil},
		{"stops at the first error", List[*state]{}.Append("a", "", func(*state) error { return boom }).Append("b", "", s0.do("b")), nil, nil, boom},
		{"no function", List[*state]{{Name: "x"}}, nil, nil, ErrNoRun},
	} {
		st := &state{}
		var each, skipped []string
		err := tc.list.Run(context.Background(), st, Hooks[*state]{
			Each:    func(s Step[*state], run func() error) error { each = append(each, s.Name); return run() },
			Skipped: func(s Step[*state]) { skipped = append(skipped, s.Name) },
		})
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.err)
		}
		if !reflect.DeepEqual(st.log, tc.ran) || !reflect.DeepEqual(skipped, tc.skipped) {
			t.Errorf("%s: ran %q skipped %q, want %q %q", tc.name, st.log, skipped, tc.ran, tc.skipped)
		}
		if tc.err == nil && len(each) != len(tc.ran) {
			t.Errorf("%s: Each saw %q", tc.name, each)
		}
	}
}

func TestRunStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var st state
	l := List[*state]{}.Append("a", "", func(s *state) error { cancel(); return nil }).Append("b", "", st.do("b"))
	if err := l.Run(ctx, &st, Hooks[*state]{}); !errors.Is(err, context.Canceled) || len(st.log) != 0 {
		t.Errorf("err %v ran %q", err, st.log)
	}
}

func TestPlanJSON(t *testing.T) {
	l := List[*state]{}.Append("verify-key", "prove the key", nil).AppendSkipped("build", "nix build", "closure on the media", nil)
	b, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"name":"verify-key","detail":"prove the key"},{"name":"build","detail":"nix build","skip":"closure on the media"}]`
	if string(b) != want {
		t.Errorf("JSON %s, want %s", b, want)
	}
	if got := strings.Join(l.Names(), ","); got != "verify-key,build" {
		t.Errorf("Names %s", got)
	}
	if s, ok := l.Find("build"); !ok || s.Skip == "" {
		t.Errorf("Find(build) = %+v %v", s, ok)
	}
}
