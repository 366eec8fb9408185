package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/flake/realflaketest"
	"github.com/nixlos/nixlos/image"
	"github.com/nixlos/nixlos/internal/cli"
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
	if code := cli.ExitCode(err); code != 2 {
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
	if code := cli.ExitCode(err); code != 2 || !strings.Contains(err.Error(), "host broken") || !strings.Contains(err.Error(), "--host") {
		t.Errorf("mkiso build (every host): exit %d, want 2 naming host broken and --host: %v", code, err)
	}
	if _, err := os.Stat(all); !os.IsNotExist(err) {
		t.Errorf("the refused build wrote %s (stat: %v)", all, err)
	}

	testenv.Short(t, "builds the installer media (u-root, installer, images); skipped with -short")
	good := filepath.Join(t.TempDir(), "good")
	out.Reset()
	if err := run([]string{"build", dir, "--host", "laptop", "--format", "pxe", "--out", good}, &out, &out); err != nil {
		t.Fatalf("mkiso build --host laptop: exit %d: %v\n%s", cli.ExitCode(err), err, out.String())
	}
	if !strings.Contains(out.String(), "hosts: laptop\n") {
		t.Errorf("build output lacks the host line:\n%s", out.String())
	}
	out.Reset()
	if err := run([]string{"inspect", filepath.Join(good, image.PXEDir)}, &out, &out); err != nil || !strings.Contains(out.String(), "hosts:      laptop\n") {
		t.Errorf("inspect of the built bundle: %v\n%s", err, out.String())
	}
}
