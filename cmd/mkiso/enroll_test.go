package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/hw"
	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/internal/testenv"
	"github.com/nixlos/nixlos/pxe"
	"github.com/nixlos/nixlos/pxe/wire"
)

// TestEnrollThenHosts: mkiso enroll --new-host on a git copy of the example
// flake says to git add; after that mkiso hosts lists the new host with
// the template's layout. Usage mistakes are exit 2.
func TestEnrollThenHosts(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir()) // no running discovery server
	for _, args := range [][]string{{"52:54:00:aa:bb:04", "--map", "m.toml"}, {"52:54:00:aa:bb:04", "--host", "laptop"}, {"--host", "laptop", "--map", "m.toml"}} {
		if err := runEnroll(args, &bytes.Buffer{}, &bytes.Buffer{}); errs.Code(err) != 2 {
			t.Errorf("enroll %v: %v, want exit 2", args, err)
		}
	}
	testenv.Tools(t, "nix", "git")
	dir := t.TempDir()
	fl := filepath.Join(dir, "flake")
	if err := os.CopyFS(fl, os.DirFS("../../examples/nix-los")); err != nil {
		t.Fatal(err)
	}
	git := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("git", append([]string{"-C", fl, "-c", "user.name=t", "-c", "user.email=t@t"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("init", "-q")
	git("add", "-A")
	git("commit", "-qm", "example")
	mapf := filepath.Join(dir, "map.toml")
	os.WriteFile(mapf, nil, 0o644)
	const mac = "52:54:00:aa:bb:04"
	rep := hw.Report{Firmware: hw.UEFI, Memory: hw.Memory{TotalBytes: 2 << 30},
		Disks: []hw.Disk{{Name: "vda", Kind: hw.KindDisk, SizeBytes: 8 << 30, Bus: hw.BusVirtio, Serial: "NEW1", Modules: []string{"virtio_blk", "virtio_pci"}}}}
	if err := pxe.SaveDiscovery(pxe.DefaultDiscoverDir(mapf), wire.Discovery{MAC: mac, Vendor: "QEMU", Report: rep}); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if err := runEnroll([]string{mac, "--host", "laptop", "--new-host", "lab1", "--flake", fl, "--map", mapf}, &out, &errb); err != nil {
		t.Fatalf("enroll: %v\n%s", err, errb.String())
	}
	for _, want := range []string{"enrolled " + mac + " as host lab1", "hosts/lab1/hardware.nix", "hosts/lab1/facter.json", "git add hosts/lab1 (a flake sees only files git tracks)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := runHosts([]string{fl}, &out, &errb); err != nil || strings.Contains(out.String(), "lab1") {
		t.Fatalf("before git add, hosts: %v\n%s", err, out.String())
	}
	git("add", "hosts/lab1")
	out.Reset()
	if err := runHosts([]string{fl}, &out, &errb); err != nil {
		t.Fatalf("hosts: %v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "lab1 (x86_64-linux)") || !strings.Contains(out.String(), "lv home") {
		t.Fatalf("mkiso hosts does not list lab1 with its layout:\n%s", out.String())
	}
	// Enrolling the same MAC again: the map has it.
	err := runEnroll([]string{mac, "--host", "laptop", "--new-host", "lab2", "--flake", fl, "--map", mapf}, &out, &errb)
	if errs.Code(err) != 2 || !strings.Contains(err.Error(), "already in the map as host lab1") {
		t.Fatalf("second enroll: %v", err)
	}
}
