package elfdeps

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/internal/testenv"
)

// icuData is Debian 12's ICU data library (libicuuc → libicudata).
func icuData(t *testing.T) string {
	m, _ := filepath.Glob("/usr/lib/x86_64-linux-gnu/libicudata.so.*.*")
	if len(m) == 0 {
		testenv.Missing(t, "libicudata", "`make deps` (libicu72 comes with Debian package nix-bin)")
	}
	return m[0]
}

func TestStubLibraryParses(t *testing.T) {
	src := icuData(t)
	data, err := StubLibrary(src)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 4096 {
		t.Errorf("stub is %d bytes, want a page or less", len(data))
	}
	p := filepath.Join(t.TempDir(), "stub.so")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	orig, err := elf.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	stub, err := elf.Open(p)
	if err != nil {
		t.Fatalf("stub is not a valid ELF file: %v", err)
	}
	defer stub.Close()
	want, _ := orig.DynString(elf.DT_SONAME)
	got, _ := stub.DynString(elf.DT_SONAME)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("SONAME %v, want %v", got, want)
	}
	exported := func(f *elf.File) map[string]bool {
		syms, err := f.DynamicSymbols()
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]bool{}
		for _, s := range syms {
			if s.Section != elf.SHN_UNDEF && elf.ST_TYPE(s.Info) == elf.STT_OBJECT && elf.ST_BIND(s.Info) == elf.STB_GLOBAL {
				m[s.Name] = true
			}
		}
		return m
	}
	w, g := exported(orig), exported(stub)
	if len(w) == 0 {
		t.Fatal("the original exports no data symbols")
	}
	for s := range w {
		if !g[s] {
			t.Errorf("stub lacks %s", s)
		}
	}
}

// TestStubLibraryLoads runs real programs whose dependency chain reaches
// libicudata (nix: libarchive → libxml2 → libicuuc → libicudata) with the
// stub found first by the dynamic loader: they must start and run.
func TestStubLibraryLoads(t *testing.T) {
	src := icuData(t)
	testenv.Tools(t, "nix")
	nix, err := exec.LookPath("nix")
	if err != nil {
		t.Fatal(err)
	}
	data, err := StubLibrary(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, filepath.Base(src)), data, 0o644); err != nil {
		t.Fatal(err)
	}
	soname := strings.Join(strings.Split(filepath.Base(src), ".")[:3], ".") // libicudata.so.72
	if err := os.Symlink(filepath.Base(src), filepath.Join(dir, soname)); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "LD_LIBRARY_PATH="+dir)
	ldd := exec.Command("ldd", nix)
	ldd.Env = env
	out, err := ldd.CombinedOutput()
	if err != nil {
		t.Fatalf("ldd: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), filepath.Join(dir, soname)) {
		t.Fatalf("the loader did not pick the stub:\n%s", out)
	}
	cmd := exec.Command(nix, "--version")
	cmd.Env = env
	out, err = cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "nix") {
		t.Fatalf("nix --version with the stub: %v\n%s", err, out)
	}
	cmd = exec.Command(nix, "--extra-experimental-features", "nix-command", "eval", "--expr", `builtins.toJSON { a = [ 1 "x" ]; }`)
	cmd.Env = env
	out, err = cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), `{\"a\":[1,\"x\"]}`) {
		t.Fatalf("nix eval with the stub: %v\n%s", err, out)
	}
}

func TestStubLibraryRefusesCode(t *testing.T) {
	m, _ := filepath.Glob("/usr/lib/x86_64-linux-gnu/libz.so.1*")
	if len(m) == 0 {
		testenv.Missing(t, "libz.so.1", "`make deps` (Debian package zlib1g)")
	}
	if _, err := StubLibrary(m[0]); err == nil || !strings.Contains(err.Error(), "function") {
		t.Fatalf("stub of libz: err %v, want a refusal (it exports functions)", err)
	}
	if !IsStubLib("/usr/lib/x86_64-linux-gnu/libicudata.so.72.1") || IsStubLib("/usr/lib/libicuuc.so.72") {
		t.Error("IsStubLib: wrong match")
	}
}
