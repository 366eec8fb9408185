package pxe

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/closure"
	"github.com/nixlos/nixlos/internal/testenv"
)

// TestServeCache serves a signed binary cache from the bundle at
// /nix-cache/: the installer's Locate finds the closure through the
// nixlos.server URL, nix copies it over HTTP into a fresh store with the
// cache's key, and refuses it with another key; nothing outside the cache
// directory is reachable under /nix-cache/.
func TestServeCache(t *testing.T) {
	testenv.Tools(t, "nix")
	s := startTestServer(t, keyMap, nil)
	fl := t.TempDir()
	os.MkdirAll(filepath.Join(fl, "tree"), 0o755)
	os.WriteFile(filepath.Join(fl, "tree", "hello"), []byte("served over HTTP\n"), 0o644)
	os.WriteFile(filepath.Join(fl, "flake.nix"), []byte(`{ outputs = { self }: {
  nixosConfigurations.pxe.config.system.build.toplevel = derivation {
    name = "nixos-system-pxe"; system = "x86_64-linux"; builder = "builtin:buildenv";
    derivations = [ "true" "5" "1" "${./tree}" ]; manifest = builtins.toFile "pxe.nix" "[ ]";
  };
}; }
`), 0o644)
	var log bytes.Buffer
	res, err := closure.Build(context.Background(), closure.BuildOptions{
		FlakeRef: "path:" + fl, Hosts: []string{"pxe"}, Cache: filepath.Join(s.cfg.Bundle.Dir, CacheDir), Log: &log,
	})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, log.String())
	}
	top := res.Closures["pxe"].Toplevel
	src, err := closure.Locate(context.Background(), closure.LocateOptions{
		Toplevel: top, PublicKey: res.PublicKey, Devices: []string{}, Server: s.HTTPBase(), Log: &log,
	})
	if err != nil {
		t.Fatalf("locate on the server: %v\n%s", err, log.String())
	}
	if src.URL != s.HTTPBase()+"/"+CacheDir {
		t.Errorf("source URL %s", src.URL)
	}
	root := t.TempDir()
	log.Reset()
	if err := src.Copy(context.Background(), root, top, &log); err != nil {
		t.Fatalf("copy over HTTP: %v\n%s", err, log.String())
	}
	if b, err := os.ReadFile(filepath.Join(root, top, "hello")); err != nil || string(b) != "served over HTTP\n" {
		t.Errorf("copied file: %q %v", b, err)
	}
	other, _ := closure.GenerateKey(src.Key.Name)
	bad := *src
	bad.Key = other.Public()
	log.Reset()
	if err := bad.Copy(context.Background(), t.TempDir(), top, &log); err == nil || !strings.Contains(log.String(), "lacks a valid signature") {
		t.Errorf("copy with another key: %v\n%s", err, log.String())
	}
	for _, bad := range []string{"/nix-cache/", "/nix-cache/..%2f" + InitrdFile, "/nix-cache/%2e%2e/" + KernelFile, "/nix-cache/nar"} {
		if code, _ := get(t, s.HTTPBase()+bad); code != 404 && code != 400 {
			t.Errorf("%s: status %d", bad, code)
		}
	}
	if code, body := get(t, s.HTTPBase()+"/nix-cache/nix-cache-info"); code != 200 || !strings.Contains(body, "StoreDir: /nix/store") {
		t.Errorf("nix-cache-info: %d %q", code, body)
	}
}
