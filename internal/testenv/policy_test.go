package testenv

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// skipCall is a direct skip: t.Skip, b.Skipf, tb.SkipNow, …
var skipCall = regexp.MustCompile(`\b\w+\.Skip(f|Now)?\(`)

// TestSkipPolicy: no test in the tree skips except through this package,
// so strict mode sees every missing requirement. It reads the tracked and
// untracked Go files of the repository.
func TestSkipPolicy(t *testing.T) {
	root, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		Missing(t, "a git checkout of nixlos", "run the tests in the repository")
	}
	top := strings.TrimSpace(string(root))
	out, err := exec.Command("git", "-C", top, "ls-files", "--cached", "--others", "--exclude-standard", "*.go").Output()
	if err != nil {
		t.Fatal(err)
	}
	self, _ := filepath.Abs(".")
	var bad []string
	files := strings.Fields(string(out))
	for _, f := range files {
		path := filepath.Join(top, f)
		if filepath.Dir(path) == self {
			continue
		}
		fh, err := os.Open(path)
		if err != nil {
			continue // deleted in the work tree
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(nil, 1<<20)
		for n := 1; sc.Scan(); n++ {
			line := sc.Text()
			if i := strings.Index(line, "//"); i >= 0 {
				line = line[:i]
			}
			if skipCall.MatchString(line) {
				bad = append(bad, f+":"+itoa(n)+": "+strings.TrimSpace(line))
			}
		}
		fh.Close()
	}
	if len(files) < 50 {
		t.Fatalf("read %d Go files: is this the nixlos repository?", len(files))
	}
	for _, b := range bad {
		t.Errorf("skips outside package testenv (use testenv.Missing/Tools/Root/VM/Short): %s", b)
	}
}

// The pattern finds what it must and nothing else.
func TestSkipPattern(t *testing.T) {
	for line, want := range map[string]bool{
		`t.Skip("x")`: true, `	b.Skipf("%s", x)`: true, `tb.SkipNow()`: true,
		`if s.Skip != "" {`: false, `Skip: "why"`: false, `p.add(name, detail, skip)`: false,
		`uimage.WithSkipLDD(),`: false, `return filepath.SkipDir`: false,
	} {
		if got := skipCall.MatchString(line); got != want {
			t.Errorf("%q: match %v, want %v", line, got, want)
		}
	}
}

func TestStrictFails(t *testing.T) {
	t.Setenv("CI", "true")
	if !Strict() {
		t.Fatal("CI=true is not strict")
	}
	t.Setenv("CI", "")
	t.Setenv("NIXLOS_STRICT", "")
	if Strict() {
		t.Fatal("strict without CI or NIXLOS_STRICT")
	}
	if Fix("qemu-system-x86_64") != "`make deps` (scripts/deps.sh installs Debian package qemu-system-x86)" {
		t.Errorf("fix text: %s", Fix("qemu-system-x86_64"))
	}
}

func itoa(n int) string {
	const d = "0123456789"
	if n < 10 {
		return d[n : n+1]
	}
	return itoa(n/10) + d[n%10:n%10+1]
}
