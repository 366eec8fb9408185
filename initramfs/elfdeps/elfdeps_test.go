package elfdeps

import (
	"debug/elf"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestELFWalkStaticAndScript: static binaries and scripts need nothing.
func TestELFWalkStaticAndScript(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "s.sh")
	os.WriteFile(script, []byte("#!/bin/sh\necho hi\n"), 0o755)
	deps, err := LibResolver{}.Walk(script)
	if err != nil || len(deps.Libs) != 0 || len(deps.Interpreters) != 0 {
		t.Errorf("script: %+v, %v", deps, err)
	}
	if bb := LookTool("busybox"); bb != "" {
		if f, err := elf.Open(bb); err == nil {
			f.Close()
			deps, err := LibResolver{}.Walk(bb)
			if err != nil || len(deps.Libs) != 0 {
				t.Errorf("static busybox: %+v, %v", deps, err)
			}
		}
	}
	if _, err := (LibResolver{Dirs: []string{dir}}).Walk("/usr/bin/ls"); err == nil {
		t.Error("walk with an empty search path found ls's libraries")
	}
}

func TestParseLdSoConf(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "conf.d"), 0o755)
	os.WriteFile(filepath.Join(dir, "ld.so.conf"), []byte("# comment\ninclude conf.d/*.conf\n/opt/lib\n\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "conf.d", "b.conf"), []byte("/b/lib # trailing\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "conf.d", "a.conf"), []byte("/a/lib:/a/lib2\nrelative/ignored\n"), 0o644)
	got := parseLdSoConf(filepath.Join(dir, "ld.so.conf"), 0)
	want := []string{"/a/lib", "/a/lib2", "/b/lib", "/opt/lib"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("got %v want %v", got, want)
	}
}
