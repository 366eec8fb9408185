// Command testreport reads `go test -json` on stdin and prints what a
// person needs from a long run: each package's result line, the whole
// output of every failed test, and at the end a table of tests run,
// skipped and failed per package. It exits 1 when any test or package
// failed, or when a package that has VM tests (calls of testenv.VM or
// vmtest's helpers in its test files) ran none of them — a run whose VM
// tests all skipped must not look green. Its last line is the plain
// "N passed, N failed, N skipped" that CI reads.
//
//	go test -json ./... | go run ./internal/tools/testreport [-repo DIR]
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/nixlos/nixlos/internal/testenv"
)

func main() {
	repo := flag.String("repo", ".", "repository root (to find the packages with VM tests)")
	short := flag.Bool("short", false, "the run was go test -short: VM tests skip by design")
	flag.Parse()
	vmPkgs, err := packagesWithVMTests(*repo)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(1)
	}
	r := newReport(vmPkgs)
	// -short, or the opt-out the tests honour (testenv.OptOutVM) set for
	// the whole `make test`: VM tests skip by request, not by accident.
	r.short = *short || (os.Getenv(testenv.OptOutVM) != "" && os.Getenv(testenv.OptOutVM) != "0")
	if r.short {
		fmt.Println("testreport: VM tests skip by request (-short or " + testenv.OptOutVM + "): not counted as missing")
	}
	if err := r.read(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(1)
	}
	if !r.write(os.Stdout) {
		os.Exit(1)
	}
}

// event is one line of test2json.
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

type pkgStats struct {
	run, pass, fail, skip, vmRun int
	result                       string // ok / FAIL / no test files
	elapsed                      float64
}

type report struct {
	short  bool // a -short run: VM tests skip by design
	vmPkgs map[string]bool
	pkgs   map[string]*pkgStats
	output map[string][]string // package/test → output lines
	vmTest map[string]bool     // package/test logged testenv.VMMarker
}

func newReport(vm map[string]bool) *report {
	return &report{vmPkgs: vm, pkgs: map[string]*pkgStats{}, output: map[string][]string{}, vmTest: map[string]bool{}}
}

func (r *report) pkg(name string) *pkgStats {
	p := r.pkgs[name]
	if p == nil {
		p = &pkgStats{}
		r.pkgs[name] = p
	}
	return p
}

// read consumes the event stream; lines that are not JSON (build errors)
// are echoed as they come.
func (r *report) read(in io.Reader, out io.Writer) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			fmt.Fprintln(out, string(line))
			continue
		}
		r.add(e, out)
	}
	return sc.Err()
}

func (r *report) add(e event, out io.Writer) {
	if e.Action == "build-output" { // compiler errors (go ≥ 1.24)
		fmt.Fprint(out, e.Output)
		return
	}
	if e.Package == "" {
		return
	}
	p := r.pkg(e.Package)
	key := e.Package + "/" + e.Test
	if e.Test == "" {
		switch e.Action {
		case "output":
			r.output[key] = append(r.output[key], e.Output)
		case "pass":
			p.result, p.elapsed = "ok", e.Elapsed
			fmt.Fprintf(out, "ok   %-50s %6.1fs\n", e.Package, e.Elapsed)
		case "fail":
			p.result, p.elapsed = "FAIL", e.Elapsed
			fmt.Fprintf(out, "FAIL %-50s %6.1fs\n", e.Package, e.Elapsed)
			if !r.anyTestFailed(e.Package) {
				fmt.Fprint(out, strings.Join(r.output[key], ""))
			}
		case "skip":
			p.result = "no test files"
		}
		return
	}
	switch e.Action {
	case "output":
		r.output[key] = append(r.output[key], e.Output)
		if strings.Contains(e.Output, testenv.VMMarker) {
			r.vmTest[key] = true
		}
	case "run":
		if !strings.Contains(e.Test, "/") {
			p.run++
		}
	case "pass", "fail", "skip":
		if strings.Contains(e.Test, "/") {
			if e.Action == "fail" {
				return // the parent fails too and prints the whole output
			}
			return
		}
		switch e.Action {
		case "pass":
			p.pass++
		case "fail":
			p.fail++
			fmt.Fprintf(out, "--- FAIL: %s %s (%.1fs)\n", e.Package, e.Test, e.Elapsed)
			for k, lines := range r.output {
				if k == key || strings.HasPrefix(k, key+"/") {
					fmt.Fprint(out, indent(lines))
				}
			}
		case "skip":
			p.skip++
		}
		if e.Action != "skip" && r.vmTestUnder(key) {
			p.vmRun++
		}
		for k := range r.output {
			if k == key || strings.HasPrefix(k, key+"/") {
				delete(r.output, k)
			}
		}
	}
}

