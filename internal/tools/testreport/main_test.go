package main

import (
	"strings"
	"testing"
)

func stream(lines ...string) string { return strings.Join(lines, "\n") + "\n" }

func TestReport(t *testing.T) {
	const p = "github.com/nixlos/nixlos/x"
	for _, tc := range []struct {
		name   string
		vm     bool
		in     string
		ok     bool
		expect []string
	}{
		{"green with a VM test", true, stream(
			`{"Action":"run","Package":"`+p+`","Test":"TestVM"}`,
			`{"Action":"output","Package":"`+p+`","Test":"TestVM","Output":"    x_test.go:9: testenv: VM test\n"}`,
			`{"Action":"pass","Package":"`+p+`","Test":"TestVM","Elapsed":3}`,
			`{"Action":"run","Package":"`+p+`","Test":"TestUnit"}`,
			`{"Action":"pass","Package":"`+p+`","Test":"TestUnit"}`,
			`{"Action":"pass","Package":"`+p+`","Elapsed":4}`),
			true, []string{"2 passed, 0 failed, 0 skipped", "x      "}},
		{"VM tests all skipped", true, stream(
			`{"Action":"run","Package":"`+p+`","Test":"TestVM"}`,
			`{"Action":"output","Package":"`+p+`","Test":"TestVM","Output":"    x_test.go:9: testenv: VM test\n"}`,
			`{"Action":"skip","Package":"`+p+`","Test":"TestVM"}`,
			`{"Action":"pass","Package":"`+p+`","Elapsed":4}`),
			false, []string{"has VM tests but ran none", "0 passed, 1 failed, 1 skipped"}},
		{"failed test prints its output", false, stream(
			`{"Action":"run","Package":"`+p+`","Test":"TestA"}`,
			`{"Action":"output","Package":"`+p+`","Test":"TestA/sub","Output":"    boom\n"}`,
			`{"Action":"fail","Package":"`+p+`","Test":"TestA/sub"}`,
			`{"Action":"fail","Package":"`+p+`","Test":"TestA"}`,
			`{"Action":"fail","Package":"`+p+`","Elapsed":1}`),
			false, []string{"--- FAIL: " + p + " TestA", "boom", "0 passed, 1 failed, 0 skipped"}},
		{"build failure", false, stream(
			`# github.com/nixlos/nixlos/x`,
			`{"Action":"output","Package":"`+p+`","Output":"FAIL\tgithub.com/nixlos/nixlos/x [build failed]\n"}`,
			`{"Action":"fail","Package":"`+p+`","Elapsed":0}`),
			false, []string{"# github.com/nixlos/nixlos/x", "0 passed, 1 failed"}},
		{"package that never ended", false, stream(
			`{"Action":"run","Package":"` + p + `","Test":"TestA"}`),
			false, []string{"no result"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newReport(map[string]bool{p: tc.vm})
			var out strings.Builder
			if err := r.read(strings.NewReader(tc.in), &out); err != nil {
				t.Fatal(err)
			}
			ok := r.write(&out)
			if ok != tc.ok {
				t.Errorf("ok = %v, want %v\n%s", ok, tc.ok, out.String())
			}
			for _, e := range tc.expect {
				if !strings.Contains(out.String(), e) {
					t.Errorf("output lacks %q:\n%s", e, out.String())
				}
			}
		})
	}
}

func TestHasVMTest(t *testing.T) {
	for src, want := range map[string]bool{
		"package x\nfunc TestA(t *testing.T) {\n\tvmtest.SkipUnlessVM(t)\n}\n":      true,
		"package x\nfunc BenchmarkA(b *testing.B) {\n\tvmtest.SkipUnlessVM(b)\n}\n": false,
		"package x\nfunc helper(t *testing.T) {\n\ttestenv.VM(t)\n}\n":              true,
		"package x\nfunc TestA(t *testing.T) {}\n":                                  false,
	} {
		if got := hasVMTest(src); got != want {
			t.Errorf("hasVMTest(%q) = %v, want %v", src, got, want)
		}
	}
}
