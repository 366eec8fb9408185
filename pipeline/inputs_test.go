package pipeline

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/closure"
	"github.com/nixlos/nixlos/flake"
	"github.com/nixlos/nixlos/flake/realflaketest"
	"github.com/nixlos/nixlos/image"
)

// TestInputsOnMedia (issue 15): a flake whose inputs are path: trees (the
// realflakes fleet: nixpkgs stand-in, disko, sops-nix, and their own
// inputs) built for one host. The bundle's cache carries every input and
// the manifest in the initrd lists them; copied from that cache into an
// empty store (as the installer does, closure.Source.CopyInputs), the
// flake evaluates there after the input trees are deleted — and does not
// without the copy.
func TestInputsOnMedia(t *testing.T) {
	needBuild(t)
	inputs := realflaketest.Inputs(t)
	dir := realflaketest.Flake(t, inputs, realflaketest.Fixture{Name: "fleet"})
	out := t.TempDir()
	opt := testOptions(t, dir, out)
	opt.Hosts, opt.Formats = []string{"laptop"}, []image.Format{image.FormatPXE}
	res, log := build(t, opt)
	t.Logf("build:\n%s", log)
	names := map[string]flake.Input{}
	for _, in := range res.Inputs {
		names[in.Name] = in
	}
	for _, n := range []string{"nixpkgs", "disko", "sops-nix"} {
		if in, ok := names[n]; !ok || !strings.HasPrefix(in.URL, "path:/") || !strings.HasPrefix(in.NarHash, "sha256-") {
			t.Errorf("input %s: %+v (all: %+v)", n, in, res.Inputs)
		}
	}
	initrd, err := os.ReadFile(filepath.Join(out, image.PXEDir, image.PXEInitrd))
	if err != nil {
		t.Fatal(err)
	}
	c, err := image.ReadInitrd(initrd)
	if err != nil {
		t.Fatal(err)
	}
	m, err := flake.Decode(c.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Inputs) != len(res.Inputs) || m.Cache == nil || m.Cache.Dir != closure.CacheDir || m.Cache.PublicKey != "" {
		t.Fatalf("manifest inputs %+v cache %+v", m.Inputs, m.Cache)
	}

	// Offline: the trees are gone; only the cache has them.
	for _, p := range []string{inputs, filepath.Join(filepath.Dir(dir), "nixpkgs")} {
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
	}
	eval := func(store string) (string, error) {
		args := append(append([]string{}, flake.Flags...), "eval", "--raw", "--store", store,
			"path:"+dir+"#nixosConfigurations.laptop.config.networking.hostName")
		out, err := exec.Command("nix", args...).CombinedOutput()
		return string(out), err
	}
	if out, err := eval(t.TempDir()); err == nil {
		t.Fatalf("the flake evaluated in an empty store without its inputs: %s", out)
	}
	paths := make([]string, len(m.Inputs))
	for i, in := range m.Inputs {
		paths[i] = in.StorePath
	}
	src := &closure.Source{URL: "file://" + filepath.Join(out, image.PXEDir, closure.CacheDir), Where: "the bundle"}
	root := t.TempDir()
	var copyLog bytes.Buffer
	if err := src.CopyInputs(paths)(context.Background(), root, &copyLog); err != nil {
		t.Fatalf("copy the inputs: %v\n%s", err, copyLog.String())
	}
	if got, err := eval(root); err != nil || got != "laptop" {
		t.Fatalf("evaluate with the copied inputs: %q, %v", got, err)
	}
}