// vmTestUnder reports whether the test or one of its subtests logged the marker.
func (r *report) vmTestUnder(key string) bool {
	for k := range r.vmTest {
		if k == key || strings.HasPrefix(k, key+"/") {
			return true
		}
	}
	return false
}

func (r *report) anyTestFailed(pkg string) bool { return r.pkgs[pkg].fail > 0 }

func indent(lines []string) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString("    " + l)
	}
	return b.String()
}

// write prints the table and reports whether the run is green.
func (r *report) write(out io.Writer) bool {
	ok := true
	var pass, fail, skip int
	fmt.Fprintf(out, "\n%-44s %5s %5s %5s %5s %4s  %s\n", "package", "run", "pass", "skip", "fail", "vm", "result")
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range r.pkgs {
			if !yield(k) {
				return
			}
		}
	})
	for _, name := range names {
		p := r.pkgs[name]
		if p.result == "no test files" && p.run == 0 {
			continue
		}
		note := p.result
		if p.result == "" {
			note, ok = "no result (crashed or timed out?)", false
		}
		if p.result == "FAIL" || p.fail > 0 {
			ok = false
		}
		vm := "-"
		if r.vmPkgs[name] {
			vm = fmt.Sprint(p.vmRun)
			if p.vmRun == 0 && !r.short {
				note += "; has VM tests but ran none"
				ok = false
			}
		}
		pass += p.pass
		fail += p.fail
		skip += p.skip
		fmt.Fprintf(out, "%-44s %5d %5d %5d %5d %4s  %s\n", strings.TrimPrefix(name, "github.com/nixlos/nixlos/"), p.run, p.pass, p.skip, p.fail, vm, note)
	}
	if !ok && fail == 0 {
		fail = 1 // a package failed without a failing test (build error, crash, no VM test run)
	}
	fmt.Fprintf(out, "\n%d passed, %d failed, %d skipped\n", pass, fail, skip)
	return ok
}

// vmCall is how a test file starts a VM test.
var vmCall = regexp.MustCompile(`(?m)^\s*(\w+ :?= )?(testenv\.VM|vmtest\.SkipUnlessVM|vmtest\.RunCheck|SkipUnlessVM|RunCheck)\(`)

// packagesWithVMTests lists the import paths of the packages whose
// _test.go files (not benchmarks-only files) start VM tests.
func packagesWithVMTests(repo string) (map[string]bool, error) {
	out, err := exec.Command("go", "list", "-C", repo, "-f", "{{.ImportPath}} {{.Dir}} {{join .TestGoFiles \",\"}} {{join .XTestGoFiles \",\"}}", "./...").Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w", err)
	}
	res := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		var files []string
		for _, x := range f[2:] {
			files = append(files, strings.Split(x, ",")...)
		}
		for _, file := range files {
			if file == "" {
				continue
			}
			data, err := os.ReadFile(filepath.Join(f[1], file))
			if err != nil {
				return nil, err
			}
			if hasVMTest(string(data)) {
				res[f[0]] = true
				break
			}
		}
	}
	return res, nil
}

// hasVMTest reports whether a test file calls a VM helper inside a Test
// function or a helper (anything but a Benchmark).
func hasVMTest(src string) bool {
	for _, fn := range strings.Split(src, "\nfunc ")[1:] {
		if strings.HasPrefix(fn, "Benchmark") {
			continue
		}
		if vmCall.MatchString(fn) {
			return true
		}
	}
	return false
}
