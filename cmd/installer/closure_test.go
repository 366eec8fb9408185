package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/closure"
	"github.com/nixlos/nixlos/flake"
	"github.com/nixlos/nixlos/install"
	"github.com/nixlos/nixlos/internal/testenv"
)

// TestInstallUsesClosure plans an install whose manifest names the host's
// toplevel and the cache key: with the cache reachable (here on a server)
// the plan copies the closure instead of building; without it, or with
// --no-closure, it builds.
func TestInstallUsesClosure(t *testing.T) {
	testenv.Tools(t, "nix")
	manifest, _, keyFile, disk, _ := installFixture(t)
	fl := t.TempDir()
	os.MkdirAll(filepath.Join(fl, "tree"), 0o755)
	os.WriteFile(filepath.Join(fl, "tree", "x"), []byte("installer closure test\n"), 0o644)
	os.WriteFile(filepath.Join(fl, "flake.nix"), []byte(`{ outputs = { self }: {
  nixosConfigurations.server.config.system.build.toplevel = derivation {
    name = "nixos-system-server"; system = "x86_64-linux"; builder = "builtin:buildenv";
    derivations = [ "true" "5" "1" "${./tree}" ]; manifest = builtins.toFile "server.nix" "[ ]";
  };
}; }
`), 0o644)
	served := t.TempDir()
	var log bytes.Buffer
	res, err := closure.Build(context.Background(), closure.BuildOptions{
		FlakeRef: "path:" + fl, Hosts: []string{"server"}, Cache: filepath.Join(served, closure.CacheDir), Log: &log,
	})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, log.String())
	}
	top := res.Closures["server"].Toplevel
	data, _ := os.ReadFile(manifest)
	m, err := flake.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	m.Cache = &flake.Cache{PublicKey: res.PublicKey, Dir: closure.CacheDir}
	h := m.Hosts["server"]
	h.Toplevel = top
	m.Hosts["server"] = h
	data, _ = json.Marshal(m)
	os.WriteFile(manifest, data, 0o644)
	srv := httptest.NewServer(http.FileServer(http.Dir(served)))
	defer srv.Close()

	plan := func(extra ...string) (steps []string, system string, out string) {
		var o, e bytes.Buffer
		args := append([]string{"install", "--manifest", manifest, "--host", "server", "--disk", disk, "--age-key", keyFile, "--dry-run", "--json"}, extra...)
		if err := run(args, &o, &e); err != nil {
			t.Fatalf("%v: %v\n%s%s", extra, err, o.String(), e.String())
		}
		// useClosure's messages go to stderr, the JSON plan alone to stdout.
		var p struct {
			System string `json:"system"`
			Steps  []struct{ Name string }
		}
		if err := json.Unmarshal(o.Bytes(), &p); err != nil {
			t.Fatalf("%v: %v\n%s", extra, err, o.String())
		}
		for _, s := range p.Steps {
			steps = append(steps, s.Name)
		}
		return steps, p.System, e.String()
	}
	has := func(l []string, s string) bool {
		for _, x := range l {
			if x == s {
				return true
			}
		}
		return false
	}
	steps, sys, out := plan("--server", srv.URL)
	if !has(steps, install.StepCopy) || has(steps, install.StepBuild) || sys != top || !strings.Contains(out, "from server "+srv.URL) {
		t.Errorf("with the cache on the server: steps %v system %q\n%s", steps, sys, out)
	}
	steps, sys, out = plan("--server", srv.URL, "--no-closure")
	if has(steps, install.StepCopy) || !has(steps, install.StepBuild) || sys != "" {
		t.Errorf("--no-closure: steps %v system %q\n%s", steps, sys, out)
	}
	os.Rename(filepath.Join(served, closure.CacheDir), filepath.Join(served, "gone"))
	steps, _, out = plan("--server", srv.URL)
	if has(steps, install.StepCopy) || !has(steps, install.StepBuild) || !strings.Contains(out, "building it instead") {
		t.Errorf("without the cache: steps %v\n%s", steps, out)
	}
}
