package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/flake/realflaketest"
	"github.com/nixlos/nixlos/image"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/internal/testenv"
)

// TestBuildBesideBrokenHost (issue 15): in a flake whose hosts import the
// real disko and sops-nix modules, one host's disko layout is broken
// (content type "mdadm"). mkiso hosts lists every host and names the broken
// one with its error and fix; mkiso build --host laptop evaluates only
// laptop and builds its media (exit 0, the real build, PXE only: the
// cheapest format); mkiso build without --host refuses (exit 2) naming
// the broken host before writing anything.
func TestBuildBesideBrokenHost(t *testing.T) {
	inputs := realflaketest.Inputs(t)
	dir := realflaketest.Flake(t, inputs, realflaketest.Fixture{Name: "fleet"})

	var out bytes.Buffer
	err := run([]string{"hosts", dir}, &out, &out)
	if code := errs.Code(err); code != 2 {
		t.Fatalf("mkiso hosts: exit %d (%v), want 2", code, err)
	}
	for _, want := range []string{"laptop  x86_64-linux", "server  x86_64-linux", "broken  -", "broken: does not evaluate", "attribute 'mdadm' missing", "fix: ", `type = "mdraid"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("mkiso hosts output lacks %q:\n%s", want, out.String())
		}
	}

	all := filepath.Join(t.TempDir(), "all")
	out.Reset()
	err = run([]string{"build", dir, "--format", "pxe", "--out", all}, &out, &out)
	if code := errs.Code(err); code != 2 || !strings.Contains(err.Error(), "host broken") || !strings.Contains(err.Error(), "--host") {
		t.Errorf("mkiso build (every host): exit %d, want 2 naming host broken and --host: %v", code, err)
	}
	if _, err := os.Stat(all); !os.IsNotExist(err) {
		t.Errorf("the refused build wrote %s (stat: %v)", all, err)
	}

	testenv.Short(t, "builds the installer media (u-root, installer, images); skipped with -short")
	good := filepath.Join(t.TempDir(), "good")
	out.Reset()
	if err := run([]string{"build", dir, "--host", "laptop", "--format", "pxe", "--out", good}, &out, &out); err != nil {
		t.Fatalf("mkiso build --host laptop: exit %d: %v\n%s", errs.Code(err), err, out.String())
	}
	if !strings.Contains(out.String(), "hosts: laptop\n") {
		t.Errorf("build output lacks the host line:\n%s", out.String())
	}
	// The fixture's inputs are path: trees: the bundle's cache carries
	// them and inspect lists each with its narHash (text and --json).
	if !strings.Contains(out.String(), "flake inputs carried: ") {
		t.Errorf("build output lacks the inputs line:\n%s", out.String())
	}
	out.Reset()
	if err := run([]string{"inspect", filepath.Join(good, image.PXEDir)}, &out, &out); err != nil || !strings.Contains(out.String(), "hosts:      laptop\n") {
		t.Errorf("inspect of the built bundle: %v\n%s", err, out.String())
	}
	for _, in := range []string{"nixpkgs", "disko", "sops-nix"} {
		re := regexp.MustCompile(`(?m)^input: +` + in + ` path:/\S+ sha256-\S+ /nix/store/\S+-source$`)
		if !re.MatchString(out.String()) {
			t.Errorf("inspect lacks input %s with its narHash and store path (%s):\n%s", in, re, out.String())
		}
	}
	out.Reset()
	if err := run([]string{"inspect", "--json", filepath.Join(good, image.PXEDir)}, &out, &out); err != nil {
		t.Fatal(err)
	}
	var info image.Info
	if err := json.Unmarshal(out.Bytes(), &info); err != nil || len(info.Inputs) < 3 {
		t.Fatalf("inspect --json inputs: %v %+v", err, info.Inputs)
	}
	for _, in := range info.Inputs {
		if !in.Present || !strings.HasPrefix(in.NarHash, "sha256-") || !strings.HasPrefix(in.URL, "path:/") {
			t.Errorf("inspect --json input %+v", in)
		}
	}
}
