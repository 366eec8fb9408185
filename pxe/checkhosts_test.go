package pxe

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"
)

const testManifest = `{"version":1,"hosts":{
 "server":{"disko":{"disk":{"disk1":{"device":"/dev/sda"},"disk2":{"device":"/dev/sdb"}}}},
 "laptop":{"disko":{"disk":{"main":{"device":"/dev/nvme0n1"}}}},
 "nolayout":{"disko":null}}}`

// bundleWithManifest writes a bundle whose initrd holds manifest.
func bundleWithManifest(t *testing.T, manifest string) *Bundle {
	t.Helper()
	dir := t.TempDir()
	var buf bytes.Buffer
	w := cpio.Newc.Writer(&buf)
	if err := w.WriteRecord(cpio.StaticFile("etc/nixlos/manifest.json", manifest, 0o644)); err != nil {
		t.Fatal(err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, KernelFile), []byte("k"), 0o644)
	os.WriteFile(filepath.Join(dir, InitrdFile), buf.Bytes(), 0o644)
	return &Bundle{Dir: dir}
}

func TestBundleHosts(t *testing.T) {
	hosts, err := bundleWithManifest(t, testManifest).Hosts()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"server": {"disk1", "disk2"}, "laptop": {"main"}}
	if !reflect.DeepEqual(hosts, want) {
		t.Errorf("Hosts() = %v, want %v", hosts, want)
	}
	if _, err := bundleWithManifest(t, `{"version":2}`).Hosts(); err == nil {
		t.Error("a bad manifest was accepted")
	}
	b := &Bundle{Dir: t.TempDir()}
	os.WriteFile(filepath.Join(b.Dir, InitrdFile), []byte("not an initrd"), 0o644)
	if _, err := b.Hosts(); err == nil {
		t.Error("an initrd without a manifest was accepted")
	}
}

func TestCheckHosts(t *testing.T) {
	hosts := map[string][]string{"server": {"disk1", "disk2"}, "laptop": {"main"}}
	for _, tc := range []struct {
		name, entry, want string
	}{
		{"ok one disk", `host = "laptop"` + "\ndisk = \"auto\"", ""},
		{"ok per disk", `host = "server"` + "\ndisks = { disk1 = \"/dev/vda\", disk2 = \"/dev/vdb\" }", ""},
		{"unknown host", `host = "nosuch"`, `m.toml:1: machine #1: host "nosuch" is not a host of this bundle (hosts: laptop, server)`},
		{"host without layout", `host = "nolayout"`, `host "nolayout" is not a host`},
		{"unknown disk", `host = "server"` + "\ndisks = { disk1 = \"/dev/vda\", disk3 = \"/dev/vdb\" }", `disks: "disk3" is not a disk of host server (its disks: disk1, disk2)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseMap([]byte("[[machine]]\nmac = \"52:54:00:12:34:56\"\n"+tc.entry+"\n"), "m.toml")
			if err != nil {
				t.Fatal(err)
			}
			err = m.CheckHosts("m.toml", hosts)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("CheckHosts: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("CheckHosts: %v, want an error with %q", err, tc.want)
			}
		})
	}
}
