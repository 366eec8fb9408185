package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlos/nixlos/internal/errs"
	"github.com/nixlos/nixlos/internal/testenv"
	"github.com/u-root/u-root/pkg/cpio"
)

// testBuildDir is a minimal build directory: pxe/vmlinuz and pxe/initrd.
func testBuildDir(t *testing.T) string {
	t.Helper()
	testenv.Files(t, "/usr/lib/ipxe/undionly.kpxe")
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "pxe"), 0o755)
	os.WriteFile(filepath.Join(dir, "pxe", "vmlinuz"), []byte("k"), 0o644)
	os.WriteFile(filepath.Join(dir, "pxe", "initrd"), []byte("i"), 0o644)
	return dir
}

func TestServeExportBadInput(t *testing.T) {
	build := testBuildDir(t)
	badMap := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(badMap, []byte("[[machine]]\nmac = \"52:54:00:12:34\"\nhost = \"a\"\n"), 0o644)
	// A bundle whose initrd carries a manifest (host server, disks disk1
	// and disk2): the map is checked against it.
	withHosts := testBuildDir(t)
	var initrd bytes.Buffer
	w := cpio.Newc.Writer(&initrd)
	w.WriteRecord(cpio.StaticFile("etc/nixlos/manifest.json",
		`{"version":1,"hosts":{"server":{"disko":{"disk":{"disk1":{"device":"/dev/sda"},"disk2":{"device":"/dev/sdb"}}}}}}`, 0o644))
	cpio.WriteTrailer(w)
	os.WriteFile(filepath.Join(withHosts, "pxe", "initrd"), initrd.Bytes(), 0o644)
	hostMap := filepath.Join(t.TempDir(), "hosts.toml")
	os.WriteFile(hostMap, []byte("[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"laptop\"\n"), 0o644)
	diskMap := filepath.Join(t.TempDir(), "disks.toml")
	os.WriteFile(diskMap, []byte("[[machine]]\nmac = \"52:54:00:12:34:56\"\nhost = \"server\"\ndisks = { main = \"/dev/vda\" }\n"), 0o644)
	worldKey := filepath.Join(t.TempDir(), "key.txt")
	os.WriteFile(worldKey, []byte("k"), 0o644)
	os.Chmod(worldKey, 0o644)
	for _, tc := range []struct {
		run  func([]string, *bytes.Buffer) error
		args []string
		want string
	}{
		{serve, []string{build}, "--iface"},
		{serve, []string{}, "exactly one BUILD_DIR"},
		{serve, []string{t.TempDir(), "--iface", "lo"}, "no vmlinuz"},
		{serve, []string{build, "--iface", "lo", "--map", badMap}, "bad.toml:1: machine #1: invalid MAC"},
		{serve, []string{withHosts, "--iface", "lo", "--map", hostMap}, `hosts.toml:1: machine #1: host "laptop" is not a host of this bundle (hosts: server)`},
		{serve, []string{withHosts, "--iface", "lo", "--map", diskMap}, `disks: "main" is not a disk of host server`},
		{serve, []string{build, "--iface", "lo", "--dhcp-range", "10.0.0.9-10.0.0.1"}, "first address is after the last"},
		{serve, []string{build, "--iface", "lo", "--unknown", "drop"}, "--unknown"},
		{serve, []string{build, "--iface", "lo", "--discover"}, "--discover: needs a map file"},
		{serve, []string{build, "--iface", "lo", "--age-key", worldKey}, "world-readable"},
		{serve, []string{build, "--iface", "no-such-if0"}, "no-such-if0"},
		{export, []string{build, "--format", "pxelinux", "--out", t.TempDir()}, "--format"},
		{export, []string{build, "--format", "dnsmasq", "--out", t.TempDir()}, "--http-base"},
		{export, []string{build, "--format", "matchbox", "--out", t.TempDir(), "--map", badMap}, "invalid MAC"},
		{export, []string{build, "--format", "dnsmasq", "--out", t.TempDir(), "--http-base", "http://pxe.lan"}, "IPv4"},
	} {
		var out bytes.Buffer
		err := tc.run(tc.args, &out)
		if errs.Code(err) != 2 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: exit %d, error %v; want exit 2 naming %q", tc.args, errs.Code(err), err, tc.want)
		}
	}
}

func serve(args []string, out *bytes.Buffer) error  { return runServe(args, out, out) }
func export(args []string, out *bytes.Buffer) error { return runExport(args, out, out) }

func TestExportWritesFiles(t *testing.T) {
	build := testBuildDir(t)
	out := t.TempDir()
	var b bytes.Buffer
	if err := runExport([]string{build, "--format", "matchbox", "--out", out}, &b, &b); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"assets/nixlos/vmlinuz", "profiles/nixlos-menu.json", "groups/nixlos-default.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil || !strings.Contains(b.String(), f) {
			t.Errorf("%s not written/listed: %v", f, err)
		}
	}
}
